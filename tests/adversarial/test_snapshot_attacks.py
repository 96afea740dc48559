"""Time travel against hostile code (docs/time-travel.md, threat-model.md
"Time travel"): the parked copies of a heavy sandbox's executor are its own
processes; code may attack them, its inspections may misbehave, and neither
may reach beyond the sandbox or take the daemon down.

Every attack is defined by a guarded probe (run_probe: it refuses to run
outside a sandbox) and, for inspections, called by name from the copy."""
import time

import pytest

import agentbox
from conftest import run_probe
from probes import SYSCALLS, guarded, probe


def _parked(box, step, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = [x for x in box.history()["steps"] if x["step"] == step]
        if s and s[0]["snapshot"]["memory"] != "pending":
            return s[0]
        time.sleep(0.02)
    raise AssertionError(box.history())


@pytest.fixture
def box():
    b = agentbox.Sandbox(tier="heavy")
    yield b
    b.close()


def test_t1_code_cannot_read_or_write_its_parked_copies(box):
    run_probe(box, "secret = 'in-the-past'")
    res = probe(box, r'''
me = os.getpid()
copies = []
for p in os.listdir("/proc"):
    if p.isdigit() and int(p) not in (1, me):
        copies.append(int(p))
R["copies"] = len(copies)
R["mem"] = {p: oserr(lambda p=p: open("/proc/%d/mem" % p, "rb").read(1)) for p in copies}
R["memw"] = {p: oserr(lambda p=p: open("/proc/%d/mem" % p, "wb")) for p in copies}
PTRACE_ATTACH, PTRACE_SEIZE = 16, 0x4206
R["ptrace"] = {p: err(101, PTRACE_SEIZE, p, 0, 0) for p in copies}
buf = ctypes.create_string_buffer(64)
liov = ctypes.create_string_buffer(struct.pack("=QQ", ctypes.addressof(buf), 64), 16)
riov = ctypes.create_string_buffer(struct.pack("=QQ", 0x400000, 64), 16)
R["vm_readv"] = {p: sc(310, p, ctypes.addressof(liov), 1, ctypes.addressof(riov), 1, 0)[1]
                 for p in copies}
R["vm_writev"] = {p: sc(311, p, ctypes.addressof(liov), 1, ctypes.addressof(riov), 1, 0)[1]
                  for p in copies}
report()
''', prelude=SYSCALLS)
    assert res["copies"] >= 1, res
    assert all(v in ("EACCES", "EPERM") for v in res["mem"].values()), res
    assert all(v in ("EACCES", "EPERM") for v in res["memw"].values()), res
    assert all(v == "EPERM" for v in res["ptrace"].values()), res
    assert all(v == "EPERM" for v in res["vm_readv"].values()), res
    assert all(v == "EPERM" for v in res["vm_writev"].values()), res


def _lost(box, step, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        mem = {s["step"]: s["snapshot"]["memory"] for s in box.history()["steps"]}
        if mem[step] == "lost":
            return
        time.sleep(0.05)
    raise AssertionError(box.history())


def test_t2_code_that_kills_its_parked_copies_loses_its_past_only(box):
    box.run("x = 1")   # 1
    box.run("x = 2")   # 2
    box.run("x = 3")   # 3
    _parked(box, 3)
    # every copy but the sandbox's first process (pid 2, init's child: its
    # end ends the sandbox, as it always did)
    res = probe(box, r'''
import signal
me = os.getpid()
killed = []
for p in os.listdir("/proc"):
    if p.isdigit() and int(p) not in (1, 2, me):
        try:
            os.kill(int(p), signal.SIGKILL); killed.append(int(p))
        except OSError:
            pass
R["killed"] = len(killed)
report()
''')
    assert res["killed"] >= 2, res
    # the session goes on; its past is marked lost, not silently wrong
    assert box.run("x").value == "3"
    _lost(box, 3)
    # a rewind still gets there: from the first copy, then replay
    r = box.rewind(3)
    assert r["restored"]["memory"] == "snapshot+replay" and r["restored"]["from_state"] == 0, r
    assert box.run("x").value == "2"
    # pid 2 too: the sandbox ends (dead), and a new one replays the past
    r = box.run("import os, signal, time; os.kill(2, signal.SIGKILL); time.sleep(5)")
    assert r.status == "killed", r
    r = box.rewind(3)
    assert r["restored"]["memory"] == "replay", r
    assert box.run("x").value == "2"


def test_t3_an_inspection_that_kills_its_copy(box):
    run_probe(box, "import os, signal\n"
                   "def bite():\n"
                   "    os.kill(os.getppid(), signal.SIGKILL)\n"
                   "    return 'alive?'")                                    # 1
    box.run("y = 1")                                                          # 2
    _parked(box, 2)
    # the parked copy it came from is gone: the inspection either still
    # gets the throwaway's answer or fails naming why, whichever the daemon
    # hears first - never a hang, never another session's state
    try:
        assert box.inspect(2, "bite()")["value"] == "'alive?'"
    except agentbox.IsolationError as e:
        assert "the parked snapshot" in str(e), e
    _lost(box, 2)
    assert box.run("y").value == "1"  # the session is untouched
    # asked again, the state is made again
    r = box.inspect(2, "callable(bite)")
    assert r["value"] == "True" and r["memory"] in ("replay",), r


def test_t4_an_inspection_that_scribbles_on_the_copys_socket(box):
    run_probe(box, "import os, subprocess, sys\n"
                   "def scribble():\n"
                   "    if os.fork() == 0:\n"
                   "        import time; time.sleep(0.3)\n"
                   "        try:\n"
                   "            os.write(3, b'\\xff\\xff\\xff\\xffgarbage' * 100)\n"
                   "        finally:\n"
                   "            os._exit(0)\n"
                   "    return 'forked'")                                   # 1
    box.run("z = 3")                                                          # 2
    _parked(box, 2)
    r = box.inspect(2, "scribble()")
    assert r["value"] == "'forked'", r
    time.sleep(1)
    # the copy whose socket carried garbage is dropped; nothing else moved
    mem = {s["step"]: s["snapshot"]["memory"] for s in box.history()["steps"]}
    assert mem[2] in ("lost", "parked"), mem
    assert box.run("z").value == "3"
    info = agentbox.daemon_info()
    assert info["version"]


def test_t5_a_forged_snapshot_answer_during_a_run_is_a_compromise(box):
    box.run("pass")
    # killed as it writes, so it cannot print PROBE-RAN: guarded by hand
    r = box.run(guarded(r'''
import json, os, struct
body = json.dumps({"ev": "snapshotted", "id": 0, "not_kept": {}}).encode()
pid = os.fork()
if pid == 0:
    os.write(3, struct.pack(">I", len(body)) + body)
    os._exit(0)
os.waitpid(pid, 0)
import time; time.sleep(0.5)
'''))
    assert "PROBE-START" in r.stdout or r.status == "compromised", r
    # the daemon saw another process write to the control socket
    assert r.status == "compromised", r
    with pytest.raises(agentbox.SandboxDeadError):
        box.run("1")


def test_t6_killing_the_executors_parent_copy_keeps_interrupts_working(box):
    box.run("x = 1")
    box.run("x = 2")
    _parked(box, 2)
    # in one run: the parked copy the executor was forked from dies, then
    # the run outlives its time; the interrupt must still reach the
    # executor, which is no longer init's child (init forwards only to its
    # own child)
    r = box.run(guarded(r'''
import os, signal, time
os.kill(os.getppid(), signal.SIGKILL)
time.sleep(0.2)
print("PARENT-KILLED", flush=True)
while True:
    time.sleep(0.05)
'''), timeout=1.5)
    assert "PARENT-KILLED" in r.stdout, r
    assert r.status == "timeout", r
    assert "killed" not in r.error.value, r  # interrupted, not killed
    assert box.run("x").value == "2"

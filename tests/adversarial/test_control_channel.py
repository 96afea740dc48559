"""Adversarial tests: the executor's control channel (issue 8, containment 2 and 3).

Cell code runs in the executor's process and can do anything with fd 3, the
control socket: hand it to another process that then speaks for the
executor (a relay that rewrites code and forges results), or send frames
that make the daemon hold memory. The daemon must tell who wrote every
message (kernel-stamped credentials), kill a session whose channel was
taken over with a "compromised" result that the audit log records, and
hold no more memory for a session than its output limit allows, giving
it back when the session closes."""
import json
import os
import subprocess
import time

import pytest

import agentbox
from conftest import BUILD, DaemonSocket, RawClient
from probes import guarded

SMALL = dict(memory_mb=256, pids=32, timeout=30, disk_mb=16)

# The relay attack: keep the real control socket, give the executor a
# socketpair to a forked relay instead, and from then on forward frames both
# ways, turning any failed result (sys.exit(3)) into "ok". The relay forwards
# the executor's result for this very run, so the run that installs it is
# the first one whose result reaches the daemon through another process.
RELAY = r"""
import json, os, select, socket, struct
real = os.dup(3)
mine, relay_end = socket.socketpair()
os.dup2(mine.fileno(), 3)

def frames(buf):
    out = []
    while len(buf) >= 4:
        n = struct.unpack('>I', buf[:4])[0]
        if len(buf) < 4 + n:
            break
        out.append(json.loads(buf[4:4 + n]))
        buf = buf[4 + n:]
    return out, buf

def send(fd, obj):
    body = json.dumps(obj).encode()
    data = struct.pack('>I', len(body)) + body
    while data:
        data = data[os.write(fd, data):]

pid = os.fork()
if pid == 0:
    mine.close()
    up, down = b'', b''
    try:
        while True:
            rd, _, _ = select.select([real, relay_end.fileno()], [], [])
            if real in rd:                      # daemon -> executor
                b = os.read(real, 1 << 20)
                if not b:
                    break
                down += b
                fs, down = frames(down)
                for f in fs:
                    send(relay_end.fileno(), f)
            if relay_end.fileno() in rd:        # executor -> daemon, forged
                b = os.read(relay_end.fileno(), 1 << 20)
                if not b:
                    break
                up += b
                fs, up = frames(up)
                for f in fs:
                    if f.get('ev') == 'result':
                        f.update(status='ok', exit_code=0, error=None, value="'forged'")
                    send(real, f)
    finally:
        os._exit(0)
os.close(real)
relay_end.close()
mine.close()
print('RELAY', pid, flush=True)
"""

# A child (not the executor) writes a well-formed frame to the fd 3 it
# inherited; the executor itself never touches the socket.
CHILD_WRITES = r"""
import json, os, struct
pid = os.fork()
if pid == 0:
    body = json.dumps({"ev": "started", "step": 1}).encode()
    os.write(3, struct.pack('>I', len(body)) + body)
    os._exit(0)
os.waitpid(pid, 0)
print('CHILD-WROTE', flush=True)
import time
time.sleep(30)
print('STILL-ALIVE', flush=True)
"""


# Code in the executor can always forge its own result: it can find the
# run's nonce in its own memory and write a result to the real socket, from
# the executor's pid. What the daemon can still see is that fd 3 is no
# longer the socket it gave the executor (the first step of any relay that
# keeps the executor talking to it). The pattern below is split so that the
# probe's own text holds no run of 32 hex digits.
NONCE_FORGER = r"""
import json, os, re, socket, struct, ctypes, time
real = os.dup(3)
mine, other = socket.socketpair()
os.dup2(mine.fileno(), 3)
found = set()
pat = re.compile(rb'(?<![0-9a-f])[0-9a-f]{16}' + rb'[0-9a-f]{16}(?![0-9a-f])')
for line in open('/proc/self/maps'):
    parts = line.split()
    if len(parts) < 6 or parts[5] not in ('[heap]', '[stack]') or 'r' not in parts[1]:
        continue
    lo, hi = (int(x, 16) for x in parts[0].split('-'))
    found.update(m.group(0).decode() for m in pat.finditer(ctypes.string_at(lo, hi - lo)))
print('CANDIDATES', len(found), flush=True)
for nonce in list(found)[:200]:
    body = json.dumps({"ev": "result", "step": 1, "nonce": nonce, "status": "ok",
                       "exit_code": 0, "error": None, "value": "'forged'",
                       "results": []}).encode()
    os.write(real, struct.pack('>I', len(body)) + body)
time.sleep(30)
"""


def export(home):
    p = subprocess.run([str(BUILD / "agentbox"), "audit", "export", "--jsonl", "--db",
                        str(home / "audit.db")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def verify(home):
    p = subprocess.run([str(BUILD / "agentbox"), "audit", "verify", "--db",
                        str(home / "audit.db")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def assert_compromised(r):
    assert r.status == "compromised", f"a hijacked control channel was not detected: {r!r}"
    assert r.exit_code == 137, r
    assert r.error is not None and r.error.name == "Compromised", r
    assert r.value != "'forged'" and r.value is None, r


def settle(b):
    """One honest step, then no snapshot in flight (docs/time-travel.md):
    a probe that hijacks fd 3 is then caught by the check it is about, not
    by a snapshot's own check of fd 3 racing with it."""
    assert b.run("pass").ok
    deadline = time.time() + 10
    while b.history()["current"]["memory"] == "pending" and time.time() < deadline:
        time.sleep(0.02)


def test_relay_on_a_dup_of_fd_3_is_detected_and_nothing_forged_comes_back(tmp_path):
    d = DaemonSocket(tmp_path)
    try:
        b = agentbox.Sandbox(tier="heavy", url=str(d.path), **SMALL)
        sid = b.id
        settle(b)
        r = b.run(guarded(RELAY), timeout=20)
        assert "PROBE-START" in r.stdout, r
        assert_compromised(r)
        assert "process" in r.error.value and "not the executor" in r.error.value, r
        # The session is dead: the code of a later run reaches no relay,
        # and sys.exit(3) can never come back as ok.
        with pytest.raises(agentbox.SandboxDeadError) as e:
            b.run("import sys; sys.exit(3)", timeout=10)
        assert "compromised" in str(e.value), e.value
        b.close()
        # Other sessions of the daemon are unaffected.
        with agentbox.Sandbox(tier="heavy", url=str(d.path), **SMALL) as other:
            ok = other.run("import sys; sys.exit(3)", timeout=10)
            assert ok.status == "error" and ok.exit_code == 3, ok
    finally:
        d.stop()
    events = [e for e in export(tmp_path) if e.get("session") == sid]
    kinds = [e["kind"] for e in events]
    assert "compromise" in kinds, kinds
    comp = next(e for e in events if e["kind"] == "compromise")
    assert comp["actor"] == "daemon" and "not the executor" in comp["body"]["reason"], comp
    runs = [e for e in events if e["kind"] == "run"][1:]  # after settle()'s honest step
    assert len(runs) == 1, runs
    assert runs[0]["body"]["status"] == "compromised", runs[0]
    assert runs[0]["body"]["exit_code"] == 137, runs[0]
    assert "not the executor" in runs[0]["body"]["compromise"], runs[0]
    # The daemon decided this outcome: status and exit code are not claims.
    assert runs[0]["body"]["sandbox_claims"] == ["stdout", "stderr"], runs[0]
    assert not any(e["body"]["status"] == "ok" for e in runs)
    verify(tmp_path)


def test_a_child_writing_to_the_inherited_fd_3_compromises_the_session(tmp_path):
    d = DaemonSocket(tmp_path)
    try:
        b = agentbox.Sandbox(tier="heavy", url=str(d.path), **SMALL)
        sid = b.id
        settle(b)
        r = b.run(guarded(CHILD_WRITES), timeout=60)
        assert "PROBE-START" in r.stdout, r
        assert_compromised(r)
        assert "STILL-ALIVE" not in r.stdout, r
        with pytest.raises(agentbox.SandboxDeadError):
            b.run("print(1)", timeout=10)
        b.close()
    finally:
        d.stop()
    events = [e for e in export(tmp_path) if e.get("session") == sid]
    assert [e["kind"] for e in events].count("compromise") == 1, events
    runs = [e for e in events if e["kind"] == "run"][1:]  # after settle()'s honest step
    assert runs and runs[0]["body"]["status"] == "compromised", runs


def test_a_result_while_fd_3_is_swapped_is_caught_by_the_fd_check(tmp_path):
    """The executor's fd 3 is checked with pidfd_getfd at each result, which
    needs ptrace rights over it: a daemon as root has them; an unprivileged
    daemon relies on the sender check (docs/threat-model.md)."""
    if os.geteuid() != 0:
        pytest.skip("pidfd_getfd on the non-dumpable executor needs a daemon as root")
    d = DaemonSocket(tmp_path)
    try:
        with agentbox.Sandbox(tier="heavy", url=str(d.path), **SMALL) as b:
            settle(b)
            r = b.run(guarded(NONCE_FORGER), timeout=60)
            assert "PROBE-START" in r.stdout and "CANDIDATES" in r.stdout, r
            assert_compromised(r)
            assert "fd 3" in r.error.value, r
    finally:
        d.stop()


def test_an_honest_run_records_which_fields_are_claims(tmp_path):
    """The executor's own result decides status, exit code and error name:
    the audit record lists them as claimed; a timeout is measured."""
    d = DaemonSocket(tmp_path)
    try:
        with agentbox.Sandbox(tier="heavy", url=str(d.path), **SMALL) as b:
            sid = b.id
            assert b.run("import sys; sys.exit(3)", timeout=10).exit_code == 3
            assert b.run("import time; time.sleep(30)", timeout=1).status == "timeout"
    finally:
        d.stop()
    runs = [e for e in export(tmp_path) if e.get("session") == sid and e.get("kind") == "run"]
    assert len(runs) == 2, runs
    assert runs[0]["body"]["sandbox_claims"] == ["status", "exit_code", "error_name", "stdout",
                                          "stderr"], runs[0]
    assert runs[0]["body"]["exit_code"] == 3
    assert runs[1]["body"]["sandbox_claims"] == ["stdout", "stderr"], runs[1]
    assert "compromise" not in runs[0]["body"] and "compromise" not in runs[1]["body"]
    verify(tmp_path)


# ------------------------------------------------------------ partial frames

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# Sends a frame header announcing `announce` bytes and `body` bytes of it,
# then exits: the daemon is left with a partial frame for a dead session.
PARTIAL = guarded(r"""
import os, struct
announce, body = {announce}, {body}
data = struct.pack('>I', announce) + b'{{"ev": "result", "x": "' + b'a' * body
n = 0
while n < len(data):
    n += os.write(3, data[n:n + (1 << 20)])
print('SENT', n, flush=True)
os._exit(0)
""")


def test_a_64_mib_frame_header_is_refused_at_the_sessions_cap(tmp_path):
    """With the default output limit (1 MiB) a result frame may take 3 MiB:
    a header announcing 64 MiB kills the sandbox before its body is read."""
    d = DaemonSocket(tmp_path)
    c = RawClient(d.path)
    try:
        sid = c.call("sandbox.create", {"tier": "heavy"})["result"]["sandbox"]
        r = c.call("sandbox.run", {"sandbox": sid, "timeout": 60,
                                   "code": PARTIAL.format(announce=64 << 20,
                                                          body=(63 << 20))})["result"]
        assert "PROBE-START" in r["stdout"], r
        assert "SENT" not in r["stdout"], f"the daemon read 63 MiB of a 64 MiB frame: {r}"
        assert r["status"] == "killed", r
        assert "protocol violation" in r["error"]["value"], r
        assert "exceeds the cap of 3145728" in r["error"]["value"], r
    finally:
        c.close()
        d.stop()


def test_daemon_memory_returns_to_baseline_after_hostile_sessions_close(tmp_path):
    d = DaemonSocket(tmp_path)
    c = RawClient(d.path)
    try:
        pid = d.proc.pid
        # One ordinary session first, so that the baseline includes what
        # any session costs.
        sid = c.call("sandbox.create", {"tier": "heavy"})["result"]["sandbox"]
        assert c.call("sandbox.run", {"sandbox": sid, "code": "print(1)"})["result"]["status"] \
            == "ok"
        c.call("sandbox.close", {"sandbox": sid})
        baseline = rss_kib(pid)
        # The attack as reported: six sessions with the default limits, each
        # announcing a 64 MiB frame and sending 63 MiB of it. Each session
        # may make the daemon hold no more than its 3 MiB cap (and slack).
        ids = []
        for _ in range(6):
            sid = c.call("sandbox.create", {"tier": "heavy", "limits": {"memory_mb": 256}})
            ids.append(sid["result"]["sandbox"])
            r = c.call("sandbox.run", {"sandbox": ids[-1], "timeout": 120,
                                       "code": PARTIAL.format(announce=64 << 20,
                                                              body=63 << 20)})["result"]
            assert "PROBE-START" in r["stdout"] and r["status"] == "killed", r
        bounded = rss_kib(pid)
        assert bounded - baseline < 6 * 4 * 1024, \
            f"daemon RSS {baseline} KiB -> {bounded} KiB with six default sessions"
        for sid in ids:
            assert c.call("sandbox.close", {"sandbox": sid})["result"]["closed"]
        # Six sessions at the largest output limit (4 MiB, a 9 MiB frame cap)
        # each leave 8 MiB of a 9 MiB frame in the daemon, then die.
        limits = {"output_bytes": 4 << 20, "memory_mb": 256}
        ids = []
        for _ in range(6):
            # Without snapshots (docs/time-travel.md) the dead executor's
            # sandbox holds its half frame until the client closes it: the
            # case this part guards. (With them, the daemon drops what a
            # dead executor half-sent at once.)
            sid = c.call("sandbox.create", {"tier": "heavy", "limits": limits,
                                            "snapshots": 0})["result"]["sandbox"]
            ids.append(sid)
            r = c.call("sandbox.run", {"sandbox": sid, "timeout": 120,
                                       "code": PARTIAL.format(announce=9 << 20,
                                                              body=8 << 20)})["result"]
            assert "SENT" in r["stdout"], r
            assert r["status"] == "killed", r
        held = rss_kib(pid)
        # The attack reached the daemon (this is what the test guards).
        assert held - baseline > 6 * 4 * 1024, (baseline, held)
        for sid in ids:
            assert c.call("sandbox.close", {"sandbox": sid})["result"]["closed"]
        after = rss_kib(pid)
        print(f"daemon VmRSS: baseline {baseline} KiB, six default sessions {bounded} KiB, "
              f"six 4 MiB-output sessions {held} KiB, after closing them {after} KiB")
        assert after - baseline < 16 * 1024, \
            f"daemon RSS {baseline} KiB -> {held} KiB with the sessions -> {after} KiB after"
    finally:
        c.close()
        d.stop()


def test_a_frame_of_a_million_tiny_values_is_refused_before_parsing(tmp_path):
    """2 MB of "0," is a million JSON values: parsed, they cost the daemon
    about 40 MB of heap (kept by the allocator afterwards). The decoder
    counts values first and refuses the frame."""
    d = DaemonSocket(tmp_path)
    c = RawClient(d.path)
    try:
        sid = c.call("sandbox.create", {"tier": "heavy"})["result"]["sandbox"]
        assert c.call("sandbox.run", {"sandbox": sid, "code": "1"})["result"]["status"] == "ok"
        baseline = rss_kib(d.proc.pid)
        r = c.call("sandbox.run", {"sandbox": sid, "timeout": 60, "code": guarded(r"""
import os, struct
body = b'{"ev": "started", "a": [' + b'0,' * 1000000 + b'0]}'
data = struct.pack('>I', len(body)) + body
while data:
    data = data[os.write(3, data):]
print('SENT', flush=True)
import time
time.sleep(30)
""")})["result"]
        assert "PROBE-START" in r["stdout"], r
        assert r["status"] == "killed", r
        assert "more than 65536 JSON values" in r["error"]["value"], r
        assert rss_kib(d.proc.pid) - baseline < 8 * 1024
    finally:
        c.close()
        d.stop()


def test_an_honest_result_over_the_sessions_frame_cap_is_cut_not_killed(tmp_path):
    """An error whose text is a megabyte of control characters encodes to
    6 MB of JSON, over the 3 MiB a default session's result may take: the
    executor cuts it to fit, and the session lives on."""
    d = DaemonSocket(tmp_path)
    try:
        with agentbox.Sandbox(tier="heavy", url=str(d.path), timeout=60) as b:
            r = b.run("raise ValueError('\\x01' * 2_000_000)", timeout=30)
            assert r.status == "error" and r.exit_code == 1, r
            assert r.error.name == "ValueError", r
            assert r.error.traceback.endswith("... [truncated]"), r.error.traceback[-80:]
            assert len(r.error.traceback) < 1 << 20
            r = b.run("import matplotlib.pyplot as plt, numpy as np\n"
                      "for i in range(15):\n"
                      "    plt.figure(); plt.imshow(np.random.rand(400, 400))\n"
                      "raise ValueError('\\x01' * 2_000_000)", timeout=60)
            assert r.status == "error" and r.error.name == "ValueError", r
            assert len(r.results) == 1 and "output omitted" in r.results[0]["text/plain"], r
            r = b.run("print('alive')", timeout=10)
            assert r.status == "ok" and r.stdout == "alive\n", r
    finally:
        d.stop()

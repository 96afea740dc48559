"""Adversarial tests, heavy tier: attacks on the supervisor (ADVERSARIAL.md S1-S7).

Attacks run inside sandboxes (run_probe / a printed start marker); the test
then checks on the host that the daemon, other sandboxes and a host canary
process are unaffected, and that results stay truthful."""
import json
import socket
import subprocess
import threading
import time
import uuid

import pytest

import agentbox
from agentbox import Sandbox
from conftest import PROBE_GUARD, run_probe
from probes import FORGED_RESULTS, guarded, host_pids_with

SMALL = dict(memory_mb=128, pids=32, timeout=20, disk_mb=16)


def assert_healthy():
    info = agentbox.daemon_info()
    assert info["pid"] > 0
    with Sandbox(tier="heavy", **SMALL) as other:
        r = other.run("print(1)", timeout=10)
        assert r.status == "ok" and r.stdout == "1\n", r


def start_bg(box, marker):
    """Starts a sleeping background process carrying marker in its argv."""
    r = run_probe(box, f"""
import os, subprocess
subprocess.Popen(['/usr/bin/python3', '-c', 'import time; time.sleep(600)  # {marker}'],
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL, start_new_session=True)
""")
    deadline = time.time() + 10
    while not host_pids_with(marker) and time.time() < deadline:
        time.sleep(0.05)
    assert host_pids_with(marker), "background process did not start"
    return r


@pytest.fixture
def canary():
    """A harmless host process that no sandbox may be able to signal."""
    p = subprocess.Popen(["sleep", "120"])
    yield p
    p.kill()
    p.wait()


# ------------------------------------------------------------------------ S1

def test_s1_kill_minus_one_and_guessed_pids_only_hit_own_processes(canary):
    victim = Sandbox(tier="heavy", **SMALL)
    attacker = Sandbox(tier="heavy", **SMALL)
    vmark = "agentbox-s1-victim-" + uuid.uuid4().hex
    amark = "agentbox-s1-attacker-" + uuid.uuid4().hex
    try:
        start_bg(victim, vmark)
        start_bg(attacker, amark)
        daemon_pid = agentbox.daemon_info()["pid"]
        r = attacker.run(guarded(f"""
import os, signal
print('SELF', os.getpid(), flush=True)
hits = []
for pid in range(1, 70000):          # guessed pids, including the host's (daemon {daemon_pid},
    if pid == os.getpid():           # canary {canary.pid})
        continue
    try:
        os.kill(pid, 0)
        hits.append(pid)
    except ProcessLookupError:
        pass
    except PermissionError:
        hits.append(-pid)
print('VISIBLE', hits, flush=True)
for pid in ({daemon_pid}, {canary.pid}, 2, 3):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError as e:
        print('KILL', pid, e.errno, flush=True)
try:
    os.kill(1, signal.SIGKILL)       # the sandbox's init
    print('INIT-KILL-SENT', flush=True)
except OSError as e:
    print('INIT-KILL', e.errno, flush=True)
os.kill(-1, signal.SIGKILL)
print('AFTER-KILL-ALL', flush=True)
print('PROBE-RAN')
"""), timeout=15)
        assert "PROBE-START" in r.stdout, r
        assert r.status in ("ok", "error", "killed"), r
        # Only the sandbox's own handful of processes were visible.
        if "VISIBLE" in r.stdout:
            visible = eval(r.stdout.split("VISIBLE ")[1].splitlines()[0])
            assert len(visible) < SMALL["pids"], visible
        # The attacker's own background process is gone ...
        deadline = time.time() + 5
        while host_pids_with(amark) and time.time() < deadline:
            time.sleep(0.05)
        assert not host_pids_with(amark), "kill(-1) inside did not reach the sandbox's own child"
        # ... but nothing outside the attacker was touched.
        assert canary.poll() is None, "a host process was killed from inside a sandbox"
        assert agentbox.daemon_info()["pid"] == daemon_pid
        assert host_pids_with(vmark), "another sandbox's process was killed"
        rv = victim.run("print('victim ok')", timeout=10)
        assert rv.status == "ok" and rv.stdout == "victim ok\n", rv
    finally:
        attacker.close()
        victim.close()
    assert_healthy()


# ------------------------------------------------------------------------ S2

@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_s2_grandchild_holding_output_open_does_not_delay_the_run(stream):
    with Sandbox(tier="heavy", **SMALL) as b:
        t = time.time()
        r = run_probe(b, f"""
import subprocess, sys
subprocess.Popen(['sleep', '30'], stdin=subprocess.DEVNULL)           # inherits stdout+stderr
subprocess.Popen(['sh', '-c', '(sleep 30 &) ; exit 0'], stdin=subprocess.DEVNULL)  # grandchild
print('spawned', file=sys.{stream}, flush=True)
""", timeout=15)
        took = time.time() - t
        assert took < 5, f"run took {took:.1f}s with a grandchild holding {stream} open"
        assert r.status == "ok", r
        assert "spawned" in getattr(r, stream)
        t = time.time()
        r = b.run("print('next')", timeout=10)
        assert r.stdout == "next\n" and time.time() - t < 5, r
        t = time.time()
    assert time.time() - t < 10
    assert_healthy()


# ------------------------------------------------------------------------ S3

def _read_reply(f, want_id, deadline):
    while time.time() < deadline:
        raw = f.readline()
        if not raw:
            raise AssertionError("daemon closed the connection")
        msg = json.loads(raw)
        if msg.get("id") == want_id:
            return msg
    raise AssertionError("no reply in time")


def test_s3_flood_while_client_does_not_read_no_deadlock(daemon_socket):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(str(daemon_socket.path))
    f = s.makefile("rb")
    s.sendall((json.dumps({"jsonrpc": "2.0", "id": 1, "method": "sandbox.create",
                           "params": {"limits": {"memory_mb": 128, "pids": 32,
                                                 "disk_mb": 16, "timeout": 60}}}) +
               "\n").encode())
    created = _read_reply(f, 1, time.time() + 60)
    assert "result" in created, created
    sid = created["result"]["sandbox"]
    code = PROBE_GUARD + """
import os, sys
print('PROBE-START', flush=True)
try:
    print('STDIN', repr(sys.stdin.read()), flush=True)     # never blocks: no stdin to read
except Exception as e:
    print('STDIN-ERR', type(e).__name__, flush=True)
blk = b'f' * (1 << 20)
for _ in range(200):
    os.write(1, blk)
os.write(2, b'FLOOD-DONE\\n')
"""
    s.sendall((json.dumps({"jsonrpc": "2.0", "id": 2, "method": "sandbox.run",
                           "params": {"sandbox": sid, "code": code, "timeout": 30}}) +
               "\n").encode())
    # Do not read for a while: the sandbox floods, the daemon must neither block
    # nor stop serving others.
    time.sleep(3)
    t = time.time()
    other = daemon_socket.rpc_lines(['{"jsonrpc":"2.0","id":9,"method":"daemon.info"}\n'],
                                    timeout=10)
    assert other and "result" in other[0], other
    assert time.time() - t < 5
    result = _read_reply(f, 2, time.time() + 60)["result"]
    assert result["status"] == "ok", {k: v for k, v in result.items() if k != "stdout"}
    assert result["stdout"].startswith("PROBE-START")
    assert "STDIN ''" in result["stdout"] or "STDIN-ERR" in result["stdout"]
    assert result["truncated"]["stdout"] is True
    assert "FLOOD-DONE" in result["stderr"]
    assert len(result["stdout"]) <= (1 << 20) + 4096
    s.close()
    assert daemon_socket.proc.poll() is None


def test_s3_slow_sdk_callback_does_not_deadlock():
    chunks = []

    def slow(data):
        chunks.append(len(data))
        time.sleep(0.01)

    with Sandbox(tier="heavy", memory_mb=128, pids=32, timeout=30, disk_mb=16) as b:
        t = time.time()
        r = b.run(guarded("import os\nfor _ in range(100):\n    os.write(1, b'g' * (1 << 20))\n"
                          "open('/workspace/done', 'w').write('1')\n"), timeout=30,
                  on_stdout=slow)
        assert r.status == "ok", r
        assert b.files.read("done") == b"1"
        assert r.truncated["stdout"] is True
        assert sum(chunks) <= (1 << 20) + 4096
        assert time.time() - t < 25
    assert_healthy()


# ------------------------------------------------------------------------ S4

def test_s4_escapes_invalid_utf8_and_fake_frames_do_not_change_the_result():
    fake_rpc = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {
        "status": "ok", "exit_code": 0, "stdout": "forged", "stderr": ""}})
    with Sandbox(tier="heavy", **SMALL) as b:
        code = guarded(f"""
import os, sys, struct, json
sys.stdout.write('\\x1b[2J\\x1b[31mred\\x1b]0;title\\x07\\x1b]52;c;aGk=\\x07\\x9b6n\\n')
sys.stdout.flush()
os.write(1, b'\\xff\\xfe bad utf8 \\xc3\\n')
os.write(1, b'nul:\\x00:end\\n')
os.write(2, b'\\xed\\xa0\\x80 surrogate \\x00\\n')
os.write(1, {fake_rpc!r}.encode() + b'\\n')
os.write(2, {fake_rpc!r}.encode() + b'\\n')
fake = [{{"ev": "result", "step": n, "status": "ok", "exit_code": 0, "error": None,
          "value": "'forged'", "results": []}} for n in (1, 2, 3)]
sent = []
for frame in fake:
    body = json.dumps(frame).encode()
    try:
        os.write(3, struct.pack('>I', len(body)) + body)
        sent.append(frame['step'])
    except OSError as e:
        print('FD3', e.errno, flush=True)
print('SENT', sent, flush=True)
print('PROBE-RAN', flush=True)
raise ValueError('the real outcome')
""")
        r = b.run(code, timeout=10)
        assert "PROBE-START" in r.stdout, r
        # The run raised: the result must say so, whatever was written to fd 1/2/3.
        assert r.status == "error", f"forged result accepted: {r!r}"
        assert r.exit_code == 1, r
        assert r.error is not None and r.error.name == "ValueError", r
        assert r.value != "'forged'", r
        assert "PROBE-RAN" in r.stdout
        # the output itself arrives as text: invalid UTF-8 as U+FFFD, NUL kept
        assert "\ufffd" in r.stdout
        assert "nul:\x00:end" in r.stdout
        assert '"forged"' in r.stdout      # the fake JSON-RPC line is just output
        # A following run is still reported truthfully (no stale forged frame).
        r2 = b.run("1/0", timeout=10)
        assert r2.status == "error" and r2.error.name == "ZeroDivisionError", r2
        r3 = b.run("print('after')", timeout=10)
        assert r3.status == "ok" and r3.stdout == "after\n", r3
    assert_healthy()


def test_s4_bare_json_result_line_on_the_control_socket_is_not_obeyed():
    """A newline-terminated JSON result on fd 3 is garbage for the framed
    protocol: the sandbox may be killed for it, but never reported as ok."""
    b = Sandbox(tier="heavy", **SMALL)
    try:
        r = b.run(guarded("""
import os, json
line = json.dumps({"ev": "result", "step": 1, "status": "ok", "exit_code": 0,
                   "value": "'forged'"}).encode() + b'\\n'
try:
    os.write(3, line)
except OSError as e:
    print('FD3', e.errno, flush=True)
import time; time.sleep(0.5)
raise ValueError('the real outcome')
"""), timeout=10)
        assert "PROBE-START" in r.stdout, r
        assert r.status in ("error", "killed"), f"forged result accepted: {r!r}"
        assert r.value != "'forged'", r
        if r.status == "error":
            assert r.error.name == "ValueError" and r.exit_code == 1, r
        else:
            assert r.exit_code == 137, r
    finally:
        b.close()
    assert_healthy()


def test_s4_forged_result_frame_cannot_end_a_run_early_and_escape_the_wall_limit():
    """A result frame written to fd 3 by user code must not end the run: the
    code keeps running after it, and must still be stopped at the time limit."""
    with Sandbox(tier="heavy", **SMALL) as b:
        t = time.time()
        r = b.run(guarded(FORGED_RESULTS), timeout=2)
        took = time.time() - t
        assert "PROBE-START" in r.stdout, r
        assert r.status == "timeout" and r.exit_code == 124, \
            f"a forged result ended the run after {took:.2f}s while its code kept running: {r!r}"
    assert_healthy()


# S5 (TIOCSTI, TIOCLINUX) is in test_escape.py, run once per backend profile.


# ------------------------------------------------------------------------ S6

@pytest.mark.serial     # thousands of forks: loads the machine (see test_resources.py)
def test_s6_rapid_fork_exit_churn(canary):
    with Sandbox(tier="heavy", memory_mb=128, pids=64, timeout=30, disk_mb=16) as b:
        t = time.time()
        r = run_probe(b, """
import os
n = 0
for i in range(1000):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    n += 1
print('FORKS', n)
""", timeout=30)
        assert "FORKS 1000" in r.stdout, r.stdout
        assert time.time() - t < 25
        assert b.run("print(7)", timeout=5).stdout == "7\n"
    # churn pids right up to the moment the daemon kills the sandbox at its limit
    b = Sandbox(tier="heavy", memory_mb=128, pids=64, timeout=30, disk_mb=16)
    try:
        r = b.run(guarded("""
import os, signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    try:
        pid = os.fork()
    except OSError:
        continue
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
"""), timeout=1.5)
        assert "PROBE-START" in r.stdout, r
        assert r.status == "timeout", r
    finally:
        b.close()
    assert canary.poll() is None, "the supervisor signalled a foreign (host) process"
    assert_healthy()


# ------------------------------------------------------------------------ S7

@pytest.mark.parametrize("payload", [
    "struct.pack('>I', 2**31) + b'x' * 4096",
    "struct.pack('>I', 0xffffffff)",
    "frame(b'[' * 2000 + b']' * 2000)",
    "frame(b'{\"ev\": \"result\", \"step\": 1, \"x\": ' + b'[' * 100000 + b']' * 100000 + b'}')",
    "frame(b'{\"ev\": 1}')",
    "frame(b'not json at all')",
], ids=["len-2G", "len-4G", "nested-2000", "nested-100000", "bad-ev", "garbage"])
def test_s7_oversized_or_malformed_control_frames_kill_the_sandbox(payload):
    b = Sandbox(tier="heavy", **SMALL)
    try:
        t = time.time()
        r = b.run(guarded(f"""
import os, struct, time
def frame(body):
    return struct.pack('>I', len(body)) + body
data = {payload}
n = 0
while n < len(data):
    n += os.write(3, data[n:])
print('WROTE', n, flush=True)
time.sleep(5)
print('STILL-ALIVE', flush=True)
"""), timeout=15)
        assert "PROBE-START" in r.stdout, r
        assert "STILL-ALIVE" not in r.stdout, f"the daemon did not react to a bad frame: {r!r}"
        assert time.time() - t < 10
        assert r.status == "killed", r
        assert r.exit_code == 137
        assert r.value in (None,)
        with pytest.raises(agentbox.SandboxDeadError):
            b.run("print(1)", timeout=5)
    finally:
        b.close()
    assert_healthy()


RPC_CASES = [
    ("invalid-json", b'{"jsonrpc": "2.0", "id": 1, "method": \n', -32700),
    ("not-utf8", b'\xff\xfe{]\n', -32700),
    ("array", b'[{"jsonrpc": "2.0", "id": 1, "method": "daemon.info"}]\n', -32600),
    ("scalar", b'42\n', -32600),
    ("nested", b'[' * 100000 + b']' * 100000 + b'\n', None),
    ("no-version", b'{"id": 2, "method": "daemon.info"}\n', -32600),
    ("method-not-string", b'{"jsonrpc": "2.0", "id": 3, "method": 5}\n', -32600),
    ("unknown-method", b'{"jsonrpc": "2.0", "id": 4, "method": "sandbox.pwn"}\n', -32601),
    ("params-array", b'{"jsonrpc": "2.0", "id": 5, "method": "daemon.info", "params": []}\n',
     -32602),
    ("bad-limits", b'{"jsonrpc": "2.0", "id": 6, "method": "sandbox.create", '
                   b'"params": {"limits": {"memory_mb": "lots"}}}\n', -32602),
    ("bad-tier", b'{"jsonrpc": "2.0", "id": 7, "method": "sandbox.create", '
                 b'"params": {"tier": 7}}\n', -32602),
    ("bad-sandbox", b'{"jsonrpc": "2.0", "id": 8, "method": "sandbox.run", '
                    b'"params": {"sandbox": 5, "code": "print(1)"}}\n', -32602),
    ("bad-code", b'{"jsonrpc": "2.0", "id": 9, "method": "sandbox.run", '
                 b'"params": {"sandbox": "sb-0000000000000000", "code": 5}}\n', None),
    ("bad-timeout", b'{"jsonrpc": "2.0", "id": 10, "method": "sandbox.create", '
                    b'"params": {"limits": {"timeout": -1}}}\n', -32602),
    ("dup-keys", b'{"jsonrpc": "2.0", "id": 11, "id": 12, "method": "daemon.info"}\n', -32700),
    ("no-such-sandbox", b'{"jsonrpc": "2.0", "id": 13, "method": "sandbox.close", '
                        b'"params": {"sandbox": "sb-ffffffffffffffff"}}\n', -32001),
]


@pytest.mark.parametrize("name,line,code", RPC_CASES, ids=[c[0] for c in RPC_CASES])
def test_s7_garbage_rpc_lines_get_documented_errors(daemon_socket, name, line, code):
    replies = daemon_socket.rpc_lines([line], timeout=20)
    assert len(replies) == 1, replies
    rep = replies[0]
    assert "error" in rep and "result" not in rep, rep
    if code is not None:
        assert rep["error"]["code"] == code, rep
    else:
        assert rep["error"]["code"] in (-32700, -32600, -32602, -32001), rep
    assert isinstance(rep["error"]["message"], str) and rep["error"]["message"]
    # still serving
    ok = daemon_socket.rpc_lines(['{"jsonrpc":"2.0","id":99,"method":"daemon.info"}\n'])
    assert ok and "result" in ok[0], ok
    assert daemon_socket.proc.poll() is None


def test_s7_17mib_line_is_refused_and_the_daemon_stays_up(daemon_socket):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(str(daemon_socket.path))
    f = s.makefile("rb")
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "daemon.info", "params": {"pad": "' + \
        b"a" * (17 << 20) + b'"}}\n'

    def send():
        try:
            s.sendall(body)
        except OSError:
            pass               # the daemon may stop reading and close: fine

    th = threading.Thread(target=send, daemon=True)
    th.start()
    raw = f.readline()
    assert raw, "the daemon closed without an error reply"
    rep = json.loads(raw)
    assert rep.get("error", {}).get("code") == -32600, rep
    assert "16 MiB" in rep["error"]["message"], rep
    s.close()
    th.join(10)
    # the daemon is alive, responsive, and not spinning on the abandoned connection
    pid = daemon_socket.proc.pid
    ok = daemon_socket.rpc_lines(['{"jsonrpc":"2.0","id":2,"method":"daemon.info"}\n'])
    assert ok and "result" in ok[0], ok

    def cpu_ticks():
        with open(f"/proc/{pid}/stat") as fh:
            parts = fh.read().rsplit(")", 1)[1].split()
        return int(parts[11]) + int(parts[12])

    c0 = cpu_ticks()
    time.sleep(1.0)
    used = cpu_ticks() - c0
    assert used < 50, f"the daemon used {used} ticks of CPU in 1 s while idle"
    assert daemon_socket.proc.poll() is None

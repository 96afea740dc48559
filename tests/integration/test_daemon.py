"""agentboxd as a shared daemon on a unix socket: permissions, the JSON-RPC
error contract, several clients, and sandboxes tied to their connection."""
import json
import os
import socket
import stat
import subprocess

import pytest

import agentbox
from conftest import BUILD


def test_socket_is_private(daemon_socket):
    st = os.stat(daemon_socket.path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600


def test_sdk_over_socket(daemon_socket):
    with agentbox.Sandbox(tier="heavy", url=str(daemon_socket.path)) as b:
        assert b.run("x = 5").ok
        assert b.run("x * 2").value == "10"
    info = agentbox.daemon_info(url=str(daemon_socket.path))
    assert info["pid"] == daemon_socket.proc.pid


@pytest.mark.parametrize("line,code,needle", [
    (b"this is not json\n", -32700, "parse error"),
    (b"[1, 2]\n", -32600, "batch"),
    (b'{"jsonrpc": "1.0", "id": 1, "method": "daemon.info"}\n', -32600, "2.0"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "no.such"}\n', -32601, "no.such"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "sandbox.run", "params": {"sandbox": 5}}\n',
     -32602, "params.sandbox"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "sandbox.run", '
     b'"params": {"sandbox": "sb-nope", "code": "1"}}\n', -32001, "no such sandbox"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "sandbox.create", '
     b'"params": {"limits": {"memory_mb": "lots"}}}\n', -32602, "limits.memory_mb"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "sandbox.create", '
     b'"params": {"limits": {"bogus": 1}}}\n', -32602, "bogus"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "sandbox.create", '
     b'"params": {"tier": "gpu"}}\n', -32602, "params.tier"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "sandbox.create", "params": [1]}\n',
     -32602, "params"),
])
def test_bad_requests_get_useful_errors(daemon_socket, line, code, needle):
    [reply] = daemon_socket.rpc_lines([line])
    assert reply["error"]["code"] == code, reply
    assert needle in reply["error"]["message"], reply
    # and the daemon is still serving
    [ok] = daemon_socket.rpc_lines([b'{"jsonrpc":"2.0","id":2,"method":"daemon.info"}\n'])
    assert ok["result"]["version"]


@pytest.mark.parametrize("request_,code,needle", [
    ({"method": "m" * 99 + "\u00e9"}, -32601, "method not found"),
    ({"method": "sandbox.create", "params": {"p" * 63 + "\u00e9": 1}}, -32602,
     "unknown parameter"),
    ({"method": "sandbox.run", "params": {"sandbox": "s" * 63 + "\u20ac", "code": "1"}},
     -32001, "no such sandbox"),
])
def test_errors_quoting_cut_non_ascii_input_are_answered(daemon_socket, request_, code,
                                                          needle):
    # Found by tests/fuzz/fuzz_rpc.c: error messages quote at most N bytes of
    # what the client sent; a cut through a UTF-8 character made the message
    # invalid UTF-8, and the request was neither answered nor audited. The
    # daemon.info after it shows the order: its reply must come second.
    line = json.dumps({"jsonrpc": "2.0", "id": 1, **request_}) + "\n"
    info = '{"jsonrpc":"2.0","id":2,"method":"daemon.info"}\n'
    [reply] = daemon_socket.rpc_lines([line, info], expect=1)
    assert reply["id"] == 1, reply
    assert reply["error"]["code"] == code, reply
    assert needle in reply["error"]["message"], reply


def test_oversized_line_is_refused_and_daemon_survives(daemon_socket):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(str(daemon_socket.path))
    try:
        s.sendall(b"x" * (17 << 20))
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = b""
    try:
        while b"\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    s.close()
    assert b"-32600" in data and b"16 MiB" in data
    [ok] = daemon_socket.rpc_lines([b'{"jsonrpc":"2.0","id":2,"method":"daemon.info"}\n'])
    assert "result" in ok


def test_notifications_get_no_reply(daemon_socket):
    replies = daemon_socket.rpc_lines([
        b'{"jsonrpc":"2.0","method":"daemon.info"}\n',
        b'{"jsonrpc":"2.0","id":7,"method":"daemon.info"}\n',
    ], expect=1)
    assert [r["id"] for r in replies] == [7]


def test_sandboxes_of_one_client_are_invisible_to_another(daemon_socket):
    url = str(daemon_socket.path)
    with agentbox.Sandbox(tier="heavy", url=url) as b:
        sid = b.id
        [reply] = daemon_socket.rpc_lines([json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "sandbox.run",
             "params": {"sandbox": sid, "code": "1"}}).encode() + b"\n"])
        assert reply["error"]["code"] == -32001


def test_sandboxes_close_when_their_client_disconnects(daemon_socket):
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(daemon_socket.path))
    f = s.makefile("rwb")
    f.write(b'{"jsonrpc":"2.0","id":1,"method":"sandbox.create"}\n')
    f.flush()
    created = json.loads(f.readline())
    sid = created["result"]["sandbox"]
    ws = daemon_socket.home / "sessions" / sid
    assert ws.exists()
    s.close()
    f.close()
    import time
    deadline = time.time() + 10
    while ws.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert not ws.exists()


def test_non_root_peer_with_other_uid_is_refused():
    # A client running as nobody may not use root's daemon, even if the
    # socket's mode were to let it connect.
    import shutil
    import tempfile
    from conftest import DaemonSocket
    home = tempfile.mkdtemp(prefix="agentbox-peer-", dir="/tmp")
    os.chmod(home, 0o755)
    daemon_socket = DaemonSocket(home)
    # The daemon answers a refused peer at once and hangs up, so the client
    # only reads.
    code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n"
            "print(s.makefile().readline())")
    try:
        os.chmod(daemon_socket.home, 0o755)
        os.chmod(daemon_socket.path, 0o666)  # only the uid check is left to refuse
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "/usr/bin/python3", "-c", code, str(daemon_socket.path)],
                           capture_output=True, text=True, timeout=30)
    finally:
        daemon_socket.stop()
        shutil.rmtree(home, ignore_errors=True)
    assert "permission denied" in p.stdout, (p.stdout, p.stderr)


def test_daemon_refuses_to_start_without_a_mode(tmp_path):
    p = subprocess.run([str(BUILD / "agentboxd"), "--home", str(tmp_path)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "--stdio or --socket" in p.stderr


def test_daemon_rejects_unknown_degrade_layer(tmp_path):
    p = subprocess.run([str(BUILD / "agentboxd"), "--stdio", "--degrade", "magic"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "magic" in p.stderr


def test_sigterm_stops_daemon_and_cleans_up(tmp_path):
    from conftest import DaemonSocket
    d = DaemonSocket(tmp_path)
    with agentbox.Sandbox(tier="heavy", url=str(d.path)) as b:
        b.run("open('f', 'w').write('x')")
        sessions = list((tmp_path / "sessions").iterdir())
        assert sessions
        d.stop()
        assert d.proc.returncode == 0
    assert list((tmp_path / "sessions").iterdir()) == []
    assert not d.path.exists()
    pid = d.proc.pid
    leftovers = [p for p in os.listdir("/sys/fs/cgroup/pids") if p == f"agentbox-{pid}"]
    assert leftovers == []


def test_zygote_crash_is_recovered(daemon_socket):
    """The daemon restarts its zygote (which this test started, through the
    daemon, and kills by pid) and keeps serving."""
    import signal
    import time
    url = str(daemon_socket.path)
    with agentbox.Sandbox(tier="heavy", url=url) as b:
        assert b.run("1 + 1").value == "2"
    dpid = daemon_socket.proc.pid
    zpid = agentbox.daemon_info(url=url)["zygote_pid"]
    # sandbox inits are clones of the zygote too, but live in their own
    # pid namespace; the zygote shares the daemon's
    assert _ppid(zpid) == dpid and b"--zygote" in _cmdline(zpid)
    assert os.readlink(f"/proc/{zpid}/ns/pid") == os.readlink(f"/proc/{dpid}/ns/pid")
    os.kill(zpid, signal.SIGKILL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with agentbox.Sandbox(tier="heavy", url=url) as b:
                assert b.run("3 * 3").value == "9"
                break
        except agentbox.SandboxError:
            time.sleep(0.2)
    else:
        raise AssertionError("the daemon did not recover from a zygote crash")


def test_zygotes_rotate_for_a_fresh_hash_secret(tmp_path):
    """After --zygote-rotate sandboxes a fresh zygote (a new interpreter: a
    new hash secret, a new address layout) takes over without failing a
    single run, and the old one is stopped."""
    import time
    from conftest import DaemonSocket
    d = DaemonSocket(tmp_path, "--zygote-rotate", "3")
    try:
        url = str(d.path)
        hashes, pids = [], []
        for _ in range(12):
            r = agentbox.run("print(hash('agentbox'))", url=url, tier="nano")
            assert r.ok, r
            hashes.append(r.stdout)
            pids.append(agentbox.daemon_info(url=url)["zygote_pids"]["nano"])
        assert len(set(pids)) >= 2, pids
        assert len(set(hashes)) >= 2, hashes
        time.sleep(0.5)
        retired = set(pids) - {agentbox.daemon_info(url=url)["zygote_pids"]["nano"]}
        for pid in retired:  # stopped and reaped by the daemon
            assert _ppid(pid) != d.proc.pid, pid
    finally:
        d.stop()


def _ppid(pid):
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def _cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return b""

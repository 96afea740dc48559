"""The sandbox side of egress (docs/egress.md, "Inside a sandbox"): a heavy
sandbox's proxy variables, its CA bundle at /etc/agentbox/ca-bundle.pem, its
egress socket at /run/agentbox/egress.sock and init's relay on
127.0.0.1:3128, which copies bytes to and from the daemon's end of that
socket. Nano sandboxes get none of it.

The sidecar answers the requests here with 403 (no rule allows the test
host): what matters is that bytes go both ways through the relay. What is
decided and how is in test_egress.py and test_egress_sidecar.py."""
import os
import pathlib
import shutil
import stat
import subprocess
import tempfile
import time

import pytest

import agentbox
from conftest import BUILD, UID_ARGS, UID_BASE, DaemonSocket, stop_process

EGRESS_ENV = {
    "HTTP_PROXY": "http://127.0.0.1:3128",
    "HTTPS_PROXY": "http://127.0.0.1:3128",
    "http_proxy": "http://127.0.0.1:3128",
    "https_proxy": "http://127.0.0.1:3128",
    "NO_PROXY": "localhost,127.0.0.1,::1",
    "no_proxy": "localhost,127.0.0.1,::1",
    "SSL_CERT_FILE": "/etc/agentbox/ca-bundle.pem",
    "REQUESTS_CA_BUNDLE": "/etc/agentbox/ca-bundle.pem",
    "CURL_CA_BUNDLE": "/etc/agentbox/ca-bundle.pem",
    "PIP_CERT": "/etc/agentbox/ca-bundle.pem",
}

# A request the sidecar answers (with a 403: no rule allows it).
HTTP_REQUEST = (b"GET http://relay-test.invalid/ HTTP/1.1\r\n"
                b"Host: relay-test.invalid\r\nConnection: close\r\n\r\n")


@pytest.fixture(scope="module")
def egress_daemon(tmp_path_factory):
    home = tmp_path_factory.mktemp("egress-home")
    d = DaemonSocket(home, "--pool", "0", "--nano-pool", "0")
    yield d
    d.stop()


def host_socket(pid, home, sandbox_id):
    """The host end of a sandbox's egress socket, as the daemon sees it: as
    root on the egress module's tmpfs in the daemon's own mount namespace
    (reached through /proc/PID/root), else in the sandbox's directory."""
    private = pathlib.Path(f"/proc/{pid}/root{home}/egress/run/{sandbox_id}.sock")
    if os.geteuid() == 0:
        return private
    return home / "sessions" / sandbox_id / "egress.sock"


@pytest.fixture(scope="module")
def ebox(egress_daemon):
    b = agentbox.Sandbox(tier="heavy", url=str(egress_daemon.path))
    yield b
    b.close()


def run_ok(box, code, timeout=60):
    r = box.run(code, timeout=timeout)
    assert r.error is None, f"{r!r}\nstderr: {r.stderr}"
    return r


def test_heavy_sandbox_has_the_proxy_variables_in_python_and_in_children(ebox):
    r = run_ok(ebox, """
import json, os, subprocess, sys
keys = %r
print(json.dumps({k: os.environ.get(k) for k in keys}))
child = subprocess.run([sys.executable, '-c',
    'import json, os; print(json.dumps({k: os.environ.get(k) for k in %%r}))' %% (keys,)],
    capture_output=True, text=True, check=True)
print(child.stdout.strip())
shell = subprocess.run(['/bin/sh', '-c', 'echo "$HTTPS_PROXY|$SSL_CERT_FILE"'],
                       capture_output=True, text=True, check=True)
print(shell.stdout.strip())
""" % (sorted(EGRESS_ENV),))
    import json
    lines = r.stdout.strip().splitlines()
    assert json.loads(lines[0]) == EGRESS_ENV
    assert json.loads(lines[1]) == EGRESS_ENV
    assert lines[2] == "http://127.0.0.1:3128|/etc/agentbox/ca-bundle.pem"


def test_ca_bundle_is_mounted_read_only(ebox):
    r = run_ok(ebox, """
import os
p = '/etc/agentbox/ca-bundle.pem'
data = open(p).read()
print('CERT' if '-----BEGIN CERTIFICATE-----' in data else 'NOCERT')
for how in ('a', 'w'):
    try:
        open(p, how)
        print('WRITABLE', how)
    except OSError as e:
        print('refused', how, e.errno)
try:
    os.unlink(p)
    print('UNLINKED')
except OSError as e:
    print('unlink refused', e.errno)
""")
    assert "CERT" in r.stdout.split()
    assert "WRITABLE" not in r.stdout and "UNLINKED" not in r.stdout
    assert r.stdout.count("refused") == 3


def test_egress_socket_is_there_and_cannot_be_removed(ebox):
    r = run_ok(ebox, """
import os, stat
p = '/run/agentbox/egress.sock'
print('SOCK' if stat.S_ISSOCK(os.stat(p).st_mode) else 'NOTSOCK')
for f in (lambda: os.unlink(p), lambda: os.rename(p, '/tmp/x'),
          lambda: os.mkdir('/run/agentbox/x')):
    try:
        f()
        print('CHANGED')
    except OSError as e:
        print('refused', e.errno)
""")
    assert r.stdout.split()[0] == "SOCK"
    assert "CHANGED" not in r.stdout
    assert r.stdout.count("refused") == 3


def test_host_socket_is_private_and_the_sandboxs(ebox, egress_daemon):
    path = host_socket(egress_daemon.proc.pid, egress_daemon.home, ebox.id)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    # the sandbox's host uid: its own as root (--uid-base), else the daemon's
    if os.geteuid() == 0:
        assert UID_BASE <= st.st_uid < UID_BASE + 65536
    else:
        assert st.st_uid == os.geteuid()


def test_relay_listens_on_loopback_3128_and_answers(ebox):
    r = run_ok(ebox, """
import socket
s = socket.create_connection(('127.0.0.1', 3128), timeout=10)
s.sendall(%r)
got = s.recv(65536)
print('GOT', len(got) > 0)
s.close()
""" % (HTTP_REQUEST,))
    assert "GOT True" in r.stdout


def test_relay_is_the_only_listener_on_3128(ebox):
    """User code cannot take the relay's port, on any loopback address."""
    r = run_ok(ebox, """
import socket
for addr in ('127.0.0.1', '0.0.0.0'):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((addr, 3128))
        s.listen()
        print('BOUND', addr)
    except OSError as e:
        print('refused', addr, e.errno)
    s.close()
""")
    assert "BOUND" not in r.stdout
    assert r.stdout.count("refused") == 2


def test_nano_sandbox_has_no_egress(egress_daemon):
    with agentbox.Sandbox(tier="nano", url=str(egress_daemon.path), memory_mb=256) as b:
        assert b.tier == "nano"
        r = b.run("""
import os
print(sorted(k for k in os.environ if 'proxy' in k.lower() or k in %r))
print(os.path.exists('/run/agentbox'), os.path.exists('/etc/agentbox'))
""" % (sorted(EGRESS_ENV),))
        assert r.error is None, r
        assert r.stdout.split("\n")[:2] == ["[]", "False False"]
        own = egress_daemon.home / "sessions" / b.id
        assert own.is_dir() and not (own / "egress.sock").exists()
        assert not host_socket(egress_daemon.proc.pid, egress_daemon.home, b.id).exists()


def test_socket_goes_with_its_sandbox(egress_daemon):
    b = agentbox.Sandbox(tier="heavy", url=str(egress_daemon.path))
    path = host_socket(egress_daemon.proc.pid, egress_daemon.home, b.id)
    assert path.exists()
    b.close()
    deadline = time.time() + 20
    while path.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert not path.exists()


@pytest.mark.parametrize("pids, cap", [(None, 128), (2048, 28)], ids=["default", "nofile64"])
def test_a_flood_of_connections_leaves_init_and_relay_working(egress_daemon, pids, cap):
    """200 connections held open (more than init relays: 128, or what its
    descriptor limit allows, 28 at 64 descriptors with 2048 pids), each
    sending an unfinished request head the sidecar keeps waiting for and
    never reading, then all dropped at once: init survives, the sandbox
    runs, and the relay serves the next connection."""
    kw = {"pids": pids} if pids else {}
    with agentbox.Sandbox(tier="heavy", url=str(egress_daemon.path), **kw) as b:
        r = run_ok(b, """
import os, socket, struct, time
held, refused = [], 0
for i in range(200):
    try:
        s = socket.create_connection(('127.0.0.1', 3128), timeout=5)
        s.setblocking(False)
        try:
            s.send(b"GET http://relay-test.invalid/ HTTP/1.1\\r\\nX-Pad: " + b"a" * 4096)
        except OSError:
            pass
        held.append(s)
    except OSError:
        refused += 1
time.sleep(0.5)
waiting = answered = closed = 0
for s in held:
    try:
        if s.recv(1, socket.MSG_PEEK) != b'':
            answered += 1  # the sidecar's own limit (503), a freed pair
        else:
            closed += 1
    except BlockingIOError:
        waiting += 1  # relayed, the sidecar waits for the rest of the head
    except OSError:
        closed += 1
print('HELD', len(held), 'REFUSED', refused, 'WAITING', waiting, 'ANSWERED', answered,
      'CLOSED', closed)
for s in held:  # RST: what init has not read is discarded
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    s.close()
""", timeout=120)
        words = r.stdout.split()
        assert words[0] == "HELD", r
        # Relayed at once: at most the cap; beyond it init closes at once.
        # (The sidecar answers 503 beyond its own 64 per sandbox, which
        # frees pairs: those are answered, not waiting.)
        assert 0 < int(words[5]) <= cap, r.stdout
        assert int(words[9]) > 0, r.stdout
        # The relay answers again once init has dropped the dead pairs.
        r = run_ok(b, """
import socket, time
deadline, err = time.time() + 20, None
while True:
    try:
        s = socket.create_connection(('127.0.0.1', 3128), timeout=10)
        s.sendall(%r)
        got = s.recv(65536)
        s.close()
        if got:
            print('ANSWERED')
            break
    except OSError as e:
        err = e
    if time.time() > deadline:
        print('NO ANSWER', err)
        break
    time.sleep(0.1)
""" % (HTTP_REQUEST,))
        assert "ANSWERED" in r.stdout, r
        assert run_ok(b, "print(6 * 7)").stdout.strip() == "42"


def test_user_code_cannot_signal_init_away(ebox):
    """Signals from inside never reach init: after a volley the relay still
    answers."""
    r = run_ok(ebox, """
import os, signal, socket
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGPIPE,
            signal.SIGSEGV, signal.SIGKILL):
    try:
        os.kill(1, sig)
    except OSError as e:
        pass
s = socket.create_connection(('127.0.0.1', 3128), timeout=10)
s.sendall(%r)
print('GOT', len(s.recv(65536)) > 0)
""" % (HTTP_REQUEST,))
    assert "GOT True" in r.stdout


def _start_daemon(sock, home, preexec_fn=None, extra=()):
    proc = subprocess.Popen([str(BUILD / "agentboxd"), "--socket", str(sock), "--home",
                             str(home), "--pool", "0", "--nano-pool", "0", *UID_ARGS, *extra],
                            preexec_fn=preexec_fn, stdin=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not sock.exists():
        if proc.poll() is not None:
            raise RuntimeError("agentboxd exited: " + proc.stderr.read())
        assert time.time() < deadline, "agentboxd did not start"
        time.sleep(0.02)
    return proc


RELAY_PROBE = """
import os, socket
s = socket.create_connection(('127.0.0.1', 3128), timeout=10)
s.sendall(%r)
print(os.environ.get('HTTPS_PROXY'), os.path.exists('/etc/agentbox/ca-bundle.pem'),
      len(s.recv(65536)) > 0)
""" % (HTTP_REQUEST,)


def test_home_too_long_for_a_socket_address(tmp_path):
    """A home whose socket path is longer than a unix socket address can
    be: the daemon binds through a descriptor of the directory, and the
    sandbox opens the long path itself."""
    home = tmp_path / ("h" * 100) / ("o" * 100)
    home.mkdir(parents=True)
    sock = tmp_path / "d.sock"
    proc = _start_daemon(sock, home)
    try:
        with agentbox.Sandbox(tier="heavy", url=str(sock)) as b:
            path = host_socket(proc.pid, home, b.id)
            assert len(str(path).split("/root", 1)[-1]) > 108 and stat.S_ISSOCK(os.stat(path).st_mode)
            r = run_ok(b, RELAY_PROBE)
            assert r.stdout.split() == ["http://127.0.0.1:3128", "True", "True"]
    finally:
        stop_process(proc)


NOBODY = 65534


@pytest.mark.filterwarnings("ignore:.*NOT fully isolated")
def test_unprivileged_daemon_gives_its_sandboxes_egress(tmp_path):
    """As nobody (no uid of its own per sandbox): the socket is the
    daemon's uid's, which is the sandbox's root."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to another user")
    base = pathlib.Path(tempfile.mkdtemp(prefix="agentbox-egress-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        home = base / "state"
        home.mkdir()
        os.chown(home, NOBODY, NOBODY)
        sock = home / "d.sock"

        def enter():
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)

        proc = _start_daemon(sock, home, enter, ["--degrade", "cgroup"])
        try:
            with agentbox.Sandbox(tier="heavy", url=str(sock)) as b:
                st = os.stat(home / "sessions" / b.id / "egress.sock")
                assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, 0o600)
                r = run_ok(b, RELAY_PROBE)
                assert r.stdout.split() == ["http://127.0.0.1:3128", "True", "True"]
        finally:
            stop_process(proc)
    finally:
        shutil.rmtree(base, ignore_errors=True)

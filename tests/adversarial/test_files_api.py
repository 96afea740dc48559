"""Adversarial tests, heavy tier: the files API (ADVERSARIAL.md F1, F3, F4, F6).

The sandbox prepares hostile workspace entries from inside (run_probe); the
test then drives box.files from the host and checks the daemon refuses or
bounds them, never follows them out of the workspace and never blocks."""
import hashlib
import os
import threading
import time

import pytest

import agentbox
from agentbox import PathError, InvalidArgument, Sandbox
from conftest import run_probe

SMALL = dict(memory_mb=128, pids=32, timeout=30, disk_mb=32)
# The workspace's inode cap is disk_mb * 64: the many-entries tests need room.
ROOMY = dict(memory_mb=256, pids=32, timeout=60, disk_mb=128)


def assert_healthy():
    assert agentbox.daemon_info()["pid"] > 0
    with Sandbox(tier="heavy", memory_mb=128, pids=32, timeout=10, disk_mb=16) as other:
        r = other.run("print(1)", timeout=10)
        assert r.status == "ok" and r.stdout == "1\n", r


def call_bounded(fn, *args, seconds=5.0):
    """Runs fn(*args) in a thread; fails if it does not finish in time.
    Returns ('ok', value) or ('exc', exception)."""
    out = {}

    def target():
        try:
            out["r"] = ("ok", fn(*args))
        except BaseException as e:  # noqa: BLE001 - reported to the test
            out["r"] = ("exc", e)

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(seconds)
    assert not th.is_alive(), f"{getattr(fn, '__name__', fn)}{args} blocked for {seconds}s"
    return out["r"]


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ------------------------------------------------------------------------ F1

def test_f1_symlinks_to_host_files_and_through_directories_are_refused():
    passwd_before = sha("/etc/passwd")
    with Sandbox(tier="heavy", **SMALL) as b:
        run_probe(b, """
import os
os.symlink('/etc/passwd', 'link')
os.symlink('/etc', 'etclink')
os.symlink('/', 'rootlink')
os.symlink('..', 'up')
os.makedirs('real/sub')
open('real/sub/f.txt', 'w').write('inside')
os.symlink('real', 'dirlink')            # points inside the workspace, still a symlink
os.symlink('sub', 'real/sublink')
os.symlink('/etc/shadow', 'real/sub/shadowlink')
os.symlink('loop', 'loop')
print(sorted(os.listdir('.')))
""")
        assert b.files.read("real/sub/f.txt") == b"inside"
        for path in ["link", "etclink/passwd", "rootlink/etc/passwd", "up/up/etc/passwd",
                     "dirlink/sub/f.txt", "real/sublink/f.txt", "real/sub/shadowlink", "loop",
                     "etclink/../etc/passwd"]:
            kind, v = call_bounded(b.files.read, path)
            assert kind == "exc" and isinstance(v, PathError), (path, v)
            assert v.code == -32003
            assert v.daemon_message
        for path in ["link", "etclink/agentbox-f1-test", "dirlink/sub/new.txt",
                     "real/sub/shadowlink", "rootlink/tmp/agentbox-f1-test"]:
            kind, v = call_bounded(b.files.write, path, "pwned")
            assert kind == "exc" and isinstance(v, PathError), (path, v)
        for path in ["etclink", "rootlink", "dirlink", "up", "real/sublink"]:
            kind, v = call_bounded(b.files.list, path)
            assert kind == "exc" and isinstance(v, PathError), (path, v)
        entries = {e["name"]: e for e in b.files.list("")}
        assert entries["link"]["type"] == "symlink"
        assert entries["dirlink"]["type"] == "symlink"
        assert entries["real"]["type"] == "dir"
        # nothing happened to the host
        assert sha("/etc/passwd") == passwd_before
        assert not os.path.exists("/etc/agentbox-f1-test")
        assert not os.path.exists("/tmp/agentbox-f1-test")
        # the sandbox cannot see a host file through its own symlink either
        r = run_probe(b, "print(open('link').read().count(':') >= 0)")
        assert "True" in r.stdout
        assert b.files.read("real/sub/f.txt") == b"inside"
    assert_healthy()


# ------------------------------------------------------------------------ F3

def test_f3_fifo_socket_and_devices_are_refused_without_blocking():
    with Sandbox(tier="heavy", **SMALL) as b:
        r = run_probe(b, """
import os, socket, stat
os.mkfifo('fifo')
s = socket.socket(socket.AF_UNIX)
s.bind('sock')
s.listen(1)
globals()['_keep'] = s                 # keep the socket bound across runs
try:
    os.mknod('dev', stat.S_IFCHR | 0o666, os.makedev(1, 3))
    print('MKNOD ok')
except OSError as e:
    print('MKNOD', e.errno)
os.makedirs('d')
os.mkfifo('d/fifo2')
""")
        names = ["fifo", "sock", "d/fifo2"] + (["dev"] if "MKNOD ok" in r.stdout else [])
        t = time.time()
        for path in names:
            kind, v = call_bounded(b.files.read, path, seconds=5)
            assert kind == "exc" and isinstance(v, PathError), (path, v)
            kind, v = call_bounded(b.files.write, path, "x", seconds=5)
            assert kind == "exc" and isinstance(v, PathError), (path, v)
        assert time.time() - t < 10
        kind, v = call_bounded(b.files.list, "", seconds=5)
        assert kind == "ok", v
        types = {e["name"]: e["type"] for e in v}
        assert types["fifo"] == "other" and types["sock"] == "other", types
        kind, v = call_bounded(b.files.list, "fifo", seconds=5)
        assert kind == "exc" and isinstance(v, PathError), v
        # no reader was left attached to the FIFO: a non-blocking writer sees none
        r = run_probe(b, """
import os, errno
try:
    fd = os.open('fifo', os.O_WRONLY | os.O_NONBLOCK)
    print('FIFO-READER present')
    os.close(fd)
except OSError as e:
    print('FIFO-READER', e.errno)
""")
        assert "FIFO-READER 6" in r.stdout, r.stdout  # ENXIO: nobody holds it open
    assert_healthy()


# ------------------------------------------------------------------------ F4

def test_f4_sparse_terabyte_file_is_bounded():
    with Sandbox(tier="heavy", **SMALL) as b:
        r = run_probe(b, """
import os
fd = os.open('sparse', os.O_CREAT | os.O_WRONLY, 0o644)
try:
    os.ftruncate(fd, 1 << 40)
    print('TRUNC ok')
except OSError as e:
    print('TRUNC', e.errno)
os.close(fd)
print('SIZE', os.stat('sparse').st_size)
""")
        size = int(r.stdout.split("SIZE")[1].split()[0])
        assert "TRUNC ok" in r.stdout or "TRUNC 27" in r.stdout, r.stdout
        t = time.time()
        kind, v = call_bounded(b.files.read, "sparse", seconds=10)
        if size > 64 << 20:
            assert kind == "exc" and isinstance(v, PathError), v
        else:
            assert kind == "ok" and len(v) == size
        entries = {e["name"]: e for e in b.files.list("")}
        assert entries["sparse"]["size"] == size
        assert time.time() - t < 10
    assert_healthy()


def test_f4_5000_deep_directories_list_and_close_bounded():
    home = os.environ["AGENTBOX_HOME"]
    b = Sandbox(tier="heavy", **ROOMY)
    try:
        r = run_probe(b, """
import os
base = os.open('.', os.O_RDONLY)
n = 0
for i in range(5000):
    os.mkdir('d')
    os.chdir('d')
    n += 1
open('bottom.txt', 'w').write('deep')
os.fchdir(base)
print('DEPTH', n)
""", timeout=60)
        assert "DEPTH 5000" in r.stdout
        kind, v = call_bounded(b.files.list, "", seconds=10)
        assert kind == "ok", v
        assert {"name": "d", "type": "dir"}.items() <= {**v[0]}.items() or \
            any(e["name"] == "d" for e in v)
        kind, v = call_bounded(b.files.list, "/".join(["d"] * 60), seconds=10)
        assert kind == "ok", v
        assert any(e["name"] == "d" and e["type"] == "dir" for e in v), v
        # deeper than the daemon's documented path depth: refused, with the reason
        kind, v = call_bounded(b.files.list, "/".join(["d"] * 100), seconds=10)
        assert kind == "exc" and isinstance(v, PathError), v
        assert "deeper" in str(v), v
        # a path far past PATH_MAX is refused, not walked
        kind, v = call_bounded(b.files.read, "/".join(["d"] * 5000) + "/bottom.txt", seconds=10)
        assert kind == "exc" and isinstance(v, (PathError, InvalidArgument)), v
    finally:
        t = time.time()
        kind, v = call_bounded(b.close, seconds=60)
        took = time.time() - t
    assert kind == "ok", v
    # close answers once the teardown has begun; the removal follows, bounded
    ws = os.path.join(home, "sessions", b.id)
    while os.path.exists(ws) and time.time() - t < 30:
        time.sleep(0.05)
    took = time.time() - t
    assert took < 30, f"close and the workspace's removal took {took:.1f}s"
    assert not os.path.exists(ws), "the 5000-deep workspace was not removed after close"
    assert_healthy()


def test_f4_names_with_newlines_and_invalid_utf8_are_listed_safely():
    with Sandbox(tier="heavy", **ROOMY) as b:
        run_probe(b, """
import os
open('a\\nb', 'w').write('nl')
open(b'bad\\xff\\xfename', 'wb').write(b'x')
open(b'\\xc3(', 'wb').write(b'y')
open('ok\\x1b[31m.txt', 'w').write('esc')
open('\\u00e9t\\u00e9', 'w').write('utf8')
for i in range(3000):
    open('many%05d' % i, 'w').close()
""")
        kind, v = call_bounded(b.files.list, "", seconds=10)
        assert kind == "ok", v
        names = {e["name"] for e in v}
        assert "a\nb" in names
        assert "bad\ufffd\ufffdname" in names, sorted(n for n in names if "name" in n)
        assert "\ufffd(" in names
        assert "ok\x1b[31m.txt" in names
        assert "\u00e9t\u00e9" in names
        assert sum(1 for n in names if n.startswith("many")) == 3000
        assert b.files.read("a\nb") == b"nl"
        assert b.files.read("\u00e9t\u00e9") == b"utf8"
        # the U+FFFD form is not the real name: reading it finds nothing, safely
        kind, v = call_bounded(b.files.read, "bad\ufffd\ufffdname", seconds=5)
        assert kind == "exc" and isinstance(v, agentbox.SandboxError), v
        assert b.run("print(1)", timeout=5).stdout == "1\n"
    assert_healthy()


# ------------------------------------------------------------------------ F6

@pytest.mark.parametrize("path,words", [
    ("../x", [".."]),
    ("/etc/passwd", ["absolute"]),
    ("a/../../x", [".."]),
    ("a/../x", [".."]),
    ("", ["empty"]),
    ("./../x", [".."]),
    ("x/..", [".."]),
    ("//etc/passwd", ["absolute"]),
])
def test_f6_traversal_and_absolute_paths_are_refused_with_a_clear_error(path, words):
    with Sandbox(tier="heavy", **SMALL) as b:
        for op in (lambda: b.files.read(path), lambda: b.files.write(path, "x"),
                   lambda: b.files.list(path) if path else b.files.read(path)):
            with pytest.raises((PathError, InvalidArgument)) as ei:
                op()
            msg = str(ei.value).lower()
            assert any(w in msg for w in words), (path, str(ei.value))
        assert not os.path.exists("/x")
    # the daemon answers the same for raw requests (the SDK's checks bypassed)
    assert_healthy()


def test_f6_nul_byte_in_a_path_is_refused_promptly():
    with Sandbox(tier="heavy", **SMALL) as b:
        for fn, args in ((b.files.read, ("a\x00b",)), (b.files.write, ("a\x00b", "x")),
                         (b.files.list, ("a\x00b",))):
            kind, v = call_bounded(fn, *args, seconds=10)
            assert kind == "exc" and isinstance(v, (PathError, InvalidArgument)), v
            assert "nul" in str(v).lower(), v
    assert_healthy()


def test_f6_daemon_refuses_without_sdk_checks(daemon_socket):
    import json
    rep = daemon_socket.rpc_lines([json.dumps({"jsonrpc": "2.0", "id": 1,
                                               "method": "sandbox.create",
                                               "params": {"limits": {"memory_mb": 128,
                                                                     "disk_mb": 16}}}) + "\n"],
                                  timeout=60)
    assert "result" in rep[0], rep
    # the sandbox belongs to that (closed) connection; use one connection for all
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(str(daemon_socket.path))
    f = s.makefile("rb")

    def call(i, method, params):
        s.sendall((json.dumps({"jsonrpc": "2.0", "id": i, "method": method,
                               "params": params}) + "\n").encode())
        while True:
            m = json.loads(f.readline())
            if m.get("id") == i:
                return m

    sid = call(1, "sandbox.create", {"limits": {"memory_mb": 128, "disk_mb": 16}})
    sid = sid["result"]["sandbox"]
    for i, p in enumerate(["../x", "/etc/passwd", "a/../../x", "", "..", ".", "a//../../b"],
                          start=10):
        for method in ("sandbox.files.read", "sandbox.files.write"):
            params = {"sandbox": sid, "path": p}
            if method.endswith("write"):
                params["data"] = "x"
            m = call(i, method, params)
            assert "error" in m, (p, method, m)
            assert m["error"]["code"] in (-32003, -32602), (p, m)
            assert m["error"]["message"]
    s.close()

"""Shared pytest fixtures for the integration and adversarial tests.

Everything here drives the real binaries in build/ (or $AGENTBOX_BIN) and
the SDK in python/, as a user would. Each test session gets its own
$AGENTBOX_HOME under pytest's temporary directory."""
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
BUILD = pathlib.Path(os.environ.get("AGENTBOX_BIN", REPO / "build"))
sys.path.insert(0, str(REPO / "python"))

import agentbox  # noqa: E402

# Under pytest-xdist each worker ("gw0", "gw1", ...) runs its own daemons at
# the same time as the others. As root, a daemon maps each sandbox to host uid
# --uid-base + slot (default 1000000000 + 0..65535): two workers' daemons
# would hand the same host uid to sandboxes of different daemons, which is
# exactly what the isolation tests must not see. So every worker gets a range
# of its own, UID_STRIDE apart, and every daemon the tests start uses it:
# directly (UID_ARGS) or, for the daemons the SDK and the CLI start
# themselves, through $AGENTBOX_DAEMON naming a one-line wrapper (see
# agentbox_home). Without xdist (index 0) nothing changes.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
WORKER_INDEX = int(XDIST_WORKER[2:]) if XDIST_WORKER.startswith("gw") else 0
UID_STRIDE = 100000  # more than the daemon's 65536 uid slots
UID_BASE = 1000000000 + WORKER_INDEX * UID_STRIDE
UID_ARGS = ["--uid-base", str(UID_BASE)]


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line(
        "markers", "serial: measures time or load of the whole machine, or loads it; "
        "scripts/run-tests.sh runs these after the parallel part, one at a time")


@pytest.fixture(scope="session", autouse=True)
def agentbox_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("agentbox-home")
    os.environ["AGENTBOX_HOME"] = str(home)
    os.environ["AGENTBOX_BIN"] = str(BUILD)
    if XDIST_WORKER:
        # The SDK's and the CLI's private daemons: exec (same pid, same
        # /proc/self/exe) agentboxd with this worker's uid range.
        wrapper = tmp_path_factory.mktemp("daemon-" + XDIST_WORKER) / "agentboxd"
        wrapper.write_text(f'#!/bin/sh\nexec "{BUILD / "agentboxd"}" {" ".join(UID_ARGS)} "$@"\n')
        wrapper.chmod(0o755)
        os.environ["AGENTBOX_DAEMON"] = str(wrapper)
    yield home


@pytest.fixture
def box():
    """A fresh heavy sandbox through the embedded daemon; closed afterwards."""
    b = agentbox.Sandbox(tier="heavy")
    yield b
    b.close()


# Attack probes refuse to run anywhere but inside a sandbox: the sandbox's
# own hostname and seccomp mode 2 (read from /proc where the tier has one;
# nano has no /proc, and there a socket() refused by the filter shows it).
# A probe that somehow ran on the host would stop here instead of attacking.
PROBE_GUARD = """
import os as _os, socket as _socket
if _os.path.exists('/proc/self/status'):
    _ok = 'Seccomp:\\t2' in open('/proc/self/status').read()
else:
    try:
        _socket.socket().close()
        _ok = False
    except PermissionError:
        _ok = True
if not _ok or _socket.gethostname() != 'sandbox':
    raise SystemExit('probe refused: not inside an agentbox sandbox')
del _os, _socket, _ok
"""


class Profile:
    """One backend profile the escape and leak catalogue runs against: how
    to make its sandbox, and the facts of the tier a probe may adapt to (a
    path it may aim at, whether it can fork to isolate a call that kills).
    What each attack must end in on each profile is in
    tests/adversarial/expected.py, keyed by the profile's name."""

    def __init__(self, name, sandbox, fork, proc, scratch, outcomes=None, rewound=False):
        self.name = name
        self.sandbox = sandbox      # keyword arguments of agentbox.Sandbox
        self.fork = fork            # fork/clone of a process (in_child)
        self.proc = proc            # a /proc of its own
        self.scratch = scratch      # a directory to aim mounts and writes at
        # the column of expected.py it must match (a variant of a tier
        # matches its tier's), and whether its session runs in a copy
        # restored by a rewind (docs/time-travel.md)
        self.outcomes = outcomes or name
        self.rewound = rewound

    def __repr__(self):
        return self.name


# Every backend profile; a new backend (Wasm, gVisor, ...) is one more entry
# here plus its column of outcomes in tests/adversarial/expected.py.
BACKEND_PROFILES = [
    Profile("heavy", dict(tier="heavy"), fork=True, proc=True, scratch="/tmp"),
    Profile("nano", dict(tier="nano", memory_mb=256, timeout=20), fork=False, proc=False,
            scratch="/workspace"),
    # the heavy tier again, in an executor restored by a rewind: the escape
    # catalogue must hold there too
    Profile("heavy-rewound", dict(tier="heavy"), fork=True, proc=True, scratch="/tmp",
            outcomes="heavy", rewound=True),
]


@pytest.fixture(scope="module", params=BACKEND_PROFILES, ids=lambda p: p.name)
def profile(request):
    return request.param


@pytest.fixture(scope="module")
def pbox(profile):
    """One sandbox of the profile for a module's probes: a probe that
    changes process state does so in a forked child (where the tier has
    fork) or sticks to what it can undo."""
    b = agentbox.Sandbox(**profile.sandbox)
    assert b.tier == profile.sandbox["tier"]
    if profile.rewound:
        rewind_once(b)
    yield b
    b.close()


def rewind_once(box):
    """Two steps, then a rewind to the state before the second: the session
    goes on in a copy resumed from a parked snapshot."""
    import time
    assert box.run("before_rewind = 1").ok and box.run("before_rewind = 2").ok
    deadline = time.time() + 10
    while time.time() < deadline:
        s = box.history()["steps"][1]["snapshot"]["memory"]
        if s != "pending":
            break
        time.sleep(0.02)
    r = box.rewind(2)
    assert r["restored"]["memory"] == "snapshot", r
    assert box.run("before_rewind").value == "1"


def run_probe(box, code, timeout=30):
    """Runs an attack probe in box, guarded by PROBE_GUARD, and asserts that
    it actually ran to the end: the marker PROBE-RAN is printed last.
    Returns the Execution."""
    r = box.run(PROBE_GUARD + code + "\nprint('PROBE-RAN')", timeout=timeout)
    assert "PROBE-RAN" in r.stdout, f"probe did not run to the end: {r!r}\nstderr: {r.stderr}"
    return r


@pytest.fixture
def cli():
    """Runs the agentbox CLI; returns CompletedProcess (text)."""
    def run(*args, input=None, timeout=120, env=None):
        e = dict(os.environ)
        if env:
            e.update(env)
        return subprocess.run([str(BUILD / "agentbox"), *args], input=input, text=True,
                              capture_output=True, timeout=timeout, env=e)
    return run


def stop_process(proc, grace=20):
    """SIGTERM a process this test started, SIGKILL it after grace seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class DaemonSocket:
    """An agentboxd serving a unix socket in a private home."""

    def __init__(self, home, *extra, user=None):
        self.home = pathlib.Path(home)
        self.path = self.home / "agentboxd.sock"
        cmd = [str(BUILD / "agentboxd"), "--socket", str(self.path), "--home", str(self.home),
               "--pool", "1", "--nano-pool", "1", *UID_ARGS, *extra]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        while not self.path.exists():
            if self.proc.poll() is not None:
                raise RuntimeError("agentboxd exited: " + self.proc.stderr.read())
            if time.time() > deadline:
                self.proc.kill()
                raise RuntimeError("agentboxd did not create its socket")
            time.sleep(0.02)

    def rpc_lines(self, lines, timeout=30, expect=None):
        """Sends raw lines on a fresh connection; returns the parsed replies
        that carry an "id" key, in arrival order (expect: how many to wait
        for, default one per line)."""
        import socket
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(str(self.path))
        for line in lines:
            s.sendall(line if isinstance(line, bytes) else line.encode())
        f = s.makefile("rb")
        out = []
        expected = len(lines) if expect is None else expect
        while len(out) < expected:
            raw = f.readline()
            if not raw:
                break
            msg = json.loads(raw)
            if "id" in msg:
                out.append(msg)
        s.close()
        return out

    def stop(self):
        stop_process(self.proc)


class RawClient:
    """One JSON-RPC connection to a daemon's socket, spoken by hand, for what
    the SDK does not do: requests in flight together, limits it refuses,
    malformed or hostile requests. target: a socket path or a DaemonSocket.
    Records the longest line the daemon sent."""

    def __init__(self, target, timeout=120):
        import socket
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(str(getattr(target, "path", target)))
        self.f = self.sock.makefile("rwb")
        self.next_id = 0
        self.longest = 0

    def send(self, i, method, **params):
        self.f.write((json.dumps({"jsonrpc": "2.0", "id": i, "method": method,
                                  "params": params}) + "\n").encode())
        self.f.flush()

    def _message(self, during):
        raw = self.f.readline()
        assert raw, f"the daemon closed the connection during {during}"
        self.longest = max(self.longest, len(raw))
        return json.loads(raw)

    def replies(self, n):
        """The next n responses, by id (notifications are skipped)."""
        out = {}
        while len(out) < n:
            msg = self._message("replies")
            if "id" in msg:
                out[msg["id"]] = msg
        return out

    def call(self, method, params=None, **kw):
        """Sends one request and returns its response (notifications are
        skipped). Params as a dict, as keywords, or both."""
        self.next_id += 1
        self.send(self.next_id, method, **dict(params or {}, **kw))
        while True:
            msg = self._message(method)
            if msg.get("id") == self.next_id:
                return msg

    def close(self):
        self.f.close()  # the socket stays open while its file object does
        self.sock.close()


def host_descendants(pid):
    """Host pids below pid (through /proc/<pid>/task/*/children)."""
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            out += kids
            stack += kids
    return out


@pytest.fixture
def daemon_socket(tmp_path):
    d = DaemonSocket(tmp_path)
    yield d
    d.stop()

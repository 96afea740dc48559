"""The daemon running as an unprivileged user (here: nobody), isolating
through user namespaces. Root delegates a cgroup to it first, as systemd
would (Delegate=yes), so that the cgroup layer works without privilege."""
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

import pytest

import agentbox
from conftest import BUILD, stop_process

NOBODY = 65534
CONTROLLERS = ["memory", "pids", "cpu", "cpuacct", "freezer"]


def own_cgroup_dirs():
    """This process's cgroup directory in each v1 hierarchy we delegate."""
    dirs = {}
    for line in open("/proc/self/cgroup"):
        _, ctrls, path = line.rstrip("\n").split(":", 2)
        for c in ctrls.split(","):
            if c in CONTROLLERS and os.path.isdir(f"/sys/fs/cgroup/{c}"):
                dirs[c] = pathlib.Path(f"/sys/fs/cgroup/{c}{path}")
    return dirs


@pytest.fixture
def unprivileged_daemon():
    if os.geteuid() != 0:
        pytest.skip("needs root to set up the unprivileged user and its cgroup")
    dirs = own_cgroup_dirs()
    if "memory" not in dirs or "pids" not in dirs:
        pytest.skip("this host has no cgroup v1 memory+pids hierarchy to delegate "
                    "(the v2 delegation path is covered by the cgroup unit tests)")
    name = f"agentbox-test-deleg-{os.getpid()}"
    made = []
    for c, d in dirs.items():
        g = d / name
        g.mkdir()
        made.append(g)
        for f in [g, *g.iterdir()]:
            os.chown(f, NOBODY, NOBODY)
    home = pathlib.Path(tempfile.mkdtemp(prefix="agentbox-unpriv-", dir="/tmp"))
    os.chmod(home, 0o755)
    state = home / "state"
    state.mkdir()
    os.chown(state, NOBODY, NOBODY)
    sock = state / "d.sock"

    def enter():
        for g in made:
            (g / "cgroup.procs").write_text(str(os.getpid()))
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    proc = subprocess.Popen([str(BUILD / "agentboxd"), "--socket", str(sock), "--home",
                             str(state), "--pool", "1"], preexec_fn=enter,
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not sock.exists():
        if proc.poll() is not None:
            raise RuntimeError("unprivileged agentboxd exited: " + proc.stderr.read())
        assert time.time() < deadline, "unprivileged agentboxd did not start"
        time.sleep(0.02)
    yield proc, sock, state
    stop_process(proc)
    for g in made:
        for _ in range(50):
            try:
                g.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    shutil.rmtree(home, ignore_errors=True)


def test_unprivileged_daemon_runs_sandboxes(unprivileged_daemon):
    proc, sock, state = unprivileged_daemon
    info = agentbox.daemon_info(url=str(sock))
    assert info["uid"] == NOBODY
    assert all(v == "present" for v in info["layers"].values()), info
    with agentbox.Sandbox(tier="heavy", url=str(sock), memory_mb=128) as b:
        r = b.run("import os\nst = open('/proc/self/status').read()\n"
                  "print(os.getuid(), 'Seccomp:\\t2' in st, 'CapEff:\\t0000000000000000' in st,"
                  " 'NoNewPrivs:\\t1' in st)\n"
                  "open('/workspace/f', 'w').write('w')")
        assert r.stdout == "0 True True True\n", r
        # the sandbox's files are owned by the daemon's user on the host
        ws = state / "sessions" / b.id / "workspace"
        assert os.stat(ws / "f").st_uid == NOBODY
        assert b.files.read("f") == b"w"
        # a file in parts (O_TMPFILE, linked into place) works without privilege
        big = os.urandom(6 << 20)
        assert b.files.write("d/big.bin", big) == len(big)
        assert b.files.read("d/big.bin") == big
        assert os.stat(ws / "d" / "big.bin").st_uid == NOBODY
        # limits still hold without privilege
        r = b.run("x = bytearray(400 * 1024 * 1024)")
        assert r.status == "killed" and r.limit == "memory", r
    with agentbox.Sandbox(tier="heavy", url=str(sock)) as b:
        assert b.run("import pandas as pd\nprint(pd.DataFrame({'A': [1, 2, 3]}).A.sum())"
                     ).stdout == "6\n"


def test_unprivileged_without_cgroup_refuses_to_start(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to another user")
    home = pathlib.Path(tempfile.mkdtemp(prefix="agentbox-unpriv-", dir="/tmp"))
    os.chown(home, NOBODY, NOBODY)
    try:
        p = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                            "--clear-groups", str(BUILD / "agentboxd"), "--stdio", "--home",
                            str(home)], input="", capture_output=True, text=True, timeout=60)
        # nobody's own cgroup belongs to root: the cgroup layer is missing
        assert p.returncode == 1
        assert 'isolation layer "cgroup" is missing' in p.stderr
        assert "--degrade cgroup" in p.stderr
        # the operator may degrade explicitly, and then results say so
        d = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                              "--clear-groups", str(BUILD / "agentboxd"), "--stdio", "--home",
                              str(home), "--degrade", "cgroup", "--pool", "0"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            d.stdin.write('{"jsonrpc":"2.0","id":1,"method":"sandbox.create"}\n')
            d.stdin.flush()
            import json
            reply = json.loads(d.stdout.readline())
        finally:
            d.stdin.close()
            d.wait(30)
        assert reply["result"]["degraded"] == ["cgroup"], reply
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _as_nobody(args, home, **kw):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "AGENTBOX_HOME": str(home / "state"),
           "PYTHONPATH": str(BUILD.parent / "python"), "AGENTBOX_BIN": str(BUILD)}
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups", *args], capture_output=True, text=True,
                          env=env, timeout=180, **kw)


@pytest.fixture
def nobody_home():
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to another user")
    home = pathlib.Path(tempfile.mkdtemp(prefix="agentbox-unpriv-", dir="/tmp"))
    os.chown(home, NOBODY, NOBODY)
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_doctor_prints_the_cgroup_recipe_for_an_ordinary_user(nobody_home):
    p = _as_nobody([str(BUILD / "agentbox"), "doctor"], nobody_home)
    assert p.returncode == 1
    assert "cgroup        missing" in p.stdout
    assert "systemd-run --user -p Delegate=yes --scope" in p.stdout
    assert str(BUILD / "agentboxd") + ' --socket "$XDG_RUNTIME_DIR/agentbox.sock"' in p.stdout
    assert "--degrade cgroup" in p.stdout


def test_ordinary_user_can_degrade_from_the_cli_and_is_warned(nobody_home):
    p = _as_nobody([str(BUILD / "agentbox"), "run", "-c", "print(6 * 7)"], nobody_home)
    assert p.returncode == 125 and 'isolation layer "cgroup" is missing' in p.stderr
    p = _as_nobody([str(BUILD / "agentbox"), "run", "--tier", "heavy", "--degrade", "cgroup",
                    "-c", "print(6 * 7)"], nobody_home)
    assert p.returncode == 0 and p.stdout == "42\n", p.stderr
    assert "NOT fully isolated" in p.stderr
    assert "cgroup: memory, CPU and process limits are NOT enforced" in p.stderr


SDK_SCRIPT = """
import warnings, agentbox
try:
    agentbox.Sandbox()
except agentbox.DaemonError as e:
    print("ERROR:", e)
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    with agentbox.Sandbox(tier="heavy", degrade=["cgroup"]) as box:
        r = box.run("print(6 * 7)")
        box.run("1")
    print("OUT:", r.stdout.strip(), r.degraded, box.degraded)
    print("WARNINGS:", [type(x.message).__name__ for x in w])
"""


def test_ordinary_user_can_degrade_from_the_sdk_and_sees_the_reason(nobody_home):
    p = _as_nobody(["/usr/bin/python3", "-c", SDK_SCRIPT], nobody_home)
    assert p.returncode == 0, p.stderr
    assert 'ERROR:' in p.stdout and 'isolation layer "cgroup" is missing' in p.stdout
    assert "Sandbox(degrade=[...])" in p.stdout
    assert "OUT: 42 ['cgroup'] ['cgroup']" in p.stdout
    assert "WARNINGS: ['DegradedWarning']" in p.stdout


def test_learned_cells_are_not_shared_across_uids(unprivileged_daemon):
    # The daemon runs as nobody and accepts root and nobody. A cell that
    # root's runs taught it goes to heavy directly for root only: nobody
    # running the same code cannot tell, from its route_reason, that root
    # ran it (it is tried in nano and rerun, as any unknown cell).
    import json
    import uuid
    proc, sock, state = unprivileged_daemon
    code = ("import os\npid = getattr(os, 'fo' + 'rk')()\nif pid == 0:\n    os._exit(0)\n"
            f"print('forked', os.waitpid(pid, 0)[1])\n# {uuid.uuid4()}")
    r = agentbox.run(code, url=str(sock))
    assert r.ok and r.promoted, r
    r = agentbox.run(code, url=str(sock))
    assert r.route_reason.startswith("learned:") and not r.promoted, r
    probe = ("import json, sys, agentbox\n"
             "r = agentbox.run(sys.argv[1], url=sys.argv[2])\n"
             "print(json.dumps([r.status, r.promoted, r.route_reason]))")
    p = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                        "/usr/bin/python3", "-c", probe, code, str(sock)],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(BUILD.parent / "python"),
                                HOME=str(state)))
    assert p.returncode == 0, p.stderr
    status, promoted, reason = json.loads(p.stdout)
    assert status == "ok" and promoted and reason.startswith("rerun in heavy"), reason
    text = (state / "routes.json").read_text()
    assert "Errno" not in text and len(json.loads(text)["cells"]) == 2, text

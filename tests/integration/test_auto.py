"""tier="auto" (the default): each run is routed to nano or heavy, a session
that needs heavy is promoted (files copied, earlier steps replayed), a nano
run that fails because of the tier is rerun in heavy, and the cause is
learned in $AGENTBOX_HOME/routes.json (docs/router.md)."""
import ctypes
import json
import os
import socket
import subprocess
import time
import uuid

import pytest

import agentbox
from agentbox import Sandbox
from conftest import BUILD, DaemonSocket

# A dynamic import the router cannot see: nano lacks numpy, heavy has it.
HIDDEN_NUMPY = "m = getattr(__builtins__, '__import__')('num' + 'py')\nprint(m.__name__)"
# A call the nano jail refuses (seccomp: EPERM) but heavy allows.
HIDDEN_FORK = ("import os\nprint('before')\npid = getattr(os, 'fo' + 'rk')()\n"
               "if pid == 0:\n    os._exit(0)\nprint('forked', os.waitpid(pid, 0)[1])")


def fresh(code):
    """code made unique, so that no cell learned by an earlier test (the
    embedded daemon's home lives as long as the test session) matches it."""
    return code + f"\n# {uuid.uuid4()}"


@pytest.fixture
def daemon(tmp_path):
    d = DaemonSocket(tmp_path)
    yield d
    d.stop()


class RawClient:
    """One connection to a daemon's socket, speaking JSON-RPC by hand (the
    SDK waits for each answer; these tests need requests in flight)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(60)
        self.sock.connect(str(path))
        self.f = self.sock.makefile("rwb")

    def send(self, i, method, **params):
        self.f.write((json.dumps({"jsonrpc": "2.0", "id": i, "method": method,
                                  "params": params}) + "\n").encode())
        self.f.flush()

    def replies(self, n):
        """The next n responses, by id (notifications are skipped)."""
        out = {}
        while len(out) < n:
            msg = json.loads(self.f.readline())
            if "id" in msg:
                out[msg["id"]] = msg
        return out

    def close(self):
        self.f.close()  # the socket stays open while its file object does
        self.sock.close()


def routes_file(d):
    p = d.home / "routes.json"
    return json.loads(p.read_text()) if p.exists() else {"modules": {}, "cells": {}}


def test_auto_session_starts_in_nano_and_routes_each_run():
    with Sandbox() as b:
        assert b.tier == "nano" and b.route_reason.startswith("auto:")
        r = b.run("import json, re\nprint(json.dumps(re.findall('a', 'banana')))")
        assert r.ok and r.tier == "nano" and r.stdout == '["a", "a", "a"]\n', r
        assert r.route_reason == "standard-library code only (json, re)"
        assert r.promoted is False and r.promotion is None


def test_stateful_promotion_copies_files_and_replays_steps():
    with Sandbox() as b:
        sid = b.id
        b.files.write("data/in.csv", "a,b\n1,2\n3,4\n")
        assert b.run("import json\nbase = 100\nnames = ['x']").tier == "nano"
        r = b.run("names.append('y')\nraise ValueError('kept going')")
        assert r.status == "error" and r.tier == "nano"  # failed steps are replayed too
        r = b.run("import pandas as pd\ndf = pd.read_csv('data/in.csv')\n"
                  "print(int(df.a.sum()) + base, names)")
        assert r.ok, r
        assert r.tier == "heavy" and r.promoted is True and b.tier == "heavy"
        assert r.stdout == "104 ['x', 'y']\n", r.stdout
        assert r.route_reason == "imports pandas (not available in nano)"
        p = r.promotion
        assert p["from"] == "nano" and p["to"] == "heavy"
        assert p["files_copied"] == 1 and p["replayed_steps"] == ["ok", "error"], p
        assert r.step == 3 and r.stdout.count("104") == 1  # replayed output is dropped
        # The session keeps its id; later runs stay in heavy and say why.
        r = b.run("import subprocess\nprint(subprocess.run(['true']).returncode, names)")
        assert r.ok and r.tier == "heavy" and not r.promoted, r
        assert r.route_reason == "promoted to heavy at step 3: " \
                                 "imports pandas (not available in nano)"
        assert r.step == 4 and b.id == sid
        # The workspace is heavy's now: writable.
        assert b.run("open('out.txt', 'w').write('hi')").value == "2"
        assert b.files.read_text("out.txt") == "hi"
        kinds = [(e["kind"], e["step"]) for e in b.audit()]
        assert ("sandbox.promote", 3) in kinds, kinds
        promote = [e for e in b.audit() if e["kind"] == "sandbox.promote"][0]
        assert promote["body"]["replayed_steps"] == ["ok", "error"]
        runs = [e["body"]["tier"] for e in b.audit() if e["kind"] == "run"]
        assert runs == ["nano", "nano", "heavy", "heavy", "heavy"], runs


def test_nano_failure_is_rerun_in_heavy_without_duplicate_output():
    chunks = []
    with Sandbox() as b:
        b.run("x = 7")
        r = b.run(fresh(HIDDEN_FORK + "\nprint(x)"), on_stdout=chunks.append)
        assert r.ok and r.tier == "heavy" and r.promoted, r
        assert r.stdout == "before\nforked 0\n7\n", r.stdout
        assert "".join(chunks) == r.stdout  # the nano attempt's "before" never streamed
        assert r.route_reason.startswith(
            "rerun in heavy: nano failed with PermissionError: [Errno 1]"), r.route_reason
        assert r.step == 2  # the rerun is the same step as the failed attempt
        runs = [(e["step"], e["body"]["tier"], e["body"]["status"])
                for e in b.audit() if e["kind"] == "run"]
        assert runs == [(1, "nano", "ok"), (2, "nano", "error"), (2, "heavy", "ok")], runs


def test_stateless_runs_use_a_fresh_worker_each_time():
    r1 = agentbox.run("secret = 42\nimport os\nprint(os.getpid())")
    r2 = agentbox.run("print(secret)")
    assert r1.ok and r1.tier == "nano" and r1.route_reason == "standard-library code only (os)"
    assert r2.status == "error" and r2.error.name == "NameError", r2
    out = [agentbox.run("import random\nprint(random.random())").stdout for _ in range(3)]
    assert len(set(out)) == 3, out  # each worker is seeded afresh


def test_stateless_routing_and_fallback():
    r = agentbox.run("import numpy as np\nprint(np.arange(4).sum())")
    assert r.ok and r.stdout == "6\n" and r.tier == "heavy" and not r.promoted, r
    assert r.route_reason == "imports numpy (not available in nano)"
    r = agentbox.run(fresh(HIDDEN_NUMPY))
    assert r.ok and r.stdout == "numpy\n" and r.tier == "heavy" and r.promoted, r
    assert "ModuleNotFoundError: No module named 'numpy'" in r.promotion["reason"]


@pytest.mark.skipif(os.environ.get("AGENTBOX_SANITIZED") == "1",
                    reason="AddressSanitizer cannot run under RLIMIT_AS: sanitizer builds "
                           "cap nano memory with the cgroup only")
def test_nano_memory_cap_promotes():
    # nano caps the address space at memory_mb; heavy caps memory use, which
    # 110 MB of 128 fits.
    r = agentbox.run(fresh("x = bytearray(110 << 20)\nprint(len(x) >> 20)"), memory_mb=128)
    assert r.ok and r.stdout == "110\n" and r.promoted and r.tier == "heavy", r
    assert r.route_reason == "rerun in heavy: nano failed with MemoryError", r.route_reason


def test_learned_cell_routes_to_heavy_directly(daemon):
    url = str(daemon.path)
    r = agentbox.run(HIDDEN_FORK, url=url)
    assert r.ok and r.promoted, r
    cells = routes_file(daemon)["cells"]
    assert len(cells) == 1, cells
    (entry,) = cells.values()
    assert entry["reason"].startswith("PermissionError: [Errno 1]") and entry["hits"] == 1
    r = agentbox.run(HIDDEN_FORK, url=url)
    assert r.ok and r.tier == "heavy" and not r.promoted, r
    assert r.route_reason.startswith("learned: this cell needed heavy before (PermissionError")
    # A different cell is not affected.
    assert agentbox.run("print(1)", url=url).tier == "nano"
    # `agentbox routes` shows it; clearing it sends the cell to nano again.
    env = dict(os.environ, AGENTBOX_HOME=str(daemon.home))
    out = subprocess.run([str(BUILD / "agentbox"), "routes"], env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and "PermissionError" in out.stdout, out
    out = subprocess.run([str(BUILD / "agentbox"), "routes", "clear"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out
    r = agentbox.run(HIDDEN_FORK, url=url)
    assert r.promoted and r.route_reason.startswith("rerun in heavy"), r


def test_learned_routes_survive_a_restart_and_are_shared(tmp_path):
    d = DaemonSocket(tmp_path)
    try:
        assert agentbox.run(HIDDEN_NUMPY, url=str(d.path)).promoted
    finally:
        d.stop()
    d = DaemonSocket(tmp_path)
    try:
        r = agentbox.run(HIDDEN_NUMPY, url=str(d.path))
        assert r.ok and not r.promoted and r.route_reason.startswith("learned:"), r
    finally:
        d.stop()


def test_learned_module_is_passed_to_the_router(daemon):
    # A module learned to need heavy (as the daemon writes it when nano lacks
    # a module the router believed it had) routes literal imports to heavy.
    (daemon.home / "routes.json").write_text(json.dumps({
        "format": "agentbox-routes/1", "cells": {},
        "modules": {"colorsys": {"reason": "ModuleNotFoundError: No module named 'colorsys'",
                                 "learned": "2026-11-26T00:00:00Z",
                                 "last": "2026-11-26T00:00:00Z", "hits": 1}}}))
    r = agentbox.run("import colorsys\nprint(colorsys.rgb_to_hsv(1, 0, 0))", url=str(daemon.path))
    assert r.ok and r.tier == "heavy" and not r.promoted, r
    assert "colorsys" in r.route_reason and "learned" in r.route_reason, r.route_reason
    assert agentbox.run("import json", url=str(daemon.path)).tier == "nano"


def test_heavy_failing_the_same_way_is_not_learned(daemon):
    url = str(daemon.path)
    code = "m = getattr(__builtins__, '__import__')('no_such_' + 'module')"
    r = agentbox.run(code, url=url)
    assert r.status == "error" and r.error.name == "ModuleNotFoundError", r
    assert r.tier == "heavy" and r.promoted
    assert routes_file(daemon)["cells"] == {} and routes_file(daemon)["modules"] == {}


def test_forced_nano_fails_clearly_instead_of_promoting():
    with Sandbox(tier="nano") as b:
        r = b.run(HIDDEN_FORK)
        assert r.status == "error" and r.error.name == "PermissionError", r
        assert r.tier == "nano" and not r.promoted
        assert r.route_reason == 'tier "nano" was requested'
        assert "needs the heavy tier" in r.tier_hint and "PermissionError" in r.tier_hint
        r = b.run(HIDDEN_NUMPY)
        assert "No module named 'numpy'" in r.tier_hint, r
        assert b.run("print('still nano')").stdout == "still nano\n"
        assert b.tier == "nano"
    r = agentbox.run("import pandas", tier="nano")
    assert r.status == "error" and r.tier == "nano" and r.tier_hint, r


def test_forced_nano_cli_prints_the_hint(cli):
    p = cli("run", "--tier", "nano", "-c", HIDDEN_NUMPY)
    assert p.returncode == 1
    assert "agentbox: this run needs the heavy tier" in p.stderr, p.stderr


def test_forced_heavy_never_uses_nano():
    with Sandbox(tier="heavy") as b:
        r = b.run("print(1)")
        assert r.tier == "heavy" and r.route_reason == 'tier "heavy" was requested'
    r = agentbox.run("print(1)", tier="heavy")
    assert r.tier == "heavy" and r.route_reason == 'tier "heavy" was requested'


def test_auto_with_nano_disabled_is_heavy(tmp_path):
    d = DaemonSocket(tmp_path, "--nano-pool", "-1")
    try:
        with Sandbox(url=str(d.path)) as b:
            assert b.tier == "heavy"
            r = b.run("print(1)")
            assert r.tier == "heavy" and r.route_reason == \
                "auto: the nano tier is disabled on this daemon"
        r = agentbox.run("print(1)", url=str(d.path))
        assert r.tier == "heavy" and "disabled" in r.route_reason
    finally:
        d.stop()


def test_promotion_refused_when_history_is_too_large():
    with Sandbox(timeout=60) as b:
        big = "#" + "x" * (6 << 20) + "\n"
        for i in range(3):
            assert b.run(big + f"v{i} = {i}").ok
        r = b.run("import pandas")
        assert r.status == "error" and r.error.name == "PromotionFailed", r
        assert "16 MiB" in r.error.value and r.tier == "nano"
        assert b.run("print(v2)").stdout == "2\n"  # the session goes on in nano


def test_idle_timeout_closes_the_session():
    b = Sandbox(idle_timeout=1)
    try:
        time.sleep(1.6)
        with pytest.raises(agentbox.SandboxDeadError, match="idle timeout"):
            b.run("1")
    finally:
        b.close()
    with Sandbox(idle_timeout=2) as b:  # activity keeps it open
        for _ in range(3):
            time.sleep(0.8)
            assert b.run("1").value == "1"
    with pytest.raises(agentbox.InvalidArgument):
        Sandbox(idle_timeout=-1)


def test_client_leaving_during_a_promotion_leaks_nothing(daemon):
    c = RawClient(daemon.path)
    c.send(1, "sandbox.create", limits={"disk_mb": 77})  # no pooled heavy matches
    sid = c.replies(1)[1]["result"]["sandbox"]
    c.send(2, "sandbox.run", sandbox=sid, code="import pandas")
    c.close()
    # daemon.info counts only the asking client's sessions, so the session
    # directories tell whether the departed client's sandboxes are gone.
    deadline = time.time() + 30
    while time.time() < deadline:
        if len(list((daemon.home / "sessions").iterdir())) <= 2:  # the two pooled ones
            break
        time.sleep(0.2)
    leftovers = [p.name for p in (daemon.home / "sessions").iterdir()]
    assert len(leftovers) <= 2, leftovers


@pytest.mark.skipif(os.environ.get("AGENTBOX_SANITIZED") == "1",
                    reason="an ASan-built library cannot be loaded into this process "
                           "(the ASan runtime must come first); the plain build runs it")
def test_every_module_routed_to_nano_imports_in_nano():
    lib = ctypes.CDLL(str(BUILD / "libagentbox.so"))
    lib.ab_router_nano_modules.restype = ctypes.POINTER(ctypes.c_char_p)
    p = lib.ab_router_nano_modules()
    mods = []
    while p[len(mods)]:
        mods.append(p[len(mods)].decode())
    assert len(mods) > 50
    with Sandbox(tier="nano") as b:
        r = b.run("import importlib, json\nbad = {}\n"
                  f"for m in {mods!r}:\n"
                  "    try:\n        importlib.import_module(m)\n"
                  "    except BaseException as e:\n        bad[m] = repr(e)\n"
                  "print(json.dumps(bad))", timeout=60)
        assert r.ok and json.loads(r.stdout) == {}, r.stdout


def test_session_is_busy_while_it_moves_to_heavy(tmp_path):
    # --pool 0: the heavy sandbox is forked on demand, so the move takes a
    # while; calls on the session meanwhile are refused, not lost or raced.
    d = DaemonSocket(tmp_path, "--pool", "0")
    try:
        c = RawClient(d.path)
        c.send(1, "sandbox.create")
        sid = c.replies(1)[1]["result"]["sandbox"]
        c.send(2, "sandbox.run", sandbox=sid, code="import pandas\nprint(pandas.__name__)")
        c.send(3, "sandbox.files.write", sandbox=sid, path="a.txt", data="x")
        c.send(4, "sandbox.run", sandbox=sid, code="1")
        got = c.replies(3)
        assert got[3]["error"]["code"] == -32005, got[3]
        assert "heavy" in got[3]["error"]["message"], got[3]
        assert got[4]["error"]["code"] == -32005, got[4]
        r = got[2]["result"]
        assert r["promoted"] and r["stdout"] == "pandas\n", r
        c.send(5, "sandbox.files.write", sandbox=sid, path="a.txt", data="x")
        assert "result" in c.replies(1)[5]
        c.close()
    finally:
        d.stop()

"""tier="auto" (the default): each run is routed to nano or heavy, a session
that needs heavy is promoted (files copied, earlier steps replayed), a nano
run that fails because of the tier is rerun in heavy, and the cause is
learned in $AGENTBOX_HOME/routes.json (docs/router.md)."""
import ctypes
import hashlib
import json
import os
import signal
import subprocess
import time
import uuid

import pytest

import agentbox
from agentbox import Sandbox
from conftest import BUILD, DaemonSocket, RawClient

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


def test_nano_failure_is_rerun_in_heavy_and_the_client_is_told():
    chunks, reruns = [], []
    with Sandbox() as b:
        b.run("x = 7")
        r = b.run(fresh(HIDDEN_FORK + "\nprint(x)"), on_stdout=chunks.append,
                  on_rerun=reruns.append)
        assert r.ok and r.tier == "heavy" and r.promoted and r.attempt == 2, r
        assert r.stdout == "before\nforked 0\n7\n", r.stdout
        # The nano attempt streamed its "before"; the SDK said it was superseded.
        assert "".join(chunks) == "before\n" + r.stdout, chunks
        assert len(reruns) == 1 and reruns[0] == r.route_reason, reruns
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
    # Only the kind of cause is stored, never the run's error text.
    assert entry["reason"] == "refused by the nano jail" and entry["hits"] == 1, entry
    r = agentbox.run(HIDDEN_FORK, url=url)
    assert r.ok and r.tier == "heavy" and not r.promoted, r
    assert r.route_reason == "learned: this cell needed heavy before (refused by the nano jail)"
    # A different cell is not affected.
    assert agentbox.run("print(1)", url=url).tier == "nano"
    # `agentbox routes` shows it; clearing it sends the cell to nano again.
    env = dict(os.environ, AGENTBOX_HOME=str(daemon.home))
    out = subprocess.run([str(BUILD / "agentbox"), "routes"], env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and "refused by the nano jail" in out.stdout, out
    assert "PermissionError" not in out.stdout and "Errno" not in out.stdout, out
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
    # The daemon rewrote that older file without its error text.
    text = (daemon.home / "routes.json").read_text()
    assert json.loads(text)["format"] == "agentbox-routes/2" and "No module" not in text, text
    assert json.loads(text)["modules"]["colorsys"]["reason"] == "module missing in nano"


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


def test_client_leaving_during_a_promotion_leaks_nothing(tmp_path):
    # A pool grown by a miss (a create while the heavy zygote still warmed
    # up) halves back after --pool-shrink-after; a sandbox closed while its
    # spawn waits for a warming zygote is released when the zygote answers.
    # Both settle well within the wait below.
    daemon = DaemonSocket(tmp_path, "--pool-shrink-after", "1")
    try:
        _leave_during_a_promotion(daemon)
    finally:
        daemon.stop()


def _leave_during_a_promotion(daemon):
    with Sandbox(url=str(daemon.path), tier="heavy") as warm:
        assert warm.run("1").ok
    c = RawClient(daemon.path)
    c.send(1, "sandbox.create", limits={"disk_mb": 77})  # no pooled heavy matches
    sid = c.replies(1)[1]["result"]["sandbox"]
    c.send(2, "sandbox.run", sandbox=sid, code="import pandas")
    c.close()
    # daemon.info counts only the asking client's sessions, so the session
    # directories tell whether the departed client's sandboxes are gone.
    deadline = time.time() + 60
    while time.time() < deadline:
        if (len(list((daemon.home / "sessions").iterdir())) <= 2  # the two pooled ones
                and not (daemon.home / "sessions" / sid).exists()):
            break
        time.sleep(0.2)
    leftovers = [p.name for p in (daemon.home / "sessions").iterdir()]
    if len(leftovers) > 2:
        daemon.stop()
        pytest.fail(f"left behind: {leftovers}; the daemon's log:\n{daemon.proc.stderr.read()}")


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


# A cell that prints, then sleeps, then needs heavy (fork): its nano attempt
# takes 1.5 s before it fails, and its rerun in heavy 1.5 s more.
SLOW_FORK = ("import os, time\nprint('before', flush=True)\ntime.sleep(1.5)\n"
             "pid = getattr(os, 'fo' + 'rk')()\nif pid == 0:\n    os._exit(0)\n"
             "print('forked', os.waitpid(pid, 0)[1])")


def test_timeout_bounds_the_nano_attempt_and_the_heavy_rerun_together():
    # Each attempt fits in 2 s, both together do not: the call times out.
    with Sandbox() as b:
        r = b.run(fresh(SLOW_FORK), timeout=2)
        assert r.status == "timeout" and r.exit_code == 124 and r.limit == "timeout", r
        assert r.phase in ("promotion", "promoted_run"), r.phase
        assert r.error.name == "Timeout" and "time limit of 2 s" in r.error.value, r.error
        # duration_ms is the whole call's: it includes the nano attempt.
        assert r.duration_ms >= 1500, r.duration_ms
        assert b.run("print('alive')").stdout == "alive\n"
    r = agentbox.run(fresh(SLOW_FORK), timeout=2)
    assert r.status == "timeout" and r.phase in ("promotion", "promoted_run"), r
    assert r.duration_ms >= 1500, r.duration_ms


def test_timeout_bounds_the_promotion_replay():
    with Sandbox() as b:
        assert b.run("import time\nv = 1\ntime.sleep(1.2)").ok
        assert b.run("import time\nv += 1\ntime.sleep(1.2)").ok
        # Replaying the two steps alone takes longer than the run's timeout.
        r = b.run("import subprocess\nprint(subprocess.run(['true']).returncode)", timeout=2)
        assert r.status == "timeout" and r.exit_code == 124 and r.phase == "promotion", r
        assert "promoted to heavy" in r.error.value and r.tier == "nano", r.error
        assert not r.promoted and r.duration_ms >= 2000, r
        # The session is consistent: still nano, its state intact, usable.
        assert b.tier == "nano"
        r = b.run("print(v)")
        assert r.ok and r.tier == "nano" and r.stdout == "2\n", r
        failed = [e["body"] for e in b.audit() if e["kind"] == "sandbox.promote"]
        assert len(failed) == 1 and "time limit" in failed[0]["failed"], failed
        # With time enough, the promotion goes through.
        r = b.run("import subprocess\nprint(subprocess.run(['true']).returncode, v)",
                  timeout=60)
        assert r.ok and r.promoted and r.stdout == "0 2\n", r


def test_syntax_error_is_answered_in_nano_without_promotion():
    with Sandbox() as b:
        assert b.run("x = 1").tier == "nano"
        r = b.run("print((1, 2)")
        assert r.status == "error" and r.error.name == "SyntaxError", r
        assert r.tier == "nano" and not r.promoted and b.tier == "nano", r
        assert r.route_reason.startswith("cannot tokenize"), r.route_reason
        assert b.run("print(x)").tier == "nano"
        assert not [e for e in b.audit() if e["kind"] == "sandbox.promote"]
    r = agentbox.run("s = 'abc")
    assert r.error.name == "SyntaxError" and r.tier == "nano" and not r.promoted, r


# Prints, then waits for the client to react to that line (it writes the
# file "go" when the line arrives), then prints again.
WAIT_FOR_CLIENT = ("import os, time\nprint('first', flush=True)\n"
                   "for _ in range(200):\n"
                   "    if os.path.exists('go'):\n        break\n"
                   "    time.sleep(0.1)\n"
                   "print('saw go' if os.path.exists('go') else 'no go')")


@pytest.mark.parametrize("tier", ["auto", "nano"])
def test_output_streams_in_nano_and_auto(tier):
    with Sandbox(tier=tier) as b:
        assert b.tier == "nano"

        def on_stdout(chunk):
            if "first" in chunk:
                b.files.write("go", "")
        r = b.run(WAIT_FOR_CLIENT, on_stdout=on_stdout, timeout=60)
        assert r.ok and r.tier == "nano", r
        assert r.stdout == "first\nsaw go\n", r.stdout


def test_stateless_rerun_protocol(daemon):
    c = RawClient(daemon.path)
    c.send(1, "run", code=fresh(HIDDEN_FORK))
    msgs = []
    while True:
        m = json.loads(c.f.readline())
        msgs.append(m)
        if m.get("id") == 1:
            break
    c.close()
    r = msgs[-1]["result"]
    assert r["promoted"] and r["attempt"] == 2 and r["stdout"] == "before\nforked 0\n", r
    seq = [(m["method"], m["params"].get("attempt"), m["params"].get("stream"),
            m["params"].get("data")) for m in msgs[:-1]]
    rerun = seq.index(("sandbox.rerun", 2, None, None))
    out1 = "".join(d for m, a, st, d in seq[:rerun] if a == 1 and st == "stdout")
    err1 = "".join(d for m, a, st, d in seq[:rerun] if a == 1 and st == "stderr")
    out2 = "".join(d for m, a, st, d in seq[rerun + 1:] if a == 2 and st == "stdout")
    assert out1 == "before\n" and out2 == r["stdout"], seq
    assert "PermissionError" in err1 and r["stderr"] == "", seq
    params = msgs[rerun]["params"]
    assert params["request"] == 1 and params["tier"] == "heavy", params
    assert params["reason"] == r["route_reason"], params


def test_cli_says_when_a_run_is_rerun_in_heavy(cli):
    p = cli("run", "-c", fresh(HIDDEN_FORK))
    assert p.returncode == 0, p.stderr
    assert p.stdout == "before\nbefore\nforked 0\n", p.stdout
    assert "agentbox: the run is being rerun in the heavy tier" in p.stderr, p.stderr


SDK_INTERRUPT = """
import json
from agentbox import Sandbox
with Sandbox() as b:
    def ready(s):
        if "started" in s:
            print("READY", flush=True)
    try:
        b.run("import time\\nprint('started', flush=True)\\ntime.sleep(120)",
              on_stdout=ready, timeout=300)
        print(json.dumps({"raised": False}), flush=True)
    except KeyboardInterrupt as e:
        ex = e.execution
        print(json.dumps({"raised": True, "status": ex.status, "error": ex.error.name,
                          "interrupted": ex.interrupted, "tier": ex.tier}), flush=True)
    r = b.run("print(6 * 7)")
    print(json.dumps({"status": r.status, "stdout": r.stdout}), flush=True)
"""


def test_sdk_ctrl_c_interrupts_the_run_and_the_session_survives():
    env = dict(os.environ, PYTHONPATH=str(BUILD.parent / "python"))
    # SIGINT back to its default: pytest started in the background of a
    # non-interactive shell inherits it ignored, and Python then installs no
    # KeyboardInterrupt handler (the run would sleep its 120 s out)
    p = subprocess.Popen(["/usr/bin/python3", "-c", SDK_INTERRUPT], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert p.stdout.readline() == "READY\n"
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0] == {"raised": True, "status": "error", "error": "KeyboardInterrupt",
                        "interrupted": True, "tier": "nano"}, lines
    assert lines[1] == {"status": "ok", "stdout": "42\n"}, lines


def test_interrupt_during_a_promotion_cancels_it(daemon):
    c = RawClient(daemon.path)
    c.send(1, "sandbox.create")
    sid = c.replies(1)[1]["result"]["sandbox"]
    c.send(2, "sandbox.run", sandbox=sid, code="import time\nv = 5\ntime.sleep(3)")
    assert c.replies(1)[2]["result"]["status"] == "ok"
    # Its promotion replays the 3 s step: the interrupt finds it under way.
    c.send(3, "sandbox.run", sandbox=sid, code="import subprocess\nprint(v)")
    c.send(4, "sandbox.interrupt", request=3)
    got = c.replies(2)
    assert got[4]["result"] == {"sandbox": sid, "interrupted": True, "phase": "promotion"}, got
    r = got[3]["result"]
    assert r["status"] == "error" and r["error"]["name"] == "KeyboardInterrupt", r
    assert r["interrupted"] is True and r["tier"] == "nano" and not r["promoted"], r
    c.send(5, "sandbox.run", sandbox=sid, code="print(v)")
    r = c.replies(1)[5]["result"]
    assert r["status"] == "ok" and r["stdout"] == "5\n" and r["tier"] == "nano", r
    # Nothing is left to interrupt now; bad parameters are named.
    c.send(6, "sandbox.interrupt", request=3)
    c.send(7, "sandbox.interrupt")
    c.send(8, "sandbox.interrupt", request=[1])
    got = c.replies(3)
    assert got[6]["result"] == {"sandbox": None, "interrupted": False, "phase": None}, got
    assert got[7]["error"]["code"] == -32602 and "request" in got[7]["error"]["message"]
    assert got[8]["error"]["code"] == -32602 and "params.request" in got[8]["error"]["message"]
    c.close()


def test_learned_cells_are_scoped_to_the_client_uid(daemon):
    # A cell learned for one uid neither routes nor shows for another: a
    # client cannot probe whether someone else ran a given cell.
    url = str(daemon.path)
    code = fresh(HIDDEN_FORK)
    assert agentbox.run(code, url=url).promoted
    assert agentbox.run(code, url=url).route_reason.startswith("learned:")
    (key,) = routes_file(daemon)["cells"]
    assert key != hashlib.sha256(code.encode()).hexdigest()  # not the bare code's digest
    want = hashlib.sha256(f"agentbox-cell uid={os.getuid()}\n{code}".encode()).hexdigest()
    assert key == want
    text = (daemon.home / "routes.json").read_text()
    assert "PermissionError" not in text and "Errno" not in text and "fo' + 'rk" not in text


def test_another_client_cannot_interrupt_a_run(daemon):
    # sandbox.interrupt acts only on the asking connection's own runs: a
    # second client naming the session, or the same request id, stops
    # nothing, and the owner's run ends as it would have.
    a, b = RawClient(daemon.path), RawClient(daemon.path)
    try:
        a.send(1, "sandbox.create", tier="heavy")
        sid = a.replies(1)[1]["result"]["sandbox"]
        a.send(2, "sandbox.run", sandbox=sid, code="import time\ntime.sleep(2)\nprint('done')")
        by_session = b.call("sandbox.interrupt", sandbox=sid)
        assert by_session["error"]["code"] == -32001, by_session
        by_request = b.call("sandbox.interrupt", request=2)
        assert by_request["result"] == {"sandbox": None, "interrupted": False, "phase": None}
        r = a.replies(1)[2]["result"]
        assert r["status"] == "ok" and r["stdout"] == "done\n" and not r["interrupted"], r
    finally:
        a.close()
        b.close()

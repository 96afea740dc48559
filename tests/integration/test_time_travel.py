"""Time travel (docs/time-travel.md): a snapshot of the state every step
started in, rewind, inspect, diff, history as a tree, eviction."""
import time

import pytest

import agentbox
from agentbox import Sandbox


def _wait_parked(box, step, timeout=10):
    """The snapshot of the state `step` started in is taken while the client
    reads the previous result: wait until it is parked."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        h = box.history()
        s = [x for x in h["steps"] if x["step"] == step]
        if s and s[0]["snapshot"]["memory"] != "pending":
            return s[0]
        time.sleep(0.02)
    raise AssertionError(f"the snapshot before step {step} was not taken: {box.history()}")


def test_rewind_restores_variables_modules_cwd_random_and_a_dataframe():
    with Sandbox(tier="heavy") as b:
        assert b.run("import os, random\nrandom.seed(7)\nx = 1\nos.chdir('/tmp')").ok
        step2 = b.run("import pandas as pd\n"
                      "df = pd.DataFrame({'a': range(1000)})\n"
                      "x = 2\nos.makedirs('/tmp/d', exist_ok=True)\nos.chdir('/tmp/d')\n"
                      "class Counter:\n    def __init__(self): self.n = 0\n"
                      "c = Counter(); c.n = 5\n"
                      "first = random.random()")
        assert step2.ok, step2
        first = b.run("first").value
        b.run("df['a'] = df['a'] * 2\nx = 3\nimport json\nc.n = 99\n"
              "second = random.random()\nos.chdir('/')")
        assert b.run("(x, c.n, int(df['a'].sum()), os.getcwd(), 'json' in dir())").value == \
            "(3, 99, 999000, '/', True)"
        _wait_parked(b, 3)
        r = b.rewind(3)  # the state step 3 started in: the end of step 2
        assert r["head"] == 2 and r["restored"]["memory"] == "snapshot", r
        v = b.run("(x, c.n, int(df['a'].sum()), os.getcwd(), 'json' in dir(), "
                  "type(df).__name__)").value
        assert v == "(2, 5, 499500, '/tmp/d', False, 'DataFrame')", v
        # the random state is the one step 3 started with
        assert b.run("random.random() == second or random.random()").value != first
        b.rewind(3)
        again = b.run("random.random()").value
        b.rewind(3)
        assert b.run("random.random()").value == again


def test_history_is_a_tree_and_both_branches_stay_inspectable():
    with Sandbox(tier="heavy") as b:
        b.run("v = 'root'")              # step 1
        b.run("v = 'a1'")                # step 2
        b.run("v = 'a2'")                # step 3
        _wait_parked(b, 3)
        b.rewind(2)                      # back to the end of step 1
        b.run("v = 'b1'")                # step 4, parent 1
        b.run("w = v + '!'")             # step 5, parent 4
        h = b.history()
        parents = {s["step"]: s["parent"] for s in h["steps"]}
        assert parents == {1: 0, 2: 1, 3: 2, 4: 1, 5: 4}, parents
        assert h["head"] == 5
        _wait_parked(b, 5)
        # the old branch (steps 2, 3) and the new one (4, 5) are both there
        assert b.inspect(3, "v")["value"] == "'a1'"
        assert b.inspect(5, "v")["value"] == "'b1'"
        assert b.inspect(2, "v")["value"] == "'root'"
        b.rewind(3)
        assert b.run("v").value == "'a1'"


def test_inspect_does_not_change_the_session():
    with Sandbox(tier="heavy") as b:
        b.run("items = [1, 2]")
        b.run("items.append(3)")
        _wait_parked(b, 2)
        r = b.inspect(2, "items.append(99) or items")
        assert r["value"] == "[1, 2, 99]" and r["type"] == "list" and r["error"] is None
        assert b.run("items").value == "[1, 2, 3]"
        assert b.inspect(2, "items")["value"] == "[1, 2]"  # the snapshot too
        err = b.inspect(2, "undefined_name")
        assert err["value"] is None and err["error"]["name"] == "NameError", err
        bad = b.inspect(2, "import os")  # a statement, not an expression
        assert bad["error"]["name"] == "SyntaxError", bad


def test_diff_lists_added_removed_and_changed_variables():
    with Sandbox(tier="heavy") as b:
        b.run("a = 1\nb = 'keep'\nbig = list(range(10000))")  # step 1
        b.run("a = 2\ndel b\nc = {'k': 1}\nbig[9999] = -1")     # step 2
        b.run("pass")                                           # step 3
        _wait_parked(b, 3)
        d = b.diff(2, 3)["variables"]
        assert [v["name"] for v in d["added"]] == ["c"]
        assert [v["name"] for v in d["removed"]] == ["b"]
        changed = {v["name"]: v for v in d["changed"]}
        # big's repr is cut at 200 characters; its digest still differs
        assert set(changed) == {"a", "big"}, changed
        assert changed["a"]["before"]["repr"] == "1" and changed["a"]["after"]["repr"] == "2"


def test_rewind_after_a_timeout_that_killed_the_interpreter():
    with Sandbox(tier="heavy", timeout=2) as b:
        b.run("state = 'before'")
        b.run("state = 'during'")
        _wait_parked(b, 2)
        # SIGINT is ignored: the run outlives its timeout and is killed
        r = b.run("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                  "while True: time.sleep(0.1)", timeout=1)
        assert r.status == "timeout", r
        with pytest.raises(agentbox.SandboxDeadError):
            b.run("1")
        b.rewind(2)
        assert b.run("state").value == "'before'"
        assert b.run("state = 'after'; state").value == "'after'"


def test_rewind_after_the_oom_killer():
    with Sandbox(tier="heavy", memory_mb=256) as b:
        b.run("kept = 'yes'")
        b.run("pass")
        _wait_parked(b, 2)
        r = b.run("hog = bytearray(1 << 30)\nhog[::4096] = b'x' * len(hog[::4096])")
        assert r.status == "killed" and r.limit == "memory", r
        b.rewind(2)
        assert b.run("kept").value == "'yes'"


def test_eviction_under_a_small_budget_is_named_in_the_history():
    with Sandbox(tier="heavy", snapshots=2) as b:
        for i in range(6):
            assert b.run(f"i = {i}").ok
        deadline = time.time() + 10
        while b.history()["current"]["memory"] != "parked" and time.time() < deadline:
            time.sleep(0.02)
        h = b.history()
        assert h["max_snapshots"] == 2 and h["current"]["memory"] == "parked", h
        mem = {s["step"]: s["snapshot"]["memory"] for s in h["steps"]}
        # kept: the current state, and the start (the sandbox's first
        # process, whose end would end the sandbox); the oldest others went
        # first
        parked = [n for n, m in mem.items() if m == "parked"]
        assert parked == [1], mem
        evicted = [n for n, m in mem.items() if m == "evicted"]
        assert evicted == [2, 3, 4, 5, 6], mem
        ev = [s for s in h["steps"] if s["step"] == evicted[0]][0]
        assert not ev["rewindable"] and "budget" in ev["snapshot"]["why"], ev
        # an evicted state is made again by replay (test_an_evicted_heavy_state_...)
        # the start stays: the session can always go back there
        b.rewind(1)
        assert b.run("'i' in dir()").value == "False"


def test_a_thread_still_running_means_no_snapshot_and_says_why():
    with Sandbox(tier="heavy") as b:
        b.run("import threading, time\nstop = False\n"
              "t = threading.Thread(target=lambda: [time.sleep(0.01) for _ in iter(lambda: stop, True)])\n"
              "t.start()")
        b.run("x = 1")  # started while the thread ran
        s = _wait_parked(b, 2)
        assert s["snapshot"]["memory"] == "refused" and "thread" in s["snapshot"]["why"], s
        assert not s["rewindable"]
        # the thread was not disturbed by the attempt
        assert b.run("stop = True; t.join(5); t.is_alive()").value == "False"


def test_the_jail_holds_in_a_restored_session():
    probe = ("import os\n"
             "st = open('/proc/self/status').read()\n"
             "fields = dict(l.split(':\\t', 1) for l in st.splitlines() if ':\\t' in l)\n"
             "res = (fields['Seccomp'].strip(), fields['NoNewPrivs'].strip(), "
             "fields['CapEff'].strip(), os.getuid())\n"
             "try:\n    open('/etc/shadow').read(); res += ('shadow read',)\n"
             "except OSError: res += ('shadow refused',)\n"
             "res")
    with Sandbox(tier="heavy") as b:
        before = b.run(probe).value
        b.run("pass")
        _wait_parked(b, 2)
        b.rewind(2)
        after = b.run(probe).value
        assert after == before, (before, after)
        assert "'2', '1', '0000000000000000'" in after and "shadow refused" in after


def test_time_travel_errors_name_the_problem():
    with Sandbox(tier="heavy") as b:
        with pytest.raises(agentbox.InvalidArgument, match="no history yet"):
            b.rewind(1)
        b.run("x = 1")
        with pytest.raises(agentbox.InvalidArgument, match="no step 7"):
            b.rewind(7)
        with pytest.raises(agentbox.InvalidArgument):
            b.rewind(0)
        with pytest.raises(agentbox.InvalidArgument):
            b.inspect(1, "")
    with pytest.raises(agentbox.InvalidArgument):
        Sandbox(tier="heavy", snapshots=-1)
    with pytest.raises(agentbox.InvalidArgument):
        Sandbox(tier="heavy", snapshots=257)
    with Sandbox(tier="heavy", snapshots=0) as b:  # history, but no copies
        b.run("x = 1")
        b.run("x = 2")
        s = b.history()["steps"][1]["snapshot"]
        assert s["memory"] == "none" and "snapshots: 0" in s["why"], s
        assert b.rewind(2)["restored"]["memory"] == "replay"  # a new sandbox
        assert b.run("x").value == "1"


def test_nano_rewinds_and_inspects_by_replay():
    # nano code cannot write files; the client writes them between steps
    with Sandbox(tier="nano") as b:
        b.files.write("log.txt", "1")
        b.run("import random\nrandom.seed(3)\nx = 1")                   # 1
        b.files.write("log.txt", "12")
        b.run("x = 2\nseen = open('log.txt').read()")                    # 2
        b.files.write("log.txt", "123")
        b.run("x = 3\nseen = open('log.txt').read()")                    # 3
        h = b.history()
        s = h["steps"][1]
        assert s["snapshot"]["memory"] == "none" and "nano" in s["snapshot"]["why"], s
        assert not s["rewindable"]
        r = b.inspect(3, "(x, seen, open('log.txt').read())")
        assert r["value"] == "(2, '12', '123')" and r["memory"] == "replay", r
        assert b.run("x").value == "3"  # the session did not move
        r = b.rewind(3)
        assert r["restored"]["memory"] == "replay" and r["replay"]["replayed_steps"] == 2, r
        assert r["replay"]["diverged"] == [], r
        want = repr(__import__("random").Random(3).random())
        assert b.run("(x, seen, open('log.txt').read(), random.random())").value == \
            f"(2, '12', '123', {want})"
        h = b.history()
        assert h["head"] == 5 and h["steps"][-1]["parent"] == 2, h  # 4 was "x" above
        assert b.files.read("log.txt") == b"123"


def test_replay_says_where_it_diverged():
    with Sandbox(tier="heavy") as b:
        b.run("import time\nopen('stamp', 'w').write(str(time.time_ns()))")  # 1
        b.run("pass")                                                       # 2
        f = b.fork(2)
        try:
            assert f.replay["diverged"] == [{"step": 1, "files": {
                "added": [], "removed": [], "changed": ["stamp"]}}], f.replay
            # the fork's files are the recorded ones all the same
            assert f.files.read("stamp") == b.files.read("stamp")
        finally:
            f.close()


def test_fork_is_an_independent_session_from_that_state():
    for tier in ("heavy", "nano"):
        with Sandbox(tier=tier) as b:
            b.files.write("f.txt", "one")
            b.run("items = [1]")                                      # 1
            b.files.write("f.txt", "two")
            b.run("items.append(2)")                                  # 2
            b.run("items.append(3)")                                  # 3
            f = b.fork(3)
            try:
                assert f.id != b.id and f.tier == tier
                assert f.forked_from == {"sandbox": b.id, "step": 3}, f.forked_from
                assert f.replay["replayed_steps"] == 2 and f.replay["diverged"] == []
                assert f.run("items").value == "[1, 2]"
                assert f.files.read("f.txt") == b"two"
                f.run("items.append('fork')")
                f.files.write("f.txt", "forked")
                assert b.run("items").value == "[1, 2, 3]"       # the parent is untouched
                assert b.files.read("f.txt") == b"two"
                assert f.run("items").value == "[1, 2, 'fork']"
            finally:
                f.close()
            assert b.run("len(items)").value == "3"


def test_an_evicted_heavy_state_is_rewound_by_replay():
    with Sandbox(tier="heavy", snapshots=2) as b:
        for i in range(5):
            b.run(f"v = {i}")
        deadline = time.time() + 10
        while b.history()["current"]["memory"] != "parked" and time.time() < deadline:
            time.sleep(0.02)
        mem = {s["step"]: s["snapshot"]["memory"] for s in b.history()["steps"]}
        assert mem[3] == "evicted", mem
        r = b.rewind(3)
        # the nearest earlier copy (the start) is restored, then steps 1 and
        # 2 run again in the same sandbox
        assert r["restored"]["memory"] == "snapshot+replay", r
        assert r["restored"]["from_state"] == 0 and r["replay"]["replayed_steps"] == 2, r
        assert r["replay"]["diverged"] == [], r
        assert b.run("v").value == "1"
        # the history goes on from there: step 6 ("v") started from step 2's end
        b.run("v = 'next'")
        parents = {s["step"]: s["parent"] for s in b.history()["steps"]}
        assert parents[6] == 2 and parents[7] == 6, parents


def test_snapshots_are_in_the_audit_log():
    with Sandbox(tier="heavy") as b:
        b.run("x = 1")
        b.run("x = 2")
        _wait_parked(b, 2)
        b.rewind(2)
        b.inspect(2, "x")
        kinds = [e["kind"] for e in b.audit()]
        assert "sandbox.snapshot" in kinds and "sandbox.rewind" in kinds
        assert "sandbox.inspect" in kinds


def test_rewind_restores_the_workspace_and_the_past_can_be_read():
    with Sandbox(tier="heavy") as b:
        b.run("open('notes.txt', 'w').write('v1')\nimport os\nos.makedirs('d', exist_ok=True)\n"
              "open('d/data.csv', 'w').write('a,b\\n1,2\\n')")                    # step 1
        b.run("open('notes.txt', 'w').write('v2')\nopen('new.txt', 'w').write('x')\n"
              "os.remove('d/data.csv')\nos.symlink('/etc/passwd', 'link')")        # step 2
        b.run("pass")                                                              # step 3
        _wait_parked(b, 3)
        # the past, read without changing anything
        assert b._call("sandbox.files.list", {"path": "", "step": 2})["entries"]
        names = {e["name"] for e in b._call("sandbox.files.list",
                                            {"path": "", "step": 2})["entries"]}
        assert names == {"notes.txt", "d"}, names
        import base64
        r = b._call("sandbox.files.read", {"path": "notes.txt", "step": 2})
        assert base64.b64decode(r["data_b64"]) == b"v1"
        r = b._call("sandbox.files.read", {"path": "d/data.csv", "step": 2})
        assert base64.b64decode(r["data_b64"]) == b"a,b\n1,2\n"
        with pytest.raises(agentbox.PathError):
            b._call("sandbox.files.read", {"path": "new.txt", "step": 2})
        with pytest.raises(agentbox.InvalidArgument, match="read-only"):
            b._call("sandbox.files.write", {"path": "x", "data_b64": "", "step": 2})
        past = b.files_at(2)
        assert past.read("notes.txt") == b"v1" and {e["name"] for e in past.list()} == names
        with pytest.raises(agentbox.InvalidArgument, match="read-only"):
            past.write("notes.txt", "no")
        d = b.diff(2, 3)["files"]
        assert d == {"added": ["link", "new.txt"], "removed": ["d/data.csv"],
                     "changed": ["notes.txt"]}, d
        r = b.rewind(2)
        assert r["restored"]["files"]["restored"], r
        assert b.files.read("notes.txt") == b"v1"
        assert b.files.read("d/data.csv") == b"a,b\n1,2\n"
        assert {e["name"] for e in b.files.list()} == {"notes.txt", "d"}
        assert b.run("import os; os.path.lexists('link'), open('notes.txt').read()").value == \
            "(False, 'v1')"


def test_promotion_to_heavy_keeps_the_history():
    with Sandbox() as b:  # tier auto: starts in nano
        b.run("x = 1")                                   # 1 (nano)
        b.run("x = 2")                                   # 2 (nano)
        r = b.run("import pandas as pd\ndf = pd.DataFrame({'a': [x]})")  # 3: promoted
        assert r.tier == "heavy" and r.promoted is not None, r
        b.run("x = 4")                                   # 4 (heavy)
        h = b.history()
        assert [s["step"] for s in h["steps"]] == [1, 2, 3, 4], h
        assert [s["parent"] for s in h["steps"]] == [0, 1, 2, 3], h
        _wait_parked(b, 4)
        # heavy states have copies; nano ones are made again by replay
        assert b.inspect(4, "int(df.a[0])")["value"] == "2"
        r = b.inspect(2, "x")
        assert r["value"] == "1" and r["memory"] == "replay", r
        b.rewind(4)
        assert b.run("(x, int(df.a[0]))").value == "(2, 2)"


def test_the_past_is_listed_like_the_present():
    with Sandbox(tier="heavy") as b:
        b.run("import os\nopen('f', 'w').write('x')\nos.mkdir('d')\nos.symlink('f', 'l')")
        b.run("pass")
        past = {e["name"]: e["type"] for e in b.files_at(2).list()}
        now = {e["name"]: e["type"] for e in b.files.list()}
        assert past == now == {"f": "file", "d": "dir", "l": "symlink"}, (past, now)


def test_a_rewind_names_the_processes_and_threads_it_stopped():
    with Sandbox(tier="heavy") as b:
        b.run("x = 1")                                                        # 1
        b.run("x = 2")                                                        # 2
        _wait_parked(b, 2)
        b.run("import subprocess, threading, time\n"
              "kids = [subprocess.Popen(['sleep', '60']) for _ in range(2)]\n"
              "t = threading.Thread(target=time.sleep, args=(60,), daemon=True)\n"
              "t.start()")                                                    # 3
        r = b.rewind(2)
        lost = {e["what"]: e for e in r["not_restored"]}
        assert lost["processes"]["count"] == 2, r
        assert lost["threads"]["count"] == 1, r
        assert b.run("x").value == "1"
        # and a rewind with nothing running names nothing
        r = b.rewind(2)
        assert r["not_restored"] == [], r

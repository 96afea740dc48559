"""`agentbox history`, `rewind`, `inspect` and `diff` (src/cli/history.c).

Most tests are CLI TRANSPORT tests against the FAKE daemon
(tests/integration/fake_agentboxd.py, canned answers set with fake.answer):
the request each verb sends, its output and --json, escaping of what the
sandbox controls, argument checks and exit statuses. They prove nothing
about time travel itself.

test_cli_travels_in_a_session_another_connection_holds is the real one: an
agentboxd on a socket, a client holding a heavy session open, and the CLI as
a second process (the operator: the tests run as root) reading its history,
inspecting, diffing and rewinding it.
"""

import base64
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import RawClient

HERE = Path(__file__).resolve().parent
FAKE = HERE / "fake_agentboxd.py"
CLI = Path(os.environ.get("AGENTBOX_BIN", HERE.parents[1] / "build")) / "agentbox"

pytestmark = pytest.mark.skipif(not CLI.is_file(), reason=f"{CLI} is not built")

SID = "sb-00000000000000aa"
HOSTILE = "\x1b]0;pwn\x07\u202eevil\x9b2J"
HOSTILE_SHOWN = "\\u001b]0;pwn\\u0007\\u202eevil\\u009b2J"


def no_raw_controls(text):
    return not any(c in text for c in "\x1b\x07\u202e\x9b")


@pytest.fixture
def fake(tmp_path):
    """A fake daemon on a socket; yields (socket path, a RawClient)."""
    FAKE.chmod(FAKE.stat().st_mode | stat.S_IXUSR)
    path = tmp_path / "d.sock"
    proc = subprocess.Popen([sys.executable, str(FAKE), "--socket", str(path)])
    try:
        for _ in range(250):
            if path.exists():
                break
            time.sleep(0.02)
        rpc = RawClient(path, timeout=30)
        yield path, rpc
        rpc.close()
    finally:
        proc.kill()
        proc.wait()


def answer(rpc, method, result=None, error=None):
    params = {"of": method}
    params.update({"error": error} if error else {"result": result})
    assert "result" in rpc.call("fake.answer", params)


def calls(rpc):
    return rpc.call("fake.calls")["result"]["calls"]


def cli(*args, sock=None, env_socket=None):
    env = dict(os.environ)
    env.pop("AGENTBOX_SOCKET", None)
    if env_socket:
        env["AGENTBOX_SOCKET"] = str(env_socket)
    argv = [str(CLI), *args]
    if sock:
        argv += ["--socket", str(sock)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


def snap(memory="parked", files=2, **extra):
    s = {"memory": memory, **extra}
    if files is None:
        s["files_why"] = "the workspace is gone"
    else:
        s["files"] = files
    return s


def step(n, parent, code="x = 1", status="ok", **snapshot):
    return {"step": n, "parent": parent, "code": code, "code_truncated": False,
            "status": status, "started_at": 1764670000.5, "duration_ms": 12.5,
            "snapshot": snap(**snapshot), "rewindable": snapshot.get("memory", "parked") == "parked"}


# A tree: 1 -> 2 -> 3, then a rewind to 2 (head 1) and steps 4 (parent 1), 5 (parent 4).
HISTORY = {"sandbox": SID, "head": 5, "max_snapshots": 32,
           "current": snap(memory_bytes=1 << 20),
           "steps": [step(1, 0, "import pandas as pd\ndf = pd.DataFrame()", memory_bytes=3 << 20),
                     step(2, 1, "v = 'a1'"),
                     step(3, 2, "v = 'a2'", status="error", memory="evicted",
                          why="evicted: more than 32 snapshots (the session's budget)"),
                     step(4, 1, "v = 'b1'", files=None),
                     step(5, 4, "w = v + '!'", memory="pending")]}


# ------------------------------------------------------------------ help


@pytest.mark.parametrize("verb, needle", [
    ("history", "Usage: agentbox history SANDBOX"),
    ("rewind", "Usage: agentbox rewind SANDBOX STEP"),
    ("inspect", "Usage: agentbox inspect SANDBOX STEP EXPR"),
    ("diff", "Usage: agentbox diff SANDBOX A B"),
])
def test_each_verb_has_help_saying_who_may_and_the_exit_statuses(verb, needle):
    for argv in ([verb, "--help"], [verb, "-h"], ["help", verb], [verb, SID, "--help"]):
        r = cli(*argv)
        assert r.returncode == 0, (argv, r.stderr)
        assert needle in r.stdout
        assert "operator" in r.stdout and "Exit status" in r.stdout
        assert "Example" in r.stdout and "--socket" in r.stdout
    assert verb in cli("--help").stdout


# ------------------------------------------------------------ arguments


@pytest.mark.parametrize("args, needle", [
    (["history"], "missing SANDBOX"),
    (["rewind", SID], "missing STEP"),
    (["inspect", SID, "3"], "missing EXPR"),
    (["diff", SID, "1"], "missing B"),
    (["history", SID, "extra"], "unexpected argument 'extra'"),
    (["rewind", SID, "0"], "STEP '0': expected a step number"),
    (["rewind", SID, "3x"], "STEP '3x': expected a step number"),
    (["diff", SID, "1", "-2"], "unknown option '-2'"),
    (["diff", SID, "a", "2"], "A 'a': expected a step number"),
    (["inspect", SID, "1", ""], "EXPR is empty"),
    (["history", "sb 1"], "is not a sandbox id"),
    (["history", SID, "--bogus"], "unknown option '--bogus'"),
    (["history", SID, "--socket"], "--socket needs a value"),
])
def test_bad_arguments_exit_2_naming_the_problem(fake, args, needle):
    path, rpc = fake
    r = cli(*args, sock=None if args[-1] == "--socket" else path)
    assert r.returncode == 2, r
    assert needle in r.stderr, r.stderr
    assert "--help" in r.stderr
    assert calls(rpc) == []  # nothing was sent


def test_without_a_shared_daemon_it_says_how_to_name_one():
    r = cli("history", SID)
    assert r.returncode == 2
    assert "--socket PATH or set AGENTBOX_SOCKET" in r.stderr


def test_unreachable_daemon_exits_125(tmp_path):
    r = cli("history", SID, sock=tmp_path / "nothing.sock")
    assert r.returncode == 125
    assert "nothing.sock" in r.stderr


def test_agentbox_socket_and_a_unix_url_name_the_daemon(fake):
    path, rpc = fake
    answer(rpc, "sandbox.history", HISTORY)
    assert cli("history", SID, env_socket=path).returncode == 0
    assert cli("history", SID, env_socket=f"unix://{path}").returncode == 0
    assert cli("history", SID, sock=f"unix://{path}").returncode == 0


def test_an_expression_starting_with_a_dash_goes_after_two_dashes(fake):
    path, rpc = fake
    answer(rpc, "sandbox.inspect", {"sandbox": SID, "step": 2, "value": "-1", "type": "int",
                                    "truncated": False, "error": None})
    r = cli("inspect", "--socket", str(path), SID, "2", "--", "-x")
    assert r.returncode == 0, r.stderr
    assert calls(rpc)[-1]["params"] == {"sandbox": SID, "step": 2, "expr": "-x"}


# ---------------------------------------------------------------- history


def test_history_draws_the_tree_marks_the_head_and_says_why(fake):
    path, rpc = fake
    answer(rpc, "sandbox.history", HISTORY)
    r = cli("history", SID, sock=path)
    assert r.returncode == 0, r.stderr
    assert calls(rpc) == [{"method": "sandbox.history", "params": {"sandbox": SID}}]
    lines = r.stdout.splitlines()
    assert lines[0] == f"sandbox {SID}: 5 steps, head 5"
    assert "interpreter parked 1.0M, 2 files" in lines[1] and "at most 32 snapshots" in lines[1]
    table = lines[lines.index(next(x for x in lines if "STEP" in x)):]
    assert table[0].split() == ["STEP", "PARENT", "STATUS", "DURATION", "BEFORE", "FILES",
                                "CODE"]
    rows = [x.split() for x in table[1:6]]
    # depth first: the old branch (2, 3) under 1, then the new one (4, 5)
    assert [r_[0] for r_ in rows[:4]] == ["1", "2", "3", "`-4"]
    assert rows[4][:2] == ["*", "5"]             # the head, on 4's line
    assert rows[0][1:6] == ["0", "ok", "12", "ms", "parked"] and rows[0][6] == "3.0M"
    assert "import pandas as pd..." in table[1]  # first line, marked as cut
    assert rows[2][3:6] == ["12", "ms", "evicted"]
    assert rows[3][-4:] == ["-", "v", "=", "'b1'"]  # no files kept
    assert "pending" in table[5]
    notes = r.stdout[r.stdout.index("notes"):]
    assert "before step 3: evicted: more than 32 snapshots" in notes
    assert "before step 4: files not kept: the workspace is gone" in notes


def test_history_of_a_session_that_ran_nothing(fake):
    path, rpc = fake
    answer(rpc, "sandbox.history", {"sandbox": SID, "head": 0, "steps": [], "max_snapshots": 32,
                                    "current": {"memory": "none", "files_why": "not kept"}})
    r = cli("history", SID, sock=path)
    assert r.returncode == 0
    assert "head 0 (the session's start)" in r.stdout
    assert "no steps yet" in r.stdout


def test_history_escapes_code_status_and_reasons(fake):
    path, rpc = fake
    hostile = dict(HISTORY, steps=[step(1, 0, "s = '" + HOSTILE + "'\nmore", status=HOSTILE,
                                        memory="refused", why="because " + HOSTILE)])
    answer(rpc, "sandbox.history", hostile)
    r = cli("history", SID, sock=path)
    assert r.returncode == 0
    assert no_raw_controls(r.stdout), r.stdout
    assert "s = '" + HOSTILE_SHOWN[:30] in r.stdout
    assert "because " + HOSTILE_SHOWN in r.stdout


def test_history_json_is_the_daemons_answer_in_ascii(fake):
    path, rpc = fake
    hostile = dict(HISTORY, steps=[step(1, 0, HOSTILE)])
    answer(rpc, "sandbox.history", hostile)
    r = cli("history", SID, "--json", sock=path)
    assert r.returncode == 0
    assert r.stdout.isascii()
    assert json.loads(r.stdout) == hostile


def test_history_malformed_answer_exits_125(fake):
    path, rpc = fake
    answer(rpc, "sandbox.history", {"sandbox": SID})
    r = cli("history", SID, sock=path)
    assert r.returncode == 125
    assert "malformed" in r.stderr


def test_a_session_not_found_says_whose_it_may_be(fake):
    path, rpc = fake  # nothing canned: the fake says "no such sandbox"
    r = cli("history", SID, sock=path)
    assert r.returncode == 125
    assert f"no such sandbox: {SID}" in r.stderr
    assert "belongs to the connection that created it" in r.stderr
    assert "operator" in r.stderr


# ----------------------------------------------------------------- rewind


REWOUND = {"sandbox": SID, "step": 3, "head": 2,
           "restored": {"memory": "snapshot", "files": {"restored": True, "files_written": 4}},
           "not_restored": [{"what": "sockets", "count": 2, "note": "do not reuse them"},
                            {"what": "processes", "note": "were stopped"}],
           "duration_ms": 41.5}


def test_rewind_says_what_was_restored_and_what_was_not(fake):
    path, rpc = fake
    answer(rpc, "sandbox.rewind", REWOUND)
    r = cli("rewind", SID, "3", sock=path)
    assert r.returncode == 0, r.stderr
    assert calls(rpc)[-1] == {"method": "sandbox.rewind", "params": {"sandbox": SID, "step": 3}}
    out = r.stdout
    assert f"rewound {SID} to the state before step 3: head is now 2" in out
    assert "memory: restored from its snapshot" in out
    assert "files: restored (4 written)" in out
    assert "not restored: sockets (2): do not reuse them" in out
    assert "not restored: processes: were stopped" in out
    assert "took 42 ms" in out


def test_rewind_whose_files_were_not_restored_says_why_escaped(fake):
    path, rpc = fake
    answer(rpc, "sandbox.rewind", dict(REWOUND, head=0, restored={
        "memory": "snapshot", "files": {"restored": False, "why": "disk full " + HOSTILE}}))
    r = cli("rewind", SID, "1", sock=path)
    assert r.returncode == 0
    assert "head is now 0 (the session's start)" in r.stdout
    assert "files: NOT restored: disk full " + HOSTILE_SHOWN in r.stdout
    assert no_raw_controls(r.stdout)


def test_rewind_by_replay_says_so_and_where_it_diverged(fake):
    path, rpc = fake
    answer(rpc, "sandbox.rewind", {
        "sandbox": SID, "step": 3, "head": 2,
        "restored": {"memory": "replay", "files": {"restored": True}}, "not_restored": [],
        "replay": {"replayed_steps": 2, "duration_ms": 300.0, "diverged": [
            {"step": 1, "files": {"added": [], "removed": [], "changed": ["stamp" + HOSTILE]}},
            {"step": 2, "recorded": "ok", "replayed": "error"}]}})
    r = cli("rewind", SID, "3", sock=path)
    assert r.returncode == 0, r.stderr
    assert "memory: made again by replaying 2 steps" in r.stdout
    assert "  diverged at step 1: files changed stamp" + HOSTILE_SHOWN in r.stdout
    assert "  diverged at step 2: recorded ok, replayed error" in r.stdout
    assert "files: restored\n" in r.stdout
    assert no_raw_controls(r.stdout)


def test_rewind_from_an_earlier_copy_then_replay(fake):
    path, rpc = fake
    answer(rpc, "sandbox.rewind", {
        "sandbox": SID, "step": 5, "head": 4,
        "restored": {"memory": "snapshot+replay", "from_state": 2, "files": {"restored": True}},
        "not_restored": [{"what": "processes", "note": "were stopped"}],
        "replay": {"replayed_steps": 2, "duration_ms": 30.0, "diverged": []},
        "duration_ms": 45.0})
    r = cli("rewind", SID, "5", sock=path)
    assert r.returncode == 0, r.stderr
    assert "memory: restored from the snapshot of the end of step 2, then made again by " \
        "replaying 2 steps" in r.stdout


def test_inspect_by_replay_says_so_on_stderr(fake):
    path, rpc = fake
    answer(rpc, "sandbox.inspect", {"sandbox": SID, "step": 2, "value": "3", "type": None,
                                    "truncated": False, "error": None, "memory": "replay",
                                    "diverged": [{"step": 1, "recorded": "ok",
                                                  "replayed": "error"}]})
    r = cli("inspect", SID, "2", "x", sock=path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "3\n"
    assert "no copy holds the state before step 2: it was made again by replaying" in r.stderr
    assert "diverged at step 1: recorded ok, replayed error" in r.stderr


def test_rewind_json(fake):
    path, rpc = fake
    answer(rpc, "sandbox.rewind", REWOUND)
    r = cli("rewind", SID, "3", "--json", sock=path)
    assert r.returncode == 0
    assert json.loads(r.stdout) == REWOUND


@pytest.mark.parametrize("code, status", [(-32602, 2), (-32005, 125), (-32004, 125)])
def test_rewind_refused_names_the_problem(fake, code, status):
    path, rpc = fake
    msg = "the state before step 3 cannot be restored: evicted " + HOSTILE
    answer(rpc, "sandbox.rewind", error={"code": code, "message": msg})
    r = cli("rewind", SID, "3", sock=path)
    assert r.returncode == status
    assert "agentbox rewind: sandbox.rewind: the state before step 3 cannot be restored" \
        in r.stderr
    assert HOSTILE_SHOWN in r.stderr and no_raw_controls(r.stderr)


# ---------------------------------------------------------------- inspect


def test_inspect_prints_the_repr_escaped_line_by_line(fake):
    path, rpc = fake
    value = "   a\n0  1\n1  " + HOSTILE
    answer(rpc, "sandbox.inspect", {"sandbox": SID, "step": 3, "value": value,
                                    "type": "DataFrame", "truncated": False, "error": None})
    r = cli("inspect", SID, "3", "df", sock=path)
    assert r.returncode == 0, r.stderr
    assert calls(rpc)[-1]["params"] == {"sandbox": SID, "step": 3, "expr": "df"}
    assert r.stdout == "   a\n0  1\n1  " + HOSTILE_SHOWN + "\n"
    assert r.stderr == ""


def test_inspect_truncated_says_so_on_stderr(fake):
    path, rpc = fake
    answer(rpc, "sandbox.inspect", {"sandbox": SID, "step": 1, "value": "[0, ...", "type": "list",
                                    "truncated": True, "error": None})
    r = cli("inspect", SID, "1", "big", sock=path)
    assert r.returncode == 0
    assert r.stdout == "[0, ...\n"
    assert "cut at 64 KiB" in r.stderr


def test_inspect_an_expression_that_raised_exits_1(fake):
    path, rpc = fake
    err = {"sandbox": SID, "step": 2, "value": None, "type": None, "truncated": False,
           "error": {"name": "NameError" + HOSTILE, "value": "name 'nope' is not defined"}}
    answer(rpc, "sandbox.inspect", err)
    r = cli("inspect", SID, "2", "nope", sock=path)
    assert r.returncode == 1
    assert r.stdout == ""
    assert "before step 2, nope raised NameError" + HOSTILE_SHOWN in r.stderr
    assert ": name 'nope' is not defined" in r.stderr
    assert no_raw_controls(r.stderr)
    r = cli("inspect", SID, "2", "nope", "--json", sock=path)
    assert r.returncode == 1 and json.loads(r.stdout) == err


# ------------------------------------------------------------------- diff


DIFF = {"sandbox": SID, "a": 2, "b": 3,
        "variables": {"added": [{"name": "c", "type": "dict", "repr": "{'k': 1}"}],
                      "removed": [{"name": "b", "type": "str", "repr": "'keep'"}],
                      "changed": [{"name": "a", "before": {"type": "int", "repr": "1"},
                                   "after": {"type": "str", "repr": "'2'"}},
                                  {"name": "n", "before": {"type": "int", "repr": "1"},
                                   "after": {"type": "int", "repr": "2"}}]},
        "files": {"added": ["out/new.csv"], "removed": ["tmp.txt"], "changed": ["data.json"]}}


def test_diff_lists_variables_and_files(fake):
    path, rpc = fake
    answer(rpc, "sandbox.diff", DIFF)
    r = cli("diff", SID, "2", "3", sock=path)
    assert r.returncode == 0, r.stderr
    assert calls(rpc)[-1]["params"] == {"sandbox": SID, "a": 2, "b": 3}
    assert r.stdout.splitlines() == [
        "from the state before step 2 to the state before step 3",
        "variables:",
        "  + c (dict): {'k': 1}",
        "  - b (str): 'keep'",
        "  ~ a (int -> str): 1 -> '2'",
        "  ~ n (int): 1 -> 2",
        "files:",
        "  + out/new.csv",
        "  - tmp.txt",
        "  ~ data.json",
    ]


def test_diff_without_files_or_differences(fake):
    path, rpc = fake
    answer(rpc, "sandbox.diff", dict(DIFF, variables={"added": [], "removed": [], "changed": []},
                                     files=None))
    r = cli("diff", SID, "2", "2", sock=path)
    assert r.returncode == 0
    assert "variables: no difference" in r.stdout
    assert "files: not compared" in r.stdout


def test_diff_escapes_names_reprs_and_paths(fake):
    path, rpc = fake
    answer(rpc, "sandbox.diff", dict(DIFF, variables={
        "added": [{"name": "v" + HOSTILE, "type": "str", "repr": "'" + HOSTILE + "'"}],
        "removed": [], "changed": []}, files={"added": [HOSTILE + ".txt"], "removed": [],
                                               "changed": []}))
    r = cli("diff", SID, "1", "2", sock=path)
    assert r.returncode == 0
    assert no_raw_controls(r.stdout), r.stdout
    assert "  + v" + HOSTILE_SHOWN + " (str): '" + HOSTILE_SHOWN + "'" in r.stdout
    assert "  + " + HOSTILE_SHOWN + ".txt" in r.stdout
    r = cli("diff", SID, "1", "2", "--json", sock=path)
    assert r.stdout.isascii() and json.loads(r.stdout)["files"]["added"] == [HOSTILE + ".txt"]


# -------------------------------------------------------------- the real one


def _parked(rpc, sid, step_no, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        h = rpc.call("sandbox.history", sandbox=sid)["result"]
        s = [x for x in h["steps"] if x["step"] == step_no]
        if s and s[0]["snapshot"]["memory"] != "pending":
            return s[0]
        time.sleep(0.05)
    raise AssertionError(f"the snapshot before step {step_no} was not taken")


def test_cli_travels_in_a_session_another_connection_holds(daemon_socket):
    """The owner holds a heavy session on its connection; the CLI, a second
    process and the operator (root), reads, inspects, diffs and rewinds it."""
    sock = daemon_socket.path
    owner = RawClient(daemon_socket)
    try:
        sid = owner.call("sandbox.create", tier="heavy")["result"]["sandbox"]
        for code in ("v = 'root'\nopen('a.txt', 'w').write('a')",   # step 1
                     "v = 'a1'\nn = [1, 2]",                          # step 2
                     "open('b.txt', 'w').write('b')\nn.append(3)",    # step 3
                     "v = 'a2'"):                                     # step 4
            assert owner.call("sandbox.run", sandbox=sid, code=code)["result"]["status"] == "ok"
        _parked(owner, sid, 4)

        r = cli("history", sid, sock=sock)
        assert r.returncode == 0, r.stderr
        assert f"sandbox {sid}: 4 steps, head 4" in r.stdout
        assert r.stdout.count("parked") >= 4
        assert json.loads(cli("history", sid, "--json", sock=sock).stdout)["head"] == 4

        r = cli("inspect", sid, "3", "(v, n)", sock=sock)
        assert (r.returncode, r.stdout) == (0, "('a1', [1, 2])\n"), r.stderr
        r = cli("inspect", sid, "3", "undefined_name", sock=sock)
        assert r.returncode == 1 and "NameError" in r.stderr

        r = cli("diff", sid, "3", "4", sock=sock)
        assert r.returncode == 0, r.stderr
        assert "  ~ n (list): [1, 2] -> [1, 2, 3]" in r.stdout
        assert "files:\n  + b.txt" in r.stdout

        r = cli("rewind", sid, "3", sock=sock)
        assert r.returncode == 0, r.stderr
        assert "head is now 2" in r.stdout and "memory: restored from its snapshot" in r.stdout
        assert "files: restored" in r.stdout

        # the owner's session is back before step 3, b.txt gone with it
        res = owner.call("sandbox.run", sandbox=sid,
                         code="import os\n(v, n, sorted(os.listdir('.')))")["result"]
        assert res["value"] == "('a1', [1, 2], ['a.txt'])", res
        assert owner.call("sandbox.history", sandbox=sid)["result"]["head"] == 5

        r = cli("rewind", sid, "99", sock=sock)
        assert r.returncode == 2 and "no step 99" in r.stderr

        # another connection (the operator) reads the past of the session, not its present
        other = RawClient(daemon_socket)
        try:
            got = other.call("sandbox.files.read", sandbox=sid, path="b.txt", step=4)["result"]
            assert base64.b64decode(got["data_b64"]) == b"b" and got["step"] == 4
            listed = other.call("sandbox.files.list", sandbox=sid, step=4)["result"]["entries"]
            assert sorted(e["name"] for e in listed) == ["a.txt", "b.txt"]
            present = other.call("sandbox.files.read", sandbox=sid, path="a.txt")
            assert present["error"]["code"] == -32001, present
            past_write = other.call("sandbox.files.write", sandbox=sid, path="c.txt", data="c",
                                    step=4)
            assert past_write["error"]["code"] == -32001, past_write
            # a fork would be a session of the owner's connection: the owner's call only
            fork = other.call("sandbox.fork", sandbox=sid, step=2)
            assert fork["error"]["code"] == -32001, fork
        finally:
            other.close()

        # the operator is the actor of what it did, not the owner
        events = owner.call("sandbox.audit", sandbox=sid)["result"]["events"]
        actors = {e["kind"]: e["actor"] for e in events}
        run_actor = actors["run"]
        assert actors["sandbox.rewind"] != run_actor and actors["sandbox.rewind"].startswith("uid 0")
        assert actors["sandbox.inspect"] != run_actor
    finally:
        owner.close()


def test_operator_inspects_and_rewinds_by_replay_and_is_the_actor(daemon_socket):
    """No copies kept (snapshots: 0): the CLI's inspect and rewind make the
    state again by replay, and the inspection is recorded with the CLI as
    its actor."""
    sock = daemon_socket.path
    owner = RawClient(daemon_socket)
    try:
        sid = owner.call("sandbox.create", tier="heavy", snapshots=0)["result"]["sandbox"]
        for code in ("x = 1", "x += 1", "x += 10"):
            assert owner.call("sandbox.run", sandbox=sid, code=code)["result"]["status"] == "ok"
        r = cli("history", sid, sock=sock)
        assert r.returncode == 0 and "snapshots: 0" in r.stdout, r.stdout
        r = cli("inspect", sid, "3", "x", sock=sock)
        assert (r.returncode, r.stdout) == (0, "2\n"), r.stderr
        assert "it was made again by replaying" in r.stderr
        r = cli("rewind", sid, "2", sock=sock)
        assert r.returncode == 0, r.stderr
        assert "memory: made again by replaying 1 step" in r.stdout
        assert owner.call("sandbox.run", sandbox=sid, code="x")["result"]["value"] == "1"
        events = owner.call("sandbox.audit", sandbox=sid)["result"]["events"]
        run_actor = next(e["actor"] for e in events if e["kind"] == "run")
        insp = [e for e in events if e["kind"] == "sandbox.inspect"]
        assert len(insp) == 1 and insp[0]["body"]["memory"] == "replay", insp
        assert insp[0]["actor"] != run_actor and insp[0]["actor"].startswith("uid 0")
        rew = [e for e in events if e["kind"] == "sandbox.rewind"]
        assert rew and rew[0]["actor"] not in (run_actor, "daemon"), rew
    finally:
        owner.close()

"""`agentbox routes`: the learned routes in $AGENTBOX_HOME/routes.json, listed
and cleared as a user would, on files written by hand (no daemon needed)."""
import json
import os
import stat

import pytest

DIGEST = "3f2a9c0b1d2e" + "4" * 52
OTHER = "3f2a9c0b1d2f" + "5" * 52


def entry(reason, hits=1, last="2026-11-26T06:10:00Z"):
    return {"reason": reason, "learned": "2026-11-26T06:00:00Z", "last": last, "hits": hits}


STORE = {
    "format": "agentbox-routes/2",
    "modules": {
        "scipy": entry("module missing in nano", hits=3),
        "fractions": entry("module missing in nano", last="2026-11-26T06:05:00Z"),
    },
    "cells": {DIGEST: entry("refused by the nano jail")},
}


@pytest.fixture
def home(tmp_path):
    return tmp_path


@pytest.fixture
def routes(cli, home):
    """Runs `agentbox routes ARGS` with AGENTBOX_HOME=home."""
    def run(*args):
        return cli("routes", *args, env={"AGENTBOX_HOME": str(home)})
    return run


def write_store(home, store=STORE):
    (home / "routes.json").write_text(json.dumps(store))


def read_store(home):
    return json.loads((home / "routes.json").read_text())


def test_list_with_nothing_learned(routes, home):
    p = routes()
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"no learned routes ({home}/routes.json)\n"
    assert not (home / "routes.json").exists()


def test_list_table(routes, home):
    write_store(home)
    p = routes()
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["KIND", "KEY", "HITS", "LAST", "REASON"]
    rows = {line.split()[1]: line for line in lines[1:]}
    assert set(rows) == {"scipy", "fractions", DIGEST[:12] + "\u2026"}
    scipy = rows["scipy"].split(None, 4)
    assert scipy[:4] == ["module", "scipy", "3", "2026-11-26T06:10:00Z"]
    assert scipy[4] == "module missing in nano"
    cell = rows[DIGEST[:12] + "\u2026"]
    assert cell.startswith("cell ") and cell.endswith(" refused by the nano jail")
    assert DIGEST not in p.stdout  # shortened in the table only
    # The columns line up: every row's HITS ends where the header's does.
    end = lines[0].index("HITS") + len("HITS")
    assert all(line[end - 1].isdigit() and line[end] == " " for line in lines[1:])


def test_list_json_is_the_file_format(routes, home):
    write_store(home)
    p = routes("--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == STORE
    empty = home / "empty"
    empty.mkdir()
    p = routes("--json", "--home", str(empty))
    assert json.loads(p.stdout) == {"format": "agentbox-routes/2", "modules": {}, "cells": {}}


def test_reason_cannot_drive_the_terminal(routes, home):
    evil = ("boom\x1b]0;owned\x07\x1b[2J\u009b1m\nnext"
            "\u202ereversed\u2066isolated\u2069\x7f")
    controls = "\x1b\x07\u009b\u202e\u2066\u2069\x7f"
    # A legacy file's text is never shown: its reason becomes a kind of cause.
    write_store(home, {"format": "agentbox-routes/1", "modules": {"evil": entry(evil)}})
    p = routes()
    assert p.returncode == 0, p.stderr
    for ch in controls:
        assert ch not in p.stdout, ch
    assert "module missing in nano" in p.stdout and len(p.stdout.splitlines()) == 2, p.stdout
    # The current format takes only kinds of cause: such text is refused, and
    # the error that says so does not drive the terminal either.
    write_store(home, {"format": "agentbox-routes/2", "modules": {"evil": entry(evil)}})
    p = routes()
    assert p.returncode == 2 and "is not a kind of cause" in p.stderr, p.stderr
    for ch in controls:
        assert ch not in p.stderr, ch


def test_legacy_file_shows_no_error_text_and_is_rewritten(routes, home):
    # agentbox-routes/1 quoted the error text of whoever ran the cell.
    write_store(home, {"format": "agentbox-routes/1",
                       "modules": {"scipy": entry("No module named 'scipy' (alice's job)")},
                       "cells": {DIGEST: entry("PermissionError: '/home/alice/secret.txt'")}})
    p = routes()
    assert p.returncode == 0, p.stderr
    assert "alice" not in p.stdout and "Error" not in p.stdout, p.stdout
    assert "module missing in nano" in p.stdout and DIGEST[:12] not in p.stdout
    p = routes("clear", "module", "nothing")
    assert p.returncode == 1
    p = routes("clear", "module", "scipy")
    assert p.returncode == 0, p.stderr
    text = (home / "routes.json").read_text()
    assert "alice" not in text and json.loads(text)["format"] == "agentbox-routes/2", text


def test_a_bad_key_cannot_drive_the_terminal(routes, home):
    """The error that quotes a bad entry of the file escapes it too."""
    write_store(home, {"format": "agentbox-routes/1", "modules": {"mod\u202e\x1b[2J": entry("x")}})
    p = routes()
    assert p.returncode != 0
    assert "\u202e" not in p.stderr and "\x1b" not in p.stderr, p.stderr
    assert "mod\\u202e\\u001b[2J" in p.stderr, p.stderr


def test_clear_one_module(routes, home):
    write_store(home)
    p = routes("clear", "module", "scipy")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "removed 1 learned route (module scipy)\n"
    s = read_store(home)
    assert set(s["modules"]) == {"fractions"} and set(s["cells"]) == {DIGEST}
    assert s["modules"]["fractions"] == STORE["modules"]["fractions"]
    assert stat.S_IMODE(os.stat(home / "routes.json").st_mode) == 0o600


def test_clear_one_cell_by_digest_or_prefix(routes, home):
    store = json.loads(json.dumps(STORE))
    store["cells"][OTHER] = entry("nano's memory cap")
    write_store(home, store)
    p = routes("clear", "cell", "3f2a9c0b1d2")  # both cells start so
    assert p.returncode == 2 and "ambiguous" in p.stderr
    p = routes("clear", "cell", DIGEST[:12].upper())
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"removed 1 learned route (cell {DIGEST})\n"
    p = routes("clear", "cell", OTHER)
    assert p.returncode == 0, p.stderr
    assert read_store(home)["cells"] == {}


def test_clear_all(routes, home):
    write_store(home)
    p = routes("clear")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "removed 3 learned routes\n"
    assert read_store(home) == {"format": "agentbox-routes/2", "modules": {}, "cells": {}}
    p = routes()
    assert p.stdout.startswith("no learned routes")
    write_store(home)
    p = routes("clear", "all")
    assert p.returncode == 0 and p.stdout == "removed 3 learned routes\n"
    # Nothing left: says so, and that is no error.
    p = routes("clear")
    assert p.returncode == 0
    assert p.stdout == f"nothing to clear: no learned routes ({home}/routes.json)\n"


def test_clear_absent_exits_1(routes, home):
    write_store(home)
    before = (home / "routes.json").read_text()
    p = routes("clear", "module", "numpy")
    assert p.returncode == 1
    assert "no learned module 'numpy'" in p.stderr and str(home) in p.stderr
    p = routes("clear", "cell", "0" * 64)
    assert p.returncode == 1 and "no learned cell" in p.stderr
    assert (home / "routes.json").read_text() == before


@pytest.mark.parametrize("text, problem", [
    ("{not json", "not valid JSON"),
    ('{"format": "agentbox-routes/9", "modules": {}}', 'format "agentbox-routes/9"'),
    ('{"format": "agentbox-routes/1", "modules": []}', '"modules" is not an object'),
    ('{"format": "agentbox-routes/1", "modules": {"scipy": {"reason": 1}}}',
     '"reason" is not a string'),
])
def test_corrupt_file_exits_2_naming_file_and_problem(routes, home, text, problem):
    (home / "routes.json").write_text(text)
    for args in [(), ("--json",), ("clear",), ("clear", "module", "scipy")]:
        p = routes(*args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert problem in p.stderr and f"{home}/routes.json" in p.stderr
        assert p.stdout == ""
    assert (home / "routes.json").read_text() == text  # never overwritten


@pytest.mark.parametrize("args, problem", [
    (["bogus"], "unexpected argument 'bogus'"),
    (["--nope"], "unknown option --nope"),
    (["--home"], "missing value for --home"),
    (["clear", "module"], "missing the module name"),
    (["clear", "cell"], "missing the cell's SHA-256"),
    (["clear", "cell", "xyz"], "expected a SHA-256"),
    (["clear", "module", "a", "b"], "unexpected argument 'b'"),
    (["clear", "everything"], "expected all, module NAME or cell SHA256"),
    (["clear", "--json"], "--json is for the list only"),
])
def test_usage_errors_exit_2(routes, home, args, problem):
    (home / "routes.json").write_text("{corrupt")  # usage is checked first
    p = routes(*args)
    assert p.returncode == 2, p.stdout
    assert problem in p.stderr and "agentbox routes --help" in p.stderr


def test_help(cli):
    for args in [("routes", "--help"), ("routes", "clear", "-h"), ("help", "routes")]:
        p = cli(*args)
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith("Usage: agentbox routes [--home DIR] [--json]")
        assert "Examples:" in p.stdout and "agentbox routes clear module scipy" in p.stdout
    p = cli("--help")
    assert "routes   show or clear the routes the router learned" in p.stdout


def test_home_option_and_state_dir_rule(cli, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    write_store(b)
    p = cli("routes", "--home", str(b), env={"AGENTBOX_HOME": str(a)})
    assert "scipy" in p.stdout
    p = cli("routes", "clear", "--home", str(b), "module", "scipy",
            env={"AGENTBOX_HOME": str(a)})
    assert p.returncode == 0 and "scipy" not in read_store(b)["modules"]
    # `agentbox audit` finds its log by the same rule.
    p = cli("audit", "verify", env={"AGENTBOX_HOME": str(a)})
    assert p.returncode == 2 and f"{a}/audit.db" in p.stderr
    # Without AGENTBOX_HOME: the daemon's rule. As root that is the host's
    # /var/lib/agentbox, only read here (either message names the file).
    env = {"AGENTBOX_HOME": "", "XDG_STATE_HOME": str(tmp_path / "xdg"),
           "HOME": str(tmp_path / "home")}
    want = "/var/lib/agentbox" if os.geteuid() == 0 else f"{tmp_path}/xdg/agentbox"
    p = cli("routes", "clear", "module", "no_such_module_learned", env=env)
    assert p.returncode in (1, 2) and f"{want}/routes.json" in p.stderr
    if os.geteuid() != 0:
        p = cli("audit", "verify", env=env)
        assert p.returncode == 2 and f"{want}/audit.db" in p.stderr
        del env["XDG_STATE_HOME"]
        p = cli("routes", "clear", "module", "nope", env=env)
        assert f"{tmp_path}/home/.local/state/agentbox/routes.json" in p.stderr

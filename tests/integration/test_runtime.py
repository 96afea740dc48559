"""End-to-end behaviour of the heavy tier through the Python SDK and the
real embedded daemon: the seed example, state, errors, limits, streaming,
rich outputs and the files API."""
import base64
import os
import pathlib
import subprocess
import sys
import threading
import time

import pytest

import agentbox
from agentbox import Sandbox

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_seed_example_prints_describe():
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    p = subprocess.run([sys.executable, str(REPO / "examples" / "quickstart.py")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split()
    # describe() of [1, 2, 3]: count 3, mean 2, std 1, min 1, max 3
    for stat, value in [("count", "3.0"), ("mean", "2.0"), ("std", "1.0"), ("max", "3.0")]:
        assert lines[lines.index(stat) + 1] == value, p.stdout


def test_state_persists_across_runs(box):
    assert box.run("x = 40").ok
    r = box.run("x += 2\nx")
    assert r.value == "42"
    assert r.tier == "heavy" and "heavy" in r.route_reason


def test_last_expression_value_and_none(box):
    assert box.run("1 + 1").value == "2"
    assert box.run("y = 3").value is None
    assert box.run("None").value is None
    assert box.run("'a' * 3").value == "'aaa'"


def test_exception_shape(box):
    r = box.run("def f():\n    return 1/0\nf()")
    assert r.status == "error" and r.exit_code == 1
    assert r.error.name == "ZeroDivisionError"
    assert r.error.value == "division by zero"
    assert "return 1/0" in r.error.traceback and "<cell-" in r.error.traceback
    assert "ZeroDivisionError" in r.stderr


def test_syntax_error(box):
    r = box.run("def (")
    assert r.exit_code == 1 and r.error.name == "SyntaxError"


def test_system_exit_codes(box):
    assert box.run("import sys; sys.exit(3)").exit_code == 3
    r = box.run("import sys; sys.exit()")
    assert r.exit_code == 0 and r.status == "ok"
    # the session survives SystemExit
    assert box.run("print('alive')").stdout == "alive\n"


def test_stdout_stderr_separate_and_from_children(box):
    code = ("import os, sys, subprocess\n"
            "print('py-out'); print('py-err', file=sys.stderr)\n"
            "os.write(1, b'fd-out\\n')\n"
            "subprocess.run(['sh', '-c', 'echo child-out; echo child-err >&2'])\n"
            "import ctypes; ctypes.CDLL(None).puts(b'c-out'); ctypes.CDLL(None).fflush(None)\n")
    r = box.run(code)
    assert r.ok, r
    assert r.stdout.splitlines() == ["py-out", "fd-out", "child-out", "c-out"]
    assert r.stderr.splitlines() == ["py-err", "child-err"]


def test_output_streams_while_running(box):
    chunks, times = [], []
    t0 = time.time()

    def on_out(s):
        chunks.append(s)
        times.append(time.time() - t0)

    r = box.run("import time\nprint('first', flush=True)\ntime.sleep(1.0)\nprint('second')",
                on_stdout=on_out)
    assert r.stdout == "first\nsecond\n"
    assert "".join(chunks) == r.stdout
    # 'first' arrived well before the run ended
    assert times[0] < r.duration_ms / 1000 - 0.5


def test_output_cap_truncates_and_flags():
    with Sandbox(tier="heavy") as b:
        r = b.run("import sys\nfor i in range(200000): sys.stdout.write('x' * 100 + '\\n')")
        assert r.ok
        assert r.truncated["stdout"] is True and r.truncated["stderr"] is False
        assert 1024 * 1024 - 200 <= len(r.stdout) <= 1024 * 1024


def test_timeout_interrupts_and_session_survives(box):
    box.run("kept = 'yes'")
    t = time.time()
    r = box.run("while True: pass", timeout=1)
    assert r.status == "timeout" and r.exit_code == 124 and r.limit == "timeout"
    assert time.time() - t < 10
    assert box.run("kept").value == "'yes'"


def test_timeout_that_ignores_sigint_kills_the_sandbox(box):
    r = box.run("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass",
                timeout=1)
    assert r.status == "timeout" and r.exit_code == 124
    with pytest.raises(agentbox.SandboxDeadError) as e:
        box.run("1")
    assert "time limit" in str(e.value)


def test_memory_limit_kills_and_says_so():
    with Sandbox(tier="heavy", memory_mb=128) as b:
        r = b.run("print('start', flush=True)\nx = bytearray(512 * 1024 * 1024)")
        assert "start" in r.stdout
        assert r.status == "killed" and r.exit_code == 137 and r.limit == "memory"
    # the daemon is fine
    with Sandbox(tier="heavy") as b:
        assert b.run("print(1)").stdout == "1\n"


def test_rich_outputs_png_and_html(box):
    r = box.run("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\n"
                "import pandas as pd\npd.DataFrame({'A': [1, 2]})")
    kinds = [sorted(x) for x in r.results]
    assert ["image/png", "text/plain"] in kinds
    assert ["text/html", "text/plain"] in kinds
    png = next(x for x in r.results if "image/png" in x)
    assert base64.b64decode(png["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")
    html = next(x for x in r.results if "text/html" in x)
    assert "<table" in html["text/html"]
    # figures are closed after being returned
    assert box.run("import matplotlib.pyplot as plt\nlen(plt.get_fignums())").value == "0"


def test_files_api_roundtrip(box):
    box.files.write("data/in.csv", "a,b\n1,2\n")
    box.files.write("bin.dat", b"\x00\xff\x10")
    r = box.run("import pandas as pd\ndf = pd.read_csv('data/in.csv')\n"
                "open('out.txt', 'w').write(str(int(df.b.sum())))\n"
                "open('bin.dat', 'rb').read()")
    assert r.ok, r
    assert r.value == repr(b"\x00\xff\x10")
    assert box.files.read("out.txt") == b"2"
    names = {e["name"]: e for e in box.files.list()}
    assert names["data"]["type"] == "dir" and names["out.txt"]["size"] == 1
    assert [e["name"] for e in box.files.list("data")] == ["in.csv"]


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../x", "a/../b"])
def test_files_api_refuses_escaping_paths(box, bad):
    with pytest.raises(agentbox.PathError) as e:
        box.files.read(bad)
    assert ".." in str(e.value) or "absolute" in str(e.value)


def test_files_api_missing_file(box):
    with pytest.raises(agentbox.PathError) as e:
        box.files.read("nope.txt")
    assert "No such file" in str(e.value)


def test_workspace_is_cwd_and_home(box):
    r = box.run("import os\nprint(os.getcwd(), os.environ['HOME'])")
    assert r.stdout == "/workspace /workspace\n"


def test_concurrent_sandboxes_from_threads():
    results = {}

    def work(i):
        with Sandbox(tier="heavy") as b:
            results[i] = b.run(f"import time; time.sleep(0.3); print({i} * 2)").stdout

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {i: f"{i * 2}\n" for i in range(4)}


def test_one_sandbox_dying_does_not_affect_another():
    with Sandbox(tier="heavy") as a, Sandbox(tier="heavy") as b:
        a.run("v = 'a'")
        b.run("v = 'b'")
        r = a.run("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
        assert r.status == "killed"
        assert b.run("v").value == "'b'"


def test_busy_sandbox_refuses_a_second_run(box):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", box.run("import time; time.sleep(1)")))
    t.start()
    time.sleep(0.3)
    with pytest.raises(agentbox.BusyError):
        box.run("1")
    t.join(30)
    assert out["r"].ok


def test_invalid_arguments_are_refused_clearly():
    with pytest.raises(agentbox.InvalidArgument):
        Sandbox(tier="gpu")
    with pytest.raises(agentbox.InvalidArgument):
        Sandbox(tier="heavy", memory_mb=-5)


def test_closed_sandbox_cannot_run():
    b = Sandbox(tier="heavy")
    b.close()
    with pytest.raises(agentbox.SandboxError):
        b.run("1")


def test_daemon_info_reports_layers():
    info = agentbox.daemon_info()
    assert info["version"]
    for layer in ["userns", "pidns", "mountns", "netns", "seccomp", "landlock", "cgroup"]:
        assert info["layers"][layer] == "present", info
    assert info["degraded"] == []


# ---- post-mortem frames (error.frames): the state just before the error.

@pytest.fixture(params=["heavy", "nano"])
def tier_box(request):
    """A fresh sandbox of each tier; closed afterwards."""
    b = agentbox.Sandbox(tier=request.param)
    yield b
    b.close()


def frame_locals(frame):
    return {k: (v["type"], v["repr"]) for k, v in frame["locals"].items()}


THREE_DEEP = """\
limit = 10
def a():
    x = 1
    b(x + 1)
def b(y):
    items = [y, 'two']
    c(y * 2, {'k': y})
def c(z, d):
    name = 'deep'
    raise KeyError(z)
a()
"""


def test_postmortem_frames_three_deep(tier_box):
    r = tier_box.run(THREE_DEEP)
    assert r.status == "error" and r.exit_code == 1, r
    assert r.error.name == "KeyError" and r.error.value == "4"
    frames = r.error.frames
    assert [f["function"] for f in frames] == ["<module>", "a", "b", "c"], frames
    assert all(f["file"] == frames[0]["file"] for f in frames)
    assert frames[0]["file"].startswith("<cell-") and frames[0]["file"] in r.error.traceback
    assert [f["line"] for f in frames] == [11, 4, 7, 10]
    # The cell's frame: the session's globals, no dunders, functions included.
    cell = frame_locals(frames[0])
    assert cell["limit"] == ("int", "10")
    assert cell["a"][0] == "function" and cell["a"][1].startswith("<function a at")
    assert not [k for k in cell if k.startswith("__")], cell
    assert frame_locals(frames[1]) == {"x": ("int", "1")}
    assert frame_locals(frames[2]) == {"y": ("int", "2"), "items": ("list", "[2, 'two']")}
    assert frame_locals(frames[3]) == {"z": ("int", "4"), "d": ("dict", "{'k': 2}"),
                                       "name": ("str", "'deep'")}
    assert r.error.frames_omitted == 0
    assert not any("locals_omitted" in f for f in frames)
    # The session goes on as before.
    assert tier_box.run("limit + 1").value == "11"


def test_postmortem_failing_and_huge_reprs(tier_box):
    r = tier_box.run(
        "class Bad:\n"
        "    def __repr__(self):\n"
        "        raise ValueError('no repr')\n"
        "class Loop:\n"
        "    def __repr__(self):\n"
        "        return repr(self)\n"
        "def f():\n"
        "    bad = Bad()\n"
        "    loop = Loop()\n"
        "    huge = 'x' * 1_000_000\n"
        "    many = list(range(1_000_000))\n"
        "    text = 'é' * 500\n"
        "    return 1 / 0\n"
        "f()\n")
    # A broken repr never hides the exception nor changes the outcome.
    assert r.status == "error" and r.exit_code == 1, r
    assert r.error.name == "ZeroDivisionError"
    inner = r.error.frames[-1]
    assert inner["function"] == "f"
    loc = inner["locals"]
    assert loc["bad"] == {"type": "Bad", "repr": "<repr failed: ValueError>"}
    assert loc["loop"] == {"type": "Loop", "repr": "<repr failed: RecursionError>"}
    for name in ("huge", "text"):
        rep = loc[name]["repr"]
        assert len(rep) == 200 and rep.endswith("..."), (name, rep)
    assert loc["huge"]["repr"] == "'" + "x" * 196 + "..."
    # A builtin container is not formatted whole to keep 200 characters.
    assert loc["many"]["repr"].startswith("[0, 1, 2, ") and loc["many"]["repr"].endswith(", ...]")
    assert len(loc["many"]["repr"]) <= 200
    assert loc["text"]["type"] == "str" and loc["text"]["repr"].startswith("'éé")
    # Module-level classes are shown by their name, like exception names.
    assert frame_locals(r.error.frames[0])["Bad"] == ("type", "<class '__main__.Bad'>")
    assert tier_box.run("1 + 1").value == "2"


def test_postmortem_deep_recursion_is_bounded(tier_box):
    r = tier_box.run("def f(n):\n    return f(n + 1)\nf(0)")
    assert r.error.name == "RecursionError", r
    frames = r.error.frames
    assert len(frames) == 16
    assert r.error.frames_omitted > 900
    assert frames[0]["function"] == "<module>"
    # The first four frames and the innermost twelve.
    assert [frame_locals(f)["n"] for f in frames[1:4]] == [("int", "0"), ("int", "1"),
                                                           ("int", "2")]
    inner = [int(f["locals"]["n"]["repr"]) for f in frames[4:]]
    assert inner == list(range(inner[0], inner[0] + 12))
    assert inner[0] > 900 and inner[0] - 3 > r.error.frames_omitted - 12
    assert tier_box.run("'alive'").value == "'alive'"


def test_postmortem_library_frames_and_bounds(tier_box):
    r = tier_box.run("import json\n"
                     "def parse(text):\n"
                     "    return json.loads(text)\n"
                     + "".join(f"v{i:02} = {i}\n" for i in range(60)) +
                     "parse('{\"a\": ')")
    assert r.error.name == "json.decoder.JSONDecodeError", r
    frames = r.error.frames
    assert [f["function"] for f in frames[:2]] == ["<module>", "parse"]
    assert frame_locals(frames[1])["text"] == ("str", "'{\"a\": '")
    # Frames in the standard library below the cell's, with their locals.
    lib = frames[2:]
    assert lib and all(f["file"].endswith(".py") and "json" in f["file"] for f in lib), lib
    assert lib[-1]["function"] == "raw_decode" and "s" in lib[-1]["locals"]
    # 50 locals at most, the first by name; the cell has 63 here (json,
    # parse, v00..v59, and others of earlier runs would add more).
    cell = frames[0]
    assert len(cell["locals"]) == 50
    assert sorted(cell["locals"]) == list(cell["locals"])
    assert cell["locals_omitted"] == 62 - 50
    assert cell["locals"]["json"]["type"] == "module"


def test_postmortem_frames_kept_within_64_kib(tier_box):
    # 15 frames each with 50 locals (n and 49 others) of 200-character
    # reprs: about 190 KiB.
    code = ("def f(n):\n" +
            "".join(f"    l{i:02} = str(n) * 300\n" for i in range(49)) +
            "    if n == 0:\n        raise RuntimeError('bottom')\n"
            "    f(n - 1)\n"
            "f(13)\n")
    r = tier_box.run(code)
    assert r.error.name == "RuntimeError", r
    frames = r.error.frames
    assert len(frames) == 15 and r.error.frames_omitted == 0
    import json
    assert len(json.dumps(frames, ensure_ascii=True)) <= 64 * 1024
    # The outer frames lost their locals first; the innermost kept theirs.
    assert frames[0]["locals"] == {} and frames[0]["locals_omitted"] >= 1
    assert len(frames[-1]["locals"]) == 50 and "locals_omitted" not in frames[-1]
    emptied = [not f["locals"] for f in frames]
    assert emptied == sorted(emptied, reverse=True), emptied


def test_postmortem_syntax_error_and_system_exit_have_no_frames(tier_box):
    r = tier_box.run("def (")
    assert r.error.name == "SyntaxError" and r.error.frames == [], r
    r = tier_box.run("import sys\nsys.exit(3)")
    assert r.exit_code == 3 and r.error.frames == []
    # A SyntaxError raised by code the cell runs has the cell's frame.
    r = tier_box.run("compile('def (', 'x', 'exec')")
    assert r.error.name == "SyntaxError"
    assert [f["function"] for f in r.error.frames] == ["<module>"]


def test_postmortem_frames_of_a_timeout(box):
    r = box.run("def spin():\n    i = 0\n    while True:\n        i += 1\nspin()", timeout=1)
    assert r.status == "timeout" and r.error.name == "Timeout", r
    # Where the cell was when its time ran out.
    assert [f["function"] for f in r.error.frames] == ["<module>", "spin"]
    assert r.error.frames[1]["locals"]["i"]["type"] == "int"
    assert int(r.error.frames[1]["locals"]["i"]["repr"]) > 0


def test_postmortem_frames_go_first_when_the_result_must_shrink():
    # The error's value and traceback fill the 3 MiB a result may take with
    # the default output limit: the frames are dropped and counted.
    with Sandbox(tier="heavy") as b:
        r = b.run("def f():\n    big = 'y' * 3_000_000\n    raise ValueError(big)\nf()")
        assert r.error.name == "ValueError", r
        assert r.error.frames == [] and r.error.frames_omitted == 2

"""CLI TRANSPORT tests: build/agentbox against the FAKE daemon
(tests/integration/fake_agentboxd.py, selected with AGENTBOX_DAEMON).

They check option parsing, help, streaming, exit statuses and daemon-failure
handling of the `agentbox` CLI. They do NOT prove any sandboxing.
"""

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FAKE = HERE / "fake_agentboxd.py"
CLI = Path(os.environ.get("AGENTBOX_BIN", HERE.parents[1] / "build")) / "agentbox"

pytestmark = pytest.mark.skipif(not CLI.is_file(), reason=f"{CLI} is not built")


def cli(*args, stdin=None, daemon=FAKE):
    FAKE.chmod(FAKE.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ, AGENTBOX_DAEMON=str(daemon))
    env.pop("AGENTBOX_SOCKET", None)
    return subprocess.run([str(CLI), *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=30)


def test_streams_stdout_and_stderr_and_exits_with_code():
    r = cli("run", "-c", "one\nerr:two\nthree")
    assert (r.returncode, r.stdout, r.stderr) == (0, "one\nthree\n", "two\n")
    assert cli("run", "-c", "exception").returncode == 1
    assert cli("run", "-c", "status:timeout:124").returncode == 124
    assert cli("run", "-c", "status:killed:137").returncode == 137


def test_json_output_is_one_object():
    r = cli("run", "--json", "-c", "hi\nvalue:2")
    assert r.returncode == 0 and r.stdout.count("\n") == 1
    res = json.loads(r.stdout)
    assert res["stdout"] == "hi\n" and res["value"] == "2"


def test_code_from_file_and_stdin(tmp_path):
    f = tmp_path / "c.py"
    f.write_text("from file\n")
    assert cli("run", str(f)).stdout == "from file\n"
    assert cli("run", "-", stdin="from stdin\n").stdout == "from stdin\n"


@pytest.mark.parametrize("code,needle", [
    ("raise:-32006", "fake error -32006"),
    ("exit:3", "exited with status 3"),
    ("garbage", "protocol violation"),
])
def test_daemon_failures_exit_125(code, needle):
    r = cli("run", "-c", code)
    assert r.returncode == 125 and r.stderr.startswith("agentbox: ") and needle in r.stderr


def test_missing_daemon_is_named(tmp_path):
    r = cli("run", "-c", "x", daemon=tmp_path / "none")
    assert r.returncode == 125 and "AGENTBOX_DAEMON" in r.stderr


@pytest.mark.parametrize("args,needle", [
    (["run", "--memory", "12X", "-c", "x"], "agentbox run: --memory:"),
    (["run", "--timeout", "abc", "-c", "x"], "agentbox run: --timeout:"),
    (["run", "--pids", "0", "-c", "x"], "--pids"),
    (["run", "--cpu", "-1", "-c", "x"], "--cpu"),
    (["run", "--tier", "fast", "-c", "x"], "--tier"),
    (["run", "--bogus"], "unknown option"),
    (["run", "-c", "x", "file.py"], "exactly one"),
    (["frobnicate"], "unknown command"),
    (["rn"], "Did you mean 'run'"),
])
def test_usage_errors_exit_2(args, needle):
    r = cli(*args)
    assert r.returncode == 2 and needle in r.stderr


def test_help_and_version():
    assert "Usage: agentbox COMMAND" in cli("--help").stdout
    for verb in ("run", "doctor", "daemon"):
        assert cli("help", verb).stdout == cli(verb, "--help").stdout
        assert "Usage: agentbox " + verb in cli(verb, "-h").stdout
    assert cli("--version").stdout.startswith("agentbox ")


def test_doctor_reports_daemon_layers():
    r = cli("doctor")
    assert r.returncode == 0 and "userns" in r.stdout and "present" in r.stdout
    r = cli("doctor", "--json")
    assert json.loads(r.stdout)["layers"] == {"userns": "present"}


def test_doctor_probes_host_when_daemon_fails():
    r = cli("doctor", daemon="/bin/false")
    assert r.returncode == 1 and "could not ask the daemon" in r.stdout
    assert "seccomp" in r.stdout


# --- issue 8, "What a new user hit": the CLI says what the result says -------

def test_timeout_is_reported_on_stderr_with_its_limit():
    r = cli("run", "--timeout", "7", "-c", "status:timeout:124")
    assert r.returncode == 124
    assert "timed out" in r.stderr and "7 s" in r.stderr and "--timeout" in r.stderr


def test_timeout_without_option_names_the_default_limit():
    r = cli("run", "-c", "status:timeout:124")
    assert r.returncode == 124 and "time limit of 30 s" in r.stderr


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_truncated_output_is_reported_with_the_limit(stream):
    r = cli("run", "-c", f"out\ntruncated:{stream}")
    assert r.returncode == 0 and r.stdout == "out\n"
    assert f"{stream} was truncated" in r.stderr and "1048576 bytes" in r.stderr


def test_memory_limit_kill_is_reported():
    r = cli("run", "--memory", "256", "-c", "status:killed:137\nlimit:memory")
    assert r.returncode == 137 and "memory limit of 256 MB" in r.stderr


def test_degraded_result_warns_on_stderr_in_every_mode():
    r = cli("run", "-c", "hi\ndegraded:cgroup")
    assert r.returncode == 0 and r.stdout == "hi\n"
    assert "WARNING" in r.stderr and "NOT fully isolated" in r.stderr
    assert "cgroup: memory, CPU and process limits are NOT enforced" in r.stderr
    r = cli("run", "--json", "-c", "hi\ndegraded:cgroup,landlock")
    assert json.loads(r.stdout)["degraded"] == ["cgroup", "landlock"]
    assert "cgroup:" in r.stderr and "landlock:" in r.stderr


def test_clean_result_prints_nothing_extra():
    r = cli("run", "-c", "hi")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")


def test_run_degrade_is_passed_to_the_private_daemon(tmp_path):
    log = tmp_path / "starts.log"
    env = dict(os.environ, AGENTBOX_DAEMON=str(FAKE), FAKE_AGENTBOXD_LOG=str(log))
    env.pop("AGENTBOX_SOCKET", None)
    r = subprocess.run([str(CLI), "run", "--degrade", "cgroup", "--degrade", "landlock,seccomp",
                        "-c", "hi"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert json.loads(log.read_text())["argv"] == ["--stdio", "--degrade",
                                                   "cgroup,landlock,seccomp"]
    assert "NOT fully isolated" in r.stderr and "seccomp:" in r.stderr


@pytest.mark.parametrize("args,needle", [
    (["run", "--degrade", "bogus", "-c", "x"], 'unknown layer "bogus"'),
    (["run", "--degrade", "cgroup", "--socket", "/nonexistent.sock", "-c", "x"],
     "operator's decision"),
])
def test_degrade_usage_errors(args, needle):
    r = cli(*args)
    assert r.returncode == 2 and needle in r.stderr, r.stderr


def test_daemon_refusal_reason_reaches_the_user(tmp_path):
    env = dict(os.environ, AGENTBOX_DAEMON=str(FAKE),
               FAKE_AGENTBOXD_REFUSE='agentboxd: isolation layer "cgroup" is missing: x')
    env.pop("AGENTBOX_SOCKET", None)
    r = subprocess.run([str(CLI), "run", "-c", "hi"], capture_output=True, text=True, env=env,
                       timeout=30)
    assert r.returncode == 125 and 'isolation layer "cgroup" is missing' in r.stderr


@pytest.mark.parametrize("args,needle", [
    (["run", "--memory", "1", "-c", "x"], "--memory: 1 is outside 32..1048576 (in MB)"),
    (["run", "--pids", "2", "-c", "x"], "--pids: 2 is outside 4..2048"),
    (["run", "--cpu", "5000", "-c", "x"], "--cpu"),
    (["run", "--memory", "2000G", "-c", "x"], "--memory"),
])
def test_limits_out_of_the_daemons_range_are_usage_errors(args, needle, tmp_path):
    log = tmp_path / "starts.log"
    env = dict(os.environ, AGENTBOX_DAEMON=str(FAKE), FAKE_AGENTBOXD_LOG=str(log))
    env.pop("AGENTBOX_SOCKET", None)
    r = subprocess.run([str(CLI), *args], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert not log.exists()  # refused before any daemon was started


def test_limits_refused_by_the_daemon_are_usage_errors():
    # e.g. a daemon of another version with other bounds
    r = cli("run", "-c", "refuse:-32602:limits.memory_mb: 40 is outside 64..1024")
    assert r.returncode == 2 and "--memory: 40 is outside 64..1024 (in MB)" in r.stderr


def test_cli_honours_agentbox_bin_like_the_sdk(tmp_path):
    # One set of names (docs/environment.md): AGENTBOX_BIN is the directory
    # of the binaries for the CLI as for the SDK.
    FAKE.chmod(FAKE.stat().st_mode | stat.S_IXUSR)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "agentboxd").symlink_to(FAKE)
    log = tmp_path / "starts.log"
    env = dict(os.environ, AGENTBOX_BIN=str(bindir), FAKE_AGENTBOXD_LOG=str(log))
    for k in ("AGENTBOX_DAEMON", "AGENTBOX_SOCKET"):
        env.pop(k, None)
    r = subprocess.run([str(CLI), "run", "-c", "from fake"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 0 and r.stdout == "from fake\n" and log.exists()
    env["AGENTBOX_BIN"] = str(tmp_path / "missing")
    r = subprocess.run([str(CLI), "run", "-c", "x"], capture_output=True, text=True, env=env,
                       timeout=30)
    assert r.returncode == 125 and "AGENTBOX_BIN=" in r.stderr and "fix it" in r.stderr


def test_examples_promise_only_tiers_that_exist():
    # The quick-start once promised "Tier 2 (MicroVM)": there is no such tier.
    root = HERE.parents[1]
    for f in (root / "examples").glob("*.py"):
        text = f.read_text()
        assert "MicroVM" not in text and "Tier 2" not in text, f

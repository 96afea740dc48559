"""The agentbox CLI against the real daemon, as a user types it."""
import json
import os
import signal
import subprocess

from conftest import BUILD


def test_run_code_streams_and_mirrors_exit_status(cli):
    p = cli("run", "-c", "print('hello'); import sys; print('warn', file=sys.stderr); sys.exit(4)")
    assert p.returncode == 4
    assert p.stdout == "hello\n"
    assert "warn" in p.stderr


def test_run_error_shows_traceback_and_exits_1(cli):
    p = cli("run", "-c", "1/0")
    assert p.returncode == 1
    assert "ZeroDivisionError" in p.stderr


def test_run_from_file_and_stdin(cli, tmp_path):
    f = tmp_path / "job.py"
    f.write_text("import pandas as pd\nprint(pd.DataFrame({'A': [1, 2, 3]}).A.mean())\n")
    p = cli("run", str(f))
    assert p.returncode == 0 and p.stdout == "2.0\n"
    p = cli("run", "-", input="print(6 * 7)\n")
    assert p.returncode == 0 and p.stdout == "42\n"


def test_run_json_result(cli):
    p = cli("run", "--json", "-c", "print('x')\n3 * 3")
    assert p.returncode == 0
    r = json.loads(p.stdout)
    assert r["value"] == "9" and r["stdout"] == "x\n"
    assert r["tier"] == "nano" and r["route_reason"] == "no imports", r  # tier auto
    assert r["status"] == "ok" and r["exit_code"] == 0


def test_run_timeout_exit_124(cli):
    p = cli("run", "--timeout", "1", "-c", "while True: pass")
    assert p.returncode == 124
    assert "timed out" in p.stderr and "time limit of 1 s" in p.stderr


def test_run_limit_out_of_range_is_a_usage_error(cli):
    p = cli("run", "--memory", "1", "-c", "print(1)")
    assert p.returncode == 2
    assert p.stderr.startswith("agentbox run: --memory: 1 is outside 32..") and "MB" in p.stderr


def test_run_memory_limit_exit_137(cli):
    # heavy: the cgroup's OOM killer (nano would raise MemoryError and, with tier
    # auto, be promoted to heavy, which test_auto.py covers)
    p = cli("run", "--tier", "heavy", "--memory", "128", "-c", "x = bytearray(600 * 1024 * 1024)")
    assert p.returncode == 137


def test_run_rejects_bad_options(cli):
    p = cli("run", "--memory", "12x", "-c", "1")
    assert p.returncode == 2 and "--memory" in p.stderr
    p = cli("run", "--tier", "gpu", "-c", "1")
    assert p.returncode == 2 and "tier" in p.stderr
    p = cli("run", "--timeout", "-3", "-c", "1")
    assert p.returncode == 2 and "--timeout" in p.stderr


def test_doctor_reports_every_layer(cli):
    p = cli("doctor")
    assert p.returncode == 0, p.stdout + p.stderr
    for layer in ["userns", "pidns", "mountns", "netns", "seccomp", "landlock", "cgroup"]:
        assert layer in p.stdout
    assert "missing" not in p.stdout
    assert "\nEgress: on, sidecar " in p.stdout, p.stdout
    p = cli("doctor", "--json")
    info = json.loads(p.stdout)
    assert info["layers"]["seccomp"] == "present"
    assert info["egress"]["enabled"] is True, info.get("egress")


def test_help_on_every_verb(cli):
    for args in [["--help"], ["run", "--help"], ["doctor", "--help"], ["daemon", "--help"],
                 ["help", "run"]]:
        p = cli(*args)
        assert p.returncode == 0, args
        assert "usage" in (p.stdout + p.stderr).lower(), args
    p = cli("frobnicate")
    assert p.returncode == 2 and "frobnicate" in p.stderr


def test_daemon_verb_execs_agentboxd(cli):
    p = cli("daemon", "--version")
    assert p.returncode == 0 and "agentboxd" in p.stdout


def test_run_ctrl_c_interrupts_the_run(tmp_path):
    # Ctrl-C: the cell gets KeyboardInterrupt, the CLI says so and exits 130
    # (a run left alone would end only at its 100 s timeout, with 124).
    p = subprocess.Popen([str(BUILD / "agentbox"), "run", "--timeout", "100", "-c",
                          "import time\nprint('started', flush=True)\ntime.sleep(90)"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ))
    try:
        assert p.stdout.readline() == "started\n"
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, (p.returncode, err)
    assert "KeyboardInterrupt" in err and "agentbox: interrupted (Ctrl-C)" in err, err

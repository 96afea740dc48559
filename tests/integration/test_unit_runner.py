"""The C unit-test runner counts a skipped test as skipped, not as passed
(issue 8), and scripts/run-tests.sh still reads its closing line."""
import os
import re
import subprocess
from pathlib import Path

from conftest import BUILD

ROOT = Path(__file__).resolve().parents[2]


def run_selftest(**env):
    return subprocess.run([str(BUILD / "unit-tests"), "runner_selftest_skip"],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **env))


def test_a_skip_is_counted_as_skipped():
    p = run_selftest(AB_UNIT_SELFTEST_SKIP="1")
    assert p.returncode == 0
    assert p.stdout.splitlines() == ["ok 1 - runner_selftest_skip # SKIP",
                                     "0 passed, 0 failed, 1 skipped"]
    assert "skipped: AB_UNIT_SELFTEST_SKIP is set" in p.stderr


def test_without_skips_the_closing_line_is_unchanged():
    p = run_selftest()
    assert p.returncode == 0 and p.stdout.splitlines()[-1] == "1 passed, 0 failed"


def test_run_tests_sh_reads_both_closing_lines():
    script = (ROOT / "scripts" / "run-tests.sh").read_text()
    exprs = re.findall(r"sed -n '(s/\^.*?/p)'", script)
    assert len(exprs) >= 2, "run-tests.sh no longer parses the unit runner's line"
    for line, want in (("12 passed, 3 failed", ("12", "3")),
                       ("12 passed, 3 failed, 4 skipped", ("12", "3"))):
        got = tuple(subprocess.run(["sed", "-n", e], input=line + "\n", capture_output=True,
                                   text=True).stdout.strip() for e in exprs[:2])
        assert got == want, (line, got)

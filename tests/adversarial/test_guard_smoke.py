"""The probe guard itself: it must let probes run inside a sandbox (or every
adversarial test would prove nothing) and refuse on the host."""
import subprocess
import sys

from conftest import PROBE_GUARD, run_probe


def test_guard_allows_probes_inside_a_sandbox(box):
    r = run_probe(box, "print('inside')")
    assert "inside" in r.stdout


def test_guard_refuses_on_the_host():
    p = subprocess.run([sys.executable, "-c", PROBE_GUARD + "\nprint('RAN')"],
                       capture_output=True, text=True)
    assert p.returncode != 0
    assert "RAN" not in p.stdout
    assert "probe refused" in p.stderr

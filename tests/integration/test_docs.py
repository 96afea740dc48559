"""Docs that the code and other docs point to exist, and say what the code
does (issue 8: a referenced docs/design/conventions.md that did not exist,
"one zygote per daemon")."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def sources():
    for pattern in ("include/*.h", "src/*/*.c", "src/*/*.h", "python/agentbox/*.py",
                    "docs/*.md", "docs/design/*.md", "README.md", "Makefile"):
        yield from ROOT.glob(pattern)


def test_every_referenced_doc_exists():
    missing = []
    for f in sources():
        for ref in re.findall(r"(?<![./\w])(docs/[\w/-]+\.md)", f.read_text(errors="replace")):
            if not (ROOT / ref).is_file():
                missing.append(f"{f.relative_to(ROOT)} -> {ref}")
    assert not missing, missing


def test_docs_count_the_zygotes_right():
    # The daemon starts one zygote per tier (zygote_start in src/daemon/main.c)
    # and rotates them (--zygote-rotate).
    text = (ROOT / "docs" / "limits.md").read_text()
    assert "One zygote per daemon" not in text
    assert "Two zygotes per daemon" in text and "--zygote-rotate" in text


def test_conventions_state_the_out_of_memory_policy():
    text = (ROOT / "docs" / "design" / "conventions.md").read_text()
    assert "## Out of memory" in text and "never by dropping the reply" in text


def run_example(name, tmp_path):
    """Runs examples/NAME as a user would, with a private daemon home;
    returns its standard output (and asserts it exited 0)."""
    import os
    import subprocess
    import sys
    from conftest import BUILD
    env = dict(os.environ, AGENTBOX_BIN=str(BUILD), PYTHONPATH=str(ROOT / "python"),
               AGENTBOX_HOME=str(tmp_path / "home"))
    env.pop("AGENTBOX_SOCKET", None)
    p = subprocess.run([sys.executable, str(ROOT / "examples" / name)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_the_egress_example_runs_and_shows_a_denial(tmp_path):
    """examples/egress.py (offline): an agent-readable 403, no route around
    the proxy, and an access request left pending."""
    out = run_example("egress.py", tmp_path)
    assert "403 no-rule - no rule allows exfil.example" in out, out
    assert "ignoring the proxy: Network is unreachable" in out, out
    assert "request_access: pending" in out, out


def test_the_dlp_example_refuses_every_form_and_records_none(tmp_path):
    """examples/dlp.py (offline): a fake key refused plain, in base64 and
    full-width, and the run's recorded code redacted."""
    out = run_example("dlp.py", tmp_path)
    for how in ("plain", "base64", "full-width"):
        assert f"{how} 403 inspection - blocked by inspection: found aws_access_key_id" in out, out
    assert "recorded code holds the key: False" in out, out
    assert 'redacted: [["code", "aws_access_key_id"]]' in out, out

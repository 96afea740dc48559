"""Outside the source tree (issue 8): `make install PREFIX=... DESTDIR=...`,
the installed and the copied programs with a minimal environment, `make
uninstall`, and the SDK installed with pip finding the installed daemon."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BUILD

ROOT = Path(__file__).resolve().parents[2]


def make(*args):
    p = subprocess.run(["make", "-s", "-C", str(ROOT), f"BUILD={BUILD}", *args],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def minimal_env(tmp_path, bindir=None):
    """No AGENTBOX_* variables, no PYTHONPATH; PATH with bindir first."""
    path = "/usr/bin:/bin" if bindir is None else f"{bindir}:/usr/bin:/bin"
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": path, "HOME": str(home), "XDG_STATE_HOME": str(home / "state")}


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefix")
    make("install", f"PREFIX={root}")
    return root


def test_install_lays_out_every_file(prefix):
    for rel in ("bin/agentbox", "bin/agentboxd", "lib/libagentbox.so",
                "libexec/agentbox/agentbox-executor", "libexec/agentbox/agentbox-egress",
                "include/agentbox.h",
                "share/doc/agentbox/README.md", "share/doc/agentbox/environment.md",
                "share/doc/agentbox/design/conventions.md"):
        assert (prefix / rel).is_file(), rel
    for prog in ("agentbox", "agentboxd"):
        # The programs carry the library objects they use (issue 9: the
        # shared library exports only the public API), so they need no
        # libagentbox.so and no run path into the build tree.
        dyn = subprocess.run(["readelf", "-d", str(prefix / "bin" / prog)],
                             capture_output=True, text=True).stdout
        assert "libagentbox" not in dyn and str(BUILD) not in dyn, dyn


def test_installed_cli_runs_from_anywhere_with_a_minimal_env(prefix, tmp_path):
    env = minimal_env(tmp_path, prefix / "bin")
    p = subprocess.run(["agentbox", "run", "-c", "print(1)"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert (p.returncode, p.stdout) == (0, "1\n"), p.stderr
    # nothing is loaded from the build tree
    p = subprocess.run(["ldd", str(prefix / "bin" / "agentbox")], capture_output=True,
                       text=True, env=env)
    assert str(BUILD) not in p.stdout and "libagentbox" not in p.stdout, p.stdout


PROGRAM = r"""
#include <agentbox.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
	ab_error err = {0};
	ab_limits l;
	uint64_t mb = 0;
	ab_route r;
	ab_audit_report rep;
	ab_limits_default(&l);
	if (ab_parse_size_mb("2G", &mb, &err) != 0 || mb != 2048)
		return 2;
	if (ab_layer_from_name(ab_layer_name(AB_LAYER_SECCOMP)) != AB_LAYER_SECCOMP)
		return 3;
	ab_router_route("import subprocess\n", 18, NULL, &r);
	if (r.tier != AB_ROUTE_HEAVY || !ab_audit_kinds[0])
		return 4;
	if (ab_audit_verify("/nonexistent/audit.db", NULL, NULL, NULL, &rep, &err) >= 0)
		return 5;
	printf("%s %s %u\n", ab_version(), AGENTBOX_VERSION, (unsigned)l.pids);
	return 0;
}
"""


def test_a_program_builds_against_the_installed_header_and_library(tmp_path):
    # Only the staged include/ and lib/: no -I for jansson or the sources.
    root = tmp_path / "stage"
    make("install", "PREFIX=/opt/agentbox", f"DESTDIR={root}")
    inc, lib = root / "opt/agentbox/include", root / "opt/agentbox/lib"
    src = tmp_path / "prog.c"
    src.write_text(PROGRAM)
    san = ["-fsanitize=address,undefined"] if os.environ.get("AGENTBOX_SANITIZED") == "1" else []
    cmd = ["cc", "-std=c17", "-Wall", "-Wextra", "-Werror", *san, f"-I{inc}", str(src),
           "-o", str(tmp_path / "prog"), f"-L{lib}", "-lagentbox", f"-Wl,-rpath,{lib}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([str(tmp_path / "prog")], capture_output=True, text=True, timeout=60,
                       env=dict(minimal_env(tmp_path), ASAN_OPTIONS="detect_leaks=0"))
    assert p.returncode == 0, (p.returncode, p.stderr)
    version = (ROOT / "include/agentbox.h").read_text().split('AGENTBOX_VERSION "')[1].split('"')[0]
    assert p.stdout.split()[:2] == [version, version] and p.stdout.split()[2] == "128", p.stdout


def test_destdir_stages_under_its_root(tmp_path):
    make("install", "PREFIX=/opt/agentbox", f"DESTDIR={tmp_path}")
    assert (tmp_path / "opt/agentbox/libexec/agentbox/agentbox-executor").is_file()
    make("uninstall", "PREFIX=/opt/agentbox", f"DESTDIR={tmp_path}")
    left = [p for p in (tmp_path / "opt").rglob("*") if p.is_file()]
    assert left == [], left


def test_copied_tree_works_and_uninstall_removes_the_install(tmp_path):
    prefix = tmp_path / "p"
    make("install", f"PREFIX={prefix}")
    copy = tmp_path / "copy"
    shutil.copytree(prefix, copy, symlinks=True)
    make("uninstall", f"PREFIX={prefix}")
    assert [p for p in prefix.rglob("*") if p.is_file()] == []
    p = subprocess.run([str(copy / "bin" / "agentbox"), "run", "-c", "print(2)"], cwd=tmp_path,
                       env=minimal_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert (p.returncode, p.stdout) == (0, "2\n"), p.stderr


def pip_install(target):
    # A copy of the package, so that pip's build files stay out of the tree;
    # --no-index: the SDK has no dependencies and must install offline.
    src = target.parent / "sdk-src"
    shutil.copytree(ROOT / "python", src, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                        "--no-build-isolation", "--no-index", "--quiet", "--target",
                        str(target), str(src)], capture_output=True, text=True, timeout=600)
    if p.returncode != 0 and "No module named pip" in p.stderr:
        pytest.skip("pip is not installed")
    assert p.returncode == 0, p.stderr
    assert (target / "agentbox" / "_transport.py").is_file()


SDK_RUN = "import agentbox; print(agentbox.run('print(6 * 7)').stdout, end='')"


def test_pip_installed_sdk_finds_the_installed_daemon(prefix, tmp_path):
    site = tmp_path / "site"
    pip_install(site)
    env = dict(minimal_env(tmp_path, prefix / "bin"), PYTHONPATH=str(site))
    p = subprocess.run([sys.executable, "-c", SDK_RUN], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert (p.returncode, p.stdout) == (0, "42\n"), p.stderr


def test_pip_installed_sdk_says_where_it_looked(tmp_path):
    site = tmp_path / "site"
    pip_install(site)
    env = dict(minimal_env(tmp_path), PYTHONPATH=str(site))
    p = subprocess.run([sys.executable, "-c", SDK_RUN], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1
    err = p.stderr
    if Path("/usr/local/bin/agentboxd").exists() or Path("/usr/bin/agentboxd").exists():
        pytest.skip("an agentboxd is installed on this host")
    for place in ("AGENTBOX_DAEMON", "AGENTBOX_BIN", "$PATH", "/usr/local/bin/agentboxd",
                  "/usr/bin/agentboxd", "make install"):
        assert place in err, (place, err)

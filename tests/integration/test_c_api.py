"""The C API (issue 9): libagentbox.so exports exactly the declarations that
include/agentbox.h marks AB_API, the header compiles on its own (no
jansson.h, no internal header), and a program outside the tree can read
the audit log through it."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, DaemonSocket

ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "include" / "agentbox.h"
SANITIZED = os.environ.get("AGENTBOX_SANITIZED") == "1"


def documented_api(header=HEADER):
    """The names the header declares with AB_API (functions and data)."""
    text = re.sub(r"/\*.*?\*/", " ", header.read_text(), flags=re.S)
    names = set()
    for decl in re.findall(r"^AB_API\b([^;]*);", text, flags=re.M):
        m = re.search(r"\(?\s*\*?\s*(\w+)\s*[(\[]", decl)
        assert m, decl
        names.add(m.group(1))
    return names


def exported(lib):
    """Every symbol lib defines for others, but those of the toolchain (_init,
    _fini, _edata, _end, __bss_start, and the sanitizers' __* names)."""
    out = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True,
                         text=True, check=True).stdout
    names = {line.split()[-1] for line in out.splitlines() if line.split()}
    return {n for n in names
            if n not in ("_init", "_fini", "_edata", "_end") and not n.startswith("__")}


def compile_and_link(src, out, include_dir, lib_dir, extra=()):
    """Compiles a C file that sees only the given include dir and links it
    against libagentbox.so in lib_dir."""
    cc = os.environ.get("CC", "cc")
    san = ["-fsanitize=address,undefined"] if SANITIZED else []
    cmd = [cc, "-std=c17", "-Wall", "-Wextra", "-Wpedantic", "-Werror", *san, *extra,
           f"-I{include_dir}", str(src), "-o", str(out), f"-L{lib_dir}", "-lagentbox",
           f"-Wl,-rpath,{lib_dir}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, " ".join(cmd) + "\n" + p.stderr
    return out


def run_program(exe, *args):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60,
                          env=env)


def test_the_header_lists_the_public_api():
    api = documented_api()
    # What the CLI's doctor, audit and routes verbs need from outside.
    for name in ("ab_version", "ab_limits_default", "ab_parse_size_mb", "ab_probe_layers",
                 "ab_layer_name", "ab_audit_verify", "ab_audit_query_lines", "ab_audit_export",
                 "ab_audit_kinds", "ab_router_route", "ab_routes_load", "ab_routes_save"):
        assert name in api, name
    # Internal machinery stays internal.
    for name in ("ab_frame_write", "ab_cgroup_create", "ab_audit_open", "ab_audit_append",
                 "ab_error_set", "ab_seccomp_apply_heavy", "ab_limits_from_json"):
        assert name not in api, name


def test_the_library_exports_exactly_the_documented_api():
    names = exported(BUILD / "libagentbox.so")
    api = documented_api()
    assert names == api, {"exported, undocumented": sorted(names - api),
                          "documented, not exported": sorted(api - names)}


def test_the_public_header_stands_alone(tmp_path):
    # A jansson.h that must not be reached: the header may need nothing but
    # the C library.
    trap = tmp_path / "trap"
    trap.mkdir()
    for name in ("jansson.h", "internal.h", "frame.h", "audit.h", "utf8.h"):
        (trap / name).write_text(f'#error "agentbox.h includes {name}"\n')
    inc = tmp_path / "inc"
    inc.mkdir()
    shutil.copy(HEADER, inc / "agentbox.h")
    src = tmp_path / "alone.c"
    src.write_text("#include <agentbox.h>\n"
                   "int main(void) { ab_limits l; ab_limits_default(&l);\n"
                   "  return l.pids > 0 && ab_version() != 0 ? 0 : 1; }\n")
    cc = os.environ.get("CC", "cc")
    for std in ("-std=c99", "-std=c17"):
        p = subprocess.run([cc, std, "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-c",
                            f"-I{trap}", f"-I{inc}", str(src), "-o", str(tmp_path / "a.o")],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
    if shutil.which("c++"):
        p = subprocess.run(["c++", "-x", "c++", "-Wall", "-Wextra", "-Werror", "-c",
                            f"-I{trap}", f"-I{inc}", str(src), "-o", str(tmp_path / "b.o")],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr


QUERY_LINES = r"""
#include <agentbox.h>
#include <stdio.h>
#include <string.h>

static int print_line(const char *json, size_t len, void *ctx)
{
	(void)ctx;
	if (strlen(json) != len)
		return -1;
	printf("%s\n", json);
	return 0;
}

int main(int argc, char **argv)
{
	ab_error err = {0};
	ab_audit_filter f = {.kind = argc > 2 ? argv[2] : NULL};
	if (argc < 2 || ab_audit_query_lines(argv[1], &f, print_line, NULL, &err) < 0) {
		fprintf(stderr, "query: %s\n", err.msg);
		return 1;
	}
	return 0;
}
"""


def test_a_program_outside_the_tree_reads_the_audit_log(tmp_path):
    d = DaemonSocket(tmp_path)
    try:
        import agentbox
        with agentbox.Sandbox(tier="nano", url=str(d.path)) as b:
            b.run("print(1)")
    finally:
        d.stop()
    db = tmp_path / "audit.db"
    src = tmp_path / "query.c"
    src.write_text(QUERY_LINES)
    exe = compile_and_link(src, tmp_path / "query", ROOT / "include", BUILD)
    p = run_program(exe, str(db))
    assert p.returncode == 0, p.stderr
    ours = p.stdout.splitlines()
    ex = subprocess.run([str(BUILD / "agentbox"), "audit", "export", "--jsonl", "--db", str(db)],
                        capture_output=True, text=True, timeout=60)
    assert ex.returncode == 0, ex.stderr
    events = [line for line in ex.stdout.splitlines()
              if line.strip() and "kind" in json.loads(line)]
    # The same events, byte for byte, as the export writes them.
    assert ours == events and len(ours) >= 3
    p = run_program(exe, str(db), "run")
    assert [json.loads(line)["kind"] for line in p.stdout.splitlines()] == ["run"]
    p = run_program(exe, str(tmp_path / "missing.db"))
    assert p.returncode == 1 and "missing.db" in p.stderr, p.stderr

"""The nano tier: a tight jail for standard-library code. These tests drive
it through the SDK and check both that ordinary cells work and that the
jail refuses what nano must not do (the adversarial suite covers escapes)."""
import os

import pytest

import agentbox
from agentbox import Sandbox
from conftest import run_probe


@pytest.fixture(scope="module")
def nano():
    b = Sandbox(tier="nano")
    yield b
    b.close()


def test_nano_runs_standard_library_code(nano):
    r = nano.run("import json, re, decimal, statistics, datetime, hashlib, uuid\n"
                 "d = json.loads('{\"a\": [1, 2, 3]}')\n"
                 "print(statistics.mean(d['a']), re.findall(r'\\d', 'a1b2'),\n"
                 "      decimal.Decimal('0.1') + decimal.Decimal('0.2'))\n"
                 "hashlib.sha256(b'x').hexdigest()[:8]")
    assert r.ok, r
    assert r.stdout == "2 ['1', '2'] 0.3\n"
    assert r.value == "'2d711642'"
    assert r.tier == "nano" and "nano" in r.route_reason


def test_nano_keeps_state_and_threads_work(nano):
    nano.run("import threading\nacc = []")
    r = nano.run("ts = [threading.Thread(target=acc.append, args=(i,)) for i in range(4)]\n"
                 "[t.start() for t in ts]; [t.join() for t in ts]\nsorted(acc)")
    assert r.value == "[0, 1, 2, 3]", r


def test_nano_reads_workspace_files_but_writes_nothing(nano):
    nano.files.write("in.json", '{"k": 5}')
    r = nano.run("import json\njson.load(open('in.json'))['k']")
    assert r.value == "5", r
    r = nano.run("open('out.txt', 'w')")
    assert r.error.name == "PermissionError", r


@pytest.mark.parametrize("code,error", [
    ("import socket; socket.socket()", "PermissionError"),
    ("import os; os.fork()", "PermissionError"),
    ("import subprocess; subprocess.run(['true'])", "PermissionError"),
    ("import numpy", "ModuleNotFoundError"),
    ("import pandas", "ModuleNotFoundError"),
])
def test_nano_refuses_what_needs_heavy(nano, code, error):
    r = nano.run(code)
    assert r.status == "error" and r.error.name == error, r


def test_nano_probe_sees_the_tighter_jail(nano):
    nano.files.write("in.json", '{"k": 5}')     # (not left to an earlier test: xdist)
    r = run_probe(nano, "import os\n"
                        "print(os.path.exists('/proc'), os.path.exists('/tmp/x'))\n"
                        "st = open('/workspace/in.json').read()\n")
    assert "False False" in r.stdout, r


@pytest.mark.skipif(os.environ.get("AGENTBOX_SANITIZED") == "1",
                    reason="AddressSanitizer cannot run under RLIMIT_AS, so sanitizer builds "
                           "cap nano memory with the cgroup only")
def test_nano_memory_cap_is_a_clean_error():
    with Sandbox(tier="nano", memory_mb=128) as b:
        r = b.run("x = bytearray(512 * 1024 * 1024)")
        assert r.error.name == "MemoryError", r
        assert b.run("1 + 1").value == "2"


def test_nano_timeout(nano):
    r = nano.run("while True: pass", timeout=1)
    assert r.status == "timeout" and r.exit_code == 124
    assert nano.run("'alive'").value == "'alive'"


def test_daemon_lists_both_tiers():
    info = agentbox.daemon_info()
    assert info["tiers"] == ["heavy", "nano"]
    assert set(info["pool"]) == {"heavy", "nano"}

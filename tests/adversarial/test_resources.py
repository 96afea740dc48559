"""Adversarial tests, heavy tier: resource exhaustion (ADVERSARIAL.md R1-R14).

Every attack runs inside a sandbox through run_probe (PROBE_GUARD first, the
PROBE-RAN marker last) or, where the probe is expected to be killed, prints a
start marker that the test asserts. After each attack the test proves that
the daemon and other sandboxes are unaffected."""
import os
import time
import uuid

import pytest

import agentbox
from agentbox import Sandbox
from conftest import run_probe
from probes import guarded, host_pids_with

SMALL = dict(memory_mb=128, pids=32, timeout=20, disk_mb=32)

# Fork and thread bombs, a GiB of output, disks filled: these load the whole
# machine, and most assert a time bound. scripts/run-tests.sh runs them one at
# a time after the parallel part, so that they neither slow nor are slowed by
# tests of other workers.
pytestmark = pytest.mark.serial


def assert_healthy():
    """The daemon answers and a brand-new sandbox runs print(1)."""
    info = agentbox.daemon_info()
    assert info["pid"] > 0
    with Sandbox(tier="heavy", memory_mb=128, pids=32, timeout=10, disk_mb=16) as other:
        r = other.run("print(1)", timeout=10)
        assert r.status == "ok" and r.stdout == "1\n", r


def wait_gone(marker, seconds=10.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        left = host_pids_with(marker)
        if not left:
            return []
        time.sleep(0.1)
    return host_pids_with(marker)


# --------------------------------------------------------------- R1, R2, R11

def test_r1_fork_bomb_hits_pid_limit_and_leaves_nothing():
    marker = "agentbox-r1-" + uuid.uuid4().hex
    b = Sandbox(tier="heavy", **SMALL)
    try:
        r = run_probe(b, f"""
import os, errno
kids, err = [], None
for i in range(500):
    try:
        pid = os.fork()
    except OSError as e:
        err = e.errno
        break
    if pid == 0:
        try:
            os.execv('/bin/sleep', ['{marker}', '300'])
        finally:
            os._exit(0)
    kids.append(pid)
print('ERRNO', err, 'FORKED', len(kids))
""")
        assert f"ERRNO {__import__('errno').EAGAIN} " in r.stdout, r.stdout
        forked = int(r.stdout.split("FORKED")[1].split()[0])
        assert 0 < forked < SMALL["pids"], r.stdout
        assert r.limit in (None, "pids"), r
        # The sleeping children are real and visible on the host until teardown.
        deadline = time.time() + 5
        while len(host_pids_with(marker)) < forked and time.time() < deadline:
            time.sleep(0.05)
        assert len(host_pids_with(marker)) >= 1
        assert_healthy()
    finally:
        b.close()
    assert wait_gone(marker) == [], "fork-bomb children survived sandbox teardown"
    assert_healthy()


def test_r2_thread_bomb_hits_the_same_limit():
    with Sandbox(tier="heavy", **SMALL) as b:
        r = run_probe(b, """
import threading, _thread
ev = threading.Event()
n, err = 0, None
for i in range(1000):
    try:
        _thread.start_new_thread(ev.wait, ())
        n += 1
    except RuntimeError as e:
        err = str(e)
        break
print('THREADS', n, 'ERR', err)
ev.set()
""")
        n = int(r.stdout.split("THREADS")[1].split()[0])
        assert "can't start new thread" in r.stdout, r.stdout
        assert n < SMALL["pids"], r.stdout
        assert r.limit == "pids", r
        r2 = b.run("print(2)", timeout=10)
        assert r2.stdout == "2\n", r2
    assert_healthy()


def test_r11_zombie_flood_bounded_by_pid_limit():
    with Sandbox(tier="heavy", **SMALL) as b:
        r = run_probe(b, """
import os, errno
kids, err = [], None
for i in range(500):
    try:
        pid = os.fork()
    except OSError as e:
        err = e.errno
        break
    if pid == 0:
        os._exit(0)          # becomes a zombie: never reaped below
    kids.append(pid)
print('ERRNO', err, 'ZOMBIES', len(kids))
for p in kids:
    os.waitpid(p, 0)
pid = os.fork()              # once reaped, forking works again
if pid == 0:
    os._exit(7)
print('AFTER', os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
""")
        assert f"ERRNO {__import__('errno').EAGAIN} " in r.stdout, r.stdout
        z = int(r.stdout.split("ZOMBIES")[1].split()[0])
        assert 0 < z < SMALL["pids"]
        assert "AFTER 7" in r.stdout
    assert_healthy()


# ------------------------------------------------------------------------ R3

def test_r3_unbounded_allocation_is_oom_killed():
    b = Sandbox(tier="heavy", memory_mb=128, pids=32, timeout=30, disk_mb=16)
    try:
        t = time.time()
        r = b.run(guarded("x = []\nwhile True:\n    x.append(bytearray(8 << 20))\n"), timeout=30)
        assert "PROBE-START" in r.stdout, r
        assert r.status == "killed", r
        assert r.exit_code == 137, r
        assert r.limit == "memory", r
        assert time.time() - t < 20
        try:
            r2 = b.run("print(1)", timeout=5)
            assert r2.status == "killed", r2
        except agentbox.SandboxDeadError:
            pass
    finally:
        b.close()
    assert_healthy()


# ------------------------------------------------------------------- R4-R6

def test_r4_fill_tmp_gets_enospc_at_its_cap():
    disk = 16
    with Sandbox(tier="heavy", memory_mb=128, pids=32, timeout=20, disk_mb=disk) as b:
        r = run_probe(b, f"""
import os, errno
st = os.statvfs('/tmp')
print('SIZE', st.f_blocks * st.f_frsize)
chunk = b'x' * (1 << 20)
total, err, i = 0, None, 0
try:
    while total < (1 << 30):
        with open('/tmp/fill%d' % i, 'wb') as f:   # 4 MiB files: below RLIMIT_FSIZE
            for _ in range(4):
                f.write(chunk); f.flush()
                total += len(chunk)
        i += 1
except OSError as e:
    err = e.errno
print('ERRNO', err, 'WROTE', total)
for n in os.listdir('/tmp'):
    os.unlink('/tmp/' + n)
st = os.statvfs('/tmp')
print('FREE_AFTER', st.f_bfree * st.f_frsize)
""")
        assert f"ERRNO {__import__('errno').ENOSPC} " in r.stdout, r.stdout
        size = int(r.stdout.split("SIZE")[1].split()[0])
        # docs/limits.md: /tmp is a tmpfs of disk_mb + 1 MB
        assert size <= (disk + 1) << 20
        wrote = int(r.stdout.split("WROTE")[1].split()[0])
        assert wrote <= ((disk + 1) << 20) + (1 << 20), r.stdout
        assert int(r.stdout.split("FREE_AFTER")[1].split()[0]) >= size - (1 << 20)
    # a new sandbox starts with an empty /tmp
    with Sandbox(tier="heavy", memory_mb=128, pids=32, timeout=10, disk_mb=disk) as c:
        r = run_probe(c, "import os; print('TMP', sorted(os.listdir('/tmp')))")
        assert "TMP []" in r.stdout, r.stdout
    assert_healthy()


def test_r5_millions_of_empty_files_hit_an_inode_cap():
    disk = 8
    with Sandbox(tier="heavy", memory_mb=128, pids=32, timeout=20, disk_mb=disk) as b:
        r = run_probe(b, """
import os
n, err = 0, None
try:
    while n < 2000000:
        os.close(os.open('/tmp/f%d' % n, os.O_CREAT | os.O_WRONLY, 0o600))
        n += 1
except OSError as e:
    err = e.errno
print('ERRNO', err, 'FILES', n)
""")
        import errno
        assert f"ERRNO {errno.ENOSPC} " in r.stdout or f"ERRNO {errno.EDQUOT} " in r.stdout, \
            r.stdout
        n = int(r.stdout.split("FILES")[1].split()[0])
        # docs/limits.md: disk_mb * 1024 inodes, at least 4096
        assert n <= max(4096, disk * 1024), r.stdout
    assert_healthy()


def test_r6_file_past_size_limit_gets_efbig_and_is_reported():
    import errno
    disk = 8
    with Sandbox(tier="heavy", memory_mb=128, pids=32, timeout=20, disk_mb=disk) as b:
        r = run_probe(b, f"""
import os, errno
fd = os.open('/workspace/big', os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
chunk = b'y' * (1 << 20)
total, err = 0, None
try:
    while total < (64 << 20):
        total += os.write(fd, chunk)
except OSError as e:
    err = e.errno
os.close(fd)
print('ERRNO', err, 'WROTE', total, 'SIZE', os.stat('/workspace/big').st_size)
""")
        assert f"ERRNO {errno.EFBIG} " in r.stdout, r.stdout
        assert int(r.stdout.split("SIZE")[1].split()[0]) <= disk << 20
        # uncaught: reported as an error result, the sandbox survives
        # (the first file is removed: the workspace's own size cap equals the
        # file-size limit, and this checks EFBIG, not ENOSPC)
        r = b.run("import os; os.unlink('/workspace/big'); open('/workspace/big2', 'wb').write(b'z' * (%d))" % ((disk + 1) << 20),
                  timeout=10)
        assert r.status == "error" and r.exit_code == 1, r
        assert r.error is not None and "27" in (r.error.value or "") + r.stderr, r
        assert b.run("print(3)", timeout=5).stdout == "3\n"
    assert_healthy()


# ----------------------------------------------------------------- R7-R9

def test_r7_busy_threads_end_as_timeout():
    with Sandbox(tier="heavy", memory_mb=128, pids=32, timeout=20, disk_mb=16) as b:
        t = time.time()
        r = b.run(guarded("""
import threading
def spin():
    while True:
        pass
for _ in range(4):
    threading.Thread(target=spin, daemon=True).start()
while True:
    pass
"""), timeout=2)
        took = time.time() - t
        assert "PROBE-START" in r.stdout, r
        assert r.status == "timeout" and r.exit_code == 124, r
        assert r.limit == "timeout", r
        assert took < 8, took
    assert_healthy()


@pytest.mark.parametrize("attack", [
    "import time\ntime.sleep(1e9)\n",
    "import signal\nsignal.pause()\n",
    "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\nwhile True: pass\n",
], ids=["sleep", "pause", "sigstop"])
def test_r8_sleep_pause_sigstop_end_at_wall_limit(attack):
    with Sandbox(tier="heavy", memory_mb=128, pids=32, timeout=20, disk_mb=16) as b:
        t = time.time()
        r = b.run(guarded(attack), timeout=1.5)
        took = time.time() - t
        assert "PROBE-START" in r.stdout, r
        assert r.status == "timeout" and r.exit_code == 124, r
        assert took < 8, took
    assert_healthy()


def test_r9_ignored_signals_escalate_to_sigkill():
    b = Sandbox(tier="heavy", memory_mb=128, pids=32, timeout=20, disk_mb=16)
    try:
        t = time.time()
        r = b.run(guarded("""
import signal
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGXCPU, signal.SIGHUP, signal.SIGUSR1):
    signal.signal(s, signal.SIG_IGN)
while True:
    pass
"""), timeout=1.5)
        took = time.time() - t
        assert "PROBE-START" in r.stdout, r
        assert r.status == "timeout" and r.exit_code == 124, r
        assert took < 10, took
        # escalated: the sandbox is gone
        with pytest.raises(agentbox.SandboxDeadError):
            b.run("print(1)", timeout=5)
    finally:
        b.close()
    assert_healthy()


# ----------------------------------------------------------------------- R10

def test_r10_double_fork_setsid_daemon_killed_at_teardown():
    marker = "agentbox-r10-" + uuid.uuid4().hex
    b = Sandbox(tier="heavy", **SMALL)
    try:
        r = run_probe(b, f"""
import os, time
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        nul = os.open('/dev/null', os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(nul, fd)
        os.execv('/usr/bin/python3',
                 ['python3', '-c', 'import time; time.sleep(600)  # {marker}'])
    os._exit(0)
os.waitpid(pid, 0)
seen = False
for _ in range(100):
    for p in os.listdir('/proc'):
        if p.isdigit():
            try:
                if b'{marker}' in open('/proc/%s/cmdline' % p, 'rb').read():
                    seen = True
            except OSError:
                pass
    if seen:
        break
    time.sleep(0.05)
print('DAEMON-UP', seen)
""")
        assert "DAEMON-UP True" in r.stdout, r.stdout
        # The daemonised process outlives the run and is visible from the host
        # (this proves the host-side scan below can see it).
        assert host_pids_with(marker), "the probe's daemon is not visible on the host"
        assert b.run("print(5)", timeout=5).stdout == "5\n"
    finally:
        t = time.time()
        b.close()
        assert time.time() - t < 15
    assert wait_gone(marker) == [], "a setsid daemon survived sandbox teardown"
    assert_healthy()


# ----------------------------------------------------------------------- R12

def test_r12_fd_exhaustion_and_pipe_buffers_are_bounded():
    with Sandbox(tier="heavy", **SMALL) as b:
        r = run_probe(b, """
import os, errno, resource, fcntl
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
print('NOFILE', soft, hard)
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard + 1, hard + 1))
    print('RAISED')
except (ValueError, OSError) as e:
    print('NORAISE')
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
fds, err = [], None
try:
    while len(fds) < 1000000:
        fds.append(os.open('/dev/null', os.O_RDONLY))
except OSError as e:
    err = e.errno
print('ERRNO', err, 'FDS', len(fds))
for fd in fds:
    os.close(fd)
# fill pipe buffers
pipes, total, perr = [], 0, None
try:
    while len(pipes) < 100000:
        r, w = os.pipe()
        pipes.append((r, w))
        try:
            fcntl.fcntl(w, 1031, 1 << 20)   # F_SETPIPE_SZ
        except OSError:
            pass
        os.set_blocking(w, False)
        try:
            while True:
                total += os.write(w, b'p' * 65536)
        except BlockingIOError:
            pass
except OSError as e:
    perr = e.errno
print('PIPES', len(pipes), 'BYTES', total, 'PERR', perr)
for r, w in pipes:
    os.close(r); os.close(w)
""", timeout=30)
        import errno
        hard = int(r.stdout.split("NOFILE")[1].split()[1])
        assert hard <= 65536
        assert "NORAISE" in r.stdout
        assert f"ERRNO {errno.EMFILE} " in r.stdout, r.stdout
        assert int(r.stdout.split("FDS")[1].split()[0]) <= hard
        assert int(r.stdout.split("PIPES")[1].split()[0]) <= hard // 2 + 1
        assert r.status == "ok", r
        assert b.run("print(4)", timeout=5).stdout == "4\n"
    assert_healthy()


# ----------------------------------------------------------------------- R13

def daemon_rss_kb():
    pid = agentbox.daemon_info()["pid"]
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for the daemon")


def test_r13_output_flood_truncated_with_constant_daemon_memory():
    cap = 1 << 20
    with Sandbox(tier="heavy", memory_mb=256, pids=32, timeout=60, disk_mb=16) as b:
        # PROBE-RAN would be cut off with the rest of the flood: the probe ends
        # by writing a file that the test reads back instead.
        r = b.run(guarded("""
import sys, os
line = 'x' * 1023 + '\\n'
block = line * 1024
for _ in range(50):                     # 50 MiB of lines
    sys.stdout.write(block)
sys.stdout.flush()
big = b'y' * (20 << 20)                 # one 20 MiB line without newline
n = 0
while n < len(big):
    n += os.write(1, big[n:])
n = 0
err = b'e' * (8 << 20)                  # and stderr too
while n < len(err):
    n += os.write(2, err[n:])
open('/workspace/r13-done', 'w').write('done')
"""), timeout=60)
        assert r.stdout.startswith("PROBE-START"), r
        assert b.files.read("r13-done") == b"done", r
        assert r.status == "ok", r
        assert r.truncated.get("stdout") is True, r.truncated
        assert r.truncated.get("stderr") is True, r.truncated
        assert len(r.stdout) <= cap + 4096, len(r.stdout)
        assert len(r.stderr) <= cap + 4096, len(r.stderr)
        rss = daemon_rss_kb()
        assert rss < 200 * 1024, f"daemon RSS {rss} kB after the flood"
        # a much bigger flood (1 GiB) keeps the daemon's memory flat
        t = time.time()
        r = b.run(guarded("""
import os
blk = b'z' * (1 << 20)
for _ in range(1024):
    os.write(1, blk)
print('END')
"""), timeout=60)
        assert r.status == "ok", r
        assert r.truncated.get("stdout") is True
        assert len(r.stdout) <= cap + 4096
        assert time.time() - t < 45
        rss = daemon_rss_kb()
        assert rss < 200 * 1024, f"daemon RSS {rss} kB after a 1 GiB flood"
    assert_healthy()


# ----------------------------------------------------------------------- R14

def test_r14_huge_power_is_killed_at_the_time_limit():
    b = Sandbox(tier="heavy", memory_mb=512, pids=32, timeout=20, disk_mb=16)
    try:
        t = time.time()
        r = b.run(guarded("x = 10**10**9\nprint('NOPE')\n"), timeout=2)
        took = time.time() - t
        assert "PROBE-START" in r.stdout, r
        assert "NOPE" not in r.stdout
        assert r.status == "timeout" and r.exit_code == 124, r
        assert took < 10, took
    finally:
        b.close()
    assert_healthy()


def test_r14_deep_recursion_is_a_clean_recursion_error():
    with Sandbox(tier="heavy", memory_mb=256, pids=32, timeout=20, disk_mb=16) as b:
        r = b.run(guarded("def f(n):\n    return f(n + 1)\nf(0)\n"), timeout=10)
        assert "PROBE-START" in r.stdout, r
        assert r.status == "error" and r.exit_code == 1, r
        assert r.error is not None and r.error.name == "RecursionError", r
        r = b.run(guarded("x = []\nfor _ in range(10**6):\n    x = [x]\nrepr(x)\n"), timeout=10)
        assert "PROBE-START" in r.stdout, r
        assert r.status == "error" and r.error.name == "RecursionError", r
        assert b.run("print(6)", timeout=5).stdout == "6\n"
    assert_healthy()


def test_r14_catastrophic_regex_is_killed_at_the_time_limit():
    with Sandbox(tier="heavy", memory_mb=128, pids=32, timeout=20, disk_mb=16) as b:
        t = time.time()
        r = b.run(guarded("import re\nre.match(r'(a+)+$', 'a' * 64 + 'b')\nprint('NOPE')\n"),
                  timeout=2)
        took = time.time() - t
        assert "PROBE-START" in r.stdout, r
        assert "NOPE" not in r.stdout
        assert r.status == "timeout" and r.exit_code == 124, r
        assert took < 10, took
    assert_healthy()


# ------------------------------------------------------------ host file table

# docs/limits.md: the descriptors of all of a sandbox's processes together.
SANDBOX_FILES_MAX = 131072


def sandbox_cgroup_procs(sandbox_id):
    """Host pids in the sandbox's cgroup (its pids hierarchy on v1, the
    unified one on v2), found by the group's name, which is the sandbox id."""
    roots = [r for r in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup") if os.path.isdir(r)]
    for root in roots:
        for d, subdirs, files in os.walk(root):
            if os.path.basename(d) == sandbox_id and "cgroup.procs" in files:
                pids = set()
                for sub, _, _ in os.walk(d):
                    try:
                        with open(os.path.join(sub, "cgroup.procs")) as f:
                            pids.update(int(p) for p in f.read().split())
                    except OSError:
                        pass
                return sorted(pids)
    return []


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


# Fork up to the pids limit; every child raises its descriptor limit as far
# as it may and duplicates a descriptor until EMFILE (dup is the cheapest way
# to hold one), then becomes a sleeper holding them all.
FILL_FDS = """
import os, fcntl, resource, sys
marker = sys.argv_marker
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
rd, wr = os.pipe()
kids = 0
for i in range(5000):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            base = os.open('/dev/null', os.O_RDONLY)
            held = []
            while True:
                try:
                    held.append(fcntl.fcntl(base, fcntl.F_DUPFD, 0))
                except OSError:
                    break
            os.close(held.pop())   # room for the dynamic loader of sleep
            os.write(wr, b'%d\\n' % len(held))
            os.execv('/bin/sleep', [marker, '600'])
        finally:
            os._exit(0)
    kids += 1
os.close(wr)
got = b''
while got.count(b'\\n') < kids:
    chunk = os.read(rd, 65536)
    if not chunk:
        break
    got += chunk
print('LIMIT', soft, hard, 'KIDS', kids, 'HELD', sum(int(x) for x in got.split()))
"""


def test_r15_descriptors_of_a_sandbox_stay_within_the_file_budget():
    """R15: one sandbox with the default limits held a million descriptors
    (pids x a raisable RLIMIT_NOFILE). Now the per-process limit is the
    budget divided by the pids limit and cannot be raised, so all of its
    processes together stay within SANDBOX_FILES_MAX, counted on the host."""
    marker = "agentbox-r15-" + uuid.uuid4().hex
    b = Sandbox(tier="heavy", timeout=120)
    try:
        r = run_probe(b, FILL_FDS.replace("sys.argv_marker", repr(marker)), timeout=120)
        kids = int(r.stdout.split("KIDS")[1].split()[0])
        held = int(r.stdout.split("HELD")[1].split()[0])
        assert kids > 8 and held > kids * 32, r.stdout   # the attack really ran
        deadline = time.time() + 10
        while len(host_pids_with(marker)) < kids and time.time() < deadline:
            time.sleep(0.1)
        sleepers = host_pids_with(marker)
        procs = sandbox_cgroup_procs(b.id)
        assert procs, f"no cgroup named {b.id} on this host"
        assert set(sleepers) <= set(procs), "the sleepers are not in the sandbox's cgroup"
        total = sum(open_fds(p) for p in procs)
        assert total >= held, (total, held)
        assert total <= SANDBOX_FILES_MAX, \
            f"{len(procs)} processes of one sandbox hold {total} descriptors"
    finally:
        b.close()
    assert wait_gone(marker) == []
    assert_healthy()


def test_r15_descriptor_limit_follows_the_pids_limit_from_the_pool_too():
    """Pooled sandboxes are built before their pids limit is known: one is
    handed out only if its descriptor limit fits the requested pids."""
    probe = "import resource\nprint('NOFILE', *resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    for pids, want in ((32, 1024), (128, 1024), (512, 256), (2048, 64)):
        for _ in range(2):      # the second may come from a refilled pool
            with Sandbox(tier="heavy", pids=pids, memory_mb=256, timeout=20) as b:
                r = run_probe(b, probe)
                assert f"NOFILE {want} {want}" in r.stdout, (pids, r.stdout)
                assert pids * want <= SANDBOX_FILES_MAX

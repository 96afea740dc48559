"""Adversarial tests, heavy tier: the files API cannot reach outside the workspace,
even against a sandbox that races it.

A process left running inside the sandbox keeps exchanging a workspace
directory with a symlink to a host directory (renameat2 RENAME_EXCHANGE)
while the host writes, reads and lists files below that directory. The
daemon must never create, read or list anything outside the workspace,
whichever of the two names is the directory at any instant."""
import os
import subprocess
import sys
import tempfile

from agentbox import PathError, Sandbox
from conftest import run_probe

ROOMY = dict(memory_mb=256, pids=32, timeout=60, disk_mb=128)

# Started by one run and left running after it: it detaches from the run's
# output and exchanges 'd' (a directory) with 'swap' (a symlink to the host
# directory) for as long as the sandbox lives.
SWAPPER = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
os.makedirs('d', exist_ok=True)
os.symlink(%(target)r, 'swap')
if os.fork() == 0:
    os.setsid()
    null = os.open('/dev/null', os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    while True:
        libc.renameat2(-100, b'd', -100, b'swap', 2)   # AT_FDCWD, RENAME_EXCHANGE
"""

# Proves the race is on: 'd' is seen both as a directory and as a symlink.
SWAPPING = """
import os
kinds = set()
for _ in range(200000):
    kinds.add(os.path.islink('d'))
    if len(kinds) == 2:
        break
print('KINDS', sorted(kinds))
"""


def host_target():
    """A host directory the sandbox's symlink points to. It is world-writable
    so that only the daemon's path walk, not file permissions, stands
    between a raced write and the host."""
    target = tempfile.mkdtemp(prefix="agentbox-race-")
    os.chmod(target, 0o777)
    return target


def test_raced_symlink_swap_creates_nothing_outside_the_workspace():
    target = host_target()
    try:
        with Sandbox(tier="heavy", **ROOMY) as b:
            run_probe(b, SWAPPER % {"target": target})
            r = run_probe(b, SWAPPING)
            assert "KINDS [False, True]" in r.stdout, r.stdout
            # At least 2,000 writes, and on until both outcomes were seen
            # (writes that landed, writes refused for meeting the symlink),
            # so that the race surely ran against the daemon.
            written = refused = i = 0
            while i < 2000 or (not (written and refused) and i < 20000):
                try:
                    b.files.write(f"d/x{i}/y/f", b"z")
                    written += 1
                except PathError:
                    refused += 1
                i += 1
            print(f"{i} writes: {written} written, {refused} refused")
            for i in range(0, 2000, 10):
                for op in (lambda: b.files.read(f"d/x{i}/y/f"),
                           lambda: b.files.list(f"d/x{i}")):
                    try:
                        op()
                    except PathError:
                        pass
            assert written > 0 and refused > 0, (written, refused)
            escaped = sorted(os.listdir(target))
            assert escaped == [], (f"{len(escaped)} entries created outside the workspace "
                                   f"in {written + refused} writes: {escaped[:10]}")
            assert b.run("print(1)", timeout=10).stdout == "1\n"
    finally:
        for root, dirs, files in os.walk(target, topdown=False):
            for n in files:
                os.unlink(os.path.join(root, n))
            for n in dirs:
                os.rmdir(os.path.join(root, n))
        os.rmdir(target)



def test_directories_made_by_files_write_belong_to_the_sandbox():
    """The daemon makes files and directories with the sandbox's own host
    uid (root inside), not as host root: the sandbox can use them, and a
    mistake in the walk could not make root-owned entries on the host."""
    with Sandbox(tier="heavy", memory_mb=128, pids=32, timeout=30, disk_mb=32) as b:
        b.files.write("made/by/host.txt", "x")
        r = run_probe(b, """
import os
print('UIDS', os.stat('made').st_uid, os.stat('made/by').st_uid,
      os.stat('made/by/host.txt').st_uid)
open('made/by/mine.txt', 'w').write('ok')
print('WROTE')
""")
        assert "UIDS 0 0 0" in r.stdout and "WROTE" in r.stdout, r.stdout
        assert b.files.read("made/by/mine.txt") == b"ok"


def test_the_daemon_keeps_no_supplementary_groups():
    """File-system credentials replace the uid and gid but not the
    supplementary groups: a root daemon started with group root (sudo does
    that) would keep write access to host directories writable by that
    group. The daemon drops them."""
    code = """
import os, sys
os.setgroups([0, 4])
import agentbox
pid = agentbox.daemon_info()["pid"]
print([l for l in open('/proc/%d/status' % pid) if l.startswith('Groups:')][0].split()[1:])
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout

"""Escape attempts E1-E23 of ADVERSARIAL.md (and S5, terminal injection):
one catalogue, run against every backend profile (tests/conftest.py
BACKEND_PROFILES: heavy and nano today).

Every attack runs inside a sandbox through run_probe (PROBE_GUARD first, the
PROBE-RAN marker last). Probes use ctypes for raw system calls, print one or
more `RESULT {json}` lines, and the tests assert the exact outcome, which for
each profile is in expected.CATALOGUE. A probe is written once; it may read
the facts of its profile (FORK, PROC, SCRATCH, PROFILE), e.g. to aim a mount
at a directory the tier has. Calls that are expected to kill the caller
(other ABIs, seccomp strict mode) run in a forked child inside the sandbox
where the tier can fork, so that the probe survives to report, and in a
sandbox of their own where it cannot. A new backend profile runs every
attack here once it has its column in expected.CATALOGUE.

Syscall numbers are those of x86_64; on another architecture the module is
skipped (the numbers, x32 and int 0x80 are x86_64 facts)."""
import hashlib
import json
import os
import pathlib
import platform

import pytest

import agentbox
from expected import CATALOGUE, INET_AND_UNIX_SOCKETS, RARE_SOCKETS
import probes
from probes import catalogue_prelude, expect
from probes import (
    CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
    CLONE_NEWNET, CLONE_NEWTIME)
from conftest import BUILD, REPO

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64",
                                reason="probes use x86_64 system call numbers")

SIGSYS = 31
SIGKILL = 9
SIGCHLD = 17


def probe(profile, box, code, timeout=30):
    """Runs a catalogue probe (probes.catalogue_prelude first) in box."""
    return probes.probe(box, code, prelude=catalogue_prelude(profile), timeout=timeout)


# ------------------------------------------------------------------ E1


def test_e1_new_namespaces_refused(profile, pbox):
    res = probe(profile, pbox, f'''
flags = {{"user": {CLONE_NEWUSER}, "ns": {CLONE_NEWNS}, "user|ns": {CLONE_NEWUSER | CLONE_NEWNS},
         "pid": {CLONE_NEWPID}, "net": {CLONE_NEWNET}, "ipc": {CLONE_NEWIPC},
         "uts": {CLONE_NEWUTS}, "cgroup": {CLONE_NEWCGROUP}, "time": {CLONE_NEWTIME}}}
for name, f in flags.items():
    R["unshare " + name] = err(272, f)
# clone(2) with namespace flags (a process): a child that somehow appears
# leaves at once.
for name in ("user", "user|ns", "pid", "net"):
    r, e = sc(56, flags[name] | {SIGCHLD}, 0, 0, 0, 0)
    if r == 0:
        os._exit(0)
    if r > 0:
        os.waitpid(r, 0)
    R["clone " + name] = e
# thread flags (CLONE_VM|CLONE_SIGHAND|CLONE_THREAD) plus a namespace flag
r, e = sc(56, 0x00000100 | 0x00000800 | 0x00010000 | {CLONE_NEWUSER}, 0, 0, 0, 0)
R["clone thread|user"] = e
# clone3 with CLONE_NEWUSER|CLONE_NEWNS
args = struct.pack("=11Q", {CLONE_NEWUSER | CLONE_NEWNS}, 0, 0, 0, {SIGCHLD}, 0, 0, 0, 0, 0, 0)
buf = ctypes.create_string_buffer(args, len(args))
r, e = sc(435, ctypes.addressof(buf), len(args))
if r == 0:
    os._exit(0)
if r > 0:
    os.waitpid(r, 0)
R["clone3"] = e
report()
''')
    expect(profile, "e1", res)


# ------------------------------------------------------------------ E2


def test_e2_mount_remount_umount_refused(profile, pbox):
    res = probe(profile, pbox, r'''
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MNT_DETACH = 1, 32, 4096, 16384, 2
T = SCRATCH + "/e2" if SCRATCH == "/tmp" else SCRATCH
os.makedirs(T, exist_ok=True)
T = T.encode()
R["mount tmpfs"] = err(165, b"tmpfs", T, b"tmpfs", 0, 0)
R["remount / rw"] = err(165, 0, b"/", 0, MS_REMOUNT | MS_BIND, 0)
R["remount /usr rw"] = err(165, 0, b"/usr", 0, MS_REMOUNT | MS_BIND, 0)
R["remount /workspace rw"] = err(165, 0, b"/workspace", 0, MS_REMOUNT | MS_BIND, 0)
R["bind /proc"] = err(165, b"/proc", T, 0, MS_BIND | MS_REC, 0)
R["bind /usr"] = err(165, b"/usr", T, 0, MS_BIND | MS_REC, 0)
R["umount2 kallsyms"] = err(166, b"/proc/kallsyms", MNT_DETACH)
R["umount2 /proc/sys"] = err(166, b"/proc/sys", MNT_DETACH)
R["umount2 /workspace"] = err(166, b"/workspace", MNT_DETACH)
R["umount2 /"] = err(166, b"/", MNT_DETACH)
R["pivot_root"] = err(155, b"/tmp", T)
R["pivot_root /usr"] = err(155, b"/usr", T)
R["chroot /tmp"] = err(161, b"/tmp")
R["chroot /usr"] = err(161, b"/usr")
# nothing changed: / still read-only, kallsyms still masked
R["statfs"] = oserr(lambda: os.statvfs("/"))
if R["statfs"] == "OK":
    R["root_ro"] = bool(os.statvfs("/").f_flag & os.ST_RDONLY)
if PROC:
    R["kallsyms_len"] = len(open("/proc/kallsyms", "rb").read())
R["create_in_root"] = oserr(lambda: open("/e2-file", "w"))
R["mkdir_in_root"] = oserr(lambda: os.mkdir("/e2-dir"))
report()
''')
    expect(profile, "e2", res)


# ------------------------------------------------------------------ E3


def test_e3_new_mount_api_refused(profile, pbox):
    res = probe(profile, pbox, r'''
AT_FDCWD = -100
OPEN_TREE_CLONE, AT_RECURSIVE = 1, 0x8000
R["fsopen"] = err(430, b"tmpfs", 0)
R["fsconfig"] = err(431, 3, 6, 0, 0, 0)           # FSCONFIG_CMD_CREATE
R["fsmount"] = err(432, 3, 0, 0)
R["open_tree"] = err(428, AT_FDCWD, b"/", OPEN_TREE_CLONE | AT_RECURSIVE)
R["move_mount"] = err(429, AT_FDCWD, SCRATCH.encode(), AT_FDCWD, b"/workspace", 0)
R["fspick"] = err(433, AT_FDCWD, b"/", 0)
attr = ctypes.create_string_buffer(32)
R["mount_setattr"] = err(442, AT_FDCWD, b"/", 0, ctypes.addressof(attr), 32)
report()
''')
    expect(profile, "e3", res)


# ------------------------------------------------------------------ E4


def test_e4_cgroup_release_agent_unreachable(profile, pbox):
    res = probe(profile, pbox, r'''
T = SCRATCH + "/cg" if SCRATCH == "/tmp" else SCRATCH
os.makedirs(T, exist_ok=True)
R["mount cgroup v1"] = err(165, b"cgroup", T.encode(), b"cgroup", 0, b"memory")
R["mount cgroup v1 none"] = err(165, b"cgroup", T.encode(), b"cgroup", 0, b"none,name=x")
R["mount cgroup2"] = err(165, b"cgroup2", T.encode(), b"cgroup2", 0, 0)
R["sys_exists"] = os.path.exists("/sys")
R["sys_fs_cgroup_exists"] = os.path.exists("/sys/fs/cgroup")
if R["sys_exists"]:
    R["sys_ro"] = bool(os.statvfs("/sys").f_flag & os.ST_RDONLY)
R["mkdir /sys"] = oserr(lambda: os.mkdir("/sys"))
found = []
for root in ("/sys/fs/cgroup", T):
    for dp, dn, fn in os.walk(root):
        if "release_agent" in fn:
            found.append(os.path.join(dp, "release_agent"))
R["release_agents"] = found
writes = {}
for p in found + ["/sys/fs/cgroup/memory/release_agent", "/sys/fs/cgroup/release_agent"]:
    writes[p] = oserr(lambda: open(p, "w").write("/tmp/x"))
R["release_agent_writes"] = writes
report()
''')
    expect(profile, "e4", res)
    assert res["release_agents"] == [], res
    assert all(v != "OK" for v in res["release_agent_writes"].values()), res
    if res["sys_exists"]:
        assert res["sys_ro"] is True, res


# ------------------------------------------------------------------ E5


def _sha(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def test_e5_exe_of_self_and_parent_not_writable(profile, pbox):
    host_bins = [BUILD / "agentbox-executor", pathlib.Path(os.path.realpath("/usr/bin/python3"))]
    before = {str(p): _sha(p) for p in host_bins}
    res = probe(profile, pbox, r'''
import sysconfig
W = {}
exe = os.path.realpath(sys.executable) if sys.executable else "/usr/bin/python3"
# the executable of the sandbox and of its parent, by every name the sandbox
# has for them, and the standard library it runs
for p in ("/proc/self/exe", "/proc/1/exe", "/proc/%d/exe" % os.getppid(), "/usr/bin/python3",
          exe, sysconfig.get_paths()["stdlib"] + "/os.py"):
    for mode in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC):
        def f(p=p, mode=mode):
            os.close(os.open(p, mode))
        W["%s %d" % (p, mode)] = oserr(f)
R["writes"] = W
# read-only with O_APPEND: nano's allowlist refuses any write-ish flag
A = {}
for p in ("/usr/bin/python3", exe, sysconfig.get_paths()["stdlib"] + "/os.py"):
    def f(p=p):
        fd = os.open(p, os.O_RDONLY | os.O_APPEND)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
    A[p] = oserr(f)
R["append"] = A
R["proc"] = os.path.exists("/proc/self/exe")
R["ppid"] = os.getppid()
R["exe_is_parents"] = (open("/proc/self/comm").read() == open("/proc/%d/comm" % os.getppid()).read()) if R["proc"] else None
R["python_write"] = oserr(lambda: open("/usr/bin/python3", "r+b"))
R["lib_write"] = oserr(lambda: open(os.path.realpath("/usr/bin/python3"), "ab"))
report()
''')
    expect(profile, "e5", res)
    # the parent is init, or (heavy, time travel) the parked copy of the
    # executor it was forked from: the same program, written to by nobody
    assert res["ppid"] == 1 or res["exe_is_parents"], res
    after = {str(p): _sha(p) for p in host_bins}
    assert before == after


# ------------------------------------------------------------------ E6


def test_e6_fd_walk_and_dotdot_climb_stay_inside(profile, pbox):
    host_paths = sorted({"/work", "/root", str(REPO), os.environ["AGENTBOX_HOME"]})
    res = probe(profile, pbox, f'''
HOST = {json.dumps(host_paths)}
import stat
# every descriptor number up to the limit, and (where there is a /proc) every
# one /proc/self/fd lists
fds = set(range(1024))
if PROC:
    fds |= {{int(x) for x in os.listdir("/proc/self/fd")}}
info, dirfds = {{}}, []
for fd in sorted(fds):
    try:
        st = os.fstat(fd)
    except OSError:
        continue      # not open (or the listing's own fd, closed by now)
    kind = ("dir" if stat.S_ISDIR(st.st_mode) else "reg" if stat.S_ISREG(st.st_mode)
            else "fifo" if stat.S_ISFIFO(st.st_mode) else "sock" if stat.S_ISSOCK(st.st_mode)
            else "chr" if stat.S_ISCHR(st.st_mode) else "other")
    info[fd] = kind
    if kind == "dir":
        dirfds.append(fd)
R["fds"] = info
# fds of our own that point at directories, including through /proc: O_PATH
# (fchdir works on it, and it needs no read right), else a plain open
own = {{}}
for p in ("/", "/workspace", "/tmp", "/usr", "/etc", "/proc/self/cwd", "/proc/self/root",
          "/proc/1/cwd", "/proc/1/root", "/proc/self/fd"):
    for flags in (os.O_PATH | os.O_DIRECTORY, os.O_RDONLY | os.O_DIRECTORY):
        try:
            dirfds.append(os.open(p, flags))
            own[p] = "OK"
            break
        except OSError as e:
            own[p] = errno.errorcode.get(e.errno, str(e.errno))
R["opened"] = own
climbs = {{}}
for fd in dirfds:
    try:
        os.fchdir(fd)
    except OSError as e:
        climbs[fd] = "fchdir " + errno.errorcode.get(e.errno, "?")
        continue
    for _ in range(50):
        os.chdir("..")
    # (listing "/" is itself refused by the jail's Landlock rules, so the
    # probe looks for names relative to where the climb ended)
    here, root = os.stat("."), os.stat("/")
    climbs[fd] = [os.path.realpath("."), os.getcwd(),
                  (here.st_dev, here.st_ino) == (root.st_dev, root.st_ino),
                  {{n: os.path.exists(n) for n in ["workspace", "usr"] + [h.lstrip("/") for h in HOST]}}]
R["climbs"] = climbs
os.chdir("/")
R["exists"] = {{p: os.path.exists(p) for p in ["/workspace", "/usr"] + HOST}}
os.chdir("/workspace")
report()
''')
    # only the executor's own fds: /dev/null, the output pipes, the control socket
    assert set(res["fds"]) <= {"0", "1", "2", "3"}, res["fds"]
    assert "dir" not in res["fds"].values(), res["fds"]
    expect(profile, "e6", res)
    assert res["climbs"], res
    for fd, c in res["climbs"].items():
        assert isinstance(c, list), (fd, c)
        real, cwd, same_as_root, seen = c
        assert real == "/" and cwd == "/" and same_as_root, (fd, c)
        assert seen["workspace"] and seen["usr"], (fd, c)
        for h in host_paths:
            assert seen[h.lstrip("/")] is False, (fd, h, c)
    assert res["exists"]["/workspace"] and res["exists"]["/usr"]
    for p in host_paths:
        assert res["exists"][p] is False, (p, res["exists"])


# ------------------------------------------------------------------ E7


def test_e7_file_handles_refused(profile, pbox):
    res = probe(profile, pbox, r'''
AT_FDCWD = -100
h = ctypes.create_string_buffer(8 + 128)
struct.pack_into("=Ii", h, 0, 128, 0)
mnt = ctypes.c_int(0)
R["name_to_handle_at"] = err(303, AT_FDCWD, b"/workspace", ctypes.addressof(h),
                             ctypes.addressof(mnt), 0)
R["name_to_handle_at /usr"] = err(303, AT_FDCWD, b"/usr/bin/python3", ctypes.addressof(h),
                                  ctypes.addressof(mnt), 0)
# a forged ext4 handle for inode 2 (the root of the host file system)
forged = ctypes.create_string_buffer(8 + 8)
struct.pack_into("=IiII", forged, 0, 8, 1, 2, 0)
fd = os.open("/workspace", os.O_RDONLY | os.O_DIRECTORY)
R["open_by_handle_at"] = err(304, fd, ctypes.addressof(forged), os.O_RDONLY)
os.close(fd)
report()
''')
    expect(profile, "e7", res)


# ------------------------------------------------------------------ E8


def test_e8_setns_refused(profile, pbox):
    res = probe(profile, pbox, r'''
S = {}
# the namespaces of pid 1 and of the probe, where /proc names them
for pid in ("1", "self"):
    for ns in ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup", "time"):
        p = "/proc/%s/ns/%s" % (pid, ns)
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError as e:
            S[p] = "open " + errno.errorcode.get(e.errno, "?")
            continue
        S[p] = err(308, fd, 0)
        os.close(fd)
# setns on any fd at all, with every type
fd = os.open("/workspace", os.O_RDONLY | os.O_DIRECTORY)
for name, t in (("any", 0), ("user", 0x10000000), ("mnt", 0x00020000), ("net", 0x40000000),
                ("pid", 0x20000000)):
    S["dir fd " + name] = err(308, fd, t)
S["fd 3"] = err(308, 3, 0)
os.close(fd)
R["setns"] = S
report()
''')
    want = CATALOGUE["e8"][profile.outcomes]
    for p, v in res["setns"].items():
        if p.startswith("/proc/self"):
            assert v in want["/proc/self"], (p, res)   # heavy: the fd opens; setns is refused
        elif p.startswith("/proc/1"):
            assert v in want["/proc/1"], (p, res)
        else:
            assert v == "EPERM", (p, res)


# ------------------------------------------------------------------ E9


def test_e9_ptrace_process_vm_kcmp_refused(profile, pbox):
    res = probe(profile, pbox, r'''
import time, signal
PTRACE_TRACEME, PTRACE_ATTACH, PTRACE_SEIZE = 0, 16, 0x4206
me = os.getpid()
T = {"1": 1, "ppid": os.getppid(), "self": me, "3": 3}
if FORK:
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    T["sibling"] = pid
buf = ctypes.create_string_buffer(64)
iov = struct.pack("=QQ", ctypes.addressof(buf), 64)
liov = ctypes.create_string_buffer(iov, 16)
riov = ctypes.create_string_buffer(iov, 16)
for name, pid in T.items():
    R["ptrace attach " + name] = err(101, PTRACE_ATTACH, pid, 0, 0)
    R["ptrace seize " + name] = err(101, PTRACE_SEIZE, pid, 0, 0)
    R["process_vm_readv " + name] = err(310, pid, ctypes.addressof(liov), 1,
                                        ctypes.addressof(riov), 1, 0)
    R["process_vm_writev " + name] = err(311, pid, ctypes.addressof(liov), 1,
                                         ctypes.addressof(riov), 1, 0)
    R["kcmp " + name] = err(312, me, pid, 0, 0, 0)          # KCMP_FILE
# PTRACE_TRACEME makes the parent a tracer: in a child where there is fork
if FORK:
    R["ptrace traceme"] = json.loads(
        in_child(lambda w: {"traceme": err(101, PTRACE_TRACEME, 0, 0, 0)})["data"])["traceme"]
else:
    R["ptrace traceme"] = err(101, PTRACE_TRACEME, 0, 0, 0)
r, e = sc(434, 1, 0)
if r >= 0:
    os.close(r)
R["pidfd_open 1"] = e
pfd = os.pidfd_open(T["sibling"]) if FORK else 0
R["pidfd_getfd"] = err(438, pfd, 0, 0)
if FORK:
    os.close(pfd)
for name in ("sibling", "1"):
    if name in T:
        R["mem write " + name] = oserr(lambda: open("/proc/%d/mem" % T[name], "r+b"))
if FORK:
    os.kill(T["sibling"], signal.SIGKILL)
    os.waitpid(T["sibling"], 0)
report()
''')
    expect(profile, "e9", res)


# ------------------------------------------------------------------ E10-E13


def test_e10_io_uring_refused(profile, pbox):
    res = probe(profile, pbox, r'''
params = ctypes.create_string_buffer(120)
R["io_uring_setup"] = err(425, 8, ctypes.addressof(params))
R["io_uring_enter"] = err(426, 0, 1, 0, 0, 0, 0)
R["io_uring_register"] = err(427, 0, 0, 0, 0)
report()
''')
    expect(profile, "e10", res)
    assert set(res) == set(CATALOGUE["e10"][profile.outcomes]), res


def test_e11_bpf_perf_userfaultfd_refused(profile, pbox):
    res = probe(profile, pbox, r'''
# BPF_PROG_LOAD of a socket filter "r0 = 0; exit"
insns = struct.pack("=BBhi", 0xb7, 0, 0, 0) + struct.pack("=BBhi", 0x95, 0, 0, 0)
ib = ctypes.create_string_buffer(insns, len(insns))
lic = ctypes.create_string_buffer(b"GPL")
attr = ctypes.create_string_buffer(128)
struct.pack_into("=IIQQ", attr, 0, 1, 2, ctypes.addressof(ib), ctypes.addressof(lic))
R["bpf PROG_LOAD"] = err(321, 5, ctypes.addressof(attr), 128)
mattr = ctypes.create_string_buffer(128)
struct.pack_into("=IIII", mattr, 0, 2, 4, 4, 1)          # BPF_MAP_TYPE_ARRAY
R["bpf MAP_CREATE"] = err(321, 0, ctypes.addressof(mattr), 128)
pattr = ctypes.create_string_buffer(128)
struct.pack_into("=IIQ", pattr, 0, 1, 128, 0)            # PERF_TYPE_SOFTWARE, cpu clock
R["perf_event_open"] = err(298, ctypes.addressof(pattr), 0, -1, -1, 0)
R["userfaultfd"] = err(323, 0)
R["userfaultfd user"] = err(323, 1)                      # UFFD_USER_MODE_ONLY
report()
''')
    expect(profile, "e11", res)
    assert set(res) == set(CATALOGUE["e11"][profile.outcomes]), res


def test_e12_keyrings_refused(profile, pbox):
    res = probe(profile, pbox, r'''
KEY_SPEC_PROCESS_KEYRING = -2
R["add_key"] = err(248, b"user", b"k", b"v", 1, KEY_SPEC_PROCESS_KEYRING)
R["request_key"] = err(249, b"user", b"k", 0, KEY_SPEC_PROCESS_KEYRING)
R["keyctl get_keyring_id"] = err(250, 0, -4, 0)           # KEYCTL_GET_KEYRING_ID, user keyring
R["keyctl get session"] = err(250, 0, -3, 0, 0, 0)        # ... session keyring
R["keyctl join"] = err(250, 1, b"x")                      # KEYCTL_JOIN_SESSION_KEYRING
report()
''')
    expect(profile, "e12", res)
    assert set(res) == set(CATALOGUE["e12"][profile.outcomes]), res


def test_e13_host_administration_refused(profile, pbox):
    res = probe(profile, pbox, r'''
img = ctypes.create_string_buffer(64)
R["init_module"] = err(175, ctypes.addressof(img), 64, b"")
fd = 0                       # /dev/null (or the tier's stdin), read-only
R["finit_module"] = err(313, fd, b"", 0)
R["delete_module"] = err(176, b"ext4", 0)
R["kexec_load"] = err(246, 0, 0, 0, 0)
R["kexec_file_load"] = err(320, fd, fd, 0, b"", 0)
# LINUX_REBOOT_CMD_CAD_OFF: harmless even if it got through
R["reboot"] = err(169, 0xfee1dead, 672274793, 0, 0)
R["swapon"] = err(167, b"/dev/null", 0)
R["swapoff"] = err(168, b"/dev/null")
R["acct"] = err(163, 0)
R["acct file"] = err(163, (SCRATCH + "/acct").encode())
R["settimeofday"] = err(164, 0, 0)
R["sethostname"] = err(170, b"evil", 4)
report()
''')
    expect(profile, "e13", res)


# ------------------------------------------------------------------ E14

INT80 = r'''
import mmap
X32 = 0x40000000
def int80(nr, arg):
    """mov eax, nr; mov ebx, arg; int 0x80; ret"""
    code = b"\xb8" + struct.pack("<I", nr) + b"\xbb" + struct.pack("<I", arg) + b"\xcd\x80\xc3"
    m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    m.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    return ctypes.CFUNCTYPE(ctypes.c_int)(addr)()
'''

# x32 numbers are the 64-bit numbers with the x32 bit set; int 0x80 takes
# i386 numbers. getpid is harmless and still must kill: the whole ABI is
# refused.
E14_CALLS = {
    "x32-unshare": "sc(272 | X32, 0x10000000, 0, 0, 0, 0)",
    "x32-mount": "sc(165 | X32, 0, 0, 0, 0, 0)",
    "x32-keyctl": "sc(250 | X32, 0, 0, 0, 0, 0)",
    "x32-bpf": "sc(321 | X32, 0, 0, 0, 0, 0)",
    "x32-ptrace": "sc(101 | X32, 16, 0, 0, 0, 0)",
    "x32-getpid": "sc(39 | X32, 0, 0, 0, 0, 0)",
    "int80-unshare": "int80(310, 0x10000000)",
    "int80-keyctl": "int80(288, 0)",
    "int80-getpid": "int80(20, 0)",
    "int80-ptrace": "int80(26, 16)",
}


@pytest.mark.parametrize("call", list(E14_CALLS))
def test_e14_other_abis_kill_the_caller(profile, pbox, call):
    """The call never returns: the caller dies of SIGSYS. Where the tier can
    fork, the call runs in a forked child and the probe reports how it died;
    where it cannot (nano), it runs in a sandbox of its own, whose run must
    end killed, that sandbox dead, and a new sandbox of the profile must
    still work."""
    want = CATALOGUE["e14"][profile.outcomes]
    if profile.fork:
        res = probe(profile, pbox, INT80 + f'''
R["child"] = in_child(lambda w: {{"ret": {E14_CALLS[call]}}})
report()
''')
        assert res["child"]["signal"] == want["signal"], res
        assert res["child"]["data"] == "", res        # the call never returned to the child
        return
    b = agentbox.Sandbox(**profile.sandbox)
    try:
        code = f"res = {E14_CALLS[call]}\nprint('SURVIVED', res, flush=True)\n"
        r = b.run(probes.guarded(catalogue_prelude(profile) + INT80 + code), timeout=10)
        assert "PROBE-START" in r.stdout, r
        assert "SURVIVED" not in r.stdout, r
        assert r.status == want["status"], r
        with pytest.raises(agentbox.SandboxDeadError):
            b.run("1", timeout=5)
    finally:
        b.close()
    assert agentbox.daemon_info()["pid"] > 0
    with agentbox.Sandbox(**profile.sandbox) as other:
        r = other.run("print(1)", timeout=10)
        assert r.status == "ok" and r.stdout == "1\n", r


# ------------------------------------------------------------------ E15


def test_e15_junk_in_upper_32_bits_still_denied(profile, pbox):
    res = probe(profile, pbox, r'''
import fcntl, termios
J = 0xdeadbeef00000000
c = ctypes.c_char(b"x")
me = os.getpid()
# fd 0 is /dev/null: without the filter the kernel would say ENOTTY
R["ioctl TIOCSTI junk"] = err(16, 0, J | termios.TIOCSTI, ctypes.addressof(c))
R["ioctl TIOCSTI"] = err(16, 0, termios.TIOCSTI, ctypes.addressof(c))
R["ioctl TIOCLINUX junk"] = err(16, 0, J | 0x541C, ctypes.addressof(c))
R["ioctl TIOCSTI on fd 3"] = err(16, 3, J | termios.TIOCSTI, ctypes.addressof(c))
R["ioctl FIONREAD junk (control)"] = err(16, 0, J | termios.FIONREAD, ctypes.addressof(c))
# clone with namespace flags and junk above bit 32 (and junk alone: the
# kernel reads clone's flags as 32 bits, so that is a plain fork)
def clone_junk(flags):
    r, e = sc(56, flags, 0, 0, 0, 0)
    if r == 0:
        os._exit(0)
    if r > 0:
        os.waitpid(r, 0)
    return e
R["clone NEWUSER junk"] = clone_junk(J | 0x10000000 | 17)
R["clone NEWNS junk"] = clone_junk(J | 0x00020000 | 17)
R["clone fork junk"] = clone_junk(J | 17)
R["unshare NEWUSER junk"] = err(272, J | 0x10000000)
R["personality junk"] = err(135, J | 0x0040000)
R["personality junk READ_IMPLIES_EXEC"] = err(135, J | 0x0400000)
R["socket NETLINK junk"] = fd_err(41, J | 16, 3, 0)
R["socket UNIX junk"] = fd_err(41, J | 1, 1, 0)
R["socket INET junk"] = fd_err(41, 2, J | 2, 0)
R["socket INET SCTP junk"] = fd_err(41, 2, 1, J | 132)
R["socket INET DCCP junk"] = fd_err(41, 2, J | 6, 33)
# the pid argument of kill/tgkill is compared on 64 bits: junk fails closed
R["kill self junk"] = err(62, J | me, 0)
R["kill 1 junk"] = err(62, J | 1, 0)
R["tgkill junk"] = err(234, J | 1, 1, 0)
# openat: write flags with junk above them
R["openat wronly junk"] = fd_err(257, -100, (SCRATCH + "/e15").encode(),
                              J | os.O_WRONLY | os.O_CREAT, 0o600)
if R["openat wronly junk"] == "OK":
    os.unlink(SCRATCH + "/e15")
R["prlimit64 junk pid"] = err(302, J, 7, 0, ctypes.addressof(ctypes.create_string_buffer(16)))
# RLIMIT_AS to unlimited: a raise where there is a limit (nano), else a no-op
new = ctypes.create_string_buffer(struct.pack("=QQ", (1 << 64) - 1, (1 << 64) - 1), 16)
R["prlimit64 raise"] = err(302, 0, 9, ctypes.addressof(new), 0)
R["fcntl F_SETLK junk"] = err(72, 1, J | 6, 0)
report()
''')
    expect(profile, "e15", res)
    assert set(res) == set(CATALOGUE["e15"][profile.outcomes]), res


# ------------------------------------------------------------------ E16


def test_e16_no_privileges_and_setuid_is_inert(profile, pbox):
    res = probe(profile, pbox, r'''
import shutil, subprocess
R["uid"] = [os.getuid(), os.geteuid(), os.getgid(), os.getegid()]
R["proc status"] = os.path.exists("/proc/self/status")
if PROC:
    st = status()
    R["CapEff"] = st["CapEff"]; R["CapPrm"] = st["CapPrm"]; R["CapBnd"] = st["CapBnd"]
    R["CapAmb"] = st["CapAmb"]; R["NoNewPrivs"] = st["NoNewPrivs"]
hdr = ctypes.create_string_buffer(struct.pack("=Ii", 0x20080522, 0), 8)
data = ctypes.create_string_buffer(24)
r, e = sc(125, ctypes.addressof(hdr), ctypes.addressof(data))
R["capget"] = [e, list(struct.unpack("=6I", data.raw))]
full = ctypes.create_string_buffer(struct.pack("=6I", *([0xffffffff] * 6)), 24)
R["capset"] = err(126, ctypes.addressof(hdr), ctypes.addressof(full))
R["prctl GET_NO_NEW_PRIVS"] = sc(157, 39, 0, 0, 0, 0)
R["prctl SET_NO_NEW_PRIVS 0"] = err(157, 38, 0, 0, 0, 0)
R["prctl CAPBSET_READ"] = sc(157, 23, 21, 0, 0, 0)
R["setuid 1000"] = oserr(lambda: os.setuid(1000))
R["prctl SET_DUMPABLE"] = err(157, 4, 1, 0, 0, 0)
R["setresuid 1000"] = err(117, 1000, 1000, 1000)
R["setresuid 0"] = err(117, 0, 0, 0)
R["setgroups"] = err(116, 0, 0)
R["chmod python3"] = oserr(lambda: os.chmod("/usr/bin/python3", 0o4755))
R["setxattr python3"] = oserr(lambda: os.setxattr("/usr/bin/python3", "security.capability",
                                                   b"x" * 20))
# a setuid copy of python3 (with file capabilities) wherever the tier lets
# a file be written, run: it gains nothing
CHECK = ("import os;d=dict(l.split(':',1) for l in open('/proc/self/status'));"
         "print(os.getuid(),os.geteuid(),d['CapEff'].strip(),d['CapPrm'].strip(),"
         "d['NoNewPrivs'].strip())")
runs = {}
for d in ("/tmp", "/workspace"):
    p = d + "/suidpy"
    runs[d] = {"copy": oserr(lambda: open(p, "wb").close())}
    if runs[d]["copy"] != "OK":
        continue
    shutil.copy("/usr/bin/python3", p)
    os.chmod(p, 0o4755)
    runs[d]["mode"] = oct(os.stat(p).st_mode & 0o7777)
    cp = subprocess.run([p, "-S", "-c", CHECK], capture_output=True, text=True)
    runs[d]["out"] = cp.stdout.split()
    runs[d]["rc"] = cp.returncode
    # file capabilities (VFS_CAP_REVISION_2, cap_sys_admin permitted+effective)
    cap = struct.pack("<IIIII", 0x02000001, 1 << 21, 0, 0, 0)
    runs[d]["setcap"] = oserr(lambda: os.setxattr(p, "security.capability", cap))
    os.unlink(p)
R["runs"] = runs
# every file system the sandbox can exec from is nosuid
if PROC:
    mi = {}
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        mi[f[4]] = f[5].split(",")
    R["nosuid"] = {m: ("nosuid" in mi[m]) for m in ("/", "/usr", "/tmp", "/workspace", "/dev/shm")}
# where a run cannot fork, exec would replace the probe: it must be refused
if not FORK:
    R["execv"] = oserr(lambda: os.execv("/usr/bin/python3", ["python3", "-c", "1"]))
report()
''')
    # (where capget is allowed, every capability set it reports is empty)
    expect(profile, "e16", res)
    if profile.proc:
        for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
            assert int(res[k], 16) == 0, (k, res)
        assert res["NoNewPrivs"] == "1"
        assert all(res["nosuid"].values()), res["nosuid"]
    for d, r in res["runs"].items():
        if r["copy"] != "OK":
            continue
        assert r["mode"] == "0o4755", (d, r)
        assert r["rc"] == 0, (d, r)
        uid, euid, capeff, capprm, nnp = r["out"]
        assert (uid, euid) == ("0", "0"), (d, r)
        assert int(capeff, 16) == 0 and int(capprm, 16) == 0 and nnp == "1", (d, r)
        assert r["setcap"] in ("EPERM", "EACCES"), (d, r)


# ------------------------------------------------------------------ E17


def test_e17_memfd_and_exec_stay_jailed(profile, pbox):
    res = probe(profile, pbox, r'''
import shutil, subprocess
CHECK = ("import os,socket;d=dict(l.split(':',1) for l in open('/proc/self/status'));"
         "print(d['Seccomp'].strip(),d['CapEff'].strip(),d['NoNewPrivs'].strip(),"
         "socket.gethostname(),os.path.exists('/work'))")
AT_EMPTY_PATH = 0x1000
R["memfd_create cloexec"] = fd_err(319, b"payload", 1)
fd, e = sc(319, b"payload", 0)
R["memfd_create"] = e
if e != "OK":
    # any readable file as the fd to execute (Landlock may hide /usr/bin)
    fd = os.open(os.__file__, os.O_RDONLY)
else:
    with open("/usr/bin/python3", "rb") as f:
        os.write(fd, f.read())
def execveat(w):
    if w is not None:
        os.dup2(w, 1)
    argv = (ctypes.c_char_p * 5)(b"python3", b"-S", b"-c", CHECK.encode(), None)
    envp = (ctypes.c_char_p * 2)(b"PATH=/usr/bin", None)
    r, e = sc(322, fd, b"", ctypes.addressof(argv), ctypes.addressof(envp), AT_EMPTY_PATH)
    return e
def execve(w):
    argv = (ctypes.c_char_p * 3)(b"python3", b"-V", None)
    envp = (ctypes.c_char_p * 1)(None)
    return err(59, b"/usr/bin/python3", ctypes.addressof(argv), ctypes.addressof(envp))
# where the tier can fork, exec runs in a child (an exec that works replaces
# only the child); where it cannot, an exec that worked would replace the
# probe, which then never prints PROBE-RAN
if FORK:
    def child(w):
        e = execveat(w)
        os.write(2, ("execveat failed " + e).encode())
        os._exit(99)
    R["execveat fd"] = in_child(child)
else:
    R["execveat fd"] = execveat(None)
    R["execve"] = execve(None)
os.close(fd)
# a copy of python3 written to /tmp and run
R["write /tmp"] = oserr(lambda: open("/tmp/e17py", "wb").close())
if R["write /tmp"] == "OK":
    shutil.copy("/usr/bin/python3", "/tmp/e17py")
R["tmp exists"] = os.path.exists("/tmp/e17py")
if R["tmp exists"]:
    os.chmod("/tmp/e17py", 0o755)
    cp = subprocess.run(["/tmp/e17py", "-S", "-c", CHECK], capture_output=True, text=True)
    R["tmp exec"] = [cp.returncode, cp.stdout]
    os.unlink("/tmp/e17py")
def subproc():
    subprocess.run(["/usr/bin/true"], check=True)
R["subprocess"] = oserr(subproc)
def spawn():
    os.waitpid(os.posix_spawn("/usr/bin/true", ["true"], {}), 0)
R["posix_spawn"] = oserr(spawn)
if not FORK:
    R["vfork"] = err(58)            # (a vfork that worked would share this memory)
def tmpfile():
    os.close(os.open("/workspace", os.O_TMPFILE | os.O_RDWR, 0o700))
R["O_TMPFILE"] = oserr(tmpfile)
def shm():
    open("/dev/shm/e17", "wb").close()
    os.unlink("/dev/shm/e17")
R["shm_open"] = oserr(shm)
report()
''', )
    expect(profile, "e17", res)
    if profile.fork:
        # heavy allows exec, and what it runs is as jailed as the probe
        m = res["execveat fd"]
        assert m["exit"] == 0, m
        assert m["data"].split() == JAILED, m
        rc, out = res["tmp exec"]
        assert rc == 0 and out.split() == JAILED, res


# what an exec'd python3 reports of itself: seccomp filter mode, no
# capability, no_new_privs, the sandbox's hostname, no host /work
JAILED = ["2", "0000000000000000", "1", "sandbox", "False"]


# ------------------------------------------------------------------ E18


def test_e18_own_seccomp_and_landlock_only_tighten(profile, pbox):
    res = probe(profile, pbox, r'''
PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 22, 38, 39
SECCOMP_MODE_STRICT = 1
# isolated(fn): fn in a forked child where the tier can fork (a filter or
# ruleset it installs then binds only that child), else in the probe itself
# (where installing must be refused). Returns how it ended and fn's result.
def isolated(fn):
    if FORK:
        c = in_child(fn)
        try:
            c["result"] = json.loads(c["data"])
        except ValueError:
            c["result"] = None
        return c
    return {"result": fn(None), "signal": None, "exit": 0, "data": ""}
def bpf_prog(insns):
    raw = b"".join(struct.pack("=HBBI", *i) for i in insns)
    buf = ctypes.create_string_buffer(raw, len(raw))
    prog = ctypes.create_string_buffer(struct.pack("=HxxxxxxQ", len(insns), ctypes.addressof(buf)), 16)
    return prog, buf
ALLOW = 0x7fff0000
def strict(w):
    r, e = sc(157, PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0)
    if w is not None:
        os.write(w, json.dumps({"strict": e}).encode())
    if r == 0:
        sc(272, 0x10000000)        # not allowed in strict mode: SIGKILL
        if w is not None:
            os.write(w, b"SURVIVED")
    return None if w is not None else {"strict": e}
R["strict"] = isolated(strict)
# the same through seccomp(2): SECCOMP_SET_MODE_STRICT
R["seccomp strict"] = isolated(lambda w: {"strict": err(317, 0, 0, 0)})
def allow_all(w):
    prog, buf = bpf_prog([(0x06, 0, 0, ALLOW)])
    out = {"install": err(317, 1, 0, ctypes.addressof(prog))}   # SECCOMP_SET_MODE_FILTER
    out["prctl install"] = err(157, PR_SET_SECCOMP, 2, ctypes.addressof(prog), 0, 0)
    if PROC:
        out["filters"] = int(status()["Seccomp_filters"])
    out["unshare"] = err(272, 0x10000000)
    out["mount"] = err(165, b"tmpfs", b"/tmp", b"tmpfs", 0, 0)
    out["ptrace"] = err(101, 16, 1, 0, 0)
    return out
R["allow_all"] = isolated(allow_all)
def deny_getppid(w):
    # ld [nr]; jeq 110 ? ret ERRNO(EACCES) : ret ALLOW
    prog, buf = bpf_prog([(0x20, 0, 0, 0), (0x15, 0, 1, 110), (0x06, 0, 0, 0x00050000 | 13),
                          (0x06, 0, 0, ALLOW)])
    out = {"install": err(317, 1, 0, ctypes.addressof(prog))}
    out["getppid"] = err(110)
    out["unshare"] = err(272, 0x10000000)
    return out
R["deny_getppid"] = isolated(deny_getppid)
R["clear nnp"] = err(157, PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0)
R["nnp"] = sc(157, PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)[0]

# Landlock: a permissive ruleset (everything allowed beneath /) cannot undo
# the jail's ruleset; a tight one does tighten.
ALL_FS = (1 << 16) - 1
def ruleset(handled):
    attr = ctypes.create_string_buffer(struct.pack("=QQQ", handled, 0, 0), 24)
    return sc(444, ctypes.addressof(attr), 24, 0)
def add_beneath(rfd, path, allowed):
    pfd = os.open(path, os.O_PATH)
    pb = ctypes.create_string_buffer(struct.pack("=Qi", allowed, pfd), 12)
    r = err(445, rfd, 1, ctypes.addressof(pb), 0)
    os.close(pfd)
    return r
R["landlock abi"] = sc(444, 0, 0, 1)
def permissive(w):
    abi = sc(444, 0, 0, 1)[0]
    handled = ALL_FS if abi >= 5 else (1 << 13) - 1
    rfd, e = ruleset(handled)
    out = {"create": e}
    if e == "OK":
        out["add"] = add_beneath(rfd, "/", handled)
    out["restrict"] = err(446, rfd if e == "OK" else 0, 0)
    # the jail's Landlock rules grant no READ_DIR on "/" itself
    out["list /"] = oserr(lambda: os.listdir("/"))
    out["write /usr"] = oserr(lambda: open("/usr/e18", "w"))
    out["unshare"] = err(272, 0x10000000)
    return out
R["landlock permissive"] = isolated(permissive)
def tight(w):
    rfd, e = ruleset((1 << 13) - 1)
    out = {"create": e}
    if e != "OK":
        return out
    out.update({"add": add_beneath(rfd, "/tmp", (1 << 13) - 1), "restrict": err(446, rfd, 0)})
    out["read os-release"] = oserr(lambda: open("/etc/os-release").read())
    out["write tmp"] = oserr(lambda: open("/tmp/e18", "w").write("x"))
    return out
R["landlock tight"] = isolated(tight)
R["control list /"] = oserr(lambda: os.listdir("/"))
R["unshare after"] = err(272, 0x10000000)
R["socket after"] = fd_err(41, 2, 1, 0)
report()
''')
    want = CATALOGUE["e18"][profile.outcomes]
    s = res.pop("strict")
    # strict mode on top of a filter is refused (heavy: the kernel says
    # EINVAL; nano: its allowlist says EPERM); if it were accepted, the
    # forbidden call must kill the child.
    assert "SURVIVED" not in s["data"], s
    if s["result"] == {"strict": "OK"} or '"OK"' in s["data"]:
        assert profile.fork and s["signal"] == SIGKILL, s
    else:
        assert s["result"] == {"strict": want["strict"]}, s
    for k in ("seccomp strict", "allow_all", "deny_getppid", "landlock permissive",
              "landlock tight"):
        c = res[k]
        assert c["signal"] is None and c["exit"] == 0, (k, c)
        res[k] = c["result"]
    expect(profile, "e18", dict(res, strict=want["strict"],
                                **{"landlock abi": want["landlock abi"]}))
    if profile.proc:
        assert res["allow_all"]["filters"] >= 2, res    # the jail's filter is still there
    abi, e = res["landlock abi"]
    if want["landlock abi"] == "available":
        assert abi >= 1 and e == "OK", res
    else:
        assert [abi, e] == want["landlock abi"], res


# ------------------------------------------------------------------ E19


def test_e19_personality_changes_refused(profile, pbox):
    res = probe(profile, pbox, r'''
READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE = 0x0400000, 0x0040000
R["READ_IMPLIES_EXEC"] = err(135, READ_IMPLIES_EXEC)
R["ADDR_NO_RANDOMIZE"] = err(135, ADDR_NO_RANDOMIZE)
R["both"] = err(135, READ_IMPLIES_EXEC | ADDR_NO_RANDOMIZE)
R["PER_LINUX32"] = err(135, 0x0008)
R["query"] = sc(135, 0xffffffff)[0]
R["set default"] = sc(135, 0)
R["query after"] = sc(135, 0xffffffff)[0]
report()
''')
    expect(profile, "e19", res)
    assert set(res) == set(CATALOGUE["e19"][profile.outcomes]), res


# ------------------------------------------------------------------ E20, N1, N2


def test_e20_socket_families_refused(profile, pbox):
    res = probe(profile, pbox, f'''
import socket
SOCKS = {json.dumps({**INET_AND_UNIX_SOCKETS, **RARE_SOCKETS})}
S = {{}}
for name, (fam, typ, proto) in SOCKS.items():
    r, e = sc(41, fam, typ, proto)
    if r >= 0:
        os.close(r)
    S[name] = e
R["socket"] = S
sv = ctypes.create_string_buffer(8)
def socketpair(fam, typ):
    r, e = sc(53, fam, typ, 0, ctypes.addressof(sv))
    if r == 0:
        for fd in struct.unpack("=ii", sv.raw):
            os.close(fd)
    return e
R["socketpair unix"] = socketpair(1, 1)
R["socketpair netlink"] = socketpair(16, 3)
R["socketpair vsock"] = socketpair(40, 1)
# N1: the library paths an agent would take
def udp_connect(addr):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((addr, 53))
R["udp public"] = oserr(lambda: udp_connect("1.1.1.1"))
R["udp private"] = oserr(lambda: udp_connect("10.0.0.1"))
R["tcp loopback"] = oserr(lambda: socket.create_connection(("127.0.0.1", 22), timeout=1).close())
try:
    socket.getaddrinfo("example.com", 80)
    R["getaddrinfo"] = "OK"
except OSError as e:
    R["getaddrinfo"] = type(e).__name__
R["if_nameindex"] = oserr(lambda: socket.if_nameindex())
# N2: host unix sockets (X11, docker, dbus) are neither visible nor reachable
R["host sockets"] = {{p: os.path.exists(p) for p in ("/var/run/docker.sock", "/run/docker.sock",
                     "/tmp/.X11-unix", "/run/dbus/system_bus_socket",
                     "/var/run/dbus/system_bus_socket")}}
def unix_connect(addr):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(addr)
R["abstract unix"] = oserr(lambda: unix_connect("\\0/tmp/.X11-unix/X0"))
R["docker.sock"] = oserr(lambda: unix_connect("/var/run/docker.sock"))
def vsock():
    with socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM) as s:
        s.connect((2, 1024))
R["vsock cid 2"] = oserr(vsock)
report()
''')
    want = CATALOGUE["e20"][profile.outcomes]
    bad = {k: v for k, v in res.pop("socket").items() if v != want["socket"].get(k, "EPERM")}
    assert bad == {}, bad
    assert not any(res.pop("host sockets").values()), res
    # name resolution needs a socket or a network: some OSError, never an answer
    assert res.pop("getaddrinfo") not in (None, "OK"), res
    expect(profile, "e20", dict(res, socket=want["socket"]))
    assert set(res) | {"socket"} == set(want), res


# ------------------------------------------------------------------ S5


def test_s5_tiocsti_and_tioclinux_are_refused(profile, pbox):
    """No keystroke can be pushed into a terminal (TIOCSTI) nor a console
    driven (TIOCLINUX), through any descriptor the sandbox holds, with or
    without junk in the upper bits of the command; /dev/tty does not open."""
    res = probe(profile, pbox, r'''
import termios
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
ch = ctypes.c_char(b'x')
TIOCLINUX = 0x541C
fds = [0, 1, 2, 3]
R["devtty"] = oserr(lambda: fds.append(os.open('/dev/tty', os.O_RDWR)))
out = set()
for fd in fds:
    for cmd in (termios.TIOCSTI, termios.TIOCSTI | (1 << 32), termios.TIOCSTI | 0xffffffff00000000,
                TIOCLINUX, TIOCLINUX | (1 << 63)):
        ctypes.set_errno(0)
        rc = libc.ioctl(fd, cmd, ctypes.byref(ch))
        out.add((rc, errno.errorcode.get(ctypes.get_errno(), "OK")))
R["ioctls"] = sorted(out)
report()
''')
    want = CATALOGUE["s5"][profile.outcomes]
    assert res["devtty"] != "OK", res
    assert res["ioctls"], res
    for rc, e in res["ioctls"]:
        assert rc == -1 and e in want["ioctl"], res
    assert agentbox.daemon_info()["pid"] > 0
    with agentbox.Sandbox(**profile.sandbox) as other:
        r = other.run("print(1)", timeout=10)
        assert r.status == "ok" and r.stdout == "1\n", r


# ------------------------------------------------------------ late surfaces


def test_e21_late_kernel_surfaces_refused(profile, pbox):
    """memfd_secret, modify_ldt, ioprio_set, set_mempolicy_home_node and
    MPTCP sockets reach kernel code nothing in a sandbox needs; each is
    refused with EPERM, while (on heavy) ioprio_get and plain TCP still work."""
    res = probe(profile, pbox, r'''
R["memfd_secret"] = err(447, 0)
R["set_mempolicy_home_node"] = err(450, 0, 0, 0, 0)
# IOPRIO_WHO_PROCESS, this process, best effort level 4
R["ioprio_set"] = err(251, 1, 0, (2 << 13) | 4)
R["ioprio_set junk"] = err(251, 1 | (1 << 32), 0, (2 << 13) | 4)
ldt = ctypes.create_string_buffer(16)
R["modify_ldt read"] = err(154, 0, ctypes.addressof(ldt), 16)
R["modify_ldt write"] = err(154, 1, ctypes.addressof(ldt), 16)
R["mptcp"] = err(41, 2, 1, 262)
R["mptcp6"] = err(41, 10, 1, 262)
R["ioprio_get"] = err(252, 1, 0)
r, e = sc(41, 2, 1, 6)
if r >= 0:
    os.close(r)
R["tcp"] = e
report()
''')
    expect(profile, "e21", res)
    assert set(res) == set(CATALOGUE["e21"][profile.outcomes]), res


# ------------------------------------------------------- host information


# /proc files that describe the host's boot, hardware and disks, each of
# which the kernel offers on every x86_64 machine this runs on (the rest of
# the masked list may be absent, e.g. /proc/modules without modules).
HOST_PROC_FILES = ("/proc/cmdline", "/proc/iomem", "/proc/ioports", "/proc/interrupts",
                   "/proc/softirqs", "/proc/devices", "/proc/partitions", "/proc/diskstats",
                   "/proc/swaps", "/proc/consoles", "/proc/misc", "/proc/dma",
                   "/proc/sys/kernel/random/boot_id")
HOST_PROC_DIRS = ("/proc/acpi", "/proc/bus", "/proc/irq", "/proc/driver", "/proc/scsi",
                  "/proc/asound", "/proc/pressure")
# What Python, numpy and pandas read, which must stay.
KEPT_PROC_FILES = ("/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/loadavg",
                   "/proc/uptime", "/proc/version", "/proc/self/status")


def test_e22_host_boot_and_hardware_information_masked(profile, pbox):
    res = probe(profile, pbox, f'''
def size(p):
    try:
        with open(p, "rb") as f:
            return len(f.read())
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
R["files"] = {{p: size(p) for p in {HOST_PROC_FILES!r}}}
D = {{}}
for p in {HOST_PROC_DIRS!r}:
    try:
        D[p] = os.listdir(p)
    except OSError as e:
        D[p] = errno.errorcode.get(e.errno, str(e.errno))
R["dirs"] = D
# Nothing can be created where the hidden directories were.
try:
    os.mkdir("/proc/bus/x")
    R["mkdir"] = "OK"
except OSError as e:
    R["mkdir"] = errno.errorcode.get(e.errno, str(e.errno))
R["kept"] = {{p: size(p) for p in {KEPT_PROC_FILES!r}}}
R["cpu_count"] = os.cpu_count()
report()
''')
    assert set(res["files"]) == set(HOST_PROC_FILES), res["files"]
    for p, v in res["dirs"].items():
        assert v in ([], "ENOENT"), (p, v)
    want = CATALOGUE["e22"][profile.outcomes]
    if want["kept"] == "readable":
        # what Python, numpy and pandas read is there
        for p, v in res["kept"].items():
            assert isinstance(v, int) and v > 0, (p, v)
        res["kept"] = "readable"
    expect(profile, "e22", res)
    assert res["cpu_count"] >= 1


def test_e23_host_usr_local_hidden(profile, pbox):
    """The host's /usr/local (its own pip installs and tools) is not part
    of the runtime: the sandbox sees it empty (or may not list it) and
    cannot write it, while the distribution's packages still import."""
    res = probe(profile, pbox, r'''
import sys
try:
    R["usr_local"] = sorted(os.listdir("/usr/local"))
except OSError as e:
    R["usr_local"] = errno.errorcode.get(e.errno, str(e.errno))
try:
    open("/usr/local/x", "w")
    R["create"] = "OK"
except OSError as e:
    R["create"] = errno.errorcode.get(e.errno, str(e.errno))
R["local_on_path"] = [p for p in sys.path if p.startswith("/usr/local") and os.path.exists(p)]
import json as _json, sqlite3
R["stdlib"] = sqlite3.sqlite_version != ""
report()
''')
    expect(profile, "e23", res)
    assert res["local_on_path"] == [], res
    assert res["stdlib"] is True

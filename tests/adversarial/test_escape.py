"""Escape attempts E1-E20 of ADVERSARIAL.md against the heavy tier.

Every attack runs inside a sandbox through run_probe (PROBE_GUARD first, the
PROBE-RAN marker last). Probes use ctypes for raw system calls, print one or
more `RESULT {json}` lines, and the tests assert the exact outcome. Calls
that are expected to kill the caller (other ABIs, seccomp strict mode) run
in a forked child inside the sandbox, so that the probe survives to report.

Syscall numbers are those of x86_64; on another architecture the module is
skipped (the numbers, x32 and int 0x80 are x86_64 facts)."""
import functools
import hashlib
import json
import os
import pathlib
import platform

import pytest

import agentbox
from expected import RARE_SOCKETS
import probes
from probes import (
    CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
    CLONE_NEWNET, CLONE_NEWTIME)
from conftest import BUILD, REPO

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64",
                                reason="probes use x86_64 system call numbers")

SIGSYS = 31
SIGKILL = 9

# Every probe starts with raw system calls and the fork helper.
PRELUDE = probes.SYSCALLS + probes.IN_CHILD



@pytest.fixture(scope="module")
def mbox():
    """One heavy sandbox for the module: every probe that changes process
    state does so in a forked child, so tests do not interfere."""
    b = agentbox.Sandbox(tier="heavy")
    yield b
    b.close()


probe = functools.partial(probes.probe, prelude=PRELUDE)


# ------------------------------------------------------------------ E1


def test_e1_new_namespaces_refused(mbox):
    res = probe(mbox, f'''
flags = {{"user": {CLONE_NEWUSER}, "ns": {CLONE_NEWNS}, "user|ns": {CLONE_NEWUSER | CLONE_NEWNS},
         "pid": {CLONE_NEWPID}, "net": {CLONE_NEWNET}, "ipc": {CLONE_NEWIPC},
         "uts": {CLONE_NEWUTS}, "cgroup": {CLONE_NEWCGROUP}, "time": {CLONE_NEWTIME}}}
for name, f in flags.items():
    R["unshare " + name] = err(272, f)
# clone(2) with namespace flags: a child that somehow appears leaves at once.
for name in ("user", "user|ns", "pid", "net"):
    r, e = sc(56, flags[name] | 17, 0, 0, 0, 0)
    if r == 0:
        os._exit(0)
    if r > 0:
        os.waitpid(r, 0)
    R["clone " + name] = e
# clone3 with CLONE_NEWUSER|CLONE_NEWNS
args = struct.pack("=11Q", {CLONE_NEWUSER | CLONE_NEWNS}, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0)
buf = ctypes.create_string_buffer(args, len(args))
r, e = sc(435, ctypes.addressof(buf), len(args))
if r == 0:
    os._exit(0)
if r > 0:
    os.waitpid(r, 0)
R["clone3"] = e
R["ns_user_after"] = os.readlink("/proc/self/ns/user")
report()
''')
    for name in ("user", "ns", "user|ns", "pid", "net", "ipc", "uts", "cgroup", "time"):
        assert res["unshare " + name] == "EPERM", (name, res)
    for name in ("user", "user|ns", "pid", "net"):
        assert res["clone " + name] == "EPERM", (name, res)
    assert res["clone3"] in ("ENOSYS", "EPERM"), res


# ------------------------------------------------------------------ E2


def test_e2_mount_remount_umount_refused(mbox):
    res = probe(mbox, r'''
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MNT_DETACH = 1, 32, 4096, 16384, 2
os.makedirs("/tmp/e2", exist_ok=True)
R["mount tmpfs"] = err(165, b"tmpfs", b"/tmp/e2", b"tmpfs", 0, 0)
R["remount / rw"] = err(165, 0, b"/", 0, MS_REMOUNT | MS_BIND, 0)
R["remount /usr rw"] = err(165, 0, b"/usr", 0, MS_REMOUNT | MS_BIND, 0)
R["bind /proc"] = err(165, b"/proc", b"/tmp/e2", 0, MS_BIND | MS_REC, 0)
R["umount2 kallsyms"] = err(166, b"/proc/kallsyms", MNT_DETACH)
R["umount2 /proc/sys"] = err(166, b"/proc/sys", MNT_DETACH)
R["umount2 /"] = err(166, b"/", MNT_DETACH)
R["pivot_root"] = err(155, b"/tmp", b"/tmp/e2")
R["chroot"] = err(161, b"/tmp")
# nothing changed: / still read-only, kallsyms still masked
R["root_ro"] = bool(os.statvfs("/").f_flag & os.ST_RDONLY)
R["kallsyms_len"] = len(open("/proc/kallsyms", "rb").read())
R["create_in_root"] = oserr(lambda: open("/e2-file", "w"))
report()
''')
    for k in ("mount tmpfs", "remount / rw", "remount /usr rw", "bind /proc", "umount2 kallsyms",
              "umount2 /proc/sys", "umount2 /", "pivot_root", "chroot"):
        assert res[k] == "EPERM", (k, res)
    assert res["root_ro"] is True
    assert res["kallsyms_len"] == 0
    assert res["create_in_root"] in ("EROFS", "EACCES"), res


# ------------------------------------------------------------------ E3


def test_e3_new_mount_api_refused(mbox):
    res = probe(mbox, r'''
AT_FDCWD = -100
OPEN_TREE_CLONE, AT_RECURSIVE = 1, 0x8000
R["fsopen"] = err(430, b"tmpfs", 0)
R["fsconfig"] = err(431, 3, 6, 0, 0, 0)           # FSCONFIG_CMD_CREATE
R["fsmount"] = err(432, 3, 0, 0)
R["open_tree"] = err(428, AT_FDCWD, b"/", OPEN_TREE_CLONE | AT_RECURSIVE)
R["move_mount"] = err(429, AT_FDCWD, b"/tmp", AT_FDCWD, b"/workspace", 0)
R["fspick"] = err(433, AT_FDCWD, b"/", 0)
attr = ctypes.create_string_buffer(32)
R["mount_setattr"] = err(442, AT_FDCWD, b"/", 0, ctypes.addressof(attr), 32)
report()
''')
    for k in ("fsopen", "fsconfig", "fsmount", "open_tree", "move_mount", "fspick",
              "mount_setattr"):
        assert res[k] == "EPERM", (k, res)


# ------------------------------------------------------------------ E4


def test_e4_cgroup_release_agent_unreachable(mbox):
    res = probe(mbox, r'''
os.makedirs("/tmp/cg", exist_ok=True)
R["mount cgroup v1"] = err(165, b"cgroup", b"/tmp/cg", b"cgroup", 0, b"memory")
R["mount cgroup v1 none"] = err(165, b"cgroup", b"/tmp/cg", b"cgroup", 0, b"none,name=x")
R["mount cgroup2"] = err(165, b"cgroup2", b"/tmp/cg", b"cgroup2", 0, 0)
R["sys_exists"] = os.path.exists("/sys")
R["sys_fs_cgroup_exists"] = os.path.exists("/sys/fs/cgroup")
if R["sys_exists"]:
    R["sys_ro"] = bool(os.statvfs("/sys").f_flag & os.ST_RDONLY)
R["mkdir /sys"] = oserr(lambda: os.mkdir("/sys"))
found = []
for root in ("/sys/fs/cgroup", "/tmp/cg"):
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
    for k in ("mount cgroup v1", "mount cgroup v1 none", "mount cgroup2"):
        assert res[k] == "EPERM", (k, res)
    assert res["sys_fs_cgroup_exists"] is False, res
    assert res["sys_exists"] is False or res.get("sys_ro") is True, res
    assert res["mkdir /sys"] in ("EROFS", "EACCES"), res
    assert res["release_agents"] == [], res
    assert all(v != "OK" for v in res["release_agent_writes"].values()), res


# ------------------------------------------------------------------ E5


def _sha(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def test_e5_exe_of_self_and_parent_not_writable(mbox):
    host_bins = [BUILD / "agentbox-executor", pathlib.Path(os.path.realpath("/usr/bin/python3"))]
    before = {str(p): _sha(p) for p in host_bins}
    res = probe(mbox, r'''
W = {}
for p in ("/proc/self/exe", "/proc/1/exe", "/proc/%d/exe" % os.getppid()):
    for mode in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC):
        def f(p=p, mode=mode):
            fd = os.open(p, mode)
            os.close(fd)
        W["%s %d" % (p, mode)] = oserr(f)
R["writes"] = W
R["ppid"] = os.getppid()
# The executable of the sandbox is a host binary: writing it through any
# path the sandbox can name must fail.
exe_in_box = None
try:
    exe_in_box = os.readlink("/proc/self/exe")
except OSError as e:
    pass
R["python_write"] = oserr(lambda: open("/usr/bin/python3", "r+b"))
R["lib_write"] = oserr(lambda: open(os.path.realpath("/usr/bin/python3"), "ab"))
report()
''')
    assert res["ppid"] == 1
    for k, v in res["writes"].items():
        assert v in ("EACCES", "EPERM", "ETXTBSY", "EROFS", "ENOENT"), (k, res)
    assert res["python_write"] in ("EROFS", "EACCES", "ETXTBSY"), res
    assert res["lib_write"] in ("EROFS", "EACCES", "ETXTBSY"), res
    after = {str(p): _sha(p) for p in host_bins}
    assert before == after


# ------------------------------------------------------------------ E6


def test_e6_fd_walk_and_dotdot_climb_stay_inside(mbox):
    host_paths = sorted({"/work", "/root", str(REPO), os.environ["AGENTBOX_HOME"]})
    res = probe(mbox, f'''
HOST = {json.dumps(host_paths)}
import stat
fds = [int(x) for x in os.listdir("/proc/self/fd")]
info = {{}}
dirfds = []
for fd in fds:
    try:
        st = os.fstat(fd)
    except OSError:
        continue      # the listing's own fd, closed by now
    kind = ("dir" if stat.S_ISDIR(st.st_mode) else "reg" if stat.S_ISREG(st.st_mode)
            else "fifo" if stat.S_ISFIFO(st.st_mode) else "sock" if stat.S_ISSOCK(st.st_mode)
            else "chr" if stat.S_ISCHR(st.st_mode) else "other")
    info[fd] = kind
    if kind == "dir":
        dirfds.append(fd)
R["fds"] = info
# fds of our own that point at directories, including through /proc
own = {{}}
for p in ("/", "/workspace", "/tmp", "/proc/self/cwd", "/proc/self/root", "/proc/1/cwd",
          "/proc/1/root", "/proc/self/fd"):
    try:
        fd = os.open(p, os.O_PATH | os.O_DIRECTORY)   # fchdir works on O_PATH
        dirfds.append(fd)
        own[p] = "OK"
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
    assert res["opened"]["/"] == "OK" and res["opened"]["/workspace"] == "OK", res["opened"]
    assert res["opened"]["/proc/1/root"] in ("EACCES", "EPERM"), res["opened"]
    assert res["opened"]["/proc/1/cwd"] in ("EACCES", "EPERM"), res["opened"]
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


def test_e7_file_handles_refused(mbox):
    res = probe(mbox, r'''
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
fd = os.open("/usr", os.O_RDONLY | os.O_DIRECTORY)
R["open_by_handle_at"] = err(304, fd, ctypes.addressof(forged), os.O_RDONLY)
os.close(fd)
report()
''')
    assert res["name_to_handle_at"] == "EPERM", res
    assert res["name_to_handle_at /usr"] == "EPERM", res
    assert res["open_by_handle_at"] == "EPERM", res


# ------------------------------------------------------------------ E8


def test_e8_setns_refused(mbox):
    res = probe(mbox, r'''
S = {}
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
R["setns"] = S
report()
''')
    for p, v in res["setns"].items():
        if p.startswith("/proc/self"):
            assert v == "EPERM", (p, res)      # the fd opens; setns itself is refused
        else:
            assert v in ("EPERM", "open EACCES", "open EPERM"), (p, res)


# ------------------------------------------------------------------ E9


def test_e9_ptrace_process_vm_kcmp_refused(mbox):
    res = probe(mbox, r'''
import time, signal
PTRACE_TRACEME, PTRACE_ATTACH, PTRACE_SEIZE = 0, 16, 0x4206
pid = os.fork()
if pid == 0:
    time.sleep(30)
    os._exit(0)
me = os.getpid()
R["attach parent"] = err(101, PTRACE_ATTACH, 1, 0, 0)
R["seize parent"] = err(101, PTRACE_SEIZE, 1, 0, 0)
R["attach sibling"] = err(101, PTRACE_ATTACH, pid, 0, 0)
R["traceme"] = in_child(lambda w: {"traceme": err(101, PTRACE_TRACEME, 0, 0, 0)})
buf = ctypes.create_string_buffer(64)
iov = struct.pack("=QQ", ctypes.addressof(buf), 64)
liov = ctypes.create_string_buffer(iov, 16)
riov = ctypes.create_string_buffer(iov, 16)
R["process_vm_readv"] = err(310, pid, ctypes.addressof(liov), 1, ctypes.addressof(riov), 1, 0)
R["process_vm_writev"] = err(311, pid, ctypes.addressof(liov), 1, ctypes.addressof(riov), 1, 0)
R["process_vm_writev parent"] = err(311, 1, ctypes.addressof(liov), 1, ctypes.addressof(riov), 1, 0)
R["kcmp"] = err(312, me, pid, 0, 0, 0)          # KCMP_FILE
R["kcmp parent"] = err(312, me, 1, 0, 0, 0)
pfd = os.pidfd_open(pid)
R["pidfd_getfd"] = err(438, pfd, 0, 0)
os.close(pfd)
R["mem write sibling"] = oserr(lambda: open("/proc/%d/mem" % pid, "r+b"))
R["mem write parent"] = oserr(lambda: open("/proc/1/mem", "r+b"))
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
report()
''')
    for k in ("attach parent", "seize parent", "attach sibling", "process_vm_readv",
              "process_vm_writev", "process_vm_writev parent", "kcmp", "kcmp parent",
              "pidfd_getfd"):
        assert res[k] == "EPERM", (k, res)
    assert json.loads(res["traceme"]["data"]) == {"traceme": "EPERM"}, res
    assert res["mem write sibling"] in ("EACCES", "EPERM"), res
    assert res["mem write parent"] in ("EACCES", "EPERM"), res


# ------------------------------------------------------------------ E10-E13


def test_e10_io_uring_refused(mbox):
    res = probe(mbox, r'''
params = ctypes.create_string_buffer(120)
R["io_uring_setup"] = err(425, 8, ctypes.addressof(params))
R["io_uring_enter"] = err(426, 0, 1, 0, 0, 0, 0)
R["io_uring_register"] = err(427, 0, 0, 0, 0)
report()
''')
    assert res == {"io_uring_setup": "EPERM", "io_uring_enter": "EPERM",
                   "io_uring_register": "EPERM"}


def test_e11_bpf_perf_userfaultfd_refused(mbox):
    res = probe(mbox, r'''
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
struct.pack_into("=II", pattr, 0, 1, 128)                # PERF_TYPE_SOFTWARE
R["perf_event_open"] = err(298, ctypes.addressof(pattr), 0, -1, -1, 0)
R["userfaultfd"] = err(323, 0)
R["userfaultfd user"] = err(323, 1)                      # UFFD_USER_MODE_ONLY
report()
''')
    assert res == {"bpf PROG_LOAD": "EPERM", "bpf MAP_CREATE": "EPERM",
                   "perf_event_open": "EPERM", "userfaultfd": "EPERM",
                   "userfaultfd user": "EPERM"}


def test_e12_keyrings_refused(mbox):
    res = probe(mbox, r'''
KEY_SPEC_PROCESS_KEYRING = -2
R["add_key"] = err(248, b"user", b"k", b"v", 1, KEY_SPEC_PROCESS_KEYRING)
R["request_key"] = err(249, b"user", b"k", 0, KEY_SPEC_PROCESS_KEYRING)
R["keyctl get_keyring_id"] = err(250, 0, -4, 0)           # KEYCTL_GET_KEYRING_ID, user keyring
R["keyctl join"] = err(250, 1, b"x")                      # KEYCTL_JOIN_SESSION_KEYRING
report()
''')
    assert res == {"add_key": "EPERM", "request_key": "EPERM",
                   "keyctl get_keyring_id": "EPERM", "keyctl join": "EPERM"}


def test_e13_host_administration_refused(mbox):
    res = probe(mbox, r'''
img = ctypes.create_string_buffer(64)
R["init_module"] = err(175, ctypes.addressof(img), 64, b"")
fd = os.open("/dev/null", os.O_RDONLY)
R["finit_module"] = err(313, fd, b"", 0)
R["delete_module"] = err(176, b"ext4", 0)
R["kexec_load"] = err(246, 0, 0, 0, 0)
R["kexec_file_load"] = err(320, fd, fd, 0, b"", 0)
os.close(fd)
# LINUX_REBOOT_CMD_CAD_OFF: harmless even if it got through
R["reboot"] = err(169, 0xfee1dead, 672274793, 0, 0)
R["swapon"] = err(167, b"/dev/null", 0)
R["swapoff"] = err(168, b"/dev/null")
R["acct"] = err(163, 0)
R["acct file"] = err(163, b"/tmp/acct")
report()
''')
    for k in ("init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
              "reboot", "swapon", "swapoff", "acct", "acct file"):
        assert res[k] == "EPERM", (k, res)


# ------------------------------------------------------------------ E14


def test_e14_other_abis_kill_the_caller(mbox):
    res = probe(mbox, r'''
import mmap
X32 = 0x40000000
# x32 numbers: the 64-bit numbers with the x32 bit set (getpid is harmless
# and still must be refused: the whole ABI is refused).
for name, nr, a0 in (("unshare", 272, 0x10000000), ("mount", 165, 0), ("keyctl", 250, 0),
                     ("bpf", 321, 0), ("ptrace", 101, 16), ("getpid", 39, 0)):
    R["x32 " + name] = in_child(lambda w, nr=nr, a0=a0: {"ret": sc(nr | X32, a0, 0, 0, 0, 0)})
# int 0x80 with i386 numbers: mov eax, nr; mov ebx, arg; int 0x80; ret
def int80(nr, arg):
    code = b"\xb8" + struct.pack("<I", nr) + b"\xbb" + struct.pack("<I", arg) + b"\xcd\x80\xc3"
    m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    m.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    f = ctypes.CFUNCTYPE(ctypes.c_int)(addr)
    return f()
for name, nr, a0 in (("unshare", 310, 0x10000000), ("keyctl", 288, 0), ("getpid", 20, 0),
                     ("ptrace", 26, 16)):
    R["int80 " + name] = in_child(lambda w, nr=nr, a0=a0: {"ret": int80(nr, a0)})
report()
''')
    for k, v in res.items():
        assert v["signal"] == SIGSYS, (k, v)
        assert v["data"] == "", (k, v)        # the call never returned to the child


# ------------------------------------------------------------------ E15


def test_e15_junk_in_upper_32_bits_still_denied(mbox):
    res = probe(mbox, r'''
import fcntl, termios
J = 0xdeadbeef00000000
c = ctypes.c_char(b"x")
# fd 0 is /dev/null: without the filter the kernel would say ENOTTY
R["ioctl TIOCSTI junk"] = err(16, 0, J | termios.TIOCSTI, ctypes.addressof(c))
R["ioctl TIOCSTI"] = err(16, 0, termios.TIOCSTI, ctypes.addressof(c))
R["ioctl TIOCLINUX junk"] = err(16, 0, J | 0x541C, ctypes.addressof(c))
R["ioctl FIONREAD junk (control)"] = err(16, 0, J | termios.FIONREAD, ctypes.addressof(c))
# clone with CLONE_NEWUSER and junk above bit 32
def clone_junk(flags):
    r, e = sc(56, flags, 0, 0, 0, 0)
    if r == 0:
        os._exit(0)
    if r > 0:
        os.waitpid(r, 0)
    return e
R["clone NEWUSER junk"] = clone_junk(J | 0x10000000 | 17)
R["clone NEWNS junk"] = clone_junk(J | 0x00020000 | 17)
R["unshare NEWUSER junk"] = err(272, J | 0x10000000)
R["personality junk"] = err(135, J | 0x0040000)
R["socket NETLINK junk"] = err(41, J | 16, 3, 0)
R["socket UNIX junk"] = err(41, J | 1, 1, 0)
R["socket INET SCTP junk"] = err(41, 2, 1, J | 132)
R["socket INET DCCP junk"] = err(41, 2, J | 6, 33)
report()
''')
    for k in ("ioctl TIOCSTI junk", "ioctl TIOCSTI", "ioctl TIOCLINUX junk",
              "clone NEWUSER junk", "clone NEWNS junk", "unshare NEWUSER junk",
              "personality junk", "socket NETLINK junk", "socket UNIX junk",
              "socket INET SCTP junk", "socket INET DCCP junk"):
        assert res[k] == "EPERM", (k, res)
    # the junk alone does not make ioctl fail: the control reaches the kernel
    assert res["ioctl FIONREAD junk (control)"] == "ENOTTY", res


# ------------------------------------------------------------------ E16


def test_e16_no_privileges_and_setuid_is_inert(mbox):
    res = probe(mbox, r'''
import shutil, subprocess
st = status()
R["uid"] = os.getuid(); R["euid"] = os.geteuid()
R["CapEff"] = st["CapEff"]; R["CapPrm"] = st["CapPrm"]; R["CapBnd"] = st["CapBnd"]
R["CapAmb"] = st["CapAmb"]; R["NoNewPrivs"] = st["NoNewPrivs"]
# setuid copy of python3 in /tmp and in the workspace
CHECK = ("import os;d=dict(l.split(':',1) for l in open('/proc/self/status'));"
         "print(os.getuid(),os.geteuid(),d['CapEff'].strip(),d['CapPrm'].strip(),"
         "d['NoNewPrivs'].strip())")
runs = {}
for d in ("/tmp", "/workspace"):
    p = d + "/suidpy"
    shutil.copy("/usr/bin/python3", p)
    os.chmod(p, 0o4755)
    runs[d] = {"mode": oct(os.stat(p).st_mode & 0o7777)}
    cp = subprocess.run([p, "-S", "-c", CHECK], capture_output=True, text=True)
    runs[d]["out"] = cp.stdout.split()
    runs[d]["rc"] = cp.returncode
    # file capabilities (VFS_CAP_REVISION_2, cap_sys_admin permitted+effective)
    cap = struct.pack("<IIIII", 0x02000001, 1 << 21, 0, 0, 0)
    runs[d]["setcap"] = oserr(lambda: os.setxattr(p, "security.capability", cap))
    os.unlink(p)
R["runs"] = runs
# every file system the sandbox can exec from is nosuid
mi = {}
for line in open("/proc/self/mountinfo"):
    f = line.split()
    mi[f[4]] = f[5].split(",")
R["nosuid"] = {m: ("nosuid" in mi[m]) for m in ("/", "/usr", "/tmp", "/workspace", "/dev/shm")}
R["setuid 1000"] = oserr(lambda: os.setuid(1000))
R["capset"] = None
hdr = struct.pack("=Ii", 0x20080522, 0)
data = struct.pack("=IIIIII", 0xffffffff, 0xffffffff, 0, 0xffffffff, 0xffffffff, 0)
hb = ctypes.create_string_buffer(hdr, 8); db = ctypes.create_string_buffer(data, 24)
R["capset"] = err(126, ctypes.addressof(hb), ctypes.addressof(db))
report()
''')
    assert res["uid"] == 0 and res["euid"] == 0
    for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert int(res[k], 16) == 0, (k, res)
    assert res["NoNewPrivs"] == "1"
    for d, r in res["runs"].items():
        assert r["mode"] == "0o4755", (d, r)
        assert r["rc"] == 0, (d, r)
        uid, euid, capeff, capprm, nnp = r["out"]
        assert (uid, euid) == ("0", "0"), (d, r)
        assert int(capeff, 16) == 0 and int(capprm, 16) == 0 and nnp == "1", (d, r)
        assert r["setcap"] in ("EPERM", "EACCES"), (d, r)
    assert all(res["nosuid"].values()), res["nosuid"]
    assert res["setuid 1000"] in ("EPERM", "EINVAL"), res
    assert res["capset"] == "EPERM", res


# ------------------------------------------------------------------ E17


def test_e17_memfd_exec_stays_jailed(mbox):
    res = probe(mbox, r'''
import subprocess
CHECK = ("import os,socket;d=dict(l.split(':',1) for l in open('/proc/self/status'));"
         "print(d['Seccomp'].strip(),d['CapEff'].strip(),d['NoNewPrivs'].strip(),"
         "socket.gethostname(),os.path.exists('/work'))")
AT_EMPTY_PATH = 0x1000
fd, e = sc(319, b"payload", 0)
R["memfd_create"] = e
with open("/usr/bin/python3", "rb") as f:
    os.write(fd, f.read())
def child(w):
    os.dup2(w, 1)
    argv = (ctypes.c_char_p * 5)(b"python3", b"-S", b"-c", CHECK.encode(), None)
    envp = (ctypes.c_char_p * 2)(b"PATH=/usr/bin", None)
    r, e = sc(322, fd, b"", ctypes.addressof(argv), ctypes.addressof(envp), AT_EMPTY_PATH)
    os.write(2, ("execveat failed " + e).encode())
    os._exit(99)
R["memfd exec"] = in_child(child)
os.close(fd)
# exec of a file written to /tmp
import shutil
shutil.copy("/usr/bin/python3", "/tmp/e17py")
cp = subprocess.run(["/tmp/e17py", "-S", "-c", CHECK], capture_output=True, text=True)
R["tmp exec"] = [cp.returncode, cp.stdout]
os.unlink("/tmp/e17py")
report()
''')
    assert res["memfd_create"] == "OK"
    m = res["memfd exec"]
    assert m["exit"] == 0, m          # heavy allows exec
    assert m["data"].split() == ["2", "0000000000000000", "1", "sandbox", "False"], m
    rc, out = res["tmp exec"]
    assert rc == 0 and out.split() == ["2", "0000000000000000", "1", "sandbox", "False"], res


# ------------------------------------------------------------------ E18


def test_e18_own_seccomp_and_landlock_only_tighten(mbox):
    res = probe(mbox, r'''
PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 22, 38, 39
SECCOMP_MODE_STRICT = 1
def bpf_prog(insns):
    raw = b"".join(struct.pack("=HBBI", *i) for i in insns)
    buf = ctypes.create_string_buffer(raw, len(raw))
    prog = ctypes.create_string_buffer(struct.pack("=HxxxxxxQ", len(insns), ctypes.addressof(buf)), 16)
    return prog, buf
ALLOW = 0x7fff0000
def strict(w):
    r, e = sc(157, PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0)
    os.write(w, json.dumps({"strict": e}).encode())
    if r == 0:
        sc(272, 0x10000000)        # not allowed in strict mode: SIGKILL
        os.write(w, b"SURVIVED")
    return None
R["strict"] = in_child(strict)
def allow_all(w):
    prog, buf = bpf_prog([(0x06, 0, 0, ALLOW)])
    out = {"install": err(317, 1, 0, ctypes.addressof(prog))}   # SECCOMP_SET_MODE_FILTER
    out["filters"] = status()["Seccomp_filters"]
    out["unshare"] = err(272, 0x10000000)
    out["mount"] = err(165, b"tmpfs", b"/tmp", b"tmpfs", 0, 0)
    out["ptrace"] = err(101, 16, 1, 0, 0)
    return out
R["allow_all"] = in_child(allow_all)
def deny_getppid(w):
    # ld [nr]; jeq 110 ? ret ERRNO(EACCES) : ret ALLOW
    prog, buf = bpf_prog([(0x20, 0, 0, 0), (0x15, 0, 1, 110), (0x06, 0, 0, 0x00050000 | 13),
                          (0x06, 0, 0, ALLOW)])
    out = {"install": err(317, 1, 0, ctypes.addressof(prog))}
    out["getppid"] = err(110)
    out["unshare"] = err(272, 0x10000000)
    return out
R["deny_getppid"] = in_child(deny_getppid)
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
R["landlock abi"] = sc(444, 0, 0, 1)[0]
def permissive(w):
    abi = sc(444, 0, 0, 1)[0]
    handled = ALL_FS if abi >= 5 else (1 << 13) - 1
    rfd, e = ruleset(handled)
    out = {"create": e, "add": add_beneath(rfd, "/", handled),
           "restrict": err(446, rfd, 0)}
    # the jail's Landlock rules grant no READ_DIR on "/" itself
    out["list /"] = oserr(lambda: os.listdir("/"))
    out["write /usr"] = oserr(lambda: open("/usr/e18", "w"))
    out["unshare"] = err(272, 0x10000000)
    return out
R["landlock permissive"] = in_child(permissive)
def tight(w):
    rfd, e = ruleset((1 << 13) - 1)
    out = {"create": e, "add": add_beneath(rfd, "/tmp", (1 << 13) - 1),
           "restrict": err(446, rfd, 0)}
    out["read os-release"] = oserr(lambda: open("/etc/os-release").read())
    out["write tmp"] = oserr(lambda: open("/tmp/e18", "w").write("x"))
    return out
R["landlock tight"] = in_child(tight)
R["control list /"] = oserr(lambda: os.listdir("/"))
report()
''')
    s = res["strict"]
    # strict mode on top of a filter is refused by the kernel (EINVAL); if it
    # were accepted, the forbidden call must kill the child.
    assert "SURVIVED" not in s["data"], s
    if '"OK"' in s["data"]:
        assert s["signal"] == SIGKILL, s
    else:
        assert json.loads(s["data"]) == {"strict": "EINVAL"}, s
    a = json.loads(res["allow_all"]["data"])
    assert a["install"] == "OK", a
    assert int(a["filters"]) >= 2, a
    assert a["unshare"] == "EPERM" and a["mount"] == "EPERM" and a["ptrace"] == "EPERM", a
    d = json.loads(res["deny_getppid"]["data"])
    assert d == {"install": "OK", "getppid": "EACCES", "unshare": "EPERM"}, d
    assert res["clear nnp"] == "EINVAL" and res["nnp"] == 1, res
    assert res["landlock abi"] >= 1, res
    p = json.loads(res["landlock permissive"]["data"])
    assert p["create"] == "OK" and p["add"] == "OK" and p["restrict"] == "OK", p
    assert res["control list /"] == "EACCES", res           # the jail's rule
    assert p["list /"] == "EACCES", p                       # still forbidden
    assert p["write /usr"] in ("EROFS", "EACCES"), p
    assert p["unshare"] == "EPERM", p
    t = json.loads(res["landlock tight"]["data"])
    assert t == {"create": "OK", "add": "OK", "restrict": "OK", "read os-release": "EACCES",
                 "write tmp": "OK"}, t


# ------------------------------------------------------------------ E19


def test_e19_personality_changes_refused(mbox):
    res = probe(mbox, r'''
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
    assert res["READ_IMPLIES_EXEC"] == "EPERM"
    assert res["ADDR_NO_RANDOMIZE"] == "EPERM"
    assert res["both"] == "EPERM"
    assert res["PER_LINUX32"] == "EPERM"
    assert res["query"] == 0 and res["query after"] == 0, res
    assert res["set default"] == [0, "OK"], res


# ------------------------------------------------------------------ E20




def test_e20_rare_socket_families_refused(mbox):
    res = probe(mbox, f'''
SOCKS = {json.dumps(RARE_SOCKETS)}
S = {{}}
for name, (fam, typ, proto) in SOCKS.items():
    r, e = sc(41, fam, typ, proto)
    if r >= 0:
        os.close(r)
    S[name] = e
R["socket"] = S
sv = ctypes.create_string_buffer(8)
R["socketpair netlink"] = err(53, 16, 3, 0, ctypes.addressof(sv))
R["socketpair vsock"] = err(53, 40, 1, 0, ctypes.addressof(sv))
# controls: the families the heavy tier needs still work
C = {{}}
for name, (fam, typ) in {{"unix": (1, 1), "inet tcp": (2, 1), "inet6 udp": (10, 2)}}.items():
    r, e = sc(41, fam, typ, 0)
    if r >= 0:
        os.close(r)
    C[name] = e
R["controls"] = C
report()
''')
    bad = {k: v for k, v in res["socket"].items() if v != "EPERM"}
    assert bad == {}, bad
    assert res["socketpair netlink"] == "EPERM" and res["socketpair vsock"] == "EPERM", res
    assert res["controls"] == {"unix": "OK", "inet tcp": "OK", "inet6 udp": "OK"}, res


# ------------------------------------------------------------ late surfaces


def test_e21_late_kernel_surfaces_refused(mbox):
    """memfd_secret, modify_ldt, ioprio_set, set_mempolicy_home_node and
    MPTCP sockets reach kernel code nothing in a sandbox needs; each is
    refused with EPERM, while ioprio_get and plain TCP still work."""
    res = probe(mbox, r'''
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
    assert res == {"memfd_secret": "EPERM", "set_mempolicy_home_node": "EPERM",
                   "ioprio_set": "EPERM", "ioprio_set junk": "EPERM",
                   "modify_ldt read": "EPERM", "modify_ldt write": "EPERM",
                   "mptcp": "EPERM", "mptcp6": "EPERM", "ioprio_get": "OK", "tcp": "OK"}, res


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


def test_e22_host_boot_and_hardware_information_masked(mbox):
    res = probe(mbox, f'''
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
    assert res["files"] == {p: 0 for p in HOST_PROC_FILES}, res["files"]
    for p, v in res["dirs"].items():
        assert v in ([], "ENOENT"), (p, v)
    assert res["dirs"]["/proc/bus"] == [] and res["dirs"]["/proc/irq"] == [], res["dirs"]
    assert res["dirs"]["/proc/pressure"] == [], res["dirs"]
    assert res["mkdir"] in ("EROFS", "EACCES", "EPERM"), res
    for p, v in res["kept"].items():
        assert isinstance(v, int) and v > 0, (p, v)
    assert res["cpu_count"] >= 1


def test_e23_host_usr_local_hidden(mbox):
    """The host's /usr/local (its own pip installs and tools) is not part
    of the runtime: the sandbox sees it empty and read-only, while the
    distribution's packages still import."""
    res = probe(mbox, r'''
import sys
R["usr_local"] = sorted(os.listdir("/usr/local"))
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
    assert res["usr_local"] == [], res
    assert res["create"] in ("EROFS", "EACCES", "EPERM"), res
    assert res["local_on_path"] == [], res
    assert res["stdlib"] is True

"""Information leaks L1-L7 of ADVERSARIAL.md: L2 (environment, memory), L3
and L7 once per backend profile (tests/conftest.py BACKEND_PROFILES), the others against the heavy
tier (nano's forms of them, which read no /proc, are in test_nano_jail.py).

Every probe runs inside a sandbox through run_probe (PROBE_GUARD first, the
PROBE-RAN marker last), prints `RESULT {json}` lines, and the tests assert
the exact outcome."""
import functools
import os
import platform
import re
import secrets
import socket

import pytest

import agentbox
from expected import ALLOWED_ENV, HEAVY_ENV
import probes
from conftest import REPO, DaemonSocket

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64",
                                reason="probes use x86_64 system call numbers")


# read(path) -> ('OK', bytes) or (errno name, None).
READ = r'''
def read(path):
    try:
        with open(path, "rb") as f:
            return "OK", f.read()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno)), None
'''


# Raw system calls and read().
PRELUDE = probes.SYSCALLS + READ
probe = functools.partial(probes.probe, prelude=PRELUDE)


def probe_of(profile, box, code, timeout=30):
    """For the lines run once per backend profile: the catalogue's prelude
    (with the facts of the profile) and read()."""
    return probes.probe(box, code, prelude=probes.catalogue_prelude(profile) + READ,
                        timeout=timeout)


@pytest.fixture(scope="module")
def mbox():
    b = agentbox.Sandbox(tier="heavy")
    yield b
    b.close()


def host_markers():
    """Strings that name host paths and must never show inside a sandbox."""
    return sorted({str(REPO), "/work", os.environ["AGENTBOX_HOME"], "agentbox-"})


def mentions(marker, text):
    """True if text names marker: a path as a whole path prefix (so "/work"
    does not match "/workspace"), anything else as a substring."""
    if not marker.startswith("/"):
        return marker in text
    return re.search(r"(?:^|(?<=[\s\0=:]))" + re.escape(marker.rstrip("/")) + r"(?=/|\s|\0|$)",
                     text) is not None


# ------------------------------------------------------------------ L1


def test_l1_mountinfo_and_cgroup_show_no_host_paths(mbox):
    res = probe(mbox, r'''
R["mountinfo"] = open("/proc/self/mountinfo").read().splitlines()
R["cgroup"] = open("/proc/self/cgroup").read().splitlines()
R["mountinfo1"] = read("/proc/1/mountinfo")[1] is not None
report()
''')
    markers = host_markers()
    leaks = [(m, line) for line in res["mountinfo"] + res["cgroup"] for m in markers if mentions(m, line)]
    assert leaks == [], "host paths visible inside the sandbox:\n" + "\n".join(
        f"{m!r} in {line!r}" for m, line in leaks)
    assert res["cgroup"], res
    for line in res["cgroup"]:
        hier, ctrl, path = line.split(":", 2)
        assert path == "/", line


def test_l1_cmdline_exe_and_maps_show_no_host_paths(mbox):
    """Extension of L1: the executor's own argv, exe link and mapped files
    are readable inside the sandbox and must not name host paths either."""
    res = probe(mbox, r'''
def txt(p):
    st, b = read(p)
    return b.replace(b"\0", b" ").decode("utf-8", "replace") if b is not None else st
R["cmdline"] = {p: txt("/proc/%s/cmdline" % p) for p in ("self", "1", "2")}
try:
    R["exe"] = os.readlink("/proc/self/exe")
except OSError as e:
    R["exe"] = errno.errorcode.get(e.errno)
R["maps"] = sorted({l.split(None, 5)[5] for l in open("/proc/self/maps").read().splitlines()
                    if len(l.split(None, 5)) == 6})
report()
''')
    # host paths only: the program's name alone ("agentbox-executor") is no leak
    markers = [m for m in host_markers() if m.startswith("/")]
    seen = [res["exe"]] + list(res["cmdline"].values()) + res["maps"]
    leaks = [(m, s) for s in seen for m in markers if mentions(m, s)]
    assert leaks == [], "host paths visible inside the sandbox:\n" + "\n".join(
        f"{m!r} in {s!r}" for m, s in leaks)


# ------------------------------------------------------------------ L2

SECRET = "s3cr3t-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def secret_daemon(tmp_path_factory):
    """A daemon (and so its zygote) started with a secret in its
    environment; the variable is set before the process starts and removed
    from the test process afterwards."""
    old = os.environ.get("AGENTBOX_TEST_SECRET")
    os.environ["AGENTBOX_TEST_SECRET"] = SECRET
    try:
        d = DaemonSocket(tmp_path_factory.mktemp("l2-home"))
    finally:
        if old is None:
            del os.environ["AGENTBOX_TEST_SECRET"]
        else:
            os.environ["AGENTBOX_TEST_SECRET"] = old
    yield d
    d.stop()


@pytest.fixture(scope="module")
def secret_box(secret_daemon, profile):
    """A sandbox of the profile from the daemon with a secret."""
    b = agentbox.Sandbox(**profile.sandbox, url=str(secret_daemon.path))
    yield b
    b.close()


def test_l2_environment_is_the_allowlist(profile, secret_box):
    res = probe_of(profile, secret_box, f'''
SECRET = {SECRET!r}.encode()
R["keys"] = sorted(os.environ)
R["values_have_secret"] = SECRET.decode() in json.dumps(dict(os.environ))
# the live environ array of the C library
env = ctypes.POINTER(ctypes.c_char_p).in_dll(libc, "environ")
live, i = [], 0
while env[i]:
    live.append(env[i]); i += 1
R["libc_environ_has_secret"] = any(SECRET in v or v.startswith(b"AGENTBOX_TEST_SECRET=")
                                   for v in live)
# what a program it starts is given (where it can start one)
if FORK:
    import subprocess
    cp = subprocess.run([sys.executable, "-S", "-c",
                         "import os; print(sorted(k.split(b'=')[0].decode() for k in "
                         "open('/proc/self/environ','rb').read().split(b'\\\\0') if k))"],
                        capture_output=True, text=True)
    R["child_keys"] = cp.stdout.strip()
report()
''')
    probes.expect(profile, "l2", res)
    if profile.fork:
        assert res["child_keys"] == repr(HEAVY_ENV), res["child_keys"]


@pytest.fixture(scope="module")
def heavy_secret_box(secret_daemon):
    b = agentbox.Sandbox(tier="heavy", url=str(secret_daemon.path))
    yield b
    b.close()


def test_l2_no_secret_in_proc_environ_or_cmdline(heavy_secret_box):
    # (heavy's form: nano has no /proc and starts no process)
    res = probe(heavy_secret_box, f'''
import subprocess, time
SECRET = {SECRET!r}.encode()
kid = subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(20)"])
time.sleep(0.2)
hits, readable = [], []
for p in os.listdir("/proc"):
    if not p.isdigit() and p not in ("self", "thread-self"):
        continue
    for f in ("environ", "cmdline"):
        st, b = read("/proc/%s/%s" % (p, f))
        if b is not None:
            readable.append("%s/%s" % (p, f))
            if SECRET in b or b"AGENTBOX_TEST_SECRET" in b:
                hits.append("%s/%s" % (p, f))
kid.kill(); kid.wait()
R["hits"] = hits
R["readable"] = readable
report()
''')
    assert res["hits"] == [], res
    # the probe really read something: at least the exec'd child's environ
    assert any(r.endswith("/environ") for r in res["readable"]), res


def test_l2_no_secret_in_sandbox_memory(profile, secret_box):
    """The attacker has ctypes: whatever environment block the executor was
    started with lies in its own memory and is readable without /proc
    permissions: from the auxiliary vector (AT_RANDOM to AT_EXECFN bound the
    strings block of the initial stack, see create_elf_tables) and, where
    there is a /proc, from the bounds /proc/self/stat gives and the stack."""
    res = probe_of(profile, secret_box, f'''
SECRET = {SECRET!r}.encode()
libc.getauxval.restype = ctypes.c_ulong
libc.getauxval.argtypes = [ctypes.c_ulong]
lo, hi = libc.getauxval(25), libc.getauxval(31)     # AT_RANDOM, AT_EXECFN
R["block_len"] = hi - lo
end = hi + len(ctypes.string_at(hi)) + 1 if hi else 0
block = ctypes.string_at(lo, end - lo) if 0 < lo < hi and hi - lo < (1 << 22) else b""
R["block_has_secret"] = SECRET in block
R["block_has_name"] = b"AGENTBOX_TEST_SECRET" in block
R["block_keys"] = sorted({{k.split(b"=")[0].decode("utf-8", "replace") for k in block.split(b"\\0")
                          if b"=" in k and k.split(b"=")[0].isupper()}})
if PROC:
    stat = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    field = lambda n: int(stat[n - 3])          # proc(5) numbering: field 3 is stat[0]
    arg_start, arg_end, env_start, env_end = field(48), field(49), field(50), field(51)
    envblock = ctypes.string_at(env_start, env_end - env_start) if env_end > env_start else b""
    argblock = ctypes.string_at(arg_start, arg_end - arg_start) if arg_end > arg_start else b""
    stack_hit = False
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith("[stack]"):
            a, b = (int(x, 16) for x in line.split()[0].split("-"))
            stack_hit = SECRET in ctypes.string_at(a, b - a)
    R["env_block_len"] = len(envblock)
    R["env_block_keys"] = sorted({{k.split(b"=")[0].decode("utf-8", "replace")
                                  for k in envblock.split(b"\\0") if k}})
    R["env_block_has_secret"] = SECRET in envblock
    R["arg_block_has_secret"] = SECRET in argblock
    R["stack_has_secret"] = stack_hit
report()
''')
    assert res["block_len"] > 0, res              # the probe really read the block
    assert res["block_has_secret"] is False and res["block_has_name"] is False, (
        "the daemon's environment is in the sandbox's memory; keys: "
        + ", ".join(res["block_keys"]))
    if profile.proc:
        assert res["env_block_has_secret"] is False, (
            "the daemon's environment is in the executor's memory; keys: "
            + ", ".join(res["env_block_keys"]))
        assert res["arg_block_has_secret"] is False, res
        assert res["stack_has_secret"] is False, res
        assert set(res["env_block_keys"]) <= set(HEAVY_ENV), res["env_block_keys"]


# ------------------------------------------------------------------ L3


def test_l3_kernel_information_denied_or_masked(profile, pbox):
    res = probe_of(profile, pbox, r'''
buf = ctypes.create_string_buffer(4096)
R["syslog READ_ALL"] = sc(103, 3, ctypes.addressof(buf), 4096)[1]
R["syslog SIZE_BUFFER"] = sc(103, 10, 0, 0)[1]
R["syslog READ_CLEAR"] = sc(103, 4, ctypes.addressof(buf), 4096)[1]
F = {}
for p in ("/proc/kallsyms", "/proc/keys", "/proc/key-users", "/proc/sched_debug",
          "/proc/timer_list", "/proc/kcore", "/proc/vmallocinfo", "/proc/slabinfo",
          "/proc/kmsg", "/dev/kmsg", "/sys/kernel/debug", "/sys/firmware"):
    if os.path.isdir(p):
        F[p] = "dir"
        continue
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        F[p] = errno.errorcode.get(e.errno, str(e.errno))
        continue
    try:
        F[p] = len(os.read(fd, 4096))
    except OSError as e:
        F[p] = errno.errorcode.get(e.errno, str(e.errno))
    os.close(fd)
R["files"] = F
R["exists"] = {p: os.path.exists(p) for p in ("/proc", "/proc/self", "/proc/1", "/proc/kallsyms",
               "/sys", "/sys/firmware", "/sys/kernel", "/dev/kmsg", "/dev/mem", "/dev/kcore",
               "/dev/tty", "/dev/console")}
# a /proc or /sys of its own
T = SCRATCH.encode()
R["mount proc"] = err(165, b"proc", T, b"proc", 0, 0)
R["mount sysfs"] = err(165, b"sysfs", T, b"sysfs", 0, 0)
R["open /dev/kmsg"] = oserr(lambda: open("/dev/kmsg", "rb"))
report()
''')
    probes.expect(profile, "l3", res)
    for p, v in res["files"].items():
        # masked with /dev/null (reads empty), absent, or refused
        assert v in (0, "ENOENT", "EACCES", "EPERM"), (p, v)


# ------------------------------------------------------------------ L4


def test_l4_proc_lists_only_the_sandbox(mbox):
    res = probe(mbox, r'''
import time
r, w = os.pipe()
kid = os.fork()
if kid == 0:
    os.close(w)
    os.read(r, 1)
    os._exit(0)
os.close(r)
R["me"] = os.getpid()
R["kid"] = kid
R["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
R["comm"] = {p: open("/proc/%d/comm" % p).read().strip() for p in R["pids"]}
R["ppids"] = ''' + probes.PPID_MAP + r'''
os.close(w)
os.waitpid(kid, 0)
R["pids_after"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
report()
''')
    # init, the executor, its child, and nothing else but the executor's own
    # ancestors: the parked copies of it that time travel keeps
    # (docs/time-travel.md), each the same executor program
    copies = probes.ancestors(res)
    assert res["pids"] == sorted({1, res["me"], res["kid"]} | copies), res
    assert res["pids_after"] == sorted({1, res["me"]} | copies), res
    assert all(res["comm"][str(p)] == res["comm"][str(res["me"])] for p in copies), res


# ------------------------------------------------------------------ L5


def test_l5_new_sandbox_sees_nothing_of_an_earlier_one():
    token = "l5-" + secrets.token_hex(8)
    first = agentbox.Sandbox(tier="heavy")
    try:
        res1 = probe(first, f'''
T = {token!r}
for d in ("/tmp", "/dev/shm", "/workspace"):
    with open(os.path.join(d, T), "w") as f:
        f.write(T)
    os.makedirs(os.path.join(d, T + "-dir"), exist_ok=True)
R["written"] = {{d: sorted(os.listdir(d)) for d in ("/tmp", "/dev/shm", "/workspace")}}
report()
''')
        for d, names in res1["written"].items():
            assert token in names, (d, names)
    finally:
        first.close()
    second = agentbox.Sandbox(tier="heavy")
    try:
        res2 = probe(second, f'''
T = {token!r}
listing = {{}}
for d in ("/tmp", "/dev/shm", "/workspace"):
    names = []
    for dp, dn, fn in os.walk(d):
        names += [os.path.join(dp, n) for n in dn + fn]
    listing[d] = names
R["listing"] = listing
R["exists"] = [os.path.exists(os.path.join(d, T)) for d in ("/tmp", "/dev/shm", "/workspace")]
report()
''')
    finally:
        second.close()
    assert res2["exists"] == [False, False, False], res2
    for d, names in res2["listing"].items():
        assert not [n for n in names if token in n], (d, names)
    assert res2["listing"]["/workspace"] == [], res2      # a new workspace is empty
    assert res2["listing"]["/dev/shm"] == [], res2


# ------------------------------------------------------------------ L6


def test_l6_concurrent_sandboxes_are_isolated():
    token = "l6-" + secrets.token_hex(8)
    a = agentbox.Sandbox(tier="heavy")
    b = agentbox.Sandbox(tier="heavy")
    try:
        ra = probe(a, f'''
import subprocess
T = {token!r}
for d in ("/tmp", "/dev/shm", "/workspace"):
    with open(os.path.join(d, T), "w") as f:
        f.write(T)
# a process that stays alive while the other sandbox looks for it
kid = subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(60)"])
R["kid"] = kid.pid
R["ns"] = {{n: os.readlink("/proc/self/ns/" + n) for n in ("pid", "mnt", "net", "ipc", "uts")}}
buf = ctypes.create_string_buffer(b"secret-in-a-" + T.encode())
R["addr"] = ctypes.addressof(buf)
_keep = buf
report()
''')
        rb = probe(b, f'''
T = {token!r}
A_KID, A_ADDR = {ra["kid"]}, {ra["addr"]}
R["ns"] = {{n: os.readlink("/proc/self/ns/" + n) for n in ("pid", "mnt", "net", "ipc", "uts")}}
R["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
R["me"] = os.getpid()
R["ppids"] = ''' + probes.PPID_MAP + f'''
R["files"] = [os.path.exists(os.path.join(d, T)) for d in ("/tmp", "/dev/shm", "/workspace")]
found = []
for d in ("/tmp", "/dev/shm", "/workspace"):
    for dp, dn, fn in os.walk(d):
        found += [os.path.join(dp, n) for n in dn + fn if T in n]
R["found"] = found
R["mountinfo_mentions_a"] = {a.id!r} in open("/proc/self/mountinfo").read()
# signals: A's child pid and other pids above 2 do not exist here
kills = {{}}
for pid in sorted({{A_KID, 3, 50, 100, 4000, 32768}}):
    if pid in R["pids"]:
        continue
    try:
        os.kill(pid, 0)
        kills[pid] = "OK"
    except OSError as e:
        kills[pid] = errno.errorcode.get(e.errno, str(e.errno))
R["kills"] = kills
# memory: A's process is not there to read
st, _ = read("/proc/%d/mem" % A_KID)
R["mem"] = st
buf = ctypes.create_string_buffer(64)
iov = struct.pack("=QQ", ctypes.addressof(buf), 64)
liov = ctypes.create_string_buffer(iov, 16)
riov = ctypes.create_string_buffer(struct.pack("=QQ", A_ADDR, 64), 16)
R["process_vm_readv"] = sc(310, A_KID, ctypes.addressof(liov), 1, ctypes.addressof(riov), 1, 0)[1]
report()
''')
        # A is still alive and its child still running after B looked
        ra2 = probe(a, f'''
R["kid_alive"] = os.path.exists("/proc/{ra["kid"]}")
R["files"] = [os.path.exists(os.path.join(d, {token!r})) for d in ("/tmp", "/dev/shm", "/workspace")]
report()
''')
    finally:
        b.close()
        a.close()
    for n in ("pid", "mnt", "net", "ipc", "uts"):
        assert ra["ns"][n] != rb["ns"][n], (n, ra["ns"], rb["ns"])
    assert rb["files"] == [False, False, False] and rb["found"] == [], rb
    assert rb["mountinfo_mentions_a"] is False
    # init, the executor, and the executor's parked copies (its ancestors)
    assert rb["pids"] == sorted({1, rb["me"]} | probes.ancestors(rb)), rb
    assert rb["kills"] and all(v == "ESRCH" for v in rb["kills"].values()), rb["kills"]
    assert rb["mem"] == "ENOENT", rb
    assert rb["process_vm_readv"] == "EPERM", rb
    assert ra2 == {"kid_alive": True, "files": [True, True, True]}, ra2


# ------------------------------------------------------------------ L7


def test_l7_hostname_and_uname_are_the_sandbox_ones(profile, pbox):
    res = probe_of(profile, pbox, r'''
import socket, platform
u = os.uname()
R["gethostname"] = socket.gethostname()
R["nodename"] = u.nodename
R["platform_node"] = platform.node()
if PROC:
    R["domainname"] = open("/proc/sys/kernel/domainname").read().strip()
R["etc_hostname"] = read("/etc/hostname")[1].decode().strip()
R["sethostname"] = sc(170, b"evil", 4)[1]
R["setdomainname"] = sc(171, b"evil", 4)[1]
R["after"] = socket.gethostname()
report()
''')
    host = socket.gethostname()
    assert res["gethostname"] == "sandbox"
    assert res["nodename"] == "sandbox"
    # platform.uname() is cached on first use: a value computed in the zygote
    # before the jail would still name the host
    assert res["platform_node"] == "sandbox", (
        f"platform.node() is {res['platform_node']!r}, the host's name is {host!r}")
    assert res["etc_hostname"] == "sandbox"
    if profile.proc:
        assert res["domainname"] == "sandbox"
    assert host != "sandbox", "the host itself is called 'sandbox'; L7 proves nothing here"
    assert res["nodename"] != os.uname().nodename
    assert res["sethostname"] == "EPERM" and res["setdomainname"] == "EPERM", res
    assert res["after"] == "sandbox"

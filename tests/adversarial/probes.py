"""What the adversarial probes share: the Python text they start with
(raw system calls through ctypes, errno names, a result reporter, and for
tiers with fork a child helper), constants, and the runner that checks a
probe ran inside a sandbox and collects its RESULT lines."""
import json
import os

from conftest import PROBE_GUARD, run_probe
from expected import CATALOGUE, each, some

# Raw system calls and errno names; R collects results, report() prints them.
SYSCALLS = r'''
import ctypes, errno, json, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def _arg(a):
    if isinstance(a, int):
        return ctypes.c_ulong(a & 0xffffffffffffffff)
    return a
def sc(nr, *args):
    """Raw system call: returns (return value, errno name or 'OK')."""
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[_arg(a) for a in args])
    e = ctypes.get_errno()
    return r, (errno.errorcode.get(e, str(e)) if r == -1 else "OK")
def err(nr, *args):
    return sc(nr, *args)[1]
def oserr(fn):
    try:
        fn()
        return "OK"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
R = {}
def report():
    print("RESULT", json.dumps(R), flush=True)
'''

# Runs a function in a forked child and reports how it ended (not for nano,
# which has no fork), and reads /proc/<pid>/status.
IN_CHILD = r'''
def in_child(fn):
    """Runs fn in a forked child; returns its JSON-able result (written to a
    pipe), and the signal that killed it or its exit code."""
    r, w = os.pipe()
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            res = fn(w)
            if res is not None:
                os.write(w, json.dumps(res).encode())
        except BaseException as e:
            os.write(w, json.dumps({"exception": repr(e)}).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        data += b
    os.close(r)
    _, st = os.waitpid(pid, 0)
    return {"data": data.decode("utf-8", "replace"),
            "signal": os.WTERMSIG(st) if os.WIFSIGNALED(st) else None,
            "exit": os.WEXITSTATUS(st) if os.WIFEXITED(st) else None}
def status(pid="self"):
    d = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        d[k] = v.strip()
    return d
'''

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080


def probe(box, code, prelude=SYSCALLS, timeout=30):
    """Runs prelude + code as a probe (guarded by conftest's PROBE_GUARD);
    returns the merged RESULT objects it printed."""
    r = run_probe(box, prelude + code, timeout=timeout)
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            out.update(json.loads(line[len("RESULT "):]))
    assert out, f"probe printed no RESULT: {r!r}\nstderr: {r.stderr}"
    return out


def guarded(code):
    """For probes expected to be killed or cut off (their RESULT may never
    come): the guard, then a flushed start marker that proves they ran."""
    return PROBE_GUARD + "\nprint('PROBE-START', flush=True)\n" + code


def host_pids_with(marker):
    """Host pids whose command line contains marker (reads /proc only)."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(d))
        except OSError:
            pass
    return found


# User code writing forged "result" frames for steps 1-3 to the executor's
# control socket (fd 3), then sleeping: the run must still end by its timer.
FORGED_RESULTS = """
import os, struct, json, time
for step in (1, 2, 3):
    body = json.dumps({"ev": "result", "step": step, "status": "ok", "exit_code": 0}).encode()
    try:
        os.write(3, struct.pack('>I', len(body)) + body)
    except OSError:
        pass
time.sleep(1e9)
"""


# ---------------------------------------------------------------------------
# The catalogue run once per backend profile (test_escape.py, and the lines
# of test_leak.py run so): the text a probe starts with, and the check of
# what it reported against expected.CATALOGUE.

def profile_facts(profile):
    """The facts of the profile a probe may adapt to, as Python text."""
    return (f"PROFILE, FORK, PROC, SCRATCH = {profile.outcomes!r}, {profile.fork!r}, "
            f"{profile.proc!r}, {profile.scratch!r}\n")


def catalogue_prelude(profile):
    """Raw system calls, the fork helper where the tier can fork, and the
    facts of the profile."""
    return (SYSCALLS + (IN_CHILD if profile.fork else "") + FD_ERR
            + profile_facts(profile))


# err() for a call that may open a descriptor: closes it (a later probe of
# the same sandbox walks the descriptors)
FD_ERR = r'''
def fd_err(nr, *args):
    r, e = sc(nr, *args)
    if r >= 0:
        os.close(r)
    return e
'''


def expect(profile, attack, res):
    """Asserts that every outcome expected.CATALOGUE names for this attack
    and profile is the one the probe reported (the tests whose probes report
    only such outcomes also assert that nothing else was reported)."""
    want = CATALOGUE[attack][profile.outcomes]
    judged = {k: v for k, v in res.items() if k in want}
    assert set(judged) == set(want), (profile.name, attack, sorted(set(want) - set(res)))
    for k, v in want.items():
        assert _matches(res[k], v), (profile.name, attack, k, res[k], v, res)


def _matches(got, want):
    if isinstance(want, each):
        return all(x in want for x in (got.values() if isinstance(got, dict) else got))
    if isinstance(want, some):
        return all(_matches(got[k], w) for k, w in want.items())
    if isinstance(want, dict):
        return (isinstance(got, dict) and set(got) == set(want)
                and all(_matches(got[k], w) for k, w in want.items()))
    if isinstance(want, tuple):
        return got in want
    return got == want


# Time travel (docs/time-travel.md): a heavy sandbox keeps parked copies of
# its executor, which are processes of the sandbox itself - the executor's
# ancestors. Probes that list /proc record PPID_MAP; this tells which of the
# pids listed are such copies.
PPID_MAP = (
    "{p: int([l for l in open('/proc/%d/status' % p) if l.startswith('PPid:')][0].split()[1])"
    " for p in R['pids'] if os.path.exists('/proc/%d/status' % p)}")


def ancestors(res):
    """The pids between res["me"] and init (1), following res["ppids"]."""
    ppids = {int(k): v for k, v in res["ppids"].items()}
    seen, p = set(), ppids.get(res["me"])
    while p and p != 1 and p not in seen:
        seen.add(p)
        p = ppids.get(p)
    return seen


"""Shared pieces of the benchmarks: a daemon we start and stop ourselves, and
a minimal JSON-RPC client for it."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path



def pct(xs, p):
    """Percentile p (0..100) by linear interpolation between closest ranks."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class SocketDaemon:
    """An agentboxd --socket we start ourselves and stop by pid. pool is the
    heavy pool (--pool); the nano tier is off (--nano-pool -1) unless extra
    has a --nano-pool. pool=None passes neither: the daemon's own defaults
    for both pools."""

    def __init__(self, build, home, pool, *extra):
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.sock = str(self.home / "d.sock")
        self.logpath = self.home / "daemon.log"
        self.log = open(self.logpath, "wb")
        self.proc = subprocess.Popen(
            [str(Path(build) / "agentboxd"), "--socket", self.sock, "--home", str(self.home),
             *(() if pool is None else ("--pool", str(pool))), *extra,
             *(() if pool is None or "--nano-pool" in extra else ("--nano-pool", "-1"))], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self.log, start_new_session=True, close_fds=True)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agentboxd exited with {self.proc.returncode}: "
                                   f"{self.read_log()[-2000:]}")
            if os.path.exists(self.sock):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(self.sock)
                    break
                except OSError:
                    pass
                finally:
                    s.close()
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("agentboxd did not open its socket within 30 s")
            time.sleep(0.02)

    @property
    def pid(self):
        return self.proc.pid

    def read_log(self):
        try:
            return self.logpath.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                print(f"warning: agentboxd {self.proc.pid} ignored SIGTERM for 30 s; "
                      f"sending SIGKILL", file=sys.stderr)
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self.log.close()


class Client:
    """A minimal blocking JSON-RPC client (one connection, one call at a time)."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rwb")
        self.n = 0

    def call(self, method, **params):
        self.n += 1
        self.f.write(json.dumps({"jsonrpc": "2.0", "id": self.n, "method": method,
                                 "params": params}).encode() + b"\n")
        self.f.flush()
        while True:
            msg = json.loads(self.f.readline())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg["result"]

    def close(self):
        self.s.close()


# ---------------------------------------------------------------- pool state from /proc
def _read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def _children(pid):
    """Children of every thread of pid (/proc/PID/task/TID/children)."""
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        s = _read(f"/proc/{pid}/task/{tid}/children")
        if s:
            out.extend(int(x) for x in s.split())
    return out


def _pidns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


class PoolProbe:
    """Tells, from /proc, whether a daemon that we started (so that we may
    read its processes) has its pools full and is otherwise quiet.
    daemon.info no longer reports how many pooled sandboxes are ready (other
    clients' use of the pool is not a client's business), so a benchmark that
    wants every sample to start with a full pool has to look for itself.

    A sandbox is an init process (a descendant of the daemon, first in a pid
    namespace of its own, command line "... --tier T") with one worker child.
    It is idle when that worker sleeps reading its channel (wchan
    unix_stream_read_*; where wchan is not readable, when it is sleeping at
    all). The pools are full when, for every tier with a target > 0, the idle
    sandboxes minus those the caller holds (held: {tier: n}) reach the target
    and no sandbox is starting or being torn down; wait() wants that on two
    looks in a row.

    The pools adapt to demand (they grow past their configured target after
    creates that found them empty, up to --pool-max, and shrink back later),
    so a tier may hold more idle sandboxes than its target: that is still
    full. While a grown pool refills (one sandbox at a time) or shrinks (it
    closes idle sandboxes), a sandbox is starting or closing, so the pools
    are not quiet until that is over. Targets are the configured sizes
    (daemon.info pool.T.target); an empty targets dict waits only for quiet
    (no sandbox starting or closing)."""

    def __init__(self, daemon_pid, targets):
        self.pid = daemon_pid
        self.targets = {t: n for t, n in targets.items() if n > 0}
        self.ns = _pidns(daemon_pid)

    def _worker_idle(self, pid):
        stat = _read(f"/proc/{pid}/stat")
        if not stat:
            return False
        state = stat.rsplit(")", 1)[1].split()[0]
        if state != "S":
            return False
        wchan = _read(f"/proc/{pid}/wchan")
        if wchan and wchan != "0":
            return wchan.startswith("unix_stream_read")
        return True

    def sandboxes(self):
        """{tier: (idle, busy)} over the daemon's sandboxes."""
        out = {}
        stack = [(self.pid, self.ns)]
        while stack:
            parent, parent_ns = stack.pop()
            for p in _children(parent):
                ns = _pidns(p)
                if ns is None:
                    continue
                if ns == parent_ns:
                    stack.append((p, ns))  # a zygote or a helper: look below it
                    continue
                cmd = (_read(f"/proc/{p}/cmdline", "rb") or b"").split(b"\0")
                tier = (cmd[cmd.index(b"--tier") + 1].decode(errors="replace")
                        if b"--tier" in cmd[:-1] else "?")
                workers = _children(p)
                # no readable tier: an init on its way out (its command
                # line is gone); never idle
                idle = (tier != "?" and len(workers) == 1
                        and self._worker_idle(workers[0]))
                i, b = out.get(tier, (0, 0))
                out[tier] = (i + 1, b) if idle else (i, b + 1)
        return out

    def full(self, held=None):
        held = held or {}
        sb = self.sandboxes()
        if any(b for _, b in sb.values()):
            return False
        return all(sb.get(t, (0, 0))[0] - held.get(t, 0) >= n for t, n in self.targets.items())

    def wait(self, held=None, timeout=90.0, settle=0.01):
        """Waits until full() holds twice in a row; returns the wait in ms."""
        t0 = time.monotonic()
        seen = 0
        while True:
            seen = seen + 1 if self.full(held) else 0
            if seen >= 2:
                time.sleep(settle)
                return (time.monotonic() - t0) * 1000
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"the daemon's pools were not full and quiet within "
                                   f"{timeout:g} s: sandboxes {self.sandboxes()} "
                                   f"(tier: (idle, busy)), held {held}, targets {self.targets}")
            time.sleep(0.005)

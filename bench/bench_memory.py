#!/usr/bin/python3
"""Memory benchmark: PSS per idle heavy session with many sessions open.

Starts its own agentboxd (--socket, --pool 0 --pool-max 0: no heavy pool,
not even one grown by the creates that find it empty; a temporary --home), opens
N sandboxes (default 50) that each ran `print(1)` once (or --code), lets
them settle, then reads from the host:

  * per session: Pss (and Rss) of the sandbox's init plus its executor, from
    /proc/PID/smaps_rollup. Sandbox inits are the daemon's direct children
    that live in a pid namespace of their own (two NSpid entries); the zygote
    is the child in the host pid namespace (cross-checked with the daemon's
    "zygote ready (pid N)" log line). Every process under an init counts.
  * the zygote's Pss and Rss, the daemon's Rss (and Pss).

Goal: <= 20 MB PSS per idle heavy session. Prints PASS/MISS; it never fails
on a missed goal, only on a broken setup.
"""

import argparse
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import SocketDaemon

ROOT = Path(__file__).resolve().parents[1]
PY = "/usr/bin/python3"
GOAL_MB = 20.0


def read_kb(path, keys):
    """Returns {key: kB} for 'Key:   N kB' lines of a /proc file (missing: 0)."""
    out = dict.fromkeys(keys, 0)
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in out:
                    out[k] = int(v.split()[0])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


def children_of(pid):
    """Direct children of pid (from /proc/PID/task/*/children, or a /proc scan)."""
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids += [int(x) for x in f.read().split()]
            except FileNotFoundError:
                pass
        return sorted(set(kids))
    except FileNotFoundError:
        return []


def nspid(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except FileNotFoundError:
        pass
    return []


def descendants(pid):
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack += children_of(p)
    return out


def mem(pid):
    """Pss/Rss and parts of one process, in kB."""
    r = read_kb(f"/proc/{pid}/smaps_rollup", ("Rss", "Pss", "Pss_Anon", "Pss_File",
                                               "Pss_Shmem", "Private_Clean", "Private_Dirty"))
    r["Uss"] = r["Private_Clean"] + r["Private_Dirty"]
    return r


def mb(kb):
    return kb / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=str(ROOT / "build"), help="build directory (agentboxd)")
    ap.add_argument("--sessions", type=int, default=None,
                    help="sandboxes to open (default 50, --quick 10)")
    ap.add_argument("--code", default="print(1)", help="code each sandbox runs once")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds to wait after the last run before measuring")
    ap.add_argument("--quick", action="store_true", help="fast smoke run")
    args = ap.parse_args()
    nsess = args.sessions or (10 if args.quick else 50)
    build = Path(args.build).resolve()
    if not (build / "agentboxd").is_file():
        sys.exit(f"bench_memory: {build}/agentboxd not found (run make)")
    repro = "cd %s && %s" % (shlex.quote(str(ROOT)), shlex.join(
        [PY, "bench/bench_memory.py", "--build", str(build), "--sessions", str(nsess),
         "--code", args.code, "--settle", f"{args.settle:g}"]))

    sys.path.insert(0, str(ROOT / "python"))
    os.environ["AGENTBOX_BIN"] = str(build)
    from agentbox import Sandbox, daemon_info
    import agentbox

    tmp = Path(tempfile.mkdtemp(prefix="agentbox-bench-mem-"))
    d = None
    boxes = []
    try:
        d = SocketDaemon(build, tmp / "home", 0, "--pool-max", "0")
        info = daemon_info(d.sock)
        print(f"# daemon pid {d.pid} (--socket, --pool 0 --pool-max 0), cgroup {info.get('cgroup')}, "
              f"degraded {info.get('degraded')}")
        t0 = time.perf_counter()
        for i in range(nsess):
            b = Sandbox(tier="heavy", url=d.sock)
            boxes.append(b)
            r = b.run(args.code, timeout=60)
            if not r.ok:
                raise RuntimeError(f"session {i}: {args.code!r} failed: {r!r} {r.stderr[-500:]}")
        print(f"# opened {nsess} sessions, each ran {args.code!r} once, in "
              f"{time.perf_counter() - t0:.1f} s; settling {args.settle:g} s")
        time.sleep(args.settle)
        info = daemon_info(d.sock)

        # ---------------------------------------------------- find the processes
        m = re.findall(r"zygote ready \(pid (\d+)\)", d.read_log())
        log_zygote = int(m[-1]) if m else None
        kids = children_of(d.pid)
        zygotes = [k for k in kids if len(nspid(k)) == 1]
        inits = [k for k in kids if len(nspid(k)) >= 2]
        if log_zygote is not None and log_zygote not in zygotes:
            print(f"warning: the log names zygote pid {log_zygote}, but the host-pidns "
                  f"children of the daemon are {zygotes}", file=sys.stderr)
        sessions = []  # (init pid, [pids], pss kB, rss kB, anon kB, file kB)
        for init in inits:
            pids = descendants(init)
            ms = [mem(p) for p in pids]
            sessions.append((init, pids, sum(x["Pss"] for x in ms), sum(x["Rss"] for x in ms),
                             sum(x["Pss_Anon"] for x in ms), sum(x["Pss_File"] for x in ms),
                             [x["Pss"] for x in ms], sum(x["Uss"] for x in ms)))
        zmem = [mem(z) for z in zygotes]
        dstat = read_kb(f"/proc/{d.pid}/status", ("VmRSS", "VmHWM"))
        dmem = mem(d.pid)

        # ---------------------------------------------------- report
        print()
        print(f"daemon.info: sessions {info.get('sessions')}, pool {info.get('pool')}")
        nproc = [len(s[1]) for s in sessions]
        print(f"sandbox inits found: {len(inits)} (expected {nsess}); processes per session: "
              f"min {min(nproc, default=0)}, max {max(nproc, default=0)} "
              f"(init + executor = 2)")
        if sessions:
            pss = [mb(s[2]) for s in sessions]
            rss = [mb(s[3]) for s in sessions]
            anon = [mb(s[4]) for s in sessions]
            filep = [mb(s[5]) for s in sessions]
            init_pss = [mb(s[6][0]) for s in sessions]
            exe_pss = [mb(sum(s[6][1:])) for s in sessions]
            print(f"PSS per idle session (MB): mean {statistics.mean(pss):.2f}, median "
                  f"{statistics.median(pss):.2f}, min {min(pss):.2f}, max {max(pss):.2f}")
            print(f"  of which init {statistics.mean(init_pss):.2f} + executor "
                  f"{statistics.mean(exe_pss):.2f} (means); Pss_Anon "
                  f"{statistics.mean(anon):.2f}, Pss_File {statistics.mean(filep):.2f} (means)")
            uss = [mb(s[7]) for s in sessions]
            print(f"USS per idle session (MB, pages private to the session): mean "
                  f"{statistics.mean(uss):.2f}, max {max(uss):.2f}")
            print(f"RSS per idle session (MB, shared pages counted in full): mean "
                  f"{statistics.mean(rss):.2f}")
            print(f"total PSS of all {len(sessions)} sessions: {sum(pss):.1f} MB")
        for z, zm in zip(zygotes, zmem):
            print(f"zygote pid {z}: PSS {mb(zm['Pss']):.2f} MB, RSS {mb(zm['Rss']):.2f} MB"
                  + (" (matches the log)" if z == log_zygote else ""))
        print(f"daemon pid {d.pid}: RSS {mb(dstat['VmRSS']):.2f} MB (peak {mb(dstat['VmHWM']):.2f}"
              f" MB), PSS {mb(dmem['Pss']):.2f} MB")
        if sessions:
            mean_pss = statistics.mean(pss)
            verdict = "PASS" if max(pss) <= GOAL_MB else ("MISS" if mean_pss > GOAL_MB else
                                                          "PASS on mean, MISS on max")
            print(f"GOAL PSS per idle heavy session <= {GOAL_MB:g} MB with {len(sessions)} open: "
                  f"mean {mean_pss:.2f} MB, max {max(pss):.2f} MB -> {verdict}")
        else:
            print("GOAL PSS per idle heavy session: no sandbox process found -> MISS")
        print(f"# reproduce: {repro}")
    finally:
        for b in boxes:
            try:
                b.close()
            except Exception as e:
                print(f"warning: close {b.id}: {e}", file=sys.stderr)
        try:
            agentbox.shutdown_daemon()  # closes our socket connection
        except Exception:
            pass
        if d is not None:
            d.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

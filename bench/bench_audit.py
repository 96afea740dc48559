#!/usr/bin/python3
"""Audit log benchmark: durable events per second, and the latency a run
pays for its record, against the same daemon with --no-audit, measured in
the same run.

  events/s   sandbox.files.list calls (one audit event each, answered only
             after the event is committed with fsync) from 1 and from 16
             concurrent clients, each with its own connection and sandbox
  run        print(1) on a warm sandbox, p50/p95, audit on vs --no-audit

Goals (issue 3): >= 10,000 events/s; <= 1 fsync of added latency per run
(the fsync cost is measured here too: a 4 KiB write + fdatasync in the home).
This benchmark reports; it never fails on a missed goal.
"""
import argparse
import os
import shlex
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import Client, SocketDaemon

ROOT = Path(__file__).resolve().parents[1]


def events_per_second(path, clients, seconds):
    counts = [0] * clients
    ready = threading.Barrier(clients + 1)
    stop = threading.Event()

    def work(i):
        c = Client(path)
        sid = c.call("sandbox.create", tier="heavy")["sandbox"]
        ready.wait()
        while not stop.is_set():
            c.call("sandbox.files.list", sandbox=sid)
            counts[i] += 1
        c.call("sandbox.close", sandbox=sid)
        c.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    t0 = time.time()
    time.sleep(seconds)
    stop.set()
    dt = time.time() - t0
    for t in threads:
        t.join(120)
    return sum(counts) / dt


def run_latency(path, n):
    c = Client(path)
    sid = c.call("sandbox.create", tier="heavy")["sandbox"]
    for _ in range(3):
        c.call("sandbox.run", sandbox=sid, code="print(1)")
    xs = []
    for _ in range(n):
        t = time.perf_counter()
        c.call("sandbox.run", sandbox=sid, code="print(1)")
        xs.append((time.perf_counter() - t) * 1000)
    c.call("sandbox.close", sandbox=sid)
    c.close()
    xs.sort()
    return xs[len(xs) // 2], xs[int(len(xs) * 0.95) - 1]


def fsync_cost(home, n=200):
    """One durable append, as a log commit does it: 4 KiB appended to a
    growing file, then fsync (SQLite syncs its WAL with fsync)."""
    path = Path(home) / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    xs = []
    for _ in range(n):
        t = time.perf_counter()
        os.write(fd, b"x" * 4096)
        os.fsync(fd)
        xs.append((time.perf_counter() - t) * 1000)
    os.close(fd)
    path.unlink()
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.seconds, a.n = 1.0, 30
    with tempfile.TemporaryDirectory(prefix="agentbox-bench-audit-") as base:
        homes = {k: Path(base) / k for k in ("on", "off")}
        for h in homes.values():
            h.mkdir()
        on = SocketDaemon(a.build, homes["on"], 0)
        off = SocketDaemon(a.build, homes["off"], 0, "--no-audit")
        on_sock, off_sock = on.sock, off.sock
        try:
            rows = []
            for clients in (1, 16):
                e_on = events_per_second(on_sock, clients, a.seconds)
                e_off = events_per_second(off_sock, clients, a.seconds)
                rows.append((clients, e_on, e_off))
            lat_on = run_latency(on_sock, a.n)
            lat_off = run_latency(off_sock, a.n)
            fs = fsync_cost(homes["on"])
        finally:
            on.stop()
            off.stop()
    print("durable audit events per second (files.list calls, each answered after its")
    print("event is committed):")
    print(f"{'clients':>8} {'audit on':>12} {'--no-audit':>12} {'ratio':>7}")
    for clients, e_on, e_off in rows:
        print(f"{clients:>8} {e_on:>12,.0f} {e_off:>12,.0f} {e_on / e_off:>6.2f}x")
    print()
    print(f"run print(1) on a warm sandbox, ms: audit on p50 {lat_on[0]:.2f} p95 {lat_on[1]:.2f}; "
          f"--no-audit p50 {lat_off[0]:.2f} p95 {lat_off[1]:.2f}")
    added = lat_on[0] - lat_off[0]
    print(f"added latency per run (p50): {added:.2f} ms; one fsync here: {fs:.2f} ms "
          f"-> {added / fs:.2f} fsyncs")
    best = max(r[1] for r in rows)
    print(f"GOAL >= 10,000 events/s: best {best:,.0f} -> {'PASS' if best >= 10000 else 'MISS'}")
    print(f"GOAL <= 1 fsync added per run: {added / fs:.2f} -> "
          f"{'PASS' if added <= fs else 'MISS'}")
    print("# reproduce: cd " + shlex.quote(str(ROOT)) + " && /usr/bin/python3 bench/bench_audit.py "
          + " ".join(shlex.quote(x) for x in sys.argv[1:]))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Nano tier benchmark, against cold `/usr/bin/python3 -c` in the same run.

  run only     run(CODE) on one warm nano sandbox (print(1); a JSON round trip)
  pool hit     create + run + close with a ready pooled nano sandbox
  throughput   back-to-back create + run + close for a fixed time, the pool
               refilling in the background (runs/s on this machine's cores)
  memory       PSS of an idle pooled nano sandbox (init + worker)

Goals (issue 4): p50 >= 30x faster than cold; >= 100 runs/s; <= 3 MB PSS
per idle pooled worker. Reports; never fails on a missed goal. The SDK is
bypassed (a minimal JSON-RPC client over the daemon's socket) so that the
numbers are the daemon's.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import Client, SocketDaemon

ROOT = Path(__file__).resolve().parents[1]
PY = "/usr/bin/python3"
CODES = {
    "print(1)": "print(1)",
    "json": "import json; print(json.loads(json.dumps({'a': [1, 2, {'b': None}]}))['a'][2])",
}


def pct(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, int(round((len(s) - 1) * p / 100)))]


def cold(code, n):
    xs = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([PY, "-c", code], capture_output=True, check=True)
        xs.append((time.perf_counter() - t) * 1000)
    return xs


def wait_pool(c, target):
    deadline = time.time() + 60
    while c.call("daemon.info")["pool"]["nano"]["ready"] < target:
        if time.time() > deadline:
            raise RuntimeError("the nano pool did not refill")
        time.sleep(0.01)


def pss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                st = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(st[1]) == pid:
                out.append(int(p))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--pool", type=int, default=4)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.n, a.seconds = 10, 1.0
    with tempfile.TemporaryDirectory(prefix="agentbox-bench-nano-") as home:
        d = SocketDaemon(a.build, home, 0, "--nano-pool", str(a.pool))
        try:
            c = Client(d.sock)
            wait_pool(c, a.pool)
            # memory of idle pooled nano sandboxes: children of the daemon
            # in their own pid namespace (the zygotes share the daemon's)
            ns = os.readlink(f"/proc/{d.pid}/ns/pid")
            inits = [p for p in children(d.pid) if os.readlink(f"/proc/{p}/ns/pid") != ns]
            pss = [(pss_kb(p) + sum(pss_kb(q) for q in children(p))) / 1024 for p in inits]
            rows = []
            for name, code in CODES.items():
                base = cold(code, max(5, a.n // 5))
                sid = c.call("sandbox.create", tier="nano")["sandbox"]
                c.call("sandbox.run", sandbox=sid, code=code)
                run = []
                for _ in range(a.n):
                    t = time.perf_counter()
                    c.call("sandbox.run", sandbox=sid, code=code)
                    run.append((time.perf_counter() - t) * 1000)
                c.call("sandbox.close", sandbox=sid)
                hit = []
                for _ in range(max(5, a.n // 5)):
                    wait_pool(c, a.pool)
                    t = time.perf_counter()
                    s = c.call("sandbox.create", tier="nano")["sandbox"]
                    c.call("sandbox.run", sandbox=s, code=code)
                    c.call("sandbox.close", sandbox=s)
                    hit.append((time.perf_counter() - t) * 1000)
                rows.append((name, base, run, hit))
            wait_pool(c, a.pool)
            count, t0 = 0, time.time()
            while time.time() - t0 < a.seconds:
                s = c.call("sandbox.create", tier="nano")["sandbox"]
                c.call("sandbox.run", sandbox=s, code="print(1)")
                c.call("sandbox.close", sandbox=s)
                count += 1
            rate = count / (time.time() - t0)
        finally:
            d.stop()
    print("nano latency, ms (p50 / p95 / p99); ratio = cold p50 / p50")
    for name, base, run, hit in rows:
        b = statistics.median(base)
        print(f"  {name:9} cold {b:7.1f}   run only {pct(run, 50):6.2f} / {pct(run, 95):6.2f} / "
              f"{pct(run, 99):6.2f} ({b / pct(run, 50):5.1f}x)   pool hit create+run+close "
              f"{pct(hit, 50):6.2f} / {pct(hit, 95):6.2f} ({b / pct(hit, 50):5.1f}x)")
    print(f"stateless throughput (create+run+close, pool {a.pool} refilling): {rate:.0f} runs/s")
    if pss:
        print(f"PSS per idle pooled nano sandbox (init + worker): mean {statistics.mean(pss):.2f} MB "
              f"over {len(pss)}")
    best = max(statistics.median(b) / pct(r, 50) for _, b, r, _ in rows)
    print(f"GOAL run p50 >= 30x cold: best {best:.1f}x -> {'PASS' if best >= 30 else 'MISS'}")
    print(f"GOAL >= 100 runs/s: {rate:.0f} -> {'PASS' if rate >= 100 else 'MISS'}")
    if pss:
        m = statistics.mean(pss)
        print(f"GOAL <= 3 MB PSS per idle worker: {m:.2f} -> {'PASS' if m <= 3 else 'MISS'}")
    print("# reproduce: cd " + shlex.quote(str(ROOT)) + " && /usr/bin/python3 bench/bench_nano.py "
          + " ".join(shlex.quote(x) for x in sys.argv[1:]))


if __name__ == "__main__":
    main()

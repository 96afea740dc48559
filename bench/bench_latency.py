#!/usr/bin/python3
"""Latency benchmark: agentbox vs cold `python3 -c`, measured in the same run.

Workloads: `print(1)` and the seed's pandas describe() cell, in the heavy tier
(Sandbox(tier="heavy"); bench_nano.py measures nano, routing and promotion).

Baselines (each a fresh process, like running the code without agentbox):
  cold        /usr/bin/python3 -c CODE

Agentbox, from one SDK process after warm-up:
  pool hit    Sandbox() + run(CODE) + close() with a ready pooled sandbox (the
              benchmark waits until the pools are full and quiet before every
              sample, and checks that create said pooled=true)
  pool miss   the same against a second daemon started with --pool 0
              --pool-max 0 (a pool that cannot grow on demand either), so
              every create forks a sandbox from the zygote on demand
  run only    run(CODE) on one warm, already created sandbox
  burst       back-to-back Sandbox()+run+close on the pool-2 daemon without
              waiting for the refill (a mix of hits and misses; the pooled
              count is reported; each miss also grows the adaptive pool, up
              to --pool-max)
and, separately, the first result of a brand-new SDK process
  new SDK proc   python3 -c "from agentbox import Sandbox; print(Sandbox().run('print(1)').stdout)"
                 (tier auto: print(1) runs in nano)
                 (starts its own private daemon; time to the first stdout line and to exit)

Samples of the different kinds are interleaved round by round, and every
sample starts with the private daemon's pools full and quiet and the pool-miss
daemon quiet, so that background load drifts alike over all of them. "Full
and quiet" (benchlib.PoolProbe, read from /proc: daemon.info does not report
how many pooled sandboxes are ready) means at least the configured target of
idle sandboxes per tier (an adaptive pool may hold more) and no sandbox
starting or being torn down (sandbox.close replies before teardown is over),
on two looks in a row. Ratios are cold p50 / p50.
This benchmark reports; it never fails on a missed goal.
"""

import argparse
import os
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

from benchlib import PoolProbe, SocketDaemon, pct

ROOT = Path(__file__).resolve().parents[1]
PY = "/usr/bin/python3"
PRINT1 = "print(1)"
PANDAS = 'import pandas as pd; df = pd.DataFrame({"A": [1, 2, 3]}); print(df.describe())'
CODES = {"print(1)": PRINT1, "pandas": PANDAS}
GOAL_HIT_VS_COLD_PANDAS = 20.0
SUBPROC_TIMEOUT = 120.0
POOL_WAIT_TIMEOUT = 120.0


def check_output(label, out, code):
    want = "1" if code == PRINT1 else "max"
    if want not in out:
        raise RuntimeError(f"{label}: unexpected output {out[-300:]!r}")


# ---------------------------------------------------------------- cold baselines
def cold_once(code):
    t0 = time.perf_counter()
    p = subprocess.run([PY, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=SUBPROC_TIMEOUT, text=True)
    dt = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        raise RuntimeError(f"cold {code!r} failed ({p.returncode}): {p.stderr[-500:]}")
    check_output("cold", p.stdout, code)
    return dt


# ---------------------------------------------------------------- daemons
def pool_probe(info, targets=True):
    """A PoolProbe for the daemon that daemon.info result info describes; with
    targets False it waits only for quiet (no sandbox starting or closing)."""
    pools = info.get("pool") or {}
    return PoolProbe(info["pid"], {t: p.get("target", 0) for t, p in pools.items()}
                     if targets else {})


# ---------------------------------------------------------------- new SDK process
def new_sdk_process_once(build, home):
    code = ("import sys; sys.path.insert(0, %r); from agentbox import Sandbox; "
            "print(Sandbox().run('print(1)').stdout, end='', flush=True)" % str(ROOT / "python"))
    env = dict(os.environ, AGENTBOX_BIN=str(build), AGENTBOX_HOME=str(home))
    t0 = time.perf_counter()
    p = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env, close_fds=True)
    try:
        # Reading stdout's first line gives the time to the first result,
        # before the atexit handler stops the private daemon.
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)
        first = None
        buf = b""
        deadline = time.monotonic() + SUBPROC_TIMEOUT
        while first is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(code, SUBPROC_TIMEOUT)
            if not sel.select(timeout=left):
                continue
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            if b"\n" in buf:
                first = (time.perf_counter() - t0) * 1000
        sel.close()
        _, err = p.communicate(timeout=SUBPROC_TIMEOUT)
        total = (time.perf_counter() - t0) * 1000
    except subprocess.TimeoutExpired:
        p.kill()  # our own child, by pid; its private daemon exits when its stdin closes
        p.wait()
        raise RuntimeError("new SDK process timed out")
    if p.returncode != 0 or first is None or buf.strip() != b"1":
        raise RuntimeError(f"new SDK process failed ({p.returncode}): out={buf!r} "
                           f"err={err.decode(errors='replace')[-800:]}")
    return first, total


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=str(ROOT / "build"), help="build directory (agentboxd)")
    ap.add_argument("-n", type=int, default=None,
                    help="samples per measurement (default 15, --quick 3)")
    ap.add_argument("--procs", type=int, default=None,
                    help="new-SDK-process samples (default 5, --quick 1)")
    ap.add_argument("--quick", action="store_true", help="fast smoke run")
    args = ap.parse_args()
    n = args.n or (3 if args.quick else 15)
    nprocs = args.procs if args.procs is not None else (1 if args.quick else 5)
    warm = 1 if args.quick else 2
    build = Path(args.build).resolve()
    if not (build / "agentboxd").is_file():
        sys.exit(f"bench_latency: {build}/agentboxd not found (run make)")

    repro = "cd %s && %s" % (shlex.quote(str(ROOT)), shlex.join(
        [PY, "bench/bench_latency.py", "--build", str(build), "-n", str(n),
         "--procs", str(nprocs)] + (["--quick"] if args.quick else [])))
    print(f"# host: {os.cpu_count()} cpus, loadavg at start {os.getloadavg()[0]:.2f}")
    print(f"# samples: n={n} per measurement (+{warm} warm-up), new-SDK-process n={nprocs}")

    tmp = Path(tempfile.mkdtemp(prefix="agentbox-bench-lat-"))
    os.environ["AGENTBOX_BIN"] = str(build)
    os.environ["AGENTBOX_HOME"] = str(tmp / "private-home")
    (tmp / "private-home").mkdir()
    sys.path.insert(0, str(ROOT / "python"))
    import agentbox
    from agentbox import Sandbox, daemon_info
    from agentbox import _transport

    miss_daemon = None
    runbox = None
    res = {}  # name -> list of ms
    parts = {"create": {}, "run": {}, "close": {}}  # phase -> name -> list of ms
    first_result = []  # new SDK process: ms to the first stdout line
    exec_ms = {}  # name -> daemon-reported duration_ms
    pooled_flags = {}
    try:
        # The private daemon (default pools), and a capture of create results
        # so that each "hit" sample can be checked to really be pooled (and
        # each "miss" sample not).
        last_create = [None]

        def capture(conn):
            orig_call = conn.call

            def capturing_call(method, params, **kw):
                r = orig_call(method, params, **kw)
                if method == "sandbox.create":
                    last_create[0] = r
                return r
            conn.call = capturing_call
        capture(_transport.connection(None))
        info = daemon_info()
        print(f"# private daemon pid {info.get('pid')}, pool {info.get('pool')}, "
              f"audit {info.get('audit')} ({info.get('audit_mode')}), "
              f"degraded {info.get('degraded')}")
        probe = pool_probe(info)
        held = {}  # sandboxes of ours that the probe sees as idle: not the pool's

        miss_daemon = SocketDaemon(build, tmp / "miss-home", 0, "--pool-max", "0")
        minfo = daemon_info(miss_daemon.sock)
        print(f"# pool-miss daemon pid {miss_daemon.pid} (--socket, --pool 0 --pool-max 0), "
              f"pool {minfo.get('pool')}")
        miss_probe = pool_probe(minfo, targets=False)
        capture(_transport.connection(miss_daemon.sock))
        waits = []

        def wait_pool_full():
            t0 = time.perf_counter()
            probe.wait(held, timeout=POOL_WAIT_TIMEOUT)
            miss_probe.wait(timeout=POOL_WAIT_TIMEOUT)
            waits.append((time.perf_counter() - t0) * 1000)

        wait_pool_full()
        runbox = Sandbox(tier="heavy")
        held["heavy"] = 1

        def sample_cycle(kind, key, code, url=None):
            """Sandbox() + run + close; returns (total, create, run, close, exec, pooled)."""
            last_create[0] = None
            t0 = time.perf_counter()
            b = Sandbox(tier="heavy", url=url)
            t1 = time.perf_counter()
            pooled = (last_create[0] or {}).get("pooled")
            try:
                t2 = time.perf_counter()
                r = b.run(code)
                t3 = time.perf_counter()
            finally:
                b.close()
            t4 = time.perf_counter()
            if not r.ok:
                raise RuntimeError(f"{kind} {key}: run failed: {r!r} {r.stderr[-500:]}")
            check_output(kind, r.stdout, code)
            ms = 1000.0
            return ((t4 - t0) * ms, (t1 - t0) * ms, (t3 - t2) * ms, (t4 - t3) * ms,
                    r.duration_ms, pooled)

        def record_sample(name, total, create=None, run=None, close=None, ex=None):
            res.setdefault(name, []).append(total)
            for d, v in ((parts["create"], create), (parts["run"], run),
                         (parts["close"], close), (exec_ms, ex)):
                if v is not None:
                    d.setdefault(name, []).append(v)

        def one(kind, key, code, record):
            wait_pool_full()
            name = f"{kind} {key}"
            if kind == "cold":
                t = cold_once(code)
                if record:
                    record_sample(name, t)
            elif kind in ("pool hit", "pool miss"):
                url = miss_daemon.sock if kind == "pool miss" else None
                total, c, r, cl, ex, pooled = sample_cycle(kind, key, code, url)
                if record:
                    record_sample(name, total, c, r, cl, ex)
                    pooled_flags.setdefault(name, []).append(bool(pooled))
            elif kind == "run only":
                t0 = time.perf_counter()
                r = runbox.run(code)
                total = (time.perf_counter() - t0) * 1000
                if not r.ok:
                    raise RuntimeError(f"run only {key}: {r!r}")
                check_output(kind, r.stdout, code)
                if record:
                    record_sample(name, total, run=total, ex=r.duration_ms)
            else:
                raise AssertionError(kind)

        kinds = ["cold", "pool hit", "pool miss", "run only"]
        for rnd in range(warm + n):
            record = rnd >= warm
            for kind in kinds:
                for key, code in CODES.items():
                    one(kind, key, code, record)
            print(f"# round {rnd + 1}/{warm + n} done{' (warm-up)' if not record else ''}",
                  file=sys.stderr)

        # Burst: back-to-back creations on the pool-2 daemon, no refill wait.
        wait_pool_full()
        burst_pooled = []
        for _ in range(n):
            total, c, r, cl, ex, pooled = sample_cycle("burst", "print(1)", PRINT1)
            burst_pooled.append(bool(pooled))
            record_sample("burst print(1)", total, c, r, cl, ex)
        runbox.close()
        runbox = None
        held.clear()

        # A brand-new SDK process: first result, each with a fresh home.
        wait_pool_full()
        for i in range(nprocs + (1 if nprocs else 0)):
            home = tmp / f"proc-home-{i}"
            home.mkdir()
            first, total = new_sdk_process_once(build, home)
            if i == 0:
                continue  # warm-up
            res.setdefault("new SDK proc print(1)", []).append(total)
            first_result.append(first)
    finally:
        if runbox is not None:
            try:
                runbox.close()
            except Exception:
                pass
        try:
            agentbox.shutdown_daemon()
        except Exception as e:
            print(f"warning: stopping the private daemon: {e}", file=sys.stderr)
        if miss_daemon is not None:
            miss_daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------------------------------------ report
    base = {k: statistics.median(res[f"cold {k}"]) for k in CODES}
    def med(d, name):
        xs = d.get(name)
        return f"{statistics.median(xs):8.1f}" if xs else f"{'':>8}"

    print()
    print("Latency in ms, wall clock in the client. 'total' = Sandbox() + run() + close() "
          "(one cold process for 'cold');")
    print("create/run/close/exec are p50 of each phase (exec = duration_ms reported by the "
          "daemon). ratio = cold p50 / total p50:")
    print(">1 means agentbox is faster; 'same' compares with the cold run of the same code.")
    hdr = (f"{'measurement':<22} {'n':>3} {'p50':>8} {'p95':>8} {'create':>8} {'run':>8} "
           f"{'close':>8} {'exec':>8} {'ratio':>8} {'ratio vs':>8}")
    print(hdr)
    print(f"{'':<22} {'':>3} {'total':>8} {'total':>8} {'p50':>8} {'p50':>8} {'p50':>8} "
          f"{'p50':>8} {'same':>8} {'c.pandas':>8}")
    print("-" * len(hdr))
    order = [f"{k} {c}" for k in ("cold", "pool hit", "pool miss", "run only") for c in CODES]
    order += ["burst print(1)", "new SDK proc print(1)"]
    for name in order:
        xs = res.get(name)
        if not xs:
            continue
        key = "pandas" if name.endswith("pandas") else "print(1)"
        p50 = statistics.median(xs)
        print(f"{name:<22} {len(xs):>3} {p50:8.1f} {pct(xs, 95):8.1f} "
              f"{med(parts['create'], name)} {med(parts['run'], name)} "
              f"{med(parts['close'], name)} {med(exec_ms, name)} "
              f"{base[key] / p50:7.2f}x {base['pandas'] / p50:7.2f}x")
    print()
    for name, fl in pooled_flags.items():
        print(f"{name}: {sum(fl)}/{len(fl)} creates came from the pool (create result "
              f"'pooled')")
    print(f"burst print(1): {sum(burst_pooled)}/{len(burst_pooled)} creates came from the pool")
    print(f"# waits for full and quiet pools: {len(waits)}, p50 {statistics.median(waits):.0f} ms, "
          f"max {max(waits):.0f} ms")
    if first_result:
        first = statistics.median(first_result)
        tot = statistics.median(res["new SDK proc print(1)"])
        print(f"new SDK process: first result p50 {first:.1f} ms "
              f"({first / base['print(1)']:.1f}x cold python3 -c print(1) = "
              f"{base['print(1)']:.1f} ms; {first / base['pandas']:.2f}x cold pandas); "
              f"process exit p50 {tot:.1f} ms")
    print()
    hit = statistics.median(res["pool hit pandas"])
    r = base["pandas"] / hit
    print(f"GOAL pool hit (pandas cell, total incl. close) >= {GOAL_HIT_VS_COLD_PANDAS:g}x faster "
          f"than cold pandas: {r:.1f}x -> {'PASS' if r >= GOAL_HIT_VS_COLD_PANDAS else 'MISS'}")
    hit_to_result = statistics.median(
        [c + x for c, x in zip(parts["create"]["pool hit pandas"], parts["run"]["pool hit pandas"])])
    print(f"     pool hit (pandas cell) to result, without close(): "
          f"{base['pandas'] / hit_to_result:.1f}x (p50 {hit_to_result:.1f} ms)")
    hit1 = statistics.median(res["pool hit print(1)"])
    print(f"     pool hit (print(1)) vs cold pandas: {base['pandas'] / hit1:.1f}x")
    miss = statistics.median(res["pool miss pandas"])
    print(f"     pool miss (pandas cell) vs cold pandas: {base['pandas'] / miss:.1f}x "
          f"(reported, no goal)")
    print(f"# loadavg at end {os.getloadavg()[0]:.2f}")
    print(f"# reproduce: {repro}")


if __name__ == "__main__":
    main()

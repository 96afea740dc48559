#!/usr/bin/python3
"""Nano tier and router benchmark, against cold `/usr/bin/python3 -c` in the same run.

  run only      run(CODE) on one warm session (print(1); a JSON round trip),
                p50/p95/p99: a nano session, and an auto session (the router's
                cost; the cells are stdlib, so they stay in nano). With the audit
                log on (the product default), measured once the new daemon's log
                has warmed up (its write-ahead file stopped growing; the first
                runs of a new daemon are shown apart), and for comparison on a
                second daemon started with --no-audit (the price of the durable
                record)
  stateless     the one-shot `run` method (tier auto, print(1)): latency with a
                ready pooled sandbox (the pool full and quiet before each sample),
                and sustained throughput for --seconds with the pool refilling
                (runs/s on this machine's cores, one client; the pool adapts:
                creates that find it empty grow it, up to --nano-pool-max);
                create + run + close (tier nano) for comparison, with how many
                of its creates came from the pool
  promotion     an auto session with three nano steps, then a pandas cell that
                moves it to heavy: the promoted run's wall time and its
                promotion.duration_ms, against the same cell after the same steps
                in a heavy session (daemon with a heavy pool of 1, refilled
                between samples)
  first result  a brand-new SDK process, `python3 -c 'import agentbox;
                print(agentbox.run("print(1)").stdout, end="")'`, whose private
                daemon (zygotes, pools) starts from scratch in a fresh
                $AGENTBOX_HOME: time to the "1" on its stdout, and to its exit
  memory        PSS of an idle pooled nano sandbox: the worker (the executor)
                and its init, separately (mean over the pool), with the pool of
                --pool and with a larger one (--mem-pool): PSS divides the
                zygote's shared pages among all processes that map them, so it
                falls as the pool grows, towards the worker's private dirty pages

Goals (issue 4), judged with the audit log on: run-only p50 >= 30x faster than
cold; >= 100 stateless runs/s (the `run` method); <= 3 MB PSS per idle pooled
worker. The promotion and first-result figures are reported without a goal.
Reports; never fails on a missed goal (only on a broken setup). Apart from the
first-result figure the SDK is bypassed (a minimal JSON-RPC client over the
daemon's socket) so that the numbers are the daemon's.
"""
import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import Client, PoolProbe, SocketDaemon

ROOT = Path(__file__).resolve().parents[1]
PY = "/usr/bin/python3"
# name: (code, expected stdout)
CODES = {
    "print(1)": ("print(1)", "1\n"),
    "json": ("import json; print(json.loads(json.dumps({'a': [1, 2, {'b': None}]}))['a'][2])",
             "{'b': None}\n"),
}
STEPS = ["x = 1", "y = x + 1", "import json; s = json.dumps(y)"]
PANDAS = "import pandas as pd; print(len(pd.DataFrame({'a': [x, y]})))"
SDK_CODE = 'import agentbox; print(agentbox.run("print(1)").stdout, end="")'
CALL_TIMEOUT_S = 120  # a hung call fails the benchmark instead of hanging it
FAILED = []  # calls of the throughput loops that failed (see stateless)


def pct(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, int(round((len(s) - 1) * p / 100)))]


def p3(xs):
    return f"{pct(xs, 50):6.2f} / {pct(xs, 95):6.2f} / {pct(xs, 99):6.2f}"


def cold(code, n):
    xs = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([PY, "-c", code], capture_output=True, check=True)
        xs.append((time.perf_counter() - t) * 1000)
    return xs


def connect(d):
    c = Client(d.sock)
    c.s.settimeout(CALL_TIMEOUT_S)
    return c


def check(r, stdout, tier=None, what=""):
    """A benchmark of failing runs measures nothing: stop on a wrong result."""
    if r.get("status") != "ok" or r.get("stdout") != stdout or (tier and r.get("tier") != tier):
        raise RuntimeError(f"{what}: unexpected result (wanted stdout {stdout!r}"
                           f"{', tier ' + tier if tier else ''}): "
                           + repr({k: r.get(k) for k in ("status", "stdout", "stderr", "error",
                                                          "tier", "route_reason")}))
    return r


def timed(c, method, **params):
    t = time.perf_counter()
    r = c.call(method, **params)
    return (time.perf_counter() - t) * 1000, r


WAITS = []  # ms of each wait for full and quiet pools (see Pool)


class Pool:
    """Waits until a daemon's pools are full and quiet: at least the
    configured target of idle sandboxes per tier (a pool that grew under
    demand may hold more) and none starting or being torn down, on two looks
    in a row. daemon.info does not say how many pooled sandboxes are ready,
    so this is read from /proc (benchlib.PoolProbe; we started the daemon)."""

    def __init__(self, d, **targets):
        self.probe = PoolProbe(d.pid, targets)

    def wait(self, timeout=90.0):
        WAITS.append(self.probe.wait(timeout=timeout))


def smaps_kb(pid, field="Pss"):
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid):
    return smaps_kb(pid)


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


def nano_pss(d):
    """(init MB, worker MB, worker private dirty MB) per idle pooled nano
    sandbox: the inits are the daemon's children in a pid namespace of their
    own (the zygotes share the daemon's) that were forked by the nano zygote;
    the worker is the init's child."""
    ns = os.readlink(f"/proc/{d.pid}/ns/pid")
    out = []
    for p in children(d.pid):
        try:
            if (os.readlink(f"/proc/{p}/ns/pid") == ns
                    or b"--tier\0nano" not in open(f"/proc/{p}/cmdline", "rb").read()):
                continue
        except OSError:
            continue
        workers = children(p)
        if workers:
            out.append((pss_kb(p) / 1024, sum(pss_kb(q) for q in workers) / 1024,
                        sum(smaps_kb(q, "Private_Dirty") for q in workers) / 1024))
    return out


def warm_runs(c, tier, code, want, n):
    """Run-only latency on one warm session of `tier`."""
    s = c.call("sandbox.create", tier=tier)["sandbox"]
    check(c.call("sandbox.run", sandbox=s, code=code), want, "nano", f"{tier} warm-up")
    xs = []
    for _ in range(n):
        ms, r = timed(c, "sandbox.run", sandbox=s, code=code)
        check(r, want, "nano", f"{tier} session")
        xs.append(ms)
    c.call("sandbox.close", sandbox=s)
    return xs


def warm_log(c, home, cap=2000):
    """Runs print(1) until the audit log's write-ahead file (SQLite WAL) stops
    growing: while it grows, each commit's fsync also extends the file, which
    makes the first few hundred runs of a new daemon slower; later the file is
    reused (steady state). Returns the number of runs it took."""
    wal = Path(home) / "audit.db-wal"
    s = c.call("sandbox.create", tier="nano")["sandbox"]
    runs, last = 0, None
    while runs < cap:
        for _ in range(50):
            check(c.call("sandbox.run", sandbox=s, code="print(1)"), "1\n", "nano", "warm-up")
        runs += 50
        size = wal.stat().st_size if wal.exists() else 0
        if size == last:
            break
        last = size
    c.call("sandbox.close", sandbox=s)
    return runs


def run_only(d, n):
    """{code name: (nano session ms, auto session ms)} on daemon d."""
    c = connect(d)
    out = {}
    for name, (code, want) in CODES.items():
        out[name] = (warm_runs(c, "nano", code, want, n), warm_runs(c, "auto", code, want, n))
    c.close()
    return out


def stateless(d, pool, n, seconds):
    c = connect(d)
    hit_run, hit_crc = [], []
    crc_pooled = []  # pooled flag of each sustained create+run+close
    for _ in range(n):
        pool.wait()
        ms, r = timed(c, "run", code="print(1)", tier="auto")
        hit_run.append(ms)
        check(r, "1\n", "nano", "run (tier auto), pool hit")
    for _ in range(max(5, n // 5)):
        pool.wait()
        t = time.perf_counter()
        cr = c.call("sandbox.create", tier="nano")
        s = cr["sandbox"]
        r = c.call("sandbox.run", sandbox=s, code="print(1)")
        c.call("sandbox.close", sandbox=s)
        hit_crc.append((time.perf_counter() - t) * 1000)
        check(r, "1\n", "nano", "create+run+close, pool hit")
        if not cr.get("pooled"):
            raise RuntimeError(f"create+run+close: the pool was full, yet create said {cr}")

    def sustained(one, what):
        """(runs/s, runs/s without the time of failed calls). A sandbox
        started on demand can get stuck like a pooled one (see Pool): the
        call then fails after the daemon's 60 s start-up timeout. That is
        counted against the rate and noted, not fatal."""
        pool.wait()
        count, lost, t0 = 0, 0.0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            t = time.perf_counter()
            try:
                one()
                count += 1
            except RuntimeError as e:
                if "did not become ready in time" not in str(e):
                    raise
                ms = (time.perf_counter() - t) * 1000
                lost += ms / 1000
                FAILED.append(f"{what}: a call failed after {ms:.0f} ms: {e}")
        elapsed = time.perf_counter() - t0
        return count / elapsed, count / max(elapsed - lost, 1e-9)

    def one_run():
        check(c.call("run", code="print(1)", tier="auto"), "1\n", "nano", "run throughput")

    def one_crc():
        cr = c.call("sandbox.create", tier="nano")
        crc_pooled.append(bool(cr.get("pooled")))
        s = cr["sandbox"]
        check(c.call("sandbox.run", sandbox=s, code="print(1)"), "1\n", "nano",
              "create+run+close throughput")
        c.call("sandbox.close", sandbox=s)

    rate_run = sustained(one_run, "run throughput")
    rate_crc = sustained(one_crc, "create+run+close throughput")
    c.close()
    return hit_run, hit_crc, rate_run, rate_crc, crc_pooled


def promotion(d, k):
    c = connect(d)
    pool = Pool(d, heavy=1, nano=1)
    pool.wait()
    wall, prom, heavy, prep = [], [], [], []
    for _ in range(k):
        pool.wait()
        s = c.call("sandbox.create", tier="auto")
        if s["tier"] != "nano":
            raise RuntimeError(f"an auto session started in {s['tier']}, not nano: {s}")
        for code in STEPS:
            check(c.call("sandbox.run", sandbox=s["sandbox"], code=code), "", "nano",
                  "auto session step")
        ms, r = timed(c, "sandbox.run", sandbox=s["sandbox"], code=PANDAS)
        check(r, "2\n", "heavy", "promoted pandas run")
        p = r.get("promotion") or {}
        if not r.get("promoted") or p.get("replayed_steps") != ["ok"] * len(STEPS):
            raise RuntimeError(f"the pandas run was not promoted as expected: {r}")
        wall.append(ms)
        prom.append(p["duration_ms"])
        c.call("sandbox.close", sandbox=s["sandbox"])
    for _ in range(k):
        pool.wait()
        t = time.perf_counter()
        s = c.call("sandbox.create", tier="heavy")["sandbox"]
        for code in STEPS:
            check(c.call("sandbox.run", sandbox=s, code=code), "", "heavy", "heavy session step")
        prep.append((time.perf_counter() - t) * 1000)
        ms, r = timed(c, "sandbox.run", sandbox=s, code=PANDAS)
        check(r, "2\n", "heavy", "heavy pandas run")
        heavy.append(ms)
        c.call("sandbox.close", sandbox=s)
    c.close()
    return wall, prom, heavy, prep


def first_result(build, tmp, k):
    """(ms to "1" on stdout, ms to exit) of brand-new SDK processes."""
    first, total = [], []
    for i in range(k):
        home = Path(tmp) / f"sdk-home-{i}"
        home.mkdir()
        env = dict(os.environ, AGENTBOX_BIN=str(build), PYTHONPATH=str(ROOT / "python"),
                   AGENTBOX_HOME=str(home), PYTHONUNBUFFERED="1")
        t = time.perf_counter()
        p = subprocess.Popen([PY, "-c", SDK_CODE], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        out = p.stdout.read(1)  # unbuffered: arrives as soon as the result is printed
        t1 = time.perf_counter()
        rest, err = p.communicate(timeout=120)
        t2 = time.perf_counter()
        out += rest
        if p.returncode != 0 or out != b"1":
            raise RuntimeError(f"the SDK process printed {out!r}, exit {p.returncode}: "
                               f"{err.decode(errors='replace')[-2000:]}")
        first.append((t1 - t) * 1000)
        total.append((t2 - t) * 1000)
    return first, total


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("-n", type=int, default=50, help="samples per latency figure (default 50)")
    ap.add_argument("--seconds", type=float, default=5.0,
                    help="length of each throughput measurement (default 5)")
    ap.add_argument("--pool", type=int, default=4, help="nano pool size (default 4)")
    ap.add_argument("--mem-pool", type=int, default=16,
                    help="a second, larger nano pool whose memory is measured too (default 16; "
                         "0 skips it)")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    k = 5
    if a.quick:
        a.n, a.seconds, k = 10, 1.0, 2
    build = Path(a.build).resolve()
    base = {name: cold(code, max(5, a.n // 5)) for name, (code, _) in CODES.items()}
    with tempfile.TemporaryDirectory(prefix="agentbox-bench-nano-") as tmp:
        # audit on (the product default): memory, run only, stateless
        d = SocketDaemon(build, Path(tmp) / "audit-on", 0, "--nano-pool", str(a.pool))
        try:
            c = connect(d)
            pool = Pool(d, nano=a.pool)
            pool.wait()
            pss = {a.pool: nano_pss(d)}
            fresh_on = warm_runs(c, "nano", "print(1)", "1\n", a.n)
            warmup = warm_log(c, d.home)
            on = run_only(d, a.n)
            hit_run, hit_crc, rate_run, rate_crc, crc_pooled = stateless(d, pool, a.n,
                                                                         a.seconds)
            c.close()
        finally:
            d.stop()
        # memory with a larger pool: PSS splits the zygote's shared pages
        # among every process that maps them, so it falls as the pool grows
        if a.mem_pool > 0 and not a.quick:
            d = SocketDaemon(build, Path(tmp) / "mem", 0, "--nano-pool", str(a.mem_pool))
            try:
                c = connect(d)
                Pool(d, nano=a.mem_pool).wait()
                time.sleep(0.5)
                pss[a.mem_pool] = nano_pss(d)
                c.close()
            finally:
                d.stop()
        # audit off, for comparison
        d = SocketDaemon(build, Path(tmp) / "audit-off", 0, "--nano-pool", str(a.pool),
                         "--no-audit")
        try:
            c = connect(d)
            if c.call("daemon.info")["audit"] != "disabled":
                raise RuntimeError("the --no-audit daemon reports its audit log as not disabled")
            pool = Pool(d, nano=a.pool)
            pool.wait()
            fresh_off = warm_runs(c, "nano", "print(1)", "1\n", a.n)
            off = run_only(d, a.n)
            c.close()
        finally:
            d.stop()
        # promotion: a daemon with a heavy pool
        d = SocketDaemon(build, Path(tmp) / "promotion", 1, "--nano-pool", "1")
        try:
            wall, prom, heavy, prep = promotion(d, k)
        finally:
            d.stop()
        # a brand-new SDK process, no daemon of ours running
        first, total = first_result(build, tmp, k)

    b1 = statistics.median(base["print(1)"])
    print("cold /usr/bin/python3 -c, ms p50: "
          + ", ".join(f"{name} {statistics.median(xs):.1f}" for name, xs in base.items()))
    print("run only on a warm session, ms (p50 / p95 / p99); ratio = cold p50 / run p50")
    for label, rows, fresh, new in (
            (f"audit on (the product default), after {warmup} runs that warm the audit log up",
             on, fresh_on, " (a new audit log)"),
            ("audit off (for comparison: the price of the durable audit record)", off, fresh_off,
             "")):
        print(f"  {label}")
        for name, (nano, auto) in rows.items():
            bp = statistics.median(base[name])
            print(f"    {name:9} nano session {p3(nano)} ({bp / pct(nano, 50):5.1f}x)   "
                  f"auto session {p3(auto)} ({bp / pct(auto, 50):5.1f}x)")
        print(f"    (info) print(1), nano session, the first {a.n} runs of a new daemon"
              f"{new}: {p3(fresh)} "
              f"({b1 / pct(fresh, 50):5.1f}x)")
    print(f"stateless print(1), nano pool {a.pool}, ms (p50 / p95 / p99); ratio vs cold print(1)")
    print(f"  run (tier auto), pool hit         {p3(hit_run)} ({b1 / pct(hit_run, 50):5.1f}x)")
    print(f"  create+run+close (nano), pool hit {pct(hit_crc, 50):6.2f} / {pct(hit_crc, 95):6.2f}"
          f" /    -   ({b1 / pct(hit_crc, 50):5.1f}x)")
    print(f"stateless throughput, nano pool {a.pool} (adaptive: grows on misses up to "
          f"--nano-pool-max) refilling, one client, {a.seconds:g} s each: "
          f"run (tier auto) {rate_run[0]:.0f} runs/s; create+run+close {rate_crc[0]:.0f} runs/s "
          f"(for comparison; {sum(crc_pooled)}/{len(crc_pooled)} of its creates pooled)")
    if FAILED:
        print(f"  (info) without the time of the failed calls (below): run {rate_run[1]:.0f}, "
              f"create+run+close {rate_crc[1]:.0f} runs/s")
    print(f"promotion (heavy pool 1, a ready heavy sandbox each time), ms p50 of {k}:")
    print(f"  auto session, 3 nano steps, then pandas: promoted run {pct(wall, 50):7.1f} "
          f"(of which promotion.duration_ms {pct(prom, 50):7.1f})")
    print(f"  heavy session, same 3 steps, then pandas: run       {pct(heavy, 50):7.1f} "
          f"(for scale: its create + 3 steps took {pct(prep, 50):7.1f})")
    print(f"first result from a brand-new SDK process (private daemon started from scratch), "
          f"ms p50 of {k}: {pct(first, 50):.0f} to the result ({pct(first, 50) / b1:.1f} x cold "
          f"python3 -c print(1), {b1:.1f}), {pct(total, 50):.0f} to its exit")
    mem = {}  # pool size -> (init, worker, worker private dirty), MB
    for size, rows in sorted(pss.items()):
        if rows:
            mem[size] = tuple(statistics.mean(r[i] for r in rows) for i in range(3))
            print(f"PSS per idle pooled nano sandbox, pool of {size}, mean over {len(rows)}: "
                  f"worker {mem[size][1]:.2f} MB (private dirty {mem[size][2]:.2f}), "
                  f"init {mem[size][0]:.2f} MB")
    for s in FAILED:
        print(f"note: {s}")
    if WAITS:
        print(f"# waits for full and quiet pools: {len(WAITS)}, p50 {pct(WAITS, 50):.0f} ms, "
              f"max {max(WAITS):.0f} ms")
    ratios = {name: statistics.median(base[name]) / pct(nano, 50)
              for name, (nano, _) in on.items()}
    best_off = max(statistics.median(base[name]) / pct(nano, 50)
                   for name, (nano, _) in off.items())
    worst = min(ratios.values())
    print("GOAL run p50 >= 30x cold (audit on, warmed-up log, nano session): "
          + ", ".join(f"{name} {r:.1f}x" for name, r in ratios.items())
          + f" -> {'PASS' if worst >= 30 else 'MISS'}")
    print(f"  (info) audit on, the first {a.n} runs of a new daemon: print(1) "
          f"{b1 / pct(fresh_on, 50):.1f}x")
    print(f"  (info) audit off: best {best_off:.1f}x")
    print(f"GOAL >= 100 stateless runs/s (run method): {rate_run[0]:.0f} -> "
          f"{'PASS' if rate_run[0] >= 100 else 'MISS'}")
    if mem:
        print("GOAL <= 3 MB PSS per idle pooled worker: "
              + ", ".join(f"pool {n}: {m[1]:.2f} -> {'PASS' if m[1] <= 3 else 'MISS'} "
                          f"(init + worker {m[0] + m[1]:.2f})" for n, m in sorted(mem.items())))
    else:
        print("GOAL <= 3 MB PSS per idle pooled worker: no pooled nano worker found -> MISS")
    print("# reproduce: cd " + shlex.quote(str(ROOT)) + " && /usr/bin/python3 bench/bench_nano.py "
          + " ".join(shlex.quote(x) for x in sys.argv[1:]))


if __name__ == "__main__":
    main()

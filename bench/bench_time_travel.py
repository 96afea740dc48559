#!/usr/bin/python3
"""Time-travel benchmark (issue 12): what a snapshot adds to a warm heavy run,
how long a rewind takes, and how much memory a snapshot holds.

Every run of a heavy session ends with a snapshot of the state the next step
starts in: the executor forks, the parent parks (copy-on-write), the child
goes on. The daemon asks for it right after the result, so it overlaps the
client's think time; back to back, the next run waits for the fork.

  1. snapshot cost  the same runs in two warm heavy sessions of one daemon:
                    "snap" (the default: every step snapshotted) and "base",
                    a session that keeps a thread alive (a daemon thread
                    blocked on an Event: it takes no CPU), so that the executor
                    refuses every snapshot (it does not fork with threads) and
                    the run takes the same path without the fork. Two cells,
                    trivial (x = 1) and data (a groupby over a 10k-row frame
                    made in the session's setup), each back to back (no pause:
                    the fork is on the critical path, the worst case) and with
                    --think ms of sleep between runs (the fork overlaps it).
                    Blocks of --block runs alternate between the two sessions
                    round by round. Wall time of box.run() in the client;
                    ratio = snap / base on p50 and p90.
  1c. copies       the same trivial run back to back in sessions that keep 0,
                    2, 8, 16 and 64 parked copies (snapshots=N): what each live
                    copy adds to the next fork and its faults.
  2. rewind         box.rewind(step) wall time, alternating between two parked
                    states, in a small session and in one holding a 200 MB
                    DataFrame (memory_mb=2048); the daemon's own duration_ms of
                    the rewind; against re-running the steps that led to that
                    state (the sum of their duration_ms from history()) and a
                    fresh sandbox (Sandbox(tier="heavy") + run("x = 1") with
                    the pool full and quiet, close() not counted).
  3. memory         memory_bytes from history() (the private pages that only
                    that parked copy holds): the small session's snapshots,
                    and in the 200 MB session the state before a step that
                    rewrites the whole frame and the state before a step that
                    changes 1% of it. Pages that two parked copies share count
                    in neither's memory_bytes, so the sandbox's whole Pss (read
                    from /proc, every process of its pid namespace) is printed
                    beside it.

Everything runs on a daemon with the audit log durable (the default: each
reply waits for its events' fsync), then again on one started with
--audit-group-ms 5 (the relaxed mode), unless --durable-only.
Reports numbers and ratios; never fails on a missed goal (only on a broken
setup or a wrong result).
"""

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchlib import PoolProbe, SocketDaemon, pct, _children, _pidns, _read

ROOT = Path(__file__).resolve().parents[1]
PY = "/usr/bin/python3"
RELAXED_MS = 5
GOAL_SNAPSHOT_ADDS = 0.10  # a snapshot adds <= 10% to a warm heavy run
GOAL_REWIND_SMALL_MS = 5.0
POOL_WAIT_TIMEOUT = 120.0

THREAD = ("import threading\n_bench_ev = threading.Event()\n"
          "threading.Thread(target=_bench_ev.wait, daemon=True).start()")
SETUP = ("import numpy as np, pandas as pd\n"
         "rng = np.random.default_rng(1)\n"
         "df = pd.DataFrame({'k': rng.integers(0, 100, 10_000), 'v': rng.random(10_000)})")
CELLS = {
    "trivial": "x = 1",
    "data": "df['w'] = df['v'] * 2\ng = df.groupby('k').agg({'v': 'mean', 'w': 'sum'})",
}
SMALL_STEPS = [
    "x = 1",
    "import json, math\ny = [i * i for i in range(1000)]",
    "z = json.dumps(y)\nx += 1",
    "w = {k: math.sqrt(k) for k in range(100)}",
    "x += 1",
]
ROWS = 2_500_000  # x 10 float64 columns = 200 MB
BIG_STEPS = [
    "import numpy as np, pandas as pd",
    f"df = pd.DataFrame(np.random.default_rng(2).random(({ROWS}, 10)))",
    "df *= 2",                                   # rewrites every page of the frame
    f"df.iloc[:{ROWS // 100}] += 1",             # 1% of the rows of every column
    "x = 1",
]


def ms_since(t0):
    return (time.perf_counter() - t0) * 1000


def checked_run(box, code, what):
    r = box.run(code)
    if not r.ok:
        raise RuntimeError(f"{what}: run failed: {r!r} {r.stderr[-500:]}")
    return r


def wait_parked(box, timeout=60.0):
    """Waits until no snapshot of the session is pending; returns history()."""
    deadline = time.monotonic() + timeout
    while True:
        h = box.history()
        states = [s["snapshot"]["memory"] for s in h["steps"]] + [h["current"]["memory"]]
        if "pending" not in states:
            return h
        if time.monotonic() > deadline:
            raise RuntimeError(f"a snapshot stayed pending for {timeout:g} s: {h}")
        time.sleep(0.01)


def snap_counts(h):
    out = {}
    for s in h["steps"]:
        m = s["snapshot"]["memory"]
        out[m] = out.get(m, 0) + 1
    return out


def step_of(h, n):
    return next(s for s in h["steps"] if s["step"] == n)


def stats(xs):
    return statistics.median(xs), pct(xs, 90)


# ------------------------------------------------------------ sandbox Pss from /proc
def sandbox_trees(daemon_pid):
    """{init pid: [pids of its pid namespace's processes]} under the daemon."""
    out = {}
    stack = [(daemon_pid, _pidns(daemon_pid), None)]
    while stack:
        parent, parent_ns, init = stack.pop()
        for p in _children(parent):
            ns = _pidns(p)
            if ns is None:
                continue
            if init is None and ns == parent_ns:
                stack.append((p, ns, None))  # a zygote or a helper
                continue
            root = init if init is not None else p
            out.setdefault(root, []).append(p)
            stack.append((p, ns, root))
    return out


def smaps_kb(pid, keys=("Rss", "Pss", "Private_Clean", "Private_Dirty")):
    out = dict.fromkeys(keys, 0)
    for line in (_read(f"/proc/{pid}/smaps_rollup") or "").splitlines():
        k, _, v = line.partition(":")
        if k in out:
            out[k] = int(v.split()[0])
    return out


def biggest_sandbox_pss(daemon_pid):
    """(Pss MB, Rss MB, processes) of the daemon's sandbox with the most Rss: the
    200 MB session, the only big one while it is measured."""
    best = None
    for init, pids in sandbox_trees(daemon_pid).items():
        m = [smaps_kb(p) for p in pids]
        rss = sum(x["Rss"] for x in m) / 1024
        if best is None or rss > best[1]:
            best = (sum(x["Pss"] for x in m) / 1024, rss, len(pids))
    return best


# ------------------------------------------------------------ 1. snapshot cost
def snapshot_cost(Sandbox, url, rounds, block, think_s, warm):
    """{(mode, cell, kind): [ms]} and the daemon's duration_ms likewise."""
    snap = Sandbox(tier="heavy", url=url)
    base = Sandbox(tier="heavy", url=url)
    wall, exe = {}, {}
    try:
        checked_run(base, THREAD, "base: start the thread")
        checked_run(snap, "import threading", "snap: same import")
        for b in (snap, base):
            checked_run(b, SETUP, "setup")
        modes = [("back-to-back", 0.0), (f"think {think_s * 1000:g} ms", think_s)]
        for rnd in range(warm + rounds):
            record = rnd >= warm
            order = [("snap", snap), ("base", base)]
            if rnd % 2:
                order.reverse()
            for mode, pause in modes:
                for cell, code in CELLS.items():
                    for kind, box in order:
                        for _ in range(block):
                            if pause:
                                time.sleep(pause)
                            t0 = time.perf_counter()
                            r = box.run(code)
                            dt = ms_since(t0)
                            if not r.ok:
                                raise RuntimeError(f"{kind} {cell}: {r!r} {r.stderr[-500:]}")
                            if record:
                                wall.setdefault((mode, cell, kind), []).append(dt)
                                exe.setdefault((mode, cell, kind), []).append(r.duration_ms)
            print(f"#   snapshot cost: round {rnd + 1}/{warm + rounds} done"
                  f"{' (warm-up)' if not record else ''}", file=sys.stderr)
        hs, hb = wait_parked(snap), wait_parked(base)
        hist_ms = []
        for _ in range(5):
            t0 = time.perf_counter()
            snap.history()
            hist_ms.append(ms_since(t0))
        cs, cb = snap_counts(hs), snap_counts(hb)
        why = [s["snapshot"].get("why", "") for s in hb["steps"]
               if s["snapshot"]["memory"] == "refused"]
        if cs.get("refused") or not cb.get("refused") or cb.get("parked", 0) > 1:
            raise RuntimeError(f"the sessions did not behave as planned: snap {cs}, base {cb}")
        if not all("thread" in w for w in why):
            raise RuntimeError(f"base snapshots refused for another reason: {set(why)}")
        # The small session's memory per snapshot (trivial and data cells).
        # memory_bytes of the state before a step: the pages that step (and
        # the later ones) rewrote, so grouped by that step's cell.
        mem = {}
        for s in hs["steps"]:
            if s["snapshot"]["memory"] == "parked" and "memory_bytes" in s["snapshot"]:
                cell = next((c for c, code in CELLS.items() if code == s["code"]), None)
                if cell:
                    mem.setdefault(cell, []).append(s["snapshot"]["memory_bytes"])
    finally:
        snap.close()
        base.close()
    return wall, exe, cs, cb, mem, modes, hist_ms


# ------------------------------------------------------------ 1b. the kernel alone
COW_REF = '''
import os, sys, time, statistics
import numpy as np, pandas as pd
rng = np.random.default_rng(1)
df = pd.DataFrame({'k': rng.integers(0, 100, 10_000), 'v': rng.random(10_000)})
CELLS = __CELLS__
n = int(sys.argv[1])
out = {}
for name, code in CELLS.items():
    c = compile(code, name, 'exec')
    def t():
        t0 = time.perf_counter(); exec(c, globals()); return (time.perf_counter() - t0) * 1000
    for _ in range(20):
        t()
    warm = [t() for _ in range(n)]
    fork, after = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        p = os.fork()
        if p == 0:
            time.sleep(3600)
            os._exit(0)
        fork.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.02)
        after.append(t())
        os.kill(p, 9)
        os.waitpid(p, 0)
    out[name] = (statistics.median(warm), statistics.median(after), statistics.median(fork))
print(repr(out))
'''


def cow_reference(n):
    """The same cells in a plain python3 on the host, no agentbox: warm, and
    the first run after an os.fork() whose other half sleeps (the executor
    parks the parent and goes on in the child; either way the process that
    writes takes the copy-on-write faults). {cell: (warm, after fork, fork) ms}."""
    import ast
    import subprocess
    p = subprocess.run([PY, "-c", COW_REF.replace("__CELLS__", repr(CELLS)), str(n)], capture_output=True,
                       text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"host fork reference failed: {p.stderr[-500:]}")
    return ast.literal_eval(p.stdout.strip())


# ------------------------------------------------------------ 2. rewind
def fresh_sandbox(Sandbox, url, probe, n):
    out = []
    for _ in range(n):
        probe.wait(timeout=POOL_WAIT_TIMEOUT)
        t0 = time.perf_counter()
        b = Sandbox(tier="heavy", url=url)
        try:
            checked_run(b, "x = 1", "fresh sandbox")
            out.append(ms_since(t0))
        finally:
            b.close()
    return out


def rewinds(box, steps, targets, n, check):
    """Runs steps, waits for their snapshots, rewinds n times alternating over
    targets; returns (wall ms, daemon ms, history before the rewinds)."""
    for code in steps:
        checked_run(box, code, "session step")
    h = wait_parked(box)
    for t in targets:
        if not step_of(h, t)["rewindable"]:
            raise RuntimeError(f"step {t} is not rewindable: {step_of(h, t)}")
    wall, dur = [], []
    for i in range(n):
        t = targets[i % len(targets)]
        t0 = time.perf_counter()
        r = box.rewind(t)
        wall.append(ms_since(t0))
        if r.get("restored", {}).get("memory") != "snapshot" or r.get("head") != t - 1:
            raise RuntimeError(f"rewind to {t}: unexpected result {r}")
        dur.append(r["duration_ms"])
    code, want = check
    box.rewind(targets[0])
    v = checked_run(box, code, "check after rewind").value
    if v != want:
        raise RuntimeError(f"state after rewind to {targets[0]}: {code} = {v}, expected {want}")
    return wall, dur, h


def replay_ms(h, target):
    """Daemon-measured time of the steps that led to the state before target."""
    return sum(s["duration_ms"] for s in h["steps"] if s["step"] < target)


# ------------------------------------------------------------ one daemon
BUDGETS = (0, 2, 8, 16, 64)


def budget_sweep(Sandbox, url, n):
    """1c: back-to-back `x = 1` runs (p50 ms) in sessions that keep 0, 2, 8,
    16 and 64 parked copies, each after enough runs to fill its budget."""
    out = {}
    for budget in BUDGETS:
        with Sandbox(tier="heavy", url=url, snapshots=budget, pids=512) as box:
            for _ in range(budget + 5):
                checked_run(box, "x = 1", f"budget {budget}")
            ts = []
            for _ in range(n):
                t0 = time.perf_counter()
                checked_run(box, "x = 1", f"budget {budget}")
                ts.append(ms_since(t0))
            out[budget] = stats(ts)
    return out


def measure(build, home, label, extra, a, Sandbox, daemon_info):
    print(f"# [{label}] starting agentboxd {' '.join(extra) or '(defaults)'}", file=sys.stderr)
    d = SocketDaemon(build, home, None, *extra)
    out = {"label": label}
    try:
        info = daemon_info(d.sock)
        out["info"] = (f"pid {info.get('pid')}, audit {info.get('audit')} "
                       f"({info.get('audit_mode')}), pool "
                       f"{ {t: p.get('target') for t, p in (info.get('pool') or {}).items()} }")
        print(f"# [{label}] {out['info']}")
        probe = PoolProbe(info["pid"], {t: p.get("target", 0)
                                         for t, p in (info.get("pool") or {}).items()})
        url = d.sock
        out["cost"] = snapshot_cost(Sandbox, url, a.rounds, a.block, a.think / 1000, a.warm)
        out["budgets"] = budget_sweep(Sandbox, url, 2 * a.n)
        print(f"# [{label}] rewind and memory", file=sys.stderr)
        out["fresh"] = fresh_sandbox(Sandbox, url, probe, a.n)

        with Sandbox(tier="heavy", url=url) as small:
            wall, dur, h = rewinds(small, SMALL_STEPS, (2, 4), a.n, ("x", "1"))
            out["small"] = (wall, dur, {t: replay_ms(h, t) for t in (2, 4)},
                            [step_of(h, s)["snapshot"].get("memory_bytes")
                             for s in range(1, len(SMALL_STEPS) + 1)])

        with Sandbox(tier="heavy", url=url, memory_mb=2048) as big:
            # Steps one at a time, reading memory_bytes where each is clean.
            for code in BIG_STEPS[:3]:
                checked_run(big, code, "200 MB session")
            h3 = wait_parked(big)
            whole = step_of(h3, 3)["snapshot"].get("memory_bytes")  # before df *= 2
            pss_after_whole = biggest_sandbox_pss(d.pid)
            checked_run(big, BIG_STEPS[3], "200 MB session")
            h4 = wait_parked(big)
            one_pct = step_of(h4, 4)["snapshot"].get("memory_bytes")  # before the 1% step
            whole_later = step_of(h4, 3)["snapshot"].get("memory_bytes")
            pss_after_1pct = biggest_sandbox_pss(d.pid)
            # the rest of the steps, then the rewinds (targets 3: df made;
            # 5: after both changes)
            wall, dur, h = rewinds(big, BIG_STEPS[4:], (3, 5), a.n,
                                   ("bool(df.values.max() < 1)", "True"))
            out["big"] = (wall, dur, {t: replay_ms(h, t) for t in (3, 5)},
                          {"whole": whole, "whole_later": whole_later, "one_pct": one_pct,
                           "pss_after_whole": pss_after_whole,
                           "pss_after_1pct": pss_after_1pct,
                           "all": [(s["step"], s["snapshot"]["memory"],
                                    s["snapshot"].get("memory_bytes")) for s in h["steps"]]})
    finally:
        try:
            d.stop()
        except Exception as e:
            print(f"warning: stopping agentboxd: {e}", file=sys.stderr)
    return out


# ------------------------------------------------------------ report
def mb(b):
    return "?" if b is None else f"{b / 2**20:.1f}"


def report(o, a):
    label = o["label"]
    wall, exe, cs, cb, mem, modes, hist_ms = o["cost"]
    print()
    print(f"== {label}: {o['info']}")
    print(f"1. snapshot cost: wall ms of box.run() in the client, {a.rounds} rounds x "
          f"{a.block} runs per (mode, cell, session); exec = the daemon's duration_ms p50")
    hdr = (f"{'mode':<14} {'cell':<8} {'snap p50':>9} {'snap p90':>9} {'base p50':>9} "
           f"{'base p90':>9} {'ratio p50':>9} {'ratio p90':>9} {'exec s/b':>13}")
    print(hdr)
    print("-" * len(hdr))
    worst = 0.0
    for mode, _ in modes:
        for cell in CELLS:
            s, b = wall[(mode, cell, "snap")], wall[(mode, cell, "base")]
            (s50, s90), (b50, b90) = stats(s), stats(b)
            es = statistics.median(exe[(mode, cell, "snap")])
            eb = statistics.median(exe[(mode, cell, "base")])
            worst = max(worst, s50 / b50)
            print(f"{mode:<14} {cell:<8} {s50:9.2f} {s90:9.2f} {b50:9.2f} {b90:9.2f} "
                  f"{s50 / b50:8.2f}x {s90 / b90:8.2f}x {es:6.2f}/{eb:<6.2f}")
    print(f"snapshots, snap session: {cs}; base session: {cb} (refused: a thread runs)")
    print(f"history() with {cs.get('parked', 0)} parked snapshots (memory_bytes read from "
          f"/proc for each): p50 {statistics.median(hist_ms):.1f} ms")
    print(f"GOAL a snapshot adds <= {GOAL_SNAPSHOT_ADDS:.0%} to a warm heavy run (p50): worst "
          f"+{(worst - 1) * 100:.0f}% -> {'ok' if worst <= 1 + GOAL_SNAPSHOT_ADDS else 'MISS'}")

    fresh50, fresh90 = stats(o["fresh"])
    print()
    print("1c. the number of parked copies: back-to-back `x = 1`, wall ms p50/p90, by the "
          "session's snapshots budget (0: no copies)")
    for budget, (p50, p90) in o["budgets"].items():
        print(f"   snapshots={budget:<3} {p50:6.2f} / {p90:6.2f}")
    print()
    print("2. rewind: wall ms of box.rewind() in the client (alternating between two "
          "states); daemon = its duration_ms,")
    print("   from the request to the resumed copy's ready, the stop of the running interpreter included")
    hdr = (f"{'session':<16} {'n':>3} {'wall p50':>9} {'wall p90':>9} {'daemon p50':>10} "
           f"{'daemon p90':>10} {'replay ms':>18} {'fresh p50':>9} {'fresh+replay':>18}")
    print(hdr)
    print("-" * len(hdr))
    for key, name in (("small", "small (5 steps)"), ("big", "200 MB DataFrame")):
        wall_r, dur, replay = o[key][:3]
        w50, w90 = stats(wall_r)
        d50, d90 = stats(dur)
        rp = "/".join(f"{v:.1f}" for v in replay.values())
        fr = "/".join(f"{fresh50 + v:.1f}" for v in replay.values())
        print(f"{name:<16} {len(wall_r):>3} {w50:9.2f} {w90:9.2f} {d50:10.2f} {d90:10.2f} "
              f"{rp:>18} {fresh50:9.1f} {fr:>18}")
        for t, v in replay.items():
            print(f"   to the state before step {t}: the steps took {v:.1f} ms; re-running "
                  f"them / rewind (wall p50) = {v / w50:.1f}x, fresh sandbox + re-running / "
                  f"rewind = {(fresh50 + v) / w50:.1f}x (> 1: the rewind is faster)")
    print(f"fresh sandbox (Sandbox(tier='heavy') + run('x = 1'), pool full): p50 "
          f"{fresh50:.1f} ms, p90 {fresh90:.1f} ms")
    sw = statistics.median(o["small"][0])
    print(f"GOAL rewind <= {GOAL_REWIND_SMALL_MS:g} ms for a small session (wall p50): "
          f"{sw:.2f} ms -> {'ok' if sw <= GOAL_REWIND_SMALL_MS else 'MISS'} "
          f"(daemon p50 {statistics.median(o['small'][1]):.2f} ms)")
    bw = statistics.median(o["big"][0])
    slower = [f"{name} session, before step {t}"
              for name, key, w in (("small", "small", sw), ("200 MB", "big", bw))
              for t, v in o[key][2].items() if v > GOAL_REWIND_SMALL_MS and v <= w]
    print(f"GOAL rewind faster than re-running steps that took > {GOAL_REWIND_SMALL_MS:g} ms: "
          f"{'ok' if not slower else 'MISS (' + '; '.join(slower) + ')'}")

    print()
    print("3. memory per snapshot (memory_bytes: pages only that parked copy holds)")
    for cell, xs in mem.items():
        print(f"snapshot-cost session, state before a {cell} cell ({len(xs)} of its parked "
              f"snapshots): p50 {statistics.median(xs) / 1024:.0f} KiB, max "
              f"{max(xs) / 1024:.0f} KiB")
    print(f"small session (rewind, before steps 1..5): "
          f"{', '.join('?' if m is None else f'{m / 1024:.0f}' for m in o['small'][3])} KiB")
    bm = o["big"][3]
    print(f"200 MB DataFrame: state before `df *= 2` (whole frame rewritten): {mb(bm['whole'])} MB "
          f"after that step; {mb(bm['whole_later'])} MB after the next")
    print(f"                  state before `df.iloc[:{ROWS // 100}] += 1` (1% of the rows): "
          f"{mb(bm['one_pct'])} MB")
    for k, name in (("pss_after_whole", "after df *= 2"), ("pss_after_1pct", "after the 1% step")):
        p = bm[k]
        if p:
            print(f"                  sandbox Pss {name}: {p[0]:.0f} MB (Rss {p[1]:.0f} MB, "
                  f"{p[2]} processes)")
    print("                  every step: " + ", ".join(
        f"{s}:{m}{'' if b is None else ' ' + mb(b) + ' MB'}" for s, m, b in bm["all"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=str(ROOT / "build"), help="build directory (agentboxd)")
    ap.add_argument("--rounds", type=int, default=None, help="recorded rounds of figure 1 "
                    "(default 6, --quick 2)")
    ap.add_argument("--block", type=int, default=None, help="runs per block (default 10, "
                    "--quick 5)")
    ap.add_argument("--think", type=float, default=50.0, help="think time in ms (default 50)")
    ap.add_argument("-n", type=int, default=None, help="rewinds per session and fresh-sandbox "
                    "samples (default 20, --quick 5)")
    ap.add_argument("--durable-only", action="store_true",
                    help=f"skip the second daemon (--audit-group-ms {RELAXED_MS})")
    ap.add_argument("--quick", action="store_true", help="fast smoke run")
    a = ap.parse_args()
    a.rounds = a.rounds or (2 if a.quick else 6)
    a.block = a.block or (5 if a.quick else 10)
    a.n = a.n or (5 if a.quick else 20)
    a.warm = 1
    build = Path(a.build).resolve()
    if not (build / "agentboxd").is_file():
        sys.exit(f"bench_time_travel: {build}/agentboxd not found (run make)")
    repro = "cd %s && %s" % (shlex.quote(str(ROOT)), shlex.join(
        [PY, "bench/bench_time_travel.py", "--build", str(build), "--rounds", str(a.rounds),
         "--block", str(a.block), "--think", f"{a.think:g}", "-n", str(a.n)]
        + (["--durable-only"] if a.durable_only else [])))
    print(f"# host: {os.cpu_count()} cpus, loadavg at start {os.getloadavg()[0]:.2f}")

    cow = cow_reference(a.n)
    tmp = Path(tempfile.mkdtemp(prefix="agentbox-bench-tt-"))
    os.environ["AGENTBOX_BIN"] = str(build)
    sys.path.insert(0, str(ROOT / "python"))
    from agentbox import Sandbox, daemon_info
    results = []
    try:
        runs = [("durable audit (default)", ())]
        if not a.durable_only:
            runs.append((f"relaxed audit (--audit-group-ms {RELAXED_MS})",
                         ("--audit-group-ms", str(RELAXED_MS))))
        for i, (label, extra) in enumerate(runs):
            results.append(measure(build, tmp / f"home{i}", label, extra, a, Sandbox,
                                   daemon_info))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("1b. the kernel alone (plain python3 on the host, no agentbox): ms of the cell warm, "
          "its first run after os.fork(), and the fork")
    for cell, (w, af, fk) in cow.items():
        print(f"   {cell:<8} warm {w:.2f}  first after fork {af:.2f} ({af / w:.1f}x)  "
              f"fork() {fk:.2f}")
    for o in results:
        report(o, a)
    print()
    print(f"# loadavg at end {os.getloadavg()[0]:.2f}")
    print(f"# reproduce: {repro}")


if __name__ == "__main__":
    main()

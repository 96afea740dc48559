#!/usr/bin/python3
"""The DLP engine of issue 11 side by side with gitleaks and detect-secrets,
in one run, on the same inputs:

 1. Throughput on one large mixed file (>= 50 MB: source code, JSON logs,
    Japanese and English prose, CSV, base64 blobs, with positives from the
    corpus sprinkled in), one core each: `agentbox dlp scan FILE` under
    taskset -c 0; gitleaks (`gitleaks dir FILE`) under taskset -c 0 with
    GOMAXPROCS=1; `detect-secrets scan FILE` under taskset -c 0. MB/s of
    wall time. Goal: agentbox >= 100x gitleaks.
 2. Recall and false positives on the labelled corpus of tests/dlp/corpus.py
    (secrets, personal data, evasions, negatives), each record its own
    file for the peers so that a finding maps back to its record. For the
    comparison a record counts as found when a tool reports anything in it
    (the peers' rule names are not ours); agentbox is also scored strictly
    (a finding of the expected kind). False positive: any report on a
    negative.

The peers are installed into a temporary directory from the package
registries, pinned: gitleaks with the Go toolchain (`go install`, whose
go.sum and checksum database verify the module), detect-secrets and its
dependencies with pip (--require-hashes). --tools DIR keeps them in DIR
for the next run instead. A peer that cannot be installed is reported as
unavailable and the rest is still measured. Nothing but the package
registries is reached; the tools themselves run offline.

A missed goal never fails the benchmark (exit 0); a broken setup does
(exit 1): a missing agentbox binary, or an agentbox without `dlp`.
"""
import argparse
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "dlp"))

import corpus  # noqa: E402

GOALS = {"throughput_vs_gitleaks": 100.0}
GITLEAKS_MODULE = "github.com/zricethezav/gitleaks/v8"
GITLEAKS_VERSION = "v8.30.1"
# detect-secrets and what it imports, pinned with their hashes (CPython
# 3.11 on x86_64 Linux, binary wheels only).
DETECT_SECRETS_REQS = """\
detect-secrets==1.5.0 --hash=sha256:e24e7b9b5a35048c313e983f76c4bd09dad89f045ff059e354f9943bf45aa060
pyyaml==6.0.2 --hash=sha256:3ad2a3decf9aaba3d29c8f537ac4b243e36bef957511b4766cb0057d32b0be85
requests==2.32.3 --hash=sha256:70761cfe03c773ceb22aa2f671b4757976145175cdfca038c02654d061d6dcc6
urllib3==2.2.3 --hash=sha256:ca899ca043dcb1bafa3e262d73aa25c465bfb49e0bd9dd5d59f1d0acba2f8fac
idna==3.10 --hash=sha256:946d195a0d259cbba61165e88e65941f16e9b36ea6ddb97f00452bae8b1287d3
certifi==2024.8.30 --hash=sha256:922820b53db7a7257ffbda3f597266d435245903d80737e34f8a45ff3e3230d8
charset-normalizer==3.4.0 --hash=sha256:3710a9751938947e6327ea9f3ea6332a09bf0ba0c09cae9cb1f250bd1f1549bc
"""
PY = "/usr/bin/python3"
CATEGORIES = ["secret", "pii", "evasion", "negative"]
OFFLINE = []  # set by main(): see offline_prefix()


def log(msg):
    print(msg, flush=True)


def run(cmd, timeout, env=None, stdout=subprocess.DEVNULL, cwd=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          timeout=timeout, env=e, cwd=cwd)


def offline_prefix():
    """A peer must not reach the network (detect-secrets verifies what it
    finds over the network unless told --no-verify, which it is): where we
    may make a network namespace, the peers run in one of their own."""
    try:
        if subprocess.run(["unshare", "--net", "true"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=10).returncode == 0:
            return ["unshare", "--net"]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return []


# ------------------------------------------------------------------ installs

def install_gitleaks(tools):
    """Returns (path, None) or (None, why)."""
    exe = tools / "bin" / "gitleaks"
    if exe.exists():
        return exe, None
    go = shutil.which("go")
    if not go:
        return None, "no Go toolchain (go) on PATH"
    env = {"GOPATH": str(tools / "go"), "GOBIN": str(tools / "bin"), "GOFLAGS": "-modcacherw",
           "GO111MODULE": "on"}
    try:
        p = run([go, "install", f"{GITLEAKS_MODULE}@{GITLEAKS_VERSION}"], 1200, env)
    except subprocess.TimeoutExpired:
        return None, "go install took more than 20 minutes"
    if p.returncode or not exe.exists():
        return None, "go install failed: " + p.stderr.decode(errors="replace")[-400:]
    return exe, None


def install_detect_secrets(tools):
    """Returns (command prefix, its environment, None) or (None, None, why)."""
    target = tools / "detect-secrets"
    cmd = [PY, "-c", "import sys; from detect_secrets.main import main; sys.exit(main())"]
    env = {"PYTHONPATH": str(target)}
    if not (target / "detect_secrets").exists():
        reqs = tools / "detect-secrets-requirements.txt"
        reqs.write_text(DETECT_SECRETS_REQS)
        try:
            p = run([PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                     "--no-deps", "--only-binary=:all:", "--require-hashes", "--target", str(target),
                     "-r", str(reqs)], 600)
        except subprocess.TimeoutExpired:
            return None, None, "pip install took more than 10 minutes"
        if p.returncode:
            return None, None, "pip install failed: " + p.stderr.decode(errors="replace")[-400:]
    p = run(cmd + ["--version"], 60, env, stdout=subprocess.PIPE)
    if p.returncode:
        return None, None, "detect-secrets does not start: " + p.stderr.decode(errors="replace")[-400:]
    return cmd, env, None


# --------------------------------------------------------------- the big file

def big_file(path, size_mb, records, seed=7):
    """Writes a mixed file of at least size_mb MB; returns the number of
    corpus positives sprinkled in (about one per 64 KB)."""
    r = random.Random(seed)
    g = corpus.Gen(seed)
    positives = [x["text"] for x in records if x["category"] in ("secret", "pii")]
    blocks = []
    for i in range(400):
        k = i % 8
        if k == 0:
            blocks.append("".join(
                f"def handler_{i}_{j}(event, context):\n    items = load(event['items'])\n"
                f"    total = sum(x.price * x.qty for x in items)\n    return {{'total': total, 'n': len(items)}}\n\n"
                for j in range(8)))
        elif k == 1:
            blocks.append("".join(json.dumps({
                "ts": f"2026-11-30T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z",
                "level": r.choice(["info", "debug", "warn"]), "msg": r.choice(["request done", "cache miss", "retry"]),
                "path": f"/api/v1/items/{r.randint(1, 99999)}", "status": r.choice([200, 200, 304, 404]),
                "duration_ms": r.randint(1, 900), "trace": corpus.uuid.UUID(int=r.getrandbits(128), version=4).hex,
            }) + "\n" for _ in range(20)))
        elif k == 2:
            blocks.append("\n".join(r.sample(corpus.JA_PROSE, 4)) + "\n")
        elif k == 3:
            blocks.append(" ".join(r.sample(corpus.EN_PROSE, 5)) + "\n")
        elif k == 4:
            blocks.append("timestamp,sensor,temperature_c,humidity_pct\n" + "".join(
                f"2026-11-30T{j % 24:02d}:00:00Z,s-{r.randint(1, 9)},{r.uniform(-5, 35):.2f},{r.uniform(10, 95):.1f}\n"
                for j in range(40)))
        elif k == 5:
            b = g.b64(3000)
            blocks.append("data:application/octet-stream;base64," + "\n".join(
                b[j:j + 76] for j in range(0, len(b), 76)) + "\n")
        elif k == 6:
            blocks.append("static int parse_%d(const char *s, size_t n)\n{\n\tsize_t i;\n\n\tfor (i = 0; i < n; i++)\n"
                          "\t\tif (s[i] == '\\n')\n\t\t\treturn (int)i;\n\treturn -EINVAL;\n}\n\n" % i)
        else:
            blocks.append("\n".join(r.sample(corpus.JA_PROSE, 2)) + "\n" + " ".join(r.sample(corpus.EN_PROSE, 2)) + "\n")
    blocks = [b.encode() for b in blocks]
    target = size_mb * 1000 * 1000
    n = 0
    sprinkled = 0
    next_pos = 65536
    with open(path, "wb") as f:
        while n < target:
            b = r.choice(blocks)
            f.write(b)
            n += len(b)
            if n >= next_pos:
                t = r.choice(positives).encode()
                f.write(t)
                n += len(t)
                sprinkled += 1
                next_pos += 65536
    return sprinkled


# ----------------------------------------------------------------- measuring

def timed(cmd, timeout, env=None, cwd=None):
    t0 = time.perf_counter()
    p = run(cmd, timeout, env, cwd=cwd)
    return time.perf_counter() - t0, p


def throughput_row(name, size, cmd, env, ok_codes, timeout, repeat, cwd=None):
    """(MB/s, seconds, note): the best of repeat runs."""
    best = None
    for _ in range(repeat):
        try:
            dt, p = timed(cmd, timeout, env, cwd)
        except subprocess.TimeoutExpired:
            return None, None, f"{name}: no result within {timeout} s"
        if p.returncode not in ok_codes:
            return None, None, f"{name} exited {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}"
        best = dt if best is None else min(best, dt)
    return size / 1e6 / best, best, ""


def per_record_dir(records, d):
    d.mkdir()
    names = {}
    for x in records:
        fn = x["id"] + ".txt"
        (d / fn).write_text(x["text"], encoding="utf-8")
        names[fn] = x["id"]
    return names


def gitleaks_hits(exe, d, names, report):
    p = run([*OFFLINE, "taskset", "-c", "0", str(exe), "dir", str(d), "--no-banner", "--log-level", "error",
             "--exit-code", "0", "--redact", "--report-format", "json", "--report-path", str(report)],
            1800, {"GOMAXPROCS": "1"})
    if p.returncode:
        raise RuntimeError(f"gitleaks exited {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}")
    hits = {}
    for f in json.loads(report.read_text() or "[]"):
        i = names.get(pathlib.Path(f["File"]).name)
        if i:
            hits.setdefault(i, set()).add(f.get("RuleID", "?"))
    return hits


def detect_secrets_hits(cmd, env, d, names):
    e = dict(os.environ, **env)
    # --all-files: without it detect-secrets scans only what git tracks.
    p = subprocess.run([*OFFLINE, "taskset", "-c", "0", *cmd, "scan", "--no-verify", "--all-files", "."],
                       cwd=d, env=e,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=3600)
    if p.returncode:
        raise RuntimeError(f"detect-secrets exited {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}")
    hits = {}
    for fn, found in json.loads(p.stdout)["results"].items():
        i = names.get(pathlib.Path(fn).name)
        if i and found:
            hits[i] = {x.get("type", "?") for x in found}
    return hits


def agentbox_hits(exe, corpus_path, out):
    """{id: set of kinds} from `agentbox dlp scan --jsonl`."""
    with open(out, "wb") as f:
        p = subprocess.run([str(exe), "dlp", "scan", "--jsonl", str(corpus_path)], stdout=f,
                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=1800)
    if p.returncode:
        raise RuntimeError(f"agentbox dlp scan --jsonl exited {p.returncode}: "
                           f"{p.stderr.decode(errors='replace')[-300:]}")
    hits = {}
    for line in open(out, encoding="utf-8"):
        o = json.loads(line)
        if o.get("findings"):
            hits[o["id"]] = {x["kind"] for x in o["findings"]}
    return hits


def score(records, hits, strict=False):
    """{category: (found, total)}; strict: the expected kind must be among
    the kinds found (positives only)."""
    out = {c: [0, 0] for c in CATEGORIES}
    for x in records:
        h = hits.get(x["id"])
        c = out[x["category"]]
        c[1] += 1
        if x["category"] == "negative":
            c[0] += bool(h)
        elif h and (not strict or x["kind"] in h):
            c[0] += 1
    return out


def print_quality(rows):
    log(f"  {'tool':<28} {'secret':>9} {'pii':>9} {'evasion':>9} {'FP on neg':>10}   (found/total)")
    for name, s in rows:
        if s is None:
            continue
        cells = []
        for c in CATEGORIES:
            f, t = s[c]
            cells.append(f"{100.0 * f / t:8.1f}%" if t else "      n/a")
        log(f"  {name:<28} {cells[0]:>9} {cells[1]:>9} {cells[2]:>9} {cells[3]:>10}   "
            + " ".join(f"{c[:3]} {s[c][0]}/{s[c][1]}" for c in CATEGORIES))


# ---------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--quick", action="store_true", help="a 10 MB file, one run each")
    ap.add_argument("--size-mb", type=int, default=None, help="the big file's size (default 50)")
    ap.add_argument("--tools", help="install the peers here and reuse them (default: a temporary directory)")
    ap.add_argument("--no-peers", action="store_true", help="measure agentbox alone")
    a = ap.parse_args()
    size_mb = a.size_mb or (10 if a.quick else 50)
    repeat = 1 if a.quick else 2
    build = pathlib.Path(a.build)
    OFFLINE[:] = offline_prefix()

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-dlp-"))
    tools = pathlib.Path(a.tools) if a.tools else tmp / "tools"
    tools.mkdir(parents=True, exist_ok=True)
    rc = 0
    try:
        records = corpus.generate()
        cpath = tmp / "corpus.jsonl"
        corpus.write_jsonl(records, cpath)
        big = tmp / "mixed.txt"
        sprinkled = big_file(big, size_mb, records)
        size = big.stat().st_size
        log(f"corpus: {len(records)} records "
            + ", ".join(f"{c} {sum(x['category'] == c for x in records)}" for c in CATEGORIES))
        log(f"big file: {size / 1e6:.1f} MB, {sprinkled} corpus positives sprinkled in")

        exe = build / "agentbox"
        ab_note = None
        if not exe.exists():
            ab_note = f"{exe} is missing; run make first"
            rc = 1
        else:
            p = run([str(exe), "dlp", "detectors"], 60, stdout=subprocess.PIPE)
            if p.returncode:
                ab_note = "this agentbox has no working `dlp` command: " + p.stderr.decode(errors="replace")[-200:]
                rc = 1

        gl, gl_note, ds, ds_env, ds_note = None, None, None, None, None
        if a.no_peers:
            gl_note = ds_note = "not measured (--no-peers)"
        else:
            log(f"installing gitleaks {GITLEAKS_VERSION} (go install) ...")
            gl, gl_note = install_gitleaks(tools)
            log("installing detect-secrets 1.5.0 (pip, pinned with hashes) ...")
            ds, ds_env, ds_note = install_detect_secrets(tools)
        log("peers run " + ("in a network namespace of their own (unshare --net)" if OFFLINE
                            else "without a network namespace (unshare --net failed)"))
        for name, note in (("agentbox", ab_note), ("gitleaks", gl_note), ("detect-secrets", ds_note)):
            if note:
                log(f"  {name}: UNAVAILABLE: {note}")

        # 1. throughput, one core each
        log(f"\n== throughput on {size / 1e6:.1f} MB, one core (best of {repeat}) ==")
        tput = {}
        if not ab_note:
            tput["agentbox dlp scan"] = throughput_row(
                "agentbox", size, ["taskset", "-c", "0", str(exe), "dlp", "scan", str(big)], None,
                (0, 1), 1800, repeat)
        if gl:
            tput[f"gitleaks {GITLEAKS_VERSION}"] = throughput_row(
                "gitleaks", size, [*OFFLINE, "taskset", "-c", "0", str(gl), "dir", str(big), "--no-banner",
                                   "--log-level", "error", "--exit-code", "0", "--redact",
                                   "--report-format", "json", "--report-path", str(tmp / "gl-big.json")],
                {"GOMAXPROCS": "1"}, (0,), 3600, repeat)
        if ds:
            tput["detect-secrets 1.5.0"] = throughput_row(
                "detect-secrets", size, [*OFFLINE, "taskset", "-c", "0", *ds, "scan", "--no-verify",
                                         "--all-files", big.name], ds_env, (0,), 3600, 1, cwd=tmp)
        for name, (mbps, secs, note) in tput.items():
            if mbps is None:
                log(f"  {name:<28} failed: {note}")
            else:
                log(f"  {name:<28} {mbps:10.2f} MB/s  ({secs:.2f} s)")
        ab = tput.get("agentbox dlp scan", (None,))[0]
        glt = tput.get(f"gitleaks {GITLEAKS_VERSION}", (None,))[0]
        if ab and glt:
            ratio = ab / glt
            log(f"  agentbox / gitleaks: {ratio:.1f}x  (goal >= {GOALS['throughput_vs_gitleaks']:g}x: "
                f"{'met' if ratio >= GOALS['throughput_vs_gitleaks'] else 'MISSED'})")
        else:
            log("  agentbox / gitleaks: not measured (a side is unavailable)")

        # 2. recall and false positives on the corpus
        log(f"\n== corpus: recall per category, false positives on negatives ==")
        rows = []
        if not ab_note:
            try:
                h = agentbox_hits(exe, cpath, tmp / "ab.jsonl")
                rows.append(("agentbox (any finding)", score(records, h)))
                rows.append(("agentbox (expected kind)", score(records, h, strict=True)))
            except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
                log(f"  agentbox: failed: {e}")
                rc = 1
        if gl or ds:
            d = tmp / "records"
            names = per_record_dir(records, d)
            if gl:
                try:
                    rows.append((f"gitleaks {GITLEAKS_VERSION}", score(records, gitleaks_hits(gl, d, names, tmp / "gl.json"))))
                except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
                    log(f"  gitleaks: failed: {e}")
            if ds:
                try:
                    rows.append(("detect-secrets 1.5.0", score(records, detect_secrets_hits(ds, ds_env, d, names))))
                except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
                    log(f"  detect-secrets: failed: {e}")
        print_quality(rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())

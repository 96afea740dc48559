"""`agentbox dlp` against the labelled corpus of tests/dlp/corpus.py: fake
secrets and personal data in realistic context, the same behind evasions,
and negatives that look like them.

The corpus is scanned once (`agentbox dlp scan --jsonl`) and judged per
category: recall >= 0.95 on secrets and on personal data, >= 0.85 on
evasions (a record counts when a finding of its expected kind is among its
findings), false positives on at most 2% of the negatives (any finding).
Every kind must be found at least once. The tables of what was missed (per
kind, per evasion) and of the negatives that were flagged are printed
(pytest -s) and put in the assertion messages, for tuning the detectors.

Also: values (--show-values) never reach standard error, nor the output
without --show-values; `agentbox dlp detectors` lists >= 44 kinds and
each detector's own example is found as its kind; bad JSONL lines get an
error that names the line and the problem, never a crash."""
import collections
import json
import subprocess
import sys

import pytest

from conftest import BUILD, REPO

sys.path.insert(0, str(REPO / "tests" / "dlp"))

import corpus  # noqa: E402

GOALS = {"secret": 0.95, "pii": 0.95, "evasion": 0.85}
MAX_FP = 0.02
ALL_KINDS = corpus.SECRET_KINDS + corpus.PII_KINDS


def dlp(*args, input=None, timeout=600):
    return subprocess.run([str(BUILD / "agentbox"), "dlp", *args], input=input,
                          capture_output=True, timeout=timeout)


def parse_jsonl(stdout):
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def records():
    return corpus.generate()


@pytest.fixture(scope="module")
def corpus_file(records, tmp_path_factory):
    p = tmp_path_factory.mktemp("dlp-corpus") / "corpus.jsonl"
    corpus.write_jsonl(records, p)
    return p


@pytest.fixture(scope="module")
def scanned(corpus_file):
    """{id: findings} from one `agentbox dlp scan --jsonl` over the corpus."""
    p = dlp("scan", "--jsonl", str(corpus_file))
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr.decode(errors='replace')[-2000:]}"
    out = parse_jsonl(p.stdout)
    return out


@pytest.fixture(scope="module")
def findings(scanned):
    return {o["id"]: o["findings"] for o in scanned}


def found_kind(rec, fs):
    return any(f["kind"] == rec["kind"] for f in fs)


def report(records, findings):
    """The tables for tuning: per kind and per evasion found/total with a
    few missed ids (and what was found instead), and the flagged negatives."""
    per_kind = collections.defaultdict(lambda: [0, 0, []])
    per_ev = collections.defaultdict(lambda: [0, 0, []])
    fps = collections.defaultdict(list)
    for r in records:
        fs = findings.get(r["id"], [])
        if r["category"] == "negative":
            if fs:
                fps[r["id"].split("-")[1]].append(
                    (r["id"], sorted({f["kind"] for f in fs})))
            continue
        hit = found_kind(r, fs)
        for table, key in ((per_kind, f"{r['category']}/{r['kind']}"),
                           (per_ev, r["evasion"]) if r["evasion"] else (None, None)):
            if table is None:
                continue
            row = table[key]
            row[1] += 1
            if hit:
                row[0] += 1
            else:
                row[2].append((r["id"], sorted({f["kind"] for f in fs})))
    lines = ["misses per kind (found/total; some missed ids, and what was found there):"]
    for key in sorted(per_kind):
        f, t, missed = per_kind[key]
        if f < t:
            lines.append(f"  {key:<40} {f:4d}/{t:<4d} " + "; ".join(
                f"{i} {k or '-'}" for i, k in missed[:3]))
    lines.append("misses per evasion:")
    for key in sorted(per_ev):
        f, t, missed = per_ev[key]
        lines.append(f"  {key:<40} {f:4d}/{t:<4d} " + "; ".join(
            f"{i} {k or '-'}" for i, k in missed[:3]))
    lines.append("negatives with findings (by subtype):")
    for key in sorted(fps):
        lines.append(f"  {key:<40} {len(fps[key]):4d}  " + "; ".join(
            f"{i} {k}" for i, k in fps[key][:3]))
    return "\n".join(lines)


def test_every_record_answered_once_with_sane_findings(records, scanned):
    assert [o["id"] for o in scanned] == [r["id"] for r in records]
    text = {r["id"]: r["text"].encode() for r in records}
    for o in scanned:
        assert "error" not in o, o
        n = len(text[o["id"]])
        for f in o["findings"]:
            assert 0 <= f["start"] < f["end"] <= n, (o["id"], f)
            assert 0 < f["confidence"] <= 1, (o["id"], f)
            assert isinstance(f["decoders"], list), (o["id"], f)
            assert "value" not in f, "a value without --show-values"


def test_recall_and_false_positives(records, findings):
    cats = collections.defaultdict(lambda: [0, 0])
    for r in records:
        fs = findings.get(r["id"], [])
        c = cats[r["category"]]
        c[1] += 1
        if r["category"] == "negative":
            c[0] += bool(fs)
        else:
            c[0] += found_kind(r, fs)
    summary = "; ".join(f"{c} {cats[c][0]}/{cats[c][1]} = {cats[c][0] / cats[c][1]:.3f}"
                        for c in ("secret", "pii", "evasion", "negative"))
    table = report(records, findings)
    print("\n" + summary + "\n" + table)
    bad = [f"{c} recall {cats[c][0] / cats[c][1]:.3f} < {g}" for c, g in GOALS.items()
           if cats[c][0] / cats[c][1] < g]
    fp = cats["negative"][0] / cats["negative"][1]
    if fp > MAX_FP:
        bad.append(f"false positives on {fp:.3f} of the negatives > {MAX_FP}")
    assert not bad, "; ".join(bad) + "\n" + summary + "\n" + table


def test_every_kind_is_found_at_least_once(records, findings):
    seen = collections.Counter()
    for r in records:
        if r["kind"] and found_kind(r, findings.get(r["id"], [])):
            seen[r["kind"]] += 1
    never = [k for k in ALL_KINDS if not seen[k]]
    assert not never, (f"kinds never found in the corpus: {never}\n"
                       + report(records, findings))


def test_values_never_reach_stderr_nor_the_output_without_show_values(corpus_file, scanned):
    p = dlp("scan", "--jsonl", "--show-values", str(corpus_file))
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-2000:]
    values = {f["value"] for o in parse_jsonl(p.stdout) for f in o["findings"] if f.get("value")}
    assert values, "--show-values showed no value"
    # Short values (a four-digit number) could turn up in anything; the
    # ones that identify a secret or a person are longer.
    values = {v for v in values if len(v) >= 8}
    err = p.stderr.decode(errors="replace")
    assert not [v for v in values if v in err]
    plain = json.dumps(scanned, ensure_ascii=False)
    leaked = [v for v in values if v in plain]
    assert not leaked, f"values in the output without --show-values: {leaked[:5]}"

    # The plain listing of one file: values go to standard output only
    # when asked for, never to standard error.
    sample = corpus_file.parent / "sample.txt"
    recs = [json.loads(line) for line in corpus_file.read_text(encoding="utf-8").splitlines()]
    sample.write_text("".join(r["text"] for r in recs if r["category"] in ("secret", "pii"))[:200000],
                      encoding="utf-8")
    shown = dlp("scan", "--show-values", str(sample))
    assert shown.returncode == 1, shown.stderr.decode(errors="replace")[-2000:]
    hidden = dlp("scan", str(sample))
    assert hidden.returncode == 1
    out_err = shown.stderr.decode(errors="replace") + hidden.stderr.decode(errors="replace")
    assert not [v for v in values if v in out_err]
    hidden_out = hidden.stdout.decode(errors="replace")
    assert not [v for v in values if v in hidden_out]
    assert "value" in shown.stdout.decode(errors="replace")


def test_detectors_list_kinds_and_find_their_own_examples():
    p = dlp("detectors", "--json")
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    ds = json.loads(p.stdout)
    kinds = [d["kind"] for d in ds]
    assert len(kinds) >= 44 and len(set(kinds)) == len(kinds), kinds
    missing = [k for k in ALL_KINDS if k not in kinds]
    assert not missing, f"kinds of the corpus with no detector: {missing}"
    for d in ds:
        assert d["class"] in ("secret", "pii") and d["what"] and d["example"], d

    plain = dlp("detectors")
    assert plain.returncode == 0
    listed = {line.split()[0] for line in plain.stdout.decode().splitlines()
              if line and not line[0].isspace()}
    assert set(kinds) <= listed

    lines = "".join(json.dumps({"id": d["kind"], "text": d["example"]}) + "\n" for d in ds)
    s = dlp("scan", "--jsonl", "-", input=lines.encode())
    assert s.returncode == 0, s.stderr.decode(errors="replace")
    got = {o["id"]: {f["kind"] for f in o["findings"]} for o in parse_jsonl(s.stdout)}
    wrong = {k: sorted(got.get(k, ())) for k in kinds if k not in got.get(k, ())}
    assert not wrong, f"detectors whose own example is not found as their kind: {wrong}"


def test_bad_jsonl_lines_are_named_and_the_rest_is_scanned():
    ok = corpus.Gen(1).aws_access_key_id()
    lines = [
        b'{"id": "a", "text": "nothing to see"}',    # 1
        b'this is not json',                          # 2
        b'{"id": "b"}',                               # 3: no text
        b'{"id": "c", "text": 42}',                   # 4: text not a string
        b'["id", "text"]',                            # 5: not an object
        b'{"id": "d", "text": "\xff\xfe"}',           # 6: not UTF-8
        b'',                                          # 7: empty, skipped
        b'{"id": "e", "text": "AWS_ACCESS_KEY_ID=' + ok.encode() + b'\\u0000x"}',  # 8
    ]
    p = dlp("scan", "--jsonl", "-", input=b"\n".join(lines) + b"\n")
    assert p.returncode > 0, f"exit {p.returncode}; stderr {p.stderr!r}"
    out = parse_jsonl(p.stdout)
    errs = {o["line"]: o for o in out if "error" in o}
    assert sorted(errs) == [2, 3, 4, 5, 6], out
    assert "JSON" in errs[2]["error"]
    assert "text" in errs[3]["error"] and errs[3].get("id") == "b"
    assert "string" in errs[4]["error"] and errs[4].get("id") == "c"
    assert "object" in errs[5]["error"]
    err = p.stderr.decode(errors="replace")
    for n in (2, 3, 4, 5, 6):
        assert f"line {n}" in err, err
    good = {o["id"]: o for o in out if "findings" in o}
    assert good["a"]["findings"] == []
    assert "aws_access_key_id" in {f["kind"] for f in good["e"]["findings"]}
    assert ok not in p.stdout.decode(errors="replace") + err

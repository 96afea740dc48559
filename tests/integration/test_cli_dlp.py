"""`agentbox dlp` (docs/dlp.md) as an operator uses it: the listing and its
exit status, --json, --show-values, values split across the engine's
windows of a large file, and clear errors for bad arguments and input.
The corpus tests (test_dlp_corpus.py) measure the detectors themselves."""
import json
import os
import subprocess

from conftest import BUILD

KEY = "AKIAQ3EGRJ7WXZ5TLN4K"  # fake, valid format
EMAIL = "hanako.yamada@corp-mail.jp"
WINDOW = 1 << 20


def dlp(*args, stdin=None, env=None):
    return subprocess.run([str(BUILD / "agentbox"), "dlp", *args], input=stdin,
                          capture_output=True, timeout=120, env=env)


def test_scan_lists_findings_and_says_so_in_its_exit_status(tmp_path):
    f = tmp_path / "app.env"
    f.write_text(f"# settings\nAWS_ACCESS_KEY_ID={KEY}\nCONTACT={EMAIL}\n")
    p = dlp("scan", str(f))
    assert p.returncode == 1, p.stderr
    lines = p.stdout.decode().splitlines()
    assert len(lines) == 2, lines
    start = f.read_bytes().index(KEY.encode())
    assert lines[0].split()[:5] == [f"{start}-{start + len(KEY)}", "line", "2",
                                    "aws_access_key_id", "secret"], lines[0]
    assert lines[1].split()[3:5] == ["email", "pii"], lines[1]
    assert KEY not in p.stdout.decode() and EMAIL not in p.stdout.decode()
    assert p.stderr.decode().strip() == f"2 findings in {f} ({f.stat().st_size} bytes)"
    clean = tmp_path / "clean.txt"
    clean.write_text("nothing to see here\n")
    p = dlp("scan", str(clean))
    assert p.returncode == 0 and p.stdout == b"", p


def test_json_values_and_decoders(tmp_path):
    import base64
    blob = base64.b64encode(f"aws_access_key_id = {KEY}".encode()).decode()
    p = dlp("scan", "--json", "-", stdin=f"payload: {blob}\n".encode())
    assert p.returncode == 1, p.stderr
    out = json.loads(p.stdout)
    (f,) = out["findings"]
    assert f["kind"] == "aws_access_key_id" and f["decoders"] == ["base64"], f
    assert "value" not in f and out["truncated"] is False
    p = dlp("scan", "--json", "--show-values", "-", stdin=f"payload: {blob}\n".encode())
    assert json.loads(p.stdout)["findings"][0]["value"] == KEY
    # The span is the part of the encoded text that carries the value.
    text = f"payload: {blob}\n"
    at = text.index(blob)
    assert at < f["start"] < f["end"] <= at + len(blob), (f, at)


def test_values_split_across_the_windows_of_a_large_file(tmp_path):
    """The engine reads 1 MiB windows that overlap by 16 KiB: a value
    across a seam is found once, at its offset in the file."""
    f = tmp_path / "big.log"
    filler = b"lorem ipsum dolor sit amet 12.5 ok\n"
    data = bytearray()
    offsets = []
    for seam in (WINDOW, 2 * WINDOW - (16 << 10), 3 * WINDOW - 2 * (16 << 10)):
        while len(data) < seam - 7:
            data += filler
        data = data[:seam - 7] + b" "
        offsets.append(len(data))
        data += KEY.encode() + b" "
    data += filler * 1000
    f.write_bytes(bytes(data))
    p = dlp("scan", "--json", str(f))
    found = [(x["kind"], x["start"]) for x in json.loads(p.stdout)["findings"]]
    assert found == [("aws_access_key_id", o) for o in offsets], found


def test_detectors_lists_every_kind_with_an_example():
    p = dlp("detectors", "--json")
    assert p.returncode == 0, p.stderr
    kinds = json.loads(p.stdout)
    assert len(kinds) >= 44
    assert {"jp_my_number", "github_token", "credit_card"} <= {k["kind"] for k in kinds}
    assert all(k["class"] in ("secret", "pii") and k["example"] and k["what"] for k in kinds)
    plain = dlp("detectors").stdout.decode()
    assert plain.strip().endswith(f"{len(kinds)} detectors")


def test_bad_arguments_and_input_are_named(tmp_path):
    cases = [
        (("scan", str(tmp_path / "missing.txt")), "missing.txt: No such file or directory"),
        (("scan", "--min-confidence", "2"), "--min-confidence wants a number in (0, 1]"),
        (("scan", "--json", "--jsonl"), "--json and --jsonl exclude each other"),
        (("scan", "a", "b"), "one FILE at most"),
        (("scan", "--frobnicate"), "unrecognized option"),
        (("shred",), "unknown subcommand 'shred'"),
        (("detectors", "--all"), "unknown argument '--all'"),
    ]
    for args, msg in cases:
        p = dlp(*args)
        assert p.returncode == 2, (args, p)
        assert msg in p.stderr.decode(), (args, p.stderr)
    p = dlp()
    assert p.returncode == 2 and b"Usage: agentbox dlp scan" in p.stderr
    p = dlp("--help")
    assert p.returncode == 0 and b"agentbox dlp detectors" in p.stdout


def test_a_cache_not_ours_is_never_read(tmp_path):
    """The compiled detectors are kept in the cache directory; a file there
    that others may write is ignored (compiled again, same findings)."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    p = dlp("scan", "-", stdin=KEY.encode(), env=env)
    assert p.returncode == 1
    (cached,) = (tmp_path / "agentbox").glob("dlp-*.hsdb")
    assert cached.stat().st_mode & 0o777 == 0o600
    good = cached.read_bytes()
    cached.write_bytes(b"agentbox-dlp-db/2\n" + b"\0" * 64)  # damaged
    p = dlp("scan", "-", stdin=KEY.encode(), env=env)
    assert p.returncode == 1, p.stderr
    assert cached.read_bytes() == good  # refused, compiled, written again
    cached.chmod(0o666)
    inode = cached.stat().st_ino
    p = dlp("scan", "-", stdin=KEY.encode(), env=env)
    assert p.returncode == 1, p.stderr
    assert cached.stat().st_ino != inode and cached.stat().st_mode & 0o777 == 0o600

"""The files API at its documented limit: 64 MiB per file, in both
directions, moved in parts so that no JSON-RPC line comes near the
connection's 16 MiB limit. One byte more is refused with an error that
names the limit, and the connection and its other sandboxes go on."""
import hashlib
import os

import pytest

from agentbox import InvalidArgument, PathError, Sandbox, SandboxError
from agentbox.sandbox import MAX_FILE_BYTES

# Room for two 64 MiB files in the workspace, whose pages count against the
# sandbox's memory (a tmpfs when the daemon is root), and for the sanitizer
# build's allocator.
BIG = dict(tier="heavy", memory_mb=1024, pids=32, timeout=60, disk_mb=160)
LIMIT = 64 << 20

# Hashes a workspace file inside the sandbox, a MiB at a time.
SHA_INSIDE = """
import hashlib
h = hashlib.sha256()
with open(%r, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
        h.update(block)
print(h.hexdigest())
"""


def sha(data):
    return hashlib.sha256(data).hexdigest()


def test_64_mib_round_trip():
    assert MAX_FILE_BYTES == LIMIT
    data = os.urandom(LIMIT)
    with Sandbox(**BIG) as b, Sandbox(tier="heavy", timeout=30) as other:
        assert b.files.write("big/blob.bin", data) == LIMIT
        r = b.run(SHA_INSIDE % "big/blob.bin")
        assert r.stdout.strip() == sha(data), r
        back = b.files.read("big/blob.bin")
        assert len(back) == LIMIT and sha(back) == sha(data)
        # A file the sandbox made comes back whole too.
        r = b.run("import os\nwith open('made.bin', 'wb') as f:\n"
                  "    for _ in range(64):\n        f.write(os.urandom(1 << 20))\n")
        assert r.ok, r
        r = b.run(SHA_INSIDE % "made.bin")
        assert sha(b.files.read("made.bin")) == r.stdout.strip()
        assert other.run("print(2)").stdout == "2\n"


def test_one_byte_over_the_limit_is_refused_and_the_connection_survives():
    with Sandbox(**BIG) as b, Sandbox(tier="heavy", timeout=30) as other:
        assert other.run("x = 41").ok
        b.files.write("f.bin", b"previous")
        with pytest.raises(PathError) as ei:
            b.files.write("f.bin", b"\0" * (LIMIT + 1))
        msg = str(ei.value)
        assert "64 MiB" in msg and str(LIMIT) in msg, msg
        assert ei.value.data["limit"] == LIMIT
        # Nothing of the refused write is visible; the previous file is intact.
        assert b.files.read("f.bin") == b"previous"
        assert [e["name"] for e in b.files.list("")] == ["f.bin"]
        # The other sandbox on the same connection kept its state.
        assert other.run("print(x + 1)").stdout == "42\n"
        assert b.run("print(1)").stdout == "1\n"
        # A file over the limit made inside is refused for reading, by name.
        b.run("open('huge.bin', 'wb').truncate(%d)" % (LIMIT + 1))
        with pytest.raises(PathError) as ei:
            b.files.read("huge.bin")
        assert "64 MiB" in str(ei.value) and str(LIMIT + 1) in str(ei.value)
        assert other.run("print(x)").stdout == "41\n"


def test_a_file_in_parts_is_invisible_until_complete():
    with Sandbox(tier="heavy", timeout=30) as b:
        call = b._call
        r = call("sandbox.files.write", {"path": "d/part.txt", "data": "first ", "more": True})
        assert r["complete"] is False and r["size"] == 6 and r["upload"].startswith("up-")
        up = r["upload"]
        # Neither the client nor the sandbox sees the unfinished file.
        assert [e["name"] for e in b.files.list("d")] == []
        assert b.run("import os\nprint(os.listdir('d'))").stdout == "[]\n"
        with pytest.raises(PathError):
            b.files.read("d/part.txt")
        # Parts come in order, for their own path and upload.
        for bad, words in (({"offset": 5}, "received 6"), ({"offset": 6, "path": "x"}, "writes"),
                           ({"offset": 6, "upload": "up-0"}, "no unfinished write"),
                           ({"offset": 6, "mode": 0o600}, "first part"),
                           ({}, "params.offset")):
            params = {"path": "d/part.txt", "upload": up, "data": "x", "more": True}
            params.update(bad)
            with pytest.raises(InvalidArgument) as ei:
                call("sandbox.files.write", params)
            assert words in str(ei.value), (bad, str(ei.value))
        r = call("sandbox.files.write", {"path": "d/part.txt", "upload": up, "offset": 6,
                                         "data_b64": "c2Vjb25k"})
        assert r == {"path": "d/part.txt", "size": 12, "complete": True}
        assert b.files.read("d/part.txt") == b"first second"
        # A finished upload is gone.
        with pytest.raises(InvalidArgument):
            call("sandbox.files.write", {"path": "d/part.txt", "upload": up, "offset": 12,
                                         "data": "x"})
        # The audit log has the whole file once, with its hash and parts.
        ev = [e for e in b.audit() if e["kind"] == "files.write"][-1]["body"]
        assert ev["size"] == 12 and ev["parts"] == 2
        assert ev["sha256"] == sha(b"first second")


def test_reads_in_parts_and_the_single_answer_bound():
    data = os.urandom(20 << 20)
    with Sandbox(**BIG) as b:
        b.files.write("r.bin", data)
        call = b._call
        r = call("sandbox.files.read", {"path": "r.bin", "offset": 5, "length": 10})
        assert r["size"] == len(data) and r["offset"] == 5 and r["version"]
        import base64
        assert base64.b64decode(r["data_b64"]) == data[5:15]
        # Past the end: nothing, and the size says so.
        r = call("sandbox.files.read", {"path": "r.bin", "offset": len(data) + 1})
        assert r["data_b64"] == "" and r["size"] == len(data)
        # The old single-message form answers a clear error for a file that
        # does not fit one answer, instead of a line the client cannot take.
        with pytest.raises(PathError) as ei:
            call("sandbox.files.read", {"path": "r.bin"})
        assert "params.offset" in str(ei.value) and "params.length" in str(ei.value)
        with pytest.raises(InvalidArgument):
            call("sandbox.files.read", {"path": "r.bin", "length": (8 << 20) + 1})
        assert b.files.read("r.bin") == data
        # Long text goes in parts too, as UTF-8.
        text = "\u00e9t\u00e9 " * (1 << 20)
        assert b.files.write("t.txt", text) == len(text.encode())
        assert b.files.read_text("t.txt") == text
        # Small files still come in one answer without offset or length.
        b.files.write("s.txt", "small")
        assert call("sandbox.files.read", {"path": "s.txt"})["size"] == 5


def test_a_read_that_races_a_writer_is_consistent_or_refused():
    with Sandbox(**BIG) as b:
        # A background writer keeps replacing the file with one of two
        # contents of 20 MiB (each made in full, then renamed in place).
        b.run("""
import os
a, c = b'a' * (20 << 20), b'c' * (20 << 20)
open('w.bin', 'wb').write(a)
if os.fork() == 0:
    os.setsid()
    null = os.open('/dev/null', os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    i = 0
    while True:
        open('w.tmp', 'wb').write(c if i % 2 else a)
        os.rename('w.tmp', 'w.bin')
        i += 1
""")
        for _ in range(5):
            try:
                data = b.files.read("w.bin")
            except SandboxError as e:
                assert "kept changing" in str(e)
                continue
            assert data in (b"a" * (20 << 20), b"c" * (20 << 20))

"""The audit log as the daemon writes it: every action recorded, results
only after their record is durable, kill -9 loses nothing acknowledged,
and a full disk fails closed."""
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

import agentbox
from conftest import BUILD, UID_ARGS, DaemonSocket, RawClient, stop_process


def agentbox_cli(*args, timeout=120):
    return subprocess.run([str(BUILD / "agentbox"), *args], capture_output=True, text=True,
                          timeout=timeout)


def export(home):
    p = agentbox_cli("audit", "export", "--jsonl", "--db", str(home / "audit.db"))
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def test_every_action_is_recorded_and_the_log_verifies(tmp_path):
    d = DaemonSocket(tmp_path)
    try:
        url = str(d.path)
        with agentbox.Sandbox(tier="heavy", url=url) as b:
            sid = b.id
            b.files.write("in.txt", "hello")
            r = b.run("print(open('in.txt').read())")
            assert r.stdout == "hello\n"
            b.run("1/0")
            b.files.read("in.txt")
            with pytest.raises(agentbox.PathError):
                b.files.read("../etc/passwd")
            mine = b.audit()
        kinds = [e["kind"] for e in mine]
        assert kinds[:1] == ["sandbox.create"], kinds
        assert kinds.count("run") == 2 and "files.write" in kinds and "files.read" in kinds
        run = next(e for e in mine if e["kind"] == "run")
        assert run["body"]["code"] == "print(open('in.txt').read())"
        import hashlib
        assert run["body"]["code_sha256"] == hashlib.sha256(run["body"]["code"].encode()).hexdigest()
        assert run["body"]["stdout"]["sha256"] == hashlib.sha256(b"hello\n").hexdigest()
        assert run["body"]["exit_code"] == 0 and run["step"] == 1 and run["session"] == sid
        err_run = [e for e in mine if e["kind"] == "run"][1]
        assert err_run["body"]["error_name"] == "ZeroDivisionError"
    finally:
        d.stop()
    events = export(tmp_path)
    kinds = [e.get("kind") for e in events if "kind" in e]
    assert kinds[0] == "daemon.start" and kinds[-1] == "daemon.stop"
    assert "sandbox.close" in kinds
    refused = [e for e in events if e.get("kind") == "refused"]
    assert any(".." in e["body"]["message"] for e in refused)
    seqs = [e["seq"] for e in events if "seq" in e and "kind" in e]
    assert seqs == list(range(1, len(seqs) + 1))
    p = agentbox_cli("audit", "verify", "--db", str(tmp_path / "audit.db"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "OK" in p.stdout


def test_export_verifies_elsewhere_with_the_pinned_key(tmp_path):
    d = DaemonSocket(tmp_path, "--audit-checkpoints", str(tmp_path / "checkpoints.jsonl"))
    try:
        with agentbox.Sandbox(tier="heavy", url=str(d.path)) as b:
            for i in range(5):
                b.run(f"print({i})")
    finally:
        d.stop()
    p = agentbox_cli("audit", "export", "--jsonl", "--db", str(tmp_path / "audit.db"))
    f = tmp_path / "copy.jsonl"
    f.write_text(p.stdout)
    header = json.loads(p.stdout.splitlines()[0])
    pub = header["pubkey"]
    assert len(pub) == 64
    p = agentbox_cli("audit", "verify", "--file", str(f), "--pubkey", pub,
                     "--checkpoints", str(tmp_path / "checkpoints.jsonl"))
    assert p.returncode == 0, p.stdout + p.stderr
    # one changed byte in an exported body is found and named
    lines = f.read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if '"kind":"run"' in line.replace(" ", ""))
    ev = json.loads(lines[k])
    ev["body"]["code"] = ev["body"]["code"].replace("print", "PRINT")
    lines[k] = json.dumps(ev)
    f.write_text("\n".join(lines) + "\n")
    p = agentbox_cli("audit", "verify", "--file", str(f), "--pubkey", pub)
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"seq {ev['seq']}" in p.stdout + p.stderr


def test_kill_9_loses_no_acknowledged_event(tmp_path):
    """Clients run code while the daemon is killed with SIGKILL at random
    moments and restarted; every result a client received must have its
    run event in the log, and the log must verify."""
    received = []
    lock = threading.Lock()
    stop = threading.Event()
    state = {"daemon": DaemonSocket(tmp_path)}
    url = str(state["daemon"].path)

    def client():
        while not stop.is_set():
            try:
                with agentbox.Sandbox(tier="heavy", url=url) as b:
                    for _ in range(20):
                        marker = uuid.uuid4().hex
                        r = b.run(f"print('{marker}')")
                        if r.stdout == marker + "\n":
                            with lock:
                                received.append(marker)
            except agentbox.SandboxError:
                time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(4):
            time.sleep(random.uniform(0.3, 1.2))
            d = state["daemon"]
            os.kill(d.proc.pid, signal.SIGKILL)  # the daemon this test started
            d.proc.wait(30)
            state["daemon"] = DaemonSocket(tmp_path)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        state["daemon"].stop()
    assert len(received) > 10, "the clients got too few results to prove anything"
    events = export(tmp_path)
    logged = "\n".join(e["body"].get("code", "") for e in events if e.get("kind") == "run")
    missing = [m for m in received if m not in logged]
    assert missing == [], f"{len(missing)} acknowledged runs are not in the log"
    p = agentbox_cli("audit", "verify", "--db", str(tmp_path / "audit.db"))
    assert p.returncode == 0, p.stdout + p.stderr


def test_full_disk_fails_closed():
    """$AGENTBOX_HOME on a tiny tmpfs (in the daemon's own mount namespace):
    once the log cannot grow, runs fail with a clear error and nothing is
    reported as success."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    base = tempfile.mkdtemp(prefix="agentbox-full-", dir="/tmp")
    home = os.path.join(base, "home")
    os.mkdir(home)
    sock = os.path.join(base, "d.sock")
    script = (f"mount -t tmpfs -o size=1m tmpfs {home} && exec {BUILD / 'agentboxd'} "
              f"--socket {sock} --home {home} --pool 0")
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             script], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while not os.path.exists(sock):
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline
            time.sleep(0.02)
        with agentbox.Sandbox(tier="heavy", url=sock) as b:
            assert b.run("print('before')").stdout == "before\n"
            # fill the daemon's home from outside, through its mount namespace
            filler = f"/proc/{proc.pid}/root{home}/filler"
            with open(filler, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
            outcome = None
            for i in range(50):
                try:
                    r = b.run("print('x' * 200000)")
                except agentbox.AuditError as e:
                    outcome = e
                    break
                assert r.status == "ok"
            assert isinstance(outcome, agentbox.AuditError), "runs kept succeeding on a full disk"
            assert "audit log" in str(outcome)
            with pytest.raises(agentbox.AuditError):
                b.run("print(1)")
        info = agentbox.daemon_info(url=sock)
        assert info["audit"] == "unavailable"
    finally:
        stop_process(proc)
        shutil.rmtree(base, ignore_errors=True)


def test_tail_query_and_follow(tmp_path):
    d = DaemonSocket(tmp_path)
    db = str(tmp_path / "audit.db")
    try:
        with agentbox.Sandbox(tier="heavy", url=str(d.path)) as b:
            b.run("print('one')")
            sid = b.id
            follower = subprocess.Popen([str(BUILD / "agentbox"), "audit", "tail", "-f", "-n",
                                         "1", "--db", db], stdout=subprocess.PIPE, text=True)
            try:
                time.sleep(0.5)
                b.run("print('two')")
                deadline = time.time() + 20
                seen = ""
                import select
                while "run" not in seen and time.time() < deadline:
                    r, _, _ = select.select([follower.stdout], [], [], 0.5)
                    if r:
                        seen += follower.stdout.readline()
                assert "run" in seen and sid in seen, seen
            finally:
                follower.kill()  # started by this test
                follower.wait()
        p = agentbox_cli("audit", "tail", "-n", "3", "--db", db)
        assert p.returncode == 0 and len(p.stdout.strip().splitlines()) == 3, p.stdout
        p = agentbox_cli("audit", "query", "--session", sid, "--kind", "run", "--json", "--db", db)
        assert p.returncode == 0, p.stderr
        rows = [json.loads(line) for line in p.stdout.splitlines()]
        assert [r["step"] for r in rows] == [1, 2]
        assert all(r["session"] == sid and r["kind"] == "run" for r in rows)
        p = agentbox_cli("audit", "query", "--kind", "run", "--since", "2000-01-01T00:00:00Z",
                         "--until", "2000-01-02T00:00:00Z", "--db", db)
        assert p.returncode == 0 and p.stdout.strip() == "", p.stdout
    finally:
        d.stop()


def test_verify_reports_a_modified_row_by_seq(tmp_path):
    """A row changed in the database itself (what someone with write access
    to the host might do) is found and named."""
    import sqlite3
    d = DaemonSocket(tmp_path)
    try:
        with agentbox.Sandbox(tier="heavy", url=str(d.path)) as b:
            b.run("print('original')")
    finally:
        d.stop()
    db = tmp_path / "audit.db"
    con = sqlite3.connect(db)
    seq, body = con.execute("SELECT seq, body FROM events WHERE kind = 'run'").fetchone()
    con.execute("UPDATE events SET body = ? WHERE seq = ?",
                (body.replace("original", "innocent"), seq))
    con.commit()
    con.close()
    p = agentbox_cli("audit", "verify", "--db", str(db))
    assert p.returncode == 1
    assert f"FAILED at seq {seq}" in p.stdout + p.stderr, p.stdout + p.stderr


def test_two_daemons_sharing_a_home_keep_one_chain(tmp_path):
    """An SDK's private daemon and the CLI's may share $AGENTBOX_HOME: their
    events interleave in one log that still verifies."""
    a = DaemonSocket(tmp_path)
    sock_b = tmp_path / "b.sock"
    b = subprocess.Popen([str(BUILD / "agentboxd"), "--socket", str(sock_b), "--home",
                          str(tmp_path), "--pool", "0", "--nano-pool", "-1", *UID_ARGS],
                         stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while not sock_b.exists():
            assert b.poll() is None and time.time() < deadline
            time.sleep(0.02)
        errors = []

        def work(url):
            try:
                with agentbox.Sandbox(tier="heavy", url=url) as box:
                    for i in range(10):
                        assert box.run(f"print({i})").stdout == f"{i}\n"
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(u,))
                   for u in (str(a.path), str(sock_b), str(a.path), str(sock_b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
    finally:
        b.terminate()
        b.wait(30)
        a.stop()
    events = export(tmp_path)
    runs = [e for e in events if e.get("kind") == "run"]
    assert len(runs) == 40
    starts = [e for e in events if e.get("kind") == "daemon.start"]
    assert len({e["body"]["pid"] for e in starts}) == 2
    p = agentbox_cli("audit", "verify", "--db", str(tmp_path / "audit.db"))
    assert p.returncode == 0, p.stdout + p.stderr


def test_query_refuses_an_unknown_kind_and_knows_every_recorded_one(tmp_path):
    d = DaemonSocket(tmp_path)
    db = str(tmp_path / "audit.db")
    try:
        with agentbox.Sandbox(tier="heavy", url=str(d.path)) as b:
            b.files.write("a.txt", "x")
            b.files.read("a.txt")
            b.files.list()
            b.run("print(1)")
    finally:
        d.stop()
    p = agentbox_cli("audit", "query", "--kind", "bogus", "--db", db)
    assert p.returncode == 2 and p.stdout == ""
    assert "--kind bogus: unknown event kind" in p.stderr and "sandbox.create" in p.stderr
    # Every kind the daemon recorded is one --kind accepts (the list cannot drift).
    kinds = {e["kind"] for e in export(tmp_path) if "kind" in e}
    assert {"daemon.start", "sandbox.create", "run", "files.write"} <= kinds
    for k in kinds:
        p = agentbox_cli("audit", "query", "--kind", k, "--json", "--db", db)
        assert p.returncode == 0 and p.stdout.strip(), (k, p.stderr)


def test_refused_events_name_the_session_of_the_request(tmp_path):
    """A refusal of a request about one of the client's sandboxes is filed
    under that session (so `audit query --session` and `sandbox.audit` show
    it); a client naming another client's sandbox files nothing under it,
    and neither does a request naming a sandbox its client already closed."""
    d = DaemonSocket(tmp_path)
    try:
        a, b = RawClient(d), RawClient(d)
        sid = a.call("sandbox.create", {"tier": "nano"})["result"]["sandbox"]
        assert "error" in a.call("sandbox.run", {"sandbox": sid, "code": "1", "timeout": -1})
        assert "error" in a.call("sandbox.files.read", {"sandbox": sid, "path": "../x"})
        assert "error" in a.call("sandbox.run", {"sandbox": sid, "bogus": 1})
        # Another client names a's sandbox: refused, and not filed under it.
        assert "error" in b.call("sandbox.run", {"sandbox": sid, "code": "b-was-here"})
        assert "error" in b.call("sandbox.close", {"sandbox": sid})
        mine = a.call("sandbox.audit", {"sandbox": sid})["result"]["events"]
        assert "result" in a.call("sandbox.close", {"sandbox": sid})
        assert "error" in a.call("sandbox.run", {"sandbox": sid, "code": "after-close"})
        a.close()
        b.close()
    finally:
        d.stop()
    refused_mine = [e for e in mine if e["kind"] == "refused"]
    assert [e["body"]["id"] for e in refused_mine] == [2, 3, 4], refused_mine
    assert all(e["session"] == sid for e in refused_mine)
    events = [e for e in export(tmp_path) if e.get("kind") == "refused"]
    filed = [e["body"]["id"] for e in events if e.get("session") == sid]
    assert filed == [2, 3, 4], events
    p = agentbox_cli("audit", "query", "--session", sid, "--kind", "refused", "--json", "--db",
                     str(tmp_path / "audit.db"))
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 3, p.stdout
    # b's two refusals and a's run after its close are on record, unfiled.
    unfiled = [e for e in events if not e.get("session")]
    assert len(unfiled) == 3, unfiled


# What a terminal acts on instead of showing: ESC (C0), DEL, CSI and NEL (C1),
# right-to-left override, left-to-right isolate and pop, right-to-left mark.
TERMINAL_CONTROLS = "\x1b\x7f\u009b\u0085\u202e\u2066\u2069\u200f"


def test_tail_and_query_escape_what_drives_a_terminal(tmp_path):
    """Code, messages and output quoted in the log are the client's and the
    sandbox's: `audit tail` and `audit query` show terminal controls and
    bidirectional overrides as visible escapes, never raw."""
    d = DaemonSocket(tmp_path)
    db = str(tmp_path / "audit.db")
    try:
        with agentbox.Sandbox(tier="nano", url=str(d.path)) as b:
            b.run("#" + TERMINAL_CONTROLS + "\nx = 1")
            sid = b.id
        raw = RawClient(d)
        raw.call("sandbox.run", {"sandbox": "sb-\u202e\u009b", "code": "1"})
        raw.close()
    finally:
        d.stop()
    for args in (("tail", "-n", "20"), ("query", "--session", sid)):
        p = subprocess.run([str(BUILD / "agentbox"), "audit", *args, "--db", db],
                           capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
        out = p.stdout.decode("utf-8")
        for ch in TERMINAL_CONTROLS:
            assert ch not in out, (args, hex(ord(ch)), out)
        assert "\\u202e\\u2066\\u2069\\u200f" in out, out
        assert "\\u007f\\u009b\\u0085" in out, out
    p = agentbox_cli("audit", "tail", "-n", "20", "--db", db)
    assert "no such sandbox: sb-\\u202e\\u009b" in p.stdout, p.stdout


def test_close_answers_before_the_teardown_and_the_release_is_recorded(tmp_path):
    # sandbox.close replies once the sandbox is unreachable; the kernel's
    # teardown and the workspace's removal follow, and the log records both
    # steps of the same session, the close first.
    d = DaemonSocket(tmp_path)
    try:
        c = RawClient(d.path)
        sid = c.call("sandbox.create", {"tier": "heavy"})["result"]["sandbox"]
        c.call("sandbox.run", {"sandbox": sid, "code": "open('f', 'w').write('x' * 4096)"})
        assert c.call("sandbox.close", {"sandbox": sid})["result"] == {"sandbox": sid,
                                                                      "closed": True}
        # unreachable at once, whatever the teardown's progress
        assert c.call("sandbox.run", {"sandbox": sid, "code": "1"})["error"]["code"] == -32001
        ws = tmp_path / "sessions" / sid
        deadline = time.time() + 20
        while ws.exists() and time.time() < deadline:
            time.sleep(0.02)
        assert not ws.exists()
        c.close()
    finally:
        d.stop()
    mine = [e for e in export(tmp_path) if e.get("session") == sid]
    kinds = [e["kind"] for e in mine]
    assert kinds.index("sandbox.close") < kinds.index("sandbox.released"), kinds
    released = mine[kinds.index("sandbox.released")]
    assert released["actor"] == "daemon" and released["body"]["teardown_ms"] >= 0
    p = agentbox_cli("audit", "query", "--kind", "sandbox.released", "--json", "--db",
                     str(tmp_path / "audit.db"))
    assert p.returncode == 0 and sid in p.stdout, p.stderr


SLOW_FSYNC = r"""
#define _GNU_SOURCE
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* agentboxd's disk gets slow: every fsync and fdatasync takes 1 s more. */
static int slow(void)
{
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 10)
		return 0;
	exe[n] = 0;
	return strcmp(exe + n - 10, "/agentboxd") == 0;
}

static void wait_a_while(void)
{
	if (slow()) {
		struct timespec t = {1, 0};
		nanosleep(&t, NULL);
	}
}

int fsync(int fd)
{
	wait_a_while();
	return (int)syscall(SYS_fsync, fd);
}

int fdatasync(int fd)
{
	wait_a_while();
	return (int)syscall(SYS_fdatasync, fd);
}
"""


@pytest.mark.serial  # bounds a reply's latency: not next to other workers' load
@pytest.mark.skipif(os.environ.get("AGENTBOX_SANITIZED") == "1",
                    reason="a preloaded shim must come before the sanitizer runtime, "
                           "which refuses that; the plain build runs it")
def test_one_clients_fsync_does_not_hold_another_clients_reply(tmp_path):
    # The audit log is committed by a writer thread: while client A's run
    # waits for its record to reach a (slow) disk, client B is served, and
    # A's result still waits for its own record.
    src = tmp_path / "slow.c"
    src.write_text(SLOW_FSYNC)
    shim = tmp_path / "slow.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(src)], check=True)
    home = tmp_path / "d"
    home.mkdir()
    os.environ["LD_PRELOAD"] = str(shim)
    try:
        d = DaemonSocket(home, "--pool", "1", "--nano-pool", "-1")
    finally:
        del os.environ["LD_PRELOAD"]
    try:
        a, b = RawClient(d), RawClient(d)
        sid = a.call("sandbox.create", {"tier": "heavy"})["result"]["sandbox"]
        t_a = time.monotonic()
        a.send(7, "sandbox.run", sandbox=sid, code="print('a')")
        time.sleep(0.3)  # A's run is over; its record is being written
        t0 = time.monotonic()
        info = b.call("daemon.info")
        b_took = time.monotonic() - t0
        assert info["result"]["audit_mode"] == "durable"
        assert b_took < 0.5, f"daemon.info waited {b_took:.3f} s for another client's fsync"
        reply = a.replies(1)[7]
        assert reply["result"]["stdout"] == "a\n", reply
        # A's own result waited for its record: at least one slow fsync
        assert time.monotonic() - t_a >= 1.0
        a.close()
        b.close()
    finally:
        d.stop()


def test_group_commit_mode_is_reported_and_the_log_still_verifies(tmp_path):
    # --audit-group-ms: replies do not wait for the disk; the mode is in
    # daemon.info, in the chain (daemon.start) and in every checkpoint line.
    cps = tmp_path / "cps.jsonl"
    d = DaemonSocket(tmp_path, "--audit-group-ms", "20", "--audit-checkpoints", str(cps))
    try:
        info = agentbox.daemon_info(url=str(d.path))
        assert info["audit_mode"] == "group 20 ms", info
        with agentbox.Sandbox(tier="nano", url=str(d.path)) as s:
            for i in range(20):
                assert s.run(f"print({i})").stdout == f"{i}\n"
    finally:
        d.stop()
    events = export(tmp_path)
    start = next(e for e in events if e.get("kind") == "daemon.start")
    assert start["body"]["audit_sync"] == "group 20 ms"
    assert sum(e.get("kind") == "run" for e in events) == 20
    lines = [json.loads(x) for x in cps.read_text().splitlines()]
    assert lines and all(x["sync"] == "group 20 ms" for x in lines), lines
    p = agentbox_cli("audit", "verify", "--db", str(tmp_path / "audit.db"), "--checkpoints",
                     str(cps))
    assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run([str(BUILD / "agentboxd"), "--audit-group-ms", "0", "--stdio"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "--audit-group-ms: expected 1..1000" in p.stderr


def test_secrets_and_personal_data_are_redacted_from_the_record(tmp_path):
    """docs/dlp.md, "In the audit log": the client gets its output as it
    was; the record (which keeps a run's code, and of its output only
    sizes and digests) keeps "[REDACTED:kind]" in place of each value, and
    the kind, the field and a salted hash (the same for the same value),
    never the value; the chain still verifies."""
    key = "AKIAQ3EGRJ7WXZ5TLN4K"  # fake, valid format
    email = "hanako.yamada@corp-mail.jp"
    d = DaemonSocket(tmp_path)
    try:
        with agentbox.Sandbox(tier="heavy", url=str(d.path)) as b:
            r = b.run(f"k = '{key}'\nprint('key', k)\nprint('{email}')")
            assert r.stdout == f"key {key}\n{email}\n"
            b.run(f"print('again {key}')")
    finally:
        d.stop()
    salt = (tmp_path / "dlp-salt").stat()
    assert salt.st_mode & 0o777 == 0o600
    events = export(tmp_path)
    text = json.dumps(events)
    assert key not in text and email not in text
    runs = [e for e in events if e.get("kind") == "run"]
    first, second = runs[0]["body"], runs[1]["body"]
    assert first["code"] == ("k = '[REDACTED:aws_access_key_id]'\nprint('key', k)\n"
                             "print('[REDACTED:email]')"), first["code"]
    assert {(n["field"], n["kind"]) for n in first["redacted"]} == {
        ("code", "aws_access_key_id"), ("code", "email")}, first["redacted"]
    for n in first["redacted"] + second["redacted"]:
        assert set(n) == {"field", "kind", "hash"} and n["hash"].startswith("hmac-sha256:"), n
    key_hash = [n["hash"] for n in first["redacted"] if n["kind"] == "aws_access_key_id"]
    assert key_hash == [n["hash"] for n in second["redacted"]]
    p = agentbox_cli("audit", "verify", "--db", str(tmp_path / "audit.db"))
    assert p.returncode == 0, p.stdout + p.stderr

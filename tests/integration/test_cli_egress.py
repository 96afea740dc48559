"""CLI TRANSPORT tests of `agentbox egress`: build/agentbox against the FAKE
daemon (tests/integration/fake_agentboxd.py) on a unix socket.

They check each subcommand's request, output (table, log lines, outline,
--json), escaping of what sandboxes control, argument checks and exit
statuses. They do NOT prove any egress control: the fake daemon proxies
nothing.
"""

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FAKE = HERE / "fake_agentboxd.py"
CLI = Path(os.environ.get("AGENTBOX_BIN", HERE.parents[1] / "build")) / "agentbox"

pytestmark = pytest.mark.skipif(not CLI.is_file(), reason=f"{CLI} is not built")


class Rpc:
    """A raw JSON-RPC client of the fake daemon (plays the agent's side)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rwb")
        self.ids = 0
        self.lock = threading.Lock()

    def send(self, method, params):
        with self.lock:
            self.ids += 1
            self.file.write((json.dumps({"jsonrpc": "2.0", "id": self.ids, "method": method,
                                         "params": params}) + "\n").encode())
            self.file.flush()
            return self.ids

    def recv(self):
        return json.loads(self.file.readline())

    def call(self, method, params):
        self.send(method, params)
        msg = self.recv()
        assert "result" in msg, msg
        return msg["result"]

    def close(self):
        self.file.close()
        self.sock.close()


@pytest.fixture
def daemon(tmp_path):
    """A fake daemon on a socket; yields (socket path, an Rpc client)."""
    FAKE.chmod(FAKE.stat().st_mode | stat.S_IXUSR)
    path = tmp_path / "d.sock"
    proc = subprocess.Popen([sys.executable, str(FAKE), "--socket", str(path)])
    try:
        for _ in range(200):
            if path.exists():
                break
            time.sleep(0.02)
        rpc = Rpc(path)
        yield path, rpc
        rpc.close()
    finally:
        proc.kill()
        proc.wait()


def cli(*args, sock=None, env_socket=None, extra_env=None):
    env = dict(os.environ)
    env.pop("AGENTBOX_SOCKET", None)
    if env_socket:
        env["AGENTBOX_SOCKET"] = str(env_socket)
    env.update(extra_env or {})
    argv = [str(CLI), "egress", *args]
    if sock:
        argv += ["--socket", str(sock)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)


def pending_request(rpc, host, reason, timeout=60):
    """Creates a sandbox and leaves one access request pending for it;
    returns the sandbox id."""
    sid = rpc.call("sandbox.create", {"network": ["api.github.com"]})["sandbox"]
    rpc.send("egress.request_access", {"sandbox": sid, "host": host, "reason": reason,
                                       "timeout": timeout})
    for _ in range(100):
        if rpc.call("egress.pending", {})["requests"]:
            break
        time.sleep(0.02)
    return sid


# ------------------------------------------------------------------ help


def test_help_lists_every_subcommand():
    for argv in (["--help"], ["-h"], ["help"]):
        r = cli(*argv)
        assert r.returncode == 0
        for sub in ("pending", "approve ID", "deny ID", "log", "status", "reload"):
            assert f"agentbox egress {sub}" in r.stdout
    top = subprocess.run([str(CLI), "--help"], capture_output=True, text=True)
    assert "egress" in top.stdout
    assert subprocess.run([str(CLI), "help", "egress"], capture_output=True,
                          text=True).stdout.startswith("Usage: agentbox egress pending")


@pytest.mark.parametrize("sub,needle", [
    ("pending", "--json"), ("approve", "--note TEXT"), ("deny", "--note TEXT"),
    ("log", "--limit N"), ("status", "--sandbox ID"), ("reload", "policy file"),
])
def test_each_subcommand_has_its_own_help(sub, needle):
    r = cli(sub, "--help")
    assert r.returncode == 0 and r.stdout.startswith(f"Usage: agentbox egress {sub}")
    assert needle in r.stdout and "--socket PATH" in r.stdout
    # -h wins over other (even bad) arguments, as for the other verbs
    assert cli(sub, "--bogus", "-h").stdout == r.stdout


def test_no_subcommand_is_a_usage_error():
    r = cli()
    assert r.returncode == 2 and "Usage: agentbox egress" in r.stderr


# ----------------------------------------------------------- bad arguments


@pytest.mark.parametrize("args,needle", [
    (["frobnicate"], "unknown subcommand 'frobnicate' (pending, approve, deny, log, status"),
    (["pending", "--bogus"], "unknown option '--bogus'"),
    (["pending", "extra"], "unexpected argument 'extra'"),
    (["pending", "--note", "x"], "--note does not apply to 'pending'"),
    (["reload", "--json"], "--json does not apply to 'reload'"),
    (["status", "--limit", "3"], "--limit does not apply to 'status'"),
    (["approve"], "missing the request ID"),
    (["deny", "a b"], "'a b' is not a request ID"),
    (["approve", "ar-1", "ar-2"], "unexpected argument 'ar-2'"),
    (["approve", "ar-1", "--note"], "--note needs a value"),
    (["approve", "ar-1", "--note", "\udcff"], "--note: not valid UTF-8"),
    (["log", "--limit", "0"], "--limit 0: expected 1 to 100000"),
    (["log", "--limit", "12x"], "--limit 12x: expected 1 to 100000"),
    (["log", "--limit", "100001"], "expected 1 to 100000"),
    (["log", "--sandbox", ""], "--sandbox '': expected a sandbox id"),
    (["status", "--sandbox", "a\x1bb"], "expected a sandbox id"),
])
def test_bad_arguments_exit_2_with_a_clear_message(daemon, args, needle):
    path, _ = daemon
    r = cli(*args, env_socket=path)
    assert r.returncode == 2, r
    assert needle in r.stderr and r.stderr.startswith("agentbox egress")
    assert "See 'agentbox egress" in r.stderr and r.stdout == ""


def test_without_a_shared_daemon_it_says_how_to_name_one():
    r = cli("pending")
    assert r.returncode == 2
    assert "give --socket PATH or set AGENTBOX_SOCKET" in r.stderr


def test_unreachable_daemon_exits_125(tmp_path):
    r = cli("pending", sock=tmp_path / "none.sock")
    assert r.returncode == 125
    assert r.stderr.startswith("agentbox egress pending: connect to the daemon socket")


def test_agentbox_socket_names_the_daemon(daemon):
    path, _ = daemon
    r = cli("pending", env_socket=path)
    assert (r.returncode, r.stdout) == (0, "no pending access requests\n")


# --------------------------------------------------------------- pending


def test_pending_table_escapes_what_agents_sent(daemon):
    path, rpc = daemon
    sid = pending_request(rpc, "evil.\u202eexample", "need it \x1b[31mnow\x9b")
    r = cli("pending", sock=path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "SANDBOX", "HOST", "AGE", "REASON"]
    assert len(lines) == 2
    cells = lines[1].split()
    assert cells[0].startswith("ar-") and cells[1] == sid
    assert cells[2] == "evil.\\u202eexample"
    assert cells[3].endswith("s")
    assert lines[1].endswith("need it \\u001b[31mnow\\u009b")
    assert "\x1b" not in r.stdout and "\u202e" not in r.stdout and "\x9b" not in r.stdout
    # columns line up: each header starts where its cells start
    assert lines[0].index("HOST") == lines[1].index("evil")


def test_pending_json_is_the_daemons_answer(daemon):
    path, rpc = daemon
    sid = pending_request(rpc, "pypi.org", "pip download \u202e")
    r = cli("pending", "--json", sock=path)
    assert r.returncode == 0 and r.stdout.count("\n") == 1
    assert r.stdout.isascii()  # every control and bidi character is a \u escape
    (req,) = json.loads(r.stdout)["requests"]
    assert (req["sandbox"], req["host"], req["reason"]) == (sid, "pypi.org", "pip download \u202e")
    assert set(req) == {"id", "sandbox", "host", "reason", "requested_at", "uid"}


# -------------------------------------------------------- approve, deny


@pytest.mark.parametrize("verb,decision,answer", [
    ("approve", "approve", "allowed"), ("deny", "deny", "denied")])
def test_decide_answers_the_waiting_agent(daemon, verb, decision, answer):
    path, rpc = daemon
    pending_request(rpc, "pypi.org", "pip download")
    rid = rpc.call("egress.pending", {})["requests"][0]["id"]
    r = cli(verb, rid, "--note", "ticket 1234", sock=path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{'approved' if verb == 'approve' else 'denied'} access request {rid}\n"
    # the agent's request_access (sent by pending_request) gets its answer
    msg = rpc.recv()
    assert msg["result"]["decision"] == answer and msg["result"]["id"] == rid
    log = rpc.call("egress.log", {})["events"]
    (ev,) = [e for e in log if e["kind"] == "egress.access_decision"]
    assert ev["body"] == {"id": rid, "decision": decision, "by": f"uid {os.getuid()}",
                          "note": "ticket 1234"}
    assert rpc.call("egress.pending", {})["requests"] == []


def test_decide_without_a_note_sends_none(daemon):
    path, rpc = daemon
    pending_request(rpc, "pypi.org", "x")
    rid = rpc.call("egress.pending", {})["requests"][0]["id"]
    assert cli("deny", rid, sock=path).returncode == 0
    assert rpc.recv()["result"]["decision"] == "denied"
    (ev,) = [e for e in rpc.call("egress.log", {})["events"]
             if e["kind"] == "egress.access_decision"]
    assert ev["body"]["note"] is None


def test_decide_an_unknown_id_exits_2_with_the_daemons_reason(daemon):
    path, _ = daemon
    r = cli("approve", "ar-99", sock=path)
    assert r.returncode == 2
    assert r.stderr == "agentbox egress approve: egress.decide: no pending access request ar-99\n"


# ------------------------------------------------------------------- log


REQUEST = {"sandbox": "sb-1", "intent": None, "scheme": "https", "host": "api.github.com",
           "addr": "140.82.112.6", "port": 443, "method": "GET", "path": "/repos",
           "status": 200, "bytes_out": 0, "bytes_in": 512, "decision": "allow",
           "rule": "sandbox#0", "reason": None,
           "inspection": {"verdict": "pass", "kinds": []}, "ms": 12}
TS = 1796186073209000000  # 2026-12-02T04:34:33.209Z


def inject(rpc, body, kind="egress.request", session="sb-1", flat=False):
    event = dict(body) if flat else {"seq": 1, "ts": TS, "kind": kind, "session": session,
                                     "actor": "sidecar", "body": body}
    rpc.call("fake.egress_event", {"event": event})


def test_log_prints_one_line_per_request(daemon):
    path, rpc = daemon
    inject(rpc, REQUEST)
    inject(rpc, dict(REQUEST, host="evil.example", path="/", status=403, decision="deny",
                     rule=None, reason="no rule allows evil.example", method="POST"))
    inject(rpc, dict(REQUEST, method="POST", status=403, decision="deny", rule="sandbox#0",
                     reason="method POST not allowed by sandbox#0 (allowed: GET)",
                     inspection={"verdict": "block", "kinds": ["aws_access_key_id"]}))
    r = cli("log", sock=path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["2026-12-02T04:34:33.209Z", "sb-1", "allow", "GET",
                                "api.github.com:443", "/repos", "200", "sandbox#0"]
    assert lines[1].split()[2:8] == ["deny", "POST", "evil.example:443", "/", "403", "no"]
    assert lines[1].endswith(" 403 no rule allows evil.example")
    assert lines[2].endswith(" 403 sandbox#0 (method POST not allowed by sandbox#0 "
                             "(allowed: GET)) [inspection block: aws_access_key_id]")


def test_log_shows_other_events_by_kind(daemon):
    path, rpc = daemon
    sid = rpc.call("sandbox.create", {"network": ["api.github.com"]})["sandbox"]
    rpc.call("egress.intent", {"sandbox": sid, "intent": "docs-lookup", "reason": "docs"})
    r = cli("log", sock=path)
    lines = r.stdout.splitlines()
    assert lines[0].split()[1:3] == [sid, "egress.policy"]
    assert lines[0].endswith('{"rules":[{"host":"api.github.com","id":"sandbox#0"}]}')
    assert lines[1].split()[1:3] == [sid, "egress.intent"]
    assert '"intent":"docs-lookup"' in lines[1]


def test_log_takes_flat_request_events_too(daemon):
    path, rpc = daemon
    inject(rpc, dict(REQUEST, ts=TS), flat=True)
    line = cli("log", sock=path).stdout
    assert line.split() == ["2026-12-02T04:34:33.209Z", "sb-1", "allow", "GET",
                            "api.github.com:443", "/repos", "200", "sandbox#0"]


def test_log_escapes_hosts_paths_and_reasons(daemon):
    path, rpc = daemon
    inject(rpc, dict(REQUEST, host="a\x1b]0;pwn\x07", path="/\u202egnp.exe",
                     decision="deny", rule=None, reason="bad \x9b2J", status=403))
    out = cli("log", sock=path).stdout
    assert "a\\u001b]0;pwn\\u0007:443 /\\u202egnp.exe 403 bad \\u009b2J" in out
    assert not any(c in out for c in "\x1b\x07\u202e\x9b")


def test_log_filters_and_limits(daemon):
    path, rpc = daemon
    for i in range(5):
        inject(rpc, dict(REQUEST, path=f"/{i}"), session="sb-1")
    inject(rpc, dict(REQUEST, sandbox="sb-2", path="/other"), session="sb-2")
    r = cli("log", "--sandbox", "sb-1", "--limit", "2", sock=path)
    assert [ln.split()[5] for ln in r.stdout.splitlines()] == ["/3", "/4"]
    assert cli("log", "--sandbox", "sb-9", sock=path).stdout == "no egress events for sb-9\n"


def test_log_json(daemon):
    path, rpc = daemon
    inject(rpc, dict(REQUEST, reason="x\u202ey"))
    r = cli("log", "--json", "--limit", "1", sock=path)
    assert r.returncode == 0 and r.stdout.count("\n") == 1 and r.stdout.isascii()
    (ev,) = json.loads(r.stdout)["events"]
    assert ev["body"]["reason"] == "x\u202ey"


# --------------------------------------------------------- status, reload


def test_status_outline_and_json(daemon):
    path, rpc = daemon
    r = cli("status", sock=path)
    assert r.returncode == 0
    assert "sidecar:\n  state: running\n" in r.stdout
    assert "intents:\n  docs-lookup:\n    description: Read library documentation\n" in r.stdout
    assert "policy:" not in r.stdout
    j = json.loads(cli("status", "--json", sock=path).stdout)
    assert j["sidecar"]["state"] == "running" and "docs-lookup" in j["intents"]


def test_status_of_a_sandbox_shows_its_effective_policy(daemon):
    path, rpc = daemon
    sid = rpc.call("sandbox.create", {"network": ["api.github.com",
                                                  {"host": "*.example.org",
                                                   "methods": ["get"]}]})["sandbox"]
    rpc.call("egress.intent", {"sandbox": sid, "intent": "docs-lookup"})
    r = cli("status", "--sandbox", sid, sock=path)
    assert r.returncode == 0, r.stderr
    assert f"sandbox: {sid}\n" in r.stdout
    assert ('  allow:\n    - {"id":"sandbox#0","host":"api.github.com"}\n'
            '    - {"id":"sandbox#1","host":"*.example.org","methods":["GET"]}\n') in r.stdout
    assert "  intent: docs-lookup\n" in r.stdout
    j = json.loads(cli("status", "--sandbox", sid, "--json", sock=path).stdout)
    assert j["policy"]["intent"] == "docs-lookup"
    assert [x["id"] for x in j["policy"]["intent_rules"]] == ["intent:docs-lookup#0",
                                                             "intent:docs-lookup#1"]


def test_status_of_an_unknown_sandbox_exits_125(daemon):
    path, _ = daemon
    r = cli("status", "--sandbox", "sb-nope", sock=path)
    assert r.returncode == 125
    assert r.stderr == "agentbox egress status: egress.status: no such sandbox: sb-nope\n"


def test_reload(daemon):
    path, rpc = daemon
    r = cli("reload", sock=path)
    assert r.returncode == 0 and r.stdout.startswith("reloaded the egress policy\n")
    (ev,) = rpc.call("egress.log", {})["events"]
    assert ev["kind"] == "egress.policy" and ev["body"]["event"] == "reloaded"


def test_reload_refused_names_the_problem(tmp_path):
    FAKE.chmod(FAKE.stat().st_mode | stat.S_IXUSR)
    path = tmp_path / "d.sock"
    env = dict(os.environ, FAKE_AGENTBOXD_POLICY_ERROR="policy.yaml:3: unknown key \"alow\"")
    proc = subprocess.Popen([sys.executable, str(FAKE), "--socket", str(path)], env=env)
    try:
        for _ in range(200):
            if path.exists():
                break
            time.sleep(0.02)
        r = cli("reload", sock=path)
        assert r.returncode == 2
        assert r.stderr == ('agentbox egress reload: egress.reload: policy.yaml:3: '
                            'unknown key "alow"\n')
    finally:
        proc.kill()
        proc.wait()


def canned(tmp_path, result):
    """A one-shot daemon that answers the first request with result; returns
    its socket path and a function that waits for it."""
    path = tmp_path / "canned.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        f = conn.makefile("rwb")
        req = json.loads(f.readline())
        f.write((json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": result}) + "\n")
                .encode())
        f.flush()
        f.close()
        conn.close()
        srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return path, lambda: t.join(5)


def test_a_daemon_that_breaks_the_protocol_exits_125(tmp_path):
    """A daemon whose answer lacks what the subcommand needs."""
    for sub, result, needle in (("pending", {"x": 1}, 'no "requests" list'),
                                ("log", {"events": {}}, 'no "events" list'),
                                ("status", [1], "not an object")):
        path, done = canned(tmp_path, result)
        r = cli(sub, sock=path)
        done()
        path.unlink()
        assert r.returncode == 125, r
        assert f"agentbox egress {sub}: the daemon's answer is malformed: {needle}" in r.stderr


@pytest.mark.parametrize("sub,result", [
    ("log", {"events": [1, "x", None, {"kind": 5, "body": [1]},
                        {"body": {"host": 5, "decision": "allow", "port": "x", "status": "y",
                                  "path": None, "rule": 3,
                                  "inspection": {"verdict": 3, "kinds": "z"}}},
                        {"body": {"host": "h" * 5000, "decision": "deny", "method": "GET" * 50,
                                  "inspection": {"verdict": "redact", "kinds": [1, "pii"]}}},
                        {"ts": "garbage"}, {"ts": -1}, {"ts": 1e300}, {"ts": 2 ** 63 - 1},
                        {"ts": "2026-12-02T04:34:33.5Z", "kind": "egress.sidecar"}]}),
    ("pending", {"requests": [1, None, {"id": {"a": 1}, "requested_at": "x"},
                              {"id": 7, "requested_at": -5, "host": ["x"]},
                              {"id": "r", "requested_at": 2 ** 63 - 1, "reason": "y" * 9000}]}),
    ("status", {"a": {"b": {"c": [1, {"d": None}], "e": []}}, "f": {}, "\u202e": "\x1b"}),
])
def test_odd_answers_are_shown_not_crashed_on(tmp_path, sub, result):
    path, done = canned(tmp_path, result)
    r = cli(sub, sock=path)
    done()
    assert r.returncode == 0, r
    assert "\x1b" not in r.stdout and "\u202e" not in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) < 2000


@pytest.mark.parametrize("ts", [1796186073209000000, 1796186073209, 1796186073.209,
                                "2026-12-02T04:34:33.209Z"])
def test_log_reads_every_time_form(tmp_path, ts):
    path, done = canned(tmp_path, {"events": [{"ts": ts, "kind": "egress.request",
                                               "body": REQUEST}]})
    r = cli("log", sock=path)
    done()
    assert r.stdout.startswith("2026-12-02T04:34:33.209Z sb-1 ")

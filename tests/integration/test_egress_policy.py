"""The daemon's side of governed egress (docs/egress.md): the policy file,
sandbox.create's network rules, intents, access requests and their
operator, the egress log, and the supervision of the sidecar.

Tests that need egress on (a CA and a sidecar executable) skip when
egress.status says it is off; the rest (policy file errors, parameter
checks) run with any build."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import BUILD, UID_ARGS, DaemonSocket, RawClient

POLICY = """\
default: deny
deny: ["*.internal.example.com", {host: "report-only.example", report: true}]
allow: ["pypi.org"]
intents:
  docs-lookup:
    description: Read library documentation
    ttl: 10m
    rules:
      - {host: "*.python.org", methods: [GET]}
      - pandas.pydata.org
  blink:
    description: An intent that ends at once
    ttl: 2s
    rules: ["blink.example"]
"""


def write_policy(tmp_path, text, name="policy.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    home = tmp_path_factory.mktemp("egress-home")
    policy = write_policy(home, POLICY)
    d = DaemonSocket(home, "--policy", str(policy), "--pool", "0", "--nano-pool", "0")
    d.policy = policy
    yield d
    d.stop()


def status(d, **params):
    c = RawClient(d)
    try:
        r = c.call("egress.status", params)
    finally:
        c.close()
    assert "result" in r, r
    return r["result"]


@pytest.fixture
def egress_on(daemon):
    st = status(daemon)
    if not st["enabled"]:
        pytest.skip("egress is off in this build: " + st["reason"])
    return daemon


def error_of(reply):
    assert "error" in reply, reply
    return reply["error"]


# ------------------------------------------------------------ policy file


def start_fails(tmp_path, text):
    policy = write_policy(tmp_path, text)
    p = subprocess.run([str(BUILD / "agentboxd"), "--socket", str(tmp_path / "s.sock"), "--home",
                        str(tmp_path / "home"), "--pool", "0", "--nano-pool", "0", *UID_ARGS,
                        "--policy", str(policy)], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0, p
    assert not (tmp_path / "s.sock").exists()
    return p.stderr


@pytest.mark.parametrize("text,line,needle", [
    ("default: deny\ndeny: [\n  a.example,\n", 4, "flow"),             # bad YAML
    ("default: deny\nallowed: []\n", 2, 'unknown key "allowed"'),
    ("default: block\n", 1, "default: expected deny or report"),
    ("deny:\n  - ok.example\n  - {host: x.example, methds: [GET]}\n", 3, '"methds"'),
    ("allow:\n  - host: x.example\n    ports: [70000]\n", 3, "allow[0].ports"),
    ("allow:\n  - 'bad host!'\n", 2, "allow[0]"),
    ("allow: [*.example.org]\n", 1, ""),                               # an alias, unquoted
    ("intents:\n  x:\n    description: d\n    ttl: 48h\n    rules: []\n", 4, "intents.x.ttl"),
    ("intents:\n  x:\n    description: d\n    ttl: 10q\n    rules: []\n", 4, "intents.x.ttl"),
    ("intents:\n  x:\n    ttl: 10m\n    rulez: []\n", 4, 'unknown key "rulez"'),
    ("intents:\n  x:\n    ttl: 10m\n", 3, "rules is required"),
    ("default: deny\ndefault: report\n", 2, "duplicate"),
    ("dlp:\n  secret: shred\n", 2, "dlp.secret: expected off, log, redact or block"),
    ("dlp:\n  detectors: {emails: log}\n", 2, 'dlp.detectors: unknown detector "emails"'),
    ("dlp:\n  pii: log\n  audit: keep\n", 2, 'dlp: unknown key "audit"'),
    ("dlp:\n  detectors:\n    email: false\n", 2, "dlp.detectors.email: expected off, log"),
    ("intents:\n  x:\n    ttl: 10m\n    rules: []\n    dlp: {pii: maybe}\n", 5,
     "intents.x.dlp.pii"),
])
def test_policy_file_errors_stop_the_start_naming_the_line(tmp_path, text, line, needle):
    err = start_fails(tmp_path, text)
    assert f"policy.yaml:{line}:" in err, err
    assert needle in err, err


def test_missing_policy_file_is_refused(tmp_path):
    p = subprocess.run([str(BUILD / "agentboxd"), "--stdio", "--home", str(tmp_path), *UID_ARGS,
                        "--policy", str(tmp_path / "nope.yaml")], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode != 0
    assert "nope.yaml" in p.stderr


@pytest.mark.parametrize("arg", ["api.example=10.0.0.1:80", "api.example=8.8.8.8:53",
                                 "api.example=127.0.0.1", "=127.0.0.1:80",
                                 "api.example=127.0.0.1:0", "1.2.3.4=127.0.0.1:80"])
def test_egress_resolve_accepts_only_loopback(tmp_path, arg):
    p = subprocess.run([str(BUILD / "agentboxd"), "--stdio", "--home", str(tmp_path), *UID_ARGS,
                        "--egress-resolve", arg], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 2, p
    assert "--egress-resolve" in p.stderr


def test_help_documents_the_egress_flags():
    out = subprocess.run([str(BUILD / "agentboxd"), "--help"], capture_output=True,
                         text=True).stdout
    for flag in ("--policy FILE", "--no-egress", "--egress-upstream-ca", "--egress-resolve"):
        assert flag in out


# ------------------------------------------------------ parameter checks


@pytest.mark.parametrize("params,code,needle", [
    ({"network": 5}, -32602, "params.network: expected \"none\" or a list"),
    ({"network": "all"}, -32602, "params.network"),
    ({"network": [{"host": "x.example", "bogus": 1}]}, -32602,
     'params.network[0]: unknown key "bogus"'),
    ({"network": ["bad host!"]}, -32602, "params.network[0]"),
    ({"network": ["ok.example", {"host": "a.example", "ports": [0]}]}, -32602,
     "params.network[1].ports"),
    ({"network": [{"host": "a.example", "methods": []}]}, -32602, "params.network[0].methods"),
    ({"network": [{"host": "a.example", "paths": ["v1/"]}]}, -32602, "params.network[0].paths"),
    ({"network": [{"methods": ["GET"]}]}, -32602, "params.network[0].host"),
    ({"network": ["x.example"] * 257}, -32602, "more than 256 rules"),
    ({"network": ["api.example"], "tier": "nano"}, -32602, "nano tier has no network"),
    ({"dlp": "strict"}, -32602, "params.dlp: expected an object with secret, pii and detectors"),
    ({"dlp": {"pii": "shred"}}, -32602, "params.dlp.pii: expected off, log, redact or block"),
    ({"dlp": {"detectors": {"nope": "block"}}}, -32602,
     'params.dlp.detectors: unknown detector "nope"'),
    ({"dlp": {"detectors": []}}, -32602, "params.dlp.detectors: expected an object"),
])
def test_create_network_errors_name_the_parameter(daemon, params, code, needle):
    c = RawClient(daemon)
    err = error_of(c.call("sandbox.create", params))
    c.close()
    assert err["code"] == code, err
    assert needle in err["message"], err


@pytest.mark.parametrize("method,params,needle", [
    ("egress.intent", {"sandbox": "sb-x"}, "params.intent"),
    ("egress.intent", {"sandbox": "sb-x", "intent": 5}, "params.intent"),
    ("egress.intent", {"sandbox": "sb-x", "intent": None, "bogus": 1}, "params.bogus"),
    ("egress.request_access", {"sandbox": "sb-x"}, "params.host"),
    ("egress.request_access", {"sandbox": "sb-x", "host": "a.example", "timeout": 4000},
     "params.timeout"),
    ("egress.request_access", {"sandbox": "sb-x", "host": "a.example", "reason": 7},
     "params.reason"),
    ("egress.decide", {"id": "ar-1"}, "params.decision"),
    ("egress.decide", {"id": "ar-1", "decision": "maybe"}, "params.decision"),
    ("egress.decide", {"decision": "approve"}, "params.id"),
    ("egress.log", {"limit": 0}, "params.limit"),
    ("egress.log", {"limit": "ten"}, "params.limit"),
    ("egress.status", {"sandbox": 5}, "params.sandbox"),
    ("egress.pending", {"x": 1}, "params.x"),
    ("egress.reload", {"x": 1}, "params.x"),
])
def test_egress_methods_check_their_params(daemon, method, params, needle):
    c = RawClient(daemon)
    err = error_of(c.call(method, params))
    c.close()
    assert err["code"] == -32602, err
    assert needle in err["message"], err


def test_egress_methods_refuse_someone_elses_sandbox(daemon):
    c = RawClient(daemon)
    for method, params in [("egress.intent", {"intent": None}),
                           ("egress.request_access", {"host": "a.example"})]:
        err = error_of(c.call(method, dict(params, sandbox="sb-0000000000000000")))
        assert err["code"] == -32001, err
    c.close()


# ----------------------------------------------------------------- status


def test_status_describes_the_policy(daemon):
    st = status(daemon)
    assert st["policy_file"] == str(daemon.policy)
    assert st["default"] == "deny"
    assert st["deny"] == 2 and st["allow"] == 1
    assert st["intents"]["docs-lookup"] == {"description": "Read library documentation",
                                            "ttl": 600}
    assert st["sidecar"]["state"] in ("running", "starting", "down", "disabled")
    if not st["enabled"]:
        assert st["sidecar"]["state"] == "disabled"
        assert st["reason"]


def test_no_egress_flag_turns_it_off_and_network_is_refused_clearly(tmp_path):
    d = DaemonSocket(tmp_path, "--no-egress", "--pool", "0", "--nano-pool", "0")
    try:
        st = status(d)
        assert st["enabled"] is False and "--no-egress" in st["reason"]
        assert st["sidecar"]["state"] == "disabled"
        assert st["policy_file"] is None and st["intents"] == {}
        # A session that asks for a network is refused, not given none.
        c = RawClient(d)
        err = error_of(c.call("sandbox.create", network=["api.example"]))
        assert err["code"] == -32004
        assert "egress is unavailable" in err["message"]
        # One that does not runs, without proxy variables.
        sb = c.call("sandbox.create", tier="heavy")["result"]["sandbox"]
        r = c.call("sandbox.run", sandbox=sb,
                   code="import os; print(os.environ.get('HTTPS_PROXY'))")["result"]
        assert r["stdout"].strip() == "None", r
        c.call("sandbox.close", sandbox=sb)
        c.close()
    finally:
        d.stop()


# ------------------------------------------------- with egress on: sessions


@pytest.fixture
def session(egress_on):
    c = RawClient(egress_on)
    r = c.call("sandbox.create", network=["API.Example.com.", {"host": "*.example.org",
                                                                "methods": ["get"],
                                                                "paths": ["/v1/"]}])
    assert "result" in r, r
    c.sb = r["result"]["sandbox"]
    c.created = r["result"]
    yield c
    c.call("sandbox.close", sandbox=c.sb)
    c.close()


def test_create_normalizes_rules_and_goes_heavy(session):
    res = session.created
    assert res["tier"] == "heavy"
    assert "network" in res["route_reason"]
    assert res["network"] == [
        {"id": "sandbox#0", "host": "api.example.com", "ports": [80, 443], "websocket": False,
         "report": False},
        {"id": "sandbox#1", "host": "*.example.org", "methods": ["GET"], "paths": ["/v1/"],
         "ports": [80, 443], "websocket": False, "report": False}]
    pol = session.call("egress.status", sandbox=session.sb)["result"]["policy"]
    assert [r["id"] for r in pol["allow"]] == ["policy#0", "sandbox#0", "sandbox#1"]
    assert [r["id"] for r in pol["deny"]] == ["deny#0", "deny#1"]
    assert pol["intent"] is None and pol["intent_expires_ms"] is None


def test_sandbox_without_network_says_none(egress_on):
    c = RawClient(egress_on)
    r = c.call("sandbox.create", tier="heavy")["result"]
    assert r["network"] == "none"
    c.call("sandbox.close", sandbox=r["sandbox"])
    c.close()


def test_intent_set_unknown_clear(session):
    c, sb = session, session.sb
    err = error_of(c.call("egress.intent", sandbox=sb, intent="nope"))
    assert err["code"] == -32602 and "unknown intent \"nope\"" in err["message"]
    assert "docs-lookup" in err["message"]
    r = c.call("egress.intent", sandbox=sb, intent="docs-lookup", reason="read the docs")["result"]
    assert r["intent"] == "docs-lookup" and r["ttl"] == 600 and r["expires_at"].endswith("Z")
    assert [x["id"] for x in r["rules"]] == ["intent:docs-lookup#0", "intent:docs-lookup#1"]
    pol = c.call("egress.status", sandbox=sb)["result"]["policy"]
    assert pol["intent"] == "docs-lookup"
    assert 0 < pol["intent_expires_ms"] <= 600000
    assert [x["id"] for x in pol["intent_rules"]] == ["intent:docs-lookup#0",
                                                      "intent:docs-lookup#1"]
    r = c.call("egress.intent", sandbox=sb, intent=None)["result"]
    assert r["intent"] is None and r["previous"] == "docs-lookup"
    assert c.call("egress.status", sandbox=sb)["result"]["policy"]["intent"] is None
    kinds = [(e["kind"], e["body"].get("action")) for e in
             c.call("egress.log", sandbox=sb)["result"]["events"]]
    assert ("egress.intent", "set") in kinds and ("egress.intent", "cleared") in kinds


def test_intent_expires(session):
    c, sb = session, session.sb
    c.call("egress.intent", sandbox=sb, intent="blink")
    assert c.call("egress.request_access", sandbox=sb, host="blink.example")["result"][
        "decision"] == "allowed"
    time.sleep(2.6)
    assert c.call("egress.status", sandbox=sb)["result"]["policy"]["intent"] is None
    events = c.call("egress.log", sandbox=sb)["result"]["events"]
    assert any(e["kind"] == "egress.intent" and e["body"] == {"action": "expired",
                                                               "intent": "blink"}
               for e in events), events
    r = c.call("egress.request_access", sandbox=sb, host="blink.example", timeout=0)["result"]
    assert r["decision"] == "pending"


def test_request_access_decided_by_policy(session):
    c, sb = session, session.sb
    c.call("egress.intent", sandbox=sb, intent="docs-lookup")
    r = c.call("egress.request_access", sandbox=sb, host="docs.python.org")["result"]
    assert (r["decision"], r["rule"]) == ("allowed", "intent:docs-lookup#0")
    r = c.call("egress.request_access", sandbox=sb, host="API.example.com")["result"]
    assert (r["decision"], r["rule"], r["host"]) == ("allowed", "sandbox#0", "api.example.com")
    r = c.call("egress.request_access", sandbox=sb, host="pypi.org")["result"]
    assert (r["decision"], r["rule"]) == ("allowed", "policy#0")
    r = c.call("egress.request_access", sandbox=sb, host="db.internal.example.com")["result"]
    assert (r["decision"], r["rule"]) == ("denied", "deny#0")
    # A deny rule in report mode does not deny.
    r = c.call("egress.request_access", sandbox=sb, host="report-only.example",
               timeout=0)["result"]
    assert r["decision"] == "pending"
    err = error_of(c.call("egress.request_access", sandbox=sb, host="*.example.net"))
    assert err["code"] == -32602 and "params.host" in err["message"]


def test_request_pending_then_approved_by_an_operator(session, egress_on):
    c, sb = session, session.sb
    result = {}

    def ask():
        result["r"] = c.call("egress.request_access", sandbox=sb, host="api.github.com",
                             reason="fetch a release", timeout=60)

    t = threading.Thread(target=ask)
    t.start()
    op = RawClient(egress_on)
    deadline = time.time() + 10
    pending = []
    while time.time() < deadline and not pending:
        pending = [p for p in op.call("egress.pending")["result"]["requests"]
                   if p["sandbox"] == sb and p["host"] == "api.github.com"]
        time.sleep(0.05)
    assert pending, "the request never showed as pending"
    p = pending[0]
    assert p["reason"] == "fetch a release" and p["waiting"] is True and p["uid"] == 0
    assert t.is_alive(), "request_access answered before a decision"
    d = op.call("egress.decide", id=p["id"], decision="approve", note="ok for the release")
    assert d["result"]["decision"] == "approve", d
    t.join(10)
    r = result["r"]["result"]
    assert (r["decision"], r["rule"], r["id"]) == ("allowed", "grant:" + p["id"], p["id"])
    pol = op.call("egress.status", sandbox=sb)["result"]["policy"]
    assert {"id": "grant:" + p["id"], "host": "api.github.com", "ports": [80, 443],
            "websocket": False, "report": False} in pol["allow"]
    # Decided: gone from the list, and a second decision is refused.
    assert p["id"] not in [x["id"] for x in op.call("egress.pending")["result"]["requests"]]
    err = error_of(op.call("egress.decide", id=p["id"], decision="deny"))
    assert err["code"] == -32602 and "params.id" in err["message"]
    events = op.call("egress.log", sandbox=sb)["result"]["events"]
    dec = [e for e in events if e["kind"] == "egress.access_decision"
           and e["body"]["id"] == p["id"]]
    assert dec and dec[-1]["body"]["by"] == "operator" and dec[-1]["body"]["decision"] == \
        "approved" and dec[-1]["body"]["note"] == "ok for the release"
    op.close()


def test_pending_times_out_then_a_late_approval_still_grants(session, egress_on):
    c, sb = session, session.sb
    t0 = time.time()
    r = c.call("egress.request_access", sandbox=sb, host="late.example", timeout=1)["result"]
    assert r["decision"] == "pending" and 0.9 < time.time() - t0 < 10
    op = RawClient(egress_on)
    d = op.call("egress.decide", id=r["id"], decision="approve")
    assert "result" in d, d
    assert c.call("egress.request_access", sandbox=sb, host="late.example")["result"][
        "rule"] == "grant:" + r["id"]
    # A denial answers a waiting request with "denied".
    r2 = c.call("egress.request_access", sandbox=sb, host="nope.example", timeout=0)["result"]
    op.call("egress.decide", id=r2["id"], decision="deny")
    assert c.call("egress.request_access", sandbox=sb, host="nope.example", timeout=0)[
        "result"]["decision"] == "pending"
    events = op.call("egress.log", sandbox=sb, limit=500)["result"]["events"]
    assert any(e["kind"] == "egress.access_decision" and e["body"]["id"] == r["id"]
               and e["body"]["by"] == "timeout" for e in events)
    op.close()


def test_closing_the_sandbox_withdraws_its_requests(egress_on):
    c = RawClient(egress_on)
    sb = c.call("sandbox.create", network=["a.example"])["result"]["sandbox"]
    r = c.call("egress.request_access", sandbox=sb, host="b.example", timeout=0)["result"]
    c.call("sandbox.close", sandbox=sb)
    op = RawClient(egress_on)
    assert r["id"] not in [x["id"] for x in op.call("egress.pending")["result"]["requests"]]
    events = op.call("egress.log", sandbox=sb)["result"]["events"]
    assert any(e["kind"] == "egress.access_decision" and e["body"]["decision"] == "withdrawn"
               for e in events)
    op.close()
    c.close()


def test_nano_session_has_no_egress(egress_on):
    c = RawClient(egress_on)
    r = c.call("sandbox.create", tier="nano")
    if "error" in r:
        pytest.skip("no nano tier: " + r["error"]["message"])
    sb = r["result"]["sandbox"]
    err = error_of(c.call("egress.intent", sandbox=sb, intent="docs-lookup"))
    assert err["code"] == -32004 and "nano" in err["message"]
    c.call("sandbox.close", sandbox=sb)
    c.close()


def test_egress_log_of_every_sandbox_and_limit(egress_on):
    op = RawClient(egress_on)
    events = op.call("egress.log")["result"]["events"]
    kinds = {e["kind"] for e in events}
    assert "egress.policy" in kinds and "egress.sidecar" in kinds
    assert all(k.startswith("egress.") for k in kinds)
    two = op.call("egress.log", limit=2)["result"]["events"]
    assert len(two) == 2 and two == events[-2:] or two[-1]["seq"] >= events[-1]["seq"]
    op.close()


def test_reload(egress_on, tmp_path):
    op = RawClient(egress_on)
    sb = op.call("sandbox.create", network=["a.example"])["result"]["sandbox"]
    op.call("egress.intent", sandbox=sb, intent="docs-lookup")
    try:
        egress_on.policy.write_text("default: deny\nallow: [\n")
        err = error_of(op.call("egress.reload"))
        assert "policy.yaml:" in err["message"] and "unchanged" in err["message"]
        assert status(egress_on)["intents"].keys() == {"docs-lookup", "blink"}
        egress_on.policy.write_text("default: report\nintents:\n  other:\n    ttl: 1m\n"
                                    "    rules: [x.example]\n")
        r = op.call("egress.reload")["result"]
        assert r["default"] == "report" and r["intents"] == ["other"]
        pol = op.call("egress.status", sandbox=sb)["result"]["policy"]
        assert pol["mode"] == "report" and pol["intent"] is None  # its intent is gone
    finally:
        egress_on.policy.write_text(POLICY)
        op.call("egress.reload")
        op.call("sandbox.close", sandbox=sb)
        op.close()


# --------------------------------------------------------------- sidecar


def test_a_hung_sidecar_is_killed_restarted_and_recorded(egress_on):
    """A sidecar that stops answering (SIGSTOP: no pong) is killed within
    the 5 s the daemon allows, recorded as hung, restarted, and the
    sandboxes are re-attached: a request through the relay is answered by
    the new one. Sandboxes run throughout."""
    deadline = time.time() + 20
    while status(egress_on)["sidecar"]["state"] != "running":
        assert time.time() < deadline, status(egress_on)
        time.sleep(0.1)
    st = status(egress_on)["sidecar"]
    c = RawClient(egress_on)
    sb = c.call("sandbox.create", network=["a.example"])["result"]["sandbox"]
    os.kill(st["pid"], signal.SIGSTOP)
    try:
        r = c.call("sandbox.run", sandbox=sb, code="print(6 * 7)")
        assert "42" in json.dumps(r["result"]), r
        deadline = time.time() + 20
        while True:
            now = status(egress_on)["sidecar"]
            if now["pid"] not in (None, st["pid"]) and now["state"] == "running":
                break
            assert time.time() < deadline, now
            time.sleep(0.2)
    finally:
        try:
            os.kill(st["pid"], signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert now["restarts"] == st["restarts"] + 1, (st, now)
    code = ("import socket\n"
            "s = socket.create_connection(('127.0.0.1', 3128), timeout=20)\n"
            "s.sendall(b'GET http://b.example/ HTTP/1.1\\r\\nHost: b.example\\r\\n\\r\\n')\n"
            "print(s.recv(100).split(b'\\r\\n')[0].decode())\n")
    r = c.call("sandbox.run", sandbox=sb, code=code)["result"]
    assert r["stdout"].strip() == "HTTP/1.1 403 Forbidden", r
    events = c.call("egress.log", limit=1000)["result"]["events"]
    hung = [e["body"] for e in events if e["kind"] == "egress.sidecar"
            and e["body"]["state"] == "hung"]
    assert hung and hung[-1]["pid"] == st["pid"], events[-10:]
    c.call("sandbox.close", sandbox=sb)
    c.close()

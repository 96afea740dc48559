"""SDK TRANSPORT tests of the egress methods, against the FAKE daemon
(tests/integration/fake_agentboxd.py): Sandbox(network=...), set_intent,
the intent() context manager, request_access, egress_status.

They prove what the SDK sends and how it reads the answers, waits and
raises. They do NOT prove any egress control: the fake daemon proxies
nothing.
"""

import json
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "python"))

import agentbox  # noqa: E402
from agentbox import (AccessDecision, DaemonError, InvalidArgument,  # noqa: E402
                      InvalidArgumentType, Sandbox, SandboxDeadError, SandboxError)
from agentbox import _transport  # noqa: E402
from agentbox import sandbox as sandbox_mod  # noqa: E402

FAKE = HERE / "fake_agentboxd.py"


@pytest.fixture(autouse=True)
def fake_daemon(monkeypatch, tmp_path):
    """Points the SDK at the fake daemon and gives every test a fresh one."""
    FAKE.chmod(FAKE.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("AGENTBOX_BIN", str(FAKE))
    monkeypatch.delenv("AGENTBOX_DAEMON", raising=False)
    monkeypatch.delenv("AGENTBOX_SOCKET", raising=False)
    agentbox.shutdown_daemon()
    yield
    agentbox.shutdown_daemon()


@pytest.fixture
def sent(monkeypatch):
    """Every call the SDK makes: (method, params, read timeout)."""
    calls = []
    orig = _transport.Connection.call

    def call(self, method, params, timeout=None, **kw):
        calls.append((method, dict(params), timeout))
        return orig(self, method, params, timeout=timeout, **kw)

    monkeypatch.setattr(_transport.Connection, "call", call)
    return calls


@pytest.fixture
def shared(tmp_path):
    """A fake daemon on a socket (for an operator on a second connection)."""
    path = tmp_path / "d.sock"
    proc = subprocess.Popen([sys.executable, str(FAKE), "--socket", str(path)])
    try:
        for _ in range(200):
            if path.exists():
                break
            time.sleep(0.02)
        yield path
    finally:
        agentbox.shutdown_daemon()
        proc.kill()
        proc.wait()


def operator_call(path, method, params):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(path))
        f = s.makefile("rwb")
        f.write((json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
                 + "\n").encode())
        f.flush()
        return json.loads(f.readline())


def background(fn, *args, **kw):
    """Runs fn in a thread; returns a function that joins it (within 10 s)
    and returns ("ok", value) or ("raised", exception)."""
    out = []

    def target():
        try:
            out.append(("ok", fn(*args, **kw)))
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out.append(("raised", e))

    t = threading.Thread(target=target, daemon=True)
    t.start()

    def join():
        t.join(10)
        assert not t.is_alive(), f"{fn} did not finish within 10 s"
        return out[0]
    return join


# --------------------------------------------------------------- network


def test_network_rules_are_sent_and_the_normalized_form_kept(sent):
    rules = ["API.github.com.", {"host": "*.example.org", "methods": ["get"], "paths": ["/v1/"],
                                 "ports": [443], "max_bytes_out": 1048576}]
    with Sandbox(network=rules) as box:
        assert box.network == [
            {"id": "sandbox#0", "host": "api.github.com"},
            {"id": "sandbox#1", "host": "*.example.org", "methods": ["GET"], "paths": ["/v1/"],
             "ports": [443], "max_bytes_out": 1048576}]
    (create,) = [p for m, p, _ in sent if m == "sandbox.create"]
    assert create["network"] == rules


def test_network_none_and_default(sent):
    with Sandbox(network="none") as box:
        assert box.network == []
    with Sandbox(network=("pypi.org",)):  # a tuple is sent as a list
        pass
    with Sandbox():
        pass
    creates = [p for m, p, _ in sent if m == "sandbox.create"]
    assert creates[0]["network"] == "none"
    assert creates[1]["network"] == ["pypi.org"]
    assert "network" not in creates[2]


@pytest.mark.parametrize("network,exc,needle", [
    (42, TypeError, "network must be \"none\" or a list of rules"),
    ({"host": "x"}, TypeError, "network must be \"none\" or a list"),
    (b"pypi.org", TypeError, "got bytes"),
    (["ok.example", 3], TypeError, "network[1] must be a host pattern (str) or a rule (dict)"),
    ([None], TypeError, "network[0]"),
    ("pypi.org", ValueError, "for one host write network=['pypi.org']"),
    ("all", ValueError, "network must be \"none\" or a list of rules, got 'all'"),
])
def test_bad_network_is_refused_before_anything_is_sent(sent, network, exc, needle):
    with pytest.raises(exc) as ei:
        Sandbox(network=network)
    assert needle in str(ei.value) and isinstance(ei.value, InvalidArgument)
    assert sent == []


def test_a_rule_the_daemon_refuses_is_invalid_argument():
    with pytest.raises(InvalidArgument) as ei:
        Sandbox(network=[{"host": "x.example", "verbs": ["GET"]}])
    assert 'network[0]: unknown key "verbs"' in str(ei.value)
    assert ei.value.code == -32602


# ---------------------------------------------------------------- intent


def test_set_intent_sends_and_returns(sent):
    with Sandbox(network=["api.github.com"]) as box:
        r = box.set_intent("docs-lookup", reason="read the pandas docs")
        assert r["sandbox"] == box.id and r["intent"] == "docs-lookup"
        assert r["expires_at"] > time.time_ns()
        assert [x["host"] for x in r["rules"]] == ["*.python.org", "pandas.pydata.org"]
        cleared = box.set_intent(None)
        assert cleared == {"sandbox": box.id, "intent": None, "expires_at": None, "rules": []}
    intents = [p for m, p, _ in sent if m == "egress.intent"]
    assert intents == [{"intent": "docs-lookup", "reason": "read the pandas docs",
                        "sandbox": intents[0]["sandbox"]},
                       {"intent": None, "sandbox": intents[0]["sandbox"]}]


def test_set_intent_errors():
    with Sandbox() as box:
        with pytest.raises(InvalidArgument) as ei:
            box.set_intent("world-domination")
        assert "unknown intent 'world-domination' (intents: blink, docs-lookup, pypi)" \
            in str(ei.value)
        for bad in (3, ["docs-lookup"], b"docs-lookup"):
            with pytest.raises(TypeError, match="name must be a str"):
                box.set_intent(bad)
        with pytest.raises(TypeError, match="reason must be a str"):
            box.set_intent("docs-lookup", reason=5)
        with pytest.raises(ValueError, match="name must not be empty"):
            box.set_intent("")
    with pytest.raises(SandboxDeadError):
        box.set_intent("docs-lookup")


def active_intent(box):
    return box.egress_status()["policy"]["intent"]


def test_intent_context_restores_the_previous_intent(sent):
    with Sandbox() as box:
        with box.intent("docs-lookup", reason="docs") as r:
            assert r["intent"] == "docs-lookup" and active_intent(box) == "docs-lookup"
            with box.intent("pypi", reason="download"):
                assert active_intent(box) == "pypi"
            assert active_intent(box) == "docs-lookup"
        assert active_intent(box) is None
        ids = [(p["intent"], p.get("reason")) for m, p, _ in sent if m == "egress.intent"]
        # the outer intent is put back with its own reason, then cleared
        assert ids == [("docs-lookup", "docs"), ("pypi", "download"),
                       ("docs-lookup", "docs"), (None, None)]


def test_intent_context_restores_when_the_body_raises():
    with Sandbox() as box:
        box.set_intent("pypi")
        with pytest.raises(ZeroDivisionError):
            with box.intent("docs-lookup"):
                assert active_intent(box) == "docs-lookup"
                1 / 0
        assert active_intent(box) == "pypi"
        with pytest.raises(KeyError):
            with box.intent("docs-lookup"):
                with box.intent("blink"):
                    raise KeyError("inner")
        assert active_intent(box) == "pypi"


def test_intent_context_does_not_renew_an_expired_intent(sent):
    with Sandbox() as box:
        box.set_intent("blink")  # lives 0.2 s
        with box.intent("docs-lookup"):
            time.sleep(0.4)
        assert active_intent(box) is None
    last = [p for m, p, _ in sent if m == "egress.intent"][-1]
    assert last["intent"] is None


def test_intent_context_keeps_the_body_error_when_restoring_fails():
    box = Sandbox()
    with pytest.raises(RuntimeError) as ei:
        with box.intent("docs-lookup"):
            # the daemon forgets the sandbox: restoring then fails
            box._conn.call("sandbox.close", {"sandbox": box.id})
            raise RuntimeError("the body's own error")
    assert str(ei.value) == "the body's own error"
    notes = getattr(ei.value, "__notes__", [])
    if sys.version_info >= (3, 11):
        assert len(notes) == 1 and "restoring the intent before 'docs-lookup' failed" in notes[0]
    box._closed = True


def test_intent_context_after_close_does_not_call():
    box = Sandbox()
    with box.intent("docs-lookup"):
        box.close()
    assert box.closed


def test_expired_reads_the_daemons_times():
    now = time.time()
    for t in (now - 5, (now - 5) * 1e3, int((now - 5) * 1e9), "2020-01-01T00:00:00Z"):
        assert sandbox_mod._expired(t), t
    for t in (now + 60, int((now + 60) * 1e3), int((now + 60) * 1e9),
              "2999-01-01T00:00:00+00:00", None, "soon", True):
        assert not sandbox_mod._expired(t), t


# -------------------------------------------------------- request_access


def test_request_access_allowed_by_rule_and_by_intent(sent):
    with Sandbox(network=["api.github.com"]) as box:
        d = box.request_access("api.github.com", reason="list the repos", timeout=5)
        assert d == "allowed" and isinstance(d, str) and isinstance(d, AccessDecision)
        assert (d.rule, d.host, d.reason) == ("sandbox#0", "api.github.com", None)
        assert d.id.startswith("ar-") and d.result["sandbox"] == box.id
    (first, *_) = [(p, t) for m, p, t in sent if m == "egress.request_access"]
    assert first[0] == {"host": "api.github.com", "reason": "list the repos", "timeout": 5,
                        "sandbox": first[0]["sandbox"]}
    # the read timeout is longer than the daemon's wait
    assert first[1] == 5 + sandbox_mod.ACCESS_GRACE_S


def test_request_access_follows_the_intent():
    with Sandbox() as box:
        assert box.request_access("docs.python.org", timeout=0) == "pending"
        with box.intent("docs-lookup"):
            d = box.request_access("docs.python.org", timeout=0)
            assert d == "allowed" and d.rule == "intent:docs-lookup#0"


def test_request_access_denied_by_policy():
    with Sandbox() as box:
        d = box.request_access("db.internal.example.com", reason="x")
        assert d == "denied" and d.rule == "deny#0"


def test_request_access_pending_after_timeout(sent, monkeypatch):
    with Sandbox() as box:
        # A call's default read timeout far below the wait: request_access
        # must not use it.
        default = _transport.CALL_TIMEOUT_S
        monkeypatch.setattr(_transport, "CALL_TIMEOUT_S", 0.1)
        t0 = time.monotonic()
        d = box.request_access("pypi.org", reason="pip download", timeout=0.5)
        assert d == "pending" and time.monotonic() - t0 >= 0.5
        assert d.reason == "waiting for an operator" and d.rule is None
        sid = box.id
        _transport.CALL_TIMEOUT_S = default  # for close()
    params = [p for m, p, _ in sent if m == "egress.request_access"]
    assert params == [{"host": "pypi.org", "reason": "pip download", "timeout": 0.5,
                       "sandbox": sid}]


def test_request_access_gives_up_on_a_daemon_that_never_answers(monkeypatch):
    monkeypatch.setattr(sandbox_mod, "ACCESS_GRACE_S", 0.3)
    with Sandbox() as box:
        t0 = time.monotonic()
        with pytest.raises(DaemonError, match="did not answer within 0.5 s"):
            box.request_access("hang.example", timeout=0.2)
        assert time.monotonic() - t0 < 5


def test_request_access_approved_by_an_operator(shared):
    with Sandbox(url=str(shared)) as box:
        join = background(box.request_access, "pypi.org", reason="pip download", timeout=30)
        for _ in range(250):
            reqs = operator_call(shared, "egress.pending", {})["result"]["requests"]
            if reqs:
                break
            time.sleep(0.02)
        (req,) = reqs
        assert (req["sandbox"], req["host"], req["reason"]) == (box.id, "pypi.org",
                                                                 "pip download")
        r = operator_call(shared, "egress.decide", {"id": req["id"], "decision": "approve",
                                                    "note": "ok"})
        assert r["result"] == {"id": req["id"], "decision": "approve"}
        kind, d = join()
        assert kind == "ok" and d == "allowed" and d.id == req["id"]
        assert d.rule == f"grant:{req['id']}" and d.reason == "ok"
        # the grant is part of the sandbox's policy from then on
        allow = box.egress_status()["policy"]["allow"]
        assert {"id": f"grant:{req['id']}", "host": "pypi.org"} in allow


def test_request_access_denied_by_an_operator(shared):
    with Sandbox(url=str(shared)) as box:
        join = background(box.request_access, "paste.example", timeout=30)
        for _ in range(250):
            reqs = operator_call(shared, "egress.pending", {})["result"]["requests"]
            if reqs:
                break
            time.sleep(0.02)
        operator_call(shared, "egress.decide", {"id": reqs[0]["id"], "decision": "deny"})
        kind, d = join()
        assert kind == "ok" and d == "denied"


@pytest.mark.parametrize("kw,exc,needle", [
    ({"host": 3}, TypeError, "host must be a str"),
    ({"host": ""}, ValueError, "host must not be empty"),
    ({"host": "x.example", "reason": ["why"]}, TypeError, "reason must be a str"),
    ({"host": "x.example", "timeout": "30"}, TypeError, "timeout must be a number"),
    ({"host": "x.example", "timeout": True}, TypeError, "timeout must be a number"),
    ({"host": "x.example", "timeout": -1}, ValueError, "timeout must be between 0 and 3600"),
    ({"host": "x.example", "timeout": 3601}, ValueError, "between 0 and 3600"),
    ({"host": "x.example", "timeout": float("nan")}, ValueError, "between 0 and 3600"),
])
def test_request_access_argument_checks(sent, kw, exc, needle):
    with Sandbox() as box:
        with pytest.raises(exc, match=needle.replace("(", r"\(")) as ei:
            box.request_access(**kw)
        assert isinstance(ei.value, InvalidArgument)
    assert [m for m, _, _ in sent if m == "egress.request_access"] == []


def test_malformed_decision_is_a_daemon_error(monkeypatch):
    with Sandbox() as box:
        monkeypatch.setattr(box, "_call", lambda *a, **k: {"decision": "maybe"})
        with pytest.raises(DaemonError, match="malformed result"):
            box.request_access("x.example")


# ---------------------------------------------------------------- status


def test_egress_status(sent):
    with Sandbox(network=["api.github.com"]) as box:
        box.set_intent("docs-lookup")
        st = box.egress_status()
        p = st["policy"]
        assert st["sandbox"] == box.id and st["sidecar"]["state"] == "running"
        assert p["allow"] == [{"id": "sandbox#0", "host": "api.github.com"}]
        assert p["deny"] == [{"id": "deny#0", "host": "*.internal.example.com"}]
        assert p["intent"] == "docs-lookup" and 0 < p["intent_expires_ms"] <= 600000
        sid = box.id
    assert ("egress.status", {"sandbox": sid}, None) in sent


def test_errors_keep_the_sdk_types():
    with Sandbox() as box:
        sid = box.id
    with pytest.raises(SandboxDeadError):
        box.egress_status()
    with pytest.raises(SandboxDeadError):
        box.request_access("x.example")
    box2 = Sandbox()
    box2._conn.call("sandbox.close", {"sandbox": box2.id})
    with pytest.raises(SandboxDeadError) as ei:
        box2.egress_status()
    assert ei.value.code == -32001 and sid != box2.id
    assert isinstance(ei.value, SandboxError)
    box2._closed = True


def test_invalid_argument_type_is_both():
    e = InvalidArgumentType("x")
    assert isinstance(e, TypeError) and isinstance(e, ValueError)
    assert isinstance(e, InvalidArgument) and e.code == -32602

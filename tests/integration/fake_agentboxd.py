#!/usr/bin/python3
"""A FAKE agentboxd for the SDK transport tests. It isolates nothing.

Speaks the JSON-RPC protocol of docs/protocol.md over stdio (``--stdio``) or
a unix socket (``--socket PATH``) with canned behaviour. ``sandbox.run``
executes nothing: each line of the code is a directive:

    text            -> "text\\n" on stdout (one sandbox.output notification)
    err:text        -> "text\\n" on stderr
    sleep:S         -> sleep S seconds
    raise:CODE      -> the run fails with JSON-RPC error CODE
    refuse:CODE:M   -> the run fails with JSON-RPC error CODE, message M
    status:S:N      -> the result has status S and exit code N
    exception       -> status "error", exit 1, a ZeroDivisionError
    value:V         -> the result's value is V
    hang            -> never answer this request
    garbage         -> write a line that is not JSON
    exit:N          -> exit at once with status N
    truncated:S     -> the result says stream S (stdout or stderr) was truncated
    limit:L         -> the result's limit is L (e.g. memory)
    degraded:A,B    -> the result lists layers A and B as degraded

Started with ``--degrade A,B`` (as ``agentboxd`` takes it), every result
and sandbox lists those layers as degraded. Env FAKE_AGENTBOXD_REFUSE makes
it print that text on stderr and exit 1 at start, as agentboxd does when a
layer is missing.

Egress (docs/egress.md, "Protocol methods"): ``sandbox.create`` takes
``network`` ("none" or a list of rules) and answers it normalized;
``egress.intent``, ``egress.request_access``, ``egress.pending``,
``egress.decide``, ``egress.log``, ``egress.status`` and ``egress.reload``
take and answer what docs/egress.md says, on canned policy: the intents
``docs-lookup`` (rules ``*.python.org`` GET and ``pandas.pydata.org``, ttl
600 s), ``pypi`` (``pypi.org``, 60 s) and ``blink`` (``blink.example``,
0.2 s), a deny list ``*.internal.example.com``. ``request_access`` is allowed
when a rule or the live intent covers the host, denied by the deny list,
else held for ``egress.decide`` from any connection for up to ``timeout``
seconds (then "pending"); host ``hang.example`` is never answered. Request
ids are strings ``ar-N``; times are nanoseconds since 1970. The fake-only
method ``fake.egress_event`` ({"event": {...}}) appends an event to what
``egress.log`` returns; env FAKE_AGENTBOXD_POLICY_ERROR makes
``egress.reload`` fail with that message (-32602).

Time travel (docs/protocol.md, "Time travel"): ``sandbox.history``,
``sandbox.rewind``, ``sandbox.inspect`` and ``sandbox.diff`` answer what a
test gave with the fake-only method ``fake.answer`` ({"of": M, "result": R}
or {"of": M, "error": {"code", "message"}}), from any connection and
for any sandbox id; unset, they fail with -32001 "no such sandbox: ID".
``fake.calls`` returns {"calls": [{"method", "params"}]}: every such request,
oldest first.

Runs are served in threads, so answers may come out of order. Env
FAKE_AGENTBOXD_LOG names a file that gets one JSON line per start
({"argv": ..., "home": $AGENTBOX_HOME}).
"""

import base64
import json
import os
import socket
import sys
import threading
import time

lock = threading.Lock()
sandboxes = {}  # id -> {"files": {path: bytes}, "busy": bool, "limits": {...}}
counter = [0]
degraded_layers = []  # from --degrade

# Egress state (docs/egress.md), shared by every connection.
INTENTS = {"docs-lookup": {"description": "Read library documentation", "ttl": 600,
                           "rules": [{"id": "intent:docs-lookup#0", "host": "*.python.org",
                                      "methods": ["GET"]},
                                     {"id": "intent:docs-lookup#1",
                                      "host": "pandas.pydata.org"}]},
           "pypi": {"description": "Download packages", "ttl": 60,
                    "rules": [{"id": "intent:pypi#0", "host": "pypi.org"}]},
           "blink": {"description": "Expires at once (for tests)", "ttl": 0.2,
                     "rules": [{"id": "intent:blink#0", "host": "blink.example"}]}}
DENY = [{"id": "deny#0", "host": "*.internal.example.com"}]
RULE_KEYS = {"host", "methods", "paths", "ports", "max_bytes_out", "websocket", "report"}
egress_events = []   # what egress.log returns, oldest first
access = {}          # request id -> {"id", "sandbox", "host", "reason", "requested_at",
                     #                "uid", "decision", "done": Event}
egress_seq = [0]
TIME_TRAVEL = ("sandbox.history", "sandbox.rewind", "sandbox.inspect", "sandbox.diff")
canned = {}          # method -> {"result": ...} or {"error": {...}} (fake.answer)
canned_calls = []    # [{"method", "params"}] of the time travel requests


class RpcError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def check_path(path):
    if not isinstance(path, str) or path.startswith("/") or ".." in path.split("/"):
        raise RpcError(-32003, f"path {path!r} is outside the workspace")
    return path


def new_box():
    with lock:
        counter[0] += 1
        sid = "sb-%016x" % counter[0]
        sandboxes[sid] = {"files": {}, "busy": False, "id": sid, "network": [],
                          "grants": [], "intent": None}
    return sid


def now_ns():
    return time.time_ns()


def record(kind, sandbox, body):
    with lock:
        egress_seq[0] += 1
        egress_events.append({"seq": egress_seq[0], "ts": now_ns(), "kind": kind,
                              "session": sandbox, "actor": "daemon", "body": body})


def normalize_rules(network):
    """sandbox.create's network: "none" or a list of rules, as the daemon
    normalizes them (docs/egress.md, "Rules")."""
    if network is None or network == "none":
        return []
    if not isinstance(network, list):
        raise RpcError(-32602, 'network: expected "none" or a list of rules')
    out = []
    for i, rule in enumerate(network):
        if isinstance(rule, str):
            rule = {"host": rule}
        if not isinstance(rule, dict):
            raise RpcError(-32602, f"network[{i}]: expected a host pattern or an object")
        for key in rule:
            if key not in RULE_KEYS:
                raise RpcError(-32602, f"network[{i}]: unknown key \"{key}\"")
        if not isinstance(rule.get("host"), str) or not rule["host"]:
            raise RpcError(-32602, f"network[{i}]: host: expected a host pattern")
        norm = {"id": f"sandbox#{i}", **rule, "host": rule["host"].lower().rstrip(".")}
        if "methods" in norm:
            norm["methods"] = [m.upper() for m in norm["methods"]]
        out.append(norm)
    return out


def host_matches(pattern, host):
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


def live_intent(box):
    it = box.get("intent")
    if it and it["expires_ns"] <= now_ns():
        box["intent"] = None
        record("egress.intent", box["id"], {"intent": it["name"], "event": "expired"})
        it = None
    return it


def effective_policy(box):
    it = live_intent(box)
    return {"mode": "deny", "deny": DENY, "allow": box["network"] + box["grants"],
            "intent": it["name"] if it else None,
            "intent_rules": INTENTS[it["name"]]["rules"] if it else [],
            "intent_expires_ms": (it["expires_ns"] - now_ns()) // 1000000 if it else None}


def get_box(params):
    sid = params.get("sandbox")
    box = sandboxes.get(sid)
    if box is None:
        raise RpcError(-32001, f"no such sandbox: {sid}")
    return box


class Session:
    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.wlock = threading.Lock()

    def send(self, obj=None, raw=None):
        line = raw if raw is not None else (json.dumps(obj) + "\n").encode()
        with self.wlock:
            self.writer.write(line)
            self.writer.flush()

    def reply(self, req_id, result=None, error=None):
        if req_id is None:
            return
        msg = {"jsonrpc": "2.0", "id": req_id}
        if error is not None:
            msg["error"] = {"code": error.code, "message": str(error)}
        else:
            msg["result"] = result
        self.send(msg)

    def run(self, req_id, params):
        try:
            box = get_box(params)
            with lock:
                if box["busy"]:
                    raise RpcError(-32005, "the sandbox is busy with another run")
                box["busy"] = True
            try:
                result = self.execute(req_id, params)
            finally:
                box["busy"] = False
            if result is not None:
                self.reply(req_id, result)
        except RpcError as e:
            self.reply(req_id, error=e)

    def execute(self, req_id, params):
        sid = params["sandbox"]
        out = {"stdout": "", "stderr": ""}
        status, code, error, value = "ok", 0, None, None
        truncated = {"stdout": False, "stderr": False}
        limit, degraded = None, list(degraded_layers)
        for line in params.get("code", "").splitlines():
            kind, _, arg = line.partition(":")
            if kind == "sleep":
                time.sleep(float(arg))
            elif kind == "raise":
                raise RpcError(int(arg), f"fake error {arg}")
            elif kind == "refuse":  # refuse:CODE:MESSAGE
                n, _, text = arg.partition(":")
                raise RpcError(int(n), text)
            elif kind == "status":
                status, _, n = arg.partition(":")
                code = int(n)
            elif kind == "exception":
                status, code = "error", 1
                error = {"name": "ZeroDivisionError", "value": "division by zero",
                         "traceback": "Traceback (most recent call last):\nZeroDivisionError\n"}
            elif kind == "value":
                value = arg
            elif kind == "truncated":
                truncated[arg] = True
            elif kind == "limit":
                limit = arg
            elif kind == "degraded":
                degraded = arg.split(",")
            elif line == "hang":
                return None
            elif line == "garbage":
                self.send(raw=b"this is not json\n")
            elif kind == "exit":
                os._exit(int(arg))
            else:
                stream, text = ("stderr", arg) if kind == "err" else ("stdout", line)
                out[stream] += text + "\n"
                self.send({"jsonrpc": "2.0", "method": "sandbox.output",
                           "params": {"sandbox": sid, "request": req_id,
                                      "stream": stream, "data": text + "\n"}})
        return {"sandbox": sid, "step": 1, "status": status, "exit_code": code,
                "stdout": out["stdout"], "stderr": out["stderr"],
                "truncated": truncated, "error": error,
                "value": value, "results": [], "limit": limit, "tier": "heavy",
                "route_reason": "fake", "duration_ms": 0.5, "degraded": degraded}

    def handle(self, msg):
        req_id = msg.get("id")
        method = msg.get("method")
        params = msg.get("params") or {}
        try:
            if method in TIME_TRAVEL or method in ("fake.answer", "fake.calls"):
                self.time_travel(req_id, method, params)
            elif method == "daemon.info":
                self.reply(req_id, {"version": "0.1.0-fake", "pid": os.getpid(),
                                    "layers": {"userns": "present"}, "degraded": [],
                                    "sessions": len(sandboxes)})
            elif method == "sandbox.create":
                if params.get("tier") == "nano":
                    raise RpcError(-32004, "the nano tier is not available")
                network = normalize_rules(params.get("network"))
                sid = new_box()
                sandboxes[sid]["network"] = network
                record("egress.policy", sid, {"rules": network})
                self.reply(req_id, {"sandbox": sid, "tier": "heavy", "route_reason": "fake",
                                    "limits": params.get("limits") or {"timeout": 30},
                                    "degraded": list(degraded_layers), "pooled": False,
                                    "network": network})
            elif method == "sandbox.run":
                threading.Thread(target=self.run, args=(req_id, params), daemon=True).start()
            elif method == "run":  # stateless: a sandbox for this one run
                if params.get("tier") == "nano":
                    raise RpcError(-32004, "the nano tier is not available")
                sid = new_box()

                def oneshot():
                    try:
                        self.run(req_id, dict(params, sandbox=sid))
                    finally:
                        with lock:
                            sandboxes.pop(sid, None)
                threading.Thread(target=oneshot, daemon=True).start()
            elif method == "sandbox.files.write":
                box = get_box(params)
                path = check_path(params.get("path"))
                data = (params["data"].encode() if "data" in params
                        else base64.b64decode(params["data_b64"]))
                box["files"][path] = data
                self.reply(req_id, {"path": path, "size": len(data)})
            elif method == "sandbox.files.read":
                box = get_box(params)
                path = check_path(params.get("path"))
                if path not in box["files"]:
                    raise RpcError(-32003, f"{path}: no such file")
                data = box["files"][path]
                self.reply(req_id, {"path": path, "size": len(data),
                                    "data_b64": base64.b64encode(data).decode()})
            elif method == "sandbox.files.list":
                box = get_box(params)
                self.reply(req_id, {"path": "", "entries": [
                    {"name": k, "type": "file", "size": len(v)}
                    for k, v in sorted(box["files"].items())]})
            elif method == "sandbox.close":
                get_box(params)
                with lock:
                    sandboxes.pop(params["sandbox"], None)
                self.reply(req_id, {"sandbox": params["sandbox"], "closed": True})
            elif method.startswith("egress.") or method.startswith("fake."):
                self.egress(req_id, method, params)
            else:
                raise RpcError(-32601, f"method not found: {method}")
        except RpcError as e:
            self.reply(req_id, error=e)

    def time_travel(self, req_id, method, params):
        if method == "fake.answer":
            with lock:
                canned[params["of"]] = {k: v for k, v in params.items() if k != "of"}
            self.reply(req_id, {})
            return
        if method == "fake.calls":
            with lock:
                calls = list(canned_calls)
            self.reply(req_id, {"calls": calls})
            return
        with lock:
            canned_calls.append({"method": method, "params": params})
            answer = canned.get(method)
        if answer is None:
            raise RpcError(-32001, f"no such sandbox: {params.get('sandbox')}")
        if "error" in answer:
            raise RpcError(answer["error"]["code"], answer["error"]["message"])
        self.reply(req_id, answer["result"])

    def egress(self, req_id, method, params):
        if method == "egress.intent":
            box = get_box(params)
            name, reason = params.get("intent"), params.get("reason")
            if reason is not None and not isinstance(reason, str):
                raise RpcError(-32602, "reason: expected a string")
            if name is None:
                box["intent"] = None
                record("egress.intent", box["id"], {"intent": None, "reason": reason,
                                                   "event": "cleared"})
                self.reply(req_id, {"sandbox": box["id"], "intent": None, "expires_at": None,
                                    "rules": []})
                return
            if not isinstance(name, str) or name not in INTENTS:
                raise RpcError(-32602, f"unknown intent {name!r} (intents: "
                                       f"{', '.join(sorted(INTENTS))})")
            expires = now_ns() + int(INTENTS[name]["ttl"] * 10**9)
            box["intent"] = {"name": name, "reason": reason, "expires_ns": expires}
            record("egress.intent", box["id"], {"intent": name, "reason": reason,
                                               "event": "set"})
            self.reply(req_id, {"sandbox": box["id"], "intent": name, "expires_at": expires,
                                "rules": INTENTS[name]["rules"]})
        elif method == "egress.request_access":
            box = get_box(params)
            host, timeout = params.get("host"), params.get("timeout", 30)
            if not isinstance(host, str) or not host:
                raise RpcError(-32602, "host: expected a host name")
            if (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                    or not 0 <= timeout <= 3600):
                raise RpcError(-32602, f"timeout: expected 0 to 3600 seconds, got {timeout!r}")
            if host == "hang.example":
                return
            threading.Thread(target=self.request_access, daemon=True,
                             args=(req_id, box, host.lower(), params.get("reason"),
                                   timeout)).start()
        elif method == "egress.pending":
            with lock:
                reqs = [{k: a[k] for k in ("id", "sandbox", "host", "reason", "requested_at",
                                           "uid")}
                        for a in access.values() if a["decision"] is None]
            self.reply(req_id, {"requests": reqs})
        elif method == "egress.decide":
            rid, decision = params.get("id"), params.get("decision")
            if decision not in ("approve", "deny"):
                raise RpcError(-32602, 'decision: expected "approve" or "deny"')
            with lock:
                a = access.get(rid)
                if a is None or a["decision"] is not None:
                    raise RpcError(-32602, f"no pending access request {rid}")
                a["decision"] = decision
                a["note"] = params.get("note")
            box = sandboxes.get(a["sandbox"])
            if box is not None and decision == "approve":
                box["grants"].append({"id": f"grant:{rid}", "host": a["host"]})
            record("egress.access_decision", a["sandbox"],
                   {"id": rid, "decision": decision, "by": f"uid {os.getuid()}",
                    "note": params.get("note")})
            a["done"].set()
            self.reply(req_id, {"id": rid, "decision": decision})
        elif method == "egress.log":
            sid, limit = params.get("sandbox"), params.get("limit", 100)
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise RpcError(-32602, "limit: expected a positive integer")
            with lock:
                events = [e for e in egress_events
                          if sid is None or e.get("session", e.get("sandbox")) == sid]
            self.reply(req_id, {"events": events[-limit:]})
        elif method == "egress.status":
            r = {"sidecar": {"state": "running", "pid": os.getpid(), "restarts": 0},
                 "policy_file": None, "mode": "deny",
                 "intents": {k: {"description": v["description"], "ttl": v["ttl"]}
                             for k, v in INTENTS.items()},
                 "sandboxes": len(sandboxes)}
            if params.get("sandbox") is not None:
                box = get_box(params)
                r["sandbox"] = box["id"]
                r["policy"] = effective_policy(box)
            self.reply(req_id, r)
        elif method == "egress.reload":
            problem = os.environ.get("FAKE_AGENTBOXD_POLICY_ERROR")
            if problem:
                raise RpcError(-32602, problem)
            record("egress.policy", None, {"event": "reloaded", "file": None})
            self.reply(req_id, {"policy_file": None, "intents": len(INTENTS)})
        elif method == "fake.egress_event":
            with lock:
                egress_events.append(params["event"])
            self.reply(req_id, {})
        else:
            raise RpcError(-32601, f"method not found: {method}")

    def request_access(self, req_id, box, host, reason, timeout):
        """Decides by rule or intent at once, else waits for an operator."""
        policy = effective_policy(box)
        if any(host_matches(r["host"], host) for r in policy["deny"]):
            decision, rule = "denied", next(r["id"] for r in policy["deny"]
                                            if host_matches(r["host"], host))
        elif any(host_matches(r["host"], host)
                 for r in policy["allow"] + policy["intent_rules"]):
            decision, rule = "allowed", next(r["id"] for r in
                                             policy["allow"] + policy["intent_rules"]
                                             if host_matches(r["host"], host))
        else:
            decision, rule = None, None
        with lock:
            egress_seq[0] += 1
            rid = f"ar-{egress_seq[0]}"
            a = access[rid] = {"id": rid, "sandbox": box["id"], "host": host, "reason": reason,
                               "requested_at": now_ns(), "uid": os.getuid(),
                               "decision": "policy" if decision else None,
                               "done": threading.Event()}
        record("egress.access_request", box["id"], {"id": rid, "host": host, "reason": reason})
        why = None
        if decision is None:
            if a["done"].wait(timeout):
                decision = "allowed" if a["decision"] == "approve" else "denied"
                rule = f"grant:{rid}" if decision == "allowed" else None
                why = a.get("note")
            else:
                decision, why = "pending", "waiting for an operator"
        self.reply(req_id, {"id": rid, "sandbox": box["id"], "host": host, "decision": decision,
                            "rule": rule, "reason": why})

    def serve(self):
        for line in self.reader:
            try:
                msg = json.loads(line)
            except ValueError:
                self.send({"jsonrpc": "2.0", "id": None,
                           "error": {"code": -32700, "message": "parse error"}})
                continue
            self.handle(msg)


def main():
    log = os.environ.get("FAKE_AGENTBOXD_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"argv": sys.argv[1:], "home": os.environ.get("AGENTBOX_HOME")})
                    + "\n")
    refuse = os.environ.get("FAKE_AGENTBOXD_REFUSE")
    if refuse:
        print(refuse, file=sys.stderr)
        return 1
    args = sys.argv[1:]
    if len(args) >= 2 and args[-2] == "--degrade":
        degraded_layers.extend(args[-1].split(","))
        args = args[:-2]
    if args == ["--stdio"]:
        Session(sys.stdin.buffer, sys.stdout.buffer).serve()
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "--socket":
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Listening under a temporary name, then renamed into place (as
        # agentboxd does): a client that sees the path can connect.
        tmp = sys.argv[2] + ".tmp"
        srv.bind(tmp)
        srv.listen(8)
        os.rename(tmp, sys.argv[2])
        while True:
            conn, _ = srv.accept()
            s = Session(conn.makefile("rb"), conn.makefile("wb"))
            threading.Thread(target=s.serve, daemon=True).start()
    print("usage: fake_agentboxd.py --stdio | --socket PATH", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

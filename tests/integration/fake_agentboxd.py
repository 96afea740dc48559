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
        sandboxes[sid] = {"files": {}, "busy": False}
    return sid


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
            if method == "daemon.info":
                self.reply(req_id, {"version": "0.1.0-fake", "pid": os.getpid(),
                                    "layers": {"userns": "present"}, "degraded": [],
                                    "sessions": len(sandboxes)})
            elif method == "sandbox.create":
                if params.get("tier") == "nano":
                    raise RpcError(-32004, "the nano tier is not available")
                sid = new_box()
                self.reply(req_id, {"sandbox": sid, "tier": "heavy", "route_reason": "fake",
                                    "limits": params.get("limits") or {"timeout": 30},
                                    "degraded": list(degraded_layers), "pooled": False})
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
            else:
                raise RpcError(-32601, f"method not found: {method}")
        except RpcError as e:
            self.reply(req_id, error=e)

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

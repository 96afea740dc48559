"""What the egress tests (tests/integration/test_egress.py,
tests/adversarial/test_egress_bypass.py) and bench/bench_egress.py share:

- make_pki(): a test CA and one server certificate for every TEST_NAMES
  name, made with the openssl CLI;
- build_wheel(): a tiny valid wheel (METADATA, WHEEL, RECORD) for the local
  package index;
- EchoServer: a threaded server on 127.0.0.1 that speaks HTTP and HTTPS on
  the same port (a first byte of 0x16 is a TLS ClientHello), echoes each
  request as JSON and serves the endpoints the tests need (below). It keeps
  a record of every connection and request it saw, so that a test can say
  "this never reached the server";
- EgressDaemon: agentboxd with --egress-resolve NAME=127.0.0.1:PORT for
  every test name, --egress-upstream-ca and --policy, and the check that
  egress is there at all (start_egress_daemon fails the test if not);
- CLIENT_PRELUDE: Python text run inside a sandbox that makes one request
  with requests, urllib.request, http.client (through the proxy, by hand) or
  curl and prints the outcome as one JSON line.

Everything listens on 127.0.0.1 only; nothing here sends a packet off the
machine. docs/egress.md is the contract the tests hold the product to.
"""
import base64
import gzip
import hashlib
import io
import json
import os
import pathlib
import socket
import socketserver
import ssl
import subprocess
import threading
import time
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler

TEST_NAMES = ("api.test", "docs.test", "other.test", "pypi.test", "deny.test", "ws.test")
# A fake AWS access key id (valid format, never a real one): the default
# DLP policy blocks secrets (docs/dlp.md).
MARKER = "AKIAQ3EGRJ7WXZ5TLN4K"
WHEEL_NAME = "agentbox_egress_probe"
WHEEL_VERSION = "0.1"
PROXY = ("127.0.0.1", 3128)


# ----------------------------------------------------------------------- PKI

def _openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def make_pki(directory, names=TEST_NAMES):
    """A CA (ca.pem, ca.key) and a server certificate (server.pem,
    server.key) for names and 127.0.0.1, signed by it, in directory.
    Returns {"ca": path, "cert": path, "key": path} (strings)."""
    d = pathlib.Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "3",
             "-subj", "/CN=agentbox egress test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", cwd=d)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", f"/CN={names[0]}", cwd=d)
    san = ",".join([f"DNS:{n}" for n in names] + ["IP:127.0.0.1"])
    (d / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid:always\n"
        f"subjectAltName={san}\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "3", "-extfile", "server.ext",
             cwd=d)
    for f in ("ca.key", "server.key"):
        os.chmod(d / f, 0o600)
    return {"ca": str(d / "ca.pem"), "cert": str(d / "server.pem"), "key": str(d / "server.key")}


# --------------------------------------------------------------------- wheel

def _record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(directory, name=WHEEL_NAME, version=WHEEL_VERSION):
    """A minimal valid pure-Python wheel NAME-VERSION-py3-none-any.whl in
    directory (a package whose __init__ sets VALUE = 42). Returns its path."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{info}/METADATA": (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                             "Summary: agentbox egress test package\n").encode(),
        f"{info}/WHEEL": (b"Wheel-Version: 1.0\nGenerator: agentbox-tests\n"
                          b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
    }
    record = "".join(f"{p},{_record_hash(b)},{len(b)}\n" for p, b in files.items())
    record += f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    path = pathlib.Path(directory) / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for p, b in files.items():
            z.writestr(p, b)
    return str(path)


def pep503_name(name):
    import re
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------- the server

class _Handler(BaseHTTPRequestHandler):
    """One connection of EchoServer. Endpoints (any method unless said):
      /big?n=N          N bytes (a repeating pattern), Content-Length
      /chunked?n=K&size=S   K chunks of S bytes, Transfer-Encoding: chunked
      /slow?s=S&n=N     headers and the first half of N bytes at once, the
                        rest after S seconds (a response in flight)
      /delay?s=S        the echo, after S seconds
      /ws               101 Switching Protocols when asked to upgrade to
                        websocket, then echoes raw bytes until EOF
      /simple/, /simple/NAME/, /packages/FILE   a PEP 503 index serving the
                        wheels given to the server
      anything else     the echo: JSON of scheme, sni, method, path, host,
                        headers, body (latin-1 text), body_len, body_sha256
    Request bodies may come with Content-Length or chunked."""

    protocol_version = "HTTP/1.1"
    server_version = "agentbox-echo/1"

    def log_message(self, *args):
        pass

    def send_error(self, code, message=None, explain=None):
        # Requests the server itself refused (a line or headers too long,
        # a malformed request line): recorded too, so that "never reached
        # the server" covers what the server would have turned away.
        line = (getattr(self, "raw_requestline", b"") or b"")[:300].decode("latin-1")
        self.server.record_rejection({"code": code, "requestline": line, "conn": self.conn_id})
        super().send_error(code, message, explain)

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if te.lower() == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(16)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, body, ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        body = self._read_body()
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        srv = self.server
        entry = {"conn": self.conn_id, "scheme": self.scheme, "sni": self.sni,
                 "method": self.command, "path": u.path, "query": u.query,
                 "target": self.path, "host": self.headers.get("Host"),
                 "headers": [[k, v] for k, v in self.headers.items()],
                 "body": body.decode("latin-1"), "body_len": len(body),
                 "body_sha256": hashlib.sha256(body).hexdigest(), "t": time.time()}
        srv.record_request(entry)
        path = u.path
        if path == "/big":
            n = int(q.get("n", 1 << 20))
            self._send(200, pattern(n), "application/octet-stream")
        elif path == "/chunked":
            k, size = int(q.get("n", 8)), int(q.get("size", 1000))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            data = pattern(k * size)
            for i in range(k):
                part = data[i * size:(i + 1) * size]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/slow":
            s, n = float(q.get("s", 5)), int(q.get("n", 2000))
            data = pattern(n)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            self.wfile.write(data[:n // 2])
            self.wfile.flush()
            srv.note("slow-sent-half", entry)
            time.sleep(s)
            try:
                self.wfile.write(data[n // 2:])
                self.wfile.flush()
            except OSError:
                pass
        elif path == "/delay":
            time.sleep(float(q.get("s", 1)))
            self._send(200, json.dumps(entry).encode())
        elif path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            key = self.headers.get("Sec-WebSocket-Key", "")
            accept = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
            srv.note("ws-upgraded", entry)
            while True:
                b = self.connection.recv(65536)
                if not b:
                    break
                self.connection.sendall(b)
            self.close_connection = True
        elif path == "/simple" or path == "/simple/":
            links = "".join(f'<a href="/simple/{pep503_name(n)}/">{n}</a>\n' for n in srv.wheels)
            self._send(200, f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode(),
                       "text/html")
        elif path.startswith("/simple/"):
            want = path[len("/simple/"):].strip("/")
            files = [w for n, w in srv.wheels.items() if pep503_name(n) == pep503_name(want)]
            if not files:
                self._send(404, b"not found\n", "text/plain")
                return
            links = "".join(
                f'<a href="/packages/{os.path.basename(w)}#sha256='
                f'{hashlib.sha256(open(w, "rb").read()).hexdigest()}">{os.path.basename(w)}</a>\n'
                for w in files)
            self._send(200, f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode(),
                       "text/html")
        elif path.startswith("/packages/"):
            base = path[len("/packages/"):]
            match = [w for w in srv.wheels.values() if os.path.basename(w) == base]
            if not match:
                self._send(404, b"not found\n", "text/plain")
                return
            self._send(200, open(match[0], "rb").read(), "application/octet-stream")
        else:
            self._send(200, json.dumps(entry).encode())

    def __getattr__(self, name):
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)


def pattern(n):
    """n bytes of a repeating, recognisable pattern."""
    unit = bytes(range(33, 127))
    return (unit * (n // len(unit) + 1))[:n]


class EchoServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """HTTP and HTTPS on one port of 127.0.0.1 (see _Handler). pki:
    make_pki()'s result (None: plain HTTP only). wheels: {name: path}.
    .connections counts accepted connections; .requests lists the echo
    entries of every request seen; .raw_bytes the bytes of every request
    head and body seen (to search for what must never arrive)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, pki=None, wheels=None, port=0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.port = self.server_address[1]
        self.ctx = None
        if pki:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(pki["cert"], pki["key"])
            self.ctx.set_alpn_protocols(["http/1.1"])
            self.ctx.sni_callback = self._sni
        self.wheels = dict(wheels or {})
        self.lock = threading.Lock()
        self.connections = 0
        self.tls_connections = 0
        self.requests = []
        self.rejected = []          # what the server itself refused (send_error)
        self.events = []
        self.cond = threading.Condition(self.lock)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @staticmethod
    def _sni(sslsock, name, ctx):
        sslsock.agentbox_sni = name

    def record_request(self, entry):
        with self.cond:
            self.requests.append(entry)
            self.cond.notify_all()

    def record_rejection(self, entry):
        with self.cond:
            self.rejected.append(entry)
            self.cond.notify_all()

    def note(self, what, entry):
        with self.cond:
            self.events.append((what, entry))
            self.cond.notify_all()

    def wait_for(self, pred, timeout):
        """Waits until pred(self) is true (called under the lock)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    def seen(self, pred=lambda e: True):
        with self.lock:
            return [e for e in self.requests if pred(e)]

    def everything_received(self):
        """All request text the server parsed (targets, headers, bodies),
        and the request lines of what it refused."""
        with self.lock:
            return "\n".join(json.dumps(e) for e in self.requests + self.rejected)

    def finish_request(self, request, client_address):
        with self.lock:
            self.connections += 1
            conn_id = self.connections
        request.settimeout(30)
        scheme, sni = "http", None
        try:
            first = request.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        if first == b"\x16" and self.ctx:
            try:
                request = self.ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
            scheme, sni = "https", getattr(request, "agentbox_sni", None)
            with self.lock:
                self.tls_connections += 1
        handler = _Handler.__new__(_Handler)
        handler.conn_id, handler.scheme, handler.sni = conn_id, scheme, sni
        try:
            handler.__init__(request, client_address, self)
        except OSError:
            pass

    def handle_error(self, request, client_address):
        pass

    def stop(self):
        self.shutdown()
        self.server_close()


# ------------------------------------------------------------ the daemon side

POLICY = """\
# The policy of the egress tests (docs/egress.md, "Policy file").
default: deny
deny: ["deny.test", "*.blocked.test"]
allow: []
intents:
  docs-lookup:
    description: Read the test documentation
    ttl: 10m
    rules:
      - {host: "docs.test", methods: [GET]}
  other-short:
    description: A short errand to other.test
    ttl: 4s
    rules:
      - other.test
  packages:
    description: Fetch packages from the test index
    ttl: 10m
    rules:
      - pypi.test
"""


class EgressUnavailable(Exception):
    """agentboxd has no egress: the reason (the test fails with it)."""


def rpc(path, method, params=None, timeout=60):
    """One JSON-RPC call on a fresh connection to the daemon socket path;
    returns the whole response object (result or error)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(str(path))
    try:
        f = s.makefile("rwb")
        f.write((json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                             "params": params or {}}) + "\n").encode())
        f.flush()
        while True:
            raw = f.readline()
            if not raw:
                raise RuntimeError(f"{method}: the daemon closed the connection")
            msg = json.loads(raw)
            if msg.get("id") == 1:
                return msg
    finally:
        s.close()


def call(path, method, params=None, timeout=60):
    """rpc() that returns the result or raises RuntimeError with the error."""
    msg = rpc(path, method, params, timeout)
    if "error" in msg:
        raise RuntimeError(f"{method}: {msg['error']}")
    return msg["result"]


def egress_status(path, sandbox=None, wait=0.0):
    """egress.status, or EgressUnavailable saying why there is no egress:
    the method is missing, enabled is false, or sidecar.state is "disabled"
    or "down" (after waiting up to wait seconds for a "starting" or "down"
    sidecar to be "running")."""
    deadline = time.monotonic() + wait
    while True:
        msg = rpc(path, "egress.status", {"sandbox": sandbox} if sandbox else {})
        if "error" in msg:
            err = msg["error"]
            if err.get("code") == -32601:
                raise EgressUnavailable(f"agentboxd has no egress.status method: {err}")
            raise RuntimeError(f"egress.status: {err}")
        res = msg.get("result") or {}
        side = res.get("sidecar") or {}
        state = side.get("state") if isinstance(side, dict) else side
        if res.get("enabled") is False or state == "disabled":
            why = res.get("reason") or (side.get("reason") if isinstance(side, dict) else None)
            raise EgressUnavailable(f"egress is off: sidecar.state {state!r}, reason {why!r}")
        if state == "running" or (state == "starting" and wait <= 0):
            return res
        if time.monotonic() >= deadline:
            raise EgressUnavailable(f"egress.status reports sidecar.state {state!r} "
                                    f"({json.dumps(res)[:300]})")
        time.sleep(0.1)


def sidecar_pid(status):
    side = status.get("sidecar") or {}
    return side.get("pid")


def wait_sidecar_running(path, timeout=30, not_pid=None):
    """Polls egress.status until sidecar.state is "running" (and its pid is
    not not_pid); returns the status or raises AssertionError."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = rpc(path, "egress.status").get("result") or {}
        except (OSError, RuntimeError) as e:
            last = {"error": repr(e)}
        side = last.get("sidecar") or {}
        if side.get("state") == "running" and side.get("pid") and side.get("pid") != not_pid:
            return last
        time.sleep(0.1)
    raise AssertionError(f"the sidecar was not running again within {timeout} s: {last}")


class EgressDaemon:
    """agentboxd on a unix socket in home, with --egress-resolve NAME=
    127.0.0.1:server.port for every TEST_NAMES name, --egress-upstream-ca
    (the test CA) and --policy (policy text, written to home/policy.yaml).
    Raises EgressUnavailable when agentboxd does not know those options or
    reports no egress (the caller fails). The sandbox's SDK url is .url."""

    def __init__(self, home, server_port, ca, policy=POLICY, extra=(), names=TEST_NAMES):
        from conftest import DaemonSocket
        self.home = pathlib.Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.policy_path = self.home / "policy.yaml"
        self.policy_path.write_text(policy)
        args = []
        for n in names:
            args += ["--egress-resolve", f"{n}=127.0.0.1:{server_port}"]
        args += ["--egress-upstream-ca", str(ca), "--policy", str(self.policy_path), *extra]
        try:
            self.d = DaemonSocket(self.home, *args)
        except RuntimeError as e:
            msg = str(e)
            if any(o in msg for o in ("unrecognized option", "unknown option",
                                      "invalid option")):
                said = next(ln for ln in msg.splitlines() if "option" in ln)
                raise EgressUnavailable(f"agentboxd does not take the egress options: "
                                        f"{said.strip()[:300]}")
            raise
        self.path = self.d.path
        self.url = str(self.d.path)
        try:
            self.status = egress_status(self.path, wait=20)
        except BaseException:
            self.d.stop()
            raise

    @property
    def proc(self):
        return self.d.proc

    def call(self, method, **params):
        return call(self.path, method, params)

    def log(self, sandbox=None, limit=500):
        """egress.log events, each flattened (body fields lifted up)."""
        p = {"limit": limit}
        if sandbox:
            p["sandbox"] = sandbox
        return [flatten(e) for e in call(self.path, "egress.log", p)["events"]]

    def cli(self, *args, timeout=60):
        from conftest import BUILD
        env = dict(os.environ, AGENTBOX_SOCKET=str(self.path))
        return subprocess.run([str(BUILD / "agentbox"), *args], capture_output=True, text=True,
                              timeout=timeout, env=env)

    def audit_export(self):
        from conftest import BUILD
        p = subprocess.run([str(BUILD / "agentbox"), "audit", "export", "--jsonl", "--db",
                            str(self.home / "audit.db")], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr
        return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]

    def audit_verify(self):
        from conftest import BUILD
        return subprocess.run([str(BUILD / "agentbox"), "audit", "verify", "--db",
                               str(self.home / "audit.db")], capture_output=True, text=True,
                              timeout=120)

    def stop(self):
        self.d.stop()


def flatten(event):
    """An audit or egress.log event with its body's fields lifted to the
    top (the top-level keys win), so that e["host"] works either way."""
    out = dict(event.get("body") or {}) if isinstance(event.get("body"), dict) else {}
    out.update({k: v for k, v in event.items() if k != "body"})
    return out


def find_event(events, **want):
    """The events whose fields equal every want (kind= is the event kind)."""
    return [e for e in events if all(e.get(k) == v for k, v in want.items())]


# ------------------------------------------------------ inside the sandbox

# Defines do(client, method, url, body=None, headers=None, chunks=None)
# returning {"status", "headers", "body", "error", "tunnel"}: status is the
# HTTP status the client got (for an HTTPS request refused at CONNECT: the
# CONNECT's status, with "tunnel": True); error the exception text when there
# was no HTTP answer at all. chunks: a list of byte strings sent as a chunked
# body (http.client and requests only).
CLIENT_PRELUDE = r'''
import json, os, re, ssl, subprocess, sys, urllib.parse, urllib.request, urllib.error, http.client
PROXY_HOST = "127.0.0.1"
# 3128 inside a sandbox; the variable only lets the prelude itself be checked
# on the host against another proxy (it is never set inside a sandbox).
PROXY_PORT = int(os.environ.get("AGENTBOX_TEST_PROXY_PORT", "3128"))
CA = os.environ.get("SSL_CERT_FILE")

def _b(x):
    return x.encode() if isinstance(x, str) else x

def _tunnel(msg):
    m = re.search(r"Tunnel connection failed: (\d{3})", msg)
    return int(m.group(1)) if m else None

def _result(status, headers, body, error=None, tunnel=False):
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return {"status": status, "headers": {k.lower(): v for k, v in (headers or {}).items()},
            "body": body, "error": error, "tunnel": tunnel}

def via_requests(method, url, body, headers, chunks):
    import requests
    data = iter(chunks) if chunks is not None else body
    try:
        r = requests.request(method, url, data=data, headers=headers, timeout=60,
                             allow_redirects=False)
        return _result(r.status_code, dict(r.headers), r.content)
    except Exception as e:
        t = _tunnel(repr(e))
        return _result(t, {}, "", repr(e), tunnel=t is not None)

def via_urllib(method, url, body, headers, chunks):
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return _result(r.status, dict(r.headers), r.read())
    except urllib.error.HTTPError as e:
        return _result(e.code, dict(e.headers), e.read())
    except Exception as e:
        t = _tunnel(repr(e))
        return _result(t, {}, "", repr(e), tunnel=t is not None)

def via_http_client(method, url, body, headers, chunks):
    u = urllib.parse.urlsplit(url)
    try:
        if u.scheme == "http":
            c = http.client.HTTPConnection(PROXY_HOST, PROXY_PORT, timeout=60)
            target = url
        else:
            ctx = ssl.create_default_context(cafile=CA)
            c = http.client.HTTPSConnection(PROXY_HOST, PROXY_PORT, timeout=60, context=ctx)
            c.set_tunnel(u.hostname, u.port or 443)
            target = (u.path or "/") + ("?" + u.query if u.query else "")
        if chunks is not None:
            c.request(method, target, body=iter(chunks), headers=headers, encode_chunked=True)
        else:
            c.request(method, target, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        return _result(r.status, dict(r.getheaders()), data)
    except Exception as e:
        t = _tunnel(repr(e))
        return _result(t, {}, "", repr(e), tunnel=t is not None)

def via_curl(method, url, body, headers, chunks):
    cmd = ["curl", "-sS", "--max-time", "60", "-X", method, "-D", "/tmp/curl.h",
           "-o", "/tmp/curl.b", "-w", "%{http_code} %{http_connect}", url]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if body is not None:
        cmd += ["--data-binary", "@-"]
    for f in ("/tmp/curl.h", "/tmp/curl.b"):
        if os.path.exists(f):
            os.unlink(f)
    p = subprocess.run(cmd, input=_b(body) if body is not None else None, capture_output=True,
                       timeout=90)
    code, connect = (p.stdout.decode().split() + ["000", "000"])[:2]
    if p.returncode != 0 and connect not in ("000", "200"):
        return _result(int(connect), {}, "", p.stderr.decode(), tunnel=True)
    if p.returncode != 0 and code == "000":
        return _result(None, {}, "", p.stderr.decode() or f"curl exit {p.returncode}")
    hdrs = {}
    raw = open("/tmp/curl.h", "rb").read().decode("latin-1") if os.path.exists("/tmp/curl.h") else ""
    block = [b for b in raw.split("\r\n\r\n") if b.strip()][-1:] or [""]
    for line in block[0].split("\r\n")[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip()] = v.strip()
    data = open("/tmp/curl.b", "rb").read() if os.path.exists("/tmp/curl.b") else b""
    return _result(int(code), hdrs, data,
                   p.stderr.decode() if p.returncode != 0 else None)

CLIENTS = {"requests": via_requests, "urllib": via_urllib, "http.client": via_http_client,
           "curl": via_curl}

def do(client, method, url, body=None, headers=None, chunks=None):
    return CLIENTS[client](method, url, _b(body) if body is not None else None,
                           dict(headers or {}), [_b(c) for c in chunks] if chunks else None)

def out(tag, obj):
    print("OUT " + tag + " " + json.dumps(obj), flush=True)
'''

CLIENT_NAMES = ("requests", "urllib", "http.client", "curl")


def run_in(box, code, timeout=180):
    """Runs CLIENT_PRELUDE + code in box; returns {tag: object} of the
    OUT lines it printed (and asserts the run ended well)."""
    r = box.run(CLIENT_PRELUDE + code, timeout=timeout)
    outs = {}
    for line in r.stdout.splitlines():
        if line.startswith("OUT "):
            _, tag, obj = line.split(" ", 2)
            outs[tag] = json.loads(obj)
    assert r.status == "ok", f"sandbox run failed: {r!r}\nstdout: {r.stdout[-3000:]}\n" \
                             f"stderr: {r.stderr[-3000:]}"
    return outs


def fetch(box, client, method, url, body=None, headers=None, chunks=None, timeout=180):
    """One request from inside box; the do() result."""
    return run_in(box, f"out('r', do({client!r}, {method!r}, {url!r}, body={body!r}, "
                       f"headers={headers!r}, chunks={chunks!r}))\n", timeout)["r"]


def is_denied(res):
    """A 403 from the sidecar: X-Agentbox-Denied set, or an HTTPS request
    refused at CONNECT (no headers reach the client library then)."""
    if res.get("status") != 403:
        return False
    return res.get("tunnel") or "x-agentbox-denied" in res.get("headers", {})


def denial_body(res):
    """The JSON body of a denial answered in the clear or inside the tunnel
    (None when refused at CONNECT)."""
    if res.get("tunnel"):
        return None
    return json.loads(res["body"])


def gzip_bytes(data):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as g:
        g.write(data)
    return buf.getvalue()



def requests_in(box, specs, timeout=300):
    """Many requests in one run of box: specs {tag: (client, method, url,
    {body=, headers=, chunks=})} (tags without spaces); returns {tag: do()
    result}."""
    code = "".join(f"out({tag!r}, do({c!r}, {m!r}, {u!r}, **{kw!r}))\n"
                   for tag, (c, m, u, kw) in specs.items())
    res = run_in(box, code, timeout)
    missing = set(specs) - set(res)
    assert not missing, f"no result for {sorted(missing)}"
    return res


def wait_events(daemon, pred, sandbox=None, timeout=15, at_least=1):
    """Polls egress.log (the sidecar reports each request when it is done,
    so its event may land just after the client saw the answer) until
    at_least events satisfy pred; returns them (or all the log on timeout,
    for the assertion message: the caller asserts)."""
    deadline = time.monotonic() + timeout
    while True:
        events = daemon.log(sandbox)
        hits = [e for e in events if pred(e)]
        if len(hits) >= at_least or time.monotonic() > deadline:
            return hits, events
        time.sleep(0.2)


# ------------------------------------------------------- pytest fixtures
# Imported by the egress test modules (pytest finds fixtures imported into a
# test module's namespace).
try:
    import pytest  # noqa: E402
except ImportError:  # bench/bench_egress.py uses the rest without pytest
    pytest = None


def _fixture(**kw):
    return pytest.fixture(**kw) if pytest else (lambda f: f)


@_fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("egress-pki"))


@_fixture(scope="module")
def server(pki, tmp_path_factory):
    wheel = build_wheel(tmp_path_factory.mktemp("egress-wheel"))
    s = EchoServer(pki, {WHEEL_NAME: wheel})
    s.wheel = wheel
    yield s
    s.stop()


def start_egress_daemon(home, server, pki, policy=POLICY, extra=()):
    """An EgressDaemon. Egress is part of the product: a daemon without it
    (no CA, no sidecar, a sidecar that never gets ready) fails the test with
    the reason, it is never skipped."""
    try:
        return EgressDaemon(home, server.port, pki["ca"], policy=policy, extra=extra)
    except EgressUnavailable as e:
        pytest.fail(f"egress unavailable: {e}")


@_fixture(scope="module")
def egress(server, pki, tmp_path_factory):
    d = start_egress_daemon(tmp_path_factory.mktemp("egress-home"), server, pki)
    yield d
    d.stop()

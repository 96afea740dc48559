#!/usr/bin/python3
"""The egress goals of issue 10, side by side in one run with Debian's
tinyproxy (plain HTTP) and mitmproxy (mitmdump, TLS interception).

Everything runs on loopback; nothing leaves the machine. One upstream
server (a single-threaded epoll server in its own process, HTTP and HTTPS on
one port of 127.0.0.1, a 64-byte answer with Content-Length) serves every
figure, so the proxies are compared against the same peer and against going
direct, all measured in this run:

 1. plain HTTP, a new connection per request (tinyproxy closes its client
    connections after each request, so this is the fair shape for both):
    requests/s with --clients load generators (processes, each a loop of
    connect, `GET http://HOST/ HTTP/1.1`, read the answer, close) for
    --seconds; and p50 latency of one client doing the same sequentially.
    Added p50 = p50 through the proxy - p50 direct.
    Goals: ours >= tinyproxy's requests/s; ours' added p50 <= 0.5 ms.
 2. HTTPS with interception (CONNECT, TLS to the proxy's minted
    certificate, the proxy's own TLS to the upstream, verified against the
    test CA): a) a new tunnel per request, b) one tunnel per client with
    keep-alive requests. Goal: ours >= 5x mitmproxy's requests/s (judged on
    both shapes; direct HTTPS is printed as the ceiling).

Our proxy is the sidecar (agentbox-egress) of an agentboxd started here with
--egress-resolve api.test=127.0.0.1:PORT and --egress-upstream-ca, serving a
heavy sandbox created with network ["api.test"]. It is driven two ways, and
the output says which figure is which:
  - "sidecar socket": the load generator on the host connects to the
    sandbox's own listening socket (<home>/egress/run/<id>.sock in the daemon's
    mount namespace as root, else <home>/sessions/<id>/egress.sock; the
    socket the sidecar accepts on; the relay in the sandbox connects to the
    same one). This leaves out the in-sandbox relay, so the load generator
    competes only with the proxies for CPU, as it does for tinyproxy and
    mitmproxy; the goals are judged on this path.
  - "in sandbox": the same load generator code run inside the sandbox
    against 127.0.0.1:3128 (the relay, the real path of user code), printed
    for information.
When agentboxd has no egress (egress.status missing, or sidecar.state
"disabled"/"down") our figures are printed as unavailable with the reason and
the peers are still measured.

The load generator is Python: on a 2-core machine it takes a large share of
the CPU, so the direct figures (no proxy at all) are printed as the ceiling
the harness can measure; a proxy near that ceiling is limited by the harness,
not by itself. A missed goal never fails the benchmark (exit 0); a broken
setup does (exit 1).
"""
import argparse
import json
import multiprocessing
import os
import pathlib
import selectors
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import egress_support as es  # noqa: E402
from benchlib import Client, SocketDaemon  # noqa: E402

GOALS = {"http_rps_vs_tinyproxy": 1.0, "https_rps_vs_mitmproxy": 5.0, "added_p50_ms": 0.5}
BODY = b"x" * 64


# ------------------------------------------------------------- the upstream

def upstream_main(ready, cert, key):
    """An epoll server on 127.0.0.1:0: HTTP, or HTTPS when the first byte
    is 0x16; answers every request head with 200 and BODY (keep-alive unless
    the request says Connection: close). Sends its port on ready."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(4096)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ, None)
    ready.send(ls.getsockname()[1])
    resp_keep = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(BODY), BODY))
    resp_close = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
    state = {}

    def close(s):
        try:
            sel.unregister(s)
        except (KeyError, ValueError):
            pass
        state.pop(s, None)
        s.close()

    while True:
        for key_, _ in sel.select():
            s = key_.fileobj
            if s is ls:
                while True:
                    try:
                        c, _ = ls.accept()
                    except BlockingIOError:
                        break
                    c.setblocking(False)
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    state[c] = {"buf": b"", "mode": None}
                    sel.register(c, selectors.EVENT_READ, None)
                continue
            st = state.get(s)
            if st is None:
                continue
            try:
                if st["mode"] is None:
                    first = s.recv(1, socket.MSG_PEEK)
                    if not first:
                        close(s)
                        continue
                    if first == b"\x16":
                        sel.unregister(s)
                        t = ctx.wrap_socket(s, server_side=True, do_handshake_on_connect=False)
                        state.pop(s)
                        state[t] = st = {"buf": b"", "mode": "hs"}
                        sel.register(t, selectors.EVENT_READ, None)
                        s = t
                    else:
                        st["mode"] = "http"
                if st["mode"] == "hs":
                    s.do_handshake()
                    st["mode"] = "https"
                data = s.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError):
                continue
            except (ssl.SSLError, OSError):
                close(s)
                continue
            if not data:
                close(s)
                continue
            st["buf"] += data
            while b"\r\n\r\n" in st["buf"]:
                head, _, st["buf"] = st["buf"].partition(b"\r\n\r\n")
                wants_close = b"connection: close" in head.lower()
                try:
                    s.setblocking(True)
                    s.sendall(resp_close if wants_close else resp_keep)
                    s.setblocking(False)
                except OSError:
                    wants_close = True
                if wants_close:
                    close(s)
                    break


# ------------------------------------------------------- the load generator

# Python text so that the very same code runs on the host and inside the
# sandbox. target: ["tcp", host, port] or ["unix", path]. connect: None
# (direct) or "HOST:PORT" for a CONNECT first. tls: None or [cafile,
# server_hostname]. One request = send req, read the head and the
# Content-Length body, check the status is 200.
LOADGEN = r'''
import socket, ssl, time

def _connect(target):
    if target[0] == "unix":
        s = socket.socket(socket.AF_UNIX)
        s.connect(target[1])
    else:
        s = socket.create_connection((target[1], target[2]))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(30)
    return s

def _read_response(s, buf):
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            raise OSError("connection closed before the response head")
        buf += b
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    n, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            n = int(v)
        elif k == b"connection" and v.strip().lower() == b"close":
            close = True
    while len(rest) < n:
        b = s.recv(65536)
        if not b:
            raise OSError("connection closed in the body")
        rest += b
    return status, rest[n:], close

_CTX = {}

def _ctx(cafile):
    if cafile not in _CTX:
        c = ssl.create_default_context(cafile=cafile)
        _CTX[cafile] = c
    return _CTX[cafile]

def open_conn(target, connect, tls):
    s = _connect(target)
    if connect:
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (connect, connect)).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = s.recv(4096)
            if not b:
                raise OSError("proxy closed the connection after CONNECT")
            buf += b
        code = int(buf.split(b" ", 2)[1])
        if code != 200:
            raise OSError("CONNECT answered %d: %r" % (code, buf[:300]))
    if tls:
        s = _ctx(tls[0]).wrap_socket(s, server_hostname=tls[1])
    return s

def one(target, connect, tls, req):
    s = open_conn(target, connect, tls)
    try:
        s.sendall(req)
        status, _, _ = _read_response(s, b"")
        if status != 200:
            raise OSError("status %d" % status)
    finally:
        s.close()

def run_for(target, connect, tls, req, seconds, keepalive, latencies=False):
    """Requests back to back for seconds; returns [count, [ms...], errors]:
    a request that fails (an error, a status other than 200) is counted in
    errors, not in count, and the loop goes on (with a new connection)."""
    n, lat, errors, reopened = 0, [], {}, 0
    end = time.perf_counter() + seconds
    s = None
    buf = b""
    while True:
        t = time.perf_counter()
        if t >= end:
            break
        try:
            if keepalive:
                if s is None:
                    s, buf = open_conn(target, connect, tls), b""
                s.sendall(req)
                status, buf, close = _read_response(s, buf)
                if status != 200:
                    raise OSError("status %d" % status)
                if close:           # the proxy ends the connection: a new one next
                    s.close()
                    s = None
                    reopened += 1
            else:
                one(target, connect, tls, req)
        except (OSError, ValueError, IndexError) as e:
            k = type(e).__name__ + (": " + str(e)[:60] if "status" in str(e) else "")
            errors[k] = errors.get(k, 0) + 1
            if s is not None:
                s.close()
                s = None
            continue
        n += 1
        if latencies:
            lat.append((time.perf_counter() - t) * 1000)
    if s:
        s.close()
    if reopened:
        errors["(not an error) connections the proxy closed after an answer"] = reopened
    return [n, lat, errors]
'''

LG = {}
exec(LOADGEN, LG)


def _worker(args, conn):
    try:
        conn.send(LG["run_for"](*args))
    except Exception as e:  # reported to the parent, which stops the benchmark
        conn.send(["error", repr(e)])


ERRORS = {}   # figure name -> failed requests by kind, printed with the figure


def throughput(target, connect, tls, req, seconds, clients, keepalive):
    """requests/s over clients processes (a 0.3 s warm-up each, not counted);
    failed requests are not counted (see ERRORS)."""
    LG["run_for"](target, connect, tls, req, 0.3, keepalive)
    procs = []
    for _ in range(clients):
        a, b = multiprocessing.Pipe(False)
        p = multiprocessing.Process(target=_worker, args=((target, connect, tls, req, seconds,
                                                           keepalive), b))
        p.start()
        procs.append((p, a))
    total, errors = 0, {}
    for p, a in procs:
        r = a.recv()
        p.join()
        if r[0] == "error":
            raise RuntimeError(f"load generator: {r[1]}")
        total += r[0]
        for k, v in r[2].items():
            errors[k] = errors.get(k, 0) + v
    ERRORS["last"] = errors
    if total == 0:
        raise RuntimeError(f"no request succeeded: {errors}")
    return total / seconds


def latency(target, connect, tls, req, seconds, keepalive=False):
    LG["run_for"](target, connect, tls, req, 0.2, keepalive)
    n, lat, errors = LG["run_for"](target, connect, tls, req, seconds, keepalive, True)
    if not lat:
        raise RuntimeError(f"no request succeeded: {errors}")
    for k, v in errors.items():
        ERRORS["last"][k] = ERRORS["last"].get(k, 0) + v
    return statistics.median(lat), n


def failed():
    """The failed requests of the last throughput + latency pair, as text."""
    e = ERRORS.pop("last", {})
    return f"   failed or notes: {e}" if e else ""


def http_req(host):
    return (f"GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bench\r\n"
            f"Connection: close\r\n\r\n").encode()


def origin_req(host, close):
    return (f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bench\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n").encode()


# ----------------------------------------------------------------- the peers

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


def stop_pid(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def start_tinyproxy(tmp):
    """tinyproxy in the foreground on a free port of 127.0.0.1 (our own
    process; stopped by pid)."""
    port = free_port()
    conf = pathlib.Path(tmp) / "tinyproxy.conf"
    conf.write_text(f"""Port {port}
Listen 127.0.0.1
Timeout 60
MaxClients 512
LogLevel Critical
LogFile "{tmp}/tinyproxy.log"
PidFile "{tmp}/tinyproxy.pid"
DisableViaHeader Yes
Allow 127.0.0.1
""")
    log = open(pathlib.Path(tmp) / "tinyproxy.out", "wb")
    proc = subprocess.Popen(["tinyproxy", "-d", "-c", str(conf)], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log, start_new_session=True)
    wait_port(port, proc, "tinyproxy")
    return proc, port


def start_mitmdump(tmp, upstream_ca):
    """mitmdump on a free port, confdir in tmp, verifying the upstream
    against the test CA. Returns (proc, port, its CA certificate)."""
    port = free_port()
    confdir = pathlib.Path(tmp) / "mitmproxy"
    confdir.mkdir(exist_ok=True)
    log = open(pathlib.Path(tmp) / "mitmdump.out", "wb")
    proc = subprocess.Popen(
        ["mitmdump", "--listen-host", "127.0.0.1", "--listen-port", str(port),
         "--set", f"confdir={confdir}", "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}",
         "--set", "flow_detail=0", "--set", "termlog_verbosity=error", "-q"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    wait_port(port, proc, "mitmdump")
    ca = confdir / "mitmproxy-ca-cert.pem"
    deadline = time.monotonic() + 20
    while not ca.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("mitmdump made no CA certificate in its confdir")
        time.sleep(0.05)
    return proc, port, str(ca)


# ----------------------------------------------------------------- ours

class Ours:
    """agentboxd with egress, one heavy sandbox allowed api.test; .why is
    set instead when egress is unavailable."""

    def __init__(self, build, tmp, upstream_port, ca):
        self.why = None
        self.daemon = None
        home = pathlib.Path(tmp) / "agentbox"
        policy = home / "policy.yaml"
        home.mkdir()
        policy.write_text("default: deny\n")
        try:
            self.daemon = SocketDaemon(
                build, home, 1, "--egress-resolve", f"api.test=127.0.0.1:{upstream_port}",
                "--egress-upstream-ca", ca, "--policy", str(policy))
        except RuntimeError as e:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            said = next((ln for ln in lines if "option" in ln or "error" in ln), lines[0])
            self.why = f"agentboxd did not start with the egress options: {said[:300]}"
            return
        try:
            es.egress_status(self.daemon.sock, wait=20)
        except es.EgressUnavailable as e:
            self.why = str(e)
            return
        self.client = Client(self.daemon.sock)
        r = self.client.call("sandbox.create", tier="heavy", network=["api.test"])
        self.sandbox = r["sandbox"]
        self.socket = str(home / "sessions" / self.sandbox / "egress.sock")
        if not os.path.exists(self.socket):
            # As root the sockets live on a tmpfs in the daemon's own mount
            # namespace (docs/egress.md): reached through /proc/PID/root, by
            # a short symlink (a unix socket path is at most 107 bytes).
            private = pathlib.Path(f"/proc/{self.daemon.proc.pid}/root{home}/egress/run/"
                                   f"{self.sandbox}.sock")
            link = pathlib.Path(tmp) / "egress.sock"
            link.symlink_to(private)
            self.socket = str(link)
        if not os.path.exists(self.socket):
            raise RuntimeError(f"no sidecar socket at {self.socket} (docs/egress.md)")
        self.ca = str(home / "egress" / "ca.pem")

    def run_in_sandbox(self, code, timeout=300):
        r = self.client.call("sandbox.run", sandbox=self.sandbox, code=code, timeout=timeout)
        if r.get("status") != "ok":
            raise RuntimeError(f"in-sandbox load generator: {json.dumps(r)[:2000]}")
        return json.loads(r["stdout"].strip().splitlines()[-1])

    def stop(self):
        if self.daemon:
            self.daemon.stop()


def in_sandbox_code(connect, tls, req, seconds, clients, keepalive, lat_seconds):
    return LOADGEN + f"""
import json, multiprocessing
def _w(q):
    try:
        n, _, errors = run_for(["tcp", "127.0.0.1", 3128], {connect!r}, {tls!r}, {req!r},
                               {seconds!r}, {keepalive!r})
        q.put([n, errors])
    except BaseException as e:
        q.put([0, {{"crashed: " + repr(e)[:80]: 1}}])
run_for(["tcp", "127.0.0.1", 3128], {connect!r}, {tls!r}, {req!r}, 0.3, {keepalive!r})
q = multiprocessing.Queue()
ps = [multiprocessing.Process(target=_w, args=(q,)) for _ in range({clients})]
[p.start() for p in ps]
got = [q.get() for _ in ps]
[p.join() for p in ps]
total, errors = sum(g[0] for g in got), {{}}
for g in got:
    for k, v in g[1].items():
        errors[k] = errors.get(k, 0) + v
n, lat, e2 = run_for(["tcp", "127.0.0.1", 3128], {connect!r}, {tls!r}, {req!r}, {lat_seconds!r},
                     {keepalive!r}, True)
for k, v in e2.items():
    errors[k] = errors.get(k, 0) + v
lat.sort()
print(json.dumps({{"rps": total / {seconds!r}, "p50": lat[len(lat) // 2] if lat else None,
                  "errors": errors}}))
"""


# --------------------------------------------------------------------- main

def verdict(ok):
    return "ok" if ok else "MISS"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="1.5 s windows")
    ap.add_argument("--peers-only", action="store_true",
                    help="measure direct, tinyproxy and mitmproxy only")
    a = ap.parse_args()
    secs = 1.5 if a.quick else a.seconds
    lat_secs = min(secs, 2.0)
    for tool in ("tinyproxy", "mitmdump", "openssl"):
        if not shutil.which(tool):
            print(f"bench_egress: {tool} is not installed (Debian packages tinyproxy, "
                  f"mitmproxy, openssl)", file=sys.stderr)
            return 1
    tmp = tempfile.mkdtemp(prefix="bench-egress-")
    pki = es.make_pki(pathlib.Path(tmp) / "pki")
    ready_r, ready_w = multiprocessing.Pipe(False)
    up = multiprocessing.Process(target=upstream_main, args=(ready_w, pki["cert"], pki["key"]),
                                 daemon=True)
    up.start()
    port = ready_r.recv()
    tiny = mitm = ours = None
    rows = []
    try:
        tiny, tiny_port = start_tinyproxy(tmp)
        mitm, mitm_port, mitm_ca = start_mitmdump(tmp, pki["ca"])
        if not a.peers_only:
            ours = Ours(a.build, tmp, port, pki["ca"])
        print(f"# host: {os.cpu_count()} cpus, loadavg at start {os.getloadavg()[0]:.2f}")
        print(f"upstream 127.0.0.1:{port} (epoll, {len(BODY)}-byte answers); {a.clients} load "
              f"clients (processes), {secs} s windows; latency: 1 client, sequential, {lat_secs} s")
        print(f"tinyproxy pid {tiny.pid} port {tiny_port}; mitmdump pid {mitm.pid} port {mitm_port}")
        if ours and ours.why is None:
            print(f"ours: agentboxd pid {ours.daemon.pid}, sandbox {ours.sandbox}, "
                  f"sidecar socket {ours.socket}")
        elif ours:
            print(f"ours: unavailable: {ours.why}")
        direct = ["tcp", "127.0.0.1", port]

        def measure(label, target, connect, tls, req, keep, base_p50=None):
            """Throughput and p50 of one proxy (or direct), printed at once."""
            rps = throughput(target, connect, tls, req, secs, a.clients, keep)
            p50, _ = latency(target, connect, tls, req, lat_secs, keep)
            added = "" if base_p50 is None else f"   added {p50 - base_p50:+.3f} ms"
            print(f"  {label:<25} {rps:9.0f} req/s   p50 {p50:.3f} ms{added}{failed()}")
            return rps, p50

        def measure_inside(connect, tls, req, keep, base_p50=None):
            r = ours.run_in_sandbox(in_sandbox_code(connect, tls, req, secs, a.clients, keep,
                                                    lat_secs))
            p50 = "n/a" if r["p50"] is None else f"{r['p50']:.3f} ms"
            added = ("" if base_p50 is None or r["p50"] is None
                     else f"   added {r['p50'] - base_p50:+.3f} ms")
            errs = (f"   failed or notes: {r['errors']}"
                    if r["errors"] else "")
            print(f"  {'ours (in sandbox, relay)':<25} {r['rps']:9.0f} req/s   p50 {p50}{added}"
                  f"   (information){errs}")

        have_ours = ours is not None and ours.why is None

        # 1. plain HTTP, a connection per request
        print("\n1. plain HTTP, new connection per request")
        _, d_p50 = measure("direct (ceiling)", direct, None, None, origin_req("api.test", True),
                           False)
        t_rps, _ = measure("tinyproxy", ["tcp", "127.0.0.1", tiny_port], None, None,
                           http_req(f"127.0.0.1:{port}"), False, d_p50)
        if have_ours:
            o_rps, o_p50 = measure("ours (sidecar socket)", ["unix", ours.socket], None, None,
                                   http_req("api.test"), False, d_p50)
            measure_inside(None, None, http_req("api.test"), False, d_p50)
            r = o_rps / t_rps
            rows.append(f"plain HTTP req/s: ours / tinyproxy = {r:.2f}x (goal >= "
                        f"{GOALS['http_rps_vs_tinyproxy']:.0f}x) "
                        f"{verdict(r >= GOALS['http_rps_vs_tinyproxy'])}")
            added = o_p50 - d_p50
            rows.append(f"plain HTTP added p50: {added:.3f} ms (goal <= {GOALS['added_p50_ms']} "
                        f"ms) {verdict(added <= GOALS['added_p50_ms'])}")

        # 2. HTTPS with interception
        for keep in (False, True):
            shape = "one tunnel per client, keep-alive" if keep else "new tunnel per request"
            print(f"\n2{'b' if keep else 'a'}. HTTPS with interception, {shape}")
            measure("direct TLS (ceiling)", direct, None, [pki["ca"], "api.test"],
                    origin_req("api.test", not keep), keep)
            m_rps, _ = measure("mitmproxy", ["tcp", "127.0.0.1", mitm_port], f"127.0.0.1:{port}",
                               [mitm_ca, "127.0.0.1"], origin_req(f"127.0.0.1:{port}", not keep),
                               keep)
            if have_ours:
                o_rps, _ = measure("ours (sidecar socket)", ["unix", ours.socket],
                                   "api.test:443", [ours.ca, "api.test"],
                                   origin_req("api.test", not keep), keep)
                measure_inside("api.test:443", ["/etc/agentbox/ca-bundle.pem", "api.test"],
                               origin_req("api.test", not keep), keep)
                r = o_rps / m_rps
                rows.append(f"HTTPS interception req/s ({shape}): ours / mitmproxy = {r:.2f}x "
                            f"(goal >= {GOALS['https_rps_vs_mitmproxy']:.0f}x) "
                            f"{verdict(r >= GOALS['https_rps_vs_mitmproxy'])}")
        print("\ngoals (ours measured on the sidecar socket):")
        if rows:
            for row in rows:
                print("  " + row)
        else:
            why = ours.why if ours else "--peers-only"
            print(f"  not judged: our proxy was not measured ({why})")
        print(f"# loadavg at end {os.getloadavg()[0]:.2f}")
        print("# reproduce: cd " + shlex.quote(str(ROOT)) + " && /usr/bin/python3 "
              "bench/bench_egress.py " + " ".join(shlex.quote(x) for x in sys.argv[1:]))
    finally:
        for p in (tiny, mitm):
            if p:
                stop_pid(p)
        if ours:
            ours.stop()
        up.kill()
        up.join()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, OSError) as e:
        print(f"bench_egress: {e}", file=sys.stderr)
        sys.exit(1)

"""Adversarial tests, heavy tier: network bypass (ADVERSARIAL.md N1, N2).

Nothing here sends a packet off this machine: UDP connect() sends nothing,
and the host-side listeners are on 127.0.0.1 / abstract unix sockets that
the test itself opens."""
import os
import socket
import uuid

import pytest

import agentbox
from agentbox import Sandbox
from conftest import run_probe

SMALL = dict(memory_mb=128, pids=32, timeout=20, disk_mb=16)


def assert_healthy():
    assert agentbox.daemon_info()["pid"] > 0
    with Sandbox(tier="heavy", **SMALL) as other:
        r = other.run("print(1)", timeout=10)
        assert r.status == "ok" and r.stdout == "1\n", r


@pytest.fixture
def box():
    b = Sandbox(tier="heavy", **SMALL)
    yield b
    b.close()


def results(stdout, tag):
    return {l.split()[1]: l.split()[2] for l in stdout.splitlines() if l.startswith(tag + " ")}


# ------------------------------------------------------------------------ N1

def test_n1_only_loopback_and_no_route(box):
    r = run_probe(box, """
import socket, os
try:
    print('IFACES', sorted(n for _, n in socket.if_nameindex()))
except PermissionError:                 # uses netlink, which is refused (E20)
    print('IFACES netlink-refused')
try:
    print('SYSNET', sorted(os.listdir('/sys/class/net')))
except OSError as e:
    print('SYSNET', 'absent')
devs = [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]]
print('DEVS', sorted(devs))
routes = open('/proc/net/route').read().splitlines()[1:]
print('ROUTES', len(routes), [r.split()[1] for r in routes])
try:
    v6 = [l for l in open('/proc/net/ipv6_route').read().splitlines() if not l.endswith(' lo')]
except OSError:
    v6 = []
print('V6ROUTES', len(v6))
""")
    assert "IFACES ['lo']" in r.stdout or "IFACES netlink-refused" in r.stdout, r.stdout
    assert "SYSNET ['lo']" in r.stdout or "SYSNET absent" in r.stdout, r.stdout
    assert "DEVS ['lo']" in r.stdout, r.stdout
    routes = r.stdout.split("ROUTES ")[1].splitlines()[0]
    assert "00000000" not in routes, f"a default route exists: {routes}"
    assert "V6ROUTES 0" in r.stdout, r.stdout


def test_n1_udp_connect_to_public_and_private_is_unreachable(box):
    r = run_probe(box, """
import socket, errno
for host in ('8.8.8.8', '10.0.0.1', '192.168.1.1', '169.254.169.254', '1.1.1.1'):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((host, 53))          # connect() on UDP sends no packet
        print('UDP', host, 'CONNECTED')
    except OSError as e:
        print('UDP', host, errno.errorcode.get(e.errno, e.errno))
    s.close()
for host in ('2001:4860:4860::8888', 'fd00::1'):
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.connect((host, 53))
        print('UDP6', host, 'CONNECTED')
    except OSError as e:
        print('UDP6', host, errno.errorcode.get(e.errno, e.errno))
""")
    res = results(r.stdout, "UDP")
    assert set(res) == {"8.8.8.8", "10.0.0.1", "192.168.1.1", "169.254.169.254", "1.1.1.1"}
    assert all(v == "ENETUNREACH" for v in res.values()), res
    res6 = results(r.stdout, "UDP6")
    assert all(v in ("ENETUNREACH", "EAFNOSUPPORT", "EADDRNOTAVAIL") for v in res6.values()), res6


def test_n1_host_loopback_listener_is_not_reachable(box):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    port = srv.getsockname()[1]
    try:
        r = run_probe(box, f"""
import socket, errno
s = socket.socket()
s.settimeout(3)
try:
    s.connect(('127.0.0.1', {port}))
    print('TCP CONNECTED')
except OSError as e:
    print('TCP', errno.errorcode.get(e.errno, e.errno) if e.errno else type(e).__name__)
# the port is free in the sandbox's own network namespace: binding it works
l = socket.socket(); l.bind(('127.0.0.1', {port})); l.listen(1)
print('BOUND', l.getsockname()[1])
try:       # and the loopback is the sandbox's own (if it is up at all)
    c = socket.create_connection(('127.0.0.1', {port}), timeout=3)
    a, _ = l.accept(); c.sendall(b'own'); print('OWN', a.recv(3).decode())
except OSError as e:
    print('OWN', errno.errorcode.get(e.errno, e.errno))
""")
        # ECONNREFUSED (own loopback, nobody listening) or ENETUNREACH (loopback
        # down): either way the host's listener is out of reach.
        assert "TCP ECONNREFUSED" in r.stdout or "TCP ENETUNREACH" in r.stdout, r.stdout
        assert f"BOUND {port}" in r.stdout, r.stdout
        assert "OWN own" in r.stdout or "OWN ENETUNREACH" in r.stdout, r.stdout
        with pytest.raises(BlockingIOError):
            srv.accept()                 # nothing ever reached the host listener
    finally:
        srv.close()


def test_n1_raw_packet_and_netlink_sockets_are_refused(box):
    r = run_probe(box, """
import socket, errno
cases = {
    'raw-icmp': (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
    'raw-ip': (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW),
    'raw6': (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
    'packet': (socket.AF_PACKET, socket.SOCK_RAW, 0x0300),
    'packet-dgram': (socket.AF_PACKET, socket.SOCK_DGRAM, 0x0300),
    'netlink-route': (socket.AF_NETLINK, socket.SOCK_RAW, 0),
    'netlink-route-dgram': (socket.AF_NETLINK, socket.SOCK_DGRAM, 0),
}
for name, args in cases.items():
    try:
        s = socket.socket(*args)
        print('SOCK', name, 'OPENED')
        s.close()
    except OSError as e:
        print('SOCK', name, errno.errorcode.get(e.errno, e.errno))
# ICMP "ping" sockets: may exist, but have no route anywhere
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    try:
        s.connect(('8.8.8.8', 0))
        print('PING CONNECTED')
    except OSError as e:
        print('PING', errno.errorcode.get(e.errno, e.errno))
except OSError as e:
    print('PING', errno.errorcode.get(e.errno, e.errno))
""")
    res = results(r.stdout, "SOCK")
    assert len(res) == 7, r.stdout
    assert all(v in ("EPERM", "EACCES") for v in res.values()), res
    assert "PING CONNECTED" not in r.stdout, r.stdout


# ------------------------------------------------------------------------ N2

def test_n2_vsock_to_the_host_is_refused(box):
    r = run_probe(box, """
import socket, errno
try:
    s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    try:
        s.settimeout(2)
        s.connect((2, 1024))
        print('VSOCK CONNECTED')
    except OSError as e:
        print('VSOCK', errno.errorcode.get(e.errno, e.errno))
except OSError as e:
    print('VSOCK', errno.errorcode.get(e.errno, e.errno))
""")
    assert "VSOCK EPERM" in r.stdout, r.stdout


def test_n2_host_filesystem_unix_sockets_do_not_exist_inside(box, daemon_socket):
    paths = [str(daemon_socket.path), "/run/dbus/system_bus_socket", "/var/run/docker.sock",
             "/run/docker.sock", "/tmp/.X11-unix/X0", "/run/systemd/private",
             "/run/systemd/journal/socket", "/dev/log",
             os.path.join(os.environ["AGENTBOX_HOME"], "agentboxd.sock")]
    r = run_probe(box, f"""
import socket, errno, os
for p in {paths!r}:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    try:
        s.connect(p)
        print('UNIX', p, 'CONNECTED')
    except OSError as e:
        print('UNIX', p, errno.errorcode.get(e.errno, e.errno))
    print('EXISTS', p, os.path.exists(p))
""")
    res = results(r.stdout, "UNIX")
    assert len(res) == len(paths), r.stdout
    assert all(v in ("ENOENT", "ECONNREFUSED", "EACCES", "EPERM") for v in res.values()), res
    assert res[str(daemon_socket.path)] == "ENOENT", res
    ex = results(r.stdout, "EXISTS")
    assert ex[str(daemon_socket.path)] == "False"
    # the daemon behind that socket is untouched
    assert daemon_socket.rpc_lines(['{"jsonrpc":"2.0","id":1,"method":"daemon.info"}\n'])


def test_n2_host_abstract_unix_socket_is_not_reachable(box):
    name = "\0agentbox-test-" + uuid.uuid4().hex
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(name)
    srv.listen(8)
    srv.setblocking(False)
    dg = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dg.bind(name + "-dgram")
    dg.setblocking(False)
    try:
        r = run_probe(box, f"""
import socket, errno
name = {name!r}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(2)
try:
    s.connect(name)
    print('ABSTRACT CONNECTED')
except OSError as e:
    print('ABSTRACT', errno.errorcode.get(e.errno, e.errno))
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
try:
    d.sendto(b'leak', name + '-dgram')
    print('DGRAM SENT')
except OSError as e:
    print('DGRAM', errno.errorcode.get(e.errno, e.errno))
# well-known host abstract names: X11, systemd
for n in ('\\0/tmp/.X11-unix/X0', '\\0/org/freedesktop/systemd1/notify'):
    t = socket.socket(socket.AF_UNIX)
    try:
        t.connect(n)
        print('WELLKNOWN CONNECTED')
    except OSError as e:
        print('WELLKNOWN', errno.errorcode.get(e.errno, e.errno))
""")
        assert "ABSTRACT ECONNREFUSED" in r.stdout or "ABSTRACT EPERM" in r.stdout, r.stdout
        assert "DGRAM SENT" not in r.stdout, r.stdout
        assert "WELLKNOWN CONNECTED" not in r.stdout, r.stdout
        with pytest.raises(BlockingIOError):
            srv.accept()
        with pytest.raises(BlockingIOError):
            dg.recv(16)
    finally:
        srv.close()
        dg.close()
    assert_healthy()

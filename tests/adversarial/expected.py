"""What the adversarial tests expect of every tier, kept in one place."""

# The only environment variables user code may see (L2).
ALLOWED_ENV = sorted([
    "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "MPLBACKEND", "MPLCONFIGDIR",
    "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED",
])

# Socket families and types no tier offers (E20); (family, type, protocol).
RARE_SOCKETS = {
    # name: (family, type, protocol)
    "AF_NETLINK route": (16, 3, 0), "AF_NETLINK audit": (16, 3, 9),
    "AF_PACKET raw": (17, 3, 0x0300), "AF_PACKET dgram": (17, 2, 0x0300),
    "AF_ALG": (38, 5, 0), "AF_VSOCK stream": (40, 1, 0), "AF_VSOCK dgram": (40, 2, 0),
    "AF_TIPC": (30, 5, 0), "AF_RDS": (21, 5, 0), "AF_KEY": (15, 3, 2),
    "AF_BLUETOOTH": (31, 3, 1), "AF_CAN": (29, 3, 1), "AF_XDP": (44, 3, 0),
    "AF_SMC": (43, 1, 0), "AF_APPLETALK": (5, 2, 0), "AF_X25": (9, 5, 0),
    "AF_AX25": (3, 5, 0), "AF_LLC": (26, 2, 0), "AF_PPPOX": (24, 1, 0),
    "AF_QIPCRTR": (42, 2, 0), "AF_MCTP": (45, 2, 0), "AF_UNSPEC": (0, 1, 0),
    "AF_INET DCCP": (2, 6, 33), "AF_INET6 DCCP": (10, 6, 33),
    "AF_INET SCTP stream": (2, 1, 132), "AF_INET SCTP seqpacket": (2, 5, 132),
    "AF_INET6 SCTP": (10, 1, 132), "AF_INET SOCK_PACKET": (2, 10, 0x0300),
    "AF_INET dccp cloexec": (2, 6 | 0o2000000, 33),
    # IPPROTO_MPTCP (262): multipath TCP, asked for on a stream socket.
    "AF_INET MPTCP": (2, 1, 262), "AF_INET6 MPTCP": (10, 1, 262),
    "AF_INET MPTCP cloexec": (2, 1 | 0o2000000, 262),
}

# The families heavy needs and nano refuses too.
INET_AND_UNIX_SOCKETS = {
    "AF_UNIX stream": (1, 1, 0), "AF_UNIX dgram": (1, 2, 0), "AF_UNIX seqpacket": (1, 5, 0),
    "AF_INET tcp": (2, 1, 0), "AF_INET udp": (2, 2, 0), "AF_INET raw icmp": (2, 3, 1),
    "AF_INET ping": (2, 2, 1), "AF_INET6 tcp": (10, 1, 0), "AF_INET6 udp": (10, 2, 0),
    "AF_INET6 raw": (10, 3, 58),
}

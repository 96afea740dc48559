"""What the adversarial tests expect of every tier, kept in one place."""

# The only environment variables user code may see (L2).
ALLOWED_ENV = sorted([
    "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "MPLBACKEND", "MPLCONFIGDIR",
    "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED",
])
# What heavy sandboxes get on top when the daemon's egress is on (the
# default; docs/egress.md): the relay's address and our CA bundle. Nano has
# no network and none of them.
EGRESS_ENV = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy",
              "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT"]
HEAVY_ENV = sorted(ALLOWED_ENV + EGRESS_ENV)

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


# ------------------------------------------------------------------------
# What each attack of the escape catalogue (test_escape.py) must end in, per
# backend profile (tests/conftest.py BACKEND_PROFILES): for each result key a
# probe reports, the value it must have, or a tuple of the values allowed.
# Where tiers differ it is because the tier differs (nano has no fork, no
# /proc, no writable file system and refuses some calls in its allowlist that
# heavy lets through to a kernel that then refuses them), never a weaker
# check: a key absent from a profile's column is a call that profile's probe
# does not make (the test says why).

class each(tuple):
    """For a result that is a dict or a list: every value of it is one of
    these."""


class some(dict):
    """For a result that is a dict: the keys named have these outcomes
    (a value or a tuple of the values allowed); the others are not judged."""


def _every(outcomes, *names):
    """The same outcomes on the named profiles."""
    return {n: dict(outcomes) for n in names}


def _merge(*columns):
    out = {}
    for col in columns:
        for name, outcomes in col.items():
            out.setdefault(name, {}).update(outcomes)
    return out


_NS = ("user", "ns", "user|ns", "pid", "net", "ipc", "uts", "cgroup", "time")

CATALOGUE = {
    "e1": _merge(
        _every({**{"unshare " + n: "EPERM" for n in _NS},
                **{"clone " + n: "EPERM" for n in ("user", "user|ns", "pid", "net")},
                "clone thread|user": "EPERM"}, "heavy", "nano"),
        # clone3 cannot be filtered by its flags (they sit in memory): heavy
        # may refuse it outright or answer ENOSYS so that libc falls back to
        # clone; nano always says ENOSYS.
        {"heavy": {"clone3": ("ENOSYS", "EPERM")}, "nano": {"clone3": "ENOSYS"}}),
    "e2": _merge(
        _every({k: "EPERM" for k in (
            "mount tmpfs", "remount / rw", "remount /usr rw", "remount /workspace rw",
            "bind /proc", "bind /usr", "umount2 kallsyms", "umount2 /proc/sys",
            "umount2 /workspace", "umount2 /", "pivot_root", "pivot_root /usr", "chroot /tmp",
            "chroot /usr")}, "heavy", "nano"),
        # heavy: a read-only root (statfs says so, the kernel says EROFS or
        # Landlock EACCES); nano: statfs and any create are refused by its
        # allowlist before the file system is asked.
        {"heavy": {"statfs": "OK", "root_ro": True, "kallsyms_len": 0,
                   "create_in_root": ("EROFS", "EACCES"), "mkdir_in_root": ("EROFS", "EACCES")},
         "nano": {"statfs": "EPERM", "create_in_root": "EPERM", "mkdir_in_root": "EPERM"}}),
    "e3": _every({k: "EPERM" for k in ("fsopen", "fsconfig", "fsmount", "open_tree",
                                       "move_mount", "fspick", "mount_setattr")},
                 "heavy", "nano"),
    "e7": _every({"name_to_handle_at": "EPERM", "name_to_handle_at /usr": "EPERM",
                  "open_by_handle_at": "EPERM"}, "heavy", "nano"),
    # io_uring: nano's allowlist may let the kernel answer ENOSYS where it
    # was built without io_uring; heavy refuses it in its filter.
    "e10": _merge(
        _every({k: "EPERM" for k in ("io_uring_setup", "io_uring_enter", "io_uring_register")},
               "heavy"),
        _every({k: ("EPERM", "ENOSYS") for k in ("io_uring_setup", "io_uring_enter",
                                                 "io_uring_register")}, "nano")),
    "e11": _every({k: "EPERM" for k in ("bpf PROG_LOAD", "bpf MAP_CREATE", "perf_event_open",
                                        "userfaultfd", "userfaultfd user")}, "heavy", "nano"),
    "e12": _every({k: "EPERM" for k in ("add_key", "request_key", "keyctl get_keyring_id",
                                        "keyctl get session", "keyctl join")},
                  "heavy", "nano"),
    "e13": _every({k: "EPERM" for k in (
        "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
        "reboot", "swapon", "swapoff", "acct", "acct file", "settimeofday", "sethostname")},
        "heavy", "nano"),
    "e19": _merge(
        _every({"READ_IMPLIES_EXEC": "EPERM", "ADDR_NO_RANDOMIZE": "EPERM", "both": "EPERM",
                "PER_LINUX32": "EPERM", "query": 0, "query after": 0}, "heavy", "nano"),
        # heavy lets a process set the default persona it already has
        # (return value, errno); nano's allowlist takes only the query.
        {"heavy": {"set default": [0, "OK"]}, "nano": {"set default": [-1, "EPERM"]}}),
    "e21": _merge(
        _every({k: "EPERM" for k in ("memfd_secret", "set_mempolicy_home_node", "ioprio_set",
                                     "ioprio_set junk", "modify_ldt read", "modify_ldt write",
                                     "mptcp", "mptcp6")}, "heavy", "nano"),
        # heavy keeps plain TCP and ioprio_get; nano has no socket at all
        {"heavy": {"ioprio_get": "OK", "tcp": "OK"},
         "nano": {"ioprio_get": "EPERM", "tcp": "EPERM"}}),
}

# E4: no cgroup mount, no /sys/fs/cgroup, nothing created beside /sys
CATALOGUE["e4"] = _merge(
    _every({"mount cgroup v1": "EPERM", "mount cgroup v1 none": "EPERM",
            "mount cgroup2": "EPERM", "sys_fs_cgroup_exists": False}, "heavy", "nano"),
    {"heavy": {"mkdir /sys": ("EROFS", "EACCES")}, "nano": {"mkdir /sys": "EPERM"}})

# E5: the executables and the standard library: heavy's kernel refuses the
# write (read-only mounts, Landlock, a running text); nano's allowlist refuses
# any open for writing before the file system is asked, and has no /proc.
_E5_HEAVY = ("EACCES", "EPERM", "ETXTBSY", "EROFS", "ENOENT")
CATALOGUE["e5"] = {
    "heavy": {"proc": True, "python_write": ("EROFS", "EACCES", "ETXTBSY"),
              "lib_write": ("EROFS", "EACCES", "ETXTBSY"), "writes": each(_E5_HEAVY),
              # a read-only open succeeds; the write through it is EBADF
              "append": each(("EBADF",))},
    "nano": {"proc": False, "python_write": "EPERM", "lib_write": "EPERM",
             "writes": each(("EPERM",)), "append": each(("EPERM",))},
}

# E6: which directories a probe may open (to climb from them)
CATALOGUE["e6"] = {
    "heavy": {"opened": some({"/": "OK", "/workspace": "OK",
                              "/proc/1/root": ("EACCES", "EPERM"),
                              "/proc/1/cwd": ("EACCES", "EPERM")})},
    "nano": {"opened": some({"/workspace": "OK", "/proc/1/root": "ENOENT",
                             "/proc/1/cwd": "ENOENT"})},
}

# E8: setns on the namespace files of pid 1 and of the probe (heavy: the fd
# of its own opens, setns is refused; pid 1's may not even open), nano has
# no such files.
CATALOGUE["e8"] = {
    "heavy": {"/proc/self": ("EPERM",), "/proc/1": ("EPERM", "open EACCES", "open EPERM")},
    "nano": {"/proc/self": ("open ENOENT",), "/proc/1": ("open ENOENT",)},
}

# E9: every way to read, write, trace or compare another process
_E9_TARGETS = ("1", "ppid", "self", "3")
_E9 = {f"{call} {t}": "EPERM" for t in _E9_TARGETS for call in (
    "ptrace attach", "ptrace seize", "process_vm_readv", "process_vm_writev", "kcmp")}
CATALOGUE["e9"] = _merge(
    _every({**_E9, "ptrace traceme": "EPERM", "pidfd_getfd": "EPERM"}, "heavy", "nano"),
    {"heavy": {**{f"{call} sibling": "EPERM" for call in (
        "ptrace attach", "ptrace seize", "process_vm_readv", "process_vm_writev", "kcmp")},
        # a pidfd of a process of its own sandbox is harmless (and python's
        # subprocess uses it); what it could reach is refused (pidfd_getfd)
        "pidfd_open 1": "OK",
        "mem write sibling": ("EACCES", "EPERM"), "mem write 1": ("EACCES", "EPERM")},
     "nano": {"pidfd_open 1": "EPERM"}})

# E15: junk above bit 32 of an argument never turns a refusal into a pass
CATALOGUE["e15"] = _merge(
    _every({k: "EPERM" for k in (
        "clone NEWUSER junk", "clone NEWNS junk", "unshare NEWUSER junk", "personality junk",
        "personality junk READ_IMPLIES_EXEC", "socket NETLINK junk", "socket UNIX junk",
        "socket INET SCTP junk", "socket INET DCCP junk")}, "heavy", "nano"),
    # heavy: TIOCSTI and TIOCLINUX are refused by the filter, junk or not,
    # while the junk alone does not make ioctl fail (the control reaches the
    # kernel); nano answers every ioctl ENOTTY.
    {"heavy": {"ioctl TIOCSTI junk": "EPERM", "ioctl TIOCSTI": "EPERM",
               "ioctl TIOCLINUX junk": "EPERM", "ioctl TIOCSTI on fd 3": "EPERM",
               "ioctl FIONREAD junk (control)": "ENOTTY"},
     "nano": {"ioctl TIOCSTI junk": "ENOTTY", "ioctl TIOCSTI": "ENOTTY",
              "ioctl TIOCLINUX junk": "ENOTTY", "ioctl TIOCSTI on fd 3": "ENOTTY",
              "ioctl FIONREAD junk (control)": "ENOTTY"}},
    # nano's allowlist compares kill/tgkill's pid, openat's flags, prlimit64's
    # pid and fcntl's command on 64 bits and refuses; heavy allows fork, UDP
    # sockets, signals to itself, files in /tmp and reading its own limits, so
    # there the kernel reads the low 32 bits (a fork, a UDP socket, a signal
    # to itself, a file, a read of its limits), while a signal to pid 1 is
    # refused (the filter, whatever the junk).
    {"heavy": {"clone fork junk": "OK", "socket INET junk": "OK", "kill self junk": "OK",
               "kill 1 junk": "EPERM", "tgkill junk": "EPERM", "openat wronly junk": "OK",
               "prlimit64 junk pid": "OK", "prlimit64 raise": "OK",
               "fcntl F_SETLK junk": "EFAULT"},
     "nano": {k: "EPERM" for k in (
         "clone fork junk", "socket INET junk", "kill self junk", "kill 1 junk", "tgkill junk",
         "openat wronly junk", "prlimit64 junk pid", "prlimit64 raise", "fcntl F_SETLK junk")}})

# E20, N1, N2: socket families. "socket": what each family must give (EPERM
# unless named); heavy keeps the families Python needs, in a network
# namespace of its own with only loopback up.
CATALOGUE["e20"] = {
    # (ping sockets: a new network namespace's ping_group_range admits no
    # group: EACCES; if_nameindex needs netlink: EPERM)
    "heavy": {"socket": {"AF_UNIX stream": "OK", "AF_UNIX dgram": "OK",
                         "AF_UNIX seqpacket": "OK", "AF_INET tcp": "OK", "AF_INET udp": "OK",
                         "AF_INET6 tcp": "OK", "AF_INET6 udp": "OK", "AF_INET ping": "EACCES"},
              "socketpair unix": "OK", "socketpair netlink": "EPERM",
              "socketpair vsock": "EPERM", "udp public": "ENETUNREACH",
              "udp private": "ENETUNREACH", "tcp loopback": "ECONNREFUSED",
              "if_nameindex": "EPERM", "abstract unix": "ECONNREFUSED", "docker.sock": "ENOENT",
              "vsock cid 2": "EPERM"},
    "nano": {"socket": {}, **{k: "EPERM" for k in (
        "socketpair unix", "socketpair netlink", "socketpair vsock", "udp public",
        "udp private", "tcp loopback", "if_nameindex", "abstract unix", "docker.sock",
        "vsock cid 2")}},
}

# E14: a call of another ABI (x32, int 0x80) kills its caller (SIGSYS from
# the filter's bad-architecture or x32 rule): heavy's forked child dies of
# it; nano, which cannot fork, loses the sandbox (its run ends killed).
CATALOGUE["e14"] = {"heavy": {"signal": 31}, "nano": {"status": "killed"}}

# E16: no capability, no new privileges, no way to a setuid file that
# gains any. Heavy runs as uid 0 of its user namespace with every capability
# set empty and no_new_privs (it reads that from /proc, and may write and
# run a setuid copy, which gains nothing); nano refuses capget, prctl, any
# file write and exec outright.
CATALOGUE["e16"] = {
    "heavy": {"uid": [0, 0, 0, 0], "proc status": True, "capget": ["OK", [0] * 6],
              "capset": "EPERM", "prctl GET_NO_NEW_PRIVS": [1, "OK"],
              "prctl SET_NO_NEW_PRIVS 0": "EINVAL", "prctl CAPBSET_READ": [0, "OK"],
              "prctl SET_DUMPABLE": "OK", "setuid 1000": ("EPERM", "EINVAL"),
              "setresuid 1000": ("EPERM", "EINVAL"), "setresuid 0": "OK", "setgroups": "EPERM",
              "chmod python3": ("EROFS", "EPERM", "EACCES"),
              "setxattr python3": ("EROFS", "EPERM", "EACCES"),
              "runs": some({"/tmp": some({"copy": "OK"}), "/workspace": some({"copy": "OK"})})},
    "nano": {"uid": [0, 0, 0, 0], "proc status": False, "capget": ["EPERM", [0] * 6],
             "capset": "EPERM", "prctl GET_NO_NEW_PRIVS": [-1, "EPERM"],
             "prctl SET_NO_NEW_PRIVS 0": "EPERM", "prctl CAPBSET_READ": [-1, "EPERM"],
             "prctl SET_DUMPABLE": "EPERM", "setuid 1000": "EPERM", "setresuid 1000": "EPERM",
             "setresuid 0": "EPERM", "setgroups": "EPERM", "chmod python3": "EPERM",
             "setxattr python3": "EPERM",
             "runs": some({"/tmp": {"copy": "EPERM"}, "/workspace": {"copy": "EPERM"}}),
             "execv": "EPERM"},
}

# E17: code from memory or from a file it wrote. Heavy allows memfd and
# exec (what runs is as jailed as the caller, test_escape.JAILED); nano
# refuses memfd, every exec, fork and spawn, and every file it could write.
CATALOGUE["e17"] = {
    "heavy": {"memfd_create": "OK", "memfd_create cloexec": "OK", "write /tmp": "OK",
              "tmp exists": True, "subprocess": "OK", "posix_spawn": "OK", "O_TMPFILE": "OK",
              "shm_open": "OK"},
    "nano": {**{k: "EPERM" for k in (
        "memfd_create", "memfd_create cloexec", "execveat fd", "execve", "write /tmp",
        "O_TMPFILE", "shm_open", "subprocess", "posix_spawn", "vfork")}, "tmp exists": False},
}

# E18: a process's own seccomp filter or Landlock ruleset only tightens.
# Heavy lets a child install them (strict mode on top of a filter is EINVAL)
# and the jail's rules still hold beneath; nano refuses installing any
# (strict mode included) and its jail is intact afterwards.
CATALOGUE["e18"] = {
    "heavy": {"strict": "EINVAL", "seccomp strict": {"strict": "EINVAL"},
              "allow_all": some({"install": "OK", "prctl install": "OK", "unshare": "EPERM",
                                 "mount": "EPERM", "ptrace": "EPERM"}),
              "deny_getppid": {"install": "OK", "getppid": "EACCES", "unshare": "EPERM"},
              "clear nnp": "EINVAL", "nnp": 1, "landlock abi": "available",
              # the jail's Landlock rules grant no READ_DIR on "/": still
              # forbidden under a permissive ruleset of its own
              "landlock permissive": {"create": "OK", "add": "OK", "restrict": "OK",
                                      "list /": "EACCES", "write /usr": ("EROFS", "EACCES"),
                                      "unshare": "EPERM"},
              "landlock tight": {"create": "OK", "add": "OK", "restrict": "OK",
                                 "read os-release": "EACCES", "write tmp": "OK"},
              "control list /": "EACCES", "unshare after": "EPERM", "socket after": "OK"},
    "nano": {"strict": "EPERM", "seccomp strict": {"strict": "EPERM"},
             "allow_all": {"install": "EPERM", "prctl install": "EPERM", "unshare": "EPERM",
                           "mount": "EPERM", "ptrace": "EPERM"},
             "deny_getppid": {"install": "EPERM", "getppid": "OK", "unshare": "EPERM"},
             "clear nnp": "EPERM", "nnp": -1, "landlock abi": [-1, "EPERM"],
             "landlock permissive": {"create": "EPERM", "restrict": "EPERM",
                                     "list /": "EACCES", "write /usr": "EPERM",
                                     "unshare": "EPERM"},
             "landlock tight": {"create": "EPERM"},
             "control list /": "EACCES", "unshare after": "EPERM", "socket after": "EPERM"},
}

# L3 (and nano's L1): kernel information. Heavy has a /proc of its own whose
# host files are masked (read empty); nano has no /proc, /sys or /dev/kmsg.
CATALOGUE["l3"] = _merge(
    _every({"syslog READ_ALL": "EPERM", "syslog SIZE_BUFFER": "EPERM",
            "syslog READ_CLEAR": "EPERM", "mount proc": "EPERM", "mount sysfs": "EPERM",
            "open /dev/kmsg": ("ENOENT", "EACCES")}, "heavy", "nano"),
    {"heavy": {"files": some({"/proc/kallsyms": 0, "/proc/keys": 0}),   # on every kernel: masked
               "exists": some({"/proc": True, "/proc/kallsyms": True, "/sys/firmware": False,
                               "/dev/mem": False, "/dev/kcore": False})},
     "nano": {"files": some({"/proc/kallsyms": "ENOENT", "/proc/keys": "ENOENT"}),
              "exists": each((False,))}})

# L2: the environment user code sees is the allowlist (heavy: exactly it;
# nano: a part of it), and the daemon's secret is in none of it.
CATALOGUE["l2"] = _merge(
    _every({"values_have_secret": False, "libc_environ_has_secret": False}, "heavy", "nano"),
    {"heavy": {"keys": HEAVY_ENV}, "nano": {"keys": each(tuple(ALLOWED_ENV))}})

# E22: the host's boot, hardware and disk information in /proc: heavy masks
# it (files read empty, directories list empty) and keeps what Python,
# numpy and pandas read; nano has no /proc at all.
CATALOGUE["e22"] = {
    "heavy": {"files": each((0,)),
              "dirs": some({"/proc/bus": [], "/proc/irq": [], "/proc/pressure": []}),
              "mkdir": ("EROFS", "EACCES", "EPERM"), "kept": "readable"},
    "nano": {"files": each(("ENOENT",)), "dirs": each(("ENOENT",)), "mkdir": "EPERM",
             "kept": each(("ENOENT",))},
}

# E23: the host's /usr/local: heavy mounts an empty one; nano's Landlock
# rules do not let it be listed (and nothing there is on sys.path).
CATALOGUE["e23"] = {
    "heavy": {"usr_local": [], "create": ("EROFS", "EACCES", "EPERM")},
    "nano": {"usr_local": "EACCES", "create": "EPERM"},
}

# S5: TIOCSTI and TIOCLINUX on every descriptor: heavy's filter refuses them
# (EPERM; where the kernel is asked first, a descriptor that is no terminal
# says ENOTTY, a closed one EBADF); nano answers every ioctl ENOTTY.
CATALOGUE["s5"] = {"heavy": {"ioctl": ("EPERM", "ENOTTY", "EBADF")},
                   "nano": {"ioctl": ("ENOTTY",)}}

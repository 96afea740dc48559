/* seccomp.c - the seccomp-bpf policies of both tiers, built with libseccomp.
 *
 * The heavy tier runs a full userland (pip, compilers, subprocesses), so its
 * policy is a deny-list: every system call is allowed except the ones that
 * reach kernel attack surface a sandboxed program never needs (namespaces,
 * mounts, ptrace, io_uring, bpf, keyrings, modules, ...) or that could undo
 * another layer. Refused calls fail with EPERM, so that well-behaved
 * programs see an ordinary error instead of dying; clone3 fails with ENOSYS
 * because glibc then falls back to clone, whose flags (unlike clone3's, which
 * live in memory) the filter can inspect.
 *
 * The nano tier runs nothing but an already initialised CPython, so its
 * policy is an allowlist (see build_nano() below): everything not listed
 * fails with EPERM.
 *
 * Only the native architecture is admitted. A system call made through
 * another ABI (i386 `int 0x80`, x32 numbers on x86_64) kills the whole
 * process: a policy written for one syscall table is meaningless for
 * another.
 *
 * Arguments that the kernel reads as 32-bit ints are compared on their low
 * 32 bits only (SCMP_CMP_MASKED_EQ with 0xffffffff) where a match means
 * "deny", so that junk in the upper half of the register cannot turn a
 * denied value into one the filter does not recognise (E15). The socket
 * family, where the filter denies everything *except* a few values, is
 * compared on all 64 bits instead, so junk makes the call fail closed.
 * The nano allowlist follows the same rule from the other side: a value it
 * admits is compared on all 64 bits unless the kernel itself ignores the
 * upper half, so junk never widens what is allowed.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <seccomp.h>

#include "confine.h"
#include "internal.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef TIOCLINUX
#define TIOCLINUX 0x541C
#endif
#ifndef SOCK_DCCP
#define SOCK_DCCP 6
#endif
#ifndef SOCK_PACKET
#define SOCK_PACKET 10
#endif
#ifndef IPPROTO_DCCP
#define IPPROTO_DCCP 33
#endif
#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif
#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

#define LOW32 0xffffffffULL

/* The calls refused outright. Names libseccomp does not know on the build
 * architecture (iopl, ioperm and _sysctl exist only on some) are skipped
 * when the filter is built. */
static const char *const denied_names[] = {
    /* New namespaces and mounts: the jail has already set them up. */
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "move_mount",
    "mount_setattr",
    /* Reading or writing other processes. */
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    /* Large kernel attack surfaces with no use inside a sandbox. */
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    /* Memory hidden even from the kernel's direct map, and per-process
     * x86 segment descriptors: both new kernel code paths that nothing a
     * sandbox runs needs (modify_ldt exists only on x86). */
    "memfd_secret",
    "modify_ldt",
    "keyctl",
    "add_key",
    "request_key",
    /* Host administration. */
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "open_by_handle_at",
    "name_to_handle_at",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "vhangup",
    "uselib",
    "ustat",
    "sysfs",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "iopl",
    "ioperm",
    /* I/O scheduling priority (other processes' too, within the user
     * namespace) and NUMA placement against the host's topology. */
    "ioprio_set",
    "set_mempolicy_home_node",
    "fanotify_init",
    "sethostname",
    "setdomainname",
    "nfsservctl",
    "_sysctl",
    /* Refused with ENOSYS rather than EPERM; listed for doctor. */
    "clone3",
    NULL,
};

const char *const *ab_seccomp_heavy_denied(void)
{
	return denied_names;
}

/* Namespace flags a clone() may not carry. CLONE_NEWTIME shares its bit
 * with the exit-signal field of clone(2), but no valid signal sets it. */
static const uint64_t clone_ns_flags[] = {
    CLONE_NEWUSER, CLONE_NEWNS,	 CLONE_NEWPID,	  CLONE_NEWNET,
    CLONE_NEWIPC,  CLONE_NEWUTS, CLONE_NEWCGROUP, CLONE_NEWTIME,
};

/* Calls younger than some libseccomp releases, by number, so that an older
 * library cannot silently drop their rules. The numbers are the same on
 * x86_64 and aarch64 (the architectures this runtime builds for): both use
 * the common table from 424 on. */
static const struct {
	const char *name;
	int nr;
} late_calls[] = {
#if defined(__x86_64__) || defined(__aarch64__)
    {"memfd_secret", 447},
    {"set_mempolicy_home_node", 450},
#endif
    {NULL, 0},
};

static int resolve_name(const char *name)
{
	int nr = seccomp_syscall_resolve_name(name);
	if (nr != __NR_SCMP_ERROR)
		return nr;
	for (size_t i = 0; late_calls[i].name; i++)
		if (!strcmp(name, late_calls[i].name))
			return late_calls[i].nr;
	return __NR_SCMP_ERROR;
}

static int add_rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned int count,
		    const struct scmp_arg_cmp *cmp, ab_error *err)
{
	/* Unknown names resolve to __NR_SCMP_ERROR, and names that exist only
	 * on other architectures to negative pseudo numbers: neither can be
	 * called here, so neither needs a rule. */
	int nr = resolve_name(name);
	if (nr == __NR_SCMP_ERROR || nr < 0)
		return 0;
	int rc = seccomp_rule_add_array(ctx, action, nr, count, cmp);
	if (rc < 0)
		return ab_error_errno(err, rc, "seccomp rule for %s", name);
	return 0;
}

/* socket(2) and socketpair(2) take (family, type, protocol) alike. */
static int add_socket_rules(scmp_filter_ctx ctx, const char *name, ab_error *err)
{
	const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
	int rc;

	/* Any family but unix, inet and inet6 is refused (E20): netlink,
	 * packet, alg, vsock, tipc, rds, ... libseccomp admits one comparison
	 * per argument and rule, so "not in {1, 2, 10}" is spelled as the
	 * union of 0, 3..9 and everything above 10. The comparisons are on all
	 * 64 bits, so a family with junk in the upper half is refused too. */
	for (uint64_t f = 0; f < AF_INET6; f++) {
		if (f == AF_UNIX || f == AF_INET)
			continue;
		struct scmp_arg_cmp c[] = {SCMP_A0_64(SCMP_CMP_EQ, f)};
		if ((rc = add_rule(ctx, eperm, name, 1, c, err)) < 0)
			return rc;
	}
	struct scmp_arg_cmp above[] = {SCMP_A0_64(SCMP_CMP_GT, AF_INET6)};
	if ((rc = add_rule(ctx, eperm, name, 1, above, err)) < 0)
		return rc;

	/* Within inet and inet6, the rarely used and often buggy DCCP, SCTP
	 * and MPTCP protocols and the obsolete SOCK_PACKET type are refused.
	 * (An MPTCP socket is asked for as IPPROTO_MPTCP on a stream socket;
	 * plain TCP is unaffected.) The type's low four bits are the type
	 * proper; the rest are flags. */
	static const int inet_families[] = {AF_INET, AF_INET6};
	for (size_t i = 0; i < 2; i++) {
		uint64_t f = (uint64_t)inet_families[i];
		struct scmp_arg_cmp t_dccp[] = {
		    SCMP_A0_64(SCMP_CMP_MASKED_EQ, LOW32, f),
		    SCMP_A1_64(SCMP_CMP_MASKED_EQ, 0xf, SOCK_DCCP),
		};
		struct scmp_arg_cmp t_packet[] = {
		    SCMP_A0_64(SCMP_CMP_MASKED_EQ, LOW32, f),
		    SCMP_A1_64(SCMP_CMP_MASKED_EQ, 0xf, SOCK_PACKET),
		};
		struct scmp_arg_cmp p_sctp[] = {
		    SCMP_A0_64(SCMP_CMP_MASKED_EQ, LOW32, f),
		    SCMP_A2_64(SCMP_CMP_MASKED_EQ, LOW32, IPPROTO_SCTP),
		};
		struct scmp_arg_cmp p_dccp[] = {
		    SCMP_A0_64(SCMP_CMP_MASKED_EQ, LOW32, f),
		    SCMP_A2_64(SCMP_CMP_MASKED_EQ, LOW32, IPPROTO_DCCP),
		};
		struct scmp_arg_cmp p_mptcp[] = {
		    SCMP_A0_64(SCMP_CMP_MASKED_EQ, LOW32, f),
		    SCMP_A2_64(SCMP_CMP_MASKED_EQ, LOW32, IPPROTO_MPTCP),
		};
		if ((rc = add_rule(ctx, eperm, name, 2, t_dccp, err)) < 0 ||
		    (rc = add_rule(ctx, eperm, name, 2, t_packet, err)) < 0 ||
		    (rc = add_rule(ctx, eperm, name, 2, p_sctp, err)) < 0 ||
		    (rc = add_rule(ctx, eperm, name, 2, p_dccp, err)) < 0 ||
		    (rc = add_rule(ctx, eperm, name, 2, p_mptcp, err)) < 0)
			return rc;
	}
	return 0;
}

/* A filter context with the default action def. seccomp_init() adds the
 * native architecture only; every other architecture, including x32 on
 * x86_64 (libseccomp compares the syscall number against the x32 bit in an
 * x86_64-only filter), kills the process. no_new_privs is set on load too:
 * the caller normally set it already, and the filter must never load
 * without it. */
static int new_filter(uint32_t def, scmp_filter_ctx *out, ab_error *err)
{
	scmp_filter_ctx ctx = seccomp_init(def);
	if (!ctx)
		return ab_error_set(err, -ENOMEM, "seccomp_init failed");
	int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	if (rc < 0) {
		seccomp_release(ctx);
		return ab_error_errno(err, rc, "seccomp: set bad-arch action");
	}
	rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1);
	if (rc < 0) {
		seccomp_release(ctx);
		return ab_error_errno(err, rc, "seccomp: set no_new_privs attribute");
	}
	*out = ctx;
	return 0;
}

/* Loads a built filter (or exports it to fd when fd >= 0) and releases it;
 * rc is the result of building it. */
static int finish_filter(scmp_filter_ctx ctx, int rc, int fd, ab_error *err)
{
	if (rc < 0)
		return rc;
	rc = fd >= 0 ? seccomp_export_bpf(ctx, fd) : seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc < 0)
		return fd >= 0 ? ab_error_errno(err, rc, "export seccomp filter to fd %d", fd)
			       : ab_error_errno(err, rc, "load seccomp filter");
	return 0;
}

/* Builds the heavy filter. On success *out owns a context the caller
 * releases with seccomp_release(). */
static int build_heavy(const ab_seccomp_opts *opts, scmp_filter_ctx *out, ab_error *err)
{
	const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
	int rc;

	*out = NULL;
	scmp_filter_ctx ctx;
	if ((rc = new_filter(SCMP_ACT_ALLOW, &ctx, err)) < 0)
		return rc;

	for (size_t i = 0; denied_names[i]; i++) {
		const char *name = denied_names[i];
		uint32_t action = eperm;
		if (!strcmp(name, "clone3"))
			action = SCMP_ACT_ERRNO(ENOSYS);
		if ((rc = add_rule(ctx, action, name, 0, NULL, err)) < 0)
			goto fail;
	}

	/* clone: one rule per namespace flag. The flags are arg0 on x86_64
	 * and aarch64 (the architectures this runtime builds for). */
	for (size_t i = 0; i < sizeof(clone_ns_flags) / sizeof(clone_ns_flags[0]); i++) {
		struct scmp_arg_cmp c[] = {
		    SCMP_A0_64(SCMP_CMP_MASKED_EQ, clone_ns_flags[i], clone_ns_flags[i])};
		if ((rc = add_rule(ctx, eperm, "clone", 1, c, err)) < 0)
			goto fail;
	}

	/* personality: only the default persona (0) and the query value
	 * (0xffffffff) are allowed; READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE and
	 * the rest are refused (E19). The kernel reads the persona as an
	 * unsigned int, so only the low 32 bits count. A 32-bit value is
	 * neither all zeros nor all ones exactly when two neighbouring bits
	 * differ, and each such pair is one masked comparison (libseccomp
	 * admits a single comparison per argument and rule). */
	for (unsigned int bit = 0; bit < 31; bit++) {
		uint64_t lo = 1ULL << bit, hi = 1ULL << (bit + 1);
		struct scmp_arg_cmp c1[] = {SCMP_A0_64(SCMP_CMP_MASKED_EQ, lo | hi, lo)};
		struct scmp_arg_cmp c2[] = {SCMP_A0_64(SCMP_CMP_MASKED_EQ, lo | hi, hi)};
		if ((rc = add_rule(ctx, eperm, "personality", 1, c1, err)) < 0 ||
		    (rc = add_rule(ctx, eperm, "personality", 1, c2, err)) < 0)
			goto fail;
	}

	/* ioctl: TIOCSTI pushes input into a terminal and TIOCLINUX can do the
	 * same on a virtual console (S5). The kernel reads the command as an
	 * unsigned int, so only the low 32 bits are compared. */
	static const uint64_t tty_cmds[] = {TIOCSTI, TIOCLINUX};
	for (size_t i = 0; i < 2; i++) {
		struct scmp_arg_cmp c[] = {SCMP_A1_64(SCMP_CMP_MASKED_EQ, LOW32, tty_cmds[i])};
		if ((rc = add_rule(ctx, eperm, "ioctl", 1, c, err)) < 0)
			goto fail;
	}

	if ((rc = add_socket_rules(ctx, "socket", err)) < 0 ||
	    (rc = add_socket_rules(ctx, "socketpair", err)) < 0)
		goto fail;

	if (opts && !opts->allow_exec) {
		if ((rc = add_rule(ctx, eperm, "execve", 0, NULL, err)) < 0 ||
		    (rc = add_rule(ctx, eperm, "execveat", 0, NULL, err)) < 0)
			goto fail;
	}

	*out = ctx;
	return 0;
fail:
	seccomp_release(ctx);
	return rc;
}

/* ------------------------------------------------------- compiled once
 *
 * Building a filter with libseccomp (resolving names, adding rules,
 * generating BPF) costs more than loading it. A zygote calls
 * ab_seccomp_precompile() once, before it forks any sandbox: every sandbox
 * then loads the very program seccomp_export_bpf() produced, which is what
 * seccomp_load() would have generated and loaded (same attributes: the
 * bad-architecture action is in the program; no_new_privs is set first; no
 * filter flags). */
static int build_nano(scmp_filter_ctx *out, pid_t self_pid, ab_error *err);

enum { PROG_HEAVY_EXEC, PROG_HEAVY_NOEXEC, PROG_NANO, PROG__COUNT };
#define NANO_EXECUTOR_PID 2
static struct {
	struct sock_filter *insns;
	unsigned short len;
} compiled[PROG__COUNT];

/* Reads ctx's program into c (ctx is released). */
static int compile(scmp_filter_ctx ctx, int rc, int which, ab_error *err)
{
	if (rc < 0)
		return rc;
	int fd = memfd_create("agentbox-seccomp", MFD_CLOEXEC);
	if (fd < 0) {
		seccomp_release(ctx);
		return ab_error_errno(err, -errno, "seccomp: memfd_create");
	}
	rc = finish_filter(ctx, rc, fd, err);
	off_t size = rc < 0 ? -1 : lseek(fd, 0, SEEK_END);
	struct sock_filter *insns = NULL;
	if (rc == 0 && (size <= 0 || size % (off_t)sizeof(*insns) != 0 ||
			size / (off_t)sizeof(*insns) > BPF_MAXINSNS))
		rc = ab_error_set(err, -EINVAL, "seccomp: exported program of %lld bytes",
				  (long long)size);
	if (rc == 0 && !(insns = malloc((size_t)size)))
		rc = ab_error_set(err, -ENOMEM, "out of memory");
	if (rc == 0 && pread(fd, insns, (size_t)size, 0) != size)
		rc = ab_error_errno(err, -EIO, "seccomp: read back the exported program");
	close(fd);
	if (rc < 0) {
		free(insns);
		return rc;
	}
	compiled[which].insns = insns;
	compiled[which].len = (unsigned short)(size / (off_t)sizeof(*insns));
	return 0;
}

int ab_seccomp_precompile(ab_error *err)
{
	scmp_filter_ctx ctx = NULL;
	ab_seccomp_opts exec = {.allow_exec = true}, noexec = {.allow_exec = false};
	int rc = build_heavy(&exec, &ctx, err);
	if ((rc = compile(ctx, rc, PROG_HEAVY_EXEC, err)) < 0)
		return rc;
	rc = build_heavy(&noexec, &ctx, err);
	if ((rc = compile(ctx, rc, PROG_HEAVY_NOEXEC, err)) < 0)
		return rc;
	/* The nano filter names the pid of the process it confines: in a
	 * sandbox that is the executor, pid 2 of its namespace. A process
	 * with another pid builds its own (ab_seccomp_apply_nano). */
	rc = build_nano(&ctx, NANO_EXECUTOR_PID, err);
	return compile(ctx, rc, PROG_NANO, err);
}

/* Loads a precompiled program into the calling thread, as seccomp_load()
 * does: no_new_privs first, then the filter, without flags. */
static int load_compiled(int which, ab_error *err)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return ab_error_errno(err, -errno, "seccomp: set no_new_privs");
	struct sock_fprog prog = {.len = compiled[which].len, .filter = compiled[which].insns};
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
		return ab_error_errno(err, -errno, "load seccomp filter");
	return 0;
}

int ab_seccomp_apply_heavy(const ab_seccomp_opts *opts, ab_error *err)
{
	int which = opts->allow_exec ? PROG_HEAVY_EXEC : PROG_HEAVY_NOEXEC;
	if (compiled[which].insns)
		return load_compiled(which, err);
	scmp_filter_ctx ctx = NULL;
	int rc = build_heavy(opts, &ctx, err); /* before ctx is read */
	return finish_filter(ctx, rc, -1, err);
}

int ab_seccomp_export_heavy(const ab_seccomp_opts *opts, int fd, ab_error *err)
{
	if (fd < 0)
		return ab_error_set(err, -EBADF, "export seccomp filter: bad fd %d", fd);
	scmp_filter_ctx ctx = NULL;
	int rc = build_heavy(opts, &ctx, err); /* before ctx is read */
	return finish_filter(ctx, rc, fd, err);
}

/* ------------------------------------------------------------------ nano
 *
 * A nano worker is a CPython forked from a zygote that has already loaded
 * the interpreter and warmed the standard library; its jail is complete
 * before the filter goes on. It talks to its supervisor over an inherited
 * socket (fd 3) with read(2) and write(2), writes output to the pipes on
 * fds 1 and 2, and otherwise only computes. The allowlist below is what
 * that needs: memory, time, threads, read-only opens (Landlock decides
 * which files), directory listings for lazy imports, and signals to
 * itself. Everything else fails with EPERM, so that Python raises a clean
 * PermissionError: no socket, no execve, no fork, no ptrace, no mount, no
 * file creation. Calls marked "conditional" carry argument checks and are
 * added by build_nano() itself. */
static const char *const nano_allowed_names[] = {
    /* Reading the supervisor's requests and writing events and output to
     * descriptors that were open before the filter: the executor's frame
     * reader and writer use read and write, print() uses write, and
     * reading files (imports, open(..., 'r')) uses read, pread64 and
     * lseek. No sendmsg: descriptors never travel out. */
    "read",
    "readv",
    "pread64",
    "write",
    "writev",
    "lseek",
    "close",
    "close_range",
    /* dup/dup2/dup3: os.dup, and io's handling of std streams. */
    "dup",
    "dup2",
    "dup3",
    /* fcntl (conditional, a few commands only): os.set_inheritable and
     * os.set_blocking (F_GETFD/F_SETFD/F_GETFL/F_SETFL) and os.dup
     * (F_DUPFD_CLOEXEC). No locks, leases, owners or signals. */
    "fcntl",
    /* Opening files for reading (conditional: no write access, creation,
     * truncation, appending or O_TMPFILE): imports of modules and of
     * extension modules, zoneinfo, /etc/localtime, data files. */
    "openat",
    "open",
    /* Looking at files: importlib stats every directory on sys.path and
     * every candidate file; os.listdir and the path finder's cache read
     * directories; os.path.realpath reads links. */
    "fstat",
    "stat",
    "lstat",
    "newfstatat",
    "statx",
    "getdents64",
    "readlink",
    "readlinkat",
    "access",
    "faccessat",
    "faccessat2",
    "getcwd",
    "chdir",
    "fchdir",
    /* Memory: the allocator (brk, mmap, munmap, mremap, madvise), thread
     * stacks with guard pages (mprotect) and extension modules, which the
     * dynamic loader maps with PROT_EXEC (_json, _decimal, math, ... live
     * in lib-dynload; Landlock decides which files may be mapped). */
    "brk",
    "mmap",
    "munmap",
    "mremap",
    "mprotect",
    "madvise",
    /* Threads: threading.Thread (clone is conditional: threads only),
     * their locks and the GIL (futex), glibc's per-thread set-up and
     * tear-down (set_robust_list, rseq, set_tid_address, exit). */
    "clone",
    "futex",
    "set_robust_list",
    "rseq",
    "set_tid_address",
    "sched_yield",
    "sched_getaffinity",
    "exit",
    "exit_group",
    /* Time: time.time, time.monotonic, time.sleep, datetime.now (mostly
     * served by the vDSO, but the calls exist as a fallback). */
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "nanosleep",
    "clock_nanosleep",
    /* Randomness: os.urandom, random.seed, secrets, uuid.uuid4. */
    "getrandom",
    /* Signals: the interpreter's SIGINT handler (a run's timeout arrives
     * as SIGINT), signal.signal, sigaltstack for faulthandler, signal
     * masks around thread creation, signal.alarm and setitimer for
     * timeouts a cell sets itself, raise(3) and signal.raise_signal
     * (tgkill, conditional: own process only), os.kill (conditional:
     * own process only). */
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigsuspend",
    "pause",
    "sigaltstack",
    "alarm",
    "setitimer",
    "getitimer",
    "tgkill",
    "kill",
    "restart_syscall",
    /* Waiting on descriptors: select and selectors on the inherited ones. */
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    /* Identity and resources, read only: os.getpid and friends,
     * platform.uname, os.cpu_count, resource.getrlimit (prlimit64 is
     * conditional: reading the caller's own limits only), resource
     * .getrusage, os.times. */
    "getpid",
    "gettid",
    "getppid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    "getpgrp",
    "getpgid",
    "getsid",
    "uname",
    "sysinfo",
    "getrlimit",
    "prlimit64",
    "getrusage",
    "times",
    /* personality (conditional): only the query, which some libraries
     * make to check for READ_IMPLIES_EXEC. */
    "personality",
    NULL,
};

const char *const *ab_seccomp_nano_allowed(void)
{
	return nano_allowed_names;
}

/* The calls of nano_allowed_names that build_nano() admits only with
 * argument checks, and not by name. */
static const char *const nano_conditional[] = {
    "fcntl", "openat", "open", "clone", "tgkill", "kill", "prlimit64", "personality", NULL,
};

static bool is_conditional(const char *name)
{
	for (size_t i = 0; nano_conditional[i]; i++)
		if (!strcmp(name, nano_conditional[i]))
			return true;
	return false;
}

/* Any of these open flags makes an open something more than a read.
 * O_TMPFILE includes O_DIRECTORY, and opening a directory to list it is a
 * read, so only O_TMPFILE's own bit is in the mask. */
#define NANO_OPEN_WRITE_FLAGS                                                                      \
	((uint64_t)(O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND | (O_TMPFILE & ~O_DIRECTORY)))

/* A thread shares memory, signal handlers and thread group with its
 * creator; a clone without all three is a new process. Namespace flags
 * are refused even with them (the kernel refuses most such combinations
 * itself, and caps are gone, but the filter does not rely on either).
 * CLONE_NEWTIME shares its bit with the exit-signal field, which glibc
 * leaves 0 for threads. */
#define NANO_THREAD_FLAGS ((uint64_t)(CLONE_VM | CLONE_SIGHAND | CLONE_THREAD))
#define NANO_CLONE_MASK                                                                            \
	(NANO_THREAD_FLAGS | CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET |           \
	 CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP | CLONE_NEWTIME)

/* fcntl commands a nano worker may use. The kernel reads the command as an
 * unsigned int, so only the low 32 bits are compared. */
static const uint64_t nano_fcntl_cmds[] = {
    F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_DUPFD, F_DUPFD_CLOEXEC,
};

static int add_nano_conditional(scmp_filter_ctx ctx, pid_t self_pid, ab_error *err)
{
	const uint32_t allow = SCMP_ACT_ALLOW;
	int rc;

	/* Read-only opens. The flags are openat's third argument and open's
	 * second; the kernel reads them as an int, and every bit that
	 * matters is in the mask, so junk above it changes nothing. */
	struct scmp_arg_cmp openat_ro[] = {
	    SCMP_A2_64(SCMP_CMP_MASKED_EQ, NANO_OPEN_WRITE_FLAGS, 0)};
	struct scmp_arg_cmp open_ro[] = {SCMP_A1_64(SCMP_CMP_MASKED_EQ, NANO_OPEN_WRITE_FLAGS, 0)};
	if ((rc = add_rule(ctx, allow, "openat", 1, openat_ro, err)) < 0 ||
	    (rc = add_rule(ctx, allow, "open", 1, open_ro, err)) < 0)
		return rc;

	/* Threads only. The flags are arg0 on x86_64 and aarch64; the kernel
	 * uses their low 32 bits for clone(2). */
	struct scmp_arg_cmp thread[] = {
	    SCMP_A0_64(SCMP_CMP_MASKED_EQ, NANO_CLONE_MASK, NANO_THREAD_FLAGS)};
	if ((rc = add_rule(ctx, allow, "clone", 1, thread, err)) < 0)
		return rc;

	for (size_t i = 0; i < sizeof(nano_fcntl_cmds) / sizeof(nano_fcntl_cmds[0]); i++) {
		struct scmp_arg_cmp c[] = {
		    SCMP_A1_64(SCMP_CMP_MASKED_EQ, LOW32, nano_fcntl_cmds[i])};
		if ((rc = add_rule(ctx, allow, "fcntl", 1, c, err)) < 0)
			return rc;
	}

	/* Signals to the confined process itself only: self_pid is the pid
	 * it has (and keeps: it cannot fork under the filter); glibc's
	 * raise() and pthread_kill() pass it to tgkill. The pid is compared
	 * on all 64 bits, so junk fails closed; kill(0) and kill(-1), which
	 * reach other processes, are refused. */
	uint64_t self = (uint64_t)self_pid;
	struct scmp_arg_cmp own_pid[] = {SCMP_A0_64(SCMP_CMP_EQ, self)};
	if ((rc = add_rule(ctx, allow, "tgkill", 1, own_pid, err)) < 0 ||
	    (rc = add_rule(ctx, allow, "kill", 1, own_pid, err)) < 0)
		return rc;

	/* Reading the caller's own limits: pid 0 and a NULL new_limit, both
	 * compared on all 64 bits. Raising or lowering them is refused. */
	struct scmp_arg_cmp read_limits[] = {
	    SCMP_A0_64(SCMP_CMP_EQ, 0),
	    SCMP_A2_64(SCMP_CMP_EQ, 0),
	};
	if ((rc = add_rule(ctx, allow, "prlimit64", 2, read_limits, err)) < 0)
		return rc;

	/* personality(0xffffffff) only queries; the kernel reads the persona
	 * as an unsigned int. */
	struct scmp_arg_cmp query[] = {SCMP_A0_64(SCMP_CMP_MASKED_EQ, LOW32, LOW32)};
	if ((rc = add_rule(ctx, allow, "personality", 1, query, err)) < 0)
		return rc;
	return 0;
}

/* Builds the nano filter. On success *out owns a context the caller
 * releases with seccomp_release(). */
static int build_nano(scmp_filter_ctx *out, pid_t self_pid, ab_error *err)
{
	int rc;

	*out = NULL;
	/* Default EPERM: whatever is not listed is refused. */
	scmp_filter_ctx ctx;
	if ((rc = new_filter(SCMP_ACT_ERRNO(EPERM), &ctx, err)) < 0)
		return rc;

	for (size_t i = 0; nano_allowed_names[i]; i++) {
		if (is_conditional(nano_allowed_names[i]))
			continue;
		if ((rc = add_rule(ctx, SCMP_ACT_ALLOW, nano_allowed_names[i], 0, NULL, err)) < 0)
			goto fail;
	}
	if ((rc = add_nano_conditional(ctx, self_pid, err)) < 0)
		goto fail;

	/* clone3 keeps its flags in memory, where the filter cannot look:
	 * ENOSYS makes glibc's pthread_create fall back to clone. */
	if ((rc = add_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL, err)) < 0)
		goto fail;
	/* isatty() and io's buffering decisions ask ioctl(TCGETS); every
	 * descriptor of a worker is a pipe, a socket or a regular file, so
	 * ENOTTY is the true answer, and CPython falls back to fcntl where
	 * FIOCLEX gets it. No ioctl reaches a driver. */
	if ((rc = add_rule(ctx, SCMP_ACT_ERRNO(ENOTTY), "ioctl", 0, NULL, err)) < 0)
		goto fail;

	*out = ctx;
	return 0;
fail:
	seccomp_release(ctx);
	return rc;
}

int ab_seccomp_apply_nano(ab_error *err)
{
	if (compiled[PROG_NANO].insns && getpid() == NANO_EXECUTOR_PID)
		return load_compiled(PROG_NANO, err);
	scmp_filter_ctx ctx = NULL;
	int rc = build_nano(&ctx, getpid(), err); /* before ctx is read */
	return finish_filter(ctx, rc, -1, err);
}

int ab_seccomp_export_nano(int fd, ab_error *err)
{
	if (fd < 0)
		return ab_error_set(err, -EBADF, "export seccomp filter: bad fd %d", fd);
	scmp_filter_ctx ctx = NULL;
	int rc = build_nano(&ctx, getpid(), err); /* before ctx is read */
	return finish_filter(ctx, rc, fd, err);
}

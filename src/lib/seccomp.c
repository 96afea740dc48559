/* seccomp.c - the heavy tier's seccomp-bpf policy, built with libseccomp.
 *
 * The heavy tier runs a full userland (pip, compilers, subprocesses), so the
 * policy is a deny-list: every system call is allowed except the ones that
 * reach kernel attack surface a sandboxed program never needs (namespaces,
 * mounts, ptrace, io_uring, bpf, keyrings, modules, ...) or that could undo
 * another layer. Refused calls fail with EPERM, so that well-behaved
 * programs see an ordinary error instead of dying; clone3 fails with ENOSYS
 * because glibc then falls back to clone, whose flags (unlike clone3's, which
 * live in memory) the filter can inspect.
 *
 * Only the native architecture is admitted. A system call made through
 * another ABI (i386 `int 0x80`, x32 numbers on x86_64) kills the whole
 * process: a deny-list written for one syscall table is meaningless for
 * another.
 *
 * Arguments that the kernel reads as 32-bit ints are compared on their low
 * 32 bits only (SCMP_CMP_MASKED_EQ with 0xffffffff) where a match means
 * "deny", so that junk in the upper half of the register cannot turn a
 * denied value into one the filter does not recognise (E15). The socket
 * family, where the filter denies everything *except* a few values, is
 * compared on all 64 bits instead, so junk makes the call fail closed.
 */
#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <seccomp.h>

#include "agentbox.h"

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

static int add_rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned int count,
		    const struct scmp_arg_cmp *cmp, ab_error *err)
{
	/* Unknown names resolve to __NR_SCMP_ERROR, and names that exist only
	 * on other architectures to negative pseudo numbers: neither can be
	 * called here, so neither needs a rule. */
	int nr = seccomp_syscall_resolve_name(name);
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

	/* Within inet and inet6, the rarely used and often buggy DCCP and
	 * SCTP protocols and the obsolete SOCK_PACKET type are refused. The
	 * type's low four bits are the type proper; the rest are flags. */
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
		if ((rc = add_rule(ctx, eperm, name, 2, t_dccp, err)) < 0 ||
		    (rc = add_rule(ctx, eperm, name, 2, t_packet, err)) < 0 ||
		    (rc = add_rule(ctx, eperm, name, 2, p_sctp, err)) < 0 ||
		    (rc = add_rule(ctx, eperm, name, 2, p_dccp, err)) < 0)
			return rc;
	}
	return 0;
}

/* Builds the heavy filter. On success *out owns a context the caller
 * releases with seccomp_release(). */
static int build_heavy(const ab_seccomp_opts *opts, scmp_filter_ctx *out, ab_error *err)
{
	const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
	int rc;

	*out = NULL;
	/* seccomp_init() adds the native architecture only; every other
	 * architecture, including x32 on x86_64 (libseccomp compares the
	 * syscall number against the x32 bit in an x86_64-only filter),
	 * takes the bad-architecture action. */
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx)
		return ab_error_set(err, -ENOMEM, "seccomp_init failed");

	rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	if (rc < 0) {
		ab_error_errno(err, rc, "seccomp: set bad-arch action");
		goto fail;
	}
	/* The caller normally set no_new_privs already; setting it here as
	 * well means the filter loads either way and never loads without it. */
	rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1);
	if (rc < 0) {
		ab_error_errno(err, rc, "seccomp: set no_new_privs attribute");
		goto fail;
	}

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

int ab_seccomp_apply_heavy(const ab_seccomp_opts *opts, ab_error *err)
{
	scmp_filter_ctx ctx;
	int rc = build_heavy(opts, &ctx, err);
	if (rc < 0)
		return rc;
	rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc < 0)
		return ab_error_errno(err, rc, "load seccomp filter");
	return 0;
}

int ab_seccomp_export_heavy(const ab_seccomp_opts *opts, int fd, ab_error *err)
{
	scmp_filter_ctx ctx;
	int rc = build_heavy(opts, &ctx, err);
	if (rc < 0)
		return rc;
	rc = seccomp_export_bpf(ctx, fd);
	seccomp_release(ctx);
	if (rc < 0)
		return ab_error_errno(err, rc, "export seccomp filter to fd %d", fd);
	return 0;
}

/* confine.c - the sidecar's jail (see confine.h). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "confine.h"
#include "../lib/confine.h"
#include "ctl.h"
#include "internal.h"

static int caps_get(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	return (int)syscall(SYS_capget, &h, d);
}

static int caps_set(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	return (int)syscall(SYS_capset, &h, d);
}

static int drop_ids(uid_t uid, gid_t gid, ab_error *err)
{
	if (geteuid() != 0) {
		if (getuid() == uid && getgid() == gid)
			return 0;
		return ab_error_set(err, -EPERM, "--uid %u --gid %u: only root can change ids",
				    (unsigned)uid, (unsigned)gid);
	}
	/* Keep the permitted set across setresuid so that the bounding set
	 * can still be cleared afterwards (ab_caps_drop_all needs
	 * CAP_SETPCAP); every capability goes right after. */
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		return ab_error_errno(err, -errno, "prctl(PR_SET_KEEPCAPS)");
	if (setgroups(0, NULL) < 0)
		return ab_error_errno(err, -errno, "setgroups(0)");
	if (setresgid(gid, gid, gid) < 0)
		return ab_error_errno(err, -errno, "setresgid(%u)", (unsigned)gid);
	if (setresuid(uid, uid, uid) < 0)
		return ab_error_errno(err, -errno, "setresuid(%u)", (unsigned)uid);
	struct __user_cap_data_struct d[2];
	if (caps_get(d) < 0)
		return ab_error_errno(err, -errno, "capget");
	d[0].effective = d[0].permitted;
	d[1].effective = d[1].permitted;
	if (caps_set(d) < 0)
		return ab_error_errno(err, -errno, "capset");
	return 0;
}

static int drop_caps(ab_error *err)
{
	struct __user_cap_data_struct d[2];
	if (caps_get(d) < 0)
		return ab_error_errno(err, -errno, "capget");
	if (d[0].permitted || d[1].permitted || d[0].inheritable || d[1].inheritable)
		return ab_caps_drop_all(err);
	/* An unprivileged start holds nothing to drop, and cannot clear
	 * its bounding set: no_new_privs (and seccomp's ban on exec) make
	 * the bounding set moot. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return ab_error_errno(err, -errno, "prctl(PR_SET_NO_NEW_PRIVS)");
	return 0;
}

static int seccomp_apply(ab_error *err)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx)
		return ab_error_set(err, -ENOMEM, "seccomp_init");
	int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	static const char *const denied[] = {"execve",
					     "execveat",
					     "ptrace",
					     "process_vm_readv",
					     "process_vm_writev",
					     "mount",
					     "umount2",
					     "pivot_root",
					     "chroot",
					     "fsopen",
					     "fsconfig",
					     "fsmount",
					     "fspick",
					     "move_mount",
					     "open_tree",
					     "mount_setattr",
					     "unshare",
					     "setns",
					     "bpf",
					     "kexec_load",
					     "kexec_file_load",
					     "init_module",
					     "finit_module",
					     "delete_module",
					     "perf_event_open",
					     "keyctl",
					     "add_key",
					     "request_key",
					     "userfaultfd",
					     "swapon",
					     "swapoff",
					     "reboot",
					     "io_uring_setup",
					     "io_uring_enter",
					     "io_uring_register",
					     "socketpair",
					     "personality",
					     "acct",
					     "quotactl",
					     "name_to_handle_at",
					     "open_by_handle_at",
					     "syslog",
					     "iopl",
					     "ioperm",
					     "settimeofday",
					     "clock_settime",
					     "clock_adjtime",
					     "adjtimex",
					     "sethostname",
					     "setdomainname",
					     "vhangup",
					     "lookup_dcookie",
					     "fanotify_init",
					     "pidfd_getfd",
					     NULL};
	for (size_t i = 0; rc == 0 && denied[i]; i++) {
		int nr = seccomp_syscall_resolve_name(denied[i]);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
	}
	/* clone3's flags live in memory a filter cannot read: ENOSYS makes
	 * glibc fall back to clone, whose flags are checked here. */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	static const unsigned long ns_flags[] = {CLONE_NEWNS,	 CLONE_NEWUSER, CLONE_NEWPID,
						 CLONE_NEWNET,	 CLONE_NEWUTS,	CLONE_NEWIPC,
						 CLONE_NEWCGROUP};
	for (size_t i = 0; rc == 0 && i < sizeof(ns_flags) / sizeof(ns_flags[0]); i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
				      SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
	/* socket(): AF_INET and AF_INET6 only (no new unix or netlink
	 * sockets: the listeners arrive over fd 3, already made). */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
				      SCMP_A0(SCMP_CMP_GT, AF_INET6));
	for (int fam = 0; rc == 0 && fam < AF_INET6; fam++)
		if (fam != AF_INET)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
					      SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)fam));
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc < 0)
		return ab_error_errno(err, rc, "seccomp: build and load the filter");
	return 0;
}

int eg_confine(bool set_ids, uid_t uid, gid_t gid, bool allow_no_landlock, ab_error *err)
{
	int rc;
	if (set_ids && (rc = drop_ids(uid, gid, err)) < 0)
		return rc;
	if ((rc = drop_caps(err)) < 0)
		return rc;
	static const ab_landlock_rule rules[] = {
	    {.path = "/etc", .writable = false},
	    {.path = "/usr", .writable = false},
	};
	rc = ab_landlock_apply(rules, sizeof(rules) / sizeof(rules[0]), err);
	if ((rc == -EOPNOTSUPP || rc == -ENOSYS) && allow_no_landlock) {
		/* The operator's choice (--degrade landlock): the uid, the
		 * capabilities and seccomp still hold it. */
		eg_ctl_log("landlock unavailable on this kernel, running without it "
			   "(--allow-no-landlock): %s",
			   err->msg);
		*err = (ab_error){0};
	} else if (rc < 0) {
		return rc;
	}
	return seccomp_apply(err);
}

static const char *outcome(int rc)
{
	if (rc >= 0)
		return "ok";
	static __thread char buf[32];
	const char *n = strerrorname_np(errno);
	snprintf(buf, sizeof(buf), "%s", n ? n : "error");
	return buf;
}

void eg_confine_report(void)
{
	char r_shadow[32], r_tmp[32], r_exec[32], r_unix[32], r_netlink[32], r_pair[32], r_inet[32],
	    r_hosts[32];
	int fd = open("/etc/shadow", O_WRONLY | O_CLOEXEC);
	snprintf(r_shadow, sizeof(r_shadow), "%s", outcome(fd));
	if (fd >= 0)
		close(fd);
	fd = open("/tmp/agentbox-egress-confinement-probe", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		  0600);
	snprintf(r_tmp, sizeof(r_tmp), "%s", outcome(fd));
	if (fd >= 0) {
		close(fd);
		unlink("/tmp/agentbox-egress-confinement-probe");
	}
	char *const argv[] = {(char *)"/bin/true", NULL};
	char *const envp[] = {NULL};
	int rc = execve("/bin/true", argv, envp);
	snprintf(r_exec, sizeof(r_exec), "%s", outcome(rc));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(r_unix, sizeof(r_unix), "%s", outcome(fd));
	if (fd >= 0)
		close(fd);
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0);
	snprintf(r_netlink, sizeof(r_netlink), "%s", outcome(fd));
	if (fd >= 0)
		close(fd);
	int sv[2];
	rc = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	snprintf(r_pair, sizeof(r_pair), "%s", outcome(rc));
	if (rc == 0) {
		close(sv[0]);
		close(sv[1]);
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(r_inet, sizeof(r_inet), "%s", outcome(fd));
	if (fd >= 0)
		close(fd);
	fd = open("/etc/hosts", O_RDONLY | O_CLOEXEC);
	snprintf(r_hosts, sizeof(r_hosts), "%s", outcome(fd));
	if (fd >= 0)
		close(fd);
	struct __user_cap_data_struct d[2] = {{0}};
	caps_get(d);
	printf("{\"uid\":%u,\"gid\":%u,\"no_new_privs\":%d,\"caps_permitted\":%u,"
	       "\"landlock_abi\":%d,\"open_shadow_write\":\"%s\",\"create_tmp\":\"%s\","
	       "\"execve\":\"%s\",\"socket_unix\":\"%s\",\"socket_netlink\":\"%s\","
	       "\"socketpair\":\"%s\",\"socket_inet\":\"%s\",\"read_etc_hosts\":\"%s\"}\n",
	       (unsigned)getuid(), (unsigned)getgid(), prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
	       d[0].permitted | d[1].permitted, ab_landlock_abi(), r_shadow, r_tmp, r_exec, r_unix,
	       r_netlink, r_pair, r_inet, r_hosts);
	fflush(stdout);
}

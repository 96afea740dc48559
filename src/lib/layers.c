/* layers.c - names of the isolation layers and the host probe behind
 * `agentbox doctor` and the daemon's start-up check. The probe runs each
 * namespace check in a short-lived child so that nothing it does outlives
 * the call. */
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <linux/seccomp.h>

#include "cgroup.h"
#include "confine.h"
#include "internal.h"

static const char *const names[AB_LAYER__COUNT] = {
    [AB_LAYER_USERNS] = "userns",
    [AB_LAYER_PIDNS] = "pidns",
    [AB_LAYER_MOUNTNS] = "mountns",
    [AB_LAYER_NETNS] = "netns",
    [AB_LAYER_IPCNS] = "ipcns",
    [AB_LAYER_UTSNS] = "utsns",
    [AB_LAYER_CGROUPNS] = "cgroupns",
    [AB_LAYER_PIVOT_ROOT] = "pivot_root",
    [AB_LAYER_NO_NEW_PRIVS] = "no_new_privs",
    [AB_LAYER_CAPS] = "caps",
    [AB_LAYER_SECCOMP] = "seccomp",
    [AB_LAYER_LANDLOCK] = "landlock",
    [AB_LAYER_CGROUP] = "cgroup",
    [AB_LAYER_RLIMITS] = "rlimits",
};

const char *ab_layer_name(enum ab_layer l)
{
	return (unsigned)l < AB_LAYER__COUNT ? names[l] : "unknown";
}

/* Said to users of a degraded daemon, so that a missing layer reads as the
 * protection it removes rather than as a kernel feature name. */
static const char *const consequences[AB_LAYER__COUNT] = {
    [AB_LAYER_USERNS] = "sandbox root is not separated from host users",
    [AB_LAYER_PIDNS] = "the code can see and signal host processes",
    [AB_LAYER_MOUNTNS] = "the code shares the host's mounts",
    [AB_LAYER_NETNS] = "the code can use the host's network",
    [AB_LAYER_IPCNS] = "the code shares the host's System V IPC and POSIX queues",
    [AB_LAYER_UTSNS] = "the code can change the host's hostname",
    [AB_LAYER_CGROUPNS] = "the code sees the host's cgroup tree",
    [AB_LAYER_PIVOT_ROOT] = "the code sees the host's file system",
    [AB_LAYER_NO_NEW_PRIVS] = "setuid programs can gain privileges",
    [AB_LAYER_CAPS] = "capabilities are not dropped",
    [AB_LAYER_SECCOMP] = "system calls are not filtered",
    [AB_LAYER_LANDLOCK] = "file access is not restricted by Landlock",
    [AB_LAYER_CGROUP] = "memory, CPU and process limits are NOT enforced",
    [AB_LAYER_RLIMITS] = "per-process resource limits are not set",
};

const char *ab_layer_consequence(enum ab_layer l)
{
	return (unsigned)l < AB_LAYER__COUNT ? consequences[l] : "an isolation layer is missing";
}

int ab_layer_from_name(const char *name)
{
	for (int i = 0; i < AB_LAYER__COUNT; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

/* Tries unshare(flags) in a child; returns 0 or the child's errno. */
static int try_unshare(int flags)
{
	pid_t pid = fork();
	if (pid < 0)
		return errno;
	if (pid == 0) {
		if (unshare(flags) < 0)
			_exit(errno & 0xff);
		_exit(0);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : EFAULT;
}

static void set(ab_layer_status *s, bool present, const char *why)
{
	s->present = present;
	snprintf(s->why, sizeof(s->why), "%s", present ? "" : why);
}

void ab_probe_layers(ab_layer_status out[AB_LAYER__COUNT])
{
	memset(out, 0, sizeof(ab_layer_status) * AB_LAYER__COUNT);
	int e = try_unshare(CLONE_NEWUSER);
	char uwhy[128];
	snprintf(uwhy, sizeof(uwhy), "unshare(CLONE_NEWUSER): %s", strerror(e));
	set(&out[AB_LAYER_USERNS], e == 0, uwhy);
	/* The other namespaces are created inside the new user namespace, as
	 * the jail does, so an unprivileged daemon is probed the same way. */
	static const struct {
		enum ab_layer layer;
		int flag;
		const char *what;
	} ns[] = {
	    {AB_LAYER_PIDNS, CLONE_NEWPID, "CLONE_NEWPID"},
	    {AB_LAYER_MOUNTNS, CLONE_NEWNS, "CLONE_NEWNS"},
	    {AB_LAYER_NETNS, CLONE_NEWNET, "CLONE_NEWNET"},
	    {AB_LAYER_IPCNS, CLONE_NEWIPC, "CLONE_NEWIPC"},
	    {AB_LAYER_UTSNS, CLONE_NEWUTS, "CLONE_NEWUTS"},
	    {AB_LAYER_CGROUPNS, CLONE_NEWCGROUP, "CLONE_NEWCGROUP"},
	};
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		char what[128];
		int r = try_unshare(CLONE_NEWUSER | ns[i].flag);
		snprintf(what, sizeof(what), "unshare(CLONE_NEWUSER|%s): %s", ns[i].what,
			 r ? strerror(r) : "ok");
		set(&out[ns[i].layer], r == 0, what);
	}
	set(&out[AB_LAYER_PIVOT_ROOT], out[AB_LAYER_MOUNTNS].present,
	    out[AB_LAYER_MOUNTNS].present ? "" : "needs a mount namespace");
	bool nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) >= 0;
	set(&out[AB_LAYER_NO_NEW_PRIVS], nnp, nnp ? "" : "prctl(PR_GET_NO_NEW_PRIVS) failed");
	set(&out[AB_LAYER_CAPS], prctl(PR_CAPBSET_READ, 0, 0, 0, 0) >= 0,
	    "prctl(PR_CAPBSET_READ) failed");
	bool sc = prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0;
	set(&out[AB_LAYER_SECCOMP], sc, sc ? "" : "kernel lacks CONFIG_SECCOMP");
	int abi = ab_landlock_abi();
	if (abi > 0) {
		set(&out[AB_LAYER_LANDLOCK], true, "");
	} else {
		char why[128];
		snprintf(why, sizeof(why), "landlock_create_ruleset: %s%s", strerror(-abi),
			 abi == -EOPNOTSUPP ? " (Landlock disabled at boot: add lsm=landlock)"
					    : "");
		set(&out[AB_LAYER_LANDLOCK], false, why);
	}
	ab_error err = {0};
	if (ab_cgroup_available()) {
		set(&out[AB_LAYER_CGROUP], true, "");
	} else if (ab_cgroup_root_init(&err) == 0) {
		set(&out[AB_LAYER_CGROUP], true, "");
		ab_cgroup_root_cleanup();
	} else {
		set(&out[AB_LAYER_CGROUP], false, err.msg);
	}
	set(&out[AB_LAYER_RLIMITS], true, "");
	for (int i = 0; i < AB_LAYER__COUNT; i++)
		if (out[i].present)
			out[i].why[0] = '\0';
}

/* jail.h - creating a heavy-tier sandbox (internal to agentbox).
 *
 * ab_jail_spawn runs in the zygote, which is single-threaded and holds an
 * initialised interpreter. It clones a child into new user, pid, mount,
 * net, ipc and uts namespaces. That child becomes PID 1 of the sandbox (a
 * tiny init: it never runs user code), builds the new root, and forks the
 * executor as PID 2, which drops every privilege, applies Landlock and
 * seccomp and then calls payload(). */
#ifndef AB_JAIL_H
#define AB_JAIL_H

#include "cgroup.h"
#include "internal.h"

typedef struct ab_jail_config {
	ab_limits limits;
	char workspace[4096]; /* host path of the session workspace; opened by
				 the sandbox itself, since a mount can only be
				 bound from the caller's own mount namespace */
	uid_t host_uid;	      /* what uid 0 in the sandbox is on the host */
	gid_t host_gid;
	bool privileged;   /* the caller may map any uid (CAP_SETUID) */
	unsigned degraded; /* bit (1u << ab_layer): allowed to be missing */
	int ctl_fd;	   /* becomes fd 3 of the executor */
	int out_fd;	   /* becomes fd 1 */
	int err_fd;	   /* becomes fd 2 */
	int cgroup_fds[8]; /* cgroup.procs of each hierarchy, opened O_WRONLY */
	int n_cgroup_fds;  /* 0 if the cgroup layer is degraded */
	bool nano;	   /* the nano tier's tighter jail (see jail.c) */
	/* Egress (docs/egress.md), heavy only, "" when off: the host paths
	 * of the sandbox's listening unix socket, bind-mounted at
	 * AB_JAIL_EGRESS_SOCKET, and of the CA bundle, bind-mounted
	 * read-only at AB_JAIL_CA_BUNDLE. Opened, like the workspace, by the
	 * sandbox itself with the daemon's credentials. With a socket, init
	 * relays 127.0.0.1:AB_JAIL_RELAY_PORT to it. */
	char egress_socket[4096];
	char ca_bundle[4096];
} ab_jail_config;

#define AB_JAIL_EGRESS_SOCKET "/run/agentbox/egress.sock"
#define AB_JAIL_CA_BUNDLE "/etc/agentbox/ca-bundle.pem"
#define AB_JAIL_RELAY_PORT 3128
/* Connections init relays at once; more are accepted and closed. */
#define AB_JAIL_RELAY_MAX 128

/* Opens cgroup.procs of every hierarchy of cg (deduplicated) for writing,
 * so that a process without access to the paths (the zygote) can move the
 * sandbox into it. Returns the number of fds stored. */
int ab_jail_open_cgroup_procs(ab_cgroup *cg, int fds[8], ab_error *err);

/* The executor's entry point; runs as PID 2 with the jail complete. Its
 * return value becomes the executor's exit status. */
typedef int (*ab_jail_payload)(void *arg);

/* Spawns a sandbox. With CLONE_PARENT the sandbox's init is a child of the
 * zygote's parent (the daemon), which reaps it; *pidfd_out is a pidfd for
 * it, owned by the caller. Set-up failures inside the sandbox are reported
 * on ctl_fd as a {"ev":"fatal","error":...} frame. */
int ab_jail_spawn(const ab_jail_config *cfg, ab_jail_payload payload, void *arg, pid_t *pid_out,
		  int *pidfd_out, ab_error *err);

#endif

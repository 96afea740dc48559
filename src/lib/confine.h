/* confine.h - the layers a sandboxed process applies to itself (internal
 * to agentbox): capabilities, seccomp and Landlock. */
#ifndef AB_CONFINE_H
#define AB_CONFINE_H

#include "internal.h"

/* ----------------------------------------------------------------- seccomp
 *
 * The heavy tier's policy is a deny-list: default allow, listed calls fail
 * with EPERM (or ENOSYS where userspace must fall back, e.g. clone3), any
 * architecture but the native one kills the process, x32 numbers are
 * refused. */

typedef struct ab_seccomp_opts {
	bool allow_exec; /* heavy: true */
} ab_seccomp_opts;

/* Builds and loads the filter into the calling thread (requires
 * no_new_privs or CAP_SYS_ADMIN). */
int ab_seccomp_apply_heavy(const ab_seccomp_opts *opts, ab_error *err);
/* Builds the filter and exports its BPF program to fd (for unit tests
 * and `agentbox doctor --dump-seccomp`). */
int ab_seccomp_export_heavy(const ab_seccomp_opts *opts, int fd, ab_error *err);
/* The nano tier's policy is an allowlist: only what CPython needs to run a
 * cell (memory, time, threads via clone with CLONE_THREAD only, read-only
 * openat, reading directories, writing to already open descriptors,
 * signals to itself); everything else fails with EPERM (ENOSYS for clone3),
 * foreign architectures kill. No socket, no execve, no fork. */
int ab_seccomp_apply_nano(ab_error *err);
int ab_seccomp_export_nano(int fd, ab_error *err);
/* Builds every filter once and keeps its BPF program: the apply functions
 * then load it without building (a zygote calls this before it forks). */
int ab_seccomp_precompile(ab_error *err);
/* Names of the system calls the nano policy allows (NULL-terminated, static). */
const char *const *ab_seccomp_nano_allowed(void);

/* Names of the system calls the heavy policy refuses (NULL-terminated, static). */
const char *const *ab_seccomp_heavy_denied(void);

/* ---------------------------------------------------------------- landlock */

typedef struct ab_landlock_rule {
	const char *path;
	bool writable; /* false: read + execute only */
} ab_landlock_rule;

/* Returns the Landlock ABI version of the running kernel, or a negative
 * code (-EOPNOTSUPP if not compiled in / disabled). */
int ab_landlock_abi(void);
/* Restricts the calling thread to the listed paths (every filesystem
 * access right the kernel knows about is handled; paths that do not exist
 * are skipped). On ABI >= 6 also scopes abstract unix sockets and signals. */
int ab_landlock_apply(const ab_landlock_rule *rules, size_t n, ab_error *err);

/* -------------------------------------------------------------------- caps */

/* Sets no_new_privs, clears the bounding and ambient sets, locks the
 * securebits (NOROOT, NO_SETUID_FIXUP, KEEP_CAPS off) and drops every
 * capability (effective, permitted, inheritable). Call in the sandbox after
 * all privileged set-up. */
int ab_caps_drop_all(ab_error *err);
/* Sets PR_SET_DUMPABLE to 0. */
int ab_set_nondumpable(ab_error *err);

#endif

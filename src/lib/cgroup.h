/* cgroup.h - the cgroup layer (internal to agentbox).
 *
 * A cgroup set holds one directory per hierarchy (v2: one; v1: memory,
 * pids, cpu, and freezer when present), always created beneath the cgroup
 * the calling process runs in, as read from /proc/self/cgroup. */
#ifndef AB_CGROUP_H
#define AB_CGROUP_H

#include "internal.h"

typedef struct ab_cgroup ab_cgroup;

/* Detects the hierarchy layout and prepares the daemon's parent group
 * "<own cgroup>/agentbox-<pid>" (on v2 the daemon moves itself into a leaf
 * "<own>/agentbox-<pid>/daemon" so that controllers can be enabled).
 * Returns -EACCES/-ENOENT etc. with a message if cgroups cannot be used. */
int ab_cgroup_root_init(ab_error *err);
/* True once ab_cgroup_root_init succeeded. */
bool ab_cgroup_available(void);
/* "v1" or "v2" (or "none"). */
const char *ab_cgroup_version(void);
/* Creates the group for one sandbox and writes its limits. */
int ab_cgroup_create(const char *name, const ab_limits *lim, ab_cgroup **out, ab_error *err);
/* Rewrites memory/pids/cpu limits of an existing group. */
int ab_cgroup_set_limits(ab_cgroup *cg, const ab_limits *lim, ab_error *err);
/* Moves pid into the group (all hierarchies). */
int ab_cgroup_attach(ab_cgroup *cg, pid_t pid, ab_error *err);
/* Kills every process in the group (cgroup.kill on v2, else freeze + SIGKILL
 * each pid + thaw), and waits until it is empty or timeout_ms passed. */
int ab_cgroup_kill_all(ab_cgroup *cg, int timeout_ms, ab_error *err);
/* Kills every process of the group except the host pids keep[0..nkeep)
 * (time travel: the sandbox's init and its parked snapshots), freezing the
 * group while it reads and signals where a freezer is available. *killed
 * (may be NULL): how many processes the first round signalled. */
int ab_cgroup_kill_except(ab_cgroup *cg, const pid_t *keep, size_t nkeep, int timeout_ms,
			  int *killed, ab_error *err);

typedef struct ab_cgroup_stats {
	uint64_t oom_kills;	/* OOM kills in this group so far */
	uint64_t pids_max_hits; /* fork refused at pids.max so far */
	uint64_t memory_peak;	/* bytes (max_usage / memory.peak), 0 if unknown */
	uint64_t cpu_usage_us;	/* CPU time used so far */
} ab_cgroup_stats;
int ab_cgroup_stats_read(ab_cgroup *cg, ab_cgroup_stats *st, ab_error *err);
/* Bytes the group uses now (memory.current, memory.usage_in_bytes); 0 if unknown. */
uint64_t ab_cgroup_memory_usage(ab_cgroup *cg);
/* Host paths of the group's directories (for tests and doctor). */
const char *ab_cgroup_path(ab_cgroup *cg, const char *controller);
/* Kills what is left, removes the directories and frees cg. NULL is a no-op. */
void ab_cgroup_destroy(ab_cgroup *cg);
/* Removes stale "agentbox-<pid>" groups of daemons that are no longer
 * running (crash recovery). Returns how many were removed. */
int ab_cgroup_reap_stale(ab_error *err);
/* Removes this daemon's agentbox-<pid> groups at exit (v2: moves back first). */
void ab_cgroup_root_cleanup(void);

#endif

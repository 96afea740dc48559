/* backend.h - what runs the code: an operations table per backend, and
 * the profiles the engine chooses between.
 *
 * A backend instance (be_inst) is one isolated interpreter with its
 * workspace. The engine drives it through backend_ops and hears from it
 * through the be_events it registered (backend_init): the backend never
 * calls the engine or a front end by name. Today there is one backend, the
 * Linux-namespace jail (backend/linux.c), in two profiles: heavy (full
 * interpreter, cgroup limits) and nano (no subprocesses, RLIMIT_AS). A new
 * backend (Wasm, gVisor, a microVM) is one new file with its own
 * backend_ops, plus a profile entry in backend.c. */
#ifndef AB_BACKEND_H
#define AB_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agentbox.h"
#include "cgroup.h"
#include "config.h"
#include "frame.h"

typedef struct be_inst be_inst;

/* What the engine hears; owner is the pointer given to create(). */
typedef struct be_events {
	/* The interpreter is ready for its first run. */
	void (*ready)(void *owner);
	/* Set-up failed before it was ready (the instance dies next). */
	void (*setup_failed)(void *owner, const char *why);
	/* Output of the run in progress: stream 0 stdout, 1 stderr. */
	void (*output)(void *owner, int stream, const char *data, size_t len);
	/* The result of the run in progress, as the executor sent it (checked
	 * to carry the run's nonce; every field still to be validated). */
	void (*result)(void *owner, json_t *frame);
	/* The instance's processes are gone: how (waitid's si_code and
	 * si_status; code 0: it never started), and why, if the backend
	 * killed it on its own (a protocol violation, a compromise), or NULL. */
	void (*exited)(void *owner, int code, int status, const char *why);
	/* Teardown is complete (close): the instance is freed. */
	void (*released)(void *owner);
	/* Profile t can create instances now (its zygote became ready). */
	void (*profile_ready)(enum tier t);
	/* Time travel (docs/time-travel.md). Snapshot id was parked (error
	 * NULL; not_kept, borrowed: what the sandbox says a copy will not
	 * have) or could not be taken (error says why). */
	void (*snapshotted)(void *owner, int id, json_t *not_kept, const char *error);
	/* Parked snapshot id is gone (killed, or its socket misbehaved). */
	void (*snapshot_lost)(void *owner, int id, const char *why);
	/* The answer of an inspection of snapshot id: the frame as sent
	 * (every field still to be validated), or NULL and why it failed. */
	void (*inspected)(void *owner, int id, json_t *frame, const char *error);
	/* A restore finished: the copy of snapshot id is the executor now
	 * (error NULL), or it failed and the instance is dead. */
	void (*restored)(void *owner, int id, const char *error);
} be_events;

/* Counters of an instance, read at a run's start and end. */
typedef struct be_stats {
	uint64_t cpu_us, memory_peak, oom_kills, pids_max_hits;
} be_stats;

typedef struct profile profile;

typedef struct backend_ops {
	const char *name;
	/* Starts an instance for session id (async: ready or setup_failed
	 * follows). Its workspace is a directory the daemon may open. */
	int (*create)(const profile *p, const char *id, const ab_limits *lim, void *owner,
		      be_inst **out, ab_error *err);
	/* Can this (pooled) instance serve these limits? Changes what can
	 * be changed; false if it was fixed when the instance was built. */
	bool (*adopt_limits)(be_inst *b, const ab_limits *old, const ab_limits *lim);
	/* Could an instance built with limits old serve lim (adopt_limits
	 * without the instance)? */
	bool (*limits_fit)(const profile *p, const ab_limits *old, const ab_limits *lim);
	/* Sends code to run (the result arrives through events.result). */
	void (*run)(be_inst *b, int step, const char *nonce, const char *code, size_t frame_max);
	/* Asks the run to stop (KeyboardInterrupt in the cell). */
	void (*interrupt)(be_inst *b);
	/* Kills the instance; events.exited follows. */
	void (*kill)(be_inst *b, const char *why);
	/* Reads what the run wrote before its result (delivered through
	 * events.output), then stops looking for more. */
	void (*drain)(be_inst *b);
	void (*stats)(be_inst *b, be_stats *st);
	/* After a run with a result: did it reach a memory cap that the
	 * stats do not count (nano's address-space limit)? */
	bool (*memory_cap_hit)(be_inst *b, uint64_t memory_mb);
	/* Why the instance is no longer trusted, or NULL. */
	const char *(*compromised)(be_inst *b);
	/* The workspace directory and the host uid files in it belong to. */
	const char *(*workspace)(be_inst *b, uid_t *uid);
	/* Begins teardown: events.released follows once all is freed. */
	void (*close)(be_inst *b);
	/* Frees at once, waiting if needed (daemon shutdown). */
	void (*close_now)(be_inst *b);
	/* True if pid is a process of this instance (orphan reaping). */
	bool (*owns_pid)(be_inst *b, pid_t pid);
	/* Can profile p create instances now, and how many creates has it
	 * not answered yet (the pool refills only while it has none)? */
	bool (*can_create)(const profile *p);
	int (*creates_pending)(const profile *p);
	/* Time travel (docs/time-travel.md): parked copies of the
	 * interpreter. NULL where a backend cannot keep them. */
	/* Parks a copy of the idle interpreter as snapshot id; a run may be
	 * sent right after (it runs once the copy is made). Async:
	 * events.snapshotted follows. */
	int (*snapshot)(be_inst *b, int id, ab_error *err);
	/* Replaces the interpreter (running, idle or dead) and every process
	 * of the instance but the parked snapshots with a copy of snapshot
	 * id. Async: events.restored follows. */
	int (*restore)(be_inst *b, int id, ab_error *err);
	/* Evaluates in a throwaway copy of snapshot id: op "inspect" (expr)
	 * or "vars" (the session's variables). Async: events.inspected. */
	int (*inspect)(be_inst *b, int id, const char *op, const char *expr, double timeout,
		       ab_error *err);
	/* Lets snapshot id go; false if it must stay (the backend needs it:
	 * the executor's parent, the sandbox's first process). */
	bool (*discard)(be_inst *b, int id);
	/* Memory only snapshot id holds (its private pages), in bytes; -1 if
	 * unknown. */
	int64_t (*snapshot_bytes)(be_inst *b, int id);
	/* Memory the instance uses now (its cgroup), in bytes; 0 if unknown. */
	uint64_t (*memory_usage)(be_inst *b);
	/* What the last restore stopped that a copy does not hold:
	 * {"processes": n, "threads": n} (new reference), or NULL. */
	json_t *(*restore_stopped)(be_inst *b);
} backend_ops;

/* A backend with its settings: what the engine picks per session. */
struct profile {
	enum tier tier;
	const char *name;
	const backend_ops *ops;
	/* The memory cap is fixed when an instance is built (no cgroup). */
	bool memory_fixed;
	/* No subprocesses, no writes outside the workspace: the router
	 * sends here what it can prove fits. */
	bool restricted;
};

extern const profile profiles[TIER__COUNT];
extern const backend_ops linux_backend;

void backend_init(const be_events *ev);
/* Frees the instances released during the last loop iteration. */
void backend_gc(void);
/* The events table, for backends. */
const be_events *backend_events(void);

/* backend/zygote.c: the Linux backend's zygotes, one per profile. */
int zygote_start(enum tier t, const char *exe_dir, ab_error *err);
/* Starts the zygote of tier t once another zygote is ready, or at its
 * first spawn request if that comes first. */
void zygote_start_later(enum tier t, const char *exe_dir);
bool zygote_deferred(enum tier t);
/* Sends a spawn request; cb is called later (from the loop) with the
 * sandbox's init pid and pidfd, or pid < 0 and an error message. */
typedef void (*zygote_cb)(void *ctx, pid_t pid, int pidfd, const char *error);
int zygote_spawn(enum tier t, json_t *req, const int *fds, int nfds, zygote_cb cb, void *ctx,
		 ab_error *err);
void zygote_stop(void);
bool zygote_alive(enum tier t);
pid_t zygote_pid(enum tier t);
/* Spawn requests the zygote of tier t has not answered yet. */
int zygote_pending(enum tier t);
/* True for the pid of any zygote, current, starting or retiring. */
bool zygote_owns_pid(pid_t pid);

/* Removes a directory tree without following links (backend/linux.c). */
int remove_tree(const char *path);

#endif

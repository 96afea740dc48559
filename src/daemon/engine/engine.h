/* engine.h - sessions, runs, the pool and promotion, as one state machine
 * per sandbox. The engine knows no protocol: a front end asks with a call
 * (engine/call.c), a completion handle that the engine finishes exactly
 * once, and hears about streamed output through it. It drives backends
 * through their operations table (backend/backend.h) and records every
 * action (record/record.h). */
#ifndef AB_ENGINE_H
#define AB_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agentbox.h"
#include "backend/backend.h"
#include "config.h"
#include "loop.h"
#include "path.h"
#include "record/record.h"

/* Error codes of docs/protocol.md. The engine fails calls with these; the
 * JSON-RPC front end sends them as they are, others map them. */
enum {
	ERR_PARSE = -32700,
	ERR_INVALID = -32600,
	ERR_NO_METHOD = -32601,
	ERR_BAD_PARAMS = -32602,
	ERR_INTERNAL = -32603,
	ERR_NO_SANDBOX = -32001,
	ERR_DEAD = -32002,
	ERR_PATH = -32003,
	ERR_ISOLATION = -32004,
	ERR_BUSY = -32005,
	ERR_RESOURCES = -32006,
	ERR_AUDIT = -32007,
	ERR_FORBIDDEN = -32008, /* operator only (egress.pending, decide, reload) */
};

/* The longest message a front end sends (the SDK and CLI read at most this
 * much per line): results larger than this are replaced (fit_result). */
#define CONN_MESSAGE_MAX (16u << 20)

/* ---------------------------------------------------------------- clients */

/* Who asks: sessions belong to a client, and close with it. The front end
 * owns the memory (free is called when the last reference goes). */
typedef struct client client;
struct client {
	uid_t uid;  /* the peer's uid (a private daemon's: its user) */
	bool local; /* the private daemon's one client: no per-uid caps */
	char actor[64];
	uint64_t need; /* the ticket of the last event it may learn of */
	int refs;
	void (*free)(client *cl);
};
void client_hold(client *cl);
void client_put(client *cl);
/* cl may learn of the event with this ticket (audit_event): what the front
 * end sends it next waits until that is durable. cl may be NULL. */
void client_learns(client *cl, uint64_t ticket);

/* ------------------------------------------------------------------ calls */

/* A request waiting for the engine. The front end allocates it with its
 * ops; the engine calls done or fail exactly once, then drops its
 * reference. tag is the front end's name for the call (JSON-RPC: the
 * request id), matched by engine_interrupt. */
typedef struct call call;
typedef struct call_ops {
	void (*done)(call *k, json_t *result); /* result stolen, never NULL */
	/* data stolen (may be NULL); session: the one the refusal concerns */
	void (*fail)(call *k, const char *session, int code, const char *msg, json_t *data);
	/* streamed output of the call's run */
	void (*output)(call *k, const char *session, const char *stream, json_t *data, int attempt);
	/* the output streamed so far is superseded: attempt follows in tier */
	void (*rerun)(call *k, const char *session, int attempt, const char *tier,
		      const char *reason);
	/* bytes queued for the client (streaming stops above a cap) */
	size_t (*backlog)(const call *k);
	void (*free)(call *k);
} call_ops;
struct call {
	const call_ops *ops;
	client *who;
	json_t *tag;
	int refs;
};
/* Sets up k (takes references on who and tag). */
void call_init(call *k, const call_ops *ops, client *who, json_t *tag);
call *call_hold(call *k);
void call_put(call *k);
/* Finish k and drop the caller's reference. */
void call_done(call *k, json_t *result);
void call_fail(call *k, const char *session, int code, const char *msg, json_t *data);

/* -------------------------------------------------------------- sandboxes */

/* The one state of a sandbox:
 *   STARTING  the backend is building it (no run yet);
 *   READY     idle, in the pool or in a session;
 *   RUNNING   a run is in progress;
 *   DEAD      its processes died; it waits for its client's close;
 *   CLOSING   teardown has begun: unreachable, waiting for the backend
 *             to release it. */
enum sb_state { SB_STARTING, SB_READY, SB_RUNNING, SB_DEAD, SB_CLOSING };
/* What the sandbox is for:
 *   POOL      pre-started, no owner yet;
 *   SESSION   a client's session (or a one-shot run);
 *   BACKING   the heavy sandbox being prepared by a promotion (hidden);
 *   RETIRED   a session handed over to its promoted sandbox. */
enum sb_role { ROLE_POOL, ROLE_SESSION, ROLE_BACKING, ROLE_RETIRED };

typedef struct outbuf {
	char *data;
	size_t len, cap; /* kept bytes, at most the cap */
	uint64_t total;	 /* bytes seen */
	bool truncated;
	char carry[4]; /* incomplete UTF-8 tail held for the next chunk */
	size_t ncarry;
} outbuf;

/* A run that waits for a backend: a stateless run whose sandbox is still
 * starting, or the run that triggered a promotion. */
typedef struct pending_run {
	call *k;
	char *code;
	double timeout;		/* seconds for the whole call, from call_start_ns */
	uint64_t call_start_ns; /* when the call's first attempt started */
	int attempt;		/* 1, or 2 for the rerun in heavy of a nano attempt */
	uint64_t since_ns;	/* when the promotion started */
	char reason[300];
	/* why the nano attempt failed (NULL when routed to heavy statically):
	 * "module" + name, or "cell" + digest, learned if heavy does better */
	const char *cause_kind;
	const char *cause_class; /* what is learned: one of ab_routes_causes() */
	char cause_key[160];
	char cause[300];
} pending_run;

typedef struct sandbox sandbox;
struct sandbox {
	const profile *prof;
	enum tier tier;
	char id[32];
	enum sb_state state;
	enum sb_role role;
	ab_limits limits;
	client *owner; /* NULL while pooled */
	be_inst *be;   /* NULL once released */
	char dead_reason[256];
	loop_timer timer; /* start-up, idle, run and promotion deadlines */
	int step;
	/* how it was handed out, and what it owes the pool and the record */
	bool tier_auto;		/* tier "auto": routed per run, may be promoted */
	bool oneshot;		/* a stateless run: closed after its one run */
	bool from_pool;		/* handed out from the pool */
	bool create_unrecorded; /* one-shot: its create is recorded with its run */
	bool refill_after;	/* taken from the pool, topped up once its run is over */
	call *create_call;	/* a create waiting for the sandbox to be ready */
	call *close_call;	/* the close being handled (sandbox_close) */
	bool close_recorded;	/* its close was recorded: so is its release */
	uint64_t close_start_ns;
	double idle_timeout; /* seconds a session may sit unused (0: no limit) */
	/* the run in progress */
	call *run_call; /* NULL for an internal run (a replayed step) */
	bool run_internal;
	uint64_t run_start_ns;
	uint64_t call_start_ns; /* when the call this run belongs to started */
	double run_timeout;	/* seconds for the whole call (docs/protocol.md) */
	int run_attempt;	/* numbers the call's attempts for the output */
	bool run_interrupted;	/* interrupted by the client */
	char *run_code;		/* kept for the audit record */
	char run_nonce[33];	/* echoed by the executor in its result */
	int timeout_phase;	/* 0 none, 1 interrupt sent, 2 killed */
	be_stats stats0;
	outbuf o, e;
	char run_reason[300];  /* route_reason of the run in progress */
	json_t *run_promotion; /* the promotion this run completes, for its result */
	/* tier "auto" (promote.c) */
	json_t *history; /* code of the nano steps, replayed on promotion */
	size_t history_bytes;
	bool history_lost;    /* more than a replay can take: cannot be promoted */
	sandbox *promote_to;  /* (session) the heavy sandbox being prepared */
	sandbox *promote_for; /* (backing) the session it is prepared for */
	size_t replay_next;
	json_t *replayed;   /* statuses of the replayed steps */
	char promoted[300]; /* why the session was promoted, once it was */
	pending_run pend;   /* a run waiting for a backend */
	json_t *network;    /* its egress rules, normalized (NULL: network "none") */
	json_t *dlp;	    /* its DLP settings, normalized (NULL: the policy file's) */
	/* time travel (history.c): its steps and snapshots, once it ran */
	struct timeline *tl;
	int max_snapshots;	 /* the session's budget (0: the default, -1: none) */
	struct tl_replay *replay; /* (backing) the replay it is prepared by */
	sandbox *next;
};

/* Every sandbox, and the count of those not yet released. */
extern sandbox *sandboxes;
extern int nsessions;

/* ---------------------------------------------- the engine's entry points */

void engine_init(void);
/* A new session for client k->who (sandbox.create): k is finished with
 * the session's description once it is ready. tier: "auto", "heavy" or
 * "nano". */
void engine_create(call *k, const char *tier, const ab_limits *lim, double idle);
/* engine_create with egress rules (normalized, stolen; NULL: none): such a
 * session runs in heavy, the only tier with a network (docs/egress.md);
 * and DLP settings (normalized, stolen; NULL: the policy file's). */
void engine_create_net(call *k, const char *tier, const ab_limits *lim, double idle,
		       json_t *network, json_t *dlp);
/* engine_create_net with a snapshot budget (max_snapshots > 0; 0: the
 * default, docs/time-travel.md). */
void engine_create_opts(call *k, const char *tier, const ab_limits *lim, double idle,
			json_t *network, json_t *dlp, int max_snapshots);
/* Time travel (history.c, docs/time-travel.md): the steps of session sb;
 * its state made that before step n; an expression evaluated in a copy of
 * the state before step n; the variables that differ before steps a and b. */
void engine_history(sandbox *sb, call *k);
void engine_rewind(sandbox *sb, call *k, int n);
void engine_inspect(sandbox *sb, call *k, int n, const char *expr);
void engine_diff(sandbox *sb, call *k, int a, int b);
/* A stateless run in a fresh sandbox, closed after it. */
void engine_exec(call *k, const char *tier, const ab_limits *lim, const char *code, double timeout);
/* The session id of client cl (cl NULL: of any client, for an operator's
 * look), or NULL (fails k with the reason, if given; k needs a cl). Dead
 * sessions are returned only with allow_dead. */
sandbox *engine_session(call *k, client *cl, const char *id, bool allow_dead);
/* sandbox.run; timeout <= 0: the session's own (its limits). */
void engine_run(sandbox *sb, call *k, const char *code, double timeout);
/* Stops the run of client cl named by tag (or session sb's): the phase
 * interrupted ("run", "promotion", "starting"), or NULL, and its sandbox. */
const char *engine_interrupt(client *cl, sandbox *sb, json_t *tag, sandbox **found);
/* Closes session sb; k is finished once teardown has begun. */
void engine_close(sandbox *sb, call *k);
/* Closes every session of client cl (it went away). */
void engine_client_gone(client *cl);
/* The sessions client cl holds. */
int engine_sessions_of(const client *cl);
/* Once per loop iteration: frees what was released, refills the pool. */
void engine_tick(void);
/* At shutdown: closes everything and waits for it. */
void engine_shutdown(void);
/* True for a process of some sandbox (orphan reaping). */
bool engine_owns_pid(pid_t pid);
json_t *sandbox_describe(sandbox *sb);
json_t *degraded_list(void);

/* ------------------------------ inside the engine (session.c, pool.c) */

int sandbox_create(client *owner, enum tier tier, const ab_limits *lim, call *create, sandbox **out,
		   ab_error *err);
sandbox *sandbox_from_pool(client *owner, enum tier tier, const ab_limits *lim);
/* A hidden sandbox that prepares a state for a session (a promotion, a
 * replay): from the pool (topped up once its work is over: a refill would
 * compete with it for the CPU) or new; NULL and err if neither. */
sandbox *sandbox_backing(client *owner, enum tier tier, const ab_limits *lim, ab_error *err);
void sandbox_touch(sandbox *sb);
/* The workspace directory and its owner's host uid, or NULL if gone. */
const char *sandbox_workspace(const sandbox *sb, uid_t *uid);
void sandbox_close(sandbox *sb);
void sandbox_kill(sandbox *sb, const char *why);
void sandbox_record_create(sandbox *sb, client *cl);
void pool_refill(enum tier tier);
/* A ready pooled sandbox of this tier died: replace it (rate-limited). */
void pool_replace_dead(enum tier tier);
/* A create found no ready sandbox of this tier for these limits. */
void pool_missed(enum tier tier, const ab_limits *lim);
/* Refills now what pool_refill() asked for (the refill timer's work). */
void pool_refill_due(void);
/* the pool's side of engine_tick */
void pool_refill_pending(void);

/* history.c */
typedef struct timeline timeline;
void history_before_run(sandbox *sb);
void history_after_run(sandbox *sb, const char *code, json_t *r, uint64_t start_ns);
void history_snapshotted(sandbox *sb, int id, json_t *not_kept, const char *error);
void history_snapshot_lost(sandbox *sb, int id, const char *why);
void history_inspected(sandbox *sb, int id, json_t *frame, const char *error);
void history_restored(sandbox *sb, int id, const char *error);
void history_sandbox_died(sandbox *sb, const char *why);
/* A rewind is in progress (runs wait for it). */
bool history_busy(const sandbox *sb);
/* A new session from the state before step n of sb (replay.c). */
void engine_fork(sandbox *sb, call *k, int n);
/* replay.c: the sandbox a replay prepares is ready, failed, or ran a step;
 * a sandbox that goes ends the replays it is part of. */
void replay_ready(sandbox *h);
void replay_failed(sandbox *h, const char *why);
bool replay_result(sandbox *h, json_t *r);
void replay_forget(sandbox *sb);
/* The workspace's version before step n and its store, or NULL (k failed). */
typedef struct ws_store ws_store;
const json_t *history_files_at(sandbox *sb, call *k, int n, ws_store **store);
void history_free(sandbox *sb);

/* run.c */
/* Starts a run; reason is its route_reason. k NULL: an internal run (a
 * replayed step), whose end goes to promote_on_result() without a reply. */
void sandbox_run(sandbox *sb, call *k, const char *code, double timeout, const char *reason);
/* Runs p's code as a later part of the call p describes. */
void sandbox_run_pending(sandbox *sb, const pending_run *p);
/* Interrupts the run or promotion in progress; the phase, or NULL. */
const char *sandbox_interrupt(sandbox *sb);
/* The run in progress ends: frame is the backend's result, or NULL. */
void finish_run(sandbox *sb, json_t *frame);
void run_output(sandbox *sb, int stream, const char *data, size_t len);
void run_on_timer(sandbox *sb);
void outbuf_free(outbuf *b);

/* promote.c: tier "auto" - routing each run, promotion to heavy with replay,
 * learned routes */
void routes_init(void);
void route_run(sandbox *sb, call *k, const char *code, double timeout);
enum tier route_stateless(const char *code, const client *cl, char reason[300]);
/* Called by finish_run with the result r of a run that ended in sb (k:
 * its call, NULL for a replayed step): true if r was taken over. */
bool promote_on_result(sandbox *sb, call *k, json_t *r);
void pending_ready(sandbox *sb);
void pending_failed(sandbox *sb, const char *why);
void promote_cancel(sandbox *sb);
const char *promote_stop(sandbox *sb, bool timeout);
/* Fills p (takes a reference on k, copies code); -ENOMEM. */
int pending_set(pending_run *p, call *k, const char *code, double timeout, const char *reason);
void pending_clear(pending_run *p);

/* files.c */
/* sandbox.files.write|read|list on session sb (params as docs/protocol.md
 * describes them); refused while the session moves to the heavy tier. */
enum files_op { FILES_WRITE, FILES_READ, FILES_LIST };
void engine_files(sandbox *sb, call *k, enum files_op op, json_t *params);
void files_forget(sandbox *sb);
/* Copies the regular files and directories of one workspace into another;
 * returns the number of files or a negative errno. */
int copy_workspace(const char *from, const char *to, uid_t uid, gid_t gid, ab_error *err);

#endif

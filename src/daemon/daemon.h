/* daemon.h - agentboxd's internal structures.
 *
 * One thread, one epoll loop. Objects:
 *  - conn: a client connection (stdio or a unix socket peer) speaking
 *    JSON-RPC 2.0, one object per line;
 *  - sandbox: a session = jail + executor, created by the zygote;
 *  - zygote: the executor process with an initialised interpreter.
 * A sandbox belongs to the connection that created it (or to the pool) and
 * is closed when that connection goes away. */
#ifndef AB_DAEMON_H
#define AB_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "audit.h"
#include "cgroup.h"
#include "frame.h"
#include "internal.h"
#include "path.h"
#include "utf8.h"

enum tier { TIER_HEAVY = 0, TIER_NANO = 1, TIER__COUNT };
const char *tier_name(enum tier t);

/* ----------------------------------------------------------------- loop */

typedef struct loop_watch loop_watch;
typedef void (*loop_cb)(void *ctx, uint32_t events);

struct loop_watch {
	int fd;
	loop_cb cb;
	void *ctx;
	uint32_t events;
};

int loop_init(void);
/* Watches w->fd for events; w must live until loop_del. */
int loop_add(loop_watch *w, int fd, uint32_t events, loop_cb cb, void *ctx);
int loop_mod(loop_watch *w, uint32_t events);
void loop_del(loop_watch *w);
/* Runs one iteration (waits at most timeout_ms). */
int loop_run_once(int timeout_ms);
uint64_t now_ns(void);

/* A one-shot timer built on timerfd. */
typedef struct loop_timer {
	loop_watch w;
	void (*fire)(void *ctx);
	void *ctx;
} loop_timer;
int timer_init(loop_timer *t, void (*fire)(void *), void *ctx);
void timer_arm(loop_timer *t, double seconds);
void timer_disarm(loop_timer *t);
void timer_free(loop_timer *t);

/* ------------------------------------------------------------ connections */

typedef struct conn conn;

struct conn {
	loop_watch rw, ww; /* read and write sides (may share a socket) */
	int rfd, wfd;
	char *rbuf;
	size_t rlen, rcap;
	char *wbuf;
	size_t wlen, wcap;
	bool closing; /* no more reads; close after flushing */
	bool is_stdio;
	uid_t peer_uid;
	pid_t peer_pid;
	char actor[64]; /* "sdk-embedded", "uid 1000 pid 42" */
	int refs;
	conn *next;
};

/* The longest line the daemon sends: the SDK and the CLI read at most this
 * much per line (the same cap as a request line), so a longer one would end
 * the connection and every session on it. */
#define CONN_MESSAGE_MAX (16u << 20)

conn *conn_new(int rfd, int wfd, bool is_stdio);
/* Sends a JSON-RPC result / error / notification (takes a reference). */
void conn_reply(conn *c, json_t *id, json_t *result);
void conn_error(conn *c, json_t *id, int code, const char *msg, json_t *data);
/* conn_error() for a request about session (may be NULL), which the audit
 * record of the refusal names. conn_error() names the session of the
 * request being dispatched, if it named one of c's sandboxes. */
void conn_error_in(conn *c, const char *session, json_t *id, int code, const char *msg,
		   json_t *data);
void conn_notify(conn *c, const char *method, json_t *params);
/* Bytes queued for the peer, for back-pressure decisions. */
size_t conn_backlog(const conn *c);
void conn_put(conn *c);
void conn_close(conn *c);
/* Closes connections that are done (called by the main loop). */
void conn_reap(void);
/* Queues obj (stolen) for the peer now, bypassing the audit hold. */
void conn_send_now(conn *c, json_t *obj);
/* Open socket connections, in all and of peers with this uid. */
void conn_count(uid_t uid, unsigned *total, unsigned *of_uid);

/* JSON-RPC error codes of docs/protocol.md */
enum {
	RPC_PARSE = -32700,
	RPC_INVALID = -32600,
	RPC_NO_METHOD = -32601,
	RPC_BAD_PARAMS = -32602,
	RPC_INTERNAL = -32603,
	RPC_NO_SANDBOX = -32001,
	RPC_DEAD = -32002,
	RPC_PATH = -32003,
	RPC_ISOLATION = -32004,
	RPC_BUSY = -32005,
	RPC_RESOURCES = -32006,
	RPC_AUDIT = -32007,
};

/* Dispatches one parsed request object. */
void rpc_dispatch(conn *c, json_t *req);
/* The id of c's sandbox that the request being dispatched names, or NULL
 * (no request of c is being dispatched, or it names none of c's). */
const char *rpc_request_session(const conn *c);

/* ------------------------------------------------------------- sandboxes */

enum sb_state { SB_SPAWNING, SB_STARTING, SB_READY, SB_RUNNING, SB_DEAD };

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
	conn *c;
	json_t *id;
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
	enum tier tier;
	char id[32];
	enum sb_state state;
	ab_limits limits;
	conn *owner; /* NULL while pooled */
	bool pooled;
	uid_t host_uid;
	int uid_slot;
	char dir[4096];		/* $HOME/sessions/<id> */
	bool ws_mounted;	/* the workspace is a size-capped tmpfs */
	bool closing;		/* sandbox_close in progress */
	bool tier_auto;		/* tier "auto": routed per run, may be promoted */
	bool oneshot;		/* a stateless run: closed after its one run */
	bool hidden;		/* a heavy backend being prepared by a promotion */
	bool retired;		/* replaced by its promoted backend: no close event */
	bool create_unrecorded; /* one-shot: its create is recorded with its run,
				 * in the same commit */
	bool refill_after;	/* taken from the pool, which is topped up once its
				 * (first) run is over, not while it runs */
	bool spawn_pending;	/* the zygote has not answered yet */
	bool from_pool;		/* handed out from the pool */
	conn *close_conn;	/* a sandbox.close waiting for the teardown */
	json_t *close_id;
	ab_cgroup *cg;
	pid_t pid; /* host pid of the sandbox's init */
	int pidfd, ctl, out, err;
	loop_watch pid_w, ctl_w, out_w, err_w;
	ab_frame_decoder *dec;
	json_t *early; /* ready/fatal that came before the zygote's answer */
	/* Who may speak on the control socket (sandbox.c, check_sender):
	 * until the executor is known, one sender (init or executor); then
	 * only the executor, by the kernel-stamped pid of every message. */
	pid_t ctl_first_pid;
	pid_t exec_pid;	    /* host pid of the executor, once it was ready */
	int exec_pidfd;	    /* the executor's pidfd, -1 until then */
	dev_t ctl_peer_dev; /* the executor's end of the control socket */
	ino_t ctl_peer_ino;
	bool fd_check;	       /* pidfd_getfd works on this executor */
	char compromised[256]; /* why the session was found hijacked, or "" */
	loop_timer timer;
	int step;
	char dead_reason[256];
	/* the run in progress */
	json_t *run_id; /* JSON-RPC id of the sandbox.run request */
	conn *run_conn;
	uint64_t run_start_ns;
	uint64_t call_start_ns; /* when the call this run belongs to started */
	double run_timeout;	/* seconds for the whole call (docs/protocol.md) */
	int run_attempt;	/* numbers the call's attempts for sandbox.output */
	bool run_interrupted;	/* sandbox.interrupt sent SIGINT */
	char *run_code;		/* kept for the audit record */
	char run_nonce[33];	/* echoed by the executor in its result */
	int timeout_phase;	/* 0 none, 1 SIGINT sent, 2 killed */
	ab_cgroup_stats stats0;
	int64_t vm_peak0_kb; /* nano: the executor's peak address space, as of
			      * the end of its last run (or ready) */
	outbuf o, e;
	char run_reason[300];  /* route_reason of the run in progress */
	bool run_internal;     /* a replayed step: no reply, no record of its own */
	json_t *run_promotion; /* the promotion this run completes, for its result */
	/* a create request waiting for this sandbox to become ready */
	json_t *create_id;
	conn *create_conn;
	double idle_timeout; /* seconds a session may sit unused (0: no limit) */
	/* tier "auto" (promote.c) */
	json_t *history; /* code of the nano steps, replayed on promotion */
	size_t history_bytes;
	bool history_lost;    /* more than a replay can take: cannot be promoted */
	sandbox *promote_to;  /* (session) the heavy backend being prepared */
	sandbox *promote_for; /* (backend) the session it is prepared for */
	size_t replay_next;
	json_t *replayed;   /* statuses of the replayed steps */
	char promoted[300]; /* why the session was promoted, once it was */
	pending_run pend;   /* a run waiting for a backend */
	sandbox *next;
};

/* Global daemon state. */
typedef struct daemon_state {
	char home[4096];
	unsigned degraded; /* layers missing and allowed to be */
	ab_layer_status layers[AB_LAYER__COUNT];
	bool privileged;     /* root: per-sandbox host uids */
	bool private_mounts; /* own mount namespace: workspaces are tmpfs */
	uid_t uid_base;
	int pool_target[TIER__COUNT];
	double idle_timeout;	/* default for new sessions, seconds (0: none) */
	unsigned zygote_rotate; /* a fresh zygote after this many sandboxes (0: never) */
	int nsessions;
	sandbox *sandboxes;
	bool shutting_down;
	/* Caps on what clients may hold (--max-connections and friends). */
	unsigned max_conns, max_conns_per_uid, max_sessions_per_conn, max_sessions_per_uid;
} daemon_state;

extern daemon_state D;

void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* audit_log.c: recording actions; see the comment at the top of the file */
int audit_init(const char *checkpoints, bool off, ab_error *err);
bool audit_enabled(void);
/* NULL, or why the log cannot be written (the daemon then fails closed). */
const char *audit_broken(void);
/* Records an action; body is stolen. step -1 when not a run. */
void audit_event(const char *kind, const char *session, int64_t step, const char *actor,
		 json_t *body);
bool audit_holding(void);
void audit_hold(conn *c, json_t *msg);
void audit_flush(void);
void audit_shutdown(void);
int audit_session_events(const char *session, json_t **out, ab_error *err);
void audit_sha256_hex(const void *data, size_t len, char out[65]);

/* zygote.c */
int zygote_start(enum tier t, const char *exe_dir, ab_error *err);
/* Sends a spawn request; cb is called later (from the loop) with the
 * sandbox's init pid and pidfd, or pid < 0 and an error message. */
typedef void (*zygote_cb)(void *ctx, pid_t pid, int pidfd, const char *error);
int zygote_spawn(enum tier t, json_t *req, const int *fds, int nfds, zygote_cb cb, void *ctx,
		 ab_error *err);
void zygote_stop(void);
bool zygote_alive(enum tier t);
pid_t zygote_pid(enum tier t);
/* True for the pid of any zygote, current, starting or retiring. */
bool zygote_owns_pid(pid_t pid);

/* sandbox.c */
int sandbox_create(conn *owner, enum tier tier, const ab_limits *lim, json_t *create_id,
		   sandbox **out, ab_error *err);
sandbox *sandbox_find(const char *id, conn *owner);
/* Returns a ready sandbox from the pool for these limits, or NULL. */
sandbox *sandbox_from_pool(conn *owner, enum tier tier, const ab_limits *lim);
/* Starts a run; reason is its route_reason. c NULL: an internal run
 * (a replayed step), whose end goes to promote_on_result() without a reply. */
void sandbox_run(sandbox *sb, conn *c, json_t *id, const char *code, double timeout,
		 const char *reason);
/* Runs p's code as a later part of the call p describes: its timer gets
 * what is left of p's timeout, counted from p->call_start_ns. */
void sandbox_run_pending(sandbox *sb, const pending_run *p);
/* sandbox.interrupt: stops the run or promotion of session sb in progress.
 * Returns the phase that was interrupted ("run", "promotion", "starting"),
 * or NULL if sb had nothing to interrupt. */
const char *sandbox_interrupt(sandbox *sb);
/* (Re)arms the idle timeout of a session that is ready and unused. */
void sandbox_touch(sandbox *sb);
/* Why the session id of owner c was closed recently, or NULL. */
const char *sandbox_closed_reason(const char *id, conn *owner);
void sandbox_close(sandbox *sb);
/* Closes and answers the sandbox.close request id on c once the sandbox is
 * completely torn down (processes reaped, cgroup and workspace removed). */
void sandbox_close_reply(sandbox *sb, conn *c, json_t *id);
void sandbox_close_owned_by(conn *c);
void sandbox_close_all(void);
/* Frees sandboxes closed during the last loop iteration. */
void sandbox_gc(void);
/* Asks for the pool of this tier to be topped up after this loop iteration
 * (pool_refill_pending, called by the main loop). */
void pool_refill(enum tier tier);
void pool_refill_pending(void);
json_t *sandbox_describe(sandbox *sb);
/* Records that sb was handed to client c (audit). */
void sandbox_record_create(sandbox *sb, conn *c);
json_t *degraded_list(void);

/* promote.c: tier "auto" - routing each run, promotion to heavy with replay,
 * learned routes */
void route_run(sandbox *sb, conn *c, json_t *id, const char *code, double timeout);
/* Decides the tier of a stateless run of client c before its sandbox exists. */
enum tier route_stateless(const char *code, const conn *c, char reason[300]);
/* Called by finish_run with the sanitized result r of a run that ended in
 * sb: true if r was taken over (a promotion started or a replay went on),
 * false if finish_run should reply as usual. */
bool promote_on_result(sandbox *sb, conn *c, json_t *id, json_t *r);
/* A backend became ready / failed before it was: the pending run or the
 * promotion goes on / is answered with the error. */
void pending_ready(sandbox *sb);
void pending_failed(sandbox *sb, const char *why);
/* Drops the session's promotion state (it is being closed). */
void promote_cancel(sandbox *sb);
/* The call of session sb is waiting for a promotion or for its sandbox:
 * its deadline passed (timeout) or the client interrupted it. The call is
 * answered (status "timeout", or a KeyboardInterrupt), the heavy backend is
 * closed and the session stays as it was. Returns the phase ("promotion",
 * "starting"), or NULL if no call of sb was waiting. */
const char *promote_stop(sandbox *sb, bool timeout);
/* Fills p (takes references on c and id, copies code); -ENOMEM. */
int pending_set(pending_run *p, conn *c, json_t *id, const char *code, double timeout,
		const char *reason);
void pending_clear(pending_run *p);
void routes_init(void);
/* Copies the regular files and directories of one workspace into another
 * (files.c); returns the number of files or a negative errno. */
int copy_workspace(const char *from, const char *to, uid_t uid, gid_t gid, ab_error *err);

/* files.c */
void files_write(sandbox *sb, conn *c, json_t *id, json_t *params);
void files_read(sandbox *sb, conn *c, json_t *id, json_t *params);
void files_list(sandbox *sb, conn *c, json_t *id, json_t *params);
/* Discards the unfinished writes in parts of a sandbox that is closing. */
void files_forget(sandbox *sb);
int remove_tree(const char *path);

#endif

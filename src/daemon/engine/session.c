/* session.c - sandboxes as the engine sees them: creation (from the pool
 * or a backend), ownership by clients, the pool, deadlines, death and
 * teardown; and the engine's entry points for sessions.
 *
 * Every sandbox has one state (enum sb_state) and one role (enum sb_role);
 * engine.h says what each means. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>

#include "egress/egress.h"
#include "engine.h"

#define STARTUP_TIMEOUT_S 60.0

sandbox *sandboxes;
int nsessions;
static sandbox *graveyard;

static void on_timer(void *ctx);

json_t *degraded_list(void)
{
	json_t *a = json_array();
	for (int i = 0; i < AB_LAYER__COUNT; i++)
		if (D.degraded & (1u << i))
			json_array_append_new(a, json_string(ab_layer_name((enum ab_layer)i)));
	return a;
}

/* The session's routing, as create and describe report it; each run has
 * its own (run_reason). */
static const char *route_reason(const sandbox *sb)
{
	if (sb->promoted[0])
		return sb->promoted;
	if (sb->tier_auto && sb->network)
		return "auto: a network was requested, and only the heavy tier has egress";
	if (sb->tier_auto)
		return sb->tier == TIER_NANO ? "auto: starts in nano; each run is routed"
					     : "auto: the nano tier is disabled on this daemon";
	return sb->tier == TIER_NANO ? "tier \"nano\" was requested"
				     : "tier \"heavy\" was requested";
}

/* Ids of sessions closed by the daemon (idle, one-shot, death), so that a
 * client asking for one learns why it is gone. */
#define CLOSED_RING 64
static struct {
	char id[32];
	const client *owner;
	char why[200];
} closed_ring[CLOSED_RING];
static unsigned closed_next;

static void remember_closed(const sandbox *sb, const char *why)
{
	unsigned i = closed_next++ % CLOSED_RING;
	snprintf(closed_ring[i].id, sizeof(closed_ring[i].id), "%s", sb->id);
	closed_ring[i].owner = sb->owner;
	snprintf(closed_ring[i].why, sizeof(closed_ring[i].why), "%s", why);
}

static const char *closed_reason(const char *id, const client *owner)
{
	for (unsigned i = 0; i < CLOSED_RING; i++)
		if (closed_ring[i].owner == owner && strcmp(closed_ring[i].id, id) == 0)
			return closed_ring[i].why;
	return NULL;
}

/* A session its client can reach: not pooled, not hidden, not closing. */
static bool reachable(const sandbox *s)
{
	return s->role == ROLE_SESSION && s->state != SB_CLOSING;
}

void sandbox_touch(sandbox *sb)
{
	if (sb->owner && reachable(sb) && !sb->promote_to && sb->state == SB_READY &&
	    sb->idle_timeout > 0)
		timer_arm(&sb->timer, sb->idle_timeout);
}

const char *sandbox_workspace(const sandbox *sb, uid_t *uid)
{
	return sb->be ? sb->prof->ops->workspace(sb->be, uid) : NULL;
}

json_t *sandbox_describe(sandbox *sb)
{
	json_t *d = json_pack("{s:s, s:s, s:s, s:o, s:o, s:b, s:o}", "sandbox", sb->id, "tier",
			      tier_name(sb->tier), "route_reason", route_reason(sb), "limits",
			      ab_limits_to_json(&sb->limits), "degraded", degraded_list(),
			      "pooled", sb->from_pool, "network",
			      sb->network ? json_incref(sb->network) : json_string("none"));
	if (d && sb->dlp)
		json_object_set(d, "dlp", sb->dlp);
	return d;
}

sandbox *engine_session(call *k, client *cl, const char *id, bool allow_dead)
{
	sandbox *sb = NULL;
	for (sandbox *s = sandboxes; s && !sb; s = s->next)
		if (reachable(s) && (!cl || s->owner == cl) && strcmp(s->id, id) == 0)
			sb = s;
	char msg[400];
	if (!sb) {
		if (k) {
			const char *why = closed_reason(id, cl);
			if (why)
				snprintf(msg, sizeof(msg), "sandbox %.64s was closed: %s", id, why);
			else
				snprintf(msg, sizeof(msg), "no such sandbox: %.64s", id);
			call_fail(k, NULL, ERR_NO_SANDBOX, msg, NULL);
		}
		return NULL;
	}
	if (sb->state == SB_DEAD && !allow_dead) {
		if (k) {
			snprintf(msg, sizeof(msg), "sandbox %s is dead: %s", sb->id,
				 sb->dead_reason);
			call_fail(k, sb->id, ERR_DEAD, msg, NULL);
		}
		return NULL;
	}
	return sb;
}

int engine_sessions_of(const client *cl)
{
	int n = 0;
	for (sandbox *s = sandboxes; s; s = s->next)
		if (s->owner == cl && reachable(s))
			n++;
	return n;
}

bool engine_owns_pid(pid_t pid)
{
	for (sandbox *s = sandboxes; s; s = s->next)
		if (s->be && s->prof->ops->owns_pid(s->be, pid))
			return true;
	return false;
}

/* The audit record of a session handed to client c. */
void sandbox_record_create(sandbox *sb, client *c)
{
	sb->create_unrecorded = false;
	uint64_t t =
	    audit_event("sandbox.create", sb->id, -1, c ? c->actor : "daemon",
			json_pack("{s:s, s:s, s:s, s:o, s:b, s:o, s:b}", "tier_requested",
				  sb->tier_auto ? "auto" : tier_name(sb->tier), "tier",
				  tier_name(sb->tier), "route_reason", route_reason(sb), "limits",
				  ab_limits_to_json(&sb->limits), "pooled", sb->from_pool,
				  "degraded", degraded_list(), "privileged", D.privileged));
	client_learns(c, t);
	/* Its egress rules apply from the moment its client has it. */
	if (sb->network || sb->dlp)
		egress_session_open(sb->id, sb->network, sb->dlp, c ? c->actor : "daemon");
	client_learns(c, audit_last_ticket());
}

/* ------------------------------------------------------------- creation */

/* Finishes the create waiting for sb with an error. */
static void fail_create(sandbox *sb, int code, const char *msg)
{
	if (sb->create_call) {
		call *k = sb->create_call;
		sb->create_call = NULL;
		call_fail(k, sb->id, code, msg, NULL);
	}
}

int sandbox_create(client *owner, enum tier tier, const ab_limits *lim, call *create, sandbox **out,
		   ab_error *err)
{
	sandbox *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return ab_error_set(err, -ENOMEM, "out of memory");
	sb->prof = &profiles[tier];
	sb->tier = tier;
	sb->limits = *lim;
	sb->state = SB_STARTING;
	sb->role = owner ? ROLE_SESSION : ROLE_POOL;
	sb->idle_timeout = D.idle_timeout;
	unsigned char rnd[8];
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
		free(sb);
		return ab_error_errno(err, -errno, "getrandom");
	}
	snprintf(sb->id, sizeof(sb->id), "sb-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
		 rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	if (timer_init(&sb->timer, on_timer, sb) < 0) {
		free(sb);
		return ab_error_set(err, -ENOMEM, "out of memory");
	}
	int r = sb->prof->ops->create(sb->prof, sb->id, lim, sb, &sb->be, err);
	if (r < 0) {
		timer_free(&sb->timer);
		free(sb);
		return r;
	}
	sb->next = sandboxes;
	sandboxes = sb;
	nsessions++;
	sb->owner = owner;
	if (owner)
		client_hold(owner);
	timer_arm(&sb->timer, STARTUP_TIMEOUT_S);
	sb->create_call = create;
	*out = sb;
	return 0;
}

/* --------------------------------------------------------- backend events */

sandbox *sandbox_backing(client *owner, enum tier tier, const ab_limits *lim, ab_error *err)
{
	sandbox *h = sandbox_from_pool(owner, tier, lim);
	if (h)
		h->refill_after = true;
	else if (sandbox_create(owner, tier, lim, NULL, &h, err) < 0)
		return NULL;
	h->role = ROLE_BACKING;
	return h;
}

static void ev_ready(void *owner)
{
	sandbox *sb = owner;
	if (sb->state != SB_STARTING)
		return;
	timer_disarm(&sb->timer);
	sb->state = SB_READY;
	if (sb->create_call) {
		call *k = sb->create_call;
		sb->create_call = NULL;
		sandbox_record_create(sb, k->who);
		call_done(k, sandbox_describe(sb));
	}
	sandbox_touch(sb);
	pending_ready(sb);
}

static void ev_setup_failed(void *owner, const char *why)
{
	sandbox *sb = owner;
	/* The backend may have recorded why (a compromise). */
	client_learns(sb->owner, audit_last_ticket());
	if (!sb->dead_reason[0])
		snprintf(sb->dead_reason, sizeof(sb->dead_reason), "%.200s", why);
	fail_create(sb, ERR_ISOLATION, why);
	pending_failed(sb, why);
	/* Nobody holds its id: a session whose create failed, a pooled one,
	 * a one-shot run or a promotion's backing. */
	sandbox_close(sb);
}

static void ev_output(void *owner, int stream, const char *data, size_t len)
{
	run_output(owner, stream, data, len);
}

static void ev_result(void *owner, json_t *frame)
{
	sandbox *sb = owner;
	if (sb->state == SB_RUNNING)
		finish_run(sb, frame);
}

static void ev_exited(void *owner, int code, int status, const char *why)
{
	sandbox *sb = owner;
	if (sb->state == SB_DEAD || sb->state == SB_CLOSING)
		return;
	bool was_ready = sb->state == SB_READY;
	client_learns(sb->owner, audit_last_ticket()); /* a compromise the backend recorded */
	if (!sb->dead_reason[0] && why)
		snprintf(sb->dead_reason, sizeof(sb->dead_reason), "%s", why);
	if (!sb->dead_reason[0]) {
		be_stats st;
		sb->prof->ops->stats(sb->be, &st);
		if (st.oom_kills > sb->stats0.oom_kills ||
		    (sb->state != SB_RUNNING && st.oom_kills))
			snprintf(sb->dead_reason, sizeof(sb->dead_reason),
				 "killed by the OOM killer at the memory limit of %llu MB",
				 (unsigned long long)sb->limits.memory_mb);
		else if (code == CLD_EXITED)
			snprintf(sb->dead_reason, sizeof(sb->dead_reason),
				 "the executor exited with status %d", status);
		else
			snprintf(sb->dead_reason, sizeof(sb->dead_reason),
				 "the executor was killed by signal %d", status);
	}
	if (sb->state == SB_RUNNING)
		finish_run(sb, NULL);
	history_sandbox_died(sb, sb->dead_reason);
	bool create_failed = sb->create_call != NULL;
	if (sb->create_call || sb->pend.k || sb->promote_for || sb->replay) {
		char msg[400];
		snprintf(msg, sizeof(msg), "sandbox died during set-up: %s", sb->dead_reason);
		fail_create(sb, ERR_ISOLATION, msg);
		pending_failed(sb, msg);
	}
	if (sb->state == SB_CLOSING)
		return; /* closed by one of the above */
	sb->state = SB_DEAD;
	timer_disarm(&sb->timer);
	/* A dead session waits for its client's close, unless nobody will
	 * ask: pooled sandboxes, one-shot runs, backings of a promotion, and
	 * sessions whose create was just failed (the client never learnt
	 * their id). */
	bool pooled_ready = sb->role == ROLE_POOL && was_ready;
	if (create_failed || sb->role == ROLE_POOL || sb->role == ROLE_BACKING ||
	    (sb->oneshot && !sb->promote_to))
		sandbox_close(sb);
	/* A ready pooled sandbox that died (the OOM killer, an operator) is
	 * replaced; one that never became ready is not, or a set-up that
	 * keeps failing would be retried without end. */
	if (pooled_ready)
		pool_replace_dead(sb->tier);
}

static void ev_snapshotted(void *owner, int id, json_t *not_kept, const char *error)
{
	history_snapshotted(owner, id, not_kept, error);
}

static void ev_snapshot_lost(void *owner, int id, const char *why)
{
	history_snapshot_lost(owner, id, why);
}

static void ev_inspected(void *owner, int id, json_t *frame, const char *error)
{
	history_inspected(owner, id, frame, error);
}

static void ev_restored(void *owner, int id, const char *error)
{
	history_restored(owner, id, error);
}

static void finalize(sandbox *sb);

static void ev_released(void *owner)
{
	sandbox *sb = owner;
	sb->be = NULL;
	finalize(sb);
}

void sandbox_kill(sandbox *sb, const char *why)
{
	if (!sb->dead_reason[0])
		snprintf(sb->dead_reason, sizeof(sb->dead_reason), "%s", why);
	if (sb->be)
		sb->prof->ops->kill(sb->be, why);
}

static void on_timer(void *ctx)
{
	sandbox *sb = ctx;
	if (sb->state == SB_STARTING && !sb->promote_to) {
		sandbox_kill(sb, "the sandbox did not become ready in time");
		return;
	}
	if (sb->state == SB_READY && sb->owner && reachable(sb) && !sb->promote_to &&
	    sb->idle_timeout > 0) {
		snprintf(sb->dead_reason, sizeof(sb->dead_reason),
			 "closed after %g s without use (the idle timeout)", sb->idle_timeout);
		sandbox_close(sb);
		return;
	}
	if (promote_stop(sb, true))
		return; /* the deadline of a call waiting for a promotion */
	if (sb->state == SB_RUNNING)
		run_on_timer(sb);
}

/* ------------------------------------------------------- entry points */

/* Sessions held by the client of k and by every socket client of its uid,
 * against --max-sessions-per-connection and --max-sessions-per-uid. A
 * session being promoted counts once (its backing is not counted), and one
 * being closed no longer counts. */
static bool session_allowed(call *k)
{
	client *c = k->who;
	unsigned mine = 0, of_uid = 0;
	for (sandbox *s = sandboxes; s; s = s->next) {
		if (!s->owner || !reachable(s))
			continue;
		if (s->owner == c)
			mine++;
		if (!c->local && !s->owner->local && s->owner->uid == c->uid)
			of_uid++;
	}
	char msg[200];
	if (mine >= D.max_sessions_per_conn) {
		snprintf(msg, sizeof(msg),
			 "too many sessions on this connection: at most %u "
			 "(--max-sessions-per-connection); close one first",
			 D.max_sessions_per_conn);
		call_fail(k, NULL, ERR_RESOURCES, msg,
			  json_pack("{s:s, s:I}", "limit", "sessions_per_connection", "max",
				    (json_int_t)D.max_sessions_per_conn));
		return false;
	}
	if (!c->local && of_uid >= D.max_sessions_per_uid) {
		snprintf(msg, sizeof(msg),
			 "too many sessions for uid %u: at most %u (--max-sessions-per-uid); close "
			 "one first",
			 (unsigned)c->uid, D.max_sessions_per_uid);
		call_fail(k, NULL, ERR_RESOURCES, msg,
			  json_pack("{s:s, s:I, s:I}", "limit", "sessions_per_uid", "uid",
				    (json_int_t)c->uid, "max", (json_int_t)D.max_sessions_per_uid));
		return false;
	}
	return true;
}

/* Refusals every new session shares: shutting down, a disabled tier. */
static bool tier_allowed(call *k, const char *tier)
{
	if (D.shutting_down) {
		call_fail(k, NULL, ERR_RESOURCES, "the daemon is shutting down", NULL);
		return false;
	}
	if (strcmp(tier, "nano") == 0 && D.pool_target[TIER_NANO] < 0) {
		call_fail(k, NULL, ERR_ISOLATION,
			  "tier \"nano\" is disabled on this daemon (--nano-pool -1)",
			  json_pack("{s:s}", "tier", "nano"));
		return false;
	}
	return true;
}

/* A sandbox of this tier for the client of k: a ready one from the pool,
 * or one being started (wait_create: k is finished when it is ready). The
 * pool is topped up now, or for a one-shot run once its run is over, so
 * that the refill does not compete with the run. On failure k is failed. */
static sandbox *new_session(call *k, enum tier want, const ab_limits *lim, bool wait_create,
			    bool tier_auto, double idle, bool oneshot)
{
	if (!session_allowed(k))
		return NULL;
	sandbox *sb = sandbox_from_pool(k->who, want, lim);
	if (sb) {
		if (oneshot)
			sb->refill_after = true;
		else
			pool_refill(want);
	} else {
		pool_missed(want, lim);
		ab_error err = {0};
		if (sandbox_create(k->who, want, lim, wait_create ? k : NULL, &sb, &err) < 0) {
			call_fail(k, NULL, ERR_RESOURCES, err.msg, NULL);
			return NULL;
		}
	}
	sb->tier_auto = tier_auto;
	sb->idle_timeout = idle;
	sb->oneshot = oneshot;
	return sb;
}

void engine_create(call *k, const char *tier, const ab_limits *lim, double idle)
{
	engine_create_net(k, tier, lim, idle, NULL, NULL);
}

void engine_create_net(call *k, const char *tier, const ab_limits *lim, double idle,
		       json_t *network, json_t *dlp)
{
	engine_create_opts(k, tier, lim, idle, network, dlp, 0);
}

void engine_create_opts(call *k, const char *tier, const ab_limits *lim, double idle,
			json_t *network, json_t *dlp, int max_snapshots)
{
	if (network && strcmp(tier, "nano") == 0) {
		json_decref(network);
		json_decref(dlp);
		call_fail(k, NULL, ERR_BAD_PARAMS,
			  "params.network: the nano tier has no network; use tier \"heavy\" or "
			  "\"auto\" for a session with network rules",
			  NULL);
		return;
	}
	if (network && egress_why_off()) {
		char msg[700];
		snprintf(msg, sizeof(msg),
			 "params.network: egress is unavailable on this daemon (%.500s): a "
			 "session cannot have network rules",
			 egress_why_off());
		json_decref(network);
		json_decref(dlp);
		call_fail(k, NULL, ERR_ISOLATION, msg, json_pack("{s:s}", "layer", "egress"));
		return;
	}
	if (!tier_allowed(k, tier)) {
		json_decref(network);
		json_decref(dlp);
		return;
	}
	bool tier_auto = strcmp(tier, "auto") == 0;
	/* An auto session starts in nano, where most steps can run; one with
	 * a network in heavy, the only tier that has egress. */
	enum tier want = strcmp(tier, "heavy") == 0 || network ||
				 (tier_auto && D.pool_target[TIER_NANO] < 0)
			     ? TIER_HEAVY
			     : TIER_NANO;
	sandbox *sb = new_session(k, want, lim, true, tier_auto, idle, false);
	if (!sb) {
		json_decref(network);
		json_decref(dlp);
		return;
	}
	sb->network = network;
	sb->dlp = dlp;
	sb->max_snapshots = max_snapshots;
	if (sb->state == SB_READY) {
		sandbox_record_create(sb, k->who);
		call_done(k, sandbox_describe(sb));
		sandbox_touch(sb);
	}
	/* Otherwise k is finished when the sandbox is ready (or failed). */
}

void engine_exec(call *k, const char *tier, const ab_limits *lim, const char *code, double timeout)
{
	if (!tier_allowed(k, tier))
		return;
	bool tier_auto = strcmp(tier, "auto") == 0;
	char reason[300];
	enum tier want;
	if (tier_auto) {
		want = route_stateless(code, k->who, reason);
	} else {
		want = strcmp(tier, "heavy") == 0 ? TIER_HEAVY : TIER_NANO;
		snprintf(reason, sizeof(reason), "tier \"%s\" was requested", tier);
	}
	sandbox *sb = new_session(k, want, lim, false, tier_auto, 0, true);
	if (!sb)
		return;
	/* Its create is recorded with its run (one commit, not two). */
	sb->create_unrecorded = true;
	if (sb->state == SB_READY) {
		sandbox_run(sb, k, code, timeout, reason);
		return;
	}
	/* Run when the sandbox is ready (pending_ready). */
	if (pending_set(&sb->pend, k, code, timeout, reason) < 0) {
		pending_clear(&sb->pend); /* fails k */
		sandbox_close(sb);
	}
}

void engine_run(sandbox *sb, call *k, const char *code, double timeout)
{
	if (timeout <= 0)
		timeout = sb->limits.timeout_s;
	if (sb->state != SB_READY || sb->promote_to || history_busy(sb)) {
		call_fail(k, sb->id, ERR_BUSY, "the sandbox is busy with another run or a rewind",
			  NULL);
		return;
	}
	route_run(sb, k, code, timeout);
}

const char *engine_interrupt(client *cl, sandbox *sb, json_t *tag, sandbox **found)
{
	if (tag) {
		sandbox *hit = NULL;
		for (sandbox *s = sandboxes; s && !hit; s = s->next)
			if (s->owner == cl && reachable(s) &&
			    ((s->run_call && s->run_call->who == cl && s->run_call->tag &&
			      json_equal(s->run_call->tag, tag)) ||
			     (s->pend.k && s->pend.k->who == cl && s->pend.k->tag &&
			      json_equal(s->pend.k->tag, tag))))
				hit = s;
		if (sb && hit != sb)
			hit = NULL;
		sb = hit;
	}
	*found = sb;
	return sb ? sandbox_interrupt(sb) : NULL;
}

/* -------------------------------------------------------------- teardown */

/* Closing is two steps. sandbox_close answers for the sandbox at once:
 * waiting calls get their answers, the sandbox disappears from its
 * client's view, and the backend begins its teardown. finalize() runs
 * once the backend has released everything. The daemon never blocks
 * waiting for a sandbox to die. */
/* The engine's half of closing: sb becomes unreachable and what waited on
 * it is answered. False if it was closing already. */
static bool close_begin(sandbox *sb)
{
	if (sb->state == SB_CLOSING)
		return false;
	enum sb_state was = sb->state;
	sb->state = SB_CLOSING;
	if (was == SB_RUNNING) {
		if (!sb->dead_reason[0])
			snprintf(sb->dead_reason, sizeof(sb->dead_reason),
				 "the sandbox was closed");
		finish_run(sb, NULL);
	}
	fail_create(sb, ERR_DEAD, "the sandbox was closed before it was ready");
	promote_cancel(sb);
	replay_forget(sb);
	history_free(sb);
	files_forget(sb);
	if (sb->refill_after) {
		sb->refill_after = false;
		pool_refill(sb->tier);
	}
	bool session = sb->owner && sb->role == ROLE_SESSION;
	sb->close_recorded = session;
	sb->close_start_ns = now_ns();
	if (session && !sb->close_call && sb->dead_reason[0])
		remember_closed(sb, sb->dead_reason);
	if (sb->owner && sb->create_unrecorded)
		sandbox_record_create(sb, sb->owner);
	if (session)
		client_learns(
		    sb->owner,
		    audit_event("sandbox.close", sb->id, -1,
				sb->close_call ? sb->close_call->who->actor : sb->owner->actor,
				json_pack("{s:s, s:i}", "reason",
					  sb->close_call       ? "closed by the client"
					  : sb->dead_reason[0] ? sb->dead_reason
							       : "the client disconnected",
					  "steps", sb->step)));
	timer_disarm(&sb->timer);
	if (session)
		egress_session_close(sb->id);
	client_put(sb->owner);
	sb->owner = NULL;
	return true;
}

/* The backend's half: its teardown begins (finalize follows). */
static void close_end(sandbox *sb)
{
	if (sb->be)
		sb->prof->ops->close(sb->be);
	else
		finalize(sb);
}

void sandbox_close(sandbox *sb)
{
	if (close_begin(sb))
		close_end(sb);
}

/* The reply does not wait for the teardown (the kernel reaping the
 * sandbox's processes, the workspace's removal): the sandbox is
 * unreachable from now on, and what it holds stays accounted (its uid,
 * cgroup and place among the daemon's sandboxes) until the backend has
 * released it, which the audit log records as sandbox.released. */
void engine_close(sandbox *sb, call *k)
{
	if (sb->state == SB_CLOSING) {
		call_fail(k, sb->id, ERR_NO_SANDBOX, "no such sandbox", NULL);
		return;
	}
	sb->close_call = k;
	close_begin(sb);
	sb->close_call = NULL;
	/* Answered before the kill: the dying sandbox's exit work would
	 * compete with the reply for the CPU. */
	call_done(k, json_pack("{s:s, s:b}", "sandbox", sb->id, "closed", 1));
	close_end(sb);
}

static void finalize(sandbox *sb)
{
	timer_free(&sb->timer);
	for (sandbox **p = &sandboxes; *p; p = &(*p)->next)
		if (*p == sb) {
			*p = sb->next;
			break;
		}
	nsessions--;
	if (sb->close_recorded)
		audit_event("sandbox.released", sb->id, -1, "daemon",
			    json_pack("{s:f}", "teardown_ms",
				      (double)(now_ns() - sb->close_start_ns) / 1e6));
	json_decref(sb->run_promotion);
	json_decref(sb->network);
	json_decref(sb->dlp);
	history_free(sb);
	json_decref(sb->history);
	json_decref(sb->replayed);
	free(sb->run_code);
	outbuf_free(&sb->o);
	outbuf_free(&sb->e);
	/* Freed after the current loop iteration: events for its timer may
	 * still be queued in this batch. */
	sb->next = graveyard;
	graveyard = sb;
}

void engine_tick(void)
{
	while (graveyard) {
		sandbox *n = graveyard->next;
		free(graveyard);
		graveyard = n;
	}
	backend_gc();
	pool_refill_pending();
}

/* Closing one sandbox may close another (a promotion's backing) and
 * finalize it at once, so the walk starts over after each close. */
void engine_client_gone(client *cl)
{
again:
	for (sandbox *s = sandboxes; s; s = s->next)
		if (s->owner == cl && s->role != ROLE_POOL && s->state != SB_CLOSING) {
			sandbox_close(s);
			goto again;
		}
}

/* At shutdown: close everything, then wait for each backend here, since
 * the loop no longer runs. Sandboxes still being spawned are finalized
 * when zygote_stop() fails their requests. */
void engine_shutdown(void)
{
again:
	for (sandbox *s = sandboxes; s; s = s->next)
		if (s->state != SB_CLOSING) {
			sandbox_close(s);
			goto again;
		}
	for (sandbox *s = sandboxes, *n; s; s = n) {
		n = s->next;
		if (s->be)
			s->prof->ops->close_now(s->be);
	}
	engine_tick();
}

static const be_events events = {
    .ready = ev_ready,
    .setup_failed = ev_setup_failed,
    .output = ev_output,
    .result = ev_result,
    .exited = ev_exited,
    .released = ev_released,
    .profile_ready = pool_refill, /* a zygote came up: fill its pool */
    .snapshotted = ev_snapshotted,
    .snapshot_lost = ev_snapshot_lost,
    .inspected = ev_inspected,
    .restored = ev_restored,
};

void engine_init(void)
{
	backend_init(&events);
}

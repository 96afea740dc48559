/* promote.c - tier "auto": each run is routed, and a session that needs
 * the heavy tier is promoted to it (docs/router.md).
 *
 * An auto session starts on a nano worker. Before each run the router
 * (src/lib/router.c) reads the cell, together with what was learned in
 * $AGENTBOX_HOME/routes.json; a cell that needs heavy promotes the session
 * first. A run that fails in nano because of the tier itself (a module nano
 * lacks, a call the nano jail refuses, nano's memory cap) promotes the
 * session and runs again, and the cause is learned when heavy does better.
 *
 * Promotion: take a heavy backend (from the pool, else spawn one, without
 * blocking the loop), copy the session's workspace into it, replay the
 * session's nano steps with their output discarded, then give the backend
 * the session's id and run the waiting code there. Replaying is safe:
 * a nano step cannot change anything outside its own process (no writes,
 * no network, no processes). Steps that use time or randomness compute
 * new values in the replay; docs/router.md says so. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "egress/egress.h"
#include "engine.h"

/* Code kept per session for a replay; past this the session can no longer
 * be promoted (runs that need heavy then fail with a clear error). */
#define HISTORY_MAX (16u << 20)

static ab_routes *routes;
static char routes_path[4200];

/* A file in the older format quotes the error text of whoever taught it
 * a route: it is rewritten at once, without it. */
static void routes_migrate(void)
{
	ab_error err = {0};
	if (routes && ab_routes_migrated(routes) && ab_routes_save(routes, routes_path, &err) < 0)
		log_msg("could not rewrite the learned routes in the new format: %s", err.msg);
}

void routes_init(void)
{
	snprintf(routes_path, sizeof(routes_path), "%s/routes.json", D.home);
	ab_error err = {0};
	if (ab_routes_load(routes_path, &routes, &err) < 0) {
		log_msg("learned routes unusable, starting without them: %s", err.msg);
		routes = NULL;
	}
	routes_migrate();
}

/* Another daemon, or `agentbox routes clear`, may have changed the file. */
static void routes_refresh(void)
{
	if (routes && !ab_routes_stale(routes, routes_path))
		return;
	ab_routes *fresh = NULL;
	ab_error err = {0};
	if (ab_routes_load(routes_path, &fresh, &err) < 0) {
		if (routes)
			log_msg("learned routes: %s (keeping the ones in memory)", err.msg);
		return;
	}
	ab_routes_free(routes);
	routes = fresh;
	routes_migrate();
}

/* The uid of client c: a private daemon's one client is its user. */
static uid_t client_uid(const client *c)
{
	return c->local ? getuid() : c->uid;
}

/* The key of a learned cell: the SHA-256 of the code together with the
 * client's uid, so that a client can neither find nor probe (by running a
 * cell and reading its route_reason) what clients of other uids ran. */
static void cell_key(const char *code, uid_t uid, char out[65])
{
	char head[48];
	int n = snprintf(head, sizeof(head), "agentbox-cell uid=%u\n", (unsigned)uid);
	size_t len = strlen(code);
	char *buf = malloc((size_t)n + len);
	if (!buf) {
		/* Unscoped would be a leak; a key that matches nothing is not. */
		memset(out, 'f', 64);
		out[64] = '\0';
		return;
	}
	memcpy(buf, head, (size_t)n);
	memcpy(buf + n, code, len);
	ab_sha256_hex(buf, (size_t)n + len, out);
	free(buf);
}

static void routes_learn(const char *kind, const char *key, const char *reason)
{
	routes_refresh();
	ab_error err = {0};
	if (!routes)
		return;
	if (ab_routes_learn(routes, kind, key, reason, &err) < 0 ||
	    ab_routes_save(routes, routes_path, &err) < 0)
		log_msg("could not learn route %s %s: %s", kind, key, err.msg);
}

int pending_set(pending_run *p, call *k, const char *code, double timeout, const char *reason)
{
	memset(p, 0, sizeof(*p));
	p->code = strdup(code);
	if (!p->code) {
		call_fail(k, NULL, ERR_RESOURCES, "out of memory", NULL);
		return -ENOMEM;
	}
	p->k = k;
	p->timeout = timeout;
	p->since_ns = now_ns();
	p->call_start_ns = p->since_ns;
	p->attempt = 1;
	snprintf(p->reason, sizeof(p->reason), "%s", reason);
	return 0;
}

/* Forgets p; its call, if any, must have been finished or handed on. */
void pending_clear(pending_run *p)
{
	free(p->code);
	memset(p, 0, sizeof(*p));
}

/* Finishes the call waiting in p with result (stolen) and forgets p. */
static void pending_done(pending_run *p, json_t *result)
{
	call *k = p->k;
	p->k = NULL;
	if (k)
		call_done(k, result);
	else
		json_decref(result);
	pending_clear(p);
}

/* ---------------------------------------------------------------- routing */

/* The tier of a cell of client uid for an auto session in nano, with the
 * reason. */
static enum tier decide(const char *code, uid_t uid, char reason[300])
{
	routes_refresh();
	ab_route r;
	ab_router_route(code, strlen(code), routes ? ab_routes_modules(routes) : NULL, &r);
	snprintf(reason, 300, "%s", r.reason);
	if (r.tier == AB_ROUTE_HEAVY)
		return TIER_HEAVY;
	char digest[65];
	cell_key(code, uid, digest);
	const char *why = routes ? ab_routes_cell(routes, digest) : NULL;
	if (why) {
		snprintf(reason, 300, "learned: this cell needed heavy before (%.200s)", why);
		return TIER_HEAVY;
	}
	return TIER_NANO;
}

enum tier route_stateless(const char *code, const client *c, char reason[300])
{
	if (D.pool_target[TIER_NANO] < 0) {
		snprintf(reason, 300, "auto: the nano tier is disabled on this daemon");
		return TIER_HEAVY;
	}
	return decide(code, client_uid(c), reason);
}

static void start_promotion(sandbox *sb, call *k, const char *code, double timeout,
			    uint64_t call_start, int attempt, const char *reason);

void route_run(sandbox *sb, call *k, const char *code, double timeout)
{
	char reason[300];
	if (!sb->tier_auto)
		snprintf(reason, sizeof(reason), "tier \"%s\" was requested", tier_name(sb->tier));
	else if (sb->tier == TIER_HEAVY)
		snprintf(reason, sizeof(reason), "%s",
			 sb->promoted[0] ? sb->promoted
			 : sb->network	 ? "auto: a network was requested, and only the heavy "
					   "tier has egress"
					 : "auto: the nano tier is disabled on this daemon");
	else if (decide(code, client_uid(k->who), reason) == TIER_HEAVY) {
		start_promotion(sb, k, code, timeout, now_ns(), 1, reason);
		return;
	}
	sandbox_run(sb, k, code, timeout, reason);
}

/* --------------------------------------------------------- tier failures */

static bool in_nano(const char *module)
{
	for (const char *const *m = ab_router_nano_modules(); *m; m++)
		if (strcmp(*m, module) == 0)
			return true;
	return false;
}

/* Did this nano result fail because of the tier? Returns "module" (key:
 * a top-level module the router wrongly thought nano has) or "cell" (key:
 * cell_key of the code for client uid), with the cause in words (for this
 * client) and its kind (*cls, one of ab_routes_causes(), for the store), or
 * NULL. */
static const char *tier_failure(json_t *r, const char *code, uid_t uid, char cause[300],
				char key[160], const char **cls)
{
	const char *status = json_string_value(json_object_get(r, "status"));
	const char *limit = json_string_value(json_object_get(r, "limit"));
	json_t *e = json_object_get(r, "error");
	const char *name = json_string_value(json_object_get(e, "name"));
	const char *value = json_string_value(json_object_get(e, "value"));
	if (!value)
		value = "";
	cell_key(code, uid, key);
	*cls = "nano's memory cap";
	if (limit && strcmp(limit, "memory") == 0) {
		snprintf(cause, 300, "%s: nano's memory cap", name ? name : "MemoryLimit");
		return "cell";
	}
	if (!status || strcmp(status, "error") != 0 || !name)
		return NULL;
	snprintf(cause, 300, "%s%s%.240s", name, *value ? ": " : "", value);
	if (strcmp(name, "ModuleNotFoundError") == 0) {
		/* "No module named 'scipy.linalg'" */
		const char *q = strchr(value, '\'');
		size_t n = q ? strcspn(q + 1, ".'") : 0;
		if (!q || n == 0 || n >= 128)
			return NULL;
		char top[128];
		memcpy(top, q + 1, n);
		top[n] = '\0';
		/* A module the router believed nano has: learn the module. One
		 * imported indirectly (pickle loading a numpy object): the cell. */
		if (!in_nano(top)) {
			*cls = "module not in nano";
			return "cell";
		}
		snprintf(key, 160, "%s", top);
		*cls = "module missing in nano";
		return "module";
	}
	if (strcmp(name, "MemoryError") == 0)
		return "cell";
	/* Refusals of the jail: seccomp answers EPERM, Landlock EACCES, the
	 * read-only file system EROFS; a user's own raise has no [Errno]. */
	int eno = 0;
	if (sscanf(value, "[Errno %d]", &eno) != 1)
		return NULL;
	*cls = eno == 30 ? "read-only in nano" : "refused by the nano jail";
	if ((strcmp(name, "PermissionError") == 0 && (eno == 1 || eno == 13)) ||
	    (strcmp(name, "OSError") == 0 && (eno == 30 || eno == 38)))
		return "cell";
	return NULL;
}

/* Did heavy do better than nano did? Then the cause is worth learning. */
static bool heavy_did_better(json_t *r, const pending_run *p)
{
	json_t *e = json_object_get(r, "error");
	const char *name = json_string_value(json_object_get(e, "name"));
	const char *value = json_string_value(json_object_get(e, "value"));
	if (!name)
		return true;
	if (strcmp(p->cause_kind, "module") == 0)
		return strcmp(name, "ModuleNotFoundError") != 0 || !value ||
		       !strstr(value, p->cause_key);
	/* p->cause starts with nano's exception name */
	size_t n = strcspn(p->cause, ":");
	return strlen(name) != n || strncmp(name, p->cause, n) != 0;
}

static void history_add(sandbox *sb, json_t *r)
{
	const char *status = json_string_value(json_object_get(r, "status"));
	if (sb->oneshot || sb->history_lost || !sb->run_code || !status ||
	    (strcmp(status, "ok") != 0 && strcmp(status, "error") != 0) || sb->run_interrupted)
		return; /* a step cut short by a limit or an interrupt is not replayed */
	size_t len = strlen(sb->run_code);
	if (!sb->history)
		sb->history = json_array();
	if (sb->history_bytes + len > HISTORY_MAX) {
		sb->history_lost = true;
		json_decref(sb->history);
		sb->history = NULL;
		return;
	}
	sb->history_bytes += len;
	json_array_append_new(sb->history, json_string(sb->run_code));
}

/* ------------------------------------------------------------- promotion */

/* The result of a call that ended before its code ran (again): status and
 * exit code, an error name and message. */
static json_t *failed_result(sandbox *sb, const pending_run *p, const char *status, int exit_code,
			     const char *name, const char *why)
{
	uint64_t now = now_ns();
	double ms = p->call_start_ns && p->call_start_ns <= now
			? (double)(now - p->call_start_ns) / 1e6
			: 0.0;
	return json_pack("{s:s, s:i, s:{s:s, s:s, s:s}, s:s, s:s, s:n, s:[], s:{s:b, s:b}, s:s, "
			 "s:i, s:s, s:s, s:b, s:b, s:i, s:n, s:f, s:o}",
			 "status", status, "exit_code", exit_code, "error", "name", name, "value",
			 why, "traceback", "", "stdout", "", "stderr", "", "value", "results",
			 "truncated", "stdout", 0, "stderr", 0, "sandbox", sb->id, "step",
			 sb->step + 1, "tier", tier_name(sb->tier), "route_reason", p->reason,
			 "promoted", 0, "interrupted", 0, "attempt", p->attempt, "limit",
			 "duration_ms", ms, "degraded", degraded_list());
}

static void promotion_end(sandbox *s, const char *why, json_t *result);

/* The promotion of session s cannot finish: its waiting run gets an error
 * result, its heavy backend is closed, and the session stays in nano. */
static void promotion_fail(sandbox *s, const char *why)
{
	promotion_end(s, why, failed_result(s, &s->pend, "error", 1, "PromotionFailed", why));
}

/* Ends the promotion of session s without completing it: result (stolen)
 * answers the waiting call. */
static void promotion_end(sandbox *s, const char *why, json_t *result)
{
	log_msg("%s: promotion to heavy failed: %s", s->id, why);
	sandbox *h = s->promote_to;
	s->promote_to = NULL;
	if (h) {
		h->promote_for = NULL;
		if (h->state != SB_CLOSING)
			sandbox_close(h);
	}
	pending_run *p = &s->pend;
	uint64_t t =
	    audit_event("sandbox.promote", s->id, s->step + 1, p->k ? p->k->who->actor : "daemon",
			json_pack("{s:s, s:s, s:s, s:s}", "from", "nano", "to", "heavy", "reason",
				  p->reason, "failed", why));
	client_learns(s->owner, t);
	pending_done(p, result);
	if (s->oneshot && s->state != SB_CLOSING)
		sandbox_close(s);
	else
		sandbox_touch(s);
}

static void start_promotion(sandbox *sb, call *k, const char *code, double timeout,
			    uint64_t call_start, int attempt, const char *reason)
{
	/* keeps the cause of a rerun, set by promote_on_result */
	pending_run keep = sb->pend;
	if (pending_set(&sb->pend, k, code, timeout, reason) < 0)
		return; /* k was failed */
	sb->pend.call_start_ns = call_start;
	sb->pend.attempt = attempt;
	sb->pend.cause_kind = keep.cause_kind;
	sb->pend.cause_class = keep.cause_class;
	memcpy(sb->pend.cause_key, keep.cause_key, sizeof(keep.cause_key));
	memcpy(sb->pend.cause, keep.cause, sizeof(keep.cause));
	if (sb->history_lost) {
		promotion_fail(sb, "the session's earlier steps are more than 16 MiB of code, "
				   "too much to replay in heavy; start a new session with "
				   "tier \"heavy\"");
		return;
	}
	if (D.shutting_down) {
		promotion_fail(sb, "the daemon is shutting down");
		return;
	}
	/* No idle timeout while the run waits, but the call's deadline: the
	 * timeout covers the promotion too (promote_stop). */
	double left = timeout - (double)(now_ns() - call_start) / 1e9;
	timer_arm(&sb->timer, left > 0.001 ? left : 0.001);
	/* The heavy pool is topped up once the promoted run is over: its
	 * refill (a fork of the heavy zygote, a warm-up cell) would compete
	 * with the replay and the run for the CPU. */
	ab_error err = {0};
	sandbox *h = sandbox_backing(sb->owner, TIER_HEAVY, &sb->limits, &err);
	if (!h) {
		char msg[400];
		snprintf(msg, sizeof(msg), "could not start a heavy sandbox: %s", err.msg);
		promotion_fail(sb, msg);
		return;
	}
	h->tier_auto = true;
	h->promote_for = sb;
	sb->promote_to = h;
	if (h->state == SB_READY)
		pending_ready(h);
}

static void replay_next(sandbox *h);

/* The backend is ready: copy the workspace, then replay. */
static void begin_replay(sandbox *h)
{
	sandbox *s = h->promote_for;
	uid_t from_uid, to_uid = 0;
	const char *from = sandbox_workspace(s, &from_uid);
	const char *to = sandbox_workspace(h, &to_uid);
	ab_error err = {0};
	int n = from && to ? copy_workspace(from, to, to_uid, (gid_t)to_uid, &err)
			   : ab_error_set(&err, -ENOENT, "a workspace is gone");
	if (n < 0) {
		char msg[400];
		snprintf(msg, sizeof(msg), "copying the workspace to heavy: %s", err.msg);
		promotion_fail(s, msg);
		return;
	}
	json_decref(h->replayed);
	h->replayed = json_pack("{s:i, s:[]}", "files_copied", n, "replayed_steps");
	h->replay_next = 0;
	replay_next(h);
}

/* Hands the session over to its heavy backend and runs the waiting code. */
static void transplant(sandbox *s, sandbox *h)
{
	char tmp[sizeof(h->id)];
	memcpy(tmp, h->id, sizeof(tmp));
	memcpy(h->id, s->id, sizeof(tmp));
	memcpy(s->id, tmp, sizeof(tmp));
	/* The heavy sandbox's egress socket was attached under its own id. */
	egress_renamed(tmp, h->id);
	h->role = ROLE_SESSION;
	h->promote_for = NULL;
	s->promote_to = NULL;
	h->oneshot = s->oneshot;
	h->idle_timeout = s->idle_timeout;
	h->step = s->step;
	/* The history goes with the session (the nano steps have no copies:
	 * the nano tier cannot fork). */
	h->tl = s->tl;
	s->tl = NULL;
	h->max_snapshots = s->max_snapshots;
	snprintf(h->promoted, sizeof(h->promoted), "promoted to heavy at step %d: %.200s",
		 s->step + 1, s->pend.reason);
	json_t *promo =
	    json_pack("{s:s, s:s, s:s, s:O, s:O, s:f}", "from", "nano", "to", "heavy", "reason",
		      s->pend.reason, "files_copied", json_object_get(h->replayed, "files_copied"),
		      "replayed_steps", json_object_get(h->replayed, "replayed_steps"),
		      "duration_ms", (double)(now_ns() - s->pend.since_ns) / 1e6);
	json_decref(h->replayed);
	h->replayed = NULL;
	client_learns(s->pend.k->who, audit_event("sandbox.promote", h->id, h->step + 1,
						  s->pend.k->who->actor, json_deep_copy(promo)));
	h->pend = s->pend;
	memset(&s->pend, 0, sizeof(s->pend));
	s->role = ROLE_RETIRED;
	sandbox_close(s);

	pending_run *p = &h->pend;
	h->run_promotion = promo;
	/* The call goes to the run; the cause stays until the result says
	 * whether to learn it. */
	sandbox_run_pending(h, p);
	p->k = NULL;
	free(p->code);
	p->code = NULL;
}

static void replay_next(sandbox *h)
{
	sandbox *s = h->promote_for;
	if (h->replay_next < json_array_size(s->history)) {
		json_t *code = json_array_get(s->history, h->replay_next++);
		sandbox_run(h, NULL, json_string_value(code), s->limits.timeout_s, "replay");
		return;
	}
	transplant(s, h);
}

void pending_ready(sandbox *sb)
{
	if (sb->replay) {
		replay_ready(sb);
		return;
	}
	if (sb->promote_for) {
		begin_replay(sb);
		return;
	}
	if (!sb->pend.k)
		return;
	/* A stateless run whose sandbox had to be started. */
	pending_run p = sb->pend;
	memset(&sb->pend, 0, sizeof(sb->pend));
	sandbox_run(sb, p.k, p.code, p.timeout, p.reason);
	p.k = NULL;
	pending_clear(&p);
}

void pending_failed(sandbox *sb, const char *why)
{
	if (sb->replay) {
		replay_failed(sb, why);
		return;
	}
	if (sb->promote_for) {
		char msg[500];
		snprintf(msg, sizeof(msg), "the heavy sandbox failed: %.400s", why);
		promotion_fail(sb->promote_for, msg);
		return;
	}
	if (sb->pend.k) {
		call *k = sb->pend.k;
		sb->pend.k = NULL;
		call_fail(k, sb->id, ERR_ISOLATION, why, NULL);
		pending_clear(&sb->pend);
	}
}

void promote_cancel(sandbox *sb)
{
	if (sb->promote_to) {
		sandbox *h = sb->promote_to;
		sb->promote_to = NULL;
		h->promote_for = NULL;
		sandbox_close(h);
	}
	if (sb->promote_for) {
		sandbox *s = sb->promote_for;
		sb->promote_for = NULL;
		s->promote_to = NULL;
		promotion_fail(s, "the heavy sandbox was closed");
	}
	if (sb->pend.k) {
		call *k = sb->pend.k;
		sb->pend.k = NULL;
		call_fail(k, sb->id, ERR_DEAD,
			  "the sandbox was closed while its run waited for the heavy tier", NULL);
	}
	pending_clear(&sb->pend);
}

bool promote_on_result(sandbox *sb, call *k, json_t *r)
{
	if (!k && sb->replay)
		return replay_result(sb, r); /* time travel (replay.c) */
	if (!k) {
		/* A replayed step of a promotion. */
		sandbox *s = sb->promote_for;
		char status[16];
		snprintf(status, sizeof(status), "%s",
			 json_string_value(json_object_get(r, "status")) ?: "?");
		json_decref(r);
		if (!s)
			return true; /* the promotion was abandoned */
		json_array_append_new(json_object_get(sb->replayed, "replayed_steps"),
				      json_string(status));
		if (strcmp(status, "ok") != 0 && strcmp(status, "error") != 0) {
			char msg[400];
			snprintf(msg, sizeof(msg),
				 "replaying step %zu of %zu in heavy ended with %s",
				 sb->replay_next, json_array_size(s->history), status);
			promotion_fail(s, msg);
			return true;
		}
		replay_next(sb);
		return true;
	}
	const char *status = json_string_value(json_object_get(r, "status"));
	bool ended = status && (strcmp(status, "ok") == 0 || strcmp(status, "error") == 0);
	if (sb->tier == TIER_HEAVY) {
		/* The rerun of a promotion: learn its cause if heavy did better.
		 * A rerun cut short (timeout, interrupt, death) shows nothing. */
		if (sb->pend.cause_kind && ended && !sb->run_interrupted &&
		    heavy_did_better(r, &sb->pend))
			routes_learn(sb->pend.cause_kind, sb->pend.cause_key, sb->pend.cause_class);
		pending_clear(&sb->pend);
		return false;
	}
	char cause[300], key[160];
	const char *cls = NULL;
	/* An interrupted run ended because the client asked, not for lack of
	 * the tier. */
	const char *kind = sb->run_interrupted ? NULL
					       : tier_failure(r, sb->run_code ? sb->run_code : "",
							      client_uid(k->who), cause, key, &cls);
	if (!kind) {
		if (sb->tier_auto)
			history_add(sb, r);
		return false;
	}
	if (!sb->tier_auto) {
		char hint[500];
		snprintf(hint, sizeof(hint),
			 "this run needs the heavy tier (%.300s); tier \"nano\" was requested, so "
			 "it was not run again in heavy: use tier \"auto\" or \"heavy\"",
			 cause);
		json_object_set_new(r, "tier_hint", json_string(hint));
		return false;
	}
	/* Run it again in heavy, as the same step; the cause is learned if
	 * heavy does better. */
	char reason[300];
	snprintf(reason, sizeof(reason), "rerun in heavy: nano failed with %.250s", cause);
	sb->step--;
	pending_run *p = &sb->pend;
	p->cause_kind = kind;
	p->cause_class = cls;
	snprintf(p->cause_key, sizeof(p->cause_key), "%s", key);
	snprintf(p->cause, sizeof(p->cause), "%s", cause);
	char *code = sb->run_code;
	sb->run_code = NULL;
	/* The output of the nano attempt was streamed: tell the client that
	 * it is superseded, and that attempt 2 follows (docs/protocol.md). */
	k->ops->rerun(k, sb->id, sb->run_attempt + 1, "heavy", reason);
	start_promotion(sb, k, code ? code : "", sb->run_timeout, sb->call_start_ns,
			sb->run_attempt + 1, reason);
	free(code);
	json_decref(r);
	return true;
}

const char *promote_stop(sandbox *s, bool timeout)
{
	pending_run *p = &s->pend;
	if (!p->k || s->state == SB_CLOSING)
		return NULL;
	bool promoting = s->promote_to != NULL;
	bool starting = !promoting && s->state == SB_STARTING;
	/* The wait for a fresh sandbox of a stateless run is not part of its
	 * timeout (it has its own startup limit), but it can be interrupted. */
	if (!promoting && (timeout || !starting))
		return NULL;
	const char *phase = promoting ? "promotion" : "starting";
	char why[300];
	json_t *r;
	if (timeout) {
		snprintf(why, sizeof(why),
			 "the run exceeded its time limit of %g s while the session was being "
			 "promoted to heavy; the session stays in nano",
			 p->timeout);
		r = failed_result(s, p, "timeout", 124, "Timeout", why);
		json_object_set_new(r, "limit", json_string("timeout"));
		json_object_set_new(r, "phase", json_string(phase));
	} else {
		snprintf(why, sizeof(why), "interrupted by the client %s",
			 promoting ? "while the session was being promoted to heavy; the session "
				     "stays in nano"
				   : "before its sandbox was ready");
		r = failed_result(s, p, "error", 1, "KeyboardInterrupt", why);
		json_object_set_new(r, "interrupted", json_true());
	}
	if (promoting) {
		promotion_end(s, why, r);
		return phase;
	}
	pending_done(p, r);
	snprintf(s->dead_reason, sizeof(s->dead_reason), "its run was interrupted");
	sandbox_close(s);
	return phase;
}

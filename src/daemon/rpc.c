/* rpc.c - JSON-RPC method dispatch (docs/protocol.md). Every parameter is
 * checked here, before any sandbox is touched, with a message that names
 * the parameter. */
#include <stdio.h>
#include <string.h>

#include "daemon.h"

typedef void (*method_fn)(conn *c, json_t *id, json_t *params);

/* The session that the request being dispatched names, for the audit
 * record of a refusal. It is set only when the named sandbox is open and
 * belongs to the requesting connection: a client that names someone
 * else's sandbox must not file refusals under that session's audit trail.
 * (Sessions the daemon closed are remembered by their owner's address,
 * which a later connection may reuse, so they are not trusted for this.)
 * The daemon is single-threaded, so one request is dispatched at a time. */
static struct {
	const conn *c;
	char id[sizeof(((sandbox *)0)->id)];
} req_session;

static void note_request_session(conn *c, json_t *params)
{
	const char *sid = json_string_value(json_object_get(params, "sandbox"));
	if (!sid)
		return;
	sandbox *sb = sandbox_find(sid, c);
	if (!sb)
		return;
	snprintf(req_session.id, sizeof(req_session.id), "%s", sb->id);
	req_session.c = c;
}

const char *rpc_request_session(const conn *c)
{
	return c && req_session.c == c ? req_session.id : NULL;
}

static const char *get_sandbox_id(conn *c, json_t *id, json_t *params, sandbox **out)
{
	json_t *v = json_object_get(params, "sandbox");
	if (!json_is_string(v)) {
		conn_error(c, id, RPC_BAD_PARAMS, "params.sandbox: expected a sandbox id string",
			   NULL);
		return NULL;
	}
	const char *sid = json_string_value(v);
	sandbox *sb = sandbox_find(sid, c);
	if (!sb) {
		char msg[400];
		const char *why = sandbox_closed_reason(sid, c);
		if (why)
			snprintf(msg, sizeof(msg), "sandbox %.64s was closed: %s", sid, why);
		else
			snprintf(msg, sizeof(msg), "no such sandbox: %.64s", sid);
		conn_error(c, id, RPC_NO_SANDBOX, msg, NULL);
		return NULL;
	}
	if (sb->state == SB_DEAD) {
		char msg[400];
		snprintf(msg, sizeof(msg), "sandbox %s is dead: %s", sb->id, sb->dead_reason);
		conn_error(c, id, RPC_DEAD, msg, NULL);
		return NULL;
	}
	*out = sb;
	return sid;
}

static json_t *layers_json(void)
{
	json_t *o = json_object();
	for (int i = 0; i < AB_LAYER__COUNT; i++) {
		const char *st = D.layers[i].present	    ? "present"
				 : (D.degraded & (1u << i)) ? "degraded"
							    : "missing";
		json_object_set_new(o, ab_layer_name((enum ab_layer)i), json_string(st));
	}
	return o;
}

static json_t *reasons_json(void)
{
	json_t *o = json_object();
	for (int i = 0; i < AB_LAYER__COUNT; i++)
		if (!D.layers[i].present)
			json_object_set_new(o, ab_layer_name((enum ab_layer)i),
					    json_string(D.layers[i].why));
	return o;
}

/* What any client may learn about the daemon: its version and pid (the
 * peer it talks to), the jail's layers, the tiers and pool sizes it was
 * configured with, and the client's own sessions. Nothing that describes
 * other clients' activity (how many sessions they hold, how much of the
 * pool they took) and no pid of another process (the zygotes). */
static void m_info(conn *c, json_t *id, json_t *params)
{
	(void)params;
	json_t *pool = json_object(), *tiers = json_array();
	for (int t = 0; t < TIER__COUNT; t++) {
		if (D.pool_target[t] < 0)
			continue;
		const char *name = tier_name((enum tier)t);
		json_array_append_new(tiers, json_string(name));
		json_object_set_new(pool, name, json_pack("{s:i}", "target", D.pool_target[t]));
	}
	int mine = 0;
	for (sandbox *s = D.sandboxes; s; s = s->next)
		if (s->owner == c && !s->pooled && !s->closing && !s->hidden)
			mine++;
	conn_reply(c, id,
		   json_pack("{s:s, s:i, s:i, s:o, s:o, s:o, s:s, s:o, s:o, s:i, s:s}", "version",
			     AGENTBOX_VERSION, "pid", (int)getpid(), "uid", (int)getuid(), "layers",
			     layers_json(), "reasons", reasons_json(), "degraded", degraded_list(),
			     "cgroup", ab_cgroup_version(), "tiers", tiers, "pool", pool,
			     "sessions", mine, "audit",
			     !audit_enabled() ? "disabled"
			     : audit_broken() ? "unavailable"
					      : "on"));
}

/* Refuses parameters the method does not know (typos must not pass). */
static bool only_known(conn *c, json_t *id, json_t *params, const char *const *known)
{
	const char *key;
	json_t *v;
	json_object_foreach(params, key, v)
	{
		bool ok = false;
		for (int i = 0; known[i]; i++)
			ok = ok || strcmp(key, known[i]) == 0;
		if (!ok) {
			char msg[160];
			snprintf(msg, sizeof(msg), "params.%.64s: unknown parameter", key);
			conn_error(c, id, RPC_BAD_PARAMS, msg, NULL);
			return false;
		}
	}
	return true;
}

/* What a new session needs: tier, limits and idle timeout. */
static bool parse_session(conn *c, json_t *id, json_t *params, const char **tier, ab_limits *lim,
			  double *idle)
{
	ab_limits_default(lim);
	*tier = "auto";
	*idle = D.idle_timeout;
	ab_error err = {0};
	json_t *t = json_object_get(params, "tier");
	if (t) {
		if (!json_is_string(t)) {
			conn_error(c, id, RPC_BAD_PARAMS, "params.tier: expected a string", NULL);
			return false;
		}
		*tier = json_string_value(t);
	}
	if (strcmp(*tier, "auto") != 0 && strcmp(*tier, "heavy") != 0 &&
	    strcmp(*tier, "nano") != 0) {
		conn_error(c, id, RPC_BAD_PARAMS,
			   "params.tier: expected \"auto\", \"heavy\" or \"nano\"", NULL);
		return false;
	}
	if (ab_limits_from_json(lim, json_object_get(params, "limits"), &err) < 0) {
		conn_error(c, id, RPC_BAD_PARAMS, err.msg, NULL);
		return false;
	}
	json_t *it = json_object_get(params, "idle_timeout");
	if (it && !json_is_null(it)) {
		if (!json_is_number(it) || json_number_value(it) < 0 ||
		    json_number_value(it) > 7 * 86400) {
			conn_error(
			    c, id, RPC_BAD_PARAMS,
			    "params.idle_timeout: expected seconds in [0, 604800] (0: never)",
			    NULL);
			return false;
		}
		*idle = json_number_value(it);
	}
	if (D.shutting_down) {
		conn_error(c, id, RPC_RESOURCES, "the daemon is shutting down", NULL);
		return false;
	}
	if (strcmp(*tier, "nano") == 0 && D.pool_target[TIER_NANO] < 0) {
		conn_error(c, id, RPC_ISOLATION,
			   "tier \"nano\" is disabled on this daemon (--nano-pool -1)",
			   json_pack("{s:s}", "tier", "nano"));
		return false;
	}
	return true;
}

/* The code of a run and its timeout (default: the session's). */
static bool parse_code(conn *c, json_t *id, json_t *params, double *timeout, const char **code)
{
	json_t *v = json_object_get(params, "code");
	if (!json_is_string(v)) {
		conn_error(c, id, RPC_BAD_PARAMS, "params.code: expected a string", NULL);
		return false;
	}
	if (json_string_length(v) > (8u << 20)) {
		conn_error(c, id, RPC_BAD_PARAMS, "params.code: longer than 8 MiB", NULL);
		return false;
	}
	if (strlen(json_string_value(v)) != json_string_length(v)) {
		conn_error(c, id, RPC_BAD_PARAMS, "params.code: contains a NUL character", NULL);
		return false;
	}
	*code = json_string_value(v);
	json_t *t = json_object_get(params, "timeout");
	if (t && !json_is_null(t)) {
		if (!json_is_number(t) || json_number_value(t) <= 0 ||
		    json_number_value(t) > 86400) {
			conn_error(c, id, RPC_BAD_PARAMS,
				   "params.timeout: expected seconds in (0, 86400]", NULL);
			return false;
		}
		*timeout = json_number_value(t);
	}
	return true;
}

/* A sandbox of this tier for client c: a ready one from the pool, or one
 * being started (create_id, if given, is answered when it is ready). The
 * pool is topped up now, or for a one-shot run once its run is over, so
 * that the refill does not compete with the run. */
/* Sessions held by c and by every socket client of c's uid, against
 * --max-sessions-per-connection and --max-sessions-per-uid. A session
 * being promoted counts once (its hidden backend is not counted), and one
 * being closed no longer counts. */
static bool session_allowed(conn *c, json_t *id)
{
	unsigned mine = 0, of_uid = 0;
	for (sandbox *s = D.sandboxes; s; s = s->next) {
		if (!s->owner || s->pooled || s->closing || s->hidden || s->retired)
			continue;
		if (s->owner == c)
			mine++;
		if (!c->is_stdio && !s->owner->is_stdio && s->owner->peer_uid == c->peer_uid)
			of_uid++;
	}
	char msg[200];
	if (mine >= D.max_sessions_per_conn) {
		snprintf(msg, sizeof(msg),
			 "too many sessions on this connection: at most %u "
			 "(--max-sessions-per-connection); close one first",
			 D.max_sessions_per_conn);
		conn_error(c, id, RPC_RESOURCES, msg,
			   json_pack("{s:s, s:I}", "limit", "sessions_per_connection", "max",
				     (json_int_t)D.max_sessions_per_conn));
		return false;
	}
	if (!c->is_stdio && of_uid >= D.max_sessions_per_uid) {
		snprintf(msg, sizeof(msg),
			 "too many sessions for uid %u: at most %u (--max-sessions-per-uid); close "
			 "one first",
			 (unsigned)c->peer_uid, D.max_sessions_per_uid);
		conn_error(c, id, RPC_RESOURCES, msg,
			   json_pack("{s:s, s:I, s:I}", "limit", "sessions_per_uid", "uid",
				     (json_int_t)c->peer_uid, "max",
				     (json_int_t)D.max_sessions_per_uid));
		return false;
	}
	return true;
}

static sandbox *new_session(conn *c, json_t *id, enum tier want, const ab_limits *lim,
			    json_t *create_id, bool tier_auto, double idle, bool oneshot)
{
	if (!session_allowed(c, id))
		return NULL;
	sandbox *sb = sandbox_from_pool(c, want, lim);
	if (sb) {
		sb->tier_auto = tier_auto;
		sb->idle_timeout = idle;
		sb->oneshot = oneshot;
		if (oneshot)
			sb->refill_after = true;
		else
			pool_refill(want);
		return sb;
	}
	ab_error err = {0};
	if (sandbox_create(c, want, lim, create_id, &sb, &err) < 0) {
		conn_error(c, id, RPC_RESOURCES, err.msg, NULL);
		return NULL;
	}
	sb->tier_auto = tier_auto;
	sb->idle_timeout = idle;
	sb->oneshot = oneshot;
	return sb;
}

static void m_create(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {"tier", "limits", "idle_timeout", NULL};
	const char *tier;
	ab_limits lim;
	double idle;
	if (!only_known(c, id, params, known) || !parse_session(c, id, params, &tier, &lim, &idle))
		return;
	bool tier_auto = strcmp(tier, "auto") == 0;
	/* An auto session starts in nano, where most steps can run. */
	enum tier want = strcmp(tier, "heavy") == 0 || (tier_auto && D.pool_target[TIER_NANO] < 0)
			     ? TIER_HEAVY
			     : TIER_NANO;
	sandbox *sb = new_session(c, id, want, &lim, id, tier_auto, idle, false);
	if (sb && sb->state == SB_READY) {
		sandbox_record_create(sb, c);
		conn_reply(c, id, sandbox_describe(sb));
		sandbox_touch(sb);
	}
	/* Otherwise the reply is sent when the sandbox is ready (or failed). */
}

/* A stateless run: a fresh sandbox (from the pool) for this one run,
 * closed after it; with tier "auto" the router picks the tier first. */
static void m_exec(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {"tier", "limits", "code", "timeout", NULL};
	const char *tier, *code;
	ab_limits lim;
	double idle;
	if (!only_known(c, id, params, known) || !parse_session(c, id, params, &tier, &lim, &idle))
		return;
	double timeout = lim.timeout_s;
	if (!parse_code(c, id, params, &timeout, &code))
		return;
	bool tier_auto = strcmp(tier, "auto") == 0;
	char reason[300];
	enum tier want;
	if (tier_auto) {
		want = route_stateless(code, c, reason);
	} else {
		want = strcmp(tier, "heavy") == 0 ? TIER_HEAVY : TIER_NANO;
		snprintf(reason, sizeof(reason), "tier \"%s\" was requested", tier);
	}
	sandbox *sb = new_session(c, id, want, &lim, NULL, tier_auto, 0, true);
	if (!sb)
		return;
	/* Its create is recorded with its run (one commit, not two). */
	sb->create_unrecorded = true;
	if (sb->state == SB_READY) {
		sandbox_run(sb, c, id, code, timeout, reason);
		return;
	}
	/* Run when the sandbox is ready (pending_ready). */
	if (pending_set(&sb->pend, c, id, code, timeout, reason) < 0) {
		conn_error(c, id, RPC_RESOURCES, "out of memory", NULL);
		pending_clear(&sb->pend);
		sandbox_close(sb);
	}
}

static void m_run(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {"sandbox", "code", "timeout", NULL};
	sandbox *sb;
	if (!only_known(c, id, params, known) || !get_sandbox_id(c, id, params, &sb))
		return;
	const char *code;
	double timeout = sb->limits.timeout_s;
	if (!parse_code(c, id, params, &timeout, &code))
		return;
	if (sb->state != SB_READY || sb->promote_to) {
		conn_error(c, id, RPC_BUSY, "the sandbox is busy with another run", NULL);
		return;
	}
	route_run(sb, c, id, code, timeout);
}

/* Stops the run of this connection named by params.request (the id of its
 * run or sandbox.run request) or params.sandbox (the session's run). */
static void m_interrupt(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {"sandbox", "request", NULL};
	if (!only_known(c, id, params, known))
		return;
	json_t *req = json_object_get(params, "request");
	json_t *sid = json_object_get(params, "sandbox");
	if (req && !json_is_string(req) && !json_is_integer(req)) {
		conn_error(c, id, RPC_BAD_PARAMS,
			   "params.request: expected the id (string or integer) of a run or "
			   "sandbox.run request",
			   NULL);
		return;
	}
	if (!req && !sid) {
		conn_error(c, id, RPC_BAD_PARAMS,
			   "params: give \"request\" (the id of the run or sandbox.run request) "
			   "or \"sandbox\"",
			   NULL);
		return;
	}
	sandbox *sb = NULL;
	if (sid && !get_sandbox_id(c, id, params, &sb))
		return;
	if (req) {
		sandbox *found = NULL;
		for (sandbox *s = D.sandboxes; s && !found; s = s->next)
			if (s->owner == c && !s->hidden && !s->closing &&
			    ((s->run_conn == c && s->run_id && json_equal(s->run_id, req)) ||
			     (s->pend.c == c && s->pend.id && json_equal(s->pend.id, req))))
				found = s;
		if (sb && found != sb)
			found = NULL;
		sb = found;
	}
	const char *phase = sb ? sandbox_interrupt(sb) : NULL;
	conn_reply(c, id,
		   json_pack("{s:o, s:b, s:o}", "sandbox", sb ? json_string(sb->id) : json_null(),
			     "interrupted", phase != NULL, "phase",
			     phase ? json_string(phase) : json_null()));
}

static void m_audit(conn *c, json_t *id, json_t *params)
{
	sandbox *sb;
	if (!get_sandbox_id(c, id, params, &sb))
		return;
	json_t *events = NULL;
	ab_error err = {0};
	if (audit_session_events(sb->id, &events, &err) < 0) {
		conn_error(c, id, RPC_AUDIT, err.msg, NULL);
		return;
	}
	conn_reply(c, id, json_pack("{s:s, s:o}", "sandbox", sb->id, "events", events));
}

static void m_close(conn *c, json_t *id, json_t *params)
{
	json_t *v = json_object_get(params, "sandbox");
	if (!json_is_string(v)) {
		conn_error(c, id, RPC_BAD_PARAMS, "params.sandbox: expected a sandbox id string",
			   NULL);
		return;
	}
	sandbox *sb = sandbox_find(json_string_value(v), c);
	if (!sb) {
		conn_error(c, id, RPC_NO_SANDBOX, "no such sandbox", NULL);
		return;
	}
	sandbox_close_reply(sb, c, id);
}

static void m_files(conn *c, json_t *id, json_t *params, int which)
{
	sandbox *sb;
	if (!get_sandbox_id(c, id, params, &sb))
		return;
	if (sb->promote_to) {
		/* The workspace is being copied to the heavy tier. */
		conn_error(c, id, RPC_BUSY, "the sandbox is busy moving to the heavy tier", NULL);
		return;
	}
	sandbox_touch(sb);
	if (which == 0)
		files_write(sb, c, id, params);
	else if (which == 1)
		files_read(sb, c, id, params);
	else
		files_list(sb, c, id, params);
}

static void m_fwrite(conn *c, json_t *id, json_t *p)
{
	m_files(c, id, p, 0);
}
static void m_fread(conn *c, json_t *id, json_t *p)
{
	m_files(c, id, p, 1);
}
static void m_flist(conn *c, json_t *id, json_t *p)
{
	m_files(c, id, p, 2);
}

static const struct {
	const char *name;
	method_fn fn;
} methods[] = {
    {"daemon.info", m_info},
    {"sandbox.create", m_create},
    {"run", m_exec},
    {"sandbox.run", m_run},
    {"sandbox.interrupt", m_interrupt},
    {"sandbox.close", m_close},
    {"sandbox.files.write", m_fwrite},
    {"sandbox.files.read", m_fread},
    {"sandbox.files.list", m_flist},
    {"sandbox.audit", m_audit},
};

static void dispatch(conn *c, json_t *req)
{
	if (!json_is_object(req)) {
		conn_error(c, NULL, RPC_INVALID,
			   json_is_array(req) ? "invalid request: batches are not supported"
					      : "invalid request: expected a JSON object",
			   NULL);
		return;
	}
	json_t *id = json_object_get(req, "id");
	if (id && !json_is_string(id) && !json_is_integer(id) && !json_is_null(id)) {
		conn_error(c, NULL, RPC_INVALID, "invalid request: id must be a string or integer",
			   NULL);
		return;
	}
	const char *ver = json_string_value(json_object_get(req, "jsonrpc"));
	if (!ver || strcmp(ver, "2.0") != 0) {
		conn_error(c, id, RPC_INVALID, "invalid request: \"jsonrpc\" must be \"2.0\"",
			   NULL);
		return;
	}
	json_t *m = json_object_get(req, "method");
	if (!json_is_string(m)) {
		conn_error(c, id, RPC_INVALID, "invalid request: \"method\" must be a string",
			   NULL);
		return;
	}
	json_t *params = json_object_get(req, "params");
	json_t *empty = NULL;
	if (!params || json_is_null(params))
		params = empty = json_object();
	if (!json_is_object(params)) {
		conn_error(c, id, RPC_BAD_PARAMS, "params must be an object", NULL);
		return;
	}
	note_request_session(c, params);
	const char *name = json_string_value(m);
	/* Fail closed: without a working audit log, nothing but daemon.info,
	 * and sandbox.close, which only takes power away. */
	if (audit_broken() && strcmp(name, "daemon.info") != 0 &&
	    strcmp(name, "sandbox.close") != 0) {
		char msg[800];
		snprintf(msg, sizeof(msg), "audit log unavailable, refusing all actions: %s",
			 audit_broken());
		conn_error(c, id, RPC_AUDIT, msg, NULL);
		json_decref(empty);
		return;
	}
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		if (strcmp(methods[i].name, name) == 0) {
			methods[i].fn(c, id, params);
			json_decref(empty);
			return;
		}
	}
	char msg[200];
	snprintf(msg, sizeof(msg), "method not found: %.100s", name);
	conn_error(c, id, RPC_NO_METHOD, msg, NULL);
	json_decref(empty);
}

void rpc_dispatch(conn *c, json_t *req)
{
	dispatch(c, req);
	req_session.c = NULL;
}

/* rpc.c - JSON-RPC method dispatch (docs/protocol.md). Every parameter is
 * checked here, before any sandbox is touched, with a message that names
 * the parameter. */
#include <stdio.h>
#include <string.h>

#include "egress/egress.h"
#include "frontend.h"

typedef void (*method_fn)(conn *c, json_t *id, json_t *params);

/* The session that the request being dispatched names, for the audit
 * record of a refusal. It is set only when the named sandbox is open and
 * belongs to the requesting connection: a client that names someone
 * else's sandbox must not file refusals under that session's audit trail.
 * (Sessions the daemon closed are remembered by their owner's address,
 * which a later connection may reuse, so they are not trusted for this.)
 * Requests are dispatched by the loop's one thread, one at a time. */
static struct {
	const conn *c;
	char id[sizeof(((sandbox *)0)->id)];
} req_session;

/* A request the engine answers later: the JSON-RPC side of a call. */
typedef struct rpc_call {
	call k;
	conn *c;
} rpc_call;

static conn *call_conn(const call *k)
{
	return ((const rpc_call *)k)->c;
}

static void rc_done(call *k, json_t *result)
{
	conn_reply(call_conn(k), k->tag, result);
}

static void rc_fail(call *k, const char *session, int code, const char *msg, json_t *data)
{
	conn *c = call_conn(k);
	if (session)
		conn_error_in(c, session, k->tag, code, msg, data);
	else
		conn_error(c, k->tag, code, msg, data);
}

/* The request a notification is about: its id, or null for a request
 * sent without one (a JSON-RPC notification, which gets no response but
 * still streams). Without this, packing the notification failed and
 * conn.c took that for out of memory, closing the connection. */
static json_t *request_of(const call *k)
{
	return k->tag ? k->tag : json_null();
}

static void rc_output(call *k, const char *session, const char *stream, json_t *data, int attempt)
{
	conn_notify(call_conn(k), "sandbox.output",
		    json_pack("{s:s, s:O, s:s, s:o, s:i}", "sandbox", session, "request",
			      request_of(k), "stream", stream, "data", data, "attempt", attempt));
}

static void rc_rerun(call *k, const char *session, int attempt, const char *tier,
		     const char *reason)
{
	conn_notify(call_conn(k), "sandbox.rerun",
		    json_pack("{s:s, s:O, s:i, s:s, s:s}", "sandbox", session, "request",
			      request_of(k), "attempt", attempt, "tier", tier, "reason", reason));
}

static size_t rc_backlog(const call *k)
{
	return conn_backlog(call_conn(k));
}

static void rc_free(call *k)
{
	free(k);
}

static const call_ops rpc_call_ops = {
    .done = rc_done,
    .fail = rc_fail,
    .output = rc_output,
    .rerun = rc_rerun,
    .backlog = rc_backlog,
    .free = rc_free,
};

/* A call for request id of c, or NULL (c has been told). */
static call *new_call(conn *c, json_t *id)
{
	rpc_call *r = calloc(1, sizeof(*r));
	if (!r) {
		conn_error(c, id, ERR_RESOURCES, "out of memory", NULL);
		return NULL;
	}
	r->c = c;
	call_init(&r->k, &rpc_call_ops, &c->cl, id);
	return &r->k;
}

static void note_request_session(conn *c, json_t *params)
{
	const char *sid = json_string_value(json_object_get(params, "sandbox"));
	if (!sid)
		return;
	sandbox *sb = engine_session(NULL, &c->cl, sid, true);
	if (!sb)
		return;
	snprintf(req_session.id, sizeof(req_session.id), "%s", sb->id);
	req_session.c = c;
}

const char *rpc_request_session(const conn *c)
{
	return c && req_session.c == c ? req_session.id : NULL;
}

/* The session params.sandbox names (open and alive), or NULL: then the
 * error was sent. */
static sandbox *get_sandbox(conn *c, json_t *id, json_t *params)
{
	json_t *v = json_object_get(params, "sandbox");
	if (!json_is_string(v)) {
		conn_error(c, id, ERR_BAD_PARAMS, "params.sandbox: expected a sandbox id string",
			   NULL);
		return NULL;
	}
	call *k = new_call(c, id);
	if (!k)
		return NULL;
	sandbox *sb = engine_session(k, &c->cl, json_string_value(v), false);
	if (sb)
		call_put(k); /* found: k was not needed */
	return sb;
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
		/* The configured size and bound, not the size now: that follows
		 * the demand of every client. */
		json_object_set_new(
		    pool, name,
		    json_pack("{s:i, s:i}", "target", D.pool_target[t], "max", D.pool_max[t]));
	}
	conn_reply(c, id,
		   json_pack("{s:s, s:i, s:i, s:o, s:o, s:o, s:s, s:o, s:o, s:i, s:s, s:s}",
			     "version", AGENTBOX_VERSION, "pid", (int)getpid(), "uid",
			     (int)getuid(), "layers", layers_json(), "reasons", reasons_json(),
			     "degraded", degraded_list(), "cgroup", ab_cgroup_version(), "tiers",
			     tiers, "pool", pool, "sessions", engine_sessions_of(&c->cl), "audit",
			     !audit_enabled() ? "disabled"
			     : audit_broken() ? "unavailable"
					      : "on",
			     "audit_mode", audit_mode_name()));
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
			conn_error(c, id, ERR_BAD_PARAMS, msg, NULL);
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
			conn_error(c, id, ERR_BAD_PARAMS, "params.tier: expected a string", NULL);
			return false;
		}
		*tier = json_string_value(t);
	}
	if (strcmp(*tier, "auto") != 0 && strcmp(*tier, "heavy") != 0 &&
	    strcmp(*tier, "nano") != 0) {
		conn_error(c, id, ERR_BAD_PARAMS,
			   "params.tier: expected \"auto\", \"heavy\" or \"nano\"", NULL);
		return false;
	}
	if (ab_limits_from_json(lim, json_object_get(params, "limits"), &err) < 0) {
		conn_error(c, id, ERR_BAD_PARAMS, err.msg, NULL);
		return false;
	}
	json_t *it = json_object_get(params, "idle_timeout");
	if (it && !json_is_null(it)) {
		if (!json_is_number(it) || json_number_value(it) < 0 ||
		    json_number_value(it) > 7 * 86400) {
			conn_error(
			    c, id, ERR_BAD_PARAMS,
			    "params.idle_timeout: expected seconds in [0, 604800] (0: never)",
			    NULL);
			return false;
		}
		*idle = json_number_value(it);
	}
	return true;
}

/* The code of a run and its timeout (default: the session's). */
static bool parse_code(conn *c, json_t *id, json_t *params, double *timeout, const char **code)
{
	json_t *v = json_object_get(params, "code");
	if (!json_is_string(v)) {
		conn_error(c, id, ERR_BAD_PARAMS, "params.code: expected a string", NULL);
		return false;
	}
	if (json_string_length(v) > (8u << 20)) {
		conn_error(c, id, ERR_BAD_PARAMS, "params.code: longer than 8 MiB", NULL);
		return false;
	}
	if (strlen(json_string_value(v)) != json_string_length(v)) {
		conn_error(c, id, ERR_BAD_PARAMS, "params.code: contains a NUL character", NULL);
		return false;
	}
	*code = json_string_value(v);
	json_t *t = json_object_get(params, "timeout");
	if (t && !json_is_null(t)) {
		if (!json_is_number(t) || json_number_value(t) <= 0 ||
		    json_number_value(t) > 86400) {
			conn_error(c, id, ERR_BAD_PARAMS,
				   "params.timeout: expected seconds in (0, 86400]", NULL);
			return false;
		}
		*timeout = json_number_value(t);
	}
	return true;
}

static void m_create(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {"tier", "limits", "idle_timeout", "network", "dlp",
					    "snapshots", NULL};
	const char *tier;
	ab_limits lim;
	double idle;
	if (!only_known(c, id, params, known) || !parse_session(c, id, params, &tier, &lim, &idle))
		return;
	json_t *network = NULL;
	ab_error err = {0};
	if (egress_parse_network(json_object_get(params, "network"), &network, &err) < 0) {
		conn_error(c, id, ERR_BAD_PARAMS, err.msg, NULL);
		return;
	}
	json_t *dlp = NULL;
	if (egress_parse_dlp(json_object_get(params, "dlp"), &dlp, &err) < 0) {
		json_decref(network);
		conn_error(c, id, ERR_BAD_PARAMS, err.msg, NULL);
		return;
	}
	json_t *snaps = json_object_get(params, "snapshots");
	if (snaps && (!json_is_integer(snaps) || json_integer_value(snaps) < 0 ||
		      json_integer_value(snaps) > 256)) {
		json_decref(network);
		json_decref(dlp);
		conn_error(c, id, ERR_BAD_PARAMS,
			   "params.snapshots: expected the most snapshots to keep, 0 (none) to 256 "
			   "(docs/time-travel.md)",
			   NULL);
		return;
	}
	call *k = new_call(c, id);
	if (k) {
		/* 0: no copies (-1 for the engine); absent: the default (0). */
		int max = !snaps ? 0 : json_integer_value(snaps) == 0 ? -1 : (int)json_integer_value(snaps);
		engine_create_opts(k, tier, &lim, idle, network, dlp, max);
	} else {
		json_decref(network);
		json_decref(dlp);
	}
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
	call *k = new_call(c, id);
	if (k)
		engine_exec(k, tier, &lim, code, timeout);
}

static void m_run(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {"sandbox", "code", "timeout", NULL};
	sandbox *sb;
	if (!only_known(c, id, params, known) || !(sb = get_sandbox(c, id, params)))
		return;
	const char *code;
	double timeout = 0; /* the session's own */
	if (!parse_code(c, id, params, &timeout, &code))
		return;
	call *k = new_call(c, id);
	if (k)
		engine_run(sb, k, code, timeout);
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
		conn_error(c, id, ERR_BAD_PARAMS,
			   "params.request: expected the id (string or integer) of a run or "
			   "sandbox.run request",
			   NULL);
		return;
	}
	if (!req && !sid) {
		conn_error(c, id, ERR_BAD_PARAMS,
			   "params: give \"request\" (the id of the run or sandbox.run request) "
			   "or \"sandbox\"",
			   NULL);
		return;
	}
	sandbox *sb = NULL;
	if (sid && !(sb = get_sandbox(c, id, params)))
		return;
	const char *phase = engine_interrupt(&c->cl, sb, req, &sb);
	conn_reply(c, id,
		   json_pack("{s:o, s:b, s:o}", "sandbox", sb ? json_string(sb->id) : json_null(),
			     "interrupted", phase != NULL, "phase",
			     phase ? json_string(phase) : json_null()));
}

/* A step number param (1 or more), or an error reply. */
static bool get_step(conn *c, json_t *id, json_t *params, const char *name, int *out)
{
	json_t *v = json_object_get(params, name);
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > INT32_MAX) {
		char msg[120];
		snprintf(msg, sizeof(msg), "params.%s: expected a step number (1 or more)", name);
		conn_error(c, id, ERR_BAD_PARAMS, msg, NULL);
		return false;
	}
	*out = (int)json_integer_value(v);
	return true;
}

/* The session params.sandbox names for a method that reads or travels its
 * history (history, rewind, inspect, diff, files at a step): the caller's
 * own, or any session when the caller is the operator (root or the
 * daemon's user, egress_is_operator), as for egress.status. A session
 * belongs to the connection that made it, so without this no second
 * process - `agentbox history` beside the agent that holds the session -
 * could debug it; the operator can read and kill every sandbox anyway.
 * The call's audit events name the caller (k->who), not the owner.
 * allow_dead: a dead session too (its snapshots may live). NULL: the
 * error was sent. */
static sandbox *history_session(conn *c, json_t *id, json_t *params, bool allow_dead)
{
	json_t *v = json_object_get(params, "sandbox");
	if (!json_is_string(v)) {
		conn_error(c, id, ERR_BAD_PARAMS, "params.sandbox: expected a sandbox id string",
			   NULL);
		return NULL;
	}
	const char *sid = json_string_value(v);
	client *as = &c->cl;
	if (!engine_session(NULL, as, sid, true) && egress_is_operator(&c->cl))
		as = NULL; /* any owner */
	sandbox *sb = engine_session(NULL, as, sid, allow_dead);
	if (sb)
		return sb;
	call *k = new_call(c, id);
	if (k)
		engine_session(k, as, sid, allow_dead); /* fails k, naming why */
	return NULL;
}

static sandbox *time_travel_session(conn *c, json_t *id, json_t *params,
				    const char *const *known)
{
	if (!only_known(c, id, params, known))
		return NULL;
	return history_session(c, id, params, true);
}

/* sandbox.fork: the caller's own session only. The fork is a new session
 * of the source's owner (replay.c), so an operator forking someone else's
 * would be handed an id it cannot use. */
static sandbox *own_session(conn *c, json_t *id, json_t *params, const char *const *known)
{
	if (!only_known(c, id, params, known))
		return NULL;
	json_t *v = json_object_get(params, "sandbox");
	if (!json_is_string(v)) {
		conn_error(c, id, ERR_BAD_PARAMS, "params.sandbox: expected a sandbox id string",
			   NULL);
		return NULL;
	}
	sandbox *sb = engine_session(NULL, &c->cl, json_string_value(v), true);
	call *k = sb ? NULL : new_call(c, id);
	if (k)
		engine_session(k, &c->cl, json_string_value(v), true); /* fails k, naming why */
	return sb;
}

static void m_history(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {"sandbox", NULL};
	sandbox *sb = time_travel_session(c, id, params, known);
	call *k = sb ? new_call(c, id) : NULL;
	if (k)
		engine_history(sb, k);
}

static void m_rewind(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {"sandbox", "step", NULL};
	int n;
	sandbox *sb = time_travel_session(c, id, params, known);
	if (!sb || !get_step(c, id, params, "step", &n))
		return;
	call *k = new_call(c, id);
	if (k)
		engine_rewind(sb, k, n);
}

static void m_inspect(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {"sandbox", "step", "expr", NULL};
	int n;
	sandbox *sb = time_travel_session(c, id, params, known);
	if (!sb || !get_step(c, id, params, "step", &n))
		return;
	json_t *e = json_object_get(params, "expr");
	if (!json_is_string(e) || strlen(json_string_value(e)) != json_string_length(e)) {
		conn_error(c, id, ERR_BAD_PARAMS,
			   "params.expr: expected a Python expression (a string without NUL)", NULL);
		return;
	}
	call *k = new_call(c, id);
	if (k)
		engine_inspect(sb, k, n, json_string_value(e));
}

static void m_diff(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {"sandbox", "a", "b", NULL};
	int a, b;
	sandbox *sb = time_travel_session(c, id, params, known);
	if (!sb || !get_step(c, id, params, "a", &a) || !get_step(c, id, params, "b", &b))
		return;
	call *k = new_call(c, id);
	if (k)
		engine_diff(sb, k, a, b);
}

static void m_fork(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {"sandbox", "step", NULL};
	int n;
	sandbox *sb = own_session(c, id, params, known);
	if (!sb || !get_step(c, id, params, "step", &n))
		return;
	call *k = new_call(c, id);
	if (k)
		engine_fork(sb, k, n);
}

static void m_audit(conn *c, json_t *id, json_t *params)
{
	sandbox *sb = get_sandbox(c, id, params);
	if (!sb)
		return;
	json_t *events = NULL;
	ab_error err = {0};
	if (audit_session_events(sb->id, &events, &err) < 0) {
		conn_error(c, id, ERR_AUDIT, err.msg, NULL);
		return;
	}
	conn_reply(c, id, json_pack("{s:s, s:o}", "sandbox", sb->id, "events", events));
}

static void m_close(conn *c, json_t *id, json_t *params)
{
	json_t *v = json_object_get(params, "sandbox");
	if (!json_is_string(v)) {
		conn_error(c, id, ERR_BAD_PARAMS, "params.sandbox: expected a sandbox id string",
			   NULL);
		return;
	}
	sandbox *sb = engine_session(NULL, &c->cl, json_string_value(v), true);
	if (!sb) {
		conn_error(c, id, ERR_NO_SANDBOX, "no such sandbox", NULL);
		return;
	}
	call *k = new_call(c, id);
	if (k)
		engine_close(sb, k);
}

static void m_files(conn *c, json_t *id, json_t *params, enum files_op op)
{
	/* The past (params.step) is read-only: the operator may read any
	 * session's, as it may inspect it. The present stays the owner's. */
	bool past = op != FILES_WRITE && json_object_get(params, "step");
	sandbox *sb = past ? history_session(c, id, params, false) : get_sandbox(c, id, params);
	call *k = sb ? new_call(c, id) : NULL;
	if (k)
		engine_files(sb, k, op, params);
}

static void m_fwrite(conn *c, json_t *id, json_t *p)
{
	m_files(c, id, p, FILES_WRITE);
}
static void m_fread(conn *c, json_t *id, json_t *p)
{
	m_files(c, id, p, FILES_READ);
}
static void m_flist(conn *c, json_t *id, json_t *p)
{
	m_files(c, id, p, FILES_LIST);
}

/* ------------------------------------------------ egress (docs/egress.md) */

/* params.key as a string of 1..max bytes without NUL: *out, or NULL when
 * absent (or null) and optional. False: the error was sent. */
static bool param_string(conn *c, json_t *id, json_t *params, const char *key, size_t max,
			 bool required, const char **out)
{
	json_t *v = json_object_get(params, key);
	*out = NULL;
	if ((!v || json_is_null(v)) && !required)
		return true;
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		char msg[200];
		snprintf(msg, sizeof(msg), "params.%s: expected a string of 1 to %zu bytes%s", key,
			 max, required ? "" : " (or null)");
		conn_error(c, id, ERR_BAD_PARAMS, msg, NULL);
		return false;
	}
	*out = json_string_value(v);
	return true;
}

/* A number in [lo, hi] under key (default def when absent). */
static bool param_number(conn *c, json_t *id, json_t *params, const char *key, double lo, double hi,
			 double def, bool integer, double *out)
{
	json_t *v = json_object_get(params, key);
	*out = def;
	if (!v || json_is_null(v))
		return true;
	if ((integer ? !json_is_integer(v) : !json_is_number(v)) || json_number_value(v) < lo ||
	    json_number_value(v) > hi) {
		char msg[200];
		snprintf(msg, sizeof(msg), "params.%s: expected %s in [%g, %g]", key,
			 integer ? "an integer" : "a number", lo, hi);
		conn_error(c, id, ERR_BAD_PARAMS, msg, NULL);
		return false;
	}
	*out = json_number_value(v);
	return true;
}

/* The session params.sandbox names for an egress method that may look at
 * any session (status, log): the caller's own, or any session when the
 * caller is the operator (with closed: any id, for the log of a sandbox
 * that is gone). *sid NULL when absent. False: error sent. */
static bool any_session(conn *c, json_t *id, json_t *params, bool closed, const char **sid)
{
	if (!param_string(c, id, params, "sandbox", 63, false, sid) || !*sid)
		return true;
	if (engine_session(NULL, &c->cl, *sid, true))
		return true;
	if (egress_is_operator(&c->cl) && (closed || engine_session(NULL, NULL, *sid, true)))
		return true;
	char msg[160];
	snprintf(msg, sizeof(msg), "no such sandbox: %.64s", *sid);
	conn_error(c, id, ERR_NO_SANDBOX, msg, NULL);
	return false;
}

static void m_egress_intent(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {"sandbox", "intent", "reason", NULL};
	sandbox *sb;
	const char *intent, *reason;
	if (!only_known(c, id, params, known))
		return;
	if (!json_object_get(params, "intent")) {
		conn_error(
		    c, id, ERR_BAD_PARAMS,
		    "params.intent: expected the name of an intent of the policy, or null to "
		    "clear it",
		    NULL);
		return;
	}
	if (!param_string(c, id, params, "intent", 64, false, &intent) ||
	    !param_string(c, id, params, "reason", 1000, false, &reason) ||
	    !(sb = get_sandbox(c, id, params)))
		return;
	call *k = new_call(c, id);
	if (k)
		egress_m_intent(k, sb->id, sb->tier == TIER_NANO, intent, reason);
}

static void m_egress_request_access(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {"sandbox", "host", "reason", "timeout", NULL};
	sandbox *sb;
	const char *host, *reason;
	double timeout;
	if (!only_known(c, id, params, known) ||
	    !param_string(c, id, params, "host", 300, true, &host) ||
	    !param_string(c, id, params, "reason", 1000, false, &reason) ||
	    !param_number(c, id, params, "timeout", 0, 3600, 30, false, &timeout) ||
	    !(sb = get_sandbox(c, id, params)))
		return;
	call *k = new_call(c, id);
	if (k)
		egress_m_request_access(k, sb->id, sb->tier == TIER_NANO, host, reason, timeout);
}

static void m_egress_pending(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {NULL};
	call *k = only_known(c, id, params, known) ? new_call(c, id) : NULL;
	if (k)
		egress_m_pending(k);
}

static void m_egress_decide(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {"id", "decision", "note", NULL};
	const char *req, *decision, *note;
	if (!only_known(c, id, params, known) ||
	    !param_string(c, id, params, "id", 40, true, &req) ||
	    !param_string(c, id, params, "note", 1000, false, &note))
		return;
	json_t *d = json_object_get(params, "decision");
	decision = json_string_value(d);
	if (!decision || (strcmp(decision, "approve") != 0 && strcmp(decision, "deny") != 0)) {
		conn_error(c, id, ERR_BAD_PARAMS,
			   "params.decision: expected \"approve\" or \"deny\"", NULL);
		return;
	}
	call *k = new_call(c, id);
	if (k)
		egress_m_decide(k, req, strcmp(decision, "approve") == 0, note);
}

static void m_egress_log(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {"sandbox", "limit", NULL};
	const char *sid;
	double limit;
	if (!only_known(c, id, params, known) ||
	    !param_number(c, id, params, "limit", 1, 1000, 100, true, &limit) ||
	    !any_session(c, id, params, true, &sid))
		return;
	if (!sid && !egress_is_operator(&c->cl)) {
		conn_error(c, id, ERR_FORBIDDEN,
			   "params.sandbox: only the operator may read every sandbox's egress log; "
			   "name one of yours",
			   NULL);
		return;
	}
	call *k = new_call(c, id);
	if (k)
		egress_m_log(k, sid, (int)limit);
}

static void m_egress_status(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {"sandbox", NULL};
	const char *sid;
	if (!only_known(c, id, params, known) || !any_session(c, id, params, false, &sid))
		return;
	call *k = new_call(c, id);
	if (k)
		egress_m_status(k, sid);
}

static void m_egress_reload(conn *c, json_t *id, json_t *params)
{
	static const char *const known[] = {NULL};
	call *k = only_known(c, id, params, known) ? new_call(c, id) : NULL;
	if (k)
		egress_m_reload(k);
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
    {"sandbox.history", m_history},
    {"sandbox.rewind", m_rewind},
    {"sandbox.inspect", m_inspect},
    {"sandbox.diff", m_diff},
    {"sandbox.fork", m_fork},
    {"egress.intent", m_egress_intent},
    {"egress.request_access", m_egress_request_access},
    {"egress.pending", m_egress_pending},
    {"egress.decide", m_egress_decide},
    {"egress.log", m_egress_log},
    {"egress.status", m_egress_status},
    {"egress.reload", m_egress_reload},
};

static void dispatch(conn *c, json_t *req)
{
	if (!json_is_object(req)) {
		conn_error(c, NULL, ERR_INVALID,
			   json_is_array(req) ? "invalid request: batches are not supported"
					      : "invalid request: expected a JSON object",
			   NULL);
		return;
	}
	json_t *id = json_object_get(req, "id");
	if (id && !json_is_string(id) && !json_is_integer(id) && !json_is_null(id)) {
		conn_error(c, NULL, ERR_INVALID, "invalid request: id must be a string or integer",
			   NULL);
		return;
	}
	const char *ver = json_string_value(json_object_get(req, "jsonrpc"));
	if (!ver || strcmp(ver, "2.0") != 0) {
		conn_error(c, id, ERR_INVALID, "invalid request: \"jsonrpc\" must be \"2.0\"",
			   NULL);
		return;
	}
	json_t *m = json_object_get(req, "method");
	if (!json_is_string(m)) {
		conn_error(c, id, ERR_INVALID, "invalid request: \"method\" must be a string",
			   NULL);
		return;
	}
	json_t *params = json_object_get(req, "params");
	json_t *empty = NULL;
	if (!params || json_is_null(params))
		params = empty = json_object();
	if (!json_is_object(params)) {
		conn_error(c, id, ERR_BAD_PARAMS, "params must be an object", NULL);
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
		conn_error(c, id, ERR_AUDIT, msg, NULL);
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
	conn_error(c, id, ERR_NO_METHOD, msg, NULL);
	json_decref(empty);
}

void rpc_dispatch(conn *c, json_t *req)
{
	dispatch(c, req);
	req_session.c = NULL;
}

/* rpc.c - JSON-RPC method dispatch (docs/protocol.md). Every parameter is
 * checked here, before any sandbox is touched, with a message that names
 * the parameter. */
#include <stdio.h>
#include <string.h>

#include "daemon.h"

typedef void (*method_fn)(conn *c, json_t *id, json_t *params);

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
		char msg[160];
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

static void m_info(conn *c, json_t *id, json_t *params)
{
	(void)params;
	json_t *pool = json_object(), *tiers = json_array(), *zpids = json_object();
	for (int t = 0; t < TIER__COUNT; t++) {
		if (D.pool_target[t] < 0)
			continue;
		int ready = 0;
		for (sandbox *s = D.sandboxes; s; s = s->next)
			if (s->pooled && s->tier == (enum tier)t && s->state == SB_READY)
				ready++;
		const char *name = tier_name((enum tier)t);
		json_array_append_new(tiers, json_string(name));
		json_object_set_new(
		    pool, name,
		    json_pack("{s:i, s:i}", "ready", ready, "target", D.pool_target[t]));
		json_object_set_new(
		    zpids, name,
		    json_integer(zygote_alive((enum tier)t) ? zygote_pid((enum tier)t) : 0));
	}
	conn_reply(c, id,
		   json_pack("{s:s, s:i, s:i, s:o, s:i, s:o, s:o, s:o, s:s, s:o, s:o, s:i, s:s}",
			     "version", AGENTBOX_VERSION, "pid", (int)getpid(), "zygote_pid",
			     zygote_alive(TIER_HEAVY) ? zygote_pid(TIER_HEAVY) : 0, "zygote_pids",
			     zpids, "uid", (int)getuid(), "layers", layers_json(), "reasons",
			     reasons_json(), "degraded", degraded_list(), "cgroup",
			     ab_cgroup_version(), "tiers", tiers, "pool", pool, "sessions",
			     D.nsessions, "audit",
			     !audit_enabled() ? "disabled"
			     : audit_broken() ? "unavailable"
					      : "on"));
}

static void m_create(conn *c, json_t *id, json_t *params)
{
	ab_limits lim;
	ab_limits_default(&lim);
	ab_error err = {0};
	const char *tier = "auto";
	json_t *t = json_object_get(params, "tier");
	if (t) {
		if (!json_is_string(t)) {
			conn_error(c, id, RPC_BAD_PARAMS, "params.tier: expected a string", NULL);
			return;
		}
		tier = json_string_value(t);
	}
	if (strcmp(tier, "auto") != 0 && strcmp(tier, "heavy") != 0 && strcmp(tier, "nano") != 0) {
		conn_error(c, id, RPC_BAD_PARAMS,
			   "params.tier: expected \"auto\", \"heavy\" or \"nano\"", NULL);
		return;
	}
	if (ab_limits_from_json(&lim, json_object_get(params, "limits"), &err) < 0) {
		conn_error(c, id, RPC_BAD_PARAMS, err.msg, NULL);
		return;
	}
	const char *known[] = {"tier", "limits", NULL};
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
			return;
		}
	}
	if (D.shutting_down) {
		conn_error(c, id, RPC_RESOURCES, "the daemon is shutting down", NULL);
		return;
	}
	bool forced = strcmp(tier, "heavy") == 0;
	enum tier want = strcmp(tier, "nano") == 0 ? TIER_NANO : TIER_HEAVY;
	if (want == TIER_NANO && D.pool_target[TIER_NANO] < 0) {
		conn_error(c, id, RPC_ISOLATION,
			   "tier \"nano\" is disabled on this daemon (--nano-pool -1)",
			   json_pack("{s:s}", "tier", "nano"));
		return;
	}
	sandbox *sb = sandbox_from_pool(c, want, &lim);
	if (sb) {
		sb->tier_forced = forced;
		sandbox_record_create(sb, c);
		conn_reply(c, id, sandbox_describe(sb));
		pool_refill(want);
		return;
	}
	if (sandbox_create(c, want, &lim, id, &sb, &err) < 0)
		conn_error(c, id, RPC_RESOURCES, err.msg, NULL);
	else
		sb->tier_forced = forced;
	/* The reply is sent when the sandbox is ready (or failed). */
}

static void m_run(conn *c, json_t *id, json_t *params)
{
	sandbox *sb;
	if (!get_sandbox_id(c, id, params, &sb))
		return;
	json_t *code = json_object_get(params, "code");
	if (!json_is_string(code)) {
		conn_error(c, id, RPC_BAD_PARAMS, "params.code: expected a string", NULL);
		return;
	}
	if (json_string_length(code) > (8u << 20)) {
		conn_error(c, id, RPC_BAD_PARAMS, "params.code: longer than 8 MiB", NULL);
		return;
	}
	double timeout = sb->limits.timeout_s;
	json_t *t = json_object_get(params, "timeout");
	if (t && !json_is_null(t)) {
		if (!json_is_number(t) || json_number_value(t) <= 0 ||
		    json_number_value(t) > 86400) {
			conn_error(c, id, RPC_BAD_PARAMS,
				   "params.timeout: expected seconds in (0, 86400]", NULL);
			return;
		}
		timeout = json_number_value(t);
	}
	if (sb->state != SB_READY) {
		conn_error(c, id, RPC_BUSY, "the sandbox is busy with another run", NULL);
		return;
	}
	sandbox_run(sb, c, id, json_string_value(code), timeout);
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
    {"sandbox.run", m_run},
    {"sandbox.close", m_close},
    {"sandbox.files.write", m_fwrite},
    {"sandbox.files.read", m_fread},
    {"sandbox.files.list", m_flist},
    {"sandbox.audit", m_audit},
};

void rpc_dispatch(conn *c, json_t *req)
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

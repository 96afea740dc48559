/* rpc_stubs.c - the daemon's world, stubbed, for fuzz_rpc.c: the event
 * loop, the audit log, zygotes and sandboxes. conn.c, rpc.c and files.c
 * are linked as they are, so every request goes through the real line
 * splitting, JSON parsing, request and parameter validation, and the files
 * API against a scratch workspace; what would start or run a sandbox
 * answers at once instead (an error for sandbox creation, a fixed result
 * for runs), so that every request is answered synchronously. */
#include <stdarg.h>
#include <string.h>

#include "daemon.h"
#include "fuzz.h"
#include "rpc_stubs.h"

daemon_state D;
struct fuzz_sandboxes fuzz_sb;

const char *tier_name(enum tier t)
{
	return t == TIER_NANO ? "nano" : "heavy";
}

void log_msg(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------- the loop */

int loop_add(loop_watch *w, int fd, uint32_t events, loop_cb cb, void *ctx)
{
	w->fd = fd;
	w->cb = cb;
	w->ctx = ctx;
	w->events = events;
	return 0;
}

int loop_mod(loop_watch *w, uint32_t events)
{
	w->events = events;
	return 0;
}

void loop_del(loop_watch *w)
{
	w->fd = -1;
}

/* ------------------------------------------------------------ the audit */

bool fuzz_audit_broken;

bool audit_enabled(void)
{
	return true;
}

const char *audit_broken(void)
{
	return fuzz_audit_broken ? "fuzz: the audit log is broken" : NULL;
}

void audit_event(const char *kind, const char *session, int64_t step, const char *actor,
		 json_t *body)
{
	(void)session;
	(void)step;
	/* Every recorded action has a kind, an actor and a body. */
	FUZZ_CHECK(kind && kind[0] && actor && actor[0]);
	FUZZ_CHECK(json_is_object(body));
	json_decref(body);
}

bool audit_holding(void)
{
	return false;
}

void audit_hold(conn *c, json_t *msg)
{
	conn_send_now(c, msg);
}

int audit_session_events(const char *session, json_t **out, ab_error *err)
{
	(void)session;
	(void)err;
	*out = json_array();
	return *out ? 0 : -ENOMEM;
}

void audit_sha256_hex(const void *data, size_t len, char out[65])
{
	(void)data;
	snprintf(out, 65, "%064zx", len);
}

/* ------------------------------------------------------ zygotes, pools */

bool zygote_alive(enum tier t)
{
	(void)t;
	return false;
}

pid_t zygote_pid(enum tier t)
{
	(void)t;
	return 0;
}

void pool_refill(enum tier tier)
{
	(void)tier;
}

json_t *degraded_list(void)
{
	return json_array();
}

/* ------------------------------------------------------------ sandboxes */

sandbox *sandbox_find(const char *id, conn *owner)
{
	(void)owner;
	if (strcmp(id, "sb-ready") == 0)
		return &fuzz_sb.ready;
	if (strcmp(id, "sb-busy") == 0)
		return &fuzz_sb.busy;
	if (strcmp(id, "sb-dead") == 0)
		return &fuzz_sb.dead;
	return NULL;
}

const char *sandbox_closed_reason(const char *id, conn *owner)
{
	(void)owner;
	return strcmp(id, "sb-closed") == 0 ? "idle for 600 s" : NULL;
}

sandbox *sandbox_from_pool(conn *owner, enum tier tier, const ab_limits *lim)
{
	(void)owner;
	(void)tier;
	(void)lim;
	return NULL;
}

int sandbox_create(conn *owner, enum tier tier, const ab_limits *lim, json_t *create_id,
		   sandbox **out, ab_error *err)
{
	(void)owner;
	(void)tier;
	(void)create_id;
	(void)out;
	/* The limits reached here were validated by rpc.c. */
	FUZZ_CHECK(lim->memory_mb >= 32 && lim->pids >= 4 && lim->timeout_s > 0);
	return ab_error_set(err, -EAGAIN, "fuzz: no sandboxes are started here");
}

static void run_result(sandbox *sb, conn *c, json_t *id, const char *code, double timeout)
{
	FUZZ_CHECK(sb && code && timeout > 0 && timeout <= 86400);
	conn_reply(c, id, json_pack("{s:s, s:i}", "status", "ok", "exit", 0));
}

void sandbox_run(sandbox *sb, conn *c, json_t *id, const char *code, double timeout,
		 const char *reason)
{
	FUZZ_CHECK(reason);
	run_result(sb, c, id, code, timeout);
}

void route_run(sandbox *sb, conn *c, json_t *id, const char *code, double timeout)
{
	run_result(sb, c, id, code, timeout);
}

enum tier route_stateless(const char *code, const conn *c, char reason[300])
{
	(void)code;
	(void)c;
	snprintf(reason, 300, "fuzz");
	return TIER_NANO;
}

int pending_set(pending_run *p, conn *c, json_t *id, const char *code, double timeout,
		const char *reason)
{
	(void)p;
	(void)c;
	(void)id;
	(void)code;
	(void)timeout;
	(void)reason;
	return -ENOMEM;
}

void pending_clear(pending_run *p)
{
	(void)p;
}

void sandbox_touch(sandbox *sb)
{
	(void)sb;
}

void sandbox_close(sandbox *sb)
{
	(void)sb;
}

void sandbox_close_reply(sandbox *sb, conn *c, json_t *id)
{
	(void)sb;
	conn_reply(c, id, json_object());
}

void sandbox_close_owned_by(conn *c)
{
	(void)c;
}

json_t *sandbox_describe(sandbox *sb)
{
	return json_pack("{s:s}", "sandbox", sb->id);
}

void sandbox_record_create(sandbox *sb, conn *c)
{
	(void)sb;
	(void)c;
}

const char *sandbox_interrupt(sandbox *sb)
{
	FUZZ_CHECK(sb);
	return NULL;
}

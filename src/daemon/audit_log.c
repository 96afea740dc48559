/* audit_log.c - the daemon's use of the audit log (docs/audit.md).
 *
 * Any part of the daemon records an action with audit_event(). Events are
 * appended to an open transaction; at the end of each loop iteration
 * audit_flush() commits them all with one fsync (group commit). While
 * events are uncommitted, every message to clients is held back, so no
 * client learns of an action before its record is durable. If the log
 * cannot be written, held responses become errors, and the daemon refuses
 * further actions: it fails closed. */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"

typedef struct held {
	conn *c;
	json_t *msg;
	struct held *next;
} held;

static ab_audit *log_;
static bool disabled = true;
static char broken[600];
static held *held_head, **held_tail = &held_head;
static char db_path[4200];

bool audit_enabled(void)
{
	return !disabled;
}

const char *audit_broken(void)
{
	return broken[0] ? broken : NULL;
}

int audit_init(const char *checkpoints, bool off, ab_error *err)
{
	disabled = off;
	if (off)
		return 0;
	char key[4200];
	snprintf(db_path, sizeof(db_path), "%s/audit.db", D.home);
	snprintf(key, sizeof(key), "%s/audit-key.pem", D.home);
	ab_audit_opts o = {.db_path = db_path, .key_path = key, .checkpoints_path = checkpoints};
	return ab_audit_open(&o, &log_, err);
}

void audit_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned int n = 0;
	if (!EVP_Digest(data ? data : "", len, md, &n, EVP_sha256(), NULL) || n != 32) {
		out[0] = '\0';
		return;
	}
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

void audit_event(const char *kind, const char *session, int64_t step, const char *actor,
		 json_t *body)
{
	if (disabled || !log_) {
		json_decref(body);
		return;
	}
	if (broken[0]) {
		json_decref(body);
		return;
	}
	if (!body) {
		/* Every caller passes a body: NULL means building it failed (out
		 * of memory). Record the action as incomplete rather than with an
		 * empty body that would read as "nothing to say"; if even that
		 * cannot be built, fail closed (docs/design/conventions.md). */
		body = json_pack("{s:b}", "record_incomplete", 1);
		if (!body) {
			snprintf(broken, sizeof(broken),
				 "out of memory: the record of a %s event could not be formed",
				 kind);
			log_msg("audit log unavailable, failing closed: %s", broken);
			return;
		}
	}
	ab_audit_event ev = {.kind = kind,
			     .session = session,
			     .step = step,
			     .actor = actor ? actor : "daemon",
			     .body = body};
	ab_error err = {0};
	if (ab_audit_append(log_, &ev, &err) < 0) {
		snprintf(broken, sizeof(broken), "%s", err.msg);
		log_msg("audit log unavailable, failing closed: %s", err.msg);
	}
	json_decref(body);
}

bool audit_holding(void)
{
	return !disabled && log_ && (ab_audit_pending(log_) > 0 || held_head);
}

static json_t *as_failure(json_t *msg);

void audit_hold(conn *c, json_t *msg)
{
	held *h = malloc(sizeof(*h));
	if (!h) {
		/* Out of memory (docs/design/conventions.md): dropping the
		 * message would leave the client waiting for a reply that never
		 * comes. Make the pending events durable now, which sends what
		 * was held before it, then send this one, in order. */
		audit_flush();
		conn_send_now(c, broken[0] ? as_failure(msg) : msg);
		return;
	}
	c->refs++;
	h->c = c;
	h->msg = msg;
	h->next = NULL;
	*held_tail = h;
	held_tail = &h->next;
}

/* A response whose action could not be recorded must not reach the client
 * as a success. */
static json_t *as_failure(json_t *msg)
{
	if (!msg)
		return NULL;
	json_t *id = json_object_get(msg, "id");
	if (!id || !json_object_get(msg, "result"))
		return msg;
	char text[800];
	snprintf(text, sizeof(text), "audit log unavailable, the action is not confirmed: %s",
		 broken);
	json_t *e = json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id, "error",
			      "code", RPC_AUDIT, "message", text);
	json_decref(msg);
	return e;
}

void audit_flush(void)
{
	if (disabled || !log_)
		return;
	if (!broken[0] && ab_audit_pending(log_) > 0) {
		ab_error err = {0};
		if (ab_audit_commit(log_, &err) < 0) {
			snprintf(broken, sizeof(broken), "%s", err.msg);
			log_msg("audit log unavailable, failing closed: %s", err.msg);
		}
	}
	held *h = held_head;
	held_head = NULL;
	held_tail = &held_head;
	while (h) {
		held *n = h->next;
		conn_send_now(h->c, broken[0] ? as_failure(h->msg) : h->msg);
		conn_put(h->c);
		free(h);
		h = n;
	}
}

static int collect(json_t *event, void *ctx)
{
	json_array_append((json_t *)ctx, event);
	return 0;
}

int audit_session_events(const char *session, json_t **out, ab_error *err)
{
	if (disabled || !log_)
		return ab_error_set(err, -ENOTSUP, "the audit log is disabled (--no-audit)");
	if (broken[0])
		return ab_error_set(err, -EIO, "audit log unavailable: %s", broken);
	if (ab_audit_pending(log_) > 0 && ab_audit_commit(log_, err) < 0) {
		snprintf(broken, sizeof(broken), "%s", err->msg);
		return -EIO;
	}
	json_t *a = json_array();
	ab_audit_filter f = {.session = session};
	int r = ab_audit_query(db_path, &f, collect, a, err);
	if (r < 0) {
		json_decref(a);
		return r;
	}
	*out = a;
	return 0;
}

void audit_shutdown(void)
{
	audit_flush();
	ab_audit_close(log_);
	log_ = NULL;
}

/* record.c - the daemon's use of the audit log (docs/audit.md), and the
 * outbox.
 *
 * Any part of the daemon records an action with audit_event(). Events are
 * appended to an open transaction and committed with one fsync for all
 * that are pending (group commit). In the default mode (durable) the
 * commit is made at the end of every loop iteration that recorded
 * something, and while events are uncommitted every message to clients is
 * held back in the outbox, so no client learns of an action before its
 * record is durable. In group mode (--audit-group-ms N, chosen by the
 * operator) messages go out at once and the commit is made at most N ms
 * after the first pending event: fewer fsyncs under load, at the price of
 * losing up to N ms of events in a crash.
 *
 * If the log cannot be written, held messages are delivered as failures
 * (the front end turns a success into an error), and the daemon refuses
 * further actions: it fails closed. */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "loop.h"
#include "record.h"

typedef struct held {
	sink *s;
	json_t *msg;
	struct held *next;
} held;

static ab_audit *log_;
static bool disabled = true;
static char broken[600];
static held *held_head, **held_tail = &held_head;
static char db_path[4200];
static enum record_mode mode_;
static unsigned group_ms_;
static uint64_t first_pending_ns; /* group mode: when the window opened */
static char mode_name[64] = "durable";

bool audit_enabled(void)
{
	return !disabled;
}

const char *audit_mode_name(void)
{
	return disabled ? "disabled" : mode_name;
}

const char *audit_broken(void)
{
	return broken[0] ? broken : NULL;
}

int audit_init(const char *home, const char *checkpoints, bool off, enum record_mode mode,
	       unsigned group_ms, ab_error *err)
{
	disabled = off;
	mode_ = mode;
	group_ms_ = group_ms;
	if (mode == RECORD_GROUP)
		snprintf(mode_name, sizeof(mode_name), "group %u ms", group_ms);
	if (off)
		return 0;
	char key[4200];
	snprintf(db_path, sizeof(db_path), "%s/audit.db", home);
	snprintf(key, sizeof(key), "%s/audit-key.pem", home);
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

static void fail_closed(const char *why)
{
	snprintf(broken, sizeof(broken), "%s", why);
	log_msg("audit log unavailable, failing closed: %s", why);
}

void audit_event(const char *kind, const char *session, int64_t step, const char *actor,
		 json_t *body)
{
	if (disabled || !log_ || broken[0]) {
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
			char why[200];
			snprintf(why, sizeof(why),
				 "out of memory: the record of a %s event could not be formed",
				 kind);
			fail_closed(why);
			return;
		}
	}
	ab_audit_event ev = {.kind = kind,
			     .session = session,
			     .step = step,
			     .actor = actor ? actor : "daemon",
			     .body = body};
	ab_error err = {0};
	if (ab_audit_pending(log_) == 0)
		first_pending_ns = now_ns();
	if (ab_audit_append(log_, &ev, &err) < 0)
		fail_closed(err.msg);
	json_decref(body);
}

/* Messages wait while events before them are not durable (durable mode). */
static bool holding(void)
{
	if (disabled || !log_)
		return false;
	if (held_head)
		return true;
	return mode_ == RECORD_DURABLE && ab_audit_pending(log_) > 0;
}

/* A message that waited for events that could then not be recorded is
 * delivered as a failure. One sent while the log was already broken was
 * not held: its request was refused or allowed (close) by the dispatcher. */
static void deliver(sink *s, json_t *msg, bool waited)
{
	s->deliver(s, msg, waited && broken[0] ? broken : NULL);
}

static void commit(void);

void outbox_send(sink *s, json_t *msg)
{
	if (!holding()) {
		deliver(s, msg, false);
		return;
	}
	held *h = malloc(sizeof(*h));
	if (!h) {
		/* Out of memory (docs/design/conventions.md): dropping the
		 * message would leave the client waiting for a reply that never
		 * comes. Make the pending events durable now, which sends what
		 * was held before it, then send this one, in order. */
		commit();
		deliver(s, msg, true);
		return;
	}
	s->hold(s);
	h->s = s;
	h->msg = msg;
	h->next = NULL;
	*held_tail = h;
	held_tail = &h->next;
}

static void commit(void)
{
	if (!broken[0] && log_ && ab_audit_pending(log_) > 0) {
		ab_error err = {0};
		if (ab_audit_commit(log_, &err) < 0)
			fail_closed(err.msg);
	}
	held *h = held_head;
	held_head = NULL;
	held_tail = &held_head;
	while (h) {
		held *n = h->next;
		deliver(h->s, h->msg, true);
		h->s->release(h->s);
		free(h);
		h = n;
	}
}

int audit_due_ms(void)
{
	if (disabled || !log_ || ab_audit_pending(log_) == 0)
		return -1;
	if (mode_ == RECORD_DURABLE)
		return 0;
	uint64_t due = first_pending_ns + (uint64_t)group_ms_ * 1000000ull, now = now_ns();
	return now >= due ? 0 : (int)((due - now) / 1000000ull) + 1;
}

void audit_flush(void)
{
	if (disabled || !log_)
		return;
	if (audit_due_ms() == 0 || held_head)
		commit();
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
		fail_closed(err->msg);
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
	commit();
	ab_audit_close(log_);
	log_ = NULL;
}

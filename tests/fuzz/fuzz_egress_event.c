/* fuzz_egress_event.c - what the egress sidecar tells the daemon
 * (src/daemon/egress/state.c, state_record_request): the sidecar is
 * hostile-input code, so everything it sends is untrusted.
 *
 * Input: one message as the sidecar would send it (JSON text; anything that
 * is not an object is dropped before this point, as sidecar.c does). The
 * sandbox "sb-fuzz" is attached; byte 0 even names it, odd leaves the
 * message's own sandbox. Invariants:
 *  - an event for a sandbox the daemon never attached is dropped;
 *  - a recorded egress.request carries exactly the documented fields plus
 *    "malformed" (the names of fields that were of the wrong type), every
 *    string within its bound, every number an integer in its range, and
 *    decision/scheme one of the documented values or null; an inspection's
 *    findings are at most 16 of {kind, action, part, hash}, each valid. */
#include <jansson.h>

#include "dlp.h"
#include "egress/egress.h"
#include "egress/policy.h"
#include "egress/sidecar.h"
#include "engine/engine.h"
#include "fuzz.h"
#include "loop.h"
#include "record/record.h"

/* --------------------------------------- the rest of the daemon, stubbed */

static json_t *recorded;
static int nrecorded;

uint64_t audit_event(const char *kind, const char *session, int64_t step, const char *actor,
		     json_t *body)
{
	(void)session;
	(void)step;
	(void)actor;
	if (strcmp(kind, "egress.request") == 0) {
		json_decref(recorded);
		recorded = json_incref(body);
		nrecorded++;
	}
	json_decref(body);
	return 1;
}
bool audit_enabled(void)
{
	return true;
}
const char *audit_broken(void)
{
	return NULL;
}
uint64_t audit_last_ticket(void)
{
	return 1;
}
void audit_sync(void)
{
}
void client_learns(client *cl, uint64_t ticket)
{
	(void)cl;
	(void)ticket;
}
void call_done(call *k, json_t *result)
{
	(void)k;
	json_decref(result);
}
void call_fail(call *k, const char *session, int code, const char *msg, json_t *data)
{
	(void)k;
	(void)session;
	(void)code;
	(void)msg;
	json_decref(data);
}
void log_msg(const char *fmt, ...)
{
	(void)fmt;
}
uint64_t now_ns(void)
{
	return 1000000000ull;
}
int timer_init(loop_timer *t, void (*fire)(void *), void *ctx)
{
	(void)t;
	(void)fire;
	(void)ctx;
	return 0;
}
void timer_arm(loop_timer *t, double seconds)
{
	(void)t;
	(void)seconds;
}
void timer_disarm(loop_timer *t)
{
	(void)t;
}
void timer_free(loop_timer *t)
{
	(void)t;
}
const char *egress_audit_db(void)
{
	return "/nonexistent/audit.db";
}
bool egress_enabled(void)
{
	return true;
}
bool egress_is_operator(const client *cl)
{
	(void)cl;
	return true;
}
const char *egress_why_off(void)
{
	return NULL;
}
bool sidecar_ready(void)
{
	return false;
}
void sidecar_send(json_t *msg, int fd)
{
	(void)fd;
	json_decref(msg);
}
json_t *sidecar_status(void)
{
	return json_object();
}

/* ---------------------------------------------------------------- harness */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	ab_error err = {0};
	json_t *pol = eg_policy_default();
	if (!pol || state_init(pol, NULL, &err) < 0)
		abort();
	int fd = dup(2);
	egress_attach("sb-fuzz", fd);
	return 0;
}

static void check_bounded(json_t *body, const char *key, size_t max, bool nullable)
{
	json_t *v = json_object_get(body, key);
	FUZZ_CHECK(v != NULL);
	if (json_is_null(v)) {
		FUZZ_CHECK(nullable || json_array_size(json_object_get(body, "malformed")) > 0);
		return;
	}
	FUZZ_CHECK(json_is_string(v) && json_string_length(v) <= max);
}

static void check_int(json_t *body, const char *key, json_int_t max)
{
	json_t *v = json_object_get(body, key);
	FUZZ_CHECK(v != NULL);
	FUZZ_CHECK(json_is_null(v) ||
		   (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= max));
}

static void check_enum(json_t *body, const char *key, const char *const *choices)
{
	json_t *v = json_object_get(body, key);
	FUZZ_CHECK(v != NULL);
	if (json_is_null(v))
		return;
	bool ok = false;
	for (int i = 0; choices[i]; i++)
		ok = ok || (json_is_string(v) && strcmp(json_string_value(v), choices[i]) == 0);
	FUZZ_CHECK(ok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	json_t *m = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(m)) {
		json_decref(m);
		return 0;
	}
	bool ours = (data[0] & 1) == 0;
	if (ours)
		json_object_set_new(m, "sandbox", json_string("sb-fuzz"));
	const char *sid = json_string_value(json_object_get(m, "sandbox"));
	bool known = sid && strcmp(sid, "sb-fuzz") == 0;
	int before = nrecorded;
	state_record_request(m);
	json_decref(m);
	if (!known) {
		FUZZ_CHECK(nrecorded == before);
		return 0;
	}
	FUZZ_CHECK(nrecorded == before + 1);
	json_t *b = recorded;
	static const char *const keys[] = {
	    "sandbox", "intent", "scheme",   "host",     "addr",	   "port",	 "method",
	    "path",    "status", "bytes_out", "bytes_in", "decision", "rule",	 "reason",
	    "inspection", "ms",	 "malformed", NULL,
	};
	const char *k;
	json_t *v;
	json_object_foreach(b, k, v)
	{
		bool listed = false;
		for (int i = 0; keys[i]; i++)
			listed = listed || strcmp(k, keys[i]) == 0;
		FUZZ_CHECK(listed);
	}
	FUZZ_CHECK(strcmp(json_string_value(json_object_get(b, "sandbox")), "sb-fuzz") == 0);
	check_bounded(b, "host", EG_HOST_MAX, false);
	check_bounded(b, "method", 32, false);
	check_bounded(b, "path", 2048, false);
	check_bounded(b, "intent", EG_NAME_MAX, true);
	check_bounded(b, "addr", 64, true);
	check_bounded(b, "rule", 128, true);
	check_bounded(b, "reason", 512, true);
	check_int(b, "port", 65535);
	check_int(b, "status", 999);
	static const char *const schemes[] = {"http", "https", NULL};
	static const char *const decisions[] = {"allow", "deny", "report", NULL};
	check_enum(b, "scheme", schemes);
	check_enum(b, "decision", decisions);
	json_t *bad = json_object_get(b, "malformed");
	FUZZ_CHECK(!bad || json_is_array(bad));
	/* An inspection's findings: at most 16, each a known detector, an
	 * action, a part and a salted hash, nothing else (never a value). */
	json_t *found = json_object_get(json_object_get(b, "inspection"), "findings");
	FUZZ_CHECK(!found || (json_is_array(found) && json_array_size(found) <= 16));
	size_t i;
	json_t *f;
	json_array_foreach(found, i, f)
	{
		FUZZ_CHECK(json_object_size(f) == 4);
		FUZZ_CHECK(dlp_detector_index(json_string_value(json_object_get(f, "kind"))) >= 0);
		FUZZ_CHECK(dlp_action_parse(json_string_value(json_object_get(f, "action"))) !=
			   DLP_ACTION_UNSET);
		const char *h = json_string_value(json_object_get(f, "hash"));
		FUZZ_CHECK(h && strlen(h) == DLP_HASH_LEN && strncmp(h, "hmac-sha256:", 12) == 0);
	}
	return 0;
}

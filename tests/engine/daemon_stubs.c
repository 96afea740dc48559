/* daemon_stubs.c - the stubs of daemon_stubs.h: the parts of agentboxd
 * that the engine and the JSON-RPC front end call, other than the backend
 * (fake_backend.c). */
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "backend/backend.h"
#include "daemon_stubs.h"
#include "egress/egress.h"
#include "engine/engine.h"

daemon_config D;
char stub_last_log[1024];

void log_msg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(stub_last_log, sizeof(stub_last_log), fmt, ap);
	va_end(ap);
	if (getenv("AB_ENGINE_LOG"))
		fprintf(stderr, "log: %s\n", stub_last_log);
}

/* ---------------------------------------------------------------- loop */

int loop_init(void)
{
	return 0;
}

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

int loop_run_once(int timeout_ms)
{
	(void)timeout_ms;
	return 0;
}

static uint64_t clock_ns = 1000ull * 1000000000ull;

uint64_t now_ns(void)
{
	return clock_ns;
}

void stub_clock_advance(double seconds)
{
	clock_ns += (uint64_t)(seconds * 1e9);
}

/* Timers: the state of each lives here, keyed by its address. */
typedef struct stub_timer {
	loop_timer *t;
	bool armed;
	double seconds;
	struct stub_timer *next;
} stub_timer;
static stub_timer *timers;

static stub_timer *find_timer(const loop_timer *t)
{
	for (stub_timer *s = timers; s; s = s->next)
		if (s->t == t)
			return s;
	return NULL;
}

int timer_init(loop_timer *t, void (*fire)(void *), void *ctx)
{
	stub_timer *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	t->w.fd = -1;
	t->fire = fire;
	t->ctx = ctx;
	s->t = t;
	s->next = timers;
	timers = s;
	return 0;
}

void timer_arm(loop_timer *t, double seconds)
{
	stub_timer *s = find_timer(t);
	if (!s)
		abort(); /* armed before timer_init or after timer_free */
	s->armed = true;
	s->seconds = seconds;
}

void timer_disarm(loop_timer *t)
{
	stub_timer *s = find_timer(t);
	if (!s)
		abort();
	s->armed = false;
}

void timer_free(loop_timer *t)
{
	for (stub_timer **p = &timers; *p; p = &(*p)->next)
		if ((*p)->t == t) {
			stub_timer *s = *p;
			*p = s->next;
			free(s);
			return;
		}
	abort();
}

bool stub_timer_armed(const loop_timer *t, double *seconds)
{
	stub_timer *s = find_timer(t);
	if (s && seconds)
		*seconds = s->seconds;
	return s && s->armed;
}

bool stub_timer_fire(loop_timer *t)
{
	stub_timer *s = find_timer(t);
	if (!s || !s->armed)
		return false;
	s->armed = false;
	t->fire(t->ctx);
	return true;
}

int stub_fire_all_timers(void)
{
	/* Firing one may free or create others: collect first, and check
	 * each is still there and armed before firing it. */
	loop_timer *due[256];
	int n = 0, fired = 0;
	for (stub_timer *s = timers; s && n < 256; s = s->next)
		if (s->armed)
			due[n++] = s->t;
	for (int i = 0; i < n; i++)
		fired += stub_timer_fire(due[i]);
	return fired;
}

/* -------------------------------------------------------------- record */

json_t *stub_audit;
bool stub_audit_broken;

bool audit_enabled(void)
{
	return true;
}

const char *audit_mode_name(void)
{
	return "durable";
}

const char *audit_broken(void)
{
	return stub_audit_broken ? "stub: the audit log is broken" : NULL;
}

static uint64_t tickets;

uint64_t audit_event(const char *kind, const char *session, int64_t step, const char *actor,
		     json_t *body)
{
	if (!stub_audit)
		stub_audit = json_array();
	json_array_append_new(stub_audit, json_pack("{s:s?, s:s?, s:I, s:s?, s:o?}", "kind", kind,
						    "session", session, "step", (json_int_t)step,
						    "actor", actor, "body", body));
	return ++tickets;
}

uint64_t audit_last_ticket(void)
{
	return tickets;
}

void audit_sync(void) {}

int stub_audit_find(const char *kind, const char *session, int64_t step)
{
	size_t i;
	json_t *e;
	json_array_foreach(stub_audit, i, e)
	{
		const char *k = json_string_value(json_object_get(e, "kind"));
		const char *s = json_string_value(json_object_get(e, "session"));
		if (!k || strcmp(k, kind) != 0)
			continue;
		if (session && (!s || strcmp(s, session) != 0))
			continue;
		if (step >= 0 && json_integer_value(json_object_get(e, "step")) != step)
			continue;
		return (int)i;
	}
	return -1;
}

int stub_audit_count(const char *kind)
{
	int n = 0;
	size_t i;
	json_t *e;
	json_array_foreach(stub_audit, i, e)
	{
		const char *k = json_string_value(json_object_get(e, "kind"));
		n += k && strcmp(k, kind) == 0;
	}
	return n;
}

void stub_audit_clear(void)
{
	json_decref(stub_audit);
	stub_audit = NULL;
}

void audit_flush(void) {}

int audit_session_events(const char *session, json_t **out, ab_error *err)
{
	json_t *a = json_array();
	if (!a)
		return ab_error_set(err, -ENOMEM, "out of memory");
	size_t i;
	json_t *e;
	json_array_foreach(stub_audit, i, e)
	{
		const char *s = json_string_value(json_object_get(e, "session"));
		if (s && strcmp(s, session) == 0)
			json_array_append(a, e);
	}
	*out = a;
	return 0;
}

/* Nothing is held: every event is "durable" at once. */
void outbox_send(sink *s, json_t *msg, uint64_t need)
{
	(void)need;
	s->deliver(s, msg, NULL);
}

/* ------------------------------------------------------------- zygotes */

bool stub_zygotes_alive;

/* -------------------------------------------------------------- egress */

/* The egress module (src/daemon/egress) is not linked: what the engine and
 * the JSON-RPC front end call of it. Egress is "on" unless a test says
 * otherwise, so that sessions with network rules can be made. */
const char *stub_egress_off;
int stub_egress_opened, stub_egress_closed;

const char *egress_why_off(void)
{
	return stub_egress_off;
}

void egress_session_open(const char *sandbox_id, json_t *rules, json_t *dlp, const char *actor)
{
	(void)sandbox_id;
	(void)rules;
	(void)dlp;
	(void)actor;
	stub_egress_opened++;
}

void egress_session_close(const char *sandbox_id)
{
	(void)sandbox_id;
	stub_egress_closed++;
}

void egress_renamed(const char *from, const char *to)
{
	(void)from;
	(void)to;
}

int egress_parse_network(json_t *v, json_t **out, ab_error *err)
{
	*out = NULL;
	if (!v || json_is_null(v) ||
	    (json_is_string(v) && strcmp(json_string_value(v), "none") == 0))
		return 0;
	if (!json_is_array(v))
		return ab_error_set(err, -EINVAL, "params.network: expected \"none\" or a list");
	if (json_array_size(v))
		*out = json_deep_copy(v);
	return 0;
}

int egress_parse_dlp(json_t *v, json_t **out, ab_error *err)
{
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_object(v))
		return ab_error_set(err, -EINVAL, "params.dlp: expected an object");
	*out = json_deep_copy(v);
	return 0;
}

bool egress_is_operator(const client *cl)
{
	return cl->local || cl->uid == 0;
}

static void egress_stub_fail(call *k)
{
	call_fail(k, NULL, ERR_ISOLATION, "stub: the egress module is not linked", NULL);
}

void egress_m_intent(call *k, const char *sandbox_id, bool nano, const char *intent,
		     const char *reason)
{
	(void)sandbox_id, (void)nano, (void)intent, (void)reason;
	egress_stub_fail(k);
}

void egress_m_request_access(call *k, const char *sandbox_id, bool nano, const char *host,
			     const char *reason, double timeout)
{
	(void)sandbox_id, (void)nano, (void)host, (void)reason, (void)timeout;
	egress_stub_fail(k);
}

void egress_m_pending(call *k)
{
	egress_stub_fail(k);
}

void egress_m_decide(call *k, const char *id, bool approve, const char *note)
{
	(void)id, (void)approve, (void)note;
	egress_stub_fail(k);
}

void egress_m_log(call *k, const char *sandbox_id, int limit)
{
	(void)sandbox_id, (void)limit;
	egress_stub_fail(k);
}

void egress_m_status(call *k, const char *sandbox_id)
{
	(void)sandbox_id;
	egress_stub_fail(k);
}

void egress_m_reload(call *k)
{
	egress_stub_fail(k);
}

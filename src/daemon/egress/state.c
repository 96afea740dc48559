/* state.c - what the egress module knows per sandbox (docs/egress.md): its
 * listening socket, its own rules, the grants of approved access requests
 * and its active intent, from which its effective policy is computed and
 * pushed to the sidecar on every change; the access requests waiting for an
 * operator; and the egress.* methods.
 *
 * Intent expiry and the deadlines of waiting requests share one timer of
 * the module's own, armed for the earliest of them, so that nothing here
 * holds a loop object per sandbox. */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "egress/egress.h"
#include "egress/policy.h"
#include "egress/sidecar.h"
#include "dlp.h"
#include "engine/engine.h"

#define REQS_MAX 1024	    /* pending access requests, in all */
#define REQS_PER_SANDBOX 16 /* of one sandbox */
#define LOG_LIMIT_MAX 1000
#define RECENT 64 /* ids detached lately, whose late events are still recorded */

typedef struct eg_sb {
	char id[32];
	int fd;			      /* the daemon's copy of its listening socket, or -1 */
	bool session;		      /* handed to a client (egress_session_open) */
	json_t *rules;		      /* its own normalized rules */
	json_t *grants;		      /* rules of its approved access requests */
	json_t *dlp;		      /* its own DLP settings, or NULL */
	char intent[EG_NAME_MAX + 1]; /* "" when none */
	uint64_t intent_until_ns;
	struct eg_sb *next;
} eg_sb;

typedef struct eg_req {
	char id[24];
	char sandbox[32];
	char host[EG_HOST_MAX + 1];
	char reason[512];
	uid_t uid;
	char actor[64];
	char requested_at[40];
	call *waiting; /* the request_access call still waiting, or NULL */
	uint64_t deadline_ns;
	struct eg_req *next;
} eg_req;

static eg_sb *sbs;
static eg_req *reqs;
static int nreqs;
static json_t *policy; /* the policy file, normalized (policy.h) */
static char policy_file[4096];
static loop_timer deadline;
static bool deadline_ok;
static char recent[RECENT][32];
static unsigned recent_next;

static void rearm(void);

/* ------------------------------------------------------------------ time */

static void iso_time(uint64_t ns_from_now, char out[40])
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t t = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + ns_from_now;
	time_t s = (time_t)(t / 1000000000ull);
	struct tm tm;
	gmtime_r(&s, &tm);
	char buf[32];
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 40, "%s.%03uZ", buf, (unsigned)(t % 1000000000ull / 1000000ull));
}

/* ------------------------------------------------------------- sandboxes */

static eg_sb *sb_find(const char *id)
{
	for (eg_sb *s = sbs; s; s = s->next)
		if (strcmp(s->id, id) == 0)
			return s;
	return NULL;
}

static eg_sb *sb_get(const char *id)
{
	eg_sb *s = sb_find(id);
	if (s)
		return s;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	snprintf(s->id, sizeof(s->id), "%s", id);
	s->fd = -1;
	s->rules = json_array();
	s->grants = json_array();
	if (!s->rules || !s->grants) {
		json_decref(s->rules);
		json_decref(s->grants);
		free(s);
		return NULL;
	}
	s->next = sbs;
	sbs = s;
	return s;
}

/* Forgets s once nothing is left of it. */
static void sb_maybe_free(eg_sb *s)
{
	if (s->fd >= 0 || s->session || s->intent[0] || json_array_size(s->grants))
		return;
	for (eg_sb **p = &sbs; *p; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			break;
		}
	json_decref(s->rules);
	json_decref(s->grants);
	json_decref(s->dlp);
	free(s);
}

static json_t *intent_def(const char *name)
{
	return json_object_get(json_object_get(policy, "intents"), name);
}

/* The effective policy of s (docs/egress.md), as of now. */
static json_t *effective(const eg_sb *s)
{
	json_t *allow = json_deep_copy(json_object_get(policy, "allow"));
	json_array_extend(allow, s->rules);
	json_array_extend(allow, s->grants);
	uint64_t now = now_ns();
	bool live = s->intent[0] && s->intent_until_ns > now;
	json_t *irules = live ? json_object_get(intent_def(s->intent), "rules") : NULL;
	json_t *idlp = live ? json_object_get(intent_def(s->intent), "dlp") : NULL;
	json_t *e = json_pack(
	    "{s:O, s:O, s:o, s:o, s:o, s:o, s:o}", "mode", json_object_get(policy, "default"),
	    "deny", json_object_get(policy, "deny"), "allow", allow, "intent",
	    live ? json_string(s->intent) : json_null(), "intent_rules",
	    irules ? json_incref(irules) : json_array(), "intent_expires_ms",
	    live ? json_integer((json_int_t)((s->intent_until_ns - now) / 1000000)) : json_null(),
	    "dlp", eg_dlp_actions(json_object_get(policy, "dlp"), s->dlp));
	if (e && idlp)
		json_object_set_new(e, "intent_dlp", eg_dlp_overrides(idlp));
	return e;
}

static void send_attach(eg_sb *s)
{
	if (s->fd < 0 || !sidecar_ready())
		return;
	json_t *m =
	    json_pack("{s:s, s:s, s:o}", "op", "attach", "sandbox", s->id, "policy", effective(s));
	sidecar_send(m, s->fd);
	json_decref(m);
}

static void push(eg_sb *s)
{
	if (s->fd < 0 || !sidecar_ready())
		return;
	json_t *m =
	    json_pack("{s:s, s:s, s:o}", "op", "policy", "sandbox", s->id, "policy", effective(s));
	sidecar_send(m, -1);
	json_decref(m);
}

static void send_detach(const char *id)
{
	json_t *m = json_pack("{s:s, s:s}", "op", "detach", "sandbox", id);
	sidecar_send(m, -1);
	json_decref(m);
}

void state_reattach_all(void)
{
	for (eg_sb *s = sbs; s; s = s->next)
		send_attach(s);
}

void egress_attach(const char *sandbox_id, int listen_fd)
{
	eg_sb *s = egress_enabled() ? sb_get(sandbox_id) : NULL;
	if (!s) {
		close(listen_fd);
		return;
	}
	if (s->fd >= 0) {
		send_detach(s->id);
		close(s->fd);
	}
	s->fd = listen_fd;
	send_attach(s);
}

void egress_detach(const char *sandbox_id)
{
	eg_sb *s = sb_find(sandbox_id);
	if (!s || s->fd < 0)
		return;
	send_detach(s->id);
	close(s->fd);
	s->fd = -1;
	snprintf(recent[recent_next++ % RECENT], sizeof(recent[0]), "%s", s->id);
	sb_maybe_free(s);
}

void egress_renamed(const char *from, const char *to)
{
	eg_sb *f = sb_find(from);
	if (!f || strcmp(from, to) == 0)
		return;
	int fd = f->fd;
	f->fd = -1;
	if (fd >= 0)
		send_detach(f->id);
	eg_sb *t = sb_get(to);
	if (t && fd >= 0) {
		if (t->fd >= 0) {
			send_detach(t->id);
			close(t->fd);
		}
		t->fd = fd;
		send_attach(t);
	} else if (fd >= 0) {
		close(fd);
	}
	sb_maybe_free(f);
}

void egress_session_open(const char *sandbox_id, json_t *rules, json_t *dlp, const char *actor)
{
	eg_sb *s = sb_get(sandbox_id);
	if (!s)
		return; /* out of memory: it keeps the policy file's rules only */
	s->session = true;
	json_array_clear(s->rules);
	json_decref(s->dlp);
	s->dlp = json_incref(dlp);
	if ((rules && json_array_size(rules)) || dlp) {
		if (rules)
			json_array_extend(s->rules, rules);
		json_t *body = json_pack("{s:s, s:o}", "action", "sandbox", "rules",
					 rules ? json_incref(rules) : json_array());
		if (body && dlp)
			json_object_set(body, "dlp", dlp);
		audit_event("egress.policy", s->id, -1, actor, body);
	}
	push(s);
}

static void req_free(eg_req *r)
{
	for (eg_req **p = &reqs; *p; p = &(*p)->next)
		if (*p == r) {
			*p = r->next;
			break;
		}
	nreqs--;
	free(r);
}

void egress_session_close(const char *sandbox_id)
{
	for (eg_req *r = reqs, *n; r; r = n) {
		n = r->next;
		if (strcmp(r->sandbox, sandbox_id) != 0)
			continue;
		audit_event("egress.access_decision", r->sandbox, -1, "daemon",
			    json_pack("{s:s, s:s, s:s, s:s}", "id", r->id, "host", r->host,
				      "decision", "withdrawn", "by", "sandbox closed"));
		if (r->waiting)
			call_fail(r->waiting, NULL, ERR_NO_SANDBOX,
				  "the sandbox was closed while its access request waited", NULL);
		req_free(r);
	}
	eg_sb *s = sb_find(sandbox_id);
	if (!s)
		return;
	s->session = false;
	s->intent[0] = '\0';
	json_array_clear(s->rules);
	json_array_clear(s->grants);
	push(s);
	sb_maybe_free(s);
	rearm();
}

/* ------------------------------------------------------------- deadlines */

static void expire_intent(eg_sb *s, const char *how, const char *actor)
{
	audit_event("egress.intent", s->id, -1, actor,
		    json_pack("{s:s, s:s}", "action", how, "intent", s->intent));
	s->intent[0] = '\0';
	push(s);
}

static json_t *req_result(const eg_req *r, const char *decision, const char *rule,
			  const char *reason)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s}", "id", r->id, "sandbox", r->sandbox,
			 "host", r->host, "decision", decision, "rule", rule, "reason", reason);
}

static void on_deadline(void *ctx)
{
	(void)ctx;
	uint64_t now = now_ns();
	for (eg_sb *s = sbs, *n; s; s = n) {
		n = s->next;
		if (s->intent[0] && s->intent_until_ns <= now) {
			expire_intent(s, "expired", "daemon");
			sb_maybe_free(s);
		}
	}
	for (eg_req *r = reqs; r; r = r->next) {
		if (!r->waiting || r->deadline_ns > now)
			continue;
		call *k = r->waiting;
		r->waiting = NULL;
		uint64_t t =
		    audit_event("egress.access_decision", r->sandbox, -1, "daemon",
				json_pack("{s:s, s:s, s:s, s:s}", "id", r->id, "host", r->host,
					  "decision", "pending", "by", "timeout"));
		client_learns(k->who, t);
		char why[200];
		snprintf(why, sizeof(why),
			 "no operator decided in time; the request stays pending (%s): an "
			 "approval later still grants it",
			 r->id);
		call_done(k, req_result(r, "pending", NULL, why));
	}
	rearm();
}

static void rearm(void)
{
	if (!deadline_ok)
		return;
	uint64_t next = UINT64_MAX;
	for (eg_sb *s = sbs; s; s = s->next)
		if (s->intent[0] && s->intent_until_ns < next)
			next = s->intent_until_ns;
	for (eg_req *r = reqs; r; r = r->next)
		if (r->waiting && r->deadline_ns < next)
			next = r->deadline_ns;
	if (next == UINT64_MAX) {
		timer_disarm(&deadline);
		return;
	}
	uint64_t now = now_ns();
	timer_arm(&deadline, next > now ? (double)(next - now) / 1e9 : 0);
}

/* ------------------------------------------------------------- set-up */

static json_t *intent_names(void)
{
	json_t *a = json_array();
	const char *name;
	json_t *v;
	json_object_foreach(json_object_get(policy, "intents"), name, v)
	    json_array_append_new(a, json_string(name));
	return a;
}

static void record_policy(const char *action, const char *actor)
{
	audit_event("egress.policy", NULL, -1, actor,
		    json_pack("{s:s, s:s?, s:O, s:O, s:O, s:o}", "action", action, "file",
			      policy_file[0] ? policy_file : NULL, "default",
			      json_object_get(policy, "default"), "deny",
			      json_object_get(policy, "deny"), "allow",
			      json_object_get(policy, "allow"), "intents", intent_names()));
}

int state_init(json_t *pol, const char *file, ab_error *err)
{
	policy = pol;
	snprintf(policy_file, sizeof(policy_file), "%s", file ? file : "");
	int r = timer_init(&deadline, on_deadline, NULL);
	if (r < 0)
		return ab_error_errno(err, r, "egress timer");
	deadline_ok = true;
	record_policy("loaded", "daemon");
	return 0;
}

void state_shutdown(void)
{
	for (eg_req *r = reqs, *n; r; r = n) {
		n = r->next;
		if (r->waiting)
			call_fail(r->waiting, NULL, ERR_RESOURCES, "the daemon is shutting down",
				  NULL);
		req_free(r);
	}
	while (sbs) {
		eg_sb *s = sbs;
		sbs = s->next;
		if (s->fd >= 0)
			close(s->fd);
		json_decref(s->rules);
		json_decref(s->grants);
		free(s);
	}
	if (deadline_ok)
		timer_free(&deadline);
	deadline_ok = false;
	json_decref(policy);
	policy = NULL;
}

/* -------------------------------------------------------- sidecar events */

/* The findings of an inspection, as the sidecar reports them: at most 16
 * of {kind, action, part, hash}, each field checked (a known detector, one
 * of the actions and parts, "hmac-sha256:" and 16 hex digits); anything
 * else is dropped, so the record never holds more than a kind and a
 * hash, whatever the sidecar says. */
static json_t *inspection_findings(json_t *v)
{
	static const char *const parts[] = {"host", "url", "header", "body", NULL};
	json_t *out = json_array();
	size_t i;
	json_t *f;
	json_array_foreach(v, i, f)
	{
		if (i >= 16)
			break;
		const char *kind = json_string_value(json_object_get(f, "kind"));
		const char *action = json_string_value(json_object_get(f, "action"));
		const char *part = json_string_value(json_object_get(f, "part"));
		const char *hash = json_string_value(json_object_get(f, "hash"));
		bool ok = kind && dlp_detector_index(kind) >= 0 && action &&
			  dlp_action_parse(action) != DLP_ACTION_UNSET && part && hash &&
			  strlen(hash) == DLP_HASH_LEN && strncmp(hash, "hmac-sha256:", 12) == 0 &&
			  strspn(hash + 12, "0123456789abcdef") == 16;
		bool part_ok = false;
		for (int p = 0; ok && parts[p]; p++)
			part_ok = part_ok || strcmp(part, parts[p]) == 0;
		if (ok && part_ok)
			json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s}", "kind", kind,
							     "action", action, "part", part,
							     "hash", hash));
	}
	return out;
}

/* A copy of string v cut to max bytes at a character boundary, or NULL. */
static json_t *bounded(json_t *v, size_t max)
{
	const char *s = json_string_value(v);
	if (!s)
		return NULL;
	size_t n = json_string_length(v);
	if (n > max) {
		n = max;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	return json_stringn(s, n);
}

static bool known_id(const char *id)
{
	/* Never "": the slots of recent[] not yet used are empty strings. */
	if (!id[0])
		return false;
	if (sb_find(id))
		return true;
	for (int i = 0; i < RECENT; i++)
		if (strcmp(recent[i], id) == 0)
			return true;
	return false;
}

void state_record_request(json_t *msg)
{
	const char *sid = json_string_value(json_object_get(msg, "sandbox"));
	if (!sid || strlen(sid) >= 32 || !known_id(sid)) {
		log_msg("egress: a request event for an unknown sandbox was dropped");
		return;
	}
	static const char *const schemes[] = {"http", "https", NULL};
	static const char *const decisions[] = {"allow", "deny", "report", NULL};
	static const struct {
		const char *key;
		char type; /* s string, n string or null, i integer, e enum, o inspection */
		size_t max;
		const char *const *choices;
	} fields[] = {
	    {"intent", 'n', EG_NAME_MAX, NULL},
	    {"scheme", 'e', 0, schemes},
	    {"host", 's', EG_HOST_MAX, NULL},
	    {"addr", 'n', 64, NULL},
	    {"port", 'i', 65535, NULL},
	    {"method", 's', 32, NULL},
	    {"path", 's', 2048, NULL},
	    {"status", 'i', 999, NULL},
	    {"bytes_out", 'i', (size_t)1 << 50, NULL},
	    {"bytes_in", 'i', (size_t)1 << 50, NULL},
	    {"decision", 'e', 0, decisions},
	    {"rule", 'n', 128, NULL},
	    {"reason", 'n', 512, NULL},
	    {"inspection", 'o', 0, NULL},
	    {"ms", 'i', (size_t)1 << 40, NULL},
	};
	json_t *body = json_pack("{s:s}", "sandbox", sid);
	json_t *bad = json_array();
	for (size_t i = 0; body && i < sizeof(fields) / sizeof(fields[0]); i++) {
		json_t *v = json_object_get(msg, fields[i].key), *out = NULL;
		switch (fields[i].type) {
		case 'n':
			if (json_is_null(v) || !v) {
				out = json_null();
				break;
			}
			/* fall through */
		case 's':
			out = bounded(v, fields[i].max);
			break;
		case 'i':
			if (json_is_number(v) && json_number_value(v) >= 0 &&
			    json_number_value(v) <= (double)fields[i].max)
				out = json_integer((json_int_t)json_number_value(v));
			break;
		case 'e':
			for (int c = 0; json_is_string(v) && fields[i].choices[c]; c++)
				if (strcmp(json_string_value(v), fields[i].choices[c]) == 0)
					out = json_string(fields[i].choices[c]);
			break;
		case 'o': {
			const char *vd = json_string_value(json_object_get(v, "verdict"));
			json_t *kinds = json_object_get(v, "kinds");
			if (!v || json_is_null(v)) {
				out = json_null();
				break;
			}
			if (!vd ||
			    (strcmp(vd, "pass") != 0 && strcmp(vd, "block") != 0 &&
			     strcmp(vd, "redact") != 0) ||
			    (kinds && (!json_is_array(kinds) || json_array_size(kinds) > 16)))
				break;
			json_t *ks = json_array();
			size_t j;
			json_t *kv;
			json_array_foreach(kinds, j, kv)
			{
				json_t *b = bounded(kv, 32);
				if (b)
					json_array_append_new(ks, b);
			}
			out = json_pack("{s:s, s:o, s:o}", "verdict", vd, "kinds", ks, "findings",
					inspection_findings(json_object_get(v, "findings")));
			break;
		}
		}
		if (!out) {
			json_array_append_new(bad, json_string(fields[i].key));
			out = json_null();
		}
		json_object_set_new(body, fields[i].key, out);
	}
	if (json_array_size(bad))
		json_object_set_new(body, "malformed", bad);
	else
		json_decref(bad);
	audit_event("egress.request", sid, -1, "egress", body);
}

/* ------------------------------------------------------------- methods */

static bool usable(call *k, const char *sandbox_id, bool nano)
{
	char msg[400];
	const char *off = egress_why_off();
	if (off) {
		snprintf(msg, sizeof(msg), "egress is unavailable on this daemon: %.300s", off);
		call_fail(k, sandbox_id, ERR_ISOLATION, msg, json_pack("{s:s}", "layer", "egress"));
		return false;
	}
	if (nano) {
		snprintf(msg, sizeof(msg),
			 "sandbox %s runs in the nano tier, which has no network; create it with "
			 "network rules or tier \"heavy\"",
			 sandbox_id);
		call_fail(k, sandbox_id, ERR_ISOLATION, msg, json_pack("{s:s}", "tier", "nano"));
		return false;
	}
	return true;
}

void egress_m_intent(call *k, const char *sandbox_id, bool nano, const char *intent,
		     const char *reason)
{
	if (!usable(k, sandbox_id, nano))
		return;
	eg_sb *s = sb_get(sandbox_id);
	if (!s) {
		call_fail(k, sandbox_id, ERR_RESOURCES, "out of memory", NULL);
		return;
	}
	if (!intent) {
		char old[EG_NAME_MAX + 1];
		snprintf(old, sizeof(old), "%s", s->intent);
		if (old[0]) {
			uint64_t t = audit_event("egress.intent", s->id, -1, k->who->actor,
						 json_pack("{s:s, s:s, s:s?}", "action", "cleared",
							   "intent", old, "reason", reason));
			client_learns(k->who, t);
			s->intent[0] = '\0';
			push(s);
			rearm();
		}
		call_done(k, json_pack("{s:s, s:n, s:s?, s:n, s:[]}", "sandbox", s->id, "intent",
				       "previous", old[0] ? old : NULL, "expires_at", "rules"));
		sb_maybe_free(s);
		return;
	}
	json_t *def = intent_def(intent);
	if (!def) {
		char msg[600];
		json_t *names = intent_names();
		char *list = json_dumps(names, JSON_COMPACT);
		json_decref(names);
		if (json_object_size(json_object_get(policy, "intents")))
			snprintf(
			    msg, sizeof(msg),
			    "params.intent: unknown intent \"%.64s\" (the policy defines %.400s)",
			    intent, list ? list : "");
		else
			snprintf(
			    msg, sizeof(msg),
			    "params.intent: unknown intent \"%.64s\" (the daemon's policy defines "
			    "no intents: see agentboxd --policy)",
			    intent);
		free(list);
		call_fail(k, sandbox_id, ERR_BAD_PARAMS, msg, NULL);
		sb_maybe_free(s);
		return;
	}
	json_int_t ttl = json_integer_value(json_object_get(def, "ttl"));
	char prev[EG_NAME_MAX + 1];
	snprintf(prev, sizeof(prev), "%s", s->intent);
	snprintf(s->intent, sizeof(s->intent), "%s", intent);
	s->intent_until_ns = now_ns() + (uint64_t)ttl * 1000000000ull;
	char until[40];
	iso_time((uint64_t)ttl * 1000000000ull, until);
	uint64_t t = audit_event("egress.intent", s->id, -1, k->who->actor,
				 json_pack("{s:s, s:s, s:s?, s:s?, s:I, s:s}", "action", "set",
					   "intent", intent, "previous", prev[0] ? prev : NULL,
					   "reason", reason, "ttl", ttl, "expires_at", until));
	client_learns(k->who, t);
	push(s);
	rearm();
	call_done(k, json_pack("{s:s, s:s, s:s?, s:s, s:I, s:O}", "sandbox", s->id, "intent",
			       intent, "previous", prev[0] ? prev : NULL, "expires_at", until,
			       "ttl", ttl, "rules", json_object_get(def, "rules")));
}

/* What covers host for s now: the rule, or NULL. */
static json_t *covering(const eg_sb *s, const char *host)
{
	json_t *r = eg_rules_match(json_object_get(policy, "allow"), host, false);
	if (!r)
		r = eg_rules_match(s->rules, host, false);
	if (!r)
		r = eg_rules_match(s->grants, host, false);
	if (!r && s->intent[0] && s->intent_until_ns > now_ns())
		r = eg_rules_match(json_object_get(intent_def(s->intent), "rules"), host, false);
	return r;
}

void egress_m_request_access(call *k, const char *sandbox_id, bool nano, const char *host,
			     const char *reason, double timeout)
{
	if (!usable(k, sandbox_id, nano))
		return;
	char h[EG_HOST_MAX + 1], msg[700];
	ab_error err = {0};
	if (eg_host_normalize(host, h, &err) < 0) {
		snprintf(msg, sizeof(msg), "params.host: %s", err.msg);
		call_fail(k, sandbox_id, ERR_BAD_PARAMS, msg, NULL);
		return;
	}
	eg_sb *s = sb_get(sandbox_id);
	eg_req *r = s ? calloc(1, sizeof(*r)) : NULL;
	if (!r) {
		call_fail(k, sandbox_id, ERR_RESOURCES, "out of memory", NULL);
		return;
	}
	unsigned char rnd[6] = {0};
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		memset(rnd, (int)nreqs, sizeof(rnd));
	snprintf(r->id, sizeof(r->id), "ar-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
		 rnd[3], rnd[4], rnd[5]);
	snprintf(r->sandbox, sizeof(r->sandbox), "%s", sandbox_id);
	snprintf(r->host, sizeof(r->host), "%s", h);
	snprintf(r->reason, sizeof(r->reason), "%s", reason ? reason : "");
	r->uid = k->who->uid;
	snprintf(r->actor, sizeof(r->actor), "%s", k->who->actor);
	iso_time(0, r->requested_at);
	uint64_t t = audit_event("egress.access_request", r->sandbox, -1, r->actor,
				 json_pack("{s:s, s:s, s:s, s:I, s:f}", "id", r->id, "host",
					   r->host, "reason", r->reason, "uid", (json_int_t)r->uid,
					   "timeout", timeout));
	client_learns(k->who, t);

	json_t *deny = eg_rules_match(json_object_get(policy, "deny"), h, true);
	json_t *cov = deny ? NULL : covering(s, h);
	if (deny || cov) {
		const char *rule = json_string_value(json_object_get(deny ? deny : cov, "id"));
		snprintf(msg, sizeof(msg), "%s by %s (host %s)", deny ? "denied" : "covered", rule,
			 json_string_value(json_object_get(deny ? deny : cov, "host")));
		t = audit_event("egress.access_decision", r->sandbox, -1, "daemon",
				json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", r->id, "host", r->host,
					  "decision", deny ? "denied" : "allowed", "by", "policy",
					  "rule", rule));
		client_learns(k->who, t);
		call_done(k, req_result(r, deny ? "denied" : "allowed", rule, msg));
		free(r);
		sb_maybe_free(s);
		return;
	}
	int mine = 0;
	for (eg_req *q = reqs; q; q = q->next)
		mine += strcmp(q->sandbox, sandbox_id) == 0;
	if (mine >= REQS_PER_SANDBOX || nreqs >= REQS_MAX) {
		snprintf(msg, sizeof(msg),
			 "too many access requests waiting for an operator (%d for this sandbox, "
			 "%d in all): wait for a decision",
			 REQS_PER_SANDBOX, REQS_MAX);
		call_fail(k, sandbox_id, ERR_RESOURCES, msg,
			  json_pack("{s:s, s:i}", "limit", "access_requests", "max",
				    mine >= REQS_PER_SANDBOX ? REQS_PER_SANDBOX : REQS_MAX));
		free(r);
		return;
	}
	r->next = reqs;
	reqs = r;
	nreqs++;
	if (timeout <= 0) {
		snprintf(msg, sizeof(msg), "waiting for an operator (agentbox egress approve %s)",
			 r->id);
		call_done(k, req_result(r, "pending", NULL, msg));
		return;
	}
	r->waiting = k;
	r->deadline_ns = now_ns() + (uint64_t)(timeout * 1e9);
	rearm();
}

static bool operator_only(call *k)
{
	if (egress_is_operator(k->who))
		return true;
	call_fail(k, NULL, ERR_FORBIDDEN,
		  "permission denied: only the operator (root or the daemon's user) may do this",
		  NULL);
	return false;
}

void egress_m_pending(call *k)
{
	if (!operator_only(k))
		return;
	json_t *a = json_array();
	for (eg_req *r = reqs; r; r = r->next)
		json_array_insert_new(a, 0,
				      json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:b}", "id", r->id,
						"sandbox", r->sandbox, "host", r->host, "reason",
						r->reason, "requested_at", r->requested_at, "uid",
						(json_int_t)r->uid, "waiting", r->waiting != NULL));
	call_done(k, json_pack("{s:o}", "requests", a));
}

void egress_m_decide(call *k, const char *id, bool approve, const char *note)
{
	if (!operator_only(k))
		return;
	eg_req *r = reqs;
	while (r && strcmp(r->id, id) != 0)
		r = r->next;
	char msg[300];
	if (!r) {
		snprintf(msg, sizeof(msg),
			 "params.id: no pending access request \"%.40s\" (decided already, or its "
			 "sandbox was closed: see egress.pending)",
			 id);
		call_fail(k, NULL, ERR_BAD_PARAMS, msg, NULL);
		return;
	}
	char rule[48] = "";
	if (approve) {
		eg_sb *s = sb_get(r->sandbox);
		snprintf(rule, sizeof(rule), "grant:%s", r->id);
		json_t *host = json_string(r->host);
		ab_error err = {0};
		json_t *g = s && json_array_size(s->grants) < EG_RULES_MAX
				? eg_rule_normalize(host, rule, "grant", NULL, &err)
				: NULL;
		json_decref(host);
		if (!g) {
			call_fail(k, NULL, ERR_RESOURCES,
				  "the sandbox holds the most grants it may (256)", NULL);
			return;
		}
		json_array_append_new(s->grants, g);
		push(s);
	}
	uint64_t t = audit_event(
	    "egress.access_decision", r->sandbox, -1, k->who->actor,
	    json_pack("{s:s, s:s, s:s, s:s, s:I, s:s?, s:s?}", "id", r->id, "host", r->host,
		      "decision", approve ? "approved" : "denied", "by", "operator", "uid",
		      (json_int_t)k->who->uid, "note", note, "rule", rule[0] ? rule : NULL));
	if (r->waiting) {
		call *w = r->waiting;
		r->waiting = NULL;
		client_learns(w->who, t);
		snprintf(msg, sizeof(msg), "%s by the operator%s%.200s",
			 approve ? "approved" : "denied", note ? ": " : "", note ? note : "");
		call_done(
		    w, req_result(r, approve ? "allowed" : "denied", rule[0] ? rule : NULL, msg));
	}
	client_learns(k->who, t);
	call_done(k, json_pack("{s:s, s:s, s:s, s:s, s:s?}", "id", r->id, "decision",
			       approve ? "approve" : "deny", "sandbox", r->sandbox, "host", r->host,
			       "rule", rule[0] ? rule : NULL));
	req_free(r);
	rearm();
}

/* The last limit egress events, kept in a ring while the log is read. */
typedef struct log_ring {
	json_t **ev;
	int limit, n, next;
} log_ring;

static int keep_egress(json_t *event, void *ctx)
{
	log_ring *lr = ctx;
	const char *kind = json_string_value(json_object_get(event, "kind"));
	if (!kind || strncmp(kind, "egress.", 7) != 0)
		return 0;
	json_decref(lr->ev[lr->next]);
	lr->ev[lr->next] = json_incref(event);
	lr->next = (lr->next + 1) % lr->limit;
	if (lr->n < lr->limit)
		lr->n++;
	return 0;
}

void egress_m_log(call *k, const char *sandbox_id, int limit)
{
	if (!audit_enabled()) {
		call_fail(k, NULL, ERR_AUDIT, "the audit log is disabled (--no-audit)", NULL);
		return;
	}
	if (limit < 1)
		limit = 1;
	if (limit > LOG_LIMIT_MAX)
		limit = LOG_LIMIT_MAX;
	/* What was recorded so far must be in the answer. */
	audit_sync();
	if (audit_broken()) {
		call_fail(k, NULL, ERR_AUDIT, audit_broken(), NULL);
		return;
	}
	log_ring lr = {.ev = calloc((size_t)limit, sizeof(json_t *)), .limit = limit};
	if (!lr.ev) {
		call_fail(k, NULL, ERR_RESOURCES, "out of memory", NULL);
		return;
	}
	ab_audit_filter f = {.session = sandbox_id};
	ab_error err = {0};
	int r = ab_audit_query(egress_audit_db(), &f, keep_egress, &lr, &err);
	json_t *a = json_array();
	for (int i = 0; i < lr.n; i++) {
		int at = (lr.next - lr.n + i + lr.limit) % lr.limit;
		json_array_append(a, lr.ev[at]);
	}
	for (int i = 0; i < limit; i++)
		json_decref(lr.ev[i]);
	free(lr.ev);
	if (r < 0) {
		json_decref(a);
		call_fail(k, NULL, ERR_AUDIT, err.msg, NULL);
		return;
	}
	call_done(k, json_pack("{s:s?, s:o}", "sandbox", sandbox_id, "events", a));
}

void egress_m_status(call *k, const char *sandbox_id)
{
	json_t *intents = json_object();
	const char *name;
	json_t *v;
	json_object_foreach(json_object_get(policy, "intents"), name, v) json_object_set_new(
	    intents, name,
	    json_pack("{s:O, s:O}", "description", json_object_get(v, "description"), "ttl",
		      json_object_get(v, "ttl")));
	const char *off = egress_why_off();
	json_t *res = json_pack("{s:b, s:s?, s:o, s:s?, s:O, s:i, s:i, s:o, s:i}", "enabled",
				off == NULL, "reason", off, "sidecar", sidecar_status(),
				"policy_file", policy_file[0] ? policy_file : NULL, "default",
				json_object_get(policy, "default"), "deny",
				(int)json_array_size(json_object_get(policy, "deny")), "allow",
				(int)json_array_size(json_object_get(policy, "allow")), "intents",
				intents, "pending", nreqs);
	if (res && sandbox_id) {
		eg_sb *s = sb_find(sandbox_id);
		eg_sb empty = {.fd = -1, .rules = json_array(), .grants = json_array()};
		snprintf(empty.id, sizeof(empty.id), "%s", sandbox_id);
		json_object_set_new(res, "sandbox", json_string(sandbox_id));
		json_object_set_new(res, "policy", effective(s ? s : &empty));
		json_object_set_new(res, "attached", json_boolean(s && s->fd >= 0));
		json_decref(empty.rules);
		json_decref(empty.grants);
	}
	call_done(k, res);
}

void egress_m_reload(call *k)
{
	if (!operator_only(k))
		return;
	if (!policy_file[0]) {
		call_fail(k, NULL, ERR_BAD_PARAMS,
			  "the daemon was started without --policy: there is no policy file to "
			  "reload",
			  NULL);
		return;
	}
	json_t *pol = NULL;
	ab_error err = {0};
	if (eg_policy_load(policy_file, &pol, &err) < 0) {
		uint64_t t = audit_event("egress.policy", NULL, -1, k->who->actor,
					 json_pack("{s:s, s:s, s:s}", "action", "reload_failed",
						   "file", policy_file, "error", err.msg));
		client_learns(k->who, t);
		char msg[700];
		snprintf(msg, sizeof(msg), "reload refused, the policy in force is unchanged: %s",
			 err.msg);
		call_fail(k, NULL, ERR_BAD_PARAMS, msg, NULL);
		return;
	}
	json_decref(policy);
	policy = pol;
	record_policy("reloaded", k->who->actor);
	for (eg_sb *s = sbs, *n; s; s = n) {
		n = s->next;
		if (s->intent[0] && !intent_def(s->intent)) {
			expire_intent(s, "cleared by reload", k->who->actor);
			sb_maybe_free(s);
			continue;
		}
		push(s);
	}
	rearm();
	client_learns(k->who, audit_last_ticket());
	call_done(k, json_pack("{s:s, s:O, s:i, s:i, s:o}", "policy_file", policy_file, "default",
			       json_object_get(policy, "default"), "deny",
			       (int)json_array_size(json_object_get(policy, "deny")), "allow",
			       (int)json_array_size(json_object_get(policy, "allow")), "intents",
			       intent_names()));
}

/* policy.c - parsing a sandbox's effective policy and deciding requests
 * (docs/egress.md, "Rules" and "The effective policy of a sandbox"). The
 * policy comes from the daemon, but it is checked as strictly as anything
 * else: a bad one is refused whole, never half-applied. */
#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "dlp.h"
#include "internal.h"
#include "policy.h"

struct eg_policy {
	atomic_int refs;
	bool report_mode;
	eg_rule *deny;
	size_t ndeny;
	eg_rule *allow;
	size_t nallow;
	char *intent;
	eg_rule *intent_rules;
	size_t nintent;
	bool intent_live; /* intent_expires_ms was a number */
	int64_t intent_deadline_ms;
	/* enum dlp_action per detector (dlp_detector_at order); UNSET: the
	 * next level decides. NULL: nothing set at that level. */
	uint8_t *dlp, *intent_dlp;
};

void eg_rule_clear(eg_rule *r)
{
	for (size_t i = 0; i < r->nmethods; i++)
		free(r->methods[i]);
	free(r->methods);
	for (size_t i = 0; i < r->npaths; i++)
		free(r->paths[i]);
	free(r->paths);
	memset(r, 0, sizeof(*r));
}

static bool host_pattern_ok(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len > EG_HOST_MAX)
		return false;
	if (strcmp(s, "*") == 0)
		return true;
	char buf[EG_HOST_MAX + 2];
	const char *name = s;
	if (strncmp(s, "*.", 2) == 0)
		name = s + 2;
	snprintf(buf, sizeof(buf), "%s", name);
	for (const char *c = name; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			return false;
	if (name[strlen(name) - 1] == '.')
		return false;
	enum eg_host_kind k = eg_host_normalize(buf);
	if (k == EG_HOST_BAD)
		return false;
	/* A wildcard over an IP literal would mean nothing: refuse it. */
	return name == s || k == EG_HOST_NAME;
}

static bool token_upper(const char *s)
{
	if (!*s || strlen(s) > 32)
		return false;
	for (const char *c = s; *c; c++)
		if (!((*c >= 'A' && *c <= 'Z') || *c == '-' || *c == '_'))
			return false;
	return true;
}

static int string_list(const json_t *v, const char *key, size_t max, size_t maxlen,
		       bool (*ok)(const char *), char ***out, size_t *n, ab_error *err)
{
	if (!json_is_array(v))
		return ab_error_set(err, -EINVAL, "rule key %s: expected a list", key);
	size_t cnt = json_array_size(v);
	if (cnt > max)
		return ab_error_set(err, -EINVAL, "rule key %s: more than %zu entries", key, max);
	char **list = calloc(cnt ? cnt : 1, sizeof(char *));
	if (!list)
		return ab_error_set(err, -ENOMEM, "rule key %s: out of memory", key);
	*out = list;
	for (size_t i = 0; i < cnt; i++) {
		const json_t *e = json_array_get(v, i);
		if (!json_is_string(e))
			return ab_error_set(err, -EINVAL, "rule key %s[%zu]: expected a string",
					    key, i);
		const char *s = json_string_value(e);
		if (strlen(s) != json_string_length(e) || strlen(s) > maxlen || !ok(s))
			return ab_error_set(err, -EINVAL, "rule key %s[%zu]: bad value", key, i);
		list[i] = strdup(s);
		if (!list[i])
			return ab_error_set(err, -ENOMEM, "rule key %s: out of memory", key);
		*n = i + 1;
	}
	return 0;
}

static bool path_ok(const char *s)
{
	if (s[0] != '/')
		return false;
	for (const char *c = s; *c; c++)
		if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '?' || *c == '#')
			return false;
	return true;
}

int eg_rule_parse(const json_t *j, eg_rule *r, ab_error *err)
{
	memset(r, 0, sizeof(*r));
	if (!json_is_object(j))
		return ab_error_set(err, -EINVAL, "rule: expected an object");
	const char *key;
	json_t *v;
	bool have_host = false, have_id = false;
	json_object_foreach((json_t *)j, key, v)
	{
		int rc = 0;
		if (strcmp(key, "id") == 0) {
			const char *s = json_string_value(v);
			if (!s || !*s || strlen(s) > EG_RULE_ID_MAX ||
			    strlen(s) != json_string_length(v))
				rc = ab_error_set(err, -EINVAL,
						  "rule key id: expected a string of "
						  "1 to %d bytes",
						  EG_RULE_ID_MAX);
			for (const char *c = s ? s : ""; !rc && *c; c++)
				if ((unsigned char)*c < 0x21 || *c == 0x7f)
					rc = ab_error_set(err, -EINVAL,
							  "rule key id: bad character");
			if (!rc) {
				snprintf(r->id, sizeof(r->id), "%s", s);
				have_id = true;
			}
		} else if (strcmp(key, "host") == 0) {
			const char *s = json_string_value(v);
			if (!s || strlen(s) != json_string_length(v) || !host_pattern_ok(s))
				rc = ab_error_set(err, -EINVAL, "rule key host: bad host pattern");
			else {
				snprintf(r->host, sizeof(r->host), "%s", s);
				have_host = true;
			}
		} else if (strcmp(key, "methods") == 0) {
			rc = string_list(v, key, EG_METHODS_MAX, 32, token_upper, &r->methods,
					 &r->nmethods, err);
		} else if (strcmp(key, "paths") == 0) {
			rc = string_list(v, key, EG_PATHS_MAX, EG_PATH_MAX, path_ok, &r->paths,
					 &r->npaths, err);
		} else if (strcmp(key, "ports") == 0) {
			if (!json_is_array(v) || json_array_size(v) > EG_PORTS_MAX ||
			    json_array_size(v) == 0)
				rc =
				    ab_error_set(err, -EINVAL,
						 "rule key ports: expected a list of 1 to %d ports",
						 EG_PORTS_MAX);
			for (size_t i = 0; !rc && i < json_array_size(v); i++) {
				const json_t *e = json_array_get(v, i);
				json_int_t p = json_integer_value(e);
				if (!json_is_integer(e) || p < 1 || p > 65535)
					rc = ab_error_set(err, -EINVAL,
							  "rule key ports[%zu]: expected 1..65535",
							  i);
				else
					r->ports[r->nports++] = (uint16_t)p;
			}
		} else if (strcmp(key, "max_bytes_out") == 0) {
			if (json_is_null(v))
				continue;
			if (!json_is_integer(v) || json_integer_value(v) < 0)
				rc = ab_error_set(err, -EINVAL,
						  "rule key max_bytes_out: expected "
						  "a non-negative integer");
			else {
				r->has_max_bytes_out = true;
				r->max_bytes_out = (uint64_t)json_integer_value(v);
			}
		} else if (strcmp(key, "websocket") == 0 || strcmp(key, "report") == 0) {
			if (!json_is_boolean(v))
				rc = ab_error_set(err, -EINVAL,
						  "rule key %s: expected true or false", key);
			else if (key[0] == 'w')
				r->websocket = json_is_true(v);
			else
				r->report = json_is_true(v);
		} else {
			rc = ab_error_set(err, -EINVAL, "rule: unknown key %.64s", key);
		}
		if (rc < 0) {
			eg_rule_clear(r);
			return rc;
		}
	}
	if (!have_host || !have_id) {
		eg_rule_clear(r);
		return ab_error_set(err, -EINVAL, "rule: no %s", have_host ? "id" : "host");
	}
	return 0;
}

static void rules_free(eg_rule *rules, size_t n)
{
	for (size_t i = 0; i < n; i++)
		eg_rule_clear(&rules[i]);
	free(rules);
}

static int rule_list(const json_t *v, const char *key, eg_rule **out, size_t *n, ab_error *err)
{
	*out = NULL;
	*n = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return ab_error_set(err, -EINVAL, "policy key %s: expected a list of rules", key);
	size_t cnt = json_array_size(v);
	if (cnt > EG_RULES_MAX)
		return ab_error_set(err, -EINVAL, "policy key %s: more than %d rules", key,
				    EG_RULES_MAX);
	if (cnt == 0)
		return 0;
	eg_rule *rules = calloc(cnt, sizeof(eg_rule));
	if (!rules)
		return ab_error_set(err, -ENOMEM, "policy key %s: out of memory", key);
	for (size_t i = 0; i < cnt; i++) {
		int rc = eg_rule_parse(json_array_get(v, i), &rules[i], err);
		if (rc < 0) {
			rules_free(rules, i);
			return ab_error_prefix(err, "policy key %s[%zu]", key, i);
		}
	}
	*out = rules;
	*n = cnt;
	return 0;
}

static void policy_free(eg_policy *p)
{
	rules_free(p->deny, p->ndeny);
	rules_free(p->allow, p->nallow);
	rules_free(p->intent_rules, p->nintent);
	free(p->intent);
	free(p->dlp);
	free(p->intent_dlp);
	free(p);
}

/* {"kind": "action", ...}: every kind known, every action one of ours. */
static int dlp_actions(const json_t *v, const char *key, uint8_t **out, ab_error *err)
{
	if (!json_is_object(v))
		return ab_error_set(err, -EINVAL, "policy key %s: expected an object of kinds",
				    key);
	uint8_t *t = calloc(dlp_detector_count() + 1, 1);
	if (!t)
		return ab_error_set(err, -ENOMEM, "policy: out of memory");
	const char *kind;
	json_t *a;
	json_object_foreach((json_t *)v, kind, a)
	{
		long i = dlp_detector_index(kind);
		enum dlp_action act = dlp_action_parse(json_string_value(a));
		if (i < 0 || act == DLP_ACTION_UNSET) {
			free(t);
			return ab_error_set(err, -EINVAL,
					    i < 0 ? "policy key %s: unknown detector %.64s"
						  : "policy key %s.%.64s: expected off, log, redact "
						    "or block",
					    key, kind);
		}
		t[i] = (uint8_t)act;
	}
	*out = t;
	return 0;
}

int eg_policy_parse(const json_t *j, int64_t now_ms, eg_policy **out, ab_error *err)
{
	*out = NULL;
	if (!json_is_object(j))
		return ab_error_set(err, -EINVAL, "policy: expected an object");
	eg_policy *p = calloc(1, sizeof(*p));
	if (!p)
		return ab_error_set(err, -ENOMEM, "policy: out of memory");
	atomic_init(&p->refs, 1);
	const char *key;
	json_t *v;
	int rc = 0;
	json_object_foreach((json_t *)j, key, v)
	{
		if (strcmp(key, "mode") == 0) {
			const char *m = json_string_value(v);
			if (m && strcmp(m, "deny") == 0)
				p->report_mode = false;
			else if (m && strcmp(m, "report") == 0)
				p->report_mode = true;
			else
				rc = ab_error_set(
				    err, -EINVAL,
				    "policy key mode: expected \"deny\" or \"report\"");
		} else if (strcmp(key, "deny") == 0) {
			rc = rule_list(v, key, &p->deny, &p->ndeny, err);
		} else if (strcmp(key, "allow") == 0) {
			rc = rule_list(v, key, &p->allow, &p->nallow, err);
		} else if (strcmp(key, "intent_rules") == 0) {
			rc = rule_list(v, key, &p->intent_rules, &p->nintent, err);
		} else if (strcmp(key, "intent") == 0) {
			if (json_is_null(v))
				continue;
			const char *s = json_string_value(v);
			if (!s || !*s || strlen(s) > 128 || strlen(s) != json_string_length(v))
				rc = ab_error_set(err, -EINVAL,
						  "policy key intent: expected a name or null");
			else if (!(p->intent = strdup(s)))
				rc = ab_error_set(err, -ENOMEM, "policy: out of memory");
		} else if (strcmp(key, "dlp") == 0 || strcmp(key, "intent_dlp") == 0) {
			rc = dlp_actions(v, key, key[0] == 'd' ? &p->dlp : &p->intent_dlp, err);
		} else if (strcmp(key, "intent_expires_ms") == 0) {
			if (json_is_null(v))
				continue;
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) > (json_int_t)100 * 24 * 3600 * 1000)
				rc = ab_error_set(err, -EINVAL,
						  "policy key intent_expires_ms: "
						  "expected milliseconds or null");
			else {
				p->intent_live = true;
				p->intent_deadline_ms = now_ms + (int64_t)json_integer_value(v);
			}
		} else {
			rc = ab_error_set(err, -EINVAL, "policy: unknown key %.64s", key);
		}
		if (rc < 0)
			break;
	}
	if (rc < 0) {
		policy_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

eg_policy *eg_policy_ref(eg_policy *p)
{
	if (p)
		atomic_fetch_add(&p->refs, 1);
	return p;
}

void eg_policy_unref(eg_policy *p)
{
	if (p && atomic_fetch_sub(&p->refs, 1) == 1)
		policy_free(p);
}

static bool intent_live(const eg_policy *p, int64_t now_ms)
{
	return p->intent_live && now_ms < p->intent_deadline_ms;
}

enum dlp_action eg_policy_dlp_action(const eg_policy *p, size_t detector, int64_t now_ms)
{
	const dlp_detector_info *d = dlp_detector_at(detector);
	if (!d)
		return DLP_ACTION_BLOCK;
	if (p && p->intent_dlp && p->intent_dlp[detector] && intent_live(p, now_ms))
		return (enum dlp_action)p->intent_dlp[detector];
	if (p && p->dlp && p->dlp[detector])
		return (enum dlp_action)p->dlp[detector];
	return dlp_action_default(d->cls);
}

const char *eg_policy_intent(const eg_policy *p, int64_t now_ms)
{
	return p->intent && intent_live(p, now_ms) ? p->intent : NULL;
}

bool eg_rule_host_matches(const eg_rule *r, const char *host, bool host_is_ip)
{
	if (host_is_ip) {
		/* Only the very literal: compare addresses, so that two
		 * spellings of one IPv6 address agree. */
		unsigned char a[16], b[16];
		int fam = strchr(host, ':') ? AF_INET6 : AF_INET;
		if (inet_pton(fam, host, a) != 1 || inet_pton(fam, r->host, b) != 1)
			return false;
		return memcmp(a, b, fam == AF_INET6 ? 16 : 4) == 0;
	}
	if (strcmp(r->host, "*") == 0)
		return true;
	if (strncmp(r->host, "*.", 2) == 0) {
		size_t hl = strlen(host), sl = strlen(r->host + 1); /* ".suffix" */
		return hl > sl && strcmp(host + hl - sl, r->host + 1) == 0;
	}
	return strcmp(r->host, host) == 0;
}

static void join_list(char *buf, size_t len, char *const *items, size_t n)
{
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n && off < len; i++) {
		int w = snprintf(buf + off, len - off, "%s%s", i ? ", " : "", items[i]);
		if (w < 0)
			break;
		off += (size_t)w;
	}
	if (off >= len && len > 4)
		strcpy(buf + len - 4, "...");
}

/* Whether r permits q beyond its host; if not, why (in reason). */
static bool rule_permits(const eg_rule *r, const eg_query *q, char *reason, size_t len)
{
	char list[256];
	bool ok = false;
	if (r->nports == 0) {
		ok = q->port == 80 || q->port == 443;
		snprintf(list, sizeof(list), "80, 443");
	} else {
		size_t off = 0;
		list[0] = '\0';
		for (size_t i = 0; i < r->nports; i++) {
			ok = ok || r->ports[i] == q->port;
			if (off < sizeof(list))
				off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%u",
							i ? ", " : "", r->ports[i]);
		}
	}
	if (!ok) {
		snprintf(reason, len, "port %u not allowed by %s (allowed: %s)", q->port, r->id,
			 list);
		return false;
	}
	if (q->method && r->methods) {
		ok = false;
		for (size_t i = 0; i < r->nmethods && !ok; i++)
			ok = strcmp(r->methods[i], q->method) == 0;
		if (!ok) {
			join_list(list, sizeof(list), r->methods, r->nmethods);
			snprintf(reason, len, "method %.32s not allowed by %s (allowed: %s)",
				 q->method, r->id, list);
			return false;
		}
	}
	if (q->path && r->paths) {
		ok = false;
		for (size_t i = 0; i < r->npaths && !ok; i++)
			ok = strncmp(q->path, r->paths[i], strlen(r->paths[i])) == 0;
		if (!ok) {
			join_list(list, sizeof(list), r->paths, r->npaths);
			snprintf(reason, len, "path %.128s not allowed by %s (allowed: %s)",
				 q->path, r->id, list);
			return false;
		}
	}
	if (r->has_max_bytes_out && q->bytes_out > r->max_bytes_out) {
		snprintf(reason, len, "body of %llu bytes exceeds max_bytes_out %llu of %s",
			 (unsigned long long)q->bytes_out, (unsigned long long)r->max_bytes_out,
			 r->id);
		return false;
	}
	if (q->websocket && !r->websocket) {
		snprintf(reason, len, "websocket not allowed by %s", r->id);
		return false;
	}
	return true;
}

static void set(eg_decision *d, enum eg_decision_kind k, const char *rule, const char *code)
{
	d->kind = k;
	snprintf(d->rule, sizeof(d->rule), "%s", rule ? rule : "");
	snprintf(d->code, sizeof(d->code), "%s", code ? code : (rule ? rule : ""));
}

void eg_policy_decide(const eg_policy *p, const eg_query *q, int64_t now_ms, eg_decision *d)
{
	memset(d, 0, sizeof(*d));
	/* A report deny rule that matched: recorded unless something
	 * stronger is. */
	const eg_rule *reported = NULL;
	for (size_t i = 0; i < p->ndeny; i++) {
		const eg_rule *r = &p->deny[i];
		if (!eg_rule_host_matches(r, q->host, q->host_is_ip))
			continue;
		if (r->report) {
			if (!reported)
				reported = r;
			continue;
		}
		snprintf(d->reason, sizeof(d->reason), "host %s denied by %s", q->host, r->id);
		set(d, p->report_mode ? EG_REPORT : EG_DENY, r->id, NULL);
		return;
	}

	const eg_rule *first = NULL;
	size_t nlists = intent_live(p, now_ms) ? 2 : 1;
	for (size_t l = 0; l < nlists; l++) {
		const eg_rule *rules = l == 0 ? p->allow : p->intent_rules;
		size_t n = l == 0 ? p->nallow : p->nintent;
		for (size_t i = 0; i < n; i++) {
			const eg_rule *r = &rules[i];
			if (!eg_rule_host_matches(r, q->host, q->host_is_ip))
				continue;
			char why[sizeof(d->reason)];
			if (rule_permits(r, q, why, sizeof(why))) {
				if (reported) {
					snprintf(d->reason, sizeof(d->reason),
						 "host %s denied by %s (report)", q->host,
						 reported->id);
					set(d, EG_REPORT, reported->id, NULL);
				} else {
					set(d, EG_ALLOW, r->id, NULL);
				}
				return;
			}
			if (!first) {
				first = r;
				snprintf(d->reason, sizeof(d->reason), "%s", why);
			}
		}
	}
	if (!first) {
		snprintf(d->reason, sizeof(d->reason), "no rule allows %s", q->host);
		set(d, p->report_mode ? EG_REPORT : EG_DENY, NULL, "no-rule");
		return;
	}
	set(d, p->report_mode || first->report ? EG_REPORT : EG_DENY, first->id, NULL);
}

const char *eg_decision_name(enum eg_decision_kind k)
{
	return k == EG_ALLOW ? "allow" : k == EG_DENY ? "deny" : "report";
}

/* policy.c - egress rules and the policy file (docs/egress.md).
 *
 * A rule arrives from a client (sandbox.create's network) or from the
 * operator's YAML file; either way it is checked here against the limits
 * of docs/egress.md and turned into one normalized object, the only form
 * the rest of the daemon and the sidecar ever see. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "dlp.h"
#include "policy.h"

/* ------------------------------------------------------------------ hosts */

bool eg_host_is_ip(const char *host)
{
	unsigned char buf[16];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* A DNS name of [a-z0-9-_.] in labels of 1..63 bytes, not numeric only in
 * its last label (which getaddrinfo could take for an address). */
static bool valid_name(const char *s)
{
	size_t n = strlen(s), label = 0;
	if (n == 0 || n > EG_HOST_MAX)
		return false;
	const char *last = s;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '.') {
			if (label == 0)
				return false;
			label = 0;
			last = s + i + 1;
			continue;
		}
		if (!(islower((unsigned char)ch) || isdigit((unsigned char)ch) || ch == '-' ||
		      ch == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	if (label == 0)
		return false;
	bool digits = true;
	for (const char *p = last; *p; p++)
		digits = digits && isdigit((unsigned char)*p);
	return !digits && strncmp(last, "0x", 2) != 0;
}

/* Lower case, brackets and one trailing dot removed, an IP literal in its
 * canonical text. pattern: "*" and "*.name" are accepted too. */
static int host_normalize(const char *in, char *out, bool pattern, ab_error *err)
{
	char buf[EG_HOST_MAX + 3];
	size_t n = strlen(in);
	if (n == 0)
		return ab_error_set(err, -EINVAL, "empty host");
	if (n > EG_HOST_MAX + 2)
		return ab_error_set(err, -EINVAL, "host longer than %d bytes", EG_HOST_MAX);
	for (size_t i = 0; i <= n; i++)
		buf[i] = (char)tolower((unsigned char)in[i]);
	if (buf[0] == '[' && n >= 2 && buf[n - 1] == ']') {
		memmove(buf, buf + 1, n - 2);
		buf[n - 2] = '\0';
		unsigned char a[16];
		if (inet_pton(AF_INET6, buf, a) != 1)
			return ab_error_set(err, -EINVAL, "\"%.64s\" is not an IPv6 address", in);
	} else if (n > 1 && buf[n - 1] == '.') {
		buf[n - 1] = '\0';
	}
	unsigned char a[16];
	if (inet_pton(AF_INET, buf, a) == 1) {
		inet_ntop(AF_INET, a, out, EG_HOST_MAX + 1);
		return 0;
	}
	if (inet_pton(AF_INET6, buf, a) == 1) {
		inet_ntop(AF_INET6, a, out, EG_HOST_MAX + 1);
		return 0;
	}
	if (strlen(buf) > EG_HOST_MAX)
		return ab_error_set(err, -EINVAL, "host longer than %d bytes", EG_HOST_MAX);
	const char *name = buf;
	if (pattern && strcmp(buf, "*") == 0) {
		strcpy(out, "*");
		return 0;
	}
	if (pattern && strncmp(buf, "*.", 2) == 0)
		name = buf + 2;
	if (!valid_name(name))
		return ab_error_set(
		    err, -EINVAL,
		    "\"%.64s\" is not a host %s (a DNS name of letters, digits, '-', '_' and "
		    "dots%s, or an IP address)",
		    in, pattern ? "pattern" : "name", pattern ? ", \"*.name\" or \"*\"" : "");
	snprintf(out, EG_HOST_MAX + 1, "%s", buf);
	return 0;
}

int eg_host_normalize(const char *host, char *out, ab_error *err)
{
	return host_normalize(host, out, false, err);
}

bool eg_host_match(const char *pattern, const char *host)
{
	if (strcmp(pattern, host) == 0)
		return true;
	if (eg_host_is_ip(host))
		return false;
	if (strcmp(pattern, "*") == 0)
		return true;
	if (strncmp(pattern, "*.", 2) != 0)
		return false;
	size_t pl = strlen(pattern + 1), hl = strlen(host);
	return hl > pl && strcmp(host + hl - pl, pattern + 1) == 0;
}

json_t *eg_rules_match(json_t *rules, const char *host, bool skip_report)
{
	size_t i;
	json_t *r;
	json_array_foreach(rules, i, r)
	{
		const char *h = json_string_value(json_object_get(r, "host"));
		if (!h || (skip_report && json_is_true(json_object_get(r, "report"))))
			continue;
		if (eg_host_match(h, host))
			return r;
	}
	return NULL;
}

/* ------------------------------------------------------------------ rules */

static int fail_key(ab_error *err, const char **bad_key, const char *key, const char *where,
		    const char *what)
{
	if (bad_key)
		*bad_key = key;
	return ab_error_set(err, -EINVAL, "%s.%s: %s", where, key, what);
}

static bool method_ok(const char *m)
{
	size_t n = strlen(m);
	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalpha((unsigned char)m[i]) && m[i] != '-')
			return false;
	return true;
}

static bool path_ok(const char *p, size_t len)
{
	if (len == 0 || len > EG_PATH_MAX || p[0] != '/' || strlen(p) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)p[i] <= 0x20 || p[i] == 0x7f || p[i] == '?' || p[i] == '#')
			return false;
	return true;
}

/* Checks the list under key of v: an array of 1..max items. */
static json_t *list_of(json_t *v, const char *key, size_t max, const char *where,
		       const char **bad_key, ab_error *err)
{
	json_t *a = json_object_get(v, key);
	char what[120];
	if (!json_is_array(a) || json_array_size(a) == 0 || json_array_size(a) > max) {
		snprintf(what, sizeof(what), "expected a list of 1 to %zu items", max);
		fail_key(err, bad_key, key, where, what);
		return NULL;
	}
	return a;
}

json_t *eg_rule_normalize(json_t *v, const char *id, const char *where, const char **bad_key,
			  ab_error *err)
{
	if (bad_key)
		*bad_key = NULL;
	char host[EG_HOST_MAX + 1];
	ab_error e = {0};
	if (json_is_string(v)) {
		if (strlen(json_string_value(v)) != json_string_length(v) ||
		    host_normalize(json_string_value(v), host, true, &e) < 0) {
			ab_error_set(err, -EINVAL, "%s: %s", where,
				     e.msg[0] ? e.msg : "host contains a NUL character");
			return NULL;
		}
		return json_pack("{s:s, s:s, s:[ii], s:b, s:b}", "id", id, "host", host, "ports",
				 80, 443, "websocket", 0, "report", 0);
	}
	if (!json_is_object(v)) {
		ab_error_set(err, -EINVAL, "%s: expected a host pattern string or a rule object",
			     where);
		return NULL;
	}
	static const char *const known[] = {"host",	     "methods",	  "paths",  "ports",
					    "max_bytes_out", "websocket", "report", NULL};
	const char *key;
	json_t *val;
	json_object_foreach(v, key, val)
	{
		bool ok = false;
		for (int i = 0; known[i]; i++)
			ok = ok || strcmp(key, known[i]) == 0;
		if (!ok) {
			if (bad_key)
				*bad_key = key;
			ab_error_set(err, -EINVAL,
				     "%s: unknown key \"%.64s\" (a rule has host, methods, paths, "
				     "ports, max_bytes_out, websocket, report)",
				     where, key);
			return NULL;
		}
	}
	json_t *h = json_object_get(v, "host");
	if (!json_is_string(h)) {
		fail_key(err, bad_key, "host", where, "expected a host pattern string");
		return NULL;
	}
	if (strlen(json_string_value(h)) != json_string_length(h) ||
	    host_normalize(json_string_value(h), host, true, &e) < 0) {
		fail_key(err, bad_key, "host", where,
			 e.msg[0] ? e.msg : "contains a NUL character");
		return NULL;
	}
	json_t *r AB_AUTOJSON = json_pack("{s:s, s:s}", "id", id, "host", host);
	if (!r) {
		ab_error_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	size_t i;
	json_t *x;
	if (json_object_get(v, "methods")) {
		json_t *a = list_of(v, "methods", EG_METHODS_MAX, where, bad_key, err);
		if (!a)
			return NULL;
		json_t *out = json_array();
		json_object_set_new(r, "methods", out);
		json_array_foreach(a, i, x)
		{
			if (!json_is_string(x) || !method_ok(json_string_value(x))) {
				fail_key(err, bad_key, "methods", where,
					 "expected HTTP method names (letters and '-', up to 20)");
				return NULL;
			}
			char m[21];
			snprintf(m, sizeof(m), "%s", json_string_value(x));
			for (char *p = m; *p; p++)
				*p = (char)toupper((unsigned char)*p);
			json_array_append_new(out, json_string(m));
		}
	}
	if (json_object_get(v, "paths")) {
		json_t *a = list_of(v, "paths", EG_PATHS_MAX, where, bad_key, err);
		if (!a)
			return NULL;
		json_array_foreach(a, i, x)
		{
			if (!json_is_string(x) ||
			    !path_ok(json_string_value(x), json_string_length(x))) {
				fail_key(err, bad_key, "paths", where,
					 "expected path prefixes starting with '/' (up to 1024 "
					 "bytes, no spaces, controls, '?' or '#')");
				return NULL;
			}
		}
		json_object_set(r, "paths", a);
	}
	if (json_object_get(v, "ports")) {
		json_t *a = list_of(v, "ports", EG_PORTS_MAX, where, bad_key, err);
		if (!a)
			return NULL;
		json_array_foreach(a, i, x)
		{
			if (!json_is_integer(x) || json_integer_value(x) < 1 ||
			    json_integer_value(x) > 65535) {
				fail_key(err, bad_key, "ports", where,
					 "expected port numbers 1..65535");
				return NULL;
			}
		}
		json_object_set(r, "ports", a);
	} else {
		json_object_set_new(r, "ports", json_pack("[ii]", 80, 443));
	}
	json_t *mb = json_object_get(v, "max_bytes_out");
	if (mb) {
		if (!json_is_integer(mb) || json_integer_value(mb) < 0 ||
		    json_integer_value(mb) > (json_int_t)1 << 50) {
			fail_key(err, bad_key, "max_bytes_out", where,
				 "expected a number of bytes (0 or more)");
			return NULL;
		}
		json_object_set(r, "max_bytes_out", mb);
	}
	static const char *const flags[] = {"websocket", "report"};
	for (int f = 0; f < 2; f++) {
		json_t *b = json_object_get(v, flags[f]);
		if (b && !json_is_boolean(b)) {
			fail_key(err, bad_key, flags[f], where, "expected true or false");
			return NULL;
		}
		json_object_set_new(r, flags[f], json_boolean(json_is_true(b)));
	}
	return ab_steal_ptr(&r);
}

json_t *eg_rules_normalize(json_t *list, const char *prefix, const char *where, ab_error *err)
{
	if (!json_is_array(list)) {
		ab_error_set(err, -EINVAL, "%s: expected a list of rules", where);
		return NULL;
	}
	if (json_array_size(list) > EG_RULES_MAX) {
		ab_error_set(err, -EINVAL, "%s: more than %d rules", where, EG_RULES_MAX);
		return NULL;
	}
	json_t *out AB_AUTOJSON = json_array();
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v)
	{
		char id[EG_NAME_MAX + 40], w[300];
		snprintf(id, sizeof(id), "%s#%zu", prefix, i);
		snprintf(w, sizeof(w), "%s[%zu]", where, i);
		json_t *r = eg_rule_normalize(v, id, w, NULL, err);
		if (!r || json_array_append_new(out, r) < 0)
			return NULL;
	}
	return ab_steal_ptr(&out);
}

/* ------------------------------------------------------------------ DLP */

static enum dlp_action action_of(json_t *v)
{
	return dlp_action_parse(json_string_value(v));
}

json_t *eg_dlp_normalize(json_t *v, const char *where, ab_error *err)
{
	if (!json_is_object(v)) {
		ab_error_set(err, -EINVAL,
			     "%s: expected an object with secret, pii and detectors (e.g. "
			     "{\"pii\": \"log\", \"detectors\": {\"email\": \"block\"}})",
			     where);
		return NULL;
	}
	json_t *out = json_object(), *dets = json_object();
	const char *key;
	json_t *x;
	json_object_foreach(v, key, x)
	{
		if (strcmp(key, "secret") == 0 || strcmp(key, "pii") == 0) {
			if (action_of(x) == DLP_ACTION_UNSET) {
				ab_error_set(err, -EINVAL,
					     "%s.%s: expected off, log, redact or block", where, key);
				goto fail;
			}
			json_object_set(out, key, x);
		} else if (strcmp(key, "detectors") == 0) {
			if (!json_is_object(x)) {
				ab_error_set(err, -EINVAL,
					     "%s.detectors: expected an object of detector kinds "
					     "and actions",
					     where);
				goto fail;
			}
			const char *kind;
			json_t *a;
			json_object_foreach(x, kind, a)
			{
				if (dlp_detector_index(kind) < 0) {
					ab_error_set(err, -EINVAL,
						     "%s.detectors: unknown detector \"%.64s\" (see "
						     "agentbox dlp detectors)",
						     where, kind);
					goto fail;
				}
				if (action_of(a) == DLP_ACTION_UNSET) {
					ab_error_set(err, -EINVAL,
						     "%s.detectors.%s: expected off, log, redact or "
						     "block",
						     where, kind);
					goto fail;
				}
				json_object_set(dets, kind, a);
			}
		} else {
			ab_error_set(err, -EINVAL,
				     "%s: unknown key \"%.64s\" (DLP settings have secret, pii and "
				     "detectors)",
				     where, key);
			goto fail;
		}
	}
	json_object_set_new(out, "detectors", dets);
	return out;
fail:
	json_decref(out);
	json_decref(dets);
	return NULL;
}

/* What settings d say for detector info: its own entry, else its class's,
 * else UNSET. */
static enum dlp_action dlp_setting(json_t *d, const dlp_detector_info *info)
{
	enum dlp_action a = action_of(json_object_get(json_object_get(d, "detectors"), info->kind));
	if (a == DLP_ACTION_UNSET)
		a = action_of(json_object_get(d, dlp_class_name(info->cls)));
	return a;
}

json_t *eg_dlp_actions(json_t *file, json_t *sandbox)
{
	json_t *out = json_object();
	for (size_t i = 0; i < dlp_detector_count(); i++) {
		const dlp_detector_info *info = dlp_detector_at(i);
		if (!info)
			break;
		enum dlp_action a = dlp_setting(file, info);
		if (a == DLP_ACTION_UNSET)
			a = dlp_action_default(info->cls);
		enum dlp_action s = dlp_setting(sandbox, info);
		if (s > a)
			a = s;
		json_object_set_new(out, info->kind, json_string(dlp_action_name(a)));
	}
	return out;
}

json_t *eg_dlp_overrides(json_t *intent)
{
	json_t *out = json_object();
	for (size_t i = 0; intent && i < dlp_detector_count(); i++) {
		const dlp_detector_info *info = dlp_detector_at(i);
		enum dlp_action a = info ? dlp_setting(intent, info) : DLP_ACTION_UNSET;
		if (a != DLP_ACTION_UNSET)
			json_object_set_new(out, info->kind, json_string(dlp_action_name(a)));
	}
	return out;
}

int eg_ttl_parse(const char *s, double *seconds, ab_error *err)
{
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)s[0]))
		return ab_error_set(err, -EINVAL, "\"%.32s\" is not a duration (e.g. 30s, 10m, 2h)",
				    s);
	unsigned long long v = strtoull(s, &end, 10);
	unsigned long long mul = 1;
	if (*end == 's')
		end++;
	else if (*end == 'm')
		mul = 60, end++;
	else if (*end == 'h')
		mul = 3600, end++;
	if (*end || errno || v == 0 || v > EG_TTL_MAX || v * mul > EG_TTL_MAX)
		return ab_error_set(
		    err, -EINVAL, "\"%.32s\" is not a duration from 1s to 24h (e.g. 30s, 10m, 2h)",
		    s);
	*seconds = (double)(v * mul);
	return 0;
}

/* ------------------------------------------------------------ policy file */

json_t *eg_policy_default(void)
{
	return json_pack("{s:s, s:[], s:[], s:{}}", "default", "deny", "deny", "allow", "intents");
}

typedef struct yctx {
	yaml_document_t *doc;
	const char *name;
	unsigned char *seen; /* per node: converted once (aliases are refused) */
	size_t nnodes;
	ab_error *err;
} yctx;

static int line_of(const yaml_node_t *n)
{
	return n ? (int)n->start_mark.line + 1 : 0;
}

static int yfail(yctx *y, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int yfail(yctx *y, const yaml_node_t *n, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return ab_error_set(y->err, -EINVAL, "%s:%d: %s", y->name, line_of(n), msg);
}

static yaml_node_t *ynode(yctx *y, int index)
{
	return yaml_document_get_node(y->doc, index);
}

static const char *yscalar(const yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* A scalar as YAML's core schema reads it: plain scalars may be null,
 * booleans or integers; quoted ones are strings. */
static json_t *scalar_json(const yaml_node_t *n)
{
	const char *s = (const char *)n->data.scalar.value;
	size_t len = n->data.scalar.length;
	if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
		if (len == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
		    strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0)
			return json_null();
		if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0)
			return json_true();
		if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0)
			return json_false();
		const char *p = s + (s[0] == '-' || s[0] == '+');
		if (*p && strspn(p, "0123456789") == strlen(p) && strlen(p) <= 15)
			return json_integer(strtoll(s, NULL, 10));
	}
	return json_stringn(s, len);
}

/* The JSON value of node index (new), or NULL (error set). */
static json_t *yjson(yctx *y, int index, int depth)
{
	yaml_node_t *n = ynode(y, index);
	if (!n) {
		ab_error_set(y->err, -EINVAL, "%s: damaged document", y->name);
		return NULL;
	}
	if (depth > 16) {
		yfail(y, n, "nested too deeply");
		return NULL;
	}
	if ((size_t)index <= y->nnodes) {
		if (y->seen[index]) {
			yfail(y, n,
			      "aliases (*name) are not supported; quote a host pattern "
			      "that starts with '*'");
			return NULL;
		}
		y->seen[index] = 1;
	}
	if (n->type == YAML_SCALAR_NODE)
		return scalar_json(n);
	if (n->type == YAML_SEQUENCE_NODE) {
		json_t *a = json_array();
		for (yaml_node_item_t *it = n->data.sequence.items.start;
		     it < n->data.sequence.items.top; it++) {
			json_t *v = yjson(y, *it, depth + 1);
			if (!v) {
				json_decref(a);
				return NULL;
			}
			json_array_append_new(a, v);
		}
		return a;
	}
	json_t *o = json_object();
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = ynode(y, p->key);
		const char *ks = yscalar(k);
		if (!ks || strlen(ks) != k->data.scalar.length) {
			yfail(y, k, "keys must be plain strings");
			json_decref(o);
			return NULL;
		}
		if (json_object_get(o, ks)) {
			yfail(y, k, "duplicate key \"%.64s\"", ks);
			json_decref(o);
			return NULL;
		}
		json_t *v = yjson(y, p->value, depth + 1);
		if (!v) {
			json_decref(o);
			return NULL;
		}
		json_object_set_new(o, ks, v);
	}
	return o;
}

/* The node of the value under key in mapping n, or NULL. */
static yaml_node_t *ymap_get(yctx *y, yaml_node_t *n, const char *key)
{
	if (!n || n->type != YAML_MAPPING_NODE || !key)
		return NULL;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		const char *ks = yscalar(ynode(y, p->key));
		if (ks && strcmp(ks, key) == 0)
			return ynode(y, p->value);
	}
	return NULL;
}

/* The rules of sequence node index, normalized with ids prefix#N. */
static json_t *yrules(yctx *y, int index, const char *prefix, const char *where)
{
	yaml_node_t *n = ynode(y, index);
	if (!n || n->type != YAML_SEQUENCE_NODE) {
		yfail(y, n, "%s: expected a list of rules", where);
		return NULL;
	}
	size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	if (count > EG_RULES_MAX) {
		yfail(y, n, "%s: more than 256 rules", where);
		return NULL;
	}
	json_t *out = json_array();
	size_t i = 0;
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++, i++) {
		yaml_node_t *rn = ynode(y, *it);
		json_t *v = yjson(y, *it, 2);
		if (!v) {
			json_decref(out);
			return NULL;
		}
		char id[EG_NAME_MAX + 40], w[200];
		snprintf(id, sizeof(id), "%s#%zu", prefix, i);
		snprintf(w, sizeof(w), "%s[%zu]", where, i);
		const char *bad = NULL;
		ab_error e = {0};
		json_t *r = eg_rule_normalize(v, id, w, &bad, &e);
		if (!r) {
			yaml_node_t *at = ymap_get(y, rn, bad);
			ab_error_set(y->err, -EINVAL, "%s:%d: %s", y->name, line_of(at ? at : rn),
				     e.msg);
			json_decref(v);
			json_decref(out);
			return NULL;
		}
		json_decref(v);
		json_array_append_new(out, r);
	}
	return out;
}

static bool intent_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > EG_NAME_MAX || !isalnum((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

/* DLP settings (eg_dlp_normalize), with the file's line in errors. */
static json_t *ydlp(yctx *y, int index, const char *where)
{
	json_t *j = yjson(y, index, 0);
	if (!j)
		return NULL;
	ab_error e = {0};
	json_t *d = eg_dlp_normalize(j, where, &e);
	json_decref(j);
	if (!d)
		yfail(y, ynode(y, index), "%s", e.msg);
	return d;
}

static int yintent(yctx *y, const char *name, yaml_node_t *kn, int index, json_t *intents)
{
	yaml_node_t *n = ynode(y, index);
	if (!intent_name_ok(name))
		return yfail(y, kn,
			     "intents: \"%.64s\" is not an intent name (1 to 64 letters, digits, "
			     "'-', '_', '.', starting with a letter or digit)",
			     name);
	if (!n || n->type != YAML_MAPPING_NODE)
		return yfail(y, n, "intents.%s: expected a mapping with description, ttl and rules",
			     name);
	json_t *desc = NULL;
	double ttl = -1;
	json_t *rules = NULL, *dlp = NULL;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = ynode(y, p->key), *v = ynode(y, p->value);
		const char *ks = yscalar(k);
		if (!ks)
			ks = "";
		if (strcmp(ks, "description") == 0) {
			const char *s = yscalar(v);
			if (!s || strlen(s) > 1000 || desc) {
				json_decref(desc);
				json_decref(rules);
				json_decref(dlp);
				return yfail(y, v,
					     "intents.%s.description: expected one string of up "
					     "to 1000 bytes",
					     name);
			}
			desc = json_string(s);
		} else if (strcmp(ks, "ttl") == 0) {
			const char *s = yscalar(v);
			ab_error e = {0};
			if (!s || ttl >= 0 || eg_ttl_parse(s, &ttl, &e) < 0) {
				json_decref(desc);
				json_decref(rules);
				json_decref(dlp);
				return yfail(y, v, "intents.%s.ttl: %s", name,
					     e.msg[0] ? e.msg : "expected a duration (e.g. 10m)");
			}
		} else if (strcmp(ks, "dlp") == 0) {
			char where[EG_NAME_MAX + 20];
			snprintf(where, sizeof(where), "intents.%s.dlp", name);
			json_decref(dlp);
			if (!(dlp = ydlp(y, p->value, where))) {
				json_decref(desc);
				json_decref(rules);
				return -EINVAL;
			}
		} else if (strcmp(ks, "rules") == 0) {
			char prefix[EG_NAME_MAX + 20], where[EG_NAME_MAX + 20];
			snprintf(prefix, sizeof(prefix), "intent:%s", name);
			snprintf(where, sizeof(where), "intents.%s.rules", name);
			json_decref(rules);
			if (!(rules = yrules(y, p->value, prefix, where))) {
				json_decref(desc);
				json_decref(dlp);
				return -EINVAL;
			}
		} else {
			json_decref(desc);
			json_decref(rules);
			json_decref(dlp);
			return yfail(
			    y, k,
			    "intents.%s: unknown key \"%.64s\" (an intent has description, "
			    "ttl, rules and dlp)",
			    name, ks);
		}
	}
	if (ttl < 0 || !rules) {
		json_decref(desc);
		json_decref(rules);
		json_decref(dlp);
		return yfail(y, n, "intents.%s: %s is required", name, ttl < 0 ? "ttl" : "rules");
	}
	json_t *it = json_pack("{s:o, s:i, s:o}", "description", desc ? desc : json_string(""),
			       "ttl", (int)ttl, "rules", rules);
	if (it && dlp)
		json_object_set_new(it, "dlp", dlp);
	else
		json_decref(dlp);
	json_object_set_new(intents, name, it);
	return 0;
}

static int ypolicy(yctx *y, yaml_node_t *root, json_t *pol)
{
	if (!root)
		return 0; /* an empty file: the defaults */
	if (root->type != YAML_MAPPING_NODE)
		return yfail(y, root,
			     "expected a mapping with default, deny, allow, intents and dlp");
	bool seen[5] = {false};
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = ynode(y, p->key), *v = ynode(y, p->value);
		const char *ks = yscalar(k);
		static const char *const keys[] = {"default", "deny", "allow", "intents", "dlp"};
		int which = -1;
		for (int i = 0; i < 5 && ks; i++)
			if (strcmp(ks, keys[i]) == 0)
				which = i;
		if (which < 0)
			return yfail(y, k,
				     "unknown key \"%.64s\" (the policy file has default, deny, "
				     "allow, intents and dlp)",
				     ks ? ks : "");
		if (seen[which])
			return yfail(y, k, "duplicate key \"%s\"", ks);
		seen[which] = true;
		if (which == 0) {
			const char *s = yscalar(v);
			if (!s || (strcmp(s, "deny") != 0 && strcmp(s, "report") != 0))
				return yfail(y, v, "default: expected deny or report");
			json_object_set_new(pol, "default", json_string(s));
		} else if (which == 1 || which == 2) {
			json_t *r = yrules(y, p->value, which == 1 ? "deny" : "policy", ks);
			if (!r)
				return -EINVAL;
			json_object_set_new(pol, ks, r);
		} else if (which == 4) {
			json_t *d = ydlp(y, p->value, "dlp");
			if (!d)
				return -EINVAL;
			json_object_set_new(pol, "dlp", d);
		} else {
			if (!v || v->type != YAML_MAPPING_NODE)
				return yfail(y, v,
					     "intents: expected a mapping of names to "
					     "intents");
			json_t *intents = json_object_get(pol, "intents");
			for (yaml_node_pair_t *q = v->data.mapping.pairs.start;
			     q < v->data.mapping.pairs.top; q++) {
				yaml_node_t *ik = ynode(y, q->key);
				const char *name = yscalar(ik);
				if (!name)
					return yfail(y, ik, "intents: names must be strings");
				if (json_object_get(intents, name))
					return yfail(y, ik, "intents: duplicate intent \"%.64s\"",
						     name);
				int r = yintent(y, name, ik, q->value, intents);
				if (r < 0)
					return r;
			}
		}
	}
	return 0;
}

int eg_policy_parse(const char *text, size_t len, const char *name, json_t **out, ab_error *err)
{
	if (len > EG_POLICY_FILE_MAX)
		return ab_error_set(err, -EFBIG, "%s: larger than %u bytes", name,
				    EG_POLICY_FILE_MAX);
	if (memchr(text, '\0', len))
		return ab_error_set(err, -EINVAL, "%s: contains a NUL byte", name);
	yaml_parser_t parser;
	yaml_document_t doc;
	if (!yaml_parser_initialize(&parser))
		return ab_error_set(err, -ENOMEM, "out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		int r = ab_error_set(
		    err, -EINVAL, "%s:%d: %s%s%s", name, (int)parser.problem_mark.line + 1,
		    parser.problem ? parser.problem : "YAML syntax error",
		    parser.context ? " " : "", parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		return r;
	}
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	size_t nnodes = (size_t)(doc.nodes.top - doc.nodes.start);
	yctx y = {.doc = &doc, .name = name, .nnodes = nnodes, .err = err};
	y.seen = calloc(nnodes + 2, 1);
	json_t *pol = eg_policy_default();
	int r =
	    y.seen && pol ? ypolicy(&y, root, pol) : ab_error_set(err, -ENOMEM, "out of memory");
	if (r == 0 && root) {
		/* One document only: a second one would be ignored silently. */
		yaml_document_t next;
		if (!yaml_parser_load(&parser, &next)) {
			r = ab_error_set(err, -EINVAL, "%s:%d: %s", name,
					 (int)parser.problem_mark.line + 1,
					 parser.problem ? parser.problem : "YAML syntax error");
		} else {
			if (yaml_document_get_root_node(&next))
				r = ab_error_set(err, -EINVAL, "%s:%d: more than one YAML document",
						 name, (int)next.start_mark.line + 1);
			yaml_document_delete(&next);
		}
	}
	free(y.seen);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	if (r < 0) {
		json_decref(pol);
		return r;
	}
	*out = pol;
	return 0;
}

int eg_policy_load(const char *path, json_t **out, ab_error *err)
{
	int fd AB_AUTOCLOSE = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return ab_error_errno(err, -errno, "policy file %s", path);
	if (!S_ISREG(st.st_mode))
		return ab_error_set(err, -EINVAL, "policy file %s: not a regular file", path);
	if (st.st_size > (off_t)EG_POLICY_FILE_MAX)
		return ab_error_set(err, -EFBIG, "policy file %s: larger than %u bytes", path,
				    EG_POLICY_FILE_MAX);
	char *buf AB_AUTOFREE = malloc((size_t)st.st_size + 1);
	if (!buf)
		return ab_error_set(err, -ENOMEM, "out of memory");
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return ab_error_errno(err, -errno, "read policy file %s", path);
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	return eg_policy_parse(buf, got, path, out, err);
}

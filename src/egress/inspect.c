/* inspect.c - what leaves, shown to the DLP engine (docs/dlp.md, "In the
 * egress sidecar"): each finding gets the action the sandbox's policy
 * gives its kind, and the request the strictest of them. The values never
 * leave this file: the record carries kinds and salted hashes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "inspect.h"

#define MAX_FOUND 16

static dlp_engine *engine;
static unsigned char salt[32];
static size_t salt_len;

struct found {
	const char *kind;
	enum dlp_action action;
	const char *part;
	char hash[DLP_HASH_LEN + 1];
};

struct eg_inspector {
	const eg_policy *pol;
	int64_t now_ms;
	bool blocked, redacted;
	const char *kinds[EG_INSPECT_KINDS + 1];
	struct found found[MAX_FOUND];
	size_t nfound;
	char *content_type;
	dlp_stream *stream;
};

int eg_inspect_init(const char *salt_hex, const char *cache_dir, char *err, size_t errlen)
{
	if (engine)
		return 0;
	if (salt_hex && *salt_hex) {
		long n = dlp_salt_parse(salt_hex, salt, sizeof(salt));
		if (n < 0) {
			snprintf(err, errlen, "the DLP salt must be 32 to 64 lower-case hex digits");
			return -1;
		}
		salt_len = (size_t)n;
	} else {
		if (RAND_bytes(salt, sizeof(salt)) != 1) {
			snprintf(err, errlen, "no random bytes for the DLP salt");
			return -1;
		}
		salt_len = sizeof(salt);
	}
	engine = dlp_engine_open(cache_dir, err, errlen);
	return engine ? 0 : -1;
}

eg_inspector *eg_inspect_begin(const eg_policy *p, int64_t now_ms)
{
	if (!engine)
		return NULL;
	eg_inspector *in = calloc(1, sizeof(*in));
	if (in) {
		in->pol = p;
		in->now_ms = now_ms;
	}
	return in;
}

void eg_inspect_content_type(eg_inspector *in, const char *ct)
{
	if (!in)
		return;
	free(in->content_type);
	in->content_type = ct ? strdup(ct) : NULL;
}

static void add_kind(eg_inspector *in, const char *kind)
{
	for (size_t i = 0; i < EG_INSPECT_KINDS; i++) {
		if (in->kinds[i] && strcmp(in->kinds[i], kind) == 0)
			return;
		if (!in->kinds[i]) {
			in->kinds[i] = kind;
			return;
		}
	}
}

static void note(eg_inspector *in, const dlp_finding *f, enum dlp_action a, const char *part)
{
	add_kind(in, f->kind);
	if (in->nfound >= MAX_FOUND)
		return;
	struct found *x = &in->found[in->nfound++];
	x->kind = f->kind;
	x->action = a;
	x->part = part;
	const char *v = f->value ? f->value : "";
	dlp_value_hash(salt, salt_len, v, strlen(v), x->hash);
}

/* Applies the policy to what a scan found. data (may be NULL: nothing can
 * be rewritten) is what was scanned. Returns whether a value was
 * redacted, or would have been (data NULL). */
static bool apply(eg_inspector *in, const dlp_findings *f, char *data, const char *part)
{
	bool redact = false;
	for (size_t i = 0; i < f->n; i++) {
		long d = dlp_detector_index(f->v[i].kind);
		enum dlp_action a =
		    d < 0 ? DLP_ACTION_BLOCK : eg_policy_dlp_action(in->pol, (size_t)d, in->now_ms);
		if (a == DLP_ACTION_OFF)
			continue;
		note(in, &f->v[i], a, part);
		if (a == DLP_ACTION_BLOCK) {
			in->blocked = true;
		} else if (a == DLP_ACTION_REDACT) {
			redact = true;
			if (data)
				memset(data + f->v[i].start, 'X', f->v[i].end - f->v[i].start);
		}
	}
	/* Findings past the cap were not seen: none of them may leave. */
	if (redact && f->truncated)
		in->blocked = true;
	return redact;
}

enum eg_verdict eg_inspect(eg_inspector *in, const char *part, char *data, size_t len)
{
	if (!in)
		return EG_BLOCK;
	if (in->blocked)
		return EG_BLOCK;
	bool body = strcmp(part, "body") == 0;
	dlp_opts o = {.url = strcmp(part, "url") == 0,
		      .content_type = body ? in->content_type : NULL,
		      .values = true};
	dlp_findings f = {0};
	if (dlp_scan(engine, data, len, &o, &f) < 0)
		in->blocked = true; /* fail closed: what was not scanned does not leave */
	bool redacted = apply(in, &f, data, part);
	dlp_findings_free(&f);
	if (redacted)
		in->redacted = true;
	return in->blocked ? EG_BLOCK : redacted ? EG_REDACT : EG_PASS;
}

static enum eg_verdict stream_findings(eg_inspector *in, dlp_findings *f, int rc)
{
	if (rc < 0)
		in->blocked = true;
	bool redact = apply(in, f, NULL, "body");
	dlp_findings_free(f);
	return in->blocked ? EG_BLOCK : redact ? EG_REDACT : EG_PASS;
}

enum eg_verdict eg_inspect_stream(eg_inspector *in, const char *data, size_t len)
{
	if (!in)
		return EG_BLOCK;
	if (in->blocked)
		return EG_BLOCK;
	if (!in->stream) {
		dlp_opts o = {.content_type = in->content_type, .values = true};
		if (!(in->stream = dlp_stream_open(engine, &o))) {
			in->blocked = true;
			return EG_BLOCK;
		}
	}
	dlp_findings f = {0};
	int rc = dlp_stream_feed(in->stream, data, len, &f);
	return stream_findings(in, &f, rc);
}

enum eg_verdict eg_inspect_stream_end(eg_inspector *in)
{
	if (!in)
		return EG_BLOCK;
	dlp_findings f = {0};
	int rc = dlp_stream_close(in->stream, &f);
	in->stream = NULL;
	return stream_findings(in, &f, rc);
}

enum eg_verdict eg_inspect_verdict(const eg_inspector *in)
{
	return !in || in->blocked ? EG_BLOCK : in->redacted ? EG_REDACT : EG_PASS;
}

const char *const *eg_inspect_kinds(const eg_inspector *in)
{
	return in->kinds;
}

json_t *eg_inspect_findings(const eg_inspector *in)
{
	json_t *a = json_array();
	for (size_t i = 0; in && i < in->nfound; i++)
		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s}", "kind", in->found[i].kind,
						   "action", dlp_action_name(in->found[i].action),
						   "part", in->found[i].part, "hash",
						   in->found[i].hash));
	return a;
}

void eg_inspect_end(eg_inspector *in)
{
	if (!in)
		return;
	dlp_findings f = {0};
	dlp_stream_close(in->stream, &f);
	dlp_findings_free(&f);
	free(in->content_type);
	free(in);
}

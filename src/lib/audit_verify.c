/* audit_verify.c - verifying an audit log, a database or a JSON Lines export,
 * against its chain, its signed checkpoints and an external checkpoints
 * file (docs/audit.md, "Verifying"). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "audit_internal.h"

/* ----------------------------------------------------------- verifying */

struct cp {
	int64_t seq, ts;
	unsigned char head[HASH_LEN], sig[SIG_LEN];
	bool external;
	bool has_pub;
	unsigned char pub[PUB_LEN];
	long line; /* in the external file or export, 0 for the database */
};

struct verifier {
	ab_audit_report *rep;
	struct cp *cps;
	size_t ncp, capcp;
	bool have_stored;
	unsigned char stored[PUB_LEN]; /* the key the log names */
	bool have_pinned;
	unsigned char pinned[PUB_LEN];
	EVP_PKEY *key; /* the key checkpoints must verify with */
	sqlite3 *db;   /* when verifying a database: one read snapshot */
	int64_t expect;
	unsigned char prev[HASH_LEN];
	size_t next_cp;
};

static bool fail(struct verifier *v, int64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records the first problem; returns false so that callers can stop. */
static bool fail(struct verifier *v, int64_t seq, const char *fmt, ...)
{
	if (v->rep->ok) {
		v->rep->ok = false;
		v->rep->bad_seq = seq;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(v->rep->why, sizeof(v->rep->why), fmt, ap);
		va_end(ap);
	}
	return false;
}

static int add_cp(struct verifier *v, const struct cp *c, ab_error *err)
{
	if (v->ncp == v->capcp) {
		size_t ncap = v->capcp ? 2 * v->capcp : 64;
		struct cp *n = realloc(v->cps, ncap * sizeof(*n));
		if (!n)
			return ab_error_set(err, -ENOMEM, "out of memory");
		v->cps = n;
		v->capcp = ncap;
	}
	v->cps[v->ncp++] = *c;
	return 0;
}

static int cp_order(const void *pa, const void *pb)
{
	const struct cp *a = pa, *b = pb;
	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	if (a->external != b->external)
		return a->external ? 1 : -1;
	return a->line < b->line ? -1 : a->line > b->line;
}

static const char *cp_name(const struct cp *c, char *buf, size_t len)
{
	if (c->external)
		snprintf(buf, len, "external checkpoint at seq %lld (line %ld)", (long long)c->seq,
			 c->line);
	else
		snprintf(buf, len, "checkpoint at seq %lld", (long long)c->seq);
	return buf;
}

static bool ed25519_verify(EVP_PKEY *pub, const char *msg, const unsigned char sig[SIG_LEN])
{
	EVP_MD_CTX *c __attribute__((cleanup(md_ctx_freep))) = EVP_MD_CTX_new();
	return c && EVP_DigestVerifyInit(c, NULL, NULL, NULL, pub) == 1 &&
	       EVP_DigestVerify(c, sig, SIG_LEN, (const unsigned char *)msg, strlen(msg)) == 1;
}

static bool check_cp_sig(struct verifier *v, const struct cp *c)
{
	char name[96];
	char *msg AB_AUTOFREE = ab__audit_checkpoint_message(c->seq, c->head, c->ts);
	v->rep->checkpoints++;
	if (!msg || !ed25519_verify(v->key, msg, c->sig))
		return fail(v, c->seq,
			    "%s: bad signature (not signed by the %s key; re-signed or forged)",
			    cp_name(c, name, sizeof(name)), v->have_pinned ? "pinned" : "log's");
	if (c->has_pub && memcmp(c->pub, v->have_pinned ? v->pinned : v->stored, PUB_LEN) != 0)
		return fail(v, c->seq, "%s: names another public key than the log's",
			    cp_name(c, name, sizeof(name)));
	return true;
}

/* Checks one event in sequence, and the checkpoints that cover it. */
static bool verify_row(struct verifier *v, const struct row *r, char *why, size_t whylen)
{
	if (r->seq != v->expect) {
		if (r->seq > v->expect)
			return fail(v, v->expect, "seq %lld is missing (deleted)",
				    (long long)v->expect);
		return fail(v, v->expect, "seq %lld: found seq %lld out of order (rows reordered)",
			    (long long)v->expect, (long long)r->seq);
	}
	if (memcmp(r->prev, v->prev, HASH_LEN) != 0) {
		if (r->seq == 1)
			return fail(v, 1, "seq 1: prev is not zero (spliced or modified)");
		return fail(v, r->seq,
			    "seq %lld: prev does not match the hash of seq %lld (rows swapped, "
			    "spliced or modified)",
			    (long long)r->seq, (long long)r->seq - 1);
	}
	if (!ab__audit_row_hash_ok(r, why, whylen))
		return fail(v, r->seq, "%s", why);
	v->rep->events++;
	memcpy(v->prev, r->hash, HASH_LEN);
	v->expect++;
	for (; v->next_cp < v->ncp && v->cps[v->next_cp].seq <= r->seq; v->next_cp++) {
		const struct cp *c = &v->cps[v->next_cp];
		char name[96];
		if (!check_cp_sig(v, c))
			return false;
		if (c->seq < r->seq || memcmp(c->head, r->hash, HASH_LEN) != 0)
			return fail(v, c->seq,
				    "%s: head does not match the hash of seq %lld (the log was "
				    "rewritten)",
				    cp_name(c, name, sizeof(name)), (long long)c->seq);
	}
	return true;
}

/* After the last event: checkpoints beyond the end mean truncation. */
static void verify_end(struct verifier *v)
{
	int64_t last = v->expect - 1;
	const struct cp *beyond = NULL;
	for (; v->next_cp < v->ncp; v->next_cp++) {
		const struct cp *c = &v->cps[v->next_cp];
		if (!check_cp_sig(v, c))
			return;
		if (!beyond || c->seq >= beyond->seq)
			beyond = c;
	}
	if (beyond) {
		v->rep->torn_tail = true;
		fail(v, last + 1,
		     "log truncated: %scheckpoint covers seq %lld but the log ends at %lld",
		     beyond->external ? "external " : "", (long long)beyond->seq, (long long)last);
		return;
	}
	if (v->have_pinned && v->have_stored && memcmp(v->pinned, v->stored, PUB_LEN) != 0) {
		char hex[2 * PUB_LEN + 1];
		ab__hex_encode(v->stored, PUB_LEN, hex);
		fail(v, 0, "the log names public key %s, not the pinned key", hex);
	}
}

/* Reads one line of at most LINE_MAX_BYTES (without the newline) into a
 * malloc'd buffer. Returns the length, -1 at EOF, -2 if too long or out of
 * memory. */
static ssize_t read_line(FILE *f, char **buf, size_t *cap)
{
	size_t len = 0;
	int c;
	bool any = false;
	while ((c = getc(f)) != EOF) {
		any = true;
		if (c == '\n')
			break;
		if (len + 2 > *cap) {
			if (*cap >= LINE_MAX_BYTES)
				return -2;
			size_t ncap = *cap ? 2 * *cap : 4096;
			char *n = realloc(*buf, ncap);
			if (!n)
				return -2;
			*buf = n;
			*cap = ncap;
		}
		(*buf)[len++] = (char)c;
	}
	if (!any)
		return -1;
	if (!*buf) {
		*buf = malloc(1);
		if (!*buf)
			return -2;
		*cap = 1;
	}
	(*buf)[len] = '\0';
	return (ssize_t)len;
}

static void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
#define AUTOFILE __attribute__((cleanup(fclosep)))

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes exactly n bytes from 2n hex digits; false if s is anything else. */
static bool hex_decode(const char *s, unsigned char *out, size_t n)
{
	if (!s || strlen(s) != 2 * n)
		return false;
	for (size_t i = 0; i < n; i++) {
		int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return true;
}

/* Parses {"seq", "head", "ts", "sig"[, "pubkey"]} into c. */
static bool cp_from_json(json_t *o, struct cp *c)
{
	json_t *seq = json_object_get(o, "seq"), *ts = json_object_get(o, "ts");
	json_t *pub = json_object_get(o, "pubkey");
	if (!json_is_integer(seq) || !json_is_integer(ts) || json_integer_value(seq) < 1)
		return false;
	c->seq = json_integer_value(seq);
	c->ts = json_integer_value(ts);
	if (!hex_decode(json_string_value(json_object_get(o, "head")), c->head, HASH_LEN) ||
	    !hex_decode(json_string_value(json_object_get(o, "sig")), c->sig, SIG_LEN))
		return false;
	c->has_pub = pub != NULL;
	if (pub && !hex_decode(json_string_value(pub), c->pub, PUB_LEN))
		return false;
	return true;
}

/* Calls fn with each line of the JSON Lines file path, parsed (NULL if the
 * line is not JSON; empty lines are skipped when skip_empty), and its
 * number. fn returns < 0 to fail, 1 to stop, 0 to go on; so does this.
 * what names the file in messages ("audit export"). *nlines (may be NULL)
 * gets the number of lines read. */
typedef int (*jsonl_fn)(void *ctx, long lineno, json_t *o, ab_error *err);

static int for_each_jsonl(const char *path, const char *what, bool skip_empty, jsonl_fn fn,
			  void *ctx, long *nlines, ab_error *err)
{
	FILE *f AUTOFILE = fopen(path, "re");
	if (!f)
		return ab_error_errno(err, -errno, "%s %s", what, path);
	char *line AB_AUTOFREE = NULL;
	size_t cap = 0;
	ssize_t n;
	long lineno = 0;
	int r = 0;
	while (r == 0 && (n = read_line(f, &line, &cap)) >= 0) {
		lineno++;
		if (n == 0 && skip_empty)
			continue;
		json_t *o AB_AUTOJSON = json_loads(line, JSON_REJECT_DUPLICATES, NULL);
		r = fn(ctx, lineno, o, err);
	}
	if (nlines)
		*nlines = lineno;
	if (r == 0 && n == -2)
		return ab_error_set(err, -EINVAL, "%s %s: line %ld is too long", what, path,
				    lineno + 1);
	return r;
}

/* What the per-line functions of the readers below need. */
struct jsonl_ctx {
	struct verifier *v;
	const char *path;
};

static int external_line(void *ctx, long lineno, json_t *o, ab_error *err)
{
	struct jsonl_ctx *x = ctx;
	struct cp c = {.external = true, .line = lineno};
	if (!json_is_object(o) || !cp_from_json(o, &c))
		return ab_error_set(err, -EINVAL,
				    "external checkpoints %s: line %ld is not a checkpoint",
				    x->path, lineno);
	return add_cp(x->v, &c, err);
}

static int load_external(struct verifier *v, const char *path, ab_error *err)
{
	struct jsonl_ctx x = {v, path};
	int r = for_each_jsonl(path, "external checkpoints", true, external_line, &x, NULL, err);
	return r < 0 ? r : 0;
}

static int verify_db(struct verifier *v, const char *path, ab_error *err)
{
	int r = ab__audit_open_readonly(path, &v->db, err);
	if (r < 0)
		return r;
	sqlite3 *db = v->db;
	sqlite3_stmt *ms AUTOSTMT = NULL;
	if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'pubkey'", -1, &ms, NULL) ==
		SQLITE_OK &&
	    sqlite3_step(ms) == SQLITE_ROW)
		v->have_stored =
		    hex_decode((const char *)sqlite3_column_text(ms, 0), v->stored, PUB_LEN);

	sqlite3_stmt *cs AUTOSTMT = NULL;
	int rc =
	    sqlite3_prepare_v2(db, "SELECT seq, head, ts, sig FROM checkpoints", -1, &cs, NULL);
	if (rc != SQLITE_OK)
		return ab__audit_db_error(err, db, rc, "read checkpoints");
	while ((rc = sqlite3_step(cs)) == SQLITE_ROW) {
		struct cp c = {.seq = sqlite3_column_int64(cs, 0),
			       .ts = sqlite3_column_int64(cs, 2)};
		if (sqlite3_column_bytes(cs, 1) == HASH_LEN)
			memcpy(c.head, sqlite3_column_blob(cs, 1), HASH_LEN);
		if (sqlite3_column_bytes(cs, 3) == SIG_LEN)
			memcpy(c.sig, sqlite3_column_blob(cs, 3), SIG_LEN);
		if ((r = add_cp(v, &c, err)) < 0)
			return r;
	}
	if (rc != SQLITE_DONE)
		return ab__audit_db_error(err, db, rc, "read checkpoints");
	return 0;
}

static int verify_db_events(struct verifier *v, ab_error *err)
{
	sqlite3 *db = v->db;
	sqlite3_stmt *st AUTOSTMT = NULL;
	int rc = sqlite3_prepare_v2(db, "SELECT " ROW_COLUMNS " FROM events ORDER BY seq", -1, &st,
				    NULL);
	if (rc != SQLITE_OK)
		return ab__audit_db_error(err, db, rc, "read events");
	char why[256];
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct row row;
		bool ok = ab__audit_row_from_stmt(st, &row, why, sizeof(why));
		if (!ok)
			fail(v, row.seq, "%s", why);
		else
			ok = verify_row(v, &row, why, sizeof(why));
		json_decref(row.body);
		if (!ok)
			return 0;
	}
	if (rc != SQLITE_DONE)
		return ab__audit_db_error(err, db, rc, "read events");
	verify_end(v);
	return 0;
}

/* Parses an export event line into r (r->body owned). */
static bool row_from_json(json_t *o, struct row *r)
{
	memset(r, 0, sizeof(*r));
	json_t *seq = json_object_get(o, "seq"), *ts = json_object_get(o, "ts");
	json_t *step = json_object_get(o, "step"), *session = json_object_get(o, "session");
	json_t *body = json_object_get(o, "body");
	r->kind = json_string_value(json_object_get(o, "kind"));
	r->actor = json_string_value(json_object_get(o, "actor"));
	if (!json_is_integer(seq) || !json_is_integer(ts) || !r->kind || !r->actor || !body ||
	    !(json_is_null(step) || json_is_integer(step)) ||
	    !(json_is_null(session) || json_is_string(session)))
		return false;
	r->seq = json_integer_value(seq);
	r->ts = json_integer_value(ts);
	r->step = json_is_null(step) ? -1 : json_integer_value(step);
	if (r->step < -1)
		return false;
	r->session = json_string_value(session);
	r->body = json_incref(body);
	return hex_decode(json_string_value(json_object_get(o, "prev")), r->prev, HASH_LEN) &&
	       hex_decode(json_string_value(json_object_get(o, "hash")), r->hash, HASH_LEN);
}

/* First pass over an export: the header's key and the checkpoints. */
static int header_line(void *ctx, long lineno, json_t *o, ab_error *err)
{
	struct jsonl_ctx *x = ctx;
	if (lineno == 1) {
		const char *fmt = json_string_value(json_object_get(o, "format"));
		if (!fmt || strcmp(fmt, FORMAT_NAME) != 0)
			return ab_error_set(err, -EINVAL,
					    "%s is not an agentbox audit export (no \"%s\" "
					    "header line)",
					    x->path, FORMAT_NAME);
		x->v->have_stored = hex_decode(json_string_value(json_object_get(o, "pubkey")),
					       x->v->stored, PUB_LEN);
		return 0;
	}
	json_t *cpo = json_object_get(o, "checkpoint");
	struct cp c = {.line = lineno};
	/* A malformed checkpoint is reported in order by the event pass. */
	if (!cpo || !cp_from_json(cpo, &c))
		return 0;
	return add_cp(x->v, &c, err);
}

static int verify_jsonl_header(struct verifier *v, const char *path, ab_error *err)
{
	struct jsonl_ctx x = {v, path};
	long lines = 0;
	int r = for_each_jsonl(path, "audit export", false, header_line, &x, &lines, err);
	if (r < 0)
		return r;
	if (lines == 0)
		return ab_error_set(err, -EINVAL, "%s is empty, not an agentbox audit export",
				    path);
	return 0;
}

/* Second pass: every event, in order; stops (1) at the first bad one. */
static int event_line(void *ctx, long lineno, json_t *o, ab_error *err)
{
	(void)err;
	struct verifier *v = ((struct jsonl_ctx *)ctx)->v;
	if (lineno == 1)
		return 0;
	if (!json_is_object(o)) {
		fail(v, v->expect, "line %ld: not a JSON object (the export was modified)", lineno);
		return 1;
	}
	json_t *cpo = json_object_get(o, "checkpoint");
	if (cpo) {
		struct cp c;
		if (!cp_from_json(cpo, &c)) {
			fail(v, v->expect, "line %ld: malformed checkpoint", lineno);
			return 1;
		}
		return 0;
	}
	struct row row;
	char why[256];
	bool ok = row_from_json(o, &row);
	if (!ok)
		fail(v, v->expect, "line %ld: malformed event (the export was modified)", lineno);
	else
		ok = verify_row(v, &row, why, sizeof(why));
	json_decref(row.body);
	return ok ? 0 : 1;
}

static int verify_jsonl_events(struct verifier *v, const char *path, ab_error *err)
{
	struct jsonl_ctx x = {v, path};
	int r = for_each_jsonl(path, "audit export", false, event_line, &x, NULL, err);
	if (r < 0)
		return r;
	if (r == 0) /* read to the end: nothing stopped it */
		verify_end(v);
	return 0;
}

int ab_audit_verify(const char *db_path, const char *jsonl_path, const char *pubkey_hex,
		    const char *external_checkpoints, ab_audit_report *rep, ab_error *err)
{
	memset(rep, 0, sizeof(*rep));
	rep->ok = true;
	if (!db_path == !jsonl_path)
		return ab_error_set(err, -EINVAL, "audit verify: give a database or an export");
	struct verifier v = {.rep = rep, .expect = 1};
	if (pubkey_hex) {
		if (!hex_decode(pubkey_hex, v.pinned, PUB_LEN))
			return ab_error_set(
			    err, -EINVAL, "public key: expected 64 hex digits (a raw Ed25519 key)");
		v.have_pinned = true;
	}
	int r = db_path ? verify_db(&v, db_path, err) : verify_jsonl_header(&v, jsonl_path, err);
	if (r == 0 && external_checkpoints)
		r = load_external(&v, external_checkpoints, err);
	if (r == 0 && !v.have_pinned && !v.have_stored && v.ncp > 0)
		r = ab_error_set(err, -EINVAL,
				 "%s names no public key; give the key to verify with",
				 db_path ? db_path : jsonl_path);
	if (r == 0 && (v.have_pinned || v.have_stored)) {
		v.key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL,
						    v.have_pinned ? v.pinned : v.stored, PUB_LEN);
		if (!v.key)
			r = ab_error_set(err, -EINVAL, "public key: not a valid Ed25519 key");
	}
	if (r == 0) {
		/* An export without checkpoints has no array at all: qsort must
		 * not be given its NULL base, even with a count of 0. */
		if (v.ncp > 1)
			qsort(v.cps, v.ncp, sizeof(*v.cps), cp_order);
		r = db_path ? verify_db_events(&v, err) : verify_jsonl_events(&v, jsonl_path, err);
	}
	EVP_PKEY_free(v.key);
	sqlite3_close(v.db);
	free(v.cps);
	if (r < 0)
		rep->ok = false;
	return r;
}

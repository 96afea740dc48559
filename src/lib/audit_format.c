/* audit_format.c - what the audit log is made of (docs/audit.md): the event
 * kinds, canonical bytes, the hash chain, signed checkpoint messages, event
 * rows as stored, and opening a log for reading. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "audit_internal.h"

const char *const ab_audit_kinds[] = {
    "daemon.start",
    "daemon.stop",
    "sandbox.create",
    "sandbox.close",
    "sandbox.released",
    "sandbox.promote",
    "run",
    "limit",
    "refused",
    "compromise",
    "files.write",
    "files.read",
    "files.list",
    "egress.request",
    "egress.policy",
    "egress.intent",
    "egress.access_request",
    "egress.access_decision",
    "egress.sidecar",
    "sandbox.snapshot",
    "sandbox.rewind",
    "sandbox.inspect",
    "sandbox.fork",
    NULL,
};

void ab__hex_encode(const unsigned char *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

void ab_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned int n = 0;
	if (!EVP_Digest(data ? data : "", len, md, &n, EVP_sha256(), NULL) || n != 32) {
		out[0] = '\0';
		return;
	}
	ab__hex_encode(md, 32, out);
}

int ab__audit_sqlite_code(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
	case SQLITE_PERM:
		return -EROFS;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_CANTOPEN:
		return -ENOENT;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EBADMSG;
	default:
		return -EIO;
	}
}

/* Fills err with "audit log: <what>: <sqlite's message>". */
int ab__audit_db_error(ab_error *err, sqlite3 *db, int rc, const char *what)
{
	const char *m = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
	return ab_error_set(err, ab__audit_sqlite_code(rc), "audit log: %s: %s", what, m);
}

/* SHA-256(prev || data). */
bool ab__audit_chain_hash(const unsigned char prev[HASH_LEN], const char *data, size_t len,
			  unsigned char out[HASH_LEN])
{
	EVP_MD_CTX *c __attribute__((cleanup(md_ctx_freep))) = EVP_MD_CTX_new();
	unsigned int n = 0;
	return c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
	       EVP_DigestUpdate(c, prev, HASH_LEN) == 1 && EVP_DigestUpdate(c, data, len) == 1 &&
	       EVP_DigestFinal_ex(c, out, &n) == 1 && n == HASH_LEN;
}

/* ----------------------------------------------------- canonical bytes */

char *ab_audit_canonical(int64_t seq, int64_t ts_ns, const char *kind, const char *session,
			 int64_t step, const char *actor, const json_t *body)
{
	json_t *o AB_AUTOJSON = json_object();
	if (!o)
		return NULL;
	json_t *jkind = json_string(kind ? kind : "");
	json_t *jactor = json_string(actor ? actor : "");
	json_t *jsession = session ? json_string(session) : json_null();
	/* The object holds a reference to body only while it is encoded. */
	json_t *jbody = body ? json_incref((json_t *)body) : json_null();
	if (json_object_set_new(o, "seq", json_integer(seq)) < 0 ||
	    json_object_set_new(o, "ts", json_integer(ts_ns)) < 0 ||
	    json_object_set_new(o, "kind", jkind) < 0 ||
	    json_object_set_new(o, "session", jsession) < 0 ||
	    json_object_set_new(o, "step", step < 0 ? json_null() : json_integer(step)) < 0 ||
	    json_object_set_new(o, "actor", jactor) < 0 ||
	    json_object_set_new(o, "body", jbody) < 0)
		return NULL;
	return json_dumps(o, CANON_FLAGS);
}

/* The bytes a checkpoint signature covers. */
char *ab__audit_checkpoint_message(int64_t seq, const unsigned char head[HASH_LEN], int64_t ts)
{
	char hex[2 * HASH_LEN + 1];
	ab__hex_encode(head, HASH_LEN, hex);
	json_t *o AB_AUTOJSON =
	    json_pack("{s:s, s:I, s:I}", "head", hex, "seq", (json_int_t)seq, "ts", (json_int_t)ts);
	return o ? json_dumps(o, CANON_FLAGS) : NULL;
}

/* -------------------------------------------------------- event rows */

/* Reads the current row of a statement selecting ROW_COLUMNS. Returns false
 * with why set if a column does not have the type the schema promises. The
 * strings point into the statement and live until its next step. */
bool ab__audit_row_from_stmt(sqlite3_stmt *st, struct row *r, char *why, size_t whylen)
{
	memset(r, 0, sizeof(*r));
	r->seq = sqlite3_column_int64(st, 0);
	const char *bad = NULL;
	if (sqlite3_column_type(st, 1) != SQLITE_INTEGER)
		bad = "ts";
	else if (sqlite3_column_type(st, 2) != SQLITE_TEXT)
		bad = "kind";
	else if (sqlite3_column_type(st, 3) != SQLITE_TEXT &&
		 sqlite3_column_type(st, 3) != SQLITE_NULL)
		bad = "session";
	else if (sqlite3_column_type(st, 4) != SQLITE_INTEGER &&
		 sqlite3_column_type(st, 4) != SQLITE_NULL)
		bad = "step";
	else if (sqlite3_column_type(st, 5) != SQLITE_TEXT)
		bad = "actor";
	else if (sqlite3_column_type(st, 6) != SQLITE_TEXT)
		bad = "body";
	else if (sqlite3_column_type(st, 7) != SQLITE_BLOB ||
		 sqlite3_column_bytes(st, 7) != HASH_LEN)
		bad = "prev";
	else if (sqlite3_column_type(st, 8) != SQLITE_BLOB ||
		 sqlite3_column_bytes(st, 8) != HASH_LEN)
		bad = "hash";
	if (bad) {
		snprintf(why, whylen, "seq %lld: column %s is malformed (the event was modified)",
			 (long long)r->seq, bad);
		return false;
	}
	r->ts = sqlite3_column_int64(st, 1);
	r->kind = (const char *)sqlite3_column_text(st, 2);
	r->session = (const char *)sqlite3_column_text(st, 3);
	r->step = sqlite3_column_type(st, 4) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 4);
	r->actor = (const char *)sqlite3_column_text(st, 5);
	r->body_text = (const char *)sqlite3_column_text(st, 6);
	memcpy(r->prev, sqlite3_column_blob(st, 7), HASH_LEN);
	memcpy(r->hash, sqlite3_column_blob(st, 8), HASH_LEN);
	r->body = json_loads(r->body_text, BODY_LOAD_FLAGS, NULL);
	if (!r->body) {
		snprintf(why, whylen, "seq %lld: body is not valid JSON (the event was modified)",
			 (long long)r->seq);
		return false;
	}
	return true;
}

/* Recomputes the row's hash from its prev and fields. */
bool ab__audit_row_hash_ok(const struct row *r, char *why, size_t whylen)
{
	if (r->body_text) {
		char *canon AB_AUTOFREE = json_dumps(r->body, CANON_FLAGS | JSON_ENCODE_ANY);
		if (!canon || strcmp(canon, r->body_text) != 0) {
			snprintf(why, whylen,
				 "seq %lld: body is not in canonical form (the event was modified)",
				 (long long)r->seq);
			return false;
		}
	}
	char *canon AB_AUTOFREE =
	    ab_audit_canonical(r->seq, r->ts, r->kind, r->session, r->step, r->actor, r->body);
	unsigned char h[HASH_LEN];
	if (!canon || !ab__audit_chain_hash(r->prev, canon, strlen(canon), h) ||
	    memcmp(h, r->hash, HASH_LEN) != 0) {
		snprintf(why, whylen, "seq %lld: hash mismatch (the event was modified)",
			 (long long)r->seq);
		return false;
	}
	return true;
}

/* ------------------------------------------------------ reading: common */

int ab__audit_open_readonly(const char *path, sqlite3 **out, ab_error *err)
{
	if (access(path, R_OK) < 0)
		return ab_error_errno(err, -errno, "audit log %s", path);
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		int r = ab_error_set(err, ab__audit_sqlite_code(rc), "audit log: open %s: %s", path,
				     db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return r;
	}
	sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
	/* A read transaction: one consistent snapshot while a writer appends. */
	rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	sqlite3_stmt *st = NULL;
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'format'", -1, &st,
					NULL);
	if (rc != SQLITE_OK) {
		int r = ab_error_set(err, -EINVAL, "%s is not an agentbox audit log: %s", path,
				     sqlite3_errmsg(db));
		sqlite3_close(db);
		return r;
	}
	sqlite3_finalize(st);
	*out = db;
	return 0;
}

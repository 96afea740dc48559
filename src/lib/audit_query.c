/* audit_query.c - reading an audit log: queries by session, kind and time,
 * and the JSON Lines export (docs/audit.md). */
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "audit_internal.h"

/* ------------------------------------------------------ query, export */

/* The export object of a row: the canonical fields plus prev and hash. */
static json_t *row_to_json(const struct row *r)
{
	char prev[2 * HASH_LEN + 1], hash[2 * HASH_LEN + 1];
	ab__hex_encode(r->prev, HASH_LEN, prev);
	ab__hex_encode(r->hash, HASH_LEN, hash);
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "seq", json_integer(r->seq));
	json_object_set_new(o, "ts", json_integer(r->ts));
	json_object_set_new(o, "kind", json_string(r->kind));
	json_object_set_new(o, "session", r->session ? json_string(r->session) : json_null());
	json_object_set_new(o, "step", r->step < 0 ? json_null() : json_integer(r->step));
	json_object_set_new(o, "actor", json_string(r->actor));
	json_object_set(o, "body", r->body ? r->body : json_null());
	json_object_set_new(o, "prev", json_string(prev));
	json_object_set_new(o, "hash", json_string(hash));
	return o;
}

static int64_t query_rows(sqlite3 *db, const ab_audit_filter *f, ab_audit_row_fn fn, void *ctx,
			  ab_error *err)
{
	char sql[512] = "SELECT " ROW_COLUMNS " FROM events WHERE seq > ?1";
	size_t len = strlen(sql);
	if (f && f->session)
		len += (size_t)snprintf(sql + len, sizeof(sql) - len, " AND session = ?2");
	if (f && f->kind)
		len += (size_t)snprintf(sql + len, sizeof(sql) - len, " AND kind = ?3");
	if (f && f->since_ns)
		len += (size_t)snprintf(sql + len, sizeof(sql) - len, " AND ts >= ?4");
	if (f && f->until_ns)
		len += (size_t)snprintf(sql + len, sizeof(sql) - len, " AND ts <= ?5");
	snprintf(sql + len, sizeof(sql) - len, " ORDER BY seq LIMIT ?6");
	sqlite3_stmt *st AUTOSTMT = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return ab__audit_db_error(err, db, rc, "query");
	sqlite3_bind_int64(st, 1, f ? f->after_seq : 0);
	if (f && f->session)
		sqlite3_bind_text(st, 2, f->session, -1, SQLITE_STATIC);
	if (f && f->kind)
		sqlite3_bind_text(st, 3, f->kind, -1, SQLITE_STATIC);
	if (f && f->since_ns)
		sqlite3_bind_int64(st, 4, f->since_ns);
	if (f && f->until_ns)
		sqlite3_bind_int64(st, 5, f->until_ns);
	sqlite3_bind_int64(st, 6, f && f->limit > 0 ? f->limit : -1);
	char why[256];
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct row row;
		if (!ab__audit_row_from_stmt(st, &row, why, sizeof(why)) && !row.body &&
		    row.body_text)
			/* Keep a damaged body visible (and failing verification). */
			row.body = json_string(row.body_text);
		json_t *o AB_AUTOJSON = row.body_text ? row_to_json(&row) : NULL;
		json_decref(row.body);
		if (!o)
			return ab_error_set(err, -EBADMSG, "audit log: %s", why);
		int stop = fn(o, ctx);
		if (stop)
			return stop < 0 ? stop : 0;
	}
	if (rc != SQLITE_DONE)
		return ab__audit_db_error(err, db, rc, "query");
	return 0;
}

int ab_audit_query(const char *db_path, const ab_audit_filter *f, ab_audit_row_fn fn, void *ctx,
		   ab_error *err)
{
	sqlite3 *db AUTODB = NULL;
	int r = ab__audit_open_readonly(db_path, &db, err);
	if (r < 0)
		return r;
	return (int)query_rows(db, f, fn, ctx, err);
}

struct lines_ctx {
	ab_audit_line_fn fn;
	void *ctx;
};

static int line_row(json_t *event, void *ctx)
{
	struct lines_ctx *l = ctx;
	char *text AB_AUTOFREE = json_dumps(event, CANON_FLAGS);
	if (!text)
		return -ENOMEM;
	return l->fn(text, strlen(text), l->ctx);
}

int ab_audit_query_lines(const char *db_path, const ab_audit_filter *f, ab_audit_line_fn fn,
			 void *ctx, ab_error *err)
{
	struct lines_ctx l = {.fn = fn, .ctx = ctx};
	int r = ab_audit_query(db_path, f, line_row, &l, err);
	if (r == -ENOMEM && err && !err->code)
		return ab_error_set(err, -ENOMEM, "audit query: out of memory");
	return r;
}

struct export_ctx {
	FILE *out;
	sqlite3_stmt *cps; /* checkpoints in seq order, stepped alongside */
	bool cp_pending;   /* cps holds a row not yet written */
	bool cp_done;	   /* cps has returned its last row */
	bool write_failed;
};

static int write_json_line(FILE *out, json_t *o)
{
	char *text AB_AUTOFREE = json_dumps(o, CANON_FLAGS);
	if (!text || fputs(text, out) == EOF || fputc('\n', out) == EOF)
		return -1;
	return 0;
}

/* Writes the checkpoint rows with seq <= upto (all if upto < 0). */
static int export_cps(struct export_ctx *x, int64_t upto)
{
	for (;;) {
		if (x->cp_done)
			return 0;
		if (!x->cp_pending) {
			/* Stepping past the end would restart the statement. */
			if (sqlite3_step(x->cps) != SQLITE_ROW) {
				x->cp_done = true;
				return 0;
			}
			x->cp_pending = true;
		}
		int64_t seq = sqlite3_column_int64(x->cps, 0);
		if (upto >= 0 && seq > upto)
			return 0;
		char head[2 * HASH_LEN + 1] = "", sig[2 * SIG_LEN + 1] = "";
		if (sqlite3_column_bytes(x->cps, 1) == HASH_LEN)
			ab__hex_encode(sqlite3_column_blob(x->cps, 1), HASH_LEN, head);
		if (sqlite3_column_bytes(x->cps, 3) == SIG_LEN)
			ab__hex_encode(sqlite3_column_blob(x->cps, 3), SIG_LEN, sig);
		json_t *o AB_AUTOJSON = json_pack(
		    "{s:{s:I, s:s, s:I, s:s}}", "checkpoint", "seq", (json_int_t)seq, "head", head,
		    "ts", (json_int_t)sqlite3_column_int64(x->cps, 2), "sig", sig);
		x->cp_pending = false;
		if (!o || write_json_line(x->out, o) < 0)
			return -1;
	}
}

static int export_row(json_t *event, void *ctx)
{
	struct export_ctx *x = ctx;
	if (write_json_line(x->out, event) < 0 ||
	    export_cps(x, json_integer_value(json_object_get(event, "seq"))) < 0) {
		x->write_failed = true;
		return 1;
	}
	return 0;
}

int ab_audit_export(const char *db_path, FILE *out, ab_error *err)
{
	sqlite3 *db AUTODB = NULL;
	int r = ab__audit_open_readonly(db_path, &db, err);
	if (r < 0)
		return r;
	char pub[2 * PUB_LEN + 1] = "";
	sqlite3_stmt *ms AUTOSTMT = NULL;
	if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'pubkey'", -1, &ms, NULL) ==
		SQLITE_OK &&
	    sqlite3_step(ms) == SQLITE_ROW && sqlite3_column_text(ms, 0))
		snprintf(pub, sizeof(pub), "%s", (const char *)sqlite3_column_text(ms, 0));
	struct export_ctx x = {.out = out};
	int rc = sqlite3_prepare_v2(db, "SELECT seq, head, ts, sig FROM checkpoints ORDER BY seq",
				    -1, &x.cps, NULL);
	if (rc != SQLITE_OK)
		return ab__audit_db_error(err, db, rc, "read checkpoints");
	json_t *hdr AB_AUTOJSON = json_pack("{s:s, s:s}", "format", FORMAT_NAME, "pubkey", pub);
	if (!hdr || write_json_line(out, hdr) < 0)
		x.write_failed = true;
	if (!x.write_failed) {
		ab_audit_filter all = {0};
		r = (int)query_rows(db, &all, export_row, &x, err);
		if (r == 0 && !x.write_failed && export_cps(&x, -1) < 0)
			x.write_failed = true;
	}
	sqlite3_finalize(x.cps);
	if (r < 0)
		return r;
	if (x.write_failed || fflush(out) == EOF)
		return ab_error_errno(err, errno ? -errno : -EIO, "audit export: write");
	return 0;
}

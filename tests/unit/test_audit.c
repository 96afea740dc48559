/* test_audit.c - the tamper-evident audit log (src/lib/audit.c): canonical
 * encoding, the hash chain and signed checkpoints, every tamper case of the
 * design (each must make verify fail and name the bad sequence number),
 * exports, the key file's permissions, a full disk and a crash. The tamper
 * cases edit the SQLite file directly, as an attacker with write access
 * would. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sqlite3.h>

#include "audit.h"
#include "internal.h"
#include "unit.h"

struct logdir {
	char dir[64];
	char db[128];
	char key[128];
	char cps[128]; /* external checkpoints file */
};

static void logdir_init(struct logdir *d)
{
	snprintf(d->dir, sizeof(d->dir), "/tmp/ab-audit-XXXXXX");
	CHECK(mkdtemp(d->dir) != NULL);
	snprintf(d->db, sizeof(d->db), "%s/audit.db", d->dir);
	snprintf(d->key, sizeof(d->key), "%s/audit.key", d->dir);
	snprintf(d->cps, sizeof(d->cps), "%s/checkpoints.jsonl", d->dir);
}

static ab_audit *open_log(const struct logdir *d, unsigned every, bool external)
{
	ab_audit_opts o = {.db_path = d->db,
			   .key_path = d->key,
			   .checkpoints_path = external ? d->cps : NULL,
			   .checkpoint_every = every,
			   .checkpoint_seconds = 3600};
	ab_audit *a = NULL;
	ab_error err = {0};
	int r = ab_audit_open(&o, &a, &err);
	if (r < 0)
		fprintf(stderr, "open: %s\n", err.msg);
	CHECK_EQ_INT(r, 0);
	return a;
}

/* Appends n events "seq i" with a body {"i": i, "msg": "hello"}, committing
 * after each. */
static void append_n(ab_audit *a, int n)
{
	for (int i = 0; i < n; i++) {
		json_t *body AB_AUTOJSON = json_pack("{s:i, s:s}", "i", i, "msg", "hello");
		ab_audit_event ev = {.kind = i % 2 ? "run" : "sandbox.create",
				     .session = i % 3 ? "sb-1" : NULL,
				     .step = i % 2 ? i : -1,
				     .actor = "daemon",
				     .body = body};
		ab_error err = {0};
		int64_t seq = ab_audit_append(a, &ev, &err);
		if (seq < 0)
			fprintf(stderr, "append: %s\n", err.msg);
		CHECK(seq > 0);
		int r = ab_audit_commit(a, &err);
		if (r < 0)
			fprintf(stderr, "commit: %s\n", err.msg);
		CHECK_EQ_INT(r, 0);
	}
}

/* A log of n events with a checkpoint every `every`, closed. */
static void make_log(struct logdir *d, int n, unsigned every, bool external)
{
	logdir_init(d);
	ab_audit *a = open_log(d, every, external);
	append_n(a, n);
	ab_audit_close(a);
}

static void sql(const char *db, const char *text)
{
	sqlite3 *h = NULL;
	CHECK_EQ_INT(sqlite3_open(db, &h), SQLITE_OK);
	char *msg = NULL;
	int rc = sqlite3_exec(h, text, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fprintf(stderr, "sql %s: %s\n", text, msg);
	CHECK_EQ_INT(rc, SQLITE_OK);
	sqlite3_close(h);
}

static ab_audit_report verify(const char *db, const char *jsonl, const char *pub, const char *ext)
{
	ab_audit_report rep;
	ab_error err = {0};
	int r = ab_audit_verify(db, jsonl, pub, ext, &rep, &err);
	if (r < 0)
		fprintf(stderr, "verify: %s\n", err.msg);
	CHECK_EQ_INT(r, 0);
	return rep;
}

static void expect_bad(ab_audit_report rep, int64_t seq, const char *why)
{
	CHECK(!rep.ok);
	CHECK_EQ_INT(rep.bad_seq, seq);
	CHECK_CONTAINS(rep.why, why);
}

static void pubkey_of(const struct logdir *d, char hex[65])
{
	ab_audit *a = open_log(d, 0, false);
	ab_audit_pubkey_hex(a, hex);
	ab_audit_close(a);
}

AB_TEST(audit_canonical_sorted_and_stable)
{
	json_t *b1 AB_AUTOJSON =
	    json_loads("{\"z\": 1, \"a\": \"\\u00e9\", \"m\": [true, null]}", 0, NULL);
	json_t *b2 AB_AUTOJSON =
	    json_loads("{\"m\": [true, null], \"a\": \"\\u00e9\", \"z\": 1}", 0, NULL);
	CHECK(b1 && b2);
	char *c1 AB_AUTOFREE =
	    ab_audit_canonical(3, 1700000000123456789, "run", NULL, -1, "daemon", b1);
	char *c2 AB_AUTOFREE =
	    ab_audit_canonical(3, 1700000000123456789, "run", NULL, -1, "daemon", b2);
	CHECK_STR(c1,
		  "{\"actor\":\"daemon\",\"body\":{\"a\":\"\\u00E9\",\"m\":[true,null],\"z\":1},"
		  "\"kind\":\"run\",\"seq\":3,\"session\":null,\"step\":null,"
		  "\"ts\":1700000000123456789}");
	CHECK_STR(c1, c2);
	char *c3 AB_AUTOFREE = ab_audit_canonical(3, 5, "run", "sb-1", 0, "daemon", b1);
	CHECK_CONTAINS(c3, "\"session\":\"sb-1\",\"step\":0,");
	/* Not valid UTF-8: no canonical form, so the event cannot be appended. */
	CHECK(ab_audit_canonical(1, 1, "r\xff", NULL, -1, "d", b1) == NULL);
}

/* The log holds every run's code: owner-only, its WAL included; the WAL
 * file stays after a close so that the next daemon reuses it in place. */
AB_TEST(audit_files_are_private_and_the_wal_persists)
{
	struct logdir d;
	logdir_init(&d);
	ab_audit *a = open_log(&d, 0, false);
	append_n(a, 3);
	char wal[160];
	snprintf(wal, sizeof(wal), "%s-wal", d.db);
	struct stat st;
	CHECK_EQ_INT(stat(d.db, &st), 0);
	CHECK_EQ_INT(st.st_mode & 0777, 0600);
	CHECK_EQ_INT(stat(wal, &st), 0);
	CHECK_EQ_INT(st.st_mode & 0777, 0600);
	ab_audit_close(a);
	CHECK_EQ_INT(stat(wal, &st), 0);
	CHECK(st.st_size > 0);
	/* Reopened (after someone loosened the mode), the chain goes on and
	 * verifies, and the files are private again. */
	CHECK_EQ_INT(chmod(d.db, 0644), 0);
	a = open_log(&d, 0, false);
	CHECK_EQ_INT(stat(d.db, &st), 0);
	CHECK_EQ_INT(st.st_mode & 0777, 0600);
	append_n(a, 2);
	ab_audit_close(a);
	ab_audit_report rep = verify(d.db, NULL, NULL, NULL);
	CHECK(rep.ok);
	CHECK_EQ_INT(rep.events, 5);
}

AB_TEST(audit_chain_of_100_verifies)
{
	struct logdir d;
	logdir_init(&d);
	ab_audit *a = open_log(&d, 10, false);
	CHECK_EQ_INT(ab_audit_pending(a), 0);
	json_t *body AB_AUTOJSON = json_object();
	ab_audit_event ev = {.kind = "run", .session = "sb", .step = 1, .actor = "t", .body = body};
	ab_error err = {0};
	CHECK_EQ_INT(ab_audit_append(a, &ev, &err), 1);
	CHECK_EQ_INT(ab_audit_pending(a), 1);
	CHECK_EQ_INT(ab_audit_commit(a, &err), 0);
	CHECK_EQ_INT(ab_audit_pending(a), 0);
	append_n(a, 99);
	ab_audit_close(a);
	ab_audit_report rep = verify(d.db, NULL, NULL, NULL);
	CHECK(rep.ok);
	CHECK_EQ_INT(rep.events, 100);
	CHECK_EQ_INT(rep.checkpoints, 10);
	CHECK_EQ_INT(rep.bad_seq, 0);
	CHECK(!rep.torn_tail);

	/* Reopening continues the chain. */
	a = open_log(&d, 10, false);
	CHECK_EQ_INT(ab_audit_append(a, &ev, &err), 101);
	ab_audit_close(a);
	rep = verify(d.db, NULL, NULL, NULL);
	CHECK(rep.ok);
	CHECK_EQ_INT(rep.events, 101);
	CHECK_EQ_INT(rep.checkpoints, 11); /* close signs the tail */
}

AB_TEST(audit_timestamps_never_decrease)
{
	struct logdir d;
	make_log(&d, 50, 0, false);
	sqlite3 *h = NULL;
	CHECK_EQ_INT(sqlite3_open(d.db, &h), SQLITE_OK);
	sqlite3_stmt *st = NULL;
	CHECK_EQ_INT(sqlite3_prepare_v2(h, "SELECT ts FROM events ORDER BY seq", -1, &st, NULL), 0);
	int64_t last = 0;
	int n = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		int64_t ts = sqlite3_column_int64(st, 0);
		CHECK(ts >= last);
		CHECK(ts > 1600000000000000000); /* nanoseconds since 1970 */
		last = ts;
		n++;
	}
	CHECK_EQ_INT(n, 50);
	sqlite3_finalize(st);
	sqlite3_close(h);
}

/* Flips one bit of the first 'h' of seq's body ("hello" -> "iello"). */
static void flip_body_bit(const char *db, int64_t seq)
{
	sqlite3 *h = NULL;
	CHECK_EQ_INT(sqlite3_open(db, &h), SQLITE_OK);
	sqlite3_stmt *st = NULL;
	CHECK_EQ_INT(sqlite3_prepare_v2(h, "SELECT body FROM events WHERE seq = ?", -1, &st, NULL),
		     0);
	sqlite3_bind_int64(st, 1, seq);
	CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
	char *body = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	char *p = strchr(body, 'h');
	CHECK(p != NULL);
	*p ^= 1;
	CHECK_EQ_INT(
	    sqlite3_prepare_v2(h, "UPDATE events SET body = ? WHERE seq = ?", -1, &st, NULL), 0);
	sqlite3_bind_text(st, 1, body, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, seq);
	CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	sqlite3_close(h);
	free(body);
}

AB_TEST(audit_tamper_bit_flip_in_body)
{
	struct logdir d;
	make_log(&d, 20, 5, false);
	CHECK(verify(d.db, NULL, NULL, NULL).ok);
	flip_body_bit(d.db, 7);
	expect_bad(verify(d.db, NULL, NULL, NULL), 7,
		   "seq 7: hash mismatch (the event was modified)");
}

AB_TEST(audit_tamper_body_not_canonical)
{
	struct logdir d;
	make_log(&d, 5, 5, false);
	/* Same JSON value, other bytes: still an edit of the stored event. */
	sql(d.db, "UPDATE events SET body = ' ' || body WHERE seq = 3");
	expect_bad(verify(d.db, NULL, NULL, NULL), 3, "seq 3: body is not in canonical form");
}

AB_TEST(audit_tamper_row_deleted)
{
	struct logdir d;
	make_log(&d, 20, 5, false);
	sql(d.db, "DELETE FROM events WHERE seq = 9");
	expect_bad(verify(d.db, NULL, NULL, NULL), 9, "seq 9 is missing (deleted)");
}

AB_TEST(audit_tamper_rows_swapped)
{
	struct logdir d;
	make_log(&d, 20, 50, false);
	/* Swap every column but seq between rows 5 and 6. */
	sql(d.db, "CREATE TEMP TABLE t AS SELECT * FROM events WHERE seq IN (5, 6);"
		  "UPDATE events SET (ts, kind, session, step, actor, body, prev, hash) = "
		  " (SELECT ts, kind, session, step, actor, body, prev, hash FROM t "
		  "  WHERE t.seq = 11 - events.seq) WHERE seq IN (5, 6);");
	expect_bad(verify(d.db, NULL, NULL, NULL), 5,
		   "seq 5: prev does not match the hash of seq 4 (rows swapped");
}

AB_TEST(audit_tamper_tail_truncated)
{
	struct logdir d;
	make_log(&d, 20, 5, true);
	char pub[65];
	pubkey_of(&d, pub);
	CHECK(verify(d.db, NULL, pub, d.cps).ok);
	CHECK_EQ_INT(verify(d.db, NULL, pub, d.cps).checkpoints, 8); /* 4 stored + 4 external */

	/* The attacker drops the tail and the checkpoints that cover it. */
	sql(d.db, "DELETE FROM events WHERE seq > 12; DELETE FROM checkpoints WHERE seq > 12;");
	/* Only the external copy can tell. */
	CHECK(verify(d.db, NULL, pub, NULL).ok);
	ab_audit_report rep = verify(d.db, NULL, pub, d.cps);
	expect_bad(rep, 13,
		   "log truncated: external checkpoint covers seq 20 but the log ends at 12");
	CHECK(rep.torn_tail);
}

AB_TEST(audit_tamper_tail_truncated_internal_checkpoint)
{
	struct logdir d;
	make_log(&d, 20, 5, false);
	sql(d.db, "DELETE FROM events WHERE seq > 17");
	ab_audit_report rep = verify(d.db, NULL, NULL, NULL);
	expect_bad(rep, 18, "log truncated: checkpoint covers seq 20 but the log ends at 17");
	CHECK(rep.torn_tail);
	/* And the writer refuses to append to it. */
	ab_audit_opts o = {.db_path = d.db, .key_path = d.key};
	ab_audit *a = NULL;
	ab_error err = {0};
	CHECK(ab_audit_open(&o, &a, &err) < 0);
	CHECK_CONTAINS(err.msg, "log ends at 17");
}

AB_TEST(audit_tamper_row_spliced_from_another_log)
{
	struct logdir d, other;
	make_log(&d, 10, 50, false);
	make_log(&other, 10, 50, false);
	char text[512];
	snprintf(text, sizeof(text),
		 "ATTACH '%s' AS o; DELETE FROM events WHERE seq = 4;"
		 "INSERT INTO events SELECT * FROM o.events WHERE seq = 4;",
		 other.db);
	sql(d.db, text);
	expect_bad(verify(d.db, NULL, NULL, NULL), 4,
		   "seq 4: prev does not match the hash of seq 3");
}

/* Replaces the signature of the checkpoint at seq with one by key_path. */
static void resign_checkpoint(const char *db, int64_t seq, const char *key_path)
{
	FILE *f = fopen(key_path, "r");
	CHECK(f != NULL);
	EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	CHECK(key != NULL);
	sqlite3 *h = NULL;
	CHECK_EQ_INT(sqlite3_open(db, &h), SQLITE_OK);
	sqlite3_stmt *st = NULL;
	CHECK_EQ_INT(
	    sqlite3_prepare_v2(h, "SELECT head, ts FROM checkpoints WHERE seq = ?", -1, &st, NULL),
	    0);
	sqlite3_bind_int64(st, 1, seq);
	CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
	char hex[65];
	const unsigned char *head = sqlite3_column_blob(st, 0);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", head[i]);
	json_t *m AB_AUTOJSON = json_pack("{s:s, s:I, s:I}", "head", hex, "seq", (json_int_t)seq,
					  "ts", (json_int_t)sqlite3_column_int64(st, 1));
	sqlite3_finalize(st);
	char *msg AB_AUTOFREE = json_dumps(m, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENSURE_ASCII);
	unsigned char sig[64];
	size_t siglen = sizeof(sig);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	CHECK(EVP_DigestSignInit(c, NULL, NULL, NULL, key) == 1);
	CHECK(EVP_DigestSign(c, sig, &siglen, (unsigned char *)msg, strlen(msg)) == 1);
	EVP_MD_CTX_free(c);
	EVP_PKEY_free(key);
	CHECK_EQ_INT(
	    sqlite3_prepare_v2(h, "UPDATE checkpoints SET sig = ? WHERE seq = ?", -1, &st, NULL),
	    0);
	sqlite3_bind_blob(st, 1, sig, 64, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, seq);
	CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	sqlite3_close(h);
}

AB_TEST(audit_tamper_checkpoint_resigned_with_another_key)
{
	struct logdir d, other;
	make_log(&d, 20, 5, false);
	make_log(&other, 1, 5, false);
	char pub[65], other_pub[65];
	pubkey_of(&d, pub);
	pubkey_of(&other, other_pub);
	CHECK(strcmp(pub, other_pub) != 0);

	resign_checkpoint(d.db, 10, other.key);
	expect_bad(verify(d.db, NULL, pub, NULL), 10, "checkpoint at seq 10: bad signature");
	/* Also with the key the log names, as long as the attacker left it. */
	expect_bad(verify(d.db, NULL, NULL, NULL), 10, "checkpoint at seq 10: bad signature");

	/* Re-signing everything and renaming the key defeats the stored key
	 * but not a pinned one. */
	for (int s = 5; s <= 20; s += 5)
		resign_checkpoint(d.db, s, other.key);
	char text[256];
	snprintf(text, sizeof(text), "UPDATE meta SET value = '%s' WHERE key = 'pubkey'",
		 other_pub);
	sql(d.db, text);
	CHECK(verify(d.db, NULL, NULL, NULL).ok);
	expect_bad(verify(d.db, NULL, pub, NULL), 5, "checkpoint at seq 5: bad signature");
}

AB_TEST(audit_tamper_rewritten_with_valid_chain_caught_by_checkpoint)
{
	/* An attacker who edits an event and recomputes every later hash
	 * keeps the chain valid, but not the signed checkpoint heads. */
	struct logdir d;
	make_log(&d, 10, 5, false);
	ab_audit_report before = verify(d.db, NULL, NULL, NULL);
	CHECK(before.ok);
	sqlite3 *h = NULL;
	CHECK_EQ_INT(sqlite3_open(d.db, &h), SQLITE_OK);
	unsigned char prev[32];
	for (int64_t seq = 1; seq <= 10; seq++) {
		sqlite3_stmt *st = NULL;
		CHECK_EQ_INT(sqlite3_prepare_v2(h,
						"SELECT ts, kind, session, step, actor, body, prev "
						"FROM events WHERE seq = ?",
						-1, &st, NULL),
			     0);
		sqlite3_bind_int64(st, 1, seq);
		CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
		if (seq == 1)
			memcpy(prev, sqlite3_column_blob(st, 6), 32);
		json_t *body AB_AUTOJSON =
		    json_loads((const char *)sqlite3_column_text(st, 5), JSON_DECODE_ANY, NULL);
		if (seq == 3)
			json_object_set_new(body, "msg", json_string("forged"));
		char *canon AB_AUTOFREE = ab_audit_canonical(
		    seq, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
		    (const char *)sqlite3_column_text(st, 2),
		    sqlite3_column_type(st, 3) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 3),
		    (const char *)sqlite3_column_text(st, 4), body);
		sqlite3_finalize(st);
		char *btext AB_AUTOFREE =
		    json_dumps(body, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENSURE_ASCII);
		unsigned char hash[32];
		unsigned int n;
		EVP_MD_CTX *c = EVP_MD_CTX_new();
		EVP_DigestInit_ex(c, EVP_sha256(), NULL);
		EVP_DigestUpdate(c, prev, 32);
		EVP_DigestUpdate(c, canon, strlen(canon));
		EVP_DigestFinal_ex(c, hash, &n);
		EVP_MD_CTX_free(c);
		CHECK_EQ_INT(sqlite3_prepare_v2(
				 h, "UPDATE events SET body = ?, prev = ?, hash = ? WHERE seq = ?",
				 -1, &st, NULL),
			     0);
		sqlite3_bind_text(st, 1, btext, -1, SQLITE_TRANSIENT);
		sqlite3_bind_blob(st, 2, prev, 32, SQLITE_TRANSIENT);
		sqlite3_bind_blob(st, 3, hash, 32, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 4, seq);
		CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
		sqlite3_finalize(st);
		memcpy(prev, hash, 32);
	}
	sqlite3_close(h);
	expect_bad(verify(d.db, NULL, NULL, NULL), 5,
		   "checkpoint at seq 5: head does not match the hash of seq 5");
}

AB_TEST(audit_open_refuses_a_broken_tail)
{
	struct logdir d;
	make_log(&d, 20, 100, false);
	flip_body_bit(d.db, 20);
	ab_audit_opts o = {.db_path = d.db, .key_path = d.key};
	ab_audit *a = NULL;
	ab_error err = {0};
	CHECK(ab_audit_open(&o, &a, &err) < 0);
	CHECK_CONTAINS(err.msg, "seq 20: hash mismatch");
	CHECK_CONTAINS(err.msg, "refusing to append");
}

static void export_to(const char *db, const char *path)
{
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	ab_error err = {0};
	int r = ab_audit_export(db, f, &err);
	if (r < 0)
		fprintf(stderr, "export: %s\n", err.msg);
	CHECK_EQ_INT(r, 0);
	CHECK_EQ_INT(fclose(f), 0);
}

AB_TEST(audit_export_verifies_and_detects_edits)
{
	struct logdir d;
	make_log(&d, 12, 5, true);
	char pub[65], exp[160], bad[160];
	pubkey_of(&d, pub);
	snprintf(exp, sizeof(exp), "%s/export.jsonl", d.dir);
	snprintf(bad, sizeof(bad), "%s/bad.jsonl", d.dir);
	export_to(d.db, exp);

	ab_audit_report rep = verify(NULL, exp, pub, d.cps);
	CHECK(rep.ok);
	CHECK_EQ_INT(rep.events, 12);
	CHECK_EQ_INT(rep.checkpoints, 6); /* 5, 10, 12 (at close), each twice */

	/* The format: a header, events with hashes, checkpoints after. */
	FILE *f = fopen(exp, "r");
	char line[4096];
	CHECK(fgets(line, sizeof(line), f) != NULL);
	CHECK_CONTAINS(line, "\"format\":\"agentbox-audit/1\"");
	CHECK_CONTAINS(line, pub);
	CHECK(fgets(line, sizeof(line), f) != NULL);
	CHECK_CONTAINS(line, "\"hash\":\"");
	CHECK_CONTAINS(line, "\"prev\":\"0000000000");
	CHECK_CONTAINS(line, "\"seq\":1,");

	/* Edit the body of seq 3 ("hello" -> "jello"). */
	rewind(f);
	FILE *g = fopen(bad, "w");
	int lineno = 0;
	while (fgets(line, sizeof(line), f)) {
		if (++lineno == 4) {
			CHECK_CONTAINS(line, "\"seq\":3,");
			*strstr(line, "hello") = 'j';
		}
		fputs(line, g);
	}
	fclose(f);
	fclose(g);
	expect_bad(verify(NULL, bad, pub, NULL), 3, "seq 3: hash mismatch");

	/* A truncated export is caught by the external checkpoints. */
	g = fopen(bad, "w");
	f = fopen(exp, "r");
	for (lineno = 0; lineno < 10 && fgets(line, sizeof(line), f); lineno++)
		fputs(line, g);
	fclose(f);
	fclose(g);
	expect_bad(verify(NULL, bad, pub, d.cps), 9,
		   "log truncated: external checkpoint covers seq 12");

	/* Not an export at all. */
	ab_audit_report r2;
	ab_error err = {0};
	CHECK(ab_audit_verify(NULL, d.cps, NULL, NULL, &r2, &err) < 0);
	CHECK_CONTAINS(err.msg, "not an agentbox audit export");
}

/* Found by tests/fuzz/fuzz_audit.c: an export without any checkpoint made
 * the verifier pass a NULL array to qsort (undefined behaviour, reported by
 * the sanitizer build). It verifies, with nothing checked. */
AB_TEST(audit_export_without_checkpoints_verifies)
{
	struct logdir d;
	logdir_init(&d);
	char exp[160];
	snprintf(exp, sizeof(exp), "%s/export.jsonl", d.dir);
	FILE *f = fopen(exp, "w");
	CHECK(f != NULL);
	fprintf(f, "{\"format\": \"agentbox-audit/1\", \"pubkey\": \"%064d\"}\n", 0);
	fclose(f);
	ab_audit_report rep = verify(NULL, exp, NULL, NULL);
	CHECK(rep.ok);
	CHECK_EQ_INT(rep.events, 0);
	CHECK_EQ_INT(rep.checkpoints, 0);
}

AB_TEST(audit_key_file_private)
{
	struct logdir d;
	make_log(&d, 1, 0, false);
	struct stat st;
	CHECK_EQ_INT(stat(d.key, &st), 0);
	CHECK_EQ_INT(st.st_mode & 07777, 0600);
	CHECK(S_ISREG(st.st_mode));

	CHECK_EQ_INT(chmod(d.key, 0644), 0);
	ab_audit_opts o = {.db_path = d.db, .key_path = d.key};
	ab_audit *a = NULL;
	ab_error err = {0};
	CHECK_EQ_INT(ab_audit_open(&o, &a, &err), -EPERM);
	CHECK_CONTAINS(err.msg, "mode 0644");
	CHECK_CONTAINS(err.msg, d.key);

	/* Another key file for an existing log is refused too. */
	CHECK_EQ_INT(chmod(d.key, 0600), 0);
	char other[160];
	snprintf(other, sizeof(other), "%s/other.key", d.dir);
	o.key_path = other;
	CHECK_EQ_INT(ab_audit_open(&o, &a, &err), -EPERM);
	CHECK_CONTAINS(err.msg, "refusing to mix keys");
}

static void redact_secret(const char *kind, json_t *body, void *ctx)
{
	++*(int *)ctx;
	if (strcmp(kind, "run") == 0 && json_object_get(body, "secret"))
		json_object_set_new(body, "secret", json_string("[REDACTED]"));
}

static int collect(json_t *event, void *ctx)
{
	json_array_append(ctx, event);
	return 0;
}

AB_TEST(audit_redactor_runs_before_hashing)
{
	struct logdir d;
	logdir_init(&d);
	ab_audit *a = open_log(&d, 0, false);
	int calls = 0;
	ab_audit_set_redactor(a, redact_secret, &calls);
	json_t *body AB_AUTOJSON = json_pack("{s:s}", "secret", "hunter2");
	ab_audit_event ev = {.kind = "run", .step = -1, .actor = "t", .body = body};
	ab_error err = {0};
	CHECK_EQ_INT(ab_audit_append(a, &ev, &err), 1);
	CHECK_EQ_INT(ab_audit_commit(a, &err), 0);
	ab_audit_close(a);
	CHECK_EQ_INT(calls, 1);
	json_t *rows AB_AUTOJSON = json_array();
	CHECK_EQ_INT(ab_audit_query(d.db, NULL, collect, rows, &err), 0);
	CHECK_EQ_INT(json_array_size(rows), 1);
	json_t *e = json_array_get(rows, 0);
	CHECK_STR(json_string_value(json_object_get(json_object_get(e, "body"), "secret")),
		  "[REDACTED]");
	CHECK(verify(d.db, NULL, NULL, NULL).ok);
}

AB_TEST(audit_query_filters)
{
	struct logdir d;
	make_log(&d, 30, 0, false);
	ab_error err = {0};
	json_t *rows AB_AUTOJSON = json_array();
	ab_audit_filter f = {.session = "sb-1", .kind = "run"};
	CHECK_EQ_INT(ab_audit_query(d.db, &f, collect, rows, &err), 0);
	/* i odd and not a multiple of 3: 1 5 7 11 13 17 19 23 25 29 */
	CHECK_EQ_INT(json_array_size(rows), 10);
	size_t i;
	json_t *e;
	int64_t last = 0;
	json_array_foreach(rows, i, e)
	{
		CHECK_STR(json_string_value(json_object_get(e, "kind")), "run");
		CHECK_STR(json_string_value(json_object_get(e, "session")), "sb-1");
		CHECK(json_integer_value(json_object_get(e, "seq")) > last);
		last = json_integer_value(json_object_get(e, "seq"));
		CHECK_EQ_INT(strlen(json_string_value(json_object_get(e, "hash"))), 64);
	}

	json_array_clear(rows);
	ab_audit_filter tail = {.after_seq = 25, .limit = 3};
	CHECK_EQ_INT(ab_audit_query(d.db, &tail, collect, rows, &err), 0);
	CHECK_EQ_INT(json_array_size(rows), 3);
	CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(rows, 0), "seq")), 26);
	CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(rows, 0), "step")), 25);
	CHECK(json_is_null(json_object_get(json_array_get(rows, 1), "step")));

	int64_t ts10 = json_integer_value(json_object_get(json_array_get(rows, 0), "ts"));
	json_array_clear(rows);
	ab_audit_filter since = {.since_ns = ts10};
	CHECK_EQ_INT(ab_audit_query(d.db, &since, collect, rows, &err), 0);
	CHECK(json_array_size(rows) >= 5 && json_array_size(rows) <= 30);
	json_array_clear(rows);
	ab_audit_filter until = {.until_ns = 1};
	CHECK_EQ_INT(ab_audit_query(d.db, &until, collect, rows, &err), 0);
	CHECK_EQ_INT(json_array_size(rows), 0);

	char missing[160];
	snprintf(missing, sizeof(missing), "%s/nope.db", d.dir);
	CHECK(ab_audit_query(missing, NULL, collect, rows, &err) < 0);
	CHECK_CONTAINS(err.msg, "nope.db");
}

AB_TEST(audit_commit_on_full_disk_fails_clearly)
{
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		SKIP("cannot make a mount namespace: %s", strerror(errno));
	}
	struct logdir d;
	logdir_init(&d);
	CHECK_EQ_INT(mount("tmpfs", d.dir, "tmpfs", 0, "size=128k"), 0);
	ab_audit *a = open_log(&d, 1000, false);
	char big[8192];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	json_t *body AB_AUTOJSON = json_pack("{s:s}", "data", big);
	ab_audit_event ev = {.kind = "run", .step = -1, .actor = "t", .body = body};
	ab_error err = {0};
	int64_t committed = 0;
	int r = 0;
	for (int i = 0; i < 100; i++) {
		int64_t seq = ab_audit_append(a, &ev, &err);
		CHECK(seq > 0);
		r = ab_audit_commit(a, &err);
		if (r < 0)
			break;
		committed = seq;
	}
	CHECK_EQ_INT(r, -ENOSPC);
	CHECK_STR(err.msg, "audit log: commit: database or disk is full");
	CHECK(committed > 0);
	CHECK_EQ_INT(ab_audit_pending(a), 0);
	ab_audit_close(a);
	/* Every event reported committed is there and the chain holds. */
	ab_audit_report rep = verify(d.db, NULL, NULL, NULL);
	CHECK(rep.ok);
	CHECK_EQ_INT(rep.events, committed);
}

AB_TEST(audit_crash_keeps_committed_events)
{
	struct logdir d;
	logdir_init(&d);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		ab_audit *a = open_log(&d, 7, true);
		append_n(a, 50);
		/* Appended, never committed: may vanish, nothing else may. */
		json_t *body = json_object();
		ab_audit_event ev = {.kind = "lost", .step = -1, .actor = "t", .body = body};
		for (int i = 0; i < 5; i++)
			ab_audit_append(a, &ev, NULL);
		_exit(0); /* no close: as if killed */
	}
	int st;
	CHECK_EQ_INT(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char pub[65];
	pubkey_of(&d, pub); /* reopens: the tail check passes */
	ab_audit_report rep = verify(d.db, NULL, pub, d.cps);
	CHECK(rep.ok);
	CHECK_EQ_INT(rep.events, 50);
	ab_audit *a = open_log(&d, 7, true);
	ab_error err = {0};
	json_t *body AB_AUTOJSON = json_object();
	ab_audit_event ev = {.kind = "after", .step = -1, .actor = "t", .body = body};
	CHECK_EQ_INT(ab_audit_append(a, &ev, &err), 51);
	ab_audit_close(a);
	CHECK(verify(d.db, NULL, pub, d.cps).ok);
}

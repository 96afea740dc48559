/* audit.c - the tamper-evident audit log (docs/audit.md).
 *
 * Events are rows of a SQLite database in WAL mode with synchronous=FULL, so
 * that a COMMIT returns only once the WAL is fsynced: a crash at any moment
 * loses no committed event, and SQLite's WAL checksums discard a torn,
 * uncommitted tail on recovery. Each event row carries the hash of the
 * previous event and its own hash, SHA-256(prev || canonical bytes), so that
 * any edit, deletion, reordering or splice breaks the chain. Checkpoints
 * (seq, head hash, time) are signed with an Ed25519 key kept next to the
 * database; copies appended to an external file prove later that the log
 * was not truncated or rewritten wholesale.
 *
 * The handle is used by one thread at a time (the daemon's event loop).
 */
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sqlite3.h>

#include "audit.h"
#include "internal.h"
#include "fileio.h"

#define HASH_LEN 32
#define SIG_LEN 64
#define PUB_LEN 32
#define FORMAT_NAME "agentbox-audit/1"
#define KEY_FILE_MAX 16384
/* Longest export or checkpoints-file line accepted by the verifier. */
#define LINE_MAX_BYTES (64u << 20)
#define CANON_FLAGS (JSON_SORT_KEYS | JSON_COMPACT | JSON_ENSURE_ASCII)
#define BODY_LOAD_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES)
#define DEFAULT_EVERY 1000u
#define DEFAULT_SECONDS 10.0
#define BUSY_TIMEOUT_MS 5000

static const unsigned char zero_hash[HASH_LEN];

const char *const ab_audit_kinds[] = {
    "daemon.start", "daemon.stop", "sandbox.create", "sandbox.close", "sandbox.promote", "run",
    "limit",	    "refused",	   "files.write",    "files.read",    "files.list",	 NULL,
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS events("
    " seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL, session TEXT,"
    " step INTEGER, actor TEXT NOT NULL, body TEXT NOT NULL, prev BLOB NOT NULL,"
    " hash BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS checkpoints("
    " seq INTEGER PRIMARY KEY, head BLOB NOT NULL, ts INTEGER NOT NULL, sig BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS events_session ON events(session);"
    "CREATE INDEX IF NOT EXISTS events_ts ON events(ts);";

struct ab_audit {
	sqlite3 *db;
	sqlite3_stmt *ins;  /* INSERT INTO events */
	sqlite3_stmt *tail; /* the newest event, read at each BEGIN */
	EVP_PKEY *key;	    /* private signing key */
	char pubhex[2 * PUB_LEN + 1];
	int cp_fd; /* external checkpoints, -1 if none */
	bool cp_fd_owned;
	unsigned every;
	double seconds;
	ab_audit_redact_fn redact;
	void *redact_ctx;

	bool in_tx;
	int64_t seq; /* last appended (committed or not) */
	unsigned char head[HASH_LEN];
	int64_t cseq; /* last committed */
	unsigned char chead[HASH_LEN];
	int64_t last_ts;
	int64_t cp_seq;		 /* last event covered by a checkpoint */
	struct timespec cp_time; /* CLOCK_MONOTONIC of the last checkpoint (or open) */
};

/* ------------------------------------------------------------- helpers */

static void hex_encode(const unsigned char *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

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

static int64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double mono_since(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static int sqlite_code(int rc)
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
static int db_error(ab_error *err, sqlite3 *db, int rc, const char *what)
{
	const char *m = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
	return ab_error_set(err, sqlite_code(rc), "audit log: %s: %s", what, m);
}

static int db_exec(sqlite3 *db, const char *sql, const char *what, ab_error *err)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : db_error(err, db, rc, what);
}

static void finalizep(sqlite3_stmt **st)
{
	sqlite3_finalize(*st);
}
#define AUTOSTMT __attribute__((cleanup(finalizep)))

static void md_ctx_freep(EVP_MD_CTX **c)
{
	EVP_MD_CTX_free(*c);
}
static void pkey_freep(EVP_PKEY **k)
{
	EVP_PKEY_free(*k);
}
static void bio_freep(BIO **b)
{
	BIO_free(*b);
}

/* SHA-256(prev || data). */
static bool chain_hash(const unsigned char prev[HASH_LEN], const char *data, size_t len,
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
static char *checkpoint_message(int64_t seq, const unsigned char head[HASH_LEN], int64_t ts)
{
	char hex[2 * HASH_LEN + 1];
	hex_encode(head, HASH_LEN, hex);
	json_t *o AB_AUTOJSON =
	    json_pack("{s:s, s:I, s:I}", "head", hex, "seq", (json_int_t)seq, "ts", (json_int_t)ts);
	return o ? json_dumps(o, CANON_FLAGS) : NULL;
}

static bool ed25519_sign(EVP_PKEY *key, const char *msg, unsigned char sig[SIG_LEN])
{
	EVP_MD_CTX *c __attribute__((cleanup(md_ctx_freep))) = EVP_MD_CTX_new();
	size_t n = SIG_LEN;
	return c && EVP_DigestSignInit(c, NULL, NULL, NULL, key) == 1 &&
	       EVP_DigestSign(c, sig, &n, (const unsigned char *)msg, strlen(msg)) == 1 &&
	       n == SIG_LEN;
}

static bool ed25519_verify(EVP_PKEY *pub, const char *msg, const unsigned char sig[SIG_LEN])
{
	EVP_MD_CTX *c __attribute__((cleanup(md_ctx_freep))) = EVP_MD_CTX_new();
	return c && EVP_DigestVerifyInit(c, NULL, NULL, NULL, pub) == 1 &&
	       EVP_DigestVerify(c, sig, SIG_LEN, (const unsigned char *)msg, strlen(msg)) == 1;
}

/* ------------------------------------------------------------- the key */

static int read_key_fd(int fd, const char *path, EVP_PKEY **out, ab_error *err)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return ab_error_errno(err, -errno, "audit key %s", path);
	if (!S_ISREG(st.st_mode))
		return ab_error_set(err, -EINVAL, "audit key %s is not a regular file", path);
	if (st.st_uid != geteuid())
		return ab_error_set(err, -EPERM,
				    "audit key %s is owned by uid %u, not by us (uid %u); refusing "
				    "to use it",
				    path, (unsigned)st.st_uid, (unsigned)geteuid());
	if (st.st_mode & 077)
		return ab_error_set(err, -EPERM,
				    "audit key %s is accessible by group or others (mode %04o); "
				    "it must be mode 0600: chmod 600 %s",
				    path, (unsigned)(st.st_mode & 07777), path);
	if (st.st_size <= 0 || st.st_size > KEY_FILE_MAX)
		return ab_error_set(err, -EINVAL, "audit key %s: unexpected size %lld", path,
				    (long long)st.st_size);
	char buf[KEY_FILE_MAX];
	size_t len = 0;
	while (len < sizeof(buf)) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return ab_error_errno(err, -errno, "read audit key %s", path);
		if (n == 0)
			break;
		len += (size_t)n;
	}
	BIO *bio __attribute__((cleanup(bio_freep))) = BIO_new_mem_buf(buf, (int)len);
	EVP_PKEY *key __attribute__((cleanup(pkey_freep))) =
	    bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	explicit_bzero(buf, sizeof(buf));
	if (!key)
		return ab_error_set(err, -EINVAL, "audit key %s: not a PEM private key", path);
	if (EVP_PKEY_get_base_id(key) != EVP_PKEY_ED25519)
		return ab_error_set(err, -EINVAL, "audit key %s: not an Ed25519 key", path);
	*out = ab_steal_ptr(&key);
	return 0;
}

/* Creates a new key file with O_EXCL and mode 0600. -EEXIST if another
 * process created it first. */
static int create_key(const char *path, ab_error *err)
{
	EVP_PKEY *key __attribute__((cleanup(pkey_freep))) =
	    EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (!key)
		return ab_error_set(err, -EIO, "audit key: Ed25519 key generation failed");
	BIO *bio __attribute__((cleanup(bio_freep))) = BIO_new(BIO_s_mem());
	if (!bio || PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1)
		return ab_error_set(err, -EIO, "audit key: cannot encode the key");
	char *pem = NULL;
	long len = BIO_get_mem_data(bio, &pem);
	int fd AB_AUTOCLOSE =
	    open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)0600);
	if (fd < 0)
		return errno == EEXIST ? -EEXIST
				       : ab_error_errno(err, -errno, "create audit key %s", path);
	int r = ab__write_all(fd, pem, (size_t)len);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (r < 0) {
		unlink(path);
		return ab_error_errno(err, r, "write audit key %s", path);
	}
	ab__fsync_parent(path);
	return 0;
}

static int load_or_create_key(const char *path, EVP_PKEY **out, ab_error *err)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		int fd AB_AUTOCLOSE = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0)
			return read_key_fd(fd, path, out, err);
		if (errno != ENOENT)
			return ab_error_errno(err, -errno, "open audit key %s", path);
		int r = create_key(path, err);
		if (r < 0 && r != -EEXIST)
			return r;
	}
	return ab_error_set(err, -EAGAIN, "audit key %s: keeps changing", path);
}

/* -------------------------------------------------------- event rows */

/* One event as read back from the database or an export. */
struct row {
	int64_t seq, ts, step;
	const char *kind, *session, *actor;
	json_t *body;	       /* owned */
	const char *body_text; /* the stored text, DB rows only */
	unsigned char prev[HASH_LEN], hash[HASH_LEN];
};

#define ROW_COLUMNS "seq, ts, kind, session, step, actor, body, prev, hash"

/* Reads the current row of a statement selecting ROW_COLUMNS. Returns false
 * with why set if a column does not have the type the schema promises. The
 * strings point into the statement and live until its next step. */
static bool row_from_stmt(sqlite3_stmt *st, struct row *r, char *why, size_t whylen)
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
static bool row_hash_ok(const struct row *r, char *why, size_t whylen)
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
	if (!canon || !chain_hash(r->prev, canon, strlen(canon), h) ||
	    memcmp(h, r->hash, HASH_LEN) != 0) {
		snprintf(why, whylen, "seq %lld: hash mismatch (the event was modified)",
			 (long long)r->seq);
		return false;
	}
	return true;
}

/* The export object of a row: the canonical fields plus prev and hash. */
static json_t *row_to_json(const struct row *r)
{
	char prev[2 * HASH_LEN + 1], hash[2 * HASH_LEN + 1];
	hex_encode(r->prev, HASH_LEN, prev);
	hex_encode(r->hash, HASH_LEN, hash);
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

/* ------------------------------------------------------------ writing */

/* Checks the last event and the last checkpoint of an existing log (cheap:
 * two rows), and loads the chain state. */
static int load_tail(ab_audit *a, const char *path, ab_error *err)
{
	sqlite3_stmt *st AUTOSTMT = NULL;
	int rc = sqlite3_prepare_v2(
	    a->db, "SELECT " ROW_COLUMNS " FROM events ORDER BY seq DESC LIMIT 2", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(err, a->db, rc, "read tail");
	char why[256];
	struct row last = {0}, before = {0};
	int n = 0;
	bool ok = true;
	while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct row *r = n == 0 ? &last : &before;
		ok = row_from_stmt(st, r, why, sizeof(why));
		if (ok && n == 0) {
			ok = row_hash_ok(r, why, sizeof(why));
			/* Copy what outlives the next step. */
			a->seq = r->seq;
			a->last_ts = r->ts;
			memcpy(a->head, r->hash, HASH_LEN);
			json_decref(r->body);
			r->body = NULL;
		}
		n++;
	}
	json_decref(before.body);
	if (ok && rc != SQLITE_DONE)
		return db_error(err, a->db, rc, "read tail");
	if (ok && n == 2 && before.seq != last.seq - 1) {
		snprintf(why, sizeof(why), "seq %lld is missing (deleted)",
			 (long long)last.seq - 1);
		ok = false;
	} else if (ok && n == 2 && memcmp(before.hash, last.prev, HASH_LEN) != 0) {
		snprintf(why, sizeof(why),
			 "seq %lld: prev does not match the hash of seq %lld (rows swapped, "
			 "spliced or modified)",
			 (long long)last.seq, (long long)before.seq);
		ok = false;
	} else if (ok && n == 1 && (last.seq != 1 || memcmp(last.prev, zero_hash, HASH_LEN) != 0)) {
		snprintf(why, sizeof(why), "seq %lld: does not start the chain",
			 (long long)last.seq);
		ok = false;
	}
	if (!ok)
		return ab_error_set(err, -EBADMSG,
				    "audit log %s is damaged: %s; refusing to append (run "
				    "`agentbox audit verify`)",
				    path, why);

	sqlite3_stmt *cs AUTOSTMT = NULL;
	rc =
	    sqlite3_prepare_v2(a->db,
			       "SELECT c.seq, c.head, e.hash FROM checkpoints c LEFT JOIN events e "
			       "ON e.seq = c.seq ORDER BY c.seq DESC LIMIT 1",
			       -1, &cs, NULL);
	if (rc != SQLITE_OK)
		return db_error(err, a->db, rc, "read checkpoints");
	rc = sqlite3_step(cs);
	if (rc == SQLITE_ROW) {
		int64_t cseq = sqlite3_column_int64(cs, 0);
		const void *head = sqlite3_column_blob(cs, 1);
		const void *hash = sqlite3_column_blob(cs, 2);
		if (cseq > a->seq)
			return ab_error_set(err, -EBADMSG,
					    "audit log %s is damaged: log truncated: checkpoint "
					    "covers seq %lld but the log ends at %lld; refusing to "
					    "append (run `agentbox audit verify`)",
					    path, (long long)cseq, (long long)a->seq);
		if (!head || !hash || sqlite3_column_bytes(cs, 1) != HASH_LEN ||
		    sqlite3_column_bytes(cs, 2) != HASH_LEN || memcmp(head, hash, HASH_LEN) != 0)
			return ab_error_set(err, -EBADMSG,
					    "audit log %s is damaged: checkpoint at seq %lld does "
					    "not match the hash of seq %lld; refusing to append "
					    "(run `agentbox audit verify`)",
					    path, (long long)cseq, (long long)cseq);
		a->cp_seq = cseq;
	} else if (rc != SQLITE_DONE) {
		return db_error(err, a->db, rc, "read checkpoints");
	}
	a->cseq = a->seq;
	memcpy(a->chead, a->head, HASH_LEN);
	return 0;
}

/* Stores the format and the public key, or checks them against ours. */
static int check_meta(ab_audit *a, const char *path, ab_error *err)
{
	sqlite3_stmt *st AUTOSTMT = NULL;
	int rc = sqlite3_prepare_v2(a->db, "SELECT key, value FROM meta", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(err, a->db, rc, "read meta");
	bool have_format = false, have_pub = false;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *k = (const char *)sqlite3_column_text(st, 0);
		const char *v = (const char *)sqlite3_column_text(st, 1);
		if (!k || !v)
			continue;
		if (strcmp(k, "format") == 0) {
			if (strcmp(v, FORMAT_NAME) != 0)
				return ab_error_set(err, -EPROTO,
						    "audit log %s has format \"%s\", this build "
						    "writes \"%s\"",
						    path, v, FORMAT_NAME);
			have_format = true;
		} else if (strcmp(k, "pubkey") == 0) {
			if (strcmp(v, a->pubhex) != 0)
				return ab_error_set(
				    err, -EPERM,
				    "audit log %s was signed with key %.16s..., but "
				    "the key file holds %.16s...; refusing to mix keys",
				    path, v, a->pubhex);
			have_pub = true;
		}
	}
	if (rc != SQLITE_DONE)
		return db_error(err, a->db, rc, "read meta");
	if (have_format && have_pub)
		return 0;
	char sql[256];
	snprintf(sql, sizeof(sql),
		 "INSERT OR IGNORE INTO meta VALUES('format', '" FORMAT_NAME "');"
		 "INSERT OR IGNORE INTO meta VALUES('pubkey', '%s');",
		 a->pubhex);
	return db_exec(a->db, sql, "write meta", err);
}

static int open_checkpoints_file(ab_audit *a, const char *path, ab_error *err)
{
	if (!path)
		return 0;
	if (strcmp(path, "-") == 0) {
		a->cp_fd = STDOUT_FILENO;
		return 0;
	}
	a->cp_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, (mode_t)0644);
	if (a->cp_fd < 0)
		return ab_error_errno(err, -errno, "audit checkpoints file %s", path);
	a->cp_fd_owned = true;
	return 0;
}

static void free_handle(ab_audit *a)
{
	sqlite3_finalize(a->ins);
	sqlite3_finalize(a->tail);
	sqlite3_close(a->db);
	EVP_PKEY_free(a->key);
	if (a->cp_fd_owned)
		close(a->cp_fd);
	free(a);
}

int ab_audit_open(const ab_audit_opts *o, ab_audit **out, ab_error *err)
{
	if (!o || !o->db_path || !o->key_path || !out)
		return ab_error_set(err, -EINVAL, "audit log: db_path and key_path are required");
	ab_audit *a = calloc(1, sizeof(*a));
	if (!a)
		return ab_error_set(err, -ENOMEM, "out of memory");
	a->cp_fd = -1;
	a->every = o->checkpoint_every ? o->checkpoint_every : DEFAULT_EVERY;
	a->seconds = o->checkpoint_seconds > 0 ? o->checkpoint_seconds : DEFAULT_SECONDS;
	clock_gettime(CLOCK_MONOTONIC, &a->cp_time);

	int r = load_or_create_key(o->key_path, &a->key, err);
	if (r < 0)
		goto fail;
	unsigned char pub[PUB_LEN];
	size_t publen = sizeof(pub);
	if (EVP_PKEY_get_raw_public_key(a->key, pub, &publen) != 1 || publen != PUB_LEN) {
		r = ab_error_set(err, -EINVAL, "audit key %s: no raw public key", o->key_path);
		goto fail;
	}
	hex_encode(pub, PUB_LEN, a->pubhex);

	bool existed = access(o->db_path, F_OK) == 0;
	if (!existed) {
		/* The log holds every run's code: readable by its owner only.
		 * SQLite gives its -wal and -shm files the database's mode. */
		int fd = open(o->db_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST) {
			r = ab_error_errno(err, -errno, "audit log: create %s", o->db_path);
			goto fail;
		}
		if (fd >= 0)
			close(fd);
	} else {
		/* A log made by an older version may be readable by others. */
		const char *suffix[] = {"", "-wal", "-shm"};
		for (int i = 0; i < 3; i++) {
			char p[4200];
			struct stat st;
			snprintf(p, sizeof(p), "%s%s", o->db_path, suffix[i]);
			if (lstat(p, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
			    (st.st_mode & 077))
				chmod(p, st.st_mode & 0700);
		}
	}
	int rc =
	    sqlite3_open_v2(o->db_path, &a->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		r = ab_error_set(err, sqlite_code(rc), "audit log: open %s: %s", o->db_path,
				 a->db ? sqlite3_errmsg(a->db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_busy_timeout(a->db, BUSY_TIMEOUT_MS);
	{
		sqlite3_stmt *st AUTOSTMT = NULL;
		rc = sqlite3_prepare_v2(a->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(st);
		if (rc != SQLITE_ROW) {
			r = db_error(err, a->db, rc, "enable WAL");
			goto fail;
		}
		const char *mode = (const char *)sqlite3_column_text(st, 0);
		if (!mode || strcmp(mode, "wal") != 0) {
			r = ab_error_set(err, -EIO, "audit log %s: cannot use WAL mode (got %s)",
					 o->db_path, mode ? mode : "nothing");
			goto fail;
		}
	}
	/* Keep the write-ahead file when the log is closed: the next daemon on
	 * this home then overwrites it in place, and a commit's fsync need not
	 * also record a growing file size (measurably slower here). */
	int persist = 1;
	sqlite3_file_control(a->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
	if ((r = db_exec(a->db, "PRAGMA synchronous=FULL", "set synchronous", err)) < 0 ||
	    (r = db_exec(a->db, "BEGIN IMMEDIATE", "begin", err)) < 0)
		goto fail;
	if ((r = db_exec(a->db, schema_sql, "create schema", err)) < 0 ||
	    (r = check_meta(a, o->db_path, err)) < 0 || (r = load_tail(a, o->db_path, err)) < 0 ||
	    (r = db_exec(a->db, "COMMIT", "commit schema", err)) < 0) {
		sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
		goto fail;
	}
	if (!existed)
		ab__fsync_parent(o->db_path);
	rc = sqlite3_prepare_v3(a->db, "INSERT INTO events VALUES(?,?,?,?,?,?,?,?,?)", -1,
				SQLITE_PREPARE_PERSISTENT, &a->ins, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v3(
		    a->db, "SELECT seq, ts, hash FROM events ORDER BY seq DESC LIMIT 1", -1,
		    SQLITE_PREPARE_PERSISTENT, &a->tail, NULL);
	if (rc != SQLITE_OK) {
		r = db_error(err, a->db, rc, "prepare insert");
		goto fail;
	}
	if ((r = open_checkpoints_file(a, o->checkpoints_path, err)) < 0)
		goto fail;
	*out = a;
	return 0;
fail:
	free_handle(a);
	return r;
}

void ab_audit_set_redactor(ab_audit *a, ab_audit_redact_fn fn, void *ctx)
{
	a->redact = fn;
	a->redact_ctx = ctx;
}

int64_t ab_audit_pending(const ab_audit *a)
{
	return a->seq - a->cseq;
}

void ab_audit_pubkey_hex(const ab_audit *a, char out[65])
{
	memcpy(out, a->pubhex, sizeof(a->pubhex));
}

/* Reloads the head of the chain inside a write transaction: another
 * writer may have appended since our last commit. */
static int refresh_tail(ab_audit *a, ab_error *err)
{
	/* A prepared statement kept open; reset after each use so that it
	 * holds no read snapshot. */
	sqlite3_stmt *st = a->tail;
	int rc = sqlite3_step(st), r = 0;
	if (rc == SQLITE_ROW) {
		int64_t seq = sqlite3_column_int64(st, 0);
		int64_t ts = sqlite3_column_int64(st, 1);
		const void *h = sqlite3_column_blob(st, 2);
		if (!h || sqlite3_column_bytes(st, 2) != HASH_LEN) {
			r = ab_error_set(err, -EIO, "audit log: seq %lld has no valid hash",
					 (long long)seq);
		} else if (seq != a->seq) {
			a->seq = seq;
			memcpy(a->head, h, HASH_LEN);
		}
		if (ts > a->last_ts)
			a->last_ts = ts;
	} else if (rc != SQLITE_DONE) {
		r = db_error(err, a->db, rc, "read tail");
	}
	sqlite3_reset(st);
	if (r < 0)
		return r;
	a->cseq = a->seq;
	memcpy(a->chead, a->head, HASH_LEN);
	return 0;
}

int64_t ab_audit_append(ab_audit *a, const ab_audit_event *ev, ab_error *err)
{
	if (!ev || !ev->kind || !*ev->kind || !ev->actor)
		return ab_error_set(err, -EINVAL, "audit log: append: kind and actor are required");
	json_t *body AB_AUTOJSON = ev->body ? json_incref(ev->body) : json_object();
	if (!body)
		return ab_error_set(err, -ENOMEM, "out of memory");
	if (a->redact)
		a->redact(ev->kind, body, a->redact_ctx);

	/* The transaction starts before the event is numbered: several
	 * daemons may share one home (an SDK's private daemon and the CLI's),
	 * and the write lock plus a fresh look at the tail keeps one chain. */
	if (!a->in_tx) {
		int r = db_exec(a->db, "BEGIN IMMEDIATE", "begin", err);
		if (r < 0)
			return r;
		a->in_tx = true;
		if ((r = refresh_tail(a, err)) < 0) {
			db_exec(a->db, "ROLLBACK", "rollback", NULL);
			a->in_tx = false;
			return r;
		}
	}
	int64_t seq = a->seq + 1;
	int64_t ts = realtime_ns();
	if (ts < a->last_ts)
		ts = a->last_ts;
	char *canon AB_AUTOFREE =
	    ab_audit_canonical(seq, ts, ev->kind, ev->session, ev->step, ev->actor, body);
	char *body_text AB_AUTOFREE = json_dumps(body, CANON_FLAGS | JSON_ENCODE_ANY);
	if (!canon || !body_text)
		return ab_error_set(err, -EINVAL,
				    "audit log: append %s: cannot encode the event (strings must "
				    "be UTF-8)",
				    ev->kind);
	unsigned char hash[HASH_LEN];
	if (!chain_hash(a->head, canon, strlen(canon), hash))
		return ab_error_set(err, -EIO, "audit log: append: SHA-256 failed");

	sqlite3_stmt *st = a->ins;
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_int64(st, 2, ts);
	sqlite3_bind_text(st, 3, ev->kind, -1, SQLITE_STATIC);
	if (ev->session)
		sqlite3_bind_text(st, 4, ev->session, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 4);
	if (ev->step >= 0)
		sqlite3_bind_int64(st, 5, ev->step);
	else
		sqlite3_bind_null(st, 5);
	sqlite3_bind_text(st, 6, ev->actor, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, body_text, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 8, a->head, HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(st, 9, hash, HASH_LEN, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	int r = rc == SQLITE_DONE ? 0 : db_error(err, a->db, rc, "append");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (r < 0)
		return r;
	a->seq = seq;
	a->last_ts = ts;
	memcpy(a->head, hash, HASH_LEN);
	return seq;
}

/* Signs (cseq, chead, now), stores the checkpoint in its own transaction
 * and appends it to the external file. */
static int write_checkpoint(ab_audit *a, ab_error *err)
{
	int64_t ts = realtime_ns();
	char *msg AB_AUTOFREE = checkpoint_message(a->cseq, a->chead, ts);
	unsigned char sig[SIG_LEN];
	if (!msg || !ed25519_sign(a->key, msg, sig))
		return ab_error_set(err, -EIO, "audit log: checkpoint: signing failed");
	sqlite3_stmt *st AUTOSTMT = NULL;
	int rc = sqlite3_prepare_v2(a->db, "INSERT OR IGNORE INTO checkpoints VALUES(?,?,?,?)", -1,
				    &st, NULL);
	if (rc != SQLITE_OK)
		return db_error(err, a->db, rc, "checkpoint");
	sqlite3_bind_int64(st, 1, a->cseq);
	sqlite3_bind_blob(st, 2, a->chead, HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, ts);
	sqlite3_bind_blob(st, 4, sig, SIG_LEN, SQLITE_STATIC);
	int r = db_exec(a->db, "BEGIN IMMEDIATE", "checkpoint", err);
	if (r < 0)
		return r;
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE) {
		r = db_error(err, a->db, rc, "checkpoint");
		sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
		return r;
	}
	if ((r = db_exec(a->db, "COMMIT", "checkpoint", err)) < 0) {
		if (!sqlite3_get_autocommit(a->db))
			sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
		return r;
	}
	a->cp_seq = a->cseq;
	clock_gettime(CLOCK_MONOTONIC, &a->cp_time);

	if (a->cp_fd < 0)
		return 0;
	char head[2 * HASH_LEN + 1], sighex[2 * SIG_LEN + 1];
	hex_encode(a->chead, HASH_LEN, head);
	hex_encode(sig, SIG_LEN, sighex);
	json_t *line AB_AUTOJSON =
	    json_pack("{s:I, s:s, s:I, s:s, s:s}", "seq", (json_int_t)a->cseq, "head", head, "ts",
		      (json_int_t)ts, "sig", sighex, "pubkey", a->pubhex);
	char *text AB_AUTOFREE = line ? json_dumps(line, CANON_FLAGS) : NULL;
	if (!text)
		return ab_error_set(err, -ENOMEM, "out of memory");
	size_t n = strlen(text);
	char *buf AB_AUTOFREE = malloc(n + 2);
	if (!buf)
		return ab_error_set(err, -ENOMEM, "out of memory");
	memcpy(buf, text, n);
	buf[n] = '\n';
	r = ab__write_all(a->cp_fd, buf, n + 1);
	/* fsync is meaningless on a pipe or terminal (stdout). */
	if (r == 0 && fsync(a->cp_fd) < 0 && errno != EINVAL && errno != EROFS && errno != ENOTSUP)
		r = -errno;
	if (r < 0)
		return ab_error_errno(err, r, "audit log: write external checkpoint");
	return 0;
}

int ab_audit_commit(ab_audit *a, ab_error *err)
{
	if (a->in_tx) {
		int rc = sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL);
		if (rc != SQLITE_OK) {
			int r = db_error(err, a->db, rc, "commit");
			if (!sqlite3_get_autocommit(a->db))
				sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
			a->in_tx = false;
			a->seq = a->cseq;
			memcpy(a->head, a->chead, HASH_LEN);
			return r;
		}
		a->in_tx = false;
		a->cseq = a->seq;
		memcpy(a->chead, a->head, HASH_LEN);
	}
	bool due = a->cseq > a->cp_seq && ((uint64_t)(a->cseq - a->cp_seq) >= a->every ||
					   mono_since(&a->cp_time) >= a->seconds);
	if (!due)
		return 0;
	int r = write_checkpoint(a, err);
	if (r < 0)
		ab_error_prefix(err, "events up to seq %lld are committed, but",
				(long long)a->cseq);
	return r;
}

void ab_audit_close(ab_audit *a)
{
	if (!a)
		return;
	ab_error err = {0};
	if (ab_audit_commit(a, &err) == 0 && a->cseq > a->cp_seq)
		write_checkpoint(a, &err);
	free_handle(a);
}

/* ------------------------------------------------------ reading: common */

static int open_readonly(const char *path, sqlite3 **out, ab_error *err)
{
	if (access(path, R_OK) < 0)
		return ab_error_errno(err, -errno, "audit log %s", path);
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		int r = ab_error_set(err, sqlite_code(rc), "audit log: open %s: %s", path,
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

static void db_closep(sqlite3 **db)
{
	sqlite3_close(*db);
}
#define AUTODB __attribute__((cleanup(db_closep)))

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

static bool check_cp_sig(struct verifier *v, const struct cp *c)
{
	char name[96];
	char *msg AB_AUTOFREE = checkpoint_message(c->seq, c->head, c->ts);
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
	if (!row_hash_ok(r, why, whylen))
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
		hex_encode(v->stored, PUB_LEN, hex);
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
	int r = open_readonly(path, &v->db, err);
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
		return db_error(err, db, rc, "read checkpoints");
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
		return db_error(err, db, rc, "read checkpoints");
	return 0;
}

static int verify_db_events(struct verifier *v, ab_error *err)
{
	sqlite3 *db = v->db;
	sqlite3_stmt *st AUTOSTMT = NULL;
	int rc = sqlite3_prepare_v2(db, "SELECT " ROW_COLUMNS " FROM events ORDER BY seq", -1, &st,
				    NULL);
	if (rc != SQLITE_OK)
		return db_error(err, db, rc, "read events");
	char why[256];
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct row row;
		bool ok = row_from_stmt(st, &row, why, sizeof(why));
		if (!ok)
			fail(v, row.seq, "%s", why);
		else
			ok = verify_row(v, &row, why, sizeof(why));
		json_decref(row.body);
		if (!ok)
			return 0;
	}
	if (rc != SQLITE_DONE)
		return db_error(err, db, rc, "read events");
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

/* ------------------------------------------------------ query, export */

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
		return db_error(err, db, rc, "query");
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
		if (!row_from_stmt(st, &row, why, sizeof(why)) && !row.body && row.body_text)
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
		return db_error(err, db, rc, "query");
	return 0;
}

int ab_audit_query(const char *db_path, const ab_audit_filter *f, ab_audit_row_fn fn, void *ctx,
		   ab_error *err)
{
	sqlite3 *db AUTODB = NULL;
	int r = open_readonly(db_path, &db, err);
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
			hex_encode(sqlite3_column_blob(x->cps, 1), HASH_LEN, head);
		if (sqlite3_column_bytes(x->cps, 3) == SIG_LEN)
			hex_encode(sqlite3_column_blob(x->cps, 3), SIG_LEN, sig);
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
	int r = open_readonly(db_path, &db, err);
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
		return db_error(err, db, rc, "read checkpoints");
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

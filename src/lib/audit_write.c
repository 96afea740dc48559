/* audit_write.c - the daemon's writer of the audit log (docs/audit.md): the
 * signing key, opening and checking a log, appending events, group commit
 * and checkpoints. The handle is used by one thread at a time (the daemon's
 * event loop). */
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

#include "audit_internal.h"
#include "fileio.h"

static const unsigned char zero_hash[HASH_LEN];

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
	char sync_mode[64]; /* how durable events are, for the checkpoints file */
	int cp_fd;	    /* external checkpoints, -1 if none */
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

/* ------------------------------------------------------------ writing */

/* Checks the last event and the last checkpoint of an existing log (cheap:
 * two rows), and loads the chain state. */
static int load_tail(ab_audit *a, const char *path, ab_error *err)
{
	sqlite3_stmt *st AUTOSTMT = NULL;
	int rc = sqlite3_prepare_v2(
	    a->db, "SELECT " ROW_COLUMNS " FROM events ORDER BY seq DESC LIMIT 2", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return ab__audit_db_error(err, a->db, rc, "read tail");
	char why[256];
	struct row last = {0}, before = {0};
	int n = 0;
	bool ok = true;
	while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct row *r = n == 0 ? &last : &before;
		ok = ab__audit_row_from_stmt(st, r, why, sizeof(why));
		if (ok && n == 0) {
			ok = ab__audit_row_hash_ok(r, why, sizeof(why));
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
		return ab__audit_db_error(err, a->db, rc, "read tail");
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
		return ab__audit_db_error(err, a->db, rc, "read checkpoints");
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
		return ab__audit_db_error(err, a->db, rc, "read checkpoints");
	}
	a->cseq = a->seq;
	memcpy(a->chead, a->head, HASH_LEN);
	return 0;
}

static int db_exec(sqlite3 *db, const char *sql, const char *what, ab_error *err)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : ab__audit_db_error(err, db, rc, what);
}

/* Stores the format and the public key, or checks them against ours. */
static int check_meta(ab_audit *a, const char *path, ab_error *err)
{
	sqlite3_stmt *st AUTOSTMT = NULL;
	int rc = sqlite3_prepare_v2(a->db, "SELECT key, value FROM meta", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return ab__audit_db_error(err, a->db, rc, "read meta");
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
		return ab__audit_db_error(err, a->db, rc, "read meta");
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
	snprintf(a->sync_mode, sizeof(a->sync_mode), "%s", o->sync_mode ? o->sync_mode : "durable");
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
	ab__hex_encode(pub, PUB_LEN, a->pubhex);

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
		r = ab_error_set(err, ab__audit_sqlite_code(rc), "audit log: open %s: %s",
				 o->db_path, a->db ? sqlite3_errmsg(a->db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_busy_timeout(a->db, BUSY_TIMEOUT_MS);
	{
		sqlite3_stmt *st AUTOSTMT = NULL;
		rc = sqlite3_prepare_v2(a->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(st);
		if (rc != SQLITE_ROW) {
			r = ab__audit_db_error(err, a->db, rc, "enable WAL");
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
		r = ab__audit_db_error(err, a->db, rc, "prepare insert");
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
		r = ab__audit_db_error(err, a->db, rc, "read tail");
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
	if (!ab__audit_chain_hash(a->head, canon, strlen(canon), hash))
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
	int r = rc == SQLITE_DONE ? 0 : ab__audit_db_error(err, a->db, rc, "append");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (r < 0)
		return r;
	a->seq = seq;
	a->last_ts = ts;
	memcpy(a->head, hash, HASH_LEN);
	return seq;
}

static bool ed25519_sign(EVP_PKEY *key, const char *msg, unsigned char sig[SIG_LEN])
{
	EVP_MD_CTX *c __attribute__((cleanup(md_ctx_freep))) = EVP_MD_CTX_new();
	size_t n = SIG_LEN;
	return c && EVP_DigestSignInit(c, NULL, NULL, NULL, key) == 1 &&
	       EVP_DigestSign(c, sig, &n, (const unsigned char *)msg, strlen(msg)) == 1 &&
	       n == SIG_LEN;
}

/* Signs (cseq, chead, now), stores the checkpoint in its own transaction
 * and appends it to the external file. */
static int write_checkpoint(ab_audit *a, ab_error *err)
{
	int64_t ts = realtime_ns();
	char *msg AB_AUTOFREE = ab__audit_checkpoint_message(a->cseq, a->chead, ts);
	unsigned char sig[SIG_LEN];
	if (!msg || !ed25519_sign(a->key, msg, sig))
		return ab_error_set(err, -EIO, "audit log: checkpoint: signing failed");
	sqlite3_stmt *st AUTOSTMT = NULL;
	int rc = sqlite3_prepare_v2(a->db, "INSERT OR IGNORE INTO checkpoints VALUES(?,?,?,?)", -1,
				    &st, NULL);
	if (rc != SQLITE_OK)
		return ab__audit_db_error(err, a->db, rc, "checkpoint");
	sqlite3_bind_int64(st, 1, a->cseq);
	sqlite3_bind_blob(st, 2, a->chead, HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, ts);
	sqlite3_bind_blob(st, 4, sig, SIG_LEN, SQLITE_STATIC);
	int r = db_exec(a->db, "BEGIN IMMEDIATE", "checkpoint", err);
	if (r < 0)
		return r;
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE) {
		r = ab__audit_db_error(err, a->db, rc, "checkpoint");
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
	ab__hex_encode(a->chead, HASH_LEN, head);
	ab__hex_encode(sig, SIG_LEN, sighex);
	json_t *line AB_AUTOJSON = json_pack(
	    "{s:I, s:s, s:I, s:s, s:s, s:s}", "seq", (json_int_t)a->cseq, "head", head, "ts",
	    (json_int_t)ts, "sig", sighex, "pubkey", a->pubhex, "sync", a->sync_mode);
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
			int r = ab__audit_db_error(err, a->db, rc, "commit");
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

/* audit_internal.h - what the files of the audit log share (internal to
 * agentbox): audit_format.c (the log's format), audit_write.c (the
 * daemon's writer), audit_verify.c and audit_query.c (readers).
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
 */
#ifndef AB_AUDIT_INTERNAL_H
#define AB_AUDIT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "audit.h"
#include "internal.h"

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

static inline void finalizep(sqlite3_stmt **st)
{
	sqlite3_finalize(*st);
}
#define AUTOSTMT __attribute__((cleanup(finalizep)))

static inline void md_ctx_freep(EVP_MD_CTX **c)
{
	EVP_MD_CTX_free(*c);
}
static inline void pkey_freep(EVP_PKEY **k)
{
	EVP_PKEY_free(*k);
}
static inline void bio_freep(BIO **b)
{
	BIO_free(*b);
}

/* One event as read back from the database or an export. */
struct row {
	int64_t seq, ts, step;
	const char *kind, *session, *actor;
	json_t *body;	       /* owned */
	const char *body_text; /* the stored text, DB rows only */
	unsigned char prev[HASH_LEN], hash[HASH_LEN];
};

#define ROW_COLUMNS "seq, ts, kind, session, step, actor, body, prev, hash"

static inline void db_closep(sqlite3 **db)
{
	sqlite3_close(*db);
}
#define AUTODB __attribute__((cleanup(db_closep)))


/* The negative errno-style code for a SQLite result code. */
int ab__audit_sqlite_code(int rc);

/* Fills err with "audit log: <what>: <sqlite's message>". */
int ab__audit_db_error(ab_error *err, sqlite3 *db, int rc, const char *what);

/* SHA-256(prev || data). */
bool ab__audit_chain_hash(const unsigned char prev[HASH_LEN], const char *data, size_t len,
			  unsigned char out[HASH_LEN]);

/* The bytes a checkpoint signature covers. */
char *ab__audit_checkpoint_message(int64_t seq, const unsigned char head[HASH_LEN], int64_t ts);

/* Reads the current row of a statement selecting ROW_COLUMNS. Returns false
 * with why set if a column does not have the type the schema promises. The
 * strings point into the statement and live until its next step. */
bool ab__audit_row_from_stmt(sqlite3_stmt *st, struct row *r, char *why, size_t whylen);

/* Recomputes the row's hash from its prev and fields. */
bool ab__audit_row_hash_ok(const struct row *r, char *why, size_t whylen);

/* Opens a log read-only, inside one read transaction (a consistent snapshot
 * while the daemon appends); refuses a database that is not an audit log. */
int ab__audit_open_readonly(const char *path, sqlite3 **out, ab_error *err);

#endif

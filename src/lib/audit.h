/* audit.h - writing and reading the audit log with JSON bodies (internal
 * to agentbox; the public part is in include/agentbox.h, section "audit").
 * The daemon is the only writer. */
#ifndef AB_AUDIT_H
#define AB_AUDIT_H

#include "internal.h"

typedef struct ab_audit ab_audit;

typedef struct ab_audit_opts {
	const char *db_path;	      /* e.g. $AGENTBOX_HOME/audit.db */
	const char *key_path;	      /* Ed25519 private key, PEM; created (0600) if missing */
	const char *checkpoints_path; /* NULL, a file (appended, fsynced), or "-" for stdout */
	unsigned checkpoint_every;    /* default 1000 when 0 */
	double checkpoint_seconds;    /* default 10 when 0 */
	/* How durable events are when their actions are acknowledged ("durable",
	 * "group 5 ms"), written with every checkpoint line; NULL: "durable". */
	const char *sync_mode;
} ab_audit_opts;

/* Opens (creating if needed) the log. Checks the schema and the tail:
 * a log whose last rows do not chain is refused with a message that names
 * the first bad sequence number (run `agentbox audit verify`). */
int ab_audit_open(const ab_audit_opts *o, ab_audit **out, ab_error *err);
/* Commits, writes a final checkpoint, closes. NULL is a no-op. */
void ab_audit_close(ab_audit *a);

typedef struct ab_audit_event {
	const char *kind;    /* "daemon.start", "sandbox.create", "run", ... */
	const char *session; /* sandbox id, or NULL */
	int64_t step;	     /* run number, or -1 */
	const char *actor;   /* "sdk-embedded", "uid 1000 pid 42", "daemon" */
	json_t *body;	     /* borrowed; the redactor may modify it */
} ab_audit_event;

/* Called on every body before it is encoded, hashed and stored; later DLP
 * work plugs secret and PII redaction in here. */
typedef void (*ab_audit_redact_fn)(const char *kind, json_t *body, void *ctx);
void ab_audit_set_redactor(ab_audit *a, ab_audit_redact_fn fn, void *ctx);

/* Appends one event to the open transaction (starting one if needed) and
 * returns its sequence number (>= 1). It is durable only after
 * ab_audit_commit succeeds. */
int64_t ab_audit_append(ab_audit *a, const ab_audit_event *ev, ab_error *err);
/* Commits every appended event with one fsync (group commit), then writes
 * a checkpoint if one is due. On failure nothing appended since the last
 * commit is durable, and the caller must treat those events as lost. */
int ab_audit_commit(ab_audit *a, ab_error *err);
/* Events appended and not yet committed. */
int64_t ab_audit_pending(const ab_audit *a);
/* The public key as 64 hex characters (raw Ed25519), NUL-terminated. */
void ab_audit_pubkey_hex(const ab_audit *a, char out[65]);

/* Canonical bytes of an event (for hashing and export): a JSON object with
 * the keys seq, ts (UTC nanoseconds, integer), kind, session, step, actor,
 * body, sorted, compact, ASCII-only. Returns a malloc'd string. */
char *ab_audit_canonical(int64_t seq, int64_t ts_ns, const char *kind, const char *session,
			 int64_t step, const char *actor, const json_t *body);

/* Calls fn for each matching event, in sequence order, with the export
 * object: the canonical fields plus "prev" and "hash" (hex); checkpoints
 * are not included. The object is borrowed for the call. fn returns
 * non-zero to stop. Opens the database read-only. */
typedef int (*ab_audit_row_fn)(json_t *event, void *ctx);
int ab_audit_query(const char *db_path, const ab_audit_filter *f, ab_audit_row_fn fn, void *ctx,
		   ab_error *err);

#endif

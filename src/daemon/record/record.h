/* record.h - the record: the audit log of every action, and the outbox
 * that holds every front end's messages until the events before them are
 * durable (docs/audit.md).
 *
 * The rule "no client learns of an action before its record is durable"
 * is enforced here and nowhere else: a front end hands each message for a
 * client to outbox_send(), never to its transport directly. The record
 * depends on nothing else in the daemon (it calls the front ends back
 * through their sink). */
#ifndef AB_RECORD_H
#define AB_RECORD_H

#include <stdbool.h>
#include <stdint.h>

#include "agentbox.h"
#include "audit.h"
#include "internal.h"

/* How durable an event is before the messages after it go out:
 *  RECORD_DURABLE  (default) every message waits for the fsync of the events
 *                  recorded before it;
 *  RECORD_GROUP    messages go out at once; events are committed within
 *                  the group window (--audit-group-ms). A crash may lose
 *                  the events of the last window; the chain stays intact.
 * Either way the commit is made by a writer thread: the loop never waits
 * for the disk. */
enum record_mode { RECORD_DURABLE, RECORD_GROUP };

/* Opens home/audit.db (signing checkpoints with home/audit-key.pem). */
int audit_init(const char *home, const char *checkpoints, bool off, enum record_mode mode,
	       unsigned group_ms, ab_error *err);
bool audit_enabled(void);
/* "durable" or "group <N> ms", as daemon.info and every checkpoint say. */
const char *audit_mode_name(void);
/* NULL, or why the log cannot be written (the daemon then fails closed). */
const char *audit_broken(void);
/* Records an action (queued for the writer thread); body is stolen. step
 * -1 when not a run. Returns the event's ticket: a message that reveals
 * the action must be sent with a need at least this (outbox_send). */
uint64_t audit_event(const char *kind, const char *session, int64_t step, const char *actor,
		     json_t *body);
/* The ticket of the last event recorded. */
uint64_t audit_last_ticket(void);
/* Once per loop iteration: hands the events recorded in it to the writer
 * (one commit for them all) and releases the held messages whose events
 * are durable (the writer also wakes the loop when a batch is committed). */
void audit_flush(void);
/* Waits until everything recorded so far is durable (start-up). */
void audit_sync(void);
void audit_shutdown(void);
int audit_session_events(const char *session, json_t **out, ab_error *err);

/* A client's end, as a front end implements it. deliver() gets a message
 * (stolen) once it may go out; unrecorded is NULL, or why the events it
 * waited for could not be recorded: the front end must then turn a
 * success into a failure of its protocol (JSON-RPC: error -32007).
 * hold/release keep the sink alive while a message for it is held; held
 * and scan_blocked belong to the outbox (zero them). */
typedef struct sink sink;
struct sink {
	void (*deliver)(sink *s, json_t *msg, const char *unrecorded);
	void (*hold)(sink *s);
	void (*release)(sink *s);
	unsigned held;
	bool scan_blocked;
};
/* Sends msg (stolen) to s once every event up to ticket need is durable
 * (and after the messages held for s before it). */
void outbox_send(sink *s, json_t *msg, uint64_t need);

#endif

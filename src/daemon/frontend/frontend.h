/* frontend.h - the JSON-RPC 2.0 front end: newline-delimited messages over
 * stdio (a private daemon) or a unix socket (docs/protocol.md). It parses
 * and checks requests, turns each into a call to the engine, and sends
 * what comes back through the outbox (record/record.h). Other front ends
 * (HTTP, MCP) are siblings of this one: they implement client, call_ops
 * and sink the same way. */
#ifndef AB_FRONTEND_H
#define AB_FRONTEND_H

#include "engine/engine.h"

typedef struct conn conn;

struct conn {
	client cl;	   /* who the engine sees (uid, actor, references) */
	sink snk;	   /* where the outbox delivers */
	loop_watch rw, ww; /* read and write sides (may share a socket) */
	int rfd, wfd;
	char *rbuf;
	size_t rlen, rcap;
	char *wbuf;
	size_t wlen, wcap;
	bool closing; /* no more reads; close after flushing */
	pid_t peer_pid;
	conn *next;
};

conn *conn_new(int rfd, int wfd, bool is_stdio);
/* Sends a JSON-RPC result / error / notification through the outbox. */
void conn_reply(conn *c, json_t *id, json_t *result);
void conn_error(conn *c, json_t *id, int code, const char *msg, json_t *data);
/* conn_error() for a request about session (may be NULL), which the audit
 * record of the refusal names. conn_error() names the session of the
 * request being dispatched, if it named one of c's sandboxes. */
void conn_error_in(conn *c, const char *session, json_t *id, int code, const char *msg,
		   json_t *data);
void conn_notify(conn *c, const char *method, json_t *params);
/* Bytes queued for the peer, for back-pressure decisions. */
size_t conn_backlog(const conn *c);
void conn_put(conn *c);
void conn_close(conn *c);
/* Closes connections that are done (called by the main loop). */
void conn_reap(void);
/* Queues obj (stolen) for the peer now (the outbox's delivery). */
void conn_send_now(conn *c, json_t *obj);
/* Open socket connections, in all and of peers with this uid. */
void conn_count(uid_t uid, unsigned *total, unsigned *of_uid);

/* Dispatches one parsed request object. */
void rpc_dispatch(conn *c, json_t *req);
/* The id of c's sandbox that the request being dispatched names, or NULL
 * (no request of c is being dispatched, or it names none of c's). */
const char *rpc_request_session(const conn *c);

#endif

/* conn.c - client connections: newline-delimited JSON-RPC 2.0 with bounded
 * buffers. A request line longer than the cap, or a peer that stops reading
 * while we have more than the backlog cap queued for it, ends the
 * connection rather than the daemon's memory. No message the daemon sends
 * is longer than CONN_MESSAGE_MAX, so one message never ends a connection:
 * the backlog cap is sixteen of them. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>

#include "frontend.h"
#include "utf8.h"

#define MAX_LINE (16u << 20)
#define MAX_BACKLOG (16 * CONN_MESSAGE_MAX)

static conn *conns;

static void conn_read_cb(void *ctx, uint32_t events);
static void conn_write_cb(void *ctx, uint32_t events);

static void conn_free(client *cl);
static void sink_deliver(sink *s, json_t *msg, const char *unrecorded);
static void sink_hold(sink *s);
static void sink_release(sink *s);

conn *conn_new(int rfd, int wfd, bool is_stdio)
{
	conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->rfd = rfd;
	c->wfd = wfd;
	c->cl.local = is_stdio;
	c->cl.uid = getuid(); /* a private daemon's one client is its user */
	c->cl.refs = 1;
	c->cl.free = conn_free;
	c->snk.deliver = sink_deliver;
	c->snk.hold = sink_hold;
	c->snk.release = sink_release;
	c->rw.fd = c->ww.fd = -1;
	snprintf(c->cl.actor, sizeof(c->cl.actor), "%s", is_stdio ? "sdk-embedded" : "socket");
	if (loop_add(&c->rw, rfd, EPOLLIN, conn_read_cb, c) < 0) {
		free(c);
		return NULL;
	}
	if (wfd != rfd) {
		if (loop_add(&c->ww, wfd, 0, conn_write_cb, c) < 0) {
			loop_del(&c->rw);
			free(c);
			return NULL;
		}
	}
	c->next = conns;
	conns = c;
	return c;
}

void conn_count(uid_t uid, unsigned *total, unsigned *of_uid)
{
	*total = *of_uid = 0;
	for (conn *c = conns; c; c = c->next) {
		if (c->cl.local || c->rfd < 0)
			continue;
		(*total)++;
		if (c->cl.uid == uid)
			(*of_uid)++;
	}
}

size_t conn_backlog(const conn *c)
{
	return c->wlen;
}

static void flush(conn *c)
{
	while (c->wlen > 0) {
		ssize_t n = write(c->wfd, c->wbuf, c->wlen);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			/* The peer is gone: drop what we had for it. */
			c->wlen = 0;
			c->closing = true;
			break;
		}
		memmove(c->wbuf, c->wbuf + n, c->wlen - (size_t)n);
		c->wlen -= (size_t)n;
	}
	uint32_t want = c->wlen ? EPOLLOUT : 0;
	if (c->wfd == c->rfd)
		loop_mod(&c->rw, (c->closing ? 0 : EPOLLIN) | want);
	else
		loop_mod(&c->ww, want);
	/* Closing is deferred to conn_reap(): flush runs inside replies, and
	 * closing here would tear down sandboxes in the middle of their own
	 * callbacks. */
}

void conn_reap(void)
{
	for (conn *c = conns, *n; c; c = n) {
		n = c->next;
		/* ... and nothing for it waits in the outbox */
		if (c->closing && c->wlen == 0 && c->snk.held == 0)
			conn_close(c);
	}
}

/* Every message to a client passes here: the outbox holds it until the
 * events before it are durable (record/record.c). */
static void send_obj(conn *c, json_t *obj)
{
	outbox_send(&c->snk, obj, c->cl.need);
}

/* A response whose action could not be recorded must not reach the client
 * as a success. */
static json_t *as_failure(json_t *msg, const char *why)
{
	if (!msg)
		return NULL;
	json_t *id = json_object_get(msg, "id");
	if (!id || !json_object_get(msg, "result"))
		return msg;
	char text[800];
	snprintf(text, sizeof(text), "audit log unavailable, the action is not confirmed: %s", why);
	json_t *e = json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id, "error",
			      "code", ERR_AUDIT, "message", text);
	json_decref(msg);
	return e;
}

static void sink_deliver(sink *s, json_t *msg, const char *unrecorded)
{
	conn *c = (conn *)((char *)s - offsetof(conn, snk));
	conn_send_now(c, unrecorded ? as_failure(msg, unrecorded) : msg);
}

static void sink_hold(sink *s)
{
	conn *c = (conn *)((char *)s - offsetof(conn, snk));
	client_hold(&c->cl);
}

static void sink_release(sink *s)
{
	conn *c = (conn *)((char *)s - offsetof(conn, snk));
	conn_put(c);
}

/* A message that cannot be queued is never dropped silently
 * (docs/design/conventions.md, "Out of memory"): the client would wait for it
 * until its own timeout. The connection is closed instead, so that the client
 * sees at once that its requests failed. */
static void close_unsendable(conn *c, const char *what)
{
	log_msg("out of memory: cannot %s for client %s; closing the connection", what,
		c->cl.actor);
	c->closing = true;
	flush(c);
}

/* The reply to a request whose response could not be encoded: a -32603 error
 * formatted without allocating. Returns NULL if obj was not a response with
 * an id that can be written back (then the caller closes the connection). */
static char *oom_reply(json_t *obj, char *buf, size_t len)
{
	json_t *id = obj ? json_object_get(obj, "id") : NULL;
	char idtext[96];
	if (json_is_integer(id))
		snprintf(idtext, sizeof(idtext), "%" JSON_INTEGER_FORMAT, json_integer_value(id));
	else if (json_is_string(id) && json_string_length(id) < 64 &&
		 strspn(json_string_value(id),
			"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			"0123456789-_.:") == json_string_length(id))
		snprintf(idtext, sizeof(idtext), "\"%s\"", json_string_value(id));
	else
		return NULL;
	int n = snprintf(buf, len,
			 "{\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":{\"code\":%d,\"message\":"
			 "\"out of memory: the daemon could not encode its reply to this "
			 "request\"}}",
			 idtext, ERR_INTERNAL);
	return n > 0 && (size_t)n < len ? buf : NULL;
}

/* The text that replaces a response of len bytes that the client could not
 * read: an error response for that request alone (with a null id if even
 * the id is too long). NULL when out of memory. */
static char *too_big(json_t *obj, size_t len)
{
	json_t *id = json_object_get(obj, "id");
	if (json_is_string(id) && json_string_length(id) > 1024)
		id = json_null();
	char msg[200];
	snprintf(msg, sizeof(msg),
		 "the response is %zu bytes, more than the %u MiB one message may carry", len,
		 CONN_MESSAGE_MAX >> 20);
	json_t *e = json_pack("{s:s, s:O, s:{s:i, s:s, s:{s:s, s:I, s:I}}}", "jsonrpc", "2.0", "id",
			      id, "error", "code", ERR_RESOURCES, "message", msg, "data", "limit",
			      "message_bytes", "bytes", (json_int_t)len, "max",
			      (json_int_t)CONN_MESSAGE_MAX);
	char *text = e ? json_dumps(e, JSON_COMPACT) : NULL;
	json_decref(e);
	return text;
}

void conn_send_now(conn *c, json_t *obj)
{
	if (c->rfd < 0 && c->wfd < 0) {
		json_decref(obj);
		return;
	}
	char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	char fallback[320];
	bool static_text = false;
	if (text && strlen(text) + 1 > CONN_MESSAGE_MAX) {
		size_t big = strlen(text);
		free(text);
		if (!json_object_get(obj, "id") || json_object_get(obj, "method")) {
			log_msg(
			    "dropped a %zu-byte notification to %s: longer than a message may be",
			    big, c->cl.actor);
			json_decref(obj);
			return;
		}
		text = too_big(obj, big);
	}
	if (!text) {
		text = oom_reply(obj, fallback, sizeof(fallback));
		static_text = text != NULL;
	}
	json_decref(obj);
	if (!text) {
		close_unsendable(c, "encode a message");
		return;
	}
	size_t len = strlen(text);
	/* Only what the peer left unread counts: a client that reads is never
	 * cut off because one message is large. */
	if (c->wlen > MAX_BACKLOG) {
		log_msg("client %s is not reading; closing the connection", c->cl.actor);
		if (!static_text)
			free(text);
		c->wlen = 0;
		c->closing = true;
		flush(c);
		return;
	}
	if (c->wlen + len + 1 > c->wcap) {
		size_t ncap = c->wcap ? c->wcap : 65536;
		while (ncap < c->wlen + len + 1)
			ncap *= 2;
		char *nb = realloc(c->wbuf, ncap);
		if (!nb) {
			if (!static_text)
				free(text);
			close_unsendable(c, "queue a message");
			return;
		}
		c->wbuf = nb;
		c->wcap = ncap;
	}
	memcpy(c->wbuf + c->wlen, text, len);
	c->wbuf[c->wlen + len] = '\n';
	c->wlen += len + 1;
	if (!static_text)
		free(text);
	flush(c);
}

/* Requests without an id are notifications: they get no response, except
 * for errors that make the request unreadable (parse errors and the like),
 * which are reported with a null id as JSON-RPC prescribes. */
void conn_reply(conn *c, json_t *id, json_t *result)
{
	if (!id) {
		json_decref(result);
		return;
	}
	/* Callers pass a freshly built result: NULL means building it ran out
	 * of memory, which is an error, not a success with a null result. */
	if (!result) {
		conn_error(c, id, ERR_INTERNAL,
			   "out of memory: the daemon could not build the result of this request",
			   NULL);
		return;
	}
	send_obj(c, json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(),
			      "result", result ? result : json_null()));
}

void conn_error(conn *c, json_t *id, int code, const char *msg, json_t *data)
{
	conn_error_in(c, rpc_request_session(c), id, code, msg, data);
}

void conn_error_in(conn *c, const char *session, json_t *id, int code, const char *msg,
		   json_t *data)
{
	/* Messages quote what the client sent, cut at a byte count ("%.64s"),
	 * which can split a UTF-8 character; jansson refuses invalid UTF-8,
	 * and the refusal would then be neither recorded nor answered. */
	char carry[4];
	size_t ncarry = 0;
	json_t *text AB_AUTOJSON = ab__utf8_chunk(msg, strlen(msg), carry, &ncarry, true);
	/* Every refused request is an audited action. */
	client_learns(&c->cl, audit_event("refused", session, -1, c->cl.actor,
					  json_pack("{s:i, s:O, s:O}", "code", code, "message",
						    text, "id", id ? id : json_null())));
	if (!id && code != ERR_PARSE && code != ERR_INVALID) {
		json_decref(data);
		return;
	}
	json_t *e = json_pack("{s:i, s:O}", "code", code, "message", text);
	if (data)
		json_object_set_new(e, "data", data);
	send_obj(c, json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(),
			      "error", e));
}

void conn_notify(conn *c, const char *method, json_t *params)
{
	send_obj(
	    c, json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "method", method, "params", params));
}

static void handle_line(conn *c, char *line, size_t len)
{
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (len == 0)
		return;
	json_error_t jerr;
	json_t *req =
	    json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	if (!req) {
		char msg[256];
		snprintf(msg, sizeof(msg), "parse error: %s (at byte %d)", jerr.text,
			 jerr.position);
		conn_error(c, NULL, ERR_PARSE, msg, NULL);
		return;
	}
	rpc_dispatch(c, req);
	json_decref(req);
}

static void conn_read_cb(void *ctx, uint32_t events)
{
	conn *c = ctx;
	if ((events & EPOLLOUT) && c->wfd == c->rfd)
		flush(c);
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || c->closing)
		return;
	if (c->rcap - c->rlen < 65536) {
		size_t ncap = c->rcap ? c->rcap * 2 : 131072;
		char *nb = realloc(c->rbuf, ncap);
		if (!nb) {
			/* Returning would have the loop call back at once, forever;
			 * the requests cannot be read, so the client is told now. */
			close_unsendable(c, "grow the read buffer");
			return;
		}
		c->rbuf = nb;
		c->rcap = ncap;
	}
	ssize_t n = read(c->rfd, c->rbuf + c->rlen, c->rcap - c->rlen);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		c->closing = true;
		loop_mod(&c->rw, c->wfd == c->rfd && c->wlen ? EPOLLOUT : 0);
		engine_client_gone(&c->cl);
		flush(c);
		return;
	}
	client_hold(&c->cl);
	c->rlen += (size_t)n;
	size_t start = 0;
	bool too_long = false;
	for (;;) {
		char *nl = memchr(c->rbuf + start, '\n', c->rlen - start);
		if (!nl)
			break;
		size_t len = (size_t)(nl - (c->rbuf + start));
		/* The cap holds whether or not the newline arrived in the same
		 * read as the rest of the line. */
		if (len > MAX_LINE) {
			too_long = true;
			break;
		}
		handle_line(c, c->rbuf + start, len);
		start = (size_t)(nl - c->rbuf) + 1;
		if (c->rfd < 0)
			break;
	}
	memmove(c->rbuf, c->rbuf + start, c->rlen - start);
	c->rlen -= start;
	if (too_long || c->rlen > MAX_LINE) {
		conn_error(c, NULL, ERR_INVALID, "request line exceeds 16 MiB", NULL);
		c->rlen = 0;
		c->closing = true;
		engine_client_gone(&c->cl);
		flush(c);
	}
	conn_put(c);
}

static void conn_write_cb(void *ctx, uint32_t events)
{
	(void)events;
	flush(ctx);
}

void conn_close(conn *c)
{
	if (c->rfd < 0 && c->wfd < 0)
		return;
	engine_client_gone(&c->cl);
	loop_del(&c->rw);
	if (c->wfd != c->rfd)
		loop_del(&c->ww);
	close(c->rfd);
	if (c->wfd != c->rfd)
		close(c->wfd);
	bool stdio = c->cl.local;
	c->rfd = c->wfd = -1;
	for (conn **p = &conns; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	conn_put(c);
	/* The embedded daemon lives exactly as long as its one client. */
	if (stdio)
		D.shutting_down = true;
}

void conn_put(conn *c)
{
	client_put(&c->cl);
}

static void conn_free(client *cl)
{
	conn *c = (conn *)((char *)cl - offsetof(conn, cl));
	free(c->rbuf);
	free(c->wbuf);
	free(c);
}

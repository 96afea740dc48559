/* proxy.c - sandboxes, connections and their worker threads, and serving
 * requests (docs/egress.md). Everything a connection sends is hostile: it
 * is parsed strictly (http.c), decided (policy.c), inspected (inspect.h),
 * dialled only at a checked address (addr.c), and recorded (one `request`
 * event each).
 *
 * Locking: g_mu guards the sandbox list, every sandbox's policy pointer,
 * connection list and reference count, and every connection's fds as far
 * as detach can see them. A worker owns its connection's fds; it hands
 * the upstream fd to detach's view (conn_set_upstream) and takes it back
 * under g_mu before closing it, so detach never shuts down a reused fd. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <zlib.h>

#include "ctl.h"
#include "http.h"
#include "inspect.h"
#include "internal.h"
#include "proxy.h"
#include "stream.h"
#include "tls.h"

eg_config eg_cfg = {
    .header_timeout_ms = 10000,
    .io_timeout_ms = 30000,
    .max_conns = 256,
    .max_conns_per_sandbox = 64,
    .max_body = 8 << 20,
};

typedef struct eg_conn eg_conn;

/* Upstream connections left open after a response that allowed it, kept
 * per sandbox for its next request to the same scheme, host and port (key):
 * a new tunnel or client connection then skips the upstream connect and
 * TLS handshake. Never shared between sandboxes. */
#define IDLE_PER_SANDBOX 8
#define IDLE_MAX_MS 30000

typedef struct idle_up {
	eg_stream s;
	char key[EG_HOST_MAX + 24];
	char addr[INET6_ADDRSTRLEN];
	int64_t since_ms;
} idle_up;

typedef struct eg_sandbox {
	char id[EG_SANDBOX_ID_MAX + 1];
	idle_up idle[IDLE_PER_SANDBOX];
	int nidle;
	int listen_fd;
	eg_policy *policy;
	int refs; /* the list's, plus one per connection */
	int nconns;
	eg_conn *conns;
	struct eg_sandbox *next;
} eg_sandbox;

struct eg_conn {
	eg_sandbox *sb;
	int client_fd;
	int upstream_fd; /* -1 when none */
	bool cancelled;	 /* the sandbox was detached */
	eg_conn *prev, *next;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static eg_sandbox *g_sandboxes;
static size_t g_nsandboxes;
static int g_nconns;

int64_t eg_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ sandboxes */

static eg_sandbox *find_locked(const char *id)
{
	for (eg_sandbox *s = g_sandboxes; s; s = s->next)
		if (strcmp(s->id, id) == 0)
			return s;
	return NULL;
}

/* Closes the sandbox's kept upstream connections (detach, last unref). */
static void drop_idle_locked(eg_sandbox *sb)
{
	for (int i = 0; i < sb->nidle; i++)
		eg_stream_close(&sb->idle[i].s);
	sb->nidle = 0;
}

static void sandbox_unref_locked(eg_sandbox *sb)
{
	if (--sb->refs > 0)
		return;
	drop_idle_locked(sb);
	eg_policy_unref(sb->policy);
	free(sb);
}

int eg_sandbox_attach(const char *id, int listen_fd, eg_policy *policy, ab_error *err)
{
	int rc = 0;
	pthread_mutex_lock(&g_mu);
	if (find_locked(id))
		rc = ab_error_set(err, -EEXIST, "attach %s: already attached", id);
	else if (g_nsandboxes >= EG_SANDBOXES_MAX)
		rc = ab_error_set(err, -ENOSPC, "attach %s: more than %d sandboxes", id,
				  EG_SANDBOXES_MAX);
	eg_sandbox *sb = rc ? NULL : calloc(1, sizeof(*sb));
	if (!rc && !sb)
		rc = ab_error_set(err, -ENOMEM, "attach %s: out of memory", id);
	if (!rc) {
		snprintf(sb->id, sizeof(sb->id), "%s", id);
		sb->listen_fd = listen_fd;
		sb->policy = policy;
		sb->refs = 1;
		sb->next = g_sandboxes;
		g_sandboxes = sb;
		g_nsandboxes++;
	}
	pthread_mutex_unlock(&g_mu);
	return rc;
}

int eg_sandbox_set_policy(const char *id, eg_policy *policy, ab_error *err)
{
	pthread_mutex_lock(&g_mu);
	eg_sandbox *sb = find_locked(id);
	eg_policy *old = NULL;
	if (sb) {
		old = sb->policy;
		sb->policy = policy;
	}
	pthread_mutex_unlock(&g_mu);
	if (!sb)
		return ab_error_set(err, -ENOENT, "policy %s: no such sandbox attached", id);
	eg_policy_unref(old);
	return 0;
}

int eg_sandbox_detach(const char *id, ab_error *err)
{
	pthread_mutex_lock(&g_mu);
	eg_sandbox **pp = &g_sandboxes;
	while (*pp && strcmp((*pp)->id, id) != 0)
		pp = &(*pp)->next;
	eg_sandbox *sb = *pp;
	if (!sb) {
		pthread_mutex_unlock(&g_mu);
		return ab_error_set(err, -ENOENT, "detach %s: no such sandbox attached", id);
	}
	*pp = sb->next;
	g_nsandboxes--;
	for (eg_conn *c = sb->conns; c; c = c->next) {
		c->cancelled = true;
		shutdown(c->client_fd, SHUT_RDWR);
		if (c->upstream_fd >= 0)
			shutdown(c->upstream_fd, SHUT_RDWR);
	}
	close(sb->listen_fd);
	sb->listen_fd = -1;
	drop_idle_locked(sb);
	sandbox_unref_locked(sb);
	pthread_mutex_unlock(&g_mu);
	return 0;
}

size_t eg_sandbox_listeners(int *fds, size_t max)
{
	size_t n = 0;
	pthread_mutex_lock(&g_mu);
	for (eg_sandbox *s = g_sandboxes; s && n < max; s = s->next)
		fds[n++] = s->listen_fd;
	pthread_mutex_unlock(&g_mu);
	return n;
}

static bool conn_set_upstream(eg_conn *c, int fd)
{
	pthread_mutex_lock(&g_mu);
	bool ok = !c->cancelled;
	if (ok)
		c->upstream_fd = fd;
	pthread_mutex_unlock(&g_mu);
	return ok;
}

static void conn_close_upstream(eg_conn *c, eg_stream *us)
{
	pthread_mutex_lock(&g_mu);
	c->upstream_fd = -1;
	pthread_mutex_unlock(&g_mu);
	if (us->fd >= 0)
		eg_stream_close(us);
}

/* An idle upstream connection is still usable if nothing arrived on it:
 * for plain HTTP any byte or the end means it is done; over TLS, records
 * that are only housekeeping (TLS 1.3 session tickets) leave it usable. */
static bool upstream_alive(eg_stream *s)
{
	struct pollfd p = {.fd = s->fd, .events = POLLIN};
	int n = poll(&p, 1, 0);
	if (n == 0)
		return true;
	if (n < 0 || (p.revents & (POLLERR | POLLHUP | POLLNVAL)) || !s->ssl)
		return false;
	char x;
	ERR_clear_error();
	int r = SSL_peek(s->ssl, &x, 1);
	return r <= 0 && SSL_get_error(s->ssl, r) == SSL_ERROR_WANT_READ;
}

/* Takes a kept upstream connection of the sandbox that goes where this
 * request goes and is still usable, registered as c's upstream. Only for
 * requests that may be sent again (RFC 9110 9.2.2), since a kept
 * connection can die between the check and the write. */
static bool take_idle(eg_conn *c, const char *key, const char *method, eg_stream *us, char *addr,
		      size_t addr_len)
{
	bool idempotent = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ||
			  strcmp(method, "OPTIONS") == 0 || strcmp(method, "PUT") == 0 ||
			  strcmp(method, "DELETE") == 0;
	if (!idempotent)
		return false;
	for (;;) {
		idle_up got;
		bool found = false;
		pthread_mutex_lock(&g_mu);
		eg_sandbox *sb = c->sb;
		for (int i = sb->nidle - 1; i >= 0 && !c->cancelled; i--) {
			if (strcmp(sb->idle[i].key, key) != 0)
				continue;
			got = sb->idle[i];
			sb->idle[i] = sb->idle[--sb->nidle];
			found = true;
			break;
		}
		pthread_mutex_unlock(&g_mu);
		if (!found)
			return false;
		if (eg_now_ms() - got.since_ms > IDLE_MAX_MS || !upstream_alive(&got.s) ||
		    !conn_set_upstream(c, got.s.fd)) {
			eg_stream_close(&got.s);
			continue;
		}
		*us = got.s;
		us->timeout_ms = eg_cfg.io_timeout_ms;
		snprintf(addr, addr_len, "%s", got.addr);
		return true;
	}
}

/* Keeps us for the sandbox's next request to key (the oldest kept one
 * goes if there are too many); us is closed if the sandbox is gone. */
static void keep_idle(eg_conn *c, const char *key, eg_stream *us, const char *addr)
{
	idle_up evict = {.s = {.fd = -1}};
	pthread_mutex_lock(&g_mu);
	eg_sandbox *sb = c->sb;
	c->upstream_fd = -1;
	if (c->cancelled || sb->listen_fd < 0) {
		pthread_mutex_unlock(&g_mu);
		eg_stream_close(us);
		return;
	}
	if (sb->nidle == IDLE_PER_SANDBOX) {
		int old = 0;
		for (int i = 1; i < sb->nidle; i++)
			if (sb->idle[i].since_ms < sb->idle[old].since_ms)
				old = i;
		evict = sb->idle[old];
		sb->idle[old] = sb->idle[--sb->nidle];
	}
	idle_up *k = &sb->idle[sb->nidle++];
	k->s = *us;
	snprintf(k->key, sizeof(k->key), "%s", key);
	snprintf(k->addr, sizeof(k->addr), "%s", addr);
	k->since_ms = eg_now_ms();
	pthread_mutex_unlock(&g_mu);
	eg_stream_init(us, -1, 0);
	if (evict.s.fd >= 0)
		eg_stream_close(&evict.s);
}

static eg_policy *conn_policy(eg_conn *c)
{
	pthread_mutex_lock(&g_mu);
	eg_policy *p = eg_policy_ref(c->sb->policy);
	pthread_mutex_unlock(&g_mu);
	return p;
}

/* ------------------------------------------------------------- requests */

/* What one request event says (docs/egress.md, "Daemon ↔ sidecar"). */
typedef struct rec {
	const char *scheme;
	char host[EG_HOST_MAX + 1];
	char addr[INET6_ADDRSTRLEN];
	int port;
	char method[24];
	char path[2048];
	int status;
	uint64_t bytes_out, bytes_in;
	enum eg_decision_kind decision;
	char rule[EG_RULE_ID_MAX + 1];
	char reason[600];
	char intent[129];
	enum eg_verdict verdict;
	const char *kinds[EG_INSPECT_KINDS + 1];
	json_t *findings; /* the inspector's, for the record; owned */
	int64_t start_ms;
} rec;

static void emit(const eg_conn *c, const rec *r)
{
	json_t *kinds = json_array();
	for (size_t i = 0; i < EG_INSPECT_KINDS && r->kinds[i]; i++)
		json_array_append_new(kinds, json_string(r->kinds[i]));
	const char *verdict = r->verdict == EG_BLOCK	? "block"
			      : r->verdict == EG_REDACT ? "redact"
							: "pass";
	json_t *ev = json_pack(
	    "{s:s, s:s, s:o, s:s, s:o, s:o, s:i, s:o, s:o, s:i, s:I, s:I, s:s, s:o, s:o, "
	    "s:{s:s, s:o, s:o}, s:I}",
	    "ev", "request", "sandbox", c->sb->id, "intent",
	    r->intent[0] ? eg_json_str(r->intent, sizeof(r->intent)) : json_null(), "scheme",
	    r->scheme, "host", eg_json_str(r->host, sizeof(r->host)), "addr",
	    r->addr[0] ? json_string(r->addr) : json_null(), "port", r->port, "method",
	    eg_json_str(r->method, sizeof(r->method)), "path",
	    eg_json_str(r->path, sizeof(r->path)), "status", r->status, "bytes_out",
	    (json_int_t)r->bytes_out, "bytes_in", (json_int_t)r->bytes_in, "decision",
	    eg_decision_name(r->decision), "rule",
	    r->rule[0] ? eg_json_str(r->rule, sizeof(r->rule)) : json_null(), "reason",
	    r->reason[0] ? eg_json_str(r->reason, sizeof(r->reason)) : json_null(), "inspection",
	    "verdict", verdict, "kinds", kinds, "findings",
	    r->findings ? json_incref(r->findings) : json_array(), "ms",
	    (json_int_t)(eg_now_ms() - r->start_ms));
	eg_ctl_send(ev);
}

static const char *status_text(int st)
{
	switch (st) {
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 408:
		return "Request Timeout";
	case 413:
		return "Content Too Large";
	case 415:
		return "Unsupported Media Type";
	case 417:
		return "Expectation Failed";
	case 431:
		return "Request Header Fields Too Large";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return "Error";
	}
}

/* Sends an answer of the sidecar's own; the client's stream decides
 * nothing else after a failed write (the caller closes). */
static void respond(eg_stream *cs, rec *r, int status, const char *denied_code, const char *ctype,
		    const char *body, bool keep)
{
	char head[1024];
	char denied[EG_RULE_ID_MAX + 40] = "";
	if (denied_code)
		snprintf(denied, sizeof(denied), "X-Agentbox-Denied: %s\r\n", denied_code);
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%sContent-Length: %zu\r\n"
			 "Connection: %s\r\n\r\n",
			 status, status_text(status), ctype, denied, strlen(body),
			 keep ? "keep-alive" : "close");
	r->status = status;
	if (n > 0 && (size_t)n < sizeof(head) && eg_write_all(cs, head, (size_t)n) == 0)
		eg_write_all(cs, body, strlen(body));
}

static void respond_error(eg_stream *cs, rec *r, int status, const char *why)
{
	char body[700];
	snprintf(body, sizeof(body), "%s\n", why);
	r->decision = EG_DENY;
	if (!r->reason[0])
		snprintf(r->reason, sizeof(r->reason), "%s", why);
	respond(cs, r, status, NULL, "text/plain; charset=utf-8", body, false);
}

/* A denial an agent can act on (docs/egress.md). */
static void respond_denied(eg_stream *cs, rec *r, const char *code, bool keep)
{
	json_t *b = json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "error", "egress denied",
			      "host", eg_json_str(r->host, sizeof(r->host)), "method",
			      eg_json_str(r->method, sizeof(r->method)), "path",
			      eg_json_str(r->path, sizeof(r->path)), "reason",
			      eg_json_str(r->reason[0] ? r->reason : NULL, sizeof(r->reason)),
			      "rule", r->rule[0] ? json_string(r->rule) : json_null(), "intent",
			      r->intent[0] ? json_string(r->intent) : json_null(), "how_to_ask",
			      json_string(""));
	char how[600];
	snprintf(how, sizeof(how),
		 "box.request_access(\"%s\", reason=...) or declare an intent that covers it "
		 "(box.set_intent)",
		 r->host);
	json_object_set_new(b, "how_to_ask", eg_json_str(how, sizeof(how)));
	char *s = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	r->decision = EG_DENY;
	respond(cs, r, 403, code, "application/json", s ? s : "{}", keep);
	free(s);
}

/* The connection's read buffer: a head of up to EG_HEAD_MAX bytes plus
 * what arrived after it. */
#define BUF_CAP (EG_HEAD_MAX + 16384)

typedef struct cbuf {
	char data[BUF_CAP];
	size_t len;
} cbuf;

static void consume(cbuf *b, size_t n)
{
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

/* Reads until b holds a whole head. Returns its length; 0 when the
 * connection ended or went idle (close quietly), or -400 / -408 / -431. */
static long read_head(eg_stream *cs, cbuf *b, bool first)
{
	int64_t deadline = eg_now_ms() + eg_cfg.header_timeout_ms;
	size_t hl;
	while (!(hl = eg_http_head_end(b->data, b->len))) {
		if (b->len > EG_HEAD_MAX)
			return -431;
		if (eg_http_has_bare_lf(b->data, b->len))
			return -400;
		int64_t left = deadline - eg_now_ms();
		if (left <= 0)
			return b->len || first ? -408 : 0;
		cs->timeout_ms = (int)left;
		ssize_t n = eg_read(cs, b->data + b->len, sizeof(b->data) - b->len);
		if (n == 0)
			return 0;
		if (n < 0)
			return errno == ETIMEDOUT && (b->len || first) ? -408 : 0;
		b->len += (size_t)n;
	}
	cs->timeout_ms = eg_cfg.io_timeout_ms;
	return hl > EG_HEAD_MAX ? -431 : (long)hl;
}

/* The target of a tunnel (a CONNECT that was allowed). */
typedef struct tunnel {
	char host[EG_HOST_MAX + 1];
	bool host_is_ip;
	uint16_t port;
	struct sockaddr_storage addrs[8];
	socklen_t addrlens[8];
	size_t naddrs;
	unsigned served; /* requests recorded inside it */
} tunnel;

static bool path_has_dot_segment(const char *p, size_t len)
{
	/* Segments "." and ".." (also percent-encoded) would let a path
	 * match a rule's prefix and mean another path upstream. */
	size_t i = 0;
	while (i < len) {
		if (p[i] != '/') {
			i++;
			continue;
		}
		size_t j = i + 1, dots = 0;
		while (j < len && p[j] != '/') {
			if (p[j] == '.')
				dots++, j++;
			else if (j + 2 < len + 0 && p[j] == '%' && p[j + 1] == '2' &&
				 (p[j + 2] == 'e' || p[j + 2] == 'E'))
				dots++, j += 3;
			else {
				dots = 99;
				j++;
			}
		}
		if (j > i + 1 && dots >= 1 && dots <= 2)
			return true;
		i = j;
	}
	return false;
}

/* Resolves host (or takes its --resolve mapping) and keeps the addresses
 * that pass the checks. Returns 0, or a status with the reason set. */
static int resolve_checked(const char *host, bool is_ip, uint16_t port, tunnel *t, rec *r,
			   const char **code)
{
	t->naddrs = 0;
	for (size_t i = 0; i < eg_cfg.nresolve; i++) {
		if (strcmp(eg_cfg.resolve[i].name, host) == 0) {
			memcpy(&t->addrs[0], &eg_cfg.resolve[i].addr, eg_cfg.resolve[i].addrlen);
			t->addrlens[0] = eg_cfg.resolve[i].addrlen;
			t->naddrs = 1;
			return 0;
		}
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	if (is_ip)
		hints.ai_flags = AI_NUMERICHOST;
	struct addrinfo *res = NULL;
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", port);
	int e = getaddrinfo(host, portstr, &hints, &res);
	if (e) {
		snprintf(r->reason, sizeof(r->reason), "resolve %s: %s", host, gai_strerror(e));
		*code = NULL;
		return 502;
	}
	size_t refused = 0;
	for (struct addrinfo *a = res; a && t->naddrs < 8; a = a->ai_next) {
		if (a->ai_addrlen > sizeof(struct sockaddr_storage))
			continue;
		if (eg_sockaddr_refused(a->ai_addr)) {
			if (!refused++)
				eg_sockaddr_str(a->ai_addr, r->addr, sizeof(r->addr));
			continue;
		}
		memcpy(&t->addrs[t->naddrs], a->ai_addr, a->ai_addrlen);
		t->addrlens[t->naddrs++] = a->ai_addrlen;
	}
	freeaddrinfo(res);
	if (t->naddrs == 0) {
		snprintf(r->reason, sizeof(r->reason), "every address of %s is refused (%s)", host,
			 r->addr[0] ? r->addr : "none");
		r->addr[0] = '\0';
		*code = "address";
		return 403;
	}
	return 0;
}

/* Connects to the first address that answers, within the I/O timeout. */
static int dial(eg_conn *c, const tunnel *t, eg_stream *us, rec *r)
{
	for (size_t i = 0; i < t->naddrs; i++) {
		const struct sockaddr *sa = (const struct sockaddr *)&t->addrs[i];
		int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (!conn_set_upstream(c, fd)) {
			close(fd);
			return -1;
		}
		eg_stream_init(us, fd, eg_cfg.io_timeout_ms);
		eg_sockaddr_str(sa, r->addr, sizeof(r->addr));
		int rc = connect(fd, sa, t->addrlens[i]);
		if (rc < 0 && errno == EINPROGRESS) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			int pr;
			do
				pr = poll(&p, 1, eg_cfg.io_timeout_ms);
			while (pr < 0 && errno == EINTR);
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			if (pr == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
			    soerr == 0)
				rc = 0;
			else
				errno = pr == 0 ? ETIMEDOUT : soerr ? soerr : errno;
		}
		if (rc == 0) {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			return 0;
		}
		snprintf(r->reason, sizeof(r->reason), "connect %s port %d: %s", r->addr, r->port,
			 strerror(errno));
		conn_close_upstream(c, us);
	}
	if (!r->reason[0])
		snprintf(r->reason, sizeof(r->reason), "connect %s: no address", r->host);
	return -1;
}

/* Shows the body to the inspector, decoded when it is gzip or deflate.
 * Returns 0, or a status (400 corrupt, 413 decoded size over the bound). */
/* A status and why, or 0. *unredactable: the inspector wanted to redact
 * inside a compressed body, where only the decoded copy was rewritten and
 * the original bytes would leave as they are. */
static int inspect_body(eg_inspector *in, eg_http_req *q, char *why, size_t whylen,
			bool *unredactable)
{
	if (q->body_len == 0)
		return 0;
	if (q->encoding == EG_CE_IDENTITY) {
		/* Buffered whole: one call, so that a value to redact is never
		 * cut by a seam of ours. The bytes rewritten are the ones sent. */
		eg_inspect(in, "body", q->body, q->body_len);
		return 0;
	}
	/* A value to redact in what was decoded cannot be rewritten in the
	 * bytes that go: the request is blocked instead. */
	/* Decoding is for inspection only: the original bytes go upstream. */
	size_t bound = eg_cfg.max_body * 4 + 65536, total = 0;
	z_stream z;
	memset(&z, 0, sizeof(z));
	int wbits = q->encoding == EG_CE_GZIP ? 16 + MAX_WBITS : MAX_WBITS;
	bool raw_tried = false;
retry:
	if (inflateInit2(&z, wbits) != Z_OK) {
		snprintf(why, whylen, "out of memory");
		return 503;
	}
	z.next_in = (Bytef *)q->body;
	z.avail_in = (uInt)q->body_len;
	char out[16384];
	int zr;
	do {
		z.next_out = (Bytef *)out;
		z.avail_out = sizeof(out);
		zr = inflate(&z, Z_NO_FLUSH);
		if (zr == Z_DATA_ERROR && q->encoding == EG_CE_DEFLATE && !raw_tried &&
		    total == 0) {
			/* "deflate" is often sent raw, without the zlib wrapper. */
			inflateEnd(&z);
			memset(&z, 0, sizeof(z));
			wbits = -MAX_WBITS;
			raw_tried = true;
			goto retry;
		}
		if (zr != Z_OK && zr != Z_STREAM_END) {
			inflateEnd(&z);
			snprintf(why, whylen, "request body: bad %s data",
				 q->encoding == EG_CE_GZIP ? "gzip" : "deflate");
			return 400;
		}
		size_t got = sizeof(out) - z.avail_out;
		total += got;
		if (total > bound) {
			inflateEnd(&z);
			snprintf(why, whylen, "decoded request body over %zu bytes", bound);
			return 413;
		}
		enum eg_verdict v = got ? eg_inspect_stream(in, out, got) : EG_PASS;
		if (v == EG_REDACT)
			*unredactable = true;
		if (v == EG_BLOCK || v == EG_REDACT)
			break;
		if (zr == Z_OK && got == 0 && z.avail_in == 0) {
			inflateEnd(&z);
			snprintf(why, whylen, "request body: truncated compressed data");
			return 400;
		}
	} while (zr != Z_STREAM_END);
	inflateEnd(&z);
	if (eg_inspect_stream_end(in) == EG_REDACT)
		*unredactable = true;
	return 0;
}

/* Why inspection refused a request, for the agent: the kinds found (never
 * the values) and what to do about it. */
static void inspection_reason(rec *r, eg_inspector *in, const char *what)
{
	const char *const *k = eg_inspect_kinds(in);
	int n = snprintf(r->reason, sizeof(r->reason), "blocked by inspection%s%s", what ? ": " : "",
			 what ? what : "");
	for (size_t i = 0; k && k[i] && n > 0 && (size_t)n < sizeof(r->reason); i++)
		n += snprintf(r->reason + n, sizeof(r->reason) - (size_t)n, "%s%s",
			      i ? ", " : what ? "; found " : ": found ", k[i]);
	if (n > 0 && (size_t)n < sizeof(r->reason))
		snprintf(r->reason + n, sizeof(r->reason) - (size_t)n,
			 " (the sandbox's DLP policy does not let it leave; docs/dlp.md)");
}

static void record_inspection(rec *r, eg_inspector *in, enum eg_verdict v)
{
	r->verdict = v;
	const char *const *k = eg_inspect_kinds(in);
	for (size_t i = 0; i < EG_INSPECT_KINDS && k && k[i]; i++)
		r->kinds[i] = k[i];
	json_decref(r->findings);
	r->findings = eg_inspect_findings(in);
}

/* Relays bytes both ways until either side ends (a WebSocket after 101,
 * the only tunnel this proxy opens without interpreting it). */
static void relay_both(eg_stream *a, eg_stream *b, rec *r)
{
	char buf[16384];
	for (;;) {
		bool ra = a->ssl && SSL_pending(a->ssl) > 0, rb = b->ssl && SSL_pending(b->ssl) > 0;
		if (!ra && !rb) {
			struct pollfd p[2] = {{.fd = a->fd, .events = POLLIN},
					      {.fd = b->fd, .events = POLLIN}};
			int n = poll(p, 2, eg_cfg.io_timeout_ms);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return;
			ra = p[0].revents != 0;
			rb = p[1].revents != 0;
		}
		if (ra) {
			ssize_t n = eg_read(a, buf, sizeof(buf));
			if (n <= 0 || eg_write_all(b, buf, (size_t)n) < 0)
				return;
			r->bytes_out += (uint64_t)n;
		}
		if (rb) {
			ssize_t n = eg_read(b, buf, sizeof(buf));
			if (n <= 0 || eg_write_all(a, buf, (size_t)n) < 0)
				return;
			r->bytes_in += (uint64_t)n;
		}
	}
}

static int append_str(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t c = *cap ? *cap * 2 : 4096;
		while (c < *len + n + 1)
			c *= 2;
		char *b = realloc(*buf, c);
		if (!b)
			return -1;
		*buf = b;
		*cap = c;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

#define APPEND(s, n)                                                                               \
	do {                                                                                       \
		if (append_str(&out, &len, &cap, (s), (n)) < 0)                                    \
			goto nomem;                                                                \
	} while (0)

/* The head sent upstream: origin-form, hop-by-hop headers dropped,
 * framing by Content-Length (the body is whole), one request per
 * upstream connection. */
static char *upstream_head(const eg_http_req *q, const char *target, const char *host_hdr,
			   bool websocket, size_t *out_len)
{
	char *out = NULL;
	size_t len = 0, cap = 0;
	APPEND(q->method, strlen(q->method));
	APPEND(" ", 1);
	APPEND(target, strlen(target));
	APPEND(" HTTP/1.1\r\n", 11);
	bool have_host = false;
	for (size_t i = 0; i < q->nhdr; i++) {
		const char *n = q->hdr[i].name;
		if (eg_http_hop_by_hop(q, n) || strcasecmp(n, "content-length") == 0)
			continue;
		if (strcasecmp(n, "host") == 0)
			have_host = true;
		APPEND(n, strlen(n));
		APPEND(": ", 2);
		APPEND(q->hdr[i].value, strlen(q->hdr[i].value));
		APPEND("\r\n", 2);
	}
	if (!have_host) {
		APPEND("Host: ", 6);
		APPEND(host_hdr, strlen(host_hdr));
		APPEND("\r\n", 2);
	}
	if (websocket) {
		const char *up = eg_http_header(q, "upgrade");
		APPEND("Connection: Upgrade\r\nUpgrade: ", 30);
		APPEND(up, strlen(up));
		APPEND("\r\n", 2);
	}
	if (q->body_len || q->has_content_length || q->chunked) {
		char cl[48];
		int n = snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", q->body_len);
		APPEND(cl, (size_t)n);
	}
	APPEND("\r\n", 2);
	*out_len = len;
	return out;
nomem:
	free(out);
	return NULL;
}

/* Host (and optional port) from a Host header, compared with the target. */
static bool host_header_matches(const char *hdr, const char *host, uint16_t port,
				uint16_t default_port)
{
	char h[EG_HOST_MAX + 8];
	const char *colon = NULL;
	const char *p = hdr;
	size_t hl;
	if (*p == '[') {
		const char *close = strchr(p, ']');
		if (!close)
			return false;
		hl = (size_t)(close - p - 1);
		p++;
		colon = close[1] == ':' ? close + 1 : NULL;
		if (close[1] && !colon)
			return false;
	} else {
		colon = strchr(p, ':');
		hl = colon ? (size_t)(colon - p) : strlen(p);
	}
	if (hl == 0 || hl >= sizeof(h))
		return false;
	memcpy(h, p, hl);
	h[hl] = '\0';
	enum eg_host_kind k = eg_host_normalize(h);
	if (k == EG_HOST_BAD || strcmp(h, host) != 0)
		return false;
	unsigned long hp = default_port;
	if (colon) {
		char *end;
		errno = 0;
		hp = strtoul(colon + 1, &end, 10);
		if (errno || *end || end == colon + 1 || hp > 65535)
			return false;
	}
	return hp == port;
}

enum outcome { KEEP, CLOSE };

/* Serves one request whose head is b->data[0..hl). tunnel is NULL for
 * plain HTTP, else the allowed CONNECT this request arrived in. */
static enum outcome serve_request(eg_conn *c, eg_stream *cs, cbuf *b, size_t hl, tunnel *tun);

static void serve_connect(eg_conn *c, eg_stream *cs, cbuf *b, size_t hl, rec *r, eg_policy *pol);

static void serve_loop(eg_conn *c, eg_stream *cs, cbuf *b, tunnel *tun)
{
	for (bool first = true;; first = false) {
		long hl = read_head(cs, b, first);
		if (hl == 0)
			return;
		if (hl < 0) {
			rec r = {.scheme = tun ? "https" : "http", .start_ms = eg_now_ms()};
			if (tun) {
				snprintf(r.host, sizeof(r.host), "%s", tun->host);
				r.port = tun->port;
			}
			respond_error(cs, &r, (int)-hl,
				      hl == -408   ? "request head not received in time"
				      : hl == -400 ? "bare LF in the request head"
						   : "request head too large");
			emit(c, &r);
			if (tun)
				tun->served++;
			return;
		}
		if (tun)
			tun->served++;
		if (serve_request(c, cs, b, (size_t)hl, tun) == CLOSE)
			return;
	}
}

static enum outcome serve_request(eg_conn *c, eg_stream *cs, cbuf *b, size_t hl, tunnel *tun)
{
	rec r = {.scheme = tun ? "https" : "http", .start_ms = eg_now_ms()};
	eg_http_req q;
	char why[600];
	enum outcome out = CLOSE;
	eg_policy *pol = conn_policy(c);
	eg_inspector *in = eg_inspect_begin(pol, eg_now_ms());
	eg_stream us;
	eg_stream_init(&us, -1, eg_cfg.io_timeout_ms);
	char *uhead = NULL;
	char key[EG_HOST_MAX + 24] = "";
	bool up_keep = false;
	const char *intent = eg_policy_intent(pol, eg_now_ms());
	snprintf(r.intent, sizeof(r.intent), "%s", intent ? intent : "");
	if (tun) {
		snprintf(r.host, sizeof(r.host), "%s", tun->host);
		r.port = tun->port;
	}

	int st = eg_http_parse_head(&q, b->data, hl, eg_cfg.max_body, why, sizeof(why));
	snprintf(r.method, sizeof(r.method), "%s", q.method);
	if (st) {
		respond_error(cs, &r, st, why);
		goto done;
	}
	if (!in) {
		respond_error(cs, &r, 503, "out of memory");
		goto done;
	}

	/* The target: host, port, path. */
	struct http_parser_url u;
	http_parser_url_init(&u);
	bool is_connect = q.parser.method == HTTP_CONNECT;
	if (is_connect && tun) {
		respond_error(cs, &r, 400, "CONNECT inside a tunnel");
		goto done;
	}
	const char *url = q.url;
	size_t ulen = strlen(url);
	bool absolute = url[0] != '/';
	if (http_parser_parse_url(url, ulen, is_connect, &u) != 0) {
		respond_error(cs, &r, 400, "malformed request target");
		goto done;
	}
	if (!is_connect) {
		size_t pl = (u.field_set & (1 << UF_PATH)) ? u.field_data[UF_PATH].len : 0;
		const char *pp = pl ? url + u.field_data[UF_PATH].off : "/";
		snprintf(r.path, sizeof(r.path), "%.*s", (int)(pl ? pl : 1), pp);
		if (r.path[0] != '/' || path_has_dot_segment(r.path, strlen(r.path)) ||
		    (u.field_set & (1 << UF_FRAGMENT)) || (u.field_set & (1 << UF_USERINFO))) {
			respond_error(cs, &r, 400,
				      "request target must be a plain path (no dot "
				      "segments, fragment or user info)");
			goto done;
		}
	}
	if (absolute) {
		if (!(u.field_set & (1 << UF_HOST))) {
			respond_error(cs, &r, 400, "request target has no host");
			goto done;
		}
		const char *want = tun ? "https" : "http";
		if (!is_connect &&
		    (!(u.field_set & (1 << UF_SCHEMA)) ||
		     u.field_data[UF_SCHEMA].len != strlen(want) ||
		     strncasecmp(url + u.field_data[UF_SCHEMA].off, want, strlen(want)) != 0)) {
			respond_error(cs, &r, 400,
				      tun ? "only https:// targets inside a tunnel"
					  : "only http:// targets (use CONNECT for https)");
			goto done;
		}
		char host[EG_HOST_MAX + 2];
		if (u.field_data[UF_HOST].len >= sizeof(host)) {
			respond_error(cs, &r, 400, "host name too long");
			goto done;
		}
		memcpy(host, url + u.field_data[UF_HOST].off, u.field_data[UF_HOST].len);
		host[u.field_data[UF_HOST].len] = '\0';
		enum eg_host_kind k = eg_host_normalize(host);
		if (k == EG_HOST_BAD) {
			snprintf(r.host, sizeof(r.host), "%s", host);
			respond_error(cs, &r, 400, "bad host name");
			goto done;
		}
		uint16_t port = (u.field_set & (1 << UF_PORT)) ? u.port : tun ? 443 : 80;
		if (tun && (strcmp(host, tun->host) != 0 || port != tun->port)) {
			snprintf(r.reason, sizeof(r.reason), "request for %s inside a tunnel to %s",
				 host, tun->host);
			respond_denied(cs, &r, "host-mismatch", false);
			goto done;
		}
		snprintf(r.host, sizeof(r.host), "%s", host);
		r.port = port;
	} else if (!tun) {
		respond_error(cs, &r, 400,
			      "a proxy request needs an absolute http:// target (or CONNECT)");
		goto done;
	}
	bool host_is_ip = false;
	{
		char tmp[EG_HOST_MAX + 1];
		snprintf(tmp, sizeof(tmp), "%s", r.host);
		host_is_ip = eg_host_normalize(tmp) != EG_HOST_NAME;
	}

	/* The inspector sees the host, the URL and each header before
	 * anything is looked up or decided. */
	{
		char tmp[EG_HOST_MAX + 1];
		snprintf(tmp, sizeof(tmp), "%s", r.host);
		enum eg_verdict vh = eg_inspect(in, "host", tmp, strlen(tmp));
		enum eg_verdict vu = eg_inspect(in, "url", q.url, strlen(q.url));
		/* The headers are shown as their lines, "Name: value", all at
		 * once, so that a value is seen with its name (X-Api-Key: ...);
		 * a redaction is copied back into each. Hop-by-hop headers
		 * (Proxy-Authorization, those that Connection names) end here:
		 * they never leave, and are not shown. */
		size_t total = 0;
		for (size_t i = 0; i < q.nhdr; i++)
			total += strlen(q.hdr[i].name) + strlen(q.hdr[i].value) + 3;
		char *lines = malloc(total + 1);
		size_t *at = calloc(q.nhdr + 1, sizeof(*at));
		if (!lines || !at) {
			free(lines);
			free(at);
			respond_error(cs, &r, 503, "out of memory");
			goto done;
		}
		size_t len = 0;
		for (size_t i = 0; i < q.nhdr; i++) {
			at[i] = len;
			if (eg_http_hop_by_hop(&q, q.hdr[i].name))
				continue;
			size_t nl = strlen(q.hdr[i].name), vl = strlen(q.hdr[i].value);
			memcpy(lines + len, q.hdr[i].name, nl);
			memcpy(lines + len + nl, ": ", 2);
			memcpy(lines + len + nl + 2, q.hdr[i].value, vl);
			lines[len + nl + 2 + vl] = '\n';
			len += nl + vl + 3;
		}
		if (len && eg_inspect(in, "header", lines, len) == EG_REDACT)
			for (size_t i = 0; i < q.nhdr; i++) {
				if (eg_http_hop_by_hop(&q, q.hdr[i].name))
					continue;
				size_t nl = strlen(q.hdr[i].name);
				memcpy(q.hdr[i].name, lines + at[i], nl);
				memcpy(q.hdr[i].value, lines + at[i] + nl + 2, strlen(q.hdr[i].value));
			}
		free(lines);
		free(at);
		enum eg_verdict v = eg_inspect_verdict(in);
		/* What the inspector flagged never reaches the record: a host
		 * name cannot be redacted (it is where the request goes), so it
		 * is blocked and withheld; a redacted target is recorded as
		 * rewritten, a blocked one withheld. */
		if (vh != EG_PASS) {
			v = EG_BLOCK;
			snprintf(r.host, sizeof(r.host), "%s", "[withheld by inspection]");
		}
		if (vu == EG_BLOCK || (vu != EG_PASS && v == EG_BLOCK))
			snprintf(r.path, sizeof(r.path), "%s", "[withheld by inspection]");
		else if (vu == EG_REDACT && !is_connect)
			snprintf(r.path, sizeof(r.path), "%.*s",
				 (int)((u.field_set & (1 << UF_PATH)) ? u.field_data[UF_PATH].len : 1),
				 (u.field_set & (1 << UF_PATH)) ? q.url + u.field_data[UF_PATH].off
								: "/");
		if (v == EG_BLOCK) {
			record_inspection(&r, in, v);
			inspection_reason(&r, in, NULL);
			respond_denied(cs, &r, "inspection", false);
			goto done;
		}
	}

	if (is_connect) {
		serve_connect(c, cs, b, hl, &r, pol);
		goto done_emitted;
	}

	/* Host must agree with the target. */
	const char *hh = eg_http_header(&q, "host");
	if ((hh || tun) &&
	    !host_header_matches(hh ? hh : "", r.host, (uint16_t)r.port, tun ? 443 : 80)) {
		snprintf(r.reason, sizeof(r.reason), "Host header %.200s does not match %s",
			 hh ? hh : "(none)", r.host);
		respond_denied(cs, &r, "host-mismatch", false);
		goto done;
	}

	/* The decision on the head (the size as announced). */
	eg_query query = {.host = r.host,
			  .host_is_ip = host_is_ip,
			  .port = (uint16_t)r.port,
			  .method = q.method,
			  .path = r.path,
			  .bytes_out = q.has_content_length ? q.content_length : 0,
			  .websocket = q.websocket};
	eg_decision d;
	eg_policy_decide(pol, &query, eg_now_ms(), &d);
	r.decision = d.kind;
	snprintf(r.rule, sizeof(r.rule), "%s", d.rule);
	snprintf(r.reason, sizeof(r.reason), "%s", d.reason);
	bool has_body = q.chunked || (q.has_content_length && q.content_length > 0);
	if (d.kind == EG_DENY) {
		respond_denied(cs, &r, d.code, q.keep_alive && !has_body && q.complete);
		if (q.keep_alive && !has_body && q.complete) {
			consume(b, hl);
			out = KEEP;
		}
		goto done;
	}

	/* The body, whole, before anything goes upstream. */
	consume(b, hl);
	if (q.expect_continue && !q.complete &&
	    eg_write_all(cs, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0)
		goto done;
	while (!q.complete) {
		size_t used = 0;
		if (b->len) {
			st = eg_http_feed_body(&q, b->data, b->len, &used, why, sizeof(why));
			if (st) {
				respond_error(cs, &r, st, why);
				goto done;
			}
			consume(b, used);
			if (q.complete)
				break;
		}
		ssize_t n = eg_read(cs, b->data + b->len, sizeof(b->data) - b->len);
		if (n <= 0) {
			if (n < 0 && errno == ETIMEDOUT)
				respond_error(cs, &r, 408, "request body not received in time");
			else
				snprintf(r.reason, sizeof(r.reason), "client closed mid-body");
			r.decision = EG_DENY;
			goto done;
		}
		b->len += (size_t)n;
	}
	bool unredactable = false;
	eg_inspect_content_type(in, eg_http_header(&q, "content-type"));
	st = inspect_body(in, &q, why, sizeof(why), &unredactable);
	if (st) {
		respond_error(cs, &r, st, why);
		goto done;
	}
	enum eg_verdict v = unredactable ? EG_BLOCK : eg_inspect_verdict(in);
	record_inspection(&r, in, v);
	if (v == EG_BLOCK) {
		inspection_reason(&r, in,
				  unredactable ? "a value to redact inside a compressed body, which "
						 "cannot be rewritten"
					       : NULL);
		snprintf(r.rule, sizeof(r.rule), "%s", "");
		respond_denied(cs, &r, "inspection", false);
		goto done;
	}

	/* Decided again with the body's real size. */
	query.bytes_out = q.body_len;
	eg_policy_decide(pol, &query, eg_now_ms(), &d);
	r.decision = d.kind;
	snprintf(r.rule, sizeof(r.rule), "%s", d.rule);
	snprintf(r.reason, sizeof(r.reason), "%s", d.reason);
	if (d.kind == EG_DENY) {
		respond_denied(cs, &r, d.code, q.keep_alive);
		out = q.keep_alive ? KEEP : CLOSE;
		goto done;
	}

	/* Forward. */
	char target[4096 + 16];
	{
		size_t off = (u.field_set & (1 << UF_PATH)) ? u.field_data[UF_PATH].off : 0;
		size_t tl = 0;
		if (u.field_set & (1 << UF_PATH)) {
			tl = u.field_data[UF_PATH].len;
			if (u.field_set & (1 << UF_QUERY))
				tl = u.field_data[UF_QUERY].off + u.field_data[UF_QUERY].len - off;
		}
		if (tl >= sizeof(target)) {
			respond_error(cs, &r, 400, "request target too long");
			goto done;
		}
		if (tl == 0) {
			if (u.field_set & (1 << UF_QUERY))
				snprintf(target, sizeof(target), "/?%.*s",
					 (int)u.field_data[UF_QUERY].len,
					 url + u.field_data[UF_QUERY].off);
			else
				snprintf(target, sizeof(target), "/");
		} else {
			memcpy(target, url + off, tl);
			target[tl] = '\0';
		}
	}
	char host_hdr[EG_HOST_MAX + 16];
	bool v6 = strchr(r.host, ':') != NULL;
	if (r.port == (tun ? 443 : 80))
		snprintf(host_hdr, sizeof(host_hdr), v6 ? "[%s]" : "%s", r.host);
	else
		snprintf(host_hdr, sizeof(host_hdr), v6 ? "[%s]:%d" : "%s:%d", r.host, r.port);
	size_t uhl;
	/* The upstream connection is ours: kept for the sandbox's next request
	 * whatever the client wants for its own. */
	uhead = upstream_head(&q, target, host_hdr, q.websocket, &uhl);
	if (!uhead) {
		respond_error(cs, &r, 503, "out of memory");
		goto done;
	}
	/* Where to: the kept connection if it goes there, else a checked
	 * address only. */
	snprintf(key, sizeof(key), "%s|%s|%d", r.scheme, r.host, r.port);
	bool reused = take_idle(c, key, q.method, &us, r.addr, sizeof(r.addr));
	tunnel local;
	tunnel *t = tun;
again:
	if (!reused && !t) {
		t = &local;
		const char *code = NULL;
		enum eg_decision_kind keep_kind = r.decision;
		st = resolve_checked(r.host, host_is_ip, (uint16_t)r.port, t, &r, &code);
		if (st == 403) {
			/* No rule refused it: the address checks did. */
			r.rule[0] = '\0';
			respond_denied(cs, &r, code, false);
			goto done;
		}
		if (st) {
			respond_error(cs, &r, st, r.reason);
			goto done;
		}
		r.decision = keep_kind;
	}
	char saved_reason[sizeof(r.reason)];
	snprintf(saved_reason, sizeof(saved_reason), "%s", r.reason);
	r.reason[0] = '\0';
	if (!reused && dial(c, t, &us, &r) < 0) {
		respond_error(cs, &r, 502, r.reason[0] ? r.reason : "upstream unreachable");
		goto done;
	}
	snprintf(r.reason, sizeof(r.reason), "%s", saved_reason);
	if (tun && !reused) {
		ab_error err = {0};
		if (eg_tls_connect(&us, r.host, &err) < 0) {
			snprintf(r.reason, sizeof(r.reason), "upstream TLS: %s", err.msg);
			respond_error(cs, &r, 502, r.reason);
			goto done;
		}
	}

	if (eg_write_all(&us, uhead, uhl) < 0 ||
	    (q.body_len && eg_write_all(&us, q.body, q.body_len) < 0)) {
		if (reused) {
			/* The kept connection had died: once more on a new one. */
			conn_close_upstream(c, &us);
			reused = false;
			goto again;
		}
		snprintf(r.reason, sizeof(r.reason), "write upstream: %s", strerror(errno));
		respond_error(cs, &r, 502, r.reason);
		goto done;
	}
	r.bytes_out = uhl + q.body_len;

	/* Relay the response to its end. */
	eg_http_resp resp;
	eg_http_resp_init(&resp, strcmp(q.method, "HEAD") == 0);
	char rb[16384];
	bool sent_any = false;
	while (!resp.complete) {
		ssize_t n = eg_read(&us, rb, sizeof(rb));
		if (n < 0 || (n == 0 && eg_http_resp_eof(&resp) < 0)) {
			if (reused && !sent_any && r.bytes_in == 0) {
				conn_close_upstream(c, &us);
				reused = false;
				goto again;
			}
			if (!sent_any) {
				bool to = n < 0 && errno == ETIMEDOUT;
				snprintf(r.reason, sizeof(r.reason), "upstream %s",
					 to ? "timed out" : "closed without a response");
				respond_error(cs, &r, to ? 504 : 502, r.reason);
			}
			r.status = resp.status ? resp.status : r.status;
			goto done;
		}
		if (n == 0)
			break;
		size_t used = 0;
		if (eg_http_resp_feed(&resp, rb, (size_t)n, &used) < 0) {
			if (!sent_any) {
				snprintf(r.reason, sizeof(r.reason), "malformed upstream response");
				respond_error(cs, &r, 502, r.reason);
			}
			goto done;
		}
		r.bytes_in += (uint64_t)n;
		if (used && eg_write_all(cs, rb, used) < 0) {
			r.status = resp.status;
			goto done;
		}
		sent_any = sent_any || used > 0;
	}
	r.status = resp.status;
	if (resp.upgrade && q.websocket) {
		if (b->len && eg_write_all(&us, b->data, b->len) == 0) {
			r.bytes_out += b->len;
			b->len = 0;
		}
		relay_both(cs, &us, &r);
		goto done;
	}
	out = q.keep_alive && !resp.close_delimited && !resp.upgrade &&
		      http_should_keep_alive(&resp.parser)
		  ? KEEP
		  : CLOSE;
	if (resp.upgrade)
		out = CLOSE;
	up_keep = resp.complete && !resp.close_delimited && !resp.upgrade &&
		  http_should_keep_alive(&resp.parser);

done:
	emit(c, &r);
done_emitted:
	json_decref(r.findings);
	free(uhead);
	if (up_keep)
		keep_idle(c, key, &us, r.addr);
	else
		conn_close_upstream(c, &us);
	eg_inspect_end(in);
	eg_http_req_free(&q);
	eg_policy_unref(pol);
	return out;
}

static void serve_connect(eg_conn *c, eg_stream *cs, cbuf *b, size_t hl, rec *r, eg_policy *pol)
{
	r->scheme = "https";
	snprintf(r->path, sizeof(r->path), "%s", "");
	tunnel *t = calloc(1, sizeof(*t));
	if (!t) {
		respond_error(cs, r, 503, "out of memory");
		emit(c, r);
		return;
	}
	snprintf(t->host, sizeof(t->host), "%s", r->host);
	t->port = (uint16_t)r->port;
	char tmp[EG_HOST_MAX + 1];
	snprintf(tmp, sizeof(tmp), "%s", r->host);
	t->host_is_ip = eg_host_normalize(tmp) != EG_HOST_NAME;

	eg_query query = {.host = t->host, .host_is_ip = t->host_is_ip, .port = t->port};
	eg_decision d;
	eg_policy_decide(pol, &query, eg_now_ms(), &d);
	r->decision = d.kind;
	snprintf(r->rule, sizeof(r->rule), "%s", d.rule);
	snprintf(r->reason, sizeof(r->reason), "%s", d.reason);
	if (d.kind == EG_DENY) {
		respond_denied(cs, r, d.code, false);
		goto refused;
	}
	if (!eg_cfg.tls_ok) {
		snprintf(r->reason, sizeof(r->reason), "TLS interception unavailable: %s",
			 eg_cfg.tls_error);
		respond_error(cs, r, 502, r->reason);
		goto refused;
	}
	const char *code = NULL;
	int st = resolve_checked(t->host, t->host_is_ip, t->port, t, r, &code);
	if (st == 403) {
		r->rule[0] = '\0';
		respond_denied(cs, r, code, false);
		goto refused;
	}
	if (st) {
		respond_error(cs, r, st, r->reason);
		goto refused;
	}
	r->addr[0] = '\0';
	consume(b, hl);
	if (b->len) {
		respond_error(cs, r, 400, "data sent before the CONNECT was answered");
		goto refused;
	}
	if (eg_write_all(cs, "HTTP/1.1 200 Connection established\r\n\r\n", 39) < 0) {
		free(t);
		return;
	}
	char sni[EG_HOST_MAX + 2] = "";
	ab_error err = {0};
	if (eg_tls_accept(cs, t->host, sni, sizeof(sni), &err) < 0) {
		r->status = 200;
		r->decision = EG_DENY;
		snprintf(r->reason, sizeof(r->reason), "TLS from the sandbox: %s", err.msg);
		emit(c, r);
		free(t);
		return;
	}
	serve_loop(c, cs, b, t);
	if (t->served == 0) {
		/* Every connection is on the record, even one that only
		 * shook hands. */
		r->status = 200;
		snprintf(r->reason, sizeof(r->reason), "tunnel closed without a request");
		emit(c, r);
	}
	free(t);
	return;
refused:
	emit(c, r);
	free(t);
}

/* ---------------------------------------------------------- connections */

/* Takes c off its sandbox's list and out of the counts (g_mu held). */
static void conn_unlink_locked(eg_conn *c)
{
	eg_sandbox *sb = c->sb;
	if (c->prev)
		c->prev->next = c->next;
	else
		sb->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	sb->nconns--;
	g_nconns--;
}

static void *conn_main(void *arg)
{
	eg_conn *c = arg;
	cbuf *b = malloc(sizeof(*b));
	eg_stream cs;
	eg_stream_init(&cs, c->client_fd, eg_cfg.io_timeout_ms);
	if (b) {
		b->len = 0;
		serve_loop(c, &cs, b, NULL);
	}
	free(b);
	pthread_mutex_lock(&g_mu);
	eg_sandbox *sb = c->sb;
	conn_unlink_locked(c);
	/* Closed under the lock: detach must never shut down a reused fd. */
	if (cs.ssl) {
		SSL_free(cs.ssl);
		cs.ssl = NULL;
	}
	close(c->client_fd);
	sandbox_unref_locked(sb);
	pthread_mutex_unlock(&g_mu);
	free(c);
	return NULL;
}

static void refuse_busy(int fd, const char *sb_id, int n, int limit)
{
	static const char msg[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
				  "Content-Length: 21\r\nConnection: close\r\n\r\n"
				  "too many connections\n";
	ssize_t w = send(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)w;
	close(fd);
	eg_ctl_log("sandbox %s: connection refused with 503: %d connections (limit %d)", sb_id, n,
		   limit);
}

void eg_sandbox_accept(int listen_fd)
{
	for (int i = 0; i < 64; i++) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		pthread_mutex_lock(&g_mu);
		eg_sandbox *sb = g_sandboxes;
		while (sb && sb->listen_fd != listen_fd)
			sb = sb->next;
		if (!sb) {
			pthread_mutex_unlock(&g_mu);
			close(fd);
			return;
		}
		int over = 0, n = 0;
		if (g_nconns >= eg_cfg.max_conns) {
			over = eg_cfg.max_conns;
			n = g_nconns;
		} else if (sb->nconns >= eg_cfg.max_conns_per_sandbox) {
			over = eg_cfg.max_conns_per_sandbox;
			n = sb->nconns;
		}
		eg_conn *c = over ? NULL : calloc(1, sizeof(*c));
		if (c) {
			c->sb = sb;
			c->client_fd = fd;
			c->upstream_fd = -1;
			c->next = sb->conns;
			if (sb->conns)
				sb->conns->prev = c;
			sb->conns = c;
			sb->nconns++;
			sb->refs++;
			g_nconns++;
		}
		char id[EG_SANDBOX_ID_MAX + 1];
		snprintf(id, sizeof(id), "%s", sb->id);
		pthread_mutex_unlock(&g_mu);
		if (!c) {
			refuse_busy(fd, id, n, over);
			continue;
		}
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&attr, 512 * 1024);
		pthread_t th;
		int rc = pthread_create(&th, &attr, conn_main, c);
		pthread_attr_destroy(&attr);
		if (rc != 0) {
			pthread_mutex_lock(&g_mu);
			conn_unlink_locked(c);
			sandbox_unref_locked(sb);
			pthread_mutex_unlock(&g_mu);
			free(c);
			refuse_busy(fd, id, -1, -1);
		}
	}
}

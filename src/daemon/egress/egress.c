/* egress.c - THROWAWAY test double of the daemon's egress module, for
 * tests/integration/test_egress_relay.py until the real module lands.
 *
 * Enabled when $AGENTBOX_TEST_EGRESS_BUNDLE names a file (the "CA bundle");
 * every attached listening socket is served on the daemon's loop by an echo:
 * each connection gets back what it sends, and EOF closes it; a connection
 * whose first bytes are CLOSE-EARLY gets "BYE\n" and is closed at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "egress/egress.h"
#include "loop.h"

typedef struct echo_conn {
	loop_watch w;
	struct echo_att *att;
	struct echo_conn *next;
	char buf[65536];
	size_t off, len;
} echo_conn;

typedef struct echo_att {
	char id[64];
	loop_watch w;
	echo_conn *conns;
	struct echo_att *next;
} echo_att;

static echo_att *atts;

int egress_init(const char *home, const char *exe_dir, const char *policy_file, ab_error *err)
{
	(void)home;
	(void)exe_dir;
	(void)policy_file;
	(void)err;
	return 0;
}

void egress_shutdown(void) {}

bool egress_enabled(void)
{
	const char *b = getenv("AGENTBOX_TEST_EGRESS_BUNDLE");
	return b && b[0] == '/';
}

const char *egress_ca_bundle(void)
{
	return egress_enabled() ? getenv("AGENTBOX_TEST_EGRESS_BUNDLE") : NULL;
}

static void conn_close(echo_conn *c)
{
	echo_conn **pp = &c->att->conns;
	while (*pp && *pp != c)
		pp = &(*pp)->next;
	if (*pp)
		*pp = c->next;
	int fd = c->w.fd;
	loop_del(&c->w);
	close(fd);
	/* not freed: the loop may still hold events for it in this batch
	 * (a test double leaks a few bytes per connection) */
}

/* Reads while nothing waits to go back, writes while something does:
 * never blocks the daemon's loop. */
static void on_conn(void *ctx, uint32_t events)
{
	(void)events;
	echo_conn *c = ctx;
	if (c->off == c->len) {
		ssize_t n = recv(c->w.fd, c->buf, sizeof(c->buf), MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			conn_close(c);
			return;
		}
		c->off = 0;
		c->len = (size_t)n;
		/* A sidecar that answers and hangs up in the middle of a
		 * request (test_ECHO_far_side_answering_and_closing_early). */
		if (n >= 11 && memcmp(c->buf, "CLOSE-EARLY", 11) == 0) {
			send(c->w.fd, "BYE\n", 4, MSG_NOSIGNAL | MSG_DONTWAIT);
			conn_close(c);
			return;
		}
	}
	ssize_t w = send(c->w.fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w < 0 && errno != EAGAIN && errno != EINTR) {
		conn_close(c);
		return;
	}
	if (w > 0)
		c->off += (size_t)w;
	loop_mod(&c->w, c->off < c->len ? EPOLLOUT : EPOLLIN);
}

static void on_listen(void *ctx, uint32_t events)
{
	(void)events;
	echo_att *a = ctx;
	int fd = accept4(a->w.fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	echo_conn *c = calloc(1, sizeof(*c));
	if (!c || loop_add(&c->w, fd, EPOLLIN, on_conn, c) < 0) {
		free(c);
		close(fd);
		return;
	}
	c->att = a;
	c->next = a->conns;
	a->conns = c;
}

void egress_attach(const char *sandbox_id, int listen_fd)
{
	echo_att *a = calloc(1, sizeof(*a));
	if (!a || loop_add(&a->w, listen_fd, EPOLLIN, on_listen, a) < 0) {
		free(a);
		close(listen_fd);
		return;
	}
	snprintf(a->id, sizeof(a->id), "%s", sandbox_id);
	a->next = atts;
	atts = a;
	log_msg("egress (test echo): attach %s", sandbox_id);
}

void egress_detach(const char *sandbox_id)
{
	for (echo_att **pp = &atts; *pp; pp = &(*pp)->next) {
		echo_att *a = *pp;
		if (strcmp(a->id, sandbox_id) != 0)
			continue;
		*pp = a->next;
		while (a->conns)
			conn_close(a->conns);
		int fd = a->w.fd;
		loop_del(&a->w);
		close(fd);
		log_msg("egress (test echo): detach %s", sandbox_id);
		return; /* a is not freed, as in conn_close */
	}
	log_msg("egress (test echo): detach of unknown sandbox %s", sandbox_id);
}

/* stream.c - reads and writes with deadlines over plain or TLS sockets. */
#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "stream.h"

void eg_stream_init(eg_stream *s, int fd, int timeout_ms)
{
	s->fd = fd;
	s->ssl = NULL;
	s->timeout_ms = timeout_ms;
}

static int wait_fd(int fd, short ev, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = ev};
	for (;;) {
		int r = poll(&p, 1, timeout_ms > 0 ? timeout_ms : -1);
		if (r > 0)
			return 1;
		if (r == 0) {
			errno = ETIMEDOUT;
			return 0;
		}
		if (errno != EINTR)
			return -1;
	}
}

int eg_wait_readable(eg_stream *s, int timeout_ms)
{
	if (s->fd < 0)
		return -1;
	if (s->ssl && SSL_pending(s->ssl) > 0)
		return 1;
	return wait_fd(s->fd, POLLIN, timeout_ms);
}

/* The socket is non-blocking (set by whoever made the stream blocking-free:
 * eg_read waits with poll first), so a stalled peer costs at most
 * timeout_ms per call. */
ssize_t eg_read(eg_stream *s, void *buf, size_t len)
{
	if (s->fd < 0) {
		errno = EBADF;
		return -1;
	}
	for (;;) {
		if (!s->ssl) {
			ssize_t n = read(s->fd, buf, len);
			if (n >= 0)
				return n;
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -1;
			if (wait_fd(s->fd, POLLIN, s->timeout_ms) <= 0)
				return -1;
			continue;
		}
		ERR_clear_error();
		errno = 0;
		int n = SSL_read(s->ssl, buf, len > (size_t)1 << 30 ? 1 << 30 : (int)len);
		if (n > 0)
			return n;
		int e = SSL_get_error(s->ssl, n);
		if (e == SSL_ERROR_ZERO_RETURN)
			return 0;
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			short ev = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
			if (wait_fd(s->fd, ev, s->timeout_ms) <= 0)
				return -1;
			continue;
		}
		if (e == SSL_ERROR_SYSCALL && errno == 0)
			return 0; /* the peer closed without close_notify */
		errno = EPROTO;
		return -1;
	}
}

int eg_write_all(eg_stream *s, const void *buf, size_t len)
{
	const char *p = buf;
	if (s->fd < 0) {
		errno = EBADF;
		return -1;
	}
	while (len > 0) {
		size_t chunk = len > (size_t)1 << 30 ? (size_t)1 << 30 : len;
		if (!s->ssl) {
			ssize_t n = write(s->fd, p, chunk);
			if (n > 0) {
				p += n;
				len -= (size_t)n;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
				return -1;
			if (wait_fd(s->fd, POLLOUT, s->timeout_ms) <= 0)
				return -1;
			continue;
		}
		ERR_clear_error();
		int n = SSL_write(s->ssl, p, (int)chunk);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		int e = SSL_get_error(s->ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			short ev = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
			if (wait_fd(s->fd, ev, s->timeout_ms) <= 0)
				return -1;
			continue;
		}
		errno = EPIPE;
		return -1;
	}
	return 0;
}

void eg_stream_close(eg_stream *s)
{
	if (s->ssl) {
		SSL_shutdown(s->ssl);
		SSL_free(s->ssl);
		s->ssl = NULL;
	}
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

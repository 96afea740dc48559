/* stream.h - one end of a proxied connection, plain or TLS, with a
 * deadline on every read and write (the sidecar's timeouts). */
#ifndef EG_STREAM_H
#define EG_STREAM_H

#include <stddef.h>
#include <sys/types.h>

typedef struct ssl_st SSL;

typedef struct eg_stream {
	int fd;		/* a connected socket, O_NONBLOCK (deadlines are kept with
			   poll); -1 when closed */
	SSL *ssl;	/* NULL for plain */
	int timeout_ms; /* for each read and write; 0 = wait forever */
} eg_stream;

void eg_stream_init(eg_stream *s, int fd, int timeout_ms);
/* Bytes read (> 0), 0 at end of stream, -1 on error or timeout (errno
 * ETIMEDOUT). */
ssize_t eg_read(eg_stream *s, void *buf, size_t len);
/* 0 when all of buf is written, -1 on error or timeout. */
int eg_write_all(eg_stream *s, const void *buf, size_t len);
/* Waits until s has something to read (or timeout_ms): 1 ready, 0 timeout,
 * -1 error. TLS bytes already decrypted count as ready. */
int eg_wait_readable(eg_stream *s, int timeout_ms);
/* Sends a TLS close_notify (best effort), frees the TLS state, closes. */
void eg_stream_close(eg_stream *s);

#endif

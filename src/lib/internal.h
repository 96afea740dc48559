/* internal.h - what every file of the library shares and the public header
 * leaves out (internal to agentbox): the helpers that fill an ab_error, the
 * cleanup attributes, and the JSON forms of public types. Programs of this
 * tree (daemon, CLI, executor, tests) include it; code outside the tree
 * uses include/agentbox.h alone. */
#ifndef AB_INTERNAL_H
#define AB_INTERNAL_H

#include <errno.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include <jansson.h>

#include "agentbox.h"

/* ------------------------------------------------------------------ errors */

/* Sets err (if not NULL) to code and a printf-style message and returns
 * code, so that callers can write `return ab_error_set(err, -EINVAL, ...)`. */
int ab_error_set(ab_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like ab_error_set but appends ": strerror(-code)". */
int ab_error_errno(ab_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes an existing message with more context ("create sandbox: ..."). */
int ab_error_prefix(ab_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------- cleanup helpers */

static inline void ab__freep(void *p)
{
	free(*(void **)p);
}
static inline void ab__closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
static inline void ab__json_decrefp(json_t **j)
{
	json_decref(*j);
}
#define AB_AUTOFREE __attribute__((cleanup(ab__freep)))
#define AB_AUTOCLOSE __attribute__((cleanup(ab__closep)))
#define AB_AUTOJSON __attribute__((cleanup(ab__json_decrefp)))
static inline int ab_steal_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}
static inline void *ab_steal_ptr(void *pp)
{
	void **p = (void **)pp, *r = *p;
	*p = NULL;
	return r;
}

/* ------------------------------------------------------------ JSON forms */

/* Overrides the fields of l present in a JSON object {"timeout": s,
 * "memory_mb": n, "pids": n, "cpu": x, "disk_mb": n, "output_bytes": n};
 * unknown keys and out-of-range values are errors that name the key. */
/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void ab__hex_encode(const unsigned char *b, size_t n, char *out);
/* SHA-256 of data in lower-case hex; "" if the digest failed. */
void ab_sha256_hex(const void *data, size_t len, char out[65]);

int ab_limits_from_json(ab_limits *l, const json_t *obj, ab_error *err);
/* The limits as such an object: a new reference, NULL when out of memory. */
json_t *ab_limits_to_json(const ab_limits *l);

/* A learned-routes store as JSON (for `agentbox routes --json`): the file
 * format itself. A new reference, NULL when out of memory. */
json_t *ab_routes_to_json(const ab_routes *r);

#endif

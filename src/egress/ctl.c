/* ctl.c - events to the daemon over the control channel (see ctl.h). */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ctl.h"

static int ctl_fd = -1;
static pthread_mutex_t ctl_mu = PTHREAD_MUTEX_INITIALIZER;

void eg_ctl_init(int fd)
{
	ctl_fd = fd;
}

void eg_ctl_send(json_t *ev)
{
	if (!ev)
		return;
	char *s = json_dumps(ev, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(ev);
	if (!s)
		return;
	size_t len = strlen(s);
	if (len <= EG_CTL_MSG_MAX && ctl_fd >= 0) {
		/* One message at a time: SEQPACKET keeps message boundaries,
		 * the lock keeps the senders from racing on a full buffer. */
		pthread_mutex_lock(&ctl_mu);
		ssize_t n;
		do
			n = send(ctl_fd, s, len, MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
		pthread_mutex_unlock(&ctl_mu);
	}
	free(s);
}

json_t *eg_json_str(const char *s, size_t max)
{
	if (!s)
		return json_null();
	size_t n = strnlen(s, max);
	char *b = malloc(n + 1);
	if (!b)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		b[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	b[n] = '\0';
	json_t *j = json_string(b);
	free(b);
	return j;
}

void eg_ctl_log(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	eg_ctl_send(json_pack("{s:s, s:o}", "ev", "log", "msg", eg_json_str(msg, sizeof(msg))));
}

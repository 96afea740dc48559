/* ctl.h - the control channel to the daemon (fd 3, SOCK_SEQPACKET, one
 * JSON object per message): sending events, from any thread. */
#ifndef EG_CTL_H
#define EG_CTL_H

#include <jansson.h>

#define EG_CTL_MSG_MAX (1 << 20)

/* Sets the channel's descriptor (before any thread starts). */
void eg_ctl_init(int fd);
/* Sends one event and takes ownership of ev. A failure to send (the
 * daemon went away) is ignored here: the main loop sees the channel close
 * and exits. Thread-safe. */
void eg_ctl_send(json_t *ev);
/* Sends {"ev":"log","msg":...}. */
void eg_ctl_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A JSON string of at most max bytes of s, every byte that is not
 * printable ASCII replaced by '?' (what a sandbox sent need not be UTF-8,
 * and the daemon's log must not be fooled by control characters). NULL s
 * gives JSON null. */
json_t *eg_json_str(const char *s, size_t max);

#endif

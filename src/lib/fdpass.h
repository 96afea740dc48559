/* fdpass.h - one message with file descriptors over a unix socket
 * (SCM_RIGHTS), used between the daemon and its zygotes. */
#ifndef AB_FDPASS_H
#define AB_FDPASS_H

#include <stddef.h>

#define AB_FDPASS_MAX 12

/* Sends buf (one SOCK_SEQPACKET message) with nfds descriptors. */
int ab__send_fds(int sock, const void *buf, size_t len, const int *fds, int nfds);
/* Receives one message into buf (cap) and up to maxfds descriptors (made
 * O_CLOEXEC). Returns the message length; *nfds is set. Extra descriptors
 * and truncated messages are errors (the extra fds are closed). */
int ab__recv_fds(int sock, void *buf, size_t cap, int *fds, int maxfds, int *nfds);

#endif

/* proxy.h - the sidecar's sandboxes and their connections: each sandbox
 * has a listener (polled by the main thread) and a refcounted policy; each
 * accepted connection is served by its own worker thread. */
#ifndef EG_PROXY_H
#define EG_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "agentbox.h"
#include "policy.h"

#define EG_SANDBOX_ID_MAX 128
#define EG_SANDBOXES_MAX 4096

typedef struct eg_config {
	int header_timeout_ms;
	int io_timeout_ms;
	int max_conns;
	int max_conns_per_sandbox;
	size_t max_body;
	eg_resolve_map *resolve;
	size_t nresolve;
	bool tls_ok; /* eg_tls_init succeeded */
	char tls_error[512];
} eg_config;

/* Set by main before the first attach; read-only afterwards. */
extern eg_config eg_cfg;

int64_t eg_now_ms(void);

/* The main thread's side. attach takes the listening socket and the
 * policy (one reference) on success only; set_policy takes the policy on
 * success only. */
int eg_sandbox_attach(const char *id, int listen_fd, eg_policy *policy, ab_error *err);
int eg_sandbox_set_policy(const char *id, eg_policy *policy, ab_error *err);
/* Closes the listener and shuts down every connection of the sandbox. */
int eg_sandbox_detach(const char *id, ab_error *err);

/* The listeners to poll: fills up to max descriptors, returns the count. */
size_t eg_sandbox_listeners(int *fds, size_t max);
/* The listener fd is readable: accepts what is pending, starting a worker
 * for each connection or answering 503 over the limits. */
void eg_sandbox_accept(int listen_fd);

#endif

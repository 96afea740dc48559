/* rpc_client.h - the CLI's JSON-RPC client of agentboxd (docs/protocol.md).
 *
 * One connection, used by one thread: a request is written, then lines are
 * read until its response arrives; `sandbox.output` notifications for that
 * request are handed to a callback on the way. Lines are capped at 16 MiB.
 */
#ifndef AGENTBOX_CLI_RPC_CLIENT_H
#define AGENTBOX_CLI_RPC_CLIENT_H

#include <signal.h>

#include "internal.h"

#define RPC_MAX_LINE (16u << 20)
/* How long a call waits for its response unless told otherwise. */
#define RPC_DEFAULT_TIMEOUT_MS (300 * 1000)

typedef struct rpc_client rpc_client;

/* Called for each output chunk of the run in progress. stream is "stdout" or
 * "stderr"; data is not NUL-terminated and is only valid during the call.
 * stream "rerun" (a sandbox.rerun notification) says that the output so far
 * came from a nano attempt that is being rerun in heavy; data is the reason. */
typedef void (*rpc_output_fn)(const char *stream, const char *data, size_t len, void *ud);

/* Finds agentboxd: $AGENTBOX_DAEMON (the executable), $AGENTBOX_BIN (its
 * directory, or the executable), the directory of the running executable
 * (/proc/self/exe), $PATH, then /usr/local/bin and /usr/bin
 * (docs/environment.md). Writes the path to out. On failure the message
 * names every place searched and how to fix it. */
int rpc_find_daemon(char *out, size_t outlen, ab_error *err);

/* Starts a private `agentboxd --stdio` (found with rpc_find_daemon) and
 * returns a client talking to it over pipes. The caller owns *out. */
int rpc_client_spawn(rpc_client **out, ab_error *err);
/* Like rpc_client_spawn, and passes `--degrade degrade` (a comma-separated
 * list of layers the daemon may run without; NULL for none). */
int rpc_client_spawn_degraded(const char *degrade, rpc_client **out, ab_error *err);
/* Connects to a daemon's unix socket. The caller owns *out. */
int rpc_client_connect(const char *path, rpc_client **out, ab_error *err);
/* Connects to socket_path if not NULL, else to $AGENTBOX_SOCKET if set, else
 * starts a private daemon. */
int rpc_client_open(const char *socket_path, rpc_client **out, ab_error *err);
/* Like rpc_client_open, and starts a private daemon with --degrade degrade
 * (NULL for none). A shared daemon (a socket) is refused with -EINVAL when
 * degrade is set: its layers are its operator's decision. */
int rpc_client_open_degraded(const char *socket_path, const char *degrade, rpc_client **out,
			     ab_error *err);

/* Sends a request and waits for its response. params is borrowed (may be
 * NULL). On success returns 0 and *result owns a new reference. If the daemon
 * answers with an error, returns -EREMOTEIO, sets *rpc_code (if not NULL) to
 * the JSON-RPC error code and err to "<method>: <daemon's message>". Transport
 * failures (daemon died, protocol violation) return another negative code
 * with *rpc_code 0; the client is then unusable. */
int rpc_client_call(rpc_client *c, const char *method, json_t *params, rpc_output_fn on_output,
		    void *ud, json_t **result, int *rpc_code, ab_error *err);

/* Sets how long each later call waits for its response (-1: forever). Past
 * it the call fails with -ETIMEDOUT and the client is unusable. */
void rpc_client_set_timeout(rpc_client *c, int timeout_ms);

/* While a call waits, a non-zero *flag (set by a signal handler installed
 * without SA_RESTART) makes the client send `sandbox.interrupt` for that
 * call's request, once, and go on waiting for its response. NULL: off. */
void rpc_client_set_interrupt(rpc_client *c, volatile sig_atomic_t *flag);

/* Closes the connection. A private daemon gets EOF on its stdin and is
 * waited for up to 5 s, then killed. NULL is a no-op. */
void rpc_client_close(rpc_client *c);

#endif

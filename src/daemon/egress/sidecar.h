/* sidecar.h - the agentbox-egress process as the daemon sees it: started,
 * watched (exit, pings), restarted with backoff, and spoken to over a
 * SOCK_SEQPACKET pair (docs/egress.md, "Daemon <-> sidecar"). Inside the
 * egress module only. */
#ifndef AB_EGRESS_SIDECAR_H
#define AB_EGRESS_SIDECAR_H

#include <stdbool.h>
#include <sys/types.h>

#include "agentbox.h"
#include "internal.h"

/* How the sidecar is started: its executable and its arguments after the
 * program name (copied). */
int sidecar_start(const char *exe, char *const *args, ab_error *err);
/* Stops it for good (SIGTERM, then SIGKILL) and reaps it. */
void sidecar_stop(void);
/* Sends msg (borrowed) with fd (-1: none; borrowed, the sidecar gets a
 * copy). Nothing is sent while the sidecar is not ready: everything is
 * sent again (state_reattach_all) when it says ready. */
void sidecar_send(json_t *msg, int fd);
bool sidecar_ready(void);
bool sidecar_owns_pid(pid_t pid);
/* {state: running|starting|down|disabled, pid, restarts} */
json_t *sidecar_status(void);

/* egress.c: the audit database. */
const char *egress_audit_db(void);

/* state.c: set up with the loaded policy (stolen) and its file (NULL:
 * none); and its end. */
int state_init(json_t *policy, const char *policy_file, ab_error *err);
void state_shutdown(void);

/* state.c, called by the sidecar module: it is ready (again), attach
 * every sandbox; and a request event to record (msg borrowed). */
void state_reattach_all(void);
void state_record_request(json_t *msg);

#endif

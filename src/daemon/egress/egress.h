/* egress.h - the daemon's egress module (docs/egress.md): supervises the
 * agentbox-egress sidecar, holds every sandbox's rules, intent and grants,
 * and records what the sidecar reports. Beside the engine: the backend
 * hands it each sandbox's listening socket, the front end its methods. */
#ifndef AB_EGRESS_H
#define AB_EGRESS_H

#include <stdbool.h>
#include <sys/types.h>

#include "agentbox.h"
#include "frame.h"

/* Makes the CA and bundle under home/egress, loads the policy file (NULL:
 * none), starts the sidecar. */
int egress_init(const char *home, const char *exe_dir, const char *policy_file, ab_error *err);
void egress_shutdown(void);
/* True when sandboxes get a relay and a socket (the sidecar may still be
 * restarting: then they get no answer, never a bypass). */
bool egress_enabled(void);
/* Host path of the CA bundle bind-mounted into sandboxes. */
const char *egress_ca_bundle(void);

/* Backend: sandbox id has this listening socket (ownership passes to the
 * module); and it is gone. */
void egress_attach(const char *sandbox_id, int listen_fd);
void egress_detach(const char *sandbox_id);

#endif

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
/* Why egress is off (--no-egress, no CA, no sidecar executable), or NULL
 * when it is on. */
const char *egress_why_off(void);
/* Host path of the CA bundle bind-mounted into sandboxes. */
const char *egress_ca_bundle(void);
/* Where sandboxes' sockets go (a tmpfs of the daemon's), or NULL: each in
 * its sandbox's own directory. */
const char *egress_socket_dir(void);

/* Backend: sandbox id has this listening socket (ownership passes to the
 * module); and it is gone. */
void egress_attach(const char *sandbox_id, int listen_fd);
void egress_detach(const char *sandbox_id);

/* ------------------------------------------------ configuration (main.c) */

/* What the daemon's flags set, before egress_init (strings borrowed for
 * the daemon's lifetime). */
typedef struct egress_opts {
	bool off;		 /* --no-egress */
	const char *upstream_ca; /* --egress-upstream-ca FILE, or NULL */
	const char **resolve;	 /* --egress-resolve NAME=127.0.0.1:PORT ... */
	int nresolve;
} egress_opts;
void egress_configure(const egress_opts *o);
/* Checks one --egress-resolve value: NAME=127.0.0.1:PORT (loopback only). */
int egress_resolve_check(const char *arg, ab_error *err);
/* True for the sidecar's pid (main.c's orphan reaping leaves it alone). */
bool egress_owns_pid(pid_t pid);

/* ------------------------------------------------------ engine (session.c) */

/* Session id was handed to a client with these normalized rules (an array,
 * borrowed; NULL or empty: network "none"); actor names the client. */
void egress_session_open(const char *sandbox_id, json_t *rules, json_t *dlp, const char *actor);
/* Session id is closing: its rules, intent, grants and pending requests go. */
void egress_session_close(const char *sandbox_id);
/* A promotion moved the session id from one sandbox to another: what was
 * attached as from is now to (ids are swapped by engine/promote.c). */
void egress_renamed(const char *from, const char *to);

/* ------------------------------------------------- front ends (rpc.c) */

typedef struct call call;
typedef struct client client;

/* sandbox.create's network: "none" (NULL out) or a list of rules, as
 * normalized rules (new). Errors name params.network. */
int egress_parse_network(json_t *v, json_t **out, ab_error *err);
/* Root, the daemon's own uid, or a private daemon's client. */
/* sandbox.create's dlp parameter (docs/dlp.md, "Policy"): *out is the
 * normalized settings (new) or NULL for none. */
int egress_parse_dlp(json_t *v, json_t **out, ab_error *err);
bool egress_is_operator(const client *cl);

/* The methods of docs/egress.md ("Protocol methods"), after rpc.c checked
 * the types of params and that sandbox_id is the caller's live session.
 * Each finishes k (done or fail) exactly once, now or later. */
void egress_m_intent(call *k, const char *sandbox_id, bool nano, const char *intent,
		     const char *reason);
void egress_m_request_access(call *k, const char *sandbox_id, bool nano, const char *host,
			     const char *reason, double timeout);
void egress_m_pending(call *k);
void egress_m_decide(call *k, const char *id, bool approve, const char *note);
/* sandbox_id NULL: every sandbox's egress events. */
void egress_m_log(call *k, const char *sandbox_id, int limit);
/* sandbox_id NULL: no effective policy in the answer. */
void egress_m_status(call *k, const char *sandbox_id);
void egress_m_reload(call *k);

#endif

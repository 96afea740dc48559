/* confine.h - the sidecar's own jail (docs/egress.md, "Daemon ↔ sidecar"):
 * applied once, in the main thread, after its files are read and before
 * any worker thread exists (Landlock and seccomp are inherited by threads
 * created afterwards, never retrofitted onto existing ones). */
#ifndef EG_CONFINE_H
#define EG_CONFINE_H

#include <stdbool.h>
#include <sys/types.h>

#include "agentbox.h"

/* When set_ids (and root): drops supplementary groups, then to gid and
 * uid. Then: every capability and no_new_privs, Landlock (read-only /etc
 * and /usr, nothing writable), seccomp (no exec, no ptrace, no mount
 * family, no namespaces, socket() only for AF_INET/AF_INET6, no
 * socketpair, no io_uring). */
int eg_confine(bool set_ids, uid_t uid, gid_t gid, bool allow_no_landlock, ab_error *err);

/* After eg_confine: tries what the jail must refuse and prints one JSON
 * line with each outcome (for tests). */
void eg_confine_report(void);

#endif

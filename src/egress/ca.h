/* ca.h - the daemon's egress CA (linked into agentboxd and agentbox-egress). */
#ifndef EG_CA_H
#define EG_CA_H

#include "agentbox.h"

/* Ensures dir/ca.pem and dir/ca.key (mode 0600) exist, creating an ECDSA
 * P-256 CA on first use (dir is made 0700 if missing), and (re)writes
 * dir/ca-bundle.pem: the system's roots followed by ca.pem. */
int eg_ca_ensure(const char *dir, ab_error *err);

#endif

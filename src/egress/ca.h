/* ca.h - the daemon's egress CA (linked into agentboxd and agentbox-egress). */
#ifndef EG_CA_H
#define EG_CA_H

#include <openssl/x509v3.h>

#include "agentbox.h"

/* Ensures dir/ca.pem and dir/ca.key (mode 0600) exist, creating an ECDSA
 * P-256 CA on first use (dir is made 0700 if missing), and (re)writes
 * dir/ca-bundle.pem: the system's roots followed by ca.pem. */
int eg_ca_ensure(const char *dir, ab_error *err);

/* For the leaves too (tls.c): a random positive 128-bit serial number,
 * and one extension from its text form; 0 or -1. */
int eg_x509_random_serial(X509 *x);
int eg_x509_add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value);

#endif

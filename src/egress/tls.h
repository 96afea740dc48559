/* tls.h - TLS interception: leaf certificates minted per host from the
 * daemon's CA toward the sandbox, verified TLS toward upstream. */
#ifndef EG_TLS_H
#define EG_TLS_H

#include "agentbox.h"
#include "stream.h"

/* Loads the CA (PEM files) and the roots for upstream verification: the
 * system's, plus upstream_ca (a PEM file) when not NULL. Call once, before
 * the sidecar confines itself. */
int eg_tls_init(const char *ca_cert, const char *ca_key, const char *upstream_ca, ab_error *err);
/* Server side, toward the sandbox, on s->fd (s->ssl is set on success): a
 * leaf for host (the CONNECT target; minted once and cached), ALPN
 * http/1.1 only. The client's SNI, if it sent one, is copied to sni ("" if
 * none); a SNI other than host fails the handshake (no domain fronting). */
int eg_tls_accept(eg_stream *s, const char *host, char *sni, size_t sni_len, ab_error *err);
/* Client side, toward upstream, on s->fd: SNI host (not for IP literals),
 * ALPN http/1.1, chain and host name verified. */
int eg_tls_connect(eg_stream *s, const char *host, ab_error *err);

#endif

/* tls.c - TLS interception (docs/egress.md). */
#include <errno.h>

#include "internal.h"
#include "tls.h"

int eg_tls_init(const char *ca_cert, const char *ca_key, const char *upstream_ca, ab_error *err)
{
	(void)ca_key;
	(void)upstream_ca;
	return ab_error_set(err, -ENOSYS, "TLS with CA %s: not built yet", ca_cert);
}

int eg_tls_accept(eg_stream *s, const char *host, char *sni, size_t sni_len, ab_error *err)
{
	(void)s;
	(void)sni;
	(void)sni_len;
	return ab_error_set(err, -ENOSYS, "TLS toward the sandbox for %s: not built yet", host);
}

int eg_tls_connect(eg_stream *s, const char *host, ab_error *err)
{
	(void)s;
	return ab_error_set(err, -ENOSYS, "TLS to %s: not built yet", host);
}

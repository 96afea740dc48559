/* tls.c - TLS interception (docs/egress.md). Toward the sandbox the sidecar
 * is the server, with a leaf certificate for the CONNECT host minted from
 * the daemon's CA; toward upstream it is a verifying client.
 *
 * The state below is set once by eg_tls_init, before any worker thread
 * starts, and read-only afterwards, except the leaf cache, which its mutex
 * guards. SSL_CTX objects are shared by all threads (OpenSSL 3 allows
 * that); each connection has its own SSL. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "internal.h"
#include "ca.h"
#include "tls.h"

#define LEAF_CACHE_MAX 1024
#define LEAF_DAYS 90
#define HOST_MAX 253

typedef struct leaf_slot {
	char host[HOST_MAX + 1]; /* lower case; "" for a free slot */
	X509 *cert;
	unsigned long long used; /* the cache's clock when last handed out */
} leaf_slot;

static struct {
	int ready;
	X509 *ca;
	EVP_PKEY *ca_key;
	EVP_PKEY *leaf_key; /* one key for every leaf of this process */
	SSL_CTX *server;
	SSL_CTX *client;
	int ex_index; /* the SSL ex_data slot of an accept's state */
	pthread_mutex_t lock;
	leaf_slot *leaves; /* LEAF_CACHE_MAX slots */
	unsigned long long clock;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* What the server name callback of one eg_tls_accept sees and reports. */
typedef struct accept_state {
	const char *host;
	char sni[256];
	int sni_mismatch;
} accept_state;

/* ----------------------------------------------------------------- errors */

/* The OpenSSL error queue as text ("" if empty), then cleared. */
static void ossl_text(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	buf[0] = '\0';
	if (e)
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
}

/* A copy of untrusted text fit for an error message: printable ASCII only,
 * at most len - 1 bytes. */
static const char *printable(const char *s, char *buf, size_t len)
{
	size_t i = 0;
	for (; s[i] && i + 1 < len; i++)
		buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	buf[i] = '\0';
	return buf;
}

/* ------------------------------------------------------------------ hosts */

/* 4 or 16 bytes of an IP literal ("::1" or "[::1]") into ip; 0 when host
 * is not one. */
static size_t ip_literal(const char *host, unsigned char ip[16])
{
	char tmp[INET6_ADDRSTRLEN + 2];
	size_t n = strlen(host);
	if (inet_pton(AF_INET, host, ip) == 1)
		return 4;
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(tmp)) {
		memcpy(tmp, host + 1, n - 2);
		tmp[n - 2] = '\0';
		host = tmp;
	}
	if (inet_pton(AF_INET6, host, ip) == 1)
		return 16;
	return 0;
}

/* A host name a certificate may carry: 1..253 bytes of [a-z0-9-_.],
 * lowered into out. The caller has checked the host against the policy;
 * this check keeps a bad one out of a certificate all the same. */
static int dns_name(const char *host, char out[HOST_MAX + 1])
{
	size_t n = strlen(host);
	if (n == 0 || n > HOST_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = (char)tolower((unsigned char)host[i]);
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.'))
			return -1;
		out[i] = c;
	}
	out[n] = '\0';
	return 0;
}

/* Equal as host names: case-insensitive, one trailing dot ignored. */
static int same_host(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);
	if (na && a[na - 1] == '.')
		na--;
	if (nb && b[nb - 1] == '.')
		nb--;
	return na == nb && strncasecmp(a, b, na) == 0;
}

/* ----------------------------------------------------------------- leaves */

/* subjectAltName with one entry, built directly (never from a
 * configuration string, where a comma in host would add names). */
static int add_san(X509 *x, const char *name, const unsigned char *ip, size_t iplen)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gen = GENERAL_NAME_new();
	int ok = 0;
	if (!gens || !gen)
		goto out;
	if (iplen) {
		ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
		if (!os || ASN1_OCTET_STRING_set(os, ip, (int)iplen) != 1) {
			ASN1_OCTET_STRING_free(os);
			goto out;
		}
		GENERAL_NAME_set0_value(gen, GEN_IPADD, os);
	} else {
		ASN1_IA5STRING *s = ASN1_IA5STRING_new();
		if (!s || ASN1_STRING_set(s, name, -1) != 1) {
			ASN1_IA5STRING_free(s);
			goto out;
		}
		GENERAL_NAME_set0_value(gen, GEN_DNS, s);
	}
	if (!sk_GENERAL_NAME_push(gens, gen))
		goto out;
	gen = NULL;
	ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1;
out:
	GENERAL_NAME_free(gen);
	GENERAL_NAMES_free(gens);
	return ok ? 0 : -1;
}

/* A leaf for name (a lower-case DNS name, or an IP literal of iplen bytes
 * in ip), signed by the CA: valid from a day ago for LEAF_DAYS days, never
 * past the CA's own expiry. */
static X509 *mint_leaf(const char *name, const unsigned char *ip, size_t iplen)
{
	X509 *x = X509_new();
	if (!x)
		return NULL;
	X509_NAME *subj = X509_get_subject_name(x);
	/* A common name is at most 64 bytes (RFC 5280); the SAN is what
	 * clients check, so a longer name goes without one. */
	const char *cn = strlen(name) <= 64 ? name : "agentbox egress";
	const char *field = strlen(name) <= 64 ? "CN" : "O";
	X509V3_CTX ctx;
	if (X509_set_version(x, X509_VERSION_3) != 1 || eg_x509_random_serial(x) < 0 ||
	    X509_NAME_add_entry_by_txt(subj, field, MBSTRING_UTF8, (const unsigned char *)cn, -1,
				       -1, 0) != 1 ||
	    X509_set_issuer_name(x, X509_get_subject_name(g.ca)) != 1 ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -24 * 3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), (long)LEAF_DAYS * 24 * 3600) ||
	    X509_set_pubkey(x, g.leaf_key) != 1)
		goto fail;
	const ASN1_TIME *ca_end = X509_get0_notAfter(g.ca);
	if (ASN1_TIME_compare(ca_end, X509_get0_notAfter(x)) < 0 &&
	    X509_set1_notAfter(x, ca_end) != 1)
		goto fail;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, g.ca, x, NULL, NULL, 0);
	if (eg_x509_add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    eg_x509_add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") < 0 ||
	    eg_x509_add_ext(x, &ctx, NID_ext_key_usage, "serverAuth") < 0 ||
	    eg_x509_add_ext(x, &ctx, NID_subject_key_identifier, "hash") < 0 ||
	    eg_x509_add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") < 0 ||
	    add_san(x, name, ip, iplen) < 0)
		goto fail;
	if (X509_sign(x, g.ca_key, EVP_sha256()) <= 0)
		goto fail;
	return x;
fail:
	X509_free(x);
	return NULL;
}

/* The leaf for host (*out, a new reference), from the cache or minted and
 * cached; when the cache is full the least recently used leaf leaves it
 * (those in use keep their own references). */
static int leaf_for(const char *host, X509 **out, ab_error *err)
{
	char name[HOST_MAX + 1], shown[80];
	unsigned char ip[16];
	size_t iplen = ip_literal(host, ip);
	if (iplen) {
		/* The cache key of an IP literal is its canonical text. */
		if (!inet_ntop(iplen == 4 ? AF_INET : AF_INET6, ip, name, sizeof(name)))
			return ab_error_set(err, -EINVAL, "TLS: bad address %s",
					    printable(host, shown, sizeof(shown)));
	} else if (dns_name(host, name) < 0) {
		return ab_error_set(err, -EINVAL,
				    "TLS: no certificate for host \"%s\": not a host name",
				    printable(host, shown, sizeof(shown)));
	}

	pthread_mutex_lock(&g.lock);
	leaf_slot *hit = NULL, *victim = &g.leaves[0];
	for (size_t i = 0; i < LEAF_CACHE_MAX; i++) {
		leaf_slot *l = &g.leaves[i];
		if (l->cert && strcmp(l->host, name) == 0) {
			hit = l;
			break;
		}
		if (victim->cert && (!l->cert || l->used < victim->used))
			victim = l;
	}
	X509 *x = NULL;
	if (hit) {
		x = hit->cert;
	} else {
		/* Minted under the lock: rare (once per host), and it keeps two
		 * threads from signing for the same host at once. */
		x = mint_leaf(name, ip, iplen);
		if (x) {
			X509_free(victim->cert);
			victim->cert = x;
			memcpy(victim->host, name, strlen(name) + 1);
			hit = victim;
		}
	}
	if (hit) {
		hit->used = ++g.clock;
		X509_up_ref(x);
	}
	pthread_mutex_unlock(&g.lock);
	if (!x) {
		char e[256];
		ossl_text(e, sizeof(e));
		return ab_error_set(err, -EIO, "TLS: mint a certificate for %s: %s", name, e);
	}
	*out = x;
	return 0;
}

/* -------------------------------------------------------------- contexts */

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	static const unsigned char h11[] = "\x08http/1.1";
	unsigned char *sel = NULL;
	unsigned char sellen = 0;
	if (SSL_select_next_proto(&sel, &sellen, h11, sizeof(h11) - 1, in, inlen) ==
	    OPENSSL_NPN_NEGOTIATED) {
		*out = sel;
		*outlen = sellen;
		return SSL_TLSEXT_ERR_OK;
	}
	return SSL_TLSEXT_ERR_NOACK; /* no ALPN rather than a protocol we do not speak */
}

/* Called while the ClientHello is processed, with or without SNI. */
static int check_sni(SSL *ssl, int *alert, void *arg)
{
	(void)arg;
	accept_state *st = SSL_get_ex_data(ssl, g.ex_index);
	const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (!st || !sni)
		return SSL_TLSEXT_ERR_OK;
	snprintf(st->sni, sizeof(st->sni), "%s", sni);
	if (!same_host(sni, st->host)) {
		st->sni_mismatch = 1;
		*alert = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	return SSL_TLSEXT_ERR_OK;
}

/* No renegotiation, no compression, no tickets. A peer that closes without
 * a close_notify (many HTTP/1.1 servers do) reads as the end of the stream
 * (what eg_read promises), not as an error: OpenSSL 3 otherwise reports it
 * as SSL_ERROR_SSL. HTTP's own framing tells a complete body from a cut
 * one. */
static const uint64_t CTX_OPTS = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
				 SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF;

static SSL_CTX *server_ctx(void)
{
	SSL_CTX *c = SSL_CTX_new(TLS_server_method());
	if (!c)
		return NULL;
	SSL_CTX_set_options(c, CTX_OPTS | SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* No resumption: every connection gets a full handshake, its SNI
	 * checked against its own CONNECT host. */
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(c, 0);
	if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1) {
		SSL_CTX_free(c);
		return NULL;
	}
	SSL_CTX_set_alpn_select_cb(c, select_alpn, NULL);
	SSL_CTX_set_tlsext_servername_callback(c, check_sni);
	return c;
}

static SSL_CTX *client_ctx(const char *upstream_ca, ab_error *err)
{
	char e[256];
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	if (!c) {
		ossl_text(e, sizeof(e));
		ab_error_set(err, -ENOMEM, "TLS: client context: %s", e);
		return NULL;
	}
	SSL_CTX_set_options(c, CTX_OPTS);
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_alpn_protos(c, (const unsigned char *)"\x08http/1.1", 9) != 0) {
		ossl_text(e, sizeof(e));
		ab_error_set(err, -EIO, "TLS: client context: %s", e);
		goto fail;
	}
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_set_default_verify_paths(c) != 1) {
		ossl_text(e, sizeof(e));
		ab_error_set(err, -EIO, "TLS: the system's roots: %s", e);
		goto fail;
	}
	if (upstream_ca && SSL_CTX_load_verify_locations(c, upstream_ca, NULL) != 1) {
		ossl_text(e, sizeof(e));
		ab_error_set(err, -EIO, "TLS: load upstream CA %s: %s", upstream_ca,
			     e[0] ? e : "no certificate in it");
		goto fail;
	}
	return c;
fail:
	SSL_CTX_free(c);
	return NULL;
}

static void tls_reset(void)
{
	SSL_CTX_free(g.server);
	SSL_CTX_free(g.client);
	EVP_PKEY_free(g.leaf_key);
	EVP_PKEY_free(g.ca_key);
	X509_free(g.ca);
	free(g.leaves);
	g.server = g.client = NULL;
	g.leaf_key = g.ca_key = NULL;
	g.ca = NULL;
	g.leaves = NULL;
}

int eg_tls_init(const char *ca_cert, const char *ca_key, const char *upstream_ca, ab_error *err)
{
	char e[256];
	int r;
	if (g.ready)
		return ab_error_set(err, -EALREADY, "TLS: already initialized");
	BIO *b = BIO_new_file(ca_cert, "r");
	g.ca = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	if (!g.ca) {
		ossl_text(e, sizeof(e));
		r = ab_error_set(err, -EINVAL, "TLS: load CA certificate %s: %s", ca_cert, e);
		goto fail;
	}
	b = BIO_new_file(ca_key, "r");
	g.ca_key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	if (!g.ca_key) {
		ossl_text(e, sizeof(e));
		r = ab_error_set(err, -EINVAL, "TLS: load CA key %s: %s", ca_key, e);
		goto fail;
	}
	if (X509_check_private_key(g.ca, g.ca_key) != 1) {
		ERR_clear_error();
		r = ab_error_set(err, -EINVAL, "TLS: CA certificate %s does not match the key %s",
				 ca_cert, ca_key);
		goto fail;
	}
	if (X509_check_ca(g.ca) != 1) {
		r = ab_error_set(err, -EINVAL, "TLS: %s is not a CA certificate", ca_cert);
		goto fail;
	}
	g.leaf_key = EVP_EC_gen("P-256");
	g.leaves = calloc(LEAF_CACHE_MAX, sizeof(*g.leaves));
	g.server = server_ctx();
	if (!g.leaf_key || !g.leaves || !g.server) {
		ossl_text(e, sizeof(e));
		r = ab_error_set(err, -ENOMEM, "TLS: leaf key and server context: %s", e);
		goto fail;
	}
	g.client = client_ctx(upstream_ca, err);
	if (!g.client) {
		r = err ? err->code : -EIO;
		goto fail;
	}
	g.ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (g.ex_index < 0) {
		r = ab_error_set(err, -ENOMEM, "TLS: no ex_data index");
		goto fail;
	}
	g.ready = 1;
	return 0;
fail:
	tls_reset();
	return r;
}

/* ------------------------------------------------------------- handshakes */

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Drives the handshake of ssl on fd until done, failed, or timeout_ms
 * passed (0: no deadline). 0 on success; else the SSL_get_error code, or
 * -ETIMEDOUT, with the error queue's text in e. */
static int handshake(SSL *ssl, int fd, int timeout_ms, char *e, size_t elen)
{
	long long deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
	e[0] = '\0';
	for (;;) {
		ERR_clear_error();
		errno = 0;
		int r = SSL_do_handshake(ssl);
		if (r == 1)
			return 0;
		int code = SSL_get_error(ssl, r);
		if (code != SSL_ERROR_WANT_READ && code != SSL_ERROR_WANT_WRITE) {
			int saved = errno;
			ossl_text(e, elen);
			if (!e[0] && code == SSL_ERROR_SYSCALL)
				snprintf(e, elen, "%s",
					 saved ? strerror(saved)
					       : "the peer closed the connection");
			else if (!e[0])
				snprintf(e, elen, "handshake failed (SSL error %d)", code);
			return code;
		}
		struct pollfd p = {.fd = fd,
				   .events = code == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT};
		int left = -1;
		if (deadline) {
			long long l = deadline - now_ms();
			if (l <= 0)
				goto timeout;
			left = (int)l;
		}
		int n = poll(&p, 1, left);
		if (n == 0)
			goto timeout;
		if (n < 0 && errno != EINTR) {
			snprintf(e, elen, "poll: %s", strerror(errno));
			return SSL_ERROR_SYSCALL;
		}
	}
timeout:
	snprintf(e, elen, "handshake timed out after %d ms", timeout_ms);
	return -ETIMEDOUT;
}

int eg_tls_accept(eg_stream *s, const char *host, char *sni, size_t sni_len, ab_error *err)
{
	char e[256], shown_sni[80], shown_host[80];
	if (sni && sni_len)
		sni[0] = '\0';
	if (!g.ready)
		return ab_error_set(err, -EINVAL, "TLS toward the sandbox: eg_tls_init not called");
	if (s->fd < 0 || s->ssl)
		return ab_error_set(err, -EINVAL, "TLS toward the sandbox for %s: bad stream",
				    printable(host, shown_host, sizeof(shown_host)));
	X509 *leaf = NULL;
	int lr = leaf_for(host, &leaf, err);
	if (lr < 0)
		return lr;
	SSL *ssl = SSL_new(g.server);
	accept_state st = {.host = host};
	int r = ssl ? 0 : -ENOMEM;
	if (r == 0 && (SSL_set_fd(ssl, s->fd) != 1 || SSL_set_ex_data(ssl, g.ex_index, &st) != 1 ||
		       SSL_use_cert_and_key(ssl, leaf, g.leaf_key, NULL, 1) != 1 ||
		       SSL_add1_chain_cert(ssl, g.ca) != 1))
		r = -EIO;
	X509_free(leaf);
	if (r < 0) {
		ossl_text(e, sizeof(e));
		SSL_free(ssl);
		return ab_error_set(err, r, "TLS toward the sandbox for %s: %s",
				    printable(host, shown_host, sizeof(shown_host)), e);
	}
	SSL_set_accept_state(ssl);
	int code = handshake(ssl, s->fd, s->timeout_ms, e, sizeof(e));
	SSL_set_ex_data(ssl, g.ex_index, NULL);
	if (sni && sni_len)
		snprintf(sni, sni_len, "%s", st.sni);
	printable(host, shown_host, sizeof(shown_host));
	if (st.sni_mismatch) {
		SSL_free(ssl);
		return ab_error_set(err, -EACCES, "SNI %s does not match CONNECT host %s",
				    printable(st.sni, shown_sni, sizeof(shown_sni)), shown_host);
	}
	if (code != 0) {
		SSL_free(ssl);
		return ab_error_set(err, code == -ETIMEDOUT ? -ETIMEDOUT : -EPROTO,
				    "TLS handshake with the sandbox for %s: %s", shown_host, e);
	}
	s->ssl = ssl;
	return 0;
}

int eg_tls_connect(eg_stream *s, const char *host, ab_error *err)
{
	char e[256], shown[80];
	unsigned char ip[16];
	printable(host, shown, sizeof(shown));
	if (!g.ready)
		return ab_error_set(err, -EINVAL, "TLS to %s: eg_tls_init not called", shown);
	if (s->fd < 0 || s->ssl)
		return ab_error_set(err, -EINVAL, "TLS to %s: bad stream", shown);
	size_t iplen = ip_literal(host, ip);
	SSL *ssl = SSL_new(g.client);
	int ok = ssl && SSL_set_fd(ssl, s->fd) == 1;
	if (ok && iplen) {
		/* No SNI for an address (RFC 6066); the certificate must name
		 * it as an IP subjectAltName. */
		ok = X509_VERIFY_PARAM_set1_ip(SSL_get0_param(ssl), ip, iplen) == 1;
	} else if (ok) {
		/* SNI and the name the certificate must carry. */
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		ok = SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1;
	}
	if (!ok) {
		ossl_text(e, sizeof(e));
		SSL_free(ssl);
		return ab_error_set(err, -EINVAL, "TLS to %s: %s", shown,
				    e[0] ? e : "set up failed");
	}
	SSL_set_connect_state(ssl);
	int code = handshake(ssl, s->fd, s->timeout_ms, e, sizeof(e));
	long vr = SSL_get_verify_result(ssl);
	if (code == 0 && (vr != X509_V_OK || !SSL_get0_peer_certificate(ssl))) {
		code = SSL_ERROR_SSL; /* not expected with SSL_VERIFY_PEER: belt and braces */
		snprintf(e, sizeof(e), "no verified certificate");
	}
	if (code != 0) {
		SSL_free(ssl);
		if (code == -ETIMEDOUT)
			return ab_error_set(err, -ETIMEDOUT, "TLS to %s: %s", shown, e);
		if (vr != X509_V_OK)
			return ab_error_set(err, -EPROTO,
					    "TLS to %s: certificate verify failed: %s", shown,
					    X509_verify_cert_error_string(vr));
		return ab_error_set(err, -EPROTO, "TLS to %s: %s", shown, e);
	}
	s->ssl = ssl;
	return 0;
}

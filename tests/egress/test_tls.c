/* test_tls.c - TLS interception: leaves minted from the egress CA toward
 * the sandbox (checked by a client that trusts only ca.pem), verified TLS
 * toward a local upstream whose certificate comes from a separate test
 * CA, SNI and ALPN rules, handshake deadlines, the leaf cache. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "internal.h"
#include "stream.h"
#include "tls.h"
#include "unit.h"

/* ------------------------------------------------------------- fixtures */

typedef struct fixture {
	char home[64];
	char ca_dir[96], ca_pem[128], ca_key[128];	 /* the egress CA */
	char test_dir[96], test_pem[128], test_key[128]; /* the upstream's CA */
} fixture;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static fixture fx;

static void cleanup_home(void)
{
	if (fx.home[0])
		nftw(fx.home, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Makes the egress CA and a separate test CA in a temporary directory and
 * initializes TLS with the egress CA; with_upstream: the test CA is given
 * as upstream_ca. */
static void setup(int with_upstream)
{
	ab_error err = {0};
	/* As in the sidecar (and every program that writes to sockets): a
	 * peer that hung up is an EPIPE, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	snprintf(fx.home, sizeof(fx.home), "/tmp/eg-tls-XXXXXX");
	CHECK(mkdtemp(fx.home));
	atexit(cleanup_home);
	snprintf(fx.ca_dir, sizeof(fx.ca_dir), "%s/egress", fx.home);
	snprintf(fx.ca_pem, sizeof(fx.ca_pem), "%s/ca.pem", fx.ca_dir);
	snprintf(fx.ca_key, sizeof(fx.ca_key), "%s/ca.key", fx.ca_dir);
	snprintf(fx.test_dir, sizeof(fx.test_dir), "%s/upstream", fx.home);
	snprintf(fx.test_pem, sizeof(fx.test_pem), "%s/ca.pem", fx.test_dir);
	snprintf(fx.test_key, sizeof(fx.test_key), "%s/ca.key", fx.test_dir);
	CHECK_EQ_INT(eg_ca_ensure(fx.ca_dir, &err), 0);
	CHECK_EQ_INT(eg_ca_ensure(fx.test_dir, &err), 0);
	int r = eg_tls_init(fx.ca_pem, fx.ca_key, with_upstream ? fx.test_pem : NULL, &err);
	if (r < 0)
		fprintf(stderr, "%s\n", err.msg);
	CHECK_EQ_INT(r, 0);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static X509 *read_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	CHECK(f);
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	CHECK(x);
	return x;
}

static EVP_PKEY *read_key(const char *path)
{
	FILE *f = fopen(path, "r");
	CHECK(f);
	EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	CHECK(k);
	return k;
}

/* ------------------------------------------- the proxy's side, accepting */

typedef struct accept_job {
	int fd;
	const char *host;
	int timeout_ms;
	int r;
	ab_error err;
	char sni[256];
	pthread_t thread;
} accept_job;

/* eg_tls_accept on fd; on success sends "hello" and closes. */
static void *accept_main(void *arg)
{
	accept_job *j = arg;
	eg_stream s;
	eg_stream_init(&s, j->fd, j->timeout_ms);
	j->r = eg_tls_accept(&s, j->host, j->sni, sizeof(j->sni), &j->err);
	if (j->r == 0) {
		if (s.ssl == NULL || eg_write_all(&s, "hello", 5) < 0)
			j->r = -EIO;
	}
	eg_stream_close(&s);
	return NULL;
}

/* A socket pair: *server (non-blocking, for the proxy), *client (blocking). */
static void pair(int *server, int *client)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);
	*server = sv[0];
	*client = sv[1];
}

static void start_accept(accept_job *j, int fd, const char *host)
{
	memset(j, 0, sizeof(*j));
	j->fd = fd;
	j->host = host;
	j->timeout_ms = 5000;
	CHECK(pthread_create(&j->thread, NULL, accept_main, j) == 0);
}

/* A sandbox's client: trusts only the egress CA, sends sni (NULL: none),
 * checks the name (or, for an IP, the address) verify, offers alpn. */
typedef struct client_result {
	int ok;	       /* handshake completed and verified */
	long verify;   /* SSL_get_verify_result */
	X509 *leaf;    /* the server's certificate (caller frees) */
	char alpn[32]; /* "" when none was selected */
	char got[8];   /* what the server sent */
} client_result;

static client_result sandbox_client(int fd, const char *sni, const char *verify,
				    const unsigned char *alpn, unsigned alpn_len)
{
	client_result res = {0};
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	CHECK(c);
	CHECK(SSL_CTX_load_verify_locations(c, fx.ca_pem, NULL) == 1);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	/* As strict as Python 3.13's default (VERIFY_X509_STRICT). */
	CHECK(X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(c), X509_V_FLAG_X509_STRICT) == 1);
	if (alpn)
		CHECK(SSL_CTX_set_alpn_protos(c, alpn, alpn_len) == 0);
	SSL *ssl = SSL_new(c);
	CHECK(ssl);
	CHECK(SSL_set_fd(ssl, fd) == 1);
	if (sni)
		CHECK(SSL_set_tlsext_host_name(ssl, sni) == 1);
	unsigned char ip[16];
	if (verify && inet_pton(AF_INET, verify, ip) != 1 && inet_pton(AF_INET6, verify, ip) != 1)
		CHECK(SSL_set1_host(ssl, verify) == 1);
	else if (verify)
		CHECK(X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), verify) == 1);
	int r = SSL_connect(ssl);
	res.verify = SSL_get_verify_result(ssl);
	if (r == 1) {
		res.ok = 1;
		res.leaf = SSL_get1_peer_certificate(ssl);
		const unsigned char *p;
		unsigned n;
		SSL_get0_alpn_selected(ssl, &p, &n);
		CHECK(n < sizeof(res.alpn));
		if (n)
			memcpy(res.alpn, p, n);
		res.alpn[n] = '\0';
		int got = 0;
		while (got < 5) {
			int k = SSL_read(ssl, res.got + got, 5 - got);
			if (k <= 0)
				break;
			got += k;
		}
		res.got[got] = '\0';
	}
	ERR_clear_error();
	SSL_free(ssl);
	SSL_CTX_free(c);
	return res;
}

static const unsigned char ALPN_BOTH[] = "\x02h2\x08http/1.1";
static const unsigned char ALPN_H2[] = "\x02h2";

/* One full interception handshake for host with the given client SNI. */
static client_result intercept(const char *host, const char *sni, const char *verify,
			       const unsigned char *alpn, unsigned alpn_len, accept_job *j)
{
	int sfd, cfd;
	pair(&sfd, &cfd);
	start_accept(j, sfd, host);
	client_result res = sandbox_client(cfd, sni, verify, alpn, alpn_len);
	close(cfd);
	CHECK(pthread_join(j->thread, NULL) == 0);
	return res;
}

static int has_san_dns(X509 *x, const char *name)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int found = 0, n = gens ? sk_GENERAL_NAME_num(gens) : 0;
	for (int i = 0; i < n; i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		if (g->type == GEN_DNS) {
			const char *s = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
			if (n == 1 && strcmp(s, name) == 0)
				found = 1;
		}
	}
	GENERAL_NAMES_free(gens);
	return found;
}

static int has_san_ip(X509 *x, const unsigned char *ip, int iplen)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int found = 0, n = gens ? sk_GENERAL_NAME_num(gens) : 0;
	for (int i = 0; i < n; i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		if (g->type == GEN_IPADD && ASN1_STRING_length(g->d.iPAddress) == iplen &&
		    memcmp(ASN1_STRING_get0_data(g->d.iPAddress), ip, (size_t)iplen) == 0)
			found = 1;
	}
	GENERAL_NAMES_free(gens);
	return found;
}

/* ------------------------------------------------------ accept: the leaf */

AB_TEST(tls_accept_mints_a_leaf_a_client_trusting_the_ca_accepts)
{
	setup(0);
	accept_job j;
	client_result res = intercept("example.test", "Example.TEST", "example.test", ALPN_BOTH,
				      sizeof(ALPN_BOTH) - 1, &j);
	if (j.r < 0)
		fprintf(stderr, "accept: %s\n", j.err.msg);
	CHECK_EQ_INT(j.r, 0);
	CHECK(res.ok);
	CHECK_EQ_INT(res.verify, X509_V_OK);
	CHECK_STR(j.sni, "Example.TEST"); /* as sent: case-insensitive match */
	CHECK_STR(res.alpn, "http/1.1");
	CHECK_STR(res.got, "hello");

	X509 *leaf = res.leaf, *ca = read_cert(fx.ca_pem);
	CHECK(has_san_dns(leaf, "example.test"));
	CHECK(X509_check_host(leaf, "example.test", 0, 0, NULL) == 1);
	CHECK(X509_check_host(leaf, "other.test", 0, 0, NULL) != 1);
	CHECK(X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER);
	CHECK(!(X509_get_extension_flags(leaf) & EXFLAG_CA));
	CHECK(X509_check_issued(ca, leaf) == X509_V_OK);
	const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(leaf);
	const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca);
	CHECK(aki && ski && ASN1_OCTET_STRING_cmp(aki, ski) == 0);
	CHECK(X509_get0_subject_key_id(leaf) != NULL);
	CHECK_EQ_INT(X509_get_signature_nid(leaf), NID_ecdsa_with_SHA256);
	CHECK(ASN1_STRING_length(X509_get0_serialNumber(leaf)) >= 15);
	/* Valid from a day ago for 90 days. */
	int days, secs;
	CHECK(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(leaf), NULL) == 1);
	CHECK(days == 0 || days == 1);
	CHECK(days * 86400 + secs > 23 * 3600);
	CHECK(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(leaf)) == 1);
	CHECK(days == 89 || days == 90);
	CHECK(ASN1_TIME_compare(X509_get0_notAfter(leaf), X509_get0_notAfter(ca)) <= 0);
	EVP_PKEY *pk = X509_get0_pubkey(leaf);
	CHECK(pk && EVP_PKEY_is_a(pk, "EC"));
	X509_free(leaf);
	X509_free(ca);
	cleanup_home();
}

AB_TEST(tls_accept_without_sni_and_for_ip_literals)
{
	setup(0);
	accept_job j;
	/* No SNI for a name: fine, the leaf is for the CONNECT host. */
	client_result res = intercept("example.test", NULL, "example.test", NULL, 0, &j);
	CHECK_EQ_INT(j.r, 0);
	CHECK(res.ok);
	CHECK_STR(j.sni, "");
	CHECK_STR(res.alpn, ""); /* none offered, none selected */
	X509_free(res.leaf);

	res = intercept("127.0.0.1", NULL, "127.0.0.1", NULL, 0, &j);
	CHECK_EQ_INT(j.r, 0);
	CHECK(res.ok);
	const unsigned char v4[4] = {127, 0, 0, 1};
	CHECK(has_san_ip(res.leaf, v4, 4));
	X509_free(res.leaf);

	res = intercept("2001:db8::1", NULL, "2001:db8::1", NULL, 0, &j);
	CHECK_EQ_INT(j.r, 0);
	CHECK(res.ok);
	unsigned char v6[16];
	CHECK(inet_pton(AF_INET6, "2001:db8::1", v6) == 1);
	CHECK(has_san_ip(res.leaf, v6, 16));
	X509_free(res.leaf);
	cleanup_home();
}

AB_TEST(tls_accept_refuses_a_sni_other_than_the_connect_host)
{
	setup(0);
	accept_job j;
	client_result res = intercept("example.test", "other.test", "other.test", NULL, 0, &j);
	CHECK(!res.ok);
	CHECK_EQ_INT(j.r, -EACCES);
	CHECK_CONTAINS(j.err.msg, "SNI other.test does not match CONNECT host example.test");
	CHECK_STR(j.sni, "other.test");
	cleanup_home();
}

AB_TEST(tls_accept_gives_no_alpn_to_a_client_offering_only_h2)
{
	setup(0);
	accept_job j;
	client_result res = intercept("example.test", "example.test", "example.test", ALPN_H2,
				      sizeof(ALPN_H2) - 1, &j);
	CHECK_EQ_INT(j.r, 0);
	CHECK(res.ok);
	CHECK_STR(res.alpn, "");
	CHECK_STR(res.got, "hello");
	X509_free(res.leaf);
	cleanup_home();
}

AB_TEST(tls_accept_refuses_a_host_no_certificate_may_name)
{
	setup(0);
	const char *bad[] = {"a.test,DNS:evil.test", "", "exa mple.test", "a\nb", "é.test"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		int sfd, cfd;
		pair(&sfd, &cfd);
		eg_stream s;
		eg_stream_init(&s, sfd, 1000);
		char sni[64] = "x";
		ab_error err = {0};
		CHECK_EQ_INT(eg_tls_accept(&s, bad[i], sni, sizeof(sni), &err), -EINVAL);
		CHECK_CONTAINS(err.msg, "not a host name");
		CHECK(s.ssl == NULL);
		CHECK_STR(sni, "");
		eg_stream_close(&s);
		close(cfd);
	}
	char big[300];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	int sfd, cfd;
	pair(&sfd, &cfd);
	eg_stream s;
	eg_stream_init(&s, sfd, 1000);
	ab_error err = {0};
	CHECK_EQ_INT(eg_tls_accept(&s, big, NULL, 0, &err), -EINVAL);
	eg_stream_close(&s);
	close(cfd);
	cleanup_home();
}

AB_TEST(tls_accept_times_out_on_a_silent_peer)
{
	setup(0);
	int sfd, cfd;
	pair(&sfd, &cfd);
	eg_stream s;
	eg_stream_init(&s, sfd, 300);
	ab_error err = {0};
	char sni[64];
	long long t0 = now_ms();
	CHECK_EQ_INT(eg_tls_accept(&s, "example.test", sni, sizeof(sni), &err), -ETIMEDOUT);
	long long took = now_ms() - t0;
	CHECK(took >= 250 && took < 3000);
	CHECK_CONTAINS(err.msg, "timed out");
	CHECK(s.ssl == NULL);
	eg_stream_close(&s);
	close(cfd);
	cleanup_home();
}

AB_TEST(tls_accept_of_garbage_fails_cleanly)
{
	setup(0);
	int sfd, cfd;
	pair(&sfd, &cfd);
	eg_stream s;
	eg_stream_init(&s, sfd, 2000);
	static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK(write(cfd, junk, sizeof(junk) - 1) == (ssize_t)sizeof(junk) - 1);
	ab_error err = {0};
	CHECK_EQ_INT(eg_tls_accept(&s, "example.test", NULL, 0, &err), -EPROTO);
	CHECK_CONTAINS(err.msg, "TLS handshake with the sandbox for example.test");
	eg_stream_close(&s);
	close(cfd);
	/* A peer that hangs up at once. */
	pair(&sfd, &cfd);
	eg_stream_init(&s, sfd, 2000);
	close(cfd);
	CHECK_EQ_INT(eg_tls_accept(&s, "example.test", NULL, 0, &err), -EPROTO);
	eg_stream_close(&s);
	cleanup_home();
}

/* ---------------------------------------------------------- leaf cache */

static int same_cert(X509 *a, X509 *b)
{
	return a && b && X509_cmp(a, b) == 0;
}

AB_TEST(tls_leaf_cache_gives_the_same_certificate_for_the_same_host)
{
	setup(0);
	accept_job j;
	client_result a = intercept("example.test", "example.test", "example.test", NULL, 0, &j);
	CHECK(a.ok);
	client_result b = intercept("EXAMPLE.test", "example.test", "example.test", NULL, 0, &j);
	CHECK(b.ok);
	client_result c = intercept("other.test", "other.test", "other.test", NULL, 0, &j);
	CHECK(c.ok);
	CHECK(same_cert(a.leaf, b.leaf));
	CHECK(!same_cert(a.leaf, c.leaf));
	/* The leaves share this process's one key. */
	CHECK(EVP_PKEY_eq(X509_get0_pubkey(a.leaf), X509_get0_pubkey(c.leaf)) == 1);
	X509_free(a.leaf);
	X509_free(b.leaf);
	X509_free(c.leaf);
	cleanup_home();
}

/* Many handshakes at once, over a few hosts, clients and proxy each in
 * threads of their own: every one completes, and a host has one
 * certificate. */
#define PARALLEL 16

typedef struct client_job {
	int fd;
	const char *host;
	client_result res;
	pthread_t thread;
} client_job;

static void *client_main(void *arg)
{
	client_job *c = arg;
	c->res = sandbox_client(c->fd, c->host, c->host, ALPN_BOTH, sizeof(ALPN_BOTH) - 1);
	close(c->fd);
	return NULL;
}

AB_TEST(tls_accepts_in_parallel_threads)
{
	setup(0);
	static const char *hosts[] = {"a.test", "b.test", "c.test", "d.test"};
	static accept_job jobs[PARALLEL];
	static client_job clients[PARALLEL];
	for (int i = 0; i < PARALLEL; i++) {
		int sfd;
		pair(&sfd, &clients[i].fd);
		clients[i].host = hosts[i % 4];
		start_accept(&jobs[i], sfd, hosts[i % 4]);
		CHECK(pthread_create(&clients[i].thread, NULL, client_main, &clients[i]) == 0);
	}
	for (int i = 0; i < PARALLEL; i++) {
		CHECK(pthread_join(clients[i].thread, NULL) == 0);
		CHECK(pthread_join(jobs[i].thread, NULL) == 0);
		if (jobs[i].r < 0)
			fprintf(stderr, "%d: %s\n", i, jobs[i].err.msg);
		CHECK_EQ_INT(jobs[i].r, 0);
		CHECK(clients[i].res.ok);
		CHECK_STR(clients[i].res.got, "hello");
		CHECK_STR(clients[i].res.alpn, "http/1.1");
	}
	for (int i = 4; i < PARALLEL; i++)
		CHECK(same_cert(clients[i].res.leaf, clients[i % 4].res.leaf));
	CHECK(!same_cert(clients[0].res.leaf, clients[1].res.leaf));
	for (int i = 0; i < PARALLEL; i++)
		X509_free(clients[i].res.leaf);
	cleanup_home();
}

/* ------------------------------------------------- connect: the upstream */

/* A local TLS server on 127.0.0.1 with a certificate from the test CA for
 * DNS:upstream.test and IP:127.0.0.1; serves one connection: handshake,
 * "hi", close. */
typedef struct upstream {
	int lfd, port;
	SSL_CTX *ctx;
	int rude; /* close without a close_notify */
	int handshake_ok;
	char sni[256];
	unsigned char offered[64]; /* the client's ALPN list, wire format */
	unsigned offered_len;
	pthread_t thread;
} upstream;

static X509 *upstream_cert(EVP_PKEY *key)
{
	X509 *ca = read_cert(fx.test_pem);
	EVP_PKEY *ca_key = read_key(fx.test_key);
	X509 *x = X509_new();
	CHECK(x);
	CHECK(X509_set_version(x, X509_VERSION_3) == 1);
	CHECK(ASN1_INTEGER_set(X509_get_serialNumber(x), 4242) == 1);
	CHECK(X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
					 (const unsigned char *)"upstream.test", -1, -1, 0) == 1);
	CHECK(X509_set_issuer_name(x, X509_get_subject_name(ca)) == 1);
	CHECK(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
	CHECK(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	CHECK(X509_set_pubkey(x, key) == 1);
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, ca, x, NULL, NULL, 0);
	static const struct {
		int nid;
		const char *v;
	} exts[] = {{NID_subject_alt_name, "DNS:upstream.test,IP:127.0.0.1"},
		    {NID_ext_key_usage, "serverAuth"},
		    {NID_authority_key_identifier, "keyid"}};
	for (size_t i = 0; i < sizeof(exts) / sizeof(*exts); i++) {
		X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, exts[i].nid, exts[i].v);
		CHECK(e && X509_add_ext(x, e, -1) == 1);
		X509_EXTENSION_free(e);
	}
	CHECK(X509_sign(x, ca_key, EVP_sha256()) > 0);
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	return x;
}

static int upstream_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
			 const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	upstream *u = arg;
	if (inlen <= sizeof(u->offered)) {
		memcpy(u->offered, in, inlen);
		u->offered_len = inlen;
	}
	static const unsigned char h11[] = "\x08http/1.1";
	unsigned char *sel;
	unsigned char sellen;
	if (SSL_select_next_proto(&sel, &sellen, h11, sizeof(h11) - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	*outlen = sellen;
	return SSL_TLSEXT_ERR_OK;
}

static void *upstream_main(void *arg)
{
	upstream *u = arg;
	int fd = accept4(u->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	SSL *ssl = SSL_new(u->ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_accept(ssl) == 1) {
		u->handshake_ok = 1;
		const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
		snprintf(u->sni, sizeof(u->sni), "%s", sni ? sni : "");
		SSL_write(ssl, "hi", 2);
		if (!u->rude)
			SSL_shutdown(ssl);
	}
	ERR_clear_error();
	SSL_free(ssl);
	close(fd);
	return NULL;
}

static void upstream_start(upstream *u, int rude)
{
	memset(u, 0, sizeof(*u));
	u->rude = rude;
	EVP_PKEY *key = EVP_EC_gen("P-256");
	CHECK(key);
	X509 *cert = upstream_cert(key);
	u->ctx = SSL_CTX_new(TLS_server_method());
	CHECK(u->ctx);
	CHECK(SSL_CTX_use_certificate(u->ctx, cert) == 1);
	CHECK(SSL_CTX_use_PrivateKey(u->ctx, key) == 1);
	SSL_CTX_set_alpn_select_cb(u->ctx, upstream_alpn, u);
	X509_free(cert);
	EVP_PKEY_free(key);

	u->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(u->lfd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	CHECK(bind(u->lfd, (struct sockaddr *)&a, sizeof(a)) == 0);
	CHECK(listen(u->lfd, 4) == 0);
	socklen_t alen = sizeof(a);
	CHECK(getsockname(u->lfd, (struct sockaddr *)&a, &alen) == 0);
	u->port = ntohs(a.sin_port);
	CHECK(pthread_create(&u->thread, NULL, upstream_main, u) == 0);
}

static void upstream_stop(upstream *u)
{
	/* The server thread ends after its one connection. */
	CHECK(pthread_join(u->thread, NULL) == 0);
	close(u->lfd);
	SSL_CTX_free(u->ctx);
}

/* A non-blocking TCP connection to the upstream. */
static int dial(const upstream *u)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)u->port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	CHECK(fcntl(fd, F_SETFL, O_NONBLOCK) == 0);
	return fd;
}

/* eg_tls_connect to a fresh upstream as host; the error (0 on success)
 * and, on success, what the upstream said. */
static int connect_upstream(const char *host, upstream *u, ab_error *err, char got[8])
{
	upstream_start(u, 0);
	eg_stream s;
	eg_stream_init(&s, dial(u), 5000);
	int r = eg_tls_connect(&s, host, err);
	got[0] = '\0';
	if (r == 0) {
		CHECK(s.ssl != NULL);
		size_t n = 0;
		while (n < 2) {
			ssize_t k = eg_read(&s, got + n, 2 - n);
			CHECK(k > 0);
			n += (size_t)k;
		}
		got[n] = '\0';
		char more[8];
		CHECK_EQ_INT(eg_read(&s, more, sizeof(more)), 0); /* its close_notify */
		const unsigned char *p;
		unsigned plen;
		SSL_get0_alpn_selected(s.ssl, &p, &plen);
		CHECK(plen == 8 && memcmp(p, "http/1.1", 8) == 0);
	} else {
		CHECK(s.ssl == NULL);
	}
	eg_stream_close(&s);
	upstream_stop(u);
	return r;
}

AB_TEST(tls_connect_verifies_an_upstream_signed_by_upstream_ca)
{
	setup(1);
	upstream u;
	ab_error err = {0};
	char got[8];
	int r = connect_upstream("upstream.test", &u, &err, got);
	if (r < 0)
		fprintf(stderr, "%s\n", err.msg);
	CHECK_EQ_INT(r, 0);
	CHECK_STR(got, "hi");
	CHECK(u.handshake_ok);
	CHECK_STR(u.sni, "upstream.test");
	/* Offered ALPN: http/1.1 and nothing else. */
	CHECK_EQ_INT(u.offered_len, 9);
	CHECK(memcmp(u.offered, "\x08http/1.1", 9) == 0);
	cleanup_home();
}

/* An upstream that closes without a close_notify (as many HTTP/1.1 servers
 * do) is an end of stream, not an error: HTTP's own framing says whether
 * the body is complete. */
AB_TEST(tls_connect_upstream_closing_without_close_notify_is_end_of_stream)
{
	setup(1);
	upstream u;
	upstream_start(&u, 1);
	eg_stream s;
	eg_stream_init(&s, dial(&u), 5000);
	ab_error err = {0};
	CHECK_EQ_INT(eg_tls_connect(&s, "upstream.test", &err), 0);
	char buf[8];
	CHECK_EQ_INT(eg_read(&s, buf, 2), 2);
	CHECK(memcmp(buf, "hi", 2) == 0);
	CHECK_EQ_INT(eg_read(&s, buf, sizeof(buf)), 0);
	eg_stream_close(&s);
	upstream_stop(&u);
	cleanup_home();
}

AB_TEST(tls_connect_fails_for_a_wrong_host_name)
{
	setup(1);
	upstream u;
	ab_error err = {0};
	char got[8];
	CHECK_EQ_INT(connect_upstream("wrong.test", &u, &err, got), -EPROTO);
	CHECK_CONTAINS(err.msg, "TLS to wrong.test: certificate verify failed: hostname mismatch");
	CHECK(!u.handshake_ok);
	/* A wildcard-looking or suffix name is no better. */
	CHECK_EQ_INT(connect_upstream("test", &u, &err, got), -EPROTO);
	CHECK_CONTAINS(err.msg, "hostname mismatch");
	cleanup_home();
}

AB_TEST(tls_connect_fails_without_upstream_ca)
{
	setup(0);
	upstream u;
	ab_error err = {0};
	char got[8];
	CHECK_EQ_INT(connect_upstream("upstream.test", &u, &err, got), -EPROTO);
	CHECK_CONTAINS(err.msg,
		       "certificate verify failed: unable to get local issuer certificate");
	CHECK(!u.handshake_ok);
	cleanup_home();
}

AB_TEST(tls_connect_to_an_ip_literal_checks_the_address_and_sends_no_sni)
{
	setup(1);
	upstream u;
	ab_error err = {0};
	char got[8];
	int r = connect_upstream("127.0.0.1", &u, &err, got);
	if (r < 0)
		fprintf(stderr, "%s\n", err.msg);
	CHECK_EQ_INT(r, 0);
	CHECK_STR(got, "hi");
	CHECK_STR(u.sni, "");
	/* Dialled at 127.0.0.1 but asked for another address. */
	CHECK_EQ_INT(connect_upstream("127.0.0.2", &u, &err, got), -EPROTO);
	CHECK_CONTAINS(err.msg, "IP address mismatch");
	cleanup_home();
}

AB_TEST(tls_connect_times_out_on_a_silent_peer)
{
	setup(1);
	int sfd, cfd;
	pair(&sfd, &cfd);
	eg_stream s;
	eg_stream_init(&s, sfd, 300);
	ab_error err = {0};
	long long t0 = now_ms();
	CHECK_EQ_INT(eg_tls_connect(&s, "upstream.test", &err), -ETIMEDOUT);
	long long took = now_ms() - t0;
	CHECK(took >= 250 && took < 3000);
	CHECK_CONTAINS(err.msg, "TLS to upstream.test: handshake timed out after 300 ms");
	eg_stream_close(&s);
	close(cfd);
	cleanup_home();
}

/* ------------------------------------------------------------------ init */

AB_TEST(tls_init_refuses_a_ca_that_does_not_match_its_key)
{
	ab_error err = {0};
	snprintf(fx.home, sizeof(fx.home), "/tmp/eg-tls-XXXXXX");
	CHECK(mkdtemp(fx.home));
	atexit(cleanup_home);
	char a[128], b[128], p[160], k[160];
	snprintf(a, sizeof(a), "%s/a", fx.home);
	snprintf(b, sizeof(b), "%s/b", fx.home);
	CHECK_EQ_INT(eg_ca_ensure(a, &err), 0);
	CHECK_EQ_INT(eg_ca_ensure(b, &err), 0);
	snprintf(p, sizeof(p), "%s/ca.pem", a);
	snprintf(k, sizeof(k), "%s/ca.key", b);
	CHECK_EQ_INT(eg_tls_init(p, k, NULL, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "does not match the key");
	snprintf(k, sizeof(k), "%s/missing.key", a);
	CHECK_EQ_INT(eg_tls_init(p, k, NULL, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "load CA key");
	snprintf(k, sizeof(k), "%s/ca.key", a);
	CHECK_EQ_INT(eg_tls_init(p, k, "/nonexistent/upstream.pem", &err), -EIO);
	CHECK_CONTAINS(err.msg, "load upstream CA /nonexistent/upstream.pem");
	/* A failed init leaves nothing half made: the next one works, once. */
	CHECK_EQ_INT(eg_tls_init(p, k, NULL, &err), 0);
	CHECK_EQ_INT(eg_tls_init(p, k, NULL, &err), -EALREADY);
	cleanup_home();
}

/* The cache is bounded (1024 leaves, tls.c's LEAF_CACHE_MAX): past that,
 * the least recently used leaf goes and is minted anew when needed, while
 * one in use stays. */
AB_TEST(tls_leaf_cache_is_bounded_and_drops_the_least_recently_used)
{
	setup(0);
	accept_job j;
	client_result old = intercept("old.test", "old.test", "old.test", NULL, 0, &j);
	client_result kept = intercept("kept.test", "kept.test", "kept.test", NULL, 0, &j);
	CHECK(old.ok && kept.ok);
	for (int i = 0; i < 1030; i++) {
		char host[32];
		snprintf(host, sizeof(host), "h%d.test", i);
		if (i == 600) {
			/* kept.test is used again half way: it is not the oldest. */
			client_result k = intercept("kept.test", NULL, "kept.test", NULL, 0, &j);
			CHECK(k.ok && same_cert(k.leaf, kept.leaf));
			X509_free(k.leaf);
		}
		/* A peer that hangs up at once: the leaf is minted, the
		 * handshake fails. */
		int sfd, cfd;
		pair(&sfd, &cfd);
		close(cfd);
		eg_stream s;
		eg_stream_init(&s, sfd, 1000);
		ab_error err = {0};
		CHECK(eg_tls_accept(&s, host, NULL, 0, &err) < 0);
		eg_stream_close(&s);
	}
	client_result old2 = intercept("old.test", NULL, "old.test", NULL, 0, &j);
	client_result kept2 = intercept("kept.test", NULL, "kept.test", NULL, 0, &j);
	CHECK(old2.ok && kept2.ok);
	CHECK(!same_cert(old.leaf, old2.leaf));
	CHECK(same_cert(kept.leaf, kept2.leaf));
	X509_free(old.leaf);
	X509_free(old2.leaf);
	X509_free(kept.leaf);
	X509_free(kept2.leaf);
	cleanup_home();
}

/* ca.c - the egress CA (docs/egress.md): made once in <home>/egress, loaded
 * and checked on every start, and published with the system's roots as
 * ca-bundle.pem for the sandboxes. Linked into agentboxd as well as the
 * sidecar, so it uses libcrypto only (never libssl).
 *
 * Every file is reached through a descriptor of the directory, opened
 * without following a symlink, so a path swapped under us cannot redirect a
 * write of the private key. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "fileio.h"
#include "internal.h"

#define SYSTEM_ROOTS "/etc/ssl/certs/ca-certificates.crt"
#define CA_DAYS 3650
/* Bounds on what is read: a PEM key or certificate is a few KiB; the
 * Debian bundle of roots is about 200 KiB. */
#define PEM_MAX (64 << 10)
#define ROOTS_MAX (16 << 20)

/* The most recent OpenSSL error as text ("" when there is none); clears the
 * queue. */
static const char *ossl_error(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	buf[0] = '\0';
	if (e)
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

static int ossl_fail(ab_error *err, const char *what, const char *dir)
{
	char e[256];
	ossl_error(e, sizeof(e));
	return ab_error_set(err, -EIO, "egress CA in %s: %s%s%s", dir, what, e[0] ? ": " : "", e);
}

/* Reads a whole regular file at dfd/name (opened with flags added, e.g.
 * O_NOFOLLOW), at most max bytes, into a NUL-terminated buffer (*out,
 * caller frees). -ENOENT when it does not exist, -ELOOP for a symlink under
 * O_NOFOLLOW. The stat of the opened file is returned in st. */
static int read_at(int dfd, const char *name, int flags, size_t max, char **out, size_t *len,
		   struct stat *st)
{
	AB_AUTOCLOSE int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | flags);
	if (fd < 0)
		return -errno;
	if (fstat(fd, st) < 0)
		return -errno;
	if (!S_ISREG(st->st_mode))
		return -EINVAL;
	if ((size_t)st->st_size > max)
		return -EFBIG;
	char *buf = malloc((size_t)st->st_size + 1);
	if (!buf)
		return -ENOMEM;
	size_t n = 0;
	for (;;) {
		if (n == (size_t)st->st_size + 1) {
			free(buf);
			return -EFBIG; /* grew while we read it */
		}
		ssize_t r = read(fd, buf + n, (size_t)st->st_size + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = -errno;
			free(buf);
			return e;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

/* Writes data as dfd/name atomically: a temporary file made with O_EXCL
 * and O_NOFOLLOW (a stale one from a crash is removed first), mode set,
 * synced, then renamed into place. */
static int write_atomic(int dfd, const char *dir, const char *name, mode_t mode, const char *a,
			size_t alen, const char *b, size_t blen, ab_error *err)
{
	char tmp[64];
	if (snprintf(tmp, sizeof(tmp), ".%s.tmp", name) >= (int)sizeof(tmp))
		return ab_error_set(err, -ENAMETOOLONG, "egress CA: name %s too long", name);
	int fd = -1;
	for (int attempt = 0; attempt < 2 && fd < 0; attempt++) {
		fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd < 0 && errno == EEXIST && attempt == 0 && unlinkat(dfd, tmp, 0) == 0)
			continue;
		if (fd < 0)
			return ab_error_errno(err, -errno, "create %s/%s", dir, tmp);
	}
	int r = fchmod(fd, mode) < 0 ? -errno : 0;
	if (r == 0)
		r = ab__write_all(fd, a, alen);
	if (r == 0 && blen > 0)
		r = ab__write_all(fd, b, blen);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && renameat(dfd, tmp, dfd, name) < 0)
		r = -errno;
	if (r < 0) {
		unlinkat(dfd, tmp, 0);
		return ab_error_errno(err, r, "write %s/%s", dir, name);
	}
	fsync(dfd);
	return 0;
}

/* Opens dir (made 0700 when missing), refusing a symlink, a non-directory
 * and a directory someone else owns. */
static int open_dir(const char *dir, ab_error *err)
{
	int made = mkdir(dir, 0700) == 0;
	if (!made && errno != EEXIST)
		return ab_error_errno(err, -errno, "egress CA: create directory %s", dir);
	struct stat st;
	if (lstat(dir, &st) < 0)
		return ab_error_errno(err, -errno, "egress CA: %s", dir);
	if (S_ISLNK(st.st_mode))
		return ab_error_set(
		    err, -ELOOP,
		    "egress CA: %s is a symbolic link; refusing to keep the CA key there", dir);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return ab_error_errno(err, -errno, "egress CA: open directory %s", dir);
	/* 0700 whatever the umask took away. */
	if ((made && fchmod(fd, 0700) < 0) || fstat(fd, &st) < 0) {
		int e = -errno;
		close(fd);
		return ab_error_errno(err, e, "egress CA: %s", dir);
	}
	if (st.st_uid != geteuid()) {
		close(fd);
		return ab_error_set(
		    err, -EPERM,
		    "egress CA: %s is owned by uid %u, not by us (uid %u); refusing "
		    "to keep the CA key there",
		    dir, (unsigned)st.st_uid, (unsigned)geteuid());
	}
	if (st.st_mode & 022) {
		close(fd);
		return ab_error_set(err, -EPERM,
				    "egress CA: %s is writable by group or others (mode %04o); "
				    "run chmod 700 %s",
				    dir, (unsigned)(st.st_mode & 07777), dir);
	}
	return fd;
}

int eg_x509_random_serial(X509 *x)
{
	unsigned char b[16];
	if (RAND_bytes(b, sizeof(b)) != 1)
		return -1;
	b[0] |= 0x01; /* never zero (RFC 5280 wants a positive integer) */
	BIGNUM *bn = BN_bin2bn(b, sizeof(b), NULL);
	if (!bn)
		return -1;
	ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
	BN_free(bn);
	if (!ai)
		return -1;
	int ok = X509_set_serialNumber(x, ai);
	ASN1_INTEGER_free(ai);
	return ok == 1 ? 0 : -1;
}

int eg_x509_add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	if (!ext)
		return -1;
	int ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? 0 : -1;
}

/* A self-signed CA certificate for key: "agentbox egress CA <id>". */
static X509 *make_ca_cert(EVP_PKEY *key)
{
	unsigned char idb[4];
	char id[9], cn[64];
	if (RAND_bytes(idb, sizeof(idb)) != 1)
		return NULL;
	ab__hex_encode(idb, sizeof(idb), id);
	snprintf(cn, sizeof(cn), "agentbox egress CA %s", id);

	X509 *x = X509_new();
	if (!x)
		return NULL;
	X509_NAME *name = X509_get_subject_name(x);
	X509V3_CTX ctx;
	if (X509_set_version(x, X509_VERSION_3) != 1 || eg_x509_random_serial(x) < 0 ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -24 * 3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), (long)CA_DAYS * 24 * 3600) ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
				       0) != 1 ||
	    X509_set_issuer_name(x, name) != 1 || X509_set_pubkey(x, key) != 1)
		goto fail;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	if (eg_x509_add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
	    eg_x509_add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
	    eg_x509_add_ext(x, &ctx, NID_subject_key_identifier, "hash") < 0 ||
	    eg_x509_add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") < 0)
		goto fail;
	if (X509_sign(x, key, EVP_sha256()) <= 0)
		goto fail;
	return x;
fail:
	X509_free(x);
	return NULL;
}

static char *pem_of_key(EVP_PKEY *key, size_t *len)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *out = NULL;
	if (b && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1) {
		char *p;
		long n = BIO_get_mem_data(b, &p);
		if (n > 0 && (out = malloc((size_t)n)) != NULL) {
			memcpy(out, p, (size_t)n);
			*len = (size_t)n;
		}
	}
	BIO_free(b);
	return out;
}

static char *pem_of_cert(X509 *x, size_t *len)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *out = NULL;
	if (b && PEM_write_bio_X509(b, x) == 1) {
		char *p;
		long n = BIO_get_mem_data(b, &p);
		if (n > 0 && (out = malloc((size_t)n + 1)) != NULL) {
			memcpy(out, p, (size_t)n);
			out[n] = '\0';
			*len = (size_t)n;
		}
	}
	BIO_free(b);
	return out;
}

/* Loads dir/ca.key (*out, caller frees), refusing one that group or
 * others can read. */
static int load_key(int dfd, const char *dir, EVP_PKEY **out, ab_error *err)
{
	AB_AUTOFREE char *buf = NULL;
	size_t len;
	struct stat st;
	int r = read_at(dfd, "ca.key", O_NOFOLLOW, PEM_MAX, &buf, &len, &st);
	if (r == -ELOOP)
		return ab_error_set(err, r, "egress CA: %s/ca.key is a symbolic link; refusing it",
				    dir);
	if (r < 0)
		return ab_error_errno(err, r, "egress CA: read %s/ca.key", dir);
	if (st.st_uid != geteuid()) {
		OPENSSL_cleanse(buf, len);
		return ab_error_set(err, -EPERM,
				    "egress CA: %s/ca.key is owned by uid %u, not by us (uid %u)",
				    dir, (unsigned)st.st_uid, (unsigned)geteuid());
	}
	if (st.st_mode & 077) {
		OPENSSL_cleanse(buf, len);
		return ab_error_set(err, -EPERM,
				    "egress CA: %s/ca.key is accessible by group or others (mode "
				    "%04o); the CA's private key must be private: run chmod 600 "
				    "%s/ca.key",
				    dir, (unsigned)(st.st_mode & 07777), dir);
	}
	BIO *b = BIO_new_mem_buf(buf, (int)len);
	*out = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	OPENSSL_cleanse(buf, len);
	if (!*out)
		return ossl_fail(err, "ca.key is not a PEM private key", dir);
	return 0;
}

static int load_cert(int dfd, const char *dir, X509 **out, ab_error *err)
{
	AB_AUTOFREE char *buf = NULL;
	size_t len;
	struct stat st;
	int r = read_at(dfd, "ca.pem", O_NOFOLLOW, PEM_MAX, &buf, &len, &st);
	if (r == -ELOOP)
		return ab_error_set(err, r, "egress CA: %s/ca.pem is a symbolic link; refusing it",
				    dir);
	if (r < 0)
		return ab_error_errno(err, r, "egress CA: read %s/ca.pem", dir);
	BIO *b = BIO_new_mem_buf(buf, (int)len);
	*out = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	if (!*out)
		return ossl_fail(err, "ca.pem is not a PEM certificate", dir);
	return 0;
}

/* Makes a new key (when key is NULL) and certificate and writes them: the
 * key first, so that a crash in between leaves a key for which the next
 * start makes the certificate, never a certificate without its key. */
static int create_ca(int dfd, const char *dir, EVP_PKEY *key, ab_error *err)
{
	EVP_PKEY *own = NULL;
	if (!key) {
		own = key = EVP_EC_gen("P-256");
		if (!key)
			return ossl_fail(err, "make an ECDSA P-256 key", dir);
		size_t klen = 0;
		char *kpem = pem_of_key(key, &klen);
		if (!kpem) {
			EVP_PKEY_free(own);
			return ossl_fail(err, "encode the key", dir);
		}
		int r = write_atomic(dfd, dir, "ca.key", 0600, kpem, klen, NULL, 0, err);
		OPENSSL_cleanse(kpem, klen);
		free(kpem);
		if (r < 0) {
			EVP_PKEY_free(own);
			return r;
		}
	}
	X509 *x = make_ca_cert(key);
	EVP_PKEY_free(own);
	if (!x)
		return ossl_fail(err, "make the CA certificate", dir);
	size_t clen = 0;
	AB_AUTOFREE char *cpem = pem_of_cert(x, &clen);
	X509_free(x);
	if (!cpem)
		return ossl_fail(err, "encode the CA certificate", dir);
	return write_atomic(dfd, dir, "ca.pem", 0644, cpem, clen, NULL, 0, err);
}

/* Checks a loaded pair: the certificate is a CA, is current, and is the
 * key's. */
static int check_pair(X509 *x, EVP_PKEY *key, const char *dir, ab_error *err)
{
	if (X509_check_private_key(x, key) != 1) {
		ERR_clear_error();
		return ab_error_set(
		    err, -EINVAL,
		    "egress CA: %s/ca.pem does not match %s/ca.key (the certificate "
		    "is not the key's); remove both to make a new CA",
		    dir, dir);
	}
	if (X509_check_ca(x) != 1)
		return ab_error_set(err, -EINVAL, "egress CA: %s/ca.pem is not a CA certificate",
				    dir);
	if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0)
		return ab_error_set(err, -EINVAL,
				    "egress CA: %s/ca.pem has expired; remove ca.pem and ca.key to "
				    "make a new CA (sandboxes must then trust the new one)",
				    dir);
	return 0;
}

static int write_bundle(int dfd, const char *dir, ab_error *err)
{
	AB_AUTOFREE char *roots = NULL, *ours = NULL;
	size_t rlen = 0, olen = 0;
	struct stat st;
	int r = read_at(dfd, "ca.pem", O_NOFOLLOW, PEM_MAX, &ours, &olen, &st);
	if (r < 0)
		return ab_error_errno(err, r, "egress CA: read %s/ca.pem", dir);
	/* The system's bundle is not ours: a distribution may make it a
	 * symlink into its own store, so it is followed. */
	r = read_at(AT_FDCWD, SYSTEM_ROOTS, 0, ROOTS_MAX, &roots, &rlen, &st);
	if (r == -ENOENT)
		rlen = 0;
	else if (r < 0)
		return ab_error_errno(err, r, "egress CA: read the system's roots %s",
				      SYSTEM_ROOTS);
	/* roots, a newline if it lacks one, then ours. */
	size_t total = rlen + 1 + olen;
	AB_AUTOFREE char *all = malloc(total);
	if (!all)
		return ab_error_set(err, -ENOMEM, "egress CA: out of memory");
	size_t n = 0;
	if (rlen) {
		memcpy(all, roots, rlen);
		n = rlen;
		if (roots[rlen - 1] != '\n')
			all[n++] = '\n';
	}
	memcpy(all + n, ours, olen);
	n += olen;
	return write_atomic(dfd, dir, "ca-bundle.pem", 0644, all, n, NULL, 0, err);
}

int eg_ca_ensure(const char *dir, ab_error *err)
{
	AB_AUTOCLOSE int dfd = open_dir(dir, err);
	if (dfd < 0)
		return dfd;

	struct stat st;
	int have_key = fstatat(dfd, "ca.key", &st, AT_SYMLINK_NOFOLLOW) == 0;
	if (!have_key && errno != ENOENT)
		return ab_error_errno(err, -errno, "egress CA: %s/ca.key", dir);
	int have_cert = fstatat(dfd, "ca.pem", &st, AT_SYMLINK_NOFOLLOW) == 0;
	if (!have_cert && errno != ENOENT)
		return ab_error_errno(err, -errno, "egress CA: %s/ca.pem", dir);

	int r;
	if (!have_key && have_cert) {
		return ab_error_set(
		    err, -ENOENT,
		    "egress CA: %s/ca.pem exists but %s/ca.key does not; restore the "
		    "key, or remove ca.pem to make a new CA",
		    dir, dir);
	} else if (!have_key) {
		r = create_ca(dfd, dir, NULL, err);
		if (r < 0)
			return r;
	} else {
		EVP_PKEY *key = NULL;
		r = load_key(dfd, dir, &key, err);
		if (r < 0)
			return r;
		if (!have_cert) {
			r = create_ca(dfd, dir, key, err);
		} else {
			X509 *x = NULL;
			r = load_cert(dfd, dir, &x, err);
			if (r == 0)
				r = check_pair(x, key, dir, err);
			X509_free(x);
		}
		EVP_PKEY_free(key);
		if (r < 0)
			return r;
	}
	return write_bundle(dfd, dir, err);
}

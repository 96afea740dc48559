/* test_ca.c - the egress CA: made once with private modes, reused, checked,
 * published in a bundle with the system's roots. */
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "internal.h"
#include "unit.h"

#define SYSTEM_ROOTS "/etc/ssl/certs/ca-certificates.crt"

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void rm_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh temporary directory; the CA goes in <it>/egress (not there yet). */
static void temp_home(char *home, size_t len, char *dir, size_t dlen)
{
	snprintf(home, len, "/tmp/eg-ca-XXXXXX");
	CHECK(mkdtemp(home) != NULL);
	CHECK((size_t)snprintf(dir, dlen, "%s/egress", home) < dlen);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	CHECK(fseek(f, 0, SEEK_END) == 0);
	long n = ftell(f);
	CHECK(n >= 0);
	rewind(f);
	char *buf = malloc((size_t)n + 1);
	CHECK(buf);
	CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
	buf[n] = '\0';
	fclose(f);
	if (len)
		*len = (size_t)n;
	return buf;
}

static mode_t mode_of(const char *dir, const char *name)
{
	char p[PATH_MAX];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	CHECK(lstat(p, &st) == 0);
	return st.st_mode & 07777;
}

static X509 *load_pem(const char *dir)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/ca.pem", dir);
	FILE *f = fopen(p, "r");
	CHECK(f);
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	CHECK(x);
	return x;
}

AB_TEST(ca_is_made_on_first_use_with_private_modes)
{
	char home[64], dir[96];
	temp_home(home, sizeof(home), dir, sizeof(dir));
	ab_error err = {0};
	umask(0277); /* modes are set, not left to the umask */
	int r = eg_ca_ensure(dir, &err);
	umask(022);
	if (r < 0)
		fprintf(stderr, "%s\n", err.msg);
	CHECK_EQ_INT(r, 0);
	CHECK_EQ_INT(mode_of(home, "egress"), 0700);
	CHECK_EQ_INT(mode_of(dir, "ca.key"), 0600);
	CHECK_EQ_INT(mode_of(dir, "ca.pem"), 0644);
	CHECK_EQ_INT(mode_of(dir, "ca-bundle.pem"), 0644);

	X509 *x = load_pem(dir);
	/* basicConstraints CA:TRUE, critical */
	int crit = -1;
	BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
	CHECK(bc && bc->ca);
	CHECK_EQ_INT(crit, 1);
	BASIC_CONSTRAINTS_free(bc);
	CHECK(X509_get_extension_flags(x) & EXFLAG_CA);
	uint32_t ku = X509_get_key_usage(x);
	CHECK(ku & KU_KEY_CERT_SIGN);
	CHECK(ku & KU_CRL_SIGN);
	CHECK(X509_get0_subject_key_id(x) != NULL);
	/* The serial: 128 random bits. */
	const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
	CHECK(ASN1_STRING_length(serial) >= 15);
	/* CN "agentbox egress CA <id>" */
	char cn[128];
	CHECK(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)) >
	      0);
	CHECK(strncmp(cn, "agentbox egress CA ", 19) == 0);
	CHECK(strlen(cn) > 19);
	/* About ten years */
	int days, secs;
	CHECK(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)) == 1);
	CHECK(days > 3640 && days <= 3650);
	/* ECDSA P-256 */
	EVP_PKEY *pk = X509_get0_pubkey(x);
	CHECK(pk && EVP_PKEY_is_a(pk, "EC"));
	char group[32];
	size_t glen;
	CHECK(EVP_PKEY_get_utf8_string_param(pk, "group", group, sizeof(group), &glen) == 1);
	CHECK_STR(group, "prime256v1");
	/* Self-signed, and verifies. */
	CHECK(X509_verify(x, pk) == 1);
	X509_free(x);
	rm_tree(home);
}

AB_TEST(ca_is_reused_not_regenerated)
{
	char home[64], dir[96], p[PATH_MAX];
	temp_home(home, sizeof(home), dir, sizeof(dir));
	ab_error err = {0};
	CHECK_EQ_INT(eg_ca_ensure(dir, &err), 0);
	snprintf(p, sizeof(p), "%s/ca.pem", dir);
	char *pem1 = slurp(p, NULL);
	snprintf(p, sizeof(p), "%s/ca.key", dir);
	char *key1 = slurp(p, NULL);
	/* A missing bundle is made again. */
	snprintf(p, sizeof(p), "%s/ca-bundle.pem", dir);
	CHECK(unlink(p) == 0);
	CHECK_EQ_INT(eg_ca_ensure(dir, &err), 0);
	snprintf(p, sizeof(p), "%s/ca.pem", dir);
	char *pem2 = slurp(p, NULL);
	snprintf(p, sizeof(p), "%s/ca.key", dir);
	char *key2 = slurp(p, NULL);
	CHECK_STR(pem1, pem2);
	CHECK_STR(key1, key2);
	snprintf(p, sizeof(p), "%s/ca-bundle.pem", dir);
	CHECK(access(p, R_OK) == 0);
	free(pem1);
	free(pem2);
	free(key1);
	free(key2);
	rm_tree(home);
}

AB_TEST(ca_key_readable_by_group_is_refused)
{
	char home[64], dir[96], p[PATH_MAX];
	temp_home(home, sizeof(home), dir, sizeof(dir));
	ab_error err = {0};
	CHECK_EQ_INT(eg_ca_ensure(dir, &err), 0);
	snprintf(p, sizeof(p), "%s/ca.key", dir);
	CHECK(chmod(p, 0640) == 0);
	CHECK_EQ_INT(eg_ca_ensure(dir, &err), -EPERM);
	CHECK_CONTAINS(err.msg, "ca.key is accessible by group or others (mode 0640)");
	CHECK_CONTAINS(err.msg, "chmod 600");
	CHECK(chmod(p, 0604) == 0);
	CHECK_EQ_INT(eg_ca_ensure(dir, &err), -EPERM);
	CHECK(chmod(p, 0600) == 0);
	CHECK_EQ_INT(eg_ca_ensure(dir, &err), 0);
	rm_tree(home);
}

AB_TEST(ca_bundle_holds_the_system_roots_then_ours)
{
	char home[64], dir[96], p[PATH_MAX];
	temp_home(home, sizeof(home), dir, sizeof(dir));
	ab_error err = {0};
	CHECK_EQ_INT(eg_ca_ensure(dir, &err), 0);
	snprintf(p, sizeof(p), "%s/ca.pem", dir);
	size_t olen, blen, rlen = 0;
	char *ours = slurp(p, &olen);
	snprintf(p, sizeof(p), "%s/ca-bundle.pem", dir);
	char *bundle = slurp(p, &blen);
	char *roots = slurp(SYSTEM_ROOTS, &rlen);
	CHECK(ours && bundle);
	CHECK(blen >= olen);
	CHECK(memcmp(bundle + blen - olen, ours, olen) == 0);
	if (roots) {
		CHECK(rlen > 0);
		CHECK(blen >= rlen + olen);
		CHECK(memcmp(bundle, roots, rlen) == 0);
	}
	/* Every certificate in it parses, ours last. */
	BIO *b = BIO_new_mem_buf(bundle, (int)blen);
	X509 *x, *last = NULL;
	int n = 0;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		X509_free(last);
		last = x;
		n++;
	}
	BIO_free(b);
	X509 *mine = load_pem(dir);
	CHECK(last && X509_cmp(last, mine) == 0);
	if (roots)
		CHECK(n > 10);
	X509_free(last);
	X509_free(mine);
	free(ours);
	free(bundle);
	free(roots);
	/* No temporary left behind. */
	snprintf(p, sizeof(p), "%s/.ca-bundle.pem.tmp", dir);
	CHECK(access(p, F_OK) != 0);
	rm_tree(home);
}

AB_TEST(ca_dir_that_is_a_symlink_is_refused)
{
	char home[64], dir[96], link[128];
	temp_home(home, sizeof(home), dir, sizeof(dir));
	CHECK(mkdir(dir, 0700) == 0);
	snprintf(link, sizeof(link), "%s/link", home);
	CHECK(symlink(dir, link) == 0);
	ab_error err = {0};
	CHECK_EQ_INT(eg_ca_ensure(link, &err), -ELOOP);
	CHECK_CONTAINS(err.msg, "is a symbolic link");
	rm_tree(home);
}

AB_TEST(ca_dir_owned_by_someone_else_is_refused)
{
	if (geteuid() != 0)
		SKIP("needs root to give a directory away");
	char home[64], dir[96];
	temp_home(home, sizeof(home), dir, sizeof(dir));
	CHECK(mkdir(dir, 0700) == 0);
	CHECK(chown(dir, 65534, 65534) == 0);
	ab_error err = {0};
	CHECK_EQ_INT(eg_ca_ensure(dir, &err), -EPERM);
	CHECK_CONTAINS(err.msg, "is owned by uid 65534, not by us");
	rm_tree(home);
}

AB_TEST(ca_dir_writable_by_others_is_refused)
{
	char home[64], dir[96];
	temp_home(home, sizeof(home), dir, sizeof(dir));
	CHECK(mkdir(dir, 0700) == 0);
	CHECK(chmod(dir, 0777) == 0);
	ab_error err = {0};
	CHECK_EQ_INT(eg_ca_ensure(dir, &err), -EPERM);
	CHECK_CONTAINS(err.msg, "writable by group or others");
	rm_tree(home);
}

AB_TEST(ca_key_symlink_is_refused)
{
	char home[64], dir[96], p[PATH_MAX], q[PATH_MAX];
	temp_home(home, sizeof(home), dir, sizeof(dir));
	ab_error err = {0};
	CHECK_EQ_INT(eg_ca_ensure(dir, &err), 0);
	snprintf(p, sizeof(p), "%s/ca.key", dir);
	snprintf(q, sizeof(q), "%s/elsewhere.key", home);
	CHECK(rename(p, q) == 0);
	CHECK(symlink(q, p) == 0);
	CHECK(eg_ca_ensure(dir, &err) < 0);
	CHECK_CONTAINS(err.msg, "ca.key is a symbolic link");
	rm_tree(home);
}

AB_TEST(ca_cert_of_another_key_is_refused)
{
	char home[64], dir[96], home2[64], dir2[96], p[PATH_MAX], q[PATH_MAX];
	temp_home(home, sizeof(home), dir, sizeof(dir));
	temp_home(home2, sizeof(home2), dir2, sizeof(dir2));
	ab_error err = {0};
	CHECK_EQ_INT(eg_ca_ensure(dir, &err), 0);
	CHECK_EQ_INT(eg_ca_ensure(dir2, &err), 0);
	snprintf(p, sizeof(p), "%s/ca.pem", dir2);
	snprintf(q, sizeof(q), "%s/ca.pem", dir);
	CHECK(rename(p, q) == 0);
	CHECK_EQ_INT(eg_ca_ensure(dir, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "does not match");
	rm_tree(home);
	rm_tree(home2);
}

AB_TEST(ca_cert_without_its_key_is_refused_and_a_key_gets_a_cert)
{
	char home[64], dir[96], p[PATH_MAX];
	temp_home(home, sizeof(home), dir, sizeof(dir));
	ab_error err = {0};
	CHECK_EQ_INT(eg_ca_ensure(dir, &err), 0);
	/* A key whose certificate was lost (a crash between the two writes)
	 * gets a certificate; the key is kept. */
	snprintf(p, sizeof(p), "%s/ca.key", dir);
	char *key1 = slurp(p, NULL);
	snprintf(p, sizeof(p), "%s/ca.pem", dir);
	CHECK(unlink(p) == 0);
	CHECK_EQ_INT(eg_ca_ensure(dir, &err), 0);
	CHECK(access(p, R_OK) == 0);
	snprintf(p, sizeof(p), "%s/ca.key", dir);
	char *key2 = slurp(p, NULL);
	CHECK_STR(key1, key2);
	CHECK_EQ_INT(eg_ca_ensure(dir, &err), 0); /* and they match */
	/* A certificate without its key is not silently replaced. */
	CHECK(unlink(p) == 0);
	CHECK_EQ_INT(eg_ca_ensure(dir, &err), -ENOENT);
	CHECK_CONTAINS(err.msg, "ca.key does not");
	free(key1);
	free(key2);
	rm_tree(home);
}

AB_TEST(ca_garbage_key_is_an_error_not_a_crash)
{
	char home[64], dir[96], p[PATH_MAX];
	temp_home(home, sizeof(home), dir, sizeof(dir));
	ab_error err = {0};
	CHECK_EQ_INT(eg_ca_ensure(dir, &err), 0);
	snprintf(p, sizeof(p), "%s/ca.key", dir);
	int fd = open(p, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0);
	CHECK(write(fd, "not a key\n", 10) == 10);
	close(fd);
	CHECK(eg_ca_ensure(dir, &err) < 0);
	CHECK_CONTAINS(err.msg, "ca.key is not a PEM private key");
	rm_tree(home);
}

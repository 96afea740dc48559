/* hash.c - the salted hash findings are recorded by (docs/dlp.md): the
 * same value gives the same hash under one salt, so two records can be
 * seen to name one secret, and without the salt no guess can be checked
 * against it. The egress sidecar and the audit redactor share it. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "dlp_internal.h"

long dlp_salt_parse(const char *hex, unsigned char *out, size_t cap)
{
	size_t n = hex ? strlen(hex) : 0;
	if (n < 32 || n % 2 || n / 2 > cap)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		/* Lower case only: the one way a salt is written. */
		unsigned char a = (unsigned char)hex[2 * i], b = (unsigned char)hex[2 * i + 1];
		int hi = dlp_hexval(a), lo = dlp_hexval(b);
		if (hi < 0 || lo < 0 || isupper(a) || isupper(b))
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return (long)(n / 2);
}

void dlp_value_hash(const unsigned char *salt, size_t saltlen, const char *v, size_t n,
		    char out[DLP_HASH_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	HMAC(EVP_sha256(), salt, (int)saltlen, (const unsigned char *)v, n, md, &mdlen);
	int k = snprintf(out, DLP_HASH_LEN + 1, "hmac-sha256:");
	for (unsigned i = 0; i < 8 && i < mdlen; i++)
		k += snprintf(out + k, DLP_HASH_LEN + 1 - (size_t)k, "%02x", md[i]);
}

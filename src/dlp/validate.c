/* validate.c - checksums of the formats that have one. */
#include "dlp_internal.h"

bool dlp_luhn(const char *s, size_t n)
{
	(void)s;
	(void)n;
	return false;
}

bool dlp_iban(const char *s, size_t n)
{
	(void)s;
	(void)n;
	return false;
}

bool dlp_my_number(const char *s, size_t n)
{
	(void)s;
	(void)n;
	return false;
}

bool dlp_aba_routing(const char *s, size_t n)
{
	(void)s;
	(void)n;
	return false;
}

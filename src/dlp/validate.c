/* validate.c - checksums of the formats that have one. */
#include <string.h>

#include "dlp_internal.h"

bool dlp_luhn(const char *s, size_t n)
{
	unsigned sum = 0, count = 0;
	/* From the rightmost digit: every second digit is doubled. */
	for (size_t i = n; i-- > 0;) {
		unsigned char c = (unsigned char)s[i];
		if (c < '0' || c > '9')
			continue;
		unsigned d = (unsigned)(c - '0');
		if (count++ % 2 == 1) {
			d *= 2;
			if (d > 9)
				d -= 9;
		}
		sum += d;
	}
	return count > 0 && sum % 10 == 0;
}

/* The length of an IBAN in each country that issues them (the SWIFT IBAN
 * registry). A country missing here is refused: an unknown country with a
 * lucky mod-97 is more likely a coincidence than an account. */
static const struct {
	char cc[3];
	unsigned char len;
} iban_lengths[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22},
    {"BH", 22}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24}, {"DE", 22},
    {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18}, {"FO", 18}, {"FR", 27},
    {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28},
    {"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20},
    {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20}, {"LU", 20}, {"LV", 21}, {"MC", 27}, {"MD", 24},
    {"ME", 22}, {"MK", 19}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NL", 18}, {"NO", 15}, {"PK", 24},
    {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"SA", 24}, {"SC", 31},
    {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"ST", 25}, {"SV", 28}, {"TL", 23}, {"TN", 24},
    {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20},
};

#define IBAN_MAX 34

static char upper(char c)
{
	return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

bool dlp_iban(const char *s, size_t n)
{
	char v[IBAN_MAX];
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == ' ')
			continue;
		if (len == IBAN_MAX)
			return false;
		v[len++] = upper(s[i]);
	}
	if (len < 15)
		return false;
	size_t want = 0;
	for (size_t i = 0; i < sizeof(iban_lengths) / sizeof(iban_lengths[0]); i++)
		if (v[0] == iban_lengths[i].cc[0] && v[1] == iban_lengths[i].cc[1])
			want = iban_lengths[i].len;
	if (want != len || v[2] < '0' || v[2] > '9' || v[3] < '0' || v[3] > '9')
		return false;
	/* ISO 13616: the first four characters move to the end, letters
	 * count as 10..35, and the whole number mod 97 must be 1. */
	unsigned rem = 0;
	for (size_t k = 0; k < len; k++) {
		char c = v[(k + 4) % len];
		if (c >= '0' && c <= '9')
			rem = (rem * 10 + (unsigned)(c - '0')) % 97;
		else if (c >= 'A' && c <= 'Z')
			rem = (rem * 100 + (unsigned)(c - 'A' + 10)) % 97;
		else
			return false;
	}
	return rem == 1;
}

/* Collects exactly want digits of s into d, skipping spaces and hyphens;
 * false on any other byte or another count. */
static bool digits_of(const char *s, size_t n, unsigned *d, size_t want)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == ' ' || s[i] == '-')
			continue;
		if (s[i] < '0' || s[i] > '9' || k == want)
			return false;
		d[k++] = (unsigned)(s[i] - '0');
	}
	return k == want;
}

bool dlp_my_number(const char *s, size_t n)
{
	/* 総務省令第八十五号 第五条: P_n is the n-th of the first eleven
	 * digits counted from the right, Q_n = n + 1 for n <= 6 and n - 5
	 * for n >= 7; left to right that is 6 5 4 3 2 7 6 5 4 3 2. With
	 * r = sum mod 11, the check digit is 0 when r <= 1, else 11 - r. */
	static const unsigned weight[11] = {6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2};
	unsigned d[12], sum = 0;
	if (!digits_of(s, n, d, 12))
		return false;
	for (size_t i = 0; i < 11; i++)
		sum += d[i] * weight[i];
	unsigned r = sum % 11;
	return d[11] == (r <= 1 ? 0 : 11 - r);
}

bool dlp_aba_routing(const char *s, size_t n)
{
	unsigned d[9];
	if (!digits_of(s, n, d, 9))
		return false;
	unsigned sum = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8];
	return sum % 10 == 0;
}

/* context.c - what a detector asks about the bytes around a match. */
#include <ctype.h>
#include <math.h>
#include <string.h>

#include "dlp_internal.h"

static bool word_at(const char *d, size_t len, size_t i, const char *w, size_t wl)
{
	if (i + wl > len)
		return false;
	for (size_t k = 0; k < wl; k++) {
		unsigned char a = (unsigned char)d[i + k], b = (unsigned char)w[k];
		if (a < 0x80 && b < 0x80 ? tolower(a) != tolower(b) : a != b)
			return false;
	}
	return true;
}

static bool word_in(const dlp_hit *h, size_t from, size_t to, const char *const *words)
{
	for (const char *const *w = words; *w; w++) {
		size_t wl = strlen(*w);
		if (wl == 0 || to - from < wl)
			continue;
		for (size_t i = from; i + wl <= to; i++)
			if (word_at(h->data, to, i, *w, wl))
				return true;
	}
	return false;
}

bool dlp_word_before(const dlp_hit *h, size_t pos, size_t window, const char *const *words)
{
	if (pos > h->len)
		pos = h->len;
	size_t from = pos > window ? pos - window : 0;
	return word_in(h, from, pos, words);
}

bool dlp_word_after(const dlp_hit *h, size_t pos, size_t window, const char *const *words)
{
	if (pos > h->len)
		return false;
	size_t to = h->len - pos > window ? pos + window : h->len;
	return word_in(h, pos, to, words);
}

bool dlp_whole_token(const dlp_hit *h, size_t start, size_t end, const char *chars)
{
	if (start > 0 && h->data[start - 1] && strchr(chars, h->data[start - 1]))
		return false;
	if (end < h->len && h->data[end] && strchr(chars, h->data[end]))
		return false;
	return true;
}

int dlp_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

double dlp_entropy(const char *s, size_t n)
{
	if (n == 0)
		return 0;
	size_t count[256] = {0};
	for (size_t i = 0; i < n; i++)
		count[(unsigned char)s[i]]++;
	double e = 0;
	for (int c = 0; c < 256; c++)
		if (count[c]) {
			double p = (double)count[c] / (double)n;
			e -= p * log2(p);
		}
	return e;
}

static bool contains_ci(const char *s, size_t n, const char *w)
{
	size_t wl = strlen(w);
	for (size_t i = 0; i + wl <= n; i++)
		if (word_at(s, n, i, w, wl))
			return true;
	return false;
}

bool dlp_placeholder(const char *s, size_t n)
{
	static const char *const fillers[] = {
	    "EXAMPLE", "xxxxxx", "XXXXXX", "******", "your_", "your-", "yourapikey", "<", ">",
	    "${", "{{", "placeholder", "changeme", "redacted", "dummy", "0123456789",
	    "abcdefghij", "1234567890", NULL};
	if (n == 0)
		return true;
	for (const char *const *f = fillers; *f; f++)
		if (contains_ci(s, n, *f))
			return true;
	/* One character repeated over most of the value. */
	size_t count[256] = {0}, most = 0;
	for (size_t i = 0; i < n; i++)
		if (++count[(unsigned char)s[i]] > most)
			most = count[(unsigned char)s[i]];
	return n >= 8 && most * 2 > n;
}

long dlp_base64_decode(const char *s, size_t n, unsigned char *out, size_t outlen)
{
	unsigned acc = 0, bits = 0;
	size_t o = 0;
	while (n > 0 && s[n - 1] == '=')
		n--;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int v = c >= 'A' && c <= 'Z'   ? c - 'A'
			: c >= 'a' && c <= 'z' ? c - 'a' + 26
			: c >= '0' && c <= '9' ? c - '0' + 52
			: c == '+' || c == '-' ? 62
			: c == '/' || c == '_' ? 63
					       : -1;
		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= outlen)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	return (long)o;
}

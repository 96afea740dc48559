/* utf8.c - sandbox output to JSON text. Output is arbitrary bytes; JSON
 * strings must be valid UTF-8, so invalid sequences become U+FFFD and a
 * sequence split across two reads is carried over instead of mangled. */
#include <string.h>

#include "internal.h"
#include "utf8.h"

int ab__utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
	unsigned char c = p[0];
	int len;
	uint32_t min;
	if (c < 0x80) {
		if (cp)
			*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, min = 0x10000;
	else
		return -1;
	uint32_t v = c & (0x7f >> len);
	for (int i = 1; i < len; i++) {
		if ((size_t)i >= n)
			return 0;
		if ((p[i] & 0xc0) != 0x80)
			return -1;
		v = (v << 6) | (p[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return -1;
	if (cp)
		*cp = v;
	return len;
}

json_t *ab__utf8_chunk(const char *data, size_t len, char carry[4], size_t *ncarry, bool final)
{
	size_t total = *ncarry + len;
	unsigned char *in = malloc(total ? total : 1);
	/* Worst case every byte becomes a 3-byte U+FFFD. */
	char *out = malloc(total * 3 + 1);
	if (!in || !out) {
		free(in);
		free(out);
		return NULL;
	}
	if (*ncarry)
		memcpy(in, carry, *ncarry);
	if (len)
		memcpy(in + *ncarry, data, len);
	*ncarry = 0;
	size_t i = 0, o = 0;
	while (i < total) {
		int l = ab__utf8_decode(in + i, total - i, NULL);
		if (l > 0) {
			memcpy(out + o, in + i, (size_t)l);
			o += (size_t)l;
			i += (size_t)l;
		} else if (l == 0 && !final) {
			*ncarry = total - i;
			memcpy(carry, in + i, *ncarry);
			break;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	json_t *s = json_stringn(out, o);
	free(in);
	free(out);
	return s;
}

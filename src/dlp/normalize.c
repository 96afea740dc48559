/* normalize.c - the normalised view (docs/dlp.md, "Normalisation").
 *
 * One pass over the bytes, unit by unit: a run of plain ASCII is copied as
 * it is; a UTF-8 character, an HTML character reference or a JSON escape
 * is one unit, replaced by what it means for matching (its NFKC form for
 * the characters that matter, nothing for an invisible character). Every
 * output byte of a unit maps to the unit's first byte. Nothing is
 * allocated until the first unit that changes: most views have none. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dlp_internal.h"

void dlp_buf_free(dlp_buf *b)
{
	free(b->data);
	free(b->map);
	b->data = NULL;
	b->map = NULL;
	b->len = 0;
}

#define F_NFKC (1u << DLP_DEC_NFKC)
#define F_INVISIBLE (1u << DLP_DEC_INVISIBLE)
#define F_HTML (1u << DLP_DEC_HTML)
#define F_JSON (1u << DLP_DEC_JSON)

/* What one unit of the input becomes. flags is 0 when it stays as it is
 * (then out is unused and the input bytes are copied). */
struct unit {
	size_t n;	      /* input bytes consumed */
	unsigned char out[8]; /* replacement, nout bytes */
	unsigned nout;
	unsigned flags; /* 1 << decoder for each decoder that changed it */
	bool hyphen;	/* a hyphen-like character: '-' between digits */
};

static bool special(unsigned char c)
{
	return c >= 0x80 || c == '&' || c == '\\';
}

/* The first byte at or after i that may start a unit other than plain
 * ASCII: eight bytes at a time, as memchr does. */
static size_t skip_plain(const unsigned char *p, size_t i, size_t len)
{
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	const uint64_t amp = ones * '&', bsl = ones * '\\';
	while (len - i >= 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		uint64_t a = w ^ amp, b = w ^ bsl;
		if ((w | ((a - ones) & ~a) | ((b - ones) & ~b)) & highs)
			break;
		i += 8;
	}
	while (i < len && !special(p[i]))
		i++;
	return i;
}

/* A well-formed UTF-8 sequence at p (no overlong forms, no surrogates):
 * its length, or 0. */
static size_t utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
	unsigned char c = p[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c < 0xC2 || c > 0xF4)
		return 0;
	if (c < 0xE0) {
		if (n < 2 || (p[1] & 0xC0) != 0x80)
			return 0;
		*cp = ((uint32_t)(c & 0x1F) << 6) | (p[1] & 0x3F);
		return 2;
	}
	if (c < 0xF0) {
		if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
			return 0;
		uint32_t v =
		    ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
		if (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF))
			return 0;
		*cp = v;
		return 3;
	}
	if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
		return 0;
	uint32_t v = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) |
		     ((uint32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
	if (v < 0x10000 || v > 0x10FFFF)
		return 0;
	*cp = v;
	return 4;
}

static unsigned utf8_encode(uint32_t cp, unsigned char *o)
{
	if (cp < 0x80) {
		o[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (unsigned char)(0xC0 | (cp >> 6));
		o[1] = (unsigned char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (unsigned char)(0xE0 | (cp >> 12));
		o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (unsigned char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (unsigned char)(0xF0 | (cp >> 18));
	o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (unsigned char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Half-width katakana U+FF61..FF9F and their full-width (NFKC) forms. */
static const uint16_t halfwidth_kana[] = {
    0x3002, 0x300C, 0x300D, 0x3001, 0x30FB, 0x30F2, 0x30A1, 0x30A3, 0x30A5, 0x30A7, 0x30A9,
    0x30E3, 0x30E5, 0x30E7, 0x30C3, 0x30FC, 0x30A2, 0x30A4, 0x30A6, 0x30A8, 0x30AA, 0x30AB,
    0x30AD, 0x30AF, 0x30B1, 0x30B3, 0x30B5, 0x30B7, 0x30B9, 0x30BB, 0x30BD, 0x30BF, 0x30C1,
    0x30C4, 0x30C6, 0x30C8, 0x30CA, 0x30CB, 0x30CC, 0x30CD, 0x30CE, 0x30CF, 0x30D2, 0x30D5,
    0x30D8, 0x30DB, 0x30DE, 0x30DF, 0x30E0, 0x30E1, 0x30E2, 0x30E4, 0x30E6, 0x30E8, 0x30E9,
    0x30EA, 0x30EB, 0x30EC, 0x30ED, 0x30EF, 0x30F3, 0x3099, 0x309A};

static bool hyphen_like(uint32_t cp)
{
	return (cp >= 0x2010 && cp <= 0x2015) || cp == 0x2212 || cp == 0x30FC || cp == 0xFF70;
}

static bool invisible(uint32_t cp)
{
	return (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x202A && cp <= 0x202E) ||
	       (cp >= 0x2060 && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0xFEFF ||
	       cp == 0x00AD || cp == 0x180E || cp == 0xE0001 || cp == 0xE007F;
}

/* What code point cp becomes: its replacement in out and the decoders
 * that changed it, or 0 when it stays. */
static unsigned map_cp(uint32_t cp, unsigned char *out, unsigned *nout)
{
	*nout = 0;
	if (cp < 0xA0)
		return 0;
	if (invisible(cp))
		return F_INVISIBLE;
	/* Tag characters spell ASCII invisibly ("ASCII smuggling"): they are
	 * shown as the letters they stand for. */
	if (cp >= 0xE0020 && cp <= 0xE007E) {
		out[(*nout)++] = (unsigned char)(cp - 0xE0000);
		return F_INVISIBLE;
	}
	if (cp >= 0xFF01 && cp <= 0xFF5E) {
		out[(*nout)++] = (unsigned char)(cp - 0xFEE0);
		return F_NFKC;
	}
	if (cp == 0x3000 || cp == 0x00A0 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x202F ||
	    cp == 0x205F) {
		out[(*nout)++] = ' ';
		return F_NFKC;
	}
	if (cp >= 0xFF61 && cp <= 0xFF9F) {
		*nout = utf8_encode(halfwidth_kana[cp - 0xFF61], out);
		return F_NFKC;
	}
	if (cp >= 0x2460 && cp <= 0x2473) { /* circled 1..20 */
		unsigned v = cp - 0x2460 + 1;
		if (v >= 10)
			out[(*nout)++] = (unsigned char)('0' + v / 10);
		out[(*nout)++] = (unsigned char)('0' + v % 10);
		return F_NFKC;
	}
	if (cp == 0x24EA) {
		out[(*nout)++] = '0';
		return F_NFKC;
	}
	if (cp >= 0x24B6 && cp <= 0x24E9) { /* circled letters */
		unsigned v = cp - 0x24B6;
		out[(*nout)++] = (unsigned char)(v < 26 ? 'A' + v : 'a' + v - 26);
		return F_NFKC;
	}
	if (cp >= 0x1D400 && cp <= 0x1D6A3) { /* mathematical letters */
		unsigned v = (cp - 0x1D400) % 52;
		out[(*nout)++] = (unsigned char)(v < 26 ? 'A' + v : 'a' + v - 26);
		return F_NFKC;
	}
	if (cp >= 0x1D7CE && cp <= 0x1D7FF) { /* mathematical digits */
		out[(*nout)++] = (unsigned char)('0' + (cp - 0x1D7CE) % 10);
		return F_NFKC;
	}
	return 0;
}

/* The voiced (dakuten, d = 1) or semi-voiced (handakuten, d = 2) form of
 * a full-width katakana, or 0 if it has none. */
static uint32_t voiced_kana(uint32_t k, unsigned d)
{
	if (d == 2)
		return k >= 0x30CF && k <= 0x30DB && (k - 0x30CF) % 3 == 0 ? k + 2 : 0;
	if ((k >= 0x30AB && k <= 0x30C1 && (k & 1)) || k == 0x30C4 || k == 0x30C6 || k == 0x30C8)
		return k + 1;
	if (k >= 0x30CF && k <= 0x30DB && (k - 0x30CF) % 3 == 0)
		return k + 1;
	if (k == 0x30A6)
		return 0x30F4;
	if (k == 0x30EF)
		return 0x30F7;
	if (k == 0x30F2)
		return 0x30FA;
	return 0;
}

static const struct entity {
	const char *name;
	uint32_t cp;
} entities[] = {
    {"amp", '&'},      {"lt", '<'},	   {"gt", '>'},
    {"quot", '"'},     {"apos", '\''},	   {"commat", '@'},
    {"period", '.'},   {"colon", ':'},	   {"sol", '/'},
    {"bsol", '\\'},    {"nbsp", 0xA0},	   {"hyphen", 0x2010},
    {"dash", 0x2010},  {"ndash", 0x2013},  {"mdash", 0x2014},
    {"minus", 0x2212}, {"lowbar", '_'},	   {"equals", '='},
    {"plus", '+'},     {"num", '#'},	   {"dollar", '$'},
    {"percnt", '%'},   {"excl", '!'},	   {"quest", '?'},
    {"lpar", '('},     {"rpar", ')'},	   {"ast", '*'},
    {"midast", '*'},   {"comma", ','},	   {"semi", ';'},
    {"verbar", '|'},   {"vert", '|'},	   {"lbrack", '['},
    {"lsqb", '['},     {"rbrack", ']'},	   {"rsqb", ']'},
    {"lcub", '{'},     {"rcub", '}'},	   {"grave", '`'},
    {"Hat", '^'},      {"Tab", '\t'},	   {"NewLine", '\n'},
    {"shy", 0xAD},     {"zwj", 0x200D},	   {"zwnj", 0x200C},
    {"lrm", 0x200E},   {"rlm", 0x200F},	   {"ensp", 0x2002},
    {"emsp", 0x2003},  {"thinsp", 0x2009}, {"ZeroWidthSpace", 0x200B},
};

/* An HTML character reference at p[0] == '&': its length and code point,
 * or 0. Numeric references may omit the ';' (browsers accept that); named
 * ones need it. */
static size_t html_ref(const unsigned char *p, size_t n, uint32_t *cp)
{
	size_t i = 1;
	if (n > 2 && p[1] == '#') {
		bool hex = p[2] == 'x' || p[2] == 'X';
		i = hex ? 3 : 2;
		size_t first = i;
		uint32_t v = 0;
		for (; i < n && i - first < 10; i++) {
			int d = hex ? dlp_hexval(p[i]) : (p[i] >= '0' && p[i] <= '9' ? p[i] - '0' : -1);
			if (d < 0)
				break;
			v = v * (hex ? 16 : 10) + (uint32_t)d;
			if (v > 0x10FFFF)
				return 0;
		}
		if (i == first || v == 0 || (v >= 0xD800 && v <= 0xDFFF))
			return 0;
		if (i < n && (dlp_hexval(p[i]) >= 0 && (hex || (p[i] >= '0' && p[i] <= '9'))))
			return 0; /* too many digits */
		if (i < n && p[i] == ';')
			i++;
		*cp = v;
		return i;
	}
	while (i < n && i <= 15 && ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'z'))
		i++;
	if (i == 1 || i >= n || p[i] != ';')
		return 0;
	for (size_t k = 0; k < sizeof(entities) / sizeof(entities[0]); k++)
		if (strlen(entities[k].name) == i - 1 && !memcmp(entities[k].name, p + 1, i - 1)) {
			*cp = entities[k].cp;
			return i + 1;
		}
	return 0;
}

static int hex4(const unsigned char *p)
{
	int v = 0;
	for (int k = 0; k < 4; k++) {
		int d = dlp_hexval(p[k]);
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

/* A JSON escape at p[0] == '\\' that reads as itself once decoded:
 * \uXXXX (a surrogate pair as one unit), \/, \" and \\. Its length, or 0. */
static size_t json_escape(const unsigned char *p, size_t n, uint32_t *cp)
{
	if (n < 2)
		return 0;
	if (p[1] == '/' || p[1] == '"' || p[1] == '\\') {
		*cp = p[1];
		return 2;
	}
	if (p[1] != 'u' || n < 6)
		return 0;
	int v = hex4(p + 2);
	if (v < 0)
		return 0;
	if (v >= 0xD800 && v <= 0xDBFF) {
		if (n < 12 || p[6] != '\\' || p[7] != 'u')
			return 0;
		int lo = hex4(p + 8);
		if (lo < 0xDC00 || lo > 0xDFFF)
			return 0;
		*cp = 0x10000 + (((uint32_t)v - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
		return 12;
	}
	if (v == 0 || (v >= 0xDC00 && v <= 0xDFFF))
		return 0;
	*cp = (uint32_t)v;
	return 6;
}

/* A code point that an escape spelt: what matching sees of it. */
static void escaped_cp(struct unit *u, uint32_t cp, unsigned how)
{
	u->flags = how | map_cp(cp, u->out, &u->nout);
	if (u->flags == how)
		u->nout = utf8_encode(cp, u->out);
	u->hyphen = hyphen_like(cp);
}

/* The unit that starts at p[i] (a special byte, or any byte when peeking). */
static void unit_at(const unsigned char *p, size_t len, size_t i, struct unit *u)
{
	uint32_t cp;
	size_t k;
	u->n = 1;
	u->nout = 0;
	u->flags = 0;
	u->hyphen = false;
	if (p[i] == '&') {
		if ((k = html_ref(p + i, len - i, &cp))) {
			u->n = k;
			escaped_cp(u, cp, F_HTML);
		}
		return;
	}
	if (p[i] == '\\') {
		if ((k = json_escape(p + i, len - i, &cp))) {
			u->n = k;
			escaped_cp(u, cp, F_JSON);
		}
		return;
	}
	if (p[i] < 0x80 || !(k = utf8_decode(p + i, len - i, &cp)))
		return;
	u->n = k;
	u->hyphen = hyphen_like(cp);
	u->flags = map_cp(cp, u->out, &u->nout);
	/* A half-width kana and the half-width (semi-)voiced mark after it
	 * make one full-width character, as NFKC composes them. */
	if (cp >= 0xFF66 && cp <= 0xFF9D && len - i >= 6 && p[i + 3] == 0xEF && p[i + 4] == 0xBE &&
	    (p[i + 5] == 0x9E || p[i + 5] == 0x9F)) {
		uint32_t v = voiced_kana(halfwidth_kana[cp - 0xFF61], p[i + 5] == 0x9E ? 1 : 2);
		if (v) {
			u->nout = utf8_encode(v, u->out);
			u->n = 6;
		}
	}
}

/* Whether the first character that the units from j produce is a digit
 * (invisible units skipped, a few at most). */
static bool digit_next(const unsigned char *p, size_t len, size_t j)
{
	for (int tries = 0; tries < 8 && j < len; tries++) {
		struct unit u;
		unit_at(p, len, j, &u);
		if (!u.flags)
			return p[j] >= '0' && p[j] <= '9';
		if (u.nout)
			return u.out[0] >= '0' && u.out[0] <= '9';
		j += u.n;
	}
	return false;
}

struct outbuf {
	char *data;
	uint32_t *map;
	size_t len, cap;
};

static int out_reserve(struct outbuf *o, size_t more)
{
	if (o->len + more <= o->cap)
		return 0;
	size_t cap = o->cap * 2 > o->len + more ? o->cap * 2 : o->len + more;
	char *d = realloc(o->data, cap);
	if (!d)
		return -ENOMEM;
	o->data = d;
	uint32_t *m = realloc(o->map, (cap + 1) * sizeof(uint32_t));
	if (!m)
		return -ENOMEM;
	o->map = m;
	o->cap = cap;
	return 0;
}

static void out_copy(struct outbuf *o, const unsigned char *p, size_t from, size_t n)
{
	memcpy(o->data + o->len, p + from, n);
	for (size_t k = 0; k < n; k++)
		o->map[o->len + k] = (uint32_t)(from + k);
	o->len += n;
}

/* The pass: with out, builds the view from the first change on (returns 1
 * if there was one); without, only collects the flags. */
static int normalize(const unsigned char *p, size_t len, struct outbuf *out, unsigned *flags)
{
	int last = -1; /* the last byte of the view so far */
	size_t i = 0;
	bool changed = false;
	*flags = 0;
	while (i < len) {
		size_t j = skip_plain(p, i, len);
		if (j > i) {
			if (changed)
				out_copy(out, p, i, j - i);
			last = p[j - 1];
			i = j;
			continue;
		}
		struct unit u;
		unit_at(p, len, i, &u);
		if (u.hyphen && last >= '0' && last <= '9' && digit_next(p, len, i + u.n)) {
			u.out[0] = '-';
			u.nout = 1;
			u.flags |= F_NFKC;
		}
		if (u.flags && !changed && out) {
			/* The output never outgrows the input (each unit's
			 * replacement is at most its length); the reserve
			 * checks anyway. */
			if (out_reserve(out, len) < 0)
				return -ENOMEM;
			out_copy(out, p, 0, i);
			changed = true;
		}
		*flags |= u.flags;
		if (!u.flags) {
			if (changed) {
				if (out_reserve(out, u.n) < 0)
					return -ENOMEM;
				out_copy(out, p, i, u.n);
			}
			last = p[i + u.n - 1];
		} else if (u.nout) {
			if (changed) {
				if (out_reserve(out, u.nout) < 0)
					return -ENOMEM;
				memcpy(out->data + out->len, u.out, u.nout);
				for (unsigned k = 0; k < u.nout; k++)
					out->map[out->len + k] = (uint32_t)i;
				out->len += u.nout;
			}
			last = u.out[u.nout - 1];
		}
		i += u.n;
	}
	if (changed)
		out->map[out->len] = (uint32_t)len;
	return changed;
}

int dlp_normalize(const char *data, size_t len, dlp_buf *out)
{
	struct outbuf o = {0};
	unsigned flags;
	int r = normalize((const unsigned char *)data, len, &o, &flags);
	if (r <= 0) {
		free(o.data);
		free(o.map);
		return r;
	}
	out->data = o.data;
	out->map = o.map;
	out->len = o.len;
	return 1;
}

unsigned dlp_normalize_explain(const char *data, size_t len)
{
	unsigned flags;
	normalize((const unsigned char *)data, len, NULL, &flags);
	return flags;
}

/* detect_pii.c - the detectors of personal data (docs/dlp.md, "Detectors").
 *
 * Each detector pairs cheap Hyperscan patterns with a confirmer. Where the
 * value has a distinctive shape (a card number, an e-mail address, a phone
 * number) the pattern is that shape, bounded so that one value ends in one
 * place and so gives one hit; where the value alone is vague (a name, a
 * date, a licence number) the pattern is anchored on the label before it
 * and the confirmer reads the value that follows. Confirmers check
 * boundaries, checksums and plausibility, narrow the span to the value and
 * weigh the words around it: a label (hotword) raises the confidence, a
 * counter-word (order, invoice, version) lowers it, as Google's and
 * Microsoft's Japanese detectors do.
 *
 * Confidence levels: a checksum and a label 0.95; a checksum or an
 * unmistakable shape 0.85; a shape and a label 0.8; anything weaker stays
 * below DLP_DEFAULT_MIN_CONFIDENCE and is dropped by default.
 *
 * Full-width digits and hyphens reach these patterns as ASCII (the
 * normaliser's view), so only ASCII digits and '-' are matched; Japanese
 * labels are matched as their UTF-8 bytes. */
#include <string.h>

#include "dlp_internal.h"

#define CONF_CHECKSUM_LABEL 0.95f
#define CONF_CHECKSUM 0.85f
#define CONF_SHAPE_LABEL 0.8f
#define CONF_WEAK 0.4f
#define CONF_DUBIOUS 0.3f

/* How far before and after a value its label may be, in bytes (a Japanese
 * character is three). */
#define LABEL_BEFORE 48
#define LABEL_AFTER 24

static const char word_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_";
static const char alnum_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/* ---- Byte helpers ----------------------------------------------------- */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_upper(char c)
{
	return c >= 'A' && c <= 'Z';
}

static bool is_lower(char c)
{
	return c >= 'a' && c <= 'z';
}

static bool is_alpha(char c)
{
	return is_upper(c) || is_lower(c);
}

/* Whether c is one of set (never the NUL that ends set). */
static bool in_set(char c, const char *set)
{
	return c != '\0' && strchr(set, c) != NULL;
}

static char byte_at(const dlp_hit *h, size_t i)
{
	return i < h->len ? h->data[i] : '\0';
}

/* Parses up to maxd digits at *i; the value, or -1 if there is no digit. */
static long read_number(const dlp_hit *h, size_t *i, size_t maxd)
{
	long v = 0;
	size_t k = 0;
	while (*i < h->len && is_digit(h->data[*i]) && k < maxd) {
		v = v * 10 + (h->data[*i] - '0');
		(*i)++;
		k++;
	}
	if (k == 0 || (*i < h->len && is_digit(h->data[*i])))
		return -1;
	return v;
}

/* Whether [start, end) is part of a longer run of numbers: a digit right
 * next to it, or a digit behind one separator (from seps) next to it. A
 * card number inside "1234-4912..." or a version "1.2.3" fails this. */
static bool in_number_run(const dlp_hit *h, size_t start, size_t end, const char *seps)
{
	if (start > 0 && is_digit(h->data[start - 1]))
		return true;
	if (start > 1 && in_set(h->data[start - 1], seps) && is_digit(h->data[start - 2]))
		return true;
	if (end < h->len && is_digit(h->data[end]))
		return true;
	if (end + 1 < h->len && in_set(h->data[end], seps) && is_digit(h->data[end + 1]))
		return true;
	return false;
}

/* The same byte is used between every group (no "4912 3456-7890 1230"). */
static bool consistent_separators(const char *s, size_t n)
{
	char sep = 0;
	for (size_t i = 0; i < n; i++) {
		if (is_digit(s[i]))
			continue;
		if (sep && s[i] != sep)
			return false;
		sep = s[i];
	}
	return true;
}

/* One digit repeated (0000 0000 0000) is a filler, not a number. */
static bool one_digit_repeated(const char *s, size_t n)
{
	char first = 0;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			continue;
		if (first && s[i] != first)
			return false;
		first = s[i];
	}
	return true;
}

/* How many bytes before pos a hotword may be: at most max, and no further
 * back than the start of the previous line (a form puts its label on the
 * line above the value; a label two lines up belongs to another value). */
static size_t window_before(const dlp_hit *h, size_t pos, size_t max, int lines)
{
	size_t i = pos;
	while (i > 0 && pos - i < max) {
		if (h->data[i - 1] == '\n' && lines-- == 0)
			break;
		i--;
	}
	return pos - i;
}

/* The same after pos, on the value's own line. */
static size_t window_after(const dlp_hit *h, size_t pos, size_t max)
{
	size_t i = pos;
	while (i < h->len && i - pos < max && h->data[i] != '\n')
		i++;
	return i - pos;
}

/* A label for the value at [start, end): before it (this line or the one
 * above), or after it on its line. */
static bool near(const dlp_hit *h, size_t start, size_t end, size_t before, size_t after,
		 const char *const *words)
{
	return dlp_word_before(h, start, window_before(h, start, before, 1), words) ||
	       dlp_word_after(h, end, window_after(h, end, after), words);
}

/* A counter-word before pos on the value's own line. */
static bool counter_before(const dlp_hit *h, size_t pos, size_t max, const char *const *words)
{
	return dlp_word_before(h, pos, window_before(h, pos, max, 0), words);
}

/* Decodes the UTF-8 character at data[i] (its length in *n); -1 when the
 * bytes there are not one. */
static long utf8_at(const dlp_hit *h, size_t i, size_t *n)
{
	const unsigned char *d = (const unsigned char *)h->data;
	if (i >= h->len)
		return -1;
	if (d[i] < 0x80) {
		*n = 1;
		return d[i];
	}
	size_t k = d[i] >= 0xf0 ? 4 : d[i] >= 0xe0 ? 3 : d[i] >= 0xc0 ? 2 : 0;
	if (k == 0 || i + k > h->len)
		return -1;
	long cp = d[i] & (0x7f >> k);
	for (size_t j = 1; j < k; j++) {
		if ((d[i + j] & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (d[i + j] & 0x3f);
	}
	*n = k;
	return cp;
}

static bool is_kanji(long cp)
{
	return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) ||
	       (cp >= 0xf900 && cp <= 0xfaff) || cp == 0x3005 /* 々 */;
}

static bool is_katakana(long cp)
{
	/* Letters, the middle dot of foreign names and the long-vowel mark. */
	return cp >= 0x30a1 && cp <= 0x30fc;
}

static bool is_hiragana(long cp)
{
	return cp >= 0x3041 && cp <= 0x3096;
}

/* Whether the literal lit (UTF-8) is at data[i]. */
static bool lit_at(const dlp_hit *h, size_t i, const char *lit)
{
	size_t n = strlen(lit);
	return i + n <= h->len && memcmp(h->data + i, lit, n) == 0;
}

/* Skips what may stand between a label and its value: blanks, colons,
 * closing brackets, '|', '=', quotes, the ideographic space and は; at most
 * max bytes. Returns the new position. */
static size_t skip_label_gap(const dlp_hit *h, size_t i, size_t max)
{
	static const char *const gaps[] = {"：", "　", "）", "は", "」", "＝", NULL};
	size_t limit = i + max;
	while (i < h->len && i < limit) {
		char c = h->data[i];
		if (c == ' ' || c == '\t' || c == ':' || c == ')' || c == '|' || c == '=' ||
		    c == '"' || c == '\'' || c == ',') {
			i++;
			continue;
		}
		bool moved = false;
		for (const char *const *g = gaps; *g; g++)
			if (lit_at(h, i, *g)) {
				i += strlen(*g);
				moved = true;
				break;
			}
		if (!moved)
			break;
	}
	return i;
}

/* Where the run of digits that ends at end begins (not before the hit):
 * the value of a label-anchored pattern that ends in digits. */
static size_t trailing_digits_start(const dlp_hit *h, size_t end)
{
	size_t s = end;
	while (s > h->start && is_digit(h->data[s - 1]))
		s--;
	return s;
}

/* ---- credit_card ------------------------------------------------------ */

static const dlp_pattern card_patterns[] = {
    {"\\b\\d{13,19}\\b", DLP_RE_TOKEN},
    /* 4-4-4-4, and 4-4-4-4-3 for 19 digits. */
    {"\\b\\d{4}[ \\-]\\d{4}[ \\-]\\d{4}[ \\-]\\d{4}([ \\-]\\d{3})?\\b", DLP_RE_TOKEN},
    /* Amex 4-6-5 and Diners 4-6-4. */
    {"\\b3\\d{3}[ \\-]\\d{6}[ \\-]\\d{4,5}\\b", DLP_RE_TOKEN},
};

static bool prefix_in(unsigned p, unsigned lo, unsigned hi)
{
	return p >= lo && p <= hi;
}

/* Whether the first digits and the length are those of a card brand. */
static bool known_iin(const char *d, size_t n)
{
	unsigned p2 = (unsigned)(d[0] - '0') * 10 + (unsigned)(d[1] - '0');
	unsigned p3 = p2 * 10 + (unsigned)(d[2] - '0');
	unsigned p4 = p3 * 10 + (unsigned)(d[3] - '0');
	if (d[0] == '4') /* Visa */
		return n == 13 || n == 16 || n == 19;
	if (prefix_in(p2, 51, 55) || prefix_in(p4, 2221, 2720)) /* Mastercard */
		return n == 16;
	if (p2 == 34 || p2 == 37) /* American Express */
		return n == 15;
	if (prefix_in(p4, 3528, 3589)) /* JCB */
		return n >= 16 && n <= 19;
	if (p2 == 36 || p2 == 38 || prefix_in(p3, 300, 305)) /* Diners Club */
		return n >= 14 && n <= 19;
	if (p4 == 6011 || p2 == 65 || prefix_in(p3, 644, 649)) /* Discover */
		return n >= 16 && n <= 19;
	if (p2 == 62) /* UnionPay */
		return n >= 16 && n <= 19;
	return false;
}

/* Whether the digits of a length of at least min start at i (or end just
 * before i, backwards). */
static bool digit_run_at(const dlp_hit *h, size_t i, bool backwards, size_t min)
{
	size_t k = 0;
	if (backwards)
		while (i > 0 && is_digit(h->data[i - 1]) && k < min)
			i--, k++;
	else
		while (i < h->len && is_digit(h->data[i]) && k < min)
			i++, k++;
	return k >= min;
}

/* A card number inside a longer number: a digit next to it, a decimal
 * point, or another group of four or more digits one separator away. An
 * expiry date or a CVV after it ("4912 3456 7890 1230 12/29 123") is not
 * part of it. */
static bool in_card_run(const dlp_hit *h, size_t start, size_t end)
{
	if (digit_run_at(h, start, true, 1) || digit_run_at(h, end, false, 1))
		return true;
	if (start > 1 && h->data[start - 1] == '.' && is_digit(h->data[start - 2]))
		return true;
	if (end + 1 < h->len && h->data[end] == '.' && is_digit(h->data[end + 1]))
		return true;
	if (start > 0 && in_set(h->data[start - 1], " -") && digit_run_at(h, start - 1, true, 4))
		return true;
	return end < h->len && in_set(h->data[end], " -") && digit_run_at(h, end + 1, false, 4);
}

static const char *const card_labels[] = {"card",   "visa",	  "mastercard", "amex",
					  "jcb",    "cc#",	  "cc no",	"pan",
					  "カード", "クレジット", "決済",	NULL};
static const char *const order_words[] = {
    "order", "invoice", "tracking",   "shipment", "ticket",   "serial",	  "注文",     "伝票",
    "請求",  "追跡",	"問い合わせ", "お問合せ", "受付番号", "予約番号", "管理番号", NULL};

static bool confirm_credit_card(const dlp_hit *h, dlp_match *m)
{
	const char *s = h->data + h->start;
	size_t n = h->end - h->start;
	char d[19];
	size_t k = 0;
	if (in_card_run(h, h->start, h->end) || !consistent_separators(s, n))
		return false;
	for (size_t i = 0; i < n && k < sizeof(d); i++)
		if (is_digit(s[i]))
			d[k++] = s[i];
	if (k < 13 || !known_iin(d, k) || !dlp_luhn(s, n) || one_digit_repeated(s, n))
		return false;
	bool grouped = h->pattern != 0;
	bool label = near(h, h->start, h->end, LABEL_BEFORE, LABEL_AFTER, card_labels);
	if (label)
		m->confidence = CONF_CHECKSUM_LABEL;
	else if (!grouped && counter_before(h, h->start, LABEL_BEFORE, order_words))
		m->confidence = CONF_WEAK;
	else
		m->confidence = CONF_CHECKSUM;
	return true;
}

/* ---- iban ------------------------------------------------------------- */

static const dlp_pattern iban_patterns[] = {
    {"\\b[A-Z]{2}\\d{2}[A-Z0-9]{11,30}\\b", DLP_RE_TOKEN},
    /* Printed in groups of four; each end is tried, only the one of the
     * country's length passes the checksum. */
    {"\\b[A-Z]{2}\\d{2}( [A-Z0-9]{4}){2,7}( [A-Z0-9]{1,3})?\\b", DLP_RE_TOKEN},
};

static const char *const iban_labels[] = {"iban", "account", "konto", "compte", "bank",
					  "口座", "振込",    "送金",  NULL};

static bool confirm_iban(const dlp_hit *h, dlp_match *m)
{
	const char *s = h->data + h->start;
	size_t n = h->end - h->start;
	if (!dlp_iban(s, n))
		return false;
	m->confidence = near(h, h->start, h->end, LABEL_BEFORE, LABEL_AFTER, iban_labels)
			    ? CONF_CHECKSUM_LABEL
			    : CONF_CHECKSUM;
	return true;
}

/* ---- us_ssn ----------------------------------------------------------- */

static const dlp_pattern ssn_patterns[] = {
    {"\\b\\d{3}-\\d{2}-\\d{4}\\b", DLP_RE_TOKEN},
    /* Without hyphens only after a label. */
    {"\\b(ssn|ss#|social security( number| no\\.?| #)?)[^0-9\\n]{0,16}\\d{3} ?\\d{2} ?\\d{4}\\b",
     DLP_RE_CASELESS},
};

static const char *const ssn_labels[] = {"ssn", "ss#", "social security", "社会保障番号", NULL};

static bool confirm_us_ssn(const dlp_hit *h, dlp_match *m)
{
	size_t start = h->start;
	if (h->pattern == 1) {
		/* The value is the last nine digits (and the spaces among them). */
		start = h->end;
		for (size_t k = 0; k < 9; start--)
			k += is_digit(h->data[start - 1]);
	}
	const char *s = h->data + start;
	size_t n = h->end - start;
	unsigned d[9];
	size_t k = 0;
	for (size_t i = 0; i < n && k < 9; i++)
		if (is_digit(s[i]))
			d[k++] = (unsigned)(s[i] - '0');
	if (k != 9 || in_number_run(h, start, h->end, "-.") || one_digit_repeated(s, n))
		return false;
	unsigned area = d[0] * 100 + d[1] * 10 + d[2], group = d[3] * 10 + d[4];
	unsigned serial = d[5] * 1000 + d[6] * 100 + d[7] * 10 + d[8];
	if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0)
		return false;
	/* The numbers printed on sample cards and in every tutorial. */
	if (memcmp(d, (unsigned[]){1, 2, 3, 4, 5, 6, 7, 8, 9}, sizeof(d)) == 0 ||
	    memcmp(d, (unsigned[]){0, 7, 8, 0, 5, 1, 1, 2, 0}, sizeof(d)) == 0)
		return false;
	m->start = start;
	if (h->pattern == 1)
		m->confidence = CONF_SHAPE_LABEL;
	else if (near(h, start, h->end, LABEL_BEFORE, LABEL_AFTER, ssn_labels))
		m->confidence = 0.9f;
	else
		m->confidence = 0.6f;
	return true;
}

/* ---- email ------------------------------------------------------------ */

static const dlp_pattern email_patterns[] = {
    {"[A-Za-z0-9._%+\\-]+@[A-Za-z0-9\\-]+(\\.[A-Za-z0-9\\-]+)*\\.[A-Za-z]{2,24}\\b", 0},
};

static const char *const email_labels[] = {"mail", "メール", "連絡先", "アドレス", NULL};

static bool domain_is(const char *dom, size_t n, const char *want)
{
	size_t wl = strlen(want);
	if (n < wl)
		return false;
	/* The domain itself or a subdomain of it, ignoring ASCII case. */
	const char *tail = dom + n - wl;
	for (size_t i = 0; i < wl; i++) {
		char a = tail[i], b = want[i];
		if (is_upper(a))
			a = (char)(a - 'A' + 'a');
		if (a != b)
			return false;
	}
	return n == wl || tail[-1] == '.';
}

static bool confirm_email(const dlp_hit *h, dlp_match *m)
{
	const char *s = h->data + h->start;
	size_t n = h->end - h->start;
	const char *at = memchr(s, '@', n);
	if (!at)
		return false;
	size_t local = (size_t)(at - s), dom = n - local - 1;
	const char *d = at + 1;
	/* git@github.com:owner/repo is a remote, not a person. */
	if (local == 3 && memcmp(s, "git", 3) == 0)
		return false;
	/* scheme://user:password@host: the password and the host, not an
	 * address (database_url and url_basic_auth report the password). */
	if (h->start > 0 && h->data[h->start - 1] == ':') {
		size_t k = h->start - 1;
		while (k > 0 && h->data[k - 1] != '/' && h->data[k - 1] != ' ' &&
		       h->data[k - 1] != '\n' && h->start - k < 256)
			k--;
		if (k >= 3 && h->data[k - 1] == '/' && h->data[k - 2] == '/' && h->data[k - 3] == ':')
			return false;
	}
	if (local == 0 || local > 64 || dom > 253 || s[0] == '.' || s[local - 1] == '.')
		return false;
	for (size_t i = 1; i < local; i++)
		if (s[i] == '.' && s[i - 1] == '.')
			return false;
	/* The longest domain only: "a@b.co.jp" also ends after ".co". */
	if (h->end + 1 < h->len && (h->data[h->end] == '.' || h->data[h->end] == '-') &&
	    in_set(h->data[h->end + 1], alnum_chars))
		return false;
	if (h->end < h->len && h->data[h->end] == '@')
		return false;
	/* Labels of the domain: no leading or trailing hyphen. */
	for (size_t i = 0; i < dom; i++)
		if (d[i] == '-' && (i == 0 || d[i - 1] == '.' || i + 1 == dom || d[i + 1] == '.'))
			return false;
	/* An image named "icon@2x.png" is not an address. */
	static const char *const files[] = {"png",  "jpg", "jpeg", "gif", "svg",
					    "webp", "css", "js",   "ico", NULL};
	const char *tld = d + dom;
	while (tld > d && tld[-1] != '.')
		tld--;
	for (const char *const *f = files; *f; f++)
		if (domain_is(tld, (size_t)(d + dom - tld), *f))
			return false;
	static const char *const examples[] = {
	    "example.com", "example.org",	    "example.net", "example.jp", "example.co.jp",
	    "test.com",	   "localhost.localdomain", "domain.com",  "email.com",	 NULL};
	for (const char *const *e = examples; *e; e++)
		if (domain_is(d, dom, *e)) {
			m->confidence = CONF_DUBIOUS;
			return true;
		}
	m->confidence = near(h, h->start, h->end, LABEL_BEFORE, LABEL_AFTER, email_labels)
			    ? 0.9f
			    : CONF_CHECKSUM;
	return true;
}

/* ---- phone_number ----------------------------------------------------- */

enum {
	PHONE_JP_HYPHEN,
	PHONE_JP_PAREN,
	PHONE_JP_PLUS81,
	PHONE_US_PLUS1,
	PHONE_US_PAREN,
	PHONE_US_PLAIN,
	PHONE_E164,
	PHONE_E164_SPACED,
	PHONE_LABELLED,
};

static const dlp_pattern phone_patterns[] = {
    [PHONE_JP_HYPHEN] = {"\\b0\\d{1,4}-\\d{1,4}-\\d{3,4}\\b", DLP_RE_TOKEN},
    [PHONE_JP_PAREN] = {"\\b0\\d{1,4}\\(\\d{1,4}\\)\\d{4}\\b", DLP_RE_TOKEN},
    [PHONE_JP_PLUS81] = {"\\+81[ \\-]?(\\(0\\)|0)?\\d{1,4}[ \\-]\\d{1,4}[ \\-]\\d{4}\\b", 0},
    [PHONE_US_PLUS1] = {"\\+1[ \\-.]?(\\(\\d{3}\\)|\\d{3})[ \\-.]?\\d{3}[ \\-.]\\d{4}\\b", 0},
    [PHONE_US_PAREN] = {"\\(\\d{3}\\) ?\\d{3}-\\d{4}\\b", DLP_RE_TOKEN},
    [PHONE_US_PLAIN] = {"\\b[2-9]\\d{2}[\\-.][2-9]\\d{2}[\\-.]\\d{4}\\b", DLP_RE_TOKEN},
    [PHONE_E164] = {"\\+[1-9]\\d{7,14}\\b", DLP_RE_TOKEN},
    [PHONE_E164_SPACED] = {"\\+[1-9]\\d{0,2}( \\d{1,4}){2,5}\\b", 0},
    /* Bare digits only after a label. */
    [PHONE_LABELLED] = {"(電話|\\bTEL|\\bphone|携帯|連絡先)[^0-9\\n]{0,24}\\b0\\d{9,10}\\b",
			DLP_RE_CASELESS},
};

static const char *const phone_labels[] = {"電話",   "tel",  "phone", "携帯",	 "連絡先", "fax",
					   "mobile", "call", "cell",  "contact", NULL};
static const char *const phone_counter[] = {"version", "ver.", "isbn",	 "order", "invoice",
					    "注文",    "伝票", "serial", NULL};

/* The area code and subscriber digits of a Japanese number starting 0. */
static float jp_phone_confidence(const char *d, size_t k)
{
	if (k == 11 && memcmp(d, "0800", 4) == 0)
		return CONF_SHAPE_LABEL; /* toll free */
	if (k == 11 && d[2] == '0' && (d[1] == '7' || d[1] == '8' || d[1] == '9'))
		return CONF_CHECKSUM; /* a mobile: 070, 080, 090 */
	if (k == 11 && d[1] == '5' && d[2] == '0')
		return CONF_SHAPE_LABEL; /* 050: IP phones */
	if (k == 10 && memcmp(d, "0120", 4) == 0)
		return CONF_SHAPE_LABEL; /* toll free */
	if (k == 10 && d[1] != '0')
		return 0.7f; /* a landline: the area code and the number make ten */
	return 0;
}

static bool confirm_phone_number(const dlp_hit *h, dlp_match *m)
{
	size_t start = h->start, end = h->end;
	if (h->pattern == PHONE_LABELLED)
		start = trailing_digits_start(h, end);
	const char *s = h->data + start;
	size_t n = end - start;
	char d[20];
	size_t k = 0;
	for (size_t i = 0; i < n && k < sizeof(d); i++)
		if (is_digit(s[i]))
			d[k++] = s[i];
	if (in_number_run(h, start, end, " -.") || one_digit_repeated(s, n))
		return false;
	if (start > 0 && (h->data[start - 1] == '+' || h->data[start - 1] == '/'))
		return false;
	float c = 0;
	switch (h->pattern) {
	case PHONE_JP_HYPHEN:
	case PHONE_JP_PAREN:
	case PHONE_LABELLED:
		c = jp_phone_confidence(d, k);
		break;
	case PHONE_JP_PLUS81:
		/* +81 and the number without its leading 0: 9 or 10 digits. */
		c = k == 11 || k == 12 || (k == 13 && d[2] == '0') ? CONF_CHECKSUM : 0;
		break;
	case PHONE_US_PLUS1:
	case PHONE_US_PAREN:
		c = CONF_SHAPE_LABEL;
		break;
	case PHONE_US_PLAIN:
		c = CONF_WEAK;
		break;
	case PHONE_E164:
		c = d[0] == '8' && d[1] == '1' ? 0.7f : 0.6f;
		break;
	case PHONE_E164_SPACED:
		/* +81 and +1 are read by their own patterns. */
		if (d[0] == '1' || (d[0] == '8' && d[1] == '1') || k < 8 || k > 15)
			return false;
		c = 0.7f;
		break;
	}
	if (c == 0)
		return false;
	if (near(h, start, end, LABEL_BEFORE, LABEL_AFTER, phone_labels)) {
		c = c + 0.15f > 0.95f ? 0.95f : c + 0.15f;
		if (c < CONF_SHAPE_LABEL)
			c = CONF_SHAPE_LABEL;
	} else if (counter_before(h, start, LABEL_BEFORE, phone_counter))
		c -= 0.3f;
	m->start = start;
	m->confidence = c;
	return true;
}

/* ---- jp_my_number ----------------------------------------------------- */

static const dlp_pattern my_number_patterns[] = {
    {"\\b\\d{12}\\b", DLP_RE_TOKEN},
    {"\\b\\d{4}[ \\-]\\d{4}[ \\-]\\d{4}\\b", DLP_RE_TOKEN},
};

static const char *const my_number_labels[] = {
    "マイナンバー", "個人番号", "my number", "mynumber", "my_number", "individual number", NULL};
static const char *const my_number_counter[] = {
    "注文",	  "order", "invoice", "tracking", "伝票", "追跡",   "請求",
    "問い合わせ", "受付",  "予約",    "会員",	  "口座", "免許",   "license",
    "licence",	  "tel",   "電話",    "id:",	  "id ",  "serial", NULL};

static bool confirm_jp_my_number(const dlp_hit *h, dlp_match *m)
{
	const char *s = h->data + h->start;
	size_t n = h->end - h->start;
	if (in_number_run(h, h->start, h->end, " -.,/") || !consistent_separators(s, n) ||
	    !dlp_my_number(s, n) || one_digit_repeated(s, n))
		return false;
	bool label = near(h, h->start, h->end, LABEL_BEFORE, LABEL_AFTER, my_number_labels);
	bool counter = counter_before(h, h->start, 32, my_number_counter);
	/* A twelve-digit number with a lucky check digit (one in ten) is
	 * more often an order number: without the label it stays low. Of a
	 * label and a counter-word, the nearer one speaks: a counter-word on
	 * the value's line outweighs a label on the line above. */
	if (label && counter)
		label = counter_before(h, h->start, LABEL_BEFORE, my_number_labels) ||
			dlp_word_after(h, h->end, window_after(h, h->end, LABEL_AFTER),
				       my_number_labels);
	if (label)
		m->confidence = counter ? 0.6f : CONF_CHECKSUM_LABEL;
	else
		m->confidence = counter ? 0.2f : CONF_WEAK;
	return true;
}

/* ---- jp_postal_code --------------------------------------------------- */

static const dlp_pattern postal_patterns[] = {
    {"(〒|郵便番号)[ :\\t]*(：)?[ \\t]*\\d{3}-?\\d{4}\\b", 0},
    {"\\b\\d{3}-\\d{4}\\b", DLP_RE_TOKEN},
};

static const char *const prefectures[] = {
    "北海道", "青森県", "岩手県", "宮城県", "秋田県", "山形県",	  "福島県", "茨城県",
    "栃木県", "群馬県", "埼玉県", "千葉県", "東京都", "神奈川県", "新潟県", "富山県",
    "石川県", "福井県", "山梨県", "長野県", "岐阜県", "静岡県",	  "愛知県", "三重県",
    "滋賀県", "京都府", "大阪府", "兵庫県", "奈良県", "和歌山県", "鳥取県", "島根県",
    "岡山県", "広島県", "山口県", "徳島県", "香川県", "愛媛県",	  "高知県", "福岡県",
    "佐賀県", "長崎県", "熊本県", "大分県", "宮崎県", "鹿児島県", "沖縄県", NULL};

static const char *const postal_labels[] = {"〒", "郵便番号", "postal", "zip", NULL};

static bool confirm_jp_postal_code(const dlp_hit *h, dlp_match *m)
{
	size_t start = h->pattern == 0 ? trailing_digits_start(h, h->end) : h->start;
	if (h->pattern == 0 && start > h->start && h->data[start - 1] == '-') {
		/* ddd-dddd: the value starts three digits before the hyphen. */
		start -= 4;
	}
	if (in_number_run(h, start, h->end, "-.,/:"))
		return false;
	m->start = start;
	if (h->pattern == 0) {
		m->confidence = CONF_SHAPE_LABEL;
		return true;
	}
	/* "(415) 555-0100" is a phone number. */
	if ((start > 0 && h->data[start - 1] == ')') ||
	    (start > 1 && h->data[start - 1] == ' ' && h->data[start - 2] == ')'))
		return false;
	/* A label right before it is the first pattern's hit. */
	size_t p = start;
	while (p > 0 && (h->data[p - 1] == ' ' || h->data[p - 1] == '\t' || h->data[p - 1] == ':'))
		p--;
	if (p >= 3 && memcmp(h->data + p - 3, "：", 3) == 0)
		p -= 3;
	while (p > 0 && (h->data[p - 1] == ' ' || h->data[p - 1] == '\t'))
		p--;
	if ((p >= 3 && memcmp(h->data + p - 3, "〒", 3) == 0) ||
	    (p >= 12 && memcmp(h->data + p - 12, "郵便番号", 12) == 0))
		return false;
	/* Unlabelled ddd-dddd is as likely a part number, unless an address
	 * follows or a label is near ("郵便番号は100-0001"). */
	if (dlp_word_after(h, h->end, 16, prefectures) ||
	    near(h, start, h->end, 24, 0, postal_labels))
		m->confidence = CONF_SHAPE_LABEL;
	else
		m->confidence = CONF_DUBIOUS;
	return true;
}

/* ---- jp_address ------------------------------------------------------- */

static const dlp_pattern address_patterns[] = {
    {"北海道|東京都|大阪府|京都府|(青森|岩手|宮城|秋田|山形|福島|茨城|栃木|群馬|埼玉|千葉|"
     "神奈川|新潟|富山|石川|福井|山梨|長野|岐阜|静岡|愛知|三重|滋賀|兵庫|奈良|和歌山|鳥取|"
     "島根|岡山|広島|山口|徳島|香川|愛媛|高知|福岡|佐賀|長崎|熊本|大分|宮崎|鹿児島|沖縄)県",
     0},
};

static const char *const address_labels[] = {"住所",   "所在地", "住まい", "address",
					     "送付先", "届け先", NULL};

/* Reads a block number at *i: 1-2-3, 1-2, 1丁目2番3号, 一丁目, 12番地.
 * Returns the number of parts read (0: none) and moves *i past it. */
static int read_block_number(const dlp_hit *h, size_t *i)
{
	static const char *const kanji_numerals[] = {"一", "二", "三", "四", "五", "六",
						     "七", "八", "九", "十", NULL};
	size_t p = *i;
	int parts = 0;
	bool after_chome = false; /* 4丁目2-8: digits may follow 丁目 bare */
	if (is_digit(byte_at(h, p))) {
		while (is_digit(byte_at(h, p)))
			p++;
		parts = 1;
		if (lit_at(h, p, "丁目")) {
			p += strlen("丁目");
			parts = 2;
			after_chome = true;
		} else if (lit_at(h, p, "番地")) {
			p += strlen("番地");
			parts = 2;
		} else if (lit_at(h, p, "番")) {
			p += strlen("番");
			parts = 2;
		}
	} else {
		size_t q = p;
		for (bool more = true; more;) {
			more = false;
			for (const char *const *k = kanji_numerals; *k; k++)
				if (lit_at(h, q, *k)) {
					q += strlen(*k);
					more = true;
				}
		}
		if (q == p || !lit_at(h, q, "丁目"))
			return 0;
		p = q + strlen("丁目");
		parts = 2;
		after_chome = true;
	}
	/* Further parts: -2, -3, 2番, 3号, 2番地. */
	for (;;) {
		if (byte_at(h, p) == '-' && is_digit(byte_at(h, p + 1))) {
			p++;
			while (is_digit(byte_at(h, p)))
				p++;
			parts++;
			continue;
		}
		if (is_digit(byte_at(h, p)) && parts >= 2) {
			size_t q = p;
			while (is_digit(byte_at(h, q)))
				q++;
			const char *const units[] = {"番地", "番", "号", NULL};
			bool unit = false;
			for (const char *const *u = units; *u; u++)
				if (lit_at(h, q, *u)) {
					q += strlen(*u);
					unit = true;
					break;
				}
			if (!unit && !after_chome)
				break;
			p = q;
			parts++;
			after_chome = false;
			continue;
		}
		if (lit_at(h, p, "号") && parts >= 2) {
			p += strlen("号");
			continue;
		}
		break;
	}
	if (parts < 2)
		return 0;
	*i = p;
	return parts;
}

static bool confirm_jp_address(const dlp_hit *h, dlp_match *m)
{
	static const char *const municipal[] = {"市", "区", "町", "村", "郡", NULL};
	size_t i = h->end, limit = h->end + 30;
	bool found = false;
	/* The city, ward, town, village or district within ~30 bytes, in a
	 * run of kanji and kana. */
	while (i < h->len && i < limit && !found) {
		size_t n;
		long cp = utf8_at(h, i, &n);
		if (!is_kanji(cp) && !is_katakana(cp) && !is_hiragana(cp))
			return false;
		for (const char *const *w = municipal; *w; w++)
			if (lit_at(h, i, *w))
				found = true;
		i += n;
	}
	if (!found)
		return false;
	/* Then the block number within ~60 bytes: the rest of the town's
	 * name, in kanji, kana, digits or spaces. */
	limit = i + 60;
	while (i < h->len && i < limit) {
		size_t at = i;
		int parts = read_block_number(h, &at);
		if (parts > 0) {
			/* "1-2時間" is a duration, not a block. */
			size_t n;
			long next = utf8_at(h, at, &n);
			if (parts == 2 && is_kanji(next))
				return false;
			m->end = at;
			m->confidence = near(h, h->start, at, LABEL_BEFORE, 0, address_labels)
					    ? 0.9f
					    : CONF_CHECKSUM;
			return true;
		}
		size_t n;
		long cp = utf8_at(h, i, &n);
		if (!is_kanji(cp) && !is_katakana(cp) && !is_hiragana(cp) && cp != ' ' &&
		    !is_digit((char)cp))
			return false;
		/* Punctuation that ends a sentence ends the address. */
		if (cp == 0x3002 /* 。 */ || cp == 0x3001 /* 、 */)
			return false;
		i += n;
	}
	return false;
}

/* ---- jp_residence_card ------------------------------------------------ */

static const dlp_pattern residence_patterns[] = {
    {"\\b[A-Z]{2}\\d{8}[A-Z]{2}\\b", DLP_RE_TOKEN},
};

static const char *const residence_labels[] = {"在留カード", "在留", "residence card", "zairyu",
					       NULL};

static bool confirm_jp_residence_card(const dlp_hit *h, dlp_match *m)
{
	const char *s = h->data + h->start;
	if (one_digit_repeated(s + 2, 8))
		return false;
	m->confidence =
	    near(h, h->start, h->end, LABEL_BEFORE, LABEL_AFTER, residence_labels) ? 0.9f : 0.45f;
	return true;
}

/* ---- jp_drivers_license ----------------------------------------------- */

static const dlp_pattern license_patterns[] = {
    {"(運転免許|免許証|\\bdriver'?s? licen[cs]e|\\bdriving licen[cs]e)[^0-9\\n]{0,30}\\b\\d{12}\\b",
     DLP_RE_CASELESS},
};

static bool confirm_jp_drivers_license(const dlp_hit *h, dlp_match *m)
{
	size_t start = trailing_digits_start(h, h->end);
	if (h->end - start != 12 || in_number_run(h, start, h->end, "-.") ||
	    one_digit_repeated(h->data + start, 12))
		return false;
	m->start = start;
	m->confidence = CONF_SHAPE_LABEL;
	return true;
}

/* ---- passport_number -------------------------------------------------- */

static const dlp_pattern passport_patterns[] = {
    {"(旅券|パスポート|\\b[Pp]assport|\\bPASSPORT)[^\\n]{0,40}\\b[A-Z]{1,2}\\d{6,9}\\b", 0},
};

static bool confirm_passport_number(const dlp_hit *h, dlp_match *m)
{
	size_t start = trailing_digits_start(h, h->end);
	size_t digits = h->end - start;
	while (start > h->start && is_upper(h->data[start - 1]))
		start--;
	size_t letters = h->end - digits - start;
	if (letters == 0 || letters > 2 || !dlp_whole_token(h, start, h->end, word_chars) ||
	    one_digit_repeated(h->data + start + letters, digits))
		return false;
	m->start = start;
	/* Japan's: two letters and seven digits (TK1234567). */
	m->confidence = letters == 2 && digits == 7 ? CONF_CHECKSUM : CONF_SHAPE_LABEL;
	return true;
}

/* ---- bank_account ----------------------------------------------------- */

static const dlp_pattern bank_patterns[] = {
    {"(口座番号|普通預金|当座預金|普通|当座)[^0-9\\n]{0,24}\\b\\d{7}\\b", 0},
    {"\\b(account|acct)([ _]?number| no\\.?| #|#|No)[^0-9\\n]{0,16}\\b\\d{6,17}\\b",
     DLP_RE_CASELESS},
};

static const char *const jp_bank_words[] = {"銀行",	"ゆうちょ", "信用金庫", "信金", "支店",
					    "信用組合", "労働金庫", "農協",	"bank", NULL};
static const char *const us_bank_words[] = {"routing", "aba",  "sort code", "bank",
					    "swift",   "iban", NULL};

static bool confirm_bank_account(const dlp_hit *h, dlp_match *m)
{
	size_t start = trailing_digits_start(h, h->end);
	if (in_number_run(h, start, h->end, "-.") ||
	    one_digit_repeated(h->data + start, h->end - start))
		return false;
	m->start = start;
	const char *const *words = h->pattern == 0 ? jp_bank_words : us_bank_words;
	m->confidence = near(h, h->start, h->end, 80, 80, words) ? CONF_SHAPE_LABEL : CONF_WEAK;
	return true;
}

/* ---- date_of_birth ---------------------------------------------------- */

static const dlp_pattern dob_patterns[] = {
    {"生年月日|誕生日|\\bDOB\\b|\\bD\\.O\\.B\\b|\\bdate[ _]of[ _]birth\\b|\\bbirth[ _]?date\\b|"
     "\\bbirthday\\b|\\bborn on\\b",
     DLP_RE_CASELESS},
};

static bool valid_ymd(long y, long mo, long d)
{
	return y >= 1900 && y <= 2099 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31;
}

/* A month's English name (Jan, January, Sept.) at *i: 1..12, or 0. */
static int read_month_name(const dlp_hit *h, size_t *i)
{
	static const char names[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	char a[3];
	for (size_t k = 0; k < 3; k++) {
		char c = byte_at(h, *i + k);
		if (!is_alpha(c))
			return 0;
		a[k] = is_upper(c) ? (char)(c - 'A' + 'a') : c;
	}
	for (int mo = 0; mo < 12; mo++)
		if (memcmp(names + 3 * mo, a, 3) == 0) {
			size_t p = *i + 3;
			while (is_alpha(byte_at(h, p)))
				p++;
			if (byte_at(h, p) == '.')
				p++;
			*i = p;
			return mo + 1;
		}
	return 0;
}

/* Reads a date at i; returns its end, or 0 if there is none. */
static size_t read_date(const dlp_hit *h, size_t i)
{
	static const struct {
		const char *name;
		long first, last; /* the Gregorian years of its year 1 and its last */
	} eras[] = {{"明治", 1868, 1912},
		    {"大正", 1912, 1926},
		    {"昭和", 1926, 1989},
		    {"平成", 1989, 2019},
		    {"令和", 2019, 2099}};
	size_t p = i;
	long y, mo, d;
	for (size_t e = 0; e < sizeof(eras) / sizeof(eras[0]); e++) {
		if (!lit_at(h, p, eras[e].name))
			continue;
		p += strlen(eras[e].name);
		if (lit_at(h, p, "元")) {
			p += strlen("元");
			y = 1;
		} else if ((y = read_number(h, &p, 2)) < 1) {
			return 0;
		}
		if (eras[e].first + y - 1 > eras[e].last || !lit_at(h, p, "年"))
			return 0;
		p += strlen("年");
		if ((mo = read_number(h, &p, 2)) < 0 || !lit_at(h, p, "月"))
			return 0;
		p += strlen("月");
		if ((d = read_number(h, &p, 2)) < 0 || !lit_at(h, p, "日"))
			return 0;
		p += strlen("日");
		return valid_ymd(eras[e].first + y - 1, mo, d) ? p : 0;
	}
	if ((mo = read_month_name(h, &p)) > 0) {
		/* Jan 2, 1990 */
		while (byte_at(h, p) == ' ')
			p++;
		if ((d = read_number(h, &p, 2)) < 0)
			return 0;
		if (byte_at(h, p) == ',')
			p++;
		while (byte_at(h, p) == ' ')
			p++;
		if ((y = read_number(h, &p, 4)) < 0)
			return 0;
		return valid_ymd(y, mo, d) ? p : 0;
	}
	size_t q = p;
	long a = read_number(h, &q, 4);
	if (a < 0)
		return 0;
	if (q - p == 4) {
		/* 1990年1月2日, 1990/01/02, 1990-01-02, 1990.01.02 */
		y = a;
		p = q;
		bool kanji = lit_at(h, p, "年");
		char sep = byte_at(h, p);
		if (kanji)
			p += strlen("年");
		else if (sep == '/' || sep == '-' || sep == '.')
			p++;
		else
			return 0;
		if ((mo = read_number(h, &p, 2)) < 0)
			return 0;
		if (kanji ? !lit_at(h, p, "月") : byte_at(h, p) != sep)
			return 0;
		p += kanji ? strlen("月") : 1;
		if ((d = read_number(h, &p, 2)) < 0)
			return 0;
		if (kanji && lit_at(h, p, "日"))
			p += strlen("日");
		return valid_ymd(y, mo, d) ? p : 0;
	}
	if (q - p > 2)
		return 0;
	/* 01/02/1990 or 02.01.1990, month or day first; 2 Jan 1990. */
	p = q;
	char sep = byte_at(h, p);
	if (sep == ' ') {
		p++;
		if ((mo = read_month_name(h, &p)) == 0 || byte_at(h, p) != ' ')
			return 0;
		p++;
		if ((y = read_number(h, &p, 4)) < 0)
			return 0;
		return valid_ymd(y, mo, a) ? p : 0;
	}
	if (sep != '/' && sep != '-' && sep != '.')
		return 0;
	p++;
	long b = read_number(h, &p, 2);
	if (b < 0 || byte_at(h, p) != sep)
		return 0;
	p++;
	size_t ys = p;
	if ((y = read_number(h, &p, 4)) < 0 || p - ys != 4)
		return 0;
	return valid_ymd(y, a, b) || valid_ymd(y, b, a) ? p : 0;
}

static bool confirm_date_of_birth(const dlp_hit *h, dlp_match *m)
{
	size_t start = skip_label_gap(h, h->end, 16);
	size_t end = read_date(h, start);
	if (end == 0 || is_digit(byte_at(h, end)))
		return false;
	m->start = start;
	m->end = end;
	m->confidence = CONF_CHECKSUM;
	return true;
}

/* ---- person_name ------------------------------------------------------ */

enum { NAME_JP, NAME_KANA, NAME_EN };

static const dlp_pattern name_patterns[] = {
    [NAME_JP] = {"氏名|お名前|名前", 0},
    [NAME_KANA] = {"フリガナ|ふりがな", 0},
    /* Also a JSON key: "full_name": "Taro Yamada", "customerName": ... */
    [NAME_EN] =
	{"\\b((full|first|last|given|family|customer|patient|contact)[ _]?)?name\"?[ \\t]*(:|：)",
	 DLP_RE_CASELESS},
};

/* Reads a run of characters of one script (kanji, or kana) at *i, at most
 * max characters; returns how many. */
static size_t read_script_run(const dlp_hit *h, size_t *i, bool kana, size_t max)
{
	size_t count = 0, n;
	long cp;
	while (count < max && (cp = utf8_at(h, *i, &n)) >= 0 &&
	       (kana ? is_katakana(cp) || is_hiragana(cp) : is_kanji(cp))) {
		*i += n;
		count++;
	}
	return count;
}

static size_t skip_one_space(const dlp_hit *h, size_t i)
{
	if (byte_at(h, i) == ' ')
		return i + 1;
	if (lit_at(h, i, "　"))
		return i + strlen("　");
	return i;
}

/* A Japanese name at i: 2-4 kanji, an optional space and 1-4 kanji; or
 * kana words. Returns its end, or 0. */
static size_t read_jp_name(const dlp_hit *h, size_t i, bool kana_only)
{
	size_t p = i, family, given;
	if (!kana_only && (family = read_script_run(h, &p, false, 5)) > 0) {
		if (family > 1 && (lit_at(h, p - 3, "様") || lit_at(h, p - 3, "殿"))) {
			p -= 3;
			family--;
		}
		if (family > 4)
			return 0;
		size_t q = skip_one_space(h, p), r = q;
		given = read_script_run(h, &r, false, 5);
		if (given > 1 && (lit_at(h, r - 3, "様") || lit_at(h, r - 3, "殿"))) {
			r -= 3;
			given--;
		}
		if (given > 4)
			return 0;
		if (given > 0)
			p = r;
		if (family + given < 2)
			return 0;
		size_t n;
		long next = utf8_at(h, p, &n);
		/* "お名前: 山田太郎です" ends at the name, but "名前: 未入力のまま"
		 * is prose: after a name only an honorific or です. */
		if ((is_hiragana(next) || is_katakana(next)) && !lit_at(h, p, "さん") &&
		    !lit_at(h, p, "です") && !lit_at(h, p, "くん") && !lit_at(h, p, "ちゃん"))
			return 0;
		return p;
	}
	size_t words = 0, last = 0;
	for (;;) {
		size_t q = p;
		size_t len = read_script_run(h, &q, true, 12);
		if (len < 2)
			break;
		words++;
		last = q;
		p = skip_one_space(h, q);
	}
	if (words == 0 || words > 3)
		return 0;
	size_t n;
	if (is_kanji(utf8_at(h, last, &n)))
		return 0;
	return last;
}

static const char *const name_counter[] = {
    "file",   "user",	 "host",  "product", "project", "company", "app",    "package",
    "branch", "field",	 "class", "table",   "column",	"server",  "device", "domain",
    "bucket", "key",	 "event", "model",   "repo",	"display", "image",  "service",
    "node",   "cluster", "team",  "org",     NULL};

static bool confirm_person_name(const dlp_hit *h, dlp_match *m)
{
	size_t gap = skip_label_gap(h, h->end, 12);
	size_t end = 0;
	if (h->pattern == NAME_EN) {
		if (counter_before(h, h->start, 12, name_counter))
			return false;
		/* Capitalised words: Taro Yamada, Mary-Jane O'Neil. */
		size_t p = gap, words = 0;
		while (is_upper(byte_at(h, p))) {
			size_t q = p + 1;
			while (is_lower(byte_at(h, q)) || byte_at(h, q) == '\'' ||
			       (byte_at(h, q) == '-' && is_upper(byte_at(h, q + 1))) ||
			       is_upper(byte_at(h, q)))
				q++;
			if (q - p < 2 || !is_lower(byte_at(h, q - 1)))
				break;
			words++;
			end = q;
			if (byte_at(h, q) != ' ' || !is_upper(byte_at(h, q + 1)) || words == 4)
				break;
			p = q + 1;
		}
		if (words == 0 || in_set(byte_at(h, end), word_chars))
			return false;
		/* "First name: Taro" is a whole value in one word. */
		static const char *const one_part[] = {"first", "last", "given", "family", NULL};
		bool part = dlp_word_after(h, h->start, 6, one_part);
		/* A bare "name" key of JSON names products and builds as often
		 * as people ("name": "Widget Pro"); "full_name" names people. */
		bool bare_key = (h->data[h->start] == 'n' || h->data[h->start] == 'N') &&
				memchr(h->data + h->start, '"', h->end - h->start) != NULL;
		if (bare_key)
			m->confidence = CONF_WEAK;
		else
			m->confidence = words >= 2 || part ? CONF_SHAPE_LABEL : CONF_WEAK;
	} else {
		/* A value follows a separator, never directly (名前変更). */
		if (gap == h->end)
			return false;
		end = read_jp_name(h, gap, h->pattern == NAME_KANA);
		if (end == 0)
			return false;
		m->confidence = CONF_SHAPE_LABEL;
	}
	m->start = gap;
	m->end = end;
	return true;
}

/* ---- jp_health_insurance, jp_pension_number --------------------------- */

static const dlp_pattern health_patterns[] = {
    /* 6 to 8 digits for health insurance, 10 for long-term care (介護保険). */
    {"(被保険者番号|保険者番号|被保険者証番号)[^0-9\\n]{0,24}\\b(\\d{6,8}|\\d{10})\\b", 0},
};

static bool confirm_labelled_digits(const dlp_hit *h, dlp_match *m)
{
	size_t start = trailing_digits_start(h, h->end);
	if (in_number_run(h, start, h->end, "-.") ||
	    one_digit_repeated(h->data + start, h->end - start))
		return false;
	m->start = start;
	m->confidence = CONF_SHAPE_LABEL;
	return true;
}

static const dlp_pattern pension_patterns[] = {
    {"(基礎年金番号|年金番号)[^0-9\\n]{0,24}\\b\\d{4}-?\\d{6}\\b", 0},
};

static bool confirm_jp_pension_number(const dlp_hit *h, dlp_match *m)
{
	size_t start = trailing_digits_start(h, h->end);
	if (start > h->start && h->data[start - 1] == '-')
		start -= 5;
	if (in_number_run(h, start, h->end, "-.") ||
	    one_digit_repeated(h->data + start, h->end - start))
		return false;
	m->start = start;
	m->confidence = CONF_CHECKSUM;
	return true;
}

/* ---- us_bank_routing -------------------------------------------------- */

static const dlp_pattern routing_patterns[] = {
    {"\\b(routing|ABA|RTN|transit)[^0-9\\n]{0,24}\\b\\d{9}\\b", DLP_RE_CASELESS},
};

static bool confirm_us_bank_routing(const dlp_hit *h, dlp_match *m)
{
	size_t start = h->end - 9;
	const char *s = h->data + start;
	if (in_number_run(h, start, h->end, "-.") || !dlp_aba_routing(s, 9) ||
	    one_digit_repeated(s, 9))
		return false;
	/* The Federal Reserve's prefixes: 00-12, 21-32, 61-72, 80. */
	unsigned p = (unsigned)(s[0] - '0') * 10 + (unsigned)(s[1] - '0');
	if (!(p <= 12 || (p >= 21 && p <= 32) || (p >= 61 && p <= 72) || p == 80))
		return false;
	m->start = start;
	m->confidence = CONF_CHECKSUM_LABEL;
	return true;
}

/* ---- uk_national_insurance -------------------------------------------- */

static const dlp_pattern nino_patterns[] = {
    {"\\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\\d{2} ?\\d{2} ?\\d{2} ?[A-D]\\b", DLP_RE_TOKEN},
};

static const char *const nino_labels[] = {
    "national insurance", "nino", "ni number", "ni no", "nin:", NULL};

static bool confirm_uk_national_insurance(const dlp_hit *h, dlp_match *m)
{
	const char *s = h->data + h->start;
	size_t n = h->end - h->start;
	static const char *const bad[] = {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ", NULL};
	for (const char *const *b = bad; *b; b++)
		if (memcmp(s, *b, 2) == 0)
			return false;
	size_t spaces = n - 9;
	if (spaces != 0 && spaces != 4)
		return false;
	if (one_digit_repeated(s + 2, n - 3))
		return false;
	bool label = near(h, h->start, h->end, LABEL_BEFORE, LABEL_AFTER, nino_labels);
	if (label)
		m->confidence = 0.9f;
	else
		m->confidence = spaces == 4 ? CONF_CHECKSUM : CONF_WEAK;
	return true;
}

/* ---- The table -------------------------------------------------------- */

#define PATTERNS(p) p, sizeof(p) / sizeof((p)[0])

const dlp_detector dlp_pii_detectors[] = {
    {"credit_card", DLP_PII,
     "payment card numbers (13-19 digits, plain or grouped) of a known brand; Luhn checksum",
     "4912 3456 7890 1230", PATTERNS(card_patterns), confirm_credit_card},
    {"iban", DLP_PII, "international bank account numbers; country length and mod-97",
     "GB82 WEST 1234 5698 7654 32", PATTERNS(iban_patterns), confirm_iban},
    {"us_ssn", DLP_PII,
     "US social security numbers ddd-dd-dddd (valid area, group, serial); bare digits after "
     "an SSN label",
     "SSN: 536-22-1094", PATTERNS(ssn_patterns), confirm_us_ssn},
    {"email", DLP_PII, "e-mail addresses; example domains are kept at low confidence",
     "taro.yamada@mail.invalid-corp.co.jp", PATTERNS(email_patterns), confirm_email},
    {"phone_number", DLP_PII,
     "Japanese phone numbers (mobile, landline, toll-free, +81), US and E.164 numbers; a label "
     "raises, bare digits need one",
     "090-1234-5678", PATTERNS(phone_patterns), confirm_phone_number},
    {"jp_my_number", DLP_PII,
     "Japan's individual number (12 digits); check digit, and a label such as マイナンバー",
     "マイナンバー: 1234 5678 9018", PATTERNS(my_number_patterns), confirm_jp_my_number},
    {"jp_postal_code", DLP_PII,
     "Japanese postal codes after 〒 or 郵便番号, or before a prefecture", "〒100-0001",
     PATTERNS(postal_patterns), confirm_jp_postal_code},
    {"jp_address", DLP_PII, "Japanese addresses: a prefecture, a municipality and a block number",
     "東京都千代田区架空町1-2-3", PATTERNS(address_patterns), confirm_jp_address},
    {"jp_residence_card", DLP_PII,
     "residence card (在留カード) numbers: 2 letters, 8 digits, 2 letters; a label raises",
     "在留カード番号 AB12345678CD", PATTERNS(residence_patterns), confirm_jp_residence_card},
    {"jp_drivers_license", DLP_PII, "Japanese driver's licence numbers: 12 digits after a label",
     "運転免許証番号 第123456789012号", PATTERNS(license_patterns), confirm_jp_drivers_license},
    {"passport_number", DLP_PII,
     "passport numbers after a label: Japan's 2 letters and 7 digits, or letters and digits",
     "旅券番号: TK1234567", PATTERNS(passport_patterns), confirm_passport_number},
    {"bank_account", DLP_PII,
     "bank account numbers after a label: 7-digit 口座番号 near a bank or branch, or an "
     "account number near a routing number",
     "架空銀行 新宿支店 普通 1234567", PATTERNS(bank_patterns), confirm_bank_account},
    {"date_of_birth", DLP_PII,
     "dates of birth after a label (生年月日, DOB): Western, Japanese era and English dates",
     "生年月日: 平成2年1月2日", PATTERNS(dob_patterns), confirm_date_of_birth},
    {"person_name", DLP_PII,
     "names after a label (氏名, お名前, フリガナ, Name:): kanji, kana or capitalised words",
     "氏名: 架空 太郎", PATTERNS(name_patterns), confirm_person_name},
    {"jp_health_insurance", DLP_PII,
     "health (6-8 digits) and long-term care (10) insurance numbers after 被保険者番号 or 保険者番号",
     "被保険者番号 12345678", PATTERNS(health_patterns), confirm_labelled_digits},
    {"jp_pension_number", DLP_PII, "basic pension numbers (dddd-dddddd) after 基礎年金番号",
     "基礎年金番号: 1234-567890", PATTERNS(pension_patterns), confirm_jp_pension_number},
    {"us_bank_routing", DLP_PII, "US routing numbers (9 digits) near 'routing' or 'ABA'; checksum",
     "ABA routing number: 123456780", PATTERNS(routing_patterns), confirm_us_bank_routing},
    {"uk_national_insurance", DLP_PII,
     "UK National Insurance numbers: two letters, six digits, A-D; spaced or labelled",
     "AB 12 34 56 C", PATTERNS(nino_patterns), confirm_uk_national_insurance},
};

const size_t dlp_pii_detector_count = sizeof(dlp_pii_detectors) / sizeof(dlp_pii_detectors[0]);

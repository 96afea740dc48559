/* fuzz_router.c - the router's tokenizer and analysis (src/lib/router.c).
 *
 * Input: the bytes of a cell, in a buffer of exactly that size (no NUL
 * after it), so that ASan reports any read past its end. Invariants:
 *  - the tier is nano or heavy and the reason is a non-empty, terminated
 *    string of valid UTF-8 (it goes into JSON results: jansson refuses
 *    anything else); the module list is terminated, valid UTF-8, and is a
 *    comma-separated list of distinct, non-empty names without spaces;
 *  - a module learned to need heavy ("scipy" here) that the cell imports
 *    (it is in the module list) routes the cell to heavy;
 *  - routing is deterministic (the same bytes give the same answer). */
#include "internal.h"
#include "fuzz.h"

static const char *const learned[] = {"scipy", "pkg.sub", NULL};

static bool has_item(const char *list, const char *item)
{
	size_t n = strlen(item);
	for (const char *p = list; *p;) {
		size_t l = strcspn(p, ",");
		if (l == n && memcmp(p, item, n) == 0)
			return true;
		p += l;
		if (*p == ',')
			p++;
	}
	return false;
}

static void check_modules(const char *m)
{
	FUZZ_CHECK(memchr(m, '\0', sizeof(((ab_route *)0)->modules)));
	if (!*m)
		return;
	for (const char *p = m;;) {
		size_t l = strcspn(p, ",");
		FUZZ_CHECK(l > 0);
		FUZZ_CHECK(memchr(p, ' ', l) == NULL);
		/* Distinct: this item does not occur again later. */
		for (const char *q = p + l + (p[l] == ','); *q;) {
			size_t k = strcspn(q, ",");
			FUZZ_CHECK(!(k == l && memcmp(p, q, l) == 0));
			q += k;
			if (*q == ',')
				q++;
		}
		p += l;
		if (!*p)
			break;
		p++;
		FUZZ_CHECK(*p); /* no trailing comma */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *code = malloc(size ? size : 1);
	FUZZ_CHECK(code);
	memcpy(code, data, size);
	ab_route a, b;
	ab_router_route(code, size, learned, &a);
	FUZZ_CHECK(a.tier == AB_ROUTE_NANO || a.tier == AB_ROUTE_HEAVY);
	FUZZ_CHECK(memchr(a.reason, '\0', sizeof(a.reason)) && a.reason[0]);
	check_modules(a.modules);
	json_t *js = json_string(a.reason);
	if (!js)
		fprintf(stderr, "reason is not valid UTF-8: %s\n", a.reason);
	FUZZ_CHECK(js);
	json_decref(js);
	js = json_string(a.modules);
	FUZZ_CHECK(js);
	json_decref(js);
	/* A module nano lacks sends the cell to heavy, unless the cell cannot
	 * be tokenized: Python then refuses it whole with a SyntaxError, which
	 * nano answers (docs/router.md). */
	if (has_item(a.modules, "scipy") && strncmp(a.reason, "cannot tokenize:", 16) != 0)
		FUZZ_CHECK(a.tier == AB_ROUTE_HEAVY);
	ab_router_route(code, size, learned, &b);
	FUZZ_CHECK(a.tier == b.tier);
	FUZZ_CHECK(strcmp(a.reason, b.reason) == 0);
	FUZZ_CHECK(strcmp(a.modules, b.modules) == 0);
	free(code);
	return 0;
}

/* engine.c - the DLP engine (docs/dlp.md, "Inside the engine").
 *
 * One Hyperscan database holds every detector's patterns. A scan walks a
 * tree of views: the original bytes (or their normalised copy, when
 * normalisation changes anything), and below each view the regions its
 * decoders reveal, to a bounded depth. Hyperscan runs over each view; each
 * hit goes to its detector's confirmer, and a confirmed value's span is
 * mapped back, view by view, to the original bytes.
 *
 * Large inputs and streams are scanned in windows of DLP_WINDOW bytes that
 * overlap by DLP_OVERLAP: a value that starts in the last DLP_OVERLAP bytes
 * of a window is left to the next window, which holds it whole (if it is
 * no longer than DLP_OVERLAP). Hyperscan's own streaming mode is not used:
 * it keeps no bytes, and confirmers and decoders need the bytes around a
 * hit, which the window keeps. */
#include <errno.h>
#include <fcntl.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <hs/hs.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dlp_internal.h"

#define DLP_WINDOW (1u << 20)
#define DLP_OVERLAP (16u << 10)

/* A pattern's longest match, when Hyperscan cannot bound it. */
#define DLP_UNBOUNDED_WIDTH 4096u
/* Scratch spaces an engine keeps for reuse. */
#define SCRATCH_POOL 64
/* Matches of the fast database kept per view, at most. */
#define DLP_MAX_ENDS (1u << 20)

struct pattern_ref {
	const dlp_detector *det;
	unsigned pattern;
	unsigned width; /* the longest match (DLP_UNBOUNDED_WIDTH at most) */
	bool token;	/* DLP_RE_TOKEN: in the token database only */
};

/* Two databases of the same patterns. Start of match (SOM) costs
 * Hyperscan two to three times the scan, and almost every window has no
 * match at all: so fast, without SOM, finds where matches end, and som
 * is run only over the bytes just before those ends, to find where they
 * start (scan_hits). */
struct dlp_engine {
	hs_database_t *fast, *som;
	/* The DLP_RE_TOKEN patterns, with SOM, run only over the tokens
	 * scan_tokens finds (numbers, and codes of two capitals and digits);
	 * NULL when there are none. */
	hs_database_t *token;
	struct pattern_ref *refs; /* by Hyperscan id */
	size_t nrefs;
	/* The one mutable part: scratch spaces not in use (scratch_take). */
	pthread_mutex_t pool_lock;
	hs_scratch_t *pool[SCRATCH_POOL];
	size_t npool;
};

/* Patterns of the fast database that are no detector's: they tell the
 * decoders where a candidate starts, so that a view without one is not
 * walked byte by byte. Each reports once (HS_FLAG_SINGLEMATCH); ids from
 * nrefs on. The width says how far before the end the candidate starts. */
static const struct gate {
	const char *re;
	unsigned width;
} gates[] = {
    /* Separated hex (decode.c, find_sep_hex): "\x41" four times, "0x41"
     * with a separator four times, or "41" and a separator four times. */
    {"(\\\\x[0-9A-Fa-f]{2}){4}|(0[xX][0-9A-Fa-f]{2}[ ,;:]{1,2}){4}|"
     "[0-9A-Fa-f]{2}([ :,\\-][0-9A-Fa-f]{2}){3}",
     16},
};
#define GATE_SEP_HEX 0

/* ---- The detectors, in one list ----------------------------------------- */

static const dlp_detector *detector_at(size_t i)
{
	if (i < dlp_secret_detector_count)
		return &dlp_secret_detectors[i];
	i -= dlp_secret_detector_count;
	if (i < dlp_pii_detector_count)
		return &dlp_pii_detectors[i];
	return NULL;
}

size_t dlp_detector_count(void)
{
	return dlp_secret_detector_count + dlp_pii_detector_count;
}

static dlp_detector_info *infos;
static pthread_once_t infos_once = PTHREAD_ONCE_INIT;

static void infos_make(void)
{
	size_t n = dlp_detector_count();
	infos = calloc(n ? n : 1, sizeof(*infos));
	if (!infos)
		return;
	for (size_t i = 0; i < n; i++) {
		const dlp_detector *d = detector_at(i);
		infos[i] = (dlp_detector_info){d->kind, d->cls, d->what, d->example};
	}
}

const dlp_detector_info *dlp_detector_at(size_t i)
{
	pthread_once(&infos_once, infos_make);
	return infos && i < dlp_detector_count() ? &infos[i] : NULL;
}

const dlp_detector_info *dlp_detector_find(const char *kind)
{
	for (size_t i = 0; i < dlp_detector_count(); i++) {
		const dlp_detector_info *d = dlp_detector_at(i);
		if (d && strcmp(d->kind, kind) == 0)
			return d;
	}
	return NULL;
}

const char *dlp_class_name(enum dlp_class c)
{
	return c == DLP_SECRET ? "secret" : c == DLP_PII ? "pii" : "?";
}

/* ---- Compiling ------------------------------------------------------------ */

/* The patterns as Hyperscan wants them: res, flags and ids for the n
 * detector patterns followed by the gates. */
struct patterns {
	const char **res;
	unsigned *flags, *ids;
	size_t n, ngates;
};

static void patterns_free(struct patterns *p)
{
	free(p->res);
	free(p->flags);
	free(p->ids);
}

static int patterns_make(dlp_engine *e, struct patterns *p)
{
	size_t n = 0;
	for (size_t i = 0; i < dlp_detector_count(); i++)
		n += detector_at(i)->npatterns;
	p->n = n;
	p->ngates = sizeof(gates) / sizeof(gates[0]);
	p->res = calloc(n + p->ngates, sizeof(*p->res));
	p->flags = calloc(n + p->ngates, sizeof(*p->flags));
	p->ids = calloc(n + p->ngates, sizeof(*p->ids));
	e->refs = calloc(n ? n : 1, sizeof(*e->refs));
	if (!p->res || !p->flags || !p->ids || !e->refs)
		return -ENOMEM;
	for (size_t i = 0, k = 0; i < dlp_detector_count(); i++) {
		const dlp_detector *d = detector_at(i);
		for (unsigned q = 0; q < d->npatterns; q++, k++) {
			p->res[k] = d->patterns[q].re;
			p->flags[k] = d->patterns[q].flags & DLP_RE_CASELESS ? HS_FLAG_CASELESS : 0;
			p->ids[k] = (unsigned)k;
			e->refs[k] = (struct pattern_ref){d, q, DLP_UNBOUNDED_WIDTH,
							  (d->patterns[q].flags & DLP_RE_TOKEN) != 0};
		}
	}
	for (size_t g = 0; g < p->ngates; g++) {
		p->res[n + g] = gates[g].re;
		p->flags[n + g] = HS_FLAG_SINGLEMATCH;
		p->ids[n + g] = (unsigned)(n + g);
	}
	e->nrefs = n;
	return 0;
}

static int compile_error(dlp_engine *e, hs_compile_error_t *ce, const unsigned *ids, size_t n,
			 char *err, size_t errlen)
{
	if (ce && ce->expression >= 0 && (size_t)ce->expression < n && ids[ce->expression] < e->nrefs) {
		const struct pattern_ref *r = &e->refs[ids[ce->expression]];
		snprintf(err, errlen, "detector %s, pattern %u: %s", r->det->kind, r->pattern,
			 ce->message);
	} else {
		snprintf(err, errlen, "compiling the detectors: %s",
			 ce ? ce->message : "unknown error");
	}
	hs_free_compile_error(ce);
	return -EINVAL;
}

/* Compiles the three databases and measures each pattern's longest match:
 * fast (every pattern but the DLP_RE_TOKEN ones, and the gates), som (the
 * same patterns with start of match) and token (the DLP_RE_TOKEN ones,
 * with start of match). */
static int compile(dlp_engine *e, struct patterns *p, char *err, size_t errlen)
{
	size_t n = p->n, total = n + p->ngates;
	for (size_t k = 0; k < n; k++) {
		hs_expr_info_t *info = NULL;
		hs_compile_error_t *ie = NULL;
		if (hs_expression_info(p->res[k], p->flags[k], &info, &ie) == HS_SUCCESS) {
			if (info->max_width < e->refs[k].width)
				e->refs[k].width = info->max_width;
			free(info);
		} else {
			hs_free_compile_error(ie);
		}
		if (e->refs[k].token && e->refs[k].width > DLP_TOKEN_MAX_WIDTH) {
			snprintf(err, errlen,
				 "detector %s, pattern %u: marked DLP_RE_TOKEN, but its matches "
				 "may be longer than %u bytes",
				 e->refs[k].det->kind, e->refs[k].pattern, DLP_TOKEN_MAX_WIDTH);
			return -EINVAL;
		}
	}
	const char **res = calloc(total, sizeof(*res));
	unsigned *flags = calloc(total, sizeof(*flags)), *ids = calloc(total, sizeof(*ids));
	if (!res || !flags || !ids) {
		free(res);
		free(flags);
		free(ids);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int rc = 0;
	hs_compile_error_t *ce = NULL;
	/* fast: the patterns not marked, then the gates. */
	size_t m = 0;
	for (size_t k = 0; k < total; k++)
		if (k >= n || !e->refs[k].token) {
			res[m] = p->res[k];
			flags[m] = p->flags[k];
			ids[m++] = p->ids[k];
		}
	if (hs_compile_multi(res, flags, ids, (unsigned)m, HS_MODE_BLOCK, NULL, &e->fast, &ce) !=
	    HS_SUCCESS) {
		rc = compile_error(e, ce, ids, m, err, errlen);
		goto out;
	}
	/* som: the same detector patterns, with start of match. */
	m = 0;
	for (size_t k = 0; k < n; k++)
		if (!e->refs[k].token) {
			res[m] = p->res[k];
			flags[m] = p->flags[k] | HS_FLAG_SOM_LEFTMOST;
			ids[m++] = p->ids[k];
		}
	if (hs_compile_multi(res, flags, ids, (unsigned)m, HS_MODE_BLOCK, NULL, &e->som, &ce) !=
	    HS_SUCCESS) {
		rc = compile_error(e, ce, ids, m, err, errlen);
		goto out;
	}
	/* token: the marked ones, with start of match. */
	m = 0;
	for (size_t k = 0; k < n; k++)
		if (e->refs[k].token) {
			res[m] = p->res[k];
			flags[m] = p->flags[k] | HS_FLAG_SOM_LEFTMOST;
			ids[m++] = p->ids[k];
		}
	if (m && hs_compile_multi(res, flags, ids, (unsigned)m, HS_MODE_BLOCK, NULL, &e->token,
				  &ce) != HS_SUCCESS)
		rc = compile_error(e, ce, ids, m, err, errlen);
out:
	free(res);
	free(flags);
	free(ids);
	return rc;
}

/* ---- The compiled databases, kept (dlp_engine_open) --------------------- */

#define CACHE_MAGIC "agentbox-dlp-db/2\n"
#define CACHE_MAX (256u << 20)

/* What the databases are compiled from, hashed: Hyperscan's version, this
 * CPU's features as Hyperscan sees them, every pattern and its flags. A
 * change in any makes another file name, so a stale file is never read. */
static void cache_key(const struct patterns *p, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	out[0] = '\0';
	if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(c);
		return;
	}
	const char *v = hs_version();
	EVP_DigestUpdate(c, v, strlen(v) + 1);
	hs_platform_info_t plat;
	if (hs_populate_platform(&plat) == HS_SUCCESS)
		EVP_DigestUpdate(c, &plat, sizeof(plat));
	for (size_t k = 0; k < p->n + p->ngates; k++) {
		EVP_DigestUpdate(c, p->res[k], strlen(p->res[k]) + 1);
		EVP_DigestUpdate(c, &p->flags[k], sizeof(p->flags[k]));
	}
	EVP_DigestFinal_ex(c, md, &mdlen);
	EVP_MD_CTX_free(c);
	for (unsigned i = 0; i < mdlen && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Reads path whole if it is a regular file of ours that no one else may
 * write, at most CACHE_MAX bytes. */
static char *read_ours(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	char *buf = NULL;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
	    !(st.st_mode & 022) && st.st_size > 0 && (uint64_t)st.st_size <= CACHE_MAX &&
	    (buf = malloc((size_t)st.st_size))) {
		size_t got = 0;
		while (got < (size_t)st.st_size) {
			ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			got += (size_t)r;
		}
		if (got != (size_t)st.st_size) {
			free(buf);
			buf = NULL;
		}
		*len = got;
	}
	close(fd);
	return buf;
}

/* File: magic, then five u64 (nrefs, the width table's size, and the
 * sizes of fast, som and token: 0 for none), the widths (u32 each), the
 * serialised databases in that order. */
#define CACHE_DBS 3

static hs_database_t **cache_db(dlp_engine *e, int i)
{
	return i == 0 ? &e->fast : i == 1 ? &e->som : &e->token;
}

static bool cache_load(dlp_engine *e, const char *path)
{
	size_t len = 0;
	char *buf = read_ours(path, &len);
	if (!buf)
		return false;
	size_t m = strlen(CACHE_MAGIC);
	uint64_t h[2 + CACHE_DBS];
	bool ok = len >= m + sizeof(h) && memcmp(buf, CACHE_MAGIC, m) == 0;
	if (ok) {
		memcpy(h, buf + m, sizeof(h));
		uint64_t sum = m + sizeof(h);
		for (int i = 1; i < 2 + CACHE_DBS; i++)
			sum += h[i] < len ? h[i] : len;
		ok = h[0] == e->nrefs && h[1] == e->nrefs * sizeof(uint32_t) && h[2] && h[3] &&
		     sum == len;
	}
	const char *at = buf + m + sizeof(h);
	if (ok) {
		for (size_t k = 0; k < e->nrefs; k++) {
			uint32_t w;
			memcpy(&w, at + 4 * k, 4);
			e->refs[k].width = w < DLP_UNBOUNDED_WIDTH ? w : DLP_UNBOUNDED_WIDTH;
		}
		at += h[1];
		for (int i = 0; ok && i < CACHE_DBS; i++) {
			if (h[2 + i])
				ok = hs_deserialize_database(at, h[2 + i], cache_db(e, i)) ==
				     HS_SUCCESS;
			at += h[2 + i];
		}
	}
	if (!ok)
		for (int i = 0; i < CACHE_DBS; i++) {
			hs_free_database(*cache_db(e, i));
			*cache_db(e, i) = NULL;
		}
	free(buf);
	return ok;
}

/* Writes the databases next to path and renames them into place, so a
 * reader sees a whole file or none. Failing to is no error: the next
 * start compiles again. */
static void cache_store(dlp_engine *e, const char *path)
{
	char *db[CACHE_DBS] = {NULL};
	uint64_t h[2 + CACHE_DBS] = {e->nrefs, e->nrefs * sizeof(uint32_t)};
	bool ok = true;
	for (int i = 0; ok && i < CACHE_DBS; i++) {
		size_t l = 0;
		if (*cache_db(e, i))
			ok = hs_serialize_database(*cache_db(e, i), &db[i], &l) == HS_SUCCESS;
		h[2 + i] = l;
	}
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
	int fd = ok ? open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600) : -1;
	if (fd >= 0) {
		ok = write(fd, CACHE_MAGIC, strlen(CACHE_MAGIC)) == (ssize_t)strlen(CACHE_MAGIC) &&
		     write(fd, h, sizeof(h)) == (ssize_t)sizeof(h);
		for (size_t k = 0; ok && k < e->nrefs; k++) {
			uint32_t w = e->refs[k].width;
			ok = write(fd, &w, 4) == 4;
		}
		for (int i = 0; ok && i < CACHE_DBS; i++)
			ok = write(fd, db[i], h[2 + i]) == (ssize_t)h[2 + i];
		if (close(fd) < 0 || !ok || rename(tmp, path) < 0)
			unlink(tmp);
	}
	for (int i = 0; i < CACHE_DBS; i++)
		free(db[i]);
}

dlp_engine *dlp_engine_open(const char *cache_dir, char *err, size_t errlen)
{
	dlp_engine *e = calloc(1, sizeof(*e));
	if (e)
		pthread_mutex_init(&e->pool_lock, NULL);
	struct patterns p = {0};
	if (!e || patterns_make(e, &p) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (p.n == 0) {
		snprintf(err, errlen, "no detectors");
		goto fail;
	}
	char path[4200] = "";
	if (cache_dir && *cache_dir) {
		char key[65];
		cache_key(&p, key);
		if (key[0])
			snprintf(path, sizeof(path), "%s/dlp-%.16s.hsdb", cache_dir, key);
		if (path[0] && cache_load(e, path)) {
			patterns_free(&p);
			return e;
		}
	}
	if (compile(e, &p, err, errlen) < 0)
		goto fail;
	if (path[0])
		cache_store(e, path);
	patterns_free(&p);
	return e;
fail:
	patterns_free(&p);
	dlp_engine_free(e);
	return NULL;
}

dlp_engine *dlp_engine_new(char *err, size_t errlen)
{
	return dlp_engine_open(NULL, err, errlen);
}

void dlp_engine_free(dlp_engine *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->npool; i++)
		hs_free_scratch(e->pool[i]);
	pthread_mutex_destroy(&e->pool_lock);
	hs_free_database(e->fast);
	hs_free_database(e->som);
	hs_free_database(e->token);
	free(e->refs);
	free(e);
}

/* Scratch space: each scan takes one from the engine's pool and puts it
 * back, so that threads that come and go (the sidecar has one per
 * connection) reuse scratch instead of allocating and fitting their own
 * (which costs more than scanning a request). */

static hs_scratch_t *scratch_take(dlp_engine *e)
{
	hs_scratch_t *s = NULL;
	pthread_mutex_lock(&e->pool_lock);
	if (e->npool)
		s = e->pool[--e->npool];
	pthread_mutex_unlock(&e->pool_lock);
	if (s)
		return s;
	if (hs_alloc_scratch(e->fast, &s) != HS_SUCCESS ||
	    hs_alloc_scratch(e->som, &s) != HS_SUCCESS ||
	    (e->token && hs_alloc_scratch(e->token, &s) != HS_SUCCESS)) {
		hs_free_scratch(s);
		return NULL;
	}
	return s;
}

static void scratch_give(dlp_engine *e, hs_scratch_t *s)
{
	pthread_mutex_lock(&e->pool_lock);
	if (e->npool < SCRATCH_POOL) {
		e->pool[e->npool++] = s;
		s = NULL;
	}
	pthread_mutex_unlock(&e->pool_lock);
	hs_free_scratch(s);
}

/* ---- Findings ------------------------------------------------------------- */

void dlp_findings_free(dlp_findings *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->v[i].value);
	free(f->v);
	*f = (dlp_findings){0};
}

static int findings_push(dlp_findings *f, const dlp_finding *x)
{
	if (f->n >= DLP_MAX_FINDINGS) {
		f->truncated = true;
		free(x->value);
		return 0;
	}
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 16;
		dlp_finding *v = realloc(f->v, cap * sizeof(*v));
		if (!v) {
			free(x->value);
			return -ENOMEM;
		}
		f->v = v;
		f->cap = cap;
	}
	f->v[f->n++] = *x;
	return 0;
}

/* ---- Views ---------------------------------------------------------------- */

/* A view: the window itself (parent NULL), a normalised copy of its parent,
 * or a region a decoder revealed. */
typedef struct view {
	const struct view *parent;
	const char *data;
	size_t len;
	const uint32_t *map;	  /* NULL for the window */
	enum dlp_decoder decoder; /* DLP_DEC_NONE for a normalised copy */
	bool normalised;
	int depth;
} view;

/* The span [s, e) of v in v's parent (see dlp_buf in dlp_internal.h). */
static void span_up(const view *v, size_t *s, size_t *e)
{
	size_t a = *s, b = *e;
	size_t j = b;
	while (j < v->len && v->map[j] == v->map[b - 1])
		j++;
	*s = v->map[a];
	*e = j < v->len ? v->map[j] : v->map[v->len];
}

typedef struct scan {
	const dlp_engine *e;
	const dlp_opts *o;
	hs_scratch_t *scratch;
	dlp_findings *out; /* in window offsets */
	const view *v;	   /* the view being scanned */
	uint8_t chain[DLP_MAX_CHAIN];
	size_t nchain;
	float min_conf;
	int max_depth;
	int err;
	/* Where the fast database's matches end, in the view being scanned. */
	struct hit_end {
		size_t end;
		unsigned id;
	} *ends;
	size_t nends, capends;
	size_t base;	 /* the offset of the bytes som scans, in the view */
	size_t region_end; /* the end of the bytes the token database scans */
	bool in_token;	   /* scanning a token region (scan_tokens) */
	size_t sep_hex_end; /* where the gate for separated hex matched, or 0 */
} scan;

/* The chain of decoders from the window down to v, outermost first; a
 * normalised copy contributes what normalisation changed in the span. */
static void chain_of(const view *v, size_t s, size_t e, dlp_finding *f)
{
	const view *path[2 * DLP_MAX_DEPTH + 4];
	size_t spans[2 * DLP_MAX_DEPTH + 4][2];
	size_t n = 0;
	for (const view *x = v; x->parent && n < sizeof(path) / sizeof(path[0]); x = x->parent) {
		path[n] = x;
		span_up(x, &s, &e);
		spans[n][0] = s;
		spans[n][1] = e;
		n++;
	}
	f->start = s;
	f->end = e;
	f->nchain = 0;
	for (size_t i = n; i-- > 0;) {
		const view *x = path[i];
		if (x->normalised) {
			unsigned bits = dlp_normalize_explain(x->parent->data + spans[i][0],
							      spans[i][1] - spans[i][0]);
			for (int d = DLP_DEC_NFKC; d <= DLP_DEC_JSON; d++)
				if ((bits & (1u << d)) && f->nchain < DLP_MAX_CHAIN)
					f->chain[f->nchain++] = (uint8_t)d;
		} else if (f->nchain < DLP_MAX_CHAIN) {
			f->chain[f->nchain++] = (uint8_t)x->decoder;
		}
	}
}

static int cmp_end(const void *a, const void *b)
{
	const struct hit_end *x = a, *y = b;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static bool fast_found(const scan *sc, size_t end, unsigned id)
{
	struct hit_end k = {end, id};
	return bsearch(&k, sc->ends, sc->nends, sizeof(k), cmp_end) != NULL;
}

/* The fast database's match: only where it ends. */
static int on_end(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
		  void *ctx)
{
	(void)from;
	(void)flags;
	scan *sc = ctx;
	if (id >= sc->e->nrefs) {
		if (id - sc->e->nrefs == GATE_SEP_HEX)
			sc->sep_hex_end = (size_t)to;
		return 0;
	}
	if (sc->nends >= DLP_MAX_ENDS) {
		/* A view made of nothing but near-matches: what is past this
		 * is not looked at, and the findings say so. */
		sc->out->truncated = true;
		return 1;
	}
	if (sc->nends == sc->capends) {
		size_t cap = sc->capends ? sc->capends * 2 : 64;
		struct hit_end *v = realloc(sc->ends, cap * sizeof(*v));
		if (!v) {
			sc->err = -ENOMEM;
			return 1;
		}
		sc->ends = v;
		sc->capends = cap;
	}
	sc->ends[sc->nends++] = (struct hit_end){(size_t)to, id};
	return 0;
}

static int on_hit(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
		  void *ctx)
{
	(void)flags;
	scan *sc = ctx;
	const struct pattern_ref *r = &sc->e->refs[id];
	const view *v = sc->v;
	/* A match that starts where the slice starts (not at the start of
	 * the view) is longer than the pattern allows, or saw a word boundary
	 * that is not there (the slice starts one byte early, see scan_hits). */
	if (from == 0 && sc->base > 0)
		return 0;
	/* A token pattern's match that ends where the region ends (not at
	 * the end of the view) saw a boundary that is not there either. */
	if (sc->in_token && to + sc->base == sc->region_end && sc->region_end < sc->v->len)
		return 0;
	from += sc->base;
	to += sc->base;
	/* Only what the fast scan of the whole view found: a match that
	 * starts at the cut of a slice (where \b holds) is not one. */
	if (to <= from || to > v->len || (!sc->in_token && !fast_found(sc, (size_t)to, id)))
		return 0;
	dlp_hit h = {.data = v->data,
		     .len = v->len,
		     .start = (size_t)from,
		     .end = (size_t)to,
		     .pattern = r->pattern,
		     .chain = sc->chain,
		     .nchain = sc->nchain};
	dlp_match m = {.start = h.start, .end = h.end, .confidence = 0.5f};
	if (r->det->confirm && !r->det->confirm(&h, &m))
		return 0;
	if (m.confidence < sc->min_conf || m.end <= m.start || m.end > v->len)
		return 0;
	if (m.confidence > 1.0f)
		m.confidence = 1.0f;
	dlp_finding f = {.kind = r->det->kind, .cls = r->det->cls, .confidence = m.confidence};
	chain_of(v, m.start, m.end, &f);
	if (sc->o->values) {
		f.value = malloc(m.end - m.start + 1);
		if (!f.value) {
			sc->err = -ENOMEM;
			return 1;
		}
		memcpy(f.value, v->data + m.start, m.end - m.start);
		f.value[m.end - m.start] = '\0';
	}
	int rc = findings_push(sc->out, &f);
	if (rc < 0) {
		sc->err = rc;
		return 1;
	}
	return 0;
}

static int scan_view(scan *sc, const view *v);

struct region_ctx {
	scan *sc;
	const view *parent;
};

static int on_region(void *ctx, dlp_region *r)
{
	struct region_ctx *rc = ctx;
	scan *sc = rc->sc;
	int ret = 0;
	if (r->buf.len > 0 && r->buf.map && sc->nchain < DLP_MAX_CHAIN) {
		view child = {.parent = rc->parent,
			      .data = r->buf.data,
			      .len = r->buf.len,
			      .map = r->buf.map,
			      .decoder = r->decoder,
			      .depth = rc->parent->depth + 1};
		sc->chain[sc->nchain++] = (uint8_t)r->decoder;
		ret = scan_view(sc, &child);
		sc->nchain--;
	}
	dlp_buf_free(&r->buf);
	return ret;
}

static inline bool is_digit(unsigned char c)
{
	return (unsigned)(c - '0') <= 9;
}

static inline bool is_upper(unsigned char c)
{
	return (unsigned)(c - 'A') <= 25;
}

/* What \b counts as a word character. */
static inline bool word_byte(unsigned char c)
{
	return is_digit(c) || (unsigned)((c | 0x20) - 'a') <= 25 || c == '_';
}

/* Between two groups of digits of one number: one or two of these. */
static inline bool is_joint(unsigned char c)
{
	return c == ' ' || c == '-' || c == '.' || c == '(' || c == ')';
}

struct regions {
	scan *sc;
	const view *s;
	size_t ra, rb; /* the region being gathered; rb == 0: none */
	int err;
};

/* Scans the gathered region with the token database. */
static void region_flush(struct regions *r)
{
	scan *sc = r->sc;
	if (r->rb == 0 || r->err)
		return;
	sc->base = r->ra;
	sc->region_end = r->rb;
	sc->in_token = true;
	hs_error_t he = hs_scan(sc->e->token, r->s->data + r->ra, (unsigned)(r->rb - r->ra), 0,
				sc->scratch, on_hit, sc);
	sc->in_token = false;
	if (sc->err)
		r->err = sc->err;
	else if (he != HS_SUCCESS && he != HS_SCAN_TERMINATED)
		r->err = -EIO;
	r->rb = 0;
}

/* Adds [a, b) to what is gathered: regions that meet are scanned as one. */
static void region_add(struct regions *r, size_t a, size_t b)
{
	if (r->rb && a > r->rb)
		region_flush(r);
	if (r->rb == 0)
		r->ra = a;
	if (b > r->rb)
		r->rb = b;
}

/* A code at c (two capitals, maybe a space, two digits, at a word
 * boundary): the region its patterns may match in. */
static void code_add(struct regions *r, size_t c, size_t n)
{
	region_add(r, c ? c - 1 : 0,
		   n - c > DLP_TOKEN_MAX_WIDTH + 1 ? c + DLP_TOKEN_MAX_WIDTH + 1 : n);
}

/* The number that starts with the digit at a: its groups of digits and
 * what joins them. Every number pattern is one group of eight digits or
 * more, or ends in a group of three or more after another: a date
 * (2026-11-30) or a time is neither. Adds its region if it may hold a
 * match; returns where it ends. */
static size_t number_at(struct regions *r, const unsigned char *p, size_t n, size_t a)
{
	size_t i = a, last = a, digits = 0, groups = 0;
	bool shaped = false;
	for (;;) {
		size_t g = i;
		while (i < n && is_digit(p[i]))
			i++;
		digits += i - g;
		shaped = shaped || i - g >= 8 || (groups > 0 && i - g >= 3);
		groups++;
		last = i;
		size_t j = i;
		while (j < n && j - i < 2 && is_joint(p[j]))
			j++;
		if (j == i || j >= n || !is_digit(p[j]))
			break;
		i = j;
	}
	if (digits >= 6 && shaped)
		region_add(r, a > 2 ? a - 2 : 0, last < n ? last + 1 : n);
	return last;
}

/* Numbers that start in [i, to) (and run on as far as they go) and codes
 * whose digits start there, byte by byte. Returns where it stopped. */
static size_t tokens_scalar(struct regions *r, const unsigned char *p, size_t n, size_t i,
			    size_t to)
{
	while (i < to && !r->err) {
		if (!is_digit(p[i])) {
			i++;
			continue;
		}
		size_t c = i >= 2 && is_upper(p[i - 1]) && is_upper(p[i - 2])	 ? i - 2
			   : i >= 3 && p[i - 1] == ' ' && is_upper(p[i - 2]) &&
				     is_upper(p[i - 3])				 ? i - 3
										 : SIZE_MAX;
		if (c != SIZE_MAX && i + 1 < n && is_digit(p[i + 1]) &&
		    (c == 0 || !word_byte(p[c - 1])))
			code_add(r, c, n);
		i = number_at(r, p, n, i);
	}
	return i;
}

#ifdef __SSE2__
/* Bit k: whether byte k of the 64 in x is in [lo, lo + span]. */
static inline uint64_t in_range64(const __m128i x[4], unsigned char lo, unsigned char span)
{
	uint64_t m = 0;
	for (int k = 0; k < 4; k++) {
		__m128i t = _mm_sub_epi8(x[k], _mm_set1_epi8((char)lo));
		__m128i in = _mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8((char)span)), t);
		m |= (uint64_t)(unsigned)_mm_movemask_epi8(in) << (16 * k);
	}
	return m;
}

static inline uint64_t eq64(const __m128i x[4], char c)
{
	uint64_t m = 0;
	for (int k = 0; k < 4; k++)
		m |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x[k], _mm_set1_epi8(c)))
		     << (16 * k);
	return m;
}

/* Bits [s, e) of m. */
static inline uint64_t bits(uint64_t m, unsigned s, unsigned e)
{
	uint64_t hi = e >= 64 ? ~0ull : (1ull << e) - 1;
	return m & hi & ~((1ull << s) - 1);
}

/* tokens_scalar for the 48 bytes from i, as bit masks of 64 bytes: byte
 * k of the block is bit k + 8, with 8 bytes of context on either side.
 * Numbers and codes are found by bit arithmetic; a number that may run
 * past the block goes to number_at. Needs i >= 8 and i + 56 <= n. Returns
 * where the next block starts. */
static size_t tokens_block(struct regions *r, const unsigned char *p, size_t n, size_t i)
{
	__m128i x[4];
	for (int k = 0; k < 4; k++)
		x[k] = _mm_loadu_si128((const __m128i *)(p + i - 8 + 16 * k));
	/* Numbers and codes both have a digit in the block (or just after
	 * it): most blocks of most text have none. */
	uint64_t D = in_range64(x, '0', 9);
	if (!bits(D, 8, 61))
		return i + 48;
	uint64_t U = in_range64(x, 'A', 25);
	uint64_t W = D | U | in_range64(x, 'a', 25) | eq64(x, '_');
	uint64_t S = eq64(x, ' ');
	uint64_t J = S | eq64(x, '-') | eq64(x, '.') | eq64(x, '(') | eq64(x, ')');
	/* A number: digits, and one or two joints between two digits. */
	uint64_t one = J & (D << 1) & (D >> 1);
	uint64_t two = J & (J >> 1) & (D << 1) & (D >> 2);
	uint64_t T = D | one | two | (two << 1);
	uint64_t starts = bits(T & ~(T << 1), 8, 56);
	/* A code, by its first digit d (as tokens_scalar sees it): digits at
	 * d and d + 1 after two capitals and a non-word byte, or after two
	 * capitals, a space and a non-word byte. */
	uint64_t two_digits = D & (D >> 1);
	uint64_t tight = two_digits & (U << 1) & (U << 2) & ~(W << 3);
	uint64_t spaced = two_digits & (S << 1) & (U << 2) & (U << 3) & ~(W << 4);
	uint64_t codes = bits(tight | spaced, 8, 56);
	uint64_t G3 = D & (D << 1) & (D << 2);
	uint64_t G8 = G3 & (G3 << 3) & (D << 6) & (D << 7);
	uint64_t todo = starts | codes;
	while (todo && !r->err) {
		unsigned k = (unsigned)__builtin_ctzll(todo);
		todo &= todo - 1;
		if (codes >> k & 1)
			code_add(r, i - 8 + k - (tight >> k & 1 ? 2 : 3), n);
		if (!(starts >> k & 1))
			continue;
		/* The number's end: the first byte after k not in T. A number
		 * whose end the block cannot see is walked byte by byte. */
		uint64_t rest = ~(T >> k);
		unsigned e = rest ? k + (unsigned)__builtin_ctzll(rest) : 64;
		if (e > 61) {
			size_t end = number_at(r, p, n, i - 8 + k);
			/* Codes later in this block are in the next one. */
			return end > i + 48 ? end : i + 48;
		}
		uint64_t y = D >> k;
		uint64_t first = y & ~(y + 1);
		bool shaped = bits(G8, k, e) || (bits(G3 >> k, 0, e - k) & ~first);
		if (__builtin_popcountll(bits(D, k, e)) >= 6 && shaped) {
			size_t a = i - 8 + k, last = i - 8 + e;
			region_add(r, a - 2, last < n ? last + 1 : n);
		}
	}
	return i + 48;
}
#endif

/* The DLP_RE_TOKEN patterns (dlp_internal.h) over the only places they can
 * match: numbers of six or more digits whose groups are joined by one or
 * two of space - . ( ), from two bytes before the first digit to one after
 * the last; and codes that start with two capitals and two digits (a
 * space may come between), DLP_TOKEN_MAX_WIDTH bytes on from one byte
 * before. One pass over the view, 48 bytes at a time as bit masks where
 * SSE2 is there (most blocks of most text have no digit), byte by byte
 * elsewhere. */
static int scan_tokens(scan *sc, const view *s)
{
	if (!sc->e->token)
		return 0;
	const unsigned char *p = (const unsigned char *)s->data;
	size_t n = s->len, i = 0;
	struct regions r = {.sc = sc, .s = s};
#ifdef __SSE2__
	i = tokens_scalar(&r, p, n, 0, n < 8 ? n : 8);
	while (!r.err && i >= 8 && n - i >= 56)
		i = tokens_block(&r, p, n, i);
#endif
	tokens_scalar(&r, p, n, i, n);
	region_flush(&r);
	sc->base = 0;
	return r.err;
}

/* Runs the detectors over the view s: the fast database over all of it,
 * then, where something matched, the som database over the bytes before
 * each end (as far back as the pattern's longest match), with the slices
 * that overlap merged. */
static int scan_hits(scan *sc, const view *s)
{
	sc->nends = 0;
	sc->base = 0;
	sc->sep_hex_end = 0;
	hs_error_t he = hs_scan(sc->e->fast, s->data, (unsigned)s->len, 0, sc->scratch, on_end, sc);
	if (sc->err)
		return sc->err;
	if (he != HS_SUCCESS && he != HS_SCAN_TERMINATED)
		return -EIO;
	int rc = scan_tokens(sc, s);
	if (rc < 0)
		return rc;
	if (sc->nends == 0)
		return 0;
	qsort(sc->ends, sc->nends, sizeof(*sc->ends), cmp_end);
	/* Each slice starts one byte before the longest match could, so that
	 * a match's start always has the byte before it (on_hit). */
	size_t i = 0;
	while (i < sc->nends) {
		size_t w = sc->e->refs[sc->ends[i].id].width + 1;
		size_t from = sc->ends[i].end > w ? sc->ends[i].end - w : 0, to = sc->ends[i].end;
		for (i++; i < sc->nends; i++) {
			size_t wj = sc->e->refs[sc->ends[i].id].width + 1;
			size_t fj = sc->ends[i].end > wj ? sc->ends[i].end - wj : 0;
			if (fj > to)
				break;
			if (fj < from)
				from = fj;
			to = sc->ends[i].end;
		}
		sc->base = from;
		he = hs_scan(sc->e->som, s->data + from, (unsigned)(to - from), 0, sc->scratch, on_hit,
			     sc);
		if (sc->err)
			return sc->err;
		if (he != HS_SUCCESS && he != HS_SCAN_TERMINATED)
			return -EIO;
	}
	return 0;
}

/* Scans v: its normalised copy (if normalisation changes anything) stands
 * in for it; then the regions its decoders reveal, one level deeper. */
static int scan_view(scan *sc, const view *v)
{
	dlp_buf nb = {0};
	view norm;
	const view *s = v;
	{
		/* Returns 0 at once, allocating nothing, when v is normal. */
		int n = dlp_normalize(v->data, v->len, &nb);
		if (n < 0)
			return n;
		if (n > 0) {
			norm = (view){.parent = v,
				      .data = nb.data,
				      .len = nb.len,
				      .map = nb.map,
				      .normalised = true,
				      .depth = v->depth};
			s = &norm;
		}
	}
	sc->v = s;
	int rc = scan_hits(sc, s);
	if (rc == 0 && s->depth < sc->max_depth) {
		dlp_decode_opts dop = {.content_type = s->depth == 0 ? sc->o->content_type : NULL,
				       .url = s->depth == 0 && sc->o->url,
				       .whole = true,
				       .max_out = DLP_WINDOW,
				       .sep_hex_from =
					   sc->sep_hex_end == 0 ? SIZE_MAX
					   : sc->sep_hex_end > gates[GATE_SEP_HEX].width
					       ? sc->sep_hex_end - gates[GATE_SEP_HEX].width
					       : 0};
		struct region_ctx rcx = {sc, s};
		rc = dlp_decode(s->data, s->len, &dop, on_region, &rcx);
	}
	dlp_buf_free(&nb);
	return rc;
}

/* ---- Windows -------------------------------------------------------------- */

static int cmp_finding(const void *a, const void *b)
{
	const dlp_finding *x = a, *y = b;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	if (x->end != y->end)
		return x->end > y->end ? -1 : 1;
	if (x->confidence != y->confidence)
		return x->confidence > y->confidence ? -1 : 1;
	if (x->nchain != y->nchain)
		return x->nchain < y->nchain ? -1 : 1;
	return strcmp(x->kind, y->kind);
}

/* A detector that names no format, only a keyword and a value: where a
 * specific detector found the same value, its finding says more. */
static bool generic_kind(const char *kind)
{
	return strcmp(kind, "generic_api_key") == 0 || strcmp(kind, "password_assignment") == 0;
}

static bool overlap(const dlp_finding *a, const dlp_finding *b)
{
	return a->start < b->end && b->start < a->end;
}

/* One finding per kind and place: of findings of one kind that overlap,
 * the first (sorted: widest, most confident, fewest decoders) stays; a
 * generic finding overlapping a specific one goes. */
static void dedupe(dlp_findings *f, size_t from)
{
	if (f->n <= from)
		return;
	dlp_finding *v = f->v + from;
	size_t n = f->n - from, out = 0;
	qsort(v, n, sizeof(*v), cmp_finding);
	/* Sorted by start: the later findings that overlap v[i] start
	 * before it ends, so that scan stops at the first that does not. */
	for (size_t i = 0; i < n; i++) {
		bool drop = false;
		for (size_t j = i; j-- > 0 && !drop;) {
			if (!v[j].kind || !overlap(&v[i], &v[j]))
				continue;
			drop = strcmp(v[i].kind, v[j].kind) == 0 ||
			       (generic_kind(v[i].kind) && !generic_kind(v[j].kind));
		}
		for (size_t j = i + 1; j < n && v[j].start < v[i].end && !drop; j++)
			drop = generic_kind(v[i].kind) && !generic_kind(v[j].kind);
		if (drop) {
			free(v[i].value);
			v[i].value = NULL;
			v[i].kind = NULL;
		}
	}
	for (size_t i = 0; i < n; i++)
		if (v[i].kind)
			v[out++] = v[i];
	f->n = from + out;
}

/* Scans one window (bytes at stream offset base) and appends to out the
 * findings that start before report_to (window offsets), shifted by base. */
static int scan_window(const dlp_engine *e, const dlp_opts *o, const char *data, size_t len,
		       size_t base, size_t report_to, dlp_findings *out)
{
	/* The pool is the engine's one mutable part, behind its lock. */
	dlp_engine *pool = (dlp_engine *)e;
	hs_scratch_t *scratch = scratch_take(pool);
	if (!scratch)
		return -ENOMEM;
	dlp_findings local = {0};
	scan sc = {.e = e,
		   .o = o,
		   .scratch = scratch,
		   .out = &local,
		   .min_conf = o->min_confidence > 0 ? o->min_confidence : DLP_DEFAULT_MIN_CONFIDENCE,
		   .max_depth = o->max_depth > 0 ? (o->max_depth < DLP_MAX_DEPTH ? o->max_depth
										: DLP_MAX_DEPTH)
						 : DLP_DEFAULT_DEPTH};
	view root = {.data = data, .len = len};
	int rc = scan_view(&sc, &root);
	scratch_give(pool, scratch);
	free(sc.ends);
	dedupe(&local, 0);
	for (size_t i = 0; i < local.n; i++) {
		dlp_finding f = local.v[i];
		local.v[i].value = NULL;
		if (f.start >= report_to) {
			free(f.value);
			continue;
		}
		f.start += base;
		f.end += base;
		int prc = findings_push(out, &f);
		if (prc < 0 && rc == 0)
			rc = prc;
	}
	if (local.truncated)
		out->truncated = true;
	dlp_findings_free(&local);
	return rc;
}

int dlp_scan(const dlp_engine *e, const void *data, size_t len, const dlp_opts *o,
	     dlp_findings *out)
{
	static const dlp_opts none;
	if (!o)
		o = &none;
	const char *d = data;
	size_t base = 0;
	for (;;) {
		size_t n = len - base;
		bool last = n <= DLP_WINDOW;
		if (!last)
			n = DLP_WINDOW;
		int rc = scan_window(e, o, d + base, n, base, last ? n : n - DLP_OVERLAP, out);
		if (rc < 0 || last)
			return rc;
		base += n - DLP_OVERLAP;
	}
}

/* ---- Streams -------------------------------------------------------------- */

struct dlp_stream {
	const dlp_engine *e;
	dlp_opts o;
	char *buf; /* DLP_WINDOW bytes: the overlap kept, then what arrived */
	size_t len;
	size_t base; /* the stream offset of buf[0] */
	int err;
};

dlp_stream *dlp_stream_open(const dlp_engine *e, const dlp_opts *o)
{
	dlp_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->buf = malloc(DLP_WINDOW);
	if (!s->buf) {
		free(s);
		return NULL;
	}
	s->e = e;
	if (o)
		s->o = *o;
	/* A stream is never a whole body of one view: the decoders of
	 * whole regions still run on what they reveal. */
	return s;
}

int dlp_stream_feed(dlp_stream *s, const void *data, size_t len, dlp_findings *out)
{
	const char *d = data;
	if (s->err)
		return s->err;
	while (len > 0) {
		size_t room = DLP_WINDOW - s->len, n = len < room ? len : room;
		memcpy(s->buf + s->len, d, n);
		s->len += n;
		d += n;
		len -= n;
		if (s->len < DLP_WINDOW)
			break;
		int rc = scan_window(s->e, &s->o, s->buf, s->len, s->base,
				     s->len - DLP_OVERLAP, out);
		if (rc < 0)
			return s->err = rc;
		memmove(s->buf, s->buf + s->len - DLP_OVERLAP, DLP_OVERLAP);
		s->base += s->len - DLP_OVERLAP;
		s->len = DLP_OVERLAP;
	}
	return 0;
}

int dlp_stream_close(dlp_stream *s, dlp_findings *out)
{
	if (!s)
		return 0;
	int rc = s->err;
	if (rc == 0 && s->len > 0)
		rc = scan_window(s->e, &s->o, s->buf, s->len, s->base, s->len, out);
	free(s->buf);
	free(s);
	return rc;
}

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
#include <hs/hs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlp_internal.h"

#define DLP_WINDOW (1u << 20)
#define DLP_OVERLAP (16u << 10)

struct pattern_ref {
	const dlp_detector *det;
	unsigned pattern;
};

struct dlp_engine {
	hs_database_t *db;
	struct pattern_ref *refs; /* by Hyperscan id */
	size_t nrefs;
};

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

dlp_engine *dlp_engine_new(char *err, size_t errlen)
{
	size_t n = 0;
	for (size_t i = 0; i < dlp_detector_count(); i++)
		n += detector_at(i)->npatterns;
	dlp_engine *e = calloc(1, sizeof(*e));
	const char **res = calloc(n ? n : 1, sizeof(*res));
	unsigned *flags = calloc(n ? n : 1, sizeof(*flags));
	unsigned *ids = calloc(n ? n : 1, sizeof(*ids));
	if (e)
		e->refs = calloc(n ? n : 1, sizeof(*e->refs));
	if (!e || !res || !flags || !ids || !e->refs) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (size_t i = 0, k = 0; i < dlp_detector_count(); i++) {
		const dlp_detector *d = detector_at(i);
		for (unsigned p = 0; p < d->npatterns; p++, k++) {
			res[k] = d->patterns[p].re;
			flags[k] = HS_FLAG_SOM_LEFTMOST |
				   (d->patterns[p].flags & DLP_RE_CASELESS ? HS_FLAG_CASELESS : 0);
			ids[k] = (unsigned)k;
			e->refs[k] = (struct pattern_ref){d, p};
		}
	}
	e->nrefs = n;
	if (n == 0) {
		snprintf(err, errlen, "no detectors");
		goto fail;
	}
	hs_compile_error_t *ce = NULL;
	if (hs_compile_multi(res, flags, ids, (unsigned)n, HS_MODE_BLOCK, NULL, &e->db, &ce) !=
	    HS_SUCCESS) {
		if (ce && ce->expression >= 0 && (size_t)ce->expression < n) {
			const struct pattern_ref *r = &e->refs[ce->expression];
			snprintf(err, errlen, "detector %s, pattern %u: %s", r->det->kind, r->pattern,
				 ce->message);
		} else {
			snprintf(err, errlen, "compiling the detectors: %s",
				 ce ? ce->message : "unknown error");
		}
		hs_free_compile_error(ce);
		goto fail;
	}
	free(res);
	free(flags);
	free(ids);
	return e;
fail:
	free(res);
	free(flags);
	free(ids);
	dlp_engine_free(e);
	return NULL;
}

void dlp_engine_free(dlp_engine *e)
{
	if (!e)
		return;
	hs_free_database(e->db);
	free(e->refs);
	free(e);
}

/* Each thread keeps one scratch, grown to fit any engine it scans with. */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_release(void *s)
{
	hs_free_scratch(s);
}

static void scratch_key_make(void)
{
	pthread_key_create(&scratch_key, scratch_release);
}

static hs_scratch_t *scratch_for(const dlp_engine *e)
{
	pthread_once(&scratch_once, scratch_key_make);
	hs_scratch_t *s = pthread_getspecific(scratch_key);
	hs_scratch_t *grown = s;
	if (hs_alloc_scratch(e->db, &grown) != HS_SUCCESS)
		return NULL;
	if (grown != s)
		pthread_setspecific(scratch_key, grown);
	return grown;
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

static int on_hit(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
		  void *ctx)
{
	(void)flags;
	scan *sc = ctx;
	const struct pattern_ref *r = &sc->e->refs[id];
	const view *v = sc->v;
	if (to <= from || to > v->len)
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

/* Scans v: its normalised copy (if normalisation changes anything) stands
 * in for it; then the regions its decoders reveal, one level deeper. */
static int scan_view(scan *sc, const view *v)
{
	dlp_buf nb = {0};
	view norm;
	const view *s = v;
	bool maybe = false;
	for (size_t i = 0; i < v->len && !maybe; i++) {
		unsigned char c = (unsigned char)v->data[i];
		maybe = c >= 0x80 || c == '&' || c == '\\';
	}
	if (maybe) {
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
	hs_error_t he = hs_scan(sc->e->db, s->data, (unsigned)s->len, 0, sc->scratch, on_hit, sc);
	int rc = sc->err;
	if (rc == 0 && he != HS_SUCCESS && he != HS_SCAN_TERMINATED)
		rc = -EIO;
	if (rc == 0 && s->depth < sc->max_depth) {
		dlp_decode_opts dop = {.content_type = s->depth == 0 ? sc->o->content_type : NULL,
				       .url = s->depth == 0 && sc->o->url,
				       .whole = true,
				       .max_out = DLP_WINDOW};
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
	dlp_finding *v = f->v + from;
	size_t n = f->n - from, out = 0;
	qsort(v, n, sizeof(*v), cmp_finding);
	for (size_t i = 0; i < n; i++) {
		bool drop = false;
		for (size_t j = 0; j < n && !drop; j++) {
			if (j == i || !overlap(&v[i], &v[j]))
				continue;
			if (strcmp(v[i].kind, v[j].kind) == 0)
				drop = j < i && v[j].kind; /* an earlier one of the kind stays */
			else if (generic_kind(v[i].kind) && !generic_kind(v[j].kind))
				drop = true;
		}
		if (drop) {
			free(v[i].value);
			v[i].value = NULL;
			v[i].kind = NULL;
			continue;
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
	hs_scratch_t *scratch = scratch_for(e);
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

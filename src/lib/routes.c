/* routes.c - the learned-routes store, $AGENTBOX_HOME/routes.json
 * (docs/router.md, "Learned routes").
 *
 * When a cell routed to nano fails because of the tier, the daemon reruns it
 * in heavy and records the cause here: a module (every later cell importing
 * it routes to heavy) or one cell, by a SHA-256 digest the daemon computes
 * (of the client's uid and the code), for a refused system call or nano's
 * memory cap. Every client of the daemon shares the file, so an entry's
 * reason is only a kind of cause from a fixed list, never a run's own text;
 * files of the older format, whose reasons quoted that text, are migrated
 * on load (parse_store). The store is one small JSON file, replaced
 * atomically. More than one process may save it (the daemon, `agentbox
 * routes clear`), so a save re-reads the file under an exclusive lock and
 * merges three ways: each entry remembers its hit count as of the last load
 * or save (base_hits, 0 for an entry the file did not have then), and the
 * store remembers the keys it forgot since. For each key at save time:
 *
 *  - in memory and in the file: one entry, with the file's hits plus the hits
 *    added in memory since the load; the later "last" and its reason;
 *  - only in memory: kept if it was learned or refreshed since the load; if
 *    it was merely loaded, another process removed it from the file, and it
 *    stays removed (a `routes clear` wins over a daemon that did not reload);
 *  - only in the file: another process learned it; kept, unless this store
 *    forgot that key since the load.
 *
 * Then the caps apply: the entries with the oldest "last" go first.
 *
 * Only jansson and libc: the executor links every library object but the
 * audit log. A handle is used by one thread at a time. */
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "internal.h"
#include "fileio.h"
#include "utf8.h"

#define FORMAT_NAME "agentbox-routes/2"
/* The format before reasons were kinds of cause: loaded and migrated. */
#define FORMAT_LEGACY "agentbox-routes/1"
/* What a module entry of the legacy format needed heavy for. */
#define CAUSE_MODULE "module missing in nano"
#define FILE_MAX (16u << 20)
#define MODULES_MAX 1024u
#define CELLS_MAX 4096u
#define MODULE_NAME_MAX 128u
#define REASON_MAX 255u
#define DIGEST_HEX 64u
/* Hit counts saturate here (well inside a JSON number's exact range). */
#define HITS_MAX ((int64_t)1 << 50)
#define TIME_FORMAT "%Y-%m-%dT%H:%M:%SZ"

enum kind { K_MODULE, K_CELL, N_KINDS };

static const struct {
	const char *name;   /* for ab_routes_learn and messages */
	const char *member; /* of the file's top-level object */
	size_t cap;
} kinds[N_KINDS] = {
    [K_MODULE] = {"module", "modules", MODULES_MAX},
    [K_CELL] = {"cell", "cells", CELLS_MAX},
};

/* The key is the first member of both element types: bisect() relies on it. */
struct entry {
	char *key;
	char *reason;
	int64_t learned, last; /* seconds since 1970, UTC */
	int64_t hits;
	int64_t base_hits; /* hits as of the last load or save; 0: not in the file then */
};

struct table {
	struct entry *v; /* sorted by key */
	size_t n, cap;
};

struct keyset {
	char **v; /* sorted, distinct */
	size_t n, cap;
};

/* Which file r was read from or written to, to tell when it changed. */
struct file_id {
	bool exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
};

struct ab_routes {
	struct table t[N_KINDS];
	bool migrated;			  /* loaded from a FORMAT_LEGACY file */
	struct keyset forgotten[N_KINDS]; /* keys forgotten since the last load or save */
	struct file_id id;
	const char *modules[MODULES_MAX + 1]; /* ab_routes_modules(): borrows t[K_MODULE] keys */
};

static void routes_freep(ab_routes **r)
{
	ab_routes_free(*r);
}
#define AUTOROUTES __attribute__((cleanup(routes_freep)))

/* ----------------------------------------------------------- keys, times */

static int kind_from_name(const char *name)
{
	for (int k = 0; k < N_KINDS; k++)
		if (name && strcmp(name, kinds[k].name) == 0)
			return k;
	return -1;
}

/* A dotted Python identifier in ASCII ("scipy", "xml.dom"), at most 128 bytes. */
static bool valid_module(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > MODULE_NAME_MAX)
		return false;
	bool start = true; /* at the start of a component */
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '.') {
			if (start)
				return false;
			start = true;
			continue;
		}
		bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
		bool digit = c >= '0' && c <= '9';
		if (!letter && !(digit && !start))
			return false;
		start = false;
	}
	return !start;
}

static const char *const causes[] = {
    CAUSE_MODULE,		/* a module on the nano list, missing in nano */
    "module not in nano",	/* imported where the router could not see it */
    "refused by the nano jail", /* seccomp's EPERM, Landlock's EACCES, ENOSYS */
    "read-only in nano",	/* EROFS */
    "nano's memory cap",	/* MemoryError, or killed at the cap */
    NULL,
};

static bool valid_cause(const char *s)
{
	for (const char *const *c = causes; s && *c; c++)
		if (strcmp(s, *c) == 0)
			return true;
	return false;
}

static bool valid_digest(const char *s)
{
	return strlen(s) == DIGEST_HEX && strspn(s, "0123456789abcdef") == DIGEST_HEX;
}

static bool valid_key(int k, const char *key)
{
	return key && (k == K_MODULE ? valid_module(key) : valid_digest(key));
}

static int key_error(ab_error *err, int k, const char *key, const char *prefix)
{
	if (k == K_MODULE)
		return ab_error_set(err, -EINVAL,
				    "%sbad module name \"%.80s\": expected a dotted Python "
				    "identifier (ASCII letters, digits, _) of at most 128 bytes",
				    prefix, key ? key : "(null)");
	return ab_error_set(
	    err, -EINVAL, "%sbad cell digest \"%.80s\": expected 64 lowercase hex digits (SHA-256)",
	    prefix, key ? key : "(null)");
}

static void format_time(int64_t t, char out[32])
{
	time_t s = (time_t)t;
	struct tm tm;
	if (!gmtime_r(&s, &tm) || strftime(out, 32, TIME_FORMAT, &tm) == 0)
		snprintf(out, 32, "1970-01-01T00:00:00Z");
}

/* YYYY-MM-DDTHH:MM:SS[.fraction]Z; the fraction is ignored. */
static bool parse_time(const char *s, int64_t *out)
{
	struct tm tm = {0};
	const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return false;
	if (*p == '.') {
		size_t digits = strspn(p + 1, "0123456789");
		if (digits == 0)
			return false;
		p += 1 + digits;
	}
	if (strcmp(p, "Z") != 0)
		return false;
	time_t t = timegm(&tm);
	if (t == (time_t)-1 || t < 0)
		return false;
	*out = (int64_t)t;
	return true;
}

/* A copy of reason as valid UTF-8 (bad bytes become U+FFFD) of at most 255
 * bytes, cut before a whole character. NULL when out of memory. */
static char *clean_reason(const char *reason)
{
	/* Bytes from input offset p land at output offset >= p, so whatever a
	 * cut inside a character leaves at offset >= 255 is cut again below. */
	size_t len = strnlen(reason, REASON_MAX + 3);
	char carry[4];
	size_t ncarry = 0;
	json_t *s AB_AUTOJSON = ab__utf8_chunk(reason, len, carry, &ncarry, true);
	if (!s)
		return NULL;
	const char *v = json_string_value(s);
	size_t n = json_string_length(s);
	if (n > REASON_MAX) {
		n = REASON_MAX;
		while (n > 0 && ((unsigned char)v[n] & 0xc0) == 0x80)
			n--;
	}
	return strndup(v, n);
}

static int64_t hits_add(int64_t a, int64_t b)
{
	return a > HITS_MAX - b ? HITS_MAX : a + b;
}

/* ------------------------------------------------------- sorted arrays */

/* Position of key in the sorted array base (n elements of size bytes, each
 * starting with its char * key), or where it would be inserted. */
static size_t bisect(const void *base, size_t n, size_t size, const char *key, bool *found)
{
	size_t lo = 0, hi = n;
	*found = false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *k = *(char *const *)(const void *)((const char *)base + mid * size);
		int c = strcmp(k, key);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool grow(void **v, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return true;
	size_t ncap = *cap ? *cap : 16;
	while (ncap < need)
		ncap *= 2;
	void *nv = realloc(*v, ncap * size);
	if (!nv)
		return false;
	*v = nv;
	*cap = ncap;
	return true;
}

static const struct entry *table_get(const struct table *t, const char *key)
{
	bool found;
	size_t i = bisect(t->v, t->n, sizeof(*t->v), key, &found);
	return found ? &t->v[i] : NULL;
}

/* Inserts e at pos; the table takes e's strings. */
static int table_insert(struct table *t, size_t pos, const struct entry *e)
{
	if (!grow((void **)&t->v, &t->cap, t->n + 1, sizeof(*t->v)))
		return -ENOMEM;
	memmove(t->v + pos + 1, t->v + pos, (t->n - pos) * sizeof(*t->v));
	t->v[pos] = *e;
	t->n++;
	return 0;
}

/* Appends a copy of e, whose key sorts after every key in t, as it is in
 * the file: base_hits = hits. */
static int table_append_copy(struct table *t, const struct entry *e)
{
	struct entry c = *e;
	c.key = strdup(e->key);
	c.reason = strdup(e->reason);
	c.base_hits = c.hits;
	if (!c.key || !c.reason || table_insert(t, t->n, &c) < 0) {
		free(c.key);
		free(c.reason);
		return -ENOMEM;
	}
	return 0;
}

static void table_remove(struct table *t, size_t i)
{
	free(t->v[i].key);
	free(t->v[i].reason);
	memmove(t->v + i, t->v + i + 1, (t->n - i - 1) * sizeof(*t->v));
	t->n--;
}

static void table_clear(struct table *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].key);
		free(t->v[i].reason);
	}
	free(t->v);
	*t = (struct table){0};
}

/* Oldest first: by "last", then "learned", then key. */
static int by_age(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	if (x->last != y->last)
		return x->last < y->last ? -1 : 1;
	if (x->learned != y->learned)
		return x->learned < y->learned ? -1 : 1;
	return strcmp(x->key, y->key);
}

static int by_key(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->key, ((const struct entry *)b)->key);
}

/* Drops the oldest entries until at most cap are left. */
static void table_evict(struct table *t, size_t cap)
{
	if (t->n <= cap)
		return;
	if (t->n == cap + 1) {
		size_t old = 0;
		for (size_t i = 1; i < t->n; i++)
			if (by_age(&t->v[i], &t->v[old]) < 0)
				old = i;
		table_remove(t, old);
		return;
	}
	qsort(t->v, t->n, sizeof(*t->v), by_age);
	size_t drop = t->n - cap;
	for (size_t i = 0; i < drop; i++) {
		free(t->v[i].key);
		free(t->v[i].reason);
	}
	memmove(t->v, t->v + drop, cap * sizeof(*t->v));
	t->n = cap;
	qsort(t->v, t->n, sizeof(*t->v), by_key);
}

static bool keyset_has(const struct keyset *s, const char *key)
{
	bool found;
	bisect(s->v, s->n, sizeof(*s->v), key, &found);
	return found;
}

/* Adds key, taking it (freed if already there); room must be reserved. */
static void keyset_add(struct keyset *s, char *key)
{
	bool found;
	size_t pos = bisect(s->v, s->n, sizeof(*s->v), key, &found);
	if (found) {
		free(key);
		return;
	}
	memmove(s->v + pos + 1, s->v + pos, (s->n - pos) * sizeof(*s->v));
	s->v[pos] = key;
	s->n++;
}

static void keyset_clear(struct keyset *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	*s = (struct keyset){0};
}

static void rebuild_modules(ab_routes *r)
{
	const struct table *t = &r->t[K_MODULE];
	size_t n = t->n < MODULES_MAX ? t->n : MODULES_MAX;
	for (size_t i = 0; i < n; i++)
		r->modules[i] = t->v[i].key;
	r->modules[n] = NULL;
}

/* ------------------------------------------------------------- the file */

static void id_from_stat(struct file_id *id, const struct stat *st)
{
	*id = (struct file_id){
	    .exists = true,
	    .dev = st->st_dev,
	    .ino = st->st_ino,
	    .size = st->st_size,
	    .mtime = st->st_mtim,
	    .ctime = st->st_ctim,
	};
}

/* Reads the whole file into *buf (NULL and id->exists false if there is
 * none). */
static int read_file(const char *path, char **buf, size_t *len, struct file_id *id, ab_error *err)
{
	*buf = NULL;
	*len = 0;
	/* O_NONBLOCK: a FIFO planted at path must not hang the open. */
	int fd AB_AUTOCLOSE = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) {
			*id = (struct file_id){.exists = false};
			return 0;
		}
		return ab_error_errno(err, -errno, "open routes file %s", path);
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return ab_error_errno(err, -errno, "stat routes file %s", path);
	if (!S_ISREG(st.st_mode))
		return ab_error_set(err, -EINVAL, "routes file %s: not a regular file", path);
	if (st.st_size > (off_t)FILE_MAX)
		return ab_error_set(err, -EFBIG,
				    "routes file %s: %lld bytes, more than the limit of 16 MiB",
				    path, (long long)st.st_size);
	size_t cap = (size_t)st.st_size + 1, n = 0;
	char *b AB_AUTOFREE = malloc(cap);
	if (!b)
		return ab_error_set(err, -ENOMEM, "read routes file %s: out of memory", path);
	while (n < cap) {
		ssize_t r = read(fd, b + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return ab_error_errno(err, -errno, "read routes file %s", path);
		if (r == 0)
			break;
		n += (size_t)r;
	}
	/* Saves replace the file, never write into it: a file that grows while
	 * it is read is being edited by hand. */
	if (n == cap)
		return ab_error_set(err, -EAGAIN, "routes file %s: changed while being read", path);
	id_from_stat(id, &st);
	*buf = ab_steal_ptr(&b);
	*len = n;
	return 0;
}

static int parse_entry(const char *path, int k, const char *key, json_t *v, ab_routes *r,
		       bool legacy, ab_error *err)
{
	char where[256];
	snprintf(where, sizeof(where), "routes file %s: %s.%.80s", path, kinds[k].member, key);
	if (!valid_key(k, key)) {
		char prefix[sizeof(where) + 4];
		snprintf(prefix, sizeof(prefix), "routes file %s: %s: ", path, kinds[k].member);
		return key_error(err, k, key, prefix);
	}
	if (!json_is_object(v))
		return ab_error_set(err, -EINVAL, "%s: not an object", where);
	json_t *reason = json_object_get(v, "reason");
	if (!json_is_string(reason))
		return ab_error_set(err, -EINVAL, "%s: \"reason\" is not a string", where);
	if (!legacy && !valid_cause(json_string_value(reason)))
		return ab_error_set(err, -EINVAL,
				    "%s: \"reason\" is not a kind of cause (\"%s\", ...)", where,
				    CAUSE_MODULE);
	struct entry e = {0};
	static const char *const times[] = {"learned", "last"};
	int64_t *slots[] = {&e.learned, &e.last};
	for (size_t i = 0; i < 2; i++) {
		const char *s = json_string_value(json_object_get(v, times[i]));
		if (!s || !parse_time(s, slots[i]))
			return ab_error_set(err, -EINVAL,
					    "%s: \"%s\" is not a UTC time such as "
					    "2026-11-26T06:00:00Z",
					    where, times[i]);
	}
	json_t *hits = json_object_get(v, "hits");
	if (!json_is_integer(hits) || json_integer_value(hits) < 1)
		return ab_error_set(err, -EINVAL, "%s: \"hits\" is not a positive integer", where);
	e.hits = json_integer_value(hits) > HITS_MAX ? HITS_MAX : json_integer_value(hits);
	e.base_hits = e.hits;
	bool found;
	size_t pos = bisect(r->t[k].v, r->t[k].n, sizeof(struct entry), key, &found);
	e.key = strdup(key);
	/* A legacy reason quotes the error text of whoever ran the cell: it
	 * is not kept (only module entries are, see parse_store). */
	e.reason = legacy ? strdup(CAUSE_MODULE) : clean_reason(json_string_value(reason));
	if (!e.key || !e.reason || table_insert(&r->t[k], pos, &e) < 0) {
		free(e.key);
		free(e.reason);
		return ab_error_set(err, -ENOMEM, "read routes file %s: out of memory", path);
	}
	return 0;
}

static int parse_store(const char *path, const char *buf, size_t len, ab_routes *r, ab_error *err)
{
	json_error_t je;
	json_t *root AB_AUTOJSON = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return ab_error_set(err, -EINVAL,
				    "routes file %s: not valid JSON: %s (line %d, column %d)", path,
				    je.text, je.line, je.column);
	if (!json_is_object(root))
		return ab_error_set(err, -EINVAL, "routes file %s: not a JSON object", path);
	const char *format = json_string_value(json_object_get(root, "format"));
	if (!format)
		return ab_error_set(err, -EINVAL,
				    "routes file %s: no \"format\": not an agentbox routes file",
				    path);
	bool legacy = strcmp(format, FORMAT_LEGACY) == 0;
	if (strcmp(format, FORMAT_NAME) != 0 && !legacy)
		return ab_error_set(err, -EINVAL, "routes file %s: format \"%.64s\" is not \"%s\"",
				    path, format, FORMAT_NAME);
	for (int k = 0; k < N_KINDS; k++) {
		json_t *tab = json_object_get(root, kinds[k].member);
		if (!tab)
			continue;
		if (!json_is_object(tab))
			return ab_error_set(err, -EINVAL, "routes file %s: \"%s\" is not an object",
					    path, kinds[k].member);
		if (json_object_size(tab) > kinds[k].cap)
			return ab_error_set(err, -EINVAL, "routes file %s: %zu %s, more than %zu",
					    path, json_object_size(tab), kinds[k].member,
					    kinds[k].cap);
		const char *key;
		json_t *v;
		json_object_foreach(tab, key, v)
		{
			int rc = parse_entry(path, k, key, v, r, legacy, err);
			if (rc < 0)
				return rc;
		}
	}
	if (legacy) {
		/* Its cell digests were of the code alone, the same for every
		 * client, and its reasons quoted error text: the cells go (they
		 * are relearned, scoped, when they fail again), the modules
		 * stay with their kind of cause. Saving writes the new format. */
		table_clear(&r->t[K_CELL]);
		r->migrated = true;
	}
	return 0;
}

static int load(const char *path, ab_routes **out, ab_error *err)
{
	*out = NULL;
	ab_routes *r AUTOROUTES = calloc(1, sizeof(*r));
	if (!r)
		return ab_error_set(err, -ENOMEM, "load learned routes: out of memory");
	char *buf AB_AUTOFREE = NULL;
	size_t len;
	int rc = read_file(path, &buf, &len, &r->id, err);
	if (rc == 0 && r->id.exists)
		rc = parse_store(path, buf, len, r, err);
	if (rc < 0)
		return rc;
	rebuild_modules(r);
	*out = ab_steal_ptr(&r);
	return 0;
}

static json_t *tables_to_json(const struct table t[N_KINDS])
{
	json_t *root AB_AUTOJSON = json_object();
	if (!root || json_object_set_new(root, "format", json_string(FORMAT_NAME)) < 0)
		return NULL;
	for (int k = 0; k < N_KINDS; k++) {
		json_t *tab = json_object();
		if (json_object_set_new(root, kinds[k].member, tab) < 0)
			return NULL;
		for (size_t i = 0; i < t[k].n; i++) {
			const struct entry *e = &t[k].v[i];
			char learned[32], last[32];
			format_time(e->learned, learned);
			format_time(e->last, last);
			json_t *o =
			    json_pack("{s:s, s:s, s:s, s:I}", "reason", e->reason, "learned",
				      learned, "last", last, "hits", (json_int_t)e->hits);
			if (json_object_set_new(tab, e->key, o) < 0)
				return NULL;
		}
	}
	return ab_steal_ptr(&root);
}

/* Replaces path with doc: a temporary file in the same directory (mode
 * 0600), fsynced, renamed over path. Fills id with the new file's. */
static int write_atomic(const char *path, const json_t *doc, struct file_id *id, ab_error *err)
{
	char *text AB_AUTOFREE = json_dumps(doc, JSON_INDENT(2));
	if (!text)
		return ab_error_set(err, -ENOMEM, "write routes file %s: out of memory", path);
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp))
		return ab_error_set(err, -ENAMETOOLONG, "routes file %s: path too long", path);
	int fd AB_AUTOCLOSE = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return ab_error_errno(err, -errno, "create temporary file for routes file %s",
				      path);
	int rc = fchmod(fd, 0600) < 0 ? -errno : 0;
	if (rc == 0)
		rc = ab__write_all(fd, text, strlen(text));
	if (rc == 0)
		rc = ab__write_all(fd, "\n", 1);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return ab_error_errno(err, rc, "write routes file %s", path);
	}
	ab__fsync_parent(path);
	struct stat st;
	if (fstat(fd, &st) == 0)
		id_from_stat(id, &st);
	else
		*id = (struct file_id){.exists = true};
	return 0;
}

/* The three-way merge of one kind (see the top of this file) into out,
 * sorted, every entry with base_hits = hits. */
static int merge_kind(const struct table *mem, const struct keyset *forgot,
		      const struct table *file, struct table *out)
{
	size_t i = 0, j = 0;
	while (i < mem->n || j < file->n) {
		int c = i == mem->n ? 1 : j == file->n ? -1 : strcmp(mem->v[i].key, file->v[j].key);
		const struct entry *m = c <= 0 ? &mem->v[i++] : NULL;
		const struct entry *f = c >= 0 ? &file->v[j++] : NULL;
		bool forgotten = keyset_has(forgot, m ? m->key : f->key);
		struct entry e;
		if (!m) {
			if (forgotten)
				continue; /* forgotten here since the load */
			e = *f;		  /* learned by another process */
		} else if (forgotten || m->base_hits == 0) {
			e = *m; /* learned here (again) since the load */
		} else if (!f) {
			if (m->hits == m->base_hits)
				continue; /* removed by another process */
			/* Removed by another process, then learned again here. */
			e = *m;
			e.hits = m->hits - m->base_hits;
			e.learned = m->last;
		} else if (m->hits == m->base_hits) {
			e = *f; /* unchanged here */
		} else {
			e = *f;
			e.hits = hits_add(f->hits, m->hits - m->base_hits);
			if (m->learned < e.learned)
				e.learned = m->learned;
			if (m->last >= f->last) {
				e.last = m->last;
				e.reason = m->reason;
			}
		}
		int rc = table_append_copy(out, &e);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------ public API */

int ab_routes_load(const char *path, ab_routes **out, ab_error *err)
{
	return load(path, out, err);
}

void ab_routes_free(ab_routes *r)
{
	if (!r)
		return;
	for (int k = 0; k < N_KINDS; k++) {
		table_clear(&r->t[k]);
		keyset_clear(&r->forgotten[k]);
	}
	free(r);
}

const char *const *ab_routes_modules(const ab_routes *r)
{
	static const char *const none[] = {NULL};
	return r ? r->modules : none;
}

const char *ab_routes_cell(const ab_routes *r, const char *sha256_hex)
{
	if (!r || !sha256_hex)
		return NULL;
	const struct entry *e = table_get(&r->t[K_CELL], sha256_hex);
	return e ? e->reason : NULL;
}

const char *const *ab_routes_causes(void)
{
	return causes;
}

bool ab_routes_migrated(const ab_routes *r)
{
	return r && r->migrated;
}

int ab_routes_learn(ab_routes *r, const char *kind, const char *key, const char *reason,
		    ab_error *err)
{
	int k = kind_from_name(kind);
	if (k < 0)
		return ab_error_set(err, -EINVAL,
				    "learn route: unknown kind \"%.40s\" (module or cell)",
				    kind ? kind : "(null)");
	if (!valid_key(k, key))
		return key_error(err, k, key, "learn route: ");
	if (!valid_cause(reason))
		return ab_error_set(err, -EINVAL,
				    "learn route: reason \"%.60s\" is not a kind of cause "
				    "(ab_routes_causes)",
				    reason ? reason : "(null)");
	char *why = clean_reason(reason ? reason : "");
	if (!why)
		return ab_error_set(err, -ENOMEM, "learn route: out of memory");
	int64_t now = (int64_t)time(NULL);
	struct table *t = &r->t[k];
	bool found;
	size_t pos = bisect(t->v, t->n, sizeof(*t->v), key, &found);
	if (found) {
		struct entry *e = &t->v[pos];
		free(e->reason);
		e->reason = why;
		e->last = now;
		e->hits = hits_add(e->hits, 1);
		return 0;
	}
	struct entry e = {.reason = why, .learned = now, .last = now, .hits = 1};
	e.key = strdup(key);
	if (!e.key || !grow((void **)&t->v, &t->cap, t->n + 1, sizeof(*t->v))) {
		free(e.key);
		free(why);
		return ab_error_set(err, -ENOMEM, "learn route: out of memory");
	}
	if (t->n >= kinds[k].cap) {
		table_evict(t, kinds[k].cap - 1);
		pos = bisect(t->v, t->n, sizeof(*t->v), key, &found);
	}
	table_insert(t, pos, &e); /* cannot fail: room reserved above */
	if (k == K_MODULE)
		rebuild_modules(r);
	return 0;
}

int ab_routes_forget(ab_routes *r, const char *kind, const char *key)
{
	int first = 0, last = N_KINDS - 1;
	if (kind) {
		first = last = kind_from_name(kind);
		if (first < 0)
			return -EINVAL;
	}
	int removed = 0;
	for (int k = first; k <= last; k++) {
		struct table *t = &r->t[k];
		struct keyset *s = &r->forgotten[k];
		if (!key) {
			if (!grow((void **)&s->v, &s->cap, s->n + t->n, sizeof(*s->v)))
				return -ENOMEM;
			for (size_t i = 0; i < t->n; i++) {
				keyset_add(s, t->v[i].key);
				free(t->v[i].reason);
			}
			removed += (int)t->n;
			t->n = 0;
			continue;
		}
		bool found;
		size_t pos = bisect(t->v, t->n, sizeof(*t->v), key, &found);
		if (!found)
			continue;
		if (!grow((void **)&s->v, &s->cap, s->n + 1, sizeof(*s->v)))
			return -ENOMEM;
		keyset_add(s, ab_steal_ptr(&t->v[pos].key));
		table_remove(t, pos);
		removed++;
	}
	rebuild_modules(r);
	return removed;
}

int ab_routes_save(ab_routes *r, const char *path, ab_error *err)
{
	char lock_path[PATH_MAX];
	if (snprintf(lock_path, sizeof(lock_path), "%s.lock", path) >= (int)sizeof(lock_path))
		return ab_error_set(err, -ENAMETOOLONG, "routes file %s: path too long", path);
	int lock AB_AUTOCLOSE =
	    open(lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, (mode_t)0600);
	if (lock < 0)
		return ab_error_errno(err, -errno, "open lock file %s", lock_path);
	while (flock(lock, LOCK_EX) < 0)
		if (errno != EINTR)
			return ab_error_errno(err, -errno, "lock %s", lock_path);

	/* Under the lock: nobody replaces the file until it is closed. */
	ab_routes *disk AUTOROUTES = NULL;
	int rc = load(path, &disk, err);
	if (rc < 0) {
		ab_error_prefix(err, "save learned routes");
		return rc;
	}
	struct table merged[N_KINDS] = {{0}};
	for (int k = 0; k < N_KINDS && rc == 0; k++) {
		rc = merge_kind(&r->t[k], &r->forgotten[k], &disk->t[k], &merged[k]);
		table_evict(&merged[k], kinds[k].cap);
	}
	json_t *doc AB_AUTOJSON = rc == 0 ? tables_to_json(merged) : NULL;
	if (!doc)
		rc = ab_error_set(err, -ENOMEM, "save learned routes: out of memory");
	struct file_id id;
	if (rc == 0)
		rc = write_atomic(path, doc, &id, err);
	if (rc < 0) {
		for (int k = 0; k < N_KINDS; k++)
			table_clear(&merged[k]);
		return rc;
	}
	for (int k = 0; k < N_KINDS; k++) {
		table_clear(&r->t[k]);
		keyset_clear(&r->forgotten[k]);
		r->t[k] = merged[k];
	}
	r->id = id;
	r->migrated = false;
	rebuild_modules(r);
	return 0;
}

bool ab_routes_stale(const ab_routes *r, const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return errno == ENOENT ? r->id.exists : false;
	const struct file_id *id = &r->id;
	return !id->exists || st.st_dev != id->dev || st.st_ino != id->ino ||
	       st.st_size != id->size || st.st_mtim.tv_sec != id->mtime.tv_sec ||
	       st.st_mtim.tv_nsec != id->mtime.tv_nsec || st.st_ctim.tv_sec != id->ctime.tv_sec ||
	       st.st_ctim.tv_nsec != id->ctime.tv_nsec;
}

json_t *ab_routes_to_json(const ab_routes *r)
{
	static const struct table none[N_KINDS];
	return tables_to_json(r ? r->t : none);
}

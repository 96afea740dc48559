/* wsstore.c - versions of a sandbox's workspace (docs/time-travel.md,
 * "Workspace versions").
 *
 * A version is a manifest (JSON) that names every file, directory and
 * symlink of the tree with its mode, and every file's content by its
 * SHA-256; the contents are objects of a store kept by the daemon,
 * dir/objects/<2 hex>/<62 hex>, each stored once (plain bytes, no
 * compression). A stat cache (path -> dev, inode, size, mtime, ctime,
 * SHA-256) lets a capture of an unchanged tree stat its files without
 * reading them.
 *
 * The workspace belongs to a hostile sandbox that may change it while it
 * is read: no symlink is ever followed (every name is opened beneath its
 * directory's descriptor with ab_path_open_beneath, one component at a
 * time), only what an opened descriptor's fstat shows is trusted, FIFOs are
 * opened O_NONBLOCK, if at all, and every walk is bounded (WS_MAX_DEPTH,
 * WS_MAX_ENTRIES, WS_MAX_BYTES). A restore runs while the sandbox does not,
 * but what it finds there is hostile all the same: whatever is in the way
 * is removed, never followed, and everything is made with the sandbox's
 * file-system credentials (fscreds.h). */
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fscreds.h"
#include "path.h"
#include "utf8.h"
#include "wsstore.h"

/* The longest relative path a walk can make: WS_MAX_DEPTH directories and
 * a leaf of at most 255 bytes each, with their slashes. */
#define WS_PATH_MAX ((WS_MAX_DEPTH + 1) * 256)
/* Files up to this size are read once: hashed and, when new, stored from
 * the same buffer. Larger ones are hashed first and read again only when
 * their content is new. */
#define BUF_SIZE (256u << 10)

/* ------------------------------------------------------------ stat cache */

typedef struct centry {
	struct centry *next;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
	unsigned char md[32];
	char path[];
} centry;

typedef struct {
	centry **b;
	size_t nb, n;
	/* When the capture that filled the table started: an entry is trusted
	 * only if its file's mtime and ctime are strictly older. */
	struct timespec start;
} ctable;

static uint64_t hash_str(const char *p)
{
	uint64_t h = 1469598103934665603ull;
	for (; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return h;
}

static void ctable_free(ctable *t)
{
	for (size_t i = 0; i < t->nb; i++)
		for (centry *e = t->b[i], *next; e; e = next) {
			next = e->next;
			free(e);
		}
	free(t->b);
	t->b = NULL;
	t->nb = t->n = 0;
}

static centry *ctable_find(const ctable *t, const char *path)
{
	if (!t->nb)
		return NULL;
	for (centry *e = t->b[hash_str(path) & (t->nb - 1)]; e; e = e->next)
		if (strcmp(e->path, path) == 0)
			return e;
	return NULL;
}

static int ctable_add(ctable *t, const char *path, const struct stat *st,
		      const unsigned char md[32])
{
	if (t->n >= t->nb) {
		size_t nb = t->nb ? t->nb * 2 : 1024;
		centry **b = calloc(nb, sizeof(*b));
		if (!b)
			return -ENOMEM;
		for (size_t i = 0; i < t->nb; i++)
			for (centry *e = t->b[i], *next; e; e = next) {
				next = e->next;
				size_t k = hash_str(e->path) & (nb - 1);
				e->next = b[k];
				b[k] = e;
			}
		free(t->b);
		t->b = b;
		t->nb = nb;
	}
	size_t len = strlen(path);
	centry *e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return -ENOMEM;
	e->dev = st->st_dev;
	e->ino = st->st_ino;
	e->size = st->st_size;
	e->mtime = st->st_mtim;
	e->ctime = st->st_ctim;
	memcpy(e->md, md, 32);
	memcpy(e->path, path, len + 1);
	size_t k = hash_str(path) & (t->nb - 1);
	e->next = t->b[k];
	t->b[k] = e;
	t->n++;
	return 0;
}

static bool ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static bool ts_eq(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* The content hash of the file behind st, if the cache knows it. The rule
 * is git's "racily clean" one: a file changed after the capture that
 * recorded it started has an mtime or ctime at or after that start (the
 * start is read from the coarse clock the kernel stamps files with, so a
 * change after it is never stamped before it). A file whose times are not
 * strictly older than that start may have changed within the same tick
 * after it was hashed, so it is hashed again. The sandbox can set mtime
 * (utimensat) but not ctime. */
static const centry *cache_hit(const ctable *t, const char *path, const struct stat *st)
{
	const centry *e = ctable_find(t, path);
	if (!e || e->dev != st->st_dev || e->ino != st->st_ino || e->size != st->st_size ||
	    !ts_eq(&e->mtime, &st->st_mtim) || !ts_eq(&e->ctime, &st->st_ctim) ||
	    !ts_before(&st->st_mtim, &t->start) || !ts_before(&st->st_ctim, &t->start))
		return NULL;
	return e;
}

/* ----------------------------------------------------------------- store */

struct ws_store {
	char *dir;
	int dfd;   /* dir */
	int objfd; /* dir/objects */
	int tmpfd; /* dir/tmp: objects being written */
	uint64_t bytes;
	ctable cache;
	unsigned last_reads;
	unsigned char *buf; /* BUF_SIZE */
};

static void hex_of(const unsigned char md[32], char hex[65])
{
	ab__hex_encode(md, 32, hex);
}

/* "ab/cdef..." relative to objfd. */
static void obj_rel(const char hex[65], char out[67])
{
	out[0] = hex[0];
	out[1] = hex[1];
	out[2] = '/';
	memcpy(out + 3, hex + 2, 63);
}

static bool is_hex64(const char *s, size_t len)
{
	if (len != 64)
		return false;
	for (size_t i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* The size of the object hex, or -1 when the store lacks it. */
static int64_t obj_size(const ws_store *s, const char hex[65])
{
	char rel[67];
	obj_rel(hex, rel);
	struct stat st;
	if (fstatat(s->objfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
		return -1;
	return (int64_t)st.st_size;
}

static int random_name(char *out, size_t len, const char *prefix)
{
	unsigned char r[8];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return -errno;
	char hex[17];
	ab__hex_encode(r, sizeof(r), hex);
	snprintf(out, len, "%s%s", prefix, hex);
	return 0;
}

static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static int write_all(int fd, const void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ENOSPC;
		done += (size_t)n;
	}
	return 0;
}

/* Names of the entries of directory dfd but "." and "..": at most max
 * (-E2BIG past it). Read whole before anything in it is changed. */
typedef struct {
	char **v;
	size_t n, cap;
} names;

static void names_free(names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

static int read_names(int dfd, names *out, size_t max, ab_error *err)
{
	*out = (names){0};
	int fd = ab_path_open_beneath(dfd, ".", O_RDONLY | O_DIRECTORY, 0, err);
	if (fd < 0)
		return fd;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return ab_error_errno(err, -errno, "read directory");
	}
	int r = 0;
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			if (errno)
				r = ab_error_errno(err, -errno, "read directory");
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (out->n >= max) {
			r = ab_error_set(err, -E2BIG, "more than %d entries", WS_MAX_ENTRIES);
			break;
		}
		if (out->n == out->cap) {
			size_t cap = out->cap ? out->cap * 2 : 64;
			char **v = realloc(out->v, cap * sizeof(*v));
			if (!v) {
				r = ab_error_set(err, -ENOMEM, "out of memory");
				break;
			}
			out->v = v;
			out->cap = cap;
		}
		if (!(out->v[out->n] = strdup(de->d_name))) {
			r = ab_error_set(err, -ENOMEM, "out of memory");
			break;
		}
		out->n++;
	}
	closedir(d);
	if (r < 0)
		names_free(out);
	return r;
}

/* Removes name from directory parent, whatever it is, without following
 * symlinks: a directory's content first (made writable by its owner, so
 * that a read-only directory of the sandbox does not stop it). */
static int remove_entry(int parent, const char *name, int depth, ab_error *err)
{
	struct stat st;
	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : ab_error_errno(err, -errno, "stat \"%s\"", name);
	if (S_ISDIR(st.st_mode)) {
		if (depth > WS_MAX_DEPTH)
			return ab_error_set(err, -ELOOP,
					    "directories nested deeper than %d levels",
					    WS_MAX_DEPTH);
		/* fchmodat with AT_SYMLINK_NOFOLLOW never follows (glibc refuses
		 * a symlink); a failure shows when the directory is read. */
		fchmodat(parent, name, 0700, AT_SYMLINK_NOFOLLOW);
		ab_error e2 = {0};
		AB_AUTOCLOSE int fd =
		    ab_path_open_beneath(parent, name, O_RDONLY | O_DIRECTORY, 0, &e2);
		if (fd >= 0) {
			names l;
			int r = read_names(fd, &l, SIZE_MAX, err);
			for (size_t i = 0; r == 0 && i < l.n; i++)
				r = remove_entry(fd, l.v[i], depth + 1, err);
			names_free(&l);
			if (r < 0) {
				ab_error_prefix(err, "%s", name);
				return r;
			}
		} else if (fd != -ENOTDIR && fd != -ELOOP && fd != -ENOENT) {
			*err = e2;
			return fd;
		}
		if (unlinkat(parent, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
			return 0;
		if (errno != ENOTDIR)
			return ab_error_errno(err, -errno, "remove directory \"%s\"", name);
		/* it is no longer a directory: fall through */
	}
	if (unlinkat(parent, name, 0) < 0 && errno != ENOENT)
		return ab_error_errno(err, -errno, "remove \"%s\"", name);
	return 0;
}

/* Opens directory name in parent, made first if missing; an existing one
 * is given mode 0700 first, so that its owner can read and fill it. */
static int mkdir_open(int parent, const char *name, ab_error *err)
{
	if (mkdirat(parent, name, 0700) < 0) {
		if (errno != EEXIST)
			return ab_error_errno(err, -errno, "create directory \"%s\"", name);
		fchmodat(parent, name, 0700, AT_SYMLINK_NOFOLLOW);
	}
	return ab_path_open_beneath(parent, name, O_RDONLY | O_DIRECTORY, 0, err);
}

ws_store *ws_store_new(const char *dir, ab_error *err)
{
	ab_error local = {0};
	if (!err)
		err = &local; /* the helpers below fill it */
	if (!dir || !dir[0]) {
		ab_error_set(err, -EINVAL, "workspace store: no directory given");
		return NULL;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		ab_error_errno(err, -errno, "create workspace store %s", dir);
		return NULL;
	}
	ws_store *s = calloc(1, sizeof(*s));
	if (!s || !(s->dir = strdup(dir)) || !(s->buf = malloc(BUF_SIZE))) {
		if (s)
			free(s->dir);
		free(s);
		ab_error_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	s->objfd = s->tmpfd = -1;
	s->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	int r = 0;
	if (s->dfd < 0 || fstat(s->dfd, &st) < 0)
		r = ab_error_errno(err, -errno, "open workspace store %s", dir);
	else if (st.st_uid != geteuid() || (st.st_mode & 022))
		r = ab_error_set(err, -EPERM,
				 "workspace store %s: not the daemon's own private directory",
				 dir);
	if (r == 0 && (s->objfd = mkdir_open(s->dfd, "objects", err)) < 0)
		r = s->objfd;
	if (r == 0 && (s->tmpfd = mkdir_open(s->dfd, "tmp", err)) < 0)
		r = s->tmpfd;
	/* A store left by an earlier daemon: count its objects, drop its
	 * unfinished writes. */
	names sub = {0}, tmp = {0};
	if (r == 0 && (r = read_names(s->tmpfd, &tmp, SIZE_MAX, err)) == 0)
		for (size_t i = 0; r == 0 && i < tmp.n; i++)
			r = remove_entry(s->tmpfd, tmp.v[i], 0, err);
	if (r == 0)
		r = read_names(s->objfd, &sub, SIZE_MAX, err);
	for (size_t i = 0; r == 0 && i < sub.n; i++) {
		AB_AUTOCLOSE int fd =
		    ab_path_open_beneath(s->objfd, sub.v[i], O_RDONLY | O_DIRECTORY, 0, err);
		names objs;
		if (fd < 0 || (r = read_names(fd, &objs, SIZE_MAX, err)) < 0) {
			r = fd < 0 ? fd : r;
			break;
		}
		for (size_t j = 0; j < objs.n; j++)
			if (fstatat(fd, objs.v[j], &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISREG(st.st_mode))
				s->bytes += (uint64_t)st.st_size;
		names_free(&objs);
	}
	names_free(&sub);
	names_free(&tmp);
	if (r < 0) {
		ab_error_prefix(err, "workspace store %s", dir);
		if (s->dfd >= 0)
			close(s->dfd);
		if (s->objfd >= 0)
			close(s->objfd);
		if (s->tmpfd >= 0)
			close(s->tmpfd);
		free(s->buf);
		free(s->dir);
		free(s);
		return NULL;
	}
	return s;
}

void ws_store_free(ws_store *s)
{
	if (!s)
		return;
	ab_error err = {0};
	names l;
	if (read_names(s->dfd, &l, SIZE_MAX, &err) == 0) {
		for (size_t i = 0; i < l.n; i++)
			remove_entry(s->dfd, l.v[i], 0, &err);
		names_free(&l);
	}
	close(s->objfd);
	close(s->tmpfd);
	close(s->dfd);
	rmdir(s->dir);
	ctable_free(&s->cache);
	free(s->buf);
	free(s->dir);
	free(s);
}

uint64_t ws_store_bytes(const ws_store *s)
{
	return s ? s->bytes : 0;
}

unsigned ws_store_last_reads(const ws_store *s)
{
	return s ? s->last_reads : 0;
}

/* Reads fd from offset 0 up to limit bytes: their SHA-256 into md, their
 * number into *got; and when out >= 0, writes them there as well. */
static int digest_fd(ws_store *s, int fd, uint64_t limit, int out, unsigned char md[32],
		     uint64_t *got, ab_error *err)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return ab_error_set(err, -ENOMEM, "out of memory");
	}
	uint64_t off = 0;
	int r = 0;
	while (off < limit) {
		size_t want = limit - off < BUF_SIZE ? (size_t)(limit - off) : BUF_SIZE;
		ssize_t n = pread_full(fd, s->buf, want, off);
		if (n < 0) {
			r = ab_error_errno(err, (int)n, "read");
			break;
		}
		if (n == 0)
			break;
		if (EVP_DigestUpdate(ctx, s->buf, (size_t)n) != 1) {
			r = ab_error_set(err, -ENOMEM, "out of memory");
			break;
		}
		if (out >= 0 && (r = write_all(out, s->buf, (size_t)n)) < 0) {
			r = ab_error_errno(err, r, "write to the workspace store");
			break;
		}
		off += (uint64_t)n;
		if ((size_t)n < want)
			break;
	}
	unsigned int mdlen = 0;
	if (r == 0 && (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32))
		r = ab_error_set(err, -ENOMEM, "out of memory");
	EVP_MD_CTX_free(ctx);
	*got = off;
	return r;
}

/* A new temporary file in dir/tmp; its name into name. */
static int tmp_open(ws_store *s, char name[40], ab_error *err)
{
	for (int tries = 0; tries < 8; tries++) {
		int r = random_name(name, 40, "obj-");
		if (r < 0)
			return ab_error_errno(err, r, "getrandom");
		int fd = openat(s->tmpfd, name,
				O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0400);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST)
			return ab_error_errno(err, -errno, "create a file in the workspace store");
	}
	return ab_error_set(err, -EEXIST, "cannot find a free temporary name in the store");
}

/* Moves the finished temporary file name into place as the object md of
 * n bytes (or drops it when the store has that object already). */
static int obj_publish(ws_store *s, const char *name, const unsigned char md[32], uint64_t n,
		       uint64_t *added, ab_error *err)
{
	char hex[65], rel[67], sub[3] = {0};
	hex_of(md, hex);
	obj_rel(hex, rel);
	memcpy(sub, hex, 2);
	if (obj_size(s, hex) >= 0) {
		unlinkat(s->tmpfd, name, 0);
		return 0;
	}
	if (mkdirat(s->objfd, sub, 0700) < 0 && errno != EEXIST) {
		int e = -errno;
		unlinkat(s->tmpfd, name, 0);
		return ab_error_errno(err, e, "create the store's directory %s", sub);
	}
	if (renameat(s->tmpfd, name, s->objfd, rel) < 0) {
		int e = -errno;
		unlinkat(s->tmpfd, name, 0);
		return ab_error_errno(err, e, "store object %s", hex);
	}
	s->bytes += n;
	*added += n;
	return 0;
}

/* Hashes the open file fd (at most limit bytes: what its fstat showed
 * before) and stores its content unless the store has it. The manifest
 * gets what was stored: a file the sandbox changes meanwhile is hashed
 * again while it is copied, and the object is named by what was copied. */
static int store_file(ws_store *s, int fd, uint64_t limit, unsigned char md[32], uint64_t *size,
		      uint64_t *added, ab_error *err)
{
	char hex[65], name[40];
	if (limit < BUF_SIZE) {
		/* One read: one byte more than fstat showed tells a file that
		 * grew, which then takes the general way. */
		ssize_t n = pread_full(fd, s->buf, (size_t)limit + 1, 0);
		if (n < 0)
			return ab_error_errno(err, (int)n, "read");
		if ((uint64_t)n <= limit) {
			unsigned int mdlen = 0;
			if (EVP_Digest(s->buf, (size_t)n, md, &mdlen, EVP_sha256(), NULL) != 1 ||
			    mdlen != 32)
				return ab_error_set(err, -ENOMEM, "out of memory");
			*size = (uint64_t)n;
			hex_of(md, hex);
			if (obj_size(s, hex) >= 0)
				return 0;
			AB_AUTOCLOSE int out = tmp_open(s, name, err);
			if (out < 0)
				return out;
			int r = write_all(out, s->buf, (size_t)n);
			if (r < 0) {
				unlinkat(s->tmpfd, name, 0);
				return ab_error_errno(err, r, "write to the workspace store");
			}
			return obj_publish(s, name, md, *size, added, err);
		}
	}
	int r = digest_fd(s, fd, limit, -1, md, size, err);
	if (r < 0)
		return r;
	hex_of(md, hex);
	if (obj_size(s, hex) >= 0)
		return 0;
	AB_AUTOCLOSE int out = tmp_open(s, name, err);
	if (out < 0)
		return out;
	if ((r = digest_fd(s, fd, limit, out, md, size, err)) < 0) {
		unlinkat(s->tmpfd, name, 0);
		return r;
	}
	return obj_publish(s, name, md, *size, added, err);
}

/* -------------------------------------------------------------- capture */

enum kind { K_FILE, K_DIR, K_LINK };

/* One entry of a version, as a capture finds it or a manifest names it. */
typedef struct {
	const char *path; /* owned by the capture; the manifest's key otherwise */
	char *own;	  /* path, when owned */
	enum kind kind;
	unsigned mode;
	uint64_t size;
	char hex[65];
	const char *target;
	char *own_target;
} went;

typedef struct {
	went *v;
	size_t n, cap;
} wlist;

static void wlist_free(wlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].own);
		free(l->v[i].own_target);
	}
	free(l->v);
	*l = (wlist){0};
}

static went *wlist_add(wlist *l)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		went *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return NULL;
		l->v = v;
		l->cap = cap;
	}
	went *e = &l->v[l->n++];
	*e = (went){0};
	return e;
}

/* Orders paths so that a directory's subtree follows it without a gap:
 * '/' sorts before every other byte. Entries of one directory then come
 * in the byte order of their names. */
static int path_cmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned ca = (unsigned char)*a, cb = (unsigned char)*b;
		if (ca == cb) {
			if (!ca)
				return 0;
			continue;
		}
		unsigned ka = ca == '/' ? 1 : ca ? ca + 1 : 0;
		unsigned kb = cb == '/' ? 1 : cb ? cb + 1 : 0;
		return ka < kb ? -1 : 1;
	}
}

static int went_cmp(const void *a, const void *b)
{
	return path_cmp(((const went *)a)->path, ((const went *)b)->path);
}

static int went_strcmp(const void *a, const void *b)
{
	return strcmp(((const went *)a)->path, ((const went *)b)->path);
}

/* A name (or link target) the manifest can hold: JSON strings are UTF-8. */
static bool valid_utf8(const char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		int l = ab__utf8_decode((const unsigned char *)p + i, n - i, NULL);
		if (l <= 0)
			return false;
		i += (size_t)l;
	}
	return true;
}

typedef struct {
	ws_store *s;
	wlist l;
	ctable next;
	char *path; /* WS_PATH_MAX */
	size_t entries;
	unsigned skipped, reads;
	uint64_t total, added;
} capture_ctx;

/* Errors of the host (memory, descriptors, the store's disk) stop a
 * capture; anything else about one entry only skips that entry. */
static bool host_error(int e)
{
	return e == -ENOMEM || e == -EMFILE || e == -ENFILE || e == -ENOSPC || e == -EDQUOT ||
	       e == -EIO;
}

/* A regular file as fstatat (seen) showed it in dfd. When the stat cache
 * knows those very values (and the store still has the object), the file
 * is not even opened: fstatat without following describes the entry
 * itself. Otherwise only what the opened descriptor shows counts. */
static int capture_file(capture_ctx *c, int dfd, const char *name, const struct stat *seen,
			ab_error *err)
{
	struct stat st = *seen;
	char hex[65];
	const centry *hit = cache_hit(&c->s->cache, c->path, &st);
	if (hit) {
		hex_of(hit->md, hex);
		/* An object the store lost (a gc without this version) is
		 * stored again. */
		if (obj_size(c->s, hex) != (int64_t)st.st_size)
			hit = NULL;
	}
	AB_AUTOCLOSE int fd = -1;
	if (!hit) {
		ab_error e2 = {0};
		fd = ab_path_open_beneath(dfd, name, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0, &e2);
		if (fd < 0) {
			if (host_error(fd)) {
				*err = e2;
				return fd;
			}
			if (fd != -ENOENT)
				c->skipped++;
			return 0;
		}
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			c->skipped++; /* replaced by something else meanwhile */
			return 0;
		}
	}
	uint64_t limit = (uint64_t)st.st_size;
	if (c->total + limit > WS_MAX_BYTES)
		return ab_error_set(err, -E2BIG,
				    "the workspace holds more than %llu bytes of files",
				    (unsigned long long)WS_MAX_BYTES);
	went *e = wlist_add(&c->l);
	if (!e || !(e->own = strdup(c->path)))
		return ab_error_set(err, -ENOMEM, "out of memory");
	e->path = e->own;
	e->kind = K_FILE;
	e->mode = st.st_mode & 0777;
	if (hit) {
		memcpy(e->hex, hex, sizeof(hex));
		e->size = limit;
		c->total += limit;
		return ctable_add(&c->next, c->path, &st, hit->md) < 0
			   ? ab_error_set(err, -ENOMEM, "out of memory")
			   : 0;
	}
	c->reads++;
	unsigned char md[32];
	int r = store_file(c->s, fd, limit, md, &e->size, &c->added, err);
	if (r < 0) {
		ab_error_prefix(err, "%s", c->path);
		return r;
	}
	hex_of(md, e->hex);
	c->total += e->size;
	/* What was read is what fstat showed before: the next capture may
	 * trust it. A file that changed size meanwhile is read again. */
	if (e->size == limit && ctable_add(&c->next, c->path, &st, md) < 0)
		return ab_error_set(err, -ENOMEM, "out of memory");
	return 0;
}

static int capture_dir(capture_ctx *c, int dfd, size_t plen, int depth, ab_error *err)
{
	/* Every name read counts, whether it is walked yet or not: the names
	 * held by all the levels of the walk stay within the bound too. */
	names l;
	int r = read_names(dfd, &l, WS_MAX_ENTRIES - c->entries, err);
	if (r == -E2BIG)
		return ab_error_set(err, -E2BIG, "the workspace has more than %d entries",
				    WS_MAX_ENTRIES);
	if (r < 0)
		return r;
	c->entries += l.n;
	for (size_t i = 0; r == 0 && i < l.n; i++) {
		const char *name = l.v[i];
		size_t nlen = strlen(name);
		if (nlen > 255 || !valid_utf8(name, nlen)) {
			c->skipped++;
			continue;
		}
		size_t len = plen + (plen ? 1 : 0) + nlen;
		if (plen)
			c->path[plen] = '/';
		memcpy(c->path + plen + (plen ? 1 : 0), name, nlen + 1);
		struct stat st;
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				c->skipped++;
		} else if (S_ISDIR(st.st_mode)) {
			if (depth + 1 > WS_MAX_DEPTH) {
				r = ab_error_set(
				    err, -ELOOP,
				    "directories nested deeper than %d levels at \"%.200s\"",
				    WS_MAX_DEPTH, c->path);
				break;
			}
			ab_error e2 = {0};
			int fd = ab_path_open_beneath(dfd, name, O_RDONLY | O_DIRECTORY, 0, &e2);
			if (fd < 0) {
				if (host_error(fd)) {
					*err = e2;
					r = fd;
				} else if (fd != -ENOENT) {
					c->skipped++;
				}
				continue;
			}
			went *e = NULL;
			if (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode)) {
				c->skipped++;
			} else if (!(e = wlist_add(&c->l)) || !(e->own = strdup(c->path))) {
				r = ab_error_set(err, -ENOMEM, "out of memory");
			} else {
				e->path = e->own;
				e->kind = K_DIR;
				e->mode = st.st_mode & 0777;
				r = capture_dir(c, fd, len, depth + 1, err);
			}
			close(fd);
		} else if (S_ISREG(st.st_mode)) {
			r = capture_file(c, dfd, name, &st, err);
		} else if (S_ISLNK(st.st_mode)) {
			char target[4096];
			ssize_t n = readlinkat(dfd, name, target, sizeof(target));
			if (n <= 0 || (size_t)n >= sizeof(target) ||
			    memchr(target, '\0', (size_t)n) || !valid_utf8(target, (size_t)n)) {
				if (!(n < 0 && errno == ENOENT))
					c->skipped++;
				continue;
			}
			target[n] = '\0';
			went *e = wlist_add(&c->l);
			if (!e || !(e->own = strdup(c->path)) ||
			    !(e->own_target = strdup(target))) {
				r = ab_error_set(err, -ENOMEM, "out of memory");
				break;
			}
			e->path = e->own;
			e->target = e->own_target;
			e->kind = K_LINK;
		} else {
			c->skipped++; /* FIFO, socket, device: never opened */
		}
	}
	c->path[plen] = '\0';
	names_free(&l);
	return r;
}

static json_t *manifest_of(wlist *l, unsigned skipped)
{
	if (l->n)
		qsort(l->v, l->n, sizeof(*l->v), went_strcmp);
	json_t *m = json_pack("{s:{}, s:{}, s:{}}", "files", "dirs", "links");
	if (!m)
		return NULL;
	json_t *files = json_object_get(m, "files"), *dirs = json_object_get(m, "dirs"),
	       *links = json_object_get(m, "links");
	for (size_t i = 0; i < l->n; i++) {
		const went *e = &l->v[i];
		json_t *v = e->kind == K_FILE
				? json_pack("{s:s, s:I, s:i}", "sha256", e->hex, "size",
					    (json_int_t)e->size, "mode", (int)e->mode)
			    : e->kind == K_DIR ? json_pack("{s:i}", "mode", (int)e->mode)
					       : json_pack("{s:s}", "target", e->target);
		json_t *obj = e->kind == K_FILE ? files : e->kind == K_DIR ? dirs : links;
		if (!v || json_object_set_new(obj, e->path, v) < 0) {
			json_decref(m);
			return NULL;
		}
	}
	if (skipped && json_object_set_new(m, "skipped", json_integer(skipped)) < 0) {
		json_decref(m);
		return NULL;
	}
	return m;
}

json_t *ws_capture(ws_store *s, int wsfd, uint64_t *added, ab_error *err)
{
	ab_error local = {0};
	if (!err)
		err = &local; /* the helpers below fill it */
	if (added)
		*added = 0;
	if (!s) {
		ab_error_set(err, -EINVAL, "capture: no store");
		return NULL;
	}
	capture_ctx c = {.s = s};
	/* The coarse clock is the one files are stamped with: a change after
	 * this moment gets a time at or after it (cache_hit). */
	clock_gettime(CLOCK_REALTIME_COARSE, &c.next.start);
	c.path = malloc(WS_PATH_MAX);
	json_t *m = NULL;
	int r = -ENOMEM;
	if (!c.path) {
		ab_error_set(err, -ENOMEM, "out of memory");
	} else {
		c.path[0] = '\0';
		int fd = ab_path_open_beneath(wsfd, ".", O_RDONLY | O_DIRECTORY, 0, err);
		r = fd < 0 ? fd : capture_dir(&c, fd, 0, 0, err);
		if (fd >= 0)
			close(fd);
	}
	if (r == 0 && !(m = manifest_of(&c.l, c.skipped)))
		ab_error_set(err, -ENOMEM, "out of memory");
	if (m) {
		ctable_free(&s->cache);
		s->cache = c.next;
		c.next = (ctable){0};
		s->last_reads = c.reads;
		if (added)
			*added = c.added;
	} else {
		ab_error_prefix(err, "capture the workspace");
		/* Objects stored meanwhile stay: a gc takes them when no
		 * version refers to them. */
	}
	ctable_free(&c.next);
	wlist_free(&c.l);
	free(c.path);
	return m;
}

/* ------------------------------------------------------------- manifests */

/* A path as a capture makes it: '/'-separated non-empty components other
 * than "." and "..", each at most 255 bytes, at most WS_MAX_DEPTH + 1 of
 * them. */
static bool valid_path(const char *p, size_t len)
{
	if (len == 0 || len >= WS_PATH_MAX || strlen(p) != len)
		return false;
	int depth = 0;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t clen = slash ? (size_t)(slash - p) : strlen(p);
		if (clen == 0 || clen > 255 || (clen == 1 && p[0] == '.') ||
		    (clen == 2 && p[0] == '.' && p[1] == '.') || ++depth > WS_MAX_DEPTH + 1)
			return false;
		if (!slash)
			return true;
		p = slash + 1;
	}
}

static int bad_manifest(ab_error *err, const char *what, const char *path)
{
	return ab_error_set(err, -EINVAL, "malformed workspace manifest: %s%s%.200s%s", what,
			    path ? " \"" : "", path ? path : "", path ? "\"" : "");
}

static bool get_mode(const json_t *v, unsigned *mode)
{
	json_t *m = json_object_get(v, "mode");
	if (!json_is_integer(m) || json_integer_value(m) < 0 || json_integer_value(m) > 0777)
		return false;
	*mode = (unsigned)json_integer_value(m);
	return true;
}

/* One entry of "files": its content, size and mode. */
static int parse_file(const char *path, const json_t *v, went *e, ab_error *err)
{
	json_t *sha = json_object_get(v, "sha256"), *size = json_object_get(v, "size");
	if (!json_is_object(v) || !json_is_string(sha) ||
	    !is_hex64(json_string_value(sha), json_string_length(sha)) ||
	    !json_is_integer(size) || json_integer_value(size) < 0 ||
	    (uint64_t)json_integer_value(size) > WS_MAX_BYTES || !get_mode(v, &e->mode))
		return bad_manifest(err, "bad file entry", path);
	memcpy(e->hex, json_string_value(sha), 65);
	e->size = (uint64_t)json_integer_value(size);
	e->kind = K_FILE;
	return 0;
}

/* Checks a whole manifest and lists its entries (paths borrowed from it),
 * sorted by path_cmp: every entry's parent is the root or one of its
 * directories, no path is named twice. */
static int parse_manifest(const json_t *m, wlist *out, ab_error *err)
{
	*out = (wlist){0};
	if (!json_is_object(m))
		return bad_manifest(err, "not an object", NULL);
	static const char *const keys[] = {"files", "dirs", "links"};
	const json_t *objs[3];
	size_t total = 0;
	for (int k = 0; k < 3; k++) {
		objs[k] = json_object_get(m, keys[k]);
		if (!json_is_object(objs[k]))
			return bad_manifest(err, keys[k], NULL);
		total += json_object_size(objs[k]);
	}
	json_t *sk = json_object_get(m, "skipped");
	if (sk && (!json_is_integer(sk) || json_integer_value(sk) < 0))
		return bad_manifest(err, "skipped", NULL);
	if (total > WS_MAX_ENTRIES)
		return bad_manifest(err, "too many entries", NULL);
	int r = 0;
	for (int k = 0; k < 3 && r == 0; k++) {
		const char *key;
		json_t *v;
		json_object_foreach((json_t *)objs[k], key, v)
		{
			if (!valid_path(key, strlen(key))) {
				r = bad_manifest(err, "bad path", key);
				break;
			}
			for (int o = 0; o < k; o++)
				if (json_object_get(objs[o], key)) {
					r = bad_manifest(err, "path named twice", key);
					break;
				}
			went *e = r == 0 ? wlist_add(out) : NULL;
			if (r == 0 && !e)
				r = ab_error_set(err, -ENOMEM, "out of memory");
			if (r < 0)
				break;
			e->path = key;
			if (k == 0) {
				r = parse_file(key, v, e, err);
			} else if (k == 1) {
				e->kind = K_DIR;
				if (!json_is_object(v) || !get_mode(v, &e->mode))
					r = bad_manifest(err, "bad directory entry", key);
			} else {
				json_t *t = json_object_get(v, "target");
				e->kind = K_LINK;
				e->mode = 0777;
				if (!json_is_object(v) || !json_is_string(t) ||
				    json_string_length(t) == 0 || json_string_length(t) >= 4096 ||
				    strlen(json_string_value(t)) != json_string_length(t))
					r = bad_manifest(err, "bad link entry", key);
				else {
					e->target = json_string_value(t);
					e->size = strlen(e->target);
				}
			}
			if (r < 0)
				break;
		}
	}
	for (size_t i = 0; r == 0 && i < out->n; i++) {
		const char *p = out->v[i].path, *slash = strrchr(p, '/');
		if (!slash)
			continue;
		char parent[WS_PATH_MAX];
		memcpy(parent, p, (size_t)(slash - p));
		parent[slash - p] = '\0';
		if (!json_object_get(objs[1], parent))
			r = bad_manifest(err, "entry outside the manifest's directories", p);
	}
	if (r < 0) {
		wlist_free(out);
		return r;
	}
	if (out->n)
		qsort(out->v, out->n, sizeof(*out->v), went_cmp);
	return 0;
}

int ws_read(ws_store *s, const json_t *manifest, const char *path, uint64_t offset, size_t max,
	    char **data, size_t *len, ab_error *err)
{
	ab_error local = {0};
	if (!err)
		err = &local; /* the helpers below fill it */
	if (!data || !len || !s)
		return ab_error_set(err, -EINVAL, "read: no store or no buffer");
	*data = NULL;
	*len = 0;
	json_t *files = json_object_get(manifest, "files");
	if (!json_is_object(manifest) || !json_is_object(files))
		return bad_manifest(err, "files", NULL);
	if (!path || !valid_path(path, strlen(path)))
		return ab_error_set(err, -EINVAL, "read: bad path \"%.200s\"", path ? path : "");
	json_t *v = json_object_get(files, path);
	if (!v) {
		if (json_object_get(json_object_get(manifest, "dirs"), path))
			return ab_error_set(err, -EISDIR,
					    "\"%.200s\" is a directory in this version", path);
		if (json_object_get(json_object_get(manifest, "links"), path))
			return ab_error_set(err, -ELOOP,
					    "\"%.200s\" is a symlink in this version", path);
		return ab_error_set(err, -ENOENT, "no file \"%.200s\" in this version", path);
	}
	went e = {0};
	int r = parse_file(path, v, &e, err);
	if (r < 0)
		return r;
	char rel[67];
	obj_rel(e.hex, rel);
	AB_AUTOCLOSE int fd = openat(s->objfd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (fd < 0)
		return ab_error_errno(err, -errno, "the content of \"%.200s\" (object %s)", path,
				      e.hex);
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != e.size)
		return ab_error_set(err, -EIO,
				    "the stored content of \"%.200s\" (object %s) is damaged", path,
				    e.hex);
	uint64_t rest = offset < e.size ? e.size - offset : 0;
	size_t want = rest < max ? (size_t)rest : max;
	char *buf = malloc(want + 1);
	if (!buf)
		return ab_error_set(err, -ENOMEM, "out of memory");
	ssize_t n = want ? pread_full(fd, buf, want, offset) : 0;
	if (n < 0) {
		free(buf);
		return ab_error_errno(err, (int)n, "read the content of \"%.200s\"", path);
	}
	buf[n] = '\0';
	*data = buf;
	*len = (size_t)n;
	return 0;
}

json_t *ws_list(const json_t *manifest, const char *dir, ab_error *err)
{
	ab_error local = {0};
	if (!err)
		err = &local; /* the helpers below fill it */
	wlist l;
	if (parse_manifest(manifest, &l, err) < 0)
		return NULL;
	if (!dir || strcmp(dir, ".") == 0)
		dir = "";
	size_t dlen = strlen(dir);
	json_t *out = NULL;
	if (dlen && !valid_path(dir, dlen)) {
		ab_error_set(err, -EINVAL, "list: bad path \"%.200s\"", dir);
	} else if (dlen && !json_object_get(json_object_get(manifest, "dirs"), dir)) {
		bool other = json_object_get(json_object_get(manifest, "files"), dir) ||
			     json_object_get(json_object_get(manifest, "links"), dir);
		ab_error_set(err, other ? -ENOTDIR : -ENOENT,
			     other ? "\"%.200s\" is not a directory in this version"
				   : "no directory \"%.200s\" in this version",
			     dir);
	} else if (!(out = json_array())) {
		ab_error_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; out && i < l.n; i++) {
		const went *e = &l.v[i];
		const char *name = e->path;
		if (dlen) {
			if (strncmp(name, dir, dlen) != 0 || name[dlen] != '/')
				continue;
			name += dlen + 1;
		}
		if (strchr(name, '/'))
			continue;
		static const char *const kinds[] = {"file", "dir", "link"};
		json_t *j = json_pack("{s:s, s:s, s:I, s:i}", "name", name, "kind", kinds[e->kind],
				      "size", (json_int_t)e->size, "mode", (int)e->mode);
		if (j && e->kind == K_LINK && json_object_set_new(j, "target",
								   json_string(e->target)) < 0) {
			json_decref(j);
			j = NULL;
		}
		if (!j || json_array_append_new(out, j) < 0) {
			json_decref(out);
			out = NULL;
			ab_error_set(err, -ENOMEM, "out of memory");
		}
	}
	wlist_free(&l);
	return out;
}

static bool same_entry(const went *a, const went *b)
{
	if (a->kind != b->kind)
		return false;
	if (a->kind == K_LINK)
		return strcmp(a->target, b->target) == 0;
	return strcmp(a->hex, b->hex) == 0 && a->mode == b->mode;
}

json_t *ws_diff(const json_t *a, const json_t *b)
{
	wlist la, lb;
	ab_error err = {0};
	if (parse_manifest(a, &la, &err) < 0)
		return NULL;
	if (parse_manifest(b, &lb, &err) < 0) {
		wlist_free(&la);
		return NULL;
	}
	json_t *added = json_array(), *removed = json_array(), *changed = json_array();
	json_t *out = json_pack("{s:o, s:o, s:o}", "added", added, "removed", removed, "changed",
				changed);
	size_t i = 0, j = 0;
	bool ok = out != NULL;
	while (ok && (i < la.n || j < lb.n)) {
		if (i < la.n && la.v[i].kind == K_DIR) {
			i++;
			continue;
		}
		if (j < lb.n && lb.v[j].kind == K_DIR) {
			j++;
			continue;
		}
		int c = i == la.n ? 1 : j == lb.n ? -1 : path_cmp(la.v[i].path, lb.v[j].path);
		if (c < 0)
			ok = json_array_append_new(removed, json_string(la.v[i++].path)) == 0;
		else if (c > 0)
			ok = json_array_append_new(added, json_string(lb.v[j++].path)) == 0;
		else {
			if (!same_entry(&la.v[i], &lb.v[j]))
				ok = json_array_append_new(changed, json_string(la.v[i].path)) == 0;
			i++, j++;
		}
	}
	wlist_free(&la);
	wlist_free(&lb);
	if (!ok) {
		json_decref(out);
		return NULL;
	}
	return out;
}

/* --------------------------------------------------------------- restore */

typedef struct {
	ws_store *s;
	const json_t *files, *dirs, *links;
	wlist l;
	uid_t uid;
	gid_t gid;
	fs_creds cr;
	char *path; /* WS_PATH_MAX */
	int written;
} restore_ctx;

/* The content hash of the regular file fd (at path) as it is now: from the
 * stat cache when it can be trusted, else read. */
static int current_digest(restore_ctx *c, int fd, const struct stat *st, char hex[65],
			  ab_error *err)
{
	const centry *hit = cache_hit(&c->s->cache, c->path, st);
	if (hit) {
		hex_of(hit->md, hex);
		return 0;
	}
	unsigned char md[32];
	uint64_t got;
	int r = digest_fd(c->s, fd, (uint64_t)st->st_size, -1, md, &got, err);
	if (r < 0)
		return r;
	hex_of(md, hex);
	return 0;
}

/* Puts the content of e at name in directory dfd: unchanged when the file
 * there has it (its mode set), else written to a temporary file in dfd and
 * renamed over name. Runs with the sandbox's credentials but opens the
 * object with the daemon's. */
static int restore_file(restore_ctx *c, int dfd, const char *name, const went *e, ab_error *err)
{
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
	    (uint64_t)st.st_size == e->size) {
		ab_error e2 = {0};
		AB_AUTOCLOSE int fd =
		    ab_path_open_beneath(dfd, name, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0, &e2);
		char hex[65];
		if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    (uint64_t)st.st_size == e->size && current_digest(c, fd, &st, hex, err) == 0 &&
		    strcmp(hex, e->hex) == 0) {
			if ((st.st_mode & 07777) != e->mode && fchmod(fd, e->mode) < 0)
				return ab_error_errno(err, -errno, "chmod");
			return 0;
		}
	}
	char rel[67];
	obj_rel(e->hex, rel);
	creds_leave(&c->cr);
	AB_AUTOCLOSE int in = openat(c->s->objfd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	int r = in < 0 ? ab_error_errno(err, -errno, "open object %s", e->hex) : 0;
	int r2 = creds_enter_ids(c->uid, c->gid, &c->cr, err);
	if (r < 0 || r2 < 0)
		return r < 0 ? r : r2;
	char tmp[48];
	AB_AUTOCLOSE int out = -1;
	for (int tries = 0; tries < 8 && out < 0; tries++) {
		if ((r = random_name(tmp, sizeof(tmp), ".agentbox-restore-")) < 0)
			return ab_error_errno(err, r, "getrandom");
		out = ab_path_open_beneath(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL, 0600, err);
		if (out < 0 && out != -EEXIST)
			return out;
	}
	if (out < 0)
		return out;
	unsigned char md[32];
	uint64_t got;
	r = digest_fd(c->s, in, e->size, out, md, &got, err);
	char hex[65];
	hex_of(md, hex);
	if (r == 0 && (got != e->size || strcmp(hex, e->hex) != 0))
		r = ab_error_set(err, -EIO, "the stored object %s is damaged", e->hex);
	if (r == 0 && fchmod(out, e->mode) < 0)
		r = ab_error_errno(err, -errno, "chmod");
	if (r == 0 && renameat(dfd, tmp, dfd, name) < 0)
		r = ab_error_errno(err, -errno, "rename into place");
	if (r < 0) {
		unlinkat(dfd, tmp, 0);
		return r;
	}
	c->written++;
	return 0;
}

/* Whether what is at name (st) can stay as the entry e of the manifest. */
static bool entry_fits(int dfd, const char *name, const struct stat *st, const went *e)
{
	if (e->kind == K_DIR)
		return S_ISDIR(st->st_mode);
	if (e->kind == K_FILE)
		return S_ISREG(st->st_mode);
	if (!S_ISLNK(st->st_mode))
		return false;
	char target[4096];
	ssize_t n = readlinkat(dfd, name, target, sizeof(target));
	return n > 0 && (size_t)n < sizeof(target) && (size_t)n == strlen(e->target) &&
	       memcmp(target, e->target, (size_t)n) == 0;
}

/* The manifest's entry at path (c->l is sorted by path_cmp). */
static const went *lookup(const restore_ctx *c, const char *path)
{
	size_t lo = 0, hi = c->l.n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int k = path_cmp(c->l.v[mid].path, path);
		if (k == 0)
			return &c->l.v[mid];
		if (k < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Makes directory dfd (c->path, plen bytes) hold exactly the entries
 * [lo, hi) of the manifest and their subtrees. */
static int restore_dir(restore_ctx *c, int dfd, size_t plen, size_t lo, size_t hi, int depth,
		       ab_error *err)
{
	/* First what is in the way goes: entries the manifest lacks, and
	 * entries of another kind (or link target) than it names. */
	names l;
	int r = read_names(dfd, &l, SIZE_MAX, err);
	if (r < 0)
		return r;
	for (size_t i = 0; r == 0 && i < l.n; i++) {
		const char *name = l.v[i];
		size_t nlen = strlen(name);
		const went *e = NULL;
		if (plen + 1 + nlen < WS_PATH_MAX) {
			if (plen)
				c->path[plen] = '/';
			memcpy(c->path + plen + (plen ? 1 : 0), name, nlen + 1);
			e = lookup(c, c->path);
		}
		struct stat st;
		if (e && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    entry_fits(dfd, name, &st, e))
			continue;
		r = remove_entry(dfd, name, depth + 1, err);
	}
	c->path[plen] = '\0';
	if (r < 0 && plen)
		ab_error_prefix(err, "%s", c->path);
	names_free(&l);
	/* Then the manifest's entries, each directory followed by its
	 * subtree. */
	for (size_t i = lo; r == 0 && i < hi;) {
		const went *e = &c->l.v[i];
		const char *name = e->path + plen + (plen ? 1 : 0);
		size_t len = strlen(e->path), j = i + 1;
		while (j < hi && strncmp(c->l.v[j].path, e->path, len) == 0 &&
		       c->l.v[j].path[len] == '/')
			j++;
		memcpy(c->path, e->path, len + 1);
		bool inner = false;
		if (e->kind == K_DIR) {
			/* Writable while it is filled (mkdir_open); its own mode
			 * after. */
			AB_AUTOCLOSE int fd = mkdir_open(dfd, name, err);
			struct stat st;
			if (fd < 0) {
				r = fd;
			} else if (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode)) {
				r = ab_error_set(err, -ENOTDIR, "not a directory");
			} else {
				inner = true;
				if ((r = restore_dir(c, fd, len, i + 1, j, depth + 1, err)) == 0) {
					inner = false;
					if (fchmod(fd, e->mode) < 0)
						r = ab_error_errno(err, -errno, "chmod");
				}
			}
		} else if (e->kind == K_FILE) {
			r = restore_file(c, dfd, name, e, err);
		} else {
			struct stat st;
			if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 &&
			    symlinkat(e->target, dfd, name) < 0)
				r = ab_error_errno(err, -errno, "create symlink");
		}
		if (r < 0 && !inner)
			ab_error_prefix(err, "%s", e->path);
		c->path[plen] = '\0';
		i = j;
	}
	return r;
}

int ws_restore(ws_store *s, const json_t *manifest, int wsfd, uid_t uid, gid_t gid, ab_error *err)
{
	ab_error local = {0};
	if (!err)
		err = &local; /* the helpers below fill it */
	if (!s)
		return ab_error_set(err, -EINVAL, "restore: no store");
	restore_ctx c = {.s = s, .uid = uid, .gid = gid};
	int r = parse_manifest(manifest, &c.l, err);
	if (r < 0)
		return r;
	/* Every content must be at hand before anything is changed. */
	for (size_t i = 0; r == 0 && i < c.l.n; i++)
		if (c.l.v[i].kind == K_FILE && obj_size(s, c.l.v[i].hex) != (int64_t)c.l.v[i].size)
			r = ab_error_set(err, -ENOENT,
					 "the store lacks the content of \"%.200s\" (object %s)",
					 c.l.v[i].path, c.l.v[i].hex);
	if (r == 0 && !(c.path = malloc(WS_PATH_MAX)))
		r = ab_error_set(err, -ENOMEM, "out of memory");
	int fd = -1;
	if (r == 0) {
		c.path[0] = '\0';
		fd = r = ab_path_open_beneath(wsfd, ".", O_RDONLY | O_DIRECTORY, 0, err);
	}
	struct stat root;
	if (r >= 0 && fstat(fd, &root) < 0)
		r = ab_error_errno(err, -errno, "stat the workspace");
	if (r >= 0 && (r = creds_enter_ids(uid, gid, &c.cr, err)) == 0) {
		/* A workspace its owner made read-only is writable while it is
		 * restored, then given its mode back. */
		bool ro = (root.st_mode & 0700) != 0700;
		if (ro && fchmod(fd, (root.st_mode & 07777) | 0700) < 0)
			r = ab_error_errno(err, -errno, "make the workspace writable");
		if (r == 0)
			r = restore_dir(&c, fd, 0, 0, c.l.n, 0, err);
		if (ro)
			fchmod(fd, root.st_mode & 07777);
	}
	creds_leave(&c.cr);
	if (fd >= 0)
		close(fd);
	free(c.path);
	wlist_free(&c.l);
	if (r < 0) {
		ab_error_prefix(err, "restore the workspace");
		return r;
	}
	return c.written;
}

/* -------------------------------------------------------------------- gc */

static int hex_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

uint64_t ws_gc(ws_store *s, json_t *const *live, size_t n)
{
	if (!s)
		return 0;
	const char **keep = NULL;
	size_t nkeep = 0, cap = 0;
	for (size_t m = 0; m < n; m++) {
		wlist l;
		ab_error err = {0};
		if (parse_manifest(live[m], &l, &err) < 0) {
			free(keep);
			return 0;
		}
		for (size_t i = 0; i < l.n; i++) {
			if (l.v[i].kind != K_FILE)
				continue;
			if (nkeep == cap) {
				size_t nc = cap ? cap * 2 : 1024;
				const char **k = realloc(keep, nc * sizeof(*k));
				if (!k) {
					wlist_free(&l);
					free(keep);
					return 0;
				}
				keep = k;
				cap = nc;
			}
			/* The manifest's own string, alive as long as it is. */
			keep[nkeep++] = json_string_value(
			    json_object_get(json_object_get(json_object_get(live[m], "files"),
							    l.v[i].path),
					    "sha256"));
		}
		wlist_free(&l);
	}
	if (nkeep)
		qsort(keep, nkeep, sizeof(*keep), hex_cmp);
	uint64_t freed = 0;
	ab_error err = {0};
	names sub;
	if (read_names(s->objfd, &sub, SIZE_MAX, &err) == 0) {
		for (size_t i = 0; i < sub.n; i++) {
			AB_AUTOCLOSE int fd = ab_path_open_beneath(s->objfd, sub.v[i],
								   O_RDONLY | O_DIRECTORY, 0, &err);
			names objs;
			if (fd < 0 || read_names(fd, &objs, SIZE_MAX, &err) < 0)
				continue;
			for (size_t j = 0; j < objs.n; j++) {
				char hex[80];
				snprintf(hex, sizeof(hex), "%s%s", sub.v[i], objs.v[j]);
				const char *key = hex;
				if (nkeep && bsearch(&key, keep, nkeep, sizeof(*keep), hex_cmp))
					continue;
				struct stat st;
				if (fstatat(fd, objs.v[j], &st, AT_SYMLINK_NOFOLLOW) == 0 &&
				    unlinkat(fd, objs.v[j], 0) == 0 && S_ISREG(st.st_mode)) {
					freed += (uint64_t)st.st_size;
					s->bytes -= s->bytes < (uint64_t)st.st_size
							? s->bytes
							: (uint64_t)st.st_size;
				}
			}
			names_free(&objs);
			unlinkat(s->objfd, sub.v[i], AT_REMOVEDIR); /* when empty */
		}
		names_free(&sub);
	}
	free(keep);
	return freed;
}

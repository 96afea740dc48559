/* files.c - the files API: sandbox.files.write|read|list, and the copy of
 * a workspace when a session is promoted.
 *
 * The daemon runs with more privilege than the sandbox and the sandbox may
 * be running while we touch its workspace, so every path is checked
 * lexically (ab_path_check) and then walked one component at a time from a
 * descriptor of the workspace, each opened with openat2 without following
 * symlinks or leaving the directory before it (F1, F2), with the sandbox's
 * own file-system credentials. Only regular files are read or written;
 * FIFOs, sockets and devices are refused without blocking (F3). */
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "wsstore.h"
#include "fscreds.h"
#include "utf8.h"

#define MAX_FILE (64u << 20)
#define MAX_LIST 10000
/* One files.read answer carries at most this many bytes (base64 makes the
 * line a third longer): well below the 16 MiB line limit of the clients. */
#define READ_CHUNK (8u << 20)
/* Unfinished writes in parts kept per sandbox. */
#define MAX_UPLOADS 4

static int open_workspace(sandbox *sb, call *k)
{
	uid_t uid;
	const char *ws = sandbox_workspace(sb, &uid);
	int fd = !ws ? -1 : open(ws, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		call_fail(k, sb->id, ERR_INTERNAL, "the workspace is gone", NULL);
	return fd;
}

static bool get_path(call *k, const char *session, json_t *params, char *out, size_t outlen,
		     bool allow_root)
{
	json_t *p = json_object_get(params, "path");
	if (allow_root && (!p || (json_is_string(p) && (json_string_length(p) == 0 ||
							strcmp(json_string_value(p), ".") == 0)))) {
		out[0] = '\0';
		return true;
	}
	if (!json_is_string(p)) {
		call_fail(k, session, ERR_BAD_PARAMS, "params.path: expected a string", NULL);
		return false;
	}
	if (strlen(json_string_value(p)) != json_string_length(p)) {
		call_fail(k, session, ERR_PATH, "path contains a NUL byte", NULL);
		return false;
	}
	ab_error err = {0};
	if (ab_path_check(json_string_value(p), out, outlen, &err) < 0) {
		call_fail(k, session, ERR_PATH, err.msg, json_pack("{s:O}", "path", p));
		return false;
	}
	return true;
}

static size_t b64_decode(const char *in, size_t len, unsigned char *out, bool *ok)
{
	static signed char map[256];
	static bool init;
	if (!init) {
		memset(map, -1, sizeof(map));
		const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		for (int i = 0; i < 64; i++)
			map[(unsigned char)a[i]] = (signed char)i;
		init = true;
	}
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0, pad = 0;
	*ok = true;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)in[i];
		if (ch == '=') {
			pad++;
			continue;
		}
		if (ch == '\n' || ch == '\r')
			continue;
		if (map[ch] < 0 || pad) {
			*ok = false;
			return 0;
		}
		acc = (acc << 6) | (uint32_t)map[ch];
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	if (pad > 2)
		*ok = false;
	return o;
}

static char *b64_encode(const unsigned char *in, size_t len)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((len + 2) / 3 * 4 + 1);
	if (!out)
		return NULL;
	size_t o = 0, i = 0;
	for (; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = a[v >> 18];
		out[o++] = a[(v >> 12) & 63];
		out[o++] = a[(v >> 6) & 63];
		out[o++] = a[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
		out[o++] = a[v >> 18];
		out[o++] = a[(v >> 12) & 63];
		out[o++] = i + 1 < len ? a[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return out;
}

/* ------------------------------------------------ file-system credentials
 *
 * fscreds.h: the sandbox's own uid and gid, as root, for everything done
 * in its workspace. */

static int creds_enter(const sandbox *sb, fs_creds *saved, ab_error *err)
{
	uid_t uid = 0;
	if (!sandbox_workspace(sb, &uid))
		return ab_error_set(err, -ENOENT, "the workspace is gone");
	return creds_enter_ids(uid, (gid_t)uid, saved, err);
}

/* Errors of the storage (full, quota, I/O) are resource errors; everything
 * else about a path is a refused path. */
static int err_code(int e)
{
	return e == -ENOSPC || e == -EDQUOT || e == -EFBIG || e == -EIO || e == -ENOMEM
		   ? ERR_RESOURCES
		   : ERR_PATH;
}

/* ----------------------------------------------------------------- writes
 *
 * A file is written into an unnamed file (O_TMPFILE) in the directory that
 * will hold it and only linked into place, under a temporary name and then
 * renamed over the target, once its last part arrived: a client or the
 * sandbox never sees a partly written file under the target's name, and an
 * abandoned write leaves nothing behind. File systems without O_TMPFILE get
 * a named temporary file ".agentbox-write-*" in the same directory instead.
 * A file may come in parts (params.upload, params.offset, params.more) so
 * that no request line comes near the connection's limit; the parts of one
 * file are written in order to the same descriptor, and the daemon keeps
 * the 64 MiB cap on their sum. */

typedef struct upload {
	struct upload *next;
	sandbox *sb;
	char token[24];
	int dirfd;	  /* the directory that receives the file (O_PATH) */
	int fd;		  /* the file being written */
	char tmpname[48]; /* its name, when it is not an unnamed file */
	char rel[4200];	  /* the normalised path */
	const char *leaf; /* the last component of rel */
	mode_t mode;
	uint64_t size;	    /* bytes received so far */
	uint64_t last_used; /* for discarding the least recently used */
	unsigned parts;
	EVP_MD_CTX *md; /* SHA-256 of the whole file, for the audit log */
} upload;

static upload *uploads;
static uint64_t upload_clock;

static void upload_free(upload *u)
{
	if (!u)
		return;
	if (u->tmpname[0] && u->dirfd >= 0)
		unlinkat(u->dirfd, u->tmpname, 0);
	if (u->fd >= 0)
		close(u->fd);
	if (u->dirfd >= 0)
		close(u->dirfd);
	EVP_MD_CTX_free(u->md);
	free(u);
}

static void upload_unlink(upload *u)
{
	for (upload **p = &uploads; *p; p = &(*p)->next)
		if (*p == u) {
			*p = u->next;
			return;
		}
}

void files_forget(sandbox *sb)
{
	for (upload **p = &uploads; *p;) {
		upload *u = *p;
		if (u->sb == sb) {
			*p = u->next;
			upload_free(u);
		} else {
			p = &u->next;
		}
	}
}

static upload *upload_find(const sandbox *sb, const char *token)
{
	for (upload *u = uploads; u; u = u->next)
		if (u->sb == sb && strcmp(u->token, token) == 0)
			return u;
	return NULL;
}

/* Keeps an unfinished write for its next part. A client that abandons
 * writes (interrupted, or gone mid-file) cannot pile them up: past
 * MAX_UPLOADS per sandbox the least recently used one is discarded, and
 * its next part is refused as unknown. */
static void upload_keep(upload *u)
{
	int n = 0;
	upload *oldest = NULL;
	for (upload *v = uploads; v; v = v->next)
		if (v->sb == u->sb) {
			n++;
			if (!oldest || v->last_used < oldest->last_used)
				oldest = v;
		}
	if (n >= MAX_UPLOADS && oldest) {
		upload_unlink(oldest);
		upload_free(oldest);
	}
	u->next = uploads;
	uploads = u;
}

static int random_name(char *out, size_t len, const char *prefix)
{
	unsigned char r[8];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return -errno;
	snprintf(out, len, "%s%02x%02x%02x%02x%02x%02x%02x%02x", prefix, r[0], r[1], r[2], r[3],
		 r[4], r[5], r[6], r[7]);
	return 0;
}

static const char *kind_of(mode_t m)
{
	return S_ISDIR(m) ? "a directory" : S_ISLNK(m) ? "a symlink" : "not a regular file";
}

/* Opens the directory of rel (creating it as needed) and an unnamed file in
 * it. Runs with the sandbox's credentials. */
static int upload_start(upload *u, int wsfd, ab_error *err)
{
	int r = ab_path_open_parent(wsfd, u->rel, true, 0755, &u->leaf, err);
	if (r < 0)
		return r;
	u->dirfd = r;
	struct stat st;
	if (fstatat(u->dirfd, u->leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode))
		return ab_error_set(err, -EPERM, "refusing to write \"%s\": it is %s", u->rel,
				    kind_of(st.st_mode));
	ab_error e2 = {0};
	u->fd = ab_path_open_beneath(u->dirfd, ".", O_TMPFILE | O_WRONLY, 0600, &e2);
	if (u->fd == -EOPNOTSUPP || u->fd == -EISDIR) {
		for (int tries = 0; tries < 8; tries++) {
			if ((r = random_name(u->tmpname, sizeof(u->tmpname), ".agentbox-write-")) <
			    0)
				return ab_error_errno(err, r, "getrandom");
			u->fd = ab_path_open_beneath(u->dirfd, u->tmpname,
						     O_WRONLY | O_CREAT | O_EXCL, 0600, &e2);
			if (u->fd != -EEXIST)
				break;
		}
		if (u->fd < 0)
			u->tmpname[0] = '\0';
	}
	if (u->fd < 0)
		return ab_error_errno(err, u->fd, "create a file in the directory of \"%s\"",
				      u->rel);
	if (fchmod(u->fd, u->mode) < 0)
		return ab_error_errno(err, -errno, "chmod \"%s\"", u->rel);
	u->md = EVP_MD_CTX_new();
	if (!u->md || EVP_DigestInit_ex(u->md, EVP_sha256(), NULL) != 1)
		return ab_error_set(err, -ENOMEM, "out of memory");
	return 0;
}

static int upload_append(upload *u, const void *data, size_t len, ab_error *err)
{
	const char *p = data;
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(u->fd, p + done, len - done, (off_t)(u->size + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return ab_error_errno(err, n < 0 ? -errno : -ENOSPC, "write \"%s\"",
					      u->rel);
		done += (size_t)n;
	}
	if (EVP_DigestUpdate(u->md, data, len) != 1)
		return ab_error_set(err, -ENOMEM, "out of memory");
	u->size += len;
	u->parts++;
	return 0;
}

/* Puts the finished file in place: linked under a temporary name, then
 * renamed over the target, so the target names either the old file or the
 * complete new one. The sandbox may swap names meanwhile; that only moves
 * entries within its own workspace (no call here follows a symlink), and
 * the final check reports it. */
static int upload_finish(upload *u, char digest[65], ab_error *err)
{
	if (!u->tmpname[0]) {
		char proc[64];
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", u->fd);
		int r = -EEXIST;
		for (int tries = 0; tries < 8 && r == -EEXIST; tries++) {
			if ((r = random_name(u->tmpname, sizeof(u->tmpname), ".agentbox-write-")) <
			    0)
				break;
			r = linkat(AT_FDCWD, proc, u->dirfd, u->tmpname, AT_SYMLINK_FOLLOW) < 0
				? -errno
				: 0;
		}
		if (r < 0) {
			u->tmpname[0] = '\0';
			return ab_error_errno(err, r, "link \"%s\" into place", u->rel);
		}
	}
	if (renameat(u->dirfd, u->tmpname, u->dirfd, u->leaf) < 0) {
		int e = -errno;
		if (e == -EISDIR || e == -ENOTEMPTY || e == -EEXIST)
			return ab_error_set(err, -EISDIR,
					    "refusing to write \"%s\": it is a directory", u->rel);
		return ab_error_errno(err, e, "rename into \"%s\"", u->rel);
	}
	u->tmpname[0] = '\0';
	struct stat mine, there;
	if (fstat(u->fd, &mine) < 0 ||
	    fstatat(u->dirfd, u->leaf, &there, AT_SYMLINK_NOFOLLOW) < 0 ||
	    mine.st_ino != there.st_ino || mine.st_dev != there.st_dev)
		return ab_error_set(err, -ESTALE,
				    "\"%s\" was replaced by the sandbox while it was being written",
				    u->rel);
	unsigned char md[32];
	unsigned int n = 0;
	if (EVP_DigestFinal_ex(u->md, md, &n) != 1 || n != 32)
		return ab_error_set(err, -ENOMEM, "out of memory");
	ab__hex_encode(md, 32, digest);
	return 0;
}

/* Reads an optional non-negative integer parameter; false (with the error
 * sent) when it is present and malformed. */
static bool get_uint(call *k, const char *session, json_t *params, const char *name, uint64_t max,
		     bool *present, uint64_t *out)
{
	json_t *v = json_object_get(params, name);
	*present = v != NULL;
	*out = 0;
	if (!v)
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max) {
		char msg[160];
		snprintf(msg, sizeof(msg), "params.%s: expected an integer from 0 to %llu", name,
			 (unsigned long long)max);
		call_fail(k, session, ERR_BAD_PARAMS, msg, NULL);
		return false;
	}
	*out = (uint64_t)json_integer_value(v);
	return true;
}

static void files_write(sandbox *sb, call *k, json_t *params)
{
	char rel[4200];
	if (!get_path(k, sb->id, params, rel, sizeof(rel), false))
		return;
	json_t *d = json_object_get(params, "data"), *b = json_object_get(params, "data_b64");
	if ((d != NULL) == (b != NULL) || (d && !json_is_string(d)) || (b && !json_is_string(b))) {
		call_fail(k, sb->id, ERR_BAD_PARAMS,
			  "give exactly one of params.data (text) or params.data_b64 (base64)",
			  NULL);
		return;
	}
	json_t *jup = json_object_get(params, "upload"), *jmore = json_object_get(params, "more");
	if ((jup && !json_is_string(jup)) || (jmore && !json_is_boolean(jmore))) {
		call_fail(k, sb->id, ERR_BAD_PARAMS,
			  jmore && !json_is_boolean(jmore)
			      ? "params.more: expected true or false"
			      : "params.upload: expected the upload id of an earlier part",
			  NULL);
		return;
	}
	bool more = jmore && json_is_true(jmore), has_off;
	uint64_t offset;
	if (!get_uint(k, sb->id, params, "offset", MAX_FILE, &has_off, &offset))
		return;
	if (jup && !has_off) {
		call_fail(k, sb->id, ERR_BAD_PARAMS,
			  "params.offset: required with params.upload (the bytes sent so far)",
			  NULL);
		return;
	}
	if (!jup && offset != 0) {
		call_fail(k, sb->id, ERR_BAD_PARAMS,
			  "params.offset: a write without params.upload starts a file at 0", NULL);
		return;
	}
	mode_t mode = 0644;
	json_t *m = json_object_get(params, "mode");
	if (m && jup) {
		call_fail(k, sb->id, ERR_BAD_PARAMS,
			  "params.mode: give it with the first part of a file", NULL);
		return;
	}
	if (m) {
		if (!json_is_integer(m) || json_integer_value(m) < 0 ||
		    json_integer_value(m) > 0777) {
			call_fail(k, sb->id, ERR_BAD_PARAMS,
				  "params.mode: expected permission bits 0..0777 (no setuid)",
				  NULL);
			return;
		}
		mode = (mode_t)json_integer_value(m);
	}
	upload *u = NULL;
	if (jup) {
		u = upload_find(sb, json_string_value(jup));
		char msg[600];
		if (!u) {
			snprintf(msg, sizeof(msg),
				 "params.upload: no unfinished write \"%.40s\" in this sandbox "
				 "(it was completed, refused, or discarded after %d newer ones); "
				 "write the file again from its start",
				 json_string_value(jup), MAX_UPLOADS);
			call_fail(k, sb->id, ERR_BAD_PARAMS, msg, NULL);
			return;
		}
		if (strcmp(u->rel, rel) != 0 || offset != u->size) {
			if (strcmp(u->rel, rel) != 0)
				snprintf(msg, sizeof(msg),
					 "params.path: upload %s writes \"%.200s\", not this path",
					 u->token, u->rel);
			else
				snprintf(msg, sizeof(msg),
					 "params.offset: upload %s has received %llu bytes; parts "
					 "come in order",
					 u->token, (unsigned long long)u->size);
			call_fail(k, sb->id, ERR_BAD_PARAMS, msg, NULL);
			return;
		}
		upload_unlink(u);
	}
	const char *src = json_string_value(d ? d : b);
	size_t slen = json_string_length(d ? d : b);
	AB_AUTOFREE unsigned char *bytes = NULL;
	size_t len = slen;
	if (b) {
		bool ok;
		bytes = malloc(slen / 4 * 3 + 3);
		if (!bytes) {
			upload_free(u);
			call_fail(k, sb->id, ERR_INTERNAL, "out of memory", NULL);
			return;
		}
		len = b64_decode(src, slen, bytes, &ok);
		if (!ok) {
			upload_free(u);
			call_fail(k, sb->id, ERR_BAD_PARAMS, "params.data_b64: invalid base64",
				  NULL);
			return;
		}
	}
	if (offset + len > MAX_FILE) {
		upload_free(u);
		char msg[400];
		snprintf(msg, sizeof(msg),
			 "refusing to write \"%.200s\": files are limited to 64 MiB (%u bytes), "
			 "this one would be %llu bytes",
			 rel, MAX_FILE, (unsigned long long)(offset + len));
		call_fail(k, sb->id, ERR_PATH, msg,
			  json_pack("{s:s, s:I}", "path", rel, "limit", (json_int_t)MAX_FILE));
		return;
	}
	AB_AUTOCLOSE int wsfd = -1;
	if (!u) {
		if ((wsfd = open_workspace(sb, k)) < 0)
			return;
		u = calloc(1, sizeof(*u));
		if (!u || random_name(u->token, sizeof(u->token), "up-") < 0) {
			free(u);
			call_fail(k, sb->id, ERR_INTERNAL, "out of memory", NULL);
			return;
		}
		u->sb = sb;
		u->dirfd = u->fd = -1;
		u->mode = mode;
		snprintf(u->rel, sizeof(u->rel), "%s", rel);
	}
	u->last_used = ++upload_clock;
	ab_error err = {0};
	char digest[65] = "";
	fs_creds cr;
	int r = creds_enter(sb, &cr, &err);
	if (r == 0 && wsfd >= 0)
		r = upload_start(u, wsfd, &err);
	if (r == 0)
		r = upload_append(u, bytes ? (const void *)bytes : src, len, &err);
	if (r == 0 && !more)
		r = upload_finish(u, digest, &err);
	creds_leave(&cr);
	if (r < 0) {
		upload_free(u);
		call_fail(k, sb->id, err_code(r), err.msg, json_pack("{s:s}", "path", rel));
		return;
	}
	if (more) {
		json_t *res = json_pack("{s:s, s:I, s:b, s:s}", "path", rel, "size",
					(json_int_t)u->size, "complete", 0, "upload", u->token);
		upload_keep(u);
		call_done(k, res);
		return;
	}
	json_int_t size = (json_int_t)u->size;
	client_learns(k->who, audit_event("files.write", sb->id, -1, k->who->actor,
					  json_pack("{s:s, s:I, s:s, s:i, s:i}", "path", rel,
						    "size", size, "sha256", digest, "mode",
						    (int)u->mode, "parts", (int)u->parts)));
	upload_free(u);
	call_done(k, json_pack("{s:s, s:I, s:b}", "path", rel, "size", size, "complete", 1));
}

/* ------------------------------------------------------------------ reads */

static void files_read(sandbox *sb, call *k, json_t *params)
{
	char rel[4200];
	if (!get_path(k, sb->id, params, rel, sizeof(rel), false))
		return;
	bool has_off, has_len;
	uint64_t offset, length;
	if (!get_uint(k, sb->id, params, "offset", (uint64_t)INT64_MAX, &has_off, &offset) ||
	    !get_uint(k, sb->id, params, "length", READ_CHUNK, &has_len, &length))
		return;
	AB_AUTOCLOSE int wsfd = open_workspace(sb, k);
	if (wsfd < 0)
		return;
	ab_error err = {0};
	fs_creds cr;
	int fd = creds_enter(sb, &cr, &err);
	if (fd == 0)
		fd = ab_path_walk_open(wsfd, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0, &err);
	creds_leave(&cr);
	if (fd < 0) {
		call_fail(k, sb->id, ERR_PATH, err.msg, NULL);
		return;
	}
	AB_AUTOCLOSE int rfd = fd;
	struct stat st;
	if (fstat(rfd, &st) < 0 || !S_ISREG(st.st_mode)) {
		call_fail(k, sb->id, ERR_PATH, "refusing to read: not a regular file", NULL);
		return;
	}
	char msg[400];
	uint64_t fsize = (uint64_t)st.st_size;
	if (fsize > MAX_FILE) {
		snprintf(msg, sizeof(msg),
			 "refusing to read \"%.200s\": files are limited to 64 MiB (%u bytes), "
			 "this one has %llu bytes",
			 rel, MAX_FILE, (unsigned long long)fsize);
		call_fail(k, sb->id, ERR_PATH, msg,
			  json_pack("{s:s, s:I}", "path", rel, "limit", (json_int_t)MAX_FILE));
		return;
	}
	uint64_t rest = offset < fsize ? fsize - offset : 0;
	if (!has_len && rest > READ_CHUNK) {
		snprintf(msg, sizeof(msg),
			 "\"%.200s\" has %llu bytes and one answer carries at most %u: read it in "
			 "parts with params.offset and params.length",
			 rel, (unsigned long long)fsize, READ_CHUNK);
		call_fail(k, sb->id, ERR_PATH, msg,
			  json_pack("{s:s, s:I, s:I}", "path", rel, "size", (json_int_t)fsize,
				    "max_length", (json_int_t)READ_CHUNK));
		return;
	}
	size_t want = (size_t)(has_len && length < rest ? length : rest);
	/* Read at most what was asked: the sandbox may grow the file meanwhile. */
	AB_AUTOFREE unsigned char *buf = malloc(want + 1);
	if (!buf) {
		call_fail(k, sb->id, ERR_INTERNAL, "out of memory", NULL);
		return;
	}
	size_t len = 0;
	while (len < want) {
		ssize_t n = pread(rfd, buf + len, want - len, (off_t)(offset + len));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	/* Tells a client reading in parts whether the file changed between
	 * them: a replaced file has another inode, a written one a new ctime. */
	char version[96];
	snprintf(version, sizeof(version), "%llx-%llx-%lld.%09ld-%llx",
		 (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
		 (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec, (unsigned long long)fsize);
	char digest[65];
	ab_sha256_hex(buf, len, digest);
	AB_AUTOFREE char *enc = b64_encode(buf, len);
	if (!enc) {
		call_fail(k, sb->id, ERR_INTERNAL, "out of memory", NULL);
		return;
	}
	client_learns(k->who,
		      audit_event("files.read", sb->id, -1, k->who->actor,
				  json_pack("{s:s, s:I, s:I, s:I, s:s}", "path", rel, "offset",
					    (json_int_t)offset, "size", (json_int_t)len,
					    "file_size", (json_int_t)fsize, "sha256", digest)));
	call_done(k, json_pack("{s:s, s:I, s:I, s:s, s:s}", "path", rel, "size", (json_int_t)fsize,
			       "offset", (json_int_t)offset, "data_b64", enc, "version", version));
}

/* ------------------------------------------------------------------ lists */

static void files_list(sandbox *sb, call *k, json_t *params)
{
	char rel[4200];
	if (!get_path(k, sb->id, params, rel, sizeof(rel), true))
		return;
	AB_AUTOCLOSE int wsfd = open_workspace(sb, k);
	if (wsfd < 0)
		return;
	ab_error err = {0};
	fs_creds cr;
	int dfd = creds_enter(sb, &cr, &err);
	if (dfd == 0)
		dfd = rel[0] ? ab_path_walk_open(wsfd, rel, O_RDONLY | O_DIRECTORY, 0, &err)
			     : ab_path_open_beneath(wsfd, ".", O_RDONLY | O_DIRECTORY, 0, &err);
	DIR *dir = NULL;
	if (dfd >= 0 && !(dir = fdopendir(dfd))) {
		close(dfd);
		dfd = ab_error_errno(&err, -errno, "fdopendir");
	}
	if (dfd < 0) {
		creds_leave(&cr);
		call_fail(k, sb->id, ERR_PATH, err.msg[0] ? err.msg : "cannot open the directory",
			  NULL);
		return;
	}
	json_t *entries = json_array();
	struct dirent *de;
	bool more = false;
	while ((de = readdir(dir))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (json_array_size(entries) >= MAX_LIST) {
			more = true;
			break;
		}
		struct stat st;
		const char *type = "other";
		json_int_t size = 0;
		if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (S_ISREG(st.st_mode))
				type = "file", size = st.st_size;
			else if (S_ISDIR(st.st_mode))
				type = "dir";
			else if (S_ISLNK(st.st_mode))
				type = "symlink";
		}
		size_t nc = 0;
		char carry[4];
		json_array_append_new(
		    entries,
		    json_pack("{s:o, s:s, s:I}", "name",
			      ab__utf8_chunk(de->d_name, strlen(de->d_name), carry, &nc, true),
			      "type", type, "size", size));
	}
	closedir(dir);
	creds_leave(&cr);
	client_learns(k->who, audit_event("files.list", sb->id, -1, k->who->actor,
					  json_pack("{s:s, s:I, s:b}", "path", rel, "entries",
						    (json_int_t)json_array_size(entries),
						    "truncated", more)));
	call_done(k,
		  json_pack("{s:s, s:o, s:b}", "path", rel, "entries", entries, "truncated", more));
}

/* files.read and files.list with params.step: the workspace as it was
 * before that step (docs/time-travel.md), from the session's store. */
static void files_at(sandbox *sb, call *k, enum files_op op, json_t *params)
{
	json_t *sv = json_object_get(params, "step");
	if (op == FILES_WRITE) {
		call_fail(k, sb->id, ERR_BAD_PARAMS,
			  "params.step: the past is read-only (rewind first to change it)", NULL);
		return;
	}
	if (!json_is_integer(sv) || json_integer_value(sv) < 1 || json_integer_value(sv) > INT32_MAX) {
		call_fail(k, sb->id, ERR_BAD_PARAMS, "params.step: expected a step number (1 or more)",
			  NULL);
		return;
	}
	int n = (int)json_integer_value(sv);
	char rel[4200];
	if (!get_path(k, sb->id, params, rel, sizeof(rel), op == FILES_LIST))
		return;
	ws_store *store = NULL;
	const json_t *m = history_files_at(sb, k, n, &store);
	if (!m)
		return;
	ab_error err = {0};
	if (op == FILES_LIST) {
		json_t *entries = ws_list(m, rel, &err);
		if (!entries) {
			call_fail(k, sb->id, ERR_PATH, err.msg, NULL);
			return;
		}
		/* The same names as a list of the present: "type", "symlink". */
		size_t i;
		json_t *e;
		json_array_foreach(entries, i, e)
		{
			const char *kind = json_string_value(json_object_get(e, "kind"));
			json_object_set_new(e, "type",
					    json_string(kind && strcmp(kind, "link") == 0 ? "symlink"
											  : kind ? kind : "other"));
			json_object_del(e, "kind");
		}
		call_done(k, json_pack("{s:s, s:i, s:o, s:b}", "path", rel, "step", n, "entries",
				       entries, "truncated", 0));
		return;
	}
	bool has_off, has_len;
	uint64_t offset, length;
	if (!get_uint(k, sb->id, params, "offset", (uint64_t)INT64_MAX, &has_off, &offset) ||
	    !get_uint(k, sb->id, params, "length", READ_CHUNK, &has_len, &length))
		return;
	json_t *entry = json_object_get(json_object_get(m, "files"), rel);
	json_int_t fsize = json_integer_value(json_object_get(entry, "size"));
	if (entry && !has_len && fsize - (json_int_t)offset > (json_int_t)READ_CHUNK) {
		char msg[400];
		snprintf(msg, sizeof(msg),
			 "\"%.200s\" had %lld bytes and one answer carries at most %u: read it in "
			 "parts with params.offset and params.length",
			 rel, (long long)fsize, READ_CHUNK);
		call_fail(k, sb->id, ERR_PATH, msg, NULL);
		return;
	}
	char *data = NULL;
	size_t len = 0;
	if (ws_read(store, m, rel, offset, has_len ? (size_t)length : READ_CHUNK, &data, &len,
		    &err) < 0) {
		call_fail(k, sb->id, ERR_PATH, err.msg, NULL);
		return;
	}
	AB_AUTOFREE char *enc = b64_encode((const unsigned char *)data, len);
	free(data);
	if (!enc) {
		call_fail(k, sb->id, ERR_INTERNAL, "out of memory", NULL);
		return;
	}
	/* A version of the past never changes: its digest is its version. */
	call_done(k, json_pack("{s:s, s:i, s:I, s:I, s:s, s:O, s:O}", "path", rel, "step", n, "size",
			       (json_int_t)fsize, "offset", (json_int_t)offset, "data_b64", enc,
			       "sha256", json_object_get(entry, "sha256"), "version",
			       json_object_get(entry, "sha256")));
}

void engine_files(sandbox *sb, call *k, enum files_op op, json_t *params)
{
	if (json_object_get(params, "step")) {
		files_at(sb, k, op, params);
		return;
	}
	if (sb->promote_to) {
		/* The workspace is being copied to the heavy tier. */
		call_fail(k, sb->id, ERR_BUSY, "the sandbox is busy moving to the heavy tier",
			  NULL);
		return;
	}
	sandbox_touch(sb);
	if (op == FILES_WRITE)
		files_write(sb, k, params);
	else if (op == FILES_READ)
		files_read(sb, k, params);
	else
		files_list(sb, k, params);
}

/* Copies directory from into directory to (both open), recursively:
 * regular files and directories only (a nano workspace can hold nothing
 * else), one component at a time and without following symlinks. The
 * source is read with the daemon's credentials (it belongs to another
 * sandbox's uid); everything in the destination is made with the
 * credentials of its owner, uid:gid. Directories are made writable for the
 * copy and given their mode after it. */
static int copy_dir(int from, int to, uid_t uid, gid_t gid, int depth, int *nfiles, ab_error *err)
{
	if (depth > 256)
		return ab_error_set(err, -ELOOP, "directories nested too deeply");
	int dfd = ab_path_open_beneath(from, ".", O_RDONLY | O_DIRECTORY, 0, err);
	if (dfd < 0)
		return dfd;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return ab_error_errno(err, -errno, "read directory");
	}
	int r = 0;
	struct dirent *de;
	while (r == 0 && (de = readdir(d))) {
		const char *n = de->d_name;
		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(from, n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = ab_error_errno(err, -errno, "stat \"%s\"", n);
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			AB_AUTOCLOSE int sfd =
			    ab_path_open_beneath(from, n, O_RDONLY | O_DIRECTORY, 0, err);
			if (sfd < 0) {
				r = sfd;
				break;
			}
			fs_creds cr;
			AB_AUTOCLOSE int tfd = creds_enter_ids(uid, gid, &cr, err);
			if (tfd == 0) {
				if (mkdirat(to, n, 0700) < 0 && errno != EEXIST)
					tfd = ab_error_errno(err, -errno, "create directory \"%s\"",
							     n);
				else
					tfd = ab_path_open_beneath(to, n, O_RDONLY | O_DIRECTORY, 0,
								   err);
			}
			creds_leave(&cr);
			if (tfd < 0) {
				r = tfd;
				break;
			}
			r = copy_dir(sfd, tfd, uid, gid, depth + 1, nfiles, err);
			if (r < 0) {
				ab_error_prefix(err, "%s", n);
				break;
			}
			if ((r = creds_enter_ids(uid, gid, &cr, err)) == 0 &&
			    fchmod(tfd, st.st_mode & 0777) < 0)
				r = ab_error_errno(err, -errno, "chmod \"%s\"", n);
			creds_leave(&cr);
			continue;
		}
		if (!S_ISREG(st.st_mode))
			continue;
		/* The entry may have changed since fstatat: only what the
		 * descriptor shows counts. */
		AB_AUTOCLOSE int in =
		    ab_path_open_beneath(from, n, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0, err);
		if (in < 0) {
			r = in;
			break;
		}
		if (fstat(in, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		fs_creds cr;
		AB_AUTOCLOSE int out = creds_enter_ids(uid, gid, &cr, err);
		if (out == 0)
			out = ab_path_open_beneath(to, n, O_WRONLY | O_CREAT | O_EXCL, 0600, err);
		if (out < 0) {
			creds_leave(&cr);
			r = out;
			break;
		}
		char buf[65536];
		for (;;) {
			ssize_t k = read(in, buf, sizeof(buf));
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0) {
				r = ab_error_errno(err, -errno, "read \"%s\"", n);
				break;
			}
			if (k == 0)
				break;
			for (ssize_t off = 0; off < k;) {
				ssize_t w = write(out, buf + off, (size_t)(k - off));
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0) {
					r = ab_error_errno(err, w < 0 ? -errno : -ENOSPC,
							   "write \"%s\"", n);
					break;
				}
				off += w;
			}
			if (r < 0)
				break;
		}
		if (r == 0 && fchmod(out, st.st_mode & 0777) < 0)
			r = ab_error_errno(err, -errno, "chmod \"%s\"", n);
		creds_leave(&cr);
		(*nfiles)++;
	}
	closedir(d);
	return r;
}

int copy_workspace(const char *from, const char *to, uid_t uid, gid_t gid, ab_error *err)
{
	AB_AUTOCLOSE int f = open(from, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	AB_AUTOCLOSE int t = open(to, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (f < 0 || t < 0)
		return ab_error_errno(err, -errno, "open workspace");
	int n = 0;
	int r = copy_dir(f, t, uid, gid, 0, &n, err);
	return r < 0 ? r : n;
}

/* files.c - the files API: sandbox.files.write|read|list.
 *
 * The daemon runs with more privilege than the sandbox and the sandbox may
 * be running while we touch its workspace, so every path is checked
 * lexically (ab_path_check) and then resolved with openat2 beneath the
 * workspace without following symlinks (F1, F2). Only regular files are
 * read or written; FIFOs, sockets and devices are refused without
 * blocking (F3). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon.h"

#define MAX_FILE (64u << 20)
#define MAX_LIST 10000

static int open_workspace(sandbox *sb, conn *c, json_t *id)
{
	char ws[4200];
	snprintf(ws, sizeof(ws), "%s/workspace", sb->dir);
	int fd = open(ws, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		conn_error(c, id, RPC_INTERNAL, "the workspace is gone", NULL);
	return fd;
}

static bool get_path(conn *c, json_t *id, json_t *params, char *out, size_t outlen, bool allow_root)
{
	json_t *p = json_object_get(params, "path");
	if (allow_root && (!p || (json_is_string(p) && (json_string_length(p) == 0 ||
							strcmp(json_string_value(p), ".") == 0)))) {
		out[0] = '\0';
		return true;
	}
	if (!json_is_string(p)) {
		conn_error(c, id, RPC_BAD_PARAMS, "params.path: expected a string", NULL);
		return false;
	}
	if (strlen(json_string_value(p)) != json_string_length(p)) {
		conn_error(c, id, RPC_PATH, "path contains a NUL byte", NULL);
		return false;
	}
	ab_error err = {0};
	if (ab_path_check(json_string_value(p), out, outlen, &err) < 0) {
		conn_error(c, id, RPC_PATH, err.msg, json_pack("{s:O}", "path", p));
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

/* Creates the parent directories of rel beneath the workspace, one
 * component at a time, each checked not to be a symlink. */
static int make_parents(int wsfd, const char *rel, ab_error *err)
{
	char buf[4200];
	snprintf(buf, sizeof(buf), "%s", rel);
	for (char *s = strchr(buf, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdirat(wsfd, buf, 0755) < 0 && errno != EEXIST) {
			int e = -errno;
			*s = '/';
			return ab_error_errno(err, e, "create directory \"%s\"", buf);
		}
		int fd = ab_path_open_beneath(wsfd, buf, O_PATH | O_DIRECTORY, 0, err);
		*s = '/';
		if (fd < 0)
			return fd;
		close(fd);
	}
	return 0;
}

void files_write(sandbox *sb, conn *c, json_t *id, json_t *params)
{
	char rel[4200];
	if (!get_path(c, id, params, rel, sizeof(rel), false))
		return;
	json_t *d = json_object_get(params, "data"), *b = json_object_get(params, "data_b64");
	if ((d != NULL) == (b != NULL) || (d && !json_is_string(d)) || (b && !json_is_string(b))) {
		conn_error(c, id, RPC_BAD_PARAMS,
			   "give exactly one of params.data (text) or params.data_b64 (base64)",
			   NULL);
		return;
	}
	mode_t mode = 0644;
	json_t *m = json_object_get(params, "mode");
	if (m) {
		if (!json_is_integer(m) || json_integer_value(m) < 0 ||
		    json_integer_value(m) > 0777) {
			conn_error(c, id, RPC_BAD_PARAMS,
				   "params.mode: expected permission bits 0..0777 (no setuid)",
				   NULL);
			return;
		}
		mode = (mode_t)json_integer_value(m);
	}
	const char *src = json_string_value(d ? d : b);
	size_t slen = json_string_length(d ? d : b);
	unsigned char *bytes = NULL;
	size_t len = slen;
	if (b) {
		bytes = malloc(slen / 4 * 3 + 3);
		bool ok;
		if (!bytes) {
			conn_error(c, id, RPC_INTERNAL, "out of memory", NULL);
			return;
		}
		len = b64_decode(src, slen, bytes, &ok);
		if (!ok) {
			free(bytes);
			conn_error(c, id, RPC_BAD_PARAMS, "params.data_b64: invalid base64", NULL);
			return;
		}
	}
	if (len > MAX_FILE) {
		free(bytes);
		conn_error(c, id, RPC_PATH, "file larger than 64 MiB", NULL);
		return;
	}
	AB_AUTOCLOSE int wsfd = open_workspace(sb, c, id);
	if (wsfd < 0) {
		free(bytes);
		return;
	}
	ab_error err = {0};
	if (make_parents(wsfd, rel, &err) < 0) {
		free(bytes);
		conn_error(c, id, RPC_PATH, err.msg, NULL);
		return;
	}
	int fd =
	    ab_path_open_beneath(wsfd, rel, O_WRONLY | O_CREAT | O_NONBLOCK | O_NOCTTY, mode, &err);
	if (fd < 0) {
		free(bytes);
		conn_error(c, id, RPC_PATH, err.msg, NULL);
		return;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		free(bytes);
		conn_error(c, id, RPC_PATH, "refusing to write: not a regular file", NULL);
		return;
	}
	/* Files we create belong to the sandbox's user, never to root, and
	 * never carry setuid/setgid bits (F5). */
	if (D.privileged)
		fchown(fd, sb->host_uid, (gid_t)sb->host_uid);
	fchmod(fd, mode & 0777);
	int r = ftruncate(fd, 0);
	const char *p = bytes ? (const char *)bytes : src;
	size_t off = 0;
	while (r == 0 && off < len) {
		ssize_t n = write(fd, p + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = -1;
			break;
		}
		off += (size_t)n;
	}
	char digest[65];
	audit_sha256_hex(p, off, digest);
	int e = errno;
	close(fd);
	free(bytes);
	if (r < 0) {
		char msg[300];
		snprintf(msg, sizeof(msg), "write \"%s\": %s", rel, strerror(e));
		conn_error(c, id, RPC_RESOURCES, msg, NULL);
		return;
	}
	audit_event("files.write", sb->id, -1, c->actor,
		    json_pack("{s:s, s:I, s:s, s:i}", "path", rel, "size", (json_int_t)len,
			      "sha256", digest, "mode", (int)mode));
	conn_reply(c, id, json_pack("{s:s, s:I}", "path", rel, "size", (json_int_t)len));
}

void files_read(sandbox *sb, conn *c, json_t *id, json_t *params)
{
	char rel[4200];
	if (!get_path(c, id, params, rel, sizeof(rel), false))
		return;
	AB_AUTOCLOSE int wsfd = open_workspace(sb, c, id);
	if (wsfd < 0)
		return;
	ab_error err = {0};
	AB_AUTOCLOSE int fd =
	    ab_path_open_beneath(wsfd, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0, &err);
	if (fd < 0) {
		conn_error(c, id, RPC_PATH, err.msg, NULL);
		return;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		conn_error(c, id, RPC_PATH, "refusing to read: not a regular file", NULL);
		return;
	}
	if (st.st_size > (off_t)MAX_FILE) {
		conn_error(c, id, RPC_PATH, "file larger than 64 MiB", NULL);
		return;
	}
	/* Read at most the cap: the sandbox may grow the file meanwhile. */
	unsigned char *buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		conn_error(c, id, RPC_INTERNAL, "out of memory", NULL);
		return;
	}
	size_t len = 0;
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	char digest[65];
	audit_sha256_hex(buf, len, digest);
	char *enc = b64_encode(buf, len);
	free(buf);
	if (!enc) {
		conn_error(c, id, RPC_INTERNAL, "out of memory", NULL);
		return;
	}
	audit_event(
	    "files.read", sb->id, -1, c->actor,
	    json_pack("{s:s, s:I, s:s}", "path", rel, "size", (json_int_t)len, "sha256", digest));
	conn_reply(
	    c, id,
	    json_pack("{s:s, s:I, s:s}", "path", rel, "size", (json_int_t)len, "data_b64", enc));
	free(enc);
}

void files_list(sandbox *sb, conn *c, json_t *id, json_t *params)
{
	char rel[4200];
	if (!get_path(c, id, params, rel, sizeof(rel), true))
		return;
	AB_AUTOCLOSE int wsfd = open_workspace(sb, c, id);
	if (wsfd < 0)
		return;
	ab_error err = {0};
	int dfd = rel[0] ? ab_path_open_beneath(wsfd, rel, O_RDONLY | O_DIRECTORY, 0, &err)
			 : openat(wsfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		conn_error(c, id, RPC_PATH, err.msg[0] ? err.msg : "cannot open the directory",
			   NULL);
		return;
	}
	DIR *dir = fdopendir(dfd);
	if (!dir) {
		close(dfd);
		conn_error(c, id, RPC_INTERNAL, "fdopendir failed", NULL);
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
	audit_event("files.list", sb->id, -1, c->actor,
		    json_pack("{s:s, s:I, s:b}", "path", rel, "entries",
			      (json_int_t)json_array_size(entries), "truncated", more));
	conn_reply(
	    c, id,
	    json_pack("{s:s, s:o, s:b}", "path", rel, "entries", entries, "truncated", more));
}

/* Removes a tree without following symlinks. Directories the sandbox made
 * unreadable are opened up first (an unprivileged daemon needs that). The
 * sandbox is dead when this runs, so the tree no longer changes. */
static int remove_at(int parent, const char *name, int depth)
{
	if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	if (depth > 10000)
		return -ELOOP;
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		fchmodat(parent, name, 0700, 0);
		fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return -errno;
	}
	fchmod(fd, 0700);
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		int rr = remove_at(dirfd(d), de->d_name, depth + 1);
		if (rr < 0)
			r = rr;
	}
	closedir(d);
	if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		r = -errno;
	return r;
}

int remove_tree(const char *path)
{
	return remove_at(AT_FDCWD, path, 0);
}

/* Copies directory from into directory to (both open), recursively:
 * regular files and directories only (a nano workspace can hold nothing
 * else), without following symlinks, owned by uid:gid. */
static int copy_dir(int from, int to, uid_t uid, gid_t gid, int depth, int *nfiles, ab_error *err)
{
	if (depth > 256)
		return ab_error_set(err, -ELOOP, "directories nested too deeply");
	int dfd = dup(from);
	DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
	if (!d) {
		if (dfd >= 0)
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
			if (mkdirat(to, n, st.st_mode & 0777) < 0 && errno != EEXIST) {
				r = ab_error_errno(err, -errno, "create directory \"%s\"", n);
				break;
			}
			AB_AUTOCLOSE int sfd =
			    openat(from, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			AB_AUTOCLOSE int tfd =
			    openat(to, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sfd < 0 || tfd < 0) {
				r = ab_error_errno(err, -errno, "open directory \"%s\"", n);
				break;
			}
			if (D.privileged)
				fchown(tfd, uid, gid);
			r = copy_dir(sfd, tfd, uid, gid, depth + 1, nfiles, err);
			if (r < 0)
				ab_error_prefix(err, "%s", n);
			continue;
		}
		if (!S_ISREG(st.st_mode))
			continue;
		AB_AUTOCLOSE int in =
		    openat(from, n, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		AB_AUTOCLOSE int out =
		    openat(to, n, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (in < 0 || out < 0) {
			r = ab_error_errno(err, -errno, "copy \"%s\"", n);
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
		if (D.privileged)
			fchown(out, uid, gid);
		fchmod(out, st.st_mode & 0777);
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

/* path.c - confinement of API file names to a sandbox's workspace.
 *
 * Two checks, both needed: ab_path_check refuses names that are malformed
 * or try to climb out lexically ("..", absolute paths), with a message the
 * client can act on; ab_path_open_beneath then resolves the name with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | ...) so that symlinks or
 * renames planted by the sandbox cannot make the supervisor (which runs
 * with more privilege) open anything outside the workspace.
 *
 * The sandbox runs while the supervisor works in its workspace, so no
 * system call may be given more than one component of a name the sandbox
 * can change unless the kernel resolves it under those rules: mkdirat
 * follows symlinks in every component but the last, so directories are
 * made by ab_path_open_parent one component at a time, relative to a
 * descriptor of the directory that holds them, and opened again after
 * creation. */
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "path.h"
#include "internal.h"

#define MAX_DEPTH 64

int ab_path_check(const char *name, char *out, size_t outlen, ab_error *err)
{
	if (!name)
		return ab_error_set(err, -EINVAL, "path is missing");
	size_t len = strlen(name);
	if (len == 0)
		return ab_error_set(err, -EINVAL, "path is empty");
	if (len > 4096)
		return ab_error_set(err, -ENAMETOOLONG, "path is longer than 4096 bytes");
	if (name[0] == '/')
		return ab_error_set(
		    err, -EPERM, "path \"%s\" is absolute; give a path relative to the workspace",
		    name);
	size_t o = 0;
	int depth = 0;
	const char *p = name;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t clen = slash ? (size_t)(slash - p) : strlen(p);
		if (clen == 0 || (clen == 1 && p[0] == '.')) {
			/* "a//b" and "./a" are harmless; skip the component. */
		} else if (clen == 2 && p[0] == '.' && p[1] == '.') {
			return ab_error_set(err, -EPERM,
					    "path \"%s\" contains \"..\"; paths must stay inside "
					    "the workspace",
					    name);
		} else {
			if (clen > 255)
				return ab_error_set(
				    err, -ENAMETOOLONG,
				    "path \"%s\" has a component longer than 255 bytes", name);
			if (++depth > MAX_DEPTH)
				return ab_error_set(err, -ELOOP,
						    "path \"%s\" is deeper than %d levels", name,
						    MAX_DEPTH);
			if (o && o + 1 < outlen)
				out[o++] = '/';
			if (o + clen + 1 > outlen)
				return ab_error_set(err, -ENAMETOOLONG, "path \"%s\" is too long",
						    name);
			memcpy(out + o, p, clen);
			o += clen;
		}
		p += clen;
		if (*p == '/')
			p++;
	}
	if (o == 0)
		return ab_error_set(err, -EINVAL, "path \"%s\" names the workspace itself", name);
	out[o] = '\0';
	return 0;
}

/* openat2 answers EAGAIN when a rename anywhere raced a lookup in a way it
 * cannot rule out; that, and EINTR, is retried a bounded number of times. */
static int openat2_retry(int dirfd, const char *name, struct open_how *how)
{
	int fd = -1;
	for (int tries = 0; tries < 16; tries++) {
		fd = (int)syscall(SYS_openat2, dirfd, name, how, sizeof(*how));
		if (fd >= 0 || (errno != EINTR && errno != EAGAIN))
			break;
	}
	return fd;
}

int ab_path_open_beneath(int dirfd, const char *name, int flags, mode_t mode, ab_error *err)
{
	struct open_how how = {
	    .flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
	    .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
	    .resolve =
		RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	int fd = openat2_retry(dirfd, name, &how);
	if (fd < 0) {
		int e = errno;
		if (e == ELOOP)
			return ab_error_set(err, -ELOOP,
					    "path \"%s\" goes through a symlink; symlinks are not "
					    "followed",
					    name);
		if (e == EXDEV)
			return ab_error_set(err, -EXDEV, "path \"%s\" leaves the workspace", name);
		return ab_error_errno(err, -e, "open \"%s\"", name);
	}
	return fd;
}

/* Opens one component beneath dirfd, under the same rules as
 * ab_path_open_beneath, but reports errors for the prefix of the client's
 * path that it names. */
static int open_component(int dirfd, const char *comp, int flags, mode_t mode, const char *rel,
			  size_t prefix, ab_error *err)
{
	struct open_how how = {
	    .flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
	    .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
	    .resolve =
		RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	int fd = openat2_retry(dirfd, comp, &how);
	if (fd >= 0)
		return fd;
	int e = errno;
	int n = (int)(prefix > 4096 ? 4096 : prefix);
	struct stat st;
	/* O_PATH | O_NOFOLLOW would open a symlink itself, so O_DIRECTORY
	 * reports it as "not a directory"; say what it is. */
	if (e == ENOTDIR && fstatat(dirfd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode))
		e = ELOOP;
	if (e == ELOOP)
		return ab_error_set(
		    err, -ELOOP, "path \"%.*s\" is a symlink; symlinks are not followed", n, rel);
	if (e == ENOTDIR && (flags & O_DIRECTORY))
		return ab_error_set(err, -ENOTDIR, "path \"%.*s\" is not a directory", n, rel);
	if (e == EXDEV)
		return ab_error_set(err, -EXDEV, "path \"%.*s\" leaves the workspace", n, rel);
	if (e == EAGAIN)
		return ab_error_set(err, -EAGAIN, "path \"%.*s\" kept changing while it was opened",
				    n, rel);
	return ab_error_errno(err, -e, "open \"%.*s\"", n, rel);
}

/* Only names normalised by ab_path_check are walked, checked whole before
 * anything is created: every component is a plain name, so none can
 * climb. */
static bool normalised(const char *rel)
{
	if (!rel || !rel[0])
		return false;
	int depth = 0;
	for (const char *p = rel;;) {
		const char *slash = strchr(p, '/');
		size_t clen = slash ? (size_t)(slash - p) : strlen(p);
		if (clen == 0 || clen > 255 || (clen == 1 && p[0] == '.') ||
		    (clen == 2 && p[0] == '.' && p[1] == '.') || ++depth > MAX_DEPTH)
			return false;
		if (!slash)
			return true;
		p = slash + 1;
	}
}

int ab_path_open_parent(int dirfd, const char *rel, bool mkdirs, mode_t mode, const char **leaf,
			ab_error *err)
{
	if (!normalised(rel))
		return ab_error_set(err, -EINVAL, "path \"%s\" is not a normalised name",
				    rel ? rel : "");
	int fd = open_component(dirfd, ".", O_PATH | O_DIRECTORY, 0, rel, 0, err);
	if (fd < 0)
		return fd;
	const char *p = rel;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t clen = slash ? (size_t)(slash - p) : strlen(p);
		if (!slash) {
			*leaf = p;
			return fd;
		}
		char comp[256];
		memcpy(comp, p, clen);
		comp[clen] = '\0';
		size_t prefix = (size_t)(slash - rel);
		int next = open_component(fd, comp, O_PATH | O_DIRECTORY, 0, rel, prefix, err);
		if (next == -ENOENT && mkdirs) {
			/* The new directory is opened like any other name: whatever
			 * the sandbox put there meanwhile is checked, not trusted. */
			if (mkdirat(fd, comp, mode) < 0 && errno != EEXIST) {
				int e = -errno;
				close(fd);
				return ab_error_errno(err, e, "create directory \"%.*s\"",
						      (int)prefix, rel);
			}
			next = open_component(fd, comp, O_PATH | O_DIRECTORY, 0, rel, prefix, err);
		}
		close(fd);
		if (next < 0)
			return next;
		fd = next;
		p = slash + 1;
	}
}

int ab_path_walk_open(int dirfd, const char *rel, int flags, mode_t mode, ab_error *err)
{
	const char *leaf;
	int parent = ab_path_open_parent(dirfd, rel, false, 0, &leaf, err);
	if (parent < 0)
		return parent;
	int fd = open_component(parent, leaf, flags, mode, rel, strlen(rel), err);
	close(parent);
	return fd;
}

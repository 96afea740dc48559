/* path.c - confinement of API file names to a sandbox's workspace.
 *
 * Two checks, both needed: ab_path_check refuses names that are malformed
 * or try to climb out lexically ("..", absolute paths), with a message the
 * client can act on; ab_path_open_beneath then resolves the name with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | ...) so that symlinks or
 * renames planted by the sandbox cannot make the supervisor (which runs
 * with more privilege) open anything outside the workspace. */
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/syscall.h>

#include "agentbox.h"

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

int ab_path_open_beneath(int dirfd, const char *name, int flags, mode_t mode, ab_error *err)
{
	struct open_how how = {
	    .flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
	    .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
	    .resolve =
		RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	int fd;
	do
		fd = (int)syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
	while (fd < 0 && errno == EINTR);
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

/* fuzz_path.c - path confinement (src/lib/path.c).
 *
 * Input: byte 0 picks the output buffer size, the rest is a file name a
 * client sends (NUL-terminated here; the daemon refuses embedded NULs
 * before). Invariants of ab_path_check:
 *  - it accepts exactly the names a straightforward reference accepts
 *    (relative, no ".." component, components <= 255 bytes, <= 64 levels,
 *    <= 4096 bytes, not only "." and empty components, fits the buffer),
 *    and then writes exactly the reference normalisation: the non-empty,
 *    non-"." components joined by "/";
 *  - its output never starts with "/", has no empty, "." or ".."
 *    component, and is NUL-terminated inside the buffer; it never writes
 *    past the buffer (ASan: the buffer is exactly outlen bytes);
 *  - an error fills err with the same code and a message.
 * Then ab_path_open_beneath resolves the raw name beneath a workspace that
 * holds symlinks to "/" and "..": whatever it opens lies inside. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "path.h"
#include "internal.h"
#include "fuzz.h"

static char ws[PATH_MAX];
static size_t wslen;
static int wsfd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(ws, sizeof(ws), "%s/ws", fuzz_scratch_dir());
	FUZZ_CHECK(mkdir(ws, 0700) == 0);
	char p[PATH_MAX + 16];
	snprintf(p, sizeof(p), "%s/d", ws);
	FUZZ_CHECK(mkdir(p, 0700) == 0);
	snprintf(p, sizeof(p), "%s/d/f", ws);
	fuzz_write_file(p, "x", 1);
	snprintf(p, sizeof(p), "%s/root", ws);
	FUZZ_CHECK(symlink("/", p) == 0);
	snprintf(p, sizeof(p), "%s/d/up", ws);
	FUZZ_CHECK(symlink("../..", p) == 0);
	/* Compare against the canonical form, as /proc/self/fd shows it. */
	FUZZ_CHECK(realpath(ws, p));
	snprintf(ws, sizeof(ws), "%s", p);
	wslen = strlen(ws);
	wsfd = open(ws, O_PATH | O_DIRECTORY | O_CLOEXEC);
	FUZZ_CHECK(wsfd >= 0);
	return 0;
}

/* The specification: returns 0 and fills want, or -1. */
static int reference(const char *name, size_t outlen, char *want, size_t wantlen)
{
	size_t len = strlen(name);
	if (len == 0 || len > 4096 || name[0] == '/')
		return -1;
	size_t o = 0;
	int depth = 0;
	for (const char *p = name; *p;) {
		size_t clen = strcspn(p, "/");
		if (clen == 2 && p[0] == '.' && p[1] == '.')
			return -1;
		if (clen > 0 && !(clen == 1 && p[0] == '.')) {
			if (clen > 255 || ++depth > 64)
				return -1;
			if (o)
				want[o++] = '/';
			FUZZ_CHECK(o + clen < wantlen);
			memcpy(want + o, p, clen);
			o += clen;
		}
		p += clen;
		if (*p == '/')
			p++;
	}
	want[o] = '\0';
	if (o == 0 || o + 1 > outlen)
		return -1;
	return 0;
}

static void check_output(const char *out, size_t outlen)
{
	FUZZ_CHECK(memchr(out, '\0', outlen));
	FUZZ_CHECK(out[0] != '\0' && out[0] != '/');
	for (const char *p = out;;) {
		size_t clen = strcspn(p, "/");
		FUZZ_CHECK(clen > 0);
		FUZZ_CHECK(!(clen == 1 && p[0] == '.'));
		FUZZ_CHECK(!(clen == 2 && p[0] == '.' && p[1] == '.'));
		p += clen;
		if (!*p)
			break;
		p++;
	}
}

static void check_open_beneath(const char *name)
{
	ab_error err = {0};
	int fd = ab_path_open_beneath(wsfd, name, O_PATH, 0, &err);
	if (fd < 0) {
		FUZZ_CHECK(err.code == fd && err.msg[0]);
		return;
	}
	char link[64], target[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	close(fd);
	FUZZ_CHECK(n > 0);
	target[n] = '\0';
	FUZZ_CHECK(strncmp(target, ws, wslen) == 0 &&
		   (target[wslen] == '\0' || target[wslen] == '/'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 8192)
		return 0;
	static const size_t sizes[] = {4097, 4200, 1, 2, 3, 8, 64, 256, 4096};
	size_t outlen = sizes[data[0] % (sizeof(sizes) / sizeof(sizes[0]))];
	char *name = malloc(size);
	FUZZ_CHECK(name);
	memcpy(name, data + 1, size - 1);
	name[size - 1] = '\0';

	char *out = malloc(outlen);
	FUZZ_CHECK(out);
	static char want[8192];
	ab_error err = {0};
	int r = ab_path_check(name, out, outlen, &err);
	int ref = reference(name, outlen, want, sizeof(want));
	if (r == 0) {
		FUZZ_CHECK(ref == 0);
		check_output(out, outlen);
		FUZZ_CHECK(strcmp(out, want) == 0);
		FUZZ_CHECK(err.code == 0);
	} else {
		FUZZ_CHECK(ref < 0);
		FUZZ_CHECK(r < 0 && err.code == r && err.msg[0]);
	}
	check_open_beneath(name);
	free(out);
	free(name);
	return 0;
}

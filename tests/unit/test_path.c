/* test_path.c - confinement of API file names (src/lib/path.c): the lexical
 * check of client-given names, and openat2-based opening beneath the
 * workspace that refuses symlinks and escapes even when the check is
 * skipped. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "path.h"
#include "internal.h"
#include "unit.h"

static void accepts(const char *name, const char *want)
{
	char out[4097];
	ab_error err = {0};
	memset(out, 'X', sizeof(out));
	int r = ab_path_check(name, out, sizeof(out), &err);
	if (r != 0)
		fprintf(stderr, "ab_path_check(\"%s\"): %d %s\n", name, r, err.msg);
	CHECK_EQ_INT(r, 0);
	CHECK_STR(out, want);
}

static void refuses(const char *name, int code, const char *needle)
{
	char out[4097];
	ab_error err = {0};
	int r = ab_path_check(name, out, sizeof(out), &err);
	if (r != code)
		fprintf(stderr, "ab_path_check(\"%.60s\"): %d, expected %d\n", name, r, code);
	CHECK_EQ_INT(r, code);
	CHECK_EQ_INT(err.code, code);
	CHECK_CONTAINS(err.msg, needle);
}

AB_TEST(path_check_accepts_and_normalises)
{
	accepts("a", "a");
	accepts("a/b", "a/b");
	accepts("a//b", "a/b");
	accepts("./a", "a");
	accepts("a/./b", "a/b");
	accepts("a/b/", "a/b");
	accepts("././a//./b/.", "a/b");
	accepts("...", "...");
	accepts("..a/b..", "..a/b..");
	accepts(".hidden", ".hidden");
	accepts("with space/\xc3\xa9", "with space/\xc3\xa9");
}

AB_TEST(path_check_refuses_empty_and_absolute)
{
	refuses("", -EINVAL, "empty");
	refuses("/etc/passwd", -EPERM, "absolute");
	refuses("/", -EPERM, "absolute");
	refuses("//a", -EPERM, "absolute");
	ab_error err = {0};
	char out[16];
	CHECK_EQ_INT(ab_path_check(NULL, out, sizeof(out), &err), -EINVAL);
}

AB_TEST(path_check_refuses_dotdot)
{
	refuses("..", -EPERM, "..");
	refuses("../x", -EPERM, "\"..\"");
	refuses("a/../b", -EPERM, "\"..\"");
	refuses("a/..", -EPERM, "\"..\"");
	refuses("a/b/../../..", -EPERM, "\"..\"");
	refuses("./..", -EPERM, "\"..\"");
	refuses("a//..//b", -EPERM, "\"..\"");
}

AB_TEST(path_check_refuses_workspace_itself)
{
	refuses(".", -EINVAL, "workspace itself");
	refuses("./", -EINVAL, "workspace itself");
	refuses("./././/", -EINVAL, "workspace itself");
}

AB_TEST(path_check_length_limits)
{
	char name[5000];
	/* 4096 bytes in 16 components of 255 + "/" (4096 = 16 * 256). */
	size_t o = 0;
	for (int i = 0; i < 16; i++) {
		memset(name + o, 'a' + i, 255);
		o += 255;
		name[o++] = '/';
	}
	name[o] = '\0';
	CHECK_EQ_INT(strlen(name), 4096);
	char out[4097];
	ab_error err = {0};
	CHECK_EQ_INT(ab_path_check(name, out, sizeof(out), &err), 0);
	CHECK_EQ_INT(strlen(out), 4095);
	/* One byte more. */
	name[o++] = 'z';
	name[o] = '\0';
	refuses(name, -ENAMETOOLONG, "4096");

	/* A 255-byte component is fine, 256 is not. */
	memset(name, 'c', 255);
	name[255] = '\0';
	accepts(name, name);
	memset(name, 'c', 256);
	name[256] = '\0';
	refuses(name, -ENAMETOOLONG, "255");
	snprintf(name, sizeof(name), "ok/%0256d/x", 0);
	refuses(name, -ENAMETOOLONG, "component");
}

AB_TEST(path_check_depth_limit)
{
	char name[512];
	size_t o = 0;
	for (int i = 0; i < 64; i++) {
		name[o++] = 'd';
		name[o++] = '/';
	}
	name[o - 1] = '\0';
	/* 64 levels. */
	char out[512];
	ab_error err = {0};
	CHECK_EQ_INT(ab_path_check(name, out, sizeof(out), &err), 0);
	CHECK_STR(out, name);
	/* 65 levels. */
	name[o - 1] = '/';
	name[o++] = 'e';
	name[o] = '\0';
	refuses(name, -ELOOP, "deeper");
	refuses(name, -ELOOP, "64");
	/* "." and empty components do not count as levels. */
	o = 0;
	for (int i = 0; i < 64; i++) {
		memcpy(name + o, "d/./", 4);
		o += 4;
	}
	name[o] = '\0';
	accepts(name, "d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/"
		      "d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d");
}

AB_TEST(path_check_output_buffer_too_small)
{
	ab_error err = {0};
	char out[8];
	/* "abc/def" needs 8 bytes with the terminator: fits exactly. */
	CHECK_EQ_INT(ab_path_check("abc/def", out, 8, &err), 0);
	CHECK_STR(out, "abc/def");
	/* One byte short. */
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ab_path_check("abc/defg", out, 8, &err), -ENAMETOOLONG);
	CHECK_CONTAINS(err.msg, "too long");
	CHECK_EQ_INT(ab_path_check("abcdefgh", out, 8, &err), -ENAMETOOLONG);
	CHECK_EQ_INT(ab_path_check("a", out, 1, &err), -ENAMETOOLONG);
	CHECK_EQ_INT(ab_path_check("a", out, 0, &err), -ENAMETOOLONG);
	/* The separator must not be what overflows either. */
	char small[4];
	memset(small, 'X', sizeof(small));
	CHECK_EQ_INT(ab_path_check("ab/c", small, 4, &err), -ENAMETOOLONG);
}

/* ---------------------------------------------------- open beneath */

static char tmpdir[64];

/* Builds a tree:
 *   file            "hello"
 *   sub/inner       "inner"
 *   link_passwd  -> /etc/passwd
 *   link_sub     -> sub            (relative symlink to a directory)
 *   link_abs     -> <tmpdir>/file  (absolute symlink to a file inside)
 *   fifo            a FIFO with no writer
 * and returns an O_PATH|O_DIRECTORY fd of the root. */
static int make_tree(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ab-path-XXXXXX");
	CHECK(mkdtemp(tmpdir) != NULL);
	int dfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK(dfd >= 0);
	int fd = openat(dfd, "file", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	CHECK(fd >= 0);
	CHECK_EQ_INT(write(fd, "hello", 5), 5);
	close(fd);
	CHECK_EQ_INT(mkdirat(dfd, "sub", 0755), 0);
	fd = openat(dfd, "sub/inner", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	CHECK(fd >= 0);
	CHECK_EQ_INT(write(fd, "inner", 5), 5);
	close(fd);
	CHECK_EQ_INT(symlinkat("/etc/passwd", dfd, "link_passwd"), 0);
	CHECK_EQ_INT(symlinkat("sub", dfd, "link_sub"), 0);
	char abs[128];
	snprintf(abs, sizeof(abs), "%s/file", tmpdir);
	CHECK_EQ_INT(symlinkat(abs, dfd, "link_abs"), 0);
	CHECK_EQ_INT(mkfifoat(dfd, "fifo", 0644), 0);
	return dfd;
}

static void remove_tree(int dfd)
{
	static const char *const names[] = {"file",	"sub/inner", "link_passwd", "link_sub",
					    "link_abs", "fifo",	     "created",	    "newmode"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlinkat(dfd, names[i], 0);
	unlinkat(dfd, "sub", AT_REMOVEDIR);
	close(dfd);
	rmdir(tmpdir);
}

static void read_exactly(int fd, const char *want)
{
	char buf[64];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	CHECK(n >= 0);
	buf[n] = '\0';
	CHECK_STR(buf, want);
}

AB_TEST(path_open_beneath_regular_file)
{
	int dfd = make_tree();
	ab_error err = {0};
	int fd = ab_path_open_beneath(dfd, "file", O_RDONLY, 0, &err);
	CHECK(fd >= 0);
	read_exactly(fd, "hello");
	/* O_CLOEXEC is added. */
	CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
	fd = ab_path_open_beneath(dfd, "sub/inner", O_RDONLY, 0, &err);
	CHECK(fd >= 0);
	read_exactly(fd, "inner");
	close(fd);
	/* A missing file is an ordinary ENOENT naming the path. */
	CHECK_EQ_INT(ab_path_open_beneath(dfd, "missing", O_RDONLY, 0, &err), -ENOENT);
	CHECK_CONTAINS(err.msg, "missing");
	remove_tree(dfd);
}

AB_TEST(path_open_beneath_refuses_symlink_to_outside)
{
	int dfd = make_tree();
	ab_error err = {0};
	CHECK_EQ_INT(ab_path_open_beneath(dfd, "link_passwd", O_RDONLY, 0, &err), -ELOOP);
	CHECK_CONTAINS(err.msg, "symlink");
	CHECK_CONTAINS(err.msg, "link_passwd");
	/* Not even for writing or creating. */
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(
	    ab_path_open_beneath(dfd, "link_passwd", O_WRONLY | O_CREAT | O_TRUNC, 0644, &err),
	    -ELOOP);
	remove_tree(dfd);
}

AB_TEST(path_open_beneath_refuses_symlink_in_the_middle)
{
	int dfd = make_tree();
	ab_error err = {0};
	/* link_sub -> sub stays inside, but no symlink is followed at all. */
	CHECK_EQ_INT(ab_path_open_beneath(dfd, "link_sub/inner", O_RDONLY, 0, &err), -ELOOP);
	CHECK_CONTAINS(err.msg, "symlink");
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ab_path_open_beneath(dfd, "link_sub/new", O_WRONLY | O_CREAT, 0600, &err),
		     -ELOOP);
	/* Nothing was created through the link. */
	struct stat st;
	CHECK(fstatat(dfd, "sub/new", &st, AT_SYMLINK_NOFOLLOW) < 0);
	remove_tree(dfd);
}

AB_TEST(path_open_beneath_refuses_absolute_symlink)
{
	int dfd = make_tree();
	ab_error err = {0};
	CHECK_EQ_INT(ab_path_open_beneath(dfd, "link_abs", O_RDONLY, 0, &err), -ELOOP);
	CHECK_CONTAINS(err.msg, "symlink");
	remove_tree(dfd);
}

/* Even without ab_path_check, openat2 keeps the name beneath dirfd. */
AB_TEST(path_open_beneath_refuses_escape_without_check)
{
	int dfd = make_tree();
	ab_error err = {0};
	CHECK_EQ_INT(ab_path_open_beneath(dfd, "../x", O_RDONLY, 0, &err), -EXDEV);
	CHECK_CONTAINS(err.msg, "leaves the workspace");
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ab_path_open_beneath(dfd, "sub/../../etc/passwd", O_RDONLY, 0, &err), -EXDEV);
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ab_path_open_beneath(dfd, "/etc/passwd", O_RDONLY, 0, &err), -EXDEV);
	CHECK_CONTAINS(err.msg, "leaves the workspace");
	/* ".." that stays inside is resolved by the kernel, not refused. */
	int fd = ab_path_open_beneath(dfd, "sub/../file", O_RDONLY, 0, &err);
	CHECK(fd >= 0);
	read_exactly(fd, "hello");
	close(fd);
	remove_tree(dfd);
}

AB_TEST(path_open_beneath_refuses_magic_links)
{
	/* /proc/self/fd/N style magic links must not be followed either. */
	int proc = open("/proc/self", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (proc < 0) {
		SKIP("no /proc");
	}
	ab_error err = {0};
	int r = ab_path_open_beneath(proc, "cwd", O_RDONLY | O_DIRECTORY, 0, &err);
	CHECK(r < 0);
	close(proc);
}

AB_TEST(path_open_beneath_creates_with_mode)
{
	mode_t old = umask(0);
	int dfd = make_tree();
	ab_error err = {0};
	int fd = ab_path_open_beneath(dfd, "newmode", O_WRONLY | O_CREAT | O_EXCL, 0640, &err);
	CHECK(fd >= 0);
	CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	struct stat st;
	CHECK_EQ_INT(fstat(fd, &st), 0);
	CHECK(S_ISREG(st.st_mode));
	CHECK_EQ_INT(st.st_mode & 07777, 0640);
	close(fd);
	/* O_EXCL on an existing file. */
	CHECK_EQ_INT(ab_path_open_beneath(dfd, "newmode", O_WRONLY | O_CREAT | O_EXCL, 0600, &err),
		     -EEXIST);
	fd = ab_path_open_beneath(dfd, "created", O_WRONLY | O_CREAT, 0604, &err);
	CHECK(fd >= 0);
	CHECK_EQ_INT(fstat(fd, &st), 0);
	CHECK_EQ_INT(st.st_mode & 07777, 0604);
	close(fd);
	umask(old);
	remove_tree(dfd);
}

AB_TEST(path_open_beneath_fifo_does_not_block)
{
	int dfd = make_tree();
	ab_error err = {0};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int fd = ab_path_open_beneath(dfd, "fifo", O_RDONLY | O_NONBLOCK, 0, &err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK(fd >= 0);
	/* The caller sees it is not a regular file and refuses it. */
	struct stat st;
	CHECK_EQ_INT(fstat(fd, &st), 0);
	CHECK(S_ISFIFO(st.st_mode));
	CHECK(!S_ISREG(st.st_mode));
	CHECK(t1.tv_sec - t0.tv_sec < 5);
	close(fd);
	remove_tree(dfd);
}

AB_TEST(path_open_beneath_directory)
{
	int dfd = make_tree();
	ab_error err = {0};
	int fd = ab_path_open_beneath(dfd, "sub", O_RDONLY | O_DIRECTORY, 0, &err);
	CHECK(fd >= 0);
	struct stat st;
	CHECK_EQ_INT(fstat(fd, &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	close(fd);
	CHECK_EQ_INT(ab_path_open_beneath(dfd, "file", O_RDONLY | O_DIRECTORY, 0, &err), -ENOTDIR);
	remove_tree(dfd);
}

/* ab_path_open_parent makes missing directories one at a time and returns
 * the directory that holds the last component. */
AB_TEST(path_open_parent_creates_one_component_at_a_time)
{
	int dfd = make_tree();
	ab_error err = {0};
	const char *leaf = NULL;
	int pfd = ab_path_open_parent(dfd, "new1/new2/f", true, 0755, &leaf, &err);
	CHECK(pfd >= 0);
	CHECK_STR(leaf, "f");
	CHECK(fcntl(pfd, F_GETFD) & FD_CLOEXEC);
	struct stat a, b;
	CHECK_EQ_INT(fstat(pfd, &a), 0);
	CHECK_EQ_INT(fstatat(dfd, "new1/new2", &b, AT_SYMLINK_NOFOLLOW), 0);
	CHECK(S_ISDIR(b.st_mode) && a.st_ino == b.st_ino);
	close(pfd);
	/* Existing directories are walked; without mkdirs nothing is made. */
	pfd = ab_path_open_parent(dfd, "sub/x", false, 0, &leaf, &err);
	CHECK(pfd >= 0);
	CHECK_STR(leaf, "x");
	close(pfd);
	CHECK_EQ_INT(ab_path_open_parent(dfd, "absent/x", false, 0, &leaf, &err), -ENOENT);
	CHECK(fstatat(dfd, "absent", &b, AT_SYMLINK_NOFOLLOW) < 0);
	/* A single component has the start directory as parent. */
	pfd = ab_path_open_parent(dfd, "top", true, 0755, &leaf, &err);
	CHECK(pfd >= 0);
	CHECK_STR(leaf, "top");
	close(pfd);
	unlinkat(dfd, "new1/new2", AT_REMOVEDIR);
	unlinkat(dfd, "new1", AT_REMOVEDIR);
	remove_tree(dfd);
}

/* What a sandbox that swaps a directory for a symlink gets at the worst
 * instant: the component is a symlink to a directory outside. Neither a
 * directory nor anything else may be created through it. */
AB_TEST(path_open_parent_never_creates_through_a_symlink)
{
	int dfd = make_tree();
	char outside[64];
	snprintf(outside, sizeof(outside), "/tmp/ab-path-out-XXXXXX");
	CHECK(mkdtemp(outside) != NULL);
	CHECK_EQ_INT(symlinkat(outside, dfd, "swapped"), 0);
	ab_error err = {0};
	const char *leaf = NULL;
	CHECK_EQ_INT(ab_path_open_parent(dfd, "swapped/x/f", true, 0755, &leaf, &err), -ELOOP);
	CHECK_CONTAINS(err.msg, "\"swapped\"");
	CHECK_CONTAINS(err.msg, "symlink");
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ab_path_open_parent(dfd, "link_sub/x/f", true, 0755, &leaf, &err), -ELOOP);
	CHECK_EQ_INT(ab_path_walk_open(dfd, "swapped/f", O_WRONLY | O_CREAT, 0600, &err), -ELOOP);
	/* A symlink as the last component is refused by the final open. */
	CHECK_EQ_INT(ab_path_walk_open(dfd, "swapped", O_RDONLY | O_DIRECTORY, 0, &err), -ELOOP);
	CHECK_EQ_INT(ab_path_walk_open(dfd, "sub/inner", O_RDONLY | O_DIRECTORY, 0, &err),
		     -ENOTDIR);
	/* A file in the middle is not a directory. */
	CHECK_EQ_INT(ab_path_open_parent(dfd, "file/x", true, 0755, &leaf, &err), -ENOTDIR);
	CHECK_CONTAINS(err.msg, "\"file\"");
	int outfd = open(outside, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK(outfd >= 0);
	struct stat st;
	CHECK(fstatat(outfd, "x", &st, AT_SYMLINK_NOFOLLOW) < 0);
	CHECK(fstatat(outfd, "f", &st, AT_SYMLINK_NOFOLLOW) < 0);
	close(outfd);
	rmdir(outside);
	unlinkat(dfd, "swapped", 0);
	remove_tree(dfd);
}

/* The walk takes only names normalised by ab_path_check, whatever the
 * caller forgot: no "..", ".", empty component or absolute name. */
AB_TEST(path_open_parent_refuses_unnormalised_names)
{
	int dfd = make_tree();
	ab_error err = {0};
	const char *leaf = NULL;
	static const char *const bad[] = {"../x",	 "sub/../x", "./x",   "a//b",
					  "/etc/passwd", "",	     "sub/.."};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		CHECK_EQ_INT(ab_path_open_parent(dfd, bad[i], true, 0755, &leaf, &err), -EINVAL);
	}
	CHECK_EQ_INT(ab_path_walk_open(dfd, "sub/..", O_RDONLY, 0, &err), -EINVAL);
	struct stat st;
	CHECK(fstatat(dfd, "a", &st, AT_SYMLINK_NOFOLLOW) < 0);
	remove_tree(dfd);
}

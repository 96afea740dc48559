/* test_landlock.c - Landlock confinement, applied for real in the test's
 * own child process (see runner.c). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "confine.h"
#include "internal.h"
#include "unit.h"

struct tree {
	char root[64];
	char r[96];   /* read-only directory */
	char w[96];   /* writable directory */
	char rf[128]; /* R/file */
};

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CHECK(fd >= 0);
	CHECK_EQ_INT(write(fd, text, strlen(text)), (long long)strlen(text));
	CHECK_EQ_INT(close(fd), 0);
}

static void make_tree(struct tree *t)
{
	snprintf(t->root, sizeof(t->root), "/tmp/ab-landlock-XXXXXX");
	CHECK(mkdtemp(t->root) != NULL);
	snprintf(t->r, sizeof(t->r), "%s/R", t->root);
	snprintf(t->w, sizeof(t->w), "%s/W", t->root);
	snprintf(t->rf, sizeof(t->rf), "%s/file", t->r);
	CHECK_EQ_INT(mkdir(t->r, 0755), 0);
	CHECK_EQ_INT(mkdir(t->w, 0755), 0);
	write_file(t->rf, "hello");
}

/* Removes the tree from a separate process that is not confined. Called
 * before the test confines itself, the cleaner waits for a byte on a pipe
 * (or its end-of-file when the test exits). */
static void cleanup_on_exit(const struct tree *t)
{
	int p[2];
	CHECK_EQ_INT(pipe2(p, O_CLOEXEC), 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		char c;
		close(p[1]);
		while (read(p[0], &c, 1) < 0 && errno == EINTR)
			;
		char cmd[256];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->root);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(p[0]);
	/* p[1] stays open in this process and closes when it exits. */
}

static int try_open(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

AB_TEST(landlock_abi)
{
	int abi = ab_landlock_abi();
	CHECK(abi >= 1);
}

AB_TEST(landlock_requires_no_new_privs)
{
	ab_error err = {0};
	ab_landlock_rule rule = {.path = "/", .writable = false};
	CHECK_EQ_INT(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), 0);
	CHECK_EQ_INT(ab_landlock_apply(&rule, 1, &err), -EPERM);
	CHECK_CONTAINS(err.msg, "no_new_privs");
	/* Nothing was applied: reading elsewhere still works. */
	CHECK_EQ_INT(try_open("/etc/hostname", O_RDONLY), 0);
}

AB_TEST(landlock_confines_and_only_tightens)
{
	struct tree t;
	ab_error err = {0};
	char path[160];

	make_tree(&t);
	cleanup_on_exit(&t);
	CHECK_EQ_INT(try_open("/etc/hostname", O_RDONLY), 0);

	CHECK_EQ_INT(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	ab_landlock_rule rules[] = {
	    {.path = t.r, .writable = false},
	    {.path = t.w, .writable = true},
	    /* A regular file gets file rights only. */
	    {.path = "/dev/null", .writable = true},
	    /* Missing paths are skipped. */
	    {.path = "/nonexistent/agentbox-test", .writable = false},
	};
	int rc = ab_landlock_apply(rules, 4, &err);
	if (rc < 0)
		fprintf(stderr, "apply: %s\n", err.msg);
	CHECK_EQ_INT(rc, 0);

	CHECK_EQ_INT(try_open(t.rf, O_RDONLY), 0);
	CHECK_EQ_INT(try_open(t.rf, O_WRONLY), -EACCES);
	snprintf(path, sizeof(path), "%s/new", t.r);
	CHECK_EQ_INT(try_open(path, O_WRONLY | O_CREAT), -EACCES);
	snprintf(path, sizeof(path), "%s/x", t.w);
	CHECK_EQ_INT(try_open(path, O_WRONLY | O_CREAT), 0);
	CHECK_EQ_INT(try_open(path, O_RDWR), 0);
	CHECK_EQ_INT(unlink(path), 0);
	snprintf(path, sizeof(path), "%s/d", t.w);
	CHECK_EQ_INT(mkdir(path, 0755), 0);
	CHECK_EQ_INT(rmdir(path), 0);
	CHECK_EQ_INT(try_open("/dev/null", O_WRONLY), 0);
	CHECK_EQ_INT(try_open("/etc/hostname", O_RDONLY), -EACCES);
	CHECK_EQ_INT(try_open("/tmp", O_RDONLY | O_DIRECTORY), -EACCES);

	/* A second ruleset only tightens: W stays usable, R is gone, and
	 * listing R again as writable would not grant writes. */
	ab_landlock_rule second[] = {
	    {.path = t.w, .writable = true},
	};
	CHECK_EQ_INT(ab_landlock_apply(second, 1, &err), 0);
	CHECK_EQ_INT(try_open(t.rf, O_RDONLY), -EACCES);
	snprintf(path, sizeof(path), "%s/y", t.w);
	CHECK_EQ_INT(try_open(path, O_WRONLY | O_CREAT), 0);

	ab_landlock_rule widen[] = {
	    {.path = t.r, .writable = true},
	    {.path = t.w, .writable = true},
	};
	CHECK_EQ_INT(ab_landlock_apply(widen, 2, &err), 0);
	CHECK_EQ_INT(try_open(t.rf, O_RDONLY), -EACCES);
	CHECK_EQ_INT(try_open(t.rf, O_WRONLY), -EACCES);
}

AB_TEST(landlock_scopes_signals_and_abstract_sockets)
{
	if (ab_landlock_abi() < 6)
		return;

	/* A process outside the domain stands for the host: it binds an
	 * abstract unix socket, reports readiness, and exits when the test
	 * does (end-of-file on the hold pipe). PR_SET_PDEATHSIG would not do:
	 * the death signal comes from the confined parent and is itself
	 * blocked by the signal scope. */
	char name[64];
	snprintf(name, sizeof(name), "agentbox-landlock-test-%d", (int)getpid());
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path + 1, name, strlen(name));
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
	int ready[2], hold[2];
	CHECK_EQ_INT(pipe2(ready, O_CLOEXEC), 0);
	CHECK_EQ_INT(pipe2(hold, O_CLOEXEC), 0);
	pid_t outside = fork();
	CHECK(outside >= 0);
	if (outside == 0) {
		close(hold[1]);
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0 || bind(s, (struct sockaddr *)&sa, salen) < 0 || listen(s, 4) < 0)
			_exit(1);
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		char b;
		while (read(hold[0], &b, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(hold[0]);
	close(ready[1]);
	char c;
	CHECK_EQ_INT(read(ready[0], &c, 1), 1);

	/* Before confinement both reach the outsider. */
	CHECK_EQ_INT(kill(outside, 0), 0);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(s >= 0);
	CHECK_EQ_INT(connect(s, (struct sockaddr *)&sa, salen), 0);
	close(s);

	ab_error err = {0};
	ab_landlock_rule rule = {.path = "/usr", .writable = false};
	CHECK_EQ_INT(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	CHECK_EQ_INT(ab_landlock_apply(&rule, 1, &err), 0);

	errno = 0;
	CHECK_EQ_INT(kill(outside, 0), -1);
	CHECK_EQ_INT(errno, EPERM);
	CHECK_EQ_INT(kill(getpid(), 0), 0);

	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(s >= 0);
	errno = 0;
	CHECK_EQ_INT(connect(s, (struct sockaddr *)&sa, salen), -1);
	CHECK_EQ_INT(errno, EPERM);
	close(s);
}

/* unit.h - a tiny test harness: each test runs in its own child process
 * with a timeout (as libuv's runner does), so a crash or a hang in one test
 * is reported as that test's failure and never stops the others. */
#ifndef AB_UNIT_H
#define AB_UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*ab_test_fn)(void);
void ab_test_register(const char *name, ab_test_fn fn);

#define AB_TEST(name)                                                                              \
	static void test_##name(void);                                                             \
	__attribute__((constructor)) static void register_##name(void)                             \
	{                                                                                          \
		ab_test_register(#name, test_##name);                                              \
	}                                                                                          \
	static void test_##name(void)

/* The exit status of a test that could not run here (as automake's test
 * drivers use it): the runner counts it as skipped, not passed. */
#define AB_TEST_SKIP_EXIT 77

/* Ends the running test as skipped, with the reason on stderr. */
#define SKIP(...)                                                                                  \
	do {                                                                                       \
		fprintf(stderr, "skipped: ");                                                      \
		fprintf(stderr, __VA_ARGS__);                                                      \
		fputc('\n', stderr);                                                               \
		fflush(NULL);                                                                      \
		exit(AB_TEST_SKIP_EXIT);                                                           \
	} while (0)

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
	do {                                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                                \
		if (a_ != b_) {                                                                    \
			fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__,      \
				__LINE__, #a, a_, #b, b_);                                         \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

#define CHECK_STR(a, b)                                                                            \
	do {                                                                                       \
		const char *a_ = (a), *b_ = (b);                                                   \
		if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                           \
			fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__,           \
				a_ ? a_ : "(null)", b_ ? b_ : "(null)");                           \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

#define CHECK_CONTAINS(hay, needle)                                                                \
	do {                                                                                       \
		const char *h_ = (hay), *n_ = (needle);                                            \
		if (!h_ || !strstr(h_, n_)) {                                                      \
			fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__,       \
				__LINE__, h_ ? h_ : "(null)", n_);                                 \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

/* Expects a raw system call to fail with the given errno. */
#define CHECK_FAILS(call, e)                                                                       \
	do {                                                                                       \
		errno = 0;                                                                         \
		long r_ = (long)(call);                                                            \
		if (r_ != -1 || errno != (e)) {                                                    \
			fprintf(stderr,                                                            \
				"%s:%d: %s returned %ld errno %d, "                                \
				"expected -1 errno %d\n",                                          \
				__FILE__, __LINE__, #call, r_, errno, (e));                        \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

/* Runs fn in a grandchild and returns its wait status. */
static inline int in_grandchild(void (*fn)(void))
{
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		fn();
		_exit(0);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		CHECK_EQ_INT(errno, EINTR);
	return st;
}

#endif

/* runner.c - runs every registered unit test in a child with a timeout.
 * Usage: unit-tests [SUBSTRING]  (only tests whose name contains it).
 * Prints one TAP-like line per test and ends with "N passed, N failed",
 * followed by ", N skipped" when a test skipped itself (SKIP in unit.h). */
#include "unit.h"

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 1024
#define TIMEOUT_S 20

static struct {
	const char *name;
	ab_test_fn fn;
} tests[MAX_TESTS];
static int ntests;

void ab_test_register(const char *name, ab_test_fn fn)
{
	if (ntests == MAX_TESTS) {
		fprintf(stderr, "too many unit tests\n");
		abort();
	}
	tests[ntests].name = name;
	tests[ntests].fn = fn;
	ntests++;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int main(int argc, char **argv)
{
	const char *filter = argc > 1 ? argv[1] : NULL;
	int passed = 0, failed = 0, skipped = 0;

	qsort(tests, (size_t)ntests, sizeof(tests[0]), by_name);
	for (int i = 0; i < ntests; i++) {
		if (filter && !strstr(tests[i].name, filter))
			continue;
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 2;
		}
		if (pid == 0) {
			setpgid(0, 0);
			alarm(TIMEOUT_S);
			tests[i].fn();
			fflush(NULL);
			_exit(0);
		}
		int st;
		while (waitpid(pid, &st, 0) < 0)
			;
		/* Whatever the test left running in its process group goes too,
		 * so that no stray process holds our output pipe open. */
		kill(-pid, SIGKILL);
		int n = passed + failed + skipped + 1;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
			printf("ok %d - %s\n", n, tests[i].name);
			passed++;
		} else if (WIFEXITED(st) && WEXITSTATUS(st) == AB_TEST_SKIP_EXIT) {
			/* TAP's form: a skip is not a failure, and not a pass either. */
			printf("ok %d - %s # SKIP\n", n, tests[i].name);
			skipped++;
		} else {
			if (WIFSIGNALED(st))
				printf("not ok %d - %s (signal %d%s)\n", n, tests[i].name,
				       WTERMSIG(st), WTERMSIG(st) == SIGALRM ? ": timeout" : "");
			else
				printf("not ok %d - %s (exit %d)\n", n, tests[i].name,
				       WEXITSTATUS(st));
			failed++;
		}
	}
	if (skipped)
		printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
	else
		printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}

/* cell_test_main.c - manual driver for src/executor/cell.c.
 *
 * Not part of `make`: the unit tests are linked without Python, and this
 * program needs the embedded interpreter. Build and run it by hand from the
 * repository root:
 *
 *   gcc -std=gnu17 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Iinclude -Isrc \
 *       $(/usr/bin/python3-config --includes) \
 *       src/executor/cell.c src/lib/error.c tests/executor/cell_test_main.c \
 *       $(/usr/bin/python3-config --embed --ldflags) -ljansson -o /tmp/celltest
 *   printf 'x = 1\n#%%%%\nx + 1\n' | /tmp/celltest [--heavy]
 *
 * It reads cells from stdin, separated by lines that are exactly "#%%",
 * runs each as "<cell-N>" and prints every result as one line
 * "RESULT <json>" (keys sorted) after the cell's own output.
 * With --heavy it warms numpy/pandas/matplotlib first, as the heavy zygote
 * does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>
#include <string.h>

#include "agentbox.h"
#include "executor/cell.h"

#define INPUT_MAX (16u << 20)

static int init_python(void)
{
	PyConfig config;
	PyStatus st;

	PyConfig_InitPythonConfig(&config);
	config.buffered_stdio = 0;
	config.install_signal_handlers = 1;
	config.parse_argv = 0;
	st = Py_InitializeFromConfig(&config);
	PyConfig_Clear(&config);
	if (PyStatus_Exception(st)) {
		fprintf(stderr, "cell_test: Python initialisation failed: %s\n",
			st.err_msg ? st.err_msg : "?");
		return -1;
	}
	return 0;
}

static void run_cell(const char *code, int n)
{
	char name[32];
	json_t *res;
	char *text;

	snprintf(name, sizeof(name), "<cell-%d>", n);
	res = ab_cell_run(code, name);
	text = json_dumps(res, JSON_SORT_KEYS | JSON_COMPACT);
	printf("RESULT %s\n", text ? text : "null");
	fflush(stdout);
	free(text);
	json_decref(res);
}

int main(int argc, char **argv)
{
	static char input[INPUT_MAX + 1];
	size_t len = 0, got;
	char *cell, *p;
	ab_error err = {0};
	int n = 1;

	if (init_python() < 0)
		return 1;
	if (ab_cell_init(&err) < 0) {
		fprintf(stderr, "cell_test: %s\n", err.msg);
		return 1;
	}
	if (argc > 1 && strcmp(argv[1], "--heavy") == 0 && ab_cell_warm_heavy(&err) < 0) {
		fprintf(stderr, "cell_test: %s\n", err.msg);
		return 1;
	}
	while (len < INPUT_MAX && (got = fread(input + len, 1, INPUT_MAX - len, stdin)) > 0)
		len += got;
	input[len] = '\0';

	/* Split on lines that are exactly "#%%"; what lies between is a cell. */
	cell = input;
	p = input;
	for (;;) {
		char *eol = strchr(p, '\n');
		size_t ll = eol ? (size_t)(eol - p) : strlen(p);

		if (ll == 3 && memcmp(p, "#%%", 3) == 0) {
			*p = '\0';
			run_cell(cell, n++);
			cell = eol ? eol + 1 : p + ll;
		}
		if (!eol)
			break;
		p = eol + 1;
	}
	if (*cell)
		run_cell(cell, n);
	return Py_FinalizeEx() < 0 ? 120 : 0;
}

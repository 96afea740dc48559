/* main.c - `agentbox`, the command-line front end of EnterSandBox.
 *
 * Finds the verb in commands[] and hands it argv starting at the verb's
 * name. Help and version are handled here so that every verb answers
 * `--help` the same way.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "cli.h"

static const struct cli_command commands[] = {
    {"run", "run Python code in a fresh sandbox", cli_run_help, cmd_run, false},
    {"doctor", "report which isolation layers this host provides", cli_doctor_help, cmd_doctor,
     false},
    {"daemon", "run the agentboxd daemon (e.g. on a unix socket)", cli_daemon_help, cmd_daemon,
     false},
    {"audit", "verify, read or export the tamper-evident audit log", cli_audit_help, cmd_audit,
     false},
    {"routes", "show or clear the routes the router learned", cli_routes_help, cmd_routes, false},
    {"egress", "answer sandboxes' network access requests, read egress decisions", cli_egress_help,
     cmd_egress, true},
    {"dlp", "find secrets and personal data in a file, as egress and audit do", cli_dlp_help,
     cmd_dlp, true},
    {"history", "show a session's steps as a tree, with what each can be rewound to",
     cli_history_help, cmd_history, false},
    {"rewind", "put a session back in the state a step started in", cli_rewind_help,
     cmd_rewind, false},
    {"inspect", "evaluate an expression in the state a step started in", cli_inspect_help,
     cmd_inspect, false},
    {"diff", "compare the variables and files of two steps' states", cli_diff_help, cmd_diff,
     false},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
	fprintf(out,
		"agentbox %s - run untrusted Python in a Linux sandbox\n\n"
		"Usage: agentbox COMMAND [OPTIONS...]\n\n"
		"Commands:\n",
		AGENTBOX_VERSION);
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "  %-8s %s\n", "help", "show the help of a command");
	fputs("\nExamples:\n"
	      "  agentbox run -c 'print(6 * 7)'\n"
	      "  agentbox run --timeout 10 --memory 512M script.py\n"
	      "  echo 'import sys; print(sys.version)' | agentbox run -\n"
	      "  agentbox doctor\n"
	      "  agentbox daemon --socket /run/agentbox.sock\n"
	      "  agentbox egress pending\n"
	      "  agentbox history sb-1f2e3d4c5b6a7980\n"
	      "\nOptions:\n"
	      "  -h, --help      show this help (or `agentbox help COMMAND`)\n"
	      "  -V, --version   print the version\n"
	      "\nEnvironment (the same for the Python SDK; docs/environment.md):\n"
	      "  AGENTBOX_BIN     directory of the agentbox binaries (holds agentboxd)\n"
	      "  AGENTBOX_DAEMON  path of the agentboxd to start (wins over AGENTBOX_BIN;\n"
	      "                   default: next to this program, $PATH, /usr/local/bin,\n"
	      "                   /usr/bin)\n"
	      "  AGENTBOX_SOCKET  use the daemon listening on this unix socket instead of\n"
	      "                   starting a private one\n"
	      "  AGENTBOX_HOME    the state directory (audit log, learned routes)\n"
	      "\nExit status of `run` is the sandboxed program's: 0 ok, 1 uncaught exception,\n"
	      "124 timeout, 137 killed; 125 if the daemon failed, 2 for usage errors.\n",
	      out);
}

static const struct cli_command *find_command(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

/* Levenshtein distance, capped to short words (verbs are short). */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 31 || lb > 31)
		return 99;
	size_t row[32];
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static int unknown_command(const char *name)
{
	const char *hint = NULL;
	size_t best = 3;
	for (size_t i = 0; i < N_COMMANDS; i++) {
		size_t d = edit_distance(name, commands[i].name);
		if (d < best) {
			best = d;
			hint = commands[i].name;
		}
	}
	fprintf(stderr, "agentbox: unknown command '%s'.", name);
	if (hint)
		fprintf(stderr, " Did you mean '%s'?", hint);
	fputs(" See 'agentbox --help'.\n", stderr);
	return CLI_EXIT_USAGE;
}

int cli_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return 0;
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			return 1;
	}
	return 0;
}

/* The rule of agentboxd's --home default (src/daemon/main.c). */
int cli_state_dir(char *out, size_t len, ab_error *err)
{
	const char *env = getenv("AGENTBOX_HOME");
	const char *xdg = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	int n;
	if (env && *env)
		n = snprintf(out, len, "%s", env);
	else if (geteuid() == 0)
		n = snprintf(out, len, "/var/lib/agentbox");
	else if (xdg && *xdg)
		n = snprintf(out, len, "%s/agentbox", xdg);
	else if (home && *home)
		n = snprintf(out, len, "%s/.local/state/agentbox", home);
	else
		return ab_error_set(err, -EINVAL,
				    "cannot find the state directory: set AGENTBOX_HOME");
	if (n < 0 || (size_t)n >= len)
		return ab_error_set(err, -ENAMETOOLONG, "state directory path too long");
	return 0;
}

static int cmd_help(int argc, char **argv)
{
	if (argc < 2) {
		usage(stdout);
		return 0;
	}
	const struct cli_command *c = find_command(argv[1]);
	if (!c) {
		if (strcmp(argv[1], "help") == 0) {
			puts("Usage: agentbox help COMMAND\n\nShows the help of COMMAND.");
			return 0;
		}
		return unknown_command(argv[1]);
	}
	fputs(c->help, stdout);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	const char *verb = argv[1];
	if (strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(verb, "-V") == 0 || strcmp(verb, "--version") == 0) {
		printf("agentbox %s\n", AGENTBOX_VERSION);
		return 0;
	}
	if (strcmp(verb, "help") == 0)
		return cmd_help(argc - 1, argv + 1);
	if (verb[0] == '-') {
		fprintf(stderr,
			"agentbox: unknown option '%s' before the command. "
			"See 'agentbox --help'.\n",
			verb);
		return CLI_EXIT_USAGE;
	}
	const struct cli_command *c = find_command(verb);
	if (!c)
		return unknown_command(verb);
	if (!c->own_help && cli_wants_help(argc - 1, argv + 1)) {
		fputs(c->help, stdout);
		return 0;
	}
	return c->fn(argc - 1, argv + 1);
}

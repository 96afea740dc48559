/* daemon.c - `agentbox daemon`: exec agentboxd with the remaining arguments. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "cli.h"
#include "rpc_client.h"

const char cli_daemon_help[] =
    "Usage: agentbox daemon [AGENTBOXD-ARGS...]\n"
    "\n"
    "Replaces this process with the agentboxd daemon, passing every argument on.\n"
    "The daemon is found through $AGENTBOX_DAEMON, then next to this program,\n"
    "then on $PATH.\n"
    "\n"
    "Examples:\n"
    "  agentbox daemon --socket /run/agentbox.sock   serve clients on a unix socket\n"
    "  agentbox daemon --stdio                       speak JSON-RPC on stdin/stdout\n"
    "  agentbox daemon -- --help                     show agentboxd's own options\n";

int cmd_daemon(int argc, char **argv)
{
	ab_error err = {0};
	char path[PATH_MAX];
	if (rpc_find_daemon(path, sizeof(path), &err) < 0) {
		fprintf(stderr, "agentbox daemon: %s\n", err.msg);
		return CLI_EXIT_DAEMON;
	}
	/* argv[0] is "daemon"; a leading "--" only shields options from our --help. */
	int skip = (argc > 1 && strcmp(argv[1], "--") == 0) ? 2 : 1;
	char **args = calloc((size_t)(argc - skip) + 2, sizeof(char *));
	if (!args) {
		fputs("agentbox daemon: out of memory\n", stderr);
		return CLI_EXIT_DAEMON;
	}
	args[0] = path;
	for (int i = skip; i < argc; i++)
		args[i - skip + 1] = argv[i];
	fflush(NULL);
	execv(path, args);
	int e = errno;
	fprintf(stderr, "agentbox daemon: exec %s: %s\n", path, strerror(e));
	free(args);
	return CLI_EXIT_DAEMON;
}

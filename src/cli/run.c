/* run.c - `agentbox run`: run code in a fresh sandbox, stream its output,
 * exit with its exit code. */
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "agentbox.h"
#include "cli.h"
#include "rpc_client.h"

/* The code travels inside one 16 MiB protocol line, JSON-escaped. */
#define CODE_MAX (8u << 20)
/* Seconds the CLI waits for a run's result beyond the run's own timeout. */
#ifndef RUN_GRACE_S
#define RUN_GRACE_S 60
#endif

const char cli_run_help[] =
    "Usage: agentbox run [OPTIONS] (-c CODE | FILE | -)\n"
    "\n"
    "Runs Python code once in a fresh sandbox (with --tier auto the router picks\n"
    "nano or heavy, and a nano run that needs heavy is run again there), streams\n"
    "its stdout and stderr here as it runs, closes the sandbox and exits with the\n"
    "code's exit status: 0 ok, 1 uncaught exception (the traceback is on\n"
    "stderr), n for SystemExit(n), 124 timeout, 137 killed (e.g. out of memory).\n"
    "If the daemon fails, prints \"agentbox: <reason>\" and exits 125; bad\n"
    "options exit 2.\n"
    "\n"
    "Options:\n"
    "  -c, --code CODE     the code to run (instead of FILE)\n"
    "      --tier TIER     auto (default), heavy or nano\n"
    "      --timeout T     wall-clock limit, e.g. 30, 1.5, 2m (default 30 s)\n"
    "      --memory SIZE   memory limit, e.g. 512, 512M, 2G (default 1024M)\n"
    "      --pids N        process limit (default 256)\n"
    "      --cpu X         CPU cores, e.g. 0.5 (default 1)\n"
    "      --disk SIZE     size of /tmp and cap on file size (default 512M)\n"
    "      --json          print nothing while running, then the whole result as\n"
    "                      one JSON object on stdout\n"
    "      --socket PATH   use the daemon on this unix socket (default:\n"
    "                      $AGENTBOX_SOCKET, else start a private daemon)\n"
    "  -h, --help          show this help\n"
    "\n"
    "Examples:\n"
    "  agentbox run -c 'print(6 * 7)'\n"
    "  agentbox run --timeout 5 --memory 256M analysis.py\n"
    "  agentbox run --json -c '1 + 1'          # {\"status\": \"ok\", \"value\": \"2\", ...}\n"
    "  cat script.py | agentbox run -\n";

enum { OPT_TIER = 256, OPT_TIMEOUT, OPT_MEMORY, OPT_PIDS, OPT_CPU, OPT_DISK, OPT_JSON, OPT_SOCKET };

static const struct option run_options[] = {
    {"code", required_argument, NULL, 'c'},
    {"tier", required_argument, NULL, OPT_TIER},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"memory", required_argument, NULL, OPT_MEMORY},
    {"pids", required_argument, NULL, OPT_PIDS},
    {"cpu", required_argument, NULL, OPT_CPU},
    {"disk", required_argument, NULL, OPT_DISK},
    {"json", no_argument, NULL, OPT_JSON},
    {"socket", required_argument, NULL, OPT_SOCKET},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int bad_option(const char *opt, const char *reason)
{
	fprintf(stderr, "agentbox run: %s: %s\n", opt, reason);
	return CLI_EXIT_USAGE;
}

/* Reads all of fd (a file or stdin) into a NUL-terminated buffer of at most
 * CODE_MAX bytes. */
static int read_code(int fd, const char *what, char **out, ab_error *err)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	if (!buf)
		return ab_error_set(err, -ENOMEM, "out of memory");
	for (;;) {
		if (len + 1 >= cap) {
			if (cap > CODE_MAX) {
				free(buf);
				return ab_error_set(err, -EFBIG, "%s is larger than %u bytes", what,
						    CODE_MAX);
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return ab_error_set(err, -ENOMEM, "out of memory");
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = -errno;
			free(buf);
			return ab_error_errno(err, e, "read %s", what);
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > CODE_MAX) {
		free(buf);
		return ab_error_set(err, -EFBIG, "%s is larger than %u bytes", what, CODE_MAX);
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
}

static void write_raw(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* e.g. a closed pipe: the output has nowhere to go */
		p += w;
		n -= (size_t)w;
	}
}

static void stream_output(const char *stream, const char *data, size_t len, void *ud)
{
	(void)ud;
	write_raw(strcmp(stream, "stderr") == 0 ? STDERR_FILENO : STDOUT_FILENO, data, len);
}

/* Error text can quote what a sandbox said (its fatal message, a reason
 * it died): it is escaped for the terminal. */
static int daemon_failed(const ab_error *err)
{
	fputs("agentbox: ", stderr);
	cli_term_puts(stderr, err->msg);
	fputc('\n', stderr);
	return CLI_EXIT_DAEMON;
}

/* Runs code once in a fresh sandbox (the daemon's stateless "run": the
 * sandbox is closed after it). Returns the exit status for the CLI: the
 * code's exit code, or CLI_EXIT_DAEMON. */
static int run_once(rpc_client *c, const char *tier, json_t *limits, json_t *code, bool json_out)
{
	ab_error err = {0};
	/* The daemon enforces the run's timeout; waiting a minute longer than
	 * that only guards against a daemon that stopped answering. */
	double limit = json_number_value(json_object_get(limits, "timeout"));
	if (!(limit > 0 && limit <= 86400))
		limit = 30; /* the daemon's default (ab_limits_default) */
	rpc_client_set_timeout(c, (int)((limit + RUN_GRACE_S) * 1000));
	json_t *params AB_AUTOJSON =
	    json_pack("{s:s, s:O, s:O}", "tier", tier, "limits", limits, "code", code);
	json_t *result AB_AUTOJSON = NULL;
	if (rpc_client_call(c, "run", params, json_out ? NULL : stream_output, NULL, &result, NULL,
			    &err) < 0)
		return daemon_failed(&err);
	json_t *ec = json_object_get(result, "exit_code");
	if (!json_is_integer(ec)) {
		fputs("agentbox: run: the daemon's result has no exit_code\n", stderr);
		return CLI_EXIT_DAEMON;
	}
	json_int_t v = json_integer_value(ec);
	if (json_out) {
		char *text AB_AUTOFREE = json_dumps(result, JSON_COMPACT);
		if (text)
			printf("%s\n", text);
		fflush(stdout);
	} else if (json_is_string(json_object_get(result, "tier_hint"))) {
		fputs("agentbox: ", stderr);
		cli_term_puts(stderr, json_string_value(json_object_get(result, "tier_hint")));
		fputc('\n', stderr);
	}
	return v >= 0 && v <= 255 ? (int)v : 1;
}

int cmd_run(int argc, char **argv)
{
	const char *code_arg = NULL, *tier = "auto", *socket_path = NULL;
	bool json_out = false;
	json_t *limits AB_AUTOJSON = json_object();
	ab_error err = {0};

	optind = 1;
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, ":c:h", run_options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			code_arg = optarg;
			break;
		case OPT_TIER:
			if (strcmp(optarg, "auto") && strcmp(optarg, "heavy") &&
			    strcmp(optarg, "nano"))
				return bad_option("--tier", "must be auto, heavy or nano");
			tier = optarg;
			break;
		case OPT_TIMEOUT: {
			double s;
			if (ab_parse_seconds(optarg, &s, &err) < 0)
				return bad_option("--timeout", err.msg);
			json_object_set_new(limits, "timeout", json_real(s));
			break;
		}
		case OPT_MEMORY:
		case OPT_DISK: {
			uint64_t mb;
			const char *name = opt == OPT_MEMORY ? "--memory" : "--disk";
			if (ab_parse_size_mb(optarg, &mb, &err) < 0)
				return bad_option(name, err.msg);
			json_object_set_new(limits, opt == OPT_MEMORY ? "memory_mb" : "disk_mb",
					    json_integer((json_int_t)mb));
			break;
		}
		case OPT_PIDS: {
			char *end;
			errno = 0;
			unsigned long n = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' || n < 1 ||
			    n > 1000000)
				return bad_option("--pids",
						  "must be a whole number from 1 to 1000000");
			json_object_set_new(limits, "pids", json_integer((json_int_t)n));
			break;
		}
		case OPT_CPU: {
			char *end;
			errno = 0;
			double x = strtod(optarg, &end);
			if (errno || end == optarg || *end || !isfinite(x) || x <= 0 || x > 4096)
				return bad_option("--cpu", "must be a number of cores above 0, "
							   "e.g. 0.5 or 2");
			json_object_set_new(limits, "cpu", json_real(x));
			break;
		}
		case OPT_JSON:
			json_out = true;
			break;
		case OPT_SOCKET:
			socket_path = optarg;
			break;
		case 'h':
			fputs(cli_run_help, stdout);
			return 0;
		case ':':
			fprintf(stderr,
				"agentbox run: %s needs a value. See 'agentbox run --help'.\n",
				argv[optind - 1]);
			return CLI_EXIT_USAGE;
		default:
			fprintf(stderr,
				"agentbox run: unknown option '%s'. See 'agentbox run --help'.\n",
				argv[optind - 1]);
			return CLI_EXIT_USAGE;
		}
	}

	int npos = argc - optind;
	if ((code_arg && npos > 0) || npos > 1) {
		fputs("agentbox run: give exactly one of -c CODE, FILE or - (stdin). "
		      "See 'agentbox run --help'.\n",
		      stderr);
		return CLI_EXIT_USAGE;
	}
	char *code AB_AUTOFREE = NULL;
	if (code_arg) {
		if (strlen(code_arg) > CODE_MAX)
			return bad_option("-c", "the code is too long");
		code = strdup(code_arg);
	} else {
		const char *file = npos ? argv[optind] : "-";
		if (strcmp(file, "-") == 0) {
			if (!npos && isatty(STDIN_FILENO)) {
				fputs(
				    "agentbox run: no code given: use -c CODE, FILE or - (stdin). "
				    "See 'agentbox run --help'.\n",
				    stderr);
				return CLI_EXIT_USAGE;
			}
			if (read_code(STDIN_FILENO, "stdin", &code, &err) < 0)
				return bad_option("stdin", err.msg);
		} else {
			int fd AB_AUTOCLOSE = open(file, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				return bad_option(file, strerror(errno));
			if (read_code(fd, file, &code, &err) < 0)
				return bad_option(file, err.msg);
		}
	}
	if (!code) {
		fputs("agentbox run: out of memory\n", stderr);
		return CLI_EXIT_DAEMON;
	}
	json_t *code_json AB_AUTOJSON = json_string(code);
	if (!code_json)
		return bad_option("code", "is not valid UTF-8 text (or contains a NUL byte)");

	rpc_client *c = NULL;
	if (rpc_client_open(socket_path, &c, &err) < 0)
		return daemon_failed(&err);
	int status = run_once(c, tier, limits, code_json, json_out);
	rpc_client_close(c);
	return status;
}

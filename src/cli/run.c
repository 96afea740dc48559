/* run.c - `agentbox run`: run code in a fresh sandbox, stream its output,
 * exit with its exit code. */
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
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
    "The timeout bounds the whole run, a rerun in heavy included. Ctrl-C stops\n"
    "the run (the code gets KeyboardInterrupt) and exits 130; a second Ctrl-C\n"
    "exits at once. If the daemon fails, prints \"agentbox: <reason>\" and exits\n"
    "125; bad options, and limits the daemon refuses, exit 2. A timeout,\n"
    "truncated output, a limit that killed the run and a degraded sandbox are\n"
    "reported on stderr.\n"
    "\n"
    "Options:\n"
    "  -c, --code CODE     the code to run (instead of FILE)\n"
    "      --tier TIER     auto (default), heavy or nano\n"
    "      --timeout T     wall-clock limit, e.g. 30, 1.5, 2m (default 30 s)\n"
    "      --memory SIZE   memory limit, e.g. 512, 512M, 2G (default 1024M)\n"
    "      --pids N        process limit (default 128, at most 2048)\n"
    "      --cpu X         CPU cores, e.g. 0.5 (default 1)\n"
    "      --disk SIZE     size of /tmp and cap on file size (default 512M)\n"
    "      --json          print nothing while running, then the whole result as\n"
    "                      one JSON object on stdout\n"
    "      --socket PATH   use the daemon on this unix socket (default:\n"
    "                      $AGENTBOX_SOCKET, else start a private daemon)\n"
    "      --degrade LAYER let the private daemon that this command starts run\n"
    "                      without isolation layer LAYER (repeatable or comma-\n"
    "                      separated, e.g. cgroup); a warning then says what is\n"
    "                      not enforced. Not with a shared daemon (--socket,\n"
    "                      $AGENTBOX_SOCKET): its operator decides its layers\n"
    "  -h, --help          show this help\n"
    "\n"
    "Examples:\n"
    "  agentbox run -c 'print(6 * 7)'\n"
    "  agentbox run --timeout 5 --memory 256M analysis.py\n"
    "  agentbox run --json -c '1 + 1'          # {\"status\": \"ok\", \"value\": \"2\", ...}\n"
    "  cat script.py | agentbox run -\n";

enum {
	OPT_TIER = 256,
	OPT_TIMEOUT,
	OPT_MEMORY,
	OPT_PIDS,
	OPT_CPU,
	OPT_DISK,
	OPT_JSON,
	OPT_SOCKET,
	OPT_DEGRADE
};

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
    {"degrade", required_argument, NULL, OPT_DEGRADE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int bad_option(const char *opt, const char *reason)
{
	fprintf(stderr, "agentbox run: %s: %s\n", opt, reason);
	return CLI_EXIT_USAGE;
}

/* Adds the layers of one --degrade value (one name or a comma-separated list)
 * to the list for agentboxd's --degrade, checking each name. */
static int add_degrade(char *list, size_t len, const char *arg)
{
	char buf[256];
	if ((size_t)snprintf(buf, sizeof(buf), "%s", arg) >= sizeof(buf))
		return bad_option("--degrade", "the list of layers is too long");
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (ab_layer_from_name(tok) < 0) {
			char names[512] = "";
			for (int l = 0; l < AB_LAYER__COUNT; l++) {
				strcat(names, " ");
				strcat(names, ab_layer_name((enum ab_layer)l));
			}
			fprintf(stderr,
				"agentbox run: --degrade: unknown layer \"%s\" (layers:%s)\n", tok,
				names);
			return CLI_EXIT_USAGE;
		}
		size_t used = strlen(list);
		if ((size_t)snprintf(list + used, len - used, "%s%s", used ? "," : "", tok) >=
		    len - used)
			return bad_option("--degrade", "the list of layers is too long");
	}
	return 0;
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

/* Exit status of a run stopped by Ctrl-C, as a shell reports SIGINT. */
#define EXIT_INTERRUPTED 130

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void stream_output(const char *stream, const char *data, size_t len, void *ud)
{
	(void)ud;
	if (strcmp(stream, "rerun") == 0) {
		/* The output above came from the nano attempt. */
		fprintf(stderr,
			"agentbox: the run is being rerun in the heavy tier (%.*s); the output "
			"above came from the nano attempt\n",
			(int)(len > 400 ? 400 : len), data);
		return;
	}
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

/* The option of `agentbox run` that sets each key of "limits", and the unit
 * the key counts in, so that a refused limit names what the user typed. */
static const struct {
	const char *key, *option, *unit;
} limit_options[] = {
    {"timeout", "--timeout", "seconds"}, {"memory_mb", "--memory", "MB"},
    {"pids", "--pids", "processes"},	 {"cpu", "--cpu", "cores"},
    {"disk_mb", "--disk", "MB"},
};

/* Reports limits that the library (the daemon's own rules, src/lib/limits.c)
 * or the daemon refused as a usage error naming the option. msg is the
 * refusal, e.g. "limits.memory_mb: 1 is outside 32..1048576". */
static int limits_refused(const char *msg)
{
	for (size_t i = 0; i < sizeof(limit_options) / sizeof(limit_options[0]); i++) {
		char key[32];
		snprintf(key, sizeof(key), "limits.%s: ", limit_options[i].key);
		const char *at = strstr(msg, key);
		if (at) {
			fprintf(stderr,
				"agentbox run: %s: %s (in %s). See 'agentbox run --help'.\n",
				limit_options[i].option, at + strlen(key), limit_options[i].unit);
			return CLI_EXIT_USAGE;
		}
	}
	fprintf(stderr, "agentbox run: %s. See 'agentbox run --help'.\n", msg);
	return CLI_EXIT_USAGE;
}

/* Tells the user on stderr what the result says but the output cannot: that
 * the run timed out, was killed by a limit, lost output, or ran without some
 * isolation layers. Printed after the run's own output. */
static void report_result(json_t *result, json_t *limits, bool json_out)
{
	ab_limits dflt;
	ab_limits_default(&dflt);
	const char *status = json_string_value(json_object_get(result, "status"));
	const char *limit = json_string_value(json_object_get(result, "limit"));
	json_t *lim_v;
	if (!json_out && status && strcmp(status, "timeout") == 0) {
		lim_v = json_object_get(limits, "timeout");
		fprintf(stderr,
			"agentbox: the run timed out: it exceeded its time limit of %g s "
			"(raise it with --timeout)\n",
			json_is_number(lim_v) ? json_number_value(lim_v) : dflt.timeout_s);
	} else if (!json_out && limit) {
		/* The limits that kill a run, with the option that raises each. */
		const struct {
			const char *limit, *key, *what, *unit, *option;
			long long dflt;
		} kills[] = {
		    {"memory", "memory_mb", "memory limit of", " MB", "--memory", dflt.memory_mb},
		    {"pids", "pids", "limit of", " processes", "--pids", dflt.pids},
		};
		for (size_t i = 0; i < sizeof(kills) / sizeof(kills[0]); i++) {
			if (strcmp(limit, kills[i].limit) != 0)
				continue;
			lim_v = json_object_get(limits, kills[i].key);
			fprintf(stderr, "agentbox: the run hit its %s %lld%s (raise it with %s)\n",
				kills[i].what,
				json_is_integer(lim_v) ? (long long)json_integer_value(lim_v)
						       : kills[i].dflt,
				kills[i].unit, kills[i].option);
		}
	}
	json_t *trunc = json_object_get(result, "truncated");
	for (int i = 0; !json_out && i < 2; i++) {
		const char *stream = i ? "stderr" : "stdout";
		if (json_is_true(json_object_get(trunc, stream)))
			fprintf(stderr,
				"agentbox: %s was truncated: the run wrote more than its output "
				"limit of %llu bytes, and the rest was discarded\n",
				stream, (unsigned long long)dflt.output_bytes);
	}
	/* A degraded result is a weaker sandbox than the user asked for: say so
	 * in every mode, since --json output goes to a program, not a person. */
	json_t *degraded = json_object_get(result, "degraded");
	if (json_is_array(degraded) && json_array_size(degraded) > 0) {
		size_t i;
		json_t *layer;
		fputs("agentbox: WARNING: this run was NOT fully isolated: the daemon runs "
		      "without\n",
		      stderr);
		json_array_foreach(degraded, i, layer)
		{
			const char *name = json_string_value(layer);
			int l = name ? ab_layer_from_name(name) : -1;
			fprintf(stderr, "  %s: %s\n", name ? name : "?",
				l >= 0 ? ab_layer_consequence((enum ab_layer)l)
				       : "an isolation layer is missing");
		}
		fputs("  (it was started with --degrade; `agentbox doctor` says how to provide "
		      "the missing layers)\n",
		      stderr);
	}
}

/* Runs code once in a fresh sandbox (the daemon's stateless "run": the
 * sandbox is closed after it). Returns the exit status for the CLI: the
 * code's exit code, or CLI_EXIT_DAEMON. */
static int run_once(rpc_client *c, const char *tier, json_t *limits, json_t *code, bool json_out)
{
	ab_error err = {0};
	int rpc_code = 0;
	/* The daemon enforces the run's timeout; waiting a minute longer than
	 * that only guards against a daemon that stopped answering. */
	double limit = json_number_value(json_object_get(limits, "timeout"));
	if (!(limit > 0 && limit <= 86400))
		limit = 30; /* the daemon's default (ab_limits_default) */
	rpc_client_set_timeout(c, (int)((limit + RUN_GRACE_S) * 1000));
	json_t *params AB_AUTOJSON =
	    json_pack("{s:s, s:O, s:O}", "tier", tier, "limits", limits, "code", code);
	json_t *result AB_AUTOJSON = NULL;
	/* Ctrl-C asks the daemon to interrupt the run, whose result then ends
	 * the command; a second Ctrl-C (the default action again) ends it at
	 * once, and a private daemon shuts down on the EOF. */
	struct sigaction sa = {.sa_handler = on_sigint, .sa_flags = SA_RESETHAND};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	rpc_client_set_interrupt(c, &interrupted);
	int rc = rpc_client_call(c, "run", params, json_out ? NULL : stream_output, NULL, &result,
				 &rpc_code, &err);
	rpc_client_set_interrupt(c, NULL);
	if (rc < 0) {
		if (rpc_code == -32602 && strstr(err.msg, "limits"))
			return limits_refused(err.msg);
		return daemon_failed(&err);
	}
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
	report_result(result, limits, json_out);
	if (json_is_true(json_object_get(result, "interrupted"))) {
		if (!json_out)
			fputs("agentbox: interrupted (Ctrl-C): the run was stopped with "
			      "KeyboardInterrupt\n",
			      stderr);
		return EXIT_INTERRUPTED;
	}
	return v >= 0 && v <= 255 ? (int)v : 1;
}

int cmd_run(int argc, char **argv)
{
	const char *code_arg = NULL, *tier = "auto", *socket_path = NULL;
	bool json_out = false;
	char degrade[512] = "";
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
		case OPT_DEGRADE: {
			int r = add_degrade(degrade, sizeof(degrade), optarg);
			if (r)
				return r;
			break;
		}
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

	/* The library holds the daemon's own bounds: check them here so that a
	 * bad limit is a usage error before any daemon is started. */
	ab_limits checked;
	ab_limits_default(&checked);
	if (ab_limits_from_json(&checked, limits, &err) < 0)
		return limits_refused(err.msg);

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
	int r = rpc_client_open_degraded(socket_path, degrade[0] ? degrade : NULL, &c, &err);
	if (r == -EINVAL && degrade[0])
		return bad_option("--degrade", err.msg);
	if (r < 0)
		return daemon_failed(&err);
	int status = run_once(c, tier, limits, code_json, json_out);
	rpc_client_close(c);
	return status;
}

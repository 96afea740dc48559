/* egress.c - `agentbox egress`: the operator's view of governed network
 * egress (docs/egress.md): pending access requests and their answers, the
 * decisions the sidecar made, the policy in force, a policy reload.
 *
 * Every subcommand is one JSON-RPC call to a shared agentboxd (--socket or
 * $AGENTBOX_SOCKET): egress state lives in the daemon that holds the
 * sandboxes, so a private daemon started for one command would only ever
 * answer "nothing". Hosts, paths, reasons and notes come from sandboxes or
 * their agents: everything the daemon returns is escaped for the terminal. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "cli.h"
#include "rpc_client.h"

/* Widest a table column grows; longer cells are cut with "...". */
#define COLUMN_MAX 40
/* How much of a free-text field (reason, note, event body) a line shows. */
#define TEXT_SHORT 100
/* Request ids and sandbox ids are short tokens. */
#define ID_MAX 128
#define LIMIT_MAX 100000
/* A host name is at most 253 bytes; a longer one from the log is cut. */
#define HOST_MAX 260

#define HELP_SOCKET "      --socket PATH   the daemon's unix socket (default: $AGENTBOX_SOCKET)\n"
#define HELP_HELP "  -h, --help          show this help\n"

const char cli_egress_help[] =
    "Usage: agentbox egress pending [--json]\n"
    "       agentbox egress approve ID [--note TEXT]\n"
    "       agentbox egress deny ID [--note TEXT]\n"
    "       agentbox egress log [--sandbox ID] [--limit N] [--json]\n"
    "       agentbox egress status [--sandbox ID] [--json]\n"
    "       agentbox egress reload\n"
    "\n"
    "Sandboxes reach the network only through the daemon's egress proxy, which\n"
    "lets a request through when a rule of the sandbox, of its declared intent,\n"
    "of an approved access request or of the policy file allows it, and records\n"
    "every decision (docs/egress.md). These commands talk to a shared daemon:\n"
    "--socket PATH or $AGENTBOX_SOCKET. pending, approve, deny and reload are for\n"
    "its operator (root or the daemon's own user).\n"
    "\n"
    "  pending  lists the access requests waiting for an operator (an agent's\n"
    "           box.request_access that no rule or intent decided)\n"
    "  approve  grants one (the sandbox may then reach that host)\n"
    "  deny     refuses one\n"
    "  log      the latest egress decisions, one line each\n"
    "  status   the sidecar, the policy file and the intents; with --sandbox that\n"
    "           sandbox's effective policy\n"
    "  reload   makes the daemon read its policy file (agentboxd --policy) again\n"
    "\n"
    "`agentbox egress COMMAND --help` shows the options of each.\n"
    "\n"
    "Exit status: 0 ok, 2 usage error or a request the daemon refused as invalid\n"
    "(e.g. an unknown ID), 125 the daemon could not be reached or failed.\n"
    "\n"
    "Examples:\n"
    "  export AGENTBOX_SOCKET=/run/agentbox.sock\n"
    "  agentbox egress pending\n"
    "  agentbox egress approve ar-3 --note 'ticket 1234'\n"
    "  agentbox egress log --sandbox sb-3f2a --limit 20\n"
    "  agentbox egress status --sandbox sb-3f2a --json\n";

static const char help_pending[] =
    "Usage: agentbox egress pending [--json] [--socket PATH]\n"
    "\n"
    "Lists the access requests that wait for an operator: one line each with its\n"
    "ID, the sandbox, the host asked for, how long ago it was asked and the\n"
    "agent's reason. Answer with `agentbox egress approve|deny ID`. An agent's\n"
    "box.request_access(host, timeout=T) waits up to T seconds for the answer;\n"
    "an answer given later still applies to the sandbox.\n"
    "\n"
    "Options:\n"
    "      --json          the daemon's answer as one JSON object\n" HELP_SOCKET HELP_HELP "\n"
    "Example:\n"
    "  agentbox egress pending\n";

static const char help_approve[] =
    "Usage: agentbox egress approve ID [--note TEXT] [--socket PATH]\n"
    "\n"
    "Grants the pending access request ID (as `agentbox egress pending` shows\n"
    "it): its sandbox may then reach the host it asked for. The decision, with\n"
    "your uid and the note, is recorded in the audit log.\n"
    "\n"
    "Options:\n"
    "      --note TEXT     why (recorded with the decision)\n" HELP_SOCKET HELP_HELP "\n"
    "Example:\n"
    "  agentbox egress approve ar-3 --note 'needed for the release notes'\n";

static const char help_deny[] =
    "Usage: agentbox egress deny ID [--note TEXT] [--socket PATH]\n"
    "\n"
    "Refuses the pending access request ID (as `agentbox egress pending` shows\n"
    "it). The decision, with your uid and the note, is recorded in the audit log.\n"
    "\n"
    "Options:\n"
    "      --note TEXT     why (recorded with the decision)\n" HELP_SOCKET HELP_HELP "\n"
    "Example:\n"
    "  agentbox egress deny ar-4 --note 'no uploads to paste sites'\n";

static const char help_log[] =
    "Usage: agentbox egress log [--sandbox ID] [--limit N] [--json] [--socket PATH]\n"
    "\n"
    "Prints the latest egress events, oldest first, one line each. A request:\n"
    "  TIME SANDBOX DECISION METHOD HOST:PORT PATH STATUS RULE (REASON)\n"
    "where DECISION is allow, deny or report (let through and recorded), RULE the\n"
    "rule that decided (sandbox#N, intent:NAME#N, grant:ID, deny#N, policy#N) and\n"
    "REASON why a request was refused; a blocked or redacted body is shown as\n"
    "[inspection VERDICT: KINDS]. Other events (intents set or expired, access\n"
    "requests and decisions, policy loads, sidecar restarts) show their kind and\n"
    "their fields. Hosts, paths and reasons come from sandboxes: control and\n"
    "bidirectional characters are shown escaped (\\u001b).\n"
    "\n"
    "Options:\n"
    "      --sandbox ID    only the events of this sandbox\n"
    "      --limit N       at most N events, the latest (default 100, 1..100000)\n"
    "      --json          the daemon's answer as one JSON object\n" HELP_SOCKET HELP_HELP "\n"
    "Examples:\n"
    "  agentbox egress log\n"
    "  agentbox egress log --sandbox sb-3f2a --limit 20\n";

static const char help_status[] =
    "Usage: agentbox egress status [--sandbox ID] [--json] [--socket PATH]\n"
    "\n"
    "Shows the sidecar's state, the policy file in force and the intents it\n"
    "defines; with --sandbox, that sandbox's effective policy: its deny and allow\n"
    "rules, its intent and the intent's rules and expiry.\n"
    "\n"
    "Options:\n"
    "      --sandbox ID    also the effective policy of this sandbox\n"
    "      --json          the daemon's answer as one JSON object\n" HELP_SOCKET HELP_HELP "\n"
    "Examples:\n"
    "  agentbox egress status\n"
    "  agentbox egress status --sandbox sb-3f2a\n";

static const char help_reload[] =
    "Usage: agentbox egress reload [--socket PATH]\n"
    "\n"
    "Makes the daemon read its policy file (agentboxd --policy FILE) again and\n"
    "apply it to every sandbox. A file with an error is refused, naming the line,\n"
    "and the policy in force stays as it was.\n"
    "\n"
    "Options:\n" HELP_SOCKET HELP_HELP "\n"
    "Example:\n"
    "  agentbox egress reload\n";

enum {
	OPT_JSON = 256,
	OPT_NOTE,
	OPT_SANDBOX,
	OPT_LIMIT,
	OPT_SOCKET,
};

/* Which options a subcommand takes. */
enum {
	TAKES_JSON = 1 << 0,
	TAKES_NOTE = 1 << 1,
	TAKES_SANDBOX = 1 << 2,
	TAKES_LIMIT = 1 << 3,
	TAKES_ID = 1 << 4, /* one positional argument */
};

static const struct option egress_options[] = {
    {"json", no_argument, NULL, OPT_JSON},
    {"note", required_argument, NULL, OPT_NOTE},
    {"sandbox", required_argument, NULL, OPT_SANDBOX},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"socket", required_argument, NULL, OPT_SOCKET},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

struct egress_args;

struct egress_verb {
	const char *name;
	const char *help;
	unsigned takes;
	int (*fn)(struct egress_args *a, rpc_client *c);
};

struct egress_args {
	const struct egress_verb *verb;
	const char *socket, *note, *sandbox, *id;
	long limit; /* 0: the daemon's default */
	bool json;
};

/* "egress SUB" (or "egress"), for the shared error lines (verb.c). */
static const char *cmd_of(const char *sub)
{
	static char cmd[64];
	snprintf(cmd, sizeof(cmd), "egress%s%s", sub ? " " : "", sub ? sub : "");
	return cmd;
}

static int usage_error(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const char *sub, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = cli_vusage_error(cmd_of(sub), fmt, ap);
	va_end(ap);
	return r;
}

/* ------------------------------------------------------------- arguments */


static bool good_utf8(const char *s)
{
	json_t *j = json_string(s);
	json_decref(j);
	return j != NULL;
}

static const char *option_name(int opt)
{
	for (const struct option *o = egress_options; o->name; o++)
		if (o->val == opt)
			return o->name;
	return "?";
}

static int parse_args(int argc, char **argv, struct egress_args *a)
{
	const char *sub = a->verb->name;
	optind = 1;
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, ":h", egress_options, NULL)) != -1) {
		unsigned need = 0;
		switch (opt) {
		case OPT_JSON:
			need = TAKES_JSON;
			break;
		case OPT_NOTE:
			need = TAKES_NOTE;
			break;
		case OPT_SANDBOX:
			need = TAKES_SANDBOX;
			break;
		case OPT_LIMIT:
			need = TAKES_LIMIT;
			break;
		case OPT_SOCKET:
		case 'h':
			break;
		case ':':
			return usage_error(sub, "%s needs a value", argv[optind - 1]);
		default:
			return usage_error(sub, "unknown option '%s'", argv[optind - 1]);
		}
		if (need && !(a->verb->takes & need))
			return usage_error(sub, "--%s does not apply to '%s'", option_name(opt),
					   sub);
		switch (opt) {
		case OPT_JSON:
			a->json = true;
			break;
		case OPT_NOTE:
			if (!good_utf8(optarg))
				return usage_error(sub, "--note: not valid UTF-8 text");
			a->note = optarg;
			break;
		case OPT_SANDBOX:
			if (!cli_good_token(optarg, ID_MAX))
				return usage_error(
				    sub,
				    "--sandbox '%.*s': expected a sandbox id such as "
				    "sb-3f2a (1 to %d printable characters, no spaces)",
				    ID_MAX, optarg, ID_MAX);
			a->sandbox = optarg;
			break;
		case OPT_LIMIT: {
			char *end;
			errno = 0;
			long v = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || v < 1 || v > LIMIT_MAX)
				return usage_error(sub, "--limit %s: expected 1 to %d events",
						   optarg, LIMIT_MAX);
			a->limit = v;
			break;
		}
		case OPT_SOCKET:
			if (!*optarg)
				return usage_error(sub, "--socket: empty path");
			a->socket = optarg;
			break;
		case 'h':
			fputs(a->verb->help, stdout);
			return -1;
		}
	}
	int npos = argc - optind;
	if (a->verb->takes & TAKES_ID) {
		if (npos == 0)
			return usage_error(sub, "missing the request ID (as `agentbox egress "
						"pending` shows it)");
		a->id = argv[optind++];
		npos--;
		if (!cli_good_token(a->id, ID_MAX))
			return usage_error(
			    sub,
			    "'%.*s' is not a request ID (1 to %d printable characters, "
			    "no spaces; `agentbox egress pending` lists them)",
			    ID_MAX, a->id, ID_MAX);
	}
	if (npos > 0)
		return usage_error(sub, "unexpected argument '%s'", argv[optind]);
	if (!a->socket) {
		const char *env = getenv("AGENTBOX_SOCKET");
		if (!env || !*env)
			return usage_error(
			    sub,
			    "no daemon named: give --socket PATH or set AGENTBOX_SOCKET to the "
			    "socket of the agentboxd that holds the sandboxes (egress state lives "
			    "there; a private daemon started for this command would have none)");
		a->socket = env;
	}
	return 0;
}

/* ------------------------------------------------------------- the call */

/* Calls method; on success *result owns the answer. Otherwise returns the
 * exit status after printing why: 2 when the daemon refused the request as
 * invalid (-32602: an unknown ID, a bad option value), 125 for anything
 * else (not reachable, an internal error, refused for lack of rights). */
static int call(struct egress_args *a, rpc_client *c, const char *method, json_t *params,
		json_t **result)
{
	return cli_call(cmd_of(a->verb->name), c, method, params, result, NULL);
}


/* --------------------------------------------------------------- output */

/* s escaped for the terminal (cli_term_write), cut after max_chars
 * characters (0: whole) with "..." added. The caller frees it; NULL when
 * out of memory, which the printers below show as nothing (SHOWN). */
static char *escaped(const char *s, size_t max_chars)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	if (s && cli_term_write(f, s, strlen(s), max_chars))
		fputs("...", f);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

#define SHOWN(s) ((s) ? (s) : "")



static const char *str_or(json_t *v, const char *dflt)
{
	const char *s = json_string_value(v);
	return s ? s : dflt;
}

/* A time the daemon sent, as nanoseconds since 1970: an integer in
 * seconds, milliseconds or nanoseconds (told apart by size: any date
 * after 1973 is unambiguous), a real in seconds, or an ISO-8601 UTC
 * string. */
static bool epoch_ns(json_t *v, int64_t *out)
{
	if (json_is_integer(v)) {
		json_int_t x = json_integer_value(v);
		if (x < 0)
			return false;
		if (x >= 100000000000000000LL)
			*out = x;
		else if (x >= 100000000000000LL)
			*out = x * 1000;
		else if (x >= 100000000000LL)
			*out = x * 1000000;
		else
			*out = x * 1000000000LL;
		return true;
	}
	if (json_is_real(v)) {
		double x = json_real_value(v);
		if (!(x >= 0 && x < 9e9))
			return false;
		*out = (int64_t)(x * 1e9);
		return true;
	}
	const char *s = json_string_value(v);
	return s && cli_parse_time(s, out);
}

static void format_time(json_t *v, char *out, size_t len)
{
	int64_t ns;
	struct tm tm;
	snprintf(out, len, "-");
	if (!epoch_ns(v, &ns))
		return;
	time_t s = (time_t)(ns / 1000000000);
	if (!gmtime_r(&s, &tm))
		return;
	char date[32];
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, len, "%s.%03lldZ", date, (long long)(ns % 1000000000 / 1000000));
}

/* "42s", "5m", "3h", "2d" since the time v. */
static void format_age(json_t *v, char *out, size_t len)
{
	int64_t then;
	struct timespec now;
	if (!epoch_ns(v, &then) || clock_gettime(CLOCK_REALTIME, &now) < 0) {
		snprintf(out, len, "-");
		return;
	}
	int64_t s = ((int64_t)now.tv_sec * 1000000000 + now.tv_nsec - then) / 1000000000;
	if (s < 0)
		s = 0;
	if (s < 60)
		snprintf(out, len, "%llds", (long long)s);
	else if (s < 3600)
		snprintf(out, len, "%lldm", (long long)(s / 60));
	else if (s < 86400)
		snprintf(out, len, "%lldh", (long long)(s / 3600));
	else
		snprintf(out, len, "%lldd", (long long)(s / 86400));
}

/* --------------------------------------------------------------- pending */

static int egress_pending(struct egress_args *a, rpc_client *c)
{
	json_t *r AB_AUTOJSON = NULL;
	int rc = call(a, c, "egress.pending", NULL, &r);
	if (rc)
		return rc;
	json_t *reqs = json_object_get(r, "requests");
	if (!json_is_array(reqs))
		return cli_malformed(cmd_of("pending"), "no \"requests\" list");
	if (a->json) {
		cli_print_json(r);
		return 0;
	}
	size_t n = json_array_size(reqs);
	if (n == 0) {
		puts("no pending access requests");
		return 0;
	}
	/* Cells escaped and cut once; widths from what will be printed. */
	enum { C_ID, C_SANDBOX, C_HOST, C_AGE, C_REASON, NCOL };
	static const char *const heads[NCOL] = {"ID", "SANDBOX", "HOST", "AGE", "REASON"};
	char **cells = calloc(n * NCOL, sizeof(*cells));
	if (!cells) {
		fputs("agentbox egress pending: out of memory\n", stderr);
		return CLI_EXIT_DAEMON;
	}
	size_t width[NCOL];
	for (int k = 0; k < NCOL; k++)
		width[k] = strlen(heads[k]);
	for (size_t i = 0; i < n; i++) {
		json_t *q = json_array_get(reqs, i);
		json_t *id = json_object_get(q, "id");
		char idbuf[32], age[16];
		if (json_is_integer(id))
			snprintf(idbuf, sizeof(idbuf), "%lld", (long long)json_integer_value(id));
		format_age(json_object_get(q, "requested_at"), age, sizeof(age));
		char **row = cells + i * NCOL;
		row[C_ID] = escaped(json_is_integer(id) ? idbuf : str_or(id, "?"), COLUMN_MAX);
		row[C_SANDBOX] = escaped(str_or(json_object_get(q, "sandbox"), "-"), COLUMN_MAX);
		row[C_HOST] = escaped(str_or(json_object_get(q, "host"), "-"), COLUMN_MAX);
		row[C_AGE] = strdup(age);
		row[C_REASON] = escaped(str_or(json_object_get(q, "reason"), "-"), TEXT_SHORT);
		for (int k = 0; k < NCOL; k++) {
			size_t w = cli_columns(SHOWN(row[k]));
			if (w > width[k])
				width[k] = w;
		}
	}
	for (int k = 0; k < NCOL; k++) {
		cli_print_padded(heads[k], k == NCOL - 1 ? 0 : width[k] + 2);
	}
	putchar('\n');
	for (size_t i = 0; i < n; i++) {
		char **row = cells + i * NCOL;
		for (int k = 0; k < NCOL; k++)
			cli_print_padded(row[k], k == NCOL - 1 ? 0 : width[k] + 2);
		putchar('\n');
	}
	for (size_t i = 0; i < n * NCOL; i++)
		free(cells[i]);
	free(cells);
	return 0;
}

/* --------------------------------------------------------- approve, deny */

static int egress_decide(struct egress_args *a, rpc_client *c)
{
	bool approve = strcmp(a->verb->name, "approve") == 0;
	json_t *params AB_AUTOJSON =
	    json_pack("{s:s, s:s}", "id", a->id, "decision", approve ? "approve" : "deny");
	if (!params || (a->note && json_object_set_new(params, "note", json_string(a->note))))
		return cli_daemon_error(cmd_of(a->verb->name), "out of memory", CLI_EXIT_DAEMON);
	json_t *r AB_AUTOJSON = NULL;
	int rc = call(a, c, "egress.decide", params, &r);
	if (rc)
		return rc;
	if (!json_is_object(r))
		return cli_malformed(cmd_of(a->verb->name), "not an object");
	char *id AB_AUTOFREE = escaped(a->id, 0);
	printf("%s access request %s\n", approve ? "approved" : "denied", SHOWN(id));
	return 0;
}

/* ------------------------------------------------------------------- log */

/* "RULE (REASON)", "RULE", "REASON" or "-". */
static void print_rule_reason(json_t *body)
{
	const char *rule = json_string_value(json_object_get(body, "rule"));
	const char *reason = json_string_value(json_object_get(body, "reason"));
	char *r AB_AUTOFREE = escaped(rule, COLUMN_MAX);
	char *why AB_AUTOFREE = escaped(reason, TEXT_SHORT);
	if (rule && reason)
		printf("%s (%s)", SHOWN(r), SHOWN(why));
	else if (rule || reason)
		fputs(SHOWN(rule ? r : why), stdout);
	else
		putchar('-');
}

/* " [inspection block: aws_access_key_id]", or " [inspection logged: email]"
 * for findings the policy only records; nothing for a clean pass. */
static void print_inspection(json_t *body)
{
	json_t *insp = json_object_get(body, "inspection");
	const char *verdict = json_string_value(json_object_get(insp, "verdict"));
	if (!verdict ||
	    (strcmp(verdict, "pass") == 0 && !json_array_size(json_object_get(insp, "kinds"))))
		return;
	char *v AB_AUTOFREE = escaped(strcmp(verdict, "pass") == 0 ? "logged" : verdict, COLUMN_MAX);
	printf(" [inspection %s", SHOWN(v));
	json_t *kinds = json_object_get(insp, "kinds");
	size_t i;
	json_t *k;
	json_array_foreach(kinds, i, k)
	{
		char *kind AB_AUTOFREE = escaped(json_string_value(k), COLUMN_MAX);
		printf("%s%s", i ? ", " : ": ", SHOWN(kind));
	}
	putchar(']');
}

/* One event: an audit event ({ts, kind, session, body: {...}}) or the
 * fields of a request on their own. */
static void print_log_event(json_t *e)
{
	json_t *body = json_object_get(e, "body");
	if (!json_is_object(body))
		body = e;
	const char *kind = json_string_value(json_object_get(e, "kind"));
	if (!kind && json_object_get(body, "decision") && json_object_get(body, "host"))
		kind = "egress.request";
	json_t *ts = json_object_get(e, "ts");
	if (!ts)
		ts = json_object_get(body, "ts");
	if (!ts)
		ts = json_object_get(e, "time");
	const char *sandbox = json_string_value(json_object_get(body, "sandbox"));
	if (!sandbox)
		sandbox = json_string_value(json_object_get(e, "session"));

	char when[48];
	format_time(ts, when, sizeof(when));
	char *sb AB_AUTOFREE = escaped(sandbox ? sandbox : "-", COLUMN_MAX);
	printf("%s ", when);
	cli_print_padded(sb, 19);
	putchar(' ');

	if (!kind || strcmp(kind, "egress.request") != 0) {
		char *k AB_AUTOFREE = escaped(kind ? kind : "?", COLUMN_MAX);
		char *text AB_AUTOFREE =
		    json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
		char *shown AB_AUTOFREE = escaped(text, TEXT_SHORT);
		printf("%s %s\n", SHOWN(k), SHOWN(shown));
		return;
	}
	char *decision AB_AUTOFREE = escaped(str_or(json_object_get(body, "decision"), "?"), 10);
	char *method AB_AUTOFREE = escaped(str_or(json_object_get(body, "method"), "-"), 16);
	char *host AB_AUTOFREE = escaped(str_or(json_object_get(body, "host"), "?"), HOST_MAX);
	char *path AB_AUTOFREE = escaped(str_or(json_object_get(body, "path"), ""), TEXT_SHORT);
	cli_print_padded(decision, 6);
	putchar(' ');
	cli_print_padded(method, 7);
	putchar(' ');
	json_t *port = json_object_get(body, "port");
	if (json_is_integer(port))
		printf("%s:%lld", SHOWN(host), (long long)json_integer_value(port));
	else
		fputs(SHOWN(host), stdout);
	printf(" %s ", path && *path ? path : "-");
	json_t *status = json_object_get(body, "status");
	if (json_is_integer(status))
		printf("%lld ", (long long)json_integer_value(status));
	else
		fputs("- ", stdout);
	print_rule_reason(body);
	print_inspection(body);
	putchar('\n');
}

static int egress_log(struct egress_args *a, rpc_client *c)
{
	json_t *params AB_AUTOJSON = json_object();
	if (!params ||
	    (a->sandbox && json_object_set_new(params, "sandbox", json_string(a->sandbox))) ||
	    (a->limit && json_object_set_new(params, "limit", json_integer(a->limit))))
		return cli_daemon_error(cmd_of("log"), "out of memory", CLI_EXIT_DAEMON);
	json_t *r AB_AUTOJSON = NULL;
	int rc = call(a, c, "egress.log", params, &r);
	if (rc)
		return rc;
	json_t *events = json_object_get(r, "events");
	if (!json_is_array(events))
		return cli_malformed(cmd_of("log"), "no \"events\" list");
	if (a->json) {
		cli_print_json(r);
		return 0;
	}
	if (json_array_size(events) == 0) {
		printf("no egress events%s%s\n", a->sandbox ? " for " : "",
		       a->sandbox ? a->sandbox : "");
		return 0;
	}
	size_t i;
	json_t *e;
	json_array_foreach(events, i, e)
	{
		if (json_is_object(e))
			print_log_event(e);
	}
	return 0;
}

/* ----------------------------------------------------- status, reload */

static bool is_scalar(json_t *v)
{
	return !json_is_object(v) && !json_is_array(v);
}

static void print_scalar(json_t *v)
{
	if (json_is_string(v)) {
		cli_term_puts(stdout, json_string_value(v));
	} else if (json_is_null(v)) {
		putchar('-');
	} else {
		char *text AB_AUTOFREE = json_dumps(v, JSON_ENCODE_ANY);
		fputs(text ? text : "?", stdout);
	}
}

/* Prints an answer whose shape the daemon decides as an indented outline:
 * "key: value", lists of plain values on one line, a list of objects (rules)
 * one compact JSON object per line. */
static void print_outline(json_t *obj, int indent)
{
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v)
	{
		printf("%*s", indent, "");
		cli_term_puts(stdout, key);
		putchar(':');
		if (is_scalar(v)) {
			putchar(' ');
			print_scalar(v);
			putchar('\n');
		} else if (json_is_object(v)) {
			if (json_object_size(v) == 0) {
				puts(" -");
				continue;
			}
			putchar('\n');
			print_outline(v, indent + 2);
		} else if (json_array_size(v) == 0) {
			puts(" (none)");
		} else {
			bool plain = true;
			size_t i;
			json_t *x;
			json_array_foreach(v, i, x) plain &= is_scalar(x);
			if (plain) {
				json_array_foreach(v, i, x)
				{
					fputs(i ? ", " : " ", stdout);
					print_scalar(x);
				}
				putchar('\n');
				continue;
			}
			putchar('\n');
			json_array_foreach(v, i, x)
			{
				char *text AB_AUTOFREE = json_dumps(
				    x, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_ENCODE_ANY);
				printf("%*s- %s\n", indent + 2, "", text ? text : "?");
			}
		}
	}
}

static int egress_status(struct egress_args *a, rpc_client *c)
{
	json_t *params AB_AUTOJSON = json_object();
	if (!params ||
	    (a->sandbox && json_object_set_new(params, "sandbox", json_string(a->sandbox))))
		return cli_daemon_error(cmd_of("status"), "out of memory", CLI_EXIT_DAEMON);
	json_t *r AB_AUTOJSON = NULL;
	int rc = call(a, c, "egress.status", params, &r);
	if (rc)
		return rc;
	if (!json_is_object(r))
		return cli_malformed(cmd_of("status"), "not an object");
	if (a->json)
		cli_print_json(r);
	else
		print_outline(r, 0);
	return 0;
}

static int egress_reload(struct egress_args *a, rpc_client *c)
{
	json_t *r AB_AUTOJSON = NULL;
	int rc = call(a, c, "egress.reload", NULL, &r);
	if (rc)
		return rc;
	puts("reloaded the egress policy");
	if (json_is_object(r))
		print_outline(r, 2);
	return 0;
}

/* ------------------------------------------------------------- dispatch */

static const struct egress_verb verbs[] = {
    {"pending", help_pending, TAKES_JSON, egress_pending},
    {"approve", help_approve, TAKES_ID | TAKES_NOTE, egress_decide},
    {"deny", help_deny, TAKES_ID | TAKES_NOTE, egress_decide},
    {"log", help_log, TAKES_SANDBOX | TAKES_LIMIT | TAKES_JSON, egress_log},
    {"status", help_status, TAKES_SANDBOX | TAKES_JSON, egress_status},
    {"reload", help_reload, 0, egress_reload},
};
#define N_VERBS (sizeof(verbs) / sizeof(verbs[0]))

int cmd_egress(int argc, char **argv)
{
	if (argc < 2) {
		fputs(cli_egress_help, stderr);
		return CLI_EXIT_USAGE;
	}
	const char *sub = argv[1];
	if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
		fputs(cli_egress_help, stdout);
		return 0;
	}
	const struct egress_verb *verb = NULL;
	for (size_t i = 0; i < N_VERBS; i++)
		if (strcmp(sub, verbs[i].name) == 0)
			verb = &verbs[i];
	if (!verb) {
		fprintf(stderr, "agentbox egress: unknown subcommand '");
		cli_term_puts(stderr, sub);
		fputs("' (pending, approve, deny, log, status or reload). "
		      "See 'agentbox egress --help'.\n",
		      stderr);
		return CLI_EXIT_USAGE;
	}
	/* `agentbox egress approve --help` shows that subcommand's help,
	 * whatever else is on the line. */
	if (cli_wants_help(argc - 1, argv + 1)) {
		fputs(verb->help, stdout);
		return 0;
	}
	struct egress_args args = {.verb = verb};
	int rc = parse_args(argc - 1, argv + 1, &args);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	rpc_client *c = NULL;
	ab_error err = {0};
	if (rpc_client_connect(args.socket, &c, &err) < 0)
		return cli_daemon_error(cmd_of(verb->name), err.msg, CLI_EXIT_DAEMON);
	rc = verb->fn(&args, c);
	rpc_client_close(c);
	return rc;
}

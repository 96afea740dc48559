/* audit.c - `agentbox audit`: verify, read and export the tamper-evident
 * audit log that agentboxd writes (docs/audit.md).
 *
 * Every subcommand opens the database read-only, so it can run while the
 * daemon appends (WAL readers never block the writer). */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "audit.h"
#include "internal.h"
#include "cli.h"

#define TAIL_POLL_NS 200000000L
#define TAIL_MAX 100000
#define BODY_SHORT 80

const char cli_audit_help[] =
    "Usage: agentbox audit verify [--db PATH | --file EXPORT.jsonl] [--pubkey HEX|FILE]\n"
    "                             [--checkpoints FILE]\n"
    "       agentbox audit tail [-n N] [-f] [--db PATH]\n"
    "       agentbox audit query [--session ID] [--kind K] [--since T] [--until T]\n"
    "                            [--json] [--db PATH]\n"
    "       agentbox audit export --jsonl [--db PATH]\n"
    "\n"
    "Reads the tamper-evident audit log of agentboxd: one row per action, each\n"
    "hash-chained to the one before, with checkpoints signed by an Ed25519 key\n"
    "(see docs/audit.md).\n"
    "\n"
    "  verify   recomputes the whole hash chain and checks every checkpoint\n"
    "           signature. Prints \"OK: N events, M checkpoints verified\" and exits 0,\n"
    "           or \"FAILED at seq N: why\" (the first bad sequence number) and\n"
    "           exits 1.\n"
    "  tail     prints the last N events (default 10), one line each; -f keeps\n"
    "           printing new events as they are committed.\n"
    "  query    prints the events that match every filter given.\n"
    "  export   writes the whole log, with hashes and checkpoints, as JSON Lines\n"
    "           (format \"agentbox-audit/1\") to stdout; `audit verify --file`\n"
    "           checks such a file on any machine.\n"
    "\n"
    "Options:\n"
    "      --db PATH           the log (default: $AGENTBOX_HOME/audit.db, else\n"
    "                          /var/lib/agentbox/audit.db as root, else\n"
    "                          $XDG_STATE_HOME/agentbox or ~/.local/state/agentbox)\n"
    "      --file EXPORT       verify an export instead of a database\n"
    "      --pubkey HEX|FILE   the Ed25519 public key the checkpoints must be signed\n"
    "                          with: 64 hex digits, or a file holding them or a PEM\n"
    "                          public key (default: the key the log names, which an\n"
    "                          attacker who rewrote the log could have replaced)\n"
    "      --checkpoints FILE  checkpoints kept off the log (agentboxd\n"
    "                          --audit-checkpoints): each must match the log, which\n"
    "                          catches a truncated or rewritten log\n"
    "  -n, --lines N           how many events tail prints first (default 10)\n"
    "  -f, --follow            tail: poll for new events every 200 ms until killed\n"
    "      --session ID        only events of this sandbox\n"
    "      --kind K            only events of this kind (e.g. run, sandbox.create)\n"
    "      --since T           only events at or after T: nanoseconds since 1970 or\n"
    "                          ISO-8601 UTC such as 2026-11-26T05:00:00Z\n"
    "      --until T           only events at or before T\n"
    "      --json              query: one JSON object per event (the export form)\n"
    "      --jsonl             export: JSON Lines (the only format)\n"
    "  -h, --help              show this help\n"
    "\n"
    "Exit status: 0 ok, 1 verification failed, 2 usage or I/O error.\n"
    "\n"
    "Examples:\n"
    "  agentbox audit verify\n"
    "  agentbox audit verify --pubkey audit.pub --checkpoints /mnt/offsite/cp.jsonl\n"
    "  agentbox audit tail -f\n"
    "  agentbox audit query --session sb-3f2a --kind run --since 2026-11-26T05:00:00Z\n"
    "  agentbox audit export --jsonl > audit.jsonl\n"
    "  agentbox audit verify --file audit.jsonl --pubkey 3b6a27bc...\n";

enum {
	OPT_DB = 256,
	OPT_FILE,
	OPT_PUBKEY,
	OPT_CHECKPOINTS,
	OPT_SESSION,
	OPT_KIND,
	OPT_SINCE,
	OPT_UNTIL,
	OPT_JSON,
	OPT_JSONL,
};

static const struct option audit_options[] = {
    {"db", required_argument, NULL, OPT_DB},
    {"file", required_argument, NULL, OPT_FILE},
    {"pubkey", required_argument, NULL, OPT_PUBKEY},
    {"checkpoints", required_argument, NULL, OPT_CHECKPOINTS},
    {"lines", required_argument, NULL, 'n'},
    {"follow", no_argument, NULL, 'f'},
    {"session", required_argument, NULL, OPT_SESSION},
    {"kind", required_argument, NULL, OPT_KIND},
    {"since", required_argument, NULL, OPT_SINCE},
    {"until", required_argument, NULL, OPT_UNTIL},
    {"json", no_argument, NULL, OPT_JSON},
    {"jsonl", no_argument, NULL, OPT_JSONL},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

struct audit_args {
	const char *sub;
	const char *db, *file, *pubkey, *checkpoints;
	long lines;
	bool follow, json, jsonl;
	ab_audit_filter filter;
	char db_buf[4096];
	char pub_buf[65];
};

static int usage_error(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const char *sub, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "agentbox audit%s%s: ", sub ? " " : "", sub ? sub : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(". See 'agentbox audit --help'.\n", stderr);
	return CLI_EXIT_USAGE;
}

/* Errors and verification reports can quote the log or an export file,
 * which whoever wrote them controls: they are escaped for the terminal. */
static int io_error(const char *sub, const ab_error *err)
{
	fprintf(stderr, "agentbox audit %s: ", sub);
	cli_term_puts(stderr, err->msg);
	fputc('\n', stderr);
	return CLI_EXIT_USAGE;
}

static int default_db(char *out, size_t len, ab_error *err)
{
	char dir[4096];
	int r = cli_state_dir(dir, sizeof(dir), err);
	if (r < 0)
		return r;
	int n = snprintf(out, len, "%s/audit.db", dir);
	if (n < 0 || (size_t)n >= len)
		return ab_error_set(err, -ENAMETOOLONG, "state directory path too long");
	return 0;
}

/* Parses T: nanoseconds since 1970, or YYYY-MM-DDTHH:MM:SS[.fraction]Z. */
bool cli_parse_time(const char *s, int64_t *out)
{
	if (!*s)
		return false;
	if (strspn(s, "0123456789") == strlen(s)) {
		if (strlen(s) > 19)
			return false;
		char *end;
		errno = 0;
		long long v = strtoll(s, &end, 10);
		if (errno || *end)
			return false;
		*out = v;
		return true;
	}
	struct tm tm = {0};
	const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return false;
	int64_t frac = 0;
	if (*p == '.') {
		int digits = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			if (digits < 9)
				frac = frac * 10 + (*p - '0');
		if (digits == 0)
			return false;
		for (; digits < 9; digits++)
			frac *= 10;
	}
	if (strcmp(p, "Z") != 0)
		return false;
	time_t t = timegm(&tm);
	if (t == (time_t)-1 || t < 0 || t > 9000000000LL)
		return false;
	*out = (int64_t)t * 1000000000 + frac;
	return true;
}

static bool all_hex(const char *s, size_t n)
{
	return strlen(s) == n && strspn(s, "0123456789abcdefABCDEF") == n;
}

/* --pubkey: 64 hex digits, or a file holding them or a PEM public key. */
static int load_pubkey(const char *arg, char out[65], ab_error *err)
{
	if (all_hex(arg, 64)) {
		memcpy(out, arg, 65);
		return 0;
	}
	FILE *f = fopen(arg, "re");
	if (!f)
		return ab_error_errno(err, -errno, "--pubkey %s: not 64 hex digits, and", arg);
	char buf[8192];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *s = buf + strspn(buf, " \t\r\n");
	size_t len = strcspn(s, " \t\r\n");
	if (len == 64) {
		s[len] = '\0';
		if (all_hex(s, 64)) {
			memcpy(out, s, 65);
			return 0;
		}
	}
	BIO *bio = BIO_new_mem_buf(buf, (int)n);
	EVP_PKEY *key = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	unsigned char raw[32];
	size_t rawlen = sizeof(raw);
	bool ok = key && EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519 &&
		  EVP_PKEY_get_raw_public_key(key, raw, &rawlen) == 1 && rawlen == 32;
	EVP_PKEY_free(key);
	if (!ok)
		return ab_error_set(
		    err, -EINVAL, "--pubkey %s: neither 64 hex digits nor a PEM Ed25519 public key",
		    arg);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
	return 0;
}

static int parse_args(int argc, char **argv, struct audit_args *a)
{
	ab_error err = {0};
	a->lines = 10;
	optind = 1;
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, ":n:fh", audit_options, NULL)) != -1) {
		switch (opt) {
		case OPT_DB:
			a->db = optarg;
			break;
		case OPT_FILE:
			a->file = optarg;
			break;
		case OPT_PUBKEY:
			if (load_pubkey(optarg, a->pub_buf, &err) < 0)
				return usage_error(a->sub, "%s", err.msg);
			a->pubkey = a->pub_buf;
			break;
		case OPT_CHECKPOINTS:
			a->checkpoints = optarg;
			break;
		case 'n': {
			char *end;
			errno = 0;
			long v = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || v < 0 || v > TAIL_MAX)
				return usage_error(a->sub, "-n %s: expected 0 to 100000 events",
						   optarg);
			a->lines = v;
			break;
		}
		case 'f':
			a->follow = true;
			break;
		case OPT_SESSION:
			a->filter.session = optarg;
			break;
		case OPT_KIND: {
			/* An unknown kind would match nothing and look like an empty
			 * log: refuse it and say which kinds exist. */
			char kinds[512] = "";
			bool known = false;
			for (size_t i = 0; ab_audit_kinds[i]; i++) {
				known |= strcmp(optarg, ab_audit_kinds[i]) == 0;
				size_t used = strlen(kinds);
				snprintf(kinds + used, sizeof(kinds) - used, "%s%s", i ? ", " : "",
					 ab_audit_kinds[i]);
			}
			if (!known)
				return usage_error(a->sub,
						   "--kind %s: unknown event kind (kinds: %s)",
						   optarg, kinds);
			a->filter.kind = optarg;
			break;
		}
		case OPT_SINCE:
		case OPT_UNTIL: {
			int64_t t;
			if (!cli_parse_time(optarg, &t))
				return usage_error(a->sub,
						   "bad time '%s': expected nanoseconds since 1970 "
						   "or e.g. 2026-11-26T05:00:00Z",
						   optarg);
			if (opt == OPT_SINCE)
				a->filter.since_ns = t;
			else
				a->filter.until_ns = t;
			break;
		}
		case OPT_JSON:
			a->json = true;
			break;
		case OPT_JSONL:
			a->jsonl = true;
			break;
		case 'h':
			fputs(cli_audit_help, stdout);
			return -1;
		case ':':
			return usage_error(a->sub, "missing value for %s", argv[optind - 1]);
		default:
			return usage_error(a->sub, "unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error(a->sub, "unexpected argument '%s'", argv[optind]);
	if (!a->db && !a->file) {
		if (default_db(a->db_buf, sizeof(a->db_buf), &err) < 0)
			return usage_error(a->sub, "%s (or pass --db)", err.msg);
		a->db = a->db_buf;
	}
	return 0;
}

/* ---------------------------------------------------------------- verify */

static int audit_verify(struct audit_args *a)
{
	if (a->db && a->file)
		return usage_error("verify", "give --db or --file, not both");
	const char *db = a->file ? NULL : a->db;
	ab_audit_report rep;
	ab_error err = {0};
	if (ab_audit_verify(db, a->file, a->pubkey, a->checkpoints, &rep, &err) < 0)
		return io_error("verify", &err);
	if (!rep.ok) {
		char prefix[40];
		snprintf(prefix, sizeof(prefix), "seq %lld: ", (long long)rep.bad_seq);
		const char *why = rep.why;
		/* The report names the sequence number already: say it once. */
		if (strncmp(why, prefix, strlen(prefix)) == 0)
			why += strlen(prefix);
		if (rep.bad_seq > 0)
			printf("FAILED at seq %lld: ", (long long)rep.bad_seq);
		else
			fputs("FAILED: ", stdout);
		cli_term_puts(stdout, rep.bad_seq > 0 ? why : rep.why);
		putchar('\n');
		return 1;
	}
	printf("OK: %lld events, %lld checkpoints verified\n", (long long)rep.events,
	       (long long)rep.checkpoints);
	return 0;
}

/* ------------------------------------------------------------ tail, query */

static void format_time(int64_t ns, char *out, size_t len)
{
	time_t s = (time_t)(ns / 1000000000);
	struct tm tm;
	if (!gmtime_r(&s, &tm)) {
		snprintf(out, len, "%lld", (long long)ns);
		return;
	}
	char date[32];
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, len, "%s.%03lldZ", date, (long long)(ns % 1000000000 / 1000000));
}

/* A column of the one-line form, padded to width. The daemon writes these
 * fields itself, but the log is a file: whatever is in it is escaped. */
static void print_field(const char *s, int width)
{
	bool plain = true;
	for (const char *p = s; *p && plain; p++)
		plain = *p >= 0x20 && *p < 0x7f;
	if (plain)
		printf("%-*s ", width, s);
	else {
		cli_term_puts(stdout, s);
		putchar(' ');
	}
}

static void print_event(json_t *e, bool as_json)
{
	if (as_json) {
		char *text AB_AUTOFREE =
		    json_dumps(e, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENSURE_ASCII);
		printf("%s\n", text ? text : "null");
		return;
	}
	char when[48], step[24] = "-";
	format_time(json_integer_value(json_object_get(e, "ts")), when, sizeof(when));
	json_t *jstep = json_object_get(e, "step");
	if (json_is_integer(jstep))
		snprintf(step, sizeof(step), "%lld", (long long)json_integer_value(jstep));
	const char *kind = json_string_value(json_object_get(e, "kind"));
	const char *session = json_string_value(json_object_get(e, "session"));
	const char *actor = json_string_value(json_object_get(e, "actor"));
	/* The body holds what clients and sandboxes sent (code, messages):
	 * JSON escapes C0 controls, and the rest a terminal would act on
	 * (DEL, C1 controls, bidirectional overrides) is escaped here. */
	char *body AB_AUTOFREE =
	    json_dumps(json_object_get(e, "body"), JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);
	printf("%6lld %s ", (long long)json_integer_value(json_object_get(e, "seq")), when);
	print_field(kind ? kind : "?", 16);
	print_field(session ? session : "-", 12);
	printf("%4s ", step);
	print_field(actor ? actor : "?", 14);
	size_t len = body ? strlen(body) : 0;
	if (cli_term_write(stdout, body, len, len > BODY_SHORT ? BODY_SHORT - 3 : 0))
		fputs("...", stdout);
	putchar('\n');
}

struct print_ctx {
	bool json;
	int64_t last_seq;
};

static int print_row(json_t *e, void *ctx)
{
	struct print_ctx *p = ctx;
	print_event(e, p->json);
	p->last_seq = json_integer_value(json_object_get(e, "seq"));
	return 0;
}

/* Keeps the last n events seen. */
struct ring {
	json_t **items;
	long n, count;
	int64_t last_seq;
};

static int keep_row(json_t *e, void *ctx)
{
	struct ring *r = ctx;
	r->last_seq = json_integer_value(json_object_get(e, "seq"));
	if (r->n == 0)
		return 0;
	long i = r->count % r->n;
	json_decref(r->items[i]);
	r->items[i] = json_incref(e);
	r->count++;
	return 0;
}

static int audit_tail(struct audit_args *a)
{
	ab_error err = {0};
	struct ring r = {.n = a->lines};
	r.items = calloc((size_t)(a->lines ? a->lines : 1), sizeof(*r.items));
	if (!r.items) {
		fputs("agentbox audit tail: out of memory\n", stderr);
		return CLI_EXIT_USAGE;
	}
	int rc = ab_audit_query(a->db, NULL, keep_row, &r, &err);
	if (rc == 0) {
		long first = r.count > r.n ? r.count - r.n : 0;
		for (long i = first; i < r.count; i++)
			print_event(r.items[i % r.n], false);
	}
	for (long i = 0; i < r.n; i++)
		json_decref(r.items[i]);
	free(r.items);
	if (rc < 0)
		return io_error("tail", &err);
	fflush(stdout);
	if (!a->follow)
		return 0;
	struct print_ctx p = {.json = false, .last_seq = r.last_seq};
	for (;;) {
		struct timespec ts = {0, TAIL_POLL_NS};
		nanosleep(&ts, NULL);
		ab_audit_filter f = {.after_seq = p.last_seq};
		if (ab_audit_query(a->db, &f, print_row, &p, &err) < 0)
			return io_error("tail", &err);
		fflush(stdout);
	}
}

static int audit_query(struct audit_args *a)
{
	ab_error err = {0};
	struct print_ctx p = {.json = a->json};
	if (ab_audit_query(a->db, &a->filter, print_row, &p, &err) < 0)
		return io_error("query", &err);
	return 0;
}

static int audit_export(struct audit_args *a)
{
	if (!a->jsonl)
		return usage_error("export", "give the format: --jsonl");
	ab_error err = {0};
	if (ab_audit_export(a->db, stdout, &err) < 0)
		return io_error("export", &err);
	return 0;
}

int cmd_audit(int argc, char **argv)
{
	if (argc < 2) {
		fputs(cli_audit_help, stderr);
		return CLI_EXIT_USAGE;
	}
	static const struct {
		const char *name;
		int (*fn)(struct audit_args *);
	} subs[] = {
	    {"verify", audit_verify},
	    {"tail", audit_tail},
	    {"query", audit_query},
	    {"export", audit_export},
	};
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (strcmp(argv[1], subs[i].name) != 0)
			continue;
		struct audit_args args = {.sub = subs[i].name};
		int r = parse_args(argc - 1, argv + 1, &args);
		if (r != 0)
			return r < 0 ? 0 : r;
		return subs[i].fn(&args);
	}
	return usage_error(NULL, "unknown subcommand '%s' (verify, tail, query or export)",
			   argv[1]);
}

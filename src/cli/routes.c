/* routes.c - `agentbox routes`: show or clear what the router learned
 * ($AGENTBOX_HOME/routes.json, docs/router.md "Learned routes").
 *
 * Works on the file directly, without a daemon: a save merges with what a
 * running daemon saved meanwhile, and the daemon reloads the file when it
 * sees that it changed. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "cli.h"

#define DIGEST_HEX 64
#define DIGEST_SHOWN 12
/* A cell may be named by a prefix of its digest, as the table shows it. */
#define DIGEST_PREFIX_MIN 8
#define KEY_COLUMN_MAX 32

const char cli_routes_help[] =
    "Usage: agentbox routes [--home DIR] [--json]\n"
    "       agentbox routes clear [--home DIR] [all | module NAME | cell SHA256]\n"
    "\n"
    "When a cell the router sent to the nano tier fails because of the tier (a\n"
    "module nano does not have, a system call its jail refuses, its memory cap),\n"
    "agentboxd reruns it in heavy and remembers why in DIR/routes.json, so that the\n"
    "next such cell goes to heavy directly (see docs/router.md, \"Learned routes\").\n"
    "A module entry sends every cell that imports the module to heavy; a cell entry\n"
    "only the same code again (by the SHA-256 of its text).\n"
    "\n"
    "  (none)   lists what was learned: kind, key, hits, last time and reason\n"
    "  clear    forgets everything (no argument, or all), one module, or one cell\n"
    "           (its digest, or a unique prefix of at least 8 hex digits such as\n"
    "           the list shows); a running agentboxd reloads the file\n"
    "\n"
    "Options:\n"
    "      --home DIR   the state directory that holds routes.json (default:\n"
    "                   $AGENTBOX_HOME, else /var/lib/agentbox as root, else\n"
    "                   $XDG_STATE_HOME/agentbox or ~/.local/state/agentbox)\n"
    "      --json       list as one JSON object, in the file's own format\n"
    "                   (\"agentbox-routes/2\")\n"
    "  -h, --help       show this help\n"
    "\n"
    "Exit status: 0 ok, 1 the module or cell to clear was not learned, 2 usage\n"
    "error or an unreadable routes.json.\n"
    "\n"
    "Examples:\n"
    "  agentbox routes\n"
    "  agentbox routes --json\n"
    "  agentbox routes clear module scipy\n"
    "  agentbox routes clear cell 3f2a9c0b1d2e\n"
    "  agentbox routes clear\n"
    "  agentbox routes --home /var/lib/agentbox\n";

enum { OPT_HOME = 256, OPT_JSON };

static const struct option routes_options[] = {
    {"home", required_argument, NULL, OPT_HOME},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

struct routes_args {
	const char *sub; /* NULL (list) or "clear" */
	const char *home;
	bool json;
	char *const *pos; /* arguments after the options */
	int npos;
	const char *kind, *key; /* clear: what to forget (NULL: everything) */
	char path[4096];
};

static int usage_error(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const char *sub, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "agentbox routes%s%s: ", sub ? " " : "", sub ? sub : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(". See 'agentbox routes --help'.\n", stderr);
	return CLI_EXIT_USAGE;
}

static int store_error(const ab_error *err)
{
	/* The message may quote the file, which anyone with write access to
	 * it controls. */
	fputs("agentbox routes: ", stderr);
	cli_term_puts(stderr, err->msg);
	fputc('\n', stderr);
	if (err->code == -EINVAL || err->code == -EFBIG)
		fputs("agentbox routes: the file only holds what the router learned: "
		      "fix it, or remove it to start afresh\n",
		      stderr);
	return CLI_EXIT_USAGE;
}

static int parse_args(int argc, char **argv, struct routes_args *a)
{
	optind = 1;
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, ":h", routes_options, NULL)) != -1) {
		switch (opt) {
		case OPT_HOME:
			if (!*optarg)
				return usage_error(a->sub, "--home: empty directory name");
			a->home = optarg;
			break;
		case OPT_JSON:
			a->json = true;
			break;
		case 'h':
			fputs(cli_routes_help, stdout);
			return -1;
		case ':':
			return usage_error(a->sub, "missing value for %s", argv[optind - 1]);
		default:
			return usage_error(a->sub, "unknown option %s", argv[optind - 1]);
		}
	}
	a->pos = argv + optind;
	a->npos = argc - optind;
	/* The subcommand may come after options (getopt moved it here). */
	if (a->npos > 0 && strcmp(a->pos[0], "clear") == 0) {
		a->sub = "clear";
		a->pos++;
		a->npos--;
	}
	ab_error err = {0};
	char dir[4096];
	const char *home = a->home;
	if (!home) {
		if (cli_state_dir(dir, sizeof(dir), &err) < 0)
			return usage_error(a->sub, "%s (or pass --home)", err.msg);
		home = dir;
	}
	int n = snprintf(a->path, sizeof(a->path), "%s/routes.json", home);
	if (n < 0 || (size_t)n >= sizeof(a->path))
		return usage_error(a->sub, "state directory path too long");
	return 0;
}

/* ------------------------------------------------------------------ list */

/* Terminal columns of UTF-8 text, counting one per character. */
static size_t columns(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

/* The key as the table shows it: a cell digest cut to 12 hex digits and "…". */
static void shown_key(const char *kind, const char *key, char *out, size_t len)
{
	if (strcmp(kind, "cell") == 0 && strlen(key) > DIGEST_SHOWN)
		snprintf(out, len, "%.*s\u2026", DIGEST_SHOWN, key);
	else
		snprintf(out, len, "%s", key);
}

static void print_row(const char *kind, const char *key, json_t *e, size_t key_width)
{
	char shown[160];
	shown_key(kind, key, shown, sizeof(shown));
	size_t w = columns(shown);
	/* The key and the reason (an exception message) came from sandboxes,
	 * and the file may have been edited: both are escaped for the
	 * terminal. */
	printf("%-6s  ", kind);
	cli_term_puts(stdout, shown);
	printf("%*s  %6lld  %-20s  ", (int)(w < key_width ? key_width - w : 0), "",
	       (long long)json_integer_value(json_object_get(e, "hits")),
	       json_string_value(json_object_get(e, "last")));
	cli_term_puts(stdout, json_string_value(json_object_get(e, "reason")));
	putchar('\n');
}

static int routes_list(struct routes_args *a, ab_routes *r)
{
	json_t *doc AB_AUTOJSON = ab_routes_to_json(r);
	if (!doc) {
		fputs("agentbox routes: out of memory\n", stderr);
		return CLI_EXIT_USAGE;
	}
	if (a->json) {
		char *text AB_AUTOFREE = json_dumps(doc, JSON_INDENT(2));
		printf("%s\n", text ? text : "null");
		return 0;
	}
	static const char *const kinds[][2] = {{"module", "modules"}, {"cell", "cells"}};
	size_t key_width = 3, count = 0;
	for (size_t k = 0; k < 2; k++) {
		const char *key;
		json_t *e;
		json_object_foreach(json_object_get(doc, kinds[k][1]), key, e)
		{
			char shown[160];
			shown_key(kinds[k][0], key, shown, sizeof(shown));
			size_t w = columns(shown);
			if (w > key_width && w <= KEY_COLUMN_MAX)
				key_width = w;
			count++;
		}
	}
	if (count == 0) {
		printf("no learned routes (%s)\n", a->path);
		return 0;
	}
	printf("%-6s  %-*s  %6s  %-20s  %s\n", "KIND", (int)key_width, "KEY", "HITS", "LAST",
	       "REASON");
	for (size_t k = 0; k < 2; k++) {
		const char *key;
		json_t *e;
		json_object_foreach(json_object_get(doc, kinds[k][1]), key, e)
		{
			print_row(kinds[k][0], key, e, key_width);
		}
	}
	return 0;
}

/* ----------------------------------------------------------------- clear */

/* The digest of the one learned cell that arg (hex checked by clear_args,
 * either case) names, whole or by a prefix; when none does, arg lowercased.
 * Returns 0, or the exit status after printing why. */
static int find_cell(ab_routes *r, const char *arg, char out[DIGEST_HEX + 1])
{
	size_t n = strlen(arg);
	char want[DIGEST_HEX + 1];
	for (size_t i = 0; i <= n; i++)
		want[i] = (char)(arg[i] >= 'A' && arg[i] <= 'F' ? arg[i] + 32 : arg[i]);
	json_t *doc AB_AUTOJSON = ab_routes_to_json(r);
	const char *key;
	json_t *e;
	int matches = 0;
	json_object_foreach(json_object_get(doc, "cells"), key, e)
	{
		if (strncmp(key, want, n) != 0)
			continue;
		if (++matches == 1)
			snprintf(out, DIGEST_HEX + 1, "%s", key);
	}
	if (matches > 1)
		return usage_error("clear", "cell '%s' is ambiguous: %d learned cells start so",
				   want, matches);
	if (matches == 0)
		snprintf(out, DIGEST_HEX + 1, "%s", want);
	return 0;
}

/* What clear forgets, from the arguments: nothing, "all", "module NAME" or
 * "cell SHA256". */
static int clear_args(struct routes_args *a)
{
	if (a->json)
		return usage_error("clear", "--json is for the list only");
	if (a->npos == 0 || (a->npos == 1 && strcmp(a->pos[0], "all") == 0))
		return 0;
	if (strcmp(a->pos[0], "module") != 0 && strcmp(a->pos[0], "cell") != 0) {
		if (a->npos == 1)
			return usage_error(
			    "clear", "'%s': expected all, module NAME or cell SHA256", a->pos[0]);
		return usage_error("clear", "unexpected argument '%s'", a->pos[1]);
	}
	a->kind = a->pos[0];
	bool cell = strcmp(a->kind, "cell") == 0;
	if (a->npos < 2)
		return usage_error("clear", "%s: missing the %s", a->kind,
				   cell ? "cell's SHA-256" : "module name");
	if (a->npos > 2)
		return usage_error("clear", "unexpected argument '%s'", a->pos[2]);
	a->key = a->pos[1];
	size_t n = strlen(a->key);
	if (cell && (n < DIGEST_PREFIX_MIN || n > DIGEST_HEX ||
		     strspn(a->key, "0123456789abcdefABCDEF") != n))
		return usage_error("clear",
				   "cell '%.80s': expected a SHA-256 (64 hex digits) or a prefix "
				   "of at least %d",
				   a->key, DIGEST_PREFIX_MIN);
	return 0;
}

static int routes_clear(struct routes_args *a, ab_routes *r)
{
	const char *kind = a->kind, *key = a->key;
	char digest[DIGEST_HEX + 1];
	if (kind && strcmp(kind, "cell") == 0) {
		int rc = find_cell(r, key, digest);
		if (rc != 0)
			return rc;
		key = digest;
	}

	int removed = ab_routes_forget(r, kind, key);
	if (removed < 0) {
		fprintf(stderr, "agentbox routes clear: %s\n", strerror(-removed));
		return CLI_EXIT_USAGE;
	}
	if (removed == 0 && key) {
		fprintf(stderr, "agentbox routes clear: no learned %s '%s' (%s)\n", kind, key,
			a->path);
		return 1;
	}
	if (removed == 0) {
		printf("nothing to clear: no learned routes (%s)\n", a->path);
		return 0;
	}
	ab_error err = {0};
	if (ab_routes_save(r, a->path, &err) < 0)
		return store_error(&err);
	if (key)
		printf("removed 1 learned route (%s %s)\n", kind, key);
	else
		printf("removed %d learned route%s\n", removed, removed == 1 ? "" : "s");
	return 0;
}

int cmd_routes(int argc, char **argv)
{
	struct routes_args args = {.sub =
				       argc >= 2 && strcmp(argv[1], "clear") == 0 ? "clear" : NULL};
	int rc = parse_args(argc, argv, &args);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	if (args.sub)
		rc = clear_args(&args);
	else if (args.npos > 0)
		rc = usage_error(NULL, "unexpected argument '%s' (the subcommand is clear)",
				 args.pos[0]);
	if (rc != 0)
		return rc;
	ab_routes *r = NULL;
	ab_error err = {0};
	if (ab_routes_load(args.path, &r, &err) < 0)
		return store_error(&err);
	rc = args.sub ? routes_clear(&args, r) : routes_list(&args, r);
	ab_routes_free(r);
	return rc;
}

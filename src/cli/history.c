/* history.c - `agentbox history`, `rewind`, `inspect` and `diff`: time
 * travel in a session another process holds (docs/time-travel.md).
 *
 * Each verb is one JSON-RPC call to a shared agentboxd (--socket or
 * $AGENTBOX_SOCKET): the session lives in the daemon that holds it, and a
 * private daemon started for one command would have none. A session belongs
 * to the connection that made it, so the daemon answers this second
 * process only when it is the operator (root or the daemon's own user).
 * Code, reprs, variable and file names, and the daemon's reasons come from
 * the sandbox: everything printed from an answer is escaped for the
 * terminal (cli_term_write). */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "cli.h"
#include "rpc_client.h"

/* A sandbox id is a short token (sb- and 16 hex digits today). */
#define ID_MAX 128
/* How much of a step's code, a repr or a reason one line shows. */
#define CODE_SHOWN 48
#define TEXT_SHOWN 100
/* Branches deeper than this are drawn at this depth (the PARENT column
 * still says where each step comes from). */
#define TREE_DEPTH_MAX 8

#define WHO_MAY                                                                           \
	"Who may: the session's owner, which is the connection that created it (an SDK's\n" \
	"Sandbox, an agent), or the operator: root or the user agentboxd runs as. A\n"       \
	"session belongs to its connection, so this command, a second process, is\n"       \
	"answered only when you are the operator (otherwise: \"no such sandbox\"). A\n"   \
	"daemon's socket admits only root and its own user, so in practice whoever can\n"  \
	"reach the socket may debug every session on it.\n"
#define EXIT_STATUS                                                                      \
	"Exit status: 0 ok, 2 usage error or a request the daemon refused as invalid\n"    \
	"(no such step; for diff, a state without a parked copy), 125 the daemon could\n" \
	"not be reached, does not know the sandbox (or it is not yours) or failed.\n"
#define OPTIONS                                                                        \
	"Options:\n"                                                                   \
	"      --json          the daemon's answer as one JSON object (ASCII)\n"         \
	"      --socket PATH   the daemon's unix socket (default: $AGENTBOX_SOCKET;\n"  \
	"                      unix:///PATH is taken too)\n"                             \
	"  -h, --help          show this help\n"

const char cli_history_help[] =
    "Usage: agentbox history SANDBOX [--json] [--socket PATH]\n"
    "\n"
    "Shows the steps (runs) of a session as a tree: each step, the step whose end\n"
    "it started from (PARENT; 0 is the session's start), its status and duration,\n"
    "what was kept of the state it started in (BEFORE: the interpreter's snapshot,\n"
    "parked, pending, evicted, lost, refused or none, and FILES: how many files\n"
    "the workspace's version holds) and the first line of its code. The current\n"
    "state is the end of the head step, marked *. A rewind leaves the steps after\n"
    "it in the tree as a branch, drawn indented under where it left off.\n"
    "A step whose BEFORE is parked is rewound to or inspected from that copy; any\n"
    "other state is made again by replaying the steps that led to it (slower, and\n"
    "only as faithful as the code is deterministic). diff needs both copies parked.\n"
    "Notes below the table say why a state has no copy.\n"
    "\n" OPTIONS "\n" WHO_MAY "\n" EXIT_STATUS "\n"
    "Examples:\n"
    "  export AGENTBOX_SOCKET=/run/agentbox.sock\n"
    "  agentbox history sb-1f2e3d4c5b6a7980\n"
    "  agentbox history sb-1f2e3d4c5b6a7980 --json\n"
    "\n"
    "See also: agentbox rewind, inspect, diff; docs/time-travel.md.\n";

const char cli_rewind_help[] =
    "Usage: agentbox rewind SANDBOX STEP [--json] [--socket PATH]\n"
    "\n"
    "Puts the session back in the state step STEP started in: its interpreter (every\n"
    "variable, module, the working directory, random state) from that state's\n"
    "snapshot and its workspace from that state's version. Where no snapshot holds\n"
    "that state, a new sandbox replays the steps that led to it and becomes the\n"
    "session; where the replay did not end as the history did, it says so\n"
    "(\"diverged\"). The steps from STEP on stay in the history as a branch; the\n"
    "next run becomes a new step whose parent is STEP's parent. Not restored:\n"
    "processes and threads the code had started (stopped), and open sockets\n"
    "(shared with the snapshot's past; do not reuse them). The session's owner\n"
    "sees the rewind on its next run: tell it. The rewind is recorded in the\n"
    "audit log with you as its actor.\n"
    "\n" OPTIONS "\n" WHO_MAY "\n" EXIT_STATUS "\n"
    "Examples:\n"
    "  agentbox rewind sb-1f2e3d4c5b6a7980 3     # undo step 3 and what followed\n"
    "  agentbox history sb-1f2e3d4c5b6a7980      # see which steps can be rewound to\n";

const char cli_inspect_help[] =
    "Usage: agentbox inspect SANDBOX STEP EXPR [--json] [--socket PATH]\n"
    "\n"
    "Evaluates the Python expression EXPR in a throwaway copy of the state step STEP\n"
    "started in and prints the repr of its value (cut at 64 KiB). Nothing changes\n"
    "in the session or its snapshot, whatever EXPR does. Where no snapshot holds\n"
    "that state, it is made again in a throwaway sandbox by replaying the steps\n"
    "that led to it (stderr says so, and where the replay diverged). An\n"
    "expression that raises prints the exception and exits 1. Put -- before an\n"
    "EXPR that begins with '-'. The inspection, with EXPR, is recorded in the\n"
    "audit log with you as its actor.\n"
    "\n" OPTIONS "\n" WHO_MAY "\n"
    "Exit status: 0 ok, 1 EXPR raised, 2 usage error or a request the daemon\n"
    "refused as invalid (no such step), 125 the daemon could not be reached, does\n"
    "not know the sandbox (or it is not yours) or failed.\n"
    "\n"
    "Examples:\n"
    "  agentbox inspect sb-1f2e3d4c5b6a7980 3 'df.shape'\n"
    "  agentbox inspect sb-1f2e3d4c5b6a7980 3 'sorted(globals())' --json\n"
    "  agentbox inspect sb-1f2e3d4c5b6a7980 2 -- '-x'\n";

const char cli_diff_help[] =
    "Usage: agentbox diff SANDBOX A B [--json] [--socket PATH]\n"
    "\n"
    "Compares the state step A started in with the state step B started in: the\n"
    "variables added (+), removed (-) and changed (~, by a digest of their value,\n"
    "shown with their reprs, cut) and the workspace's files added, removed and\n"
    "changed (by content, mode or link target). Both states must have their\n"
    "snapshot parked; the files are compared only when both versions were kept.\n"
    "To see what step N did, compare N with the step that ran after it.\n"
    "\n" OPTIONS "\n" WHO_MAY "\n" EXIT_STATUS "\n"
    "Examples:\n"
    "  agentbox diff sb-1f2e3d4c5b6a7980 2 3     # what step 2 changed\n"
    "  agentbox diff sb-1f2e3d4c5b6a7980 1 4 --json\n";

struct tt_args;

struct tt_verb {
	const char *name;
	const char *help;
	int npos; /* SANDBOX and the steps (and EXPR) */
	int (*fn)(struct tt_args *a, rpc_client *c);
};

struct tt_args {
	const struct tt_verb *verb;
	const char *socket, *sandbox, *expr;
	int step[2];
	bool json;
};

enum { OPT_JSON = 256, OPT_SOCKET };

static const struct option tt_options[] = {
    {"json", no_argument, NULL, OPT_JSON},
    {"socket", required_argument, NULL, OPT_SOCKET},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};




/* ------------------------------------------------------------- arguments */


static bool parse_step(const char *s, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || s[0] == '+' || s[0] == ' ' || v < 1 || v > INT32_MAX)
		return false;
	*out = (int)v;
	return true;
}

static int parse_args(int argc, char **argv, struct tt_args *a)
{
	const char *verb = a->verb->name;
	optind = 1;
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, ":h", tt_options, NULL)) != -1) {
		switch (opt) {
		case OPT_JSON:
			a->json = true;
			break;
		case OPT_SOCKET:
			if (!*optarg)
				return cli_usage_error(verb, "--socket: empty path");
			a->socket = optarg;
			break;
		case 'h':
			fputs(a->verb->help, stdout);
			return -1;
		case ':':
			return cli_usage_error(verb, "%s needs a value", argv[optind - 1]);
		default:
			return cli_usage_error(verb, "unknown option '%s'", argv[optind - 1]);
		}
	}
	static const char *const names[] = {"SANDBOX", "STEP", "EXPR"};
	static const char *const diff_names[] = {"SANDBOX", "A", "B"};
	bool diff = strcmp(verb, "diff") == 0;
	int npos = argc - optind;
	if (npos < a->verb->npos)
		return cli_usage_error(verb, "missing %s",
				   (diff ? diff_names : names)[npos < 3 ? npos : 2]);
	if (npos > a->verb->npos)
		return cli_usage_error(verb, "unexpected argument '%s'", argv[optind + a->verb->npos]);
	char **pos = argv + optind;
	a->sandbox = pos[0];
	if (!cli_good_token(a->sandbox, ID_MAX))
		return cli_usage_error(verb,
				   "'%.*s' is not a sandbox id (such as sb-1f2e3d4c5b6a7980: 1 to "
				   "%d printable characters, no spaces)",
				   ID_MAX, a->sandbox, ID_MAX);
	for (int i = 1; i < a->verb->npos; i++) {
		if (i == 2 && !diff) {
			a->expr = pos[2];
			json_t *j = json_string(a->expr); /* NULL unless valid UTF-8 */
			bool ok = j != NULL;
			json_decref(j);
			if (!*a->expr)
				return cli_usage_error(verb, "EXPR is empty: give a Python expression");
			if (!ok)
				return cli_usage_error(verb, "EXPR is not valid UTF-8 text");
			continue;
		}
		if (!parse_step(pos[i], &a->step[i - 1]))
			return cli_usage_error(verb, "%s '%.*s': expected a step number (1 or more)",
					   (diff ? diff_names : names)[i], 40, pos[i]);
	}
	if (!a->socket) {
		const char *env = getenv("AGENTBOX_SOCKET");
		if (!env || !*env)
			return cli_usage_error(
			    verb, "no daemon named: give --socket PATH or set AGENTBOX_SOCKET to the "
				  "socket of the agentboxd that holds the session (a private daemon "
				  "started for this command would have none)");
		a->socket = env;
	}
	/* The SDK's url form (Sandbox(url="unix:///run/agentbox.sock")). */
	if (strncmp(a->socket, "unix://", 7) == 0)
		a->socket += 7;
	if (!*a->socket)
		return cli_usage_error(verb, "the socket 'unix://' names no path");
	return 0;
}

/* ------------------------------------------------------------- the call */

/* Calls method; on success *result owns the answer. Otherwise prints why
 * and returns the exit status: 2 when the daemon refused the request as
 * invalid, 125 for anything else. */
static int call(struct tt_args *a, rpc_client *c, const char *method, json_t *params,
		json_t **result)
{
	int rpc_code = 0;
	int rc = cli_call(a->verb->name, c, method, params, result, &rpc_code);
	if (rc && rpc_code == -32001)
		fprintf(stderr,
			"agentbox %s: a session belongs to the connection that created it; from "
			"another process only the operator (root or the daemon's user) may name "
			"it\n",
			a->verb->name);
	return rc;
}


/* --------------------------------------------------------------- output */

/* The text of a JSON string (NULs included), or NULL. */
static const char *jstr(json_t *v, size_t *len)
{
	*len = json_string_length(v);
	return json_string_value(v);
}

/* Writes the string v escaped, its first line only when first_line, cut
 * after max characters (0: whole) with "..." when cut; dflt when v is not
 * a string. */
static void put_text(FILE *out, json_t *v, size_t max, bool first_line, const char *dflt)
{
	size_t len;
	const char *s = jstr(v, &len);
	if (!s) {
		fputs(dflt, out);
		return;
	}
	bool cut = false;
	if (first_line) {
		const char *nl = memchr(s, '\n', len);
		if (nl) {
			cut = nl + 1 < s + len;
			len = (size_t)(nl - s);
		}
	}
	if (cli_term_write(out, s, len, max) || cut)
		fputs("...", out);
}

/* put_text into a new string (for a table cell); NULL when out of memory. */
static char *cell(json_t *v, size_t max, bool first_line, const char *dflt)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	if (!f)
		return NULL;
	put_text(f, v, max, first_line, dflt);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}



static void format_ms(json_t *v, char *out, size_t len)
{
	if (!json_is_number(v) || json_number_value(v) < 0) {
		snprintf(out, len, "-");
		return;
	}
	double ms = json_number_value(v);
	if (ms < 10)
		snprintf(out, len, "%.1f ms", ms);
	else if (ms < 10000)
		snprintf(out, len, "%.0f ms", ms);
	else if (ms < 600000)
		snprintf(out, len, "%.1f s", ms / 1000);
	else
		snprintf(out, len, "%lldm%02llds", (long long)ms / 60000, (long long)ms / 1000 % 60);
}

static void format_bytes(json_int_t b, char *out, size_t len)
{
	if (b < 1024)
		snprintf(out, len, "%lldB", (long long)b);
	else if (b < (1 << 20))
		snprintf(out, len, "%.1fK", (double)b / 1024);
	else if (b < (1LL << 30))
		snprintf(out, len, "%.1fM", (double)b / (1 << 20));
	else
		snprintf(out, len, "%.1fG", (double)b / (1LL << 30));
}

/* "parked 8.1M", "evicted", ...: what was kept of a state's interpreter. */
static char *memory_cell(json_t *snap)
{
	json_t *bytes = json_object_get(snap, "memory_bytes");
	char *m = cell(json_object_get(snap, "memory"), 16, false, "?");
	if (!m || !json_is_integer(bytes))
		return m;
	char size[32], *out = NULL;
	format_bytes(json_integer_value(bytes), size, sizeof(size));
	if (asprintf(&out, "%s %s", m, size) < 0)
		out = NULL;
	free(m);
	return out;
}

static char *files_cell(json_t *snap)
{
	json_t *n = json_object_get(snap, "files");
	char *out = NULL;
	if (json_is_integer(n) ? asprintf(&out, "%lld", (long long)json_integer_value(n)) < 0
			       : !(out = strdup("-")))
		return NULL;
	return out;
}

/* ---------------------------------------------------------------- history */

/* The steps in the order the tree is drawn: depth first from the start
 * (state 0), children by step number; depth counts the branches taken
 * (a first child continues its parent's line). */
struct row {
	json_t *s;
	int id, parent;
	int depth;
	bool branch; /* not its parent's first child */
	size_t child, sibling; /* first child, next sibling: indexes, or NONE */
};
#define NONE ((size_t)-1)

static int by_id(const void *x, const void *y)
{
	const struct row *a = x, *b = y;
	return (a->id > b->id) - (a->id < b->id);
}

/* Fills order[0..n) (rows sorted by id). Without recursion and in
 * O(n log n): a session may have many steps. stack has room for n. */
static void tree_order(struct row *rows, size_t n, struct row **order, size_t *stack)
{
	size_t *last = stack; /* borrowed: the last child of each row, while linking */
	size_t first_root = NONE, last_root = NONE;
	for (size_t i = 0; i < n; i++) {
		rows[i].child = rows[i].sibling = last[i] = NONE;
		struct row key = {.id = rows[i].parent};
		struct row *p = rows[i].parent > 0 && rows[i].parent < rows[i].id
				    ? bsearch(&key, rows, i, sizeof(*rows), by_id)
				    : NULL;
		size_t *head = p ? &p->child : &first_root;
		size_t *tail = p ? &last[p - rows] : &last_root;
		if (*tail == NONE)
			*head = i;
		else
			rows[*tail].sibling = i;
		*tail = i;
	}
	/* Roots (parent 0, or a parent not listed) are one family. */
	size_t top = 0, k = 0;
	if (first_root != NONE) {
		rows[first_root].depth = 0;
		rows[first_root].branch = false;
		stack[top++] = first_root;
	}
	while (top > 0) {
		size_t u = stack[--top];
		order[k++] = &rows[u];
		/* Siblings go on the stack last, so u's children come first. */
		size_t sib = rows[u].sibling;
		if (sib != NONE) {
			rows[sib].branch = true;
			rows[sib].depth = rows[u].depth + !rows[u].branch;
			stack[top++] = sib;
		}
		size_t ch = rows[u].child;
		if (ch != NONE) {
			rows[ch].branch = false;
			rows[ch].depth = rows[u].depth;
			stack[top++] = ch;
		}
	}
}

enum { C_MARK, C_STEP, C_PARENT, C_STATUS, C_DURATION, C_BEFORE, C_FILES, C_CODE, NCOL };

static int print_history(json_t *r)
{
	json_t *steps = json_object_get(r, "steps");
	json_t *head = json_object_get(r, "head");
	size_t n = json_array_size(steps);
	printf("sandbox ");
	put_text(stdout, json_object_get(r, "sandbox"), ID_MAX, false, "?");
	json_int_t h = json_integer_value(head);
	printf(": %zu step%s, head %lld%s\n", n, n == 1 ? "" : "s", (long long)h,
	       h == 0 ? " (the session's start)" : "");
	json_t *cur = json_object_get(r, "current");
	char *mem AB_AUTOFREE = memory_cell(cur);
	char *files AB_AUTOFREE = files_cell(cur);
	printf("current state: interpreter %s, %s%s", mem ? mem : "?", files ? files : "?",
	       json_is_integer(json_object_get(cur, "files")) ? " files" : " (files not kept)");
	if (json_is_integer(json_object_get(r, "max_snapshots")))
		printf("; at most %lld snapshots kept",
		       (long long)json_integer_value(json_object_get(r, "max_snapshots")));
	putchar('\n');
	if (n == 0) {
		puts("no steps yet: the session has run nothing");
		return 0;
	}
	struct row *rows = calloc(n, sizeof(*rows));
	struct row **order = calloc(n, sizeof(*order));
	char **cells = calloc(n * NCOL, sizeof(*cells));
	size_t *stack = calloc(n, sizeof(*stack));
	if (!rows || !order || !cells || !stack) {
		free(rows);
		free(order);
		free(cells);
		free(stack);
		fputs("agentbox history: out of memory\n", stderr);
		return CLI_EXIT_DAEMON;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(steps, i);
		rows[i].s = s;
		rows[i].id = (int)json_integer_value(json_object_get(s, "step"));
		rows[i].parent = (int)json_integer_value(json_object_get(s, "parent"));
	}
	qsort(rows, n, sizeof(*rows), by_id);
	tree_order(rows, n, order, stack);
	static const char *const heads[NCOL] = {"",	    "STEP",   "PARENT", "STATUS",
						"DURATION", "BEFORE", "FILES",	"CODE"};
	size_t width[NCOL];
	for (int c = 0; c < NCOL; c++)
		width[c] = strlen(heads[c]);
	for (size_t i = 0; i < n; i++) {
		struct row *w = order[i];
		json_t *s = w->s, *snap = json_object_get(s, "snapshot");
		char **row = cells + i * NCOL;
		char buf[64];
		row[C_MARK] = strdup(w->id == h ? "*" : "");
		int depth = w->depth < TREE_DEPTH_MAX ? w->depth : TREE_DEPTH_MAX;
		snprintf(buf, sizeof(buf), "%*s%s%d", 2 * (depth - w->branch), "",
			 w->branch ? "`-" : "", w->id);
		row[C_STEP] = strdup(buf);
		snprintf(buf, sizeof(buf), "%d", w->parent);
		row[C_PARENT] = strdup(buf);
		row[C_STATUS] = cell(json_object_get(s, "status"), 12, false, "?");
		format_ms(json_object_get(s, "duration_ms"), buf, sizeof(buf));
		row[C_DURATION] = strdup(buf);
		row[C_BEFORE] = memory_cell(snap);
		row[C_FILES] = files_cell(snap);
		row[C_CODE] = cell(json_object_get(s, "code"), CODE_SHOWN, true, "");
		if (row[C_CODE] && json_is_true(json_object_get(s, "code_truncated")) &&
		    !strstr(row[C_CODE], "...")) {
			char *longer = NULL;
			if (asprintf(&longer, "%s...", row[C_CODE]) >= 0) {
				free(row[C_CODE]);
				row[C_CODE] = longer;
			}
		}
		for (int c = 0; c < NCOL; c++) {
			size_t cw = cli_columns(row[c]);
			if (cw > width[c])
				width[c] = cw;
		}
	}
	putchar('\n');
	for (int c = 0; c < NCOL; c++)
		cli_print_padded(heads[c], c == NCOL - 1 ? 0 : width[c] + 2);
	putchar('\n');
	for (size_t i = 0; i < n; i++) {
		char **row = cells + i * NCOL;
		for (int c = 0; c < NCOL; c++)
			cli_print_padded(row[c], c == NCOL - 1 ? 0 : width[c] + 2);
		putchar('\n');
	}
	/* Why a state was not kept, once per step that has a reason. */
	bool noted = false;
	for (size_t i = 0; i < n; i++) {
		json_t *snap = json_object_get(order[i]->s, "snapshot");
		json_t *why = json_object_get(snap, "why"), *fwhy = json_object_get(snap, "files_why");
		if (!json_is_string(why) && !json_is_string(fwhy))
			continue;
		if (!noted)
			puts("\nnotes (the state each step started in):");
		noted = true;
		if (json_is_string(why)) {
			printf("  before step %d: ", order[i]->id);
			put_text(stdout, why, TEXT_SHOWN, false, "");
			putchar('\n');
		}
		if (json_is_string(fwhy)) {
			printf("  before step %d: files not kept: ", order[i]->id);
			put_text(stdout, fwhy, TEXT_SHOWN, false, "");
			putchar('\n');
		}
	}
	for (size_t i = 0; i < n * NCOL; i++)
		free(cells[i]);
	free(cells);
	free(order);
	free(rows);
	free(stack);
	return 0;
}

static int tt_history(struct tt_args *a, rpc_client *c)
{
	json_t *params AB_AUTOJSON = json_pack("{s:s}", "sandbox", a->sandbox);
	json_t *r AB_AUTOJSON = NULL;
	if (!params)
		return cli_daemon_error("history", "out of memory", CLI_EXIT_DAEMON);
	int rc = call(a, c, "sandbox.history", params, &r);
	if (rc)
		return rc;
	if (!json_is_array(json_object_get(r, "steps")) ||
	    !json_is_integer(json_object_get(r, "head")))
		return cli_malformed("history", "no \"steps\" list or \"head\"");
	if (a->json) {
		cli_print_json(r);
		return 0;
	}
	return print_history(r);
}

/* ----------------------------------------------------------------- rewind */

/* "made again by replaying N steps", then where the replay did not end as
 * the history did: a step whose status differs, files that came out
 * otherwise. */
static void print_replay(FILE *out, json_t *replay, const char *indent)
{
	json_t *n = json_object_get(replay, "replayed_steps");
	json_t *diverged = json_object_get(replay, "diverged");
	if (json_is_integer(n))
		fprintf(out, "made again by replaying %lld step%s\n", (long long)json_integer_value(n),
			json_integer_value(n) == 1 ? "" : "s");
	else
		fputs("made again by replaying the steps before it\n", out);
	size_t i;
	json_t *d;
	json_array_foreach(diverged, i, d)
	{
		fprintf(out, "%sdiverged at step %lld: ", indent,
			(long long)json_integer_value(json_object_get(d, "step")));
		json_t *files = json_object_get(d, "files");
		if (json_is_string(json_object_get(d, "replayed"))) {
			fputs("recorded ", out);
			put_text(out, json_object_get(d, "recorded"), 16, false, "?");
			fputs(", replayed ", out);
			put_text(out, json_object_get(d, "replayed"), 16, false, "?");
		} else if (json_is_object(files)) {
			static const char *const kinds[] = {"added", "removed", "changed"};
			const char *sep = "files ";
			for (int k = 0; k < 3; k++) {
				size_t j;
				json_t *p;
				json_array_foreach(json_object_get(files, kinds[k]), j, p)
				{
					fprintf(out, "%s%s ", sep, kinds[k]);
					put_text(out, p, TEXT_SHOWN, false, "?");
					sep = ", ";
				}
			}
		} else {
			fputs("(see --json)", out);
		}
		fputc('\n', out);
	}
}

static int tt_rewind(struct tt_args *a, rpc_client *c)
{
	json_t *params AB_AUTOJSON =
	    json_pack("{s:s, s:i}", "sandbox", a->sandbox, "step", a->step[0]);
	json_t *r AB_AUTOJSON = NULL;
	if (!params)
		return cli_daemon_error("rewind", "out of memory", CLI_EXIT_DAEMON);
	int rc = call(a, c, "sandbox.rewind", params, &r);
	if (rc)
		return rc;
	json_t *restored = json_object_get(r, "restored");
	if (!json_is_object(restored) || !json_is_integer(json_object_get(r, "head")))
		return cli_malformed("rewind", "no \"restored\" or \"head\"");
	if (a->json) {
		cli_print_json(r);
		return 0;
	}
	json_int_t head = json_integer_value(json_object_get(r, "head"));
	printf("rewound ");
	put_text(stdout, json_object_get(r, "sandbox"), ID_MAX, false, a->sandbox);
	printf(" to the state before step %d: head is now %lld%s\n", a->step[0], (long long)head,
	       head == 0 ? " (the session's start)" : "");
	printf("  memory: ");
	json_t *mem = json_object_get(restored, "memory");
	if (json_is_string(mem) && strcmp(json_string_value(mem), "snapshot") == 0)
		puts("restored from its snapshot");
	else if (json_is_string(mem) && strcmp(json_string_value(mem), "replay") == 0)
		print_replay(stdout, json_object_get(r, "replay"), "  ");
	else if (json_is_string(mem) && strcmp(json_string_value(mem), "snapshot+replay") == 0) {
		/* The nearest earlier copy on the branch, then the steps after
		 * it run again in place. */
		json_t *from = json_object_get(restored, "from_state");
		if (json_is_integer(from) && json_integer_value(from) > 0)
			printf("restored from the snapshot of the end of step %lld, then ",
			       (long long)json_integer_value(from));
		else
			printf("restored from the session's first snapshot, then ");
		print_replay(stdout, json_object_get(r, "replay"), "  ");
	}
	else {
		put_text(stdout, mem, TEXT_SHOWN, false, "?");
		putchar('\n');
	}
	json_t *files = json_object_get(restored, "files");
	printf("  files: ");
	if (json_is_true(json_object_get(files, "restored"))) {
		json_t *w = json_object_get(files, "files_written");
		if (json_is_integer(w))
			printf("restored (%lld written)\n", (long long)json_integer_value(w));
		else
			puts("restored");
	} else {
		printf("NOT restored: ");
		put_text(stdout, json_object_get(files, "why"), TEXT_SHOWN, false, "no reason given");
		putchar('\n');
	}
	size_t i;
	json_t *x;
	json_array_foreach(json_object_get(r, "not_restored"), i, x)
	{
		printf("  not restored: ");
		put_text(stdout, json_object_get(x, "what"), 40, false, "?");
		json_t *count = json_object_get(x, "count");
		if (json_is_integer(count))
			printf(" (%lld)", (long long)json_integer_value(count));
		if (json_is_string(json_object_get(x, "note"))) {
			printf(": ");
			put_text(stdout, json_object_get(x, "note"), 2 * TEXT_SHOWN, false, "");
		}
		putchar('\n');
	}
	char took[32];
	format_ms(json_object_get(r, "duration_ms"), took, sizeof(took));
	if (strcmp(took, "-") != 0)
		printf("  took %s\n", took);
	return 0;
}

/* ---------------------------------------------------------------- inspect */

/* Writes a repr line by line: each line escaped, the newlines kept (a
 * DataFrame's repr stays a table). */
static void put_lines(FILE *out, json_t *v)
{
	size_t len;
	const char *s = jstr(v, &len);
	while (s && len > 0) {
		const char *nl = memchr(s, '\n', len);
		size_t n = nl ? (size_t)(nl - s) : len;
		cli_term_write(out, s, n, 0);
		fputc('\n', out);
		if (!nl)
			break;
		len -= n + 1;
		s = nl + 1;
	}
	if (s && len == 0 && json_string_length(v) == 0)
		fputc('\n', out);
}

static int tt_inspect(struct tt_args *a, rpc_client *c)
{
	json_t *params AB_AUTOJSON = json_pack("{s:s, s:i, s:s}", "sandbox", a->sandbox, "step",
					       a->step[0], "expr", a->expr);
	json_t *r AB_AUTOJSON = NULL;
	if (!params)
		return cli_daemon_error("inspect", "out of memory", CLI_EXIT_DAEMON);
	int rc = call(a, c, "sandbox.inspect", params, &r);
	if (rc)
		return rc;
	json_t *err = json_object_get(r, "error"), *value = json_object_get(r, "value");
	if (!json_is_object(err) && !json_is_string(value))
		return cli_malformed("inspect", "neither a \"value\" nor an \"error\"");
	if (a->json) {
		cli_print_json(r);
		return json_is_object(err) ? 1 : 0;
	}
	json_t *mem = json_object_get(r, "memory");
	if (json_is_string(mem) && strcmp(json_string_value(mem), "replay") == 0) {
		fprintf(stderr, "agentbox inspect: no copy holds the state before step %d: it was ",
			a->step[0]);
		/* The answer carries "diverged" (and perhaps the whole "replay"). */
		json_t *rp = json_object_get(r, "replay");
		json_t *own = rp ? NULL : json_pack("{s:O?}", "diverged", json_object_get(r, "diverged"));
		print_replay(stderr, rp ? rp : own, "agentbox inspect: ");
		json_decref(own);
	}
	if (json_is_object(err)) {
		fprintf(stderr, "agentbox inspect: before step %d, ", a->step[0]);
		cli_term_puts(stderr, a->expr);
		fputs(" raised ", stderr);
		put_text(stderr, json_object_get(err, "name"), 100, false, "an exception");
		if (json_string_length(json_object_get(err, "value")) > 0) {
			fputs(": ", stderr);
			put_text(stderr, json_object_get(err, "value"), 1000, false, "");
		}
		fputc('\n', stderr);
		return 1;
	}
	put_lines(stdout, value);
	if (json_is_true(json_object_get(r, "truncated")))
		fputs("agentbox inspect: the repr was cut at 64 KiB (the daemon's limit)\n", stderr);
	return 0;
}

/* ------------------------------------------------------------------- diff */

static void print_var(char sign, json_t *v)
{
	printf("  %c ", sign);
	put_text(stdout, json_object_get(v, "name"), 64, false, "?");
	printf(" (");
	put_text(stdout, json_object_get(v, "type"), 40, false, "?");
	printf("): ");
	put_text(stdout, json_object_get(v, "repr"), TEXT_SHOWN, true, "?");
	putchar('\n');
}

static void print_changed(json_t *v)
{
	json_t *before = json_object_get(v, "before"), *after = json_object_get(v, "after");
	json_t *tb = json_object_get(before, "type"), *ta = json_object_get(after, "type");
	printf("  ~ ");
	put_text(stdout, json_object_get(v, "name"), 64, false, "?");
	printf(" (");
	put_text(stdout, tb, 40, false, "?");
	if (!json_equal(tb, ta)) {
		printf(" -> ");
		put_text(stdout, ta, 40, false, "?");
	}
	printf("): ");
	put_text(stdout, json_object_get(before, "repr"), TEXT_SHOWN / 2, true, "?");
	printf(" -> ");
	put_text(stdout, json_object_get(after, "repr"), TEXT_SHOWN / 2, true, "?");
	putchar('\n');
}

static void print_paths(char sign, json_t *list)
{
	size_t i;
	json_t *p;
	json_array_foreach(list, i, p)
	{
		printf("  %c ", sign);
		put_text(stdout, p, 0, false, "?");
		putchar('\n');
	}
}

static int tt_diff(struct tt_args *a, rpc_client *c)
{
	json_t *params AB_AUTOJSON = json_pack("{s:s, s:i, s:i}", "sandbox", a->sandbox, "a",
					       a->step[0], "b", a->step[1]);
	json_t *r AB_AUTOJSON = NULL;
	if (!params)
		return cli_daemon_error("diff", "out of memory", CLI_EXIT_DAEMON);
	int rc = call(a, c, "sandbox.diff", params, &r);
	if (rc)
		return rc;
	json_t *vars = json_object_get(r, "variables"), *files = json_object_get(r, "files");
	if (!json_is_object(vars))
		return cli_malformed("diff", "no \"variables\"");
	if (a->json) {
		cli_print_json(r);
		return 0;
	}
	printf("from the state before step %d to the state before step %d\n", a->step[0],
	       a->step[1]);
	json_t *added = json_object_get(vars, "added"), *removed = json_object_get(vars, "removed"),
	       *changed = json_object_get(vars, "changed");
	size_t i;
	json_t *v;
	if (!json_array_size(added) && !json_array_size(removed) && !json_array_size(changed)) {
		puts("variables: no difference");
	} else {
		puts("variables:");
		json_array_foreach(added, i, v) print_var('+', v);
		json_array_foreach(removed, i, v) print_var('-', v);
		json_array_foreach(changed, i, v) print_changed(v);
	}
	if (!json_is_object(files)) {
		puts("files: not compared (the workspace's version before one of the steps was "
		     "not kept; see agentbox history)");
		return 0;
	}
	added = json_object_get(files, "added");
	removed = json_object_get(files, "removed");
	changed = json_object_get(files, "changed");
	if (!json_array_size(added) && !json_array_size(removed) && !json_array_size(changed)) {
		puts("files: no difference");
		return 0;
	}
	puts("files:");
	print_paths('+', added);
	print_paths('-', removed);
	print_paths('~', changed);
	return 0;
}

/* ------------------------------------------------------------- dispatch */

static const struct tt_verb verbs[] = {
    {"history", cli_history_help, 1, tt_history},
    {"rewind", cli_rewind_help, 2, tt_rewind},
    {"inspect", cli_inspect_help, 3, tt_inspect},
    {"diff", cli_diff_help, 3, tt_diff},
};

static int run_verb(const struct tt_verb *verb, int argc, char **argv)
{
	struct tt_args args = {.verb = verb};
	int rc = parse_args(argc, argv, &args);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	rpc_client *c = NULL;
	ab_error err = {0};
	if (rpc_client_connect(args.socket, &c, &err) < 0)
		return cli_daemon_error(verb->name, err.msg, CLI_EXIT_DAEMON);
	rc = verb->fn(&args, c);
	rpc_client_close(c);
	return rc;
}

int cmd_history(int argc, char **argv)
{
	return run_verb(&verbs[0], argc, argv);
}

int cmd_rewind(int argc, char **argv)
{
	return run_verb(&verbs[1], argc, argv);
}

int cmd_inspect(int argc, char **argv)
{
	return run_verb(&verbs[2], argc, argv);
}

int cmd_diff(int argc, char **argv)
{
	return run_verb(&verbs[3], argc, argv);
}

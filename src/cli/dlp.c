/* dlp.c - `agentbox dlp`: run the DLP detectors (docs/dlp.md) over a file
 * or a stream of JSON records, here, without a daemon. Operators use it to
 * see what the egress sidecar and the audit redactor would find; the
 * corpus tests and the benchmark use it to measure the detectors. */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "dlp.h"
#include "utf8.h"

#define READ_CHUNK (1u << 20)
/* A JSONL record (one line) may be this long at most. */
#define MAX_LINE (64u << 20)

const char cli_dlp_help[] =
    "Usage: agentbox dlp scan [--json | --jsonl] [--show-values] [--min-confidence X]\n"
    "                         [--content-type TYPE] [FILE | -]\n"
    "       agentbox dlp detectors [--json]\n"
    "\n"
    "Finds secrets and personal data with the detectors the egress sidecar and\n"
    "the audit log's redactor use (docs/dlp.md). Runs here; needs no daemon.\n"
    "\n"
    "  scan       prints each finding in FILE (default: standard input): its byte\n"
    "             offsets, line, kind, confidence and the decoders that revealed\n"
    "             it (e.g. base64>gzip). Values are not printed unless asked for.\n"
    "  detectors  lists the detectors: kind, class (secret or pii), what it finds,\n"
    "             and one fake example.\n"
    "\n"
    "Options:\n"
    "      --json              scan: one JSON object {\"findings\": [...]}\n"
    "      --jsonl             scan: the input is JSON Lines, one object per line\n"
    "                          {\"id\": ..., \"text\": \"...\"}; writes one line per\n"
    "                          record {\"id\": ..., \"findings\": [{\"kind\", \"start\",\n"
    "                          \"end\", \"confidence\", \"decoders\"}]}, offsets in bytes\n"
    "                          of the text's UTF-8. A bad line gets {\"line\": N,\n"
    "                          \"error\": \"...\"} and the exit status is 2.\n"
    "      --show-values       each finding also carries its value (after decoding\n"
    "                          and normalisation): the secret itself, so mind where\n"
    "                          the output goes\n"
    "      --min-confidence X  report findings of confidence X (0..1) or more\n"
    "                          (default 0.5)\n"
    "      --content-type T    the bytes are an HTTP body of this type (e.g.\n"
    "                          multipart/form-data; boundary=x), decoded as such\n"
    "  -h, --help              show this help\n"
    "\n"
    "Exit status: scan: 0 nothing found, 1 something found (--jsonl: 0),\n"
    "2 usage, input or I/O error. detectors: 0.\n"
    "\n"
    "Examples:\n"
    "  agentbox dlp scan config.env\n"
    "  git diff | agentbox dlp scan -\n"
    "  agentbox dlp scan --jsonl --show-values records.jsonl > findings.jsonl\n"
    "  agentbox dlp detectors\n";

enum { OPT_JSON = 256, OPT_JSONL, OPT_VALUES, OPT_MINCONF, OPT_CTYPE };

struct scan_args {
	bool json, jsonl, values;
	dlp_opts opts;
	const char *path;
};

static json_t *finding_json(const dlp_finding *f, bool values)
{
	json_t *dec = json_array();
	for (size_t k = 0; k < f->nchain; k++)
		json_array_append_new(dec, json_string(dlp_decoder_name(f->chain[k])));
	json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:f, s:o}", "kind", f->kind, "class",
			      dlp_class_name(f->cls), "start", (json_int_t)f->start, "end",
			      (json_int_t)f->end, "confidence",
			      (double)(int)(f->confidence * 100 + 0.5) / 100.0, "decoders", dec);
	if (o && values && f->value) {
		/* A decoded value may be any bytes: invalid UTF-8 becomes U+FFFD. */
		char carry[4];
		size_t ncarry = 0;
		json_object_set_new(o, "value",
				    ab__utf8_chunk(f->value, strlen(f->value), carry, &ncarry, true));
	}
	return o;
}

static dlp_engine *engine_or_die(void)
{
	char err[256];
	dlp_engine *e = dlp_engine_new(err, sizeof(err));
	if (!e)
		fprintf(stderr, "agentbox dlp: %s\n", err);
	return e;
}

static FILE *open_input(const char *path)
{
	if (!path || strcmp(path, "-") == 0)
		return stdin;
	FILE *f = fopen(path, "rbe");
	if (!f)
		fprintf(stderr, "agentbox dlp: open %s: %s\n", path, strerror(errno));
	return f;
}

/* Newline offsets, for line numbers in the plain listing. */
struct lines {
	uint64_t *v;
	size_t n, cap;
};

static int lines_note(struct lines *l, const char *buf, size_t n, uint64_t base)
{
	for (const char *p = buf; (p = memchr(p, '\n', (size_t)(buf + n - p))); p++) {
		if (l->n == l->cap) {
			size_t cap = l->cap ? l->cap * 2 : 1024;
			uint64_t *v = realloc(l->v, cap * sizeof(*v));
			if (!v)
				return -ENOMEM;
			l->v = v;
			l->cap = cap;
		}
		l->v[l->n++] = base + (uint64_t)(p - buf);
	}
	return 0;
}

/* The 1-based line holding byte off. */
static size_t line_of(const struct lines *l, uint64_t off)
{
	size_t lo = 0, hi = l->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (l->v[mid] < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo + 1;
}

static void print_plain(const dlp_finding *f, const struct lines *l, bool values)
{
	printf("%zu-%zu line %zu  %-22s %-6s %.2f", f->start, f->end, line_of(l, f->start),
	       f->kind, dlp_class_name(f->cls), (double)f->confidence);
	for (size_t k = 0; k < f->nchain; k++)
		printf("%s%s", k ? ">" : "  via ", dlp_decoder_name(f->chain[k]));
	if (values && f->value) {
		fputs("  value: ", stdout);
		cli_term_write(stdout, f->value, strlen(f->value), 200);
	}
	putchar('\n');
}

/* scan FILE: streamed in READ_CHUNK pieces, so any size works in bounded
 * memory (plus the line index for the listing). */
static int scan_file(const dlp_engine *e, const struct scan_args *a)
{
	FILE *in = open_input(a->path);
	if (!in)
		return CLI_EXIT_USAGE;
	const char *name = a->path && strcmp(a->path, "-") != 0 ? a->path : "standard input";
	dlp_stream *s = dlp_stream_open(e, &a->opts);
	char *buf = malloc(READ_CHUNK);
	dlp_findings f = {0};
	struct lines lines = {0};
	int rc = s && buf ? 0 : -ENOMEM;
	uint64_t total = 0;
	while (rc == 0) {
		size_t n = fread(buf, 1, READ_CHUNK, in);
		if (n == 0)
			break;
		if (!a->json && lines_note(&lines, buf, n, total) < 0)
			rc = -ENOMEM;
		else
			rc = dlp_stream_feed(s, buf, n, &f);
		total += n;
	}
	bool read_err = ferror(in);
	int crc = dlp_stream_close(s, &f);
	if (rc == 0)
		rc = crc;
	free(buf);
	if (in != stdin)
		fclose(in);
	int status;
	if (read_err) {
		fprintf(stderr, "agentbox dlp: reading %s: %s\n", name, strerror(errno));
		status = CLI_EXIT_USAGE;
	} else if (rc < 0) {
		fprintf(stderr, "agentbox dlp: scanning %s: %s\n", name, strerror(-rc));
		status = CLI_EXIT_USAGE;
	} else {
		if (a->json) {
			json_t *arr = json_array();
			for (size_t i = 0; i < f.n; i++)
				json_array_append_new(arr, finding_json(&f.v[i], a->values));
			json_t *o = json_pack("{s:o, s:b}", "findings", arr, "truncated",
					      f.truncated);
			json_dumpf(o, stdout, JSON_COMPACT | JSON_ENSURE_ASCII);
			putchar('\n');
			json_decref(o);
		} else {
			for (size_t i = 0; i < f.n; i++)
				print_plain(&f.v[i], &lines, a->values);
			fprintf(stderr, "%zu finding%s in %s (%llu bytes)%s\n", f.n,
				f.n == 1 ? "" : "s", name, (unsigned long long)total,
				f.truncated ? "; more were not listed" : "");
		}
		status = f.n ? 1 : 0;
	}
	free(lines.v);
	dlp_findings_free(&f);
	return status;
}

static void jsonl_error(size_t line, json_t *id, const char *msg)
{
	fprintf(stderr, "agentbox dlp: line %zu: %s\n", line, msg);
	json_t *o = json_pack("{s:I, s:s}", "line", (json_int_t)line, "error", msg);
	if (id)
		json_object_set(o, "id", id);
	json_dumpf(o, stdout, JSON_COMPACT | JSON_ENSURE_ASCII);
	putchar('\n');
	json_decref(o);
}

/* One record: {"id": any, "text": string} -> {"id", "findings"}. Returns
 * 0, 1 for a bad record (reported), or a negative errno. */
static int scan_record(const dlp_engine *e, const struct scan_args *a, const char *line,
		       size_t len, size_t lineno)
{
	json_error_t je;
	json_t *rec = json_loadb(line, len, JSON_ALLOW_NUL, &je);
	if (!rec) {
		char msg[256];
		snprintf(msg, sizeof(msg), "not JSON: %s", je.text);
		jsonl_error(lineno, NULL, msg);
		return 1;
	}
	int rc = 1;
	json_t *id = json_object_get(rec, "id");
	json_t *text = json_object_get(rec, "text");
	if (!json_is_object(rec))
		jsonl_error(lineno, NULL, "a record must be a JSON object");
	else if (!text)
		jsonl_error(lineno, id, "the record has no \"text\"");
	else if (!json_is_string(text))
		jsonl_error(lineno, id, "\"text\" must be a string");
	else {
		dlp_findings f = {0};
		rc = dlp_scan(e, json_string_value(text), json_string_length(text), &a->opts, &f);
		if (rc == 0) {
			json_t *arr = json_array();
			for (size_t i = 0; i < f.n; i++)
				json_array_append_new(arr, finding_json(&f.v[i], a->values));
			json_t *o = json_pack("{s:O?, s:o}", "id", id, "findings", arr);
			if (f.truncated)
				json_object_set_new(o, "truncated", json_true());
			json_dumpf(o, stdout, JSON_COMPACT | JSON_ENSURE_ASCII);
			putchar('\n');
			json_decref(o);
		}
		dlp_findings_free(&f);
	}
	json_decref(rec);
	return rc;
}

static int scan_jsonl(const dlp_engine *e, const struct scan_args *a)
{
	FILE *in = open_input(a->path);
	if (!in)
		return CLI_EXIT_USAGE;
	char *line = NULL;
	size_t cap = 0, lineno = 0, bad = 0;
	ssize_t n;
	int rc = 0;
	while (rc >= 0 && (n = getline(&line, &cap, in)) >= 0) {
		lineno++;
		size_t len = (size_t)n;
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		if (len == 0)
			continue;
		if (len > MAX_LINE) {
			jsonl_error(lineno, NULL, "line longer than 64 MiB");
			bad++;
			continue;
		}
		rc = scan_record(e, a, line, len, lineno);
		if (rc == 1) {
			bad++;
			rc = 0;
		}
	}
	bool read_err = ferror(in);
	free(line);
	if (in != stdin)
		fclose(in);
	fflush(stdout);
	if (rc < 0) {
		fprintf(stderr, "agentbox dlp: line %zu: %s\n", lineno, strerror(-rc));
		return CLI_EXIT_USAGE;
	}
	if (read_err) {
		fprintf(stderr, "agentbox dlp: reading input: %s\n", strerror(errno));
		return CLI_EXIT_USAGE;
	}
	if (bad) {
		fprintf(stderr, "agentbox dlp: %zu of %zu lines were not records\n", bad, lineno);
		return CLI_EXIT_USAGE;
	}
	return 0;
}

static int dlp_scan_cmd(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, OPT_JSON},
					     {"jsonl", no_argument, NULL, OPT_JSONL},
					     {"show-values", no_argument, NULL, OPT_VALUES},
					     {"min-confidence", required_argument, NULL, OPT_MINCONF},
					     {"content-type", required_argument, NULL, OPT_CTYPE},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	struct scan_args a = {0};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_JSON:
			a.json = true;
			break;
		case OPT_JSONL:
			a.jsonl = true;
			break;
		case OPT_VALUES:
			a.values = a.opts.values = true;
			break;
		case OPT_MINCONF: {
			char *end;
			errno = 0;
			double v = strtod(optarg, &end);
			if (errno || *end || end == optarg || !(v > 0 && v <= 1)) {
				fprintf(stderr,
					"agentbox dlp scan: --min-confidence wants a number in "
					"(0, 1], not '%s'\n",
					optarg);
				return CLI_EXIT_USAGE;
			}
			a.opts.min_confidence = (float)v;
			break;
		}
		case OPT_CTYPE:
			a.opts.content_type = optarg;
			break;
		case 'h':
			fputs(cli_dlp_help, stdout);
			return 0;
		default:
			fputs("Try 'agentbox dlp --help'.\n", stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (a.json && a.jsonl) {
		fputs("agentbox dlp scan: --json and --jsonl exclude each other\n", stderr);
		return CLI_EXIT_USAGE;
	}
	if (argc - optind > 1) {
		fputs("agentbox dlp scan: one FILE at most (or - for standard input)\n", stderr);
		return CLI_EXIT_USAGE;
	}
	a.path = optind < argc ? argv[optind] : NULL;
	dlp_engine *e = engine_or_die();
	if (!e)
		return CLI_EXIT_USAGE;
	int rc = a.jsonl ? scan_jsonl(e, &a) : scan_file(e, &a);
	dlp_engine_free(e);
	return rc;
}

static int dlp_detectors_cmd(int argc, char **argv)
{
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			fputs(cli_dlp_help, stdout);
			return 0;
		} else {
			fprintf(stderr, "agentbox dlp detectors: unknown argument '%s'\n", argv[i]);
			return CLI_EXIT_USAGE;
		}
	}
	json_t *arr = json ? json_array() : NULL;
	for (size_t i = 0; i < dlp_detector_count(); i++) {
		const dlp_detector_info *d = dlp_detector_at(i);
		if (!d)
			break;
		if (json)
			json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s}", "kind", d->kind,
							     "class", dlp_class_name(d->cls), "what",
							     d->what, "example", d->example));
		else
			printf("%-24s %-6s %s\n%24s        e.g. %s\n", d->kind, dlp_class_name(d->cls),
			       d->what, "", d->example);
	}
	if (json) {
		json_dumpf(arr, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
		putchar('\n');
		json_decref(arr);
	} else {
		printf("%zu detectors\n", dlp_detector_count());
	}
	return 0;
}

int cmd_dlp(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		fputs(cli_dlp_help, argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : 0;
	}
	if (strcmp(argv[1], "scan") == 0)
		return dlp_scan_cmd(argc - 1, argv + 1);
	if (strcmp(argv[1], "detectors") == 0)
		return dlp_detectors_cmd(argc - 1, argv + 1);
	fprintf(stderr, "agentbox dlp: unknown subcommand '%s' (scan or detectors)\n", argv[1]);
	return CLI_EXIT_USAGE;
}

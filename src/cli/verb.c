/* verb.c - what the verbs that talk to a shared daemon share (egress.c,
 * history.c): their error lines, the check of a token the user typed, one
 * JSON-RPC call with its error mapped to an exit status, and table output. */
#include <stdarg.h>
#include <string.h>

#include "cli.h"
#include "rpc_client.h"

int cli_vusage_error(const char *cmd, const char *fmt, va_list ap)
{
	fprintf(stderr, "agentbox %s: ", cmd);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, ". See 'agentbox %s --help'.\n", cmd);
	return CLI_EXIT_USAGE;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = cli_vusage_error(cmd, fmt, ap);
	va_end(ap);
	return r;
}

int cli_daemon_error(const char *cmd, const char *msg, int status)
{
	fprintf(stderr, "agentbox %s: ", cmd);
	cli_term_puts(stderr, msg);
	fputc('\n', stderr);
	return status;
}

int cli_malformed(const char *cmd, const char *what)
{
	fprintf(stderr, "agentbox %s: the daemon's answer is malformed: %s\n", cmd, what);
	return CLI_EXIT_DAEMON;
}

bool cli_good_token(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f)
			return false;
	return true;
}

int cli_call(const char *cmd, rpc_client *c, const char *method, json_t *params, json_t **result,
	     int *rpc_code)
{
	ab_error err = {0};
	int code = 0;
	if (rpc_client_call(c, method, params, NULL, NULL, result, &code, &err) == 0)
		return 0;
	if (rpc_code)
		*rpc_code = code;
	return cli_daemon_error(cmd, err.msg, code == -32602 ? CLI_EXIT_USAGE : CLI_EXIT_DAEMON);
}

void cli_print_json(json_t *v)
{
	/* ASCII only: every control, C1 and bidirectional character is a
	 * \u escape, so the line is safe on a terminal too. */
	char *text AB_AUTOFREE = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_ENCODE_ANY);
	printf("%s\n", text ? text : "null");
}

size_t cli_columns(const char *s)
{
	size_t n = 0;
	for (; s && *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

void cli_print_padded(const char *s, size_t width)
{
	s = s ? s : "";
	size_t w = cli_columns(s);
	fputs(s, stdout);
	for (; w < width; w++)
		putchar(' ');
}

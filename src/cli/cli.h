/* cli.h - shared declarations of the `agentbox` command-line tool.
 *
 * Each verb lives in its own file (run.c, doctor.c, daemon.c, ...) and is listed
 * in the commands[] table of main.c. A verb gets argv starting at its own
 * name and returns the process exit status.
 */
#ifndef AGENTBOX_CLI_H
#define AGENTBOX_CLI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "internal.h"

/* Exit status for usage errors (bad option, unknown verb). */
#define CLI_EXIT_USAGE 2
/* Exit status when the daemon could not be used (start, protocol, errors). */
#define CLI_EXIT_DAEMON 125

struct cli_command {
	const char *name;
	const char *summary; /* one line for `agentbox --help` */
	const char *help;    /* full text for `agentbox help VERB` */
	int (*fn)(int argc, char **argv);
	bool own_help; /* the verb answers --help itself (per-subcommand help) */
};

int cmd_run(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_daemon(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_routes(int argc, char **argv);
int cmd_egress(int argc, char **argv);
int cmd_dlp(int argc, char **argv);
/* history.c: time travel in a session of a shared daemon */
int cmd_history(int argc, char **argv);
int cmd_rewind(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_diff(int argc, char **argv);

extern const char cli_run_help[];
extern const char cli_doctor_help[];
extern const char cli_daemon_help[];
extern const char cli_audit_help[];
extern const char cli_routes_help[];
extern const char cli_egress_help[];
extern const char cli_dlp_help[];
extern const char cli_history_help[];
extern const char cli_rewind_help[];
extern const char cli_inspect_help[];
extern const char cli_diff_help[];

/* True if argv holds -h or --help before any "--". */
int cli_wants_help(int argc, char **argv);

/* Writes the state directory of agentboxd (audit.db, routes.json) to out,
 * by the daemon's rule: $AGENTBOX_HOME, else /var/lib/agentbox as root,
 * else $XDG_STATE_HOME/agentbox, else ~/.local/state/agentbox. Returns 0, or
 * a negative code with err naming the problem (no rule applies, too long). */
int cli_state_dir(char *out, size_t len, ab_error *err);

/* Writes len bytes of text that a sandbox (or anyone but this program)
 * controls to out for a terminal: each code point a terminal would act on
 * instead of showing it (C0 and C1 controls, DEL, bidirectional controls
 * and invisible format characters; see term.c) as \uXXXX, each
 * byte that is not valid UTF-8 as \xNN, everything else as it is. With
 * max_chars > 0 it stops after that many characters (an escape counts as
 * one) and returns true if text was cut. */
bool cli_term_write(FILE *out, const char *text, size_t len, size_t max_chars);

/* cli_term_write() of a whole NUL-terminated string; NULL prints nothing. */
void cli_term_puts(FILE *out, const char *text);

/* verb.c: for the verbs that talk to a shared daemon (egress, history,
 * rewind, inspect, diff). cmd is what follows "agentbox " ("egress log").
 * A usage error "agentbox CMD: ... See 'agentbox CMD --help'." (exit 2); a
 * daemon's message, escaped (it may quote a sandbox), returning status; a
 * malformed answer (exit 125). */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cli_vusage_error(const char *cmd, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
int cli_daemon_error(const char *cmd, const char *msg, int status);
int cli_malformed(const char *cmd, const char *what);
/* A token the user typed (a request or sandbox id): 1..max printable ASCII
 * characters, no spaces. */
bool cli_good_token(const char *s, size_t max);
/* One call; on an error its message goes out (cli_daemon_error) and the
 * status is returned: 2 for invalid params (-32602), else 125; *rpc_code
 * (may be NULL) is the daemon's error code. */
struct rpc_client;
int cli_call(const char *cmd, struct rpc_client *c, const char *method, json_t *params,
	     json_t **result, int *rpc_code);
/* The daemon's answer as one ASCII line. */
void cli_print_json(json_t *v);
/* Terminal columns of escaped text (one per character); s padded to width. */
size_t cli_columns(const char *s);
void cli_print_padded(const char *s, size_t width);

/* A time given as nanoseconds since 1970 or YYYY-MM-DDTHH:MM:SS[.frac]Z,
 * as nanoseconds since 1970 (audit.c). */
bool cli_parse_time(const char *s, int64_t *out);

#endif

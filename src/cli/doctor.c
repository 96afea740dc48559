/* doctor.c - `agentbox doctor`: which isolation layers does this host give?
 *
 * Asks the daemon (daemon.info), which is the authority: it is what will
 * enforce the layers. If the daemon cannot be started, probes the host
 * directly with ab_probe_layers() and says why the daemon failed. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "cli.h"
#include "rpc_client.h"

const char cli_doctor_help[] =
    "Usage: agentbox doctor [--json] [--socket PATH]\n"
    "\n"
    "Reports each isolation layer (namespaces, pivot_root, no_new_privs,\n"
    "capabilities, seccomp, Landlock, cgroups, rlimits) as present (enforced),\n"
    "degraded (missing, and the operator allowed running without it) or missing\n"
    "(the daemon refuses to create sandboxes). Asks a private daemon (or the one on\n"
    "--socket / $AGENTBOX_SOCKET); if no daemon can be started, probes this host\n"
    "directly and says why the daemon failed. For a user other than root without\n"
    "the cgroup layer, prints how to get it (a delegated cgroup, e.g. a systemd\n"
    "scope with Delegate=yes) or to run without it (--degrade cgroup).\n"
    "\n"
    "Exit status: 0 if every layer is present, 1 otherwise, 2 for bad options.\n"
    "\n"
    "Options:\n"
    "      --json          print one JSON object instead of text\n"
    "      --socket PATH   ask the daemon on this unix socket\n"
    "  -h, --help          show this help\n"
    "\n"
    "Examples:\n"
    "  agentbox doctor\n"
    "  agentbox doctor --json | jq .layers\n";

/* The daemon's layer entry is "present" / "degraded" / "missing", or an
 * object {"status": ..., "why": ...}. Returns the status; *why gets the
 * daemon's reason if it gave one. */
static const char *layer_status(json_t *info, const char *name, json_t *entry, const char **why)
{
	*why = NULL;
	if (json_is_object(entry)) {
		*why = json_string_value(json_object_get(entry, "why"));
		if (!*why)
			*why = json_string_value(json_object_get(entry, "reason"));
		entry = json_object_get(entry, "status");
	}
	if (!*why) {
		json_t *reasons = json_object_get(info, "reasons");
		*why = json_string_value(json_object_get(reasons, name));
	}
	const char *s = json_string_value(entry);
	return s ? s : "unknown";
}

/* How an ordinary user gets the cgroup layer (README, "Quick start"): a
 * delegated cgroup, most simply a systemd scope with Delegate=yes, in which a
 * shared daemon runs. Printed when that layer is missing for a user other
 * than root, since the daemon's refusal alone does not say how to fix it. */
static void print_cgroup_recipe(void)
{
	char daemon[4096];
	ab_error err = {0};
	if (rpc_find_daemon(daemon, sizeof(daemon), &err) < 0)
		snprintf(daemon, sizeof(daemon), "agentboxd");
	printf("\nThe cgroup layer (memory, CPU and process limits) needs a cgroup delegated to\n"
	       "your user. With systemd, start a shared daemon in a delegated scope:\n"
	       "\n"
	       "  systemd-run --user -p Delegate=yes --scope \\\n"
	       "      %s --socket \"$XDG_RUNTIME_DIR/agentbox.sock\"\n"
	       "\n"
	       "and use it: export AGENTBOX_SOCKET=\"$XDG_RUNTIME_DIR/agentbox.sock\" (for both\n"
	       "`agentbox run` and the Python SDK), or `agentbox run --socket PATH`, or\n"
	       "Sandbox(url=PATH). Without systemd, root can create a cgroup, chown it to\n"
	       "you, and start agentboxd inside it (docs/architecture.md). To run without the\n"
	       "layer instead, accepting that these limits are NOT enforced: `agentbox run\n"
	       "--degrade cgroup`, or Sandbox(degrade=[\"cgroup\"]).\n",
	       daemon);
}

/* The egress line: whether sandboxes can reach the network through the
 * sidecar (docs/egress.md). Off is not a missing isolation layer: such
 * sandboxes simply have no network. */
static void print_egress(json_t *eg)
{
	if (!json_is_object(eg)) {
		printf("\nEgress: unknown (the daemon did not answer egress.status)\n");
		return;
	}
	if (!json_is_true(json_object_get(eg, "enabled"))) {
		const char *why = json_string_value(json_object_get(eg, "reason"));
		printf("\nEgress: off, sandboxes have no network: ");
		cli_term_puts(stdout, why ? why : "no reason given");
		putchar('\n');
		return;
	}
	json_t *sc = json_object_get(eg, "sidecar");
	const char *state = json_string_value(json_object_get(sc, "state"));
	const char *pf = json_string_value(json_object_get(eg, "policy_file"));
	printf("\nEgress: on, sidecar ");
	cli_term_puts(stdout, state ? state : "?");
	printf(" (restarts %lld), policy ", (long long)json_integer_value(json_object_get(sc, "restarts")));
	cli_term_puts(stdout, pf ? pf : "none (default deny)");
	putchar('\n');
}

static int report_daemon(json_t *info, json_t *eg, bool as_json)
{
	json_t *layers = json_object_get(info, "layers");
	bool all_present = json_is_object(layers) && json_object_size(layers) > 0;
	const char *name;
	json_t *entry;
	json_object_foreach(layers, name, entry)
	{
		const char *why;
		if (strcmp(layer_status(info, name, entry, &why), "present") != 0)
			all_present = false;
	}
	if (as_json) {
		if (eg)
			json_object_set(info, "egress", eg);
		char *text AB_AUTOFREE = json_dumps(info, JSON_COMPACT);
		printf("%s\n", text ? text : "null");
		return all_present ? 0 : 1;
	}

	/* For layers the daemon does not enforce, the local probe often says why. */
	ab_layer_status probe[AB_LAYER__COUNT];
	bool probed = false;
	const char *ver = json_string_value(json_object_get(info, "version"));
	printf("agentboxd %s (pid %lld), cgroup %s\n", ver ? ver : "?",
	       (long long)json_integer_value(json_object_get(info, "pid")),
	       json_string_value(json_object_get(info, "cgroup"))
		   ? json_string_value(json_object_get(info, "cgroup"))
		   : "?");
	printf("\nIsolation layers:\n");
	json_object_foreach(layers, name, entry)
	{
		const char *why;
		const char *st = layer_status(info, name, entry, &why);
		printf("  %-13s %s", name, st);
		if (why)
			printf(": %s", why);
		if (strcmp(st, "present") != 0) {
			int l = ab_layer_from_name(name);
			if (l >= 0) {
				if (!probed) {
					ab_probe_layers(probe);
					probed = true;
				}
				if (!probe[l].present && probe[l].why[0])
					printf(" (host probe: %s)", probe[l].why);
			}
		}
		putchar('\n');
	}
	json_t *tiers = json_object_get(info, "tiers");
	if (json_is_array(tiers)) {
		printf("\nTiers:");
		size_t i;
		json_t *t;
		json_array_foreach(tiers, i, t)
		    printf(" %s", json_string_value(t) ? json_string_value(t) : "?");
		putchar('\n');
	}
	print_egress(eg);
	printf("\n%s\n", all_present ? "Every isolation layer is present."
				     : "Some isolation layers are NOT enforced (see above).");
	const char *why;
	json_t *cg = json_object_get(layers, "cgroup");
	if (geteuid() != 0 && cg && strcmp(layer_status(info, "cgroup", cg, &why), "present") != 0)
		print_cgroup_recipe();
	return all_present ? 0 : 1;
}

static int report_probe(const char *daemon_error, bool as_json)
{
	ab_layer_status probe[AB_LAYER__COUNT];
	ab_probe_layers(probe);
	if (as_json) {
		json_t *out AB_AUTOJSON =
		    json_pack("{s:s, s:{}}", "daemon_error", daemon_error, "probe");
		json_t *layers = json_object_get(out, "probe");
		for (int l = 0; l < AB_LAYER__COUNT; l++)
			json_object_set_new(layers, ab_layer_name(l),
					    json_pack("{s:s, s:s}", "status",
						      probe[l].present ? "present" : "missing",
						      "why", probe[l].why));
		char *text AB_AUTOFREE = json_dumps(out, JSON_COMPACT);
		printf("%s\n", text ? text : "null");
		return 1;
	}
	printf("agentbox doctor: could not ask the daemon: %s\n"
	       "Probing this host directly instead:\n\n",
	       daemon_error);
	for (int l = 0; l < AB_LAYER__COUNT; l++) {
		printf("  %-13s %s", ab_layer_name(l), probe[l].present ? "present" : "missing");
		if (!probe[l].present && probe[l].why[0])
			printf(": %s", probe[l].why);
		putchar('\n');
	}
	printf("\nThe daemon could not be used, so no sandbox can run until that is fixed.\n");
	if (geteuid() != 0 && !probe[AB_LAYER_CGROUP].present)
		print_cgroup_recipe();
	return 1;
}

int cmd_doctor(int argc, char **argv)
{
	static const struct option options[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"socket", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	bool as_json = false;
	const char *socket_path = NULL;
	optind = 1;
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
		switch (opt) {
		case 'j':
			as_json = true;
			break;
		case 's':
			socket_path = optarg;
			break;
		case 'h':
			fputs(cli_doctor_help, stdout);
			return 0;
		default:
			fprintf(stderr,
				"agentbox doctor: %s option '%s'. See 'agentbox doctor --help'.\n",
				opt == ':' ? "missing value for" : "unknown", argv[optind - 1]);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "agentbox doctor: unexpected argument '%s'\n", argv[optind]);
		return CLI_EXIT_USAGE;
	}

	ab_error err = {0};
	rpc_client *c = NULL;
	json_t *info AB_AUTOJSON = NULL, *eg AB_AUTOJSON = NULL;
	if (rpc_client_open(socket_path, &c, &err) == 0 &&
	    rpc_client_call(c, "daemon.info", NULL, NULL, NULL, &info, NULL, &err) == 0) {
		ab_error eg_err = {0};
		rpc_client_call(c, "egress.status", NULL, NULL, NULL, &eg, NULL, &eg_err);
	}
	rpc_client_close(c);
	if (!info)
		return report_probe(err.msg, as_json);
	return report_daemon(info, eg, as_json);
}

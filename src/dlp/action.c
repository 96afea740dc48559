/* action.c - the names of policy actions, shared by the daemon (which reads
 * the policy file) and the sidecar (which applies it). */
#include <string.h>

#include "dlp_internal.h"

static const char *const names[] = {"unset", "off", "log", "redact", "block"};

const char *dlp_action_name(enum dlp_action a)
{
	return a <= DLP_ACTION_BLOCK ? names[a] : "unset";
}

enum dlp_action dlp_action_parse(const char *name)
{
	for (int a = DLP_ACTION_OFF; name && a <= DLP_ACTION_BLOCK; a++)
		if (strcmp(name, names[a]) == 0)
			return (enum dlp_action)a;
	return DLP_ACTION_UNSET;
}

enum dlp_action dlp_action_default(enum dlp_class c)
{
	return c == DLP_SECRET ? DLP_ACTION_BLOCK : DLP_ACTION_REDACT;
}

long dlp_detector_index(const char *kind)
{
	for (size_t i = 0; kind && i < dlp_detector_count(); i++) {
		const dlp_detector_info *d = dlp_detector_at(i);
		if (d && strcmp(d->kind, kind) == 0)
			return (long)i;
	}
	return -1;
}

/* version.c - the version of the library loaded at run time. */
#include "agentbox.h"

const char *ab_version(void)
{
	return AGENTBOX_VERSION;
}

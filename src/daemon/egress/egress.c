/* egress.c - the daemon's egress module (docs/egress.md). */
#include <unistd.h>

#include "egress/egress.h"

int egress_init(const char *home, const char *exe_dir, const char *policy_file, ab_error *err)
{
	(void)home;
	(void)exe_dir;
	(void)policy_file;
	(void)err;
	return 0;
}

void egress_shutdown(void)
{
}

bool egress_enabled(void)
{
	return false;
}

const char *egress_ca_bundle(void)
{
	return NULL;
}

void egress_attach(const char *sandbox_id, int listen_fd)
{
	(void)sandbox_id;
	close(listen_fd);
}

void egress_detach(const char *sandbox_id)
{
	(void)sandbox_id;
}

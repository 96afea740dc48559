/* ca.c - the egress CA (docs/egress.md). */
#include <errno.h>

#include "ca.h"
#include "internal.h"

int eg_ca_ensure(const char *dir, ab_error *err)
{
	return ab_error_set(err, -ENOSYS, "egress CA in %s: not built yet", dir);
}

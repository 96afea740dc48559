/* main.c - agentbox-egress, the sidecar proxy (docs/egress.md). */
#include <stdio.h>

int main(void)
{
	fprintf(stderr, "agentbox-egress: not built yet\n");
	return 1;
}

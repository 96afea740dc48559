/* rpc_stubs.h - what fuzz_rpc.c controls in the stubbed daemon. */
#ifndef AB_RPC_STUBS_H
#define AB_RPC_STUBS_H

#include "daemon.h"

/* Sessions sandbox_find knows: "sb-ready" (its workspace is a scratch
 * directory), "sb-busy" (running) and "sb-dead". */
struct fuzz_sandboxes {
	sandbox ready, busy, dead;
};
extern struct fuzz_sandboxes fuzz_sb;
/* audit_broken() reports a broken log while this is set. */
extern bool fuzz_audit_broken;

#endif

/* fscreds.h - the file-system credentials the daemon takes to touch a
 * sandbox's workspace (files.c, wsstore.c).
 *
 * As root the daemon touches a workspace with the sandbox's own host uid
 * and gid as file-system credentials (setfsuid/setfsgid; the kernel drops
 * the file capabilities such as CAP_DAC_OVERRIDE while they differ from
 * 0). Whatever a path walk gets wrong, the kernel then refuses to create,
 * read or list anything that the sandbox's host user could not, so a bug
 * cannot make root-owned files or directories appear on the host. The
 * workspace itself is opened before (its parent directories are the
 * daemon's, mode 0700). An unprivileged daemon already is that user. The
 * credentials belong to the calling thread (setfsuid is per thread: the
 * audit writer thread keeps the daemon's), and the loop's thread restores
 * them before anything else runs. Implemented in fscreds.c. */
#ifndef AB_FSCREDS_H
#define AB_FSCREDS_H

#include <stdbool.h>
#include <sys/types.h>

#include "config.h"

typedef struct {
	uid_t uid;
	gid_t gid;
	bool on;
} fs_creds;

/* Takes uid:gid as the calling thread's file-system credentials when the
 * daemon is root (nothing otherwise), the old ones into saved. -EPERM when
 * the kernel did not take them. */
int creds_enter_ids(uid_t uid, gid_t gid, fs_creds *saved, ab_error *err);
/* Gives back what creds_enter_ids saved (nothing if it took nothing). */
void creds_leave(fs_creds *saved);

#endif

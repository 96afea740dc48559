/* fscreds.c - the sandbox's file-system credentials (fscreds.h). */
#include <sys/fsuid.h>

#include "fscreds.h"

void creds_leave(fs_creds *saved)
{
	if (!saved->on)
		return;
	setfsuid(saved->uid);
	setfsgid(saved->gid);
	saved->on = false;
}

int creds_enter_ids(uid_t uid, gid_t gid, fs_creds *saved, ab_error *err)
{
	saved->on = false;
	if (!D.privileged)
		return 0;
	saved->gid = (gid_t)setfsgid(gid);
	saved->uid = (uid_t)setfsuid(uid);
	saved->on = true;
	/* setfsuid reports no error; reading the values back does. */
	if ((uid_t)setfsuid((uid_t)-1) != uid || (gid_t)setfsgid((gid_t)-1) != gid) {
		creds_leave(saved);
		return ab_error_set(err, -EPERM,
				    "cannot take the sandbox's file-system credentials (uid %u)",
				    (unsigned)uid);
	}
	return 0;
}

/* path.h - path confinement (internal to agentbox). API file names are
 * relative to the workspace; these open them without leaving it. */
#ifndef AB_PATH_H
#define AB_PATH_H

#include "internal.h"

/* Checks a name given by a client: relative, no "..", no empty or "."
 * components that would escape, no NUL, at most 4096 bytes and 64 levels.
 * Writes the normalised relative path ("a/b") to out. */
int ab_path_check(const char *name, char *out, size_t outlen, ab_error *err);
/* Opens name beneath the directory dirfd without following any symlink and
 * without crossing mounts (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
 * RESOLVE_NO_MAGICLINKS|RESOLVE_NO_XDEV). flags are open(2) flags; O_CLOEXEC
 * and O_NOFOLLOW are added. Returns the fd. */
int ab_path_open_beneath(int dirfd, const char *name, int flags, mode_t mode, ab_error *err);
/* Opens the directory that holds the last component of rel beneath dirfd,
 * one component at a time: each is opened with openat2 under the rules of
 * ab_path_open_beneath, relative to the descriptor of the one before, so no
 * component can be a symlink, leave dirfd or cross a mount, whatever the
 * sandbox renames meanwhile. rel must be normalised by ab_path_check. With
 * mkdirs, a missing directory is created with mkdirat(parent, component,
 * mode) and then opened like any other name. Returns an O_PATH directory
 * descriptor and points *leaf at rel's last component. */
int ab_path_open_parent(int dirfd, const char *rel, bool mkdirs, mode_t mode, const char **leaf,
			ab_error *err);
/* Opens rel (normalised by ab_path_check) beneath dirfd one component at a
 * time: its directory with ab_path_open_parent, then its last component
 * relative to that directory with flags (O_CLOEXEC and O_NOFOLLOW added). */
int ab_path_walk_open(int dirfd, const char *rel, int flags, mode_t mode, ab_error *err);

#endif

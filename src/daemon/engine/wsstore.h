/* wsstore.h - versions of a sandbox's workspace for time travel
 * (docs/time-travel.md, "Workspace versions"): a content-addressed store of
 * file contents, and manifests (JSON) that name a version of the tree.
 * Single-threaded: one store belongs to one sandbox and the loop's thread. */
#ifndef AB_WSSTORE_H
#define AB_WSSTORE_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "internal.h" /* ab_error */

/* The bounds of one capture: a workspace beyond them is refused (-E2BIG,
 * -ELOOP), never captured in part, since a restore removes whatever its
 * manifest does not name. */
#define WS_MAX_ENTRIES 100000		/* files, dirs, links and skipped entries */
#define WS_MAX_DEPTH 256		/* directory levels below the workspace */
#define WS_MAX_BYTES (4ull << 30)	/* sum of the sizes of the files */

typedef struct ws_store ws_store;
/* A store kept in directory dir (created mode 0700 if missing; the daemon owns it). */
ws_store *ws_store_new(const char *dir, ab_error *err);
/* Frees the store and removes dir with everything in it. */
void ws_store_free(ws_store *s);
/* Takes a version of the tree under the open directory wsfd. Returns a manifest (new reference):
 * {"files": {"a.txt": {"sha256": "<hex>", "size": n, "mode": 420}, "d/b.csv": {...}},
 *  "dirs": {"d": {"mode": 493}}, "links": {"l": {"target": "a.txt"}}}
 * paths relative, '/'-separated, sorted in JSON key order as jansson keeps them.
 * *added = bytes newly stored by this capture (0 when nothing changed).
 * FIFOs, sockets, devices, names or link targets that are not UTF-8 and
 * entries that vanish or change type while they are read are left out and
 * counted in "skipped" (present only when > 0). NULL on error. */
json_t *ws_capture(ws_store *s, int wsfd, uint64_t *added, ab_error *err);
/* Makes the tree under wsfd exactly the manifest: removes what is not in it (any type,
 * never following symlinks), writes files whose content differs, recreates dirs/links,
 * sets modes. Files are created with fs credentials uid:gid when the daemon is root
 * (see creds_enter_ids in fscreds.h); returns the number of files written, or <0.
 * A malformed manifest, or one naming an object the store lacks, is refused
 * before anything is changed. */
int ws_restore(ws_store *s, const json_t *manifest, int wsfd, uid_t uid, gid_t gid, ab_error *err);
/* Reads up to max bytes of file path from offset, as in the manifest. *data malloc'd
 * (NUL-terminated, not counted in *len). 0 or a negative errno. */
int ws_read(ws_store *s, const json_t *manifest, const char *path, uint64_t offset, size_t max,
	    char **data, size_t *len, ab_error *err);
/* Entries of directory dir ("" = root) in the manifest, sorted by name:
 * [{"name","kind":"file"|"dir"|"link","size","mode"}] (links also carry
 * "target"; their size is the target's length). NULL on error. */
json_t *ws_list(const json_t *manifest, const char *dir, ab_error *err);
/* {"added": [paths], "removed": [paths], "changed": [paths]} between two manifests (files and
 * links; a changed content, mode, link target or kind is "changed"). NULL when either manifest
 * is malformed or out of memory. */
json_t *ws_diff(const json_t *a, const json_t *b);
/* Deletes every object no manifest in live[0..n) refers to; returns bytes freed. Deletes
 * nothing when one of the manifests is malformed (what it refers to is unknown). */
uint64_t ws_gc(ws_store *s, json_t *const *live, size_t n);
/* Bytes of the objects held. */
uint64_t ws_store_bytes(const ws_store *s);
/* Files whose content the last capture read (the others were known from the
 * stat cache): for tests and metrics. */
unsigned ws_store_last_reads(const ws_store *s);

#endif

/* agentbox.h - public C API of libagentbox.
 *
 * What a program outside this tree may use: the library's version, the
 * limits a sandbox runs under, the isolation layers this host offers,
 * reading and verifying the audit log, and the tier router with its
 * learned routes. Only the declarations marked AB_API are exported by
 * libagentbox.so; the rest of the runtime (frame codec, jail, cgroups,
 * audit writer) is internal to agentbox's own programs. This header needs
 * nothing but the C library.
 *
 * Conventions (see docs/design/conventions.md):
 *  - functions return 0 (or a non-negative count) on success and a negative
 *    errno-style code on failure, and then fill the ab_error passed in with a
 *    message that names what failed;
 *  - the library never prints and never exits;
 *  - every fd the library creates is O_CLOEXEC.
 */
#ifndef AGENTBOX_H
#define AGENTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks what libagentbox.so exports; everything else is hidden. */
#if defined(__GNUC__)
#define AB_API __attribute__((visibility("default")))
#else
#define AB_API
#endif

#define AGENTBOX_VERSION "0.1.0"

/* The version of the library loaded at run time (AGENTBOX_VERSION of the
 * header it was built with). Static storage. */
AB_API const char *ab_version(void);

/* ------------------------------------------------------------------ errors */

typedef struct ab_error {
	int code;      /* negative errno-style code, 0 when no error */
	char msg[512]; /* human-readable, names the failing thing */
} ab_error;

/* ------------------------------------------------------------------ limits */

typedef struct ab_limits {
	double timeout_s;      /* wall clock per run */
	uint64_t memory_mb;    /* cgroup memory limit of the whole sandbox */
	uint32_t pids;	       /* cgroup pids.max */
	double cpu;	       /* CPU cores (quota / period), 0 = unlimited */
	uint64_t disk_mb;      /* size of /tmp and cap on file size */
	uint64_t output_bytes; /* per stream, per run */
} ab_limits;

/* Open descriptors one sandbox may hold in all its processes together: each
 * process gets RLIMIT_NOFILE = ab_limits_nofile(), and the pids limit
 * caps the processes, so the product never exceeds this (docs/limits.md).
 * Files held without a descriptor (mappings, descriptors in flight over a
 * unix socket) are charged to the sandbox's memory cgroup instead. */
#define AB_SANDBOX_FILES_MAX 131072u

/* Fills the defaults (timeout 30 s, memory 1024 MB, 128 pids, 1 cpu,
 * disk 512 MB, output 1 MiB). */
AB_API void ab_limits_default(ab_limits *l);
/* RLIMIT_NOFILE (soft and hard) of every process of a sandbox with these
 * limits: AB_SANDBOX_FILES_MAX / pids, at most 1024 and at least 64 (the
 * pids maximum, 2048, keeps that within the budget); 64 for nano. */
AB_API unsigned ab_limits_nofile(const ab_limits *l, bool nano);
/* Inode cap of a disk_mb tmpfs (/tmp, the workspace): 1024 per MB, at
 * least 4096, at most 1048576. The tmpfs itself gets disk_mb + 1 MB so
 * that one file of exactly the file-size limit (disk_mb) fits. */
AB_API uint64_t ab_disk_inodes(uint64_t disk_mb);
/* Parses a human size in MB ("512", "2G", "256M") for the CLI. */
AB_API int ab_parse_size_mb(const char *s, uint64_t *out_mb, ab_error *err);
/* Parses seconds ("30", "1.5", "2m"). */
AB_API int ab_parse_seconds(const char *s, double *out, ab_error *err);

/* ------------------------------------------------------- isolation layers */

enum ab_layer {
	AB_LAYER_USERNS,
	AB_LAYER_PIDNS,
	AB_LAYER_MOUNTNS,
	AB_LAYER_NETNS,
	AB_LAYER_IPCNS,
	AB_LAYER_UTSNS,
	AB_LAYER_CGROUPNS,
	AB_LAYER_PIVOT_ROOT,
	AB_LAYER_NO_NEW_PRIVS,
	AB_LAYER_CAPS,
	AB_LAYER_SECCOMP,
	AB_LAYER_LANDLOCK,
	AB_LAYER_CGROUP,
	AB_LAYER_RLIMITS,
	AB_LAYER__COUNT
};

AB_API const char *ab_layer_name(enum ab_layer l);
/* Returns the layer for a name, or -1. */
AB_API int ab_layer_from_name(const char *name);
/* What a sandbox loses when layer l is missing, as one sentence fragment for
 * warnings ("memory, CPU and process limits are NOT enforced"). Static
 * storage; never NULL. */
AB_API const char *ab_layer_consequence(enum ab_layer l);

typedef struct ab_layer_status {
	bool present;
	char why[256]; /* when missing: what the probe saw */
} ab_layer_status;

/* Probes this host (without side effects that outlive the call). */
AB_API void ab_probe_layers(ab_layer_status out[AB_LAYER__COUNT]);

/* ------------------------------------------------------------------ audit
 *
 * The tamper-evident audit log (docs/audit.md). Events are rows of a SQLite
 * database in WAL mode. Each event's hash is SHA-256(previous hash ||
 * canonical bytes of the event); the first event's previous hash is 32 zero
 * bytes. Every checkpoint_every events or checkpoint_seconds (whichever
 * comes first, checked at commit) a checkpoint (seq, head hash, time) is
 * signed with an Ed25519 key and stored, and appended to an external
 * checkpoints file if one is configured, so that a copy kept elsewhere can
 * prove later that the log was not truncated or rewritten. */

/* The kinds of event the daemon records, NULL-terminated (docs/audit.md,
 * "Event kinds"). A new kind is added here and there; `agentbox audit query
 * --kind` refuses a kind that is not listed. */
AB_API extern const char *const ab_audit_kinds[];

typedef struct ab_audit_report {
	int64_t events;	     /* events checked */
	int64_t checkpoints; /* signatures checked */
	int64_t bad_seq;     /* first bad sequence number, 0 if none */
	bool ok;
	bool torn_tail; /* events missing after the last external checkpoint */
	char why[512];	/* what is wrong, precisely */
} ab_audit_report;

/* Verifies a log: either a database (db_path) or an export (jsonl_path, as
 * written by ab_audit_export); pubkey_hex may be NULL to take the key
 * stored in the log (then a re-signed log is only caught by an external
 * checkpoints file or a pinned key). external_checkpoints may be NULL.
 * Returns 0 when the verification ran (rep->ok says the verdict), negative
 * if it could not run (file missing, not a log). */
AB_API int ab_audit_verify(const char *db_path, const char *jsonl_path, const char *pubkey_hex,
			   const char *external_checkpoints, ab_audit_report *rep, ab_error *err);

typedef struct ab_audit_filter {
	const char *session; /* NULL: any */
	const char *kind;    /* NULL: any */
	int64_t since_ns;    /* 0: any */
	int64_t until_ns;    /* 0: any */
	int64_t after_seq;   /* only seq > after_seq (for tail -f) */
	int64_t limit;	     /* 0: no limit */
} ab_audit_filter;

/* Calls fn for each matching event, in sequence order, with the event as
 * one line of JSON text (no newline; the object ab_audit_export writes:
 * the canonical fields plus "prev" and "hash", hex). The text is borrowed
 * for the call. fn returns non-zero to stop. Checkpoints are not included.
 * Opens the database read-only. */
typedef int (*ab_audit_line_fn)(const char *json, size_t len, void *ctx);
AB_API int ab_audit_query_lines(const char *db_path, const ab_audit_filter *f, ab_audit_line_fn fn,
				void *ctx, ab_error *err);
/* Writes the whole log as JSON Lines: a header line {"format":
 * "agentbox-audit/1", "pubkey": hex}, each event (as ab_audit_query_lines
 * gives it), and each checkpoint {"checkpoint": {"seq", "head", "ts", "sig"}}
 * after the event it covers. */
AB_API int ab_audit_export(const char *db_path, FILE *out, ab_error *err);

/* ------------------------------------------------------------------ router
 *
 * Static analysis of a cell for tier="auto" (docs/router.md). A real
 * tokenizer (strings of every kind, comments, continuation lines,
 * brackets) finds imports and uses of processes, the network and file
 * writes; anything the nano tier cannot do sends the cell to heavy. */

enum ab_route_tier { AB_ROUTE_NANO = 0, AB_ROUTE_HEAVY = 1 };

typedef struct ab_route {
	enum ab_route_tier tier;
	char reason[256]; /* "imports pandas (not available in nano)", "uses subprocess", ... */
	/* Every top-level module imported with a literal name, deduplicated,
	 * comma-separated ("json,os,pandas"). */
	char modules[1024];
} ab_route;

/* The modules the nano tier offers (NULL-terminated, static): the Python
 * standard library minus what needs processes, the network, native
 * extensions outside the standard library or a writable file system. */
AB_API const char *const *ab_router_nano_modules(void);

/* Decides the tier of one cell. extra_heavy is a NULL-terminated list of
 * module names learned to need heavy (may be NULL). Never fails: code that
 * cannot be tokenized (unterminated string, bad encoding) routes to heavy
 * with the reason. */
AB_API void ab_router_route(const char *code, size_t len, const char *const *extra_heavy,
			    ab_route *out);

/* ------------------------------------------------------------ learned routes
 * What made a nano run need heavy, remembered in $AGENTBOX_HOME/routes.json
 * (docs/router.md). Two kinds of entries: a module (the next cell importing it
 * routes to heavy) and a cell (by SHA-256 of its code, for causes that are not
 * a module: a refused syscall, nano's memory cap). At most 1024 modules and
 * 4096 cells; when full, the entry with the oldest "last" is dropped. A
 * handle is used by one thread at a time. */
typedef struct ab_routes ab_routes;

/* Loads path into a new handle (*out, released with ab_routes_free); a
 * missing file is an empty store. A file that is not a valid store (bad JSON,
 * wrong "format", wrong types, bad keys, over the caps, over 16 MiB) is an
 * error that names the file and the problem. */
AB_API int ab_routes_load(const char *path, ab_routes **out, ab_error *err);
/* NULL is a no-op. */
AB_API void ab_routes_free(ab_routes *r);
/* NULL-terminated list of the learned module names, sorted, owned by r and
 * valid until the next call that changes r or ab_routes_free; suitable as
 * ab_router_route's extra_heavy. r NULL gives an empty list. */
AB_API const char *const *ab_routes_modules(const ab_routes *r);
/* The stored reason for this cell digest (64 lowercase hex), or NULL; owned
 * by r, valid until the next call that changes r. */
AB_API const char *ab_routes_cell(const ab_routes *r, const char *sha256_hex);
/* The kinds of cause a learned route may give as its reason, NULL-terminated
 * and static. The store holds only these: never a run's error text, which
 * would tell one client what another ran. */
AB_API const char *const *ab_routes_causes(void);
/* Adds (or refreshes: hits+1, last time and reason updated) an entry in memory.
 * kind is "module" or "cell"; key is the module name (a dotted Python
 * identifier, top-level name expected, <=128 bytes) or the digest; reason is
 * one of ab_routes_causes(). Rejects bad keys and other reasons (-EINVAL).
 * Strings are copied. */
AB_API int ab_routes_learn(ab_routes *r, const char *kind, const char *key, const char *reason,
			   ab_error *err);
/* Removes one entry (kind NULL: both kinds with that key) or, key NULL, all
 * (of kind, or of both kinds). Returns how many were removed, -EINVAL for an
 * unknown kind, -ENOMEM. */
AB_API int ab_routes_forget(ab_routes *r, const char *kind, const char *key);
/* Writes the store atomically (temp file in the same dir, fsync, rename,
 * mode 0600) after merging in what another process saved meanwhile (the file
 * is re-read under an exclusive flock on path + ".lock"): entries learned
 * elsewhere are added, hit counts added up, entries forgotten in r since load
 * stay forgotten, and entries removed from the file elsewhere stay removed
 * unless r learned them again. r then holds what was written. On failure the
 * file and r are unchanged. */
AB_API int ab_routes_save(ab_routes *r, const char *path, ab_error *err);
/* True if the file changed (mtime/size/inode) since r was loaded or saved:
 * the daemon reloads then (e.g. after `agentbox routes clear`). */
AB_API bool ab_routes_stale(const ab_routes *r, const char *path);
/* True if r was loaded from a file in an older format (agentbox-routes/1,
 * whose reasons quote error text) that was migrated in memory: saving r
 * rewrites the file without it. */
AB_API bool ab_routes_migrated(const ab_routes *r);

#ifdef __cplusplus
}
#endif
#endif

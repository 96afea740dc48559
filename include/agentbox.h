/* agentbox.h - public C API of libagentbox.
 *
 * The library holds every piece of the runtime that is not a program of its
 * own: the executor frame codec, limits, path confinement, the jail layers
 * (namespaces, mounts, capabilities, seccomp, Landlock, cgroups) and host
 * probing for `agentbox doctor`.
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

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AGENTBOX_VERSION "0.1.0"

/* ------------------------------------------------------------------ errors */

typedef struct ab_error {
	int code;      /* negative errno-style code, 0 when no error */
	char msg[512]; /* human-readable, names the failing thing */
} ab_error;

/* Sets err (if not NULL) to code and a printf-style message and returns
 * code, so that callers can write `return ab_error_set(err, -EINVAL, ...)`. */
int ab_error_set(ab_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like ab_error_set but appends ": strerror(-code)". */
int ab_error_errno(ab_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes an existing message with more context ("create sandbox: ..."). */
int ab_error_prefix(ab_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------- cleanup helpers */

static inline void ab__freep(void *p)
{
	free(*(void **)p);
}
static inline void ab__closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
static inline void ab__json_decrefp(json_t **j)
{
	json_decref(*j);
}
#define AB_AUTOFREE __attribute__((cleanup(ab__freep)))
#define AB_AUTOCLOSE __attribute__((cleanup(ab__closep)))
#define AB_AUTOJSON __attribute__((cleanup(ab__json_decrefp)))
static inline int ab_steal_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}
static inline void *ab_steal_ptr(void *pp)
{
	void **p = (void **)pp, *r = *p;
	*p = NULL;
	return r;
}

/* ------------------------------------------------------------ frame codec
 *
 * Executor protocol frames: a 4-byte big-endian length followed by that many
 * bytes of one JSON object. Frames larger than the cap are a protocol error:
 * the peer is not trusted. */

#define AB_FRAME_MAX_DEFAULT (64u << 20)
/* The cap on frames between runs (ready, fatal): they are small. */
#define AB_FRAME_IDLE_MAX (64u << 10)
/* The most JSON values (arrays, objects, elements) a decoded frame may hold:
 * a result has a few hundred; parsing costs memory per value. */
#define AB_FRAME_MAX_VALUES 65536u
/* What a result frame may take beyond its run's output limit. */
#define AB_FRAME_RESULT_BASE (1u << 20)

/* The largest result frame of a run whose output limit is output_bytes:
 * AB_FRAME_RESULT_BASE plus twice that limit, at most AB_FRAME_MAX_DEFAULT.
 * The daemon refuses larger frames; the executor fits its result into it. */
size_t ab_frame_max_for_output(uint64_t output_bytes);

/* Encodes obj as one frame (header included) into a new malloc'd buffer. */
int ab_frame_encode(const json_t *obj, char **out, size_t *outlen, ab_error *err);
/* Encodes obj and writes one frame to fd (blocking; EINTR retried).
 * Does not take ownership of obj. */
int ab_frame_write(int fd, const json_t *obj, ab_error *err);
/* Reads exactly one frame from a blocking fd. On success *out owns a new
 * reference to a JSON object. Returns -EPIPE on a clean EOF before any byte. */
int ab_frame_read(int fd, size_t max, json_t **out, ab_error *err);

/* Incremental decoder for a non-blocking reader (the daemon). */
typedef struct ab_frame_decoder ab_frame_decoder;
ab_frame_decoder *ab_frame_decoder_new(size_t max);
void ab_frame_decoder_free(ab_frame_decoder *d);
/* Appends bytes. Returns 0, or a negative code if the stream is corrupt
 * (oversized length, or bytes after a corrupt frame). */
int ab_frame_decoder_feed(ab_frame_decoder *d, const void *buf, size_t len, ab_error *err);
/* Pops the next complete frame: 1 and *out set, 0 if none is complete yet,
 * negative if the complete frame is not a JSON object or holds more than
 * AB_FRAME_MAX_VALUES values. */
int ab_frame_decoder_next(ab_frame_decoder *d, json_t **out, ab_error *err);
/* Changes the cap for the frames still to come (one already buffered over
 * the new cap makes the stream corrupt at the next feed or next). */
void ab_frame_decoder_set_max(ab_frame_decoder *d, size_t max);
/* Bytes of memory the decoder holds now (its buffer's capacity). */
size_t ab_frame_decoder_footprint(const ab_frame_decoder *d);

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
void ab_limits_default(ab_limits *l);
/* Overrides the fields present in a JSON object {"timeout": s, "memory_mb":
 * n, "pids": n, "cpu": x, "disk_mb": n, "output_bytes": n}; unknown keys and
 * out-of-range values are errors that name the key. */
int ab_limits_from_json(ab_limits *l, const json_t *obj, ab_error *err);
json_t *ab_limits_to_json(const ab_limits *l);
/* RLIMIT_NOFILE (soft and hard) of every process of a sandbox with these
 * limits: AB_SANDBOX_FILES_MAX / pids, at most 1024 and at least 64 (the
 * pids maximum, 2048, keeps that within the budget); 64 for nano. */
unsigned ab_limits_nofile(const ab_limits *l, bool nano);
/* Inode cap of a disk_mb tmpfs (/tmp, the workspace): 1024 per MB, at
 * least 4096, at most 1048576. The tmpfs itself gets disk_mb + 1 MB so
 * that one file of exactly the file-size limit (disk_mb) fits. */
uint64_t ab_disk_inodes(uint64_t disk_mb);
/* Parses a human size in MB ("512", "2G", "256M") for the CLI. */
int ab_parse_size_mb(const char *s, uint64_t *out_mb, ab_error *err);
/* Parses seconds ("30", "1.5", "2m"). */
int ab_parse_seconds(const char *s, double *out, ab_error *err);

/* ---------------------------------------------------------- path confinement
 *
 * API file names are relative to the workspace. */

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

const char *ab_layer_name(enum ab_layer l);
/* Returns the layer for a name, or -1. */
int ab_layer_from_name(const char *name);
/* What a sandbox loses when layer l is missing, as one sentence fragment for
 * warnings ("memory, CPU and process limits are NOT enforced"). Static
 * storage; never NULL. */
const char *ab_layer_consequence(enum ab_layer l);

typedef struct ab_layer_status {
	bool present;
	char why[256]; /* when missing: what the probe saw */
} ab_layer_status;

/* Probes this host (without side effects that outlive the call). */
void ab_probe_layers(ab_layer_status out[AB_LAYER__COUNT]);

/* ----------------------------------------------------------------- seccomp
 *
 * The heavy tier's policy is a deny-list: default allow, listed calls fail
 * with EPERM (or ENOSYS where userspace must fall back, e.g. clone3), any
 * architecture but the native one kills the process, x32 numbers are
 * refused. */

typedef struct ab_seccomp_opts {
	bool allow_exec; /* heavy: true */
} ab_seccomp_opts;

/* Builds and loads the filter into the calling thread (requires
 * no_new_privs or CAP_SYS_ADMIN). */
int ab_seccomp_apply_heavy(const ab_seccomp_opts *opts, ab_error *err);
/* Builds the filter and exports its BPF program to fd (for unit tests
 * and `agentbox doctor --dump-seccomp`). */
int ab_seccomp_export_heavy(const ab_seccomp_opts *opts, int fd, ab_error *err);
/* The nano tier's policy is an allowlist: only what CPython needs to run a
 * cell (memory, time, threads via clone with CLONE_THREAD only, read-only
 * openat, reading directories, writing to already open descriptors,
 * signals to itself); everything else fails with EPERM (ENOSYS for clone3),
 * foreign architectures kill. No socket, no execve, no fork. */
int ab_seccomp_apply_nano(ab_error *err);
int ab_seccomp_export_nano(int fd, ab_error *err);
/* Names of the system calls the nano policy allows (NULL-terminated, static). */
const char *const *ab_seccomp_nano_allowed(void);

/* Names of the system calls the heavy policy refuses (NULL-terminated, static). */
const char *const *ab_seccomp_heavy_denied(void);

/* ---------------------------------------------------------------- landlock */

typedef struct ab_landlock_rule {
	const char *path;
	bool writable; /* false: read + execute only */
} ab_landlock_rule;

/* Returns the Landlock ABI version of the running kernel, or a negative
 * code (-EOPNOTSUPP if not compiled in / disabled). */
int ab_landlock_abi(void);
/* Restricts the calling thread to the listed paths (every filesystem
 * access right the kernel knows about is handled; paths that do not exist
 * are skipped). On ABI >= 6 also scopes abstract unix sockets and signals. */
int ab_landlock_apply(const ab_landlock_rule *rules, size_t n, ab_error *err);

/* -------------------------------------------------------------------- caps */

/* Sets no_new_privs, clears the bounding and ambient sets, locks the
 * securebits (NOROOT, NO_SETUID_FIXUP, KEEP_CAPS off) and drops every
 * capability (effective, permitted, inheritable). Call in the sandbox after
 * all privileged set-up. */
int ab_caps_drop_all(ab_error *err);
/* Sets PR_SET_DUMPABLE to 0. */
int ab_set_nondumpable(ab_error *err);

/* ------------------------------------------------------------------ cgroup
 *
 * A cgroup set holds one directory per hierarchy (v2: one; v1: memory,
 * pids, cpu, and freezer when present), always created beneath the cgroup
 * the calling process runs in, as read from /proc/self/cgroup. */

typedef struct ab_cgroup ab_cgroup;

/* Detects the hierarchy layout and prepares the daemon's parent group
 * "<own cgroup>/agentbox-<pid>" (on v2 the daemon moves itself into a leaf
 * "<own>/agentbox-<pid>/daemon" so that controllers can be enabled).
 * Returns -EACCES/-ENOENT etc. with a message if cgroups cannot be used. */
int ab_cgroup_root_init(ab_error *err);
/* True once ab_cgroup_root_init succeeded. */
bool ab_cgroup_available(void);
/* "v1" or "v2" (or "none"). */
const char *ab_cgroup_version(void);
/* Creates the group for one sandbox and writes its limits. */
int ab_cgroup_create(const char *name, const ab_limits *lim, ab_cgroup **out, ab_error *err);
/* Rewrites memory/pids/cpu limits of an existing group. */
int ab_cgroup_set_limits(ab_cgroup *cg, const ab_limits *lim, ab_error *err);
/* Moves pid into the group (all hierarchies). */
int ab_cgroup_attach(ab_cgroup *cg, pid_t pid, ab_error *err);
/* Kills every process in the group (cgroup.kill on v2, else freeze + SIGKILL
 * each pid + thaw), and waits until it is empty or timeout_ms passed. */
int ab_cgroup_kill_all(ab_cgroup *cg, int timeout_ms, ab_error *err);

typedef struct ab_cgroup_stats {
	uint64_t oom_kills;	/* OOM kills in this group so far */
	uint64_t pids_max_hits; /* fork refused at pids.max so far */
	uint64_t memory_peak;	/* bytes (max_usage / memory.peak), 0 if unknown */
	uint64_t cpu_usage_us;	/* CPU time used so far */
} ab_cgroup_stats;
int ab_cgroup_stats_read(ab_cgroup *cg, ab_cgroup_stats *st, ab_error *err);
/* Host paths of the group's directories (for tests and doctor). */
const char *ab_cgroup_path(ab_cgroup *cg, const char *controller);
/* Kills what is left, removes the directories and frees cg. NULL is a no-op. */
void ab_cgroup_destroy(ab_cgroup *cg);
/* Removes stale "agentbox-<pid>" groups of daemons that are no longer
 * running (crash recovery). Returns how many were removed. */
int ab_cgroup_reap_stale(ab_error *err);
/* Removes this daemon's agentbox-<pid> groups at exit (v2: moves back first). */
void ab_cgroup_root_cleanup(void);

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

typedef struct ab_audit ab_audit;

typedef struct ab_audit_opts {
	const char *db_path;	      /* e.g. $AGENTBOX_HOME/audit.db */
	const char *key_path;	      /* Ed25519 private key, PEM; created (0600) if missing */
	const char *checkpoints_path; /* NULL, a file (appended, fsynced), or "-" for stdout */
	unsigned checkpoint_every;    /* default 1000 when 0 */
	double checkpoint_seconds;    /* default 10 when 0 */
} ab_audit_opts;

/* Opens (creating if needed) the log. Checks the schema and the tail:
 * a log whose last rows do not chain is refused with a message that names
 * the first bad sequence number (run `agentbox audit verify`). */
int ab_audit_open(const ab_audit_opts *o, ab_audit **out, ab_error *err);
/* Commits, writes a final checkpoint, closes. NULL is a no-op. */
void ab_audit_close(ab_audit *a);

typedef struct ab_audit_event {
	const char *kind;    /* "daemon.start", "sandbox.create", "run", ... */
	const char *session; /* sandbox id, or NULL */
	int64_t step;	     /* run number, or -1 */
	const char *actor;   /* "sdk-embedded", "uid 1000 pid 42", "daemon" */
	json_t *body;	     /* borrowed; the redactor may modify it */
} ab_audit_event;

/* The kinds of event the daemon records, NULL-terminated (docs/audit.md,
 * "Event kinds"). A new kind is added here and there; `agentbox audit query
 * --kind` refuses a kind that is not listed. */
extern const char *const ab_audit_kinds[];

/* Called on every body before it is encoded, hashed and stored; later DLP
 * work plugs secret and PII redaction in here. */
typedef void (*ab_audit_redact_fn)(const char *kind, json_t *body, void *ctx);
void ab_audit_set_redactor(ab_audit *a, ab_audit_redact_fn fn, void *ctx);

/* Appends one event to the open transaction (starting one if needed) and
 * returns its sequence number (>= 1). It is durable only after
 * ab_audit_commit succeeds. */
int64_t ab_audit_append(ab_audit *a, const ab_audit_event *ev, ab_error *err);
/* Commits every appended event with one fsync (group commit), then writes
 * a checkpoint if one is due. On failure nothing appended since the last
 * commit is durable, and the caller must treat those events as lost. */
int ab_audit_commit(ab_audit *a, ab_error *err);
/* Events appended and not yet committed. */
int64_t ab_audit_pending(const ab_audit *a);
/* The public key as 64 hex characters (raw Ed25519), NUL-terminated. */
void ab_audit_pubkey_hex(const ab_audit *a, char out[65]);

/* Canonical bytes of an event (for hashing and export): a JSON object with
 * the keys seq, ts (UTC nanoseconds, integer), kind, session, step, actor,
 * body, sorted, compact, ASCII-only. Returns a malloc'd string. */
char *ab_audit_canonical(int64_t seq, int64_t ts_ns, const char *kind, const char *session,
			 int64_t step, const char *actor, const json_t *body);

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
int ab_audit_verify(const char *db_path, const char *jsonl_path, const char *pubkey_hex,
		    const char *external_checkpoints, ab_audit_report *rep, ab_error *err);

typedef struct ab_audit_filter {
	const char *session; /* NULL: any */
	const char *kind;    /* NULL: any */
	int64_t since_ns;    /* 0: any */
	int64_t until_ns;    /* 0: any */
	int64_t after_seq;   /* only seq > after_seq (for tail -f) */
	int64_t limit;	     /* 0: no limit */
} ab_audit_filter;

/* Calls fn for each matching event, in sequence order, with the export
 * object: the canonical fields plus "prev" and "hash" (hex); checkpoints
 * are not included. fn returns non-zero to stop. Opens the database
 * read-only. */
typedef int (*ab_audit_row_fn)(json_t *event, void *ctx);
int ab_audit_query(const char *db_path, const ab_audit_filter *f, ab_audit_row_fn fn, void *ctx,
		   ab_error *err);
/* Writes the whole log as JSON Lines: a header line {"format":
 * "agentbox-audit/1", "pubkey": hex}, each event (as ab_audit_query gives
 * it), and each checkpoint {"checkpoint": {"seq", "head", "ts", "sig"}}
 * after the event it covers. */
int ab_audit_export(const char *db_path, FILE *out, ab_error *err);

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
const char *const *ab_router_nano_modules(void);

/* Decides the tier of one cell. extra_heavy is a NULL-terminated list of
 * module names learned to need heavy (may be NULL). Never fails: code that
 * cannot be tokenized (unterminated string, bad encoding) routes to heavy
 * with the reason. */
void ab_router_route(const char *code, size_t len, const char *const *extra_heavy, ab_route *out);

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
int ab_routes_load(const char *path, ab_routes **out, ab_error *err);
/* NULL is a no-op. */
void ab_routes_free(ab_routes *r);
/* NULL-terminated list of the learned module names, sorted, owned by r and
 * valid until the next call that changes r or ab_routes_free; suitable as
 * ab_router_route's extra_heavy. r NULL gives an empty list. */
const char *const *ab_routes_modules(const ab_routes *r);
/* The stored reason for this cell digest (64 lowercase hex), or NULL; owned
 * by r, valid until the next call that changes r. */
const char *ab_routes_cell(const ab_routes *r, const char *sha256_hex);
/* The kinds of cause a learned route may give as its reason, NULL-terminated
 * and static. The store holds only these: never a run's error text, which
 * would tell one client what another ran. */
const char *const *ab_routes_causes(void);
/* Adds (or refreshes: hits+1, last time and reason updated) an entry in memory.
 * kind is "module" or "cell"; key is the module name (a dotted Python
 * identifier, top-level name expected, <=128 bytes) or the digest; reason is
 * one of ab_routes_causes(). Rejects bad keys and other reasons (-EINVAL).
 * Strings are copied. */
int ab_routes_learn(ab_routes *r, const char *kind, const char *key, const char *reason,
		    ab_error *err);
/* Removes one entry (kind NULL: both kinds with that key) or, key NULL, all
 * (of kind, or of both kinds). Returns how many were removed, -EINVAL for an
 * unknown kind, -ENOMEM. */
int ab_routes_forget(ab_routes *r, const char *kind, const char *key);
/* Writes the store atomically (temp file in the same dir, fsync, rename,
 * mode 0600) after merging in what another process saved meanwhile (the file
 * is re-read under an exclusive flock on path + ".lock"): entries learned
 * elsewhere are added, hit counts added up, entries forgotten in r since load
 * stay forgotten, and entries removed from the file elsewhere stay removed
 * unless r learned them again. r then holds what was written. On failure the
 * file and r are unchanged. */
int ab_routes_save(ab_routes *r, const char *path, ab_error *err);
/* True if the file changed (mtime/size/inode) since r was loaded or saved:
 * the daemon reloads then (e.g. after `agentbox routes clear`). */
bool ab_routes_stale(const ab_routes *r, const char *path);
/* True if r was loaded from a file in an older format (agentbox-routes/1,
 * whose reasons quote error text) that was migrated in memory: saving r
 * rewrites the file without it. */
bool ab_routes_migrated(const ab_routes *r);
/* Everything as JSON (for `agentbox routes --json`): the file format itself.
 * A new reference, NULL when out of memory. */
json_t *ab_routes_to_json(const ab_routes *r);

#ifdef __cplusplus
}
#endif
#endif

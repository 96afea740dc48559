/* cgroup.c - per-sandbox control groups: memory, pids and cpu limits, kill
 * by group, OOM and fork-limit statistics, and crash recovery of the groups
 * a dead daemon left behind.
 *
 * Ownership rule: this file only ever creates groups beneath the cgroup the
 * calling process runs in, per hierarchy, as read from /proc/self/cgroup, and
 * it only writes to files of groups it created (plus, on cgroup v2, moving
 * the daemon itself and enabling controllers for its own subtree). The
 * layout is "<own>/agentbox-<daemon pid>/<sandbox name>" in every hierarchy
 * used; on v2 the daemon itself lives in "<own>/agentbox-<pid>/daemon"
 * because a v2 group that holds processes cannot enable controllers for its
 * children.
 *
 * The state is process-global (one daemon per process) and not locked: the
 * daemon drives it from its single event-loop thread. */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cgroup.h"
#include "internal.h"

#define CG_PATH_MAX 4096
#define CG_NAME_MAX 64
#define CPU_PERIOD_US 100000
#define KILL_POLL_NS (5 * 1000 * 1000)
#define RMDIR_TRIES 20

/* The hierarchies used on v1; on v2 every entry points at the one group. */
enum hier { H_MEMORY, H_PIDS, H_CPU, H_CPUACCT, H_FREEZER, H__COUNT };
static const char *const hier_names[H__COUNT] = {"memory", "pids", "cpu", "cpuacct", "freezer"};

static struct {
	bool ready;
	int version; /* 0: none, 1: v1, 2: v2 */
	pid_t pid;   /* the daemon that owns the agentbox-<pid> groups */
	bool have[H__COUNT];
	char own[H__COUNT][CG_PATH_MAX];    /* our own cgroup's directory */
	char parent[H__COUNT][CG_PATH_MAX]; /* <own>/agentbox-<pid> */
	char daemon[CG_PATH_MAX];	    /* v2: the leaf the daemon moved into */
	bool v2_kill;			    /* v2: cgroup.kill exists */
	/* v2: [0] any, [1..3] memory, pids, cpu enabled in <own> by us */
	bool own_enabled[4];
} g;

/* The statistics files read before and after every run, kept open. */
enum { S_OOM, S_PIDS, S_PEAK, S_CPU, S__COUNT };

struct ab_cgroup {
	char name[CG_NAME_MAX + 1];
	bool have[H__COUNT];
	char dir[H__COUNT][CG_PATH_MAX];
	int stat_fd[S__COUNT]; /* -1 until first read */
};

int ab__cgroup_locate(const char *cgroup_file, const char *mountinfo_file, const char *controller,
		      char *out, size_t outlen, ab_error *err);

/* ------------------------------------------------------------ file helpers */

static int fmt_path(char *out, size_t n, ab_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fmt_path(char *out, size_t n, ab_error *err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = vsnprintf(out, n, fmt, ap);
	va_end(ap);
	if (r < 0 || (size_t)r >= n)
		return ab_error_set(err, -ENAMETOOLONG, "cgroup path \"%.200s...\" is too long",
				    out);
	return 0;
}

static bool file_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static int write_str(const char *path, const char *val, ab_error *err)
{
	int fd;
	do
		fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return ab_error_errno(err, -errno, "open %s", path);
	size_t len = strlen(val);
	ssize_t w;
	do
		w = write(fd, val, len);
	while (w < 0 && errno == EINTR);
	int saved = errno;
	close(fd);
	if (w < 0)
		return ab_error_errno(err, -saved, "write \"%s\" to %s", val, path);
	if ((size_t)w != len)
		return ab_error_set(err, -EIO, "write \"%s\" to %s: short write", val, path);
	return 0;
}

/* Reads a whole small control file into buf (NUL-terminated). A file that
 * does not fit is an error rather than a silently truncated value. */
static int read_small(const char *path, char *buf, size_t n, ab_error *err)
{
	int fd;
	do
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return ab_error_errno(err, -errno, "open %s", path);
	size_t got = 0;
	for (;;) {
		char extra;
		bool full = got + 1 >= n;
		ssize_t r = full ? read(fd, &extra, 1) : read(fd, buf + got, n - 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int saved = errno;
			close(fd);
			return ab_error_errno(err, -saved, "read %s", path);
		}
		if (r == 0)
			break;
		if (full) {
			close(fd);
			return ab_error_set(err, -EFBIG, "read %s: larger than %zu bytes", path,
					    n - 1);
		}
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	return (int)got;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	while (*s == ' ' || *s == '\t')
		s++;
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return -errno;
	if (*end && *end != '\n' && *end != ' ')
		return -EINVAL;
	*out = v;
	return 0;
}

/* Reads a small statistics file through a descriptor kept in *fd (opened
 * on first use): pread at offset 0 makes the kernel generate it afresh,
 * without a path walk through the cgroup file system each time. */
static int read_small_cached(const char *path, int *fd, char *buf, size_t n, ab_error *err)
{
	if (!fd)
		return read_small(path, buf, n, err);
	if (*fd < 0) {
		int f = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (f < 0)
			return ab_error_errno(err, -errno, "open %s", path);
		*fd = f;
	}
	ssize_t r;
	do
		r = pread(*fd, buf, n - 1, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return ab_error_errno(err, -errno, "read %s", path);
	if ((size_t)r >= n - 1)
		return ab_error_set(err, -EFBIG, "read %s: larger than %zu bytes", path, n - 2);
	buf[r] = '\0';
	return (int)r;
}

static int read_u64_cached(const char *path, int *fd, uint64_t *out, ab_error *err)
{
	char buf[64];
	int r = read_small_cached(path, fd, buf, sizeof(buf), err);
	if (r < 0)
		return r;
	if (parse_u64(buf, out) < 0)
		return ab_error_set(err, -EINVAL, "%s: \"%.40s\" is not a number", path, buf);
	return 0;
}

/* Reads the value of "key value" in a flat-keyed file such as memory.events.
 * Returns -ENODATA (without touching err) when the key is absent. */
static int read_key_u64_cached(const char *path, int *fd, const char *key, uint64_t *out,
			       ab_error *err)
{
	char buf[4096];
	int r = read_small_cached(path, fd, buf, sizeof(buf), err);
	if (r < 0)
		return r;
	size_t klen = strlen(key);
	for (char *line = buf; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
			if (parse_u64(line + klen + 1, out) < 0)
				return ab_error_set(err, -EINVAL, "%s: bad value for \"%s\"", path,
						    key);
			return 0;
		}
		line = nl ? nl + 1 : NULL;
	}
	return -ENODATA;
}

static int read_key_u64(const char *path, const char *key, uint64_t *out, ab_error *err)
{
	return read_key_u64_cached(path, NULL, key, out, err);
}

typedef void (*pid_fn)(pid_t pid, void *ctx);

/* Calls fn for every pid listed in <dir>/cgroup.procs and returns how many
 * there were. The file is parsed in chunks so that its size is not bounded
 * by a buffer. Pid 0 (a process in a pid namespace we cannot see) is
 * counted but not passed to fn. */
static int for_each_pid(const char *dir, pid_fn fn, void *ctx, ab_error *err)
{
	char path[CG_PATH_MAX];
	int r = fmt_path(path, sizeof(path), err, "%s/cgroup.procs", dir);
	if (r < 0)
		return r;
	int fd;
	do
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return ab_error_errno(err, -errno, "open %s", path);
	char buf[4096];
	long cur = 0;
	bool in_num = false;
	int count = 0;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int saved = errno;
			close(fd);
			return ab_error_errno(err, -saved, "read %s", path);
		}
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			char c = buf[i];
			if (c >= '0' && c <= '9') {
				if (cur < INT_MAX / 10)
					cur = cur * 10 + (c - '0');
				in_num = true;
			} else if (in_num) {
				count++;
				if (cur > 0 && fn)
					fn((pid_t)cur, ctx);
				cur = 0;
				in_num = false;
			}
		}
	}
	if (in_num) {
		count++;
		if (cur > 0 && fn)
			fn((pid_t)cur, ctx);
	}
	close(fd);
	return count;
}

static void monotonic_now(struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
}

static long long ms_since(const struct timespec *start)
{
	struct timespec now;
	monotonic_now(&now);
	return (long long)(now.tv_sec - start->tv_sec) * 1000 +
	       (now.tv_nsec - start->tv_nsec) / 1000000;
}

static void poll_sleep(void)
{
	struct timespec ts = {0, KILL_POLL_NS};
	/* An interrupted sleep only shortens one poll interval. */
	nanosleep(&ts, NULL);
}

/* True if dirs[i] duplicates an earlier present entry (v2, or co-mounted
 * v1 controllers such as "cpu,cpuacct"), so that it is visited once. */
static bool is_dup(const bool *have, char (*dirs)[CG_PATH_MAX], int i)
{
	for (int j = 0; j < i; j++)
		if (have[j] && strcmp(dirs[j], dirs[i]) == 0)
			return true;
	return false;
}

static int rmdir_retry(const char *dir)
{
	for (int i = 0; i < RMDIR_TRIES; i++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY && errno != EINTR)
			return -errno;
		/* A group stays busy for a moment after its last task exits. */
		poll_sleep();
	}
	return -EBUSY;
}

/* ---------------------------------------------------------------- detection */

/* Finds in a /proc/<pid>/cgroup file the path of the hierarchy that holds
 * controller, or of the v2 hierarchy ("0::/path") when controller is NULL. */
static int find_cgroup_path(const char *cgroup_file, const char *controller, char *out,
			    size_t outlen, ab_error *err)
{
	FILE *f = fopen(cgroup_file, "re");
	if (!f)
		return ab_error_errno(err, -errno, "open %s", cgroup_file);
	char *line = NULL;
	size_t cap = 0;
	int r = -ENOENT;
	bool found = false;
	while (getline(&line, &cap, f) > 0) {
		line[strcspn(line, "\n")] = '\0';
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c1 = '\0';
		*c2 = '\0';
		const char *ctrls = c1 + 1, *path = c2 + 1;
		bool match = false;
		if (!controller) {
			match = strcmp(line, "0") == 0 && ctrls[0] == '\0';
		} else {
			size_t cl = strlen(controller);
			for (const char *p = ctrls; *p;) {
				size_t len = strcspn(p, ",");
				if (len == cl && strncmp(p, controller, cl) == 0)
					match = true;
				p += len;
				if (*p == ',')
					p++;
			}
		}
		if (!match)
			continue;
		found = true;
		if (path[0] != '/' || strncmp(path, "/..", 3) == 0) {
			r = ab_error_set(
			    err, -ENOENT,
			    "%s: our %s cgroup \"%.200s\" is outside this cgroup namespace",
			    cgroup_file, controller ? controller : "v2", path);
			break;
		}
		if (strlen(path) >= outlen) {
			r = ab_error_set(err, -ENAMETOOLONG, "%s: cgroup path too long",
					 cgroup_file);
			break;
		}
		strcpy(out, path);
		r = 0;
		break;
	}
	free(line);
	fclose(f);
	if (r == -ENOENT && !found)
		ab_error_set(err, -ENOENT, "%s: no %s hierarchy", cgroup_file,
			     controller ? controller : "v2 (\"0::\")");
	return r;
}

/* Undoes the octal escapes (\040 for a space, ...) of /proc/self/mountinfo. */
static void unescape_mountinfo(char *s)
{
	char *o = s;
	for (char *p = s; *p;) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			*o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 4;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
}

static bool opts_have(const char *opts, const char *word)
{
	size_t wl = strlen(word);
	for (const char *p = opts; *p;) {
		size_t len = strcspn(p, ",");
		if (len == wl && strncmp(p, word, wl) == 0)
			return true;
		p += len;
		if (*p == ',')
			p++;
	}
	return false;
}

/* Finds the mount of the hierarchy (a v1 "cgroup" mount whose super options
 * name controller, or the "cgroup2" mount when controller is NULL) whose
 * root contains cgpath, and writes the directory of cgpath beneath it:
 * mount point + (cgpath relative to the mount's root). */
static int find_mount_dir(const char *mountinfo_file, const char *controller, const char *cgpath,
			  char *out, size_t outlen, ab_error *err)
{
	FILE *f = fopen(mountinfo_file, "re");
	if (!f)
		return ab_error_errno(err, -errno, "open %s", mountinfo_file);
	char *line = NULL;
	size_t cap = 0;
	size_t best_root = 0;
	int r = -ENOENT;
	while (getline(&line, &cap, f) > 0) {
		line[strcspn(line, "\n")] = '\0';
		char *fields[8] = {0}, *save = NULL, *tok;
		int nf = 0;
		char *fstype = NULL, *superopts = NULL;
		bool after_sep = false;
		int after = 0;
		for (tok = strtok_r(line, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
			if (after_sep) {
				if (after == 0)
					fstype = tok;
				else if (after == 2)
					superopts = tok;
				after++;
			} else if (strcmp(tok, "-") == 0 && nf >= 6) {
				after_sep = true;
			} else if (nf < 8) {
				fields[nf++] = tok;
			}
		}
		if (nf < 6 || !fstype || !superopts)
			continue;
		if (controller
			? (strcmp(fstype, "cgroup") != 0 || !opts_have(superopts, controller))
			: strcmp(fstype, "cgroup2") != 0)
			continue;
		char *root = fields[3], *mp = fields[4];
		unescape_mountinfo(root);
		unescape_mountinfo(mp);
		size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
		if (rl && (strncmp(cgpath, root, rl) != 0 || (cgpath[rl] && cgpath[rl] != '/')))
			continue;
		if (r == 0 && rl <= best_root)
			continue;
		const char *rel = cgpath + rl;
		if (strcmp(rel, "/") == 0)
			rel = "";
		int n = snprintf(out, outlen, "%s%s", strcmp(mp, "/") == 0 && *rel ? "" : mp, rel);
		if (n < 0 || (size_t)n >= outlen) {
			r = ab_error_set(err, -ENAMETOOLONG, "cgroup directory for %s is too long",
					 cgpath);
			break;
		}
		best_root = rl;
		r = 0;
	}
	free(line);
	fclose(f);
	if (r == -ENOENT)
		ab_error_set(err, -ENOENT, "%s: no %s mount holds our cgroup %s", mountinfo_file,
			     controller ? controller : "cgroup2", cgpath);
	return r;
}

/* Exposed for unit tests, which feed it fixture files: the directory of our
 * own cgroup in the hierarchy of controller (NULL: the v2 hierarchy). */
int ab__cgroup_locate(const char *cgroup_file, const char *mountinfo_file, const char *controller,
		      char *out, size_t outlen, ab_error *err)
{
	char cgpath[CG_PATH_MAX];
	int r = find_cgroup_path(cgroup_file, controller, cgpath, sizeof(cgpath), err);
	if (r < 0)
		return r;
	return find_mount_dir(mountinfo_file, controller, cgpath, out, outlen, err);
}

/* --------------------------------------------------------------- root init */

static void undo_dirs(bool *made, char (*dirs)[CG_PATH_MAX])
{
	for (int i = H__COUNT - 1; i >= 0; i--)
		if (made[i])
			rmdir(dirs[i]);
}

static int init_v1(ab_error *err)
{
	for (int h = 0; h < H__COUNT; h++) {
		ab_error e = {0};
		int r = ab__cgroup_locate("/proc/self/cgroup", "/proc/self/mountinfo",
					  hier_names[h], g.own[h], sizeof(g.own[h]), &e);
		if (r < 0 && h != H_MEMORY && h != H_PIDS)
			continue;
		if (r < 0) {
			if (err)
				*err = e;
			return ab_error_prefix(err, "cgroup v1: the %s controller is required",
					       hier_names[h]);
		}
		g.have[h] = true;
		r = fmt_path(g.parent[h], sizeof(g.parent[h]), err, "%s/agentbox-%d", g.own[h],
			     (int)g.pid);
		if (r < 0)
			return r;
	}
	/* cpuacct on the cpu mount (or the reverse) means one directory. */
	bool made[H__COUNT] = {0};
	for (int h = 0; h < H__COUNT; h++) {
		if (!g.have[h] || is_dup(g.have, g.parent, h))
			continue;
		if (mkdir(g.parent[h], 0755) < 0) {
			/* A group of a dead daemon whose pid we now have is ours to reuse. */
			if (errno == EEXIST)
				continue;
			int r = ab_error_errno(err, -errno, "create cgroup %s", g.parent[h]);
			undo_dirs(made, g.parent);
			return r;
		}
		made[h] = true;
	}
	g.version = 1;
	return 0;
}

/* Moves the daemon back into its original v2 cgroup. If we enabled
 * controllers for <own>'s children ourselves, <own> may not hold processes
 * until they are disabled again (the no-internal-process rule). */
static int v2_move_back(const char *own)
{
	char path[CG_PATH_MAX], pidbuf[32];
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)getpid());
	if (fmt_path(path, sizeof(path), NULL, "%s/cgroup.procs", own) < 0)
		return -ENAMETOOLONG;
	int r = write_str(path, pidbuf, NULL);
	if (r != -EBUSY || !g.own_enabled[0])
		return r;
	char sc[CG_PATH_MAX];
	if (fmt_path(sc, sizeof(sc), NULL, "%s/cgroup.subtree_control", own) < 0)
		return -ENAMETOOLONG;
	for (int i = 2; i >= 0; i--)
		if (g.own_enabled[i + 1])
			write_str(sc, i == 0 ? "-memory" : i == 1 ? "-pids" : "-cpu", NULL);
	return write_str(path, pidbuf, NULL);
}

static bool word_in(const char *list, const char *word)
{
	size_t wl = strlen(word);
	for (const char *p = list; *p;) {
		p += strspn(p, " \n");
		size_t len = strcspn(p, " \n");
		if (len == wl && strncmp(p, word, wl) == 0)
			return true;
		p += len;
	}
	return false;
}

/* Returns 1 if v2 is usable and was set up, 0 if this host has no usable v2
 * hierarchy (so v1 should be tried), negative on a failure to set it up. */
static int init_v2(ab_error *err)
{
	char own[CG_PATH_MAX], path[CG_PATH_MAX], ctrls[512];
	ab_error e = {0};
	if (ab__cgroup_locate("/proc/self/cgroup", "/proc/self/mountinfo", NULL, own, sizeof(own),
			      &e) < 0)
		return 0;
	int r = fmt_path(path, sizeof(path), err, "%s/cgroup.controllers", own);
	if (r < 0)
		return r;
	if (read_small(path, ctrls, sizeof(ctrls), &e) < 0)
		return 0;
	if (!word_in(ctrls, "memory") || !word_in(ctrls, "pids"))
		return 0;

	char parent[CG_PATH_MAX], daemon[CG_PATH_MAX];
	if ((r = fmt_path(parent, sizeof(parent), err, "%s/agentbox-%d", own, (int)g.pid)) < 0 ||
	    (r = fmt_path(daemon, sizeof(daemon), err, "%s/daemon", parent)) < 0)
		return r;
	bool made_parent = false, made_daemon = false, moved = false;
	char pidbuf[32];
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)g.pid);
	if (mkdir(parent, 0755) == 0)
		made_parent = true;
	else if (errno != EEXIST)
		return ab_error_errno(err, -errno, "create cgroup %s", parent);
	if (mkdir(daemon, 0755) == 0)
		made_daemon = true;
	else if (errno != EEXIST) {
		r = ab_error_errno(err, -errno, "create cgroup %s", daemon);
		goto fail;
	}
	/* Leave <own> and <parent> free of processes (the no-internal-process
	 * rule) by moving this whole thread group into the daemon leaf. */
	if ((r = fmt_path(path, sizeof(path), err, "%s/cgroup.procs", daemon)) < 0 ||
	    (r = write_str(path, pidbuf, err)) < 0)
		goto fail;
	moved = true;

	/* The parent only offers what <own> enables for its children. If it is
	 * not enabled yet and we were the only process in <own>, we may enable
	 * it ourselves; otherwise the delegation is missing. */
	if ((r = fmt_path(path, sizeof(path), err, "%s/cgroup.controllers", parent)) < 0 ||
	    (r = read_small(path, ctrls, sizeof(ctrls), err)) < 0)
		goto fail;
	static const char *const wanted[] = {"memory", "pids", "cpu"};
	for (size_t i = 0; i < 3; i++) {
		if (word_in(ctrls, wanted[i]))
			continue;
		char sc[CG_PATH_MAX], val[32];
		snprintf(val, sizeof(val), "+%s", wanted[i]);
		if ((r = fmt_path(sc, sizeof(sc), err, "%s/cgroup.subtree_control", own)) < 0)
			goto fail;
		r = write_str(sc, val, &e);
		if (r == 0)
			g.own_enabled[0] = g.own_enabled[i + 1] = true;
		if (r < 0 && i < 2) {
			r = ab_error_set(
			    err, r,
			    "cgroup v2: the %s controller is not delegated to %s (%s); "
			    "enable it in its cgroup.subtree_control (e.g. systemd "
			    "Delegate=yes)",
			    wanted[i], own, e.msg);
			goto fail;
		}
	}
	if ((r = fmt_path(path, sizeof(path), err, "%s/cgroup.subtree_control", parent)) < 0)
		goto fail;
	for (size_t i = 0; i < 3; i++) {
		char val[32];
		snprintf(val, sizeof(val), "+%s", wanted[i]);
		r = write_str(path, val, &e);
		if (r < 0 && i < 2) {
			r = ab_error_set(err, r, "cgroup v2: cannot enable the %s controller: %s",
					 wanted[i], e.msg);
			goto fail;
		}
		if (r == 0 && i == 2)
			g.have[H_CPU] = true;
	}
	r = 0;
	g.have[H_MEMORY] = g.have[H_PIDS] = true;
	/* cpu.stat (usage) and cgroup.freeze exist without a controller. */
	g.have[H_CPUACCT] = g.have[H_FREEZER] = true;
	for (int h = 0; h < H__COUNT; h++) {
		if (!g.have[h])
			continue;
		strcpy(g.own[h], own);
		strcpy(g.parent[h], parent);
	}
	strcpy(g.daemon, daemon);
	if ((r = fmt_path(path, sizeof(path), err, "%s/cgroup.kill", parent)) < 0)
		goto fail;
	g.v2_kill = file_exists(path);
	g.version = 2;
	return 1;
fail:
	if (moved)
		v2_move_back(own);
	if (made_daemon)
		rmdir(daemon);
	if (made_parent)
		rmdir(parent);
	memset(g.have, 0, sizeof(g.have));
	return r;
}

int ab_cgroup_root_init(ab_error *err)
{
	if (g.ready)
		return 0;
	memset(&g, 0, sizeof(g));
	g.pid = getpid();
	int r = init_v2(err);
	if (r == 0) {
		r = init_v1(err);
		if (r < 0 && err)
			ab_error_prefix(err, "no usable cgroup hierarchy (no v2 hierarchy with "
					     "memory and pids either)");
	}
	if (r < 0) {
		memset(&g, 0, sizeof(g));
		return r;
	}
	g.ready = true;
	return 0;
}

bool ab_cgroup_available(void)
{
	return g.ready;
}

const char *ab_cgroup_version(void)
{
	if (!g.ready)
		return "none";
	return g.version == 2 ? "v2" : "v1";
}

/* -------------------------------------------------------------- sandboxes */

static int check_name(const char *name, ab_error *err)
{
	if (!name || !*name)
		return ab_error_set(err, -EINVAL, "cgroup name is empty");
	size_t len = strlen(name);
	if (len > CG_NAME_MAX)
		return ab_error_set(err, -EINVAL,
				    "cgroup name \"%.64s...\" is longer than %d bytes", name,
				    CG_NAME_MAX);
	if (!isalnum((unsigned char)name[0]))
		return ab_error_set(err, -EINVAL,
				    "cgroup name \"%s\" must start with a letter or digit", name);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (!isalnum(c) && c != '-' && c != '_' && c != '.')
			return ab_error_set(err, -EINVAL,
					    "cgroup name \"%.64s\" may only hold letters, digits, "
					    "'-', '_' and '.'",
					    name);
	}
	if (strcmp(name, "daemon") == 0)
		return ab_error_set(err, -EINVAL, "cgroup name \"daemon\" is reserved");
	return 0;
}

static int write_file_in(const char *dir, const char *file, const char *val, ab_error *err)
{
	char path[CG_PATH_MAX];
	int r = fmt_path(path, sizeof(path), err, "%s/%s", dir, file);
	return r < 0 ? r : write_str(path, val, err);
}

static int set_memory_v1(const char *dir, const char *val, ab_error *err)
{
	char memsw[CG_PATH_MAX];
	int r = fmt_path(memsw, sizeof(memsw), err, "%s/memory.memsw.limit_in_bytes", dir);
	if (r < 0)
		return r;
	bool has_memsw = file_exists(memsw);
	/* memsw must stay >= the memory limit: raising memsw first works when
	 * the limits grow, and fails harmlessly (EINVAL) when they shrink, in
	 * which case the second write after the memory limit sets it. */
	if (has_memsw)
		write_str(memsw, val, NULL);
	r = write_file_in(dir, "memory.limit_in_bytes", val, err);
	if (r < 0)
		return r;
	if (has_memsw) {
		ab_error e = {0};
		r = write_str(memsw, val, &e);
		if (r < 0 && r != -EINVAL && r != -ENOENT) {
			if (err)
				*err = e;
			return r;
		}
	}
	return 0;
}

int ab_cgroup_set_limits(ab_cgroup *cg, const ab_limits *lim, ab_error *err)
{
	if (!cg || !lim)
		return ab_error_set(err, -EINVAL, "cgroup set limits: missing argument");
	char val[64];
	int r;
	/* Zero memory or pids means "no limit", as cpu == 0 does. */
	bool mem_max = lim->memory_mb == 0 || lim->memory_mb > (UINT64_MAX >> 21);
	if (g.version == 2) {
		const char *dir = cg->dir[H_MEMORY];
		if (mem_max)
			snprintf(val, sizeof(val), "max");
		else
			snprintf(val, sizeof(val), "%" PRIu64, lim->memory_mb << 20);
		if ((r = write_file_in(dir, "memory.max", val, err)) < 0)
			return r;
		char swap[CG_PATH_MAX];
		if ((r = fmt_path(swap, sizeof(swap), err, "%s/memory.swap.max", dir)) < 0)
			return r;
		if (file_exists(swap) && (r = write_str(swap, "0", err)) < 0)
			return r;
	} else {
		if (mem_max)
			snprintf(val, sizeof(val), "-1");
		else
			snprintf(val, sizeof(val), "%" PRIu64, lim->memory_mb << 20);
		if ((r = set_memory_v1(cg->dir[H_MEMORY], val, err)) < 0)
			return r;
	}

	if (lim->pids == 0)
		snprintf(val, sizeof(val), "max");
	else
		snprintf(val, sizeof(val), "%" PRIu32, lim->pids);
	if ((r = write_file_in(cg->dir[H_PIDS], "pids.max", val, err)) < 0)
		return r;

	/* Without a cpu controller the host cannot cap CPU; that absence is
	 * visible through ab_cgroup_path(cg, "cpu") == NULL. */
	if (!cg->have[H_CPU])
		return 0;
	long long quota = -1;
	if (lim->cpu > 0) {
		double q = lim->cpu * CPU_PERIOD_US;
		quota = q > 1e15 ? (long long)1e15 : (long long)(q + 0.5);
		if (quota < 1000)
			quota = 1000; /* the kernel's minimum quota is 1 ms */
	}
	if (g.version == 2) {
		if (quota < 0)
			snprintf(val, sizeof(val), "max %d", CPU_PERIOD_US);
		else
			snprintf(val, sizeof(val), "%lld %d", quota, CPU_PERIOD_US);
		return write_file_in(cg->dir[H_CPU], "cpu.max", val, err);
	}
	snprintf(val, sizeof(val), "%d", CPU_PERIOD_US);
	if ((r = write_file_in(cg->dir[H_CPU], "cpu.cfs_period_us", val, err)) < 0)
		return r;
	snprintf(val, sizeof(val), "%lld", quota);
	return write_file_in(cg->dir[H_CPU], "cpu.cfs_quota_us", val, err);
}

static void remove_dirs(ab_cgroup *cg)
{
	for (int h = H__COUNT - 1; h >= 0; h--)
		if (cg->have[h] && !is_dup(cg->have, cg->dir, h))
			rmdir_retry(cg->dir[h]);
}

int ab_cgroup_create(const char *name, const ab_limits *lim, ab_cgroup **out, ab_error *err)
{
	if (!out || !lim)
		return ab_error_set(err, -EINVAL, "create cgroup: missing argument");
	*out = NULL;
	if (!g.ready)
		return ab_error_set(err, -ENODEV, "create cgroup %s: cgroups are not initialised",
				    name ? name : "(null)");
	int r = check_name(name, err);
	if (r < 0)
		return r;
	ab_cgroup *cg = calloc(1, sizeof(*cg));
	if (!cg)
		return ab_error_set(err, -ENOMEM, "create cgroup %s: out of memory", name);
	snprintf(cg->name, sizeof(cg->name), "%s", name);
	for (int i = 0; i < S__COUNT; i++)
		cg->stat_fd[i] = -1;
	for (int h = 0; h < H__COUNT; h++) {
		if (!g.have[h])
			continue;
		if ((r = fmt_path(cg->dir[h], sizeof(cg->dir[h]), err, "%s/%s", g.parent[h],
				  name)) < 0) {
			free(cg);
			return r;
		}
	}
	for (int h = 0; h < H__COUNT; h++) {
		if (!g.have[h] || is_dup(g.have, cg->dir, h))
			continue;
		if (mkdir(cg->dir[h], 0755) < 0) {
			r = ab_error_errno(err, -errno, "create cgroup %s", cg->dir[h]);
			remove_dirs(cg);
			free(cg);
			return r;
		}
		/* have[] only lists what we made, so that a failure removes
		 * nothing that existed before. */
		cg->have[h] = true;
	}
	for (int h = 0; h < H__COUNT; h++)
		cg->have[h] = g.have[h];
	if ((r = ab_cgroup_set_limits(cg, lim, err)) < 0) {
		ab_error_prefix(err, "create cgroup %s", name);
		remove_dirs(cg);
		free(cg);
		return r;
	}
	*out = cg;
	return 0;
}

int ab_cgroup_attach(ab_cgroup *cg, pid_t pid, ab_error *err)
{
	if (!cg || pid <= 0)
		return ab_error_set(err, -EINVAL, "cgroup attach: bad argument");
	char val[32];
	snprintf(val, sizeof(val), "%d", (int)pid);
	for (int h = 0; h < H__COUNT; h++) {
		if (!cg->have[h] || is_dup(cg->have, cg->dir, h))
			continue;
		int r = write_file_in(cg->dir[h], "cgroup.procs", val, err);
		if (r < 0)
			return ab_error_prefix(err, "move pid %d into cgroup %s", (int)pid,
					       cg->name);
	}
	return 0;
}

/* ---------------------------------------------------------------- killing */

static void find_self(pid_t pid, void *ctx)
{
	if (pid == getpid())
		*(bool *)ctx = true;
}

static void kill_one(pid_t pid, void *ctx)
{
	(void)ctx;
	/* The pid comes from the group's own cgroup.procs; with the group
	 * frozen it cannot exit and be recycled before this signal. */
	kill(pid, SIGKILL);
}

/* Freezes (freeze = true) or thaws a group and, when freezing, waits until
 * the kernel reports it frozen or the deadline passes. Failure to freeze is
 * not fatal: the kill loop still runs, only without the guarantee. */
static void set_frozen(ab_cgroup *cg, bool freeze, const struct timespec *start, int timeout_ms)
{
	const char *dir = cg->dir[H_FREEZER];
	char path[CG_PATH_MAX], buf[128];
	if (g.version == 2) {
		if (write_file_in(dir, "cgroup.freeze", freeze ? "1" : "0", NULL) < 0 || !freeze)
			return;
		if (fmt_path(path, sizeof(path), NULL, "%s/cgroup.events", dir) < 0)
			return;
		uint64_t frozen = 0;
		for (int round = 0; read_key_u64(path, "frozen", &frozen, NULL) == 0 && !frozen &&
				    ms_since(start) < timeout_ms;
		     round++) {
			if (round < 40) {
				struct timespec ts = {0, 100000};
				nanosleep(&ts, NULL);
			} else {
				poll_sleep();
			}
		}
		return;
	}
	if (write_file_in(dir, "freezer.state", freeze ? "FROZEN" : "THAWED", NULL) < 0 || !freeze)
		return;
	if (fmt_path(path, sizeof(path), NULL, "%s/freezer.state", dir) < 0)
		return;
	/* Freezing takes a moment (FREEZING, then FROZEN): look again soon
	 * at first (a rewind waits for it), then at the usual pace. */
	for (int round = 0; read_small(path, buf, sizeof(buf), NULL) >= 0 &&
			    strncmp(buf, "FROZEN", 6) != 0 && ms_since(start) < timeout_ms;
	     round++) {
		if (round < 40) {
			struct timespec ts = {0, 100000};
			nanosleep(&ts, NULL);
		} else {
			poll_sleep();
		}
	}
}

/* Counts the processes left in the group; any hierarchy still holding one
 * means the group is not empty. */
static int count_left(ab_cgroup *cg, ab_error *err)
{
	int total = 0;
	for (int h = 0; h < H__COUNT; h++) {
		if (!cg->have[h] || is_dup(cg->have, cg->dir, h))
			continue;
		int n = for_each_pid(cg->dir[h], NULL, NULL, err);
		if (n == -ENOENT)
			continue;
		if (n < 0)
			return n;
		total += n;
	}
	return total;
}

/* Freezing a group we are in would freeze us before we can thaw it: a
 * kill refuses a missing group and one the caller is in. */
static int refuse_own_group(ab_cgroup *cg, ab_error *err)
{
	if (!cg)
		return ab_error_set(err, -EINVAL, "cgroup kill: no group");
	bool inside = false;
	for (int h = 0; h < H__COUNT; h++)
		if (cg->have[h] && !is_dup(cg->have, cg->dir, h))
			for_each_pid(cg->dir[h], find_self, &inside, NULL);
	if (inside)
		return ab_error_set(err, -EDEADLK, "kill cgroup %s: the calling process is in it",
				    cg->name);
	return 0;
}

int ab_cgroup_kill_all(ab_cgroup *cg, int timeout_ms, ab_error *err)
{
	int r = refuse_own_group(cg, err);
	if (r < 0)
		return r;
	struct timespec start;
	monotonic_now(&start);
	if (g.version == 2 && g.v2_kill) {
		r = write_file_in(cg->dir[H_MEMORY], "cgroup.kill", "1", err);
		if (r < 0 && r != -ENOENT)
			return ab_error_prefix(err, "kill cgroup %s", cg->name);
	}
	for (;;) {
		int n = count_left(cg, err);
		if (n < 0)
			return ab_error_prefix(err, "kill cgroup %s", cg->name);
		if (n == 0)
			return 0;
		/* One round of signals always goes out, even with timeout 0. */
		if (!(g.version == 2 && g.v2_kill)) {
			bool freezer = cg->have[H_FREEZER];
			if (freezer)
				set_frozen(cg, true, &start, timeout_ms);
			for (int h = 0; h < H__COUNT; h++)
				if (cg->have[h] && !is_dup(cg->have, cg->dir, h))
					for_each_pid(cg->dir[h], kill_one, NULL, NULL);
			/* Frozen tasks die of SIGKILL only once thawed. */
			if (freezer)
				set_frozen(cg, false, &start, timeout_ms);
		}
		if (ms_since(&start) >= timeout_ms)
			return ab_error_set(
			    err, -ETIMEDOUT,
			    "kill cgroup %s: %d process(es) still there after %d ms", cg->name, n,
			    timeout_ms);
		poll_sleep();
	}
}

struct except {
	const pid_t *keep;
	size_t nkeep;
	bool kill;  /* signal them, or only count them */
	int others; /* processes seen that are not kept */
};

static void unless_kept(pid_t pid, void *ctx)
{
	struct except *x = ctx;
	for (size_t i = 0; i < x->nkeep; i++)
		if (x->keep[i] == pid)
			return;
	x->others++;
	if (x->kill)
		kill(pid, SIGKILL);
}

int ab_cgroup_kill_except(ab_cgroup *cg, const pid_t *keep, size_t nkeep, int timeout_ms,
			  int *killed, ab_error *err)
{
	if (killed)
		*killed = 0;
	int r = refuse_own_group(cg, err);
	if (r < 0)
		return r;
	struct timespec start;
	monotonic_now(&start);
	bool freezer = cg->have[H_FREEZER];
	for (;;) {
		/* Frozen, no process of the group can fork or exit between
		 * the read of cgroup.procs and its signal. */
		if (freezer)
			set_frozen(cg, true, &start, timeout_ms);
		struct except x = {.keep = keep, .nkeep = nkeep, .kill = true};
		int first = -1; /* the processes of one hierarchy: each once */
		for (int h = 0; h < H__COUNT; h++)
			if (cg->have[h] && !is_dup(cg->have, cg->dir, h)) {
				for_each_pid(cg->dir[h], unless_kept, &x, NULL);
				if (first < 0)
					first = x.others;
			}
		if (freezer)
			set_frozen(cg, false, &start, timeout_ms);
		if (killed && *killed == 0 && first > 0)
			*killed = first;
		if (x.others == 0)
			return 0;
		/* The killed die within moments of the thaw: look again soon
		 * (a rewind waits for this), signalling again only now and then
		 * (a process caught in the middle of a fork). */
		struct except y = {.others = 1};
		for (int round = 0; round < 40 && y.others; round++) {
			struct timespec ts = {0, 250000};
			nanosleep(&ts, NULL);
			y = (struct except){.keep = keep, .nkeep = nkeep};
			for (int h = 0; h < H__COUNT; h++)
				if (cg->have[h] && !is_dup(cg->have, cg->dir, h))
					for_each_pid(cg->dir[h], unless_kept, &y, NULL);
		}
		if (y.others == 0)
			return 0;
		if (ms_since(&start) >= timeout_ms)
			return ab_error_set(err, -ETIMEDOUT,
					    "kill cgroup %s: %d process(es) still there after %d ms",
					    cg->name, y.others, timeout_ms);
	}
}

uint64_t ab_cgroup_memory_usage(ab_cgroup *cg)
{
	char path[CG_PATH_MAX], buf[64];
	if (!cg || fmt_path(path, sizeof(path), NULL, "%s/%s", cg->dir[H_MEMORY],
			    g.version == 2 ? "memory.current" : "memory.usage_in_bytes") < 0 ||
	    read_small(path, buf, sizeof(buf), NULL) < 0)
		return 0;
	return strtoull(buf, NULL, 10);
}

/* ------------------------------------------------------------------ stats */

int ab_cgroup_stats_read(ab_cgroup *cg, ab_cgroup_stats *st, ab_error *err)
{
	if (!cg || !st)
		return ab_error_set(err, -EINVAL, "cgroup stats: missing argument");
	memset(st, 0, sizeof(*st));
	char path[CG_PATH_MAX];
	int r;
	uint64_t v;
	const char *mem = cg->dir[H_MEMORY];

	if (g.version == 2) {
		if ((r = fmt_path(path, sizeof(path), err, "%s/memory.events", mem)) < 0)
			return r;
	} else if ((r = fmt_path(path, sizeof(path), err, "%s/memory.oom_control", mem)) < 0) {
		return r;
	}
	r = read_key_u64_cached(path, &cg->stat_fd[S_OOM], "oom_kill", &v, err);
	if (r == 0)
		st->oom_kills = v;
	else if (r != -ENODATA) /* kernels before 4.13 do not count OOM kills on v1 */
		return r;

	if ((r = fmt_path(path, sizeof(path), err, "%s/pids.events", cg->dir[H_PIDS])) < 0)
		return r;
	r = read_key_u64_cached(path, &cg->stat_fd[S_PIDS], "max", &v, err);
	if (r == 0)
		st->pids_max_hits = v;
	else if (r != -ENODATA)
		return r;

	/* The peak and CPU usage are optional (memory.peak needs Linux 5.19). */
	if (fmt_path(path, sizeof(path), NULL, "%s/%s", mem,
		     g.version == 2 ? "memory.peak" : "memory.max_usage_in_bytes") == 0 &&
	    read_u64_cached(path, &cg->stat_fd[S_PEAK], &v, NULL) == 0)
		st->memory_peak = v;
	if (cg->have[H_CPUACCT]) {
		if (g.version == 2) {
			if (fmt_path(path, sizeof(path), NULL, "%s/cpu.stat", cg->dir[H_CPUACCT]) ==
				0 &&
			    read_key_u64_cached(path, &cg->stat_fd[S_CPU], "usage_usec", &v,
						NULL) == 0)
				st->cpu_usage_us = v;
		} else if (fmt_path(path, sizeof(path), NULL, "%s/cpuacct.usage",
				    cg->dir[H_CPUACCT]) == 0 &&
			   read_u64_cached(path, &cg->stat_fd[S_CPU], &v, NULL) == 0) {
			st->cpu_usage_us = v / 1000;
		}
	}
	return 0;
}

const char *ab_cgroup_path(ab_cgroup *cg, const char *controller)
{
	if (!cg || !controller)
		return NULL;
	if (g.version == 2)
		return cg->dir[H_MEMORY];
	for (int h = 0; h < H__COUNT; h++)
		if (strcmp(controller, hier_names[h]) == 0)
			return cg->have[h] ? cg->dir[h] : NULL;
	return NULL;
}

void ab_cgroup_destroy(ab_cgroup *cg)
{
	if (!cg)
		return;
	ab_cgroup_kill_all(cg, 1000, NULL);
	for (int i = 0; i < S__COUNT; i++)
		if (cg->stat_fd[i] >= 0)
			close(cg->stat_fd[i]);
	remove_dirs(cg);
	free(cg);
}

/* ------------------------------------------------------- stale and cleanup */

/* Kills and removes every child group of "<own>/<base>" in all hierarchies
 * except the one named skip (if not NULL). */
static void remove_children(const char *base, const char *skip)
{
	for (int h0 = 0; h0 < H__COUNT; h0++) {
		if (!g.have[h0] || is_dup(g.have, g.own, h0))
			continue;
		char top[CG_PATH_MAX];
		if (fmt_path(top, sizeof(top), NULL, "%s/%s", g.own[h0], base) < 0)
			return;
		DIR *d = opendir(top);
		if (!d)
			continue;
		struct dirent *de;
		while ((de = readdir(d))) {
			size_t len = strlen(de->d_name);
			if (de->d_type != DT_DIR || de->d_name[0] == '.' ||
			    (skip && strcmp(de->d_name, skip) == 0) || len > CG_NAME_MAX)
				continue;
			/* The same sandbox name exists in every hierarchy; gather
			 * them into one group so that freezing covers its kill. */
			ab_cgroup tmp;
			memset(&tmp, 0, sizeof(tmp));
			memcpy(tmp.name, de->d_name, len);
			tmp.name[len] = '\0';
			for (int h = 0; h < H__COUNT; h++) {
				if (!g.have[h])
					continue;
				if (fmt_path(tmp.dir[h], sizeof(tmp.dir[h]), NULL, "%s/%s/%s",
					     g.own[h], base, de->d_name) < 0)
					continue;
				tmp.have[h] = file_exists(tmp.dir[h]);
			}
			ab_cgroup_kill_all(&tmp, 2000, NULL);
			remove_dirs(&tmp);
		}
		closedir(d);
	}
}

/* Removes "<own>/<base>" in every hierarchy; 0 if all are gone. */
static int remove_top(const char *base)
{
	int result = 0;
	for (int h = 0; h < H__COUNT; h++) {
		if (!g.have[h] || is_dup(g.have, g.own, h))
			continue;
		char top[CG_PATH_MAX];
		if (fmt_path(top, sizeof(top), NULL, "%s/%s", g.own[h], base) < 0)
			return -ENAMETOOLONG;
		int r = rmdir_retry(top);
		if (r < 0)
			result = r;
	}
	return result;
}

static void count_visible(pid_t pid, void *ctx)
{
	(void)pid;
	(*(int *)ctx)++;
}

/* On v2 a dead daemon's leaf can only be populated by processes that are
 * alive; if none of them is visible to us, it belongs to a daemon in another
 * pid namespace (whose pid merely looks dead here), which we must leave. */
static bool v2_foreign_daemon(const char *base)
{
	char dir[CG_PATH_MAX], path[CG_PATH_MAX];
	uint64_t populated = 0;
	if (fmt_path(dir, sizeof(dir), NULL, "%s/%s/daemon", g.own[H_MEMORY], base) < 0 ||
	    fmt_path(path, sizeof(path), NULL, "%s/cgroup.events", dir) < 0)
		return false;
	if (read_key_u64(path, "populated", &populated, NULL) < 0 || !populated)
		return false;
	int visible = 0;
	if (for_each_pid(dir, count_visible, &visible, NULL) < 0)
		return true;
	return visible == 0;
}

int ab_cgroup_reap_stale(ab_error *err)
{
	if (!g.ready)
		return ab_error_set(err, -ENODEV,
				    "reap stale cgroups: cgroups are not initialised");
	int count = 0;
	for (int h = 0; h < H__COUNT; h++) {
		if (!g.have[h] || is_dup(g.have, g.own, h))
			continue;
		DIR *d = opendir(g.own[h]);
		if (!d)
			continue;
		struct dirent *de;
		while ((de = readdir(d))) {
			const char *s = de->d_name;
			if (de->d_type != DT_DIR || strncmp(s, "agentbox-", 9) != 0)
				continue;
			char *end;
			errno = 0;
			long pid = strtol(s + 9, &end, 10);
			if (errno || *end || end == s + 9 || pid <= 0 || pid > INT_MAX ||
			    (pid_t)pid == g.pid)
				continue;
			/* EPERM means alive too: only ESRCH says it is gone. */
			if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
				continue;
			if (g.version == 2 && v2_foreign_daemon(s))
				continue;
			remove_children(s, NULL);
			if (remove_top(s) == 0)
				count++;
		}
		closedir(d);
	}
	return count;
}

void ab_cgroup_root_cleanup(void)
{
	if (!g.ready)
		return;
	/* A forked child inherits the state but does not own the groups. */
	if (getpid() == g.pid) {
		char base[64];
		snprintf(base, sizeof(base), "agentbox-%d", (int)g.pid);
		remove_children(base, g.version == 2 ? "daemon" : NULL);
		if (g.version == 2) {
			v2_move_back(g.own[H_MEMORY]);
			rmdir_retry(g.daemon);
		}
		remove_top(base);
	}
	memset(&g, 0, sizeof(g));
}

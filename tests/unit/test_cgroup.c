/* test_cgroup.c - cgroup groups, limits, kill and stats on the real host
 * (these tests run as root and create groups beneath their own cgroup),
 * plus the pure parsing of /proc/self/cgroup and mountinfo on fixtures. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "internal.h"
#include "unit.h"

int ab__cgroup_locate(const char *cgroup_file, const char *mountinfo_file, const char *controller,
		      char *out, size_t outlen, ab_error *err);

/* ------------------------------------------------------------------ helpers */

/* Groups made by the running test; destroyed at exit so that a failing
 * CHECK (which calls exit) leaves nothing behind. */
static ab_cgroup *made[8];
static int nmade;
static pid_t owner;

static void cleanup_groups(void)
{
	if (getpid() != owner)
		return;
	for (int i = 0; i < nmade; i++)
		ab_cgroup_destroy(made[i]);
	nmade = 0;
	ab_cgroup_root_cleanup();
}

static void setup(void)
{
	ab_error err = {0};
	int r = ab_cgroup_root_init(&err);
	if (r < 0)
		fprintf(stderr, "ab_cgroup_root_init: %s\n", err.msg);
	CHECK_EQ_INT(r, 0);
	owner = getpid();
	atexit(cleanup_groups);
	/* Orphaned grandchildren come back to the test, which reaps them. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
}

static ab_cgroup *make_group(const char *name, uint64_t memory_mb, uint32_t pids, double cpu)
{
	ab_limits lim;
	ab_limits_default(&lim);
	lim.memory_mb = memory_mb;
	lim.pids = pids;
	lim.cpu = cpu;
	ab_cgroup *cg = NULL;
	ab_error err = {0};
	int r = ab_cgroup_create(name, &lim, &cg, &err);
	if (r < 0)
		fprintf(stderr, "ab_cgroup_create %s: %s\n", name, err.msg);
	CHECK_EQ_INT(r, 0);
	CHECK(cg != NULL);
	made[nmade++] = cg;
	return cg;
}

static void forget_group(ab_cgroup *cg)
{
	for (int i = 0; i < nmade; i++)
		if (made[i] == cg)
			made[i] = made[--nmade];
}

static bool is_v2(void)
{
	return strcmp(ab_cgroup_version(), "v2") == 0;
}

/* Reads a control file of cg's controller directory, without the newline. */
static const char *read_ctl(ab_cgroup *cg, const char *ctrl, const char *file)
{
	static char buf[4096];
	char path[4096];
	const char *dir = ab_cgroup_path(cg, ctrl);
	CHECK(dir != NULL);
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	FILE *f = fopen(path, "re");
	if (!f) {
		fprintf(stderr, "open %s: %s\n", path, strerror(errno));
		CHECK(f != NULL);
	}
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return buf;
}

static int count_procs(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	FILE *f = fopen(path, "re");
	CHECK(f != NULL);
	int n = 0, pid;
	while (fscanf(f, "%d", &pid) == 1)
		n++;
	fclose(f);
	return n;
}

static bool has_proc(const char *dir, pid_t want)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	FILE *f = fopen(path, "re");
	CHECK(f != NULL);
	int pid;
	bool found = false;
	while (fscanf(f, "%d", &pid) == 1)
		found |= pid == want;
	fclose(f);
	return found;
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A child that waits on a pipe until the test has moved it into a group,
 * then runs fn. The returned fd releases it when a byte is written. */
static pid_t spawn_gated(void (*fn)(void), int *gate)
{
	int p[2];
	CHECK(pipe2(p, O_CLOEXEC) == 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		char c;
		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			_exit(99);
		fn();
		_exit(0);
	}
	close(p[0]);
	*gate = p[1];
	return pid;
}

static void attach_and_release(ab_cgroup *cg, pid_t pid, int gate)
{
	ab_error err = {0};
	int r = ab_cgroup_attach(cg, pid, &err);
	if (r < 0)
		fprintf(stderr, "attach: %s\n", err.msg);
	CHECK_EQ_INT(r, 0);
	CHECK(write(gate, "g", 1) == 1);
	close(gate);
}

static void reap_all(void)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

static void wait_dead(pid_t pid, int *status)
{
	while (waitpid(pid, status, 0) < 0)
		CHECK(errno == EINTR);
}

/* ------------------------------------------------- parsing (pure, fixtures) */

static void write_fixture(char *path, const char *text)
{
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
}

AB_TEST(cgroup_locate_parses_proc_files)
{
	char cg[] = "/tmp/ab-cg-XXXXXX", mi[] = "/tmp/ab-mi-XXXXXX";
	write_fixture(cg, "12:pids:/a/b\n"
			  "4:memory:/process_api/x\n"
			  "2:cpu,cpuacct:/\n"
			  "1:name=systemd:/\n"
			  "0::/svc\n");
	write_fixture(mi,
		      "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
		      "70 31 0:32 /other /mnt/other rw - cgroup cgroup rw,memory\n"
		      "71 31 0:32 /process_ap /mnt/trap rw - cgroup cgroup rw,memory\n"
		      "50 31 0:32 /process_api /mnt/mem\\040x rw - cgroup cgroup rw,memory\n"
		      "39 31 0:36 / /sys/fs/cgroup/pids rw shared:7 - cgroup cgroup rw,pids\n"
		      "60 31 0:40 / /bad rw - cgroup cgroup rw,pidsx\n"
		      "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
		      "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
	char out[4096];
	ab_error err = {0};
	/* The mount whose root lies deepest in our path wins; "\040" is a space. */
	CHECK_EQ_INT(ab__cgroup_locate(cg, mi, "memory", out, sizeof(out), &err), 0);
	CHECK_STR(out, "/mnt/mem x/x");
	CHECK_EQ_INT(ab__cgroup_locate(cg, mi, "pids", out, sizeof(out), &err), 0);
	CHECK_STR(out, "/sys/fs/cgroup/pids/a/b");
	CHECK_EQ_INT(ab__cgroup_locate(cg, mi, "cpuacct", out, sizeof(out), &err), 0);
	CHECK_STR(out, "/sys/fs/cgroup/cpu,cpuacct");
	CHECK_EQ_INT(ab__cgroup_locate(cg, mi, NULL, out, sizeof(out), &err), 0);
	CHECK_STR(out, "/sys/fs/cgroup/unified/svc");
	CHECK_EQ_INT(ab__cgroup_locate(cg, mi, "freezer", out, sizeof(out), &err), -ENOENT);
	CHECK_CONTAINS(err.msg, "freezer");
	/* "cpu" must not match a "cpuset" hierarchy, nor "pids" a "pidsx" one. */
	CHECK_EQ_INT(ab__cgroup_locate(cg, mi, "cpuset", out, sizeof(out), &err), -ENOENT);
	unlink(cg);
	unlink(mi);
}

AB_TEST(cgroup_locate_refuses_paths_outside_the_namespace)
{
	char cg[] = "/tmp/ab-cg-XXXXXX", mi[] = "/tmp/ab-mi-XXXXXX";
	write_fixture(cg, "4:memory:/../../elsewhere\n0::/\n");
	write_fixture(mi, "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
	char out[4096];
	ab_error err = {0};
	CHECK_EQ_INT(ab__cgroup_locate(cg, mi, "memory", out, sizeof(out), &err), -ENOENT);
	CHECK_CONTAINS(err.msg, "outside");
	/* There is a "0::" line but no cgroup2 mount. */
	CHECK_EQ_INT(ab__cgroup_locate(cg, mi, NULL, out, sizeof(out), &err), -ENOENT);
	CHECK_CONTAINS(err.msg, "cgroup2");
	unlink(cg);
	unlink(mi);
}

/* ------------------------------------------------------------- on the host */

AB_TEST(cgroup_create_needs_root_init)
{
	ab_limits lim;
	ab_limits_default(&lim);
	ab_cgroup *cg = NULL;
	ab_error err = {0};
	CHECK(!ab_cgroup_available());
	CHECK_STR(ab_cgroup_version(), "none");
	CHECK_EQ_INT(ab_cgroup_create("x", &lim, &cg, &err), -ENODEV);
	CHECK(cg == NULL);
}

AB_TEST(cgroup_root_init_detects_hierarchy)
{
	setup();
	CHECK(ab_cgroup_available());
	/* Independent check: a "memory" line in /proc/self/cgroup is v1. */
	char line[4096], mempath[4096] = "";
	FILE *f = fopen("/proc/self/cgroup", "re");
	CHECK(f != NULL);
	while (fgets(line, sizeof(line), f)) {
		char *c = strstr(line, ":memory:");
		if (c) {
			snprintf(mempath, sizeof(mempath), "%s", c + 8);
			mempath[strcspn(mempath, "\n")] = '\0';
		}
	}
	fclose(f);
	CHECK_STR(ab_cgroup_version(), mempath[0] ? "v1" : "v2");
	ab_error err = {0};
	CHECK_EQ_INT(ab_cgroup_root_init(&err), 0); /* idempotent */

	ab_cgroup *cg = make_group("probe", 64, 16, 0);
	char want[4200];
	const char *p = ab_cgroup_path(cg, "memory");
	CHECK(p != NULL);
	CHECK(is_dir(p));
	snprintf(want, sizeof(want), "%s/agentbox-%d/probe",
		 strcmp(mempath, "/") == 0 ? "" : mempath, (int)getpid());
	/* The group lies beneath our own memory cgroup. */
	if (mempath[0])
		CHECK(strlen(p) >= strlen(want) && strcmp(p + strlen(p) - strlen(want), want) == 0);
	CHECK(ab_cgroup_path(cg, "pids") != NULL);
	CHECK(ab_cgroup_path(cg, "nonsense") == NULL || is_v2());
	cleanup_groups();
}

AB_TEST(cgroup_create_rejects_bad_names)
{
	setup();
	ab_limits lim;
	ab_limits_default(&lim);
	ab_cgroup *cg = NULL;
	ab_error err = {0};
	const char *bad[] = {"",
			     "../x",
			     "a/b",
			     ".hidden",
			     "daemon",
			     "cgroup procs",
			     "0123456789012345678901234567890123456789012345678901234567890123x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_EQ_INT(ab_cgroup_create(bad[i], &lim, &cg, &err), -EINVAL);
		CHECK(cg == NULL);
	}
	CHECK_EQ_INT(ab_cgroup_create(NULL, &lim, &cg, &err), -EINVAL);
	cleanup_groups();
}

AB_TEST(cgroup_create_writes_limits)
{
	setup();
	ab_cgroup *cg = make_group("limits", 64, 16, 0.5);
	if (is_v2()) {
		CHECK_STR(read_ctl(cg, "memory", "memory.max"), "67108864");
		CHECK_STR(read_ctl(cg, "pids", "pids.max"), "16");
		if (ab_cgroup_path(cg, "cpu"))
			CHECK_STR(read_ctl(cg, "cpu", "cpu.max"), "50000 100000");
	} else {
		CHECK_STR(read_ctl(cg, "memory", "memory.limit_in_bytes"), "67108864");
		char path[4096];
		snprintf(path, sizeof(path), "%s/memory.memsw.limit_in_bytes",
			 ab_cgroup_path(cg, "memory"));
		if (access(path, F_OK) == 0)
			CHECK_STR(read_ctl(cg, "memory", "memory.memsw.limit_in_bytes"),
				  "67108864");
		CHECK_STR(read_ctl(cg, "pids", "pids.max"), "16");
		if (ab_cgroup_path(cg, "cpu")) {
			CHECK_STR(read_ctl(cg, "cpu", "cpu.cfs_period_us"), "100000");
			CHECK_STR(read_ctl(cg, "cpu", "cpu.cfs_quota_us"), "50000");
		}
	}
	cleanup_groups();
}

AB_TEST(cgroup_set_limits_rewrites_values)
{
	setup();
	ab_cgroup *cg = make_group("relimit", 64, 16, 1);
	ab_limits lim;
	ab_limits_default(&lim);
	ab_error err = {0};
	const char *memfile = is_v2() ? "memory.max" : "memory.limit_in_bytes";
	char memsw[4096];
	snprintf(memsw, sizeof(memsw), "%s/memory.memsw.limit_in_bytes",
		 ab_cgroup_path(cg, "memory"));
	bool has_memsw = !is_v2() && access(memsw, F_OK) == 0;

	/* Growing, then shrinking: memsw must follow in both directions. */
	lim.memory_mb = 128;
	lim.pids = 32;
	lim.cpu = 0;
	int r = ab_cgroup_set_limits(cg, &lim, &err);
	if (r < 0)
		fprintf(stderr, "set_limits: %s\n", err.msg);
	CHECK_EQ_INT(r, 0);
	CHECK_STR(read_ctl(cg, "memory", memfile), "134217728");
	if (has_memsw)
		CHECK_STR(read_ctl(cg, "memory", "memory.memsw.limit_in_bytes"), "134217728");
	CHECK_STR(read_ctl(cg, "pids", "pids.max"), "32");
	if (ab_cgroup_path(cg, "cpu"))
		CHECK_STR(read_ctl(cg, "cpu", is_v2() ? "cpu.max" : "cpu.cfs_quota_us"),
			  is_v2() ? "max 100000" : "-1");

	lim.memory_mb = 32;
	r = ab_cgroup_set_limits(cg, &lim, &err);
	if (r < 0)
		fprintf(stderr, "set_limits: %s\n", err.msg);
	CHECK_EQ_INT(r, 0);
	CHECK_STR(read_ctl(cg, "memory", memfile), "33554432");
	if (has_memsw)
		CHECK_STR(read_ctl(cg, "memory", "memory.memsw.limit_in_bytes"), "33554432");
	cleanup_groups();
}

static void do_pause(void)
{
	for (;;)
		pause();
}

AB_TEST(cgroup_attach_moves_child)
{
	setup();
	ab_cgroup *cg = make_group("attach", 64, 16, 0);
	int gate;
	pid_t pid = spawn_gated(do_pause, &gate);
	attach_and_release(cg, pid, gate);
	CHECK(has_proc(ab_cgroup_path(cg, "memory"), pid));
	CHECK(has_proc(ab_cgroup_path(cg, "pids"), pid));
	CHECK(!has_proc(ab_cgroup_path(cg, "memory"), getpid()));

	/* Destroying the group kills what is in it and removes it. */
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", ab_cgroup_path(cg, "memory"));
	forget_group(cg);
	ab_cgroup_destroy(cg);
	int st;
	wait_dead(pid, &st);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	CHECK(!is_dir(dir));
	cleanup_groups();
}

static void fork_until_refused(void)
{
	for (int i = 0; i < 64; i++) {
		pid_t p = fork();
		if (p == 0)
			do_pause();
		if (p < 0)
			_exit(errno == EAGAIN ? 0 : 2);
	}
	_exit(1);
}

AB_TEST(cgroup_pids_limit_refuses_forks_and_counts_them)
{
	setup();
	ab_cgroup *cg = make_group("forks", 64, 8, 0);
	int gate, st;
	pid_t pid = spawn_gated(fork_until_refused, &gate);
	attach_and_release(cg, pid, gate);
	wait_dead(pid, &st);
	CHECK(WIFEXITED(st));
	CHECK_EQ_INT(WEXITSTATUS(st), 0); /* fork failed with EAGAIN */

	ab_cgroup_stats stats;
	ab_error err = {0};
	CHECK_EQ_INT(ab_cgroup_stats_read(cg, &stats, &err), 0);
	CHECK(stats.pids_max_hits > 0);

	/* The paused grandchildren (orphans now) are still in the group. */
	CHECK(count_procs(ab_cgroup_path(cg, "pids")) == 7);
	CHECK_EQ_INT(ab_cgroup_kill_all(cg, 3000, &err), 0);
	CHECK_EQ_INT(count_procs(ab_cgroup_path(cg, "pids")), 0);
	reap_all();
	cleanup_groups();
}

static void eat_memory(void)
{
	size_t len = 200u << 20;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		_exit(3);
	for (size_t i = 0; i < len; i += 4096)
		p[i] = 1;
	_exit(0);
}

static bool host_has_swap(void)
{
	FILE *f = fopen("/proc/swaps", "re");
	if (!f)
		return false;
	char line[512];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		n++;
	fclose(f);
	return n > 1;
}

AB_TEST(cgroup_memory_limit_oom_kills_and_counts)
{
	setup();
	ab_cgroup *cg = make_group("oom", 64, 16, 0);
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", ab_cgroup_path(cg, "memory"),
		 is_v2() ? "memory.swap.max" : "memory.memsw.limit_in_bytes");
	if (host_has_swap() && access(path, F_OK) != 0) {
		cleanup_groups();
		SKIP("the host swaps and cannot cap swap per group");
	}
	int gate, st;
	pid_t pid = spawn_gated(eat_memory, &gate);
	attach_and_release(cg, pid, gate);
	wait_dead(pid, &st);
	CHECK(WIFSIGNALED(st));
	CHECK_EQ_INT(WTERMSIG(st), SIGKILL);

	ab_cgroup_stats stats;
	ab_error err = {0};
	CHECK_EQ_INT(ab_cgroup_stats_read(cg, &stats, &err), 0);
	CHECK(stats.oom_kills >= 1);
	CHECK(stats.memory_peak > (32u << 20));
	CHECK(stats.memory_peak <= (64u << 20) + (1u << 20));
	cleanup_groups();
}

static int tree_ready = -1;

/* A chain root -> child -> grandchild, all ignoring SIGTERM; each reports
 * on the ready pipe once it has forked its own child. */
static void tree_root(void)
{
	signal(SIGTERM, SIG_IGN);
	for (int depth = 0; depth < 2; depth++) {
		pid_t p = fork();
		if (p < 0)
			_exit(4);
		if (p > 0)
			break;
	}
	if (write(tree_ready, "r", 1) != 1)
		_exit(4);
	do_pause();
}

AB_TEST(cgroup_kill_all_kills_a_tree)
{
	setup();
	ab_cgroup *cg = make_group("tree", 64, 16, 0);
	int ready[2];
	CHECK(pipe2(ready, O_CLOEXEC) == 0);
	tree_ready = ready[1];
	int gate;
	pid_t pid = spawn_gated(tree_root, &gate);
	close(ready[1]);
	attach_and_release(cg, pid, gate);
	char buf[3];
	size_t got = 0;
	while (got < 3) {
		ssize_t n = read(ready[0], buf + got, 3 - got);
		CHECK(n > 0);
		got += (size_t)n;
	}
	const char *dir = ab_cgroup_path(cg, "memory");
	CHECK_EQ_INT(count_procs(dir), 3);

	ab_error err = {0};
	int r = ab_cgroup_kill_all(cg, 3000, &err);
	if (r < 0)
		fprintf(stderr, "kill_all: %s\n", err.msg);
	CHECK_EQ_INT(r, 0);
	CHECK_EQ_INT(count_procs(dir), 0);
	CHECK_EQ_INT(count_procs(ab_cgroup_path(cg, "pids")), 0);
	int st;
	wait_dead(pid, &st);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	reap_all();
	/* An empty group is killed at once. */
	CHECK_EQ_INT(ab_cgroup_kill_all(cg, 0, &err), 0);
	cleanup_groups();
}

static void burn_cpu(void)
{
	struct timespec ts;
	do
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	while (ts.tv_sec == 0 && ts.tv_nsec < 100 * 1000 * 1000);
}

AB_TEST(cgroup_stats_report_cpu_usage)
{
	setup();
	ab_cgroup *cg = make_group("cpu", 64, 16, 0);
	ab_cgroup_stats stats;
	ab_error err = {0};
	CHECK_EQ_INT(ab_cgroup_stats_read(cg, &stats, &err), 0);
	CHECK_EQ_INT(stats.oom_kills, 0);
	CHECK_EQ_INT(stats.pids_max_hits, 0);
	int gate, st;
	pid_t pid = spawn_gated(burn_cpu, &gate);
	attach_and_release(cg, pid, gate);
	wait_dead(pid, &st);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK_EQ_INT(ab_cgroup_stats_read(cg, &stats, &err), 0);
	if (ab_cgroup_path(cg, "cpuacct") || is_v2())
		CHECK(stats.cpu_usage_us >= 50000);
	cleanup_groups();
}

AB_TEST(cgroup_destroy_removes_directories)
{
	setup();
	ab_cgroup *cg = make_group("gone", 64, 16, 1);
	static const char *const ctrls[] = {"memory", "pids", "cpu", "cpuacct", "freezer"};
	char dirs[5][4096];
	for (int i = 0; i < 5; i++) {
		const char *p = ab_cgroup_path(cg, ctrls[i]);
		snprintf(dirs[i], sizeof(dirs[i]), "%s", p ? p : "");
		if (p)
			CHECK(is_dir(p));
	}
	forget_group(cg);
	ab_cgroup_destroy(cg);
	ab_cgroup_destroy(NULL);
	for (int i = 0; i < 5; i++)
		if (dirs[i][0])
			CHECK(!is_dir(dirs[i]));
	cleanup_groups();
}

AB_TEST(cgroup_root_cleanup_removes_parent)
{
	setup();
	ab_cgroup *cg = make_group("left", 64, 16, 0);
	char parent[4096], pids_parent[4096];
	snprintf(parent, sizeof(parent), "%s", ab_cgroup_path(cg, "memory"));
	snprintf(pids_parent, sizeof(pids_parent), "%s", ab_cgroup_path(cg, "pids"));
	dirname(parent);
	dirname(pids_parent);
	CHECK(is_dir(parent));
	CHECK(is_dir(pids_parent));
	/* A group the daemon forgot is killed and removed too. */
	int gate;
	pid_t pid = spawn_gated(do_pause, &gate);
	attach_and_release(cg, pid, gate);
	forget_group(cg);
	ab_cgroup_root_cleanup();
	CHECK(!is_dir(parent));
	CHECK(!is_dir(pids_parent));
	CHECK(!ab_cgroup_available());
	int st;
	wait_dead(pid, &st);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	free(cg); /* its directories are gone; only the handle is left */
	cleanup_groups();
}

AB_TEST(cgroup_reap_stale_removes_groups_of_dead_daemons)
{
	setup();
	ab_cgroup *cg = make_group("mine", 64, 16, 0);
	/* The own cgroup is the parent of "agentbox-<pid>". */
	char own[4096], mine[4096];
	snprintf(own, sizeof(own), "%s", ab_cgroup_path(cg, "memory"));
	dirname(own);
	snprintf(mine, sizeof(mine), "%s", own);
	dirname(own);

	pid_t dead = fork();
	CHECK(dead >= 0);
	if (dead == 0)
		_exit(0);
	wait_dead(dead, NULL);
	int gate;
	pid_t alive = spawn_gated(do_pause, &gate);

	char stale[4200], stale_child[4300], live[4200];
	snprintf(stale, sizeof(stale), "%s/agentbox-%d", own, (int)dead);
	snprintf(stale_child, sizeof(stale_child), "%s/sbx", stale);
	snprintf(live, sizeof(live), "%s/agentbox-%d", own, (int)alive);
	CHECK(mkdir(stale, 0755) == 0);
	CHECK(mkdir(stale_child, 0755) == 0);
	CHECK(mkdir(live, 0755) == 0);

	ab_error err = {0};
	int n = ab_cgroup_reap_stale(&err);
	bool live_kept = is_dir(live);
	rmdir(live);
	kill(alive, SIGKILL);
	wait_dead(alive, NULL);
	close(gate);
	CHECK(n >= 1);
	CHECK(!is_dir(stale_child));
	CHECK(!is_dir(stale));
	CHECK(live_kept);
	CHECK(is_dir(mine));
	CHECK(is_dir(ab_cgroup_path(cg, "memory")));
	cleanup_groups();
}

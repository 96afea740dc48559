/* jail.c - the heavy tier's jail: namespaces, the new root, the tiny init
 * and the hardening of the executor.
 *
 * Privilege contexts, in order:
 *  - zygote (host namespaces, the daemon's credentials): clones the
 *    sandbox, writes its uid/gid maps, moves it into its cgroup, then
 *    releases it;
 *  - sandbox init, PID 1 (root of a new user namespace, full capabilities
 *    there, none on the host): builds the root file system, forks the
 *    executor, then drops its own privileges and only reaps and forwards;
 *  - executor, PID 2: drops every capability, sets no_new_privs, applies
 *    Landlock and seccomp, then runs user code.
 */
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <linux/sched.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "confine.h"
#include "frame.h"
#include "internal.h"
#include "jail.h"

#define FD_STDIN 0
#define FD_CTL 3
#define FD_WORKSPACE 4
#define FD_SYNC 5

static bool degraded(const ab_jail_config *cfg, enum ab_layer l)
{
	return cfg->degraded & (1u << l);
}

/* ------------------------------------------------------------ child side */

/* Reports a set-up failure to the daemon on the control socket and exits.
 * Runs in the sandbox before any user code, so the message is ours. */
__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_t *j = json_pack("{s:s, s:s}", "ev", "fatal", "error", msg);
	if (j)
		ab_frame_write(FD_CTL, j, NULL);
	_exit(127);
}

#define DIE_ERRNO(what, ...) die(what ": %s", ##__VA_ARGS__, strerror(errno))

static void write_file(const char *path, const char *content)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		DIE_ERRNO("create %s", path);
	size_t len = strlen(content);
	if (write(fd, content, len) != (ssize_t)len)
		DIE_ERRNO("write %s", path);
	close(fd);
}

/* Flags a remount must keep: in a user namespace the kernel refuses to
 * clear flags that were set on the original mount ("locked" flags). */
static unsigned long locked_flags(const char *path)
{
	struct statvfs sv;
	if (statvfs(path, &sv) < 0)
		return 0;
	unsigned long f = 0;
	if (sv.f_flag & ST_NOSUID)
		f |= MS_NOSUID;
	if (sv.f_flag & ST_NODEV)
		f |= MS_NODEV;
	if (sv.f_flag & ST_NOEXEC)
		f |= MS_NOEXEC;
	if (sv.f_flag & ST_NOATIME)
		f |= MS_NOATIME;
	if (sv.f_flag & ST_NODIRATIME)
		f |= MS_NODIRATIME;
	if (sv.f_flag & ST_RELATIME)
		f |= MS_RELATIME;
	if (sv.f_flag & ST_RDONLY)
		f |= MS_RDONLY;
	return f;
}

/* Binds src at dst (relative to the new root) and remounts it read-only,
 * nosuid and nodev: setuid binaries of the host are plain files here. */
static void bind_ro(const char *src, const char *dst, bool is_dir)
{
	if (is_dir) {
		if (mkdir(dst, 0755) < 0 && errno != EEXIST)
			DIE_ERRNO("mkdir %s", dst);
	} else {
		int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0)
			DIE_ERRNO("create mount point %s", dst);
		close(fd);
	}
	if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
		DIE_ERRNO("bind %s", src);
	unsigned long fl = locked_flags(dst) | MS_RDONLY | MS_NOSUID | MS_NODEV;
	if (mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | fl, NULL) < 0)
		DIE_ERRNO("remount %s read-only", dst);
}

/* Top-level entries that are symlinks into /usr on merged-/usr systems,
 * or real directories elsewhere. */
static void mirror_toplevel(const char *name)
{
	char host[64], target[256];
	snprintf(host, sizeof(host), "/%s", name);
	struct stat st;
	if (lstat(host, &st) < 0)
		return;
	if (S_ISLNK(st.st_mode)) {
		ssize_t n = readlink(host, target, sizeof(target) - 1);
		if (n < 0)
			DIE_ERRNO("readlink %s", host);
		target[n] = '\0';
		if (symlink(target, name) < 0)
			DIE_ERRNO("symlink %s", name);
	} else if (S_ISDIR(st.st_mode)) {
		bind_ro(host, name, true);
	}
}

static void setup_etc(void)
{
	static const char *const files[] = {
	    "ld.so.cache", "nsswitch.conf", "matplotlibrc",   "mime.types", "timezone",
	    "protocols",   "services",	    "debian_version", "os-release", NULL,
	};
	static const char *const dirs[] = {
	    "ssl", "alternatives", "python3", "python3.11", "fonts", "ca-certificates", NULL,
	};
	char host[128], dst[128];
	struct stat st;
	if (mkdir("etc", 0755) < 0)
		DIE_ERRNO("mkdir etc");
	for (int i = 0; files[i]; i++) {
		snprintf(host, sizeof(host), "/etc/%s", files[i]);
		snprintf(dst, sizeof(dst), "etc/%s", files[i]);
		if (stat(host, &st) == 0 && S_ISREG(st.st_mode))
			bind_ro(host, dst, false);
	}
	for (int i = 0; dirs[i]; i++) {
		snprintf(host, sizeof(host), "/etc/%s", dirs[i]);
		snprintf(dst, sizeof(dst), "etc/%s", dirs[i]);
		if (stat(host, &st) == 0 && S_ISDIR(st.st_mode))
			bind_ro(host, dst, true);
	}
	char target[256];
	ssize_t n = readlink("/etc/localtime", target, sizeof(target) - 1);
	if (n > 0) {
		target[n] = '\0';
		if (symlink(target, "etc/localtime") < 0)
			DIE_ERRNO("symlink etc/localtime");
	}
	/* Generated, so that nothing about the host's users or network leaks. */
	write_file("etc/passwd", "root:x:0:0:sandbox:/workspace:/bin/sh\n"
				 "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
	write_file("etc/group", "root:x:0:\nnogroup:x:65534:\n");
	write_file("etc/hostname", "sandbox\n");
	write_file("etc/hosts", "127.0.0.1 localhost sandbox\n::1 localhost ip6-localhost\n");
	write_file("etc/resolv.conf", "");
}

/* Covers a directory with an empty, read-only tmpfs: what was below it is
 * out of sight, and nothing can be created in its place. */
static void hide_dir(const char *dir)
{
	if (mount("tmpfs", dir, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "mode=0555,size=4k,nr_inodes=2") < 0)
		DIE_ERRNO("hide %s", dir);
}

/* /proc files that tell about the host's kernel, its hardware and how it
 * was booted are masked (L3): kernel addresses and memory layout
 * (kallsyms, iomem, ioports, vmallocinfo, slab and page allocator state),
 * the boot command line, interrupt and device tables, disks, partitions,
 * swap, consoles, loaded modules and the host's boot id. What Python,
 * numpy and pandas read stays: cpuinfo, meminfo, stat, loadavg, uptime and
 * version (os.cpu_count, psutil and BLAS thread sizing; the CPU model is
 * the cpuid instruction's answer anyway, and total memory that of
 * sysinfo(2)). Directories of hardware (ACPI, PCI buses, IRQs, SCSI,
 * sound, drivers) and the host-wide pressure stall figures are hidden
 * whole; /proc/sys and /proc/fs stay readable, since glibc and Python read
 * kernel settings there, but not writable. */
static void setup_proc(void)
{
	static const char *const masked[] = {
	    "proc/kallsyms",
	    "proc/kcore",
	    "proc/keys",
	    "proc/key-users",
	    "proc/sched_debug",
	    "proc/timer_list",
	    "proc/sysrq-trigger",
	    "proc/latency_stats",
	    "proc/kpageflags",
	    "proc/kpagecount",
	    "proc/kpagecgroup",
	    "proc/config.gz",
	    "proc/vmallocinfo",
	    "proc/slabinfo",
	    "proc/pagetypeinfo",
	    "proc/buddyinfo",
	    "proc/zoneinfo",
	    "proc/cmdline",
	    "proc/bootconfig",
	    "proc/iomem",
	    "proc/ioports",
	    "proc/interrupts",
	    "proc/softirqs",
	    "proc/dma",
	    "proc/mtrr",
	    "proc/modules",
	    "proc/devices",
	    "proc/misc",
	    "proc/consoles",
	    "proc/partitions",
	    "proc/diskstats",
	    "proc/swaps",
	    "proc/mdstat",
	    "proc/locks",
	    "proc/fb",
	    "proc/sys/kernel/random/boot_id",
	    NULL,
	};
	static const char *const hidden[] = {
	    "proc/acpi", "proc/bus",	"proc/irq",	 "proc/driver",
	    "proc/scsi", "proc/asound", "proc/pressure", NULL,
	};
	static const char *const readonly[] = {
	    "proc/sys",
	    "proc/fs",
	    NULL,
	};
	if (mkdir("proc", 0555) < 0)
		DIE_ERRNO("mkdir proc");
	if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=0") < 0)
		DIE_ERRNO("mount proc");
	for (int i = 0; masked[i]; i++) {
		if (access(masked[i], F_OK) < 0)
			continue;
		if (mount("/dev/null", masked[i], NULL, MS_BIND, NULL) < 0)
			DIE_ERRNO("mask %s", masked[i]);
	}
	for (int i = 0; hidden[i]; i++) {
		struct stat st;
		if (lstat(hidden[i], &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		hide_dir(hidden[i]);
	}
	for (int i = 0; readonly[i]; i++) {
		struct stat st;
		if (stat(readonly[i], &st) < 0)
			continue;
		if (mount(readonly[i], readonly[i], NULL, MS_BIND | MS_REC, NULL) < 0)
			DIE_ERRNO("bind %s", readonly[i]);
		if (mount(NULL, readonly[i], NULL,
			  MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
			  NULL) < 0)
			DIE_ERRNO("remount %s read-only", readonly[i]);
	}
}

static void setup_dev(const ab_limits *lim)
{
	static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", NULL};
	char host[64], dst[64], opts[128];
	if (mkdir("dev", 0755) < 0)
		DIE_ERRNO("mkdir dev");
	if (mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC,
		  "mode=0755,size=64k,nr_inodes=64") < 0)
		DIE_ERRNO("mount tmpfs on /dev");
	for (int i = 0; nodes[i]; i++) {
		snprintf(host, sizeof(host), "/dev/%s", nodes[i]);
		snprintf(dst, sizeof(dst), "dev/%s", nodes[i]);
		int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
		if (fd < 0)
			DIE_ERRNO("create %s", dst);
		close(fd);
		if (mount(host, dst, NULL, MS_BIND, NULL) < 0)
			DIE_ERRNO("bind %s", host);
	}
	static const char *const links[][2] = {
	    {"/proc/self/fd", "dev/fd"},
	    {"/proc/self/fd/0", "dev/stdin"},
	    {"/proc/self/fd/1", "dev/stdout"},
	    {"/proc/self/fd/2", "dev/stderr"},
	};
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++)
		if (symlink(links[i][0], links[i][1]) < 0)
			DIE_ERRNO("symlink %s", links[i][1]);
	if (mkdir("dev/shm", 01777) < 0)
		DIE_ERRNO("mkdir dev/shm");
	uint64_t shm_mb = lim->disk_mb < 64 ? lim->disk_mb : 64;
	snprintf(opts, sizeof(opts), "mode=1777,size=%llum,nr_inodes=1024",
		 (unsigned long long)shm_mb);
	if (mount("tmpfs", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
		DIE_ERRNO("mount tmpfs on /dev/shm");
	if (mount(NULL, "dev", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC,
		  "mode=0755,size=64k,nr_inodes=64") < 0)
		DIE_ERRNO("remount /dev read-only");
}

/* Egress (docs/egress.md): the sandbox's end of the egress socket at
 * /run/agentbox/egress.sock, where init's relay connects, and the CA
 * bundle, read-only, at /etc/agentbox/ca-bundle.pem. Both were opened
 * O_PATH before (egress_fds); the socket is not made read-only, which
 * would not stop a connect anyway, but nosuid, nodev and noexec. */
static void setup_egress(int sock_fd, int bundle_fd)
{
	char src[64];
	if (mkdir("run", 0755) < 0 || mkdir("run/agentbox", 0755) < 0)
		DIE_ERRNO("mkdir run/agentbox");
	const char *dst = &AB_JAIL_EGRESS_SOCKET[1]; /* relative to the new root */
	int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		DIE_ERRNO("create mount point %s", dst);
	close(fd);
	snprintf(src, sizeof(src), "/proc/self/fd/%d", sock_fd);
	if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
		DIE_ERRNO("bind the egress socket at %s", AB_JAIL_EGRESS_SOCKET);
	unsigned long fl = locked_flags(dst) | MS_NOSUID | MS_NODEV | MS_NOEXEC;
	if (mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | fl, NULL) < 0)
		DIE_ERRNO("remount %s nosuid", AB_JAIL_EGRESS_SOCKET);
	if (bundle_fd < 0)
		return;
	if (mkdir("etc/agentbox", 0755) < 0)
		DIE_ERRNO("mkdir etc/agentbox");
	snprintf(src, sizeof(src), "/proc/self/fd/%d", bundle_fd);
	bind_ro(src, &AB_JAIL_CA_BUNDLE[1], false);
}

/* Builds the new root on a tmpfs and pivots into it. Runs as sandbox
 * PID 1, root of the sandbox's user namespace, in its own mount
 * namespace: nothing here is visible on the host. */
static void build_root(const ab_jail_config *cfg, int egress_fd, int bundle_fd)
{
	char opts[160];
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		DIE_ERRNO("make / private");
	/* Any directory would do as the base; /tmp exists everywhere. The
	 * workspace was opened before, so hiding it here is harmless. */
	if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
		  "mode=0755,size=4m,nr_inodes=512") < 0)
		DIE_ERRNO("mount tmpfs root");
	if (chdir("/tmp") < 0)
		DIE_ERRNO("chdir new root");
	bind_ro("/usr", "usr", true);
	/* The host's own installs (pip as root, hand-built tools) live in
	 * /usr/local; the runtime is the distribution's /usr, so the sandbox
	 * sees an empty /usr/local (Debian's python3 still lists
	 * /usr/local/lib/python3.11/dist-packages on sys.path; it is simply
	 * missing). */
	struct stat local;
	if (lstat("usr/local", &local) == 0 && S_ISDIR(local.st_mode))
		hide_dir("usr/local");
	mirror_toplevel("bin");
	mirror_toplevel("sbin");
	mirror_toplevel("lib");
	mirror_toplevel("lib32");
	mirror_toplevel("lib64");
	mirror_toplevel("libx32");
	setup_etc();
	if (egress_fd >= 0)
		setup_egress(egress_fd, bundle_fd);
	setup_dev(&cfg->limits);
	/* Nano has no /proc and no writable file system at all: its seccomp
	 * policy only opens files read-only, and nothing there needs them. */
	if (!cfg->nano)
		setup_proc();

	if (mkdir("tmp", 01777) < 0)
		DIE_ERRNO("mkdir tmp");
	if (cfg->nano)
		goto workspace;
	/* R5: the inode cap bounds millions of empty files. */
	snprintf(opts, sizeof(opts), "mode=1777,size=%llum,nr_inodes=%llu",
		 (unsigned long long)cfg->limits.disk_mb + 1,
		 (unsigned long long)ab_disk_inodes(cfg->limits.disk_mb));
	if (mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
		DIE_ERRNO("mount tmpfs on /tmp");

workspace:
	if (mkdir("workspace", 0755) < 0)
		DIE_ERRNO("mkdir workspace");
	char wspath[64];
	snprintf(wspath, sizeof(wspath), "/proc/self/fd/%d", FD_WORKSPACE);
	if (mount(wspath, "workspace", NULL, MS_BIND, NULL) < 0)
		DIE_ERRNO("bind workspace");
	unsigned long wfl = (locked_flags("workspace") & ~MS_RDONLY) | MS_NOSUID | MS_NODEV |
			    (cfg->nano ? MS_RDONLY : 0);
	if (mount(NULL, "workspace", NULL, MS_REMOUNT | MS_BIND | wfl, NULL) < 0)
		DIE_ERRNO("remount workspace nosuid");
	close(FD_WORKSPACE);

	/* pivot_root(".", ".") stacks the old root on top of the new one;
	 * detaching it leaves the new root alone, with no path back. */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		DIE_ERRNO("pivot_root");
	if (umount2(".", MNT_DETACH) < 0)
		DIE_ERRNO("detach old root");
	if (chdir("/") < 0)
		DIE_ERRNO("chdir /");
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) <
	    0)
		DIE_ERRNO("remount / read-only");
	if (chdir("/workspace") < 0)
		DIE_ERRNO("chdir /workspace");
}

/* The new network namespace has only "lo", and it is down. Bring it up so
 * that code inside can talk to itself (a local server, multiprocessing
 * managers); nothing else exists, so nothing leaves. */
static void loopback_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		DIE_ERRNO("socket for loopback");
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		DIE_ERRNO("get flags of lo");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		DIE_ERRNO("bring lo up");
	close(s);
}

static void set_rlimits(const ab_limits *lim, bool nano)
{
	struct {
		int res;
		rlim_t soft, hard;
		const char *name;
	} rl[] = {
	    {RLIMIT_FSIZE, (rlim_t)lim->disk_mb << 20, (rlim_t)lim->disk_mb << 20, "FSIZE"},
	    /* Soft equal to hard: a sandbox's descriptors in all its
	     * processes stay within AB_SANDBOX_FILES_MAX. */
	    {RLIMIT_NOFILE, ab_limits_nofile(lim, nano), ab_limits_nofile(lim, nano), "NOFILE"},
	    {RLIMIT_CORE, 0, 0, "CORE"},
	    {RLIMIT_MEMLOCK, 64 << 10, 64 << 10, "MEMLOCK"},
	    {RLIMIT_MSGQUEUE, 64 << 10, 64 << 10, "MSGQUEUE"},
	    {RLIMIT_SIGPENDING, 1024, 1024, "SIGPENDING"},
	};
	if (nano) {
		/* No file is ever written and the address space is
		 * capped directly. */
		rl[0].soft = rl[0].hard = 0;
	}
	for (size_t i = 0; i < sizeof(rl) / sizeof(rl[0]); i++) {
		struct rlimit r = {rl[i].soft, rl[i].hard};
		if (setrlimit(rl[i].res, &r) < 0)
			DIE_ERRNO("setrlimit RLIMIT_%s", rl[i].name);
	}
}

static void harden_executor(const ab_jail_config *cfg)
{
	ab_error err = {0};
	if (setsid() < 0)
		DIE_ERRNO("setsid");
	if (ab_caps_drop_all(&err) < 0)
		die("drop capabilities: %s", err.msg);
	if (!degraded(cfg, AB_LAYER_LANDLOCK) && cfg->nano) {
		/* Read-only everywhere: the interpreter's files, its
		 * configuration and the workspace's inputs. */
		static const ab_landlock_rule rules[] = {
		    /* the standard library and its extension modules, the C
		     * libraries they load, time zones; not dist-packages */
		    {"/usr/lib/python3.11", false},
		    {"/usr/lib/x86_64-linux-gnu", false},
		    {"/usr/lib/aarch64-linux-gnu", false},
		    {"/usr/lib64", false},
		    {"/usr/share/zoneinfo", false},
		    {"/etc", false},
		    {"/dev/null", true},
		    {"/dev/zero", false},
		    {"/dev/random", false},
		    {"/dev/urandom", false},
		    {"/workspace", false},
		};
		if (ab_landlock_apply(rules, sizeof(rules) / sizeof(rules[0]), &err) < 0)
			die("landlock: %s", err.msg);
	} else if (!degraded(cfg, AB_LAYER_LANDLOCK)) {
		static const ab_landlock_rule rules[] = {
		    {"/usr", false},	    {"/etc", false},	     {"/proc", false},
		    {"/dev/null", true},    {"/dev/zero", false},    {"/dev/full", true},
		    {"/dev/random", false}, {"/dev/urandom", false}, {"/dev", false},
		    {"/dev/shm", true},	    {"/tmp", true},	     {"/workspace", true},
		    {"/bin", false},	    {"/lib", false},	     {"/lib64", false},
		    {"/sbin", false},
		};
		if (ab_landlock_apply(rules, sizeof(rules) / sizeof(rules[0]), &err) < 0)
			die("landlock: %s", err.msg);
	}
	/* Non-dumpable before the filter: prctl is not on nano's list. */
	if (ab_set_nondumpable(&err) < 0)
		die("%s", err.msg);
	if (!degraded(cfg, AB_LAYER_SECCOMP)) {
		ab_seccomp_opts so = {.allow_exec = true};
		if ((cfg->nano ? ab_seccomp_apply_nano(&err) : ab_seccomp_apply_heavy(&so, &err)) <
		    0)
			die("seccomp: %s", err.msg);
	}
}

/* ------------------------------------------------------------ init, relay */

/* The egress relay (docs/egress.md) lives in init because init is the one
 * process of the sandbox that user code cannot kill, trace or replace: it
 * listens on 127.0.0.1:3128 in the sandbox's network namespace and joins
 * each connection to a new connection to /run/agentbox/egress.sock, copying
 * bytes both ways. It only moves bytes; what may leave is the sidecar's
 * decision. Everything it reads comes from user code, so nothing a
 * connection does may stop init: every failure closes that connection
 * alone, buffers are fixed (RELAY_BUF per direction, allocated once per
 * connection), no signal is raised (MSG_NOSIGNAL), and the number of
 * connections is capped by AB_JAIL_RELAY_MAX and by init's own descriptor
 * limit (the sandbox's RLIMIT_NOFILE). */

#define RELAY_BUF (64u << 10)
#define TAG_SIGNAL 0
#define TAG_LISTEN 1
#define TAG_PAIR 2 /* + 2 * pair index + end, the pair's generation above */
#define RELAY_UNWATCHED UINT32_MAX

typedef struct relay_dir {
	char *buf;
	size_t off, len; /* bytes buf[off, len) are still to be sent */
	bool eof;	 /* its source ended, and its destination was told */
	bool dead;	 /* its destination takes nothing more: read and dropped */
} relay_dir;

typedef struct relay_pair {
	bool used;
	uint32_t gen;	  /* tells its events from a former pair's in one batch */
	bool connecting;  /* the egress side's connect is in progress */
	int fd[2];	  /* 0: the client inside, 1: the egress socket */
	uint32_t ev[2];	  /* the events registered, or RELAY_UNWATCHED */
	bool hup[2];	  /* epoll reported a hang-up on that end */
	relay_dir dir[2]; /* dir[e]: read from fd[e], written to fd[1 - e] */
} relay_pair;

typedef struct init_state {
	pid_t executor;
	int ep, sig_fd, listen_fd; /* listen_fd -1: no relay */
	bool listen_paused;	   /* after a transient accept error */
	int npairs, max_pairs;
	relay_pair pairs[AB_JAIL_RELAY_MAX];
} init_state;

static void relay_close(init_state *st, relay_pair *p)
{
	for (int e = 0; e < 2; e++) {
		if (p->fd[e] < 0)
			continue;
		if (p->ev[e] != RELAY_UNWATCHED)
			epoll_ctl(st->ep, EPOLL_CTL_DEL, p->fd[e], NULL);
		close(p->fd[e]);
	}
	free(p->dir[0].buf); /* dir[1].buf is its second half */
	uint32_t gen = p->gen;
	memset(p, 0, sizeof(*p));
	p->gen = gen;
	st->npairs--;
}

/* Registers what each end of p waits for: readable while its buffer is
 * empty and it has not ended, writable while bytes wait for it. epoll
 * always reports a hang-up, so an end that hung up and waits for nothing
 * is taken off the set (it would wake init again and again). */
static int relay_watch(init_state *st, relay_pair *p, int idx)
{
	for (int e = 0; e < 2; e++) {
		uint32_t want = 0;
		if (p->connecting) {
			want = e == 1 ? EPOLLOUT : 0;
		} else {
			const relay_dir *in = &p->dir[e], *out = &p->dir[1 - e];
			if (!in->eof && in->off == in->len)
				want |= EPOLLIN;
			if (out->off < out->len)
				want |= EPOLLOUT;
		}
		if (p->hup[e] && want == 0)
			want = RELAY_UNWATCHED;
		if (want == p->ev[e])
			continue;
		struct epoll_event ev = {
		    .events = want, .data.u64 = (uint64_t)p->gen << 32 | (TAG_PAIR + 2u * idx + e)};
		int r;
		if (want == RELAY_UNWATCHED)
			r = epoll_ctl(st->ep, EPOLL_CTL_DEL, p->fd[e], NULL);
		else if (p->ev[e] == RELAY_UNWATCHED)
			r = epoll_ctl(st->ep, EPOLL_CTL_ADD, p->fd[e], &ev);
		else
			r = epoll_ctl(st->ep, EPOLL_CTL_MOD, p->fd[e], &ev);
		if (r < 0)
			return -1;
		p->ev[e] = want;
	}
	return 0;
}

/* Moves bytes from fd[d] to fd[1 - d] until one side would block (a few
 * rounds at most, so that one busy connection cannot starve the others;
 * epoll is level-triggered and comes back). Returns -1 when the pair is
 * broken. */
static int relay_flow(relay_pair *p, int d)
{
	relay_dir *r = &p->dir[d];
	int src = p->fd[d], dst = p->fd[1 - d];
	for (int round = 0; round < 8; round++) {
		if (r->off < r->len) {
			ssize_t n = send(dst, r->buf + r->off, r->len - r->off,
					 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return 0;
			if (n < 0 && errno != EPIPE && errno != ECONNRESET)
				return -1;
			if (n < 0) {
				/* dst is gone (the sidecar answered a request
				 * and closed, say): what src still sends is
				 * dropped, and the other direction, with the
				 * answer, goes on until it ends. */
				r->dead = true;
				r->off = r->len = 0;
				continue;
			}
			r->off += (size_t)n;
			continue;
		}
		r->off = r->len = 0;
		if (r->eof)
			return 0;
		ssize_t n = recv(src, r->buf, RELAY_BUF, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0 && errno != ECONNRESET)
			return -1;
		if (n <= 0) {
			/* The end (or a reset: src is gone, after what it
			 * sent) and everything read before was sent: pass
			 * the end on at once (it fails only if dst is gone). */
			r->eof = true;
			shutdown(dst, SHUT_WR);
			return 0;
		}
		r->len = r->dead ? 0 : (size_t)n;
	}
	return 0;
}

static void relay_pump(init_state *st, int idx)
{
	relay_pair *p = &st->pairs[idx];
	if (!p->connecting && (relay_flow(p, 0) < 0 || relay_flow(p, 1) < 0)) {
		relay_close(st, p);
		return;
	}
	/* Over when neither direction can deliver anything more. */
	bool over = (p->dir[0].eof || p->dir[0].dead) && (p->dir[1].eof || p->dir[1].dead);
	if (over || relay_watch(st, p, idx) < 0)
		relay_close(st, p);
}

static void relay_event(init_state *st, int idx, int e, uint32_t gen, uint32_t events)
{
	relay_pair *p = &st->pairs[idx];
	if (!p->used || p->gen != gen)
		return; /* closed (and maybe reused) earlier in this batch */
	if (p->connecting) {
		int soerr = 0;
		socklen_t len = sizeof(soerr);
		if (e != 1 || getsockopt(p->fd[1], SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 ||
		    soerr != 0) {
			relay_close(st, p);
			return;
		}
		p->connecting = false;
	}
	/* An error shows in the next send or receive, after what was
	 * already received: like a hang-up, it takes the end off the set
	 * once nothing is wanted from it (epoll reports both whatever the
	 * registered events). */
	if (events & (EPOLLHUP | EPOLLERR))
		p->hup[e] = true;
	relay_pump(st, idx);
}

/* A new connection: its partner on the egress socket, then both go into
 * the set. Failures close the client, which sees a reset. */
static void relay_start(init_state *st, int client)
{
	int idx = 0;
	while (idx < AB_JAIL_RELAY_MAX && st->pairs[idx].used)
		idx++;
	char *buf = idx < AB_JAIL_RELAY_MAX ? malloc(2 * RELAY_BUF) : NULL;
	int up = buf ? socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) : -1;
	if (up < 0) {
		free(buf);
		close(client);
		return;
	}
	relay_pair *p = &st->pairs[idx];
	*p = (relay_pair){.used = true, .gen = p->gen + 1, .fd = {client, up}};
	p->ev[0] = p->ev[1] = RELAY_UNWATCHED;
	p->dir[0].buf = buf;
	p->dir[1].buf = buf + RELAY_BUF;
	st->npairs++;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	memcpy(sun.sun_path, AB_JAIL_EGRESS_SOCKET, sizeof(AB_JAIL_EGRESS_SOCKET));
	int r;
	do
		r = connect(up, (struct sockaddr *)&sun, sizeof(sun));
	while (r < 0 && errno == EINTR);
	/* A unix socket connects at once, or fails with EAGAIN when the
	 * listener's backlog is full (the sidecar is not accepting): the
	 * client is refused rather than kept waiting without a bound. */
	if (r < 0 && errno != EINPROGRESS) {
		relay_close(st, p);
		return;
	}
	p->connecting = r < 0;
	relay_pump(st, idx);
}

static void relay_accept(init_state *st)
{
	for (int i = 0; i < 64; i++) {
		int c = accept4(st->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO ||
			    errno == EPERM)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* Out of descriptors or memory: stop listening
				 * for a moment instead of spinning. */
				struct epoll_event ev = {.events = 0, .data.u64 = TAG_LISTEN};
				epoll_ctl(st->ep, EPOLL_CTL_MOD, st->listen_fd, &ev);
				st->listen_paused = true;
			}
			return;
		}
		if (st->npairs >= st->max_pairs)
			close(c); /* over the cap: refused */
		else
			relay_start(st, c);
	}
}

/* The relay's listening socket, made before the executor exists (user
 * code must never get there first). Without SO_REUSEPORT no other socket
 * can share the port. */
static int relay_listen(void)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s < 0)
		DIE_ERRNO("egress relay: socket");
	/* Above the numbered descriptors, which init closes. */
	int fd = fcntl(s, F_DUPFD_CLOEXEC, FD_SYNC + 1);
	if (fd < 0)
		DIE_ERRNO("egress relay: dup");
	close(s);
	int one = 1;
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_port = htons(AB_JAIL_RELAY_PORT),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		DIE_ERRNO("egress relay: SO_REUSEADDR");
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		DIE_ERRNO("egress relay: bind 127.0.0.1:%d", AB_JAIL_RELAY_PORT);
	if (listen(fd, AB_JAIL_RELAY_MAX) < 0)
		DIE_ERRNO("egress relay: listen");
	return fd;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* One signal: from = its sender's pid (0: from outside the namespace). */
static void init_signal(pid_t executor, int sig, pid_t from)
{
	if (sig == SIGCHLD) {
		int status;
		pid_t p;
		while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
			if (p != executor)
				continue;
			kill(-1, SIGKILL);
			_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
		}
		return;
	}
	if (from != 0)
		return;
	if (sig == SIGINT || sig == SIGUSR1)
		kill(executor, SIGINT);
	else if (sig == SIGTERM || sig == SIGHUP)
		kill(-1, sig);
}

/* PID 1 of the sandbox: reaps everything, forwards the daemon's SIGINT
 * (a run's timeout) to the executor, exits with the executor's status,
 * which kills every other process of the namespace, and runs the egress
 * relay (listen_fd >= 0). Signals sent from inside the sandbox (a sender
 * pid != 0) are ignored. Every signal is blocked and read from a
 * signalfd; if the loop's own descriptors cannot be made, init still reaps
 * and forwards (sigwaitinfo) but relays nothing. */
__attribute__((noreturn)) static void init_loop(pid_t executor, int listen_fd)
{
	static init_state st;
	sigset_t all;
	sigfillset(&all);
	st.executor = executor;
	st.listen_fd = listen_fd;
	/* Two descriptors a connection, and room for init's own three and
	 * the one that an accept over the cap needs. */
	struct rlimit nofile;
	int max = AB_JAIL_RELAY_MAX;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < 2u * max + 8)
		max = nofile.rlim_cur > 8 ? (int)(nofile.rlim_cur - 8) / 2 : 0;
	st.max_pairs = max;
	st.ep = epoll_create1(EPOLL_CLOEXEC);
	st.sig_fd = signalfd(-1, &all, SFD_NONBLOCK | SFD_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_SIGNAL};
	if (st.ep < 0 || st.sig_fd < 0 || epoll_ctl(st.ep, EPOLL_CTL_ADD, st.sig_fd, &ev) < 0) {
		if (listen_fd >= 0)
			close(listen_fd);
		for (;;) {
			siginfo_t si;
			int sig = sigwaitinfo(&all, &si);
			if (sig > 0)
				init_signal(executor, sig, si.si_pid);
		}
	}
	ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = TAG_LISTEN};
	if (listen_fd >= 0 && epoll_ctl(st.ep, EPOLL_CTL_ADD, listen_fd, &ev) < 0) {
		close(listen_fd);
		st.listen_fd = -1;
	}
	uint64_t resume_ms = 0;
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(st.ep, evs, 64, st.listen_paused ? 100 : -1);
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64 & 0xffffffffu;
			uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
			if (tag == TAG_SIGNAL) {
				struct signalfd_siginfo si[16];
				ssize_t got;
				while ((got = read(st.sig_fd, si, sizeof(si))) > 0)
					for (size_t k = 0; k < (size_t)got / sizeof(si[0]); k++)
						init_signal(executor, (int)si[k].ssi_signo,
							    (pid_t)si[k].ssi_pid);
			} else if (tag == TAG_LISTEN) {
				relay_accept(&st);
				if (st.listen_paused && !resume_ms)
					resume_ms = mono_ms() + 100;
			} else if (tag - TAG_PAIR < 2u * AB_JAIL_RELAY_MAX) {
				relay_event(&st, (int)((tag - TAG_PAIR) / 2),
					    (int)((tag - TAG_PAIR) % 2), gen, evs[i].events);
			}
		}
		if (st.listen_paused && mono_ms() >= resume_ms) {
			ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = TAG_LISTEN};
			epoll_ctl(st.ep, EPOLL_CTL_MOD, st.listen_fd, &ev);
			st.listen_paused = false;
			resume_ms = 0;
		}
	}
}

/* Moves fds to the numbers the executor expects. Every other fd inherited
 * from the zygote (its own control socket, the interpreter's files) is
 * closed, so nothing of the zygote is reachable from the sandbox. */
static void arrange_fds(const ab_jail_config *cfg, int sync_fd)
{
	int src[] = {-1, cfg->out_fd, cfg->err_fd, cfg->ctl_fd, -1, sync_fd};
	int tmp[6];
	src[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	src[4] = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC); /* placeholder */
	if (src[0] < 0 || src[4] < 0)
		_exit(126);
	for (int i = 0; i < 6; i++) {
		tmp[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 64);
		if (tmp[i] < 0)
			_exit(126);
	}
	for (int i = 0; i < 6; i++)
		if (dup2(tmp[i], i) < 0)
			_exit(126);
	if (syscall(SYS_close_range, 6, ~0U, 0) < 0)
		for (int fd = 6; fd < 4096; fd++)
			close(fd);
	/* dup2 clears FD_CLOEXEC; the control socket and the sync pipe must
	 * not leak into programs that user code executes. */
	fcntl(FD_CTL, F_SETFD, FD_CLOEXEC);
	fcntl(FD_SYNC, F_SETFD, FD_CLOEXEC);
	fcntl(FD_WORKSPACE, F_SETFD, FD_CLOEXEC);
}

/* Opens an egress file O_PATH (see sandbox_main) and checks its type. */
static int egress_open(const char *path, mode_t type, const char *what)
{
	int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		DIE_ERRNO("open the %s %s", what, path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		DIE_ERRNO("stat the %s %s", what, path);
	if ((st.st_mode & S_IFMT) != type)
		die("the %s %s is not a %s", what, path, type == S_IFSOCK ? "socket" : "file");
	return fd;
}

__attribute__((noreturn)) static void sandbox_main(const ab_jail_config *cfg, int sync_fd,
						   ab_jail_payload payload, void *arg)
{
	arrange_fds(cfg, sync_fd);
	char go;
	ssize_t n;
	do
		n = read(FD_SYNC, &go, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1 || go != 'G')
		_exit(126); /* the zygote failed and reported it itself */
	close(FD_SYNC);

	/* Opened in the sandbox's mount namespace (a bind mount's source must
	 * be there) but still with the daemon's host credentials, so that the
	 * path may run through directories private to the daemon, and before
	 * /tmp is covered (the workspace may live below /tmp). */
	int ws = open(cfg->workspace, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ws < 0)
		DIE_ERRNO("open workspace %s", cfg->workspace);
	if (dup3(ws, FD_WORKSPACE, O_CLOEXEC) < 0)
		DIE_ERRNO("dup workspace");
	close(ws);
	/* The egress socket and the CA bundle, the same way. Without a
	 * network namespace of its own the sandbox gets neither: a relay
	 * there would listen on the host's loopback (the daemon does not ask
	 * for egress then, and logs why; this is the second line). */
	int egress_fd = -1, bundle_fd = -1;
	if (cfg->egress_socket[0] && !cfg->nano && !degraded(cfg, AB_LAYER_NETNS)) {
		egress_fd = egress_open(cfg->egress_socket, S_IFSOCK, "egress socket");
		if (cfg->ca_bundle[0])
			bundle_fd = egress_open(cfg->ca_bundle, S_IFREG, "CA bundle");
	}

	if (setresgid(0, 0, 0) < 0)
		DIE_ERRNO("setresgid 0");
	if (cfg->privileged && setgroups(0, NULL) < 0)
		DIE_ERRNO("setgroups");
	if (setresuid(0, 0, 0) < 0)
		DIE_ERRNO("setresuid 0");

	if (!degraded(cfg, AB_LAYER_CGROUPNS) && unshare(CLONE_NEWCGROUP) < 0)
		DIE_ERRNO("unshare cgroup namespace");
	if (!degraded(cfg, AB_LAYER_UTSNS)) {
		if (sethostname("sandbox", 7) < 0 || setdomainname("sandbox", 7) < 0)
			DIE_ERRNO("set hostname");
	}
	build_root(cfg, egress_fd, bundle_fd);
	if (egress_fd >= 0)
		close(egress_fd);
	if (bundle_fd >= 0)
		close(bundle_fd);
	if (!degraded(cfg, AB_LAYER_NETNS) && !cfg->nano)
		loopback_up();
	/* Before the executor exists, so that user code can never take the
	 * port first. */
	int relay_fd = egress_fd >= 0 ? relay_listen() : -1;
	set_rlimits(&cfg->limits, cfg->nano);
#ifndef __SANITIZE_ADDRESS__
	/* Nano's memory cap is its address space: a MemoryError instead of
	 * an OOM kill. (AddressSanitizer reserves terabytes of address space
	 * and cannot run under this limit; sanitizer builds rely on the
	 * cgroup alone.) */
	if (cfg->nano) {
		struct rlimit as = {(rlim_t)cfg->limits.memory_mb << 20,
				    (rlim_t)cfg->limits.memory_mb << 20};
		if (setrlimit(RLIMIT_AS, &as) < 0)
			DIE_ERRNO("setrlimit RLIMIT_AS");
	}
#endif

	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid_t pid = fork();
	if (pid < 0)
		DIE_ERRNO("fork executor");
	if (pid == 0) {
		if (relay_fd >= 0)
			close(relay_fd);
		/* The interpreter's own dispositions (SIGINT raises
		 * KeyboardInterrupt, SIGPIPE and SIGXFSZ ignored) are kept. */
		sigprocmask(SIG_SETMASK, &old, NULL);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
			DIE_ERRNO("PR_SET_PDEATHSIG");
		harden_executor(cfg);
		_exit(payload(arg));
	}
	/* Init keeps nothing the sandbox could use: no control socket, no
	 * output pipes, no capabilities. */
	for (int fd = 0; fd < 6; fd++)
		close(fd);
	ab_error err = {0};
	if (ab_set_nondumpable(&err) < 0 || ab_caps_drop_all(&err) < 0) {
		kill(pid, SIGKILL);
		_exit(126);
	}
	if (!degraded(cfg, AB_LAYER_SECCOMP)) {
		ab_seccomp_opts so = {.allow_exec = false};
		if (ab_seccomp_apply_heavy(&so, &err) < 0) {
			kill(pid, SIGKILL);
			_exit(126);
		}
	}
	init_loop(pid, relay_fd);
}

/* ----------------------------------------------------------- zygote side */

int ab_jail_open_cgroup_procs(ab_cgroup *cg, int fds[8], ab_error *err)
{
	static const char *const controllers[] = {"memory", "pids", "cpu", "cpuacct", "freezer"};
	const char *seen[8];
	int n = 0;
	for (size_t i = 0; i < sizeof(controllers) / sizeof(controllers[0]) && n < 8; i++) {
		const char *dir = ab_cgroup_path(cg, controllers[i]);
		if (!dir)
			continue;
		bool dup = false;
		for (int j = 0; j < n; j++)
			dup = dup || strcmp(seen[j], dir) == 0;
		if (dup)
			continue;
		char path[4096];
		if (snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= (int)sizeof(path)) {
			for (int j = 0; j < n; j++)
				close(fds[j]);
			return ab_error_set(err, -ENAMETOOLONG, "cgroup path too long: %s", dir);
		}
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0) {
			int e = -errno;
			for (int j = 0; j < n; j++)
				close(fds[j]);
			return ab_error_errno(err, e, "open %s", path);
		}
		seen[n] = dir;
		fds[n++] = fd;
	}
	if (n == 0)
		return ab_error_set(err, -ENOENT, "cgroup has no directories");
	return n;
}

static int write_proc(pid_t pid, const char *file, const char *content, ab_error *err)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return ab_error_errno(err, -errno, "open %s", path);
	ssize_t n = write(fd, content, strlen(content));
	int e = errno;
	close(fd);
	if (n != (ssize_t)strlen(content))
		return ab_error_errno(err, n < 0 ? -e : -EIO, "write %s", path);
	return 0;
}

static int count_threads(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	if (!f)
		return -1;
	char line[256];
	int n = -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

int ab_jail_spawn(const ab_jail_config *cfg, ab_jail_payload payload, void *arg, pid_t *pid_out,
		  int *pidfd_out, ab_error *err)
{
	if (count_threads() != 1)
		return ab_error_set(
		    err, -EINVAL,
		    "zygote has %d threads; a user namespace needs a single-threaded "
		    "parent",
		    count_threads());
	int sync[2];
	if (pipe2(sync, O_CLOEXEC) < 0)
		return ab_error_errno(err, -errno, "pipe");

	uint64_t flags = CLONE_PARENT | CLONE_PIDFD;
	static const struct {
		enum ab_layer layer;
		uint64_t flag;
	} ns[] = {
	    {AB_LAYER_USERNS, CLONE_NEWUSER}, {AB_LAYER_PIDNS, CLONE_NEWPID},
	    {AB_LAYER_MOUNTNS, CLONE_NEWNS},  {AB_LAYER_NETNS, CLONE_NEWNET},
	    {AB_LAYER_IPCNS, CLONE_NEWIPC},   {AB_LAYER_UTSNS, CLONE_NEWUTS},
	};
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++)
		if (!degraded(cfg, ns[i].layer))
			flags |= ns[i].flag;

	int pidfd = -1;
	struct clone_args ca = {
	    .flags = flags,
	    .pidfd = (uint64_t)(uintptr_t)&pidfd,
	    .exit_signal = 0, /* ignored with CLONE_PARENT: the zygote's own is used */
	};
	pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid < 0) {
		int e = errno;
		close(sync[0]);
		close(sync[1]);
		return ab_error_errno(err, -e, "clone3 into new namespaces");
	}
	if (pid == 0) {
		close(sync[1]);
		sandbox_main(cfg, sync[0], payload, arg);
	}
	close(sync[0]);

	int r = 0;
	char map[64];
	if (!degraded(cfg, AB_LAYER_USERNS)) {
		if (!cfg->privileged)
			r = write_proc(pid, "setgroups", "deny", err);
		snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)cfg->host_uid);
		if (r == 0)
			r = write_proc(pid, "uid_map", map, err);
		snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)cfg->host_gid);
		if (r == 0)
			r = write_proc(pid, "gid_map", map, err);
	}
	char pidstr[32];
	snprintf(pidstr, sizeof(pidstr), "%d\n", (int)pid);
	for (int i = 0; r == 0 && i < cfg->n_cgroup_fds; i++)
		if (write(cfg->cgroup_fds[i], pidstr, strlen(pidstr)) < 0)
			r = ab_error_errno(err, -errno, "move sandbox into its cgroup");
	if (r == 0 && write(sync[1], "G", 1) != 1)
		r = ab_error_errno(err, -errno, "release sandbox");
	close(sync[1]);
	if (r < 0) {
		/* Closing the pipe without 'G' makes the child exit; make sure. */
		syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
		close(pidfd);
		return r;
	}
	*pid_out = pid;
	*pidfd_out = pidfd;
	return 0;
}

/* test_seccomp.c - the heavy tier's seccomp policy, loaded for real.
 *
 * Each test already runs in its own child (see runner.c), so a test may
 * load the filter into itself. Checks whose expected outcome is that the
 * process dies run in a grandchild, so that the test survives to report. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include "confine.h"
#include "internal.h"
#include "unit.h"

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif
/* By number: older headers and libseccomp releases may not name them. */
#define NR_MEMFD_SECRET 447
#define NR_SET_MEMPOLICY_HOME_NODE 450

static void load_heavy(bool allow_exec)
{
	ab_error err = {0};
	ab_seccomp_opts opts = {.allow_exec = allow_exec};
	CHECK_EQ_INT(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	int rc = ab_seccomp_apply_heavy(&opts, &err);
	if (rc < 0)
		fprintf(stderr, "apply: %s\n", err.msg);
	CHECK_EQ_INT(rc, 0);
}

AB_TEST(seccomp_export_heavy)
{
	ab_error err = {0};
	ab_seccomp_opts opts = {.allow_exec = true};
	int fd = memfd_create("bpf", MFD_CLOEXEC);
	CHECK(fd >= 0);
	CHECK_EQ_INT(ab_seccomp_export_heavy(&opts, fd, &err), 0);
	struct stat st;
	CHECK_EQ_INT(fstat(fd, &st), 0);
	CHECK(st.st_size > 0);
	/* A BPF program is an array of 8-byte instructions. */
	CHECK_EQ_INT(st.st_size % 8, 0);
	CHECK(st.st_size / 8 <= 4096);

	/* Refusing exec adds rules, so the program grows. */
	int fd2 = memfd_create("bpf2", MFD_CLOEXEC);
	CHECK(fd2 >= 0);
	opts.allow_exec = false;
	CHECK_EQ_INT(ab_seccomp_export_heavy(&opts, fd2, &err), 0);
	struct stat st2;
	CHECK_EQ_INT(fstat(fd2, &st2), 0);
	CHECK(st2.st_size > st.st_size);
	close(fd);
	close(fd2);
}

AB_TEST(seccomp_denied_list)
{
	const char *const *names = ab_seccomp_heavy_denied();
	bool bpf = false, clone3 = false, unshare = false;
	size_t n = 0;
	for (; names[n]; n++) {
		bpf |= !strcmp(names[n], "bpf");
		clone3 |= !strcmp(names[n], "clone3");
		unshare |= !strcmp(names[n], "unshare");
	}
	CHECK(bpf && clone3 && unshare);
	CHECK(n > 40);
}

AB_TEST(seccomp_heavy_namespaces_and_mounts)
{
	load_heavy(true);
	CHECK_FAILS(unshare(CLONE_NEWUSER), EPERM);
	CHECK_FAILS(unshare(CLONE_NEWNS), EPERM);
	CHECK_FAILS(setns(0, 0), EPERM);
	CHECK_FAILS(mount("none", "/tmp", "tmpfs", 0, NULL), EPERM);
	CHECK_FAILS(umount2("/tmp", MNT_DETACH), EPERM);
	CHECK_FAILS(syscall(SYS_pivot_root, "/", "/"), EPERM);
	CHECK_FAILS(chroot("/"), EPERM);
	CHECK_FAILS(syscall(SYS_fsopen, "tmpfs", 0), EPERM);
	CHECK_FAILS(syscall(SYS_open_tree, AT_FDCWD, "/", 0), EPERM);

	/* clone3 keeps its flags in memory, where the filter cannot look:
	 * it fails with ENOSYS so that libc falls back to clone. */
	struct clone_args ca = {.exit_signal = SIGCHLD};
	long r = syscall(SYS_clone3, &ca, sizeof(ca));
	if (r == 0)
		_exit(0);
	CHECK_EQ_INT(r, -1);
	CHECK_EQ_INT(errno, ENOSYS);

	/* clone with any namespace flag is refused, also with junk above. */
	static const unsigned long ns[] = {
	    CLONE_NEWUSER, CLONE_NEWNS,	 CLONE_NEWPID,	  CLONE_NEWNET,
	    CLONE_NEWIPC,  CLONE_NEWUTS, CLONE_NEWCGROUP,
	};
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		r = syscall(SYS_clone, ns[i] | SIGCHLD, 0, 0, 0, 0);
		if (r == 0)
			_exit(0);
		CHECK_EQ_INT(r, -1);
		CHECK_EQ_INT(errno, EPERM);
		r = syscall(SYS_clone, (1UL << 40) | ns[i] | SIGCHLD, 0, 0, 0, 0);
		if (r == 0)
			_exit(0);
		CHECK_EQ_INT(r, -1);
		CHECK_EQ_INT(errno, EPERM);
	}

	/* A plain fork (clone with SIGCHLD) still works. */
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(7);
	int st;
	CHECK_EQ_INT(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ_INT(WEXITSTATUS(st), 7);
}

static void *thread_fn(void *arg)
{
	return arg;
}

AB_TEST(seccomp_heavy_threads_and_exec_still_work)
{
	load_heavy(true);
	pthread_t t;
	void *res = NULL;
	CHECK_EQ_INT(pthread_create(&t, NULL, thread_fn, (void *)0x42), 0);
	CHECK_EQ_INT(pthread_join(t, &res), 0);
	CHECK(res == (void *)0x42);

	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		execl("/bin/true", "true", (char *)NULL);
		_exit(99);
	}
	int st;
	CHECK_EQ_INT(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ_INT(WEXITSTATUS(st), 0);

	/* A sandboxed program may tighten further (E18). */
	ab_error err = {0};
	ab_seccomp_opts opts = {.allow_exec = true};
	CHECK_EQ_INT(ab_seccomp_apply_heavy(&opts, &err), 0);
}

AB_TEST(seccomp_no_exec_refuses_execve)
{
	load_heavy(false);
	/* /bin/false, so that an exec that gets through fails the test. */
	char *argv[] = {"false", NULL};
	char *envp[] = {NULL};
	CHECK_FAILS(execve("/bin/false", argv, envp), EPERM);
	CHECK_FAILS(syscall(SYS_execveat, AT_FDCWD, "/bin/false", argv, envp, 0), EPERM);
}

AB_TEST(seccomp_heavy_personality)
{
	load_heavy(true);
	CHECK_FAILS(personality(READ_IMPLIES_EXEC), EPERM);
	CHECK_FAILS(personality(READ_IMPLIES_EXEC | ADDR_NO_RANDOMIZE), EPERM);
	CHECK_FAILS(personality(ADDR_NO_RANDOMIZE), EPERM);
	CHECK_FAILS(personality(PER_LINUX32), EPERM);
	CHECK_FAILS(personality(0xfffffffe), EPERM);
	CHECK_FAILS(personality(0x7fffffff), EPERM);
	/* Junk in the upper half does not hide the persona (E15). */
	CHECK_FAILS(syscall(SYS_personality, (1UL << 32) | READ_IMPLIES_EXEC), EPERM);
	CHECK_FAILS(syscall(SYS_personality, (0xffffUL << 32) | 1), EPERM);
	/* Querying and setting the default persona stay allowed. */
	CHECK(personality(0xffffffff) >= 0);
	CHECK(syscall(SYS_personality, -1L) >= 0);
	CHECK(personality(PER_LINUX) >= 0);
	CHECK_EQ_INT(personality(0xffffffff) & READ_IMPLIES_EXEC, 0);
}

AB_TEST(seccomp_heavy_ioctl_tiocsti)
{
	load_heavy(true);
	char c = 'x';
	CHECK_FAILS(ioctl(0, TIOCSTI, &c), EPERM);
	CHECK_FAILS(syscall(SYS_ioctl, 0, (unsigned long)TIOCSTI | (1UL << 32), &c), EPERM);
	CHECK_FAILS(syscall(SYS_ioctl, 0, (unsigned long)TIOCSTI | 0xdead00000000UL, &c), EPERM);
	CHECK_FAILS(syscall(SYS_ioctl, 0, (unsigned long)TIOCLINUX | (1UL << 33), &c), EPERM);
	/* Other ioctls are not affected. */
	int p[2];
	CHECK_EQ_INT(pipe2(p, O_CLOEXEC), 0);
	int avail = -1;
	CHECK_EQ_INT(ioctl(p[0], FIONREAD, &avail), 0);
	CHECK_EQ_INT(avail, 0);
}

AB_TEST(seccomp_heavy_sockets)
{
	load_heavy(true);
	CHECK_FAILS(socket(AF_NETLINK, SOCK_RAW, 0), EPERM);
	CHECK_FAILS(socket(AF_PACKET, SOCK_RAW, 0), EPERM);
	CHECK_FAILS(socket(AF_ALG, SOCK_SEQPACKET, 0), EPERM);
	CHECK_FAILS(socket(AF_VSOCK, SOCK_STREAM, 0), EPERM);
	CHECK_FAILS(socket(AF_TIPC, SOCK_RDM, 0), EPERM);
	CHECK_FAILS(socket(AF_RDS, SOCK_SEQPACKET, 0), EPERM);
	CHECK_FAILS(socket(AF_UNSPEC, SOCK_STREAM, 0), EPERM);
	CHECK_FAILS(socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP), EPERM);
	CHECK_FAILS(socket(AF_INET6, SOCK_SEQPACKET, IPPROTO_SCTP), EPERM);
	CHECK_FAILS(socket(AF_INET, SOCK_DCCP, IPPROTO_DCCP), EPERM);
	CHECK_FAILS(socket(AF_INET, SOCK_DCCP | SOCK_CLOEXEC, 0), EPERM);
	CHECK_FAILS(socket(AF_INET, SOCK_PACKET, 0), EPERM);
	/* Junk in the upper half neither hides a protocol nor admits a
	 * family. */
	CHECK_FAILS(syscall(SYS_socket, AF_INET, SOCK_STREAM, (1UL << 32) | IPPROTO_SCTP), EPERM);
	CHECK_FAILS(syscall(SYS_socket, (1UL << 32) | AF_UNIX, SOCK_STREAM, 0), EPERM);
	CHECK_FAILS(syscall(SYS_socket, (1UL << 32) | AF_NETLINK, SOCK_RAW, 0), EPERM);
	int sv[2];
	CHECK_FAILS(socketpair(AF_NETLINK, SOCK_RAW, 0, sv), EPERM);

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	close(fd);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	close(fd);
	fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	close(fd);
	CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	close(sv[0]);
	close(sv[1]);
}

AB_TEST(seccomp_heavy_kernel_surfaces)
{
	load_heavy(true);
	CHECK_FAILS(syscall(SYS_bpf, 0, NULL, 0), EPERM);
	CHECK_FAILS(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0), EPERM);
	CHECK_FAILS(syscall(SYS_userfaultfd, 0), EPERM);
	CHECK_FAILS(syscall(SYS_keyctl, 0, 0, 0, 0, 0), EPERM);
	CHECK_FAILS(syscall(SYS_add_key, "user", "x", "y", 1, 0), EPERM);
	CHECK_FAILS(syscall(SYS_io_uring_setup, 1, NULL), EPERM);
	CHECK_FAILS(syscall(SYS_open_by_handle_at, AT_FDCWD, NULL, 0), EPERM);
	CHECK_FAILS(syscall(SYS_kexec_load, 0, 0, NULL, 0), EPERM);
	CHECK_FAILS(syscall(SYS_init_module, NULL, 0, ""), EPERM);
	CHECK_FAILS(syscall(SYS_finit_module, -1, "", 0), EPERM);
	CHECK_FAILS(syscall(SYS_ptrace, 0, 0, 0, 0), EPERM);
	CHECK_FAILS(syscall(SYS_process_vm_readv, 1, NULL, 0, NULL, 0, 0), EPERM);
	CHECK_FAILS(syscall(SYS_pidfd_getfd, 0, 0, 0), EPERM);
	CHECK_FAILS(syscall(SYS_reboot, 0, 0, 0, NULL), EPERM);
	CHECK_FAILS(syscall(SYS_syslog, 3, NULL, 0), EPERM);
	CHECK_FAILS(syscall(SYS_sethostname, "x", 1), EPERM);
	/* Installing one's own seccomp filter or Landlock ruleset is allowed
	 * (it can only tighten): the calls reach the kernel, which rejects
	 * these bogus arguments with EFAULT/EINVAL rather than EPERM. */
	errno = 0;
	CHECK_EQ_INT(syscall(SYS_seccomp, 1, 0, NULL), -1);
	CHECK(errno != EPERM);
	CHECK(syscall(SYS_landlock_create_ruleset, NULL, 0, 1) >= 1);
}

/* Calls that reach kernel code nothing in a sandbox needs, each refused
 * with EPERM: secret memory, x86 segment descriptors, I/O priorities, NUMA
 * home nodes and multipath TCP. Without the filter each of them reaches
 * the kernel and gets an answer other than EPERM here (a descriptor, 0,
 * EINVAL, ENOSYS or EPROTONOSUPPORT). */
static void late_surfaces(void)
{
	CHECK_FAILS(syscall(NR_MEMFD_SECRET, 0), EPERM);
	CHECK_FAILS(syscall(NR_SET_MEMPOLICY_HOME_NODE, 0, 0, 0, 0), EPERM);
	/* IOPRIO_WHO_PROCESS (1), this process, class best effort (2). */
	CHECK_FAILS(syscall(SYS_ioprio_set, 1, 0, (2 << 13) | 4), EPERM);
	CHECK_FAILS(syscall(SYS_ioprio_set, 1 | (1UL << 32), 0, (2 << 13) | 4), EPERM);
#ifdef SYS_modify_ldt
	char ldt[16];
	CHECK_FAILS(syscall(SYS_modify_ldt, 0, ldt, sizeof(ldt)), EPERM);
#endif
	CHECK_FAILS(socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP), EPERM);
	CHECK_FAILS(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP), EPERM);
	CHECK_FAILS(syscall(SYS_socket, AF_INET, SOCK_STREAM, (1UL << 32) | IPPROTO_MPTCP), EPERM);
	int sv[2];
	CHECK_FAILS(socketpair(AF_INET, SOCK_STREAM, IPPROTO_MPTCP, sv), EPERM);
	/* Plain TCP and ioprio_get are unaffected. */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	CHECK(fd >= 0);
	close(fd);
	CHECK(syscall(SYS_ioprio_get, 1, 0) >= 0);
}

AB_TEST(seccomp_heavy_late_surfaces)
{
	/* The test only means something where these calls are not refused
	 * with EPERM already. */
	errno = 0;
	long r = syscall(SYS_ioprio_set, 1, 0, (2 << 13) | 4);
	CHECK(r == 0 || errno != EPERM);
	load_heavy(true);
	late_surfaces();
}

#ifdef __x86_64__
static void getpid_x32(void)
{
	/* 0x40000000 is the x32 syscall bit. Either the filter kills the
	 * process or (without an x32 kernel) the call fails with ENOSYS;
	 * getpid succeeding would mean the bit was ignored. */
	errno = 0;
	long r = syscall(__NR_getpid | 0x40000000);
	_exit(r == -1 && errno == ENOSYS ? 0 : 3);
}

static void unshare_x32(void)
{
	errno = 0;
	long r = syscall(__NR_unshare | 0x40000000, CLONE_NEWUSER);
	_exit(r == -1 && errno == ENOSYS ? 0 : 3);
}

static void getpid_int80(void)
{
	long r;
	/* 20 is getpid in the i386 table. */
	__asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
	_exit(r > 0 ? 4 : 5);
}

static bool killed_or_enosys(int st)
{
	return (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS) ||
	       (WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

AB_TEST(seccomp_heavy_foreign_abis)
{
	/* Without the filter, int 0x80 getpid works on this kernel (if it
	 * has ia32 emulation), which is what makes the next check mean
	 * something. */
	int before = in_grandchild(getpid_int80);

	load_heavy(true);
	CHECK(killed_or_enosys(in_grandchild(getpid_x32)));
	CHECK(killed_or_enosys(in_grandchild(unshare_x32)));
	int st = in_grandchild(getpid_int80);
	if (WIFEXITED(before) && WEXITSTATUS(before) == 4) {
		CHECK(WIFSIGNALED(st));
		CHECK_EQ_INT(WTERMSIG(st), SIGSYS);
	} else {
		CHECK(!(WIFEXITED(st) && WEXITSTATUS(st) == 4));
	}
}

AB_TEST(seccomp_heavy_x32_is_killed_by_filter)
{
	/* The kernel on the development host has no x32 ABI, so ENOSYS
	 * there proves nothing about the filter: check that the filter
	 * itself kills an x32 number before the kernel sees it. */
	load_heavy(true);
	int st = in_grandchild(getpid_x32);
	CHECK(WIFSIGNALED(st));
	CHECK_EQ_INT(WTERMSIG(st), SIGSYS);
}
#endif

/* A zygote builds the programs once (ab_seccomp_precompile); a sandbox then
 * loads them as they are. The precompiled heavy filters refuse what the
 * built ones do. */
AB_TEST(seccomp_precompiled_heavy_refuses_the_same)
{
	ab_error err = {0};
	CHECK_EQ_INT(ab_seccomp_precompile(&err), 0);
	load_heavy(false);
	CHECK_FAILS(unshare(CLONE_NEWUSER), EPERM);
	CHECK_FAILS(mount("none", "/tmp", "tmpfs", 0, NULL), EPERM);
	CHECK_FAILS(syscall(SYS_bpf, 0, NULL, 0), EPERM);
	char *argv[] = {"false", NULL}; /* an exec that gets through fails the test */
	CHECK_FAILS(execve("/bin/false", argv, NULL), EPERM);
	/* and the process goes on: threads, files */
	CHECK(getpid() > 0);
	CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1);
}

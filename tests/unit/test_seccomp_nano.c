/* test_seccomp_nano.c - the nano tier's seccomp allowlist, loaded for real.
 *
 * Each test already runs in its own child (see runner.c), so a test may
 * load the filter into itself. Checks whose expected outcome is that the
 * process dies run in a grandchild, so that the test survives to report.
 * The last test runs a real CPython under the filter: the allowlist is
 * only right if the interpreter can still import and run the standard
 * library with it. */
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
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "confine.h"
#include "internal.h"
#include "unit.h"

static void load_nano(void)
{
	ab_error err = {0};
	CHECK_EQ_INT(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	int rc = ab_seccomp_apply_nano(&err);
	if (rc < 0)
		fprintf(stderr, "apply: %s\n", err.msg);
	CHECK_EQ_INT(rc, 0);
}

/* A clone that got through must not run on as a second copy of the test. */
#define CHECK_CLONE_FAILS(call, e)                                                                 \
	do {                                                                                       \
		errno = 0;                                                                         \
		long c_ = (long)(call);                                                            \
		if (c_ == 0)                                                                       \
			_exit(0);                                                                  \
		CHECK_EQ_INT(c_, -1);                                                              \
		CHECK_EQ_INT(errno, (e));                                                          \
	} while (0)

AB_TEST(seccomp_nano_export)
{
	ab_error err = {0};
	int fd = memfd_create("bpf", MFD_CLOEXEC);
	CHECK(fd >= 0);
	CHECK_EQ_INT(ab_seccomp_export_nano(fd, &err), 0);
	struct stat st;
	CHECK_EQ_INT(fstat(fd, &st), 0);
	CHECK(st.st_size > 0);
	/* A BPF program is an array of 8-byte instructions, at most 4096. */
	CHECK_EQ_INT(st.st_size % 8, 0);
	CHECK(st.st_size / 8 <= 4096);
	close(fd);
}

AB_TEST(seccomp_nano_allowed_list)
{
	const char *const *names = ab_seccomp_nano_allowed();
	bool openat = false, read = false, futex = false;
	size_t n = 0;
	for (; names[n]; n++) {
		openat |= !strcmp(names[n], "openat");
		read |= !strcmp(names[n], "read");
		futex |= !strcmp(names[n], "futex");
		/* What the policy exists to keep out is never on the list. */
		static const char *const never[] = {
		    "socket", "socketpair", "connect", "execve",  "execveat", "fork",
		    "vfork",  "ptrace",	    "mount",   "unshare", "setns",    "clone3",
		    "bpf",    "ioctl",	    "sendmsg", "prctl",	  "seccomp",
		};
		for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
			if (!strcmp(names[n], never[i])) {
				fprintf(stderr, "%s is on the nano allowlist\n", never[i]);
				exit(1);
			}
	}
	CHECK(openat && read && futex);
	CHECK(n > 40 && n < 200);
}

AB_TEST(seccomp_nano_open_read_only)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/agentbox-nano-open-%d", (int)getpid());
	unlink(path);
	load_nano();

	int fd = openat(AT_FDCWD, "/etc/passwd", O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0);
	char buf[16];
	CHECK(read(fd, buf, sizeof(buf)) >= 0);
	CHECK_EQ_INT(lseek(fd, 0, SEEK_SET), 0);
	CHECK(pread(fd, buf, sizeof(buf), 0) >= 0);
	close(fd);
	/* Directories are read by opening them with O_DIRECTORY, which shares
	 * its bit with O_TMPFILE. */
	fd = openat(AT_FDCWD, "/etc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK(fd >= 0);
	char dents[4096];
	CHECK(syscall(SYS_getdents64, fd, dents, sizeof(dents)) > 0);
	close(fd);
#ifdef SYS_open
	fd = (int)syscall(SYS_open, "/etc/passwd", O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0);
	close(fd);
	CHECK_FAILS(syscall(SYS_open, path, O_WRONLY | O_CREAT, 0600), EPERM);
#endif

	CHECK_FAILS(openat(AT_FDCWD, path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600), EPERM);
	CHECK_FAILS(openat(AT_FDCWD, path, O_RDWR | O_CREAT | O_CLOEXEC, 0600), EPERM);
	CHECK_FAILS(openat(AT_FDCWD, path, O_RDONLY | O_CREAT | O_CLOEXEC, 0600), EPERM);
	CHECK_FAILS(openat(AT_FDCWD, "/etc/passwd", O_WRONLY | O_CLOEXEC), EPERM);
	CHECK_FAILS(openat(AT_FDCWD, "/etc/passwd", O_RDWR | O_CLOEXEC), EPERM);
	CHECK_FAILS(openat(AT_FDCWD, "/etc/passwd", O_RDONLY | O_TRUNC | O_CLOEXEC), EPERM);
	CHECK_FAILS(openat(AT_FDCWD, "/etc/passwd", O_RDONLY | O_APPEND | O_CLOEXEC), EPERM);
	CHECK_FAILS(openat(AT_FDCWD, "/tmp", O_TMPFILE | O_RDWR, 0600), EPERM);
	CHECK_FAILS(openat(AT_FDCWD, "/tmp", O_TMPFILE | O_WRONLY, 0600), EPERM);
	/* Junk in the upper half of the flags does not hide a write flag. */
	CHECK_FAILS(syscall(SYS_openat, AT_FDCWD, path, (1UL << 32) | O_WRONLY | O_CREAT, 0600),
		    EPERM);
	/* Nor does any other way of making a file. */
	CHECK_FAILS(syscall(SYS_openat2, AT_FDCWD, path, NULL, 0), EPERM);
	CHECK_FAILS(mkdir(path, 0700), EPERM);
	CHECK_FAILS(memfd_create("x", MFD_CLOEXEC), EPERM);
	int p[2];
	CHECK_FAILS(pipe2(p, O_CLOEXEC), EPERM);
	struct stat st;
	CHECK_FAILS(stat(path, &st), ENOENT);
}

AB_TEST(seccomp_nano_network_refused)
{
	load_nano();
	CHECK_FAILS(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), EPERM);
	CHECK_FAILS(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), EPERM);
	CHECK_FAILS(socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0), EPERM);
	CHECK_FAILS(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0), EPERM);
	int sv[2];
	CHECK_FAILS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), EPERM);
	struct msghdr mh = {0};
	CHECK_FAILS(sendmsg(1, &mh, 0), EPERM);
	CHECK_FAILS(recvmsg(0, &mh, 0), EPERM);
}

static void *thread_fn(void *arg)
{
	return arg;
}

AB_TEST(seccomp_nano_threads_but_no_processes)
{
	load_nano();

	/* pthread_create tries clone3 first (refused with ENOSYS) and falls
	 * back to clone with CLONE_THREAD. */
	for (int i = 0; i < 4; i++) {
		pthread_t t;
		void *res = NULL;
		CHECK_EQ_INT(pthread_create(&t, NULL, thread_fn, (void *)0x42), 0);
		CHECK_EQ_INT(pthread_join(t, &res), 0);
		CHECK(res == (void *)0x42);
	}

	CHECK_CLONE_FAILS(fork(), EPERM);
	CHECK_CLONE_FAILS(vfork(), EPERM);
#ifdef SYS_fork
	CHECK_CLONE_FAILS(syscall(SYS_fork), EPERM);
	CHECK_CLONE_FAILS(syscall(SYS_vfork), EPERM);
#endif
	CHECK_CLONE_FAILS(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0), EPERM);
	CHECK_CLONE_FAILS(syscall(SYS_clone, CLONE_VM | CLONE_VFORK | SIGCHLD, 0, 0, 0, 0), EPERM);
	/* Two of the three thread flags are not enough (the child would be a
	 * process sharing memory). */
	CHECK_CLONE_FAILS(syscall(SYS_clone, CLONE_VM | CLONE_SIGHAND | SIGCHLD, 0, 0, 0, 0),
			  EPERM);
	/* A thread flag set with a namespace flag is refused by the filter. */
	CHECK_CLONE_FAILS(
	    syscall(SYS_clone, CLONE_VM | CLONE_SIGHAND | CLONE_THREAD | CLONE_NEWNET, 0, 0, 0, 0),
	    EPERM);
	struct clone_args ca = {.exit_signal = SIGCHLD};
	CHECK_CLONE_FAILS(syscall(SYS_clone3, &ca, sizeof(ca)), ENOSYS);

	char *argv[] = {"false", NULL};
	char *envp[] = {NULL};
	CHECK_FAILS(execve("/bin/false", argv, envp), EPERM);
	CHECK_FAILS(syscall(SYS_execveat, AT_FDCWD, "/bin/false", argv, envp, 0), EPERM);
}

AB_TEST(seccomp_nano_memory)
{
	load_nano();
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	char *p = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED);
	p[0] = 1;
	char *q = mremap(p, 4 * pg, 8 * pg, MREMAP_MAYMOVE);
	CHECK(q != MAP_FAILED);
	CHECK_EQ_INT(q[0], 1);
	CHECK_EQ_INT(mprotect(q, pg, PROT_READ), 0);
	CHECK_EQ_INT(madvise(q + pg, pg, MADV_DONTNEED), 0);
	CHECK_EQ_INT(munmap(q, 8 * pg), 0);
	void *m = malloc(1 << 20);
	CHECK(m != NULL);
	free(m);
}

AB_TEST(seccomp_nano_process_surfaces_refused)
{
	load_nano();
	CHECK_FAILS(ptrace(PTRACE_TRACEME, 0, NULL, NULL), EPERM);
	CHECK_FAILS(syscall(SYS_ptrace, PTRACE_ATTACH, getppid(), 0, 0), EPERM);
	CHECK_FAILS(syscall(SYS_process_vm_readv, getppid(), NULL, 0, NULL, 0, 0), EPERM);
	CHECK_FAILS(mount("none", "/tmp", "tmpfs", 0, NULL), EPERM);
	CHECK_FAILS(unshare(CLONE_NEWUSER), EPERM);
	CHECK_FAILS(setns(0, 0), EPERM);
	CHECK_FAILS(syscall(SYS_bpf, 0, NULL, 0), EPERM);
	CHECK_FAILS(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0), EPERM);
	CHECK_FAILS(syscall(SYS_userfaultfd, 0), EPERM);
	CHECK_FAILS(syscall(SYS_io_uring_setup, 1, NULL), EPERM);
	CHECK_FAILS(syscall(SYS_keyctl, 0, 0, 0, 0, 0), EPERM);
	CHECK_FAILS(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), EPERM);
	CHECK_FAILS(syscall(SYS_seccomp, 1, 0, NULL), EPERM);
	/* personality: the query only. */
	CHECK(personality(0xffffffff) >= 0);
	CHECK_FAILS(personality(READ_IMPLIES_EXEC), EPERM);
	CHECK_FAILS(personality(PER_LINUX), EPERM);
	/* fcntl: descriptor flags yes, locks and owners no. */
	CHECK(fcntl(1, F_GETFD) >= 0);
	CHECK(fcntl(1, F_GETFL) >= 0);
	int d = fcntl(1, F_DUPFD_CLOEXEC, 10);
	CHECK(d >= 10);
	close(d);
	CHECK_FAILS(fcntl(1, F_SETOWN, getppid()), EPERM);
	CHECK_FAILS(fcntl(1, F_SETSIG, SIGKILL), EPERM);
}

AB_TEST(seccomp_nano_late_surfaces_refused)
{
	load_nano();
	CHECK_FAILS(syscall(447 /* memfd_secret */, 0), EPERM);
	CHECK_FAILS(syscall(450 /* set_mempolicy_home_node */, 0, 0, 0, 0), EPERM);
	CHECK_FAILS(syscall(SYS_ioprio_set, 1, 0, (2 << 13) | 4), EPERM);
#ifdef SYS_modify_ldt
	char ldt[16];
	CHECK_FAILS(syscall(SYS_modify_ldt, 0, ldt, sizeof(ldt)), EPERM);
#endif
	CHECK_FAILS(socket(AF_INET, SOCK_STREAM, 262 /* IPPROTO_MPTCP */), EPERM);
}

static volatile sig_atomic_t got_usr1;

static void on_usr1(int sig)
{
	(void)sig;
	got_usr1++;
}

AB_TEST(seccomp_nano_signals_to_self_only)
{
	struct sigaction sa = {.sa_handler = on_usr1};
	CHECK_EQ_INT(sigaction(SIGUSR1, &sa, NULL), 0);
	load_nano();

	CHECK_FAILS(kill(getppid(), 0), EPERM);
	CHECK_FAILS(kill(0, 0), EPERM);
	CHECK_FAILS(kill(-1, 0), EPERM);
	CHECK_FAILS(syscall(SYS_tgkill, getppid(), getppid(), 0), EPERM);
	CHECK_FAILS(syscall(SYS_tkill, getppid(), 0), EPERM);
	/* Junk in the upper half of the pid fails closed. */
	CHECK_FAILS(syscall(SYS_kill, (1UL << 32) | (unsigned long)getpid(), 0), EPERM);

	CHECK_EQ_INT(raise(SIGUSR1), 0);
	CHECK_EQ_INT(got_usr1, 1);
	CHECK_EQ_INT(kill(getpid(), SIGUSR1), 0);
	CHECK_EQ_INT(got_usr1, 2);
	CHECK_EQ_INT(pthread_kill(pthread_self(), SIGUSR1), 0);
	CHECK_EQ_INT(got_usr1, 3);
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	CHECK_EQ_INT(sigprocmask(SIG_BLOCK, &set, &old), 0);
	CHECK_EQ_INT(sigprocmask(SIG_SETMASK, &old, NULL), 0);
}

AB_TEST(seccomp_nano_time_random_identity)
{
	load_nano();
	struct timespec ts;
	CHECK_EQ_INT(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts), 0);
	CHECK_EQ_INT(clock_gettime(CLOCK_REALTIME, &ts), 0);
	struct timespec d = {0, 1000000};
	CHECK_EQ_INT(syscall(SYS_nanosleep, &d, NULL), 0);
	CHECK_EQ_INT(clock_nanosleep(CLOCK_MONOTONIC, 0, &d, NULL), 0);
	unsigned char rnd[32];
	CHECK_EQ_INT(syscall(SYS_getrandom, rnd, sizeof(rnd), 0), (long)sizeof(rnd));
	CHECK(syscall(SYS_getpid) > 0);
	CHECK(syscall(SYS_gettid) > 0);
	char cwd[256];
	CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
	struct rusage ru;
	CHECK_EQ_INT(getrusage(RUSAGE_SELF, &ru), 0);
}

AB_TEST(seccomp_nano_ioctl_is_not_a_tty)
{
	load_nano();
	struct termios tio;
	CHECK_FAILS(ioctl(0, TCGETS, &tio), ENOTTY);
	CHECK_FAILS(ioctl(1, TCGETS, &tio), ENOTTY);
	CHECK(!isatty(1));
	int n;
	CHECK_FAILS(ioctl(0, FIONREAD, &n), ENOTTY);
	char c = 'x';
	CHECK_FAILS(ioctl(0, TIOCSTI, &c), ENOTTY);
}

AB_TEST(seccomp_nano_rlimits_read_only)
{
	load_nano();
	struct rlimit rl;
	CHECK_EQ_INT(getrlimit(RLIMIT_NOFILE, &rl), 0);
	CHECK_EQ_INT(prlimit(0, RLIMIT_NOFILE, NULL, &rl), 0);
	struct rlimit raised = {rl.rlim_max, rl.rlim_max};
	CHECK_FAILS(setrlimit(RLIMIT_NOFILE, &raised), EPERM);
	CHECK_FAILS(prlimit(0, RLIMIT_NOFILE, &raised, NULL), EPERM);
	struct rlimit lowered = {0, 0};
	CHECK_FAILS(prlimit(0, RLIMIT_CORE, &lowered, NULL), EPERM);
	/* Another process's limits are not even readable. */
	CHECK_FAILS(prlimit(getppid(), RLIMIT_NOFILE, NULL, &rl), EPERM);
}

#ifdef __x86_64__
static void getpid_int80(void)
{
	long r;
	/* 20 is getpid in the i386 table. */
	__asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
	_exit(r > 0 ? 4 : 5);
}

/* The grandchildren load the filter themselves: fork is refused under it. */
static void nano_getpid_x32(void)
{
	load_nano();
	/* 0x40000000 is the x32 syscall bit: the filter must kill the
	 * process before the kernel (which may lack x32) sees the call. */
	syscall(__NR_getpid | 0x40000000);
	_exit(3);
}

static void nano_getpid_int80(void)
{
	load_nano();
	getpid_int80();
}

AB_TEST(seccomp_nano_foreign_abis_killed)
{
	int before = in_grandchild(getpid_int80);
	int st = in_grandchild(nano_getpid_x32);
	CHECK(WIFSIGNALED(st));
	CHECK_EQ_INT(WTERMSIG(st), SIGSYS);
	st = in_grandchild(nano_getpid_int80);
	if (WIFEXITED(before) && WEXITSTATUS(before) == 4) {
		/* The kernel has ia32 emulation, so only the filter stops it. */
		CHECK(WIFSIGNALED(st));
		CHECK_EQ_INT(WTERMSIG(st), SIGSYS);
	} else {
		CHECK(!(WIFEXITED(st) && WEXITSTATUS(st) == 4));
	}
}
#endif

/* ------------------------------------------------------------ CPython
 *
 * The probe runs in /usr/bin/python3, exec'd before any filter. It reads
 * the exported nano program from the descriptor named by argv[1] and
 * installs it with prctl through ctypes (the same program
 * ab_seccomp_apply_nano loads; its tgkill and kill rules name the pid that
 * exported it, which exec keeps). From then on everything the interpreter
 * does, including every lazy import, happens under the filter. */
static const char python_probe[] =
    "import ctypes, os, sys\n"
    "fd, scratch = int(sys.argv[1]), sys.argv[2]\n"
    "prog = os.pread(fd, os.fstat(fd).st_size, 0)\n"
    "class Insn(ctypes.Structure):\n"
    "    _fields_ = [('code', ctypes.c_ushort), ('jt', ctypes.c_ubyte),\n"
    "                ('jf', ctypes.c_ubyte), ('k', ctypes.c_uint32)]\n"
    "class Prog(ctypes.Structure):\n"
    "    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.POINTER(Insn))]\n"
    "insns = (Insn * (len(prog) // 8)).from_buffer_copy(prog)\n"
    "fprog = Prog(len(insns), insns)\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2\n"
    "if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \\\n"
    "   libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:\n"
    "    sys.exit('install filter: errno %d' % ctypes.get_errno())\n"
    "os.close(fd)\n"
    /* Under the filter from here on. */
    "import json, re, math, datetime, decimal, statistics, collections, hashlib\n"
    "import random, uuid, csv, io, dataclasses, typing, textwrap, base64, string\n"
    "import itertools, functools, fractions, heapq, bisect, struct, unicodedata\n"
    "import zlib, difflib, threading, time, signal, socket, subprocess, zoneinfo\n"
    "assert json.loads(json.dumps({'a': [1, 2.5, None, 'x']})) == {'a': [1, 2.5, None, 'x']}\n"
    "assert re.findall(r'\\w+', 'hello nano world') == ['hello', 'nano', 'world']\n"
    "decimal.getcontext().prec = 30\n"
    "assert str(decimal.Decimal(1) / decimal.Decimal(7))[:8] == '0.142857'\n"
    "assert decimal.Decimal('1.1') + decimal.Decimal('2.2') == decimal.Decimal('3.3')\n"
    "assert statistics.mean([1, 2, 3, 4]) == 2.5 and math.isclose(math.sqrt(2) ** 2, 2)\n"
    "assert fractions.Fraction(1, 3) * 3 == 1\n"
    "assert hashlib.sha256(b'abc').hexdigest().startswith('ba7816bf')\n"
    "assert len(hashlib.md5(b'').hexdigest()) == 32\n"
    "random.seed(); assert 0 <= random.random() < 1\n"
    "assert uuid.uuid4().version == 4 and len(os.urandom(16)) == 16\n"
    "rows = list(csv.reader(io.StringIO('a,b\\n1,2\\n')))\n"
    "assert rows == [['a', 'b'], ['1', '2']]\n"
    "@dataclasses.dataclass\n"
    "class P:\n"
    "    x: int\n"
    "    y: typing.Optional[int] = None\n"
    "assert P(1) == P(1, None)\n"
    "assert base64.b64decode(base64.b64encode(b'nano')) == b'nano'\n"
    "assert zlib.decompress(zlib.compress(b'x' * 1000)) == b'x' * 1000\n"
    "assert unicodedata.name('\\u00e9') == 'LATIN SMALL LETTER E WITH ACUTE'\n"
    "assert struct.unpack('<I', struct.pack('<I', 7)) == (7,)\n"
    "assert heapq.nsmallest(2, [5, 1, 4]) == [1, 4] and bisect.bisect([1, 3], 2) == 1\n"
    "assert list(itertools.accumulate([1, 2, 3])) == [1, 3, 6]\n"
    "assert functools.reduce(lambda a, b: a * b, range(1, 6)) == 120\n"
    "assert len(list(difflib.unified_diff(['a'], ['b']))) > 0\n"
    "assert textwrap.wrap('a b c', 3) == ['a b', 'c'] and string.ascii_lowercase[0] == 'a'\n"
    "assert collections.Counter('aab')['a'] == 2\n"
    "datetime.datetime.now().isoformat(); datetime.datetime.now(datetime.timezone.utc)\n"
    "if os.path.exists('/usr/share/zoneinfo/Europe/Paris'):\n"
    "    datetime.datetime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo('Europe/Paris')).utcoffset()\n"
    "out = []\n"
    "ts = [threading.Thread(target=out.append, args=(i,)) for i in range(4)]\n"
    "[t.start() for t in ts]; [t.join() for t in ts]\n"
    "assert sorted(out) == [0, 1, 2, 3]\n"
    "t0 = time.monotonic(); time.sleep(0.01); assert time.monotonic() - t0 >= 0.009\n"
    "got = []\n"
    "signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))\n"
    "signal.raise_signal(signal.SIGUSR1); os.kill(os.getpid(), signal.SIGUSR1)\n"
    "assert got == [signal.SIGUSR1] * 2\n"
    "assert 'json' in os.listdir(os.path.dirname(os.__file__))\n"
    "os.getcwd(); os.cpu_count(); os.getpid(); sys.stdout.isatty()\n"
    "print('hello from nano', flush=True)\n"
    "def refused(what, fn, errs=(PermissionError,)):\n"
    "    try:\n"
    "        fn()\n"
    "    except errs:\n"
    "        return\n"
    "    except BaseException as e:\n"
    "        sys.exit('%s: expected PermissionError, got %r' % (what, e))\n"
    "    sys.exit('%s: was not refused' % what)\n"
    "refused('open for writing', lambda: open(scratch, 'w'))\n"
    "refused('open for appending', lambda: open(scratch, 'a'))\n"
    "refused('open for update', lambda: open('/etc/passwd', 'r+'))\n"
    "refused('socket', lambda: socket.socket())\n"
    "refused('socketpair', lambda: socket.socketpair())\n"
    "refused('os.fork', os.fork)\n"
    "refused('subprocess', lambda: subprocess.run(['true']), OSError)\n"
    "refused('execv', lambda: os.execv('/bin/true', ['true']))\n"
    "refused('kill parent', lambda: os.kill(os.getppid(), 0))\n"
    "refused('mkdir', lambda: os.mkdir(scratch))\n"
    "assert not os.path.exists(scratch)\n"
    "print('RESULT OK', flush=True)\n";

AB_TEST(seccomp_nano_cpython_runs_the_stdlib)
{
	char scratch[64];
	snprintf(scratch, sizeof(scratch), "/tmp/agentbox-nano-test-%d", (int)getpid());
	unlink(scratch);

	int out[2];
	CHECK_EQ_INT(pipe2(out, O_CLOEXEC), 0);
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		/* The program is exported here, in the process that becomes
		 * python, so that its own-pid rules name python's pid. */
		ab_error err = {0};
		int bpf = memfd_create("nano-bpf", 0);
		if (bpf < 0 || ab_seccomp_export_nano(bpf, &err) < 0) {
			fprintf(stderr, "export: %s\n", err.msg);
			_exit(126);
		}
		if (dup2(out[1], 1) < 0)
			_exit(126);
		char fdarg[16];
		snprintf(fdarg, sizeof(fdarg), "%d", bpf);
		execl("/usr/bin/python3", "python3", "-I", "-c", python_probe, fdarg, scratch,
		      (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	static char buf[65536];
	size_t len = 0;
	for (;;) {
		ssize_t n = read(out[0], buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		CHECK(n >= 0);
		if (n == 0)
			break;
		len += (size_t)n;
		CHECK(len < sizeof(buf) - 1);
	}
	buf[len] = '\0';
	close(out[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0)
		CHECK_EQ_INT(errno, EINTR);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fprintf(stderr, "python: %s %d; stdout:\n%s\n", WIFSIGNALED(st) ? "signal" : "exit",
			WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), buf);
	CHECK(WIFEXITED(st));
	CHECK_EQ_INT(WEXITSTATUS(st), 0);
	CHECK_CONTAINS(buf, "hello from nano\n");
	CHECK_CONTAINS(buf, "RESULT OK\n");
	struct stat sst;
	CHECK_FAILS(stat(scratch, &sst), ENOENT);
}

/* The precompiled nano program (what every nano sandbox of a zygote loads)
 * is the allowlist, for the executor's pid (2 in a sandbox's namespace):
 * run here as pid 2 of a new pid namespace. */
static int precompiled_as_pid_2(void)
{
	ab_error err = {0};
	if (getpid() != 2 || ab_seccomp_precompile(&err) < 0)
		return 10;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || ab_seccomp_apply_nano(&err) < 0)
		return 11;
	int fd = openat(AT_FDCWD, "/etc/passwd", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 12;
	close(fd);
	if (openat(AT_FDCWD, "/etc/passwd", O_WRONLY | O_CLOEXEC) >= 0 || errno != EPERM)
		return 13;
	if (socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0) >= 0 || errno != EPERM)
		return 14;
	if (kill(2, 0) != 0) /* itself: allowed, so the pid in the program is 2 */
		return 15;
	if (kill(1, 0) == 0 || errno != EPERM) /* its init: refused */
		return 16;
	return 0;
}

AB_TEST(seccomp_nano_precompiled_is_the_allowlist)
{
	if (unshare(CLONE_NEWUSER | CLONE_NEWPID) < 0)
		SKIP("cannot make a pid namespace here: %s", strerror(errno));
	pid_t init = fork(); /* pid 1 of the new namespace */
	CHECK(init >= 0);
	if (init == 0) {
		pid_t p = fork(); /* pid 2 */
		if (p == 0)
			_exit(precompiled_as_pid_2());
		int st = 0;
		_exit(p > 0 && waitpid(p, &st, 0) == p && WIFEXITED(st) ? WEXITSTATUS(st) : 20);
	}
	int st = 0;
	CHECK_EQ_INT(waitpid(init, &st, 0), init);
	CHECK(WIFEXITED(st));
	CHECK_EQ_INT(WEXITSTATUS(st), 0);
}

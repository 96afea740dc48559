/* caps.c - dropping every capability and privilege the sandbox could use
 * to regain power, without libcap.
 *
 * Runs in the sandbox's init after all privileged set-up (mounts, cgroup
 * attach, ...), with whatever capabilities the user namespace gave it. The
 * order matters: securebits and the bounding set need CAP_SETPCAP, so they
 * are changed before capset() clears the effective set. The result is
 * verified from the kernel's own view at the end, and anything still held
 * is an error: a half-dropped process must not run untrusted code.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "confine.h"
#include "internal.h"

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_IS_SET 1
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef SECBIT_NO_CAP_AMBIENT_RAISE
#define SECBIT_NO_CAP_AMBIENT_RAISE (1 << 6)
#define SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED (1 << 7)
#endif

/* Upper bound on capability numbers this code iterates over; the kernel
 * reports the real last one in /proc/sys/kernel/cap_last_cap. */
#define CAP_NUMBER_MAX 63

/* Returns the highest capability number the kernel knows. Without /proc
 * (early in a jail), it probes the bounding set instead: PR_CAPBSET_READ
 * fails with EINVAL past the last capability. */
static int last_cap(void)
{
	AB_AUTOCLOSE int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		char buf[16];
		ssize_t n;
		do
			n = read(fd, buf, sizeof(buf) - 1);
		while (n < 0 && errno == EINTR);
		if (n > 0) {
			buf[n] = '\0';
			char *end;
			long v = strtol(buf, &end, 10);
			if (end != buf && v >= 0 && v <= CAP_NUMBER_MAX)
				return (int)v;
		}
	}
	int cap = 0;
	while (cap < CAP_NUMBER_MAX && prctl(PR_CAPBSET_READ, (unsigned long)cap + 1, 0, 0, 0) >= 0)
		cap++;
	return cap;
}

static int cap_get(struct __user_cap_data_struct data[2])
{
	struct __user_cap_header_struct hdr = {
	    .version = _LINUX_CAPABILITY_VERSION_3,
	    .pid = 0,
	};
	return (int)syscall(SYS_capget, &hdr, data);
}

/* Checks the kernel's view of this thread: no capability in any set,
 * no_new_privs on. */
static int verify_dropped(int last, ab_error *err)
{
	struct __user_cap_data_struct data[2];
	if (cap_get(data) < 0)
		return ab_error_errno(err, -errno, "drop capabilities: capget");
	for (int i = 0; i < 2; i++) {
		if (data[i].effective || data[i].permitted || data[i].inheritable)
			return ab_error_set(err, -EPERM,
					    "drop capabilities: still held after capset "
					    "(eff %#x prm %#x inh %#x, word %d)",
					    data[i].effective, data[i].permitted,
					    data[i].inheritable, i);
	}
	for (int cap = 0; cap <= last; cap++) {
		int r = prctl(PR_CAPBSET_READ, (unsigned long)cap, 0, 0, 0);
		if (r < 0 && errno == EINVAL)
			continue;
		if (r != 0)
			return ab_error_set(err, -EPERM,
					    "drop capabilities: capability %d "
					    "is still in the bounding set "
					    "(no CAP_SETPCAP to drop it)",
					    cap);
		r = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, (unsigned long)cap, 0, 0);
		if (r > 0)
			return ab_error_set(err, -EPERM,
					    "drop capabilities: capability %d "
					    "is still ambient",
					    cap);
	}
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		return ab_error_set(err, -EPERM, "drop capabilities: no_new_privs is not set");
	return 0;
}

int ab_caps_drop_all(ab_error *err)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return ab_error_errno(err, -errno, "prctl(PR_SET_NO_NEW_PRIVS)");

	/* uid 0 gains no capabilities on exec (NOROOT), changing uids
	 * never touches capabilities (NO_SETUID_FIXUP), capabilities are
	 * not kept across setuid (KEEP_CAPS off) and none can become
	 * ambient; each setting is locked so the sandbox cannot undo it.
	 * This needs CAP_SETPCAP: without it, the verification at the end
	 * decides whether what is held is acceptable (nothing is). */
	const unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
				   SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
				   SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
	if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0 && errno != EPERM)
		return ab_error_errno(err, -errno, "prctl(PR_SET_SECUREBITS, %#lx)", bits);

	/* The bounding set limits what any later exec can gain. Numbers the
	 * kernel does not know fail with EINVAL; EPERM (no CAP_SETPCAP) is
	 * judged by the verification. */
	int last = last_cap();
	for (int cap = 0; cap <= last; cap++) {
		if (prctl(PR_CAPBSET_DROP, (unsigned long)cap, 0, 0, 0) < 0 && errno != EINVAL &&
		    errno != EPERM)
			return ab_error_errno(err, -errno, "prctl(PR_CAPBSET_DROP, %d)", cap);
	}

	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return ab_error_errno(err, -errno, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)");

	/* Lowering capabilities is always permitted. */
	struct __user_cap_header_struct hdr = {
	    .version = _LINUX_CAPABILITY_VERSION_3,
	    .pid = 0,
	};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data) < 0)
		return ab_error_errno(err, -errno, "capset (drop all)");

	return verify_dropped(last, err);
}

int ab_set_nondumpable(ab_error *err)
{
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return ab_error_errno(err, -errno, "prctl(PR_SET_DUMPABLE, 0)");
	return 0;
}

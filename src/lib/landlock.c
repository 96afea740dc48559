/* landlock.c - filesystem confinement with Landlock, through the raw
 * system calls (glibc has no wrappers).
 *
 * The ruleset handles every filesystem right the running kernel knows, so
 * anything not granted by a rule is refused: a sandbox sees only the paths
 * its tier lists. Network rights are deliberately not handled; the network
 * namespace and the egress proxy are the network layer. On ABI 6 and later
 * the ruleset also scopes abstract unix sockets and signals to the
 * sandbox's own Landlock domain.
 *
 * The installed <linux/landlock.h> may be older than the kernel, so the
 * newer constants and the grown ruleset attribute are defined here. The
 * kernel accepts an attribute larger than it knows as long as the unknown
 * tail is zero, but the size passed is trimmed to what the ABI knows
 * anyway, which keeps the call valid on every kernel since 5.13.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "confine.h"
#include "internal.h"

#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#endif
#ifndef __NR_landlock_add_rule
#define __NR_landlock_add_rule 445
#endif
#ifndef __NR_landlock_restrict_self
#define __NR_landlock_restrict_self 446
#endif

#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#endif
#ifndef LANDLOCK_SCOPE_SIGNAL
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#endif

/* struct landlock_ruleset_attr as of ABI 6. */
struct ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net; /* ABI 4; left 0: not handled */
	uint64_t scoped;	     /* ABI 6 */
};

/* The rights of ABI 1 (bits 0 to 12). */
#define FS_ABI1 ((1ULL << 13) - 1)

/* Rights that make sense on a file that is not a directory; the kernel
 * refuses a rule that grants any other right on such a file. */
#define FS_FILE_RIGHTS                                                                             \
	(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |                              \
	 LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |                              \
	 LANDLOCK_ACCESS_FS_IOCTL_DEV)

#define FS_READ_ONLY                                                                               \
	(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)

static uint64_t handled_fs_for_abi(int abi)
{
	uint64_t fs = FS_ABI1;
	if (abi >= 2)
		fs |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
	if (abi >= 5)
		fs |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
	return fs;
}

int ab_landlock_abi(void)
{
	long abi = syscall(__NR_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 0) {
		/* ENOSYS: not compiled in; EOPNOTSUPP: disabled at boot. */
		if (errno == ENOSYS || errno == EOPNOTSUPP)
			return -EOPNOTSUPP;
		return -errno;
	}
	return (int)abi;
}

/* Adds one rule to ruleset_fd. Returns 0 when added or when the path does
 * not exist (a tier may list paths some hosts lack). */
static int add_path_rule(int ruleset_fd, const ab_landlock_rule *rule, uint64_t handled,
			 ab_error *err)
{
	AB_AUTOCLOSE int fd = open(rule->path, O_PATH | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		return ab_error_errno(err, -errno, "landlock: open %s", rule->path);
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return ab_error_errno(err, -errno, "landlock: stat %s", rule->path);

	uint64_t allowed = rule->writable ? handled : FS_READ_ONLY;
	if (!S_ISDIR(st.st_mode))
		allowed &= FS_FILE_RIGHTS;
	allowed &= handled;

	struct landlock_path_beneath_attr pb = {
	    .allowed_access = allowed,
	    .parent_fd = fd,
	};
	if (syscall(__NR_landlock_add_rule, ruleset_fd, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0)
		return ab_error_errno(err, -errno, "landlock: add rule for %s", rule->path);
	return 0;
}

int ab_landlock_apply(const ab_landlock_rule *rules, size_t n, ab_error *err)
{
	int abi = ab_landlock_abi();
	if (abi < 0)
		return ab_error_errno(err, abi, "landlock: query ABI version");

	/* landlock_restrict_self requires no_new_privs (or CAP_SYS_ADMIN,
	 * which a sandbox must not rely on); say so plainly rather than let
	 * the kernel's EPERM speak for itself. */
	int nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
	if (nnp < 0)
		return ab_error_errno(err, -errno, "landlock: prctl(PR_GET_NO_NEW_PRIVS)");
	if (nnp != 1)
		return ab_error_set(err, -EPERM,
				    "landlock: no_new_privs must be set before "
				    "the ruleset is applied");

	struct ruleset_attr attr = {.handled_access_fs = handled_fs_for_abi(abi)};
	size_t attr_size = sizeof(uint64_t);
	if (abi >= 4)
		attr_size = 2 * sizeof(uint64_t);
	if (abi >= 6) {
		attr.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL;
		attr_size = sizeof(attr);
	}

	AB_AUTOCLOSE int ruleset_fd =
	    (int)syscall(__NR_landlock_create_ruleset, &attr, attr_size, 0);
	if (ruleset_fd < 0)
		return ab_error_errno(err, -errno, "landlock: create ruleset (ABI %d)", abi);

	for (size_t i = 0; i < n; i++) {
		if (!rules[i].path)
			return ab_error_set(err, -EINVAL, "landlock: rule %zu has no path", i);
		int rc = add_path_rule(ruleset_fd, &rules[i], attr.handled_access_fs, err);
		if (rc < 0)
			return rc;
	}

	if (syscall(__NR_landlock_restrict_self, ruleset_fd, 0) < 0)
		return ab_error_errno(err, -errno, "landlock: restrict self");
	return 0;
}

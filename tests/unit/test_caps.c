/* test_caps.c - dropping capabilities, checked through /proc/self/status
 * (the view an attacker inside the sandbox has) and by trying to use
 * what was dropped. Each test runs in its own child (see runner.c). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "confine.h"
#include "internal.h"
#include "unit.h"

/* Copies the value of "Key:" in /proc/self/status into out. */
static void status_field(const char *key, char *out, size_t outlen)
{
	FILE *f = fopen("/proc/self/status", "re");
	CHECK(f != NULL);
	char line[256];
	size_t klen = strlen(key);
	out[0] = '\0';
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			const char *v = line + klen + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			snprintf(out, outlen, "%.*s", (int)strcspn(v, "\n"), v);
			break;
		}
	}
	fclose(f);
}

static void check_all_dropped(void)
{
	static const char *const sets[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"};
	char v[64];
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
		status_field(sets[i], v, sizeof(v));
		CHECK_STR(v, "0000000000000000");
	}
	status_field("NoNewPrivs", v, sizeof(v));
	CHECK_STR(v, "1");
	/* NOROOT, NO_SETUID_FIXUP and KEEP_CAPS off are locked. */
	int sb = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
	CHECK(sb >= 0);
	CHECK_EQ_INT(sb & 0x3f, 0x2f);
}

AB_TEST(caps_drop_all_as_root)
{
	if (geteuid() != 0) {
		SKIP("needs root");
	}
	char v[64];
	status_field("CapEff", v, sizeof(v));
	CHECK(strcmp(v, "0000000000000000") != 0);

	/* A file only capabilities let root read. */
	char path[] = "/tmp/ab-caps-XXXXXX";
	int fd = mkostemp(path, O_CLOEXEC);
	CHECK(fd >= 0);
	CHECK_EQ_INT(fchmod(fd, 0), 0);
	close(fd);

	ab_error err = {0};
	int rc = ab_caps_drop_all(&err);
	if (rc < 0)
		fprintf(stderr, "drop: %s\n", err.msg);
	CHECK_EQ_INT(rc, 0);
	check_all_dropped();

	/* Without CAP_DAC_OVERRIDE, uid 0 is an ordinary owner. */
	errno = 0;
	CHECK_EQ_INT(open(path, O_RDONLY | O_CLOEXEC), -1);
	CHECK_EQ_INT(errno, EACCES);
	CHECK_EQ_INT(unlink(path), 0);

	/* Without CAP_SETUID the uid cannot change, and were it changed,
	 * there would be no way back. */
	if (setuid(1000) == 0) {
		CHECK_EQ_INT(setuid(0), -1);
		CHECK(getuid() == 1000);
	} else {
		CHECK_EQ_INT(errno, EPERM);
		CHECK(getuid() == 0);
	}
	errno = 0;
	CHECK_EQ_INT(unshare(CLONE_NEWNS), -1);
	CHECK_EQ_INT(errno, EPERM);

	/* A second call holds nothing to drop and still verifies. */
	CHECK_EQ_INT(ab_caps_drop_all(&err), 0);
	check_all_dropped();
}

AB_TEST(caps_drop_all_in_user_namespace)
{
	CHECK_EQ_INT(unshare(CLONE_NEWUSER), 0);
	char v[64];
	status_field("CapEff", v, sizeof(v));
	CHECK(strcmp(v, "0000000000000000") != 0);

	ab_error err = {0};
	int rc = ab_caps_drop_all(&err);
	if (rc < 0)
		fprintf(stderr, "drop: %s\n", err.msg);
	CHECK_EQ_INT(rc, 0);
	check_all_dropped();
	errno = 0;
	CHECK_EQ_INT(unshare(CLONE_NEWNS), -1);
	CHECK_EQ_INT(errno, EPERM);
}

AB_TEST(caps_drop_all_fails_closed_without_setpcap)
{
	if (geteuid() != 0) {
		SKIP("needs root");
	}
	/* Switching to a user id clears the effective and permitted sets
	 * but leaves the bounding set full; with no CAP_SETPCAP left to
	 * empty it, the drop must report failure. */
	CHECK_EQ_INT(setresuid(1000, 1000, 1000), 0);
	char v[64];
	status_field("CapBnd", v, sizeof(v));
	CHECK(strcmp(v, "0000000000000000") != 0);

	ab_error err = {0};
	CHECK(ab_caps_drop_all(&err) < 0);
	CHECK_CONTAINS(err.msg, "bounding set");
}

AB_TEST(caps_set_nondumpable)
{
	ab_error err = {0};
	CHECK_EQ_INT(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 1);
	CHECK_EQ_INT(ab_set_nondumpable(&err), 0);
	CHECK_EQ_INT(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
}

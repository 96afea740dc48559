/* test_wsstore.c - versions of a workspace (engine/wsstore.c): capture and
 * restore, dedupe and the stat cache, diff, list, read, gc, and what a
 * hostile workspace holds (symlinks where directories were, FIFOs, names
 * that are not UTF-8). Each test works in its own mkdtemp directory under
 * /tmp: ws/ (the workspace), store/ and outside/ (what must never be
 * touched through a symlink). */
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "engine/wsstore.h"
#include "unit.h"

typedef struct {
	char base[64];
	char ws[96], store[96], outside[96];
	int wsfd;
	ws_store *s;
} fixture;

static void setup_in(fixture *f, const char *parent)
{
	snprintf(f->base, sizeof(f->base), "%s/wsstore-test-XXXXXX", parent);
	CHECK(mkdtemp(f->base));
	snprintf(f->ws, sizeof(f->ws), "%s/ws", f->base);
	snprintf(f->store, sizeof(f->store), "%s/store", f->base);
	snprintf(f->outside, sizeof(f->outside), "%s/outside", f->base);
	CHECK(mkdir(f->ws, 0755) == 0);
	CHECK(mkdir(f->outside, 0755) == 0);
	f->wsfd = open(f->ws, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK(f->wsfd >= 0);
	ab_error err = {0};
	f->s = ws_store_new(f->store, &err);
	if (!f->s)
		fprintf(stderr, "ws_store_new: %s\n", err.msg);
	CHECK(f->s);
}

static void setup(fixture *f)
{
	setup_in(f, "/tmp");
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	remove(p);
	return 0;
}

static void rm_rf(const char *p)
{
	/* Read-only directories first get their write bit back. */
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s' 2>/dev/null", p);
	(void)!system(cmd);
	nftw(p, rm_one, 64, FTW_DEPTH | FTW_PHYS);
}

static void teardown(fixture *f)
{
	ws_store_free(f->s);
	struct stat st;
	CHECK(lstat(f->store, &st) < 0 && errno == ENOENT); /* the store is gone */
	close(f->wsfd);
	rm_rf(f->base);
}

/* Empties the workspace. */
static void wipe(fixture *f)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s' && find '%s' -mindepth 1 -delete", f->ws,
		 f->ws);
	CHECK(system(cmd) == 0);
}

static void put(fixture *f, const char *rel, const void *data, size_t len, mode_t mode)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/%s", f->ws, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		fprintf(stderr, "open %s: %s\n", p, strerror(errno));
	CHECK(fd >= 0);
	CHECK(write(fd, data, len) == (ssize_t)len);
	CHECK(fchmod(fd, mode) == 0);
	close(fd);
}

static void puts_(fixture *f, const char *rel, const char *text)
{
	put(f, rel, text, strlen(text), 0644);
}

static void mkd(fixture *f, const char *rel, mode_t mode)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/%s", f->ws, rel);
	CHECK(mkdir(p, 0700) == 0);
	CHECK(chmod(p, mode) == 0);
}

static void lnk(fixture *f, const char *rel, const char *target)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/%s", f->ws, rel);
	CHECK(symlink(target, p) == 0);
}

/* The content of a file of the workspace ("" when it is missing). */
static char *slurp(const char *dir, const char *rel, size_t *len)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	FILE *fp = fopen(p, "rb");
	*len = 0;
	if (!fp)
		return strdup("");
	char *buf = malloc(8 << 20);
	CHECK(buf);
	*len = fread(buf, 1, 8 << 20, fp);
	buf[*len] = '\0';
	fclose(fp);
	return buf;
}

static mode_t lmode(fixture *f, const char *rel)
{
	char p[4096];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", f->ws, rel);
	if (lstat(p, &st) < 0)
		return 0;
	return st.st_mode;
}

static json_t *capture(fixture *f, uint64_t *added)
{
	ab_error err = {0};
	uint64_t a = 0;
	json_t *m = ws_capture(f->s, f->wsfd, &a, &err);
	if (!m)
		fprintf(stderr, "ws_capture: %s\n", err.msg);
	CHECK(m);
	if (added)
		*added = a;
	return m;
}

static int restore(fixture *f, const json_t *m)
{
	ab_error err = {0};
	int n = ws_restore(f->s, m, f->wsfd, getuid(), getgid(), &err);
	if (n < 0)
		fprintf(stderr, "ws_restore: %s\n", err.msg);
	return n;
}

static json_t *entry(const json_t *m, const char *kind, const char *path)
{
	return json_object_get(json_object_get(m, kind), path);
}

static long long ival(const json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

/* A coarse clock tick (and more) passes, so that what was written before
 * is older than the next capture's start. */
static void tick(void)
{
	struct timespec ts = {0, 30 * 1000 * 1000};
	nanosleep(&ts, NULL);
}

static char *big_data(size_t n)
{
	char *b = malloc(n);
	CHECK(b);
	uint32_t x = 12345;
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		b[i] = (char)(x >> 16);
	}
	return b;
}

static void make_tree(fixture *f, char *big, size_t bign)
{
	puts_(f, "a.txt", "alpha\n");
	put(f, "empty", "", 0, 0644);
	put(f, "run.sh", "#!/bin/sh\n", 10, 0755);
	mkd(f, "d", 0750);
	put(f, "d/b.csv", "1,2\n", 4, 0600);
	mkd(f, "d/e", 0755);
	put(f, "d/e/big.bin", big, bign, 0644);
	mkd(f, "ro", 0755);
	puts_(f, "ro/kept", "kept\n");
	CHECK(chmod(f->ws, 0755) == 0);
	char p[256];
	snprintf(p, sizeof(p), "%s/ro", f->ws);
	CHECK(chmod(p, 0555) == 0);
	lnk(f, "l", "a.txt");
	lnk(f, "d/abs", "/etc/passwd");
	lnk(f, "dangling", "no/such/file");
}

AB_TEST(wsstore_capture_restore_round_trip)
{
	fixture f;
	setup(&f);
	size_t bign = 5u << 20;
	char *big = big_data(bign);
	make_tree(&f, big, bign);
	uint64_t added;
	json_t *m1 = capture(&f, &added);
	/* The manifest names everything with its mode and content. */
	json_t *a = entry(m1, "files", "a.txt");
	char hex[65];
	ab_sha256_hex("alpha\n", 6, hex);
	CHECK_STR(json_string_value(json_object_get(a, "sha256")), hex);
	CHECK_EQ_INT(ival(a, "size"), 6);
	CHECK_EQ_INT(ival(a, "mode"), 0644);
	CHECK_EQ_INT(ival(entry(m1, "files", "empty"), "size"), 0);
	CHECK_EQ_INT(ival(entry(m1, "files", "run.sh"), "mode"), 0755);
	CHECK_EQ_INT(ival(entry(m1, "files", "d/b.csv"), "mode"), 0600);
	CHECK_EQ_INT(ival(entry(m1, "files", "d/e/big.bin"), "size"), (long long)bign);
	CHECK_EQ_INT(ival(entry(m1, "dirs", "d"), "mode"), 0750);
	CHECK_EQ_INT(ival(entry(m1, "dirs", "ro"), "mode"), 0555);
	CHECK(entry(m1, "dirs", "d/e"));
	CHECK_STR(json_string_value(json_object_get(entry(m1, "links", "l"), "target")), "a.txt");
	CHECK_STR(json_string_value(json_object_get(entry(m1, "links", "d/abs"), "target")),
		  "/etc/passwd");
	CHECK_EQ_INT(json_object_size(json_object_get(m1, "files")), 6);
	CHECK_EQ_INT(json_object_size(json_object_get(m1, "dirs")), 3);
	CHECK_EQ_INT(json_object_size(json_object_get(m1, "links")), 3);
	CHECK(!json_object_get(m1, "skipped"));
	/* Keys in byte order. */
	const char *prev = "", *key;
	json_t *v;
	json_object_foreach(json_object_get(m1, "files"), key, v)
	{
		CHECK(strcmp(prev, key) < 0);
		prev = key;
	}
	CHECK_EQ_INT(added, bign + 6 + 10 + 4 + 5); /* every content once */
	CHECK_EQ_INT(ws_store_bytes(f.s), added);

	/* From nothing, everything comes back. */
	wipe(&f);
	CHECK_EQ_INT(restore(&f, m1), 6);
	size_t len;
	char *got = slurp(f.ws, "d/e/big.bin", &len);
	CHECK_EQ_INT(len, bign);
	CHECK(memcmp(got, big, bign) == 0);
	free(got);
	got = slurp(f.ws, "a.txt", &len);
	CHECK_STR(got, "alpha\n");
	free(got);
	CHECK(S_ISREG(lmode(&f, "empty")));
	CHECK_EQ_INT(lmode(&f, "run.sh") & 07777, 0755);
	CHECK_EQ_INT(lmode(&f, "d/b.csv") & 07777, 0600);
	CHECK_EQ_INT(lmode(&f, "d") & 07777, 0750);
	CHECK_EQ_INT(lmode(&f, "ro") & 07777, 0555);
	CHECK(S_ISLNK(lmode(&f, "l")));
	CHECK(S_ISLNK(lmode(&f, "d/abs")));
	CHECK(S_ISLNK(lmode(&f, "dangling")));
	char t[64] = "";
	char p[256];
	snprintf(p, sizeof(p), "%s/d/abs", f.ws);
	CHECK(readlink(p, t, sizeof(t) - 1) == 11);
	CHECK_STR(t, "/etc/passwd");
	uint64_t added2;
	json_t *m2 = capture(&f, &added2);
	CHECK(json_equal(m1, m2));
	CHECK_EQ_INT(added2, 0);
	/* Restoring the version the workspace already is writes nothing;
	 * a changed mode is set back without a write. */
	snprintf(p, sizeof(p), "%s/a.txt", f.ws);
	CHECK(chmod(p, 0600) == 0);
	CHECK_EQ_INT(restore(&f, m1), 0);
	CHECK_EQ_INT(lmode(&f, "a.txt") & 07777, 0644);
	json_decref(m1);
	json_decref(m2);
	free(big);
	teardown(&f);
}

AB_TEST(wsstore_unchanged_workspace_is_not_read_again)
{
	fixture f;
	setup(&f);
	mkd(&f, "many", 0755);
	uint64_t distinct = 0;
	for (int i = 0; i < 1000; i++) {
		char rel[64], text[64];
		snprintf(rel, sizeof(rel), "many/f%04d.txt", i);
		/* Ten contents for a thousand files: each is stored once. */
		snprintf(text, sizeof(text), "content number %d\n", i % 10);
		if (i < 10)
			distinct += strlen(text);
		puts_(&f, rel, text);
	}
	tick();
	uint64_t added;
	json_t *m1 = capture(&f, &added);
	CHECK_EQ_INT(ws_store_last_reads(f.s), 1000);
	CHECK_EQ_INT(added, distinct);
	uint64_t bytes = ws_store_bytes(f.s);
	CHECK_EQ_INT(bytes, distinct);
	/* Nothing changed: stat only, nothing stored. */
	json_t *m2 = capture(&f, &added);
	CHECK_EQ_INT(ws_store_last_reads(f.s), 0);
	CHECK_EQ_INT(added, 0);
	CHECK_EQ_INT(ws_store_bytes(f.s), bytes);
	CHECK(json_equal(m1, m2));
	/* One file changed (same size): only it is read, and its new content
	 * stored. */
	puts_(&f, "many/f0500.txt", "content NUMBER 0\n");
	json_t *m3 = capture(&f, &added);
	CHECK_EQ_INT(ws_store_last_reads(f.s), 1);
	CHECK_EQ_INT(added, strlen("content NUMBER 0\n"));
	json_t *d = ws_diff(m2, m3);
	CHECK(d);
	CHECK_EQ_INT(json_array_size(json_object_get(d, "changed")), 1);
	CHECK_STR(json_string_value(json_array_get(json_object_get(d, "changed"), 0)),
		  "many/f0500.txt");
	json_decref(d);
	json_decref(m1);
	json_decref(m2);
	json_decref(m3);
	teardown(&f);
}

AB_TEST(wsstore_racily_clean_file_is_hashed_again)
{
	fixture f;
	setup(&f);
	puts_(&f, "old", "old\n");
	puts_(&f, "future", "future\n");
	/* An mtime after the capture's start (the sandbox can set mtimes):
	 * the cache cannot tell a later change in the same tick apart. */
	char p[256];
	snprintf(p, sizeof(p), "%s/future", f.ws);
	struct timespec ts[2];
	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec += 3600;
	ts[1] = ts[0];
	CHECK(utimensat(AT_FDCWD, p, ts, 0) == 0);
	tick();
	json_decref(capture(&f, NULL));
	CHECK_EQ_INT(ws_store_last_reads(f.s), 2);
	json_decref(capture(&f, NULL));
	CHECK_EQ_INT(ws_store_last_reads(f.s), 1); /* "future", not "old" */
	teardown(&f);
}

AB_TEST(wsstore_restore_removes_extras_and_replaces_planted_entries)
{
	fixture f;
	setup(&f);
	mkd(&f, "d", 0755);
	puts_(&f, "d/x", "x in d\n");
	puts_(&f, "f", "file f\n");
	puts_(&f, "a.txt", "a\n");
	json_t *m = capture(&f, NULL);
	/* The sandbox's moves: d becomes a symlink to a directory outside,
	 * f a directory, a.txt a symlink to a file outside; extra files,
	 * directories (one read-only, one nested), a FIFO, a symlink. */
	char outside_x[256], outside_a[256], p[256];
	snprintf(outside_x, sizeof(outside_x), "%s/x", f.outside);
	snprintf(outside_a, sizeof(outside_a), "%s/a", f.outside);
	FILE *fp = fopen(outside_x, "w");
	CHECK(fp && fputs("outside\n", fp) >= 0 && fclose(fp) == 0);
	fp = fopen(outside_a, "w");
	CHECK(fp && fputs("outside a\n", fp) >= 0 && fclose(fp) == 0);
	wipe(&f);
	lnk(&f, "d", f.outside);
	mkd(&f, "f", 0755);
	puts_(&f, "f/inner", "inner\n");
	lnk(&f, "a.txt", outside_a);
	puts_(&f, "junk", "junk\n");
	mkd(&f, "extra", 0755);
	mkd(&f, "extra/deep", 0755);
	puts_(&f, "extra/deep/z", "z\n");
	lnk(&f, "extra/deep/up", "../../..");
	snprintf(p, sizeof(p), "%s/extra", f.ws);
	CHECK(chmod(p, 0555) == 0);
	snprintf(p, sizeof(p), "%s/fifo", f.ws);
	CHECK(mkfifo(p, 0600) == 0);
	lnk(&f, "escape", "/");

	CHECK_EQ_INT(restore(&f, m), 3);
	CHECK(S_ISDIR(lmode(&f, "d")));
	CHECK(S_ISREG(lmode(&f, "f")));
	CHECK(S_ISREG(lmode(&f, "a.txt")));
	size_t len;
	char *got = slurp(f.ws, "d/x", &len);
	CHECK_STR(got, "x in d\n");
	free(got);
	got = slurp(f.ws, "f", &len);
	CHECK_STR(got, "file f\n");
	free(got);
	got = slurp(f.ws, "a.txt", &len);
	CHECK_STR(got, "a\n");
	free(got);
	CHECK_EQ_INT(lmode(&f, "junk"), 0);
	CHECK_EQ_INT(lmode(&f, "extra"), 0);
	CHECK_EQ_INT(lmode(&f, "fifo"), 0);
	CHECK_EQ_INT(lmode(&f, "escape"), 0);
	/* Nothing outside was written, followed or removed. */
	got = slurp(f.outside, "x", &len);
	CHECK_STR(got, "outside\n");
	free(got);
	got = slurp(f.outside, "a", &len);
	CHECK_STR(got, "outside a\n");
	free(got);
	CHECK(system("true") == 0);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "test $(ls -A '%s' | wc -l) -eq 2", f.outside);
	CHECK(system(cmd) == 0);
	json_t *m2 = capture(&f, NULL);
	CHECK(json_equal(m, m2));
	json_decref(m);
	json_decref(m2);
	teardown(&f);
}

static bool has(const json_t *arr, const char *s)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v) if (strcmp(json_string_value(v), s) == 0) return true;
	return false;
}

AB_TEST(wsstore_diff_added_removed_changed)
{
	fixture f;
	setup(&f);
	puts_(&f, "same", "same\n");
	puts_(&f, "edit", "before\n");
	puts_(&f, "gone", "gone\n");
	puts_(&f, "chmod", "x\n");
	lnk(&f, "link", "same");
	lnk(&f, "kind", "same");
	mkd(&f, "dir", 0755);
	json_t *a = capture(&f, NULL);
	puts_(&f, "edit", "after\n");
	char p[256];
	snprintf(p, sizeof(p), "%s/gone", f.ws);
	CHECK(unlink(p) == 0);
	snprintf(p, sizeof(p), "%s/chmod", f.ws);
	CHECK(chmod(p, 0600) == 0);
	snprintf(p, sizeof(p), "%s/link", f.ws);
	CHECK(unlink(p) == 0);
	lnk(&f, "link", "edit");
	snprintf(p, sizeof(p), "%s/kind", f.ws);
	CHECK(unlink(p) == 0);
	puts_(&f, "kind", "now a file\n");
	puts_(&f, "dir/new", "new\n");
	puts_(&f, "new", "new\n");
	json_t *b = capture(&f, NULL);
	json_t *d = ws_diff(a, b);
	CHECK(d);
	json_t *added = json_object_get(d, "added"), *removed = json_object_get(d, "removed"),
	       *changed = json_object_get(d, "changed");
	CHECK_EQ_INT(json_array_size(added), 2);
	CHECK(has(added, "new") && has(added, "dir/new"));
	CHECK_EQ_INT(json_array_size(removed), 1);
	CHECK(has(removed, "gone"));
	CHECK_EQ_INT(json_array_size(changed), 4);
	CHECK(has(changed, "edit") && has(changed, "chmod") && has(changed, "link") &&
	      has(changed, "kind"));
	json_decref(d);
	d = ws_diff(a, a);
	CHECK(d && json_array_size(json_object_get(d, "added")) == 0 &&
	      json_array_size(json_object_get(d, "removed")) == 0 &&
	      json_array_size(json_object_get(d, "changed")) == 0);
	json_decref(d);
	/* And back: b to a is the mirror. */
	d = ws_diff(b, a);
	CHECK(has(json_object_get(d, "removed"), "new"));
	CHECK(has(json_object_get(d, "added"), "gone"));
	json_decref(d);
	json_decref(a);
	json_decref(b);
	teardown(&f);
}

AB_TEST(wsstore_list_and_read)
{
	fixture f;
	setup(&f);
	puts_(&f, "top.txt", "0123456789");
	mkd(&f, "sub", 0700);
	puts_(&f, "sub/in.txt", "inside");
	lnk(&f, "sub/ln", "in.txt");
	mkd(&f, "sub/deeper", 0755);
	json_t *m = capture(&f, NULL);
	ab_error err = {0};
	json_t *l = ws_list(m, "", &err);
	CHECK(l);
	CHECK_EQ_INT(json_array_size(l), 2);
	json_t *e0 = json_array_get(l, 0), *e1 = json_array_get(l, 1);
	CHECK_STR(json_string_value(json_object_get(e0, "name")), "sub");
	CHECK_STR(json_string_value(json_object_get(e0, "kind")), "dir");
	CHECK_EQ_INT(ival(e0, "mode"), 0700);
	CHECK_STR(json_string_value(json_object_get(e1, "name")), "top.txt");
	CHECK_STR(json_string_value(json_object_get(e1, "kind")), "file");
	CHECK_EQ_INT(ival(e1, "size"), 10);
	CHECK_EQ_INT(ival(e1, "mode"), 0644);
	json_decref(l);
	l = ws_list(m, "sub", &err);
	CHECK(l);
	CHECK_EQ_INT(json_array_size(l), 3);
	CHECK_STR(json_string_value(json_object_get(json_array_get(l, 0), "name")), "deeper");
	CHECK_STR(json_string_value(json_object_get(json_array_get(l, 1), "name")), "in.txt");
	CHECK_STR(json_string_value(json_object_get(json_array_get(l, 2), "kind")), "link");
	CHECK_STR(json_string_value(json_object_get(json_array_get(l, 2), "target")), "in.txt");
	json_decref(l);
	CHECK(!ws_list(m, "top.txt", &err));
	CHECK_EQ_INT(err.code, -ENOTDIR);
	CHECK(!ws_list(m, "nope", &err));
	CHECK_EQ_INT(err.code, -ENOENT);
	CHECK(!ws_list(m, "../etc", &err));
	CHECK_EQ_INT(err.code, -EINVAL);

	/* Reads come from the version, not from the workspace. */
	puts_(&f, "top.txt", "changed since");
	char *data;
	size_t len;
	CHECK_EQ_INT(ws_read(f.s, m, "top.txt", 3, 4, &data, &len, &err), 0);
	CHECK_EQ_INT(len, 4);
	CHECK_STR(data, "3456");
	free(data);
	CHECK_EQ_INT(ws_read(f.s, m, "top.txt", 7, 100, &data, &len, &err), 0);
	CHECK_STR(data, "789");
	free(data);
	CHECK_EQ_INT(ws_read(f.s, m, "top.txt", 50, 100, &data, &len, &err), 0);
	CHECK_EQ_INT(len, 0);
	free(data);
	CHECK_EQ_INT(ws_read(f.s, m, "sub/in.txt", 0, SIZE_MAX, &data, &len, &err), 0);
	CHECK_STR(data, "inside");
	free(data);
	CHECK_EQ_INT(ws_read(f.s, m, "sub", 0, 10, &data, &len, &err), -EISDIR);
	CHECK_EQ_INT(ws_read(f.s, m, "sub/ln", 0, 10, &data, &len, &err), -ELOOP);
	CHECK_EQ_INT(ws_read(f.s, m, "missing", 0, 10, &data, &len, &err), -ENOENT);
	CHECK_CONTAINS(err.msg, "missing");
	CHECK_EQ_INT(ws_read(f.s, m, "../x", 0, 10, &data, &len, &err), -EINVAL);
	CHECK(data == NULL);
	json_decref(m);
	teardown(&f);
}

AB_TEST(wsstore_gc_frees_unreferenced_objects_only)
{
	fixture f;
	setup(&f);
	puts_(&f, "keep", "kept content\n");
	puts_(&f, "edit", "version one\n");
	json_t *m1 = capture(&f, NULL);
	tick();
	puts_(&f, "edit", "version two, longer\n");
	json_t *m2 = capture(&f, NULL);
	uint64_t total = strlen("kept content\n") + strlen("version one\n") +
			 strlen("version two, longer\n");
	CHECK_EQ_INT(ws_store_bytes(f.s), total);
	json_t *both[] = {m1, m2};
	CHECK_EQ_INT(ws_gc(f.s, both, 2), 0);
	CHECK_EQ_INT(ws_store_bytes(f.s), total);
	/* A malformed live manifest: nothing is known, nothing deleted. */
	json_t *bad = json_pack("{s:[]}", "files");
	json_t *with_bad[] = {m2, bad};
	CHECK_EQ_INT(ws_gc(f.s, with_bad, 2), 0);
	json_decref(bad);
	CHECK_EQ_INT(ws_gc(f.s, &m2, 1), strlen("version one\n"));
	CHECK_EQ_INT(ws_store_bytes(f.s), total - strlen("version one\n"));
	/* m2 still restores; m1 is refused before anything changes. */
	wipe(&f);
	puts_(&f, "witness", "w\n");
	ab_error err = {0};
	CHECK(ws_restore(f.s, m1, f.wsfd, getuid(), getgid(), &err) < 0);
	CHECK_CONTAINS(err.msg, "edit");
	CHECK(S_ISREG(lmode(&f, "witness")));
	CHECK_EQ_INT(restore(&f, m2), 2);
	CHECK_EQ_INT(lmode(&f, "witness"), 0);
	/* The stat cache does not outlive an object it names: m1's content
	 * written again is stored again. */
	puts_(&f, "edit", "version one\n");
	uint64_t added;
	json_decref(capture(&f, &added));
	CHECK_EQ_INT(added, strlen("version one\n"));
	uint64_t held = ws_store_bytes(f.s);
	CHECK_EQ_INT(held, total);
	CHECK_EQ_INT(ws_gc(f.s, NULL, 0), held);
	CHECK_EQ_INT(ws_store_bytes(f.s), 0);
	json_decref(m1);
	json_decref(m2);
	teardown(&f);
}

AB_TEST(wsstore_hostile_names)
{
	fixture f;
	setup(&f);
	static const char *const names[] = {
	    "new\nline", "back\\slash", "quote\"d", "-rf", "caf\xc3\xa9", "...", " space ",
	    ".hidden", "tab\there", "\xe2\x80\xaegnp.exe", "emoji-\xf0\x9f\x98\x80"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		puts_(&f, names[i], names[i]);
	char longname[256];
	memset(longname, 'n', 255);
	longname[255] = '\0';
	puts_(&f, longname, "long");
	/* Not UTF-8: a manifest cannot name it; it is skipped and counted. */
	puts_(&f, "bad\xff\xfename", "bad");
	lnk(&f, "badlink", "target\xff");
	mkd(&f, "d\n", 0755);
	puts_(&f, "d\n/x", "x");
	json_t *m = capture(&f, NULL);
	CHECK_EQ_INT(ival(m, "skipped"), 2);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		CHECK(entry(m, "files", names[i]));
	CHECK(entry(m, "files", longname));
	CHECK(entry(m, "files", "d\n/x"));
	wipe(&f);
	CHECK_EQ_INT(restore(&f, m), (int)(sizeof(names) / sizeof(names[0])) + 2);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t len;
		char *got = slurp(f.ws, names[i], &len);
		CHECK_STR(got, names[i]);
		free(got);
	}
	json_t *m2 = capture(&f, NULL);
	CHECK(!json_object_get(m2, "skipped"));
	json_object_del(m, "skipped");
	CHECK(json_equal(m, m2));
	json_decref(m);
	json_decref(m2);
	teardown(&f);
}

AB_TEST(wsstore_fifo_and_socket_are_skipped_without_blocking)
{
	fixture f;
	setup(&f);
	puts_(&f, "file", "f\n");
	char p[256];
	snprintf(p, sizeof(p), "%s/fifo", f.ws);
	CHECK(mkfifo(p, 0600) == 0);
	int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sock", f.ws);
	CHECK(sfd >= 0 && bind(sfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	json_t *m = capture(&f, NULL);
	CHECK_EQ_INT(ival(m, "skipped"), 2);
	CHECK_EQ_INT(json_object_size(json_object_get(m, "files")), 1);
	/* A restore makes the tree exactly the version: they go. */
	CHECK_EQ_INT(restore(&f, m), 0);
	CHECK_EQ_INT(lmode(&f, "fifo"), 0);
	CHECK_EQ_INT(lmode(&f, "sock"), 0);
	close(sfd);
	json_decref(m);
	teardown(&f);
}

AB_TEST(wsstore_bounds_depth)
{
	fixture f;
	setup(&f);
	/* 257 nested directories: refused, not captured in part. */
	int fd = dup(f.wsfd);
	for (int i = 0; i <= WS_MAX_DEPTH; i++) {
		CHECK(mkdirat(fd, "n", 0755) == 0);
		int next = openat(fd, "n", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		CHECK(next >= 0);
		close(fd);
		fd = next;
	}
	close(fd);
	ab_error err = {0};
	uint64_t added;
	CHECK(!ws_capture(f.s, f.wsfd, &added, &err));
	CHECK_EQ_INT(err.code, -ELOOP);
	CHECK_CONTAINS(err.msg, "deeper than 256");
	/* 256 are fine. */
	wipe(&f);
	fd = dup(f.wsfd);
	for (int i = 0; i < WS_MAX_DEPTH; i++) {
		CHECK(mkdirat(fd, "n", 0755) == 0);
		int next = openat(fd, "n", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		close(fd);
		fd = next;
	}
	int leaf = openat(fd, "leaf", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	CHECK(leaf >= 0 && write(leaf, "x", 1) == 1);
	close(leaf);
	close(fd);
	json_t *m = capture(&f, NULL);
	CHECK_EQ_INT(json_object_size(json_object_get(m, "dirs")), WS_MAX_DEPTH);
	wipe(&f);
	CHECK_EQ_INT(restore(&f, m), 1);
	json_t *m2 = capture(&f, NULL);
	CHECK(json_equal(m, m2));
	json_decref(m);
	json_decref(m2);
	teardown(&f);
}

AB_TEST(wsstore_bounds_entries)
{
	/* 100,001 files: on tmpfs (as workspaces are when the daemon is
	 * root) where there is one, since ext4 takes seconds to make them. */
	fixture f;
	struct stat shm;
	setup_in(&f, stat("/dev/shm", &shm) == 0 && S_ISDIR(shm.st_mode) &&
			     access("/dev/shm", W_OK) == 0
			 ? "/dev/shm"
			 : "/tmp");
	ab_error err = {0};
	uint64_t added;
	/* More than WS_MAX_ENTRIES entries: refused. */
	for (int i = 0; i <= WS_MAX_ENTRIES; i++) {
		char name[32];
		snprintf(name, sizeof(name), "e%d", i);
		int e = openat(f.wsfd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		CHECK(e >= 0);
		close(e);
	}
	CHECK(!ws_capture(f.s, f.wsfd, &added, &err));
	CHECK_EQ_INT(err.code, -E2BIG);
	CHECK_CONTAINS(err.msg, "100000");
	teardown(&f);
}

AB_TEST(wsstore_malformed_manifests_are_refused)
{
	fixture f;
	setup(&f);
	puts_(&f, "a", "a\n");
	json_t *good = capture(&f, NULL);
	const char *sha =
	    json_string_value(json_object_get(entry(good, "files", "a"), "sha256"));
	char file_ok[200];
	snprintf(file_ok, sizeof(file_ok), "{\"sha256\": \"%s\", \"size\": 2, \"mode\": 420}", sha);
	static const char *const tmpl[] = {
	    "[]",
	    "{}",
	    "{\"files\": [], \"dirs\": {}, \"links\": {}}",
	    "{\"files\": {\"a\": 1}, \"dirs\": {}, \"links\": {}}",
	    "{\"files\": {\"a\": {\"sha256\": \"xyz\", \"size\": 2, \"mode\": 420}}, \"dirs\": {}, "
	    "\"links\": {}}",
	    "{\"files\": {\"a\": {\"sha256\": \"SHA\", \"size\": -1, \"mode\": 420}}, "
	    "\"dirs\": {}, \"links\": {}}",
	    "{\"files\": {\"a\": {\"sha256\": \"SHA\", \"size\": 2, \"mode\": 4095}}, "
	    "\"dirs\": {}, \"links\": {}}",
	    "{\"files\": {\"../a\": FILE}, \"dirs\": {}, \"links\": {}}",
	    "{\"files\": {\"/a\": FILE}, \"dirs\": {}, \"links\": {}}",
	    "{\"files\": {\"x//a\": FILE}, \"dirs\": {\"x\": {\"mode\": 493}}, \"links\": {}}",
	    "{\"files\": {\"x/./a\": FILE}, \"dirs\": {\"x\": {\"mode\": 493}}, \"links\": {}}",
	    "{\"files\": {\"nodir/a\": FILE}, \"dirs\": {}, \"links\": {}}",
	    "{\"files\": {\"a\": FILE}, \"dirs\": {\"a\": {\"mode\": 493}}, \"links\": {}}",
	    "{\"files\": {}, \"dirs\": {\"d\": {}}, \"links\": {}}",
	    "{\"files\": {}, \"dirs\": {}, \"links\": {\"l\": {\"target\": \"\"}}}",
	    "{\"files\": {}, \"dirs\": {}, \"links\": {\"l\": {\"target\": 5}}}",
	    "{\"files\": {}, \"dirs\": {}, \"links\": {}, \"skipped\": \"many\"}",
	    "{\"files\": {\"a\": FILE}, \"dirs\": {}, \"links\": {\"a\": {\"target\": \"b\"}}}",
	};
	for (size_t i = 0; i < sizeof(tmpl) / sizeof(tmpl[0]); i++) {
		/* FILE stands for a valid file entry, SHA for a stored content. */
		char text[1024], tmp[1024];
		snprintf(tmp, sizeof(tmp), "%s", tmpl[i]);
		char *at = strstr(tmp, "SHA");
		if (at)
			snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - tmp), tmp, sha, at + 3);
		else
			snprintf(text, sizeof(text), "%s", tmp);
		snprintf(tmp, sizeof(tmp), "%s", text);
		at = strstr(tmp, "FILE");
		if (at)
			snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - tmp), tmp, file_ok,
				 at + 4);
		json_error_t jerr;
		json_t *m = json_loads(text, 0, &jerr);
		if (!m)
			fprintf(stderr, "case %zu does not parse: %s\n%s\n", i, jerr.text, text);
		CHECK(m);
		ab_error err = {0};
		char *data = NULL;
		size_t len;
		CHECK(!ws_list(m, "", &err));
		CHECK(err.code < 0);
		CHECK(!ws_diff(m, good) && !ws_diff(good, m));
		err = (ab_error){0};
		/* "a" may be well-formed in a manifest broken elsewhere: only
		 * the entry read is checked. */
		if (ws_read(f.s, m, "a", 0, 10, &data, &len, &err) == 0)
			free(data);
		else
			CHECK(data == NULL && err.code < 0);
		err = (ab_error){0};
		if (ws_restore(f.s, m, f.wsfd, getuid(), getgid(), &err) >= 0) {
			fprintf(stderr, "case %zu restored: %s\n", i, text);
			CHECK(0);
		}
		CHECK_CONTAINS(err.msg, "manifest");
		CHECK_EQ_INT(ws_gc(f.s, &m, 1), 0);
		json_decref(m);
	}
	CHECK(!ws_list(NULL, "", NULL));
	CHECK(!ws_diff(NULL, NULL));
	char *data;
	size_t len;
	CHECK(ws_read(f.s, NULL, "a", 0, 1, &data, &len, NULL) < 0);
	/* Nothing was touched, nothing collected. */
	size_t n;
	char *got = slurp(f.ws, "a", &n);
	CHECK_STR(got, "a\n");
	free(got);
	CHECK_EQ_INT(ws_store_bytes(f.s), 2);
	json_decref(good);
	teardown(&f);
}

/* As root, a restore makes everything with the sandbox's credentials: the
 * files it writes belong to the sandbox's uid. */
AB_TEST(wsstore_restore_writes_with_the_sandbox_credentials)
{
	if (geteuid() != 0)
		SKIP("needs root (setfsuid)");
	fixture f;
	setup(&f);
	puts_(&f, "a", "a\n");
	mkd(&f, "d", 0755);
	puts_(&f, "d/b", "b\n");
	lnk(&f, "l", "a");
	json_t *m = capture(&f, NULL);
	wipe(&f);
	CHECK(fchown(f.wsfd, 4242, 4242) == 0);
	D.privileged = true;
	ab_error err = {0};
	CHECK_EQ_INT(ws_restore(f.s, m, f.wsfd, 4242, 4242, &err), 2);
	static const char *const paths[] = {"a", "d", "d/b", "l"};
	for (size_t i = 0; i < 4; i++) {
		char p[256];
		struct stat st;
		snprintf(p, sizeof(p), "%s/%s", f.ws, paths[i]);
		CHECK(lstat(p, &st) == 0);
		CHECK_EQ_INT(st.st_uid, 4242);
		CHECK_EQ_INT(st.st_gid, 4242);
	}
	/* A workspace the sandbox's user cannot write is not written with
	 * the daemon's privilege. */
	wipe(&f);
	CHECK(fchown(f.wsfd, 0, 0) == 0);
	CHECK(fchmod(f.wsfd, 0755) == 0);
	CHECK(ws_restore(f.s, m, f.wsfd, 4242, 4242, &err) < 0);
	D.privileged = false;
	json_decref(m);
	teardown(&f);
}

AB_TEST(wsstore_store_is_private_and_reopened)
{
	fixture f;
	setup(&f);
	struct stat st;
	CHECK(stat(f.store, &st) == 0);
	CHECK_EQ_INT(st.st_mode & 0777, 0700);
	puts_(&f, "a", "some content\n");
	json_t *m = capture(&f, NULL);
	/* A second store on the same directory sees what is held. */
	ab_error err = {0};
	ws_store *again = ws_store_new(f.store, &err);
	CHECK(again);
	CHECK_EQ_INT(ws_store_bytes(again), strlen("some content\n"));
	char *data;
	size_t len;
	CHECK_EQ_INT(ws_read(again, m, "a", 0, 100, &data, &len, &err), 0);
	CHECK_STR(data, "some content\n");
	free(data);
	json_decref(m);
	/* (Freeing it would remove the directory under the first store.) */
	teardown(&f);
	char other[96];
	snprintf(other, sizeof(other), "%s-open", f.base);
	CHECK(mkdir(other, 0777) == 0);
	CHECK(chmod(other, 0777) == 0);
	CHECK(!ws_store_new(other, &err));
	CHECK_CONTAINS(err.msg, "private");
	rmdir(other);
}

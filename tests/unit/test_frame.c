/* test_frame.c - the executor protocol's frame codec (src/lib/frame.c):
 * blocking write/read round trips, what ab_frame_read refuses from an
 * untrusted peer, and the incremental decoder fed in awkward pieces. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frame.h"
#include "internal.h"
#include "unit.h"

static void make_socketpair(int sv[2])
{
	CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

/* Writes raw bytes to fd in full (the test's own peer, not the codec). */
static void put(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		CHECK(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

static void put_header(int fd, uint32_t len)
{
	uint32_t be = htonl(len);
	put(fd, &be, 4);
}

/* Builds header + body in buf (which must hold 4 + strlen(body)). */
static size_t raw_frame(char *buf, const char *body)
{
	size_t len = strlen(body);
	uint32_t be = htonl((uint32_t)len);
	memcpy(buf, &be, 4);
	memcpy(buf + 4, body, len);
	return len + 4;
}

/* Writes obj from a forked child (so that a large frame cannot fill the
 * socket buffer and deadlock) and reads it back. */
static json_t *round_trip(const json_t *obj)
{
	int sv[2];
	make_socketpair(sv);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		ab_error err = {0};
		_exit(ab_frame_write(sv[1], obj, &err) == 0 ? 0 : 1);
	}
	close(sv[1]);
	ab_error err = {0};
	json_t *out = NULL;
	int r = ab_frame_read(sv[0], AB_FRAME_MAX_DEFAULT, &out, &err);
	if (r != 0)
		fprintf(stderr, "ab_frame_read: %d %s\n", r, err.msg);
	CHECK_EQ_INT(r, 0);
	CHECK(out != NULL);
	int st;
	CHECK_EQ_INT(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* After the one frame, the stream ends cleanly. */
	json_t *more = NULL;
	CHECK_EQ_INT(ab_frame_read(sv[0], AB_FRAME_MAX_DEFAULT, &more, &err), -EPIPE);
	CHECK(more == NULL);
	close(sv[0]);
	return out;
}

AB_TEST(frame_round_trip_simple_object)
{
	json_t *obj = json_pack("{s:s, s:i, s:b, s:n, s:[i,i], s:f}", "op", "run", "n", 42, "ok", 1,
				"nothing", "list", 1, 2, "x", 1.5);
	json_t *out = round_trip(obj);
	CHECK(json_equal(obj, out));
	CHECK_STR(json_string_value(json_object_get(out, "op")), "run");
	CHECK_EQ_INT(json_integer_value(json_object_get(out, "n")), 42);
	json_decref(obj);
	json_decref(out);
}

AB_TEST(frame_round_trip_unicode)
{
	/* 2-, 3- and 4-byte sequences; the writer escapes them as ASCII. */
	const char *text = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe4\xb8\xad";
	json_t *obj = json_pack("{s:s}", "t", text);
	json_t *out = round_trip(obj);
	CHECK_STR(json_string_value(json_object_get(out, "t")), text);
	json_decref(obj);
	json_decref(out);
}

AB_TEST(frame_write_is_ascii_and_big_endian)
{
	int sv[2];
	make_socketpair(sv);
	json_t *obj = json_pack("{s:s}", "t", "\xc3\xa9");
	ab_error err = {0};
	CHECK_EQ_INT(ab_frame_write(sv[1], obj, &err), 0);
	char buf[64];
	ssize_t n = read(sv[0], buf, sizeof(buf));
	/* {"t":"\u00e9"} is 14 bytes. */
	CHECK_EQ_INT(n, 4 + 14);
	CHECK(memcmp(buf, "\0\0\0\x0e", 4) == 0);
	buf[n] = '\0';
	CHECK_STR(buf + 4, "{\"t\":\"\\u00E9\"}");
	json_decref(obj);
	close(sv[0]);
	close(sv[1]);
}

/* Program output can hold NUL bytes (see ab__utf8_chunk); a frame carrying
 * such a string must survive the trip. */
AB_TEST(frame_round_trip_nul_in_string)
{
	json_t *obj = json_object();
	json_object_set_new(obj, "data", json_stringn("a\0b", 3));
	json_t *out = round_trip(obj);
	json_t *s = json_object_get(out, "data");
	CHECK(json_is_string(s));
	CHECK_EQ_INT(json_string_length(s), 3);
	CHECK(memcmp(json_string_value(s), "a\0b", 3) == 0);
	json_decref(obj);
	json_decref(out);
}

AB_TEST(frame_round_trip_one_megabyte_string)
{
	size_t n = 1u << 20;
	char *big = malloc(n);
	CHECK(big != NULL);
	for (size_t i = 0; i < n; i++)
		big[i] = (char)('a' + i % 26);
	json_t *obj = json_object();
	json_object_set_new(obj, "big", json_stringn(big, n));
	json_t *out = round_trip(obj);
	json_t *s = json_object_get(out, "big");
	CHECK_EQ_INT(json_string_length(s), n);
	CHECK(memcmp(json_string_value(s), big, n) == 0);
	json_decref(obj);
	json_decref(out);
	free(big);
}

AB_TEST(frame_write_to_closed_peer_fails)
{
	signal(SIGPIPE, SIG_IGN);
	int sv[2];
	make_socketpair(sv);
	close(sv[0]);
	json_t *obj = json_pack("{s:i}", "a", 1);
	ab_error err = {0};
	CHECK_EQ_INT(ab_frame_write(sv[1], obj, &err), -EPIPE);
	CHECK_CONTAINS(err.msg, "write frame");
	json_decref(obj);
	close(sv[1]);
}

AB_TEST(frame_read_clean_eof_is_epipe)
{
	int sv[2];
	make_socketpair(sv);
	close(sv[1]);
	ab_error err = {0};
	json_t *out = NULL;
	CHECK_EQ_INT(ab_frame_read(sv[0], 1024, &out, &err), -EPIPE);
	CHECK_EQ_INT(err.code, -EPIPE);
	CHECK_CONTAINS(err.msg, "end of stream");
	CHECK(out == NULL);
	close(sv[0]);
}

AB_TEST(frame_read_eof_mid_header)
{
	int sv[2];
	make_socketpair(sv);
	put(sv[1], "\0\0", 2);
	close(sv[1]);
	ab_error err = {0};
	json_t *out = NULL;
	int r = ab_frame_read(sv[0], 1024, &out, &err);
	CHECK(r < 0);
	CHECK_CONTAINS(err.msg, "header");
	CHECK(out == NULL);
	close(sv[0]);
}

AB_TEST(frame_read_eof_mid_body)
{
	int sv[2];
	make_socketpair(sv);
	put_header(sv[1], 10);
	put(sv[1], "{\"a\":", 5);
	close(sv[1]);
	ab_error err = {0};
	json_t *out = NULL;
	int r = ab_frame_read(sv[0], 1024, &out, &err);
	CHECK_EQ_INT(r, -EPIPE);
	CHECK_CONTAINS(err.msg, "body");
	CHECK(out == NULL);
	close(sv[0]);
}

/* A hostile length is refused from the header alone: with nothing else
 * written, a read of the body would block (and time the test out). */
AB_TEST(frame_read_oversized_length_refused_before_body)
{
	int sv[2];
	make_socketpair(sv);
	put_header(sv[1], 0xffffffffu);
	ab_error err = {0};
	json_t *out = NULL;
	CHECK_EQ_INT(ab_frame_read(sv[0], 1024, &out, &err), -EMSGSIZE);
	CHECK_CONTAINS(err.msg, "4294967295");
	CHECK_CONTAINS(err.msg, "1024");
	CHECK(out == NULL);
	/* Exactly the cap is fine; one more is not. */
	put_header(sv[1], 1025);
	CHECK_EQ_INT(ab_frame_read(sv[0], 1024, &out, &err), -EMSGSIZE);
	close(sv[0]);
	close(sv[1]);
}

AB_TEST(frame_read_length_at_cap_accepted)
{
	int sv[2];
	make_socketpair(sv);
	char body[32];
	/* {"k":"xxxxxxxx"} is 16 bytes exactly. */
	snprintf(body, sizeof(body), "{\"k\":\"%s\"}", "xxxxxxxx");
	CHECK_EQ_INT(strlen(body), 16);
	put_header(sv[1], 16);
	put(sv[1], body, 16);
	ab_error err = {0};
	json_t *out = NULL;
	CHECK_EQ_INT(ab_frame_read(sv[0], 16, &out, &err), 0);
	CHECK_STR(json_string_value(json_object_get(out, "k")), "xxxxxxxx");
	json_decref(out);
	close(sv[0]);
	close(sv[1]);
}

static int read_body(const char *body, size_t len, json_t **out, ab_error *err)
{
	int sv[2];
	make_socketpair(sv);
	/* A writer child, so that a body larger than the socket buffer
	 * cannot block the test. */
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		put_header(sv[1], (uint32_t)len);
		put(sv[1], body, len);
		_exit(0);
	}
	close(sv[1]);
	int r = ab_frame_read(sv[0], 1 << 20, out, err);
	close(sv[0]);
	int st;
	CHECK_EQ_INT(waitpid(pid, &st, 0), pid);
	return r;
}

AB_TEST(frame_read_not_json_is_eproto)
{
	ab_error err = {0};
	json_t *out = NULL;
	CHECK_EQ_INT(read_body("hello", 5, &out, &err), -EPROTO);
	CHECK_CONTAINS(err.msg, "not valid JSON");
	CHECK(out == NULL);
	/* A truncated object inside a complete frame. */
	CHECK_EQ_INT(read_body("{\"a\":1", 6, &out, &err), -EPROTO);
	CHECK_CONTAINS(err.msg, "not valid JSON");
	/* An empty body. */
	CHECK_EQ_INT(read_body("", 0, &out, &err), -EPROTO);
	/* Trailing bytes after the object. */
	CHECK_EQ_INT(read_body("{\"a\":1}x", 8, &out, &err), -EPROTO);
	/* Invalid UTF-8 inside a string. */
	CHECK_EQ_INT(read_body("{\"a\":\"\xff\"}", 9, &out, &err), -EPROTO);
	CHECK(out == NULL);
}

AB_TEST(frame_read_non_object_refused)
{
	ab_error err = {0};
	json_t *out = NULL;
	CHECK_EQ_INT(read_body("[1,2,3]", 7, &out, &err), -EPROTO);
	CHECK_CONTAINS(err.msg, "not a JSON object");
	CHECK(out == NULL);
	/* Scalars are refused by the parser itself (no JSON_DECODE_ANY). */
	static const char *const bodies[] = {"42", "\"str\"", "null", "true"};
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		memset(&err, 0, sizeof(err));
		CHECK_EQ_INT(read_body(bodies[i], strlen(bodies[i]), &out, &err), -EPROTO);
		CHECK_CONTAINS(err.msg, "JSON");
		CHECK(out == NULL);
	}
}

AB_TEST(frame_read_duplicate_keys_refused)
{
	ab_error err = {0};
	json_t *out = NULL;
	const char *body = "{\"op\":\"ping\",\"op\":\"exec\"}";
	CHECK_EQ_INT(read_body(body, strlen(body), &out, &err), -EPROTO);
	CHECK_CONTAINS(err.msg, "duplicate");
	CHECK(out == NULL);
}

AB_TEST(frame_read_deep_nesting_no_crash)
{
	/* {"a":[[[[...]]]]} with 2000 levels of arrays, and 100000 levels. */
	static const size_t depths[] = {2000, 100000};
	for (size_t k = 0; k < 2; k++) {
		size_t d = depths[k];
		size_t len = 5 + 2 * d + 1;
		char *body = malloc(len + 1);
		CHECK(body != NULL);
		memcpy(body, "{\"a\":", 5);
		memset(body + 5, '[', d);
		memset(body + 5 + d, ']', d);
		body[5 + 2 * d] = '}';
		body[len] = '\0';
		ab_error err = {0};
		json_t *out = NULL;
		int r = read_body(body, len, &out, &err);
		if (d > 2048) {
			/* Beyond jansson's parser depth: refused, not a stack overflow. */
			CHECK_EQ_INT(r, -EPROTO);
			CHECK(out == NULL);
		} else if (r == 0) {
			CHECK(json_is_array(json_object_get(out, "a")));
			json_decref(out);
		} else {
			CHECK_EQ_INT(r, -EPROTO);
		}
		free(body);
	}
}

/* ------------------------------------------------------------- decoder */

AB_TEST(frame_decoder_one_byte_at_a_time)
{
	char stream[256];
	size_t n = raw_frame(stream, "{\"a\":1}");
	n += raw_frame(stream + n, "{\"b\":\"\\u00e9\"}");
	ab_frame_decoder *d = ab_frame_decoder_new(1024);
	CHECK(d != NULL);
	ab_error err = {0};
	int got = 0;
	size_t first_end = 4 + 7;
	for (size_t i = 0; i < n; i++) {
		CHECK_EQ_INT(ab_frame_decoder_feed(d, stream + i, 1, &err), 0);
		json_t *f = NULL;
		int r = ab_frame_decoder_next(d, &f, &err);
		if (i + 1 == first_end) {
			CHECK_EQ_INT(r, 1);
			CHECK_EQ_INT(json_integer_value(json_object_get(f, "a")), 1);
			json_decref(f);
			got++;
		} else if (i + 1 == n) {
			CHECK_EQ_INT(r, 1);
			CHECK_STR(json_string_value(json_object_get(f, "b")), "\xc3\xa9");
			json_decref(f);
			got++;
		} else {
			CHECK_EQ_INT(r, 0);
			CHECK(f == NULL);
		}
	}
	CHECK_EQ_INT(got, 2);
	json_t *f = NULL;
	CHECK_EQ_INT(ab_frame_decoder_next(d, &f, &err), 0);
	ab_frame_decoder_free(d);
}

/* Splits a two-frame stream into two feeds at every possible point. */
AB_TEST(frame_decoder_every_split_point)
{
	char stream[256];
	size_t n = raw_frame(stream, "{\"x\":[1,2,3]}");
	n += raw_frame(stream + n, "{\"y\":\"z\"}");
	for (size_t cut = 0; cut <= n; cut++) {
		ab_frame_decoder *d = ab_frame_decoder_new(64);
		ab_error err = {0};
		CHECK_EQ_INT(ab_frame_decoder_feed(d, stream, cut, &err), 0);
		CHECK_EQ_INT(ab_frame_decoder_feed(d, stream + cut, n - cut, &err), 0);
		json_t *a = NULL, *b = NULL, *c = NULL;
		CHECK_EQ_INT(ab_frame_decoder_next(d, &a, &err), 1);
		CHECK_EQ_INT(ab_frame_decoder_next(d, &b, &err), 1);
		CHECK_EQ_INT(ab_frame_decoder_next(d, &c, &err), 0);
		CHECK_EQ_INT(json_array_size(json_object_get(a, "x")), 3);
		CHECK_STR(json_string_value(json_object_get(b, "y")), "z");
		json_decref(a);
		json_decref(b);
		ab_frame_decoder_free(d);
	}
}

AB_TEST(frame_decoder_several_frames_in_one_feed)
{
	char stream[1024];
	size_t n = 0;
	for (int i = 0; i < 10; i++) {
		char body[32];
		snprintf(body, sizeof(body), "{\"i\":%d}", i);
		n += raw_frame(stream + n, body);
	}
	ab_frame_decoder *d = ab_frame_decoder_new(1024);
	ab_error err = {0};
	CHECK_EQ_INT(ab_frame_decoder_feed(d, stream, n, &err), 0);
	for (int i = 0; i < 10; i++) {
		json_t *f = NULL;
		CHECK_EQ_INT(ab_frame_decoder_next(d, &f, &err), 1);
		CHECK_EQ_INT(json_integer_value(json_object_get(f, "i")), i);
		json_decref(f);
	}
	json_t *f = NULL;
	CHECK_EQ_INT(ab_frame_decoder_next(d, &f, &err), 0);
	/* The decoder is reusable after being drained. */
	n = raw_frame(stream, "{\"again\":true}");
	CHECK_EQ_INT(ab_frame_decoder_feed(d, stream, n, &err), 0);
	CHECK_EQ_INT(ab_frame_decoder_next(d, &f, &err), 1);
	CHECK(json_is_true(json_object_get(f, "again")));
	json_decref(f);
	ab_frame_decoder_free(d);
}

AB_TEST(frame_decoder_oversized_length_breaks_stream)
{
	ab_frame_decoder *d = ab_frame_decoder_new(1024);
	ab_error err = {0};
	uint32_t be = htonl(0xffffffffu);
	/* Three header bytes: not yet decidable. */
	CHECK_EQ_INT(ab_frame_decoder_feed(d, &be, 3, &err), 0);
	CHECK_EQ_INT(ab_frame_decoder_feed(d, (char *)&be + 3, 1, &err), -EMSGSIZE);
	CHECK_CONTAINS(err.msg, "4294967295");
	/* Broken for good: a valid frame afterwards is not accepted. */
	char stream[64];
	size_t n = raw_frame(stream, "{\"a\":1}");
	memset(&err, 0, sizeof(err));
	CHECK(ab_frame_decoder_feed(d, stream, n, &err) < 0);
	CHECK_CONTAINS(err.msg, "corrupt");
	json_t *f = NULL;
	CHECK(ab_frame_decoder_next(d, &f, &err) < 0);
	CHECK(f == NULL);
	ab_frame_decoder_free(d);
}

AB_TEST(frame_decoder_length_one_over_cap)
{
	ab_frame_decoder *d = ab_frame_decoder_new(16);
	ab_error err = {0};
	uint32_t be = htonl(17);
	CHECK_EQ_INT(ab_frame_decoder_feed(d, &be, 4, &err), -EMSGSIZE);
	ab_frame_decoder_free(d);
	d = ab_frame_decoder_new(16);
	be = htonl(16);
	CHECK_EQ_INT(ab_frame_decoder_feed(d, &be, 4, &err), 0);
	CHECK_EQ_INT(ab_frame_decoder_feed(d, "{\"k\":\"xxxxxxxx\"}", 16, &err), 0);
	json_t *f = NULL;
	CHECK_EQ_INT(ab_frame_decoder_next(d, &f, &err), 1);
	json_decref(f);
	ab_frame_decoder_free(d);
}

AB_TEST(frame_decoder_garbage_after_corrupt_frame)
{
	char stream[256];
	size_t n = raw_frame(stream, "not json");
	n += raw_frame(stream + n, "{\"ok\":1}");
	ab_frame_decoder *d = ab_frame_decoder_new(1024);
	ab_error err = {0};
	CHECK_EQ_INT(ab_frame_decoder_feed(d, stream, n, &err), 0);
	json_t *f = NULL;
	CHECK_EQ_INT(ab_frame_decoder_next(d, &f, &err), -EPROTO);
	CHECK_CONTAINS(err.msg, "not valid JSON");
	CHECK(f == NULL);
	/* The valid frame queued behind the corrupt one is not delivered. */
	CHECK(ab_frame_decoder_next(d, &f, &err) < 0);
	CHECK(f == NULL);
	CHECK(ab_frame_decoder_feed(d, "garbage", 7, &err) < 0);
	CHECK_CONTAINS(err.msg, "corrupt");
	ab_frame_decoder_free(d);
}

AB_TEST(frame_decoder_non_object_breaks_stream)
{
	char stream[64];
	size_t n = raw_frame(stream, "[1]");
	ab_frame_decoder *d = ab_frame_decoder_new(1024);
	ab_error err = {0};
	CHECK_EQ_INT(ab_frame_decoder_feed(d, stream, n, &err), 0);
	json_t *f = NULL;
	CHECK_EQ_INT(ab_frame_decoder_next(d, &f, &err), -EPROTO);
	CHECK_CONTAINS(err.msg, "not a JSON object");
	CHECK(f == NULL);
	n = raw_frame(stream, "{\"a\":1}");
	CHECK(ab_frame_decoder_feed(d, stream, n, &err) < 0);
	ab_frame_decoder_free(d);
}

/* A peer that sends many small frames without the reader popping them
 * cannot grow the buffer without bound. */
AB_TEST(frame_decoder_buffer_is_bounded)
{
	ab_frame_decoder *d = ab_frame_decoder_new(64);
	ab_error err = {0};
	char stream[16];
	size_t n = raw_frame(stream, "{}");
	int r = 0;
	size_t fed = 0;
	while (fed < (1u << 20) && (r = ab_frame_decoder_feed(d, stream, n, &err)) == 0)
		fed += n;
	CHECK_EQ_INT(r, -EMSGSIZE);
	CHECK(fed <= 64 + 4 + 4096 * 16);
	ab_frame_decoder_free(d);
}

/* A result frame may carry the run's output limit twice over (escaping)
 * plus a fixed base, never more than the global cap. */
AB_TEST(frame_max_follows_the_output_limit)
{
	CHECK(ab_frame_max_for_output(0) == AB_FRAME_RESULT_BASE);
	CHECK(ab_frame_max_for_output(1u << 20) == AB_FRAME_RESULT_BASE + (2u << 20));
	CHECK(ab_frame_max_for_output(1ull << 30) == AB_FRAME_MAX_DEFAULT);
	CHECK(ab_frame_max_for_output(UINT64_MAX) == AB_FRAME_MAX_DEFAULT);
	CHECK(ab_frame_max_for_output(1u << 20) < AB_FRAME_MAX_DEFAULT);
}

/* The cap of the decoder is the session's, not the global 64 MiB: a header
 * announcing 64 MiB to a session with the default output limit is refused
 * at once, before any body byte is buffered. */
AB_TEST(frame_decoder_cap_follows_the_session)
{
	ab_frame_decoder *d = ab_frame_decoder_new(AB_FRAME_IDLE_MAX);
	ab_error err = {0};
	ab_frame_decoder_set_max(d, ab_frame_max_for_output(1u << 20));
	uint32_t be = htonl(AB_FRAME_MAX_DEFAULT);
	CHECK_EQ_INT(ab_frame_decoder_feed(d, &be, 4, &err), -EMSGSIZE);
	CHECK_CONTAINS(err.msg, "exceeds the cap");
	ab_frame_decoder_free(d);

	/* Lowered again between runs: a big frame left over is refused. */
	d = ab_frame_decoder_new(1u << 20);
	be = htonl(100000);
	CHECK_EQ_INT(ab_frame_decoder_feed(d, &be, 4, &err), 0);
	ab_frame_decoder_set_max(d, AB_FRAME_IDLE_MAX);
	CHECK_EQ_INT(ab_frame_decoder_feed(d, "x", 1, &err), -EMSGSIZE);
	ab_frame_decoder_free(d);
}

/* Memory follows the bytes that arrived, not the length a header claims,
 * and a large buffer is given back once its frame is consumed. */
AB_TEST(frame_decoder_memory_follows_the_bytes)
{
	size_t max = 8u << 20;
	ab_frame_decoder *d = ab_frame_decoder_new(max);
	ab_error err = {0};
	uint32_t be = htonl((uint32_t)(max - 4));
	CHECK_EQ_INT(ab_frame_decoder_feed(d, &be, 4, &err), 0);
	CHECK(ab_frame_decoder_footprint(d) <= 16384);
	static char body[1u << 20];
	memset(body, ' ', sizeof(body));
	body[0] = '{';
	size_t fed = 0;
	while (fed + sizeof(body) <= max - 4 - 1) {
		CHECK_EQ_INT(ab_frame_decoder_feed(d, fed ? body + 1 : body,
						   sizeof(body) - (fed ? 1 : 0), &err),
			     0);
		fed += sizeof(body) - (fed ? 1 : 0);
		CHECK(ab_frame_decoder_footprint(d) <= 2 * (fed + 4) + 65536);
	}
	CHECK(ab_frame_decoder_footprint(d) <= max + 4 + 65536 + 4096);
	/* Complete the frame: "   ...}" padded to the announced length. */
	size_t rest = max - 4 - fed;
	char *tail = malloc(rest);
	CHECK(tail != NULL);
	memset(tail, ' ', rest);
	tail[rest - 1] = '}';
	CHECK_EQ_INT(ab_frame_decoder_feed(d, tail, rest, &err), 0);
	free(tail);
	json_t *f = NULL;
	CHECK_EQ_INT(ab_frame_decoder_next(d, &f, &err), 1);
	json_decref(f);
	CHECK_EQ_INT(ab_frame_decoder_footprint(d), 0);
	/* Small frames afterwards still work. */
	char stream[32];
	size_t n = raw_frame(stream, "{\"a\":1}");
	CHECK_EQ_INT(ab_frame_decoder_feed(d, stream, n, &err), 0);
	CHECK_EQ_INT(ab_frame_decoder_next(d, &f, &err), 1);
	json_decref(f);
	ab_frame_decoder_free(d);
}

static size_t frame_of_zeros(char *buf, size_t n, bool in_string)
{
	size_t len = 4;
	len += (size_t)sprintf(buf + len, in_string ? "{\"a\":\"" : "{\"a\":[");
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(buf + len, i ? ",0" : "0");
	len += (size_t)sprintf(buf + len, in_string ? "\\\"]\"}" : "]}");
	uint32_t be = htonl((uint32_t)(len - 4));
	memcpy(buf, &be, 4);
	return len;
}

/* Parsing costs memory per JSON value, so the count of values is capped
 * before parsing; separators inside strings are text, not values. */
AB_TEST(frame_decoder_caps_the_number_of_values)
{
	static char buf[4 * 80000];
	ab_error err = {0};
	json_t *f = NULL;
	ab_frame_decoder *d = ab_frame_decoder_new(sizeof(buf));
	size_t n = frame_of_zeros(buf, AB_FRAME_MAX_VALUES - 2, false);
	CHECK_EQ_INT(ab_frame_decoder_feed(d, buf, n, &err), 0);
	CHECK_EQ_INT(ab_frame_decoder_next(d, &f, &err), 1);
	CHECK(json_array_size(json_object_get(f, "a")) == AB_FRAME_MAX_VALUES - 2);
	json_decref(f);
	n = frame_of_zeros(buf, 70000, true);
	CHECK_EQ_INT(ab_frame_decoder_feed(d, buf, n, &err), 0);
	CHECK_EQ_INT(ab_frame_decoder_next(d, &f, &err), 1);
	json_decref(f);
	n = frame_of_zeros(buf, AB_FRAME_MAX_VALUES, false);
	CHECK_EQ_INT(ab_frame_decoder_feed(d, buf, n, &err), 0);
	f = NULL;
	CHECK_EQ_INT(ab_frame_decoder_next(d, &f, &err), -EPROTO);
	CHECK_CONTAINS(err.msg, "more than 65536 JSON values");
	CHECK(f == NULL);
	ab_frame_decoder_free(d);
}

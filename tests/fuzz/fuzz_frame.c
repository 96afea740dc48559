/* fuzz_frame.c - the executor frame codec (src/lib/frame.c).
 *
 * Input: byte 0 picks the decoder's cap, byte 1 seeds the split sizes,
 * the rest is the byte stream a hostile executor sends. The stream is fed
 * to ab_frame_decoder in chunks of arbitrary sizes, popping frames between
 * feeds as the daemon does, and read again with the blocking
 * ab_frame_read from a memfd. Invariants:
 *  - every frame the decoder returns is the JSON object a reference parse
 *    of the same stream position gives (nothing skipped, nothing merged),
 *    and no frame is longer than the cap;
 *  - a decoded frame re-encodes (ab_frame_encode) and decodes to an equal
 *    object;
 *  - once the decoder reports an error it stays broken;
 *  - ab_frame_read returns the same frames as the decoder. */
#include <arpa/inet.h>
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "frame.h"
#include "internal.h"
#include "fuzz.h"

static const size_t caps[] = {0, 2, 16, 1024, 65536, AB_FRAME_MAX_DEFAULT};

#define MAX_FRAMES 4096

/* The frame at stream offset *off by the protocol's definition: a 4-byte
 * big-endian length and that many bytes. NULL if it is incomplete. */
static json_t *reference_frame(const uint8_t *s, size_t n, size_t *off, size_t *flen)
{
	if (n - *off < 4)
		return NULL;
	uint32_t be;
	memcpy(&be, s + *off, 4);
	size_t len = ntohl(be);
	if (n - *off - 4 < len)
		return NULL;
	json_t *j = json_loadb((const char *)s + *off + 4, len,
			       JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
	*off += 4 + len;
	*flen = len;
	return j;
}

static void check_reencodes(const json_t *obj)
{
	char *buf = NULL;
	size_t len = 0;
	ab_error err = {0};
	int r = ab_frame_encode(obj, &buf, &len, &err);
	FUZZ_CHECK(r == 0);
	FUZZ_CHECK(len >= 4);
	uint32_t be;
	memcpy(&be, buf, 4);
	FUZZ_CHECK(ntohl(be) == len - 4);
	ab_frame_decoder *d = ab_frame_decoder_new(AB_FRAME_MAX_DEFAULT);
	FUZZ_CHECK(d);
	FUZZ_CHECK(ab_frame_decoder_feed(d, buf, len, &err) == 0);
	json_t *back = NULL;
	FUZZ_CHECK(ab_frame_decoder_next(d, &back, &err) == 1);
	FUZZ_CHECK(json_equal(obj, back));
	json_t *none = NULL;
	FUZZ_CHECK(ab_frame_decoder_next(d, &none, &err) == 0);
	json_decref(back);
	ab_frame_decoder_free(d);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t max = caps[data[0] % (sizeof(caps) / sizeof(caps[0]))];
	uint32_t seed = data[1] * 0x01010101u;
	const uint8_t *s = data + 2;
	size_t n = size - 2;

	json_t *frames[MAX_FRAMES];
	size_t nframes = 0;
	ab_frame_decoder *d = ab_frame_decoder_new(max);
	FUZZ_CHECK(d);
	size_t pos = 0, ref = 0;
	bool broken = false;
	while (pos < n && !broken) {
		/* Mostly small chunks, sometimes everything that is left. */
		uint32_t x = fuzz_next(&seed);
		size_t chunk = (x & 7) == 0 ? n - pos : 1 + (x >> 3) % 64;
		if (chunk > n - pos)
			chunk = n - pos;
		ab_error err = {0};
		int r = ab_frame_decoder_feed(d, s + pos, chunk, &err);
		pos += chunk;
		if (r < 0) {
			FUZZ_CHECK(err.code == r && err.msg[0]);
			broken = true;
			break;
		}
		for (;;) {
			json_t *obj = NULL;
			r = ab_frame_decoder_next(d, &obj, &err);
			if (r == 0)
				break;
			if (r < 0) {
				FUZZ_CHECK(err.code == r && err.msg[0]);
				broken = true;
				break;
			}
			FUZZ_CHECK(r == 1 && json_is_object(obj));
			size_t flen = 0;
			json_t *want = reference_frame(s, n, &ref, &flen);
			FUZZ_CHECK(want && json_equal(want, obj));
			FUZZ_CHECK(flen <= max);
			json_decref(want);
			check_reencodes(obj);
			if (nframes < MAX_FRAMES)
				frames[nframes++] = obj;
			else
				json_decref(obj);
		}
	}
	if (broken) {
		/* A corrupt stream stays corrupt. */
		ab_error err = {0};
		json_t *obj = NULL;
		FUZZ_CHECK(ab_frame_decoder_next(d, &obj, &err) < 0);
		FUZZ_CHECK(ab_frame_decoder_feed(d, "x", 1, &err) < 0);
	}
	ab_frame_decoder_free(d);

	/* The blocking reader sees the same frames, in order. Its cap is
	 * lowered to what the stream holds (no longer frame can be complete),
	 * which spares it allocating for lengths it will never fill. */
	size_t rmax = max < n ? max : n;
	int fd = memfd_create("frames", MFD_CLOEXEC);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(write(fd, s, n) == (ssize_t)n);
	FUZZ_CHECK(lseek(fd, 0, SEEK_SET) == 0);
	for (size_t i = 0;; i++) {
		json_t *obj = NULL;
		ab_error err = {0};
		int r = ab_frame_read(fd, rmax, &obj, &err);
		if (r < 0) {
			FUZZ_CHECK(err.code == r && err.msg[0]);
			/* The decoder cannot have produced more frames, unless it
			 * stopped early because its buffer cap was reached. */
			FUZZ_CHECK(i >= nframes || i == MAX_FRAMES);
			break;
		}
		FUZZ_CHECK(json_is_object(obj));
		if (i < nframes)
			FUZZ_CHECK(json_equal(obj, frames[i]));
		json_decref(obj);
	}
	close(fd);
	for (size_t i = 0; i < nframes; i++)
		json_decref(frames[i]);
	return 0;
}

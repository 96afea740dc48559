/* frame.c - the executor protocol's framing: a 4-byte big-endian length,
 * then one JSON object. The supervisor uses the incremental decoder on a
 * non-blocking socket; the executor uses the blocking read/write pair.
 * Nothing read here is trusted: lengths are capped before any allocation. */
#include <arpa/inet.h>
#include <string.h>
#include <sys/mman.h>

#include "frame.h"
#include "internal.h"

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Returns 1 when len bytes were read, 0 on EOF before the first byte,
 * negative on error or EOF in the middle. */
static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return got == 0 ? 0 : -EPIPE;
		got += (size_t)n;
	}
	return 1;
}

int ab_frame_encode(const json_t *obj, char **out, size_t *outlen, ab_error *err)
{
	AB_AUTOFREE char *text = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (!text)
		return ab_error_set(err, -ENOMEM, "encode frame: out of memory");
	size_t len = strlen(text);
	if (len > AB_FRAME_MAX_DEFAULT)
		return ab_error_set(err, -E2BIG, "encode frame: %zu bytes exceeds the %u byte cap",
				    len, AB_FRAME_MAX_DEFAULT);
	char *buf = malloc(len + 4);
	if (!buf)
		return ab_error_set(err, -ENOMEM, "encode frame: out of memory");
	uint32_t be = htonl((uint32_t)len);
	memcpy(buf, &be, 4);
	memcpy(buf + 4, text, len);
	*out = buf;
	*outlen = len + 4;
	return 0;
}

int ab_frame_write(int fd, const json_t *obj, ab_error *err)
{
	/* One buffer, one write: a frame is never interleaved with another. */
	AB_AUTOFREE char *buf = NULL;
	size_t len;
	int r = ab_frame_encode(obj, &buf, &len, err);
	if (r < 0)
		return r;
	r = write_all(fd, buf, len);
	if (r < 0)
		return ab_error_errno(err, r, "write frame");
	return 0;
}

static int parse_object(const char *buf, size_t len, json_t **out, ab_error *err)
{
	json_error_t jerr;
	json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (!j)
		return ab_error_set(err, -EPROTO, "frame is not valid JSON: %s (at byte %d)",
				    jerr.text, jerr.position);
	if (!json_is_object(j)) {
		json_decref(j);
		return ab_error_set(err, -EPROTO, "frame is not a JSON object");
	}
	*out = j;
	return 0;
}

int ab_frame_read(int fd, size_t max, json_t **out, ab_error *err)
{
	uint32_t be;
	int r = read_all(fd, &be, 4);
	if (r == 0)
		return ab_error_set(err, -EPIPE, "read frame: end of stream");
	if (r < 0)
		return ab_error_errno(err, r, "read frame header");
	size_t len = ntohl(be);
	if (len > max)
		return ab_error_set(err, -EMSGSIZE, "read frame: length %zu exceeds the cap of %zu",
				    len, max);
	AB_AUTOFREE char *buf = malloc(len ? len : 1);
	if (!buf)
		return ab_error_set(err, -ENOMEM, "read frame: out of memory");
	r = read_all(fd, buf, len);
	if (r <= 0 && len > 0)
		return ab_error_errno(err, r == 0 ? -EPIPE : r, "read frame body");
	return parse_object(buf, len, out, err);
}

size_t ab_frame_max_for_output(uint64_t output_bytes)
{
	/* Twice the output limit leaves room for JSON's escaping of text that
	 * is mostly ASCII; the executor degrades a result that still does not
	 * fit rather than send more. */
	if (output_bytes > AB_FRAME_MAX_DEFAULT / 2)
		return AB_FRAME_MAX_DEFAULT;
	size_t max = AB_FRAME_RESULT_BASE + 2 * (size_t)output_bytes;
	return max < AB_FRAME_MAX_DEFAULT ? max : AB_FRAME_MAX_DEFAULT;
}

/* The decoder's buffer is its own anonymous mapping, grown with mremap as
 * bytes arrive and unmapped as soon as it is empty and large: memory a peer
 * made the daemon hold goes back to the system when the frame is consumed
 * or the decoder freed, whatever the allocator would have kept. */
#define DECODER_SLACK (64u << 10)
#define DECODER_KEEP (64u << 10)

struct ab_frame_decoder {
	size_t max;
	char *buf;
	size_t len, cap;
	bool broken;
};

ab_frame_decoder *ab_frame_decoder_new(size_t max)
{
	ab_frame_decoder *d = calloc(1, sizeof(*d));
	if (d)
		d->max = max;
	return d;
}

static void release_buffer(ab_frame_decoder *d)
{
	if (d->buf)
		munmap(d->buf, d->cap);
	d->buf = NULL;
	d->cap = 0;
}

void ab_frame_decoder_free(ab_frame_decoder *d)
{
	if (!d)
		return;
	release_buffer(d);
	free(d);
}

void ab_frame_decoder_set_max(ab_frame_decoder *d, size_t max)
{
	d->max = max;
}

size_t ab_frame_decoder_footprint(const ab_frame_decoder *d)
{
	return d->cap;
}

static size_t pending_length(const ab_frame_decoder *d)
{
	uint32_t be;
	memcpy(&be, d->buf, 4);
	return ntohl(be);
}

/* Makes room for need bytes: the capacity doubles, page-aligned, but never
 * beyond the decoder's bound. */
static int reserve(ab_frame_decoder *d, size_t need, size_t bound, ab_error *err)
{
	if (need <= d->cap)
		return 0;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t ncap = d->cap ? d->cap * 2 : 16384;
	if (ncap < need)
		ncap = need;
	if (ncap > bound)
		ncap = bound;
	ncap = (ncap + page - 1) & ~(page - 1);
	void *nb =
	    d->buf ? mremap(d->buf, d->cap, ncap, MREMAP_MAYMOVE)
		   : mmap(NULL, ncap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (nb == MAP_FAILED)
		return ab_error_set(err, -ENOMEM, "frame buffer of %zu bytes: out of memory", ncap);
	d->buf = nb;
	d->cap = ncap;
	return 0;
}

int ab_frame_decoder_feed(ab_frame_decoder *d, const void *data, size_t len, ab_error *err)
{
	if (d->broken)
		return ab_error_set(err, -EPROTO, "frame stream is already corrupt");
	/* The buffer never holds more than one maximal frame plus its header
	 * and a little slack, so memory stays bounded whatever the peer sends;
	 * it grows only as bytes arrive, never on a header's word. */
	if (d->len >= 4 && pending_length(d) > d->max) {
		d->broken = true;
		return ab_error_set(err, -EMSGSIZE, "frame length %zu exceeds the cap of %zu",
				    pending_length(d), d->max);
	}
	size_t bound = d->max + 4 + DECODER_SLACK;
	size_t need = d->len + len;
	if (need > bound) {
		/* Several small frames may be queued; the caller pops them
		 * between feeds, so this only triggers on abuse. */
		d->broken = true;
		return ab_error_set(err, -EMSGSIZE, "frame stream buffer exceeds the cap");
	}
	int r = reserve(d, need, bound, err);
	if (r < 0)
		return r;
	if (len)
		memcpy(d->buf + d->len, data, len);
	d->len += len;
	if (d->len >= 4 && pending_length(d) > d->max) {
		d->broken = true;
		return ab_error_set(err, -EMSGSIZE, "frame length %zu exceeds the cap of %zu",
				    pending_length(d), d->max);
	}
	return 0;
}

/* Counts the JSON values of a frame (a bound, outside strings: every
 * array, object and element separator) and stops past the cap. A parsed
 * value costs the daemon tens of bytes whatever its text costs the sender,
 * so a frame of "[0,0,0,...]" would otherwise make a few megabytes of input
 * cost a hundred megabytes of heap. */
static bool too_many_values(const char *p, size_t len, size_t cap)
{
	size_t n = 1;
	bool in_string = false;
	for (size_t i = 0; i < len; i++) {
		char c = p[i];
		if (in_string) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if (c == ',' || c == '[' || c == '{') {
			if (++n > cap)
				return true;
		}
	}
	return false;
}

int ab_frame_decoder_next(ab_frame_decoder *d, json_t **out, ab_error *err)
{
	if (d->broken)
		return ab_error_set(err, -EPROTO, "frame stream is corrupt");
	if (d->len < 4)
		return 0;
	size_t flen = pending_length(d);
	if (flen > d->max) {
		d->broken = true;
		return ab_error_set(err, -EMSGSIZE, "frame length %zu exceeds the cap of %zu", flen,
				    d->max);
	}
	if (d->len < 4 + flen)
		return 0;
	int r;
	if (too_many_values(d->buf + 4, flen, AB_FRAME_MAX_VALUES))
		r = ab_error_set(err, -EPROTO, "frame holds more than %u JSON values",
				 AB_FRAME_MAX_VALUES);
	else
		r = parse_object(d->buf + 4, flen, out, err);
	memmove(d->buf, d->buf + 4 + flen, d->len - 4 - flen);
	d->len -= 4 + flen;
	if (d->len == 0 && d->cap > DECODER_KEEP)
		release_buffer(d);
	if (r < 0) {
		d->broken = true;
		return r;
	}
	return 1;
}

size_t ab_frame_decoder_buffered(const ab_frame_decoder *d)
{
	return d ? d->len : 0;
}

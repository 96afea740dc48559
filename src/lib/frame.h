/* frame.h - the executor protocol's frame codec (internal to agentbox;
 * docs/executor-protocol.md). Frames: a 4-byte big-endian length followed
 * by that many bytes of one JSON object. Frames larger than the cap are a
 * protocol error: the peer is not trusted. */
#ifndef AB_FRAME_H
#define AB_FRAME_H

#include "internal.h"

#define AB_FRAME_MAX_DEFAULT (64u << 20)
/* The cap on frames between runs (ready, fatal): they are small. */
#define AB_FRAME_IDLE_MAX (64u << 10)
/* The most JSON values (arrays, objects, elements) a decoded frame may hold:
 * a result has a few hundred; parsing costs memory per value. */
#define AB_FRAME_MAX_VALUES 65536u
/* What a result frame may take beyond its run's output limit. */
#define AB_FRAME_RESULT_BASE (1u << 20)

/* The largest result frame of a run whose output limit is output_bytes:
 * AB_FRAME_RESULT_BASE plus twice that limit, at most AB_FRAME_MAX_DEFAULT.
 * The daemon refuses larger frames; the executor fits its result into it. */
size_t ab_frame_max_for_output(uint64_t output_bytes);

/* Encodes obj as one frame (header included) into a new malloc'd buffer. */
int ab_frame_encode(const json_t *obj, char **out, size_t *outlen, ab_error *err);
/* Encodes obj and writes one frame to fd (blocking; EINTR retried).
 * Does not take ownership of obj. */
int ab_frame_write(int fd, const json_t *obj, ab_error *err);
/* Reads exactly one frame from a blocking fd. On success *out owns a new
 * reference to a JSON object. Returns -EPIPE on a clean EOF before any byte. */
int ab_frame_read(int fd, size_t max, json_t **out, ab_error *err);

/* Incremental decoder for a non-blocking reader (the daemon). */
typedef struct ab_frame_decoder ab_frame_decoder;
ab_frame_decoder *ab_frame_decoder_new(size_t max);
void ab_frame_decoder_free(ab_frame_decoder *d);
/* Appends bytes. Returns 0, or a negative code if the stream is corrupt
 * (oversized length, or bytes after a corrupt frame). */
int ab_frame_decoder_feed(ab_frame_decoder *d, const void *buf, size_t len, ab_error *err);
/* Pops the next complete frame: 1 and *out set, 0 if none is complete yet,
 * negative if the complete frame is not a JSON object or holds more than
 * AB_FRAME_MAX_VALUES values. */
int ab_frame_decoder_next(ab_frame_decoder *d, json_t **out, ab_error *err);
/* Changes the cap for the frames still to come (one already buffered over
 * the new cap makes the stream corrupt at the next feed or next). */
void ab_frame_decoder_set_max(ab_frame_decoder *d, size_t max);
/* Bytes held that do not make a whole frame yet. */
size_t ab_frame_decoder_buffered(const ab_frame_decoder *d);
/* Bytes of memory the decoder holds now (its buffer's capacity). */
size_t ab_frame_decoder_footprint(const ab_frame_decoder *d);

#endif

/* http.h - HTTP/1.1 framing for the sidecar: the request head read from a
 * sandbox (checked strictly: anything two parsers could read differently
 * is refused), its body, and the end of an upstream response. Built on
 * Node's http-parser (Debian's libhttp-parser). Pure functions of their
 * input: the fuzzer and the unit tests drive them directly. */
#ifndef EG_HTTP_H
#define EG_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#define EG_HEAD_MAX 32768 /* a larger request head is 431 */
#define EG_HEADERS_MAX 100

enum eg_content_encoding { EG_CE_IDENTITY, EG_CE_GZIP, EG_CE_DEFLATE };

typedef struct eg_header {
	char *name; /* as sent; compare without case */
	char *value;
} eg_header;

typedef struct eg_http_req {
	http_parser parser;
	char method[24];
	char *url; /* the request target as sent */
	unsigned short major, minor;
	eg_header hdr[EG_HEADERS_MAX];
	size_t nhdr;
	bool chunked;
	bool has_content_length;
	uint64_t content_length;
	bool keep_alive; /* the client may send another request after this one */
	bool expect_continue;
	bool websocket; /* Upgrade: websocket */
	enum eg_content_encoding encoding;
	/* The body, buffered whole (at most max_body bytes). */
	char *body;
	size_t body_len, body_cap, max_body;
	bool complete; /* the whole request (head and body) is parsed */
	/* Scratch for the parser's callbacks. */
	int last_cb;
	bool too_big, nomem;
} eg_http_req;

/* The length of the head at the start of buf (through the blank line), or
 * 0 when buf does not hold a whole head yet. */
size_t eg_http_head_end(const char *buf, size_t len);
/* True when buf holds a line ended by a bare LF (no head would ever end:
 * the request is refused at once rather than left to time out). */
bool eg_http_has_bare_lf(const char *buf, size_t len);

/* Parses and checks one request head (the len bytes eg_http_head_end
 * measured). Returns 0, or the HTTP status to refuse it with (400, 415,
 * 417, 431, 501) and why in why. r is always to be freed with
 * eg_http_req_free. */
int eg_http_parse_head(eg_http_req *r, const char *head, size_t len, size_t max_body, char *why,
		       size_t whylen);
/* Feeds body bytes (after the head); *used is how many belong to this
 * request (the rest is the next one). Returns 0 (r->complete says whether
 * the body is whole), or 400 (bad framing) / 413 (over max_body). */
int eg_http_feed_body(eg_http_req *r, const char *data, size_t len, size_t *used, char *why,
		      size_t whylen);
void eg_http_req_free(eg_http_req *r);

/* The first header named name (case-insensitive), or NULL; the count. */
const char *eg_http_header(const eg_http_req *r, const char *name);
size_t eg_http_header_count(const eg_http_req *r, const char *name);
/* Whether a header is hop-by-hop (never forwarded): the fixed ones, any
 * Proxy-*, and any named in the request's Connection header. */
bool eg_http_hop_by_hop(const eg_http_req *r, const char *name);
/* True when the comma-separated list value holds token (without case). */
bool eg_http_list_has(const char *value, const char *token);

/* An upstream response, followed to its end. */
typedef struct eg_http_resp {
	http_parser parser;
	bool head_request;
	int status;
	bool complete; /* the final response (>= 200, or 101) is whole */
	bool upgrade;  /* 101: the connection now speaks another protocol */
	bool close_delimited;
} eg_http_resp;

void eg_http_resp_init(eg_http_resp *r, bool head_request);
/* Feeds response bytes; *used is how many belong to the response. Returns
 * 0, or -1 when the response is malformed. */
int eg_http_resp_feed(eg_http_resp *r, const char *data, size_t len, size_t *used);
/* The upstream closed: completes a close-delimited body. Returns 0 when
 * the response is whole, -1 when it was cut short. */
int eg_http_resp_eof(eg_http_resp *r);

#endif

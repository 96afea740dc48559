/* http.c - request heads, bodies and response ends (see http.h). The head
 * is checked twice: first byte by byte here (CRLF line ends only, no
 * obs-fold, no control characters, token header names), then by
 * http-parser, and then for ambiguous framing the parser would accept
 * (Transfer-Encoding other than a lone "chunked", Content-Length lists). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

enum { CB_NONE, CB_FIELD, CB_VALUE };

size_t eg_http_head_end(const char *buf, size_t len)
{
	for (size_t i = 3; i < len; i++)
		if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' &&
		    buf[i - 3] == '\r')
			return i + 1;
	return 0;
}

bool eg_http_has_bare_lf(const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
			return true;
	return false;
}

static bool tchar(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* The byte-level checks of the head (see the file comment). */
static int prescan(const char *h, size_t len, char *why, size_t whylen)
{
	size_t line = 0, start = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)h[i];
		if (c == '\r') {
			if (i + 1 >= len || h[i + 1] != '\n') {
				snprintf(why, whylen, "bare CR in the request head");
				return 400;
			}
			continue;
		}
		if (c == '\n') {
			if (i == 0 || h[i - 1] != '\r') {
				snprintf(why, whylen, "bare LF in the request head");
				return 400;
			}
			size_t end = i - 1; /* the CR */
			if (line == 0 && end == start) {
				snprintf(why, whylen, "empty request line");
				return 400;
			}
			if (line > 0 && end > start) {
				if (h[start] == ' ' || h[start] == '\t') {
					snprintf(why, whylen,
						 "obs-fold (a header line starting "
						 "with whitespace)");
					return 400;
				}
				size_t k = start;
				while (k < end && tchar((unsigned char)h[k]))
					k++;
				if (k == start || k == end || h[k] != ':') {
					snprintf(why, whylen, "malformed header line %zu", line);
					return 400;
				}
				if (line > EG_HEADERS_MAX) {
					snprintf(why, whylen, "more than %d headers",
						 EG_HEADERS_MAX);
					return 431;
				}
			}
			line++;
			start = i + 1;
			continue;
		}
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			snprintf(why, whylen, "control character 0x%02x in the request head", c);
			return 400;
		}
	}
	return 0;
}

static int append(char **dst, const char *at, size_t n, eg_http_req *r)
{
	size_t old = *dst ? strlen(*dst) : 0;
	if (old + n > EG_HEAD_MAX) {
		r->too_big = true;
		return -1;
	}
	char *p = realloc(*dst, old + n + 1);
	if (!p) {
		r->nomem = true;
		return -1;
	}
	memcpy(p + old, at, n);
	p[old + n] = '\0';
	*dst = p;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
	eg_http_req *r = p->data;
	return append(&r->url, at, n, r);
}

static int on_field(http_parser *p, const char *at, size_t n)
{
	eg_http_req *r = p->data;
	if (r->last_cb != CB_FIELD) {
		if (r->nhdr == EG_HEADERS_MAX) {
			r->too_big = true;
			return -1;
		}
		r->nhdr++;
	}
	r->last_cb = CB_FIELD;
	return append(&r->hdr[r->nhdr - 1].name, at, n, r);
}

static int on_value(http_parser *p, const char *at, size_t n)
{
	eg_http_req *r = p->data;
	if (r->nhdr == 0)
		return -1;
	r->last_cb = CB_VALUE;
	return append(&r->hdr[r->nhdr - 1].value, at, n, r);
}

static int on_headers_complete(http_parser *p)
{
	eg_http_req *r = p->data;
	r->keep_alive = http_should_keep_alive(p) != 0;
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	eg_http_req *r = p->data;
	if (n > r->max_body - r->body_len) {
		r->too_big = true;
		return -1;
	}
	if (r->body_len + n > r->body_cap) {
		size_t cap = r->body_cap ? r->body_cap : 4096;
		while (cap < r->body_len + n)
			cap *= 2;
		if (cap > r->max_body)
			cap = r->max_body;
		char *b = realloc(r->body, cap);
		if (!b) {
			r->nomem = true;
			return -1;
		}
		r->body = b;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_len, at, n);
	r->body_len += n;
	return 0;
}

static int on_message_complete(http_parser *p)
{
	eg_http_req *r = p->data;
	r->complete = true;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings req_settings = {
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

const char *eg_http_header(const eg_http_req *r, const char *name)
{
	for (size_t i = 0; i < r->nhdr; i++)
		if (r->hdr[i].name && strcasecmp(r->hdr[i].name, name) == 0)
			return r->hdr[i].value ? r->hdr[i].value : "";
	return NULL;
}

size_t eg_http_header_count(const eg_http_req *r, const char *name)
{
	size_t n = 0;
	for (size_t i = 0; i < r->nhdr; i++)
		if (r->hdr[i].name && strcasecmp(r->hdr[i].name, name) == 0)
			n++;
	return n;
}

bool eg_http_list_has(const char *value, const char *token)
{
	size_t tl = strlen(token);
	const char *p = value;
	while (p && *p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		const char *e = p;
		while (*e && *e != ',')
			e++;
		const char *t = e;
		while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
			t--;
		if ((size_t)(t - p) == tl && strncasecmp(p, token, tl) == 0)
			return true;
		p = e;
	}
	return false;
}

bool eg_http_hop_by_hop(const eg_http_req *r, const char *name)
{
	static const char *const fixed[] = {"connection",	 "keep-alive", "te",	 "trailer",
					    "transfer-encoding", "upgrade",    "expect", NULL};
	for (size_t i = 0; fixed[i]; i++)
		if (strcasecmp(name, fixed[i]) == 0)
			return true;
	if (strncasecmp(name, "proxy-", 6) == 0)
		return true;
	for (size_t i = 0; i < r->nhdr; i++)
		if (r->hdr[i].name && strcasecmp(r->hdr[i].name, "connection") == 0 &&
		    r->hdr[i].value && eg_http_list_has(r->hdr[i].value, name))
			return true;
	return false;
}

static void trim(char *s)
{
	if (!s)
		return;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	size_t k = 0;
	while (s[k] == ' ' || s[k] == '\t')
		k++;
	if (k)
		memmove(s, s + k, n - k + 1);
}

static int framing(eg_http_req *r, char *why, size_t whylen)
{
	size_t nte = eg_http_header_count(r, "transfer-encoding");
	size_t ncl = eg_http_header_count(r, "content-length");
	if (nte && ncl) {
		snprintf(why, whylen, "both Content-Length and Transfer-Encoding");
		return 400;
	}
	if (nte) {
		const char *te = eg_http_header(r, "transfer-encoding");
		if (nte > 1 || strcasecmp(te, "chunked") != 0) {
			snprintf(why, whylen, "Transfer-Encoding other than a single \"chunked\"");
			return 400;
		}
		if (r->major == 1 && r->minor == 0) {
			snprintf(why, whylen, "Transfer-Encoding in an HTTP/1.0 request");
			return 400;
		}
		r->chunked = true;
	}
	for (size_t i = 0; i < r->nhdr; i++) {
		if (strcasecmp(r->hdr[i].name, "content-length") != 0)
			continue;
		const char *v = r->hdr[i].value ? r->hdr[i].value : "";
		uint64_t n = 0;
		if (!*v || strlen(v) > 18) {
			snprintf(why, whylen, "bad Content-Length");
			return 400;
		}
		for (const char *c = v; *c; c++) {
			if (*c < '0' || *c > '9') {
				snprintf(why, whylen, "bad Content-Length");
				return 400;
			}
			n = n * 10 + (uint64_t)(*c - '0');
		}
		if (r->has_content_length && n != r->content_length) {
			snprintf(why, whylen, "differing Content-Length headers");
			return 400;
		}
		r->has_content_length = true;
		r->content_length = n;
	}
	return 0;
}

int eg_http_parse_head(eg_http_req *r, const char *head, size_t len, size_t max_body, char *why,
		       size_t whylen)
{
	memset(r, 0, sizeof(*r));
	r->max_body = max_body;
	why[0] = '\0';
	if (len > EG_HEAD_MAX) {
		snprintf(why, whylen, "request head over %d bytes", EG_HEAD_MAX);
		return 431;
	}
	int st = prescan(head, len, why, whylen);
	if (st)
		return st;
	/* Our own Content-Length/Transfer-Encoding checks give clearer
	 * answers than the parser's; they run on the headers it collects,
	 * so the parser is told not to refuse those first. */
	http_parser_init(&r->parser, HTTP_REQUEST);
	r->parser.data = r;
	size_t n = http_parser_execute(&r->parser, &req_settings, head, len);
	enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
	if (r->too_big && !r->nomem) {
		snprintf(why, whylen, "request head too large");
		return 431;
	}
	if (r->nomem) {
		snprintf(why, whylen, "out of memory");
		return 503;
	}
	if (e != HPE_OK && e != HPE_PAUSED) {
		snprintf(why, whylen, "malformed request: %s", http_errno_description(e));
		return 400;
	}
	if (n != len && e != HPE_PAUSED) {
		snprintf(why, whylen, "malformed request head");
		return 400;
	}
	if (e == HPE_PAUSED)
		http_parser_pause(&r->parser, 0);
	snprintf(r->method, sizeof(r->method), "%s",
		 http_method_str((enum http_method)r->parser.method));
	r->major = r->parser.http_major;
	r->minor = r->parser.http_minor;
	if (r->major != 1 || r->minor > 1) {
		snprintf(why, whylen, "HTTP version %u.%u not supported", r->major, r->minor);
		return 400;
	}
	if (!r->url || !*r->url) {
		snprintf(why, whylen, "no request target");
		return 400;
	}
	for (size_t i = 0; i < r->nhdr; i++) {
		if (!r->hdr[i].name) {
			snprintf(why, whylen, "malformed header");
			return 400;
		}
		if (!r->hdr[i].value && !(r->hdr[i].value = strdup(""))) {
			snprintf(why, whylen, "out of memory");
			return 503;
		}
		trim(r->hdr[i].value);
	}
	if ((st = framing(r, why, whylen)))
		return st;
	if (r->parser.method == HTTP_CONNECT &&
	    (r->chunked || (r->has_content_length && r->content_length > 0))) {
		/* The parser would leave such a body to be read as tunnel data. */
		snprintf(why, whylen, "CONNECT with a body");
		return 400;
	}
	if (eg_http_header_count(r, "host") > 1) {
		snprintf(why, whylen, "more than one Host header");
		return 400;
	}
	size_t nce = eg_http_header_count(r, "content-encoding");
	const char *ce = eg_http_header(r, "content-encoding");
	if (nce > 1) {
		snprintf(why, whylen, "more than one Content-Encoding header");
		return 415;
	}
	if (ce && (strcasecmp(ce, "gzip") == 0 || strcasecmp(ce, "x-gzip") == 0))
		r->encoding = EG_CE_GZIP;
	else if (ce && strcasecmp(ce, "deflate") == 0)
		r->encoding = EG_CE_DEFLATE;
	else if (ce && *ce && strcasecmp(ce, "identity") != 0) {
		snprintf(why, whylen, "Content-Encoding %.64s cannot be inspected", ce);
		return 415;
	}
	const char *expect = eg_http_header(r, "expect");
	if (expect) {
		if (strcasecmp(expect, "100-continue") != 0 ||
		    eg_http_header_count(r, "expect") > 1) {
			snprintf(why, whylen, "unsupported Expect");
			return 417;
		}
		r->expect_continue = true;
	}
	const char *up = eg_http_header(r, "upgrade");
	if (up && eg_http_list_has(up, "websocket"))
		r->websocket = true;
	if (r->has_content_length && r->content_length > max_body) {
		snprintf(why, whylen, "body of %llu bytes over the limit of %zu",
			 (unsigned long long)r->content_length, max_body);
		return 413;
	}
	return 0;
}

int eg_http_feed_body(eg_http_req *r, const char *data, size_t len, size_t *used, char *why,
		      size_t whylen)
{
	*used = 0;
	if (r->complete)
		return 0;
	size_t n = http_parser_execute(&r->parser, &req_settings, data, len);
	enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
	if (r->too_big) {
		snprintf(why, whylen, "body over the limit of %zu bytes", r->max_body);
		return 413;
	}
	if (r->nomem) {
		snprintf(why, whylen, "out of memory");
		return 503;
	}
	if (e == HPE_PAUSED) {
		http_parser_pause(&r->parser, 0);
	} else if (e != HPE_OK) {
		snprintf(why, whylen, "malformed body: %s", http_errno_description(e));
		return 400;
	}
	*used = n;
	return 0;
}

void eg_http_req_free(eg_http_req *r)
{
	free(r->url);
	for (size_t i = 0; i < r->nhdr; i++) {
		free(r->hdr[i].name);
		free(r->hdr[i].value);
	}
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* ------------------------------------------------------------ responses */

static int resp_headers_complete(http_parser *p)
{
	eg_http_resp *r = p->data;
	r->status = p->status_code;
	/* A response to HEAD has no body, whatever its headers say. */
	if (r->head_request && p->status_code >= 200)
		return 1;
	return 0;
}

static int resp_message_complete(http_parser *p)
{
	eg_http_resp *r = p->data;
	if (p->status_code >= 200 || p->status_code == 101) {
		r->complete = true;
		r->upgrade = p->status_code == 101 && p->upgrade;
		http_parser_pause(p, 1);
	}
	return 0;
}

static const http_parser_settings resp_settings = {
    .on_headers_complete = resp_headers_complete,
    .on_message_complete = resp_message_complete,
};

void eg_http_resp_init(eg_http_resp *r, bool head_request)
{
	memset(r, 0, sizeof(*r));
	http_parser_init(&r->parser, HTTP_RESPONSE);
	r->parser.data = r;
	r->head_request = head_request;
}

int eg_http_resp_feed(eg_http_resp *r, const char *data, size_t len, size_t *used)
{
	*used = 0;
	if (r->complete)
		return 0;
	size_t n = http_parser_execute(&r->parser, &resp_settings, data, len);
	enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
	if (e == HPE_PAUSED)
		http_parser_pause(&r->parser, 0);
	else if (e != HPE_OK)
		return -1;
	/* A 101 ends the HTTP part where the parser stopped; anything after
	 * it belongs to the new protocol and is relayed as it is. */
	if (r->upgrade)
		n = len;
	*used = n;
	return 0;
}

int eg_http_resp_eof(eg_http_resp *r)
{
	if (r->complete)
		return 0;
	http_parser_execute(&r->parser, &resp_settings, NULL, 0);
	if (r->complete) {
		r->close_delimited = true;
		return 0;
	}
	return -1;
}

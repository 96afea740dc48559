/* addr.c - address ranges the sidecar refuses to dial, host syntax, and the
 * test-only --resolve mappings (docs/egress.md, "Address checks"). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "internal.h"

struct v4range {
	uint32_t net; /* host byte order */
	int bits;
};

/* The refused IPv4 ranges, as docs/egress.md lists them. */
static const struct v4range v4_refused[] = {
    {0x00000000, 8},  /* 0.0.0.0/8 */
    {0x0a000000, 8},  /* 10/8 */
    {0x64400000, 10}, /* 100.64/10 */
    {0x7f000000, 8},  /* 127/8 */
    {0xa9fe0000, 16}, /* 169.254/16 */
    {0xac100000, 12}, /* 172.16/12 */
    {0xc0000000, 24}, /* 192.0.0/24 */
    {0xc0000200, 24}, /* 192.0.2/24 */
    {0xc0a80000, 16}, /* 192.168/16 */
    {0xc6120000, 15}, /* 198.18/15 */
    {0xc6336400, 24}, /* 198.51.100/24 */
    {0xcb007100, 24}, /* 203.0.113/24 */
    {0xe0000000, 4},  /* 224/4 */
    {0xf0000000, 4},  /* 240/4 */
};

bool eg_ipv4_refused(uint32_t addr_be)
{
	uint32_t a = ntohl(addr_be);
	for (size_t i = 0; i < sizeof(v4_refused) / sizeof(v4_refused[0]); i++) {
		uint32_t mask = 0xffffffffu << (32 - v4_refused[i].bits);
		if ((a & mask) == v4_refused[i].net)
			return true;
	}
	return false;
}

struct v6range {
	uint8_t net[16];
	int bits;
};

/* The refused IPv6 ranges, as docs/egress.md lists them, plus the
 * deprecated site-local fec0::/10 (never globally routed). */
static const struct v6range v6_refused[] = {
    {{0}, 128},						     /* :: */
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128}, /* ::1 */
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96},	     /* ::ffff:0:0/96 */
    {{0}, 96},						     /* ::/96 */
    {{0x00, 0x64, 0xff, 0x9b}, 96},			     /* 64:ff9b::/96 */
    {{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48},		     /* 64:ff9b:1::/48 */
    {{0x20, 0x02}, 16},					     /* 2002::/16 */
    {{0x20, 0x01, 0x00, 0x00}, 32},			     /* 2001::/32 */
    {{0x20, 0x01, 0x0d, 0xb8}, 32},			     /* 2001:db8::/32 */
    {{0x01, 0x00}, 64},					     /* 100::/64 */
    {{0xfc}, 7},					     /* fc00::/7 */
    {{0xfe, 0x80}, 10},					     /* fe80::/10 */
    {{0xfe, 0xc0}, 10},					     /* fec0::/10 */
    {{0xff}, 8},					     /* ff00::/8 */
};

static bool v6_in(const uint8_t a[16], const struct v6range *r)
{
	int bits = r->bits;
	for (int i = 0; i < 16 && bits > 0; i++, bits -= 8) {
		uint8_t mask = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));
		if ((a[i] & mask) != (r->net[i] & mask))
			return false;
	}
	return true;
}

bool eg_ipv6_refused(const uint8_t a[16])
{
	for (size_t i = 0; i < sizeof(v6_refused) / sizeof(v6_refused[0]); i++)
		if (v6_in(a, &v6_refused[i]))
			return true;
	return false;
}

bool eg_sockaddr_refused(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return eg_ipv4_refused(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
	if (sa->sa_family == AF_INET6)
		return eg_ipv6_refused(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
	return true;
}

enum eg_host_kind eg_host_normalize(char *host)
{
	size_t len = strlen(host);
	if (len == 0 || len > EG_HOST_MAX + 1)
		return EG_HOST_BAD;
	for (size_t i = 0; i < len; i++)
		host[i] = (char)tolower((unsigned char)host[i]);
	struct in6_addr a6;
	if (strchr(host, ':'))
		return inet_pton(AF_INET6, host, &a6) == 1 && !strchr(host, '%') ? EG_HOST_IPV6
										 : EG_HOST_BAD;
	if (host[len - 1] == '.')
		host[--len] = '\0';
	if (len == 0 || len > EG_HOST_MAX)
		return EG_HOST_BAD;
	struct in_addr a4;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return EG_HOST_IPV4;
	size_t label = 0;
	bool all_digits = true;
	for (size_t i = 0; i <= len; i++) {
		char c = host[i];
		if (c == '.' || c == '\0') {
			if (label == 0 || label > 63)
				return EG_HOST_BAD;
			if (c == '\0' && all_digits)
				return EG_HOST_BAD;
			label = 0;
			all_digits = true;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return EG_HOST_BAD;
		if (!(c >= '0' && c <= '9'))
			all_digits = false;
		label++;
	}
	return EG_HOST_NAME;
}

static bool loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return false;
}

int eg_resolve_map_parse(const char *spec, eg_resolve_map *out, ab_error *err)
{
	memset(out, 0, sizeof(*out));
	const char *eq = strchr(spec, '=');
	if (!eq || eq == spec || (size_t)(eq - spec) > EG_HOST_MAX)
		return ab_error_set(err, -EINVAL, "--resolve %s: expected NAME=127.0.0.1:PORT",
				    spec);
	memcpy(out->name, spec, (size_t)(eq - spec));
	if (eg_host_normalize(out->name) != EG_HOST_NAME)
		return ab_error_set(err, -EINVAL, "--resolve %s: bad host name", spec);
	const char *a = eq + 1;
	char ip[64];
	const char *colon;
	if (*a == '[') {
		const char *close = strchr(a, ']');
		if (!close || close[1] != ':' || (size_t)(close - a - 1) >= sizeof(ip))
			return ab_error_set(err, -EINVAL, "--resolve %s: expected [ADDR]:PORT",
					    spec);
		memcpy(ip, a + 1, (size_t)(close - a - 1));
		ip[close - a - 1] = '\0';
		colon = close + 1;
	} else {
		colon = strrchr(a, ':');
		if (!colon || (size_t)(colon - a) >= sizeof(ip))
			return ab_error_set(err, -EINVAL, "--resolve %s: expected ADDR:PORT", spec);
		memcpy(ip, a, (size_t)(colon - a));
		ip[colon - a] = '\0';
	}
	char *end;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || port < 1 || port > 65535)
		return ab_error_set(err, -EINVAL, "--resolve %s: bad port", spec);
	struct sockaddr_in *s4 = (struct sockaddr_in *)&out->addr;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->addr;
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		out->addrlen = sizeof(*s4);
	} else if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		out->addrlen = sizeof(*s6);
	} else {
		return ab_error_set(err, -EINVAL, "--resolve %s: %s is not an IP address", spec,
				    ip);
	}
	if (!loopback((struct sockaddr *)&out->addr))
		return ab_error_set(err, -EINVAL,
				    "--resolve %s: %s is not a loopback address (only loopback "
				    "mappings are allowed, for tests)",
				    spec, ip);
	return 0;
}

void eg_sockaddr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	if (len == 0)
		return;
	buf[0] = '\0';
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf,
			  (socklen_t)len);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf,
			  (socklen_t)len);
}

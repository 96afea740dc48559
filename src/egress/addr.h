/* addr.h - which addresses the sidecar may dial (docs/egress.md, "Address
 * checks"), host name syntax, and the test-only --resolve mappings. */
#ifndef EG_ADDR_H
#define EG_ADDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "agentbox.h"

#define EG_HOST_MAX 253

/* True when an IPv4 address (network byte order) is in a refused range. */
bool eg_ipv4_refused(uint32_t addr_be);
/* True when an IPv6 address is in a refused range (this covers every
 * IPv4-embedding form: v4-mapped, v4-compatible, NAT64, 6to4, Teredo). */
bool eg_ipv6_refused(const uint8_t a[16]);
/* True for a refused sockaddr (any family other than AF_INET/AF_INET6 too). */
bool eg_sockaddr_refused(const struct sockaddr *sa);

/* The kinds of host a request may name. */
enum eg_host_kind { EG_HOST_BAD, EG_HOST_NAME, EG_HOST_IPV4, EG_HOST_IPV6 };
/* Normalizes host in place (lower case, one trailing dot removed) and
 * classifies it: a dotted-quad IPv4 literal, an IPv6 literal (without
 * brackets), or a name of up to 253 bytes of [a-z0-9-_.] with no empty
 * label whose last label is not all digits (so "127.1" or "2130706433",
 * which a resolver would read as numbers, are bad rather than names). */
enum eg_host_kind eg_host_normalize(char *host);

/* A test-only mapping NAME=127.0.0.1:PORT (or [::1]:PORT). */
typedef struct eg_resolve_map {
	char name[EG_HOST_MAX + 1];
	struct sockaddr_storage addr;
	socklen_t addrlen;
} eg_resolve_map;

/* Parses "NAME=ADDR:PORT"; ADDR must be a loopback literal. */
int eg_resolve_map_parse(const char *spec, eg_resolve_map *out, ab_error *err);

/* Formats the address (no port) of sa into buf. */
void eg_sockaddr_str(const struct sockaddr *sa, char *buf, size_t len);

#endif

/* test_addr.c - the refused address ranges, host syntax, --resolve. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "addr.h"
#include "unit.h"

static bool v4(const char *s)
{
	struct in_addr a;
	CHECK(inet_pton(AF_INET, s, &a) == 1);
	return eg_ipv4_refused(a.s_addr);
}

static bool v6(const char *s)
{
	struct in6_addr a;
	CHECK(inet_pton(AF_INET6, s, &a) == 1);
	return eg_ipv6_refused(a.s6_addr);
}

AB_TEST(addr_ipv4_ranges_and_their_edges)
{
	static const char *const refused[] = {"0.0.0.0",
					      "0.255.255.255",
					      "10.0.0.1",
					      "10.255.255.255",
					      "100.64.0.0",
					      "100.127.255.255",
					      "127.0.0.1",
					      "127.255.255.254",
					      "169.254.169.254",
					      "172.16.0.0",
					      "172.31.255.255",
					      "192.0.0.8",
					      "192.0.2.1",
					      "192.168.1.1",
					      "198.18.0.1",
					      "198.19.255.255",
					      "198.51.100.7",
					      "203.0.113.7",
					      "224.0.0.1",
					      "239.255.255.255",
					      "240.0.0.1",
					      "255.255.255.255",
					      NULL};
	for (size_t i = 0; refused[i]; i++) {
		if (!v4(refused[i]))
			fprintf(stderr, "not refused: %s\n", refused[i]);
		CHECK(v4(refused[i]));
	}
	static const char *const allowed[] = {
	    "1.1.1.1",	       "9.255.255.255", "11.0.0.0",	   "100.63.255.255", "100.128.0.0",
	    "126.255.255.255", "128.0.0.0",	"169.253.0.1",	   "172.15.255.255", "172.32.0.0",
	    "192.0.1.1",       "192.0.3.0",	"192.167.0.1",	   "198.17.255.255", "198.20.0.0",
	    "198.51.99.1",     "203.0.112.1",	"223.255.255.255", "93.184.216.34",  NULL};
	for (size_t i = 0; allowed[i]; i++) {
		if (v4(allowed[i]))
			fprintf(stderr, "refused: %s\n", allowed[i]);
		CHECK(!v4(allowed[i]));
	}
}

AB_TEST(addr_ipv6_ranges_including_ipv4_embeddings)
{
	static const char *const refused[] = {"::",
					      "::1",
					      "::ffff:8.8.8.8",
					      "::ffff:127.0.0.1",
					      "::8.8.8.8",
					      "64:ff9b::808:808",
					      "64:ff9b:1::1",
					      "2002:808:808::1",
					      "2001:0:4136:e378::1",
					      "2001:db8::1",
					      "100::1",
					      "fc00::1",
					      "fd12:3456::1",
					      "fe80::1",
					      "febf::1",
					      "fec0::1",
					      "ff02::1",
					      "ff0e::1",
					      NULL};
	for (size_t i = 0; refused[i]; i++) {
		if (!v6(refused[i]))
			fprintf(stderr, "not refused: %s\n", refused[i]);
		CHECK(v6(refused[i]));
	}
	static const char *const allowed[] = {"2606:4700::1111",
					      "2001:4860:4860::8888",
					      "2001:1::1",
					      "64:ff9b:2::1",
					      "100:0:0:1::1",
					      "2003::1",
					      "fbff::1",
					      "1::",
					      NULL};
	for (size_t i = 0; allowed[i]; i++) {
		if (v6(allowed[i]))
			fprintf(stderr, "refused: %s\n", allowed[i]);
		CHECK(!v6(allowed[i]));
	}
}

AB_TEST(addr_sockaddr_of_other_families_is_refused)
{
	struct sockaddr sa = {.sa_family = AF_UNIX};
	CHECK(eg_sockaddr_refused(&sa));
	struct sockaddr_in s4 = {.sin_family = AF_INET};
	inet_pton(AF_INET, "8.8.4.4", &s4.sin_addr);
	CHECK(!eg_sockaddr_refused((struct sockaddr *)&s4));
}

static enum eg_host_kind kind(const char *h, char *out)
{
	static char buf[512];
	snprintf(buf, sizeof(buf), "%s", h);
	enum eg_host_kind k = eg_host_normalize(buf);
	if (out)
		strcpy(out, buf);
	return k;
}

AB_TEST(addr_host_names_are_normalized_and_checked)
{
	char out[512];
	CHECK_EQ_INT(kind("API.Example.COM.", out), EG_HOST_NAME);
	CHECK_STR(out, "api.example.com");
	CHECK_EQ_INT(kind("a_b-c.example", NULL), EG_HOST_NAME);
	CHECK_EQ_INT(kind("203.0.113.7", NULL), EG_HOST_IPV4);
	CHECK_EQ_INT(kind("2001:db8::1", NULL), EG_HOST_IPV6);
	CHECK_EQ_INT(kind("::ffff:1.2.3.4", NULL), EG_HOST_IPV6);
	/* What a resolver would read as numbers is neither. */
	CHECK_EQ_INT(kind("127.1", NULL), EG_HOST_BAD);
	CHECK_EQ_INT(kind("2130706433", NULL), EG_HOST_BAD);
	CHECK_EQ_INT(kind("0x7f.1", NULL), EG_HOST_BAD);
	CHECK_EQ_INT(kind("0177.0.0.1", NULL), EG_HOST_BAD);
	CHECK_EQ_INT(kind("", NULL), EG_HOST_BAD);
	CHECK_EQ_INT(kind(".", NULL), EG_HOST_BAD);
	CHECK_EQ_INT(kind("a..b", NULL), EG_HOST_BAD);
	CHECK_EQ_INT(kind("a b.example", NULL), EG_HOST_BAD);
	CHECK_EQ_INT(kind("evil.example%00.good", NULL), EG_HOST_BAD);
	CHECK_EQ_INT(kind("fe80::1%eth0", NULL), EG_HOST_BAD);
	char longname[300];
	memset(longname, 'a', 254);
	longname[254] = '\0';
	CHECK_EQ_INT(kind(longname, NULL), EG_HOST_BAD);
	/* 253 bytes in labels of 63 at most is fine. */
	char ok[260];
	size_t n = 0;
	while (n + 64 <= 253) {
		memset(ok + n, 'b', 63);
		ok[n + 63] = '.';
		n += 64;
	}
	memset(ok + n, 'c', 253 - n);
	ok[253] = '\0';
	CHECK_EQ_INT(kind(ok, NULL), EG_HOST_NAME);
	memset(longname, 'a', 64);
	strcpy(longname + 64, ".example");
	CHECK_EQ_INT(kind(longname, NULL), EG_HOST_BAD);
}

AB_TEST(addr_resolve_mappings_are_loopback_only)
{
	eg_resolve_map m;
	ab_error err = {0};
	CHECK(eg_resolve_map_parse("Test.Example=127.0.0.1:8080", &m, &err) == 0);
	CHECK_STR(m.name, "test.example");
	CHECK(eg_resolve_map_parse("t.example=[::1]:81", &m, &err) == 0);
	CHECK(eg_resolve_map_parse("t.example=127.9.9.9:1", &m, &err) == 0);
	CHECK(eg_resolve_map_parse("t.example=192.0.2.1:80", &m, &err) < 0);
	CHECK_CONTAINS(err.msg, "not a loopback address");
	CHECK(eg_resolve_map_parse("t.example=8.8.8.8:53", &m, &err) < 0);
	CHECK(eg_resolve_map_parse("t.example=127.0.0.1", &m, &err) < 0);
	CHECK(eg_resolve_map_parse("t.example=127.0.0.1:0", &m, &err) < 0);
	CHECK(eg_resolve_map_parse("t.example=127.0.0.1:65536", &m, &err) < 0);
	CHECK(eg_resolve_map_parse("=127.0.0.1:80", &m, &err) < 0);
	CHECK(eg_resolve_map_parse("1.2.3.4=127.0.0.1:80", &m, &err) < 0);
	CHECK(eg_resolve_map_parse("t.example=localhost:80", &m, &err) < 0);
}

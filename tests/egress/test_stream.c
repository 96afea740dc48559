/* test_stream.c - the sidecar's deadline-keeping reads and writes. */
#include <fcntl.h>
#include <sys/socket.h>

#include "stream.h"
#include "unit.h"

AB_TEST(stream_read_times_out_on_a_silent_peer)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
	eg_stream s;
	eg_stream_init(&s, sv[0], 50);
	char buf[8];
	errno = 0;
	CHECK(eg_read(&s, buf, sizeof(buf)) == -1);
	CHECK(errno == ETIMEDOUT);
	CHECK(write(sv[1], "hi", 2) == 2);
	CHECK(eg_read(&s, buf, sizeof(buf)) == 2);
	CHECK(memcmp(buf, "hi", 2) == 0);
	close(sv[1]);
	CHECK(eg_read(&s, buf, sizeof(buf)) == 0);
	eg_stream_close(&s);
	CHECK(s.fd == -1);
}

AB_TEST(stream_write_times_out_when_the_peer_reads_nothing)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
	eg_stream s;
	eg_stream_init(&s, sv[0], 50);
	static char big[8 << 20];
	errno = 0;
	CHECK(eg_write_all(&s, big, sizeof(big)) == -1);
	CHECK(errno == ETIMEDOUT);
	eg_stream_close(&s);
	close(sv[1]);
}

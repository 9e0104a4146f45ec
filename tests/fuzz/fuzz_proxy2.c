/* libFuzzer: arbitrary bytes through the PROXY v2 reader, fed byte by byte
 * as the stream glue does (exactly the header, never more), and whole as a
 * datagram (gw_proxy2_strip_dgram). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "transports/proxy2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The datagram form: the header, if accepted, lies within the datagram
 * and agrees with the stream reader's length. */
static void fuzz_dgram(const uint8_t *data, size_t size)
{
	gw_proxy2_t h;
	int r = gw_proxy2_strip_dgram(data, size, &h);

	if (r < 0)
		return;
	if (r < GW_PROXY2_HEADER_LEN || (size_t)r > size ||
	    gw_proxy2_need(data, size, size) != r)
		abort();
	if (h.has_addr && h.src.ss_family != AF_INET &&
	    h.src.ss_family != AF_INET6)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int need = 0;
	size_t have;

	fuzz_dgram(data, size);

	for (have = 1; have <= size; have++) {
		need = gw_proxy2_need(data, have, GW_PROXY2_MAX_LEN);
		if (need < 0)
			return 0;
		if (need > 0)
			break;
	}
	if (need <= 0 || (size_t)need > size)
		return 0;
	if (need < GW_PROXY2_HEADER_LEN || need > GW_PROXY2_MAX_LEN)
		abort();
	gw_proxy2_t h;
	if (gw_proxy2_parse(data, (size_t)need, &h) == 0 && h.has_addr &&
	    h.src.ss_family != AF_INET && h.src.ss_family != AF_INET6)
		abort();
	/* any other length is refused */
	if (gw_proxy2_parse(data, (size_t)need - 1, &h) == 0)
		abort();
	return 0;
}

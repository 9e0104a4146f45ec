/* libFuzzer: arbitrary bytes through the PROXY v2 reader, fed byte by byte
 * as the glue does (exactly the header, never more). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "transports/proxy2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int need = 0;
	size_t have;

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

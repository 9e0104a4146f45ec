/* libFuzzer: arbitrary byte streams through the framer, fed in chunks whose
 * sizes come from the input itself, as a connection would see them. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "transports/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t chunk = (size_t)data[0] % 17 + 1;
	data++;
	size--;
	gw_buf_t b;
	gw_buf_init(&b, 2 + 65535 + 4096);
	for (size_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;
		if (gw_buf_append(&b, data + off, n) < 0)
			abort(); /* frames are taken as they complete */
		for (;;) {
			const uint8_t *msg;
			size_t ml;
			int r = gw_frame_next(gw_buf_head(&b), gw_buf_size(&b),
					      &msg, &ml);
			if (r < 0) {
				gw_buf_deinit(&b);
				return 0; /* connection would close */
			}
			if (r == 0)
				break;
			if (ml < GW_FRAME_MIN_MSG || msg + ml > gw_buf_tail(&b))
				abort();
			gw_buf_consume(&b, (size_t)r);
		}
	}
	gw_buf_deinit(&b);
	return 0;
}

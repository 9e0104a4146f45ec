/* DoQ stream reassembly: the input is cut into STREAM-frame-sized pieces by
 * its own bytes (piece length, FIN flag), as a hostile client would; the rx
 * must never crash, leak or accept anything but one well-formed query. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/error.h"
#include "transports/doq_stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	gw_doq_rx_t rx;
	gw_doq_rx_fault_t f;
	size_t fed = 0;
	int last = 0;

	if (size < 1)
		return 0;
	gw_doq_check_stream_id((int64_t)data[0] - 8, &f);
	gw_doq_rx_init(&rx);
	size_t i = 1;
	while (i < size) {
		uint8_t ctl = data[i++];
		size_t n = ctl & 0x3f;
		bool fin = ctl & 0x80;
		if (n > size - i)
			n = size - i;
		int r = gw_doq_rx_feed(&rx, data + i, n, fin);
		fed += n;
		i += n;
		if (r == 1) {
			size_t ml;
			const uint8_t *m = gw_doq_rx_msg(&rx, &ml);
			/* exactly prefix + message was fed, ID 0 */
			if (!m || ml + 2 != fed || m[0] || m[1] ||
			    ml != (size_t)rx.len)
				abort();
		}
		if (r < 0 && (rx.state != GW_DOQ_RX_FAILED ||
			      rx.fault == GW_DOQ_RX_OK))
			abort();
		if (last < 0 && r >= 0)
			abort(); /* nothing revives a failed stream */
		if (last == 1 && r != GW_EMALFORMED)
			abort();
		last = r;
	}
	gw_doq_rx_deinit(&rx);
	return 0;
}

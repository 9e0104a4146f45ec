/*
 * fuzz_doh_req.c - libFuzzer target for the DoH request checks and the
 * trusted-proxy walk (transports/doh_req.c).
 *
 * Input: NUL-separated fields "name\0value\0name\0value\0...", the last
 * field (after an odd split) being the body. The first byte picks HTTP/1.1
 * rules and whether X-Forwarded-For is walked from a trusted peer.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <netinet/in.h>

#include "transports/doh_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	data++;
	size--;

	gw_doh_req_t r;
	gw_doh_req_init(&r, "/dns-query", mode & 1);
	const char *fields[2];
	size_t lens[2];
	int nf = 0;
	size_t i = 0, start = 0;
	bool done_headers = false;
	while (i <= size) {
		if (i == size || data[i] == 0) {
			fields[nf] = (const char *)data + start;
			lens[nf] = i - start;
			nf++;
			start = i + 1;
			if (nf == 2) {
				gw_doh_req_header(&r, fields[0], lens[0],
						  fields[1], lens[1]);
				nf = 0;
			}
		}
		i++;
	}
	gw_doh_req_headers_done(&r);
	done_headers = true;
	if (done_headers && nf == 1)
		gw_doh_req_body(&r, (const uint8_t *)fields[0], lens[0]);
	const uint8_t *msg;
	size_t len;
	if (gw_doh_req_finish(&r, &msg, &len) == 0 && len < 12)
		__builtin_trap();

	/* the proxy walk over whatever headers arrived */
	gw_cidr_t t[1];
	memset(t, 0, sizeof(t));
	struct sockaddr_in *a = (struct sockaddr_in *)&t[0].addr;
	a->sin_family = AF_INET;
	t[0].prefix = (mode & 2) ? 0 : 8; /* 0/0 trusts every hop */
	struct sockaddr_storage peer, out;
	memset(&peer, 0, sizeof(peer));
	((struct sockaddr_in *)&peer)->sin_family = AF_INET;
	gw_doh_client_addr(t, 1, &peer, r.xff, r.fwd, &out);
	gw_doh_req_deinit(&r);
	return 0;
}

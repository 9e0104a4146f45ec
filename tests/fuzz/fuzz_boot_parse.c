/* libFuzzer: arbitrary bytes as the bootstrap resolver's answer
 * (upstream/bootstrap.c). The first byte picks the question type (A or
 * AAAA); the rest is the answer to "doh.example.test" with ID 0x4242.
 * Checks the parser's contract: it returns 0, GW_EMALFORMED or GW_EAGAIN,
 * and on 0 it has read an address out of the input's bounds (ASan) and
 * the input starts with our ID and question. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/dns.h"
#include "gateway/error.h"
#include "upstream/attempt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t addr[16];
	uint32_t ttl = 0;
	uint16_t qtype;
	uint8_t *copy;
	int r;

	if (size < 1)
		return 0;
	qtype = (data[0] & 1) ? 28 : 1;
	/* an exact-size heap copy: ASan sees every read past the end */
	copy = malloc(size - 1 ? size - 1 : 1);
	if (!copy)
		return 0;
	memcpy(copy, data + 1, size - 1);
	r = gw_up_boot_parse(copy, size - 1, "doh.example.test", qtype, 0x4242,
			     addr, &ttl);
	if (r != 0 && r != GW_EMALFORMED && r != GW_EAGAIN)
		abort();
	if (r == 0 && (size - 1 < GW_DNS_HEADER_LEN || gw_dns_get16(copy) != 0x4242))
		abort();
	free(copy);
	return 0;
}

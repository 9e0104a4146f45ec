/* libFuzzer: arbitrary bytes through the admin listener's HTTP request-head
 * reader, as one buffer and as every prefix a connection could see; and the
 * Prometheus writer with label values and HELP text taken from the input.
 * Checks the reader's contract: a complete head's length is within the
 * input, prefixes of an accepted head ask for more, the path is a
 * NUL-terminated origin-form path, and the exposition escapes every value
 * (no raw line feed inside a sample line). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/admin_http.h"
#include "gateway/metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_exposition(const uint8_t *data, size_t size)
{
	char val[256];
	size_t n = size < sizeof(val) - 1 ? size : sizeof(val) - 1;
	memcpy(val, data, n);
	val[n] = '\0'; /* a NUL in the input ends the value early */

	gw_buf_t b;
	gw_prom_t p;
	gw_buf_init(&b, 1 << 16);
	gw_prom_init(&p, &b);
	gw_prom_family(&p, "fuzz_total", GW_PROM_COUNTER, val);
	gw_prom_u64(&p, (const char *const[]){"v", val, NULL}, 1);
	if (gw_prom_finish(&p) != 0)
		abort();
	/* exactly three lines: HELP, TYPE, the sample */
	unsigned lines = 0;
	for (size_t i = 0; i < gw_buf_size(&b); i++)
		lines += gw_buf_head(&b)[i] == '\n';
	if (lines != 3)
		abort();
	gw_buf_deinit(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	gw_admin_req_t req;
	int r = gw_admin_http_parse(data, size, &req);

	if (r > 0) {
		if ((size_t)r > size || (size_t)r > GW_ADMIN_MAX_HEAD)
			abort();
		if (req.path[0] != '/' ||
		    strlen(req.path) >= sizeof(req.path) ||
		    strchr(req.path, '?') || strchr(req.path, ' '))
			abort();
		if (req.method > GW_ADMIN_OTHER)
			abort();
		/* the head alone parses the same; any shorter prefix is
		 * incomplete or already refused, never accepted */
		gw_admin_req_t again;
		if (gw_admin_http_parse(data, (size_t)r, &again) != r ||
		    strcmp(again.path, req.path) != 0)
			abort();
		for (size_t n = 0; n < (size_t)r; n++)
			if (gw_admin_http_parse(data, n, &again) > 0)
				abort();
	} else if (r < 0) {
		if (!strcmp(gw_admin_http_reason(-r), "Unknown"))
			abort(); /* every refusal is a status we can send */
	} else if (size >= GW_ADMIN_MAX_HEAD) {
		abort(); /* a full buffer is never "need more" */
	}
	check_exposition(data, size);
	return 0;
}

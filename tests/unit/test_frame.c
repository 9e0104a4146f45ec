/* Length framing: every split point of a stream of frames gives the same
 * frames, and lengths below a DNS header are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/error.h"
#include "transports/frame.h"

/* Feeds stream in two parts split at `split`, taking frames as a connection
 * would (buffer, take complete frames from the front). Returns frames seen. */
static int feed_split(const uint8_t *stream, size_t len, size_t split,
		      size_t *sizes, int max)
{
	gw_buf_t b;
	gw_buf_init(&b, 70000);
	int n = 0;
	size_t parts[2][2] = {{0, split}, {split, len}};
	for (int p = 0; p < 2; p++) {
		assert_int_equal(gw_buf_append(&b, stream + parts[p][0],
					       parts[p][1] - parts[p][0]),
				 0);
		for (;;) {
			const uint8_t *msg;
			size_t ml;
			int r = gw_frame_next(gw_buf_head(&b), gw_buf_size(&b),
					      &msg, &ml);
			assert_true(r >= 0);
			if (r == 0)
				break;
			assert_true(n < max);
			assert_int_equal(msg[0], (uint8_t)n); /* frame index */
			sizes[n++] = ml;
			gw_buf_consume(&b, (size_t)r);
		}
	}
	assert_int_equal(gw_buf_size(&b), 0);
	gw_buf_deinit(&b);
	return n;
}

static void test_frame_split_at_every_byte(void **state)
{
	(void)state;
	static const size_t lens[] = {12, 13, 300, 12, 512};
	uint8_t stream[2048];
	size_t len = 0;
	for (size_t i = 0; i < 5; i++) {
		stream[len] = (uint8_t)(lens[i] >> 8);
		stream[len + 1] = (uint8_t)lens[i];
		memset(stream + len + 2, 0xab, lens[i]);
		stream[len + 2] = (uint8_t)i;
		len += 2 + lens[i];
	}
	for (size_t split = 0; split <= len; split++) {
		size_t sizes[8];
		int n = feed_split(stream, len, split, sizes, 8);
		assert_int_equal(n, 5);
		for (int i = 0; i < 5; i++)
			assert_int_equal(sizes[i], lens[i]);
	}
}

static void test_frame_short_lengths_refused(void **state)
{
	(void)state;
	const uint8_t *msg;
	size_t ml;
	uint8_t zero[2] = {0, 0};
	assert_int_equal(gw_frame_next(zero, 2, &msg, &ml), GW_EMALFORMED);
	uint8_t eleven[13] = {0, 11};
	assert_int_equal(gw_frame_next(eleven, 13, &msg, &ml), GW_EMALFORMED);
	/* refused as soon as the prefix is known, before the body arrives */
	assert_int_equal(gw_frame_next(eleven, 2, &msg, &ml), GW_EMALFORMED);
	uint8_t one[1] = {0};
	assert_int_equal(gw_frame_next(one, 1, &msg, &ml), 0);
	uint8_t max[2] = {0xff, 0xff};
	assert_int_equal(gw_frame_next(max, 2, &msg, &ml), 0);
}

static void test_frame_append_prefix(void **state)
{
	(void)state;
	gw_buf_t b;
	gw_buf_init(&b, 60);
	uint8_t m[40];
	memset(m, 7, sizeof(m));
	assert_int_equal(gw_frame_append(&b, m, sizeof(m)), 0);
	assert_int_equal(gw_buf_size(&b), 42);
	assert_int_equal(gw_buf_head(&b)[0], 0);
	assert_int_equal(gw_buf_head(&b)[1], 40);
	/* past the buffer's cap: refused, nothing appended */
	assert_int_equal(gw_frame_append(&b, m, sizeof(m)), GW_ETOOBIG);
	assert_int_equal(gw_buf_size(&b), 42);
	gw_buf_deinit(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_split_at_every_byte),
		cmocka_unit_test(test_frame_short_lengths_refused),
		cmocka_unit_test(test_frame_append_prefix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

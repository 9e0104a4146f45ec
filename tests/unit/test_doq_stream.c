/* DoQ stream rules (RFC 9250 4.2): reassembly over any split, FIN handling,
 * and every protocol error the stream itself can reveal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/error.h"
#include "transports/doq_stream.h"

/* example.com. A IN, ID id, with an OPT carrying option opt (0 = no OPT). */
static size_t make_query(uint8_t *out, uint16_t id, uint16_t opt)
{
	static const uint8_t q[] = {0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
				    7, 'e', 'x', 'a', 'm', 'p', 'l', 'e',
				    3, 'c', 'o', 'm', 0, 0, 1, 0, 1};
	size_t n = sizeof(q);
	memcpy(out, q, n);
	out[0] = (uint8_t)(id >> 8);
	out[1] = (uint8_t)id;
	if (opt) {
		out[11] = 1; /* ARCOUNT */
		static const uint8_t rr[] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0,
					     0, 4};
		memcpy(out + n, rr, sizeof(rr));
		n += sizeof(rr);
		out[n++] = (uint8_t)(opt >> 8);
		out[n++] = (uint8_t)opt;
		out[n++] = 0;
		out[n++] = 0;
	}
	return n;
}

static size_t make_stream(uint8_t *out, uint16_t id, uint16_t opt)
{
	size_t n = make_query(out + 2, id, opt);
	out[0] = (uint8_t)(n >> 8);
	out[1] = (uint8_t)n;
	return n + 2;
}

/* Every split into two pieces, FIN on the last piece (or a bare FIN). */
static void test_doq_rx_every_split(void **state)
{
	uint8_t s[128];
	size_t n = make_stream(s, 0, 12);
	for (size_t split = 0; split <= n; split++) {
		for (int bare_fin = 0; bare_fin < 2; bare_fin++) {
			gw_doq_rx_t rx;
			gw_doq_rx_init(&rx);
			assert_int_equal(gw_doq_rx_feed(&rx, s, split, false), 0);
			int r = gw_doq_rx_feed(&rx, s + split, n - split, !bare_fin);
			if (bare_fin) {
				assert_int_equal(r, 0);
				r = gw_doq_rx_feed(&rx, NULL, 0, true);
			}
			assert_int_equal(r, 1);
			size_t ml;
			const uint8_t *m = gw_doq_rx_msg(&rx, &ml);
			assert_int_equal(ml, n - 2);
			assert_memory_equal(m, s + 2, ml);
			gw_doq_rx_deinit(&rx);
		}
	}
}

/* 1-byte STREAM frames all the way, prefix included. */
static void test_doq_rx_one_byte_frames(void **state)
{
	uint8_t s[128];
	size_t n = make_stream(s, 0, 0);
	gw_doq_rx_t rx;
	gw_doq_rx_init(&rx);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(gw_doq_rx_feed(&rx, s + i, 1, i == n - 1),
				 i == n - 1 ? 1 : 0);
	assert_int_equal(rx.state, GW_DOQ_RX_READY);
	gw_doq_rx_deinit(&rx);
}

static void expect_fault(const uint8_t *s, size_t n, bool fin, int ret,
			 gw_doq_rx_fault_t fault)
{
	gw_doq_rx_t rx;
	gw_doq_rx_init(&rx);
	assert_int_equal(gw_doq_rx_feed(&rx, s, n, fin), ret);
	assert_int_equal(rx.fault, fault);
	/* nothing counts after a fault */
	assert_int_equal(gw_doq_rx_feed(&rx, s, 1, true), GW_EMALFORMED);
	gw_doq_rx_deinit(&rx);
}

static void test_doq_rx_early_fin(void **state)
{
	uint8_t s[128];
	size_t n = make_stream(s, 0, 0);
	/* FIN inside the prefix, right after it, and one byte short */
	expect_fault(s, 0, true, GW_EMALFORMED, GW_DOQ_RX_EARLY_FIN);
	expect_fault(s, 1, true, GW_EMALFORMED, GW_DOQ_RX_EARLY_FIN);
	expect_fault(s, 2, true, GW_EMALFORMED, GW_DOQ_RX_EARLY_FIN);
	expect_fault(s, n - 1, true, GW_EMALFORMED, GW_DOQ_RX_EARLY_FIN);
}

static void test_doq_rx_extra_data(void **state)
{
	uint8_t s[256];
	size_t n = make_stream(s, 0, 0);
	s[n] = 0xff;
	expect_fault(s, n + 1, true, GW_EMALFORMED, GW_DOQ_RX_EXTRA_DATA);
	/* two queries on one stream, second in a later frame */
	size_t m = make_stream(s + n, 0, 0);
	gw_doq_rx_t rx;
	gw_doq_rx_init(&rx);
	assert_int_equal(gw_doq_rx_feed(&rx, s, n, false), 0);
	assert_int_equal(rx.state, GW_DOQ_RX_WAIT_FIN);
	assert_int_equal(gw_doq_rx_feed(&rx, s + n, m, true), GW_EMALFORMED);
	assert_int_equal(rx.fault, GW_DOQ_RX_EXTRA_DATA);
	gw_doq_rx_deinit(&rx);
}

static void test_doq_rx_nonzero_id(void **state)
{
	uint8_t s[128];
	size_t n = make_stream(s, 0x1234, 0);
	expect_fault(s, n, true, GW_EMALFORMED, GW_DOQ_RX_NONZERO_ID);
	n = make_stream(s, 1, 0);
	/* found as soon as the message is whole, before FIN */
	expect_fault(s, n, false, GW_EMALFORMED, GW_DOQ_RX_NONZERO_ID);
}

static void test_doq_rx_keepalive(void **state)
{
	uint8_t s[128];
	size_t n = make_stream(s, 0, 11);
	expect_fault(s, n, true, GW_EMALFORMED, GW_DOQ_RX_KEEPALIVE);
}

static void test_doq_rx_too_short(void **state)
{
	uint8_t s[2] = {0, 0};
	expect_fault(s, 2, false, GW_EMALFORMED, GW_DOQ_RX_TOO_SHORT);
	s[1] = 11;
	expect_fault(s, 2, false, GW_EMALFORMED, GW_DOQ_RX_TOO_SHORT);
}

/* Unparseable message with ID 0: not the stream's business (FORMERR). */
static void test_doq_rx_garbage_passes(void **state)
{
	uint8_t s[2 + 20] = {0, 20};
	memset(s + 4, 0xff, 18);
	gw_doq_rx_t rx;
	gw_doq_rx_init(&rx);
	assert_int_equal(gw_doq_rx_feed(&rx, s, sizeof(s), true), 1);
	gw_doq_rx_deinit(&rx);
}

/* Announcing 64 KiB costs nothing until the bytes come. */
static void test_doq_rx_lazy_buffer(void **state)
{
	uint8_t s[3] = {0xff, 0xff, 0};
	gw_doq_rx_t rx;
	gw_doq_rx_init(&rx);
	assert_int_equal(gw_doq_rx_feed(&rx, s, 3, false), 0);
	assert_true(rx.msg.cap < 4096);
	gw_doq_rx_deinit(&rx);
}

static void test_doq_stream_ids(void **state)
{
	gw_doq_rx_fault_t f;
	assert_int_equal(gw_doq_check_stream_id(0, &f), 0);
	assert_int_equal(gw_doq_check_stream_id(4, &f), 0);
	assert_int_equal(gw_doq_check_stream_id(2, &f), GW_EMALFORMED);
	assert_int_equal(f, GW_DOQ_RX_UNI_STREAM);
	assert_int_equal(gw_doq_check_stream_id(3, &f), GW_EMALFORMED);
	assert_int_equal(gw_doq_check_stream_id(1, &f), GW_EMALFORMED);
	assert_int_equal(f, GW_DOQ_RX_SERVER_STREAM);
}

static void test_doq_frame_answer(void **state)
{
	uint8_t msg[300], out[302];
	memset(msg, 7, sizeof(msg));
	assert_int_equal(gw_doq_frame_answer(msg, 300, out, sizeof(out)), 302);
	assert_int_equal(out[0], 1);
	assert_int_equal(out[1], 44);
	assert_int_equal(gw_doq_frame_answer(msg, 300, out, 301), GW_ENOSPC);
	assert_int_equal(gw_doq_frame_answer(msg, 70000, out, 301), GW_EINVAL);
	assert_string_equal(gw_doq_error_name(2), "DOQ_PROTOCOL_ERROR");
	assert_string_equal(gw_doq_error_name(4), "DOQ_EXCESSIVE_LOAD");
}

/* 0-RTT: only QUERY (opcode 0) is answered from early data. */
static void test_doq_early_refused(void **state)
{
	uint8_t m[17] = {0, 0, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0,
			 0, 0, 1, 0, 1};
	(void)state;
	/* a QUERY, early or not (RD set, as clients send) */
	assert_false(gw_doq_early_refused(m, sizeof(m), true));
	assert_false(gw_doq_early_refused(m, sizeof(m), false));
	/* NOTIFY (4), UPDATE (5), IQUERY (1), STATUS (2), 15: refused early */
	static const uint8_t ops[] = {1, 2, 4, 5, 6, 15};
	for (size_t i = 0; i < sizeof(ops); i++) {
		m[2] = (uint8_t)(ops[i] << 3 | 0x01);
		assert_true(gw_doq_early_refused(m, sizeof(m), true));
		/* after the handshake the opcode is the pipeline's business */
		assert_false(gw_doq_early_refused(m, sizeof(m), false));
	}
	/* QR and RD around an opcode-0 field do not count as an opcode */
	m[2] = 0x81;
	assert_false(gw_doq_early_refused(m, sizeof(m), true));
	/* too short for a header: left to the parser (FORMERR) */
	m[2] = 5 << 3;
	assert_false(gw_doq_early_refused(m, 11, true));
	assert_true(gw_doq_early_refused(m, 12, true));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doq_rx_every_split),
		cmocka_unit_test(test_doq_rx_one_byte_frames),
		cmocka_unit_test(test_doq_rx_early_fin),
		cmocka_unit_test(test_doq_rx_extra_data),
		cmocka_unit_test(test_doq_rx_nonzero_id),
		cmocka_unit_test(test_doq_rx_keepalive),
		cmocka_unit_test(test_doq_rx_too_short),
		cmocka_unit_test(test_doq_rx_garbage_passes),
		cmocka_unit_test(test_doq_rx_lazy_buffer),
		cmocka_unit_test(test_doq_stream_ids),
		cmocka_unit_test(test_doq_frame_answer),
		cmocka_unit_test(test_doq_early_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

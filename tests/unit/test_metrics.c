/*
 * test_metrics.c - the Prometheus text writer (gateway/metrics.h) and the
 * per-worker counters (gateway/wmetrics.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/error.h"
#include "gateway/metrics.h"
#include "gateway/wmetrics.h"

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static gw_buf_t buf;
static gw_prom_t p;

static int setup(void **state)
{
	gw_buf_init(&buf, 1 << 16);
	gw_prom_init(&p, &buf);
	return 0;
}

static int teardown(void **state)
{
	gw_buf_deinit(&buf);
	return 0;
}

/* The text written so far, NUL-terminated. */
static const char *text(void)
{
	static char s[1 << 16];
	size_t n = gw_buf_size(&buf);
	assert_true(n < sizeof(s));
	memcpy(s, gw_buf_head(&buf), n);
	s[n] = '\0';
	return s;
}

static void test_metrics_counter_with_labels(void **state)
{
	gw_prom_family(&p, "dnsgw_requests_total", GW_PROM_COUNTER,
		       "Queries received.");
	gw_prom_u64(&p, L("transport", "dot", "type", "A"), 42);
	gw_prom_u64(&p, NULL, 18446744073709551615ull);
	assert_int_equal(gw_prom_finish(&p), 0);
	assert_string_equal(
	    text(), "# HELP dnsgw_requests_total Queries received.\n"
		    "# TYPE dnsgw_requests_total counter\n"
		    "dnsgw_requests_total{transport=\"dot\",type=\"A\"} 42\n"
		    "dnsgw_requests_total 18446744073709551615\n");
}

static void test_metrics_escaping(void **state)
{
	/* label values: \ " and LF escaped; HELP: \ and LF only */
	gw_prom_family(&p, "x_total", GW_PROM_COUNTER, "a \\ b\nc \"quoted\"");
	gw_prom_u64(&p, L("upstream", "tls://[::1]:853#a\"b\\c\nd"), 1);
	assert_int_equal(gw_prom_finish(&p), 0);
	assert_string_equal(
	    text(),
	    "# HELP x_total a \\\\ b\\nc \"quoted\"\n"
	    "# TYPE x_total counter\n"
	    "x_total{upstream=\"tls://[::1]:853#a\\\"b\\\\c\\nd\"} 1\n");
}

static void test_metrics_gauge_doubles(void **state)
{
	gw_prom_family(&p, "g", GW_PROM_GAUGE, NULL);
	gw_prom_double(&p, L("k", "a"), 0.1);
	gw_prom_double(&p, L("k", "b"), INFINITY);
	gw_prom_double(&p, L("k", "c"), -INFINITY);
	gw_prom_double(&p, L("k", "d"), NAN);
	gw_prom_double(&p, L("k", "e"), 1e-300);
	gw_prom_double(&p, L("k", "f"), 12345678);
	assert_int_equal(gw_prom_finish(&p), 0);
	assert_string_equal(text(), "# TYPE g gauge\n"
				    "g{k=\"a\"} 0.1\n"
				    "g{k=\"b\"} +Inf\n"
				    "g{k=\"c\"} -Inf\n"
				    "g{k=\"d\"} NaN\n"
				    "g{k=\"e\"} 1e-300\n"
				    "g{k=\"f\"} 12345678\n");
}

static void test_metrics_fmt_double_roundtrips(void **state)
{
	static const double v[] = {
	    0.1, 1.0 / 3, 0.00025, 8.192, 1e21, 5e-324, 1.7976931348623157e308,
	    -2.5};
	char s[40];
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		assert_true(gw_prom_fmt_double(v[i], s, sizeof(s)) > 0);
		assert_true(strtod(s, NULL) == v[i]);
	}
	assert_int_equal(gw_prom_fmt_double(1.0 / 3, s, 5), GW_ENOSPC);
}

static void test_metrics_histogram(void **state)
{
	const double bounds[] = {0.001, 0.01, 0.1};
	const uint64_t counts[] = {1, 0, 3, 2}; /* last: above 0.1 */
	gw_prom_family(&p, "lat_seconds", GW_PROM_HISTOGRAM, "Latency.");
	gw_prom_histogram(&p, L("transport", "udp"), bounds, counts, 3, 1.5);
	gw_prom_histogram(&p, NULL, bounds, counts, 3, 0);
	assert_int_equal(gw_prom_finish(&p), 0);
	assert_string_equal(
	    text(), "# HELP lat_seconds Latency.\n"
		    "# TYPE lat_seconds histogram\n"
		    "lat_seconds_bucket{transport=\"udp\",le=\"0.001\"} 1\n"
		    "lat_seconds_bucket{transport=\"udp\",le=\"0.01\"} 1\n"
		    "lat_seconds_bucket{transport=\"udp\",le=\"0.1\"} 4\n"
		    "lat_seconds_bucket{transport=\"udp\",le=\"+Inf\"} 6\n"
		    "lat_seconds_sum{transport=\"udp\"} 1.5\n"
		    "lat_seconds_count{transport=\"udp\"} 6\n"
		    "lat_seconds_bucket{le=\"0.001\"} 1\n"
		    "lat_seconds_bucket{le=\"0.01\"} 1\n"
		    "lat_seconds_bucket{le=\"0.1\"} 4\n"
		    "lat_seconds_bucket{le=\"+Inf\"} 6\n"
		    "lat_seconds_sum 0\n"
		    "lat_seconds_count 6\n");
}

static void test_metrics_rejects_bad_names(void **state)
{
	static const char *const bad_metric[] = {"",	"1abc", "a-b",
						 "a b", "é",	"a\n"};
	for (size_t i = 0; i < sizeof(bad_metric) / sizeof(*bad_metric); i++)
		assert_false(gw_prom_valid_metric_name(bad_metric[i]));
	assert_true(gw_prom_valid_metric_name("a:b_c9"));
	assert_true(gw_prom_valid_metric_name(":x"));
	assert_false(gw_prom_valid_label_name("__name__"));
	assert_false(gw_prom_valid_label_name("a:b"));
	assert_false(gw_prom_valid_label_name("9"));
	assert_true(gw_prom_valid_label_name("_x9"));

	gw_prom_family(&p, "bad-name", GW_PROM_COUNTER, NULL);
	assert_int_equal(gw_prom_finish(&p), GW_EINVAL);
	/* sticky: nothing more is written */
	gw_prom_family(&p, "good", GW_PROM_COUNTER, NULL);
	assert_int_equal(gw_buf_size(&buf), 0);
}

static void test_metrics_rejects_misuse(void **state)
{
	const double desc[] = {0.1, 0.01};
	const uint64_t c[] = {0, 0, 0};

	/* a sample before any family */
	gw_prom_u64(&p, NULL, 1);
	assert_int_equal(gw_prom_finish(&p), GW_EINVAL);

	gw_prom_init(&p, &buf);
	gw_prom_family(&p, "h", GW_PROM_HISTOGRAM, NULL);
	gw_prom_u64(&p, NULL, 1); /* a plain sample in a histogram family */
	assert_int_equal(gw_prom_finish(&p), GW_EINVAL);

	gw_prom_init(&p, &buf);
	gw_prom_family(&p, "h", GW_PROM_HISTOGRAM, NULL);
	gw_prom_histogram(&p, NULL, desc, c, 2, 0); /* bounds descend */
	assert_int_equal(gw_prom_finish(&p), GW_EINVAL);

	gw_prom_init(&p, &buf);
	gw_prom_family(&p, "h", GW_PROM_HISTOGRAM, NULL);
	gw_prom_histogram(&p, L("le", "x"), desc, c, 0, 0); /* le reserved */
	assert_int_equal(gw_prom_finish(&p), GW_EINVAL);

	gw_prom_init(&p, &buf);
	gw_prom_family(&p, "c", GW_PROM_COUNTER, NULL);
	gw_prom_u64(&p, L("bad-label", "x"), 1);
	assert_int_equal(gw_prom_finish(&p), GW_EINVAL);
}

static void test_metrics_bounded_output(void **state)
{
	gw_buf_t small;
	gw_buf_init(&small, 64);
	gw_prom_init(&p, &small);
	gw_prom_family(&p, "dnsgw_a_long_family_name_total", GW_PROM_COUNTER,
		       "Some help text that will not fit in 64 bytes.");
	gw_prom_u64(&p, NULL, 1);
	assert_int_equal(gw_prom_finish(&p), GW_ETOOBIG);
	assert_true(gw_buf_size(&small) <= 64);
	gw_buf_deinit(&small);
}

static void test_metrics_worker_counters(void **state)
{
	static gw_worker_metrics_t m; /* zeroed */

	gw_wm_request(&m, GW_PROTO_DOT, 1);
	gw_wm_request(&m, GW_PROTO_DOT, 28);
	gw_wm_request(&m, GW_PROTO_DOT, 28);
	gw_wm_request(&m, GW_PROTO_UDP, 999); /* other */
	gw_wm_request(&m, GW_PROTO_UDP, 0);   /* unparsable: other */
	assert_int_equal(m.requests[GW_PROTO_DOT][gw_wm_qtype_index(1)], 1);
	assert_int_equal(m.requests[GW_PROTO_DOT][gw_wm_qtype_index(28)], 2);
	assert_int_equal(m.requests[GW_PROTO_UDP][GW_WM_QTYPES - 1], 2);
	assert_string_equal(gw_wm_qtype_name(gw_wm_qtype_index(65)), "HTTPS");
	assert_string_equal(gw_wm_qtype_name(gw_wm_qtype_index(999)), "other");

	/* latency buckets: upper bounds inclusive, +Inf past 8.192 s */
	gw_wm_response(&m, GW_PROTO_UDP, 0, 0.0);
	gw_wm_response(&m, GW_PROTO_UDP, 0, 0.00025);
	gw_wm_response(&m, GW_PROTO_UDP, 3, 0.0003);
	gw_wm_response(&m, GW_PROTO_UDP, 2, 9.0);
	gw_wm_response(&m, GW_PROTO_UDP, 2, -1.0); /* clock oddity: 0 */
	assert_int_equal(m.latency[GW_PROTO_UDP][0], 3);
	assert_int_equal(m.latency[GW_PROTO_UDP][1], 1);
	assert_int_equal(m.latency[GW_PROTO_UDP][GW_WM_LAT_BOUNDS], 1);
	assert_int_equal(m.responses[0], 2);
	assert_int_equal(m.responses[2], 2);
	assert_int_equal(m.responses[3], 1);
	assert_int_equal(m.latency_sum_ns[GW_PROTO_UDP],
			 250000 + 300000 + 9000000000ull);
	assert_string_equal(gw_wm_rcode_name(3), "NXDOMAIN");
	assert_string_equal(gw_wm_rcode_name(15), "RCODE15");
	assert_string_equal(gw_wm_transport_name(GW_PROTO_DOQ), "doq");

	gw_wm_conn_open(&m, GW_PROTO_DOH);
	gw_wm_conn_open(&m, GW_PROTO_DOH);
	gw_wm_conn_close(&m, GW_PROTO_DOH);
	gw_wm_handshake(&m, GW_PROTO_DOH, true);
	gw_wm_handshake(&m, GW_PROTO_DOH, false);
	assert_int_equal(gw_wm_load(&m.conns_opened[GW_PROTO_DOH]), 2);
	assert_int_equal(gw_wm_load(&m.conns_closed[GW_PROTO_DOH]), 1);
	assert_int_equal(gw_wm_load(&m.handshakes[GW_PROTO_DOH]), 1);
	assert_int_equal(gw_wm_load(&m.handshake_failures[GW_PROTO_DOH]), 1);
}

static void test_metrics_heartbeat_and_process(void **state)
{
	static gw_worker_metrics_t m;
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(loop);
	uint64_t t0 = gw_wm_now_ms();
	gw_wm_start(&m, loop);
	assert_true(gw_wm_load(&m.heartbeat_ms) >= t0);
	uint64_t first = gw_wm_load(&m.heartbeat_ms);
	/* the timer does not keep the loop alive: ev_run returns at once */
	ev_run(loop, 0);
	/* once it fires, the stamp moves */
	ev_sleep(GW_WM_HEARTBEAT_S + 0.05);
	ev_run(loop, EVRUN_NOWAIT);
	assert_true(gw_wm_load(&m.heartbeat_ms) > first);
	ev_loop_destroy(loop);

	uint64_t ok = gw_metrics_reloads(true), bad = gw_metrics_reloads(false);
	gw_metrics_reload_inc(true);
	gw_metrics_reload_inc(false);
	gw_metrics_reload_inc(false);
	assert_int_equal(gw_metrics_reloads(true), ok + 1);
	assert_int_equal(gw_metrics_reloads(false), bad + 2);

	time_t nb, na;
	gw_metrics_cert_set(100, 200);
	gw_metrics_cert_get(&nb, &na);
	assert_int_equal(nb, 100);
	assert_int_equal(na, 200);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_metrics_counter_with_labels,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_metrics_escaping, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_metrics_gauge_doubles, setup,
					    teardown),
	    cmocka_unit_test(test_metrics_fmt_double_roundtrips),
	    cmocka_unit_test_setup_teardown(test_metrics_histogram, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_metrics_rejects_bad_names,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_metrics_rejects_misuse, setup,
					    teardown),
	    cmocka_unit_test(test_metrics_bounded_output),
	    cmocka_unit_test(test_metrics_worker_counters),
	    cmocka_unit_test(test_metrics_heartbeat_and_process),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

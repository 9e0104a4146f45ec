/*
 * test_admin.c - /healthz and /readyz verdicts and the /metrics collector
 * (gateway/admin.h) over hand-made worker state: a stalled heartbeat, a
 * drain, a certificate outside its validity window.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/admin.h"
#include "gateway/error.h"

static gw_conf_t conf;
static gw_worker_t *workers;
static gw_admin_t *admin;

static int setup(void **state)
{
	char err[256];
	gw_conf_defaults(&conf);
	/* a free loopback port (the config refuses port 0) */
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	close(fd);
	snprintf(conf.admin, sizeof(conf.admin), "127.0.0.1:%u",
		 ntohs(sin.sin_port));
	assert_int_equal(gw_conf_parse_addr(conf.admin, &conf.admin_addr,
					    &conf.admin_addrlen, err,
					    sizeof(err)),
			 0);
	assert_int_equal(gw_endpoint_parse("udp://127.0.0.1:53", true,
					   &conf.upstream[0], err, sizeof(err)),
			 0);
	conf.n_upstream = 1;
	assert_int_equal(gw_endpoint_parse("dot://127.0.0.1:853", false,
					   &conf.listen[0], err, sizeof(err)),
			 0);
	conf.n_listen = 1;
	workers = calloc(2, sizeof(*workers));
	assert_non_null(workers);
	uint64_t now = gw_wm_now_ms();
	for (unsigned i = 0; i < 2; i++) {
		workers[i].id = i;
		workers[i].conf = &conf;
		workers[i].metrics.heartbeat_ms = now;
	}
	admin = gw_admin_new(&conf, workers, 2, err, sizeof(err));
	assert_non_null(admin);
	gw_metrics_cert_set(0, 0);
	return 0;
}

static int teardown(void **state)
{
	gw_admin_free(admin);
	free(workers);
	return 0;
}

static void test_admin_healthz_needs_every_heartbeat(void **state)
{
	char why[128];
	assert_int_equal(gw_admin_healthz(admin, why, sizeof(why)), 200);
	assert_string_equal(why, "ok\n");
	/* worker 1 last ticked 3 s ago: its loop is stuck */
	workers[1].metrics.heartbeat_ms = gw_wm_now_ms() - 3000;
	assert_int_equal(gw_admin_healthz(admin, why, sizeof(why)), 503);
	assert_non_null(strstr(why, "worker 1"));
	workers[1].metrics.heartbeat_ms = gw_wm_now_ms() - 1000;
	assert_int_equal(gw_admin_healthz(admin, why, sizeof(why)), 200);
}

static void test_admin_readyz_draining_first(void **state)
{
	char why[128];
	assert_int_equal(gw_admin_readyz(admin, why, sizeof(why)), 200);
	atomic_store(&workers[1].drain_requested, true);
	assert_int_equal(gw_admin_readyz(admin, why, sizeof(why)), 503);
	assert_string_equal(why, "draining\n");
}

static void test_admin_readyz_certificate_window(void **state)
{
	char why[128];
	time_t now = time(NULL);
	gw_metrics_cert_set(now - 100, now - 10); /* expired */
	assert_int_equal(gw_admin_readyz(admin, why, sizeof(why)), 503);
	assert_string_equal(why, "certificate not valid now\n");
	gw_metrics_cert_set(now + 100, now + 1000); /* not yet valid */
	assert_int_equal(gw_admin_readyz(admin, why, sizeof(why)), 503);
	gw_metrics_cert_set(now - 100, now + 1000);
	assert_int_equal(gw_admin_readyz(admin, why, sizeof(why)), 200);
	gw_metrics_cert_set(0, 0);
}

static void test_admin_readyz_needs_an_upstream(void **state)
{
	char why[128];
	conf.n_upstream = 0;
	assert_int_equal(gw_admin_readyz(admin, why, sizeof(why)), 503);
	assert_string_equal(why, "no healthy upstream\n");
	conf.n_upstream = 1;
}

static void test_admin_metrics_sum_workers(void **state)
{
	gw_buf_t b;
	gw_wm_request(&workers[0].metrics, GW_PROTO_DOT, 1);
	gw_wm_request(&workers[1].metrics, GW_PROTO_DOT, 1);
	gw_wm_request(&workers[1].metrics, GW_PROTO_DOT, 1);
	gw_wm_response(&workers[0].metrics, GW_PROTO_DOT, 3, 0.001);
	gw_wm_conn_open(&workers[0].metrics, GW_PROTO_DOT);
	gw_wm_conn_open(&workers[1].metrics, GW_PROTO_DOT);
	gw_wm_conn_close(&workers[0].metrics, GW_PROTO_DOT);
	gw_metrics_cert_set(1000, 2000);

	gw_buf_init(&b, GW_ADMIN_MAX_BODY);
	assert_int_equal(gw_admin_render_metrics(admin, &b), 0);
	assert_int_equal(gw_buf_append(&b, "", 1), 0);
	const char *t = (const char *)gw_buf_head(&b);
	assert_non_null(strstr(
	    t, "\ndnsgw_requests_total{transport=\"dot\",type=\"A\"} 3\n"));
	assert_non_null(
	    strstr(t, "\ndnsgw_responses_total{rcode=\"NXDOMAIN\"} 1\n"));
	assert_non_null(
	    strstr(t, "\ndnsgw_connections_open{transport=\"dot\"} 1\n"));
	assert_non_null(
	    strstr(t, "\ndnsgw_connections_total{transport=\"dot\"} 2\n"));
	assert_non_null(strstr(t, "\ndnsgw_workers 2\n"));
	assert_non_null(
	    strstr(t, "\ndnsgw_certificate_expiry_timestamp_seconds 2000\n"));
	/* no UDP listener: no zero series for it */
	assert_null(strstr(t, "transport=\"udp\""));
	/* the upstream is listed even with no pool to read */
	assert_non_null(strstr(t, "dnsgw_upstream_requests_total{upstream="
				  "\"udp://127.0.0.1:53\"} 0\n"));
	gw_buf_deinit(&b);
	gw_metrics_cert_set(0, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_admin_healthz_needs_every_heartbeat, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_admin_readyz_draining_first,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_admin_readyz_certificate_window, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_admin_readyz_needs_an_upstream,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_admin_metrics_sum_workers,
					    setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

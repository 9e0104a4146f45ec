/*
 * test_doh_config.c - the DoH configuration keys (gateway/config.c):
 * limits.doh_idle_timeout_ms and doh.trusted_proxies. Kept apart from
 * test_config.c so the DoH front-end owns its own vectors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "gateway/config.h"
#include "gateway/error.h"

static gw_conf_t conf; /* large: not on the stack */
static char err[512];

static int build_yaml(const char *yaml)
{
	char path[64] = "/tmp/test_doh_config_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	size_t n = strlen(yaml);
	assert_int_equal(write(fd, yaml, n), (ssize_t)n);
	close(fd);
	char *argv[] = { (char *)"dnsgw", (char *)"-c", path,
			 (char *)"--upstream", (char *)"udp://127.0.0.1:53",
			 NULL };
	char *envp[] = { NULL };
	gw_action_t action;
	err[0] = '\0';
	int r = gw_conf_build(&conf, 5, argv, envp, "/nonexistent", &action,
			      err, sizeof(err));
	unlink(path);
	return r;
}

static void test_doh_config_defaults(void **state)
{
	gw_conf_defaults(&conf);
	assert_int_equal(conf.limits.doh_idle_timeout_ms, 30000);
	assert_int_equal(conf.doh.n_trusted_proxies, 0);
}

static void test_doh_config_keys(void **state)
{
	assert_int_equal(build_yaml("limits:\n  doh_idle_timeout_ms: 1234\n"
				    "doh:\n  trusted_proxies:\n"
				    "    - 10.0.0.0/8\n    - \"::1\"\n"
				    "    - 192.0.2.7\n"),
			 0);
	assert_int_equal(conf.limits.doh_idle_timeout_ms, 1234);
	assert_int_equal(conf.doh.n_trusted_proxies, 3);
	assert_int_equal(conf.doh.trusted_proxies[0].addr.ss_family, AF_INET);
	assert_int_equal(conf.doh.trusted_proxies[0].prefix, 8);
	assert_int_equal(conf.doh.trusted_proxies[1].addr.ss_family, AF_INET6);
	assert_int_equal(conf.doh.trusted_proxies[1].prefix, 128);
	assert_int_equal(conf.doh.trusted_proxies[2].prefix, 32);
}

static void test_doh_config_errors(void **state)
{
	assert_int_equal(build_yaml("doh:\n  trusted_proxies:\n"
				    "    - 10.0.0.0/40\n"),
			 GW_ECONFIG);
	assert_non_null(strstr(err, "doh.trusted_proxies[0]") ? err
			       : strstr(err, ":3:"));
	assert_non_null(strstr(err, "prefix length"));
	assert_int_equal(build_yaml("doh:\n  trusted_proxies:\n"
				    "    - 10.0.0.1\n    - nonsense\n"),
			 GW_ECONFIG);
	assert_non_null(strstr(err, "not an IP address"));
	assert_int_equal(build_yaml("limits:\n  doh_idle_timeout_ms: 0\n"),
			 GW_ECONFIG);
	assert_non_null(strstr(err, "out of range"));
	assert_int_equal(build_yaml("doh:\n  trusted: []\n"), GW_ECONFIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doh_config_defaults),
		cmocka_unit_test(test_doh_config_keys),
		cmocka_unit_test(test_doh_config_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

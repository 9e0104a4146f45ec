/* Connection caps: per client address (port ignored) and global. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "gateway/connlimit.h"

static struct sockaddr_in v4(const char *ip, uint16_t port)
{
	struct sockaddr_in a;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}

static void test_connlimit_per_client_cap(void **state)
{
	(void)state;
	gw_connlimit_t *cl = gw_connlimit_new(3, 100);
	struct sockaddr_in a = v4("192.0.2.1", 1000);
	for (int i = 0; i < 3; i++) {
		a.sin_port = htons((uint16_t)(1000 + i)); /* port is ignored */
		assert_true(gw_connlimit_acquire(cl, (struct sockaddr *)&a));
	}
	assert_false(gw_connlimit_acquire(cl, (struct sockaddr *)&a));
	assert_int_equal(gw_connlimit_total(cl), 3);
	gw_connlimit_release(cl, (struct sockaddr *)&a);
	assert_true(gw_connlimit_acquire(cl, (struct sockaddr *)&a));
	gw_connlimit_free(cl);
}

static void test_connlimit_global_cap(void **state)
{
	(void)state;
	gw_connlimit_t *cl = gw_connlimit_new(64, 10);
	char ip[32];
	for (int i = 0; i < 10; i++) {
		snprintf(ip, sizeof(ip), "198.51.100.%d", i + 1);
		struct sockaddr_in a = v4(ip, 53);
		assert_true(gw_connlimit_acquire(cl, (struct sockaddr *)&a));
	}
	struct sockaddr_in other = v4("203.0.113.9", 53);
	assert_false(gw_connlimit_acquire(cl, (struct sockaddr *)&other));
	assert_int_equal(gw_connlimit_total(cl), 10);
	gw_connlimit_free(cl);
}

static void test_connlimit_ipv6(void **state)
{
	(void)state;
	gw_connlimit_t *cl = gw_connlimit_new(1, 10);
	struct sockaddr_in6 a;
	memset(&a, 0, sizeof(a));
	a.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::1", &a.sin6_addr);
	assert_true(gw_connlimit_acquire(cl, (struct sockaddr *)&a));
	assert_false(gw_connlimit_acquire(cl, (struct sockaddr *)&a));
	gw_connlimit_release(cl, (struct sockaddr *)&a);
	assert_int_equal(gw_connlimit_total(cl), 0);
	gw_connlimit_free(cl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connlimit_per_client_cap),
		cmocka_unit_test(test_connlimit_global_cap),
		cmocka_unit_test(test_connlimit_ipv6),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

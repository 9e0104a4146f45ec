/*
 * test_ratelimit.c - per-client token buckets (gateway/ratelimit.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "gateway/ratelimit.h"

static struct sockaddr_storage addr(const char *s, uint16_t port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, s, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
	} else {
		assert_int_equal(inet_pton(AF_INET6, s, &s6->sin6_addr), 1);
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
	}
	return ss;
}

static bool take(gw_ratelimit_t *rl, const char *a, double now)
{
	struct sockaddr_storage ss = addr(a, 1000);
	return gw_ratelimit_allow(rl, (struct sockaddr *)&ss, now);
}

static void test_ratelimit_burst_then_rate(void **state)
{
	(void)state;
	gw_ratelimit_t *rl = gw_ratelimit_new(64, 10, 5, 1);
	assert_non_null(rl);
	for (int i = 0; i < 5; i++)
		assert_true(take(rl, "192.0.2.1", 100.0));
	assert_false(take(rl, "192.0.2.1", 100.0));
	/* another client has its own bucket */
	assert_true(take(rl, "192.0.2.2", 100.0));
	/* 10 per second: one token after 0.1 s, not before */
	assert_false(take(rl, "192.0.2.1", 100.05));
	assert_true(take(rl, "192.0.2.1", 100.16));
	assert_false(take(rl, "192.0.2.1", 100.16));
	/* refill caps at the burst */
	for (int i = 0; i < 5; i++)
		assert_true(take(rl, "192.0.2.1", 200.0));
	assert_false(take(rl, "192.0.2.1", 200.0));
	/* a clock going backwards takes nothing extra */
	assert_false(take(rl, "192.0.2.1", 150.0));
	assert_int_equal(gw_ratelimit_used(rl), 2);
	gw_ratelimit_free(rl);
}

static void test_ratelimit_keys(void **state)
{
	(void)state;
	gw_ratelimit_t *rl = gw_ratelimit_new(64, 1, 1, 7);
	struct sockaddr_storage a = addr("192.0.2.1", 1), b = addr("192.0.2.1", 2);
	/* ports do not matter */
	assert_true(gw_ratelimit_allow(rl, (struct sockaddr *)&a, 1));
	assert_false(gw_ratelimit_allow(rl, (struct sockaddr *)&b, 1));
	/* a v4-mapped address is the same client */
	assert_false(take(rl, "::ffff:192.0.2.1", 1));
	/* IPv6 by /64 */
	assert_true(take(rl, "2001:db8:0:1::1", 1));
	assert_false(take(rl, "2001:db8:0:1:ffff::2", 1));
	assert_true(take(rl, "2001:db8:0:2::1", 1));
	/* not IP: always allowed */
	struct sockaddr_storage un = { .ss_family = AF_UNIX };
	assert_true(gw_ratelimit_allow(rl, (struct sockaddr *)&un, 1));
	assert_true(gw_ratelimit_allow(rl, (struct sockaddr *)&un, 1));
	gw_ratelimit_free(rl);
}

static void test_ratelimit_bounded_lru(void **state)
{
	(void)state;
	char a[32];
	/* 16 entries; 5000 clients never grow it */
	gw_ratelimit_t *rl = gw_ratelimit_new(16, 1, 1, 3);
	for (int i = 0; i < 5000; i++) {
		snprintf(a, sizeof(a), "10.%d.%d.1", i / 256, i % 256);
		assert_true(take(rl, a, 10.0 + i * 1e-6));
	}
	assert_true(gw_ratelimit_used(rl) <= 16);
	/* an active client survives a flood that fills its set: the least
	 * recently used way goes first */
	gw_ratelimit_t *one = gw_ratelimit_new(4, 1, 1, 3); /* one set */
	assert_true(take(one, "192.0.2.1", 1.0));
	for (int i = 0; i < 100; i++) {
		snprintf(a, sizeof(a), "198.51.100.%d", i);
		assert_true(take(one, a, 1.0 + (i + 1) * 1e-3));
		assert_false(take(one, "192.0.2.1", 1.0 + (i + 1) * 1e-3));
	}
	assert_int_equal(gw_ratelimit_used(one), 4);
	gw_ratelimit_free(one);
	gw_ratelimit_free(rl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ratelimit_burst_then_rate),
		cmocka_unit_test(test_ratelimit_keys),
		cmocka_unit_test(test_ratelimit_bounded_lru),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

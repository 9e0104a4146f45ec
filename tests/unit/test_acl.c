/*
 * test_acl.c - prefix matching and allow/deny lists (gateway/acl.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "gateway/acl.h"
#include "gateway/error.h"

static struct sockaddr_storage addr(const char *s)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, s, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
	} else {
		assert_int_equal(inet_pton(AF_INET6, s, &s6->sin6_addr), 1);
		s6->sin6_family = AF_INET6;
	}
	return ss;
}

static bool allows(const gw_acl_t *acl, const char *a)
{
	struct sockaddr_storage ss = addr(a);
	return gw_acl_allows(acl, (struct sockaddr *)&ss);
}

static void load(gw_acl_t *acl, const char *const *rules)
{
	char err[200];
	memset(acl, 0, sizeof(*acl));
	for (; *rules; rules++)
		assert_int_equal(gw_acl_rule_parse(*rules, &acl->rule[acl->n++],
						   err, sizeof(err)),
				 0);
}

static void test_acl_first_match_wins(void **state)
{
	gw_acl_t acl;
	(void)state;
	load(&acl, (const char *const[]){ "deny 127.0.0.2", "allow 127.0.0.0/8",
					  "allow ::1", "deny all", NULL });
	assert_true(allows(&acl, "127.0.0.1"));
	assert_false(allows(&acl, "127.0.0.2"));
	assert_true(allows(&acl, "127.255.0.9"));
	assert_false(allows(&acl, "10.0.0.1"));
	assert_true(allows(&acl, "::1"));
	assert_false(allows(&acl, "::2"));
	/* a v4 client on a dual-stack socket is judged as IPv4 */
	assert_false(allows(&acl, "::ffff:127.0.0.2"));
	assert_true(allows(&acl, "::ffff:127.0.0.3"));
}

static void test_acl_default_allow(void **state)
{
	gw_acl_t acl;
	(void)state;
	memset(&acl, 0, sizeof(acl));
	assert_true(allows(&acl, "192.0.2.1"));
	assert_true(gw_acl_allows(NULL, (struct sockaddr *)&(
		struct sockaddr_storage){ .ss_family = AF_INET }));
	load(&acl, (const char *const[]){ "deny 192.0.2.0/25", NULL });
	assert_false(allows(&acl, "192.0.2.127"));
	assert_true(allows(&acl, "192.0.2.128")); /* no match: allowed */
	assert_true(allows(&acl, "2001:db8::1"));
}

static void test_acl_prefix_bits(void **state)
{
	gw_acl_t acl;
	(void)state;
	load(&acl, (const char *const[]){ "allow 10.1.0.0/17", "allow 2001:db8::/33",
					  "allow 0.0.0.0/0", NULL });
	acl.rule[2].allow = false;
	assert_true(allows(&acl, "10.1.127.255"));
	assert_false(allows(&acl, "10.1.128.0"));
	assert_true(allows(&acl, "2001:db8:7fff::1"));
	assert_true(allows(&acl, "2001:db8::"));
	/* 0.0.0.0/0 is IPv4 only; "all" is both families */
	assert_true(allows(&acl, "2001:db8:8000::1"));
	assert_false(allows(&acl, "8.8.8.8"));
	load(&acl, (const char *const[]){ "deny all", NULL });
	assert_false(allows(&acl, "2001:db8:8000::1"));
	assert_false(allows(&acl, "8.8.8.8"));
	/* other families never match a prefix */
	struct sockaddr_storage un = { .ss_family = AF_UNIX };
	assert_true(gw_acl_allows(&acl, (struct sockaddr *)&un));
}

static void test_acl_rule_parse_errors(void **state)
{
	gw_acl_rule_t r;
	char err[200];
	(void)state;
	static const char *const bad[] = { "", "allow", "permit 10.0.0.0/8",
					   "deny 10.0.0.0/33", "allow ::/129",
					   "deny host", "allow 10.0.0.0/x",
					   "denyall", NULL };
	for (const char *const *b = bad; *b; b++) {
		err[0] = '\0';
		if (gw_acl_rule_parse(*b, &r, err, sizeof(err)) != GW_EINVAL) {
			print_error("accepted '%s'\n", *b);
			fail();
		}
		assert_true(err[0] != '\0');
	}
	assert_int_equal(gw_acl_rule_parse("  deny   10.0.0.0/8", &r, err,
					   sizeof(err)),
			 0);
	assert_false(r.allow);
	assert_int_equal(r.net.prefix, 8);
}

static void test_acl_cidr_list(void **state)
{
	gw_cidr_t c[2];
	char err[200];
	(void)state;
	assert_int_equal(gw_cidr_parse("192.0.2.0/24", &c[0], err, sizeof(err)),
			 0);
	assert_int_equal(gw_cidr_parse("2001:db8::/32", &c[1], err, sizeof(err)),
			 0);
	struct sockaddr_storage a = addr("192.0.2.9"), b = addr("2001:db8::9"),
				d = addr("198.51.100.1");
	assert_true(gw_cidr_match_list(c, 2, (struct sockaddr *)&a));
	assert_true(gw_cidr_match_list(c, 2, (struct sockaddr *)&b));
	assert_false(gw_cidr_match_list(c, 2, (struct sockaddr *)&d));
	assert_false(gw_cidr_match_list(c, 0, (struct sockaddr *)&a));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_acl_first_match_wins),
		cmocka_unit_test(test_acl_default_allow),
		cmocka_unit_test(test_acl_prefix_bits),
		cmocka_unit_test(test_acl_rule_parse_errors),
		cmocka_unit_test(test_acl_cidr_list),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * acl.c - prefix matching and allow/deny lists. See acl.h.
 */
#include "acl.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "gateway/error.h"

static bool prefix_match(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned bytes = bits / 8, rest = bits % 8;
	if (memcmp(a, b, bytes) != 0)
		return false;
	if (!rest)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

static const uint8_t *ip_bytes(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (const uint8_t *)&((const struct sockaddr_in *)ss)
		    ->sin_addr;
	return ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
}

bool gw_cidr_match(const gw_cidr_t *c, const struct sockaddr *addr)
{
	const uint8_t *ip;
	int fam = addr->sa_family;

	if (c->addr.ss_family == AF_UNSPEC) /* "all" */
		return fam == AF_INET || fam == AF_INET6;
	if (fam == AF_INET) {
		ip = (const uint8_t *)&((const struct sockaddr_in *)addr)
			 ->sin_addr;
	} else if (fam == AF_INET6) {
		const struct in6_addr *a6 =
		    &((const struct sockaddr_in6 *)addr)->sin6_addr;
		ip = a6->s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			/* a v4 peer on a dual-stack socket matches v4
			 * prefixes */
			fam = AF_INET;
			ip = a6->s6_addr + 12;
		}
	} else {
		return false;
	}
	return c->addr.ss_family == fam &&
	       prefix_match(ip, ip_bytes(&c->addr), c->prefix);
}

bool gw_cidr_match_list(const gw_cidr_t *c, unsigned n,
			const struct sockaddr *addr)
{
	for (unsigned i = 0; i < n; i++)
		if (gw_cidr_match(&c[i], addr))
			return true;
	return false;
}

int gw_acl_rule_parse(const char *s, gw_acl_rule_t *out, char *err,
		      size_t errlen)
{
	memset(out, 0, sizeof(*out));
	while (*s == ' ')
		s++;
	if (strncmp(s, "allow ", 6) == 0) {
		out->allow = true;
		s += 6;
	} else if (strncmp(s, "deny ", 5) == 0) {
		s += 5;
	} else {
		snprintf(err, errlen,
			 "expected 'allow NET' or 'deny NET' (NET: ADDR/BITS, "
			 "ADDR or all)");
		return GW_EINVAL;
	}
	while (*s == ' ')
		s++;
	if (strcmp(s, "all") == 0)
		return 0; /* AF_UNSPEC, prefix 0 */
	return gw_cidr_parse(s, &out->net, err, errlen);
}

bool gw_acl_allows(const gw_acl_t *acl, const struct sockaddr *addr)
{
	if (!acl)
		return true;
	for (unsigned i = 0; i < acl->n; i++)
		if (gw_cidr_match(&acl->rule[i].net, addr))
			return acl->rule[i].allow;
	return true;
}

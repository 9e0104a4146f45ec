/*
 * acl.h - address prefixes and allow/deny lists (sans-I/O).
 *
 * A gw_acl_t (config.h) is an ordered list of "allow NET" / "deny NET" rules;
 * the first rule whose prefix holds the address decides, and an address no
 * rule matches is allowed (an empty list allows everyone). An IPv4 client on
 * a dual-stack socket (::ffff:a.b.c.d) matches IPv4 prefixes. The prefix
 * "all" matches every address of either family.
 *
 * Every function borrows its arguments, allocates nothing, keeps no state and
 * is safe from any thread.
 */
#ifndef GW_ACL_H
#define GW_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "gateway/config.h"

/* True when addr lies inside prefix c ("all" holds everything). */
bool gw_cidr_match(const gw_cidr_t *c, const struct sockaddr *addr);

/* True when addr lies inside one of the n prefixes. */
bool gw_cidr_match_list(const gw_cidr_t *c, unsigned n,
			const struct sockaddr *addr);

/*
 * Parses "allow NET" or "deny NET", NET being "ADDR/BITS", a bare address
 * (a host) or "all". Returns 0, or GW_EINVAL with a reason in err.
 */
int gw_acl_rule_parse(const char *s, gw_acl_rule_t *out, char *err,
		      size_t errlen);

/* The verdict for addr: first match wins, default allow. NULL acl allows. */
bool gw_acl_allows(const gw_acl_t *acl, const struct sockaddr *addr);

#endif

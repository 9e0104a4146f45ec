/*
 * fuzz_dns.c - libFuzzer target for the DNS wire module.
 *
 * Parses the input; whatever parses is pushed through every rewrite the
 * gateway does (upstream query, answer finishing under several option sets,
 * locally built errors), and every output must parse again: a rewrite that
 * produces a message our own parser rejects is a bug, so abort().
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/dns.h"
#include "gateway/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_dns: %s\n", what);
	abort();
}

static void must_parse(const uint8_t *msg, int n, gw_dns_msg_t *m)
{
	if (n < GW_DNS_HEADER_LEN || n > GW_DNS_MAX_MSG)
		fail("output length out of range");
	if (gw_dns_parse(msg, (size_t)n, m) != 0)
		fail("output does not parse");
	if (m->end != (size_t)n)
		fail("output has trailing bytes");
}

static const gw_dns_answer_opts_t combos[] = {
	{ .id = 1, .client_edns = true, .pad = true, .keepalive_100ms = 100 },
	{ .id = 2, .client_edns = true, .keepalive_100ms = -1, .max_len = 512 },
	{ .id = 3, .client_edns = false, .keepalive_100ms = -1, .max_len = 512 },
	{ .id = 4, .client_edns = true, .pad = true, .keepalive_100ms = 50,
	  .max_len = 1232 },
	{ .id = 5, .client_edns = true, .keepalive_100ms = 0, .max_len = 100 },
	{ .id = 6, .client_edns = false, .pad = true, .keepalive_100ms = 5 },
	{ .id = 7, .client_edns = true, .pad = true, .keepalive_100ms = -1 },
};

static void check_errors(const gw_dns_msg_t *q)
{
	static uint8_t out[GW_DNS_MAX_MSG];
	static const int rcodes[] = { GW_DNS_FORMERR, GW_DNS_SERVFAIL,
				      GW_DNS_NOTIMP, GW_DNS_REFUSED };
	gw_dns_msg_t e;

	for (size_t i = 0; i < sizeof(rcodes) / sizeof(rcodes[0]); i++) {
		int ede = i == 0 ? -1 : GW_DNS_EDE_NETWORK_ERROR;
		int n = gw_dns_make_error(q, rcodes[i], ede,
					  i == 1 ? "upstream down" : NULL, out,
					  sizeof(out));
		if (n < 0)
			fail("make_error failed");
		must_parse(out, n, &e);
		if (e.id != q->id || GW_DNS_RCODE(e.flags) != rcodes[i] ||
		    !(e.flags & GW_DNS_QR))
			fail("make_error header");
		if (e.qdcount == 1 && GW_DNS_OPCODE(q->flags) == 0 &&
		    !gw_dns_answer_matches(q, &e))
			fail("make_error answer does not match its query");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[GW_DNS_MAX_MSG], out[GW_DNS_MAX_MSG];
	gw_dns_msg_t m, r;
	char text[4 * GW_DNS_MAX_NAME + 2];

	if (size > GW_DNS_MAX_MSG)
		return 0;
	if (gw_dns_parse(data, size, &m) != 0) {
		if (size >= GW_DNS_HEADER_LEN)
			check_errors(&m);
		return 0;
	}
	if (m.end > size || m.question_end > m.end ||
	    (m.has_opt && (m.opt_off >= m.opt_end || m.opt_end > m.end)))
		fail("parse offsets");
	gw_dns_name_to_text(m.qname, m.qname_len, text, sizeof(text));
	if (strlen(text) >= sizeof(text))
		fail("name_to_text overran");
	(void)gw_dns_check_query(&m);
	check_errors(&m);

	for (int strip = 0; strip < 2; strip++) {
		int n = gw_dns_make_upstream_query(data, &m, 0x1234, strip, out,
						   sizeof(out));
		/* GW_EMALFORMED: records after the OPT could not be moved */
		if (n == GW_EMALFORMED && m.has_opt && m.opt_end < m.end)
			continue;
		if (n < 0)
			fail("make_upstream_query failed");
		must_parse(out, n, &r);
		if (r.id != 0x1234 || r.has_padding || r.has_keepalive ||
		    (strip && r.has_ecs) || r.has_opt != m.has_opt ||
		    r.qdcount != m.qdcount || r.arcount != m.arcount)
			fail("upstream query rewrite");
	}

	for (size_t i = 0; i < sizeof(combos) / sizeof(combos[0]); i++) {
		const gw_dns_answer_opts_t *o = &combos[i];
		memcpy(buf, data, size);
		int n = gw_dns_finish_answer(buf, size, sizeof(buf), &m, o);
		if (n < 0)
			fail("finish_answer failed");
		must_parse(buf, n, &r);
		if (r.id != o->id)
			fail("finish_answer id");
		if (o->max_len &&
		    (size_t)n > (o->max_len < 512 ? 512 : o->max_len))
			fail("finish_answer over max_len");
		if (r.flags & GW_DNS_TC && !(m.flags & GW_DNS_TC) &&
		    (r.ancount || r.nscount || r.arcount > 1))
			fail("finish_answer truncation kept records");
		if (!o->client_edns && r.has_opt != m.has_opt)
			fail("finish_answer added OPT for a non-EDNS client");
		/* (an upstream OPT may already hold the option cap) */
		if (o->client_edns && o->keepalive_100ms >= 0 && !m.has_opt &&
		    (size_t)n + 17 <= 512 && !r.has_keepalive)
			fail("finish_answer lost keepalive");
		if (o->pad && o->client_edns && !o->max_len && !m.has_opt &&
		    n % GW_DNS_PADDING_BLOCK && n <= 65000)
			fail("finish_answer did not pad");
		if (!o->pad && r.has_padding)
			fail("finish_answer kept upstream padding");
	}
	return 0;
}

/* DNS wire module: bounded parsing (names, pointers, OPT rules), the query
 * checks, and the upstream/answer rewrites, asserted by re-parsing outputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "gateway/dns.h"
#include "gateway/error.h"

/* ---- a tiny message builder, so vectors read as what they mean ---- */

typedef struct mb {
	uint8_t b[70000];
	size_t n;
} mb_t;

static void mb_u8(mb_t *m, uint8_t v)
{
	assert_true(m->n < sizeof(m->b));
	m->b[m->n++] = v;
}

static void mb_u16(mb_t *m, uint16_t v)
{
	mb_u8(m, (uint8_t)(v >> 8));
	mb_u8(m, (uint8_t)v);
}

static void mb_u32(mb_t *m, uint32_t v)
{
	mb_u16(m, (uint16_t)(v >> 16));
	mb_u16(m, (uint16_t)v);
}

static void mb_bytes(mb_t *m, const void *p, size_t n)
{
	assert_true(m->n + n <= sizeof(m->b));
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

/* "www.example.test" -> labels and the root; "" -> root only. When ptr is
 * non-zero the name ends with a pointer to ptr instead of the root. */
static void mb_name_ptr(mb_t *m, const char *dotted, size_t ptr)
{
	const char *s = dotted;
	while (*s) {
		const char *dot = strchr(s, '.');
		size_t l = dot ? (size_t)(dot - s) : strlen(s);
		mb_u8(m, (uint8_t)l);
		mb_bytes(m, s, l);
		s += l;
		if (*s == '.')
			s++;
	}
	if (ptr)
		mb_u16(m, (uint16_t)(0xc000 | ptr));
	else
		mb_u8(m, 0);
}

static void mb_name(mb_t *m, const char *dotted)
{
	mb_name_ptr(m, dotted, 0);
}

static void mb_header(mb_t *m, uint16_t id, uint16_t flags, uint16_t qd,
		      uint16_t an, uint16_t ns, uint16_t ar)
{
	m->n = 0;
	mb_u16(m, id);
	mb_u16(m, flags);
	mb_u16(m, qd);
	mb_u16(m, an);
	mb_u16(m, ns);
	mb_u16(m, ar);
}

static void mb_question(mb_t *m, const char *name, uint16_t type)
{
	mb_name(m, name);
	mb_u16(m, type);
	mb_u16(m, 1);
}

/* Writes TYPE..RDLENGTH after an owner name the caller wrote; returns the
 * RDLENGTH offset for mb_rr_end. */
static size_t mb_rr_fixed(mb_t *m, uint16_t type, uint16_t class, uint32_t ttl)
{
	mb_u16(m, type);
	mb_u16(m, class);
	mb_u32(m, ttl);
	size_t mark = m->n;
	mb_u16(m, 0);
	return mark;
}

static void mb_rr_end(mb_t *m, size_t mark)
{
	gw_dns_put16(m->b + mark, (uint16_t)(m->n - mark - 2));
}

/* An A record whose owner is a pointer to `ptr`. */
static void mb_a_ptr(mb_t *m, size_t ptr, uint32_t ttl)
{
	mb_u16(m, (uint16_t)(0xc000 | ptr));
	size_t mark = mb_rr_fixed(m, GW_DNS_T_A, 1, ttl);
	mb_u32(m, 0xc0000201);
	mb_rr_end(m, mark);
}

static size_t mb_opt_begin(mb_t *m, uint16_t udp)
{
	mb_u8(m, 0);
	return mb_rr_fixed(m, GW_DNS_T_OPT, udp, 0);
}

static void mb_option(mb_t *m, uint16_t code, uint16_t len, uint8_t fill)
{
	mb_u16(m, code);
	mb_u16(m, len);
	for (uint16_t i = 0; i < len; i++)
		mb_u8(m, fill);
}

/* A query for `name` IN `type` with RD, optionally with an OPT carrying the
 * given option codes (keepalive with length 0, others with 2 bytes). */
static void build_query(mb_t *m, uint16_t id, const char *name, uint16_t type,
			const uint16_t *opts, size_t nopts, bool edns)
{
	mb_header(m, id, GW_DNS_RD, 1, 0, 0, edns ? 1 : 0);
	mb_question(m, name, type);
	if (!edns)
		return;
	size_t mark = mb_opt_begin(m, 4096);
	for (size_t i = 0; i < nopts; i++)
		mb_option(m, opts[i],
			  opts[i] == GW_DNS_OPT_TCP_KEEPALIVE ? 0 : 2, 0x5a);
	mb_rr_end(m, mark);
}

/* An answer to `name` A with `nrr` A records (TTL 300), optionally an
 * upstream OPT carrying upstream padding and keepalive. */
static void build_answer(mb_t *m, uint16_t id, const char *name, size_t nrr,
			 bool opt)
{
	mb_header(m, id, GW_DNS_QR | GW_DNS_RD | GW_DNS_RA, 1, (uint16_t)nrr,
		  0, opt ? 1 : 0);
	mb_question(m, name, GW_DNS_T_A);
	for (size_t i = 0; i < nrr; i++)
		mb_a_ptr(m, 12, 300);
	if (opt) {
		size_t mark = mb_opt_begin(m, 1232);
		mb_option(m, GW_DNS_OPT_PADDING, 7, 0);
		mb_option(m, GW_DNS_OPT_TCP_KEEPALIVE, 2, 1);
		mb_option(m, GW_DNS_OPT_COOKIE, 8, 0x11);
		mb_rr_end(m, mark);
	}
}

/* Finds option `code` in a parsed message's OPT; returns its length or -1,
 * and counts how many times it occurs. */
static int find_option(const uint8_t *msg, const gw_dns_msg_t *m,
		       uint16_t code, size_t *val_off, int *count)
{
	int found = -1;
	*count = 0;
	if (!m->has_opt)
		return -1;
	size_t p = m->opt_off + 11;
	while (p < m->opt_end) {
		uint16_t c = gw_dns_get16(msg + p);
		uint16_t l = gw_dns_get16(msg + p + 2);
		if (c == code) {
			(*count)++;
			found = l;
			if (val_off)
				*val_off = p + 4;
		}
		p += 4 + (size_t)l;
	}
	assert_int_equal(p, m->opt_end);
	return found;
}

static void wire_name(const char *dotted, uint8_t *out, uint16_t *len)
{
	static mb_t t;
	t.n = 0;
	mb_name(&t, dotted);
	memcpy(out, t.b, t.n);
	*len = (uint16_t)t.n;
}

static mb_t B, C;
static uint8_t out[GW_DNS_MAX_MSG];

/* ---- parsing ---- */

static void test_dns_parse_valid_query(void **state)
{
	(void)state;
	gw_dns_msg_t m;
	uint8_t want[GW_DNS_MAX_NAME];
	uint16_t wl;

	build_query(&B, 0x1234, "www.Example.test", GW_DNS_T_AAAA, NULL, 0,
		    false);
	assert_int_equal(gw_dns_parse(B.b, B.n, &m), 0);
	assert_int_equal(m.id, 0x1234);
	assert_true(m.flags & GW_DNS_RD);
	assert_false(m.flags & GW_DNS_QR);
	assert_int_equal(m.qdcount, 1);
	assert_int_equal(m.qtype, GW_DNS_T_AAAA);
	assert_int_equal(m.qclass, 1);
	wire_name("www.Example.test", want, &wl);
	assert_int_equal(m.qname_len, wl);
	assert_memory_equal(m.qname, want, wl);
	assert_int_equal(m.question_end, B.n);
	assert_int_equal(m.end, B.n);
	assert_false(m.has_opt);
	assert_false(m.has_ttl);
	assert_int_equal(gw_dns_check_query(&m), -1);
}

static void test_dns_parse_answer_with_compression(void **state)
{
	(void)state;
	gw_dns_msg_t m;

	/* www.example.test CNAME web.example.test (compressed into the
	 * question), web.example.test A (owner points into the CNAME RDATA). */
	mb_header(&B, 7, GW_DNS_QR | GW_DNS_RD | GW_DNS_RA, 1, 2, 0, 0);
	mb_question(&B, "www.example.test", GW_DNS_T_A);
	mb_u16(&B, 0xc000 | 12);
	size_t mark = mb_rr_fixed(&B, 5 /* CNAME */, 1, 600);
	size_t cname_rdata = B.n;
	mb_name_ptr(&B, "web", 16); /* "example.test" at 12 + 4 */
	mb_rr_end(&B, mark);
	mb_a_ptr(&B, cname_rdata, 120);

	assert_int_equal(gw_dns_parse(B.b, B.n, &m), 0);
	assert_int_equal(m.end, B.n);
	assert_int_equal(m.ancount, 2);
	assert_true(m.has_ttl);
	assert_int_equal(m.min_ttl, 120);
}

static void test_dns_parse_trailing_bytes(void **state)
{
	(void)state;
	gw_dns_msg_t m;

	build_query(&B, 1, "example.test", GW_DNS_T_A, NULL, 0, true);
	size_t real = B.n;
	mb_bytes(&B, "\0\0\0junk", 7);
	assert_int_equal(gw_dns_parse(B.b, B.n, &m), 0);
	assert_int_equal(m.end, real);
	assert_true(m.end < B.n);
	assert_true(m.has_opt);
	assert_int_equal(m.opt_end, real);
}

static void test_dns_parse_truncated(void **state)
{
	(void)state;
	gw_dns_msg_t m;

	/* header 12 | question 12..30 | A 30..46 | A 46..62 | OPT 62..102 */
	build_answer(&B, 0x4242, "example.test", 2, true);
	assert_int_equal(B.n, 102);
	static const struct {
		const char *what;
		size_t len;
	} v[] = {
		{ "header only", 12 },
		{ "inside the question name", 20 },
		{ "inside the question type", 28 },
		{ "inside an A fixed part", 54 },
		{ "inside an A RDATA", 60 },
		{ "inside the OPT fixed part", 67 },
		{ "inside the OPT options", 99 },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		print_message("%s\n", v[i].what);
		assert_int_equal(gw_dns_parse(B.b, v[i].len, &m),
				 GW_EMALFORMED);
		/* the header is always there for a FORMERR */
		assert_int_equal(m.id, 0x4242);
		assert_int_equal(m.ancount, 2);
		/* and a question read completely is kept for it too */
		assert_int_equal(m.qname_len, v[i].len >= 30 ? 14 : 0);
	}
	/* below a header: nothing to answer */
	for (size_t l = 0; l < 12; l++)
		assert_int_equal(gw_dns_parse(B.b, l, &m), GW_EMALFORMED);
	/* an RDLENGTH pointing past the end */
	assert_int_equal(gw_dns_parse(B.b, B.n, &m), 0);
	gw_dns_put16(B.b + 30 + 2 + 8, 5000);
	assert_int_equal(gw_dns_parse(B.b, B.n, &m), GW_EMALFORMED);
}

static void test_dns_parse_bad_names(void **state)
{
	(void)state;
	static const struct {
		const char *what;
		uint8_t q[40];
		size_t len;
	} v[] = {
		{ "forward pointer", { 0xc0, 14, 0, 1, 0, 1, 1, 'a', 0 }, 9 },
		{ "pointer to itself", { 0xc0, 12, 0, 1, 0, 1 }, 6 },
		/* "a" then a pointer back to the start of the same name */
		{ "loop through a label", { 1, 'a', 0xc0, 12, 0, 1, 0, 1 }, 8 },
		{ "pointer into the header", { 0xc0, 2, 0, 1, 0, 1 }, 6 },
		{ "label type 0x40", { 0x41, 'a', 0, 0, 1, 0, 1 }, 7 },
		{ "label type 0x80", { 0x81, 'a', 0, 0, 1, 0, 1 }, 7 },
		{ "pointer cut in half", { 1, 'a', 0xc0 }, 3 },
		{ "label past the end", { 5, 'a', 'b' }, 3 },
		{ "no root", { 1, 'a' }, 2 },
	};
	gw_dns_msg_t m;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		mb_header(&B, 1, 0, 1, 0, 0, 0);
		mb_bytes(&B, v[i].q, v[i].len);
		print_message("%s\n", v[i].what);
		assert_int_equal(gw_dns_parse(B.b, B.n, &m), GW_EMALFORMED);
	}

	/* Two names pointing at each other: the second question's pointer
	 * goes back to the first, whose pointer goes forward to the second. */
	mb_header(&B, 1, 0, 2, 0, 0, 0);
	mb_u16(&B, 0xc000 | 18);
	mb_u16(&B, 1);
	mb_u16(&B, 1);
	mb_u16(&B, 0xc000 | 12);
	mb_u16(&B, 1);
	mb_u16(&B, 1);
	assert_int_equal(gw_dns_parse(B.b, B.n, &m), GW_EMALFORMED);

	/* A pointer back to a name that runs forward over the pointer
	 * itself: question "x" CLASS 5, then an owner pointing at the CLASS
	 * low octet, whose "label" of 5 covers the RR's own bytes. */
	mb_header(&B, 1, GW_DNS_QR, 1, 1, 0, 0);
	mb_name(&B, "x");
	mb_u16(&B, GW_DNS_T_A);
	mb_u16(&B, 5);
	mb_u16(&B, 0xc000 | 18);
	size_t m1 = mb_rr_fixed(&B, GW_DNS_T_A, 0, 1);
	mb_u32(&B, 0);
	mb_rr_end(&B, m1);
	assert_int_equal(gw_dns_parse(B.b, B.n, &m), GW_EMALFORMED);

	/* Regression (libFuzzer): same trick in Additional, reading into the
	 * trailing bytes, so the message parsed but its first m.end bytes
	 * did not. */
	static const uint8_t fuzz1[] = {
		0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x01, 0x00, 0x65, 0x73, 0x74, 0x0a, 0x04, 0x01, 0x02,
		0x03, 0x04, 0xc0, 0x10, 0x00, 0x06, 0x00, 0x01, 0xc0, 0x10,
		0x00, 0x00, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01,
		0x00, 0x00, 0x00, 0x2b, 0x00, 0x73, 0x65, 0x00, 0x8e, 0x00,
	};
	assert_int_equal(gw_dns_parse(fuzz1, sizeof(fuzz1), &m), GW_EMALFORMED);

	/* 255 octets is the limit, length octets and root included. */
	char big[300];
	size_t bl = 0;
	for (int l = 0; l < 4; l++) {
		memset(big + bl, 'x', l == 3 ? 61 : 63);
		bl += l == 3 ? 61 : 63;
		big[bl++] = '.';
	}
	big[bl - 1] = '\0'; /* 63+63+63+61 + 4 length octets + root */
	build_query(&B, 1, big, GW_DNS_T_A, NULL, 0, false);
	assert_int_equal(gw_dns_parse(B.b, B.n, &m), 0);
	assert_int_equal(m.qname_len, 255);
	big[bl - 1] = 'x';
	big[bl] = '\0'; /* one more octet */
	build_query(&B, 1, big, GW_DNS_T_A, NULL, 0, false);
	assert_int_equal(gw_dns_parse(B.b, B.n, &m), GW_EMALFORMED);

	/* Too long only once pointers are followed: "xx..." (200) + a
	 * pointer to a 63-octet name. */
	mb_header(&B, 1, GW_DNS_QR, 1, 1, 0, 0);
	mb_question(&B, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		    GW_DNS_T_A);
	mb_name_ptr(&B,
		    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb."
		    "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc."
		    "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
		    12);
	size_t mark = mb_rr_fixed(&B, GW_DNS_T_A, 1, 1);
	mb_u32(&B, 0);
	mb_rr_end(&B, mark);
	assert_int_equal(gw_dns_parse(B.b, B.n, &m), GW_EMALFORMED);
}

static void test_dns_parse_pointer_hops(void **state)
{
	(void)state;
	static const struct {
		int chain;
		int want;
	} v[] = {
		{ 10, 0 },
		{ GW_DNS_MAX_PTR_HOPS, 0 },
		{ GW_DNS_MAX_PTR_HOPS + 1, GW_EMALFORMED },
		{ 500, GW_EMALFORMED },
	};
	gw_dns_msg_t m;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		/* question "a."; then `chain` NS records whose owner is a
		 * pointer to the previous record's owner: the last name
		 * needs `chain` hops (the first points at the question). */
		mb_header(&B, 1, GW_DNS_QR, 1, 0, (uint16_t)v[i].chain, 0);
		mb_question(&B, "a", GW_DNS_T_A);
		size_t prev = 12;
		for (int k = 0; k < v[i].chain; k++) {
			size_t here = B.n;
			mb_u16(&B, (uint16_t)(0xc000 | prev));
			size_t mark = mb_rr_fixed(&B, 99, 1, 1);
			mb_rr_end(&B, mark);
			prev = here;
		}
		assert_int_equal(gw_dns_parse(B.b, B.n, &m), v[i].want);
	}
}

static void test_dns_parse_opt_rules(void **state)
{
	(void)state;
	gw_dns_msg_t m;
	size_t mark;

	/* well formed: flags for each interesting option */
	build_query(&B, 1, "example.test", GW_DNS_T_A,
		    (const uint16_t[]){ GW_DNS_OPT_ECS, GW_DNS_OPT_PADDING,
					GW_DNS_OPT_TCP_KEEPALIVE },
		    3, true);
	assert_int_equal(gw_dns_parse(B.b, B.n, &m), 0);
	assert_true(m.has_opt && m.has_ecs && m.has_padding && m.has_keepalive);
	assert_int_equal(m.keepalive_len, 0);
	assert_int_equal(m.udp_size, 4096);
	assert_int_equal(m.opt_off, 12 + 14 + 4);
	assert_int_equal(m.opt_end, B.n);

	/* two OPTs */
	build_query(&B, 1, "example.test", GW_DNS_T_A, NULL, 0, true);
	gw_dns_put16(B.b + 10, 2);
	mark = mb_opt_begin(&B, 512);
	mb_rr_end(&B, mark);
	assert_int_equal(gw_dns_parse(B.b, B.n, &m), GW_EMALFORMED);

	/* OPT in the answer and in the authority section */
	for (int sec = 0; sec < 2; sec++) {
		build_query(&B, 1, "example.test", GW_DNS_T_A, NULL, 0, true);
		gw_dns_put16(B.b + 10, 0);
		gw_dns_put16(B.b + (sec ? 8 : 6), 1);
		assert_int_equal(gw_dns_parse(B.b, B.n, &m), GW_EMALFORMED);
	}

	/* OPT with a non-root owner (also when it is a pointer) */
	mb_header(&B, 1, 0, 1, 0, 0, 1);
	mb_question(&B, "example.test", GW_DNS_T_A);
	mb_name(&B, "x");
	mark = mb_rr_fixed(&B, GW_DNS_T_OPT, 1232, 0);
	mb_rr_end(&B, mark);
	assert_int_equal(gw_dns_parse(B.b, B.n, &m), GW_EMALFORMED);
	mb_header(&B, 1, 0, 1, 0, 0, 1);
	mb_question(&B, "example.test", GW_DNS_T_A);
	mb_u16(&B, 0xc000 | 25); /* the question's root octet */
	mark = mb_rr_fixed(&B, GW_DNS_T_OPT, 1232, 0);
	mb_rr_end(&B, mark);
	assert_int_equal(gw_dns_parse(B.b, B.n, &m), GW_EMALFORMED);

	/* an option whose length runs past RDLENGTH, and a cut option
	 * header, with more bytes in the message after it */
	static const uint8_t bad_opts[][6] = {
		{ 0, 10, 0, 3, 1, 2 }, /* length 3, 2 bytes present */
		{ 0, 10, 0, 0, 0, 12 }, /* second header cut after 2 */
	};
	for (size_t i = 0; i < 2; i++) {
		mb_header(&B, 1, 0, 1, 0, 0, 2);
		mb_question(&B, "example.test", GW_DNS_T_A);
		mark = mb_opt_begin(&B, 1232);
		mb_bytes(&B, bad_opts[i], 6);
		mb_rr_end(&B, mark);
		mb_a_ptr(&B, 12, 5); /* bytes the overrun would eat */
		assert_int_equal(gw_dns_parse(B.b, B.n, &m), GW_EMALFORMED);
	}
}

static void test_dns_parse_many_options(void **state)
{
	(void)state;
	static const struct {
		int count;
		int want;
	} v[] = {
		{ GW_DNS_MAX_EDNS_OPTIONS, 0 },
		{ GW_DNS_MAX_EDNS_OPTIONS + 1, GW_EMALFORMED },
		{ 10000, GW_EMALFORMED },
	};
	gw_dns_msg_t m;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		build_query(&B, 1, "example.test", GW_DNS_T_A, NULL, 0, true);
		B.n -= 2;
		size_t mark = B.n;
		mb_u16(&B, 0);
		for (int k = 0; k < v[i].count; k++)
			mb_option(&B, GW_DNS_OPT_PADDING, 0, 0);
		mb_rr_end(&B, mark);
		clock_t t0 = clock();
		for (int rep = 0; rep < 100; rep++)
			assert_int_equal(gw_dns_parse(B.b, B.n, &m), v[i].want);
		/* 100 parses of a 40 kB OPT well under a second: the walk
		 * stops at the cap instead of touching every option. */
		assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 0.5);
	}
}

static void test_dns_parse_every_prefix(void **state)
{
	(void)state;
	gw_dns_msg_t m;
	mb_t *msgs[3] = { &B, &C, NULL };

	build_answer(&B, 9, "www.example.test", 3, true);
	/* a negative answer with an SOA whose names are compressed */
	mb_header(&C, 9, GW_DNS_QR | 3, 1, 0, 1, 0);
	mb_question(&C, "nx.example.test", GW_DNS_T_A);
	mb_u16(&C, 0xc000 | 15);
	size_t mark = mb_rr_fixed(&C, GW_DNS_T_SOA, 1, 3600);
	mb_name_ptr(&C, "ns", 15);
	mb_name_ptr(&C, "hostmaster", 15);
	for (int k = 0; k < 5; k++)
		mb_u32(&C, 60);
	mb_rr_end(&C, mark);

	for (int i = 0; msgs[i]; i++) {
		assert_int_equal(gw_dns_parse(msgs[i]->b, msgs[i]->n, &m), 0);
		for (size_t l = 0; l <= msgs[i]->n; l++) {
			/* exact-size heap copy: ASan flags any over-read */
			uint8_t *p = malloc(l ? l : 1);
			assert_non_null(p);
			memcpy(p, msgs[i]->b, l);
			int r = gw_dns_parse(p, l, &m);
			assert_true(r == 0 || r == GW_EMALFORMED);
			if (r == 0)
				assert_true(m.end <= l);
			free(p);
		}
	}
}

/* ---- TTL scan ---- */

static void test_dns_ttl_scan(void **state)
{
	(void)state;
	static const struct {
		const char *what;
		uint32_t a_ttl[2];
		int nans;
		uint32_t soa_ttl, soa_min;
		bool soa;
		bool has_ttl;
		uint32_t want;
	} v[] = {
		{ "positive, min of two", { 300, 60 }, 2, 0, 0, false, true, 60 },
		{ "positive, SOA TTL counts, MINIMUM does not", { 300, 0 }, 1,
		  200, 5, true, true, 200 },
		{ "negative, MINIMUM smaller", { 0 }, 0, 3600, 60, true, true,
		  60 },
		{ "negative, TTL smaller", { 0 }, 0, 30, 900, true, true, 30 },
		{ "top bit set is zero (RFC 2181 8)", { 0x80000001u }, 1, 0, 0,
		  false, true, 0 },
		{ "nothing carries a TTL", { 0 }, 0, 0, 0, false, false, 0 },
	};
	gw_dns_msg_t m;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		print_message("%s\n", v[i].what);
		mb_header(&B, 1, GW_DNS_QR, 1, (uint16_t)v[i].nans,
			  v[i].soa ? 1 : 0, 1);
		mb_question(&B, "example.test", GW_DNS_T_A);
		for (int k = 0; k < v[i].nans; k++)
			mb_a_ptr(&B, 12, v[i].a_ttl[k]);
		if (v[i].soa) {
			mb_u16(&B, 0xc000 | 12);
			size_t mark =
				mb_rr_fixed(&B, GW_DNS_T_SOA, 1, v[i].soa_ttl);
			mb_name_ptr(&B, "ns", 12);
			mb_name_ptr(&B, "hostmaster", 12);
			for (int k = 0; k < 4; k++)
				mb_u32(&B, 7200);
			mb_u32(&B, v[i].soa_min);
			mb_rr_end(&B, mark);
		}
		/* Additional and OPT TTLs never count */
		size_t mark = mb_opt_begin(&B, 1232);
		mb_rr_end(&B, mark);
		assert_int_equal(gw_dns_parse(B.b, B.n, &m), 0);
		assert_int_equal(m.has_ttl, v[i].has_ttl);
		if (v[i].has_ttl)
			assert_int_equal(m.min_ttl, v[i].want);
	}
}

/* ---- query checks ---- */

static void test_dns_check_query(void **state)
{
	(void)state;
	static const struct {
		const char *what;
		uint16_t flags, qdcount;
		int keepalive_len; /* -1: no option */
		int want;
	} v[] = {
		{ "plain query", GW_DNS_RD, 1, -1, -1 },
		{ "keepalive, empty", GW_DNS_RD, 1, 0, -1 },
		{ "keepalive with a value", GW_DNS_RD, 1, 2, GW_DNS_FORMERR },
		{ "QR=1", GW_DNS_QR, 1, -1, GW_DNS_FORMERR },
		{ "QDCOUNT 0", 0, 0, -1, GW_DNS_FORMERR },
		{ "QDCOUNT 2", 0, 2, -1, GW_DNS_FORMERR },
		{ "NOTIFY", 4 << 11, 1, -1, GW_DNS_NOTIMP },
		{ "UPDATE", 5 << 11, 1, -1, GW_DNS_NOTIMP },
		{ "IQUERY", 1 << 11, 1, -1, GW_DNS_NOTIMP },
	};
	gw_dns_msg_t m;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		print_message("%s\n", v[i].what);
		mb_header(&B, 1, v[i].flags, v[i].qdcount, 0, 0,
			  v[i].keepalive_len >= 0 ? 1 : 0);
		for (int q = 0; q < v[i].qdcount; q++)
			mb_question(&B, "example.test", GW_DNS_T_A);
		if (v[i].keepalive_len >= 0) {
			size_t mark = mb_opt_begin(&B, 1232);
			mb_option(&B, GW_DNS_OPT_TCP_KEEPALIVE,
				  (uint16_t)v[i].keepalive_len, 1);
			mb_rr_end(&B, mark);
		}
		assert_int_equal(gw_dns_parse(B.b, B.n, &m), 0);
		assert_int_equal(gw_dns_check_query(&m), v[i].want);
	}

	/* a duplicate keepalive cannot hide a non-empty one */
	mb_header(&B, 1, 0, 1, 0, 0, 1);
	mb_question(&B, "example.test", GW_DNS_T_A);
	size_t mark = mb_opt_begin(&B, 1232);
	mb_option(&B, GW_DNS_OPT_TCP_KEEPALIVE, 2, 1);
	mb_option(&B, GW_DNS_OPT_TCP_KEEPALIVE, 0, 0);
	mb_rr_end(&B, mark);
	assert_int_equal(gw_dns_parse(B.b, B.n, &m), 0);
	assert_int_equal(gw_dns_check_query(&m), GW_DNS_FORMERR);
}

/* ---- upstream query ---- */

static void test_dns_upstream_query_strips(void **state)
{
	(void)state;
	static const uint16_t opts[] = { GW_DNS_OPT_COOKIE, GW_DNS_OPT_ECS,
					 GW_DNS_OPT_PADDING,
					 GW_DNS_OPT_TCP_KEEPALIVE, 65001 };
	gw_dns_msg_t m, u;
	int cnt;

	for (int strip = 0; strip < 2; strip++) {
		build_query(&B, 0xaaaa, "Example.test", GW_DNS_T_A, opts, 5,
			    true);
		mb_bytes(&B, "trailing", 8);
		assert_int_equal(gw_dns_parse(B.b, B.n, &m), 0);
		int n = gw_dns_make_upstream_query(B.b, &m, 0xbeef, strip, out,
						   sizeof(out));
		assert_true(n > 0);
		assert_int_equal(gw_dns_parse(out, (size_t)n, &u), 0);
		assert_int_equal(u.end, (size_t)n); /* trailing gone */
		assert_int_equal(u.id, 0xbeef);
		assert_int_equal(u.flags, m.flags);
		assert_int_equal(u.qname_len, m.qname_len);
		assert_memory_equal(u.qname, m.qname, m.qname_len);
		assert_int_equal(u.arcount, 1);
		assert_true(u.has_opt);
		assert_int_equal(u.udp_size, 4096);
		assert_false(u.has_padding);
		assert_false(u.has_keepalive);
		assert_int_equal(u.has_ecs, !strip);
		assert_int_equal(find_option(out, &u, GW_DNS_OPT_COOKIE, NULL,
					     &cnt),
				 2);
		assert_int_equal(find_option(out, &u, 65001, NULL, &cnt), 2);
		/* and the input is untouched */
		assert_int_equal(gw_dns_get16(B.b), 0xaaaa);
	}

	/* without OPT: copied, trailing dropped */
	build_query(&B, 1, "example.test", GW_DNS_T_A, NULL, 0, false);
	size_t real = B.n;
	mb_u8(&B, 0);
	assert_int_equal(gw_dns_parse(B.b, B.n, &m), 0);
	assert_int_equal(gw_dns_make_upstream_query(B.b, &m, 2, true, out,
						    sizeof(out)),
			 (int)real);
	assert_int_equal(gw_dns_get16(out), 2);
	assert_memory_equal(out + 2, B.b + 2, real - 2);
	assert_int_equal(gw_dns_make_upstream_query(B.b, &m, 2, true, out,
						    real - 1),
			 GW_ETOOBIG);
}

static void test_dns_upstream_query_opt_not_last(void **state)
{
	(void)state;
	gw_dns_msg_t m, u;

	/* Additional: OPT (with padding), then "x.test" A, then an A whose
	 * owner points at "x.test" behind the OPT, which moves. */
	mb_header(&B, 1, 0, 1, 0, 0, 3);
	mb_question(&B, "example.test", GW_DNS_T_A);
	size_t mark = mb_opt_begin(&B, 1232);
	mb_option(&B, GW_DNS_OPT_PADDING, 40, 0);
	mb_option(&B, GW_DNS_OPT_COOKIE, 8, 3);
	mb_rr_end(&B, mark);
	size_t x_at = B.n;
	mb_name(&B, "x.test");
	mark = mb_rr_fixed(&B, GW_DNS_T_A, 1, 1);
	mb_u32(&B, 1);
	mb_rr_end(&B, mark);
	mb_a_ptr(&B, x_at, 1);
	assert_int_equal(gw_dns_parse(B.b, B.n, &m), 0);

	int n = gw_dns_make_upstream_query(B.b, &m, 5, true, out, sizeof(out));
	assert_int_equal(n, (int)B.n - 44);
	assert_int_equal(gw_dns_parse(out, (size_t)n, &u), 0);
	assert_int_equal(u.end, (size_t)n);
	assert_int_equal(u.arcount, 3);
	assert_false(u.has_padding);
	/* the last owner still names x.test */
	size_t ptr = gw_dns_get16(out + n - 16) & 0x3fff;
	assert_int_equal(ptr, x_at - 44);
	assert_memory_equal(out + ptr, "\1x\4test", 8);
}

static void test_dns_upstream_query_pointer_into_opt(void **state)
{
	(void)state;
	gw_dns_msg_t m;

	/* A record after the OPT whose owner points at a name hidden in an
	 * option's data: once options move that pointer means nothing, so
	 * the rewrite refuses rather than forward garbage. */
	mb_header(&B, 1, 0, 1, 0, 0, 2);
	mb_question(&B, "example.test", GW_DNS_T_A);
	size_t mark = mb_opt_begin(&B, 1232);
	mb_option(&B, GW_DNS_OPT_PADDING, 4, 0);
	mb_u16(&B, GW_DNS_OPT_COOKIE);
	mb_u16(&B, 8);
	size_t hidden = B.n;
	mb_bytes(&B, "\1x\0\0\0\0\0\0", 8);
	mb_rr_end(&B, mark);
	mb_a_ptr(&B, hidden, 1);
	assert_int_equal(gw_dns_parse(B.b, B.n, &m), 0);
	assert_int_equal(gw_dns_make_upstream_query(B.b, &m, 5, true, out,
						    sizeof(out)),
			 GW_EMALFORMED);
}

/* ---- answers ---- */

static void finish(mb_t *msg, const gw_dns_answer_opts_t *o, int *n,
		   gw_dns_msg_t *after)
{
	gw_dns_msg_t m;
	assert_int_equal(gw_dns_parse(msg->b, msg->n, &m), 0);
	*n = gw_dns_finish_answer(msg->b, msg->n, GW_DNS_MAX_MSG, &m, o);
	assert_true(*n >= 12);
	assert_true(*n <= GW_DNS_MAX_MSG);
	assert_int_equal(gw_dns_parse(msg->b, (size_t)*n, after), 0);
	assert_int_equal(after->end, (size_t)*n);
	assert_int_equal(after->id, o->id);
}

static void test_dns_finish_answer_id_and_hop_by_hop(void **state)
{
	(void)state;
	gw_dns_answer_opts_t o = { .id = 0x0102, .client_edns = true,
				   .keepalive_100ms = -1 };
	gw_dns_msg_t a;
	int n, cnt;

	build_answer(&B, 0x9999, "example.test", 2, true);
	size_t real = B.n;
	mb_bytes(&B, "junkjunk", 8);
	finish(&B, &o, &n, &a);
	/* trailing and the 11 + 6 bytes of upstream padding/keepalive go */
	assert_int_equal(n, (int)(real - 11 - 6));
	assert_int_equal(a.ancount, 2);
	assert_false(a.has_padding);
	assert_false(a.has_keepalive);
	assert_int_equal(find_option(B.b, &a, GW_DNS_OPT_COOKIE, NULL, &cnt), 8);
	assert_false(a.flags & GW_DNS_TC);
}

static void test_dns_finish_answer_padding(void **state)
{
	(void)state;
	static const size_t nrr[] = { 0, 1, 7, 20, 28, 29, 100, 500 };
	gw_dns_answer_opts_t o = { .id = 3, .client_edns = true, .pad = true,
				   .keepalive_100ms = -1 };
	gw_dns_msg_t a;
	int n, cnt;

	for (size_t i = 0; i < sizeof(nrr) / sizeof(nrr[0]); i++) {
		for (int opt = 0; opt < 2; opt++) {
			build_answer(&B, 1, "example.test", nrr[i], opt);
			finish(&B, &o, &n, &a);
			assert_int_equal(n % GW_DNS_PADDING_BLOCK, 0);
			assert_true(a.has_opt);
			assert_true(find_option(B.b, &a, GW_DNS_OPT_PADDING,
						NULL, &cnt) >= 0);
			assert_int_equal(cnt, 1);
			assert_int_equal(a.ancount, nrr[i]);
		}
	}

	/* near 65535 there is no next multiple: no padding, still valid */
	build_answer(&B, 1, "example.test", 4093, false); /* 65518 bytes */
	finish(&B, &o, &n, &a);
	assert_true(n > 65520);
	assert_false(a.has_padding);

	/* a client without EDNS gets no padding and no OPT */
	o.client_edns = false;
	build_answer(&B, 1, "example.test", 3, false);
	finish(&B, &o, &n, &a);
	assert_int_equal(n, (int)B.n);
	assert_false(a.has_opt);
	assert_int_equal(a.arcount, 0);
	/* ... and an upstream OPT is kept, minus hop-by-hop options */
	build_answer(&B, 1, "example.test", 3, true);
	finish(&B, &o, &n, &a);
	assert_true(a.has_opt);
	assert_false(a.has_padding);
	assert_int_equal(find_option(B.b, &a, GW_DNS_OPT_COOKIE, NULL, &cnt), 8);
}

static void test_dns_finish_answer_keepalive(void **state)
{
	(void)state;
	static const int values[] = { 0, 100, 65535, 100000 };
	gw_dns_msg_t a;
	int n, cnt;
	size_t val;

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		for (int opt = 0; opt < 2; opt++) {
			gw_dns_answer_opts_t o = {
				.id = 3, .client_edns = true,
				.keepalive_100ms = values[i]
			};
			build_answer(&B, 1, "example.test", 2, opt);
			finish(&B, &o, &n, &a);
			assert_true(a.has_opt);
			assert_int_equal(a.arcount, 1); /* fresh or kept */
			assert_int_equal(find_option(B.b, &a,
						     GW_DNS_OPT_TCP_KEEPALIVE,
						     &val, &cnt),
					 2);
			assert_int_equal(cnt, 1);
			int want = values[i] > 65535 ? 65535 : values[i];
			assert_int_equal(gw_dns_get16(B.b + val), want);
			if (!opt)
				assert_int_equal(a.udp_size, 1232);
		}
	}
}

static void test_dns_finish_answer_truncates(void **state)
{
	(void)state;
	static const struct {
		size_t nrr, max_len;
		bool opt, tc;
	} v[] = {
		{ 40, 512, true, true },   /* ~700 bytes into 512 */
		{ 40, 512, false, true },
		{ 40, 100, true, true },   /* below 512 means 512 */
		{ 25, 100, true, false },  /* ~450 bytes fit in 512 */
		{ 40, 1232, true, false },
		{ 100, 1232, true, true },
	};
	gw_dns_msg_t a;
	int n;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		gw_dns_answer_opts_t o = { .id = 3, .client_edns = v[i].opt,
					   .keepalive_100ms = -1,
					   .max_len = v[i].max_len };
		build_answer(&B, 1, "example.test", v[i].nrr, v[i].opt);
		finish(&B, &o, &n, &a);
		size_t limit = v[i].max_len < 512 ? 512 : v[i].max_len;
		assert_true((size_t)n <= limit);
		assert_int_equal(!!(a.flags & GW_DNS_TC), v[i].tc);
		assert_int_equal(a.qdcount, 1);
		assert_int_equal(a.qtype, GW_DNS_T_A);
		assert_int_equal(a.has_opt, v[i].opt);
		if (v[i].tc) {
			assert_int_equal(a.ancount, 0);
			assert_int_equal(a.nscount, 0);
			assert_int_equal(a.arcount, v[i].opt ? 1 : 0);
			assert_int_equal(a.question_end + (v[i].opt ? 11 + 12 : 0),
					 (size_t)n); /* the cookie stays */
		} else {
			assert_int_equal(a.ancount, v[i].nrr);
		}
	}
}

static void test_dns_finish_answer_drops_records_after_opt(void **state)
{
	(void)state;
	gw_dns_answer_opts_t o = { .id = 3, .client_edns = true,
				   .keepalive_100ms = 50 };
	gw_dns_msg_t a;
	int n;

	mb_header(&B, 1, GW_DNS_QR, 1, 1, 0, 3);
	mb_question(&B, "example.test", GW_DNS_T_A);
	mb_a_ptr(&B, 12, 10);
	mb_a_ptr(&B, 12, 10);
	size_t mark = mb_opt_begin(&B, 1232);
	mb_option(&B, GW_DNS_OPT_PADDING, 30, 0);
	mb_rr_end(&B, mark);
	mb_a_ptr(&B, 12, 10);
	finish(&B, &o, &n, &a);
	assert_int_equal(a.ancount, 1);
	assert_int_equal(a.arcount, 2); /* one glue + OPT */
	assert_true(a.has_keepalive);
	assert_int_equal(a.opt_end, (size_t)n);
}

/* Regression (libFuzzer): an upstream OPT already at the option cap plus
 * our keepalive and padding made an answer our own parser rejected. */
static void test_dns_finish_answer_option_cap(void **state)
{
	(void)state;
	gw_dns_answer_opts_t o = { .id = 3, .client_edns = true, .pad = true,
				   .keepalive_100ms = 100 };
	gw_dns_msg_t a;
	int n, cnt;

	for (int extra = 0; extra < 3; extra++) {
		mb_header(&B, 1, GW_DNS_QR, 1, 0, 0, 1);
		mb_question(&B, "example.test", GW_DNS_T_A);
		size_t mark = mb_opt_begin(&B, 1232);
		for (int k = 0; k < GW_DNS_MAX_EDNS_OPTIONS - extra; k++)
			mb_option(&B, 0, 0, 0);
		mb_rr_end(&B, mark);
		finish(&B, &o, &n, &a);
		/* room for as many of ours as the cap allows, in order */
		assert_int_equal(a.has_keepalive, extra >= 1);
		assert_int_equal(a.has_padding, extra >= 2);
		assert_int_equal(find_option(B.b, &a, 0, NULL, &cnt), 0);
		assert_int_equal(cnt, GW_DNS_MAX_EDNS_OPTIONS - extra);
	}
}

/* ---- locally generated errors ---- */

static void test_dns_make_error(void **state)
{
	(void)state;
	static const struct {
		const char *what;
		bool edns;
		int rcode, ede;
		const char *text;
	} v[] = {
		{ "SERVFAIL + EDE text", true, GW_DNS_SERVFAIL,
		  GW_DNS_EDE_NO_REACHABLE_AUTHORITY, "all upstreams down" },
		{ "REFUSED + EDE, no text", true, GW_DNS_REFUSED,
		  GW_DNS_EDE_PROHIBITED, NULL },
		{ "NOTIMP with OPT, no EDE", true, GW_DNS_NOTIMP, -1, NULL },
		{ "SERVFAIL without OPT", false, GW_DNS_SERVFAIL,
		  GW_DNS_EDE_NETWORK_ERROR, "ignored" },
	};
	gw_dns_msg_t q, e;
	int cnt;
	size_t val;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		print_message("%s\n", v[i].what);
		build_query(&B, 0x7777, "Example.test", GW_DNS_T_AAAA, NULL, 0,
			    v[i].edns);
		assert_int_equal(gw_dns_parse(B.b, B.n, &q), 0);
		int n = gw_dns_make_error(&q, v[i].rcode, v[i].ede, v[i].text,
					  out, sizeof(out));
		assert_true(n > 0);
		assert_int_equal(gw_dns_parse(out, (size_t)n, &e), 0);
		assert_int_equal(e.end, (size_t)n);
		assert_int_equal(e.id, 0x7777);
		assert_int_equal(GW_DNS_RCODE(e.flags), v[i].rcode);
		assert_true(e.flags & GW_DNS_QR);
		assert_true(e.flags & GW_DNS_RA);
		assert_true(e.flags & GW_DNS_RD);
		assert_true(gw_dns_answer_matches(&q, &e));
		assert_int_equal(e.has_opt, v[i].edns);
		int l = find_option(out, &e, GW_DNS_OPT_EDE, &val, &cnt);
		if (v[i].edns && v[i].ede >= 0) {
			size_t tl = v[i].text ? strlen(v[i].text) : 0;
			assert_int_equal(l, (int)(2 + tl));
			assert_int_equal(gw_dns_get16(out + val), v[i].ede);
			if (tl)
				assert_memory_equal(out + val + 2, v[i].text,
						    tl);
		} else {
			assert_int_equal(l, -1);
		}
		assert_int_equal(gw_dns_make_error(&q, v[i].rcode, v[i].ede,
						   v[i].text, out, (size_t)n - 1),
				 GW_ETOOBIG);
	}

	/* FORMERR for a query whose question did not parse: header only,
	 * opcode and RD copied */
	mb_header(&B, 0x55, GW_DNS_RD | (2 << 11), 1, 0, 0, 0);
	mb_bytes(&B, "\x41\x41", 2);
	assert_int_equal(gw_dns_parse(B.b, B.n, &q), GW_EMALFORMED);
	int n = gw_dns_make_error(&q, GW_DNS_FORMERR, -1, NULL, out,
				  sizeof(out));
	assert_int_equal(n, 12);
	assert_int_equal(gw_dns_parse(out, (size_t)n, &e), 0);
	assert_int_equal(e.qdcount, 0);
	assert_int_equal(e.id, 0x55);
	assert_int_equal(GW_DNS_OPCODE(e.flags), 2);
	assert_int_equal(GW_DNS_RCODE(e.flags), GW_DNS_FORMERR);
	/* QDCOUNT 2: no question either */
	mb_header(&B, 0x56, 0, 2, 0, 0, 0);
	mb_question(&B, "a.test", GW_DNS_T_A);
	mb_question(&B, "b.test", GW_DNS_T_A);
	assert_int_equal(gw_dns_parse(B.b, B.n, &q), 0);
	n = gw_dns_make_error(&q, GW_DNS_FORMERR, -1, NULL, out, sizeof(out));
	assert_int_equal(n, 12);
	assert_int_equal(gw_dns_parse(out, (size_t)n, &e), 0);
	assert_int_equal(e.qdcount, 0);
	assert_int_equal(GW_DNS_RCODE(e.flags), GW_DNS_FORMERR);

	assert_int_equal(gw_dns_make_error(NULL, GW_DNS_FORMERR, -1, NULL, out,
					   sizeof(out)),
			 GW_EMALFORMED);
	assert_int_equal(gw_dns_make_error(&q, 16, -1, NULL, out, sizeof(out)),
			 GW_EINVAL);
}

/* ---- matching and text ---- */

static void test_dns_answer_matches(void **state)
{
	(void)state;
	static const struct {
		const char *what;
		uint16_t id, flags, type;
		const char *name;
		bool want;
	} v[] = {
		{ "same", 10, GW_DNS_QR, GW_DNS_T_A, "www.example.test", true },
		{ "case differs", 10, GW_DNS_QR, GW_DNS_T_A, "WWW.eXample.TEST",
		  true },
		{ "other id", 11, GW_DNS_QR, GW_DNS_T_A, "www.example.test",
		  false },
		{ "not a response", 10, 0, GW_DNS_T_A, "www.example.test",
		  false },
		{ "other qtype", 10, GW_DNS_QR, GW_DNS_T_AAAA,
		  "www.example.test", false },
		{ "other qname", 10, GW_DNS_QR, GW_DNS_T_A, "www.example.tesu",
		  false },
		{ "longer qname", 10, GW_DNS_QR, GW_DNS_T_A,
		  "www.example.test.x", false },
		{ "opcode not QUERY", 10, GW_DNS_QR | (4 << 11), GW_DNS_T_A,
		  "www.example.test", false },
	};
	gw_dns_msg_t q, a;

	build_query(&B, 10, "www.example.test", GW_DNS_T_A, NULL, 0, false);
	assert_int_equal(gw_dns_parse(B.b, B.n, &q), 0);
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		print_message("%s\n", v[i].what);
		mb_header(&C, v[i].id, v[i].flags, 1, 0, 0, 0);
		mb_question(&C, v[i].name, v[i].type);
		assert_int_equal(gw_dns_parse(C.b, C.n, &a), 0);
		assert_int_equal(gw_dns_answer_matches(&q, &a), v[i].want);
	}
	/* no question in the answer */
	mb_header(&C, 10, GW_DNS_QR, 0, 0, 0, 0);
	assert_int_equal(gw_dns_parse(C.b, C.n, &a), 0);
	assert_false(gw_dns_answer_matches(&q, &a));
}

static void test_dns_name_to_text(void **state)
{
	(void)state;
	static const struct {
		uint8_t wire[32];
		size_t len;
		const char *want;
	} v[] = {
		{ { 3, 'w', 'w', 'w', 4, 't', 'e', 's', 't', 0 }, 10,
		  "www.test." },
		{ { 0 }, 1, "." },
		{ { 3, 'a', '.', 'b', 0 }, 5, "a\\.b." },
		{ { 2, ' ', 0xff, 0 }, 4, "\\032\\255." },
		{ { 2, '\\', 'x', 0 }, 4, "\\\\x." },
		{ { 9, 'a' }, 2, "." }, /* label past the end: stop */
	};
	char buf[64];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		gw_dns_name_to_text(v[i].wire, v[i].len, buf, sizeof(buf));
		assert_string_equal(buf, v[i].want);
	}
	/* a small buffer truncates but terminates */
	gw_dns_name_to_text(v[0].wire, v[0].len, buf, 5);
	assert_string_equal(buf, "www.");
	gw_dns_name_to_text(v[3].wire, v[3].len, buf, 6);
	assert_string_equal(buf, "\\032");
}

static void test_dns_strerror(void **state)
{
	(void)state;
	static const int codes[] = { GW_OK,	  GW_EMALFORMED, GW_ETOOBIG,
				     GW_EUPSTREAM, GW_ETLS,	  GW_ECLOSED,
				     GW_ECONFIG,   GW_ENOMEM,	  GW_EINVAL,
				     GW_EAGAIN,	  GW_ETIMEDOUT,	 GW_ENOSPC };
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		assert_non_null(gw_strerror(codes[i]));
		assert_string_not_equal(gw_strerror(codes[i]), "unknown error");
	}
	assert_string_equal(gw_strerror(-99999), "unknown error");
	/* other errno values read as the C library names them */
	assert_string_equal(gw_strerror(-ECONNREFUSED), "Connection refused");
}

/* policy.ecs.add: RFC 7871 6 option, truncated, only where it is safe. */
static void test_dns_add_ecs(void **state)
{
	static mb_t m;
	static uint8_t buf[600];
	gw_dns_msg_t pm;
	size_t off;
	int n, cnt;
	const uint8_t v4[4] = { 192, 0, 2, 201 };
	const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34, 0x56, 0x78,
				 9,    9,    9,    9,    9,    9,    9,    9 };
	(void)state;

	/* IPv4 /24: 4 + 3 address bytes, scope 0 */
	m.n = 0;
	build_query(&m, 7, "example.test", GW_DNS_T_A,
		    (const uint16_t[]){ GW_DNS_OPT_COOKIE }, 1, true);
	memcpy(buf, m.b, m.n);
	n = gw_dns_add_ecs(buf, m.n, sizeof(buf), 1, v4, 24);
	assert_int_equal(n, (int)m.n + 4 + 7);
	assert_int_equal(gw_dns_parse(buf, (size_t)n, &pm), 0);
	assert_true(pm.has_ecs);
	assert_int_equal(find_option(buf, &pm, GW_DNS_OPT_ECS, &off, &cnt), 7);
	assert_int_equal(cnt, 1);
	assert_memory_equal(buf + off,
			    ((const uint8_t[]){ 0, 1, 24, 0, 192, 0, 2 }), 7);
	assert_int_equal(find_option(buf, &pm, GW_DNS_OPT_COOKIE, &off, &cnt),
			 2);

	/* a prefix inside an octet zeroes the bits past it: /20 */
	memcpy(buf, m.b, m.n);
	n = gw_dns_add_ecs(buf, m.n, sizeof(buf), 1, v4, 20);
	assert_int_equal(gw_dns_parse(buf, (size_t)n, &pm), 0);
	assert_int_equal(find_option(buf, &pm, GW_DNS_OPT_ECS, &off, &cnt), 7);
	assert_memory_equal(buf + off,
			    ((const uint8_t[]){ 0, 1, 20, 0, 192, 0, 0 }), 7);

	/* IPv6 /56: 7 address bytes; /0: no address at all */
	memcpy(buf, m.b, m.n);
	n = gw_dns_add_ecs(buf, m.n, sizeof(buf), 2, v6, 56);
	assert_int_equal(gw_dns_parse(buf, (size_t)n, &pm), 0);
	assert_int_equal(find_option(buf, &pm, GW_DNS_OPT_ECS, &off, &cnt),
			 11);
	assert_memory_equal(buf + off,
			    ((const uint8_t[]){ 0, 2, 56, 0, 0x20, 0x01, 0x0d,
						0xb8, 0x12, 0x34, 0x56 }),
			    11);
	memcpy(buf, m.b, m.n);
	n = gw_dns_add_ecs(buf, m.n, sizeof(buf), 2, v6, 0);
	assert_int_equal(gw_dns_parse(buf, (size_t)n, &pm), 0);
	assert_int_equal(find_option(buf, &pm, GW_DNS_OPT_ECS, &off, &cnt), 4);

	/* no room: GW_ETOOBIG and nothing claimed */
	memcpy(buf, m.b, m.n);
	assert_int_equal(gw_dns_add_ecs(buf, m.n, m.n + 5, 1, v4, 24),
			 GW_ETOOBIG);
	/* bad family or prefix */
	assert_int_equal(gw_dns_add_ecs(buf, m.n, sizeof(buf), 3, v4, 24),
			 GW_EINVAL);
	assert_int_equal(gw_dns_add_ecs(buf, m.n, sizeof(buf), 1, v4, 33),
			 GW_EINVAL);
	assert_int_equal(gw_dns_add_ecs(buf, 5, sizeof(buf), 1, v4, 24),
			 GW_EMALFORMED);

	/* left alone: a query without EDNS, one with the client's own ECS */
	m.n = 0;
	build_query(&m, 7, "example.test", GW_DNS_T_A, NULL, 0, false);
	memcpy(buf, m.b, m.n);
	assert_int_equal(gw_dns_add_ecs(buf, m.n, sizeof(buf), 1, v4, 24),
			 (int)m.n);
	assert_memory_equal(buf, m.b, m.n);
	m.n = 0;
	build_query(&m, 7, "example.test", GW_DNS_T_A,
		    (const uint16_t[]){ GW_DNS_OPT_ECS }, 1, true);
	memcpy(buf, m.b, m.n);
	assert_int_equal(gw_dns_add_ecs(buf, m.n, sizeof(buf), 1, v4, 24),
			 (int)m.n);
	assert_memory_equal(buf, m.b, m.n);
	/* a record after the OPT (a TSIG, say) would be broken: left alone */
	m.n = 0;
	mb_header(&m, 7, GW_DNS_RD, 1, 0, 0, 2);
	mb_question(&m, "example.test", GW_DNS_T_A);
	size_t mark = mb_opt_begin(&m, 1232);
	mb_rr_end(&m, mark);
	mb_a_ptr(&m, 12, 0);
	memcpy(buf, m.b, m.n);
	assert_int_equal(gw_dns_add_ecs(buf, m.n, sizeof(buf), 1, v4, 24),
			 (int)m.n);
	assert_memory_equal(buf, m.b, m.n);
}

/* An ECS the gateway added is not passed back to a client that never sent
 * one (RFC 7871 7.2.2); without strip_ecs it stays. */
static void test_dns_finish_answer_strips_added_ecs(void **state)
{
	static mb_t m;
	static uint8_t buf[70000];
	gw_dns_msg_t am, pm;
	size_t off;
	int cnt, n;
	(void)state;

	m.n = 0;
	mb_header(&m, 1, GW_DNS_QR | GW_DNS_RD | GW_DNS_RA, 1, 0, 0, 1);
	mb_question(&m, "example.test", GW_DNS_T_A);
	size_t mark = mb_opt_begin(&m, 1232);
	mb_option(&m, GW_DNS_OPT_ECS, 7, 1);
	mb_rr_end(&m, mark);
	for (int strip = 0; strip <= 1; strip++) {
		memcpy(buf, m.b, m.n);
		assert_int_equal(gw_dns_parse(buf, m.n, &am), 0);
		gw_dns_answer_opts_t o = { .id = 9, .client_edns = true,
					   .keepalive_100ms = -1,
					   .strip_ecs = strip };
		n = gw_dns_finish_answer(buf, m.n, sizeof(buf), &am, &o);
		assert_true(n > 0);
		assert_int_equal(gw_dns_parse(buf, (size_t)n, &pm), 0);
		assert_int_equal(pm.has_ecs, !strip);
		assert_int_equal(find_option(buf, &pm, GW_DNS_OPT_ECS, &off,
					     &cnt),
				 strip ? -1 : 7);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dns_parse_valid_query),
		cmocka_unit_test(test_dns_parse_answer_with_compression),
		cmocka_unit_test(test_dns_parse_trailing_bytes),
		cmocka_unit_test(test_dns_parse_truncated),
		cmocka_unit_test(test_dns_parse_bad_names),
		cmocka_unit_test(test_dns_parse_pointer_hops),
		cmocka_unit_test(test_dns_parse_opt_rules),
		cmocka_unit_test(test_dns_parse_many_options),
		cmocka_unit_test(test_dns_parse_every_prefix),
		cmocka_unit_test(test_dns_ttl_scan),
		cmocka_unit_test(test_dns_check_query),
		cmocka_unit_test(test_dns_upstream_query_strips),
		cmocka_unit_test(test_dns_upstream_query_opt_not_last),
		cmocka_unit_test(test_dns_upstream_query_pointer_into_opt),
		cmocka_unit_test(test_dns_finish_answer_id_and_hop_by_hop),
		cmocka_unit_test(test_dns_finish_answer_padding),
		cmocka_unit_test(test_dns_finish_answer_keepalive),
		cmocka_unit_test(test_dns_finish_answer_truncates),
		cmocka_unit_test(test_dns_finish_answer_drops_records_after_opt),
		cmocka_unit_test(test_dns_finish_answer_option_cap),
		cmocka_unit_test(test_dns_make_error),
		cmocka_unit_test(test_dns_answer_matches),
		cmocka_unit_test(test_dns_name_to_text),
		cmocka_unit_test(test_dns_strerror),
		cmocka_unit_test(test_dns_add_ecs),
		cmocka_unit_test(test_dns_finish_answer_strips_added_ecs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

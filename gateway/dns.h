/*
 * dns.h - bounded DNS wire reader and the few rewrites a gateway needs.
 *
 * Sans-I/O: every function takes bytes and returns bytes or a verdict; none
 * allocates. All reads are bounds-checked against the given length; names are
 * followed through compression pointers only backwards and at most
 * GW_DNS_MAX_PTR_HOPS times, so loops are rejected in bounded time. A pointer
 * must lead to a name lying wholly before the label run holding the pointer
 * (true of every real compressor), so a name never reads past its record.
 *
 * Callers keep ownership of every buffer they pass in. gw_dns_msg_t holds only
 * offsets into the message it was parsed from, plus a copy of the question.
 */
#ifndef GW_DNS_H
#define GW_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_DNS_HEADER_LEN 12
#define GW_DNS_MAX_MSG 65535
#define GW_DNS_MAX_NAME 255
#define GW_DNS_MAX_PTR_HOPS 64
#define GW_DNS_PADDING_BLOCK 468 /* RFC 8467 4.1: responses */
#define GW_DNS_MAX_EDNS_OPTIONS 64 /* more than this in one OPT: FORMERR */

/* header flag bits (second 16-bit word) */
#define GW_DNS_QR 0x8000
#define GW_DNS_AA 0x0400
#define GW_DNS_TC 0x0200
#define GW_DNS_RD 0x0100
#define GW_DNS_RA 0x0080
#define GW_DNS_AD 0x0020
#define GW_DNS_CD 0x0010
#define GW_DNS_OPCODE(flags) (((flags) >> 11) & 0xf)
#define GW_DNS_RCODE(flags) ((flags)&0xf)

enum gw_dns_rcode {
	GW_DNS_NOERROR = 0,
	GW_DNS_FORMERR = 1,
	GW_DNS_SERVFAIL = 2,
	GW_DNS_NXDOMAIN = 3,
	GW_DNS_NOTIMP = 4,
	GW_DNS_REFUSED = 5,
};

enum gw_dns_type {
	GW_DNS_T_A = 1,
	GW_DNS_T_NS = 2,
	GW_DNS_T_SOA = 6,
	GW_DNS_T_AAAA = 28,
	GW_DNS_T_OPT = 41,
	GW_DNS_T_IXFR = 251,
	GW_DNS_T_AXFR = 252,
};

enum gw_dns_edns_option {
	GW_DNS_OPT_ECS = 8,
	GW_DNS_OPT_COOKIE = 10,
	GW_DNS_OPT_TCP_KEEPALIVE = 11,
	GW_DNS_OPT_PADDING = 12,
	GW_DNS_OPT_EDE = 15,
};

/* RFC 8914 Extended DNS Error codes used by the gateway */
enum gw_dns_ede {
	GW_DNS_EDE_OTHER = 0,
	GW_DNS_EDE_PROHIBITED = 18,
	GW_DNS_EDE_NOT_READY = 14,
	GW_DNS_EDE_NO_REACHABLE_AUTHORITY = 22,
	GW_DNS_EDE_NETWORK_ERROR = 23,
	GW_DNS_EDE_TOO_EARLY = 26,
};

typedef struct gw_dns_msg {
	/* header, host byte order; always valid when len >= 12 */
	uint16_t id;
	uint16_t flags;
	uint16_t qdcount, ancount, nscount, arcount;

	/* first question (valid when qdcount >= 1 and parsing got that far);
	 * qname is in uncompressed wire form, as it appeared (case kept) */
	uint8_t qname[GW_DNS_MAX_NAME];
	uint16_t qname_len;
	uint16_t qtype, qclass;
	size_t question_end; /* offset just past the first question */

	size_t end; /* offset just past the last record; len - end = trailing */

	/* EDNS (RFC 6891) */
	bool has_opt;
	size_t opt_off;     /* offset of the OPT RR (its owner name byte) */
	size_t opt_end;     /* offset just past the OPT RR */
	uint16_t udp_size;  /* OPT CLASS */
	uint32_t opt_ttl;   /* extended rcode, version, flags (DO bit) */
	bool has_padding;   /* option 12 present */
	bool has_keepalive; /* option 11 present */
	uint16_t keepalive_len; /* its option length (queries must send 0) */
	bool has_ecs;       /* option 8 present */

	/* TTL scan over answer and authority (not OPT). For a negative answer
	 * (no answer records) the SOA's min(TTL, MINIMUM) is used (RFC 2308 5).
	 * has_ttl is false when no record carried a TTL. */
	bool has_ttl;
	uint32_t min_ttl;
} gw_dns_msg_t;

/*
 * Parses a whole message: header, every question and record (names checked,
 * compression pointers followed), the OPT record and its options.
 * Returns 0, or GW_EMALFORMED when the message is truncated, a name is bad, a
 * pointer loops or points forward, OPT appears twice or outside Additional, an
 * OPT owner name is not root, or options overrun their RR. When len >= 12 the
 * header fields of *m are filled even on failure, so a FORMERR can be built.
 * Bytes after the last record are not an error: m->end < len tells.
 */
int gw_dns_parse(const uint8_t *msg, size_t len, gw_dns_msg_t *m);

/*
 * Decides how a parsed client query must be answered before forwarding
 * (REQUIREMENTS.md "DNS messages"). Returns -1 to forward, or the rcode to
 * answer with locally: FORMERR for QR=1, QDCOUNT != 1, or an
 * edns-tcp-keepalive option with non-zero length; NOTIMP for an opcode other
 * than QUERY. (The caller answers FORMERR itself when gw_dns_parse failed.)
 */
int gw_dns_check_query(const gw_dns_msg_t *m);

/*
 * Builds the message sent upstream from a parsed client query: the header with
 * ID set to new_id, the question and records up to m->end (trailing bytes
 * dropped), and the OPT record with hop-by-hop options removed (padding,
 * tcp-keepalive) and, when strip_ecs, client-subnet removed. Writes into out
 * (cap bytes). Records after the OPT (a TSIG, say) are kept and their owner
 * names' pointers shifted. Returns the length, GW_ETOOBIG if out is too small,
 * or GW_EMALFORMED in the pathological case where records after the OPT point
 * into it or chain through RDATA so the result would not parse.
 */
int gw_dns_make_upstream_query(const uint8_t *msg, const gw_dns_msg_t *m,
			       uint16_t new_id, bool strip_ecs, uint8_t *out,
			       size_t cap);

/* How to finish an upstream answer for the client. */
typedef struct gw_dns_answer_opts {
	uint16_t id;        /* client's original message ID */
	bool client_edns;   /* the client query carried OPT */
	bool pad;           /* RFC 8467: pad to a multiple of GW_DNS_PADDING_BLOCK */
	int keepalive_100ms;/* >= 0: add edns-tcp-keepalive with this timeout */
	size_t max_len;     /* UDP: client's payload size; truncate with TC=1 past
			     * it. 0 = no limit (streams). */
	bool strip_ecs;     /* remove client-subnet: the gateway added it, the
			     * client did not ask (RFC 7871 7.2.2) */
} gw_dns_answer_opts_t;

/*
 * Rewrites an upstream answer in place for the client: restores the ID, drops
 * trailing bytes, removes the upstream's hop-by-hop options (padding,
 * keepalive), adds keepalive and padding as asked (only when the client sent
 * OPT), and truncates to the question (plus OPT) with TC=1 when max_len is
 * exceeded (max_len below 512 counts as 512, RFC 1035 4.2.1). Records after
 * the OPT are dropped (Additional data, RFC 2181 9). Added options that do not
 * fit (65535, cap, max_len, GW_DNS_MAX_EDNS_OPTIONS) are left out; padding is
 * left out when the next multiple of the block would not fit. A client with
 * EDNS whose answer has no OPT gets a fresh one (UDP size 1232) when there is
 * an option to add. buf has cap bytes of room (GW_DNS_MAX_MSG suffices); len
 * is the answer's length and m its successful parse. Returns the new length,
 * never above 65535, or GW_EMALFORMED when m does not fit buf.
 */
int gw_dns_finish_answer(uint8_t *buf, size_t len, size_t cap,
			 const gw_dns_msg_t *m, const gw_dns_answer_opts_t *o);

/*
 * Builds a locally generated answer (FORMERR, SERVFAIL, NOTIMP, REFUSED) to a
 * query: the header (ID, opcode and RD copied, QR set, RA set), the question
 * when QDCOUNT was 1 and the parse got past it, and, when the query's OPT was
 * parsed, an OPT record with an Extended DNS Error (ede >= 0, with optional
 * UTF-8 text). q may be NULL when len < 12 made the header unreadable: then
 * GW_EMALFORMED. Returns the length written to out, GW_ETOOBIG when cap is too
 * small, or GW_EINVAL for an rcode outside 0..15.
 */
int gw_dns_make_error(const gw_dns_msg_t *q, int rcode, int ede,
		      const char *ede_text, uint8_t *out, size_t cap);

/*
 * True when answer a (parsed) belongs to query q: same ID, QR set, opcode
 * QUERY, one question with equal qtype and qclass and a qname equal ignoring
 * ASCII case (RFC 4343). Used to ignore spoofed or stale upstream answers.
 */
bool gw_dns_answer_matches(const gw_dns_msg_t *q, const gw_dns_msg_t *a);

/* Room an option added by gw_dns_add_ecs() takes at most: option header,
 * family, prefix lengths and an IPv6 address (RFC 7871 6). */
#define GW_DNS_ECS_MAX_LEN (4 + 4 + 16)

/*
 * Adds an EDNS Client Subnet option (RFC 7871 6) to a query of len bytes in
 * msg (cap bytes of room): family 1 with a 4-byte addr or family 2 with a
 * 16-byte addr, cut to prefix bits (the bytes past the prefix left out, the
 * bits past it zeroed), scope 0. Only a query whose OPT is its last record
 * and carries no ECS yet is changed; any other (no EDNS, the client's own
 * ECS, a TSIG after the OPT that a change would break) comes back as is.
 * Trailing bytes after the last record are dropped. Returns the new length,
 * GW_ETOOBIG when cap (or 65535) is too small, GW_EMALFORMED when msg does
 * not parse, GW_EINVAL for a bad family or prefix.
 */
int gw_dns_add_ecs(uint8_t *msg, size_t len, size_t cap, int family,
		   const uint8_t *addr, unsigned prefix);

/* Writes the qname as presentation text ("example.test.") for logs. */
void gw_dns_name_to_text(const uint8_t *wire, size_t len, char *out,
			 size_t cap);

static inline uint16_t gw_dns_get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}
static inline void gw_dns_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline uint32_t gw_dns_get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | p[3];
}
static inline void gw_dns_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

#endif

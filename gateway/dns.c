/*
 * dns.c - bounded DNS wire reader and the gateway's rewrites (see dns.h).
 *
 * Every read is checked against the message length before it happens; names
 * follow compression pointers only to offsets strictly below the start of the
 * label run being read, so each hop moves backwards and loops cannot exist.
 */
#include "dns.h"

#include <string.h>

#include "error.h"

#define OPT_FIXED_LEN 11 /* root owner, TYPE, CLASS, TTL, RDLENGTH */
#define OPT_UDP_SIZE 1232 /* DNS flag day 2020 default */
#define MIN_UDP_LEN 512 /* RFC 1035 4.2.1 */

enum section { SEC_AN, SEC_NS, SEC_AR };

/*
 * Reads the name at *pos. On success *pos is just past the name as it sits in
 * the record (after the first pointer, if any) and, when out is given, the
 * uncompressed wire form is copied there (at most GW_DNS_MAX_NAME bytes).
 */
static int read_name(const uint8_t *msg, size_t len, size_t *pos,
		     uint8_t *out, uint16_t *out_len)
{
	size_t p = *pos, run = *pos, after = 0;
	size_t nlen = 0;
	unsigned hops = 0;

	/*
	 * A pointer names an earlier name, written completely before the run
	 * holding the pointer began: so after a jump every byte read must lie
	 * below that run's start (len then shrinks to it). Loops are then
	 * impossible, and a name never reads bytes past its own record.
	 */
	for (;;) {
		if (p >= len)
			return GW_EMALFORMED;
		uint8_t c = msg[p];
		if (c == 0) {
			if (out)
				out[nlen] = 0;
			nlen++;
			p++;
			break;
		}
		switch (c & 0xc0) {
		case 0x00:
			/* RFC 1035 3.1: labels <= 63 (guaranteed by the top
			 * bits), names <= 255 octets including the root. */
			if (nlen + 1 + c + 1 > GW_DNS_MAX_NAME)
				return GW_EMALFORMED;
			if (len - p - 1 < c)
				return GW_EMALFORMED;
			if (out)
				memcpy(out + nlen, msg + p, 1 + (size_t)c);
			nlen += 1 + (size_t)c;
			p += 1 + (size_t)c;
			break;
		case 0xc0: {
			if (len - p < 2)
				return GW_EMALFORMED;
			size_t t = ((size_t)(c & 0x3f) << 8) | msg[p + 1];
			/* RFC 1035 4.1.4: backwards only, never into the
			 * header. */
			if (t >= run || t < GW_DNS_HEADER_LEN)
				return GW_EMALFORMED;
			if (++hops > GW_DNS_MAX_PTR_HOPS)
				return GW_EMALFORMED;
			if (!after)
				after = p + 2;
			len = run;
			p = run = t;
			break;
		}
		default:
			/* RFC 6891 5 / RFC 2673: extended label types are
			 * obsolete; treat 0x40 and 0x80 as malformed. */
			return GW_EMALFORMED;
		}
	}
	*pos = after ? after : p;
	if (out_len)
		*out_len = (uint16_t)nlen;
	return 0;
}

/* RFC 2181 8: a TTL with the top bit set is treated as zero. */
static uint32_t sane_ttl(uint32_t ttl)
{
	return (ttl & 0x80000000u) ? 0 : ttl;
}

static void note_ttl(gw_dns_msg_t *m, uint32_t ttl)
{
	ttl = sane_ttl(ttl);
	if (!m->has_ttl || ttl < m->min_ttl)
		m->min_ttl = ttl;
	m->has_ttl = true;
}

/* SOA RDATA: MNAME, RNAME, SERIAL, REFRESH, RETRY, EXPIRE, MINIMUM. Returns
 * false when the RDATA cannot be read; the TTL alone is used then. */
static bool soa_minimum(const uint8_t *msg, size_t len, size_t rd,
			size_t rdend, uint32_t *min)
{
	size_t p = rd;

	if (read_name(msg, len, &p, NULL, NULL) < 0 || p > rdend)
		return false;
	if (read_name(msg, len, &p, NULL, NULL) < 0 || p > rdend)
		return false;
	if (rdend - p < 20)
		return false;
	*min = gw_dns_get32(msg + p + 16);
	return true;
}

static int parse_opt_options(const uint8_t *msg, size_t rd, size_t rdend,
			     gw_dns_msg_t *m)
{
	unsigned count = 0;

	while (rd < rdend) {
		if (rdend - rd < 4)
			return GW_EMALFORMED;
		uint16_t code = gw_dns_get16(msg + rd);
		uint16_t olen = gw_dns_get16(msg + rd + 2);
		rd += 4;
		if (rdend - rd < olen)
			return GW_EMALFORMED;
		/* Bounds the work per OPT and any per-option state later. */
		if (++count > GW_DNS_MAX_EDNS_OPTIONS)
			return GW_EMALFORMED;
		switch (code) {
		case GW_DNS_OPT_PADDING:
			m->has_padding = true;
			break;
		case GW_DNS_OPT_TCP_KEEPALIVE:
			/* Keep the largest so a duplicate cannot hide a
			 * non-zero length from gw_dns_check_query. */
			if (!m->has_keepalive || olen > m->keepalive_len)
				m->keepalive_len = olen;
			m->has_keepalive = true;
			break;
		case GW_DNS_OPT_ECS:
			m->has_ecs = true;
			break;
		}
		rd += olen;
	}
	return 0;
}

static int parse_rr(const uint8_t *msg, size_t len, size_t *pos,
		    enum section sec, gw_dns_msg_t *m)
{
	size_t start = *pos, p = *pos;
	int r = read_name(msg, len, &p, NULL, NULL);

	if (r < 0)
		return r;
	if (len - p < 10)
		return GW_EMALFORMED;
	uint16_t type = gw_dns_get16(msg + p);
	uint16_t class = gw_dns_get16(msg + p + 2);
	uint32_t ttl = gw_dns_get32(msg + p + 4);
	uint16_t rdlen = gw_dns_get16(msg + p + 8);
	p += 10;
	if (len - p < rdlen)
		return GW_EMALFORMED;
	size_t rd = p, rdend = p + rdlen;

	if (type == GW_DNS_T_OPT) {
		/* RFC 6891 6.1.1: only in Additional, at most one, owner is
		 * the root. */
		if (sec != SEC_AR || m->has_opt || msg[start] != 0)
			return GW_EMALFORMED;
		r = parse_opt_options(msg, rd, rdend, m);
		if (r < 0)
			return r;
		m->has_opt = true;
		m->opt_off = start;
		m->opt_end = rdend;
		m->udp_size = class;
		m->opt_ttl = ttl;
	} else if (sec != SEC_AR) {
		uint32_t min;
		/* RFC 2308 5: a negative answer lives as long as the SOA's
		 * min(TTL, MINIMUM). */
		if (type == GW_DNS_T_SOA && sec == SEC_NS && m->ancount == 0 &&
		    soa_minimum(msg, len, rd, rdend, &min) &&
		    sane_ttl(min) < sane_ttl(ttl))
			ttl = min;
		note_ttl(m, ttl);
	}
	*pos = rdend;
	return 0;
}

int gw_dns_parse(const uint8_t *msg, size_t len, gw_dns_msg_t *m)
{
	size_t p = GW_DNS_HEADER_LEN;
	int r;

	memset(m, 0, sizeof(*m));
	if (!msg || len < GW_DNS_HEADER_LEN)
		return GW_EMALFORMED;
	m->id = gw_dns_get16(msg);
	m->flags = gw_dns_get16(msg + 2);
	m->qdcount = gw_dns_get16(msg + 4);
	m->ancount = gw_dns_get16(msg + 6);
	m->nscount = gw_dns_get16(msg + 8);
	m->arcount = gw_dns_get16(msg + 10);
	m->question_end = GW_DNS_HEADER_LEN;
	/* No transport carries more; offsets below then fit in 16 bits. */
	if (len > GW_DNS_MAX_MSG)
		return GW_EMALFORMED;

	for (unsigned i = 0; i < m->qdcount; i++) {
		uint8_t name[GW_DNS_MAX_NAME];
		uint16_t nlen;

		r = read_name(msg, len, &p, name, &nlen);
		if (r < 0)
			return r;
		if (len - p < 4)
			return GW_EMALFORMED;
		if (i == 0) {
			memcpy(m->qname, name, nlen);
			m->qname_len = nlen;
			m->qtype = gw_dns_get16(msg + p);
			m->qclass = gw_dns_get16(msg + p + 2);
			m->question_end = p + 4;
		}
		p += 4;
	}

	static const enum section secs[] = { SEC_AN, SEC_NS, SEC_AR };
	const uint16_t counts[] = { m->ancount, m->nscount, m->arcount };
	for (unsigned s = 0; s < 3; s++) {
		for (unsigned i = 0; i < counts[s]; i++) {
			r = parse_rr(msg, len, &p, secs[s], m);
			if (r < 0)
				return r;
		}
	}
	m->end = p;
	return 0;
}

int gw_dns_check_query(const gw_dns_msg_t *m)
{
	if (m->flags & GW_DNS_QR)
		return GW_DNS_FORMERR;
	if (GW_DNS_OPCODE(m->flags) != 0)
		return GW_DNS_NOTIMP;
	if (m->qdcount != 1)
		return GW_DNS_FORMERR;
	/* RFC 7828 3.2.1: clients MUST send the option with no data. */
	if (m->has_keepalive && m->keepalive_len != 0)
		return GW_DNS_FORMERR;
	return -1;
}

/* Hop-by-hop options (RFC 7830, RFC 7828) never cross the gateway. */
static bool drop_option(uint16_t code, bool strip_ecs)
{
	return code == GW_DNS_OPT_PADDING || code == GW_DNS_OPT_TCP_KEEPALIVE ||
	       (strip_ecs && code == GW_DNS_OPT_ECS);
}

/*
 * Copies the OPT record's options minus the dropped ones from src[rd, rdend)
 * to dst (which may alias src at the same or a lower address: copies only
 * ever move bytes backwards). Returns the new RDATA length.
 */
static size_t filter_options(uint8_t *dst, const uint8_t *src, size_t rd,
			     size_t rdend, bool strip_ecs, unsigned *kept)
{
	size_t w = 0;

	*kept = 0;

	while (rdend - rd >= 4) {
		uint16_t code = gw_dns_get16(src + rd);
		size_t olen = gw_dns_get16(src + rd + 2);
		if (rdend - rd - 4 < olen)
			break; /* parse already rejected this */
		if (!drop_option(code, strip_ecs)) {
			memmove(dst + w, src + rd, 4 + olen);
			w += 4 + olen;
			(*kept)++;
		}
		rd += 4 + olen;
	}
	return w;
}

/*
 * Shifts the compression pointer of one name sitting at out[p] that refers
 * into the part of the message that moved: targets past the old OPT move by
 * (new_end - old_end); targets inside the old OPT's RDATA have no meaning any
 * more. Only the pointer in the record itself is fixed; the caller re-parses
 * the result to catch chains through RDATA.
 */
static int shift_name(uint8_t *out, size_t len, size_t *pos, size_t opt_off,
		      size_t old_end, size_t new_end)
{
	size_t p = *pos;

	for (;;) {
		if (p >= len)
			return GW_EMALFORMED;
		uint8_t c = out[p];
		if (c == 0) {
			p++;
			break;
		}
		if ((c & 0xc0) == 0xc0) {
			if (len - p < 2)
				return GW_EMALFORMED;
			size_t t = ((size_t)(c & 0x3f) << 8) | out[p + 1];
			if (t >= old_end) {
				t = t - old_end + new_end;
				if (t > 0x3fff)
					return GW_EMALFORMED;
				gw_dns_put16(out + p, (uint16_t)(0xc000 | t));
			} else if (t > opt_off) {
				return GW_EMALFORMED;
			}
			p += 2;
			break;
		}
		if (c & 0xc0)
			return GW_EMALFORMED;
		p += 1 + (size_t)c;
	}
	*pos = p;
	return 0;
}

int gw_dns_make_upstream_query(const uint8_t *msg, const gw_dns_msg_t *m,
			       uint16_t new_id, bool strip_ecs, uint8_t *out,
			       size_t cap)
{
	size_t end = m->end, o;
	unsigned kept;

	if (end < GW_DNS_HEADER_LEN)
		return GW_EMALFORMED;
	if (!m->has_opt) {
		if (end > cap)
			return GW_ETOOBIG;
		memcpy(out, msg, end);
		gw_dns_put16(out, new_id);
		return (int)end;
	}

	/* The result is never longer than the input: options only go. */
	if (end > cap)
		return GW_ETOOBIG;
	memcpy(out, msg, m->opt_off + OPT_FIXED_LEN);
	o = m->opt_off + OPT_FIXED_LEN;
	o += filter_options(out + o, msg, m->opt_off + OPT_FIXED_LEN,
			    m->opt_end, strip_ecs, &kept);
	gw_dns_put16(out + m->opt_off + 9,
		     (uint16_t)(o - m->opt_off - OPT_FIXED_LEN));
	gw_dns_put16(out, new_id);
	if (m->opt_end == end)
		return (int)o;

	/* Records after the OPT (a TSIG, say) move; fix their owner names'
	 * pointers and make sure the result still reads. */
	size_t new_opt_end = o;
	memcpy(out + o, msg + m->opt_end, end - m->opt_end);
	o += end - m->opt_end;
	size_t p = new_opt_end;
	while (p < o) {
		if (shift_name(out, o, &p, m->opt_off, m->opt_end,
			       new_opt_end) < 0 ||
		    o - p < 10)
			return GW_EMALFORMED;
		p += 10 + (size_t)gw_dns_get16(out + p + 8);
	}
	gw_dns_msg_t check;
	if (p != o || gw_dns_parse(out, o, &check) < 0 || check.end != o)
		return GW_EMALFORMED;
	return (int)o;
}

/* Skips one RR at *pos (message already parsed, so it is well formed). */
static int skip_rr(const uint8_t *msg, size_t len, size_t *pos)
{
	int r = read_name(msg, len, pos, NULL, NULL);

	if (r < 0)
		return r;
	if (len - *pos < 10)
		return GW_EMALFORMED;
	size_t rdlen = gw_dns_get16(msg + *pos + 8);
	if (len - *pos - 10 < rdlen)
		return GW_EMALFORMED;
	*pos += 10 + rdlen;
	return 0;
}

static void write_opt_header(uint8_t *p, uint16_t udp_size, uint32_t ttl)
{
	p[0] = 0;
	gw_dns_put16(p + 1, GW_DNS_T_OPT);
	gw_dns_put16(p + 3, udp_size);
	gw_dns_put32(p + 5, ttl);
	gw_dns_put16(p + 9, 0);
}

int gw_dns_finish_answer(uint8_t *buf, size_t len, size_t cap,
			 const gw_dns_msg_t *m, const gw_dns_answer_opts_t *o)
{
	size_t n, opt_off = 0, limit;
	bool has_opt = m->has_opt;
	uint16_t arcount = m->arcount;
	unsigned nopts = 0;
	int r;

	if (m->end < GW_DNS_HEADER_LEN || m->end > len || len > cap ||
	    m->question_end > m->end || (has_opt && m->opt_end > m->end))
		return GW_EMALFORMED;

	/* Hard ceiling for everything added below. */
	limit = cap < GW_DNS_MAX_MSG ? cap : GW_DNS_MAX_MSG;
	if (o->max_len > 0) {
		size_t udp = o->max_len < MIN_UDP_LEN ? MIN_UDP_LEN : o->max_len;
		if (udp < limit)
			limit = udp;
	}

	gw_dns_put16(buf, o->id);
	n = m->end; /* trailing bytes go */

	if (has_opt) {
		/*
		 * Records after the OPT are dropped: they can only be
		 * Additional-section data (or a TSIG the rewrite breaks
		 * anyway), which RFC 2181 9 lets a server omit without TC,
		 * and keeping them would mean re-pointing their names.
		 */
		size_t p = m->opt_end;
		while (p < m->end) {
			r = skip_rr(buf, m->end, &p);
			if (r < 0)
				return r;
			arcount--;
		}
		opt_off = m->opt_off;
		size_t rd = opt_off + OPT_FIXED_LEN;
		n = rd + filter_options(buf + rd, buf, rd, m->opt_end,
					o->strip_ecs, &nopts);
		gw_dns_put16(buf + opt_off + 9, (uint16_t)(n - rd));
		gw_dns_put16(buf + 10, arcount);
	}

	bool add_opts = o->client_edns && (o->keepalive_100ms >= 0 || o->pad);
	size_t ka_len = (o->client_edns && o->keepalive_100ms >= 0) ? 4 + 2 : 0;
	size_t fresh = (!has_opt && add_opts) ? OPT_FIXED_LEN : 0;

	if (o->max_len > 0 && n + fresh + ka_len > limit) {
		/* RFC 2181 9, RFC 1035 4.2.1: question (+ OPT) and TC=1. */
		size_t q = m->question_end;
		uint16_t flags = gw_dns_get16(buf + 2) | GW_DNS_TC;

		gw_dns_put16(buf + 2, flags);
		gw_dns_put16(buf + 4, m->qdcount ? 1 : 0);
		gw_dns_put16(buf + 6, 0);
		gw_dns_put16(buf + 8, 0);
		if (has_opt) {
			size_t olen = n - opt_off;
			if (q + olen + ka_len > limit) {
				/* Upstream options do not fit: keep a bare
				 * OPT so the client still sees EDNS. */
				olen = OPT_FIXED_LEN;
				nopts = 0;
				gw_dns_put16(buf + opt_off + 9, 0);
			}
			memmove(buf + q, buf + opt_off, olen);
			opt_off = q;
			n = q + olen;
		} else {
			n = q;
		}
		gw_dns_put16(buf + 10, has_opt ? 1 : 0);
	}

	if (!add_opts)
		return (int)n;
	if (!has_opt) {
		if (n + OPT_FIXED_LEN > limit)
			return (int)n;
		arcount = gw_dns_get16(buf + 10);
		if (arcount == UINT16_MAX)
			return (int)n;
		opt_off = n;
		write_opt_header(buf + n, OPT_UDP_SIZE, 0);
		n += OPT_FIXED_LEN;
		gw_dns_put16(buf + 10, arcount + 1);
	}
	/* The OPT is now the last record, so options append at n; never past
	 * the option count our own parser (and the client's) accepts. */
	if (ka_len && n + ka_len <= limit &&
	    nopts < GW_DNS_MAX_EDNS_OPTIONS) {
		/* RFC 7828 3.3.2: timeout in units of 100 milliseconds. */
		int t = o->keepalive_100ms > UINT16_MAX ? UINT16_MAX :
							  o->keepalive_100ms;
		gw_dns_put16(buf + n, GW_DNS_OPT_TCP_KEEPALIVE);
		gw_dns_put16(buf + n + 2, 2);
		gw_dns_put16(buf + n + 4, (uint16_t)t);
		n += ka_len;
		nopts++;
	}
	if (o->pad && n + 4 <= limit && nopts < GW_DNS_MAX_EDNS_OPTIONS) {
		/* RFC 8467 4.1: block-length padding of responses. */
		size_t total = n + 4;
		size_t pad = (GW_DNS_PADDING_BLOCK - total % GW_DNS_PADDING_BLOCK) %
			     GW_DNS_PADDING_BLOCK;
		if (total + pad <= limit) {
			gw_dns_put16(buf + n, GW_DNS_OPT_PADDING);
			gw_dns_put16(buf + n + 2, (uint16_t)pad);
			memset(buf + n + 4, 0, pad);
			n = total + pad;
		}
	}
	gw_dns_put16(buf + opt_off + 9, (uint16_t)(n - opt_off - OPT_FIXED_LEN));
	return (int)n;
}

int gw_dns_make_error(const gw_dns_msg_t *q, int rcode, int ede,
		      const char *ede_text, uint8_t *out, size_t cap)
{
	bool question, opt;
	size_t need, text_len = 0, n;

	if (!q)
		return GW_EMALFORMED;
	if (rcode < 0 || rcode > 15 || ede > UINT16_MAX)
		return GW_EINVAL;
	question = q->qdcount == 1 && q->qname_len > 0;
	opt = q->has_opt;
	if (opt && ede >= 0 && ede_text)
		text_len = strlen(ede_text);

	need = GW_DNS_HEADER_LEN;
	if (question)
		need += q->qname_len + 4;
	if (opt) {
		need += OPT_FIXED_LEN;
		if (ede >= 0)
			need += 4 + 2 + text_len;
	}
	if (need > cap || need > GW_DNS_MAX_MSG)
		return GW_ETOOBIG;

	uint16_t flags = GW_DNS_QR | GW_DNS_RA | (q->flags & GW_DNS_RD) |
			 (q->flags & 0x7800) | (uint16_t)rcode;
	gw_dns_put16(out, q->id);
	gw_dns_put16(out + 2, flags);
	gw_dns_put16(out + 4, question ? 1 : 0);
	gw_dns_put16(out + 6, 0);
	gw_dns_put16(out + 8, 0);
	gw_dns_put16(out + 10, opt ? 1 : 0);
	n = GW_DNS_HEADER_LEN;
	if (question) {
		memcpy(out + n, q->qname, q->qname_len);
		n += q->qname_len;
		gw_dns_put16(out + n, q->qtype);
		gw_dns_put16(out + n + 2, q->qclass);
		n += 4;
	}
	if (opt) {
		size_t opt_off = n;
		write_opt_header(out + n, OPT_UDP_SIZE, 0);
		n += OPT_FIXED_LEN;
		if (ede >= 0) {
			/* RFC 8914 2: INFO-CODE then EXTRA-TEXT (UTF-8). */
			gw_dns_put16(out + n, GW_DNS_OPT_EDE);
			gw_dns_put16(out + n + 2, (uint16_t)(2 + text_len));
			gw_dns_put16(out + n + 4, (uint16_t)ede);
			if (text_len)
				memcpy(out + n + 6, ede_text, text_len);
			n += 6 + text_len;
		}
		gw_dns_put16(out + opt_off + 9,
			     (uint16_t)(n - opt_off - OPT_FIXED_LEN));
	}
	return (int)n;
}

static uint8_t ascii_lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c - 'A' + 'a') : c;
}

bool gw_dns_answer_matches(const gw_dns_msg_t *q, const gw_dns_msg_t *a)
{
	if (a->id != q->id || !(a->flags & GW_DNS_QR) ||
	    GW_DNS_OPCODE(a->flags) != 0 || a->qdcount != 1)
		return false;
	if (a->qtype != q->qtype || a->qclass != q->qclass ||
	    a->qname_len != q->qname_len || a->qname_len == 0)
		return false;
	/* RFC 4343: ASCII case-insensitive. Length octets are <= 63 and so
	 * never fall in 'A'..'Z'; folding every byte is therefore safe. */
	for (size_t i = 0; i < a->qname_len; i++)
		if (ascii_lower(a->qname[i]) != ascii_lower(q->qname[i]))
			return false;
	return true;
}

void gw_dns_name_to_text(const uint8_t *wire, size_t len, char *out,
			 size_t cap)
{
	static const char digits[] = "0123456789";
	size_t p = 0, w = 0;
	char tmp[4];

	if (cap == 0)
		return;
#define EMIT(ch)                                                               \
	do {                                                                   \
		if (w + 1 >= cap)                                              \
			goto done;                                             \
		out[w++] = (ch);                                               \
	} while (0)
	while (p < len && wire[p] != 0) {
		size_t l = wire[p];
		if (l > 63 || len - p - 1 < l)
			break;
		for (size_t i = 0; i < l; i++) {
			uint8_t c = wire[p + 1 + i];
			if (c == '.' || c == '\\') {
				EMIT('\\');
				EMIT((char)c);
			} else if (c <= 0x20 || c >= 0x7f) {
				/* RFC 1035 5.1: \DDD for the unprintable. */
				tmp[0] = '\\';
				tmp[1] = digits[c / 100];
				tmp[2] = digits[(c / 10) % 10];
				tmp[3] = digits[c % 10];
				if (w + 4 >= cap)
					goto done;
				memcpy(out + w, tmp, 4);
				w += 4;
			} else {
				EMIT((char)c);
			}
		}
		EMIT('.');
		p += 1 + l;
	}
	if (w == 0)
		EMIT('.');
#undef EMIT
done:
	out[w] = '\0';
}

int gw_dns_add_ecs(uint8_t *msg, size_t len, size_t cap, int family,
		   const uint8_t *addr, unsigned prefix)
{
	gw_dns_msg_t m;
	size_t alen = family == 1 ? 4 : 16;

	if ((family != 1 && family != 2) || prefix > alen * 8)
		return GW_EINVAL;
	if (gw_dns_parse(msg, len, &m) < 0)
		return GW_EMALFORMED;
	if (!m.has_opt || m.has_ecs || m.opt_end != m.end)
		return (int)m.end;
	/* RFC 7871 6: ADDRESS is cut to the prefix, whole octets, and the
	 * bits past SOURCE PREFIX-LENGTH are zero. */
	size_t nb = (prefix + 7) / 8, olen = 4 + nb;
	size_t rdlen = gw_dns_get16(msg + m.opt_off + 9);
	if (m.end + 4 + olen > cap || m.end + 4 + olen > GW_DNS_MAX_MSG ||
	    rdlen + 4 + olen > UINT16_MAX)
		return GW_ETOOBIG;
	uint8_t *p = msg + m.end;
	gw_dns_put16(p, GW_DNS_OPT_ECS);
	gw_dns_put16(p + 2, (uint16_t)olen);
	gw_dns_put16(p + 4, (uint16_t)family);
	p[6] = (uint8_t)prefix;
	p[7] = 0; /* SCOPE PREFIX-LENGTH: 0 in queries */
	memcpy(p + 8, addr, nb);
	if (prefix % 8)
		p[8 + nb - 1] &= (uint8_t)(0xff << (8 - prefix % 8));
	gw_dns_put16(msg + m.opt_off + 9, (uint16_t)(rdlen + 4 + olen));
	return (int)(m.end + 4 + olen);
}

/*
 * cache.c - per-worker response cache (see cache.h for what is cached).
 *
 * A chained hash table keyed by SipHash-2-4 with a per-cache random key, and
 * an intrusive doubly linked list in least-recently-used order. Each entry is
 * one allocation: header, the offsets of the TTL fields to count down, the
 * key, the stored message. A served copy is a memcpy plus one 32-bit store
 * per record; nothing is parsed on a hit.
 */
#include "cache.h"

#include <stdlib.h>
#include <string.h>

#include "gateway/error.h"

#define OPT_FIXED_LEN 11
#define MIN_BUCKETS 256
#define MAX_BUCKETS (1u << 22)

/* key flag bits (first key byte) */
#define KEY_RD 0x01
#define KEY_CD 0x02
#define KEY_AD 0x04
#define KEY_EDNS 0x08
#define KEY_DO 0x10
#define KEY_STREAM 0x20

#define EDNS_DO 0x8000u /* RFC 3225: in the OPT TTL's flag half */

struct entry {
	struct entry *hnext;           /* bucket chain */
	struct entry *prev, *next;     /* LRU: head = most recent */
	uint64_t hash;
	double inserted, expires;
	size_t size;                   /* counted against max_bytes */
	uint16_t key_len, msg_len;
	uint16_t n_ttl;                /* TTL fields to count down */
	uint16_t opt_off;              /* OPT RR offset, 0 = none (last RR) */
	uint8_t data[];                /* uint16_t ttl_off[n_ttl], key, msg */
};

struct gw_cache {
	gw_cache_params_t p;
	uint64_t k0, k1; /* SipHash key */
	struct entry **buckets;
	size_t n_buckets; /* power of two */
	struct entry *head, *tail;
	gw_cache_stats_t st;
};

static uint16_t *entry_offs(struct entry *e) { return (uint16_t *)e->data; }
static uint8_t *entry_key(struct entry *e)
{
	return e->data + (size_t)e->n_ttl * 2;
}
static uint8_t *entry_msg(struct entry *e)
{
	return entry_key(e) + e->key_len;
}

/* ------------------------------------------------------------- SipHash */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                               \
	do {                                                                   \
		v0 += v1;                                                      \
		v1 = ROTL(v1, 13);                                             \
		v1 ^= v0;                                                      \
		v0 = ROTL(v0, 32);                                             \
		v2 += v3;                                                      \
		v3 = ROTL(v3, 16);                                             \
		v3 ^= v2;                                                      \
		v0 += v3;                                                      \
		v3 = ROTL(v3, 21);                                             \
		v3 ^= v0;                                                      \
		v2 += v1;                                                      \
		v1 = ROTL(v1, 17);                                             \
		v1 ^= v2;                                                      \
		v2 = ROTL(v2, 32);                                             \
	} while (0)

/* SipHash-2-4 (Aumasson, Bernstein 2012): keyed, so an attacker choosing
 * names cannot aim them all at one bucket. */
static uint64_t siphash(uint64_t k0, uint64_t k1, const uint8_t *in,
			size_t len)
{
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
	uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
	uint64_t v3 = 0x7465646279746573ULL ^ k1;
	size_t i, blocks = len / 8;
	uint64_t m;

	for (i = 0; i < blocks; i++) {
		m = 0;
		for (int j = 7; j >= 0; j--)
			m = (m << 8) | in[i * 8 + (size_t)j];
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	m = (uint64_t)len << 56;
	for (size_t j = len & 7; j > 0; j--)
		m |= (uint64_t)in[blocks * 8 + j - 1] << (8 * (j - 1));
	v3 ^= m;
	SIPROUND;
	SIPROUND;
	v0 ^= m;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* ---------------------------------------------------------------- keys */

static uint8_t ascii_lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c - 'A' + 'a') : c;
}

int gw_cache_key_make(gw_cache_key_t *k, const gw_dns_msg_t *q, bool stream)
{
	uint8_t f = 0;

	if (q->qdcount != 1 || q->qname_len == 0 ||
	    q->qname_len > GW_DNS_MAX_NAME)
		return GW_EINVAL;
	/* The bits that change what a resolver answers: recursion, DNSSEC
	 * checking (RFC 4035 3.2.2 CD), AD wanted (RFC 6840 5.7), EDNS at all
	 * (RFC 6891 7: no OPT back to a client that sent none) and DO (RFC
	 * 3225: signatures). The transport class: a stream client may get
	 * more Additional data than one whose small buffer the upstream
	 * trimmed without TC (RFC 2181 9). */
	if (q->flags & GW_DNS_RD)
		f |= KEY_RD;
	if (q->flags & GW_DNS_CD)
		f |= KEY_CD;
	if (q->flags & GW_DNS_AD)
		f |= KEY_AD;
	if (q->has_opt) {
		f |= KEY_EDNS;
		if (q->opt_ttl & EDNS_DO)
			f |= KEY_DO;
	}
	if (stream)
		f |= KEY_STREAM;
	k->b[0] = f;
	gw_dns_put16(k->b + 1, q->qtype);
	gw_dns_put16(k->b + 3, q->qclass);
	/* RFC 4343: names compare ASCII case-insensitively; length octets
	 * (<= 63) never fall in 'A'..'Z', so folding every byte is safe. */
	for (size_t i = 0; i < q->qname_len; i++)
		k->b[5 + i] = ascii_lower(q->qname[i]);
	k->len = (uint16_t)(5 + q->qname_len);
	return 0;
}

/* --------------------------------------------------------- the table */

gw_cache_t *gw_cache_new(const gw_cache_params_t *p, uint64_t seed)
{
	gw_cache_t *c;

	if (!p || p->max_bytes == 0)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->p = *p;
	c->k0 = seed;
	c->k1 = (seed ^ 0x9e3779b97f4a7c15ULL) * 0xbf58476d1ce4e5b9ULL;
	c->n_buckets = MIN_BUCKETS;
	c->buckets = calloc(c->n_buckets, sizeof(*c->buckets));
	if (!c->buckets) {
		free(c);
		return NULL;
	}
	return c;
}

void gw_cache_free(gw_cache_t *c)
{
	if (!c)
		return;
	gw_cache_clear(c);
	free(c->buckets);
	free(c);
}

void gw_cache_clear(gw_cache_t *c)
{
	struct entry *e = c->head;
	while (e) {
		struct entry *n = e->next;
		free(e);
		e = n;
	}
	memset(c->buckets, 0, c->n_buckets * sizeof(*c->buckets));
	c->head = c->tail = NULL;
	c->st.entries = 0;
	c->st.bytes = 0;
}

void gw_cache_stats(const gw_cache_t *c, gw_cache_stats_t *out)
{
	*out = c->st;
}

static void lru_unlink(gw_cache_t *c, struct entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push_front(gw_cache_t *c, struct entry *e)
{
	e->prev = NULL;
	e->next = c->head;
	if (c->head)
		c->head->prev = e;
	c->head = e;
	if (!c->tail)
		c->tail = e;
}

static struct entry **bucket_of(gw_cache_t *c, uint64_t h)
{
	return &c->buckets[h & (c->n_buckets - 1)];
}

static struct entry *find(gw_cache_t *c, const gw_cache_key_t *k,
			  uint64_t h)
{
	for (struct entry *e = *bucket_of(c, h); e; e = e->hnext)
		if (e->hash == h && e->key_len == k->len &&
		    memcmp(entry_key(e), k->b, k->len) == 0)
			return e;
	return NULL;
}

static void remove_entry(gw_cache_t *c, struct entry *e)
{
	struct entry **pp = bucket_of(c, e->hash);
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(c, e);
	c->st.entries--;
	c->st.bytes -= e->size;
	free(e);
}

/* Doubles the bucket array when chains would average above one entry; on
 * allocation failure the table just stays smaller. */
static void maybe_grow(gw_cache_t *c)
{
	if (c->st.entries <= c->n_buckets || c->n_buckets >= MAX_BUCKETS)
		return;
	size_t n = c->n_buckets * 2;
	struct entry **b = calloc(n, sizeof(*b));
	if (!b)
		return;
	for (size_t i = 0; i < c->n_buckets; i++) {
		struct entry *e = c->buckets[i];
		while (e) {
			struct entry *next = e->hnext;
			struct entry **dst = &b[e->hash & (n - 1)];
			e->hnext = *dst;
			*dst = e;
			e = next;
		}
	}
	free(c->buckets);
	c->buckets = b;
	c->n_buckets = n;
}

/* ------------------------------------------------------------- lookup */

/* Whole seconds since insertion; a clock that went backwards counts 0. */
static uint32_t age_of(const struct entry *e, double now)
{
	double a = now - e->inserted;
	if (a <= 0)
		return 0;
	if (a >= (double)UINT32_MAX)
		return UINT32_MAX;
	return (uint32_t)a;
}

static int serve(gw_cache_t *c, struct entry *e, double now, uint8_t *out,
		 size_t cap)
{
	uint32_t age = age_of(e, now);
	uint16_t *offs = entry_offs(e);

	if (e->msg_len > cap)
		return GW_ETOOBIG;
	memcpy(out, entry_msg(e), e->msg_len);
	for (unsigned i = 0; i < e->n_ttl; i++) {
		uint32_t t = gw_dns_get32(out + offs[i]);
		gw_dns_put32(out + offs[i], t > age ? t - age : 0);
	}
	lru_unlink(c, e);
	lru_push_front(c, e);
	c->st.hits++;
	return e->msg_len;
}

int gw_cache_lookup(gw_cache_t *c, const gw_cache_key_t *k, double now,
		    uint8_t *out, size_t cap)
{
	uint64_t h = siphash(c->k0, c->k1, k->b, k->len);
	struct entry *e = find(c, k, h);

	if (e && now < e->expires)
		return serve(c, e, now, out, cap);
	c->st.misses++;
	/* RFC 8767 5: an expired entry stays only while it may serve stale. */
	if (e && !(c->p.serve_stale &&
		   now < e->expires + (double)c->p.stale_ttl)) {
		remove_entry(c, e);
		c->st.expired++;
	}
	return GW_EAGAIN;
}

int gw_cache_lookup_stale(gw_cache_t *c, const gw_cache_key_t *k, double now,
			  uint8_t *out, size_t cap)
{
	uint64_t h = siphash(c->k0, c->k1, k->b, k->len);
	struct entry *e = find(c, k, h);
	uint16_t *offs;
	size_t n;

	if (!e || !c->p.serve_stale)
		return GW_EAGAIN;
	if (now < e->expires)
		return serve(c, e, now, out, cap); /* refreshed meanwhile */
	if (now >= e->expires + (double)c->p.stale_ttl) {
		remove_entry(c, e);
		c->st.expired++;
		return GW_EAGAIN;
	}
	n = e->msg_len;
	if (n + 6 > cap)
		return GW_ETOOBIG;
	memcpy(out, entry_msg(e), n);
	offs = entry_offs(e);
	/* RFC 8767 4: stale answers go out with a short TTL (30 s). */
	for (unsigned i = 0; i < e->n_ttl; i++)
		gw_dns_put32(out + offs[i], GW_CACHE_STALE_TTL);
	/* RFC 8914 4.4: say so with EDE 3. The stored OPT is the last
	 * record, so the option appends at the end. */
	if (e->opt_off && n + 6 <= GW_DNS_MAX_MSG) {
		size_t rdl = e->opt_off + 9;
		gw_dns_put16(out + n, GW_DNS_OPT_EDE);
		gw_dns_put16(out + n + 2, 2);
		gw_dns_put16(out + n + 4, GW_CACHE_EDE_STALE);
		gw_dns_put16(out + rdl, (uint16_t)(gw_dns_get16(out + rdl) + 6));
		n += 6;
	}
	lru_unlink(c, e);
	lru_push_front(c, e);
	c->st.stale_hits++;
	return (int)n;
}

/* ------------------------------------------------------------- insert */

/* Skips a name in an already parsed message (pointers not followed). */
static int skip_name(const uint8_t *m, size_t len, size_t *pos)
{
	size_t p = *pos;

	for (;;) {
		if (p >= len)
			return GW_EMALFORMED;
		uint8_t c = m[p];
		if (c == 0) {
			p++;
			break;
		}
		if ((c & 0xc0) == 0xc0) {
			p += 2;
			break;
		}
		if (c & 0xc0)
			return GW_EMALFORMED;
		p += 1 + (size_t)c;
	}
	if (p > len)
		return GW_EMALFORMED;
	*pos = p;
	return 0;
}

/* RFC 2308 3: MINIMUM is the last field of SOA RDATA. */
static bool soa_minimum(const uint8_t *m, size_t rd, size_t rdend,
			uint32_t *min)
{
	size_t p = rd;

	if (skip_name(m, rdend, &p) < 0 || skip_name(m, rdend, &p) < 0 ||
	    rdend - p < 20)
		return false;
	*min = gw_dns_get32(m + p + 16);
	return true;
}

/* RFC 2181 8: a TTL with the top bit set means zero. */
static uint32_t sane_ttl(uint32_t t) { return (t & 0x80000000u) ? 0 : t; }

/* Options a stored answer must not carry to other clients. */
static bool per_client_option(uint16_t code)
{
	return code == GW_DNS_OPT_COOKIE || code == GW_DNS_OPT_PADDING ||
	       code == GW_DNS_OPT_TCP_KEEPALIVE;
}

struct plan {
	size_t cut;             /* bytes kept verbatim: up to the OPT */
	size_t opt_rd, opt_end; /* the OPT's RDATA in the source */
	size_t opt_kept;        /* RDATA bytes after filtering */
	uint16_t arcount;       /* Additional records kept, OPT included */
	unsigned n_ttl;
	uint32_t lifetime;
};

/*
 * Walks the records: collects TTL offsets into offs (at most max), works
 * out the stored TTL of each into ttls, and the entry's lifetime.
 */
static int plan_entry(const gw_cache_t *c, const uint8_t *msg,
		      const gw_dns_msg_t *m, bool negative, uint16_t *offs,
		      uint32_t *ttls, unsigned max, struct plan *pl)
{
	size_t p = m->question_end;
	unsigned total = (unsigned)m->ancount + m->nscount + m->arcount;
	uint32_t cap = negative ? c->p.negative_max_ttl : c->p.max_ttl;
	uint32_t floor = c->p.min_ttl < cap ? c->p.min_ttl : cap;
	bool have_soa = false, have_ttl = false;
	uint32_t life = 0;

	memset(pl, 0, sizeof(*pl));
	pl->cut = m->end;
	for (unsigned i = 0; i < total; i++) {
		size_t start = p;
		if (skip_name(msg, m->end, &p) < 0 || m->end - p < 10)
			return GW_EMALFORMED;
		uint16_t type = gw_dns_get16(msg + p);
		uint32_t ttl = sane_ttl(gw_dns_get32(msg + p + 4));
		size_t rd = p + 10;
		size_t rdend = rd + gw_dns_get16(msg + p + 8);
		if (rdend > m->end)
			return GW_EMALFORMED;
		bool in_ns = i >= m->ancount && i < m->ancount + m->nscount;
		bool in_ar = i >= (unsigned)m->ancount + m->nscount;
		if (type == GW_DNS_T_OPT) {
			/* Records after the OPT are dropped (as
			 * gw_dns_finish_answer does), the OPT ends it. */
			pl->cut = start;
			pl->opt_rd = rd;
			pl->opt_end = rdend;
			pl->arcount++;
			break;
		}
		if (in_ar)
			pl->arcount++;
		uint32_t min;
		if (type == GW_DNS_T_SOA && in_ns && negative) {
			have_soa = true;
			/* RFC 2308 5: negative TTL = min(SOA TTL, MINIMUM) */
			if (soa_minimum(msg, rd, rdend, &min) &&
			    sane_ttl(min) < ttl)
				ttl = sane_ttl(min);
		}
		if (ttl > cap)
			ttl = cap;
		if (ttl < floor)
			ttl = floor;
		if (pl->n_ttl >= max)
			return GW_ETOOBIG;
		offs[pl->n_ttl] = (uint16_t)(p + 4);
		ttls[pl->n_ttl] = ttl;
		pl->n_ttl++;
		if (!have_ttl || ttl < life)
			life = ttl;
		have_ttl = true;
		p = rdend;
	}
	/* RFC 2308 5: negative answers without an SOA are not cached. */
	if (negative && !have_soa)
		return GW_EINVAL;
	if (!have_ttl || life == 0)
		return GW_EINVAL;
	pl->lifetime = life;
	if (pl->opt_end) {
		size_t rdp = pl->opt_rd;
		while (pl->opt_end - rdp >= 4) {
			uint16_t code = gw_dns_get16(msg + rdp);
			size_t olen = gw_dns_get16(msg + rdp + 2);
			if (pl->opt_end - rdp - 4 < olen)
				return GW_EMALFORMED;
			if (!per_client_option(code))
				pl->opt_kept += 4 + olen;
			rdp += 4 + olen;
		}
	}
	return 0;
}

static bool bit_is_set(const uint8_t *map, size_t i)
{
	return map[i >> 3] & (1u << (i & 7));
}

/*
 * True when reading the name at pos (as gw_dns_parse would: labels forward,
 * pointers back) touches a byte of map, or fails. Checked for every name the
 * wire code reads, so that counting TTLs down can never change how a stored
 * message parses: a crafted answer could point a name into a TTL field.
 */
static bool name_reads_map(const uint8_t *msg, size_t len, size_t pos,
			   const uint8_t *map)
{
	size_t p = pos;
	unsigned hops = 0;

	for (;;) {
		if (p >= len || bit_is_set(map, p))
			return true;
		uint8_t c = msg[p];
		if (c == 0)
			return false;
		if ((c & 0xc0) == 0xc0) {
			if (p + 1 >= len || bit_is_set(map, p + 1) ||
			    ++hops > GW_DNS_MAX_PTR_HOPS)
				return true;
			p = ((size_t)(c & 0x3f) << 8) | msg[p + 1];
			continue;
		}
		if (c & 0xc0)
			return true;
		for (size_t i = p + 1; i <= p + c; i++)
			if (i >= len || bit_is_set(map, i))
				return true;
		p += 1 + (size_t)c;
	}
}

/* Whether any owner name, or SOA RDATA name, of the kept records reads a
 * TTL field (offs) of the message. */
static bool names_read_ttls(const uint8_t *msg, const gw_dns_msg_t *m,
			    const struct plan *pl, const uint16_t *offs)
{
	static _Thread_local uint8_t map[(GW_DNS_MAX_MSG + 8) / 8];
	size_t len = pl->cut, p = m->question_end;
	bool bad = false;

	memset(map, 0, (len + 7) / 8 + 1);
	for (unsigned i = 0; i < pl->n_ttl; i++)
		for (unsigned j = 0; j < 4; j++)
			map[(offs[i] + j) >> 3] |= (uint8_t)(1u << ((offs[i] + j) & 7));
	while (p < len && !bad) {
		if (name_reads_map(msg, len, p, map) ||
		    skip_name(msg, len, &p) < 0 || len - p < 10)
			return true;
		uint16_t type = gw_dns_get16(msg + p);
		size_t rd = p + 10, rdend = rd + gw_dns_get16(msg + p + 8);
		if (rdend > len)
			return true;
		if (type == GW_DNS_T_SOA) {
			size_t q = rd;
			bad = name_reads_map(msg, len, q, map) ||
			      skip_name(msg, rdend, &q) < 0 ||
			      name_reads_map(msg, len, q, map);
		}
		p = rdend;
	}
	return bad;
}

static bool question_is(const gw_dns_msg_t *m, const gw_cache_key_t *k)
{
	if (m->qdcount != 1 || k->len < 5 ||
	    (size_t)m->qname_len + 5 != k->len ||
	    m->qtype != gw_dns_get16(k->b + 1) ||
	    m->qclass != gw_dns_get16(k->b + 3))
		return false;
	for (size_t i = 0; i < m->qname_len; i++)
		if (ascii_lower(m->qname[i]) != k->b[5 + i])
			return false;
	return true;
}

/* Frees least recently used entries until need more bytes fit. */
static void make_room(gw_cache_t *c, size_t need)
{
	while (c->tail && c->st.bytes + need > c->p.max_bytes) {
		remove_entry(c, c->tail);
		c->st.evictions++;
	}
}

int gw_cache_insert(gw_cache_t *c, const gw_cache_key_t *k,
		    const uint8_t *msg, size_t len, double now)
{
	gw_dns_msg_t m;
	struct plan pl;
	/* every record takes at least 11 bytes */
	enum { MAX_RR = GW_DNS_MAX_MSG / 11 + 1 };
	static _Thread_local uint16_t offs[MAX_RR];
	static _Thread_local uint32_t ttls[MAX_RR];
	int r;

	if (len < GW_DNS_HEADER_LEN || len > GW_DNS_MAX_MSG ||
	    gw_dns_parse(msg, len, &m) < 0)
		return GW_EMALFORMED;
	if (!(m.flags & GW_DNS_QR) || GW_DNS_OPCODE(m.flags) != 0 ||
	    !question_is(&m, k))
		return GW_EMALFORMED;
	unsigned rcode = GW_DNS_RCODE(m.flags);
	/* RFC 6891 6.1.3: the OPT holds the upper 8 bits of the RCODE */
	if (m.has_opt && (m.opt_ttl >> 24) != 0)
		return GW_EINVAL;
	/* A truncated answer is not the answer (RFC 2181 9); ECS answers are
	 * for one subnet only (RFC 7871 7.3): neither is shared. */
	if ((m.flags & GW_DNS_TC) || m.has_ecs ||
	    (rcode != GW_DNS_NOERROR && rcode != GW_DNS_NXDOMAIN))
		return GW_EINVAL;
	bool negative = rcode == GW_DNS_NXDOMAIN || m.ancount == 0;

	r = plan_entry(c, msg, &m, negative, offs, ttls, MAX_RR, &pl);
	if (r < 0)
		return r;
	if (names_read_ttls(msg, &m, &pl, offs))
		return GW_EINVAL;
	size_t msg_len = pl.cut + (pl.opt_end ? OPT_FIXED_LEN + pl.opt_kept : 0);
	size_t size = sizeof(struct entry) + (size_t)pl.n_ttl * 2 + k->len +
		      msg_len;
	if (size > c->p.max_bytes / 4)
		return GW_ETOOBIG;

	uint64_t h = siphash(c->k0, c->k1, k->b, k->len);
	struct entry *old = find(c, k, h);
	if (old)
		remove_entry(c, old);
	make_room(c, size);

	struct entry *e = malloc(size);
	if (!e)
		return GW_ENOMEM;
	memset(e, 0, sizeof(*e));
	e->hash = h;
	e->inserted = now;
	e->expires = now + pl.lifetime;
	e->size = size;
	e->key_len = k->len;
	e->msg_len = (uint16_t)msg_len;
	e->n_ttl = (uint16_t)pl.n_ttl;
	memcpy(entry_offs(e), offs, (size_t)pl.n_ttl * 2);
	memcpy(entry_key(e), k->b, k->len);

	uint8_t *out = entry_msg(e);
	memcpy(out, msg, pl.cut);
	for (unsigned i = 0; i < pl.n_ttl; i++)
		gw_dns_put32(out + offs[i], ttls[i]);
	if (pl.opt_end) {
		size_t o = pl.cut;
		memcpy(out + o, msg + pl.cut, OPT_FIXED_LEN);
		o += OPT_FIXED_LEN;
		for (size_t rdp = pl.opt_rd; pl.opt_end - rdp >= 4;) {
			uint16_t code = gw_dns_get16(msg + rdp);
			size_t olen = gw_dns_get16(msg + rdp + 2);
			if (!per_client_option(code)) {
				memcpy(out + o, msg + rdp, 4 + olen);
				o += 4 + olen;
			}
			rdp += 4 + olen;
		}
		gw_dns_put16(out + pl.cut + 9, (uint16_t)pl.opt_kept);
		e->opt_off = (uint16_t)pl.cut;
	}
	gw_dns_put16(out + 10, pl.arcount);

	struct entry **b = bucket_of(c, h);
	e->hnext = *b;
	*b = e;
	lru_push_front(c, e);
	c->st.entries++;
	c->st.bytes += size;
	c->st.inserts++;
	maybe_grow(c);
	return 0;
}

/*
 * doh_req.c - DoH request checks (see doh_req.h). Pure: no sockets, no
 * allocation beyond the bounded body buffer.
 */
#include "doh_req.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

#include "gateway/acl.h"
#include "gateway/dns.h"
#include "gateway/error.h"

void gw_doh_req_init(gw_doh_req_t *r, const char *conf_path, bool http1)
{
	memset(r, 0, sizeof(*r));
	r->conf_path = conf_path;
	r->http1 = http1;
	gw_buf_init(&r->msg, GW_DNS_MAX_MSG);
}

void gw_doh_req_deinit(gw_doh_req_t *r)
{
	gw_buf_deinit(&r->msg);
}

static bool name_is(const char *name, size_t nlen, const char *want)
{
	return strlen(want) == nlen && strncasecmp(name, want, nlen) == 0;
}

static int set_status(gw_doh_req_t *r, int status)
{
	if (!r->status)
		r->status = status;
	return r->status;
}

/* Keeps a repeated header as one comma list (RFC 9110 5.3). */
static void keep_joined(char *dst, bool *overflow, const char *v, size_t vlen)
{
	size_t have = strlen(dst);
	size_t sep = have ? 2 : 0;
	if (*overflow || have + sep + vlen + 1 > GW_DOH_MAX_FORWARDED) {
		/* Too long to walk reliably: ignore it (peer address used). */
		*overflow = true;
		dst[0] = '\0';
		return;
	}
	if (sep)
		memcpy(dst + have, ", ", 2);
	memcpy(dst + have + sep, v, vlen);
	dst[have + sep + vlen] = '\0';
}

static int parse_cl(const char *v, size_t vlen, uint64_t *out)
{
	uint64_t n = 0;
	if (vlen == 0)
		return -1;
	for (size_t i = 0; i < vlen; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		if (n > 1000000000ULL)
			n = 1000000001ULL; /* saturate: "too big" is all we need */
		else
			n = n * 10 + (uint64_t)(v[i] - '0');
	}
	*out = n;
	return 0;
}

static void trim(const char **v, size_t *vlen)
{
	while (*vlen && (**v == ' ' || **v == '\t')) {
		(*v)++;
		(*vlen)--;
	}
	while (*vlen && ((*v)[*vlen - 1] == ' ' || (*v)[*vlen - 1] == '\t'))
		(*vlen)--;
}

int gw_doh_req_header(gw_doh_req_t *r, const char *name, size_t nlen,
		      const char *value, size_t vlen)
{
	if (r->status)
		return r->status;
	r->n_headers++;
	r->header_bytes += nlen + vlen;
	if (r->n_headers > GW_DOH_MAX_HEADERS ||
	    r->header_bytes > GW_DOH_MAX_HEADER_BYTES)
		return set_status(r, 431);
	trim(&value, &vlen);

	if (name_is(name, nlen, ":method")) {
		if (r->method)
			return set_status(r, 400);
		if (vlen == 3 && memcmp(value, "GET", 3) == 0)
			r->method = GW_DOH_M_GET;
		else if (vlen == 4 && memcmp(value, "POST", 4) == 0)
			r->method = GW_DOH_M_POST;
		else if (vlen == 4 && memcmp(value, "HEAD", 4) == 0)
			r->method = GW_DOH_M_HEAD;
		else
			r->method = GW_DOH_M_OTHER;
		return 0;
	}
	if (name_is(name, nlen, ":path")) {
		if (r->have_path)
			return set_status(r, 400);
		if (vlen > GW_DOH_MAX_TARGET)
			return set_status(r, 414);
		r->have_path = true;
		/* kept in the body buffer until headers_done decodes it */
		if (gw_buf_append(&r->msg, value, vlen) < 0)
			return set_status(r, 414);
		return 0;
	}
	if (name_is(name, nlen, "content-type")) {
		/* "application/dns-message" with optional parameters */
		static const char want[] = "application/dns-message";
		size_t n = sizeof(want) - 1;
		if (r->have_ct)
			return set_status(r, 400);
		r->have_ct = true;
		r->ct_ok = vlen >= n && strncasecmp(value, want, n) == 0 &&
			   (vlen == n || value[n] == ';' || value[n] == ' ' ||
			    value[n] == '\t');
		return 0;
	}
	if (name_is(name, nlen, "content-length")) {
		uint64_t n;
		if (parse_cl(value, vlen, &n) < 0)
			return set_status(r, 400);
		/* RFC 9112 6.3: differing duplicates are unrecoverable */
		if (r->have_cl && n != r->content_length)
			return set_status(r, 400);
		r->have_cl = true;
		r->content_length = n;
		return 0;
	}
	if (name_is(name, nlen, "transfer-encoding")) {
		r->te = true;
		return 0;
	}
	if (name_is(name, nlen, "x-forwarded-for")) {
		keep_joined(r->xff, &r->xff_overflow, value, vlen);
		return 0;
	}
	if (name_is(name, nlen, "forwarded")) {
		keep_joined(r->fwd, &r->fwd_overflow, value, vlen);
		return 0;
	}
	return 0;
}

static int b64val(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '-')
		return 62;
	if (ch == '_')
		return 63;
	return -1;
}

int gw_doh_base64url_decode(const char *in, size_t inlen, uint8_t *out,
			    size_t cap)
{
	size_t n = inlen, o = 0;
	unsigned pads = 0;
	uint32_t acc = 0;
	unsigned bits = 0;

	/* RFC 8484 4.1: no padding; accepted anyway, raw or percent-encoded */
	for (;;) {
		if (n >= 1 && in[n - 1] == '=') {
			n -= 1;
		} else if (n >= 3 && in[n - 3] == '%' && in[n - 2] == '3' &&
			   (in[n - 1] == 'D' || in[n - 1] == 'd')) {
			n -= 3;
		} else {
			break;
		}
		if (++pads > 2)
			return -1;
	}
	if (pads && (n + pads) % 4 != 0)
		return -1;
	if (n % 4 == 1)
		return -1; /* 6 bits cannot make a byte */
	for (size_t i = 0; i < n; i++) {
		int v = b64val((unsigned char)in[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* RFC 4648 3.5: leftover bits must be zero (canonical encoding) */
	if (bits && (acc & ((1u << bits) - 1)))
		return -1;
	return (int)o;
}

/* Finds "dns=" among the &-separated parameters of the query string. */
static int decode_get(gw_doh_req_t *r, const char *q, size_t qlen)
{
	const char *val = NULL;
	size_t vlen = 0;
	size_t i = 0;
	while (i < qlen) {
		size_t j = i;
		while (j < qlen && q[j] != '&')
			j++;
		if (j - i >= 4 && memcmp(q + i, "dns=", 4) == 0) {
			if (val)
				return set_status(r, 400); /* two of them */
			val = q + i + 4;
			vlen = j - i - 4;
		}
		i = j + 1;
	}
	if (!val || vlen == 0)
		return set_status(r, 400);
	uint8_t tmp[GW_DOH_MAX_TARGET];
	int n = gw_doh_base64url_decode(val, vlen, tmp, sizeof(tmp));
	if (n < 0)
		return set_status(r, 400);
	r->msg.off = r->msg.len = 0;
	if (gw_buf_append(&r->msg, tmp, (size_t)n) < 0)
		return set_status(r, 500);
	return 0;
}

int gw_doh_req_headers_done(gw_doh_req_t *r)
{
	if (r->status)
		return r->status;
	r->headers_done = true;
	if (!r->method || !r->have_path)
		return set_status(r, 400);

	/* the target sits in the body buffer; split path and query */
	char target[GW_DOH_MAX_TARGET + 1];
	size_t tlen = gw_buf_size(&r->msg);
	memcpy(target, gw_buf_head(&r->msg), tlen);
	target[tlen] = '\0';
	r->msg.off = r->msg.len = 0;
	char *qs = memchr(target, '?', tlen);
	size_t plen = qs ? (size_t)(qs - target) : tlen;
	if (strlen(r->conf_path) != plen ||
	    memcmp(target, r->conf_path, plen) != 0)
		return set_status(r, 404);

	/* RFC 9112 6.1: a body we cannot frame is not something to guess */
	if (r->http1 && r->te)
		return set_status(r, 501);

	switch (r->method) {
	case GW_DOH_M_GET:
		return decode_get(r, qs ? qs + 1 : "",
				  qs ? tlen - plen - 1 : 0);
	case GW_DOH_M_POST:
		if (!r->have_ct || !r->ct_ok)
			return set_status(r, 415);
		if (r->have_cl && r->content_length > GW_DNS_MAX_MSG)
			return set_status(r, 413);
		if (r->http1 && !r->have_cl)
			return set_status(r, 411);
		return 0;
	default:
		/* RFC 8484 4.1: GET and POST only; HEAD is not listed */
		return set_status(r, 405);
	}
}

int gw_doh_req_body(gw_doh_req_t *r, const uint8_t *data, size_t len)
{
	if (r->status)
		return r->status;
	if (len == 0)
		return 0;
	if (r->method != GW_DOH_M_POST)
		return set_status(r, 400);
	size_t have = gw_buf_size(&r->msg);
	if (have + len > GW_DNS_MAX_MSG ||
	    (r->have_cl && have + len > r->content_length))
		return set_status(r, 413);
	if (gw_buf_append(&r->msg, data, len) < 0)
		return set_status(r, 500);
	return 0;
}

int gw_doh_req_finish(gw_doh_req_t *r, const uint8_t **msg, size_t *len)
{
	if (!r->status && !r->headers_done)
		gw_doh_req_headers_done(r);
	if (r->status)
		return r->status;
	size_t n = gw_buf_size(&r->msg);
	if (r->method == GW_DOH_M_POST && r->have_cl && n != r->content_length)
		return set_status(r, 400);
	/* REQUIREMENTS.md: shorter than a header or a response: 400 */
	if (n < GW_DNS_HEADER_LEN)
		return set_status(r, 400);
	if (gw_dns_get16(gw_buf_head(&r->msg) + 2) & GW_DNS_QR)
		return set_status(r, 400);
	*msg = gw_buf_head(&r->msg);
	*len = n;
	return 0;
}

const char *gw_doh_status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

/* ----------------------------------------------------- client address */

bool gw_doh_cidr_match(const gw_cidr_t *cidrs, unsigned n,
		       const struct sockaddr *addr)
{
	return gw_cidr_match_list(cidrs, n, addr);
}

/* Parses one hop: "1.2.3.4", "1.2.3.4:80", "2001:db8::1", "[2001:db8::1]:80",
 * optionally quoted (Forwarded). */
static bool parse_hop(const char *s, size_t n, struct sockaddr_storage *out)
{
	char buf[INET6_ADDRSTRLEN + 8];

	trim(&s, &n);
	if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
		s++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	char *a = buf;
	if (a[0] == '[') {
		char *e = strchr(a, ']');
		if (!e)
			return false;
		*e = '\0';
		a++;
	} else if (strchr(a, ':') == strrchr(a, ':') && strchr(a, ':')) {
		*strchr(a, ':') = '\0'; /* v4 with a port */
	}
	memset(out, 0, sizeof(*out));
	struct sockaddr_in *s4 = (struct sockaddr_in *)out;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
	if (inet_pton(AF_INET, a, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, a, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		return true;
	}
	return false;
}

/* The "for=" value of one Forwarded element (between commas). */
static bool forwarded_for(const char *s, size_t n, const char **v, size_t *vlen)
{
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		bool quoted = false;
		while (j < n && (quoted || s[j] != ';')) {
			if (s[j] == '"')
				quoted = !quoted;
			j++;
		}
		const char *p = s + i;
		size_t plen = j - i;
		trim(&p, &plen);
		if (plen > 4 && strncasecmp(p, "for=", 4) == 0) {
			*v = p + 4;
			*vlen = plen - 4;
			return true;
		}
		i = j + 1;
	}
	return false;
}

bool gw_doh_client_addr(const gw_cidr_t *trusted, unsigned n,
			const struct sockaddr_storage *peer, const char *xff,
			const char *fwd, struct sockaddr_storage *out)
{
	*out = *peer;
	if (!gw_doh_cidr_match(trusted, n, (const struct sockaddr *)peer))
		return false;
	bool use_fwd = fwd && fwd[0];
	const char *list = use_fwd ? fwd : xff;
	if (!list || !list[0])
		return false;

	bool changed = false;
	size_t end = strlen(list);
	/* RFC 7239 7.4: right to left, each hop vouched for by the next */
	for (;;) {
		size_t start = end;
		bool quoted = false;
		while (start > 0 && (quoted || list[start - 1] != ',')) {
			if (list[start - 1] == '"')
				quoted = !quoted;
			start--;
		}
		const char *hop = list + start;
		size_t hlen = end - start;
		if (use_fwd && !forwarded_for(hop, hlen, &hop, &hlen))
			break;
		struct sockaddr_storage a;
		if (!parse_hop(hop, hlen, &a))
			break; /* "unknown", "_hidden": stop at what we know */
		*out = a;
		changed = true;
		if (!gw_doh_cidr_match(trusted, n, (const struct sockaddr *)&a))
			break; /* the first untrusted hop is the client */
		if (start == 0)
			break;
		end = start - 1;
	}
	return changed;
}

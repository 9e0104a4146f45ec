/*
 * doh_req.h - sans-I/O DNS-over-HTTPS request checks (RFC 8484), shared by
 * the HTTP/2 and HTTP/1.1 paths of transports/doh.c.
 *
 * The glue feeds what its HTTP layer decoded: the method and the request
 * target as the pseudo-headers ":method" and ":path" (HTTP/1.1 passes its
 * request line the same way), then every header field, then the body, then
 * the end of the request. The request either yields a DNS message or an HTTP
 * status to answer with. The first error decided is sticky: later calls keep
 * returning it, so the glue may stop feeding at any point.
 *
 * Nothing is allocated for an announced Content-Length: the body buffer grows
 * with what really arrives and never past GW_DNS_MAX_MSG (65535).
 *
 * The client-address part (gw_doh_client_addr) decides who the client is
 * behind trusted proxies from X-Forwarded-For / Forwarded, walking right to
 * left (RFC 7239 7.4: only hops we trust may tell us the next one).
 *
 * Ownership: a gw_doh_req_t is embedded by the caller; gw_doh_req_deinit()
 * frees its body buffer. The conf path passed to gw_doh_req_init() is
 * borrowed for the request's life. Not thread-safe; no callbacks.
 */
#ifndef GW_DOH_REQ_H
#define GW_DOH_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "gateway/buf.h"
#include "gateway/config.h"

/* RFC 8484 4.1 GET ?dns= and POST bodies: limits pinned in docs/doh.md */
#define GW_DOH_MAX_TARGET 4096        /* :path incl. query: 414 past it */
#define GW_DOH_MAX_HEADERS 64         /* header fields: 431 past it */
#define GW_DOH_MAX_HEADER_BYTES 16384 /* names + values: 431 past it */
#define GW_DOH_MAX_FORWARDED 512      /* XFF / Forwarded kept: ignored past it */

enum gw_doh_method {
	GW_DOH_M_NONE = 0,
	GW_DOH_M_GET,
	GW_DOH_M_POST,
	GW_DOH_M_HEAD,
	GW_DOH_M_OTHER,
};

typedef struct gw_doh_req {
	const char *conf_path; /* borrowed, e.g. "/dns-query" */
	int status;            /* 0, or the HTTP status decided (sticky) */
	int method;            /* enum gw_doh_method */
	bool http1;            /* HTTP/1.1 framing rules apply (411, 501) */
	bool have_path;
	bool have_ct;
	bool ct_ok;
	bool have_cl;
	bool te;               /* any Transfer-Encoding (HTTP/1.1) */
	bool headers_done;
	uint64_t content_length;
	unsigned n_headers;
	size_t header_bytes;
	gw_buf_t msg; /* the DNS message: decoded ?dns= or the POST body */
	/* proxy headers, as received (joined with ", " when repeated) */
	char xff[GW_DOH_MAX_FORWARDED];
	char fwd[GW_DOH_MAX_FORWARDED];
	bool xff_overflow, fwd_overflow;
} gw_doh_req_t;

/* Starts a request for the configured path (borrowed). http1 enables the
 * HTTP/1.1 framing checks (Content-Length required, no Transfer-Encoding). */
void gw_doh_req_init(gw_doh_req_t *r, const char *conf_path, bool http1);
/* Frees the body buffer. */
void gw_doh_req_deinit(gw_doh_req_t *r);

/*
 * One header field (name lowercase or not; compared case-insensitively).
 * ":method" and ":path" carry the request line; other pseudo-headers
 * (":scheme", ":authority") are ignored. Returns the sticky status (0 while
 * all is well): 431 for too many or too large fields, 400 for a bad or
 * conflicting Content-Length, 414 for a target over GW_DOH_MAX_TARGET.
 */
int gw_doh_req_header(gw_doh_req_t *r, const char *name, size_t nlen,
		      const char *value, size_t vlen);

/*
 * All header fields are in: decides what can be decided before the body.
 * 0 when the request goes on (a POST then needs its body), else the status:
 * 400 (no method/path), 404 (other path), 405 (other method: answer with
 * "Allow: GET, POST"), 400/414 for the GET parameter, 415 (POST content type),
 * 413 (Content-Length over 65535), 501 (HTTP/1.1 Transfer-Encoding), 411
 * (HTTP/1.1 POST without Content-Length).
 */
int gw_doh_req_headers_done(gw_doh_req_t *r);

/* Body bytes (POST). 0, or 413 once the body passes 65535 bytes or the
 * announced Content-Length; a GET with a body gets 400. */
int gw_doh_req_body(gw_doh_req_t *r, const uint8_t *data, size_t len);

/*
 * The request is complete. On success returns 0 and points *msg and *len at the
 * DNS message (owned by r). Else the status: 400 for a body shorter than its
 * Content-Length, a message under 12 bytes, or QR=1.
 */
int gw_doh_req_finish(gw_doh_req_t *r, const uint8_t **msg, size_t *len);

/* Decodes base64url (RFC 4648 5), padding accepted ("=" or "%3D"), no
 * other characters. Returns the length written or -1 (bad input or more than
 * cap bytes). */
int gw_doh_base64url_decode(const char *in, size_t inlen, uint8_t *out,
			    size_t cap);

/* Reason phrase for the HTTP/1.1 status line ("Not Found"). */
const char *gw_doh_status_text(int status);

/* True when addr lies inside one of the n prefixes. */
bool gw_doh_cidr_match(const gw_cidr_t *cidrs, unsigned n,
		       const struct sockaddr *addr);

/*
 * The client behind proxies. When peer is not in trusted, *out = peer and
 * the headers are ignored. Otherwise the hops of Forwarded "for=" (when that
 * header is present) or else X-Forwarded-For are walked right to left, each
 * accepted only while the hop that reported it is trusted; the first address
 * that is not a trusted proxy is the client. An unparsable hop (a token such
 * as "unknown" or an obfuscated name) stops the walk at the last address
 * known. Returns true when *out differs from peer (a forwarded address was
 * used). Ports from the headers are ignored (port 0).
 */
bool gw_doh_client_addr(const gw_cidr_t *trusted, unsigned n,
			const struct sockaddr_storage *peer, const char *xff,
			const char *fwd, struct sockaddr_storage *out);

#endif

/*
 * admin_http.h - the admin listener's HTTP/1.1 request reader and response
 * head writer (RFC 9112), sans-I/O.
 *
 * The admin listener serves three GET paths to scrapers and probes, one
 * request per connection, so this reads only what that needs: a request line
 * and header fields, bounded by GW_ADMIN_MAX_HEAD bytes. It takes the bytes
 * received so far and says "need more", "here is the request" or why not.
 * It never allocates and never looks past len.
 *
 * Rules (RFC 9112):
 *  - request-line = method SP request-target SP HTTP-version (3); one SP
 *    each, no leading or trailing whitespace; the method a token.
 *  - lines end in CRLF; a bare LF is accepted (2.2 allows it), a bare CR
 *    is not.
 *  - origin-form targets only ("/path[?query]"); the query is dropped.
 *  - header fields: token ":" OWS value OWS; no whitespace before the
 *    colon (5.1: 400), no obs-fold (5.2: 400), no control characters.
 *  - at most GW_ADMIN_MAX_FIELDS fields.
 *  - a request with a body (Content-Length > 0 or any Transfer-Encoding) is
 *    refused: none of our resources takes one.
 */
#ifndef GW_ADMIN_HTTP_H
#define GW_ADMIN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_ADMIN_MAX_HEAD 4096	/* request line + fields */
#define GW_ADMIN_MAX_TARGET 256 /* path kept (longer: 414) */
#define GW_ADMIN_MAX_FIELDS 32

typedef enum gw_admin_method {
	GW_ADMIN_GET,
	GW_ADMIN_HEAD,
	GW_ADMIN_OTHER, /* parsed, but answered 405 */
} gw_admin_method_t;

typedef struct gw_admin_req {
	gw_admin_method_t method;
	char path[GW_ADMIN_MAX_TARGET]; /* without "?query" */
	unsigned minor;			/* HTTP/1.x */
} gw_admin_req_t;

/*
 * Reads one request head from buf[0..len). Returns:
 *   > 0  the head's length (through the empty line); req is filled
 *   0    incomplete: read more (unless len >= GW_ADMIN_MAX_HEAD: then the
 *        caller answers 431, the same as a GW_ETOOBIG)
 *   < 0  the HTTP status to answer, negated: -400 malformed, -414 target
 *        too long, -431 head too large, -505 not HTTP/1.x, -413 a body
 *        (Content-Length > 0 or Transfer-Encoding)
 */
int gw_admin_http_parse(const uint8_t *buf, size_t len, gw_admin_req_t *req);

/* The reason phrase of a status this module or the admin uses. */
const char *gw_admin_http_reason(int status);

/*
 * Writes a response head: status line, Content-Type (if ctype), Content-
 * Length, Connection: close, Cache-Control: no-store, and Allow for 405.
 * Returns its length, or a negative value when it does not fit in cap.
 */
int gw_admin_http_head(int status, const char *ctype, size_t body_len,
		       char *out, size_t cap);

#endif

/*
 * admin_http.c - bounded HTTP/1.1 request-head reader for the admin listener.
 */
#include "admin_http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* RFC 9110 5.6.2 tchar */
static bool is_tchar(uint8_t c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 3986 characters allowed in an origin-form target, plus '%'. */
static bool is_target_char(uint8_t c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c && strchr("-._~:/?#[]@!$&'()*+,;=%", c) != NULL;
}

/* Field values: visible ASCII, SP, HTAB and obs-text (RFC 9110 5.5). */
static bool is_value_char(uint8_t c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Finds the end of the line starting at off: sets *eol to the index of its
 * terminator and returns the index just past it, 0 if there is no complete
 * line yet, or -1 for a bare CR. */
static long line_end(const uint8_t *b, size_t len, size_t off, size_t *eol)
{
	for (size_t i = off; i < len; i++) {
		if (b[i] == '\n') {
			*eol = i;
			return (long)i + 1;
		}
		if (b[i] == '\r') {
			if (i + 1 == len)
				return 0;
			if (b[i + 1] != '\n')
				return -1;
			*eol = i;
			return (long)i + 2;
		}
	}
	return 0;
}

static int parse_request_line(const uint8_t *b, size_t n, gw_admin_req_t *req)
{
	size_t i = 0, t0, t1;

	/* method */
	while (i < n && is_tchar(b[i]))
		i++;
	if (i == 0 || i >= n || b[i] != ' ')
		return -400;
	if (i == 3 && memcmp(b, "GET", 3) == 0)
		req->method = GW_ADMIN_GET;
	else if (i == 4 && memcmp(b, "HEAD", 4) == 0)
		req->method = GW_ADMIN_HEAD;
	else
		req->method = GW_ADMIN_OTHER;
	i++;

	/* request-target: origin-form only */
	t0 = i;
	while (i < n && b[i] != ' ') {
		if (!is_target_char(b[i]))
			return -400;
		i++;
	}
	t1 = i;
	if (t1 == t0 || i >= n || b[t0] != '/')
		return -400;

	/* HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive (2.3) */
	i++;
	if (n - i != 8 || memcmp(b + i, "HTTP/", 5) != 0 ||
	    !(b[i + 5] >= '0' && b[i + 5] <= '9') || b[i + 6] != '.' ||
	    !(b[i + 7] >= '0' && b[i + 7] <= '9'))
		return -400;
	if (b[i + 5] != '1')
		return -505;
	req->minor = (unsigned)(b[i + 7] - '0');

	size_t plen = t1 - t0;
	const uint8_t *q = memchr(b + t0, '?', plen);
	if (q)
		plen = (size_t)(q - (b + t0));
	const uint8_t *h = memchr(b + t0, '#', plen);
	if (h) /* a fragment is never sent (RFC 9110 4.2.1) */
		return -400;
	if (plen >= sizeof(req->path))
		return -414;
	memcpy(req->path, b + t0, plen);
	req->path[plen] = '\0';
	return 0;
}

static int parse_field(const uint8_t *b, size_t n, bool *body)
{
	size_t i = 0;
	while (i < n && is_tchar(b[i]))
		i++;
	/* no whitespace between name and colon (RFC 9112 5.1) */
	if (i == 0 || i >= n || b[i] != ':')
		return -400;
	size_t name_len = i++;
	while (i < n && (b[i] == ' ' || b[i] == '\t'))
		i++;
	size_t v0 = i, v1 = n;
	while (v1 > v0 && (b[v1 - 1] == ' ' || b[v1 - 1] == '\t'))
		v1--;
	for (size_t k = v0; k < v1; k++)
		if (!is_value_char(b[k]))
			return -400;

	if (name_len == 17 &&
	    strncasecmp((const char *)b, "transfer-encoding", 17) == 0) {
		*body = true;
	} else if (name_len == 14 &&
		   strncasecmp((const char *)b, "content-length", 14) == 0) {
		/* 1*DIGIT; anything else is malformed (RFC 9112 6.3) */
		if (v1 == v0)
			return -400;
		bool nonzero = false;
		for (size_t k = v0; k < v1; k++) {
			if (b[k] < '0' || b[k] > '9')
				return -400;
			nonzero |= b[k] != '0';
		}
		if (nonzero)
			*body = true;
	}
	return 0;
}

int gw_admin_http_parse(const uint8_t *buf, size_t len, gw_admin_req_t *req)
{
	size_t off = 0, eol = 0;
	unsigned fields = 0;
	bool body = false;
	int r;

	memset(req, 0, sizeof(*req));
	if (len > GW_ADMIN_MAX_HEAD)
		len = GW_ADMIN_MAX_HEAD;

	/* RFC 9112 2.2: empty lines before the request line MAY be ignored;
	 * we do not, a scraper never sends them. */
	long next = line_end(buf, len, 0, &eol);
	if (next < 0)
		return -400;
	if (next == 0) {
		/* a request line that cannot fit, or junk early */
		for (size_t i = 0; i < len; i++)
			if (buf[i] < 0x20 && buf[i] != '\r')
				return -400;
		return len >= GW_ADMIN_MAX_HEAD ? -431 : 0;
	}
	r = parse_request_line(buf, eol, req);
	if (r < 0)
		return r;
	off = (size_t)next;

	for (;;) {
		next = line_end(buf, len, off, &eol);
		if (next < 0)
			return -400;
		if (next == 0)
			return len >= GW_ADMIN_MAX_HEAD ? -431 : 0;
		if (eol == off)
			break; /* the empty line: end of the head */
		/* obs-fold: a line starting with whitespace (RFC 9112 5.2) */
		if (buf[off] == ' ' || buf[off] == '\t')
			return -400;
		if (++fields > GW_ADMIN_MAX_FIELDS)
			return -431;
		r = parse_field(buf + off, eol - off, &body);
		if (r < 0)
			return r;
		off = (size_t)next;
	}
	if (body)
		return -413;
	return (int)next;
}

const char *gw_admin_http_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}

int gw_admin_http_head(int status, const char *ctype, size_t body_len,
		       char *out, size_t cap)
{
	int n = snprintf(out, cap,
			 "HTTP/1.1 %d %s\r\n"
			 "%s%s%s"
			 "Content-Length: %zu\r\n"
			 "Cache-Control: no-store\r\n"
			 "%s"
			 "Connection: close\r\n"
			 "\r\n",
			 status, gw_admin_http_reason(status),
			 ctype ? "Content-Type: " : "", ctype ? ctype : "",
			 ctype ? "\r\n" : "", body_len,
			 status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (n < 0 || (size_t)n >= cap)
		return -1;
	return n;
}

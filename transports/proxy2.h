/*
 * proxy2.h - sans-I/O reader of the PROXY protocol version 2 header
 * (HAProxy's proxy-protocol.txt, section 2.2), the binary preamble a
 * load balancer sends before the client's bytes to say who the client is.
 *
 * The glue reads exactly the header and nothing more, so the stream that
 * follows (TLS, DNS over TCP, HTTP) stays in the socket for the transport:
 * first GW_PROXY2_HEADER_LEN bytes, then gw_proxy2_need() says how many in
 * all, then gw_proxy2_parse() reads them. Version 1 (text) is not accepted.
 * On datagram listeners the header prefixes every datagram instead:
 * gw_proxy2_strip_dgram() splits one into header and payload.
 *
 * No allocation, no state; buffers are borrowed. Safe from any thread.
 */
#ifndef GW_PROXY2_H
#define GW_PROXY2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define GW_PROXY2_HEADER_LEN 16 /* signature, ver/cmd, fam, length */
/* Our cap on a whole header: the address block (36 bytes for IPv6, 216 for
 * AF_UNIX) plus a kilobyte of TLVs; longer headers are refused. */
#define GW_PROXY2_MAX_LEN (GW_PROXY2_HEADER_LEN + 1024)

typedef struct gw_proxy2 {
	bool local;    /* command LOCAL: the proxy's own connection
			* (health check); use the real peer address */
	bool has_addr; /* src/dst hold the client's IPv4/IPv6 endpoints;
			* false for LOCAL, AF_UNSPEC and AF_UNIX */
	struct sockaddr_storage src; /* the client */
	struct sockaddr_storage dst; /* the address the client connected to */
	socklen_t addrlen;
} gw_proxy2_t;

/*
 * Given the first len bytes received, how long the whole header is. Returns
 * 0 while fewer than GW_PROXY2_HEADER_LEN bytes are in and those agree with
 * the signature; the total length (>= 16) once the fixed part is in;
 * GW_EMALFORMED as soon as the bytes are not a version 2 header (signature,
 * version, command, family or protocol unknown), and GW_ETOOBIG when the
 * total would pass max.
 */
int gw_proxy2_need(const uint8_t *buf, size_t len, size_t max);

/*
 * Parses a whole header of len bytes (len as returned by gw_proxy2_need()).
 * Returns 0 and fills *out, or GW_EMALFORMED (wrong length, address block
 * shorter than its family needs). TLVs are skipped unread.
 */
int gw_proxy2_parse(const uint8_t *buf, size_t len, gw_proxy2_t *out);

/*
 * The datagram form (UDP and QUIC listeners; dnsdist and HAProxy send it
 * so): every datagram of a trusted proxy starts with a whole header and the
 * payload follows in the same datagram. Parses the header at the start of
 * the len bytes at buf into *out and returns its length, so the payload is
 * buf[ret..len) (possibly empty: the caller judges the payload). Returns
 * GW_EMALFORMED when the datagram does not start with a whole, valid
 * version 2 header: no signature, version 1, unknown command, family or
 * protocol, or a header longer than the datagram. The datagram bounds the
 * header, so GW_PROXY2_MAX_LEN does not apply.
 */
int gw_proxy2_strip_dgram(const uint8_t *buf, size_t len, gw_proxy2_t *out);

#endif

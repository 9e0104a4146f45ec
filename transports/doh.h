/*
 * doh.h - DNS over HTTPS (RFC 8484) listeners: doh:// (TLS, ALPN h2 or
 * http/1.1) and h2c:// (cleartext behind a TLS-terminating proxy: prior-
 * knowledge HTTP/2 or HTTP/1.1, told apart by the first bytes).
 *
 * HTTP/2 is nghttp2 driven sans-I/O (mem_recv/mem_send) over the wolfSSL
 * memory transformer; HTTP/1.1 is a small bounded parser here. Both hand
 * header fields and bodies to the shared request checks of doh_req.h and the
 * DNS message to the query pipeline (gateway/query.h).
 *
 * Connections belong to the worker thread that accepted them (a per-thread
 * list) and are freed only from their own timer callback, as in stream.c.
 * Limits and behaviour choices are pinned in docs/doh.md.
 */
#ifndef GW_DOH_H
#define GW_DOH_H

#include <stdint.h>

#include "gateway/worker.h"
#include "transports/tls.h"

extern const gw_listener_ops_t gw_doh_listener_ops;

/*
 * DoT and DoH on one port: stream.c hands over a DoT connection whose
 * handshake selected ALPN "h2" or "http/1.1", with the plaintext already
 * decrypted (data, len; borrowed). l is the port's DoH listener (fd -1, see
 * worker.h). Takes ownership of fd, tls and the connection-limit slot of
 * addr (released when the connection ends, also on failure). Call from the
 * worker thread that owns l.
 */
void gw_doh_adopt(gw_listener_t *l, int fd, const struct sockaddr_storage *addr,
		  socklen_t addrlen, gw_tls_t *tls, const uint8_t *data,
		  size_t len);

/* --- metrics hooks (per worker; the operations issue exposes them) ----- */

enum gw_doh_status_idx {
	GW_DOH_S200, GW_DOH_S400, GW_DOH_S404, GW_DOH_S405, GW_DOH_S408,
	GW_DOH_S411, GW_DOH_S413, GW_DOH_S414, GW_DOH_S415, GW_DOH_S431,
	GW_DOH_S500, GW_DOH_S501, GW_DOH_S503, GW_DOH_SOTHER,
	GW_DOH_STATUS_N
};
enum gw_doh_version_idx { GW_DOH_V_H2, GW_DOH_V_H1, GW_DOH_VERSION_N };

typedef struct gw_doh_metrics {
	uint64_t responses_by_status[GW_DOH_STATUS_N];
	uint64_t responses_by_version[GW_DOH_VERSION_N];
	uint64_t connections;        /* accepted (or adopted) */
	uint64_t refused_streams;    /* RST_STREAM REFUSED_STREAM sent */
	uint64_t reset_in_flight;    /* client reset a stream with a query out */
	uint64_t goaway_calm;        /* GOAWAY ENHANCE_YOUR_CALM sent */
	uint64_t forwarded_used;     /* XFF/Forwarded from a trusted proxy */
	uint64_t forwarded_ignored;  /* ... from an untrusted peer */
} gw_doh_metrics_t;

#define GW_DOH_MAX_WORKERS 1024

/* The status index of an HTTP status code (GW_DOH_SOTHER if not listed). */
int gw_doh_status_index(int status);
/* Adds up the counters of workers 0..n-1 into out (relaxed reads; each
 * worker writes only its own slot). Callable from any thread. */
void gw_doh_metrics_sum(unsigned n, gw_doh_metrics_t *out);

#endif

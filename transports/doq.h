/*
 * doq.h - the DNS-over-QUIC front-end (RFC 9250) on ngtcp2 and
 * ngtcp2_crypto_wolfssl. See docs/doq.md.
 *
 * Per worker: every doq:// listener socket of that worker (SO_REUSEPORT, so
 * the kernel steers each client 4-tuple to one worker), a table of live
 * connections keyed by every connection ID we issued, and one send/receive
 * batch (recvmmsg/sendmmsg). Stream rules live in transports/doq_stream.c.
 *
 * Ownership: a connection owns its ngtcp2_conn, its WOLFSSL, a reference on
 * the listener's gw_certs_t, one gw_connlimit slot and its streams; a stream
 * owns its reassembly buffer and its framed answer and holds its in-flight
 * query (owned by the pipeline) until on_answer() or gw_query_cancel().
 * Connections are freed only from their own timer callback, never from
 * inside an ngtcp2 callback.
 */
#ifndef GW_DOQ_H
#define GW_DOQ_H

#include "gateway/worker.h"

extern const gw_listener_ops_t gw_doq_listener_ops;

/* Gauges of the calling worker's DoQ front-end (tests and admin). */
typedef struct gw_doq_stats {
	unsigned conns;       /* connections in the table */
	unsigned handshaking; /* of which not yet past the handshake */
	unsigned streams;     /* open streams */
	unsigned inflight;    /* queries waiting for the pipeline */
	unsigned long retries_sent, resets_sent, vn_sent;
	unsigned long initials_dropped; /* undersized or unusable Initials */
} gw_doq_stats_t;

void gw_doq_stats(gw_doq_stats_t *out);

#endif

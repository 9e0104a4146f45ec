/*
 * stream.h - DNS over TCP (RFC 7766) and DNS over TLS (RFC 7858) listeners.
 *
 * Both are the same connection machinery: 2-byte framing, pipelining with
 * answers written as they come (out of order), and the timeouts and caps of
 * REQUIREMENTS.md. DoT adds the wolfSSL memory transformer (transports/tls.h)
 * between the socket and the framing; TCP leaves it out.
 *
 * Each connection is owned by its worker (gw_worker_t.conns) and freed only
 * from its own timer callback, never from inside another callback, so no
 * handler ever runs on a freed connection.
 */
#ifndef GW_STREAM_H
#define GW_STREAM_H

#include "gateway/worker.h"

/* tcp:// and dot:// listeners. Drain closes idle connections now and busy
 * ones after their last answer. */
extern const gw_listener_ops_t gw_stream_listener_ops;

#endif

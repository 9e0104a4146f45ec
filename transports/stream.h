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

/* Starts accepting on a bound listening socket (tcp:// or dot://). */
int gw_stream_listener_start(gw_listener_t *l);
/* Drain: idle connections close now, busy ones after their last answer. */
void gw_stream_drain(gw_worker_t *w);
/* Closes every connection at once (loop exit). */
void gw_stream_close_all(gw_worker_t *w);

#endif

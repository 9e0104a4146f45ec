/*
 * tls.h - server-side TLS as a memory transformer (no sockets).
 *
 * The owner of a connection feeds ciphertext read from its socket with
 * gw_tls_feed(), pulls plaintext with gw_tls_read(), pushes plaintext with
 * gw_tls_write(), and sends whatever gw_tls_out() holds, consuming what the
 * socket took with gw_buf_consume(). wolfSSL never sees a file descriptor:
 * its I/O callbacks read the in-buffer and append to the out-buffer. The
 * same code therefore serves non-blocking TCP and the unit tests.
 *
 * After EVERY gw_tls_feed/read/write/close call the out-buffer may have
 * grown (handshake flights, alerts, TLS 1.3 tickets and KeyUpdate
 * responses): the caller must flush it, or arm a write watcher.
 *
 * Not thread-safe; one gw_tls_t belongs to one connection on one loop.
 * None of these functions calls back into the caller. Errors: see each
 * function; once gw_tls_read returned GW_ETLS every later call keeps
 * failing the same way (sticky).
 */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "certs/certs.h"
#include "gateway/buf.h"

/* Unread ciphertext held before gw_tls_feed refuses: four maximum-size
 * records (RFC 8446 5.2: 2^14 + 256 bytes each) and some slack. */
#define GW_TLS_MAX_IN (64 * 1024)

typedef struct gw_tls gw_tls_t;

/* Creates the server side of one connection over certs' context, taking a
 * reference on certs (dropped by gw_tls_free). max_out caps the ciphertext
 * buffered in the out-buffer (a handshake flight must fit: use >= 16 KiB).
 * NULL on out of memory or a wolfSSL failure. */
gw_tls_t *gw_tls_new(gw_certs_t *certs, size_t max_out);

/* Frees everything, including unsent ciphertext. NULL-safe. Does not send a
 * close_notify: call gw_tls_close() and flush first for a graceful close. */
void gw_tls_free(gw_tls_t *t);

/* Copies ciphertext received from the socket into the in-buffer.
 * 0, GW_ETOOBIG (more than GW_TLS_MAX_IN unread: the caller is not calling
 * gw_tls_read or the peer floods) or GW_ENOMEM. Nothing is copied on error. */
int gw_tls_feed(gw_tls_t *t, const uint8_t *data, size_t len);

/*
 * Advances the handshake and decrypts. Returns >0 bytes of plaintext written
 * to out (call again: more may be buffered), 0 when nothing more can be done
 * without more input, GW_ECLOSED once the peer sent close_notify,
 * GW_ETLS on a fatal TLS error (handshake failure, bad record, renegotiation
 * attempt; an alert is already queued in the out-buffer where TLS wants one),
 * GW_ETOOBIG if the out-buffer cap was hit while wolfSSL was sending.
 * The wolfSSL reason is logged once per connection at debug level.
 */
ssize_t gw_tls_read(gw_tls_t *t, uint8_t *out, size_t cap);

/* Encrypts all of data into the out-buffer, all or nothing: 0, GW_ETOOBIG
 * (would exceed max_out; nothing queued), GW_EINVAL (handshake not done),
 * GW_ETLS (connection failed). len 0 is a no-op. */
int gw_tls_write(gw_tls_t *t, const uint8_t *data, size_t len);

/* Ciphertext waiting for the socket, owned by t. The caller sends from
 * gw_buf_head() and calls gw_buf_consume() with what was sent. */
gw_buf_t *gw_tls_out(gw_tls_t *t);

bool gw_tls_handshake_done(const gw_tls_t *t);
/* Negotiated ALPN protocol, or "" (none negotiated / handshake not done). */
const char *gw_tls_alpn(const gw_tls_t *t);
/* "TLSv1.3", "TLSv1.2"; "" before the handshake is done. */
const char *gw_tls_version(const gw_tls_t *t);
/* True when the handshake resumed a session (ticket). */
bool gw_tls_resumed(const gw_tls_t *t);
/* Queues a close_notify alert (RFC 8446 6.1) in the out-buffer. Idempotent;
 * harmless after an error. */
void gw_tls_close(gw_tls_t *t);

/* Releases the storage of whichever buffer is empty, so that an idle
 * kept-alive connection holds only wolfSSL's own state (about 58 KiB with
 * the --enable-all build, see docs/tls.md). Done internally too: the
 * in-buffer when gw_tls_read runs dry, the out-buffer on gw_tls_feed when
 * it was flushed; callers may call it after flushing. */
void gw_tls_shrink(gw_tls_t *t);

#endif

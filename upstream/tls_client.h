/*
 * tls_client.h - the client side of TLS towards an upstream resolver (DoT,
 * RFC 7858; later the TLS of https:// upstreams), as a memory transformer in
 * the style of transports/tls.h: the connection owner feeds ciphertext from
 * its socket, reads plaintext, writes plaintext, and sends what
 * gw_up_tls_out() holds. No sockets, no callbacks into the caller.
 *
 * Authentication (RFC 8310 profile, strict only - there is no opportunistic
 * mode and never a fallback to cleartext):
 *   - without a pin: the chain must verify against the CA bundle of the
 *     context, and the leaf must carry the name (SAN dNSName or CN); the name
 *     is also sent as SNI;
 *   - with a pin (base64 SHA-256 of the leaf's SubjectPublicKeyInfo, RFC 7858
 *     4.2, the value `kdig +tls-pin` takes): the leaf's key must match the pin;
 *     the chain is not required to verify (pinning is the out-of-band trust).
 *     A pin that does not match fails the handshake before any query is sent.
 *
 * Session resumption: gw_up_tls_session() returns a session the owner keeps
 * per upstream and passes to the next gw_up_tls_new() for that upstream.
 *
 * Ownership: gw_up_tls_ctx_t is one WOLFSSL_CTX (one per worker pool, so no
 * sharing); gw_up_tls_t belongs to one connection. Not thread-safe.
 */
#ifndef GW_UP_TLS_CLIENT_H
#define GW_UP_TLS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gateway/buf.h"

/* The system's CA bundle on Debian; --ca-file / upstream.ca_file override. */
#define GW_UP_DEFAULT_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

typedef struct gw_up_tls_ctx gw_up_tls_ctx_t;
typedef struct gw_up_tls gw_up_tls_t;
typedef struct gw_up_tls_session gw_up_tls_session_t;

/* ca_file NULL or "" means GW_UP_DEFAULT_CA_FILE. need_ca false: a missing
 * or unreadable bundle is tolerated (every upstream is pinned). NULL and one
 * line in err on failure. */
gw_up_tls_ctx_t *gw_up_tls_ctx_new(const char *ca_file, bool need_ca,
				   char *err, size_t errlen);
void gw_up_tls_ctx_free(gw_up_tls_ctx_t *x);

/*
 * A client connection for name (non-empty) and pin (NULL/"" = verify the
 * chain and the name). resume: a session of an earlier connection to the
 * same upstream, or NULL. max_out caps buffered ciphertext. NULL on failure.
 * The ClientHello is produced by the first gw_up_tls_read() call.
 */
gw_up_tls_t *gw_up_tls_new(gw_up_tls_ctx_t *x, const char *name,
			   const char *pin, gw_up_tls_session_t *resume,
			   size_t max_out);
void gw_up_tls_free(gw_up_tls_t *t);

/* As gw_tls_feed/gw_tls_read/gw_tls_write of transports/tls.h. read also
 * drives the handshake; it returns GW_ETLS when the peer is not who it must
 * be (gw_up_tls_error() says why). */
int gw_up_tls_feed(gw_up_tls_t *t, const uint8_t *data, size_t len);
ssize_t gw_up_tls_read(gw_up_tls_t *t, uint8_t *out, size_t cap);
int gw_up_tls_write(gw_up_tls_t *t, const uint8_t *data, size_t len);
gw_buf_t *gw_up_tls_out(gw_up_tls_t *t);
bool gw_up_tls_handshake_done(const gw_up_tls_t *t);
bool gw_up_tls_resumed(const gw_up_tls_t *t);
/* Why the connection failed ("certificate name mismatch", ...); "" if not. */
const char *gw_up_tls_error(const gw_up_tls_t *t);
void gw_up_tls_close(gw_up_tls_t *t);

/* Offers the ALPN protocol proto (RFC 7301; "h2" for DoH, RFC 8484 5.2)
 * before the handshake; a handshake that does not agree on it fails with
 * gw_up_tls_error() "ALPN h2 not agreed". 0, GW_EINVAL or GW_ETLS. */
int gw_up_tls_set_alpn(gw_up_tls_t *t, const char *proto);

/* A resumable session of t (new reference), or NULL (none yet). */
gw_up_tls_session_t *gw_up_tls_session(gw_up_tls_t *t);
void gw_up_tls_session_free(gw_up_tls_session_t *s);

/* base64(SHA-256(SPKI)) of a DER certificate into out (>= 45 bytes). */
int gw_up_tls_spki_pin(const uint8_t *der, size_t len, char *out, size_t cap);

/*
 * QUIC (quic:// upstreams): ngtcp2 drives the handshake, so these hand out
 * the WOLFSSL object (as void *) instead of a memory transformer.
 * ctx_new_quic: a TLS 1.3 context configured for ngtcp2_crypto_wolfssl.
 * quic_new: a client SSL for name / pin as gw_up_tls_new(), offering ALPN
 * alpn ("doq", RFC 9250 4.1), in connect state; the owner sets app data and
 * hands it to ngtcp2; free with gw_up_tls_quic_free().
 * quic_check: after the handshake, the pin (if any) and the ALPN must match;
 * 0 or GW_ETLS with the reason in why. quic_why: why a handshake failed
 * (certificate verdict), for logs.
 */
gw_up_tls_ctx_t *gw_up_tls_ctx_new_quic(const char *ca_file, bool need_ca,
					char *err, size_t errlen);
void *gw_up_tls_quic_new(gw_up_tls_ctx_t *x, const char *name,
			 const char *pin, const char *alpn,
			 gw_up_tls_session_t *resume);
int gw_up_tls_quic_check(void *ssl, const char *pin, const char *alpn,
			 char *why, size_t cap);
void gw_up_tls_quic_why(void *ssl, char *why, size_t cap);
bool gw_up_tls_quic_resumed(void *ssl);
gw_up_tls_session_t *gw_up_tls_quic_session(void *ssl);
void gw_up_tls_quic_free(void *ssl);

#endif

/*
 * certs.h - certificate store: a server TLS context plus its certificate.
 *
 * A gw_certs_t owns one WOLFSSL_CTX configured for serving DoT/DoH (TLS 1.2
 * minimum, TLS 1.3 preferred, no renegotiation, no compression, no 0-RTT,
 * session tickets with in-memory rotating keys, ALPN from a fixed list) and
 * the facts about its leaf certificate that the gateway prints or checks.
 *
 * Reference counted because two owners really exist during a reload: the
 * listener holds the current gw_certs_t, and every live connection holds a
 * reference (taken by gw_tls_new) on the one it was accepted with. A reload
 * builds a new gw_certs_t, swaps the listener's pointer and unrefs the old
 * one; old connections keep working until they close. Refcounting is atomic,
 * so a gw_certs_t may be shared by worker threads; the WOLFSSL_CTX itself is
 * only read after creation (wolfSSL_new() on a shared ctx is thread-safe).
 *
 * Errors are reported as NULL plus one human-readable line in err (no
 * trailing newline) that names the file(s) involved.
 */
#ifndef GW_CERTS_H
#define GW_CERTS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

typedef struct gw_certs gw_certs_t;

/* Calls wolfSSL_Init() once. Call at start-up, before any other gw_certs_*
 * or gw_tls_* function and before threads are started. Idempotent. */
void gw_certs_global_init(void);
/* Frees what wolfSSL caches per thread (the fixed-point ECC table): call
 * at the end of every thread that did TLS or key work. */
void gw_certs_thread_cleanup(void);

/*
 * Loads a PEM certificate chain (leaf first) and its private key (PEM, any
 * key type wolfSSL can load), checks that the key matches the leaf and that
 * the leaf is inside its validity period now.
 *
 * alpn: NULL-terminated list of protocols this context offers, in server
 * preference order (e.g. {"dot", NULL}); copied. NULL or an empty list means
 * "no ALPN": the handshake ignores whatever the client offers. Otherwise a
 * client that offers ALPN but none of ours is refused with the
 * no_application_protocol alert (RFC 7301 3.2); a client that offers no ALPN
 * is served (kdig/dig do not always send it).
 *
 * Returns a new object with one reference, or NULL and one line in err, e.g.
 *   "cert.pem: No such file or directory"
 *   "cert.pem: no certificate found"
 *   "key.pem: no private key found"
 *   "cert.pem and key.pem: key does not match certificate"
 *   "cert.pem: certificate expired on 2024-05-01 12:00:00 UTC"
 *   "cert.pem: certificate not valid before 2031-01-01 00:00:00 UTC"
 */
gw_certs_t *gw_certs_load(const char *cert_file, const char *key_file,
			  const char *const *alpn, char *err, size_t errlen);

/*
 * Generates an in-memory self-signed ECDSA P-256 certificate for the
 * zero-config run: CN=dnsgw self-signed, SAN DNS:localhost, IP:127.0.0.1,
 * IP:::1, valid from now-1h for 90 days. Nothing is written to disk; the key
 * dies with the object. alpn as for gw_certs_load(). NULL + err on failure.
 */
gw_certs_t *gw_certs_selfsigned(const char *const *alpn, char *err,
				size_t errlen);

/*
 * Turns a freshly loaded context into a QUIC server context (DoQ, RFC 9250;
 * RFC 9001): TLS 1.3 only (QUIC has no TLS 1.2), the ngtcp2_crypto_wolfssl
 * QUIC method installed, 0-RTT still off. Call before the first connection
 * uses c; afterwards gw_certs_is_quic() is true. 0 or GW_ETLS + err.
 * Unlike TCP listeners, the QUIC glue must also refuse a handshake that
 * negotiated no ALPN (RFC 9001 8.1); transports/doq.c does that.
 */
int gw_certs_enable_quic(gw_certs_t *c, char *err, size_t errlen);
/*
 * Accepts 0-RTT on a QUIC context (doq.early_data): session tickets then
 * allow early data (RFC 9001 4.6.1). Off unless called; transports/doq.c
 * answers only QUERY from early data. Call after gw_certs_enable_quic(),
 * before the first connection. 0, GW_EINVAL (not a QUIC context) or
 * GW_ETLS + err.
 */
int gw_certs_quic_early_data(gw_certs_t *c, char *err, size_t errlen);
/* True once gw_certs_enable_quic() succeeded on c. */
int gw_certs_is_quic(const gw_certs_t *c);

/* Takes another reference; returns c. NULL-safe. */
gw_certs_t *gw_certs_ref(gw_certs_t *c);
/* Drops a reference; frees the context when the last one goes. NULL-safe. */
void gw_certs_unref(gw_certs_t *c);

/* The server context, owned by c (valid while a reference is held). */
WOLFSSL_CTX *gw_certs_ctx(const gw_certs_t *c);

/* base64(SHA-256(leaf SubjectPublicKeyInfo)) - the RFC 7858 4.2 SPKI pin,
 * as used by `kdig +tls-pin=...`. Owned by c. */
const char *gw_certs_spki_pin(const gw_certs_t *c);

/* The leaf's notAfter / notBefore as Unix time. */
time_t gw_certs_not_after(const gw_certs_t *c);
time_t gw_certs_not_before(const gw_certs_t *c);

/* The ALPN list the context was built with (NULL-terminated, owned by c;
 * never NULL, possibly empty). */
const char *const *gw_certs_alpn(const gw_certs_t *c);

/*
 * For tests and tooling: generates a self-signed ECDSA P-256 certificate
 * (CN=cn, same SANs as gw_certs_selfsigned) valid from not_before to
 * not_after, and writes the certificate and its private key as
 * NUL-terminated PEM into the caller's buffers (2 KiB each is plenty).
 * Dates outside 1950..2049 are rejected (UTCTime only).
 * 0, GW_EINVAL, GW_ENOSPC or GW_ETLS.
 */
int gw_certs_generate_pem(const char *cn, time_t not_before, time_t not_after,
			  char *cert_pem, size_t cert_cap, char *key_pem,
			  size_t key_cap);

#endif

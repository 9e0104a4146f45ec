/*
 * tls.c - wolfSSL driven through memory I/O callbacks. See docs/tls.md.
 */
#include "transports/tls.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "gateway/error.h"
#include "gateway/log.h"

/* Worst-case bytes a record adds to its plaintext: header (5), TLS 1.3
 * inner type (1), AEAD tag (16), or for TLS 1.2 CBC suites explicit IV (16),
 * MAC (up to 48) and padding (up to 16). Rounded up generously. */
#define TLS_RECORD_OVERHEAD 128

struct gw_tls {
	WOLFSSL *ssl;
	gw_certs_t *certs;
	gw_buf_t in;  /* ciphertext from the peer, not yet taken by wolfSSL */
	gw_buf_t out; /* ciphertext for the peer */
	int err;      /* sticky: GW_ETLS, GW_ECLOSED or GW_ETOOBIG */
	bool hs_done;
	bool resumed;
	bool closed;     /* close_notify queued */
	bool logged;     /* wolfSSL's reason logged already */
	const char *alpn;    /* points into certs' ALPN list, or "" */
	const char *version; /* wolfSSL's static string, or "" */
};

/* wolfSSL asks for up to sz bytes; hand over what the in-buffer holds. */
static int on_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	gw_tls_t *t = ctx;
	size_t have = gw_buf_size(&t->in);
	(void)ssl;
	if (have == 0)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	if ((size_t)sz < have)
		have = (size_t)sz;
	memcpy(buf, gw_buf_head(&t->in), have);
	gw_buf_consume(&t->in, have);
	return (int)have;
}

/* wolfSSL sends whole records; take all or fail (never WANT_WRITE, so
 * wolfSSL never keeps half-sent state of its own). */
static int on_send(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	gw_tls_t *t = ctx;
	(void)ssl;
	int r = gw_buf_append(&t->out, buf, (size_t)sz);
	if (r < 0) {
		if (!t->err)
			t->err = r == GW_ETOOBIG ? GW_ETOOBIG : GW_ETLS;
		return WOLFSSL_CBIO_ERR_GENERAL;
	}
	return sz;
}

gw_tls_t *gw_tls_new(gw_certs_t *certs, size_t max_out)
{
	gw_tls_t *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->ssl = wolfSSL_new(gw_certs_ctx(certs));
	if (!t->ssl) {
		free(t);
		return NULL;
	}
	t->certs = gw_certs_ref(certs);
	gw_buf_init(&t->in, GW_TLS_MAX_IN);
	gw_buf_init(&t->out, max_out);
	t->alpn = "";
	t->version = "";
	wolfSSL_SSLSetIORecv(t->ssl, on_recv);
	wolfSSL_SSLSetIOSend(t->ssl, on_send);
	wolfSSL_SetIOReadCtx(t->ssl, t);
	wolfSSL_SetIOWriteCtx(t->ssl, t);
	return t;
}

void gw_tls_free(gw_tls_t *t)
{
	if (!t)
		return;
	wolfSSL_free(t->ssl);
	gw_certs_unref(t->certs);
	gw_buf_deinit(&t->in);
	gw_buf_deinit(&t->out);
	free(t);
}

int gw_tls_feed(gw_tls_t *t, const uint8_t *data, size_t len)
{
	if (len == 0)
		return 0;
	/* New input usually means the caller flushed what we produced last
	 * time: give back output storage now rather than hold it while idle. */
	gw_buf_shrink(&t->out);
	return gw_buf_append(&t->in, data, len);
}

void gw_tls_shrink(gw_tls_t *t)
{
	gw_buf_shrink(&t->in);
	gw_buf_shrink(&t->out);
}

/* Translates a wolfSSL failure at the boundary (STYLE.md: errors). */
static int fail(gw_tls_t *t, int ret)
{
	int e = wolfSSL_get_error(t->ssl, ret);
	if (e == WOLFSSL_ERROR_WANT_READ && !t->err) {
		if (gw_buf_size(&t->in) == 0)
			gw_buf_shrink(&t->in);
		return 0;
	}
	if (e == WOLFSSL_ERROR_ZERO_RETURN && !t->err) {
		/* RFC 8446 6.1: close_notify; no more data from the peer. */
		t->err = GW_ECLOSED;
		return GW_ECLOSED;
	}
	if (!t->err)
		t->err = GW_ETLS;
	if (!t->logged && gw_log_level() >= GW_LOG_DEBUG) {
		char reason[WOLFSSL_MAX_ERROR_SZ], code[16];
		wolfSSL_ERR_error_string_n((unsigned long)e, reason, sizeof(reason));
		snprintf(code, sizeof(code), "%d", e);
		gw_log(GW_LOG_DEBUG, "tls",
		       t->hs_done ? "connection failed" : "handshake failed",
		       "error", reason, "code", code, NULL);
	}
	t->logged = true;
	return t->err;
}

static void handshake_done(gw_tls_t *t)
{
	char *name = NULL;
	unsigned short len = 0;

	t->hs_done = true;
	t->resumed = wolfSSL_session_reused(t->ssl) != 0;
	t->version = wolfSSL_get_version(t->ssl);
	if (!t->version)
		t->version = "";
	/* Point at our own copy of the protocol name: it outlives the ssl's. */
	if (wolfSSL_ALPN_GetProtocol(t->ssl, &name, &len) == WOLFSSL_SUCCESS) {
		for (const char *const *p = gw_certs_alpn(t->certs); *p; p++) {
			if (strlen(*p) == len && memcmp(*p, name, len) == 0) {
				t->alpn = *p;
				break;
			}
		}
	}
}

ssize_t gw_tls_read(gw_tls_t *t, uint8_t *out, size_t cap)
{
	int r;

	if (t->err)
		return t->err;
	if (cap == 0)
		return GW_EINVAL;
	if (!t->hs_done) {
		r = wolfSSL_accept(t->ssl);
		if (r != WOLFSSL_SUCCESS)
			return fail(t, r);
		handshake_done(t);
	}
#ifdef HAVE_SECURE_RENEGOTIATION
	size_t out_len = t->out.len;
#endif
	r = wolfSSL_read(t->ssl, out, cap > INT_MAX ? INT_MAX : (int)cap);
#ifdef HAVE_SECURE_RENEGOTIATION
	/* Built with renegotiation support: refuse a client-initiated
	 * renegotiation (CVE-2011-1473 CPU DoS; RFC 8310 profile has no use
	 * for it) and drop whatever wolfSSL queued in answer to it. */
	if (!wolfSSL_is_init_finished(t->ssl)) {
		if (t->out.len > out_len)
			t->out.len = out_len;
		t->err = GW_ETLS;
		gw_log(GW_LOG_DEBUG, "tls", "renegotiation refused", NULL);
		return GW_ETLS;
	}
#endif
	if (r > 0)
		return r;
	return fail(t, r);
}

int gw_tls_write(gw_tls_t *t, const uint8_t *data, size_t len)
{
	if (t->err)
		return t->err == GW_ETOOBIG ? GW_ETLS : t->err;
	if (!t->hs_done)
		return GW_EINVAL;
	if (len == 0)
		return 0;
	if (len > INT_MAX / 2)
		return GW_ETOOBIG;
	/* All or nothing: refuse up front what might not fit, so that a
	 * failed write never leaves half a message in the stream. */
	int frag = wolfSSL_GetMaxOutputSize(t->ssl);
	if (frag <= 0)
		frag = 16384; /* RFC 8446 5.1 */
	size_t records = (len + (size_t)frag - 1) / (size_t)frag;
	size_t need = len + records * TLS_RECORD_OVERHEAD;
	if (need > t->out.max || gw_buf_size(&t->out) > t->out.max - need)
		return GW_ETOOBIG;
	int r = wolfSSL_write(t->ssl, data, (int)len);
	if (r == (int)len)
		return 0;
	/* Cannot happen with our on_send short of OOM; the stream is now
	 * unusable either way. */
	fail(t, r);
	t->err = GW_ETLS;
	return GW_ETLS;
}

gw_buf_t *gw_tls_out(gw_tls_t *t)
{
	return &t->out;
}

bool gw_tls_handshake_done(const gw_tls_t *t)
{
	return t->hs_done;
}

const char *gw_tls_alpn(const gw_tls_t *t)
{
	return t->alpn;
}

const char *gw_tls_version(const gw_tls_t *t)
{
	return t->version;
}

bool gw_tls_resumed(const gw_tls_t *t)
{
	return t->resumed;
}

void gw_tls_close(gw_tls_t *t)
{
	if (t->closed || (t->err && t->err != GW_ECLOSED) || !t->hs_done)
		return;
	t->closed = true;
	/* Returns "not done" since we do not wait for the peer's reply. */
	(void)wolfSSL_shutdown(t->ssl);
}

/*
 * tls_client.c - wolfSSL client over memory I/O callbacks, for TLS upstreams.
 * See tls_client.h.
 */
#include "tls_client.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <ngtcp2/ngtcp2_crypto_wolfssl.h>

#include "gateway/error.h"

#define MAX_IN (64 * 1024)
#define RECORD_OVERHEAD 128

struct gw_up_tls_ctx {
	WOLFSSL_CTX *ctx;
};

struct gw_up_tls {
	WOLFSSL *ssl;
	gw_buf_t in, out;
	int err; /* sticky GW_ETLS / GW_ECLOSED / GW_ETOOBIG */
	bool hs_done, resumed, closed;
	char pin[64];
	char alpn[16]; /* required ALPN protocol, "" = none offered */
	char why[128];
};

static gw_up_tls_ctx_t *ctx_new(const char *ca_file, bool need_ca, bool quic,
				char *err, size_t errlen)
{
	gw_up_tls_ctx_t *x = calloc(1, sizeof(*x));
	const char *ca = ca_file && *ca_file ? ca_file : GW_UP_DEFAULT_CA_FILE;

	if (!x) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* QUIC carries TLS 1.3 only (RFC 9001 4.2). */
	x->ctx = wolfSSL_CTX_new(quic ? wolfTLSv1_3_client_method()
				      : wolfTLS_client_method());
	if (x->ctx && quic &&
	    ngtcp2_crypto_wolfssl_configure_client_context(x->ctx) != 0) {
		wolfSSL_CTX_free(x->ctx);
		x->ctx = NULL;
	}
	if (!x->ctx) {
		snprintf(err, errlen, "cannot create a TLS client context");
		free(x);
		return NULL;
	}
	/* RFC 8310 5 / RFC 7525: TLS 1.2 at least, 1.3 preferred. */
	if (!quic)
		wolfSSL_CTX_SetMinVersion(x->ctx, WOLFSSL_TLSV1_2);
	wolfSSL_CTX_set_verify(x->ctx, WOLFSSL_VERIFY_PEER, NULL);
	if (wolfSSL_CTX_load_verify_locations(x->ctx, ca, NULL) !=
	    WOLFSSL_SUCCESS && need_ca) {
		snprintf(err, errlen, "%s: cannot load CA certificates", ca);
		wolfSSL_CTX_free(x->ctx);
		free(x);
		return NULL;
	}
	return x;
}

gw_up_tls_ctx_t *gw_up_tls_ctx_new(const char *ca_file, bool need_ca,
				   char *err, size_t errlen)
{
	return ctx_new(ca_file, need_ca, false, err, errlen);
}

gw_up_tls_ctx_t *gw_up_tls_ctx_new_quic(const char *ca_file, bool need_ca,
					char *err, size_t errlen)
{
	return ctx_new(ca_file, need_ca, true, err, errlen);
}

void gw_up_tls_ctx_free(gw_up_tls_ctx_t *x)
{
	if (!x)
		return;
	wolfSSL_CTX_free(x->ctx);
	free(x);
}

static int on_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	gw_up_tls_t *t = ctx;
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

static int on_send(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	gw_up_tls_t *t = ctx;
	int r = gw_buf_append(&t->out, buf, (size_t)sz);

	(void)ssl;
	if (r < 0) {
		if (!t->err)
			t->err = r == GW_ETOOBIG ? GW_ETOOBIG : GW_ETLS;
		return WOLFSSL_CBIO_ERR_GENERAL;
	}
	return sz;
}

static bool is_ip(const char *s)
{
	struct in6_addr a;

	return inet_pton(AF_INET, s, &a) == 1 || inet_pton(AF_INET6, s, &a) == 1;
}

gw_up_tls_t *gw_up_tls_new(gw_up_tls_ctx_t *x, const char *name,
			   const char *pin, gw_up_tls_session_t *resume,
			   size_t max_out)
{
	gw_up_tls_t *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->ssl = wolfSSL_new(x->ctx);
	if (!t->ssl) {
		free(t);
		return NULL;
	}
	gw_buf_init(&t->in, MAX_IN);
	gw_buf_init(&t->out, max_out);
	wolfSSL_SSLSetIORecv(t->ssl, on_recv);
	wolfSSL_SSLSetIOSend(t->ssl, on_send);
	wolfSSL_SetIOReadCtx(t->ssl, t);
	wolfSSL_SetIOWriteCtx(t->ssl, t);
	if (pin && *pin) {
		/* The pin is the trust anchor: checked after the handshake,
		 * before any query is written (gw_up_tls_read). */
		snprintf(t->pin, sizeof(t->pin), "%s", pin);
		wolfSSL_set_verify(t->ssl, WOLFSSL_VERIFY_NONE, NULL);
	} else if (!name || !*name ||
		   wolfSSL_check_domain_name(t->ssl, name) != WOLFSSL_SUCCESS) {
		gw_up_tls_free(t);
		return NULL;
	}
	/* RFC 6066 3: SNI carries host names only, never literal addresses. */
	if (name && *name && !is_ip(name))
		(void)wolfSSL_UseSNI(t->ssl, WOLFSSL_SNI_HOST_NAME, name,
				     (unsigned short)strlen(name));
	(void)wolfSSL_UseSessionTicket(t->ssl);
	if (resume)
		(void)wolfSSL_set_session(t->ssl, (WOLFSSL_SESSION *)resume);
	return t;
}

void gw_up_tls_free(gw_up_tls_t *t)
{
	if (!t)
		return;
	wolfSSL_free(t->ssl);
	gw_buf_deinit(&t->in);
	gw_buf_deinit(&t->out);
	free(t);
}

int gw_up_tls_feed(gw_up_tls_t *t, const uint8_t *data, size_t len)
{
	if (len == 0)
		return 0;
	return gw_buf_append(&t->in, data, len);
}

static void set_why(gw_up_tls_t *t, int e)
{
	const char *s = NULL;

	if (t->why[0])
		return;
	switch (e) {
	case 10: /* X509_V_ERR_CERT_HAS_EXPIRED, as the verify result */
		s = "certificate expired";
		break;
	case 9: /* X509_V_ERR_CERT_NOT_YET_VALID */
		s = "certificate not yet valid";
		break;
	case 62: /* X509_V_ERR_HOSTNAME_MISMATCH */
		s = "certificate name mismatch";
		break;
	case 2:  /* X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT */
	case 18: /* X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT */
	case 19: /* X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN */
	case 20: /* X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY */
	case 21: /* X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE */
		s = "certificate not signed by a trusted CA";
		break;
	case DOMAIN_NAME_MISMATCH:
		s = "certificate name mismatch";
		break;
	case ASN_AFTER_DATE_E:
		s = "certificate expired";
		break;
	case ASN_BEFORE_DATE_E:
		s = "certificate not yet valid";
		break;
	case ASN_NO_SIGNER_E:
		s = "certificate not signed by a trusted CA";
		break;
	case ASN_SIG_CONFIRM_E:
		s = "certificate signature invalid";
		break;
	default:
		break;
	}
	if (s) {
		snprintf(t->why, sizeof(t->why), "%s", s);
	} else {
		char reason[WOLFSSL_MAX_ERROR_SZ];
		wolfSSL_ERR_error_string_n((unsigned long)e, reason,
					   sizeof(reason));
		snprintf(t->why, sizeof(t->why), "%s (%d)", reason, e);
	}
}

static int fail(gw_up_tls_t *t, int ret)
{
	int e = wolfSSL_get_error(t->ssl, ret);

	if (e == WOLFSSL_ERROR_WANT_READ && !t->err) {
		if (gw_buf_size(&t->in) == 0)
			gw_buf_shrink(&t->in);
		return 0;
	}
	if (e == WOLFSSL_ERROR_ZERO_RETURN && !t->err) {
		t->err = GW_ECLOSED;
		return GW_ECLOSED;
	}
	if (!t->hs_done) {
		/* The verification error is kept apart from the alert. */
		long v = wolfSSL_get_verify_result(t->ssl);
		set_why(t, v != 0 ? (int)v : e);
	}
	if (!t->err)
		t->err = GW_ETLS;
	return t->err;
}

/* One DER TLV at *p (< end): its tag, and the content in [*c, *c + *n).
 * Advances *p past it. 0 or -1 (malformed). */
static int der_next(const uint8_t **p, const uint8_t *end, int *tag,
		    const uint8_t **c, size_t *n)
{
	const uint8_t *q = *p;
	size_t len;

	if (end - q < 2)
		return -1;
	*tag = *q++;
	len = *q++;
	if (len & 0x80) {
		int k = (int)(len & 0x7f);
		if (k == 0 || k > 3 || end - q < k)
			return -1;
		len = 0;
		while (k--)
			len = (len << 8) | *q++;
	}
	if ((size_t)(end - q) < len)
		return -1;
	*c = q;
	*n = len;
	*p = q + len;
	return 0;
}

/* The SubjectPublicKeyInfo TLV of a DER certificate (RFC 5280 4.1). */
static int der_spki(const uint8_t *der, size_t len, const uint8_t **spki,
		    size_t *spki_len)
{
	const uint8_t *p = der, *end = der + len, *c, *start;
	size_t n;
	int tag;

	if (der_next(&p, end, &tag, &c, &n) < 0 || tag != 0x30)
		return -1; /* Certificate */
	p = c;
	end = c + n;
	if (der_next(&p, end, &tag, &c, &n) < 0 || tag != 0x30)
		return -1; /* tbsCertificate */
	p = c;
	end = c + n;
	/* [0] version (optional), serial, signature, issuer, validity,
	 * subject, then subjectPublicKeyInfo */
	for (int field = 0; field < 7; field++) {
		start = p;
		if (der_next(&p, end, &tag, &c, &n) < 0)
			return -1;
		if (field == 0 && tag != 0xa0)
			field++; /* no version: that was the serial */
		if (field == 6) {
			if (tag != 0x30)
				return -1;
			*spki = start;
			*spki_len = (size_t)(p - start);
			return 0;
		}
	}
	return -1;
}

static int pin_of(WOLFSSL_X509 *x, char *out, size_t cap)
{
	const unsigned char *der;
	const uint8_t *spki;
	size_t spki_len;
	uint8_t hash[WC_SHA256_DIGEST_SIZE];
	word32 olen = (word32)cap;
	int len = 0;

	der = wolfSSL_X509_get_der(x, &len);
	if (!der || len <= 0 || der_spki(der, (size_t)len, &spki, &spki_len) < 0)
		return GW_ETLS;
	if (wc_Sha256Hash(spki, (word32)spki_len, hash) != 0 || cap == 0 ||
	    Base64_Encode_NoNl(hash, sizeof(hash), (byte *)out, &olen) != 0 ||
	    olen >= cap)
		return GW_ETLS;
	out[olen] = '\0';
	return 0;
}

int gw_up_tls_spki_pin(const uint8_t *der, size_t len, char *out, size_t cap)
{
	WOLFSSL_X509 *x;
	int r;

	if (len > INT_MAX)
		return GW_EINVAL;
	x = wolfSSL_X509_load_certificate_buffer(der, (int)len,
						 WOLFSSL_FILETYPE_ASN1);
	if (!x)
		return GW_EINVAL;
	r = pin_of(x, out, cap);
	wolfSSL_X509_free(x);
	return r;
}

static int check_pin(gw_up_tls_t *t)
{
	char got[64];
	WOLFSSL_X509 *x;
	int r;

	/* A resumed session was made by a connection whose pin was checked
	 * (only sessions of verified connections are kept), and only the
	 * server holding the ticket's key can resume it (RFC 8446 2.2): the
	 * server is the pinned one. No certificate is sent on resumption, and
	 * wolfSSL is built not to keep a copy of the chain in each session
	 * (deps.sh: MAX_X509_SIZE), so there is none to pin anyway. */
	if (!t->pin[0] || wolfSSL_session_reused(t->ssl))
		return 0;
	x = wolfSSL_get_peer_certificate(t->ssl);
	r = x ? pin_of(x, got, sizeof(got)) : GW_ETLS;
	wolfSSL_X509_free(x);
	if (r < 0) {
		snprintf(t->why, sizeof(t->why), "no usable peer certificate");
		return GW_ETLS;
	}
	if (strcmp(got, t->pin) != 0) {
		snprintf(t->why, sizeof(t->why), "SPKI pin mismatch");
		return GW_ETLS;
	}
	return 0;
}

/* The negotiated ALPN protocol is want, or GW_ETLS. */
static int alpn_matches(WOLFSSL *ssl, const char *want)
{
	char *got = NULL;
	unsigned short n = 0;

	if (!want || !*want)
		return 0;
	if (wolfSSL_ALPN_GetProtocol(ssl, &got, &n) != WOLFSSL_SUCCESS ||
	    !got || n != strlen(want) || memcmp(got, want, n) != 0)
		return GW_ETLS;
	return 0;
}

static int check_alpn(gw_up_tls_t *t)
{
	if (alpn_matches(t->ssl, t->alpn) < 0) {
		snprintf(t->why, sizeof(t->why), "ALPN %s not agreed",
			 t->alpn);
		return GW_ETLS;
	}
	return 0;
}

int gw_up_tls_set_alpn(gw_up_tls_t *t, const char *proto)
{
	char list[sizeof(t->alpn)];

	if (!proto || !*proto || strlen(proto) >= sizeof(t->alpn) ||
	    t->hs_done)
		return GW_EINVAL;
	snprintf(t->alpn, sizeof(t->alpn), "%s", proto);
	snprintf(list, sizeof(list), "%s", proto);
	if (wolfSSL_UseALPN(t->ssl, list, (unsigned)strlen(list),
			    WOLFSSL_ALPN_FAILED_ON_MISMATCH) != WOLFSSL_SUCCESS)
		return GW_ETLS;
	return 0;
}

ssize_t gw_up_tls_read(gw_up_tls_t *t, uint8_t *out, size_t cap)
{
	int r;

	if (t->err)
		return t->err;
	if (cap == 0)
		return GW_EINVAL;
	if (!t->hs_done) {
		r = wolfSSL_connect(t->ssl);
		if (r != WOLFSSL_SUCCESS)
			return fail(t, r);
		if (check_pin(t) < 0 || check_alpn(t) < 0) {
			t->err = GW_ETLS;
			return GW_ETLS;
		}
		t->hs_done = true;
		t->resumed = wolfSSL_session_reused(t->ssl) != 0;
	}
	r = wolfSSL_read(t->ssl, out, cap > INT_MAX ? INT_MAX : (int)cap);
	if (r > 0)
		return r;
	return fail(t, r);
}

int gw_up_tls_write(gw_up_tls_t *t, const uint8_t *data, size_t len)
{
	int frag;
	size_t need;

	if (t->err)
		return t->err == GW_ETOOBIG ? GW_ETLS : t->err;
	if (!t->hs_done)
		return GW_EINVAL;
	if (len == 0)
		return 0;
	if (len > INT_MAX / 2)
		return GW_ETOOBIG;
	frag = wolfSSL_GetMaxOutputSize(t->ssl);
	if (frag <= 0)
		frag = 16384;
	need = len + (len + (size_t)frag - 1) / (size_t)frag * RECORD_OVERHEAD;
	if (need > t->out.max || gw_buf_size(&t->out) > t->out.max - need)
		return GW_ETOOBIG;
	if (wolfSSL_write(t->ssl, data, (int)len) == (int)len)
		return 0;
	t->err = GW_ETLS;
	return GW_ETLS;
}

gw_buf_t *gw_up_tls_out(gw_up_tls_t *t)
{
	return &t->out;
}

bool gw_up_tls_handshake_done(const gw_up_tls_t *t)
{
	return t->hs_done;
}

bool gw_up_tls_resumed(const gw_up_tls_t *t)
{
	return t->resumed;
}

const char *gw_up_tls_error(const gw_up_tls_t *t)
{
	return t->why;
}

void gw_up_tls_close(gw_up_tls_t *t)
{
	if (t->closed || (t->err && t->err != GW_ECLOSED) || !t->hs_done)
		return;
	t->closed = true;
	(void)wolfSSL_shutdown(t->ssl);
}

gw_up_tls_session_t *gw_up_tls_session(gw_up_tls_t *t)
{
	if (!t->hs_done || t->err)
		return NULL;
	return (gw_up_tls_session_t *)wolfSSL_get1_session(t->ssl);
}

void gw_up_tls_session_free(gw_up_tls_session_t *s)
{
	if (s)
		wolfSSL_SESSION_free((WOLFSSL_SESSION *)s);
}

/* --- QUIC (ngtcp2 drives the handshake) --------------------------------- */

/* The certificate verdict of the last failed QUIC handshake in this thread:
 * ngtcp2 reports only the alert, and the handshake runs synchronously
 * inside the read that then reports the failure (gw_up_tls_quic_why). */
static _Thread_local void *vf_ssl;
static _Thread_local int vf_err;

static int quic_verify_cb(int ok, WOLFSSL_X509_STORE_CTX *store)
{
	if (!ok) {
		vf_ssl = wolfSSL_X509_STORE_CTX_get_ex_data(
			store, wolfSSL_get_ex_data_X509_STORE_CTX_idx());
		vf_err = wolfSSL_X509_STORE_CTX_get_error(store);
	}
	return ok;
}

void *gw_up_tls_quic_new(gw_up_tls_ctx_t *x, const char *name,
			 const char *pin, const char *alpn,
			 gw_up_tls_session_t *resume)
{
	WOLFSSL *ssl = wolfSSL_new(x->ctx);
	uint8_t wire[16];
	size_t n = alpn ? strlen(alpn) : 0;

	if (!ssl)
		return NULL;
	if (pin && *pin) {
		wolfSSL_set_verify(ssl, WOLFSSL_VERIFY_NONE, NULL);
	} else if (!name || !*name ||
		   wolfSSL_check_domain_name(ssl, name) != WOLFSSL_SUCCESS) {
		wolfSSL_free(ssl);
		return NULL;
	} else {
		wolfSSL_set_verify(ssl, WOLFSSL_VERIFY_PEER, quic_verify_cb);
	}
	if (name && *name && !is_ip(name))
		(void)wolfSSL_UseSNI(ssl, WOLFSSL_SNI_HOST_NAME, name,
				     (unsigned short)strlen(name));
	if (n == 0 || n >= sizeof(wire)) {
		wolfSSL_free(ssl);
		return NULL;
	}
	/* RFC 7301 3.1: length-prefixed protocol names. */
	wire[0] = (uint8_t)n;
	memcpy(wire + 1, alpn, n);
	if (wolfSSL_set_alpn_protos(ssl, wire, (unsigned)n + 1) != 0) {
		wolfSSL_free(ssl);
		return NULL;
	}
	if (resume)
		(void)wolfSSL_set_session(ssl, (WOLFSSL_SESSION *)resume);
	wolfSSL_set_connect_state(ssl);
	return ssl;
}

int gw_up_tls_quic_check(void *ssl, const char *pin, const char *alpn,
			 char *why, size_t cap)
{
	gw_up_tls_t t;
	int r;

	/* Borrow the pin check of the TCP path on a stack shell. */
	memset(&t, 0, sizeof(t));
	t.ssl = ssl;
	snprintf(t.pin, sizeof(t.pin), "%s", pin ? pin : "");
	snprintf(t.alpn, sizeof(t.alpn), "%s", alpn ? alpn : "");
	r = check_pin(&t);
	if (r == 0)
		r = check_alpn(&t);
	if (r < 0)
		snprintf(why, cap, "%s", t.why);
	return r;
}

void gw_up_tls_quic_why(void *ssl, char *why, size_t cap)
{
	gw_up_tls_t t;
	long v = wolfSSL_get_verify_result(ssl);

	memset(&t, 0, sizeof(t));
	t.ssl = ssl;
	if (v == 0 && vf_ssl == ssl && vf_err != 0)
		v = vf_err;
	vf_ssl = NULL;
	set_why(&t, (int)v);
	if (v == 0) {
		/* No chain verdict: the alert ngtcp2 reported says more. */
		snprintf(why, cap, "handshake failed");
		return;
	}
	snprintf(why, cap, "%s", t.why);
}

bool gw_up_tls_quic_resumed(void *ssl)
{
	return wolfSSL_session_reused(ssl) != 0;
}

gw_up_tls_session_t *gw_up_tls_quic_session(void *ssl)
{
	return (gw_up_tls_session_t *)wolfSSL_get1_session(ssl);
}

void gw_up_tls_quic_free(void *ssl)
{
	if (ssl)
		wolfSSL_free(ssl);
}

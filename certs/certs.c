/*
 * certs.c - certificate store: PEM loading, validation, self-signed
 * generation and the server WOLFSSL_CTX policy. See docs/tls.md.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* timegm */
#endif

#include "certs/certs.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_wolfssl.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "gateway/error.h"

#if !defined(WOLFSSL_CERT_GEN) || !defined(WOLFSSL_ALT_NAMES) || !defined(HAVE_ECC)
#error "wolfSSL needs --enable-certgen, alt names and ECC (./deps.sh builds it so)"
#endif
#ifndef HAVE_ALPN
#error "wolfSSL needs ALPN (--enable-alpn)"
#endif

#define CERTS_MAX_FILE (1024 * 1024) /* a PEM chain or key larger than this is not one */
#define CERTS_MAX_ALPN 8
#define CERTS_PIN_LEN 45 /* base64 of 32 bytes, with NUL */

struct gw_certs {
	int refs; /* atomic */
	int quic; /* gw_certs_enable_quic() done */
	WOLFSSL_CTX *ctx;
	time_t not_before;
	time_t not_after;
	char pin[CERTS_PIN_LEN];
	/* ALPN list: NULL-terminated pointers into alpn_store. */
	const char *alpn[CERTS_MAX_ALPN + 1];
	char alpn_store[CERTS_MAX_ALPN * 256];
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void do_init(void)
{
	wolfSSL_Init();
}

void gw_certs_global_init(void)
{
	pthread_once(&init_once, do_init);
}

void gw_certs_thread_cleanup(void)
{
#ifdef FP_ECC
	wc_ecc_fp_free();
#endif
}

/* ---- small DER reader: just enough to find validity and SPKI ---- */

struct der {
	const uint8_t *p;
	const uint8_t *end;
};

/* Reads one TLV; on success val and vlen describe the value and d advances
 * past it. Definite lengths up to 4 bytes only (DER). */
static int der_next(struct der *d, uint8_t *tag, const uint8_t **val,
		    size_t *vlen, const uint8_t **whole, size_t *wlen)
{
	const uint8_t *p = d->p;
	if (d->end - p < 2)
		return -1;
	const uint8_t *start = p;
	*tag = *p++;
	size_t len = *p++;
	if (len & 0x80) {
		size_t n = len & 0x7f;
		if (n == 0 || n > 4 || (size_t)(d->end - p) < n)
			return -1;
		len = 0;
		while (n--)
			len = (len << 8) | *p++;
	}
	if ((size_t)(d->end - p) < len)
		return -1;
	*val = p;
	*vlen = len;
	if (whole) {
		*whole = start;
		*wlen = (size_t)(p + len - start);
	}
	d->p = p + len;
	return 0;
}

static int two_digits(const uint8_t *s)
{
	if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
		return -1;
	return (s[0] - '0') * 10 + (s[1] - '0');
}

/* UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ (RFC 5280
 * 4.1.2.5 mandates these exact forms). */
static int der_time(uint8_t tag, const uint8_t *v, size_t len, time_t *out)
{
	struct tm tm = { 0 };
	int year;
	if (tag == 0x17 && len == 13 && v[12] == 'Z') {
		year = two_digits(v);
		if (year < 0)
			return -1;
		year += year < 50 ? 2000 : 1900; /* RFC 5280 4.1.2.5.1 */
		v += 2;
	} else if (tag == 0x18 && len == 15 && v[14] == 'Z') {
		int hi = two_digits(v), lo = two_digits(v + 2);
		if (hi < 0 || lo < 0)
			return -1;
		year = hi * 100 + lo;
		v += 4;
	} else {
		return -1;
	}
	int f[5];
	for (int i = 0; i < 5; i++) {
		f[i] = two_digits(v + 2 * i);
		if (f[i] < 0)
			return -1;
	}
	tm.tm_year = year - 1900;
	tm.tm_mon = f[0] - 1;
	tm.tm_mday = f[1];
	tm.tm_hour = f[2];
	tm.tm_min = f[3];
	tm.tm_sec = f[4];
	*out = timegm(&tm);
	return 0;
}

/* Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
 * serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo,
 * ... } ... }  (RFC 5280 4.1) */
static int parse_leaf(const uint8_t *der, size_t len, time_t *nb, time_t *na,
		      const uint8_t **spki, size_t *spki_len)
{
	struct der d = { der, der + len }, tbs, val;
	uint8_t tag;
	const uint8_t *v, *w;
	size_t vl, wl;

	if (der_next(&d, &tag, &v, &vl, NULL, NULL) < 0 || tag != 0x30)
		return -1;
	d = (struct der){ v, v + vl };
	if (der_next(&d, &tag, &v, &vl, NULL, NULL) < 0 || tag != 0x30)
		return -1;
	tbs = (struct der){ v, v + vl };
	if (der_next(&tbs, &tag, &v, &vl, NULL, NULL) < 0)
		return -1;
	if (tag == 0xa0 && der_next(&tbs, &tag, &v, &vl, NULL, NULL) < 0)
		return -1; /* version was present; that was the serial */
	/* signature, issuer */
	for (int i = 0; i < 2; i++)
		if (der_next(&tbs, &tag, &v, &vl, NULL, NULL) < 0)
			return -1;
	if (der_next(&tbs, &tag, &v, &vl, NULL, NULL) < 0 || tag != 0x30)
		return -1;
	val = (struct der){ v, v + vl };
	if (der_next(&val, &tag, &v, &vl, NULL, NULL) < 0 ||
	    der_time(tag, v, vl, nb) < 0)
		return -1;
	if (der_next(&val, &tag, &v, &vl, NULL, NULL) < 0 ||
	    der_time(tag, v, vl, na) < 0)
		return -1;
	if (der_next(&tbs, &tag, &v, &vl, NULL, NULL) < 0) /* subject */
		return -1;
	if (der_next(&tbs, &tag, &v, &vl, &w, &wl) < 0 || tag != 0x30)
		return -1;
	*spki = w;
	*spki_len = wl;
	return 0;
}

static void base64(const uint8_t *in, size_t n, char *out)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;
	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		*out++ = tab[v >> 18];
		*out++ = tab[(v >> 12) & 63];
		*out++ = tab[(v >> 6) & 63];
		*out++ = tab[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		*out++ = tab[v >> 18];
		*out++ = tab[(v >> 12) & 63];
		*out++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		*out++ = '=';
	}
	*out = '\0';
}

static void fmt_time(time_t t, char *buf, size_t len)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* ---- context policy ---- */

/* RFC 7301 3.2: the server picks; we pick by our own preference order (the
 * list order), not the client's. No overlap with a client that did offer
 * ALPN is a fatal no_application_protocol alert. A client sending no ALPN
 * never reaches this callback. */
static int on_alpn_select(WOLFSSL *ssl, const unsigned char **out,
			  unsigned char *outlen, const unsigned char *in,
			  unsigned int inlen, void *arg)
{
	const gw_certs_t *c = arg;
	(void)ssl;
	for (const char *const *p = c->alpn; *p; p++) {
		size_t plen = strlen(*p);
		for (unsigned int i = 0; i < inlen;) {
			unsigned int l = in[i++];
			if (l > inlen - i)
				break;
			if (l == plen && memcmp(in + i, *p, l) == 0) {
				*out = in + i;
				*outlen = (unsigned char)l;
				return SSL_TLSEXT_ERR_OK;
			}
			i += l;
		}
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int copy_alpn(gw_certs_t *c, const char *const *alpn, char *err,
		     size_t errlen)
{
	size_t off = 0, n = 0;
	for (; alpn && alpn[n]; n++) {
		size_t l = strlen(alpn[n]);
		if (n == CERTS_MAX_ALPN || l == 0 || l > 255) {
			snprintf(err, errlen, "invalid ALPN list");
			return GW_EINVAL;
		}
		memcpy(c->alpn_store + off, alpn[n], l + 1);
		c->alpn[n] = c->alpn_store + off;
		off += l + 1;
	}
	c->alpn[n] = NULL;
	return 0;
}

static gw_certs_t *certs_new(const char *const *alpn, char *err, size_t errlen)
{
	gw_certs_global_init();
	gw_certs_t *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->refs = 1;
	if (copy_alpn(c, alpn, err, errlen) < 0)
		goto fail;
	/* The flexible method negotiates the highest version both sides have;
	 * the floor below makes that TLS 1.2 or 1.3 (RFC 8310 / REQUIREMENTS). */
	c->ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
	if (!c->ctx) {
		snprintf(err, errlen, "cannot create TLS context");
		goto fail;
	}
	if (wolfSSL_CTX_SetMinVersion(c->ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "cannot set TLS 1.2 minimum");
		goto fail;
	}
	wolfSSL_CTX_set_verify(c->ctx, WOLFSSL_VERIFY_NONE, NULL);
#ifdef WOLFSSL_EARLY_DATA
	/* No 0-RTT: DNS queries are not idempotent enough to accept replays
	 * (RFC 8446 8, RFC 8310 has no 0-RTT profile). */
	wolfSSL_CTX_set_max_early_data(c->ctx, 0);
#endif
	/* Session tickets: wolfSSL's default ticket callback (on unless built
	 * with WOLFSSL_NO_DEF_TICKET_ENC_CB) encrypts with two random in-memory
	 * keys per context that rotate every WOLFSSL_TICKET_KEY_LIFETIME (1 h);
	 * the older one still decrypts. Nothing to configure. */
#if !defined(HAVE_SESSION_TICKET) || defined(WOLFSSL_NO_DEF_TICKET_ENC_CB)
#error "wolfSSL must provide session tickets with its default rotating key callback"
#endif
	/* Compression: wolfSSL only compresses when wolfSSL_set_compression()
	 * is called (and only with HAVE_LIBZ); we never call it.
	 * Renegotiation: see transports/tls.c (refused per connection). */
	if (c->alpn[0])
		wolfSSL_CTX_set_alpn_select_cb(c->ctx, on_alpn_select, c);
	return c;
fail:
	if (c->ctx)
		wolfSSL_CTX_free(c->ctx);
	free(c);
	return NULL;
}

/* Records dates and the SPKI pin from the leaf DER, and rejects a leaf
 * outside its validity period. name is the file named in errors. */
static int take_leaf(gw_certs_t *c, const uint8_t *der, size_t len,
		     const char *name, char *err, size_t errlen)
{
	const uint8_t *spki;
	size_t spki_len;
	uint8_t hash[WC_SHA256_DIGEST_SIZE];
	char when[40];

	if (parse_leaf(der, len, &c->not_before, &c->not_after, &spki,
		       &spki_len) < 0) {
		snprintf(err, errlen, "%s: cannot parse certificate", name);
		return GW_EINVAL;
	}
	time_t now = time(NULL);
	if (now > c->not_after) {
		fmt_time(c->not_after, when, sizeof(when));
		snprintf(err, errlen, "%s: certificate expired on %s", name, when);
		return GW_EINVAL;
	}
	if (now < c->not_before) {
		fmt_time(c->not_before, when, sizeof(when));
		snprintf(err, errlen, "%s: certificate not valid before %s", name,
			 when);
		return GW_EINVAL;
	}
	if (wc_Sha256Hash(spki, (word32)spki_len, hash) != 0) {
		snprintf(err, errlen, "%s: cannot hash public key", name);
		return GW_ETLS;
	}
	base64(hash, sizeof(hash), c->pin);
	return 0;
}

static int read_file(const char *path, uint8_t **out, size_t *len, char *err,
		     size_t errlen)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return GW_EINVAL;
	}
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > CERTS_MAX_FILE) {
		snprintf(err, errlen, "%s: not a regular file under 1 MiB", path);
		fclose(f);
		return GW_EINVAL;
	}
	uint8_t *buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		snprintf(err, errlen, "%s: out of memory", path);
		fclose(f);
		return GW_ENOMEM;
	}
	size_t n = fread(buf, 1, (size_t)st.st_size, f);
	int rerr = ferror(f);
	fclose(f);
	if (rerr) {
		snprintf(err, errlen, "%s: read error", path);
		free(buf);
		return GW_EINVAL;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

/* wolfSSL_CTX_check_private_key() does not notice a foreign P-256 key in
 * this build (its ECC pair check passes any valid key), so for EC keys we
 * derive the public key from the private scalar and compare the resulting
 * SubjectPublicKeyInfo with the leaf's. 1 match, 0 mismatch, -1 not an EC
 * key we can decode (then wolfSSL's own check decides). */
static int ecc_key_matches(const uint8_t *pem, size_t pem_len,
			   const uint8_t *spki, size_t spki_len)
{
	uint8_t der[1024], pub[256];
	word32 idx = 0;
	ecc_key key;
	int ret = -1;

	int der_len = wc_KeyPemToDer(pem, (int)pem_len, der, sizeof(der), NULL);
	if (der_len <= 0)
		return -1;
	if (wc_ecc_init(&key) != 0)
		goto out;
	if (wc_EccPrivateKeyDecode(der, &idx, &key, (word32)der_len) == 0 &&
	    wc_ecc_make_pub(&key, NULL) == 0) {
		int n = wc_EccPublicKeyToDer(&key, pub, sizeof(pub), 1);
		if (n > 0)
			ret = (size_t)n == spki_len && memcmp(pub, spki, spki_len) == 0;
	}
	wc_ecc_free(&key);
out:
	explicit_bzero(der, sizeof(der));
	return ret;
}

static void wipe_free(uint8_t *p, size_t n)
{
	if (p) {
		explicit_bzero(p, n);
		free(p);
	}
}

gw_certs_t *gw_certs_load(const char *cert_file, const char *key_file,
			  const char *const *alpn, char *err, size_t errlen)
{
	uint8_t *pem = NULL, *key = NULL, *der = NULL;
	size_t pem_len = 0, key_len = 0;
	gw_certs_t *c = NULL;

	if (read_file(cert_file, &pem, &pem_len, err, errlen) < 0)
		goto fail;
	if (read_file(key_file, &key, &key_len, err, errlen) < 0)
		goto fail;
	/* The leaf is the first certificate of the chain (RFC 8446 4.4.2). */
	der = malloc(pem_len + 1);
	if (!der) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	int der_len = wc_CertPemToDer(pem, (int)pem_len, der, (int)pem_len + 1,
				      CERT_TYPE);
	if (der_len <= 0) {
		snprintf(err, errlen, "%s: no certificate found", cert_file);
		goto fail;
	}
	c = certs_new(alpn, err, errlen);
	if (!c)
		goto fail;
	if (take_leaf(c, der, (size_t)der_len, cert_file, err, errlen) < 0)
		goto fail;
	if (wolfSSL_CTX_use_certificate_chain_buffer(c->ctx, pem, (long)pem_len) !=
	    WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "%s: cannot load certificate chain", cert_file);
		goto fail;
	}
	if (wolfSSL_CTX_use_PrivateKey_buffer(c->ctx, key, (long)key_len,
					      WOLFSSL_FILETYPE_PEM) !=
	    WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "%s: no private key found", key_file);
		goto fail;
	}
	const uint8_t *spki;
	size_t spki_len;
	time_t nb, na;
	(void)parse_leaf(der, (size_t)der_len, &nb, &na, &spki, &spki_len);
	if (ecc_key_matches(key, key_len, spki, spki_len) == 0 ||
	    wolfSSL_CTX_check_private_key(c->ctx) != WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "%s and %s: key does not match certificate",
			 cert_file, key_file);
		goto fail;
	}
	free(pem);
	free(der);
	wipe_free(key, key_len);
	return c;
fail:
	gw_certs_unref(c);
	free(pem);
	free(der);
	wipe_free(key, key_len);
	return NULL;
}

/* ---- self-signed generation ---- */

static int utc_time(time_t t, uint8_t *out, int *len)
{
	struct tm tm;
	char s[64];
	if (!gmtime_r(&t, &tm) || tm.tm_year < 50 || tm.tm_year >= 150)
		return GW_EINVAL; /* UTCTime covers 1950..2049 */
	/* RFC 5280 4.1.2.5.1: YYMMDDHHMMSSZ */
	snprintf(s, sizeof(s), "%02d%02d%02d%02d%02d%02dZ", tm.tm_year % 100,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	out[0] = 0x17; /* UTCTime */
	out[1] = 13;
	memcpy(out + 2, s, 13);
	*len = 15;
	return 0;
}

/* subjectAltName value (RFC 5280 4.2.1.6): SEQUENCE OF GeneralName with
 * dNSName [2] "localhost", iPAddress [7] 127.0.0.1 and ::1. */
static const uint8_t selfsigned_san[] = {
	0x30, 0x23,
	0x82, 0x09, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't',
	0x87, 0x04, 127, 0, 0, 1,
	0x87, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
};

/* Makes a self-signed P-256 certificate and key in DER. */
static int make_selfsigned(const char *cn, time_t nb, time_t na, uint8_t *cert_der,
			   int *cert_len, uint8_t *key_der, int *key_len)
{
	WC_RNG rng;
	ecc_key key;
	Cert *cert = NULL;
	int ret = GW_ETLS, r;

	if (wc_InitRng(&rng) != 0)
		return GW_ETLS;
	if (wc_ecc_init(&key) != 0) {
		wc_FreeRng(&rng);
		return GW_ETLS;
	}
	cert = calloc(1, sizeof(*cert)); /* ~10 KiB: keep it off the stack */
	if (!cert) {
		ret = GW_ENOMEM;
		goto out;
	}
	if (wc_ecc_make_key_ex(&rng, 32, &key, ECC_SECP256R1) != 0)
		goto out;
	if (wc_InitCert(cert) != 0)
		goto out;
	snprintf(cert->subject.commonName, CTC_NAME_SIZE, "%s", cn);
	cert->sigType = CTC_SHA256wECDSA;
	cert->isCA = 0;
	memcpy(cert->altNames, selfsigned_san, sizeof(selfsigned_san));
	cert->altNamesSz = (int)sizeof(selfsigned_san);
	if (utc_time(nb, cert->beforeDate, &cert->beforeDateSz) < 0 ||
	    utc_time(na, cert->afterDate, &cert->afterDateSz) < 0) {
		ret = GW_EINVAL;
		goto out;
	}
#ifdef WOLFSSL_CERT_EXT
	/* Some clients insist on serverAuth for a TLS server certificate. */
	if (wc_SetKeyUsage(cert, "digitalSignature") != 0 ||
	    wc_SetExtKeyUsage(cert, "serverAuth") != 0 ||
	    wc_SetSubjectKeyIdFromPublicKey_ex(cert, ECC_TYPE, &key) != 0)
		goto out;
#endif
	r = wc_MakeCert_ex(cert, cert_der, (word32)*cert_len, ECC_TYPE, &key, &rng);
	if (r < 0)
		goto out;
	r = wc_SignCert_ex(cert->bodySz, cert->sigType, cert_der,
			   (word32)*cert_len, ECC_TYPE, &key, &rng);
	if (r < 0)
		goto out;
	*cert_len = r;
	r = wc_EccPrivateKeyToDer(&key, key_der, (word32)*key_len);
	if (r < 0)
		goto out;
	*key_len = r;
	ret = 0;
out:
	free(cert);
	wc_ecc_free(&key);
	wc_FreeRng(&rng);
	return ret;
}

gw_certs_t *gw_certs_selfsigned(const char *const *alpn, char *err,
				size_t errlen)
{
	uint8_t cert_der[2048], key_der[256];
	int cert_len = sizeof(cert_der), key_len = sizeof(key_der);
	time_t now = time(NULL);

	gw_certs_global_init();
	if (make_selfsigned("dnsgw self-signed", now - 3600,
			    now - 3600 + 90 * 86400, cert_der, &cert_len, key_der,
			    &key_len) < 0) {
		snprintf(err, errlen, "cannot generate self-signed certificate");
		return NULL;
	}
	gw_certs_t *c = certs_new(alpn, err, errlen);
	if (!c)
		goto out;
	if (take_leaf(c, cert_der, (size_t)cert_len, "self-signed", err, errlen) < 0 ||
	    wolfSSL_CTX_use_certificate_buffer(c->ctx, cert_der, cert_len,
					       WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS ||
	    wolfSSL_CTX_use_PrivateKey_buffer(c->ctx, key_der, key_len,
					      WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS) {
		if (!err[0])
			snprintf(err, errlen, "cannot load self-signed certificate");
		gw_certs_unref(c);
		c = NULL;
	}
out:
	explicit_bzero(key_der, sizeof(key_der));
	return c;
}

int gw_certs_generate_pem(const char *cn, time_t not_before, time_t not_after,
			  char *cert_pem, size_t cert_cap, char *key_pem,
			  size_t key_cap)
{
	uint8_t cert_der[2048], key_der[256];
	int cert_len = sizeof(cert_der), key_len = sizeof(key_der);
	int r;

	gw_certs_global_init();
	r = make_selfsigned(cn, not_before, not_after, cert_der, &cert_len,
			    key_der, &key_len);
	if (r < 0)
		return r;
	r = wc_DerToPem(cert_der, (word32)cert_len, (byte *)cert_pem,
			(word32)cert_cap - 1, CERT_TYPE);
	if (r < 0)
		return GW_ENOSPC;
	cert_pem[r] = '\0';
	r = wc_DerToPem(key_der, (word32)key_len, (byte *)key_pem,
			(word32)key_cap - 1, ECC_PRIVATEKEY_TYPE);
	explicit_bzero(key_der, sizeof(key_der));
	if (r < 0)
		return GW_ENOSPC;
	key_pem[r] = '\0';
	return 0;
}

/* ---- accessors ---- */

gw_certs_t *gw_certs_ref(gw_certs_t *c)
{
	if (c)
		__atomic_fetch_add(&c->refs, 1, __ATOMIC_RELAXED);
	return c;
}

void gw_certs_unref(gw_certs_t *c)
{
	if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	/* The ctx holds the private key; wolfSSL zeroes key buffers on free. */
	wolfSSL_CTX_free(c->ctx);
	free(c);
}

WOLFSSL_CTX *gw_certs_ctx(const gw_certs_t *c)
{
	return c->ctx;
}

const char *gw_certs_spki_pin(const gw_certs_t *c)
{
	return c->pin;
}

time_t gw_certs_not_after(const gw_certs_t *c)
{
	return c->not_after;
}

time_t gw_certs_not_before(const gw_certs_t *c)
{
	return c->not_before;
}

const char *const *gw_certs_alpn(const gw_certs_t *c)
{
	return c->alpn;
}

int gw_certs_enable_quic(gw_certs_t *c, char *err, size_t errlen)
{
#ifndef WOLFSSL_QUIC
	snprintf(err, errlen, "wolfSSL was built without QUIC (./deps.sh)");
	return GW_ETLS;
#else
	if (c->quic)
		return 0;
	/* QUIC carries TLS 1.3 only (RFC 9001 4.2); wolfSSL refuses a QUIC
	 * method on a context that may downgrade. */
	if (wolfSSL_CTX_SetMinVersion(c->ctx, WOLFSSL_TLSV1_3) !=
		    WOLFSSL_SUCCESS ||
	    ngtcp2_crypto_wolfssl_configure_server_context(c->ctx) != 0) {
		snprintf(err, errlen, "cannot make a QUIC TLS context");
		return GW_ETLS;
	}
#ifdef WOLFSSL_EARLY_DATA
	/* 0-RTT stays off unless doq.early_data asks for it
	 * (gw_certs_quic_early_data(): replayable, REQUIREMENTS.md: off by
	 * default). */
	wolfSSL_CTX_set_max_early_data(c->ctx, 0);
#endif
	c->quic = 1;
	return 0;
#endif
}

int gw_certs_quic_early_data(gw_certs_t *c, char *err, size_t errlen)
{
#if !defined(WOLFSSL_QUIC) || !defined(WOLFSSL_EARLY_DATA)
	snprintf(err, errlen, "wolfSSL was built without QUIC early data");
	return GW_ETLS;
#else
	if (!c->quic) {
		snprintf(err, errlen, "0-RTT needs a QUIC context");
		return GW_EINVAL;
	}
	/* RFC 9001 4.6.1: a QUIC server's session tickets carry
	 * max_early_data_size 0xffffffff, never a smaller limit (QUIC flow
	 * control bounds 0-RTT instead). wolfSSL 5.7.2 returns
	 * WOLFSSL_SUCCESS (1) with its OpenSSL compatibility layer, else 0;
	 * errors are negative. */
	if (wolfSSL_CTX_set_max_early_data(c->ctx, UINT32_MAX) < 0) {
		snprintf(err, errlen, "cannot enable TLS early data");
		return GW_ETLS;
	}
	return 0;
#endif
}

int gw_certs_is_quic(const gw_certs_t *c)
{
	return c->quic;
}

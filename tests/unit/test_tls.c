/* TLS memory transformer: a gw_tls server against a wolfSSL client, both
 * over in-memory buffers. Covers the handshake policy (versions, ALPN,
 * tickets), record splitting, close_notify, garbage and the buffer caps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "certs/certs.h"
#include "gateway/error.h"
#include "transports/tls.h"

#define MAX_OUT (64 * 1024)
#define PLAIN_MAX (128 * 1024)

static const char *const dot_alpn[] = { "dot", NULL };
static gw_certs_t *dot_certs;

/* ---- a wolfSSL client over memory buffers ---- */

struct cli {
	WOLFSSL_CTX *ctx;
	WOLFSSL *ssl;
	gw_buf_t in, out;
	bool connected;
	int err; /* last wolfSSL_get_error other than WANT_READ */
	uint8_t *data;
	size_t len;
};

static int cli_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	struct cli *c = ctx;
	(void)ssl;
	size_t n = gw_buf_size(&c->in);
	if (n == 0)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	if (n > (size_t)sz)
		n = (size_t)sz;
	memcpy(buf, gw_buf_head(&c->in), n);
	gw_buf_consume(&c->in, n);
	return (int)n;
}

static int cli_send(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	struct cli *c = ctx;
	(void)ssl;
	assert_int_equal(gw_buf_append(&c->out, buf, (size_t)sz), 0);
	return sz;
}

/* method: a wolfSSL client method; alpn: comma list or NULL. */
static struct cli *cli_new(WOLFSSL_METHOD *method, const char *alpn)
{
	struct cli *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	c->data = malloc(PLAIN_MAX);
	assert_non_null(c->data);
	c->ctx = wolfSSL_CTX_new(method);
	assert_non_null(c->ctx);
	wolfSSL_CTX_set_verify(c->ctx, WOLFSSL_VERIFY_NONE, NULL);
	c->ssl = wolfSSL_new(c->ctx);
	assert_non_null(c->ssl);
	wolfSSL_SSLSetIORecv(c->ssl, cli_recv);
	wolfSSL_SSLSetIOSend(c->ssl, cli_send);
	wolfSSL_SetIOReadCtx(c->ssl, c);
	wolfSSL_SetIOWriteCtx(c->ssl, c);
	gw_buf_init(&c->in, 1 << 20);
	gw_buf_init(&c->out, 1 << 20);
	if (alpn) {
		char list[64];
		snprintf(list, sizeof(list), "%s", alpn);
		assert_int_equal(wolfSSL_UseALPN(c->ssl, list,
						 (unsigned)strlen(list),
						 WOLFSSL_ALPN_FAILED_ON_MISMATCH),
				 WOLFSSL_SUCCESS);
	}
	return c;
}

static void cli_free(struct cli *c)
{
	wolfSSL_free(c->ssl);
	wolfSSL_CTX_free(c->ctx);
	gw_buf_deinit(&c->in);
	gw_buf_deinit(&c->out);
	free(c->data);
	free(c);
}

/* Drives the client; true if it made progress. */
static bool cli_step(struct cli *c)
{
	bool progress = false;
	if (!c->connected) {
		int r = wolfSSL_connect(c->ssl);
		if (r == WOLFSSL_SUCCESS) {
			c->connected = true;
			progress = true;
		} else {
			int e = wolfSSL_get_error(c->ssl, r);
			if (e != WOLFSSL_ERROR_WANT_READ)
				c->err = e;
			return false;
		}
	}
	for (;;) {
		int n = wolfSSL_read(c->ssl, c->data + c->len,
				     (int)(PLAIN_MAX - c->len));
		if (n <= 0) {
			int e = wolfSSL_get_error(c->ssl, n);
			if (e != WOLFSSL_ERROR_WANT_READ)
				c->err = e;
			break;
		}
		c->len += (size_t)n;
		progress = true;
	}
	return progress;
}

/* ---- the pump: moves bytes both ways until nothing moves ---- */

struct srv {
	gw_tls_t *t;
	ssize_t rc; /* last gw_tls_read result <= 0 */
	uint8_t *data;
	size_t len;
};

static void srv_init(struct srv *s, gw_certs_t *certs, size_t max_out)
{
	s->t = gw_tls_new(certs, max_out);
	assert_non_null(s->t);
	s->rc = 0;
	s->len = 0;
	s->data = malloc(PLAIN_MAX);
	assert_non_null(s->data);
}

static void srv_deinit(struct srv *s)
{
	gw_tls_free(s->t);
	free(s->data);
}

static bool srv_read(struct srv *s)
{
	bool progress = false;
	for (;;) {
		ssize_t n = gw_tls_read(s->t, s->data + s->len, PLAIN_MAX - s->len);
		if (n <= 0) {
			s->rc = n;
			return progress;
		}
		s->len += (size_t)n;
		progress = true;
	}
}

/* drip: feed the server one byte at a time, reading after each byte. */
static void pump(struct cli *c, struct srv *s, bool drip)
{
	for (int round = 0; round < 64; round++) {
		bool progress = false;
		size_t n = gw_buf_size(&c->out);
		if (n) {
			size_t step = drip ? 1 : n;
			for (size_t i = 0; i < n; i += step) {
				assert_int_equal(gw_tls_feed(s->t, gw_buf_head(&c->out) + i,
							     step),
						 0);
				if (drip && i + 1 < n) {
					size_t before = gw_buf_size(gw_tls_out(s->t));
					srv_read(s);
					/* a partial record never completes a flight */
					if (s->rc == 0 && i + 1 < n / 2)
						assert_int_equal(gw_buf_size(gw_tls_out(s->t)),
								 before);
				}
			}
			gw_buf_consume(&c->out, n);
			progress = true;
		}
		if (srv_read(s))
			progress = true;
		gw_buf_t *o = gw_tls_out(s->t);
		if (gw_buf_size(o)) {
			assert_int_equal(gw_buf_append(&c->in, gw_buf_head(o),
						       gw_buf_size(o)),
					 0);
			gw_buf_consume(o, gw_buf_size(o));
			progress = true;
		}
		if (cli_step(c))
			progress = true;
		if (!progress && gw_buf_size(&c->out) == 0)
			return;
	}
	fail_msg("pump did not settle");
}

static void connect_ok(struct cli *c, struct srv *s)
{
	pump(c, s, false);
	assert_true(c->connected);
	assert_true(gw_tls_handshake_done(s->t));
	assert_int_equal(s->rc, 0);
}

static int group_setup(void **state)
{
	(void)state;
	char err[256];
	gw_certs_global_init();
	dot_certs = gw_certs_selfsigned(dot_alpn, err, sizeof(err));
	return dot_certs ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	gw_certs_unref(dot_certs);
	return 0;
}

/* ---- tests ---- */

static void test_tls_handshake_dot_tls13_data_both_ways(void **state)
{
	(void)state;
	struct cli *c = cli_new(wolfSSLv23_client_method(), "dot");
	struct srv s;
	srv_init(&s, dot_certs, MAX_OUT);
	assert_false(gw_tls_handshake_done(s.t));
	assert_string_equal(gw_tls_alpn(s.t), "");
	assert_int_equal(gw_tls_write(s.t, (const uint8_t *)"x", 1), GW_EINVAL);

	connect_ok(c, &s);
	assert_string_equal(gw_tls_alpn(s.t), "dot");
	assert_string_equal(gw_tls_version(s.t), "TLSv1.3");
	assert_false(gw_tls_resumed(s.t));
	char *proto = NULL;
	unsigned short plen = 0;
	assert_int_equal(wolfSSL_ALPN_GetProtocol(c->ssl, &proto, &plen),
			 WOLFSSL_SUCCESS);
	assert_int_equal(plen, 3);
	assert_memory_equal(proto, "dot", 3);

	/* client -> server */
	static const uint8_t q[] = "\x00\x1d query for example.com";
	assert_int_equal(wolfSSL_write(c->ssl, q, sizeof(q)), (int)sizeof(q));
	pump(c, &s, false);
	assert_int_equal(s.len, sizeof(q));
	assert_memory_equal(s.data, q, sizeof(q));

	/* server -> client, including more than one record's worth */
	uint8_t *big = malloc(40000);
	assert_non_null(big);
	for (size_t i = 0; i < 40000; i++)
		big[i] = (uint8_t)(i * 7);
	assert_int_equal(gw_tls_write(s.t, big, 40000), 0);
	assert_int_equal(gw_tls_write(s.t, big, 0), 0);
	pump(c, &s, false);
	assert_int_equal(c->len, 40000);
	assert_memory_equal(c->data, big, 40000);
	free(big);

	srv_deinit(&s);
	cli_free(c);
}

static void test_tls_split_at_every_byte(void **state)
{
	(void)state;
	struct cli *c = cli_new(wolfTLSv1_3_client_method(), "dot");
	struct srv s;
	srv_init(&s, dot_certs, MAX_OUT);
	/* The handshake itself, dripped one byte at a time. */
	pump(c, &s, true);
	assert_true(c->connected);
	assert_true(gw_tls_handshake_done(s.t));

	uint8_t msg[150], out[512];
	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)i;
	assert_int_equal(wolfSSL_write(c->ssl, msg, sizeof(msg)), (int)sizeof(msg));
	size_t rec = gw_buf_size(&c->out);
	assert_true(rec > sizeof(msg));
	/* Whole, as a baseline (and to keep record sequence numbers in step). */
	assert_int_equal(gw_tls_feed(s.t, gw_buf_head(&c->out), rec), 0);
	assert_int_equal(gw_tls_read(s.t, out, sizeof(out)), sizeof(msg));
	gw_buf_consume(&c->out, rec);
	/* Every split point of one record: each record is a fresh write of the
	 * same message, so has the same length. */
	for (size_t split = 1; split < rec; split++) {
		msg[0] = (uint8_t)split;
		assert_int_equal(wolfSSL_write(c->ssl, msg, sizeof(msg)),
				 (int)sizeof(msg));
		assert_int_equal(gw_buf_size(&c->out), rec);
		const uint8_t *p = gw_buf_head(&c->out);
		assert_int_equal(gw_tls_feed(s.t, p, split), 0);
		assert_int_equal(gw_tls_read(s.t, out, sizeof(out)), 0);
		assert_int_equal(gw_tls_feed(s.t, p + split, rec - split), 0);
		assert_int_equal(gw_tls_read(s.t, out, sizeof(out)), sizeof(msg));
		assert_memory_equal(out, msg, sizeof(msg));
		assert_int_equal(gw_tls_read(s.t, out, sizeof(out)), 0);
		gw_buf_consume(&c->out, rec);
	}
	/* Two records in one feed, read with a small buffer. */
	assert_int_equal(wolfSSL_write(c->ssl, msg, sizeof(msg)), (int)sizeof(msg));
	assert_int_equal(wolfSSL_write(c->ssl, msg, sizeof(msg)), (int)sizeof(msg));
	assert_int_equal(gw_tls_feed(s.t, gw_buf_head(&c->out), gw_buf_size(&c->out)),
			 0);
	gw_buf_consume(&c->out, gw_buf_size(&c->out));
	size_t got = 0;
	ssize_t n;
	while ((n = gw_tls_read(s.t, out + got, 7)) > 0)
		got += (size_t)n;
	assert_int_equal(n, 0);
	assert_int_equal(got, 2 * sizeof(msg));
	srv_deinit(&s);
	cli_free(c);
}

static void test_tls_close_notify(void **state)
{
	(void)state;
	uint8_t buf[64];
	struct cli *c = cli_new(wolfSSLv23_client_method(), "dot");
	struct srv s;
	srv_init(&s, dot_certs, MAX_OUT);
	connect_ok(c, &s);
	wolfSSL_shutdown(c->ssl);
	pump(c, &s, false);
	assert_int_equal(s.rc, GW_ECLOSED);
	assert_int_equal(gw_tls_read(s.t, buf, sizeof(buf)), GW_ECLOSED);
	srv_deinit(&s);
	cli_free(c);

	/* And the other direction: the server closes. */
	c = cli_new(wolfSSLv23_client_method(), "dot");
	srv_init(&s, dot_certs, MAX_OUT);
	connect_ok(c, &s);
	gw_tls_close(s.t);
	gw_tls_close(s.t); /* idempotent */
	pump(c, &s, false);
	assert_int_equal(c->err, WOLFSSL_ERROR_ZERO_RETURN);
	srv_deinit(&s);
	cli_free(c);
}

static void test_tls_garbage(void **state)
{
	(void)state;
	uint8_t buf[64];
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	gw_tls_t *t = gw_tls_new(dot_certs, MAX_OUT);
	assert_non_null(t);
	assert_int_equal(gw_tls_feed(t, (const uint8_t *)http, sizeof(http) - 1), 0);
	assert_int_equal(gw_tls_read(t, buf, sizeof(buf)), GW_ETLS);
	assert_int_equal(gw_tls_read(t, buf, sizeof(buf)), GW_ETLS); /* sticky */
	assert_int_equal(gw_tls_write(t, buf, 1), GW_ETLS);
	gw_tls_close(t);
	gw_tls_free(t);

	/* A forged application record after the handshake. */
	struct cli *c = cli_new(wolfSSLv23_client_method(), "dot");
	struct srv s;
	srv_init(&s, dot_certs, MAX_OUT);
	connect_ok(c, &s);
	static const uint8_t forged[] = { 0x17, 0x03, 0x03, 0x00, 0x20, 1, 2, 3,
					  4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
					  15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
					  25, 26, 27, 28, 29, 30, 31, 32 };
	assert_int_equal(gw_tls_feed(s.t, forged, sizeof(forged)), 0);
	assert_int_equal(gw_tls_read(s.t, buf, sizeof(buf)), GW_ETLS);
	/* bad_record_mac goes out as an (encrypted) alert record */
	assert_true(gw_buf_size(gw_tls_out(s.t)) > 0);
	assert_int_equal(gw_buf_head(gw_tls_out(s.t))[0], 0x17);
	srv_deinit(&s);
	cli_free(c);
}

/* Runs the client's first flight into a fresh server; returns the server's
 * gw_tls_read result and leaves its reply in the out-buffer. */
static ssize_t first_flight(struct cli *c, gw_tls_t *t)
{
	uint8_t buf[64];
	assert_int_not_equal(wolfSSL_connect(c->ssl), WOLFSSL_SUCCESS);
	assert_int_equal(gw_tls_feed(t, gw_buf_head(&c->out), gw_buf_size(&c->out)),
			 0);
	gw_buf_consume(&c->out, gw_buf_size(&c->out));
	return gw_tls_read(t, buf, sizeof(buf));
}

static void test_tls_alpn_mismatch_refused(void **state)
{
	(void)state;
	struct cli *c = cli_new(wolfSSLv23_client_method(), "h2");
	gw_tls_t *t = gw_tls_new(dot_certs, MAX_OUT);
	assert_int_equal(first_flight(c, t), GW_ETLS);
	/* RFC 7301 3.2: fatal no_application_protocol (120) alert */
	static const uint8_t alert[] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 120 };
	gw_buf_t *o = gw_tls_out(t);
	assert_int_equal(gw_buf_size(o), sizeof(alert));
	assert_memory_equal(gw_buf_head(o), alert, sizeof(alert));
	assert_false(gw_tls_handshake_done(t));
	gw_tls_free(t);
	cli_free(c);
}

static void test_tls_no_alpn_accepted(void **state)
{
	(void)state;
	struct cli *c = cli_new(wolfSSLv23_client_method(), NULL);
	struct srv s;
	srv_init(&s, dot_certs, MAX_OUT);
	connect_ok(c, &s);
	assert_string_equal(gw_tls_alpn(s.t), "");
	srv_deinit(&s);
	cli_free(c);
}

static void test_tls_alpn_server_preference(void **state)
{
	(void)state;
	char err[256];
	static const char *const doh[] = { "h2", "http/1.1", NULL };
	gw_certs_t *certs = gw_certs_selfsigned(doh, err, sizeof(err));
	assert_non_null(certs);
	/* The client lists http/1.1 first; our order wins. */
	struct cli *c = cli_new(wolfSSLv23_client_method(), "http/1.1,h2");
	struct srv s;
	srv_init(&s, certs, MAX_OUT);
	gw_certs_unref(certs); /* the connection keeps it alive */
	connect_ok(c, &s);
	assert_string_equal(gw_tls_alpn(s.t), "h2");
	srv_deinit(&s);
	cli_free(c);

	/* Only the second choice offered. */
	certs = gw_certs_selfsigned(doh, err, sizeof(err));
	c = cli_new(wolfSSLv23_client_method(), "foo,http/1.1");
	srv_init(&s, certs, MAX_OUT);
	connect_ok(c, &s);
	assert_string_equal(gw_tls_alpn(s.t), "http/1.1");
	srv_deinit(&s);
	cli_free(c);
	gw_certs_unref(certs);

	/* A context with no ALPN list ignores what the client offers. */
	certs = gw_certs_selfsigned(NULL, err, sizeof(err));
	c = cli_new(wolfSSLv23_client_method(), "h2");
	srv_init(&s, certs, MAX_OUT);
	pump(c, &s, false);
	assert_true(gw_tls_handshake_done(s.t));
	assert_string_equal(gw_tls_alpn(s.t), "");
	srv_deinit(&s);
	cli_free(c);
	gw_certs_unref(certs);
}

static void test_tls_tls12_client(void **state)
{
	(void)state;
	struct cli *c = cli_new(wolfTLSv1_2_client_method(), "dot");
	struct srv s;
	srv_init(&s, dot_certs, MAX_OUT);
	connect_ok(c, &s);
	assert_string_equal(gw_tls_version(s.t), "TLSv1.2");
	assert_string_equal(gw_tls_alpn(s.t), "dot");
	assert_int_equal(wolfSSL_write(c->ssl, "hello", 5), 5);
	pump(c, &s, false);
	assert_int_equal(s.len, 5);
	srv_deinit(&s);
	cli_free(c);
}

/* A TLS 1.1-only ClientHello (RFC 4346 7.4.1.2), built by hand because this
 * wolfSSL has no TLS 1.1 client: it must be refused. */
static void test_tls_tls11_refused(void **state)
{
	(void)state;
	uint8_t hello[] = {
		0x16, 0x03, 0x02, 0x00, 0x3d,		  /* record, TLS 1.1 */
		0x01, 0x00, 0x00, 0x39,			  /* client_hello */
		0x03, 0x02,				  /* client_version 1.1 */
		1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
		17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
		0x00,					  /* session_id */
		0x00, 0x06, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x2f, /* suites */
		0x01, 0x00,				  /* null compression */
		0x00, 0x0a,				  /* extensions */
		0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x17, 0x00, 0x18,
	};
	uint8_t buf[64];
	/* Record version 1.1, then 1.0 as real TLS 1.1 clients send it. */
	for (uint8_t rv = 2; rv >= 1; rv--) {
		hello[2] = rv;
		gw_tls_t *t = gw_tls_new(dot_certs, MAX_OUT);
		assert_int_equal(gw_tls_feed(t, hello, sizeof(hello)), 0);
		assert_int_equal(gw_tls_read(t, buf, sizeof(buf)), GW_ETLS);
		assert_false(gw_tls_handshake_done(t));
		/* a fatal alert, no ServerHello */
		gw_buf_t *o = gw_tls_out(t);
		assert_int_equal(gw_buf_size(o), 7);
		assert_int_equal(gw_buf_head(o)[0], 0x15);
		assert_int_equal(gw_buf_head(o)[5], 2);
		if (rv == 1) /* RFC 8446 4.2.1: protocol_version */
			assert_int_equal(gw_buf_head(o)[6], 70);
		gw_tls_free(t);
	}
}

static void resume(WOLFSSL_METHOD *(*method)(void), const char *version)
{
	struct cli *c = cli_new(method(), "dot");
	wolfSSL_UseSessionTicket(c->ssl);
	struct srv s;
	srv_init(&s, dot_certs, MAX_OUT);
	connect_ok(c, &s);
	assert_string_equal(gw_tls_version(s.t), version);
	assert_false(gw_tls_resumed(s.t));
	/* TLS 1.3 tickets arrive after the handshake; pump delivered them. */
	WOLFSSL_SESSION *sess = wolfSSL_get1_session(c->ssl);
	assert_non_null(sess);
	wolfSSL_shutdown(c->ssl);
	pump(c, &s, false);
	srv_deinit(&s);
	cli_free(c);

	c = cli_new(method(), "dot");
	wolfSSL_UseSessionTicket(c->ssl);
	assert_int_equal(wolfSSL_set_session(c->ssl, sess), WOLFSSL_SUCCESS);
	srv_init(&s, dot_certs, MAX_OUT);
	connect_ok(c, &s);
	assert_true(gw_tls_resumed(s.t));
	assert_true(wolfSSL_session_reused(c->ssl));
	assert_string_equal(gw_tls_alpn(s.t), "dot");
	assert_int_equal(wolfSSL_write(c->ssl, "ping", 4), 4);
	pump(c, &s, false);
	assert_int_equal(s.len, 4);
	srv_deinit(&s);
	cli_free(c);
	wolfSSL_SESSION_free(sess);
}

static void test_tls_resumption_tls13(void **state)
{
	(void)state;
	resume(wolfTLSv1_3_client_method, "TLSv1.3");
}

static void test_tls_resumption_tls12(void **state)
{
	(void)state;
	resume(wolfTLSv1_2_client_method, "TLSv1.2");
}

/* A ticket from another context (e.g. before a certificate reload) does not
 * resume: ticket keys are per context and never leave memory. */
static void test_tls_ticket_from_other_context(void **state)
{
	(void)state;
	char err[256];
	gw_certs_t *other = gw_certs_selfsigned(dot_alpn, err, sizeof(err));
	assert_non_null(other);
	struct cli *c = cli_new(wolfTLSv1_3_client_method(), "dot");
	struct srv s;
	srv_init(&s, other, MAX_OUT);
	connect_ok(c, &s);
	WOLFSSL_SESSION *sess = wolfSSL_get1_session(c->ssl);
	assert_non_null(sess);
	srv_deinit(&s);
	cli_free(c);
	gw_certs_unref(other);

	c = cli_new(wolfTLSv1_3_client_method(), "dot");
	assert_int_equal(wolfSSL_set_session(c->ssl, sess), WOLFSSL_SUCCESS);
	srv_init(&s, dot_certs, MAX_OUT);
	connect_ok(c, &s);
	assert_false(gw_tls_resumed(s.t));
	srv_deinit(&s);
	cli_free(c);
	wolfSSL_SESSION_free(sess);
}

static void test_tls_out_cap(void **state)
{
	(void)state;
	struct cli *c = cli_new(wolfSSLv23_client_method(), "dot");
	struct srv s;
	srv_init(&s, dot_certs, 20000);
	connect_ok(c, &s);
	uint8_t *big = calloc(1, 30000);
	assert_non_null(big);
	assert_int_equal(gw_tls_write(s.t, big, 30000), GW_ETOOBIG);
	assert_int_equal(gw_buf_size(gw_tls_out(s.t)), 0); /* nothing queued */
	assert_int_equal(gw_tls_write(s.t, big, 15000), 0);
	size_t queued = gw_buf_size(gw_tls_out(s.t));
	assert_true(queued > 15000);
	assert_int_equal(gw_tls_write(s.t, big, 15000), GW_ETOOBIG);
	assert_int_equal(gw_buf_size(gw_tls_out(s.t)), queued);
	pump(c, &s, false);
	assert_int_equal(c->len, 15000);
	/* the connection is still good after a refused write */
	assert_int_equal(gw_tls_write(s.t, big, 100), 0);
	pump(c, &s, false);
	assert_int_equal(c->len, 15100);
	free(big);
	srv_deinit(&s);
	cli_free(c);

	/* A cap too small for the server's first flight fails the handshake. */
	c = cli_new(wolfSSLv23_client_method(), "dot");
	gw_tls_t *t = gw_tls_new(dot_certs, 100);
	assert_int_equal(first_flight(c, t), GW_ETOOBIG);
	uint8_t buf[16];
	assert_int_equal(gw_tls_read(t, buf, sizeof(buf)), GW_ETOOBIG);
	gw_tls_free(t);
	cli_free(c);
}

static void test_tls_in_cap(void **state)
{
	(void)state;
	uint8_t *junk = calloc(1, GW_TLS_MAX_IN + 1);
	assert_non_null(junk);
	gw_tls_t *t = gw_tls_new(dot_certs, MAX_OUT);
	assert_int_equal(gw_tls_feed(t, junk, GW_TLS_MAX_IN + 1), GW_ETOOBIG);
	assert_int_equal(gw_tls_feed(t, junk, GW_TLS_MAX_IN), 0);
	assert_int_equal(gw_tls_feed(t, junk, 1), GW_ETOOBIG);
	assert_int_equal(gw_tls_feed(t, junk, 0), 0);
	gw_tls_free(t);
	free(junk);
}

/* The client verifies our generated certificate by name. */
static void test_tls_client_verifies_generated_cert(void **state)
{
	(void)state;
	char cert[4096], key[1024], err[256];
	char dir[] = "/tmp/dnsgw-test-tls-XXXXXX", cp[64], kp[64];
	time_t now = time(NULL);
	assert_non_null(mkdtemp(dir));
	assert_int_equal(gw_certs_generate_pem("dnsgw test", now - 60, now + 3600,
					       cert, sizeof(cert), key,
					       sizeof(key)),
			 0);
	snprintf(cp, sizeof(cp), "%s/c.pem", dir);
	snprintf(kp, sizeof(kp), "%s/k.pem", dir);
	FILE *f = fopen(cp, "w");
	assert_non_null(f);
	fputs(cert, f);
	fclose(f);
	f = fopen(kp, "w");
	assert_non_null(f);
	fputs(key, f);
	fclose(f);
	gw_certs_t *certs = gw_certs_load(cp, kp, dot_alpn, err, sizeof(err));
	unlink(cp);
	unlink(kp);
	rmdir(dir);
	assert_non_null(certs);

	struct cli *c = cli_new(wolfSSLv23_client_method(), "dot");
	assert_int_equal(wolfSSL_CTX_load_verify_buffer(c->ctx,
							(const uint8_t *)cert,
							(long)strlen(cert),
							WOLFSSL_FILETYPE_PEM),
			 WOLFSSL_SUCCESS);
	wolfSSL_set_verify(c->ssl, WOLFSSL_VERIFY_PEER, NULL);
	assert_int_equal(wolfSSL_check_domain_name(c->ssl, "localhost"),
			 WOLFSSL_SUCCESS);
	struct srv s;
	srv_init(&s, certs, MAX_OUT);
	connect_ok(c, &s);
	srv_deinit(&s);
	cli_free(c);

	/* and refuses it for another name */
	c = cli_new(wolfSSLv23_client_method(), "dot");
	wolfSSL_CTX_load_verify_buffer(c->ctx, (const uint8_t *)cert,
				       (long)strlen(cert), WOLFSSL_FILETYPE_PEM);
	wolfSSL_set_verify(c->ssl, WOLFSSL_VERIFY_PEER, NULL);
	wolfSSL_check_domain_name(c->ssl, "example.com");
	srv_init(&s, certs, MAX_OUT);
	pump(c, &s, false);
	assert_false(c->connected);
	srv_deinit(&s);
	cli_free(c);
	gw_certs_unref(certs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tls_handshake_dot_tls13_data_both_ways),
		cmocka_unit_test(test_tls_split_at_every_byte),
		cmocka_unit_test(test_tls_close_notify),
		cmocka_unit_test(test_tls_garbage),
		cmocka_unit_test(test_tls_alpn_mismatch_refused),
		cmocka_unit_test(test_tls_no_alpn_accepted),
		cmocka_unit_test(test_tls_alpn_server_preference),
		cmocka_unit_test(test_tls_tls12_client),
		cmocka_unit_test(test_tls_tls11_refused),
		cmocka_unit_test(test_tls_resumption_tls13),
		cmocka_unit_test(test_tls_resumption_tls12),
		cmocka_unit_test(test_tls_ticket_from_other_context),
		cmocka_unit_test(test_tls_out_cap),
		cmocka_unit_test(test_tls_in_cap),
		cmocka_unit_test(test_tls_client_verifies_generated_cert),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

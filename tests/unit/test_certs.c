/* Certificate store: loading PEM pairs, the errors an operator sees, and the
 * in-memory self-signed certificate. Keys are generated at test time into a
 * temporary directory (never committed), with openssl where it helps to
 * cross-check and with gw_certs_generate_pem for dates openssl 3.0 cannot
 * set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "certs/certs.h"
#include "gateway/error.h"

static char dir[64];
static char cert_path[128], key_path[128], key2_path[128], junk_path[128];
static int have_openssl;

static const char *const dot_alpn[] = { "dot", NULL };

static int run(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int group_setup(void **state)
{
	(void)state;
	gw_certs_global_init();
	snprintf(dir, sizeof(dir), "/tmp/dnsgw-test-certs-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", dir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
	snprintf(key2_path, sizeof(key2_path), "%s/key2.pem", dir);
	snprintf(junk_path, sizeof(junk_path), "%s/junk.pem", dir);
	have_openssl =
		run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
		    "-nodes -subj /CN=test.example -days 30 -keyout %s -out %s "
		    ">/dev/null 2>&1",
		    key_path, cert_path) == 0 &&
		run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
		    "-out %s >/dev/null 2>&1",
		    key2_path) == 0;
	write_file(junk_path, "this is not a certificate\n");
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	run("rm -rf %s", dir);
	return 0;
}

static void test_certs_load_good_pair(void **state)
{
	(void)state;
	char err[256] = "";
	if (!have_openssl)
		skip();
	gw_certs_t *c = gw_certs_load(cert_path, key_path, dot_alpn, err,
				      sizeof(err));
	assert_non_null(c);
	assert_string_equal(err, "");
	assert_non_null(gw_certs_ctx(c));
	time_t now = time(NULL);
	assert_true(gw_certs_not_after(c) > now + 29 * 86400);
	assert_true(gw_certs_not_after(c) < now + 31 * 86400);
	assert_true(gw_certs_not_before(c) <= now);
	assert_string_equal(gw_certs_alpn(c)[0], "dot");
	assert_null(gw_certs_alpn(c)[1]);

	/* The pin must be what kdig/openssl compute (RFC 7858 4.2). */
	char cmd_out[128] = "";
	char tmp[160];
	snprintf(tmp, sizeof(tmp), "%s/pin.txt", dir);
	assert_int_equal(run("openssl x509 -in %s -pubkey -noout | openssl pkey "
			     "-pubin -outform der | openssl dgst -sha256 -binary "
			     "| base64 > %s",
			     cert_path, tmp),
			 0);
	FILE *f = fopen(tmp, "r");
	assert_non_null(f);
	assert_non_null(fgets(cmd_out, sizeof(cmd_out), f));
	fclose(f);
	cmd_out[strcspn(cmd_out, "\n")] = '\0';
	assert_string_equal(gw_certs_spki_pin(c), cmd_out);

	/* Two owners: the context lives until the last reference goes. */
	assert_ptr_equal(gw_certs_ref(c), c);
	gw_certs_unref(c);
	assert_non_null(gw_certs_ctx(c));
	gw_certs_unref(c);
	gw_certs_unref(NULL);
}

static void test_certs_mismatched_key_names_both(void **state)
{
	(void)state;
	char err[256] = "", want[300];
	if (!have_openssl)
		skip();
	gw_certs_t *c = gw_certs_load(cert_path, key2_path, dot_alpn, err,
				      sizeof(err));
	assert_null(c);
	snprintf(want, sizeof(want), "%s and %s: key does not match certificate",
		 cert_path, key2_path);
	assert_string_equal(err, want);
}

static void test_certs_missing_file(void **state)
{
	(void)state;
	char err[256] = "", path[160], want[300];
	snprintf(path, sizeof(path), "%s/absent.pem", dir);
	assert_null(gw_certs_load(path, key_path, dot_alpn, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	assert_string_equal(err, want);

	if (!have_openssl)
		return;
	assert_null(gw_certs_load(cert_path, path, dot_alpn, err, sizeof(err)));
	assert_string_equal(err, want);
}

static void test_certs_no_certificate(void **state)
{
	(void)state;
	char err[256] = "", want[300];
	assert_null(gw_certs_load(junk_path, junk_path, NULL, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: no certificate found", junk_path);
	assert_string_equal(err, want);

	if (!have_openssl)
		return;
	/* A certificate where the key should be. */
	assert_null(gw_certs_load(cert_path, cert_path, NULL, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: no private key found", cert_path);
	assert_string_equal(err, want);
}

/* Writes a generated pair valid [nb, na] to cert_x.pem / key_x.pem. */
static void make_pair(time_t nb, time_t na, char *cp, char *kp, size_t len)
{
	char cert[4096], key[1024];
	assert_int_equal(gw_certs_generate_pem("dated", nb, na, cert,
					       sizeof(cert), key, sizeof(key)),
			 0);
	snprintf(cp, len, "%s/cert_x.pem", dir);
	snprintf(kp, len, "%s/key_x.pem", dir);
	write_file(cp, cert);
	write_file(kp, key);
}

static void test_certs_expired(void **state)
{
	(void)state;
	char err[256] = "", cp[160], kp[160], want[300];
	/* 2024-05-01 00:00:00 UTC .. 2024-06-01 00:00:00 UTC */
	make_pair(1714521600, 1717200000, cp, kp, sizeof(cp));
	assert_null(gw_certs_load(cp, kp, dot_alpn, err, sizeof(err)));
	snprintf(want, sizeof(want),
		 "%s: certificate expired on 2024-06-01 00:00:00 UTC", cp);
	assert_string_equal(err, want);
}

static void test_certs_not_yet_valid(void **state)
{
	(void)state;
	char err[256] = "", cp[160], kp[160];
	time_t now = time(NULL);
	make_pair(now + 86400, now + 10 * 86400, cp, kp, sizeof(cp));
	assert_null(gw_certs_load(cp, kp, dot_alpn, err, sizeof(err)));
	assert_non_null(strstr(err, cp));
	assert_non_null(strstr(err, ": certificate not valid before 20"));
}

static void test_certs_generated_pair_loads(void **state)
{
	(void)state;
	char err[256] = "", cp[160], kp[160];
	time_t now = time(NULL);
	make_pair(now - 60, now + 86400, cp, kp, sizeof(cp));
	gw_certs_t *c = gw_certs_load(cp, kp, NULL, err, sizeof(err));
	assert_non_null(c);
	assert_null(gw_certs_alpn(c)[0]);
	/* UTCTime has one-second resolution: the dates survive exactly. */
	assert_int_equal(gw_certs_not_before(c), now - 60);
	assert_int_equal(gw_certs_not_after(c), now + 86400);
	gw_certs_unref(c);

	if (!have_openssl)
		return;
	/* What openssl sees: our names, SANs and a good self-signature. */
	char out[160];
	snprintf(out, sizeof(out), "%s/text.txt", dir);
	assert_int_equal(run("openssl x509 -in %s -noout -text > %s", cp, out), 0);
	assert_int_equal(run("grep -q 'DNS:localhost, IP Address:127.0.0.1, "
			     "IP Address:0:0:0:0:0:0:0:1' %s",
			     out),
			 0);
	assert_int_equal(run("grep -q 'Subject: CN *= *dated' %s", out), 0);
	assert_int_equal(run("grep -q 'TLS Web Server Authentication' %s", out),
			 0);
	assert_int_equal(run("openssl verify -CAfile %s %s >/dev/null 2>&1", cp,
			     cp),
			 0);
	assert_int_equal(run("openssl pkey -in %s -noout >/dev/null 2>&1", kp),
			 0);
}

static void test_certs_selfsigned(void **state)
{
	(void)state;
	char err[256] = "";
	static const char *const doh_alpn[] = { "h2", "http/1.1", NULL };
	time_t now = time(NULL);
	gw_certs_t *c = gw_certs_selfsigned(doh_alpn, err, sizeof(err));
	assert_non_null(c);
	assert_string_equal(err, "");
	/* valid from now-1h for 90 days */
	assert_true(gw_certs_not_before(c) >= now - 3600 - 2);
	assert_true(gw_certs_not_before(c) <= now - 3600 + 2);
	assert_true(gw_certs_not_after(c) - gw_certs_not_before(c) == 90 * 86400);
	const char *pin = gw_certs_spki_pin(c);
	assert_int_equal(strlen(pin), 44);
	assert_int_equal(pin[43], '=');
	char first[64];
	snprintf(first, sizeof(first), "%s", pin);
	assert_string_equal(gw_certs_spki_pin(c), first); /* stable */
	assert_string_equal(gw_certs_alpn(c)[1], "http/1.1");

	/* A second one has a fresh key, hence a different pin. */
	gw_certs_t *d = gw_certs_selfsigned(NULL, err, sizeof(err));
	assert_non_null(d);
	assert_string_not_equal(gw_certs_spki_pin(d), first);
	gw_certs_unref(d);
	gw_certs_unref(c);
}

static void test_certs_bad_alpn_list(void **state)
{
	(void)state;
	char err[256] = "";
	static const char *const empty_name[] = { "", NULL };
	assert_null(gw_certs_selfsigned(empty_name, err, sizeof(err)));
	assert_string_equal(err, "invalid ALPN list");
}

/* DoQ: the same certificate, made QUIC-capable (TLS 1.3 only). */
static void test_certs_enable_quic(void **state)
{
	(void)state;
	char err[256] = "";
	static const char *const doq_alpn[] = { "doq", NULL };
	gw_certs_t *c = gw_certs_selfsigned(doq_alpn, err, sizeof(err));
	assert_non_null(c);
	assert_false(gw_certs_is_quic(c));
	assert_int_equal(gw_certs_enable_quic(c, err, sizeof(err)), 0);
	assert_true(gw_certs_is_quic(c));
	/* idempotent */
	assert_int_equal(gw_certs_enable_quic(c, err, sizeof(err)), 0);
	WOLFSSL *ssl = wolfSSL_new(gw_certs_ctx(c));
	assert_non_null(ssl);
	assert_int_equal(wolfSSL_is_quic(ssl), 1);
	wolfSSL_free(ssl);
	/* 0-RTT off unless asked for (doq.early_data) */
	assert_int_equal(wolfSSL_CTX_get_max_early_data(gw_certs_ctx(c)), 0);
	gw_certs_unref(c);
}

/* doq.early_data: tickets allow early data, QUIC's way (RFC 9001 4.6.1). */
static void test_certs_quic_early_data(void **state)
{
	(void)state;
	char err[256] = "";
	static const char *const doq_alpn[] = { "doq", NULL };
	gw_certs_t *c = gw_certs_selfsigned(doq_alpn, err, sizeof(err));
	assert_non_null(c);
	/* not a QUIC context yet */
	assert_int_equal(gw_certs_quic_early_data(c, err, sizeof(err)),
			 GW_EINVAL);
	assert_int_equal(gw_certs_enable_quic(c, err, sizeof(err)), 0);
	assert_int_equal(gw_certs_quic_early_data(c, err, sizeof(err)), 0);
	assert_int_equal(
		(unsigned)wolfSSL_CTX_get_max_early_data(gw_certs_ctx(c)),
		0xffffffffu);
	WOLFSSL *ssl = wolfSSL_new(gw_certs_ctx(c));
	assert_non_null(ssl);
	assert_int_equal((unsigned)wolfSSL_get_max_early_data(ssl),
			 0xffffffffu);
	wolfSSL_free(ssl);
	gw_certs_unref(c);
}

static void test_certs_generate_rejects_bad_dates(void **state)
{
	(void)state;
	char cert[4096], key[1024];
	/* 2050-01-02: past UTCTime's range. */
	assert_int_equal(gw_certs_generate_pem("x", 0, 2524694400, cert,
					       sizeof(cert), key, sizeof(key)),
			 GW_EINVAL);
	assert_int_equal(gw_certs_generate_pem("x", time(NULL), time(NULL) + 60,
					       cert, 10, key, sizeof(key)),
			 GW_ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_certs_load_good_pair),
		cmocka_unit_test(test_certs_mismatched_key_names_both),
		cmocka_unit_test(test_certs_missing_file),
		cmocka_unit_test(test_certs_no_certificate),
		cmocka_unit_test(test_certs_expired),
		cmocka_unit_test(test_certs_not_yet_valid),
		cmocka_unit_test(test_certs_generated_pair_loads),
		cmocka_unit_test(test_certs_selfsigned),
		cmocka_unit_test(test_certs_bad_alpn_list),
		cmocka_unit_test(test_certs_generate_rejects_bad_dates),
		cmocka_unit_test(test_certs_enable_quic),
		cmocka_unit_test(test_certs_quic_early_data),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/* Reload (gateway/reload.c): which directory events matter, certificates
 * validated before they replace the old ones, the hand-over to a running
 * worker, and the config reload applying only what is safe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "certs/certs.h"
#include "gateway/config.h"
#include "gateway/connlimit.h"
#include "gateway/error.h"
#include "gateway/log.h"
#include "gateway/reload.h"
#include "gateway/wmetrics.h"
#include "gateway/worker.h"
#include "upstream/upstream.h"

static void test_reload_name_matters(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		bool matters;
	} v[] = {
	    {"fullchain.pem", true}, /* certbot renames over it */
	    {"privkey.pem", true},
	    {"..data", true}, /* Kubernetes symlink swap */
	    {"..2026_11_29_18_00_00.123", true},
	    {"..data_tmp", true},
	    {"chain.pem", false},
	    {"fullchain.pem.swp", false},
	    {".fullchain.pem", false},
	    {"..", false},
	    {"", false},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		if (gw_reload_name_matters(v[i].name, "fullchain.pem",
					   "privkey.pem") != v[i].matters)
			fail_msg("%s: want %d", v[i].name, v[i].matters);
	}
	assert_false(gw_reload_name_matters(NULL, "a", "b"));
}

/* Fake builders: one that fails (a broken new pair) and one that makes a
 * fresh self-signed context per TLS listener. */
static int build_fail(const gw_conf_t *c, gw_certs_t **certs, char *err,
		      size_t errlen)
{
	(void)c;
	static const char *const alpn[] = {"dot", NULL};
	/* half built when the failure happens: the caller frees it */
	certs[0] = gw_certs_selfsigned(alpn, err, errlen);
	snprintf(err, errlen,
		 "cert.pem and key.pem: key does not match "
		 "certificate");
	return -1;
}

static int build_ok(const gw_conf_t *c, gw_certs_t **certs, char *err,
		    size_t errlen)
{
	static const char *const alpn[] = {"dot", NULL};
	for (unsigned i = 0; i < c->n_listen; i++) {
		certs[i] = c->listen[i].proto == GW_PROTO_DOT
			       ? gw_certs_selfsigned(alpn, err, errlen)
			       : NULL;
		if (c->listen[i].proto == GW_PROTO_DOT && !certs[i])
			return -1;
	}
	return 0;
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void build_conf(gw_conf_t *c, int port, const char *file)
{
	char listen[64], action_err[512];
	snprintf(listen, sizeof(listen), "dot://127.0.0.1:%d", port);
	char *argv[] = {
	    "dnsgw",	 "--listen", listen, "--upstream", "udp://127.0.0.1:9",
	    "--threads", "1",	     "-c",   (char *)file, NULL};
	char *envp[] = {NULL};
	gw_action_t action;
	int argc = file ? 9 : 7;
	if (gw_conf_build(c, argc, argv, envp, "/nonexistent", &action,
			  action_err, sizeof(action_err)) < 0)
		fail_msg("%s", action_err);
}

/* A broken pair leaves everything as it was; a good one replaces main's
 * contexts and reaches the worker's listener in the worker's thread, while
 * a reference taken before (a live connection) keeps the old one valid. */
static void test_reload_certs_validated_then_swapped(void **state)
{
	(void)state;
	static gw_conf_t conf;
	static gw_worker_t worker;
	char err[512];
	static const char *const alpn[] = {"dot", NULL};

	gw_log_setup(GW_LOG_ERROR, 0);
	gw_certs_global_init();
	build_conf(&conf, free_port(), NULL);
	strcpy(conf.cert_file, "cert.pem"); /* "there are files to reload" */
	strcpy(conf.key_file, "key.pem");
	gw_certs_t *certs[GW_CONF_MAX_LISTEN] = {0};
	certs[0] = gw_certs_selfsigned(alpn, err, sizeof(err));
	assert_non_null(certs[0]);
	gw_certs_t *first = certs[0];
	gw_connlimit_t *cl = gw_connlimit_new(10, 10);
	assert_int_equal(
	    gw_worker_init(&worker, 0, &conf, certs, cl, NULL, err, sizeof(err)), 0);
	assert_int_equal(gw_worker_start(&worker), 0);
	gw_certs_t *live = gw_certs_ref(first); /* a connection's reference */

	gw_reload_t r = {.conf = &conf,
			 .certs = certs,
			 .workers = &worker,
			 .n_workers = 1,
			 .build = build_fail,
			 .sigfd = -1,
			 .inofd = -1};
	uint64_t ok0 = gw_reload_count(GW_RELOAD_CERTS, true);
	uint64_t bad0 = gw_reload_count(GW_RELOAD_CERTS, false);
	uint64_t mok0 = gw_metrics_reloads(true),
		 mbad0 = gw_metrics_reloads(false);
	assert_int_equal(gw_reload_certs(&r, "test"), GW_ETLS);
	assert_ptr_equal(certs[0], first);
	assert_int_equal(gw_reload_count(GW_RELOAD_CERTS, false), bad0 + 1);

	r.build = build_ok;
	assert_int_equal(gw_reload_certs(&r, "test"), 0);
	assert_ptr_not_equal(certs[0], first);
	assert_int_equal(gw_reload_count(GW_RELOAD_CERTS, true), ok0 + 1);
	/* /metrics sees the same: dnsgw_reloads_total and the expiry */
	assert_int_equal(gw_metrics_reloads(true), mok0 + 1);
	assert_int_equal(gw_metrics_reloads(false), mbad0 + 1);
	time_t nb, na;
	gw_metrics_cert_get(&nb, &na);
	assert_int_equal(na, gw_certs_not_after(certs[0]));
	gw_certs_t *second = certs[0];

	/* the old context still works for the connection that holds it */
	WOLFSSL *ssl = wolfSSL_new(gw_certs_ctx(live));
	assert_non_null(ssl);
	wolfSSL_free(ssl);

	/* the worker swaps in its own thread; by the time it has drained
	 * and stopped, its listener uses the new context */
	gw_worker_request_drain(&worker);
	gw_worker_join(&worker);
	assert_ptr_equal(worker.listeners[0].certs, second);
	gw_worker_deinit(&worker);
	gw_certs_unref(live);
	gw_certs_unref(certs[0]);
	gw_connlimit_free(cl);
	gw_certs_thread_cleanup();
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Log level and limits apply; listeners and upstreams only get named; a
 * file that no longer parses changes nothing. */
static void test_reload_config_applies_safe_parts(void **state)
{
	(void)state;
	static gw_conf_t conf;
	char path[] = "/tmp/gw-reload-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	write_file(path, "log: {level: error}\n"
			 "limits: {idle_timeout_ms: 10000, max_conns: 100}\n");
	int port = free_port();
	build_conf(&conf, port, path);
	assert_int_equal(conf.log_level, GW_LOG_ERROR);
	gw_log_setup(conf.log_level, 0);

	char listen[64];
	snprintf(listen, sizeof(listen), "dot://127.0.0.1:%d", port);
	char *argv[] = {
	    "dnsgw",	 "--listen", listen, "--upstream", "udp://127.0.0.1:9",
	    "--threads", "1",	     "-c",   path,	   NULL};
	char *envp[] = {NULL};
	gw_reload_t r = {.conf = &conf,
			 .argc = 9,
			 .argv = argv,
			 .envp = envp,
			 .resolv_conf = "/nonexistent",
			 .sigfd = -1,
			 .inofd = -1};

	write_file(path, "log: {level: warn}\n"
			 "limits: {idle_timeout_ms: 2500, max_conns: 50}\n"
			 "threads: 7\n");
	uint64_t ok0 = gw_reload_count(GW_RELOAD_CONFIG, true);
	assert_int_equal(gw_reload_config(&r), 0);
	assert_int_equal(gw_reload_count(GW_RELOAD_CONFIG, true), ok0 + 1);
	assert_int_equal(conf.log_level, GW_LOG_WARN);
	assert_int_equal(gw_log_level(), GW_LOG_WARN);
	assert_int_equal(conf.limits.idle_timeout_ms, 2500);
	/* needs a restart: unchanged */
	assert_int_equal(conf.limits.max_conns, 100);
	/* threads comes from the flag (which wins over the file) */
	assert_int_equal(conf.threads, 1);

	write_file(path, "log: {level: [not, a, level]}\n");
	uint64_t bad0 = gw_reload_count(GW_RELOAD_CONFIG, false);
	assert_int_equal(gw_reload_config(&r), GW_ECONFIG);
	assert_int_equal(gw_reload_count(GW_RELOAD_CONFIG, false), bad0 + 1);
	assert_int_equal(conf.log_level, GW_LOG_WARN);
	assert_int_equal(conf.limits.idle_timeout_ms, 2500);
	unlink(path);
	gw_log_setup(GW_LOG_ERROR, 0);
}

/* An ACL change makes a new configuration generation that a running
 * worker switches to in its own thread; limits changed later land in that
 * generation; the start-up configuration is left alone. */
static void test_reload_config_acl_generation(void **state)
{
	(void)state;
	static gw_conf_t conf;
	static gw_worker_t worker;
	char path[] = "/tmp/gw-reload-XXXXXX", err[512];
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	write_file(path, "log: {level: error}\n"
			 "policy: {acl: [\"deny 10.0.0.0/8\"]}\n");
	int port = free_port();
	build_conf(&conf, port, path);
	assert_int_equal(conf.policy.acl.n, 1);
	gw_log_setup(conf.log_level, 0);
	gw_certs_global_init();
	static const char *const alpn[] = {"dot", NULL};
	gw_certs_t *certs[GW_CONF_MAX_LISTEN] = {0};
	certs[0] = gw_certs_selfsigned(alpn, err, sizeof(err));
	gw_connlimit_t *cl = gw_connlimit_new(10, 10);
	assert_int_equal(
	    gw_worker_init(&worker, 0, &conf, certs, cl, NULL, err, sizeof(err)), 0);
	assert_int_equal(gw_worker_start(&worker), 0);

	char listen[64];
	snprintf(listen, sizeof(listen), "dot://127.0.0.1:%d", port);
	char *argv[] = {
	    "dnsgw",	 "--listen", listen, "--upstream", "udp://127.0.0.1:9",
	    "--threads", "1",	     "-c",   path,	   NULL};
	char *envp[] = {NULL};
	gw_reload_t r = {.conf = &conf,
			 .workers = &worker,
			 .n_workers = 1,
			 .argc = 9,
			 .argv = argv,
			 .envp = envp,
			 .resolv_conf = "/nonexistent",
			 .sigfd = -1,
			 .inofd = -1};

	write_file(path, "log: {level: error}\n"
			 "policy: {acl: [\"allow 10.1.0.0/16\", "
			 "\"deny 10.0.0.0/8\"]}\n");
	assert_int_equal(gw_reload_config(&r), 0);
	assert_non_null(r.live);
	assert_ptr_not_equal(r.live, &conf);
	assert_int_equal(r.live->policy.acl.n, 2);
	assert_int_equal(conf.policy.acl.n, 1); /* start-up one untouched */

	/* nothing about ACLs: no new generation; limits go to the live one */
	write_file(path, "log: {level: error}\n"
			 "limits: {idle_timeout_ms: 3000}\n"
			 "policy: {acl: [\"allow 10.1.0.0/16\", "
			 "\"deny 10.0.0.0/8\"]}\n");
	gw_conf_t *live = r.live;
	assert_int_equal(gw_reload_config(&r), 0);
	assert_ptr_equal(r.live, live);
	assert_int_equal(r.n_gens, 1);
	assert_int_equal(r.live->limits.idle_timeout_ms, 3000);

	gw_worker_request_drain(&worker);
	gw_worker_join(&worker);
	assert_ptr_equal(worker.conf, r.live); /* switched in its thread */
	gw_worker_deinit(&worker);
	gw_reload_deinit(&r);
	assert_int_equal(r.n_gens, 0);
	gw_certs_unref(certs[0]);
	gw_connlimit_free(cl);
	gw_certs_thread_cleanup();
	unlink(path);
}

/* What a reload applies and what it names for a restart, per setting. */
static void test_reload_plan(void **state)
{
	(void)state;
	static gw_conf_t c, n;
	char restart[512], err[256];

	build_conf(&c, 5353, NULL);
	n = c;
	assert_int_equal(gw_reload_plan(&c, &n, restart, sizeof(restart)), 0);
	assert_string_equal(restart, "");

	/* the upstream list and every upstream: setting: applied */
	assert_int_equal(gw_endpoint_parse("udp://127.0.0.1:10", true,
					   &n.upstream[0], err, sizeof(err)),
			 0);
	assert_int_equal(gw_reload_plan(&c, &n, restart, sizeof(restart)),
			 GW_RELOAD_UPSTREAM);
	assert_string_equal(restart, "");
	n = c;
	n.up.timeout_ms = c.up.timeout_ms + 1;
	assert_int_equal(gw_reload_plan(&c, &n, restart, sizeof(restart)),
			 GW_RELOAD_UPSTREAM);
	n = c;
	n.n_upstream = 0;
	assert_int_equal(gw_reload_plan(&c, &n, restart, sizeof(restart)),
			 GW_RELOAD_UPSTREAM);

	/* each rate setting: applied; slip goes with the ACLs (read at use) */
	static const size_t rates[] = {
	    offsetof(gw_policy_conf_t, qps),
	    offsetof(gw_policy_conf_t, qps_burst),
	    offsetof(gw_policy_conf_t, conn_rate),
	    offsetof(gw_policy_conf_t, conn_burst),
	    offsetof(gw_policy_conf_t, ratelimit_clients),
	};
	for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		n = c;
		(*(uint32_t *)(void *)((char *)&n.policy + rates[i]))++;
		assert_int_equal(
		    gw_reload_plan(&c, &n, restart, sizeof(restart)),
		    GW_RELOAD_RATES);
		assert_string_equal(restart, "");
	}
	n = c;
	n.policy.slip++;
	n.policy.acl.n = 1;
	assert_int_equal(gw_reload_plan(&c, &n, restart, sizeof(restart)),
			 GW_RELOAD_ACL);
	assert_string_equal(restart, "");

	/* log level and limits: always applied, in neither list */
	n = c;
	n.log_level = GW_LOG_DEBUG;
	n.limits.idle_timeout_ms++;
	assert_int_equal(gw_reload_plan(&c, &n, restart, sizeof(restart)), 0);
	assert_string_equal(restart, "");

	/* what still needs a restart, next to what is applied */
	n = c;
	n.policy.qps = 5;
	n.threads = c.threads + 1;
	n.limits.max_conns++;
	n.cache.size_bytes++;
	n.policy.n_proxy_trusted = 1; /* the PROXY lists */
	n.upstream[0].proto = GW_PROTO_TCP;
	assert_int_equal(gw_reload_plan(&c, &n, restart, sizeof(restart)),
			 GW_RELOAD_RATES | GW_RELOAD_UPSTREAM);
	assert_string_equal(restart, "threads,limits.max_conns*,cache,policy");
	n = c;
	n.listen[0].proto = GW_PROTO_TCP;
	strcpy(n.cert_file, "/x.pem");
	n.doq.max_streams++;
	strcpy(n.user, "nobody");
	n.log_format = GW_LOG_JSON;
	n.doh.n_trusted_proxies++;
	gw_reload_plan(&c, &n, restart, sizeof(restart));
	assert_string_equal(restart, "listen,tls,user,log,doh,doq");
	/* a setting no name covers: "other" */
	n = c;
	n.admin_addrlen++;
	assert_int_equal(gw_reload_plan(&c, &n, restart, sizeof(restart)), 0);
	assert_string_equal(restart, "other");
}

/* A conf whose upstream list comes from the file (no --upstream flag). */
static void build_conf_file(gw_conf_t *c, int port, const char *file,
			    char **argv)
{
	char action_err[512];
	static char listen[64];
	snprintf(listen, sizeof(listen), "dot://127.0.0.1:%d", port);
	char *v[] = {"dnsgw", "--listen", listen,	"--threads",
		     "1",     "-c",	  (char *)file, NULL};
	memcpy(argv, v, sizeof(v));
	char *envp[] = {NULL};
	gw_action_t action;
	if (gw_conf_build(c, 7, argv, envp, "/nonexistent", &action, action_err,
			  sizeof(action_err)) < 0)
		fail_msg("%s", action_err);
}

/* Upstream and rate changes reach a running worker: a new pool made in
 * the worker's thread (the old one freed once empty), rate tables made
 * again; a bad upstream changes nothing and counts as a failure; many
 * reloads in a row keep only the generations still read. */
static void test_reload_config_upstream_and_rates(void **state)
{
	(void)state;
	static gw_conf_t conf;
	static gw_worker_t worker;
	char path[] = "/tmp/gw-reload-XXXXXX", err[512];
	char *argv[8];
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	write_file(path, "log: {level: error}\n"
			 "upstream: {servers: [\"udp://127.0.0.1:9\"]}\n");
	build_conf_file(&conf, free_port(), path, argv);
	gw_log_setup(conf.log_level, 0);
	gw_certs_global_init();
	static const char *const alpn[] = {"dot", NULL};
	gw_certs_t *certs[GW_CONF_MAX_LISTEN] = {0};
	certs[0] = gw_certs_selfsigned(alpn, err, sizeof(err));
	gw_connlimit_t *cl = gw_connlimit_new(10, 10);
	assert_int_equal(
	    gw_worker_init(&worker, 0, &conf, certs, cl, NULL, err, sizeof(err)), 0);
	assert_int_equal(gw_worker_start(&worker), 0);
	char *envp[] = {NULL};
	gw_reload_t r = {.conf = &conf,
			 .workers = &worker,
			 .n_workers = 1,
			 .argc = 7,
			 .argv = argv,
			 .envp = envp,
			 .resolv_conf = "/nonexistent",
			 .sigfd = -1,
			 .inofd = -1};

	gw_up_pool_t *p0 = gw_worker_pool_hold(&worker);
	gw_worker_pool_release(&worker);
	write_file(path, "log: {level: error}\n"
			 "upstream: {servers: [\"udp://127.0.0.1:10\", "
			 "\"tcp://127.0.0.1:11\"], timeout_ms: 700}\n"
			 "policy: {ratelimit: {qps: 5}}\n");
	uint64_t ok0 = gw_reload_count(GW_RELOAD_CONFIG, true);
	assert_int_equal(gw_reload_config(&r), 0);
	assert_int_equal(gw_reload_count(GW_RELOAD_CONFIG, true), ok0 + 1);
	/* the worker has switched by the time the reload returns */
	gw_up_pool_t *p1 = gw_worker_pool_hold(&worker);
	const gw_conf_t *pc = gw_up_pool_conf(p1);
	gw_worker_pool_release(&worker);
	assert_ptr_not_equal(p1, p0);
	assert_int_equal(pc->n_upstream, 2);
	assert_string_equal(pc->upstream[1].url, "tcp://127.0.0.1:11");
	assert_int_equal(pc->up.timeout_ms, 700);
	assert_ptr_equal(worker.conf, r.live);
	assert_int_equal(r.live->policy.qps, 5);
	assert_int_equal(conf.n_upstream, 1); /* start-up one untouched */
	unsigned failed, oldest;
	assert_int_equal(gw_worker_gen_done(&worker, &failed, &oldest), 1);
	assert_int_equal(failed, 0);
	assert_int_equal(oldest, 1); /* nothing in flight: old pool freed */

	/* a TLS upstream without a name to verify: refused, nothing changed */
	write_file(path, "log: {level: error}\n"
			 "upstream: {servers: [\"tls://127.0.0.1:853\"]}\n");
	uint64_t bad0 = gw_reload_count(GW_RELOAD_CONFIG, false);
	assert_int_equal(gw_reload_config(&r), GW_ECONFIG);
	assert_int_equal(gw_reload_count(GW_RELOAD_CONFIG, false), bad0 + 1);
	assert_ptr_equal(gw_worker_pool_hold(&worker), p1);
	gw_worker_pool_release(&worker);
	assert_int_equal(r.seq, 1);
	/* a URL that does not parse: the same */
	write_file(path, "log: {level: error}\n"
			 "upstream: {servers: [\"udp://127.0.0.1:99999\"]}\n");
	assert_int_equal(gw_reload_config(&r), GW_ECONFIG);
	assert_int_equal(gw_reload_count(GW_RELOAD_CONFIG, false), bad0 + 2);
	assert_int_equal(r.seq, 1);

	/* twenty reloads back and forth: generations do not pile up */
	for (int i = 0; i < 20; i++) {
		write_file(path, i % 2 ? "log: {level: error}\n"
					 "upstream: {servers: "
					 "[\"udp://127.0.0.1:12\"]}\n"
					 "policy: {ratelimit: {qps: 7}}\n"
				       : "log: {level: error}\n"
					 "upstream: {servers: "
					 "[\"udp://127.0.0.1:13\"]}\n");
		assert_int_equal(gw_reload_config(&r), 0);
		assert_true(r.n_gens <= 2);
	}
	assert_int_equal(r.seq, 21);
	pc = gw_up_pool_conf(gw_worker_pool_hold(&worker));
	gw_worker_pool_release(&worker);
	assert_string_equal(pc->upstream[0].url, "udp://127.0.0.1:12");
	assert_int_equal(worker.conf->policy.qps, 7);

	/* a worker that cannot make its new pool (here: a generation handed
	 * over without the main thread's check) keeps its configuration and
	 * pool, and reports the generation as failed */
	static gw_conf_gen_t bad;
	bad.conf = *worker.conf;
	assert_int_equal(gw_endpoint_parse("tls://127.0.0.1:853", true,
					   &bad.conf.upstream[0], err,
					   sizeof(err)),
			 0);
	bad.seq = r.seq + 100;
	const gw_conf_t *before = worker.conf;
	gw_up_pool_t *pb = gw_worker_pool_hold(&worker);
	gw_worker_pool_release(&worker);
	gw_worker_swap_conf(&worker, &bad);
	while (gw_worker_gen_done(&worker, &failed, NULL) < bad.seq)
		usleep(1000);
	assert_int_equal(failed, bad.seq);
	assert_ptr_equal(worker.conf, before);
	assert_ptr_equal(gw_worker_pool_hold(&worker), pb);
	gw_worker_pool_release(&worker);

	gw_worker_request_drain(&worker);
	gw_worker_join(&worker);
	gw_worker_deinit(&worker);
	gw_reload_deinit(&r);
	assert_int_equal(r.n_gens, 0);
	gw_certs_unref(certs[0]);
	gw_connlimit_free(cl);
	gw_certs_thread_cleanup();
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reload_name_matters),
	    cmocka_unit_test(test_reload_certs_validated_then_swapped),
	    cmocka_unit_test(test_reload_config_applies_safe_parts),
	    cmocka_unit_test(test_reload_config_acl_generation),
	    cmocka_unit_test(test_reload_plan),
	    cmocka_unit_test(test_reload_config_upstream_and_rates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

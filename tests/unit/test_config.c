/*
 * test_config.c - configuration precedence, YAML errors with positions,
 * endpoint URLs, resolv.conf fallback and loop detection, and the log line
 * formats (log.c is tested here too: it has no I/O but stderr).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/acl.h"
#include "gateway/config.h"
#include "gateway/error.h"
#include "gateway/log.h"

static gw_conf_t conf; /* about 90 KiB: not on the stack */
static char err[512];
static char resolv_default[64]; /* "nameserver 192.0.2.53" */
static char srcroot[PATH_MAX - 64];

/* ------------------------------------------------------------ helpers */

/* Writes text to a fresh temp file; the path goes to out (64 bytes). */
static void write_tmp(char *out, const char *text)
{
	strcpy(out, "/tmp/test_config_XXXXXX");
	int fd = mkstemp(out);
	assert_true(fd >= 0);
	size_t n = strlen(text);
	assert_int_equal(write(fd, text, n), (ssize_t)n);
	close(fd);
}

/* Runs gw_conf_build on NULL-terminated argv (without argv[0]) and envp. */
static int build_r(const char *resolv, gw_action_t *action, const char **args,
		   const char **env)
{
	char *argv[64];
	char *envp[64];
	int argc = 0, n = 0;
	gw_action_t dummy;

	argv[argc++] = (char *)"dnsgw";
	for (; args && *args; args++)
		argv[argc++] = (char *)*args;
	argv[argc] = NULL;
	for (; env && *env; env++)
		envp[n++] = (char *)*env;
	envp[n] = NULL;
	err[0] = '\0';
	return gw_conf_build(&conf, argc, argv, envp, resolv,
			     action ? action : &dummy, err, sizeof(err));
}

static int build(const char **args, const char **env)
{
	return build_r(resolv_default, NULL, args, env);
}

/* Loads YAML text as a -c file; the file path goes to path. */
static int build_yaml(char *path, const char *yaml)
{
	write_tmp(path, yaml);
	const char *args[] = { "-c", path, NULL };
	int r = build(args, NULL);
	unlink(path);
	return r;
}

/* Asserts err == "PATH:LINE:COL: ..." and contains needle. */
static void assert_pos(const char *path, int line, int col, const char *needle)
{
	char want[128];
	snprintf(want, sizeof(want), "%s:%d:%d: ", path, line, col);
	if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, needle)) {
		print_error("err: %s\nwant prefix %s and '%s'\n", err, want,
			    needle);
		fail();
	}
}

static void assert_err_has(const char *needle)
{
	if (!strstr(err, needle)) {
		print_error("err: %s\nwant '%s'\n", err, needle);
		fail();
	}
}

static int setup_all(void **state)
{
	(void)state;
	write_tmp(resolv_default, "# test\nnameserver 192.0.2.53\n");
	/* tests/unit/test_config.c -> the source root two levels up. */
	snprintf(srcroot, sizeof(srcroot), "%s", __FILE__);
	for (int i = 0; i < 3; i++) {
		char *slash = strrchr(srcroot, '/');
		if (slash)
			*slash = '\0';
		else
			strcpy(srcroot, ".");
	}
	if (strcmp(srcroot, "tests") == 0 || srcroot[0] == '\0')
		strcpy(srcroot, ".");
	return 0;
}

static int teardown_all(void **state)
{
	(void)state;
	unlink(resolv_default);
	return 0;
}

/* --------------------------------------------------------- defaults */

static void test_config_defaults(void **state)
{
	(void)state;
	gw_conf_defaults(&conf);
	assert_int_equal(conf.n_listen, 0);
	assert_int_equal(conf.n_upstream, 0);
	assert_int_equal(conf.threads, 0);
	assert_int_equal(conf.log_level, GW_LOG_INFO);
	assert_int_equal(conf.log_format, GW_LOG_LOGFMT);
	assert_false(conf.query_log);
	assert_string_equal(conf.cert_file, "");
	assert_string_equal(conf.admin, "");
	assert_int_equal(conf.up.timeout_ms, 2000);
	assert_int_equal(conf.up.attempts, 3);
	assert_true(conf.up.strip_ecs);
	assert_int_equal(conf.limits.handshake_timeout_ms, 5000);
	assert_int_equal(conf.limits.idle_timeout_ms, 10000);
	assert_int_equal(conf.limits.partial_timeout_ms, 2000);
	assert_int_equal(conf.limits.write_timeout_ms, 5000);
	assert_int_equal(conf.limits.max_read_events_per_query, 50);
	assert_int_equal(conf.limits.max_inflight_per_conn, 100);
	assert_int_equal(conf.limits.max_conns_per_client, 64);
	assert_int_equal(conf.limits.max_conns, 10000);
	assert_int_equal(conf.limits.max_waiting_per_client, 1000);
	assert_int_equal(conf.limits.drain_timeout_ms, 5000);
}

static void test_config_zero_config(void **state)
{
	gw_action_t a;
	(void)state;
	assert_int_equal(build_r(resolv_default, &a, NULL, NULL), 0);
	assert_int_equal(a, GW_ACTION_RUN);
	assert_int_equal(conf.n_listen, 5);
	assert_string_equal(conf.listen[0].url, "dot://127.0.0.1:8853");
	assert_int_equal(conf.listen[0].proto, GW_PROTO_DOT);
	assert_string_equal(conf.listen[1].url, "doh://127.0.0.1:8443/dns-query");
	assert_int_equal(conf.listen[1].proto, GW_PROTO_DOH);
	assert_string_equal(conf.listen[2].url, "doq://127.0.0.1:8853");
	assert_int_equal(conf.listen[2].proto, GW_PROTO_DOQ);
	assert_string_equal(conf.listen[3].url, "udp://127.0.0.1:8053");
	assert_string_equal(conf.listen[4].url, "tcp://127.0.0.1:8053");
	assert_int_equal(conf.n_upstream, 1);
	assert_string_equal(conf.upstream[0].url, "udp://192.0.2.53:53");
	assert_true(conf.threads >= 1); /* 0 became the CPU count */
	assert_int_equal(conf.admin_addrlen, 0);
}

/* ------------------------------------------------------------- file */

static void test_config_file_all_keys(void **state)
{
	char path[PATH_MAX];
	(void)state;
	snprintf(path, sizeof(path), "%s/tests/data/config_full.yaml", srcroot);
	const char *args[] = { "-c", path, NULL };
	assert_int_equal(build(args, NULL), 0);
	assert_string_equal(conf.config_file, path);

	assert_int_equal(conf.n_listen, 6);
	assert_int_equal(conf.listen[0].proto, GW_PROTO_DOT);
	assert_int_equal(conf.listen[1].proto, GW_PROTO_DOH);
	assert_string_equal(conf.listen[1].host, "::1");
	assert_string_equal(conf.listen[1].path, "/custom-path");
	assert_int_equal(conf.listen[1].port, 8443);
	assert_int_equal(conf.listen[2].proto, GW_PROTO_DOQ);
	assert_int_equal(conf.listen[3].proto, GW_PROTO_UDP);
	assert_int_equal(conf.listen[4].proto, GW_PROTO_TCP);
	assert_int_equal(conf.listen[5].proto, GW_PROTO_H2C);
	assert_string_equal(conf.listen[5].path, "/dns-query");

	assert_string_equal(conf.cert_file, "/etc/dnsgw/cert.pem");
	assert_string_equal(conf.key_file, "/etc/dnsgw/key.pem");
	assert_string_equal(conf.admin, "127.0.0.1:9153");
	assert_true(conf.admin_addrlen > 0);
	assert_int_equal(conf.threads, 3);
	assert_int_equal(conf.log_level, GW_LOG_DEBUG);
	assert_int_equal(conf.log_format, GW_LOG_JSON);
	assert_true(conf.query_log);

	assert_int_equal(conf.n_upstream, 4);
	assert_int_equal(conf.upstream[0].proto, GW_PROTO_UDP);
	assert_int_equal(conf.upstream[0].port, 5353);
	assert_int_equal(conf.upstream[1].proto, GW_PROTO_DOT);
	assert_string_equal(conf.upstream[1].tls_name, "dns.example");
	assert_int_equal(conf.upstream[2].proto, GW_PROTO_DOH);
	assert_int_equal(conf.upstream[2].addrlen, 0);
	assert_string_equal(conf.upstream[2].host, "dns.example");
	assert_string_equal(conf.upstream[2].path, "/q");
	assert_int_equal(conf.upstream[2].port, 443);
	assert_int_equal(conf.upstream[3].proto, GW_PROTO_DOQ);
	assert_int_equal(conf.upstream[3].port, 853);
	assert_int_equal(conf.up.timeout_ms, 1500);
	assert_int_equal(conf.up.attempts, 2);
	assert_false(conf.up.strip_ecs);

	assert_int_equal(conf.limits.handshake_timeout_ms, 4000);
	assert_int_equal(conf.limits.idle_timeout_ms, 11000);
	assert_int_equal(conf.limits.partial_timeout_ms, 1000);
	assert_int_equal(conf.limits.write_timeout_ms, 6000);
	assert_int_equal(conf.limits.max_read_events_per_query, 40);
	assert_int_equal(conf.limits.max_inflight_per_conn, 90);
	assert_int_equal(conf.limits.max_conns_per_client, 32);
	assert_int_equal(conf.limits.max_conns, 5000);
	assert_int_equal(conf.limits.max_waiting_per_client, 500);
	assert_int_equal(conf.limits.drain_timeout_ms, 3000);
}

/* The shipped example documents the defaults, so it must load to them. */
static void test_config_example_is_defaults(void **state)
{
	char path[PATH_MAX];
	static gw_conf_t def;
	(void)state;
	snprintf(path, sizeof(path), "%s/dnsgw.example.yaml", srcroot);
	const char *args[] = { "-c", path, "--upstream", "udp://127.0.0.1:5353",
			       "--threads", "1", NULL };
	assert_int_equal(build(args, NULL), 0);
	gw_conf_defaults(&def);
	assert_memory_equal(&conf.limits, &def.limits, sizeof(def.limits));
	assert_int_equal(conf.up.timeout_ms, def.up.timeout_ms);
	assert_int_equal(conf.up.attempts, def.up.attempts);
	assert_int_equal(conf.up.strip_ecs, def.up.strip_ecs);
	assert_int_equal(conf.log_level, def.log_level);
	assert_int_equal(conf.log_format, def.log_format);
	assert_int_equal(conf.query_log, def.query_log);
	assert_memory_equal(&conf.policy, &def.policy, sizeof(def.policy));
	assert_int_equal(conf.doq.retry, def.doq.retry);
	assert_int_equal(conf.doq.retry_threshold, def.doq.retry_threshold);
	assert_int_equal(conf.doq.idle_timeout_ms, def.doq.idle_timeout_ms);
	assert_int_equal(conf.doq.max_streams, def.doq.max_streams);
	assert_int_equal(conf.doq.stream_timeout_ms, def.doq.stream_timeout_ms);
	assert_int_equal(conf.doq.early_data, def.doq.early_data);
	assert_int_equal(conf.n_listen, 5);
	assert_string_equal(conf.listen[0].url, "dot://127.0.0.1:8853");
}

/* DoQ keys (transports/doq.c): defaults, values, ranges, bad mode. */
static void test_config_doq(void **state)
{
	char path[64];
	(void)state;
	assert_int_equal(build_yaml(path, "upstream: {servers: [udp://127.0.0.1]}\n"), 0);
	assert_int_equal(conf.doq.retry, GW_DOQ_RETRY_AUTO);
	assert_int_equal(conf.doq.max_streams, 16);
	assert_int_equal(conf.doq.idle_timeout_ms, 30000);
	assert_int_equal(conf.doq.stream_timeout_ms, 10000);
	assert_int_equal(conf.doq.retry_threshold, 256);
	assert_false(conf.doq.early_data); /* 0-RTT off by default */
	assert_int_equal(build_yaml(path,
		"upstream: {servers: [udp://127.0.0.1]}\n"
		"doq: {retry: always, idle_timeout_ms: 7000, max_streams: 8,\n"
		"      stream_timeout_ms: 900, retry_threshold: 0}\n"), 0);
	assert_false(conf.doq.early_data);
	assert_int_equal(conf.doq.retry, GW_DOQ_RETRY_ALWAYS);
	assert_int_equal(conf.doq.idle_timeout_ms, 7000);
	assert_int_equal(conf.doq.max_streams, 8);
	assert_int_equal(conf.doq.stream_timeout_ms, 900);
	assert_int_equal(conf.doq.retry_threshold, 0);
	assert_int_equal(build_yaml(path, "doq: {retry: never}\n"), 0);
	assert_int_equal(conf.doq.retry, GW_DOQ_RETRY_NEVER);
	assert_int_equal(build_yaml(path, "doq: {early_data: true}\n"), 0);
	assert_true(conf.doq.early_data);
	assert_int_equal(build_yaml(path, "doq: {early_data: false}\n"), 0);
	assert_false(conf.doq.early_data);
	assert_int_equal(build_yaml(path, "doq:\n  early_data: maybe\n"),
			 GW_ECONFIG);
	assert_pos(path, 2, 15, "expected true or false");
	assert_int_equal(build_yaml(path, "doq:\n  retry: sometimes\n"),
			 GW_ECONFIG);
	assert_pos(path, 2, 10, "unknown mode 'sometimes'");
	assert_int_equal(build_yaml(path, "doq:\n  max_streams: 0\n"),
			 GW_ECONFIG);
	assert_err_has("out of range");
	assert_int_equal(gw_doq_retry_parse("auto"), GW_DOQ_RETRY_AUTO);
	assert_int_equal(gw_doq_retry_parse("x"), -1);
}

static void test_config_cache(void **state)
{
	char path[64];
	(void)state;
	/* on by default */
	assert_int_equal(build_yaml(path, "upstream: {servers: [udp://127.0.0.1]}\n"), 0);
	assert_int_equal(conf.cache.size_bytes, 32u << 20);
	assert_int_equal(conf.cache.min_ttl, 0);
	assert_int_equal(conf.cache.max_ttl, 86400);
	assert_int_equal(conf.cache.negative_max_ttl, 3600);
	assert_false(conf.cache.serve_stale);
	assert_int_equal(conf.cache.stale_ttl, 86400);
	assert_int_equal(build_yaml(path,
		"cache: {size_bytes: 1000000, min_ttl: 5, max_ttl: 600,\n"
		"        negative_max_ttl: 30, serve_stale: true, stale_ttl: 120}\n"), 0);
	assert_int_equal(conf.cache.size_bytes, 1000000);
	assert_int_equal(conf.cache.min_ttl, 5);
	assert_int_equal(conf.cache.max_ttl, 600);
	assert_int_equal(conf.cache.negative_max_ttl, 30);
	assert_true(conf.cache.serve_stale);
	assert_int_equal(conf.cache.stale_ttl, 120);
	/* 0 turns it off */
	assert_int_equal(build_yaml(path, "cache: {size_bytes: 0}\n"), 0);
	assert_int_equal(conf.cache.size_bytes, 0);
	/* ranges and cross-checks */
	assert_int_equal(build_yaml(path, "cache:\n  max_ttl: 0\n"), GW_ECONFIG);
	assert_pos(path, 2, 12, "out of range");
	assert_int_equal(build_yaml(path, "cache:\n  stale_ttl: 9999999\n"),
			 GW_ECONFIG);
	assert_err_has("out of range");
	assert_int_equal(build_yaml(path, "cache:\n  negative_max_ttl: 86401\n"),
			 GW_ECONFIG);
	assert_err_has("out of range");
	assert_int_equal(build_yaml(path, "cache:\n  serve_stale: maybe\n"),
			 GW_ECONFIG);
	assert_err_has("expected true or false");
	assert_int_equal(build_yaml(path, "cache: {min_ttl: 700, max_ttl: 600}\n"),
			 GW_ECONFIG);
	assert_err_has("cache.min_ttl (700) is above cache.max_ttl (600)");
	assert_int_equal(build_yaml(path, "cache: {sizebytes: 1}\n"), GW_ECONFIG);
	/* --cache-size and DNSGW_CACHE_SIZE; the flag wins */
	const char *a0[] = { "--upstream", "udp://127.0.0.1", "--cache-size", "0",
			     NULL };
	assert_int_equal(build(a0, NULL), 0);
	assert_int_equal(conf.cache.size_bytes, 0);
	const char *env[] = { "DNSGW_CACHE_SIZE=4096", NULL };
	const char *a1[] = { "--upstream", "udp://127.0.0.1", NULL };
	assert_int_equal(build(a1, env), 0);
	assert_int_equal(conf.cache.size_bytes, 4096);
	assert_int_equal(build(a0, env), 0);
	assert_int_equal(conf.cache.size_bytes, 0);
	const char *bad[] = { "--cache-size", "lots", NULL };
	assert_int_equal(build(bad, NULL), GW_ECONFIG);
	assert_err_has("--cache-size: 'lots' is not a number of bytes");
	const char *big[] = { "--cache-size", "4294967296", NULL };
	assert_int_equal(build(big, NULL), GW_ECONFIG);
	assert_err_has("--cache-size: 4294967296 is out of range");
}

static bool allows(const char *ip)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	inet_pton(AF_INET, ip, &a.sin_addr);
	return gw_acl_allows(&conf.policy.acl, (struct sockaddr *)&a);
}

/* --acl, --ratelimit-qps, --ratelimit-conns and their DNSGW_* twins:
 * the flag wins over the environment, which wins over the file. */
static void test_config_policy_flags(void **state)
{
	char path[64];
	(void)state;
	write_tmp(path, "upstream: {servers: [\"udp://127.0.0.1\"]}\n"
			"policy:\n  acl: [\"deny 10.0.0.0/8\"]\n"
			"  ratelimit: {qps: 7, conn_rate: 3}\n");
	const char *file[] = { "-c", path, NULL };
	assert_int_equal(build(file, NULL), 0);
	assert_int_equal(conf.policy.acl.n, 1);
	assert_int_equal(conf.policy.qps, 7);

	const char *env[] = { "DNSGW_ACL=allow 192.0.2.0/24 , deny all",
			      "DNSGW_RATELIMIT_QPS=50",
			      "DNSGW_RATELIMIT_CONNS=9", NULL };
	assert_int_equal(build(file, env), 0);
	assert_int_equal(conf.policy.acl.n, 2);
	assert_true(allows("192.0.2.9"));
	assert_false(allows("10.1.2.3"));
	assert_false(allows("198.51.100.1"));
	assert_int_equal(conf.policy.qps, 50);
	assert_int_equal(conf.policy.conn_rate, 9);

	const char *flags[] = { "-c", path, "--acl", "deny 192.0.2.0/24,allow all",
				"--ratelimit-qps", "0", "--ratelimit-conns",
				"1", NULL };
	assert_int_equal(build(flags, env), 0);
	assert_int_equal(conf.policy.acl.n, 2);
	assert_false(allows("192.0.2.9"));
	assert_true(allows("10.1.2.3"));
	assert_int_equal(conf.policy.qps, 0);
	assert_int_equal(conf.policy.conn_rate, 1);

	const char *bad_rule[] = { "-c", path, "--acl", "allow all, permit x",
				   NULL };
	assert_int_equal(build(bad_rule, NULL), GW_ECONFIG);
	assert_err_has("--acl: 'permit x'");
	const char *empty[] = { "-c", path, "--acl", " , ", NULL };
	assert_int_equal(build(empty, NULL), GW_ECONFIG);
	assert_err_has("--acl: no rule given");
	const char *bad_qps[] = { "-c", path, "--ratelimit-qps", "many", NULL };
	assert_int_equal(build(bad_qps, NULL), GW_ECONFIG);
	assert_err_has("--ratelimit-qps: 'many' is not a number");
	const char *bad_env[] = { "DNSGW_RATELIMIT_CONNS=99999999", NULL };
	assert_int_equal(build(file, bad_env), GW_ECONFIG);
	assert_err_has("DNSGW_RATELIMIT_CONNS: 99999999 is out of range");
}

static void test_config_file_empty_and_minimal(void **state)
{
	char path[64], p2[PATH_MAX];
	(void)state;
	assert_int_equal(build_yaml(path, "# nothing here\n"), 0);
	assert_int_equal(conf.n_listen, 5);
	assert_int_equal(build_yaml(path, ""), 0);
	snprintf(p2, sizeof(p2), "%s/tests/data/config_minimal.yaml", srcroot);
	const char *args[] = { "-c", p2, NULL };
	assert_int_equal(build(args, NULL), 0);
	assert_int_equal(conf.n_upstream, 1);
	assert_int_equal(conf.upstream[0].port, 5353);
}

static void test_config_file_unknown_top_key(void **state)
{
	char path[64];
	(void)state;
	assert_int_equal(build_yaml(path, "threads: 2\nfrobnicate: 1\n"),
			 GW_ECONFIG);
	assert_pos(path, 2, 1, "unknown key 'frobnicate'");
	assert_err_has("expected listen, tls, admin");
}

static void test_config_file_unknown_nested_key(void **state)
{
	char path[PATH_MAX];
	(void)state;
	snprintf(path, sizeof(path), "%s/tests/data/config_bad_key.yaml",
		 srcroot);
	const char *args[] = { "-c", path, NULL };
	assert_int_equal(build(args, NULL), GW_ECONFIG);
	assert_pos(path, 4, 3, "unknown key 'idle_timout_ms' in 'limits'");

	char p2[64];
	assert_int_equal(build_yaml(p2, "log: {level: info, colour: red}\n"),
			 GW_ECONFIG);
	assert_pos(p2, 1, 20, "unknown key 'colour' in 'log'");
}

static void test_config_file_wrong_type(void **state)
{
	char path[64];
	(void)state;
	assert_int_equal(build_yaml(path, "threads: many\n"), GW_ECONFIG);
	assert_pos(path, 1, 10, "threads: expected an unsigned integer");

	assert_int_equal(build_yaml(path, "threads: 2\nlimits: 5\n"),
			 GW_ECONFIG);
	assert_pos(path, 2, 9, "limits: must be a mapping");

	assert_int_equal(build_yaml(path, "listen: dot://127.0.0.1:853\n"),
			 GW_ECONFIG);
	assert_pos(path, 1, 9, "listen: must be a list");

	assert_int_equal(build_yaml(path, "log:\n  queries: maybe\n"),
			 GW_ECONFIG);
	assert_pos(path, 2, 12, "expected true or false");

	/* libcyaml would read 010 as octal 8. */
	assert_int_equal(build_yaml(path, "limits: {max_conns: 010}\n"),
			 GW_ECONFIG);
	assert_pos(path, 1, 21, "unsigned integer");

	assert_int_equal(build_yaml(path, "threads: -1\n"), GW_ECONFIG);
	assert_pos(path, 1, 10, "unsigned integer");

	assert_int_equal(build_yaml(path, "- a\n- b\n"), GW_ECONFIG);
	assert_pos(path, 1, 1, "the configuration must be a mapping");

	assert_int_equal(build_yaml(path, "upstream:\n  servers:\n    - {a: 1}\n"),
			 GW_ECONFIG);
	assert_pos(path, 3, 7, "upstream.servers[0]: must be a string");
}

static void test_config_file_syntax_and_duplicates(void **state)
{
	char path[64];
	(void)state;
	assert_int_equal(build_yaml(path, "threads: 1\nlisten: [\"a\"\n"),
			 GW_ECONFIG);
	assert_int_equal(strncmp(err, path, strlen(path)), 0);
	assert_err_has(":3:");

	assert_int_equal(build_yaml(path, "threads: 1\nthreads: 2\n"),
			 GW_ECONFIG);
	assert_pos(path, 2, 1, "duplicate key 'threads'");

	assert_int_equal(build_yaml(path, "a: &x 1\n"), GW_ECONFIG);
	assert_pos(path, 1, 1, "unknown key 'a'");

	assert_int_equal(build_yaml(path, "threads: 1\n---\nthreads: 2\n"),
			 GW_ECONFIG);
	assert_pos(path, 2, 1, "only one YAML document");

	assert_int_equal(build_yaml(path, "limits: {max_conns: *x}\n"),
			 GW_ECONFIG);
	assert_err_has(path);

	const char *args[] = { "-c", "/nonexistent/dnsgw.yaml", NULL };
	assert_int_equal(build(args, NULL), GW_ECONFIG);
	assert_err_has("/nonexistent/dnsgw.yaml: cannot open");
}

static void test_config_file_bad_listen_url(void **state)
{
	char path[64];
	(void)state;
	assert_int_equal(build_yaml(path, "listen:\n"
					  "  - dot://127.0.0.1:853\n"
					  "  - dot://127.0.0.1:99999\n"),
			 GW_ECONFIG);
	assert_pos(path, 3, 5, "listen[1]: 'dot://127.0.0.1:99999': bad port");

	assert_int_equal(build_yaml(path, "upstream:\n"
					  "  servers: [\"foo://1.2.3.4\"]\n"),
			 GW_ECONFIG);
	assert_pos(path, 2, 13, "unknown upstream scheme 'foo'");

	assert_int_equal(build_yaml(path, "admin: localhost:9153\n"),
			 GW_ECONFIG);
	assert_pos(path, 1, 8, "admin: 'localhost:9153'");

	assert_int_equal(build_yaml(path, "log: {level: loud}\n"), GW_ECONFIG);
	assert_pos(path, 1, 14, "unknown level 'loud'");
	assert_int_equal(build_yaml(path, "log: {format: xml}\n"), GW_ECONFIG);
	assert_pos(path, 1, 15, "unknown format 'xml'");

	assert_int_equal(build_yaml(path, "listen: [\"\"]\n"), GW_ECONFIG);
	assert_pos(path, 1, 10, "must not be empty");
}

static void test_config_file_out_of_range(void **state)
{
	char path[64];
	(void)state;
	assert_int_equal(build_yaml(path, "limits:\n"
					  "  max_inflight_per_conn: 70000\n"),
			 GW_ECONFIG);
	assert_pos(path, 2, 26, "limits.max_inflight_per_conn: 70000 is out "
				"of range (1..65535)");
	assert_int_equal(build_yaml(path, "upstream: {attempts: 0}\n"),
			 GW_ECONFIG);
	assert_pos(path, 1, 22, "out of range");
	assert_int_equal(build_yaml(path, "threads: 99999999999\n"),
			 GW_ECONFIG);
	assert_pos(path, 1, 10, "unsigned integer");
	assert_int_equal(build_yaml(path, "threads: 2000\n"), GW_ECONFIG);
	assert_pos(path, 1, 10, "threads: 2000 is out of range (0..1024)");
}

static void test_config_file_too_many_listeners(void **state)
{
	char path[64], yaml[4096];
	size_t o = 0;
	(void)state;
	o += (size_t)snprintf(yaml + o, sizeof(yaml) - o, "listen:\n");
	for (int i = 0; i < GW_CONF_MAX_LISTEN + 1; i++)
		o += (size_t)snprintf(yaml + o, sizeof(yaml) - o,
				      "  - udp://127.0.0.1:%d\n", 5000 + i);
	assert_int_equal(build_yaml(path, yaml), GW_ECONFIG);
	assert_pos(path, GW_CONF_MAX_LISTEN + 2, 5, "too many entries");
}

/* ------------------------------------------------------- precedence */

static void test_config_env_overrides_file(void **state)
{
	char path[64];
	(void)state;
	write_tmp(path, "threads: 2\nlog: {level: debug}\n"
			"listen: [\"udp://127.0.0.1:5300\"]\n"
			"upstream: {servers: [\"udp://127.0.0.1:5353\"]}\n");
	const char *args[] = { "-c", path, NULL };
	const char *env[] = { "PATH=/bin", "DNSGW_LOG_LEVEL=warn",
			      "DNSGW_LISTEN=udp://127.0.0.1:5301, tcp://127.0.0.1:5301 dot://127.0.0.1:5302",
			      "DNSGW_LOG_FORMAT=json", "DNSGW_CERT=", NULL };
	assert_int_equal(build(args, env), 0);
	unlink(path);
	assert_int_equal(conf.log_level, GW_LOG_WARN);
	assert_int_equal(conf.log_format, GW_LOG_JSON);
	assert_int_equal(conf.threads, 2);
	assert_int_equal(conf.n_listen, 3);
	assert_string_equal(conf.listen[0].url, "udp://127.0.0.1:5301");
	assert_string_equal(conf.listen[1].url, "tcp://127.0.0.1:5301");
	assert_string_equal(conf.listen[2].url, "dot://127.0.0.1:5302");
	assert_int_equal(conf.n_upstream, 1);
	assert_int_equal(conf.upstream[0].port, 5353);
}

static void test_config_env_config_file(void **state)
{
	char p1[64], p2[64];
	(void)state;
	write_tmp(p1, "threads: 4\n");
	write_tmp(p2, "threads: 5\n");
	char e1[100];
	snprintf(e1, sizeof(e1), "DNSGW_CONFIG=%s", p1);
	const char *env[] = { e1, NULL };
	assert_int_equal(build(NULL, env), 0);
	assert_int_equal(conf.threads, 4);
	const char *args[] = { "-c", p2, NULL };
	assert_int_equal(build(args, env), 0); /* the flag wins */
	assert_int_equal(conf.threads, 5);
	assert_string_equal(conf.config_file, p2);
	unlink(p1);
	unlink(p2);
}

static void test_config_flags_override_env(void **state)
{
	(void)state;
	const char *env[] = { "DNSGW_THREADS=3", "DNSGW_LOG_LEVEL=error",
			      "DNSGW_UPSTREAM=udp://127.0.0.1:5353",
			      "DNSGW_ADMIN=127.0.0.1:9000",
			      "DNSGW_QUERY_LOG=false", NULL };
	const char *args[] = { "--threads", "5", "--log-level", "debug",
			       "--admin", "[::1]:9153", "--query-log",
			       "--log-format=json", NULL };
	assert_int_equal(build(args, env), 0);
	assert_int_equal(conf.threads, 5);
	assert_int_equal(conf.log_level, GW_LOG_DEBUG);
	assert_int_equal(conf.log_format, GW_LOG_JSON);
	assert_string_equal(conf.admin, "[::1]:9153");
	assert_int_equal(conf.admin_addr.ss_family, AF_INET6);
	assert_true(conf.query_log);
	assert_int_equal(conf.n_upstream, 1);
	assert_int_equal(conf.upstream[0].port, 5353);

	const char *args2[] = { "--upstream", "tcp://127.0.0.1:5400", NULL };
	assert_int_equal(build(args2, env), 0);
	assert_int_equal(conf.threads, 3);
	assert_int_equal(conf.n_upstream, 1);
	assert_int_equal(conf.upstream[0].proto, GW_PROTO_TCP);
}

static void test_config_repeatable_listen_replaces(void **state)
{
	char path[64];
	(void)state;
	write_tmp(path, "listen: [\"dot://127.0.0.1:853\", "
			"\"doh://127.0.0.1:443\", \"udp://127.0.0.1:53\"]\n");
	const char *args[] = { "-c", path, "--listen", "udp://127.0.0.1:5300",
			       "--listen", "doq://[::1]:8853", "--upstream",
			       "udp://127.0.0.1:5353", NULL };
	const char *env[] = { "DNSGW_LISTEN=tcp://127.0.0.1:1", NULL };
	assert_int_equal(build(args, env), 0);
	unlink(path);
	assert_int_equal(conf.n_listen, 2);
	assert_string_equal(conf.listen[0].url, "udp://127.0.0.1:5300");
	assert_string_equal(conf.listen[1].url, "doq://[::1]:8853");
	assert_int_equal(conf.listen[1].proto, GW_PROTO_DOQ);
}

static void test_config_unknown_env_rejected(void **state)
{
	(void)state;
	const char *env[] = { "HOME=/root", "DNSGW_LISTN=udp://127.0.0.1:1",
			      NULL };
	assert_int_equal(build(NULL, env), GW_ECONFIG);
	assert_int_equal(strncmp(err, "DNSGW_LISTN: unknown environment "
				 "variable", 33), 0);

	const char *env2[] = { "DNSGW_THREADS=lots", NULL };
	assert_int_equal(build(NULL, env2), GW_ECONFIG);
	assert_err_has("DNSGW_THREADS: 'lots' is not a number");

	const char *env3[] = { "DNSGW_LISTEN=dot://127.0.0.1:0", NULL };
	assert_int_equal(build(NULL, env3), GW_ECONFIG);
	assert_err_has("DNSGW_LISTEN: 'dot://127.0.0.1:0': bad port");
}

static void test_config_flag_errors(void **state)
{
	(void)state;
	const char *a1[] = { "--frobnicate", NULL };
	assert_int_equal(build(a1, NULL), GW_ECONFIG);
	assert_string_equal(err, "--frobnicate: unknown option (see dnsgw -h)");

	const char *a2[] = { "--listen", NULL };
	assert_int_equal(build(a2, NULL), GW_ECONFIG);
	assert_string_equal(err, "--listen: missing argument");

	const char *a3[] = { "-q", NULL };
	assert_int_equal(build(a3, NULL), GW_ECONFIG);
	assert_err_has("-q: unknown option");

	const char *a4[] = { "--threads", "abc", NULL };
	assert_int_equal(build(a4, NULL), GW_ECONFIG);
	assert_err_has("--threads: 'abc' is not a number");

	const char *a5[] = { "--listen", "dot://127.0.0.1", "--listen",
			     "tls://127.0.0.1", NULL };
	assert_int_equal(build(a5, NULL), GW_ECONFIG);
	assert_err_has("--listen: 'tls://127.0.0.1': unknown listener scheme "
		       "'tls' (expected dot, doh, doq, udp, tcp, h2c)");

	const char *a6[] = { "--log-level", "loud", NULL };
	assert_int_equal(build(a6, NULL), GW_ECONFIG);
	assert_err_has("--log-level: unknown level 'loud'");

	const char *a7[] = { "--query-log=yes", NULL };
	assert_int_equal(build(a7, NULL), GW_ECONFIG);
	assert_err_has("--query-log: takes no argument");

	const char *a8[] = { "stray", NULL };
	assert_int_equal(build(a8, NULL), GW_ECONFIG);
	assert_err_has("stray: unexpected argument");

	const char *a9[] = { "--cert", "/tmp/c.pem", NULL };
	assert_int_equal(build(a9, NULL), GW_ECONFIG);
	assert_err_has("--key");

	const char *a10[] = { "-c", NULL };
	assert_int_equal(build(a10, NULL), GW_ECONFIG);
	assert_string_equal(err, "-c: missing argument");
}

static void test_config_help_version_actions(void **state)
{
	gw_action_t a;
	(void)state;
	const char *a1[] = { "--bogus", "-h", NULL };
	assert_int_equal(build_r(resolv_default, &a, a1, NULL), 0);
	assert_int_equal(a, GW_ACTION_HELP);

	const char *env[] = { "DNSGW_NOPE=1", NULL };
	const char *a2[] = { "-V", "--listen", "garbage", NULL };
	assert_int_equal(build_r("/nonexistent", &a, a2, env), 0);
	assert_int_equal(a, GW_ACTION_VERSION);

	const char *a3[] = { "--help", NULL };
	assert_int_equal(build_r(resolv_default, &a, a3, NULL), 0);
	assert_int_equal(a, GW_ACTION_HELP);

	const char *a4[] = { "-t", "--upstream", "udp://127.0.0.1:5353", NULL };
	assert_int_equal(build_r(resolv_default, &a, a4, NULL), 0);
	assert_int_equal(a, GW_ACTION_CHECK);

	/* Usage mentions every flag and variable. */
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	gw_conf_usage(m);
	fclose(m);
	static const char *const words[] = {
		"-c", "-t", "-V", "-h", "--listen", "--upstream", "--cert",
		"--key", "--admin", "--threads", "--log-level", "--log-format",
		"--query-log", "DNSGW_CONFIG", "DNSGW_LISTEN", "DNSGW_UPSTREAM",
		"DNSGW_CERT", "DNSGW_KEY", "DNSGW_ADMIN", "DNSGW_THREADS",
		"DNSGW_LOG_LEVEL", "DNSGW_LOG_FORMAT", "Example",
	};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		assert_non_null(strstr(buf, words[i]));
	free(buf);
}

/* ------------------------------------------------------- endpoints */

struct ep_case {
	const char *url;
	bool upstream;
	int ok;
	gw_proto_t proto;
	const char *host;
	uint16_t port;
	int family; /* AF_UNSPEC: a name, addrlen 0 */
	const char *path;
	const char *tls_name;
	const char *reason; /* substring of err when !ok */
};

static const struct ep_case ep_cases[] = {
	{ "dot://127.0.0.1:853", false, 1, GW_PROTO_DOT, "127.0.0.1", 853,
	  AF_INET, "", "", NULL },
	{ "dot://127.0.0.1", false, 1, GW_PROTO_DOT, "127.0.0.1", 853, AF_INET,
	  "", "", NULL },
	{ "DOT://127.0.0.1", false, 1, GW_PROTO_DOT, "127.0.0.1", 853, AF_INET,
	  "", "", NULL },
	{ "doh://[::1]", false, 1, GW_PROTO_DOH, "::1", 443, AF_INET6,
	  "/dns-query", "", NULL },
	{ "doh://0.0.0.0:8443/q", false, 1, GW_PROTO_DOH, "0.0.0.0", 8443,
	  AF_INET, "/q", "", NULL },
	{ "doq://[::]:8853", false, 1, GW_PROTO_DOQ, "::", 8853, AF_INET6, "",
	  "", NULL },
	{ "udp://127.0.0.1", false, 1, GW_PROTO_UDP, "127.0.0.1", 53, AF_INET,
	  "", "", NULL },
	{ "tcp://[fe80::1%1]:53", false, 1, GW_PROTO_TCP, "fe80::1%1", 53,
	  AF_INET6, "", "", NULL },
	{ "h2c://127.0.0.1", false, 1, GW_PROTO_H2C, "127.0.0.1", 80, AF_INET,
	  "/dns-query", "", NULL },
	{ "udp://127.0.0.1:5353", true, 1, GW_PROTO_UDP, "127.0.0.1", 5353,
	  AF_INET, "", "", NULL },
	{ "tcp://[2001:db8::1]", true, 1, GW_PROTO_TCP, "2001:db8::1", 53,
	  AF_INET6, "", "", NULL },
	{ "tls://192.0.2.1#dns.example", true, 1, GW_PROTO_DOT, "192.0.2.1",
	  853, AF_INET, "", "dns.example", NULL },
	{ "tls://192.0.2.1", true, 1, GW_PROTO_DOT, "192.0.2.1", 853, AF_INET,
	  "", "", NULL },
	{ "tls://dns.example:8853", true, 1, GW_PROTO_DOT, "dns.example", 8853,
	  AF_UNSPEC, "", "dns.example", NULL },
	{ "https://dns.example/dns-query", true, 1, GW_PROTO_DOH,
	  "dns.example", 443, AF_UNSPEC, "/dns-query", "dns.example", NULL },
	{ "https://dns.example", true, 1, GW_PROTO_DOH, "dns.example", 443,
	  AF_UNSPEC, "/dns-query", "dns.example", NULL },
	{ "https://[2001:db8::2]:8443/q#doh.example", true, 1, GW_PROTO_DOH,
	  "2001:db8::2", 8443, AF_INET6, "/q", "doh.example", NULL },
	{ "quic://127.0.0.1:8853#dns.example", true, 1, GW_PROTO_DOQ,
	  "127.0.0.1", 8853, AF_INET, "", "dns.example", NULL },

	{ "", false, 0, 0, NULL, 0, 0, NULL, NULL, "empty URL" },
	{ "127.0.0.1:853", false, 0, 0, NULL, 0, 0, NULL, NULL,
	  "missing scheme" },
	{ "foo://127.0.0.1", false, 0, 0, NULL, 0, 0, NULL, NULL,
	  "unknown listener scheme 'foo' (expected dot, doh, doq, udp, tcp, "
	  "h2c)" },
	{ "dot://127.0.0.1", true, 0, 0, NULL, 0, 0, NULL, NULL,
	  "unknown upstream scheme 'dot' (expected udp, tcp, tls, https, "
	  "quic)" },
	{ "dot://127.0.0.1:0", false, 0, 0, NULL, 0, 0, NULL, NULL,
	  "bad port '0'" },
	{ "dot://127.0.0.1:65536", false, 0, 0, NULL, 0, 0, NULL, NULL,
	  "bad port" },
	{ "dot://127.0.0.1:", false, 0, 0, NULL, 0, 0, NULL, NULL,
	  "bad port ''" },
	{ "dot://127.0.0.1:85x", false, 0, 0, NULL, 0, 0, NULL, NULL,
	  "bad port" },
	{ "dot://::1:853", false, 0, 0, NULL, 0, 0, NULL, NULL,
	  "need brackets" },
	{ "dot://[::1:853", false, 0, 0, NULL, 0, 0, NULL, NULL,
	  "missing ']'" },
	{ "dot://[::g]:853", false, 0, 0, NULL, 0, 0, NULL, NULL,
	  "bad IPv6 address" },
	{ "dot://[::1]x", false, 0, 0, NULL, 0, 0, NULL, NULL,
	  "after ']'" },
	{ "dot://:853", false, 0, 0, NULL, 0, 0, NULL, NULL, "missing host" },
	{ "dot://localhost:853", false, 0, 0, NULL, 0, 0, NULL, NULL,
	  "not a numeric IP address" },
	{ "udp://dns.example", true, 0, 0, NULL, 0, 0, NULL, NULL,
	  "not a numeric IP address" },
	{ "dot://127.0.0.1/x", false, 0, 0, NULL, 0, 0, NULL, NULL,
	  "a path is only allowed" },
	{ "dot://127.0.0.1#name", false, 0, 0, NULL, 0, 0, NULL, NULL,
	  "'#name' is only allowed" },
	{ "udp://127.0.0.1#name", true, 0, 0, NULL, 0, 0, NULL, NULL,
	  "'#name' is only allowed" },
	{ "tls://127.0.0.1#", true, 0, 0, NULL, 0, 0, NULL, NULL,
	  "bad TLS name" },
	{ "https://dns.example/q?dns=x", true, 0, 0, NULL, 0, 0, NULL, NULL,
	  "query strings" },
	{ "https://bad_-.example-/", true, 0, 0, NULL, 0, 0, NULL, NULL,
	  "bad host" },
	{ "https://1.2.3/", true, 0, 0, NULL, 0, 0, NULL, NULL, "bad host" },
	{ "https://user@dns.example/", true, 0, 0, NULL, 0, 0, NULL, NULL,
	  "user names" },
	{ "dot://127.0.0.1 :853", false, 0, 0, NULL, 0, 0, NULL, NULL,
	  "space" },
	{ "dot://999.0.0.1", false, 0, 0, NULL, 0, 0, NULL, NULL,
	  "not a numeric IP address" },
};

static void test_config_endpoint_parse_table(void **state)
{
	gw_endpoint_t ep;
	char why[200];
	(void)state;

	for (size_t i = 0; i < sizeof(ep_cases) / sizeof(ep_cases[0]); i++) {
		const struct ep_case *t = &ep_cases[i];
		why[0] = '\0';
		int r = gw_endpoint_parse(t->url, t->upstream, &ep, why,
					  sizeof(why));
		if ((r == 0) != (t->ok == 1)) {
			print_error("case %zu '%s': r=%d why=%s\n", i, t->url, r,
				    why);
			fail();
		}
		if (!t->ok) {
			assert_int_equal(r, GW_EINVAL);
			if (!strstr(why, t->reason)) {
				print_error("case '%s': got '%s' want '%s'\n",
					    t->url, why, t->reason);
				fail();
			}
			continue;
		}
		assert_string_equal(ep.url, t->url);
		assert_int_equal(ep.proto, t->proto);
		assert_string_equal(ep.host, t->host);
		assert_int_equal(ep.port, t->port);
		assert_string_equal(ep.path, t->path);
		assert_string_equal(ep.tls_name, t->tls_name);
		if (t->family == AF_UNSPEC) {
			assert_int_equal(ep.addrlen, 0);
			continue;
		}
		assert_int_equal(ep.addr.ss_family, t->family);
		if (t->family == AF_INET) {
			struct sockaddr_in *s = (struct sockaddr_in *)&ep.addr;
			char txt[INET_ADDRSTRLEN];
			assert_int_equal(ep.addrlen, sizeof(*s));
			assert_int_equal(ntohs(s->sin_port), t->port);
			inet_ntop(AF_INET, &s->sin_addr, txt, sizeof(txt));
			assert_string_equal(txt, t->host);
		} else {
			struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ep.addr;
			assert_int_equal(ep.addrlen, sizeof(*s));
			assert_int_equal(ntohs(s->sin6_port), t->port);
		}
	}

	/* Scope ids survive, so link-local upstreams work. */
	assert_int_equal(gw_endpoint_parse("udp://[fe80::1%1]:53", true, &ep,
					   why, sizeof(why)), 0);
	assert_int_equal(((struct sockaddr_in6 *)&ep.addr)->sin6_scope_id, 1);

	/* Over-long URL. */
	char big[GW_CONF_MAX_URL + 10];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "https://", 8);
	assert_int_equal(gw_endpoint_parse(big, true, &ep, why, sizeof(why)),
			 GW_EINVAL);
	assert_non_null(strstr(why, "too long"));

	struct sockaddr_storage ss;
	socklen_t sl;
	assert_int_equal(gw_conf_parse_addr("127.0.0.1:9153", &ss, &sl, why,
					    sizeof(why)), 0);
	assert_int_equal(sl, sizeof(struct sockaddr_in));
	assert_int_equal(gw_conf_parse_addr("127.0.0.1", &ss, &sl, why,
					    sizeof(why)), GW_EINVAL);
	assert_non_null(strstr(why, "missing port"));
	assert_string_equal(gw_proto_scheme(GW_PROTO_DOT, true), "tls");
	assert_string_equal(gw_proto_scheme(GW_PROTO_DOT, false), "dot");
}

/* ------------------------------------------------------- resolv.conf */

static int build_resolv(const char *text, const char **args)
{
	char path[64];
	write_tmp(path, text);
	int r = build_r(path, NULL, args, NULL);
	unlink(path);
	return r;
}

static void test_config_resolv_conf(void **state)
{
	(void)state;
	assert_int_equal(build_resolv("; comment\n# nameserver 10.0.0.1\n"
				      "search example\n"
				      "  nameserver\t192.0.2.7  # office\n"
				      "nameserver 192.0.2.8\n", NULL), 0);
	assert_int_equal(conf.n_upstream, 1);
	assert_string_equal(conf.upstream[0].url, "udp://192.0.2.7:53");
	assert_int_equal(conf.upstream[0].proto, GW_PROTO_UDP);

	assert_int_equal(build_resolv("nameserver 2001:db8::53\n", NULL), 0);
	assert_string_equal(conf.upstream[0].url, "udp://[2001:db8::53]:53");
	assert_int_equal(conf.upstream[0].addr.ss_family, AF_INET6);

	assert_int_equal(build_resolv("nameserver fe80::1%lo\n", NULL), 0);
	assert_int_equal(conf.upstream[0].addr.ss_family, AF_INET6);
	assert_true(((struct sockaddr_in6 *)&conf.upstream[0].addr)
			    ->sin6_scope_id > 0);

	/* A very long line is skipped whole, not half-read. */
	char text[2000];
	memset(text, ' ', sizeof(text));
	memcpy(text, "search ", 7);
	memcpy(text + 1000, "nameserver 10.9.9.9", 19);
	strcpy(text + 1500, "\nnameserver 192.0.2.9\n");
	assert_int_equal(build_resolv(text, NULL), 0);
	assert_string_equal(conf.upstream[0].url, "udp://192.0.2.9:53");

	/* An explicit upstream means resolv.conf is never read. */
	const char *up[] = { "--upstream", "udp://127.0.0.1:5353", NULL };
	assert_int_equal(build_r("/nonexistent/resolv.conf", NULL, up, NULL),
			 0);
}

static void test_config_resolv_conf_errors(void **state)
{
	(void)state;
	assert_int_equal(build_r("/nonexistent/resolv.conf", NULL, NULL, NULL),
			 GW_ECONFIG);
	assert_err_has("cannot be read");
	assert_err_has("--upstream");

	assert_int_equal(build_resolv("search example\n", NULL), GW_ECONFIG);
	assert_err_has("names no nameserver");
	assert_err_has("--upstream");

	assert_int_equal(build_resolv("nameserver bogus\n", NULL), GW_ECONFIG);
	assert_err_has("unusable");

	assert_int_equal(build_resolv("nameserver 0.0.0.0\n", NULL), GW_ECONFIG);
	assert_err_has("unusable");

	assert_int_equal(build_resolv("nameserver fe80::1%nosuchif0\n", NULL),
			 GW_ECONFIG);
	assert_err_has("unusable");
}

static void test_config_resolv_conf_loop(void **state)
{
	(void)state;
	/* Our own Do53 listener on port 53. */
	const char *a1[] = { "--listen", "udp://127.0.0.1:53", NULL };
	assert_int_equal(build_resolv("nameserver 127.0.0.1\n", a1),
			 GW_ECONFIG);
	assert_err_has("loop");
	assert_err_has("udp://127.0.0.1:53");
	assert_err_has("--upstream");

	/* TCP listener too: truncated answers retry over TCP. */
	const char *a2[] = { "--listen", "tcp://[::1]:53", NULL };
	assert_int_equal(build_resolv("nameserver ::1\n", a2), GW_ECONFIG);
	assert_err_has("loop");

	/* A wildcard listener answers on every local address. */
	const char *a3[] = { "--listen", "udp://0.0.0.0:53", NULL };
	assert_int_equal(build_resolv("nameserver 127.0.0.53\n", a3),
			 GW_ECONFIG);
	assert_err_has("loop");
	const char *a4[] = { "--listen", "udp://[::]:53", NULL };
	assert_int_equal(build_resolv("nameserver 127.0.0.1\n", a4),
			 GW_ECONFIG);

	/* Same address, other port, or a DoT listener on 53: no loop. */
	const char *a5[] = { "--listen", "udp://127.0.0.1:5300", "--listen",
			     "dot://127.0.0.1:53", NULL };
	assert_int_equal(build_resolv("nameserver 127.0.0.1\n", a5), 0);
	const char *a6[] = { "--listen", "udp://0.0.0.0:53", NULL };
	assert_int_equal(build_resolv("nameserver 192.0.2.1\n", a6), 0);

	/* An explicit upstream that is our own listener. */
	const char *a7[] = { "--listen", "dot://127.0.0.1:8853", "--upstream",
			     "tls://127.0.0.1:8853#x.example", NULL };
	assert_int_equal(build(a7, NULL), GW_ECONFIG);
	assert_err_has("loop");
}

/* -------------------------------------------------------------- log */

/* Runs fn with fd 2 redirected to a file; returns what it wrote. */
static char logbuf[8192];

static const char *capture_start(int *saved, char *path)
{
	strcpy(path, "/tmp/test_config_log_XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	*saved = dup(2);
	dup2(fd, 2);
	close(fd);
	return path;
}

static const char *capture_end(int saved, const char *path)
{
	dup2(saved, 2);
	close(saved);
	int fd = open(path, O_RDONLY);
	ssize_t n = read(fd, logbuf, sizeof(logbuf) - 1);
	close(fd);
	unlink(path);
	logbuf[n > 0 ? n : 0] = '\0';
	return logbuf;
}

/* The line without its timestamp. */
static const char *after_ts(const char *line, bool json)
{
	const char *p;
	if (json) {
		assert_int_equal(strncmp(line, "{\"ts\":\"", 7), 0);
		p = strchr(line + 7, '"');
		assert_non_null(p);
		/* 2026-11-29T17:00:00.123Z */
		assert_int_equal(p - (line + 7), 24);
		return p + 1;
	}
	assert_int_equal(strncmp(line, "ts=", 3), 0);
	p = strchr(line, ' ');
	assert_non_null(p);
	assert_int_equal(p - (line + 3), 24);
	assert_int_equal(line[3 + 23], 'Z');
	return p;
}

static void test_config_log_logfmt(void **state)
{
	int saved;
	char path[64];
	(void)state;
	gw_log_setup(GW_LOG_INFO, 0);
	capture_start(&saved, path);
	gw_log(GW_LOG_INFO, "main", "ready", "key", "value", "sp", "a b",
	       "q", "say \"hi\"", "bs", "back\\slash", "eq", "x=y", "empty", "",
	       "nl", "line\nbreak\tx\x01", "utf8", "caf\xc3\xa9", "bad",
	       "\xff", NULL);
	gw_log(GW_LOG_DEBUG, "main", "hidden", NULL);
	gw_log(GW_LOG_ERROR, "up", "odd", "k", NULL);
	const char *out = capture_end(saved, path);
	const char *nl = strchr(out, '\n');
	assert_non_null(nl);
	char first[1024];
	memcpy(first, out, (size_t)(nl - out + 1));
	first[nl - out + 1] = '\0';
	assert_string_equal(after_ts(first, false),
		" level=info subsystem=main msg=\"ready\" key=value sp=\"a b\""
		" q=\"say \\\"hi\\\"\" bs=\"back\\\\slash\" eq=\"x=y\""
		" empty=\"\" nl=\"line\\nbreak\\tx\\u0001\""
		" utf8=\"caf\xc3\xa9\" bad=\"\\xff\"\n");
	/* The debug line was filtered; a key without value ends the list. */
	assert_string_equal(after_ts(nl + 1, false),
		" level=error subsystem=up msg=\"odd\" k=\"\"\n");
}

static void test_config_log_json(void **state)
{
	int saved;
	char path[64];
	(void)state;
	gw_log_setup(GW_LOG_DEBUG, 1);
	capture_start(&saved, path);
	gw_log(GW_LOG_WARN, "doh", "bad \"request\"", "path", "/dns-query?x",
	       "ctl", "a\x1f" "b\\c\n", "bad", "x\xc0\xafy", NULL);
	const char *out = capture_end(saved, path);
	gw_log_setup(GW_LOG_INFO, 0);
	const char *rest = after_ts(out, true);
	assert_string_equal(rest,
		",\"level\":\"warn\",\"subsystem\":\"doh\","
		"\"msg\":\"bad \\\"request\\\"\",\"path\":\"/dns-query?x\","
		"\"ctl\":\"a\\u001fb\\\\c\\n\",\"bad\":\"x\\ufffd\\ufffdy\"}\n");
}

static void test_config_log_truncates_cleanly(void **state)
{
	int saved;
	char path[64];
	static char big[5000];
	(void)state;
	/* Quotes escape to two bytes each: the cut must not split one. */
	memset(big, '"', sizeof(big) - 1);
	for (int json = 0; json <= 1; json++) {
		gw_log_setup(GW_LOG_INFO, json);
		capture_start(&saved, path);
		gw_log(GW_LOG_INFO, "main", "long", "v", big, "after", "x", NULL);
		const char *out = capture_end(saved, path);
		size_t n = strlen(out);
		assert_true(n <= 2048);
		assert_int_equal(out[n - 1], '\n');
		assert_int_equal(strchr(out, '\n'), out + n - 1);
		assert_null(strstr(out, "after"));
		if (json) {
			assert_non_null(strstr(out, "\",\"truncated\":true}\n"));
		} else {
			assert_non_null(strstr(out, "\" truncated=true\n"));
		}
		/* Every quote inside the value is escaped: pairs of \" . */
		const char *v = strstr(out, json ? "\"v\":\"" : "v=\"");
		assert_non_null(v);
		v += json ? 5 : 3;
		const char *end = strstr(v, json ? "\",\"truncated" : "\" trunc");
		assert_int_equal((end - v) % 2, 0);
		for (const char *p = v; p < end; p += 2)
			assert_int_equal(memcmp(p, "\\\"", 2), 0);
	}
	gw_log_setup(GW_LOG_INFO, 0);
}

static void test_config_log_levels(void **state)
{
	(void)state;
	assert_int_equal(gw_log_level_parse("error"), GW_LOG_ERROR);
	assert_int_equal(gw_log_level_parse("warn"), GW_LOG_WARN);
	assert_int_equal(gw_log_level_parse("info"), GW_LOG_INFO);
	assert_int_equal(gw_log_level_parse("debug"), GW_LOG_DEBUG);
	assert_int_equal(gw_log_level_parse("loud"), -1);
	assert_int_equal(gw_log_level_parse(NULL), -1);
	gw_log_setup(GW_LOG_ERROR, 0);
	assert_int_equal(gw_log_level(), GW_LOG_ERROR);
	gw_log_setup(99, 0);
	assert_int_equal(gw_log_level(), GW_LOG_DEBUG);
	gw_log_setup(GW_LOG_INFO, 0);
}

/* ------------------------------------------------- upstream pool keys */

static void test_config_bootstrap(void **state)
{
	char path[64];
	const struct sockaddr_in *s4 =
		(const struct sockaddr_in *)&conf.up.bootstrap_addr;
	(void)state;
	gw_conf_defaults(&conf);
	assert_string_equal(conf.up.bootstrap, "");
	assert_int_equal(conf.up.bootstrap_addrlen, 0);
	/* a bare address means port 53 */
	assert_int_equal(build_yaml(path, "upstream: {bootstrap: 127.0.0.2}\n"),
			 0);
	assert_string_equal(conf.up.bootstrap, "127.0.0.2");
	assert_int_equal(s4->sin_family, AF_INET);
	assert_int_equal(ntohs(s4->sin_port), 53);
	/* the flag wins over the environment and the file; with a port */
	const char *args[] = { "--bootstrap", "127.0.0.3:5353", NULL };
	const char *env[] = { "DNSGW_BOOTSTRAP=127.0.0.4", NULL };
	assert_int_equal(build(args, env), 0);
	assert_int_equal(ntohs(s4->sin_port), 5353);
	assert_int_equal(s4->sin_addr.s_addr, htonl(0x7f000003));
	assert_int_equal(build(NULL, env), 0);
	assert_string_equal(conf.up.bootstrap, "127.0.0.4");
	const char *v6[] = { "--bootstrap", "::1", NULL };
	assert_int_equal(build(v6, NULL), 0);
	assert_int_equal(conf.up.bootstrap_addr.ss_family, AF_INET6);
	/* names are not accepted: the bootstrap resolver cannot need one */
	const char *bad[] = { "--bootstrap", "dns.example", NULL };
	assert_int_equal(build(bad, NULL), GW_ECONFIG);
	assert_err_has("--bootstrap: 'dns.example'");
	assert_int_equal(build_yaml(path, "upstream:\n"
					  "  bootstrap: 127.0.0.1:99999\n"),
			 GW_ECONFIG);
	assert_pos(path, 2, 14, "upstream.bootstrap");
}

static void test_config_upstream_pool_keys(void **state)
{
	char path[64];
	(void)state;
	gw_conf_defaults(&conf);
	assert_int_equal(conf.up.policy, GW_UP_POLICY_ORDERED);
	assert_int_equal(conf.up.max_conns_per_upstream, 8);
	assert_int_equal(conf.up.max_inflight_per_conn, 100);
	assert_int_equal(conf.up.idle_timeout_ms, 60000);
	assert_int_equal(conf.up.max_queries_per_conn, 0);
	assert_string_equal(conf.up.ca_file, "");
	assert_string_equal(conf.up.probe_name, ".");
	assert_int_equal(conf.up.probe_type, 2);
	assert_int_equal(conf.up.probe_interval_ms, 0);

	assert_int_equal(
		build_yaml(path,
			   "upstream:\n"
			   "  servers: [\"tls://127.0.0.1:853#dns.example\",\n"
			   "            \"udp://127.0.0.1:53\"]\n"
			   "  policy: lowest-latency\n"
			   "  ca_file: /tmp/ca.pem\n"
			   "  weights: [3, 1]\n"
			   "  pins: [\"dns.example=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"]\n"
			   "  max_conns_per_upstream: 2\n"
			   "  max_inflight_per_conn: 50\n"
			   "  max_queries_per_conn: 1000\n"
			   "  idle_timeout_ms: 5000\n"
			   "  max_waiting_per_upstream: 700\n"
			   "  probe: {name: example.com, type: AAAA, "
			   "interval_ms: 1000, rise: 1, fall: 2}\n"),
		0);
	assert_int_equal(conf.up.policy, GW_UP_POLICY_LOWEST_LATENCY);
	assert_string_equal(conf.up.ca_file, "/tmp/ca.pem");
	assert_int_equal(conf.up.weight[0], 3);
	assert_int_equal(conf.up.weight[1], 1);
	assert_string_equal(conf.up.pin[0],
			    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
	assert_string_equal(conf.up.pin[1], "");
	assert_int_equal(conf.up.max_conns_per_upstream, 2);
	assert_int_equal(conf.up.max_inflight_per_conn, 50);
	assert_int_equal(conf.up.max_queries_per_conn, 1000);
	assert_int_equal(conf.up.idle_timeout_ms, 5000);
	assert_int_equal(conf.up.max_waiting_per_upstream, 700);
	assert_string_equal(conf.up.probe_name, "example.com");
	assert_int_equal(conf.up.probe_type, 28);
	assert_int_equal(conf.up.probe_interval_ms, 1000);
	assert_int_equal(conf.up.probe_rise, 1);
	assert_int_equal(conf.up.probe_fall, 2);

	assert_int_equal(build_yaml(path, "upstream: {policy: fastest}\n"),
			 GW_ECONFIG);
	assert_pos(path, 1, 20, "unknown policy 'fastest'");
	assert_int_equal(build_yaml(path, "upstream:\n"
					  "  max_inflight_per_conn: 0\n"),
			 GW_ECONFIG);
	assert_pos(path, 2, 26, "out of range (1..65535)");
	assert_int_equal(build_yaml(path, "upstream:\n"
					  "  probe: {type: BOGUS}\n"),
			 GW_ECONFIG);
	assert_err_has("unknown type 'BOGUS'");
	assert_int_equal(build_yaml(path, "upstream:\n"
					  "  servers: [\"udp://127.0.0.1\"]\n"
					  "  pins: [\"x.example=short\"]\n"),
			 GW_ECONFIG);
	assert_err_has("expected NAME=PIN");
	assert_int_equal(
		build_yaml(path,
			   "upstream:\n"
			   "  servers: [\"udp://127.0.0.1\"]\n"
			   "  pins: [\"x.example=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"]\n"),
		GW_ECONFIG);
	assert_err_has("no tls:// server has the name 'x.example'");
	assert_int_equal(build_yaml(path, "upstream: {weights: [0]}\n"),
			 GW_ECONFIG);
	assert_err_has("upstream.weights[0]");

	/* --ca-file beats the file */
	write_tmp(path, "upstream: {ca_file: /from/file.pem}\n");
	const char *args[] = { "-c", path, "--ca-file", "/from/flag.pem", NULL };
	assert_int_equal(build(args, NULL), 0);
	unlink(path);
	assert_string_equal(conf.up.ca_file, "/from/flag.pem");

	assert_int_equal(gw_up_policy_parse("round-robin"),
			 GW_UP_POLICY_ROUND_ROBIN);
	assert_int_equal(gw_up_policy_parse("random"), GW_UP_POLICY_RANDOM);
	assert_int_equal(gw_up_policy_parse("least-outstanding"),
			 GW_UP_POLICY_LEAST_OUTSTANDING);
	assert_int_equal(gw_up_policy_parse("Ordered"), -1);
}

/* user: file, environment and flag (the flag wins); names checked. */
static void test_config_user(void **state)
{
	char path[64];
	(void)state;
	const char *none[] = { NULL };
	assert_int_equal(build(none, NULL), 0);
	assert_string_equal(conf.user, ""); /* default: stay who we are */

	assert_int_equal(build_yaml(path, "user: dnsgw\n"), 0);
	assert_string_equal(conf.user, "dnsgw");
	assert_int_equal(build_yaml(path, "user: \"\"\n"), 0);
	assert_string_equal(conf.user, "");
	assert_int_equal(build_yaml(path, "threads: 1\nuser: \"bad user\"\n"),
			 GW_ECONFIG);
	assert_pos(path, 2, 7, "not a user name");

	const char *env[] = { "DNSGW_USER=nobody", NULL };
	assert_int_equal(build(none, env), 0);
	assert_string_equal(conf.user, "nobody");
	const char *flags[] = { "--user", "_dnsgw", NULL };
	assert_int_equal(build(flags, env), 0);
	assert_string_equal(conf.user, "_dnsgw");

	const char *bad[] = { "--user", "-root", NULL };
	assert_int_equal(build(bad, NULL), GW_ECONFIG);
	assert_err_has("--user");
	const char *longu[] = { "--user",
				"a123456789012345678901234567890123", NULL };
	assert_int_equal(build(longu, NULL), GW_ECONFIG);
	assert_err_has("1 to 32 characters");
	const char *envbad[] = { "DNSGW_USER=a:b", NULL };
	assert_int_equal(build(none, envbad), GW_ECONFIG);
	assert_err_has("DNSGW_USER");
}

/* policy: ACLs, rate limits, ECS, PROXY v2, log.anonymize (docs/policy.md) */
static void test_config_policy(void **state)
{
	char path[64];
	(void)state;
	gw_conf_defaults(&conf);
	assert_int_equal(conf.policy.acl.n, 0);
	assert_int_equal(conf.policy.qps, 0);
	assert_int_equal(conf.policy.conn_rate, 0);
	assert_int_equal(conf.policy.slip, 2);
	assert_int_equal(conf.policy.ratelimit_clients, 65536);
	assert_false(conf.policy.ecs_add);
	assert_int_equal(conf.policy.ecs_ipv4_prefix, 24);
	assert_int_equal(conf.policy.ecs_ipv6_prefix, 56);
	assert_false(conf.policy.log_anonymize);
	assert_int_equal(conf.policy.n_proxy_listen, 0);

	assert_int_equal(
		build_yaml(path,
			   "upstream: {servers: [udp://127.0.0.1]}\n"
			   "listen: [udp://127.0.0.1:5300, tcp://127.0.0.1:5300]\n"
			   "log: {queries: true, anonymize: true}\n"
			   "policy:\n"
			   "  acl: [\"allow 127.0.0.0/8\", \"deny all\"]\n"
			   "  listener_acl:\n"
			   "    - listen: udp://127.0.0.1:5300\n"
			   "      acl: [\"deny 127.0.0.2\", \"allow ::1/128\"]\n"
			   "  ratelimit: {qps: 50, qps_burst: 100, conn_rate: 5,\n"
			   "              conn_burst: 10, slip: 0, clients: 1024}\n"
			   "  ecs: {add: true, ipv4_prefix: 20, ipv6_prefix: 48}\n"
			   "  proxy_protocol:\n"
			   "    listeners: [tcp://127.0.0.1:5300]\n"
			   "    trusted: [10.0.0.0/8, \"::1\"]\n"),
		0);
	assert_int_equal(conf.policy.acl.n, 2);
	assert_true(conf.policy.acl.rule[0].allow);
	assert_int_equal(conf.policy.acl.rule[0].net.prefix, 8);
	assert_false(conf.policy.acl.rule[1].allow);
	assert_int_equal(conf.policy.acl.rule[1].net.addr.ss_family, AF_UNSPEC);
	assert_int_equal(conf.policy.n_listener_acl, 1);
	assert_int_equal(conf.policy.listener_acl[0].listen.proto,
			 GW_PROTO_UDP);
	assert_int_equal(conf.policy.listener_acl[0].acl.n, 2);
	assert_int_equal(conf.policy.listener_acl[0].acl.rule[0].net.prefix,
			 32);
	assert_int_equal(conf.policy.qps, 50);
	assert_int_equal(conf.policy.qps_burst, 100);
	assert_int_equal(conf.policy.conn_rate, 5);
	assert_int_equal(conf.policy.conn_burst, 10);
	assert_int_equal(conf.policy.slip, 0);
	assert_int_equal(conf.policy.ratelimit_clients, 1024);
	assert_true(conf.policy.ecs_add);
	assert_int_equal(conf.policy.ecs_ipv4_prefix, 20);
	assert_int_equal(conf.policy.ecs_ipv6_prefix, 48);
	assert_true(conf.query_log);
	assert_true(conf.policy.log_anonymize);
	assert_int_equal(conf.policy.n_proxy_listen, 1);
	assert_int_equal(conf.policy.proxy_listen[0].proto, GW_PROTO_TCP);
	assert_int_equal(conf.policy.n_proxy_trusted, 2);
	assert_int_equal(conf.policy.proxy_trusted[1].prefix, 128);

	/* errors carry the position of the bad value */
	assert_int_equal(build_yaml(path, "policy:\n  acl: [\"permit 1.2.3.4\"]\n"),
			 GW_ECONFIG);
	assert_pos(path, 2, 9, "expected 'allow NET' or 'deny NET'");
	assert_int_equal(build_yaml(path, "policy:\n  acl: [\"deny 10.0.0.0/40\"]\n"),
			 GW_ECONFIG);
	assert_pos(path, 2, 9, "prefix length");
	assert_int_equal(
		build_yaml(path, "policy:\n  ecs: {ipv4_prefix: 33}\n"),
		GW_ECONFIG);
	assert_pos(path, 2, 22, "out of range");
	assert_int_equal(
		build_yaml(path, "policy:\n  ecs: {ipv6_prefix: 129}\n"),
		GW_ECONFIG);
	assert_err_has("out of range");
	assert_int_equal(
		build_yaml(path, "policy:\n  ratelimit: {clients: 10}\n"),
		GW_ECONFIG);
	assert_err_has("out of range");
	assert_int_equal(
		build_yaml(path, "policy:\n  ratelimit: {slip: 101}\n"),
		GW_ECONFIG);
	assert_err_has("out of range");
	/* datagram listeners take PROXY v2 too (one header per datagram) */
	assert_int_equal(build_yaml(path, "policy:\n  proxy_protocol:\n"
					  "    listeners: [udp://127.0.0.1:53,"
					  " doq://127.0.0.1:853]\n"),
			 0);
	assert_int_equal(conf.policy.n_proxy_listen, 2);
	assert_int_equal(conf.policy.proxy_listen[0].proto, GW_PROTO_UDP);
	assert_int_equal(conf.policy.proxy_listen[1].proto, GW_PROTO_DOQ);
	assert_int_equal(build_yaml(path, "policy:\n  proxy_protocol:\n"
					  "    listeners: [quic://127.0.0.1:53]\n"),
			 GW_ECONFIG);
	assert_err_has("policy.proxy_protocol.listeners");
	assert_int_equal(build_yaml(path, "policy:\n  proxy_protocol:\n"
					  "    trusted: [nope]\n"),
			 GW_ECONFIG);
	assert_pos(path, 3, 15, "not an IP address");
	assert_int_equal(build_yaml(path, "policy:\n  listener_acl:\n"
					  "    - listen: bogus://x\n"
					  "      acl: []\n"),
			 GW_ECONFIG);
	assert_err_has("policy.listener_acl[0].listen");
	assert_int_equal(build_yaml(path, "policy:\n  listener_acl:\n"
					  "    - acl: [\"deny all\"]\n"),
			 GW_ECONFIG);
	assert_int_equal(build_yaml(path, "policy:\n  nope: 1\n"),
			 GW_ECONFIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_defaults),
		cmocka_unit_test(test_config_doq),
		cmocka_unit_test(test_config_cache),
		cmocka_unit_test(test_config_policy_flags),
		cmocka_unit_test(test_config_zero_config),
		cmocka_unit_test(test_config_file_all_keys),
		cmocka_unit_test(test_config_example_is_defaults),
		cmocka_unit_test(test_config_file_empty_and_minimal),
		cmocka_unit_test(test_config_file_unknown_top_key),
		cmocka_unit_test(test_config_file_unknown_nested_key),
		cmocka_unit_test(test_config_file_wrong_type),
		cmocka_unit_test(test_config_file_syntax_and_duplicates),
		cmocka_unit_test(test_config_file_bad_listen_url),
		cmocka_unit_test(test_config_file_out_of_range),
		cmocka_unit_test(test_config_file_too_many_listeners),
		cmocka_unit_test(test_config_env_overrides_file),
		cmocka_unit_test(test_config_env_config_file),
		cmocka_unit_test(test_config_flags_override_env),
		cmocka_unit_test(test_config_repeatable_listen_replaces),
		cmocka_unit_test(test_config_unknown_env_rejected),
		cmocka_unit_test(test_config_flag_errors),
		cmocka_unit_test(test_config_help_version_actions),
		cmocka_unit_test(test_config_endpoint_parse_table),
		cmocka_unit_test(test_config_resolv_conf),
		cmocka_unit_test(test_config_resolv_conf_errors),
		cmocka_unit_test(test_config_resolv_conf_loop),
		cmocka_unit_test(test_config_log_logfmt),
		cmocka_unit_test(test_config_log_json),
		cmocka_unit_test(test_config_log_truncates_cleanly),
		cmocka_unit_test(test_config_log_levels),
		cmocka_unit_test(test_config_upstream_pool_keys),
		cmocka_unit_test(test_config_bootstrap),
		cmocka_unit_test(test_config_policy),
		cmocka_unit_test(test_config_user),
	};
	return cmocka_run_group_tests(tests, setup_all, teardown_all);
}

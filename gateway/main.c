/*
 * main.c - start-up, signals and shutdown.
 *
 * The main thread parses the configuration, loads certificates, binds every
 * listener for every worker (so a bad address fails before anything runs),
 * starts the workers and then only waits for signals.
 */
#include <cyaml/cyaml.h>
#include <ev.h>
#include <nghttp2/nghttp2.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto_wolfssl.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/version.h>

#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certs/certs.h"
#include "gateway/config.h"
#include "gateway/admin.h"
#include "gateway/connlimit.h"
#include "gateway/error.h"
#include "gateway/log.h"
#include "gateway/policy.h"
#include "gateway/privdrop.h"
#include "gateway/reload.h"
#include "gateway/sdnotify.h"
#include "gateway/worker.h"

extern char **environ;

/* Exit codes, so a supervisor can tell what went wrong. */
enum {
	EXIT_OK = 0,
	EXIT_CONFIG = 2,  /* bad flags, environment or config file */
	EXIT_CERT = 3,    /* certificate or key unusable */
	EXIT_BIND = 4,    /* a listener could not be bound */
	EXIT_RUNTIME = 5, /* out of memory or threads at start-up */
};

static void print_version(void)
{
	printf("dnsgw %s\n", DNSGW_VERSION);
	printf("wolfSSL %s (QUIC: %s)\n", wolfSSL_lib_version(),
#ifdef WOLFSSL_QUIC
	       "yes"
#else
	       "no"
#endif
	);
	/* Taking the address keeps the QUIC crypto helper linked in. */
	int (*quic_cfg)(WOLFSSL_CTX *) =
		ngtcp2_crypto_wolfssl_configure_server_context;
	printf("ngtcp2 %s (crypto: ngtcp2_crypto_wolfssl%s)\n",
	       ngtcp2_version(0)->version_str, quic_cfg ? "" : " missing");
	printf("nghttp2 %s\n", nghttp2_version(0)->version_str);
	printf("libev %d.%d\n", ev_version_major(), ev_version_minor());
	printf("libcyaml %s\n", cyaml_version_str);
	printf("transports: dot doq doh h2c udp tcp\n");
	printf("upstreams: udp tcp tls https quic\n");
}

static const char *proto_name(gw_proto_t p)
{
	switch (p) {
	case GW_PROTO_UDP: return "UDP";
	case GW_PROTO_TCP: return "TCP";
	case GW_PROTO_DOT: return "DoT";
	case GW_PROTO_DOH: return "DoH";
	case GW_PROTO_H2C: return "h2c";
	case GW_PROTO_DOQ: return "DoQ";
	}
	return "?";
}

/* Tells a person how to try every listener with real clients. */
static void print_banner(const gw_conf_t *c, const gw_certs_t *certs)
{
	printf("dnsgw %s is serving:\n", DNSGW_VERSION);
	for (unsigned i = 0; i < c->n_listen; i++) {
		const gw_endpoint_t *ep = &c->listen[i];
		char host[INET6_ADDRSTRLEN] = "";
		unsigned port;
		if (ep->addr.ss_family == AF_INET6) {
			const struct sockaddr_in6 *s6 = (const void *)&ep->addr;
			inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
			port = ntohs(s6->sin6_port);
		} else {
			const struct sockaddr_in *s4 = (const void *)&ep->addr;
			inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
			port = ntohs(s4->sin_port);
		}
		printf("  %-4s %s\n", proto_name(ep->proto), ep->url);
		switch (ep->proto) {
		case GW_PROTO_DOT:
			printf("       kdig @%s -p %u +tls example.com\n", host,
			       port);
			if (certs && !c->cert_file[0])
				printf("       kdig @%s -p %u +tls-pin=%s example.com\n",
				       host, port, gw_certs_spki_pin(certs));
			printf("       dig @%s -p %u +tls example.com\n", host,
			       port);
			break;
		case GW_PROTO_UDP:
			printf("       dig @%s -p %u example.com\n", host, port);
			break;
		case GW_PROTO_TCP:
			printf("       dig @%s -p %u +tcp example.com\n", host,
			       port);
			break;
		case GW_PROTO_DOQ:
			printf("       kdig @%s -p %u +quic example.com   (knot 3.4+)\n",
			       host, port);
			break;
		case GW_PROTO_DOH:
			printf("       kdig @%s -p %u +https example.com\n", host,
			       port);
			printf("       curl -k -H 'accept: application/dns-message' "
			       "'https://%s:%u%s?dns=AAABAAABAAAAAAAAB2V4YW1wbGUDY29tAAABAAE'\n",
			       host, port, ep->path[0] ? ep->path : "/dns-query");
			break;
		case GW_PROTO_H2C:
			printf("       curl --http2-prior-knowledge -H 'accept: application/dns-message' "
			       "'http://%s:%u%s?dns=AAABAAABAAAAAAAAB2V4YW1wbGUDY29tAAABAAE'\n",
			       host, port, ep->path[0] ? ep->path : "/dns-query");
			break;
		default:
			break;
		}
	}
	for (unsigned i = 0; i < c->n_upstream; i++)
		printf("  forwarding to %s\n", c->upstream[i].url);
	if (certs && !c->cert_file[0])
		printf("  certificate: generated self-signed (pass --cert/--key for your own)\n");
	fflush(stdout);
}

/* ALPN protocols a TLS listener offers, in server preference order; NULL
 * for cleartext listeners. */
static const char *const *listener_alpn(const gw_conf_t *c, unsigned i)
{
	static const char *const dot[] = {"dot", NULL};
	static const char *const doq[] = {"doq", NULL}; /* RFC 9250 4.1.1 */
	static const char *const doh[] = {"h2", "http/1.1", NULL}; /* RFC 8484 5.2 */
	/* DoT and DoH on one port: ALPN tells them apart */
	static const char *const both[] = {"dot", "h2", "http/1.1", NULL};
	switch (c->listen[i].proto) {
	case GW_PROTO_DOT:
		return gw_conf_shared_port(c, i) >= 0 ? both : dot;
	case GW_PROTO_DOH:
		return gw_conf_shared_port(c, i) >= 0 ? both : doh;
	case GW_PROTO_DOQ:
		return doq;
	default:
		return NULL;
	}
}

static gw_certs_t *first_certs(const gw_conf_t *c, gw_certs_t **certs)
{
	for (unsigned i = 0; i < c->n_listen; i++)
		if (certs[i])
			return certs[i];
	return NULL;
}

/*
 * One TLS context per distinct ALPN set, shared by the listeners that use
 * it; certs[i] is listener i's (NULL for cleartext). Returns 0 or -1 with a
 * message naming the file(s) in err.
 */
static int load_certs(const gw_conf_t *c, gw_certs_t **certs, char *err,
		      size_t errlen)
{
	for (unsigned i = 0; i < c->n_listen; i++) {
		const char *const *alpn = listener_alpn(c, i);
		certs[i] = NULL;
		if (!alpn)
			continue;
		for (unsigned j = 0; j < i && !certs[i]; j++)
			if (certs[j] && listener_alpn(c, j) == alpn)
				certs[i] = gw_certs_ref(certs[j]);
		if (certs[i])
			continue;
		certs[i] = c->cert_file[0]
				   ? gw_certs_load(c->cert_file, c->key_file,
						   alpn, err, errlen)
				   : gw_certs_selfsigned(alpn, err, errlen);
		if (!certs[i])
			return -1;
		/* DoQ: the same certificate in a TLS 1.3 QUIC context */
		if (c->listen[i].proto == GW_PROTO_DOQ &&
		    gw_certs_enable_quic(certs[i], err, errlen) < 0)
			return -1;
		/* doq.early_data: 0-RTT accepted (QUERY only, doq.c) */
		if (c->listen[i].proto == GW_PROTO_DOQ && c->doq.early_data &&
		    gw_certs_quic_early_data(certs[i], err, errlen) < 0)
			return -1;
	}
	/* -t with --cert but no TLS listener still checks the pair */
	if (c->cert_file[0] && !first_certs(c, certs)) {
		static const char *const none[] = {NULL};
		gw_certs_t *t = gw_certs_load(c->cert_file, c->key_file, none,
					      err, errlen);
		if (!t)
			return -1;
		gw_certs_unref(t);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static gw_conf_t conf;
	gw_action_t action;
	char err[1024] = "";
	int rc = EXIT_OK;
	static gw_certs_t *certs[GW_CONF_MAX_LISTEN];
	gw_connlimit_t *cl = NULL;
	gw_worker_t *workers = NULL;
	gw_admin_t *admin = NULL;
	unsigned started = 0;
	static gw_reload_t reload = { .sigfd = -1, .inofd = -1 };

	if (gw_conf_build(&conf, argc, argv, environ, "/etc/resolv.conf",
			  &action, err, sizeof(err)) < 0) {
		fprintf(stderr, "dnsgw: %s\n", err);
		return EXIT_CONFIG;
	}
	if (action == GW_ACTION_HELP) {
		gw_conf_usage(stdout);
		return EXIT_OK;
	}
	if (action == GW_ACTION_VERSION) {
		print_version();
		return EXIT_OK;
	}
	gw_log_setup(conf.log_level, conf.log_format == GW_LOG_JSON);
	gw_certs_global_init();

	if (load_certs(&conf, certs, err, sizeof(err)) < 0) {
		fprintf(stderr, "dnsgw: %s\n", err);
		rc = EXIT_CERT;
		goto out;
	}
	if (action == GW_ACTION_CHECK) {
		/* what gw_worker_init would refuse, without binding anything */
		if (gw_policy_check_conf(&conf, err, sizeof(err)) < 0 ||
		    gw_privdrop_check(conf.user, err, sizeof(err)) < 0) {
			fprintf(stderr, "dnsgw: %s\n", err);
			rc = EXIT_CONFIG;
			goto out;
		}
		printf("%s: configuration ok\n",
		       conf.config_file[0] ? conf.config_file : "dnsgw");
		goto out;
	}

	/* Workers inherit this mask; only the main thread takes signals. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	cl = gw_connlimit_new(conf.limits.max_conns_per_client,
			      conf.limits.max_conns);
	workers = calloc(conf.threads, sizeof(*workers));
	if (!cl || !workers) {
		fprintf(stderr, "dnsgw: out of memory at start-up\n");
		rc = EXIT_RUNTIME;
		goto out;
	}
	/* the first worker resolves upstream host names; the others take
	 * its addresses */
	gw_up_seed_t seed;
	for (unsigned i = 0; i < conf.threads; i++) {
		int r = gw_worker_init(&workers[i], i, &conf, certs, cl,
				       i ? &seed : NULL, err, sizeof(err));
		if (r == 0 && i == 0)
			gw_up_pool_seed(workers[0].pool, &seed);
		if (r < 0) {
			fprintf(stderr, "dnsgw: %s\n", err);
			rc = r == GW_ECONFIG ? EXIT_CONFIG : EXIT_BIND;
			goto out;
		}
	}
	/* The admin port binds now too, before privileges go; it serves
	 * once the workers run (so "ready" means listeners bound). Off unless
	 * asked for, zero-config included: a fixed port could clash with
	 * another service (9153 is CoreDNS's) and fail the demo run. */
	gw_admin_note_certs(certs, conf.n_listen);
	if (conf.admin_addrlen) {
		admin = gw_admin_new(&conf, workers, conf.threads, err,
				     sizeof(err));
		if (!admin) {
			fprintf(stderr, "dnsgw: %s\n", err);
			rc = EXIT_BIND;
			goto out;
		}
	}
	/* Watches need the rights we still have; then give up root now that
	 * every socket is bound and every certificate file read. */
	reload = (gw_reload_t){ .conf = &conf, .certs = certs,
				.workers = workers, .n_workers = conf.threads,
				.build = load_certs, .argc = argc, .argv = argv,
				.envp = environ, .resolv_conf = "/etc/resolv.conf" };
	int pr = gw_reload_init(&reload, &sigs, err, sizeof(err));
	if (pr == 0)
		pr = gw_privdrop(conf.user, err, sizeof(err));
	if (pr < 0) {
		fprintf(stderr, "dnsgw: %s\n", err);
		/* an unknown user is a configuration error */
		rc = pr == GW_EINVAL ? EXIT_CONFIG : EXIT_RUNTIME;
		goto out;
	}
	for (; started < conf.threads; started++) {
		if (gw_worker_start(&workers[started]) < 0) {
			fprintf(stderr, "dnsgw: cannot start worker threads\n");
			rc = EXIT_RUNTIME;
			goto stop;
		}
	}
	if (admin && gw_admin_start(admin) < 0) {
		fprintf(stderr, "dnsgw: cannot start the admin thread\n");
		rc = EXIT_RUNTIME;
		goto stop;
	}
	print_banner(&conf, first_certs(&conf, certs));
	if (admin)
		printf("  admin: curl http://%s/metrics (also /healthz, /readyz)\n",
		       conf.admin);
	fflush(stdout);
	char nthreads[16];
	snprintf(nthreads, sizeof(nthreads), "%u", conf.threads);
	gw_log(GW_LOG_INFO, "main", "ready", "threads", nthreads, NULL);
	gw_sd_notify("READY=1");

	gw_reload_run(&reload); /* until SIGTERM or SIGINT */
	gw_sd_notify("STOPPING=1");
	gw_log(GW_LOG_INFO, "main", "draining", NULL);
stop:
	for (unsigned i = 0; i < started; i++)
		gw_worker_request_drain(&workers[i]);
	for (unsigned i = 0; i < started; i++)
		gw_worker_join(&workers[i]);
out:
	gw_admin_free(admin); /* after the join: /readyz said 503 meanwhile */
	if (workers)
		for (unsigned i = 0; i < conf.threads; i++)
			gw_worker_deinit(&workers[i]);
	free(workers);
	gw_reload_deinit(&reload);
	gw_connlimit_free(cl);
	for (unsigned i = 0; i < conf.n_listen; i++)
		gw_certs_unref(certs[i]);
	gw_certs_thread_cleanup();
	if (rc == EXIT_OK && action == GW_ACTION_RUN)
		gw_log(GW_LOG_INFO, "main", "stopped", NULL);
	return rc;
}

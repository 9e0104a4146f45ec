/*
 * config.h - dnsgw configuration: built-in defaults < YAML file (libcyaml) <
 * DNSGW_* environment < command-line flags.
 *
 * gw_conf_t is a plain value: fixed-size arrays, no heap pointers, so it can be
 * copied to every worker and freed by nothing. Every limit of REQUIREMENTS.md
 * is a field here with its default set by gw_conf_defaults().
 *
 * Errors are written to a caller buffer as one line. Errors about the file read
 * "FILE:LINE:COLUMN: message"; about the environment "DNSGW_X: message"; about
 * flags "--flag: message".
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <limits.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define GW_CONF_MAX_LISTEN 32
#define GW_CONF_MAX_UPSTREAM 16
#define GW_CONF_MAX_URL 512
#define GW_CONF_MAX_PATH 256
#define GW_CONF_MAX_NAME 256

/* Transport of a listener or an upstream, named by its URL scheme. */
typedef enum gw_proto {
	GW_PROTO_UDP,   /* udp:// listener or upstream */
	GW_PROTO_TCP,   /* tcp:// listener or upstream */
	GW_PROTO_DOT,   /* dot:// listener, tls:// upstream */
	GW_PROTO_DOH,   /* doh:// listener, https:// upstream */
	GW_PROTO_H2C,   /* h2c:// listener (cleartext DoH behind a proxy) */
	GW_PROTO_DOQ,   /* doq:// listener, quic:// upstream */
} gw_proto_t;

typedef struct gw_endpoint {
	gw_proto_t proto;
	char url[GW_CONF_MAX_URL];       /* as written, for logs */
	struct sockaddr_storage addr;    /* numeric address and port */
	socklen_t addrlen;               /* 0 when host needs resolving */
	uint16_t port;                   /* host order; also set for names */
	char host[GW_CONF_MAX_NAME];     /* host as written, IPv6 unbracketed */
	char path[GW_CONF_MAX_PATH];     /* DoH path, default "/dns-query" */
	char tls_name[GW_CONF_MAX_NAME]; /* upstream "#name", or https host */
} gw_endpoint_t;

typedef enum gw_log_format { GW_LOG_LOGFMT, GW_LOG_JSON } gw_log_format_t;

/* An address prefix such as 10.0.0.0/8 or ::1/128 (port unused). */
typedef struct gw_cidr {
	struct sockaddr_storage addr;
	uint8_t prefix; /* bits */
} gw_cidr_t;

#define GW_CONF_MAX_CIDR 32

/* DoH front-end (transports/doh.c). */
typedef struct gw_doh_conf {
	/* X-Forwarded-For / Forwarded honoured only from these peers */
	gw_cidr_t trusted_proxies[GW_CONF_MAX_CIDR];
	unsigned n_trusted_proxies;
} gw_doh_conf_t;

/* DoQ front-end (transports/doq.c, docs/doq.md). */
typedef enum gw_doq_retry {
	GW_DOQ_RETRY_AUTO,   /* Retry only under load (default) */
	GW_DOQ_RETRY_ALWAYS, /* every new connection proves its address */
	GW_DOQ_RETRY_NEVER,
} gw_doq_retry_t;

typedef struct gw_doq_conf {
	gw_doq_retry_t retry;
	uint32_t idle_timeout_ms;   /* 30000: QUIC max_idle_timeout */
	uint32_t max_streams;       /* 16: concurrent bidi streams (queries) */
	uint32_t stream_timeout_ms; /* 10000: a stream without FIN is reaped */
	uint32_t retry_threshold;   /* 256: "auto" Retries past this many
				     * handshakes in progress per worker */
	bool early_data;            /* false: 0-RTT refused; true: accepted,
				     * QUERY only (RFC 9250 4.5, docs/doq.md) */
} gw_doq_conf_t;

/* Limits of REQUIREMENTS.md; times in milliseconds. */
typedef struct gw_limits_conf {
	uint32_t handshake_timeout_ms;     /* 5000: TLS handshake */
	uint32_t idle_timeout_ms;          /* 10000: stream idle */
	uint32_t partial_timeout_ms;       /* 2000: half a message */
	uint32_t write_timeout_ms;         /* 5000: client not reading */
	uint32_t max_read_events_per_query;/* 50: slowloris */
	uint32_t max_inflight_per_conn;    /* 100 */
	uint32_t max_conns_per_client;     /* 64, TCP and QUIC together */
	uint32_t max_conns;                /* 10000 per process */
	uint32_t max_waiting_per_client;   /* 1000 queries */
	uint32_t drain_timeout_ms;         /* 5000: SIGTERM deadline */
	uint32_t doh_idle_timeout_ms;      /* 30000: DoH idle, then GOAWAY */
} gw_limits_conf_t;

/* Policy (gateway/acl.h, gateway/ratelimit.h, gateway/policy.h,
 * docs/policy.md). */
#define GW_CONF_MAX_ACL 32          /* rules per list */
#define GW_CONF_MAX_ACL_LISTENERS 8 /* per-listener overrides */
#define GW_CONF_MAX_PROXY_LISTENERS 8

/* One ACL rule: "allow NET" or "deny NET"; NET "all" matches every address
 * (net.addr.ss_family AF_UNSPEC). */
typedef struct gw_acl_rule {
	gw_cidr_t net;
	bool allow;
} gw_acl_rule_t;

/* First matching rule wins; no match (or no rules) allows. */
typedef struct gw_acl {
	gw_acl_rule_t rule[GW_CONF_MAX_ACL];
	unsigned n;
} gw_acl_t;

typedef struct gw_policy_conf {
	gw_acl_t acl; /* every listener without an override */
	struct {
		gw_endpoint_t listen; /* matched by scheme and address */
		gw_acl_t acl;
	} listener_acl[GW_CONF_MAX_ACL_LISTENERS];
	unsigned n_listener_acl;
	/* token buckets per client address, per worker; 0 = off */
	uint32_t qps;            /* 0: queries per second per client */
	uint32_t qps_burst;      /* 0: = qps */
	uint32_t conn_rate;      /* 0: new connections per second per client */
	uint32_t conn_burst;     /* 0: = conn_rate */
	uint32_t slip;           /* 2: UDP over the limit: every Nth gets
				  * REFUSED, the rest dropped; 0 = drop all */
	uint32_t ratelimit_clients; /* 65536: table entries per worker */
	/* RFC 7871 client subnet added to upstream queries */
	bool ecs_add;             /* false */
	uint32_t ecs_ipv4_prefix; /* 24 */
	uint32_t ecs_ipv6_prefix; /* 56 */
	bool log_anonymize;       /* false: log.anonymize */
	/* PROXY protocol v2 (transports/proxy2.h) on these listeners (before
	 * the stream, or before every datagram on udp and doq), required from
	 * the trusted peers, not accepted from others */
	gw_endpoint_t proxy_listen[GW_CONF_MAX_PROXY_LISTENERS];
	unsigned n_proxy_listen;
	gw_cidr_t proxy_trusted[GW_CONF_MAX_CIDR];
	unsigned n_proxy_trusted;
} gw_policy_conf_t;

/* Response cache (gateway/cache.h, docs/cache.md); TTLs in seconds. */
typedef struct gw_cache_conf {
	uint32_t size_bytes;       /* 33554432 (32 MiB) for the whole process,
				    * split evenly over the workers; 0 = off */
	uint32_t min_ttl;          /* 0: lifetime floor */
	uint32_t max_ttl;          /* 86400: positive answers' cap */
	uint32_t negative_max_ttl; /* 3600: NXDOMAIN/NODATA cap (RFC 2308) */
	bool serve_stale;          /* false: RFC 8767 when upstreams fail */
	uint32_t stale_ttl;        /* 86400: how long past expiry */
} gw_cache_conf_t;

/* How the upstream pool picks a resolver (upstream/select.h). */
typedef enum gw_up_policy {
	GW_UP_POLICY_ORDERED,     /* first healthy in list order (default) */
	GW_UP_POLICY_ROUND_ROBIN, /* weighted round robin */
	GW_UP_POLICY_RANDOM,      /* weighted random */
	GW_UP_POLICY_LEAST_OUTSTANDING, /* fewest in flight per weight */
	GW_UP_POLICY_LOWEST_LATENCY,    /* lowest EWMA of RTT */
} gw_up_policy_t;

#define GW_CONF_MAX_PIN 64 /* base64 of a SHA-256 is 44 characters */

typedef struct gw_upstream_conf {
	uint32_t timeout_ms;  /* 2000 per attempt */
	uint32_t attempts;    /* 3 in all, each on another upstream if any */
	bool strip_ecs;       /* true: EDNS Client Subnet removed (privacy) */
	gw_up_policy_t policy;            /* ordered */
	uint32_t weight[GW_CONF_MAX_UPSTREAM]; /* per server; 0 means 1 */
	char ca_file[PATH_MAX];  /* TLS upstreams' CA bundle; "" = system's */
	/* per server: base64 SHA-256 SPKI pin (RFC 7858 4.2), "" = none */
	char pin[GW_CONF_MAX_UPSTREAM][GW_CONF_MAX_PIN];
	/* pooled TCP/TLS connections, per worker and upstream; 0 = default */
	uint32_t max_conns_per_upstream; /* 8 */
	uint32_t max_inflight_per_conn;  /* 100 */
	uint32_t max_queries_per_conn;   /* 0: no limit; else recycled */
	uint32_t idle_timeout_ms;        /* 60000 */
	/* active health probes; interval 0 = off */
	uint32_t probe_interval_ms;      /* 0 */
	char probe_name[GW_CONF_MAX_NAME]; /* "." */
	uint16_t probe_type;             /* 2 (NS) */
	uint32_t probe_rise;             /* 2 probes answered -> up */
	uint32_t probe_fall;             /* 3 failures -> down */
	uint32_t max_waiting_per_upstream; /* 0 = conns x inflight */
	/* resolver for host names in upstream URLs: "ADDR[:PORT]" (port 53),
	 * "" = the first nameserver of /etc/resolv.conf */
	char bootstrap[GW_CONF_MAX_URL];
	struct sockaddr_storage bootstrap_addr; /* bootstrap parsed */
	socklen_t bootstrap_addrlen;            /* 0 when unset */
} gw_upstream_conf_t;

typedef struct gw_conf {
	gw_endpoint_t listen[GW_CONF_MAX_LISTEN];
	unsigned n_listen;
	gw_endpoint_t upstream[GW_CONF_MAX_UPSTREAM];
	unsigned n_upstream;
	char cert_file[PATH_MAX]; /* empty: generated self-signed certificate */
	char key_file[PATH_MAX];
	char admin[GW_CONF_MAX_URL]; /* "ADDR:PORT" or empty (off) */
	struct sockaddr_storage admin_addr; /* admin parsed */
	socklen_t admin_addrlen;            /* 0 when admin is off */
	unsigned threads;            /* 0 = number of CPUs */
	char user[GW_CONF_MAX_NAME]; /* run as this user once bound; "" = stay */
	int log_level;               /* GW_LOG_* of log.h */
	gw_log_format_t log_format;
	bool query_log;
	gw_limits_conf_t limits;
	gw_upstream_conf_t up;
	gw_doh_conf_t doh;
	gw_doq_conf_t doq;
	gw_cache_conf_t cache;
	gw_policy_conf_t policy;
	char config_file[PATH_MAX]; /* the -c file, empty if none */
} gw_conf_t;

/* What the command line asked for. */
typedef enum gw_action {
	GW_ACTION_RUN,
	GW_ACTION_CHECK,   /* -t */
	GW_ACTION_VERSION, /* -V */
	GW_ACTION_HELP,    /* -h */
} gw_action_t;

/* Fills every field with its built-in default (no listeners, no upstreams). */
void gw_conf_defaults(gw_conf_t *c);

/*
 * Parses a listener (upstream=false) or upstream (upstream=true) URL into ep.
 * Listener schemes: dot doh doq udp tcp h2c; upstream schemes: udp tcp tls
 * https quic. IPv6 in brackets. Default ports: udp/tcp 53, dot/tls/doq/quic
 * 853, doh/https 443, h2c 80. Returns 0 or GW_EINVAL with a reason in err.
 */
int gw_endpoint_parse(const char *url, bool upstream, gw_endpoint_t *ep,
		      char *err, size_t errlen);
/* True when two endpoint lists differ in length, order, scheme or URL. */
bool gw_endpoints_differ(const gw_endpoint_t *a, unsigned na,
			 const gw_endpoint_t *b, unsigned nb);

/*
 * The whole precedence chain: defaults, then -c FILE (if given), then the
 * DNSGW_* variables in envp, then the flags in argv. Then fills what is still
 * missing for a zero-config run: loopback listeners (gw_conf_default_listeners)
 * and, with no upstream, the first nameserver of resolv_conf_path, refusing it
 * when it is one of our own listen addresses (a forwarding loop).
 * On success returns 0 and sets *action. On failure returns GW_ECONFIG with a
 * one-line message in err ("file:line:column: ...", "--flag: ...").
 * -h and -V return 0 with the action set even when other input is bad.
 */
int gw_conf_build(gw_conf_t *c, int argc, char **argv, char **envp,
		  const char *resolv_conf_path, gw_action_t *action, char *err,
		  size_t errlen);

/* Usage text for -h. */
void gw_conf_usage(FILE *out);

/*
 * The zero-config listeners dot://127.0.0.1:8853, udp://127.0.0.1:8053 and
 * tcp://127.0.0.1:8053, replacing c->listen. gw_conf_build() calls it when no
 * listener is configured.
 */
void gw_conf_default_listeners(gw_conf_t *c);

/*
 * Parses "ADDR:PORT" (IPv4 or [IPv6], numeric, port required), as used by
 * --admin. Returns 0 or GW_EINVAL with a reason in err.
 */
int gw_conf_parse_addr(const char *s, struct sockaddr_storage *ss,
		       socklen_t *len, char *err, size_t errlen);

/* Parses "ADDR/BITS" or a bare address (a host prefix). 0 or GW_EINVAL
 * with a reason in err. */
int gw_cidr_parse(const char *s, gw_cidr_t *out, char *err, size_t errlen);

/* "auto", "always", "never" -> gw_doq_retry_t, or -1. */
int gw_doq_retry_parse(const char *s);

/* "ordered", "round-robin", "random", "least-outstanding",
 * "lowest-latency" -> gw_up_policy_t, or -1. */
int gw_up_policy_parse(const char *s);

/* The URL scheme of a proto: "dot" or, for upstreams, "tls"; for logs. */
const char *gw_proto_scheme(gw_proto_t proto, bool upstream);

#endif

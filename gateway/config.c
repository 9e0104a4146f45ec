/*
 * config.c - defaults < YAML file < DNSGW_* environment < flags.
 *
 * The file is read once into memory and parsed twice. First a libyaml event
 * walk driven by the same schema tables that libcyaml uses: it knows where
 * every key and value is, so unknown keys, wrong shapes and bad scalars are
 * reported at their own line and column (libcyaml 1.3.1 reports an unknown key
 * at its enclosing mapping, and reads "010" as octal). It also records the
 * position of every value for the checks made after loading (URLs, ranges).
 * Then libcyaml loads the same bytes into C structs. Optional values are
 * pointers in those structs, so "absent" and "set to the default" differ and a
 * file only overrides what it names.
 */
#include "config.h"

#include <arpa/inet.h>
#include <cyaml/cyaml.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "acl.h"
#include "error.h"
#include "log.h"

#define MAX_FILE_BYTES (1024 * 1024)
#define MAX_POS 160
#define MAX_YAML_PATH 64

static const char *const default_listeners[] = {
	"dot://127.0.0.1:8853",
	"doh://127.0.0.1:8443/dns-query",
	"doq://127.0.0.1:8853",
	"udp://127.0.0.1:8053",
	"tcp://127.0.0.1:8053",
};

/* ---------------------------------------------------------------- errors */

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/*
 * User text inside a one-line message: control bytes become '?', long text
 * is cut with "...".
 */
static const char *show(char *out, size_t outlen, const char *s, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n && s[i]; i++) {
		if (o + 4 >= outlen) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		unsigned char ch = (unsigned char)s[i];
		out[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	out[o] = '\0';
	return out;
}

#define SHOW(buf, s) show((buf), sizeof(buf), (s), strlen(s))

/* ------------------------------------------------------------- endpoints */

struct scheme {
	const char *name;
	gw_proto_t proto;
	bool upstream;
	uint16_t port;
	bool path;     /* takes a DoH path */
	bool tls_name; /* takes "#name" */
	bool hostname; /* host may be a name rather than an address */
};

static const struct scheme schemes[] = {
	{ "dot", GW_PROTO_DOT, false, 853, false, false, false },
	{ "doh", GW_PROTO_DOH, false, 443, true, false, false },
	{ "doq", GW_PROTO_DOQ, false, 853, false, false, false },
	{ "udp", GW_PROTO_UDP, false, 53, false, false, false },
	{ "tcp", GW_PROTO_TCP, false, 53, false, false, false },
	{ "h2c", GW_PROTO_H2C, false, 80, true, false, false },
	{ "udp", GW_PROTO_UDP, true, 53, false, false, false },
	{ "tcp", GW_PROTO_TCP, true, 53, false, false, false },
	{ "tls", GW_PROTO_DOT, true, 853, false, true, true },
	{ "https", GW_PROTO_DOH, true, 443, true, true, true },
	{ "quic", GW_PROTO_DOQ, true, 853, false, true, false },
};

const char *gw_proto_scheme(gw_proto_t proto, bool upstream)
{
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (schemes[i].proto == proto && schemes[i].upstream == upstream)
			return schemes[i].name;
	return "?";
}

/* RFC 1123 2.1 host names; the last label must not be all digits. */
static bool valid_hostname(const char *s, size_t n)
{
	size_t label = 0;
	bool digits = true;

	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i <= n; i++) {
		char c = i < n ? s[i] : '.';
		if (c == '.') {
			if (label == 0 || label > 63 || s[i - 1] == '-')
				return false;
			if (i == n && digits)
				return false;
			label = 0;
			digits = true;
			continue;
		}
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     c == '_';
		bool digit = c >= '0' && c <= '9';
		if (!alpha && !digit && c != '-')
			return false;
		if (label == 0 && c == '-')
			return false;
		if (!digit)
			digits = false;
		label++;
	}
	return true;
}

struct hostport {
	char host[GW_CONF_MAX_NAME];
	struct sockaddr_storage ss;
	socklen_t sslen; /* 0: host is a name */
	uint16_t port;
};

/*
 * "HOST[:PORT]" with HOST an IPv4 address, [IPv6[%scope]] or, when
 * allow_name, a host name. defport < 0 makes the port mandatory.
 */
static int parse_hostport(const char *s, size_t n, int defport,
			  bool allow_name, struct hostport *hp, char *err,
			  size_t errlen)
{
	const char *host = s, *port = NULL;
	size_t hostlen, portlen = 0;
	bool v6 = false;
	char b1[100];

	memset(hp, 0, sizeof(*hp));
	if (n > 0 && s[0] == '[') {
		const char *end = memchr(s, ']', n);
		if (!end) {
			seterr(err, errlen, "missing ']' after IPv6 address");
			return GW_EINVAL;
		}
		host = s + 1;
		hostlen = (size_t)(end - host);
		v6 = true;
		const char *after = end + 1;
		size_t rest = n - (size_t)(after - s);
		if (rest > 0) {
			if (*after != ':') {
				seterr(err, errlen, "unexpected '%s' after ']'",
				       show(b1, sizeof(b1), after, rest));
				return GW_EINVAL;
			}
			port = after + 1;
			portlen = rest - 1;
		}
	} else {
		const char *colon = memchr(s, ':', n);
		if (colon && memchr(colon + 1, ':', n - (size_t)(colon + 1 - s))) {
			seterr(err, errlen,
			       "IPv6 addresses need brackets, e.g. [::1]:853");
			return GW_EINVAL;
		}
		hostlen = colon ? (size_t)(colon - s) : n;
		if (colon) {
			port = colon + 1;
			portlen = n - hostlen - 1;
		}
	}
	if (hostlen == 0) {
		seterr(err, errlen, "missing host");
		return GW_EINVAL;
	}
	if (hostlen >= sizeof(hp->host)) {
		seterr(err, errlen, "host too long");
		return GW_EINVAL;
	}
	memcpy(hp->host, host, hostlen);
	hp->host[hostlen] = '\0';

	unsigned long pnum = defport > 0 ? (unsigned long)defport : 0;
	if (port) {
		pnum = 0;
		bool ok = portlen > 0 && portlen <= 5;
		for (size_t i = 0; ok && i < portlen; i++) {
			if (port[i] < '0' || port[i] > '9')
				ok = false;
			else
				pnum = pnum * 10 + (unsigned long)(port[i] - '0');
		}
		if (!ok || pnum < 1 || pnum > 65535) {
			seterr(err, errlen, "bad port '%s' (expected 1..65535)",
			       show(b1, sizeof(b1), port, portlen));
			return GW_EINVAL;
		}
	} else if (defport < 0) {
		seterr(err, errlen, "missing port (expected ADDR:PORT)");
		return GW_EINVAL;
	}
	hp->port = (uint16_t)pnum;

	if (v6) {
		/* getaddrinfo, numeric only, understands "%scope" (RFC 4007 11). */
		struct addrinfo hints = { .ai_family = AF_INET6,
					  .ai_flags = AI_NUMERICHOST };
		struct addrinfo *ai = NULL;
		if (getaddrinfo(hp->host, NULL, &hints, &ai) != 0 || !ai) {
			seterr(err, errlen, "bad IPv6 address '%s'",
			       SHOW(b1, hp->host));
			return GW_EINVAL;
		}
		memcpy(&hp->ss, ai->ai_addr, ai->ai_addrlen);
		hp->sslen = ai->ai_addrlen;
		freeaddrinfo(ai);
		((struct sockaddr_in6 *)&hp->ss)->sin6_port =
			htons((uint16_t)pnum);
		return 0;
	}
	struct sockaddr_in *sin = (struct sockaddr_in *)&hp->ss;
	if (inet_pton(AF_INET, hp->host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)pnum);
		hp->sslen = sizeof(*sin);
		return 0;
	}
	memset(sin, 0, sizeof(*sin));
	if (!allow_name) {
		seterr(err, errlen, "'%s' is not a numeric IP address",
		       SHOW(b1, hp->host));
		return GW_EINVAL;
	}
	if (!valid_hostname(hp->host, hostlen)) {
		seterr(err, errlen, "bad host '%s'", SHOW(b1, hp->host));
		return GW_EINVAL;
	}
	hp->ss.ss_family = AF_UNSPEC;
	return 0;
}

static void scheme_list(char *out, size_t outlen, bool upstream)
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		if (schemes[i].upstream != upstream)
			continue;
		int w = snprintf(out + o, outlen - o, "%s%s", o ? ", " : "",
				 schemes[i].name);
		if (w < 0 || (size_t)w >= outlen - o)
			break;
		o += (size_t)w;
	}
}

bool gw_endpoints_differ(const gw_endpoint_t *a, unsigned na,
			 const gw_endpoint_t *b, unsigned nb)
{
	if (na != nb)
		return true;
	for (unsigned i = 0; i < na; i++)
		if (a[i].proto != b[i].proto || strcmp(a[i].url, b[i].url))
			return true;
	return false;
}

int gw_endpoint_parse(const char *url, bool upstream, gw_endpoint_t *ep,
		      char *err, size_t errlen)
{
	const struct scheme *sc = NULL;
	char b1[100], list[80];
	int r;

	memset(ep, 0, sizeof(*ep));
	if (!url || !*url) {
		seterr(err, errlen, "empty URL");
		return GW_EINVAL;
	}
	size_t ulen = strlen(url);
	if (ulen >= sizeof(ep->url)) {
		seterr(err, errlen, "URL too long (max %zu bytes)",
		       sizeof(ep->url) - 1);
		return GW_EINVAL;
	}
	memcpy(ep->url, url, ulen + 1);
	for (size_t i = 0; i < ulen; i++) {
		unsigned char c = (unsigned char)url[i];
		if (c <= ' ' || c >= 0x7f) {
			seterr(err, errlen,
			       "URL contains a space or a non-ASCII byte");
			return GW_EINVAL;
		}
	}

	scheme_list(list, sizeof(list), upstream);
	const char *sep = strstr(url, "://");
	if (!sep) {
		seterr(err, errlen, "missing scheme, expected %s://ADDR:PORT "
		       "(schemes: %s)", upstream ? "udp" : "dot", list);
		return GW_EINVAL;
	}
	size_t slen = (size_t)(sep - url);
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		if (schemes[i].upstream == upstream &&
		    strlen(schemes[i].name) == slen &&
		    strncasecmp(schemes[i].name, url, slen) == 0) {
			sc = &schemes[i];
			break;
		}
	}
	if (!sc) {
		seterr(err, errlen, "unknown %s scheme '%s' (expected %s)",
		       upstream ? "upstream" : "listener",
		       show(b1, sizeof(b1), url, slen), list);
		return GW_EINVAL;
	}
	ep->proto = sc->proto;

	const char *auth = sep + 3;
	size_t alen = strcspn(auth, "/#?@");
	const char *tail = auth + alen;
	if (*tail == '@') {
		seterr(err, errlen, "user names are not supported in URLs");
		return GW_EINVAL;
	}
	if (*tail == '?' || strchr(tail, '?')) {
		seterr(err, errlen, "query strings are not supported in URLs");
		return GW_EINVAL;
	}
	struct hostport hp;
	r = parse_hostport(auth, alen, sc->port, sc->hostname, &hp, err,
			   errlen);
	if (r < 0)
		return r;
	memcpy(ep->host, hp.host, sizeof(ep->host));
	memcpy(&ep->addr, &hp.ss, sizeof(ep->addr));
	ep->addrlen = hp.sslen;
	ep->port = hp.port;

	const char *hash = strchr(tail, '#');
	size_t plen = hash ? (size_t)(hash - tail) : strlen(tail);
	if (plen > 0) {
		if (!sc->path) {
			seterr(err, errlen, "a path is only allowed for "
			       "doh://, h2c:// and https:// URLs");
			return GW_EINVAL;
		}
		if (plen >= sizeof(ep->path)) {
			seterr(err, errlen, "path too long (max %zu bytes)",
			       sizeof(ep->path) - 1);
			return GW_EINVAL;
		}
		memcpy(ep->path, tail, plen);
		ep->path[plen] = '\0';
	} else if (sc->path) {
		strcpy(ep->path, "/dns-query");
	}

	if (hash) {
		const char *name = hash + 1;
		if (!sc->tls_name) {
			seterr(err, errlen, "'#name' is only allowed for tls://, "
			       "https:// and quic:// upstreams");
			return GW_EINVAL;
		}
		if (!*name || !valid_hostname(name, strlen(name)) ||
		    strlen(name) >= sizeof(ep->tls_name)) {
			seterr(err, errlen, "bad TLS name '%s' after '#'",
			       SHOW(b1, name));
			return GW_EINVAL;
		}
		strcpy(ep->tls_name, name);
	} else if (sc->tls_name &&
		   (sc->proto == GW_PROTO_DOH || ep->addrlen == 0)) {
		/* https:// always verifies its host; tls://NAME its name. */
		strcpy(ep->tls_name, ep->host);
	}
	return 0;
}

int gw_conf_parse_addr(const char *s, struct sockaddr_storage *ss,
		       socklen_t *len, char *err, size_t errlen)
{
	struct hostport hp;
	int r;

	if (!s || !*s) {
		seterr(err, errlen, "empty address (expected ADDR:PORT)");
		return GW_EINVAL;
	}
	r = parse_hostport(s, strlen(s), -1, false, &hp, err, errlen);
	if (r < 0)
		return r;
	memcpy(ss, &hp.ss, sizeof(*ss));
	*len = hp.sslen;
	return 0;
}

static int parse_u64(const char *s, uint64_t *out);

int gw_cidr_parse(const char *s, gw_cidr_t *out, char *err, size_t errlen)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned max, bits;

	memset(out, 0, sizeof(*out));
	if (alen == 0 || alen >= sizeof(buf)) {
		seterr(err, errlen, "not an address prefix");
		return GW_EINVAL;
	}
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	struct sockaddr_in *s4 = (struct sockaddr_in *)&out->addr;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->addr;
	if (inet_pton(AF_INET, buf, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		max = 128;
	} else {
		seterr(err, errlen, "not an IP address");
		return GW_EINVAL;
	}
	bits = max;
	if (slash) {
		uint64_t v;
		if (parse_u64(slash + 1, &v) < 0 || v > max) {
			seterr(err, errlen, "prefix length must be 0..%u", max);
			return GW_EINVAL;
		}
		bits = (unsigned)v;
	}
	out->prefix = (uint8_t)bits;
	return 0;
}

/* ---------------------------------------------------------- defaults */

void gw_conf_defaults(gw_conf_t *c)
{
	memset(c, 0, sizeof(*c));
	c->threads = 0;
	c->log_level = GW_LOG_INFO;
	c->log_format = GW_LOG_LOGFMT;
	c->query_log = false;
	c->limits.handshake_timeout_ms = 5000;
	c->limits.idle_timeout_ms = 10000;
	c->limits.partial_timeout_ms = 2000;
	c->limits.write_timeout_ms = 5000;
	c->limits.max_read_events_per_query = 50;
	c->limits.max_inflight_per_conn = 100;
	c->limits.max_conns_per_client = 64;
	c->limits.max_conns = 10000;
	c->limits.max_waiting_per_client = 1000;
	c->limits.drain_timeout_ms = 5000;
	c->limits.doh_idle_timeout_ms = 30000;
	c->up.timeout_ms = 2000;
	c->up.attempts = 3;
	c->up.strip_ecs = true;
	c->up.policy = GW_UP_POLICY_ORDERED;
	c->up.max_conns_per_upstream = 8;
	c->up.max_inflight_per_conn = 100;
	c->up.idle_timeout_ms = 60000;
	strcpy(c->up.probe_name, ".");
	c->up.probe_type = 2; /* NS */
	c->up.probe_rise = 2;
	c->up.probe_fall = 3;
	c->doq.retry = GW_DOQ_RETRY_AUTO;
	c->doq.idle_timeout_ms = 30000;
	c->doq.max_streams = 16;
	c->doq.stream_timeout_ms = 10000;
	c->doq.retry_threshold = 256;
	c->doq.early_data = false;
	c->cache.size_bytes = 32u << 20;
	c->cache.min_ttl = 0;
	c->cache.max_ttl = 86400;
	c->cache.negative_max_ttl = 3600;
	c->cache.serve_stale = false;
	c->cache.stale_ttl = 86400;
	c->policy.slip = 2;
	c->policy.ratelimit_clients = 65536;
	c->policy.ecs_ipv4_prefix = 24;
	c->policy.ecs_ipv6_prefix = 56;
}

void gw_conf_default_listeners(gw_conf_t *c)
{
	char err[160];

	c->n_listen = 0;
	for (size_t i = 0; i < sizeof(default_listeners) / sizeof(char *); i++)
		if (gw_endpoint_parse(default_listeners[i], false,
				      &c->listen[c->n_listen], err,
				      sizeof(err)) == 0)
			c->n_listen++;
}

/* --------------------------------------------------------- value checks */

/* Ranges shared by the file, the environment and the flags. */
struct range {
	const char *path;   /* YAML key path */
	size_t conf_off;    /* uint32_t or unsigned field in gw_conf_t */
	uint32_t min, max;
};

#define LIM(name, lo, hi) \
	{ "limits." #name, offsetof(gw_conf_t, limits.name), lo, hi }

static const struct range ranges[] = {
	{ "threads", offsetof(gw_conf_t, threads), 0, 1024 },
	{ "upstream.timeout_ms", offsetof(gw_conf_t, up.timeout_ms), 1,
	  600000 },
	{ "upstream.attempts", offsetof(gw_conf_t, up.attempts), 1, 16 },
#define UPR(name, lo, hi) \
	{ "upstream." #name, offsetof(gw_conf_t, up.name), lo, hi }
	UPR(max_conns_per_upstream, 1, 1024),
	UPR(max_inflight_per_conn, 1, 65535),
	UPR(max_queries_per_conn, 0, UINT32_MAX),
	UPR(idle_timeout_ms, 1, 3600000),
	UPR(max_waiting_per_upstream, 0, 10000000),
#undef UPR
	{ "upstream.probe.interval_ms", offsetof(gw_conf_t,
	  up.probe_interval_ms), 0, 3600000 },
	{ "upstream.probe.rise", offsetof(gw_conf_t, up.probe_rise), 1, 100 },
	{ "upstream.probe.fall", offsetof(gw_conf_t, up.probe_fall), 1, 100 },
	LIM(handshake_timeout_ms, 1, 3600000),
	LIM(idle_timeout_ms, 1, 3600000),
	LIM(partial_timeout_ms, 1, 3600000),
	LIM(write_timeout_ms, 1, 3600000),
	LIM(max_read_events_per_query, 1, 1000000),
	LIM(max_inflight_per_conn, 1, 65535),
	LIM(max_conns_per_client, 1, 1000000),
	LIM(max_conns, 1, 10000000),
	LIM(max_waiting_per_client, 1, 10000000),
	LIM(drain_timeout_ms, 0, 3600000),
	LIM(doh_idle_timeout_ms, 1, 3600000),
	{ "doq.idle_timeout_ms", offsetof(gw_conf_t, doq.idle_timeout_ms), 1,
	  3600000 },
	{ "doq.max_streams", offsetof(gw_conf_t, doq.max_streams), 1, 1024 },
	{ "doq.stream_timeout_ms", offsetof(gw_conf_t, doq.stream_timeout_ms),
	  1, 3600000 },
	{ "doq.retry_threshold", offsetof(gw_conf_t, doq.retry_threshold), 0,
	  1000000 },
#define CAR(name, lo, hi) \
	{ "cache." #name, offsetof(gw_conf_t, cache.name), lo, hi }
	CAR(size_bytes, 0, UINT32_MAX),
	CAR(min_ttl, 0, 604800),
	CAR(max_ttl, 1, 604800),
	CAR(negative_max_ttl, 0, 86400),
	CAR(stale_ttl, 1, 604800),
#undef CAR
#define POL(path, name, lo, hi) \
	{ "policy." path, offsetof(gw_conf_t, policy.name), lo, hi }
	POL("ratelimit.qps", qps, 0, 10000000),
	POL("ratelimit.qps_burst", qps_burst, 0, 10000000),
	POL("ratelimit.conn_rate", conn_rate, 0, 10000000),
	POL("ratelimit.conn_burst", conn_burst, 0, 10000000),
	POL("ratelimit.slip", slip, 0, 100),
	POL("ratelimit.clients", ratelimit_clients, 64, 16777216),
	POL("ecs.ipv4_prefix", ecs_ipv4_prefix, 0, 32),
	POL("ecs.ipv6_prefix", ecs_ipv6_prefix, 0, 128),
#undef POL
};

static const struct range *range_find(const char *path)
{
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
		if (strcmp(ranges[i].path, path) == 0)
			return &ranges[i];
	return NULL;
}

/* Stores v into the field of path after the range check. */
static int set_ranged(gw_conf_t *c, const char *path, uint64_t v, char *err,
		      size_t errlen)
{
	const struct range *rg = range_find(path);

	if (!rg)
		return GW_EINVAL;
	if (v < rg->min || v > rg->max) {
		seterr(err, errlen, "%llu is out of range (%u..%u)",
		       (unsigned long long)v, rg->min, rg->max);
		return GW_EINVAL;
	}
	/* Every ranged field is a 32-bit unsigned integer. */
	_Static_assert(sizeof(unsigned) == sizeof(uint32_t), "32-bit unsigned");
	*(uint32_t *)((char *)c + rg->conf_off) = (uint32_t)v;
	return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!s || !*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

static int parse_format(const char *s)
{
	if (strcmp(s, "logfmt") == 0)
		return GW_LOG_LOGFMT;
	if (strcmp(s, "json") == 0)
		return GW_LOG_JSON;
	return -1;
}

int gw_doq_retry_parse(const char *s)
{
	if (strcmp(s, "auto") == 0)
		return GW_DOQ_RETRY_AUTO;
	if (strcmp(s, "always") == 0)
		return GW_DOQ_RETRY_ALWAYS;
	if (strcmp(s, "never") == 0)
		return GW_DOQ_RETRY_NEVER;
	return -1;
}

static int parse_bool(const char *s)
{
	static const char *const t[] = { "true", "yes", "on", "1" };
	static const char *const f[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, t[i]) == 0)
			return 1;
		if (strcasecmp(s, f[i]) == 0)
			return 0;
	}
	return -1;
}

/*
 * Applies one named scalar setting, shared by the environment and the flags
 * (the file has typed values and its own loop). what names the source in
 * messages: "DNSGW_THREADS" or "--threads".
 */
enum setting {
	SET_CERT, SET_KEY, SET_ADMIN, SET_THREADS, SET_LOG_LEVEL,
	SET_LOG_FORMAT, SET_QUERY_LOG, SET_CA_FILE, SET_USER, SET_CACHE_SIZE,
	SET_BOOTSTRAP, SET_ACL, SET_RATELIMIT_QPS, SET_RATELIMIT_CONNS,
};

/* "allow 10.0.0.0/8, deny all" (rules separated by commas) into acl,
 * replacing it: policy.acl from the environment or a flag. */
static int parse_acl_list(const char *v, gw_acl_t *acl, const char *what,
			  char *err, size_t errlen)
{
	char rule[128], reason[200], b1[100];
	gw_acl_t out = { .n = 0 };

	for (const char *p = v; *p;) {
		size_t len = strcspn(p, ",");
		while (len && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
		}
		size_t keep = len;
		while (keep && (p[keep - 1] == ' ' || p[keep - 1] == '\t'))
			keep--;
		if (keep) {
			if (keep >= sizeof(rule) || out.n >= GW_CONF_MAX_ACL) {
				seterr(err, errlen, "%s: %s", what,
				       keep >= sizeof(rule)
					   ? "rule too long"
					   : "too many rules");
				return GW_ECONFIG;
			}
			memcpy(rule, p, keep);
			rule[keep] = '\0';
			if (gw_acl_rule_parse(rule, &out.rule[out.n], reason,
					      sizeof(reason)) < 0) {
				seterr(err, errlen, "%s: '%s': %s", what,
				       SHOW(b1, rule), reason);
				return GW_ECONFIG;
			}
			out.n++;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	if (out.n == 0) {
		seterr(err, errlen, "%s: no rule given", what);
		return GW_ECONFIG;
	}
	*acl = out;
	return 0;
}

/* "ADDR" (port 53) or "ADDR:PORT" / "[V6]:PORT" for upstream.bootstrap. */
static int parse_bootstrap(gw_conf_t *c, const char *v, char *reason,
			   size_t len)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	socklen_t sl = 0;

	if (strlen(v) >= sizeof(c->up.bootstrap)) {
		snprintf(reason, len, "too long");
		return -1;
	}
	memset(&ss, 0, sizeof(ss));
	if (!*v) {
		/* empty: back to the default (resolv.conf) */
	} else if (inet_pton(AF_INET, v, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(53);
		sl = sizeof(*s4);
	} else if (inet_pton(AF_INET6, v, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(53);
		sl = sizeof(*s6);
	} else if (gw_conf_parse_addr(v, &ss, &sl, reason, len) < 0) {
		return -1;
	}
	strcpy(c->up.bootstrap, v);
	c->up.bootstrap_addr = ss;
	c->up.bootstrap_addrlen = sl;
	return 0;
}

/* A user name for --user: what useradd accepts (POSIX portable names plus
 * a numeric uid), so a typo fails at start-up with a clear message. */
static int check_user(const char *v, char *reason, size_t len)
{
	size_t n = strlen(v);
	if (n == 0 || n > 32) {
		snprintf(reason, len, "a user name has 1 to 32 characters");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		char ch = v[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
		      (ch == '-' && i > 0))) {
			snprintf(reason, len, "not a user name (letters, "
				 "digits, '_', '.', '-')");
			return -1;
		}
	}
	return 0;
}

static int apply_setting(gw_conf_t *c, enum setting which, const char *v,
			 const char *what, char *err, size_t errlen)
{
	char reason[200], b1[100];
	uint64_t n;
	int x;

	switch (which) {
	case SET_CERT:
	case SET_KEY:
	case SET_CA_FILE: {
		char *dst = which == SET_CERT  ? c->cert_file
			    : which == SET_KEY ? c->key_file
					       : c->up.ca_file;
		if (strlen(v) >= PATH_MAX) {
			seterr(err, errlen, "%s: path too long", what);
			return GW_ECONFIG;
		}
		strcpy(dst, v);
		return 0;
	}
	case SET_BOOTSTRAP:
		if (parse_bootstrap(c, v, reason, sizeof(reason)) < 0) {
			seterr(err, errlen, "%s: '%s': %s", what, SHOW(b1, v),
			       reason);
			return GW_ECONFIG;
		}
		return 0;
	case SET_ADMIN:
		if (strlen(v) >= sizeof(c->admin) ||
		    gw_conf_parse_addr(v, &c->admin_addr, &c->admin_addrlen,
				       reason, sizeof(reason)) < 0) {
			if (strlen(v) >= sizeof(c->admin))
				strcpy(reason, "too long");
			seterr(err, errlen, "%s: '%s': %s", what, SHOW(b1, v),
			       reason);
			return GW_ECONFIG;
		}
		strcpy(c->admin, v);
		return 0;
	case SET_THREADS:
	case SET_CACHE_SIZE:
	case SET_RATELIMIT_QPS:
	case SET_RATELIMIT_CONNS: {
		static const char *const key[] = {
		    [SET_THREADS] = "threads",
		    [SET_CACHE_SIZE] = "cache.size_bytes",
		    [SET_RATELIMIT_QPS] = "policy.ratelimit.qps",
		    [SET_RATELIMIT_CONNS] = "policy.ratelimit.conn_rate",
		};
		if (parse_u64(v, &n) < 0) {
			seterr(err, errlen, "%s: '%s' is not a number%s", what,
			       SHOW(b1, v),
			       which == SET_CACHE_SIZE ? " of bytes" : "");
			return GW_ECONFIG;
		}
		if (set_ranged(c, key[which], n, reason, sizeof(reason)) < 0) {
			seterr(err, errlen, "%s: %s", what, reason);
			return GW_ECONFIG;
		}
		return 0;
	}
	case SET_ACL:
		return parse_acl_list(v, &c->policy.acl, what, err, errlen);
	case SET_LOG_LEVEL:
		x = gw_log_level_parse(v);
		if (x < 0) {
			seterr(err, errlen, "%s: unknown level '%s' (expected "
			       "error, warn, info, debug)", what, SHOW(b1, v));
			return GW_ECONFIG;
		}
		c->log_level = x;
		return 0;
	case SET_LOG_FORMAT:
		x = parse_format(v);
		if (x < 0) {
			seterr(err, errlen, "%s: unknown format '%s' (expected "
			       "logfmt, json)", what, SHOW(b1, v));
			return GW_ECONFIG;
		}
		c->log_format = (gw_log_format_t)x;
		return 0;
	case SET_QUERY_LOG:
		x = parse_bool(v);
		if (x < 0) {
			seterr(err, errlen, "%s: '%s' is not a boolean (expected "
			       "true or false)", what, SHOW(b1, v));
			return GW_ECONFIG;
		}
		c->query_log = x;
		return 0;
	case SET_USER:
		if (check_user(v, reason, sizeof(reason)) < 0) {
			seterr(err, errlen, "%s: '%s': %s", what, SHOW(b1, v),
			       reason);
			return GW_ECONFIG;
		}
		strcpy(c->user, v);
		return 0;
	}
	return GW_EINVAL;
}

/* ----------------------------------------------------- the YAML schema */

struct y_tls {
	char *cert;
	char *key;
};

struct y_log {
	char *level;
	char *format;
	bool *queries;
	bool *anonymize;
};

struct y_probe {
	char *name;
	char *type;
	uint32_t *interval_ms;
	uint32_t *rise;
	uint32_t *fall;
};

struct y_upstream {
	char **servers;
	unsigned servers_count;
	uint32_t *timeout_ms;
	uint32_t *attempts;
	bool *strip_ecs;
	char *policy;
	char *ca_file;
	char *bootstrap;
	uint32_t *weights;
	unsigned weights_count;
	char **pins;
	unsigned pins_count;
	uint32_t *max_conns_per_upstream;
	uint32_t *max_inflight_per_conn;
	uint32_t *max_queries_per_conn;
	uint32_t *idle_timeout_ms;
	uint32_t *max_waiting_per_upstream;
	struct y_probe *probe;
};

struct y_limits {
	uint32_t *handshake_timeout_ms;
	uint32_t *idle_timeout_ms;
	uint32_t *partial_timeout_ms;
	uint32_t *write_timeout_ms;
	uint32_t *max_read_events_per_query;
	uint32_t *max_inflight_per_conn;
	uint32_t *max_conns_per_client;
	uint32_t *max_conns;
	uint32_t *max_waiting_per_client;
	uint32_t *drain_timeout_ms;
	uint32_t *doh_idle_timeout_ms;
};

struct y_doh {
	char **trusted_proxies;
	unsigned trusted_proxies_count;
};

struct y_doq {
	char *retry;
	uint32_t *idle_timeout_ms;
	uint32_t *max_streams;
	uint32_t *stream_timeout_ms;
	uint32_t *retry_threshold;
	bool *early_data;
};

struct y_listener_acl {
	char *listen;
	char **acl;
	unsigned acl_count;
};

struct y_ratelimit {
	uint32_t *qps;
	uint32_t *qps_burst;
	uint32_t *conn_rate;
	uint32_t *conn_burst;
	uint32_t *slip;
	uint32_t *clients;
};

struct y_ecs {
	bool *add;
	uint32_t *ipv4_prefix;
	uint32_t *ipv6_prefix;
};

struct y_proxy {
	char **listeners;
	unsigned listeners_count;
	char **trusted;
	unsigned trusted_count;
};

struct y_policy {
	char **acl;
	unsigned acl_count;
	struct y_listener_acl *listener_acl;
	unsigned listener_acl_count;
	struct y_ratelimit *ratelimit;
	struct y_ecs *ecs;
	struct y_proxy *proxy_protocol;
};

struct y_cache {
	uint32_t *size_bytes;
	uint32_t *min_ttl;
	uint32_t *max_ttl;
	uint32_t *negative_max_ttl;
	bool *serve_stale;
	uint32_t *stale_ttl;
};

struct y_conf {
	char **listen;
	unsigned listen_count;
	struct y_tls *tls;
	char *admin;
	uint32_t *threads;
	char *user;
	struct y_log *log;
	struct y_upstream *upstream;
	struct y_limits *limits;
	struct y_doh *doh;
	struct y_doq *doq;
	struct y_policy *policy;
	struct y_cache *cache;
};

#define OPT (CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER)

static const cyaml_schema_value_t url_schema = {
	CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1, GW_CONF_MAX_URL - 1),
};

static const cyaml_schema_field_t tls_fields[] = {
	CYAML_FIELD_STRING_PTR("cert", OPT, struct y_tls, cert, 0,
			       PATH_MAX - 1),
	CYAML_FIELD_STRING_PTR("key", OPT, struct y_tls, key, 0, PATH_MAX - 1),
	CYAML_FIELD_END
};

static const cyaml_schema_field_t log_fields[] = {
	CYAML_FIELD_STRING_PTR("level", OPT, struct y_log, level, 0, 16),
	CYAML_FIELD_STRING_PTR("format", OPT, struct y_log, format, 0, 16),
	CYAML_FIELD_BOOL_PTR("queries", OPT, struct y_log, queries),
	CYAML_FIELD_BOOL_PTR("anonymize", OPT, struct y_log, anonymize),
	CYAML_FIELD_END
};

static const cyaml_schema_value_t weight_schema = {
	CYAML_VALUE_UINT(CYAML_FLAG_DEFAULT, uint32_t),
};

/* "NAME=BASE64": the SPKI pin for the tls:// upstreams whose #name is NAME */
static const cyaml_schema_value_t pin_schema = {
	CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1,
			   GW_CONF_MAX_NAME + GW_CONF_MAX_PIN),
};

static const cyaml_schema_field_t probe_fields[] = {
	CYAML_FIELD_STRING_PTR("name", OPT, struct y_probe, name, 1,
			       GW_CONF_MAX_NAME - 1),
	CYAML_FIELD_STRING_PTR("type", OPT, struct y_probe, type, 1, 16),
	CYAML_FIELD_UINT_PTR("interval_ms", OPT, struct y_probe, interval_ms),
	CYAML_FIELD_UINT_PTR("rise", OPT, struct y_probe, rise),
	CYAML_FIELD_UINT_PTR("fall", OPT, struct y_probe, fall),
	CYAML_FIELD_END
};

static const cyaml_schema_field_t upstream_fields[] = {
	CYAML_FIELD_SEQUENCE("servers", OPT, struct y_upstream, servers,
			     &url_schema, 0, GW_CONF_MAX_UPSTREAM),
	CYAML_FIELD_UINT_PTR("timeout_ms", OPT, struct y_upstream, timeout_ms),
	CYAML_FIELD_UINT_PTR("attempts", OPT, struct y_upstream, attempts),
	CYAML_FIELD_BOOL_PTR("strip_ecs", OPT, struct y_upstream, strip_ecs),
	CYAML_FIELD_STRING_PTR("policy", OPT, struct y_upstream, policy, 0,
			       32),
	CYAML_FIELD_STRING_PTR("ca_file", OPT, struct y_upstream, ca_file, 0,
			       PATH_MAX - 1),
	CYAML_FIELD_STRING_PTR("bootstrap", OPT, struct y_upstream, bootstrap,
			       0, GW_CONF_MAX_URL - 1),
	CYAML_FIELD_SEQUENCE("weights", OPT, struct y_upstream, weights,
			     &weight_schema, 0, GW_CONF_MAX_UPSTREAM),
	CYAML_FIELD_SEQUENCE("pins", OPT, struct y_upstream, pins,
			     &pin_schema, 0, GW_CONF_MAX_UPSTREAM),
	CYAML_FIELD_UINT_PTR("max_conns_per_upstream", OPT, struct y_upstream,
			     max_conns_per_upstream),
	CYAML_FIELD_UINT_PTR("max_inflight_per_conn", OPT, struct y_upstream,
			     max_inflight_per_conn),
	CYAML_FIELD_UINT_PTR("max_queries_per_conn", OPT, struct y_upstream,
			     max_queries_per_conn),
	CYAML_FIELD_UINT_PTR("idle_timeout_ms", OPT, struct y_upstream,
			     idle_timeout_ms),
	CYAML_FIELD_UINT_PTR("max_waiting_per_upstream", OPT,
			     struct y_upstream, max_waiting_per_upstream),
	CYAML_FIELD_MAPPING_PTR("probe", OPT, struct y_upstream, probe,
				probe_fields),
	CYAML_FIELD_END
};

#define YLIM(name) CYAML_FIELD_UINT_PTR(#name, OPT, struct y_limits, name)

static const cyaml_schema_field_t limits_fields[] = {
	YLIM(handshake_timeout_ms),
	YLIM(idle_timeout_ms),
	YLIM(partial_timeout_ms),
	YLIM(write_timeout_ms),
	YLIM(max_read_events_per_query),
	YLIM(max_inflight_per_conn),
	YLIM(max_conns_per_client),
	YLIM(max_conns),
	YLIM(max_waiting_per_client),
	YLIM(drain_timeout_ms),
	YLIM(doh_idle_timeout_ms),
	CYAML_FIELD_END
};

static const cyaml_schema_value_t cidr_schema = {
	CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1, 64),
};

static const cyaml_schema_field_t doh_fields[] = {
	CYAML_FIELD_SEQUENCE("trusted_proxies", OPT, struct y_doh,
			     trusted_proxies, &cidr_schema, 0,
			     GW_CONF_MAX_CIDR),
	CYAML_FIELD_END
};

static const cyaml_schema_field_t doq_fields[] = {
	CYAML_FIELD_STRING_PTR("retry", OPT, struct y_doq, retry, 0, 16),
	CYAML_FIELD_UINT_PTR("idle_timeout_ms", OPT, struct y_doq,
			     idle_timeout_ms),
	CYAML_FIELD_UINT_PTR("max_streams", OPT, struct y_doq, max_streams),
	CYAML_FIELD_UINT_PTR("stream_timeout_ms", OPT, struct y_doq,
			     stream_timeout_ms),
	CYAML_FIELD_BOOL_PTR("early_data", OPT, struct y_doq, early_data),
	CYAML_FIELD_UINT_PTR("retry_threshold", OPT, struct y_doq,
			     retry_threshold),
	CYAML_FIELD_END
};

static const cyaml_schema_value_t acl_rule_schema = {
	CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1, 80),
};

static const cyaml_schema_field_t listener_acl_fields[] = {
	CYAML_FIELD_STRING_PTR("listen", CYAML_FLAG_POINTER,
			       struct y_listener_acl, listen, 1,
			       GW_CONF_MAX_URL - 1),
	CYAML_FIELD_SEQUENCE("acl", CYAML_FLAG_POINTER, struct y_listener_acl,
			     acl, &acl_rule_schema, 0, GW_CONF_MAX_ACL),
	CYAML_FIELD_END
};

static const cyaml_schema_value_t listener_acl_schema = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct y_listener_acl,
			    listener_acl_fields),
};

#define YRL(name) CYAML_FIELD_UINT_PTR(#name, OPT, struct y_ratelimit, name)
static const cyaml_schema_field_t ratelimit_fields[] = {
	YRL(qps), YRL(qps_burst), YRL(conn_rate), YRL(conn_burst), YRL(slip),
	YRL(clients), CYAML_FIELD_END
};
#undef YRL

static const cyaml_schema_field_t ecs_fields[] = {
	CYAML_FIELD_BOOL_PTR("add", OPT, struct y_ecs, add),
	CYAML_FIELD_UINT_PTR("ipv4_prefix", OPT, struct y_ecs, ipv4_prefix),
	CYAML_FIELD_UINT_PTR("ipv6_prefix", OPT, struct y_ecs, ipv6_prefix),
	CYAML_FIELD_END
};

static const cyaml_schema_field_t proxy_fields[] = {
	CYAML_FIELD_SEQUENCE("listeners", OPT, struct y_proxy, listeners,
			     &url_schema, 0, GW_CONF_MAX_PROXY_LISTENERS),
	CYAML_FIELD_SEQUENCE("trusted", OPT, struct y_proxy, trusted,
			     &cidr_schema, 0, GW_CONF_MAX_CIDR),
	CYAML_FIELD_END
};

static const cyaml_schema_field_t policy_fields[] = {
	CYAML_FIELD_SEQUENCE("acl", OPT, struct y_policy, acl,
			     &acl_rule_schema, 0, GW_CONF_MAX_ACL),
	CYAML_FIELD_SEQUENCE("listener_acl", OPT, struct y_policy,
			     listener_acl, &listener_acl_schema, 0,
			     GW_CONF_MAX_ACL_LISTENERS),
	CYAML_FIELD_MAPPING_PTR("ratelimit", OPT, struct y_policy, ratelimit,
				ratelimit_fields),
	CYAML_FIELD_MAPPING_PTR("ecs", OPT, struct y_policy, ecs, ecs_fields),
	CYAML_FIELD_MAPPING_PTR("proxy_protocol", OPT, struct y_policy,
				proxy_protocol, proxy_fields),
	CYAML_FIELD_END
};

static const cyaml_schema_field_t cache_fields[] = {
	CYAML_FIELD_UINT_PTR("size_bytes", OPT, struct y_cache, size_bytes),
	CYAML_FIELD_UINT_PTR("min_ttl", OPT, struct y_cache, min_ttl),
	CYAML_FIELD_UINT_PTR("max_ttl", OPT, struct y_cache, max_ttl),
	CYAML_FIELD_UINT_PTR("negative_max_ttl", OPT, struct y_cache,
			     negative_max_ttl),
	CYAML_FIELD_BOOL_PTR("serve_stale", OPT, struct y_cache, serve_stale),
	CYAML_FIELD_UINT_PTR("stale_ttl", OPT, struct y_cache, stale_ttl),
	CYAML_FIELD_END
};

static const cyaml_schema_field_t top_fields[] = {
	CYAML_FIELD_SEQUENCE("listen", OPT, struct y_conf, listen, &url_schema,
			     0, GW_CONF_MAX_LISTEN),
	CYAML_FIELD_MAPPING_PTR("tls", OPT, struct y_conf, tls, tls_fields),
	CYAML_FIELD_STRING_PTR("admin", OPT, struct y_conf, admin, 0,
			       GW_CONF_MAX_URL - 1),
	CYAML_FIELD_UINT_PTR("threads", OPT, struct y_conf, threads),
	CYAML_FIELD_STRING_PTR("user", OPT, struct y_conf, user, 0, 64),
	CYAML_FIELD_MAPPING_PTR("log", OPT, struct y_conf, log, log_fields),
	CYAML_FIELD_MAPPING_PTR("upstream", OPT, struct y_conf, upstream,
				upstream_fields),
	CYAML_FIELD_MAPPING_PTR("limits", OPT, struct y_conf, limits,
				limits_fields),
	CYAML_FIELD_MAPPING_PTR("doh", OPT, struct y_conf, doh, doh_fields),
	CYAML_FIELD_MAPPING_PTR("doq", OPT, struct y_conf, doq, doq_fields),
	CYAML_FIELD_MAPPING_PTR("policy", OPT, struct y_conf, policy,
				policy_fields),
	CYAML_FIELD_MAPPING_PTR("cache", OPT, struct y_conf, cache,
				cache_fields),
	CYAML_FIELD_END
};

static const cyaml_schema_value_t top_schema = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct y_conf, top_fields),
};

/* Pairs each limits key with its place in the loaded struct. */
static const struct {
	const char *path;
	size_t y_off;
} y_limits_map[] = {
#define YMAP(name) { "limits." #name, offsetof(struct y_limits, name) }
	YMAP(handshake_timeout_ms), YMAP(idle_timeout_ms),
	YMAP(partial_timeout_ms), YMAP(write_timeout_ms),
	YMAP(max_read_events_per_query), YMAP(max_inflight_per_conn),
	YMAP(max_conns_per_client), YMAP(max_conns),
	YMAP(max_waiting_per_client), YMAP(drain_timeout_ms),
	YMAP(doh_idle_timeout_ms),
#undef YMAP
};

/* ---------------------------------------------------- the position walk */

struct pos {
	char path[MAX_YAML_PATH];
	unsigned kline, kcol; /* the key, 1-based */
	unsigned vline, vcol; /* the value */
};

struct file_ctx {
	const char *file;
	char *err;
	size_t errlen;
	yaml_parser_t parser;
	struct pos pos[MAX_POS];
	unsigned npos;
	bool empty; /* no document, or a null one */
};

static void ferr_at(struct file_ctx *f, const yaml_mark_t *m,
		    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void ferr_at(struct file_ctx *f, const yaml_mark_t *m, const char *fmt,
		    ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	seterr(f->err, f->errlen, "%s:%zu:%zu: %s", f->file, m->line + 1,
	       m->column + 1, msg);
}

/* An error about a value already loaded: located by its recorded path. */
static void ferr_path(struct file_ctx *f, const char *path, bool at_key,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void ferr_path(struct file_ctx *f, const char *path, bool at_key,
		      const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (unsigned i = 0; i < f->npos; i++) {
		if (strcmp(f->pos[i].path, path) != 0)
			continue;
		seterr(f->err, f->errlen, "%s:%u:%u: %s: %s", f->file,
		       at_key ? f->pos[i].kline : f->pos[i].vline,
		       at_key ? f->pos[i].kcol : f->pos[i].vcol, path, msg);
		return;
	}
	seterr(f->err, f->errlen, "%s: %s: %s", f->file, path, msg);
}

static int next_event(struct file_ctx *f, yaml_event_t *ev)
{
	if (yaml_parser_parse(&f->parser, ev))
		return 0;
	const yaml_parser_t *p = &f->parser;
	const char *problem = p->problem ? p->problem : "YAML syntax error";
	if (p->context)
		ferr_at(f, &p->problem_mark, "%s %s", problem, p->context);
	else
		ferr_at(f, &p->problem_mark, "%s", problem);
	return GW_ECONFIG;
}

static void record(struct file_ctx *f, const char *path, const yaml_mark_t *k,
		   const yaml_mark_t *v)
{
	if (f->npos >= MAX_POS)
		return;
	struct pos *p = &f->pos[f->npos++];
	snprintf(p->path, sizeof(p->path), "%s", path);
	p->kline = (unsigned)k->line + 1;
	p->kcol = (unsigned)k->column + 1;
	p->vline = (unsigned)v->line + 1;
	p->vcol = (unsigned)v->column + 1;
}

static const char *kind_name(cyaml_type_e t)
{
	switch (t) {
	case CYAML_MAPPING:
		return "a mapping of keys";
	case CYAML_SEQUENCE:
		return "a list";
	case CYAML_UINT:
		return "an unsigned integer";
	case CYAML_BOOL:
		return "true or false";
	default:
		return "a string";
	}
}

static int walk_value(struct file_ctx *f, const cyaml_schema_value_t *s,
		      yaml_event_t *ev, const char *path);

static int walk_mapping(struct file_ctx *f, const cyaml_schema_value_t *s,
			yaml_event_t *start, const char *path)
{
	const cyaml_schema_field_t *fields = s->mapping.fields;
	uint32_t seen = 0;
	char b1[100], list[400];
	int r;

	(void)start;
	for (;;) {
		yaml_event_t k, v;
		if ((r = next_event(f, &k)) < 0)
			return r;
		if (k.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&k);
			return 0;
		}
		if (k.type != YAML_SCALAR_EVENT) {
			ferr_at(f, &k.start_mark, "keys must be plain words");
			yaml_event_delete(&k);
			return GW_ECONFIG;
		}
		const char *key = (const char *)k.data.scalar.value;
		size_t i;
		for (i = 0; fields[i].key; i++)
			if (strcmp(fields[i].key, key) == 0)
				break;
		if (!fields[i].key) {
			size_t o = 0;
			list[0] = '\0';
			for (size_t j = 0; fields[j].key; j++) {
				int w = snprintf(list + o, sizeof(list) - o,
						 "%s%s", j ? ", " : "",
						 fields[j].key);
				if (w < 0 || (size_t)w >= sizeof(list) - o)
					break;
				o += (size_t)w;
			}
			ferr_at(f, &k.start_mark,
				"unknown key '%s'%s%s%s (expected %s)",
				show(b1, sizeof(b1), key, k.data.scalar.length),
				*path ? " in '" : "", path, *path ? "'" : "",
				list);
			yaml_event_delete(&k);
			return GW_ECONFIG;
		}
		char child[MAX_YAML_PATH];
		snprintf(child, sizeof(child), "%s%s%s", path, *path ? "." : "",
			 key);
		if (seen & (1u << i)) {
			ferr_at(f, &k.start_mark, "duplicate key '%s'", child);
			yaml_event_delete(&k);
			return GW_ECONFIG;
		}
		seen |= 1u << i;
		if ((r = next_event(f, &v)) < 0) {
			yaml_event_delete(&k);
			return r;
		}
		record(f, child, &k.start_mark, &v.start_mark);
		yaml_event_delete(&k);
		if ((r = walk_value(f, &fields[i].value, &v, child)) < 0)
			return r;
	}
}

static int walk_sequence(struct file_ctx *f, const cyaml_schema_value_t *s,
			 const char *path)
{
	int r;

	for (uint32_t n = 0;; n++) {
		yaml_event_t v;
		if ((r = next_event(f, &v)) < 0)
			return r;
		if (v.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&v);
			return 0;
		}
		if (n >= s->sequence.max) {
			ferr_at(f, &v.start_mark, "%s: too many entries (max %u)",
				path, s->sequence.max);
			yaml_event_delete(&v);
			return GW_ECONFIG;
		}
		char child[MAX_YAML_PATH];
		snprintf(child, sizeof(child), "%s[%u]", path, n);
		record(f, child, &v.start_mark, &v.start_mark);
		if ((r = walk_value(f, s->sequence.entry, &v, child)) < 0)
			return r;
	}
}

/* At least as strict as libcyaml, so that libcyaml never disagrees. */
static int walk_scalar(struct file_ctx *f, const cyaml_schema_value_t *s,
		       const yaml_event_t *ev, const char *path)
{
	const char *v = (const char *)ev->data.scalar.value;
	size_t n = ev->data.scalar.length;
	char b1[100];

	if (strlen(v) != n) {
		ferr_at(f, &ev->start_mark, "%s: value contains a NUL byte",
			path);
		return GW_ECONFIG;
	}
	switch (s->type) {
	case CYAML_UINT: {
		uint64_t x;
		/* libcyaml reads a leading 0 as octal: refuse the surprise. */
		if (parse_u64(v, &x) < 0 || (n > 1 && v[0] == '0') ||
		    x > UINT32_MAX) {
			ferr_at(f, &ev->start_mark,
				"%s: expected an unsigned integer, got '%s'",
				path, show(b1, sizeof(b1), v, n));
			return GW_ECONFIG;
		}
		return 0;
	}
	case CYAML_BOOL: {
		/* libcyaml treats anything unknown as true; be strict here. */
		static const char *const ok[] = { "true", "false", "yes",
						  "no", "on", "off" };
		for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
			if (strcasecmp(v, ok[i]) == 0)
				return 0;
		ferr_at(f, &ev->start_mark,
			"%s: expected true or false, got '%s'", path,
			show(b1, sizeof(b1), v, n));
		return GW_ECONFIG;
	}
	case CYAML_STRING:
		if (n < s->string.min) {
			ferr_at(f, &ev->start_mark, "%s: must not be empty",
				path);
			return GW_ECONFIG;
		}
		if (n > s->string.max) {
			ferr_at(f, &ev->start_mark,
				"%s: value too long (max %u bytes)", path,
				s->string.max);
			return GW_ECONFIG;
		}
		return 0;
	default:
		return 0;
	}
}

/* Consumes ev and the events of the value it starts. */
static int walk_value(struct file_ctx *f, const cyaml_schema_value_t *s,
		      yaml_event_t *ev, const char *path)
{
	yaml_event_type_t want;
	int r;

	if (ev->type == YAML_ALIAS_EVENT) {
		ferr_at(f, &ev->start_mark, "%s: YAML aliases are not supported",
			*path ? path : "document");
		yaml_event_delete(ev);
		return GW_ECONFIG;
	}
	switch (s->type) {
	case CYAML_MAPPING:
		want = YAML_MAPPING_START_EVENT;
		break;
	case CYAML_SEQUENCE:
		want = YAML_SEQUENCE_START_EVENT;
		break;
	default:
		want = YAML_SCALAR_EVENT;
		break;
	}
	if (ev->type != want) {
		if (*path)
			ferr_at(f, &ev->start_mark, "%s: must be %s", path,
				kind_name(s->type));
		else
			ferr_at(f, &ev->start_mark,
				"the configuration must be %s",
				kind_name(s->type));
		yaml_event_delete(ev);
		return GW_ECONFIG;
	}
	if (want == YAML_MAPPING_START_EVENT)
		r = walk_mapping(f, s, ev, path);
	else if (want == YAML_SEQUENCE_START_EVENT)
		r = walk_sequence(f, s, path);
	else
		r = walk_scalar(f, s, ev, path);
	yaml_event_delete(ev);
	return r;
}

static bool null_scalar(const yaml_event_t *ev)
{
	if (ev->type != YAML_SCALAR_EVENT || !ev->data.scalar.plain_implicit)
		return false;
	const char *v = (const char *)ev->data.scalar.value;
	return !*v || strcmp(v, "~") == 0 || strcasecmp(v, "null") == 0;
}

static int walk_document(struct file_ctx *f, const unsigned char *data,
			 size_t len)
{
	yaml_event_t ev;
	int r;

	if (!yaml_parser_initialize(&f->parser)) {
		seterr(f->err, f->errlen, "%s: out of memory", f->file);
		return GW_ECONFIG;
	}
	yaml_parser_set_input_string(&f->parser, data, len);
	if ((r = next_event(f, &ev)) < 0) /* STREAM-START */
		goto out;
	yaml_event_delete(&ev);
	if ((r = next_event(f, &ev)) < 0)
		goto out;
	if (ev.type == YAML_STREAM_END_EVENT) {
		yaml_event_delete(&ev);
		f->empty = true;
		goto out;
	}
	yaml_event_delete(&ev); /* DOCUMENT-START */
	if ((r = next_event(f, &ev)) < 0)
		goto out;
	if (null_scalar(&ev)) {
		yaml_event_delete(&ev);
		f->empty = true;
	} else if ((r = walk_value(f, &top_schema, &ev, "")) < 0) {
		goto out;
	}
	if ((r = next_event(f, &ev)) < 0) /* DOCUMENT-END */
		goto out;
	yaml_event_delete(&ev);
	if ((r = next_event(f, &ev)) < 0)
		goto out;
	if (ev.type != YAML_STREAM_END_EVENT) {
		ferr_at(f, &ev.start_mark,
			"only one YAML document is allowed per file");
		r = GW_ECONFIG;
	}
	yaml_event_delete(&ev);
out:
	yaml_parser_delete(&f->parser);
	return r;
}

/* ---------------------------------------------------- loading the file */

struct cy_capture {
	char msg[256];
	unsigned line, col;
};

static void cy_log(cyaml_log_t level, void *ctx, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/* libcyaml's messages go into the error instead of onto stderr. */
static void cy_log(cyaml_log_t level, void *ctx, const char *fmt, va_list ap)
{
	struct cy_capture *cap = ctx;
	char line[256];

	if (level < CYAML_LOG_ERROR)
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	const char *at = strstr(line, "(line: ");
	if (at && cap->line == 0) {
		unsigned l, c;
		if (sscanf(at, "(line: %u, column: %u)", &l, &c) == 2)
			cap->line = l, cap->col = c;
	}
	if (!cap->msg[0] && !strstr(line, "Backtrace") && !at) {
		const char *m = line;
		if (strncmp(m, "Load: ", 6) == 0)
			m += 6;
		snprintf(cap->msg, sizeof(cap->msg), "%s", m);
	}
}

static int read_file(const char *path, unsigned char **out, size_t *outlen,
		     char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		seterr(err, errlen, "%s: cannot open: %s", path,
		       strerror(errno));
		return GW_ECONFIG;
	}
	unsigned char *buf = malloc(MAX_FILE_BYTES + 1);
	if (!buf) {
		close(fd);
		seterr(err, errlen, "%s: out of memory", path);
		return GW_ECONFIG;
	}
	size_t len = 0;
	for (;;) {
		ssize_t r = read(fd, buf + len, MAX_FILE_BYTES + 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			seterr(err, errlen, "%s: cannot read: %s", path,
			       strerror(errno));
			close(fd);
			free(buf);
			return GW_ECONFIG;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > MAX_FILE_BYTES) {
			seterr(err, errlen, "%s: larger than %d bytes", path,
			       MAX_FILE_BYTES);
			close(fd);
			free(buf);
			return GW_ECONFIG;
		}
	}
	close(fd);
	*out = buf;
	*outlen = len;
	return 0;
}

static int apply_url_list(struct file_ctx *f, const char *key, char **urls,
			  unsigned n, bool upstream, gw_endpoint_t *dst,
			  unsigned *ndst)
{
	char reason[200], path[MAX_YAML_PATH], b1[100];

	for (unsigned i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s[%u]", key, i);
		if (gw_endpoint_parse(urls[i], upstream, &dst[i], reason,
				      sizeof(reason)) < 0) {
			ferr_path(f, path, false, "'%s': %s",
				  SHOW(b1, urls[i]), reason);
			return GW_ECONFIG;
		}
	}
	*ndst = n;
	return 0;
}

static int apply_u32(struct file_ctx *f, gw_conf_t *c, const char *path,
		     const uint32_t *v)
{
	char reason[200];

	if (!v)
		return 0;
	if (set_ranged(c, path, *v, reason, sizeof(reason)) < 0) {
		ferr_path(f, path, false, "%s", reason);
		return GW_ECONFIG;
	}
	return 0;
}

int gw_up_policy_parse(const char *s)
{
	static const char *const names[] = {
		[GW_UP_POLICY_ORDERED] = "ordered",
		[GW_UP_POLICY_ROUND_ROBIN] = "round-robin",
		[GW_UP_POLICY_RANDOM] = "random",
		[GW_UP_POLICY_LEAST_OUTSTANDING] = "least-outstanding",
		[GW_UP_POLICY_LOWEST_LATENCY] = "lowest-latency",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i]) == 0)
			return (int)i;
	return -1;
}

/* A query type by name (A, NS, ...) or number. */
static int parse_qtype(const char *s)
{
	static const struct { const char *n; int t; } types[] = {
		{ "A", 1 }, { "NS", 2 }, { "SOA", 6 }, { "PTR", 12 },
		{ "MX", 15 }, { "TXT", 16 }, { "AAAA", 28 }, { "SRV", 33 },
	};
	uint64_t n;

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcasecmp(s, types[i].n) == 0)
			return types[i].t;
	if (parse_u64(s, &n) == 0 && n >= 1 && n <= 65535)
		return (int)n;
	return -1;
}

/* The pooled-connection, policy, TLS and probe keys of upstream:. */
static int apply_upstream_more(struct file_ctx *f, gw_conf_t *c,
			       const struct y_upstream *u)
{
	static const char *const keys[] = {
		"upstream.max_conns_per_upstream",
		"upstream.max_inflight_per_conn",
		"upstream.max_queries_per_conn", "upstream.idle_timeout_ms",
		"upstream.max_waiting_per_upstream",
	};
	uint32_t *const vals[] = {
		u->max_conns_per_upstream, u->max_inflight_per_conn,
		u->max_queries_per_conn, u->idle_timeout_ms,
		u->max_waiting_per_upstream,
	};
	char path[MAX_YAML_PATH], b1[100];
	int r;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if ((r = apply_u32(f, c, keys[i], vals[i])) < 0)
			return r;
	if (u->policy) {
		int pol = gw_up_policy_parse(u->policy);
		if (pol < 0) {
			ferr_path(f, "upstream.policy", false,
				  "unknown policy '%s' (expected ordered, "
				  "round-robin, random, least-outstanding, "
				  "lowest-latency)", SHOW(b1, u->policy));
			return GW_ECONFIG;
		}
		c->up.policy = (gw_up_policy_t)pol;
	}
	if (u->ca_file)
		strcpy(c->up.ca_file, u->ca_file);
	if (u->bootstrap &&
	    parse_bootstrap(c, u->bootstrap, path, sizeof(path)) < 0) {
		ferr_path(f, "upstream.bootstrap", false, "'%s': %s",
			  SHOW(b1, u->bootstrap), path);
		return GW_ECONFIG;
	}
	for (unsigned i = 0; u->weights && i < u->weights_count; i++) {
		if (u->weights[i] < 1 || u->weights[i] > 1000) {
			snprintf(path, sizeof(path), "upstream.weights[%u]", i);
			ferr_path(f, path, false, "out of range (1..1000)");
			return GW_ECONFIG;
		}
		c->up.weight[i] = u->weights[i];
	}
	if (u->probe) {
		const struct y_probe *pr = u->probe;
		if (pr->name) {
			if (!valid_hostname(pr->name, strlen(pr->name)) &&
			    strcmp(pr->name, ".") != 0) {
				ferr_path(f, "upstream.probe.name", false,
					  "'%s' is not a domain name",
					  SHOW(b1, pr->name));
				return GW_ECONFIG;
			}
			strcpy(c->up.probe_name, pr->name);
		}
		if (pr->type) {
			int t = parse_qtype(pr->type);
			if (t < 0) {
				ferr_path(f, "upstream.probe.type", false,
					  "unknown type '%s' (A, AAAA, NS, "
					  "SOA, TXT, ... or a number)",
					  SHOW(b1, pr->type));
				return GW_ECONFIG;
			}
			c->up.probe_type = (uint16_t)t;
		}
		if ((r = apply_u32(f, c, "upstream.probe.interval_ms",
				   pr->interval_ms)) < 0 ||
		    (r = apply_u32(f, c, "upstream.probe.rise", pr->rise)) < 0 ||
		    (r = apply_u32(f, c, "upstream.probe.fall", pr->fall)) < 0)
			return r;
	}
	/* Pins are matched to servers by TLS name, so apply them last. */
	for (unsigned i = 0; u->pins && i < u->pins_count; i++) {
		const char *eq = strchr(u->pins[i], '=');
		size_t nl = eq ? (size_t)(eq - u->pins[i]) : 0;
		bool used = false;
		snprintf(path, sizeof(path), "upstream.pins[%u]", i);
		if (!eq || nl == 0 || strlen(eq + 1) != 44) {
			ferr_path(f, path, false, "expected NAME=PIN with PIN "
				  "the base64 SHA-256 of the server's "
				  "SubjectPublicKeyInfo (44 characters)");
			return GW_ECONFIG;
		}
		for (unsigned k = 0; k < c->n_upstream; k++) {
			if (c->upstream[k].proto != GW_PROTO_DOT ||
			    strlen(c->upstream[k].tls_name) != nl ||
			    strncasecmp(c->upstream[k].tls_name, u->pins[i],
					nl) != 0)
				continue;
			strcpy(c->up.pin[k], eq + 1);
			used = true;
		}
		if (!used) {
			ferr_path(f, path, false, "no tls:// server has the "
				  "name '%.*s' after '#'", (int)nl, u->pins[i]);
			return GW_ECONFIG;
		}
	}
	return 0;
}

static int apply_acl(struct file_ctx *f, const char *key, char **rules,
		     unsigned n, gw_acl_t *acl)
{
	char reason[200], path[MAX_YAML_PATH], b1[100];

	for (unsigned i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s[%u]", key, i);
		if (gw_acl_rule_parse(rules[i], &acl->rule[i], reason,
				      sizeof(reason)) < 0) {
			ferr_path(f, path, false, "'%s': %s",
				  SHOW(b1, rules[i]), reason);
			return GW_ECONFIG;
		}
	}
	acl->n = n;
	return 0;
}

/* The policy: block (docs/policy.md). */
static int apply_policy(struct file_ctx *f, gw_conf_t *c,
			const struct y_policy *y)
{
	gw_policy_conf_t *pc = &c->policy;
	char reason[200], path[MAX_YAML_PATH], b1[100];
	unsigned n;
	int r;

	if (y->acl && (r = apply_acl(f, "policy.acl", y->acl, y->acl_count,
				     &pc->acl)) < 0)
		return r;
	for (unsigned i = 0; y->listener_acl && i < y->listener_acl_count;
	     i++) {
		const struct y_listener_acl *la = &y->listener_acl[i];
		snprintf(path, sizeof(path), "policy.listener_acl[%u].listen",
			 i);
		if (gw_endpoint_parse(la->listen, false,
				      &pc->listener_acl[i].listen, reason,
				      sizeof(reason)) < 0) {
			ferr_path(f, path, false, "'%s': %s",
				  SHOW(b1, la->listen), reason);
			return GW_ECONFIG;
		}
		snprintf(path, sizeof(path), "policy.listener_acl[%u].acl", i);
		if ((r = apply_acl(f, path, la->acl, la->acl_count,
				   &pc->listener_acl[i].acl)) < 0)
			return r;
	}
	if (y->listener_acl)
		pc->n_listener_acl = y->listener_acl_count;
	if (y->ratelimit) {
		const struct y_ratelimit *rl = y->ratelimit;
		if ((r = apply_u32(f, c, "policy.ratelimit.qps", rl->qps)) < 0 ||
		    (r = apply_u32(f, c, "policy.ratelimit.qps_burst",
				   rl->qps_burst)) < 0 ||
		    (r = apply_u32(f, c, "policy.ratelimit.conn_rate",
				   rl->conn_rate)) < 0 ||
		    (r = apply_u32(f, c, "policy.ratelimit.conn_burst",
				   rl->conn_burst)) < 0 ||
		    (r = apply_u32(f, c, "policy.ratelimit.slip", rl->slip)) < 0 ||
		    (r = apply_u32(f, c, "policy.ratelimit.clients",
				   rl->clients)) < 0)
			return r;
	}
	if (y->ecs) {
		if (y->ecs->add)
			pc->ecs_add = *y->ecs->add;
		if ((r = apply_u32(f, c, "policy.ecs.ipv4_prefix",
				   y->ecs->ipv4_prefix)) < 0 ||
		    (r = apply_u32(f, c, "policy.ecs.ipv6_prefix",
				   y->ecs->ipv6_prefix)) < 0)
			return r;
	}
	if (y->proxy_protocol) {
		const struct y_proxy *pp = y->proxy_protocol;
		if (pp->listeners &&
		    (r = apply_url_list(f, "policy.proxy_protocol.listeners",
					pp->listeners, pp->listeners_count,
					false, pc->proxy_listen,
					&pc->n_proxy_listen)) < 0)
			return r;
		/* every transport: udp and doq take the header per datagram
		 * (gateway/policy.h) */
		n = pp->trusted ? pp->trusted_count : 0;
		for (unsigned i = 0; i < n; i++) {
			snprintf(path, sizeof(path),
				 "policy.proxy_protocol.trusted[%u]", i);
			if (gw_cidr_parse(pp->trusted[i], &pc->proxy_trusted[i],
					  reason, sizeof(reason)) < 0) {
				ferr_path(f, path, false, "'%s': %s",
					  SHOW(b1, pp->trusted[i]), reason);
				return GW_ECONFIG;
			}
		}
		if (pp->trusted)
			pc->n_proxy_trusted = n;
	}
	return 0;
}

static int apply_file(struct file_ctx *f, gw_conf_t *c, const struct y_conf *y)
{
	char reason[200], b1[100];
	int r;

	if (y->listen &&
	    (r = apply_url_list(f, "listen", y->listen, y->listen_count, false,
				c->listen, &c->n_listen)) < 0)
		return r;
	if (y->tls) {
		if (y->tls->cert)
			strcpy(c->cert_file, y->tls->cert);
		if (y->tls->key)
			strcpy(c->key_file, y->tls->key);
	}
	if (y->admin) {
		c->admin[0] = '\0';
		c->admin_addrlen = 0;
		if (*y->admin) {
			if (gw_conf_parse_addr(y->admin, &c->admin_addr,
					       &c->admin_addrlen, reason,
					       sizeof(reason)) < 0) {
				ferr_path(f, "admin", false, "'%s': %s",
					  SHOW(b1, y->admin), reason);
				return GW_ECONFIG;
			}
			strcpy(c->admin, y->admin);
		}
	}
	if ((r = apply_u32(f, c, "threads", y->threads)) < 0)
		return r;
	if (y->user) {
		/* "" keeps the user dnsgw was started as */
		if (*y->user && check_user(y->user, reason, sizeof(reason)) < 0) {
			ferr_path(f, "user", false, "'%s': %s",
				  SHOW(b1, y->user), reason);
			return GW_ECONFIG;
		}
		strcpy(c->user, y->user);
	}
	if (y->log) {
		if (y->log->level) {
			int lv = gw_log_level_parse(y->log->level);
			if (lv < 0) {
				ferr_path(f, "log.level", false,
					  "unknown level '%s' (expected error, "
					  "warn, info, debug)",
					  SHOW(b1, y->log->level));
				return GW_ECONFIG;
			}
			c->log_level = lv;
		}
		if (y->log->format) {
			int fm = parse_format(y->log->format);
			if (fm < 0) {
				ferr_path(f, "log.format", false,
					  "unknown format '%s' (expected "
					  "logfmt, json)",
					  SHOW(b1, y->log->format));
				return GW_ECONFIG;
			}
			c->log_format = (gw_log_format_t)fm;
		}
		if (y->log->queries)
			c->query_log = *y->log->queries;
		if (y->log->anonymize)
			c->policy.log_anonymize = *y->log->anonymize;
	}
	if (y->upstream) {
		const struct y_upstream *u = y->upstream;
		if (u->servers &&
		    (r = apply_url_list(f, "upstream.servers", u->servers,
					u->servers_count, true, c->upstream,
					&c->n_upstream)) < 0)
			return r;
		if ((r = apply_u32(f, c, "upstream.timeout_ms",
				   u->timeout_ms)) < 0 ||
		    (r = apply_u32(f, c, "upstream.attempts", u->attempts)) < 0)
			return r;
		if (u->strip_ecs)
			c->up.strip_ecs = *u->strip_ecs;
		if ((r = apply_upstream_more(f, c, u)) < 0)
			return r;
	}
	if (y->limits) {
		for (size_t i = 0;
		     i < sizeof(y_limits_map) / sizeof(y_limits_map[0]); i++) {
			uint32_t *const *v = (uint32_t *const *)
				((const char *)y->limits + y_limits_map[i].y_off);
			if ((r = apply_u32(f, c, y_limits_map[i].path, *v)) < 0)
				return r;
		}
	}
	if (y->doh && y->doh->trusted_proxies) {
		char path[MAX_YAML_PATH];
		for (unsigned i = 0; i < y->doh->trusted_proxies_count; i++) {
			snprintf(path, sizeof(path), "doh.trusted_proxies[%u]",
				 i);
			if (gw_cidr_parse(y->doh->trusted_proxies[i],
					  &c->doh.trusted_proxies[i], reason,
					  sizeof(reason)) < 0) {
				ferr_path(f, path, false, "'%s': %s",
					  SHOW(b1, y->doh->trusted_proxies[i]),
					  reason);
				return GW_ECONFIG;
			}
		}
		c->doh.n_trusted_proxies = y->doh->trusted_proxies_count;
	}
	if (y->doq) {
		const struct y_doq *q = y->doq;
		if (q->retry) {
			int m = gw_doq_retry_parse(q->retry);
			if (m < 0) {
				ferr_path(f, "doq.retry", false,
					  "unknown mode '%s' (expected auto, "
					  "always, never)", SHOW(b1, q->retry));
				return GW_ECONFIG;
			}
			c->doq.retry = (gw_doq_retry_t)m;
		}
		if ((r = apply_u32(f, c, "doq.idle_timeout_ms",
				   q->idle_timeout_ms)) < 0 ||
		    (r = apply_u32(f, c, "doq.max_streams", q->max_streams)) < 0 ||
		    (r = apply_u32(f, c, "doq.stream_timeout_ms",
				   q->stream_timeout_ms)) < 0 ||
		    (r = apply_u32(f, c, "doq.retry_threshold",
				   q->retry_threshold)) < 0)
			return r;
		if (q->early_data)
			c->doq.early_data = *q->early_data;
	}
	if (y->policy && (r = apply_policy(f, c, y->policy)) < 0)
		return r;
	if (y->cache) {
		const struct y_cache *k = y->cache;
		if ((r = apply_u32(f, c, "cache.size_bytes", k->size_bytes)) < 0 ||
		    (r = apply_u32(f, c, "cache.min_ttl", k->min_ttl)) < 0 ||
		    (r = apply_u32(f, c, "cache.max_ttl", k->max_ttl)) < 0 ||
		    (r = apply_u32(f, c, "cache.negative_max_ttl",
				   k->negative_max_ttl)) < 0 ||
		    (r = apply_u32(f, c, "cache.stale_ttl", k->stale_ttl)) < 0)
			return r;
		if (k->serve_stale)
			c->cache.serve_stale = *k->serve_stale;
	}
	return 0;
}

static int load_file(gw_conf_t *c, const char *path, char *err, size_t errlen)
{
	struct file_ctx *f;
	unsigned char *data = NULL;
	size_t len = 0;
	int r;

	if (strlen(path) >= sizeof(c->config_file)) {
		seterr(err, errlen, "config file path too long");
		return GW_ECONFIG;
	}
	strcpy(c->config_file, path);
	if ((r = read_file(path, &data, &len, err, errlen)) < 0)
		return r;
	f = calloc(1, sizeof(*f));
	if (!f) {
		free(data);
		seterr(err, errlen, "%s: out of memory", path);
		return GW_ECONFIG;
	}
	f->file = path;
	f->err = err;
	f->errlen = errlen;
	if ((r = walk_document(f, data, len)) < 0 || f->empty)
		goto out;

	struct cy_capture cap = { .msg = "" };
	cyaml_config_t cfg = {
		.log_fn = cy_log,
		.log_ctx = &cap,
		.mem_fn = cyaml_mem,
		.log_level = CYAML_LOG_ERROR,
		.flags = CYAML_CFG_NO_ALIAS,
	};
	struct y_conf *y = NULL;
	cyaml_err_t ce = cyaml_load_data(data, len, &cfg, &top_schema,
					 (cyaml_data_t **)&y, NULL);
	if (ce != CYAML_OK) {
		/* The walk should have caught it; keep libcyaml's words. */
		const char *m = cap.msg[0] ? cap.msg : cyaml_strerror(ce);
		if (cap.line)
			seterr(err, errlen, "%s:%u:%u: %s", path, cap.line,
			       cap.col, m);
		else
			seterr(err, errlen, "%s: %s", path, m);
		r = GW_ECONFIG;
		goto out;
	}
	if (y) {
		r = apply_file(f, c, y);
		cyaml_free(&cfg, &top_schema, y, 0);
	}
out:
	if (r < 0)
		r = GW_ECONFIG;
	free(f);
	free(data);
	return r;
}

/* ------------------------------------------------------ the environment */

static const struct {
	const char *name;
	int setting; /* enum setting, or one of the ENV_* below */
} env_vars[] = {
#define ENV_CONFIG (-1)
#define ENV_LISTEN (-2)
#define ENV_UPSTREAM (-3)
	{ "DNSGW_CONFIG", ENV_CONFIG },
	{ "DNSGW_LISTEN", ENV_LISTEN },
	{ "DNSGW_UPSTREAM", ENV_UPSTREAM },
	{ "DNSGW_CERT", SET_CERT },
	{ "DNSGW_KEY", SET_KEY },
	{ "DNSGW_ADMIN", SET_ADMIN },
	{ "DNSGW_THREADS", SET_THREADS },
	{ "DNSGW_LOG_LEVEL", SET_LOG_LEVEL },
	{ "DNSGW_LOG_FORMAT", SET_LOG_FORMAT },
	{ "DNSGW_QUERY_LOG", SET_QUERY_LOG },
	{ "DNSGW_CACHE_SIZE", SET_CACHE_SIZE },
	{ "DNSGW_USER", SET_USER },
	{ "DNSGW_BOOTSTRAP", SET_BOOTSTRAP },
	{ "DNSGW_ACL", SET_ACL },
	{ "DNSGW_RATELIMIT_QPS", SET_RATELIMIT_QPS },
	{ "DNSGW_RATELIMIT_CONNS", SET_RATELIMIT_CONNS },
};

#define N_ENV (sizeof(env_vars) / sizeof(env_vars[0]))

/* Values found, by env_vars index; NULL when unset or empty. */
struct env_set {
	const char *val[N_ENV];
};

static int scan_env(char **envp, struct env_set *e, char *err, size_t errlen)
{
	char b1[100];

	memset(e, 0, sizeof(*e));
	for (char **p = envp; p && *p; p++) {
		if (strncmp(*p, "DNSGW_", 6) != 0)
			continue;
		const char *eq = strchr(*p, '=');
		size_t nlen = eq ? (size_t)(eq - *p) : strlen(*p);
		size_t i;
		for (i = 0; i < N_ENV; i++)
			if (strlen(env_vars[i].name) == nlen &&
			    strncmp(env_vars[i].name, *p, nlen) == 0)
				break;
		if (i == N_ENV) {
			/* Typo protection: a misspelt variable must not vanish. */
			char list[512];
			size_t o = 0;
			list[0] = '\0';
			for (size_t j = 0; j < N_ENV; j++)
				o += (size_t)snprintf(list + o, sizeof(list) - o,
						      "%s%s", j ? ", " : "",
						      env_vars[j].name);
			seterr(err, errlen,
			       "%s: unknown environment variable (known: %s)",
			       show(b1, sizeof(b1), *p, nlen), list);
			return GW_ECONFIG;
		}
		/* Empty means unset, as templated deployments often leave them. */
		if (eq && eq[1])
			e->val[i] = eq + 1;
	}
	return 0;
}

/* "URL, URL URL" into dst; replaces the list. */
static int apply_env_list(const char *name, const char *v, bool upstream,
			  gw_endpoint_t *dst, unsigned *ndst, unsigned max,
			  char *err, size_t errlen)
{
	char tok[GW_CONF_MAX_URL], reason[200], b1[100];
	unsigned n = 0;

	while (*v) {
		size_t skip = strspn(v, ", \t\n");
		v += skip;
		size_t len = strcspn(v, ", \t\n");
		if (len == 0)
			break;
		if (len >= sizeof(tok)) {
			seterr(err, errlen, "%s: URL too long", name);
			return GW_ECONFIG;
		}
		if (n >= max) {
			seterr(err, errlen, "%s: too many URLs (max %u)", name,
			       max);
			return GW_ECONFIG;
		}
		memcpy(tok, v, len);
		tok[len] = '\0';
		if (gw_endpoint_parse(tok, upstream, &dst[n], reason,
				      sizeof(reason)) < 0) {
			seterr(err, errlen, "%s: '%s': %s", name,
			       SHOW(b1, tok), reason);
			return GW_ECONFIG;
		}
		n++;
		v += len;
	}
	if (n == 0) {
		seterr(err, errlen, "%s: no URL given", name);
		return GW_ECONFIG;
	}
	*ndst = n;
	return 0;
}

static int apply_env(gw_conf_t *c, const struct env_set *e, char *err,
		     size_t errlen)
{
	int r;

	for (size_t i = 0; i < N_ENV; i++) {
		const char *v = e->val[i];
		if (!v)
			continue;
		switch (env_vars[i].setting) {
		case ENV_CONFIG:
			break;
		case ENV_LISTEN:
			r = apply_env_list(env_vars[i].name, v, false,
					   c->listen, &c->n_listen,
					   GW_CONF_MAX_LISTEN, err, errlen);
			if (r < 0)
				return r;
			break;
		case ENV_UPSTREAM:
			r = apply_env_list(env_vars[i].name, v, true,
					   c->upstream, &c->n_upstream,
					   GW_CONF_MAX_UPSTREAM, err, errlen);
			if (r < 0)
				return r;
			break;
		default:
			r = apply_setting(c, (enum setting)env_vars[i].setting,
					  v, env_vars[i].name, err, errlen);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* ------------------------------------------------------------ the flags */

enum {
	OPT_LISTEN = 256,
	OPT_UPSTREAM,
	OPT_CERT,
	OPT_KEY,
	OPT_ADMIN,
	OPT_THREADS,
	OPT_LOG_LEVEL,
	OPT_LOG_FORMAT,
	OPT_CA_FILE,
	OPT_USER,
	OPT_CACHE_SIZE,
	OPT_BOOTSTRAP,
	OPT_ACL,
	OPT_RATELIMIT_QPS,
	OPT_RATELIMIT_CONNS,
	OPT_QUERY_LOG, /* last: no argument */
};

static const struct option long_opts[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "check", no_argument, NULL, 't' },
	{ "version", no_argument, NULL, 'V' },
	{ "help", no_argument, NULL, 'h' },
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "upstream", required_argument, NULL, OPT_UPSTREAM },
	{ "cert", required_argument, NULL, OPT_CERT },
	{ "key", required_argument, NULL, OPT_KEY },
	{ "admin", required_argument, NULL, OPT_ADMIN },
	{ "threads", required_argument, NULL, OPT_THREADS },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ "log-format", required_argument, NULL, OPT_LOG_FORMAT },
	{ "query-log", no_argument, NULL, OPT_QUERY_LOG },
	{ "ca-file", required_argument, NULL, OPT_CA_FILE },
	{ "cache-size", required_argument, NULL, OPT_CACHE_SIZE },
	{ "user", required_argument, NULL, OPT_USER },
	{ "bootstrap", required_argument, NULL, OPT_BOOTSTRAP },
	{ "acl", required_argument, NULL, OPT_ACL },
	{ "ratelimit-qps", required_argument, NULL, OPT_RATELIMIT_QPS },
	{ "ratelimit-conns", required_argument, NULL, OPT_RATELIMIT_CONNS },
	{ NULL, 0, NULL, 0 },
};

/* Flag values in order of appearance; applied after file and env. */
struct flag_set {
	const char *config;
	const char *listen[GW_CONF_MAX_LISTEN];
	unsigned n_listen;
	const char *upstream[GW_CONF_MAX_UPSTREAM];
	unsigned n_upstream;
	const char *value[OPT_QUERY_LOG - OPT_CERT + 1]; /* last one wins */
	bool check;
	int action; /* -1 or GW_ACTION_HELP/VERSION, the first seen */
};

/* How the user spelt the option getopt just complained about. */
static void opt_name(char *out, size_t outlen, int argc, char **argv,
		     int ind, int optchar)
{
	const char *a = ind >= 1 && ind <= argc ? argv[ind - 1] : NULL;
	char b1[100];

	if (a && strncmp(a, "--", 2) == 0) {
		snprintf(out, outlen, "%s", show(b1, sizeof(b1), a,
						 strcspn(a, "=")));
		return;
	}
	if (optchar > 0 && optchar < 256) {
		snprintf(out, outlen, "-%c", optchar);
		return;
	}
	for (const struct option *o = long_opts; o->name; o++) {
		if (o->val == optchar) {
			snprintf(out, outlen, "--%s", o->name);
			return;
		}
	}
	snprintf(out, outlen, "%s", a ? SHOW(b1, a) : "?");
}

static int parse_flags(struct flag_set *fl, int argc, char **argv, char *err,
		       size_t errlen)
{
	int r = 0, opt;
	char name[110], b1[100];

	memset(fl, 0, sizeof(*fl));
	fl->action = -1;
	/* GNU getopt: optind 0 forces a full reset, so this can run again. */
	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":c:tVh", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			fl->config = optarg;
			break;
		case 't':
			fl->check = true;
			break;
		case 'V':
			if (fl->action < 0)
				fl->action = GW_ACTION_VERSION;
			break;
		case 'h':
			if (fl->action < 0)
				fl->action = GW_ACTION_HELP;
			break;
		case OPT_LISTEN:
			if (fl->n_listen >= GW_CONF_MAX_LISTEN) {
				if (r == 0)
					seterr(err, errlen, "--listen: too many "
					       "listeners (max %d)",
					       GW_CONF_MAX_LISTEN);
				r = GW_ECONFIG;
				break;
			}
			fl->listen[fl->n_listen++] = optarg;
			break;
		case OPT_UPSTREAM:
			if (fl->n_upstream >= GW_CONF_MAX_UPSTREAM) {
				if (r == 0)
					seterr(err, errlen, "--upstream: too "
					       "many upstreams (max %d)",
					       GW_CONF_MAX_UPSTREAM);
				r = GW_ECONFIG;
				break;
			}
			fl->upstream[fl->n_upstream++] = optarg;
			break;
		case OPT_QUERY_LOG:
			fl->value[opt - OPT_CERT] = "true";
			break;
		case ':':
			opt_name(name, sizeof(name), argc, argv, optind, optopt);
			if (r == 0)
				seterr(err, errlen, "%s: missing argument", name);
			r = GW_ECONFIG;
			break;
		case '?': {
			opt_name(name, sizeof(name), argc, argv, optind, optopt);
			const char *a = optind >= 1 && optind <= argc ?
				argv[optind - 1] : "";
			bool has_arg = strncmp(a, "--", 2) == 0 &&
				       strchr(a, '=') != NULL && optopt != 0;
			if (r == 0)
				seterr(err, errlen, "%s: %s (see dnsgw -h)", name,
				       has_arg ? "takes no argument"
					       : "unknown option");
			r = GW_ECONFIG;
			break;
		}
		default:
			if (opt >= OPT_CERT && opt <= OPT_QUERY_LOG)
				fl->value[opt - OPT_CERT] = optarg;
			break;
		}
	}
	if (r == 0 && optind < argc) {
		seterr(err, errlen, "%s: unexpected argument (see dnsgw -h)",
		       SHOW(b1, argv[optind]));
		r = GW_ECONFIG;
	}
	return r;
}

static int apply_flag_list(const char *flag, const char *const *urls,
			   unsigned n, bool upstream, gw_endpoint_t *dst,
			   unsigned *ndst, char *err, size_t errlen)
{
	char reason[200], b1[100];

	for (unsigned i = 0; i < n; i++) {
		if (gw_endpoint_parse(urls[i], upstream, &dst[i], reason,
				      sizeof(reason)) < 0) {
			seterr(err, errlen, "%s: '%s': %s", flag,
			       SHOW(b1, urls[i]), reason);
			return GW_ECONFIG;
		}
	}
	*ndst = n;
	return 0;
}

static int apply_flags(gw_conf_t *c, const struct flag_set *fl, char *err,
		       size_t errlen)
{
	static const enum setting map[] = {
		[OPT_CERT - OPT_CERT] = SET_CERT,
		[OPT_KEY - OPT_CERT] = SET_KEY,
		[OPT_ADMIN - OPT_CERT] = SET_ADMIN,
		[OPT_THREADS - OPT_CERT] = SET_THREADS,
		[OPT_LOG_LEVEL - OPT_CERT] = SET_LOG_LEVEL,
		[OPT_LOG_FORMAT - OPT_CERT] = SET_LOG_FORMAT,
		[OPT_QUERY_LOG - OPT_CERT] = SET_QUERY_LOG,
		[OPT_CA_FILE - OPT_CERT] = SET_CA_FILE,
		[OPT_CACHE_SIZE - OPT_CERT] = SET_CACHE_SIZE,
		[OPT_USER - OPT_CERT] = SET_USER,
		[OPT_BOOTSTRAP - OPT_CERT] = SET_BOOTSTRAP,
		[OPT_ACL - OPT_CERT] = SET_ACL,
		[OPT_RATELIMIT_QPS - OPT_CERT] = SET_RATELIMIT_QPS,
		[OPT_RATELIMIT_CONNS - OPT_CERT] = SET_RATELIMIT_CONNS,
	};
	char name[40];
	int r;

	/* A repeatable flag replaces the list from file and environment. */
	if (fl->n_listen &&
	    (r = apply_flag_list("--listen", fl->listen, fl->n_listen, false,
				 c->listen, &c->n_listen, err, errlen)) < 0)
		return r;
	if (fl->n_upstream &&
	    (r = apply_flag_list("--upstream", fl->upstream, fl->n_upstream,
				 true, c->upstream, &c->n_upstream, err,
				 errlen)) < 0)
		return r;
	for (int i = 0; i <= OPT_QUERY_LOG - OPT_CERT; i++) {
		if (!fl->value[i])
			continue;
		for (const struct option *o = long_opts; o->name; o++)
			if (o->val == OPT_CERT + i)
				snprintf(name, sizeof(name), "--%s", o->name);
		if ((r = apply_setting(c, map[i], fl->value[i], name, err,
				       errlen)) < 0)
			return r;
	}
	return 0;
}

/* -------------------------------------------------------- loop detection */

static bool is_unspecified(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr ==
		       htonl(INADDR_ANY);
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(
			&((const struct sockaddr_in6 *)ss)->sin6_addr);
	return false;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return 0;
}

static bool same_ip(const struct sockaddr_storage *a,
		    const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			      &((const struct sockaddr_in6 *)b)->sin6_addr,
			      16) == 0;
	return false;
}

/* Is ss an address of this host (what a wildcard listener answers on)? */
static bool is_local(const struct sockaddr_storage *ss)
{
	struct ifaddrs *ifa = NULL;
	bool found = false;

	if (ss->ss_family == AF_INET &&
	    (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) ==
		    127)
		return true;
	if (ss->ss_family == AF_INET6 &&
	    IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr))
		return true;
	if (getifaddrs(&ifa) < 0)
		return false;
	for (struct ifaddrs *i = ifa; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != ss->ss_family)
			continue;
		struct sockaddr_storage tmp;
		memset(&tmp, 0, sizeof(tmp));
		memcpy(&tmp, i->ifa_addr,
		       ss->ss_family == AF_INET ? sizeof(struct sockaddr_in)
						: sizeof(struct sockaddr_in6));
		found = same_ip(&tmp, ss);
	}
	freeifaddrs(ifa);
	return found;
}

/*
 * The listener an upstream would send our own queries back to, if any.
 * A Do53 upstream falls back from UDP to TCP on truncation, so it loops
 * through either Do53 listener; encrypted ones through their own kind.
 */
static const gw_endpoint_t *loop_listener(const gw_conf_t *c,
					  const gw_endpoint_t *up)
{
	bool do53 = up->proto == GW_PROTO_UDP || up->proto == GW_PROTO_TCP;

	if (up->addrlen == 0)
		return NULL;
	for (unsigned i = 0; i < c->n_listen; i++) {
		const gw_endpoint_t *l = &c->listen[i];
		bool l53 = l->proto == GW_PROTO_UDP || l->proto == GW_PROTO_TCP;
		if (do53 ? !l53 : l->proto != up->proto)
			continue;
		if (port_of(&l->addr) != port_of(&up->addr))
			continue;
		if (same_ip(&l->addr, &up->addr))
			return l;
		/* [::] usually also takes IPv4 (dual stack). */
		if (is_unspecified(&l->addr) &&
		    (l->addr.ss_family == up->addr.ss_family ||
		     l->addr.ss_family == AF_INET6) &&
		    is_local(&up->addr))
			return l;
	}
	return NULL;
}

static int resolv_upstream(gw_conf_t *c, const char *path, char *err,
			   size_t errlen)
{
	static const char hint[] =
		"pass --upstream URL (e.g. --upstream udp://192.0.2.1:53)";
	char line[512], ns[200] = "", url[GW_CONF_MAX_URL], reason[200];
	char b1[100];

	if (!path)
		path = "/etc/resolv.conf";
	FILE *fp = fopen(path, "re");
	if (!fp) {
		seterr(err, errlen, "no upstream configured and %s cannot be "
		       "read (%s): %s", path, strerror(errno), hint);
		return GW_ECONFIG;
	}
	while (fgets(line, sizeof(line), fp)) {
		size_t n = strlen(line);
		bool whole = n > 0 && line[n - 1] == '\n';
		if (!whole && !feof(fp)) {
			/* Too long to be a nameserver line: skip the rest. */
			int ch;
			while ((ch = fgetc(fp)) != EOF && ch != '\n')
				;
			continue;
		}
		char *p = line + strspn(line, " \t");
		if (strncmp(p, "nameserver", 10) != 0 ||
		    (p[10] != ' ' && p[10] != '\t'))
			continue;
		p += 10;
		p += strspn(p, " \t");
		size_t len = strcspn(p, " \t\r\n#;");
		if (len == 0 || len >= sizeof(ns))
			continue;
		memcpy(ns, p, len);
		ns[len] = '\0';
		break;
	}
	fclose(fp);
	if (!ns[0]) {
		seterr(err, errlen, "no upstream configured and %s names no "
		       "nameserver: %s", path, hint);
		return GW_ECONFIG;
	}

	gw_endpoint_t *ep = &c->upstream[0];
	snprintf(url, sizeof(url), strchr(ns, ':') ? "udp://[%s]:53"
						   : "udp://%s:53", ns);
	if (gw_endpoint_parse(url, true, ep, reason, sizeof(reason)) < 0) {
		seterr(err, errlen, "no upstream configured and the nameserver "
		       "'%s' in %s is unusable (%s): %s", SHOW(b1, ns), path,
		       reason, hint);
		return GW_ECONFIG;
	}
	if (is_unspecified(&ep->addr)) {
		seterr(err, errlen, "no upstream configured and the nameserver "
		       "'%s' in %s is unusable (unspecified address): %s",
		       SHOW(b1, ns), path, hint);
		return GW_ECONFIG;
	}
	const gw_endpoint_t *l = loop_listener(c, ep);
	if (l) {
		/* As CoreDNS's loop plugin: never forward to ourselves. */
		seterr(err, errlen, "the nameserver %s in %s is our own "
		       "listener %s: forwarding to it would be a loop; %s",
		       SHOW(b1, ns), path, l->url, hint);
		return GW_ECONFIG;
	}
	c->n_upstream = 1;
	return 0;
}

/* ------------------------------------------------------------- the chain */

int gw_conf_build(gw_conf_t *c, int argc, char **argv, char **envp,
		  const char *resolv_conf_path, gw_action_t *action, char *err,
		  size_t errlen)
{
	struct flag_set *fl;
	struct env_set env;
	int r;

	if (err && errlen)
		err[0] = '\0';
	*action = GW_ACTION_RUN;
	gw_conf_defaults(c);
	fl = malloc(sizeof(*fl));
	if (!fl) {
		seterr(err, errlen, "out of memory");
		return GW_ECONFIG;
	}
	r = parse_flags(fl, argc, argv, err, errlen);
	if (fl->action >= 0) {
		/* -h and -V answer even when the rest is wrong. */
		*action = (gw_action_t)fl->action;
		if (err && errlen)
			err[0] = '\0';
		r = 0;
		goto out;
	}
	if (r < 0)
		goto out;
	if (fl->check)
		*action = GW_ACTION_CHECK;
	if ((r = scan_env(envp, &env, err, errlen)) < 0)
		goto out;

	const char *file = fl->config ? fl->config : env.val[0]; /* CONFIG */
	if (file && (r = load_file(c, file, err, errlen)) < 0)
		goto out;
	if ((r = apply_env(c, &env, err, errlen)) < 0)
		goto out;
	if ((r = apply_flags(c, fl, err, errlen)) < 0)
		goto out;

	if ((c->cert_file[0] != '\0') != (c->key_file[0] != '\0')) {
		seterr(err, errlen, "a certificate and its key go together: "
		       "give both --cert and --key (or tls.cert and tls.key, "
		       "or DNSGW_CERT and DNSGW_KEY), or neither for a "
		       "generated one");
		r = GW_ECONFIG;
		goto out;
	}
	if (c->cache.min_ttl > c->cache.max_ttl) {
		seterr(err, errlen, "cache.min_ttl (%u) is above cache.max_ttl "
		       "(%u)", c->cache.min_ttl, c->cache.max_ttl);
		r = GW_ECONFIG;
		goto out;
	}
	if (c->n_listen == 0)
		gw_conf_default_listeners(c);
	if (c->n_upstream == 0) {
		if ((r = resolv_upstream(c, resolv_conf_path, err, errlen)) < 0)
			goto out;
	} else {
		for (unsigned i = 0; i < c->n_upstream; i++) {
			const gw_endpoint_t *l = loop_listener(c, &c->upstream[i]);
			if (l) {
				seterr(err, errlen, "upstream %s is our own "
				       "listener %s: forwarding to it would be "
				       "a loop", c->upstream[i].url, l->url);
				r = GW_ECONFIG;
				goto out;
			}
		}
	}
	if (c->threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		c->threads = n > 0 ? (unsigned)(n > 1024 ? 1024 : n) : 1;
	}
out:
	free(fl);
	if (r < 0)
		r = GW_ECONFIG;
	return r;
}

void gw_conf_usage(FILE *out)
{
	fputs(
"Usage: dnsgw [options]\n"
"\n"
"An encrypted DNS gateway: DNS over TLS, HTTPS and QUIC in front of classic\n"
"DNS resolvers. With no options it listens on loopback with a generated\n"
"self-signed certificate and forwards to the first nameserver of\n"
"/etc/resolv.conf.\n"
"\n"
"Options (precedence: defaults < config file < DNSGW_* environment < flags):\n"
"  -c, --config FILE     read the YAML configuration FILE\n"
"  -t, --check           check the configuration and exit (0 when valid)\n"
"  -V, --version         print version, library versions and features\n"
"  -h, --help            print this help\n"
"      --listen URL      listen on URL; repeatable, replaces the configured\n"
"                        list: dot://ADDR:PORT doh://ADDR:PORT[/path]\n"
"                        doq://ADDR:PORT udp://ADDR:PORT tcp://ADDR:PORT\n"
"                        h2c://ADDR:PORT[/path] (cleartext DoH for a proxy)\n"
"      --upstream URL    forward to URL; repeatable, replaces the list:\n"
"                        udp://ADDR[:PORT] tcp://ADDR[:PORT]\n"
"                        tls://ADDR[:PORT][#tls-name]\n"
"                        https://HOST[:PORT][/path][#tls-name]\n"
"                        quic://ADDR[:PORT][#tls-name]\n"
"      --cert FILE       TLS certificate chain (PEM); needs --key\n"
"      --key FILE        TLS private key (PEM)\n"
"      --ca-file FILE    CA bundle for tls:// upstreams (default the\n"
"                        system's /etc/ssl/certs/ca-certificates.crt)\n"
"      --bootstrap ADDR[:PORT]  resolver for host names in upstream URLs\n"
"                        (default the first nameserver of resolv.conf)\n"
"      --admin ADDR:PORT serve /metrics, /healthz, /readyz (default off)\n"
"      --threads N       worker threads (default 0 = number of CPUs)\n"
"      --user NAME       run as NAME once listeners are bound (needs root)\n"
"      --log-level L     error, warn, info (default) or debug\n"
"      --log-format F    logfmt (default) or json\n"
"      --query-log       log every query (off by default)\n"
"      --cache-size N    response cache bytes, all workers together\n"
"                        (default 33554432; 0 turns the cache off)\n"
"      --acl RULES       replaces policy.acl: rules separated by commas,\n"
"                        first match wins: \"allow 10.0.0.0/8, deny all\"\n"
"      --ratelimit-qps N queries per second per client (0 = off)\n"
"      --ratelimit-conns N  new connections per second per client (0 = off)\n"
"\n"
"IPv6 addresses go in brackets: dot://[::1]:853. Default ports: udp/tcp 53,\n"
"dot/tls/doq/quic 853, doh/https 443, h2c 80. Default DoH path: /dns-query.\n"
"\n"
"Environment (an unknown DNSGW_* variable is an error; empty means unset):\n"
"  DNSGW_CONFIG      like -c (the flag wins)\n"
"  DNSGW_LISTEN      listener URLs, separated by commas or spaces\n"
"  DNSGW_UPSTREAM    upstream URLs, separated by commas or spaces\n"
"  DNSGW_CERT, DNSGW_KEY, DNSGW_ADMIN, DNSGW_THREADS, DNSGW_USER,\n"
"  DNSGW_LOG_LEVEL, DNSGW_LOG_FORMAT   like the flags\n"
"  DNSGW_QUERY_LOG   true or false\n"
"  DNSGW_CACHE_SIZE  like --cache-size\n"
"  DNSGW_BOOTSTRAP   like --bootstrap\n"
"  DNSGW_ACL, DNSGW_RATELIMIT_QPS, DNSGW_RATELIMIT_CONNS   like the flags\n"
"\n"
"Example:\n"
"  dnsgw --listen dot://0.0.0.0:853 --listen doh://0.0.0.0:443/dns-query \\\n"
"        --cert /etc/dnsgw/cert.pem --key /etc/dnsgw/key.pem \\\n"
"        --upstream udp://127.0.0.1:53\n"
"\n"
"Without a configured listener: dot://127.0.0.1:8853,\n"
"doh://127.0.0.1:8443/dns-query, doq://127.0.0.1:8853, udp://127.0.0.1:8053\n"
"and tcp://127.0.0.1:8053. See dnsgw.example.yaml for every setting.\n",
	      out);
}

/*
 * admin.c - the admin listener: its thread and loop, the HTTP glue, and the
 * collector that turns worker counters into the /metrics exposition.
 */
#include "admin.h"

#include <nghttp2/nghttp2.h>
#include <ngtcp2/ngtcp2.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gateway/admin_http.h"
#include "gateway/cache.h"
#include "gateway/error.h"
#include "gateway/log.h"
#include "gateway/metrics.h"
#include "gateway/wmetrics.h"
#include "transports/doh.h"
#include "transports/doq.h"
#include "upstream/upstream.h"

typedef struct admin_conn {
	gw_admin_t *a;
	int fd; /* -1: slot free */
	ev_io io;
	ev_timer timer;
	size_t in_len;
	uint8_t in[GW_ADMIN_MAX_HEAD];
	gw_buf_t out;
} admin_conn_t;

struct gw_admin {
	const gw_conf_t *conf;
	gw_worker_t *workers;
	unsigned n;
	int fd;
	struct ev_loop *loop;
	pthread_t thread;
	bool started;
	ev_io accept_io;
	ev_async stop;
	admin_conn_t conns[GW_ADMIN_MAX_CONNS];
};

/* ------------------------------------------------------------ health */

static bool any_draining(gw_admin_t *a)
{
	for (unsigned i = 0; i < a->n; i++)
		if (atomic_load_explicit(&a->workers[i].drain_requested,
					 memory_order_relaxed))
			return true;
	return false;
}

/* One upstream as /metrics and /readyz see it: summed over the workers
 * whose current pool has it. A reload may change the list: each worker's
 * pool brings its own (the admin reads it under the worker's pool lock,
 * gw_worker_pool_hold), and rows are matched by URL. */
typedef struct up_row {
	char url[GW_CONF_MAX_URL];
	gw_up_metrics_t sum;
	unsigned down, in; /* workers that have it marked down / at all */
} up_row_t;

/* the lists of two generations, should workers differ after a reload */
#define UP_ROWS (2 * GW_CONF_MAX_UPSTREAM)

static up_row_t *up_row(up_row_t *rows, unsigned *n, const char *url)
{
	for (unsigned k = 0; k < *n; k++)
		if (strcmp(rows[k].url, url) == 0)
			return &rows[k];
	if (*n == UP_ROWS)
		return NULL;
	up_row_t *r = &rows[(*n)++];
	memset(r, 0, sizeof(*r));
	snprintf(r->url, sizeof(r->url), "%s", url);
	return r;
}

/* Fills rows[UP_ROWS] from every worker's pool; returns how many. */
static unsigned collect_upstreams(gw_admin_t *a, up_row_t *rows)
{
	unsigned n = 0;
	for (unsigned i = 0; i < a->n; i++) {
		gw_worker_t *w = &a->workers[i];
		gw_up_pool_t *pool = gw_worker_pool_hold(w);
		const gw_conf_t *c = pool ? gw_up_pool_conf(pool) : a->conf;
		for (unsigned u = 0; u < c->n_upstream; u++) {
			gw_up_metrics_t m;
			up_row_t *r = up_row(rows, &n, c->upstream[u].url);
			if (!r)
				continue;
			r->in++;
			if (!pool || gw_up_pool_metrics(pool, u, &m) < 0)
				continue;
			const uint64_t *src =
			    (const uint64_t *)(const void *)&m;
			uint64_t *dst = (uint64_t *)(void *)&r->sum;
			for (size_t k = 0;
			     k < offsetof(gw_up_metrics_t, conns_open) / 8; k++)
				dst[k] += src[k];
			r->sum.conns_open += m.conns_open;
			r->sum.inflight += m.inflight;
			r->down += m.down;
		}
		gw_worker_pool_release(w);
	}
	return n;
}

int gw_admin_healthz(gw_admin_t *a, char *why, size_t cap)
{
	uint64_t now = gw_wm_now_ms();
	for (unsigned i = 0; i < a->n; i++) {
		uint64_t hb = gw_wm_load(&a->workers[i].metrics.heartbeat_ms);
		if (now - hb > (uint64_t)(GW_ADMIN_HEALTH_MAX_AGE * 1000)) {
			snprintf(why, cap,
				 "worker %u: no heartbeat for %llu ms\n", i,
				 (unsigned long long)(now - hb));
			return 503;
		}
	}
	snprintf(why, cap, "ok\n");
	return 200;
}

int gw_admin_readyz(gw_admin_t *a, char *why, size_t cap)
{
	time_t nb, na, now = time(NULL);

	/* RFC-less but conventional: a draining instance leaves the load
	 * balancer first, before its listeners are gone */
	if (any_draining(a)) {
		snprintf(why, cap, "draining\n");
		return 503;
	}
	gw_metrics_cert_get(&nb, &na);
	if (na && (now > na || now < nb)) {
		snprintf(why, cap, "certificate not valid now\n");
		return 503;
	}
	up_row_t *rows = malloc(UP_ROWS * sizeof(*rows));
	if (!rows) {
		snprintf(why, cap, "out of memory\n");
		return 503;
	}
	unsigned nu = collect_upstreams(a, rows);
	for (unsigned u = 0; u < nu; u++)
		if (rows[u].down < rows[u].in) {
			free(rows);
			snprintf(why, cap, "ok\n");
			return 200;
		}
	free(rows);
	snprintf(why, cap, "no healthy upstream\n");
	return 503;
}

void gw_admin_note_certs(gw_certs_t *const *certs, unsigned n)
{
	time_t nb = 0, na = 0;
	for (unsigned i = 0; i < n; i++) {
		if (!certs[i])
			continue;
		time_t b = gw_certs_not_before(certs[i]);
		time_t e = gw_certs_not_after(certs[i]);
		if (!na || e < na)
			na = e;
		if (b > nb)
			nb = b;
	}
	gw_metrics_cert_set(nb, na);
}

/* ------------------------------------------------------------ metrics */

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Transports that have a listener: their series are written even at zero,
 * so dashboards see them from the first scrape. */
static bool transport_used(const gw_conf_t *c, unsigned t)
{
	for (unsigned i = 0; i < c->n_listen; i++)
		if ((unsigned)c->listen[i].proto == t)
			return true;
	return false;
}

static uint64_t sum_workers(gw_admin_t *a, size_t off)
{
	uint64_t s = 0;
	for (unsigned i = 0; i < a->n; i++) {
		const char *base = (const char *)&a->workers[i].metrics;
		s += gw_wm_load((const uint64_t *)(const void *)(base + off));
	}
	return s;
}

#define WSUM(a, field) sum_workers(a, offsetof(gw_worker_metrics_t, field))

static void render_build(gw_prom_t *p, gw_admin_t *a)
{
	gw_prom_family(p, "dnsgw_build_info", GW_PROM_GAUGE,
		       "dnsgw version and the libraries it runs with.");
	gw_prom_u64(p,
		    L("version", DNSGW_VERSION, "wolfssl",
		      wolfSSL_lib_version(), "nghttp2",
		      nghttp2_version(0)->version_str, "ngtcp2",
		      ngtcp2_version(0)->version_str),
		    1);
	gw_prom_family(p, "dnsgw_workers", GW_PROM_GAUGE,
		       "Worker threads serving queries.");
	gw_prom_u64(p, NULL, a->n);
	gw_prom_family(p, "dnsgw_draining", GW_PROM_GAUGE,
		       "1 once a drain (SIGTERM) has begun.");
	gw_prom_u64(p, NULL, any_draining(a));
	gw_prom_family(p, "dnsgw_worker_heartbeat_age_seconds", GW_PROM_GAUGE,
		       "Time since each worker loop last ticked (/healthz).");
	uint64_t now = gw_wm_now_ms();
	for (unsigned i = 0; i < a->n; i++) {
		char id[16];
		snprintf(id, sizeof(id), "%u", i);
		uint64_t hb = gw_wm_load(&a->workers[i].metrics.heartbeat_ms);
		gw_prom_double(p, L("worker", id),
			       now > hb ? (double)(now - hb) / 1000.0 : 0.0);
	}
}

static void render_queries(gw_prom_t *p, gw_admin_t *a)
{
	const gw_conf_t *c = a->conf;

	gw_prom_family(p, "dnsgw_requests_total", GW_PROM_COUNTER,
		       "Queries received, by client transport and QTYPE.");
	for (unsigned t = 0; t < GW_WM_TRANSPORTS; t++)
		for (unsigned k = 0; k < GW_WM_QTYPES; k++) {
			uint64_t v = WSUM(a, requests[t][k]);
			/* A and AAAA always, the rest once seen */
			bool always = transport_used(c, t) &&
				      (k == gw_wm_qtype_index(1) ||
				       k == gw_wm_qtype_index(28));
			if (v || always)
				gw_prom_u64(
				    p,
				    L("transport",
				      gw_wm_transport_name((gw_proto_t)t),
				      "type", gw_wm_qtype_name(k)),
				    v);
		}

	gw_prom_family(p, "dnsgw_responses_total", GW_PROM_COUNTER,
		       "Answers sent to clients, by RCODE.");
	for (unsigned r = 0; r < GW_WM_RCODES; r++) {
		uint64_t v = WSUM(a, responses[r]);
		if (v || r <= 5)
			gw_prom_u64(p, L("rcode", gw_wm_rcode_name(r)), v);
	}

	gw_prom_family(p, "dnsgw_request_duration_seconds", GW_PROM_HISTOGRAM,
		       "Time from a query's arrival to its answer, by client "
		       "transport.");
	for (unsigned t = 0; t < GW_WM_TRANSPORTS; t++) {
		uint64_t counts[GW_WM_LAT_BOUNDS + 1];
		uint64_t any = 0;
		for (unsigned k = 0; k <= GW_WM_LAT_BOUNDS; k++)
			any += counts[k] = WSUM(a, latency[t][k]);
		if (!any && !transport_used(c, t))
			continue;
		gw_prom_histogram(
		    p, L("transport", gw_wm_transport_name((gw_proto_t)t)),
		    gw_wm_lat_bounds, counts, GW_WM_LAT_BOUNDS,
		    (double)WSUM(a, latency_sum_ns[t]) / 1e9);
	}
}

static void render_conns(gw_prom_t *p, gw_admin_t *a)
{
	const gw_conf_t *c = a->conf;
	static const struct {
		const char *name, *help;
		size_t opened, closed; /* closed 0: a plain counter */
	} fam[] = {
	    {"dnsgw_connections_open", "Client connections open now.",
	     offsetof(gw_worker_metrics_t, conns_opened),
	     offsetof(gw_worker_metrics_t, conns_closed)},
	    {"dnsgw_connections_total", "Client connections accepted.",
	     offsetof(gw_worker_metrics_t, conns_opened), 0},
	    {"dnsgw_handshakes_total",
	     "TLS and QUIC handshakes completed with clients.",
	     offsetof(gw_worker_metrics_t, handshakes), 0},
	    {"dnsgw_handshake_failures_total",
	     "Client connections that closed before their TLS or QUIC "
	     "handshake completed.",
	     offsetof(gw_worker_metrics_t, handshake_failures), 0},
	};
	for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
		gw_prom_family(p, fam[f].name,
			       fam[f].closed ? GW_PROM_GAUGE : GW_PROM_COUNTER,
			       fam[f].help);
		for (unsigned t = 0; t < GW_WM_TRANSPORTS; t++) {
			/* datagram listeners have no connections */
			if (t == GW_PROTO_UDP || !transport_used(c, t))
				continue;
			if ((t == GW_PROTO_TCP || t == GW_PROTO_H2C) && f >= 2)
				continue; /* no handshake on cleartext */
			size_t o = fam[f].opened + t * sizeof(uint64_t);
			uint64_t v = sum_workers(a, o);
			if (fam[f].closed) {
				uint64_t cl = sum_workers(
				    a, fam[f].closed + t * sizeof(uint64_t));
				v = v > cl ? v - cl : 0;
			}
			gw_prom_u64(
			    p,
			    L("transport", gw_wm_transport_name((gw_proto_t)t)),
			    v);
		}
	}
}

static void render_refusals(gw_prom_t *p, gw_admin_t *a)
{
	gw_prom_family(p, "dnsgw_refusals_total", GW_PROM_COUNTER,
		       "Connections, datagrams and queries the policy turned "
		       "away, by transport and reason.");
	for (unsigned t = 0; t < GW_WM_TRANSPORTS; t++) {
		if (!transport_used(a->conf, t))
			continue;
		for (unsigned r = 0; r < GW_WM_REFUSALS; r++)
			gw_prom_u64(
			    p,
			    L("transport", gw_wm_transport_name((gw_proto_t)t),
			      "reason", gw_wm_refusal_name((gw_wm_refusal_t)r)),
			    sum_workers(a, offsetof(gw_worker_metrics_t,
						    refusals) +
					       (t * GW_WM_REFUSALS + r) *
						   sizeof(uint64_t)));
	}
}

static void render_doh(gw_prom_t *p, gw_admin_t *a)
{
	static const char *const status[GW_DOH_STATUS_N] = {
	    "200", "400", "404", "405", "408", "411", "413",
	    "414", "415", "431", "500", "501", "503", "other",
	};
	gw_doh_metrics_t m;
	gw_doh_metrics_sum(a->n, &m);

	gw_prom_family(p, "dnsgw_doh_responses_total", GW_PROM_COUNTER,
		       "DoH HTTP responses, by status code.");
	for (unsigned i = 0; i < GW_DOH_STATUS_N; i++)
		if (m.responses_by_status[i] || i == GW_DOH_S200)
			gw_prom_u64(p, L("code", status[i]),
				    m.responses_by_status[i]);
	gw_prom_family(p, "dnsgw_doh_http_responses_total", GW_PROM_COUNTER,
		       "DoH HTTP responses, by HTTP version.");
	gw_prom_u64(p, L("version", "2"), m.responses_by_version[GW_DOH_V_H2]);
	gw_prom_u64(p, L("version", "1.1"),
		    m.responses_by_version[GW_DOH_V_H1]);
	gw_prom_family(p, "dnsgw_doh_refused_streams_total", GW_PROM_COUNTER,
		       "HTTP/2 streams refused (RST_STREAM REFUSED_STREAM).");
	gw_prom_u64(p, NULL, m.refused_streams);
	gw_prom_family(p, "dnsgw_doh_client_resets_total", GW_PROM_COUNTER,
		       "Streams the client reset with a query in flight.");
	gw_prom_u64(p, NULL, m.reset_in_flight);
	gw_prom_family(p, "dnsgw_doh_goaway_calm_total", GW_PROM_COUNTER,
		       "GOAWAY ENHANCE_YOUR_CALM sent to abusive clients.");
	gw_prom_u64(p, NULL, m.goaway_calm);
	gw_prom_family(p, "dnsgw_doh_forwarded_total", GW_PROM_COUNTER,
		       "X-Forwarded-For/Forwarded headers, by whether the "
		       "peer was a trusted proxy.");
	gw_prom_u64(p, L("trusted", "true"), m.forwarded_used);
	gw_prom_u64(p, L("trusted", "false"), m.forwarded_ignored);
}

static void render_doq(gw_prom_t *p)
{
	gw_doq_stats_t s;
	gw_doq_stats(&s);
	static const struct {
		const char *name, *help;
		bool counter;
	} f[] = {
	    {"dnsgw_doq_handshakes_in_progress",
	     "DoQ connections still in their handshake.", false},
	    {"dnsgw_doq_streams_open", "DoQ streams open now.", false},
	    {"dnsgw_doq_queries_in_flight",
	     "DoQ queries waiting for an answer.", false},
	    {"dnsgw_doq_retries_sent_total", "QUIC Retry packets sent.", true},
	    {"dnsgw_doq_stateless_resets_sent_total",
	     "QUIC stateless resets sent.", true},
	    {"dnsgw_doq_version_negotiations_sent_total",
	     "QUIC Version Negotiation packets sent.", true},
	    {"dnsgw_doq_initials_dropped_total",
	     "QUIC Initial packets dropped (undersized or unusable).", true},
	};
	uint64_t v[] = {s.handshaking,	   s.streams,	  s.inflight,
			s.retries_sent,	   s.resets_sent, s.vn_sent,
			s.initials_dropped};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		gw_prom_family(p, f[i].name,
			       f[i].counter ? GW_PROM_COUNTER : GW_PROM_GAUGE,
			       f[i].help);
		gw_prom_u64(p, NULL, v[i]);
	}
}

static void render_upstreams(gw_prom_t *p, gw_admin_t *a)
{
	up_row_t *rows = malloc(UP_ROWS * sizeof(*rows));
	if (!rows)
		return;
	unsigned nu = collect_upstreams(a, rows);

#define UP_COUNTER(name, help, field)                                          \
	do {                                                                   \
		gw_prom_family(p, name, GW_PROM_COUNTER, help);                \
		for (unsigned u = 0; u < nu; u++)                              \
			gw_prom_u64(p, L("upstream", rows[u].url),             \
				    rows[u].sum.field);                        \
	} while (0)
#define UP_GAUGE(name, help, expr)                                             \
	do {                                                                   \
		gw_prom_family(p, name, GW_PROM_GAUGE, help);                  \
		for (unsigned u = 0; u < nu; u++)                              \
			gw_prom_u64(p, L("upstream", rows[u].url),             \
				    (uint64_t)(expr));                         \
	} while (0)

	UP_COUNTER("dnsgw_upstream_requests_total",
		   "Attempts sent to each upstream (retries included).",
		   queries);
	gw_prom_family(p, "dnsgw_upstream_responses_total", GW_PROM_COUNTER,
		       "Matched answers from each upstream, by RCODE.");
	for (unsigned u = 0; u < nu; u++)
		for (unsigned r = 0; r < 16; r++)
			if (rows[u].sum.answers[r] || r == 0 || r == 2)
				gw_prom_u64(p,
					    L("upstream", rows[u].url, "rcode",
					      gw_wm_rcode_name(r)),
					    rows[u].sum.answers[r]);
	UP_COUNTER("dnsgw_upstream_timeouts_total", "Attempts that timed out.",
		   timeouts);
	UP_COUNTER("dnsgw_upstream_errors_total",
		   "Attempts that failed otherwise (connection, ICMP).",
		   errors);
	UP_COUNTER("dnsgw_upstream_ignored_messages_total",
		   "Messages from upstreams dropped: wrong ID or question, "
		   "malformed.",
		   ignored);
	UP_COUNTER("dnsgw_upstream_connections_total",
		   "Pooled TCP/TLS connections opened.", conns_opened);
	UP_COUNTER("dnsgw_upstream_connection_failures_total",
		   "Pooled connections whose connect or handshake failed.",
		   conn_failures);
	UP_COUNTER("dnsgw_upstream_tls_resumptions_total",
		   "TLS handshakes that resumed a session.", tls_resumed);
	UP_COUNTER("dnsgw_upstream_probes_total", "Active health probes sent.",
		   probes_sent);
	UP_COUNTER("dnsgw_upstream_probe_failures_total",
		   "Active health probes that failed.", probes_failed);
	UP_GAUGE("dnsgw_upstream_connections_open",
		 "Pooled connections open now.", rows[u].sum.conns_open);
	UP_GAUGE("dnsgw_upstream_requests_in_flight",
		 "Attempts waiting for an answer now.", rows[u].sum.inflight);
	UP_GAUGE("dnsgw_upstream_healthy",
		 "1 when at least one worker has the upstream up.",
		 rows[u].down < rows[u].in);
	UP_GAUGE("dnsgw_upstream_down_workers",
		 "Workers that have the upstream marked down.", rows[u].down);
#undef UP_COUNTER
#undef UP_GAUGE

	double bounds[GW_UP_LAT_BUCKETS - 1];
	for (unsigned k = 0; k < GW_UP_LAT_BUCKETS - 1; k++)
		bounds[k] = gw_up_lat_bounds_ms[k] / 1000.0;
	gw_prom_family(p, "dnsgw_upstream_request_duration_seconds",
		       GW_PROM_HISTOGRAM,
		       "Round-trip time of answered attempts, per upstream.");
	for (unsigned u = 0; u < nu; u++)
		gw_prom_histogram(p, L("upstream", rows[u].url), bounds,
				  rows[u].sum.latency, GW_UP_LAT_BUCKETS - 1,
				  (double)rows[u].sum.latency_sum_us / 1e6);
	free(rows);
}

static void render_cache(gw_prom_t *p, gw_admin_t *a)
{
	gw_cache_stats_t t = {0};
	bool on = false;
	for (unsigned i = 0; i < a->n; i++) {
		gw_cache_stats_t s;
		/* the pointer is set before the admin starts and freed after
		 * it stops. gw_cache_stats() copies counters the worker keeps
		 * writing: a benign race on aligned 64-bit words (not torn on
		 * the targets we build for; counters only grow) */
		const struct gw_cache *cache = a->workers[i].cache;
		if (!cache)
			continue;
		on = true;
		gw_cache_stats(cache, &s);
		t.hits += s.hits;
		t.misses += s.misses;
		t.stale_hits += s.stale_hits;
		t.inserts += s.inserts;
		t.evictions += s.evictions;
		t.expired += s.expired;
		t.entries += s.entries;
		t.bytes += s.bytes;
	}
	if (!on)
		return; /* --cache-size 0: no cache series at all */
	gw_prom_family(p, "dnsgw_cache_hits_total", GW_PROM_COUNTER,
		       "Queries answered from the cache.");
	gw_prom_u64(p, NULL, t.hits);
	gw_prom_family(p, "dnsgw_cache_misses_total", GW_PROM_COUNTER,
		       "Cache lookups without a fresh entry.");
	gw_prom_u64(p, NULL, t.misses);
	gw_prom_family(
	    p, "dnsgw_cache_stale_hits_total", GW_PROM_COUNTER,
	    "Stale answers served while upstreams failed (RFC 8767).");
	gw_prom_u64(p, NULL, t.stale_hits);
	gw_prom_family(p, "dnsgw_cache_inserts_total", GW_PROM_COUNTER,
		       "Answers stored in the cache.");
	gw_prom_u64(p, NULL, t.inserts);
	gw_prom_family(p, "dnsgw_cache_evictions_total", GW_PROM_COUNTER,
		       "Entries evicted for room (LRU).");
	gw_prom_u64(p, NULL, t.evictions);
	gw_prom_family(p, "dnsgw_cache_expired_total", GW_PROM_COUNTER,
		       "Entries dropped at the end of their TTL.");
	gw_prom_u64(p, NULL, t.expired);
	gw_prom_family(p, "dnsgw_cache_entries", GW_PROM_GAUGE,
		       "Entries in the caches of all workers.");
	gw_prom_u64(p, NULL, t.entries);
	gw_prom_family(p, "dnsgw_cache_size_bytes", GW_PROM_GAUGE,
		       "Bytes the cache entries take (counted against the "
		       "cache size).");
	gw_prom_u64(p, NULL, t.bytes);
}

static void render_process(gw_prom_t *p)
{
	time_t nb, na;
	gw_metrics_cert_get(&nb, &na);
	if (na) {
		gw_prom_family(
		    p, "dnsgw_certificate_expiry_timestamp_seconds",
		    GW_PROM_GAUGE,
		    "notAfter of the certificate that expires first, "
		    "as Unix time.");
		gw_prom_u64(p, NULL, (uint64_t)na);
		gw_prom_family(p,
			       "dnsgw_certificate_not_before_timestamp_seconds",
			       GW_PROM_GAUGE,
			       "notBefore of the certificate in use, as Unix "
			       "time.");
		gw_prom_u64(p, NULL, (uint64_t)nb);
	}
	gw_prom_family(p, "dnsgw_reloads_total", GW_PROM_COUNTER,
		       "Certificate and configuration reloads, by result.");
	gw_prom_u64(p, L("result", "success"), gw_metrics_reloads(true));
	gw_prom_u64(p, L("result", "failure"), gw_metrics_reloads(false));
}

int gw_admin_render_metrics(gw_admin_t *a, gw_buf_t *out)
{
	gw_prom_t p;
	gw_prom_init(&p, out);
	render_build(&p, a);
	render_queries(&p, a);
	render_conns(&p, a);
	render_refusals(&p, a);
	if (transport_used(a->conf, GW_PROTO_DOH) ||
	    transport_used(a->conf, GW_PROTO_H2C))
		render_doh(&p, a);
	if (transport_used(a->conf, GW_PROTO_DOQ))
		render_doq(&p);
	render_upstreams(&p, a);
	render_cache(&p, a);
	render_process(&p);
	return gw_prom_finish(&p);
}

/* --------------------------------------------------------------- HTTP */

static void conn_close(admin_conn_t *c)
{
	gw_admin_t *a = c->a;
	ev_io_stop(a->loop, &c->io);
	ev_timer_stop(a->loop, &c->timer);
	close(c->fd);
	c->fd = -1;
	gw_buf_deinit(&c->out);
}

static void on_conn_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	conn_close(t->data);
}

static void conn_write(admin_conn_t *c)
{
	while (gw_buf_size(&c->out) > 0) {
		ssize_t n = send(c->fd, gw_buf_head(&c->out),
				 gw_buf_size(&c->out), MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return; /* the write watcher calls again */
			conn_close(c);
			return;
		}
		gw_buf_consume(&c->out, (size_t)n);
	}
	/* all sent: a FIN, not a reset, so the client reads everything */
	shutdown(c->fd, SHUT_WR);
	conn_close(c);
}

static void respond(admin_conn_t *c, int status, const char *ctype,
		    const char *body, size_t len, bool head_only)
{
	char head[512];
	int n = gw_admin_http_head(status, ctype, len, head, sizeof(head));
	gw_buf_t *o = &c->out;
	gw_buf_consume(o, gw_buf_size(o));
	if (n < 0 || gw_buf_append(o, head, (size_t)n) < 0 ||
	    (!head_only && len && gw_buf_append(o, body, len) < 0)) {
		conn_close(c);
		return;
	}
	ev_io_stop(c->a->loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_WRITE);
	ev_io_start(c->a->loop, &c->io);
	conn_write(c);
}

static void serve(admin_conn_t *c, const gw_admin_req_t *req)
{
	gw_admin_t *a = c->a;
	bool head_only = req->method == GW_ADMIN_HEAD;
	char why[128];
	int status;

	if (strcmp(req->path, "/metrics") != 0 &&
	    strcmp(req->path, "/healthz") != 0 &&
	    strcmp(req->path, "/readyz") != 0) {
		respond(c, 404, "text/plain; charset=utf-8", "not found\n", 10,
			head_only);
		return;
	}
	if (req->method == GW_ADMIN_OTHER) {
		respond(c, 405, "text/plain; charset=utf-8",
			"method not allowed\n", 19, false);
		return;
	}
	if (strcmp(req->path, "/metrics") == 0) {
		gw_buf_t body;
		gw_buf_init(&body, GW_ADMIN_MAX_BODY);
		int r = gw_admin_render_metrics(a, &body);
		if (r < 0) {
			gw_log(GW_LOG_WARN, "admin", "cannot render metrics",
			       "error", gw_strerror(r), NULL);
			respond(c, 500, "text/plain; charset=utf-8",
				"cannot render metrics\n", 22, head_only);
		} else {
			respond(c, 200,
				"text/plain; version=0.0.4; charset=utf-8",
				(const char *)gw_buf_head(&body),
				gw_buf_size(&body), head_only);
		}
		gw_buf_deinit(&body);
		return;
	}
	status = strcmp(req->path, "/healthz") == 0
		     ? gw_admin_healthz(a, why, sizeof(why))
		     : gw_admin_readyz(a, why, sizeof(why));
	respond(c, status, "text/plain; charset=utf-8", why, strlen(why),
		head_only);
}

static void on_conn_io(struct ev_loop *loop, ev_io *io, int revents)
{
	admin_conn_t *c = io->data;
	(void)loop;

	if (revents & EV_WRITE) {
		conn_write(c);
		return;
	}
	ssize_t n =
	    recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		conn_close(c);
		return;
	}
	if (n == 0) { /* closed before a whole request */
		conn_close(c);
		return;
	}
	c->in_len += (size_t)n;

	gw_admin_req_t req;
	int r = gw_admin_http_parse(c->in, c->in_len, &req);
	if (r == 0 && c->in_len >= sizeof(c->in))
		r = -431;
	if (r == 0)
		return;
	if (r < 0) {
		const char *reason = gw_admin_http_reason(-r);
		char body[64];
		int bl = snprintf(body, sizeof(body), "%s\n", reason);
		respond(c, -r, "text/plain; charset=utf-8", body, (size_t)bl,
			false);
		return;
	}
	serve(c, &req);
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
	gw_admin_t *a = io->data;
	(void)revents;

	for (int k = 0; k < 16; k++) {
		int fd =
		    accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		admin_conn_t *c = NULL;
		for (unsigned i = 0; i < GW_ADMIN_MAX_CONNS && !c; i++)
			if (a->conns[i].fd < 0)
				c = &a->conns[i];
		if (!c) {
			/* over the cap: scrapers retry, a flood gets nothing */
			close(fd);
			continue;
		}
		c->fd = fd;
		c->in_len = 0;
		gw_buf_init(&c->out, GW_ADMIN_MAX_BODY + 1024);
		ev_io_init(&c->io, on_conn_io, fd, EV_READ);
		c->io.data = c;
		ev_timer_init(&c->timer, on_conn_timeout, GW_ADMIN_TIMEOUT, 0);
		c->timer.data = c;
		ev_io_start(loop, &c->io);
		ev_timer_start(loop, &c->timer);
	}
}

/* --------------------------------------------------------- life cycle */

static void on_stop(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

static void *admin_main(void *arg)
{
	gw_admin_t *a = arg;
	ev_run(a->loop, 0);
	return NULL;
}

gw_admin_t *gw_admin_new(const gw_conf_t *conf, gw_worker_t *workers,
			 unsigned n, char *err, size_t errlen)
{
	gw_admin_t *a = calloc(1, sizeof(*a));
	int one = 1;

	if (!a) {
		snprintf(err, errlen, "admin: out of memory");
		return NULL;
	}
	a->conf = conf;
	a->workers = workers;
	a->n = n;
	for (unsigned i = 0; i < GW_ADMIN_MAX_CONNS; i++) {
		a->conns[i].fd = -1;
		a->conns[i].a = a;
	}
	a->fd = socket(conf->admin_addr.ss_family,
		       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (a->fd < 0)
		goto fail;
	setsockopt(a->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (conf->admin_addr.ss_family == AF_INET6)
		setsockopt(a->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(a->fd, (const struct sockaddr *)&conf->admin_addr,
		 conf->admin_addrlen) < 0 ||
	    listen(a->fd, 64) < 0)
		goto fail;
	a->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
	if (!a->loop) {
		errno = ENOMEM;
		goto fail;
	}
	ev_io_init(&a->accept_io, on_accept, a->fd, EV_READ);
	a->accept_io.data = a;
	ev_io_start(a->loop, &a->accept_io);
	ev_async_init(&a->stop, on_stop);
	ev_async_start(a->loop, &a->stop);
	return a;
fail:
	snprintf(err, errlen, "admin %s: %s", conf->admin, strerror(errno));
	if (a->fd >= 0)
		close(a->fd);
	free(a);
	return NULL;
}

int gw_admin_start(gw_admin_t *a)
{
	int r = pthread_create(&a->thread, NULL, admin_main, a);
	if (r)
		return -r;
	a->started = true;
	return 0;
}

void gw_admin_free(gw_admin_t *a)
{
	if (!a)
		return;
	if (a->started) {
		ev_async_send(a->loop, &a->stop);
		pthread_join(a->thread, NULL);
	}
	for (unsigned i = 0; i < GW_ADMIN_MAX_CONNS; i++)
		if (a->conns[i].fd >= 0)
			conn_close(&a->conns[i]);
	ev_loop_destroy(a->loop);
	close(a->fd);
	free(a);
}

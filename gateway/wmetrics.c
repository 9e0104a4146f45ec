/*
 * wmetrics.c - per-worker counters and process-wide metric state.
 */
#include "wmetrics.h"

#include <stdatomic.h>

const double gw_wm_lat_bounds[GW_WM_LAT_BOUNDS] = {
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032,
    0.064,   0.128,  0.256, 0.512, 1.024, 2.048, 4.096, 8.192,
};

static const struct {
	uint16_t type;
	const char *name;
} qtypes[GW_WM_QTYPES - 1] = {
    {1, "A"},	  {2, "NS"},	 {5, "CNAME"},	{6, "SOA"},	{12, "PTR"},
    {15, "MX"},	  {16, "TXT"},	 {28, "AAAA"},	{33, "SRV"},	{35, "NAPTR"},
    {43, "DS"},	  {46, "RRSIG"}, {47, "NSEC"},	{48, "DNSKEY"}, {50, "NSEC3"},
    {52, "TLSA"}, {64, "SVCB"},	 {65, "HTTPS"}, {251, "IXFR"},	{252, "AXFR"},
    {255, "ANY"}, {257, "CAA"},
};

unsigned gw_wm_qtype_index(uint16_t qtype)
{
	for (unsigned i = 0; i < GW_WM_QTYPES - 1; i++)
		if (qtypes[i].type == qtype)
			return i;
	return GW_WM_QTYPES - 1;
}

const char *gw_wm_qtype_name(unsigned idx)
{
	return idx < GW_WM_QTYPES - 1 ? qtypes[idx].name : "other";
}

const char *gw_wm_rcode_name(unsigned rcode)
{
	/* RFC 6895 2.3 names, as CoreDNS's rcode label uses them */
	static const char *const names[GW_WM_RCODES] = {
	    "NOERROR",	"FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP",  "REFUSED",
	    "YXDOMAIN", "YXRRSET", "NXRRSET",  "NOTAUTH",  "NOTZONE", "RCODE11",
	    "RCODE12",	"RCODE13", "RCODE14",  "RCODE15",
	};
	return rcode < GW_WM_RCODES ? names[rcode] : "other";
}

const char *gw_wm_transport_name(gw_proto_t t)
{
	return gw_proto_scheme(t, false);
}

uint64_t gw_wm_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static unsigned tidx(gw_proto_t t)
{
	/* out-of-range transports share the last slot rather than overflow */
	return (unsigned)t < GW_WM_TRANSPORTS ? (unsigned)t
					      : GW_WM_TRANSPORTS - 1;
}

void gw_wm_request(gw_worker_metrics_t *m, gw_proto_t t, uint16_t qtype)
{
	gw_wm_add(&m->requests[tidx(t)][gw_wm_qtype_index(qtype)], 1);
}

void gw_wm_response(gw_worker_metrics_t *m, gw_proto_t t, unsigned rcode,
		    double seconds)
{
	unsigned k = 0, ti = tidx(t);
	if (seconds < 0)
		seconds = 0;
	gw_wm_add(&m->responses[rcode & 0xf], 1);
	while (k < GW_WM_LAT_BOUNDS && seconds > gw_wm_lat_bounds[k])
		k++;
	gw_wm_add(&m->latency[ti][k], 1);
	gw_wm_add(&m->latency_sum_ns[ti], (uint64_t)(seconds * 1e9));
}

void gw_wm_conn_open(gw_worker_metrics_t *m, gw_proto_t t)
{
	gw_wm_add(&m->conns_opened[tidx(t)], 1);
}

void gw_wm_conn_close(gw_worker_metrics_t *m, gw_proto_t t)
{
	gw_wm_add(&m->conns_closed[tidx(t)], 1);
}

void gw_wm_handshake(gw_worker_metrics_t *m, gw_proto_t t, bool ok)
{
	if (ok)
		gw_wm_add(&m->handshakes[tidx(t)], 1);
	else
		gw_wm_add(&m->handshake_failures[tidx(t)], 1);
}

void gw_wm_refusal(gw_worker_metrics_t *m, gw_proto_t t, gw_wm_refusal_t why)
{
	if ((unsigned)why < GW_WM_REFUSALS)
		gw_wm_add(&m->refusals[tidx(t)][why], 1);
}

const char *gw_wm_refusal_name(gw_wm_refusal_t why)
{
	static const char *const names[GW_WM_REFUSALS] = {
	    "acl", "conn_rate", "qps", "conn_cap", "proxy"};
	return (unsigned)why < GW_WM_REFUSALS ? names[why] : "other";
}

static void on_heartbeat(struct ev_loop *loop, ev_timer *t, int revents)
{
	gw_worker_metrics_t *m = t->data;
	(void)loop;
	(void)revents;
	__atomic_store_n(&m->heartbeat_ms, gw_wm_now_ms(), __ATOMIC_RELAXED);
}

void gw_wm_start(gw_worker_metrics_t *m, struct ev_loop *loop)
{
	__atomic_store_n(&m->heartbeat_ms, gw_wm_now_ms(), __ATOMIC_RELAXED);
	ev_timer_init(&m->heartbeat, on_heartbeat, GW_WM_HEARTBEAT_S,
		      GW_WM_HEARTBEAT_S);
	m->heartbeat.data = m;
	ev_timer_start(loop, &m->heartbeat);
	/* a loop with only this timer left has nothing to do: let it end */
	ev_unref(loop);
}

/* ------------------------------------------------------------ process */

static atomic_uint_fast64_t reloads_ok, reloads_failed;
static atomic_llong cert_not_before, cert_not_after;

void gw_metrics_reload_inc(bool ok)
{
	atomic_fetch_add_explicit(ok ? &reloads_ok : &reloads_failed, 1,
				  memory_order_relaxed);
}

uint64_t gw_metrics_reloads(bool ok)
{
	return atomic_load_explicit(ok ? &reloads_ok : &reloads_failed,
				    memory_order_relaxed);
}

void gw_metrics_cert_set(time_t not_before, time_t not_after)
{
	atomic_store(&cert_not_before, (long long)not_before);
	atomic_store(&cert_not_after, (long long)not_after);
}

void gw_metrics_cert_get(time_t *not_before, time_t *not_after)
{
	*not_before = (time_t)atomic_load(&cert_not_before);
	*not_after = (time_t)atomic_load(&cert_not_after);
}

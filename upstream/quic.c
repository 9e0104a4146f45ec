/*
 * quic.c - DNS over QUIC upstreams (quic://ADDR:PORT#name, RFC 9250) with
 * ngtcp2 as a client and ngtcp2_crypto_wolfssl for TLS 1.3 (ALPN "doq",
 * verification as tls_client.c: CA + name, or an SPKI pin).
 *
 * Per worker and upstream a bounded set of connections (normally one: a
 * QUIC connection multiplexes), reused across queries. Each query is one
 * client-initiated bidirectional stream carrying the 2-byte length prefix
 * and the message with ID 0, then FIN (RFC 9250 4.2, 4.2.1); the answer is
 * the prefixed message on the same stream. Streams per connection are
 * bounded by the server's MAX_STREAMS credit and upstream.max_inflight_per_conn;
 * queries without room wait in a bounded FIFO per upstream (also while the
 * first handshake runs). A query that times out or is cancelled resets its
 * stream with DOQ_REQUEST_CANCELLED (RFC 9250 4.5); stream IDs are never
 * reused, so a late answer cannot be misrouted.
 *
 * A connection idle for upstream.idle_timeout_ms closes with DOQ_NO_ERROR
 * (RFC 9250 4.3); QUIC's own idle timeout (ours is 1 s longer; the server's
 * may be shorter) ends it silently. Handshake failure: health report +
 * reconnect backoff, as for tcp.c; the list, limits, wait queue and metrics
 * are the shared bookkeeping of connset.h (with wait_for_open). A connection
 * that dies hands its queries back with gw_up_attempt_reissue().
 *
 * As in transports/doq.c, ngtcp2 callbacks only record; the code that
 * called ngtcp2 delivers results and writes packets afterwards.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "attempt.h"
#include "connset.h"
#include "gateway/error.h"
#include "gateway/log.h"
#include "tls_client.h"

#define PKT_MAX 1452 /* our largest UDP payload */
#define DOQ_NO_ERROR 0x0
#define DOQ_INTERNAL_ERROR 0x1
#define DOQ_REQUEST_CANCELLED 0x3

typedef struct qconn qconn_t;

typedef struct qst {
	qconn_t *c;
	gw_up_query_t *uq; /* NULL once the query is gone */
	int64_t id;
	uint8_t *out;      /* prefix + query (ID 0); ngtcp2 may retransmit */
	size_t out_len, sent;
	bool fin_sent, fin_rcvd, reset, closed;
	uint8_t *in;       /* answer as received, at most 2 + GW_DNS_MAX_MSG */
	size_t inlen;
	bool too_big;
	struct qst *next, *prev;
} qst_t;

/* b.timer is our idle close and the deferred free; b.state goes from
 * HANDSHAKE to OPEN when the handshake completed and was verified. */
struct qconn {
	gw_up_cbase_t b; /* first: list, state, watchers (connset.h) */
	ev_timer expiry; /* ngtcp2 expiry */
	ngtcp2_conn *conn;
	void *ssl;
	ngtcp2_crypto_conn_ref ref;
	struct sockaddr_storage local, remote;
	socklen_t locallen, remotelen;
	bool in_ng, auth_failed;
	double last_rx; /* when a packet last arrived (blackhole check) */
	char why[128];
	qst_t *streams;
	unsigned live;
	gw_up_tls_msgs_t msgs; /* the server's TLS messages after the handshake */
};

struct gw_up_quic {
	gw_up_cset_t set; /* first: per-upstream lists, limits */
	gw_up_tls_ctx_t *tls;
};

static const gw_up_cset_ops_t quic_ops;

static void conn_io(struct ev_loop *loop, ev_io *w, int revents);
static void on_expiry(struct ev_loop *loop, ev_timer *w, int revents);
static void conn_fail(qconn_t *c, int err);
static int conn_write(qconn_t *c);

static qconn_t *conn_of(gw_up_cbase_t *b)
{
	return (qconn_t *)b;
}

static struct ev_loop *loop_of(const qconn_t *c)
{
	return c->b.g->set->loop;
}

static ngtcp2_tstamp ts_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NGTCP2_SECONDS + (uint64_t)ts.tv_nsec;
}

/* --- ngtcp2 callbacks: record only -------------------------------------------- */

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
	return ((qconn_t *)ref->user_data)->conn;
}

static void cb_rand(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *rc)
{
	(void)rc;
	(void)wolfSSL_RAND_bytes(dest, (int)len);
}

static int cb_new_cid(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token,
		      size_t cidlen, void *user)
{
	(void)conn;
	(void)user;
	if (wolfSSL_RAND_bytes(cid->data, (int)cidlen) != 1 ||
	    wolfSSL_RAND_bytes(token, NGTCP2_STATELESS_RESET_TOKENLEN) != 1)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	cid->datalen = cidlen;
	return 0;
}

static int cb_handshake_completed(ngtcp2_conn *conn, void *user)
{
	qconn_t *c = user;
	const gw_conf_t *conf = c->b.g->set->conf;

	(void)conn;
	/* Pin and ALPN before any query goes out (RFC 9250 4.1: "doq"). */
	if (gw_up_tls_quic_check(c->ssl, conf->up.pin[c->b.up], "doq", c->why,
				 sizeof(c->why)) < 0) {
		c->auth_failed = true;
		return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	c->b.state = GW_UPC_OPEN;
	return 0;
}

static int cb_recv_stream_data(ngtcp2_conn *conn, uint32_t flags, int64_t sid,
			       uint64_t offset, const uint8_t *data,
			       size_t len, void *user, void *su)
{
	qst_t *s = su;

	(void)offset;
	(void)user;
	ngtcp2_conn_extend_max_stream_offset(conn, sid, len);
	ngtcp2_conn_extend_max_offset(conn, len);
	if (!s)
		return 0;
	if (!s->too_big && len > 0) {
		if (len > 2 + GW_DNS_MAX_MSG - s->inlen) {
			s->too_big = true;
		} else {
			if (!s->in && !(s->in = malloc(2 + GW_DNS_MAX_MSG)))
				return NGTCP2_ERR_CALLBACK_FAILURE;
			memcpy(s->in + s->inlen, data, len);
			s->inlen += len;
		}
	}
	if (flags & NGTCP2_STREAM_DATA_FLAG_FIN)
		s->fin_rcvd = true;
	return 0;
}

static int cb_stream_reset(ngtcp2_conn *conn, int64_t sid, uint64_t fs,
			   uint64_t code, void *user, void *su)
{
	(void)conn;
	(void)sid;
	(void)fs;
	(void)code;
	(void)user;
	if (su)
		((qst_t *)su)->reset = true;
	return 0;
}

static int cb_stream_close(ngtcp2_conn *conn, uint32_t flags, int64_t sid,
			   uint64_t code, void *user, void *su)
{
	(void)conn;
	(void)flags;
	(void)sid;
	(void)code;
	(void)user;
	if (su)
		((qst_t *)su)->closed = true;
	return 0;
}

int gw_up_tls_tickets_only(gw_up_tls_msgs_t *m, const uint8_t *p, size_t n)
{
	while (n > 0) {
		if (m->have < 4) {
			m->hdr[m->have++] = *p++;
			n--;
			if (m->have == 1 && m->hdr[0] != 4) /* new_session_ticket */
				return -1;
			if (m->have == 4) {
				m->left = (uint32_t)m->hdr[1] << 16 |
					  (uint32_t)m->hdr[2] << 8 | m->hdr[3];
				if (m->left == 0)
					m->have = 0;
			}
			continue;
		}
		size_t take = n < m->left ? n : m->left;
		p += take;
		n -= take;
		m->left -= (uint32_t)take;
		if (m->left == 0)
			m->have = 0;
	}
	return 0;
}

/* TLS data from the upstream: after the handshake only session tickets go
 * on to wolfSSL (gw_up_tls_tickets_only); anything else closes the
 * connection with unexpected_message (0x10a). */
static int cb_recv_crypto_data(ngtcp2_conn *conn,
			       ngtcp2_encryption_level level, uint64_t offset,
			       const uint8_t *data, size_t datalen, void *user)
{
	qconn_t *c = user;

	if (level == NGTCP2_ENCRYPTION_LEVEL_1RTT &&
	    gw_up_tls_tickets_only(&c->msgs, data, datalen) < 0) {
		ngtcp2_conn_set_tls_alert(conn, 10);
		return NGTCP2_ERR_CRYPTO;
	}
	return ngtcp2_crypto_recv_crypto_data_cb(conn, level, offset, data,
						 datalen, user);
}

static const ngtcp2_callbacks callbacks = {
	.client_initial = ngtcp2_crypto_client_initial_cb,
	.recv_crypto_data = cb_recv_crypto_data,
	.handshake_completed = cb_handshake_completed,
	.encrypt = ngtcp2_crypto_encrypt_cb,
	.decrypt = ngtcp2_crypto_decrypt_cb,
	.hp_mask = ngtcp2_crypto_hp_mask_cb,
	.recv_stream_data = cb_recv_stream_data,
	.stream_close = cb_stream_close,
	.stream_reset = cb_stream_reset,
	.recv_retry = ngtcp2_crypto_recv_retry_cb,
	.rand = cb_rand,
	.get_new_connection_id = cb_new_cid,
	.update_key = ngtcp2_crypto_update_key_cb,
	.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
	.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
	.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
	.version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

/* --- streams ----------------------------------------------------------------- */

static void st_free(qst_t *s)
{
	qconn_t *c = s->c;

	if (s->prev)
		s->prev->next = s->next;
	else
		c->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	if (s->uq) {
		s->uq->qst = NULL;
		c->live--;
	}
	if (c->conn && !s->closed)
		ngtcp2_conn_set_stream_user_data(c->conn, s->id, NULL);
	free(s->out);
	free(s->in);
	free(s);
}

/* Takes uq off s (s stays until ngtcp2 closes it). */
static gw_up_query_t *st_take(qst_t *s)
{
	gw_up_query_t *uq = s->uq;

	if (uq) {
		s->uq = NULL;
		uq->qst = NULL;
		s->c->live--;
	}
	return uq;
}

/* Delivers what the callbacks recorded. Outside ngtcp2. */
static void conn_deliver(qconn_t *c)
{
	qst_t *s, *nx;
	gw_up_metrics_t *m = gw_up_cbase_metrics(&c->b);

	for (s = c->streams; s && !c->b.dead; s = nx) {
		gw_up_query_t *uq;
		nx = s->next;
		if (s->uq && s->fin_rcvd && !s->reset) {
			size_t ml = s->inlen >= 2 ? gw_dns_get16(s->in) : 0;
			uq = st_take(s);
			/* RFC 9250 4.2: exactly one prefixed message */
			if (!s->too_big && s->inlen >= 2 + GW_DNS_HEADER_LEN &&
			    ml + 2 == s->inlen &&
			    gw_up_check_answer(&uq->sent, s->in + 2, ml, false,
					       NULL) == GW_UP_ANSWER) {
				if (!c->b.saved_session) {
					gw_up_tls_session_t *ss =
						gw_up_tls_quic_session(c->ssl);
					if (ss)
						gw_up_cgroup_keep_session(
							c->b.g, ss);
					c->b.saved_session = true;
				}
				gw_up_attempt_answer(uq, s->in + 2, ml);
			} else {
				m->ignored++;
				gw_up_debug(uq, "doq answer refused",
					    "malformed");
				gw_up_attempt_error(uq, GW_EMALFORMED);
			}
		} else if (s->uq && (s->reset || s->closed)) {
			uq = st_take(s);
			gw_up_debug(uq, "doq stream reset", NULL);
			gw_up_attempt_error(uq, GW_EUPSTREAM);
		}
		if (s->closed && !c->b.dead)
			st_free(s);
	}
}

/* --- connection ------------------------------------------------------------------ */

static void conn_destroy(gw_up_cbase_t *b)
{
	qconn_t *c = conn_of(b);

	while (c->streams)
		st_free(c->streams);
	if (c->conn)
		ngtcp2_conn_del(c->conn);
	gw_up_tls_quic_free(c->ssl);
	free(c);
}

static unsigned conn_live(const gw_up_cbase_t *b)
{
	return ((const qconn_t *)b)->live;
}

static void conn_killed(gw_up_cbase_t *b)
{
	ev_timer_stop(loop_of(conn_of(b)), &conn_of(b)->expiry);
}

/* Sends CONNECTION_CLOSE (best effort) and kills c. */
static void conn_close(qconn_t *c, ngtcp2_ccerr *e)
{
	uint8_t buf[PKT_MAX];
	ngtcp2_path_storage ps;
	ngtcp2_pkt_info pi;
	ngtcp2_ssize n;

	if (c->b.dead)
		return;
	ngtcp2_path_storage_zero(&ps);
	c->in_ng = true;
	n = ngtcp2_conn_write_connection_close(c->conn, &ps.path, &pi, buf,
					       sizeof(buf), e, ts_now());
	c->in_ng = false;
	if (n > 0)
		(void)send(c->b.fd, buf, (size_t)n, MSG_DONTWAIT);
	gw_up_cbase_kill(&c->b);
}

/* Closes c with DOQ_NO_ERROR (RFC 9250 4.3). */
static void conn_close_ok(qconn_t *c)
{
	ngtcp2_ccerr e;

	ngtcp2_ccerr_default(&e);
	ngtcp2_ccerr_set_application_error(&e, DOQ_NO_ERROR, NULL, 0);
	conn_close(c, &e);
}

static void conn_retire(gw_up_cbase_t *b)
{
	gw_up_debug_conn(b->g->set->pool, b->up, "connection retired", "quic");
	conn_close_ok(conn_of(b));
}

/* The set goes: a polite close for a connection still up. */
static void conn_closing(gw_up_cbase_t *b)
{
	qconn_t *c = conn_of(b);

	if (!c->b.dead)
		conn_close_ok(c);
	ev_timer_stop(loop_of(c), &c->expiry);
}

static bool conn_room(const gw_up_cbase_t *b)
{
	const qconn_t *c = (const qconn_t *)b;

	return c->live < b->g->set->lim.max_inflight &&
	       (b->state != GW_UPC_OPEN ||
		ngtcp2_conn_get_streams_bidi_left(c->conn) > 0);
}

static const char *conn_why(gw_up_cbase_t *b, int err)
{
	qconn_t *c = conn_of(b);

	if (!c->why[0] && err == GW_ETLS)
		gw_up_tls_quic_why(c->ssl, c->why, sizeof(c->why));
	return c->why;
}

/* c died: hand every live query back to the pool. */
static void conn_reissue(gw_up_cbase_t *b, int err)
{
	for (qst_t *s = conn_of(b)->streams; s; s = s->next) {
		gw_up_query_t *uq = st_take(s);
		if (uq)
			gw_up_attempt_reissue(uq, err);
	}
}

static void conn_fail(qconn_t *c, int err)
{
	gw_up_cbase_fail(&c->b, err);
}

static void arm_expiry(qconn_t *c)
{
	ngtcp2_tstamp e = ngtcp2_conn_get_expiry(c->conn), now = ts_now();
	double after = e <= now ? 0. : (double)(e - now) / NGTCP2_SECONDS;

	if (c->b.dead)
		return;
	if (e == UINT64_MAX)
		after = 3600.;
	ev_timer_stop(loop_of(c), &c->expiry);
	ev_timer_set(&c->expiry, after, 0.);
	ev_timer_start(loop_of(c), &c->expiry);
}

/* Writes every stream's data, then ACKs and control frames. */
static int conn_write(qconn_t *c)
{
	uint8_t buf[PKT_MAX];
	ngtcp2_path_storage ps;
	ngtcp2_pkt_info pi;
	ngtcp2_tstamp ts = ts_now();
	qst_t *s = c->streams;

	if (c->b.dead || c->in_ng)
		return 0;
	ngtcp2_path_storage_zero(&ps);
	for (int guard = 0; guard < 4096; guard++) {
		ngtcp2_vec v;
		ngtcp2_ssize nd = -1, n;
		uint32_t fl = 0;
		int64_t sid = -1;

		while (s && (s->closed || s->fin_sent || s->reset))
			s = s->next;
		if (s) {
			sid = s->id;
			v.base = s->out + s->sent;
			v.len = s->out_len - s->sent;
			fl = NGTCP2_WRITE_STREAM_FLAG_FIN;
		}
		c->in_ng = true;
		n = ngtcp2_conn_writev_stream(c->conn, &ps.path, &pi, buf,
					      sizeof(buf), &nd, fl, sid,
					      s ? &v : NULL, s ? 1 : 0, ts);
		c->in_ng = false;
		if (n < 0) {
			if (s && (n == NGTCP2_ERR_STREAM_DATA_BLOCKED ||
				  n == NGTCP2_ERR_STREAM_SHUT_WR ||
				  n == NGTCP2_ERR_STREAM_NOT_FOUND)) {
				s = s->next; /* try the others */
				continue;
			}
			return GW_EUPSTREAM;
		}
		if (s && nd >= 0) {
			s->sent += (size_t)nd;
			if (s->sent == s->out_len)
				s->fin_sent = true;
		}
		if (n == 0) {
			if (s && !s->fin_sent) {
				s = s->next; /* congestion: the rest later */
				continue;
			}
			if (!s)
				break;
			continue;
		}
		if (send(c->b.fd, buf, (size_t)n, MSG_DONTWAIT) < 0 &&
		    errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
		    errno != ECONNREFUSED)
			return -errno;
	}
	ngtcp2_conn_update_pkt_tx_time(c->conn, ts);
	arm_expiry(c);
	return 0;
}

/* A read or expiry failed with rv: close politely and fail c. */
static void conn_error(qconn_t *c, int rv)
{
	ngtcp2_ccerr e;
	int err = rv == NGTCP2_ERR_IDLE_CLOSE ? GW_ETIMEDOUT
		  : rv == NGTCP2_ERR_CRYPTO || c->auth_failed ? GW_ETLS
							      : GW_ECLOSED;

	if (rv == NGTCP2_ERR_CRYPTO && !c->why[0]) {
		uint8_t alert = ngtcp2_conn_get_tls_alert(c->conn);
		gw_up_tls_quic_why(c->ssl, c->why, sizeof(c->why));
		if (strcmp(c->why, "handshake failed") == 0)
			snprintf(c->why, sizeof(c->why), "tls alert %u", alert);
	}
	if (rv != NGTCP2_ERR_DRAINING && rv != NGTCP2_ERR_CLOSING &&
	    rv != NGTCP2_ERR_IDLE_CLOSE && c->b.fd >= 0) {
		uint8_t buf[PKT_MAX];
		ngtcp2_path_storage ps;
		ngtcp2_pkt_info pi;
		ngtcp2_ssize n;

		ngtcp2_ccerr_default(&e);
		ngtcp2_ccerr_set_liberr(&e, rv, NULL, 0);
		ngtcp2_path_storage_zero(&ps);
		c->in_ng = true;
		n = ngtcp2_conn_write_connection_close(c->conn, &ps.path, &pi,
						       buf, sizeof(buf), &e,
						       ts_now());
		c->in_ng = false;
		if (n > 0)
			(void)send(c->b.fd, buf, (size_t)n, MSG_DONTWAIT);
	}
	conn_fail(c, err);
}

static gw_up_cbase_t *conn_new(gw_up_cset_t *cs, unsigned up, bool trial,
			       int *err)
{
	gw_up_quic_t *qs = (gw_up_quic_t *)cs;
	const gw_endpoint_t *ep = &cs->conf->upstream[up];
	ngtcp2_settings settings;
	ngtcp2_transport_params params;
	ngtcp2_cid dcid, scid;
	const struct sockaddr *sa;
	socklen_t salen;
	qconn_t *c;
	int r;

	sa = gw_up_pool_addr(cs->pool, up, &salen);
	if (!sa) {
		*err = GW_EAGAIN;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		*err = GW_ENOMEM;
		return NULL;
	}
	gw_up_cbase_init(&c->b, cs, up, trial);
	c->b.state = GW_UPC_HANDSHAKE; /* UDP: nothing to connect */
	memcpy(&c->remote, sa, salen);
	c->remotelen = salen;
	c->b.fd = socket(sa->sa_family,
			 SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->b.fd < 0) {
		r = -errno;
		goto fail;
	}
	c->locallen = sizeof(c->local);
	if (connect(c->b.fd, sa, salen) < 0 ||
	    getsockname(c->b.fd, (struct sockaddr *)&c->local,
			&c->locallen) < 0) {
		r = -errno;
		goto fail;
	}
	/* RFC 9000 7.2: random initial DCID of at least 8 bytes. */
	dcid.datalen = 18;
	scid.datalen = 16;
	if (wolfSSL_RAND_bytes(dcid.data, (int)dcid.datalen) != 1 ||
	    wolfSSL_RAND_bytes(scid.data, (int)scid.datalen) != 1) {
		r = GW_ETLS;
		goto fail;
	}
	ngtcp2_settings_default(&settings);
	settings.initial_ts = ts_now();
	settings.handshake_timeout =
		(ngtcp2_duration)(gw_up_pool_timeout(cs->pool) * NGTCP2_SECONDS);
	settings.max_tx_udp_payload_size = PKT_MAX;
	ngtcp2_transport_params_default(&params);
	/* RFC 9250 4.2: only we open streams; none unidirectional. */
	params.initial_max_streams_bidi = 0;
	params.initial_max_streams_uni = 0;
	params.initial_max_stream_data_bidi_local = 128 * 1024;
	params.initial_max_data = 8u << 20;
	/* A little over our own idle close, so that the polite close (with
	 * DOQ_NO_ERROR) comes first; the server's may still be shorter. */
	params.max_idle_timeout =
		(ngtcp2_duration)((cs->lim.idle + 1.0) * NGTCP2_SECONDS);
	c->ref.get_conn = get_conn;
	c->ref.user_data = c;
	ngtcp2_path path = {
		.local = { (ngtcp2_sockaddr *)&c->local, c->locallen },
		.remote = { (ngtcp2_sockaddr *)&c->remote, c->remotelen },
	};
	if (ngtcp2_conn_client_new(&c->conn, &dcid, &scid, &path,
				   NGTCP2_PROTO_VER_V1, &callbacks, &settings,
				   &params, NULL, c) != 0) {
		c->conn = NULL;
		r = GW_ENOMEM;
		goto fail;
	}
	c->ssl = gw_up_tls_quic_new(qs->tls, ep->tls_name, cs->conf->up.pin[up],
				    "doq", c->b.g->session);
	if (!c->ssl) {
		r = GW_ETLS;
		goto fail;
	}
	wolfSSL_set_app_data((WOLFSSL *)c->ssl, &c->ref);
	ngtcp2_conn_set_tls_native_handle(c->conn, c->ssl);
	ev_timer_init(&c->expiry, on_expiry, 0., 0.);
	c->expiry.data = c;
	/* b.timer stays unarmed until the connection is idle. */
	gw_up_cbase_open(&c->b, conn_io, EV_READ, -1.);
	/* The Initial goes out now; errors surface from the timer. */
	if (conn_write(c) < 0)
		arm_expiry(c);
	return &c->b;
fail:
	gw_up_cbase_discard(&c->b);
	*err = r;
	return NULL;
}

static void conn_opened(qconn_t *c)
{
	bool resumed = gw_up_tls_quic_resumed(c->ssl);

	gw_up_cbase_opened(&c->b, resumed, resumed ? "quic resumed" : "quic");
}

static void conn_read(qconn_t *c)
{
	uint8_t *buf = gw_up_pool_rbuf(c->b.g->set->pool);
	bool was_open = c->b.state == GW_UPC_OPEN;

	for (int rounds = 0; rounds < 64 && !c->b.dead; rounds++) {
		ngtcp2_pkt_info pi = { 0 };
		ngtcp2_path path = {
			.local = { (ngtcp2_sockaddr *)&c->local, c->locallen },
			.remote = { (ngtcp2_sockaddr *)&c->remote,
				    c->remotelen },
		};
		ssize_t n = recv(c->b.fd, buf, GW_DNS_MAX_MSG, 0);
		int rv;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			/* ICMP port unreachable: nobody listens there */
			conn_fail(c, -errno);
			return;
		}
		c->last_rx = gw_up_now();
		c->in_ng = true;
		rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, buf, (size_t)n,
					  ts_now());
		c->in_ng = false;
		if (rv != 0) {
			conn_error(c, rv);
			return;
		}
		if (!was_open && c->b.state == GW_UPC_OPEN) {
			was_open = true;
			conn_opened(c);
		}
		conn_deliver(c);
	}
	if (c->b.dead)
		return;
	if (c->b.state == GW_UPC_OPEN)
		gw_up_cgroup_drain(c->b.g);
	if (!c->b.dead && conn_write(c) < 0)
		conn_fail(c, GW_EUPSTREAM);
	if (!c->b.dead)
		gw_up_cbase_check(&c->b);
}

static void conn_io(struct ev_loop *loop, ev_io *w, int revents)
{
	qconn_t *c = w->data;

	(void)loop;
	(void)revents;
	if (!c->b.dead)
		conn_read(c);
}

static void on_expiry(struct ev_loop *loop, ev_timer *w, int revents)
{
	qconn_t *c = w->data;
	int rv;

	(void)loop;
	(void)revents;
	if (c->b.dead)
		return;
	c->in_ng = true;
	rv = ngtcp2_conn_handle_expiry(c->conn, ts_now());
	c->in_ng = false;
	if (rv != 0) {
		conn_error(c, rv);
		return;
	}
	if (conn_write(c) < 0)
		conn_fail(c, GW_EUPSTREAM);
}

/* Our idle close (b.timer is armed only for an idle OPEN connection). */
static void conn_timeout(gw_up_cbase_t *b)
{
	qconn_t *c = conn_of(b);

	if (c->live == 0) {
		/* RFC 9250 4.3: idle close with DOQ_NO_ERROR */
		gw_up_debug_conn(b->g->set->pool, b->up, "connection idle",
				 "quic");
		conn_close_ok(c);
	}
}

/* --- the seam -------------------------------------------------------------------- */

static int assign(gw_up_cbase_t *b, gw_up_query_t *uq)
{
	qconn_t *c = conn_of(b);
	qst_t *s = calloc(1, sizeof(*s));
	int rv;

	if (!s || !(s->out = malloc(uq->out_len + 2))) {
		free(s);
		return GW_ENOMEM;
	}
	s->c = c;
	rv = ngtcp2_conn_open_bidi_stream(c->conn, &s->id, s);
	if (rv != 0) {
		free(s->out);
		free(s);
		return rv == NGTCP2_ERR_STREAM_ID_BLOCKED ? GW_ENOSPC
							  : GW_EUPSTREAM;
	}
	/* RFC 9250 4.2.1: the message ID MUST be 0 on the wire. */
	memcpy(s->out, uq->out, uq->out_len + 2);
	s->out[2] = s->out[3] = 0;
	s->out_len = uq->out_len + 2;
	uq->sent.id = 0;
	uq->id = 0;
	s->uq = uq;
	uq->qst = s;
	s->next = c->streams;
	if (c->streams)
		c->streams->prev = s;
	c->streams = s;
	c->live++;
	ev_timer_stop(loop_of(c), &b->timer);
	gw_up_cbase_count_query(b);
	return 0;
}

/* Queries assigned by a drain go out in one write per connection. */
static void conn_flush(gw_up_cbase_t *b)
{
	if (conn_write(conn_of(b)) < 0)
		conn_fail(conn_of(b), GW_EUPSTREAM);
}

static const gw_up_cset_ops_t quic_ops = {
	.live = conn_live,
	.room = conn_room,
	.connect = conn_new,
	.assign = assign,
	.destroy = conn_destroy,
	.timeout = conn_timeout,
	.retire = conn_retire,
	.reissue = conn_reissue,
	.why = conn_why,
	.killed = conn_killed,
	.closing = conn_closing,
	.flush = conn_flush,
	.handshake_failed = "upstream quic handshake failed",
	.wait_for_open = true,
};

int gw_up_quic_start(gw_up_query_t *uq, const gw_endpoint_t *ep)
{
	gw_up_cbase_t *on;
	int r;

	(void)ep;
	r = gw_up_cset_start(&gw_up_pool_quic(uq->pool)->set, uq, &on);
	/* Errors surface from the timer, never synchronously. */
	if (r == 0 && on && conn_write(conn_of(on)) < 0)
		arm_expiry(conn_of(on));
	return r;
}

void gw_up_quic_stop(gw_up_query_t *uq)
{
	gw_up_quic_t *qs = gw_up_pool_quic(uq->pool);
	qst_t *s = uq->qst;
	qconn_t *c;

	if (gw_up_cset_unwait(qs ? &qs->set : NULL, uq))
		return;
	if (!s)
		return;
	c = s->c;
	st_take(s);
	if (!c->b.dead && !s->closed && !c->in_ng) {
		/* RFC 9250 4.5: cancel with DOQ_REQUEST_CANCELLED. */
		(void)ngtcp2_conn_shutdown_stream(c->conn, 0, s->id,
						  DOQ_REQUEST_CANCELLED);
		s->reset = true;
		/* Timed out with nothing received since it was sent: the
		 * path is blackholed; stop using this connection (tcp.c). */
		if (uq->err == GW_ETIMEDOUT && c->last_rx <= uq->t_sent)
			c->b.retiring = true;
		if (c->b.state == GW_UPC_OPEN)
			(void)conn_write(c);
	}
	gw_up_cbase_check(&c->b);
}

gw_up_quic_t *gw_up_quic_new(gw_up_pool_t *p, char *err, size_t errlen)
{
	const gw_conf_t *conf = gw_up_pool_conf(p);
	gw_up_quic_t *qs;
	bool any = false, need_ca = false;

	for (unsigned i = 0; i < conf->n_upstream; i++) {
		if (conf->upstream[i].proto != GW_PROTO_DOQ)
			continue;
		any = true;
		if (!conf->up.pin[i][0])
			need_ca = true;
	}
	if (!any)
		return NULL;
	qs = calloc(1, sizeof(*qs));
	if (!qs) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	gw_up_cset_init(&qs->set, p, &quic_ops, 0);
	qs->tls = gw_up_tls_ctx_new_quic(conf->up.ca_file, need_ca, err,
					 errlen);
	if (!qs->tls) {
		free(qs);
		return NULL;
	}
	return qs;
}

void gw_up_quic_free(gw_up_quic_t *qs)
{
	if (!qs)
		return;
	gw_up_cset_deinit(&qs->set);
	gw_up_tls_ctx_free(qs->tls);
	free(qs);
}

unsigned gw_up_quic_open(const gw_up_quic_t *qs, unsigned up)
{
	return gw_up_cset_open_count(qs ? &qs->set : NULL, up);
}

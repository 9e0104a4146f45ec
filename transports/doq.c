/*
 * doq.c - DNS over QUIC (RFC 9250) listeners: datagram I/O, the connection
 * table, QUIC server duties and the glue between ngtcp2 streams and the
 * query pipeline. See doq.h for ownership and docs/doq.md for the choices.
 *
 * Receiving:  recvmmsg batch -> per datagram: PROXY v2 header stripped on
 *             a PROXY listener (docs/policy.md), version check, connection
 *             lookup by DCID, or a new connection (size check, caps, Retry)
 *             -> ngtcp2_conn_read_pkt() -> stream callbacks -> doq_stream rx
 *             -> gw_query_start()
 * Sending:    on_answer() -> framed answer kept on the stream until the
 *             stream closes; the connection is queued (gw_worker_flush)
 *             -> before the loop waits, conn_write():
 *             ngtcp2_conn_writev_stream() into the worker's batch ->
 *             sendmmsg (GSO when offered)
 *
 * Nothing is written from inside an ngtcp2 callback: callbacks only record
 * state. Reads and answers queue the connection, so what one loop
 * iteration brings (a batch of datagrams, a batch of upstream answers)
 * leaves in shared packets; timers and closes write at once.
 */
#include "doq.h"

#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_wolfssl.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/random.h>

#include "gateway/error.h"
#include "gateway/log.h"
#include "gateway/policy.h"
#include "gateway/query.h"
#include "transports/doq_stream.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

#define SCID_LEN 18            /* our connection IDs */
#define RX_BATCH 32            /* datagrams per recvmmsg */
#define RX_BUF 65536           /* loopback MTUs are large; never truncate */
#define TX_PKTS 32             /* packets per flush */
#define TX_PKT_MAX 1452        /* our largest UDP payload */
#define MAX_CIDS 16            /* connection IDs indexed per connection */
#define TABLE_BITS 14          /* connection-ID hash buckets per worker */
#define RETRY_TOKEN_TIMEOUT (60 * NGTCP2_SECONDS) /* REQUIREMENTS.md */
#define HANDSHAKE_TIMEOUT (5 * NGTCP2_SECONDS)
#define RESET_PER_SEC 200      /* stateless resets per worker per second */
#define OVERCAP_MAX 64         /* over-cap handshakes finished to say why */
#define MAX_DOQ_LISTENERS GW_CONF_MAX_LISTEN

typedef struct doq_conn doq_conn_t;
typedef struct doq_srv doq_srv_t;

typedef struct doq_stream {
	doq_conn_t *c;
	int64_t id;
	gw_doq_rx_t rx;
	gw_query_t *q;      /* in flight, owned by the pipeline */
	uint8_t *out;       /* framed answer, kept until the stream closes
			     * (ngtcp2 retransmits from it) */
	size_t out_len, out_sent;
	bool fin_sent;
	bool blocked;       /* flow control: wait for MAX_STREAM_DATA */
	bool done;          /* reset or shut: nothing more to send */
	bool early;         /* some of the query came in 0-RTT packets */
	double t_open;
	struct doq_stream *next, *prev;
} doq_stream_t;

typedef struct cid_ent {
	uint8_t len;
	uint8_t id[NGTCP2_MAX_CIDLEN];
	doq_conn_t *c;
	bool used;
	struct cid_ent *next; /* bucket chain */
} cid_ent_t;

typedef struct doq_sock {
	doq_srv_t *srv;
	gw_listener_t *l;
	int fd; /* our dup of l->fd: answers keep flowing while draining */
	ev_io io;
	struct sockaddr_storage local;
	socklen_t locallen;
	bool gso; /* UDP_SEGMENT works on this socket */
	bool proxy; /* policy.proxy_protocol lists it: datagrams of trusted
		     * peers carry a PROXY v2 header (decided at start) */
} doq_sock_t;

struct doq_conn {
	doq_srv_t *srv;
	doq_sock_t *sock;
	ngtcp2_conn *conn;
	WOLFSSL *ssl;
	gw_certs_t *certs;
	ngtcp2_crypto_conn_ref conn_ref;
	struct sockaddr_storage remote;
	socklen_t remotelen;
	/* the client the policy judged at the first Initial and holds the
	 * connlimit slot of: remote then, or the client a trusted proxy's
	 * PROXY v2 header named (proxied: remote stays the proxy, where
	 * packets go back; this is the client of the queries) */
	struct sockaddr_storage client;
	socklen_t clientlen;
	bool proxied;
	cid_ent_t cids[MAX_CIDS];
	ev_timer timer;
	doq_stream_t *streams;
	unsigned nstreams, inflight;
	double t_start;
	bool slot;          /* holds a gw_connlimit slot */
	bool over_cap;      /* finish the handshake, then EXCESSIVE_LOAD */
	bool handshake_done;
	bool in_ngtcp2;     /* inside a call into ngtcp2: do not write */
	/* packets are written once per loop iteration (gw_worker_flush), so
	 * the answers and ACKs of one iteration share packets and sends */
	gw_flush_t flush;
	bool closing;       /* CONNECTION_CLOSE sent: closing period */
	bool draining;      /* peer closed: draining period */
	bool freeing;       /* free at the next timer callback */
	uint64_t app_error; /* set by callbacks: close with this DoQ code */
	bool app_error_set;
	int tls_alert;      /* set by callbacks: close with CRYPTO_ERROR */
	uint8_t *close_pkt;
	size_t close_len;
	double close_until, close_next;
	unsigned close_sent;
	struct doq_conn *next, *prev;
};

struct doq_srv {
	gw_worker_t *w;
	doq_sock_t socks[MAX_DOQ_LISTENERS];
	unsigned nsocks;
	cid_ent_t *table[1u << TABLE_BITS];
	uint64_t hash_key;
	doq_conn_t *conns;
	unsigned nconns, handshaking, overcap;
	double reset_window;
	unsigned reset_count;
	/* receive batch */
	struct mmsghdr rmsg[RX_BATCH];
	struct iovec riov[RX_BATCH];
	struct sockaddr_storage raddr[RX_BATCH];
	uint8_t *rbuf; /* RX_BATCH * RX_BUF */
	/* send batch: packets for one destination */
	uint8_t tbuf[TX_PKTS * TX_PKT_MAX];
	size_t tlen[TX_PKTS];
	unsigned tn;
};

static __thread doq_srv_t *tls_srv;

/* Process-wide gauges (tests check they return to zero). */
static atomic_uint g_conns, g_handshaking, g_streams, g_inflight;
static atomic_ulong g_retries, g_resets, g_vn, g_dropped;

/* Retry-token and stateless-reset key, shared by all workers: a client's
 * second Initial or a stray short packet may reach any of them. */
static uint8_t g_secret[32];
static pthread_once_t g_secret_once = PTHREAD_ONCE_INIT;

static void conn_write(doq_conn_t *c);
static void conn_update(doq_conn_t *c);
static void conn_close_app(doq_conn_t *c, uint64_t code, const char *why);

void gw_doq_stats(gw_doq_stats_t *o)
{
	o->conns = atomic_load(&g_conns);
	o->handshaking = atomic_load(&g_handshaking);
	o->streams = atomic_load(&g_streams);
	o->inflight = atomic_load(&g_inflight);
	o->retries_sent = atomic_load(&g_retries);
	o->resets_sent = atomic_load(&g_resets);
	o->vn_sent = atomic_load(&g_vn);
	o->initials_dropped = atomic_load(&g_dropped);
}

static void random_bytes(uint8_t *p, size_t n)
{
	WC_RNG rng;
	if (wc_InitRng(&rng) == 0) {
		wc_RNG_GenerateBlock(&rng, p, (word32)n);
		wc_FreeRng(&rng);
	}
}

/* A thread-local RNG for CIDs and ngtcp2's rand callback: one init per
 * worker, not per packet. */
static __thread WC_RNG *tls_rng;
static void fast_random(uint8_t *p, size_t n)
{
	if (!tls_rng) {
		tls_rng = calloc(1, sizeof(*tls_rng));
		if (tls_rng && wc_InitRng(tls_rng) != 0) {
			free(tls_rng);
			tls_rng = NULL;
		}
	}
	if (!tls_rng || wc_RNG_GenerateBlock(tls_rng, p, (word32)n) != 0)
		random_bytes(p, n);
}

static void make_secret(void) { random_bytes(g_secret, sizeof(g_secret)); }

/* ngtcp2 timestamps: the worker's monotonic clock in nanoseconds. */
static ngtcp2_tstamp ts_now(const gw_worker_t *w)
{
	return (ngtcp2_tstamp)(gw_worker_now(w) * 1e9);
}

/* ------------------------------------------------ connection-ID table */

static uint32_t cid_hash(const doq_srv_t *s, const uint8_t *id, size_t len)
{
	/* FNV-1a over a per-worker random key: clients choose the first
	 * DCID, so an unkeyed hash would let them pick one bucket. */
	uint64_t h = 1469598103934665603ull ^ s->hash_key;
	for (size_t i = 0; i < len; i++) {
		h ^= id[i];
		h *= 1099511628211ull;
	}
	h ^= h >> 29;
	return (uint32_t)(h & ((1u << TABLE_BITS) - 1));
}

static doq_conn_t *cid_find(doq_srv_t *s, const uint8_t *id, size_t len)
{
	for (cid_ent_t *e = s->table[cid_hash(s, id, len)]; e; e = e->next)
		if (e->len == len && memcmp(e->id, id, len) == 0)
			return e->c;
	return NULL;
}

static int cid_add(doq_conn_t *c, const uint8_t *id, size_t len)
{
	doq_srv_t *s = c->srv;
	for (unsigned i = 0; i < MAX_CIDS; i++) {
		cid_ent_t *e = &c->cids[i];
		if (e->used)
			continue;
		e->used = true;
		e->len = (uint8_t)len;
		memcpy(e->id, id, len);
		e->c = c;
		uint32_t b = cid_hash(s, id, len);
		e->next = s->table[b];
		s->table[b] = e;
		return 0;
	}
	return GW_ENOSPC;
}

static void cid_unlink(doq_srv_t *s, cid_ent_t *e)
{
	cid_ent_t **pp = &s->table[cid_hash(s, e->id, e->len)];
	for (; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	}
	e->used = false;
}

static void cid_remove(doq_conn_t *c, const uint8_t *id, size_t len)
{
	for (unsigned i = 0; i < MAX_CIDS; i++) {
		cid_ent_t *e = &c->cids[i];
		if (e->used && e->len == len && memcmp(e->id, id, len) == 0) {
			cid_unlink(c->srv, e);
			return;
		}
	}
}

/* ------------------------------------------------------------ sending */

static void send_batch(doq_sock_t *k, const struct sockaddr_storage *to,
		       socklen_t tolen)
{
	doq_srv_t *s = k->srv;
	if (s->tn == 0)
		return;
	/* GSO: one sendmsg for equal-sized packets (the last may be
	 * shorter) when the kernel takes UDP_SEGMENT. */
	bool same = true;
	for (unsigned i = 1; i + 1 < s->tn; i++)
		same &= s->tlen[i] == s->tlen[0];
	if (s->tn > 1 && s->tlen[s->tn - 1] > s->tlen[0])
		same = false;
	if (k->gso && s->tn > 1 && same) {
		size_t total = 0;
		for (unsigned i = 0; i < s->tn; i++)
			total += s->tlen[i];
		struct iovec iov = {.iov_base = s->tbuf, .iov_len = total};
		union {
			char buf[CMSG_SPACE(sizeof(uint16_t))];
			struct cmsghdr align;
		} cm;
		memset(&cm, 0, sizeof(cm));
		struct msghdr mh = {
			.msg_name = (void *)to,
			.msg_namelen = tolen,
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = cm.buf,
			.msg_controllen = sizeof(cm.buf),
		};
		struct cmsghdr *cmh = CMSG_FIRSTHDR(&mh);
		cmh->cmsg_level = SOL_UDP;
		cmh->cmsg_type = UDP_SEGMENT;
		cmh->cmsg_len = CMSG_LEN(sizeof(uint16_t));
		uint16_t seg = (uint16_t)s->tlen[0];
		memcpy(CMSG_DATA(cmh), &seg, sizeof(seg));
		if (sendmsg(k->fd, &mh, MSG_DONTWAIT) >= 0) {
			s->tn = 0;
			return;
		}
		if (errno == EIO || errno == EINVAL || errno == EOPNOTSUPP)
			k->gso = false; /* no GSO here: plain sendmmsg */
		else {
			s->tn = 0; /* EAGAIN etc.: QUIC recovers the loss */
			return;
		}
	}
	struct mmsghdr mm[TX_PKTS];
	struct iovec iov[TX_PKTS];
	size_t off = 0;
	for (unsigned i = 0; i < s->tn; i++) {
		iov[i].iov_base = s->tbuf + off;
		iov[i].iov_len = s->tlen[i];
		off += s->tlen[i];
		memset(&mm[i], 0, sizeof(mm[i]));
		mm[i].msg_hdr.msg_name = (void *)to;
		mm[i].msg_hdr.msg_namelen = tolen;
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	unsigned done = 0;
	while (done < s->tn) {
		int r = sendmmsg(k->fd, mm + done, s->tn - done, MSG_DONTWAIT);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			break; /* full socket buffer: dropped, QUIC resends */
		}
		done += (unsigned)r;
	}
	s->tn = 0;
}

/* One datagram outside any connection (Retry, reset, VN, refusal). */
static void send_one(doq_sock_t *k, const struct sockaddr_storage *to,
		     socklen_t tolen, const uint8_t *p, size_t n)
{
	sendto(k->fd, p, n, MSG_DONTWAIT, (const struct sockaddr *)to, tolen);
}

/* ------------------------------------------------------------ streams */

static doq_stream_t *stream_new(doq_conn_t *c, int64_t id)
{
	doq_stream_t *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->c = c;
	st->id = id;
	gw_doq_rx_init(&st->rx);
	st->t_open = gw_worker_now(c->srv->w);
	st->next = c->streams;
	if (c->streams)
		c->streams->prev = st;
	c->streams = st;
	c->nstreams++;
	atomic_fetch_add(&g_streams, 1);
	return st;
}

static void stream_cancel_query(doq_stream_t *st)
{
	if (!st->q)
		return;
	/* the pipeline frees the upstream slot at once */
	gw_log(GW_LOG_DEBUG, "doq", "query abandoned", NULL);
	gw_query_cancel(st->q);
	st->q = NULL;
	st->c->inflight--;
	atomic_fetch_sub(&g_inflight, 1);
}

static void stream_free(doq_stream_t *st)
{
	doq_conn_t *c = st->c;
	stream_cancel_query(st);
	gw_doq_rx_deinit(&st->rx);
	free(st->out);
	if (st->prev)
		st->prev->next = st->next;
	else
		c->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	c->nstreams--;
	atomic_fetch_sub(&g_streams, 1);
	free(st);
}

static void doq_on_answer(gw_query_t *q, const uint8_t *msg, size_t len)
{
	doq_stream_t *st = q->client;
	doq_conn_t *c = st->c;

	st->q = NULL;
	c->inflight--;
	atomic_fetch_sub(&g_inflight, 1);
	if (c->closing || c->draining || c->freeing || st->done)
		return;
	st->out = malloc(len + 2);
	if (!st->out ||
	    gw_doq_frame_answer(msg, len, st->out, len + 2) < 0) {
		free(st->out);
		st->out = NULL;
		/* RFC 9250 4.3: our failure, not the query's: reset 0x1 */
		if (!c->in_ngtcp2) {
			ngtcp2_conn_shutdown_stream(c->conn, 0, st->id,
						    GW_DOQ_INTERNAL_ERROR);
			st->done = true;
		}
	} else {
		st->out_len = len + 2;
	}
	gw_worker_flush(c->srv->w, &c->flush);
}

static const gw_query_client_ops_t doq_ops = {.on_answer = doq_on_answer};

/* ---------------------------------------------------- ngtcp2 callbacks */

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
	doq_conn_t *c = ref->user_data;
	return c->conn;
}

static void cb_rand(uint8_t *dest, size_t destlen,
		    const ngtcp2_rand_ctx *rand_ctx)
{
	fast_random(dest, destlen);
}

static int cb_get_new_cid(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token,
			  size_t cidlen, void *user_data)
{
	doq_conn_t *c = user_data;
	do {
		fast_random(cid->data, cidlen);
		cid->datalen = cidlen;
	} while (cid_find(c->srv, cid->data, cidlen));
	if (ngtcp2_crypto_generate_stateless_reset_token(
		    token, g_secret, sizeof(g_secret), cid) != 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	if (cid_add(c, cid->data, cidlen) < 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static int cb_remove_cid(ngtcp2_conn *conn, const ngtcp2_cid *cid,
			 void *user_data)
{
	cid_remove(user_data, cid->data, cid->datalen);
	return 0;
}

/*
 * TLS data from the client. Once the handshake is done a client has nothing
 * more to say in TLS: we ask for no post-handshake authentication, and RFC
 * 9001 6 forbids KeyUpdate in QUIC (an unexpected_message, 0x10a). Handed
 * to wolfSSL, a KeyUpdate made it derive new secrets and install them under
 * ngtcp2, whose assertion aborted the whole process: one packet from any
 * client stopped the gateway. 1-RTT CRYPTO data is therefore refused here,
 * which is also what lets the TLS object go at handshake end (tls_done).
 */
static int cb_recv_crypto_data(ngtcp2_conn *conn,
			       ngtcp2_encryption_level level, uint64_t offset,
			       const uint8_t *data, size_t datalen,
			       void *user_data)
{
	if (level == NGTCP2_ENCRYPTION_LEVEL_1RTT) {
		ngtcp2_conn_set_tls_alert(conn, 10); /* unexpected_message */
		return NGTCP2_ERR_CRYPTO;
	}
	return ngtcp2_crypto_recv_crypto_data_cb(conn, level, offset, data,
						 datalen, user_data);
}

/* RFC 9001 8.1: ALPN is mandatory for QUIC; "doq" is the only one we
 * speak (the context's select callback refuses other offers, but a client
 * that offers none never reaches it). */
static int cb_handshake_completed(ngtcp2_conn *conn, void *user_data)
{
	doq_conn_t *c = user_data;
	char *name = NULL;
	unsigned short len = 0;
	if (wolfSSL_ALPN_GetProtocol(c->ssl, &name, &len) != WOLFSSL_SUCCESS ||
	    len != 3 || memcmp(name, "doq", 3) != 0) {
		c->tls_alert = 120; /* no_application_protocol */
		return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	c->handshake_done = true;
	gw_wm_handshake(&c->srv->w->metrics, GW_PROTO_DOQ, true);
	c->srv->handshaking--;
	atomic_fetch_sub(&g_handshaking, 1);
	return 0;
}

static int cb_stream_open(ngtcp2_conn *conn, int64_t stream_id,
			  void *user_data)
{
	doq_conn_t *c = user_data;
	gw_doq_rx_fault_t f;
	if (gw_doq_check_stream_id(stream_id, &f) < 0) {
		/* RFC 9250 4.2 (unreachable while the uni limit is 0) */
		c->app_error = GW_DOQ_PROTOCOL_ERROR;
		c->app_error_set = true;
		return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	doq_stream_t *st = stream_new(c, stream_id);
	if (!st)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	ngtcp2_conn_set_stream_user_data(conn, stream_id, st);
	return 0;
}

static int cb_recv_stream_data(ngtcp2_conn *conn, uint32_t flags,
			       int64_t stream_id, uint64_t offset,
			       const uint8_t *data, size_t datalen,
			       void *user_data, void *stream_user_data)
{
	doq_conn_t *c = user_data;
	doq_stream_t *st = stream_user_data;

	/* Connection-level credit comes back at once: the per-stream limit
	 * (one message) is what bounds memory. */
	ngtcp2_conn_extend_max_offset(conn, datalen);
	if (!st || st->done)
		return 0;
	bool fin = flags & NGTCP2_STREAM_DATA_FLAG_FIN;
	/* only possible with doq.early_data on (the TLS context refuses
	 * early data otherwise) */
	if (flags & NGTCP2_STREAM_DATA_FLAG_0RTT)
		st->early = true;
	int r = gw_doq_rx_feed(&st->rx, data, datalen, fin);
	if (r == 0)
		return 0;
	if (r == GW_ENOMEM) {
		ngtcp2_conn_shutdown_stream(conn, 0, stream_id,
					    GW_DOQ_INTERNAL_ERROR);
		st->done = true;
		return 0;
	}
	if (r < 0) {
		gw_log(GW_LOG_DEBUG, "doq", "protocol error", "reason",
		       gw_doq_fault_name(st->rx.fault), NULL);
		c->app_error = GW_DOQ_PROTOCOL_ERROR;
		c->app_error_set = true;
		return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	size_t len;
	const uint8_t *msg = gw_doq_rx_msg(&st->rx, &len);
	gw_query_t *q = gw_query_new(
		c->srv->w, GW_PROTO_DOQ, &doq_ops, st,
		(struct sockaddr *)(c->proxied ? &c->client : &c->remote),
		c->proxied ? c->clientlen : c->remotelen);
	if (!q) {
		ngtcp2_conn_shutdown_stream(conn, 0, stream_id,
					    GW_DOQ_INTERNAL_ERROR);
		st->done = true;
		return 0;
	}
	q->client_tag = (uint32_t)stream_id;
	st->q = q;
	c->inflight++;
	atomic_fetch_add(&g_inflight, 1);
	if (gw_doq_early_refused(msg, len, st->early) &&
	    gw_dns_parse(msg, len, &q->msg) == 0) {
		/* RFC 9250 4.5: a replayable 0-RTT message that is not a
		 * plain QUERY is not acted on: Too Early, retry after the
		 * handshake */
		gw_query_answer_local(q, GW_DNS_REFUSED, GW_DNS_EDE_TOO_EARLY,
				      NULL);
	} else {
		gw_query_start(q, msg, len); /* may answer at once */
	}
	gw_doq_rx_deinit(&st->rx);
	return 0;
}

/* Client RESET_STREAM or STOP_SENDING: nobody wants the answer. Abandon the
 * upstream work now (its slot is freed) and close our side too. */
static void stream_abandon(doq_conn_t *c, doq_stream_t *st)
{
	if (!st)
		return;
	stream_cancel_query(st);
	if (!st->done) {
		ngtcp2_conn_shutdown_stream(c->conn, 0, st->id,
					    GW_DOQ_REQUEST_CANCELLED);
		st->done = true;
	}
}

static int cb_stream_reset(ngtcp2_conn *conn, int64_t stream_id,
			   uint64_t final_size, uint64_t app_error_code,
			   void *user_data, void *stream_user_data)
{
	stream_abandon(user_data, stream_user_data);
	return 0;
}

static int cb_stream_stop_sending(ngtcp2_conn *conn, int64_t stream_id,
				  uint64_t app_error_code, void *user_data,
				  void *stream_user_data)
{
	stream_abandon(user_data, stream_user_data);
	return 0;
}

static int cb_stream_close(ngtcp2_conn *conn, uint32_t flags,
			   int64_t stream_id, uint64_t app_error_code,
			   void *user_data, void *stream_user_data)
{
	doq_stream_t *st = stream_user_data;
	if (st)
		stream_free(st);
	/* REQUIREMENTS.md: the limit grows one stream at a time, as streams
	 * close (ngtcp2 never extends it by itself). */
	if (ngtcp2_is_bidi_stream(stream_id))
		ngtcp2_conn_extend_max_streams_bidi(conn, 1);
	return 0;
}

static int cb_extend_max_stream_data(ngtcp2_conn *conn, int64_t stream_id,
				     uint64_t max_data, void *user_data,
				     void *stream_user_data)
{
	doq_stream_t *st = stream_user_data;
	if (st)
		st->blocked = false;
	return 0;
}

static const ngtcp2_callbacks server_callbacks = {
	.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
	.recv_crypto_data = cb_recv_crypto_data,
	.handshake_completed = cb_handshake_completed,
	.encrypt = ngtcp2_crypto_encrypt_cb,
	.decrypt = ngtcp2_crypto_decrypt_cb,
	.hp_mask = ngtcp2_crypto_hp_mask_cb,
	.recv_stream_data = cb_recv_stream_data,
	.stream_open = cb_stream_open,
	.stream_close = cb_stream_close,
	.rand = cb_rand,
	.get_new_connection_id = cb_get_new_cid,
	.remove_connection_id = cb_remove_cid,
	.update_key = ngtcp2_crypto_update_key_cb,
	.stream_reset = cb_stream_reset,
	.extend_max_stream_data = cb_extend_max_stream_data,
	.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
	.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
	.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
	.stream_stop_sending = cb_stream_stop_sending,
	.version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

/* ------------------------------------------------------- connections */

static void conn_free(doq_conn_t *c)
{
	doq_srv_t *s = c->srv;
	gw_worker_t *w = s->w;

	while (c->streams)
		stream_free(c->streams);
	for (unsigned i = 0; i < MAX_CIDS; i++)
		if (c->cids[i].used)
			cid_unlink(s, &c->cids[i]);
	ev_timer_stop(w->loop, &c->timer);
	gw_worker_flush_cancel(w, &c->flush);
	if (!c->handshake_done) {
		s->handshaking--;
		atomic_fetch_sub(&g_handshaking, 1);
		gw_wm_handshake(&w->metrics, GW_PROTO_DOQ, false);
	}
	if (c->over_cap)
		s->overcap--;
	if (c->conn)
		ngtcp2_conn_del(c->conn);
	if (c->ssl)
		wolfSSL_free(c->ssl);
	gw_certs_unref(c->certs);
	free(c->close_pkt);
	if (c->slot) /* the address the slot was taken for */
		gw_connlimit_release(w->connlimit,
				     (struct sockaddr *)&c->client);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	atomic_fetch_sub(&g_conns, 1);
	w->n_conns--;
	gw_wm_conn_close(&w->metrics, GW_PROTO_DOQ);
	free(c);
	/* gauges after every close: the tests check they return to zero */
	char gc[16], gs[16], gi[16];
	snprintf(gc, sizeof(gc), "%u", atomic_load(&g_conns));
	snprintf(gs, sizeof(gs), "%u", atomic_load(&g_streams));
	snprintf(gi, sizeof(gi), "%u", atomic_load(&g_inflight));
	gw_log(GW_LOG_DEBUG, "doq", "connection freed", "conns", gc, "streams",
	       gs, "inflight", gi, NULL);
	gw_worker_check_drained(w);
}

/* A connection in its closing or draining period (RFC 9000 10.2) serves
 * nothing more: its per-client and global slot goes back at once, so a
 * client that opens and closes connections in turn is not refused for the
 * 3 PTO its old ones linger (the state kept is one packet and a timer). */
static void conn_release_slot(doq_conn_t *c)
{
	if (!c->slot)
		return;
	gw_connlimit_release(c->srv->w->connlimit,
			     (struct sockaddr *)&c->client);
	c->slot = false;
}

/* Frees at the next timer callback, outside every handler on the stack. */
static void conn_schedule_free(doq_conn_t *c, const char *why)
{
	if (c->freeing)
		return;
	gw_log(GW_LOG_DEBUG, "doq", "connection done", "reason", why, NULL);
	c->freeing = true;
	/* nobody will read the answers: free the upstream slots now */
	for (doq_stream_t *st = c->streams; st; st = st->next)
		stream_cancel_query(st);
	ev_feed_event(c->srv->w->loop, &c->timer, EV_TIMER);
}

/* Closing period (RFC 9000 10.2.1): keep the CONNECTION_CLOSE packet and
 * repeat it, rate limited, to whatever the peer still sends, for 3 PTO. */
static void conn_enter_closing(doq_conn_t *c, ngtcp2_ccerr *ccerr,
			       const char *why)
{
	doq_srv_t *s = c->srv;
	ngtcp2_path_storage ps;
	ngtcp2_pkt_info pi;
	uint8_t buf[TX_PKT_MAX];

	if (c->closing || c->draining || c->freeing)
		return;
	for (doq_stream_t *st = c->streams; st; st = st->next)
		stream_cancel_query(st);
	ngtcp2_path_storage_zero(&ps);
	c->in_ngtcp2 = true;
	ngtcp2_ssize n = ngtcp2_conn_write_connection_close(
		c->conn, &ps.path, &pi, buf, sizeof(buf), ccerr,
		ts_now(s->w));
	c->in_ngtcp2 = false;
	if (n <= 0) {
		conn_schedule_free(c, why);
		return;
	}
	gw_log(GW_LOG_DEBUG, "doq", "closing connection", "reason", why,
	       NULL);
	c->close_pkt = malloc((size_t)n);
	if (c->close_pkt) {
		memcpy(c->close_pkt, buf, (size_t)n);
		c->close_len = (size_t)n;
	}
	send_one(c->sock, &c->remote, c->remotelen, buf, (size_t)n);
	c->closing = true;
	conn_release_slot(c);
	c->close_sent = 1;
	double now = gw_worker_now(s->w);
	c->close_next = now;
	c->close_until = now + 3.0 * (double)ngtcp2_conn_get_pto(c->conn) / 1e9;
	if (s->w->draining)
		c->close_until = now; /* nothing more to wait for */
	conn_update(c);
}

static void conn_close_app(doq_conn_t *c, uint64_t code, const char *why)
{
	ngtcp2_ccerr ccerr;
	ngtcp2_ccerr_default(&ccerr);
	ngtcp2_ccerr_set_application_error(&ccerr, code, NULL, 0);
	conn_enter_closing(c, &ccerr, why);
}

/* A failed ngtcp2 call: decide how the connection ends. */
static void conn_on_error(doq_conn_t *c, int rv, const char *where)
{
	ngtcp2_ccerr ccerr;
	ngtcp2_ccerr_default(&ccerr);
	switch (rv) {
	case NGTCP2_ERR_DRAINING:
		/* peer sent CONNECTION_CLOSE: stay silent for 3 PTO */
		if (!c->draining) {
			c->draining = true;
			conn_release_slot(c);
			for (doq_stream_t *st = c->streams; st; st = st->next)
				stream_cancel_query(st);
			c->close_until = gw_worker_now(c->srv->w) +
					 3.0 * (double)ngtcp2_conn_get_pto(c->conn) /
						 1e9;
			if (c->srv->w->draining)
				c->close_until = gw_worker_now(c->srv->w);
		}
		conn_update(c);
		return;
	case NGTCP2_ERR_DROP_CONN:
	case NGTCP2_ERR_IDLE_CLOSE:
	case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
		conn_schedule_free(c, ngtcp2_strerror(rv));
		return;
	case NGTCP2_ERR_CALLBACK_FAILURE:
		if (c->app_error_set) {
			conn_close_app(c, c->app_error, "DoQ protocol error");
			return;
		}
		if (c->tls_alert) {
			ngtcp2_ccerr_set_tls_alert(&ccerr, (uint8_t)c->tls_alert,
						   NULL, 0);
			conn_enter_closing(c, &ccerr, "no doq ALPN");
			return;
		}
		break;
	case NGTCP2_ERR_CRYPTO:
		ngtcp2_ccerr_set_tls_alert(
			&ccerr, ngtcp2_conn_get_tls_alert(c->conn), NULL, 0);
		conn_enter_closing(c, &ccerr, "TLS error");
		return;
	default:
		break;
	}
	ngtcp2_ccerr_set_liberr(&ccerr, rv, NULL, 0);
	conn_enter_closing(c, &ccerr, where);
}

static doq_stream_t *next_sendable(doq_conn_t *c, doq_stream_t *from)
{
	for (doq_stream_t *st = from; st; st = st->next)
		if (st->out && !st->fin_sent && !st->blocked && !st->done)
			return st;
	return NULL;
}

static void conn_write(doq_conn_t *c)
{
	doq_srv_t *s = c->srv;
	ngtcp2_tstamp ts = ts_now(s->w);
	ngtcp2_path_storage ps;
	ngtcp2_pkt_info pi;

	if (c->closing || c->draining || c->freeing)
		return;
	ngtcp2_path_storage_zero(&ps);
	size_t max = ngtcp2_conn_get_max_tx_udp_payload_size(c->conn);
	if (max > TX_PKT_MAX)
		max = TX_PKT_MAX;
	s->tn = 0;
	size_t off = 0;
	doq_stream_t *st = next_sendable(c, c->streams);
	c->in_ngtcp2 = true;
	for (;;) {
		ngtcp2_vec v;
		ngtcp2_ssize ndata = -1;
		int64_t sid = -1;
		uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
		size_t vcnt = 0;
		if (st) {
			sid = st->id;
			v.base = st->out + st->out_sent;
			v.len = st->out_len - st->out_sent;
			vcnt = 1;
			flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
		}
		ngtcp2_ssize n = ngtcp2_conn_writev_stream(
			c->conn, &ps.path, &pi, s->tbuf + off, max, &ndata,
			flags, sid, vcnt ? &v : NULL, vcnt, ts);
		if (st && ndata >= 0) {
			st->out_sent += (size_t)ndata;
			if (st->out_sent == st->out_len)
				st->fin_sent = true;
		}
		if (n < 0) {
			if (n == NGTCP2_ERR_WRITE_MORE) {
				st = next_sendable(c, st);
				continue;
			}
			if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED && st) {
				/* tiny client window: wait for
				 * MAX_STREAM_DATA (extend_max_stream_data) */
				st->blocked = true;
				st = next_sendable(c, st);
				continue;
			}
			if (n == NGTCP2_ERR_STREAM_SHUT_WR && st) {
				st->done = true;
				st = next_sendable(c, st);
				continue;
			}
			c->in_ngtcp2 = false;
			send_batch(c->sock, &c->remote, c->remotelen);
			conn_on_error(c, (int)n, "write failed");
			return;
		}
		if (st && st->fin_sent)
			st = next_sendable(c, st);
		if (n == 0)
			break;
		if (ps.path.remote.addrlen != c->remotelen ||
		    memcmp(ps.path.remote.addr, &c->remote, c->remotelen)) {
			/* path validation probe to another address (RFC
			 * 9000 9): not part of the batch */
			struct sockaddr_storage to;
			socklen_t tolen = ps.path.remote.addrlen;
			if (tolen <= sizeof(to)) {
				memcpy(&to, ps.path.remote.addr, tolen);
				send_one(c->sock, &to, tolen, s->tbuf + off,
					 (size_t)n);
			}
			continue;
		}
		s->tlen[s->tn++] = (size_t)n;
		off += (size_t)n;
		if (s->tn == TX_PKTS) {
			send_batch(c->sock, &c->remote, c->remotelen);
			off = 0;
		}
	}
	c->in_ngtcp2 = false;
	send_batch(c->sock, &c->remote, c->remotelen);
	ngtcp2_conn_update_pkt_tx_time(c->conn, ts);
}

/* The earliest of ngtcp2's expiry and our own stream deadlines. */
static double conn_deadline(doq_conn_t *c, bool *reap)
{
	gw_worker_t *w = c->srv->w;
	*reap = false;
	if (c->closing || c->draining)
		return c->close_until;
	ngtcp2_tstamp e = ngtcp2_conn_get_expiry(c->conn);
	double d = e == UINT64_MAX ? INFINITY : (double)e / 1e9;
	double st_to = w->conf->doq.stream_timeout_ms / 1000.0;
	for (doq_stream_t *st = c->streams; st; st = st->next) {
		/* a stream that never finished its query (no FIN) */
		if (!st->q && !st->out && !st->done &&
		    st->t_open + st_to < d) {
			d = st->t_open + st_to;
			*reap = true;
		}
	}
	return d;
}

/* gw_worker_flush: what this loop iteration gave the connection to send
 * leaves in as few packets and sends as it fills. */
static void on_flush(gw_flush_t *f)
{
	doq_conn_t *c = (doq_conn_t *)((char *)f - offsetof(doq_conn_t, flush));
	conn_write(c);
	conn_update(c);
}

static void conn_update(doq_conn_t *c)
{
	gw_worker_t *w = c->srv->w;
	if (c->freeing)
		return;
	if (!c->closing && !c->draining && w->draining && c->inflight == 0 &&
	    c->handshake_done) {
		bool pending = false;
		for (doq_stream_t *st = c->streams; st; st = st->next)
			pending |= st->out && !st->fin_sent && !st->done;
		if (!pending) {
			/* SIGTERM: in-flight work done, say goodbye */
			conn_close_app(c, GW_DOQ_NO_ERROR, "draining");
			return;
		}
	}
	bool reap;
	double d = conn_deadline(c, &reap);
	ev_timer_stop(w->loop, &c->timer);
	if (isfinite(d)) {
		double after = d - gw_worker_now(w);
		ev_timer_set(&c->timer, after > 0 ? after : 0, 0);
		ev_timer_start(w->loop, &c->timer);
	}
}

static void on_conn_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	doq_conn_t *c = t->data;
	gw_worker_t *w = c->srv->w;
	double now = gw_worker_now(w);

	if (c->freeing) {
		conn_free(c);
		return;
	}
	if (c->closing || c->draining) {
		if (now >= c->close_until - 0.0005) {
			conn_free(c);
			return;
		}
		conn_update(c);
		return;
	}
	bool reap;
	double d = conn_deadline(c, &reap);
	if (reap && d <= now + 0.0005) {
		double st_to = w->conf->doq.stream_timeout_ms / 1000.0;
		for (doq_stream_t *st = c->streams; st; st = st->next) {
			if (!st->q && !st->out && !st->done &&
			    st->t_open + st_to <= now + 0.0005) {
				gw_log(GW_LOG_DEBUG, "doq",
				       "dangling stream reaped", NULL);
				ngtcp2_conn_shutdown_stream(
					c->conn, 0, st->id,
					GW_DOQ_REQUEST_CANCELLED);
				st->done = true;
			}
		}
	}
	c->in_ngtcp2 = true;
	int rv = ngtcp2_conn_handle_expiry(c->conn, ts_now(w));
	c->in_ngtcp2 = false;
	if (rv != 0) {
		conn_on_error(c, rv, "timer");
		return;
	}
	conn_write(c);
	conn_update(c);
}

static int conn_new(doq_sock_t *k, const ngtcp2_pkt_hd *hd,
		    const struct sockaddr_storage *remote, socklen_t remotelen,
		    const struct sockaddr_storage *client, socklen_t clientlen,
		    const ngtcp2_cid *ocid, bool validated, bool slot,
		    doq_conn_t **out)
{
	doq_srv_t *s = k->srv;
	gw_worker_t *w = s->w;
	const gw_conf_t *conf = w->conf;
	doq_conn_t *c = calloc(1, sizeof(*c));
	if (!c)
		return GW_ENOMEM;
	c->srv = s;
	c->sock = k;
	c->flush.fn = on_flush;
	memcpy(&c->remote, remote, remotelen);
	c->remotelen = remotelen;
	memcpy(&c->client, client, clientlen);
	c->clientlen = clientlen;
	c->proxied = client != remote;
	c->slot = slot;
	c->over_cap = !slot;
	c->t_start = gw_worker_now(w);
	c->certs = gw_certs_ref(k->l->certs);
	c->conn_ref.get_conn = get_conn;
	c->conn_ref.user_data = c;
	ev_init(&c->timer, on_conn_timer);
	c->timer.data = c;
	/* counted before anything can fail, so conn_free balances */
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	s->handshaking++;
	if (c->over_cap)
		s->overcap++;
	atomic_fetch_add(&g_conns, 1);
	atomic_fetch_add(&g_handshaking, 1);
	w->n_conns++;
	gw_wm_conn_open(&w->metrics, GW_PROTO_DOQ);

	ngtcp2_cid scid;
	scid.datalen = SCID_LEN;
	do
		fast_random(scid.data, SCID_LEN);
	while (cid_find(s, scid.data, SCID_LEN));

	ngtcp2_settings settings;
	ngtcp2_settings_default(&settings);
	settings.initial_ts = ts_now(w);
	settings.handshake_timeout = HANDSHAKE_TIMEOUT;
	settings.max_tx_udp_payload_size = TX_PKT_MAX;
	settings.max_window = 1 << 20;
	settings.max_stream_window = 65537 + 16;
	if (hd->tokenlen && validated) {
		settings.token = hd->token;
		settings.tokenlen = hd->tokenlen;
		settings.token_type = NGTCP2_TOKEN_TYPE_RETRY;
	}

	ngtcp2_transport_params params;
	ngtcp2_transport_params_default(&params);
	uint32_t maxs = conf->doq.max_streams;
	/* at 90% of the global cap: fewer streams before refusing */
	if (gw_connlimit_total(w->connlimit) * 10 >=
	    conf->limits.max_conns * 9 && maxs > 4)
		maxs = 4;
	params.initial_max_streams_bidi = maxs;
	params.initial_max_streams_uni = 0; /* RFC 9250 4.2 */
	/* one whole query per stream: 2 + 65535 bytes */
	params.initial_max_stream_data_bidi_remote = 65537;
	params.initial_max_stream_data_bidi_local = 0;
	params.initial_max_stream_data_uni = 0;
	params.initial_max_data = (uint64_t)maxs * 65537;
	params.max_idle_timeout =
		(ngtcp2_duration)conf->doq.idle_timeout_ms * NGTCP2_MILLISECONDS;
	params.active_connection_id_limit = 4;
	params.stateless_reset_token_present = 1;
	if (ngtcp2_crypto_generate_stateless_reset_token(
		    params.stateless_reset_token, g_secret, sizeof(g_secret),
		    &scid) != 0)
		goto fail;
	if (ocid) {
		/* RFC 9000 7.3: after a Retry, the original DCID and the
		 * Retry's SCID (the client's current DCID) */
		params.original_dcid = *ocid;
		params.retry_scid = hd->dcid;
		params.retry_scid_present = 1;
	} else {
		params.original_dcid = hd->dcid;
	}
	params.original_dcid_present = 1;

	ngtcp2_path path = {
		.local = {.addr = (ngtcp2_sockaddr *)&k->local,
			  .addrlen = k->locallen},
		.remote = {.addr = (ngtcp2_sockaddr *)&c->remote,
			   .addrlen = c->remotelen},
	};
	if (ngtcp2_conn_server_new(&c->conn, &hd->scid, &scid, &path,
				   hd->version, &server_callbacks, &settings,
				   &params, NULL, c) != 0) {
		c->conn = NULL;
		goto fail;
	}
	c->ssl = wolfSSL_new(gw_certs_ctx(c->certs));
	if (!c->ssl)
		goto fail;
	wolfSSL_set_app_data(c->ssl, &c->conn_ref);
	wolfSSL_set_accept_state(c->ssl);
	wolfSSL_set_quic_transport_version(c->ssl, 0x39 /* RFC 9001 */);
	ngtcp2_conn_set_tls_native_handle(c->conn, c->ssl);
	if (cid_add(c, scid.data, scid.datalen) < 0 ||
	    cid_add(c, hd->dcid.data, hd->dcid.datalen) < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	c->slot = slot; /* conn_free releases it */
	conn_free(c);
	return GW_ENOMEM;
}

/* The handshake is done and its last TLS output (the session ticket) is
 * with ngtcp2, which keeps and resends it: nothing calls into TLS again
 * (cb_recv_crypto_data), so the TLS object and its buffers go, about 20 KiB
 * of an idle connection's memory. Keys live on in ngtcp2. */
static void tls_done(doq_conn_t *c)
{
	ngtcp2_conn_set_tls_native_handle(c->conn, NULL);
	wolfSSL_free(c->ssl);
	c->ssl = NULL;
}

/* One datagram for a known connection. */
static void conn_recv(doq_conn_t *c, const uint8_t *data, size_t len,
		      const struct sockaddr_storage *remote, socklen_t rlen)
{
	gw_worker_t *w = c->srv->w;
	if (c->freeing || c->draining)
		return;
	if (c->closing) {
		/* RFC 9000 10.2.1: answer with the same CONNECTION_CLOSE,
		 * with exponential back-off */
		double now = gw_worker_now(w);
		if (c->close_pkt && now >= c->close_next) {
			send_one(c->sock, remote, rlen, c->close_pkt,
				 c->close_len);
			c->close_sent++;
			c->close_next = now + 0.01 * (1u << (c->close_sent < 10
							       ? c->close_sent
							       : 10));
		}
		return;
	}
	ngtcp2_path path = {
		.local = {.addr = (ngtcp2_sockaddr *)&c->sock->local,
			  .addrlen = c->sock->locallen},
		.remote = {.addr = (ngtcp2_sockaddr *)remote,
			   .addrlen = rlen},
	};
	ngtcp2_pkt_info pi = {0};
	c->in_ngtcp2 = true;
	int rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, data, len,
				      ts_now(w));
	c->in_ngtcp2 = false;
	if (rv != 0) {
		conn_on_error(c, rv, "read failed");
		return;
	}
	/* A validated migration: answers go to the new address. */
	const ngtcp2_path *cur = ngtcp2_conn_get_path(c->conn);
	if (cur->remote.addrlen <= sizeof(c->remote) &&
	    (cur->remote.addrlen != c->remotelen ||
	     memcmp(cur->remote.addr, &c->remote, c->remotelen) != 0)) {
		memcpy(&c->remote, cur->remote.addr, cur->remote.addrlen);
		c->remotelen = cur->remote.addrlen;
	}
	if (c->over_cap && c->handshake_done) {
		/* RFC 9250 4.3: tell the client why, now that it can read
		 * an application close */
		conn_close_app(c, GW_DOQ_EXCESSIVE_LOAD, "connection cap");
		return;
	}
	if (c->ssl && c->handshake_done)
		tls_done(c);
	/* ACKs and answers go out once the batch read is done */
	gw_worker_flush(w, &c->flush);
}

/* ------------------------------------------------ packets without a conn */

static bool reset_allowed(doq_srv_t *s)
{
	double now = gw_worker_now(s->w);
	if (now - s->reset_window >= 1.0) {
		s->reset_window = now;
		s->reset_count = 0;
	}
	return s->reset_count++ < RESET_PER_SEC;
}

/* RFC 9000 10.3: an unknown short-header packet gets a stateless reset,
 * smaller than what triggered it (so two servers cannot loop), rate
 * limited. */
static void send_stateless_reset(doq_sock_t *k, const ngtcp2_version_cid *vc,
				 const struct sockaddr_storage *remote,
				 socklen_t rlen, size_t len)
{
	uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN];
	uint8_t rnd[64], buf[128];
	ngtcp2_cid cid;

	if (len <= 1 + NGTCP2_STATELESS_RESET_TOKENLEN +
			   NGTCP2_MIN_STATELESS_RESET_RANDLEN + 1 ||
	    !reset_allowed(k->srv))
		return;
	size_t randlen = len - 1 - NGTCP2_STATELESS_RESET_TOKENLEN - 1;
	if (randlen > sizeof(rnd))
		randlen = sizeof(rnd);
	ngtcp2_cid_init(&cid, vc->dcid, vc->dcidlen);
	if (ngtcp2_crypto_generate_stateless_reset_token(
		    token, g_secret, sizeof(g_secret), &cid) != 0)
		return;
	fast_random(rnd, randlen);
	ngtcp2_ssize n = ngtcp2_pkt_write_stateless_reset(buf, sizeof(buf),
							  token, rnd, randlen);
	if (n > 0) {
		send_one(k, remote, rlen, buf, (size_t)n);
		atomic_fetch_add(&g_resets, 1);
	}
}

static void send_version_negotiation(doq_sock_t *k,
				     const ngtcp2_version_cid *vc,
				     const struct sockaddr_storage *remote,
				     socklen_t rlen)
{
	static const uint32_t sv[] = {NGTCP2_PROTO_VER_V1,
				      NGTCP2_PROTO_VER_V2};
	uint8_t buf[256], r;
	if (!reset_allowed(k->srv))
		return;
	fast_random(&r, 1);
	ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(
		buf, sizeof(buf), r, vc->scid, vc->scidlen, vc->dcid,
		vc->dcidlen, sv, sizeof(sv) / sizeof(sv[0]));
	if (n > 0) {
		send_one(k, remote, rlen, buf, (size_t)n);
		atomic_fetch_add(&g_vn, 1);
	}
}

/* The token is bound to client (the address the policy judges: behind a
 * proxy, the one its header names, so that a token fetched for one client
 * does not admit others through the same proxy); the Retry goes to remote. */
static void send_retry(doq_sock_t *k, const ngtcp2_pkt_hd *hd,
		       const struct sockaddr_storage *remote, socklen_t rlen,
		       const struct sockaddr_storage *client, socklen_t clen)
{
	uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN2];
	uint8_t buf[TX_PKT_MAX];
	ngtcp2_cid scid;

	scid.datalen = SCID_LEN;
	fast_random(scid.data, SCID_LEN);
	ngtcp2_ssize tl = ngtcp2_crypto_generate_retry_token2(
		token, g_secret, sizeof(g_secret), hd->version,
		(const ngtcp2_sockaddr *)client, clen, &scid, &hd->dcid,
		ts_now(k->srv->w));
	if (tl < 0)
		return;
	ngtcp2_ssize n = ngtcp2_crypto_write_retry(buf, sizeof(buf),
						   hd->version, &hd->scid,
						   &scid, &hd->dcid, token,
						   (size_t)tl);
	if (n > 0) {
		send_one(k, remote, rlen, buf, (size_t)n);
		atomic_fetch_add(&g_retries, 1);
	}
}

/* Stateless refusal: an Initial-level CONNECTION_CLOSE without any state
 * (used when even an over-cap handshake would cost too much). */
static void send_refusal(doq_sock_t *k, const ngtcp2_pkt_hd *hd,
			 const struct sockaddr_storage *remote, socklen_t rlen,
			 uint64_t code)
{
	uint8_t buf[TX_PKT_MAX];
	/* keys come from the client's DCID, which doubles as our SCID */
	ngtcp2_ssize n = ngtcp2_crypto_write_connection_close(
		buf, sizeof(buf), hd->version, &hd->scid, &hd->dcid, code,
		NULL, 0);
	if (n > 0)
		send_one(k, remote, rlen, buf, (size_t)n);
}

/* remote: the socket peer (packets go back there); client: the address
 * the policy judges (remote, or the client a trusted proxy names). */
static void handle_new(doq_sock_t *k, const uint8_t *data, size_t len,
		       const struct sockaddr_storage *remote, socklen_t rlen,
		       const struct sockaddr_storage *client, socklen_t clen)
{
	doq_srv_t *s = k->srv;
	gw_worker_t *w = s->w;
	const gw_conf_t *conf = w->conf;
	ngtcp2_pkt_hd hd;

	if (w->draining)
		return; /* no new connections while draining */
	/* RFC 9000 14.1: a client Initial travels in a datagram of at least
	 * 1200 bytes; smaller ones are dropped before any work. */
	if (len < 1200) {
		atomic_fetch_add(&g_dropped, 1);
		return;
	}
	if (ngtcp2_accept(&hd, data, len) != 0 ||
	    hd.type != NGTCP2_PKT_INITIAL) {
		atomic_fetch_add(&g_dropped, 1);
		return;
	}
	/* ACL at the first Initial: dropped, no CONNECTION_CLOSE, so a
	 * denied (or spoofed) source gets nothing back (docs/policy.md) */
	if (!gw_policy_admit_dgram(k->l, (const struct sockaddr *)client)) {
		atomic_fetch_add(&g_dropped, 1);
		return;
	}

	ngtcp2_cid ocid;
	const ngtcp2_cid *pocid = NULL;
	bool validated = false;
	ngtcp2_tstamp ts = ts_now(w);
	if (hd.tokenlen > 0 && hd.token[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY2) {
		/* RFC 9000 8.1.2: the token proves the address; it is bound to
		 * the client address and expires after 60 s. */
		if (ngtcp2_crypto_verify_retry_token2(
			    &ocid, hd.token, hd.tokenlen, g_secret,
			    sizeof(g_secret), hd.version,
			    (const ngtcp2_sockaddr *)client, clen, &hd.dcid,
			    RETRY_TOKEN_TIMEOUT, ts) != 0) {
			/* 8.1.3: a bad Retry token closes with INVALID_TOKEN */
			send_refusal(k, &hd, remote, rlen,
				     NGTCP2_INVALID_TOKEN);
			atomic_fetch_add(&g_dropped, 1);
			return;
		}
		pocid = &ocid;
		validated = true;
	}
	bool want_retry = conf->doq.retry == GW_DOQ_RETRY_ALWAYS ||
			  (conf->doq.retry == GW_DOQ_RETRY_AUTO &&
			   s->handshaking >= conf->doq.retry_threshold);
	if (!validated && want_retry) {
		send_retry(k, &hd, remote, rlen, client, clen);
		return;
	}
	/* new connections per second: counted once the address is proven
	 * or no Retry is asked for, so a Retry round trip counts once */
	if (!gw_policy_admit_conn(k->l, (const struct sockaddr *)client)) {
		atomic_fetch_add(&g_dropped, 1);
		return;
	}
	bool slot = gw_connlimit_acquire(w->connlimit,
					 (const struct sockaddr *)client);
	if (!slot) /* refused with EXCESSIVE_LOAD or CONNECTION_REFUSED */
		gw_wm_refusal(&w->metrics, GW_PROTO_DOQ, GW_WM_REFUSE_CONN_CAP);
	if (!slot && s->overcap >= OVERCAP_MAX) {
		send_refusal(k, &hd, remote, rlen, NGTCP2_CONNECTION_REFUSED);
		return;
	}
	doq_conn_t *c;
	if (conn_new(k, &hd, remote, rlen, client, clen, pocid, validated,
		     slot, &c) < 0)
		return;
	conn_recv(c, data, len, remote, rlen);
}

static void handle_datagram(doq_sock_t *k, const uint8_t *data, size_t len,
			    const struct sockaddr_storage *remote,
			    socklen_t rlen,
			    const struct sockaddr_storage *client,
			    socklen_t clen)
{
	doq_srv_t *s = k->srv;
	ngtcp2_version_cid vc;

	int rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, SCID_LEN);
	if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
		send_version_negotiation(k, &vc, remote, rlen);
		return;
	}
	if (rv != 0)
		return;
	doq_conn_t *c = cid_find(s, vc.dcid, vc.dcidlen);
	if (c) {
		conn_recv(c, data, len, remote, rlen);
		return;
	}
	if (data[0] & 0x80)
		handle_new(k, data, len, remote, rlen, client, clen);
	else
		send_stateless_reset(k, &vc, remote, rlen, len);
}

static void on_sock_read(struct ev_loop *loop, ev_io *io, int revents)
{
	doq_sock_t *k = io->data;
	doq_srv_t *s = k->srv;

	/* A few batches per wake-up, then let timers and other sockets run. */
	for (int round = 0; round < 4; round++) {
		for (unsigned i = 0; i < RX_BATCH; i++) {
			s->riov[i].iov_base = s->rbuf + (size_t)i * RX_BUF;
			s->riov[i].iov_len = RX_BUF;
			memset(&s->rmsg[i].msg_hdr, 0,
			       sizeof(s->rmsg[i].msg_hdr));
			s->rmsg[i].msg_hdr.msg_name = &s->raddr[i];
			s->rmsg[i].msg_hdr.msg_namelen = sizeof(s->raddr[i]);
			s->rmsg[i].msg_hdr.msg_iov = &s->riov[i];
			s->rmsg[i].msg_hdr.msg_iovlen = 1;
		}
		int n = recvmmsg(k->fd, s->rmsg, RX_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return;
		for (int i = 0; i < n; i++) {
			const uint8_t *d = s->riov[i].iov_base;
			size_t dlen = s->rmsg[i].msg_len;
			socklen_t rlen = s->rmsg[i].msg_hdr.msg_namelen;
			if (s->rmsg[i].msg_hdr.msg_flags & MSG_TRUNC)
				continue;
			if (!k->proxy) {
				handle_datagram(k, d, dlen, &s->raddr[i], rlen,
						&s->raddr[i], rlen);
				continue;
			}
			/* PROXY v2 per datagram (docs/policy.md): ngtcp2
			 * sees the payload, the path stays the proxy's */
			struct sockaddr_storage client;
			socklen_t clen;
			int hl = gw_policy_proxy_dgram(k->l, d, dlen,
						       &s->raddr[i], &client,
						       &clen);
			if (hl < 0)
				continue;
			if (hl == 0) /* not from a trusted proxy: plain */
				handle_datagram(k, d, dlen, &s->raddr[i], rlen,
						&s->raddr[i], rlen);
			else if ((size_t)hl < dlen)
				handle_datagram(k, d + hl, dlen - (size_t)hl,
						&s->raddr[i], rlen, &client,
						clen);
		}
		if (n < RX_BATCH)
			return;
	}
}

/* ------------------------------------------------------ listener ops */

static doq_srv_t *srv_get(gw_worker_t *w)
{
	if (tls_srv)
		return tls_srv;
	pthread_once(&g_secret_once, make_secret);
	doq_srv_t *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->rbuf = malloc((size_t)RX_BATCH * RX_BUF);
	if (!s->rbuf) {
		free(s);
		return NULL;
	}
	s->w = w;
	fast_random((uint8_t *)&s->hash_key, sizeof(s->hash_key));
	tls_srv = s;
	return s;
}

static int doq_listener_start(gw_listener_t *l)
{
	gw_worker_t *w = l->worker;
	if (!l->certs || !gw_certs_is_quic(l->certs)) {
		gw_log(GW_LOG_ERROR, "doq", "listener has no QUIC TLS context",
		       "url", l->ep->url, NULL);
		return GW_EINVAL;
	}
	doq_srv_t *s = srv_get(w);
	if (!s || s->nsocks == MAX_DOQ_LISTENERS)
		return GW_ENOMEM;
	doq_sock_t *k = &s->socks[s->nsocks];
	k->fd = dup(l->fd);
	if (k->fd < 0)
		return -errno;
	s->nsocks++;
	k->srv = s;
	k->l = l;
	/* policy.proxy_protocol needs a restart to change: decided once */
	k->proxy = gw_policy_proxy_listener(w->conf, l->ep);
	k->locallen = sizeof(k->local);
	getsockname(k->fd, (struct sockaddr *)&k->local, &k->locallen);
	int seg = 1200;
	k->gso = setsockopt(k->fd, SOL_UDP, UDP_SEGMENT, &seg, sizeof(seg)) == 0;
	if (k->gso) {
		seg = 0; /* per-send segment size via cmsg only */
		setsockopt(k->fd, SOL_UDP, UDP_SEGMENT, &seg, sizeof(seg));
	}
	/* The worker's l->io stays unused; we read our dup so that drain
	 * (which closes l->fd) does not cut live connections off. */
	ev_io_init(&k->io, on_sock_read, k->fd, EV_READ);
	k->io.data = k;
	ev_io_start(w->loop, &k->io);
	return 0;
}

static void doq_drain(gw_worker_t *w)
{
	doq_srv_t *s = tls_srv;
	if (!s)
		return;
	for (doq_conn_t *c = s->conns, *n; c; c = n) {
		n = c->next;
		if (!c->handshake_done && !c->closing && !c->draining)
			conn_schedule_free(c, "draining");
		else
			conn_update(c);
	}
}

static void doq_close_all(gw_worker_t *w)
{
	doq_srv_t *s = tls_srv;
	if (!s)
		return;
	while (s->conns)
		conn_free(s->conns);
	for (unsigned i = 0; i < s->nsocks; i++) {
		ev_io_stop(w->loop, &s->socks[i].io);
		close(s->socks[i].fd);
	}
	free(s->rbuf);
	free(s);
	tls_srv = NULL;
	if (tls_rng) {
		wc_FreeRng(tls_rng);
		free(tls_rng);
		tls_rng = NULL;
	}
}

const gw_listener_ops_t gw_doq_listener_ops = {
	.start = doq_listener_start,
	.drain = doq_drain,
	.close_all = doq_close_all,
};

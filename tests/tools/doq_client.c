/*
 * doq_client.c - a DNS-over-QUIC client for tests and benchmarks, on ngtcp2
 * and wolfSSL like the server, that can also misbehave on purpose.
 *
 *   doq_client -s ADDR -p PORT [-c CASE] [-n QUERIES] [-q NAME] [-C CONNS]
 *              [-S STREAMS] [-d SECONDS] [-w WINDOW] [-a ALPN] [-t TIMEOUT]
 *              [-b SRC] [-P CLIENT]
 *
 * -b binds the sockets to source address SRC. -P plays a UDP load balancer
 * speaking PROXY protocol v2: every datagram sent starts with a header
 * (proxy-protocol.txt 2.2, command PROXY, UDP over IPv4 or IPv6) naming
 * CLIENT (port 4433) as the client; answers come back bare. CLIENT+ (a
 * trailing plus) names a client per connection: CLIENT's last byte plus
 * the connection's index.
 *
 * Cases (-c): normal, nonzero-id, early-fin, extra-data, two-queries,
 * keepalive, reset, stop-sending, split-prefix, one-byte, tiny-window,
 * dangling, uni, bad-alpn, amplify, streams, bench, handshakes, idle,
 * post-crypto (after the handshake, one query, then a TLS KeyUpdate in a
 * 1-RTT CRYPTO frame, which RFC 9001 6 forbids; the server must close).
 *
 * Prints one JSON object per connection (close codes, answers, stream
 * resets, bytes) and, for bench/handshakes/idle, one summary line. idle
 * completes -C handshakes, prints {"idle_ready":...} with the number
 * established (flushed, so a script can sample the server's memory then),
 * holds them -d seconds sending nothing, and reports how many survived.
 * early resumes a first connection's TLS session and sends its query with
 * opcode -o (0 QUERY, 4 NOTIFY, ...) in 0-RTT on a second one; it prints
 * the second connection with resumed/early_sent/early_rejected and the
 * answer's rcode and Extended DNS Error (-1 when none). Everything is
 * on loopback; no certificate is verified (the tests want the gateway's
 * behaviour, not PKI).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_wolfssl.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/random.h>

#define MAX_STREAMS 256
#define MAX_CONNS 4096

enum kase {
	K_NORMAL, K_NONZERO_ID, K_EARLY_FIN, K_EXTRA, K_TWO, K_KEEPALIVE,
	K_RESET, K_STOP, K_SPLIT, K_ONEBYTE, K_TINYWIN, K_DANGLING, K_UNI,
	K_BADALPN, K_AMPLIFY, K_STREAMS, K_BENCH, K_HANDSHAKES, K_IDLE,
	K_EARLY, K_POSTCRYPTO,
};
static const char *const kase_names[] = {
	"normal", "nonzero-id", "early-fin", "extra-data", "two-queries",
	"keepalive", "reset", "stop-sending", "split-prefix", "one-byte",
	"tiny-window", "dangling", "uni", "bad-alpn", "amplify", "streams",
	"bench", "handshakes", "idle", "early", "post-crypto",
};

static struct {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	enum kase kase;
	int queries;
	const char *name;
	const char *slow_name;
	int conns;
	int streams;
	double duration;
	uint64_t window;
	const char *alpn;
	double timeout;
	int opcode; /* -o: DNS opcode of the queries (0 QUERY) */
	struct sockaddr_storage bind; /* -b, ss_family 0 when not given */
	uint8_t proxy_hdr[16 + 36];   /* -P: the header every datagram gets */
	size_t proxy_len;
	bool proxy_inc;               /* -P CLIENT+: one client per connection */
} opt = {.queries = 1, .name = "example.test", .slow_name =
	 "slow-2000.example.test", .conns = 1, .streams = 1,
	 .duration = 5, .window = 0, .alpn = "doq", .timeout = 10};

static WOLFSSL_CTX *ctx;
/* early: the first connection's session and remembered transport
 * parameters (RFC 9000 7.4.1), used by conn_new() when set */
static WOLFSSL_SESSION *resume_sess;
static uint8_t tp0[512];
static size_t tp0len;
static WC_RNG rng;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static ngtcp2_tstamp now_ts(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NGTCP2_SECONDS + (uint64_t)ts.tv_nsec;
}

typedef struct cstream {
	int64_t id;
	uint8_t out[2 * 600];
	size_t len, sent;
	bool fin;           /* send FIN after out */
	bool fin_sent;
	size_t chunk;       /* bytes per STREAM frame (0: as many as fit) */
	uint8_t in[65540];
	size_t inlen;
	double t0;
	bool closed;
	bool answered;
	bool slow;
	bool early; /* some of the query left before the handshake ended */
} cstream_t;

typedef struct cconn {
	int idx;
	int fd;
	ngtcp2_conn *conn;
	WOLFSSL *ssl;
	ngtcp2_crypto_conn_ref ref;
	struct sockaddr_storage local;
	socklen_t locallen;
	cstream_t *st[MAX_STREAMS];
	int nst;
	int sent_queries, answers, bad_answers;
	bool handshake, retry, done, closed_by_us;
	int close_type; /* 0 none, 1 transport, 2 application, 3 idle */
	uint64_t close_code;
	char resets[2048];
	size_t resets_len;
	uint64_t bytes_sent, bytes_recv;
	double t_start, t_hs, t_action, t_last;
	int phase;
	bool early_rejected;
	int rcode, ede; /* last answer's; -1 until known / without EDE */
	int max_open, open_now;
	int64_t uni_limit;
	int uni_rv;
	/* bench latency samples */
	double *lat;
	size_t nlat, caplat;
} cconn_t;

static cconn_t *conns[MAX_CONNS];
static unsigned long total_handshakes;
static double g_t0; /* start of the run: bench's deadline is global */

static void rnd(uint8_t *p, size_t n) { wc_RNG_GenerateBlock(&rng, p, (word32)n); }

/* --------------------------------------------------------- DNS bits */

/* opt_code: -1 no OPT record, -2 an OPT record without options (EDNS, so
 * an Extended DNS Error can come back), else an OPT with that option
 * code and no value. */
static size_t make_query(uint8_t *out, const char *name, uint16_t id,
			 int opt_code)
{
	size_t n = 0;
	out[n++] = (uint8_t)(id >> 8);
	out[n++] = (uint8_t)id;
	/* opcode (RFC 1035 4.1.1); RD only on a QUERY */
	out[n++] = (uint8_t)(opt.opcode << 3 | (opt.opcode == 0 ? 0x01 : 0));
	out[n++] = 0;
	out[n++] = 0; out[n++] = 1; /* QD */
	out[n++] = 0; out[n++] = 0;
	out[n++] = 0; out[n++] = 0;
	out[n++] = 0; out[n++] = opt_code != -1 ? 1 : 0;
	const char *p = name;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		out[n++] = (uint8_t)l;
		memcpy(out + n, p, l);
		n += l;
		p += l;
		if (*p == '.')
			p++;
	}
	out[n++] = 0;
	out[n++] = 0; out[n++] = 1; /* A */
	out[n++] = 0; out[n++] = 1; /* IN */
	if (opt_code == -2) {
		static const uint8_t rr[] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0,
					     0, 0};
		memcpy(out + n, rr, sizeof(rr));
		n += sizeof(rr);
	} else if (opt_code >= 0) {
		static const uint8_t rr[] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0};
		memcpy(out + n, rr, sizeof(rr));
		n += sizeof(rr);
		out[n++] = 0;
		out[n++] = 4;
		out[n++] = (uint8_t)(opt_code >> 8);
		out[n++] = (uint8_t)opt_code;
		out[n++] = 0;
		out[n++] = 0;
	}
	return n;
}

/* ------------------------------------------------------ ngtcp2 glue */

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
	return ((cconn_t *)ref->user_data)->conn;
}

static void cb_rand(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *c)
{
	rnd(dest, len);
}

static int cb_new_cid(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token,
		      size_t cidlen, void *u)
{
	rnd(cid->data, cidlen);
	cid->datalen = cidlen;
	rnd(token, NGTCP2_STATELESS_RESET_TOKENLEN);
	return 0;
}

static int cb_handshake_completed(ngtcp2_conn *conn, void *u)
{
	cconn_t *c = u;
	c->handshake = true;
	c->t_hs = now_s();
	total_handshakes++;
	return 0;
}

static int cb_recv_retry(ngtcp2_conn *conn, const ngtcp2_pkt_hd *hd, void *u)
{
	((cconn_t *)u)->retry = true;
	return ngtcp2_crypto_recv_retry_cb(conn, hd, u);
}

static cstream_t *find_stream(cconn_t *c, int64_t id)
{
	for (int i = 0; i < c->nst; i++)
		if (c->st[i] && c->st[i]->id == id)
			return c->st[i];
	return NULL;
}

/* Skips a (possibly compressed) name; returns the offset after it or 0. */
static size_t skip_name(const uint8_t *m, size_t len, size_t i)
{
	while (i < len) {
		if ((m[i] & 0xc0) == 0xc0)
			return i + 2 <= len ? i + 2 : 0;
		if (m[i] == 0)
			return i + 1;
		i += 1 + m[i];
	}
	return 0;
}

/* The answer's RCODE and first Extended DNS Error info-code (RFC 8914). */
static void parse_answer(cconn_t *c, const uint8_t *m, size_t len)
{
	c->rcode = len >= 12 ? m[3] & 0xf : -1;
	c->ede = -1;
	if (len < 12)
		return;
	unsigned qd = (unsigned)(m[4] << 8 | m[5]);
	unsigned rr = (unsigned)(m[6] << 8 | m[7]) + (unsigned)(m[8] << 8 | m[9]) +
		      (unsigned)(m[10] << 8 | m[11]);
	size_t i = 12;
	for (unsigned k = 0; k < qd && i; k++) {
		i = skip_name(m, len, i);
		if (!i || i + 4 > len)
			return;
		i += 4;
	}
	for (unsigned k = 0; k < rr && i; k++) {
		i = skip_name(m, len, i);
		if (!i || i + 10 > len)
			return;
		unsigned type = (unsigned)(m[i] << 8 | m[i + 1]);
		size_t rdlen = (size_t)(m[i + 8] << 8 | m[i + 9]);
		size_t r = i + 10;
		if (r + rdlen > len)
			return;
		for (size_t o = r; type == 41 && o + 4 <= r + rdlen;) {
			unsigned code = (unsigned)(m[o] << 8 | m[o + 1]);
			size_t ol = (size_t)(m[o + 2] << 8 | m[o + 3]);
			if (code == 15 && ol >= 2 && o + 6 <= r + rdlen) {
				c->ede = m[o + 4] << 8 | m[o + 5];
				return;
			}
			o += 4 + ol;
		}
		i = r + rdlen;
	}
}

static void record_latency(cconn_t *c, double v)
{
	if (c->nlat == c->caplat) {
		c->caplat = c->caplat ? c->caplat * 2 : 1024;
		c->lat = realloc(c->lat, c->caplat * sizeof(double));
	}
	c->lat[c->nlat++] = v;
}

static int cb_recv_stream_data(ngtcp2_conn *conn, uint32_t flags,
			       int64_t sid, uint64_t offset,
			       const uint8_t *data, size_t len, void *u,
			       void *su)
{
	cconn_t *c = u;
	cstream_t *s = find_stream(c, sid);
	ngtcp2_conn_extend_max_stream_offset(conn, sid, len);
	ngtcp2_conn_extend_max_offset(conn, len);
	if (!s)
		return 0;
	if (s->inlen + len <= sizeof(s->in)) {
		memcpy(s->in + s->inlen, data, len);
		s->inlen += len;
	}
	if ((flags & NGTCP2_STREAM_DATA_FLAG_FIN) && !s->answered) {
		s->answered = true;
		size_t ml = s->inlen >= 2 ? (size_t)(s->in[0] << 8 | s->in[1]) : 0;
		if (ml + 2 != s->inlen || ml < 12) {
			c->bad_answers++;
		} else {
			c->answers++;
			parse_answer(c, s->in + 2, ml);
		}
		record_latency(c, now_s() - s->t0);
	}
	return 0;
}

static void add_reset(cconn_t *c, int64_t sid, uint64_t code, const char *k)
{
	if (c->resets_len + 80 < sizeof(c->resets))
		c->resets_len += (size_t)snprintf(
			c->resets + c->resets_len,
			sizeof(c->resets) - c->resets_len,
			"%s{\"stream\":%lld,\"code\":%llu,\"kind\":\"%s\"}",
			c->resets_len ? "," : "", (long long)sid,
			(unsigned long long)code, k);
}

static int cb_stream_reset(ngtcp2_conn *conn, int64_t sid, uint64_t fs,
			   uint64_t code, void *u, void *su)
{
	add_reset(u, sid, code, "reset");
	return 0;
}

static int cb_stop_sending(ngtcp2_conn *conn, int64_t sid, uint64_t code,
			   void *u, void *su)
{
	add_reset(u, sid, code, "stop_sending");
	return 0;
}

static int cb_stream_close(ngtcp2_conn *conn, uint32_t flags, int64_t sid,
			   uint64_t code, void *u, void *su)
{
	cconn_t *c = u;
	cstream_t *s = find_stream(c, sid);
	if (s) {
		s->closed = true;
		c->open_now--;
	}
	return 0;
}

static int cb_early_rejected(ngtcp2_conn *conn, void *u)
{
	((cconn_t *)u)->early_rejected = true;
	return 0;
}

static const ngtcp2_callbacks client_callbacks = {
	.tls_early_data_rejected = cb_early_rejected,
	.client_initial = ngtcp2_crypto_client_initial_cb,
	.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
	.handshake_completed = cb_handshake_completed,
	.encrypt = ngtcp2_crypto_encrypt_cb,
	.decrypt = ngtcp2_crypto_decrypt_cb,
	.hp_mask = ngtcp2_crypto_hp_mask_cb,
	.recv_stream_data = cb_recv_stream_data,
	.stream_close = cb_stream_close,
	.recv_retry = cb_recv_retry,
	.rand = cb_rand,
	.get_new_connection_id = cb_new_cid,
	.update_key = ngtcp2_crypto_update_key_cb,
	.stream_reset = cb_stream_reset,
	.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
	.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
	.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
	.stream_stop_sending = cb_stop_sending,
	.version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

/* ------------------------------------------------------ connections */

static void conn_free(cconn_t *c)
{
	for (int i = 0; i < c->nst; i++)
		free(c->st[i]);
	if (c->conn)
		ngtcp2_conn_del(c->conn);
	if (c->ssl)
		wolfSSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
	free(c->lat);
	free(c);
}

static cconn_t *conn_new(int idx)
{
	cconn_t *c = calloc(1, sizeof(*c));
	c->idx = idx;
	c->uni_limit = -1;
	c->rcode = c->ede = -1;
	c->fd = socket(opt.addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (c->fd >= 0 && opt.bind.ss_family &&
	    bind(c->fd, (struct sockaddr *)&opt.bind,
		 opt.bind.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						: sizeof(struct sockaddr_in)) < 0) {
		perror("bind");
		exit(2);
	}
	if (c->fd < 0 ||
	    connect(c->fd, (struct sockaddr *)&opt.addr, opt.addrlen) < 0) {
		perror("socket");
		exit(2);
	}
	int buf = 4 << 20;
	setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	c->locallen = sizeof(c->local);
	getsockname(c->fd, (struct sockaddr *)&c->local, &c->locallen);
	ngtcp2_cid dcid, scid;
	dcid.datalen = 18;
	rnd(dcid.data, dcid.datalen);
	scid.datalen = 8;
	rnd(scid.data, scid.datalen);
	ngtcp2_path path = {
		.local = {(ngtcp2_sockaddr *)&c->local, c->locallen},
		.remote = {(ngtcp2_sockaddr *)&opt.addr, opt.addrlen},
	};
	ngtcp2_settings settings;
	ngtcp2_settings_default(&settings);
	settings.initial_ts = now_ts();
	settings.handshake_timeout = (ngtcp2_duration)(opt.timeout * 1e9);
	ngtcp2_transport_params params;
	ngtcp2_transport_params_default(&params);
	params.initial_max_streams_uni = 0;
	params.initial_max_streams_bidi = 0;
	params.initial_max_stream_data_bidi_local =
		opt.window ? opt.window : 128 * 1024;
	params.initial_max_data = 16 << 20;
	params.max_idle_timeout = 30 * NGTCP2_SECONDS;
	c->ref.get_conn = get_conn;
	c->ref.user_data = c;
	if (ngtcp2_conn_client_new(&c->conn, &dcid, &scid, &path,
				   NGTCP2_PROTO_VER_V1, &client_callbacks,
				   &settings, &params, NULL, c) != 0) {
		fprintf(stderr, "ngtcp2_conn_client_new failed\n");
		exit(2);
	}
	c->ssl = wolfSSL_new(ctx);
	wolfSSL_set_app_data(c->ssl, &c->ref);
	wolfSSL_set_connect_state(c->ssl);
	uint8_t alpn[64];
	size_t al = strlen(opt.alpn);
	alpn[0] = (uint8_t)al;
	memcpy(alpn + 1, opt.alpn, al);
	if (al)
		wolfSSL_set_alpn_protos(c->ssl, alpn, (unsigned)al + 1);
	wolfSSL_set_quic_transport_version(c->ssl, 0x39);
	ngtcp2_conn_set_tls_native_handle(c->conn, c->ssl);
	/* early: resume, and let ngtcp2 open streams before the handshake
	 * with the server's remembered limits (RFC 9001 4.6.1) */
	if (resume_sess && wolfSSL_set_session(c->ssl, resume_sess) ==
				   WOLFSSL_SUCCESS &&
	    wolfSSL_SESSION_get_max_early_data(resume_sess))
		wolfSSL_set_quic_early_data_enabled(c->ssl, 1);
	if (tp0len)
		ngtcp2_conn_decode_and_set_0rtt_transport_params(c->conn, tp0,
								 tp0len);
	c->t_start = c->t_last = now_s();
	return c;
}

static void send_pkt(cconn_t *c, const uint8_t *p, size_t n)
{
	if (opt.proxy_len) {
		/* -P: header, then the QUIC datagram, in one datagram */
		uint8_t h[sizeof(opt.proxy_hdr)];
		memcpy(h, opt.proxy_hdr, opt.proxy_len);
		if (opt.proxy_inc) /* the source address ends at 16 + 4|16 */
			h[opt.proxy_len == 28 ? 19 : 31] += (uint8_t)c->idx;
		struct iovec iov[2] = {
			{.iov_base = h, .iov_len = opt.proxy_len},
			{.iov_base = (void *)p, .iov_len = n},
		};
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
		if (sendmsg(c->fd, &mh, MSG_DONTWAIT) > 0)
			c->bytes_sent += n;
		return;
	}
	if (send(c->fd, p, n, MSG_DONTWAIT) > 0)
		c->bytes_sent += n;
}

/* -P CLIENT: a PROXY v2 header (proxy-protocol.txt 2.2) for UDP from
 * CLIENT:4433 to the server. false when CLIENT is no address or its
 * family differs from the server's. */
static bool make_proxy_hdr(const char *client)
{
	static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
					0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
	uint8_t *h = opt.proxy_hdr;
	size_t alen, cl = strlen(client);
	char a[64];

	if (cl == 0 || cl >= sizeof(a))
		return false;
	memcpy(a, client, cl + 1);
	if (a[cl - 1] == '+') {
		opt.proxy_inc = true;
		a[cl - 1] = 0;
	}
	client = a;
	memcpy(h, sig, 12);
	h[12] = 0x21; /* version 2, PROXY */
	if (opt.addr.ss_family == AF_INET) {
		const struct sockaddr_in *d = (const void *)&opt.addr;
		if (inet_pton(AF_INET, client, h + 16) != 1)
			return false;
		h[13] = 0x12; /* AF_INET, DGRAM */
		memcpy(h + 20, &d->sin_addr, 4);
		h[24] = 4433 >> 8;
		h[25] = 4433 & 0xff;
		memcpy(h + 26, &d->sin_port, 2);
		alen = 12;
	} else {
		const struct sockaddr_in6 *d = (const void *)&opt.addr;
		if (inet_pton(AF_INET6, client, h + 16) != 1)
			return false;
		h[13] = 0x22; /* AF_INET6, DGRAM */
		memcpy(h + 32, &d->sin6_addr, 16);
		h[48] = 4433 >> 8;
		h[49] = 4433 & 0xff;
		memcpy(h + 50, &d->sin6_port, 2);
		alen = 36;
	}
	h[14] = 0;
	h[15] = (uint8_t)alen;
	opt.proxy_len = 16 + alen;
	return true;
}

static cstream_t *open_stream(cconn_t *c)
{
	int64_t sid;
	if (c->nst >= MAX_STREAMS)
		return NULL;
	if (ngtcp2_conn_open_bidi_stream(c->conn, &sid, NULL) != 0)
		return NULL;
	cstream_t *s = calloc(1, sizeof(*s));
	s->id = sid;
	s->t0 = now_s();
	c->st[c->nst++] = s;
	c->open_now++;
	if (c->open_now > c->max_open)
		c->max_open = c->open_now;
	return s;
}

/* Puts one framed query on a new stream, shaped by the case. */
static cstream_t *send_query(cconn_t *c, const char *name, enum kase k)
{
	cstream_t *s = open_stream(c);
	if (!s)
		return NULL;
	uint8_t msg[600];
	size_t ml = make_query(msg, name, k == K_NONZERO_ID ? 0x1234 : 0,
			       k == K_KEEPALIVE ? 11 : k == K_EARLY ? -2 : -1);
	s->out[0] = (uint8_t)(ml >> 8);
	s->out[1] = (uint8_t)ml;
	memcpy(s->out + 2, msg, ml);
	s->len = ml + 2;
	s->fin = true;
	switch (k) {
	case K_EARLY_FIN:
		s->len -= 5;
		break;
	case K_EXTRA:
		s->out[s->len++] = 0xab;
		break;
	case K_TWO:
		memcpy(s->out + s->len, s->out, ml + 2);
		s->len += ml + 2;
		break;
	case K_DANGLING:
		s->len -= 5;
		s->fin = false;
		break;
	case K_SPLIT:
		s->chunk = 1; /* first prefix byte alone; see conn_write */
		break;
	case K_ONEBYTE:
		s->chunk = 1;
		break;
	default:
		break;
	}
	c->sent_queries++;
	return s;
}

static void conn_write(cconn_t *c)
{
	uint8_t buf[1500];
	ngtcp2_path_storage ps;
	ngtcp2_pkt_info pi;
	ngtcp2_path_storage_zero(&ps);
	ngtcp2_tstamp ts = now_ts();

	if (c->done)
		return;
	for (int i = 0; i <= c->nst; i++) {
		cstream_t *s = i < c->nst ? c->st[i] : NULL;
		if (s && (s->closed || (s->sent == s->len &&
					(!s->fin || s->fin_sent))))
			continue;
		for (;;) {
			ngtcp2_vec v;
			ngtcp2_ssize nd = -1;
			int64_t sid = s ? s->id : -1;
			size_t left = s ? s->len - s->sent : 0;
			size_t take = left;
			if (s && s->chunk && take > s->chunk)
				take = s->chunk;
			uint32_t fl = 0;
			if (s && s->fin && take == left)
				fl |= NGTCP2_WRITE_STREAM_FLAG_FIN;
			v.base = s ? s->out + s->sent : NULL;
			v.len = take;
			ngtcp2_ssize n = ngtcp2_conn_writev_stream(
				c->conn, &ps.path, &pi, buf, 1452, &nd, fl,
				sid, s ? &v : NULL, s ? 1 : 0, ts);
			if (n < 0) {
				if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED ||
				    n == NGTCP2_ERR_STREAM_SHUT_WR)
					break;
				c->close_type = 1;
				c->close_code = 0xffff;
				c->done = true;
				return;
			}
			if (s && nd > 0 && !c->handshake)
				s->early = true;
			if (s && nd >= 0) {
				s->sent += (size_t)nd;
				if (s->sent == s->len && s->fin &&
				    (fl & NGTCP2_WRITE_STREAM_FLAG_FIN))
					s->fin_sent = true;
				/* split-prefix: after the first byte, the rest
				 * in one frame */
				if (s->chunk && c->idx >= 0 &&
				    opt.kase == K_SPLIT && s->sent >= 1)
					s->chunk = 0;
			}
			if (n == 0)
				break;
			send_pkt(c, buf, (size_t)n);
			if (s && s->sent == s->len && (!s->fin || s->fin_sent))
				break;
		}
	}
	ngtcp2_conn_update_pkt_tx_time(c->conn, ts);
}

static void conn_close(cconn_t *c, uint64_t code)
{
	uint8_t buf[1500];
	ngtcp2_path_storage ps;
	ngtcp2_pkt_info pi;
	ngtcp2_ccerr e;
	ngtcp2_path_storage_zero(&ps);
	ngtcp2_ccerr_default(&e);
	ngtcp2_ccerr_set_application_error(&e, code, NULL, 0);
	ngtcp2_ssize n = ngtcp2_conn_write_connection_close(
		c->conn, &ps.path, &pi, buf, sizeof(buf), &e, now_ts());
	if (n > 0)
		send_pkt(c, buf, (size_t)n);
	c->closed_by_us = true;
	c->done = true;
}

/* The case script: what to do next, after any event. */
static void conn_step(cconn_t *c)
{
	double now = now_s();
	if (c->done || !c->handshake)
		return;
	switch (opt.kase) {
	case K_NORMAL:
	case K_NONZERO_ID:
	case K_EARLY_FIN:
	case K_EXTRA:
	case K_TWO:
	case K_KEEPALIVE:
	case K_SPLIT:
	case K_ONEBYTE:
	case K_TINYWIN:
	case K_STREAMS:
		while (c->sent_queries < opt.queries &&
		       send_query(c, opt.name, opt.kase))
			;
		if (c->answers + c->bad_answers >= opt.queries)
			conn_close(c, 0);
		break;
	case K_RESET:
	case K_STOP:
		if (c->phase == 0) {
			cstream_t *s = send_query(c, opt.slow_name, K_NORMAL);
			if (s)
				s->slow = true;
			c->t_action = now + 0.3;
			c->phase = 1;
		} else if (c->phase == 1 && now >= c->t_action) {
			cstream_t *s = c->st[0];
			/* A cancelling client resets its side (a no-op once
			 * its FIN is acked) and asks the server to stop. */
			if (opt.kase == K_RESET)
				ngtcp2_conn_shutdown_stream(c->conn, 0, s->id,
							    0x3);
			else
				ngtcp2_conn_shutdown_stream_read(
					c->conn, 0, s->id, 0x3);
			c->phase = 2;
			c->t_action = now + 0.3;
		} else if (c->phase == 2 && now >= c->t_action) {
			send_query(c, opt.name, K_NORMAL);
			c->phase = 3;
		} else if (c->phase == 3 && c->answers >= 1 &&
			   c->st[0]->closed) {
			conn_close(c, 0);
		}
		break;
	case K_DANGLING:
		if (c->phase == 0) {
			send_query(c, opt.name, K_DANGLING);
			c->phase = 1;
		} else if (c->phase == 1 && c->resets_len > 0) {
			send_query(c, opt.name, K_NORMAL);
			c->phase = 2;
		} else if (c->phase == 2 && c->answers >= 1) {
			conn_close(c, 0);
		}
		break;
	case K_UNI: {
		const ngtcp2_transport_params *p =
			ngtcp2_conn_get_remote_transport_params(c->conn);
		c->uni_limit = p ? (int64_t)p->initial_max_streams_uni : -1;
		int64_t sid;
		if (c->phase == 0) {
			c->uni_rv = ngtcp2_conn_open_uni_stream(c->conn, &sid,
								NULL);
			send_query(c, opt.name, K_NORMAL);
			c->phase = 1;
		}
		if (c->answers >= 1)
			conn_close(c, 0);
		break;
	}
	case K_BENCH: {
		/* Keep S queries outstanding until the duration is over. A
		 * query is outstanding until its answer's FIN, not until the
		 * stream closes: closing also waits for the server to ACK our
		 * FIN, and a server that delays ACKs (RFC 9000 13.2.1, up to
		 * max_ack_delay) would otherwise be measured at one query per
		 * ACK delay. The stream limit is the server's to enforce. */
		int outstanding = 0;
		for (int i = 0; i < c->nst; i++)
			outstanding += !c->st[i]->answered && !c->st[i]->closed;
		if (now - g_t0 < opt.duration) {
			while (outstanding < opt.streams) {
				/* recycle closed stream slots */
				for (int i = 0; i < c->nst; i++)
					if (c->st[i]->closed) {
						free(c->st[i]);
						c->st[i--] = c->st[--c->nst];
					}
				if (!send_query(c, opt.name, K_NORMAL))
					break;
				outstanding++;
			}
		} else if (outstanding == 0) {
			conn_close(c, 0);
		}
		/* the server gives no more stream credit (knotd 3.4 stops at
		 * 1024 streams per connection): done here; main() opens a new
		 * connection in its place while the duration lasts */
		if (!c->done && outstanding == 0 &&
		    ngtcp2_conn_get_streams_bidi_left(c->conn) == 0 &&
		    c->sent_queries > 0)
			conn_close(c, 0);
		break;
	}
	case K_HANDSHAKES:
		if (c->phase == 0) {
			send_query(c, opt.name, K_NORMAL);
			c->phase = 1;
		} else if (c->answers >= 1) {
			conn_close(c, 0);
		}
		break;
	case K_POSTCRYPTO:
		if (c->phase == 0) {
			send_query(c, opt.name, K_NORMAL);
			c->phase = 1;
		} else if (c->phase == 1 && c->answers >= 1) {
			/* KeyUpdate(update_not_requested): type 24, length 1 */
			static const uint8_t key_update[] = {24, 0, 0, 1, 0};
			ngtcp2_conn_submit_crypto_data(
				c->conn, NGTCP2_ENCRYPTION_LEVEL_1RTT,
				key_update, sizeof(key_update));
			c->phase = 2; /* the server's close ends it */
		}
		break;
	default:
		break;
	}
}

static void conn_read(cconn_t *c)
{
	uint8_t buf[65536];
	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n <= 0)
			return;
		c->bytes_recv += (size_t)n;
		c->t_last = now_s();
		if (opt.kase == K_AMPLIFY)
			continue; /* never answer: count only */
		if (c->done)
			continue;
		ngtcp2_path path = {
			.local = {(ngtcp2_sockaddr *)&c->local, c->locallen},
			.remote = {(ngtcp2_sockaddr *)&opt.addr, opt.addrlen},
		};
		ngtcp2_pkt_info pi = {0};
		int rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, buf,
					      (size_t)n, now_ts());
		if (rv != 0) {
			const ngtcp2_ccerr *e = ngtcp2_conn_get_ccerr(c->conn);
			if (rv == NGTCP2_ERR_DRAINING ||
			    rv == NGTCP2_ERR_CLOSING) {
				c->close_type = e->type ==
							NGTCP2_CCERR_TYPE_APPLICATION
						? 2
						: 1;
				c->close_code = e->error_code;
			} else {
				c->close_type = 1;
				c->close_code = e->type ==
							NGTCP2_CCERR_TYPE_TRANSPORT
						? e->error_code
						: 0xfffe;
				if (rv == NGTCP2_ERR_CRYPTO)
					c->close_code =
						0x100 +
						ngtcp2_conn_get_tls_alert(c->conn);
			}
			c->done = true;
			return;
		}
	}
}

static void conn_timer(cconn_t *c)
{
	if (c->done || opt.kase == K_AMPLIFY)
		return;
	ngtcp2_tstamp e = ngtcp2_conn_get_expiry(c->conn);
	if (e <= now_ts()) {
		int rv = ngtcp2_conn_handle_expiry(c->conn, now_ts());
		if (rv != 0) {
			c->close_type = 3;
			c->close_code = 0;
			c->done = true;
		}
	}
}

static void print_conn(cconn_t *c)
{
	char *alpn = NULL;
	unsigned short al = 0;
	char a[32] = "";
	if (c->ssl &&
	    wolfSSL_ALPN_GetProtocol(c->ssl, &alpn, &al) == WOLFSSL_SUCCESS &&
	    al < sizeof(a)) {
		memcpy(a, alpn, al);
		a[al] = 0;
	}
	static const char *const ct[] = {"none", "transport", "application",
					 "idle"};
	printf("{\"conn\":%d,\"case\":\"%s\",\"handshake\":%s,\"retry\":%s,"
	       "\"alpn\":\"%s\",\"close_type\":\"%s\",\"close_code\":%llu,"
	       "\"closed_by_us\":%s,\"sent_queries\":%d,\"answers\":%d,"
	       "\"bad_answers\":%d,\"resets\":[%s],\"bytes_sent\":%llu,"
	       "\"bytes_recv\":%llu,\"max_open\":%d,\"uni_limit\":%lld,"
	       "\"uni_rv\":%d}\n",
	       c->idx, kase_names[opt.kase], c->handshake ? "true" : "false",
	       c->retry ? "true" : "false", a, ct[c->close_type],
	       (unsigned long long)c->close_code,
	       c->closed_by_us ? "true" : "false", c->sent_queries,
	       c->answers, c->bad_answers, c->resets,
	       (unsigned long long)c->bytes_sent,
	       (unsigned long long)c->bytes_recv, c->max_open,
	       (long long)c->uni_limit, c->uni_rv);
}

/* Drives one connection until want(c) holds, it ends, or the deadline. */
static bool pump(cconn_t *c, double until, bool (*want)(cconn_t *))
{
	while (!want(c) && !c->done && now_s() < until) {
		conn_write(c);
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		ngtcp2_tstamp e = ngtcp2_conn_get_expiry(c->conn), t = now_ts();
		int tmo = e <= t ? 0 : (e - t) / 1000000 < 20 ? (int)((e - t) / 1000000) : 20;
		poll(&p, 1, tmo);
		if (p.revents & POLLIN)
			conn_read(c);
		conn_timer(c);
	}
	return want(c);
}

static bool want_handshake(cconn_t *c) { return c->handshake; }
static bool want_answer(cconn_t *c) { return c->answers + c->bad_answers > 0; }

/* The first connection's answer and a session ticket to resume with (sent
 * after the handshake, RFC 8446 4.6.1). */
static bool want_ticket(cconn_t *c)
{
	if (!want_answer(c))
		return false;
	WOLFSSL_SESSION *s = wolfSSL_get1_session(c->ssl);
	bool ok = s && wolfSSL_SESSION_has_ticket(s);
	wolfSSL_SESSION_free(s);
	return ok;
}

/* -c early: resume the first connection's session on a second one and send
 * its query in 0-RTT (RFC 9250 4.5, RFC 9001 4.6). */
static int run_early(void)
{
	double until = now_s() + opt.timeout;
	int saved_opcode = opt.opcode;
	opt.opcode = 0; /* the first connection asks a plain QUERY */
	cconn_t *a = conn_new(0);
	bool ok = pump(a, until, want_handshake) &&
		  send_query(a, opt.name, K_NORMAL) && pump(a, until, want_ticket);
	if (!ok) {
		print_conn(a);
		fprintf(stderr, "early: no answer or no session ticket on the "
				"first connection\n");
		conn_free(a);
		return 1;
	}
	resume_sess = wolfSSL_get1_session(a->ssl);
	ngtcp2_ssize n = ngtcp2_conn_encode_0rtt_transport_params(
		a->conn, tp0, sizeof(tp0));
	tp0len = n > 0 ? (size_t)n : 0;
	conn_close(a, 0);
	conn_free(a);

	opt.opcode = saved_opcode;
	cconn_t *b = conn_new(1);
	/* opened before the handshake: its data goes out in 0-RTT packets
	 * when the ticket allows early data, else waits for 1-RTT */
	cstream_t *st = send_query(b, opt.name, K_EARLY);
	pump(b, until, want_handshake);
	if (!st)
		st = send_query(b, opt.name, K_EARLY);
	pump(b, until, want_answer);
	printf("{\"conn\":1,\"case\":\"early\",\"handshake\":%s,"
	       "\"resumed\":%s,\"early_sent\":%s,\"early_rejected\":%s,"
	       "\"tls_early_status\":%d,\"opcode\":%d,\"answers\":%d,"
	       "\"rcode\":%d,\"ede\":%d}\n",
	       b->handshake ? "true" : "false",
	       wolfSSL_session_reused(b->ssl) ? "true" : "false",
	       st && st->early ? "true" : "false",
	       b->early_rejected ? "true" : "false",
	       wolfSSL_get_early_data_status(b->ssl), opt.opcode, b->answers,
	       b->rcode, b->ede);
	if (!b->done)
		conn_close(b, 0);
	conn_free(b);
	wolfSSL_SESSION_free(resume_sess);
	resume_sess = NULL;
	return 0;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void usage(void)
{
	fprintf(stderr, "usage: doq_client -s ADDR -p PORT [-c CASE] [-n N] "
			"[-q NAME] [-C CONNS] [-S STREAMS] [-d SECS] [-w WIN] "
			"[-a ALPN] [-t TIMEOUT] [-o OPCODE] [-Q] [-b SRC] "
			"[-P CLIENT]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *host = "127.0.0.1";
	int port = 853, ch;
	bool quiet = false;
	const char *bind_addr = NULL, *proxy_client = NULL;
	while ((ch = getopt(argc, argv, "s:p:c:n:q:C:S:d:w:a:t:o:Qb:P:")) !=
	       -1) {
		switch (ch) {
		case 's': host = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'c': {
			size_t k;
			for (k = 0; k < sizeof(kase_names) / sizeof(*kase_names); k++)
				if (strcmp(optarg, kase_names[k]) == 0)
					break;
			if (k == sizeof(kase_names) / sizeof(*kase_names))
				usage();
			opt.kase = (enum kase)k;
			break;
		}
		case 'n': opt.queries = atoi(optarg); break;
		case 'q': opt.name = optarg; opt.slow_name = optarg; break;
		case 'C': opt.conns = atoi(optarg); break;
		case 'S': opt.streams = atoi(optarg); break;
		case 'd': opt.duration = atof(optarg); break;
		case 'w': opt.window = strtoull(optarg, NULL, 10); break;
		case 'a': opt.alpn = optarg; break;
		case 't': opt.timeout = atof(optarg); break;
		case 'o': opt.opcode = atoi(optarg) & 0xf; break;
		case 'Q': quiet = true; break;
		case 'b': bind_addr = optarg; break;
		case 'P': proxy_client = optarg; break;
		default: usage();
		}
	}
	if (opt.kase == K_SPLIT || opt.kase == K_ONEBYTE || opt.kase == K_TINYWIN)
		opt.name = "example.test";
	if (opt.kase == K_BADALPN && strcmp(opt.alpn, "doq") == 0)
		opt.alpn = "dot";
	if (opt.kase == K_TINYWIN && !opt.window)
		opt.window = 16;
	if (opt.conns < 1 || opt.conns > MAX_CONNS || opt.streams < 1 ||
	    opt.streams > MAX_STREAMS / 2)
		usage();
	struct sockaddr_in *s4 = (void *)&opt.addr;
	struct sockaddr_in6 *s6 = (void *)&opt.addr;
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		opt.addrlen = sizeof(*s4);
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		opt.addrlen = sizeof(*s6);
	} else {
		usage();
	}
	if (bind_addr) {
		struct sockaddr_in *b4 = (void *)&opt.bind;
		struct sockaddr_in6 *b6 = (void *)&opt.bind;
		if (opt.addr.ss_family == AF_INET &&
		    inet_pton(AF_INET, bind_addr, &b4->sin_addr) == 1)
			b4->sin_family = AF_INET;
		else if (opt.addr.ss_family == AF_INET6 &&
			 inet_pton(AF_INET6, bind_addr, &b6->sin6_addr) == 1)
			b6->sin6_family = AF_INET6;
		else
			usage();
	}
	if (proxy_client && !make_proxy_hdr(proxy_client))
		usage();
	wolfSSL_Init();
	wc_InitRng(&rng);
	ctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
	ngtcp2_crypto_wolfssl_configure_client_context(ctx);
	wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);

	if (opt.kase == K_EARLY) {
		int rc = run_early();
		wolfSSL_CTX_free(ctx);
		wc_FreeRng(&rng);
		wolfSSL_Cleanup();
		return rc;
	}
	double t0 = now_s();
	g_t0 = t0;
	int live = 0;
	unsigned long finished = 0, answers = 0, bad = 0;
	/* handshakes the server closed at once with an application error
	 * (DOQ_EXCESSIVE_LOAD from a connection cap) before any answer: they
	 * count as handshakes but served nothing */
	unsigned long refused = 0;
	double t_ready = 0; /* idle: when every handshake was settled */
	int established = 0;
	double *lat = NULL;
	size_t nlat = 0;
	int nc = opt.conns;
	for (int i = 0; i < nc; i++) {
		conns[i] = conn_new(i);
		live++;
	}
	struct pollfd *pfd = calloc(MAX_CONNS, sizeof(*pfd));
	double limit = opt.kase == K_BENCH || opt.kase == K_HANDSHAKES ||
				       opt.kase == K_IDLE
			       ? opt.duration + opt.timeout
			       : opt.timeout;
	int next_idx = nc;
	while (live > 0 && now_s() - t0 < limit) {
		for (int i = 0; i < nc; i++) {
			cconn_t *c = conns[i];
			if (!c)
				continue;
			if (!c->done) {
				if (opt.kase == K_AMPLIFY && c->bytes_sent)
					; /* one Initial, then silence */
				else {
					conn_step(c);
					conn_write(c);
				}
			}
			bool finish = c->done;
			if (opt.kase == K_AMPLIFY && now_s() - c->t_start > 4)
				finish = true;
			if (finish) {
				if (!quiet)
					print_conn(c);
				finished++;
				answers += (unsigned long)c->answers;
				bad += (unsigned long)c->bad_answers;
				if (c->handshake && !c->answers &&
				    !c->closed_by_us && c->close_type == 2)
					refused++;
				lat = realloc(lat, (nlat + c->nlat) * sizeof(double));
				if (c->nlat)
					memcpy(lat + nlat, c->lat,
					       c->nlat * sizeof(double));
				nlat += c->nlat;
				conn_free(c);
				conns[i] = NULL;
				live--;
				if ((opt.kase == K_HANDSHAKES ||
				     opt.kase == K_BENCH) &&
				    now_s() - t0 < opt.duration) {
					conns[i] = conn_new(next_idx++);
					live++;
				}
				continue;
			}
			pfd[i].fd = c->fd;
			pfd[i].events = POLLIN;
		}
		/* the earliest ngtcp2 expiry decides the poll timeout */
		ngtcp2_tstamp exp = UINT64_MAX, nowt = now_ts();
		for (int i = 0; i < nc; i++)
			if (conns[i] && !conns[i]->done) {
				ngtcp2_tstamp e = ngtcp2_conn_get_expiry(conns[i]->conn);
				if (e < exp)
					exp = e;
			}
		int tmo = 20;
		if (exp != UINT64_MAX && exp > nowt &&
		    (exp - nowt) / 1000000 < (ngtcp2_tstamp)tmo)
			tmo = (int)((exp - nowt) / 1000000);
		if (exp != UINT64_MAX && exp <= nowt)
			tmo = 0;
		for (int i = 0; i < nc; i++)
			if (!conns[i])
				pfd[i].fd = -1;
		if (opt.kase == K_IDLE) {
			int hs = 0, settled = 0;
			for (int i = 0; i < nc; i++) {
				if (!conns[i]) {
					settled++;
					continue;
				}
				hs += conns[i]->handshake && !conns[i]->done;
				settled += conns[i]->handshake || conns[i]->done;
			}
			if (!t_ready && (settled == nc ||
					 now_s() - t0 >= opt.timeout)) {
				t_ready = now_s();
				established = hs;
				printf("{\"idle_ready\":true,\"conns\":%d,"
				       "\"established\":%d,\"after_s\":%.2f}\n",
				       nc, hs, t_ready - t0);
				fflush(stdout);
			}
			if (t_ready && now_s() - t_ready >= opt.duration)
				break;
		}
		poll(pfd, (nfds_t)nc, tmo);
		for (int i = 0; i < nc; i++) {
			cconn_t *c = conns[i];
			if (!c)
				continue;
			if (pfd[i].revents & POLLIN)
				conn_read(c);
			conn_timer(c);
		}
	}
	int still_open = 0;
	for (int i = 0; i < nc; i++) {
		if (!conns[i])
			continue;
		still_open += conns[i]->handshake && !conns[i]->done;
		if (!quiet)
			print_conn(conns[i]);
		answers += (unsigned long)conns[i]->answers;
		finished++;
		conn_free(conns[i]);
	}
	double el = now_s() - t0;
	if (opt.kase == K_IDLE)
		printf("{\"summary\":true,\"case\":\"idle\",\"conns\":%d,"
		       "\"established\":%d,\"still_open\":%d,\"held_s\":%.2f}\n",
		       nc, established, still_open,
		       t_ready ? now_s() - t_ready : 0.0);
	if (opt.kase == K_BENCH || opt.kase == K_HANDSHAKES) {
		qsort(lat, nlat, sizeof(double), cmp_d);
		double p50 = nlat ? lat[nlat / 2] : 0;
		double p90 = nlat ? lat[(size_t)(nlat * 0.9)] : 0;
		double p99 = nlat ? lat[(size_t)(nlat * 0.99)] : 0;
		double run = opt.kase == K_BENCH ? opt.duration : el;
		printf("{\"summary\":true,\"case\":\"%s\",\"conns\":%d,"
		       "\"streams\":%d,\"seconds\":%.2f,\"answers\":%lu,"
		       "\"bad\":%lu,\"qps\":%.0f,\"handshakes\":%lu,"
		       "\"refused\":%lu,"
		       "\"handshakes_per_s\":%.1f,\"p50_ms\":%.2f,"
		       "\"p90_ms\":%.2f,\"p99_ms\":%.2f}\n",
		       kase_names[opt.kase], opt.conns, opt.streams, run,
		       answers, bad, (double)answers / run, total_handshakes,
		       refused, (double)total_handshakes / el, p50 * 1e3, p90 * 1e3,
		       p99 * 1e3);
	}
	free(lat);
	free(pfd);
	wolfSSL_CTX_free(ctx);
	wc_FreeRng(&rng);
	wolfSSL_Cleanup();
	return 0;
}

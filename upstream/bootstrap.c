/*
 * bootstrap.c - host names in upstream URLs (tls://NAME#..., https://NAME/...)
 * resolved through a bootstrap resolver (upstream.bootstrap / --bootstrap,
 * default the first nameserver of /etc/resolv.conf) over plain UDP.
 *
 * Start-up resolves every name once, blocking (bounded by the attempt
 * timeout per question): a gateway that cannot find its upstream says so
 * and exits rather than starting deaf. Afterwards each name is asked again
 * when the TTL of its answer runs out (clamped to 1 s .. 1 day), from the
 * worker's loop without blocking (one non-blocking UDP socket per name while
 * a question is out); a failed re-resolution keeps the last address and
 * tries again in RETRY_S. Connections already open keep their address.
 *
 * A first, IPv4 (A) then IPv6 (AAAA): the first address of the answer.
 * Answers are matched by ID, source (connected socket) and question.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "attempt.h"
#include "gateway/error.h"
#include "gateway/log.h"

#define RETRY_S 30.0
#define TTL_MIN 1
#define TTL_MAX 86400
#define QBUF 300
#define RESOLV_CONF "/etc/resolv.conf"

typedef struct boot_ent {
	gw_up_boot_t *b;
	unsigned i;
	bool used;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	ev_timer timer; /* next re-resolution, or the question's deadline */
	ev_io io;
	int fd;
	uint16_t id, qtype;
} boot_ent_t;

struct gw_up_boot {
	gw_up_pool_t *p;
	struct ev_loop *loop;
	const gw_conf_t *conf;
	struct sockaddr_storage srv;
	socklen_t srvlen;
	boot_ent_t ent[GW_CONF_MAX_UPSTREAM];
};

/* --- sans-I/O ------------------------------------------------------------------ */

/* name as DNS labels into out; the length or GW_EINVAL. */
static int put_name(uint8_t *out, size_t cap, const char *name)
{
	size_t n = 0;

	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		if (l == 0 || l > 63 || n + l + 2 > cap || n + l + 2 > 255)
			return GW_EINVAL;
		out[n++] = (uint8_t)l;
		memcpy(out + n, name, l);
		n += l;
		name += l;
		if (*name == '.')
			name++;
	}
	if (n + 1 > cap)
		return GW_EINVAL;
	out[n++] = 0;
	return (int)n;
}

int gw_up_boot_query(uint8_t *out, size_t cap, const char *name,
		     uint16_t qtype, uint16_t id)
{
	int n;

	if (cap < GW_DNS_HEADER_LEN + 5)
		return GW_EINVAL;
	memset(out, 0, GW_DNS_HEADER_LEN);
	gw_dns_put16(out, id);
	gw_dns_put16(out + 2, GW_DNS_RD);
	gw_dns_put16(out + 4, 1);
	n = put_name(out + GW_DNS_HEADER_LEN, cap - GW_DNS_HEADER_LEN - 4,
		     name);
	if (n < 0)
		return n;
	gw_dns_put16(out + GW_DNS_HEADER_LEN + n, qtype);
	gw_dns_put16(out + GW_DNS_HEADER_LEN + n + 2, 1); /* IN */
	return GW_DNS_HEADER_LEN + n + 4;
}

/* Skips a (possibly compressed) name at *off. 0 or GW_EMALFORMED. */
static int skip_name(const uint8_t *m, size_t len, size_t *off)
{
	size_t o = *off;

	for (int labels = 0; labels < 128; labels++) {
		if (o >= len)
			return GW_EMALFORMED;
		if ((m[o] & 0xc0) == 0xc0) {
			if (o + 2 > len)
				return GW_EMALFORMED;
			*off = o + 2;
			return 0;
		}
		if (m[o] & 0xc0)
			return GW_EMALFORMED;
		if (m[o] == 0) {
			*off = o + 1;
			return 0;
		}
		o += 1 + m[o];
	}
	return GW_EMALFORMED;
}

int gw_up_boot_parse(const uint8_t *msg, size_t len, const char *name,
		     uint16_t qtype, uint16_t id, uint8_t *addr,
		     uint32_t *ttl)
{
	uint8_t q[QBUF];
	int qlen = gw_up_boot_query(q, sizeof(q), name, qtype, id);
	size_t off, qsec;
	unsigned an;
	bool found = false;
	uint32_t best = UINT32_MAX;

	if (qlen < 0 || len < (size_t)qlen)
		return GW_EMALFORMED;
	/* ID, QR=1, opcode 0, one question equal to ours (RFC 4343:
	 * case-insensitive) */
	if (gw_dns_get16(msg) != id || !(msg[2] & 0x80) ||
	    (msg[2] & 0x78) != 0 || gw_dns_get16(msg + 4) != 1)
		return GW_EMALFORMED;
	/* byte by byte: labels, the root's 0 and the type may hold NULs */
	qsec = (size_t)qlen - GW_DNS_HEADER_LEN;
	for (size_t k = 0; k < qsec; k++) {
		uint8_t x = msg[GW_DNS_HEADER_LEN + k];
		uint8_t y = q[GW_DNS_HEADER_LEN + k];
		if (x >= 'A' && x <= 'Z')
			x += 32;
		if (y >= 'A' && y <= 'Z')
			y += 32;
		if (x != y)
			return GW_EMALFORMED;
	}
	if ((msg[3] & 0x0f) != 0)
		return GW_EAGAIN; /* NXDOMAIN, SERVFAIL, ...: no address */
	an = gw_dns_get16(msg + 6);
	off = (size_t)qlen;
	for (unsigned k = 0; k < an; k++) {
		uint16_t type, cls, rdlen;
		uint32_t t;

		if (skip_name(msg, len, &off) < 0 || off + 10 > len)
			return GW_EMALFORMED;
		type = gw_dns_get16(msg + off);
		cls = gw_dns_get16(msg + off + 2);
		t = (uint32_t)gw_dns_get16(msg + off + 4) << 16 |
		    gw_dns_get16(msg + off + 6);
		rdlen = gw_dns_get16(msg + off + 8);
		off += 10;
		if (off + rdlen > len)
			return GW_EMALFORMED;
		if (t < best)
			best = t;
		if (!found && cls == 1 && type == qtype &&
		    rdlen == (qtype == 1 ? 4 : 16)) {
			memcpy(addr, msg + off, rdlen);
			found = true;
		}
		off += rdlen;
	}
	if (!found)
		return GW_EAGAIN;
	*ttl = best;
	return 0;
}

/* --- I/O ------------------------------------------------------------------------- */

static const char *host_of(const boot_ent_t *e)
{
	return e->b->conf->upstream[e->i].host;
}

static uint16_t rand16(gw_up_boot_t *b)
{
	return (uint16_t)gw_up_rng_next(gw_up_pool_rng(b->p));
}

/* Stores the address of an answer (port from the URL). */
static void set_addr(boot_ent_t *e, uint16_t qtype, const uint8_t *a)
{
	const gw_endpoint_t *ep = &e->b->conf->upstream[e->i];

	memset(&e->addr, 0, sizeof(e->addr));
	if (qtype == 1) {
		struct sockaddr_in *s = (struct sockaddr_in *)&e->addr;
		s->sin_family = AF_INET;
		s->sin_port = htons(ep->port);
		memcpy(&s->sin_addr, a, 4);
		e->addrlen = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&e->addr;
		s->sin6_family = AF_INET6;
		s->sin6_port = htons(ep->port);
		memcpy(&s->sin6_addr, a, 16);
		e->addrlen = sizeof(*s);
	}
}

static int open_sock(gw_up_boot_t *b)
{
	int fd = socket(b->srv.ss_family, SOCK_DGRAM | SOCK_NONBLOCK |
						   SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&b->srv, b->srvlen) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One blocking question (start-up only). 0 with the address set, or <0. */
static int ask_blocking(boot_ent_t *e, uint16_t qtype, uint32_t *ttl)
{
	gw_up_boot_t *b = e->b;
	uint8_t q[QBUF], *rb = gw_up_pool_rbuf(b->p), a[16];
	uint16_t id = rand16(b);
	double end = now_mono() + gw_up_pool_timeout(b->p);
	int n, fd, r = GW_ETIMEDOUT;

	n = gw_up_boot_query(q, sizeof(q), host_of(e), qtype, id);
	if (n < 0)
		return n;
	if ((fd = open_sock(b)) < 0)
		return fd;
	if (send(fd, q, (size_t)n, 0) < 0) {
		r = -errno;
		goto out;
	}
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		double left = end - now_mono();
		ssize_t got;

		if (left <= 0)
			break;
		if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
			continue;
		got = recv(fd, rb, GW_DNS_MAX_MSG, 0);
		if (got < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			r = -errno;
			break;
		}
		r = gw_up_boot_parse(rb, (size_t)got, host_of(e), qtype, id, a,
				     ttl);
		if (r == GW_EMALFORMED)
			continue; /* not our answer: keep waiting */
		if (r == 0)
			set_addr(e, qtype, a);
		break;
	}
out:
	close(fd);
	return r;
}

static void arm(boot_ent_t *e, double after)
{
	ev_timer_stop(e->b->loop, &e->timer);
	ev_timer_set(&e->timer, after, 0.);
	ev_timer_start(e->b->loop, &e->timer);
}

static double clamp_ttl(uint32_t ttl)
{
	return ttl < TTL_MIN ? TTL_MIN : ttl > TTL_MAX ? TTL_MAX : ttl;
}

static void stop_question(boot_ent_t *e)
{
	if (e->fd >= 0) {
		ev_io_stop(e->b->loop, &e->io);
		close(e->fd);
		e->fd = -1;
	}
}

/* Sends the re-resolution question qtype; false when it could not go. */
static bool send_question(boot_ent_t *e, uint16_t qtype)
{
	uint8_t q[QBUF];
	int n;

	stop_question(e);
	e->qtype = qtype;
	e->id = rand16(e->b);
	n = gw_up_boot_query(q, sizeof(q), host_of(e), qtype, e->id);
	if (n < 0 || (e->fd = open_sock(e->b)) < 0) {
		e->fd = -1;
		return false;
	}
	if (send(e->fd, q, (size_t)n, 0) < 0) {
		stop_question(e);
		return false;
	}
	ev_io_set(&e->io, e->fd, EV_READ);
	ev_io_start(e->b->loop, &e->io);
	arm(e, gw_up_pool_timeout(e->b->p));
	return true;
}

static void resolve_failed(boot_ent_t *e, const char *why)
{
	stop_question(e);
	gw_log(GW_LOG_WARN, "upstream", "bootstrap re-resolution failed",
	       "host", host_of(e), "error", why, NULL);
	arm(e, RETRY_S);
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	boot_ent_t *e = w->data;
	uint8_t *rb = gw_up_pool_rbuf(e->b->p), a[16];
	uint32_t ttl = 0;
	ssize_t got;
	int r;

	(void)loop;
	(void)revents;
	got = recv(e->fd, rb, GW_DNS_MAX_MSG, 0);
	if (got < 0) {
		if (errno != EAGAIN && errno != EINTR)
			resolve_failed(e, strerror(errno));
		return;
	}
	r = gw_up_boot_parse(rb, (size_t)got, host_of(e), e->qtype, e->id, a,
			     &ttl);
	if (r == GW_EMALFORMED)
		return; /* not our answer */
	if (r == GW_EAGAIN) {
		if (e->qtype == 1 && send_question(e, 28))
			return;
		resolve_failed(e, "no address");
		return;
	}
	stop_question(e);
	set_addr(e, e->qtype, a);
	gw_up_debug_conn(e->b->p, e->i, "bootstrap resolved", host_of(e));
	arm(e, clamp_ttl(ttl));
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	boot_ent_t *e = w->data;

	(void)loop;
	(void)revents;
	if (e->fd >= 0) {
		resolve_failed(e, "timeout");
		return;
	}
	if (!send_question(e, 1))
		resolve_failed(e, "cannot send");
}

/* The first "nameserver" of /etc/resolv.conf, port 53. */
static int resolv_server(struct sockaddr_storage *ss, socklen_t *len)
{
	FILE *f = fopen(RESOLV_CONF, "re");
	char line[512], addr[128];
	int r = GW_EINVAL;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		if (sscanf(line, " nameserver %127s", addr) != 1)
			continue;
		memset(ss, 0, sizeof(*ss));
		if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
			s4->sin_family = AF_INET;
			s4->sin_port = htons(53);
			*len = sizeof(*s4);
			r = 0;
		} else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons(53);
			*len = sizeof(*s6);
			r = 0;
		}
		if (r == 0)
			break;
	}
	fclose(f);
	return r;
}

gw_up_boot_t *gw_up_boot_new(gw_up_pool_t *p, const gw_up_seed_t *seed,
			      char *err, size_t errlen)
{
	const gw_conf_t *conf = gw_up_pool_conf(p);
	gw_up_boot_t *b;
	bool any = false;

	for (unsigned i = 0; i < conf->n_upstream; i++)
		any |= conf->upstream[i].addrlen == 0;
	if (!any)
		return NULL;
	b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	b->p = p;
	b->loop = gw_up_pool_loop(p);
	b->conf = conf;
	if (conf->up.bootstrap_addrlen) {
		memcpy(&b->srv, &conf->up.bootstrap_addr,
		       conf->up.bootstrap_addrlen);
		b->srvlen = conf->up.bootstrap_addrlen;
	} else if (resolv_server(&b->srv, &b->srvlen) < 0) {
		snprintf(err, errlen, "upstream host names need a bootstrap "
			 "resolver: set --bootstrap (no nameserver in "
			 RESOLV_CONF ")");
		free(b);
		return NULL;
	}
	for (unsigned i = 0; i < conf->n_upstream; i++) {
		boot_ent_t *e = &b->ent[i];
		uint32_t ttl = 0;
		int r;

		e->b = b;
		e->i = i;
		e->fd = -1;
		ev_timer_init(&e->timer, on_timer, 0., 0.);
		e->timer.data = e;
		ev_io_init(&e->io, on_read, -1, EV_READ);
		e->io.data = e;
		if (conf->upstream[i].addrlen)
			continue;
		e->used = true;
		if (seed && seed->e[i].addrlen) {
			memcpy(&e->addr, &seed->e[i].addr, seed->e[i].addrlen);
			e->addrlen = seed->e[i].addrlen;
			arm(e, seed->e[i].ttl > TTL_MIN ? seed->e[i].ttl
							: TTL_MIN);
			continue;
		}
		r = ask_blocking(e, 1, &ttl);
		if (r == GW_EAGAIN)
			r = ask_blocking(e, 28, &ttl);
		if (r < 0) {
			snprintf(err, errlen, "%s: cannot resolve '%s' through "
				 "the bootstrap resolver: %s",
				 conf->upstream[i].url, conf->upstream[i].host,
				 r == GW_EAGAIN ? "no address"
						: gw_strerror(r));
			gw_up_boot_free(b);
			return NULL;
		}
		arm(e, clamp_ttl(ttl));
	}
	return b;
}

void gw_up_boot_seed(const gw_up_boot_t *b, gw_up_seed_t *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; b && i < b->conf->n_upstream; i++) {
		const boot_ent_t *e = &b->ent[i];
		if (!e->used || !e->addrlen)
			continue;
		memcpy(&out->e[i].addr, &e->addr, e->addrlen);
		out->e[i].addrlen = e->addrlen;
		/* until the next question (while one is out: its deadline) */
		out->e[i].ttl = ev_is_active(&e->timer)
					? ev_timer_remaining(b->loop,
							     (ev_timer *)&e->timer)
					: TTL_MIN;
	}
}

void gw_up_boot_free(gw_up_boot_t *b)
{
	if (!b)
		return;
	for (unsigned i = 0; i < GW_CONF_MAX_UPSTREAM; i++) {
		boot_ent_t *e = &b->ent[i];
		if (!e->b)
			continue;
		stop_question(e);
		ev_timer_stop(b->loop, &e->timer);
	}
	free(b);
}

const struct sockaddr *gw_up_boot_addr(const gw_up_boot_t *b, unsigned i,
				       socklen_t *len)
{
	if (!b || i >= GW_CONF_MAX_UPSTREAM || !b->ent[i].addrlen)
		return NULL;
	*len = b->ent[i].addrlen;
	return (const struct sockaddr *)&b->ent[i].addr;
}

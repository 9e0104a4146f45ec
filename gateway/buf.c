#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "error.h"

void gw_buf_init(gw_buf_t *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void gw_buf_deinit(gw_buf_t *b)
{
	free(b->data);
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}

int gw_buf_reserve(gw_buf_t *b, size_t n)
{
	size_t used = b->len - b->off;
	if (n > b->max || used > b->max - n)
		return GW_ETOOBIG;
	if (b->cap - b->len >= n)
		return 0;
	/* Compact first: cheaper than growing when the front has been consumed. */
	if (b->off > 0) {
		memmove(b->data, b->data + b->off, used);
		b->len = used;
		b->off = 0;
		if (b->cap - b->len >= n)
			return 0;
	}
	size_t want = b->cap ? b->cap : 512;
	while (want < used + n)
		want *= 2;
	if (want > b->max)
		want = b->max;
	uint8_t *p = realloc(b->data, want);
	if (!p)
		return GW_ENOMEM;
	b->data = p;
	b->cap = want;
	return 0;
}

int gw_buf_append(gw_buf_t *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	int r = gw_buf_reserve(b, n);
	if (r < 0)
		return r;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

void gw_buf_consume(gw_buf_t *b, size_t n)
{
	if (n >= b->len - b->off) {
		b->off = b->len = 0;
		return;
	}
	b->off += n;
}

void gw_buf_shrink(gw_buf_t *b)
{
	if (b->len == b->off) {
		gw_buf_deinit(b);
	}
}

long gw_buf_send(gw_buf_t *b, int fd)
{
	long sent = 0;
	while (gw_buf_size(b) > 0) {
		ssize_t n = send(fd, gw_buf_head(b), gw_buf_size(b),
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		gw_buf_consume(b, (size_t)n);
		sent += n;
	}
	return sent;
}

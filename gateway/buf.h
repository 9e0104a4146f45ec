/*
 * buf.h - bounded byte buffer.
 *
 * A gw_buf_t grows on demand but never past the cap given to gw_buf_init():
 * gw_buf_reserve() fails with GW_ETOOBIG instead. Data lives in
 * [data + off, data + len); gw_buf_consume() advances off and compacts lazily,
 * so a reader can take frames from the front without memmove per frame.
 * The buffer owns its storage; gw_buf_deinit() frees it.
 */
#ifndef GW_BUF_H
#define GW_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_buf {
	uint8_t *data;
	size_t off; /* start of unread data */
	size_t len; /* end of data */
	size_t cap; /* allocated bytes */
	size_t max; /* hard cap on allocated bytes */
} gw_buf_t;

void gw_buf_init(gw_buf_t *b, size_t max);
void gw_buf_deinit(gw_buf_t *b);
/* Ensures room for n more bytes after len. 0, GW_ETOOBIG or GW_ENOMEM. */
int gw_buf_reserve(gw_buf_t *b, size_t n);
/* Appends n bytes. 0, GW_ETOOBIG or GW_ENOMEM; on failure nothing changes. */
int gw_buf_append(gw_buf_t *b, const void *p, size_t n);
/* Drops n bytes from the front. */
void gw_buf_consume(gw_buf_t *b, size_t n);
/* Releases storage if the buffer is empty (idle connections keep no memory). */
void gw_buf_shrink(gw_buf_t *b);

/* Writes what the stream socket fd takes from the front of b (non-blocking,
 * no SIGPIPE) and consumes it. Returns the bytes sent, 0 when the socket is
 * full, or -errno on a write error. */
long gw_buf_send(gw_buf_t *b, int fd);

static inline size_t gw_buf_size(const gw_buf_t *b) { return b->len - b->off; }
static inline uint8_t *gw_buf_head(const gw_buf_t *b) { return b->data + b->off; }
static inline uint8_t *gw_buf_tail(const gw_buf_t *b) { return b->data + b->len; }
static inline size_t gw_buf_room(const gw_buf_t *b) { return b->cap - b->len; }

#endif

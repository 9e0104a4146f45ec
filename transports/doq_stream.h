/*
 * doq_stream.h - sans-I/O DNS-over-QUIC stream rules (RFC 9250 4.2, 4.3).
 *
 * One query per client-initiated bidirectional stream: a 2-byte length
 * prefix, the message, then FIN. A gw_doq_rx_t reassembles what the QUIC
 * stack hands over in whatever pieces the client chose (a prefix split over
 * two STREAM frames, 1-byte frames) and decides, byte for byte, whether the
 * stream is still well-formed. It never touches a socket or ngtcp2; the glue
 * (transports/doq.c) feeds it and turns its verdicts into stream or
 * connection errors.
 *
 * Ownership: the rx owns its message buffer (grown as bytes arrive, capped at
 * the announced length, so announcing 64 KiB costs nothing until it is sent);
 * gw_doq_rx_deinit() frees it. The message returned by gw_doq_rx_msg() is
 * borrowed from the rx.
 */
#ifndef GW_DOQ_STREAM_H
#define GW_DOQ_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/buf.h"

/* RFC 9250 4.3 application error codes. */
enum gw_doq_error {
	GW_DOQ_NO_ERROR = 0x0,
	GW_DOQ_INTERNAL_ERROR = 0x1,
	GW_DOQ_PROTOCOL_ERROR = 0x2,
	GW_DOQ_REQUEST_CANCELLED = 0x3,
	GW_DOQ_EXCESSIVE_LOAD = 0x4,
	GW_DOQ_UNSPECIFIED_ERROR = 0x5,
};

/* Why a stream broke the rules (for logs and tests); every one of them is a
 * DOQ_PROTOCOL_ERROR connection error except GW_DOQ_RX_ENOMEM. */
typedef enum gw_doq_rx_fault {
	GW_DOQ_RX_OK = 0,
	GW_DOQ_RX_EARLY_FIN,   /* FIN before the announced length */
	GW_DOQ_RX_EXTRA_DATA,  /* bytes after the message (a second query too) */
	GW_DOQ_RX_TOO_SHORT,   /* announced length below a DNS header */
	GW_DOQ_RX_NONZERO_ID,  /* RFC 9250 4.2.1: message ID MUST be 0 */
	GW_DOQ_RX_KEEPALIVE,   /* RFC 9250 5.5.2: edns-tcp-keepalive forbidden */
	GW_DOQ_RX_UNI_STREAM,  /* 4.2: a client unidirectional stream */
	GW_DOQ_RX_SERVER_STREAM, /* a bidi stream ID the client cannot open */
	GW_DOQ_RX_ENOMEM,      /* our problem: INTERNAL_ERROR on the stream */
} gw_doq_rx_fault_t;

typedef enum gw_doq_rx_state {
	GW_DOQ_RX_PREFIX, /* 0-1 bytes of the length prefix seen */
	GW_DOQ_RX_BODY,   /* length known, message incomplete */
	GW_DOQ_RX_WAIT_FIN, /* message complete, FIN not yet seen */
	GW_DOQ_RX_READY,  /* message and FIN: a query to answer */
	GW_DOQ_RX_FAILED, /* a fault was reported; feed nothing more */
} gw_doq_rx_state_t;

typedef struct gw_doq_rx {
	gw_doq_rx_state_t state;
	gw_doq_rx_fault_t fault;
	uint8_t prefix[2];
	uint8_t prefix_have;
	uint16_t len;  /* announced message length */
	gw_buf_t msg;  /* message bytes so far */
} gw_doq_rx_t;

void gw_doq_rx_init(gw_doq_rx_t *rx);
void gw_doq_rx_deinit(gw_doq_rx_t *rx);

/*
 * Feeds the next n bytes of the stream (in order, as ngtcp2 delivers them)
 * and whether the client's FIN came with them. n may be 0 (a bare FIN).
 * Returns:
 *   0  more bytes needed
 *   1  a complete query: message + FIN (GW_DOQ_RX_READY); take it with
 *      gw_doq_rx_msg(). Its ID and EDNS options have been checked.
 *   GW_EMALFORMED  the stream broke RFC 9250 (rx->fault says how):
 *      close the connection with DOQ_PROTOCOL_ERROR
 *   GW_ENOMEM      no memory for the message: reset the stream with
 *      DOQ_INTERNAL_ERROR
 * After a negative return or after 1, further feeds return GW_EMALFORMED
 * (bytes after FIN cannot come from QUIC; after a fault nothing counts).
 */
int gw_doq_rx_feed(gw_doq_rx_t *rx, const uint8_t *data, size_t n, bool fin);

/* The complete message (borrowed from rx); valid in state READY. */
const uint8_t *gw_doq_rx_msg(const gw_doq_rx_t *rx, size_t *len);

/*
 * Checks a client-opened stream's ID before any of its data counts
 * (RFC 9000 2.1: bit 0 = initiator, bit 1 = direction). Returns 0 for a
 * client bidirectional stream, else GW_EMALFORMED with *fault set:
 * client unidirectional streams are forbidden by RFC 9250 4.2 even if the
 * transport limit allowed them.
 */
int gw_doq_check_stream_id(int64_t id, gw_doq_rx_fault_t *fault);

/* A short name for a fault, for logs. */
const char *gw_doq_fault_name(gw_doq_rx_fault_t f);

/* RFC 9250 4.3 name of an application error code ("DOQ_PROTOCOL_ERROR"). */
const char *gw_doq_error_name(uint64_t code);

/*
 * Frames an answer for the stream: 2-byte prefix + msg into out (cap bytes).
 * Returns the framed size, or GW_EINVAL (msg over 65535) / GW_ENOSPC.
 */
int gw_doq_frame_answer(const uint8_t *msg, size_t len, uint8_t *out,
			size_t cap);

/*
 * 0-RTT (RFC 9250 4.5; RFC 8446 8: early data can be replayed). With
 * doq.early_data on, a query that arrived (even partly) in 0-RTT packets is
 * answered only if it is a standard QUERY; anything else (NOTIFY, UPDATE,
 * ...) gets REFUSED with Extended DNS Error 26, Too Early. Returns true
 * when msg (the DNS message, len bytes, no prefix) must be refused that
 * way: early and opcode != 0. A message too short for a header is left to
 * the parser (FORMERR), whatever its arrival.
 */
bool gw_doq_early_refused(const uint8_t *msg, size_t len, bool early);

#endif

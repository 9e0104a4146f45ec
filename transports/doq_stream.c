/*
 * doq_stream.c - sans-I/O DNS-over-QUIC stream rules (see doq_stream.h).
 */
#include "doq_stream.h"

#include <string.h>

#include "gateway/dns.h"
#include "gateway/error.h"

void gw_doq_rx_init(gw_doq_rx_t *rx)
{
	memset(rx, 0, sizeof(*rx));
	rx->state = GW_DOQ_RX_PREFIX;
	gw_buf_init(&rx->msg, 0);
}

void gw_doq_rx_deinit(gw_doq_rx_t *rx)
{
	gw_buf_deinit(&rx->msg);
}

static int rx_fail(gw_doq_rx_t *rx, gw_doq_rx_fault_t f)
{
	rx->state = GW_DOQ_RX_FAILED;
	rx->fault = f;
	gw_buf_deinit(&rx->msg);
	return f == GW_DOQ_RX_ENOMEM ? GW_ENOMEM : GW_EMALFORMED;
}

/* The message is whole: the checks RFC 9250 puts on its content. */
static int rx_check_message(gw_doq_rx_t *rx)
{
	const uint8_t *m = gw_buf_head(&rx->msg);
	size_t len = gw_buf_size(&rx->msg);

	/* 4.2.1: "the DNS Message ID MUST be set to 0 ... a DoQ server MUST
	 * treat a non-zero ID as a connection error DOQ_PROTOCOL_ERROR". */
	if (m[0] != 0 || m[1] != 0)
		return rx_fail(rx, GW_DOQ_RX_NONZERO_ID);
	/* 5.5.2: "edns-tcp-keepalive ... MUST NOT be used ... a server that
	 * receives it MUST treat it as a connection error DOQ_PROTOCOL_ERROR".
	 * A message we cannot parse goes on: the pipeline answers FORMERR. */
	gw_dns_msg_t dm;
	if (gw_dns_parse(m, len, &dm) == 0 && dm.has_keepalive)
		return rx_fail(rx, GW_DOQ_RX_KEEPALIVE);
	return 0;
}

int gw_doq_rx_feed(gw_doq_rx_t *rx, const uint8_t *data, size_t n, bool fin)
{
	if (rx->state == GW_DOQ_RX_FAILED || rx->state == GW_DOQ_RX_READY) {
		if (rx->state == GW_DOQ_RX_READY)
			rx_fail(rx, GW_DOQ_RX_EXTRA_DATA);
		return GW_EMALFORMED;
	}
	while (n > 0) {
		switch (rx->state) {
		case GW_DOQ_RX_PREFIX:
			/* The prefix may arrive one byte per STREAM frame. */
			rx->prefix[rx->prefix_have++] = *data++;
			n--;
			if (rx->prefix_have < 2)
				break;
			rx->len = (uint16_t)(rx->prefix[0] << 8 | rx->prefix[1]);
			/* Not even a header: nothing we could answer to. */
			if (rx->len < GW_DNS_HEADER_LEN)
				return rx_fail(rx, GW_DOQ_RX_TOO_SHORT);
			gw_buf_init(&rx->msg, rx->len);
			rx->state = GW_DOQ_RX_BODY;
			break;
		case GW_DOQ_RX_BODY: {
			size_t want = rx->len - gw_buf_size(&rx->msg);
			size_t take = n < want ? n : want;
			if (gw_buf_append(&rx->msg, data, take) < 0)
				return rx_fail(rx, GW_DOQ_RX_ENOMEM);
			data += take;
			n -= take;
			if (gw_buf_size(&rx->msg) == rx->len) {
				int r = rx_check_message(rx);
				if (r < 0)
					return r;
				rx->state = GW_DOQ_RX_WAIT_FIN;
			}
			break;
		}
		case GW_DOQ_RX_WAIT_FIN:
			/* 4.2: one query per stream; anything after the
			 * message, a second query included, is an error. */
			return rx_fail(rx, GW_DOQ_RX_EXTRA_DATA);
		default:
			return GW_EMALFORMED;
		}
	}
	if (!fin)
		return 0;
	if (rx->state != GW_DOQ_RX_WAIT_FIN)
		return rx_fail(rx, GW_DOQ_RX_EARLY_FIN);
	rx->state = GW_DOQ_RX_READY;
	return 1;
}

const uint8_t *gw_doq_rx_msg(const gw_doq_rx_t *rx, size_t *len)
{
	if (rx->state != GW_DOQ_RX_READY) {
		*len = 0;
		return NULL;
	}
	*len = gw_buf_size(&rx->msg);
	return gw_buf_head(&rx->msg);
}

int gw_doq_check_stream_id(int64_t id, gw_doq_rx_fault_t *fault)
{
	*fault = GW_DOQ_RX_OK;
	if (id < 0 || (id & 0x2)) {
		*fault = GW_DOQ_RX_UNI_STREAM;
		return GW_EMALFORMED;
	}
	if (id & 0x1) {
		*fault = GW_DOQ_RX_SERVER_STREAM;
		return GW_EMALFORMED;
	}
	return 0;
}

const char *gw_doq_fault_name(gw_doq_rx_fault_t f)
{
	switch (f) {
	case GW_DOQ_RX_OK: return "ok";
	case GW_DOQ_RX_EARLY_FIN: return "FIN before the announced length";
	case GW_DOQ_RX_EXTRA_DATA: return "data after the message";
	case GW_DOQ_RX_TOO_SHORT: return "message shorter than a DNS header";
	case GW_DOQ_RX_NONZERO_ID: return "message ID is not 0";
	case GW_DOQ_RX_KEEPALIVE: return "edns-tcp-keepalive option";
	case GW_DOQ_RX_UNI_STREAM: return "unidirectional stream";
	case GW_DOQ_RX_SERVER_STREAM: return "server-initiated stream ID";
	case GW_DOQ_RX_ENOMEM: return "out of memory";
	}
	return "?";
}

const char *gw_doq_error_name(uint64_t code)
{
	switch (code) {
	case GW_DOQ_NO_ERROR: return "DOQ_NO_ERROR";
	case GW_DOQ_INTERNAL_ERROR: return "DOQ_INTERNAL_ERROR";
	case GW_DOQ_PROTOCOL_ERROR: return "DOQ_PROTOCOL_ERROR";
	case GW_DOQ_REQUEST_CANCELLED: return "DOQ_REQUEST_CANCELLED";
	case GW_DOQ_EXCESSIVE_LOAD: return "DOQ_EXCESSIVE_LOAD";
	case GW_DOQ_UNSPECIFIED_ERROR: return "DOQ_UNSPECIFIED_ERROR";
	}
	return "unknown";
}

int gw_doq_frame_answer(const uint8_t *msg, size_t len, uint8_t *out,
			size_t cap)
{
	if (len > GW_DNS_MAX_MSG)
		return GW_EINVAL;
	if (cap < len + 2)
		return GW_ENOSPC;
	out[0] = (uint8_t)(len >> 8);
	out[1] = (uint8_t)len;
	memcpy(out + 2, msg, len);
	return (int)(len + 2);
}

bool gw_doq_early_refused(const uint8_t *msg, size_t len, bool early)
{
	/* RFC 1035 4.1.1: OPCODE is bits 1-4 of the third header byte */
	return early && len >= 12 && ((msg[2] >> 3) & 0xf) != 0;
}

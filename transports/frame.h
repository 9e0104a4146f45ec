/*
 * frame.h - RFC 1035 4.2.2 / RFC 7766 length-prefixed framing for TCP and
 * DoT (DoQ uses the same prefix per stream). Sans-I/O: looks at bytes only.
 */
#ifndef GW_FRAME_H
#define GW_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/buf.h"

/* A frame shorter than a DNS header cannot be a query. RFC 7766 leaves it to
 * the server; we close the connection (REQUIREMENTS.md: "pin it"). */
#define GW_FRAME_MIN_MSG 12

/*
 * Looks for one complete frame at the start of buf (len bytes).
 * Returns the frame's total size (2 + message) and sets *msg and *msglen when a
 * whole frame is there; 0 when more bytes are needed; GW_EMALFORMED when the
 * announced length is below GW_FRAME_MIN_MSG (zero-length frames included).
 * Borrows buf; *msg points into it.
 */
int gw_frame_next(const uint8_t *buf, size_t len, const uint8_t **msg,
		  size_t *msglen);

/* Appends the 2-byte prefix and msg to out in one piece: 0, GW_ETOOBIG,
 * GW_ENOMEM, or GW_EINVAL for a message over 65535 bytes. */
int gw_frame_append(gw_buf_t *out, const uint8_t *msg, size_t len);

#endif

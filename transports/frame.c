#include "frame.h"

#include <string.h>

#include "gateway/error.h"

int gw_frame_next(const uint8_t *buf, size_t len, const uint8_t **msg,
		  size_t *msglen)
{
	if (len < 2)
		return 0;
	size_t n = ((size_t)buf[0] << 8) | buf[1];
	if (n < GW_FRAME_MIN_MSG)
		return GW_EMALFORMED;
	if (len - 2 < n)
		return 0;
	*msg = buf + 2;
	*msglen = n;
	return (int)(n + 2);
}

int gw_frame_append(gw_buf_t *out, const uint8_t *msg, size_t len)
{
	if (len > 65535)
		return GW_EINVAL;
	int r = gw_buf_reserve(out, len + 2);
	if (r < 0)
		return r;
	uint8_t *p = gw_buf_tail(out);
	p[0] = (uint8_t)(len >> 8);
	p[1] = (uint8_t)len;
	memcpy(p + 2, msg, len);
	out->len += len + 2;
	return 0;
}

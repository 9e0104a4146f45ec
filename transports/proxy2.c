/*
 * proxy2.c - PROXY protocol v2 header reader. See proxy2.h.
 */
#include "proxy2.h"

#include <netinet/in.h>
#include <string.h>

#include "gateway/error.h"

/* proxy-protocol.txt 2.2: the twelve-byte signature */
static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

enum { CMD_LOCAL = 0, CMD_PROXY = 1 };
enum { FAM_UNSPEC = 0, FAM_INET = 1, FAM_INET6 = 2, FAM_UNIX = 3 };

int gw_proxy2_need(const uint8_t *buf, size_t len, size_t max)
{
	size_t n = len < sizeof(sig) ? len : sizeof(sig);

	if (memcmp(buf, sig, n) != 0)
		return GW_EMALFORMED;
	if (len > 12) {
		/* 13th byte: version 2 in the high nibble, command low */
		if ((buf[12] >> 4) != 2 || (buf[12] & 0xf) > CMD_PROXY)
			return GW_EMALFORMED;
	}
	if (len > 13) {
		/* 14th byte: family high nibble (0..3), protocol low
		 * (0 UNSPEC, 1 STREAM, 2 DGRAM) */
		if ((buf[13] >> 4) > FAM_UNIX || (buf[13] & 0xf) > 2)
			return GW_EMALFORMED;
	}
	if (len < GW_PROXY2_HEADER_LEN)
		return 0;
	size_t total =
	    GW_PROXY2_HEADER_LEN + (size_t)((buf[14] << 8) | buf[15]);
	if (total > max)
		return GW_ETOOBIG;
	return (int)total;
}

int gw_proxy2_parse(const uint8_t *buf, size_t len, gw_proxy2_t *out)
{
	int need = gw_proxy2_need(buf, len, GW_PROXY2_HEADER_LEN + 65535);

	memset(out, 0, sizeof(*out));
	if (need <= 0 || (size_t)need != len)
		return GW_EMALFORMED;
	const uint8_t *a = buf + GW_PROXY2_HEADER_LEN;
	size_t alen = len - GW_PROXY2_HEADER_LEN;
	unsigned fam = buf[13] >> 4;

	if ((buf[12] & 0xf) == CMD_LOCAL) {
		/* 2.2: LOCAL keeps the real endpoints; the block is ignored */
		out->local = true;
		return 0;
	}
	if (fam == FAM_INET) {
		if (alen < 12)
			return GW_EMALFORMED;
		struct sockaddr_in *s = (struct sockaddr_in *)&out->src;
		struct sockaddr_in *d = (struct sockaddr_in *)&out->dst;
		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, a, 4);
		memcpy(&d->sin_addr, a + 4, 4);
		memcpy(&s->sin_port, a + 8, 2);
		memcpy(&d->sin_port, a + 10, 2);
		out->addrlen = sizeof(*s);
		out->has_addr = true;
	} else if (fam == FAM_INET6) {
		if (alen < 36)
			return GW_EMALFORMED;
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&out->dst;
		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, a, 16);
		memcpy(&d->sin6_addr, a + 16, 16);
		memcpy(&s->sin6_port, a + 32, 2);
		memcpy(&d->sin6_port, a + 34, 2);
		out->addrlen = sizeof(*s);
		out->has_addr = true;
	} else if (fam == FAM_UNIX) {
		if (alen < 216)
			return GW_EMALFORMED;
	}
	/* AF_UNSPEC and AF_UNIX: no IP client to speak of; 2.2 says use the
	 * real connection endpoints. */
	return 0;
}

int gw_proxy2_strip_dgram(const uint8_t *buf, size_t len, gw_proxy2_t *out)
{
	memset(out, 0, sizeof(*out));
	if (len < GW_PROXY2_HEADER_LEN)
		return GW_EMALFORMED; /* no room for the fixed part */
	/* the datagram is the bound: a length past it is a cut header */
	int need = gw_proxy2_need(buf, len, len);
	if (need < GW_PROXY2_HEADER_LEN)
		return GW_EMALFORMED;
	int r = gw_proxy2_parse(buf, (size_t)need, out);
	return r < 0 ? r : need;
}

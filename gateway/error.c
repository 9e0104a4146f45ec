/*
 * error.c - names for GW_E* codes.
 */
#include "error.h"

#include <string.h>

const char *gw_strerror(int err)
{
	switch (err) {
	case GW_OK:
		return "success";
	case GW_EMALFORMED:
		return "malformed input";
	case GW_ETOOBIG:
		return "too big";
	case GW_EUPSTREAM:
		return "no upstream answered";
	case GW_ETLS:
		return "TLS failure";
	case GW_ECLOSED:
		return "connection closed by peer";
	case GW_ECONFIG:
		return "invalid configuration";
	}
	/* The rest mirror -errno; the usual ones are spelled out so logs read
	 * the same across libcs. */
	switch (-err) {
	case ENOMEM:
		return "out of memory";
	case EINVAL:
		return "invalid argument";
	case EAGAIN:
		return "try again";
	case ETIMEDOUT:
		return "timed out";
	case ENOSPC:
		return "no space left";
	}
	/* glibc's table of static strings, safe from any thread */
	const char *desc = err < 0 ? strerrordesc_np(-err) : NULL;
	return desc ? desc : "unknown error";
}

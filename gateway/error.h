/*
 * error.h - dnsgw error codes.
 *
 * Every fallible function returns 0 (or a non-negative count) on success and a
 * negative GW_E* code on failure. Codes mirror -errno where one fits; the rest
 * are project specific and live below -1000 so they never collide with errno.
 */
#ifndef GW_ERROR_H
#define GW_ERROR_H

#include <errno.h>

#define GW_OK 0
#define GW_ENOMEM (-ENOMEM)
#define GW_EINVAL (-EINVAL)
#define GW_EAGAIN (-EAGAIN)
#define GW_ETIMEDOUT (-ETIMEDOUT)
#define GW_ENOSPC (-ENOSPC)
#define GW_EMALFORMED (-1001) /* input violates the protocol */
#define GW_ETOOBIG (-1002)    /* input or output past a configured cap */
#define GW_EUPSTREAM (-1003)  /* no upstream could answer */
#define GW_ETLS (-1004)       /* TLS library failure */
#define GW_ECLOSED (-1005)    /* peer closed the connection */
#define GW_ECONFIG (-1006)    /* invalid configuration */

/* Returns a static, human-readable name for a GW_E* code (or -errno). */
const char *gw_strerror(int err);

#endif

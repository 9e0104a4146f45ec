/*
 * privdrop.h - giving up root after start-up (`--user NAME`, `user:`).
 *
 * main() calls gw_privdrop() once every socket is bound and every
 * certificate file has been read, before the worker threads start: from
 * then on the process has the user's uid, primary gid and supplementary
 * groups and cannot get root back. A certificate reload (SIGHUP or a
 * change on disk) and a config reload then read the files as that user,
 * so they must be readable by it (README: "Reload, drain and running as a
 * service").
 */
#ifndef GW_PRIVDROP_H
#define GW_PRIVDROP_H

#include <stddef.h>

/*
 * Switches to user (a name from the passwd database, or a numeric uid).
 * NULL or "" does nothing and returns 0. Not root while a user is asked
 * for: also 0 when we already are that user, else GW_EINVAL + err (a
 * process cannot become someone else without privilege). Returns 0, or a
 * negative GW_E* code and one line in err naming the user and the call
 * that failed. Verifies afterwards that root cannot be regained.
 * Call with one thread running (glibc's setuid() does reach every thread,
 * but no worker should ever run as root).
 */
int gw_privdrop(const char *user, char *err, size_t errlen);

/* For `dnsgw -t`: only checks that user names an existing user (or is a
 * numeric uid, or NULL/""). 0 or GW_EINVAL + err. */
int gw_privdrop_check(const char *user, char *err, size_t errlen);

#endif

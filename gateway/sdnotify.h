/*
 * sdnotify.h - systemd's readiness protocol (sd_notify(3)) without libsystemd.
 *
 * With Type=notify, systemd passes the path of a datagram socket in
 * $NOTIFY_SOCKET and waits for "READY=1" before it counts the service as
 * started; "RELOADING=1" ... "READY=1" brackets a reload and "STOPPING=1"
 * announces the shutdown. The protocol is one newline-separated
 * KEY=VALUE message per datagram on an AF_UNIX socket; a path starting
 * with '@' names the Linux abstract namespace (the '@' becomes a NUL).
 *
 * Nothing here allocates or keeps state: each call opens a socket, sends
 * one datagram and closes it, so it is callable from any thread (dnsgw
 * calls it from the main thread only) but not from a signal handler.
 */
#ifndef GW_SDNOTIFY_H
#define GW_SDNOTIFY_H

/*
 * Sends state (e.g. "READY=1", borrowed) to the socket named by the
 * NOTIFY_SOCKET environment variable. Returns 1 when sent, 0 when the
 * variable is unset or empty (not run by systemd: nothing to do), or a
 * negative GW_E* code (GW_EINVAL for a path that is neither absolute nor
 * '@'-abstract or too long for sockaddr_un; -errno of socket/sendto).
 */
int gw_sd_notify(const char *state);

/* The same with the socket path given explicitly (path as in
 * $NOTIFY_SOCKET; NULL or "" returns 0). For tests. */
int gw_sd_notify_to(const char *path, const char *state);

#endif

/*
 * do53.h - classic DNS over UDP (RFC 1035): the sidecar case.
 *
 * Datagrams are read in batches (recvmmsg); each becomes a query whose
 * answer is sent back to the sender from the same socket, truncated with
 * TC=1 past the client's EDNS payload size (512 without EDNS). On a PROXY
 * v2 listener a trusted proxy's datagrams start with a header naming the
 * client (gw_policy_proxy_dgram); the answer goes back to the proxy, bare.
 */
#ifndef GW_DO53_H
#define GW_DO53_H

#include "gateway/worker.h"

extern const gw_listener_ops_t gw_udp_listener_ops;

#endif

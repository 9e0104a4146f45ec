/*
 * connlimit.h - per-client and global connection counters shared by all
 * workers without locks.
 *
 * Clients are counted in a fixed table of atomic counters indexed by a keyed
 * hash of the client's IP address (the port is ignored). Two clients whose
 * hashes collide share a counter; the table is large enough that this only
 * makes the cap stricter for a few unlucky addresses, never looser.
 */
#ifndef GW_CONNLIMIT_H
#define GW_CONNLIMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct gw_connlimit gw_connlimit_t;

gw_connlimit_t *gw_connlimit_new(uint32_t per_client, uint32_t global);
void gw_connlimit_free(gw_connlimit_t *cl);
/* Takes a slot for addr; false (nothing taken) when a cap is reached. */
bool gw_connlimit_acquire(gw_connlimit_t *cl, const struct sockaddr *addr);
/* Returns the slot taken by a successful acquire for the same addr. */
void gw_connlimit_release(gw_connlimit_t *cl, const struct sockaddr *addr);
uint32_t gw_connlimit_total(const gw_connlimit_t *cl);

#endif

/*
 * pending.h - sans-I/O table of the queries in flight on one pooled upstream
 * connection (TCP or TLS): which message IDs are taken, and which query each
 * one belongs to, so answers are matched out of order (RFC 7766 6.2.1.1).
 *
 * An ID stays taken from the moment its query is queued for writing until an
 * answer with that ID arrives or the connection closes - also when the query
 * itself is gone (timed out or cancelled): such a slot is an "orphan". A late
 * answer then meets an orphan and is dropped, and the ID cannot be handed to a
 * newer query while the upstream may still answer the old one. This is what
 * "no in-flight ID is ever reused" means on a connection, 16-bit wrap
 * included: IDs come from a 65536-bit set (gw_up_ids_t), not a counter.
 *
 * Capacity: at most `max` slots (live + orphans); gw_up_pend_add() refuses
 * beyond it. The map is open addressing with linear probing and backward-shift
 * deletion (no tombstones), sized to a power of two >= 2 * max.
 *
 * Ownership: the table stores the caller's pointers, never dereferences or
 * frees them. One table per connection, one thread.
 */
#ifndef GW_UP_PENDING_H
#define GW_UP_PENDING_H

#include <stdbool.h>
#include <stdint.h>

#include "select.h"

typedef struct gw_up_pend_slot {
	void *ptr;     /* the query; NULL for an orphan */
	uint16_t id;
	bool used;
} gw_up_pend_slot_t;

typedef struct gw_up_pend {
	gw_up_ids_t ids;
	gw_up_pend_slot_t *slot;
	unsigned mask;    /* slots - 1 */
	unsigned max;     /* live + orphans allowed */
	unsigned live;    /* slots with a query */
	unsigned orphans; /* slots whose query is gone */
} gw_up_pend_t;

/* max in 1..65535. 0 or GW_ENOMEM. */
int gw_up_pend_init(gw_up_pend_t *t, unsigned max);
void gw_up_pend_deinit(gw_up_pend_t *t);

/* Room for one more query? */
static inline bool gw_up_pend_full(const gw_up_pend_t *t)
{
	return t->live + t->orphans >= t->max;
}

/* Takes a random free ID for ptr (non-NULL). The ID, or GW_ENOSPC. */
int gw_up_pend_add(gw_up_pend_t *t, gw_up_rng_t *r, void *ptr);

/* The live query holding id, or NULL (unknown ID or orphan). */
void *gw_up_pend_get(const gw_up_pend_t *t, uint16_t id);
/* True when id is taken (live or orphan). */
bool gw_up_pend_busy(const gw_up_pend_t *t, uint16_t id);

/* The answer for id arrived (or the caller gives up on it): frees the ID.
 * Returns the query it belonged to, NULL for an orphan or unknown ID. */
void *gw_up_pend_remove(gw_up_pend_t *t, uint16_t id);

/* The query holding id is gone but the upstream may still answer it: the ID
 * stays taken. No-op for an unknown ID or an orphan. */
void gw_up_pend_orphan(gw_up_pend_t *t, uint16_t id);

/* Removes and returns some live query (its ID in *id), or NULL when none is
 * left; used to fail everything on a connection that died. */
void *gw_up_pend_pop_live(gw_up_pend_t *t, uint16_t *id);

#endif

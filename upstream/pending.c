/*
 * pending.c - per-connection table of queries in flight. See pending.h.
 */
#include "pending.h"

#include <stdlib.h>

#include "gateway/error.h"

int gw_up_pend_init(gw_up_pend_t *t, unsigned max)
{
	unsigned n = 8;

	if (max == 0 || max > 65535)
		return GW_EINVAL;
	while (n < 2 * max)
		n <<= 1;
	gw_up_ids_init(&t->ids);
	t->slot = calloc(n, sizeof(*t->slot));
	if (!t->slot)
		return GW_ENOMEM;
	t->mask = n - 1;
	t->max = max;
	t->live = 0;
	t->orphans = 0;
	return 0;
}

void gw_up_pend_deinit(gw_up_pend_t *t)
{
	free(t->slot);
	t->slot = NULL;
	t->live = t->orphans = 0;
}

/* IDs are uniformly random already: the low bits are a fine hash. */
static unsigned home(const gw_up_pend_t *t, uint16_t id)
{
	return ((unsigned)id * 0x9e3779b1u >> 7) & t->mask;
}

static gw_up_pend_slot_t *find(const gw_up_pend_t *t, uint16_t id)
{
	if (!t->slot || !gw_up_ids_busy(&t->ids, id))
		return NULL;
	for (unsigned i = home(t, id);; i = (i + 1) & t->mask) {
		gw_up_pend_slot_t *s = &t->slot[i];
		if (!s->used)
			return NULL;
		if (s->id == id)
			return s;
	}
}

int gw_up_pend_add(gw_up_pend_t *t, gw_up_rng_t *r, void *ptr)
{
	int id;
	unsigned i;

	if (!ptr)
		return GW_EINVAL;
	if (gw_up_pend_full(t))
		return GW_ENOSPC;
	id = gw_up_ids_alloc(&t->ids, r);
	if (id < 0)
		return id;
	for (i = home(t, (uint16_t)id); t->slot[i].used; i = (i + 1) & t->mask)
		;
	t->slot[i].used = true;
	t->slot[i].id = (uint16_t)id;
	t->slot[i].ptr = ptr;
	t->live++;
	return id;
}

void *gw_up_pend_get(const gw_up_pend_t *t, uint16_t id)
{
	const gw_up_pend_slot_t *s = find(t, id);

	return s ? s->ptr : NULL;
}

bool gw_up_pend_busy(const gw_up_pend_t *t, uint16_t id)
{
	return gw_up_ids_busy(&t->ids, id);
}

/* Backward-shift deletion keeps every probe chain unbroken. */
static void erase(gw_up_pend_t *t, gw_up_pend_slot_t *s)
{
	unsigned hole = (unsigned)(s - t->slot);

	for (unsigned j = (hole + 1) & t->mask; t->slot[j].used;
	     j = (j + 1) & t->mask) {
		unsigned h = home(t, t->slot[j].id);
		/* Move j into the hole unless its home lies cyclically in
		 * (hole, j]: then it is already as close as it can be. */
		bool stays = hole <= j ? (h > hole && h <= j)
				       : (h > hole || h <= j);
		if (!stays) {
			t->slot[hole] = t->slot[j];
			hole = j;
		}
	}
	t->slot[hole].used = false;
	t->slot[hole].ptr = NULL;
}

void *gw_up_pend_remove(gw_up_pend_t *t, uint16_t id)
{
	gw_up_pend_slot_t *s = find(t, id);
	void *ptr;

	if (!s)
		return NULL;
	ptr = s->ptr;
	if (ptr)
		t->live--;
	else
		t->orphans--;
	gw_up_ids_release(&t->ids, id);
	erase(t, s);
	return ptr;
}

void gw_up_pend_orphan(gw_up_pend_t *t, uint16_t id)
{
	gw_up_pend_slot_t *s = find(t, id);

	if (!s || !s->ptr)
		return;
	s->ptr = NULL;
	t->live--;
	t->orphans++;
}

void *gw_up_pend_pop_live(gw_up_pend_t *t, uint16_t *id)
{
	if (!t->slot || t->live == 0)
		return NULL;
	for (unsigned i = 0; i <= t->mask; i++) {
		if (t->slot[i].used && t->slot[i].ptr) {
			*id = t->slot[i].id;
			return gw_up_pend_remove(t, *id);
		}
	}
	return NULL;
}

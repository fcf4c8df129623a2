/* SPDX-License-Identifier: MIT */
/* The central dispatch queue: one FIFO per priority level plus a bitmap of
 * non-empty levels, so pop is "lowest set bit" and ordering is exactly
 * (priority, seq). Nodes come from a pool that only grows: no allocation per
 * event once warm. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/bus_internal.h"

#define CHUNK_NODES 256

int prioq_init(struct prioq *pq)
{
        memset(pq, 0, sizeof(*pq));
        return 0;
}

void prioq_done(struct prioq *pq)
{
        struct qnode *n;

        while ((n = prioq_pop(pq)))
                prioq_node_release(pq, n);
        for (size_t i = 0; i < pq->nchunks; i++)
                free(pq->chunks[i]);
        free(pq->chunks);
        memset(pq, 0, sizeof(*pq));
}

static int grow(struct prioq *pq)
{
        struct qnode *chunk;

        if (pq->nchunks == pq->chunks_cap) {
                size_t ncap = pq->chunks_cap ? pq->chunks_cap * 2 : 8;
                void **c = realloc(pq->chunks, ncap * sizeof(*c));
                if (!c)
                        return -ENOMEM;
                pq->chunks = c;
                pq->chunks_cap = ncap;
        }
        chunk = aligned_alloc(_Alignof(struct qnode), CHUNK_NODES * sizeof(*chunk));
        if (!chunk)
                return -ENOMEM;
        pq->chunks[pq->nchunks++] = chunk;
        for (size_t i = 0; i < CHUNK_NODES; i++) {
                chunk[i].next = pq->free;
                pq->free = &chunk[i];
        }
        return 0;
}

struct qnode *prioq_node_new(struct prioq *pq)
{
        struct qnode *n;

        if (!pq->free && grow(pq) < 0)
                return NULL;
        n = pq->free;
        pq->free = n->next;
        n->next = NULL;
        n->fd = -1;
        n->moved = false;
        n->payload = NULL;
        n->payload_len = 0;
        return n;
}

void prioq_node_release(struct prioq *pq, struct qnode *n)
{
        if (n->fd >= 0)
                close(n->fd);
        free(n->payload);
        n->fd = -1;
        n->payload = NULL;
        n->next = pq->free;
        pq->free = n;
}

void prioq_push(struct prioq *pq, struct qnode *n)
{
        uint8_t p = n->ev.hdr.priority;

        n->next = NULL;
        if (pq->lvl[p].tail)
                pq->lvl[p].tail->next = n;
        else
                pq->lvl[p].head = n;
        pq->lvl[p].tail = n;
        pq->nonempty[p >> 6] |= UINT64_C(1) << (p & 63);
        pq->count++;
}

struct qnode *prioq_pop(struct prioq *pq)
{
        for (unsigned w = 0; w < 4; w++) {
                if (!pq->nonempty[w])
                        continue;
                unsigned p = w * 64 + (unsigned)__builtin_ctzll(pq->nonempty[w]);
                struct qnode *n = pq->lvl[p].head;
                pq->lvl[p].head = n->next;
                if (!n->next) {
                        pq->lvl[p].tail = NULL;
                        pq->nonempty[w] &= ~(UINT64_C(1) << (p & 63));
                }
                n->next = NULL;
                pq->count--;
                return n;
        }
        return NULL;
}

const struct qnode *prioq_peek(const struct prioq *pq)
{
        for (unsigned w = 0; w < 4; w++)
                if (pq->nonempty[w])
                        return pq->lvl[w * 64 + (unsigned)__builtin_ctzll(pq->nonempty[w])].head;
        return NULL;
}

/* SPDX-License-Identifier: MIT */
/* The memctx engine (src/adapters/memctx_engine.c) with a RAM source of the
 * test's own: a buffer wrapped by libvmie with a tiny page table. Pins what
 * the real memctx adapter and its stub both rely on:
 *  - small writes run inline, large ones on the worker, both ACKed once;
 *  - the adapter's target() refusal is the ACK; cr3 0 needs a root;
 *  - a MEMWRITE cr3 is masked to bits 12..51; a root outside RAM is -EINVAL;
 *  - a shrunk RAM file: -EIO, nothing written;
 *  - close: the ACK a detach refused is re-sent, queued writes get
 *    -ECANCELED, in that order, nothing twice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vmie/vmie.h>
#include <vmsig/adapter.h>
#include <vmsig/event.h>

#include "adapters/memctx_engine.h"

#define RAM_SIZE (64u * 1024u)
#define ROOT     UINT64_C(0x1000)
#define VA_RW    UINT64_C(0x0)    /* -> gpa 0x8000, writable */
#define VA_RO    UINT64_C(0x1000) /* -> gpa 0x9000, read-only */
#define GPA_RW   UINT64_C(0x8000)
#define PTE_P_RW UINT64_C(0x3)

struct fx {
        struct vmsig_emit_sink sink; /* first: emit casts back */
        pthread_mutex_t mu;
        pthread_cond_t cv;
        struct vmsig_event ev[64];
        unsigned n;
        int emit_ret;

        uint8_t *ram;
        struct vmie_ram *vram;
        struct mce *e;
        int target_err;
        bool shrunk;
        /* the bootstrap blocks until released */
        bool boot_running, boot_release;
        atomic_uint lease_gen; /* what the core's sink->lease_generation says */
};

static uint32_t f_lease_generation(const struct vmsig_emit_sink *sink, int lease_class)
{
        struct fx *f = (struct fx *)sink;

        return lease_class == VMSIG_LEASE_MEMWRITE ? atomic_load(&f->lease_gen) : 0;
}

static int f_emit(const struct vmsig_emit_sink *sink, const struct vmsig_event *ev)
{
        struct fx *f = (struct fx *)sink;
        int r;

        pthread_mutex_lock(&f->mu);
        if (f->n < 64)
                f->ev[f->n++] = *ev;
        r = f->emit_ret;
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
        return r;
}

static void f_boot(void *ud)
{
        struct fx *f = ud;

        pthread_mutex_lock(&f->mu);
        f->boot_running = true;
        pthread_cond_broadcast(&f->cv);
        while (!f->boot_release)
                pthread_cond_wait(&f->cv, &f->mu);
        pthread_mutex_unlock(&f->mu);
}

static int f_target(void *ud, struct mce_target *t, char *msg, size_t len)
{
        struct fx *f = ud;

        if (f->target_err) {
                snprintf(msg, len, "not yet");
                return f->target_err;
        }
        t->ram = f->vram;
        t->root = ROOT;
        t->levels = 4;
        return 0;
}

static int f_shrunk(void *ud, char *msg, size_t len)
{
        struct fx *f = ud;

        if (!f->shrunk)
                return 0;
        snprintf(msg, len, "shrank");
        return -EIO;
}

static int f_write(void *ud, const void *buf, size_t len, uint64_t off)
{
        struct fx *f = ud;

        memcpy(f->ram + off, buf, len);
        return 0;
}

static const struct mce_ops f_ops = {
    .boot = f_boot, .target = f_target, .shrunk = f_shrunk, .write = f_write};

static struct fx *fx_new(void)
{
        struct fx *f = calloc(1, sizeof(*f));
        const struct vmie_range r = {0, RAM_SIZE, 0};
        uint64_t e;

        assert_non_null(f);
        f->sink.emit = f_emit;
        f->sink.lease_generation = f_lease_generation;
        pthread_mutex_init(&f->mu, NULL);
        pthread_cond_init(&f->cv, NULL);
        f->ram = calloc(1, RAM_SIZE);
        assert_non_null(f->ram);
        /* PML4[0] -> PDPT 0x2000 [0] -> PD 0x3000 [0] -> PT 0x4000 */
        e = 0x2000 | PTE_P_RW;
        memcpy(f->ram + 0x1000, &e, 8);
        e = 0x3000 | PTE_P_RW;
        memcpy(f->ram + 0x2000, &e, 8);
        e = 0x4000 | PTE_P_RW;
        memcpy(f->ram + 0x3000, &e, 8);
        e = GPA_RW | PTE_P_RW;
        memcpy(f->ram + 0x4000, &e, 8);
        e = 0x9000 | 0x1; /* present, read-only */
        memcpy(f->ram + 0x4008, &e, 8);
        assert_int_equal(vmie_ram_wrap(f->ram, RAM_SIZE, &r, 1, 0, &f->vram), 0);
        assert_int_equal(mce_new(&f_ops, f, &f->e), 0);
        assert_int_equal(mce_start(f->e, &f->sink), 0);
        assert_int_equal(mce_start(f->e, &f->sink), -EALREADY);
        return f;
}

static void fx_free(struct fx *f)
{
        mce_free(f->e);
        vmie_ram_free(f->vram);
        free(f->ram);
        pthread_cond_destroy(&f->cv);
        pthread_mutex_destroy(&f->mu);
        free(f);
}

static int submit(struct fx *f, uint64_t corr, uint64_t cr3, uint64_t addr, uint32_t mflags, const void *data,
                  uint32_t len)
{
        const size_t head = offsetof(struct vmsig_memwrite_body, data);
        struct vmsig_memwrite_body b;
        struct vmsig_event ev;
        bool inl = len <= sizeof(b.data);

        memset(&b, 0, sizeof(b));
        b.addr = addr;
        b.len = len;
        b.flags = mflags;
        if (inl)
                memcpy(b.data, data, len);
        vmsig_event_init(&ev, VMSIG_EV_CMD_MEMWRITE, 1, VMSIG_SRC_CORE);
        ev.hdr.corr = corr;
        ev.hdr.peer = 9;
        ev.hdr.cr3 = cr3;
        if (!inl)
                ev.hdr.flags |= VMSIG_F_SRC_PAYLOAD;
        vmsig_event_set_body(&ev, &b, inl ? head + len : head);
        return mce_submit(f->e, &ev, inl ? NULL : data, inl ? 0 : len);
}

/* The ACK for corr, waited for (the worker may still be at it). */
static struct vmsig_ack_body ack_of(struct fx *f, uint64_t corr)
{
        struct vmsig_ack_body a;
        struct timespec until;
        unsigned hits = 0;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        pthread_mutex_lock(&f->mu);
        for (;;) {
                for (unsigned i = 0; i < f->n; i++)
                        if (f->ev[i].hdr.kind == VMSIG_EV_ACT_ACK && f->ev[i].hdr.corr == corr) {
                                memcpy(&a, f->ev[i].body, sizeof(a));
                                hits++;
                        }
                if (hits || pthread_cond_timedwait(&f->cv, &f->mu, &until) == ETIMEDOUT)
                        break;
        }
        pthread_mutex_unlock(&f->mu);
        assert_int_equal(hits, 1); /* exactly one */
        return a;
}

static void test_writes(void **state)
{
        struct fx *f = fx_new();
        struct vmsig_ack_body a;
        uint8_t big[8192];

        /* inline: done before submit returns */
        assert_int_equal(submit(f, 1, 0, VA_RW + 16, 0, "HELLO", 5), VMSIG_SUBMIT_ACCEPTED);
        assert_memory_equal(f->ram + GPA_RW + 16, "HELLO", 5);
        a = ack_of(f, 1);
        assert_int_equal(a.result, 0);
        assert_int_equal(a.value, 5);
        assert_string_equal(a.msg, "wrote 5 bytes at 0x10");

        /* past the inline size: the worker; physical */
        memset(big, 0x5a, sizeof(big));
        assert_int_equal(submit(f, 2, 0, 0xa000, VMSIG_MEMWRITE_PHYS, big, sizeof(big)),
                         VMSIG_SUBMIT_ACCEPTED);
        a = ack_of(f, 2);
        assert_int_equal(a.result, 0);
        assert_memory_equal(f->ram + 0xa000, big, sizeof(big));
        assert_string_equal(a.msg, "wrote 8192 bytes at gpa 0xa000");

        /* a raw cr3 with PCID and high bits: the root is bits 12..51 */
        assert_int_equal(submit(f, 3, ROOT | 0x5 | (UINT64_C(1) << 63), VA_RW, 0, "CR3", 3), 0);
        assert_int_equal(ack_of(f, 3).result, 0);
        assert_memory_equal(f->ram + GPA_RW, "CR3", 3);

        /* refusals; nothing changes */
        uint8_t *snap = malloc(RAM_SIZE);
        assert_non_null(snap);
        memcpy(snap, f->ram, RAM_SIZE);
        assert_int_equal(submit(f, 10, 0x100000, VA_RW, 0, "X", 1), 0);
        a = ack_of(f, 10);
        assert_int_equal(a.result, -EINVAL);
        assert_string_equal(a.msg, "bad cr3 0x100000: root 0x100000 outside guest RAM");
        assert_int_equal(submit(f, 11, 0, VA_RW + 4090, 0, "0123456789", 10), 0);
        a = ack_of(f, 11);
        assert_int_equal(a.result, -EACCES);
        assert_string_equal(a.msg, "read-only page at 0x1000");
        assert_int_equal(submit(f, 12, 0, 0x2000, 0, "X", 1), 0);
        assert_int_equal(ack_of(f, 12).result, -EFAULT);
        assert_int_equal(submit(f, 13, 0, RAM_SIZE - 2, VMSIG_MEMWRITE_PHYS, "XXXX", 4), 0);
        a = ack_of(f, 13);
        assert_int_equal(a.result, -EFAULT);
        assert_string_equal(a.msg, "not RAM at gpa 0x10000");
        f->target_err = -ENOTCONN;
        assert_int_equal(submit(f, 14, 0, VA_RW, 0, "X", 1), 0);
        a = ack_of(f, 14);
        assert_int_equal(a.result, -ENOTCONN);
        assert_string_equal(a.msg, "not yet");
        f->target_err = 0;
        f->shrunk = true;
        assert_int_equal(submit(f, 15, 0, VA_RW, 0, "X", 1), 0);
        a = ack_of(f, 15);
        assert_int_equal(a.result, -EIO);
        assert_string_equal(a.msg, "shrank");
        f->shrunk = false;
        assert_memory_equal(f->ram, snap, RAM_SIZE);
        free(snap);

        /* not a MEMWRITE; malformed */
        struct vmsig_event ev;
        vmsig_event_init(&ev, VMSIG_EV_CMD_POWER, 1, VMSIG_SRC_CORE);
        assert_int_equal(mce_submit(f->e, &ev, NULL, 0), VMSIG_SUBMIT_NOT_MINE);
        assert_int_equal(submit(f, 16, 0, VA_RW, 0, "", 0), -EINVAL);
        fx_free(f);
}

static void test_close_answers_everything(void **state)
{
        struct fx *f = fx_new();
        struct vmsig_ack_body a;

        /* hold the worker in a bootstrap: writes queue behind it */
        mce_lock(f->e);
        mce_set_boot_locked(f->e, true);
        mce_unlock(f->e);
        pthread_mutex_lock(&f->mu);
        while (!f->boot_running)
                pthread_cond_wait(&f->cv, &f->mu);
        pthread_mutex_unlock(&f->mu);
        for (unsigned i = 0; i < 3; i++)
                assert_int_equal(submit(f, 20 + i, 0, VA_RW + i, 0, "Q", 1), VMSIG_SUBMIT_ACCEPTED);

        /* detached meanwhile: the first write happens, its ACK is refused,
         * the worker starts nothing more */
        pthread_mutex_lock(&f->mu);
        f->emit_ret = -ESHUTDOWN;
        f->boot_release = true;
        pthread_cond_broadcast(&f->cv);
        while (f->n < 1)
                pthread_cond_wait(&f->cv, &f->mu);
        f->emit_ret = 0; /* close(): the core lets ACKs through */
        f->n = 0;
        pthread_mutex_unlock(&f->mu);

        mce_stop(f->e);
        assert_int_equal(f->n, 3);
        memcpy(&a, f->ev[0].body, sizeof(a));
        assert_int_equal(f->ev[0].hdr.corr, 20); /* re-sent first */
        assert_int_equal(a.result, 0);
        for (unsigned i = 1; i < 3; i++) {
                memcpy(&a, f->ev[i].body, sizeof(a));
                assert_int_equal(f->ev[i].hdr.corr, 20 + i);
                assert_int_equal(a.result, -ECANCELED);
                assert_string_equal(a.msg, "not applied: the VM's memctx adapter was detached first");
        }
        assert_int_equal(f->ram[GPA_RW], 'Q');
        assert_int_equal(f->ram[GPA_RW + 1], 0); /* never applied */
        mce_stop(f->e);                          /* idempotent: nothing twice */
        assert_int_equal(f->n, 3);
        assert_int_equal(submit(f, 30, 0, VA_RW, 0, "X", 1), -ENOTCONN);
        fx_free(f);
}

/* A write queued behind the worker runs only if the memwrite lease it was
 * accepted under has not ended meanwhile (issue 9: a lease that ends must
 * cancel what its holder queued). */
static void test_lease_end_cancels_queued(void **state)
{
        struct fx *f = fx_new();
        struct vmsig_ack_body a;

        mce_lock(f->e);
        mce_set_boot_locked(f->e, true);
        mce_unlock(f->e);
        pthread_mutex_lock(&f->mu);
        while (!f->boot_running)
                pthread_cond_wait(&f->cv, &f->mu);
        pthread_mutex_unlock(&f->mu);

        assert_int_equal(submit(f, 40, 0, VA_RW, 0, "L", 1), VMSIG_SUBMIT_ACCEPTED);
        atomic_fetch_add(&f->lease_gen, 1); /* the sender's lease ends */
        assert_int_equal(submit(f, 41, 0, VA_RW + 1, 0, "M", 1), VMSIG_SUBMIT_ACCEPTED); /* a new lease */

        pthread_mutex_lock(&f->mu);
        f->boot_release = true;
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);

        a = ack_of(f, 40);
        assert_int_equal(a.result, -ECANCELED);
        assert_string_equal(a.msg, "not applied: the sender's memwrite lease ended before the write ran");
        a = ack_of(f, 41);
        assert_int_equal(a.result, 0);
        assert_int_equal(f->ram[GPA_RW], 0); /* never applied */
        assert_int_equal(f->ram[GPA_RW + 1], 'M');
        fx_free(f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_writes),
            cmocka_unit_test(test_close_answers_everything),
            cmocka_unit_test(test_lease_end_cancels_queued),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

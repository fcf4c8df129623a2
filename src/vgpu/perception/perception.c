/* SPDX-License-Identifier: MIT */
/* The reader object: options, lifetime, state, the producer's header as
 * last seen, counters. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static uint64_t ram_pages(struct vmie_ram *ram)
{
        uint64_t n = 0;
        for (size_t i = 0; i < vmie_ram_nranges(ram); i++) {
                struct vmie_range r;
                if (vmie_ram_range(ram, i, &r) == 0)
                        n += r.len / VGPU_PAGE_SIZE;
        }
        return n;
}

static void use_ram(struct vgpu_perception *p, struct vmie_ram *ram)
{
        p->ram = ram;
        p->mapped = vmie_ram_is_mapped(ram) == 1;
        p->ram_pages = ram_pages(ram);
}

int vgpu_perception_new(struct vmie_ram *ram, const struct vgpu_perception_options *opts,
                        struct vgpu_perception **ret)
{
        struct vgpu_perception *p;

        if (!ram || !ret)
                return -EINVAL;
        if (opts && (opts->flags & ~(unsigned)VGPU_PERCEPTION_VERIFY))
                return -EINVAL;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        if (opts)
                p->opt = *opts;
        if (!p->opt.torn_retries)
                p->opt.torn_retries = 3;
        if (!p->opt.rescan_min_ms)
                p->opt.rescan_min_ms = 500;
        if (!p->opt.stale_ms)
                p->opt.stale_ms = 2000;
        if (!p->opt.scan_chunk_size)
                p->opt.scan_chunk_size = 2u << 20;
        p->opt.scan_chunk_size &= ~(VGPU_PAGE_SIZE - 1);
        if (p->opt.scan_chunk_size < VGPU_PAGE_SIZE)
                p->opt.scan_chunk_size = VGPU_PAGE_SIZE;
        p->scratch = malloc((size_t)VGPUP_RUN_PAGES * VGPU_PAGE_SIZE);
        if (!p->scratch) {
                free(p);
                return -ENOMEM;
        }
        use_ram(p, ram);
        p->force_scan = true;
        *ret = p;
        return 0;
}

struct vgpu_perception *vgpu_perception_free(struct vgpu_perception *p)
{
        if (!p)
                return NULL;
        vgpup_forget(p);
        free(p->scratch);
        free(p->spans);
        free(p);
        return NULL;
}

int vgpu_perception_reset(struct vgpu_perception *p, struct vmie_ram *ram)
{
        if (!p)
                return -EINVAL;
        vgpup_forget(p);
        if (ram)
                use_ram(p, ram);
        /* A reset guest starts its clock again: old verdicts mean nothing. */
        p->ndead = 0;
        p->dead_next = 0;
        p->force_scan = true;
        p->quick_stale = false;
        return 0;
}

int vgpu_perception_discover(struct vgpu_perception *p)
{
        if (!p)
                return -EINVAL;
        return vgpup_scan(p);
}

enum vgpu_perception_state vgpu_perception_state(const struct vgpu_perception *p)
{
        return p && p->ready ? VGPU_PERCEPTION_READY : VGPU_PERCEPTION_NO_PRODUCER;
}

int vgpu_perception_producer(struct vgpu_perception *p, struct vgpu_producer_info *ret)
{
        struct vgpu_header h;
        int r;

        if (!p || !ret)
                return -EINVAL;
        if ((r = vgpup_ensure(p)) < 0)
                return r;
        if ((r = vgpup_read_header(p, &h)) < 0)
                return r == -ESTALE ? -ENOENT : r;
        *ret = (struct vgpu_producer_info){
            .nonce = h.nonce,
            .pid = h.producer_pid,
            .flags = h.flags,
            .heartbeat_ns = h.heartbeat_ns,
            .geometry_gen = h.geometry_gen,
            .width = h.width,
            .height = h.height,
            .stride = h.stride,
            .format = h.format,
            .nslots = h.nslots,
            .frame_interval_us = h.frame_interval_us,
            .npages = p->npages,
            .latest_seq = h.latest_seq,
            .frames_published = h.frames_published,
            .frames_dropped = h.frames_dropped,
            .ctrl_ack_seq = h.ctrl_ack_seq,
            .ctrl_ack_result = h.ctrl_ack_result,
            .page0_gpa = p->gpa[0],
        };
        return 0;
}

void vgpu_perception_stats(const struct vgpu_perception *p, struct vgpu_perception_stats *ret)
{
        if (p && ret)
                *ret = p->st;
}

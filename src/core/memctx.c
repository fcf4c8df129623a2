/* SPDX-License-Identifier: MIT */
/* MEMCTX body encode/decode. The body is untrusted on the client side, so
 * decoding validates every range. */
#include <errno.h>
#include <string.h>

#include <vmsig/memctx.h>

static int ranges_valid(const struct vmsig_ram_range *r, uint32_t n)
{
        for (uint32_t i = 0; i < n; i++) {
                if (r[i].len == 0 || r[i].gpa + r[i].len < r[i].gpa ||
                    r[i].file_offset + r[i].len < r[i].file_offset)
                        return 0;
                for (uint32_t j = 0; j < i; j++)
                        if (r[i].gpa < r[j].gpa + r[j].len && r[j].gpa < r[i].gpa + r[i].len)
                                return 0;
        }
        return 1;
}

uint32_t vmsig_memctx_kbase_encode(uint64_t kernel_base)
{
        if ((kernel_base & VMSIG_MEMCTX_KBASE_TOP) != VMSIG_MEMCTX_KBASE_TOP || (kernel_base & 0xfff))
                return 0;
        return (uint32_t)((kernel_base & ~VMSIG_MEMCTX_KBASE_TOP) >> 12);
}

uint64_t vmsig_memctx_kbase_decode(uint32_t kernel_base_pg)
{
        return kernel_base_pg ? VMSIG_MEMCTX_KBASE_TOP | (uint64_t)kernel_base_pg << 12 : 0;
}

int vmsig_memctx_to_body(const struct vmsig_memctx *ctx, int valid, struct vmsig_memctx_body *ret)
{
        if (ctx->nranges > VMSIG_MEMCTX_MAX_RANGES)
                return -EINVAL;
        memset(ret, 0, sizeof(*ret));
        ret->epoch = ctx->epoch;
        ret->kernel_root = ctx->kernel_root;
        ret->valid = valid ? 1 : 0;
        ret->paging = (uint8_t)ctx->paging;
        ret->os_kind = (uint8_t)ctx->os_kind;
        ret->nranges = (uint8_t)ctx->nranges;
        ret->kernel_base_pg = valid ? vmsig_memctx_kbase_encode(ctx->kernel_base) : 0;
        memcpy(ret->ranges, ctx->ranges, ctx->nranges * sizeof(ctx->ranges[0]));
        return 0;
}

int vmsig_memctx_from_event(const struct vmsig_event *ev, int fd, struct vmsig_memctx *ret)
{
        struct vmsig_memctx_body b;

        if (ev->hdr.kind != VMSIG_EV_MEMCTX || ev->hdr.body_len != sizeof(b))
                return -EBADMSG;
        memcpy(&b, ev->body, sizeof(b));
        if (b.nranges > VMSIG_MEMCTX_MAX_RANGES || !ranges_valid(b.ranges, b.nranges))
                return -EBADMSG;
        memset(ret, 0, sizeof(*ret));
        ret->endpoint = ev->hdr.endpoint;
        ret->epoch = b.epoch;
        ret->kernel_root = b.kernel_root;
        ret->paging = (enum vmsig_paging)b.paging;
        ret->os_kind = (enum vmsig_os_kind)b.os_kind;
        ret->nranges = b.nranges;
        memcpy(ret->ranges, b.ranges, b.nranges * sizeof(b.ranges[0]));
        ret->fd = b.valid ? fd : -1;
        ret->kernel_base = b.valid ? vmsig_memctx_kbase_decode(b.kernel_base_pg) : 0;
        return 0;
}

int vmsig_memctx_gpa_to_offset(const struct vmsig_memctx *ctx, uint64_t gpa, uint64_t *ret_offset,
                               uint64_t *ret_avail)
{
        for (uint32_t i = 0; i < ctx->nranges && i < VMSIG_MEMCTX_MAX_RANGES; i++) {
                const struct vmsig_ram_range *r = &ctx->ranges[i];
                if (gpa >= r->gpa && gpa - r->gpa < r->len) {
                        *ret_offset = r->file_offset + (gpa - r->gpa);
                        if (ret_avail)
                                *ret_avail = r->len - (gpa - r->gpa);
                        return 0;
                }
        }
        return -EFAULT;
}

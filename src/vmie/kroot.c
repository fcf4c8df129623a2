/* SPDX-License-Identifier: MIT */
/* Kernel-root bootstrap: Linux (confirm a vCPU's CR3) and Windows (find the
 * System DTB from the low stub, or by a ranked scan of all RAM for
 * self-referencing PML4s, each validated well beyond the self-reference).
 * Signatures and offsets: research/vmi.md and real-hosts.md (MemProcFS,
 * memflow, volatility3, ntoseye). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include <vmie/kroot.h>

#include "internal.h"

#define PTE_P  (1ull << 0)
#define PTE_US (1ull << 2)
#define PTE_PS (1ull << 7)

#define LINUX_EXPECT_MAX 4096u

/* Windows constants. */
#define LOWSTUB_END           0x100000ull /* scan below 1 MiB */
#define MIN_KERNEL_ENTRIES    6
#define SCAN_CHUNK            (1u << 20)
#define SCAN_MAX_CANDS        65536u /* candidates kept for ranking */
#define SCAN_MAX_VALIDATE     64u    /* of which the best this many get the expensive checks */
#define WIN_KUSER_SHARED_DATA 0xfffff78000000000ull

/* PROCESSOR_START_BLOCK fields (x64): the JMP and its fixed fields, LmTarget,
 * and ProcessorState.SpecialRegisters.Cr3. */
#define PSB_JMP_OFF     0x00
#define PSB_JMP_MASK    0xffffffffffff00ffull
#define PSB_JMP_VALUE   0x00000001000600e9ull
#define PSB_LMTGT_OFF   0x70
#define PSB_LMTGT_MASK  0xfffff80000000003ull
#define PSB_LMTGT_VALUE 0xfffff80000000000ull
#define PSB_CR3_OFF     0xa0
#define PSB_CR3_MASK    0xffffff0000000fffull /* page aligned, below 2^40 */

static int mpa_ok(unsigned mpa)
{
        return mpa == 0 || (mpa >= 32 && mpa <= 52);
}

static int linux_try(const struct vmie_ram *ram, const struct vmie_linux_hint *h, uint64_t root,
                     unsigned levels, void *scratch)
{
        struct vmie_as as = {
            .ram = ram, .root = root, .levels = (uint8_t)levels, .maxphyaddr = h->maxphyaddr};
        struct vmie_xlate xl;
        if (vmie_walk(&as, h->check_va, &xl) < 0 || xl.user)
                return -ENOENT;
        if (h->expect_len) {
                if (vmie_read_virt(&as, h->check_va, scratch, h->expect_len, NULL) < 0 ||
                    memcmp(scratch, h->expect, h->expect_len) != 0)
                        return -ENOENT;
        }
        return 0;
}

int vmie_linux_kernel_root(const struct vmie_ram *ram, const struct vmie_linux_hint *hint,
                           struct vmie_kroot *ret)
{
        if (!ram || !hint || !ret || !mpa_ok(hint->maxphyaddr))
                return -EINVAL;
        if (hint->levels != 0 && hint->levels != 4 && hint->levels != 5)
                return -EINVAL;
        if (hint->expect_len > LINUX_EXPECT_MAX || (hint->expect_len && !hint->expect))
                return -EINVAL;
        /* The kernel lives in the upper half; a user VA proves nothing. */
        if (!(hint->check_va >> 63))
                return -EINVAL;
        uint8_t scratch[LINUX_EXPECT_MAX];
        /* KPTI kernel root first: it is right whenever KPTI is on, and a
         * non-KPTI root with bit 12 clear is the same value. */
        uint64_t cand[2] = {vmie_cr3_kernel_root(hint->cr3, hint->maxphyaddr),
                            vmie_cr3_root(hint->cr3, hint->maxphyaddr)};
        unsigned lv[2] = {hint->levels ? hint->levels : 4, 5};
        unsigned nlv = hint->levels ? 1 : 2;
        for (unsigned l = 0; l < nlv; l++) {
                for (unsigned c = 0; c < 2; c++) {
                        if (c == 1 && cand[1] == cand[0])
                                continue;
                        if (linux_try(ram, hint, cand[c], lv[l], scratch) < 0)
                                continue;
                        memset(ret, 0, sizeof(*ret));
                        ret->root = cand[c];
                        ret->kernel_hint = hint->check_va;
                        ret->os = VMIE_OS_LINUX;
                        ret->method = VMIE_KROOT_CR3;
                        ret->levels = (uint8_t)lv[l];
                        ret->maxphyaddr = hint->maxphyaddr ? hint->maxphyaddr : VMIE_MAXPHYADDR_DEFAULT;
                        return 0;
                }
        }
        return -ENOENT;
}

static uint64_t get64(const uint8_t *p)
{
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
}

/* ---- Windows: candidates ---------------------------------------------------- */

struct win_cand {
        uint64_t pa;
        uint16_t self;
        uint16_t kernel; /* valid kernel-half entries besides the self-reference */
        uint16_t user;   /* present user-half entries */
};

/* The cheap test of a page: a present, supervisor, non-PS self-reference in
 * 0x100..0x1ff (the range Windows 10 and later randomise it in; 0x1ed
 * before), and enough kernel-half entries that point into RAM. */
static int win_shape(const struct vmie_ram *ram, const uint64_t *pg, uint64_t pa, uint64_t amask,
                     struct win_cand *ret)
{
        const uint64_t m = amask | PTE_P | PTE_US | PTE_PS, want = pa | PTE_P;
        int self = -1;
        unsigned kernel = 0, user = 0;
        for (unsigned i = 256; i < 512; i++) {
                uint64_t e = pg[i];
                if ((e & m) == want) {
                        if (self < 0)
                                self = (int)i;
                        continue;
                }
                if ((e & (PTE_P | PTE_US | PTE_PS)) == PTE_P &&
                    vmie_ram_gpa_to_offset(ram, e & amask, NULL, NULL) == 0)
                        kernel++;
        }
        if (self < 0 || kernel < MIN_KERNEL_ENTRIES)
                return -ENOENT;
        for (unsigned i = 0; i < 256; i++)
                user += pg[i] & PTE_P;
        *ret = (struct win_cand){
            .pa = pa, .self = (uint16_t)self, .kernel = (uint16_t)kernel, .user = (uint16_t)user};
        return 0;
}

/* Any self-reference at all in the kernel half: the scan's filter, run on
 * every page of RAM, so in vector types (GCC/clang) with SSE2's 32-bit
 * compares: an entry matches when both its halves do (the compare mask
 * ANDed with itself halves swapped). No branch inside the loop. */
typedef uint32_t u32x4 __attribute__((vector_size(16)));

static bool win_selfref_any(const uint64_t *pg, uint64_t pa, uint64_t amask)
{
        const uint64_t m = amask | PTE_P | PTE_US | PTE_PS, want = pa | PTE_P;
        const u32x4 vm = {(uint32_t)m, (uint32_t)(m >> 32), (uint32_t)m, (uint32_t)(m >> 32)};
        const u32x4 vw = {(uint32_t)want, (uint32_t)(want >> 32), (uint32_t)want, (uint32_t)(want >> 32)};
        u32x4 h0 = {0, 0, 0, 0}, h1 = h0;
        for (unsigned i = 256; i < 512; i += 4) {
                u32x4 a, b;
                memcpy(&a, pg + i, sizeof(a));
                memcpy(&b, pg + i + 2, sizeof(b));
                u32x4 ea = (u32x4)((a & vm) == vw), eb = (u32x4)((b & vm) == vw);
                h0 |= ea & __builtin_shufflevector(ea, ea, 1, 0, 3, 2);
                h1 |= eb & __builtin_shufflevector(eb, eb, 1, 0, 3, 2);
        }
        h0 |= h1;
        return (h0[0] | h0[1] | h0[2] | h0[3]) != 0;
}

/* The expensive checks, on a candidate that passed win_shape: the self-map VA
 * walks back to the root, KUSER_SHARED_DATA is mapped kernel-only and NX,
 * and the root maps ntoskrnl (found from hint, or in the kernel half). */
static int win_strong(const struct vmie_ram *ram, uint64_t root, unsigned mpa, unsigned self, uint64_t hint,
                      struct vmiei_budget *budget, uint64_t *ret_base)
{
        uint64_t i = self;
        uint64_t va = (i << 39) | (i << 30) | (i << 21) | (i << 12);
        va = (uint64_t)((int64_t)(va << 16) >> 16); /* sign-extend bit 47 */
        struct vmie_as as = {.ram = ram, .root = root, .levels = 4, .maxphyaddr = (uint8_t)mpa};
        struct vmie_xlate xl;
        if (vmie_walk(&as, va, &xl) < 0 || xl.gpa != root || xl.user)
                return -ENOENT;
        if (vmie_walk(&as, WIN_KUSER_SHARED_DATA, &xl) < 0 || xl.user || !xl.nx)
                return -ENOENT;
        int r = vmiei_windows_kernel_base(&as, hint, ret_base, budget);
        return r == -E2BIG || r == -ENXIO ? -ENOENT : r;
}

static int win_validate(const struct vmie_ram *ram, uint64_t root, unsigned mpa, uint64_t hint,
                        struct vmiei_budget *budget, struct win_cand *ret, uint64_t *ret_base)
{
        uint64_t *pg = malloc(VMIE_PAGE_SIZE);
        if (!pg)
                return -ENOMEM;
        int r = vmie_ram_read(ram, root, pg, VMIE_PAGE_SIZE) < 0 ? -ENXIO : 0;
        if (r == 0)
                r = win_shape(ram, pg, root, vmie_cr3_root(~0ull, mpa), ret);
        free(pg);
        if (r == 0)
                r = win_strong(ram, root, mpa, ret->self, hint, budget, ret_base);
        return r;
}

int vmie_windows_validate_root(const struct vmie_ram *ram, uint64_t root, unsigned maxphyaddr,
                               uint16_t *ret_selfref_index)
{
        struct win_cand c;
        struct vmiei_budget b = {VMIEI_BUDGET_TABLES, VMIEI_BUDGET_PAGES};
        uint64_t base;
        if (!ram || !mpa_ok(maxphyaddr))
                return -EINVAL;
        int r = win_validate(ram, vmie_cr3_root(root, maxphyaddr), maxphyaddr, 0, &b, &c, &base);
        if (r == 0 && ret_selfref_index)
                *ret_selfref_index = c.self;
        return r;
}

static void win_fill(struct vmie_kroot *ret, uint64_t root, unsigned mpa, unsigned method, uint64_t hint,
                     uint16_t idx)
{
        memset(ret, 0, sizeof(*ret));
        ret->root = root;
        ret->kernel_hint = hint;
        ret->os = VMIE_OS_WINDOWS;
        ret->method = (uint8_t)method;
        ret->levels = 4;
        ret->maxphyaddr = (uint8_t)(mpa ? mpa : VMIE_MAXPHYADDR_DEFAULT);
        ret->selfref_index = idx;
}

/* ---- Windows: the RAM scan ---------------------------------------------------- */

struct win_scan {
        struct win_cand *c;
        size_t n, cap;
};

static int scan_add(struct win_scan *s, const struct win_cand *c)
{
        if (s->n == s->cap) {
                if (s->cap >= SCAN_MAX_CANDS)
                        return 0; /* enough to rank; the rest is dropped */
                size_t cap = s->cap ? s->cap * 2 : 64;
                struct win_cand *nc = realloc(s->c, cap * sizeof(*nc));
                if (!nc)
                        return -ENOMEM;
                s->c = nc;
                s->cap = cap;
        }
        s->c[s->n++] = *c;
        return 0;
}

/* Every page of every RAM range: through the mapping when there is one,
 * else in SCAN_CHUNK preads. */
static int scan_ram(const struct vmie_ram *ram, uint64_t amask, struct win_scan *s)
{
        uint64_t *buf = NULL;
        int r = 0;
        for (size_t ri = 0; ri < vmie_ram_nranges(ram) && r == 0; ri++) {
                struct vmie_range rg;
                (void)vmie_ram_range(ram, ri, &rg);
                uint64_t pa = (rg.gpa + VMIE_PAGE_SIZE - 1) & ~(uint64_t)(VMIE_PAGE_SIZE - 1);
                uint64_t end = rg.gpa + rg.len;
                while (r == 0 && pa < end && end - pa >= VMIE_PAGE_SIZE && (pa & amask) == pa) {
                        uint64_t n = (end - pa) & ~(uint64_t)(VMIE_PAGE_SIZE - 1);
                        if (n > SCAN_CHUNK)
                                n = SCAN_CHUNK;
                        const void *p;
                        /* misaligned file offsets (a strange layout) go through the copy */
                        if (vmie_ram_peek(ram, pa, n, &p) < 0 || ((uintptr_t)p & 7)) {
                                if (!buf && !(buf = malloc(SCAN_CHUNK))) {
                                        r = -ENOMEM;
                                        break;
                                }
                                if (vmie_ram_read(ram, pa, buf, n) < 0) {
                                        pa += n; /* the file shrank: nothing there */
                                        continue;
                                }
                                p = buf;
                        }
                        for (uint64_t o = 0; o < n && r == 0; o += VMIE_PAGE_SIZE) {
                                const uint64_t *pg = (const uint64_t *)((const uint8_t *)p + o);
                                struct win_cand c;
                                if ((pa + o) & ~amask)
                                        break;
                                if (win_selfref_any(pg, pa + o, amask) &&
                                    win_shape(ram, pg, pa + o, amask, &c) == 0)
                                        r = scan_add(s, &c);
                        }
                        pa += n;
                }
        }
        free(buf);
        return r;
}

/* Most kernel-half entries first (a dummy PML4 has a couple), then fewest
 * user-half entries (System's), then lowest address. */
static int cand_cmp(const void *a, const void *b)
{
        const struct win_cand *x = a, *y = b;
        if (x->kernel != y->kernel)
                return x->kernel > y->kernel ? -1 : 1;
        if (x->user != y->user)
                return x->user < y->user ? -1 : 1;
        return x->pa < y->pa ? -1 : x->pa > y->pa;
}

int vmie_windows_kernel_root(const struct vmie_ram *ram, unsigned maxphyaddr, struct vmie_kroot *ret)
{
        if (!ram || !ret || !mpa_ok(maxphyaddr))
                return -EINVAL;
        struct win_cand c;
        /* one budget for every candidate: lookalikes cannot multiply it */
        struct vmiei_budget b = {VMIEI_BUDGET_TABLES, VMIEI_BUDGET_PAGES};
        uint64_t base;
        int r;
        /* 1. Low stub. Page 0 holds the real-mode IVT, never the stub. */
        for (uint64_t pa = 0x1000; pa < LOWSTUB_END; pa += VMIE_PAGE_SIZE) {
                uint8_t hdr[PSB_CR3_OFF + 8];
                if (vmie_ram_read(ram, pa, hdr, sizeof(hdr)) < 0)
                        continue;
                uint64_t lmtarget = get64(hdr + PSB_LMTGT_OFF), cr3 = get64(hdr + PSB_CR3_OFF);
                if ((get64(hdr + PSB_JMP_OFF) & PSB_JMP_MASK) != PSB_JMP_VALUE ||
                    (lmtarget & PSB_LMTGT_MASK) != PSB_LMTGT_VALUE || (cr3 & PSB_CR3_MASK) != 0 || cr3 == 0)
                        continue;
                r = win_validate(ram, cr3, maxphyaddr, lmtarget, &b, &c, &base);
                if (r == -ENOMEM)
                        return r;
                if (r == 0) {
                        win_fill(ret, cr3, maxphyaddr, VMIE_KROOT_LOWSTUB, lmtarget, c.self);
                        return 0;
                }
        }
        /* 2. Every page of RAM, ranked, the best few validated. */
        struct win_scan s = {0};
        r = scan_ram(ram, vmie_cr3_root(~0ull, maxphyaddr), &s);
        if (r == 0) {
                if (s.n)
                        qsort(s.c, s.n, sizeof(s.c[0]), cand_cmp);
                r = -ENOENT;
                for (size_t i = 0; i < s.n && i < SCAN_MAX_VALIDATE && r == -ENOENT; i++) {
                        r = win_strong(ram, s.c[i].pa, maxphyaddr, s.c[i].self, 0, &b, &base);
                        if (r == 0)
                                /* the kernel base is the hint to find it again */
                                win_fill(ret, s.c[i].pa, maxphyaddr, VMIE_KROOT_SELFREF, base, s.c[i].self);
                }
        }
        free(s.c);
        return r;
}

int vmie_kernel_root(const struct vmie_ram *ram, const struct vmie_linux_hint *linux_hint,
                     unsigned maxphyaddr, struct vmie_kroot *ret)
{
        if (!ram || !ret || !mpa_ok(maxphyaddr))
                return -EINVAL;
        if (linux_hint) {
                int r = vmie_linux_kernel_root(ram, linux_hint, ret);
                if (r != -ENOENT)
                        return r;
        }
        return vmie_windows_kernel_root(ram, maxphyaddr, ret);
}

/* SPDX-License-Identifier: MIT */
/* The real memctx adapter's `info registers` parser (parse_regs) and its
 * swapper_pg_dir search (linux_swapper) on QEMU- and guest-controlled input,
 * in the order w_boot() uses them.
 *
 * Input: the HMP reply text (as the QMP client hands it over: unescaped, LF),
 * a NUL, then guest RAM writes of 10 bytes each (u16 LE qword index into a
 * zeroed 128 KiB RAM at GPA 0, u64 LE value): the guest owns its page tables.
 *
 * Both functions are static: this file #includes src/adapters/memctx.c so
 * the fuzzer runs the production code itself, without a test-only symbol
 * in the library. (The harness then defines the adapter's only global,
 * vmsig_memctx_ops, so the linker never pulls the archive's copy.) */
#include "adapters/memctx.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_RAM   (128u * 1024u)
#define FUZZ_QWORD (FUZZ_RAM / 8u)

static uint64_t fuzz_ram[FUZZ_QWORD] __attribute__((aligned(4096)));

static uint64_t le(const uint8_t *p, unsigned n)
{
        uint64_t v = 0;

        for (unsigned i = n; i-- > 0;)
                v = (v << 8) | p[i];
        return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const uint8_t *nul = memchr(data, 0, size);
        size_t tlen = nul ? (size_t)(nul - data) : size;
        char *text = malloc(tlen + 1);
        struct regs g;

        if (!text)
                return 0;
        memcpy(text, data, tlen);
        text[tlen] = '\0';
        int r = parse_regs(text, &g);
        free(text);
        if (r < 0) {
                if (r != -EBADMSG)
                        abort();
                return 0;
        }

        memset(fuzz_ram, 0, sizeof(fuzz_ram));
        if (nul) {
                const uint8_t *p = nul + 1, *end = data + size;
                for (; end - p >= 10; p += 10)
                        fuzz_ram[le(p, 2) % FUZZ_QWORD] = le(p + 2, 8);
        }
        struct vmie_range rr = {.gpa = 0, .len = FUZZ_RAM, .file_offset = 0};
        struct vmie_ram *ram = NULL;
        if (vmie_ram_wrap(fuzz_ram, FUZZ_RAM, &rr, 1, 0, &ram) < 0)
                abort();

        /* as w_boot: CR4.LA57 picks the levels, CR3 the candidate root */
        unsigned levels = (g.cr4 & (UINT64_C(1) << 12)) ? 5 : 4;
        uint64_t root = vmie_cr3_root(g.cr3, 0);
        uint64_t sw = linux_swapper(ram, root, levels);
        /* an answer is a page of RAM that passes the same test */
        if (sw && ((sw & (PAGE_4K - 1)) || sw >= FUZZ_RAM))
                abort();
        if (g.idt >> 63) {
                struct vmie_linux_hint h = {.cr3 = g.cr3, .check_va = g.idt, .levels = (uint8_t)levels};
                struct vmie_kroot kr, ks;
                if (vmie_linux_kernel_root(ram, &h, &kr) == 0) {
                        sw = linux_swapper(ram, kr.root, kr.levels);
                        h.cr3 = sw;
                        if (sw)
                                (void)vmie_linux_kernel_root(ram, &h, &ks);
                }
        }
        if (getenv("VMSIG_FUZZ_VERBOSE")) /* say what a seed reached */
                fprintf(stderr,
                        "cr0 %" PRIx64 " cr3 %" PRIx64 " cr4 %" PRIx64 " idt %" PRIx64
                        " smm %d: swapper 0x%" PRIx64 "\n",
                        g.cr0, g.cr3, g.cr4, g.idt, g.smm, sw);
        vmie_ram_free(ram);
        return 0;
}

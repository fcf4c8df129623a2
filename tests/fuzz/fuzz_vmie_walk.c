/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for libvmie's walker and everything built on it. The
 * input is a guest RAM image with attacker-chosen page tables:
 *   u64 root | u64 va | u8 mode | u16 len | image bytes...
 * mode: bit0 5-level, bit1 split layout (upper half of the image at 4 GiB,
 * with a hole below), bits2-3 MAXPHYADDR {52,40,46,36}, bit4 Windows scan.
 * Also the kernel image bases (Linux _text, ntoskrnl) found from root.
 * The image is wrapped in place, so ASan sees any read past its end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vmie/vmie.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HDR 19

static uint64_t le64(const uint8_t *p)
{
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
                v = (v << 8) | p[i];
        return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < HDR)
                return 0;
        uint64_t root = le64(data), va = le64(data + 8);
        uint8_t mode = data[16];
        size_t len = (size_t)(data[17] | data[18] << 8) & 0x3fff;
        const uint8_t *img = data + HDR;
        size_t isz = size - HDR;
        static const uint8_t mpas[4] = {52, 40, 46, 36};

        struct vmie_range r[2];
        size_t n = 1;
        r[0] = (struct vmie_range){.gpa = 0, .len = isz, .file_offset = 0};
        if ((mode & 2) && isz >= 2 * 4096) {
                uint64_t half = (isz / 2) & ~0xfffull;
                r[0].len = half;
                r[1] = (struct vmie_range){.gpa = 1ull << 32, .len = isz - half, .file_offset = half};
                n = 2;
        }
        struct vmie_ram *ram = NULL;
        if (vmie_ram_wrap(img, isz, r, n, 0, &ram) < 0)
                return 0;
        struct vmie_tlb *tlb = NULL;
        if (vmie_tlb_new(16, 0, &tlb) < 0)
                abort();
        struct vmie_as as = {
            .ram = ram,
            .root = root,
            .levels = (mode & 1) ? 5 : 4,
            .maxphyaddr = mpas[(mode >> 2) & 3],
        };

        /* Walk, then the cache twice: a cached answer must equal the walk. */
        struct vmie_xlate w, c;
        int rw = vmie_walk(&as, va, &w);
        as.tlb = tlb;
        for (int i = 0; i < 2; i++) {
                int rc = vmie_translate(&as, va, &c);
                if (rc != rw || (rc == 0 && (c.gpa != w.gpa || c.page_size != w.page_size ||
                                             c.writable != w.writable || c.user != w.user || c.nx != w.nx)))
                        abort();
        }

        uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                abort();
        size_t done = 0;
        int rr = vmie_read_virt(&as, va, buf, len, &done);
        if ((rr == 0 && done != len) || done > len)
                abort();
        (void)vmie_ram_read(ram, va, buf, len);
        char s[300];
        size_t sl = 0;
        if (vmie_read_str(&as, va, s, sizeof(s), &sl) == 0 && (sl >= sizeof(s) || s[sl] != 0))
                abort();

        struct vmie_chunk ch[8];
        size_t nch = 0;
        uint64_t bad = 0;
        if (len &&
            vmie_extent_plan(&as, va, len, mode & 0x20 ? VMIE_EXTENT_WRITABLE : 0, ch, 8, &nch, &bad) == 0) {
                uint64_t sum = 0;
                for (size_t i = 0; i < nch; i++)
                        sum += ch[i].len;
                if (sum != len)
                        abort();
        }

        struct vmie_kroot k;
        struct vmie_linux_hint h = {
            .cr3 = root,
            .check_va = va | (1ull << 63),
            .expect = img,
            .expect_len = isz < 16 ? isz : 16,
            .levels = (mode & 0x40) ? 0 : as.levels,
            .maxphyaddr = as.maxphyaddr,
        };
        (void)vmie_linux_kernel_root(ram, &h, &k);
        (void)vmie_windows_validate_root(ram, root, as.maxphyaddr, NULL);

        /* Kernel image bases: what they claim must hold. */
        struct vmie_as k4 = as;
        uint64_t base = 0;
        uint8_t mz[2];
        k4.tlb = NULL;
        if (vmie_linux_kernel_base(&k4, &base) == 0 &&
            (base < 0xffffffff80000000ull || base >= 0xffffffffc0000000ull || (base & 0x1fffff)))
                abort();
        k4.levels = 4;
        if (vmie_windows_kernel_base(&k4, va | (1ull << 63), &base) == 0 &&
            (vmie_read_virt(&k4, base, mz, 2, NULL) < 0 || mz[0] != 'M' || mz[1] != 'Z'))
                abort();
        if ((mode & 0x10) && vmie_windows_kernel_root(ram, as.maxphyaddr, &k) == 0 &&
            vmie_kernel_base(ram, &k, &base) < 0)
                abort(); /* a validated Windows root maps ntoskrnl */

        free(buf);
        vmie_tlb_free(tlb);
        vmie_ram_free(ram);
        return 0;
}

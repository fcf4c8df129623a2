/* SPDX-License-Identifier: MIT */
/* libvmie RAM layout: validation, GPA -> file offset, physical reads. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "vmie/internal.h"
#include "vmie_img.h"

/* File of `size` bytes where byte i is (i * 7 + i / 4096) & 0xff. */
static int pattern_fd(size_t size)
{
        struct img im;
        img_init(&im, size, 4);
        for (size_t i = 0; i < size; i++)
                im.buf[i] = (uint8_t)(i * 7 + i / 4096);
        int fd = img_memfd(&im);
        img_fini(&im);
        return fd;
}

static uint8_t pat(uint64_t off)
{
        return (uint8_t)(off * 7 + off / 4096);
}

static void check_bytes(const uint8_t *b, size_t n, uint64_t off)
{
        for (size_t i = 0; i < n; i++)
                assert_int_equal(b[i], pat(off + i));
}

static void test_split_layout_below_above_4g(void **state)
{
        (void)state;
        /* q35 style: low RAM at file offset 0, high RAM at 4 GiB with
         * file offset = low size. */
        const uint64_t low = 2 * MIB, high = 2 * MIB;
        int fd = pattern_fd(low + high);
        assert_true(fd >= 0);
        struct vmie_range r[] = {{4 * GIB, high, low}, {0, low, 0}}; /* unsorted on purpose */
        for (unsigned flags = 0; flags <= VMIE_RAM_NO_MMAP; flags += VMIE_RAM_NO_MMAP) {
                struct vmie_ram *ram = NULL;
                assert_int_equal(vmie_ram_open_fd(fd, r, 2, flags, &ram), 0);
                assert_int_equal(vmie_ram_is_mapped(ram), flags ? 0 : 1);
                assert_int_equal(vmie_ram_nranges(ram), 2);
                struct vmie_range got;
                assert_int_equal(vmie_ram_range(ram, 0, &got), 0);
                assert_int_equal(got.gpa, 0);
                assert_int_equal(vmie_ram_range(ram, 1, &got), 0);
                assert_int_equal(got.gpa, 4 * GIB);
                assert_int_equal(vmie_ram_range(ram, 2, &got), -EINVAL);

                uint64_t off, avail;
                assert_int_equal(vmie_ram_gpa_to_offset(ram, 4 * GIB + 0x1234, &off, &avail), 0);
                assert_int_equal(off, low + 0x1234);
                assert_int_equal(avail, high - 0x1234);
                assert_int_equal(vmie_ram_gpa_to_offset(ram, low - 1, &off, &avail), 0);
                assert_int_equal(off, low - 1);
                assert_int_equal(avail, 1);
                /* The PCI hole and everything above high RAM are holes. */
                assert_int_equal(vmie_ram_gpa_to_offset(ram, low, &off, &avail), -EFAULT);
                assert_int_equal(vmie_ram_gpa_to_offset(ram, 3 * GIB, &off, &avail), -EFAULT);
                assert_int_equal(vmie_ram_gpa_to_offset(ram, 4 * GIB + high, &off, &avail), -EFAULT);
                assert_int_equal(vmie_ram_gpa_to_offset(ram, ~0ull, &off, &avail), -EFAULT);

                uint8_t b[8192];
                assert_int_equal(vmie_ram_read(ram, 4 * GIB + 4000, b, sizeof(b)), 0);
                check_bytes(b, sizeof(b), low + 4000);
                assert_int_equal(vmie_ram_read(ram, 100, b, 5000), 0);
                check_bytes(b, 5000, 100);
                /* Reading from low RAM into the hole is an error, never zeros. */
                assert_int_equal(vmie_ram_read(ram, low - 16, b, 32), -EFAULT);
                assert_int_equal(vmie_ram_read(ram, 4 * GIB - 16, b, 32), -EFAULT);
                assert_int_equal(vmie_ram_read(ram, 4 * GIB + high - 8, b, 16), -EFAULT);
                assert_int_equal(vmie_ram_read(ram, 0, b, 0), 0);

                const void *p;
                if (flags) {
                        assert_int_equal(vmie_ram_peek(ram, 0, 8, &p), -ENOTSUP);
                } else {
                        assert_int_equal(vmie_ram_peek(ram, 4 * GIB + 8, 16, &p), 0);
                        check_bytes(p, 16, low + 8);
                        assert_int_equal(vmie_ram_peek(ram, low - 8, 16, &p), -EFAULT);
                }
                assert_null(vmie_ram_free(ram));
        }
        close(fd);
}

static void test_read_across_ranges(void **state)
{
        (void)state;
        int fd = pattern_fd(4 * MIB);
        /* GPA-contiguous ranges at non-contiguous file offsets, then a hole
         * of 0x800 bytes (not page aligned), then a third range. */
        struct vmie_range r[] = {{0, 0x10000, 0x200000}, {0x10000, 0x10000, 0}, {0x20800, 0x1000, 0x100000}};
        struct vmie_ram *ram = NULL;
        assert_int_equal(vmie_ram_open_fd(fd, r, 3, 0, &ram), 0);
        uint8_t b[0x2000];
        assert_int_equal(vmie_ram_read(ram, 0xf000, b, 0x2000), 0);
        check_bytes(b, 0x1000, 0x20f000);
        check_bytes(b + 0x1000, 0x1000, 0);
        assert_int_equal(vmie_ram_read(ram, 0x1f000, b, 0x2000), -EFAULT);
        assert_int_equal(vmie_ram_read(ram, 0x20800, b, 0x1000), 0);
        check_bytes(b, 0x1000, 0x100000);
        assert_int_equal(vmie_ram_read(ram, 0x207ff, b, 2), -EFAULT);
        vmie_ram_free(ram);
        close(fd);
}

static void test_layout_validation(void **state)
{
        (void)state;
        int fd = pattern_fd(1 * MIB);
        struct vmie_ram *ram = (struct vmie_ram *)(uintptr_t)0x1; /* must stay untouched on error */
        struct vmie_ram *const sentinel = ram;
        const struct vmie_range ok[] = {{0, 0x1000, 0}};
        struct {
                struct vmie_range r[3];
                size_t n;
                unsigned flags;
                int want;
        } cases[] = {
            {{{0, 0, 0}}, 1, 0, -EINVAL},                                 /* zero length */
            {{{0, 0x2000, 0}, {0x1000, 0x1000, 0x10000}}, 2, 0, -EINVAL}, /* GPA overlap */
            {{{0x1000, 0x2000, 0}, {0, 0x1001, 0x10000}}, 2, 0, -EINVAL}, /* GPA overlap, unsorted */
            {{{0, 0x1000, 0}, {0x10000, 0x1000, 0x800}}, 2, 0, -EINVAL},  /* file overlap */
            {{{0, 0x1000, 1 * MIB - 0xfff}}, 1, 0, -ERANGE},              /* beyond file size */
            {{{0, 1 * MIB + 1, 0}}, 1, 0, -ERANGE},                       /* beyond file size */
            {{{~0ull - 0xfff, 0x1000, 0}}, 1, 0, -EINVAL},                /* ends at 2^64 */
            {{{~0ull - 0xfff, 0x2000, 0}}, 1, 0, -EINVAL},                /* wraps */
            {{{0, 0x1000, ~0ull - 0x10}}, 1, 0, -EINVAL},                 /* file offset wraps */
            {{{0}}, 0, 0, -EINVAL},                                       /* no ranges */
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int r = vmie_ram_open_fd(fd, cases[i].r, cases[i].n, cases[i].flags, &ram);
                if (r != cases[i].want)
                        fail_msg("case %zu: got %d want %d", i, r, cases[i].want);
                assert_ptr_equal(ram, sentinel);
        }
        /* A genuine alias is allowed only when asked for. */
        const struct vmie_range alias[] = {{0, 0x1000, 0}, {0x10000, 0x1000, 0}};
        assert_int_equal(vmie_ram_open_fd(fd, alias, 2, 0, &ram), -EINVAL);
        assert_int_equal(vmie_ram_open_fd(fd, alias, 2, VMIE_RAM_ALLOW_ALIAS, &ram), 0);
        ram = vmie_ram_free(ram);
        /* Too many ranges. */
        struct vmie_range *many = calloc(VMIE_RAM_MAX_RANGES + 1, sizeof(*many));
        for (size_t i = 0; i <= VMIE_RAM_MAX_RANGES; i++)
                many[i] = (struct vmie_range){i * 0x1000, 0x1000, i * 0x1000};
        assert_int_equal(vmie_ram_open_fd(fd, many, VMIE_RAM_MAX_RANGES + 1, 0, &ram), -EINVAL);
        assert_int_equal(vmie_ram_open_fd(fd, many, VMIE_RAM_MAX_RANGES, 0, &ram), 0);
        ram = vmie_ram_free(ram);
        free(many);
        /* Bad arguments. */
        assert_int_equal(vmie_ram_open_fd(-1, ok, 1, 0, &ram), -EINVAL);
        assert_int_equal(vmie_ram_open_fd(fd, NULL, 1, 0, &ram), -EINVAL);
        assert_int_equal(vmie_ram_open_fd(fd, ok, 1, 1u << 30, &ram), -EINVAL); /* unknown flag */
        assert_int_equal(vmie_ram_open_path(NULL, ok, 1, 0, &ram), -EINVAL);
        assert_int_equal(vmie_ram_open_path("/nonexistent/vmie", ok, 1, 0, &ram), -ENOENT);
        close(fd);
}

static void test_fd_kinds(void **state)
{
        (void)state;
        const struct vmie_range ok[] = {{0, 0x1000, 0}};
        struct vmie_ram *ram = NULL;
        int p[2];
        assert_int_equal(pipe(p), 0);
        assert_int_equal(vmie_ram_open_fd(p[0], ok, 1, 0, &ram), -EINVAL); /* not a regular file */
        close(p[0]);
        close(p[1]);

        char path[] = "/tmp/vmie-test-XXXXXX";
        int fd = mkostemp(path, O_CLOEXEC);
        assert_true(fd >= 0);
        uint8_t page[0x1000];
        for (size_t i = 0; i < sizeof(page); i++)
                page[i] = pat(i);
        assert_int_equal(write(fd, page, sizeof(page)), sizeof(page));
        int wo = open(path, O_WRONLY | O_CLOEXEC);
        assert_true(wo >= 0);
        assert_int_equal(vmie_ram_open_fd(wo, ok, 1, 0, &ram), -EBADF); /* write-only */
        close(wo);

        /* By path: opened read-only; by fd: our own dup, close-on-exec. */
        assert_int_equal(vmie_ram_open_path(path, ok, 1, 0, &ram), 0);
        assert_int_equal(fcntl(ram->fd, F_GETFL) & O_ACCMODE, O_RDONLY);
        assert_true(fcntl(ram->fd, F_GETFD) & FD_CLOEXEC);
        ram = vmie_ram_free(ram);
        int ro = open(path, O_RDONLY); /* deliberately without O_CLOEXEC */
        assert_int_equal(vmie_ram_open_fd(ro, ok, 1, 0, &ram), 0);
        assert_int_not_equal(ram->fd, ro);
        assert_true(fcntl(ram->fd, F_GETFD) & FD_CLOEXEC);
        close(ro); /* the caller's fd is its own */
        uint8_t b[16];
        assert_int_equal(vmie_ram_read(ram, 0xff0, b, 16), 0);
        check_bytes(b, 16, 0xff0);
        ram = vmie_ram_free(ram);
        unlink(path);
        close(fd);
}

static void test_pread_mode_file_shrinks(void **state)
{
        (void)state;
        int fd = pattern_fd(0x4000);
        const struct vmie_range r[] = {{0x100000, 0x4000, 0}};
        struct vmie_ram *ram = NULL;
        assert_int_equal(vmie_ram_open_fd(fd, r, 1, VMIE_RAM_NO_MMAP, &ram), 0);
        uint8_t b[0x4000];
        assert_int_equal(vmie_ram_read(ram, 0x100000, b, sizeof(b)), 0);
        check_bytes(b, sizeof(b), 0);
        assert_int_equal(ftruncate(fd, 0x2000), 0);
        assert_int_equal(vmie_ram_read(ram, 0x101000, b, 0x2000), -EIO);
        vmie_ram_free(ram);
        close(fd);
}

static void test_wrap(void **state)
{
        (void)state;
        uint8_t mem[0x3000];
        for (size_t i = 0; i < sizeof(mem); i++)
                mem[i] = pat(i);
        const struct vmie_range r[] = {{0x1000, 0x1000, 0x2000}, {0x2000, 0x1000, 0}};
        struct vmie_ram *ram = NULL;
        assert_int_equal(vmie_ram_wrap(mem, sizeof(mem) - 1, r, 2, 0, &ram), -ERANGE);
        assert_int_equal(vmie_ram_wrap(mem, sizeof(mem), r, 2, 0, &ram), 0);
        uint8_t b[0x20];
        assert_int_equal(vmie_ram_read(ram, 0x1ff0, b, sizeof(b)), 0);
        check_bytes(b, 16, 0x2ff0);
        check_bytes(b + 16, 16, 0);
        assert_int_equal(vmie_ram_is_mapped(ram), 1);
        vmie_ram_free(ram);
        assert_null(vmie_ram_free(NULL));
        assert_int_equal(vmie_ram_nranges(NULL), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_split_layout_below_above_4g), cmocka_unit_test(test_read_across_ranges),
            cmocka_unit_test(test_layout_validation),           cmocka_unit_test(test_fd_kinds),
            cmocka_unit_test(test_pread_mode_file_shrinks),     cmocka_unit_test(test_wrap),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

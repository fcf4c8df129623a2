/* SPDX-License-Identifier: MIT */
/* Links libvmie.so alone, through the public headers: what a control does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "vmie_img.h"

static void test_shared_smoke(void **state)
{
        (void)state;
        struct img im;
        img_init(&im, 1 * MIB, 4);
        img_range(&im, 0, 1 * MIB, 0);
        im.next = 0x10000;
        uint64_t root = img_page(&im);
        img_map(&im, root, 0xffff888000000000ull, 0x80000, 4096, P_RW);
        memcpy(img_ptr(&im, 0x80010), "shared", 7);
        struct vmie_ram *ram = NULL;
        assert_int_equal(img_open(&im, 0, NULL, &ram), 0);
        struct vmie_tlb *tlb = NULL;
        assert_int_equal(vmie_tlb_new(0, 0, &tlb), 0);
        struct vmie_as as = {.ram = ram, .tlb = tlb, .root = vmie_cr3_root(root | 0x7, 0), .epoch = 1};
        char s[16];
        assert_int_equal(vmie_read_str(&as, 0xffff888000000010ull, s, sizeof(s), NULL), 0);
        assert_string_equal(s, "shared");
        assert_null(vmie_tlb_free(tlb));
        assert_null(vmie_ram_free(ram));
        img_fini(&im);
}

int main(void)
{
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_shared_smoke)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}

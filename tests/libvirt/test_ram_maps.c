/* SPDX-License-Identifier: MIT */
/* ram_proc_maps_line: which /proc/<pid>/maps lines count as a shared file
 * mapping, and the bad lines it refuses (fail closed: -EINVAL). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "adapters/ram_proc.h"

static void test_shared_file(void **state)
{
        unsigned maj = 0, min = 0;
        uint64_t ino = 0;

        (void)state;
        assert_int_equal(ram_proc_maps_line("7f0000000000-7f0010000000 rw-s 00000000 00:01 1234     "
                                            "/memfd:pc.ram (deleted)\n",
                                            &maj, &min, &ino),
                         0);
        assert_int_equal(maj, 0);
        assert_int_equal(min, 1);
        assert_int_equal(ino, 1234);
        assert_int_equal(
            ram_proc_maps_line("1000-2000 r--s 0 fd:2c 77 /dev/hugepages/x (deleted)", &maj, &min, &ino), 0);
        assert_int_equal(maj, 0xfd);
        assert_int_equal(min, 0x2c);
        assert_int_equal(ino, 77);
}

static void test_refused(void **state)
{
        static const char *const bad[] = {
            "",
            "7f00-7f10 rw-p 0 00:01 1234 /private/file", /* private mapping */
            "7f00-7f10 rw-s 0 00:00 0",                  /* no inode */
            "7f10-7f00 rw-s 0 00:01 5 /x",               /* end before start */
            "7f00-7f00 rw-s 0 00:01 5 /x",               /* empty */
            "zz-7f rw-s 0 00:01 5 /x",                   /* not hex */
            "7f00-7f10 rw-s 0 00:01",                    /* truncated */
            "7f00-7f10 rws 0 00:01 5 /x",                /* three permission characters */
            "7f00-7f10 rw-sx 0 00:01 5 /x",              /* five */
            "7f00-7f10 rw-s 0 0001 5 /x",                /* no major:minor */
        };
        unsigned maj, min;
        uint64_t ino;

        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (ram_proc_maps_line(bad[i], &maj, &min, &ino) != -EINVAL)
                        fail_msg("accepted: '%s'", bad[i]);
        assert_int_equal(ram_proc_maps_line(NULL, &maj, &min, &ino), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_shared_file),
            cmocka_unit_test(test_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

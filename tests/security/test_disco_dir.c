/* SPDX-License-Identifier: MIT */
/* The trigger directory itself under attack (issue 9, item 8): deleted and
 * recreated, swapped for another directory, files slipped in behind the
 * inotify watch. vmsigd must follow the directory at its path with no
 * restart, and SIGHUP must really rescan and say what it did. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "daemon/vmsigd_harness.h"
#include "test_disco_util.h"

static struct vh H;

static void rm_rf(const char *path)
{
        nftw(path, vh_rm_cb_, 16, FTW_DEPTH | FTW_PHYS);
}

/* `rm -rf` the directory, recreate it, add a VM: served, no restart. */
static void test_deleted_and_recreated(void **state)
{
        (void)state;
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        assert_true(dz_wait_listed(&H, "alpha", true, VH_TIMEOUT_MS));

        rm_rf(H.trig);
        /* rm -rf deleted alpha's file first: alpha leaves. */
        assert_true(dz_wait_listed(&H, "alpha", false, VH_TIMEOUT_MS));
        assert_int_equal(mkdir(H.trig, 0755), 0);
        assert_int_equal(vh_vm_add(&H, "beta", NULL), 0);
        if (!dz_wait_listed(&H, "beta", true, VH_TIMEOUT_MS)) {
                vh_dump_log(&H);
                fail_msg("a VM in the recreated trigger directory was not served");
        }
        assert_true(dz_wait_log(&H, VH_TIMEOUT_MS, "trigger directory", "is back", NULL));

        /* And again, to be sure the new watch is live and re-armable. */
        rm_rf(H.trig);
        assert_int_equal(mkdir(H.trig, 0755), 0);
        assert_int_equal(vh_vm_add(&H, "gamma", NULL), 0);
        assert_true(dz_wait_listed(&H, "gamma", true, VH_TIMEOUT_MS));
        assert_false(dz_listed(&H, "beta"));
        assert_int_equal(kill(H.pid, 0), 0);
}

/* Swap the directory for another one (rename, atomic): the new one is
 * watched; a VM in both stays, one only in the new one appears. */
static void test_rename_replace(void **state)
{
        char other[192];

        (void)state;
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        assert_int_equal(vh_vm_add(&H, "beta", NULL), 0);
        assert_true(dz_wait_listed(&H, "alpha", true, VH_TIMEOUT_MS));
        assert_true(dz_wait_listed(&H, "beta", true, VH_TIMEOUT_MS));

        snprintf(other, sizeof(other), "%s.new", H.trig);
        assert_int_equal(mkdir(other, 0755), 0);
        assert_int_equal(dz_write(other, "alpha", "name=alpha\ndriver=stub\n"), 0);
        assert_int_equal(dz_write(other, "delta", "name=delta\ndriver=stub\n"), 0);
        assert_int_equal(renameat2(AT_FDCWD, other, AT_FDCWD, H.trig, RENAME_EXCHANGE), 0);

        if (!dz_wait_listed(&H, "delta", true, VH_TIMEOUT_MS)) {
                vh_dump_log(&H);
                fail_msg("a VM of the replacing directory was not served");
        }
        assert_true(dz_wait_listed(&H, "beta", false, VH_TIMEOUT_MS));
        assert_true(dz_listed(&H, "alpha"));
        /* alpha was in both: it never left. */
        assert_int_equal(dz_log_count(&H, "VM 'alpha' left"), 0);

        /* The watch follows the new directory, not the old inode. */
        assert_int_equal(vh_vm_add(&H, "omega", NULL), 0);
        assert_true(dz_wait_listed(&H, "omega", true, VH_TIMEOUT_MS));
        assert_int_equal(dz_write(other, "ghost", "name=ghost\ndriver=stub\n"), 0);
        rm_rf(other);
        assert_false(dz_listed(&H, "ghost"));
}

/* Files the watch cannot see: a hard link makes only IN_CREATE, and
 * truncate(2) only IN_MODIFY. SIGHUP finds both and logs the counts. It
 * must work after the directory was replaced, too. */
static void test_sighup_rescans(void **state)
{
        char src[192], dst[192], outside[192];

        (void)state;
        assert_int_equal(vh_vm_add(&H, "keep", NULL), 0);
        assert_int_equal(vh_vm_add(&H, "shrink", NULL), 0);
        assert_true(dz_wait_listed(&H, "shrink", true, VH_TIMEOUT_MS));

        snprintf(outside, sizeof(outside), "%s/outside", H.dir);
        assert_int_equal(mkdir(outside, 0755), 0);
        assert_int_equal(dz_write(outside, "linked", "name=linked\ndriver=stub\n"), 0);
        snprintf(src, sizeof(src), "%s/linked", outside);
        snprintf(dst, sizeof(dst), "%s/linked", H.trig);
        assert_int_equal(link(src, dst), 0);
        snprintf(dst, sizeof(dst), "%s/shrink", H.trig);
        assert_int_equal(truncate(dst, 0), 0);
        /* A marker written the normal way: once it is served, the events
         * before it were processed, and the two changes went unseen. */
        assert_int_equal(vh_vm_add(&H, "marker", NULL), 0);
        assert_true(dz_wait_listed(&H, "marker", true, VH_TIMEOUT_MS));
        assert_false(dz_listed(&H, "linked"));
        assert_true(dz_listed(&H, "shrink"));

        assert_int_equal(kill(H.pid, SIGHUP), 0);
        if (!dz_wait_listed(&H, "linked", true, VH_TIMEOUT_MS)) {
                vh_dump_log(&H);
                fail_msg("SIGHUP did not rescan the trigger directory");
        }
        assert_true(dz_wait_listed(&H, "shrink", false, VH_TIMEOUT_MS));
        assert_true(dz_listed(&H, "keep"));
        /* 4 files: linked added, shrink refused (and its VM removed), keep
         * and marker unchanged. */
        if (!dz_wait_log(&H, VH_TIMEOUT_MS, "rescanned", "(SIGHUP): 4 files: 1 added, 0 changed, 1 removed",
                         "1 refused, 2 unchanged")) {
                vh_dump_log(&H);
                fail_msg("the SIGHUP rescan did not log what it did");
        }

        /* After the directory was replaced, SIGHUP still rescans the one at
         * the path (the link may or may not predate the re-arm's rescan). */
        rm_rf(H.trig);
        assert_int_equal(mkdir(H.trig, 0755), 0);
        snprintf(dst, sizeof(dst), "%s/linked", H.trig);
        assert_int_equal(link(src, dst), 0);
        assert_int_equal(kill(H.pid, SIGHUP), 0);
        if (!dz_wait_listed(&H, "linked", true, VH_TIMEOUT_MS)) {
                vh_dump_log(&H);
                fail_msg("SIGHUP did not rescan the replaced trigger directory");
        }
        assert_false(dz_listed(&H, "keep"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            vh_unit_test(test_deleted_and_recreated, &H),
            vh_unit_test(test_rename_replace, &H),
            vh_unit_test(test_sighup_rescans, &H),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

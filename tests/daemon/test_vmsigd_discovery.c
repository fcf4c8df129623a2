/* SPDX-License-Identifier: MIT */
/* vmsigd integration: discovery through the daemon. Trigger files added
 * (atomically), removed, renamed (same VM: no ROSTER LEFT), a malformed
 * file logged and ignored, and a burst of 100 VMs coming and going seen as
 * exactly 100 APPEARED and 100 LEFT, with vmsigctl list agreeing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "vmsigd_harness.h"

#define BURST 100

static struct vh H;

static int setup(void **state)
{
        (void)state;
        if (vh_start(&H, "[limits]\nqueue_bytes = 8M\n") < 0) {
                vh_teardown(&H);
                return -1;
        }
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        vh_teardown(&H);
        return 0;
}

struct roster_log {
        unsigned appeared, left, changed;
        unsigned left_of_alpha;
        uint8_t seen_ep[1025]; /* per endpoint: 1 appeared, 2 left */
        bool dup;              /* an endpoint appeared twice or left twice */
};

static void log_roster(const struct vmsig_event *ev, int fd, void *ud)
{
        struct roster_log *l = ud;
        struct vmsig_roster_body rb;

        if (fd >= 0)
                close(fd);
        if (ev->hdr.kind != VMSIG_EV_ROSTER)
                return;
        memcpy(&rb, ev->body, sizeof(rb));
        rb.name[sizeof(rb.name) - 1] = '\0';
        uint32_t ep = ev->hdr.endpoint <= 1024 ? ev->hdr.endpoint : 0;
        switch (rb.change) {
        case VMSIG_ROSTER_APPEARED:
                l->appeared++;
                if (l->seen_ep[ep] == 1)
                        l->dup = true;
                l->seen_ep[ep] = 1;
                break;
        case VMSIG_ROSTER_LEFT:
                l->left++;
                if (l->seen_ep[ep] != 1)
                        l->dup = true;
                l->seen_ep[ep] = 2;
                if (strcmp(rb.name, "alpha") == 0)
                        l->left_of_alpha++;
                break;
        default:
                l->changed++;
                break;
        }
}

static void wait_roster(struct vmsig_client *c, const char *name, uint8_t change, struct roster_log *l,
                        uint32_t *ret_ep)
{
        struct vh_match m = {.kind = VMSIG_EV_ROSTER, .name = name, .roster_change = change};
        struct vmsig_event ev;
        int r = vh_wait_event(c, &m, &ev, log_roster, l, VH_TIMEOUT_MS);

        if (r < 0) {
                vh_dump_log(&H);
                fail_msg("no ROSTER %s for '%s': %s", change == VMSIG_ROSTER_LEFT ? "LEFT" : "APPEARED", name,
                         strerror(-r));
        }
        if (ret_ep)
                *ret_ep = ev.hdr.endpoint;
}

/* vmsigctl list: the number of VM rows (header excluded). */
static unsigned list_count(void)
{
        static char out[65536];
        int code = vh_vmsigctl(&H, -1, out, sizeof(out), "list", (char *)NULL);

        if (code != 0)
                fail_msg("vmsigctl list: exit %d: %s", code, out);
        unsigned rows = 0;
        for (const char *line = out; *line;) {
                const char *eol = strchrnul(line, '\n');
                if (line[0] >= '0' && line[0] <= '9')
                        rows++;
                line = *eol ? eol + 1 : eol;
        }
        return rows;
}

static void test_add_remove_rename_invalid(void **state)
{
        (void)state;
        struct roster_log l = {0};
        struct vmsig_client *w = vh_client(&H, "watch");
        assert_non_null(w);
        assert_int_equal(vh_subscribe(w, 0, 1ull << VMSIG_EV_ROSTER, log_roster, &l), 0);

        uint32_t ep_a = 0, ep_b = 0, ep_c = 0;
        assert_int_equal(vh_vm_add(&H, "alpha", NULL), 0);
        wait_roster(w, "alpha", VMSIG_ROSTER_APPEARED, &l, &ep_a);

        /* Rename the file, same VM name: a change at most, never LEFT. */
        char from[256], to[256];
        snprintf(from, sizeof(from), "%s/alpha", H.trig);
        snprintf(to, sizeof(to), "%s/alpha-renamed", H.trig);
        assert_int_equal(rename(from, to), 0);

        /* A malformed file: logged, ignored. */
        char bad[256];
        snprintf(bad, sizeof(bad), "%s/.broken.new", H.trig);
        assert_int_equal(vh_write_file(bad, "name=bad name!\ndriver=stub\n", 0644), 0);
        snprintf(from, sizeof(from), "%s/broken", H.trig);
        assert_int_equal(rename(bad, from), 0);

        /* A sentinel after both: once it is seen, discovery has handled the
         * rename and the bad file (inotify order, one bus queue). */
        assert_int_equal(vh_vm_add(&H, "beta", NULL), 0);
        wait_roster(w, "beta", VMSIG_ROSTER_APPEARED, &l, &ep_b);
        assert_int_equal(l.left, 0);
        assert_int_equal(l.appeared, 2);
        assert_true(ep_a != ep_b);
        if (!vh_file_has_line(H.log, "ignoring trigger file", "broken", (char *)NULL)) {
                vh_dump_log(&H);
                fail_msg("the malformed trigger file was not logged");
        }

        /* The daemon keeps serving: list shows the two good VMs. */
        assert_int_equal(list_count(), 2);

        /* Remove through the new name: LEFT for alpha, same endpoint. */
        assert_int_equal(vh_vm_remove(&H, "alpha-renamed"), 0);
        struct vh_match m = {.kind = VMSIG_EV_ROSTER, .name = "alpha", .roster_change = VMSIG_ROSTER_LEFT};
        struct vmsig_event ev;
        assert_int_equal(vh_wait_event(w, &m, &ev, log_roster, &l, VH_TIMEOUT_MS), 0);
        assert_int_equal(ev.hdr.endpoint, ep_a);
        assert_int_equal(l.left_of_alpha, 1);

        /* Fixing the bad file makes it a VM. */
        snprintf(bad, sizeof(bad), "%s/.broken.new", H.trig);
        assert_int_equal(vh_write_file(bad, "name=gamma\ndriver=stub\n", 0644), 0);
        assert_int_equal(rename(bad, from), 0);
        wait_roster(w, "gamma", VMSIG_ROSTER_APPEARED, &l, &ep_c);
        assert_int_equal(list_count(), 2);
        assert_false(l.dup);
        vh_client_close(w);
}

static void test_burst_of_100(void **state)
{
        (void)state;
        struct roster_log *l = calloc(1, sizeof(*l));
        struct vmsig_client *w = vh_client(&H, "watch");
        char name[32];
        assert_non_null(l);
        assert_non_null(w);
        assert_int_equal(vh_subscribe(w, 0, 1ull << VMSIG_EV_ROSTER, log_roster, l), 0);

        for (int i = 0; i < BURST; i++) {
                snprintf(name, sizeof(name), "vm%03d", i);
                assert_int_equal(vh_vm_add(&H, name, NULL), 0);
        }
        uint64_t deadline = vh_now_ms() + 3 * VH_TIMEOUT_MS;
        while (l->appeared < BURST) {
                struct vh_match any = {.kind = VMSIG_EV_ROSTER};
                int r = vh_wait_event(w, &any, NULL, log_roster, l, vh_left(deadline));
                if (r < 0)
                        fail_msg("only %u of %d VMs appeared: %s", l->appeared, BURST, strerror(-r));
        }
        assert_int_equal(list_count(), BURST);

        for (int i = 0; i < BURST; i++) {
                snprintf(name, sizeof(name), "vm%03d", i);
                assert_int_equal(vh_vm_remove(&H, name), 0);
        }
        while (l->left < BURST) {
                struct vh_match any = {.kind = VMSIG_EV_ROSTER};
                int r = vh_wait_event(w, &any, NULL, log_roster, l, vh_left(deadline));
                if (r < 0)
                        fail_msg("only %u of %d VMs left: %s", l->left, BURST, strerror(-r));
        }
        /* A sentinel flushes anything still in flight: no extra events. */
        assert_int_equal(vh_vm_add(&H, "sentinel", NULL), 0);
        wait_roster(w, "sentinel", VMSIG_ROSTER_APPEARED, l, NULL);
        assert_int_equal(l->appeared, BURST + 1);
        assert_int_equal(l->left, BURST);
        assert_false(l->dup);
        assert_int_equal(vh_vm_remove(&H, "sentinel"), 0);
        wait_roster(w, "sentinel", VMSIG_ROSTER_LEFT, l, NULL);
        assert_int_equal(list_count(), 0);
        vh_client_close(w);
        free(l);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_add_remove_rename_invalid, setup, teardown),
            cmocka_unit_test_setup_teardown(test_burst_of_100, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

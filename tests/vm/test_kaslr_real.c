/* SPDX-License-Identifier: MIT */
/* A real guest booted WITH KASLR, through the real daemon and CLI: the
 * memctx adapter finds the randomised kernel base without symbols and
 * publishes it in the MEMCTX; it equals _text from the guest's own
 * /proc/kallsyms (printed on the serial console when the kernel command line
 * has vmsig.ktext); and `vmsigctl read VM linux_banner --symbols System.map`
 * (a map of the nokaslr kernel) applies the slide and prints what the
 * guest's /proc/version says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <inttypes.h>

#include "../daemon/vmsigd_harness.h"
#include "vm_guest.h"

static struct vh H;
static struct vm_guest G = {.pid = -1};

static int setup(void **state)
{
        return vm_guest_load_env(&G) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
        vh_teardown(&H);
        vm_guest_stop(&G);
        return 0;
}

/* The rest of the first serial line that starts with marker, at or after
 * the text after (kernel messages may interleave with the init's lines). */
static bool serial_line(const char *after, const char *marker, char *out, size_t cap)
{
        const char *s = strstr(vm_guest_serial_text(&G), after);
        for (; s; s = strchr(s, '\n')) {
                while (*s == '\n' || *s == '\r')
                        s++;
                if (strncmp(s, marker, strlen(marker)) != 0)
                        continue;
                s += strlen(marker);
                size_t n = strcspn(s, "\r\n");
                if (n >= cap)
                        n = cap - 1;
                memcpy(out, s, n);
                out[n] = '\0';
                return true;
        }
        return false;
}

static void test_kaslr_base_and_symbol_read(void **state)
{
        char out[8192], text[128], version[512], map[600];
        struct vm_guest_opts o = {.mem = "256M", .kaslr = true, .append = "vmsig.ktext"};

        snprintf(map, sizeof(map), "%s/System.map", getenv("VMSIG_GUEST_DIR"));
        printf("# booting the guest with KASLR\n");
        assert_int_equal(vm_guest_start(&G, "kaslr", &o), 0);
        assert_int_equal(vm_guest_wait_serial(&G, "VMSIG-GUEST-READY", 90000), 0);
        /* "VMSIG-KTEXT ffffffff9a600000 T _text" and, after the ready
         * marker, /proc/version */
        assert_true(serial_line("VMSIG-", "VMSIG-KTEXT ", text, sizeof(text)));
        uint64_t ktext = strtoull(text, NULL, 16);
        strcpy(version, "Linux version ");
        /* /proc/version follows the ready marker: poll for it */
        bool got = false;
        for (long deadline = vm_guest_now_ms() + 30000; !got && vm_guest_now_ms() < deadline;) {
                got = serial_line("VMSIG-GUEST-READY", "Linux version ", version + 14, sizeof(version) - 14);
                if (!got)
                        usleep(50000);
        }
        assert_true(got);
        printf("# guest _text 0x%" PRIx64 ", /proc/version: %s\n", ktext, version);
        assert_true(ktext >= 0xffffffff80000000ull);
        assert_non_null(strstr(version, "Linux version "));

        assert_int_equal(vh_start(&H, NULL), 0);
        struct vmsig_client *c = vh_client(&H, "kaslr-watch");
        assert_non_null(c);
        assert_int_equal(
            vh_subscribe(c, 0, VMSIG_KIND_BIT(VMSIG_EV_ROSTER) | VMSIG_KIND_BIT(VMSIG_EV_MEMCTX), NULL, NULL),
            0);
        assert_int_equal(vh_vm_add_qemu(&H, "demo", G.qmp, G.shm), 0);
        uint32_t ep = vh_wait_vm(c, "demo");
        assert_true(ep != 0);

        /* The MEMCTX's kernel base is the guest's own _text. */
        printf("# waiting for the memory context\n");
        struct vmsig_memctx ctx;
        assert_int_equal(vh_wait_memctx(c, ep, &ctx, 90000), 0);
        close(ctx.fd);
        printf("# MEMCTX kernel_root 0x%" PRIx64 " kernel_base 0x%" PRIx64 "\n", ctx.kernel_root,
               ctx.kernel_base);
        assert_int_equal(ctx.os_kind, VMSIG_OS_LINUX);
        assert_int_equal(ctx.kernel_base, ktext);

        /* The CLI: symbol from the nokaslr map, moved by the slide. */
        assert_int_equal(vh_vmsigctl(&H, -1, out, sizeof(out), "read", "demo", "linux_banner", "--symbols",
                                     map, (char *)NULL),
                         0);
        printf("# %s", out);
        char base[64];
        snprintf(base, sizeof(base), "kernel base 0x%" PRIx64, ktext);
        assert_non_null(strstr(out, base));
        assert_non_null(strstr(out, version));
        vh_client_close(c);
        assert_int_equal(vh_stop(&H, 10000), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_kaslr_base_and_symbol_read, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

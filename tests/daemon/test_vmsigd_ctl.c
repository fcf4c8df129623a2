/* SPDX-License-Identifier: MIT */
/* vmsigctl's command surface, read from its one command table: --help lists
 * the commands, dispatch finds each of them (and only them), and every
 * command with fixed arguments answers wrong ones with its own usage line
 * (exit 2). Pins the text so that the table and the files the commands live
 * in can change without the CLI changing. Runs the real vmsigd with a stub
 * VM and the real vmsigctl. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h> /* after the three above, which it needs */

#include "vmsigd_harness.h"

static struct vh H;

static int setup(void **state)
{
        struct vmsig_client *c;
        bool up;

        (void)state;
        if (vh_start(&H, NULL) < 0 || !(c = vh_client(&H, "setup"))) {
                vh_teardown(&H);
                return -1;
        }
        /* Subscribed before the VM appears, so its ROSTER is not replayed
         * (and consumed) before the subscription's REPLY. */
        up = vh_subscribe(c, 0, 1ull << VMSIG_EV_ROSTER, NULL, NULL) == 0 &&
             vh_vm_add(&H, "alpha", NULL) == 0 && vh_wait_vm(c, "alpha") != 0;
        vh_client_close(c);
        if (!up) {
                vh_dump_log(&H);
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

#define CTL(out, ...) vh_vmsigctl(&H, -1, (out), sizeof(out), __VA_ARGS__, (char *)NULL)

static void expect(int code, const char *out, int want_code, const char *want_out)
{
        if (code != want_code || strcmp(out, want_out) != 0)
                fail_msg("exit %d, output:\n%s\nexpected exit %d, output:\n%s", code, out, want_code,
                         want_out);
}

static const char help_commands[] =
    "Commands (VM = name or endpoint id):\n"
    "  list                         the VMs vmsigd knows, their adapters and run state\n"
    "  watch [VM]                   print events as they happen (Ctrl-C to stop)\n"
    "  status VM                    ask the VM's run state\n"
    "  power VM OP                  on | off | reset | pause | resume | powerdown\n"
    "  lease VM CLASS               hold the input, power or memwrite lease until interrupted\n"
    "  read VM ADDR [LEN]           hexdump guest memory (kernel virtual address by default), or the string "
    "there\n"
    "  write VM ADDR HEXBYTES       write guest memory under the memwrite lease (--file F instead)\n"
    "  input VM ACTION ...          move X Y | rel DX DY | click [BTN] | key KEY... | type TEXT | wheel N\n"
    "  frame VM -o PNG|--watch      the vgpu-stream screen: save a PNG, watch fps/latency, or --request OP\n"
    "\n";

/* --help, -h and the help command print the same text, listing every
 * command in table order; help is not listed. */
static void test_help(void **state)
{
        char out[8192], out2[8192];

        (void)state;
        assert_int_equal(CTL(out, "--help"), 0);
        if (!strstr(out, help_commands) ||
            strncmp(out, "Usage: vmsigctl [OPTIONS] COMMAND [ARGS]\n\n", 42) != 0)
                fail_msg("--help:\n%s\nexpected it to contain:\n%s", out, help_commands);
        assert_int_equal(CTL(out2, "help"), 0);
        assert_string_equal(out, out2);
        assert_int_equal(CTL(out2, "-h"), 0);
        assert_string_equal(out, out2);
        assert_int_equal(CTL(out2, "list", "--help"), 0);
        assert_string_equal(out, out2);
}

/* An unknown command: named, then the help on stderr, exit 2. */
static void test_unknown_command(void **state)
{
        char out[8192], help[8192];

        (void)state;
        assert_int_equal(CTL(help, "--help"), 0);
        assert_int_equal(CTL(out, "frobnicate"), 2);
        assert_true(strncmp(out, "vmsigctl: unknown command 'frobnicate'\n", 39) == 0);
        assert_string_equal(out + 39, help);
}

/* Each command with fixed arguments, given none: its own usage line. */
static void test_usage_errors(void **state)
{
        static const struct {
                const char *cmd, *usage;
        } rows[] = {
            {"status", "vmsigctl: usage: vmsigctl status VM\n"},
            {"power", "vmsigctl: usage: vmsigctl power VM on|off|reset|pause|resume|powerdown\n"},
            {"lease", "vmsigctl: usage: vmsigctl lease VM input|power|memwrite\n"},
            {"read",
             "vmsigctl: usage: vmsigctl read [--phys] [--cr3 ROOT] [--symbols MAP] VM ADDR|SYMBOL[+OFF] "
             "[LEN]\n"},
            {"write",
             "vmsigctl: usage: vmsigctl write [--phys] [--cr3 ROOT] VM ADDR HEXBYTES | --file F VM ADDR\n"},
            {"input",
             "vmsigctl: usage: vmsigctl input [--ff] VM move X Y | rel DX DY | click [left|right|middle] | "
             "key KEY... | type TEXT | wheel N\n"},
        };
        char out[4096];

        (void)state;
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
                expect(CTL(out, rows[i].cmd), out, 2, rows[i].usage);
        expect(CTL(out, "watch", "alpha", "beta"), out, 2, "vmsigctl: watch takes at most one VM\n");
        expect(
            CTL(out, "input", "alpha", "jump"), out, 2,
            "vmsigctl: unknown input action 'jump'\nusage: vmsigctl input [--ff] VM move X Y | rel DX DY | "
            "click [left|right|middle] | key KEY... | type TEXT | wheel N\n");
}

/* Names that come from libvmsig: power operations, lease classes, seams. */
static void test_names(void **state)
{
        char out[4096];

        (void)state;
        expect(CTL(out, "power", "alpha", "explode"), out, 2,
               "vmsigctl: unknown power operation 'explode' (on, off, reset, pause, resume, powerdown)\n");
        expect(CTL(out, "lease", "alpha", "everything"), out, 2,
               "vmsigctl: unknown lease class 'everything' (input, power, memwrite)\n");
        assert_int_equal(CTL(out, "list"), 0);
        if (!strstr(out, "ID   NAME                     ADAPTERS             STATE\n") ||
            !strstr(out, " alpha                    memctx,input,vmhost  running\n"))
                fail_msg("vmsigctl list:\n%s", out);
        assert_int_equal(CTL(out, "-j", "list"), 0);
        if (!strstr(out,
                    "\"name\": \"alpha\", \"adapters\": \"memctx,input,vmhost\", \"state\": \"running\"}\n"))
                fail_msg("vmsigctl -j list:\n%s", out);
}

/* Every listed command is dispatched: with a VM that does not exist, each
 * one that takes a VM reaches name resolution (exit 5), none is "unknown". */
static void test_dispatch(void **state)
{
        static const char *const cmds[][4] = {
            {"watch", "nosuch"},          {"status", "nosuch"},         {"power", "nosuch", "pause"},
            {"lease", "nosuch", "input"}, {"read", "nosuch", "0", "1"}, {"write", "nosuch", "0", "00"},
            {"input", "nosuch", "wheel"},
        };
        char out[4096];

        (void)state;
        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
                int code = CTL(out, cmds[i][0], cmds[i][1], cmds[i][2], cmds[i][3]);
                if (code != 5 ||
                    strcmp(out, "vmsigctl: no VM named 'nosuch' (vmsigctl list shows them)\n") != 0)
                        fail_msg("vmsigctl %s nosuch ...: exit %d: %s", cmds[i][0], code, out);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_help),         cmocka_unit_test(test_unknown_command),
            cmocka_unit_test(test_usage_errors), cmocka_unit_test(test_names),
            cmocka_unit_test(test_dispatch),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}

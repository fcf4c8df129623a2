/* SPDX-License-Identifier: MIT */
/* vmsigctl: the command-line control. One connection per invocation; VMs by
 * name or endpoint id. Exit codes: 0 ok, 1 the command failed, 2 usage,
 * 3 cannot reach or was refused by vmsigd, 4 denied (capability or lease),
 * 5 no such VM.
 *
 * This file: options, the command table and --help. The commands live in
 * ctl_<subject>.c; a new one is a function there plus a row below (and its
 * entry in docs/man/vmsigctl.1). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/ctl_common.h"

#define DEFAULT_SOCKET "/run/vmsig/vmsigd.sock"

static int cmd_help(struct ctl *ctl, int argc, char **argv);

/* In --help order. args and summary make the --help line; usage (after
 * "usage: vmsigctl NAME ") is what a command prints for wrong arguments. */
static const struct ctl_command commands[] = {
    {.name = "list", .run = ctl_cmd_list, .summary = "the VMs vmsigd knows, their adapters and run state"},
    {.name = "watch",
     .run = ctl_cmd_watch,
     .args = "[VM]",
     .summary = "print events as they happen (Ctrl-C to stop)"},
    {.name = "status",
     .run = ctl_cmd_status,
     .args = "VM",
     .summary = "ask the VM's run state",
     .usage = "VM"},
    {.name = "power",
     .run = ctl_cmd_power,
     .args = "VM OP",
     .summary = "on | off | reset | pause | resume | powerdown",
     .usage = "VM on|off|reset|pause|resume|powerdown"},
    {.name = "lease",
     .run = ctl_cmd_lease,
     .args = "VM CLASS",
     .summary = "hold the input, power or memwrite lease until interrupted",
     .usage = "VM input|power|memwrite"},
    {.name = "read",
     .run = ctl_cmd_read,
     .args = "VM ADDR [LEN]",
     .summary = "hexdump guest memory (kernel virtual address by default), or the string there",
     .usage = "[--phys] [--cr3 ROOT] [--symbols MAP] VM ADDR|SYMBOL[+OFF] [LEN]"},
    {.name = "write",
     .run = ctl_cmd_write,
     .args = "VM ADDR HEXBYTES",
     .summary = "write guest memory under the memwrite lease (--file F instead)",
     .usage = "[--phys] [--cr3 ROOT] VM ADDR HEXBYTES | --file F VM ADDR"},
    {.name = "input",
     .run = ctl_cmd_input,
     .args = "VM ACTION ...",
     .summary = "move X Y | rel DX DY | click [BTN] | key KEY... | type TEXT | wheel N",
     .usage =
         "[--ff] VM move X Y | rel DX DY | click [left|right|middle] | key KEY... | type TEXT | wheel N"},
    {.name = "frame",
     .run = ctl_cmd_frame,
     .args = "VM -o PNG|--watch",
     .summary = "the vgpu-stream screen: save a PNG, watch fps/latency, or --request OP",
     .usage = "VM -o FILE.png | --watch | --request pause|resume|fps=N|full|region=X,Y,W,H"},
    {.name = "help", .run = cmd_help, .offline = true}, /* same as --help; not listed */
};

static const struct ctl_command *command_find(const char *name)
{
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(name, commands[i].name) == 0)
                        return &commands[i];
        return NULL;
}

static void usage(FILE *f)
{
        fputs("Usage: vmsigctl [OPTIONS] COMMAND [ARGS]\n"
              "\n"
              "Commands (VM = name or endpoint id):\n",
              f);
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
                const struct ctl_command *cmd = &commands[i];
                char synopsis[64];

                if (!cmd->summary)
                        continue;
                snprintf(synopsis, sizeof(synopsis), "%s%s%s", cmd->name, cmd->args ? " " : "",
                         cmd->args ? cmd->args : "");
                fprintf(f, "  %-28s %s\n", synopsis, cmd->summary);
        }
        fprintf(f,
                "\n"
                "Options:\n"
                "  -s, --socket PATH   vmsigd socket (default $VMSIG_SOCKET or %s)\n"
                "  -t, --timeout MS    how long to wait for answers (default 5000)\n"
                "  -j, --json          JSON lines for list and watch\n"
                "      --phys          read/write: ADDR is guest-physical\n"
                "      --cr3 ROOT      read/write: translate under this page-table root, not the kernel's\n"
                "      --file F        write: the bytes come from file F\n"
                "      --symbols MAP   read: resolve SYMBOL[+OFF] in a System.map or /proc/kallsyms text,\n"
                "                      moved by the guest kernel's KASLR slide\n"
                "      --ff            input: fire-and-forget (no acknowledgement)\n"
                "  -o, --output FILE   frame: save the newest frame as a PNG\n"
                "      --watch         frame: fps, dropped frames and latency once a second\n"
                "      --request OP    frame: send a control request to the producer\n"
                "  -h, --help          this help\n"
                "\n"
                "Exit codes: 0 ok, 1 command failed, 2 usage, 3 vmsigd unreachable or refused,\n"
                "4 denied (capability or lease), 5 no such VM. See vmsigctl(1).\n",
                DEFAULT_SOCKET);
}

static int cmd_help(struct ctl *ctl, int argc, char **argv)
{
        usage(stdout);
        return 0;
}

enum { OPT_PHYS = 0x100, OPT_CR3, OPT_FILE, OPT_FF, OPT_SYMBOLS, OPT_WATCH, OPT_REQUEST };
static const struct option cli_opts[] = {{"socket", required_argument, NULL, 's'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"phys", no_argument, NULL, OPT_PHYS},
                                         {"cr3", required_argument, NULL, OPT_CR3},
                                         {"file", required_argument, NULL, OPT_FILE},
                                         {"ff", no_argument, NULL, OPT_FF},
                                         {"symbols", required_argument, NULL, OPT_SYMBOLS},
                                         {"output", required_argument, NULL, 'o'},
                                         {"watch", no_argument, NULL, OPT_WATCH},
                                         {"request", required_argument, NULL, OPT_REQUEST},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};

/* Options before and after the command, parsed the same way: '+' stops at
 * the first operand so "input VM rel -5 3" keeps its -5. Returns -1 when
 * done, else an exit code (help printed, or a usage error). */
static int parse_options(int argc, char **argv, struct ctl *ctl)
{
        int opt;

        while ((opt = getopt_long(argc, argv, "+s:t:jho:", cli_opts, NULL)) != -1) {
                switch (opt) {
                case 's':
                        ctl->socket_path = optarg;
                        break;
                case 't':
                        ctl->timeout_ms = atoi(optarg);
                        if (ctl->timeout_ms <= 0)
                                return ctl_fail(EXIT_USAGE,
                                                "--timeout must be a positive number of milliseconds");
                        break;
                case 'j':
                        ctl->json = true;
                        break;
                case OPT_PHYS:
                        ctl->phys = true;
                        break;
                case OPT_CR3:
                        ctl->cr3 = optarg;
                        break;
                case OPT_FILE:
                        ctl->file = optarg;
                        break;
                case OPT_FF:
                        ctl->ff = true;
                        break;
                case OPT_SYMBOLS:
                        ctl->symbols = optarg;
                        break;
                case 'o':
                        ctl->output = optarg;
                        break;
                case OPT_WATCH:
                        ctl->watch = true;
                        break;
                case OPT_REQUEST:
                        ctl->request = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return EXIT_USAGE;
                }
        }
        return -1;
}

int main(int argc, char **argv)
{
        struct ctl ctl = {.timeout_ms = 5000};
        int r;

        ctl.socket_path = getenv("VMSIG_SOCKET") ? getenv("VMSIG_SOCKET") : DEFAULT_SOCKET;
        if ((r = parse_options(argc, argv, &ctl)) >= 0)
                return r;
        if (optind >= argc) {
                usage(stderr);
                return EXIT_USAGE;
        }
        const char *name = argv[optind];
        int sub_argc = argc - optind;
        char **sub_argv = argv + optind;
        optind = 1;
        if ((r = parse_options(sub_argc, sub_argv, &ctl)) >= 0)
                return r;
        int cargc = sub_argc - optind;
        char **cargv = sub_argv + optind;
        if (!(ctl.cmd = command_find(name))) {
                ctl_fail(EXIT_USAGE, "unknown command '%s'", name);
                usage(stderr);
                return EXIT_USAGE;
        }
        if (ctl.cmd->offline)
                return ctl.cmd->run(&ctl, cargc, cargv);
        ctl_signals_install();
        if ((r = ctl_connect(&ctl)))
                return r;
        r = ctl.cmd->run(&ctl, cargc, cargv);
        vmsig_client_free(ctl.client);
        return r;
}

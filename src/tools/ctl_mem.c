/* SPDX-License-Identifier: MIT */
/* vmsigctl read and write: guest memory. read maps the VM's read-only
 * memory context itself; write sends CMD_MEMWRITE under the memwrite lease. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmie/vmie.h>
#include <vmsig/bus.h>
#include <vmsig/memctx.h>

#include "tools/ctl_common.h"
#include "tools/symfile.h"

struct memctx_catch {
        struct vmsig_memctx ctx;
        bool got;
        char why[VMSIG_MSG_MAX];       /* the memctx adapter's retained DIAG: why there is none */
        uint8_t run_state;             /* from STATUS, when subscribed */
        char state_why[VMSIG_MSG_MAX]; /* its reason */
};

static void catch_memctx(const struct vmsig_event *ev, int fd, void *ud)
{
        struct memctx_catch *m = ud;

        if (ev->hdr.kind == VMSIG_EV_DIAG && ev->hdr.source == VMSIG_SRC_MEMCTX &&
            ev->hdr.body_len == sizeof(struct vmsig_diag_body)) {
                struct vmsig_diag_body b;
                memcpy(&b, ev->body, sizeof(b));
                b.msg[sizeof(b.msg) - 1] = '\0';
                if (b.code < 0)
                        memcpy(m->why, b.msg, sizeof(m->why));
        } else if (ev->hdr.kind == VMSIG_EV_STATUS && ev->hdr.body_len == sizeof(struct vmsig_status_body)) {
                struct vmsig_status_body b;
                memcpy(&b, ev->body, sizeof(b));
                b.reason[sizeof(b.reason) - 1] = '\0';
                m->run_state = b.run_state;
                memcpy(m->state_why, b.reason, sizeof(m->state_why));
        }

        if (ev->hdr.kind == VMSIG_EV_MEMCTX && fd >= 0 && vmsig_memctx_from_event(ev, fd, &m->ctx) == 0 &&
            m->ctx.fd >= 0) {
                if (m->got)
                        close(m->ctx.fd);
                m->got = true;
                return;
        }
        if (fd >= 0)
                close(fd);
}

static int parse_u64(const char *s, uint64_t *ret)
{
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 0);
        if (errno || !*s || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

static void hexdump(uint64_t addr, const uint8_t *p, size_t len)
{
        for (size_t off = 0; off < len; off += 16) {
                printf("%016" PRIx64 "  ", addr + off);
                for (size_t i = 0; i < 16; i++) {
                        if (off + i < len)
                                printf("%02x ", p[off + i]);
                        else
                                printf("   ");
                        if (i == 7)
                                putchar(' ');
                }
                printf(" |");
                for (size_t i = 0; i < 16 && off + i < len; i++)
                        putchar(isprint(p[off + i]) ? p[off + i] : '.');
                printf("|\n");
        }
}

/* Print a guest string: its bytes are the guest's, so no control character
 * but newline and tab reaches the terminal. */
static void print_guest_string(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f))
                        putchar(c);
                else
                        printf("\\x%02x", c);
        }
        if (n == 0 || s[n - 1] != '\n')
                putchar('\n');
}

/* "--symbols MAP" may also follow the operands: "read VM SYMBOL --symbols
 * MAP" reads naturally. Removes it from argv. */
static int take_trailing_symbols(struct ctl *ctl, int *argc, char **argv)
{
        for (int i = 0; i < *argc; i++) {
                const char *a = argv[i];
                int used;
                if (!strcmp(a, "--symbols")) {
                        if (i + 1 >= *argc)
                                return ctl_fail(EXIT_USAGE, "--symbols needs a file");
                        ctl->symbols = argv[i + 1];
                        used = 2;
                } else if (!strncmp(a, "--symbols=", 10)) {
                        ctl->symbols = a + 10;
                        used = 1;
                } else {
                        continue;
                }
                memmove(argv + i, argv + i + used, (size_t)(*argc - i - used) * sizeof(*argv));
                *argc -= used;
                i--;
        }
        return 0;
}

/* ADDR, or SYMBOL[+OFF] looked up in the symbol file (checked whole before
 * anything else happens) and moved by the running kernel's KASLR slide once
 * the memctx gives its base: map address - map _text + kernel_base. */
struct addr_spec {
        bool is_sym;
        char name[SYMFILE_NAME_MAX + 1];
        uint64_t off;
        uint64_t map_addr, map_text; /* from the symbol file */
        uint64_t addr;               /* a number, or the resolved symbol */
};

static int parse_addr_spec(const struct ctl *ctl, const char *arg, struct addr_spec *a)
{
        char err[512];

        memset(a, 0, sizeof(*a));
        if (parse_u64(arg, &a->addr) == 0)
                return 0;
        if (!ctl->symbols)
                return ctl_fail(
                    EXIT_USAGE,
                    "'%s' is not a number; to read a kernel symbol give --symbols System.map (or a "
                    "copy of /proc/kallsyms)",
                    arg);
        if (ctl->phys)
                return ctl_fail(EXIT_USAGE, "a symbol is a virtual address: --phys takes a number");
        if (symfile_split(arg, a->name, sizeof(a->name), &a->off) < 0)
                return ctl_fail(EXIT_USAGE, "'%s' is not SYMBOL or SYMBOL+OFFSET", arg);
        struct symfile_want w[2] = {{.name = a->name}, {.name = "_text"}};
        if (symfile_load(ctl->symbols, w, 2, err, sizeof(err)) < 0)
                return ctl_fail(EXIT_USAGE, "%s", err);
        for (int i = 0; i < 2; i++) {
                if (!w[i].line)
                        return ctl_fail(EXIT_USAGE, "%s: no symbol '%s'", ctl->symbols, w[i].name);
                if (w[i].dups)
                        return ctl_fail(EXIT_USAGE,
                                        "%s: '%s' is ambiguous: %u definitions at different addresses "
                                        "(lines %u and %u%s)",
                                        ctl->symbols, w[i].name, w[i].dups + 1, w[i].line, w[i].line2,
                                        w[i].dups > 1 ? ", ..." : "");
        }
        a->is_sym = true;
        a->map_addr = w[0].addr;
        a->map_text = w[1].addr;
        return 0;
}

static int resolve_symbol(const struct ctl *ctl, const char *vm, uint64_t kernel_base, struct addr_spec *a)
{
        if (!kernel_base)
                return ctl_fail(EXIT_FAILED,
                                "'%s' reports no kernel base (vmsigd too old, or the kernel image was not "
                                "found): cannot apply the KASLR slide to '%s'",
                                vm, a->name);
        uint64_t slide = kernel_base - a->map_text;
        bool down = (int64_t)slide < 0;
        a->addr = a->map_addr + slide + a->off;
        fprintf(stderr,
                "vmsigctl: %s+0x%" PRIx64 " = 0x%" PRIx64 " (%s 0x%" PRIx64 ", kernel base 0x%" PRIx64
                ", map _text 0x%" PRIx64 ", KASLR slide %s0x%" PRIx64 ")\n",
                a->name, a->off, a->addr, ctl->symbols, a->map_addr, kernel_base, a->map_text,
                down ? "-" : "+", down ? 0 - slide : slide);
        return 0;
}

#define READ_STR_MAX 4096u

int ctl_cmd_read(struct ctl *ctl, int argc, char **argv)
{
        struct memctx_catch m = {0};
        struct ctl_waiter w = {.each = catch_memctx, .ud = &m};
        struct vmie_range ranges[VMSIG_MEMCTX_MAX_RANGES];
        struct vmie_ram *ram = NULL;
        struct addr_spec a;
        uint64_t len = 0, cr3 = 0;
        uint32_t ep;
        uint8_t *buf;
        int r;

        if ((r = take_trailing_symbols(ctl, &argc, argv)))
                return r;
        if (argc != 2 && argc != 3)
                return ctl_usage_error(ctl);
        if ((r = parse_addr_spec(ctl, argv[1], &a)))
                return r;
        if (argc == 3 && (parse_u64(argv[2], &len) < 0 || len == 0 || len > (16u << 20)))
                return ctl_fail(EXIT_USAGE, "LEN must be a number of bytes, 1..16 MiB, got '%s'", argv[2]);
        if (ctl->cr3 && parse_u64(ctl->cr3, &cr3) < 0)
                return ctl_fail(EXIT_USAGE, "--cr3 must be a number, got '%s'", ctl->cr3);
        if (!(vmsig_client_get_info(ctl->client)->caps & VMSIG_CAP_MEMCTX))
                return ctl_fail(EXIT_DENIED, "your uid lacks the memctx capability");
        if ((r = ctl_resolve_vm(ctl, argv[0], &ep)))
                return r;
        uint64_t kinds = VMSIG_KIND_BIT(VMSIG_EV_MEMCTX);
        /* With the status capability, say why there is no context. */
        if (vmsig_client_get_info(ctl->client)->caps & VMSIG_CAP_STATUS)
                kinds |= VMSIG_KIND_BIT(VMSIG_EV_DIAG) | VMSIG_KIND_BIT(VMSIG_EV_STATUS);
        r = ctl_subscribe_sync(ctl, ep, kinds, &w);
        if (r < 0)
                return r == -ENOENT ? ctl_fail(EXIT_NOVM, "no endpoint %u", ep) : ctl_connection_lost(ctl, r);
        if (!m.got) {
                if (m.run_state == VMSIG_RUN_STARTING || m.run_state == VMSIG_RUN_GONE)
                        return ctl_fail(EXIT_FAILED, "'%s' has no address-space context: %s", argv[0],
                                        ESC(m.state_why));
                if (m.why[0])
                        return ctl_fail(EXIT_FAILED, "'%s' has no address-space context: %s", argv[0],
                                        ESC(m.why));
                return ctl_fail(EXIT_FAILED,
                                "'%s' has no valid address-space context yet (guest still booting?)",
                                argv[0]);
        }
        if (a.is_sym && (r = resolve_symbol(ctl, argv[0], m.ctx.kernel_base, &a))) {
                close(m.ctx.fd);
                return r;
        }
        for (uint32_t i = 0; i < m.ctx.nranges; i++) {
                ranges[i].gpa = m.ctx.ranges[i].gpa;
                ranges[i].len = m.ctx.ranges[i].len;
                ranges[i].file_offset = m.ctx.ranges[i].file_offset;
        }
        /* Safe mode: the QEMU user may shrink the file under us, and a
         * read through a mapping would then kill vmsigctl with SIGBUS. */
        r = vmie_ram_open_fd(m.ctx.fd, ranges, m.ctx.nranges, VMIE_RAM_NO_MMAP, &ram);
        close(m.ctx.fd);
        if (r < 0)
                return ctl_fail(EXIT_FAILED, "cannot open guest RAM of '%s': %s", argv[0], strerror(-r));
        buf = malloc(len ? len : READ_STR_MAX);
        if (!buf) {
                vmie_ram_free(ram);
                return ctl_fail(EXIT_FAILED, "out of memory");
        }
        uint64_t addr = a.addr;
        size_t slen = 0;
        if (ctl->phys) {
                if (!len) {
                        r = -ENOTSUP;
                        ctl_fail(EXIT_USAGE, "--phys needs LEN");
                } else {
                        r = vmie_ram_read(ram, addr, buf, len);
                        if (r < 0)
                                ctl_fail(EXIT_FAILED, "guest-physical 0x%" PRIx64 "+%" PRIu64 " of '%s': %s",
                                         addr, len, argv[0],
                                         r == -EFAULT ? "not RAM (a hole)" : strerror(-r));
                }
        } else {
                struct vmie_as as = {.ram = ram,
                                     .root = cr3 ? cr3 : m.ctx.kernel_root,
                                     .levels = (uint8_t)(m.ctx.paging == VMSIG_PAGING_5LEVEL ? 5 : 4)};
                size_t done = 0;
                if (len) {
                        r = vmie_read_virt(&as, addr, buf, len, &done);
                } else {
                        r = vmie_read_str(&as, addr, (char *)buf, READ_STR_MAX, &slen);
                        done = slen;
                }
                if (r == -E2BIG)
                        ctl_fail(EXIT_FAILED,
                                 "no string at 0x%" PRIx64 " of '%s': no NUL in %u bytes (give LEN)", addr,
                                 argv[0], READ_STR_MAX);
                else if (r < 0)
                        ctl_fail(EXIT_FAILED,
                                 "virtual 0x%" PRIx64 " under root 0x%" PRIx64 " of '%s': %s at 0x%" PRIx64,
                                 addr, as.root, argv[0], r == -EFAULT ? "not mapped" : strerror(-r),
                                 addr + done);
        }
        if (r == 0 && len)
                hexdump(addr, buf, len);
        else if (r == 0)
                print_guest_string((const char *)buf, slen);
        free(buf);
        vmie_ram_free(ram);
        return r == -ENOTSUP ? EXIT_USAGE : r < 0 ? EXIT_FAILED : 0;
}

static int parse_hex(const char *s, uint8_t **ret, size_t *ret_len)
{
        size_t n = strlen(s);
        uint8_t *b;

        if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
                s += 2, n -= 2;
        if (n == 0 || n % 2)
                return -EINVAL;
        b = malloc(n / 2);
        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < n / 2; i++) {
                unsigned v;
                if (!isxdigit((unsigned char)s[2 * i]) || !isxdigit((unsigned char)s[2 * i + 1]) ||
                    sscanf(s + 2 * i, "%2x", &v) != 1) {
                        free(b);
                        return -EINVAL;
                }
                b[i] = (uint8_t)v;
        }
        *ret = b;
        *ret_len = n / 2;
        return 0;
}

static int read_file(const char *path, uint8_t **ret, size_t *ret_len)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        size_t cap = 1 << 16, n = 0;
        uint8_t *b;

        if (fd < 0)
                return -errno;
        b = malloc(cap);
        for (;;) {
                if (!b) {
                        close(fd);
                        return -ENOMEM;
                }
                ssize_t k = read(fd, b + n, cap - n);
                if (k < 0) {
                        int e = -errno;
                        free(b);
                        close(fd);
                        return e;
                }
                if (k == 0)
                        break;
                n += (size_t)k;
                if (n == cap) {
                        if (cap >= (64u << 20)) {
                                free(b);
                                close(fd);
                                return -EFBIG;
                        }
                        uint8_t *nb = realloc(b, cap *= 2);
                        if (!nb)
                                free(b);
                        b = nb;
                }
        }
        close(fd);
        *ret = b;
        *ret_len = n;
        return 0;
}

int ctl_cmd_write(struct ctl *ctl, int argc, char **argv)
{
        struct vmsig_memwrite_body b = {0};
        struct vmsig_event ev;
        struct vmsig_ack_body ack;
        uint64_t addr, cr3 = 0;
        uint8_t *data = NULL;
        size_t len = 0;
        uint32_t ep;
        int r;

        if (argc != (ctl->file ? 2 : 3))
                return ctl_usage_error(ctl);
        if (parse_u64(argv[1], &addr) < 0)
                return ctl_fail(EXIT_USAGE, "ADDR must be a number, got '%s'", argv[1]);
        if (ctl->cr3 && parse_u64(ctl->cr3, &cr3) < 0)
                return ctl_fail(EXIT_USAGE, "--cr3 must be a number, got '%s'", ctl->cr3);
        r = ctl->file ? read_file(ctl->file, &data, &len) : parse_hex(argv[2], &data, &len);
        if (r < 0)
                return ctl->file ? ctl_fail(EXIT_USAGE, "cannot read %s: %s", ctl->file, strerror(-r))
                                 : ctl_fail(EXIT_USAGE, "'%s' is not an even number of hex digits", argv[2]);
        if (len == 0 || len > vmsig_client_get_info(ctl->client)->tail_max) {
                free(data);
                return ctl_fail(EXIT_USAGE, "%zu bytes: must be 1..%u", len,
                                vmsig_client_get_info(ctl->client)->tail_max);
        }
        if ((r = ctl_resolve_vm(ctl, argv[0], &ep)) || (r = ctl_acquire(ctl, ep, VMSIG_LEASE_MEMWRITE))) {
                free(data);
                return r;
        }
        b.addr = addr;
        b.len = (uint32_t)len;
        b.flags = ctl->phys ? VMSIG_MEMWRITE_PHYS : 0;
        vmsig_event_init(&ev, VMSIG_EV_CMD_MEMWRITE, ep, VMSIG_SRC_MEMCTX);
        ev.hdr.cr3 = cr3;
        const size_t head = offsetof(struct vmsig_memwrite_body, data);
        if (len <= VMSIG_MEMWRITE_INLINE_MAX) {
                memcpy(b.data, data, len);
                vmsig_event_set_body(&ev, &b, head + len);
                r = ctl_send_and_wait(ctl, &ev, NULL, 0, &ack);
        } else {
                vmsig_event_set_body(&ev, &b, head);
                r = ctl_send_and_wait(ctl, &ev, data, len, &ack);
        }
        free(data);
        if (r)
                return r;
        if (ack.result < 0) /* -EINPROGRESS / -ECONNABORTED: the outcome is unknown */
                return ctl_fail(ctl_exit_for(ack.result), "write to '%s' at 0x%" PRIx64 ": %s (%s)", argv[0],
                                addr, ESC(ack.msg),
                                ack.result == -EINPROGRESS || ack.result == -ECONNABORTED
                                    ? "it may have been written"
                                    : "nothing was written");
        printf("%s: %s\n", argv[0], ESC(ack.msg));
        return 0;
}

/* SPDX-License-Identifier: MIT */
/* vmsigctl: the command-line control. One connection per invocation; VMs by
 * name or endpoint id. Exit codes: 0 ok, 1 the command failed, 2 usage,
 * 3 cannot reach or was refused by vmsigd, 4 denied (capability or lease),
 * 5 no such VM. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmie/vmie.h>
#include <vmsig/adapter.h> /* vmsig_seams_format */
#include <vmsig/bus.h>
#include <vmsig/client.h>
#include <vmsig/memctx.h>

#include "tools/keymap.h"

enum { EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3, EXIT_DENIED = 4, EXIT_NOVM = 5 };

#define DEFAULT_SOCKET "/run/vmsig/vmsigd.sock"

static const char *socket_path;
static int timeout_ms = 5000;
static bool json;
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
        interrupted = 1;
}

/* Every string that came from vmsigd (ERROR, REPLY and ACK messages, which
 * may quote another control's HELLO name; VM names) reaches the terminal
 * through this, escaped the way `watch` prints: no escape sequence and no
 * newline of someone else's choosing. Rotating buffers, so that one printf
 * can use several. */
static const char *esc_as(const char *s, size_t max, bool as_json)
{
        static char bufs[4][VMSIG_MSG_MAX * 6 + 1];
        static unsigned next;
        char *b = bufs[next++ % 4];

        return vmsig_str_escape(s, max, as_json, b, sizeof(bufs[0]));
}
#define ESC(field) esc_as((field), sizeof(field), false)

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...)
{
        va_list ap;

        fputs("vmsigctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return code;
}

/* The core answers -EPERM (capability, lease) and -EBUSY (lease held) for
 * authorization; anything else is the command itself failing. */
static int exit_for(int32_t result)
{
        return result == -EPERM || result == -EBUSY ? EXIT_DENIED : EXIT_FAILED;
}

/* ---- connection ---- */

static int connect_daemon(struct vmsig_client **ret)
{
        struct vmsig_client *c;
        int r = vmsig_client_new(&c);

        if (r < 0)
                return fail(EXIT_CONNECT, "out of memory");
        r = vmsig_client_connect(c, socket_path, "vmsigctl", timeout_ms);
        if (r < 0) {
                const struct vmsig_client_error *e = vmsig_client_last_error(c);
                if (e->from_daemon)
                        fail(EXIT_CONNECT, "vmsigd refused the connection: %s", ESC(e->msg));
                else if (r == -ENOENT || r == -ECONNREFUSED)
                        fail(EXIT_CONNECT, "cannot connect to %s: %s (is vmsigd running? --socket or VMSIG_SOCKET)",
                             socket_path, strerror(-r));
                else
                        fail(EXIT_CONNECT, "cannot connect to %s: %s", socket_path,
                             e->msg[0] ? ESC(e->msg) : strerror(-r));
                vmsig_client_free(c);
                return EXIT_CONNECT;
        }
        *ret = c;
        return 0;
}

/* Receive until pred says stop; other events go to each (may be NULL). */
struct waiter {
        uint64_t corr;                 /* ACT_ACK or REPLY to wait for */
        bool want_reply;
        struct vmsig_ack_body ack;     /* filled when found */
        struct vmsig_client_reply reply;
        void (*each)(const struct vmsig_event *ev, int fd, void *ud);
        void *ud;
};

static int wait_for(struct vmsig_client *c, struct waiter *w, int ms)
{
        for (;;) {
                struct vmsig_event ev;
                struct vmsig_client_reply rep;
                int fd = -1;
                int r = vmsig_client_recv_wait(c, &ev, &fd, &rep, ms);

                if (interrupted)
                        return -EINTR;
                if (r == -EAGAIN || r == -ETIMEDOUT)
                        return -ETIMEDOUT;
                if (r < 0)
                        return r;
                if (r == VMSIG_CLIENT_REPLY) {
                        if (w->want_reply && rep.corr == w->corr) {
                                w->reply = rep;
                                return 0;
                        }
                        continue;
                }
                if (!w->want_reply && ev.hdr.kind == VMSIG_EV_ACT_ACK && ev.hdr.corr == w->corr &&
                    ev.hdr.body_len == sizeof(w->ack)) {
                        memcpy(&w->ack, ev.body, sizeof(w->ack));
                        w->ack.msg[sizeof(w->ack.msg) - 1] = '\0';
                        if (fd >= 0)
                                close(fd);
                        return 0;
                }
                if (w->each)
                        w->each(&ev, fd, w->ud);
                else if (fd >= 0)
                        close(fd);
        }
}

static int connection_lost(struct vmsig_client *c, int r)
{
        const struct vmsig_client_error *e = vmsig_client_last_error(c);

        if (r == -ETIMEDOUT)
                return fail(EXIT_FAILED, "no answer from vmsigd within %d ms", timeout_ms);
        if (e->from_daemon)
                return fail(EXIT_CONNECT, "vmsigd closed the connection: %s", ESC(e->msg));
        return fail(EXIT_CONNECT, "connection to vmsigd lost: %s", e->msg[0] ? ESC(e->msg) : strerror(-r));
}

static int subscribe_sync(struct vmsig_client *c, uint32_t ep, uint64_t kinds, struct waiter *w)
{
        int r = vmsig_client_subscribe(c, ep, kinds, &w->corr);

        if (r < 0)
                return r;
        w->want_reply = true;
        r = wait_for(c, w, timeout_ms);
        w->want_reply = false;
        if (r < 0)
                return r;
        return w->reply.result;
}

/* ---- roster ---- */

struct vm {
        uint32_t id;
        char name[VMSIG_NAME_MAX];
        uint8_t seams;
        uint8_t run_state;
        bool has_status;
};

struct roster {
        struct vm vms[1024];
        unsigned n;
};

static struct vm *roster_get(struct roster *ro, uint32_t id)
{
        for (unsigned i = 0; i < ro->n; i++)
                if (ro->vms[i].id == id)
                        return &ro->vms[i];
        if (ro->n == sizeof(ro->vms) / sizeof(ro->vms[0]))
                return NULL;
        memset(&ro->vms[ro->n], 0, sizeof(ro->vms[0]));
        ro->vms[ro->n].id = id;
        return &ro->vms[ro->n++];
}

static void roster_collect(const struct vmsig_event *ev, int fd, void *ud)
{
        struct roster *ro = ud;
        struct vm *vm;

        if (fd >= 0)
                close(fd);
        if (!(vm = roster_get(ro, ev->hdr.endpoint)))
                return;
        if (ev->hdr.kind == VMSIG_EV_ROSTER && ev->hdr.body_len == sizeof(struct vmsig_roster_body)) {
                struct vmsig_roster_body b;
                memcpy(&b, ev->body, sizeof(b));
                b.name[sizeof(b.name) - 1] = '\0';
                if (b.change == VMSIG_ROSTER_LEFT) {
                        *vm = ro->vms[--ro->n];
                        return;
                }
                memcpy(vm->name, b.name, sizeof(vm->name));
                vm->seams = b.seams;
                if (!vm->has_status)
                        vm->run_state = b.run_state;
        } else if (ev->hdr.kind == VMSIG_EV_STATUS && ev->hdr.body_len == sizeof(struct vmsig_status_body)) {
                vm->run_state = ev->body[0];
                vm->has_status = true;
        }
}

static int load_roster(struct vmsig_client *c, struct roster *ro)
{
        const struct vmsig_client_info *info = vmsig_client_get_info(c);
        uint64_t kinds = VMSIG_KIND_BIT(VMSIG_EV_ROSTER);
        struct waiter w = {.each = roster_collect, .ud = ro};
        int r;

        if (!(info->caps & VMSIG_CAP_ROSTER))
                return fail(EXIT_DENIED, "your uid lacks the roster capability (ask for it in vmsigd.conf)");
        if (info->caps & VMSIG_CAP_STATUS)
                kinds |= VMSIG_KIND_BIT(VMSIG_EV_STATUS);
        r = subscribe_sync(c, 0, kinds, &w);
        if (r < 0)
                return r == -EPERM ? fail(EXIT_DENIED, "subscribe refused: %s", ESC(w.reply.msg))
                                   : connection_lost(c, r);
        return 0;
}

/* "name" or "id" -> endpoint id. */
static int resolve_vm(struct vmsig_client *c, const char *arg, uint32_t *ret)
{
        struct roster *ro;
        char *end;
        int r;

        unsigned long id = strtoul(arg, &end, 10);
        if (*arg && !*end && id > 0 && id < UINT32_MAX) {
                *ret = (uint32_t)id;
                return 0;
        }
        ro = calloc(1, sizeof(*ro));
        if (!ro)
                return fail(EXIT_FAILED, "out of memory");
        r = load_roster(c, ro);
        if (r) {
                free(ro);
                return r;
        }
        for (unsigned i = 0; i < ro->n; i++)
                if (strcmp(ro->vms[i].name, arg) == 0) {
                        *ret = ro->vms[i].id;
                        free(ro);
                        return 0;
                }
        free(ro);
        return fail(EXIT_NOVM, "no VM named '%s' (vmsigctl list shows them)", arg);
}

static const char *seams_str(uint8_t s, char *buf, size_t len)
{
        return vmsig_seams_format(s, ",", "-", buf, len);
}

static int cmd_list(struct vmsig_client *c, int argc, char **argv)
{
        struct roster *ro = calloc(1, sizeof(*ro));
        char seams[40];
        int r;

        if (!ro)
                return fail(EXIT_FAILED, "out of memory");
        r = load_roster(c, ro);
        if (r) {
                free(ro);
                return r;
        }
        if (!json)
                printf("%-4s %-24s %-20s %s\n", "ID", "NAME", "ADAPTERS", "STATE");
        for (unsigned i = 0; i < ro->n; i++) {
                const struct vm *vm = &ro->vms[i];
                if (json)
                        printf("{\"id\": %u, \"name\": \"%s\", \"adapters\": \"%s\", \"state\": \"%s\"}\n",
                               vm->id, esc_as(vm->name, sizeof(vm->name), true),
                               seams_str(vm->seams, seams, sizeof(seams)),
                               vmsig_run_state_name(vm->run_state));
                else
                        printf("%-4u %-24s %-20s %s\n", vm->id, ESC(vm->name),
                               seams_str(vm->seams, seams, sizeof(seams)),
                               vmsig_run_state_name(vm->run_state));
        }
        free(ro);
        return 0;
}

/* ---- watch ---- */

static void print_event(const struct vmsig_event *ev, int fd, void *ud)
{
        char line[1024];

        if (fd >= 0)
                close(fd);
        if (json)
                puts(vmsig_event_format_json(ev, line, sizeof(line)));
        else
                puts(vmsig_event_format(ev, line, sizeof(line)));
        fflush(stdout);
}

static int cmd_watch(struct vmsig_client *c, int argc, char **argv)
{
        const struct vmsig_client_info *info = vmsig_client_get_info(c);
        uint64_t kinds = 0;
        uint32_t ep = 0;
        struct waiter w = {.each = print_event};
        int r;

        if (argc > 1)
                return fail(EXIT_USAGE, "watch takes at most one VM");
        if (argc == 1 && (r = resolve_vm(c, argv[0], &ep)))
                return r;
        if (info->caps & VMSIG_CAP_ROSTER)
                kinds |= VMSIG_KIND_BIT(VMSIG_EV_ROSTER);
        if (info->caps & VMSIG_CAP_MEMCTX)
                kinds |= VMSIG_KIND_BIT(VMSIG_EV_MEMCTX);
        if (info->caps & VMSIG_CAP_STATUS)
                kinds |= VMSIG_KIND_BIT(VMSIG_EV_STATUS) | VMSIG_KIND_BIT(VMSIG_EV_DIAG);
        if (info->caps & (VMSIG_CAP_ROSTER | VMSIG_CAP_INPUT | VMSIG_CAP_POWER | VMSIG_CAP_MEMWRITE))
                kinds |= VMSIG_KIND_BIT(VMSIG_EV_LEASE_GRANT) | VMSIG_KIND_BIT(VMSIG_EV_LEASE_REVOKE);
        if (!kinds)
                return fail(EXIT_DENIED, "your uid has no capability that shows events");
        r = subscribe_sync(c, ep, kinds, &w);
        if (r < 0)
                return r == -ENOENT ? fail(EXIT_NOVM, "no endpoint %u", ep) : connection_lost(c, r);
        w.corr = UINT64_MAX; /* nothing to wait for: print until interrupted */
        r = wait_for(c, &w, -1);
        if (r == -EINTR)
                return 0;
        return connection_lost(c, r);
}

/* ---- commands that act ---- */

static int acquire(struct vmsig_client *c, uint32_t ep, uint8_t cls, const char *vmname)
{
        struct waiter w = {0};
        int r = vmsig_client_lease_acquire(c, ep, cls, &w.corr);

        if (r >= 0)
                r = wait_for(c, &w, timeout_ms);
        if (r < 0)
                return connection_lost(c, r);
        if (w.ack.result < 0)
                return fail(exit_for(w.ack.result), "%s", ESC(w.ack.msg)); /* names class, VM and holder */
        return 0;
}

static int send_and_wait(struct vmsig_client *c, struct vmsig_event *ev, const void *payload, size_t len,
                         struct vmsig_ack_body *ret)
{
        struct waiter w = {0};
        int r = payload ? vmsig_client_send_payload(c, ev, payload, len, &w.corr)
                        : vmsig_client_send(c, ev, &w.corr);

        if (r < 0)
                return fail(EXIT_FAILED, "cannot send %s: %s", vmsig_kind_name(ev->hdr.kind), strerror(-r));
        if (ev->hdr.flags & VMSIG_F_FF)
                return vmsig_client_flush(c, timeout_ms) < 0 ? connection_lost(c, -EPIPE) : 0;
        r = wait_for(c, &w, timeout_ms);
        if (r < 0)
                return connection_lost(c, r);
        *ret = w.ack;
        return 0;
}

static int cmd_status(struct vmsig_client *c, int argc, char **argv)
{
        struct vmsig_event ev;
        struct vmsig_ack_body ack;
        uint32_t ep;
        int r;

        if (argc != 1)
                return fail(EXIT_USAGE, "usage: vmsigctl status VM");
        if ((r = resolve_vm(c, argv[0], &ep)))
                return r;
        vmsig_event_init(&ev, VMSIG_EV_CMD_STATUS_QUERY, ep, VMSIG_SRC_VMHOST);
        struct waiter w = {.each = print_event};
        r = vmsig_client_send(c, &ev, &w.corr);
        if (r >= 0)
                r = wait_for(c, &w, timeout_ms); /* the STATUS prints, then the ACK ends it */
        if (r < 0)
                return connection_lost(c, r);
        ack = w.ack;
        if (ack.result < 0)
                return fail(exit_for(ack.result), "status of '%s': %s", argv[0], ESC(ack.msg));
        printf("%s: %s\n", argv[0], vmsig_run_state_name((uint8_t)ack.value));
        return 0;
}

static int cmd_power(struct vmsig_client *c, int argc, char **argv)
{
        static const char *const ops[] = {NULL, "on", "off", "reset", "pause", "resume", "powerdown"};
        struct vmsig_power_body b = {0};
        struct vmsig_event ev;
        struct vmsig_ack_body ack;
        uint32_t ep;
        int r;

        if (argc != 2)
                return fail(EXIT_USAGE, "usage: vmsigctl power VM on|off|reset|pause|resume|powerdown");
        for (uint32_t i = 1; i < 7; i++)
                if (strcmp(argv[1], ops[i]) == 0)
                        b.op = i;
        if (!b.op)
                return fail(EXIT_USAGE, "unknown power operation '%s' (on, off, reset, pause, resume, powerdown)",
                            argv[1]);
        if ((r = resolve_vm(c, argv[0], &ep)) || (r = acquire(c, ep, VMSIG_LEASE_POWER, argv[0])))
                return r;
        vmsig_event_init(&ev, VMSIG_EV_CMD_POWER, ep, VMSIG_SRC_VMHOST);
        vmsig_event_set_body(&ev, &b, sizeof(b));
        if ((r = send_and_wait(c, &ev, NULL, 0, &ack)))
                return r;
        if (ack.result < 0)
                return fail(exit_for(ack.result), "power %s on '%s': %s", argv[1], argv[0], ESC(ack.msg));
        printf("%s: %s\n", argv[0], ESC(ack.msg));
        return 0;
}

static int cmd_lease(struct vmsig_client *c, int argc, char **argv)
{
        uint32_t ep;
        int cls, r;

        if (argc != 2)
                return fail(EXIT_USAGE, "usage: vmsigctl lease VM input|power|memwrite");
        cls = vmsig_lease_class_from_name(argv[1]);
        if (cls < 0)
                return fail(EXIT_USAGE, "unknown lease class '%s' (input, power, memwrite)", argv[1]);
        if ((r = resolve_vm(c, argv[0], &ep)) || (r = acquire(c, ep, (uint8_t)cls, argv[0])))
                return r;
        printf("holding the %s lease on '%s' (control %u); Ctrl-C or SIGTERM releases it\n", argv[1], argv[0],
               vmsig_client_get_info(c)->control_id);
        fflush(stdout);
        struct waiter w = {.corr = UINT64_MAX};
        r = wait_for(c, &w, -1);
        if (r == -EINTR)
                return 0; /* closing the connection releases the lease */
        return connection_lost(c, r);
}

/* ---- guest memory ---- */

struct memctx_catch {
        struct vmsig_memctx ctx;
        bool got;
};

static void catch_memctx(const struct vmsig_event *ev, int fd, void *ud)
{
        struct memctx_catch *m = ud;

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

static int cmd_read(struct vmsig_client *c, int argc, char **argv, bool phys, const char *cr3_arg)
{
        struct memctx_catch m = {0};
        struct waiter w = {.each = catch_memctx, .ud = &m};
        struct vmie_range ranges[VMSIG_MEMCTX_MAX_RANGES];
        struct vmie_ram *ram = NULL;
        uint64_t addr, len, cr3 = 0;
        uint32_t ep;
        uint8_t *buf;
        int r;

        if (argc != 3)
                return fail(EXIT_USAGE, "usage: vmsigctl read [--phys] [--cr3 ROOT] VM ADDR LEN");
        if (parse_u64(argv[1], &addr) < 0 || parse_u64(argv[2], &len) < 0 || len == 0 || len > (16u << 20))
                return fail(EXIT_USAGE, "ADDR and LEN must be numbers (LEN 1..16 MiB), got '%s' '%s'", argv[1],
                            argv[2]);
        if (cr3_arg && parse_u64(cr3_arg, &cr3) < 0)
                return fail(EXIT_USAGE, "--cr3 must be a number, got '%s'", cr3_arg);
        if (!(vmsig_client_get_info(c)->caps & VMSIG_CAP_MEMCTX))
                return fail(EXIT_DENIED, "your uid lacks the memctx capability");
        if ((r = resolve_vm(c, argv[0], &ep)))
                return r;
        r = subscribe_sync(c, ep, VMSIG_KIND_BIT(VMSIG_EV_MEMCTX), &w);
        if (r < 0)
                return r == -ENOENT ? fail(EXIT_NOVM, "no endpoint %u", ep) : connection_lost(c, r);
        if (!m.got)
                return fail(EXIT_FAILED, "'%s' has no valid address-space context yet (guest still booting?)",
                            argv[0]);
        for (uint32_t i = 0; i < m.ctx.nranges; i++) {
                ranges[i].gpa = m.ctx.ranges[i].gpa;
                ranges[i].len = m.ctx.ranges[i].len;
                ranges[i].file_offset = m.ctx.ranges[i].file_offset;
        }
        r = vmie_ram_open_fd(m.ctx.fd, ranges, m.ctx.nranges, 0, &ram);
        close(m.ctx.fd);
        if (r < 0)
                return fail(EXIT_FAILED, "cannot map guest RAM of '%s': %s", argv[0], strerror(-r));
        buf = malloc(len);
        if (!buf) {
                vmie_ram_free(ram);
                return fail(EXIT_FAILED, "out of memory");
        }
        if (phys) {
                r = vmie_ram_read(ram, addr, buf, len);
                if (r < 0)
                        fail(EXIT_FAILED, "guest-physical 0x%" PRIx64 "+%" PRIu64 " of '%s': %s", addr, len, argv[0],
                             r == -EFAULT ? "not RAM (a hole)" : strerror(-r));
        } else {
                struct vmie_as as = {.ram = ram, .root = cr3 ? cr3 : m.ctx.kernel_root,
                                     .levels = (uint8_t)(m.ctx.paging == VMSIG_PAGING_5LEVEL ? 5 : 4)};
                size_t done = 0;
                r = vmie_read_virt(&as, addr, buf, len, &done);
                if (r < 0)
                        fail(EXIT_FAILED, "virtual 0x%" PRIx64 " under root 0x%" PRIx64 " of '%s': %s at 0x%" PRIx64,
                             addr, as.root, argv[0], r == -EFAULT ? "not mapped" : strerror(-r), addr + done);
        }
        if (r == 0)
                hexdump(addr, buf, len);
        free(buf);
        vmie_ram_free(ram);
        return r < 0 ? EXIT_FAILED : 0;
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

static int cmd_write(struct vmsig_client *c, int argc, char **argv, bool phys, const char *cr3_arg,
                     const char *file)
{
        struct vmsig_memwrite_body b = {0};
        struct vmsig_event ev;
        struct vmsig_ack_body ack;
        uint64_t addr, cr3 = 0;
        uint8_t *data = NULL;
        size_t len = 0;
        uint32_t ep;
        int r;

        if (argc != (file ? 2 : 3))
                return fail(EXIT_USAGE, "usage: vmsigctl write [--phys] [--cr3 ROOT] VM ADDR HEXBYTES | --file F VM ADDR");
        if (parse_u64(argv[1], &addr) < 0)
                return fail(EXIT_USAGE, "ADDR must be a number, got '%s'", argv[1]);
        if (cr3_arg && parse_u64(cr3_arg, &cr3) < 0)
                return fail(EXIT_USAGE, "--cr3 must be a number, got '%s'", cr3_arg);
        r = file ? read_file(file, &data, &len) : parse_hex(argv[2], &data, &len);
        if (r < 0)
                return file ? fail(EXIT_USAGE, "cannot read %s: %s", file, strerror(-r))
                            : fail(EXIT_USAGE, "'%s' is not an even number of hex digits", argv[2]);
        if (len == 0 || len > vmsig_client_get_info(c)->tail_max) {
                free(data);
                return fail(EXIT_USAGE, "%zu bytes: must be 1..%u", len, vmsig_client_get_info(c)->tail_max);
        }
        if ((r = resolve_vm(c, argv[0], &ep)) || (r = acquire(c, ep, VMSIG_LEASE_MEMWRITE, argv[0]))) {
                free(data);
                return r;
        }
        b.addr = addr;
        b.len = (uint32_t)len;
        b.flags = phys ? VMSIG_MEMWRITE_PHYS : 0;
        vmsig_event_init(&ev, VMSIG_EV_CMD_MEMWRITE, ep, VMSIG_SRC_MEMCTX);
        ev.hdr.cr3 = cr3;
        const size_t head = offsetof(struct vmsig_memwrite_body, data);
        if (len <= VMSIG_MEMWRITE_INLINE_MAX) {
                memcpy(b.data, data, len);
                vmsig_event_set_body(&ev, &b, head + len);
                r = send_and_wait(c, &ev, NULL, 0, &ack);
        } else {
                vmsig_event_set_body(&ev, &b, head);
                r = send_and_wait(c, &ev, data, len, &ack);
        }
        free(data);
        if (r)
                return r;
        if (ack.result < 0) /* -EINPROGRESS / -ECONNABORTED: the outcome is unknown */
                return fail(exit_for(ack.result), "write to '%s' at 0x%" PRIx64 ": %s (%s)", argv[0], addr,
                            ESC(ack.msg),
                            ack.result == -EINPROGRESS || ack.result == -ECONNABORTED ? "it may have been written"
                                                                                      : "nothing was written");
        printf("%s: %s\n", argv[0], ESC(ack.msg));
        return 0;
}

/* ---- input ---- */

static int input_send(struct vmsig_client *c, uint32_t ep, uint16_t kind, int32_t x, int32_t y, uint32_t code,
                      int32_t value, bool ff, const char *vmname)
{
        struct vmsig_input_body b = {.x = x, .y = y, .code = code, .value = value};
        struct vmsig_event ev;
        struct vmsig_ack_body ack;
        int r;

        vmsig_event_init(&ev, kind, ep, VMSIG_SRC_INPUT);
        vmsig_event_set_body(&ev, &b, sizeof(b));
        if (ff)
                ev.hdr.flags |= VMSIG_F_FF;
        if ((r = send_and_wait(c, &ev, NULL, 0, &ack)))
                return r;
        if (!ff && ack.result < 0)
                return fail(exit_for(ack.result), "%s on '%s': %s", vmsig_kind_name(kind), vmname,
                            ESC(ack.msg));
        return 0;
}

static int parse_i32(const char *s, int32_t *ret)
{
        char *end;
        errno = 0;
        long v = strtol(s, &end, 0);
        if (errno || !*s || *end || v < INT32_MIN || v > INT32_MAX)
                return -EINVAL;
        *ret = (int32_t)v;
        return 0;
}

static int cmd_input(struct vmsig_client *c, int argc, char **argv, bool ff)
{
        const char *usage = "usage: vmsigctl input [--ff] VM move X Y | rel DX DY | click [left|right|middle] | "
                            "key KEY... | type TEXT | wheel N";
        uint32_t ep;
        int32_t x, y;
        int r;

        if (argc < 2)
                return fail(EXIT_USAGE, "%s", usage);
        const char *vm = argv[0], *what = argv[1];
        if ((r = resolve_vm(c, vm, &ep)) || (r = acquire(c, ep, VMSIG_LEASE_INPUT, vm)))
                return r;
        if (!strcmp(what, "move") || !strcmp(what, "rel")) {
                if (argc != 4 || parse_i32(argv[2], &x) < 0 || parse_i32(argv[3], &y) < 0)
                        return fail(EXIT_USAGE, "%s", usage);
                return input_send(c, ep, what[0] == 'm' ? VMSIG_EV_MOVE_ABS : VMSIG_EV_MOVE_REL, x, y, 0, 0, ff, vm);
        }
        if (!strcmp(what, "click")) {
                uint32_t btn = VMSIG_BTN_LEFT;
                if (argc == 3)
                        btn = !strcmp(argv[2], "right") ? VMSIG_BTN_RIGHT
                              : !strcmp(argv[2], "middle") ? VMSIG_BTN_MIDDLE
                              : !strcmp(argv[2], "left")   ? VMSIG_BTN_LEFT
                                                           : 0;
                if (!btn || argc > 3)
                        return fail(EXIT_USAGE, "click takes left, right or middle");
                if ((r = input_send(c, ep, VMSIG_EV_BUTTON, 0, 0, btn, 1, ff, vm)))
                        return r;
                return input_send(c, ep, VMSIG_EV_BUTTON, 0, 0, btn, 0, ff, vm);
        }
        if (!strcmp(what, "wheel")) {
                if (argc != 3 || parse_i32(argv[2], &y) < 0)
                        return fail(EXIT_USAGE, "%s", usage);
                return input_send(c, ep, VMSIG_EV_WHEEL, 0, y, 0, 0, ff, vm);
        }
        if (!strcmp(what, "key")) {
                /* key ctrl alt delete: press all in order, release in reverse */
                uint32_t codes[16];
                int n = argc - 2;
                if (n < 1 || n > 16)
                        return fail(EXIT_USAGE, "key takes 1..16 key names");
                for (int i = 0; i < n; i++)
                        if (!(codes[i] = keymap_by_name(argv[2 + i])))
                                return fail(EXIT_USAGE, "unknown key '%s' (e.g. a, enter, f5, leftctrl, KEY_A, 30)",
                                            argv[2 + i]);
                for (int i = 0; i < n; i++)
                        if ((r = input_send(c, ep, VMSIG_EV_KEY, 0, 0, codes[i], 1, ff, vm)))
                                return r;
                for (int i = n - 1; i >= 0; i--)
                        if ((r = input_send(c, ep, VMSIG_EV_KEY, 0, 0, codes[i], 0, ff, vm)))
                                return r;
                return 0;
        }
        if (!strcmp(what, "type")) {
                if (argc != 3)
                        return fail(EXIT_USAGE, "type takes one TEXT argument");
                for (const char *p = argv[2]; *p; p++) {
                        uint32_t code;
                        bool shift;
                        if (!keymap_by_char(*p, &code, &shift))
                                return fail(EXIT_USAGE, "cannot type character 0x%02x on a US layout",
                                            (unsigned char)*p);
                        if ((shift && (r = input_send(c, ep, VMSIG_EV_KEY, 0, 0, KEYMAP_LEFTSHIFT, 1, ff, vm))) ||
                            (r = input_send(c, ep, VMSIG_EV_KEY, 0, 0, code, 1, ff, vm)) ||
                            (r = input_send(c, ep, VMSIG_EV_KEY, 0, 0, code, 0, ff, vm)) ||
                            (shift && (r = input_send(c, ep, VMSIG_EV_KEY, 0, 0, KEYMAP_LEFTSHIFT, 0, ff, vm))))
                                return r;
                }
                return 0;
        }
        return fail(EXIT_USAGE, "unknown input action '%s'\n%s", what, usage);
}

/* ---- main ---- */

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: vmsigctl [OPTIONS] COMMAND [ARGS]\n"
                "\n"
                "Commands (VM = name or endpoint id):\n"
                "  list                         the VMs vmsigd knows, their adapters and run state\n"
                "  watch [VM]                   print events as they happen (Ctrl-C to stop)\n"
                "  status VM                    ask the VM's run state\n"
                "  power VM OP                  on | off | reset | pause | resume | powerdown\n"
                "  lease VM CLASS               hold the input, power or memwrite lease until interrupted\n"
                "  read VM ADDR LEN             hexdump guest memory (kernel virtual address by default)\n"
                "  write VM ADDR HEXBYTES       write guest memory under the memwrite lease (--file F instead)\n"
                "  input VM ACTION ...          move X Y | rel DX DY | click [BTN] | key KEY... | type TEXT | wheel N\n"
                "\n"
                "Options:\n"
                "  -s, --socket PATH   vmsigd socket (default $VMSIG_SOCKET or %s)\n"
                "  -t, --timeout MS    how long to wait for answers (default 5000)\n"
                "  -j, --json          JSON lines for list and watch\n"
                "      --phys          read/write: ADDR is guest-physical\n"
                "      --cr3 ROOT      read/write: translate under this page-table root, not the kernel's\n"
                "      --file F        write: the bytes come from file F\n"
                "      --ff            input: fire-and-forget (no acknowledgement)\n"
                "  -h, --help          this help\n"
                "\n"
                "Exit codes: 0 ok, 1 command failed, 2 usage, 3 vmsigd unreachable or refused,\n"
                "4 denied (capability or lease), 5 no such VM. See vmsigctl(1).\n",
                DEFAULT_SOCKET);
}

struct cli {
        bool phys, ff;
        const char *cr3, *file;
};

enum { OPT_PHYS = 0x100, OPT_CR3, OPT_FILE, OPT_FF };
static const struct option cli_opts[] = {
        {"socket", required_argument, NULL, 's'}, {"timeout", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},         {"phys", no_argument, NULL, OPT_PHYS},
        {"cr3", required_argument, NULL, OPT_CR3}, {"file", required_argument, NULL, OPT_FILE},
        {"ff", no_argument, NULL, OPT_FF},        {"help", no_argument, NULL, 'h'},
        {0}};

/* Options before and after the command, parsed the same way: '+' stops at
 * the first operand so "input VM rel -5 3" keeps its -5. Returns -1 when
 * done, else an exit code (help printed, or a usage error). */
static int parse_options(int argc, char **argv, struct cli *cli)
{
        int opt;

        while ((opt = getopt_long(argc, argv, "+s:t:jh", cli_opts, NULL)) != -1) {
                switch (opt) {
                case 's':
                        socket_path = optarg;
                        break;
                case 't':
                        timeout_ms = atoi(optarg);
                        if (timeout_ms <= 0)
                                return fail(EXIT_USAGE, "--timeout must be a positive number of milliseconds");
                        break;
                case 'j':
                        json = true;
                        break;
                case OPT_PHYS:
                        cli->phys = true;
                        break;
                case OPT_CR3:
                        cli->cr3 = optarg;
                        break;
                case OPT_FILE:
                        cli->file = optarg;
                        break;
                case OPT_FF:
                        cli->ff = true;
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
        struct cli cli = {0};
        struct vmsig_client *c = NULL;
        int r;

        socket_path = getenv("VMSIG_SOCKET") ? getenv("VMSIG_SOCKET") : DEFAULT_SOCKET;
        if ((r = parse_options(argc, argv, &cli)) >= 0)
                return r;
        if (optind >= argc) {
                usage(stderr);
                return EXIT_USAGE;
        }
        const char *cmd = argv[optind];
        int sub_argc = argc - optind;
        char **sub_argv = argv + optind;
        optind = 1;
        if ((r = parse_options(sub_argc, sub_argv, &cli)) >= 0)
                return r;
        int cargc = sub_argc - optind;
        char **cargv = sub_argv + optind;
        static const char *const known[] = {"list", "watch", "status", "power", "lease",
                                            "read", "write", "input", "help"};
        bool ok = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
                ok |= strcmp(cmd, known[i]) == 0;
        if (!ok) {
                fail(EXIT_USAGE, "unknown command '%s'", cmd);
                usage(stderr);
                return EXIT_USAGE;
        }
        if (!strcmp(cmd, "help")) {
                usage(stdout);
                return 0;
        }
        struct sigaction sa = {.sa_handler = on_sigint};
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        if ((r = connect_daemon(&c)))
                return r;
        if (!strcmp(cmd, "list"))
                r = cmd_list(c, cargc, cargv);
        else if (!strcmp(cmd, "watch"))
                r = cmd_watch(c, cargc, cargv);
        else if (!strcmp(cmd, "status"))
                r = cmd_status(c, cargc, cargv);
        else if (!strcmp(cmd, "power"))
                r = cmd_power(c, cargc, cargv);
        else if (!strcmp(cmd, "lease"))
                r = cmd_lease(c, cargc, cargv);
        else if (!strcmp(cmd, "read"))
                r = cmd_read(c, cargc, cargv, cli.phys, cli.cr3);
        else if (!strcmp(cmd, "write"))
                r = cmd_write(c, cargc, cargv, cli.phys, cli.cr3, cli.file);
        else
                r = cmd_input(c, cargc, cargv, cli.ff);
        vmsig_client_free(c);
        return r;
}

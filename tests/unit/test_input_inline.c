/* SPDX-License-Identifier: MIT */
/* The input stub on a real bus, recording into a FIFO this test reads: a
 * command runs inline on the loop thread while the stub's worker is idle
 * and the write cannot block; once the FIFO is full the commands queue for
 * the worker, and when the reader catches up they run inline again. Whatever
 * the mix, ACKs and recorded lines keep the order of submission, each ACK's
 * value counts the commands recorded so far, and the loop keeps answering
 * while the worker waits for the reader. Detaching the adapter while its
 * worker waits for a reader that never comes returns at once: what was not
 * recorded is ACKed -ECANCELED, in order. */
/* cmocka needs these first, in this order */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vmsig/adapter.h>
#include <vmsig/bus.h>
#include <vmsig/event.h>

#define N_CMDS    1000
#define CORR0     1000u
#define CORR_STAT 9000u
#define CORR_RACE 9001u
#define WAIT_NS   10000000000ull

struct seen {
        unsigned nacks; /* input seam ACKs, in delivery order */
        uint64_t corr[N_CMDS + 16];
        int32_t result[N_CMDS + 16];
        uint64_t value[N_CMDS + 16];
        bool lease_acked, status_acked;
        int32_t status_result;
        /* part 3: on the ACK of CORR_RACE, let the worker finish */
        int rfd, bus_fd;
        size_t junk; /* bytes we put into the FIFO ourselves */
        bool race_done;
};

/* Loop thread, in the middle of a batch: free the FIFO so the blocked worker
 * records its command and emits the ACK, wait until that ACK is in the
 * core's hand-off (the bus fd turns readable), then give the worker a
 * moment to call itself idle. The command dispatched next then runs inline
 * while the worker's ACK has not been queued yet: the core must order it
 * first. (The moment only makes that case likely; the checks hold anyway.) */
static void let_worker_finish(struct seen *s)
{
        char junk[8192];
        struct pollfd p = {.fd = s->bus_fd, .events = POLLIN};

        /* exactly our bytes: the worker's line may follow at once */
        while (s->junk) {
                ssize_t n = read(s->rfd, junk, s->junk < sizeof(junk) ? s->junk : sizeof(junk));
                assert_true(n > 0 || (n < 0 && errno == EAGAIN));
                if (n > 0)
                        s->junk -= (size_t)n;
        }
        assert_int_equal(poll(&p, 1, 10000), 1);
        struct timespec moment = {.tv_nsec = 2000000};
        nanosleep(&moment, NULL);
        s->race_done = true;
}

static int deliver(struct vmsig_control *ctl, const struct vmsig_event *ev, int *fd, void *ud)
{
        struct seen *s = ud;
        struct vmsig_ack_body a;

        if (ev->hdr.kind != VMSIG_EV_ACT_ACK)
                return 0;
        memcpy(&a, ev->body, sizeof(a));
        if (a.cmd_kind == VMSIG_EV_LEASE_ACQUIRE) {
                s->lease_acked = a.result == 0;
        } else if (ev->hdr.corr == CORR_STAT) {
                s->status_acked = true;
                s->status_result = a.result;
        } else if (ev->hdr.corr == CORR_RACE) {
                let_worker_finish(s);
        } else if (ev->hdr.source == VMSIG_SRC_INPUT && s->nacks < N_CMDS + 16) {
                s->corr[s->nacks] = ev->hdr.corr;
                s->result[s->nacks] = a.result;
                s->value[s->nacks] = a.value;
                s->nacks++;
        }
        return 0;
}

static void closed(struct vmsig_control *ctl, int reason, const char *msg, void *ud)
{
}

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void send_move(struct vmsig_control *c, uint32_t ep, unsigned i)
{
        struct vmsig_event ev;
        struct vmsig_input_body in = {.x = (int32_t)i, .y = 7};

        vmsig_event_init(&ev, VMSIG_EV_MOVE_ABS, ep, VMSIG_SRC_INPUT);
        ev.hdr.corr = CORR0 + i;
        vmsig_event_set_body(&ev, &in, sizeof(in));
        assert_int_equal(vmsig_control_send(c, &ev), 0);
}

/* Reads what the FIFO holds; checks each whole line is the next command. */
struct lines {
        char buf[256];
        size_t len;
        unsigned n;
};

static void read_lines(int fd, struct lines *l)
{
        ssize_t got = read(fd, l->buf + l->len, sizeof(l->buf) - 1 - l->len);

        if (got <= 0) {
                assert_true(got < 0 && errno == EAGAIN);
                return;
        }
        l->len += (size_t)got;
        char *nl;
        while ((nl = memchr(l->buf, '\n', l->len))) {
                char want[64];
                size_t n = (size_t)(nl - l->buf) + 1;
                snprintf(want, sizeof(want), "MOVE_ABS x=%u y=7 ff=0\n", l->n);
                assert_int_equal(n, strlen(want));
                assert_memory_equal(l->buf, want, n);
                l->n++;
                memmove(l->buf, nl + 1, l->len - n);
                l->len -= n;
        }
}

static void check_acks(const struct seen *s)
{
        for (unsigned i = 0; i < s->nacks; i++) {
                assert_int_equal(s->corr[i], CORR0 + i);
                assert_int_equal(s->result[i], 0);
                assert_int_equal(s->value[i], i + 1); /* recorded in order, this one included */
        }
}

/* A bus with the input stub (and a vmhost stub) recording into a FIFO of
 * one page, our end open but not read, and a control holding the input
 * lease. */
struct fixture {
        char dir[32], fifo[64];
        int rfd;
        struct vmsig_bus *bus;
        struct vmsig_control *c;
        struct seen *s;
        uint32_t ep;
};

static void fixture_up(struct fixture *f)
{
        char opts[96];

        snprintf(f->dir, sizeof(f->dir), "/tmp/vmsig-inline-XXXXXX");
        f->s = calloc(1, sizeof(*f->s));
        assert_non_null(f->s);
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->fifo, sizeof(f->fifo), "%s/rec", f->dir);
        assert_int_equal(mkfifo(f->fifo, 0600), 0);
        /* Our end first, so the stub's open does not wait; one page of pipe,
         * so it fills after about 150 lines. */
        f->rfd = open(f->fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        assert_true(f->rfd >= 0);
        assert_true(fcntl(f->rfd, F_SETPIPE_SZ, 4096) >= 4096);
        snprintf(opts, sizeof(opts), "record=%s", f->fifo);

        assert_int_equal(vmsig_bus_new(NULL, &f->bus), 0);
        assert_int_equal(vmsig_bus_endpoint_add(f->bus, "vm", &f->ep), 0);
        struct vmsig_adapter_cfg cfg = {.vm_name = "vm", .options = opts};
        assert_int_equal(vmsig_bus_attach(f->bus, f->ep, vmsig_input_stub_ops(), &cfg), 0);
        assert_int_equal(vmsig_bus_attach(f->bus, f->ep, vmsig_vmhost_stub_ops(), NULL), 0);
        struct vmsig_control_info info = {
            .name = "t", .uid = getuid(), .pid = getpid(), .caps = VMSIG_CAP_ALL};
        assert_int_equal(vmsig_control_new(f->bus, &info, deliver, closed, f->s, &f->c), 0);
        assert_int_equal(vmsig_control_lease_acquire(f->c, f->ep, VMSIG_LEASE_INPUT, 1), 0);
        for (uint64_t t = now_ns(); !f->s->lease_acked && now_ns() - t < WAIT_NS;)
                vmsig_bus_run_once(f->bus, 10);
        assert_true(f->s->lease_acked);
}

static void fixture_down(struct fixture *f)
{
        vmsig_control_close(f->c);
        vmsig_bus_free(f->bus);
        close(f->rfd);
        unlink(f->fifo);
        rmdir(f->dir);
        free(f->s);
}

static void test_inline_and_worker_keep_order(void **state)
{
        struct fixture f;
        struct lines l = {.n = 0};

        (void)state;
        fixture_up(&f);
        struct vmsig_bus *bus = f.bus;
        struct vmsig_control *c = f.c;
        struct seen *s = f.s;
        uint32_t ep = f.ep;
        int rfd = f.rfd;

        /* 1. More than the FIFO holds, nobody reading: the first ones are
         * recorded (and ACKed) inline, the rest wait for the worker. */
        unsigned sent = 300;
        for (unsigned i = 0; i < sent; i++)
                send_move(c, ep, i);
        while (vmsig_bus_run_once(bus, 0) > 0)
                ;
        unsigned inline_acks = s->nacks;
        assert_true(inline_acks > 0);
        assert_true(inline_acks < sent);
        check_acks(s);

        /* The worker now waits for room in the FIFO; the loop must not:
         * a status query is still answered. */
        struct vmsig_event q;
        vmsig_event_init(&q, VMSIG_EV_CMD_STATUS_QUERY, ep, VMSIG_SRC_VMHOST);
        q.hdr.corr = CORR_STAT;
        assert_int_equal(vmsig_control_send(c, &q), 0);
        for (uint64_t t = now_ns(); !s->status_acked && now_ns() - t < WAIT_NS;)
                vmsig_bus_run_once(bus, 10);
        assert_true(s->status_acked);
        assert_int_equal(s->status_result, 0);
        assert_int_equal(s->nacks, inline_acks); /* nothing more got through */

        /* 2. Read, and keep sending one command per round: the worker
         * drains its queue, then commands run inline again, back and forth
         * while the FIFO fills and empties. */
        uint64_t t0 = now_ns();
        while ((s->nacks < N_CMDS || l.n < N_CMDS) && now_ns() - t0 < WAIT_NS) {
                read_lines(rfd, &l);
                if (sent < N_CMDS)
                        send_move(c, ep, sent++);
                vmsig_bus_run_once(bus, 1);
        }
        assert_int_equal(l.n, N_CMDS);
        assert_int_equal(s->nacks, N_CMDS);
        check_acks(s);

        /* 3. A worker ACK still in the hand-off when the next command runs
         * inline. Fill the FIFO ourselves, so command A waits for the
         * worker; a status query's ACK (dispatched before B: ACKs go first)
         * frees the FIFO and lets the worker finish A; then B runs inline. */
        int wfd = open(f.fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        char fill[4096];
        assert_true(wfd >= 0);
        memset(fill, 'j', sizeof(fill));
        for (ssize_t n; (n = write(wfd, fill, sizeof(fill))) > 0;)
                s->junk += (size_t)n;
        assert_int_equal(errno, EAGAIN);
        s->rfd = rfd;
        s->bus_fd = vmsig_bus_get_fd(bus);
        send_move(c, ep, sent++); /* A */
        q.hdr.corr = CORR_RACE;
        assert_int_equal(vmsig_control_send(c, &q), 0);
        send_move(c, ep, sent++); /* B */
        t0 = now_ns();
        while (s->nacks < sent && now_ns() - t0 < WAIT_NS)
                vmsig_bus_run_once(bus, 10);
        assert_true(s->race_done);
        assert_int_equal(s->nacks, sent);
        check_acks(s); /* A's ACK, then B's */
        l.len = 0;
        l.n = sent - 2;
        for (t0 = now_ns(); l.n < sent && now_ns() - t0 < WAIT_NS;)
                read_lines(rfd, &l);
        assert_int_equal(l.n, sent); /* A's line, then B's */
        close(wfd);
        fixture_down(&f);
}

static void test_detach_while_fifo_full(void **state)
{
        struct fixture f;

        (void)state;
        fixture_up(&f); /* the FIFO is never read here */
        struct vmsig_bus *bus = f.bus;
        struct vmsig_control *c = f.c;
        struct seen *s = f.s;
        uint32_t ep = f.ep;

        const unsigned sent = 300;
        for (unsigned i = 0; i < sent; i++)
                send_move(c, ep, i);
        while (vmsig_bus_run_once(bus, 0) > 0)
                ;
        unsigned recorded = s->nacks;
        assert_true(recorded > 0 && recorded < sent);

        /* the worker waits for room; the detach must not wait with it */
        alarm(20);
        uint64_t t0 = now_ns();
        assert_int_equal(vmsig_bus_detach(bus, ep, VMSIG_SRC_INPUT), 0);
        uint64_t took_ms = (now_ns() - t0) / 1000000u;
        alarm(0);
        print_message("detach with a full FIFO took %llu ms\n", (unsigned long long)took_ms);
        assert_true(took_ms < 5000);
        for (uint64_t t = now_ns(); s->nacks < sent && now_ns() - t < WAIT_NS;)
                vmsig_bus_run_once(bus, 10);
        assert_int_equal(s->nacks, sent);
        for (unsigned i = 0; i < sent; i++) {
                assert_int_equal(s->corr[i], CORR0 + i);
                assert_int_equal(s->result[i], i < recorded ? 0 : -ECANCELED);
        }
        fixture_down(&f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_inline_and_worker_keep_order),
            cmocka_unit_test(test_detach_while_fifo_full),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

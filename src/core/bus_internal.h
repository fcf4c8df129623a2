/* SPDX-License-Identifier: MIT */
/* Private structures of the bus. Everything here belongs to the loop thread,
 * except struct handoff (mutex-guarded) and attachment.dead (atomic), the two
 * things worker threads touch. */
#ifndef VMSIG_CORE_BUS_INTERNAL_H
#define VMSIG_CORE_BUS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <vmsig/adapter.h>
#include <vmsig/bus.h>

/* ---- central priority queue: (priority, seq) order, pooled nodes ---- */

struct qnode {
        struct qnode *next;
        int fd;        /* MEMCTX: the bus's own dup, -1 otherwise */
        bool moved;    /* hand-off batch only: copied to the prioq, skip it */
        void *payload; /* CMD_MEMWRITE source tail, malloc'd, or NULL */
        size_t payload_len;
        /* A cache line of its own for the header: a 76-byte event touches
         * two lines, not three. Nodes come from aligned_alloc. */
        _Alignas(64) struct vmsig_event ev;
};

struct prioq {
        uint64_t nonempty[4]; /* bit per priority level */
        struct {
                struct qnode *head, *tail;
        } lvl[256];
        struct qnode *free;
        void **chunks;
        size_t nchunks, chunks_cap;
        size_t count;
};

int prioq_init(struct prioq *pq);
void prioq_done(struct prioq *pq);
struct qnode *prioq_node_new(struct prioq *pq);             /* NULL on OOM */
void prioq_node_release(struct prioq *pq, struct qnode *n); /* closes fd, frees payload */
void prioq_push(struct prioq *pq, struct qnode *n);
struct qnode *prioq_pop(struct prioq *pq);
const struct qnode *prioq_peek(const struct prioq *pq); /* what pop would return */

/* ---- worker -> loop hand-off: two swapped buffers under one mutex ---- */

/* Slots are queue nodes (fd -1, no payload), so the loop dispatches a taken
 * batch in place instead of copying every event into the prioq. */
struct handoff {
        pthread_mutex_t mu;
        pthread_cond_t not_full;
        struct qnode *buf[2];
        unsigned ready[2]; /* slots whose node fields are set */
        unsigned cap;
        unsigned count; /* in buf[cur] */
        int cur;        /* the buffer producers fill */
        bool idle;      /* the loop may block: the next push writes efd */
        int efd;
};

int handoff_init(struct handoff *h, unsigned cap);
void handoff_done(struct handoff *h);
/* Blocks while full; returns -ESHUTDOWN if *cancel becomes true meanwhile. */
int handoff_push(struct handoff *h, const struct vmsig_event *ev, uint32_t endpoint, uint8_t source,
                 const atomic_bool *cancel);
/* Loop thread: take everything produced so far (0: nothing, *ret_batch
 * untouched). The batch stays valid until the next call that returns > 0
 * (which hands its buffer back to the producers). Until handoff_arm(), the
 * loop counts as awake and pushes do not write the eventfd. */
unsigned handoff_take(struct handoff *h, struct qnode **ret_batch);
/* Loop thread, before it may block: the next push signals; if events wait
 * already, signal now. */
void handoff_arm(struct handoff *h);
/* Loop thread: reset the eventfd after epoll reported it. */
void handoff_clear_signal(struct handoff *h);
/* Loop thread, outside an iteration: make the bus fd readable (work was
 * queued that no fd reports). */
void handoff_kick(struct handoff *h);
/* Loop thread: pass everything produced so far to fn, in order, and empty
 * the producers' buffer without swapping buffers, so a batch being
 * dispatched in place stays untouched. */
unsigned handoff_copy_out(struct handoff *h, void (*fn)(void *ud, const struct vmsig_event *ev), void *ud);
/* Wake blocked producers so they re-check their cancel flag. */
void handoff_wake(struct handoff *h);

/* ---- per-control bounded queue ---- */

struct cq_entry {
        int fd;
        bool fd_counted; /* counts against max_fds until popped */
        struct vmsig_event ev;
};

struct ctlq {
        struct cq_entry *ring;
        unsigned cap; /* allocated entries (grows by doubling) */
        unsigned max; /* bound from limits.queue_bytes */
        unsigned head;
        unsigned count;
        unsigned fds;
        unsigned max_fds;
};

void ctlq_init(struct ctlq *q, size_t max_bytes, unsigned max_fds);
void ctlq_done(struct ctlq *q); /* closes queued fds */
/* -ENOBUFS when full (bytes or fds). Takes ownership of fd on success only. */
int ctlq_push(struct ctlq *q, const struct vmsig_event *ev, int fd);
struct cq_entry *ctlq_front(struct ctlq *q);
void ctlq_pop(struct ctlq *q); /* closes the front entry's fd if still set */

/* ---- loop objects ---- */

enum watch_type { WATCH_HANDOFF, WATCH_ADAPTER, WATCH_IO };

struct attachment;
struct pend_set;

/* Everything registered with epoll is a watch; epoll data points at it. A
 * dead watch stays allocated until the batch ends, so a stale epoll entry in
 * the current batch is skipped, not dereferenced after free. */
struct watch {
        enum watch_type type;
        int fd;
        bool dead;
        struct watch *next_dead;
        struct vmsig_bus *bus;
        /* WATCH_ADAPTER */
        struct attachment *att;
        uint64_t cookie;
        enum vmsig_rdy_shape shape;
        /* WATCH_IO */
        vmsig_io_fn fn;
        void *userdata;
};

struct endpoint;

struct attachment {
        struct vmsig_bus *bus;
        struct endpoint *ep;
        uint32_t endpoint_id;
        uint8_t seam;
        const struct vmsig_adapter_ops *ops;
        void *inst;
        struct vmsig_emit_sink sink;
        struct watch *watches[VMSIG_FD_REG_MAX];
        unsigned nwatches;
        atomic_bool dead; /* read by worker threads in emit */
        /* bumped on the loop when a lease of the class ends; read by workers */
        atomic_uint lease_gen[VMSIG_LEASE_CLASS_COUNT];
        bool closing;          /* in close(): loop-thread ACT_ACK emits still pass */
        struct pend_set *pend; /* pending.c: accepted commands awaiting an ACK */
        struct attachment *next_dead;
};

struct lease {
        uint32_t holder; /* control id, 0 = free */
        uint32_t uid;
        int32_t pid;
        char name[VMSIG_NAME_MAX];
};

struct endpoint {
        uint32_t id;
        char name[VMSIG_NAME_MAX];
        bool removing; /* LEFT published, slot freed when it is dispatched */
        struct attachment *att[VMSIG_SEAM_COUNT];
        uint8_t run_state;
        struct lease lease[VMSIG_LEASE_CLASS_COUNT];
        uint64_t memctx_epoch;  /* last epoch handed out */
        bool memctx_registered; /* a valid datum is published (or queued) */
        /* retained, as of dispatch */
        bool has_roster, has_status, has_memctx;
        struct vmsig_event roster, status, memctx;
        int memctx_fd;
        /* Why there is no valid context: the memctx adapter's latest DIAG
         * with a negative code, until a valid MEMCTX, a DIAG with code 0 or
         * the adapter's detach (docs/protocol.md §8.3). */
        bool has_memctx_diag;
        struct vmsig_event memctx_diag;
};

struct sub {
        uint32_t endpoint; /* 0 = all */
        uint64_t kinds;
};
#define CONTROL_MAX_SUBS 32

struct vmsig_control {
        struct vmsig_bus *bus;
        uint32_t id;
        char name[VMSIG_NAME_MAX];
        uint32_t uid;
        int32_t pid;
        uint32_t caps;
        vmsig_deliver_fn deliver;
        vmsig_closed_fn closed;
        void *userdata;
        struct sub subs[CONTROL_MAX_SUBS];
        unsigned nsubs;
        struct ctlq q;
        bool stalled;
        bool dead;
        struct vmsig_control *next, *prev; /* live list, creation order */
        struct vmsig_control *next_dead;
        uint64_t delivered, dropped;
};

struct vmsig_io {
        struct watch w;               /* first: the watch reaper frees the io */
        struct vmsig_io *next, *prev; /* live ios, freed by vmsig_bus_free */
};

struct vmsig_post {
        struct vmsig_bus *bus;
        vmsig_post_fn fn;
        void *userdata;
        bool dead;
        struct vmsig_post *next;
};

struct vmsig_bus {
        int epfd;
        pthread_t owner;
        struct vmsig_bus_limits lim;
        struct prioq pq;
        struct handoff ho;
        struct watch ho_watch;
        uint64_t next_seq;
        /* The hand-off batch being dispatched in place, merged with pq in
         * (priority, seq) order (bus.c). */
        struct qnode *batch;
        unsigned batch_len, batch_pos;

        struct endpoint **eps; /* index = id - 1 */
        unsigned neps;

        struct vmsig_control *ctl_head, *ctl_tail;
        uint32_t next_ctl_id;
        unsigned nctl;

        int depth;   /* > 0 while dispatching: frees are deferred */
        bool kicked; /* queued outside an iteration; the bus fd was made readable */
        bool nested; /* vmsig_bus_get_fd was called: an embedder polls the fd */
        struct watch *dead_watches;
        struct attachment *dead_atts;
        struct vmsig_control *dead_ctls;
        bool need_flush; /* some control may have deliverable queued events */
        struct vmsig_post *posts;
        struct vmsig_io *ios;

        bool exiting;
        int exit_code;

        vmsig_audit_fn audit;
        void *audit_ud;

        struct pend_set *pend_draining; /* pending.c: closed adapters' sets */
        uint64_t pend_next_id;
        bool pend_final; /* the bus is being freed: nobody to answer */

        uint64_t dispatched, delivered, dropped, disconnects;
};

/* bus.c */
bool bus_on_loop_thread(const struct vmsig_bus *bus);
int bus_watch_add(struct vmsig_bus *bus, struct watch *w, uint32_t events);
void bus_watch_kill(struct vmsig_bus *bus, struct watch *w); /* EPOLL_CTL_DEL + defer free */
void bus_reap_if_idle(struct vmsig_bus *bus);
/* Queue an event for dispatch (loop thread). Takes fd and payload. */
int bus_enqueue(struct vmsig_bus *bus, const struct vmsig_event *ev, int fd, void *payload,
                size_t payload_len);
/* Loop thread: move what workers emitted so far into the queue, so that an
 * event the loop queues next is ordered after them (an adapter answering
 * some commands inline and others on its worker keeps its ACKs in order). */
void bus_collect_handoff(struct vmsig_bus *bus);
/* Move everything the workers handed off so far into pq, after what is left
 * of the batch being dispatched (so a marker queued next follows them all). */
void bus_handoff_drain(struct vmsig_bus *bus);
void bus_audit(struct vmsig_bus *bus, enum vmsig_audit_what what, const struct vmsig_control *ctl,
               const struct vmsig_event *ev, int32_t result, const char *reason);
/* The same for a control known only by its lease record (it may be gone). */
void bus_audit_holder(struct vmsig_bus *bus, enum vmsig_audit_what what, const struct lease *holder,
                      const struct vmsig_event *ev, int32_t result, const char *reason);

/* endpoint.c */
struct endpoint *endpoint_get(struct vmsig_bus *bus, uint32_t id); /* live only */
void endpoint_publish_roster(struct vmsig_bus *bus, struct endpoint *ep, uint8_t change);
void endpoint_finalize(struct vmsig_bus *bus, uint32_t id); /* LEFT dispatched */
/* Retention of ROSTER and STATUS (dispatch): a ROSTER leaves with the run
 * state known at dispatch; a STATUS that changes it updates the retained
 * ROSTER and publishes ROSTER "changed". */
void endpoint_roster_stamp(const struct endpoint *ep, struct vmsig_event *roster);
void endpoint_set_run_state(struct vmsig_bus *bus, struct endpoint *ep, uint8_t state);
void attachment_detach(struct attachment *att);
void attachment_reap(struct attachment *att);
void endpoints_free_all(struct vmsig_bus *bus);

/* control.c */
struct vmsig_control *control_get(struct vmsig_bus *bus, uint32_t id); /* live only */
bool control_wants(const struct vmsig_control *ctl, const struct vmsig_event *ev);
void control_deliver(struct vmsig_control *ctl, const struct vmsig_event *ev, int src_fd);
void control_flush(struct vmsig_control *ctl);
void control_disconnect(struct vmsig_control *ctl, int reason, const char *msg);
void control_free(struct vmsig_control *ctl);

/* lease.c */
void lease_command(struct vmsig_bus *bus, struct vmsig_control *ctl, const struct vmsig_event *cmd);
void lease_revoke_all_of(struct vmsig_bus *bus, uint32_t control_id, uint8_t reason);
void lease_revoke_endpoint(struct vmsig_bus *bus, struct endpoint *ep, uint8_t reason);
void lease_fill_body(const struct endpoint *ep, uint8_t cls, uint8_t reason, struct vmsig_lease_body *b);
/* "control 3 'alice' (uid 1000, pid 42)" or "nobody" */
void lease_describe_holder(const struct lease *l, char *buf, size_t len);

/* dispatch.c */
void dispatch_one(struct vmsig_bus *bus, struct qnode *n);
void bus_ack(struct vmsig_bus *bus, const struct vmsig_event *cmd, int32_t result, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* pending.c: one ACT_ACK per accepted command, whatever happens to the VM */
#define PENDING_EV_SWEEP 0xfff0                                         /* internal kind, never on the wire */
int pending_add(struct attachment *att, const struct vmsig_event *cmd); /* -ENOBUFS when full */
void pending_drop_last(struct attachment *att); /* the adapter did not accept it after all */
unsigned pending_max(void);
void pending_on_ack(struct vmsig_bus *bus, const struct vmsig_event *ack);
void pending_detached(struct attachment *att); /* its ACKs may still come */
void pending_closed(struct attachment *att);   /* after close(): answer what stays unanswered */
void pending_sweep(struct vmsig_bus *bus, const struct vmsig_event *marker);
void pending_free_all(struct vmsig_bus *bus);

#endif

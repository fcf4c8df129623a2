/* SPDX-License-Identifier: MIT */
#ifndef VMSIG_TOOLS_CTL_COMMON_H
#define VMSIG_TOOLS_CTL_COMMON_H

/* Shared by the vmsigctl sources: the invocation's state, the command table
 * row, exit codes, escaping of daemon text, and the connection helpers. One
 * ctl_<subject>.c per group of commands; the table is in vmsigctl.c. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vmsig/client.h>
#include <vmsig/event.h>

/* Exit codes (vmsigctl(1) EXIT STATUS). */
enum { EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3, EXIT_DENIED = 4, EXIT_NOVM = 5 };

struct ctl;

/* One row per command: dispatch, --help and usage errors all read it. */
struct ctl_command {
        const char *name;
        int (*run)(struct ctl *ctl, int argc, char **argv); /* an exit code */
        bool offline;                                       /* runs without connecting to vmsigd */
        const char *args;                                   /* --help: "VM OP" */
        const char *summary; /* --help: one line; NULL keeps it out of --help */
        const char *usage;   /* usage errors: "vmsigctl NAME <usage>"; NULL: args */
};

/* One invocation: the options and the connection. */
struct ctl {
        const struct ctl_command *cmd;
        struct vmsig_client *client;
        const char *socket_path;
        int timeout_ms;
        bool json;           /* -j */
        bool phys;           /* --phys */
        bool ff;             /* --ff */
        const char *cr3;     /* --cr3, unparsed */
        const char *file;    /* --file */
        const char *symbols; /* --symbols */
        const char *output;  /* frame -o */
        bool watch;          /* frame --watch */
        const char *request; /* frame --request */
};

/* The commands, by subject. */
int ctl_cmd_list(struct ctl *ctl, int argc, char **argv);   /* ctl_roster.c */
int ctl_cmd_watch(struct ctl *ctl, int argc, char **argv);  /* ctl_watch.c */
int ctl_cmd_status(struct ctl *ctl, int argc, char **argv); /* ctl_power.c */
int ctl_cmd_power(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_lease(struct ctl *ctl, int argc, char **argv); /* ctl_lease.c */
int ctl_cmd_read(struct ctl *ctl, int argc, char **argv);  /* ctl_mem.c */
int ctl_cmd_write(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_input(struct ctl *ctl, int argc, char **argv); /* ctl_input.c */
int ctl_cmd_frame(struct ctl *ctl, int argc, char **argv); /* ctl_frame.c */

/* ---- output ---- */

/* Every string that came from vmsigd (ERROR, REPLY and ACK messages, which
 * may quote another control's HELLO name; VM names) reaches the terminal
 * through this, escaped the way `watch` prints: no escape sequence and no
 * newline of someone else's choosing. Rotating buffers, so that one printf
 * can use several. */
const char *ctl_esc(const char *s, size_t max, bool as_json);
#define ESC(field) ctl_esc((field), sizeof(field), false)

/* "vmsigctl: <message>" on stderr; returns code. */
int ctl_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "usage: vmsigctl NAME USAGE" for the running command; EXIT_USAGE. */
int ctl_usage_error(const struct ctl *ctl);
/* The exit code for a negative ACK result. */
int ctl_exit_for(int32_t result);
/* A watch/status event line (text or JSON per ctl->json); fd is closed.
 * A waiter's each callback with ud = the struct ctl. */
void ctl_print_event(const struct vmsig_event *ev, int fd, void *ud);

/* ---- the connection ---- */

/* SIGINT/SIGTERM end a wait with -EINTR; SIGPIPE is ignored. */
void ctl_signals_install(void);
/* Connects ctl->client; 0 or an exit code (the message printed). */
int ctl_connect(struct ctl *ctl);
/* The exit code for a failed wait r (the message printed). */
int ctl_connection_lost(const struct ctl *ctl, int r);

/* Receive until the ACT_ACK (or, with want_reply, the REPLY) for corr;
 * other events go to each (may be NULL, then their fds are closed). */
struct ctl_waiter {
        uint64_t corr;
        bool want_reply;
        struct vmsig_ack_body ack; /* filled when found */
        struct vmsig_client_reply reply;
        void (*each)(const struct vmsig_event *ev, int fd, void *ud);
        void *ud;
};
/* 0 found, -EINTR interrupted, -ETIMEDOUT, or the client's error. */
int ctl_wait_for(struct ctl *ctl, struct ctl_waiter *w, int ms);
/* Subscribe and wait for the REPLY: its result, or a wait error. */
int ctl_subscribe_sync(struct ctl *ctl, uint32_t ep, uint64_t kinds, struct ctl_waiter *w);
/* Send ev (with payload if not NULL) and wait for its ACT_ACK into *ret;
 * FF events only flush. 0 or an exit code (the message printed). */
int ctl_send_and_wait(struct ctl *ctl, struct vmsig_event *ev, const void *payload, size_t len,
                      struct vmsig_ack_body *ret);
/* Take lease class cls on ep for this connection's life: 0 or an exit code
 * (ctl_lease.c). */
int ctl_acquire(struct ctl *ctl, uint32_t ep, uint8_t cls);

/* "name" or "id" -> endpoint id: 0 or an exit code (ctl_roster.c). */
int ctl_resolve_vm(struct ctl *ctl, const char *arg, uint32_t *ret);

#endif

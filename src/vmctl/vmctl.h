/* SPDX-License-Identifier: MIT */
/* vmctl: the input driver. Neutral input commands (absolute/relative move
 * with x AND y in one command, buttons, Linux key codes, wheel) become device
 * input for one VM, through one of two backends that vmctl picks from what
 * the host offers:
 *
 *   uinput  a keyboard + pointer pair of uinput devices that QEMU reads with
 *           `-object input-linux,evdev=/dev/input/eventN`. The pair must exist
 *           before QEMU starts and outlive the daemon, so it is created and
 *           held by `vmsig-uinput hold VM` (see README.md in this directory);
 *           vmctl gets dups of its uinput fds over the holder's socket.
 *   qmp     `input-send-event` through a QMP transport the owner provides
 *           (the adapter: the VM's shared vmconn session).
 *
 * Order of choice in vmctl_open(): fds given in the config -> the holder
 * socket (given, or the default <dir>/<vm>.sock) -> QMP (if a transport was
 * given) -> -ENODEV.
 *
 * One command is one batch: X and Y (and nothing else) before ONE SYN_REPORT
 * (uinput), or ONE input-send-event call (QMP). vmctl never lets both Ctrl
 * keys be held at once: that is QEMU input-linux's default grab toggle
 * (ctrl-ctrl) and would detach the devices from the guest.
 *
 * Threads: one vmctl object is used from one thread at a time (the loop
 * thread). Nothing here blocks except vmctl_open() (a local socket handshake
 * bounded by a 1 s timeout) and the creation helpers. No logging: errors are
 * returned with a message for people. */
#ifndef VMSIG_VMCTL_VMCTL_H
#define VMSIG_VMCTL_VMCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_object;
struct qmp_reply;
struct vmctl;

#define VMCTL_ABS_MAX    32767 /* absolute axes: 0..VMCTL_ABS_MAX (== QEMU's 0x7fff) */
#define VMCTL_KEY_MAX    767   /* Linux KEY_MAX */
#define VMCTL_WHEEL_MAX  64    /* clicks per WHEEL command, each direction */
#define VMCTL_MSG_MAX    160
#define VMCTL_UINPUT_DIR "/run/vmsig/uinput" /* holder sockets: <dir>/<vm>.sock */
#define VMCTL_NAME_MAX   48                  /* VM name length in device names */

enum vmctl_op {
        VMCTL_MOVE_ABS = 1, /* x, y in 0..VMCTL_ABS_MAX */
        VMCTL_MOVE_REL = 2, /* x, y deltas */
        VMCTL_BUTTON = 3,   /* code enum vmctl_button, value 1 press / 0 release */
        VMCTL_KEY = 4,      /* code Linux key code, value 1 press / 0 release */
        VMCTL_WHEEL = 5,    /* y vertical clicks (+ = up), x horizontal (+ = right) */
};

enum vmctl_button {
        VMCTL_BTN_LEFT = 1,
        VMCTL_BTN_RIGHT = 2,
        VMCTL_BTN_MIDDLE = 3,
};

enum vmctl_backend {
        VMCTL_BACKEND_NONE = 0,
        VMCTL_BACKEND_UINPUT = 1,
        VMCTL_BACKEND_QMP = 2,
};

struct vmctl_cmd {
        uint32_t op; /* enum vmctl_op */
        int32_t x, y;
        uint32_t code;
        int32_t value;
};

/* Completion of an accepted command: result 0 or a negative errno, msg for
 * people (never NULL). token is what vmctl_submit() got. */
typedef void (*vmctl_done_fn)(void *userdata, void *token, int result, const char *msg);

/* How the QMP backend reaches QEMU. execute() queues
 * {"execute":command,"arguments":args} (args borrowed for the call) and, when
 * the reply arrives, the owner calls vmctl_qmp_reply(vm, token, reply) once.
 * A negative return means nothing was queued (no reply call will follow);
 * msg (VMCTL_MSG_MAX) may then say why. */
struct vmctl_qmp_transport {
        int (*execute)(void *ctx, const char *command, struct json_object *args, void *token, char *msg);
        void *ctx;
};

struct vmctl_config {
        const char *vm_name; /* required: device names, holder socket name */
        /* uinput, given: both >= 0 (dup'ed; the caller keeps its own), or -1 */
        int uinput_kbd_fd, uinput_ptr_fd;
        /* uinput holder socket; NULL: VMCTL_UINPUT_DIR/<vm>.sock if present */
        const char *uinput_socket;
        bool no_uinput;                        /* for tests and benchmarks: never look for uinput */
        const struct vmctl_qmp_transport *qmp; /* NULL: no QMP backend */
        vmctl_done_fn done;
        void *userdata;
};
#define VMCTL_CONFIG_INIT                                                                                    \
        {                                                                                                    \
                .uinput_kbd_fd = -1, .uinput_ptr_fd = -1                                                     \
        }

/* Picks the backend (see above). msg (VMCTL_MSG_MAX, optional) says which
 * and why, or why none. -ENODEV: no backend available. -EINVAL: bad config
 * (no vm_name, no done). -EPROTO: the holder spoke nonsense. */
int vmctl_open(const struct vmctl_config *cfg, struct vmctl **ret, char *msg);
/* NULL-safe; returns NULL. Pending QMP commands are forgotten: the owner
 * must not call vmctl_qmp_reply() for them afterwards. */
struct vmctl *vmctl_free(struct vmctl *vm);

enum vmctl_backend vmctl_get_backend(const struct vmctl *vm);
/* uinput: the pointer device node the holder reported ("" if unknown). */
const char *vmctl_pointer_node(const struct vmctl *vm);

/* Checks cmd against the rules every backend shares (ranges, codes, the
 * grab toggle is NOT checked here: it needs state). 0 or -EINVAL/-ERANGE/
 * -EOPNOTSUPP with msg (optional). Pure, and dependency-free (validate.c):
 * the input stub applies the same rules. */
int vmctl_validate(const struct vmctl_cmd *cmd, char *msg);

/* Actuates one command as one batch. < 0: refused before any effect (done
 * is not called; msg says why). 0: accepted, done(token) runs exactly once:
 * before this returns (uinput) or from vmctl_qmp_reply() (QMP). */
int vmctl_submit(struct vmctl *vm, const struct vmctl_cmd *cmd, void *token, char *msg);

/* The owner hands a QMP reply back (see struct vmctl_qmp_transport). */
void vmctl_qmp_reply(struct vmctl *vm, void *token, const struct qmp_reply *reply);

/* Releases every key and button vmctl believes held (one batch per device).
 * Used when a control's input lease ends. 0 or -errno. QMP: fire-and-forget
 * (completions arrive with token NULL). */
int vmctl_release_all(struct vmctl *vm);

/* ---- pure helpers (tests, fuzzing, tools) ---- */

/* QEMU QKeyCode name for a Linux key code, or NULL. */
const char *vmctl_qcode(uint32_t linux_code);
/* Builds the input-send-event arguments for cmd ({"events":[...]}); *ret
 * gets a new reference. -ENOMEM, -EOPNOTSUPP (key without qcode), or the
 * vmctl_validate() errors. */
int vmctl_qmp_args(const struct vmctl_cmd *cmd, struct json_object **ret, char *msg);
/* Maps a QMP reply to 0 or -errno + message (e.g. -EHOSTDOWN "VM not
 * running", -ENODEV "no absolute pointer device in the guest"). */
int vmctl_qmp_result(const struct qmp_reply *reply, char *msg);
/* Fills ev[] (struct input_event) for cmd on the keyboard (ret_dev 0) or
 * pointer (1) device, SYN_REPORT last. Returns the count (0: nothing to
 * write, e.g. a zero move) or -errno. cap >= 6. */
struct input_event;
int vmctl_uinput_events(const struct vmctl_cmd *cmd, struct input_event *ev, size_t cap, int *ret_dev,
                        char *msg);

/* ---- uinput devices ---- */

struct vmctl_uinput_pair {
        int kbd_fd, ptr_fd;              /* /dev/uinput fds; the devices live while one is open */
        char kbd_node[64], ptr_node[64]; /* /dev/input/eventN */
        char kbd_name[96], ptr_name[96];
        char kbd_phys[96], ptr_phys[96];
        void *kbd_ui_, *ptr_ui_; /* libevdev handles (NULL for adopted fds) */
};
/* Is /dev/uinput there and writable? 0, or -errno with msg. */
int vmctl_uinput_probe(char *msg);
/* Creates the keyboard + pointer pair for vm_name ("vmsig <vm> keyboard",
 * phys "vmsig/<vm>/kbd", ...). -ENOENT/-EACCES: no usable /dev/uinput. */
int vmctl_uinput_create(const char *vm_name, struct vmctl_uinput_pair *ret, char *msg);
/* Destroys devices this process created (UI_DEV_DESTROY, even if another
 * process holds a dup: the VM is being released) and closes the fds. */
void vmctl_uinput_pair_close(struct vmctl_uinput_pair *p);

/* The holder protocol (SOCK_SEQPACKET, one message per connection): a text
 * "vmsig-uinput 1 kbd=NODE ptr=NODE" with the two fds as SCM_RIGHTS. */
int vmctl_holder_send(int conn_fd, const struct vmctl_uinput_pair *p);
int vmctl_holder_fetch(const char *socket_path, int *ret_kbd_fd, int *ret_ptr_fd, char *kbd_node,
                       char *ptr_node, size_t node_len, char *msg);
/* Parses the holder's text line (untrusted). 0 or -EPROTO. */
int vmctl_holder_parse(const char *buf, size_t len, char *kbd_node, char *ptr_node, size_t node_len);

#endif

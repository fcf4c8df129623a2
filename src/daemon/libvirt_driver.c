/* SPDX-License-Identifier: MIT */
/* The libvirt driver (libvirt_driver.h): connection, events, opt-in. The
 * per-domain QMP proxy is libvirt_monitor.c.
 *
 * Why a thread with libvirt's default event loop rather than libvirt's
 * handles on our epoll loop (virEventRegisterImpl): libvirt's calls are
 * blocking RPCs to libvirtd (open, list, GetMetadata, QemuMonitorCommand),
 * and a libvirtd that hangs must never stall the loop that serves every
 * control. So everything libvirt runs off the loop, and the loop gets
 * finished results through an eventfd queue. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <limits.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <vmsig/backoff.h>

#include "daemon/libvirt_driver.h"
#include "daemon/libvirt_module.h"
#include "daemon/libvirt_monitor.h"
#include "vmctl/vmctl.h"

#define RETRY_MIN_MS 500u
#define RETRY_MAX_MS 10000u

enum msg_type { MSG_ADD, MSG_REMOVE, MSG_LOG };

struct lv_msg {
        enum msg_type type;
        int prio;
        struct trigger t; /* MSG_ADD */
        char name[TRIGGER_NAME_MAX + 1];
        char text[600];
        struct lv_msg *next;
};

struct lv_driver {
        char uri[CONFIG_LIBVIRT_URI_MAX + 1];
        char proxy_dir[CONFIG_PATH_MAX + 1];
        enum config_libvirt_attach attach;
        struct lv_driver_callbacks cb;
        void *ud;

        /* libvirt thread only */
        pthread_t thr;
        bool thr_started;
        bool quit;
        int stop_pipe[2];
        int stop_watch;
        virConnectPtr conn;
        bool lost; /* the connection closed: reconnect on the next retry */
        int cb_lifecycle, cb_reboot, cb_metadata;
        struct vmsig_backoff bo;
        int bo_watch;
        struct lv_mon *doms;

        /* to the loop thread */
        pthread_mutex_t qmu;
        struct lv_msg *qhead, *qtail;
        int evfd;
};

/* ---- the queue to the loop thread ---- */

static void push(struct lv_driver *d, struct lv_msg *m)
{
        uint64_t one = 1;

        pthread_mutex_lock(&d->qmu);
        if (d->qtail)
                d->qtail->next = m;
        else
                d->qhead = m;
        d->qtail = m;
        pthread_mutex_unlock(&d->qmu);
        (void)!write(d->evfd, &one, sizeof(one));
}

static void lv_log(struct lv_driver *d, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void lv_log(struct lv_driver *d, int prio, const char *fmt, ...)
{
        struct lv_msg *m = calloc(1, sizeof(*m));
        va_list ap;

        if (!m)
                return;
        m->type = MSG_LOG;
        m->prio = prio;
        va_start(ap, fmt);
        vsnprintf(m->text, sizeof(m->text), fmt, ap);
        va_end(ap);
        push(d, m);
}

static const char *lv_err(void)
{
        const char *e = virGetLastErrorMessage();

        return e && *e ? e : "unknown libvirt error";
}

/* libvirt prints every error to stderr by default; we report our own. */
static void quiet_errors(void *ud, virErrorPtr err)
{
        (void)ud;
        (void)err;
}

/* ---- opt-in ---- */

/* <memoryBacking> with shared access and file or memfd source: the RAM
 * vmsigd can read. Matched on libvirt's own formatting of the live XML
 * (single quotes, no extra blanks), which libvirt has kept for years. */
static bool shared_ram(virDomainPtr dom)
{
        char *xml = virDomainGetXMLDesc(dom, 0);
        bool ok = false;

        if (!xml)
                return false;
        const char *mb = strstr(xml, "<memoryBacking>");
        const char *end = mb ? strstr(mb, "</memoryBacking>") : NULL;
        if (mb && end) {
                size_t n = (size_t)(end - mb);
                char *blk = strndup(mb, n);
                if (blk) {
                        ok = strstr(blk, "<access mode='shared'/>") &&
                             (strstr(blk, "<source type='file'/>") || strstr(blk, "<source type='memfd'/>"));
                        free(blk);
                }
        }
        free(xml);
        return ok;
}

static bool opted_in(struct lv_driver *d, virDomainPtr dom)
{
        char *md =
            virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, LV_METADATA_NS, VIR_DOMAIN_AFFECT_LIVE);

        if (md) {
                free(md);
                return true;
        }
        return d->attach == CONFIG_LIBVIRT_SHARED_RAM && shared_ram(dom);
}

/* ---- input: evdev passthrough of the vmsig uinput pair, else QMP ---- */

/* The device node the holder's env file names for key ("KEYBOARD"), or "". */
static void holder_node(const char *env, const char *key, char *out, size_t len)
{
        char line[512];
        size_t kl = strlen(key);
        FILE *f = fopen(env, "re");

        out[0] = '\0';
        if (!f)
                return;
        while (fgets(line, sizeof(line), f))
                if (!strncmp(line, key, kl) && line[kl] == '=') {
                        line[strcspn(line, "\n")] = '\0';
                        if (!realpath(line + kl + 1, out))
                                out[0] = '\0';
                        break;
                }
        fclose(f);
}

/* input_options for the domain: its <input type='evdev'> passes one of the
 * devices `vmsig-uinput hold NAME` holds: the uinput pair (QEMU reads it, no
 * monitor command per key); else input-send-event through the monitor, and
 * never the pair (its events would reach no guest). */
static void input_options(virDomainPtr dom, const char *name, char *opts, size_t len)
{
        char env[256], kbd[PATH_MAX], ptr[PATH_MAX];
        char *xml = virDomainGetXMLDesc(dom, 0);
        bool passthrough = false;

        snprintf(opts, len, "backend=qmp");
        if (!xml)
                return;
        snprintf(env, sizeof(env), "%s/%s.env", VMCTL_UINPUT_DIR, name);
        holder_node(env, "KEYBOARD", kbd, sizeof(kbd));
        holder_node(env, "POINTER", ptr, sizeof(ptr));
        for (const char *p = xml; (kbd[0] || ptr[0]) && (p = strstr(p, "<input type='evdev'>")); p++) {
                const char *end = strstr(p, "</input>"), *src = strstr(p, "<source dev='");
                char dev[PATH_MAX], real[PATH_MAX];
                if (!end || !src || src > end)
                        continue;
                src += strlen("<source dev='");
                size_t n = strcspn(src, "'");
                if (n >= sizeof(dev))
                        continue;
                memcpy(dev, src, n);
                dev[n] = '\0';
                if (realpath(dev, real) && ((kbd[0] && !strcmp(real, kbd)) || (ptr[0] && !strcmp(real, ptr))))
                        passthrough = true;
        }
        free(xml);
        if (passthrough)
                snprintf(opts, len, "uinput=%s/%s.sock", VMCTL_UINPUT_DIR, name);
}

/* ---- domains ---- */

static struct lv_mon *find_dom(struct lv_driver *d, const char *uuid)
{
        for (struct lv_mon *m = d->doms; m; m = lv_mon_next(m))
                if (!strcmp(lv_mon_uuid(m), uuid))
                        return m;
        return NULL;
}

static void forget(struct lv_driver *d, struct lv_mon *mon, const char *why)
{
        struct lv_msg *msg = calloc(1, sizeof(*msg));
        struct lv_mon **pp = &d->doms;

        while (*pp && *pp != mon)
                pp = lv_mon_next_ptr(*pp);
        if (*pp)
                *pp = lv_mon_next(mon);
        if (msg) {
                msg->type = MSG_REMOVE;
                snprintf(msg->name, sizeof(msg->name), "%s", lv_mon_name(mon));
                snprintf(msg->text, sizeof(msg->text), "libvirt domain %s %s", lv_mon_uuid(mon), why);
                push(d, msg);
        }
        lv_mon_free(mon);
}

static bool name_ok(const char *name)
{
        size_t n = strlen(name);

        if (!n || n > TRIGGER_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)name[i] <= 0x20 || (unsigned char)name[i] >= 0x7f)
                        return false;
        return true;
}

static void consider(struct lv_driver *d, virDomainPtr dom)
{
        char uuid[VIR_UUID_STRING_BUFLEN], err[512], path[CONFIG_PATH_MAX + 64];
        struct lv_mon_info info;
        struct lv_mon *mon;

        if (virDomainGetUUIDString(dom, uuid) < 0 || find_dom(d, uuid))
                return;
        if (!opted_in(d, dom))
                return; /* left alone: not one command sent to it */
        const char *name = virDomainGetName(dom);
        if (!name || !name_ok(name)) {
                lv_log(d, LOG_WARNING,
                       "libvirt domain %s opts in but its name is not a vmsig VM name (1-%u printable "
                       "characters, no blanks): not served",
                       uuid, TRIGGER_NAME_MAX);
                return;
        }
        snprintf(path, sizeof(path), "%s/%s.qmp", d->proxy_dir, uuid);
        if (strlen(path) > TRIGGER_QMP_MAX) {
                lv_log(d, LOG_ERR, "libvirt domain '%s': proxy socket path %s is too long for a unix socket",
                       name, path);
                return;
        }
        int r = lv_mon_probe(dom, uuid, &info, err, sizeof(err));
        if (r < 0) {
                lv_log(d, LOG_ERR, "libvirt domain '%s': not served: %s", name, err);
                return;
        }
        r = lv_mon_new(dom, uuid, name, path, &mon, err, sizeof(err));
        if (r < 0) {
                lv_log(d, LOG_ERR, "libvirt domain '%s': not served: %s", name, err);
                return;
        }
        *lv_mon_next_ptr(mon) = d->doms;
        d->doms = mon;

        struct lv_msg *msg = calloc(1, sizeof(*msg));
        if (!msg)
                return;
        msg->type = MSG_ADD;
        struct trigger *t = &msg->t;
        snprintf(t->name, sizeof(t->name), "%s", name);
        t->driver = (enum trigger_driver)VM_DRIVER_LIBVIRT;
        snprintf(t->qmp, sizeof(t->qmp), "%s", path);
        snprintf(t->ram, sizeof(t->ram), "%s", info.ram_path);
        snprintf(t->memctx_options, sizeof(t->memctx_options), "qemu_pid=%d,qemu_uid=%u", (int)info.pid,
                 (unsigned)info.uid);
        input_options(dom, name, t->input_options, sizeof(t->input_options));
        snprintf(msg->text, sizeof(msg->text), "libvirt domain %s, QEMU pid %d, RAM %s, input %s", uuid,
                 (int)info.pid, info.ram_path[0] ? info.ram_path : "from QEMU's fd table",
                 strncmp(t->input_options, "uinput=", 7) ? "input-send-event" : "evdev passthrough");
        push(d, msg);
}

/* Match what libvirt runs with what we serve: new ones in, gone ones out,
 * survivors get the new connection's domain handle. */
static void reconcile(struct lv_driver *d)
{
        virDomainPtr *list = NULL;
        int n = virConnectListAllDomains(d->conn, &list, VIR_CONNECT_LIST_DOMAINS_ACTIVE);

        if (n < 0) {
                lv_log(d, LOG_ERR, "libvirt driver: cannot list domains: %s", lv_err());
                return;
        }
        for (struct lv_mon *m = d->doms; m; m = lv_mon_next(m))
                lv_mon_set_seen(m, false);
        for (int i = 0; i < n; i++) {
                char uuid[VIR_UUID_STRING_BUFLEN];
                struct lv_mon *m;
                if (virDomainGetUUIDString(list[i], uuid) == 0 && (m = find_dom(d, uuid))) {
                        lv_mon_set_domain(m, list[i]);
                        lv_mon_set_seen(m, true);
                } else {
                        consider(d, list[i]);
                        if (virDomainGetUUIDString(list[i], uuid) == 0 && (m = find_dom(d, uuid)))
                                lv_mon_set_seen(m, true);
                }
        }
        for (struct lv_mon *m = d->doms, *next; m; m = next) {
                next = lv_mon_next(m);
                if (!lv_mon_seen(m))
                        forget(d, m, "is no longer running");
        }
        for (int i = 0; i < n; i++)
                virDomainFree(list[i]);
        free(list);
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
        struct lv_driver *d = opaque;
        char uuid[VIR_UUID_STRING_BUFLEN];
        struct lv_mon *m;

        (void)conn;
        if (virDomainGetUUIDString(dom, uuid) < 0)
                return 0;
        m = find_dom(d, uuid);
        switch (event) {
        case VIR_DOMAIN_EVENT_STARTED:
                if (!m)
                        consider(d, dom);
                break;
        case VIR_DOMAIN_EVENT_STOPPED:
                if (m)
                        forget(d, m, "stopped");
                break;
        case VIR_DOMAIN_EVENT_SUSPENDED:
                if (m)
                        lv_mon_event(m, "STOP");
                break;
        case VIR_DOMAIN_EVENT_RESUMED:
                if (m)
                        lv_mon_event(m, "RESUME");
                else
                        consider(d, dom);
                break;
        case VIR_DOMAIN_EVENT_SHUTDOWN:
                if (m && detail == VIR_DOMAIN_EVENT_SHUTDOWN_FINISHED)
                        lv_mon_event(m, "SHUTDOWN");
                break;
        case VIR_DOMAIN_EVENT_PMSUSPENDED:
                if (m)
                        lv_mon_event(m, "SUSPEND");
                break;
        case VIR_DOMAIN_EVENT_CRASHED:
                if (m)
                        lv_mon_event(m, "GUEST_PANICKED");
                break;
        default:
                break;
        }
        return 0;
}

static void on_reboot(virConnectPtr conn, virDomainPtr dom, void *opaque)
{
        struct lv_driver *d = opaque;
        char uuid[VIR_UUID_STRING_BUFLEN];
        struct lv_mon *m;

        (void)conn;
        if (virDomainGetUUIDString(dom, uuid) == 0 && (m = find_dom(d, uuid)))
                lv_mon_event(m, "RESET");
}

/* `virsh metadata DOMAIN URI --set/--remove --live`: opting in or out of a
 * running domain takes effect at once. */
static void on_metadata(virConnectPtr conn, virDomainPtr dom, int type, const char *nsuri, void *opaque)
{
        struct lv_driver *d = opaque;
        char uuid[VIR_UUID_STRING_BUFLEN];
        struct lv_mon *m;

        (void)conn;
        if (type != VIR_DOMAIN_METADATA_ELEMENT || !nsuri || strcmp(nsuri, LV_METADATA_NS) ||
            virDomainGetUUIDString(dom, uuid) < 0 || virDomainIsActive(dom) != 1)
                return;
        m = find_dom(d, uuid);
        if (!m)
                consider(d, dom);
        else if (!opted_in(d, dom))
                forget(d, m, "opted out (metadata removed)");
}

/* ---- connection ---- */

static void on_close(virConnectPtr conn, int reason, void *opaque)
{
        struct lv_driver *d = opaque;

        (void)conn;
        if (d->lost)
                return;
        d->lost = true;
        lv_log(d, LOG_WARNING,
               "libvirt driver: connection to %s closed (%s): domains stay served, reconnecting", d->uri,
               reason == VIR_CONNECT_CLOSE_REASON_EOF         ? "libvirtd went away"
               : reason == VIR_CONNECT_CLOSE_REASON_KEEPALIVE ? "keepalive timeout"
                                                              : "error");
        (void)vmsig_backoff_failed(&d->bo);
}

static void drop_conn(struct lv_driver *d)
{
        if (!d->conn)
                return;
        for (struct lv_mon *m = d->doms; m; m = lv_mon_next(m))
                lv_mon_set_domain(m, NULL);
        if (d->cb_lifecycle >= 0)
                virConnectDomainEventDeregisterAny(d->conn, d->cb_lifecycle);
        if (d->cb_reboot >= 0)
                virConnectDomainEventDeregisterAny(d->conn, d->cb_reboot);
        if (d->cb_metadata >= 0)
                virConnectDomainEventDeregisterAny(d->conn, d->cb_metadata);
        virConnectUnregisterCloseCallback(d->conn, on_close);
        d->cb_lifecycle = d->cb_reboot = d->cb_metadata = -1;
        virConnectClose(d->conn);
        d->conn = NULL;
        d->lost = false;
}

static void try_connect(struct lv_driver *d)
{
        drop_conn(d);
        d->conn = virConnectOpen(d->uri);
        if (!d->conn) {
                if (vmsig_backoff_failed(&d->bo) == 1)
                        lv_log(d, LOG_WARNING,
                               "libvirt driver: cannot connect to %s: %s; retrying with backoff (up to every "
                               "%u s); trigger files keep working",
                               d->uri, lv_err(), RETRY_MAX_MS / 1000);
                return;
        }
        if (virConnectRegisterCloseCallback(d->conn, on_close, d, NULL) < 0 ||
            virConnectSetKeepAlive(d->conn, 5, 3) < 0 ||
            (d->cb_lifecycle =
                 virConnectDomainEventRegisterAny(d->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                  VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), d, NULL)) < 0 ||
            (d->cb_reboot = virConnectDomainEventRegisterAny(d->conn, NULL, VIR_DOMAIN_EVENT_ID_REBOOT,
                                                             VIR_DOMAIN_EVENT_CALLBACK(on_reboot), d, NULL)) <
                0 ||
            (d->cb_metadata =
                 virConnectDomainEventRegisterAny(d->conn, NULL, VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
                                                  VIR_DOMAIN_EVENT_CALLBACK(on_metadata), d, NULL)) < 0) {
                lv_log(d, LOG_ERR, "libvirt driver: %s: cannot follow domain events: %s", d->uri, lv_err());
                drop_conn(d);
                (void)vmsig_backoff_failed(&d->bo);
                return;
        }
        vmsig_backoff_succeeded(&d->bo);
        lv_log(d, LOG_INFO,
               "libvirt driver: connected to %s (domains opt in with <vmsig:vm xmlns:vmsig=\"%s\"/>%s)",
               d->uri, LV_METADATA_NS,
               d->attach == CONFIG_LIBVIRT_SHARED_RAM ? " or shared file/memfd RAM" : "");
        reconcile(d);
}

static void on_retry(int watch, int fd, int events, void *opaque)
{
        struct lv_driver *d = opaque;
        uint64_t ticks;

        (void)watch;
        (void)events;
        while (read(fd, &ticks, sizeof(ticks)) < 0 && errno == EINTR)
                ;
        if (!d->conn || d->lost)
                try_connect(d);
}

static void on_stop(int watch, int fd, int events, void *opaque)
{
        struct lv_driver *d = opaque;

        (void)watch;
        (void)fd;
        (void)events;
        d->quit = true;
}

static void *lv_thread(void *arg)
{
        struct lv_driver *d = arg;

        try_connect(d);
        while (!d->quit)
                if (virEventRunDefaultImpl() < 0)
                        break;
        drop_conn(d);
        while (d->doms) {
                struct lv_mon *m = d->doms;
                d->doms = lv_mon_next(m);
                lv_mon_free(m);
        }
        return NULL;
}

static pthread_once_t event_once = PTHREAD_ONCE_INIT;
static int event_impl_r;

static void event_impl_init(void)
{
        virSetErrorFunc(NULL, quiet_errors);
        event_impl_r = virEventRegisterDefaultImpl();
}

int lv_driver_new(const char *uri, enum config_libvirt_attach attach, const char *proxy_dir,
                  const struct lv_driver_callbacks *cb, void *userdata, struct lv_driver **ret)
{
        struct lv_driver *d;
        int r;

        pthread_once(&event_once, event_impl_init);
        if (event_impl_r < 0)
                return -EIO;
        if (mkdir(proxy_dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        struct stat st;
        if (lstat(proxy_dir, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid())
                return -EPERM;
        if ((st.st_mode & 077) && chmod(proxy_dir, 0700) < 0)
                return -errno;
        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        snprintf(d->uri, sizeof(d->uri), "%s", uri);
        snprintf(d->proxy_dir, sizeof(d->proxy_dir), "%s", proxy_dir);
        d->attach = attach;
        d->cb = *cb;
        d->ud = userdata;
        d->stop_pipe[0] = d->stop_pipe[1] = d->evfd = d->bo.fd = -1;
        d->stop_watch = d->bo_watch = d->cb_lifecycle = d->cb_reboot = d->cb_metadata = -1;
        pthread_mutex_init(&d->qmu, NULL);
        d->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (d->evfd < 0 || pipe2(d->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
                r = -errno;
                goto fail;
        }
        r = vmsig_backoff_init(&d->bo, RETRY_MIN_MS, RETRY_MAX_MS);
        if (r < 0)
                goto fail;
        d->stop_watch = virEventAddHandle(d->stop_pipe[0], VIR_EVENT_HANDLE_READABLE, on_stop, d, NULL);
        d->bo_watch = virEventAddHandle(d->bo.fd, VIR_EVENT_HANDLE_READABLE, on_retry, d, NULL);
        if (d->stop_watch < 0 || d->bo_watch < 0) {
                r = -EIO;
                goto fail;
        }
        r = -pthread_create(&d->thr, NULL, lv_thread, d);
        if (r < 0)
                goto fail;
        d->thr_started = true;
        *ret = d;
        return 0;
fail:
        lv_driver_free(d);
        return r;
}

int lv_driver_fd(const struct lv_driver *d)
{
        return d->evfd;
}

void lv_driver_process(struct lv_driver *d)
{
        uint64_t n;
        struct lv_msg *m;

        (void)!read(d->evfd, &n, sizeof(n));
        pthread_mutex_lock(&d->qmu);
        m = d->qhead;
        d->qhead = d->qtail = NULL;
        pthread_mutex_unlock(&d->qmu);
        while (m) {
                struct lv_msg *next = m->next;
                char why[1024];

                switch (m->type) {
                case MSG_LOG:
                        if (d->cb.log)
                                d->cb.log(m->prio, m->text, d->ud);
                        break;
                case MSG_ADD:
                        why[0] = '\0';
                        if (d->cb.added && d->cb.added(&m->t, m->text, why, sizeof(why), d->ud) < 0 &&
                            d->cb.log)
                                d->cb.log(LOG_ERR, why, d->ud);
                        break;
                case MSG_REMOVE:
                        if (d->cb.removed)
                                d->cb.removed(m->name, m->text, d->ud);
                        break;
                }
                free(m);
                m = next;
        }
}

struct lv_driver *lv_driver_free(struct lv_driver *d)
{
        if (!d)
                return NULL;
        if (d->thr_started) {
                (void)!write(d->stop_pipe[1], "x", 1);
                pthread_join(d->thr, NULL);
        }
        if (d->stop_watch >= 0)
                virEventRemoveHandle(d->stop_watch);
        if (d->bo_watch >= 0)
                virEventRemoveHandle(d->bo_watch);
        vmsig_backoff_done(&d->bo);
        for (int i = 0; i < 2; i++)
                if (d->stop_pipe[i] >= 0)
                        close(d->stop_pipe[i]);
        if (d->evfd >= 0)
                close(d->evfd);
        while (d->qhead) {
                struct lv_msg *m = d->qhead;
                d->qhead = m->next;
                free(m);
        }
        pthread_mutex_destroy(&d->qmu);
        free(d);
        return NULL;
}

/* What vmsigd's loader looks up (libvirt_module.h); the only symbol this
 * module exports. */
__attribute__((visibility("default"))) const struct lv_module vmsigd_libvirt_module = {
    .stamp = LV_MODULE_STAMP,
    .driver_new = lv_driver_new,
    .driver_fd = lv_driver_fd,
    .driver_process = lv_driver_process,
    .driver_free = lv_driver_free,
};

/* SPDX-License-Identifier: MIT */
/* The libvirt driver's per-domain QMP proxy (libvirt_monitor.h). */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "daemon/libvirt_monitor.h"

#define RX_MAX (64u * 1024u) /* one command; ours are a few hundred bytes */

struct lv_mon {
        char uuid[VIR_UUID_STRING_BUFLEN];
        char name[TRIGGER_NAME_MAX + 1];
        char path[TRIGGER_QMP_MAX + 1];
        bool seen;
        struct lv_mon *next;

        pthread_mutex_t mu; /* dom, client_fd */
        virDomainPtr dom;
        int client_fd;

        int listen_fd;
        int wake[2];
        pthread_t thr;
        bool thr_started;
};

static const char *lv_err(void)
{
        const char *e = virGetLastErrorMessage();

        return e && *e ? e : "unknown libvirt error";
}

/* ---- one-off queries ---- */

/* The "return" member of a monitor command's reply (a new reference), or
 * NULL with err set. */
static struct json_object *mon_query(virDomainPtr dom, const char *cmd, char *err, size_t errlen)
{
        char *res = NULL;
        struct json_object *o, *ret = NULL, *e;

        if (virDomainQemuMonitorCommand(dom, cmd, &res, 0) < 0) {
                snprintf(err, errlen, "monitor command %s: %s", cmd, lv_err());
                return NULL;
        }
        o = json_tokener_parse(res);
        free(res);
        if (o && json_object_object_get_ex(o, "return", &ret))
                ret = json_object_get(ret);
        else if (o && json_object_object_get_ex(o, "error", &e))
                snprintf(err, errlen, "monitor command %s: %s", cmd, json_object_to_json_string(e));
        else
                snprintf(err, errlen, "monitor command %s: malformed reply", cmd);
        json_object_put(o);
        return ret;
}

static pid_t tgid_of(long tid)
{
        char path[64], line[128];
        long tgid = -1;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%ld/status", tid);
        f = fopen(path, "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Tgid: %ld", &tgid) == 1)
                        break;
        fclose(f);
        return tgid > 0 ? (pid_t)tgid : -1;
}

/* Is pid started with "-uuid UUID" (how libvirt starts QEMU)? The thread id
 * comes from QEMU, which its user controls: without this check a
 * compromised QEMU could name a process of another user, and vmsigd would
 * read that process's memory as guest RAM. Another process with that
 * argument can only be one its starter owns. */
static bool runs_domain(pid_t pid, const char *uuid)
{
        char path[64], buf[16384];
        size_t n = 0;
        ssize_t r;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        while (n < sizeof(buf) - 1 && (r = read(fd, buf + n, sizeof(buf) - 1 - n)) > 0)
                n += (size_t)r;
        close(fd);
        buf[n] = '\0';
        for (size_t i = 0; i < n;) {
                const char *arg = buf + i;
                size_t len = strlen(arg);
                if (!strcmp(arg, "-uuid") && i + len + 1 < n && !strcmp(buf + i + len + 1, uuid))
                        return true;
                i += len + 1;
        }
        return false;
}

int lv_mon_probe(virDomainPtr dom, const char *uuid, struct lv_mon_info *ret, char *err, size_t errlen)
{
        struct json_object *cpus, *c0, *tid, *mp;
        struct stat st;
        char path[64];

        memset(ret, 0, sizeof(*ret));
        /* QEMU's pid from QEMU itself: a vCPU thread belongs to it */
        cpus = mon_query(dom, "{\"execute\":\"query-cpus-fast\"}", err, errlen);
        if (!cpus)
                return -EIO;
        if (!json_object_is_type(cpus, json_type_array) || !(c0 = json_object_array_get_idx(cpus, 0)) ||
            !json_object_object_get_ex(c0, "thread-id", &tid) || !json_object_is_type(tid, json_type_int)) {
                json_object_put(cpus);
                snprintf(err, errlen, "query-cpus-fast: no vCPU thread id");
                return -EPROTO;
        }
        long t = (long)json_object_get_int64(tid);
        json_object_put(cpus);
        ret->pid = tgid_of(t);
        snprintf(path, sizeof(path), "/proc/%d", (int)ret->pid);
        if (ret->pid <= 0 || stat(path, &st) < 0) {
                snprintf(err, errlen, "cannot find QEMU's process (vCPU thread %ld): %s", t,
                         ret->pid <= 0 ? "no such thread" : strerror(errno));
                return -ESRCH;
        }
        ret->uid = st.st_uid;
        if (!runs_domain(ret->pid, uuid)) {
                snprintf(
                    err, errlen,
                    "process %d (of vCPU thread %ld) was not started with -uuid %s: not QEMU of this domain",
                    (int)ret->pid, t, uuid);
                return -EPERM;
        }
        /* the RAM backend's path, from QEMU; pc.ram without NUMA, else the
         * first node's backend. memfd has no mem-path: "" */
        static const char *const objs[] = {"/objects/pc.ram", "/objects/ram-node0"};
        for (size_t i = 0; i < sizeof(objs) / sizeof(objs[0]); i++) {
                char cmd[160], e2[256];
                snprintf(
                    cmd, sizeof(cmd),
                    "{\"execute\":\"qom-get\",\"arguments\":{\"path\":\"%s\",\"property\":\"mem-path\"}}",
                    objs[i]);
                mp = mon_query(dom, cmd, e2, sizeof(e2));
                if (!mp)
                        continue;
                const char *s = json_object_is_type(mp, json_type_string) ? json_object_get_string(mp) : "";
                if (s[0] == '/' && strlen(s) <= TRIGGER_PATH_MAX)
                        snprintf(ret->ram_path, sizeof(ret->ram_path), "%s", s);
                json_object_put(mp);
                break;
        }
        return 0;
}

/* ---- the proxy ---- */

static int send_obj(struct lv_mon *m, struct json_object *o)
{
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        size_t len = strlen(s);
        int r = 0;

        pthread_mutex_lock(&m->mu);
        if (m->client_fd >= 0) {
                while (len) {
                        ssize_t n = send(m->client_fd, s, len, MSG_NOSIGNAL);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0) {
                                r = -errno;
                                break;
                        }
                        s += n;
                        len -= (size_t)n;
                }
                if (!r)
                        (void)!send(m->client_fd, "\r\n", 2, MSG_NOSIGNAL);
        }
        pthread_mutex_unlock(&m->mu);
        return r;
}

void lv_mon_event(struct lv_mon *m, const char *name)
{
        struct json_object *o = json_object_new_object(), *ts = json_object_new_object();
        struct timeval tv;

        gettimeofday(&tv, NULL);
        json_object_object_add(ts, "seconds", json_object_new_int64(tv.tv_sec));
        json_object_object_add(ts, "microseconds", json_object_new_int64(tv.tv_usec));
        json_object_object_add(o, "event", json_object_new_string(name));
        json_object_object_add(o, "data", json_object_new_object());
        json_object_object_add(o, "timestamp", ts);
        (void)send_obj(m, o);
        json_object_put(o);
}

static struct json_object *error_obj(const char *cls, const char *desc)
{
        struct json_object *o = json_object_new_object(), *e = json_object_new_object();

        json_object_object_add(e, "class", json_object_new_string(cls));
        json_object_object_add(e, "desc", json_object_new_string(desc));
        json_object_object_add(o, "error", e);
        return o;
}

static struct json_object *return_obj(struct json_object *val)
{
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "return", val ? val : json_object_new_object());
        return o;
}

static struct json_object *libvirt_result(int r, const char *what)
{
        char desc[512];

        if (r >= 0)
                return return_obj(NULL);
        snprintf(desc, sizeof(desc), "libvirt %s: %s", what, lv_err());
        return error_obj("GenericError", desc);
}

/* query-status from libvirt's state: no monitor command, no taint. */
static struct json_object *status_of(virDomainPtr dom)
{
        int state, reason;
        const char *s = "running";
        bool running = false;

        if (virDomainGetState(dom, &state, &reason, 0) < 0)
                return libvirt_result(-1, "virDomainGetState");
        switch (state) {
        case VIR_DOMAIN_RUNNING:
        case VIR_DOMAIN_BLOCKED:
        case VIR_DOMAIN_NOSTATE:
                running = true;
                break;
        case VIR_DOMAIN_PAUSED:
                s = reason == VIR_DOMAIN_PAUSED_STARTING_UP ? "prelaunch" : "paused";
                break;
        case VIR_DOMAIN_SHUTDOWN:
        case VIR_DOMAIN_SHUTOFF:
                s = "shutdown";
                break;
        case VIR_DOMAIN_CRASHED:
                s = "guest-panicked";
                break;
        case VIR_DOMAIN_PMSUSPENDED:
                s = "suspended";
                break;
        default:
                s = "paused";
                break;
        }
        struct json_object *v = json_object_new_object();
        json_object_object_add(v, "status", json_object_new_string(s));
        json_object_object_add(v, "running", json_object_new_boolean(running));
        json_object_object_add(v, "singlestep", json_object_new_boolean(false));
        return return_obj(v);
}

/* Query commands and input only reach QEMU (see libvirt_driver.h). */
static bool passthrough_ok(const char *cmd, struct json_object *args)
{
        if (!strncmp(cmd, "query-", 6) || !strcmp(cmd, "qom-get") || !strcmp(cmd, "qom-list") ||
            !strcmp(cmd, "input-send-event"))
                return true;
        if (!strcmp(cmd, "human-monitor-command")) {
                struct json_object *cl;
                const char *s;
                if (!args || !json_object_object_get_ex(args, "command-line", &cl) ||
                    !(s = json_object_get_string(cl)))
                        return false;
                while (*s == ' ')
                        s++;
                return !strncmp(s, "info ", 5) && !strpbrk(s, ";\n");
        }
        return false;
}

static struct json_object *passthrough(virDomainPtr dom, const char *cmd, struct json_object *args)
{
        struct json_object *o = json_object_new_object(), *reply;
        char *res = NULL;

        json_object_object_add(o, "execute", json_object_new_string(cmd));
        if (args)
                json_object_object_add(o, "arguments", json_object_get(args));
        int r = virDomainQemuMonitorCommand(dom, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                                            &res, 0);
        json_object_put(o);
        if (r < 0)
                return libvirt_result(-1, "virDomainQemuMonitorCommand");
        reply = json_tokener_parse(res);
        free(res);
        if (!reply || !json_object_is_type(reply, json_type_object)) {
                json_object_put(reply);
                return error_obj("GenericError", "malformed reply from libvirt");
        }
        json_object_object_del(reply, "id");
        return reply;
}

static struct json_object *handle(struct lv_mon *m, struct json_object *msg)
{
        struct json_object *ex, *args = NULL, *reply;
        const char *cmd;
        virDomainPtr dom;

        if (!json_object_object_get_ex(msg, "execute", &ex) || !(cmd = json_object_get_string(ex)))
                return error_obj("GenericError", "expected an object with execute");
        json_object_object_get_ex(msg, "arguments", &args);
        if (!strcmp(cmd, "qmp_capabilities"))
                return return_obj(NULL);
        pthread_mutex_lock(&m->mu);
        dom = m->dom;
        if (dom)
                virDomainRef(dom);
        pthread_mutex_unlock(&m->mu);
        if (!dom)
                return error_obj("GenericError", "libvirt is not connected (libvirtd restarting?)");
        if (!strcmp(cmd, "query-status"))
                reply = status_of(dom);
        else if (!strcmp(cmd, "stop"))
                reply = libvirt_result(virDomainSuspend(dom), "virDomainSuspend");
        else if (!strcmp(cmd, "cont"))
                reply = libvirt_result(virDomainResume(dom), "virDomainResume");
        else if (!strcmp(cmd, "system_reset"))
                reply = libvirt_result(virDomainReset(dom, 0), "virDomainReset");
        else if (!strcmp(cmd, "system_powerdown"))
                reply = libvirt_result(virDomainShutdown(dom), "virDomainShutdown");
        else if (!strcmp(cmd, "system_wakeup"))
                reply = libvirt_result(virDomainPMWakeup(dom, 0), "virDomainPMWakeup");
        else if (!strcmp(cmd, "quit"))
                reply = libvirt_result(virDomainDestroy(dom), "virDomainDestroy");
        else if (passthrough_ok(cmd, args))
                reply = passthrough(dom, cmd, args);
        else {
                char desc[160];
                snprintf(desc, sizeof(desc), "%.64s is not allowed through vmsigd's libvirt monitor", cmd);
                reply = error_obj("CommandNotFound", desc);
        }
        virDomainFree(dom);
        return reply;
}

static void greet(struct lv_mon *m)
{
        struct json_object *g = json_tokener_parse("{\"QMP\":{\"version\":{\"qemu\":{\"micro\":0,\"minor\":0,"
                                                   "\"major\":0},\"package\":\"vmsigd libvirt "
                                                   "proxy\"},\"capabilities\":[]}}");

        (void)send_obj(m, g);
        json_object_put(g);
}

static void set_client(struct lv_mon *m, int fd)
{
        pthread_mutex_lock(&m->mu);
        if (m->client_fd >= 0)
                close(m->client_fd);
        m->client_fd = fd;
        pthread_mutex_unlock(&m->mu);
}

static void *mon_thread(void *arg)
{
        struct lv_mon *m = arg;
        struct json_tokener *tok = json_tokener_new();
        char buf[4096];
        size_t pending = 0;

        if (!tok)
                return NULL;
        for (;;) {
                int cfd;
                pthread_mutex_lock(&m->mu);
                cfd = m->client_fd;
                pthread_mutex_unlock(&m->mu);
                struct pollfd p[3] = {{m->wake[0], POLLIN, 0}, {m->listen_fd, POLLIN, 0}, {cfd, POLLIN, 0}};
                if (poll(p, cfd >= 0 ? 3 : 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (p[0].revents)
                        break;
                if (p[1].revents & POLLIN) {
                        int fd = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                        struct ucred cr;
                        socklen_t len = sizeof(cr);
                        if (fd >= 0 &&
                            (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.uid != geteuid())) {
                                close(fd); /* only vmsigd itself */
                        } else if (fd >= 0) {
                                /* a client that stops reading must not hold
                                 * the libvirt thread in lv_mon_event for long */
                                struct timeval tmo = {.tv_sec = 2};
                                (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo));
                                set_client(m, fd);
                                json_tokener_reset(tok);
                                pending = 0;
                                greet(m);
                        }
                        continue;
                }
                if (cfd < 0 || !(p[2].revents & (POLLIN | POLLHUP | POLLERR)))
                        continue;
                ssize_t n = recv(cfd, buf, sizeof(buf), 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        set_client(m, -1);
                        continue;
                }
                /* concatenated or split objects: the tokener carries state */
                size_t off = 0;
                while (off < (size_t)n) {
                        struct json_object *msg =
                            json_tokener_parse_ex(tok, buf + off, (int)((size_t)n - off));
                        enum json_tokener_error je = json_tokener_get_error(tok);
                        size_t used = json_tokener_get_parse_end(tok);
                        if (je == json_tokener_continue) {
                                pending += (size_t)n - off;
                                if (pending > RX_MAX) {
                                        set_client(m, -1);
                                        json_tokener_reset(tok);
                                }
                                break;
                        }
                        if (je != json_tokener_success || !msg) {
                                set_client(m, -1); /* not QMP: drop the client */
                                json_tokener_reset(tok);
                                break;
                        }
                        pending = 0;
                        off += used ? used : (size_t)n - off;
                        /* skip the blanks between objects */
                        while (off < (size_t)n && strchr(" \t\r\n", buf[off]))
                                off++;
                        json_tokener_reset(tok);
                        struct json_object *id = NULL;
                        bool has_id = json_object_object_get_ex(msg, "id", &id);
                        struct json_object *reply = json_object_is_type(msg, json_type_object)
                                                        ? handle(m, msg)
                                                        : error_obj("GenericError", "expected an object");
                        if (has_id)
                                json_object_object_add(reply, "id", json_object_get(id));
                        (void)send_obj(m, reply);
                        json_object_put(reply);
                        json_object_put(msg);
                }
        }
        json_tokener_free(tok);
        return NULL;
}

int lv_mon_new(virDomainPtr dom, const char *uuid, const char *name, const char *path, struct lv_mon **ret,
               char *err, size_t errlen)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct lv_mon *m;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path)) {
                snprintf(err, errlen, "%s: path too long", path);
                return -ENAMETOOLONG;
        }
        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        snprintf(m->uuid, sizeof(m->uuid), "%s", uuid);
        snprintf(m->name, sizeof(m->name), "%s", name);
        snprintf(m->path, sizeof(m->path), "%s", path);
        pthread_mutex_init(&m->mu, NULL);
        m->client_fd = m->listen_fd = m->wake[0] = m->wake[1] = -1;
        if (virDomainRef(dom) == 0)
                m->dom = dom;
        memcpy(sa.sun_path, path, strlen(path));
        m->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (m->listen_fd < 0 || pipe2(m->wake, O_CLOEXEC) < 0) {
                r = -errno;
                snprintf(err, errlen, "%s: %s", path, strerror(-r));
                goto fail;
        }
        (void)unlink(path); /* ours from an earlier run: the directory is vmsigd's, 0700 */
        if (bind(m->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
            listen(m->listen_fd, 4) < 0) {
                r = -errno;
                snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(-r));
                goto fail;
        }
        r = -pthread_create(&m->thr, NULL, mon_thread, m);
        if (r < 0) {
                snprintf(err, errlen, "cannot start the proxy thread: %s", strerror(-r));
                goto fail;
        }
        m->thr_started = true;
        *ret = m;
        return 0;
fail:
        lv_mon_free(m);
        return r;
}

void lv_mon_free(struct lv_mon *m)
{
        if (!m)
                return;
        if (m->thr_started) {
                (void)!write(m->wake[1], "x", 1);
                pthread_join(m->thr, NULL);
        }
        if (m->listen_fd >= 0) {
                close(m->listen_fd);
                (void)unlink(m->path);
        }
        set_client(m, -1);
        for (int i = 0; i < 2; i++)
                if (m->wake[i] >= 0)
                        close(m->wake[i]);
        if (m->dom)
                virDomainFree(m->dom);
        pthread_mutex_destroy(&m->mu);
        free(m);
}

void lv_mon_set_domain(struct lv_mon *m, virDomainPtr dom)
{
        virDomainPtr old;

        if (dom)
                virDomainRef(dom);
        pthread_mutex_lock(&m->mu);
        old = m->dom;
        m->dom = dom;
        pthread_mutex_unlock(&m->mu);
        if (old)
                virDomainFree(old);
}

const char *lv_mon_uuid(const struct lv_mon *m)
{
        return m->uuid;
}

const char *lv_mon_name(const struct lv_mon *m)
{
        return m->name;
}

bool lv_mon_seen(const struct lv_mon *m)
{
        return m->seen;
}

void lv_mon_set_seen(struct lv_mon *m, bool seen)
{
        m->seen = seen;
}

struct lv_mon *lv_mon_next(const struct lv_mon *m)
{
        return m->next;
}

struct lv_mon **lv_mon_next_ptr(struct lv_mon *m)
{
        return &m->next;
}

/* quantd: the daemon. One libuv loop owns the nanomsg sockets (their receive fds watched with
 * uv_poll), the device registry and the SQLite state; decisions, model builds and the
 * first-start training run on the libuv thread pool and report back to the loop, which alone
 * writes state and sends replies and pushes.
 *
 * A request goes: drain the raw REP socket -> parse (size, JSON, version, op) -> look the op up
 * in OPS (flags: needs the admin key, a device's key, a ready backbone) -> check the MAC and the
 * nonce -> the handler, which replies at once or queues a job whose completion replies. Every
 * failure is an error reply with a stable code; nothing a client sends can stop the loop.
 *
 * A report whose decision changes makes a new version: the blob (shared by every device with
 * the same policy, built once, signed with the daemon's Ed25519 key, stored content-addressed)
 * is recorded with the decision in one transaction, then pushed on PUB with topic = device id.
 * Until the device acks that version's hash, the push is repeated every ack_timeout_ms
 * (backing off to 8x); at start every unacked version is pushed again.
 *
 * Invariants: only the loop thread touches the registry, the state and the sockets; jobs read
 * the decider (immutable once loaded) and the blob cache under its mutex. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>
#include <uv.h>

#include "core/file.h"
#include "core/log.h"
#include "daemon/config.h"
#include "daemon/state.h"
#include "nn/ckpt.h"
#include "nn/kernels.h"
#include "nn/zoo.h"
#include "gate/gate.h"
#include "gate/supernet.h"
#include "policy/decide.h"
#include "proto/proto.h"
#include "proto/transport.h"

#define MAX_PROFILES 64
#define MAX_BLOBS 65536
#define TICK_MS 20
#define INLINE_SEARCH_US 200.0

struct dev {
    char id[QD_PROTO_MAX_ID + 1];
    uint8_t key[QD_PROTO_KEY_BYTES];
    int prof;                       /* index into profiles; -1 until hello */
    double flash, ram;              /* hello's own figures (0: the profile's) */
    double c_flash, c_ram, c_lat, c_energy, battery; /* the last report; NAN: not given */
    int64_t nonce, version, acked;
    int blob;                       /* the current version's blob; -1 none */
    int64_t push_due;               /* ms; 0: nothing to push */
    int tries, busy, pending;       /* pushes of this version; a decision in flight; in pend[] */
};

struct blob {
    char sha[65];
    char *policy;
    uint8_t sig[QD_PROTO_SIG_BYTES];
    uint8_t *qm; /* NULL until needed (read from models/) */
    size_t len;
};

struct profile {
    struct qd_device dev;
    struct qd_decide_tables t;
    int have_t;
    double search_us; /* running mean of this profile's search time; 0: none yet */
};

/* Open-addressing map from a string to an index (devices by id, blobs by policy). */
struct smap {
    uint32_t cap, n;
    const char **key;
    int *val;
};

enum { PH_LOADING, PH_TRAINING, PH_SENSITIVITY, PH_READY, PH_FAILED, PH_SUPERNET, PH_GATE };

struct qd_daemon {
    struct qd_config cfg;
    const char *cfg_path;
    int argc;
    char **argv;
    uv_loop_t *loop;
    uv_poll_t poll;
    uv_timer_t tick, watchdog;
    uv_signal_t sigterm, sigint, sighup;
    int rep, pub;
    qd_state_t *st;
    uint8_t admin_key[QD_PROTO_KEY_BYTES], sign_sk[QD_PROTO_SECRET_BYTES],
        sign_pk[QD_PROTO_PUB_BYTES];
    int64_t admin_nonce;
    /* registry */
    struct dev **devs;
    int ndev, capdev;
    struct smap dev_by_id;
    int *pend, npend, cappend; /* devices with an unacked push */
    double push_tokens;        /* bytes that may still be pushed in this tick */
    /* blobs: loop and jobs, under blob_mu */
    uv_mutex_t blob_mu;
    struct blob **blobs;
    int nblob, capblob;
    struct smap blob_by_policy;
    /* backbone */
    struct qd_decider dec;
    struct qd_gate gate;       /* with a supernet: decisions are the gate's, made feasible */
    struct qd_bn_cache bn;     /* the supernet's per-policy BatchNorm statistics */
    int have_gate;
    uv_mutex_t build_mu;       /* supernet builds touch the model's statistics: one at a time */
    struct profile prof[MAX_PROFILES];
    int nprof;
    atomic_int phase, epoch, epochs;
    char phase_msg[512], backbone_id[80];
    /* life */
    int stopping, inflight, boot_running, closed;
    double started;
    /* counters */
    long n_req, n_err, n_push, n_repush, n_ack, n_dec, n_build, n_cache_hit;
    long n_errcode[QD_ERR_COUNT];
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int64_t now_ms(void)
{
    return (int64_t)(now_s() * 1000);
}

/* ---- systemd notification (the protocol is one datagram; no libsystemd needed) ---- */

static void sd_notify_msg(const char *msg)
{
    const char *p = getenv("NOTIFY_SOCKET");
    if (!p || (p[0] != '/' && p[0] != '@'))
        return;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t n = strlen(p);
    if (n >= sizeof a.sun_path)
        return;
    memcpy(a.sun_path, p, n);
    if (a.sun_path[0] == '@')
        a.sun_path[0] = 0;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&a,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
        qd_log(QD_LOG_WARN, "sd_notify: %s", strerror(errno));
    close(fd);
}

/* ---- string map ---- */

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

static int smap_get(const struct smap *m, const char *k)
{
    if (!m->cap)
        return -1;
    for (uint32_t i = hash(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->key[i])
            return -1;
        if (!strcmp(m->key[i], k))
            return m->val[i];
    }
}

static qd_err smap_put(struct smap *m, const char *k, int v)
{
    if (2 * (m->n + 1) > m->cap) {
        uint32_t cap = m->cap ? 2 * m->cap : 1024;
        const char **key = calloc(cap, sizeof *key);
        int *val = malloc(cap * sizeof *val);
        if (!key || !val) {
            free(key), free(val);
            return qd_seterr(QD_ENOMEM, "registry: out of memory");
        }
        for (uint32_t i = 0; i < m->cap; i++)
            if (m->key[i]) {
                uint32_t j = hash(m->key[i]) & (cap - 1);
                while (key[j])
                    j = (j + 1) & (cap - 1);
                key[j] = m->key[i];
                val[j] = m->val[i];
            }
        free(m->key), free(m->val);
        m->key = key, m->val = val, m->cap = cap;
    }
    uint32_t i = hash(k) & (m->cap - 1);
    while (m->key[i] && strcmp(m->key[i], k))
        i = (i + 1) & (m->cap - 1);
    if (!m->key[i])
        m->n++;
    m->key[i] = k;
    m->val[i] = v;
    return QD_OK;
}

static void smap_fini(struct smap *m)
{
    free(m->key), free(m->val);
    memset(m, 0, sizeof *m);
}

/* ---- registry ---- */

static qd_err dev_insert(struct qd_daemon *d, const struct qd_state_device *s, struct dev **out)
{
    if (d->ndev == d->capdev) {
        int cap = d->capdev ? 2 * d->capdev : 1024;
        struct dev **v = realloc(d->devs, cap * sizeof *v);
        if (!v)
            return qd_seterr(QD_ENOMEM, "registry: out of memory");
        d->devs = v, d->capdev = cap;
    }
    struct dev *x = calloc(1, sizeof *x);
    if (!x)
        return qd_seterr(QD_ENOMEM, "registry: out of memory");
    snprintf(x->id, sizeof x->id, "%s", s->id);
    memcpy(x->key, s->key, sizeof x->key);
    x->prof = -1;
    x->flash = s->flash, x->ram = s->ram;
    x->c_flash = x->c_ram = x->c_lat = x->c_energy = x->battery = NAN;
    x->nonce = s->nonce, x->version = s->version, x->acked = s->acked;
    x->blob = -1;
    qd_err e = smap_put(&d->dev_by_id, x->id, d->ndev);
    if (e) {
        free(x);
        return e;
    }
    d->devs[d->ndev++] = x;
    *out = x;
    return QD_OK;
}

static struct dev *dev_find(struct qd_daemon *d, const char *id)
{
    int i = smap_get(&d->dev_by_id, id);
    return i < 0 ? NULL : d->devs[i];
}

static int dev_index(struct qd_daemon *d, const struct dev *x)
{
    return smap_get(&d->dev_by_id, x->id);
}

/* Profiles by name, loaded on first use from the devices directory. */
static int profile_get(struct qd_daemon *d, const char *name)
{
    for (int i = 0; i < d->nprof; i++)
        if (!strcmp(d->prof[i].dev.name, name))
            return i;
    if (!qd_proto_id_ok(name)) {
        qd_seterr(QD_EINVAL, "profile name '%s' is not [A-Za-z0-9._-]{1,63}", name);
        return -1;
    }
    if (d->nprof == MAX_PROFILES) {
        qd_seterr(QD_EINVAL, "more than %d device profiles", MAX_PROFILES);
        return -1;
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.ini", d->cfg.devices_dir, name);
    struct profile *p = &d->prof[d->nprof];
    memset(p, 0, sizeof *p);
    if (access(path, R_OK)) {
        qd_seterr(QD_ENOENT, "no device profile '%s' in %s", name, d->cfg.devices_dir);
        return -1;
    }
    if (qd_device_load(path, &p->dev))
        return -1;
    snprintf(p->dev.name, sizeof p->dev.name, "%s", name);
    return d->nprof++;
}

/* The profile's cost tables (needs the backbone). */
static qd_err profile_tables(struct qd_daemon *d, int i)
{
    struct profile *p = &d->prof[i];
    if (!p->have_t) {
        QD_TRY(qd_decide_prepare(&d->dec, &p->dev, &p->t));
        p->have_t = 1;
    }
    return QD_OK;
}

/* ---- blobs ---- */

/* Under blob_mu. */
static int blob_find_locked(struct qd_daemon *d, const char *policy)
{
    return smap_get(&d->blob_by_policy, policy);
}

/* index: the blob is of the current backbone, so decisions may reuse it by policy. */
static qd_err blob_add_locked(struct qd_daemon *d, const char *sha, const char *policy,
                              const uint8_t *sig, uint8_t *qm, size_t len, int index, int *idx)
{
    /* the array never moves: the loop reads d->blobs[i] without the lock */
    if (d->nblob == MAX_BLOBS)
        return qd_seterr(QD_ENOMEM, "more than %d distinct models", MAX_BLOBS);
    struct blob *b = calloc(1, sizeof *b);
    char *p = strdup(policy);
    if (!b || !p) {
        free(b), free(p);
        return qd_seterr(QD_ENOMEM, "blobs: out of memory");
    }
    snprintf(b->sha, sizeof b->sha, "%s", sha);
    b->policy = p;
    memcpy(b->sig, sig, QD_PROTO_SIG_BYTES);
    b->qm = qm, b->len = len;
    qd_err e = index ? smap_put(&d->blob_by_policy, b->policy, d->nblob) : QD_OK;
    if (e) {
        free(b), free(p);
        return e;
    }
    d->blobs[d->nblob] = b;
    *idx = d->nblob++;
    return QD_OK;
}

/* The blob's bytes (loaded from models/ on first need; loop thread). */
static qd_err blob_bytes(struct qd_daemon *d, int i, const uint8_t **qm, size_t *len)
{
    uv_mutex_lock(&d->blob_mu);
    struct blob *b = d->blobs[i];
    qd_err e = QD_OK;
    if (!b->qm) {
        e = qd_state_blob_read(d->cfg.state_dir, b->sha, &b->qm, &b->len);
        if (!e) {
            char sha[65];
            qd_proto_sha256_hex(b->qm, b->len, sha);
            if (strcmp(sha, b->sha)) {
                free(b->qm);
                b->qm = NULL;
                e = qd_seterr(QD_ECHECKSUM, "models/%s.qm: content hash differs", b->sha);
            }
        }
    }
    *qm = b->qm, *len = b->len;
    uv_mutex_unlock(&d->blob_mu);
    return e;
}

static int blob_by_sha(struct qd_daemon *d, const char *sha)
{
    int r = -1;
    uv_mutex_lock(&d->blob_mu);
    for (int i = 0; i < d->nblob && r < 0; i++)
        if (!strcmp(d->blobs[i]->sha, sha))
            r = i;
    uv_mutex_unlock(&d->blob_mu);
    return r;
}

/* ---- replies ---- */

static void reply_raw(struct qd_daemon *d, struct qd_tp_req *r, const void *b, size_t n)
{
    if (qd_tp_reply(d->rep, r, b, n))
        qd_log(QD_LOG_WARN, "reply: %s", qd_errmsg());
}

static void reply_json(struct qd_daemon *d, struct qd_tp_req *r, cJSON *j)
{
    char *t = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!t) {
        qd_tp_req_drop(r);
        return;
    }
    reply_raw(d, r, t, strlen(t));
    free(t);
}

static void reply_err(struct qd_daemon *d, struct qd_tp_req *r, qd_err e, const char *msg)
{
    d->n_err++;
    d->n_errcode[e < QD_ERR_COUNT ? e : QD_EINVAL]++;
    char *t = qd_proto_error(e, msg);
    qd_log(QD_LOG_DEBUG, "error reply %s: %s", qd_err_name(e), msg ? msg : "");
    reply_raw(d, r, t, strlen(t));
    free(t);
}

/* ---- pushes ---- */

static void pend_add(struct qd_daemon *d, struct dev *x)
{
    if (x->pending)
        return;
    if (d->npend == d->cappend) {
        int cap = d->cappend ? 2 * d->cappend : 256;
        int *v = realloc(d->pend, cap * sizeof *v);
        if (!v)
            return; /* the device can still fetch; logged by the caller's next push */
        d->pend = v, d->cappend = cap;
    }
    d->pend[d->npend++] = dev_index(d, x);
    x->pending = 1;
}

static void push(struct qd_daemon *d, struct dev *x)
{
    if (x->blob < 0)
        return;
    const uint8_t *qm;
    size_t len;
    if (blob_bytes(d, x->blob, &qm, &len)) {
        qd_log(QD_LOG_ERROR, "push %s: %s", x->id, qd_errmsg());
        return;
    }
    /* pacing: PUB drops what a subscriber cannot take at once, so pushes beyond this tick's
     * share of push_rate wait for the next tick (the device stays pending) */
    if (d->push_tokens < (double)len && d->push_tokens < d->cfg.push_rate * 1e6 * TICK_MS / 1e3) {
        x->push_due = now_ms();
        pend_add(d, x);
        return;
    }
    d->push_tokens -= (double)len;
    struct blob *b = d->blobs[x->blob];
    char hdr[4096];
    snprintf(hdr, sizeof hdr,
             "{\"v\":1,\"op\":\"push\",\"device\":\"%s\",\"version\":%lld,\"sha256\":\"%s\","
             "\"size\":%zu,\"policy\":\"%s\",\"backbone\":\"%s\"}",
             x->id, (long long)x->version, b->sha, len, b->policy, d->backbone_id);
    uint8_t *frame;
    size_t n;
    if (qd_proto_push_encode(x->id, hdr, qm, len, b->sig, &frame, &n)) {
        qd_log(QD_LOG_ERROR, "push %s: %s", x->id, qd_errmsg());
        return;
    }
    if (qd_tp_pub(d->pub, frame, n))
        qd_log(QD_LOG_WARN, "push %s: %s", x->id, qd_errmsg());
    free(frame);
    if (x->tries++)
        d->n_repush++;
    else
        d->n_push++;
    /* back off to 8x, with jitter so that re-pushes of one burst do not burst again */
    int back = x->tries < 4 ? 1 << (x->tries - 1) : 8;
    double jitter = 0.75 + 0.5 * randombytes_uniform(1000) / 1000.0;
    x->push_due = now_ms() + (int64_t)(d->cfg.ack_timeout_ms * back * jitter);
    pend_add(d, x);
}

static void on_tick(uv_timer_t *t)
{
    struct qd_daemon *d = t->data;
    int64_t now = now_ms();
    int w = 0;
    double share = d->cfg.push_rate * 1e6 * TICK_MS / 1e3;
    d->push_tokens = fmin(d->push_tokens + share, 2 * share);
    for (int i = 0; i < d->npend; i++) {
        struct dev *x = d->devs[d->pend[i]];
        if (x->acked >= x->version || x->blob < 0) {
            x->pending = 0;
            x->push_due = 0;
            continue;
        }
        d->pend[w++] = d->pend[i];
        if (x->push_due && x->push_due <= now)
            push(d, x); /* still pending: push() does not add it twice */
    }
    d->npend = w;
}

/* ---- jobs on the thread pool ---- */

enum job_kind { JOB_REPORT, JOB_DECIDE };

struct job {
    uv_work_t w;
    struct qd_daemon *d;
    enum job_kind kind;
    struct qd_tp_req req;
    int dev;                         /* registry index (JOB_REPORT) */
    int prof;
    double budget[QD_BUDGET_COUNT], battery;
    char *context;                   /* JSON text of the report */
    int64_t nonce;
    /* results */
    qd_err err;
    char msg[600];
    struct qd_decision r;
    char policy[QD_POLICY_MAX * 6];
    int blob;                        /* index of the blob (found or built) */
    int built;
};

static void budgets(struct qd_daemon *d, const struct dev *x, const struct profile *p,
                    const double *ctx, double *b)
{
    const struct qd_device *v = &p->dev;
    double fl = (x && x->flash > 0 ? x->flash : v->flash) - v->reserved_flash;
    double ram = (x && x->ram > 0 ? x->ram : v->ram) - v->reserved_ram;
    /* ctx: free flash, free RAM, latency ms, energy mJ, battery (NAN: not given) */
    b[QD_BUDGET_FLASH] = isnan(ctx[0]) ? fl : fmin(fl, ctx[0]);
    b[QD_BUDGET_RAM] = isnan(ctx[1]) ? ram : fmin(ram, ctx[1]);
    b[QD_BUDGET_LATENCY] = isnan(ctx[2]) ? INFINITY : ctx[2];
    b[QD_BUDGET_ENERGY] = isnan(ctx[3]) ? INFINITY : ctx[3];
    if (!isnan(ctx[4]))
        b[QD_BUDGET_ENERGY] = fmin(b[QD_BUDGET_ENERGY],
                                   qd_decide_battery_energy(&p->t, ctx[4], d->cfg.battery_floor));
}

static void job_work(uv_work_t *w)
{
    struct job *j = w->data;
    struct qd_daemon *d = j->d;
    j->blob = -1;
    j->err = d->have_gate ? qd_gate_decide(&d->gate, &d->dec, &d->prof[j->prof].t, j->budget,
                                           j->battery, &j->r)
                          : qd_decide(&d->dec, &d->prof[j->prof].t, j->budget, &j->r);
    if (j->err) {
        snprintf(j->msg, sizeof j->msg, "%s", qd_errmsg());
        return;
    }
    qd_policy_format(&j->r.policy, j->policy, sizeof j->policy);
    if (j->kind != JOB_REPORT)
        return;
    uv_mutex_lock(&d->blob_mu);
    j->blob = blob_find_locked(d, j->policy);
    uv_mutex_unlock(&d->blob_mu);
    if (j->blob >= 0)
        return;
    uint8_t *qm;
    size_t len;
    if (d->have_gate) { /* a supernet: BatchNorm recalibrated for the policy (cached) */
        uv_mutex_lock(&d->build_mu);
        const float *st;
        j->err = qd_bn_cache_get(&d->bn, &d->dec.m, &d->dec.nm, &d->dec.g, &d->dec.tr,
                                 &j->r.policy, d->cfg.bn_batches, &st);
        if (!j->err)
            j->err = qd_supernet_build(&d->dec.m, &d->dec.nm, st, &d->dec.tr, d->cfg.calib_n,
                                       &j->r.policy, &qm, &len);
        uv_mutex_unlock(&d->build_mu);
    } else
        j->err = qd_decider_build(&d->dec, &j->r.policy, &qm, &len);
    char sha[65];
    uint8_t sig[QD_PROTO_SIG_BYTES];
    if (!j->err) {
        qd_proto_sha256_hex(qm, len, sha);
        qd_proto_sign(qm, len, d->sign_sk, sig);
        j->err = qd_state_blob_write(d->cfg.state_dir, sha, qm, len);
    }
    if (j->err) {
        snprintf(j->msg, sizeof j->msg, "%s", qd_errmsg());
        return;
    }
    uv_mutex_lock(&d->blob_mu);
    j->blob = blob_find_locked(d, j->policy);
    if (j->blob < 0) {
        j->err = blob_add_locked(d, sha, j->policy, sig, qm, len, 1, &j->blob);
        j->built = !j->err;
        if (j->err) {
            snprintf(j->msg, sizeof j->msg, "%s", qd_errmsg());
            free(qm);
        }
    } else
        free(qm); /* another job built the same policy meanwhile */
    uv_mutex_unlock(&d->blob_mu);
}

static void maybe_finish_stop(struct qd_daemon *d);

static cJSON *costs_json(const struct qd_decision *r)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "flash", r->costs.flash);
    cJSON_AddNumberToObject(c, "ram", r->costs.ram);
    cJSON_AddNumberToObject(c, "latency_ms", r->costs.latency_ms);
    cJSON_AddNumberToObject(c, "energy_mj", r->costs.energy_mj);
    return c;
}

static cJSON *budget_json(const double *b)
{
    cJSON *c = cJSON_CreateObject();
    static const char *const names[] = {"flash", "latency_ms", "energy_mj", "ram"};
    for (int i = 0; i < QD_BUDGET_COUNT; i++)
        if (isfinite(b[i]))
            cJSON_AddNumberToObject(c, names[i], b[i]);
    return c;
}

static void job_done(uv_work_t *w, int status)
{
    struct job *j = w->data;
    struct qd_daemon *d = j->d;
    d->inflight--;
    struct dev *x = j->kind == JOB_REPORT ? d->devs[j->dev] : NULL;
    if (x)
        x->busy = 0;
    if (status == UV_ECANCELED) {
        reply_err(d, &j->req, QD_ENOTREADY, "the daemon is stopping");
        goto out;
    }
    d->n_dec++;
    struct profile *pf = &d->prof[j->prof];
    if (j->r.r.seconds > 0)
        pf->search_us = pf->search_us ? 0.9 * pf->search_us + 0.1 * 1e6 * j->r.r.seconds
                                      : 1e6 * j->r.r.seconds;
    if (j->err) {
        if (x) {
            char *ej = qd_proto_error(j->err, j->msg);
            struct qd_state_decision sd = {.device = x->id, .context = j->context,
                                           .error = ej, .nonce = j->nonce};
            if (qd_state_decision(d->st, &sd))
                qd_log(QD_LOG_ERROR, "state: %s", qd_errmsg());
            free(ej);
        }
        /* EBUDGET: say the smallest achievable figures too */
        if (j->err == QD_EBUDGET) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddNumberToObject(r, "v", 1);
            cJSON_AddFalseToObject(r, "ok");
            cJSON *er = cJSON_AddObjectToObject(r, "error");
            cJSON_AddStringToObject(er, "code", "EBUDGET");
            cJSON_AddStringToObject(er, "message", j->msg);
            cJSON_AddItemToObject(r, "budget", budget_json(j->budget));
            cJSON_AddItemToObject(r, "smallest", budget_json(j->r.r.cost));
            d->n_err++;
            d->n_errcode[QD_EBUDGET]++;
            reply_json(d, &j->req, r);
        } else
            reply_err(d, &j->req, j->err, j->msg);
        goto out;
    }
    cJSON *r = qd_proto_ok();
    cJSON_AddStringToObject(r, "policy", j->policy);
    cJSON_AddItemToObject(r, "costs", costs_json(&j->r));
    cJSON_AddItemToObject(r, "budget", budget_json(j->budget));
    cJSON_AddNumberToObject(r, "predicted_loss", j->r.predicted_loss);
    cJSON_AddNumberToObject(r, "search_us", 1e6 * j->r.r.seconds);
    cJSON_AddBoolToObject(r, "proven", j->r.r.proven); /* false: stopped at the node limit */
    if (!x) {
        reply_json(d, &j->req, r);
        goto out;
    }
    if (j->built)
        d->n_build++;
    else
        d->n_cache_hit++;
    int changed = x->blob != j->blob || x->version == 0;
    struct blob *b = d->blobs[j->blob];
    char *costs = cJSON_PrintUnformatted(cJSON_GetObjectItem(r, "costs"));
    struct qd_state_decision sd = {.device = x->id, .context = j->context, .policy = j->policy,
                                   .costs = costs, .nonce = j->nonce,
                                   .version = changed ? x->version + 1 : 0, .sha = b->sha,
                                   .backbone = d->backbone_id, .size = b->len, .sig = b->sig};
    qd_err e = qd_state_decision(d->st, &sd);
    free(costs);
    if (e) {
        cJSON_Delete(r);
        reply_err(d, &j->req, e, qd_errmsg());
        goto out;
    }
    if (changed) {
        x->version++;
        x->blob = j->blob;
        x->tries = 0;
    }
    cJSON_AddBoolToObject(r, "changed", changed);
    cJSON_AddNumberToObject(r, "version", (double)x->version);
    cJSON_AddStringToObject(r, "sha256", b->sha);
    cJSON_AddNumberToObject(r, "size", (double)b->len);
    reply_json(d, &j->req, r);
    if (changed)
        push(d, x);
out:
    free(j->context);
    free(j);
    maybe_finish_stop(d);
}

/* ---- ops ---- */

enum { F_ADMIN = 1, F_DEVICE = 2, F_AUTH = 4, F_READY = 8, F_NOAUTH = 16 };

struct call {
    struct qd_daemon *d;
    struct qd_tp_req *req;
    cJSON *j;
    struct dev *dev; /* the sender when a device */
    int admin;
    int64_t nonce;
    int deferred;    /* the handler took the request over */
};

typedef qd_err (*op_fn)(struct call *c, cJSON *reply);

static qd_err op_health(struct call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    static const char *const ph[] = {"loading", "training", "sensitivity", "ready",
                                     "failed",  "supernet", "gate"};
    int p = atomic_load(&d->phase);
    cJSON_AddBoolToObject(r, "ready", p == PH_READY);
    cJSON_AddStringToObject(r, "phase", ph[p]);
    if (p == PH_TRAINING || p == PH_SUPERNET) {
        cJSON_AddNumberToObject(r, "epoch", atomic_load(&d->epoch));
        cJSON_AddNumberToObject(r, "epochs", atomic_load(&d->epochs));
    }
    if (p == PH_FAILED)
        cJSON_AddStringToObject(r, "message", d->phase_msg);
    if (p == PH_READY) {
        cJSON_AddStringToObject(r, "backbone", d->backbone_id);
        cJSON_AddStringToObject(r, "model", d->dec.m.family);
        cJSON_AddStringToObject(r, "data", d->dec.ds);
        cJSON_AddNumberToObject(r, "layers", d->dec.g.nq);
        cJSON_AddStringToObject(r, "decider", d->have_gate ? "gate" : "sensitivity");
    }
    cJSON_AddNumberToObject(r, "uptime_s", now_s() - d->started);
    cJSON_AddNumberToObject(r, "devices", d->ndev);
    return QD_OK;
}

static qd_err op_stats(struct call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    op_health(c, r);
    cJSON_AddNumberToObject(r, "requests", (double)d->n_req);
    cJSON_AddNumberToObject(r, "errors", (double)d->n_err);
    cJSON *ec = cJSON_AddObjectToObject(r, "errors_by_code");
    for (int i = 1; i < QD_ERR_COUNT; i++)
        if (d->n_errcode[i])
            cJSON_AddNumberToObject(ec, qd_err_name(i), (double)d->n_errcode[i]);
    cJSON_AddNumberToObject(r, "decisions", (double)d->n_dec);
    cJSON_AddNumberToObject(r, "builds", (double)d->n_build);
    cJSON_AddNumberToObject(r, "blob_cache_hits", (double)d->n_cache_hit);
    cJSON_AddNumberToObject(r, "blobs", d->nblob);
    cJSON_AddNumberToObject(r, "pushes", (double)d->n_push);
    cJSON_AddNumberToObject(r, "repushes", (double)d->n_repush);
    cJSON_AddNumberToObject(r, "acks", (double)d->n_ack);
    int unacked = 0;
    for (int i = 0; i < d->ndev; i++)
        unacked += d->devs[i]->version > d->devs[i]->acked;
    cJSON_AddNumberToObject(r, "unacked", unacked);
    cJSON_AddNumberToObject(r, "inflight", d->inflight);
    return QD_OK;
}

static void dev_json(struct qd_daemon *d, const struct dev *x, cJSON *o)
{
    cJSON_AddStringToObject(o, "id", x->id);
    cJSON_AddStringToObject(o, "profile", x->prof >= 0 ? d->prof[x->prof].dev.name : "");
    cJSON_AddNumberToObject(o, "version", (double)x->version);
    cJSON_AddNumberToObject(o, "acked", (double)x->acked);
    if (x->blob >= 0) {
        cJSON_AddStringToObject(o, "sha256", d->blobs[x->blob]->sha);
        cJSON_AddStringToObject(o, "policy", d->blobs[x->blob]->policy);
    }
    if (!isnan(x->battery))
        cJSON_AddNumberToObject(o, "battery", x->battery);
}

static qd_err op_devices(struct call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    int64_t off = 0, lim = 1000;
    QD_TRY(qd_proto_int(c->j, "offset", 0, INT32_MAX, 0, &off));
    QD_TRY(qd_proto_int(c->j, "limit", 1, 10000, 0, &lim));
    cJSON_AddNumberToObject(r, "total", d->ndev);
    cJSON *a = cJSON_AddArrayToObject(r, "devices");
    for (int64_t i = off; i < d->ndev && i < off + lim; i++) {
        cJSON *o = cJSON_CreateObject();
        dev_json(d, d->devs[i], o);
        cJSON_AddItemToArray(a, o);
    }
    return QD_OK;
}

static qd_err op_device(struct call *c, cJSON *r)
{
    const char *id = NULL;
    QD_TRY(qd_proto_str(c->j, "id", QD_PROTO_MAX_ID, 1, &id));
    struct dev *x = dev_find(c->d, id);
    if (!x)
        return qd_seterr(QD_ENODEV, "no device '%s'", id);
    cJSON *o = cJSON_AddObjectToObject(r, "device");
    dev_json(c->d, x, o);
    return qd_state_device_history(c->d->st, x->id, 20, o);
}

static qd_err op_keys(struct call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    const char *act = NULL, *id = NULL;
    QD_TRY(qd_proto_str(c->j, "action", 16, 1, &act));
    char pk[2 * QD_PROTO_PUB_BYTES + 1];
    qd_proto_hex(d->sign_pk, QD_PROTO_PUB_BYTES, pk);
    cJSON_AddStringToObject(r, "sign_pub", pk);
    if (!strcmp(act, "pub"))
        return QD_OK;
    if (strcmp(act, "add") && strcmp(act, "rotate"))
        return qd_seterr(QD_EINVAL, "field \"action\" must be add, rotate or pub");
    QD_TRY(qd_proto_str(c->j, "id", QD_PROTO_MAX_ID, 1, &id));
    if (!qd_proto_id_ok(id) || !strcmp(id, "admin"))
        return qd_seterr(QD_EINVAL, "device id '%s' is not [A-Za-z0-9._-]{1,63}", id);
    uint8_t key[QD_PROTO_KEY_BYTES];
    randombytes_buf(key, sizeof key);
    struct dev *x = dev_find(d, id);
    if (!strcmp(act, "add")) {
        if (x)
            return qd_seterr(QD_EEXIST, "device '%s' already has a key (use rotate)", id);
        QD_TRY(qd_state_device_add(d->st, id, key));
        struct qd_state_device s = {0};
        snprintf(s.id, sizeof s.id, "%s", id);
        memcpy(s.key, key, sizeof key);
        QD_TRY(dev_insert(d, &s, &x));
    } else {
        if (!x)
            return qd_seterr(QD_ENODEV, "no device '%s'", id);
        QD_TRY(qd_state_device_set_key(d->st, id, key));
        memcpy(x->key, key, sizeof key);
        x->nonce = 0;
    }
    if (qd_state_event(d->st, id, !strcmp(act, "add") ? "key-added" : "key-rotated", NULL))
        qd_log(QD_LOG_WARN, "%s", qd_errmsg());
    char hex[2 * QD_PROTO_KEY_BYTES + 1];
    qd_proto_hex(key, sizeof key, hex);
    cJSON_AddStringToObject(r, "id", id);
    cJSON_AddStringToObject(r, "key", hex);
    sodium_memzero(hex, sizeof hex);
    return QD_OK;
}

static qd_err op_hello(struct call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    struct dev *x = c->dev;
    const char *prof = NULL;
    double fl = 0, ram = 0;
    QD_TRY(qd_proto_str(c->j, "profile", QD_PROTO_MAX_ID, 1, &prof));
    QD_TRY(qd_proto_num(c->j, "flash", 1, 1e12, 0, &fl));
    QD_TRY(qd_proto_num(c->j, "ram", 1, 1e12, 0, &ram));
    int p = profile_get(d, prof);
    if (p < 0)
        return qd_wraperr(QD_EINVAL, "hello: ", NULL);
    QD_TRY(qd_state_device_hello(d->st, x->id, prof, fl, ram, c->nonce));
    x->prof = p;
    x->flash = fl, x->ram = ram;
    cJSON_AddNumberToObject(r, "version", (double)x->version);
    cJSON_AddNumberToObject(r, "acked", (double)x->acked);
    if (x->blob >= 0)
        cJSON_AddStringToObject(r, "sha256", d->blobs[x->blob]->sha);
    cJSON_AddNumberToObject(r, "ack_timeout_ms", d->cfg.ack_timeout_ms);
    /* a device that comes back without the current version gets it pushed again now */
    if (x->version > x->acked && x->blob >= 0) {
        x->push_due = now_ms();
        pend_add(d, x);
    }
    return QD_OK;
}

/* Context fields of report and decide, into ctx[5] (NAN: not given). */
static qd_err read_context(const cJSON *j, double *ctx)
{
    for (int i = 0; i < QD_PROTO_CTX_FIELDS; i++) {
        double v = NAN;
        QD_TRY(qd_proto_num(j, qd_proto_ctx_field[i], 0, qd_proto_ctx_max[i], 0, &v));
        ctx[i] = v;
    }
    return QD_OK;
}

static qd_err queue_job(struct call *c, struct job *j)
{
    j->w.data = j;
    j->d = c->d;
    j->req = *c->req;
    int rc = uv_queue_work(c->d->loop, &j->w, job_work, job_done);
    if (rc) {
        free(j->context);
        free(j);
        return qd_seterr(QD_EIO, "queue: %s", uv_strerror(rc));
    }
    c->d->inflight++;
    c->deferred = 1;
    return QD_OK;
}

static qd_err op_report(struct call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    struct dev *x = c->dev;
    if (x->prof < 0)
        return qd_seterr(QD_EINVAL, "device '%s' has not said hello (no profile)", x->id);
    if (x->busy)
        return qd_seterr(QD_EINVAL, "device '%s' has a decision in flight; report again after "
                                    "its reply", x->id);
    double ctx[5];
    QD_TRY(read_context(c->j, ctx));
    QD_TRY(profile_tables(d, x->prof));
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return qd_seterr(QD_ENOMEM, "out of memory");
    j->kind = JOB_REPORT;
    j->battery = ctx[4];
    j->dev = dev_index(d, x);
    j->prof = x->prof;
    j->nonce = c->nonce;
    budgets(d, x, &d->prof[x->prof], ctx, j->budget);
    cJSON *cj = cJSON_CreateObject();
    for (int i = 0; i < QD_PROTO_CTX_FIELDS; i++)
        if (!isnan(ctx[i]))
            cJSON_AddNumberToObject(cj, qd_proto_ctx_field[i], ctx[i]);
    j->context = cJSON_PrintUnformatted(cj);
    cJSON_Delete(cj);
    QD_TRY(queue_job(c, j));
    memcpy(&x->c_flash, ctx, sizeof ctx);
    x->busy = 1;
    (void)r;
    return QD_OK;
}

static qd_err op_decide(struct call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    const char *prof = NULL, *id = NULL;
    QD_TRY(qd_proto_str(c->j, "profile", QD_PROTO_MAX_ID, 0, &prof));
    QD_TRY(qd_proto_str(c->j, "device", QD_PROTO_MAX_ID, 0, &id));
    struct dev *x = NULL;
    if (id && !(x = dev_find(d, id)))
        return qd_seterr(QD_ENODEV, "no device '%s'", id);
    if (!x && c->dev && !prof)
        x = c->dev;
    if (x && !c->admin && x != c->dev)
        return qd_seterr(QD_EAUTH, "a device may only decide for itself");
    int p = prof ? profile_get(d, prof) : x ? x->prof : -1;
    if (p < 0)
        return prof ? qd_wraperr(QD_EINVAL, "decide: ", NULL)
                    : qd_seterr(QD_EINVAL, "decide needs \"profile\" or a device with one");
    double ctx[5];
    QD_TRY(read_context(c->j, ctx));
    QD_TRY(profile_tables(d, p));
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return qd_seterr(QD_ENOMEM, "out of memory");
    j->kind = JOB_DECIDE;
    j->battery = ctx[4];
    j->prof = p;
    budgets(d, x, &d->prof[p], ctx, j->budget);
    (void)r;
    /* A dry run builds nothing: when this profile's searches have been quick, answering on
     * the loop saves two thread hand-offs (measured: 8.3k -> 11.8k decide/s with 4 clients);
     * slow searches (large models) still go to the pool and never stall the loop. */
    if (d->prof[p].search_us > 0 && d->prof[p].search_us < INLINE_SEARCH_US) {
        j->w.data = j;
        j->d = d;
        j->req = *c->req;
        d->inflight++;
        c->deferred = 1;
        job_work(&j->w);
        job_done(&j->w, 0);
        return QD_OK;
    }
    return queue_job(c, j);
}

static qd_err op_fetch(struct call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    struct dev *x = c->dev;
    int64_t v = x->version;
    QD_TRY(qd_proto_int(c->j, "version", 1, INT32_MAX, 0, &v));
    if (v == 0)
        return qd_seterr(QD_ENOENT, "device '%s' has no model yet", x->id);
    char sha[65];
    QD_TRY(qd_state_version_sha(d->st, x->id, v, sha));
    int bi = blob_by_sha(d, sha);
    if (bi < 0) {
        uint8_t sig[QD_PROTO_SIG_BYTES];
        char policy[QD_POLICY_MAX * 6];
        QD_TRY(qd_state_blob_meta(d->st, sha, sig, policy, sizeof policy));
        uv_mutex_lock(&d->blob_mu);
        qd_err e = blob_add_locked(d, sha, policy, sig, NULL, 0, 0, &bi);
        uv_mutex_unlock(&d->blob_mu);
        QD_TRY(e);
    }
    const uint8_t *qm;
    size_t len;
    QD_TRY(blob_bytes(d, bi, &qm, &len));
    uint8_t *out = malloc(len + QD_PROTO_SIG_BYTES);
    if (!out)
        return qd_seterr(QD_ENOMEM, "fetch: out of memory");
    memcpy(out, qm, len);
    memcpy(out + len, d->blobs[bi]->sig, QD_PROTO_SIG_BYTES);
    reply_raw(d, c->req, out, len + QD_PROTO_SIG_BYTES);
    free(out);
    c->deferred = 1; /* replied */
    (void)r;
    return QD_OK;
}

static qd_err op_ack(struct call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    struct dev *x = c->dev;
    int64_t v = 0;
    const char *sha = NULL;
    QD_TRY(qd_proto_int(c->j, "version", 1, INT32_MAX, 1, &v));
    QD_TRY(qd_proto_str(c->j, "sha256", 64, 1, &sha));
    char want[65];
    QD_TRY(qd_state_version_sha(d->st, x->id, v, want));
    if (strcmp(want, sha))
        return qd_seterr(QD_ECHECKSUM, "version %lld of '%s' has sha256 %s, not %s",
                         (long long)v, x->id, want, sha);
    QD_TRY(qd_state_ack(d->st, x->id, v, c->nonce));
    if (v > x->acked)
        x->acked = v;
    d->n_ack++;
    cJSON_AddNumberToObject(r, "version", (double)x->version);
    cJSON_AddNumberToObject(r, "acked", (double)x->acked);
    return QD_OK;
}

static const struct op {
    const char *name;
    op_fn fn;
    int flags;
} OPS[] = {
    {"health", op_health, F_NOAUTH},
    {"stats", op_stats, F_ADMIN},
    {"devices", op_devices, F_ADMIN},
    {"device", op_device, F_ADMIN},
    {"keys", op_keys, F_ADMIN},
    {"hello", op_hello, F_DEVICE | F_READY},
    {"report", op_report, F_DEVICE | F_READY},
    {"decide", op_decide, F_AUTH | F_READY},
    {"fetch", op_fetch, F_DEVICE | F_READY},
    {"ack", op_ack, F_DEVICE | F_READY},
};

/* MAC and nonce; sets c->dev / c->admin. */
static qd_err authenticate(struct call *c, const struct op *op, const char *msg, size_t len)
{
    struct qd_daemon *d = c->d;
    const char *from = NULL;
    QD_TRY(qd_proto_str(c->j, "from", QD_PROTO_MAX_ID, 1, &from));
    int64_t nonce = 0;
    QD_TRY(qd_proto_int(c->j, "nonce", 1, INT64_C(1) << 53, 1, &nonce));
    int admin = !strcmp(from, "admin");
    struct dev *x = admin ? NULL : dev_find(d, from);
    if (!admin && !x)
        return qd_seterr(QD_EAUTH, "unknown sender '%s'", from);
    if ((op->flags & F_ADMIN) && !admin)
        return qd_seterr(QD_EAUTH, "op '%s' needs the admin key", op->name);
    if ((op->flags & F_DEVICE) && admin)
        return qd_seterr(QD_EINVAL, "op '%s' is sent by a device, not by admin", op->name);
    QD_TRY(qd_proto_verify(msg, len, admin ? d->admin_key : x->key));
    int64_t last = admin ? d->admin_nonce : x->nonce, now = qd_proto_now_us();
    if (nonce <= last)
        return qd_seterr(QD_EREPLAY, "nonce %lld is not above the last accepted (%lld)",
                         (long long)nonce, (long long)last);
    if (llabs(nonce - now) > QD_PROTO_NONCE_WINDOW_US)
        return qd_seterr(QD_EREPLAY, "nonce %lld is more than %d s from the daemon's clock",
                         (long long)nonce, (int)(QD_PROTO_NONCE_WINDOW_US / 1000000));
    if (admin)
        d->admin_nonce = nonce;
    else
        x->nonce = nonce;
    c->admin = admin;
    c->dev = x;
    c->nonce = nonce;
    return QD_OK;
}

static void handle(struct qd_daemon *d, struct qd_tp_req *req)
{
    d->n_req++;
    const char *msg = req->body;
    size_t len = req->len;
    struct call c = {.d = d, .req = req};
    qd_err e = qd_proto_parse(msg, len, (size_t)d->cfg.max_message, &c.j);
    if (e) {
        reply_err(d, req, e, qd_errmsg());
        return;
    }
    const char *name = cJSON_GetObjectItemCaseSensitive(c.j, "op")->valuestring;
    const struct op *op = NULL;
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++)
        if (!strcmp(OPS[i].name, name))
            op = &OPS[i];
    if (!op) {
        char m[128];
        snprintf(m, sizeof m, "unknown op '%.40s'", name);
        reply_err(d, req, QD_EOP, m);
        cJSON_Delete(c.j);
        return;
    }
    if (!(op->flags & F_NOAUTH) && (e = authenticate(&c, op, msg, len))) {
        reply_err(d, req, e, qd_errmsg());
        cJSON_Delete(c.j);
        return;
    }
    if ((op->flags & F_READY) && atomic_load(&d->phase) != PH_READY) {
        char m[700];
        snprintf(m, sizeof m, "the backbone is not ready (%s); try again later",
                 atomic_load(&d->phase) == PH_FAILED ? d->phase_msg : "training or loading");
        reply_err(d, req, QD_ENOTREADY, m);
        cJSON_Delete(c.j);
        return;
    }
    if (d->stopping) {
        reply_err(d, req, QD_ENOTREADY, "the daemon is stopping");
        cJSON_Delete(c.j);
        return;
    }
    cJSON *r = qd_proto_ok();
    e = op->fn(&c, r);
    if (e) {
        cJSON_Delete(r);
        if (!c.deferred)
            reply_err(d, req, e, qd_errmsg());
    } else if (!c.deferred)
        reply_json(d, req, r);
    else
        cJSON_Delete(r);
    cJSON_Delete(c.j);
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    struct qd_daemon *d = p->data;
    if (status < 0) {
        qd_log(QD_LOG_ERROR, "poll: %s", uv_strerror(status));
        return;
    }
    for (int n = 0; n < 4096 && !d->stopping; n++) {
        struct qd_tp_req r;
        qd_err e = qd_tp_recv_req(d->rep, &r);
        if (e == QD_ENOENT)
            break;
        if (e) {
            qd_log(QD_LOG_ERROR, "%s", qd_errmsg());
            break;
        }
        handle(d, &r); /* replies, or hands r over to a job that will */
    }
}

/* ---- backbone: load, or train on first start ---- */

static void on_epoch(const struct qd_epoch_stats *s, void *ctx)
{
    struct qd_daemon *d = ctx;
    atomic_store(&d->epoch, s->epoch);
    qd_log(QD_LOG_INFO, "backbone: epoch %d/%d loss %.4f train %.2f%%", s->epoch, s->epochs,
           s->loss, 100 * s->train_acc);
}

static qd_err train_backbone(struct qd_daemon *d, const char *out)
{
    struct qd_config *c = &d->cfg;
    struct qd_dataset tr = {0};
    struct qd_model m = {0};
    char *spec = NULL;
    QD_TRY(qd_data_load(c->data_dir, c->data, 1, &tr));
    if (c->train_subset && c->train_subset < tr.n)
        tr.n = c->train_subset;
    struct qd_zoo_opts zo = {0};
    qd_err e = qd_zoo_spec(c->model, tr.c, tr.h, tr.w, 10, &zo, &spec);
    if (!e)
        e = qd_model_parse(spec, &m);
    free(spec);
    if (!e) {
        qd_model_init_params(&m, 1);
        struct qd_train_opts o;
        qd_train_opts_default(&o, tr.name);
        o.epochs = c->train_epochs;
        o.threads = c->threads;
        atomic_store(&d->epochs, o.epochs);
        struct qd_norm nm;
        qd_norm_fit(&tr, &nm);
        qd_log(QD_LOG_INFO, "backbone: training %s on %s (%d images, %d epochs)", c->model,
               tr.name, tr.n, o.epochs);
        e = qd_train(&m, &tr, NULL, &nm, &o, on_epoch, d);
        if (!e)
            e = qd_ckpt_save(out, &m, tr.name, &nm);
        qd_model_fini(&m);
    }
    qd_dataset_fini(&tr);
    return e;
}

/* The embedded default's supernet: the backbone fine-tuned over sampled policies. */
static qd_err train_supernet(struct qd_daemon *d, const char *from, const char *out)
{
    struct qd_model m;
    struct qd_norm nm;
    char ds[32];
    QD_TRY(qd_ckpt_load(from, &m, ds, &nm));
    struct qd_dataset tr = {0};
    qd_err e = qd_data_load(d->cfg.data_dir, ds, 1, &tr);
    if (!e) {
        if (d->cfg.train_subset && d->cfg.train_subset < tr.n)
            tr.n = d->cfg.train_subset;
        atomic_store(&d->epoch, 0);
        atomic_store(&d->epochs, d->cfg.supernet_epochs);
        struct qd_supernet_opts o = {.epochs = d->cfg.supernet_epochs, .threads = d->cfg.threads,
                                     .seed = 3, .sandwich = d->cfg.supernet_sandwich,
                                     .kd = (float)d->cfg.supernet_kd,
                                     .kd_self = d->cfg.supernet_kd_self,
                                     .bn_sets = d->cfg.supernet_bn_sets};
        qd_log(QD_LOG_INFO, "supernet: fine-tuning %s over sampled policies (%d epochs)",
               m.family, o.epochs);
        e = qd_supernet_train(&m, &nm, &tr, NULL, &o, on_epoch, d);
        if (!e)
            e = qd_ckpt_save(out, &m, tr.name, &nm);
        qd_dataset_fini(&tr);
    }
    qd_model_fini(&m);
    return e;
}

static void boot_work(uv_work_t *w)
{
    struct qd_daemon *d = w->data;
    char ckpt[1200], gate[1200] = "";
    qd_kernels_init(d->cfg.threads);
    qd_err e = QD_OK;
    if (d->cfg.ckpt[0]) { /* artifacts named in the config */
        snprintf(ckpt, sizeof ckpt, "%s", d->cfg.ckpt);
        snprintf(gate, sizeof gate, "%s", d->cfg.gate);
    } else { /* the embedded default, trained on the first start: backbone, supernet, gate */
        char base[1200];
        snprintf(base, sizeof base, "%s/backbone.qdck", d->cfg.state_dir);
        snprintf(ckpt, sizeof ckpt, "%s", base);
        if (access(base, R_OK)) {
            atomic_store(&d->phase, PH_TRAINING);
            e = train_backbone(d, base);
        }
        if (!e && d->cfg.supernet_epochs > 0) {
            snprintf(ckpt, sizeof ckpt, "%s/supernet.qdck", d->cfg.state_dir);
            if (access(ckpt, R_OK)) {
                atomic_store(&d->phase, PH_SUPERNET);
                e = train_supernet(d, base, ckpt);
            }
        }
        if (!e && d->cfg.gate_steps > 0)
            snprintf(gate, sizeof gate, "%s/backbone.gate", d->cfg.state_dir);
    }
    if (!e) {
        atomic_store(&d->phase, PH_SENSITIVITY);
        struct qd_decider_opts o = {.ckpt = ckpt, .dir = d->cfg.data_dir,
                                    .sens_n = d->cfg.sens_n, .calib_n = d->cfg.calib_n,
                                    .quiet = 1, .keep_train = gate[0] != 0};
        e = qd_decider_load(&o, &d->dec);
    }
    if (!e && gate[0] && !d->cfg.ckpt[0] && access(gate, R_OK)) {
        atomic_store(&d->phase, PH_GATE);
        struct qd_gate_train_opts o = {.steps = d->cfg.gate_steps, .threads = d->cfg.threads,
                                       .probe = d->cfg.gate_probe,
                                       .seed = 5, .profiles = qd_device_parts,
                                       .nprofiles = QD_DEVICE_PARTS};
        setenv("QD_DEVICE_DIR", d->cfg.devices_dir, 1);
        qd_log(QD_LOG_INFO, "gate: training over sampled contexts (%d steps)", o.steps);
        struct qd_gate g;
        e = qd_gate_train(&g, &d->dec, &o);
        if (!e) {
            snprintf(g.ckpt, sizeof g.ckpt, "%.255s", ckpt);
            e = qd_gate_save(&g, gate);
            qd_gate_fini(&g);
        }
    }
    if (!e && gate[0]) {
        e = qd_gate_load(gate, &d->gate);
        if (!e && d->gate.L != d->dec.g.nq)
            e = qd_seterr(QD_EINVAL, "%s has %d layers, the backbone %d", gate, d->gate.L,
                          d->dec.g.nq);
        if (!e && strcmp(d->gate.backbone, d->dec.md5))
            qd_log(QD_LOG_WARN, "%s was trained for another supernet (%s, not %s)", gate,
                   d->gate.backbone, d->dec.md5);
        char path[1300];
        snprintf(path, sizeof path, "%s.bn", ckpt);
        if (!e)
            e = qd_bn_cache_open(&d->bn, path, d->dec.m.nstat, d->dec.md5);
        d->have_gate = !e;
    }
    if (e)
        snprintf(d->phase_msg, sizeof d->phase_msg, "%s: %s", qd_err_name(e), qd_errmsg());
    else
        snprintf(d->backbone_id, sizeof d->backbone_id, "%s", d->dec.md5);
}

static qd_err restore_blob(void *ctx, const char *sha, const char *policy, const uint8_t *sig)
{
    struct qd_daemon *d = ctx;
    int i = blob_by_sha(d, sha);
    qd_err e = QD_OK;
    uv_mutex_lock(&d->blob_mu);
    if (blob_find_locked(d, policy) < 0)
        e = i >= 0 ? smap_put(&d->blob_by_policy, d->blobs[i]->policy, i)
                   : blob_add_locked(d, sha, policy, sig, NULL, 0, 1, &i);
    uv_mutex_unlock(&d->blob_mu);
    return e;
}

static void boot_done(uv_work_t *w, int status)
{
    struct qd_daemon *d = w->data;
    d->boot_running = 0;
    if (d->phase_msg[0]) {
        atomic_store(&d->phase, PH_FAILED);
        qd_log(QD_LOG_ERROR, "backbone: %s", d->phase_msg);
        qd_state_event(d->st, NULL, "backbone-failed", d->phase_msg);
        maybe_finish_stop(d);
        return;
    }
    /* blobs of this backbone, so identical policies keep their blob across restarts */
    if (qd_state_blobs_load(d->st, d->backbone_id, restore_blob, d))
        qd_log(QD_LOG_WARN, "%s", qd_errmsg());
    atomic_store(&d->phase, PH_READY);
    qd_state_event(d->st, NULL, "backbone-ready", d->backbone_id);
    qd_log(QD_LOG_INFO, "backbone ready: %s on %s, %d layers (%s); decisions by the %s",
           d->dec.m.family, d->dec.ds, d->dec.g.nq, d->backbone_id,
           d->have_gate ? "gate" : "sensitivity search");
    sd_notify_msg("STATUS=ready");
    maybe_finish_stop(d);
}

/* ---- start, reload, stop ---- */

static qd_err key_file(const char *path, uint8_t *buf, size_t n, int sign)
{
    uint8_t *b;
    size_t len;
    if (!qd_file_read(path, &b, &len)) {
        char hex[2 * QD_PROTO_SECRET_BYTES + 2];
        snprintf(hex, sizeof hex, "%.*s", (int)(len < sizeof hex - 1 ? len : sizeof hex - 1),
                 (char *)b);
        hex[strcspn(hex, "\r\n ")] = 0;
        free(b);
        qd_err e = qd_proto_unhex(hex, buf, n);
        return e ? qd_wraperr(e, path, NULL) : QD_OK;
    }
    if (sign) {
        uint8_t pk[QD_PROTO_PUB_BYTES];
        crypto_sign_keypair(pk, buf);
    } else
        randombytes_buf(buf, n);
    char hex[2 * QD_PROTO_SECRET_BYTES + 2];
    qd_proto_hex(buf, n, hex);
    strcat(hex, "\n");
    mode_t old = umask(077);
    qd_err e = qd_file_write_atomic(path, hex, strlen(hex));
    umask(old);
    sodium_memzero(hex, sizeof hex);
    if (!e)
        qd_log(QD_LOG_INFO, "created %s", path);
    return e;
}

static qd_err restore_device(void *ctx, const struct qd_state_device *s)
{
    struct qd_daemon *d = ctx;
    struct dev *x;
    QD_TRY(dev_insert(d, s, &x));
    if (s->profile[0]) {
        int p = profile_get(d, s->profile);
        if (p >= 0)
            x->prof = p;
        else
            qd_log(QD_LOG_WARN, "device %s: %s", s->id, qd_errmsg());
    }
    if (s->context) {
        cJSON *j = cJSON_Parse(s->context);
        double ctx5[5];
        if (j && !read_context(j, ctx5))
            memcpy(&x->c_flash, ctx5, sizeof ctx5);
        cJSON_Delete(j);
    }
    if (s->sha[0] && s->version > 0) {
        int bi = blob_by_sha(d, s->sha);
        if (bi < 0) {
            uint8_t sig[QD_PROTO_SIG_BYTES];
            char policy[QD_POLICY_MAX * 6];
            if (!qd_state_blob_meta(d->st, s->sha, sig, policy, sizeof policy)) {
                uv_mutex_lock(&d->blob_mu);
                if (blob_add_locked(d, s->sha, policy, sig, NULL, 0, 0, &bi))
                    bi = -1;
                uv_mutex_unlock(&d->blob_mu);
            }
        }
        x->blob = bi;
        if (x->version > x->acked && bi >= 0) {
            x->push_due = now_ms(); /* unacked at the last stop: push again */
            pend_add(d, x);
        }
    }
    return QD_OK;
}

static void close_cb(uv_handle_t *h)
{
    (void)h;
}

static void shutdown_loop(struct qd_daemon *d)
{
    if (d->closed)
        return;
    d->closed = 1;
    uv_close((uv_handle_t *)&d->poll, close_cb);
    uv_close((uv_handle_t *)&d->tick, close_cb);
    uv_close((uv_handle_t *)&d->watchdog, close_cb);
    uv_close((uv_handle_t *)&d->sigterm, close_cb);
    uv_close((uv_handle_t *)&d->sigint, close_cb);
    uv_close((uv_handle_t *)&d->sighup, close_cb);
}

static void maybe_finish_stop(struct qd_daemon *d)
{
    if (!d->stopping || d->inflight > 0)
        return;
    if (d->boot_running) {
        uv_stop(d->loop); /* cannot wait for a training run: main exits without it */
        return;
    }
    shutdown_loop(d);
}

static void on_stop(uv_signal_t *s, int sig)
{
    struct qd_daemon *d = s->data;
    qd_log(QD_LOG_INFO, "%s: stopping after %d in-flight replies", sig == SIGTERM ? "SIGTERM" :
           "SIGINT", d->inflight);
    sd_notify_msg("STOPPING=1");
    d->stopping = 1;
    uv_poll_stop(&d->poll);
    maybe_finish_stop(d);
}

static void set_log_level(const char *l)
{
    qd_log_threshold = !strcmp(l, "error") ? QD_LOG_ERROR
                       : !strcmp(l, "warn") ? QD_LOG_WARN
                       : !strcmp(l, "debug") ? QD_LOG_DEBUG
                                             : QD_LOG_INFO;
}

static void on_hup(uv_signal_t *s, int sig)
{
    struct qd_daemon *d = s->data;
    sd_notify_msg("RELOADING=1");
    struct qd_config c;
    qd_config_defaults(&c);
    qd_err e = d->cfg_path ? qd_config_load_file(&c, d->cfg_path) : QD_OK;
    if (!e)
        e = qd_config_apply_flags(&c, d->argc, d->argv);
    if (e)
        qd_log(QD_LOG_ERROR, "SIGHUP: config not reloaded: %s", qd_errmsg());
    else {
        char keys[512];
        qd_config_restart_keys(&d->cfg, &c, keys, sizeof keys);
        if (keys[0])
            qd_log(QD_LOG_WARN, "SIGHUP: %s changed; they take effect at the next start", keys);
        d->cfg.ack_timeout_ms = c.ack_timeout_ms;
        d->cfg.max_message = c.max_message;
        d->cfg.battery_floor = c.battery_floor;
        d->cfg.push_rate = c.push_rate;
        snprintf(d->cfg.log_level, sizeof d->cfg.log_level, "%s", c.log_level);
        set_log_level(c.log_level);
        qd_log(QD_LOG_INFO, "SIGHUP: configuration reloaded");
    }
    sd_notify_msg("READY=1");
    (void)sig;
}

static void on_watchdog(uv_timer_t *t)
{
    sd_notify_msg("WATCHDOG=1");
}

static int run(struct qd_daemon *d)
{
    struct qd_config *c = &d->cfg;
    char path[1200];
    qd_err e = qd_file_mkdirs(c->state_dir);
    if (!e)
        e = qd_state_open(c->state_dir, &d->st);
    if (!e) {
        snprintf(path, sizeof path, "%s/admin.key", c->state_dir);
        e = key_file(path, d->admin_key, QD_PROTO_KEY_BYTES, 0);
    }
    if (!e) {
        snprintf(path, sizeof path, "%s/sign.key", c->state_dir);
        e = key_file(path, d->sign_sk, QD_PROTO_SECRET_BYTES, 1);
        crypto_sign_ed25519_sk_to_pk(d->sign_pk, d->sign_sk);
    }
    if (!e)
        e = qd_state_devices_load(d->st, restore_device, d);
    if (e) {
        fprintf(stderr, "quantd: %s\n", qd_errmsg());
        return 1;
    }
    if ((e = qd_tp_rep_bind(c->control, &d->rep)) || (e = qd_tp_pub_bind(c->push, &d->pub))) {
        fprintf(stderr, "quantd: %s\n", qd_errmsg());
        return 1;
    }
    d->loop = uv_default_loop();
    uv_poll_init(d->loop, &d->poll, qd_tp_rcvfd(d->rep));
    d->poll.data = d;
    uv_poll_start(&d->poll, UV_READABLE, on_readable);
    uv_timer_init(d->loop, &d->tick);
    d->tick.data = d;
    uv_timer_start(&d->tick, on_tick, TICK_MS, TICK_MS);
    d->push_tokens = c->push_rate * 1e6 * TICK_MS / 1e3;
    uv_timer_init(d->loop, &d->watchdog);
    const char *wd = getenv("WATCHDOG_USEC");
    if (wd && atoll(wd) > 0)
        uv_timer_start(&d->watchdog, on_watchdog, (uint64_t)(atoll(wd) / 2000),
                       (uint64_t)(atoll(wd) / 2000));
    uv_signal_init(d->loop, &d->sigterm);
    uv_signal_init(d->loop, &d->sigint);
    uv_signal_init(d->loop, &d->sighup);
    d->sigterm.data = d->sigint.data = d->sighup.data = d;
    uv_signal_start(&d->sigterm, on_stop, SIGTERM);
    uv_signal_start(&d->sigint, on_stop, SIGINT);
    uv_signal_start(&d->sighup, on_hup, SIGHUP);

    static uv_work_t boot;
    boot.data = d;
    d->boot_running = 1;
    uv_queue_work(d->loop, &boot, boot_work, boot_done);
    qd_log(QD_LOG_INFO, "quantd: control %s, push %s, state %s, %d devices", c->control, c->push,
           c->state_dir, d->ndev);
    sd_notify_msg("READY=1\nSTATUS=serving; loading the backbone");
    uv_run(d->loop, UV_RUN_DEFAULT);
    int training = d->boot_running;
    if (!training && uv_loop_close(d->loop))
        qd_log(QD_LOG_WARN, "loop closed with handles open");
    qd_tp_close(d->rep);
    qd_tp_close(d->pub);
    qd_state_close(d->st);
    d->st = NULL;
    qd_log(QD_LOG_INFO, "quantd: stopped");
    if (training) {
        fflush(NULL);
        _exit(0); /* the training thread cannot be joined in reasonable time */
    }
    return 0;
}

static void fini(struct qd_daemon *d)
{
    for (int i = 0; i < d->ndev; i++)
        free(d->devs[i]);
    free(d->devs);
    free(d->pend);
    smap_fini(&d->dev_by_id);
    for (int i = 0; i < d->nblob; i++) {
        free(d->blobs[i]->policy);
        free(d->blobs[i]->qm);
        free(d->blobs[i]);
    }
    free(d->blobs);
    smap_fini(&d->blob_by_policy);
    for (int i = 0; i < d->nprof; i++)
        if (d->prof[i].have_t)
            qd_decide_tables_fini(&d->prof[i].t);
    if (atomic_load(&d->phase) == PH_READY)
        qd_decider_fini(&d->dec);
    if (d->have_gate) {
        qd_gate_fini(&d->gate);
        qd_bn_cache_fini(&d->bn);
    }
    uv_mutex_destroy(&d->build_mu);
    sodium_memzero(d->sign_sk, sizeof d->sign_sk);
    sodium_memzero(d->admin_key, sizeof d->admin_key);
    uv_mutex_destroy(&d->blob_mu);
}

int main(int argc, char **argv)
{
    static struct qd_daemon d;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            qd_config_usage(stdout);
            return 0;
        }
    qd_config_defaults(&d.cfg);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-c")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "quantd: -c needs a file\n");
                return 2;
            }
            d.cfg_path = argv[i + 1];
        }
    qd_err e = d.cfg_path ? qd_config_load_file(&d.cfg, d.cfg_path) : QD_OK;
    if (!e)
        e = qd_config_apply_flags(&d.cfg, argc, argv);
    if (e) {
        fprintf(stderr, "quantd: %s\n", qd_errmsg());
        return 2;
    }
    d.argc = argc, d.argv = argv;
    set_log_level(d.cfg.log_level);
    if (sodium_init() < 0) {
        fprintf(stderr, "quantd: libsodium failed to initialize\n");
        return 1;
    }
    char th[16];
    snprintf(th, sizeof th, "%d", d.cfg.threads);
    setenv("UV_THREADPOOL_SIZE", th, 1);
    signal(SIGPIPE, SIG_IGN);
    uv_mutex_init(&d.blob_mu);
    uv_mutex_init(&d.build_mu);
    if (!(d.blobs = calloc(MAX_BLOBS, sizeof *d.blobs))) {
        fprintf(stderr, "quantd: out of memory\n");
        return 1;
    }
    d.started = now_s();
    atomic_store(&d.phase, PH_LOADING);
    int rc = run(&d);
    fini(&d);
    return rc;
}

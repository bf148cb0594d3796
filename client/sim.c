/* Simulated devices (see sim.h). One REQ socket and one SUB socket serve all of them; each
 * device has its own key and nonce, so to the daemon they are N devices. */
#include "client/sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <time.h>
#include <unistd.h>

#include "client/agent.h"
#include "proto/transport.h"
#include "lab/labrun.h"
#include "policy/device.h"
#include "proto/pack.h"
#include "quant/rtsize.h"

double qd_sim_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static cJSON *simple(const char *name)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "op", name);
    return j;
}

qd_err qd_sim_open(struct qd_sim *s, const struct qd_sim_opts *o)
{
    memset(s, 0, sizeof *s);
    s->o = *o;
    if (!s->o.profiles) {
        s->o.profiles = qd_device_parts;
        s->o.nprofiles = QD_DEVICE_PARTS;
    }
    if (!s->o.prefix)
        s->o.prefix = "sim";
    QD_TRY(qd_client_open(&s->c, o->control, o->push, o->timeout_ms ? o->timeout_ms : 10000));
    qd_err e = qd_ident_init(&s->admin, "admin", o->admin_key);
    /* wait for the backbone (training on a first start), saying how far it got */
    double t0 = qd_sim_now(), last = -1e9;
    while (!e) {
        cJSON *r = NULL;
        e = qd_client_call(&s->c, NULL, simple("health"), &r, NULL, NULL);
        if (e)
            break;
        cJSON *ready = cJSON_GetObjectItem(r, "ready"), *ph = cJSON_GetObjectItem(r, "phase");
        if (cJSON_IsTrue(ready)) {
            const char *d = NULL;
            qd_proto_str(r, "data", 31, 0, &d);
            snprintf(s->data, sizeof s->data, "%s", d ? d : "");
            cJSON_Delete(r);
            break;
        }
        if (cJSON_IsString(ph) && !strcmp(ph->valuestring, "failed")) {
            cJSON *m = cJSON_GetObjectItem(r, "message");
            e = qd_seterr(QD_ENOTREADY, "quantd's backbone failed: %s",
                          cJSON_IsString(m) ? m->valuestring : "?");
        } else if (!o->quiet && qd_sim_now() - last > 10) {
            cJSON *ep = cJSON_GetObjectItem(r, "epoch"), *eps = cJSON_GetObjectItem(r, "epochs");
            fprintf(stderr, "quantd: %s%s", cJSON_IsString(ph) ? ph->valuestring : "?",
                    cJSON_IsNumber(ep) ? "" : "\n");
            if (cJSON_IsNumber(ep))
                fprintf(stderr, " (epoch %d of %d done)\n", ep->valueint,
                        cJSON_IsNumber(eps) ? eps->valueint : 0);
            last = qd_sim_now();
        }
        cJSON_Delete(r);
        if (!e)
            usleep(200000);
        (void)t0;
    }
    if (!e)
        e = qd_client_sign_pub(&s->c, &s->admin, s->pk);
    if (!e && o->images > 0) {
        e = qd_data_load(o->data_dir ? o->data_dir : "data", s->data, 0, &s->te);
        s->have_te = !e;
    }
    if (!e && !(s->dev = calloc((size_t)(o->devices > 0 ? o->devices : 1), sizeof *s->dev)))
        e = qd_seterr(QD_ENOMEM, "out of memory");
    if (e) {
        qd_sim_close(s);
        return e;
    }
    s->n = o->devices;
    return QD_OK;
}

void qd_sim_close(struct qd_sim *s)
{
    qd_client_close(&s->c);
    if (s->have_te)
        qd_dataset_fini(&s->te);
    for (int i = 0; s->dev && i < s->n; i++) {
        if (s->dev[i].store)
            qd_agent_store_close(s->dev[i].store);
        free(s->dev[i].store);
    }
    free(s->dev);
    s->dev = NULL;
    s->have_te = 0;
}

/* After qd_agent_take: the counters, and for a model installed, what the device now holds
 * (run on the test images). */
static qd_err took(struct qd_sim *s, struct qd_sim_dev *d, int64_t v, const struct qd_agent_took *t,
                   double t_recv, int ack)
{
    if (t->refused) {
        s->rejected++;
        d->rejected++;
        s->selftest_failed += t->refused == QD_ESELFTEST;
        fprintf(stderr, "simulate: %s did not install version %lld: %s\n", d->who.id, (long long)v,
                qd_errmsg());
        return QD_OK;
    }
    if (!t->installed)
        return QD_OK;
    int k = qd_pack_parse(t->encoding);
    s->verified++;
    s->packed[k >= 0 ? k : 0]++;
    s->wire_bytes += (long)t->wire;
    s->model_bytes += (long)t->len;
    s->reply_bytes += (long)t->reply_bytes;
    d->push_lat = t_recv - d->t_report;
    if (ack) {
        d->acked = d->store->version;
        s->acks++;
    }
    if (s->have_te && s->o.images > 0) {
        struct qd_lab_eval r;
        QD_TRY(qd_lab_eval_blob(d->store->qm, d->store->len, &s->te, s->o.images, 1, QD_RT_ISA_AUTO,
                                &r));
        d->acc = r.acc;
    }
    return QD_OK;
}

/* The device holds less than version v: the agent's half of it (a device does this when a
 * reply names a version it has not received: notifications are lossy, PUB drops what no
 * subscriber is connected for, and nanomsg's SUB does not come back over ipc:// after the
 * daemon is killed). */
static qd_err catch_up(struct qd_sim *s, struct qd_sim_dev *d, int64_t v)
{
    struct qd_agent_took t;
    QD_TRY(qd_agent_take(&s->c, &d->who, s->pk, d->store, v, 1, &t));
    return took(s, d, v, &t, qd_sim_now(), 1);
}

qd_err qd_sim_hello_all(struct qd_sim *s)
{
    for (int i = 0; i < s->n; i++) {
        struct qd_sim_dev *d = &s->dev[i];
        cJSON *r = NULL;
        QD_TRY(qd_client_hello(&s->c, &d->who, d->profile, &r));
        int64_t v = 0;
        qd_err e = qd_proto_int(r, "version", 0, INT64_C(1) << 53, 1, &v);
        cJSON_Delete(r);
        if (!e && v > d->store->version && v <= d->want) /* told of it, never received */
            e = catch_up(s, d, v);
        if (e) {
            char pre[80];
            snprintf(pre, sizeof pre, "%s: ", d->who.id);
            return qd_wraperr(e, pre, NULL);
        }
    }
    return QD_OK;
}

static int find(const struct qd_sim *s, const char *id);

const char *const QD_SIM_BUDGET_NAME[4] = {"flash", "latency_ms", "energy_mj", "ram"};

int qd_sim_binding(const struct qd_sim_dev *d, double *share)
{
    int best = -1;
    *share = 0;
    for (int k = 0; k < 4; k++)
        if (isfinite(d->budget[k]) && d->budget[k] > 0 && isfinite(d->cost[k]) &&
            d->cost[k] / d->budget[k] > *share)
            best = k, *share = d->cost[k] / d->budget[k];
    return best;
}

qd_err qd_sim_refresh(struct qd_sim *s)
{
    for (int off = 0; off < s->n; off += 10000) {
        cJSON *j = cJSON_CreateObject(), *r = NULL;
        cJSON_AddStringToObject(j, "op", "devices");
        cJSON_AddNumberToObject(j, "offset", off);
        cJSON_AddNumberToObject(j, "limit", 10000);
        QD_TRY(qd_client_call(&s->c, &s->admin, j, &r, NULL, NULL));
        cJSON *x;
        cJSON_ArrayForEach(x, cJSON_GetObjectItem(r, "devices"))
        {
            const cJSON *id = cJSON_GetObjectItem(x, "id"), *v = cJSON_GetObjectItem(x, "version");
            int i = cJSON_IsString(id) ? find(s, id->valuestring) : -1;
            if (i >= 0 && cJSON_IsNumber(v))
                s->dev[i].want = (int64_t)v->valuedouble;
        }
        cJSON_Delete(r);
    }
    return QD_OK;
}

qd_err qd_sim_resubscribe(struct qd_sim *s)
{
    if (s->c.sub >= 0)
        qd_tp_close(s->c.sub);
    s->c.sub = -1;
    QD_TRY(qd_tp_sub_connect(s->o.push, &s->c.sub));
    for (int i = 0; i < s->n; i++)
        QD_TRY(qd_client_subscribe(&s->c, s->dev[i].who.id));
    return QD_OK;
}

qd_err qd_sim_provision(struct qd_sim *s)
{
    for (int i = 0; i < s->n; i++) {
        struct qd_sim_dev *d = &s->dev[i];
        char id[64];
        snprintf(id, sizeof id, "%s-%05d", s->o.prefix, i);
        d->profile = s->o.profiles[i % s->o.nprofiles];
        d->acc = -1;
        char key[2 * QD_PROTO_KEY_BYTES + 1];
        qd_err e = qd_client_device_key(&s->c, &s->admin, "add", id, key);
        if (e == QD_EEXIST) /* from an earlier run: a fresh key */
            e = qd_client_device_key(&s->c, &s->admin, "rotate", id, key);
        if (!e)
            e = qd_ident_init(&d->who, id, key);
        sodium_memzero(key, sizeof key);
        if (!e)
            e = qd_client_subscribe(&s->c, id);
        if (!e) { /* the agent's store: a directory per device, or in memory */
            char dir[1200];
            snprintf(dir, sizeof dir, "%s/%s", s->o.store_dir ? s->o.store_dir : "", id);
            if (!(d->store = calloc(1, sizeof *d->store)))
                e = qd_seterr(QD_ENOMEM, "out of memory");
            if (!e)
                e = qd_agent_store_open(d->store, s->o.store_dir ? dir : NULL);
        }
        if (e) {
            char pre[80];
            snprintf(pre, sizeof pre, "%s: ", id);
            return qd_wraperr(e, pre, NULL);
        }
    }
    return qd_sim_hello_all(s);
}

qd_err qd_sim_report(struct qd_sim *s, int i, const struct qd_client_ctx *ctx)
{
    struct qd_sim_dev *d = &s->dev[i];
    cJSON *r = NULL;
    double t = qd_sim_now();
    qd_err e = qd_client_report(&s->c, &d->who, ctx, &r);
    if (!e) {
        int64_t v = 0;
        const char *sha = NULL, *pol = NULL;
        e = qd_proto_int(r, "version", 1, INT64_C(1) << 53, 1, &v);
        if (!e)
            e = qd_proto_str(r, "sha256", 64, 1, &sha);
        if (!e)
            e = qd_proto_str(r, "policy", sizeof d->policy - 1, 1, &pol);
        if (!e) {
            if (v != d->want)
                d->t_report = t;
            d->want = v;
            snprintf(d->want_sha, sizeof d->want_sha, "%s", sha);
            snprintf(d->policy, sizeof d->policy, "%s", pol);
            cJSON *c = cJSON_GetObjectItem(r, "costs");
            cJSON *f = cJSON_GetObjectItem(c, "flash");
            d->flash = cJSON_IsNumber(f) ? f->valuedouble : 0;
            cJSON *b = cJSON_GetObjectItem(r, "budget"), *p = cJSON_GetObjectItem(r, "pinned");
            for (int k = 0; k < 4; k++) {
                cJSON *x = cJSON_GetObjectItem(c, QD_SIM_BUDGET_NAME[k]),
                      *y = cJSON_GetObjectItem(b, QD_SIM_BUDGET_NAME[k]);
                d->cost[k] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
                d->budget[k] = cJSON_IsNumber(y) ? y->valuedouble : NAN;
            }
            d->pinned = cJSON_IsNumber(p) ? (int64_t)p->valuedouble : 0;
        }
        /* nothing new to push, but this device does not hold it (it restarted): fetch */
        if (!e && !cJSON_IsTrue(cJSON_GetObjectItem(r, "changed")) && d->store->version < v) {
            e = catch_up(s, d, v);
        }
    }
    cJSON_Delete(r);
    if (e) {
        char pre[80];
        snprintf(pre, sizeof pre, "%s: ", d->who.id);
        return qd_wraperr(e, pre, NULL);
    }
    return QD_OK;
}

static int find(const struct qd_sim *s, const char *id)
{
    /* ids are <prefix>-NNNNN */
    size_t n = strlen(s->o.prefix);
    if (strncmp(id, s->o.prefix, n) || id[n] != '-')
        return -1;
    int i = atoi(id + n + 1);
    return i >= 0 && i < s->n && !strcmp(s->dev[i].who.id, id) ? i : -1;
}

static int missing(const struct qd_sim *s, int ack)
{
    int m = 0;
    for (int i = 0; i < s->n; i++)
        m += s->dev[i].store->version < s->dev[i].want || (ack && s->dev[i].acked < s->dev[i].want);
    return m;
}

qd_err qd_sim_collect(struct qd_sim *s, int timeout_ms, int ack)
{
    double end = qd_sim_now() + timeout_ms / 1e3;
    int m;
    while ((m = missing(s, ack)) > 0) {
        double left = end - qd_sim_now();
        if (left <= 0)
            return qd_seterr(QD_ETIMEDOUT, "%d of %d devices still without their model", m, s->n);
        struct qd_proto_note note;
        qd_err e = qd_client_notify_recv(&s->c, (int)(left * 1e3) + 1, &note);
        if (e == QD_ETIMEDOUT)
            continue;
        s->pushes++;
        if (e == QD_EFORMAT) {
            s->rejected++;
            fprintf(stderr, "simulate: a malformed notification: %s\n", qd_errmsg());
            continue;
        }
        if (e)
            return e;
        int i = find(s, note.id);
        if (i < 0)
            continue;
        struct qd_sim_dev *d = &s->dev[i];
        d->pushes++;
        if (note.version <= d->store->version && (!ack || d->acked >= note.version)) {
            s->duplicates++; /* a re-notification that crossed our ack */
            continue;
        }
        int64_t acked = d->acked;
        struct qd_agent_took t;
        e = qd_agent_take(&s->c, &d->who, s->pk, d->store, note.version, ack, &t);
        if (e)
            return qd_wraperr(e, "fetch: ", NULL);
        if (!t.installed && !t.refused && ack && note.version == d->store->version &&
            acked < d->store->version) {
            d->acked = d->store->version; /* held already, its ack repeated */
            s->acks++;
            continue;
        }
        QD_TRY(took(s, d, note.version, &t, qd_sim_now(), ack));
    }
    return QD_OK;
}

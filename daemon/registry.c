/* The device registry and the device profiles. Devices live in d->devs (index = registration
 * order, found by id through dev_by_id); each holds its key, last nonce, profile, last context
 * and its current version's blob. Profiles are loaded by name from the devices directory on
 * first use, their cost tables prepared once the backbone is ready. Loop thread only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "daemon/daemon_impl.h"

qd_err qdd_dev_insert(struct qd_daemon *d, const struct qd_state_device *s, struct qdd_dev **out)
{
    if (d->ndev == d->capdev) {
        int cap = d->capdev ? 2 * d->capdev : 1024;
        struct qdd_dev **v = realloc(d->devs, cap * sizeof *v);
        if (!v)
            return qd_seterr(QD_ENOMEM, "registry: out of memory");
        d->devs = v, d->capdev = cap;
    }
    struct qdd_dev *x = calloc(1, sizeof *x);
    if (!x)
        return qd_seterr(QD_ENOMEM, "registry: out of memory");
    snprintf(x->id, sizeof x->id, "%s", s->id);
    memcpy(x->key, s->key, sizeof x->key);
    x->prof = -1;
    x->flash = s->flash, x->ram = s->ram;
    x->ctx = QD_PROTO_CTX_NONE;
    x->nonce = s->nonce, x->version = s->version, x->acked = s->acked;
    x->blob = -1;
    x->group = -1;
    x->status = s->status;
    x->seen_ms = s->seen_ms;
    qd_err e = s->group[0] ? qdd_group_get(d, s->group, &x->group) : QD_OK;
    if (!e)
        e = qdd_smap_put(&d->dev_by_id, x->id, d->ndev);
    if (e) {
        free(x);
        return e;
    }
    d->devs[d->ndev++] = x;
    *out = x;
    return QD_OK;
}

struct qdd_dev *qdd_dev_find(struct qd_daemon *d, const char *id)
{
    int i = qdd_smap_get(&d->dev_by_id, id);
    return i < 0 ? NULL : d->devs[i];
}

int qdd_dev_index(struct qd_daemon *d, const struct qdd_dev *x)
{
    return qdd_smap_get(&d->dev_by_id, x->id);
}

/* Profiles by name, loaded on first use from the devices directory. */
int qdd_profile_get(struct qd_daemon *d, const char *name)
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
    struct qdd_profile *p = &d->prof[d->nprof];
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
/* The profile's cost tables (many .qm builds the first time): called from pool jobs, so that
 * the loop never builds them. */
qd_err qdd_profile_tables(struct qd_daemon *d, int i)
{
    struct qdd_profile *p = &d->prof[i];
    qd_err e = QD_OK;
    if (atomic_load(&p->have_t)) /* (the loop's inline decisions never wait for the lock) */
        return QD_OK;
    uv_mutex_lock(&d->tables_mu);
    if (!atomic_load(&p->have_t) && !(e = qd_decide_prepare(&d->dec, &p->dev, &p->t)))
        atomic_store(&p->have_t, 1);
    uv_mutex_unlock(&d->tables_mu);
    return e;
}

qd_err qdd_dev_restore(void *ctx, const struct qd_state_device *s)
{
    struct qd_daemon *d = ctx;
    struct qdd_dev *x;
    QD_TRY(qdd_dev_insert(d, s, &x));
    if (s->profile[0]) {
        int p = qdd_profile_get(d, s->profile);
        if (p >= 0)
            x->prof = p;
        else
            qd_log(QD_LOG_WARN, "device %s: %s", s->id, qd_errmsg());
    }
    if (s->context) {
        cJSON *j = cJSON_Parse(s->context);
        struct qd_proto_ctx ctx;
        if (j && !qd_proto_ctx_read(j, &ctx))
            x->ctx = ctx;
        cJSON_Delete(j);
    }
    if (s->sha[0] && s->version > 0) {
        int bi;
        if (qdd_blob_of_sha(d, s->sha, &bi))
            bi = -1;
        x->blob = bi;
        if (x->version > x->acked && bi >= 0) {
            x->push_due = qdd_now_ms(); /* unacked at the last stop: push again */
            qdd_push_pending(d, x);
        }
    }
    return QD_OK;
}

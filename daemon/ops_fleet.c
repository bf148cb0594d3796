/* The operator's fleet ops, behind the admin key: group (put devices in a group; list groups),
 * set (a device's or a group's settings; a change re-decides the devices it touches), rollback
 * (to the last acknowledged version before the current, or a named one; the device stays
 * pinned there), revoke and delete (the key stops working at once; the history stays), events
 * (the log, filtered). Every refusal leaves the fleet as it was: each request is checked whole
 * before anything changes. Loop thread. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "daemon/daemon_impl.h"

/* The request's target: "device" or "group" (one of them). */
static qd_err target_of(struct qdd_call *c, struct qdd_dev **x, int *g)
{
    const char *id = NULL, *grp = NULL;
    QD_TRY(qd_proto_str(c->j, "device", QD_PROTO_MAX_ID, 0, &id));
    QD_TRY(qd_proto_str(c->j, "group", QD_PROTO_MAX_ID, 0, &grp));
    *x = NULL, *g = -1;
    if (!id == !grp)
        return qd_seterr(QD_EINVAL, "name one of \"device\" and \"group\"");
    if (id && !(*x = qdd_dev_find(c->d, id)))
        return qd_seterr(QD_ENODEV, "no device '%s'", id);
    if (grp && (*g = qdd_group_find(c->d, grp)) < 0)
        return qd_seterr(QD_ENOGROUP, "no group '%s' (put devices in it with the group op)", grp);
    return QD_OK;
}

static int member(const struct qdd_dev *x, const struct qdd_dev *one, int g)
{
    return x->status != QD_STATE_DELETED && (one ? x == one : x->group == g);
}

static void event(struct qd_daemon *d, const char *dev, const char *kind, const char *detail)
{
    if (qd_state_event(d->st, dev, kind, detail))
        qd_log(QD_LOG_WARN, "%s", qd_errmsg());
}

qd_err qdd_op_group(struct qdd_call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    const char *name = NULL;
    QD_TRY(qd_proto_str(c->j, "group", QD_PROTO_MAX_ID, 0, &name));
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(c->j, "devices");
    if (!name) { /* the groups, their sizes and settings */
        cJSON *a = cJSON_AddArrayToObject(r, "groups");
        for (int g = 0; g < d->ngroup; g++) {
            int n = 0;
            for (int i = 0; i < d->ndev; i++)
                n += member(d->devs[i], NULL, g);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", d->groups[g].name);
            cJSON_AddNumberToObject(o, "devices", n);
            cJSON_AddItemToObject(o, "settings", qdd_settings_json(&d->groups[g].set));
            cJSON_AddItemToArray(a, o);
        }
        return QD_OK;
    }
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0)
        return qd_seterr(QD_EINVAL, "field \"devices\" must be a list of device ids");
    const cJSON *v;
    cJSON_ArrayForEach(v, list) /* all known before any moves */
    {
        if (!cJSON_IsString(v))
            return qd_seterr(QD_EINVAL, "field \"devices\": every entry is a device id");
        if (!qdd_dev_find(d, v->valuestring))
            return qd_seterr(QD_ENODEV, "no device '%.64s'", v->valuestring);
    }
    int g = -1;
    if (name[0])
        QD_TRY(qdd_group_get(d, name, &g));
    int moved = 0;
    cJSON_ArrayForEach(v, list)
    {
        struct qdd_dev *x = qdd_dev_find(d, v->valuestring);
        if (x->group == g)
            continue;
        QD_TRY(qd_state_device_group(d->st, x->id, name));
        x->group = g;
        moved++;
        event(d, x->id, "group", name[0] ? name : "(none)");
        qdd_redecide(d, x); /* its group's settings apply now */
    }
    cJSON_AddStringToObject(r, "group", name);
    cJSON_AddNumberToObject(r, "moved", moved);
    return QD_OK;
}

/* Settings s can be met on x's profile: every cap above the smallest figure any policy has,
 * some allowed width supported, the floor below the best predicted accuracy. */
static qd_err feasible(struct qd_daemon *d, const struct qdd_dev *x, const struct qdd_settings *s)
{
    if (x->prof < 0 || !atomic_load(&d->prof[x->prof].have_t))
        return QD_OK; /* judged at its first decision */
    const struct qd_decide_tables *t = &d->prof[x->prof].t;
    double cap[QD_BUDGET_COUNT];
    qdd_settings_caps(s, t, cap);
    for (int k = 0; k < QD_BUDGET_COUNT; k++)
        if (cap[k] < t->lo[k])
            return qd_seterr(QD_EBUDGET,
                             "%s %.6g: the smallest policy on %s (device %s) needs %.6g",
                             QDD_BUDGET_FIELD[k], cap[k], t->dev.name, x->id, t->lo[k]);
    unsigned ok = 0;
    for (int b = 2; b <= 16; b *= 2)
        ok |= t->dev.wbits_ok[b] ? 1u << b : 0;
    if (s->bits && !(s->bits & ok))
        return qd_seterr(QD_EBUDGET, "bits: %s (device %s) supports none of the widths given",
                         t->dev.name, x->id);
    if (!isnan(s->floor) && d->dec.have_s) {
        double best = d->dec.s.acc0;
        for (int l = 0; l < d->dec.s.L; l++) {
            double m = -INFINITY;
            for (int b = 2; b <= 16; b *= 2)
                if ((ok & (1u << b)) && (!s->bits || (s->bits & (1u << b))))
                    m = fmax(m, d->dec.s.acc[l][b]);
            best += m - d->dec.s.acc0;
        }
        if (best < s->floor)
            return qd_seterr(QD_EBUDGET,
                             "accuracy_floor %.4f: the most accurate policy on %s (device %s) "
                             "predicts %.4f",
                             s->floor, t->dev.name, x->id, best);
    }
    return QD_OK;
}

/* Reads the request's settings and clears over `s`. */
static qd_err read_change(struct qdd_call *c, int group, struct qdd_settings *s)
{
    const cJSON *clear = cJSON_GetObjectItemCaseSensitive(c->j, "clear");
    if (clear) {
        if (cJSON_IsTrue(clear))
            QD_TRY(qdd_settings_clear(s, "all"));
        else if (cJSON_IsArray(clear)) {
            const cJSON *v;
            cJSON_ArrayForEach(v, clear)
            {
                if (!cJSON_IsString(v))
                    return qd_seterr(QD_EINVAL, "field \"clear\": every entry is a setting's name");
                QD_TRY(qdd_settings_clear(s, v->valuestring));
            }
        } else
            return qd_seterr(QD_EINVAL, "field \"clear\" must be true or a list of settings");
    }
    return qdd_settings_read(c->j, group, s);
}

qd_err qdd_op_set(struct qdd_call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    struct qdd_dev *one;
    int g;
    QD_TRY(target_of(c, &one, &g));
    struct qdd_settings s;
    if (one && one->set)
        s = *one->set;
    else if (one)
        qdd_settings_none(&s);
    else
        s = d->groups[g].set;
    QD_TRY(read_change(c, !one, &s));
    if (one && s.pin > 0 && s.pin != (one->set ? one->set->pin : 0)) {
        char sha[65];
        if (qd_state_version_sha(d->st, one->id, s.pin, sha))
            return qd_seterr(QD_ENOVERSION, "field \"pin\": device '%s' never had version %lld",
                             one->id, (long long)s.pin);
    }
    if (one && s.pin == QDD_PIN_CURRENT) /* a device's "current" is a number */
        s.pin = one->version ? one->version : 0;
    for (int i = 0; i < d->ndev; i++) { /* what the change touches, checked first */
        struct qdd_dev *x = d->devs[i];
        if (!member(x, one, g))
            continue;
        struct qdd_settings now, *keep = x->set, gkeep = one ? s : d->groups[g].set;
        int had = one ? 0 : d->groups[g].has_set;
        if (one)
            x->set = &s;
        else
            d->groups[g].set = s, d->groups[g].has_set = 1;
        qdd_settings_of(d, x, &now); /* as it would be */
        if (one)
            x->set = keep;
        else
            d->groups[g].set = gkeep, d->groups[g].has_set = had;
        QD_TRY(feasible(d, x, &now));
    }
    QD_TRY(
        qdd_settings_save(d, one ? "device" : "group", one ? one->id : d->groups[g].name, &s, 1));
    if (one) {
        if (!one->set && !(one->set = malloc(sizeof *one->set)))
            return qd_seterr(QD_ENOMEM, "out of memory");
        *one->set = s;
    } else
        d->groups[g].set = s, d->groups[g].has_set = 1;
    int n = 0;
    for (int i = 0; i < d->ndev; i++)
        if (member(d->devs[i], one, g)) {
            qdd_redecide(d, d->devs[i]); /* (once: one already waiting stays so) */
            n += d->devs[i]->redo;
        }
    cJSON_AddItemToObject(r, "settings", qdd_settings_json(&s));
    cJSON_AddNumberToObject(r, "redeciding", n);
    return QD_OK;
}

/* x gets a new version carrying version v's model and stays pinned to v (`set --clear pin` lets
 * it be decided again); a line of the reply in a. */
static qd_err rollback_one(struct qd_daemon *d, struct qdd_dev *x, int64_t v, cJSON *a)
{
    int64_t from = x->version;
    if (!x->set) {
        if (!(x->set = malloc(sizeof *x->set)))
            return qd_seterr(QD_ENOMEM, "out of memory");
        qdd_settings_none(x->set);
    }
    QD_TRY(qdd_revert(d, x, v, "rollback"));
    struct qdd_settings s = *x->set;
    s.pin = v;
    QD_TRY(qdd_settings_save(d, "device", x->id, &s, 0));
    x->set->pin = v;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", x->id);
    cJSON_AddNumberToObject(o, "from", (double)from);
    cJSON_AddNumberToObject(o, "to", (double)v);
    cJSON_AddNumberToObject(o, "version", (double)x->version);
    cJSON_AddItemToArray(a, o);
    return QD_OK;
}

qd_err qdd_op_rollback(struct qdd_call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    struct qdd_dev *one;
    int g;
    QD_TRY(target_of(c, &one, &g));
    int64_t to = 0;
    QD_TRY(qd_proto_int(c->j, "to", 1, INT32_MAX, 0, &to));
    if (to && !one)
        return qd_seterr(QD_EINVAL, "field \"to\" names one device's version: give \"device\"");
    /* every target found before anything changes; in a group, a device with no earlier
     * acknowledged version is left as it is (and listed) */
    int n = 0;
    int64_t *target = calloc((size_t)d->ndev + 1, sizeof *target);
    if (!target)
        return qd_seterr(QD_ENOMEM, "out of memory");
    cJSON *skipped = cJSON_AddArrayToObject(r, "skipped");
    for (int i = 0; i < d->ndev; i++) {
        struct qdd_dev *x = d->devs[i];
        if (!member(x, one, g))
            continue;
        char sha[65];
        int64_t v = to;
        qd_err e = to ? qd_state_version_sha(d->st, x->id, to, sha)
                      : qd_state_rollback_target(d->st, x->id, x->version, &v, sha);
        if (e == QD_ENOENT && !one) {
            cJSON_AddItemToArray(skipped, cJSON_CreateString(x->id));
            continue;
        }
        if (e) {
            free(target);
            return e == QD_ENOENT ? qd_seterr(QD_ENOVERSION, "%s", qd_errmsg()) : e;
        }
        target[i] = v;
        n++;
    }
    if (!n) {
        free(target);
        return qd_seterr(QD_ENOVERSION,
                         "no device of group '%s' has an acknowledged version "
                         "before its current one",
                         d->groups[g].name);
    }
    cJSON *a = cJSON_AddArrayToObject(r, "devices");
    qd_err e = QD_OK;
    for (int i = 0; i < d->ndev && !e; i++)
        if (target[i])
            e = rollback_one(d, d->devs[i], target[i], a);
    free(target);
    return e;
}

/* revoke, delete: {"op":"revoke","device":ID}. `keys rotate` gives it a new key and ends both. */
qd_err qdd_op_revoke(struct qdd_call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    const char *op = cJSON_GetObjectItemCaseSensitive(c->j, "op")->valuestring, *id = NULL;
    QD_TRY(qd_proto_str(c->j, "device", QD_PROTO_MAX_ID, 1, &id));
    struct qdd_dev *x = qdd_dev_find(d, id);
    if (!x || x->status == QD_STATE_DELETED)
        return qd_seterr(QD_ENODEV, "no device '%s'", id);
    enum qd_state_status st = !strcmp(op, "delete") ? QD_STATE_DELETED : QD_STATE_REVOKED;
    QD_TRY(qd_state_device_status(d->st, x->id, st));
    event(d, x->id, st == QD_STATE_DELETED ? "deleted" : "revoked", NULL);
    x->status = st;
    x->push_due = 0; /* nothing more is sent to it */
    cJSON_AddStringToObject(r, "device", x->id);
    cJSON_AddStringToObject(r, "status", st == QD_STATE_DELETED ? "deleted" : "revoked");
    return QD_OK;
}

qd_err qdd_op_events(struct qdd_call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    struct qd_state_event_filter f = {0};
    int64_t since = 0, limit = 100;
    QD_TRY(qd_proto_str(c->j, "device", QD_PROTO_MAX_ID, 0, &f.device));
    QD_TRY(qd_proto_str(c->j, "group", QD_PROTO_MAX_ID, 0, &f.group));
    QD_TRY(qd_proto_str(c->j, "kind", 32, 0, &f.kind));
    QD_TRY(qd_proto_int(c->j, "since", 0, INT64_C(1) << 40, 0, &since));
    QD_TRY(qd_proto_int(c->j, "limit", 1, 10000, 0, &limit));
    if (f.device && !qdd_dev_find(d, f.device))
        return qd_seterr(QD_ENODEV, "no device '%s'", f.device);
    if (f.group && qdd_group_find(d, f.group) < 0)
        return qd_seterr(QD_ENOGROUP, "no group '%s'", f.group);
    f.since_ms = since * 1000;
    f.limit = (int)limit;
    return qd_state_events(d->st, &f, cJSON_AddArrayToObject(r, "events"));
}

/* Fleet state on the loop: groups, the operator's settings of devices and groups (budget caps in
 * units or as a share of the int8 model's figure, an accuracy floor, the weight widths allowed,
 * a pinned version), reverts to an earlier version (a rollback, a pin: a new version carrying
 * the earlier model, so that manifests stay monotonic) and the queue of re-decisions a changed
 * setting starts. Loop thread. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "daemon/daemon_impl.h"

const char *const QDD_BUDGET_FIELD[QD_BUDGET_COUNT] = {[QD_BUDGET_FLASH] = "flash",
                                                       [QD_BUDGET_LATENCY] = "latency_ms",
                                                       [QD_BUDGET_ENERGY] = "energy_mj",
                                                       [QD_BUDGET_RAM] = "ram"};

void qdd_settings_none(struct qdd_settings *s)
{
    for (int k = 0; k < QD_BUDGET_COUNT; k++)
        s->budget[k] = s->share[k] = NAN;
    s->floor = NAN;
    s->bits = 0;
    s->pin = 0;
}

int qdd_settings_empty(const struct qdd_settings *s)
{
    for (int k = 0; k < QD_BUDGET_COUNT; k++)
        if (!isnan(s->budget[k]) || !isnan(s->share[k]))
            return 0;
    return isnan(s->floor) && !s->bits && !s->pin;
}

/* A budget: a positive number in the budget's unit, or "P%" of the int8 model's figure. */
static qd_err read_budget(const cJSON *v, const char *name, double *abs, double *share)
{
    if (cJSON_IsNumber(v)) {
        if (!(v->valuedouble > 0 && v->valuedouble < 1e15))
            return qd_seterr(QD_EINVAL, "field \"%s\" must be above 0 (got %g)", name,
                             v->valuedouble);
        *abs = v->valuedouble, *share = NAN;
        return QD_OK;
    }
    char *end = NULL;
    double p = cJSON_IsString(v) ? strtod(v->valuestring, &end) : NAN;
    if (!cJSON_IsString(v) || end == v->valuestring || strcmp(end, "%") || !(p > 0 && p <= 1000))
        return qd_seterr(QD_EINVAL,
                         "field \"%s\" must be a number (its unit) or a share of the int8 "
                         "model's figure like \"50%%\" (above 0, at most 1000%%)",
                         name);
    *share = p / 100, *abs = NAN;
    return QD_OK;
}

void qdd_settings_caps(const struct qdd_settings *s, const struct qd_decide_tables *t, double *cap)
{
    const struct qd_costs *i8 = &t->int8; /* a share is of the uniform int8 model's figure */
    const double int8[QD_BUDGET_COUNT] = {[QD_BUDGET_FLASH] = i8->flash,
                                          [QD_BUDGET_LATENCY] = i8->latency_ms,
                                          [QD_BUDGET_ENERGY] = i8->energy_mj,
                                          [QD_BUDGET_RAM] = i8->ram};
    for (int k = 0; k < QD_BUDGET_COUNT; k++)
        cap[k] = fmin(isnan(s->budget[k]) ? INFINITY : s->budget[k],
                      isnan(s->share[k]) ? INFINITY : s->share[k] * int8[k]);
}

qd_err qdd_settings_save(struct qd_daemon *d, const char *kind, const char *name,
                         const struct qdd_settings *s, int event)
{
    char target[QD_PROTO_MAX_ID + 8];
    snprintf(target, sizeof target, "%s:%s", kind, name);
    cJSON *sj = qdd_settings_json(s);
    char *body = qdd_settings_empty(s) ? NULL : cJSON_PrintUnformatted(sj);
    cJSON_Delete(sj);
    qd_err e = qd_state_setting_put(d->st, target, body);
    if (!e && event &&
        qd_state_event(d->st, strcmp(kind, "device") ? NULL : name, "set", body ? body : target))
        qd_log(QD_LOG_WARN, "%s", qd_errmsg());
    free(body);
    return e;
}

qd_err qdd_settings_read(const cJSON *j, int group, struct qdd_settings *s)
{
    struct qdd_settings n = *s; /* all or nothing */
    for (int k = 0; k < QD_BUDGET_COUNT; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, QDD_BUDGET_FIELD[k]);
        if (v)
            QD_TRY(read_budget(v, QDD_BUDGET_FIELD[k], &n.budget[k], &n.share[k]));
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "accuracy_floor");
    if (v) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble > 0 && v->valuedouble <= 1))
            return qd_seterr(QD_EINVAL,
                             "field \"accuracy_floor\" must be a number in (0, 1] (a share "
                             "of the test images)");
        n.floor = v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "bits"))) {
        const cJSON *b;
        unsigned m = 0;
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0)
            return qd_seterr(QD_EINVAL, "field \"bits\" must be a list of weight widths "
                                        "(2, 4, 8, 16)");
        cJSON_ArrayForEach(b, v)
        {
            int w = cJSON_IsNumber(b) ? (int)b->valuedouble : 0;
            if (w != 2 && w != 4 && w != 8 && w != 16)
                return qd_seterr(QD_EINVAL,
                                 "field \"bits\": %s is not a weight width (2, 4, "
                                 "8, 16)",
                                 cJSON_IsNumber(b) ? "a number" : "an entry");
            m |= 1u << w;
        }
        n.bits = m;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "pin"))) {
        if (cJSON_IsString(v) && !strcmp(v->valuestring, "current"))
            n.pin = QDD_PIN_CURRENT;
        else if (!group && cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble < 1e15 &&
                 v->valuedouble == floor(v->valuedouble))
            n.pin = (int64_t)v->valuedouble;
        else
            return qd_seterr(QD_EINVAL, group ? "field \"pin\" of a group must be \"current\" "
                                                "(each device stays on its current version)"
                                              : "field \"pin\" must be a version number of "
                                                "the device or \"current\"");
    }
    *s = n;
    return QD_OK;
}

cJSON *qdd_settings_json(const struct qdd_settings *s)
{
    cJSON *o = cJSON_CreateObject();
    for (int k = 0; k < QD_BUDGET_COUNT; k++) {
        if (!isnan(s->budget[k]))
            cJSON_AddNumberToObject(o, QDD_BUDGET_FIELD[k], s->budget[k]);
        if (!isnan(s->share[k])) {
            char p[32];
            snprintf(p, sizeof p, "%.10g%%", 100 * s->share[k]);
            cJSON_AddStringToObject(o, QDD_BUDGET_FIELD[k], p);
        }
    }
    if (!isnan(s->floor))
        cJSON_AddNumberToObject(o, "accuracy_floor", s->floor);
    if (s->bits) {
        cJSON *a = cJSON_AddArrayToObject(o, "bits");
        for (int b = 2; b <= 16; b *= 2)
            if (s->bits & (1u << b))
                cJSON_AddItemToArray(a, cJSON_CreateNumber(b));
    }
    if (s->pin == QDD_PIN_CURRENT)
        cJSON_AddStringToObject(o, "pin", "current");
    else if (s->pin)
        cJSON_AddNumberToObject(o, "pin", (double)s->pin);
    return o;
}

qd_err qdd_settings_clear(struct qdd_settings *s, const char *field)
{
    int all = !strcmp(field, "all"), budgets = !strcmp(field, "budgets"), hit = all || budgets;
    for (int k = 0; k < QD_BUDGET_COUNT; k++)
        if (all || budgets || !strcmp(field, QDD_BUDGET_FIELD[k]))
            s->budget[k] = s->share[k] = NAN, hit = 1;
    if (all || !strcmp(field, "accuracy_floor"))
        s->floor = NAN, hit = 1;
    if (all || !strcmp(field, "bits"))
        s->bits = 0, hit = 1;
    if (all || !strcmp(field, "pin"))
        s->pin = 0, hit = 1;
    return hit ? QD_OK
               : qd_seterr(QD_EINVAL,
                           "field \"clear\": '%s' is not a setting (all, budgets, flash, ram, "
                           "latency_ms, energy_mj, accuracy_floor, bits, pin)",
                           field);
}

void qdd_settings_of(const struct qd_daemon *d, const struct qdd_dev *x, struct qdd_settings *s)
{
    qdd_settings_none(s);
    const struct qdd_settings *g =
        x->group >= 0 && d->groups[x->group].has_set ? &d->groups[x->group].set : NULL;
    const struct qdd_settings *own = x->set;
    for (int k = 0; k < QD_BUDGET_COUNT; k++) { /* a device's budget replaces its group's */
        const struct qdd_settings *w =
            own && (!isnan(own->budget[k]) || !isnan(own->share[k])) ? own : g;
        if (w)
            s->budget[k] = w->budget[k], s->share[k] = w->share[k];
    }
    s->floor = own && !isnan(own->floor) ? own->floor : g ? g->floor : NAN;
    s->bits = own && own->bits ? own->bits : g ? g->bits : 0;
    s->pin = own && own->pin ? own->pin : g ? g->pin : 0;
}

int qdd_group_find(const struct qd_daemon *d, const char *name)
{
    for (int i = 0; i < d->ngroup; i++)
        if (!strcmp(d->groups[i].name, name))
            return i;
    return -1;
}

qd_err qdd_group_get(struct qd_daemon *d, const char *name, int *idx)
{
    if ((*idx = qdd_group_find(d, name)) >= 0)
        return QD_OK;
    if (!qd_proto_id_ok(name))
        return qd_seterr(QD_EINVAL, "group name '%s' is not [A-Za-z0-9._-]{1,63}", name);
    if (d->ngroup == QDD_MAX_GROUPS)
        return qd_seterr(QD_ELIMIT, "%d groups at most", QDD_MAX_GROUPS);
    if (d->ngroup == d->capgroup) {
        int cap = d->capgroup ? 2 * d->capgroup : 16;
        struct qdd_group *g = realloc(d->groups, cap * sizeof *g);
        if (!g)
            return qd_seterr(QD_ENOMEM, "out of memory");
        d->groups = g, d->capgroup = cap;
    }
    struct qdd_group *g = &d->groups[d->ngroup];
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    qdd_settings_none(&g->set);
    *idx = d->ngroup++;
    return QD_OK;
}

qd_err qdd_settings_restore(void *ctx, const char *target, const char *body)
{
    struct qd_daemon *d = ctx;
    int group = !strncmp(target, "group:", 6);
    const char *name = target + (group ? 6 : 7);
    if (!group && strncmp(target, "device:", 7))
        return qd_seterr(QD_EFORMAT, "state: settings of '%s' (not device: or group:)", target);
    cJSON *j = cJSON_Parse(body);
    struct qdd_settings s;
    qdd_settings_none(&s);
    qd_err e = j ? qdd_settings_read(j, group, &s)
                 : qd_seterr(QD_EFORMAT, "state: settings of %s are not JSON", target);
    cJSON_Delete(j);
    QD_TRY(e);
    if (group) {
        int g;
        QD_TRY(qdd_group_get(d, name, &g));
        d->groups[g].set = s;
        d->groups[g].has_set = 1;
        return QD_OK;
    }
    struct qdd_dev *x = qdd_dev_find(d, name);
    if (!x) {
        qd_log(QD_LOG_WARN, "state: settings of unknown device %s ignored", name);
        return QD_OK;
    }
    if (!x->set && !(x->set = malloc(sizeof *x->set)))
        return qd_seterr(QD_ENOMEM, "out of memory");
    *x->set = s;
    return QD_OK;
}

qd_err qdd_revert(struct qd_daemon *d, struct qdd_dev *x, int64_t v, const char *why)
{
    char sha[65];
    QD_TRY(qd_state_version_sha(d->st, x->id, v, sha));
    int bi;
    QD_TRY(qdd_blob_of_sha(d, sha, &bi));
    if (bi == x->blob)
        return QD_OK; /* it holds that model already */
    const uint8_t *qm;
    size_t len;
    QD_TRY(qdd_blob_bytes(d, bi, &qm, &len)); /* there, and whole */
    struct qdd_blob *b = qdd_blob(d, bi);
    char bb[80], ctx[200];
    QD_TRY(qd_state_blob_backbone(d->st, sha, bb, sizeof bb));
    snprintf(ctx, sizeof ctx, "{\"revert_to\":%lld,\"by\":\"%s\"}", (long long)v, why);
    struct qd_state_decision sd = {.device = x->id,
                                   .context = ctx,
                                   .policy = b->policy,
                                   .version = x->version + 1,
                                   .sha = sha,
                                   .backbone = bb,
                                   .size = len,
                                   .sig = b->sig};
    QD_TRY(qd_state_decision(d->st, &sd));
    char detail[160];
    snprintf(detail, sizeof detail, "version %lld carries version %lld's model (%s)",
             (long long)x->version + 1, (long long)v, why);
    if (qd_state_event(d->st, x->id, "revert", detail))
        qd_log(QD_LOG_WARN, "%s", qd_errmsg());
    x->version++;
    x->blob = bi;
    x->tries = 0;
    d->n_revert++;
    qdd_push(d, x);
    return QD_OK;
}

void qdd_redecide(struct qd_daemon *d, struct qdd_dev *x)
{
    if (x->redo || x->prof < 0 || x->version == 0 || x->status != QD_STATE_ACTIVE)
        return; /* only devices that have been decided for are decided again */
    if (d->nredo == d->capredo) {
        int cap = d->capredo ? 2 * d->capredo : 256;
        int *v = realloc(d->redo, cap * sizeof *v);
        if (!v) {
            qd_log(QD_LOG_ERROR, "re-decision of %s: out of memory", x->id);
            return;
        }
        d->redo = v, d->capredo = cap;
    }
    d->redo[d->nredo++] = qdd_dev_index(d, x);
    x->redo = 1;
}

void qdd_redecide_pump(struct qd_daemon *d)
{
    int w = 0;
    for (int i = 0; i < d->nredo; i++) {
        struct qdd_dev *x = d->devs[d->redo[i]];
        if (x->busy || d->inflight >= d->cfg.max_jobs / 2 || d->stopping ||
            atomic_load(&d->phase) != QDD_PH_READY) {
            d->redo[w++] = d->redo[i]; /* next tick */
            continue;
        }
        x->redo = 0;
        struct qdd_settings s;
        qdd_settings_of(d, x, &s);
        qd_err e = QD_OK;
        if (s.pin > 0)
            e = qdd_revert(d, x, s.pin, "pin");
        else if (!s.pin)
            e = qdd_job_redecide(d, x);
        if (e)
            qd_log(QD_LOG_ERROR, "re-decision of %s: %s", x->id, qd_errmsg());
    }
    d->nredo = w;
}

/* Jobs: a report's or a dry run's decision (gate or sensitivity search, then the exact search
 * within the budgets) and, for a report, the model's build (BatchNorm recalibrated for the
 * policy when a supernet serves), signing and storing, on the libuv thread pool. The work
 * touches only the job, the immutable decider and the blob cache under its mutex; the
 * completion, on the loop, records the decision and a new version in one transaction, replies
 * and pushes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/selftest.h"
#include "core/log.h"
#include "daemon/daemon_impl.h"

/* The budgets of a context on a profile (dev_flash, dev_ram: the device's own figures, which
 * override the profile's; 0 for none). The profile's tables must be built. */
void qdd_budgets(struct qd_daemon *d, double dev_flash, double dev_ram, const struct qdd_profile *p,
                 const struct qd_proto_ctx *c, const struct qdd_settings *set, double *b)
{
    const struct qd_device *v = &p->dev;
    double fl = (dev_flash > 0 ? dev_flash : v->flash) - v->reserved_flash;
    double ram = (dev_ram > 0 ? dev_ram : v->ram) - v->reserved_ram;
    b[QD_BUDGET_FLASH] = isnan(c->free_flash) ? fl : fmin(fl, c->free_flash);
    b[QD_BUDGET_RAM] = isnan(c->free_ram) ? ram : fmin(ram, c->free_ram);
    b[QD_BUDGET_LATENCY] = isnan(c->latency_ms) ? INFINITY : c->latency_ms;
    b[QD_BUDGET_ENERGY] = isnan(c->energy_mj) ? INFINITY : c->energy_mj;
    if (!isnan(c->battery))
        b[QD_BUDGET_ENERGY] = fmin(
            b[QD_BUDGET_ENERGY], qd_decide_battery_energy(&p->t, c->battery, d->cfg.battery_floor));
    if (!set)
        return;
    double cap[QD_BUDGET_COUNT];
    qdd_settings_caps(set, &p->t, cap);
    for (int k = 0; k < QD_BUDGET_COUNT; k++) /* an operator's caps: the smaller figure wins */
        b[k] = fmin(b[k], cap[k]);
}

/* The model for a policy of the current backbone (BatchNorm recalibrated for it when a supernet
 * serves). Pool thread. */
static qd_err build(struct qd_daemon *d, const struct qd_policy *p, uint8_t **qm, size_t *len)
{
    if (!d->have_gate)
        return qd_decider_build(&d->dec, p, qm, len);
    uv_mutex_lock(&d->build_mu); /* a supernet: BatchNorm recalibrated for the policy (cached) */
    const float *st;
    qd_err e = qd_bn_cache_get(&d->bn, &d->dec.m, &d->dec.nm, &d->dec.g, &d->dec.tr, p,
                               d->cfg.bn_batches, &st);
    if (!e)
        e = qd_supernet_build(&d->dec.m, &d->dec.nm, st, &d->dec.tr, d->cfg.calib_n, p, qm, len);
    uv_mutex_unlock(&d->build_mu);
    return e;
}

/* A blob whose file went missing or bad: built again from its policy; the bytes must hash to
 * the blob's sha (builds are deterministic), then the file is written again. */
static void rebuild_work(struct qdd_job *j)
{
    struct qd_daemon *d = j->d;
    struct qdd_blob *b = qdd_blob(d, j->blob);
    int nodes[QD_POLICY_MAX];
    struct qd_policy p;
    uint8_t *qm = NULL;
    size_t len = 0;
    char sha[65];
    j->err = qd_policy_parse(b->policy, qd_policy_layers(&d->dec.m, nodes), &p);
    if (!j->err)
        j->err = build(d, &p, &qm, &len);
    if (!j->err) {
        qd_proto_sha256_hex(qm, len, sha);
        if (strcmp(sha, b->sha))
            j->err = qd_seterr(QD_ECHECKSUM, "rebuilt %s: the bytes hash to %.12s...", b->sha, sha);
    }
    if (!j->err)
        j->err = qd_state_blob_write(d->cfg.state_dir, b->sha, qm, len);
    if (j->err) {
        snprintf(j->msg, sizeof j->msg, "%s", qd_errmsg());
        free(qm);
        return;
    }
    uv_mutex_lock(&d->blob_mu);
    if (!b->qm)
        b->qm = qm, b->len = len, qm = NULL;
    uv_mutex_unlock(&d->blob_mu);
    free(qm);
}

static void job_work(uv_work_t *w)
{
    struct qdd_job *j = w->data;
    struct qd_daemon *d = j->d;
    if (j->kind == QDD_JOB_REBUILD) {
        rebuild_work(j);
        return;
    }
    if (j->kind == QDD_JOB_PARETO) {
        qdd_pareto_work(j);
        return;
    }
    j->blob = -1;
    for (int k = 0; k < QD_BUDGET_COUNT; k++)
        j->budget[k] = NAN;
    if ((j->err = qdd_profile_tables(d, j->prof))) {
        snprintf(j->msg, sizeof j->msg, "%s", qd_errmsg());
        return;
    }
    qdd_budgets(d, j->dev_flash, j->dev_ram, &d->prof[j->prof], &j->ctx, &j->set, j->budget);
    const struct qd_decide_limits lim = {.wbits = j->set.bits, .floor = j->set.floor};
    const struct qd_decide_tables *t = &d->prof[j->prof].t;
    j->err = d->have_gate
                 ? qd_gate_decide_limited(&d->gate, &d->dec, t, j->budget, j->battery, &lim, &j->r)
                 : qd_decide_under(&d->dec, t, j->budget, &lim, &j->r);
    if (j->err) {
        snprintf(j->msg, sizeof j->msg, "%s", qd_errmsg());
        return;
    }
    qd_policy_format(&j->r.policy, j->policy, sizeof j->policy);
    if (j->kind != QDD_JOB_REPORT)
        return;
    uv_mutex_lock(&d->blob_mu);
    j->blob = qdd_blob_find_locked(d, j->policy);
    if (j->blob >= 0)
        qdd_blob(d, j->blob)->held++, j->held = 1;
    uv_mutex_unlock(&d->blob_mu);
    if (j->blob >= 0)
        return;
    uint8_t *qm = NULL;
    size_t len = 0;
    double t0 = qdd_now_s();
    j->err = build(d, &j->r.policy, &qm, &len);
    char sha[65];
    uint8_t sig[QD_PROTO_SIG_BYTES];
    char test[65] = "";
    if (!j->err) {
        qd_proto_sha256_hex(qm, len, sha);
        qd_proto_sign(qm, len, d->sign_sk, sig);
        /* the self-test digest the manifest will carry: here, off the loop */
        j->err = qd_selftest_digest(qm, len, qd_selftest_seed(sha), QD_SELFTEST_N, test);
    }
    if (!j->err)
        j->err = qd_state_blob_write(d->cfg.state_dir, sha, qm, len);
    j->build_s = qdd_now_s() - t0;
    if (j->err) {
        snprintf(j->msg, sizeof j->msg, "%s", qd_errmsg());
        free(qm); /* (a model that could not be stored: ENOSPC, EIO) */
        return;
    }
    uv_mutex_lock(&d->blob_mu);
    j->blob = qdd_blob_find_locked(d, j->policy);
    if (j->blob < 0) {
        j->err = qdd_blob_add_locked(d, sha, j->policy, sig, qm, len, 1, &j->blob);
        j->built = !j->err;
        if (!j->err)
            memcpy(qdd_blob(d, j->blob)->test_sha, test, sizeof test);
        if (j->err) {
            snprintf(j->msg, sizeof j->msg, "%s", qd_errmsg());
            free(qm);
        }
    } else
        free(qm); /* another job built the same policy meanwhile */
    if (!j->err)
        qdd_blob(d, j->blob)->held++, j->held = 1;
    uv_mutex_unlock(&d->blob_mu);
    /* a retention sweep may have removed the file between the write and the add (it was
     * nobody's then); held and in memory now, it stays: write it again if it went */
    if (!j->err && j->built && qd_state_blob_missing(d->cfg.state_dir, sha) &&
        (j->err = qd_state_blob_write(d->cfg.state_dir, sha, qdd_blob(d, j->blob)->qm, len)))
        snprintf(j->msg, sizeof j->msg, "%s", qd_errmsg());
}

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
    for (int i = 0; i < QD_BUDGET_COUNT; i++)
        if (isfinite(b[i]))
            cJSON_AddNumberToObject(c, QDD_BUDGET_FIELD[i], b[i]);
    return c;
}

/* A job's reply; none for the daemon's own re-decisions. */
static void job_reply(struct qdd_job *j, cJSON *r)
{
    if (j->internal) {
        cJSON_Delete(r);
        return;
    }
    int op = j->d->cur_op; /* (an inline job replies inside its request's handling) */
    j->d->cur_op = j->op;
    qdd_hist_observe(&j->d->h_decide, qdd_now_s() - j->queued_s);
    qdd_reply_json(j->d, &j->req, r);
    j->d->cur_op = op;
}

static void job_reply_err(struct qdd_job *j, qd_err e, const char *msg)
{
    if (j->internal)
        qd_log(QD_LOG_INFO, "re-decision of %s: %s: %s", j->d->devs[j->dev]->id, qd_err_name(e),
               msg);
    else {
        int op = j->d->cur_op;
        j->d->cur_op = j->op;
        qdd_hist_observe(&j->d->h_decide, qdd_now_s() - j->queued_s);
        qdd_reply_err(j->d, &j->req, e, msg);
        j->d->cur_op = op;
    }
}

/* The pareto op's reply: its frontier, or why there is none. */
static void pareto_done(struct qdd_job *j, int status)
{
    struct qd_daemon *d = j->d;
    if (status == UV_ECANCELED || j->err)
        job_reply_err(j, status ? QD_ENOTREADY : j->err, status ? "the daemon is stopping" : j->msg);
    else {
        cJSON *r = qd_proto_ok();
        cJSON_AddStringToObject(r, "profile", d->prof[j->prof].dev.name);
        cJSON_AddStringToObject(r, "metric", QDD_BUDGET_FIELD[j->metric]);
        cJSON_AddItemToObject(r, "points", j->out);
        j->out = NULL;
        job_reply(j, r);
    }
    cJSON_Delete(j->out);
    free(j);
    qdd_maybe_finish_stop(d);
}

static void job_done(uv_work_t *w, int status)
{
    struct qdd_job *j = w->data;
    struct qd_daemon *d = j->d;
    d->inflight--;
    if (j->kind == QDD_JOB_REBUILD) { /* no reply: the device fetches again */
        qdd_blob(d, j->blob)->rebuilding = 0;
        if (j->err || status)
            qd_log(QD_LOG_ERROR, "models/%s.qm: not rebuilt: %s", qdd_blob(d, j->blob)->sha,
                   status ? "the daemon is stopping" : j->msg);
        else
            qd_log(QD_LOG_WARN, "models/%s.qm: was missing or damaged; rebuilt",
                   qdd_blob(d, j->blob)->sha);
        free(j);
        qdd_maybe_finish_stop(d);
        return;
    }
    if (j->kind == QDD_JOB_PARETO) {
        pareto_done(j, status);
        return;
    }
    struct qdd_dev *x = j->kind == QDD_JOB_REPORT ? d->devs[j->dev] : NULL;
    if (j->holds >= 0)
        d->devs[j->holds]->busy = 0;
    if (status == UV_ECANCELED) {
        job_reply_err(j, QD_ENOTREADY, "the daemon is stopping");
        goto out;
    }
    d->n_dec++;
    struct qdd_profile *pf = &d->prof[j->prof];
    if (j->r.r.seconds > 0)
        pf->search_us =
            pf->search_us ? 0.9 * pf->search_us + 0.1 * 1e6 * j->r.r.seconds : 1e6 * j->r.r.seconds;
    if (j->err) {
        if (x) {
            char *ej = qd_proto_error(j->err, j->msg);
            struct qd_state_decision sd = {
                .device = x->id, .context = j->context, .error = ej, .nonce = j->nonce};
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
            if (!j->internal)
                d->n_err++, d->n_errcode[QD_EBUDGET]++,
                    d->n_op_err[j->op >= 0 ? j->op + 1 : 0][QD_EBUDGET]++;
            job_reply(j, r);
        } else
            job_reply_err(j, j->err, j->msg);
        goto out;
    }
    cJSON *r = qd_proto_ok();
    cJSON_AddStringToObject(r, "policy", j->policy);
    cJSON_AddItemToObject(r, "costs", costs_json(&j->r));
    cJSON_AddItemToObject(r, "budget", budget_json(j->budget));
    cJSON_AddNumberToObject(r, "predicted_loss", j->r.predicted_loss);
    cJSON_AddNumberToObject(r, "search_us", 1e6 * j->r.r.seconds);
    cJSON_AddBoolToObject(r, "proven", j->r.r.proven); /* false: stopped at the node limit */
    double acc = qd_decide_accuracy(&d->dec, &j->r.policy);
    if (!isnan(acc))
        cJSON_AddNumberToObject(r, "predicted_accuracy", acc);
    if (!x) {
        job_reply(j, r);
        goto out;
    }
    if (j->built)
        d->n_build++, qdd_hist_observe(&d->h_build, j->build_s);
    else
        d->n_cache_hit++;
    d->n_redecide += j->internal;
    struct qdd_settings now; /* pinned while the job ran: the decision is recorded, not used */
    qdd_settings_of(d, x, &now);
    int changed = !now.pin && (x->blob != j->blob || x->version == 0);
    if (now.pin)
        cJSON_AddNumberToObject(r, "pinned", (double)now.pin);
    struct qdd_blob *b = qdd_blob(d, j->blob);
    char *costs = cJSON_PrintUnformatted(cJSON_GetObjectItem(r, "costs"));
    struct qd_state_decision sd = {.device = x->id,
                                   .context = j->context,
                                   .policy = j->policy,
                                   .costs = costs,
                                   .nonce = j->nonce,
                                   .version = changed ? x->version + 1 : 0,
                                   .sha = b->sha,
                                   .backbone = d->backbone_id,
                                   .size = b->len,
                                   .sig = b->sig};
    qd_err e = qd_state_decision(d->st, &sd);
    free(costs);
    if (e) {
        cJSON_Delete(r);
        job_reply_err(j, e, qd_errmsg());
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
    job_reply(j, r);
    if (changed)
        qdd_push(d, x);
out:
    if (j->held)
        qdd_blob_release(d, j->blob);
    free(j->context);
    free(j);
    qdd_maybe_finish_stop(d);
}

qd_err qdd_job_queue(struct qdd_call *c, struct qdd_job *j)
{
    if (c->d->inflight >= c->d->cfg.max_jobs) {
        free(j->context);
        free(j);
        return qd_seterr(QD_EBUSY, "%d decisions in flight (max_jobs = %d); retry later",
                         c->d->inflight, c->d->cfg.max_jobs);
    }
    j->w.data = j;
    j->d = c->d;
    j->req = *c->req;
    j->op = c->d->cur_op;
    j->queued_s = qdd_now_s();
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

qd_err qdd_job_redecide(struct qd_daemon *d, struct qdd_dev *x)
{
    struct qdd_job *j = calloc(1, sizeof *j);
    if (!j)
        return qd_seterr(QD_ENOMEM, "out of memory");
    j->kind = QDD_JOB_REPORT;
    j->internal = 1;
    j->battery = x->ctx.battery;
    j->dev = j->holds = qdd_dev_index(d, x);
    j->prof = x->prof;
    j->ctx = x->ctx, j->dev_flash = x->flash, j->dev_ram = x->ram;
    qdd_settings_of(d, x, &j->set);
    cJSON *cj = cJSON_CreateObject();
    qd_proto_ctx_write(cj, &x->ctx);
    cJSON_AddStringToObject(cj, "by", "settings");
    j->context = cJSON_PrintUnformatted(cj);
    cJSON_Delete(cj);
    j->w.data = j;
    j->d = d;
    int rc = uv_queue_work(d->loop, &j->w, job_work, job_done);
    if (rc) {
        free(j->context);
        free(j);
        return qd_seterr(QD_EIO, "queue: %s", uv_strerror(rc));
    }
    d->inflight++;
    x->busy = 1;
    return QD_OK;
}

qd_err qdd_blob_rebuild(struct qd_daemon *d, int bi)
{
    struct qdd_blob *b = qdd_blob(d, bi);
    uv_mutex_lock(&d->blob_mu);
    int mine = qdd_blob_find_locked(d, b->policy) == bi; /* of the current backbone */
    uv_mutex_unlock(&d->blob_mu);
    if (!mine)
        return qd_seterr(QD_ENOENT,
                         "models/%s.qm is missing or damaged and is another "
                         "backbone's: it cannot be rebuilt",
                         b->sha);
    if (!b->rebuilding) {
        struct qdd_job *j = calloc(1, sizeof *j);
        if (!j)
            return qd_seterr(QD_ENOMEM, "out of memory");
        j->kind = QDD_JOB_REBUILD;
        j->d = d;
        j->blob = bi;
        j->holds = -1;
        j->w.data = j;
        int rc = uv_queue_work(d->loop, &j->w, job_work, job_done);
        if (rc) {
            free(j);
            return qd_seterr(QD_EIO, "queue: %s", uv_strerror(rc));
        }
        d->inflight++;
        b->rebuilding = 1;
    }
    return qd_seterr(QD_EBUSY,
                     "models/%s.qm was missing or damaged: it is being rebuilt; "
                     "fetch again shortly",
                     b->sha);
}

/* Runs a job on the loop itself (a dry run whose searches have been quick): its completion
 * replies at once. */
void qdd_job_run_inline(struct qdd_call *c, struct qdd_job *j)
{
    j->w.data = j;
    j->d = c->d;
    j->req = *c->req;
    j->op = c->d->cur_op;
    j->queued_s = qdd_now_s();
    c->d->inflight++;
    c->deferred = 1;
    job_work(&j->w);
    job_done(&j->w, 0);
}

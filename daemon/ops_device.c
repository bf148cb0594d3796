/* The devices' ops, each behind the sender's own key: hello (profile and own sizes), report
 * (a context: decide, build, version, push; on the pool), decide (a dry run, by a device for
 * itself or by admin for any device or profile), fetch (a version's signed model), ack (a
 * version received and verified). Loop thread. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon_impl.h"

qd_err qdd_op_hello(struct qdd_call *c, cJSON *r) {
    struct qd_daemon *d = c->d;
    struct qdd_dev *x = c->dev;
    const char *prof = NULL;
    double fl = 0, ram = 0;
    QD_TRY(qd_proto_str(c->j, "profile", QD_PROTO_MAX_ID, 1, &prof));
    QD_TRY(qd_proto_num(c->j, "flash", 1, 1e12, 0, &fl));
    QD_TRY(qd_proto_num(c->j, "ram", 1, 1e12, 0, &ram));
    int p = qdd_profile_get(d, prof);
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
        x->push_due = qdd_now_ms();
        qdd_push_pending(d, x);
    }
    return QD_OK;
}

qd_err qdd_op_report(struct qdd_call *c, cJSON *r) {
    struct qd_daemon *d = c->d;
    struct qdd_dev *x = c->dev;
    if (x->prof < 0)
        return qd_seterr(QD_EINVAL, "device '%s' has not said hello (no profile)", x->id);
    if (x->busy)
        return qd_seterr(QD_EINVAL,
                         "device '%s' has a decision in flight; report again after "
                         "its reply",
                         x->id);
    struct qd_proto_ctx ctx;
    QD_TRY(qd_proto_ctx_read(c->j, &ctx));
    QD_TRY(qdd_profile_tables(d, x->prof));
    struct qdd_job *j = calloc(1, sizeof *j);
    if (!j)
        return qd_seterr(QD_ENOMEM, "out of memory");
    j->kind = QDD_JOB_REPORT;
    j->battery = ctx.battery;
    j->dev = qdd_dev_index(d, x);
    j->prof = x->prof;
    j->nonce = c->nonce;
    qdd_budgets(d, x, &d->prof[x->prof], &ctx, j->budget);
    cJSON *cj = cJSON_CreateObject();
    qd_proto_ctx_write(cj, &ctx);
    j->context = cJSON_PrintUnformatted(cj);
    cJSON_Delete(cj);
    QD_TRY(qdd_job_queue(c, j));
    x->ctx = ctx;
    x->busy = 1;
    (void)r;
    return QD_OK;
}

qd_err qdd_op_decide(struct qdd_call *c, cJSON *r) {
    struct qd_daemon *d = c->d;
    const char *prof = NULL, *id = NULL;
    QD_TRY(qd_proto_str(c->j, "profile", QD_PROTO_MAX_ID, 0, &prof));
    QD_TRY(qd_proto_str(c->j, "device", QD_PROTO_MAX_ID, 0, &id));
    struct qdd_dev *x = NULL;
    if (id && !(x = qdd_dev_find(d, id)))
        return qd_seterr(QD_ENODEV, "no device '%s'", id);
    if (!x && c->dev && !prof)
        x = c->dev;
    if (x && !c->admin && x != c->dev)
        return qd_seterr(QD_EAUTH, "a device may only decide for itself");
    int p = prof ? qdd_profile_get(d, prof) : x ? x->prof : -1;
    if (p < 0)
        return prof ? qd_wraperr(QD_EINVAL, "decide: ", NULL)
                    : qd_seterr(QD_EINVAL, "decide needs \"profile\" or a device with one");
    struct qd_proto_ctx ctx;
    QD_TRY(qd_proto_ctx_read(c->j, &ctx));
    QD_TRY(qdd_profile_tables(d, p));
    struct qdd_job *j = calloc(1, sizeof *j);
    if (!j)
        return qd_seterr(QD_ENOMEM, "out of memory");
    j->kind = QDD_JOB_DECIDE;
    j->battery = ctx.battery;
    j->prof = p;
    qdd_budgets(d, x, &d->prof[p], &ctx, j->budget);
    (void)r;
    /* A dry run builds nothing: when this profile's searches have been quick, answering on
     * the loop saves two thread hand-offs (measured: 8.3k -> 11.8k decide/s with 4 clients);
     * slow searches (large models) still go to the pool and never stall the loop. */
    if (d->prof[p].search_us > 0 && d->prof[p].search_us < INLINE_SEARCH_US) {
        qdd_job_run_inline(c, j);
        return QD_OK;
    }
    return qdd_job_queue(c, j);
}

qd_err qdd_op_fetch(struct qdd_call *c, cJSON *r) {
    struct qd_daemon *d = c->d;
    struct qdd_dev *x = c->dev;
    int64_t v = x->version;
    QD_TRY(qd_proto_int(c->j, "version", 1, INT32_MAX, 0, &v));
    if (v == 0)
        return qd_seterr(QD_ENOENT, "device '%s' has no model yet", x->id);
    char sha[65];
    QD_TRY(qd_state_version_sha(d->st, x->id, v, sha));
    int bi;
    QD_TRY(qdd_blob_of_sha(d, sha, &bi));
    const uint8_t *qm;
    size_t len;
    QD_TRY(qdd_blob_bytes(d, bi, &qm, &len));
    uint8_t *out = malloc(len + QD_PROTO_SIG_BYTES);
    if (!out)
        return qd_seterr(QD_ENOMEM, "fetch: out of memory");
    memcpy(out, qm, len);
    memcpy(out + len, d->blobs[bi]->sig, QD_PROTO_SIG_BYTES);
    qdd_reply_raw(d, c->req, out, len + QD_PROTO_SIG_BYTES);
    free(out);
    c->deferred = 1; /* replied */
    (void)r;
    return QD_OK;
}

qd_err qdd_op_ack(struct qdd_call *c, cJSON *r) {
    struct qd_daemon *d = c->d;
    struct qdd_dev *x = c->dev;
    int64_t v = 0;
    const char *sha = NULL;
    QD_TRY(qd_proto_int(c->j, "version", 1, INT32_MAX, 1, &v));
    QD_TRY(qd_proto_str(c->j, "sha256", 64, 1, &sha));
    char want[65];
    QD_TRY(qd_state_version_sha(d->st, x->id, v, want));
    if (strcmp(want, sha))
        return qd_seterr(QD_ECHECKSUM, "version %lld of '%s' has sha256 %s, not %s", (long long)v,
                         x->id, want, sha);
    QD_TRY(qd_state_ack(d->st, x->id, v, c->nonce));
    if (v > x->acked)
        x->acked = v;
    d->n_ack++;
    cJSON_AddNumberToObject(r, "version", (double)x->version);
    cJSON_AddNumberToObject(r, "acked", (double)x->acked);
    return QD_OK;
}

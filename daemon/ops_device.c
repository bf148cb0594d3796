/* The devices' ops, each behind the sender's own key: hello (profile and own sizes), report
 * (a context: decide, build, version, push; on the pool), decide (a dry run, by a device for
 * itself or by admin for any device or profile), fetch (a version's signed model), ack (a
 * version received and verified). Loop thread. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/selftest.h"
#include "core/log.h"
#include "daemon/daemon_impl.h"
#include "proto/manifest.h"

qd_err qdd_op_hello(struct qdd_call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    struct qdd_dev *x = c->dev;
    const char *prof = NULL;
    double fl = 0, ram = 0;
    QD_TRY(qd_proto_str(c->j, "profile", QD_PROTO_MAX_ID, 1, &prof));
    QD_TRY(qd_proto_num(c->j, "flash", 1, 1e12, 0, &fl));
    QD_TRY(qd_proto_num(c->j, "ram", 1, 1e12, 0, &ram));
    const char *grp = NULL; /* a device may declare its group */
    QD_TRY(qd_proto_str(c->j, "group", QD_PROTO_MAX_ID, 0, &grp));
    int p = qdd_profile_get(d, prof);
    if (p < 0)
        return qd_wraperr(QD_EINVAL, "hello: ", NULL);
    int g = x->group;
    if (grp && grp[0])
        QD_TRY(qdd_group_get(d, grp, &g));
    if (g != x->group)
        QD_TRY(qd_state_device_group(d->st, x->id, grp));
    x->group = g;
    QD_TRY(qd_state_device_hello(d->st, x->id, prof, fl, ram, c->nonce));
    x->prof = p;
    x->flash = fl, x->ram = ram;
    cJSON_AddNumberToObject(r, "version", (double)x->version);
    cJSON_AddNumberToObject(r, "acked", (double)x->acked);
    if (x->blob >= 0)
        cJSON_AddStringToObject(r, "sha256", qdd_blob(d, x->blob)->sha);
    cJSON_AddNumberToObject(r, "ack_timeout_ms", d->cfg.ack_timeout_ms);
    /* a device that comes back without the current version gets it pushed again now */
    if (x->version > x->acked && x->blob >= 0) {
        x->push_due = qdd_now_ms();
        qdd_push_pending(d, x);
    }
    return QD_OK;
}

static qd_err pinned_report(struct qdd_call *c, const struct qd_proto_ctx *ctx,
                            const struct qdd_settings *set, cJSON *r)
{
    struct qd_daemon *d = c->d;
    struct qdd_dev *x = c->dev;
    cJSON *cj = cJSON_CreateObject();
    qd_proto_ctx_write(cj, ctx);
    char *text = cJSON_PrintUnformatted(cj), why[160];
    cJSON_Delete(cj);
    if (set->pin == QDD_PIN_CURRENT)
        snprintf(why, sizeof why,
                 "{\"code\":\"PINNED\",\"message\":\"held on its current "
                 "version by its group\"}");
    else
        snprintf(why, sizeof why, "{\"code\":\"PINNED\",\"message\":\"pinned to version %lld\"}",
                 (long long)set->pin);
    struct qd_state_decision sd = {
        .device = x->id, .context = text, .error = why, .nonce = c->nonce};
    qd_err e = qd_state_decision(d->st, &sd);
    free(text);
    QD_TRY(e);
    x->ctx = *ctx;
    cJSON_AddBoolToObject(r, "changed", 0);
    cJSON_AddNumberToObject(r, "version", (double)x->version);
    cJSON_AddNumberToObject(r, "pinned", (double)set->pin);
    if (x->blob >= 0) {
        cJSON_AddStringToObject(r, "sha256", qdd_blob(d, x->blob)->sha);
        cJSON_AddStringToObject(r, "policy", qdd_blob(d, x->blob)->policy);
    }
    return QD_OK;
}

qd_err qdd_op_report(struct qdd_call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    struct qdd_dev *x = c->dev;
    if (x->prof < 0)
        return qd_seterr(QD_EINVAL, "device '%s' has not said hello (no profile)", x->id);
    if (x->busy)
        return qd_seterr(QD_EBUSY,
                         "device '%s' has a decision in flight; report again after "
                         "its reply",
                         x->id);
    struct qd_proto_ctx ctx;
    QD_TRY(qd_proto_ctx_read(c->j, &ctx));
    struct qdd_settings set;
    qdd_settings_of(d, x, &set);
    if (set.pin) /* held on a version by the operator: the context is recorded, no decision */
        return pinned_report(c, &ctx, &set, r);
    struct qdd_job *j = calloc(1, sizeof *j);
    if (!j)
        return qd_seterr(QD_ENOMEM, "out of memory");
    j->set = set;
    j->kind = QDD_JOB_REPORT;
    j->battery = ctx.battery;
    j->dev = j->holds = qdd_dev_index(d, x);
    j->prof = x->prof;
    j->nonce = c->nonce;
    j->ctx = ctx, j->dev_flash = x->flash, j->dev_ram = x->ram;
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

qd_err qdd_op_decide(struct qdd_call *c, cJSON *r)
{
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
    if (c->dev && c->dev->busy) /* a device has one decision at a time */
        return qd_seterr(QD_EBUSY,
                         "device '%s' has a decision in flight; decide again after "
                         "its reply",
                         c->dev->id);
    int p = prof ? qdd_profile_get(d, prof) : x ? x->prof : -1;
    if (p < 0)
        return prof ? qd_wraperr(QD_EINVAL, "decide: ", NULL)
                    : qd_seterr(QD_EINVAL, "decide needs \"profile\" or a device with one");
    struct qd_proto_ctx ctx;
    QD_TRY(qd_proto_ctx_read(c->j, &ctx));
    struct qdd_job *j = calloc(1, sizeof *j);
    if (!j)
        return qd_seterr(QD_ENOMEM, "out of memory");
    j->kind = QDD_JOB_DECIDE;
    if (x)
        qdd_settings_of(d, x, &j->set); /* a device's dry run under its operator's settings */
    else
        qdd_settings_none(&j->set);
    j->battery = ctx.battery;
    j->prof = p;
    j->holds = c->dev ? qdd_dev_index(d, c->dev) : -1;
    j->ctx = ctx, j->dev_flash = x ? x->flash : 0, j->dev_ram = x ? x->ram : 0;
    (void)r;
    /* A dry run builds nothing: when this profile's searches have been quick, answering on
     * the loop saves two thread hand-offs (measured: 8.3k -> 11.8k decide/s with 4 clients);
     * slow searches (large models) still go to the pool and never stall the loop. */
    if (d->prof[p].search_us > 0 && d->prof[p].search_us < INLINE_SEARCH_US) {
        qdd_job_run_inline(c, j);
        return QD_OK;
    }
    QD_TRY(qdd_job_queue(c, j));
    if (c->dev)
        c->dev->busy = 1;
    return QD_OK;
}

/* The device's version v (0: the current one) with a fresh signed manifest, in chunks: bytes
 * [offset, offset + at most fetch_chunk) of the model packed (raw, zstd, or a patch against
 * the version "have" the device holds, whichever is smallest). A device fetches its own; admin
 * names one with "device". */
qd_err qdd_op_fetch(struct qdd_call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    const char *id = NULL;
    QD_TRY(qd_proto_str(c->j, "device", QD_PROTO_MAX_ID, 0, &id));
    struct qdd_dev *x = c->dev;
    if (id && !(x = qdd_dev_find(d, id)))
        return qd_seterr(QD_ENODEV, "no device '%s'", id);
    if (!x)
        return qd_seterr(QD_EINVAL, "admin's fetch names a \"device\"");
    if (!c->admin && x != c->dev)
        return qd_seterr(QD_EAUTH, "a device may only fetch its own models");
    int64_t v = x->version, off = 0, max = (int64_t)d->cfg.fetch_chunk, have = 0;
    QD_TRY(qd_proto_int(c->j, "version", 0, INT32_MAX, 0, &v));
    QD_TRY(qd_proto_int(c->j, "offset", 0, INT64_C(1) << 40, 0, &off));
    QD_TRY(qd_proto_int(c->j, "max", 1, INT64_C(1) << 40, 0, &max));
    QD_TRY(qd_proto_int(c->j, "have", 0, INT32_MAX, 0, &have));
    const char *want = NULL; /* "raw": a client without zstd */
    QD_TRY(qd_proto_str(c->j, "pack", 8, 0, &want));
    if (want && strcmp(want, "raw") && qd_pack_parse(want) < 0)
        return qd_seterr(QD_EINVAL, "field \"pack\" must be raw, zstd or patch");
    if (v == 0 && (v = x->version) == 0)
        return qd_seterr(QD_ENOENT, "device '%s' has no model yet", x->id);
    struct qd_manifest m = {.version = v, .prev = v - 1};
    snprintf(m.device, sizeof m.device, "%s", x->id);
    QD_TRY(qd_state_version_sha(d->st, x->id, v, m.sha));
    QD_TRY(qd_state_blob_backbone(d->st, m.sha, m.backbone, sizeof m.backbone));
    int bi, base = -1;
    QD_TRY(qdd_blob_of_sha(d, m.sha, &bi));
    /* the version the device holds, if it is one of its own: a patch against it may be
     * smallest */
    char bsha[65];
    if (have > 0 && have != v && !qd_state_version_sha(d->st, x->id, have, bsha) &&
        qdd_blob_of_sha(d, bsha, &base))
        base = -1;
    const uint8_t *qm;
    size_t len;
    qd_err e = qdd_blob_bytes(d, bi, &qm, &len);
    if (e) { /* the file went missing or bad: build it again, the device retries */
        qd_log(QD_LOG_ERROR, "%s", qd_errmsg());
        return qdd_blob_rebuild(d, bi);
    }
    struct qdd_pack raw = {.kind = QD_PACK_RAW, .b = (uint8_t *)qm, .n = len};
    const struct qdd_pack *pk = &raw;
    if (!want || strcmp(want, "raw"))
        QD_TRY(qdd_pack_get(d, bi, base, &pk));
    if (off > (int64_t)pk->n)
        return qd_seterr(QD_EINVAL, "offset %lld is past the %zu bytes to send", (long long)off,
                         pk->n);
    size_t n = pk->n - (size_t)off;
    if ((double)n > d->cfg.fetch_chunk)
        n = (size_t)d->cfg.fetch_chunk;
    if ((int64_t)n > max)
        n = (size_t)max;
    m.size = (int64_t)len;
    snprintf(m.policy, sizeof m.policy, "%s", qdd_blob(d, bi)->policy);
    const char *test;
    QD_TRY(qdd_blob_selftest(d, bi, &test));
    m.test_seed = (int64_t)qd_selftest_seed(m.sha);
    m.test_n = QD_SELFTEST_N;
    snprintf(m.test_sha, sizeof m.test_sha, "%s", test);
    m.created = qd_proto_now_us() / 1000000;
    m.expires = m.created + (int64_t)d->cfg.manifest_ttl_s;
    char *text, hdr[256];
    size_t tl;
    uint8_t sig[QD_PROTO_SIG_BYTES], *out;
    QD_TRY(qd_manifest_sign(&m, d->sign_sk, &text, &tl, sig));
    snprintf(hdr, sizeof hdr,
             "{\"version\":%lld,\"offset\":%lld,\"total\":%zu,\"encoding\":\"%s\","
             "\"base\":%lld,\"manifest_len\":%zu}",
             (long long)v, (long long)off, pk->n, qd_pack_name(pk->kind),
             (long long)(pk->kind == QD_PACK_PATCH ? have : 0), tl);
    size_t on;
    e = qd_proto_chunk_encode(hdr, text, tl, sig, pk->b + off, n, &out, &on);
    free(text);
    QD_TRY(e);
    qdd_reply_raw(d, c->req, out, on);
    free(out);
    d->n_fetch++;
    d->n_fetch_bytes += (long)n;
    c->deferred = 1; /* replied */
    (void)r;
    return QD_OK;
}

qd_err qdd_op_ack(struct qdd_call *c, cJSON *r)
{
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
    if (v == x->version && x->pushed_s > 0) {
        qdd_hist_observe(&d->h_push_ack, qdd_now_s() - x->pushed_s);
        x->pushed_s = 0;
    }
    cJSON_AddNumberToObject(r, "version", (double)x->version);
    cJSON_AddNumberToObject(r, "acked", (double)x->acked);
    return QD_OK;
}

/* A device says what happened to a model: refused (with the error code), a failed self-test,
 * installed. Recorded as an event of that device (`device` shows them). */
qd_err qdd_op_event(struct qdd_call *c, cJSON *r)
{
    static const char *const kinds[] = {"refused", "selftest-failed", "installed"};
    const char *kind = NULL, *code = "", *msg = "";
    int64_t v = 0;
    QD_TRY(qd_proto_str(c->j, "kind", 32, 1, &kind));
    QD_TRY(qd_proto_int(c->j, "version", 0, INT64_C(1) << 53, 0, &v));
    QD_TRY(qd_proto_str(c->j, "code", 16, 0, &code));
    QD_TRY(qd_proto_str(c->j, "message", 512, 0, &msg));
    size_t k = 0;
    while (k < sizeof kinds / sizeof *kinds && strcmp(kinds[k], kind))
        k++;
    if (k == sizeof kinds / sizeof *kinds)
        return qd_seterr(QD_EINVAL, "field \"kind\" must be refused, selftest-failed or installed");
    char detail[700], name[48];
    snprintf(detail, sizeof detail, "version %lld%s%s%s%s", (long long)v, code[0] ? " " : "", code,
             msg[0] ? ": " : "", msg);
    snprintf(name, sizeof name, "device-%s", kind);
    QD_TRY(qd_state_event(c->d->st, c->dev->id, name, detail));
    c->d->n_event++;
    if (k < 2) { /* a refusal, by its code (a failed self-test: ESELFTEST) */
        int e = k == 1 ? QD_ESELFTEST : QD_EINVAL;
        for (int i = 1; k == 0 && i < QD_ERR_COUNT; i++)
            if (!strcmp(qd_err_name(i), code))
                e = i;
        c->d->n_refusal[e]++;
    }
    (void)r;
    return QD_OK;
}

/* The operator's ops, all but health behind the admin key: health (phase, backbone, uptime),
 * stats (counters), devices (the registry, paged), device (one, with its history), keys (add,
 * rotate a device's key; the signing public key). Loop thread. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "core/log.h"
#include "daemon/daemon_impl.h"

qd_err qdd_op_health(struct qdd_call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    static const char *const ph[] = {"loading", "training", "sensitivity", "ready",
                                     "failed",  "supernet", "gate"};
    int p = atomic_load(&d->phase);
    cJSON_AddBoolToObject(r, "ready", p == QDD_PH_READY);
    cJSON_AddStringToObject(r, "phase", ph[p]);
    if (p == QDD_PH_TRAINING || p == QDD_PH_SUPERNET) {
        cJSON_AddNumberToObject(r, "epoch", atomic_load(&d->epoch));
        cJSON_AddNumberToObject(r, "epochs", atomic_load(&d->epochs));
    }
    if (p == QDD_PH_FAILED)
        cJSON_AddStringToObject(r, "message", d->phase_msg);
    if (p == QDD_PH_READY) {
        cJSON_AddStringToObject(r, "backbone", d->backbone_id);
        cJSON_AddStringToObject(r, "model", d->dec.m.family);
        cJSON_AddStringToObject(r, "data", d->dec.ds);
        cJSON_AddNumberToObject(r, "layers", d->dec.g.nq);
        cJSON_AddStringToObject(r, "decider", d->have_gate ? "gate" : "sensitivity");
    }
    cJSON_AddNumberToObject(r, "uptime_s", qdd_now_s() - d->started);
    cJSON_AddNumberToObject(r, "devices", d->ndev);
    return QD_OK;
}

qd_err qdd_op_stats(struct qdd_call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    qdd_op_health(c, r);
    cJSON_AddNumberToObject(r, "requests", (double)d->n_req);
    cJSON_AddNumberToObject(r, "errors", (double)d->n_err);
    cJSON *ec = cJSON_AddObjectToObject(r, "errors_by_code");
    for (int i = 1; i < QD_ERR_COUNT; i++)
        if (d->n_errcode[i])
            cJSON_AddNumberToObject(ec, qd_err_name(i), (double)d->n_errcode[i]);
    cJSON_AddNumberToObject(r, "decisions", (double)d->n_dec);
    cJSON_AddNumberToObject(r, "builds", (double)d->n_build);
    cJSON_AddNumberToObject(r, "blob_cache_hits", (double)d->n_cache_hit);
    cJSON_AddNumberToObject(r, "blobs", qdd_blob_count(d));
    cJSON_AddNumberToObject(r, "pushes", (double)d->n_push);
    cJSON_AddNumberToObject(r, "repushes", (double)d->n_repush);
    cJSON_AddNumberToObject(r, "acks", (double)d->n_ack);
    cJSON_AddNumberToObject(r, "fetches", (double)d->n_fetch);
    cJSON_AddNumberToObject(r, "fetch_bytes", (double)d->n_fetch_bytes);
    int unacked = 0;
    for (int i = 0; i < d->ndev; i++)
        unacked += d->devs[i]->version > d->devs[i]->acked;
    cJSON_AddNumberToObject(r, "unacked", unacked);
    cJSON_AddNumberToObject(r, "inflight", d->inflight);
    cJSON_AddNumberToObject(r, "refused_unread", (double)d->n_unread);
    cJSON_AddNumberToObject(r, "batches", (double)d->n_batches);
    cJSON_AddNumberToObject(r, "redecisions", (double)d->n_redecide);
    cJSON_AddNumberToObject(r, "reverts", (double)d->n_revert);
    cJSON_AddNumberToObject(r, "groups", d->ngroup);
    cJSON_AddNumberToObject(r, "redo_queued", d->nredo);
    cJSON *rt = cJSON_AddObjectToObject(r, "retention");
    cJSON_AddNumberToObject(rt, "sweeps", (double)d->n_sweep);
    cJSON_AddNumberToObject(rt, "state_bytes", (double)d->state_bytes);
    cJSON_AddNumberToObject(rt, "blobs_removed", (double)d->n_pruned_blobs);
    cJSON_AddNumberToObject(rt, "versions_removed", (double)d->n_pruned_versions);
    cJSON_AddNumberToObject(rt, "decisions_removed", (double)d->n_pruned_decisions);
    cJSON_AddNumberToObject(rt, "events_removed", (double)d->n_pruned_events);
    return QD_OK;
}

static void dev_json(struct qd_daemon *d, const struct qdd_dev *x, cJSON *o)
{
    cJSON_AddStringToObject(o, "id", x->id);
    cJSON_AddStringToObject(o, "profile", x->prof >= 0 ? d->prof[x->prof].dev.name : "");
    cJSON_AddNumberToObject(o, "version", (double)x->version);
    cJSON_AddNumberToObject(o, "acked", (double)x->acked);
    if (x->blob >= 0) {
        cJSON_AddStringToObject(o, "sha256", qdd_blob(d, x->blob)->sha);
        cJSON_AddStringToObject(o, "policy", qdd_blob(d, x->blob)->policy);
    }
    if (!isnan(x->ctx.battery))
        cJSON_AddNumberToObject(o, "battery", x->ctx.battery);
    if (x->group >= 0)
        cJSON_AddStringToObject(o, "group", d->groups[x->group].name);
    static const char *const status[] = {"active", "revoked", "deleted"};
    cJSON_AddStringToObject(o, "status", status[x->status]);
    if (x->seen_ms)
        cJSON_AddNumberToObject(o, "seen_ms", (double)x->seen_ms);
    if (x->set && !qdd_settings_empty(x->set))
        cJSON_AddItemToObject(o, "settings", qdd_settings_json(x->set));
    if (x->group >= 0 || x->set) {
        struct qdd_settings s;
        qdd_settings_of(d, x, &s);
        if (!qdd_settings_empty(&s))
            cJSON_AddItemToObject(o, "effective", qdd_settings_json(&s));
    }
}

/* The registry, paged, filtered by group, profile, unacknowledged version, not heard from for
 * unseen_s seconds, and status (deleted devices only when asked for). */
qd_err qdd_op_devices(struct qdd_call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    int64_t off = 0, lim = 1000, unseen = 0;
    const char *grp = NULL, *prof = NULL, *status = NULL;
    QD_TRY(qd_proto_int(c->j, "offset", 0, INT32_MAX, 0, &off));
    QD_TRY(qd_proto_int(c->j, "limit", 1, 10000, 0, &lim));
    QD_TRY(qd_proto_int(c->j, "unseen_s", 0, INT64_C(1) << 40, 0, &unseen));
    QD_TRY(qd_proto_str(c->j, "group", QD_PROTO_MAX_ID, 0, &grp));
    QD_TRY(qd_proto_str(c->j, "profile", QD_PROTO_MAX_ID, 0, &prof));
    QD_TRY(qd_proto_str(c->j, "status", 16, 0, &status));
    const cJSON *un = cJSON_GetObjectItemCaseSensitive(c->j, "unacked");
    if (un && !cJSON_IsBool(un))
        return qd_seterr(QD_EINVAL, "field \"unacked\" must be true or false");
    int g = grp ? qdd_group_find(d, grp) : -1, want = -1;
    if (grp && g < 0)
        return qd_seterr(QD_ENOGROUP, "no group '%s'", grp);
    static const char *const names[] = {"active", "revoked", "deleted"};
    for (int k = 0; status && k < 3; k++)
        want = strcmp(status, names[k]) ? want : k;
    if (status && want < 0)
        return qd_seterr(QD_EINVAL, "field \"status\" must be active, revoked or deleted");
    int64_t now = qd_proto_now_us() / 1000, n = 0;
    cJSON *a = cJSON_AddArrayToObject(r, "devices");
    for (int i = 0; i < d->ndev; i++) {
        const struct qdd_dev *x = d->devs[i];
        if ((want >= 0 ? x->status != want : x->status == QD_STATE_DELETED) ||
            (grp && x->group != g) ||
            (prof && (x->prof < 0 || strcmp(d->prof[x->prof].dev.name, prof))) ||
            (cJSON_IsTrue(un) && x->acked >= x->version) ||
            (un && cJSON_IsFalse(un) && x->acked < x->version) ||
            (unseen && now - x->seen_ms < unseen * 1000))
            continue;
        if (n++ < off || n > off + lim)
            continue;
        cJSON *o = cJSON_CreateObject();
        dev_json(d, x, o);
        cJSON_AddItemToArray(a, o);
    }
    cJSON_AddNumberToObject(r, "total", (double)n);
    return QD_OK;
}

qd_err qdd_op_device(struct qdd_call *c, cJSON *r)
{
    const char *id = NULL;
    QD_TRY(qd_proto_str(c->j, "id", QD_PROTO_MAX_ID, 1, &id));
    struct qdd_dev *x = qdd_dev_find(c->d, id);
    if (!x)
        return qd_seterr(QD_ENODEV, "no device '%s'", id);
    cJSON *o = cJSON_AddObjectToObject(r, "device");
    dev_json(c->d, x, o);
    return qd_state_device_history(c->d->st, x->id, 20, o);
}

qd_err qdd_op_keys(struct qdd_call *c, cJSON *r)
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
    uint8_t seal_to[crypto_box_PUBLICKEYBYTES];
    int sealed = cJSON_GetObjectItem(c->j, "seal_to") != NULL;
    if (sealed) {
        const char *hex = NULL;
        QD_TRY(qd_proto_str(c->j, "seal_to", 2 * sizeof seal_to, 1, &hex));
        if (strlen(hex) != 2 * sizeof seal_to || qd_proto_unhex(hex, seal_to, sizeof seal_to))
            return qd_seterr(QD_EINVAL,
                             "field \"seal_to\" must be an X25519 public key, %zu "
                             "hex digits",
                             2 * sizeof seal_to);
    } else if (!d->cfg.keys_in_clear && strncmp(d->cfg.control, "ipc://", 6) &&
               strncmp(d->cfg.control, "inproc://", 9))
        return qd_seterr(QD_EAUTH,
                         "a device key is not sent in clear over %s: give \"seal_to\" "
                         "(quantctl and the clients do) or set keys_in_clear = 1",
                         d->cfg.control);
    uint8_t key[QD_PROTO_KEY_BYTES];
    randombytes_buf(key, sizeof key);
    struct qdd_dev *x = qdd_dev_find(d, id);
    if (!strcmp(act, "add")) {
        if (x)
            return qd_seterr(QD_EEXIST, "device '%s' already has a key (use rotate)", id);
        QD_TRY(qd_state_device_add(d->st, id, key));
        struct qd_state_device s = {0};
        snprintf(s.id, sizeof s.id, "%s", id);
        memcpy(s.key, key, sizeof key);
        QD_TRY(qdd_dev_insert(d, &s, &x));
    } else {
        if (!x)
            return qd_seterr(QD_ENODEV, "no device '%s'", id);
        QD_TRY(qd_state_device_set_key(d->st, id, key));
        if (x->status != QD_STATE_ACTIVE)
            QD_TRY(qd_state_device_status(d->st, id, QD_STATE_ACTIVE));
        memcpy(x->key, key, sizeof key);
        x->nonce = 0;
        x->status = QD_STATE_ACTIVE; /* a revoked or deleted device comes back with the new key */
    }
    if (qd_state_event(d->st, id, !strcmp(act, "add") ? "key-added" : "key-rotated", NULL))
        qd_log(QD_LOG_WARN, "%s", qd_errmsg());
    cJSON_AddStringToObject(r, "id", id);
    if (sealed) { /* only the holder of seal_to's secret key can open it */
        uint8_t box[crypto_box_SEALBYTES + QD_PROTO_KEY_BYTES];
        char hex[2 * sizeof box + 1];
        crypto_box_seal(box, key, sizeof key, seal_to);
        qd_proto_hex(box, sizeof box, hex);
        cJSON_AddStringToObject(r, "key_sealed", hex);
    } else {
        char hex[2 * QD_PROTO_KEY_BYTES + 1];
        qd_proto_hex(key, sizeof key, hex);
        cJSON_AddStringToObject(r, "key", hex);
        sodium_memzero(hex, sizeof hex);
    }
    sodium_memzero(key, sizeof key);
    return QD_OK;
}

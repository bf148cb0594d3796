/* The request path: drain the raw REP socket -> parse (size, JSON, version, op) -> look the op
 * up in OPS (flags: needs the admin key, a device's key, a ready backbone) -> check the MAC and
 * the nonce -> the handler (ops_admin.c, ops_device.c), which replies at once or queues a job
 * whose completion replies. Every failure is an error reply with a stable code; nothing a
 * client sends can stop the loop. Loop thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "daemon/daemon_impl.h"

/* F_OWN_NONCE: the handler records the nonce in its own transaction (else authenticate does,
 * before the op runs: every accepted nonce survives a restart, kill -9 included). */
enum { UNREAD_MAX = 2048 }; /* bytes: larger requests wait while unauth_rate is spent */

enum { F_ADMIN = 1, F_DEVICE = 2, F_AUTH = 4, F_READY = 8, F_NOAUTH = 16, F_OWN_NONCE = 32 };

static const struct op {
    const char *name;
    qdd_op_fn fn;
    int flags;
} OPS[] = {
    {"health", qdd_op_health, F_NOAUTH},
    {"stats", qdd_op_stats, F_ADMIN},
    {"devices", qdd_op_devices, F_ADMIN},
    {"device", qdd_op_device, F_ADMIN},
    {"keys", qdd_op_keys, F_ADMIN},
    {"hello", qdd_op_hello, F_DEVICE | F_READY | F_OWN_NONCE},
    {"report", qdd_op_report, F_DEVICE | F_READY | F_OWN_NONCE},
    {"decide", qdd_op_decide, F_AUTH | F_READY},
    {"fetch", qdd_op_fetch, F_AUTH | F_READY},
    {"ack", qdd_op_ack, F_DEVICE | F_READY | F_OWN_NONCE},
    {"event", qdd_op_event, F_DEVICE},
    {"group", qdd_op_group, F_ADMIN},
    {"set", qdd_op_set, F_ADMIN},
    {"rollback", qdd_op_rollback, F_ADMIN | F_READY},
    {"revoke", qdd_op_revoke, F_ADMIN},
    {"delete", qdd_op_revoke, F_ADMIN},
    {"events", qdd_op_events, F_ADMIN},
    {"pareto", qdd_op_pareto, F_ADMIN | F_READY},
};

#define NOPS (int)(sizeof OPS / sizeof OPS[0])
_Static_assert(sizeof OPS / sizeof OPS[0] <= QDD_MAX_OPS, "QDD_MAX_OPS holds the op table");

int qdd_op_count(void)
{
    return NOPS;
}

const char *qdd_op_name(int i)
{
    return i >= 0 && i < NOPS ? OPS[i].name : "none";
}

/* MAC and nonce; sets c->dev / c->admin. */
static qd_err authenticate(struct qdd_call *c, const struct op *op, const char *msg, size_t len)
{
    struct qd_daemon *d = c->d;
    const char *from = NULL;
    QD_TRY(qd_proto_str(c->j, "from", QD_PROTO_MAX_ID, 1, &from));
    int64_t nonce = 0;
    QD_TRY(qd_proto_int(c->j, "nonce", 1, INT64_C(1) << 53, 1, &nonce));
    int admin = !strcmp(from, "admin");
    struct qdd_dev *x = admin ? NULL : qdd_dev_find(d, from);
    if (!admin && !x) { /* the same check, time and reply as a bad MAC: which ids exist is
                         * not told to whoever asks */
        qd_err e = qd_proto_verify(msg, len, d->unknown_key);
        return e ? e : qd_seterr(QD_EAUTH, "bad message authentication code");
    }
    QD_TRY(qd_proto_verify(msg, len, admin ? d->admin_key : x->key));
    if (x && x->status != QD_STATE_ACTIVE) /* told only to the holder of its key */
        return qd_seterr(QD_EREVOKED, "device '%s' is %s; the operator's keys rotate ends it",
                         x->id, x->status == QD_STATE_DELETED ? "deleted" : "revoked");
    if ((op->flags & F_ADMIN) && !admin)
        return qd_seterr(QD_EAUTH, "op '%s' needs the admin key", op->name);
    if ((op->flags & F_DEVICE) && admin)
        return qd_seterr(QD_EINVAL, "op '%s' is sent by a device, not by admin", op->name);
    int64_t last = admin ? d->admin_nonce : x->nonce, now = qd_proto_now_us();
    if (nonce <= last)
        return qd_seterr(QD_EREPLAY, "nonce %lld is not above the last accepted (%lld)",
                         (long long)nonce, (long long)last);
    if (llabs(nonce - now) > QD_PROTO_NONCE_WINDOW_US)
        return qd_seterr(QD_EREPLAY, "nonce %lld is more than %d s from the daemon's clock",
                         (long long)nonce, (int)(QD_PROTO_NONCE_WINDOW_US / 1000000));
    if (!(op->flags & F_OWN_NONCE)) { /* durable before the op runs: a replay after a restart
                                       * finds it */
        char v[24];
        snprintf(v, sizeof v, "%lld", (long long)nonce);
        QD_TRY(admin ? qd_state_meta_set(d->st, "admin_nonce", v)
                     : qd_state_device_nonce(d->st, x->id, nonce));
    }
    if (admin)
        d->admin_nonce = nonce;
    else
        x->nonce = nonce, x->seen_ms = qd_proto_now_us() / 1000;
    c->admin = admin;
    c->dev = x;
    c->nonce = nonce;
    return QD_OK;
}

static void handle_op(struct qd_daemon *d, struct qd_tp_req *req);

/* One request, counted by op for the metrics (cur_op names the op of the replies sent). */
static void handle(struct qd_daemon *d, struct qd_tp_req *req)
{
    d->cur_op = -1;
    handle_op(d, req);
    d->n_op[d->cur_op + 1]++;
    d->cur_op = -1;
}

static void handle_op(struct qd_daemon *d, struct qd_tp_req *req)
{
    d->n_req++;
    const char *msg = req->body;
    size_t len = req->len;
    struct qdd_call c = {.d = d, .req = req};
    /* Parsing and the MAC cost the loop time before anyone is known: requests that fail them
     * spend unauth_rate's bytes; once spent, large requests are refused unread (small ones,
     * as every device op is, still go through) until the budget refills. */
    if (d->unauth_tokens < 0 && len > UNREAD_MAX) {
        d->n_unread++;
        char m[200];
        snprintf(m, sizeof m,
                 "requests failing authentication exceed unauth_rate (%g MB/s): "
                 "requests over %d bytes are refused unread for now",
                 d->cfg.unauth_rate, UNREAD_MAX);
        qdd_reply_err(d, req, QD_ELIMIT, m);
        return;
    }
    qd_err e = qd_proto_parse(msg, len, (size_t)d->cfg.max_message, &c.j);
    if (e) {
        d->unauth_tokens -= (double)len;
        qdd_reply_err(d, req, e, qd_errmsg());
        return;
    }
    const char *name = cJSON_GetObjectItemCaseSensitive(c.j, "op")->valuestring;
    const struct op *op = NULL;
    for (int i = 0; i < NOPS; i++)
        if (!strcmp(OPS[i].name, name))
            op = &OPS[i], d->cur_op = i;
    if (!op) {
        char m[128];
        snprintf(m, sizeof m, "unknown op '%.40s'", name);
        qdd_reply_err(d, req, QD_EOP, m);
        cJSON_Delete(c.j);
        return;
    }
    if (!(op->flags & F_NOAUTH) && (e = authenticate(&c, op, msg, len))) {
        if (e == QD_EAUTH || e == QD_EFORMAT || e == QD_EINVAL)
            d->unauth_tokens -= (double)len;
        qdd_reply_err(d, req, e, qd_errmsg());
        cJSON_Delete(c.j);
        return;
    }
    if ((op->flags & F_READY) && atomic_load(&d->phase) != QDD_PH_READY) {
        char m[700];
        snprintf(m, sizeof m, "the backbone is not ready (%s); try again later",
                 atomic_load(&d->phase) == QDD_PH_FAILED ? d->phase_msg : "training or loading");
        qdd_reply_err(d, req, QD_ENOTREADY, m);
        cJSON_Delete(c.j);
        return;
    }
    if (d->stopping) {
        qdd_reply_err(d, req, QD_ENOTREADY, "the daemon is stopping");
        cJSON_Delete(c.j);
        return;
    }
    cJSON *r = qd_proto_ok();
    e = op->fn(&c, r);
    if (e) {
        cJSON_Delete(r);
        if (!c.deferred)
            qdd_reply_err(d, req, e, qd_errmsg());
    } else if (!c.deferred)
        qdd_reply_json(d, req, r);
    else
        cJSON_Delete(r);
    cJSON_Delete(c.j);
}

void qdd_on_readable(uv_poll_t *p, int status, int events)
{
    struct qd_daemon *d = p->data;
    if (status < 0) {
        qd_log(QD_LOG_ERROR, "poll: %s", uv_strerror(status));
        return;
    }
    /* Group commit: every request waiting is handled inside one transaction (their nonces,
     * hellos, acks, events), committed with one fsync, and only then replied to. If the batch
     * cannot start (another writer holds the file), each request commits on its own. */
    d->batching = !qd_state_batch_begin(d->st);
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
    if (!d->batching)
        return;
    qd_err e = qd_state_batch_commit(d->st);
    char why[600] = "";
    if (e) {
        snprintf(why, sizeof why, "not recorded, try again: %s", qd_errmsg());
        qd_log(QD_LOG_ERROR, "state: %s", qd_errmsg());
    } else
        d->n_batches++;
    qdd_reply_flush(d, e, why);
}

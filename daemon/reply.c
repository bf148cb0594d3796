/* Replies on the REP socket: raw bytes, a JSON object, or an error with its stable code (counted
 * by code for stats). While the loop drains a batch of requests (whose state writes commit
 * together), replies wait in a queue: none leaves before what it reports is durable; a failed
 * commit turns each into an error. Loop thread. */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "daemon/daemon_impl.h"

void qdd_reply_raw(struct qd_daemon *d, struct qd_tp_req *r, const void *b, size_t n)
{
    if (d->batching) {
        if (d->nrq == d->caprq) {
            int cap = d->caprq ? 2 * d->caprq : 64;
            struct qdd_queued *v = realloc(d->rq, cap * sizeof *v);
            if (!v) {
                qd_log(QD_LOG_ERROR, "reply: out of memory (a reply dropped)");
                qd_tp_req_drop(r);
                return;
            }
            d->rq = v, d->caprq = cap;
        }
        struct qdd_queued *q = &d->rq[d->nrq];
        if (!(q->b = malloc(n ? n : 1))) {
            qd_log(QD_LOG_ERROR, "reply: out of memory (a reply dropped)");
            qd_tp_req_drop(r);
            return;
        }
        memcpy(q->b, b, n);
        q->n = n;
        q->req = *r;
        q->req.body = NULL;
        r->control = NULL; /* the queue holds the routing header now */
        qd_tp_req_drop(r);
        d->nrq++;
        return;
    }
    if (qd_tp_reply(d->rep, r, b, n))
        qd_log(QD_LOG_WARN, "reply: %s", qd_errmsg());
}

void qdd_reply_flush(struct qd_daemon *d, qd_err commit, const char *why)
{
    d->batching = 0;
    for (int i = 0; i < d->nrq; i++) {
        struct qdd_queued *q = &d->rq[i];
        if (commit)
            qdd_reply_err(d, &q->req, commit, why);
        else
            qdd_reply_raw(d, &q->req, q->b, q->n);
        free(q->b);
    }
    d->nrq = 0;
}

void qdd_reply_json(struct qd_daemon *d, struct qd_tp_req *r, cJSON *j)
{
    char *t = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!t) {
        qd_tp_req_drop(r);
        return;
    }
    qdd_reply_raw(d, r, t, strlen(t));
    free(t);
}

void qdd_reply_err(struct qd_daemon *d, struct qd_tp_req *r, qd_err e, const char *msg)
{
    d->n_err++;
    d->n_errcode[e < QD_ERR_COUNT ? e : QD_EINVAL]++;
    int op = d->cur_op >= 0 && d->cur_op < QDD_MAX_OPS ? d->cur_op + 1 : 0;
    d->n_op_err[op][e < QD_ERR_COUNT ? e : QD_EINVAL]++;
    char *t = qd_proto_error(e, msg);
    qd_log(QD_LOG_DEBUG, "error reply %s: %s", qd_err_name(e), msg ? msg : "");
    qdd_reply_raw(d, r, t, strlen(t));
    free(t);
}

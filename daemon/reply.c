/* Replies on the REP socket: raw bytes, a JSON object, or an error with its stable code (counted
 * by code for stats). Loop thread. */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "daemon/daemon_impl.h"

void qdd_reply_raw(struct qd_daemon *d, struct qd_tp_req *r, const void *b, size_t n)
{
    if (qd_tp_reply(d->rep, r, b, n))
        qd_log(QD_LOG_WARN, "reply: %s", qd_errmsg());
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
    char *t = qd_proto_error(e, msg);
    qd_log(QD_LOG_DEBUG, "error reply %s: %s", qd_err_name(e), msg ? msg : "");
    qdd_reply_raw(d, r, t, strlen(t));
    free(t);
}

/* The pareto op: the frontier of one figure (flash, latency, energy or RAM) against the
 * predicted accuracy for a device profile. A job on the pool (the profile's cost tables may
 * be built there): the figure's budget swept from the smallest achievable to the largest in
 * `points` steps, each an exact decision under that budget alone (the sensitivity objective,
 * no operator settings), consecutive equal policies merged. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon_impl.h"

void qdd_pareto_work(struct qdd_job *j)
{
    struct qd_daemon *d = j->d;
    if ((j->err = qdd_profile_tables(d, j->prof))) {
        snprintf(j->msg, sizeof j->msg, "%s", qd_errmsg());
        return;
    }
    const struct qd_decide_tables *t = &d->prof[j->prof].t;
    int k = j->metric;
    double lo = t->lo[k], hi = t->hi[k];
    cJSON *arr = cJSON_CreateArray();
    char last[QD_POLICY_MAX * 6] = "";
    for (int i = 0; arr && i < j->points; i++) {
        double b[QD_BUDGET_COUNT];
        for (int q = 0; q < QD_BUDGET_COUNT; q++)
            b[q] = INFINITY;
        b[k] = lo + (hi - lo) * i / (j->points - 1);
        struct qd_decision r;
        qd_err e = qd_decide_under(&d->dec, t, b, NULL, &r);
        if (e == QD_EBUDGET)
            continue; /* (the smallest figure rounds below what a policy reaches) */
        if (e) {
            j->err = e;
            snprintf(j->msg, sizeof j->msg, "%s", qd_errmsg());
            break;
        }
        char pol[QD_POLICY_MAX * 6];
        qd_policy_format(&r.policy, pol, sizeof pol);
        if (!strcmp(pol, last))
            continue;
        snprintf(last, sizeof last, "%s", pol);
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "budget", b[k]);
        cJSON_AddStringToObject(p, "policy", pol);
        cJSON_AddNumberToObject(p, "flash", r.costs.flash);
        cJSON_AddNumberToObject(p, "ram", r.costs.ram);
        cJSON_AddNumberToObject(p, "latency_ms", r.costs.latency_ms);
        cJSON_AddNumberToObject(p, "energy_mj", r.costs.energy_mj);
        cJSON_AddNumberToObject(p, "predicted_loss", r.predicted_loss);
        double acc = qd_decide_accuracy(&d->dec, &r.policy);
        if (!isnan(acc))
            cJSON_AddNumberToObject(p, "predicted_accuracy", acc);
        cJSON_AddItemToArray(arr, p);
    }
    if (!arr && !j->err) {
        j->err = QD_ENOMEM;
        snprintf(j->msg, sizeof j->msg, "out of memory");
    }
    j->out = arr;
}

qd_err qdd_op_pareto(struct qdd_call *c, cJSON *r)
{
    struct qd_daemon *d = c->d;
    const char *prof = NULL, *metric = "flash";
    int64_t points = 16;
    QD_TRY(qd_proto_str(c->j, "profile", QD_PROTO_MAX_ID, 1, &prof));
    QD_TRY(qd_proto_str(c->j, "metric", 16, 0, &metric));
    QD_TRY(qd_proto_int(c->j, "points", 2, 64, 0, &points));
    int k = -1;
    for (int q = 0; q < QD_BUDGET_COUNT; q++)
        if (!strcmp(metric, QDD_BUDGET_FIELD[q]))
            k = q;
    if (k < 0)
        return qd_seterr(QD_EINVAL, "field \"metric\" must be flash, ram, latency_ms or energy_mj");
    int p = qdd_profile_get(d, prof);
    if (p < 0)
        return qd_wraperr(QD_EINVAL, "pareto: ", NULL);
    struct qdd_job *j = calloc(1, sizeof *j);
    if (!j)
        return qd_seterr(QD_ENOMEM, "out of memory");
    j->kind = QDD_JOB_PARETO;
    j->prof = p, j->metric = k, j->points = (int)points;
    j->holds = -1;
    (void)r;
    return qdd_job_queue(c, j);
}

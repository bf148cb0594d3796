/* The decider (see decide.h): loading a backbone for decisions (checkpoint, graph, cached or
 * measured sensitivity, activation ranges), the exact search over the device's activation
 * widths, and building a policy's .qm. After load nothing here writes to the decider. */
#include "policy/decide.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/md5.h"
#include "nn/ckpt.h"
#include "quant/calib.h"

void qd_decider_fini(struct qd_decider *d)
{
    if (d->have_s)
        qd_sens_fini(&d->s);
    if (d->have_g)
        qd_igraph_fini(&d->g);
    if (d->have_tr)
        qd_dataset_fini(&d->tr);
    if (d->have_m)
        qd_model_fini(&d->m);
    free(d->ranges);
    memset(d, 0, sizeof *d);
}

static qd_err load_inner(const struct qd_decider_opts *o, struct qd_decider *d)
{
    QD_TRY(qd_ckpt_load(o->ckpt, &d->m, d->ds, &d->nm));
    d->have_m = 1;
    const char *data = o->data ? o->data : d->ds;
    QD_TRY(qd_data_load(o->dir ? o->dir : "data", data, 1, &d->tr));
    d->have_tr = 1;
    QD_TRY(qd_igraph_build(&d->m, &d->nm, &d->g));
    d->have_g = 1;
    int n = o->sens_n > 0 ? o->sens_n : 1000;
    n = n < d->tr.n ? n : d->tr.n;
    size_t per = (size_t)d->tr.c * d->tr.h * d->tr.w;
    d->val = d->tr;
    d->val.n = n;
    d->val.x = d->tr.x + (size_t)(d->tr.n - n) * per;
    d->val.y = d->tr.y + (d->tr.n - n);
    d->hessian = o->hessian;
    char key[128], path[4200];
    QD_TRY(qd_md5_file(o->ckpt, d->md5));
    snprintf(key, sizeof key, "%s:%s:%d", d->md5, d->tr.name, n);
    snprintf(path, sizeof path, "%s.sens.json", o->ckpt);
    qd_err e = qd_sens_load(&d->s, path, key, d->g.nq);
    if (!e && (!o->hessian || d->s.have_hess)) {
        d->have_s = 1;
        if (!o->quiet)
            fprintf(stderr, "sensitivity: from %s\n", path);
    } else {
        if (!e)
            qd_sens_fini(&d->s);
        if (!o->quiet)
            fprintf(stderr,
                    "sensitivity: measuring %d layers x 4 bitwidths on %d validation images\n",
                    d->g.nq, n);
        QD_TRY(qd_sens_measure(&d->g, &d->val, &d->nm, n, &d->s));
        d->have_s = 1;
        if (o->hessian)
            QD_TRY(qd_sens_hessian(&d->m, &d->nm, &d->tr, 16, &d->g, &d->s));
        QD_TRY(qd_sens_save(&d->s, path, key));
    }
    if (!(d->ranges = calloc((size_t)d->g.n + 1, sizeof *d->ranges)))
        return qd_seterr(QD_ENOMEM, "decider: out of memory");
    QD_TRY(
        qd_calibrate(&d->g, &d->tr, o->calib_n ? o->calib_n : 1024, QD_CALIB_MINMAX, 0, d->ranges));
    if (!o->keep_train) {
        qd_dataset_fini(&d->tr);
        d->have_tr = 0;
        memset(&d->val, 0, sizeof d->val);
    }
    return QD_OK;
}

qd_err qd_decider_load(const struct qd_decider_opts *o, struct qd_decider *d)
{
    memset(d, 0, sizeof *d);
    d->max_nodes = QD_DECIDE_MAX_NODES;
    qd_err e = load_inner(o, d);
    if (e)
        qd_decider_fini(d);
    return e;
}

void qd_decide_tables_fini(struct qd_decide_tables *t)
{
    for (int i = 0; i < 2; i++)
        if (t->have[i])
            qd_cost_table_fini(&t->t[i]);
    memset(t, 0, sizeof *t);
}

qd_err qd_decide_prepare(const struct qd_decider *d, const struct qd_device *dev,
                         struct qd_decide_tables *t)
{
    memset(t, 0, sizeof *t);
    t->dev = *dev;
    for (int i = 0; i < 2; i++) {
        int ab = 8 << i;
        if (!dev->abits_ok[ab])
            continue;
        qd_err e = qd_cost_table_build(&d->g, dev, ab, &t->t[i]);
        if (e) {
            qd_decide_tables_fini(t);
            return e;
        }
        t->have[i] = 1;
    }
    if (!t->have[0] && !t->have[1])
        return qd_seterr(QD_EINVAL, "%s supports neither 8- nor 16-bit activations", dev->name);
    for (int k = 0; k < QD_BUDGET_COUNT; k++) {
        t->lo[k] = INFINITY;
        t->hi[k] = -INFINITY;
    }
    for (int i = 0; i < 2; i++) {
        if (!t->have[i])
            continue;
        const struct qd_cost_table *c = &t->t[i];
        for (int k = 0; k < QD_BUDGET_COUNT; k++) {
            double lo = c->base[k], hi = c->base[k];
            for (int l = 0; l < c->L; l++) {
                double mn = INFINITY, mx = -INFINITY;
                for (int o = 0; o < c->K; o++) {
                    double v = c->cost[((size_t)l * c->K + o) * QD_BUDGET_COUNT + k];
                    if (isfinite(v)) {
                        mn = fmin(mn, v);
                        mx = fmax(mx, v);
                    }
                }
                lo += mn;
                hi += mx;
            }
            t->lo[k] = fmin(t->lo[k], lo);
            t->hi[k] = fmax(t->hi[k], hi);
        }
    }
    struct qd_policy u8;
    qd_policy_uniform(&u8, d->g.nq, 8, 8);
    qd_err e = qd_cost_policy(&d->g, &u8, dev, &t->int8);
    if (e)
        qd_decide_tables_fini(t);
    return e;
}

double qd_decide_battery_energy(const struct qd_decide_tables *t, double battery, double floor)
{
    double s = floor < 1 ? (battery - floor) / (1 - floor) : 1;
    s = s < 0 ? 0 : s > 1 ? 1 : s;
    double lo = t->lo[QD_BUDGET_ENERGY], hi = t->hi[QD_BUDGET_ENERGY];
    return (lo + s * (hi - lo)) * (1 + 1e-9); /* the ends themselves stay feasible */
}

/* The exact search over one cost table (one activation bitwidth); 0 objective entries for
 * unsupported widths are made infinite by the table's own infinite costs. With `upper` (a
 * policy already found in the other table) only a better one is wanted, and QD_EBUDGET means
 * none. */
static qd_err search_table(const struct qd_cost_table *t, const double *budget, const double *objw,
                           double obja, const double *upper, long max_nodes, struct qd_decision *r)
{
    int L = t->L, K = t->K;
    double obj[QD_POLICY_MAX * 4];
    int ch[QD_POLICY_MAX];
    if (L > QD_POLICY_MAX || K > 4)
        return qd_seterr(QD_EINVAL, "decide: %d layers x %d options is too many", L, K);
    for (int l = 0; l < L; l++)
        for (int k = 0; k < K; k++)
            obj[l * K + k] = objw[l * 17 + t->wbits[k]] + (l == 0 ? obja : 0);
    struct qd_search s = {.L = L,
                          .K = K,
                          .obj = obj,
                          .cost = t->cost,
                          .have_upper = upper != NULL,
                          .upper = upper ? *upper : 0,
                          .max_nodes = max_nodes};
    memcpy(s.base, t->base, sizeof s.base);
    memcpy(s.budget, budget, sizeof s.budget);
    QD_TRY(qd_search_exact(&s, ch, &r->r));
    qd_policy_uniform(&r->policy, L, 8, t->abits);
    for (int l = 0; l < L; l++)
        r->policy.wbits[l] = (uint8_t)t->wbits[ch[l]];
    return QD_OK;
}

qd_err qd_decide(const struct qd_decider *d, const struct qd_decide_tables *t, const double *budget,
                 struct qd_decision *r)
{
    return qd_decide_under(d, t, budget, NULL, r);
}

qd_err qd_decide_under(const struct qd_decider *d, const struct qd_decide_tables *t,
                       const double *budget, const struct qd_decide_limits *lim,
                       struct qd_decision *r)
{
    double objw[QD_POLICY_MAX * 17];
    int L = d->g.nq;
    if (L > QD_POLICY_MAX)
        return qd_seterr(QD_EINVAL, "decide: %d layers is too many", L);
    for (int l = 0; l < L; l++)
        for (int b = 0; b <= 16; b++)
            objw[l * 17 + b] = d->hessian ? d->s.hess[l][b] : d->s.dloss[l][b];
    return qd_decide_limited(d, t, budget, objw, NULL, lim, r);
}

qd_err qd_decide_with(const struct qd_decider *d, const struct qd_decide_tables *t,
                      const double *budget, const double *objw, const double *obja,
                      struct qd_decision *r)
{
    struct qd_decision best = {0}, a;
    int found = 0, proven = 1;
    qd_err first = QD_OK;
    char firstmsg[400] = "";
    double mincost[QD_BUDGET_COUNT];
    for (int i = 0; i < QD_BUDGET_COUNT; i++)
        mincost[i] = INFINITY;
    /* the table with the lower unconstrained optimum first: its answer bounds the other's
     * search (often skips it: the gate's activation logits favour one table strongly) */
    double lb[2] = {INFINITY, INFINITY};
    for (int i = 0; i < 2; i++)
        if (t->have[i]) {
            const struct qd_cost_table *c = &t->t[i];
            lb[i] = obja ? obja[i] : 0;
            for (int l = 0; l < c->L; l++) {
                double m = INFINITY;
                for (int k = 0; k < c->K; k++)
                    m = fmin(m, objw[l * 17 + c->wbits[k]]);
                lb[i] += m;
            }
        }
    for (int j = 0; j < 2; j++) {
        int i = lb[1] < lb[0] ? 1 - j : j;
        if (!t->have[i] || (found && lb[i] >= best.r.obj))
            continue;
        memset(&a, 0, sizeof a);
        qd_err e = search_table(&t->t[i], budget, objw, obja ? obja[i] : 0,
                                found ? &best.r.obj : NULL, d->max_nodes, &a);
        if (e == QD_ETIMEDOUT && found) {
            proven = 0;
            continue; /* the first table's policy stands, unproven */
        }
        if (e == QD_EBUDGET && found)
            continue; /* nothing better here */
        if (e == QD_EBUDGET) {
            for (int k = 0; k < QD_BUDGET_COUNT; k++)
                mincost[k] = fmin(mincost[k], a.r.cost[k]);
            if (!first) {
                first = e;
                snprintf(firstmsg, sizeof firstmsg, "%s", qd_errmsg());
            }
            continue;
        }
        if (e)
            return e;
        proven &= a.r.proven;
        if (!found || a.r.obj < best.r.obj)
            best = a;
        found = 1;
    }
    if (!found) {
        memset(r, 0, sizeof *r);
        memcpy(r->r.cost, mincost, sizeof mincost);
        return qd_seterr(QD_EBUDGET, "%s on %s: %s", d->m.family, t->dev.name, firstmsg);
    }
    /* the tables are exact (flash = the built file, RAM = the planner's arena; a policy test
     * checks both against real builds), so the figures need no dry-run build here */
    best.r.proven = proven;
    best.costs.flash = best.r.cost[QD_BUDGET_FLASH];
    best.costs.ram = best.r.cost[QD_BUDGET_RAM];
    best.costs.latency_ms = best.r.cost[QD_BUDGET_LATENCY];
    best.costs.energy_mj = best.r.cost[QD_BUDGET_ENERGY];
    best.costs.arena = best.costs.ram - (t->dev.weights_in_ram ? best.costs.flash : 0);
    for (int i = 0; i < d->g.n; i++)
        best.costs.macs += qd_cost_node_macs(&d->g, i);
    best.predicted_loss = NAN;
    if (d->have_s) {
        best.predicted_loss = d->s.loss0;
        for (int l = 0; l < best.policy.n; l++)
            best.predicted_loss += d->s.dloss[l][best.policy.wbits[l]];
    }
    *r = best;
    return QD_OK;
}

double qd_decide_accuracy(const struct qd_decider *d, const struct qd_policy *p)
{
    if (!d->have_s)
        return NAN;
    double a = d->s.acc0;
    for (int l = 0; l < p->n && l < d->s.L; l++)
        a += d->s.acc[l][p->wbits[l]] - d->s.acc0;
    return a;
}

qd_err qd_decide_limited(const struct qd_decider *d, const struct qd_decide_tables *t,
                         const double *budget, const double *objw, const double *obja,
                         const struct qd_decide_limits *lim, struct qd_decision *r)
{
    if (!lim || (!lim->wbits && isnan(lim->floor)))
        return qd_decide_with(d, t, budget, objw, obja, r);
    int L = d->g.nq;
    if (L > QD_POLICY_MAX)
        return qd_seterr(QD_EINVAL, "decide: %d layers is too many", L);
    if (!isnan(lim->floor) && !d->have_s)
        return qd_seterr(QD_EINVAL, "an accuracy floor needs the backbone's sensitivity");
    double w[QD_POLICY_MAX * 17];
    for (int l = 0; l < L; l++)
        for (int b = 0; b <= 16; b++)
            w[l * 17 + b] = lim->wbits && !(lim->wbits & (1u << b)) ? INFINITY : objw[l * 17 + b];
    QD_TRY(qd_decide_with(d, t, budget, w, obja, r));
    double acc = qd_decide_accuracy(d, &r->policy);
    if (isnan(lim->floor) || acc >= lim->floor)
        return QD_OK;
    /* the most accurate policy within the budgets: minimize the summed accuracy drop */
    for (int l = 0; l < L; l++)
        for (int b = 0; b <= 16; b++)
            if (isfinite(w[l * 17 + b]))
                w[l * 17 + b] = d->s.acc0 - d->s.acc[l][b];
    struct qd_decision best;
    QD_TRY(qd_decide_with(d, t, budget, w, NULL, &best));
    double top = qd_decide_accuracy(d, &best.policy);
    if (top < lim->floor)
        return qd_seterr(QD_EBUDGET,
                         "accuracy_floor %.4f: the most accurate policy within the budgets "
                         "predicts %.4f",
                         lim->floor, top);
    *r = best;
    return QD_OK;
}

qd_err qd_decider_build(const struct qd_decider *d, const struct qd_policy *p, uint8_t **blob,
                        size_t *len)
{
    if (p->n != d->g.nq)
        return qd_seterr(QD_EINVAL, "policy has %d layers, the model %d", p->n, d->g.nq);
    struct qd_qm_build b = {&d->g, p, QD_QMODE_MIXED, d->ranges, 1, d->m.family};
    return qd_qm_build(&b, blob, len);
}

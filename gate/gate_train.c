/* Training the gate (see gate.h). The supernet's weights are frozen; each step:
 *   1. a context: a profile, budgets drawn between the smallest and largest figure any policy
 *      has on it (each unconstrained with probability 0.3), a battery level;
 *   2. the gate's logits, and a policy drawn from them with Gumbel noise (hard, per layer);
 *   3. the supernet on a training batch at that policy (weights fake-quantized per layer,
 *      activations at the drawn widths): the task loss, and by straight-through estimation its
 *      derivative with respect to each layer's one-hot choice, s[l][b] = <dL/dW_l, Q_b(W_l)> / L,
 *      which the Gumbel-softmax relaxation carries to the weight logits;
 *   4. a penalty lambda * sum_d max(0, E[cost_d] / budget_d - 1) on the expected cost under the
 *      gate's probabilities (the cost tables of the exact search), differentiated exactly;
 *      the task term is the log of the loss, so both are relative (a layer that doubles the
 *      loss weighs as much as one that doubles a budget, whether the loss is 2 or 0.01): with
 *      the plain loss, a backbone fitted well (loss differences of 1e-3) let the penalty of
 *      the contexts whose budgets bind drown the task signal of those where none does, through
 *      the weights they share and Adam's common scale, and the gate chose 2-bit layers with no
 *      budget at all;
 *   5. an Adam step on the gate.
 * The activation logits learn from the penalty alone (their task-loss derivative would need
 * the activations' own relaxation; not done).
 *
 * With probe > 0, step 3 measures instead of linearizing: for `probe` layers drawn at random,
 * the task loss on the same batch with that layer's weights at each other supported width
 * (and its activations at the other width), s[l][b] = log L(policy with l at b) - log L(policy),
 * the secant of the relaxation along each one-hot direction, scaled by L / probe so that every
 * layer's expected signal is the same as if all were probed. The first-order estimate sees
 * little of what a layer loses at low bits near a well-trained point (the loss is flat to first
 * order there); the measured difference sees all of it, at one forward pass per alternative,
 * each resumed at the first node the alternative changes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "gate/gate.h"
#include "gate/supernet.h"
#include "nn/kernels.h"

static const int WB[4] = {2, 4, 8, 16};

/* The task term is log(task loss + CE_EPS): a relative change, as the penalty's overrun is. */
#define CE_EPS 1e-4

/* Index of a weight bitwidth in WB. */
static int widx(int bits)
{
    return bits == 2 ? 0 : bits == 4 ? 1 : bits == 8 ? 2 : 3;
}

static double gumbel(struct qd_rng *r)
{
    double u = qd_rng_uniform(r);
    u = u < 1e-12 ? 1e-12 : u > 1 - 1e-12 ? 1 - 1e-12 : u;
    return -log(-log(u));
}

/* Softmax over the supported entries of z (n), into p (0 elsewhere). */
static void softmax_masked(const float *z, const int *ok, int n, double tau, const double *noise,
                           double *p)
{
    double mx = -INFINITY, s = 0;
    for (int k = 0; k < n; k++)
        if (ok[k])
            mx = fmax(mx, (z[k] + (noise ? noise[k] : 0)) / tau);
    for (int k = 0; k < n; k++) {
        p[k] = ok[k] ? exp((z[k] + (noise ? noise[k] : 0)) / tau - mx) : 0;
        s += p[k];
    }
    for (int k = 0; k < n; k++)
        p[k] /= s;
}

/* The batch's loss after a forward resumed at node `from` (training mode, as the drawn
 * policy's forward). */
static double loss_from(struct qd_exec *e, int B, int from, const uint8_t *y, float *dl)
{
    int correct;
    qd_exec_forward_from(e, B, from, 1);
    return qd_softmax_xent_f32(B, e->m->nclass, qd_exec_logits(e), y, dl, &correct);
}

/* Sorts a[0..n-1] from largest to smallest (n is a handful: insertion). */
static void sort_desc(int *a, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && a[j] > a[j - 1]; j--) {
            int t = a[j];
            a[j] = a[j - 1], a[j - 1] = t;
        }
}

/* d/dz of a softmax with temperature tau at p, given g = d/dp: p_k (g_k - <p, g>) / tau. */
static void softmax_back(const double *p, const double *g, int n, double tau, float *dz)
{
    double dot = 0;
    for (int k = 0; k < n; k++)
        dot += p[k] * g[k];
    for (int k = 0; k < n; k++)
        dz[k] += (float)(p[k] * (g[k] - dot) / tau);
}

qd_err qd_gate_train(struct qd_gate *gt, struct qd_decider *d, const struct qd_gate_train_opts *o)
{
    struct qd_model *m = &d->m;
    const struct qd_igraph *g = &d->g;
    int L = g->nq, B = o->batch > 0 ? o->batch : 64, steps = o->steps > 0 ? o->steps : 2000;
    double tau = o->tau > 0 ? o->tau : 1.0, lambda = o->lambda > 0 ? o->lambda : 2.0;
    float lr = o->lr > 0 ? o->lr : 1e-3f;
    if (!d->have_tr)
        return qd_seterr(QD_EINVAL, "gate train: the supernet's training set is not loaded");
    QD_TRY(qd_gate_init(gt, L, o->hidden > 0 ? o->hidden : 64, o->seed + 5));
    snprintf(gt->backbone, sizeof gt->backbone, "%s", d->md5);
    snprintf(gt->family, sizeof gt->family, "%s", m->family);
    snprintf(gt->data, sizeof gt->data, "%s", d->ds);
    qd_kernels_init(o->threads);
    int np = o->nprofiles;
    struct qd_decide_tables *tabs = calloc((size_t)(np > 0 ? np : 1), sizeof *tabs);
    size_t P = m->nparam, per = (size_t)d->tr.c * d->tr.h * d->tr.w;
    float *qall = malloc(sizeof *qall * 4 * P), *shadow = malloc(sizeof *shadow * P);
    float *st0 = malloc(sizeof *st0 * (m->nstat ? m->nstat : 1));
    float *x = malloc(sizeof *x * per * B), *dl = malloc(sizeof *dl * B * m->nclass);
    float *ranges = malloc(sizeof *ranges * 2 * m->nnodes);
    uint8_t *wb = calloc((size_t)m->nnodes, 1), *ab = calloc((size_t)m->nnodes, 1),
            *ab0 = malloc((size_t)m->nnodes);
    float *gg = calloc(gt->nparam, sizeof *gg), *m1 = calloc(gt->nparam, sizeof *m1),
          *m2 = calloc(gt->nparam, sizeof *m2);
    int *node = malloc(sizeof *node * L), *bnode = malloc(sizeof *bnode * L),
        *idx = malloc(sizeof *idx * B);
    uint8_t *y = malloc(B);
    struct qd_exec e;
    int have_e = 0, ntab = 0, saved = 0;
    qd_err err = tabs && qall && shadow && st0 && x && dl && ranges && wb && ab && gg && m1 &&
                         m2 && node && bnode && idx && y && ab0
                     ? QD_OK
                     : qd_seterr(QD_ENOMEM, "gate train: out of memory");
    if (!err && np < 1)
        err = qd_seterr(QD_EINVAL, "gate train: no device profiles");
    for (int i = 0; !err && i < np; i++) {
        struct qd_device dev;
        err = qd_device_load(o->profiles[i], &dev);
        if (!err)
            err = qd_decide_prepare(d, &dev, &tabs[i]);
        ntab += !err;
    }
    if (!err)
        err = qd_exec_init(&e, m, B);
    have_e = !err;
    if (err)
        goto out;
    /* the weights at each width, once: the supernet is frozen */
    {
        uint8_t *all = malloc((size_t)m->nnodes);
        for (int k = 0; k < 4; k++) {
            for (int i = 0; i < m->nnodes; i++)
                all[i] = (m->nodes[i].op == QD_OP_CONV || m->nodes[i].op == QD_OP_DENSE)
                             ? (uint8_t)WB[k]
                             : 0;
            qd_fake_quant_weights(m, all, qall + (size_t)k * P);
        }
        free(all);
    }
    for (int l = 0; l < L; l++)
        node[l] = -1;
    for (int i = 0; i < g->n; i++) {
        const struct qd_inode *n = &g->nodes[i];
        int op = m->nodes[n->src].op;
        if (n->qidx >= 0 && (op == QD_OP_CONV || op == QD_OP_DENSE))
            node[n->qidx] = n->src;
    }
    /* switchable BatchNorm: the BN behind each layer's weights, whose set follows their width */
    for (int l = 0; l < L; l++) {
        bnode[l] = -1;
        for (int i = node[l] + 1; node[l] >= 0 && i < m->nnodes; i++)
            if (m->nodes[i].sets > 1 && m->nodes[i].in[0] == node[l])
                bnode[l] = i;
    }
    memcpy(st0, m->stat, sizeof *st0 * m->nstat);
    saved = 1;
    for (int i = 0; i < 2 * m->nnodes; i++)
        ranges[i] = NAN;
    e.act_bits = ab;
    e.act_range = ranges;
    struct qd_rng r;
    qd_rng_seed(&r, o->seed + 11);
    float c[QD_GATE_IN], work[2 * 4096];
    float *logits = malloc(sizeof *logits * L * QD_GATE_OUT),
          *dlog = malloc(sizeof *dlog * L * QD_GATE_OUT);
    double *ysoft = malloc(sizeof *ysoft * L * 4), *pw = malloc(sizeof *pw * L * 4),
           *pa = malloc(sizeof *pa * L * 2), *yas = malloc(sizeof *yas * L * 2);
    int *perm = malloc(sizeof *perm * L), probe = o->probe < L ? o->probe : L;
    if (!logits || !dlog || !ysoft || !pw || !pa || !yas || !perm) {
        err = qd_seterr(QD_ENOMEM, "gate train: out of memory");
        free(logits), free(dlog), free(ysoft), free(pw), free(pa), free(yas), free(perm);
        goto out;
    }
    double avg_ce = 0, avg_pen = 0, avg_over = 0;
    for (int step = 0; step < steps; step++) {
        const struct qd_decide_tables *t = &tabs[qd_rng_below(&r, (uint32_t)ntab)];
        double budget[QD_BUDGET_COUNT];
        for (int k = 0; k < QD_BUDGET_COUNT; k++) {
            double u = qd_rng_uniform(&r);
            budget[k] = u < 0.3 ? INFINITY
                                : t->lo[k] + qd_rng_uniform(&r) * 1.1 * (t->hi[k] - t->lo[k]);
        }
        double battery = qd_rng_uniform(&r);
        qd_gate_context(t, budget, battery, c);
        qd_gate_forward(gt, c, work, logits);
        int okw[4], oka[2] = {t->dev.abits_ok[8], t->dev.abits_ok[16]};
        for (int k = 0; k < 4; k++)
            okw[k] = t->dev.wbits_ok[WB[k]];
        struct qd_policy pol;
        qd_policy_uniform(&pol, L, 8, 8);
        for (int l = 0; l < L; l++) {
            const float *z = logits + l * QD_GATE_OUT;
            double nz[4], na[2], ya[2];
            for (int k = 0; k < 4; k++)
                nz[k] = gumbel(&r);
            na[0] = gumbel(&r), na[1] = gumbel(&r);
            softmax_masked(z, okw, 4, tau, nz, ysoft + l * 4);
            softmax_masked(z, okw, 4, 1, NULL, pw + l * 4);
            softmax_masked(z + 4, oka, 2, 1, NULL, pa + l * 2);
            softmax_masked(z + 4, oka, 2, tau, na, ya);
            yas[l * 2] = ya[0], yas[l * 2 + 1] = ya[1];
            int best = 0;
            for (int k = 1; k < 4; k++)
                if (ysoft[l * 4 + k] > ysoft[l * 4 + best])
                    best = k;
            pol.wbits[l] = (uint8_t)WB[best];
            pol.abits[l] = ya[1] > ya[0] ? 16 : 8;
        }
        /* the supernet at that policy */
        qd_supernet_node_bits(m, g, &pol, wb, ab);
        memcpy(shadow, m->param, sizeof *shadow * P);
        for (int l = 0; l < L; l++)
            if (node[l] >= 0) {
                const struct qd_node *n = &m->nodes[node[l]];
                int k = widx(pol.wbits[l]);
                memcpy(shadow + n->woff, qall + (size_t)k * P + n->woff,
                       sizeof *shadow * n->wlen);
            }
        for (int k = 0; k < B; k++)
            idx[k] = (int)qd_rng_below(&r, (uint32_t)d->tr.n);
        qd_batch_fill(&d->tr, &d->nm, idx, B, 0, NULL, x, y);
        float *master = m->param;
        m->param = shadow;
        qd_exec_forward(&e, B, x, 1);
        int correct;
        float ce = qd_softmax_xent_f32(B, m->nclass, qd_exec_logits(&e), y, dl, &correct);
        double ce_e = ce + CE_EPS;
        memset(dlog, 0, sizeof *dlog * L * QD_GATE_OUT);
        if (probe > 0) {
            /* task loss -> logits, measured (secant straight-through) */
            for (int l = 0; l < L; l++)
                perm[l] = l;
            for (int i = 0; i < probe; i++) {
                int j = i + (int)qd_rng_below(&r, (uint32_t)(L - i)), l = perm[j];
                perm[j] = perm[i], perm[i] = l;
            }
            /* the probed layers last to first, each alternative's forward starting at the
             * first node it changes: the nodes before it keep the drawn policy's activations
             * from the forward above (`valid`: how many nodes still hold them) */
            sort_desc(perm, probe);
            int valid = m->nnodes;
            for (int i = 0; i < probe; i++) {
                int l = perm[i];
                double s[4] = {0}, sa[2] = {0}, scale = (double)L / probe;
                if (node[l] >= 0) {
                    const struct qd_node *n = &m->nodes[node[l]];
                    int cur = widx(pol.wbits[l]);
                    for (int k = 0; k < 4; k++) {
                        if (!okw[k] || k == cur)
                            continue;
                        memcpy(shadow + n->woff, qall + (size_t)k * P + n->woff,
                               sizeof *shadow * n->wlen);
                        if (bnode[l] >= 0)
                            m->bn_set[bnode[l]] =
                                (uint8_t)qd_supernet_bn_set(m->nodes[bnode[l]].sets, WB[k]);
                        valid = valid < node[l] ? valid : node[l];
                        s[k] = scale * log((loss_from(&e, B, valid, y, dl) + CE_EPS) / ce_e);
                    }
                    memcpy(shadow + n->woff, qall + (size_t)cur * P + n->woff,
                           sizeof *shadow * n->wlen);
                    if (bnode[l] >= 0)
                        m->bn_set[bnode[l]] =
                            (uint8_t)qd_supernet_bn_set(m->nodes[bnode[l]].sets, WB[cur]);
                    softmax_back(ysoft + l * 4, s, 4, tau, dlog + l * QD_GATE_OUT);
                }
                if (oka[0] && oka[1]) {
                    int cur = pol.abits[l] == 16;
                    memcpy(ab0, ab, (size_t)m->nnodes);
                    pol.abits[l] = cur ? 8 : 16;
                    qd_supernet_node_bits(m, g, &pol, wb, ab);
                    int f = 1;
                    while (f < m->nnodes && ab[f] == ab0[f])
                        f++;
                    valid = valid < f ? valid : f;
                    sa[!cur] = scale * log((loss_from(&e, B, valid, y, dl) + CE_EPS) / ce_e);
                    pol.abits[l] = cur ? 16 : 8;
                    qd_supernet_node_bits(m, g, &pol, wb, ab);
                    softmax_back(yas + l * 2, sa, 2, tau, dlog + l * QD_GATE_OUT + 4);
                }
            }
        } else {
            qd_exec_backward(&e, B, dl);
        }
        m->param = master;
        /* task loss -> weight logits (straight-through Gumbel-softmax) */
        for (int l = 0; probe == 0 && l < L; l++) {
            if (node[l] < 0)
                continue;
            const struct qd_node *n = &m->nodes[node[l]];
            double s[4] = {0};
            for (int k = 0; k < 4; k++) {
                const float *q = qall + (size_t)k * P + n->woff, *gr = m->grad + n->woff;
                double acc = 0;
                for (size_t i = 0; i < n->wlen; i++)
                    acc += (double)gr[i] * q[i];
                s[k] = okw[k] ? acc / ce_e : 0;
            }
            softmax_back(ysoft + l * 4, s, 4, tau, dlog + l * QD_GATE_OUT);
        }
        /* expected cost penalty -> weight and activation logits */
        double Q[2] = {0, 0}, E[QD_BUDGET_COUNT] = {0}, Ea[2][QD_BUDGET_COUNT] = {{0}};
        for (int l = 0; l < L; l++)
            Q[0] += pa[l * 2] / L, Q[1] += pa[l * 2 + 1] / L;
        for (int a = 0; a < 2; a++) {
            if (!t->have[a])
                continue;
            const struct qd_cost_table *ct = &t->t[a];
            for (int dd = 0; dd < QD_BUDGET_COUNT; dd++) {
                double v = ct->base[dd];
                for (int l = 0; l < L; l++)
                    for (int o2 = 0; o2 < ct->K; o2++) {
                        int k = widx(ct->wbits[o2]);
                        double cc = ct->cost[((size_t)l * ct->K + o2) * QD_BUDGET_COUNT + dd];
                        if (isfinite(cc))
                            v += pw[l * 4 + k] * cc;
                    }
                Ea[a][dd] = v;
                E[dd] += Q[a] * v;
            }
        }
        double pen = 0, over[QD_BUDGET_COUNT] = {0};
        for (int dd = 0; dd < QD_BUDGET_COUNT; dd++)
            if (isfinite(budget[dd]) && budget[dd] > 0 && E[dd] > budget[dd]) {
                pen += lambda * (E[dd] / budget[dd] - 1);
                over[dd] = lambda / budget[dd];
            }
        for (int l = 0; l < L; l++) {
            double gw[4] = {0}, ga[2] = {0};
            for (int a = 0; a < 2; a++) {
                if (!t->have[a])
                    continue;
                const struct qd_cost_table *ct = &t->t[a];
                for (int o2 = 0; o2 < ct->K; o2++) {
                    int k = widx(ct->wbits[o2]);
                    for (int dd = 0; dd < QD_BUDGET_COUNT; dd++) {
                        double cc = ct->cost[((size_t)l * ct->K + o2) * QD_BUDGET_COUNT + dd];
                        if (over[dd] > 0 && isfinite(cc))
                            gw[k] += over[dd] * Q[a] * cc;
                    }
                }
                for (int dd = 0; dd < QD_BUDGET_COUNT; dd++)
                    if (over[dd] > 0)
                        ga[a] += over[dd] * Ea[a][dd] / L;
            }
            softmax_back(pw + l * 4, gw, 4, 1, dlog + l * QD_GATE_OUT);
            softmax_back(pa + l * 2, ga, 2, 1, dlog + l * QD_GATE_OUT + 4);
        }
        memset(gg, 0, sizeof *gg * gt->nparam);
        qd_gate_backward(gt, c, work, dlog, gg);
        float b1 = 0.9f, b2 = 0.999f, c1 = 1 - powf(b1, (float)(step + 1)),
              c2 = 1 - powf(b2, (float)(step + 1));
        for (size_t i = 0; i < gt->nparam; i++) {
            m1[i] = b1 * m1[i] + (1 - b1) * gg[i];
            m2[i] = b2 * m2[i] + (1 - b2) * gg[i] * gg[i];
            gt->param[i] -= lr * (m1[i] / c1) / (sqrtf(m2[i] / c2) + 1e-8f);
        }
        avg_ce = 0.98 * avg_ce + 0.02 * ce;
        avg_pen = 0.98 * avg_pen + 0.02 * pen;
        avg_over = 0.98 * avg_over + 0.02 * (pen > 0);
        if (o->progress && (step + 1) % 200 == 0)
            fprintf(stderr, "gate: step %d/%d  task loss %.4f  penalty %.4f  over budget %.0f%%\n",
                    step + 1, steps, avg_ce, avg_pen, 100 * avg_over);
    }
    free(logits), free(dlog), free(ysoft), free(pw), free(pa), free(yas), free(perm);
out:
    if (saved) /* training-mode forwards moved the running statistics */
        memcpy(m->stat, st0, sizeof *st0 * m->nstat);
    if (have_e)
        qd_exec_fini(&e);
    for (int i = 0; i < ntab; i++)
        qd_decide_tables_fini(&tabs[i]);
    free(tabs), free(qall), free(shadow), free(st0), free(x), free(dl), free(ranges), free(wb),
        free(ab), free(ab0), free(gg), free(m1), free(m2), free(node), free(bnode), free(idx),
        free(y);
    if (err)
        qd_gate_fini(gt);
    return err;
}

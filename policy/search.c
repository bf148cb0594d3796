/* Exact multi-budget multiple-choice knapsack by branch and bound with Lagrangian bounds (see
 * search.h). A complete policy's figures are always summed in layer order starting from
 * `base` (here, in qd_search_eval and in the tests' brute force), so "fits" means the same
 * floating-point comparison everywhere; pruning bounds, summed in other orders, get a relative
 * slack of 1e-9 so they never drop a policy that fits exactly. */
#define _GNU_SOURCE /* qsort_r */
#include "policy/search.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define D QD_BUDGET_COUNT
#ifndef STALL
#define STALL 12
#endif
#ifndef THETA_WAIT
#define THETA_WAIT 3
#endif


const char *qd_budget_name(enum qd_budget d)
{
    static const char *n[] = {"flash", "latency", "energy", "RAM"};
    return d < D ? n[d] : "?";
}

static const char *unit(int d)
{
    static const char *u[] = {"bytes", "ms", "mJ", "bytes"};
    return u[d];
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static const double *cost_at(const struct qd_search *s, int l, int k)
{
    return s->cost + ((size_t)l * s->K + k) * D;
}

static int usable(const struct qd_search *s, int l, int k)
{
    if (!isfinite(s->obj[(size_t)l * s->K + k]))
        return 0;
    for (int d = 0; d < D; d++)
        if (!isfinite(cost_at(s, l, k)[d]))
            return 0;
    return 1;
}

void qd_search_eval(const struct qd_search *s, const int *choice, struct qd_search_result *r)
{
    memset(r, 0, sizeof *r);
    for (int d = 0; d < D; d++)
        r->cost[d] = s->base[d];
    for (int l = 0; l < s->L; l++) {
        const double *c = cost_at(s, l, choice[l]);
        for (int d = 0; d < D; d++)
            r->cost[d] += c[d];
        r->obj += s->obj[(size_t)l * s->K + choice[l]];
    }
}

static int fits(const struct qd_search *s, const double *c)
{
    for (int d = 0; d < D; d++)
        if (c[d] > s->budget[d])
            return 0;
    return 1;
}

/* One option of the layer at a search position, with what the search needs of it. */
struct opt {
    int k;        /* option index, -1 ends a position's list */
    double red;   /* reduced cost obj + lam . nc */
    double obj;
    double f;     /* mu . nc (surrogate feasibility weight) */
    double nc[D]; /* costs of the active dimensions over their caps */
};

struct bb {
    const struct qd_search *s;
    int L, K, na, act[D];
    double cap[D];     /* budget - base of each active dimension */
    double lam[D];     /* Lagrange multipliers (per unit of normalized cost) */
    double lam_sum;
    double mu[D];      /* feasibility multipliers: a convex weighting of the normalized costs */
    int use_f;         /* prune by the surrogate constraint */
    double *suf_f;     /* (L + 1): sum over positions >= i of the least mu-weighted cost */
    int *order;        /* layers in search order */
    struct opt *opt;   /* (L, K): options of position i by ascending reduced cost */
    double *suf_red;   /* (L + 1): sum of the least reduced cost over positions >= i */
    double *suf_n;     /* (L + 1, D): sum of the least normalized cost over positions >= i */
    int *cur, *best;   /* (L) by layer */
    uint8_t *ok;       /* (L, K): usable options */
    double *nc;        /* (L, K, D): costs of the active dimensions over their caps */
    struct cand *cand; /* (L * K): repair's ranked changes */
    double best_obj;
    int have;
    double cut;        /* objective to beat: the incumbent's, or the caller's upper bound */
    int stopped;       /* the node limit was reached */
    long nodes;
};

static double reduced(const struct bb *b, int l, int k)
{
    const double *c = b->nc + ((size_t)l * b->K + k) * D;
    double v = b->s->obj[(size_t)l * b->K + k];
    for (int a = 0; a < b->na; a++)
        v += b->lam[a] * c[a];
    return v;
}

/* L(lam) = sum of per-layer minima of the reduced costs - sum(lam); x = the minimizers. */
static double dual(const struct bb *b, int *x, double *g)
{
    double v = 0;
    for (int a = 0; a < b->na; a++)
        g[a] = -1, v -= b->lam[a];
    for (int l = 0; l < b->L; l++) {
        int bk = -1;
        double bv = INFINITY;
        for (int k = 0; k < b->K; k++)
            if (b->ok[l * b->K + k]) {
                double r = reduced(b, l, k);
                if (r < bv)
                    bv = r, bk = k;
            }
        x[l] = bk;
        v += bv;
        const double *c = b->nc + ((size_t)l * b->K + bk) * D;
        for (int a = 0; a < b->na; a++)
            g[a] += c[a];
    }
    return v;
}

static void consider(struct bb *b, const int *ch)
{
    struct qd_search_result r;
    qd_search_eval(b->s, ch, &r);
    if (fits(b->s, r.cost) && r.obj < b->cut) {
        memcpy(b->best, ch, sizeof *ch * b->L);
        b->best_obj = b->cut = r.obj;
        b->have = 1;
    }
}

/* Depth-first over positions i (layer order[i]); n: normalized costs so far (active
 * dimensions); red, o, f: reduced cost, objective and surrogate weight so far. Every bound
 * here is on normalized costs, summed in search order, so each gets a slack of 1e-9; the
 * exact test is consider()'s. */
static void dfs(struct bb *b, int i, const double *n, double red, double o, double f)
{
    if (b->s->max_nodes > 0 && b->nodes >= b->s->max_nodes) {
        b->stopped = 1;
        return;
    }
    b->nodes++;
    if (i == b->L) {
        /* o is summed in search order; only a near-improvement is worth the exact re-sum */
        if (o < b->cut + fabs(b->cut) * 1e-9)
            consider(b, b->cur);
        return;
    }
    const struct opt *op = b->opt + (size_t)i * b->K;
    const double *rest = b->suf_n + (size_t)(i + 1) * D;
    double rest_red = b->suf_red[i + 1] - b->lam_sum, rest_f = b->suf_f[i + 1];
    double cut = isfinite(b->cut) ? b->cut - fabs(b->cut) * 1e-12 : INFINITY;
    for (int j = 0; j < b->K && op[j].k >= 0; j++) {
        /* Lagrangian bound of every completion: the options come by ascending reduced
         * cost, so once one is cut the rest are too */
        double r = red + op[j].red;
        if (r + rest_red >= cut)
            break;
        double nn[D];
        int fit = 1;
        for (int a = 0; a < b->na && fit; a++) {
            nn[a] = n[a] + op[j].nc[a];
            fit = nn[a] + rest[a] <= 1 + 1e-9;
        }
        if (!fit)
            continue;
        /* Surrogate feasibility: every policy that fits has sum_a mu_a cost_a / cap_a <= 1,
         * so a partial one whose cheapest completion already exceeds it cannot fit. It cuts
         * where each budget alone still could be met (proving infeasibility included). */
        double nf = f + op[j].f;
        if (b->use_f && nf + rest_f > 1 + 1e-9)
            continue;
        b->cur[b->order[i]] = op[j].k;
        dfs(b, i + 1, nn, r, o + op[j].obj, nf);
    }
}

struct cand {
    double score;
    int l, k;
};

static int cmp_cand(const void *x, const void *y)
{
    double a = ((const struct cand *)x)->score, c = ((const struct cand *)y)->score;
    return a < c ? -1 : a > c;
}

#define ONE (1 - 1e-12) /* a normalized budget, with the margin repair aims for */

/* Total normalized excess over the budgets when layer l goes from option `from` to `to`,
 * from the normalized totals c. */
static double excess_after(const struct bb *b, const double *c, int l, int from, int to)
{
    const double *cur = b->nc + ((size_t)l * b->K + from) * D;
    const double *nw = b->nc + ((size_t)l * b->K + to) * D;
    double ex = 0;
    for (int a = 0; a < b->na; a++)
        ex += fmax(0, c[a] - cur[a] + nw[a] - ONE);
    return ex;
}

/* Greedy repair: from the assignment in ch, while a budget is broken, changes of one layer's
 * option ranked by objective increase per unit of total normalized excess removed. The first
 * rounds rank every change once and apply them in that order while each still lowers the
 * excess (O(LK log LK) a round, not O(LK) a change); then, if budgets are still broken, one
 * change at a time, rescored. Every change lowers the excess, so it ends. On normalized
 * costs, kept incrementally; 1: the budgets hold (consider() then checks exactly). */
static int repair(const struct bb *b, int *ch)
{
    int L = b->L, K = b->K, na = b->na;
    double c[D] = {0}, ex = 0;
    for (int l = 0; l < L; l++)
        for (int a = 0; a < na; a++)
            c[a] += b->nc[((size_t)l * K + ch[l]) * D + a];
    for (int a = 0; a < na; a++)
        ex += fmax(0, c[a] - ONE);
    for (int round = 0; round < 4 + L * K && ex > 0; round++) {
        int n = 0, ranked = round < 4;
        for (int l = 0; l < L; l++) {
            double ocur = b->s->obj[(size_t)l * K + ch[l]];
            for (int k = 0; k < K; k++) {
                if (k == ch[l] || !b->ok[l * K + k])
                    continue;
                double nex = excess_after(b, c, l, ch[l], k);
                if (!(nex < ex))
                    continue;
                struct cand cd = {(b->s->obj[(size_t)l * K + k] - ocur) / (ex - nex), l, k};
                if (ranked)
                    b->cand[n++] = cd;
                else if (!n++ || cd.score < b->cand[0].score)
                    b->cand[0] = cd;
            }
        }
        if (!n)
            return 0;
        if (ranked)
            qsort(b->cand, n, sizeof *b->cand, cmp_cand);
        else
            n = 1;
        for (int i = 0; i < n && ex > 0; i++) {
            int l = b->cand[i].l, k = b->cand[i].k;
            if (k == ch[l])
                continue;
            double nex = excess_after(b, c, l, ch[l], k);
            if (!(nex < ex))
                continue;
            const double *cur = b->nc + ((size_t)l * K + ch[l]) * D;
            const double *nw = b->nc + ((size_t)l * K + k) * D;
            for (int a = 0; a < na; a++)
                c[a] += nw[a] - cur[a];
            ch[l] = k, ex = nex;
        }
    }
    return ex == 0;
}

/* 1-opt on the incumbent: single-layer changes that keep every budget and lower the
 * objective, best first, until none is left. A better start prunes far more. */
static void improve(struct bb *b)
{
    const struct qd_search *s = b->s;
    int *ch = b->cur;
    memcpy(ch, b->best, sizeof *ch * b->L);
    struct qd_search_result r;
    qd_search_eval(s, ch, &r);
    for (int it = 0; it < 4 * b->L; it++) {
        double bestd = 0;
        int bl = -1, bk = -1;
        for (int l = 0; l < b->L; l++)
            for (int k = 0; k < b->K; k++) {
                if (k == ch[l] || !b->ok[l * b->K + k])
                    continue;
                double dobj = s->obj[(size_t)l * b->K + k] - s->obj[(size_t)l * b->K + ch[l]];
                if (dobj >= bestd)
                    continue;
                const double *a = cost_at(s, l, ch[l]), *n = cost_at(s, l, k);
                int ok = 1;
                for (int q = 0; q < b->na && ok; q++) {
                    int d = b->act[q];
                    ok = r.cost[d] - a[d] + n[d] <= s->budget[d] - fabs(s->budget[d]) * 1e-12;
                }
                if (ok)
                    bestd = dobj, bl = l, bk = k;
            }
        if (bl < 0)
            break;
        ch[bl] = bk;
        qd_search_eval(s, ch, &r);
        if (!fits(s, r.cost)) {
            ch[bl] = b->best[bl];
            break;
        }
        consider(b, ch);
    }
}

static int cmp_gap_desc(const void *x, const void *y, void *ctx)
{
    const double *gap = ctx;
    double a = gap[*(const int *)x], c = gap[*(const int *)y];
    return a < c ? 1 : a > c ? -1 : 0;
}

/* Surrogate feasibility multipliers: maximize F(mu) = sum_l min_k sum_a mu_a c_a / cap_a - 1
 * over the simplex (exponentiated subgradient) into b->mu; returns the best F. F > 0 proves
 * that no policy fits; otherwise mu prunes the search (see dfs). */
static double surrogate(struct bb *b)
{
    int L = b->L, K = b->K;
    double mu[D], fbest = -INFINITY, eta = 2.0;
    for (int a = 0; a < b->na; a++)
        mu[a] = 1.0 / b->na;
    for (int it = 0; it < 60; it++) {
        double f = -1, gr[D];
        for (int a = 0; a < b->na; a++)
            gr[a] = -1;
        for (int l = 0; l < L; l++) {
            int bk = -1;
            double bv = INFINITY;
            for (int k = 0; k < K; k++)
                if (b->ok[l * K + k]) {
                    const double *c = b->nc + ((size_t)l * K + k) * D;
                    double v = 0;
                    for (int a = 0; a < b->na; a++)
                        v += mu[a] * c[a];
                    if (v < bv)
                        bv = v, bk = k;
                }
            f += bv;
            const double *c = b->nc + ((size_t)l * K + bk) * D;
            for (int a = 0; a < b->na; a++)
                gr[a] += c[a];
        }
        if (f > fbest) {
            fbest = f;
            memcpy(b->mu, mu, sizeof mu);
            if (f > 1e-9)
                break; /* proof enough: nothing fits */
        }
        double z = 0;
        for (int a = 0; a < b->na; a++)
            z += mu[a] *= exp(eta * gr[a]);
        for (int a = 0; a < b->na; a++)
            mu[a] = fmax(mu[a] / z, 1e-12);
        eta *= 0.93;
    }
    return fbest;
}

qd_err qd_search_exact(const struct qd_search *s, int *choice, struct qd_search_result *r)
{
    double t0 = now();
    memset(r, 0, sizeof *r);
    if (s->L < 1 || s->K < 1)
        return qd_seterr(QD_EINVAL, "search: %d layers, %d options", s->L, s->K);
    int L = s->L, K = s->K;
    struct bb b = {.s = s, .L = L, .K = K, .cut = s->have_upper ? s->upper : INFINITY};
    for (int d = 0; d < D; d++)
        if (isfinite(s->budget[d]))
            b.act[b.na++] = d;
    /* smallest achievable figure of each dimension on its own */
    double minc[D] = {0};
    for (int l = 0; l < L; l++) {
        int any = 0;
        double m[D];
        for (int d = 0; d < D; d++)
            m[d] = INFINITY;
        for (int k = 0; k < K; k++)
            if (usable(s, l, k)) {
                any = 1;
                for (int d = 0; d < D; d++)
                    m[d] = fmin(m[d], cost_at(s, l, k)[d]);
            }
        if (!any)
            return qd_seterr(QD_EBUDGET, "search: layer %d has no usable option", l);
        for (int d = 0; d < D; d++)
            minc[d] += m[d];
    }
    for (int d = 0; d < D; d++)
        r->cost[d] = s->base[d] + minc[d];
    for (int a = 0; a < b.na; a++) {
        int d = b.act[a];
        if (r->cost[d] > s->budget[d] * (1 + 1e-9) + 1e-12)
            return qd_seterr(QD_EBUDGET, "no policy fits the %s budget of %.6g %s: the smallest "
                                         "achievable is %.6g %s",
                             qd_budget_name(d), s->budget[d], unit(d), r->cost[d], unit(d));
        b.cap[a] = s->budget[d] - s->base[d];
        if (!(b.cap[a] > 0))
            b.cap[a] = 1e-300; /* only zero-cost options fit; normalization stays finite */
    }
    b.order = malloc(sizeof *b.order * L);
    b.opt = malloc(sizeof *b.opt * L * K);
    b.suf_red = calloc(L + 1, sizeof *b.suf_red);
    b.suf_n = calloc((size_t)(L + 1) * D, sizeof *b.suf_n);
    b.suf_f = calloc(L + 1, sizeof *b.suf_f);
    b.cur = malloc(sizeof *b.cur * L);
    b.best = malloc(sizeof *b.best * L);
    int *x = malloc(sizeof *x * L);
    double *gap = malloc(sizeof *gap * L);
    b.ok = malloc((size_t)L * K);
    b.nc = malloc(sizeof *b.nc * (size_t)L * K * D);
    b.cand = malloc(sizeof *b.cand * (size_t)L * K);
    qd_err e = QD_OK;
    if (!b.order || !b.opt || !b.suf_red || !b.suf_n || !b.suf_f || !b.cur || !b.best || !x ||
        !gap || !b.ok || !b.nc || !b.cand) {
        e = qd_seterr(QD_ENOMEM, "search: out of memory");
        goto out;
    }
    for (int l = 0; l < L; l++) /* the inner loops read these, not the caller's arrays */
        for (int k = 0; k < K; k++) {
            b.ok[l * K + k] = (uint8_t)usable(s, l, k);
            const double *c = cost_at(s, l, k);
            for (int a = 0; a < b.na; a++)
                b.nc[((size_t)l * K + k) * D + a] = c[b.act[a]] / b.cap[a];
        }
    /* Lagrangian dual by projected subgradient: Polyak steps toward the incumbent, scaled by
     * theta, halved after THETA_WAIT rounds without a new best (a poor incumbent would
     * otherwise keep the steps too long and the bound loose) */
    double lam_best[D] = {0}, lb_best = -INFINITY, g[D], theta = 1;
    int last_gain = 0, last_best = 0, have_mu = 0;
    for (int it = 0; it < (b.na ? 80 : 1); it++) {
        double v = dual(&b, x, g);
        if (v > lb_best + fabs(lb_best) * 1e-4) /* a real gain, not a crawl */
            last_gain = it;
        if (v > lb_best) {
            lb_best = v, last_best = it;
            memcpy(lam_best, b.lam, sizeof lam_best);
        } else if (it - last_best >= THETA_WAIT) {
            theta *= 0.5, last_best = it;
        }
        if (it - last_gain > STALL)
            break; /* the bound has stopped rising: the search takes it from here */
        /* still nothing that fits after a few rounds: maybe nothing can (an unbounded dual
         * would keep this loop busy); the surrogate multipliers answer that cheaply */
        if (it == 6 && !b.have && b.na >= 2) {
            have_mu = 1;
            if (surrogate(&b) > 1e-9)
                goto none;
        }
        consider(&b, x);
        if (it == 0 && !b.have) {
            /* the unconstrained optimum, repaired and improved: an early incumbent steers
             * the steps and usually spares the surrogate below */
            memcpy(b.cur, x, sizeof *x * L);
            if (repair(&b, b.cur)) {
                consider(&b, b.cur);
                if (b.have)
                    improve(&b);
            }
        }
        if (lb_best >= b.cut - fabs(b.cut) * 1e-12)
            break; /* the bound meets the incumbent (it is optimal) or the caller's bound */
        double gg = 0;
        for (int a = 0; a < b.na; a++) {
            double gp = b.lam[a] > 0 || g[a] > 0 ? g[a] : 0; /* projected */
            gg += gp * gp;
        }
        if (gg == 0)
            break; /* x feasible with complementary slackness: optimal */
        double ub = isfinite(b.cut) ? b.cut : v + fabs(v) * 0.1 + 1e-9;
        double step = theta * (ub - v) / gg;
        if (!(step > 0))
            step = 1e-3;
        for (int a = 0; a < b.na; a++)
            b.lam[a] = fmax(0, b.lam[a] + step * g[a]);
    }
    memcpy(b.lam, lam_best, sizeof lam_best);
    dual(&b, x, g);
    memcpy(b.cur, x, sizeof *x * L);
    if (repair(&b, b.cur))
        consider(&b, b.cur);
    if (b.have)
        improve(&b);
    if (!b.have && lb_best >= b.cut - fabs(b.cut) * 1e-12)
        goto none; /* nothing below the caller's bound */
    /* No incumbent yet with 2+ budgets: the surrogate multipliers (computed early in the
     * subgradient phase, or now) prune the search, or prove at once that nothing fits. With
     * an incumbent the objective bound prunes and they would cost more than they save. */
    if (b.na >= 2 && !b.have) {
        if (!have_mu && surrogate(&b) > 1e-9)
            goto none;
        b.use_f = 1;
    }
    /* search order: layers whose best and second-best reduced costs differ most first */
    for (int l = 0; l < L; l++) {
        double m1 = INFINITY, m2 = INFINITY;
        for (int k = 0; k < K; k++)
            if (b.ok[l * K + k]) {
                double v = reduced(&b, l, k);
                if (v < m1)
                    m2 = m1, m1 = v;
                else if (v < m2)
                    m2 = v;
            }
        gap[l] = isfinite(m2) ? m2 - m1 : INFINITY;
        b.order[l] = l;
    }
    qsort_r(b.order, L, sizeof *b.order, cmp_gap_desc, gap);
    for (int a = 0; a < b.na; a++)
        b.lam_sum += b.lam[a];
    for (int i = L - 1; i >= 0; i--) {
        int l = b.order[i], n = 0;
        struct opt *op = b.opt + (size_t)i * K;
        double *sn = b.suf_n + (size_t)i * D;
        for (int a = 0; a < b.na; a++)
            sn[a] = INFINITY;
        double fmin_ = INFINITY;
        for (int k = 0; k < K; k++) {
            if (!b.ok[l * K + k])
                continue;
            struct opt o = {.k = k, .red = reduced(&b, l, k), .obj = s->obj[(size_t)l * K + k]};
            const double *c = b.nc + ((size_t)l * K + k) * D;
            for (int a = 0; a < b.na; a++) {
                o.nc[a] = c[a], o.f += b.mu[a] * c[a];
                sn[a] = fmin(sn[a], c[a]);
            }
            fmin_ = fmin(fmin_, o.f);
            int q = n++; /* insertion sort by reduced cost */
            for (; q > 0 && op[q - 1].red > o.red; q--)
                op[q] = op[q - 1];
            op[q] = o;
        }
        if (n < K)
            op[n].k = -1;
        b.suf_red[i] = b.suf_red[i + 1] + op[0].red;
        for (int a = 0; a < b.na; a++)
            sn[a] += sn[D + a];
        b.suf_f[i] = b.suf_f[i + 1] + fmin_;
    }
    double n0[D] = {0};
    dfs(&b, 0, n0, 0, 0, 0);
    if (b.stopped && !b.have) {
        e = qd_seterr(QD_ETIMEDOUT, "search: stopped after %ld nodes with no policy found yet "
                                    "(the budgets pull against each other; the limit is "
                                    "max_nodes)", b.nodes);
        goto out;
    }
    if (!b.have) {
    none:;
        char figs[256] = "";
        for (int a = 0; a < b.na; a++)
            snprintf(figs + strlen(figs), sizeof figs - strlen(figs), "%s%s >= %.6g %s",
                     a ? ", " : "", qd_budget_name(b.act[a]), r->cost[b.act[a]],
                     unit(b.act[a]));
        if (s->have_upper)
            e = qd_seterr(QD_EBUDGET, "no policy meets all the budgets with an objective below "
                                      "%.9g (each budget alone can be met: %s)", s->upper, figs);
        else
            e = qd_seterr(QD_EBUDGET, "no policy meets all the budgets together (each alone "
                                      "can be met: %s)", figs);
        goto out;
    }
    memcpy(choice, b.best, sizeof *choice * L);
    qd_search_eval(s, choice, r);
    r->states = b.nodes;
    r->proven = !b.stopped;
out:
    r->seconds = now() - t0;
    free(b.order), free(b.opt), free(b.suf_red), free(b.suf_n);
    free(b.cur), free(b.best), free(x), free(gap), free(b.suf_f), free(b.ok), free(b.nc);
    free(b.cand);
    return e;
}

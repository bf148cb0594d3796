/* Exact multi-budget multiple-choice knapsack by DP over Pareto sets (see search.h). Sums are
 * always formed in layer order starting from `base`, in the DP, in qd_search_eval and in the
 * tests' brute force, so "fits" means the same floating-point comparison everywhere; the
 * pruning bounds, summed in another order, get a relative slack of 1e-9 so they never drop a
 * point that fits exactly. */
#include "policy/search.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define D QD_BUDGET_COUNT

struct pt {
    double c[D];
    double obj;
    double key; /* sort key (the one budgeted cost, when there is one) */
    int parent; /* index in the previous layer's set */
    int k;      /* option chosen at this layer */
};

struct set {
    struct pt *p;
    int n, cap;
};

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

static int push(struct set *s, const struct pt *p)
{
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        struct pt *np = realloc(s->p, sizeof *np * cap);
        if (!np)
            return -1;
        s->p = np, s->cap = cap;
    }
    s->p[s->n++] = *p;
    return 0;
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

/* Greedy start: the best objective per layer, then, while a budget is broken, the single
 * change with the least objective increase per unit of normalized excess removed. */
static int greedy(const struct qd_search *s, int *ch)
{
    for (int l = 0; l < s->L; l++) {
        ch[l] = -1;
        for (int k = 0; k < s->K; k++)
            if (usable(s, l, k) &&
                (ch[l] < 0 || s->obj[(size_t)l * s->K + k] < s->obj[(size_t)l * s->K + ch[l]]))
                ch[l] = k;
        if (ch[l] < 0)
            return 0;
    }
    for (int it = 0; it < s->L * s->K * 4; it++) {
        struct qd_search_result r;
        qd_search_eval(s, ch, &r);
        if (fits(s, r.cost))
            return 1;
        double best = INFINITY;
        int bl = -1, bk = -1;
        for (int l = 0; l < s->L; l++)
            for (int k = 0; k < s->K; k++) {
                if (k == ch[l] || !usable(s, l, k))
                    continue;
                const double *a = cost_at(s, l, ch[l]), *b = cost_at(s, l, k);
                double gain = 0;
                for (int d = 0; d < D; d++)
                    if (r.cost[d] > s->budget[d])
                        gain += (a[d] - b[d]) / (r.cost[d] - s->budget[d]);
                if (gain <= 0)
                    continue;
                double dobj = s->obj[(size_t)l * s->K + k] - s->obj[(size_t)l * s->K + ch[l]];
                double score = dobj / gain;
                if (score < best)
                    best = score, bl = l, bk = k;
            }
        if (bl < 0)
            return 0;
        ch[bl] = bk;
    }
    return 0;
}

static int cmp_obj(const void *a, const void *b)
{
    const struct pt *x = a, *y = b;
    return x->obj < y->obj ? -1 : x->obj > y->obj;
}

static int cmp_key(const void *a, const void *b)
{
    const struct pt *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->obj < y->obj ? -1 : x->obj > y->obj;
}

/* Keeps the points no other point dominates (in the budgeted dimensions and the objective). */
static void pareto(struct set *s, const int *act, int na)
{
    if (s->n <= 1)
        return;
    int m = 0;
    if (na == 0) {
        int b = 0;
        for (int i = 1; i < s->n; i++)
            if (s->p[i].obj < s->p[b].obj)
                b = i;
        s->p[0] = s->p[b];
        s->n = 1;
        return;
    }
    if (na == 1) {
        for (int i = 0; i < s->n; i++)
            s->p[i].key = s->p[i].c[act[0]];
        qsort(s->p, s->n, sizeof *s->p, cmp_key);
        double best = INFINITY;
        for (int i = 0; i < s->n; i++)
            if (s->p[i].obj < best) {
                best = s->p[i].obj;
                s->p[m++] = s->p[i];
            }
        s->n = m;
        return;
    }
    qsort(s->p, s->n, sizeof *s->p, cmp_obj);
    for (int i = 0; i < s->n; i++) {
        int dom = 0;
        for (int j = 0; j < m && !dom; j++) {
            int le = 1;
            for (int a = 0; a < na && le; a++)
                le = s->p[j].c[act[a]] <= s->p[i].c[act[a]];
            dom = le;
        }
        if (!dom)
            s->p[m++] = s->p[i];
    }
    s->n = m;
}

qd_err qd_search_exact(const struct qd_search *s, int *choice, struct qd_search_result *r)
{
    double t0 = now();
    memset(r, 0, sizeof *r);
    if (s->L < 1 || s->K < 1)
        return qd_seterr(QD_EINVAL, "search: %d layers, %d options", s->L, s->K);
    int L = s->L, act[D], na = 0;
    for (int d = 0; d < D; d++)
        if (isfinite(s->budget[d]))
            act[na++] = d;
    /* suffix minima of each cost and of the objective (lower bounds of any completion) */
    double *sufc = calloc((size_t)(L + 1) * D, sizeof *sufc), *sufo = calloc(L + 1, sizeof *sufo);
    struct set *sets = calloc(L, sizeof *sets);
    int *inc = malloc(sizeof *inc * L);
    qd_err e = QD_OK;
    if (!sufc || !sufo || !sets || !inc) {
        e = qd_seterr(QD_ENOMEM, "search: out of memory");
        goto out;
    }
    for (int l = L - 1; l >= 0; l--) {
        double mo = INFINITY, mc[D];
        for (int d = 0; d < D; d++)
            mc[d] = INFINITY;
        for (int k = 0; k < s->K; k++) {
            if (!usable(s, l, k))
                continue;
            mo = fmin(mo, s->obj[(size_t)l * s->K + k]);
            for (int d = 0; d < D; d++)
                mc[d] = fmin(mc[d], cost_at(s, l, k)[d]);
        }
        if (!isfinite(mo)) {
            e = qd_seterr(QD_EBUDGET, "search: layer %d has no usable option", l);
            goto out;
        }
        sufo[l] = sufo[l + 1] + mo;
        for (int d = 0; d < D; d++)
            sufc[l * D + d] = sufc[(l + 1) * D + d] + mc[d];
    }
    /* smallest achievable figures, each on its own */
    for (int d = 0; d < D; d++)
        r->cost[d] = s->base[d] + sufc[d];
    for (int a = 0; a < na; a++)
        if (r->cost[act[a]] > s->budget[act[a]] * (1 + 1e-9)) {
            int d = act[a];
            e = qd_seterr(QD_EBUDGET, "no policy fits the %s budget of %.6g %s: the smallest "
                                      "achievable is %.6g %s",
                          qd_budget_name(d), s->budget[d], unit(d), r->cost[d], unit(d));
            goto out;
        }
    double incumbent = INFINITY;
    int have_inc = greedy(s, inc);
    if (have_inc) {
        struct qd_search_result g;
        qd_search_eval(s, inc, &g);
        incumbent = g.obj;
    }
    /* layer by layer */
    struct pt start = {.parent = -1, .k = -1};
    for (int d = 0; d < D; d++)
        start.c[d] = s->base[d];
    for (int l = 0; l < L; l++) {
        struct set *cur = &sets[l];
        int np = l ? sets[l - 1].n : 1;
        for (int i = 0; i < np; i++) {
            const struct pt *p = l ? &sets[l - 1].p[i] : &start;
            for (int k = 0; k < s->K; k++) {
                if (!usable(s, l, k))
                    continue;
                struct pt q = {.parent = i, .k = k};
                const double *c = cost_at(s, l, k);
                int ok = 1;
                for (int d = 0; d < D; d++)
                    q.c[d] = p->c[d] + c[d];
                for (int a = 0; a < na && ok; a++) {
                    int d = act[a];
                    double lb = q.c[d] + sufc[(l + 1) * D + d];
                    ok = lb <= s->budget[d] + fabs(s->budget[d]) * 1e-9;
                    if (l == L - 1)
                        ok = q.c[d] <= s->budget[d]; /* complete: the exact comparison */
                }
                q.obj = p->obj + s->obj[(size_t)l * s->K + k];
                double lbo = q.obj + sufo[l + 1];
                if (ok && lbo > incumbent + fabs(incumbent) * 1e-9 + 1e-12)
                    ok = 0;
                if (ok && push(cur, &q)) {
                    e = qd_seterr(QD_ENOMEM, "search: out of memory");
                    goto out;
                }
            }
        }
        pareto(cur, act, na);
        r->states += cur->n;
        if (!cur->n)
            break;
    }
    struct set *last = &sets[L - 1];
    int best = -1;
    for (int i = 0; i < last->n; i++)
        if (best < 0 || last->p[i].obj < last->p[best].obj)
            best = i;
    if (best >= 0) {
        for (int l = L - 1, i = best; l >= 0; l--) {
            choice[l] = sets[l].p[i].k;
            i = sets[l].p[i].parent;
        }
        if (have_inc) { /* the greedy start may tie or (by the bound's slack) be kept */
            struct qd_search_result a, b;
            qd_search_eval(s, choice, &a);
            qd_search_eval(s, inc, &b);
            if (b.obj < a.obj)
                memcpy(choice, inc, sizeof *inc * L);
        }
    } else if (have_inc) {
        memcpy(choice, inc, sizeof *inc * L);
    } else {
        char figs[256] = "";
        for (int a = 0; a < na; a++)
            snprintf(figs + strlen(figs), sizeof figs - strlen(figs), "%s%s >= %.6g %s",
                     a ? ", " : "", qd_budget_name(act[a]), r->cost[act[a]], unit(act[a]));
        e = qd_seterr(QD_EBUDGET, "no policy meets all the budgets together (each alone can be "
                                  "met: %s)", figs);
        goto out;
    }
    long states = r->states;
    qd_search_eval(s, choice, r);
    r->states = states;
out:
    r->seconds = now() - t0;
    if (sets)
        for (int l = 0; l < L; l++)
            free(sets[l].p);
    free(sets);
    free(sufc);
    free(sufo);
    free(inc);
    return e;
}

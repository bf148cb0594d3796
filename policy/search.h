/* Exact constrained policy search: choose one option per layer (a weight/activation bitwidth
 * pair) to minimize the summed objective subject to additive budgets (flash, latency, energy,
 * and RAM where weights are loaded into RAM; a fixed part in `base`). Returns the true optimum
 * or QD_EBUDGET with the smallest achievable figures.
 *
 * Usage:
 *     struct qd_search s = {.L = L, .K = 4, .obj = obj, .cost = cost};   // obj (L, K),
 *     for (int d = 0; d < QD_BUDGET_COUNT; d++) s.budget[d] = INFINITY;  // cost (L, K, COUNT)
 *     s.budget[QD_BUDGET_FLASH] = 50e3;
 *     int choice[L]; struct qd_search_result r;
 *     if (qd_search_exact(&s, choice, &r) == QD_EBUDGET) puts(qd_errmsg());
 *
 * Method: dynamic programming over layers on Pareto sets. After layer l a partial policy is a
 * point (costs of the budgeted dimensions, objective); a point is dropped when (a) even the
 * cheapest completion breaks a budget, (b) its objective plus the cheapest completion's
 * objective is no better than a complete policy already known (a greedy one to start), or
 * (c) another point is no worse in every budgeted cost and in the objective. None of these can
 * drop the optimum, so the result is exact; the work is the size of the Pareto sets, small in
 * practice (a test compares with brute force, bench/search_vs_glpk.sh with an ILP solver).
 * Options with an infinite cost or objective are never chosen (unsupported bitwidths). */
#ifndef QD_POLICY_SEARCH_H
#define QD_POLICY_SEARCH_H

#include "core/err.h"

enum qd_budget { QD_BUDGET_FLASH, QD_BUDGET_LATENCY, QD_BUDGET_ENERGY, QD_BUDGET_RAM,
                 QD_BUDGET_COUNT };

struct qd_search {
    int L, K;                         /* layers; options per layer */
    const double *obj;                /* (L, K) */
    const double *cost;               /* (L, K, QD_BUDGET_COUNT): additive per-layer costs */
    double base[QD_BUDGET_COUNT];     /* fixed part of each figure */
    double budget[QD_BUDGET_COUNT];   /* INFINITY: unconstrained */
};

struct qd_search_result {
    double obj;
    double cost[QD_BUDGET_COUNT]; /* base + the chosen options' costs, summed in layer order */
    long states;                  /* Pareto points kept over all layers (work done) */
    double seconds;
};

const char *qd_budget_name(enum qd_budget d);
/* choice: (L) chosen option per layer. On QD_EBUDGET, r->cost holds the smallest achievable
 * figure of each dimension (each minimized on its own) and the message names the budget. */
qd_err qd_search_exact(const struct qd_search *s, int *choice, struct qd_search_result *r);
/* Objective and figures of a given choice, summed as qd_search_exact sums them. */
void qd_search_eval(const struct qd_search *s, const int *choice, struct qd_search_result *r);

#endif

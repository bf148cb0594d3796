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
 * Method: branch and bound over layers. Lagrange multipliers for the budgets (projected
 * subgradient) give every layer a reduced cost, a lower bound for every partial policy and a
 * first incumbent (the dual's minimizer, repaired greedily, then improved by single-layer
 * changes). The depth-first search takes layers with the clearest choice first and each
 * layer's options by ascending reduced cost; a partial policy is dropped when (a) even the
 * cheapest completion breaks a budget, (b) with two or more budgets and no incumbent yet, the
 * cheapest completion breaks their surrogate (a convex combination of the normalized budgets,
 * whose multipliers also prove infeasibility outright), or (c) its Lagrangian bound is no
 * better than the incumbent. None of these can drop the optimum, so the result is exact (a
 * test compares with brute force, bench/search_vs_glpk.sh with an ILP solver). The work is
 * small on most instances but not bounded (the problem is NP-hard: a few random L = 200
 * instances with two budgets pulling apart take millions of nodes); max_nodes bounds it for
 * callers that must answer (the daemon), who then get the best policy found and proven = 0.
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
    int have_upper;                   /* only a policy with an objective below `upper` is */
    double upper;                     /* wanted (QD_EBUDGET when none): a known solution's */
    long max_nodes;                   /* 0: none. Past it the search stops: the best policy */
                                      /* so far (proven = 0), or QD_ETIMEDOUT without one */
};

struct qd_search_result {
    double obj;
    double cost[QD_BUDGET_COUNT]; /* base + the chosen options' costs, summed in layer order */
    long states;                  /* search nodes visited (work done) */
    int proven;                   /* 1: the optimum (0: stopped at max_nodes) */
    double seconds;
};

const char *qd_budget_name(enum qd_budget d);
/* choice: (L) chosen option per layer. On QD_EBUDGET, r->cost holds the smallest achievable
 * figure of each dimension (each minimized on its own) and the message names the budget. */
qd_err qd_search_exact(const struct qd_search *s, int *choice, struct qd_search_result *r);
/* Objective and figures of a given choice, summed as qd_search_exact sums them. */
void qd_search_eval(const struct qd_search *s, const int *choice, struct qd_search_result *r);

#endif

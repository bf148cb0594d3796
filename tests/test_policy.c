/* Policy: the exact search against brute force on every instance small enough to enumerate,
 * device profiles, and the cost model against built models. */
#include "testutil.h"

#include "policy/search.h"

#define D QD_BUDGET_COUNT

struct inst {
    int L, K;
    double obj[8 * 4], cost[8 * 4 * D];
    struct qd_search s;
};

/* Random instance: L layers, K options; flash in whole bytes, the rest real; 1-3 of the four
 * budgets set between the cheapest and the dearest figure; some options unsupported. */
static void random_inst(struct qd_rng *r, struct inst *in)
{
    in->L = 1 + (int)qd_rng_below(r, 8), in->K = 4;
    memset(&in->s, 0, sizeof in->s);
    for (int l = 0; l < in->L; l++)
        for (int k = 0; k < in->K; k++) {
            int off = l * in->K + k;
            in->obj[off] = qd_rng_below(r, 3) ? qd_rng_uniform(r) : (double)qd_rng_below(r, 4);
            in->cost[off * D + QD_BUDGET_FLASH] = (double)(100 + qd_rng_below(r, 5000));
            in->cost[off * D + QD_BUDGET_LATENCY] = 10 * qd_rng_uniform(r);
            in->cost[off * D + QD_BUDGET_ENERGY] = qd_rng_uniform(r) * qd_rng_uniform(r);
            in->cost[off * D + QD_BUDGET_RAM] = (double)qd_rng_below(r, 300);
            if (k && qd_rng_below(r, 12) == 0) /* an unsupported bitwidth */
                in->obj[off] = INFINITY;
        }
    in->s.L = in->L, in->s.K = in->K, in->s.obj = in->obj, in->s.cost = in->cost;
    for (int d = 0; d < D; d++) {
        in->s.base[d] = d == QD_BUDGET_FLASH ? 96 : d == QD_BUDGET_RAM ? 4096 : 0.5;
        in->s.budget[d] = INFINITY;
    }
    int nb = 1 + (int)qd_rng_below(r, 3);
    for (int b = 0; b < nb; b++) {
        int d = (int)qd_rng_below(r, D);
        double lo = in->s.base[d], hi = in->s.base[d];
        for (int l = 0; l < in->L; l++) {
            double mn = INFINITY, mx = 0;
            for (int k = 0; k < in->K; k++) {
                mn = fmin(mn, in->cost[(l * in->K + k) * D + d]);
                mx = fmax(mx, in->cost[(l * in->K + k) * D + d]);
            }
            lo += mn, hi += mx;
        }
        double t = qd_rng_uniform(r) * 1.1 - 0.05; /* a few below the cheapest: infeasible */
        in->s.budget[d] = lo + t * (hi - lo);
        if (d == QD_BUDGET_FLASH || d == QD_BUDGET_RAM)
            in->s.budget[d] = floor(in->s.budget[d]);
        int tight = (int)qd_rng_below(r, 4);
        if (tight == 0) { /* exactly the figure of some policy: the budget's edge must fit */
            double c = in->s.base[d];
            for (int l = 0; l < in->L; l++)
                c += in->cost[(l * in->K + (int)qd_rng_below(r, in->K)) * D + d];
            in->s.budget[d] = c;
        } else if (tight == 1) { /* exactly the cheapest figure */
            in->s.budget[d] = lo;
        }
    }
}

/* Every choice, costs summed in layer order from the base (as the search sums them). */
static int brute(const struct inst *in, int *best, double *bobj)
{
    int ch[8] = {0}, found = 0;
    long total = 1;
    for (int l = 0; l < in->L; l++)
        total *= in->K;
    for (long code = 0; code < total; code++) {
        long c = code;
        for (int l = 0; l < in->L; l++, c /= in->K)
            ch[l] = (int)(c % in->K);
        double obj = 0, cost[D];
        for (int d = 0; d < D; d++)
            cost[d] = in->s.base[d];
        int ok = 1;
        for (int l = 0; l < in->L && ok; l++) {
            int off = l * in->K + ch[l];
            ok = isfinite(in->obj[off]);
            obj += in->obj[off];
            for (int d = 0; d < D; d++)
                cost[d] += in->cost[off * D + d];
        }
        for (int d = 0; d < D && ok; d++)
            ok = cost[d] <= in->s.budget[d];
        if (ok && (!found || obj < *bobj)) {
            found = 1, *bobj = obj;
            memcpy(best, ch, sizeof ch);
        }
    }
    return found;
}

static void search_equals_brute_force(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 4242);
    int feasible = 0, infeasible = 0;
    for (int t = 0; t < 3000; t++) {
        struct inst in;
        random_inst(&r, &in);
        int want[8], got[8];
        double wobj = 0;
        int found = brute(&in, want, &wobj);
        struct qd_search_result res;
        qd_err e = qd_search_exact(&in.s, got, &res);
        if (!found) {
            if (e != QD_EBUDGET)
                fail_msg("instance %d: brute force finds no policy, search says %s", t,
                         qd_err_name(e));
            assert_true(strstr(qd_errmsg(), "budget") != NULL);
            infeasible++;
            continue;
        }
        if (e)
            fail_msg("instance %d (L=%d): %s", t, in.L, qd_errmsg());
        struct qd_search_result ev;
        qd_search_eval(&in.s, got, &ev);
        for (int d = 0; d < D; d++) {
            assert_true(ev.cost[d] <= in.s.budget[d]);
            assert_true(ev.cost[d] == res.cost[d]);
        }
        if (fabs(ev.obj - wobj) > 1e-12 * (1 + fabs(wobj)))
            fail_msg("instance %d (L=%d): search %.17g, brute force %.17g", t, in.L, ev.obj, wobj);
        feasible++;
    }
    fprintf(stderr, "%d feasible and %d infeasible instances agree with brute force\n",
            feasible, infeasible);
    assert_true(feasible > 2000 && infeasible > 50);
}

/* The error names the budget that cannot be met and the smallest achievable figure. */
static void infeasible_budget_is_named(void **st)
{
    double obj[2 * 2] = {0, 1, 0, 1}, cost[2 * 2 * D] = {0};
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 2; k++)
            cost[(l * 2 + k) * D + QD_BUDGET_FLASH] = k ? 100 : 400;
    struct qd_search s = {.L = 2, .K = 2, .obj = obj, .cost = cost};
    for (int d = 0; d < D; d++)
        s.budget[d] = INFINITY;
    s.base[QD_BUDGET_FLASH] = 50;
    s.budget[QD_BUDGET_FLASH] = 249;
    int ch[2];
    struct qd_search_result r;
    assert_int_equal(qd_search_exact(&s, ch, &r), QD_EBUDGET);
    assert_non_null(strstr(qd_errmsg(), "flash"));
    assert_non_null(strstr(qd_errmsg(), "250"));
    s.budget[QD_BUDGET_FLASH] = 250;
    assert_int_equal(qd_search_exact(&s, ch, &r), QD_OK);
    assert_true(ch[0] == 1 && ch[1] == 1 && r.cost[QD_BUDGET_FLASH] == 250);
    s.budget[QD_BUDGET_FLASH] = 550; /* one layer can stay at its better option */
    assert_int_equal(qd_search_exact(&s, ch, &r), QD_OK);
    assert_true(r.obj == 1 && r.cost[QD_BUDGET_FLASH] == 550);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(search_equals_brute_force),
        cmocka_unit_test(infeasible_budget_is_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

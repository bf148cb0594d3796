/* The exact policy search against an ILP solver (GLPK's glpsol, Debian glpk-utils) on random
 * instances shaped like real ones: L layers of random size and MACs, 4 weight bitwidths
 * (2/4/8/16), flash proportional to bits x weights, latency and energy to MACs with a
 * per-bitwidth cost, sensitivity falling with bits; flash, latency and energy budgets set
 * between the cheapest and the dearest policy. Prints both objectives (they must agree: both
 * are exact) and the time ratio.
 *     search_bench [INSTANCES_PER_SIZE] [GLPSOL]        (default 5, glpsol)
 * GLPSOL "none": no ILP solver; each search runs REPEAT times (env, default 100), for
 * profiling the search alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "policy/search.h"

#define D QD_BUDGET_COUNT
#define NK 4

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void instance(struct qd_rng *r, int L, double *obj, double *cost, struct qd_search *s)
{
    static const int bits[NK] = {2, 4, 8, 16};
    static const double cyc[NK] = {1.6, 1.3, 0.9, 1.0}, pj[NK] = {530, 430, 300, 330};
    memset(s, 0, sizeof *s);
    for (int l = 0; l < L; l++) {
        double w = 500 + qd_rng_below(r, 100000), macs = w * (1 + qd_rng_below(r, 256));
        double sens = qd_rng_uniform(r) * qd_rng_uniform(r);
        for (int k = 0; k < NK; k++) {
            double *c = cost + ((size_t)l * NK + k) * D;
            c[QD_BUDGET_FLASH] = ceil(w * bits[k] / 8) + 48;
            c[QD_BUDGET_LATENCY] = macs * cyc[k] / 180e3;
            c[QD_BUDGET_ENERGY] = macs * pj[k] * 1e-9;
            c[QD_BUDGET_RAM] = 0;
            obj[l * NK + k] = sens * pow(4.0, -(double)k) * (1 + 0.2 * qd_rng_uniform(r));
        }
    }
    s->L = L, s->K = NK, s->obj = obj, s->cost = cost;
    for (int d = 0; d < D; d++) {
        s->budget[d] = INFINITY;
        if (d == QD_BUDGET_RAM)
            continue;
        double lo = 0, hi = 0;
        for (int l = 0; l < L; l++) {
            double mn = INFINITY, mx = 0;
            for (int k = 0; k < NK; k++) {
                double v = cost[((size_t)l * NK + k) * D + d];
                mn = fmin(mn, v), mx = fmax(mx, v);
            }
            lo += mn, hi += mx;
        }
        s->budget[d] = lo + (0.25 + 0.5 * qd_rng_uniform(r)) * (hi - lo);
    }
}

/* Writes the 0-1 program in CPLEX LP format, runs glpsol, reads the objective (0: found,
 * 1: infeasible, -1: failed); *secs: glpsol's wall time. */
static int glpk(const struct qd_search *s, const char *glpsol, double *objv, double *secs)
{
    char lp[] = "/tmp/qd_search_XXXXXX";
    int fd = mkstemp(lp);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    fprintf(f, "Minimize\n obj:");
    for (int l = 0; l < s->L; l++)
        for (int k = 0; k < s->K; k++)
            fprintf(f, " + %.17g x%d_%d", s->obj[l * s->K + k], l, k);
    fprintf(f, "\nSubject To\n");
    for (int l = 0; l < s->L; l++) {
        fprintf(f, " one%d:", l);
        for (int k = 0; k < s->K; k++)
            fprintf(f, " + x%d_%d", l, k);
        fprintf(f, " = 1\n");
    }
    for (int d = 0; d < D; d++) {
        if (!isfinite(s->budget[d]))
            continue;
        fprintf(f, " budget%d:", d);
        for (int l = 0; l < s->L; l++)
            for (int k = 0; k < s->K; k++)
                fprintf(f, " + %.17g x%d_%d", s->cost[((size_t)l * s->K + k) * D + d], l, k);
        fprintf(f, " <= %.17g\n", s->budget[d] - s->base[d]);
    }
    fprintf(f, "Binary\n");
    for (int l = 0; l < s->L; l++)
        for (int k = 0; k < s->K; k++)
            fprintf(f, " x%d_%d\n", l, k);
    fprintf(f, "End\n");
    fclose(f);
    char cmd[512], out[64];
    snprintf(out, sizeof out, "%s.out", lp);
    snprintf(cmd, sizeof cmd, "%s --lp %s --tmlim 600 -o %s > /dev/null 2>&1", glpsol, lp, out);
    double t0 = now();
    int rc = system(cmd);
    *secs = now() - t0;
    int ok = -1;
    FILE *o = rc == 0 ? fopen(out, "r") : NULL;
    char line[512];
    while (o && fgets(line, sizeof line, o)) {
        char *p = strstr(line, "Objective:");
        if (p && (p = strchr(p, '=')) && sscanf(p + 1, "%lf", objv) == 1)
            ok = 0;
        if (strstr(line, "UNDEFINED") || strstr(line, "INTEGER EMPTY"))
            ok = 1; /* infeasible */
    }
    if (o)
        fclose(o);
    remove(lp);
    remove(out);
    return ok;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, n, sizeof *v, cmp_d);
    return v[n / 2];
}

/* glpsol's own floor: the wall time of a one-variable program (process start, parsing,
 * output), the least of 7 runs after 2 to warm up; "solve" figures subtract it from GLPK's. */
static double glpk_floor(const char *glpsol)
{
    double *obj = calloc(1, sizeof *obj), *cost = calloc(D, sizeof *cost), t, v, m = INFINITY;
    struct qd_search s = {.L = 1, .K = 1, .obj = obj, .cost = cost};
    for (int d = 0; d < D; d++)
        s.budget[d] = INFINITY;
    for (int i = 0; i < 9; i++)
        if (!glpk(&s, glpsol, &v, &t) && i >= 2)
            m = fmin(m, t);
    free(obj), free(cost);
    return isfinite(m) ? m : 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int per = argc > 1 ? atoi(argv[1]) : 5;
    const char *glpsol = argc > 2 ? argv[2] : "glpsol";
    static const int sizes[] = {20, 50, 200};
    struct qd_rng r;
    qd_rng_seed(&r, 2026);
    int none = !strcmp(glpsol, "none");
    double floor_s = none ? 0 : glpk_floor(glpsol);
    if (!none)
        printf("glpsol floor (process start, parse, output of a 1-variable program): %.1f ms\n"
               "ours: median of 5 runs; glpk: median of 3 runs of glpsol (wall); solve = glpk - "
               "floor\n", 1e3 * floor_s);
    printf("%5s %4s %16s %16s %9s %9s %9s %8s %7s %7s\n", "L", "inst", "ours", "glpk", "ours ms",
           "glpk ms", "solve ms", "states", "wall", "solve");
    int bad = 0;
    for (int si = 0; si < 3; si++) {
        int L = sizes[si];
        double *obj = malloc(sizeof *obj * L * NK), *cost = malloc(sizeof *cost * L * NK * D);
        int *ch = malloc(sizeof *ch * L);
        double sum_ours = 0, sum_glpk = 0, sum_solve = 0;
        for (int t = 0; t < per; t++) {
            struct qd_search s;
            instance(&r, L, obj, cost, &s);
            struct qd_search_result res;
            qd_err e = qd_search_exact(&s, ch, &res);
            double gobj = NAN, gsec = 0;
            if (none) {
                const char *rep = getenv("REPEAT");
                int n = rep ? atoi(rep) : 100;
                double t0 = now();
                for (int i = 0; i < n; i++)
                    qd_search_exact(&s, ch, &res);
                res.seconds = (now() - t0) / (n > 0 ? n : 1);
                printf("%5d %4d %16.9g %9.3f ms %10ld states\n", L, t, e ? NAN : res.obj,
                       1e3 * res.seconds, res.states);
                sum_ours += res.seconds;
                continue;
            }
            double ts[5], tg[3];
            ts[0] = res.seconds;
            for (int i = 1; i < 5; i++) {
                struct qd_search_result again;
                qd_search_exact(&s, ch, &again);
                ts[i] = again.seconds;
            }
            double ours = median(ts, 5);
            int g = 0;
            for (int i = 0; i < 3; i++)
                g |= glpk(&s, glpsol, &gobj, &tg[i]);
            gsec = median(tg, 3);
            double solve = fmax(gsec - floor_s, 0);
            int agree = (e == QD_EBUDGET && g == 1) ||
                        (!e && !g && fabs(res.obj - gobj) <= 1e-6 * (1 + fabs(gobj)));
            bad += !agree;
            sum_ours += ours, sum_glpk += gsec, sum_solve += solve;
            printf("%5d %4d %16.9g %16.9g %9.3f %9.1f %9.1f %8ld %6.0fx %6.0fx%s\n", L, t,
                   e ? NAN : res.obj, gobj, 1e3 * ours, 1e3 * gsec, 1e3 * solve, res.states,
                   gsec / fmax(ours, 1e-9), solve / fmax(ours, 1e-9), agree ? "" : "  DISAGREE");
        }
        if (none)
            printf("L=%d: total %.3f ms\n", L, 1e3 * sum_ours);
        else
            printf("L=%d: total %.3f ms ours, %.1f ms glpk (%.1f ms solve): %.0fx wall, %.0fx "
                   "solve\n", L, 1e3 * sum_ours, 1e3 * sum_glpk, 1e3 * sum_solve,
                   sum_glpk / fmax(sum_ours, 1e-9), sum_solve / fmax(sum_ours, 1e-9));
        free(obj), free(cost), free(ch);
    }
    if (bad)
        printf("%d instance(s) disagree\n", bad);
    return bad != 0;
}

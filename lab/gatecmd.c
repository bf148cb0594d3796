/* quantlab supernet | gate train | gate eval | decide (see gatecmd.h). Every measured accuracy
 * is the device runtime's on the built .qm, after BatchNorm recalibration for its policy
 * (cached next to the supernet as <S>.bn). */
#include "lab/gatecmd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/file.h"
#include "core/rng.h"
#include "gate/gate.h"
#include "gate/supernet.h"
#include "lab/labrun.h"
#include "nn/ckpt.h"
#include "nn/kernels.h"
#include "quant/rtsize.h"


static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void on_epoch(const struct qd_epoch_stats *s, void *ctx)
{
    fprintf(stderr, "supernet: epoch %d/%d loss %.4f train %.2f%% (%.0f images/s)\n", s->epoch,
            s->epochs, s->loss, 100 * s->train_acc, s->images_per_s);
}

/* The supernet as a decider (training set kept: BatchNorm recalibration, calibration). */
static qd_err load(const struct qd_gate_lab_opts *o, const char *ckpt, struct qd_decider *d)
{
    qd_kernels_init(o->threads);
    struct qd_decider_opts dop = {.ckpt = ckpt, .data = o->data, .dir = o->dir,
                                  .sens_n = o->sens_n, .calib_n = o->calib_n, .keep_train = 1};
    return qd_decider_load(&dop, d);
}

struct lab {
    struct qd_decider d;
    struct qd_bn_cache bn;
    struct qd_dataset te;
    int have_d, have_bn, have_te;
    /* measured accuracy per policy */
    char **pol;
    double *acc;
    int n, cap;
};

static void lab_fini(struct lab *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->pol[i]);
    free(l->pol), free(l->acc);
    if (l->have_te)
        qd_dataset_fini(&l->te);
    if (l->have_bn)
        qd_bn_cache_fini(&l->bn);
    if (l->have_d)
        qd_decider_fini(&l->d);
}

static qd_err lab_open(const struct qd_gate_lab_opts *o, const char *ckpt, int need_test,
                       struct lab *l)
{
    memset(l, 0, sizeof *l);
    QD_TRY(load(o, ckpt, &l->d));
    l->have_d = 1;
    char path[1100];
    snprintf(path, sizeof path, "%s.bn", ckpt);
    qd_err e = qd_bn_cache_open(&l->bn, path, l->d.m.nstat, l->d.md5);
    l->have_bn = !e;
    if (!e && need_test) {
        e = qd_data_load(o->dir, l->d.ds, 0, &l->te);
        l->have_te = !e;
    }
    if (e)
        lab_fini(l);
    return e;
}

/* Test accuracy of policy p on the supernet (memoized). */
static qd_err accuracy(const struct qd_gate_lab_opts *o, struct lab *l,
                       const struct qd_policy *p, double *acc, size_t *bytes)
{
    char txt[QD_POLICY_MAX * 6];
    QD_TRY(qd_policy_format(p, txt, sizeof txt));
    for (int i = 0; i < l->n && !bytes; i++)
        if (!strcmp(l->pol[i], txt)) {
            *acc = l->acc[i];
            return QD_OK;
        }
    const float *st;
    int batches = o->bn_batches >= 0 ? o->bn_batches : 50;
    QD_TRY(qd_bn_cache_get(&l->bn, &l->d.m, &l->d.nm, &l->d.g, &l->d.tr, p, batches, &st));
    uint8_t *blob;
    size_t len;
    QD_TRY(qd_supernet_build(&l->d.m, &l->d.nm, st, &l->d.tr, o->calib_n, p, &blob, &len));
    struct qd_lab_eval r = {0};
    qd_err e = qd_lab_eval_blob(blob, len, &l->te, o->limit, o->threads, QD_RT_ISA_AUTO, &r);
    if (!e && o->out && bytes)
        e = qd_file_write_atomic(o->out, blob, len);
    free(blob);
    if (e)
        return e;
    if (bytes)
        *bytes = len;
    *acc = r.acc;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        char **pp = realloc(l->pol, cap * sizeof *pp);
        double *aa = pp ? realloc(l->acc, cap * sizeof *aa) : NULL;
        if (pp)
            l->pol = pp;
        if (!aa)
            return QD_OK; /* just not memoized */
        l->acc = aa, l->cap = cap;
    }
    l->pol[l->n] = strdup(txt);
    l->acc[l->n++] = r.acc;
    return QD_OK;
}

qd_err qd_lab_supernet(const struct qd_gate_lab_opts *o)
{
    if (o->policy) { /* evaluate the supernet at one policy */
        struct lab l;
        QD_TRY(lab_open(o, o->ckpt, 1, &l));
        struct qd_policy p;
        double acc = 0;
        size_t bytes = 0;
        qd_err e = qd_policy_parse(o->policy, l.d.g.nq, &p);
        if (!e)
            e = accuracy(o, &l, &p, &acc, &bytes);
        if (!e) {
            if (o->json)
                printf("{\"policy\":\"%s\",\"test_acc\":%.6f,\"bytes\":%zu,\"images\":%d}\n",
                       o->policy, acc, bytes, o->limit > 0 && o->limit < l.te.n ? o->limit
                                                                                  : l.te.n);
            else
                printf("supernet at %s: %.2f%% (%zu bytes)\n", o->policy, 100 * acc, bytes);
        }
        lab_fini(&l);
        return e;
    }
    if (!o->out)
        return qd_seterr(QD_EINVAL, "supernet needs --out S (or --policy P to evaluate one)");
    struct qd_model m;
    struct qd_norm nm;
    char ds[32];
    QD_TRY(qd_ckpt_load(o->ckpt, &m, ds, &nm));
    struct qd_dataset tr = {0};
    qd_err e = qd_data_load(o->dir, o->data ? o->data : ds, 1, &tr);
    if (!e) {
        struct qd_supernet_opts so = {.epochs = o->epochs > 0 ? o->epochs : 3,
                                      .threads = o->threads, .progress = !o->json,
                                      .lr = o->lr, .seed = (uint64_t)o->seed,
                                      .sandwich = o->sandwich, .kd = (float)o->kd,
                                      .kd_self = o->kd_self, .bn_sets = o->bn_sets,
                                      .project = o->project,
                                      .lowest_every = o->lowest_every};
        double t0 = now();
        e = qd_supernet_train(&m, &nm, &tr, NULL, &so, o->json ? NULL : on_epoch, NULL);
        if (!e)
            e = qd_ckpt_save(o->out, &m, tr.name, &nm);
        if (!e && !o->json)
            printf("supernet: %s on %s, %d epochs over sampled policies in %.0f s, saved %s\n",
                   m.family, tr.name, so.epochs, now() - t0, o->out);
        if (!e && o->json)
            printf("{\"supernet\":\"%s\",\"epochs\":%d,\"seconds\":%.1f}\n", o->out, so.epochs,
                   now() - t0);
        qd_dataset_fini(&tr);
    }
    qd_model_fini(&m);
    return e;
}

qd_err qd_lab_gate_train(const struct qd_gate_lab_opts *o)
{
    if (!o->supernet || !o->out)
        return qd_seterr(QD_EINVAL, "gate train needs --supernet S and --out G");
    struct qd_decider d;
    QD_TRY(load(o, o->supernet, &d));
    struct qd_gate g;
    struct qd_gate_train_opts to = {.steps = o->steps, .batch = o->batch, .hidden = o->hidden,
                                    .threads = o->threads, .lr = o->lr, .seed = (uint64_t)o->seed,
                                    .profiles = qd_device_parts, .nprofiles = QD_DEVICE_PARTS,
                                    .progress = !o->json, .probe = o->probe};
    double t0 = now();
    qd_err e = qd_gate_train(&g, &d, &to);
    if (!e) {
        snprintf(g.ckpt, sizeof g.ckpt, "%s", o->supernet);
        e = qd_gate_save(&g, o->out);
        if (!e)
            printf(o->json ? "{\"gate\":\"%s\",\"layers\":%d,\"seconds\":%.1f}\n"
                           : "gate: %s, %d layers, trained in %.1f s\n",
                   o->out, g.L, now() - t0);
        qd_gate_fini(&g);
    }
    qd_decider_fini(&d);
    return e;
}

/* The budgets of a device no flag narrows: its free flash and RAM, no latency or energy bound.
 * `decide` starts from these, and so do `gate eval`'s paper points, so the two agree. */
static void device_budgets(const struct qd_device *dev, double b[QD_BUDGET_COUNT])
{
    b[QD_BUDGET_FLASH] = dev->flash - dev->reserved_flash;
    b[QD_BUDGET_LATENCY] = INFINITY;
    b[QD_BUDGET_ENERGY] = INFINITY;
    b[QD_BUDGET_RAM] = dev->ram - dev->reserved_ram;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A random context on profile t: flash always constrained, RAM and latency sometimes, energy
 * from the battery as quantd does (at or below 20% the least, rising to the most at 100%). */
static void random_context(struct qd_rng *r, const struct qd_decide_tables *t, double *b,
                           double *battery)
{
    for (int k = 0; k < QD_BUDGET_COUNT; k++)
        b[k] = INFINITY;
    b[QD_BUDGET_FLASH] = t->lo[0] + qd_rng_uniform(r) * (t->hi[0] - t->lo[0]);
    if (qd_rng_uniform(r) < 0.3)
        b[QD_BUDGET_LATENCY] = t->lo[1] + qd_rng_uniform(r) * (t->hi[1] - t->lo[1]);
    if (qd_rng_uniform(r) < 0.3)
        b[QD_BUDGET_RAM] = t->lo[3] + qd_rng_uniform(r) * (t->hi[3] - t->lo[3]);
    *battery = qd_rng_uniform(r);
    b[QD_BUDGET_ENERGY] = qd_decide_battery_energy(t, *battery, 0.2);
}

qd_err qd_lab_gate_eval(const struct qd_gate_lab_opts *o)
{
    struct qd_gate g;
    QD_TRY(qd_gate_load(o->gate, &g));
    const char *sn = o->supernet ? o->supernet : g.ckpt;
    struct lab l;
    qd_err e = lab_open(o, sn, !o->noeval, &l);
    if (e) {
        qd_gate_fini(&g);
        return e;
    }
    if (strcmp(g.backbone, l.d.md5))
        fprintf(stderr, "gate eval: warning: the gate was trained for another supernet\n");
    struct qd_decide_tables tabs[QD_DEVICE_PARTS];
    int nt = 0;
    for (int i = 0; !e && i < QD_DEVICE_PARTS; i++) {
        struct qd_device dev;
        e = qd_device_load(qd_device_parts[i], &dev);
        if (!e)
            e = qd_decide_prepare(&l.d, &dev, &tabs[i]);
        nt += !e;
    }
    int N = o->contexts > 0 ? o->contexts : 100;
    double *tg = calloc(N, sizeof *tg), *ts = calloc(N, sizeof *ts);
    struct qd_rng r;
    qd_rng_seed(&r, (uint64_t)o->seed + 1234);
    int feasible = 0, both_infeasible = 0, bad = 0;
    double sum_g = 0, sum_s = 0;
    if (!o->json)
        printf("%4s %-15s %9s %6s  %-24s %7s  %-24s %7s\n", "ctx", "profile", "flash", "batt",
               "gate policy", "acc%", "sensitivity policy", "acc%");
    for (int i = 0; !e && i < N; i++) {
        int pi = (int)qd_rng_below(&r, (uint32_t)nt);
        const struct qd_decide_tables *t = &tabs[pi];
        double b[QD_BUDGET_COUNT], bat;
        random_context(&r, t, b, &bat);
        struct qd_decision rg, rs;
        double t0 = now();
        qd_err eg = qd_gate_decide(&g, &l.d, t, b, bat, &rg);
        double t1 = now();
        qd_err es = qd_decide(&l.d, t, b, &rs);
        double t2 = now();
        tg[i] = t1 - t0, ts[i] = t2 - t1;
        if (eg == QD_EBUDGET && es == QD_EBUDGET) {
            both_infeasible++;
            continue;
        }
        if (eg || es) {
            bad++;
            fprintf(stderr, "context %d: gate %s, search %s\n", i, qd_err_name(eg),
                    qd_err_name(es));
            continue;
        }
        /* the decision fits every budget */
        const double *c = rg.r.cost;
        int fits = 1;
        for (int k = 0; k < QD_BUDGET_COUNT; k++)
            fits &= c[k] <= b[k] * (1 + 1e-9);
        if (!fits) {
            e = qd_seterr(QD_EBUDGET, "context %d: the gate's decision breaks a budget", i);
            break;
        }
        feasible++;
        double ag = NAN, as = NAN;
        if (o->noeval)
            continue;
        if ((e = accuracy(o, &l, &rg.policy, &ag, NULL)) || (e = accuracy(o, &l, &rs.policy, &as,
                                                                           NULL)))
            break;
        sum_g += ag, sum_s += as;
        if (!o->json) {
            char pg[256], ps[256];
            qd_policy_format(&rg.policy, pg, sizeof pg);
            qd_policy_format(&rs.policy, ps, sizeof ps);
            printf("%4d %-15s %9.0f %5.0f%%  %-24.24s %7.2f  %-24.24s %7.2f\n", i, qd_device_parts[pi],
                   b[0], 100 * bat, pg, 100 * ag, ps, 100 * as);
        }
    }
    if (!e) {
        qsort(tg, N, sizeof *tg, cmpd);
        qsort(ts, N, sizeof *ts, cmpd);
        /* accuracies only where measured (not with --no-eval, nor with no decision) */
        int measured = feasible && !o->noeval;
        double mg = measured ? sum_g / feasible : NAN, ms = measured ? sum_s / feasible : NAN;
        int p99 = (int)(0.99 * (N - 1) + 0.5);
        char acc[160];
        if (o->json) {
            if (measured)
                snprintf(acc, sizeof acc, "%.6f,\"mean_acc_sensitivity\":%.6f", mg, ms);
            else
                snprintf(acc, sizeof acc, "null,\"mean_acc_sensitivity\":null");
            printf("{\"contexts\":%d,\"feasible\":%d,\"infeasible_for_both\":%d,\"mismatch\":%d,"
                   "\"mean_acc_gate\":%s,\"gate_us_p50\":%.1f,\"gate_us_p99\":%.1f,"
                   "\"search_us_p50\":%.1f,\"search_us_p99\":%.1f}\n",
                   N, feasible, both_infeasible, bad, acc, 1e6 * tg[N / 2], 1e6 * tg[p99],
                   1e6 * ts[N / 2], 1e6 * ts[p99]);
        } else {
            if (measured)
                snprintf(acc, sizeof acc, "gate %.2f%%, sensitivity search %.2f%% (gate - search "
                         "%+.2f pt)", 100 * mg, 100 * ms, 100 * (mg - ms));
            else
                snprintf(acc, sizeof acc, "not measured%s", o->noeval ? " (--no-eval)" : "");
            printf("\n%d contexts: %d decided (every decision within every budget), %d "
                   "infeasible for both, %d where only one found a policy\nmean accuracy: %s\n"
                   "decision time: gate + search p50 %.1f us, p99 %.1f us; sensitivity search "
                   "alone p50 %.1f us, p99 %.1f us\n",
                   N, feasible, both_infeasible, bad, acc, 1e6 * tg[N / 2], 1e6 * tg[p99],
                   1e6 * ts[N / 2], 1e6 * ts[p99]);
        }
        /* the second seed paper's points, on every profile that has all widths */
        if (!o->json && !o->noeval)
            printf("\n%-15s %-10s %-40s %7s\n", "profile", "budget", "gate policy", "acc%");
        for (int i = 0; !e && !o->noeval && i < nt; i++) {
            for (int which = 0; which < 2 && !e; which++) {
                double b[QD_BUDGET_COUNT];
                device_budgets(&tabs[i].dev, b); /* as `decide` leaves the others */
                if (which == 0)
                    b[QD_BUDGET_FLASH] = 0.5 * tabs[i].int8.flash;
                else
                    b[QD_BUDGET_ENERGY] = 0.4 * tabs[i].int8.energy_mj;
                struct qd_decision x;
                qd_err de = qd_gate_decide(&g, &l.d, &tabs[i], b, NAN, &x);
                double a = NAN;
                if (!de)
                    e = accuracy(o, &l, &x.policy, &a, NULL);
                char pp[256];
                if (!de)
                    qd_policy_format(&x.policy, pp, sizeof pp);
                else /* say how far the device can go */
                    snprintf(pp, sizeof pp, "none fits: least %s is %.0f%% of int8",
                             which ? "energy" : "flash",
                             100 * (which ? tabs[i].lo[QD_BUDGET_ENERGY] / tabs[i].int8.energy_mj
                                          : tabs[i].lo[QD_BUDGET_FLASH] / tabs[i].int8.flash));
                const char *bud = which ? "energy 40% of int8" : "flash 50% of int8";
                if (o->json && de)
                    printf("{\"profile\":\"%s\",\"budget\":\"%s\",\"policy\":null,"
                           "\"error\":\"%s\",\"test_acc\":null}\n",
                           qd_device_parts[i], bud, pp);
                else if (o->json)
                    printf("{\"profile\":\"%s\",\"budget\":\"%s\",\"policy\":\"%s\","
                           "\"test_acc\":%.6f}\n",
                           qd_device_parts[i], bud, pp, a);
                else if (de)
                    printf("%-15s %-10s %-40.40s %7s\n", qd_device_parts[i],
                           which ? "energy 40%" : "flash 50%", pp, "-");
                else
                    printf("%-15s %-10s %-40.40s %7.2f\n", qd_device_parts[i],
                           which ? "energy 40%" : "flash 50%", pp, 100 * a);
            }
        }
    }
    for (int i = 0; i < nt; i++)
        qd_decide_tables_fini(&tabs[i]);
    free(tg), free(ts);
    lab_fini(&l);
    qd_gate_fini(&g);
    return e;
}

/* A budget flag's value: NAN (not given) -> dflt; negative -> that fraction of the int8
 * model's figure (`--flash 50%`); else as given. */
static double budget_of(double v, double dflt, double int8)
{
    return isnan(v) ? dflt : v < 0 ? -v * int8 : v;
}

qd_err qd_lab_decide(const struct qd_gate_lab_opts *o)
{
    struct qd_gate g;
    QD_TRY(qd_gate_load(o->gate, &g));
    const char *sn = o->supernet ? o->supernet : g.ckpt;
    struct lab l;
    qd_err e = lab_open(o, sn, o->eval, &l);
    if (e) {
        qd_gate_fini(&g);
        return e;
    }
    struct qd_device dev;
    struct qd_decide_tables t;
    e = qd_device_load(o->device ? o->device : "host", &dev);
    if (!e)
        e = qd_decide_prepare(&l.d, &dev, &t);
    if (e) {
        lab_fini(&l);
        qd_gate_fini(&g);
        return e;
    }
    double b[QD_BUDGET_COUNT];
    device_budgets(&dev, b);
    b[QD_BUDGET_FLASH] = budget_of(o->flash, b[QD_BUDGET_FLASH], t.int8.flash);
    b[QD_BUDGET_LATENCY] = budget_of(o->latency, b[QD_BUDGET_LATENCY], t.int8.latency_ms);
    b[QD_BUDGET_ENERGY] = budget_of(o->energy, b[QD_BUDGET_ENERGY], t.int8.energy_mj);
    b[QD_BUDGET_RAM] = budget_of(o->ram, b[QD_BUDGET_RAM], t.int8.ram);
    if (!isnan(o->battery)) /* as quantd (its default floor): the battery caps the energy */
        b[QD_BUDGET_ENERGY] = fmin(b[QD_BUDGET_ENERGY], qd_decide_battery_energy(&t, o->battery, 0.2));
    struct qd_decision r;
    double t0 = now();
    e = qd_gate_decide(&g, &l.d, &t, b, o->battery, &r);
    double dt = now() - t0;
    double acc = NAN;
    size_t bytes = 0;
    if (!e && o->eval)
        e = accuracy(o, &l, &r.policy, &acc, &bytes);
    if (!e) {
        char pp[4096];
        qd_policy_format(&r.policy, pp, sizeof pp);
        if (o->policy_out)
            snprintf(o->policy_out, QD_LAB_POLICY_OUT, "%s", pp);
        if (o->supernet_out)
            snprintf(o->supernet_out, QD_LAB_PATH_OUT, "%s", sn);
        if (o->data_out)
            snprintf(o->data_out, QD_LAB_DATA_OUT, "%s", l.d.ds);
        if (o->json) {
            printf("{\"device\":\"%s\",\"policy\":\"%s\",\"flash\":%.0f,\"ram\":%.0f,"
                   "\"latency_ms\":%.6g,\"energy_mj\":%.6g,\"decide_us\":%.1f",
                   dev.name, pp, r.costs.flash, r.costs.ram, r.costs.latency_ms,
                   r.costs.energy_mj, 1e6 * dt);
            if (o->eval)
                printf(",\"test_acc\":%.6f", acc);
            printf("}\n");
        } else {
            printf("%s: policy %s (gate + exact search, %.1f us)\n", dev.name, pp, 1e6 * dt);
            printf("  flash %.0f bytes (budget %.0f), RAM %.0f (budget %.0f), latency %.3f ms, "
                   "energy %.4f mJ",
                   r.costs.flash, b[0], r.costs.ram, b[3], r.costs.latency_ms, r.costs.energy_mj);
            if (isfinite(b[QD_BUDGET_ENERGY]))
                printf(" (budget %.4f)", b[QD_BUDGET_ENERGY]);
            printf("; of int8's: flash %.0f%%, energy %.0f%%\n", 100 * r.costs.flash / t.int8.flash,
                   100 * r.costs.energy_mj / t.int8.energy_mj);
            if (o->eval)
                printf("  test accuracy %.2f%% (%zu bytes)\n", 100 * acc, bytes);
        }
    }
    qd_decide_tables_fini(&t);
    lab_fini(&l);
    qd_gate_fini(&g);
    return e;
}

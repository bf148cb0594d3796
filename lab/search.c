/* quantlab sensitivity: per-layer sensitivity of a checkpoint (measured; with --hessian also
 * the Hessian estimate and its rank correlation with the measured one), cached next to the
 * checkpoint as <ckpt>.sens.json keyed by the checkpoint's MD5, the data and the image count.
 *
 * quantlab search: the exact search over per-layer weight bits (the device's supported ones;
 * activations at each supported width in turn) minimizing the summed sensitivity under the
 * flash, RAM, latency and energy budgets. Prints the policy and every predicted figure; with
 * --eval, builds it and the best uniform policy that fits the same budgets and measures both
 * on the test set with the device runtime. The validation images for the sensitivity are the
 * last sens_n of the training set (never the test set). */
#include "lab/search.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/rng.h"
#include "gate/supernet.h"
#include "lab/labrun.h"
#include "nn/ckpt.h"
#include "nn/data.h"
#include "nn/kernels.h"
#include "nn/train.h"
#include "policy/cost.h"
#include "policy/decide.h"
#include "policy/device.h"
#include "policy/search.h"
#include "policy/sens.h"
#include "quant/qm.h"
#include "quant/rtsize.h"

/* The lab's decider keeps the training set (BatchNorm recalibration, calibration). */
static qd_err setup(const struct qd_search_opts *o, struct qd_decider *c, int need_hessian)
{
    qd_kernels_init(o->threads);
    struct qd_decider_opts d = {.ckpt = o->ckpt, .data = o->data, .dir = o->dir,
                                .sens_n = o->sens_n, .hessian = need_hessian,
                                .calib_n = o->calib_n, .keep_train = 1};
    return qd_decider_load(&d, c);
}

qd_err qd_lab_sensitivity(const struct qd_search_opts *o)
{
    struct qd_decider c;
    QD_TRY(setup(o, &c, o->hessian));
    static const int bits[] = {2, 4, 8, 16};
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "layers", c.s.L);
        cJSON_AddNumberToObject(j, "images", c.s.n);
        cJSON_AddNumberToObject(j, "loss0", c.s.loss0);
        cJSON_AddNumberToObject(j, "acc0", c.s.acc0);
        cJSON *arr = cJSON_AddArrayToObject(j, "dloss");
        for (int l = 0; l < c.s.L; l++) {
            double row[4];
            for (int b = 0; b < 4; b++)
                row[b] = c.s.dloss[l][bits[b]];
            cJSON_AddItemToArray(arr, cJSON_CreateDoubleArray(row, 4));
        }
        if (c.s.have_hess)
            for (int b = 0; b < 3; b++) {
                char k[32];
                snprintf(k, sizeof k, "rank_corr_%d", bits[b]);
                cJSON_AddNumberToObject(j, k, qd_sens_rank_corr(&c.s, bits[b]));
            }
        char *t = cJSON_PrintUnformatted(j);
        puts(t);
        free(t);
        cJSON_Delete(j);
    } else {
        printf("float model on %d validation images: loss %.4f, accuracy %.2f%%\n", c.s.n,
               c.s.loss0, 100 * c.s.acc0);
        printf("%5s %-16s %10s %10s %10s %10s%s\n", "layer", "node", "dloss@2", "dloss@4",
               "dloss@8", "dloss@16", c.s.have_hess ? "   hessian@2  hessian@4" : "");
        for (int i = 0; i < c.g.n; i++) {
            const struct qd_inode *nd = &c.g.nodes[i];
            if (nd->qidx < 0)
                continue;
            int l = nd->qidx;
            printf("%5d %-16s %10.4f %10.4f %10.5f %10.6f", l, c.m.nodes[nd->src].name,
                   c.s.dloss[l][2], c.s.dloss[l][4], c.s.dloss[l][8], c.s.dloss[l][16]);
            if (c.s.have_hess)
                printf(" %11.4g %10.4g", c.s.hess[l][2], c.s.hess[l][4]);
            printf("\n");
        }
        if (c.s.have_hess)
            printf("rank correlation (Spearman) of Hessian vs measured: %.3f at 2 bits, %.3f at "
                   "4 bits, %.3f at 8 bits\n",
                   qd_sens_rank_corr(&c.s, 2), qd_sens_rank_corr(&c.s, 4),
                   qd_sens_rank_corr(&c.s, 8));
    }
    qd_decider_fini(&c);
    return QD_OK;
}

struct answer {
    struct qd_policy p;
    struct qd_search_result r;
    int found;
};

/* The exact search at one activation width (the decider's objective). */
static qd_err search_at(const struct qd_decider *c, const struct qd_device *d, const double *budget,
                        int abits, struct answer *a)
{
    struct qd_device one = *d;
    memset(one.abits_ok, 0, sizeof one.abits_ok);
    one.abits_ok[abits] = 1;
    struct qd_decide_tables t;
    QD_TRY(qd_decide_prepare(c, &one, &t));
    struct qd_decision r;
    qd_err e = qd_decide(c, &t, budget, &r);
    qd_decide_tables_fini(&t);
    if (!e) {
        a->p = r.policy;
        a->r = r.r;
        a->found = 1;
    }
    return e;
}

static int fits(const struct qd_costs *k, const double *b)
{
    return k->flash <= b[QD_BUDGET_FLASH] && k->ram <= b[QD_BUDGET_RAM] &&
           k->latency_ms <= b[QD_BUDGET_LATENCY] && k->energy_mj <= b[QD_BUDGET_ENERGY];
}

/* The .qm of policy p: BatchNorm recalibrated for p's weights (o->bn_batches training
 * batches; gate/supernet.h), activations calibrated on the training set. */
static qd_err build_policy(const struct qd_search_opts *o, struct qd_decider *c,
                           const struct qd_policy *p, uint8_t **blob, size_t *len)
{
    float *st = malloc(sizeof *st * (c->m.nstat ? c->m.nstat : 1));
    qd_err e = st ? qd_supernet_bn_stats(&c->m, &c->nm, &c->g, &c->tr, p, o->bn_batches, st)
                  : qd_seterr(QD_ENOMEM, "out of memory");
    if (!e)
        e = qd_supernet_build(&c->m, &c->nm, st, &c->tr, o->calib_n, p, blob, len);
    free(st);
    return e;
}

/* Short quantization-aware fine-tuning of c's model at policy p: fake-quantized weights and
 * activations at p's bits (the supernet's per-node mapping), straight-through gradients. */
static qd_err qat(const struct qd_search_opts *o, struct qd_decider *c, const struct qd_policy *p)
{
    uint8_t *wb = calloc((size_t)c->m.nnodes, 1), *ab = calloc((size_t)c->m.nnodes, 1);
    qd_err e = wb && ab ? QD_OK : qd_seterr(QD_ENOMEM, "out of memory");
    if (!e) {
        qd_supernet_node_bits(&c->m, &c->g, p, wb, ab);
        struct qd_train_opts t;
        qd_train_opts_default(&t, c->tr.name);
        t.epochs = o->qat_epochs;
        t.lr = o->qat_lr > 0 ? o->qat_lr : 0.01f;
        t.warmup_epochs = 0;
        t.threads = o->threads;
        t.progress = !o->json;
        t.qat_bits = wb;
        t.qat_act_bits = ab;
        t.eval_each_epoch = 0;
        e = qd_train(&c->m, &c->tr, NULL, &c->nm, &t, NULL, NULL);
    }
    free(wb);
    free(ab);
    return e;
}

/* Builds policy p (after o->qat_epochs of QAT, from the checkpoint's weights, which are then
 * restored) and measures it on the test set; writes it to out when given. */
static qd_err measure(const struct qd_search_opts *o, struct qd_decider *c, const struct qd_policy *p,
                      const struct qd_dataset *te, double *acc, size_t *len, const char *out)
{
    float *param = NULL, *stat = NULL;
    if (o->qat_epochs > 0) {
        param = malloc(sizeof *param * (c->m.nparam ? c->m.nparam : 1));
        stat = malloc(sizeof *stat * (c->m.nstat ? c->m.nstat : 1));
        if (!param || !stat) {
            free(param), free(stat);
            return qd_seterr(QD_ENOMEM, "out of memory");
        }
        memcpy(param, c->m.param, sizeof *param * c->m.nparam);
        memcpy(stat, c->m.stat, sizeof *stat * c->m.nstat);
    }
    uint8_t *blob = NULL;
    qd_err e = param ? qat(o, c, p) : QD_OK;
    if (!e)
        e = build_policy(o, c, p, &blob, len);
    struct qd_lab_eval r = {0};
    if (!e)
        e = qd_lab_eval_blob(blob, *len, te, o->limit, o->threads, QD_RT_ISA_AUTO, &r);
    if (!e && out)
        e = qd_file_write_atomic(out, blob, *len);
    free(blob);
    if (param) {
        memcpy(c->m.param, param, sizeof *param * c->m.nparam);
        memcpy(c->m.stat, stat, sizeof *stat * c->m.nstat);
    }
    free(param), free(stat);
    *acc = r.acc;
    return e;
}

qd_err qd_lab_search(const struct qd_search_opts *o)
{
    struct qd_device d;
    QD_TRY(qd_device_load(o->device, &d));
    double budget[QD_BUDGET_COUNT] = {
        [QD_BUDGET_FLASH] = isnan(o->flash) ? d.flash - d.reserved_flash : o->flash,
        [QD_BUDGET_RAM] = isnan(o->ram) ? d.ram - d.reserved_ram : o->ram,
        [QD_BUDGET_LATENCY] = isnan(o->latency) ? INFINITY : o->latency,
        [QD_BUDGET_ENERGY] = isnan(o->energy) ? INFINITY : o->energy};
    struct qd_decider c;
    qd_err e;
    QD_TRY(setup(o, &c, o->hessian));
    struct answer best = {0};
    struct qd_decide_tables t;
    if ((e = qd_decide_prepare(&c, &d, &t))) {
        qd_decider_fini(&c);
        return e;
    }
    struct qd_decision dec;
    e = qd_decide(&c, &t, budget, &dec);
    qd_decide_tables_fini(&t);
    if (e) {
        qd_decider_fini(&c);
        return e;
    }
    best.p = dec.policy;
    best.r = dec.r;
    best.found = 1;
    struct qd_costs k = dec.costs;
    /* the best uniform weight width (activations 8, else 16) that fits the same budgets */
    struct qd_policy uni;
    struct qd_costs uk;
    int uni_bits = 0;
    for (int w = 16; w >= 2 && !uni_bits; w /= 2)
        for (int ab = 8; ab <= 16 && !uni_bits; ab += 8) {
            if (!d.wbits_ok[w] || !d.abits_ok[ab])
                continue;
            qd_policy_uniform(&uni, c.g.nq, w, ab);
            if (!qd_cost_policy(&c.g, &uni, &d, &uk) && fits(&uk, budget))
                uni_bits = w;
        }
    char ptxt[4096];
    qd_policy_format(&best.p, ptxt, sizeof ptxt);
    double pred = c.s.loss0, upred = c.s.loss0;
    for (int l = 0; l < c.g.nq; l++) {
        pred += c.s.dloss[l][best.p.wbits[l]];
        if (uni_bits)
            upred += c.s.dloss[l][uni_bits];
    }
    double acc = -1, uacc = -1;
    size_t len = 0, ulen = 0;
    if (o->eval) {
        struct qd_dataset te;
        e = qd_data_load(o->dir, c.tr.name, 0, &te);
        if (!e) {
            e = measure(o, &c, &best.p, &te, &acc, &len, o->out);
            if (!e && uni_bits)
                e = measure(o, &c, &uni, &te, &uacc, &ulen, NULL);
            qd_dataset_fini(&te);
        }
        if (e) {
            qd_decider_fini(&c);
            return e;
        }
    } else if (o->out) {
        uint8_t *blob = NULL;
        if (!(e = build_policy(o, &c, &best.p, &blob, &len)))
            e = qd_file_write_atomic(o->out, blob, len);
        free(blob);
        if (e) {
            qd_decider_fini(&c);
            return e;
        }
    }
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", c.m.family);
        cJSON_AddStringToObject(j, "device", d.name);
        cJSON_AddStringToObject(j, "policy", ptxt);
        cJSON_AddItemToObject(j, "policy_json", qd_policy_to_json(&best.p));
        cJSON_AddNumberToObject(j, "flash", k.flash);
        cJSON_AddNumberToObject(j, "ram", k.ram);
        cJSON_AddNumberToObject(j, "latency_ms", k.latency_ms);
        cJSON_AddNumberToObject(j, "energy_mj", k.energy_mj);
        cJSON_AddNumberToObject(j, "budget_flash", budget[QD_BUDGET_FLASH]);
        cJSON_AddNumberToObject(j, "budget_ram", budget[QD_BUDGET_RAM]);
        if (isfinite(budget[QD_BUDGET_LATENCY]))
            cJSON_AddNumberToObject(j, "budget_latency_ms", budget[QD_BUDGET_LATENCY]);
        if (isfinite(budget[QD_BUDGET_ENERGY]))
            cJSON_AddNumberToObject(j, "budget_energy_mj", budget[QD_BUDGET_ENERGY]);
        cJSON_AddNumberToObject(j, "objective", best.r.obj);
        cJSON_AddNumberToObject(j, "predicted_loss", pred);
        cJSON_AddNumberToObject(j, "float_val_loss", c.s.loss0);
        cJSON_AddNumberToObject(j, "search_states", (double)best.r.states);
        cJSON_AddBoolToObject(j, "search_proven", best.r.proven);
        cJSON_AddNumberToObject(j, "search_seconds", best.r.seconds);
        if (uni_bits) {
            cJSON_AddNumberToObject(j, "uniform_bits", uni_bits);
            cJSON_AddNumberToObject(j, "uniform_flash", uk.flash);
            cJSON_AddNumberToObject(j, "uniform_predicted_loss", upred);
        }
        if (acc >= 0) {
            cJSON_AddNumberToObject(j, "test_acc", acc);
            cJSON_AddNumberToObject(j, "qat_epochs", o->qat_epochs);
            cJSON_AddNumberToObject(j, "bytes", (double)len);
            if (uacc >= 0)
                cJSON_AddNumberToObject(j, "uniform_test_acc", uacc);
        }
        char *t = cJSON_PrintUnformatted(j);
        puts(t);
        free(t);
        cJSON_Delete(j);
    } else {
        printf("%s on %s (%s)\npolicy (weight bits per layer%s): %s\n", c.m.family, d.name,
               d.description, best.p.abits[0] == 16 ? ", 16-bit activations" : "", ptxt);
        printf("  flash   %10.0f bytes   budget %.0f\n", k.flash, budget[QD_BUDGET_FLASH]);
        printf("  RAM     %10.0f bytes   budget %.0f (arena %.0f)\n", k.ram,
               budget[QD_BUDGET_RAM], k.arena);
        printf("  latency %10.3f ms      budget %s%.3g\n", k.latency_ms,
               isfinite(budget[QD_BUDGET_LATENCY]) ? "" : "none ",
               isfinite(budget[QD_BUDGET_LATENCY]) ? budget[QD_BUDGET_LATENCY] : 0.0);
        printf("  energy  %10.4f mJ      budget %s%.3g\n", k.energy_mj,
               isfinite(budget[QD_BUDGET_ENERGY]) ? "" : "none ",
               isfinite(budget[QD_BUDGET_ENERGY]) ? budget[QD_BUDGET_ENERGY] : 0.0);
        printf("  predicted validation loss %.4f (float %.4f); exact search: %ld states, %.3f ms\n",
               pred, c.s.loss0, best.r.states, 1e3 * best.r.seconds);
        if (uni_bits)
            printf("best uniform policy that fits: %d-bit weights, %.0f bytes, predicted loss "
                   "%.4f\n",
                   uni_bits, uk.flash, upred);
        else
            printf("no uniform policy fits these budgets\n");
        if (acc >= 0) {
            printf("measured test accuracy: %.2f%% (%zu bytes)", 100 * acc, len);
            if (uacc >= 0)
                printf("; uniform %d-bit: %.2f%%", uni_bits, 100 * uacc);
            if (o->qat_epochs > 0)
                printf(" (each after %d QAT epoch%s)", o->qat_epochs, o->qat_epochs > 1 ? "s" : "");
            printf("\n");
        }
    }
    qd_decider_fini(&c);
    return QD_OK;
}

/* ---------------------------------------------------------------- Pareto frontier */

static qd_err write_pareto(const char *dir, const char *stem, const char *title, int n,
                           const double *flash, const double *pred, const double *acc,
                           const double *racc, const char *const *pol, int eval, int randoms,
                           const char *cmdline)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.csv", dir, stem);
    FILE *f = fopen(path, "w");
    if (!f)
        return qd_seterr(QD_EIO, "pareto: cannot write %s", path);
    fprintf(f, "flash,predicted_loss,test_acc,random_test_acc,policy\n");
    for (int i = 0; i < n; i++)
        fprintf(f, "%.0f,%.6f,%.4f,%.4f,\"%s\"\n", flash[i], pred[i], eval ? acc[i] : NAN,
                eval && randoms ? racc[i] : NAN, pol[i]);
    fclose(f);
    snprintf(path, sizeof path, "%s/%s.md", dir, stem);
    if (!(f = fopen(path, "w")))
        return qd_seterr(QD_EIO, "pareto: cannot write %s", path);
    fprintf(f, "# Pareto frontier: %s\n\nMade by `%s`.\n\n", title, cmdline);
    fprintf(f, "| flash (bytes) | predicted val. loss | test accuracy | random policies, same "
               "flash | policy |\n| ---: | ---: | ---: | ---: | --- |\n");
    for (int i = 0; i < n; i++) {
        fprintf(f, "| %.0f | %.4f | ", flash[i], pred[i]);
        if (eval)
            fprintf(f, "%.2f%% | ", 100 * acc[i]);
        else
            fprintf(f, "- | ");
        if (eval && randoms && !isnan(racc[i]))
            fprintf(f, "%.2f%% | ", 100 * racc[i]);
        else
            fprintf(f, "- | ");
        fprintf(f, "%s |\n", pol[i]);
    }
    fprintf(f, "\n![frontier](%s.svg)\n", stem);
    fclose(f);
    snprintf(path, sizeof path, "%s/%s.gp", dir, stem);
    if (!(f = fopen(path, "w")))
        return qd_seterr(QD_EIO, "pareto: cannot write %s", path);
    fprintf(f, "# made by quantlab pareto; reads %s.csv\nset datafile separator ','\nset grid\n"
               "set key center right\nset xlabel 'flash (KiB)'\nset ylabel 'predicted "
               "validation loss'\nset title '%s'\n",
            stem, title);
    if (eval)
        fprintf(f, "set y2label 'test accuracy (%%)'\nset y2tics\nset ytics nomirror\n");
    for (int t = 0; t < 2; t++) {
        fprintf(f, t ? "set terminal svg size 900,560\nset output '%s.svg'\n"
                     : "set terminal png size 900,560\nset output '%s.png'\n",
                stem);
        fprintf(f, "plot '%s.csv' every ::1 using ($1/1024):2 with linespoints pt 7 title "
                   "'predicted loss (exact search)'",
                stem);
        if (eval)
            fprintf(f, ", '' every ::1 using ($1/1024):(100*$3) axes x1y2 with linespoints pt 5 "
                       "title 'measured accuracy'");
        if (eval && randoms)
            fprintf(f, ", '' every ::1 using ($1/1024):(100*$4) axes x1y2 with points pt 2 "
                       "title 'random policies (mean)'");
        fprintf(f, "\n");
    }
    fclose(f);
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot '%s.gp' 2>&1", dir, stem);
    if (system(cmd))
        return qd_seterr(QD_EEXTERNAL, "pareto: gnuplot failed; the tables are in %s", dir);
    return QD_OK;
}

qd_err qd_lab_pareto(const struct qd_search_opts *o, int points, int randoms, const char *dir,
                     const char *cmdline)
{
    struct qd_device d;
    QD_TRY(qd_device_load(o->device, &d));
    struct qd_decider c;
    qd_err e;
    QD_TRY(setup(o, &c, o->hessian));
    /* flash from the smallest policy to the uniform 8-bit one */
    struct qd_cost_table t;
    if ((e = qd_cost_table_build(&c.g, &d, 8, &t))) {
        qd_decider_fini(&c);
        return e;
    }
    double lo = t.base[QD_BUDGET_FLASH];
    for (int l = 0; l < t.L; l++)
        lo += t.cost[(size_t)l * t.K * QD_BUDGET_COUNT]; /* option 0: the fewest bits */
    qd_cost_table_fini(&t);
    struct qd_policy u8;
    struct qd_costs k8;
    qd_policy_uniform(&u8, c.g.nq, 8, 8);
    if ((e = qd_cost_policy(&c.g, &u8, &d, &k8))) {
        qd_decider_fini(&c);
        return e;
    }
    double hi = k8.flash;
    points = points < 2 ? 2 : points > 64 ? 64 : points;
    double flash[64], pred[64], acc[64], racc[64];
    char *pol[64] = {0};
    int n = 0;
    struct qd_dataset te = {0};
    struct qd_rng rng;
    qd_rng_seed(&rng, 99);
    if (o->eval)
        e = qd_data_load(o->dir, c.tr.name, 0, &te);
    for (int i = 0; i < points && !e; i++) {
        double b[QD_BUDGET_COUNT];
        for (int q = 0; q < QD_BUDGET_COUNT; q++)
            b[q] = INFINITY;
        b[QD_BUDGET_FLASH] = lo + (hi - lo) * i / (points - 1);
        struct answer a = {0};
        if ((e = search_at(&c, &d, b, 8, &a)))
            break;
        struct qd_costs k;
        if ((e = qd_cost_policy(&c.g, &a.p, &d, &k)))
            break;
        char txt[4096];
        qd_policy_format(&a.p, txt, sizeof txt);
        if (n && !strcmp(txt, pol[n - 1]))
            continue; /* the same policy as the last point */
        pol[n] = strdup(txt);
        flash[n] = k.flash;
        pred[n] = c.s.loss0;
        for (int l = 0; l < c.g.nq; l++)
            pred[n] += c.s.dloss[l][a.p.wbits[l]];
        acc[n] = racc[n] = NAN;
        if (o->eval) {
            size_t len;
            if ((e = measure(o, &c, &a.p, &te, &acc[n], &len, NULL)))
                break;
            /* random policies of about the same flash (90-100% of this point's) */
            double sum = 0;
            int got = 0;
            for (int tries = 0; got < randoms && tries < 20000; tries++) {
                struct qd_policy rp;
                qd_policy_uniform(&rp, c.g.nq, 8, 8);
                int nb = 0, wb[4];
                for (int w = 2; w <= 16; w *= 2)
                    if (d.wbits_ok[w])
                        wb[nb++] = w;
                for (int l = 0; l < c.g.nq; l++)
                    rp.wbits[l] = (uint8_t)wb[qd_rng_below(&rng, nb)];
                struct qd_costs rk;
                if (qd_cost_policy(&c.g, &rp, &d, &rk) || rk.flash > flash[n] ||
                    rk.flash < 0.9 * flash[n])
                    continue;
                double ra;
                if ((e = measure(o, &c, &rp, &te, &ra, &len, NULL)))
                    break;
                sum += ra, got++;
            }
            racc[n] = got ? sum / got : NAN;
        }
        fprintf(stderr, "pareto: %.0f bytes, predicted loss %.4f%s", flash[n], pred[n],
                o->eval ? "" : "\n");
        if (o->eval)
            fprintf(stderr, ", accuracy %.2f%%, random policies %.2f%%\n", 100 * acc[n],
                    100 * racc[n]);
        n++;
    }
    if (!e) {
        char stem[256], title[256];
        snprintf(stem, sizeof stem, "pareto-%s-%s-%s", c.m.family, c.tr.name, d.name);
        snprintf(title, sizeof title, "%s on %s, %s", c.m.family, c.tr.name, d.name);
        e = write_pareto(dir, stem, title, n, flash, pred, acc, racc, (const char *const *)pol,
                         o->eval, randoms, cmdline);
        if (!e)
            printf("frontier of %d policies written to %s/%s.{md,csv,gp,png,svg}\n", n, dir, stem);
    }
    for (int i = 0; i < n; i++)
        free(pol[i]);
    if (o->eval)
        qd_dataset_fini(&te);
    qd_decider_fini(&c);
    return e;
}

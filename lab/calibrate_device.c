/* quantlab calibrate-device --target cortex-m4|cortex-m7: fits a microcontroller profile's
 * latency coefficients from instruction counts measured under QEMU. For the five families
 * (initial weights: instruction counts do not depend on the values but for the portable
 * kernel's skipped zero weights) under uniform policies (8, 4, 2, 16-bit weights; 16-bit
 * activations), each model runs once in the firmware (scripts/mcu_run.sh: per-layer
 * instructions, QEMU -icount); the coefficients of the microcontroller kernel model
 * (qd_cost_mcu_features) are fitted by non-negative least squares on those layers and written
 * as the profile's [mcu_kernels] section, in place (--out: into a copy). Then every model,
 * and random mixed policies held out of the fit, is predicted and compared: instructions,
 * and RAM and flash against the firmware's arena and the model bytes it holds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "lab/calibrate.h"
#include "nn/data.h"
#include "nn/model.h"
#include "policy/cost.h"
#include "quant/calib.h"
#include "quant/qm.h"

#define NF QD_MF_COUNT
#define MAXL 256 /* layers a model may have here */
#define BOARD_FLASH (4000000 - 200000) /* MPS2's 4 MiB code memory, less the firmware */

struct msample { /* x first: qd_lab_nnls reads rows of the sample array */
    double x[NF];
};

struct mrun {
    int fam, heldout, skipped;
    char policy[16];
    struct qd_policy p;
    double ins, arena, model_bytes, flash_pred, ram_pred;
};

/* Runs the runner on blob; fills per-layer instructions (n of them) and the totals. */
static qd_err run_model(const struct qd_calibrate_device_opts *o, const uint8_t *blob,
                        size_t len, const char *data, double *layer, int n, struct mrun *r)
{
    char qm[] = "/tmp/qd-calib-XXXXXX";
    int fd = mkstemp(qm);
    if (fd < 0)
        return qd_seterr(QD_EIO, "calibrate-device: cannot make a temporary file");
    FILE *f = fdopen(fd, "wb");
    int ok = f && fwrite(blob, 1, len, f) == len;
    if (f)
        ok &= fclose(f) == 0;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s %s %s", o->runner ? o->runner : "scripts/mcu_run.sh",
             o->target, qm, data);
    FILE *p = ok ? popen(cmd, "r") : NULL;
    qd_err e = p ? QD_OK : qd_seterr(QD_EIO, "calibrate-device: cannot run %s", cmd);
    char line[256], kernel[32];
    int got = 0, total = 0;
    for (int i = 0; i < n; i++)
        layer[i] = -1;
    while (p && fgets(line, sizeof line, p)) {
        int i;
        double v, a, s;
        if (sscanf(line, "layer %d %31s %lf", &i, kernel, &v) == 3 && i >= 0 && i < n)
            layer[i] = v, got++;
        else if (sscanf(line, "total %lf %lf %lf", &v, &a, &s) == 3)
            r->ins = v, r->arena = a, total = 1;
        else if (sscanf(line, "model_bytes %lf", &v) == 1)
            r->model_bytes = v;
    }
    if (p && pclose(p) != 0 && !e)
        e = qd_seterr(QD_EIO, "calibrate-device: `%s` failed", cmd);
    if (!e && (got != n || !total))
        e = qd_seterr(QD_EFORMAT, "calibrate-device: %s gave %d of %d layers", cmd, got, n);
    unlink(qm);
    return e;
}

/* The bits each layer's weights, input and output have in a built blob. */
static void bits_of(const struct qd_igraph *g, const uint8_t *blob, size_t len, int *wb, int *ab,
                    int *ob)
{
    struct qd_qm_header h;
    qd_qm_header_read(blob, &h);
    struct qd_qm_tshape sh[MAXL + 1];
    const uint8_t *p = h.records;
    qd_qm_validate_into(blob, len, sh, NULL);
    for (int i = 0; i < g->n; i++) {
        struct qd_qm_rec r;
        qd_qm_record_read(&p, &r);
        wb[i] = g->nodes[i].qidx >= 0 ? (r.wfmt == QD_WFMT_INT ? r.wbits : 16) : 8;
        ab[i] = sh[g->nodes[i].in[0]].bits;
        ob[i] = sh[i + 1].bits;
    }
}

/* The profile `in` with its [mcu_kernels] section replaced by the fitted coefficients, and
 * named after the file it goes to (name = the file's base name). */
static qd_err write_profile(const char *in, const char *out, const double *c, const char *target)
{
    FILE *f = fopen(in, "r");
    if (!f)
        return qd_seterr(QD_ENOENT, "calibrate-device: cannot read %s", in);
    char *text = NULL, name[128];
    const char *base = strrchr(out, '/') ? strrchr(out, '/') + 1 : out;
    snprintf(name, sizeof name, "%.*s", (int)strcspn(base, "."), base);
    size_t cap = 0, len = 0;
    char line[1024];
    int skip = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '[')
            skip = !strncmp(line, "[mcu_kernels]", 13);
        if (skip)
            continue;
        if (!strncmp(line, "name = ", 7))
            snprintf(line, sizeof line, "name = %s\n", name);
        size_t n = strlen(line);
        if (len + n + 1 > cap) {
            char *t = realloc(text, cap = (len + n + 1) * 2);
            if (!t) {
                free(text);
                fclose(f);
                return qd_seterr(QD_ENOMEM, "calibrate-device: out of memory");
            }
            text = t;
        }
        memcpy(text + len, line, n + 1);
        len += n;
    }
    fclose(f);
    while (len > 1 && text[len - 1] == '\n' && text[len - 2] == '\n')
        text[--len] = 0;
    FILE *o = fopen(out, "w");
    if (!o) {
        free(text);
        return qd_seterr(QD_EIO, "calibrate-device: cannot write %s", out);
    }
    fputs(text ? text : "", o);
    free(text);
    fprintf(o, "\n[mcu_kernels]\n"
               "# Measured: instructions per feature of the runtime's kernels on this core,\n"
               "# fitted by `quantlab calibrate-device --target %s` from per-layer\n"
               "# instruction counts of the five families under QEMU (-icount; see\n"
               "# docs/devices.md). Not measured: cycles per instruction (cpi, an estimate for\n"
               "# this core's pipeline on these loops), the clock and the energy figures above\n"
               "# (datasheet). Overrides [cycles] for latency.\n"
               "cpi = %s\n",
            target, !strcmp(target, "cortex-m7") ? "1.0" : "1.2");
    for (int k = 0; k < NF; k++)
        fprintf(o, "%s = %.6g\n", qd_mf_keys[k], c[k]);
    return fclose(o) ? qd_seterr(QD_EIO, "calibrate-device: writing %s failed", out) : QD_OK;
}

/* Prints predicted against measured for every run; returns the worst held-out error. */
static qd_err report(const struct mrun *runs, int nr, const struct qd_igraph *g,
                     const struct qd_device *dev, double *worst_held, double *worst_fit)
{
    printf("%-13s %-7s %10s %10s %7s %8s %8s %8s %8s\n", "family", "policy", "meas Mins",
           "pred Mins", "error", "arena", "RAM pred", "model B", "flash pr");
    *worst_held = *worst_fit = 0;
    for (int i = 0; i < nr; i++) {
        const struct mrun *r = &runs[i];
        struct qd_costs c;
        if (r->skipped)
            continue;
        QD_TRY(qd_cost_policy(&g[r->fam], &r->p, dev, &c));
        double pred = c.latency_ms * dev->clock_mhz * 1e3 / dev->cpi, err = pred / r->ins - 1;
        printf("%-13s %-7s %10.2f %10.2f %+6.1f%% %8.0f %8.0f %8.0f %8.0f%s\n",
               qd_lab_families[r->fam], r->policy, r->ins * 1e-6, pred * 1e-6, 100 * err,
               r->arena, c.arena, r->model_bytes, c.flash, r->heldout ? "  (held out)" : "");
        double *w = r->heldout ? worst_held : worst_fit;
        *w = fmax(*w, fabs(err));
        if (c.arena != r->arena || (r->model_bytes && c.flash != r->model_bytes))
            return qd_seterr(QD_EINVAL, "calibrate-device: %s %s: the cost model's RAM %.0f or "
                                        "flash %.0f differ from the firmware's %.0f and %.0f",
                             qd_lab_families[r->fam], r->policy, c.arena, c.flash, r->arena,
                             r->model_bytes);
    }
    return QD_OK;
}

/* One model: build, run, add its layers' samples (fitted runs only). */
static qd_err measure(const struct qd_calibrate_device_opts *o, const struct qd_igraph *g,
                      const struct qd_range *rg, struct mrun *r, struct msample *smp, double *y,
                      double *wt, int *ns)
{
    struct qd_qm_build b = {g, &r->p, QD_QMODE_MIXED, rg, 1, qd_lab_families[r->fam]};
    uint8_t *blob;
    size_t len;
    QD_TRY(qd_qm_build(&b, &blob, &len));
    if (len > BOARD_FLASH) { /* the emulated board's 4 MiB, less the program */
        fprintf(stderr, "calibrate-device: %s %s: %zu bytes, past the board's flash: skipped\n",
                qd_lab_families[r->fam], r->policy, len);
        free(blob);
        r->skipped = 1;
        return QD_OK;
    }
    double layer[MAXL];
    int wb[MAXL], ab[MAXL], ob[MAXL];
    qd_err e = run_model(o, blob, len, r->fam ? "cifar10" : "fashion-mnist", layer, g->n, r);
    bits_of(g, blob, len, wb, ab, ob);
    free(blob);
    if (e)
        return e;
    fprintf(stderr, "calibrate-device: %s %s: %.2fM instructions\n", qd_lab_families[r->fam],
            r->policy, r->ins * 1e-6);
    for (int i = 0; i < g->n && !r->heldout; i++) {
        qd_cost_mcu_features(g, i, wb[i], ab[i], ob[i], smp[*ns].x);
        y[*ns] = layer[i];
        wt[*ns] = 1 / r->ins; /* every model counts alike: relative error */
        (*ns)++;
    }
    return QD_OK;
}

qd_err qd_calibrate_device(const struct qd_calibrate_device_opts *o)
{
    static const char *pols[] = {"8", "4", "2", "16", "8/16"};
    enum { NP = 5, NH = 3 }; /* held out: random mixed 2/4/8, twice; 2/4/8/16 with 8/16 acts */
    if (strcmp(o->target, "cortex-m4") && strcmp(o->target, "cortex-m7"))
        return qd_seterr(QD_EINVAL, "calibrate-device: --target cortex-m4 or cortex-m7");
    struct qd_device dev;
    QD_TRY(qd_device_load(o->target, &dev));
    char in[512];
    snprintf(in, sizeof in, "%s", dev.path);
    const char *out = o->out ? o->out : in;
    struct qd_model m[5];
    struct qd_igraph g[5];
    struct qd_dataset ds[5];
    struct qd_range *rg[5] = {0};
    struct mrun *runs = calloc(5 * (NP + NH), sizeof *runs);
    struct msample *smp = malloc(sizeof *smp * 5 * NP * MAXL);
    double *y = malloc(sizeof *y * 5 * NP * MAXL), *wt = malloc(sizeof *wt * 5 * NP * MAXL);
    int nr = 0, ns = 0, have = 0;
    qd_err e = runs && smp && y && wt ? QD_OK : qd_seterr(QD_ENOMEM, "calibrate-device: memory");
    struct qd_rng rng;
    qd_rng_seed(&rng, 78);
    for (int f = 0; f < 5 && !e; f++, have++) {
        if ((e = qd_lab_family(f, &m[f], &g[f], &ds[f], &rg[f])))
            break;
        if (g[f].n > MAXL)
            e = qd_seterr(QD_EINVAL, "calibrate-device: %d layers, more than %d", g[f].n, MAXL);
        for (int k = 0; k < NP + NH && !e; k++) {
            struct mrun *r = &runs[nr++];
            r->fam = f, r->heldout = k >= NP;
            if (!r->heldout) {
                snprintf(r->policy, sizeof r->policy, "%s", pols[k]);
                e = qd_policy_parse(pols[k], g[f].nq, &r->p);
            } else {
                static const int wbits[] = {2, 4, 8, 16};
                int wide = k == NP + NH - 1;
                snprintf(r->policy, sizeof r->policy, wide ? "rand16" : "rand8");
                qd_policy_uniform(&r->p, g[f].nq, 8, 8);
                for (int l = 0; l < g[f].nq; l++) {
                    r->p.wbits[l] = (uint8_t)wbits[qd_rng_below(&rng, wide ? 4 : 3)];
                    r->p.abits[l] = (uint8_t)(wide && qd_rng_below(&rng, 4) == 0 ? 16 : 8);
                }
            }
            if (!e)
                e = measure(o, &g[f], rg[f], r, smp, y, wt, &ns);
        }
    }
    double coef[NF] = {0}, worst_held = 0, worst_fit = 0;
    if (!e) {
        qd_lab_nnls(smp[0].x, NF, y, wt, ns, NF, coef);
        e = write_profile(in, out, coef, o->target);
    }
    if (!e)
        e = qd_device_load(out, &dev);
    if (!e)
        e = report(runs, nr, g, &dev, &worst_held, &worst_fit);
    if (!e)
        printf("worst error: %.1f%% on the fitted policies, %.1f%% on random held-out ones; "
               "RAM and flash predicted exactly; profile written to %s\n",
               100 * worst_fit, 100 * worst_held, out);
    for (int f = 0; f < have; f++) {
        qd_igraph_fini(&g[f]);
        qd_model_fini(&m[f]);
        qd_dataset_fini(&ds[f]);
        free(rg[f]);
    }
    free(runs), free(smp), free(y), free(wt);
    return e;
}

/* quantlab calibrate-host: measures the host device profile's latency coefficients by running
 * the runtime (one thread, the best SIMD kernels here) on the five families under several
 * uniform policies with per-layer timing (best of ROUNDS rounds per layer), fits the host
 * kernel model's coefficients (policy/device.h [kernels]; features from
 * qd_cost_kernel_features, the same function the cost model uses) by non-negative least
 * squares, writes the profile, and reports how well it predicts whole-model latency: on the
 * fitted policies and on random mixed policies it has not seen (over 2/4/8/16 bits, and over
 * 2/4/8 bits, which run on the SIMD and depthwise kernels alone). Host energy is not measured
 * (no power counters here): the profile gives time x a nominal 15 W core, and says so. */
#include "lab/calibrate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "nn/data.h"
#include "nn/zoo.h"
#include "policy/cost.h"
#include "quant/calib.h"
#include "quant/qm.h"
#include "quant/rtsize.h"

#define NF QD_KF_COUNT /* features: the host kernel model's (policy/device.h) */
#define ROUNDS 3      /* timed rounds per model and policy; each layer keeps its best */

struct sample { /* x first: qd_lab_nnls reads rows of the sample array */
    double x[NF], ns, wt; /* wt: 1 / the model's time, so every run counts alike (relative) */
};

struct run {
    char family[32], policy[16];
    double ns;                  /* measured per image */
    struct qd_igraph *g;        /* borrowed */
    struct qd_policy p;
    int heldout;
};

/* Weighted least squares over nf features, coefficients >= 0 (a negative one is dropped and
 * the rest refitted). x: n rows of stride doubles (the first nf used); y, wt: n each. */
void qd_lab_nnls(const double *x, size_t stride, const double *y, const double *wt, int n, int nf,
                 double *coef)
{
    enum { MAXF = 64 };
    int use[MAXF];
    static double A[MAXF][MAXF + 1];
    for (int a = 0; a < nf; a++)
        use[a] = 1;
    for (int round = 0; round < nf; round++) {
        memset(A, 0, sizeof A);
        for (int i = 0; i < n; i++) {
            const double *xi = x + (size_t)i * stride;
            double w2 = wt[i] * wt[i];
            for (int a = 0; a < nf; a++) {
                for (int b = 0; b < nf; b++)
                    A[a][b] += w2 * xi[a] * xi[b];
                A[a][nf] += w2 * xi[a] * y[i];
            }
        }
        for (int a = 0; a < nf; a++)
            if (!use[a] || A[a][a] == 0) {
                for (int b = 0; b <= nf; b++) /* dropped: row and column become the identity */
                    A[a][b] = 0;
                for (int b = 0; b < nf; b++)
                    A[b][a] = 0;
                A[a][a] = 1;
            }
        for (int c = 0; c < nf; c++) { /* Gauss-Jordan with partial pivoting */
            int piv = c;
            for (int r = c + 1; r < nf; r++)
                if (fabs(A[r][c]) > fabs(A[piv][c]))
                    piv = r;
            for (int b = 0; b <= nf; b++) {
                double t = A[c][b];
                A[c][b] = A[piv][b], A[piv][b] = t;
            }
            for (int r = 0; r < nf; r++) {
                if (r == c || A[c][c] == 0)
                    continue;
                double f = A[r][c] / A[c][c];
                for (int b = 0; b <= nf; b++)
                    A[r][b] -= f * A[c][b];
            }
        }
        int neg = -1;
        for (int a = 0; a < nf; a++) {
            coef[a] = A[a][a] ? A[a][nf] / A[a][a] : 0;
            if (use[a] && coef[a] < 0 && (neg < 0 || coef[a] < coef[neg]))
                neg = a;
        }
        if (neg < 0)
            return;
        use[neg] = 0;
    }
}

static void fit(const struct sample *s, int n, double *coef)
{
    double *y = malloc(sizeof *y * (size_t)(n ? n : 1)), *w = malloc(sizeof *w * (size_t)(n ? n : 1));
    if (!y || !w) {
        memset(coef, 0, sizeof *coef * NF);
        free(y), free(w);
        return;
    }
    for (int i = 0; i < n; i++)
        y[i] = s[i].ns, w[i] = s[i].wt;
    qd_lab_nnls(s[0].x, sizeof *s / sizeof(double), y, w, n, NF, coef);
    free(y), free(w);
}

void qd_lab_synth(struct qd_dataset *ds, int n, int c, int hw, uint64_t seed)
{
    struct qd_rng r;
    qd_rng_seed(&r, seed);
    memset(ds, 0, sizeof *ds);
    snprintf(ds->name, sizeof ds->name, "synth");
    ds->n = n, ds->c = c, ds->h = ds->w = hw, ds->nclass = 10;
    ds->x = malloc((size_t)n * c * hw * hw);
    ds->y = calloc((size_t)n, 1);
    for (size_t i = 0; ds->x && i < (size_t)n * c * hw * hw; i++)
        ds->x[i] = (uint8_t)qd_rng_below(&r, 256);
}

static uint64_t ns_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Runs blob on the images with per-layer timing; adds one sample per layer (the kernel model's
 * features under geometry kd); *best: ns/image of the best round. */
static qd_err measure(const struct qd_igraph *g, const uint8_t *blob, size_t len,
                      const struct qd_dataset *ds, int n, const struct qd_device *kd,
                      struct sample *out, int *nout, double *best)
{
    size_t need;
    QD_TRY(qd_rt_arena_size(blob, len, &need));
    void *arena = aligned_alloc(64, (need + 63) & ~(size_t)63), *abuf = NULL;
    uint64_t *ns = calloc((size_t)g->n, sizeof *ns), *rns = calloc((size_t)g->n, sizeof *rns);
    qd_rt_t *rt;
    qd_err e = arena && ns && rns ? qd_rt_open(blob, len, arena, need, &rt)
                                  : qd_seterr(QD_ENOMEM, "calibrate: out of memory");
    if (!e)
        e = qd_rt_accel_alloc(rt, QD_RT_ISA_AUTO, &abuf);
    if (!e) {
        float logits[16];
        size_t per = (size_t)ds->c * ds->h * ds->w;
        for (int i = 0; i < 2; i++) /* warm up */
            qd_rt_run(rt, ds->x, logits);
        /* ROUNDS rounds of n images; each layer's time is its best round's (this machine is
         * a VM whose neighbours come and go: the least time is the kernel's own) */
        for (int round = 0; round < ROUNDS; round++) {
            memset(rns, 0, sizeof *rns * g->n);
            qd_rt_set_profile(rt, rns, ns_now);
            for (int i = 0; i < n; i++)
                qd_rt_run(rt, ds->x + (size_t)(i % ds->n) * per, logits);
            double tot = 0;
            for (int i = 0; i < g->n; i++) {
                if (!round || rns[i] < ns[i])
                    ns[i] = rns[i];
                tot += (double)rns[i] / n;
            }
            if (!round || tot < *best)
                *best = tot; /* the model's time: its best round */
        }
        qd_rt_set_profile(rt, NULL, NULL);
        struct qd_qm_header h;
        qd_qm_header_read(blob, &h);
        int *tb = malloc(sizeof *tb * (g->n + 1));
        int *wb = malloc(sizeof *wb * (g->n + 1));
        if (!tb || !wb) {
            e = qd_seterr(QD_ENOMEM, "calibrate: out of memory");
        } else {
            /* the bits each layer's input and weights ended up with, from the file itself */
            const uint8_t *p = h.records;
            for (int i = 0; i < g->n; i++) {
                struct qd_qm_rec r;
                qd_qm_record_read(&p, &r);
                wb[i] = r.wfmt == QD_WFMT_INT ? r.wbits : 0;
            }
            struct qd_qm_tshape *sh = malloc(sizeof *sh * (g->n + 1));
            if (sh && !qd_qm_validate_into(blob, len, sh, NULL)) {
                for (int t = 0; t <= g->n; t++)
                    tb[t] = sh[t].bits;
                for (int i = 0; i < g->n; i++) {
                    struct sample *s = &out[(*nout)++];
                    memset(s, 0, sizeof *s);
                    s->ns = (double)ns[i] / n;
                    int w = g->nodes[i].qidx >= 0 ? (wb[i] ? wb[i] : 16) : 8;
                    qd_cost_kernel_features(g, i, w, tb[g->nodes[i].in[0]], kd, s->x);
                }
            } else if (!e) {
                e = qd_seterr(QD_EFORMAT, "calibrate: blob does not validate");
            }
            free(sh);
        }
        free(tb);
        free(wb);
    }
    free(ns);
    free(rns);
    free(abuf);
    free(arena);
    return e;
}

/* The SIMD kernels' geometry for the ISA the runtime uses here (quant/runtime_x86.c). */
static void geometry(struct qd_device *kd, int isa)
{
    static const int vnni[5] = {0, 16, 12, 8, 6}, avx2[5] = {0, 12, 6, 4, 3};
    memset(kd, 0, sizeof *kd);
    kd->kernels = 1;
    int v = isa == QD_RT_ISA_AVX512VNNI;
    kd->k_lanes = v ? 16 : 8, kd->k_group = v ? 4 : 2;
    memcpy(kd->k_tile, v ? vnni : avx2, sizeof kd->k_tile);
}

static qd_err write_profile(const char *path, const double *c, const struct qd_device *kd,
                            const char *cpu, int isa)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return qd_seterr(QD_EIO, "calibrate: cannot write %s", path);
    /* the generic per-MAC keys are required by every profile; here [kernels] overrides them,
     * so they only summarize: one dot product's time spread over its MACs */
    double mac = c[QD_KF_SIMD_MAC] / (kd->k_lanes * kd->k_group), watts = 15;
    fprintf(f, "# This machine (%s), one core, quantd's runtime with its %s kernels.\n"
               "# Sources: measured by `quantlab calibrate-host` (per-layer timing of the five\n"
               "# families under uniform 2/4/8/16-bit policies; non-negative least squares on\n"
               "# the host kernel model's features, see policy/device.h). Cycles are\n"
               "# nanoseconds (clock_mhz = 1000). Energy is NOT measured (no power counters):\n"
               "# time x a nominal %.0f W core. Flash and RAM are nominal budgets.\n"
               "[device]\nname = host\ndescription = this machine (measured)\nflash = 64M\n"
               "ram = 1G\nreserved_flash = 0\nreserved_ram = 0\nclock_mhz = 1000\n"
               "weight_bits = 2,4,8,16\nact_bits = 8,16\nweights_in_ram = 1\n\n",
            cpu, qd_rt_isa_name(isa), watts);
    fprintf(f, "[kernels]\nsimd_lanes = %d\nsimd_group = %d\nsimd_tile = %d,%d,%d,%d\n"
               "watts = %.6g\n", kd->k_lanes, kd->k_group, kd->k_tile[1], kd->k_tile[2],
            kd->k_tile[3], kd->k_tile[4], watts);
    for (int k = 0; k < NF; k++)
        fprintf(f, "%s = %.6g\n", qd_kf_keys[k], c[k]);
    fprintf(f, "\n[cycles]\nmac_w2 = %.6g\nmac_w4 = %.6g\nmac_w8 = %.6g\nmac_w16 = %.6g\n"
               "per_layer = %.6g\n\n[energy]\npj_per_mac_w2 = %.6g\npj_per_mac_w4 = %.6g\n"
               "pj_per_mac_w8 = %.6g\npj_per_mac_w16 = %.6g\npj_per_byte = 0\n",
            mac, mac, mac, c[QD_KF_REF_MAC], c[QD_KF_FAST_LAYER], mac * watts * 1e3,
            mac * watts * 1e3, mac * watts * 1e3, c[QD_KF_REF_MAC] * watts * 1e3);
    return fclose(f) ? qd_seterr(QD_EIO, "calibrate: writing %s failed", path) : QD_OK;
}

const char *const qd_lab_families[5] = {"custom", "resnet_v1", "resnet_v2", "mobilenet_v1",
                                        "mobilenet_v2"};

qd_err qd_lab_family(int f, struct qd_model *m, struct qd_igraph *g, struct qd_dataset *ds,
                     struct qd_range **rg)
{
    int c = f ? 3 : 1, hw = f ? 32 : 28;
    char *spec;
    struct qd_zoo_opts zo = {0};
    QD_TRY(qd_zoo_spec(qd_lab_families[f], c, hw, hw, 10, &zo, &spec));
    qd_err e = qd_model_parse(spec, m);
    free(spec);
    if (e)
        return e;
    qd_model_init_params(m, 1 + f);
    qd_lab_synth(ds, 64, c, hw, 5 + f);
    struct qd_norm nm;
    qd_norm_fit(ds, &nm);
    if ((e = qd_igraph_build(m, &nm, g))) {
        qd_model_fini(m);
        qd_dataset_fini(ds);
        return e;
    }
    *rg = calloc((size_t)g->n + 1, sizeof **rg);
    e = *rg ? qd_calibrate(g, ds, 64, QD_CALIB_MINMAX, 0, *rg)
            : qd_seterr(QD_ENOMEM, "calibrate: out of memory");
    if (e) {
        free(*rg);
        *rg = NULL;
        qd_igraph_fini(g);
        qd_model_fini(m);
        qd_dataset_fini(ds);
    }
    return e;
}

qd_err qd_calibrate_host(const struct qd_calibrate_opts *o)
{
    const char *const *fams = qd_lab_families;
    static const char *pols[] = {"8", "4", "2", "16", "8/16"};
    const int NP = 5, NH = 4; /* fitted policies; held-out random ones per family: two over
                               * 2/4/8/16 bits, two over 2/4/8 (the SIMD kernels alone) */
    struct qd_device kd;
    int isa = qd_rt_isa_best();
    geometry(&kd, isa);
    struct qd_model m[5];
    struct qd_igraph g[5];
    struct qd_dataset ds[5];
    struct run *runs = calloc(5 * (NP + NH), sizeof *runs);
    struct sample *smp = malloc(sizeof *smp * 5 * NP * 1024);
    int nr = 0, ns = 0, have[5] = {0};
    qd_err e = runs && smp ? QD_OK : qd_seterr(QD_ENOMEM, "calibrate: out of memory");
    struct qd_rng rng;
    qd_rng_seed(&rng, 77);
    for (int f = 0; f < 5 && !e; f++) {
        struct qd_range *rg = NULL;
        if ((e = qd_lab_family(f, &m[f], &g[f], &ds[f], &rg)))
            break;
        have[f] = 1;
        for (int k = 0; k < NP + NH && !e; k++) {
            struct run *r = &runs[nr];
            snprintf(r->family, sizeof r->family, "%s", fams[f]);
            r->g = &g[f];
            r->heldout = k >= NP;
            if (!r->heldout) {
                snprintf(r->policy, sizeof r->policy, "%s", pols[k]);
                e = qd_policy_parse(pols[k], g[f].nq, &r->p);
            } else {
                snprintf(r->policy, sizeof r->policy, k < NP + 2 ? "rand16" : "rand8");
                static const int wb[] = {2, 4, 8, 16};
                qd_policy_uniform(&r->p, g[f].nq, 8, 8);
                for (int l = 0; l < g[f].nq; l++)
                    r->p.wbits[l] = (uint8_t)wb[qd_rng_below(&rng, k < NP + 2 ? 4 : 3)];
            }
            struct qd_qm_build b = {&g[f], &r->p, QD_QMODE_MIXED, rg, 1, fams[f]};
            uint8_t *blob = NULL;
            size_t len;
            if (!e)
                e = qd_qm_build(&b, &blob, &len);
            int before = ns;
            if (!e)
                e = measure(&g[f], blob, len, &ds[f], o->images, &kd, smp, &ns, &r->ns);
            double tot = 0;
            for (int i = before; i < ns; i++)
                tot += smp[i].ns;
            for (int i = before; i < ns; i++)
                smp[i].wt = tot > 0 ? 1 / tot : 1;
            if (r->heldout)
                ns = before; /* held out: not fitted */
            free(blob);
            nr++;
            fprintf(stderr, "calibrate: %s %s: %.3f ms/image\n", fams[f], r->policy, r->ns * 1e-6);
        }
        free(rg);
    }
    double coef[NF] = {0};
    if (!e) {
        fit(smp, ns, coef);
        e = write_profile(o->out, coef, &kd, o->cpu ? o->cpu : "host", isa);
    }
    struct qd_device dev;
    if (!e)
        e = qd_device_load(o->out, &dev);
    double worst = 0, worst_held = 0;
    if (!e) {
        printf("%-13s %-7s %12s %12s %8s\n", "family", "policy", "measured ms", "predicted ms",
               "error");
        for (int i = 0; i < nr && !e; i++) {
            struct qd_costs c;
            if ((e = qd_cost_policy(runs[i].g, &runs[i].p, &dev, &c)))
                break;
            double meas = runs[i].ns * 1e-6, err = c.latency_ms / meas - 1;
            printf("%-13s %-7s %12.3f %12.3f %+7.1f%%%s\n", runs[i].family, runs[i].policy,
                   meas, c.latency_ms, 100 * err, runs[i].heldout ? "  (held out)" : "");
            if (runs[i].heldout)
                worst_held = fmax(worst_held, fabs(err));
            else
                worst = fmax(worst, fabs(err));
        }
        printf("worst error: %.1f%% on the fitted policies, %.1f%% on random held-out ones; "
               "profile written to %s\n",
               100 * worst, 100 * worst_held, o->out);
    }
    for (int f = 0; f < 5; f++) {
        if (!have[f])
            continue;
        qd_igraph_fini(&g[f]);
        qd_model_fini(&m[f]);
        qd_dataset_fini(&ds[f]);
    }
    free(runs);
    free(smp);
    return e;
}

/* See labrun.h. Every runtime is loaded before the timed parallel loop, so a failure is
 * reported before any work and no thread skips the loop. */
#include "lab/labrun.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "quant/qm.h"
#include "quant/rtsize.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

qd_err qd_lab_eval_blob(const uint8_t *blob, size_t len, const struct qd_dataset *te, int n,
                        int threads, int isa, struct qd_lab_eval *r)
{
    memset(r, 0, sizeof *r);
    size_t need;
    QD_TRY(qd_rt_arena_size(blob, len, &need));
    struct qd_qm_header h;
    qd_qm_header_read(blob, &h);
    if (te->c != h.in_c || te->h != h.in_h || te->w != h.in_w)
        return qd_seterr(QD_ESHAPE, "model input %dx%dx%d, %s images %dx%dx%d", h.in_c, h.in_h,
                         h.in_w, te->name, te->c, te->h, te->w);
    if (isa != QD_RT_ISA_AUTO && isa > qd_rt_isa_best())
        return qd_seterr(QD_EINVAL, "this CPU has no %s (best: %s)", qd_rt_isa_name(isa),
                         qd_rt_isa_name(qd_rt_isa_best()));
    int T = threads > 0 ? threads : 1;
    n = n > 0 && n < te->n ? n : te->n;
    void **arena = calloc(T, sizeof *arena), **abuf = calloc(T, sizeof *abuf);
    qd_rt_t **rt = calloc(T, sizeof *rt);
    qd_err e = arena && abuf && rt ? QD_OK : qd_seterr(QD_ENOMEM, "run: out of memory");
    for (int t = 0; t < T && !e; t++) {
        arena[t] = aligned_alloc(64, (need + 63) & ~(size_t)63);
        if (!arena[t]) {
            e = qd_seterr(QD_ENOMEM, "run: out of memory");
            break;
        }
        if (!(e = qd_rt_open(blob, len, arena[t], need, &rt[t])))
            e = qd_rt_accel_alloc(rt[t], isa, &abuf[t]);
    }
    if (!e) {
        long ok = 0;
        size_t per = (size_t)te->c * te->h * te->w;
        int nclass = h.nclass;
        double t0 = now();
#pragma omp parallel for num_threads(T) schedule(static) reduction(+ : ok)
        for (int i = 0; i < n; i++) {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            float logits[256];
            qd_rt_run(rt[tid], te->x + (size_t)i * per, logits);
            int am = 0;
            for (int k = 1; k < nclass; k++)
                am = logits[k] > logits[am] ? k : am;
            ok += am == te->y[i];
        }
        double dt = now() - t0;
        r->n = n;
        r->acc = (double)ok / n;
        r->ips = n / (dt > 0 ? dt : 1e-9);
        r->isa = qd_rt_isa(rt[0]);
        r->accel_layers = qd_rt_accel_layers(rt[0]);
        r->arena = need;
    }
    for (int t = 0; t < T && arena && abuf; t++)
        free(arena[t]), free(abuf[t]);
    free(arena), free(abuf), free(rt);
    return e;
}

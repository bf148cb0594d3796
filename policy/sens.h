/* Layer sensitivity: how much the validation loss rises when only layer l's weights are
 * quantized to b bits (measured), and the Hessian estimate of HAWQ-V2 (Hutchinson trace of
 * the layer's loss Hessian times the squared quantization perturbation).
 *
 * Usage:
 *     struct qd_sens s;
 *     qd_sens_measure(&g, &val, 500, &s);          // s.dloss[l][b], s.acc[l][b], s.loss0
 *     qd_sens_hessian(&m, &nm, &train, 4, &s);     // s.hess[l][b] (needs the float model)
 *     qd_sens_save(&s, "ckpt.sens.json", key); qd_sens_load(...)  // cache per checkpoint
 *
 * Bits are 2, 4, 8, 16 (index by bits directly: dloss[l][8]). The validation set here is the
 * first n images of the set given; callers pass a slice of the training set, not the test
 * set, so that accuracy measured later is not fitted to. */
#ifndef QD_POLICY_SENS_H
#define QD_POLICY_SENS_H

#include "core/err.h"
#include "nn/data.h"
#include "nn/model.h"
#include "nn/train.h"
#include "quant/igraph.h"

struct qd_sens {
    int L, n;                 /* layers; validation images used */
    double loss0, acc0;       /* float model */
    double (*dloss)[17];      /* (L)[bits]: loss increase, only layer l at bits */
    double (*acc)[17];        /* (L)[bits]: accuracy then */
    double (*hess)[17];       /* (L)[bits]: Hessian estimate (0 until qd_sens_hessian) */
    double *trace;            /* (L): mean Hessian trace per weight */
    int have_hess;
};

qd_err qd_sens_alloc(struct qd_sens *s, int L);
void qd_sens_fini(struct qd_sens *s);
qd_err qd_sens_measure(struct qd_igraph *g, const struct qd_dataset *val,
                       const struct qd_norm *nm, int n, struct qd_sens *s);
/* g: its weights are changed and restored one layer at a time.
 * probes: Rademacher vectors for the traces (HAWQ-V2 uses ~ 50-200; 8 already rank). */
qd_err qd_sens_hessian(struct qd_model *m, const struct qd_norm *nm, const struct qd_dataset *tr,
                       int probes, const struct qd_igraph *g, struct qd_sens *s);
/* Spearman rank correlation of the layers' measured and Hessian sensitivities at bits. */
double qd_sens_rank_corr(const struct qd_sens *s, int bits);
qd_err qd_sens_save(const struct qd_sens *s, const char *path, const char *key);
/* QD_ENOENT when there is no cache or its key differs (another checkpoint or set). */
qd_err qd_sens_load(struct qd_sens *s, const char *path, const char *key, int L);

#endif

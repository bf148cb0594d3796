/* quantlab sensitivity and quantlab search (see search.c).
 *
 * Usage:
 *     struct qd_search_opts o = {.ckpt = "runs/m.qdck", .data = "cifar10", .dir = "data",
 *                                .device = "cortex-m7", .flash = 150e3, .ram = NAN,
 *                                .latency = NAN, .energy = NAN, .sens_n = 1000};
 *     qd_lab_search(&o);         // prints the policy, its costs, and with .eval the accuracy
 */
#ifndef QD_LAB_SEARCH_H
#define QD_LAB_SEARCH_H

#include "core/err.h"

struct qd_search_opts {
    const char *ckpt, *data, *dir, *device, *out;
    double flash, ram, latency, energy; /* budgets; NAN: the device's (flash, RAM) or none */
    int sens_n;                         /* validation images for the sensitivity */
    int hessian;                        /* objective: the Hessian estimate, not the measured */
    int eval, limit, threads, json, calib_n;
    int bn_batches;                     /* BatchNorm recalibration batches before eval (0: none) */
    int qat_epochs;                     /* eval: fine-tune each measured policy first (QAT) */
    float qat_lr;                       /* its learning rate (0: 0.01) */
};

qd_err qd_lab_sensitivity(const struct qd_search_opts *o);
qd_err qd_lab_search(const struct qd_search_opts *o);
/* The frontier of flash against predicted loss: the exact search at `points` flash budgets
 * from the smallest policy to the uniform 8-bit one; with o->eval each distinct policy's
 * measured accuracy and the mean of `randoms` random policies of 90-100% of its flash. Writes
 * pareto-<family>-<data>-<device>.{md,csv,gp,png,svg} into dir. */
qd_err qd_lab_pareto(const struct qd_search_opts *o, int points, int randoms, const char *dir,
                     const char *cmdline);

#endif

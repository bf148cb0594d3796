/* Runs a .qm blob on a test set with the device runtime, one runtime (arena, acceleration
 * buffer) per thread, images split between them: accuracy and images/s. Shared by quantlab's
 * run, search and the study.
 *
 * Usage:
 *     struct qd_lab_eval r;
 *     if (qd_lab_eval_blob(blob, len, &test, 2000, 2, QD_RT_ISA_AUTO, &r)) ...
 *     printf("%.2f%% at %.0f images/s on %s\n", 100 * r.acc, r.ips, qd_rt_isa_name(r.isa));
 */
#ifndef QD_LAB_LABRUN_H
#define QD_LAB_LABRUN_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "nn/data.h"

struct qd_lab_eval {
    double acc, ips;
    int n, isa, accel_layers;
    size_t arena;
};

/* n: images (0 or more than the set: all). isa: enum qd_rt_isa. */
qd_err qd_lab_eval_blob(const uint8_t *blob, size_t len, const struct qd_dataset *te, int n,
                        int threads, int isa, struct qd_lab_eval *r);

#endif

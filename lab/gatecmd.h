/* quantlab supernet, gate train, gate eval and decide (see gatecmd.c).
 *
 * Usage:
 *     struct qd_gate_lab_opts o = {.ckpt = "runs/m.qdck", .out = "runs/m.super", ...};
 *     qd_lab_supernet(&o);          // fine-tune into a supernet (or, with .policy, measure it)
 *     qd_lab_gate_train(&o);        // .supernet, .out
 *     qd_lab_gate_eval(&o);         // .gate: random contexts, gate against sensitivity search
 *     qd_lab_decide(&o);            // .gate, .device, budgets, .battery, .eval
 */
#ifndef QD_LAB_GATECMD_H
#define QD_LAB_GATECMD_H

#include "core/err.h"

struct qd_gate_lab_opts {
    const char *ckpt, *supernet, *gate, *data, *dir, *out, *device, *policy;
    double flash, ram, latency, energy, battery; /* NAN: not given */
    int noeval; /* gate eval: decisions and their times only, no accuracy */
    int epochs, steps, batch, hidden, threads, limit, contexts, eval, json, bn_batches, calib_n,
        sens_n, sandwich, lowest_every, probe;
    float lr;
    double kd; /* supernet: distillation weight, 0: labels only */
    int kd_self; /* supernet: distil from the step's all-highest pass, not the float model */
    int project; /* supernet: project the other passes' gradients off the all-highest's */
    int bn_sets; /* supernet: BatchNorm affine sets, one per weight width (0, 1: shared) */
    long seed;
    /* decide: where to put the decided policy, the supernet it was decided on and its data
     * set's name (NULL: not wanted) */
    char *policy_out, *supernet_out, *data_out;
};

qd_err qd_lab_supernet(const struct qd_gate_lab_opts *o);
qd_err qd_lab_gate_train(const struct qd_gate_lab_opts *o);
qd_err qd_lab_gate_eval(const struct qd_gate_lab_opts *o);
qd_err qd_lab_decide(const struct qd_gate_lab_opts *o);
enum { QD_LAB_POLICY_OUT = 4096, QD_LAB_PATH_OUT = 1024, QD_LAB_DATA_OUT = 32 };

#endif

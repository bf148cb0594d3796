/* The gating network: a small MLP g(c) from a device's normalized context to per-layer logits
 * over the weight bitwidths {2, 4, 8, 16} and the activation bitwidths {8, 16}. One forward pass
 * answers any context; the exact search then makes its choice feasible (qd_gate_decide).
 *
 * Usage:
 *     struct qd_gate g;
 *     qd_gate_load("runs/custom.gate", &g);            // versioned file, CRC-checked
 *     float c[QD_GATE_IN];
 *     qd_gate_context(&tables, budget, battery, c);   // budgets as ratios of the int8 model's
 *     struct qd_decision r;
 *     qd_gate_decide(&g, &decider, &tables, budget, battery, &r);   // gate, then exact search
 *
 * Context (QD_GATE_IN floats): log2 of the flash, RAM, latency and energy budgets over the
 * uniform int8 model's figures on that device (clamped to [-4, 2]; unconstrained = 2), the
 * battery level (0..1), and flags for the supported weight bits 2, 4, 8, 16 and activation bits
 * 8, 16. Network: c -> hidden (ReLU) -> hidden (ReLU) -> L x 6 logits. Training (gate_train.c):
 * Gumbel-softmax policies with straight-through gradients through the supernet's task loss,
 * plus a penalty on every budget the expected cost exceeds. */
#ifndef QD_GATE_GATE_H
#define QD_GATE_GATE_H

#include <stddef.h>

#include "core/err.h"
#include "policy/decide.h"

#define QD_GATE_IN 11
#define QD_GATE_OUT 6 /* per layer: weight bits 2, 4, 8, 16; activation bits 8, 16 */

struct qd_gate {
    int L, nin, hidden;
    size_t nparam;
    float *param;      /* W1 (hidden, nin), b1, W2 (hidden, hidden), b2, W3 (L*6, hidden), b3 */
    char backbone[33]; /* the supernet checkpoint's MD5 */
    char family[32], data[32];
    char ckpt[256]; /* the supernet checkpoint's path when trained */
};

qd_err qd_gate_init(struct qd_gate *g, int L, int hidden, uint64_t seed);
void qd_gate_fini(struct qd_gate *g);
qd_err qd_gate_save(const struct qd_gate *g, const char *path);
qd_err qd_gate_load(const char *path, struct qd_gate *g);

void qd_gate_context(const struct qd_decide_tables *t, const double *budget, double battery,
                     float *c);
/* work: 2 * hidden floats, kept for qd_gate_backward. logits: (L, 6). */
void qd_gate_forward(const struct qd_gate *g, const float *c, float *work, float *logits);
/* Adds d(loss)/d(param) to grad (nparam) given d(loss)/d(logits) of the last forward. */
void qd_gate_backward(const struct qd_gate *g, const float *c, const float *work,
                      const float *dlogits, float *grad);

/* Negative log-probabilities of the gate for context c: objw (L, 17) by weight bits (+inf
 * where the device lacks the width), obja (2) summed over layers at 8- and 16-bit activations. */
void qd_gate_objective(const struct qd_gate *g, const struct qd_decide_tables *t,
                       const float *logits, double *objw, double *obja);
/* The gate's choice made feasible: forward pass, then the exact search minimizing the summed
 * negative log-probability under the budgets. QD_EBUDGET names what cannot be met. */
qd_err qd_gate_decide(const struct qd_gate *g, const struct qd_decider *d,
                      const struct qd_decide_tables *t, const double *budget, double battery,
                      struct qd_decision *r);
/* The same under an operator's limits (qd_decide_limited; NULL: none). */
qd_err qd_gate_decide_limited(const struct qd_gate *g, const struct qd_decider *d,
                              const struct qd_decide_tables *t, const double *budget,
                              double battery, const struct qd_decide_limits *lim,
                              struct qd_decision *r);

struct qd_gate_train_opts {
    int steps, batch, hidden, threads;
    float lr, tau, lambda; /* Adam step; Gumbel temperature; budget penalty weight */
    int probe;             /* layers a step whose alternatives are measured; 0: first order */
    uint64_t seed;
    const char *const *profiles;
    int nprofiles;
    int progress;
};
/* Trains g (initialized inside) over contexts sampled from the profiles' ranges, on the
 * supernet in d (d->m, d->nm, d->g, d->tr: loaded with keep_train). */
qd_err qd_gate_train(struct qd_gate *g, struct qd_decider *d, const struct qd_gate_train_opts *o);

#endif

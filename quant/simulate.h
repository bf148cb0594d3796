/* Float simulation of a quantized model: the inference graph with its weights quantized and
 * dequantized exactly as the .qm builder quantizes them, and every activation tensor
 * fake-quantized with the parameters the file will carry, biases rounded to accumulator
 * units, average pooling on raw values. What the integer runtime computes, up to ties in its
 * fixed-point requantization.
 *
 * Usage:
 *     struct qd_qparam *tq = calloc(g.n + 1, sizeof *tq);
 *     qd_simulate_prepare(&b, &sim_graph, tq);   // sim_graph: a second igraph of the model
 *     e.fq = tq;  qd_igraph_forward(&e, n, x);
 * Dynamic range quantizes activations per sample at run time: it is simulated with weights
 * only. */
#ifndef QD_QUANT_SIMULATE_H
#define QD_QUANT_SIMULATE_H

#include "quant/igraph.h"
#include "quant/qm.h"

/* Rewrites sim's weights (a separate igraph of the same model as b->g) to their quantized
 * values and fills tq[0..n] with the activation quantization (bits 0: float). */
void qd_simulate_prepare(const struct qd_qm_build *b, struct qd_igraph *sim, struct qd_qparam *tq);

/* Accuracy of the simulated model on ds (uses the float engine, batch 256). */
qd_err qd_simulate_accuracy(const struct qd_igraph *sim, const struct qd_qparam *tq,
                            const struct qd_dataset *ds, int limit, double *acc);

#endif

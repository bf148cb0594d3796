/* The multi-precision supernet: one set of float weights fine-tuned so that it works at every
 * per-layer policy (weights at 2, 4, 8 or 16 bits per layer, activations at 8 or 16), and the
 * per-policy BatchNorm statistics that a policy needs before it is evaluated or shipped.
 *
 * Usage:
 *     struct qd_supernet_opts o = {.epochs = 3, .lr = 0.01f};
 *     qd_supernet_train(&m, &nm, &train, &test, &o, on_epoch, ctx);   // m is fine-tuned
 *     struct qd_bn_cache c;
 *     qd_bn_cache_open(&c, "s.qdck.bn", &m, key);                     // per-policy BN stats
 *     const float *stat;
 *     qd_bn_cache_get(&c, &m, &nm, &g, &train, &policy, 50, &stat);   // recalibrated, cached
 *     qd_supernet_build(&m, &nm, stat, &train, 1024, &policy, &blob, &len);
 *
 * Training samples policies with fake quantization and straight-through gradients (nn/train.h
 * QAT): the all-highest (16/16), the all-lowest (2/8) and random ones (each layer's weight bits
 * uniform over B, one activation width for the whole policy); one a step in turn, or several a
 * step with their gradients averaged (`sandwich`, `lowest_every`). With `kd`,
 * each policy also learns the soft targets of a frozen copy of the float model it started from
 * (distillation), which keeps the wide policies at the float model's accuracy while the narrow
 * ones pull on the shared weights.
 * BatchNorm statistics depend on the weights' precision, so the running ones learned in
 * training fit none of the policies exactly: qd_supernet_bn_stats re-estimates them for one
 * policy from training batches (the supernet's weights untouched). */
#ifndef QD_GATE_SUPERNET_H
#define QD_GATE_SUPERNET_H

#include "nn/data.h"
#include "nn/model.h"
#include "nn/train.h"
#include "quant/igraph.h"
#include "quant/policy.h"

/* Per model node (m->nnodes), the bits policy p gives: wbits for conv and dense weights,
 * abits for every tensor the runtime quantizes afresh (layer outputs and residual sums). A
 * model with switchable BatchNorm (bn_sets below) also gets p's affine sets made active. */
void qd_supernet_node_bits(struct qd_model *m, const struct qd_igraph *g,
                           const struct qd_policy *p, uint8_t *wbits, uint8_t *abits);
/* Switchable BatchNorm: the affine set of a BN with `sets` sets behind a layer whose weights
 * are at wbits: one set each for 2, 4, 8 and 16 bits (16: also float), the last set for any
 * width beyond the sets there are. */
#define QD_SUPERNET_BN_SETS 4
int qd_supernet_bn_set(int sets, int wbits);
/* A model with switchable BatchNorm: p's sets made active and g (m's graph) built again with
 * their affines folded in; nothing for a model without sets. */
qd_err qd_supernet_select_bn(struct qd_model *m, const struct qd_norm *nm, struct qd_igraph *g,
                             const struct qd_policy *p);

struct qd_supernet_opts {
    int epochs, threads, progress;
    float lr;
    uint64_t seed;
    /* Policies per step, gradients averaged. 0 or 1: one a step, in turn all-highest,
     * all-lowest, two random; n > 1: the all-highest, then the all-lowest one step in
     * `lowest_every` (else a random one), then n - 2 random ones. lowest_every 0: 4 at n = 2,
     * 1 above (the sandwich rule: both ends every step). */
    int sandwich, lowest_every;
    /* Distillation from the float model as it was before training (a frozen copy of m): weight
     * of the teacher's soft targets against the labels in [0, 1] (0: labels only). */
    float kd;
    /* Distil from the step's own all-highest pass instead (in-place distillation; sandwich 1
     * is refused): it learns from the labels alone, the other passes from its logits. */
    int kd_self;
    /* Switchable BatchNorm (0 or 1: off; up to QD_SUPERNET_BN_SETS): each BatchNorm behind a
     * conv layer learns an affine (gamma, beta) per weight width of that layer, so the narrow
     * widths stop pulling on the wide ones' scales and shifts. m is re-laid out
     * (qd_model_bn_sets) before training; its checkpoint carries the sets. */
    int bn_sets;
    /* Gradient projection (nn/train.h qd_train_opts.project): the other policies' gradients
     * lose, tensor by tensor, what points against the all-highest policy's. */
    int project;
};
/* Which policy pass `pass` of training trains at `per_step` policies a step and the all-lowest
 * `lowest_every` steps (sandwich and lowest_every above): 0 the all-highest, 1 the all-lowest,
 * 2 a random one. */
int qd_supernet_pass_kind(int per_step, int lowest_every, long pass);
qd_err qd_supernet_train(struct qd_model *m, const struct qd_norm *nm,
                         const struct qd_dataset *train, const struct qd_dataset *test,
                         const struct qd_supernet_opts *o, qd_epoch_cb cb, void *ctx);

/* BatchNorm statistics of m for policy p (m->nstat floats into stat): `batches` batches of 128
 * training images through m in training mode with its weights fake-quantized at p. m's own
 * statistics are restored. */
qd_err qd_supernet_bn_stats(struct qd_model *m, const struct qd_norm *nm,
                            const struct qd_igraph *g, const struct qd_dataset *train,
                            const struct qd_policy *p, int batches, float *stat);

/* Per-policy BatchNorm statistics, computed on first need and appended to a file. */
struct qd_bn_cache {
    char path[1024];
    size_t nstat;
    int n, cap;
    char **policy;
    float **stat;
};
/* key: identifies the supernet (its checkpoint's MD5); a file made for another key is ignored
 * and rewritten. */
qd_err qd_bn_cache_open(struct qd_bn_cache *c, const char *path, size_t nstat, const char *key);
qd_err qd_bn_cache_get(struct qd_bn_cache *c, struct qd_model *m, const struct qd_norm *nm,
                       const struct qd_igraph *g, const struct qd_dataset *train,
                       const struct qd_policy *p, int batches, const float **stat);
void qd_bn_cache_fini(struct qd_bn_cache *c);

/* The .qm of policy p from m with BatchNorm statistics stat (NULL: m's own): the inference
 * graph, activation ranges calibrated on calib_n images of calib, the mixed-precision build. */
qd_err qd_supernet_build(struct qd_model *m, const struct qd_norm *nm, const float *stat,
                         const struct qd_dataset *calib, int calib_n, const struct qd_policy *p,
                         uint8_t **blob, size_t *len);

#endif

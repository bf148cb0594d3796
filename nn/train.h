/* Training and evaluation of a model on a dataset.
 *
 * Usage:
 *     struct qd_train_opts o;
 *     qd_train_opts_default(&o, "cifar10");       // sensible per-dataset defaults
 *     o.epochs = 30;
 *     struct qd_norm norm;
 *     qd_norm_fit(&train, &norm);                   // per-channel mean/std of the train set
 *     qd_train(&model, &train, &test, &norm, &o, on_epoch, ctx);
 *     struct qd_eval r; qd_evaluate(&model, &test, &norm, 256, &r);
 *
 * SGD with momentum and weight decay (conv/dense weights only) or Adam; linear warm-up then
 * cosine decay per step; CIFAR augmentation (random crop from a 4-pixel zero-padded image, random
 * horizontal flip). Deterministic given the seed and the thread count. */
#ifndef QD_NN_TRAIN_H
#define QD_NN_TRAIN_H

#include <stdint.h>

#include "core/err.h"
#include "nn/data.h"
#include "nn/model.h"

struct qd_norm {
    int c;
    float mean[3], std[3];
};

void qd_norm_fit(const struct qd_dataset *ds, struct qd_norm *n);
/* Writes samples idx[0..cnt) as normalized floats (cnt, c, h, w) into x, labels into y. With
 * augment, applies a random crop (pad 4) and flip drawn from rng. */
struct qd_rng;
void qd_batch_fill(const struct qd_dataset *ds, const struct qd_norm *nm, const int *idx, int cnt,
                   int augment, struct qd_rng *rng, float *x, uint8_t *y);

enum qd_optim_kind { QD_OPTIM_SGD, QD_OPTIM_ADAM };

struct qd_train_opts {
    int epochs, batch, threads;
    enum qd_optim_kind optim;
    float lr, momentum, weight_decay, warmup_epochs;
    int augment;         /* random crop + flip */
    uint64_t seed;
    long max_batches;    /* stop after this many steps in total (0: no limit); for benchmarks */
    long timed_from;     /* steps before this one are warm-up for qd_train_timing */
    int eval_each_epoch; /* evaluate on the test set after every epoch */
    int progress;        /* draw a progress bar on stderr */
    /* Quantization-aware training: per model node, the weight bits to fake-quantize that
     * conv/dense layer's weights at (symmetric, per output channel), 0 for none; NULL: off.
     * Forward and backward see the quantized weights; the gradient updates the float master
     * weights (straight-through). Per-channel quantization commutes with BatchNorm folding,
     * so the deployed (folded) weights quantize to exactly what training saw. */
    const uint8_t *qat_bits;
    /* Per model node, the bits its output activations are fake-quantized at during training
     * (see qd_exec.act_bits), 0 for none; NULL: off. */
    const uint8_t *qat_act_bits;
    /* Called before every step's forward pass (NULL: none); it may rewrite the arrays qat_bits
     * and qat_act_bits point to, which is how a multi-precision supernet samples a policy per
     * step. */
    void (*on_step)(void *ctx, long step);
    void *step_ctx;
    /* Forward/backward passes per optimizer step (0 or 1: one). Pass k of step s calls on_step
     * with s * substeps + k; the gradients of the passes are averaged into one update (the
     * "sandwich" of a supernet: several policies per step). */
    int substeps;
    /* Knowledge distillation (NULL: off): a model with the same input and classes, run in
     * inference mode on each (augmented) batch; the loss becomes (1 - kd_weight) cross-entropy
     * + kd_weight * distillation at temperature kd_temp (qd_softmax_kd_f32, 0: 1). */
    const struct qd_model *teacher;
    float kd_weight, kd_temp;
    /* In-place distillation (substeps > 1, no teacher): pass 0 of each step learns from the
     * labels alone and its logits, held fixed, are the soft targets of passes 1.. (at kd_weight,
     * kd_temp), so a supernet's widest policy teaches the narrower ones as it improves. */
    int kd_inplace;
    /* Gradient projection (substeps > 1): where a later pass's gradient of one parameter tensor
     * points against pass 0's (negative dot product), its component along pass 0's is removed
     * before averaging (qd_grad_project), so the other passes cannot undo pass 0's first-order
     * progress: a supernet's narrow policies stop pulling the widest one back. */
    int project;
};

void qd_train_opts_default(struct qd_train_opts *o, const char *dataset);

struct qd_epoch_stats {
    int epoch, epochs;
    double loss, train_acc, test_loss, test_acc; /* test_* < 0 when not evaluated */
    double seconds, images_per_s, lr;
};

typedef void (*qd_epoch_cb)(const struct qd_epoch_stats *s, void *ctx);

/* Seconds and images of the steps from o->timed_from on (the benchmark's measurement). */
struct qd_train_timing {
    double seconds;
    long images;
};

qd_err qd_train(struct qd_model *m, const struct qd_dataset *train, const struct qd_dataset *test,
                const struct qd_norm *nm, const struct qd_train_opts *o, qd_epoch_cb cb,
                void *ctx);
qd_err qd_train_timed(struct qd_model *m, const struct qd_dataset *train,
                      const struct qd_dataset *test, const struct qd_norm *nm,
                      const struct qd_train_opts *o, qd_epoch_cb cb, void *ctx,
                      struct qd_train_timing *timing);

struct qd_eval {
    double loss, acc;
    int n;
    double seconds;
};

qd_err qd_evaluate(struct qd_model *m, const struct qd_dataset *ds, const struct qd_norm *nm,
                   int batch, struct qd_eval *r);

/* g minus, per parameter tensor of m (each node's weights, each node's biases) where
 * <g, g0> < 0, its projection on g0: afterwards no tensor of g points against g0's. */
void qd_grad_project(const struct qd_model *m, float *g, const float *g0);

/* The clipping value of one output channel's n weights at `bits` (symmetric grid of
 * 2^(bits-1) - 1 steps each side): their largest magnitude, or at QD_WEIGHT_CLIP_BITS bits and
 * fewer the fraction of it (1.00, 0.97, ... 0.31) whose grid has the least squared error (at 2
 * bits the max-magnitude grid rounds most weights of a bell-shaped channel to zero). Training's
 * fake quantization and the model builder (quant/quantize.h) both use it, so deployed weights
 * are exactly what training saw. 0 for an all-zero channel. */
#define QD_WEIGHT_CLIP_BITS 4
float qd_weight_clip(const float *w, size_t n, int bits);

/* Writes m's parameters into out (nparam floats) with the weights of every node whose
 * bits[node] > 0 fake-quantized per output channel (grid from qd_weight_clip). */
void qd_fake_quant_weights(const struct qd_model *m, const uint8_t *bits, float *out);

#endif

/* A model: a graph of layers read from a text spec, its parameters in one block, and an executor
 * that runs forward and backward over a batch.
 *
 * Usage:
 *     struct qd_model m;
 *     if (qd_model_parse(spec_text, &m)) die(qd_errmsg());
 *     qd_model_init_params(&m, seed);
 *     struct qd_exec e;
 *     qd_exec_init(&e, &m, 64);
 *     qd_exec_forward(&e, n, x, 1);                   // x (n, C, H, W), training mode
 *     loss = qd_softmax_xent_f32(n, m.nclass, qd_exec_logits(&e), y, dlogits, &ok);
 *     qd_exec_backward(&e, n, dlogits);               // fills m.grad
 *
 * Spec text, one layer a line ('#' starts a comment):
 *     model custom
 *     input c=1 h=28 w=28
 *     conv out=32 k=3 stride=1 pad=1 [groups=G] [bias=1] [name=c1] [in=prev]
 *     bn [sets=K] | relu | relu6 | flatten | gap
 *     maxpool k=2 [stride=2] | avgpool k=2 [stride=2]
 *     add in=a,b
 *     dense out=10 [bias=1]
 * A layer reads the previous layer unless `in=` names others. The last layer must be a dense
 * layer; its width is the number of classes. Parameters live in one block (m.param) carved per
 * node; BatchNorm running statistics in another (m.stat); gradients mirror m.param (m.grad).
 * `bn sets=K` keeps K affine sets (gamma, beta) of which one at a time is active (m.bn_set, the
 * last set after parsing): forward, backward and the inference graph use the active set, and
 * backward leaves a zero gradient in the others (a supernet's switchable BatchNorm: one set per
 * bitwidth of the layer before it, gate/supernet.h). */
#ifndef QD_NN_MODEL_H
#define QD_NN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define QD_OP_MAP(X)                                                                               \
    X(INPUT, "input")                                                                              \
    X(CONV, "conv")                                                                                \
    X(BN, "bn")                                                                                    \
    X(RELU, "relu")                                                                                \
    X(RELU6, "relu6")                                                                              \
    X(MAXPOOL, "maxpool")                                                                          \
    X(AVGPOOL, "avgpool")                                                                          \
    X(GAP, "gap")                                                                                  \
    X(DENSE, "dense")                                                                              \
    X(ADD, "add")                                                                                  \
    X(FLATTEN, "flatten")

enum qd_op {
#define QD_OP_ENUM(name, str) QD_OP_##name,
    QD_OP_MAP(QD_OP_ENUM)
#undef QD_OP_ENUM
        QD_OP_COUNT
};

const char *qd_op_name(enum qd_op op);

#define QD_NAME_MAX 32
#define QD_MAX_NODES 1024
#define QD_NONE ((size_t)-1)

struct qd_node {
    enum qd_op op;
    char name[QD_NAME_MAX];
    int in[2], nin;
    int out, k, stride, pad, groups, bias; /* layer arguments */
    int sets;                              /* BN: affine sets (1 unless sets=) */
    int line;                              /* the spec line it came from (non-blank lines) */
    int c, h, w;                           /* output shape of one sample */
    size_t woff, wlen;                     /* weight or gamma in m.param (QD_NONE: none) */
    size_t boff, blen;                     /* bias or beta (BN: sets x c each, set by set) */
    size_t soff;                           /* BN: running mean (c) then running var (c) in m.stat */
};

struct qd_model {
    char family[QD_NAME_MAX];
    char *spec; /* the spec text it was parsed from (owned) */
    int nnodes;
    struct qd_node *nodes;
    int nclass;
    size_t nparam, nstat;
    float *param; /* (nparam) */
    float *grad;  /* (nparam) */
    float *stat;  /* (nstat) */
    uint8_t *bn_set; /* (nnodes) per BN node, its active affine set */
};

/* Parses and checks a spec (names, inputs, shapes, channel/group divisibility). On error the
 * message names the line. Allocates the parameter, gradient and statistic blocks (zeroed). */
qd_err qd_model_parse(const char *text, struct qd_model *m);
/* He-normal conv and dense weights, zero biases, BN gamma 1, beta 0, running var 1. */
void qd_model_init_params(struct qd_model *m, uint64_t seed);
void qd_model_fini(struct qd_model *m);
/* Offsets in m.param of BN node i's active gamma and beta. */
static inline size_t qd_bn_gamma(const struct qd_model *m, int i)
{
    return m->nodes[i].woff + (size_t)m->bn_set[i] * (size_t)m->nodes[i].c;
}
static inline size_t qd_bn_beta(const struct qd_model *m, int i)
{
    return m->nodes[i].boff + (size_t)m->bn_set[i] * (size_t)m->nodes[i].c;
}
/* Does m have a BatchNorm with more than one affine set? */
int qd_model_has_bn_sets(const struct qd_model *m);
/* A model like m with `sets` affine sets in each BatchNorm that directly follows a conv layer
 * (each a copy of m's affine); every other parameter and statistic copied. */
qd_err qd_model_bn_sets(const struct qd_model *m, int sets, struct qd_model *out);
/* Multiply-accumulates of one forward pass of one sample. */
uint64_t qd_model_macs(const struct qd_model *m);

struct qd_exec {
    const struct qd_model *m;
    int cap;              /* batch capacity */
    float **act, **dact;  /* per node: output (cap, c, h, w) and its gradient */
    int32_t **idx;        /* per maxpool node: argmax of each output */
    float **bn_mean, **bn_inv; /* per BN node: batch statistics of the last training forward */
    float *block;         /* everything above, one allocation */
    size_t block_bytes;
    float *scratch, *tmp; /* kernel scratch; one activation-sized buffer for gradient sums */
    size_t scratch_len;
    uint8_t *ginit;
    float bn_momentum, bn_eps;
    /* Activation fake quantization (QAT), off when act_bits is NULL: per node, the bits its
     * output is fake-quantized at (0: none), over a range (act_range[2i], [2i+1]) tracked as
     * an exponential moving average of batch min/max in training forwards (NaN until the first
     * batch) and used as is otherwise. 8 bits: asymmetric; 16: symmetric. Backward passes the
     * gradient straight through, except where the forward clipped to the range's top. */
    const uint8_t *act_bits;
    float *act_range;
};

qd_err qd_exec_init(struct qd_exec *e, const struct qd_model *m, int cap);
void qd_exec_fini(struct qd_exec *e);
/* Runs n <= cap samples. train != 0: BatchNorm uses batch statistics and updates running ones. */
void qd_exec_forward(struct qd_exec *e, int n, const float *x, int train);
/* Recomputes nodes from..nnodes-1 only, reading the activations of nodes before `from` as the
 * last forward of the same n samples left them: after a change (weights, activation bits) that
 * touches no node before `from`, the same result as a whole forward at a fraction of its cost.
 * (A whole training forward also moves the running statistics and activation ranges of the
 * nodes it skips; this one leaves them.) */
void qd_exec_forward_from(struct qd_exec *e, int n, int from, int train);
const float *qd_exec_logits(const struct qd_exec *e); /* (n, nclass) */
/* Backpropagates dlogits (n, nclass) of the last training forward; overwrites m->grad. */
void qd_exec_backward(struct qd_exec *e, int n, const float *dlogits);

#endif

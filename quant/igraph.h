/* The inference graph: a trained float model rewritten the way it runs on a device. BatchNorm
 * is folded into the convolution before it (or, where that conv's output is used elsewhere,
 * becomes a per-channel affine: a 1x1 depthwise conv); ReLU/ReLU6 fuse into the op that
 * produces their input; flatten disappears (NCHW is already flat). What remains: conv (any
 * groups), dense, add, max/avg pool and, rarely, a standalone clamp.
 *
 * Usage:
 *     struct qd_igraph g;
 *     qd_igraph_build(&model, &norm, &g);        // folded float weights, owned by g
 *     struct qd_igraph_exec e; qd_igraph_exec_init(&e, &g, 64);
 *     qd_igraph_forward(&e, n, x);               // float reference; e.t[i] = tensor i
 *
 * Tensors: 0 is the input, node i writes tensor i + 1. Quantizable nodes (conv, dense) carry
 * qidx, their position in a policy; a folded-in BN or a fused activation has none of its own. */
#ifndef QD_QUANT_IGRAPH_H
#define QD_QUANT_IGRAPH_H

#include "core/err.h"
#include "nn/model.h"
#include "nn/train.h"
#include "quant/quantize.h"
#include "runtime/qm_format.h" /* enum qd_iop, qd_act: the ops a device runs */


struct qd_inode {
    enum qd_iop op;
    enum qd_act act;
    int in[2];        /* input tensors */
    int c, h, w;      /* output shape of one sample */
    int cin, k, stride, pad, groups; /* conv: input channels, window; pools: k, stride */
    int in_len;       /* dense: input features */
    float *wt;        /* conv (C_out, C_in/groups, K, K) or dense (OUT, IN); folded */
    float *bias;      /* (C_out) */
    size_t wlen;
    int qidx;         /* index in the policy, -1 for ops without weights */
    int src;          /* the float model's node this came from */
    int out_src;      /* the float model's node whose output this node's output equals */
};

struct qd_igraph {
    int n, nq;            /* nodes, quantizable nodes */
    struct qd_inode *nodes;
    int in_c, in_h, in_w, nclass;
    struct qd_norm norm;
};

qd_err qd_igraph_build(const struct qd_model *m, const struct qd_norm *nm, struct qd_igraph *g);
void qd_igraph_fini(struct qd_igraph *g);
/* Elements of tensor t for one sample. */
size_t qd_igraph_tensor_len(const struct qd_igraph *g, int t);

struct qd_igraph_exec {
    const struct qd_igraph *g;
    int cap;
    float **t;       /* (n + 1) tensors of cap samples */
    float *block, *scratch;
    size_t block_bytes;
    /* Simulation: when set, every tensor t with fq[t].bits > 0 is fake-quantized (quantized
     * and dequantized) as soon as it is computed. NULL: plain float. */
    const struct qd_qparam *fq;
};

qd_err qd_igraph_exec_init(struct qd_igraph_exec *e, const struct qd_igraph *g, int cap);
void qd_igraph_exec_fini(struct qd_igraph_exec *e);
/* Float forward of n <= cap samples x (n, C, H, W), normalized. Logits: e->t[g->n]. */
void qd_igraph_forward(struct qd_igraph_exec *e, int n, const float *x);

#endif

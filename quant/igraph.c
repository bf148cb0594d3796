/* Building the inference graph (BN folding, activation fusion) and its float forward pass,
 * which is the reference that calibration and the runtime's float paths are compared with. */
#include "quant/igraph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "nn/kernels.h"

#define BN_EPS 1e-5f

static void apply_act(float *y, size_t len, enum qd_act a)
{
    if (a == QD_ACT_NONE)
        return;
    qd_relu_fwd_f32(len, y, y, a == QD_ACT_RELU6 ? 6.0f : 0.0f);
}

size_t qd_igraph_tensor_len(const struct qd_igraph *g, int t)
{
    if (t == 0)
        return (size_t)g->in_c * g->in_h * g->in_w;
    const struct qd_inode *n = &g->nodes[t - 1];
    return (size_t)n->c * n->h * n->w;
}

void qd_igraph_fini(struct qd_igraph *g)
{
    for (int i = 0; i < g->n; i++) {
        free(g->nodes[i].wt);
        free(g->nodes[i].bias);
    }
    free(g->nodes);
    memset(g, 0, sizeof *g);
}

qd_err qd_igraph_build(const struct qd_model *m, const struct qd_norm *nm, struct qd_igraph *g)
{
    memset(g, 0, sizeof *g);
    int N = m->nnodes;
    int *uses = calloc(N, sizeof *uses), *tensor = calloc(N, sizeof *tensor);
    int *tuses = calloc(N + 1, sizeof *tuses); /* consumers of each igraph tensor */
    g->nodes = calloc(N, sizeof *g->nodes);
    qd_err e = QD_OK;
    if (!uses || !tensor || !tuses || !g->nodes) {
        e = qd_seterr(QD_ENOMEM, "igraph: out of memory");
        goto out;
    }
    for (int i = 1; i < N; i++)
        for (int k = 0; k < m->nodes[i].nin; k++)
            uses[m->nodes[i].in[k]]++;
    g->in_c = m->nodes[0].c, g->in_h = m->nodes[0].h, g->in_w = m->nodes[0].w;
    g->nclass = m->nclass;
    g->norm = *nm;
    tensor[0] = 0;
    tuses[0] = uses[0];
    for (int i = 1; i < N; i++) {
        const struct qd_node *fn = &m->nodes[i];
        const struct qd_node *a = &m->nodes[fn->in[0]];
        int ti = tensor[fn->in[0]];
        struct qd_inode *prod = ti ? &g->nodes[ti - 1] : NULL;
        /* Does node i alone consume tensor ti, so that i can be merged into its producer? */
        int sole = tuses[ti] == 1;
        if (fn->op == QD_OP_FLATTEN) {
            tensor[i] = ti;
            tuses[ti] = uses[i];
            continue;
        }
        if (fn->op == QD_OP_BN && prod && prod->op == QD_IOP_CONV && prod->act == QD_ACT_NONE &&
            sole) {
            const float *gm = m->param + qd_bn_gamma(m, i), *bt = m->param + qd_bn_beta(m, i);
            const float *mu = m->stat + fn->soff, *var = mu + fn->c;
            size_t per = prod->wlen / prod->c;
            for (int c = 0; c < prod->c; c++) {
                float s = gm[c] / sqrtf(var[c] + BN_EPS);
                for (size_t j = 0; j < per; j++)
                    prod->wt[c * per + j] *= s;
                prod->bias[c] = (prod->bias[c] - mu[c]) * s + bt[c];
            }
            prod->out_src = i;
            tensor[i] = ti;
            tuses[ti] = uses[i];
            continue;
        }
        if ((fn->op == QD_OP_RELU || fn->op == QD_OP_RELU6) && prod && sole &&
            prod->act == QD_ACT_NONE &&
            (prod->op == QD_IOP_CONV || prod->op == QD_IOP_DENSE || prod->op == QD_IOP_ADD)) {
            prod->act = fn->op == QD_OP_RELU ? QD_ACT_RELU : QD_ACT_RELU6;
            prod->out_src = i;
            tensor[i] = ti;
            tuses[ti] = uses[i];
            continue;
        }
        struct qd_inode *n = &g->nodes[g->n];
        memset(n, 0, sizeof *n);
        n->in[0] = ti;
        n->in[1] = fn->nin > 1 ? tensor[fn->in[1]] : -1;
        n->c = fn->c, n->h = fn->h, n->w = fn->w;
        n->cin = a->c;
        n->qidx = -1;
        n->src = n->out_src = i;
        switch (fn->op) {
        case QD_OP_CONV:
        case QD_OP_DENSE:
            n->op = fn->op == QD_OP_CONV ? QD_IOP_CONV : QD_IOP_DENSE;
            n->k = fn->k, n->stride = fn->stride, n->pad = fn->pad, n->groups = fn->groups;
            n->in_len = a->c * a->h * a->w;
            n->wlen = fn->wlen;
            n->wt = malloc(sizeof(float) * fn->wlen);
            n->bias = calloc(fn->c, sizeof(float));
            if (!n->wt || !n->bias) {
                e = qd_seterr(QD_ENOMEM, "igraph: out of memory");
                goto out;
            }
            memcpy(n->wt, m->param + fn->woff, sizeof(float) * fn->wlen);
            if (fn->boff != QD_NONE)
                memcpy(n->bias, m->param + fn->boff, sizeof(float) * fn->c);
            n->qidx = g->nq++;
            break;
        case QD_OP_BN: { /* standalone: per-channel affine as a 1x1 depthwise conv */
            n->op = QD_IOP_CONV;
            n->k = 1, n->stride = 1, n->pad = 0, n->groups = fn->c;
            n->wlen = fn->c;
            n->wt = malloc(sizeof(float) * fn->c);
            n->bias = malloc(sizeof(float) * fn->c);
            if (!n->wt || !n->bias) {
                e = qd_seterr(QD_ENOMEM, "igraph: out of memory");
                goto out;
            }
            const float *gm = m->param + qd_bn_gamma(m, i), *bt = m->param + qd_bn_beta(m, i);
            const float *mu = m->stat + fn->soff, *var = mu + fn->c;
            for (int c = 0; c < fn->c; c++) {
                n->wt[c] = gm[c] / sqrtf(var[c] + BN_EPS);
                n->bias[c] = bt[c] - mu[c] * n->wt[c];
            }
            n->qidx = g->nq++;
            break;
        }
        case QD_OP_ADD:
            n->op = QD_IOP_ADD;
            break;
        case QD_OP_MAXPOOL:
        case QD_OP_AVGPOOL:
            n->op = fn->op == QD_OP_MAXPOOL ? QD_IOP_MAXPOOL : QD_IOP_AVGPOOL;
            n->k = fn->k, n->stride = fn->stride;
            break;
        case QD_OP_GAP:
            if (a->h != a->w) {
                e = qd_seterr(QD_ESPEC, "igraph: global pooling of a non-square %dx%d input",
                              a->h, a->w);
                goto out;
            }
            n->op = QD_IOP_AVGPOOL;
            n->k = a->h, n->stride = 1;
            break;
        case QD_OP_RELU:
        case QD_OP_RELU6:
            n->op = QD_IOP_CLAMP;
            n->act = fn->op == QD_OP_RELU ? QD_ACT_RELU : QD_ACT_RELU6;
            break;
        default:
            e = qd_seterr(QD_ESPEC, "igraph: cannot lower %s", qd_op_name(fn->op));
            goto out;
        }
        g->n++;
        tensor[i] = g->n;
        tuses[g->n] = uses[i];
    }
    if (tensor[N - 1] != g->n) {
        e = qd_seterr(QD_ESPEC, "igraph: the classifier is not the last op");
        goto out;
    }
out:
    free(uses);
    free(tensor);
    free(tuses);
    if (e)
        qd_igraph_fini(g);
    return e;
}

/* ---------------------------------------------------------------- float forward */

/* Average pooling as the integer runtime does it: on the raw quantized values (input and
 * output share the parameters q), rounding the raw average half away from zero, as TFLite's
 * reference kernel does. Quantizing the float average instead breaks ties differently when the
 * zero point is not 0, and averages of 2^k values hit exact ties often. */
static void avgpool_sim(int planes, int h, int w, int k, int s, const float *x, float *y,
                        const struct qd_qparam *q)
{
    int oh = (h - k) / s + 1, ow = (w - k) / s + 1;
    int64_t n = (int64_t)k * k;
    for (int p = 0; p < planes; p++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                int64_t acc = 0;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++)
                        acc += qd_quantize(x[((size_t)p * h + oy * s + ky) * w + ox * s + kx], q);
                acc = acc >= 0 ? (acc + n / 2) / n : -((-acc + n / 2) / n);
                y[((size_t)p * oh + oy) * ow + ox] = qd_dequantize((int32_t)acc, q);
            }
}

static void conv_desc(const struct qd_igraph *g, const struct qd_inode *n, int batch,
                      struct qd_conv_desc *d)
{
    int t = n->in[0];
    int h = t ? g->nodes[t - 1].h : g->in_h, w = t ? g->nodes[t - 1].w : g->in_w;
    qd_conv_desc_init(d, batch, n->cin, h, w, n->c, n->k, n->stride, n->pad, n->groups);
}

qd_err qd_igraph_exec_init(struct qd_igraph_exec *e, const struct qd_igraph *g, int cap)
{
    memset(e, 0, sizeof *e);
    e->g = g;
    e->cap = cap;
    size_t floats = 0, scratch = 0;
    for (int t = 0; t <= g->n; t++)
        floats += qd_igraph_tensor_len(g, t) * cap;
    for (int i = 0; i < g->n; i++) {
        size_t s = 0;
        if (g->nodes[i].op == QD_IOP_CONV) {
            struct qd_conv_desc d;
            conv_desc(g, &g->nodes[i], cap, &d);
            s = qd_conv2d_scratch_size(&d);
        } else if (g->nodes[i].op == QD_IOP_MAXPOOL) {
            s = qd_igraph_tensor_len(g, i + 1) * cap; /* argmax indices */
        }
        scratch = s > scratch ? s : scratch;
    }
    e->block_bytes = (floats + scratch + 16) * sizeof(float);
    e->block = qd_mem_alloc(e->block_bytes);
    e->t = calloc(g->n + 1, sizeof *e->t);
    if (!e->block || !e->t) {
        qd_igraph_exec_fini(e);
        return qd_seterr(QD_ENOMEM, "igraph exec: out of memory");
    }
    float *p = e->block;
    for (int t = 0; t <= g->n; t++) {
        e->t[t] = p;
        p += qd_igraph_tensor_len(g, t) * cap;
    }
    e->scratch = p;
    return QD_OK;
}

void qd_igraph_exec_fini(struct qd_igraph_exec *e)
{
    qd_mem_free(e->block, e->block_bytes);
    free(e->t);
    memset(e, 0, sizeof *e);
}

void qd_igraph_forward(struct qd_igraph_exec *e, int n, const float *x)
{
    const struct qd_igraph *g = e->g;
    QD_ASSERT(n > 0 && n <= e->cap);
    memcpy(e->t[0], x, sizeof(float) * n * qd_igraph_tensor_len(g, 0));
    if (e->fq && e->fq[0].bits)
        qd_fake_quant_f32(e->t[0], e->t[0], n * qd_igraph_tensor_len(g, 0), &e->fq[0]);
    for (int i = 0; i < g->n; i++) {
        const struct qd_inode *nd = &g->nodes[i];
        const float *a = e->t[nd->in[0]];
        float *y = e->t[i + 1];
        size_t len = (size_t)n * nd->c * nd->h * nd->w;
        int t = nd->in[0];
        int ih = t ? g->nodes[t - 1].h : g->in_h, iw = t ? g->nodes[t - 1].w : g->in_w;
        switch (nd->op) {
        case QD_IOP_CONV: {
            struct qd_conv_desc d;
            conv_desc(g, nd, n, &d);
            qd_conv2d_fwd_f32(&d, a, nd->wt, nd->bias, y, e->scratch);
            break;
        }
        case QD_IOP_DENSE:
            qd_dense_fwd_f32(n, nd->in_len, nd->c, a, nd->wt, nd->bias, y);
            break;
        case QD_IOP_ADD:
            qd_add_fwd_f32(len, a, e->t[nd->in[1]], y);
            break;
        case QD_IOP_MAXPOOL: {
            /* argmax not needed: reuse scratch as the index buffer */
            qd_maxpool_fwd_f32(n * nd->c, ih, iw, nd->k, nd->stride, a, y,
                               (int32_t *)e->scratch);
            break;
        }
        case QD_IOP_AVGPOOL:
            if (e->fq && e->fq[i + 1].bits)
                avgpool_sim(n * nd->c, ih, iw, nd->k, nd->stride, a, y, &e->fq[i + 1]);
            else
                qd_avgpool_fwd_f32(n * nd->c, ih, iw, nd->k, nd->stride, a, y);
            break;
        case QD_IOP_CLAMP:
            memcpy(y, a, sizeof(float) * len);
            break;
        }
        apply_act(y, len, nd->act);
        if (e->fq && e->fq[i + 1].bits)
            qd_fake_quant_f32(y, y, len, &e->fq[i + 1]);
    }
}

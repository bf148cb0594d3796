/* See simulate.h. */
#include "quant/simulate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

void qd_simulate_prepare(const struct qd_qm_build *b, struct qd_igraph *sim, struct qd_qparam *tq)
{
    qd_qm_tensor_qparams(b, tq);
    for (int i = 0; i < sim->n; i++) {
        struct qd_inode *n = &sim->nodes[i];
        if (n->op != QD_IOP_CONV && n->op != QD_IOP_DENSE)
            continue;
        if (b->mode == QD_QMODE_FP16) {
            for (size_t j = 0; j < n->wlen; j++)
                n->wt[j] = qd_f16_to_f32(qd_f32_to_f16(n->wt[j]));
            continue;
        }
        int per_tensor, bits = qd_qm_weight_bits(b, i, &per_tensor);
        if (!bits)
            continue;
        int ch = per_tensor ? 1 : n->c;
        size_t per = n->wlen / ch;
        float *sc = malloc(sizeof(float) * ch);
        int32_t *q = malloc(sizeof(int32_t) * n->wlen);
        if (!sc || !q) {
            free(sc), free(q);
            continue;
        }
        qd_quantize_per_channel(n->wt, ch, per, bits, sc, q);
        for (size_t j = 0; j < n->wlen; j++)
            n->wt[j] = sc[j / per] * (float)q[j];
        /* integer modes store the bias in accumulator units, s_in * s_w: round it the same way */
        float s_in = tq[n->in[0]].bits ? tq[n->in[0]].scale : 0;
        for (int c = 0; s_in > 0 && c < n->c; c++) {
            double acc_scale = (double)s_in * sc[per_tensor ? 0 : c];
            n->bias[c] = (float)(round(n->bias[c] / acc_scale) * acc_scale);
        }
        free(sc), free(q);
    }
    if (b->mode == QD_QMODE_DYNAMIC) /* per-sample activation ranges: weights only */
        for (int t = 0; t <= sim->n; t++)
            tq[t].bits = 0;
}

qd_err qd_simulate_accuracy(const struct qd_igraph *sim, const struct qd_qparam *tq,
                            const struct qd_dataset *ds, int limit, double *acc)
{
    int B = 256, n = limit > 0 && limit < ds->n ? limit : ds->n;
    struct qd_igraph_exec e;
    QD_TRY(qd_igraph_exec_init(&e, sim, B));
    e.fq = tq;
    size_t per = qd_igraph_tensor_len(sim, 0);
    float *x = qd_mem_alloc(sizeof(float) * per * B);
    uint8_t *y = malloc(B);
    int *idx = malloc(sizeof(int) * B);
    qd_err err = QD_OK;
    if (!x || !y || !idx) {
        err = qd_seterr(QD_ENOMEM, "simulate: out of memory");
        goto out;
    }
    long ok = 0;
    for (int s = 0; s < n; s += B) {
        int cnt = n - s < B ? n - s : B;
        for (int k = 0; k < cnt; k++)
            idx[k] = s + k;
        qd_batch_fill(ds, &sim->norm, idx, cnt, 0, NULL, x, y);
        qd_igraph_forward(&e, cnt, x);
        const float *l = e.t[sim->n];
        for (int k = 0; k < cnt; k++) {
            int am = 0;
            for (int c = 1; c < sim->nclass; c++)
                am = l[k * sim->nclass + c] > l[k * sim->nclass + am] ? c : am;
            ok += am == y[k];
        }
    }
    *acc = (double)ok / n;
out:
    qd_mem_free(x, sizeof(float) * per * B);
    free(y);
    free(idx);
    qd_igraph_exec_fini(&e);
    return err;
}

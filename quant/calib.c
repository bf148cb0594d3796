/* Float forward passes over a representative set, one histogram per tensor. */
#include "quant/calib.h"

#include <stdlib.h>

#include "core/mem.h"

qd_err qd_calibrate(const struct qd_igraph *g, const struct qd_dataset *ds, int count,
                    enum qd_calib how, double pct, struct qd_range *ranges)
{
    if (count < 1 || ds->n < 1)
        return qd_seterr(QD_EINVAL, "calibrate: need at least one sample");
    if (count > ds->n)
        count = ds->n;
    int B = 64;
    struct qd_igraph_exec e;
    QD_TRY(qd_igraph_exec_init(&e, g, B));
    struct qd_calib_hist *h = calloc((size_t)g->n + 1, sizeof *h);
    size_t per = qd_igraph_tensor_len(g, 0);
    float *x = qd_mem_alloc(sizeof(float) * per * B);
    uint8_t *y = malloc(B);
    int *idx = malloc(sizeof(int) * B);
    qd_err err = QD_OK;
    if (!h || !x || !y || !idx) {
        err = qd_seterr(QD_ENOMEM, "calibrate: out of memory");
        goto out;
    }
    for (int t = 0; t <= g->n; t++)
        if ((err = qd_calib_init(&h[t], 2048)))
            goto out;
    for (int s = 0; s < count; s += B) {
        int cnt = count - s < B ? count - s : B;
        for (int b = 0; b < cnt; b++)
            idx[b] = (int)((long)(s + b) * ds->n / count);
        qd_batch_fill(ds, &g->norm, idx, cnt, 0, NULL, x, y);
        qd_igraph_forward(&e, cnt, x);
        for (int t = 0; t <= g->n; t++)
            qd_calib_observe(&h[t], e.t[t], qd_igraph_tensor_len(g, t) * cnt);
    }
    for (int t = 0; t <= g->n; t++)
        qd_calib_range(&h[t], how, pct, 8, QD_QSCHEME_ASYM, &ranges[t].lo, &ranges[t].hi);
out:
    if (h)
        for (int t = 0; t <= g->n; t++)
            qd_calib_fini(&h[t]);
    free(h);
    qd_mem_free(x, sizeof(float) * per * B);
    free(y);
    free(idx);
    qd_igraph_exec_fini(&e);
    return err;
}

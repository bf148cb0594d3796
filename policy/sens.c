/* Layer sensitivity (see sens.h). Measured: float inference graph, one layer's weights fake-
 * quantized per output channel (symmetric), loss and accuracy over the validation images.
 * Hessian: Hutchinson's estimator on the float training model, Hv by central differences of
 * the gradient on one batch, trace per layer = sum over its weights of v * Hv; the layer's
 * score at b bits is mean trace * ||Q_b(W) - W||^2 (HAWQ-V2). */
#include "policy/sens.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/rng.h"
#include "nn/kernels.h"
#include "quant/quantize.h"

static const int bits_list[] = {2, 4, 8, 16};

qd_err qd_sens_alloc(struct qd_sens *s, int L)
{
    memset(s, 0, sizeof *s);
    s->L = L;
    s->dloss = calloc(L, sizeof *s->dloss);
    s->acc = calloc(L, sizeof *s->acc);
    s->hess = calloc(L, sizeof *s->hess);
    s->trace = calloc(L, sizeof *s->trace);
    if (!s->dloss || !s->acc || !s->hess || !s->trace) {
        qd_sens_fini(s);
        return qd_seterr(QD_ENOMEM, "sensitivity: out of memory");
    }
    return QD_OK;
}

void qd_sens_fini(struct qd_sens *s)
{
    free(s->dloss);
    free(s->acc);
    free(s->hess);
    free(s->trace);
    memset(s, 0, sizeof *s);
}

/* Per-channel symmetric fake quantization of w (cout, per) at bits into out. */
static qd_err fake_quant_channels(const float *w, int cout, size_t per, int bits, float *out)
{
    float *sc = malloc(sizeof *sc * cout);
    int32_t *q = malloc(sizeof *q * cout * per);
    if (!sc || !q) {
        free(sc), free(q);
        return qd_seterr(QD_ENOMEM, "sensitivity: out of memory");
    }
    qd_quantize_per_channel(w, cout, per, bits, sc, q);
    for (int c = 0; c < cout; c++)
        for (size_t j = 0; j < per; j++)
            out[c * per + j] = (float)q[c * per + j] * sc[c];
    free(sc), free(q);
    return QD_OK;
}

static qd_err eval(struct qd_igraph_exec *e, const struct qd_dataset *val, const struct qd_norm *nm,
                   int n, float *x, double *loss, double *acc)
{
    int B = e->cap, idx[512];
    uint8_t y[512];
    double ls = 0;
    long ok = 0;
    for (int i0 = 0; i0 < n; i0 += B) {
        int cnt = n - i0 < B ? n - i0 : B;
        for (int k = 0; k < cnt; k++)
            idx[k] = i0 + k;
        qd_batch_fill(val, nm, idx, cnt, 0, NULL, x, y);
        qd_igraph_forward(e, cnt, x);
        int c;
        ls += (double)qd_softmax_xent_f32(cnt, e->g->nodes[e->g->n - 1].c, e->t[e->g->n], y, NULL,
                                          &c) *
              cnt;
        ok += c;
    }
    *loss = ls / n, *acc = (double)ok / n;
    return QD_OK;
}

qd_err qd_sens_measure(struct qd_igraph *g, const struct qd_dataset *val, const struct qd_norm *nm,
                       int n, struct qd_sens *s)
{
    if (n > val->n)
        n = val->n;
    if (n < 1)
        return qd_seterr(QD_EINVAL, "sensitivity: no validation images");
    QD_TRY(qd_sens_alloc(s, g->nq));
    s->n = n;
    struct qd_igraph_exec e;
    qd_err err = qd_igraph_exec_init(&e, g, 128);
    if (err) {
        qd_sens_fini(s);
        return err;
    }
    float *x = malloc(sizeof *x * 128 * qd_igraph_tensor_len(g, 0));
    float *saved = NULL;
    if (!x)
        err = qd_seterr(QD_ENOMEM, "sensitivity: out of memory");
    if (!err)
        err = eval(&e, val, nm, n, x, &s->loss0, &s->acc0);
    for (int i = 0; i < g->n && !err; i++) {
        struct qd_inode *nd = &g->nodes[i];
        if (nd->qidx < 0)
            continue;
        free(saved);
        saved = malloc(sizeof *saved * nd->wlen);
        if (!saved) {
            err = qd_seterr(QD_ENOMEM, "sensitivity: out of memory");
            break;
        }
        memcpy(saved, nd->wt, sizeof *saved * nd->wlen);
        for (int b = 0; b < 4 && !err; b++) {
            double loss = 0, acc = 0;
            err = fake_quant_channels(saved, nd->c, nd->wlen / nd->c, bits_list[b], nd->wt);
            if (!err)
                err = eval(&e, val, nm, n, x, &loss, &acc);
            s->dloss[nd->qidx][bits_list[b]] = loss - s->loss0;
            s->acc[nd->qidx][bits_list[b]] = acc;
        }
        memcpy(nd->wt, saved, sizeof *saved * nd->wlen);
    }
    free(saved);
    free(x);
    qd_igraph_exec_fini(&e);
    if (err)
        qd_sens_fini(s);
    return err;
}

/* Parameters (offset, count, output channels) of the float layer behind policy layer l. */
static int layer_params(const struct qd_model *m, const struct qd_inode *nd, size_t *off,
                        size_t *len, int *cout)
{
    const struct qd_node *fn = &m->nodes[nd->src];
    if (fn->woff == QD_NONE)
        return 0;
    *off = fn->woff, *len = fn->wlen, *cout = fn->op == QD_OP_BN ? fn->c : fn->out;
    return 1;
}

qd_err qd_sens_hessian(struct qd_model *m, const struct qd_norm *nm, const struct qd_dataset *tr,
                       int probes, const struct qd_igraph *g, struct qd_sens *s)
{
    const int B = 128;
    size_t P = m->nparam;
    struct qd_exec e;
    QD_TRY(qd_exec_init(&e, m, B));
    float *x = malloc(sizeof *x * B * (size_t)tr->c * tr->h * tr->w);
    float *v = malloc(sizeof *v * P), *gp = malloc(sizeof *gp * P), *w0 = malloc(sizeof *w0 * P);
    float *st0 = malloc(sizeof *st0 * (m->nstat ? m->nstat : 1)), *dl = malloc(sizeof *dl * B * m->nclass);
    uint8_t y[128];
    int idx[128];
    qd_err err = x && v && gp && w0 && st0 && dl ? QD_OK
                                                 : qd_seterr(QD_ENOMEM, "hessian: out of memory");
    if (!err) {
        for (int k = 0; k < B; k++)
            idx[k] = k % tr->n;
        qd_batch_fill(tr, nm, idx, B, 0, NULL, x, y);
        memcpy(w0, m->param, sizeof *w0 * P);
        memcpy(st0, m->stat, sizeof *st0 * m->nstat);
        memset(s->trace, 0, sizeof *s->trace * s->L);
        struct qd_rng r;
        qd_rng_seed(&r, 1234);
        const float eps = 1e-3f;
        for (int pr = 0; pr < probes; pr++) {
            for (size_t j = 0; j < P; j++)
                v[j] = qd_rng_below(&r, 2) ? 1.0f : -1.0f;
            for (int sgn = 1; sgn >= -1; sgn -= 2) {
                for (size_t j = 0; j < P; j++)
                    m->param[j] = w0[j] + sgn * eps * v[j];
                qd_exec_forward(&e, B, x, 1);
                qd_softmax_xent_f32(B, m->nclass, qd_exec_logits(&e), y, dl, NULL);
                qd_exec_backward(&e, B, dl);
                if (sgn == 1)
                    memcpy(gp, m->grad, sizeof *gp * P);
            }
            for (int i = 0; i < g->n; i++) {
                const struct qd_inode *nd = &g->nodes[i];
                size_t off, len;
                int cout;
                if (nd->qidx < 0 || !layer_params(m, nd, &off, &len, &cout))
                    continue;
                double t = 0;
                for (size_t j = off; j < off + len; j++)
                    t += v[j] * (gp[j] - m->grad[j]) / (2 * eps);
                s->trace[nd->qidx] += t / len / probes;
            }
        }
        memcpy(m->param, w0, sizeof *w0 * P);
        memcpy(m->stat, st0, sizeof *st0 * m->nstat);
        /* score = mean trace * ||Q_b(W) - W||^2 */
        for (int i = 0; i < g->n && !err; i++) {
            const struct qd_inode *nd = &g->nodes[i];
            size_t off, len;
            int cout;
            if (nd->qidx < 0 || !layer_params(m, nd, &off, &len, &cout))
                continue;
            float *q = malloc(sizeof *q * len);
            if (!q) {
                err = qd_seterr(QD_ENOMEM, "hessian: out of memory");
                break;
            }
            for (int b = 0; b < 4 && !err; b++) {
                err = fake_quant_channels(m->param + off, cout, len / cout, bits_list[b], q);
                double d2 = 0;
                for (size_t j = 0; j < len; j++)
                    d2 += (double)(q[j] - m->param[off + j]) * (q[j] - m->param[off + j]);
                s->hess[nd->qidx][bits_list[b]] = s->trace[nd->qidx] * d2;
            }
            free(q);
        }
        s->have_hess = !err;
    }
    free(x), free(v), free(gp), free(w0), free(st0), free(dl);
    qd_exec_fini(&e);
    return err;
}

/* Spearman: Pearson correlation of the ranks (ties get their mean rank). */
static void ranks(const double *a, int n, double *r)
{
    for (int i = 0; i < n; i++) {
        int less = 0, eq = 0;
        for (int j = 0; j < n; j++)
            less += a[j] < a[i], eq += a[j] == a[i];
        r[i] = less + (eq - 1) / 2.0;
    }
}

double qd_sens_rank_corr(const struct qd_sens *s, int bits)
{
    int n = s->L;
    double *a = malloc(sizeof *a * n * 4);
    if (!a || n < 2) {
        free(a);
        return NAN;
    }
    double *b = a + n, *ra = a + 2 * n, *rb = a + 3 * n;
    for (int l = 0; l < n; l++)
        a[l] = s->dloss[l][bits], b[l] = s->hess[l][bits];
    ranks(a, n, ra);
    ranks(b, n, rb);
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (int l = 0; l < n; l++)
        ma += ra[l] / n, mb += rb[l] / n;
    for (int l = 0; l < n; l++) {
        sab += (ra[l] - ma) * (rb[l] - mb);
        saa += (ra[l] - ma) * (ra[l] - ma);
        sbb += (rb[l] - mb) * (rb[l] - mb);
    }
    free(a);
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

static cJSON *table(double (*t)[17], int L)
{
    cJSON *arr = cJSON_CreateArray();
    for (int l = 0; l < L; l++) {
        double row[4];
        for (int b = 0; b < 4; b++)
            row[b] = t[l][bits_list[b]];
        cJSON_AddItemToArray(arr, cJSON_CreateDoubleArray(row, 4));
    }
    return arr;
}

qd_err qd_sens_save(const struct qd_sens *s, const char *path, const char *key)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "key", key);
    cJSON_AddNumberToObject(j, "layers", s->L);
    cJSON_AddNumberToObject(j, "images", s->n);
    cJSON_AddNumberToObject(j, "loss0", s->loss0);
    cJSON_AddNumberToObject(j, "acc0", s->acc0);
    cJSON_AddItemToObject(j, "bits", cJSON_CreateIntArray(bits_list, 4));
    cJSON_AddItemToObject(j, "dloss", table(s->dloss, s->L));
    cJSON_AddItemToObject(j, "acc", table(s->acc, s->L));
    if (s->have_hess) {
        cJSON_AddItemToObject(j, "hessian", table(s->hess, s->L));
        cJSON_AddItemToObject(j, "trace", cJSON_CreateDoubleArray(s->trace, s->L));
    }
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    if (!txt)
        return qd_seterr(QD_ENOMEM, "sensitivity: out of memory");
    qd_err e = qd_file_write_atomic(path, txt, strlen(txt));
    free(txt);
    return e;
}

static int read_table(const cJSON *j, const char *name, double (*t)[17], int L)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, name);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != L)
        return 0;
    for (int l = 0; l < L; l++) {
        const cJSON *row = cJSON_GetArrayItem(a, l);
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != 4)
            return 0;
        for (int b = 0; b < 4; b++) {
            const cJSON *v = cJSON_GetArrayItem(row, b);
            if (!cJSON_IsNumber(v))
                return 0;
            t[l][bits_list[b]] = v->valuedouble;
        }
    }
    return 1;
}

qd_err qd_sens_load(struct qd_sens *s, const char *path, const char *key, int L)
{
    uint8_t *txt;
    size_t len;
    if (qd_file_read(path, &txt, &len))
        return qd_seterr(QD_ENOENT, "sensitivity: no cache at %s", path);
    cJSON *j = cJSON_Parse((const char *)txt);
    free(txt);
    const cJSON *k = j ? cJSON_GetObjectItemCaseSensitive(j, "key") : NULL;
    if (!cJSON_IsString(k) || strcmp(k->valuestring, key)) {
        cJSON_Delete(j);
        return qd_seterr(QD_ENOENT, "sensitivity: cache %s is for another checkpoint", path);
    }
    qd_err e = qd_sens_alloc(s, L);
    if (e) {
        cJSON_Delete(j);
        return e;
    }
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "images");
    const cJSON *l0 = cJSON_GetObjectItemCaseSensitive(j, "loss0");
    const cJSON *a0 = cJSON_GetObjectItemCaseSensitive(j, "acc0");
    int ok = cJSON_IsNumber(n) && cJSON_IsNumber(l0) && cJSON_IsNumber(a0) &&
             read_table(j, "dloss", s->dloss, L) && read_table(j, "acc", s->acc, L);
    if (ok) {
        s->n = n->valueint, s->loss0 = l0->valuedouble, s->acc0 = a0->valuedouble;
        s->have_hess = read_table(j, "hessian", s->hess, L);
    }
    cJSON_Delete(j);
    if (!ok) {
        qd_sens_fini(s);
        return qd_seterr(QD_EFORMAT, "sensitivity: cache %s is damaged", path);
    }
    return QD_OK;
}

/* .qm writing: one writer, also run in counting mode for the exact size. Reading and
 * validation are the device runtime's (runtime/qm_read.c); qd_qm_validate wraps them. */
#include "quant/qm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quantize.h"
#include "runtime/crc32.h"

static const char MAGIC[4] = {'Q', 'D', 'Q', 'M'};

int qd_qmode_parse(const char *s)
{
    for (int i = 0; i < QD_QMODE_COUNT; i++)
        if (!strcmp(s, qd_qmode_name((enum qd_qmode)i)))
            return i;
    return -1;
}

void qd_qm_pack(const int32_t *v, size_t n, int bits, uint8_t *out)
{
    memset(out, 0, qd_qm_packed_bytes(n, bits));
    uint32_t mask = bits == 32 ? 0xffffffffu : (1u << bits) - 1;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)v[i] & mask;
        size_t bit = i * (size_t)bits;
        for (int b = 0; b < bits; b++, bit++)
            if (u >> b & 1)
                out[bit >> 3] |= (uint8_t)(1u << (bit & 7));
    }
}

/* ---------------------------------------------------------------- tensor bits */

void qd_qm_tensor_bits(const struct qd_qm_build *b, int *bits)
{
    const struct qd_igraph *g = b->g;
    int fixed = b->mode == QD_QMODE_INT8 ? 8 : b->mode == QD_QMODE_INT16X8 ? 16 : 0;
    if (b->mode != QD_QMODE_MIXED) {
        for (int t = 0; t <= g->n; t++)
            bits[t] = fixed;
        return;
    }
    bits[0] = b->policy->abits[0];
    for (int i = 0; i < g->n; i++) {
        const struct qd_inode *n = &g->nodes[i];
        int bi = bits[n->in[0]];
        if (n->qidx >= 0)
            bits[i + 1] = b->policy->abits[n->qidx];
        else if (n->op == QD_IOP_ADD)
            bits[i + 1] = bi > bits[n->in[1]] ? bi : bits[n->in[1]];
        else
            bits[i + 1] = bi; /* pools and clamps keep their input's representation */
    }
}

/* ---------------------------------------------------------------- writer */

struct wr {
    uint8_t *p;
    size_t len, cap;
    int count; /* counting mode: advance len, write nothing */
    int oom;
};

static void put(struct wr *w, const void *src, size_t n)
{
    if (!w->count) {
        if (w->len + n > w->cap) {
            size_t nc = (w->cap ? w->cap * 2 : 1 << 16) + n;
            uint8_t *np = realloc(w->p, nc);
            if (!np) {
                w->oom = 1;
                return;
            }
            w->p = np, w->cap = nc;
        }
        if (src)
            memcpy(w->p + w->len, src, n);
        else
            memset(w->p + w->len, 0, n);
    }
    w->len += n;
}

static void u8(struct wr *w, uint8_t v)
{
    put(w, &v, 1);
}
static void u16(struct wr *w, uint16_t v)
{
    put(w, &v, 2);
}
static void u32(struct wr *w, uint32_t v)
{
    put(w, &v, 4);
}
static void f32(struct wr *w, float v)
{
    put(w, &v, 4);
}
static void align4(struct wr *w)
{
    put(w, NULL, (4 - (w->len & 3)) & 3);
}

/* Quantization parameters of tensor t under the build: float modes give scale 0. */
static void tensor_q(const struct qd_qm_build *b, const int *bits, int t, float *scale,
                     int32_t *zero)
{
    *scale = 0, *zero = 0;
    if (!bits[t] || !b->act)
        return;
    struct qd_qparam q;
    /* int8 activations asymmetric, 16-bit symmetric (TFLite's int16x8 convention) */
    enum qd_qscheme s = bits[t] == 16 ? QD_QSCHEME_SYM : QD_QSCHEME_ASYM;
    float lo = b->act[t].lo, hi = b->act[t].hi;
    if (!(hi > lo))
        hi = lo + 1e-6f;
    qd_qparam_from_range(lo, hi, bits[t], s, &q);
    *scale = q.scale, *zero = q.zero;
}

/* Follows pools and clamps back to the tensor whose parameters they share. */
static int param_source(const struct qd_igraph *g, int t)
{
    while (t > 0) {
        const struct qd_inode *n = &g->nodes[t - 1];
        if (n->op != QD_IOP_MAXPOOL && n->op != QD_IOP_AVGPOOL && n->op != QD_IOP_CLAMP)
            break;
        t = n->in[0];
    }
    return t;
}

int qd_qm_weight_bits(const struct qd_qm_build *b, int node, int *per_tensor)
{
    const struct qd_inode *n = &b->g->nodes[node];
    int mixed = b->mode == QD_QMODE_MIXED;
    *per_tensor = 0;
    if (n->op != QD_IOP_CONV && n->op != QD_IOP_DENSE)
        return 0;
    if (b->mode == QD_QMODE_F32 || b->mode == QD_QMODE_FP16)
        return 0;
    /* per-tensor dense weights in the TFLite modes, per-channel elsewhere */
    *per_tensor = n->op == QD_IOP_DENSE && !mixed;
    return mixed ? b->policy->wbits[n->qidx] : 8;
}

void qd_qm_tensor_qparams(const struct qd_qm_build *b, struct qd_qparam *q)
{
    const struct qd_igraph *g = b->g;
    int *bits = malloc(sizeof(int) * (g->n + 1));
    if (!bits) {
        memset(q, 0, sizeof *q * (g->n + 1));
        return;
    }
    qd_qm_tensor_bits(b, bits);
    for (int t = 0; t <= g->n; t++) {
        memset(&q[t], 0, sizeof q[t]);
        if (!bits[t])
            continue;
        int ps = param_source(g, t);
        tensor_q(b, bits, ps, &q[t].scale, &q[t].zero);
        q[t].bits = bits[t];
        qd_qrange(bits[t], bits[t] == 16 ? QD_QSCHEME_SYM : QD_QSCHEME_ASYM, &q[t].qmin,
                  &q[t].qmax);
    }
    free(bits);
}

static void write_model(struct wr *w, const struct qd_qm_build *b)
{
    const struct qd_igraph *g = b->g;
    int *bits = malloc(sizeof(int) * (g->n + 1));
    if (!bits) {
        w->oom = 1;
        return;
    }
    qd_qm_tensor_bits(b, bits);
    int mixed = b->mode == QD_QMODE_MIXED, integer = qd_qmode_integer(b->mode);
    /* header */
    put(w, MAGIC, 4);
    u16(w, QD_QM_VERSION);
    u16(w, 0);
    u32(w, QD_QM_HEADER);
    size_t total_at = w->len;
    u32(w, 0); /* total size, patched below */
    put(w, &b->model_id, 8);
    u8(w, (uint8_t)b->mode);
    u8(w, (uint8_t)g->in_c);
    u16(w, (uint16_t)g->in_h);
    u16(w, (uint16_t)g->in_w);
    u16(w, (uint16_t)g->nclass);
    u32(w, (uint32_t)g->n);
    u32(w, (uint32_t)g->nq);
    for (int i = 0; i < 3; i++)
        f32(w, g->norm.mean[i]);
    for (int i = 0; i < 3; i++)
        f32(w, g->norm.std[i]);
    float is;
    int32_t iz;
    tensor_q(b, bits, 0, &is, &iz);
    f32(w, is);
    put(w, &iz, 4);
    u8(w, (uint8_t)bits[0]);
    put(w, NULL, 3);
    char fam[16] = {0};
    strncpy(fam, b->family ? b->family : "", 15);
    put(w, fam, 16);
    put(w, NULL, 4);
    /* policy */
    for (int q = 0; q < g->nq; q++) {
        int wb = mixed ? b->policy->wbits[q] : integer || b->mode == QD_QMODE_DYNAMIC ? 8 : 0;
        int ab = mixed ? b->policy->abits[q] : bits[0];
        u8(w, (uint8_t)wb);
        u8(w, (uint8_t)ab);
    }
    align4(w);
    /* records */
    for (int i = 0; i < g->n; i++) {
        const struct qd_inode *n = &g->nodes[i];
        int has_w = n->op == QD_IOP_CONV || n->op == QD_IOP_DENSE;
        int wb = 0, wfmt = QD_WFMT_NONE, bfmt = QD_BFMT_NONE;
        uint32_t nscale = 0;
        if (has_w) {
            if (b->mode == QD_QMODE_F32)
                wfmt = QD_WFMT_F32, bfmt = QD_BFMT_F32;
            else if (b->mode == QD_QMODE_FP16)
                wfmt = QD_WFMT_FP16, bfmt = QD_BFMT_F32;
            else {
                int per_tensor;
                wfmt = QD_WFMT_INT;
                wb = qd_qm_weight_bits(b, i, &per_tensor);
                nscale = per_tensor ? 1 : (uint32_t)n->c;
                int wide = bits[n->in[0]] == 16 || bits[i + 1] == 16 || wb > 8;
                bfmt = b->mode == QD_QMODE_DYNAMIC ? QD_BFMT_F32 : wide ? QD_BFMT_I64 : QD_BFMT_I32;
            }
        }
        int ps = param_source(g, i + 1);
        float os;
        int32_t oz;
        tensor_q(b, bits, ps, &os, &oz);
        u8(w, (uint8_t)n->op);
        u8(w, (uint8_t)n->act);
        u8(w, (uint8_t)wb);
        u8(w, (uint8_t)bits[i + 1]);
        u16(w, (uint16_t)n->in[0]);
        u16(w, (uint16_t)(n->in[1] < 0 ? 0xffff : n->in[1]));
        uint16_t sh[8] = {(uint16_t)n->c,    (uint16_t)n->h,   (uint16_t)n->w,
                          (uint16_t)n->cin,  (uint16_t)n->k,   (uint16_t)n->stride,
                          (uint16_t)n->pad,  (uint16_t)n->groups};
        put(w, sh, 16);
        u32(w, (uint32_t)n->in_len);
        f32(w, os);
        put(w, &oz, 4);
        u32(w, nscale);
        u32(w, has_w ? (uint32_t)n->wlen : 0);
        u8(w, (uint8_t)wfmt);
        u8(w, (uint8_t)bfmt);
        u16(w, 0);
        if (!has_w)
            continue;
        size_t per = n->wlen / n->c;
        float in_scale;
        int32_t in_zero;
        tensor_q(b, bits, param_source(g, n->in[0]), &in_scale, &in_zero);
        if (wfmt == QD_WFMT_INT) {
            float *sc = malloc(sizeof(float) * n->c);
            int32_t *qv = malloc(sizeof(int32_t) * n->wlen);
            uint8_t *pk = malloc(qd_qm_packed_bytes(n->wlen, wb) + 1);
            if (!sc || !qv || !pk) {
                free(sc), free(qv), free(pk);
                w->oom = 1;
                break;
            }
            if (nscale == 1) { /* per-tensor */
                qd_quantize_per_channel(n->wt, 1, n->wlen, wb, sc, qv);
                for (int c = 1; c < n->c; c++)
                    sc[c] = sc[0];
            } else {
                qd_quantize_per_channel(n->wt, n->c, per, wb, sc, qv);
            }
            put(w, sc, 4 * (size_t)nscale);
            for (int c = 0; c < n->c; c++) {
                /* bias in accumulator units: s_in * s_w; float for dynamic range */
                double acc_scale = (double)in_scale * sc[c];
                if (bfmt == QD_BFMT_F32)
                    f32(w, n->bias[c]);
                else {
                    double v = acc_scale > 0 ? round(n->bias[c] / acc_scale) : 0;
                    if (bfmt == QD_BFMT_I32) {
                        v = fmax(fmin(v, 2147483647.0), -2147483648.0);
                        int32_t q = (int32_t)v;
                        put(w, &q, 4);
                    } else {
                        v = fmax(fmin(v, 9.2e18), -9.2e18);
                        int64_t q = (int64_t)v;
                        put(w, &q, 8);
                    }
                }
            }
            qd_qm_pack(qv, n->wlen, wb, pk);
            put(w, pk, qd_qm_packed_bytes(n->wlen, wb));
            free(sc), free(qv), free(pk);
        } else {
            put(w, n->bias, 4 * (size_t)n->c);
            if (wfmt == QD_WFMT_F32)
                put(w, n->wt, 4 * n->wlen);
            else
                for (size_t j = 0; j < n->wlen; j++)
                    u16(w, qd_f32_to_f16(n->wt[j]));
        }
        align4(w);
    }
    free(bits);
    uint32_t total = (uint32_t)(w->len + 4);
    if (!w->count && !w->oom)
        memcpy(w->p + total_at, &total, 4);
    uint32_t crc = 0;
    if (!w->count && !w->oom)
        crc = qd_crc32(0, w->p, w->len);
    u32(w, crc);
}

static qd_err check_build(const struct qd_qm_build *b)
{
    if ((unsigned)b->mode >= QD_QMODE_COUNT)
        return qd_seterr(QD_EINVAL, "qm: unknown mode %d", b->mode);
    if (b->mode == QD_QMODE_MIXED) {
        if (!b->policy || b->policy->n != b->g->nq)
            return qd_seterr(QD_EINVAL, "qm: mixed mode needs a policy for %d layers", b->g->nq);
        for (int q = 0; q < b->g->nq; q++)
            if ((b->policy->abits[q] != 8 && b->policy->abits[q] != 16))
                return qd_seterr(QD_EINVAL, "qm: layer %d: activation bits %d (8 or 16)", q,
                                 b->policy->abits[q]);
    }
    if (b->g->n > 32000 || b->g->in_c > 255)
        return qd_seterr(QD_EINVAL, "qm: model too large for format version 1");
    return QD_OK;
}

qd_err qd_qm_size(const struct qd_qm_build *b, size_t *size)
{
    QD_TRY(check_build(b));
    struct qd_qm_build c = *b;
    c.act = NULL; /* the size never depends on the calibration */
    struct wr w = {.count = 1};
    write_model(&w, &c);
    if (w.oom)
        return qd_seterr(QD_ENOMEM, "qm: out of memory");
    *size = w.len;
    return QD_OK;
}

qd_err qd_qm_build(const struct qd_qm_build *b, uint8_t **blob, size_t *len)
{
    QD_TRY(check_build(b));
    if (qd_qmode_integer(b->mode) && !b->act)
        return qd_seterr(QD_EINVAL, "qm: %s needs calibrated activation ranges",
                         qd_qmode_name(b->mode));
    struct wr w = {0};
    write_model(&w, b);
    if (w.oom) {
        free(w.p);
        return qd_seterr(QD_ENOMEM, "qm: out of memory");
    }
    *blob = w.p;
    *len = w.len;
    return QD_OK;
}

/* ---------------------------------------------------------------- validation */

qd_err qd_qm_validate(const uint8_t *blob, size_t len)
{
    uint32_t n = 0;
    struct qd_rt_diag d = {0};
    qd_rt_err re = qd_qm_count(blob, len, &n, &d);
    if (re)
        return qd_err_rt(re, &d);
    struct qd_qm_tshape *s = calloc((size_t)n + 1, sizeof *s);
    if (!s)
        return qd_seterr(QD_ENOMEM, "qm: out of memory");
    re = qd_qm_validate_into(blob, len, s, &d);
    free(s);
    return qd_err_rt(re, &d);
}

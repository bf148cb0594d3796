/* .qm writing (one writer, also run in counting mode for the exact size), validation and
 * reading. Validation walks every record with bounds checks before anything is trusted; after
 * it, readers may assume well-formed input. */
#include "quant/qm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "quant/quantize.h"

static const char MAGIC[4] = {'Q', 'D', 'Q', 'M'};

static const char *const mode_names[] = {
#define QD_QMODE_STR(n, s) s,
    QD_QMODE_MAP(QD_QMODE_STR)
#undef QD_QMODE_STR
};

const char *qd_qmode_name(enum qd_qmode m)
{
    return (unsigned)m < QD_QMODE_COUNT ? mode_names[m] : "?";
}

int qd_qmode_parse(const char *s)
{
    for (int i = 0; i < QD_QMODE_COUNT; i++)
        if (!strcmp(s, mode_names[i]))
            return i;
    return -1;
}

int qd_qmode_integer(enum qd_qmode m)
{
    return m == QD_QMODE_INT8 || m == QD_QMODE_INT16X8 || m == QD_QMODE_MIXED;
}

size_t qd_qm_packed_bytes(size_t n, int bits)
{
    return (n * (size_t)bits + 7) / 8;
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

int32_t qd_qm_unpack_one(const uint8_t *p, size_t i, int bits)
{
    if (bits == 8)
        return (int8_t)p[i];
    if (bits == 16)
        return (int16_t)(p[2 * i] | p[2 * i + 1] << 8);
    size_t bit = i * (size_t)bits;
    uint32_t u = 0;
    for (int b = 0; b < bits; b++, bit++)
        u |= (uint32_t)(p[bit >> 3] >> (bit & 7) & 1) << b;
    if (u >> (bits - 1) & 1) /* sign-extend */
        u |= ~0u << bits;
    return (int32_t)u;
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
        crc = (uint32_t)crc32(crc32(0, NULL, 0), w->p, (uInt)w->len);
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

/* ---------------------------------------------------------------- reading */

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static float rdf(const uint8_t *p)
{
    float v;
    memcpy(&v, p, 4);
    return v;
}

void qd_qm_header_read(const uint8_t *p, struct qd_qm_header *h)
{
    memset(h, 0, sizeof *h);
    h->version = rd16(p + 4);
    h->flags = rd16(p + 6);
    h->total = rd32(p + 12);
    memcpy(&h->model_id, p + 16, 8);
    h->mode = p[24];
    h->in_c = p[25];
    h->in_h = rd16(p + 26);
    h->in_w = rd16(p + 28);
    h->nclass = rd16(p + 30);
    h->n = rd32(p + 32);
    h->nq = rd32(p + 36);
    for (int i = 0; i < 3; i++) {
        h->mean[i] = rdf(p + 40 + 4 * i);
        h->std[i] = rdf(p + 52 + 4 * i);
    }
    h->in_scale = rdf(p + 64);
    memcpy(&h->in_zero, p + 68, 4);
    h->in_bits = p[72];
    memcpy(h->family, p + 76, 16);
    h->policy = p + QD_QM_HEADER;
    h->records = p + QD_QM_HEADER + ((2 * (size_t)h->nq + 3) & ~(size_t)3);
}

static size_t payload(const struct qd_qm_rec *r)
{
    size_t s = 4 * (size_t)r->nscale;
    size_t bsz = r->bfmt == QD_BFMT_I64 ? 8 : r->bfmt ? 4 : 0;
    s += bsz * (r->wfmt ? r->c : 0);
    if (r->wfmt == QD_WFMT_INT)
        s += qd_qm_packed_bytes(r->wcount, r->wbits);
    else if (r->wfmt == QD_WFMT_FP16)
        s += 2 * (size_t)r->wcount;
    else if (r->wfmt == QD_WFMT_F32)
        s += 4 * (size_t)r->wcount;
    return r->wfmt ? (s + 3) & ~(size_t)3 : 0;
}

void qd_qm_record_read(const uint8_t **pp, struct qd_qm_rec *r)
{
    const uint8_t *p = *pp;
    r->op = p[0], r->act = p[1], r->wbits = p[2], r->obits = p[3];
    r->in0 = (int16_t)rd16(p + 4);
    r->in1 = (int16_t)rd16(p + 6);
    uint16_t *f[8] = {&r->c, &r->h, &r->w, &r->cin, &r->k, &r->stride, &r->pad, &r->groups};
    for (int i = 0; i < 8; i++)
        *f[i] = rd16(p + 8 + 2 * i);
    r->in_len = rd32(p + 24);
    r->out_scale = rdf(p + 28);
    memcpy(&r->out_zero, p + 32, 4);
    r->nscale = rd32(p + 36);
    r->wcount = rd32(p + 40);
    r->wfmt = p[44];
    r->bfmt = p[45];
    const uint8_t *q = p + QD_QM_RECORD;
    r->scales = q;
    q += 4 * (size_t)r->nscale;
    r->bias = q;
    q += (r->bfmt == QD_BFMT_I64 ? 8 : r->bfmt ? 4 : 0) * (size_t)(r->wfmt ? r->c : 0);
    r->weights = q;
    *pp = p + QD_QM_RECORD + payload(r);
}

#define BAD(...) return qd_seterr(QD_EFORMAT, __VA_ARGS__)

qd_err qd_qm_count(const uint8_t *blob, size_t len, uint32_t *n)
{
    if (len < QD_QM_HEADER + 4 || memcmp(blob, MAGIC, 4))
        BAD("qm: not a quantd model (bad magic or %zu bytes)", len);
    *n = rd32(blob + 32);
    if (*n == 0 || *n > 32000)
        BAD("qm: %u nodes", *n);
    return QD_OK;
}

qd_err qd_qm_validate(const uint8_t *blob, size_t len)
{
    uint32_t n = 0;
    QD_TRY(qd_qm_count(blob, len, &n));
    struct qd_qm_tshape *s = calloc((size_t)n + 1, sizeof *s);
    if (!s)
        return qd_seterr(QD_ENOMEM, "qm: out of memory");
    qd_err e = qd_qm_validate_into(blob, len, s);
    free(s);
    return e;
}

qd_err qd_qm_validate_into(const uint8_t *blob, size_t len, struct qd_qm_tshape *ts)
{
    uint32_t nn;
    QD_TRY(qd_qm_count(blob, len, &nn));
    struct qd_qm_header h;
    qd_qm_header_read(blob, &h);
    if (h.version != QD_QM_VERSION)
        return qd_seterr(QD_EVERSION, "qm: format version %u, this build reads %d", h.version,
                         QD_QM_VERSION);
    if (rd32(blob + 8) != QD_QM_HEADER)
        BAD("qm: header size %u", rd32(blob + 8));
    if (h.total != len)
        BAD("qm: header says %u bytes, blob has %zu (truncated?)", h.total, len);
    uint32_t crc = rd32(blob + len - 4);
    if (crc != (uint32_t)crc32(crc32(0, NULL, 0), blob, (uInt)(len - 4)))
        return qd_seterr(QD_ECHECKSUM, "qm: checksum mismatch (damaged)");
    if (h.mode >= QD_QMODE_COUNT || !h.in_c || h.in_c > 4 || !h.in_h || !h.in_w ||
        h.nclass < 2 || h.nq > h.n)
        BAD("qm: header fields out of range");
    int integer = qd_qmode_integer((enum qd_qmode)h.mode);
    if (integer && ((h.in_bits != 8 && h.in_bits != 16) || !(h.in_scale > 0)))
        BAD("qm: input quantization out of range");
    for (int i = 0; i < h.in_c; i++)
        if (!(h.std[i] > 0) || !isfinite(h.mean[i]))
            BAD("qm: input normalization out of range");
    const uint8_t *end = blob + len - 4, *p = h.records;
    if (p > end)
        BAD("qm: policy runs past the end");
    qd_err e = QD_OK;
    ts[0].c = h.in_c, ts[0].h = h.in_h, ts[0].w = h.in_w, ts[0].bits = integer ? h.in_bits : 0;
    ts[0].len = (uint32_t)h.in_c * h.in_h * h.in_w;
    uint32_t nq = 0;
    for (uint32_t i = 0; i < h.n; i++) {
        if ((size_t)(end - p) < QD_QM_RECORD) {
            e = qd_seterr(QD_EFORMAT, "qm: record %u runs past the end", i);
            goto out;
        }
        struct qd_qm_rec r;
        const uint8_t *start = p;
        qd_qm_record_read(&p, &r);
        if (p > end || p < start) {
            e = qd_seterr(QD_EFORMAT, "qm: record %u payload runs past the end", i);
            goto out;
        }
#define RBAD(...)                                                                                  \
    do {                                                                                           \
        e = qd_seterr(QD_EFORMAT, __VA_ARGS__);                                                    \
        goto out;                                                                                  \
    } while (0)
        if (r.op > QD_IOP_CLAMP || r.act > QD_ACT_RELU6)
            RBAD("qm: record %u: op %u act %u", i, r.op, r.act);
        if (r.in0 < 0 || (uint32_t)r.in0 > i || (r.op == QD_IOP_ADD &&
                                                  (r.in1 < 0 || (uint32_t)r.in1 > i)))
            RBAD("qm: record %u: input tensor out of range", i);
        if (!r.c || !r.h || !r.w || (uint64_t)r.c * r.h * r.w > (1u << 26))
            RBAD("qm: record %u: output shape %ux%ux%u", i, r.c, r.h, r.w);
        if (integer ? (r.obits != 8 && r.obits != 16) : r.obits != 0)
            RBAD("qm: record %u: output bits %u", i, r.obits);
        if (integer && (!(r.out_scale > 0) || !isfinite(r.out_scale)))
            RBAD("qm: record %u: output scale", i);
        if (integer) {
            int32_t lim = r.obits == 8 ? 128 : 32768;
            if (r.out_zero < -lim || r.out_zero >= lim)
                RBAD("qm: record %u: output zero point", i);
        }
        int a = r.in0;
        uint32_t ic = ts[a].c, ih = ts[a].h, iw = ts[a].w;
        int has_w = r.op == QD_IOP_CONV || r.op == QD_IOP_DENSE;
        if (has_w != (r.wfmt != QD_WFMT_NONE) || r.wfmt > QD_WFMT_F32 || r.bfmt > QD_BFMT_F32)
            RBAD("qm: record %u: weight/bias format", i);
        switch (r.op) {
        case QD_IOP_CONV: {
            if (!r.k || !r.stride || !r.groups || r.cin != ic || ic % r.groups ||
                r.c % r.groups || ih + 2 * r.pad < r.k || iw + 2 * r.pad < r.k ||
                r.h != (ih + 2 * r.pad - r.k) / r.stride + 1 ||
                r.w != (iw + 2 * r.pad - r.k) / r.stride + 1 ||
                r.wcount != (uint64_t)r.c * (ic / r.groups) * r.k * r.k)
                RBAD("qm: record %u: conv geometry does not match its input %ux%ux%u", i, ic, ih,
                     iw);
            break;
        }
        case QD_IOP_DENSE:
            if (r.in_len != ts[a].len || r.h != 1 || r.w != 1 ||
                r.wcount != (uint64_t)r.c * r.in_len)
                RBAD("qm: record %u: dense geometry", i);
            break;
        case QD_IOP_ADD:
            if (ts[r.in1].c != r.c || ts[r.in1].h != r.h || ts[r.in1].w != r.w || ic != r.c ||
                ih != r.h || iw != r.w)
                RBAD("qm: record %u: add of mismatched shapes", i);
            break;
        case QD_IOP_MAXPOOL:
        case QD_IOP_AVGPOOL:
            if (!r.k || !r.stride || ih < r.k || iw < r.k || r.c != ic ||
                r.h != (ih - r.k) / r.stride + 1 || r.w != (iw - r.k) / r.stride + 1)
                RBAD("qm: record %u: pool geometry", i);
            if (integer && r.obits != ts[a].bits)
                RBAD("qm: record %u: pool changes the representation", i);
            break;
        case QD_IOP_CLAMP:
            if (r.c != ic || r.h != ih || r.w != iw || (integer && r.obits != ts[a].bits))
                RBAD("qm: record %u: clamp shape", i);
            break;
        }
        if (has_w) {
            if (r.wfmt == QD_WFMT_INT) {
                if (r.wbits < 2 || r.wbits > 16 || (r.nscale != 1 && r.nscale != r.c))
                    RBAD("qm: record %u: weight bits %u / %u scales", i, r.wbits, r.nscale);
                for (uint32_t c = 0; c < r.nscale; c++) {
                    float s = rdf(r.scales + 4 * c);
                    if (!(s > 0) || !isfinite(s))
                        RBAD("qm: record %u: weight scale %u", i, c);
                }
                if (integer && r.bfmt != QD_BFMT_I32 && r.bfmt != QD_BFMT_I64)
                    RBAD("qm: record %u: integer bias format", i);
                if (!integer && r.bfmt != QD_BFMT_F32)
                    RBAD("qm: record %u: float bias format", i);
            } else if (integer || r.nscale || r.bfmt != QD_BFMT_F32) {
                RBAD("qm: record %u: float weights in an integer model", i);
            }
            nq++;
        }
        ts[i + 1].c = r.c, ts[i + 1].h = r.h, ts[i + 1].w = r.w, ts[i + 1].bits = r.obits;
        ts[i + 1].len = (uint32_t)r.c * r.h * r.w;
        if (i + 1 == h.n && (ts[i + 1].len != h.nclass || r.op != QD_IOP_DENSE))
            RBAD("qm: the last op must be a dense layer of %u classes", h.nclass);
    }
    if (p != end)
        RBAD("qm: %td trailing bytes after the last record", end - p);
    if (nq != h.nq)
        RBAD("qm: %u weighted layers, header says %u", nq, h.nq);
out:
    return e;
}

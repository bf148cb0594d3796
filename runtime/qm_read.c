/* .qm reading and validation (see qm_format.h). Validation walks every record by offsets, with
 * each size computed in 64 bits and compared with what is left of the blob before any pointer
 * is formed; after it, readers may assume well-formed input. */
#include "qm_format.h"

#include <string.h>

#include "crc32.h"

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

int qd_qmode_integer(enum qd_qmode m)
{
    return m == QD_QMODE_INT8 || m == QD_QMODE_INT16X8 || m == QD_QMODE_MIXED;
}

uint64_t qd_qm_packed_bytes(uint64_t n, int bits)
{
    return (n * (uint64_t)bits + 7) / 8;
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
/* Finite (not NaN, not infinite), from the bits: no libm. */
static int finite_f(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (u >> 23 & 0xff) != 0xff;
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
    /* an nq past the cap fails validation; the pointer stays inside the blob meanwhile */
    size_t policy = h->nq <= QD_QM_MAX_NODES ? (2 * (size_t)h->nq + 3) & ~(size_t)3 : 0;
    h->records = p + QD_QM_HEADER + policy;
}

/* The fixed 48 bytes of a record; payload pointers are set by the caller. */
static void rec_fields(const uint8_t *p, struct qd_qm_rec *r)
{
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
    r->scales = r->bias = r->weights = NULL;
}

static uint64_t bias_bytes(const struct qd_qm_rec *r)
{
    uint64_t b = r->bfmt == QD_BFMT_I64 ? 8 : r->bfmt ? 4 : 0;
    return b * (r->wfmt ? r->c : 0);
}

/* Bytes after the fixed part, 4-aligned; at most 2^34 + 2^19 + 2^35 for any field values. */
static uint64_t rec_payload(const struct qd_qm_rec *r)
{
    if (!r->wfmt)
        return 0;
    uint64_t s = 4 * (uint64_t)r->nscale + bias_bytes(r);
    if (r->wfmt == QD_WFMT_INT)
        s += qd_qm_packed_bytes(r->wcount, r->wbits);
    else if (r->wfmt == QD_WFMT_FP16)
        s += 2 * (uint64_t)r->wcount;
    else if (r->wfmt == QD_WFMT_F32)
        s += 4 * (uint64_t)r->wcount;
    return (s + 3) & ~(uint64_t)3;
}

static void rec_pointers(const uint8_t *p, struct qd_qm_rec *r)
{
    r->scales = p + QD_QM_RECORD;
    r->bias = r->scales + 4 * (size_t)r->nscale;
    r->weights = r->bias + (size_t)bias_bytes(r);
}

void qd_qm_record_read(const uint8_t **pp, struct qd_qm_rec *r)
{
    rec_fields(*pp, r);
    rec_pointers(*pp, r);
    *pp += QD_QM_RECORD + (size_t)rec_payload(r);
}

qd_rt_err qd_qm_count(const uint8_t *blob, size_t len, uint32_t *n, struct qd_rt_diag *d)
{
    *n = 0;
    if (!blob || len < QD_QM_HEADER + 4 || blob[0] != MAGIC[0] || blob[1] != MAGIC[1] ||
        blob[2] != MAGIC[2] || blob[3] != MAGIC[3]) /* (no memcmp: not in the closure) */
        return qd_rt_fail(d, QD_RT_EFORMAT, -1, "not a quantd model (bad magic or too short)");
    uint32_t v = rd32(blob + 32);
    if (v == 0)
        return qd_rt_fail(d, QD_RT_EFORMAT, -1, "0 nodes");
    if (v > QD_QM_MAX_NODES)
        return qd_rt_fail(d, QD_RT_ELIMIT, -1, "more nodes than the runtime's cap");
    *n = v;
    return QD_RT_OK;
}

static qd_rt_err check_header(const uint8_t *blob, size_t len, const struct qd_qm_header *h,
                              struct qd_rt_diag *d)
{
    if (h->version != QD_QM_VERSION)
        return qd_rt_fail(d, QD_RT_EVERSION, -1, "format version this build does not read");
    if (rd32(blob + 8) != QD_QM_HEADER)
        return qd_rt_fail(d, QD_RT_EFORMAT, -1, "header size");
    if (h->total != len)
        return qd_rt_fail(d, QD_RT_EFORMAT, -1, "size in the header differs (truncated?)");
    if (rd32(blob + len - 4) != qd_crc32(0, blob, len - 4))
        return qd_rt_fail(d, QD_RT_ECHECKSUM, -1, "checksum mismatch (damaged)");
    if (h->mode >= QD_QMODE_COUNT || !h->in_c || !h->in_h || !h->in_w || h->nclass < 2 ||
        h->nq > h->n)
        return qd_rt_fail(d, QD_RT_EFORMAT, -1, "header fields out of range");
    if (h->in_c > QD_QM_MAX_IN_C)
        return qd_rt_fail(d, QD_RT_EFORMAT, -1, "more input channels than mean/std hold");
    if ((uint64_t)h->in_c * h->in_h * h->in_w > QD_QM_MAX_ELEMS)
        return qd_rt_fail(d, QD_RT_ELIMIT, -1, "input larger than the runtime's cap");
    int integer = qd_qmode_integer((enum qd_qmode)h->mode);
    if (integer && ((h->in_bits != 8 && h->in_bits != 16) || !(h->in_scale > 0) ||
                    !finite_f(h->in_scale)))
        return qd_rt_fail(d, QD_RT_EFORMAT, -1, "input quantization out of range");
    /* the kernels' overflow bounds take |x - zero| <= 2^bits - 1, as for every record */
    int32_t lim = h->in_bits == 16 ? 32768 : 128;
    if (integer && (h->in_zero < -lim || h->in_zero >= lim))
        return qd_rt_fail(d, QD_RT_EFORMAT, -1, "input zero point out of range");
    for (int i = 0; i < h->in_c; i++)
        if (!(h->std[i] > 0) || !finite_f(h->std[i]) || !finite_f(h->mean[i]))
            return qd_rt_fail(d, QD_RT_EFORMAT, -1, "input normalization out of range");
    return QD_RT_OK;
}

/* The record's geometry against its input tensor a (and, for add, in1). */
static const char *check_geometry(const struct qd_qm_rec *r, const struct qd_qm_tshape *ts,
                                  int integer)
{
    const struct qd_qm_tshape *a = &ts[r->in0];
    uint32_t ic = a->c, ih = a->h, iw = a->w;
    switch (r->op) {
    case QD_IOP_CONV:
        if (!r->k || !r->stride || !r->groups || r->cin != ic || ic % r->groups ||
            r->c % r->groups || ih + 2u * r->pad < r->k || iw + 2u * r->pad < r->k ||
            r->h != (ih + 2u * r->pad - r->k) / r->stride + 1 ||
            r->w != (iw + 2u * r->pad - r->k) / r->stride + 1 ||
            r->wcount != (uint64_t)r->c * (ic / r->groups) * r->k * r->k)
            return "conv geometry does not match its input";
        if ((uint64_t)(ic / r->groups) * r->k * r->k > QD_QM_MAX_PER)
            return NULL; /* the caller reports the cap */
        return "";
    case QD_IOP_DENSE:
        if (r->in_len != a->len || r->h != 1 || r->w != 1 ||
            r->wcount != (uint64_t)r->c * r->in_len)
            return "dense geometry does not match its input";
        return r->in_len > QD_QM_MAX_PER ? NULL : "";
    case QD_IOP_ADD:
        if (ts[r->in1].c != r->c || ts[r->in1].h != r->h || ts[r->in1].w != r->w || ic != r->c ||
            ih != r->h || iw != r->w)
            return "add of mismatched shapes";
        return "";
    case QD_IOP_MAXPOOL:
    case QD_IOP_AVGPOOL:
        if (!r->k || !r->stride || ih < r->k || iw < r->k || r->c != ic ||
            r->h != (ih - r->k) / r->stride + 1 || r->w != (iw - r->k) / r->stride + 1)
            return "pool geometry does not match its input";
        if (integer && r->obits != a->bits)
            return "pool changes the representation";
        return "";
    default: /* clamp */
        if (r->c != ic || r->h != ih || r->w != iw || (integer && r->obits != a->bits))
            return "clamp shape does not match its input";
        return "";
    }
}

static const char *check_weights(const struct qd_qm_rec *r, int integer)
{
    if (r->wfmt != QD_WFMT_INT)
        return integer || r->nscale || r->bfmt != QD_BFMT_F32 ? "float weights in an integer model"
                                                              : "";
    if (r->wbits < 2 || r->wbits > 16 || (r->nscale != 1 && r->nscale != r->c))
        return "weight bits or scale count";
    for (uint32_t c = 0; c < r->nscale; c++) {
        float s = rdf(r->scales + 4 * (size_t)c);
        if (!(s > 0) || !finite_f(s))
            return "weight scale not positive and finite";
    }
    if (integer && r->bfmt != QD_BFMT_I32 && r->bfmt != QD_BFMT_I64)
        return "integer bias format";
    if (!integer && r->bfmt != QD_BFMT_F32)
        return "float bias format";
    if (r->bfmt == QD_BFMT_I64)
        for (uint32_t c = 0; c < r->c; c++) {
            int64_t b;
            memcpy(&b, r->bias + 8 * (size_t)c, 8);
            if (b >= QD_QM_MAX_BIAS64 || b <= -QD_QM_MAX_BIAS64)
                return "int64 bias past the runtime's cap";
        }
    return "";
}

/* One record at blob + off, its fields against the tensors before it; fills ts[i + 1]. */
static qd_rt_err check_record(const uint8_t *blob, size_t *off, size_t end, uint32_t i,
                              const struct qd_qm_header *h, struct qd_qm_tshape *ts,
                              uint32_t *nq, struct qd_rt_diag *d)
{
    int32_t at = (int32_t)i;
    int integer = qd_qmode_integer((enum qd_qmode)h->mode);
    if (end - *off < QD_QM_RECORD)
        return qd_rt_fail(d, QD_RT_EFORMAT, at, "record runs past the end");
    struct qd_qm_rec r;
    rec_fields(blob + *off, &r);
    uint64_t pay = rec_payload(&r);
    if (pay > end - *off - QD_QM_RECORD)
        return qd_rt_fail(d, QD_RT_EFORMAT, at, "record payload runs past the end");
    rec_pointers(blob + *off, &r);
    *off += QD_QM_RECORD + (size_t)pay;
    if (r.op > QD_IOP_CLAMP || r.act > QD_ACT_RELU6)
        return qd_rt_fail(d, QD_RT_EFORMAT, at, "unknown op or activation");
    if (r.in0 < 0 || (uint32_t)r.in0 > i ||
        (r.op == QD_IOP_ADD && (r.in1 < 0 || (uint32_t)r.in1 > i)))
        return qd_rt_fail(d, QD_RT_EFORMAT, at, "input tensor out of range");
    if (!r.c || !r.h || !r.w)
        return qd_rt_fail(d, QD_RT_EFORMAT, at, "empty output shape");
    if ((uint64_t)r.c * r.h * r.w > QD_QM_MAX_ELEMS)
        return qd_rt_fail(d, QD_RT_ELIMIT, at, "output larger than the runtime's cap");
    if (integer ? (r.obits != 8 && r.obits != 16) : r.obits != 0)
        return qd_rt_fail(d, QD_RT_EFORMAT, at, "output bits");
    if (integer && (!(r.out_scale > 0) || !finite_f(r.out_scale)))
        return qd_rt_fail(d, QD_RT_EFORMAT, at, "output scale not positive and finite");
    if (integer) {
        int32_t lim = r.obits == 8 ? 128 : 32768;
        if (r.out_zero < -lim || r.out_zero >= lim)
            return qd_rt_fail(d, QD_RT_EFORMAT, at, "output zero point out of range");
    }
    int has_w = r.op == QD_IOP_CONV || r.op == QD_IOP_DENSE;
    if (has_w != (r.wfmt != QD_WFMT_NONE) || r.wfmt > QD_WFMT_F32 || r.bfmt > QD_BFMT_F32)
        return qd_rt_fail(d, QD_RT_EFORMAT, at, "weight/bias format");
    const char *why = check_geometry(&r, ts, integer);
    if (!why)
        return qd_rt_fail(d, QD_RT_ELIMIT, at, "more weights per channel than the runtime's cap");
    if (*why)
        return qd_rt_fail(d, QD_RT_EFORMAT, at, why);
    if (has_w && *(why = check_weights(&r, integer)))
        return qd_rt_fail(d, QD_RT_EFORMAT, at, why);
    *nq += has_w;
    ts[i + 1].c = r.c, ts[i + 1].h = r.h, ts[i + 1].w = r.w, ts[i + 1].bits = r.obits;
    ts[i + 1].len = (uint32_t)r.c * r.h * r.w;
    if (i + 1 == h->n && (ts[i + 1].len != h->nclass || r.op != QD_IOP_DENSE))
        return qd_rt_fail(d, QD_RT_EFORMAT, at, "the last op must be a dense layer of the classes");
    return QD_RT_OK;
}

qd_rt_err qd_qm_validate_into(const uint8_t *blob, size_t len, struct qd_qm_tshape *ts,
                              struct qd_rt_diag *d)
{
    uint32_t nn;
    QD_RT_TRY(qd_qm_count(blob, len, &nn, d));
    struct qd_qm_header h;
    qd_qm_header_read(blob, &h);
    QD_RT_TRY(check_header(blob, len, &h, d));
    int integer = qd_qmode_integer((enum qd_qmode)h.mode);
    size_t end = len - 4, off = QD_QM_HEADER + ((2 * (size_t)h.nq + 3) & ~(size_t)3);
    if (off > end)
        return qd_rt_fail(d, QD_RT_EFORMAT, -1, "policy runs past the end");
    ts[0].c = h.in_c, ts[0].h = h.in_h, ts[0].w = h.in_w, ts[0].bits = integer ? h.in_bits : 0;
    ts[0].len = (uint32_t)h.in_c * h.in_h * h.in_w;
    uint32_t nq = 0;
    for (uint32_t i = 0; i < h.n; i++)
        QD_RT_TRY(check_record(blob, &off, end, i, &h, ts, &nq, d));
    if (off != end)
        return qd_rt_fail(d, QD_RT_EFORMAT, -1, "trailing bytes after the last record");
    if (nq != h.nq)
        return qd_rt_fail(d, QD_RT_EFORMAT, -1, "weighted layers differ from the header's count");
    return QD_RT_OK;
}

/* Runtime: loading (validate, prepare multipliers, plan the activation arena) and the reference
 * kernels. No malloc, no libc allocation of any kind: every byte comes from the arena.
 * Overflow bounds: int8 x 8-bit weights accumulate in int64 here (int32 would hold K < 2^17);
 * 16-bit activations or weights always need int64 (K * 2^30). */
#include "quant/runtime.h"

#include <math.h>
#include <string.h>
#include <time.h>

#include "quant/igraph.h"
#include "quant/qm.h"
#include "quant/quantize.h"
#include "quant/runtime_impl.h"

/* Integer add: inputs are centred and shifted left before rescaling so the rescale keeps
 * precision. |x - z| <= 2^(bits) so (x - z) << shift stays below 2^31 after the <= 1/2 rescale:
 * 20 bits of headroom for int8 (TFLite's choice), 15 for int16 (ditto). */
#define ADD_SHIFT_8 20
#define ADD_SHIFT_16 15

void qd_quantize_multiplier(double m, int32_t *M, int32_t *shift)
{
    if (!(m > 0)) {
        *M = 0, *shift = 0;
        return;
    }
    int e;
    double q = frexp(m, &e);
    int64_t qi = llround(q * 2147483648.0);
    if (qi == 2147483648LL)
        qi /= 2, e++;
    if (e < -31)
        qi = 0, e = 0;
    if (e > 30)
        e = 30, qi = 2147483647; /* saturate absurd ratios */
    *M = (int32_t)qi;
    *shift = e;
}

int32_t qd_requant(int64_t acc, int32_t M, int32_t shift)
{
    if (acc >= INT32_MIN && acc <= INT32_MAX && shift <= 30) {
        /* the common case in int64: |acc * M| < 2^62, rounding term <= 2^61 */
        int64_t q = acc * M;
        int s = 31 - shift;
        q = (q + ((int64_t)1 << (s - 1))) >> s;
        return q > INT32_MAX ? INT32_MAX : q < INT32_MIN ? INT32_MIN : (int32_t)q;
    }
    __int128 p = (__int128)acc * M;
    int rs = 31 - shift;
    __int128 r = rs > 0 ? (p + ((__int128)1 << (rs - 1))) >> rs : p << -rs;
    if (r > INT32_MAX)
        return INT32_MAX;
    if (r < INT32_MIN)
        return INT32_MIN;
    return (int32_t)r;
}

/* ---------------------------------------------------------------- element access */

static inline int32_t ld(const void *p, size_t i, int bits)
{
    return bits == 16 ? ((const int16_t *)p)[i] : ((const int8_t *)p)[i];
}

static inline void st(void *p, size_t i, int bits, int32_t v)
{
    if (bits == 16)
        ((int16_t *)p)[i] = (int16_t)v;
    else
        ((int8_t *)p)[i] = (int8_t)v;
}

static inline int32_t clampi(int64_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static float rdf(const uint8_t *p, size_t i)
{
    float v;
    memcpy(&v, p + 4 * i, 4);
    return v;
}

int64_t rt_bias_at(const struct qd_qm_rec *r, int c)
{
    if (r->bfmt == QD_BFMT_I64) {
        int64_t v;
        memcpy(&v, r->bias + 8 * (size_t)c, 8);
        return v;
    }
    int32_t v;
    memcpy(&v, r->bias + 4 * (size_t)c, 4);
    return v;
}

static float wscale(const struct qd_qm_rec *r, int c)
{
    return rdf(r->scales, r->nscale == 1 ? 0 : (size_t)c);
}

/* One output channel's weights as int32 (integer formats) or float. */
void rt_unpack_int(const struct qd_qm_rec *r, int co, size_t per, int32_t *w)
{
    size_t base = (size_t)co * per;
    if (r->wbits == 8)
        for (size_t j = 0; j < per; j++)
            w[j] = (int8_t)r->weights[base + j];
    else
        for (size_t j = 0; j < per; j++)
            w[j] = qd_qm_unpack_one(r->weights, base + j, r->wbits);
}

static void unpack_float(const struct qd_qm_rec *r, int co, size_t per, float *w)
{
    size_t base = (size_t)co * per;
    if (r->wfmt == QD_WFMT_F32)
        memcpy(w, r->weights + 4 * base, 4 * per);
    else
        for (size_t j = 0; j < per; j++) {
            uint16_t hv;
            memcpy(&hv, r->weights + 2 * (base + j), 2);
            w[j] = qd_f16_to_f32(hv);
        }
}

static float act_f(float v, int act)
{
    if (act == QD_ACT_NONE)
        return v;
    v = v > 0 ? v : 0;
    return act == QD_ACT_RELU6 && v > 6 ? 6 : v;
}

/* ---------------------------------------------------------------- integer kernels */

/* Output columns ox whose input column ox*S - P + kx lies inside [0, W): [*lo, *hi). */
static inline void valid_cols(int P, int kx, int S, int W, int OW, int *lo, int *hi)
{
    *lo = (P - kx + S - 1) / S;
    *hi = (W - 1 + P - kx) / S + 1;
    if (*lo < 0)
        *lo = 0;
    if (*hi > OW)
        *hi = OW;
}

/* Convolution (dense is the 1x1 case over a 1x1 image), reference loops. */
static void conv_int(const struct qd_rt *rt, const struct rt_node *nd, int i)
{
    const struct qd_qm_rec *r = &nd->r;
    const struct rt_tensor *ti = &rt->t[r->in0], *to = &rt->t[i + 1];
    const void *x = rt->act + ti->off;
    void *y = rt->act + to->off;
    int dense = r->op == QD_IOP_DENSE;
    int H = dense ? 1 : ti->s.h, W = dense ? 1 : ti->s.w, C = dense ? (int)r->in_len : ti->s.c;
    int K = dense ? 1 : r->k, S = dense ? 1 : r->stride, P = dense ? 0 : r->pad;
    int G = dense ? 1 : r->groups, cig = C / G, cog = r->c / G;
    size_t per = (size_t)cig * K * K;
    int32_t *w = (int32_t *)rt->scratch, zx = ti->zero, zo = to->zero;
    int ib = ti->s.bits, ob = to->s.bits;
    for (int co = 0; co < r->c; co++) {
        rt_unpack_int(r, co, per, w);
        int g = co / cog;
        int64_t b = rt_bias_at(r, co);
        for (int oy = 0; oy < r->h; oy++)
            for (int ox = 0; ox < r->w; ox++) {
                int64_t acc = b;
                for (int ci = 0; ci < cig; ci++)
                    for (int ky = 0; ky < K; ky++) {
                        int iy = oy * S - P + ky;
                        if (iy < 0 || iy >= H)
                            continue;
                        for (int kx = 0; kx < K; kx++) {
                            int ix = ox * S - P + kx;
                            if (ix < 0 || ix >= W)
                                continue;
                            int32_t xv = ld(x, ((size_t)(g * cig + ci) * H + iy) * W + ix, ib);
                            acc += (int64_t)(xv - zx) * w[(ci * K + ky) * K + kx];
                        }
                    }
                int32_t v = qd_requant(acc, nd->mult[co], nd->shift[co]);
                v = clampi((int64_t)v + zo, nd->amin, nd->amax);
                st(y, ((size_t)co * r->h + oy) * r->w + ox, ob, v);
            }
    }
}

static void add_int(const struct qd_rt *rt, const struct rt_node *nd, int i)
{
    const struct rt_tensor *a = &rt->t[nd->r.in0], *b = &rt->t[nd->r.in1], *o = &rt->t[i + 1];
    const void *pa = rt->act + a->off, *pb = rt->act + b->off;
    void *py = rt->act + o->off;
    for (uint32_t j = 0; j < o->s.len; j++) {
        int64_t va = (int64_t)(ld(pa, j, a->s.bits) - a->zero) * ((int64_t)1 << nd->add_shift);
        int64_t vb = (int64_t)(ld(pb, j, b->s.bits) - b->zero) * ((int64_t)1 << nd->add_shift);
        int64_t s = (int64_t)qd_requant(va, nd->add_ma, nd->add_sa) +
                    qd_requant(vb, nd->add_mb, nd->add_sb);
        int32_t v = qd_requant(s, nd->add_mo, nd->add_so) + o->zero;
        st(py, j, o->s.bits, clampi(v, nd->amin, nd->amax));
    }
}

static void pool_int(const struct qd_rt *rt, const struct rt_node *nd, int i)
{
    const struct qd_qm_rec *r = &nd->r;
    const struct rt_tensor *ti = &rt->t[r->in0], *to = &rt->t[i + 1];
    const void *x = rt->act + ti->off;
    void *y = rt->act + to->off;
    int bits = ti->s.bits, H = ti->s.h, W = ti->s.w, K = r->k, S = r->stride;
    for (int c = 0; c < r->c; c++)
        for (int oy = 0; oy < r->h; oy++)
            for (int ox = 0; ox < r->w; ox++) {
                int64_t acc = r->op == QD_IOP_MAXPOOL ? INT32_MIN : 0;
                for (int ky = 0; ky < K; ky++)
                    for (int kx = 0; kx < K; kx++) {
                        int32_t v = ld(x, ((size_t)c * H + oy * S + ky) * W + ox * S + kx, bits);
                        if (r->op == QD_IOP_MAXPOOL)
                            acc = v > acc ? v : acc;
                        else
                            acc += v;
                    }
                if (r->op == QD_IOP_AVGPOOL) { /* round half away from zero */
                    int64_t n = (int64_t)K * K;
                    acc = acc >= 0 ? (acc + n / 2) / n : -((-acc + n / 2) / n);
                }
                st(y, ((size_t)c * r->h + oy) * r->w + ox, bits,
                   clampi((int32_t)acc, nd->amin, nd->amax));
            }
}

/* Max pooling on 8-bit activations, the common case, without the generic element access:
 * rows of the window are combined with max over contiguous bytes first (vectorizes), then
 * strided. Same result as pool_int (max is exact). */
static void maxpool_s8(const struct qd_rt *rt, const struct rt_node *nd, int i)
{
    const struct qd_qm_rec *r = &nd->r;
    const struct rt_tensor *ti = &rt->t[r->in0], *to = &rt->t[i + 1];
    const int8_t *x = (const int8_t *)(rt->act + ti->off);
    int8_t *y = (int8_t *)(rt->act + to->off);
    const int H = ti->s.h, W = ti->s.w, K = r->k, S = r->stride, OH = r->h, OW = r->w;
    int8_t lo = (int8_t)nd->amin, hi = (int8_t)nd->amax;
    int8_t *row = (int8_t *)rt->scratch; /* W bytes */
    for (int c = 0; c < r->c; c++)
        for (int oy = 0; oy < OH; oy++) {
            const int8_t *x0 = x + ((size_t)c * H + oy * S) * W;
            memcpy(row, x0, (size_t)W);
            for (int ky = 1; ky < K; ky++)
                for (int xx = 0; xx < W; xx++)
                    row[xx] = x0[ky * W + xx] > row[xx] ? x0[ky * W + xx] : row[xx];
            int8_t *yr = y + ((size_t)c * OH + oy) * OW;
            for (int ox = 0; ox < OW; ox++) {
                int8_t m = row[ox * S];
                for (int kx = 1; kx < K; kx++)
                    m = row[ox * S + kx] > m ? row[ox * S + kx] : m;
                yr[ox] = m < lo ? lo : m > hi ? hi : m;
            }
        }
}

static void clamp_int(const struct qd_rt *rt, const struct rt_node *nd, int i)
{
    const struct rt_tensor *ti = &rt->t[nd->r.in0], *to = &rt->t[i + 1];
    for (uint32_t j = 0; j < to->s.len; j++)
        st(rt->act + to->off, j, to->s.bits,
           clampi(ld(rt->act + ti->off, j, ti->s.bits), nd->amin, nd->amax));
}


/* Fast integer convolution for 8-bit activations and weights of at most 8 bits: the input is
 * re-centred once into int16 (x - zero, in [-255, 255]); each output channel accumulates whole
 * int32 output planes, one weight at a time over contiguous rows (vectorizes; zero weights,
 * frequent at 2-4 bits, are skipped). |acc| <= 255 * 128 * K, safe in int32 for K < 65536
 * (checked at load). Bit-exact with conv_int: same products, same sums, same requantization. */
static void conv_int8_fast(const struct qd_rt *rt, const struct rt_node *nd, int i)
{
    const struct qd_qm_rec *r = &nd->r;
    const struct rt_tensor *ti = &rt->t[r->in0], *to = &rt->t[i + 1];
    const int8_t *x = (const int8_t *)(rt->act + ti->off);
    void *y = rt->act + to->off;
    int dense = r->op == QD_IOP_DENSE;
    int H = dense ? 1 : ti->s.h, W = dense ? 1 : ti->s.w, C = dense ? (int)r->in_len : ti->s.c;
    int K = dense ? 1 : r->k, S = dense ? 1 : r->stride, P = dense ? 0 : r->pad;
    int G = dense ? 1 : r->groups, cig = C / G, cog = r->c / G, OH = r->h, OW = r->w;
    size_t per = (size_t)cig * K * K, ohw = (size_t)OH * OW;
    /* scratch: weights (per int32), centred input (ti len int16), accumulators (ohw int32) */
    int32_t *w = (int32_t *)rt->scratch;
    int16_t *xs = (int16_t *)(rt->scratch + ALIGN(per * 4));
    int32_t *acc = (int32_t *)((uint8_t *)xs + ALIGN((size_t)ti->s.len * 2));
    int32_t zx = ti->zero, zo = to->zero;
    for (uint32_t j = 0; j < ti->s.len; j++)
        xs[j] = (int16_t)(x[j] - zx);
    for (int co = 0; co < r->c; co++) {
        rt_unpack_int(r, co, per, w);
        int g = co / cog;
        int32_t b = (int32_t)rt_bias_at(r, co);
        if (dense) {
            int32_t a = 0;
            for (size_t k = 0; k < per; k++)
                a += xs[k] * w[k];
            acc[0] = a;
        } else {
            memset(acc, 0, sizeof(int32_t) * ohw);
            for (int ci = 0; ci < cig; ci++)
                for (int ky = 0; ky < K; ky++)
                    for (int kx = 0; kx < K; kx++) {
                        int32_t wv = w[(ci * K + ky) * K + kx];
                        if (!wv)
                            continue;
                        int lo, hi;
                        valid_cols(P, kx, S, W, OW, &lo, &hi);
                        const int16_t *xc = xs + (size_t)(g * cig + ci) * H * W;
                        for (int oy = 0; oy < OH; oy++) {
                            int iy = oy * S - P + ky;
                            if (iy < 0 || iy >= H)
                                continue;
                            const int16_t *xr = xc + (size_t)iy * W - P + kx;
                            int32_t *ar = acc + (size_t)oy * OW;
                            if (S == 1)
                                for (int ox = lo; ox < hi; ox++)
                                    ar[ox] += wv * xr[ox];
                            else
                                for (int ox = lo; ox < hi; ox++)
                                    ar[ox] += wv * xr[ox * S];
                        }
                    }
        }
        int32_t M = nd->mult[co], sh = nd->shift[co];
        for (size_t j = 0; j < ohw; j++) {
            int32_t v = qd_requant((int64_t)acc[j] + b, M, sh);
            st(y, (size_t)co * ohw + j, to->s.bits, clampi((int64_t)v + zo, nd->amin, nd->amax));
        }
    }
}

static int fast_ok(const struct qd_rt *rt, const struct rt_node *nd)
{
    const struct qd_qm_rec *r = &nd->r;
    size_t per = r->op == QD_IOP_DENSE ? r->in_len : (size_t)(r->cin / r->groups) * r->k * r->k;
    return rt->t[r->in0].s.bits == 8 && r->wbits <= 8 && r->bfmt == QD_BFMT_I32 && per < 65536;
}

/* ---------------------------------------------------------------- float kernels */

static void conv_float(const struct qd_rt *rt, const struct rt_node *nd, int i)
{
    const struct qd_qm_rec *r = &nd->r;
    const struct rt_tensor *ti = &rt->t[r->in0], *to = &rt->t[i + 1];
    const float *x = (const float *)(rt->act + ti->off);
    float *y = (float *)(rt->act + to->off);
    int dense = r->op == QD_IOP_DENSE;
    int H = dense ? 1 : ti->s.h, W = dense ? 1 : ti->s.w, C = dense ? (int)r->in_len : ti->s.c;
    int K = dense ? 1 : r->k, S = dense ? 1 : r->stride, P = dense ? 0 : r->pad;
    int G = dense ? 1 : r->groups, cig = C / G, cog = r->c / G;
    size_t per = (size_t)cig * K * K;
    int dyn = r->wfmt == QD_WFMT_INT;
    /* dynamic range: quantize the input on the fly, asymmetric int8 over this sample */
    int8_t *xq = NULL;
    float xs = 1;
    int32_t xz = 0;
    int32_t *wi = (int32_t *)rt->scratch;
    float *wf = (float *)rt->scratch;
    if (dyn) {
        xq = (int8_t *)(rt->scratch + ALIGN(per * 4));
        float lo = 0, hi = 0;
        for (uint32_t j = 0; j < ti->s.len; j++) {
            lo = x[j] < lo ? x[j] : lo;
            hi = x[j] > hi ? x[j] : hi;
        }
        struct qd_qparam q;
        qd_qparam_from_range(lo, hi > lo ? hi : lo + 1e-6f, 8, QD_QSCHEME_ASYM, &q);
        xs = q.scale, xz = q.zero;
        for (uint32_t j = 0; j < ti->s.len; j++)
            xq[j] = (int8_t)qd_quantize(x[j], &q);
    }
    for (int co = 0; co < r->c; co++) {
        if (dyn)
            rt_unpack_int(r, co, per, wi);
        else
            unpack_float(r, co, per, wf);
        int g = co / cog;
        float b = rdf(r->bias, (size_t)co), sc = dyn ? xs * wscale(r, co) : 1;
        for (int oy = 0; oy < r->h; oy++)
            for (int ox = 0; ox < r->w; ox++) {
                float facc = 0;
                int64_t iacc = 0;
                for (int ci = 0; ci < cig; ci++)
                    for (int ky = 0; ky < K; ky++) {
                        int iy = oy * S - P + ky;
                        if (iy < 0 || iy >= H)
                            continue;
                        for (int kx = 0; kx < K; kx++) {
                            int ix = ox * S - P + kx;
                            if (ix < 0 || ix >= W)
                                continue;
                            size_t xi = ((size_t)(g * cig + ci) * H + iy) * W + ix;
                            int wk = (ci * K + ky) * K + kx;
                            if (dyn)
                                iacc += (int64_t)(xq[xi] - xz) * wi[wk];
                            else
                                facc += x[xi] * wf[wk];
                        }
                    }
                float v = dyn ? (float)iacc * sc + b : facc + b;
                y[((size_t)co * r->h + oy) * r->w + ox] = act_f(v, r->act);
            }
    }
}

/* Fast float convolution (f32 and fp16 weights): one output channel at a time, whole output
 * planes accumulated one weight at a time over contiguous rows, like conv_int8_fast. Equal to
 * conv_float up to float summation order. */
static void conv_float_fast(const struct qd_rt *rt, const struct rt_node *nd, int i)
{
    const struct qd_qm_rec *r = &nd->r;
    const struct rt_tensor *ti = &rt->t[r->in0], *to = &rt->t[i + 1];
    const float *x = (const float *)(rt->act + ti->off);
    float *y = (float *)(rt->act + to->off);
    int dense = r->op == QD_IOP_DENSE;
    int H = dense ? 1 : ti->s.h, W = dense ? 1 : ti->s.w, C = dense ? (int)r->in_len : ti->s.c;
    int K = dense ? 1 : r->k, S = dense ? 1 : r->stride, P = dense ? 0 : r->pad;
    int G = dense ? 1 : r->groups, cig = C / G, cog = r->c / G, OH = r->h, OW = r->w;
    size_t per = (size_t)cig * K * K, ohw = (size_t)OH * OW;
    float *w = (float *)rt->scratch;
    for (int co = 0; co < r->c; co++) {
        unpack_float(r, co, per, w);
        int g = co / cog;
        float b = rdf(r->bias, (size_t)co), *acc = y + (size_t)co * ohw;
        if (dense) {
            float a = 0;
            for (size_t k = 0; k < per; k++)
                a += x[k] * w[k];
            acc[0] = a;
        } else {
            for (size_t j = 0; j < ohw; j++)
                acc[j] = 0;
            for (int ci = 0; ci < cig; ci++)
                for (int ky = 0; ky < K; ky++)
                    for (int kx = 0; kx < K; kx++) {
                        float wv = w[(ci * K + ky) * K + kx];
                        int lo, hi;
                        valid_cols(P, kx, S, W, OW, &lo, &hi);
                        const float *xc = x + (size_t)(g * cig + ci) * H * W;
                        for (int oy = 0; oy < OH; oy++) {
                            int iy = oy * S - P + ky;
                            if (iy < 0 || iy >= H)
                                continue;
                            const float *xr = xc + (size_t)iy * W - P + kx;
                            float *ar = acc + (size_t)oy * OW;
                            if (S == 1)
                                for (int ox = lo; ox < hi; ox++)
                                    ar[ox] += wv * xr[ox];
                            else
                                for (int ox = lo; ox < hi; ox++)
                                    ar[ox] += wv * xr[ox * S];
                        }
                    }
        }
        for (size_t j = 0; j < ohw; j++)
            acc[j] = act_f(acc[j] + b, r->act);
    }
}

static void other_float(const struct qd_rt *rt, const struct rt_node *nd, int i)
{
    const struct qd_qm_rec *r = &nd->r;
    const struct rt_tensor *ti = &rt->t[r->in0], *to = &rt->t[i + 1];
    const float *x = (const float *)(rt->act + ti->off);
    float *y = (float *)(rt->act + to->off);
    if (r->op == QD_IOP_ADD) {
        const float *b = (const float *)(rt->act + rt->t[r->in1].off);
        for (uint32_t j = 0; j < to->s.len; j++)
            y[j] = act_f(x[j] + b[j], r->act);
    } else if (r->op == QD_IOP_CLAMP) {
        for (uint32_t j = 0; j < to->s.len; j++)
            y[j] = act_f(x[j], r->act);
    } else {
        int H = ti->s.h, W = ti->s.w, K = r->k, S = r->stride;
        for (int c = 0; c < r->c; c++)
            for (int oy = 0; oy < r->h; oy++)
                for (int ox = 0; ox < r->w; ox++) {
                    float acc = r->op == QD_IOP_MAXPOOL ? -INFINITY : 0;
                    for (int ky = 0; ky < K; ky++)
                        for (int kx = 0; kx < K; kx++) {
                            float v = x[((size_t)c * H + oy * S + ky) * W + ox * S + kx];
                            acc = r->op == QD_IOP_MAXPOOL ? (v > acc ? v : acc) : acc + v;
                        }
                    if (r->op == QD_IOP_AVGPOOL)
                        acc /= (float)(K * K);
                    y[((size_t)c * r->h + oy) * r->w + ox] = act_f(acc, r->act);
                }
    }
}

/* ---------------------------------------------------------------- loading */

static size_t tables_bytes(uint32_t n)
{
    return ALIGN(sizeof(struct qd_rt)) + ALIGN(n * sizeof(struct rt_node)) +
           ALIGN((n + 1) * sizeof(struct rt_tensor));
}

/* Activation arena: tensors live from their producing step to their last reader; each is
 * placed at the lowest offset clear of every placed tensor whose lifetime overlaps, largest
 * first. Deterministic; O(n^2) in the node count. */
static size_t plan(struct qd_rt *rt)
{
    int n = rt->n;
    for (int t = 0; t <= n; t++)
        rt->t[t].placed = 0;
    size_t top = 0;
    for (int k = 0; k <= n; k++) {
        int best = -1;
        for (int t = 0; t <= n; t++)
            if (!rt->t[t].placed && (best < 0 || rt->t[t].bytes > rt->t[best].bytes))
                best = t;
        struct rt_tensor *b = &rt->t[best];
        size_t off = 0;
        for (int again = 1; again;) {
            again = 0;
            for (int t = 0; t <= n; t++) {
                const struct rt_tensor *o = &rt->t[t];
                /* tensor t is written at step t - 1 (the input before step 0) */
                int lives = (t - 1) <= b->last && (best - 1) <= o->last;
                if (!o->placed || !lives)
                    continue;
                if (off < o->off + ALIGN(o->bytes) && o->off < off + ALIGN(b->bytes)) {
                    off = o->off + ALIGN(o->bytes);
                    again = 1;
                }
            }
        }
        b->off = off;
        b->placed = 1;
        if (off + ALIGN(b->bytes) > top)
            top = off + ALIGN(b->bytes);
    }
    return top;
}

static void prepare_node(struct qd_rt *rt, struct rt_node *nd, int i)
{
    const struct qd_qm_rec *r = &nd->r;
    struct rt_tensor *ti = &rt->t[r->in0], *to = &rt->t[i + 1];
    if (!rt->integer)
        return;
    int32_t qmin = to->s.bits == 16 ? -32768 : -128, qmax = to->s.bits == 16 ? 32767 : 127;
    nd->amin = qmin, nd->amax = qmax;
    if (r->act != QD_ACT_NONE) {
        nd->amin = clampi(to->zero, qmin, qmax);
        if (r->act == QD_ACT_RELU6) {
            double q6 = round(6.0 / to->scale) + to->zero;
            nd->amax = q6 < qmax ? (int32_t)q6 : qmax;
        }
    }
    if (r->op == QD_IOP_CONV || r->op == QD_IOP_DENSE) {
        for (int c = 0; c < r->c; c++)
            qd_quantize_multiplier((double)ti->scale * wscale(r, c) / to->scale, &nd->mult[c],
                                   &nd->shift[c]);
    } else if (r->op == QD_IOP_ADD) {
        const struct rt_tensor *tb = &rt->t[r->in1];
        double m2 = 2.0 * fmax(ti->scale, tb->scale);
        nd->add_shift = (ti->s.bits == 16 || tb->s.bits == 16) ? ADD_SHIFT_16 : ADD_SHIFT_8;
        qd_quantize_multiplier(ti->scale / m2, &nd->add_ma, &nd->add_sa);
        qd_quantize_multiplier(tb->scale / m2, &nd->add_mb, &nd->add_sb);
        qd_quantize_multiplier(m2 / ((double)(1 << nd->add_shift) * to->scale), &nd->add_mo,
                               &nd->add_so);
    }
}

qd_err qd_rt_load(const uint8_t *blob, size_t len, void *arena, size_t arena_len, qd_rt_t **out,
                  size_t *need)
{
    uint32_t n;
    size_t dummy;
    if (!need)
        need = &dummy;
    *need = 0;
    QD_TRY(qd_qm_count(blob, len, &n));
    size_t fixed = tables_bytes(n);
    if (((uintptr_t)arena & 15) || arena_len < fixed) {
        *need = fixed;
        return qd_seterr(QD_ENOMEM, "runtime: arena of %zu bytes (16-aligned) too small for the "
                                    "tables: at least %zu",
                         arena_len, fixed);
    }
    uint8_t *base = arena;
    struct qd_rt *rt = (struct qd_rt *)base;
    memset(rt, 0, sizeof *rt);
    rt->nodes = (struct rt_node *)(base + ALIGN(sizeof *rt));
    rt->t = (struct rt_tensor *)((uint8_t *)rt->nodes + ALIGN(n * sizeof(struct rt_node)));
    memset(rt->t, 0, (n + 1) * sizeof(struct rt_tensor));
    /* Validate into the node table's memory (n rt_nodes hold n + 1 shapes for any n >= 1),
     * then copy the shapes into the tensor table; records overwrite the node table after. */
    struct qd_qm_tshape *shapes = (struct qd_qm_tshape *)rt->nodes;
    QD_ASSERT(n * sizeof(struct rt_node) >= (n + 1) * sizeof(struct qd_qm_tshape));
    QD_TRY(qd_qm_validate_into(blob, len, shapes));
    for (uint32_t t = 0; t <= n; t++)
        rt->t[t].s = shapes[t];
    qd_qm_header_read(blob, &rt->h);
    rt->blob = blob;
    rt->n = (int)n;
    rt->integer = qd_qmode_integer((enum qd_qmode)rt->h.mode);
    const uint8_t *p = rt->h.records;
    size_t mult_bytes = 0, scratch = 0;
    for (int t = 0; t <= rt->n; t++) {
        struct rt_tensor *ts = &rt->t[t];
        ts->bytes = (size_t)ts->s.len * (ts->s.bits ? ts->s.bits / 8 : 4);
        ts->last = t == rt->n ? rt->n : -1;
    }
    rt->t[0].scale = rt->h.in_scale;
    rt->t[0].zero = rt->h.in_zero;
    for (int i = 0; i < rt->n; i++) {
        struct rt_node *nd = &rt->nodes[i];
        memset(nd, 0, sizeof *nd);
        qd_qm_record_read(&p, &nd->r);
        const struct qd_qm_rec *r = &nd->r;
        rt->t[i + 1].scale = r->out_scale;
        rt->t[i + 1].zero = r->out_zero;
        if (rt->t[r->in0].last < i)
            rt->t[r->in0].last = i;
        if (r->op == QD_IOP_ADD && rt->t[r->in1].last < i)
            rt->t[r->in1].last = i;
        if (r->wfmt) {
            int dense = r->op == QD_IOP_DENSE;
            size_t per = dense ? r->in_len : (size_t)(r->cin / r->groups) * r->k * r->k;
            size_t s = ALIGN(per * 4);
            if (r->wfmt == QD_WFMT_INT && !rt->integer) /* dynamic: quantized input copy */
                s += ALIGN(rt->t[r->in0].s.len);
            if (rt->integer) /* fast path: centred input and accumulator planes */
                s += ALIGN((size_t)rt->t[r->in0].s.len * 2) + ALIGN((size_t)r->h * r->w * 4);
            scratch = s > scratch ? s : scratch;
            if (rt->integer)
                mult_bytes += 2 * ALIGN(4 * (size_t)r->c);
        }
    }
    rt->act_bytes = plan(rt);
    rt->scratch_bytes = scratch;
    rt->used = fixed + mult_bytes + rt->act_bytes + scratch;
    *need = rt->used;
    if (arena_len < rt->used)
        return qd_seterr(QD_ENOMEM, "runtime: arena of %zu bytes too small, need %zu", arena_len,
                         rt->used);
    uint8_t *q = base + fixed;
    for (int i = 0; i < rt->n; i++) {
        struct rt_node *nd = &rt->nodes[i];
        if (rt->integer && nd->r.wfmt) {
            nd->mult = (int32_t *)q;
            q += ALIGN(4 * (size_t)nd->r.c);
            nd->shift = (int32_t *)q;
            q += ALIGN(4 * (size_t)nd->r.c);
        }
        prepare_node(rt, nd, i);
    }
    rt->act = q;
    rt->scratch = q + rt->act_bytes;
    *out = rt;
    return QD_OK;
}

size_t qd_rt_arena_used(const qd_rt_t *rt)
{
    return rt->used;
}

size_t qd_rt_activation_bytes(const qd_rt_t *rt)
{
    return rt->act_bytes;
}

void qd_rt_set_reference(qd_rt_t *rt, int on)
{
    rt->reference = on;
}

int qd_rt_isa_best(void)
{
    return rt_cpu_has(QD_RT_ISA_AVX512VNNI) ? QD_RT_ISA_AVX512VNNI
           : rt_cpu_has(QD_RT_ISA_AVX2)     ? QD_RT_ISA_AVX2
                                            : QD_RT_ISA_PORTABLE;
}

const char *qd_rt_isa_name(int isa)
{
    static const char *names[] = {"portable", "avx2", "avx512vnni", "auto"};
    return isa >= 0 && isa <= QD_RT_ISA_AUTO ? names[isa] : "?";
}

int qd_rt_isa(const qd_rt_t *rt)
{
    return rt->acc ? rt->isa : QD_RT_ISA_PORTABLE;
}

void qd_rt_set_profile(qd_rt_t *rt, uint64_t *ns)
{
    rt->prof = ns;
}

static uint64_t ns_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int qd_rt_accel_layers(const qd_rt_t *rt)
{
    int k = 0;
    for (int i = 0; rt->acc && i < rt->n; i++)
        k += rt->acc[i].on;
    return k;
}

#define ALIGN64(x) (((x) + 63) & ~(size_t)63)

static qd_err accel_isa(int *isa)
{
    if (*isa == QD_RT_ISA_AUTO)
        *isa = qd_rt_isa_best();
    if (*isa < 0 || *isa > QD_RT_ISA_AVX512VNNI)
        return qd_seterr(QD_EINVAL, "runtime: unknown ISA %d", *isa);
    if (!rt_cpu_has(*isa))
        return qd_seterr(QD_EINVAL, "runtime: this CPU has no %s", qd_rt_isa_name(*isa));
    return QD_OK;
}

qd_err qd_rt_accel_size(const qd_rt_t *rt, int isa, size_t *need)
{
    *need = 0;
    QD_TRY(accel_isa(&isa));
    if (isa == QD_RT_ISA_PORTABLE)
        return QD_OK;
    size_t packed = ALIGN64((size_t)rt->n * sizeof(struct rt_accel)), scratch = 0;
    for (int i = 0; i < rt->n; i++)
        if (rt_accel_eligible(rt, i)) {
            packed += rt_accel_node_bytes(rt, i, isa);
            size_t s = rt_accel_scratch_bytes(rt, i, isa);
            scratch = s > scratch ? s : scratch;
        }
    *need = packed + scratch;
    return QD_OK;
}

qd_err qd_rt_accel(qd_rt_t *rt, int isa, void *buf, size_t len)
{
    size_t need;
    QD_TRY(qd_rt_accel_size(rt, isa, &need));
    if (isa == QD_RT_ISA_AUTO)
        isa = qd_rt_isa_best();
    rt->acc = NULL;
    if (isa == QD_RT_ISA_PORTABLE)
        return QD_OK;
    if (((uintptr_t)buf & 63) || len < need)
        return qd_seterr(QD_ENOMEM, "runtime: acceleration buffer of %zu bytes (64-aligned) too "
                                    "small, need %zu", len, need);
    struct rt_accel *acc = buf;
    memset(acc, 0, (size_t)rt->n * sizeof *acc);
    uint8_t *p = (uint8_t *)buf + ALIGN64((size_t)rt->n * sizeof *acc);
    for (int i = 0; i < rt->n; i++)
        if (rt_accel_eligible(rt, i))
            rt_accel_pack(rt, i, isa, &acc[i], &p);
    rt->accel_scratch = p;
    rt->isa = isa;
    rt->acc = acc;
    return QD_OK;
}

int qd_rt_classes(const qd_rt_t *rt)
{
    return rt->h.nclass;
}

qd_err qd_rt_run(qd_rt_t *rt, const uint8_t *pixels, float *logits)
{
    const struct qd_qm_header *h = &rt->h;
    struct rt_tensor *t0 = &rt->t[0];
    size_t hw = (size_t)h->in_h * h->in_w;
    struct qd_qparam iq = {t0->scale, t0->zero, t0->s.bits == 16 ? -32768 : -128,
                           t0->s.bits == 16 ? 32767 : 127, t0->s.bits};
    for (int c = 0; c < h->in_c; c++)
        for (size_t j = 0; j < hw; j++) {
            size_t k = c * hw + j;
            float v = (pixels[k] / 255.0f - h->mean[c]) / h->std[c];
            if (rt->integer)
                st(rt->act + t0->off, k, t0->s.bits, qd_quantize(v, &iq));
            else
                ((float *)(rt->act + t0->off))[k] = v;
        }
    uint64_t tp = rt->prof ? ns_now() : 0;
    for (int i = 0; i < rt->n; i++) {
        if (rt->prof && i) {
            uint64_t t1 = ns_now();
            rt->prof[i - 1] += t1 - tp;
            tp = t1;
        }
        const struct rt_node *nd = &rt->nodes[i];
        int op = nd->r.op;
        if (!rt->integer) {
            if ((op == QD_IOP_CONV || op == QD_IOP_DENSE) && !rt->reference &&
                nd->r.wfmt != QD_WFMT_INT)
                conv_float_fast(rt, nd, i);
            else if (op == QD_IOP_CONV || op == QD_IOP_DENSE)
                conv_float(rt, nd, i);
            else
                other_float(rt, nd, i);
            continue;
        }
        switch (op) {
        case QD_IOP_CONV:
        case QD_IOP_DENSE:
            if (!rt->reference && rt->acc && rt->acc[i].on)
                rt_accel_conv(rt, i);
            else if (!rt->reference && fast_ok(rt, nd))
                conv_int8_fast(rt, nd, i);
            else
                conv_int(rt, nd, i);
            break;
        case QD_IOP_ADD:
            if (rt->reference || !rt->acc || !rt_accel_add(rt, i))
                add_int(rt, nd, i);
            break;
        case QD_IOP_MAXPOOL:
            if (!rt->reference && rt->t[nd->r.in0].s.bits == 8 &&
                rt->scratch_bytes >= (size_t)rt->t[nd->r.in0].s.w)
                maxpool_s8(rt, nd, i);
            else
                pool_int(rt, nd, i);
            break;
        case QD_IOP_AVGPOOL:
            pool_int(rt, nd, i);
            break;
        default:
            clamp_int(rt, nd, i);
        }
    }
    if (rt->prof)
        rt->prof[rt->n - 1] += ns_now() - tp;
    const struct rt_tensor *o = &rt->t[rt->n];
    for (int k = 0; k < h->nclass; k++)
        logits[k] = rt->integer ? o->scale * (float)(ld(rt->act + o->off, k, o->s.bits) - o->zero)
                                : ((const float *)(rt->act + o->off))[k];
    return QD_OK;
}

/* The runtime's integer kernels: plain reference loops (*_ref) and the portable fast kernels
 * tested bit-exact against them (tests/test_qm.c). Accumulators are int64 in the reference
 * convolution: per-channel weight counts are capped at 2^24 (qm_format.h), 16-bit inputs and
 * weights give products below 2^31, and int64 biases below 2^62, so the sum cannot wrap. */
#include "rt_impl.h"

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

/* Convolution (dense is the 1x1 case over a 1x1 image), reference loops. */
void rt_conv_int_ref(const struct qd_rt *rt, int i)
{
    const struct rt_node *nd = &rt->nodes[i];
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
                            int32_t xv = rt_ld(x, ((size_t)(g * cig + ci) * H + iy) * W + ix, ib);
                            acc += (int64_t)(xv - zx) * w[(ci * K + ky) * K + kx];
                        }
                    }
                int32_t v = qd_requant(acc, nd->mult[co], nd->shift[co]);
                v = rt_clampi((int64_t)v + zo, nd->amin, nd->amax);
                rt_st(y, ((size_t)co * r->h + oy) * r->w + ox, ob, v);
            }
    }
}

void rt_add_int_ref(const struct qd_rt *rt, int i)
{
    const struct rt_node *nd = &rt->nodes[i];
    const struct rt_tensor *a = &rt->t[nd->r.in0], *b = &rt->t[nd->r.in1], *o = &rt->t[i + 1];
    const void *pa = rt->act + a->off, *pb = rt->act + b->off;
    void *py = rt->act + o->off;
    for (uint32_t j = 0; j < o->s.len; j++) {
        int64_t va = (int64_t)(rt_ld(pa, j, a->s.bits) - a->zero) * ((int64_t)1 << nd->add_shift);
        int64_t vb = (int64_t)(rt_ld(pb, j, b->s.bits) - b->zero) * ((int64_t)1 << nd->add_shift);
        int64_t s = (int64_t)qd_requant(va, nd->add_ma, nd->add_sa) +
                    qd_requant(vb, nd->add_mb, nd->add_sb);
        /* the zero point added in 64 bits: a saturated requantization stays saturated */
        int64_t v = (int64_t)qd_requant(s, nd->add_mo, nd->add_so) + o->zero;
        rt_st(py, j, o->s.bits, rt_clampi(v, nd->amin, nd->amax));
    }
}

/* The add on 8-bit tensors, the common case: rt_add_int_ref's arithmetic with the
 * requantizations inline (rt_requant: the same results) and without the generic element
 * access. (x - z) << 20 stays below 2^28, so every intermediate is in rt_requant's int32 range
 * or takes its exact fallback. */
void rt_add_s8(const struct qd_rt *rt, int i)
{
    const struct rt_node *nd = &rt->nodes[i];
    const struct rt_tensor *a = &rt->t[nd->r.in0], *b = &rt->t[nd->r.in1], *o = &rt->t[i + 1];
    const int8_t *pa = (const int8_t *)(rt->act + a->off), *pb = (const int8_t *)(rt->act + b->off);
    int8_t *py = (int8_t *)(rt->act + o->off);
    int32_t za = a->zero, zb = b->zero, zo = o->zero, sh = nd->add_shift;
    for (uint32_t j = 0; j < o->s.len; j++) {
        int32_t va = (pa[j] - za) * (1 << sh), vb = (pb[j] - zb) * (1 << sh);
        int64_t s = (int64_t)rt_requant(va, nd->add_ma, nd->add_sa) +
                    rt_requant(vb, nd->add_mb, nd->add_sb);
        int64_t v = (int64_t)rt_requant(s, nd->add_mo, nd->add_so) + zo;
        py[j] = (int8_t)rt_clampi(v, nd->amin, nd->amax);
    }
}

int rt_add_s8_ok(const struct qd_rt *rt, int i)
{
    const struct rt_node *nd = &rt->nodes[i];
    return rt->t[nd->r.in0].s.bits == 8 && rt->t[nd->r.in1].s.bits == 8 &&
           rt->t[i + 1].s.bits == 8 && nd->add_shift <= 20;
}

void rt_pool_int_ref(const struct qd_rt *rt, int i)
{
    const struct rt_node *nd = &rt->nodes[i];
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
                        int32_t v = rt_ld(x, ((size_t)c * H + oy * S + ky) * W + ox * S + kx, bits);
                        if (r->op == QD_IOP_MAXPOOL)
                            acc = v > acc ? v : acc;
                        else
                            acc += v;
                    }
                if (r->op == QD_IOP_AVGPOOL) { /* round half away from zero */
                    int64_t n = (int64_t)K * K;
                    acc = acc >= 0 ? (acc + n / 2) / n : -((-acc + n / 2) / n);
                }
                rt_st(y, ((size_t)c * r->h + oy) * r->w + ox, bits,
                   rt_clampi((int32_t)acc, nd->amin, nd->amax));
            }
}

/* Max pooling on 8-bit activations, the common case, without the generic element access:
 * rows of the window are combined with max over contiguous bytes first (vectorizes), then
 * strided. Same result as pool_int (max is exact). */
void rt_maxpool_s8(const struct qd_rt *rt, int i)
{
    const struct rt_node *nd = &rt->nodes[i];
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

void rt_clamp_int_ref(const struct qd_rt *rt, int i)
{
    const struct rt_node *nd = &rt->nodes[i];
    const struct rt_tensor *ti = &rt->t[nd->r.in0], *to = &rt->t[i + 1];
    for (uint32_t j = 0; j < to->s.len; j++)
        rt_st(rt->act + to->off, j, to->s.bits,
           rt_clampi(rt_ld(rt->act + ti->off, j, ti->s.bits), nd->amin, nd->amax));
}


/* Fast integer convolution for 8-bit activations and weights of at most 8 bits: the input is
 * re-centred once into int16 (x - zero, in [-255, 255]); each output channel accumulates whole
 * int32 output planes, one weight at a time over contiguous rows (vectorizes; zero weights,
 * frequent at 2-4 bits, are skipped). |acc| <= 255 * 128 * K, safe in int32 for K < 65536
 * (checked at load). Bit-exact with conv_int: same products, same sums, same requantization. */
void rt_conv_s8_fast(const struct qd_rt *rt, int i)
{
    const struct rt_node *nd = &rt->nodes[i];
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
                        rt_valid_cols(P, kx, S, W, OW, &lo, &hi);
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
            rt_st(y, (size_t)co * ohw + j, to->s.bits, rt_clampi((int64_t)v + zo, nd->amin, nd->amax));
        }
    }
}

int rt_conv_s8_fast_ok(const struct qd_rt *rt, int i)
{
    const struct rt_node *nd = &rt->nodes[i];
    const struct qd_qm_rec *r = &nd->r;
    size_t per = r->op == QD_IOP_DENSE ? r->in_len : (size_t)(r->cin / r->groups) * r->k * r->k;
    return rt->t[r->in0].s.bits == 8 && r->wbits <= 8 && r->bfmt == QD_BFMT_I32 && per < 65536;
}


int rt_maxpool_s8_ok(const struct qd_rt *rt, int i)
{
    const struct rt_tensor *ti = &rt->t[rt->nodes[i].r.in0];
    return ti->s.bits == 8 && rt->scratch_bytes >= (size_t)ti->s.w;
}

/* The runtime's float kernels: fp32 and fp16 weights, and dynamic range (int8 weights, the
 * input quantized per sample on the fly). Compiled only with QD_RT_FLOAT (runtime.h); no libm:
 * the only rounding is qd_quantize's. */
#include "rt_impl.h"

#if QD_RT_FLOAT

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


void rt_conv_f32_ref(const struct qd_rt *rt, int i)
{
    const struct rt_node *nd = &rt->nodes[i];
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
        qd_qparam_make(lo, hi > lo ? hi : lo + 1e-6f, 8, QD_QSCHEME_ASYM, &q);
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
        float b = rt_rdf(r->bias, (size_t)co), sc = dyn ? xs * rt_wscale(r, co) : 1;
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
void rt_conv_f32_fast(const struct qd_rt *rt, int i)
{
    const struct rt_node *nd = &rt->nodes[i];
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
        float b = rt_rdf(r->bias, (size_t)co), *acc = y + (size_t)co * ohw;
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
                        rt_valid_cols(P, kx, S, W, OW, &lo, &hi);
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

void rt_other_f32_ref(const struct qd_rt *rt, int i)
{
    const struct rt_node *nd = &rt->nodes[i];
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
                    /* max starts from the window's first element (no -INFINITY: no libm) */
                    float acc = r->op == QD_IOP_MAXPOOL
                                    ? x[((size_t)c * H + oy * S) * W + ox * S]
                                    : 0;
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

#else
typedef int rt_no_float_kernels; /* ISO C wants a declaration in every file */
#endif

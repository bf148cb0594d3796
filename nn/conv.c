/* 2-D convolution, float32 NCHW: reference loops, im2col + OpenBLAS sgemm, and a direct
 * depthwise kernel. Workload: the bulk of training time; the fast path runs one image per OpenMP
 * thread with a private im2col buffer (K x OH*OW floats) and, in backward, a private weight
 * gradient that is summed over threads in a fixed order, so results do not depend on scheduling. */
#include "nn/kernels.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

void openblas_set_num_threads(int);

static int n_threads = 1;

void qd_kernels_init(int threads)
{
    openblas_set_num_threads(1);
    if (threads > 0)
        omp_set_num_threads(threads);
    n_threads = omp_get_max_threads();
}

int qd_kernels_threads(void)
{
    return n_threads;
}

void qd_conv_desc_init(struct qd_conv_desc *d, int n, int cin, int h, int w, int cout, int k,
                       int stride, int pad, int groups)
{
    d->n = n;
    d->cin = cin;
    d->h = h;
    d->w = w;
    d->cout = cout;
    d->kh = d->kw = k;
    d->stride = stride;
    d->pad = pad;
    d->groups = groups;
    d->oh = (h + 2 * pad - k) / stride + 1;
    d->ow = (w + 2 * pad - k) / stride + 1;
}

static int is_depthwise(const struct qd_conv_desc *d)
{
    return d->groups == d->cin && d->cout == d->cin && d->groups > 1;
}

static int is_pointwise(const struct qd_conv_desc *d)
{
    return d->kh == 1 && d->kw == 1 && d->stride == 1 && d->pad == 0;
}

size_t qd_conv2d_scratch_size(const struct qd_conv_desc *d)
{
    if (is_depthwise(d))
        return 0;
    size_t k = (size_t)(d->cin / d->groups) * d->kh * d->kw;
    size_t col = k * d->oh * d->ow;
    size_t wsz = (size_t)d->cout * k + d->cout; /* private dW and db for backward */
    return (size_t)qd_kernels_threads() * (col + wsz);
}

/* ---------------------------------------------------------------- reference */

void qd_conv2d_fwd_f32_ref(const struct qd_conv_desc *d, const float *x, const float *w,
                           const float *b, float *y)
{
    int cig = d->cin / d->groups, cog = d->cout / d->groups;
    for (int n = 0; n < d->n; n++)
        for (int co = 0; co < d->cout; co++) {
            int g = co / cog;
            for (int oy = 0; oy < d->oh; oy++)
                for (int ox = 0; ox < d->ow; ox++) {
                    double s = b ? b[co] : 0.0;
                    for (int ci = 0; ci < cig; ci++)
                        for (int ky = 0; ky < d->kh; ky++)
                            for (int kx = 0; kx < d->kw; kx++) {
                                int iy = oy * d->stride - d->pad + ky;
                                int ix = ox * d->stride - d->pad + kx;
                                if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w)
                                    continue;
                                s += (double)x[(((size_t)n * d->cin + g * cig + ci) * d->h + iy) *
                                                   d->w + ix] *
                                     w[(((size_t)co * cig + ci) * d->kh + ky) * d->kw + kx];
                            }
                    y[(((size_t)n * d->cout + co) * d->oh + oy) * d->ow + ox] = (float)s;
                }
        }
}

void qd_conv2d_bwd_f32_ref(const struct qd_conv_desc *d, const float *x, const float *w,
                           const float *dy, float *dx, float *dw, float *db)
{
    int cig = d->cin / d->groups, cog = d->cout / d->groups;
    memset(dw, 0, sizeof(float) * d->cout * cig * d->kh * d->kw);
    if (db)
        memset(db, 0, sizeof(float) * d->cout);
    if (dx)
        memset(dx, 0, sizeof(float) * d->n * d->cin * d->h * d->w);
    for (int n = 0; n < d->n; n++)
        for (int co = 0; co < d->cout; co++) {
            int g = co / cog;
            for (int oy = 0; oy < d->oh; oy++)
                for (int ox = 0; ox < d->ow; ox++) {
                    float gy = dy[(((size_t)n * d->cout + co) * d->oh + oy) * d->ow + ox];
                    if (db)
                        db[co] += gy;
                    for (int ci = 0; ci < cig; ci++)
                        for (int ky = 0; ky < d->kh; ky++)
                            for (int kx = 0; kx < d->kw; kx++) {
                                int iy = oy * d->stride - d->pad + ky;
                                int ix = ox * d->stride - d->pad + kx;
                                if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w)
                                    continue;
                                size_t xi =
                                    (((size_t)n * d->cin + g * cig + ci) * d->h + iy) * d->w + ix;
                                size_t wi = (((size_t)co * cig + ci) * d->kh + ky) * d->kw + kx;
                                dw[wi] += gy * x[xi];
                                if (dx)
                                    dx[xi] += gy * w[wi];
                            }
                }
        }
}

/* ---------------------------------------------------------------- im2col + GEMM */

/* col (C*KH*KW, OH*OW) from one image's C channels (C, H, W). */
static void im2col(const struct qd_conv_desc *d, int c, const float *x, float *col)
{
    int ohw = d->oh * d->ow;
    for (int ci = 0; ci < c; ci++)
        for (int ky = 0; ky < d->kh; ky++)
            for (int kx = 0; kx < d->kw; kx++) {
                float *dst = col + ((size_t)(ci * d->kh + ky) * d->kw + kx) * ohw;
                const float *src = x + (size_t)ci * d->h * d->w;
                for (int oy = 0; oy < d->oh; oy++) {
                    int iy = oy * d->stride - d->pad + ky;
                    float *row = dst + oy * d->ow;
                    if (iy < 0 || iy >= d->h) {
                        memset(row, 0, sizeof(float) * d->ow);
                        continue;
                    }
                    const float *srow = src + (size_t)iy * d->w;
                    if (d->stride == 1) {
                        int x0 = kx - d->pad; /* ix = ox + x0 */
                        int lo = x0 < 0 ? -x0 : 0, hi = d->w - x0 < d->ow ? d->w - x0 : d->ow;
                        if (hi < lo)
                            hi = lo;
                        for (int ox = 0; ox < lo; ox++)
                            row[ox] = 0;
                        memcpy(row + lo, srow + lo + x0, sizeof(float) * (hi - lo));
                        for (int ox = hi; ox < d->ow; ox++)
                            row[ox] = 0;
                    } else {
                        for (int ox = 0; ox < d->ow; ox++) {
                            int ix = ox * d->stride - d->pad + kx;
                            row[ox] = (ix >= 0 && ix < d->w) ? srow[ix] : 0.0f;
                        }
                    }
                }
            }
}

/* Adds col (C*KH*KW, OH*OW) back into one image's (C, H, W) gradient. */
static void col2im_add(const struct qd_conv_desc *d, int c, const float *col, float *dx)
{
    int ohw = d->oh * d->ow;
    for (int ci = 0; ci < c; ci++)
        for (int ky = 0; ky < d->kh; ky++)
            for (int kx = 0; kx < d->kw; kx++) {
                const float *src = col + ((size_t)(ci * d->kh + ky) * d->kw + kx) * ohw;
                float *dst = dx + (size_t)ci * d->h * d->w;
                for (int oy = 0; oy < d->oh; oy++) {
                    int iy = oy * d->stride - d->pad + ky;
                    if (iy < 0 || iy >= d->h)
                        continue;
                    float *drow = dst + (size_t)iy * d->w;
                    const float *row = src + oy * d->ow;
                    if (d->stride == 1) {
                        int x0 = kx - d->pad; /* ix = ox + x0, contiguous */
                        int lo = x0 < 0 ? -x0 : 0, hi = d->w - x0 < d->ow ? d->w - x0 : d->ow;
                        float *dr = drow + x0;
                        for (int ox = lo; ox < hi; ox++)
                            dr[ox] += row[ox];
                        continue;
                    }
                    for (int ox = 0; ox < d->ow; ox++) {
                        int ix = ox * d->stride - d->pad + kx;
                        if (ix >= 0 && ix < d->w)
                            drow[ix] += row[ox];
                    }
                }
            }
}

/* ---------------------------------------------------------------- depthwise direct */

static void dw_fwd(const struct qd_conv_desc *d, const float *x, const float *w, const float *b,
                   float *y)
{
    int C = d->cin, K = d->kh, S = d->stride, P = d->pad;
#pragma omp parallel for schedule(static)
    for (long p = 0; p < (long)d->n * C; p++) {
        int c = (int)(p % C);
        const float *xp = x + (size_t)p * d->h * d->w, *wk = w + (size_t)c * K * K;
        float *yp = y + (size_t)p * d->oh * d->ow;
        float bias = b ? b[c] : 0.0f;
        for (int i = 0; i < d->oh * d->ow; i++)
            yp[i] = bias;
        for (int ky = 0; ky < K; ky++)
            for (int kx = 0; kx < K; kx++) {
                float wv = wk[ky * K + kx];
                /* valid ox: 0 <= ox*S - P + kx < W */
                int lo = (P - kx + S - 1) / S, hi = (d->w - 1 + P - kx) / S + 1;
                if (lo < 0)
                    lo = 0;
                if (hi > d->ow)
                    hi = d->ow;
                for (int oy = 0; oy < d->oh; oy++) {
                    int iy = oy * S - P + ky;
                    if (iy < 0 || iy >= d->h)
                        continue;
                    const float *xr = xp + (size_t)iy * d->w - P + kx;
                    float *yr = yp + (size_t)oy * d->ow;
                    for (int ox = lo; ox < hi; ox++)
                        yr[ox] += wv * xr[ox * S];
                }
            }
    }
}

static void dw_bwd(const struct qd_conv_desc *d, const float *x, const float *w, const float *dy,
                   float *dx, float *dw, float *db)
{
    int C = d->cin, K = d->kh, S = d->stride, P = d->pad;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        float *dwk = dw + (size_t)c * K * K;
        const float *wk = w + (size_t)c * K * K;
        double dbs = 0;
        for (int i = 0; i < K * K; i++)
            dwk[i] = 0;
        for (int n = 0; n < d->n; n++) {
            size_t p = (size_t)n * C + c;
            const float *xp = x + p * d->h * d->w, *dyp = dy + p * d->oh * d->ow;
            float *dxp = dx ? dx + p * d->h * d->w : NULL;
            if (dxp)
                memset(dxp, 0, sizeof(float) * d->h * d->w);
            for (int i = 0; i < d->oh * d->ow; i++)
                dbs += dyp[i];
            for (int ky = 0; ky < K; ky++)
                for (int kx = 0; kx < K; kx++) {
                    int lo = (P - kx + S - 1) / S, hi = (d->w - 1 + P - kx) / S + 1;
                    if (lo < 0)
                        lo = 0;
                    if (hi > d->ow)
                        hi = d->ow;
                    float wv = wk[ky * K + kx], acc = 0;
                    for (int oy = 0; oy < d->oh; oy++) {
                        int iy = oy * S - P + ky;
                        if (iy < 0 || iy >= d->h)
                            continue;
                        const float *xr = xp + (size_t)iy * d->w - P + kx;
                        const float *gr = dyp + (size_t)oy * d->ow;
                        for (int ox = lo; ox < hi; ox++)
                            acc += gr[ox] * xr[ox * S];
                        if (dxp) {
                            float *dr = dxp + (size_t)iy * d->w - P + kx;
                            for (int ox = lo; ox < hi; ox++)
                                dr[ox * S] += wv * gr[ox];
                        }
                    }
                    dwk[ky * K + kx] += acc;
                }
        }
        if (db)
            db[c] = (float)dbs;
    }
}

/* ---------------------------------------------------------------- dispatch */

void qd_conv2d_fwd_f32(const struct qd_conv_desc *d, const float *x, const float *w,
                       const float *b, float *y, float *scratch)
{
    if (is_depthwise(d)) {
        dw_fwd(d, x, w, b, y);
        return;
    }
    int cig = d->cin / d->groups, cog = d->cout / d->groups, ohw = d->oh * d->ow;
    int K = cig * d->kh * d->kw;
    size_t per = (size_t)K * ohw + (size_t)d->cout * K + d->cout;
#pragma omp parallel for schedule(static) num_threads(n_threads) /* scratch holds n_threads columns */
    for (int n = 0; n < d->n; n++) {
        float *col = scratch + (size_t)omp_get_thread_num() * per;
        for (int g = 0; g < d->groups; g++) {
            const float *xg = x + ((size_t)n * d->cin + g * cig) * d->h * d->w;
            float *yg = y + ((size_t)n * d->cout + g * cog) * ohw;
            const float *src = xg;
            if (!is_pointwise(d)) {
                im2col(d, cig, xg, col);
                src = col;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cog, ohw, K, 1.0f,
                        w + (size_t)g * cog * K, K, src, ohw, 0.0f, yg, ohw);
            if (b)
                for (int co = 0; co < cog; co++) {
                    float bv = b[g * cog + co], *yr = yg + (size_t)co * ohw;
                    for (int i = 0; i < ohw; i++)
                        yr[i] += bv;
                }
        }
    }
}

void qd_conv2d_bwd_f32(const struct qd_conv_desc *d, const float *x, const float *w,
                       const float *dy, float *dx, float *dw, float *db, float *scratch)
{
    if (is_depthwise(d)) {
        dw_bwd(d, x, w, dy, dx, dw, db);
        return;
    }
    int cig = d->cin / d->groups, cog = d->cout / d->groups, ohw = d->oh * d->ow;
    int K = cig * d->kh * d->kw;
    size_t wsz = (size_t)d->cout * K, per = (size_t)K * ohw + wsz + d->cout;
    int T = qd_kernels_threads();
#pragma omp parallel num_threads(T)
    {
        int t = omp_get_thread_num();
        float *col = scratch + (size_t)t * per, *dwt = col + (size_t)K * ohw, *dbt = dwt + wsz;
        memset(dwt, 0, sizeof(float) * (wsz + d->cout));
#pragma omp for schedule(static)
        for (int n = 0; n < d->n; n++) {
            for (int g = 0; g < d->groups; g++) {
                const float *xg = x + ((size_t)n * d->cin + g * cig) * d->h * d->w;
                const float *dyg = dy + ((size_t)n * d->cout + g * cog) * ohw;
                const float *src = xg;
                if (!is_pointwise(d)) {
                    im2col(d, cig, xg, col);
                    src = col;
                }
                /* dW_g (cog, K) += dY_g (cog, ohw) . col^T (ohw, K) */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cog, K, ohw, 1.0f, dyg, ohw,
                            src, ohw, 1.0f, dwt + (size_t)g * cog * K, K);
                for (int co = 0; co < cog; co++) {
                    const float *r = dyg + (size_t)co * ohw;
                    float s = 0;
                    for (int i = 0; i < ohw; i++)
                        s += r[i];
                    dbt[g * cog + co] += s;
                }
                if (dx) {
                    float *dxg = dx + ((size_t)n * d->cin + g * cig) * d->h * d->w;
                    if (is_pointwise(d)) {
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, ohw, cog, 1.0f,
                                    w + (size_t)g * cog * K, K, dyg, ohw, 0.0f, dxg, ohw);
                    } else {
                        /* dcol (K, ohw) = W_g^T (K, cog) . dY_g (cog, ohw) */
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, ohw, cog, 1.0f,
                                    w + (size_t)g * cog * K, K, dyg, ohw, 0.0f, col, ohw);
                        memset(dxg, 0, sizeof(float) * cig * d->h * d->w);
                        col2im_add(d, cig, col, dxg);
                    }
                }
            }
        }
    }
    /* Sum the per-thread partials in thread order: deterministic for a given thread count. */
    for (size_t i = 0; i < wsz + d->cout; i++) {
        float s = 0;
        for (int t = 0; t < T; t++)
            s += scratch[(size_t)t * per + (size_t)K * ohw + i];
        if (i < wsz)
            dw[i] = s;
        else if (db)
            db[i - wsz] = s;
    }
}

/* The non-convolution training kernels: dense (reference loops and sgemm), batch normalization,
 * ReLU/ReLU6, residual add, max/average pooling and softmax cross-entropy. All float32, NCHW.
 * Reductions over the batch accumulate in double so that results do not drift with N. */
#include "nn/kernels.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- dense */

void qd_dense_fwd_f32_ref(int n, int in, int out, const float *x, const float *w, const float *b,
                          float *y)
{
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int k = 0; k < in; k++)
                s += (double)x[(size_t)i * in + k] * w[(size_t)o * in + k];
            y[(size_t)i * out + o] = (float)s;
        }
}

void qd_dense_bwd_f32_ref(int n, int in, int out, const float *x, const float *w, const float *dy,
                          float *dx, float *dw, float *db)
{
    for (int o = 0; o < out; o++) {
        double sb = 0;
        for (int i = 0; i < n; i++)
            sb += dy[(size_t)i * out + o];
        if (db)
            db[o] = (float)sb;
        for (int k = 0; k < in; k++) {
            double s = 0;
            for (int i = 0; i < n; i++)
                s += (double)dy[(size_t)i * out + o] * x[(size_t)i * in + k];
            dw[(size_t)o * in + k] = (float)s;
        }
    }
    if (dx)
        for (int i = 0; i < n; i++)
            for (int k = 0; k < in; k++) {
                double s = 0;
                for (int o = 0; o < out; o++)
                    s += (double)dy[(size_t)i * out + o] * w[(size_t)o * in + k];
                dx[(size_t)i * in + k] = (float)s;
            }
}

void qd_dense_fwd_f32(int n, int in, int out, const float *x, const float *w, const float *b,
                      float *y)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 0.0f, y,
                out);
    if (b)
        for (int i = 0; i < n; i++)
            for (int o = 0; o < out; o++)
                y[(size_t)i * out + o] += b[o];
}

void qd_dense_bwd_f32(int n, int in, int out, const float *x, const float *w, const float *dy,
                      float *dx, float *dw, float *db)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, 0.0f,
                dw, in);
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, w, in,
                    0.0f, dx, in);
    if (db)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int i = 0; i < n; i++)
                s += dy[(size_t)i * out + o];
            db[o] = (float)s;
        }
}

/* ---------------------------------------------------------------- batch norm */

void qd_bn_fwd_train_f32(int n, int c, int hw, const float *x, const float *gamma,
                         const float *beta, float eps, float *y, float *mean, float *invstd)
{
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        double s = 0, s2 = 0;
        for (int i = 0; i < n; i++) {
            const float *p = x + ((size_t)i * c + ch) * hw;
            float a = 0, a2 = 0;
            for (int j = 0; j < hw; j++) {
                a += p[j];
                a2 += p[j] * p[j];
            }
            s += a;
            s2 += a2;
        }
        double m = s / ((double)n * hw), v = s2 / ((double)n * hw) - m * m;
        if (v < 0)
            v = 0;
        float is = (float)(1.0 / sqrt(v + eps));
        mean[ch] = (float)m;
        invstd[ch] = is;
        float sc = gamma[ch] * is, sh = beta[ch] - (float)m * sc;
        for (int i = 0; i < n; i++) {
            const float *p = x + ((size_t)i * c + ch) * hw;
            float *q = y + ((size_t)i * c + ch) * hw;
            for (int j = 0; j < hw; j++)
                q[j] = p[j] * sc + sh;
        }
    }
}

void qd_bn_fwd_eval_f32(int n, int c, int hw, const float *x, const float *gamma, const float *beta,
                        const float *rmean, const float *rvar, float eps, float *y)
{
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        float sc = gamma[ch] / sqrtf(rvar[ch] + eps), sh = beta[ch] - rmean[ch] * sc;
        for (int i = 0; i < n; i++) {
            const float *p = x + ((size_t)i * c + ch) * hw;
            float *q = y + ((size_t)i * c + ch) * hw;
            for (int j = 0; j < hw; j++)
                q[j] = p[j] * sc + sh;
        }
    }
}

void qd_bn_bwd_f32(int n, int c, int hw, const float *x, const float *dy, const float *gamma,
                   const float *mean, const float *invstd, float *dx, float *dgamma, float *dbeta)
{
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        float m = mean[ch], is = invstd[ch];
        double sdy = 0, sdyx = 0;
        for (int i = 0; i < n; i++) {
            const float *p = x + ((size_t)i * c + ch) * hw, *g = dy + ((size_t)i * c + ch) * hw;
            float a = 0, b = 0;
            for (int j = 0; j < hw; j++) {
                a += g[j];
                b += g[j] * (p[j] - m);
            }
            sdy += a;
            sdyx += b;
        }
        dbeta[ch] = (float)sdy;
        dgamma[ch] = (float)(sdyx * is);
        if (!dx)
            continue;
        double cnt = (double)n * hw;
        float k1 = gamma[ch] * is, k2 = (float)(sdy / cnt), k3 = (float)(sdyx * is * is / cnt);
        for (int i = 0; i < n; i++) {
            const float *p = x + ((size_t)i * c + ch) * hw, *g = dy + ((size_t)i * c + ch) * hw;
            float *q = dx + ((size_t)i * c + ch) * hw;
            for (int j = 0; j < hw; j++)
                q[j] = k1 * (g[j] - k2 - (p[j] - m) * k3);
        }
    }
}

/* ---------------------------------------------------------------- elementwise */

void qd_relu_fwd_f32(size_t len, const float *x, float *y, float cap)
{
#pragma omp parallel for schedule(static) if (len > 65536)
    for (size_t i = 0; i < len; i++) {
        float v = x[i] > 0 ? x[i] : 0;
        y[i] = (cap > 0 && v > cap) ? cap : v;
    }
}

void qd_relu_bwd_f32(size_t len, const float *y, const float *dy, float *dx, float cap)
{
#pragma omp parallel for schedule(static) if (len > 65536)
    for (size_t i = 0; i < len; i++)
        dx[i] = (y[i] > 0 && (cap <= 0 || y[i] < cap)) ? dy[i] : 0;
}

void qd_add_fwd_f32(size_t len, const float *a, const float *b, float *y)
{
#pragma omp parallel for schedule(static) if (len > 65536)
    for (size_t i = 0; i < len; i++)
        y[i] = a[i] + b[i];
}

/* ---------------------------------------------------------------- pooling */

void qd_maxpool_fwd_f32(int planes, int h, int w, int k, int s, const float *x, float *y,
                        int32_t *idx)
{
    int oh = (h - k) / s + 1, ow = (w - k) / s + 1;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * h * w;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                float best = -FLT_MAX;
                int bi = (oy * s) * w + ox * s;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        int i = (oy * s + ky) * w + ox * s + kx;
                        if (xp[i] > best) {
                            best = xp[i];
                            bi = i;
                        }
                    }
                size_t o = (size_t)p * oh * ow + oy * ow + ox;
                y[o] = best;
                idx[o] = bi;
            }
    }
}

void qd_maxpool_bwd_f32(int planes, int h, int w, int k, int s, const float *dy,
                        const int32_t *idx, float *dx)
{
    int oh = (h - k) / s + 1, ow = (w - k) / s + 1;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        float *dxp = dx + (size_t)p * h * w;
        memset(dxp, 0, sizeof(float) * h * w);
        for (int o = 0; o < oh * ow; o++)
            dxp[idx[(size_t)p * oh * ow + o]] += dy[(size_t)p * oh * ow + o];
    }
}

void qd_avgpool_fwd_f32(int planes, int h, int w, int k, int s, const float *x, float *y)
{
    int oh = (h - k) / s + 1, ow = (w - k) / s + 1;
    float inv = 1.0f / (float)(k * k);
#pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * h * w;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                float a = 0;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++)
                        a += xp[(oy * s + ky) * w + ox * s + kx];
                y[(size_t)p * oh * ow + oy * ow + ox] = a * inv;
            }
    }
}

void qd_avgpool_bwd_f32(int planes, int h, int w, int k, int s, const float *dy, float *dx)
{
    int oh = (h - k) / s + 1, ow = (w - k) / s + 1;
    float inv = 1.0f / (float)(k * k);
#pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        float *dxp = dx + (size_t)p * h * w;
        memset(dxp, 0, sizeof(float) * h * w);
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                float g = dy[(size_t)p * oh * ow + oy * ow + ox] * inv;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++)
                        dxp[(oy * s + ky) * w + ox * s + kx] += g;
            }
    }
}

/* ---------------------------------------------------------------- loss */

float qd_softmax_xent_f32(int n, int k, const float *logits, const uint8_t *labels,
                          float *dlogits, int *correct)
{
    double loss = 0;
    int ok = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        int am = 0;
        for (int j = 1; j < k; j++)
            if (z[j] > z[am])
                am = j;
        ok += am == labels[i];
        double se = 0;
        for (int j = 0; j < k; j++)
            se += exp((double)z[j] - z[am]);
        double lse = z[am] + log(se);
        loss += lse - z[labels[i]];
        if (dlogits)
            for (int j = 0; j < k; j++)
                dlogits[(size_t)i * k + j] =
                    (float)((exp(z[j] - lse) - (j == labels[i])) / (double)n);
    }
    if (correct)
        *correct = ok;
    return (float)(loss / n);
}

/* log-sum-exp of z[0..k) / t, and max(z) / t */
static double lse_t(const float *z, int k, double t)
{
    double mx = z[0] / t, se = 0;
    for (int j = 1; j < k; j++)
        if (z[j] / t > mx)
            mx = z[j] / t;
    for (int j = 0; j < k; j++)
        se += exp(z[j] / t - mx);
    return mx + log(se);
}

float qd_softmax_kd_f32(int n, int k, const float *logits, const float *teacher, float t,
                        float *dlogits)
{
    double loss = 0, T = t > 0 ? t : 1;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k, *u = teacher + (size_t)i * k;
        double lz = lse_t(z, k, T), lu = lse_t(u, k, T), kl = 0;
        for (int j = 0; j < k; j++) {
            double lq = u[j] / T - lu, lp = z[j] / T - lz, q = exp(lq);
            kl += q * (lq - lp);
            if (dlogits)
                dlogits[(size_t)i * k + j] = (float)(T * (exp(lp) - q) / n);
        }
        loss += T * T * kl;
    }
    return (float)(loss / n);
}

/* Scalar quantization of tensors and histogram calibration, on the arithmetic of
 * runtime/qmath.h. Not a hot path: the runtime's kernels use integer parameters prepared once
 * per model. */
#include "quant/quantize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/train.h"

qd_err qd_qparam_from_range(float lo, float hi, int bits, enum qd_qscheme s, struct qd_qparam *q)
{
    if (bits < 2 || bits > 16)
        return qd_seterr(QD_EINVAL, "quantize: %d bits outside 2..16", bits);
    if (!(lo <= hi) || !isfinite(lo) || !isfinite(hi))
        return qd_seterr(QD_EINVAL, "quantize: bad range [%g, %g]", lo, hi);
    qd_qparam_make(lo, hi, bits, s, q);
    return QD_OK;
}

void qd_fake_quant_f32(const float *x, float *y, size_t n, const struct qd_qparam *q)
{
    for (size_t i = 0; i < n; i++)
        y[i] = qd_dequantize(qd_quantize(x[i], q), q);
}

void qd_quantize_per_channel(const float *w, int cout, size_t per, int bits, float *scales,
                             int32_t *q)
{
    for (int c = 0; c < cout; c++) {
        const float *wc = w + (size_t)c * per;
        float a = qd_weight_clip(wc, per, bits); /* the grid training's fake quantization uses */
        struct qd_qparam p;
        qd_qparam_from_range(-a, a, bits, QD_QSCHEME_SYM, &p);
        scales[c] = p.scale;
        for (size_t i = 0; i < per; i++)
            q[(size_t)c * per + i] = qd_quantize(wc[i], &p);
    }
}

/* ---------------------------------------------------------------- calibration */

qd_err qd_calib_init(struct qd_calib_hist *h, int nbins)
{
    memset(h, 0, sizeof *h);
    if (nbins < 16 || nbins > (1 << 20) || nbins % 2)
        return qd_seterr(QD_EINVAL, "calibration: %d bins (even, 16..2^20)", nbins);
    h->bins = calloc((size_t)nbins, sizeof *h->bins);
    if (!h->bins)
        return qd_seterr(QD_ENOMEM, "calibration: out of memory");
    h->nbins = nbins;
    h->lo = INFINITY;
    h->hi = -INFINITY;
    return QD_OK;
}

void qd_calib_fini(struct qd_calib_hist *h)
{
    free(h->bins);
    memset(h, 0, sizeof *h);
}

/* Doubles the histogram's range, merging pairs of bins toward the centre. */
static void widen(struct qd_calib_hist *h)
{
    int n = h->nbins, half = n / 2;
    uint64_t *b = h->bins;
    uint64_t *t = calloc((size_t)n, sizeof *t);
    if (!t)
        return;
    for (int i = 0; i < n; i++)
        t[half / 2 + i / 2] += b[i];
    memcpy(b, t, sizeof *t * n);
    free(t);
    h->absmax *= 2;
}

void qd_calib_observe(struct qd_calib_hist *h, const float *x, size_t n)
{
    double mx = 0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        if (!isfinite(v))
            continue;
        if (v < h->lo)
            h->lo = v;
        if (v > h->hi)
            h->hi = v;
        if (fabs(v) > mx)
            mx = fabs(v);
    }
    if (h->absmax == 0)
        h->absmax = mx > 0 ? mx : 1e-8;
    while (mx > h->absmax)
        widen(h);
    double w = 2 * h->absmax / h->nbins;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        if (!isfinite(v))
            continue;
        long b = (long)floor((v + h->absmax) / w);
        if (b < 0)
            b = 0;
        if (b >= h->nbins)
            b = h->nbins - 1;
        h->bins[b]++;
        h->count++;
    }
}

static double bin_centre(const struct qd_calib_hist *h, int i)
{
    double w = 2 * h->absmax / h->nbins;
    return -h->absmax + (i + 0.5) * w;
}

/* Expected squared error of quantizing the histogram with range [lo, hi]. */
static double hist_mse(const struct qd_calib_hist *h, float lo, float hi, int bits,
                       enum qd_qscheme s)
{
    struct qd_qparam q;
    if (qd_qparam_from_range(lo, hi, bits, s, &q))
        return INFINITY;
    double e = 0;
    for (int i = 0; i < h->nbins; i++) {
        if (!h->bins[i])
            continue;
        double c = bin_centre(h, i), d = c - qd_dequantize(qd_quantize((float)c, &q), &q);
        e += h->bins[i] * d * d;
    }
    return e;
}

void qd_calib_range(const struct qd_calib_hist *h, enum qd_calib how, double pct, int bits,
                    enum qd_qscheme s, float *lo, float *hi)
{
    *lo = h->count ? (float)h->lo : 0;
    *hi = h->count ? (float)h->hi : 0;
    if (!h->count || how == QD_CALIB_MINMAX)
        return;
    if (how == QD_CALIB_PERCENTILE) {
        uint64_t cut = (uint64_t)(h->count * pct / 100.0), acc = 0;
        int a = 0, b = h->nbins - 1;
        while (a < h->nbins - 1 && acc + h->bins[a] <= cut)
            acc += h->bins[a++];
        acc = 0;
        while (b > 0 && acc + h->bins[b] <= cut)
            acc += h->bins[b--];
        double w = 2 * h->absmax / h->nbins;
        *lo = (float)fmax(h->lo, -h->absmax + a * w);
        *hi = (float)fmin(h->hi, -h->absmax + (b + 1) * w);
        return;
    }
    /* MSE: shrink the min/max range by factors in (0, 1], keep the best */
    float l0 = *lo, h0 = *hi;
    double best = hist_mse(h, l0, h0, bits, s);
    for (int k = 1; k < 100; k++) {
        float f = 1.0f - k / 100.0f, l = l0 * f, u = h0 * f;
        double e = hist_mse(h, l, u, bits, s);
        if (e < best) {
            best = e;
            *lo = l;
            *hi = u;
        }
    }
}

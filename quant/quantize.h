/* Quantizers: the arithmetic that maps float tensors to integers of 2..16 bits and back, the
 * float16 conversion, and the calibration of ranges on a representative set.
 *
 * Usage:
 *     struct qd_qparam q;
 *     qd_qparam_from_range(lo, hi, 8, QD_QSCHEME_ASYM, &q);       // activations, per tensor
 *     int32_t v = qd_quantize(x, &q);  float back = qd_dequantize(v, &q);
 *     float scales[C_out];
 *     qd_quantize_per_channel(w, c_out, per, 4, scales, q4);      // weights, symmetric
 *
 * Conventions follow TensorFlow Lite's quantization spec: real = scale * (q - zero_point);
 * symmetric quantization uses the restricted range [-(2^(b-1)-1), 2^(b-1)-1] with zero point 0
 * (int8 weights are in [-127, 127]); asymmetric uses [-2^(b-1), 2^(b-1)-1] and a zero point
 * chosen so that 0.0 is exactly representable; rounding is half away from zero. */
#ifndef QD_QUANT_QUANTIZE_H
#define QD_QUANT_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "runtime/qmath.h"

/* Parameters covering [lo, hi] (widened to include 0). bits in 2..16; checks its arguments,
 * then qd_qparam_make (runtime/qmath.h, with qd_quantize, qd_dequantize and float16). */
qd_err qd_qparam_from_range(float lo, float hi, int bits, enum qd_qscheme s, struct qd_qparam *q);
/* x -> dequantize(quantize(x)): what QAT and simulation compute. n floats, in place allowed. */
void qd_fake_quant_f32(const float *x, float *y, size_t n, const struct qd_qparam *q);

/* Symmetric per-output-channel weights: w (C_out, per) -> q (C_out, per) and scales (C_out),
 * each channel's grid clipped at qd_weight_clip (nn/train.h: max magnitude above 4 bits, the
 * least-squared-error clip at 4 bits and fewer). */
void qd_quantize_per_channel(const float *w, int cout, size_t per, int bits, float *scales,
                             int32_t *q);

/* Calibration of an activation range from samples of it (a representative set). */
enum qd_calib { QD_CALIB_MINMAX, QD_CALIB_PERCENTILE, QD_CALIB_MSE };

struct qd_calib_hist {
    double lo, hi;          /* running min/max of everything observed */
    uint64_t *bins;         /* histogram over [-absmax, absmax] once fixed */
    int nbins;
    double absmax;          /* histogram range, set by the first batch (grows by rebinning) */
    uint64_t count;
};

qd_err qd_calib_init(struct qd_calib_hist *h, int nbins);
void qd_calib_observe(struct qd_calib_hist *h, const float *x, size_t n);
/* The range to quantize with: min/max; the [pct, 100-pct] percentiles (pct e.g. 0.01); or the
 * clipping range minimizing the expected squared quantization error at `bits`. */
void qd_calib_range(const struct qd_calib_hist *h, enum qd_calib how, double pct, int bits,
                    enum qd_qscheme s, float *lo, float *hi);
void qd_calib_fini(struct qd_calib_hist *h);

#endif

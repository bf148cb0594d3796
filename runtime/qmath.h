/* The quantization arithmetic a device needs, without libm: affine quantization of a float
 * (TFLite's convention), fixed-point requantization, float16 conversion. The host's quantizers
 * (quant/quantize.h) are built on these, so host and device round alike bit for bit.
 *
 * Usage:
 *     struct qd_qparam q;
 *     qd_qparam_make(lo, hi, 8, QD_QSCHEME_ASYM, &q);     // lo <= hi, finite (caller checks)
 *     int32_t v = qd_quantize(x, &q);                      // round half away from zero, clamp
 *     int32_t M, sh; qd_quantize_multiplier(s_in * s_w / s_out, &M, &sh);
 *     int32_t y = qd_requant(acc, M, sh);                  // round(acc * M * 2^(sh - 31))
 *
 * real = scale * (q - zero); symmetric: [-(2^(b-1)-1), 2^(b-1)-1], zero 0; asymmetric:
 * [-2^(b-1), 2^(b-1)-1] with 0.0 exactly representable. Integer-only code paths use 64-bit
 * arithmetic only (no __int128, no libm), so this compiles for any 32-bit core. */
#ifndef QD_RUNTIME_QMATH_H
#define QD_RUNTIME_QMATH_H

#include <stdint.h>

enum qd_qscheme { QD_QSCHEME_SYM, QD_QSCHEME_ASYM };

struct qd_qparam {
    float scale;
    int32_t zero;
    int32_t qmin, qmax;
    int bits;
};

void qd_qrange(int bits, enum qd_qscheme s, int32_t *qmin, int32_t *qmax);
/* Parameters covering [lo, hi] widened to include 0; bits in 2..16, lo <= hi finite (not
 * checked here: quant/quantize.h's qd_qparam_from_range checks and calls this). */
void qd_qparam_make(float lo, float hi, int bits, enum qd_qscheme s, struct qd_qparam *q);
int32_t qd_quantize(float x, const struct qd_qparam *q);
float qd_dequantize(int32_t v, const struct qd_qparam *q);
/* round(): half away from zero, exact for every double (libm's round, without libm). */
double qd_round(double v);

/* Fixed-point requantization shared by every integer kernel: round(acc * M * 2^(shift - 31)),
 * ties upward, saturated to int32. qd_quantize_multiplier gives M in [2^30, 2^31) (or 0) and
 * shift in [-31, 30] (frexp + llround, computed on the double's bits). */
void qd_quantize_multiplier(double m, int32_t *M, int32_t *shift);
int32_t qd_requant(int64_t acc, int32_t M, int32_t shift);

/* IEEE 754 binary16, round to nearest even; handles subnormals, infinities and NaN. */
uint16_t qd_f32_to_f16(float f);
float qd_f16_to_f32(uint16_t h);

#endif

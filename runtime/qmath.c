/* Quantization arithmetic without libm (see qmath.h). qd_round and qd_quantize_multiplier
 * reproduce libm's round and frexp + llround exactly; qd_requant computes the 95-bit product
 * of an int64 accumulator and a 32-bit multiplier in two 64-bit words, so the integer path
 * needs neither __int128 nor a 64x64 multiply helper beyond what a 32-bit core's libgcc has. */
#include "qmath.h"

#include <string.h>

void qd_qrange(int bits, enum qd_qscheme s, int32_t *qmin, int32_t *qmax)
{
    int32_t m = (int32_t)1 << (bits - 1);
    *qmax = m - 1;
    *qmin = s == QD_QSCHEME_SYM ? -(m - 1) : -m;
}

double qd_round(double v)
{
    /* |v| >= 2^52 (or NaN, or infinite): already integral */
    if (!(v > -4503599627370496.0 && v < 4503599627370496.0))
        return v;
    double t = (double)(int64_t)v; /* truncation toward zero */
    double f = v - t;              /* exact: the fractional part */
    if (f >= 0.5)
        t += 1;
    else if (f <= -0.5)
        t -= 1;
    return t;
}

void qd_qparam_make(float lo, float hi, int bits, enum qd_qscheme s, struct qd_qparam *q)
{
    if (lo > 0)
        lo = 0;
    if (hi < 0)
        hi = 0;
    q->bits = bits;
    qd_qrange(bits, s, &q->qmin, &q->qmax);
    if (s == QD_QSCHEME_SYM) {
        float a = -lo > hi ? -lo : hi;
        q->scale = a > 0 ? a / (float)q->qmax : 1.0f;
        q->zero = 0;
    } else {
        float span = hi - lo;
        q->scale = span > 0 ? span / (float)(q->qmax - q->qmin) : 1.0f;
        /* zero point: the integer that 0.0 maps to, nudged into range */
        double z = qd_round(q->qmin - lo / (double)q->scale);
        /* NaN (an infinite lo over an infinite span): qmin, never a cast of NaN, whose result
         * differs between targets */
        q->zero = !(z >= q->qmin) ? q->qmin : z > q->qmax ? q->qmax : (int32_t)z;
    }
}

int32_t qd_quantize(float x, const struct qd_qparam *q)
{
    double v = qd_round((double)x / q->scale) + q->zero; /* half away from zero */
    if (v != v) /* NaN (x NaN, or infinite over an infinite scale): as 0.0 */
        return q->zero;
    if (v < q->qmin)
        return q->qmin;
    if (v > q->qmax)
        return q->qmax;
    return (int32_t)v;
}

float qd_dequantize(int32_t v, const struct qd_qparam *q)
{
    return q->scale * (float)(v - q->zero);
}

void qd_quantize_multiplier(double m, int32_t *M, int32_t *shift)
{
    *M = 0, *shift = 0;
    if (!(m > 0))
        return;
    uint64_t b;
    memcpy(&b, &m, 8);
    int be = (int)(b >> 52 & 0x7ff);
    if (be == 0x7ff) { /* +infinity: saturate, as any absurd ratio */
        *M = INT32_MAX, *shift = 30;
        return;
    }
    if (be == 0) /* subnormal: far below 2^-31 */
        return;
    /* frexp: m = q * 2^e, q = (2^52 + mantissa) / 2^53 in [0.5, 1); llround(q * 2^31) */
    uint64_t v = (b & (((uint64_t)1 << 52) - 1)) | ((uint64_t)1 << 52);
    int64_t qi = (int64_t)((v + ((uint64_t)1 << 21)) >> 22);
    int e = be - 1022;
    if (qi == 2147483648LL)
        qi /= 2, e++;
    if (e < -31)
        return;
    if (e > 30)
        e = 30, qi = 2147483647; /* saturate absurd ratios */
    *M = (int32_t)qi;
    *shift = e;
}

/* A signed 128-bit integer in two words: value = hi * 2^64 + lo. */
struct i128 {
    int64_t hi;
    uint64_t lo;
};

static struct i128 mul_64x32(int64_t a, int32_t m)
{
    uint64_t ua = a < 0 ? 0 - (uint64_t)a : (uint64_t)a;
    uint64_t um = m < 0 ? 0 - (uint64_t)(int64_t)m : (uint64_t)m;
    uint64_t p0 = (ua & 0xffffffffu) * um, p1 = (ua >> 32) * um; /* each < 2^63 */
    uint64_t lo = p0 + (p1 << 32), hi = (p1 >> 32) + (lo < p0);
    if ((a < 0) != (m < 0)) { /* two's complement negation of (hi, lo) */
        lo = ~lo + 1;
        hi = ~hi + (lo == 0);
    }
    return (struct i128){(int64_t)hi, lo};
}

static int32_t sat32(struct i128 v)
{
    if (v.hi == 0 && v.lo <= (uint64_t)INT32_MAX)
        return (int32_t)v.lo;
    if (v.hi == -1 && v.lo >= (uint64_t)(int64_t)INT32_MIN)
        return (int32_t)(int64_t)v.lo;
    return v.hi < 0 ? INT32_MIN : INT32_MAX;
}

int32_t qd_requant(int64_t acc, int32_t M, int32_t shift)
{
    int rs = 31 - shift;
    if (acc >= INT32_MIN && acc <= INT32_MAX && rs >= 1 && rs <= 62) {
        /* the common case in int64: |acc * M| < 2^62, rounding term <= 2^61 */
        int64_t q = acc * M;
        q = (q + ((int64_t)1 << (rs - 1))) >> rs;
        return q > INT32_MAX ? INT32_MAX : q < INT32_MIN ? INT32_MIN : (int32_t)q;
    }
    struct i128 p = mul_64x32(acc, M); /* |p| < 2^94 */
    if (rs <= 0) {                     /* a left shift: anything nonzero past 31 saturates */
        if (rs < -31 && (p.hi || p.lo))
            return p.hi < 0 ? INT32_MIN : INT32_MAX;
        int l = -rs;
        if (l) {
            p.hi = (int64_t)(((uint64_t)p.hi << l) | (p.lo >> (64 - l)));
            p.lo <<= l;
        }
        return sat32(p);
    }
    if (rs > 126)
        return 0; /* |p| / 2^rs < 2^-32: rounds to 0 */
    /* add the rounding term 2^(rs - 1), then shift right arithmetically (floor) */
    if (rs - 1 < 64) {
        uint64_t r = (uint64_t)1 << (rs - 1), lo = p.lo + r;
        p.hi += lo < p.lo;
        p.lo = lo;
    } else {
        p.hi += (int64_t)1 << (rs - 65);
    }
    if (rs < 64) {
        p.lo = (p.lo >> rs) | ((uint64_t)p.hi << (64 - rs));
        p.hi >>= rs;
    } else {
        p.lo = (uint64_t)(p.hi >> (rs - 64));
        p.hi >>= 63;
    }
    return sat32(p);
}

/* ---------------------------------------------------------------- float16 */

uint16_t qd_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, e = (x >> 23) & 0xffu, m = x & 0x7fffffu;
    if (e == 0xff) /* inf or NaN (keep a quiet NaN) */
        return (uint16_t)(sign | 0x7c00u | (m ? 0x200u | (m >> 13) : 0));
    int32_t ee = (int32_t)e - 127 + 15;
    if (ee >= 0x1f)
        return (uint16_t)(sign | 0x7c00u); /* overflow to infinity */
    if (ee <= 0) {
        if (ee < -10)
            return (uint16_t)sign; /* underflows to signed zero */
        m |= 0x800000u;            /* subnormal: shift the implicit bit in */
        uint32_t shift = (uint32_t)(14 - ee);
        uint32_t h = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)ee << 10) | (m >> 13), rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++; /* may carry into the exponent, up to infinity: correct */
    return (uint16_t)(sign | h);
}

float qd_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 0x1f)
        x = sign | 0x7f800000u | (m << 13);
    else if (e == 0) {
        if (!m)
            x = sign;
        else { /* subnormal: normalize */
            int s = 0;
            while (!(m & 0x400u)) {
                m <<= 1;
                s++;
            }
            x = sign | ((uint32_t)(127 - 15 + 1 - s) << 23) | ((m & 0x3ffu) << 13);
        }
    } else
        x = sign | ((e - 15 + 127) << 23) | (m << 13);
    float f;
    memcpy(&f, &x, 4);
    return f;
}

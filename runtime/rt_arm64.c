/* aarch64 SIMD kernels for the runtime's integer convolutions and dense layers (groups == 1,
 * 8-bit input activations in [-128, 127] with a zero point in the same range, weights of at
 * most 8 bits, int32 bias), the counterpart of rt_x86.c for the gateways: NEON (ARMv8.0, e.g.
 * the Raspberry Pi 4's Cortex-A72) and NEON with the dot product (SDOT: Cortex-A55, A76 and
 * later), chosen at run time (getauxval's HWCAP_ASIMDDP on Linux). They live in memory the
 * caller hands to qd_rt_accel, outside the device arena, as on x86.
 *
 * Layout: the layer's input is copied once per run into a padded HWC buffer (channels padded
 * to a multiple of 4), so the K*K taps of an output pixel read 4 consecutive input channels at
 * once; accumulators hold output channels in int32 lanes and 4 output pixels of a row in
 * separate registers (a tile of 4 pixels x 16 output channels).
 * - NEON: the input is stored centred in int16 (x - zero, padding 0) and the weights as int16,
 *   (K*K, cp, coutp); SMLAL/SMLAL2 by element multiply 8 output channels' weights by one input
 *   channel of one pixel (a lane of the 4-channel load) into two int32x4 accumulators.
 * - NEON_DOT: the input is stored as it is (int8, padding: the zero point) and the bias absorbs
 *   -zero * sum(w) (rt_x86.c's VNNI path does the same with x + 128). SDOT multiplies 4 output
 *   channels x 4 input channels of weights, (K*K, cp/4, coutp/4, 4, 4) int8, by the 4 input
 *   channels of one pixel (one 32-bit word broadcast by LD1R) into one int32x4 accumulator.
 * Overflow bound (checked by rt_accel_eligible): 255 * 128 * C*K*K + max|bias| < 2^31. NEON:
 * every product is at most 255 * 128, so every partial sum and the biased accumulator stay in
 * int32. NEON_DOT: products are at most 128 * 128, partial sums at most 2^14 * C*K*K, the folded
 * bias at most |bias| + 2^14 * C*K*K, and partial sum + folded bias is the true accumulator, all
 * inside int32 (the folded bias is added once, at the end).
 * Requantization is vectorized and exact: SMULL to int64, SRSHL by -(31 - shift) (a rounding
 * right shift, ties up, as qd_requant), SQXTN (qd_requant's saturation to int32), a saturating
 * add of the output zero point (saturation lands outside [amin, amax] either way) and the clamp.
 * Both kernels are bit-exact against rt_conv_int_ref (rt_kernels_int.c); tests/test_runtime.c
 * and tests/test_qm.c compare them, scripts/cross.sh aarch64 runs them under qemu -cpu max. */
#if defined(__aarch64__)
#include <arm_neon.h>
#include <string.h>
#if defined(__linux__)
#include <sys/auxv.h>
#endif

#include "rt_impl.h"

#if defined(__clang__)
#define DOT_TARGET __attribute__((target("dotprod")))
#else /* GCC's arm_neon.h declares vdotq_s32 under arch=armv8.2-a+dotprod */
#define DOT_TARGET __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
#define ALWAYS_INLINE __attribute__((always_inline)) inline

#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif

/* Advanced SIMD is part of every aarch64 target the project builds (the compiler's baseline
 * uses it); the dot product is optional (ARMv8.2+) and asked of the kernel. */
int rt_cpu_has(int isa)
{
    if (isa == QD_RT_ISA_NEON)
        return 1;
    if (isa == QD_RT_ISA_NEON_DOT) {
#if defined(__linux__)
        return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__ARM_FEATURE_DOTPROD)
        return 1;
#else
        return 0;
#endif
    }
    return isa == QD_RT_ISA_PORTABLE;
}

int rt_accel_eligible(const struct qd_rt *rt, int i)
{
    const struct rt_node *nd = &rt->nodes[i];
    const struct qd_qm_rec *r = &nd->r;
    if (!rt->integer || (r->op != QD_IOP_CONV && r->op != QD_IOP_DENSE))
        return 0;
    const struct rt_tensor *ti = &rt->t[r->in0];
    if ((r->op == QD_IOP_CONV && r->groups != 1) || r->wfmt != QD_WFMT_INT || r->wbits > 8 ||
        r->bfmt != QD_BFMT_I32 || ti->s.bits != 8 || ti->zero < -128 || ti->zero > 127)
        return 0;
    struct rt_geom g;
    rt_geom_of(rt, i, &g);
    if (!rt_accel_plane_ok(&g))
        return 0;
    int64_t bound = 255LL * 128 * g.C * g.K * g.K, bmax = 0;
    for (int c = 0; c < r->c; c++) {
        int64_t b = rt_bias_at(r, c);
        b = b < 0 ? -b : b;
        bmax = b > bmax ? b : bmax;
        if (nd->shift[c] < -31 || nd->shift[c] > 30) /* SRSHL's count: 1..62 */
            return 0;
    }
    return bound + bmax < ((int64_t)1 << 31);
}

static int round_up(int v, int m)
{
    return (v + m - 1) / m * m;
}

#define A64(x) (((x) + 63) & ~(size_t)63)

/* Output channels per weight vector: 8 int16 (NEON), 4 x 4 int8 (NEON_DOT). */
static int lanes_of(int isa)
{
    return isa == QD_RT_ISA_NEON_DOT ? 4 : 8;
}

size_t rt_accel_node_bytes(const struct qd_rt *rt, int i, int isa)
{
    struct rt_geom g;
    rt_geom_of(rt, i, &g);
    size_t cp = round_up(g.C, 4), coutp = round_up(g.cout, lanes_of(isa));
    size_t w = (size_t)g.K * g.K * cp * coutp * (isa == QD_RT_ISA_NEON_DOT ? 1 : 2);
    return A64(w) + 2 * A64(4 * coutp) + A64(8 * coutp);
}

size_t rt_accel_scratch_bytes(const struct qd_rt *rt, int i, int isa)
{
    struct rt_geom g;
    rt_geom_of(rt, i, &g);
    return A64((size_t)g.Hp * g.Wp * round_up(g.C, 4) * (isa == QD_RT_ISA_NEON_DOT ? 1 : 2));
}

void rt_accel_pack(const struct qd_rt *rt, int i, int isa, struct rt_accel *a, uint8_t **mem)
{
    const struct rt_node *nd = &rt->nodes[i];
    const struct qd_qm_rec *r = &nd->r;
    struct rt_geom g;
    rt_geom_of(rt, i, &g);
    int dot = isa == QD_RT_ISA_NEON_DOT, lanes = lanes_of(isa);
    a->on = 1;
    a->cp = round_up(g.C, 4);
    a->coutp = round_up(g.cout, lanes);
    size_t taps = (size_t)g.K * g.K, nw = taps * a->cp * a->coutp;
    uint8_t *p = *mem;
    a->w8 = dot ? (int8_t *)p : NULL;
    a->w16 = dot ? NULL : (int16_t *)p;
    memset(p, 0, A64(nw * (dot ? 1 : 2)));
    p += A64(nw * (dot ? 1 : 2));
    a->bias = (int32_t *)p;
    p += A64(4 * (size_t)a->coutp);
    a->m32 = (int32_t *)p;
    p += A64(4 * (size_t)a->coutp);
    a->nrs64 = (int64_t *)p;
    p += A64(8 * (size_t)a->coutp);
    *mem = p;
    int nb = a->coutp / lanes, ng = a->cp / 4;
    size_t per = (size_t)g.C * taps;
    int32_t *w = (int32_t *)rt->scratch; /* holds per int32 (the portable kernels' need) */
    int32_t zx = rt->t[r->in0].zero;
    for (int co = 0; co < a->coutp; co++) {
        int64_t colsum = 0;
        if (co < g.cout) {
            rt_unpack_int(r, co, per, w);
            for (int ci = 0; ci < g.C; ci++)
                for (size_t t = 0; t < taps; t++) {
                    int32_t v = w[ci * taps + t];
                    if (dot)
                        a->w8[((t * ng + ci / 4) * nb + co / 4) * 16 + (size_t)(co % 4) * 4 +
                              ci % 4] = (int8_t)v;
                    else
                        a->w16[(t * a->cp + ci) * a->coutp + co] = (int16_t)v;
                    colsum += v;
                }
        }
        int64_t b = co < g.cout ? rt_bias_at(r, co) : 0;
        a->bias[co] = (int32_t)(dot ? b - (int64_t)zx * colsum : b);
        a->m32[co] = co < g.cout ? nd->mult[co] : 0;
        a->nrs64[co] = co < g.cout ? -(31 - (int64_t)nd->shift[co]) : -1;
    }
}

/* ---------------------------------------------------------------- requantization, stores */

struct kargs {
    const void *x;   /* padded input at the tile's first pixel, tap (0, 0) */
    size_t xstep;    /* elements between adjacent output pixels (S * cp) */
    size_t row;      /* elements between input rows (Wp * cp) */
    int K, cp, nb;   /* taps per side, padded input channels, output blocks */
    const struct rt_accel *a;
    int cb0;         /* first output block of the tile */
    void *y;
    size_t pix, ohw; /* output index of the tile's first pixel; plane size */
    int cout, bits;
    int32_t zo, amin, amax;
};

/* Four output channels co..co+3 of one pixel: acc + bias, requantized, offset, clamped. */
static ALWAYS_INLINE int32x4_t requant4(const struct kargs *k, int co, int32x4_t acc)
{
    const struct rt_accel *a = k->a;
    int32x4_t m = vld1q_s32(a->m32 + co), v = vaddq_s32(acc, vld1q_s32(a->bias + co));
    int64x2_t s0 = vld1q_s64(a->nrs64 + co), s1 = vld1q_s64(a->nrs64 + co + 2);
    int64x2_t p0 = vrshlq_s64(vmull_s32(vget_low_s32(v), vget_low_s32(m)), s0);
    int64x2_t p1 = vrshlq_s64(vmull_high_s32(v, m), s1);
    int32x4_t q = vqaddq_s32(vqmovn_high_s64(vqmovn_s64(p0), p1), vdupq_n_s32(k->zo));
    return vminq_s32(vmaxq_s32(q, vdupq_n_s32(k->amin)), vdupq_n_s32(k->amax));
}

/* Output channels co..co+n-1 (n <= 4) of NP pixels, v[p] one pixel's channels in lanes. With 4
 * pixels the 4x4 block is transposed so each channel's 4 pixels are one store. */
static ALWAYS_INLINE void store4(const struct kargs *k, int co, int n, const int32x4_t *v, int NP)
{
    size_t at = (size_t)co * k->ohw + k->pix;
    if (NP == 4) {
        int32x4_t a0 = vtrn1q_s32(v[0], v[1]), a1 = vtrn2q_s32(v[0], v[1]);
        int32x4_t a2 = vtrn1q_s32(v[2], v[3]), a3 = vtrn2q_s32(v[2], v[3]);
        int32x4_t t[4];
#define TRN64(f, x, y) vreinterpretq_s32_s64(f(vreinterpretq_s64_s32(x), vreinterpretq_s64_s32(y)))
        t[0] = TRN64(vtrn1q_s64, a0, a2), t[1] = TRN64(vtrn1q_s64, a1, a3);
        t[2] = TRN64(vtrn2q_s64, a0, a2), t[3] = TRN64(vtrn2q_s64, a1, a3);
#undef TRN64
        for (int j = 0; j < n; j++, at += k->ohw) {
            if (k->bits == 16) {
                vst1_s16((int16_t *)k->y + at, vmovn_s32(t[j]));
            } else {
                int16x4_t h = vmovn_s32(t[j]);
                uint32_t u = vget_lane_u32(vreinterpret_u32_s8(vmovn_s16(vcombine_s16(h, h))), 0);
                memcpy((int8_t *)k->y + at, &u, 4);
            }
        }
        return;
    }
    for (int p = 0; p < NP; p++) {
        int32_t o[4];
        vst1q_s32(o, v[p]);
        for (int j = 0; j < n; j++)
            rt_st(k->y, at + (size_t)j * k->ohw + p, k->bits, o[j]);
    }
}

/* ---------------------------------------------------------------- NEON (int16, SMLAL) */

/* NP pixels x NB blocks of 8 output channels; acc[p][b][h]: channels 8b + 4h .. + 3. */
static ALWAYS_INLINE void tile_s16(const struct kargs *k, const int NP, const int NB)
{
    int32x4_t acc[4][2][2];
    for (int p = 0; p < NP; p++)
        for (int b = 0; b < NB; b++)
            acc[p][b][0] = acc[p][b][1] = vdupq_n_s32(0);
    const int16_t *x0 = (const int16_t *)k->x;
    const size_t cs = (size_t)k->nb * 8; /* int16 weights per input channel (coutp) */
    const int16_t *w0 = k->a->w16 + (size_t)k->cb0 * 8;
    const int K = k->K, cp = k->cp;
    for (int ky = 0; ky < K; ky++)
        for (int kx = 0; kx < K; kx++) {
            const int16_t *xr = x0 + ky * k->row + (size_t)kx * cp;
            const int16_t *wt = w0 + (size_t)(ky * K + kx) * cp * cs;
            for (int c = 0; c < cp; c += 4, wt += 4 * cs) {
                int16x4_t xv[4];
                for (int p = 0; p < NP; p++)
                    xv[p] = vld1_s16(xr + p * k->xstep + c);
#define LANE(l)                                                                                    \
    for (int b = 0; b < NB; b++) {                                                                 \
        int16x8_t w = vld1q_s16(wt + (l) * cs + b * 8);                                            \
        for (int p = 0; p < NP; p++) {                                                             \
            acc[p][b][0] = vmlal_lane_s16(acc[p][b][0], vget_low_s16(w), xv[p], l);                \
            acc[p][b][1] = vmlal_high_lane_s16(acc[p][b][1], w, xv[p], l);                         \
        }                                                                                          \
    }
                LANE(0)
                LANE(1)
                LANE(2)
                LANE(3)
#undef LANE
            }
        }
    for (int b = 0; b < NB; b++)
        for (int h = 0; h < 2; h++) {
            int co = (k->cb0 + b) * 8 + 4 * h, n = k->cout - co < 4 ? k->cout - co : 4;
            if (n <= 0)
                continue;
            int32x4_t v[4];
            for (int p = 0; p < NP; p++)
                v[p] = requant4(k, co, acc[p][b][h]);
            store4(k, co, n, v, NP);
        }
}

#define S16_TILE(NP, NB)                                                                           \
    static void tile_s16_##NP##_##NB(const struct kargs *k)                                        \
    {                                                                                              \
        tile_s16(k, NP, NB);                                                                       \
    }
S16_TILE(4, 2)
S16_TILE(4, 1)
S16_TILE(1, 2)
S16_TILE(1, 1)
#undef S16_TILE

/* ---------------------------------------------------------------- NEON_DOT (int8, SDOT) */

/* NP pixels x NB blocks of 4 output channels. */
static DOT_TARGET ALWAYS_INLINE void tile_dot(const struct kargs *k, const int NP, const int NB)
{
    int32x4_t acc[4][4];
    for (int p = 0; p < NP; p++)
        for (int b = 0; b < NB; b++)
            acc[p][b] = vdupq_n_s32(0);
    const int8_t *x0 = (const int8_t *)k->x;
    const size_t wg = (size_t)k->nb * 16; /* bytes of weights per group of 4 input channels */
    const int8_t *w0 = k->a->w8 + (size_t)k->cb0 * 16;
    const int K = k->K, cp = k->cp, ng = cp / 4;
    for (int ky = 0; ky < K; ky++)
        for (int kx = 0; kx < K; kx++) {
            const int8_t *xr = x0 + ky * k->row + (size_t)kx * cp;
            const int8_t *wt = w0 + (size_t)(ky * K + kx) * ng * wg;
            int c = 0;
            for (; c + 4 <= ng; c += 4) { /* 16 channels: one load a pixel, 4 lanes of it */
                int8x16_t xv[4];
                for (int p = 0; p < NP; p++)
                    xv[p] = vld1q_s8(xr + p * k->xstep + 4 * c);
#define DLANE(l)                                                                                   \
    for (int b = 0; b < NB; b++) {                                                                 \
        int8x16_t w = vld1q_s8(wt + (l) * wg + b * 16);                                            \
        for (int p = 0; p < NP; p++)                                                               \
            acc[p][b] = vdotq_laneq_s32(acc[p][b], w, xv[p], l);                                   \
    }
                DLANE(0)
                DLANE(1)
                DLANE(2)
                DLANE(3)
#undef DLANE
                wt += 4 * wg;
            }
            for (; c < ng; c++, wt += wg) { /* the last 4, 8 or 12 channels */
                int8x16_t wv[4];
                for (int b = 0; b < NB; b++)
                    wv[b] = vld1q_s8(wt + b * 16);
                for (int p = 0; p < NP; p++) {
                    /* 4-aligned: cp and every offset are multiples of 4 */
                    const int32_t *xw = (const int32_t *)(const void *)(xr + p * k->xstep + 4 * c);
                    int8x16_t xv = vreinterpretq_s8_s32(vld1q_dup_s32(xw));
                    for (int b = 0; b < NB; b++)
                        acc[p][b] = vdotq_s32(acc[p][b], wv[b], xv);
                }
            }
        }
    for (int b = 0; b < NB; b++) {
        int co = (k->cb0 + b) * 4, n = k->cout - co < 4 ? k->cout - co : 4;
        int32x4_t v[4];
        for (int p = 0; p < NP; p++)
            v[p] = requant4(k, co, acc[p][b]);
        store4(k, co, n, v, NP);
    }
}

#define DOT_TILE(NP, NB)                                                                           \
    static DOT_TARGET void tile_dot_##NP##_##NB(const struct kargs *k)                             \
    {                                                                                              \
        tile_dot(k, NP, NB);                                                                       \
    }
DOT_TILE(4, 4)
DOT_TILE(4, 3)
DOT_TILE(4, 2)
DOT_TILE(4, 1)
DOT_TILE(1, 4)
DOT_TILE(1, 3)
DOT_TILE(1, 2)
DOT_TILE(1, 1)
#undef DOT_TILE

/* ---------------------------------------------------------------- the layer */

/* 8 rows of 8 bytes transposed in registers: r[c][p] becomes r[p][c]. */
static inline void transpose8(int8x8_t r[8])
{
    int8x8_t b[8];
    int16x4_t c[8];
    for (int k = 0; k < 4; k++) { /* bytes: pairs of rows interleaved */
        b[2 * k] = vtrn1_s8(r[2 * k], r[2 * k + 1]);
        b[2 * k + 1] = vtrn2_s8(r[2 * k], r[2 * k + 1]);
    }
    for (int h = 0; h < 2; h++) /* halfwords: 4 rows' columns j, j + 4 */
        for (int k = 0; k < 2; k++) {
            int16x4_t x = vreinterpret_s16_s8(b[4 * h + k]);
            int16x4_t y = vreinterpret_s16_s8(b[4 * h + k + 2]);
            c[4 * h + k] = vtrn1_s16(x, y), c[4 * h + k + 2] = vtrn2_s16(x, y);
        }
    for (int k = 0; k < 4; k++) { /* words: the two halves of each column */
        int32x2_t x = vreinterpret_s32_s16(c[k]), y = vreinterpret_s32_s16(c[k + 4]);
        r[k] = vreinterpret_s8_s32(vtrn1_s32(x, y));
        r[k + 4] = vreinterpret_s8_s32(vtrn2_s32(x, y));
    }
}

/* The input (C, H, W) int8 into the padded (Hp, Wp, cp) buffer: x - zero as int16 (NEON;
 * padding 0), or x as int8 (NEON_DOT; padding the zero point, so that it adds -zero * w, which
 * the folded bias cancels). 8 channels x 8 pixels at a time by a transpose in registers. */
static void copy_input(const struct qd_rt *rt, int i, const struct rt_geom *g, int dot)
{
    const struct rt_tensor *ti = &rt->t[rt->nodes[i].r.in0];
    const int8_t *x = (const int8_t *)(rt->act + ti->off);
    const int C = g->C, H = g->H, W = g->W, P = g->P, Wp = g->Wp, cp = rt->acc[i].cp;
    const int C8 = C & ~7, W8 = W & ~7;
    const int32_t zx = ti->zero; /* in [-128, 127] (rt_accel_eligible) */
    const int8x8_t z8 = vdup_n_s8((int8_t)zx);
    int8_t *x8 = (int8_t *)rt->accel_scratch;
    int16_t *x16 = (int16_t *)rt->accel_scratch;
    size_t n = (size_t)g->Hp * Wp * cp;
    if (dot)
        memset(x8, (uint8_t)zx, n);
    else
        memset(x16, 0, n * 2);
    for (int yy = 0; yy < H; yy++) {
        size_t row = ((size_t)(yy + P) * Wp + P) * cp; /* the row's first pixel */
        for (int c0 = 0; c0 < C8; c0 += 8)
            for (int x0 = 0; x0 < W8; x0 += 8) {
                int8x8_t r[8];
                for (int k = 0; k < 8; k++)
                    r[k] = vld1_s8(x + ((size_t)(c0 + k) * H + yy) * W + x0);
                transpose8(r);
                for (int k = 0; k < 8; k++) {
                    size_t at = row + (size_t)(x0 + k) * cp + c0;
                    if (dot)
                        vst1_s8(x8 + at, r[k]);
                    else
                        vst1q_s16(x16 + at, vsubl_s8(r[k], z8));
                }
            }
        for (int c = 0; c < C; c++) { /* what the transposes left */
            const int8_t *src = x + ((size_t)c * H + yy) * W;
            for (int xx = c < C8 ? W8 : 0; xx < W; xx++) {
                size_t at = row + (size_t)xx * cp + c;
                if (dot)
                    x8[at] = src[xx];
                else
                    x16[at] = (int16_t)(src[xx] - zx);
            }
        }
    }
}

void rt_accel_conv(const struct qd_rt *rt, int i)
{
    const struct rt_node *nd = &rt->nodes[i];
    const struct rt_accel *a = &rt->acc[i];
    const struct rt_tensor *to = &rt->t[i + 1];
    struct rt_geom g;
    rt_geom_of(rt, i, &g);
    int dot = rt->isa == QD_RT_ISA_NEON_DOT, bmax = dot ? 4 : 2, elem = dot ? 1 : 2;
    copy_input(rt, i, &g, dot);
    struct kargs k = {.xstep = (size_t)g.S * a->cp, .row = (size_t)g.Wp * a->cp, .K = g.K,
                      .cp = a->cp, .nb = a->coutp / lanes_of(rt->isa), .a = a,
                      .y = rt->act + to->off, .ohw = (size_t)g.OH * g.OW, .cout = g.cout,
                      .bits = to->s.bits, .zo = to->zero, .amin = nd->amin, .amax = nd->amax};
    static void (*const s16[2][3])(const struct kargs *) = {
        {0, tile_s16_1_1, tile_s16_1_2}, {0, tile_s16_4_1, tile_s16_4_2}};
    static void (*const d8[2][5])(const struct kargs *) = {
        {0, tile_dot_1_1, tile_dot_1_2, tile_dot_1_3, tile_dot_1_4},
        {0, tile_dot_4_1, tile_dot_4_2, tile_dot_4_3, tile_dot_4_4}};
    for (int oy = 0; oy < g.OH; oy++)
        for (int cb = 0; cb < k.nb;) {
            int NB = k.nb - cb < bmax ? k.nb - cb : bmax;
            k.cb0 = cb;
            for (int ox = 0; ox < g.OW;) {
                int full = g.OW - ox >= 4;
                k.x = rt->accel_scratch + ((size_t)oy * g.S * k.row + (size_t)ox * k.xstep) * elem;
                k.pix = (size_t)oy * g.OW + ox;
                (dot ? d8[full][NB] : s16[full][NB])(&k);
                ox += full ? 4 : 1;
            }
            cb += NB;
        }
}

int rt_accel_add(const struct qd_rt *rt, int i)
{
    (void)rt, (void)i;
    return 0; /* residual adds stay on the portable kernels */
}

#else
typedef int rt_no_arm64; /* not an aarch64 target: rt_x86.c or rt_generic.c is the back end */
#endif

/* Cortex-M DSP back end (ARMv7E-M: Cortex-M4, M7, M33 with the DSP extension) for integer
 * convolutions and dense layers with 8-bit input activations, 2-, 4- or 8-bit weights and
 * int32 bias. Its one instruction that matters is SMLAD: two signed 16x16 products and a
 * 32-bit accumulate.
 *
 * Weights are read in place (from flash), one 32-bit word of E = 32 / bits values at a time,
 * and split into pairs of 16-bit lanes without a table: 8-bit values with SXTB16 (bytes 0 and
 * 2, then 1 and 3, rotated); 4- and 2-bit values by masking a shifted copy of the word so that
 * each value lands in the top bits of its lane ((w << (16 - bits * (j + 1))) & mask), where it
 * reads as v * 2^(16 - bits), exact in int16. Either way pair j of a word holds values j and
 * j + E/2, and the im2col column is written in that order. Two output channels by two output
 * pixels per pass (four accumulators), so each weight pair and each input pair loaded serves
 * two multiply-accumulates.
 *
 * Overflow: inputs are centred (x - zero, |x| <= 255, int16) and |w| <= 128, so a product is
 * below 2^15 * 2^8 and a sum over per < 65536 values stays in int32 (8-bit). Scaled lanes (4-
 * and 2-bit) give products below 2^23, two per SMLAD: 128 SMLADs fit in int32, after which the
 * partial sum is shifted down (exactly: every term is a multiple of 2^(16 - bits)) into the
 * real accumulator. Bit-exact against rt_conv_int_ref (tests/test_runtime.c compares them on
 * odd shapes). Where the DSP extension is missing (the host's tests) the same code runs on C
 * versions of the three instructions; a 32-bit Arm core without it (Cortex-M0+) omits the file.
 * Little-endian only, like every target the project builds. */
#if defined(__ARM_FEATURE_DSP) || !defined(__arm__)
#include "rt_impl.h"

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
static inline int32_t smlad(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlad((int32_t)a, (int32_t)b, acc);
}
static inline uint32_t sxtb16(uint32_t w)
{
    return (uint32_t)__sxtb16((int32_t)w);
}
static inline uint32_t sxtb16_ror8(uint32_t w)
{
    return (uint32_t)__sxtb16((int32_t)(w >> 8 | w << 24)); /* SXTB16 with ROR #8 */
}
#else
static inline int32_t smlad(uint32_t a, uint32_t b, int32_t acc)
{
    int32_t lo = (int16_t)(a & 0xffff) * (int16_t)(b & 0xffff);
    int32_t hi = (int16_t)(a >> 16) * (int16_t)(b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)lo + (uint32_t)hi); /* wraps like the core */
}
static inline uint32_t sxtb16(uint32_t w)
{
    return ((uint32_t)(int8_t)(w & 0xff) & 0xffff) | (uint32_t)(int8_t)(w >> 16 & 0xff) << 16;
}
static inline uint32_t sxtb16_ror8(uint32_t w)
{
    return sxtb16(w >> 8 | w << 24);
}
#endif

static inline uint32_t ld32(const uint8_t *p)
{
    uint32_t u;
    __builtin_memcpy(&u, p, 4); /* one unaligned LDR on ARMv7E-M, even -ffreestanding */
    return u;
}

/* Table entries: an offset from the column's top-left input position (< 2^26: tensors are
 * capped at 2^26 values) and, in the top 6 bits, the tap ky * K + kx (K <= 5: a window's taps
 * fit one 32-bit mask), or PAD_TAP for the zeros that fill the last word of a row. */
#define TAP_SHIFT 26
#define OFF_MASK ((1u << TAP_SHIFT) - 1)
#define PAD_TAP 31u
#define MAX_K 5

struct dgeom {
    int H, W, K, S, P, OW, cig, cog, G, bits, E;
    size_t per, padded, ohw, plane; /* padded: per rounded up to E; plane: H * W */
};

static void dgeom_of(const struct qd_rt *rt, int i, struct dgeom *g)
{
    const struct qd_qm_rec *r = &rt->nodes[i].r;
    const struct rt_tensor *ti = &rt->t[r->in0];
    int dense = r->op == QD_IOP_DENSE;
    g->H = dense ? 1 : ti->s.h;
    g->W = dense ? 1 : ti->s.w;
    g->K = dense ? 1 : r->k;
    g->S = dense ? 1 : r->stride;
    g->P = dense ? 0 : r->pad;
    g->G = dense ? 1 : r->groups;
    g->cig = (dense ? (int)r->in_len : ti->s.c) / g->G;
    g->cog = r->c / g->G;
    g->OW = r->w;
    g->bits = r->wbits;
    g->E = 32 / r->wbits;
    g->per = rt_per(r);
    g->padded = (g->per + (size_t)g->E - 1) / (size_t)g->E * (size_t)g->E;
    g->ohw = (size_t)r->h * r->w;
    g->plane = (size_t)g->H * g->W;
}

int rt_conv_dsp_ok(const struct qd_rt *rt, int i)
{
    const struct qd_qm_rec *r = &rt->nodes[i].r;
    if (!rt->dsp || !rt->integer || rt->t[r->in0].s.bits != 8 || r->wfmt != QD_WFMT_INT ||
        (r->wbits != 2 && r->wbits != 4 && r->wbits != 8) || r->bfmt != QD_BFMT_I32 ||
        (r->op == QD_IOP_CONV && r->k > MAX_K))
        return 0;
    size_t per = rt_per(r);
    int cog = r->op == QD_IOP_DENSE ? r->c : r->c / r->groups;
    /* the last word of the last row reads up to 3 bytes past the weights: still in the blob
     * (the CRC at least follows), which is checked rather than assumed */
    uint64_t end = (uint64_t)(r->weights - rt->blob) + qd_qm_packed_bytes(r->wcount, r->wbits);
    /* rows start on a byte, or the weights are few enough to unpack to int8 once a run;
     * depthwise (one channel a group) has no channel pairs to share */
    if (per >= 65536 || ((per * (size_t)r->wbits) % 8 && !rt_dsp_expands(r)) || cog < 2 ||
        end + 3 > rt->h.total)
        return 0;
    /* bias + sum stays in int32 (store2's fast path relies on it) */
    int64_t bmax = 0;
    for (int c = 0; c < r->c; c++) {
        int64_t b = rt_bias_at(r, c);
        bmax = b < -bmax ? -b : b > bmax ? b : bmax;
    }
    return 255 * 128 * (int64_t)per + bmax < ((int64_t)1 << 31);
}

/* Table index (pair j, lane l: 2 * j + l) of natural index k of a column (ci, ky, kx order):
 * pair j of word w holds values w * E + j and w * E + j + E/2. lg: log2(E / 2). */
static inline size_t tab_pos(size_t k, int lg)
{
    size_t half = (size_t)1 << lg, j = k & (2 * half - 1);
    return 2 * ((k >> (lg + 1) << lg) + (j & (half - 1))) + (j >> lg);
}

static void build_offsets(const struct dgeom *g, uint32_t *tab)
{
    int lg = g->E == 4 ? 1 : g->E == 8 ? 2 : 3;
    size_t k = 0;
    for (int ci = 0; ci < g->cig; ci++)
        for (int ky = 0; ky < g->K; ky++)
            for (int kx = 0; kx < g->K; kx++, k++)
                tab[tab_pos(k, lg)] = (uint32_t)((size_t)ci * g->plane + (size_t)ky * g->W + kx) |
                                      (uint32_t)(ky * g->K + kx) << TAP_SHIFT;
    for (; k < g->padded; k++)
        tab[tab_pos(k, lg)] = PAD_TAP << TAP_SHIFT;
}

/* The taps of a K x K window at (iy, ix) that fall inside the input, as a bit set. */
static uint32_t window_mask(const struct dgeom *g, int iy, int ix)
{
    uint32_t m = 0;
    for (int ky = 0; ky < g->K; ky++)
        for (int kx = 0; kx < g->K; kx++)
            if (iy + ky >= 0 && iy + ky < g->H && ix + kx >= 0 && ix + kx < g->W)
                m |= 1u << (ky * g->K + kx);
    return m;
}

/* Columns for output pixels p and q (q == p for a lone last pixel) of one group, interleaved
 * word by word: word 2j is pair j of p's column, word 2j + 1 pair j of q's. Windows inside
 * the input copy through the table; one crossing the border tests each tap against its mask
 * (padding reads as a centred 0). The filler of the last word is zeroed after. */
static void build_cols(const struct dgeom *g, const int16_t *xs, const uint32_t *tab, size_t p,
                       size_t q, uint32_t *col)
{
    int iy0 = (int)(p / (size_t)g->OW) * g->S - g->P, ix0 = (int)(p % (size_t)g->OW) * g->S - g->P;
    int iy1 = (int)(q / (size_t)g->OW) * g->S - g->P, ix1 = (int)(q % (size_t)g->OW) * g->S - g->P;
    size_t pairs = g->padded / 2;
    int inside = iy0 >= 0 && ix0 >= 0 && iy0 + g->K <= g->H && ix0 + g->K <= g->W &&
                 iy1 >= 0 && ix1 >= 0 && iy1 + g->K <= g->H && ix1 + g->K <= g->W;
    if (inside) {
        const uint16_t *b0 = (const uint16_t *)xs + (size_t)iy0 * g->W + ix0;
        const uint16_t *b1 = (const uint16_t *)xs + (size_t)iy1 * g->W + ix1;
        for (size_t j = 0; j < pairs; j++) {
            uint32_t oa = tab[2 * j] & OFF_MASK, ob = tab[2 * j + 1] & OFF_MASK;
            col[2 * j] = b0[oa] | (uint32_t)b0[ob] << 16;
            col[2 * j + 1] = b1[oa] | (uint32_t)b1[ob] << 16;
        }
    } else {
        uint32_t m0 = window_mask(g, iy0, ix0), m1 = window_mask(g, iy1, ix1);
        ptrdiff_t o0 = (ptrdiff_t)iy0 * g->W + ix0, o1 = (ptrdiff_t)iy1 * g->W + ix1;
        const uint16_t *x = (const uint16_t *)xs;
        for (size_t a = 0; a < 2 * pairs; a++) {
            uint32_t e = tab[a], tap = e >> TAP_SHIFT;
            ptrdiff_t o = (ptrdiff_t)(e & OFF_MASK);
            uint32_t v0 = m0 >> tap & 1 ? x[o0 + o] : 0, v1 = m1 >> tap & 1 ? x[o1 + o] : 0;
            uint16_t *h = (uint16_t *)&col[a & ~(size_t)1];
            h[a & 1] = (uint16_t)v0, h[2 + (a & 1)] = (uint16_t)v1;
        }
        return; /* PAD_TAP is never in a mask: the filler is already 0 */
    }
    if (g->padded != g->per)
        for (size_t a = 2 * pairs - (size_t)g->E; a < 2 * pairs; a++)
            if (tab[a] >> TAP_SHIFT == PAD_TAP) {
                uint16_t *h = (uint16_t *)&col[a & ~(size_t)1];
                h[a & 1] = 0, h[2 + (a & 1)] = 0;
            }
}

/* Sums of two weight rows (a, b) against two columns x over ng words of E values:
 * o = {a.x0, a.x1, b.x0, b.x1}. On the core the loops are written in assembly: the compiler
 * neither folds the rotation into SXTB16 nor the shift into AND, and spills the loop count;
 * each loop below is the C loop beside it, instruction for instruction in meaning. The
 * assembly reads memory without declaring it (a "memory" clobber makes the compiler reload
 * every field around the loop; "m" operands leave it no registers): that is sound because
 * nothing it reads is written in the functions it inlines into (the channels_* functions,
 * reached through a pointer after build_cols has returned, only read the columns and weights). */
#if defined(__ARM_FEATURE_DSP)
/* one word of 4 values of each row: 2 LDR, 2 LDRD, 4 SXTB16, 8 SMLAD */
#define S8_WORD                                                                                \
    "ldr %[u], [%[a]], #4\n\t"                                                                 \
    "ldr %[v], [%[b]], #4\n\t"                                                                 \
    "ldrd %[x0], %[x1], [%[x]], #16\n\t"                                                       \
    "sxtb16 %[t], %[u]\n\t"                                                                    \
    "smlad %[s00], %[t], %[x0], %[s00]\n\t"                                                    \
    "smlad %[s01], %[t], %[x1], %[s01]\n\t"                                                    \
    "sxtb16 %[t], %[v]\n\t"                                                                    \
    "smlad %[s10], %[t], %[x0], %[s10]\n\t"                                                    \
    "smlad %[s11], %[t], %[x1], %[s11]\n\t"                                                    \
    "ldrd %[x0], %[x1], [%[x], #-8]\n\t"                                                       \
    "sxtb16 %[t], %[u], ror #8\n\t"                                                            \
    "smlad %[s00], %[t], %[x0], %[s00]\n\t"                                                    \
    "smlad %[s01], %[t], %[x1], %[s01]\n\t"                                                    \
    "sxtb16 %[t], %[v], ror #8\n\t"                                                            \
    "smlad %[s10], %[t], %[x0], %[s10]\n\t"                                                    \
    "smlad %[s11], %[t], %[x1], %[s11]\n\t"
/* pair at byte offset OFF of x (from the post-incremented pointer), lanes from shift SH */
#define LOW_PAIR(OFF, SH)                                                                      \
    "ldrd %[x0], %[x1], [%[x], #" #OFF "]\n\t"                                                 \
    "and %[t], %[m], %[u], lsl #" #SH "\n\t"                                                   \
    "smlad %[s00], %[t], %[x0], %[s00]\n\t"                                                    \
    "smlad %[s01], %[t], %[x1], %[s01]\n\t"                                                    \
    "and %[t], %[m], %[v], lsl #" #SH "\n\t"                                                   \
    "smlad %[s10], %[t], %[x0], %[s10]\n\t"                                                    \
    "smlad %[s11], %[t], %[x1], %[s11]\n\t"
#define DOT_OPERANDS                                                                           \
    : [a] "+&r"(a), [b] "+&r"(b), [x] "+&r"(x), [s00] "+&r"(s00), [s01] "+&r"(s01),           \
      [s10] "+&r"(s10), [s11] "+&r"(s11), [u] "=&r"(u), [v] "=&r"(v), [t] "=&r"(t),            \
      [x0] "=&r"(x0), [x1] "=&r"(x1)
#endif

static void dot_s8(const uint8_t *a, const uint8_t *b, const uint32_t *x, size_t ng, int32_t *o)
{
    int32_t s00 = 0, s01 = 0, s10 = 0, s11 = 0;
#if defined(__ARM_FEATURE_DSP)
    if (ng) {
        const uint32_t *end = x + 4 * ng;
        uint32_t u, v, t, x0, x1;
        __asm__ volatile("1:\n\t" S8_WORD "cmp %[x], %[end]\n\t"
                                          "bne 1b\n\t" DOT_OPERANDS
                         : [end] "r"(end)
                         : "cc");
    }
#else
    for (size_t gw = 0; gw < ng; gw++, a += 4, b += 4, x += 4) {
        uint32_t u = ld32(a), v = ld32(b);
        uint32_t pa = sxtb16(u), pb = sxtb16(v);
        s00 = smlad(pa, x[0], s00);
        s01 = smlad(pa, x[1], s01);
        s10 = smlad(pb, x[0], s10);
        s11 = smlad(pb, x[1], s11);
        pa = sxtb16_ror8(u), pb = sxtb16_ror8(v);
        s00 = smlad(pa, x[2], s00);
        s01 = smlad(pa, x[3], s01);
        s10 = smlad(pb, x[2], s10);
        s11 = smlad(pb, x[3], s11);
    }
#endif
    o[0] = s00, o[1] = s01, o[2] = s10, o[3] = s11;
}

#define PAIR(sh, M)                                                                            \
    do {                                                                                       \
        uint32_t pa = (u << (sh)) & (M), pb = (v << (sh)) & (M);                               \
        s00 = smlad(pa, x[0], s00);                                                            \
        s01 = smlad(pa, x[1], s01);                                                            \
        s10 = smlad(pb, x[0], s10);                                                            \
        s11 = smlad(pb, x[1], s11);                                                            \
        x += 2;                                                                                \
    } while (0)

/* 4-bit: a word is 8 values, 4 pairs, lanes scaled by 2^12; 32 words (128 SMLADs) a block. */
static void dot_s4(const uint8_t *a, const uint8_t *b, const uint32_t *x, size_t ng, int32_t *o)
{
    int32_t t00 = 0, t01 = 0, t10 = 0, t11 = 0;
    for (size_t g0 = 0; g0 < ng; g0 += 32) {
        size_t n = ng - g0 < 32 ? ng - g0 : 32;
        int32_t s00 = 0, s01 = 0, s10 = 0, s11 = 0;
#if defined(__ARM_FEATURE_DSP)
        const uint32_t *end = x + 8 * n;
        uint32_t u, v, t, x0, x1, m = 0xF000F000u;
        __asm__ volatile("1:\n\t"
                         "ldr %[u], [%[a]], #4\n\t"
                         "ldr %[v], [%[b]], #4\n\t"
                         "add %[x], %[x], #32\n\t" LOW_PAIR(-32, 12) LOW_PAIR(-24, 8)
                             LOW_PAIR(-16, 4) LOW_PAIR(-8, 0) "cmp %[x], %[end]\n\t"
                                                             "bne 1b\n\t" DOT_OPERANDS
                         : [end] "r"(end), [m] "r"(m)
                         : "cc");
#else
        for (size_t gw = 0; gw < n; gw++, a += 4, b += 4) {
            uint32_t u = ld32(a), v = ld32(b);
            PAIR(12, 0xF000F000u);
            PAIR(8, 0xF000F000u);
            PAIR(4, 0xF000F000u);
            PAIR(0, 0xF000F000u);
        }
#endif
        t00 += s00 >> 12, t01 += s01 >> 12, t10 += s10 >> 12, t11 += s11 >> 12;
    }
    o[0] = t00, o[1] = t01, o[2] = t10, o[3] = t11;
}

/* 2-bit: a word is 16 values, 8 pairs, lanes scaled by 2^14; 16 words a block. */
static void dot_s2(const uint8_t *a, const uint8_t *b, const uint32_t *x, size_t ng, int32_t *o)
{
    int32_t t00 = 0, t01 = 0, t10 = 0, t11 = 0;
    for (size_t g0 = 0; g0 < ng; g0 += 16) {
        size_t n = ng - g0 < 16 ? ng - g0 : 16;
        int32_t s00 = 0, s01 = 0, s10 = 0, s11 = 0;
#if defined(__ARM_FEATURE_DSP)
        const uint32_t *end = x + 16 * n;
        uint32_t u, v, t, x0, x1, m = 0xC000C000u;
        __asm__ volatile("1:\n\t"
                         "ldr %[u], [%[a]], #4\n\t"
                         "ldr %[v], [%[b]], #4\n\t"
                         "add %[x], %[x], #64\n\t" LOW_PAIR(-64, 14) LOW_PAIR(-56, 12)
                             LOW_PAIR(-48, 10) LOW_PAIR(-40, 8) LOW_PAIR(-32, 6) LOW_PAIR(-24, 4)
                                 LOW_PAIR(-16, 2) LOW_PAIR(-8, 0) "cmp %[x], %[end]\n\t"
                                                                  "bne 1b\n\t" DOT_OPERANDS
                         : [end] "r"(end), [m] "r"(m)
                         : "cc");
#else
        for (size_t gw = 0; gw < n; gw++, a += 4, b += 4) {
            uint32_t u = ld32(a), v = ld32(b);
            PAIR(14, 0xC000C000u);
            PAIR(12, 0xC000C000u);
            PAIR(10, 0xC000C000u);
            PAIR(8, 0xC000C000u);
            PAIR(6, 0xC000C000u);
            PAIR(4, 0xC000C000u);
            PAIR(2, 0xC000C000u);
            PAIR(0, 0xC000C000u);
        }
#endif
        t00 += s00 >> 14, t01 += s01 >> 14, t10 += s10 >> 14, t11 += s11 >> 14;
    }
    o[0] = t00, o[1] = t01, o[2] = t10, o[3] = t11;
}
#undef PAIR

/* What storing a layer's outputs needs, read once per layer. */
struct dout {
    uint8_t *y;
    const uint8_t *bias;
    const int32_t *mult, *shift;
    int32_t zo, lo, hi;
    int bits;
    size_t ohw;
};

/* Requantizes, clamps and stores channel c's sums at pixels p, q (y: the channel's plane,
 * OB its element bits, a constant in each caller). The usual multiplier (shift < 0: a right
 * shift of 32 or more) is one SMLAL with the rounding term and one shift of the high word:
 * qd_requant's arithmetic, which cannot saturate there (|acc * M| < 2^62); other shifts take
 * rt_requant. bias + sum fits int32 (rt_conv_dsp_ok). Everything comes in as values: stores
 * through a byte pointer may alias any memory, which would make the compiler reload fields. */
static inline __attribute__((always_inline)) void store2(void *y, int ob, int32_t b, int32_t M,
                                                        int32_t sh, int32_t zo, int32_t lo,
                                                        int32_t hi, size_t p, size_t q,
                                                        int32_t s0, int32_t s1)
{
    int32_t a0 = b + s0, a1 = b + s1, v0, v1;
    int rs = 31 - sh;
    if (rs >= 32) { /* |v| < 2^30: v + zo cannot wrap */
        int64_t rnd = rs == 32 ? (int64_t)1 << 31 : (int64_t)(1u << (rs - 33)) << 32;
        v0 = (int32_t)(((int64_t)a0 * M + rnd) >> 32) >> (rs - 32);
        v1 = (int32_t)(((int64_t)a1 * M + rnd) >> 32) >> (rs - 32);
        v0 += zo, v1 += zo;
        v0 = v0 < lo ? lo : v0 > hi ? hi : v0;
        v1 = v1 < lo ? lo : v1 > hi ? hi : v1;
    } else {
        v0 = rt_clampi((int64_t)rt_requant(a0, M, sh) + zo, lo, hi);
        v1 = rt_clampi((int64_t)rt_requant(a1, M, sh) + zo, lo, hi);
    }
    if (ob == 8) {
        ((int8_t *)y)[p] = (int8_t)v0, ((int8_t *)y)[q] = (int8_t)v1;
    } else {
        ((int16_t *)y)[p] = (int16_t)v0, ((int16_t *)y)[q] = (int16_t)v1;
    }
}

/* A dense layer's one column, centred, in pair order, in both column slots (the 2 x 2
 * kernel's second pixel repeats the first: dense layers are a small share of a CNN's work). */
static void dense_col(const struct dgeom *g, const int8_t *x, int32_t zx, uint32_t *col)
{
    size_t half = (size_t)g->E / 2;
    for (size_t k0 = 0; k0 < g->padded; k0 += (size_t)g->E)
        for (size_t j = 0; j < half; j++, col += 2) {
            size_t ka = k0 + j, kb = ka + half;
            uint32_t a = ka < g->per ? (uint16_t)(x[ka] - zx) : 0;
            uint32_t b = kb < g->per ? (uint16_t)(x[kb] - zx) : 0;
            col[0] = col[1] = a | b << 16;
        }
}

/* Every channel pair of group gi against the columns of pixels p, q; BITS (weights) and OB
 * (outputs) are constants in each caller, so the dot product and the stores inline. */
static inline __attribute__((always_inline)) void channels(const struct dout *o,
                                                           const uint8_t *w, const struct dgeom *g,
                                                           int bits, int ob, int gi,
                                                           const uint32_t *col, size_t p, size_t q)
{
    size_t ng = g->padded / (size_t)g->E, rowbytes = g->per * (size_t)bits / 8, ohw = o->ohw;
    const uint8_t *bias = o->bias;
    const int32_t *mult = o->mult, *shift = o->shift;
    int32_t zo = o->zo, lo = o->lo, hi = o->hi;
    uint8_t *y = o->y;
    size_t plane = ohw * (size_t)(ob / 8);
    for (int c0 = gi * g->cog, end = c0 + g->cog; c0 < end; c0 += 2) {
        int c1 = c0 + 1 < end ? c0 + 1 : c0;
        int32_t s[4];
        const uint8_t *wa = w + (size_t)c0 * rowbytes, *wb = w + (size_t)c1 * rowbytes;
        if (bits == 8)
            dot_s8(wa, wb, col, ng, s);
        else if (bits == 4)
            dot_s4(wa, wb, col, ng, s);
        else
            dot_s2(wa, wb, col, ng, s);
        store2(y + (size_t)c0 * plane, ob, (int32_t)ld32(bias + 4 * (size_t)c0), mult[c0],
               shift[c0], zo, lo, hi, p, q, s[0], s[1]);
        store2(y + (size_t)c1 * plane, ob, (int32_t)ld32(bias + 4 * (size_t)c1), mult[c1],
               shift[c1], zo, lo, hi, p, q, s[2], s[3]);
    }
}

#define CHANNELS(BITS, OB)                                                                     \
    static void channels_s##BITS##_o##OB(const struct dout *o, const uint8_t *w,               \
                                         const struct dgeom *g, int gi, const uint32_t *col,  \
                                         size_t p, size_t q)                                   \
    {                                                                                          \
        channels(o, w, g, BITS, OB, gi, col, p, q);                                            \
    }
CHANNELS(8, 8)
CHANNELS(4, 8)
CHANNELS(2, 8)
CHANNELS(8, 16)
CHANNELS(4, 16)
CHANNELS(2, 16)
#undef CHANNELS

/* Scratch: the table (per + 15 entries), the centred input (int16), the two columns (per + 15
 * words): within what the planner gives an integer convolution (runtime.c, read_nodes). */
void rt_conv_dsp(const struct qd_rt *rt, int i)
{
    const struct qd_qm_rec *r = &rt->nodes[i].r;
    const struct rt_tensor *ti = &rt->t[r->in0];
    struct dgeom g;
    dgeom_of(rt, i, &g);
    uint32_t *tab = (uint32_t *)rt->scratch;
    int16_t *xs = (int16_t *)(rt->scratch + ALIGN(g.padded * 4));
    uint32_t *col = (uint32_t *)((uint8_t *)xs + ALIGN((size_t)ti->s.len * 2));
    const uint8_t *w = r->weights;
    if (rt_dsp_expands(r)) { /* rows off a byte: unpack to int8 after the columns, run as 8-bit */
        int8_t *wx = (int8_t *)col + ALIGN((g.ohw > g.per + 15 ? g.ohw : g.per + 15) * 4);
        for (uint32_t j = 0; j < r->wcount; j++)
            wx[j] = (int8_t)qd_qm_unpack_one(r->weights, j, g.bits);
        memset(wx + r->wcount, 0, 4);
        w = (const uint8_t *)wx;
        g.bits = 8, g.E = 4;
        g.padded = (g.per + 3) / 4 * 4;
    }
    const int8_t *x = (const int8_t *)(rt->act + ti->off);
    int32_t zx = ti->zero;
    if (r->op == QD_IOP_DENSE) { /* one column, straight from the input, twice */
        dense_col(&g, x, zx, col);
    } else {
        for (uint32_t j = 0; j < ti->s.len; j++)
            xs[j] = (int16_t)(x[j] - zx);
        build_offsets(&g, tab);
    }
    typedef void (*run_fn)(const struct dout *, const uint8_t *, const struct dgeom *, int,
                           const uint32_t *, size_t, size_t);
    static const run_fn runs[2][3] = {{channels_s8_o8, channels_s4_o8, channels_s2_o8},
                                      {channels_s8_o16, channels_s4_o16, channels_s2_o16}};
    run_fn run = runs[rt->t[i + 1].s.bits == 16][g.bits == 8 ? 0 : g.bits == 4 ? 1 : 2];
    const struct rt_node *nd = &rt->nodes[i];
    const struct rt_tensor *to = &rt->t[i + 1];
    struct dout o = {rt->act + to->off, r->bias, nd->mult, nd->shift, to->zero, nd->amin,
                     nd->amax, to->s.bits, g.ohw};
    for (int gi = 0; gi < g.G; gi++) {
        const int16_t *xg = xs + (size_t)gi * g.cig * g.plane;
        for (size_t p = 0; p < g.ohw; p += 2) {
            size_t q = p + 1 < g.ohw ? p + 1 : p;
            if (r->op != QD_IOP_DENSE)
                build_cols(&g, xg, tab, p, q, col);
            run(&o, w, &g, gi, col, p, q);
        }
    }
}
#else
typedef int rt_dsp_unused; /* a 32-bit Arm core without the DSP extension */
#endif

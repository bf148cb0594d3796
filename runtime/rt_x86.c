/* Host SIMD kernels for the runtime's integer convolutions and dense layers (groups == 1, 8-bit
 * input activations, weights of at most 8 bits, int32 bias): AVX-512 VNNI and AVX2, chosen at
 * run time. They live in memory the caller hands to qd_rt_accel, outside the device arena, so
 * the arena size (the device's RAM cost) does not depend on the host.
 *
 * Layout: the layer's input is copied once per run into a padded HWC buffer, so the K*K taps of
 * any output pixel read 4 (VNNI) or 2 (AVX2) consecutive input channels as one 32-bit word that
 * is broadcast against a vector of weights for 16 (8) output channels; accumulators hold output
 * channels in lanes and a few pixels in registers.
 * - VNNI: vpdpbusd multiplies unsigned bytes by signed bytes, so the input is stored as
 *   x + 128 (padding: zero + 128, the value of a centred 0) and the bias absorbs
 *   -(zero + 128) * sum(w). Requantization is vectorized in int64 lanes.
 * - AVX2: the input is stored centred in int16 (x - zero, padding 0) and vpmaddwd multiplies
 *   int16 pairs exactly; requantization is the scalar qd_requant.
 * Overflow bound (checked by rt_accel_eligible): 255 * 128 * K + max|bias| < 2^31, so every
 * partial sum, the folded bias and the biased accumulator stay in int32, and
 * |acc * M| < 2^62 leaves room for the rounding term in int64.
 * Both kernels are bit-exact against rt_conv_int_ref (rt_kernels_int.c) (tests/test_qm.c checks it). */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <string.h>

#include "rt_impl.h"

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define AVX2_TARGET __attribute__((target("avx2")))
#define ALWAYS_INLINE __attribute__((always_inline)) inline

int rt_cpu_has(int isa)
{
    __builtin_cpu_init();
    if (isa == QD_RT_ISA_AVX2)
        return __builtin_cpu_supports("avx2");
    if (isa == QD_RT_ISA_AVX512VNNI)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vnni");
    return isa == QD_RT_ISA_PORTABLE;
}

int rt_accel_eligible(const struct qd_rt *rt, int i)
{
    const struct qd_qm_rec *r = &rt->nodes[i].r;
    if (!rt->integer || (r->op != QD_IOP_CONV && r->op != QD_IOP_DENSE))
        return 0;
    if ((r->op == QD_IOP_CONV && r->groups != 1) || r->wfmt != QD_WFMT_INT || r->wbits > 8 ||
        r->bfmt != QD_BFMT_I32 || rt->t[r->in0].s.bits != 8)
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
    }
    return bound + bmax < ((int64_t)1 << 31);
}

static int round_up(int v, int m)
{
    return (v + m - 1) / m * m;
}

#define A16(x) (((x) + 63) & ~(size_t)63)

size_t rt_accel_node_bytes(const struct qd_rt *rt, int i, int isa)
{
    struct rt_geom g;
    rt_geom_of(rt, i, &g);
    int vnni = isa == QD_RT_ISA_AVX512VNNI;
    size_t cp = round_up(g.C, vnni ? 4 : 2), coutp = round_up(g.cout, vnni ? 16 : 8);
    size_t w = (size_t)g.K * g.K * cp * coutp * (vnni ? 1 : 2);
    return A16(w) + A16(4 * coutp) + 3 * A16(8 * coutp);
}

size_t rt_accel_scratch_bytes(const struct qd_rt *rt, int i, int isa)
{
    struct rt_geom g;
    rt_geom_of(rt, i, &g);
    int vnni = isa == QD_RT_ISA_AVX512VNNI;
    return A16((size_t)g.Hp * g.Wp * round_up(g.C, vnni ? 4 : 2) * (vnni ? 1 : 2));
}

void rt_accel_pack(const struct qd_rt *rt, int i, int isa, struct rt_accel *a, uint8_t **mem)
{
    const struct rt_node *nd = &rt->nodes[i];
    const struct qd_qm_rec *r = &nd->r;
    struct rt_geom g;
    rt_geom_of(rt, i, &g);
    int vnni = isa == QD_RT_ISA_AVX512VNNI, lanes = vnni ? 16 : 8, grp = vnni ? 4 : 2;
    a->on = 1;
    a->cp = round_up(g.C, grp);
    a->coutp = round_up(g.cout, lanes);
    size_t taps = (size_t)g.K * g.K, nw = taps * a->cp * a->coutp;
    uint8_t *p = *mem;
    a->w8 = vnni ? (int8_t *)p : NULL;
    a->w16 = vnni ? NULL : (int16_t *)p;
    memset(p, 0, A16(nw * (vnni ? 1 : 2)));
    p += A16(nw * (vnni ? 1 : 2));
    a->bias = (int32_t *)p;
    p += A16(4 * (size_t)a->coutp);
    a->m64 = (int64_t *)p;
    p += A16(8 * (size_t)a->coutp);
    a->rnd64 = (int64_t *)p;
    p += A16(8 * (size_t)a->coutp);
    a->rs64 = (int64_t *)p;
    p += A16(8 * (size_t)a->coutp);
    *mem = p;
    int nb = a->coutp / lanes, ng = a->cp / grp;
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
                    size_t at = ((t * ng + ci / grp) * nb + co / lanes) * lanes * grp +
                                (size_t)(co % lanes) * grp + ci % grp;
                    if (vnni)
                        a->w8[at] = (int8_t)v;
                    else
                        a->w16[at] = (int16_t)v;
                    colsum += v;
                }
        }
        int64_t b = co < g.cout ? rt_bias_at(r, co) : 0;
        a->bias[co] = (int32_t)(vnni ? b - (int64_t)(zx + 128) * colsum : b);
        int32_t M = co < g.cout ? nd->mult[co] : 0, sh = co < g.cout ? nd->shift[co] : 0;
        a->m64[co] = M;
        a->rs64[co] = 31 - sh;
        a->rnd64[co] = (int64_t)1 << (30 - sh);
    }
}

static inline int32_t rd32(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline void store_out(void *y, size_t at, int bits, int32_t v)
{
    if (bits == 16)
        ((int16_t *)y)[at] = (int16_t)v;
    else
        ((int8_t *)y)[at] = (int8_t)v;
}

/* ---------------------------------------------------------------- AVX-512 VNNI */

struct kargs {
    const uint8_t *x; /* padded input at the tile's first pixel, tap (0, 0) */
    size_t xstep;     /* bytes between adjacent output pixels (S * cp * elem) */
    size_t row;       /* bytes between input rows (Wp * cp * elem) */
    int K, ng, nb;    /* taps per side, input channel groups, output lane blocks */
    const struct rt_accel *a;
    int cb0;          /* first output block of the tile */
    void *y;
    size_t pix, ohw;  /* output index of the tile's first pixel; plane size */
    int cout, bits, zo, amin, amax;
};

/* In-register transpose of 16 rows of 16 bytes. */
static VNNI_TARGET inline void transpose16(__m128i r[16])
{
    __m128i t[16];
    for (int k = 0; k < 8; k++) {
        t[k] = _mm_unpacklo_epi8(r[2 * k], r[2 * k + 1]);
        t[k + 8] = _mm_unpackhi_epi8(r[2 * k], r[2 * k + 1]);
    }
    /* t[k]: bytes of rows 2k,2k+1 for columns 0-7 (k<8) or 8-15 (k>=8), interleaved */
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++) {
            r[h * 8 + k] = _mm_unpacklo_epi16(t[h * 8 + 2 * k], t[h * 8 + 2 * k + 1]);
            r[h * 8 + k + 4] = _mm_unpackhi_epi16(t[h * 8 + 2 * k], t[h * 8 + 2 * k + 1]);
        }
    for (int h = 0; h < 4; h++)
        for (int k = 0; k < 2; k++) {
            t[h * 4 + k] = _mm_unpacklo_epi32(r[h * 4 + 2 * k], r[h * 4 + 2 * k + 1]);
            t[h * 4 + k + 2] = _mm_unpackhi_epi32(r[h * 4 + 2 * k], r[h * 4 + 2 * k + 1]);
        }
    for (int h = 0; h < 8; h++) {
        __m128i a = t[h * 2], b = t[h * 2 + 1];
        t[h * 2] = _mm_unpacklo_epi64(a, b);
        t[h * 2 + 1] = _mm_unpackhi_epi64(a, b);
    }
    for (int k = 0; k < 16; k++)
        r[k] = t[k];
}

#define CAT3(a, b, c) a##b##_##c
#define CAT(a, b, c) CAT3(a, b, c)
/* Tile shapes: NP * NB accumulators within the 32 (AVX-512) or 16 (AVX2) vector registers. */
#define TILE_VNNI 1
#define NP 6
#define NB 4
#include "rt_x86_tile.h"
#undef TILE_VNNI
#undef NP
#undef NB
#define TILE_VNNI 1
#define NP 1
#define NB 4
#include "rt_x86_tile.h"
#undef TILE_VNNI
#undef NP
#undef NB
#define TILE_VNNI 1
#define NP 8
#define NB 3
#include "rt_x86_tile.h"
#undef TILE_VNNI
#undef NP
#undef NB
#define TILE_VNNI 1
#define NP 1
#define NB 3
#include "rt_x86_tile.h"
#undef TILE_VNNI
#undef NP
#undef NB
#define TILE_VNNI 1
#define NP 12
#define NB 2
#include "rt_x86_tile.h"
#undef TILE_VNNI
#undef NP
#undef NB
#define TILE_VNNI 1
#define NP 1
#define NB 2
#include "rt_x86_tile.h"
#undef TILE_VNNI
#undef NP
#undef NB
#define TILE_VNNI 1
#define NP 16
#define NB 1
#include "rt_x86_tile.h"
#undef TILE_VNNI
#undef NP
#undef NB
#define TILE_VNNI 1
#define NP 1
#define NB 1
#include "rt_x86_tile.h"
#undef TILE_VNNI
#undef NP
#undef NB
#define TILE_VNNI 0
#define NP 3
#define NB 4
#include "rt_x86_tile.h"
#undef TILE_VNNI
#undef NP
#undef NB
#define TILE_VNNI 0
#define NP 1
#define NB 4
#include "rt_x86_tile.h"
#undef TILE_VNNI
#undef NP
#undef NB
#define TILE_VNNI 0
#define NP 4
#define NB 3
#include "rt_x86_tile.h"
#undef TILE_VNNI
#undef NP
#undef NB
#define TILE_VNNI 0
#define NP 1
#define NB 3
#include "rt_x86_tile.h"
#undef TILE_VNNI
#undef NP
#undef NB
#define TILE_VNNI 0
#define NP 6
#define NB 2
#include "rt_x86_tile.h"
#undef TILE_VNNI
#undef NP
#undef NB
#define TILE_VNNI 0
#define NP 1
#define NB 2
#include "rt_x86_tile.h"
#undef TILE_VNNI
#undef NP
#undef NB
#define TILE_VNNI 0
#define NP 12
#define NB 1
#include "rt_x86_tile.h"
#undef TILE_VNNI
#undef NP
#undef NB
#define TILE_VNNI 0
#define NP 1
#define NB 1
#include "rt_x86_tile.h"
#undef TILE_VNNI
#undef NP
#undef NB

static VNNI_TARGET void conv_vnni(const struct qd_rt *rt, int i, const struct rt_geom *g)
{
    const struct rt_node *nd = &rt->nodes[i];
    const struct rt_accel *a = &rt->acc[i];
    const struct rt_tensor *ti = &rt->t[nd->r.in0], *to = &rt->t[i + 1];
    const int8_t *x = (const int8_t *)(rt->act + ti->off);
    uint8_t *xp = rt->accel_scratch;
    int cp = a->cp;
    memset(xp, (uint8_t)(ti->zero + 128), (size_t)g->Hp * g->Wp * cp);
    const int C = g->C, H = g->H, W = g->W, P = g->P, Wp = g->Wp; /* locals: no aliasing */
    const int C16 = C & ~15, W16 = W & ~15;
    const __m128i flip = _mm_set1_epi8((char)0x80);
    for (int yy = 0; yy < H; yy++) {
        uint8_t *drow = xp + ((size_t)(yy + P) * Wp + P) * cp;
        /* 16 channels x 16 pixels at a time: a 16x16 byte transpose in registers */
        for (int c0 = 0; c0 < C16; c0 += 16)
            for (int x0 = 0; x0 < W16; x0 += 16) {
                __m128i r[16];
                for (int k = 0; k < 16; k++)
                    r[k] = _mm_xor_si128(flip, _mm_loadu_si128((const __m128i *)(
                                                   x + ((size_t)(c0 + k) * H + yy) * W + x0)));
                transpose16(r);
                for (int k = 0; k < 16; k++)
                    _mm_storeu_si128((__m128i *)(drow + (size_t)(x0 + k) * cp + c0), r[k]);
            }
        for (int c = 0; c < C; c++) {
            const int8_t *src = x + ((size_t)c * H + yy) * W;
            for (int xx = c < C16 ? W16 : 0; xx < W; xx++)
                drow[(size_t)xx * cp + c] = (uint8_t)(src[xx] + 128);
        }
    }
    struct kargs k = {.xstep = (size_t)g->S * cp, .row = (size_t)g->Wp * cp, .K = g->K,
                      .ng = cp / 4, .nb = a->coutp / 16, .a = a, .y = rt->act + to->off,
                      .ohw = (size_t)g->OH * g->OW, .cout = g->cout, .bits = to->s.bits,
                      .zo = to->zero, .amin = nd->amin, .amax = nd->amax};
    for (int oy = 0; oy < g->OH; oy++)
        for (int cb = 0; cb < k.nb;) {
            int left = k.nb - cb, NB = left >= 4 ? 4 : left;
            static const int np_of[5] = {0, 16, 12, 8, 6};
            int NP = np_of[NB];
            k.cb0 = cb;
            for (int ox = 0; ox < g->OW;) {
                int full = g->OW - ox >= NP;
                k.x = xp + (size_t)oy * g->S * k.row + (size_t)ox * k.xstep;
                k.pix = (size_t)oy * g->OW + ox;
                switch (NB * 2 + full) {
                case 9: tile_vnni_6_4(&k); break;
                case 8: tile_vnni_1_4(&k); break;
                case 7: tile_vnni_8_3(&k); break;
                case 6: tile_vnni_1_3(&k); break;
                case 5: tile_vnni_12_2(&k); break;
                case 4: tile_vnni_1_2(&k); break;
                case 3: tile_vnni_16_1(&k); break;
                default: tile_vnni_1_1(&k); break;
                }
                ox += full ? NP : 1;
            }
            cb += NB;
        }
}

/* ---------------------------------------------------------------- AVX2 */

static AVX2_TARGET void conv_avx2(const struct qd_rt *rt, int i, const struct rt_geom *g)
{
    const struct rt_node *nd = &rt->nodes[i];
    const struct rt_accel *a = &rt->acc[i];
    const struct rt_tensor *ti = &rt->t[nd->r.in0], *to = &rt->t[i + 1];
    const int8_t *x = (const int8_t *)(rt->act + ti->off);
    int16_t *xp = (int16_t *)rt->accel_scratch;
    int cp = a->cp;
    memset(xp, 0, (size_t)g->Hp * g->Wp * cp * 2);
    int32_t zx = ti->zero;
    const int C = g->C, H = g->H, W = g->W, P = g->P, Wp = g->Wp; /* locals: no aliasing */
    for (int c = 0; c < C; c++)
        for (int yy = 0; yy < H; yy++) {
            const int8_t *src = x + ((size_t)c * H + yy) * W;
            int16_t *dst = xp + ((size_t)(yy + P) * Wp + P) * cp + c;
            for (int xx = 0; xx < W; xx++)
                dst[(size_t)xx * cp] = (int16_t)(src[xx] - zx);
        }
    /* byte strides: one int16 pair is 4 bytes, so ng pairs per pixel span 4 * ng bytes */
    struct kargs k = {.xstep = (size_t)g->S * cp * 2, .row = (size_t)g->Wp * cp * 2, .K = g->K,
                      .ng = cp / 2, .nb = a->coutp / 8, .a = a, .y = rt->act + to->off,
                      .ohw = (size_t)g->OH * g->OW, .cout = g->cout, .bits = to->s.bits,
                      .zo = to->zero, .amin = nd->amin, .amax = nd->amax};
    for (int oy = 0; oy < g->OH; oy++)
        for (int cb = 0; cb < k.nb;) {
            int left = k.nb - cb, NB = left >= 4 ? 4 : left;
            static const int np_of[5] = {0, 12, 6, 4, 3};
            int NP = np_of[NB];
            k.cb0 = cb;
            for (int ox = 0; ox < g->OW;) {
                int full = g->OW - ox >= NP;
                k.x = (const uint8_t *)xp + (size_t)oy * g->S * k.row + (size_t)ox * k.xstep;
                k.pix = (size_t)oy * g->OW + ox;
                switch (NB * 2 + full) {
                case 9: tile_avx2_3_4(&k, rt, i); break;
                case 8: tile_avx2_1_4(&k, rt, i); break;
                case 7: tile_avx2_4_3(&k, rt, i); break;
                case 6: tile_avx2_1_3(&k, rt, i); break;
                case 5: tile_avx2_6_2(&k, rt, i); break;
                case 4: tile_avx2_1_2(&k, rt, i); break;
                case 3: tile_avx2_12_1(&k, rt, i); break;
                default: tile_avx2_1_1(&k, rt, i); break;
                }
                ox += full ? NP : 1;
            }
            cb += NB;
        }
}

void rt_accel_conv(const struct qd_rt *rt, int i)
{
    struct rt_geom g;
    rt_geom_of(rt, i, &g);
    if (rt->isa == QD_RT_ISA_AVX512VNNI)
        conv_vnni(rt, i, &g);
    else
        conv_avx2(rt, i, &g);
}

/* Integer residual add, 8-bit inputs and output, in int64 lanes: the same three
 * requantizations as add_int in runtime.c. |(x - z) << 20| < 2^28 and the input multipliers
 * are <= 1/2, so no intermediate saturates and every product stays below 2^60. */
static VNNI_TARGET void add_vnni(const struct qd_rt *rt, int i)
{
    const struct rt_node *nd = &rt->nodes[i];
    const struct rt_tensor *ta = &rt->t[nd->r.in0], *tb = &rt->t[nd->r.in1], *to = &rt->t[i + 1];
    const int8_t *pa = (const int8_t *)(rt->act + ta->off), *pb = (const int8_t *)(rt->act + tb->off);
    int8_t *py = (int8_t *)(rt->act + to->off);
    const __m512i za = _mm512_set1_epi32(ta->zero), zb = _mm512_set1_epi32(tb->zero);
    const __m512i ma = _mm512_set1_epi64(nd->add_ma), mb = _mm512_set1_epi64(nd->add_mb);
    const __m512i mo = _mm512_set1_epi64(nd->add_mo);
    const __m512i ra = _mm512_set1_epi64((int64_t)1 << (30 - nd->add_sa));
    const __m512i rb = _mm512_set1_epi64((int64_t)1 << (30 - nd->add_sb));
    const __m512i ro = _mm512_set1_epi64((int64_t)1 << (30 - nd->add_so));
    const __m128i sa = _mm_cvtsi32_si128(31 - nd->add_sa), sb = _mm_cvtsi32_si128(31 - nd->add_sb);
    const __m128i so = _mm_cvtsi32_si128(31 - nd->add_so);
    const __m512i lo = _mm512_set1_epi64((int64_t)nd->amin - to->zero);
    const __m512i hi = _mm512_set1_epi64((int64_t)nd->amax - to->zero);
    const __m512i zo = _mm512_set1_epi64(to->zero);
    int sh = nd->add_shift;
    uint32_t n = to->s.len, j = 0;
    for (; j + 8 <= n; j += 8) {
        __m512i a = _mm512_cvtepi8_epi64(_mm_loadl_epi64((const __m128i *)(pa + j)));
        __m512i b = _mm512_cvtepi8_epi64(_mm_loadl_epi64((const __m128i *)(pb + j)));
        a = _mm512_slli_epi64(_mm512_sub_epi64(a, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(za))), sh);
        b = _mm512_slli_epi64(_mm512_sub_epi64(b, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(zb))), sh);
        a = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(a, ma), ra), sa);
        b = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(b, mb), rb), sb);
        __m512i s = _mm512_add_epi64(a, b);
        s = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(s, mo), ro), so);
        s = _mm512_add_epi64(_mm512_min_epi64(_mm512_max_epi64(s, lo), hi), zo);
        _mm_storel_epi64((__m128i *)(py + j), _mm512_cvtepi64_epi8(s));
    }
    for (; j < n; j++) {
        int64_t a = qd_requant((int64_t)(pa[j] - ta->zero) * ((int64_t)1 << sh), nd->add_ma, nd->add_sa);
        int64_t b = qd_requant((int64_t)(pb[j] - tb->zero) * ((int64_t)1 << sh), nd->add_mb, nd->add_sb);
        int64_t v = (int64_t)qd_requant(a + b, nd->add_mo, nd->add_so) + to->zero;
        py[j] = (int8_t)(v < nd->amin ? nd->amin : v > nd->amax ? nd->amax : v);
    }
}

int rt_accel_add(const struct qd_rt *rt, int i)
{
    const struct rt_node *nd = &rt->nodes[i];
    if (rt->isa != QD_RT_ISA_AVX512VNNI || rt->t[nd->r.in0].s.bits != 8 ||
        rt->t[nd->r.in1].s.bits != 8 || rt->t[i + 1].s.bits != 8)
        return 0;
    add_vnni(rt, i);
    return 1;
}

#else
typedef int rt_no_x86; /* not an x86 target: rt_generic.c is the back end */
#endif

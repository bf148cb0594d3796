/* Runtime internals shared by the runtime's own files: loading and dispatch (runtime.c), the
 * integer kernels (rt_kernels_int.c), the float kernels (rt_kernels_float.c) and the SIMD back
 * ends (rt_x86.c, rt_arm64.c; rt_generic.c where there is none). Only the runtime sees this
 * header. */
#ifndef QD_RUNTIME_RT_IMPL_H
#define QD_RUNTIME_RT_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "qm_format.h"
#include "qmath.h"
#include "runtime.h"

struct rt_tensor {
    struct qd_qm_tshape s;
    int32_t last;       /* last step that reads it (n: the output) */
    size_t off, bytes;  /* in the activation arena; bytes per sample */
    float scale;
    int32_t zero;
    int placed;
};

struct rt_node {
    struct qd_qm_rec r;
    int32_t *mult, *shift; /* per channel (integer conv/dense) */
    int32_t amin, amax;    /* output clamp (integer) */
    int32_t add_ma, add_sa, add_mb, add_sb, add_mo, add_so; /* integer add */
    int32_t add_shift;                                       /* 20 for int8, 15 for int16 */
};

struct qd_rt {
    struct qd_qm_header h;
    const uint8_t *blob;
    int n;
    struct rt_node *nodes;
    struct rt_tensor *t;
    uint8_t *act;
    size_t act_bytes;
    uint8_t *scratch;
    size_t scratch_bytes, used;
    int integer;
    int reference; /* run the plain reference kernels (tests compare the two bit for bit) */
    int dsp;       /* use the Cortex-M DSP kernels (RT_HAVE_DSP; the host's tests set it) */
    struct rt_accel *acc; /* per node, or NULL: host SIMD kernels (rt_x86.c, rt_arm64.c) */
    uint8_t *accel_scratch;
    int isa;              /* enum qd_rt_isa in use by the accelerated kernels */
    uint64_t *prof;       /* per-layer ticks of prof_now, or NULL */
    uint64_t (*prof_now)(void);
};

#define ALIGN(x) (((x) + 15) & ~(size_t)15)

/* One accelerated convolution or dense layer: weights repacked for the ISA (see rt_x86.c and
 * rt_arm64.c), bias with the zero-point correction folded in, and the per-channel
 * requantization terms. */
struct rt_accel {
    int on;
    int cp, coutp;  /* input channels padded to the ISA's group; outputs to its lane count */
    int8_t *w8;     /* VNNI: (K*K, cp/4, coutp/16, 16, 4); NEON_DOT: (K*K, cp/4, coutp/4, 4, 4) */
    int16_t *w16;   /* AVX2: (K*K, cp/2, coutp/8, 8, 2); NEON: (K*K, cp, coutp) */
    int32_t *bias;  /* (coutp) */
    int64_t *m64, *rnd64, *rs64; /* (coutp) requantization (x86): multiplier, rounding, shift */
    int32_t *m32;   /* (coutp) requantization (aarch64): multiplier */
    int64_t *nrs64; /* (coutp) -(31 - shift): SRSHL's rounding right shift (aarch64) */
};

/* The SIMD back end of this target (rt_x86.c, rt_arm64.c, or rt_generic.c: none). */
int rt_cpu_has(int isa);
int rt_accel_eligible(const struct qd_rt *rt, int i);
size_t rt_accel_node_bytes(const struct qd_rt *rt, int i, int isa);
size_t rt_accel_scratch_bytes(const struct qd_rt *rt, int i, int isa);
void rt_accel_pack(const struct qd_rt *rt, int i, int isa, struct rt_accel *a, uint8_t **mem);
void rt_accel_conv(const struct qd_rt *rt, int i);
int rt_accel_add(const struct qd_rt *rt, int i); /* 0: not applicable */

/* The Cortex-M DSP back end (rt_dsp.c): compiled where the core has the DSP extension, and on
 * hosts (non-Arm targets) for the tests, on C versions of its instructions; used by default
 * only where the core has it. */
#if defined(__ARM_FEATURE_DSP)
#define RT_HAVE_DSP 1
#else
#define RT_HAVE_DSP 0
#endif
#if defined(__ARM_FEATURE_DSP) || !defined(__arm__)
#define RT_HAVE_DSP_KERNEL 1
void rt_conv_dsp(const struct qd_rt *rt, int i);
int rt_conv_dsp_ok(const struct qd_rt *rt, int i);
#else
#define RT_HAVE_DSP_KERNEL 0
#endif

/* Integer kernels (rt_kernels_int.c): *_ref are the plain loops the others are tested against.
 * Each runs node i of rt, reading its input tensors and writing tensor i + 1. */
void rt_conv_int_ref(const struct qd_rt *rt, int i);
void rt_conv_s8_fast(const struct qd_rt *rt, int i);
int rt_conv_s8_fast_ok(const struct qd_rt *rt, int i);
void rt_add_int_ref(const struct qd_rt *rt, int i);
void rt_add_s8(const struct qd_rt *rt, int i);
int rt_add_s8_ok(const struct qd_rt *rt, int i);
void rt_pool_int_ref(const struct qd_rt *rt, int i);
void rt_maxpool_s8(const struct qd_rt *rt, int i);
int rt_maxpool_s8_ok(const struct qd_rt *rt, int i);
void rt_clamp_int_ref(const struct qd_rt *rt, int i);
/* Float kernels (rt_kernels_float.c, compiled with QD_RT_FLOAT). */
void rt_conv_f32_ref(const struct qd_rt *rt, int i); /* also dynamic range (int weights) */
void rt_conv_f32_fast(const struct qd_rt *rt, int i);
void rt_other_f32_ref(const struct qd_rt *rt, int i);

int64_t rt_bias_at(const struct qd_qm_rec *r, int c);
void rt_unpack_int(const struct qd_qm_rec *r, int co, size_t per, int32_t *w);

/* ---------------------------------------------------------------- element access */

static inline int32_t rt_ld(const void *p, size_t i, int bits)
{
    return bits == 16 ? ((const int16_t *)p)[i] : ((const int8_t *)p)[i];
}

static inline void rt_st(void *p, size_t i, int bits, int32_t v)
{
    if (bits == 16)
        ((int16_t *)p)[i] = (int16_t)v;
    else
        ((int8_t *)p)[i] = (int8_t)v;
}

static inline int32_t rt_clampi(int64_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

static inline float rt_rdf(const uint8_t *p, size_t i)
{
    float v;
    memcpy(&v, p + 4 * i, 4);
    return v;
}

static inline float rt_wscale(const struct qd_qm_rec *r, int c)
{
    return rt_rdf(r->scales, r->nscale == 1 ? 0 : (size_t)c);
}

/* Output columns ox whose input column ox*S - P + kx lies inside [0, W): [*lo, *hi). */
static inline void rt_valid_cols(int P, int kx, int S, int W, int OW, int *lo, int *hi)
{
    *lo = (P - kx + S - 1) / S;
    *hi = (W - 1 + P - kx) / S + 1;
    if (*lo < 0)
        *lo = 0;
    if (*hi > OW)
        *hi = OW;
}

/* Bytes of scratch the DSP kernel takes to unpack a layer's weights to int8 once a run, for a
 * layer of 2- or 4-bit weights whose rows do not start on a byte (a first layer of 1 or 3
 * input channels), up to 16 KiB of weights. The planner reserves it for every layer whose rows
 * would be off a byte at 2 bits (per % 4 != 0), whatever its bits, so that the arena does not
 * depend on the policy's weight widths (policy/cost.c's RAM table relies on that). */
#define RT_DSP_EXPAND_MAX 16384
static inline uint32_t rt_dsp_expand_reserve(const struct qd_qm_rec *r)
{
    size_t per = r->op == QD_IOP_DENSE ? r->in_len : (size_t)(r->cin / r->groups) * r->k * r->k;
    return r->wfmt == QD_WFMT_INT && per % 4 && r->wcount <= RT_DSP_EXPAND_MAX
               ? r->wcount + 4 /* the last row's last word reads 3 bytes past it */
               : 0;
}

/* Whether the DSP kernel unpacks this layer's weights (into the reserve above). */
static inline int rt_dsp_expands(const struct qd_qm_rec *r)
{
    size_t per = r->op == QD_IOP_DENSE ? r->in_len : (size_t)(r->cin / r->groups) * r->k * r->k;
    return (r->wbits == 2 || r->wbits == 4) && (per * r->wbits) % 8 && rt_dsp_expand_reserve(r);
}

/* qd_requant, inline for the kernels' hot path: the same common case (an accumulator within
 * int32, a right shift of 1..62) in 64 bits, qd_requant for the rest. Same result bit for bit. */
static inline int32_t rt_requant(int64_t acc, int32_t M, int32_t shift)
{
    int rs = 31 - shift;
    if (acc >= INT32_MIN && acc <= INT32_MAX && rs >= 1 && rs <= 62) {
        int64_t q = (int64_t)(int32_t)acc * M;
        q = (q + ((int64_t)1 << (rs - 1))) >> rs;
        return q > INT32_MAX ? INT32_MAX : q < INT32_MIN ? INT32_MIN : (int32_t)q;
    }
    return qd_requant(acc, M, shift);
}

/* A convolution's or dense layer's geometry (dense: a 1x1 convolution over a 1x1 image of
 * in_len channels), with the input plane padded on every side: the SIMD back ends' view. */
struct rt_geom {
    int dense, H, W, C, K, S, P, OH, OW, Hp, Wp, cout;
};

static inline void rt_geom_of(const struct qd_rt *rt, int i, struct rt_geom *g)
{
    const struct qd_qm_rec *r = &rt->nodes[i].r;
    const struct rt_tensor *ti = &rt->t[r->in0];
    g->dense = r->op == QD_IOP_DENSE;
    g->H = g->dense ? 1 : ti->s.h;
    g->W = g->dense ? 1 : ti->s.w;
    g->C = g->dense ? (int)r->in_len : ti->s.c;
    g->K = g->dense ? 1 : r->k;
    g->S = g->dense ? 1 : r->stride;
    g->P = g->dense ? 0 : r->pad;
    g->OH = r->h, g->OW = r->w, g->cout = r->c;
    g->Hp = g->H + 2 * g->P, g->Wp = g->W + 2 * g->P;
}

/* Whether the SIMD back ends may take a layer of geometry g: their scratch is the input plane
 * with its padding laid out (rt_accel_scratch_bytes), and the format allows any padding, so a
 * padding far past the window would make a tiny model ask gigabytes of the host. The plane,
 * channels rounded up to 4, is held to the format's tensor cap; past it the portable kernels
 * (which never lay the padding out) run the layer. */
static inline int rt_accel_plane_ok(const struct rt_geom *g)
{
    return (uint64_t)g->Hp * (uint64_t)g->Wp * (((uint64_t)g->C + 3) & ~(uint64_t)3) <=
           QD_QM_MAX_ELEMS;
}

/* Elements per output channel of a conv or dense node. */
static inline size_t rt_per(const struct qd_qm_rec *r)
{
    return r->op == QD_IOP_DENSE ? r->in_len : (size_t)(r->cin / r->groups) * r->k * r->k;
}

#endif

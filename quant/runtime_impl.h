/* Runtime internals shared by the portable runtime (runtime.c) and the host SIMD kernels
 * (runtime_x86.c). Only the runtime sees this header. */
#ifndef QD_QUANT_RUNTIME_IMPL_H
#define QD_QUANT_RUNTIME_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "quant/qm.h"
#include "quant/runtime.h"

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
    struct rt_accel *acc; /* per node, or NULL: host SIMD kernels (runtime_x86.c) */
    uint8_t *accel_scratch;
    int isa;              /* enum qd_rt_isa in use by the accelerated kernels */
    uint64_t *prof;       /* per-layer nanoseconds, or NULL */
};

#define ALIGN(x) (((x) + 15) & ~(size_t)15)

/* One accelerated convolution or dense layer: weights repacked for the ISA (see runtime_x86.c),
 * bias with the zero-point correction folded in, and the per-channel requantization terms. */
struct rt_accel {
    int on;
    int cp, coutp;  /* input channels padded to the ISA's group; outputs to its lane count */
    int8_t *w8;     /* VNNI: (K*K, cp/4, coutp/16, 16, 4) */
    int16_t *w16;   /* AVX2: (K*K, cp/2, coutp/8, 8, 2) */
    int32_t *bias;  /* (coutp) */
    int64_t *m64, *rnd64, *rs64; /* (coutp) requantization: multiplier, rounding term, shift */
};

int rt_accel_eligible(const struct qd_rt *rt, int i);
size_t rt_accel_node_bytes(const struct qd_rt *rt, int i, int isa);
size_t rt_accel_scratch_bytes(const struct qd_rt *rt, int i, int isa);
void rt_accel_pack(const struct qd_rt *rt, int i, int isa, struct rt_accel *a, uint8_t **mem);
void rt_accel_conv(const struct qd_rt *rt, int i);
int rt_accel_add(const struct qd_rt *rt, int i); /* 0: not applicable */
int rt_cpu_has(int isa);
int64_t rt_bias_at(const struct qd_qm_rec *r, int c);
void rt_unpack_int(const struct qd_qm_rec *r, int co, size_t per, int32_t *w);

#endif

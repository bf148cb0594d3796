/* The device runtime: runs a .qm model from its bytes, in a caller-given arena, without ever
 * calling malloc. It is the project's bottom layer (runtime/): it includes nothing of the
 * project but its own headers and, of the C library, freestanding headers and string.h for
 * memcpy/memset/memmove; it compiles for a Cortex-M0+ as for the host. Integer-only inference (int8 or int16 activations, 2..16-bit weights, int32
 * or int64 accumulators, fixed-point per-channel requantization) for the integer modes; float
 * compute with fp16 or f32 weights; dynamic range (int8 weights, activations quantized on the
 * fly, float elsewhere).
 *
 * Usage:
 *     size_t need;
 *     qd_rt_arena_size(blob, len, &need);          // host helper (quant/rtsize.h; allocates)
 *     static uint8_t arena[NEED];                   // or any buffer of `need` bytes
 *     qd_rt_t *rt;
 *     struct qd_rt_diag d;
 *     if (qd_rt_load(blob, len, arena, sizeof arena, &rt, &need, &d)) ... // validates everything
 *     float logits[10];
 *     qd_rt_run(rt, pixels, logits);                // pixels: (C, H, W) raw bytes
 *
 * The blob must outlive the runtime: weights are read in place (from flash on a device) and
 * unpacked one output channel at a time into scratch. Arena = runtime tables + per-channel
 * multipliers + the activation arena (lifetime-planned, first fit) + scratch, computed in 64
 * bits and refused past QD_RT_MAX_ARENA.
 *
 * Build switches: QD_RT_FLOAT (default 1) compiles the float paths (fp32, fp16, dynamic range);
 * a device that runs only integer models builds with -DQD_RT_FLOAT=0 and such models are
 * refused with QD_RT_EUNSUPPORTED. */
#ifndef QD_RUNTIME_RUNTIME_H
#define QD_RUNTIME_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "rt_err.h"

#ifndef QD_RT_FLOAT
#define QD_RT_FLOAT 1
#endif

/* The largest arena the runtime plans (2 GiB less one): more is QD_RT_ELIMIT. */
#define QD_RT_MAX_ARENA ((uint64_t)0x7fffffff)

typedef struct qd_rt qd_rt_t;

/* Loads blob into arena. On QD_RT_ENOMEM *need says how many bytes are needed (exactly, once
 * the arena holds the runtime's tables; the size of those tables otherwise). d (may be NULL)
 * says what was wrong with a refused blob. */
qd_rt_err qd_rt_load(const uint8_t *blob, size_t len, void *arena, size_t arena_len,
                     qd_rt_t **rt, size_t *need, struct qd_rt_diag *d);
void qd_rt_run(qd_rt_t *rt, const uint8_t *pixels, float *logits);
/* Arena bytes: everything; of it, the planned activations and the scratch. */
size_t qd_rt_arena_used(const qd_rt_t *rt);
size_t qd_rt_activation_bytes(const qd_rt_t *rt);
int qd_rt_classes(const qd_rt_t *rt);
int qd_rt_layers(const qd_rt_t *rt);
/* on: use the plain reference kernels only (the fast ones are tested against them). */
void qd_rt_set_reference(qd_rt_t *rt, int on);

/* Host acceleration, outside the device arena (whose size stays the device's RAM cost): SIMD
 * kernels for the integer convolutions and dense layers with 8-bit inputs, weights of at most
 * 8 bits and int32 bias, bit-exact against the reference kernels: AVX2 and AVX-512 VNNI on
 * x86, NEON (ARMv8.0) and NEON with the dot product (SDOT, ARMv8.2+) on aarch64. The caller
 * gives a buffer of qd_rt_accel_size bytes (64-aligned) that must outlive the runtime; the
 * weights are repacked into it once. QD_RT_ISA_AUTO (always the last value: loops over the
 * ISAs run to it) picks the best the CPU has; QD_RT_ISA_PORTABLE detaches. Names (and
 * qd_rt_isa_name): portable, avx2, avx512vnni, neon, neon-dot, auto. */
enum qd_rt_isa {
    QD_RT_ISA_PORTABLE,
    QD_RT_ISA_AVX2,
    QD_RT_ISA_AVX512VNNI,
    QD_RT_ISA_NEON,
    QD_RT_ISA_NEON_DOT,
    QD_RT_ISA_AUTO
};
int qd_rt_isa_best(void);
const char *qd_rt_isa_name(int isa);
/* QD_RT_EINVAL for an ISA this CPU (or this build) does not have. */
qd_rt_err qd_rt_accel_size(const qd_rt_t *rt, int isa, size_t *need);
qd_rt_err qd_rt_accel(qd_rt_t *rt, int isa, void *buf, size_t len);
/* The ISA the runtime's integer kernels use now (QD_RT_ISA_PORTABLE without acceleration). */
int qd_rt_isa(const qd_rt_t *rt);
/* Per-layer timing: when ticks is not NULL, qd_rt_run adds each layer's time, as differences
 * of the caller's clock now() (nanoseconds on a host, a cycle counter on a device), to
 * ticks[i] (one entry per layer, the caller's array). For cost-model calibration. */
void qd_rt_set_profile(qd_rt_t *rt, uint64_t *ticks, uint64_t (*now)(void));
/* The kernel layer i runs on now: "ref" (the plain reference), "s8" (the portable fast
 * integer kernels), "dsp" (Cortex-M DSP extension), "f32", or the SIMD ISA's name; "?" for an
 * index out of range. Reports say which layers a back end did not accelerate. */
const char *qd_rt_node_kernel(const qd_rt_t *rt, int i);
/* How many layers run on the accelerated kernels. */
int qd_rt_accel_layers(const qd_rt_t *rt);

#endif

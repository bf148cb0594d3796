/* Host helpers around the device runtime (runtime/runtime.h): the exact arena a blob needs,
 * and loading with the runtime's diagnosis turned into a qd_err detail.
 *
 * Usage:
 *     size_t need; QD_TRY(qd_rt_arena_size(blob, len, &need));
 *     void *arena = aligned_alloc(16, need);
 *     qd_rt_t *rt; QD_TRY(qd_rt_open(blob, len, arena, need, &rt));
 */
#ifndef QD_QUANT_RTSIZE_H
#define QD_QUANT_RTSIZE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "runtime/runtime.h"

/* The exact arena size a blob needs (allocates a temporary table). */
qd_err qd_rt_arena_size(const uint8_t *blob, size_t len, size_t *need);
/* qd_rt_load with a qd_err and its detail ("qm: record 3: ..."). */
qd_err qd_rt_open(const uint8_t *blob, size_t len, void *arena, size_t arena_len, qd_rt_t **rt);
/* Attaches the host SIMD kernels of isa (QD_RT_ISA_AUTO: the best here) in a buffer it
 * allocates: *buf (NULL when nothing was accelerated), the caller frees it after the runtime. */
qd_err qd_rt_accel_alloc(qd_rt_t *rt, int isa, void **buf);

#endif

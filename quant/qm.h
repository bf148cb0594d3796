/* The .qm quantized model file's builder (the format itself, its reader and validator are
 * the device runtime's: runtime/qm_format.h).
 *
 * Usage:
 *     struct qd_qm_build b = {.g = &igraph, .policy = &p, .mode = QD_QMODE_INT8, .act = ranges};
 *     size_t size; qd_qm_size(&b, &size);          // exact file size, nothing built
 *     uint8_t *blob; size_t len; qd_qm_build(&b, &blob, &len);   // malloc'd, caller frees
 *     qd_qm_validate(blob, len);                    // what the runtime does before trusting it
 *
 * The size function runs the writer's own code in counting mode, so the two cannot disagree. */
#ifndef QD_QUANT_QM_H
#define QD_QUANT_QM_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "quant/igraph.h"
#include "quant/policy.h"
#include "quant/quantize.h"
#include "runtime/qm_format.h"

int qd_qmode_parse(const char *s); /* -1 if unknown */

/* Calibrated range of each tensor (n + 1 of them, tensor 0 = the input). */
struct qd_range {
    float lo, hi;
};

struct qd_qm_build {
    const struct qd_igraph *g;
    const struct qd_policy *policy; /* MIXED only; other modes fix the bits */
    enum qd_qmode mode;
    const struct qd_range *act;     /* integer modes; NULL for qd_qm_size */
    uint64_t model_id;
    const char *family;
};

/* Bits of every tensor under b (tensor 0 = input), 0 for float. */
void qd_qm_tensor_bits(const struct qd_qm_build *b, int *bits);
qd_err qd_qm_size(const struct qd_qm_build *b, size_t *size);
/* The quantization the built file will use, for simulating it in float: per tensor (n + 1),
 * q[t].bits = 0 where the tensor stays float; per node, the weight bits (0: float weights)
 * and whether they are quantized per tensor rather than per output channel. */
void qd_qm_tensor_qparams(const struct qd_qm_build *b, struct qd_qparam *q);
int qd_qm_weight_bits(const struct qd_qm_build *b, int node, int *per_tensor);
qd_err qd_qm_build(const struct qd_qm_build *b, uint8_t **blob, size_t *len);
/* Checks magic, version, sizes, every offset and field range, and the CRC (the runtime's
 * validator, qd_qm_validate_into, on a shape table this allocates). */
qd_err qd_qm_validate(const uint8_t *blob, size_t len);
void qd_qm_pack(const int32_t *v, size_t n, int bits, uint8_t *out);

#endif

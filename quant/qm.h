/* The .qm quantized model file and its builder.
 *
 * Usage:
 *     struct qd_qm_build b = {.g = &igraph, .policy = &p, .mode = QD_QMODE_INT8, .act = ranges};
 *     size_t size; qd_qm_size(&b, &size);          // exact file size, nothing built
 *     uint8_t *blob; size_t len; qd_qm_build(&b, &blob, &len);   // malloc'd, caller frees
 *     qd_qm_validate(blob, len);                    // what the runtime does before trusting it
 *
 * Layout, little-endian, every section 4-byte aligned:
 *   header (96 bytes): "QDQM", u16 version (1), u16 flags, u32 header size, u32 total size,
 *     u64 model id, u8 mode, u8 input channels, u16 input h, u16 input w, u16 classes,
 *     u32 nodes, u32 quantizable nodes, f32 norm mean[3], f32 norm std[3],
 *     f32 input scale, i32 input zero point, u8 input bits, 3 pad, char family[16], 4 pad
 *   policy: per quantizable node u8 weight bits, u8 activation bits (padded to 4)
 *   records, one per node: 48 fixed bytes (op, act, weight bits, output bits, inputs, shape,
 *     window, input length, output scale and zero point, scale count, weight count, weight
 *     format, bias format) then per-channel f32 scales, the bias (i32, i64 or f32), and the
 *     weights: 2..16-bit two's complement packed LSB-first, or fp16, or f32
 *   u32 CRC-32 of everything before it.
 * The size function runs the writer's own code in counting mode, so the two cannot disagree. */
#ifndef QD_QUANT_QM_H
#define QD_QUANT_QM_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "quant/igraph.h"
#include "quant/policy.h"
#include "quant/quantize.h"

#define QD_QM_VERSION 1
#define QD_QM_HEADER 96
#define QD_QM_RECORD 48

#define QD_QMODE_MAP(X)                                                                            \
    X(F32, "fp32")                                                                                 \
    X(INT8, "int8")                                                                                \
    X(INT16X8, "int16x8")                                                                          \
    X(FP16, "fp16")                                                                                \
    X(DYNAMIC, "dynamic")                                                                          \
    X(MIXED, "mixed")

enum qd_qmode {
#define QD_QMODE_ENUM(n, s) QD_QMODE_##n,
    QD_QMODE_MAP(QD_QMODE_ENUM)
#undef QD_QMODE_ENUM
        QD_QMODE_COUNT
};

const char *qd_qmode_name(enum qd_qmode m);
int qd_qmode_parse(const char *s); /* -1 if unknown */
int qd_qmode_integer(enum qd_qmode m); /* activations are integers */

enum qd_wfmt { QD_WFMT_NONE, QD_WFMT_INT, QD_WFMT_FP16, QD_WFMT_F32 };
enum qd_bfmt { QD_BFMT_NONE, QD_BFMT_I32, QD_BFMT_I64, QD_BFMT_F32 };

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
/* Checks magic, version, sizes, every offset and field range, and the CRC. Allocates a
 * shape table; the runtime uses qd_qm_validate_into with one from its arena instead. */
qd_err qd_qm_validate(const uint8_t *blob, size_t len);

/* The shape and representation of a tensor, as validation establishes it. */
struct qd_qm_tshape {
    uint32_t len;        /* elements of one sample */
    uint16_t c, h, w;
    uint8_t bits;        /* 8 or 16 for integers, 0 for float */
};
/* Node count of a blob (after checking the fixed header is there), for sizing `shapes`. */
qd_err qd_qm_count(const uint8_t *blob, size_t len, uint32_t *n);
/* Validates into shapes[0..n] (n + 1 entries, caller-given); never allocates. */
qd_err qd_qm_validate_into(const uint8_t *blob, size_t len, struct qd_qm_tshape *shapes);

/* Bytes of n values packed at `bits` each. */
size_t qd_qm_packed_bytes(size_t n, int bits);
void qd_qm_pack(const int32_t *v, size_t n, int bits, uint8_t *out);
int32_t qd_qm_unpack_one(const uint8_t *p, size_t i, int bits);

/* A parsed view of one record; pointers point into the blob (payloads may be unaligned). */
struct qd_qm_rec {
    uint8_t op, act, wbits, obits;
    int16_t in0, in1;
    uint16_t c, h, w, cin, k, stride, pad, groups;
    uint32_t in_len;
    float out_scale;
    int32_t out_zero;
    uint32_t nscale, wcount;
    uint8_t wfmt, bfmt;
    const uint8_t *scales, *bias, *weights;
};

struct qd_qm_header {
    uint16_t version, flags;
    uint32_t total;
    uint64_t model_id;
    uint8_t mode, in_c, in_bits;
    uint16_t in_h, in_w, nclass;
    uint32_t n, nq;
    float mean[3], std[3], in_scale;
    int32_t in_zero;
    char family[17];
    const uint8_t *policy; /* nq pairs (weight bits, activation bits) */
    const uint8_t *records;
};

/* Parses a blob that qd_qm_validate accepted. */
void qd_qm_header_read(const uint8_t *blob, struct qd_qm_header *h);
/* Reads the record at *p and advances *p past it (validated blobs only). */
void qd_qm_record_read(const uint8_t **p, struct qd_qm_rec *r);

#endif

/* The .qm model format as a device reads it: layout, caps, and the validator that stands
 * between a received file and everything that trusts it. The writer lives on the host
 * (quant/qm.h), above this layer.
 *
 * Usage:
 *     uint32_t n;
 *     struct qd_rt_diag d;
 *     if (qd_qm_count(blob, len, &n, &d)) ...                  // node count, for sizing shapes
 *     struct qd_qm_tshape shapes[n + 1];                         // or from an arena
 *     if (qd_qm_validate_into(blob, len, shapes, &d)) ...       // nothing trusted before this
 *     struct qd_qm_header h; qd_qm_header_read(blob, &h);
 *     const uint8_t *p = h.records; struct qd_qm_rec r; qd_qm_record_read(&p, &r);  // n times
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
 *
 * Caps (a file past one is refused with QD_RT_ELIMIT, never read past its end): every size
 * derived from a field is computed in 64 bits and checked before it is used, so a 32-bit core
 * and a 64-bit host refuse the same files. */
#ifndef QD_RUNTIME_QM_FORMAT_H
#define QD_RUNTIME_QM_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "rt_err.h"

#define QD_QM_VERSION 1
#define QD_QM_HEADER 96
#define QD_QM_RECORD 48

#define QD_QM_MAX_NODES 32000u            /* nodes in a model */
#define QD_QM_MAX_ELEMS ((uint32_t)1 << 26) /* elements of one tensor (one sample) */
#define QD_QM_MAX_PER ((uint32_t)1 << 24)   /* weights of one output channel */
#define QD_QM_MAX_IN_C 3                    /* input channels: the header's mean/std hold 3 */
#define QD_QM_MAX_BIAS64 ((int64_t)1 << 62) /* |int64 bias| below this: accumulators can't wrap */

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
int qd_qmode_integer(enum qd_qmode m); /* activations are integers */

enum qd_wfmt { QD_WFMT_NONE, QD_WFMT_INT, QD_WFMT_FP16, QD_WFMT_F32 };
enum qd_bfmt { QD_BFMT_NONE, QD_BFMT_I32, QD_BFMT_I64, QD_BFMT_F32 };
/* Ops and fused activations, as the inference graph (quant/igraph.h) writes them. */
enum qd_iop { QD_IOP_CONV, QD_IOP_DENSE, QD_IOP_ADD, QD_IOP_MAXPOOL, QD_IOP_AVGPOOL,
              QD_IOP_CLAMP };
enum qd_act { QD_ACT_NONE, QD_ACT_RELU, QD_ACT_RELU6 };

/* The shape and representation of a tensor, as validation establishes it. */
struct qd_qm_tshape {
    uint32_t len;        /* elements of one sample (<= QD_QM_MAX_ELEMS) */
    uint16_t c, h, w;
    uint8_t bits;        /* 8 or 16 for integers, 0 for float */
};

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

/* Node count of a blob (after checking the fixed header is there), for sizing `shapes`. */
qd_rt_err qd_qm_count(const uint8_t *blob, size_t len, uint32_t *n, struct qd_rt_diag *d);
/* Checks magic, version, sizes, every offset and field range against the caps, and the CRC,
 * filling shapes[0..n] (n + 1 entries, caller-given). Never allocates. d may be NULL. */
qd_rt_err qd_qm_validate_into(const uint8_t *blob, size_t len, struct qd_qm_tshape *shapes,
                              struct qd_rt_diag *d);
/* Parses a blob that qd_qm_validate_into accepted. */
void qd_qm_header_read(const uint8_t *blob, struct qd_qm_header *h);
/* Reads the record at *p and advances *p past it (validated blobs only). */
void qd_qm_record_read(const uint8_t **p, struct qd_qm_rec *r);

/* Bytes of n values packed at `bits` each. */
uint64_t qd_qm_packed_bytes(uint64_t n, int bits);
int32_t qd_qm_unpack_one(const uint8_t *p, size_t i, int bits);

#endif

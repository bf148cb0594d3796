/* Checkpoint files: a trained float model with everything needed to use it again.
 *
 * Usage:
 *     qd_ckpt_save("runs/custom.qdck", &model, "fashion-mnist", &norm);
 *     struct qd_model m; char data[32]; struct qd_norm nm;
 *     if (qd_ckpt_load("runs/custom.qdck", &m, data, &nm)) die(qd_errmsg());
 *
 * Format (little-endian): magic "QDCKPT\r\n", u32 version (1), u32 spec length, the spec text,
 * char dataset[32], u32 norm channels, f32 mean[3], f32 std[3], u64 nparam, u64 nstat,
 * f32 param[nparam], f32 stat[nstat], u32 CRC-32 of every byte before it. Saving writes a
 * temporary file, fsyncs and renames it. Loading checks magic, version, sizes against the parsed
 * spec, and the CRC before anything is used. */
#ifndef QD_NN_CKPT_H
#define QD_NN_CKPT_H

#include "core/err.h"
#include "nn/model.h"
#include "nn/train.h"

#define QD_CKPT_VERSION 1

qd_err qd_ckpt_save(const char *path, const struct qd_model *m, const char *dataset,
                    const struct qd_norm *nm);
qd_err qd_ckpt_load(const char *path, struct qd_model *m, char dataset[32], struct qd_norm *nm);

#endif

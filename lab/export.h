/* quantlab export-c (see export.c).
 *
 * Usage:
 *     qd_lab_export_c(blob, len, &testset, 100, stdout);   // testset may be NULL: no images
 */
#ifndef QD_LAB_EXPORT_H
#define QD_LAB_EXPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/err.h"
#include "nn/data.h"

/* The model (validated), its arena size and n test images with labels as C source. */
qd_err qd_lab_export_c(const uint8_t *blob, size_t len, const struct qd_dataset *te, int n,
                       FILE *f);

#endif

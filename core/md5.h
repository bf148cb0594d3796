/* MD5 (RFC 1321), only to check downloaded data against published digests; never for security.
 *     char hex[33]; qd_md5_file("data/cifar10/test_batch.bin", hex); */
#ifndef QD_CORE_MD5_H
#define QD_CORE_MD5_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct qd_md5 {
    uint32_t h[4];
    uint64_t len;
    uint8_t buf[64];
};

void qd_md5_init(struct qd_md5 *m);
void qd_md5_update(struct qd_md5 *m, const void *data, size_t n);
void qd_md5_final(struct qd_md5 *m, uint8_t out[16]);
void qd_md5_hex(const uint8_t d[16], char hex[33]);
qd_err qd_md5_file(const char *path, char hex[33]);

#endif

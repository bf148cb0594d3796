/* Packing a model for the wire: raw, zstd-compressed, or a zstd patch against a version the
 * device already holds (the base is a zstd prefix dictionary: ZSTD_CCtx_refPrefix, with long
 * distance matching so that layers that only moved still match), whichever is smallest. The
 * packed stream is deterministic for given inputs, so chunks asked for at different times fit
 * together. Unpacking refuses anything but exactly the size the manifest states.
 *
 * Usage:
 *     enum qd_pack k; uint8_t *p; size_t n;
 *     qd_pack_best(qm, len, base, base_len, 3, &k, &p, &n);     // daemon
 *     uint8_t *qm2;
 *     qd_pack_unpack(k, p, n, base, base_len, manifest_size, &qm2); // device
 */
#ifndef QD_PROTO_PACK_H
#define QD_PROTO_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

enum qd_pack { QD_PACK_RAW, QD_PACK_ZSTD, QD_PACK_PATCH };

const char *qd_pack_name(enum qd_pack k); /* "raw", "zstd", "patch" */
/* The kind named s; -1 when none. */
int qd_pack_parse(const char *s);
/* The smallest packing of qm (base may be NULL: no patch). *out is malloc'd (a copy when
 * raw). */
qd_err qd_pack_best(const uint8_t *qm, size_t len, const uint8_t *base, size_t blen, int level,
                    enum qd_pack *kind, uint8_t **out, size_t *outlen);
/* Back to the model, which must be exactly `size` bytes (at most 1 GiB): QD_EFORMAT when the
 * stream is corrupt, truncated or of another size; a patch needs the base it was made
 * against (a different base gives different bytes, which the manifest's sha256 refuses). */
qd_err qd_pack_unpack(enum qd_pack kind, const uint8_t *in, size_t n, const uint8_t *base,
                      size_t blen, size_t size, uint8_t **out);

#endif

/* A model's self-test: what a device computes before it installs a model, and what the daemon
 * puts in the model's manifest. n inputs of the model's input shape, drawn from `seed`
 * (splitmix64 bytes), run by the device runtime; the digest is the sha256 of their logits (n x
 * classes float32, little-endian). The runtime is bit-exact on every ISA (test_runtime, cross.sh),
 * so a device reproduces the daemon's digest exactly unless its copy of the model, or its
 * runtime, is not what the daemon's is.
 *
 * Usage:
 *     char sha[65];
 *     qd_selftest_digest(qm, len, seed, QD_SELFTEST_N, sha);
 *     if (strcmp(sha, manifest.test_sha)) refuse (QD_ESELFTEST);
 */
#ifndef QD_CLIENT_SELFTEST_H
#define QD_CLIENT_SELFTEST_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "proto/manifest.h"

#define QD_SELFTEST_N 4

/* The seed for a model: its sha256's first 13 hex digits (below 2^53: exact in JSON). */
uint64_t qd_selftest_seed(const char *sha);
qd_err qd_selftest_digest(const uint8_t *qm, size_t len, uint64_t seed, int n, char sha[65]);
/* The model against its manifest's self-test: QD_ESELFTEST when the digests differ (a model
 * the runtime refuses: its error). */
qd_err qd_selftest_check(const uint8_t *qm, size_t len, const struct qd_manifest *m);

#endif

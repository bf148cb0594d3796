/* The signed manifest that comes with every model quantd delivers: which device it is for,
 * which version, which bytes (sha256, size), built from which backbone at which policy, when it
 * was issued and until when it may be installed, and the version it replaces. The daemon signs
 * the manifest's exact text with its Ed25519 key (domain-separated from the model signature);
 * a device accepts a model only when qd_manifest_check passes and the bytes it reconstructed
 * have the manifest's sha256 and size (qd_manifest_check_bytes).
 *
 * Usage (device side):
 *     struct qd_manifest m;
 *     qd_err e = qd_manifest_check(text, len, sig, pinned_pk, "gw-17", installed, now_s, &m);
 *     if (!e) e = qd_manifest_check_bytes(&m, qm, qm_len);
 *     // EAUTH: bad signature; EFOREIGN: another device's; EROLLBACK: not above `installed`;
 *     // EEXPIRED: past its expiry; ECHECKSUM: bytes differ; EFORMAT: not a manifest
 *
 * The text is JSON: {"v":1,"device":..,"version":..,"prev":..,"sha256":..,"size":..,
 * "backbone":..,"policy":..,"created":..,"expires":..,"test_seed":..,"test_n":..,
 * "test_sha256":..} (times in seconds since the epoch). */
#ifndef QD_PROTO_MANIFEST_H
#define QD_PROTO_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "proto/proto.h"

#define QD_MANIFEST_MAX 4096 /* bytes of manifest text, at most */

struct qd_manifest {
    char device[QD_PROTO_MAX_ID + 1];
    int64_t version, prev; /* prev: the version this one replaces (0: none) */
    char sha[65];
    int64_t size;
    char backbone[80];
    char policy[2048];
    int64_t created, expires; /* s since the epoch */
    int64_t test_seed, test_n; /* the self-test (client/selftest.h): inputs from the seed, */
    char test_sha[65];         /* and the sha256 of the logits the model must give on them */
};

/* The manifest's text (malloc'd, NUL-terminated) and its signature under sk. */
qd_err qd_manifest_sign(const struct qd_manifest *m, const uint8_t sk[QD_PROTO_SECRET_BYTES],
                        char **text, size_t *len, uint8_t sig[QD_PROTO_SIG_BYTES]);
/* Parses a manifest's text without checking its signature (QD_EFORMAT when malformed). */
qd_err qd_manifest_parse(const char *text, size_t len, struct qd_manifest *m);
/* Verifies the signature under pk, parses, and checks that it names `device`, that its version
 * is above `installed`, and that now_s is before its expiry. */
qd_err qd_manifest_check(const char *text, size_t len, const uint8_t sig[QD_PROTO_SIG_BYTES],
                         const uint8_t pk[QD_PROTO_PUB_BYTES], const char *device,
                         int64_t installed, int64_t now_s, struct qd_manifest *m);
/* The reconstructed model against the manifest: size and sha256 (QD_ECHECKSUM). */
qd_err qd_manifest_check_bytes(const struct qd_manifest *m, const uint8_t *qm, size_t len);

#endif

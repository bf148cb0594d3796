/* What the fuzz targets (fuzz/fuzz_*.c) and the seed maker (fuzz/mkseeds.c) share: the fixed
 * keys a target knows so that it can seal or sign what it fuzzes (and so get past the MAC or
 * the signature to the code behind it), an invariant check that aborts (libFuzzer reports it
 * as a crash with the input), and a memfd that turns the input into a path for the decoders
 * that only read files.
 *
 * Usage:
 *     FZ_CHECK(qd_proto_verify(sealed, n, FZ_KEY) == QD_OK);  // abort()s naming the line
 *     const char *p = fz_path(data, size);   // "/proc/self/fd/N" holding exactly those bytes
 *     uint8_t pk[32], sk[64]; fz_sign_keys(pk, sk);            // the manifest signing pair
 *
 * Nothing here is a secret: the keys are constants so that seeds made once stay valid. */
#ifndef QD_FUZZ_FUZZ_H
#define QD_FUZZ_FUZZ_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sodium.h>

/* The HMAC key of the device "dev-1" and of "admin" in the request target and its seeds. */
static const uint8_t FZ_KEY[32] = {0x71, 0x64, 0x2d, 0x66, 0x75, 0x7a, 0x7a, 0x2d, 0x6b, 0x65, 0x79,
                                   0x2d, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39,
                                   0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a};
#define FZ_DEVICE "dev-1"

/* The daemon's Ed25519 signing pair (manifests, models), from a fixed seed. */
static inline void fz_sign_keys(uint8_t pk[32], uint8_t sk[64])
{
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(0xa5 ^ i);
    crypto_sign_seed_keypair(pk, sk, seed);
}

#define FZ_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The bytes as a file: one memfd per process, rewritten each run. NULL if it cannot be made. */
static inline const char *fz_path(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("qdfuzz", 0);
        if (fd < 0)
            return NULL;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
        return NULL;
    return path;
}

#endif

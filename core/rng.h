/* Deterministic pseudo-random numbers: xoshiro256** seeded by splitmix64.
 *     struct qd_rng r; qd_rng_seed(&r, 42); float g = qd_rng_normal(&r);
 * Same seed, same sequence, on every machine. Not for cryptography (use libsodium). */
#ifndef QD_CORE_RNG_H
#define QD_CORE_RNG_H

#include <stdint.h>

struct qd_rng {
    uint64_t s[4];
};

void qd_rng_seed(struct qd_rng *r, uint64_t seed);
uint64_t qd_rng_next(struct qd_rng *r);
/* Uniform in [0, n). */
uint32_t qd_rng_below(struct qd_rng *r, uint32_t n);
/* Uniform in [0, 1). */
float qd_rng_uniform(struct qd_rng *r);
/* Standard normal (Box-Muller). */
float qd_rng_normal(struct qd_rng *r);
/* Fisher-Yates shuffle of idx[0..n). */
void qd_rng_shuffle(struct qd_rng *r, int *idx, int n);

#endif

/* xoshiro256** (Blackman & Vigna), state filled by splitmix64 from a 64-bit seed. */
#include "core/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void qd_rng_seed(struct qd_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

uint64_t qd_rng_next(struct qd_rng *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

uint32_t qd_rng_below(struct qd_rng *r, uint32_t n)
{
    return (uint32_t)(((qd_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

float qd_rng_uniform(struct qd_rng *r)
{
    return (float)(qd_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

float qd_rng_normal(struct qd_rng *r)
{
    double u1 = ((qd_rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (qd_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void qd_rng_shuffle(struct qd_rng *r, int *idx, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)qd_rng_below(r, (uint32_t)i + 1);
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

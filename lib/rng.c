/* rng.c - xoshiro256** (Blackman & Vigna) with splitmix64 seeding. */
#include "rng.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void tli_rng_seed(tli_rng *rng, uint64_t seed, uint64_t stream)
{
    /* Mix the stream in through its own splitmix step so that (seed, stream)
     * pairs that differ in either give unrelated states. */
    uint64_t x = seed;
    uint64_t y = stream ^ 0x5851f42d4c957f2dULL;
    uint64_t k = splitmix64(&x) ^ splitmix64(&y);
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&k);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t tli_rng_next(tli_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float tli_rng_uniform(tli_rng *rng)
{
    return (float)(tli_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

uint64_t tli_rng_below(tli_rng *rng, uint64_t n)
{
    /* Rejection on the top of the 64-bit range keeps every value equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do
        r = tli_rng_next(rng);
    while (r >= limit);
    return r % n;
}

void tli_rng_shuffle(tli_rng *rng, uint32_t *idx, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)tli_rng_below(rng, i);
        uint32_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

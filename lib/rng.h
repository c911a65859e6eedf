/*
 * rng.h - the one random generator of libtl: xoshiro256** seeded through
 * splitmix64. Every draw in the library comes from a tli_rng whose seed the
 * caller controls, so results repeat bit for bit.
 */
#ifndef TLI_RNG_H
#define TLI_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct tli_rng {
    uint64_t s[4];
} tli_rng;

/* Seed a generator from (seed, stream): different streams of one seed are
 * independent, e.g. one per layer for weight initialisation. */
void tli_rng_seed(tli_rng *rng, uint64_t seed, uint64_t stream);

uint64_t tli_rng_next(tli_rng *rng);

/* Uniform float in [0, 1) with 24 random bits. */
float tli_rng_uniform(tli_rng *rng);

/* Uniform integer in [0, n), without modulo bias; n > 0. */
uint64_t tli_rng_below(tli_rng *rng, uint64_t n);

/* Fisher-Yates shuffle of idx[0..n). */
void tli_rng_shuffle(tli_rng *rng, uint32_t *idx, size_t n);

/* Counter-based random numbers: output number i + 1 of splitmix64 started
 * at state `key`, computed directly, so any element of a sequence can be
 * drawn on any thread in any order (dropout masks). */
static inline uint64_t tli_hash64(uint64_t key, uint64_t i)
{
    uint64_t z = key + (i + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#endif /* TLI_RNG_H */

/* half.c - IEEE binary16 and bfloat16 to binary32. Both convert exactly:
 * every half value is a float value. */
#include "bytes.h"
#include "safetensors.h"

float tli_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0 && mant == 0) {
        bits = sign; /* signed zero */
    } else if (exp == 0) {
        /* Subnormal: mant * 2^-24. Shift the leading one up to bit 10 and
         * lower the exponent by the shift. */
        int shift = 0;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            shift++;
        }
        mant &= 0x3ffu;
        bits = sign | (uint32_t)(127 - 15 + 1 - shift) << 23 | mant << 13;
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | mant << 13; /* infinity, or NaN with its payload */
    } else {
        bits = sign | (exp + 127 - 15) << 23 | mant << 13;
    }
    return tli_bits_f32(bits);
}

float tli_bf16_to_f32(uint16_t h)
{
    /* bfloat16 is the top half of a binary32. */
    return tli_bits_f32((uint32_t)h << 16);
}

/* pixels.h - bytes to floats, shared by the image readers. */
#ifndef TLI_PIXELS_H
#define TLI_PIXELS_H

/* lut[b] = b / 255 in float, exactly what Keras users get from
 * x.astype("float32") / 255, so datasets match theirs bit for bit. A table
 * turns the division into a load. */
static inline void tli_byte_to_unit(float lut[256])
{
    for (int b = 0; b < 256; b++)
        lut[b] = (float)b / 255.0f;
}

#endif /* TLI_PIXELS_H */

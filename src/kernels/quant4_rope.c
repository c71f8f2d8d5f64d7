/* Rotary embedding on adjacent pairs (llama.cpp's rope "normal"), for GGUF
 * llama files: llama.cpp's converter permutes the rows of attn_q / attn_k
 * per head so that rotating pairs (2i, 2i + 1) of the stored order equals
 * Hugging Face's rotate-half of the original order; miser uses those
 * weights in place (gguf_model.c) and rotates the same pairs. Same
 * interface and threading as miser_ref_rope (kernels.h). */
#include "kernels.h"

void miser_rope_pairs(float *y, int64_t y_row, const float *x, int64_t x_row, int64_t T, int64_t H, int64_t D,
                      const float *cs, const float *sn, int ith, int nth)
{
    int64_t lo, hi, half = D / 2;
    miser_split(T, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        for (int64_t h = 0; h < H; h++) {
            const float *xr = x + r * x_row + h * D;
            float *yr = y + r * y_row + h * D;
            for (int64_t i = 0; i < half; i++) {
                const float c = cs[r * half + i], s = sn[r * half + i], x0 = xr[2 * i], x1 = xr[2 * i + 1];
                yr[2 * i] = x0 * c - x1 * s;
                yr[2 * i + 1] = x1 * c + x0 * s;
            }
        }
}

/* libFuzzer target: the safetensors header parser over arbitrary bytes. The
 * input is treated as a whole file held in memory; whatever it claims, the
 * parser must return a status without reading outside the buffer, and a
 * successful parse must only describe ranges inside the data section. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "miser/alloc.h"
#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy with no slack so ASan sees any overread. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    miser_st_header h;
    if (miser_st_parse(buf, size, "fuzz.safetensors", &h) == MISER_OK) {
        for (size_t i = 0; i < h.n_tensors; i++) {
            const miser_st_tensor *t = &h.tensors[i];
            if (t->end > h.data_size || t->begin > t->end || h.data_offset + h.data_size != size) abort();
            if (i && strcmp(h.tensors[i - 1].name, t->name) >= 0) abort();
            if (miser_st_find(&h, t->name) != t) abort();
            /* Touch the bytes the header describes. */
            volatile uint8_t x = 0;
            for (uint64_t b = t->begin; b < t->end; b += 4096) x ^= buf[h.data_offset + b];
            (void)x;
        }
        miser_st_header_free(&h);
    }
    free(buf);
    if (miser_mem_total().current != 0) abort(); /* nothing may outlive a parse */
    return 0;
}

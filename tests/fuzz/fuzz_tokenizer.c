/* libFuzzer target: encode arbitrary bytes with the built-in GPT-2
 * vocabulary and require decode(encode(x)) == x byte for byte, with and
 * without <|endoftext|> as a special token. Aborts on any mismatch. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miser/alloc.h"
#include "miser/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static miser_tokenizer *t; /* loaded once; reachable, so not a leak */
    if (!t && miser_tokenizer_open(NULL, &t) != MISER_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", miser_error_message());
        abort();
    }
    for (unsigned flags = 0; flags < 2; flags++) {
        int32_t *ids = NULL;
        size_t n = 0, len = 0;
        char *back = NULL;
        if (miser_tokenizer_encode(t, (const char *)data, size, flags, &ids, &n) != MISER_OK) abort();
        if (n > size) abort(); /* at most one token per byte */
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= miser_tokenizer_vocab_size(t)) abort();
        if (miser_tokenizer_decode(t, ids, n, &back, &len) != MISER_OK) abort();
        if (len != size || (size && memcmp(back, data, size) != 0)) abort();
        miser_free(back);
        miser_free(ids);
    }
    return 0;
}

/* libFuzzer target: arbitrary bytes as a tokenizer.json. Loading must either
 * succeed or fail with a status and a one-line message naming the file
 * (never crash, hang or leak); a tokenizer that loads must encode a few
 * fixed texts (special tokens, invalid UTF-8, long runs) into ids inside its
 * vocabulary and decode them again. Aborts on any broken contract. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miser/alloc.h"
#include "miser/tokenizer.h"
#include "tokenizer/tok_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20)) return 0;
    miser_tokenizer *t = NULL;
    miser_status st = miser_tok_hf_load_buffer("fuzz/tokenizer.json", (const char *)data, size, &t);
    if (st != MISER_OK) {
        const char *m = miser_error_message();
        if (t || st == MISER_ERR_INTERNAL || !strstr(m, "fuzz/tokenizer.json") || strchr(m, '\n')) {
            fprintf(stderr, "bad failure: status %d, message \"%s\"\n", st, m);
            abort();
        }
        return 0;
    }
    static const char *const texts[] = {"Hello world <s> it's 123 caf\xc3\xa9", "  \n\n\t x", "\xff\xe6\x97 \xf0\x9f\x99\x82",
                                        "<|endoftext|>aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", ""};
    for (size_t k = 0; k < sizeof texts / sizeof *texts; k++) {
        for (unsigned flags = 0; flags < 4; flags++) {
            int32_t *ids = NULL;
            size_t n = 0, len = 0;
            st = miser_tokenizer_encode(t, texts[k], strlen(texts[k]), flags, &ids, &n);
            if (st == MISER_ERR_RANGE) continue; /* a regex's match limit */
            if (st != MISER_OK) abort();
            for (size_t i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] >= miser_tokenizer_vocab_size(t)) abort();
            char *back = NULL;
            st = miser_tokenizer_decode_ex(t, ids, n, flags & 1 ? MISER_DECODE_SKIP_SPECIAL : 0, &back, &len);
            /* an id with no string (a gap in the vocabulary) cannot be produced, so decode succeeds */
            if (st != MISER_OK) abort();
            miser_free(back);
            miser_free(ids);
        }
    }
    miser_tokenizer_free(t);
    return 0;
}

/* libFuzzer target: the GGUF reader (src/model/gguf.c) over arbitrary bytes,
 * then what is built on a file it accepts: the model table and config
 * (gguf_model.c) and the tokenizer (gguf_vocab.c). Whatever the file
 * claims, the reader must return a status without reading outside the
 * buffer; an accepted file must describe only ranges inside it, and every
 * value it reports must be walkable. Nothing may outlive the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "miser/alloc.h"
#include "miser/gguf.h"
#include "miser/tokenizer.h"
#include "model/gguf_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1); /* no slack: ASan sees any overread */
    if (!buf) return 0;
    memcpy(buf, data, size);
    miser_gguf_file f;
    if (miser_gguf_parse(buf, size, "fuzz.gguf", &f) == MISER_OK) {
        if (f.data_offset > size || f.alignment == 0 || (f.alignment & (f.alignment - 1))) abort();
        volatile uint8_t x = 0;
        for (size_t i = 0; i < f.n_tensors; i++) {
            const miser_gguf_tensor *t = &f.tensors[i];
            if (t->offset % f.alignment || t->offset + t->nbytes > size - f.data_offset || t->n_dims < 1 || t->n_dims > 4)
                abort();
            if (miser_gguf_find_tensor(&f, t->name) != t) abort();
            if (t->nbytes) x ^= ((const uint8_t *)miser_gguf_data(&f, t))[t->nbytes - 1];
        }
        for (size_t i = 0; i < f.n_kv; i++) {
            const miser_gguf_kv *kv = &f.kv[i];
            if (miser_gguf_find(&f, kv->key) != kv) abort();
            if (kv->type == MISER_GGUF_STRING && kv->n) x ^= kv->data[kv->n - 1];
            if (kv->type != MISER_GGUF_ARRAY) continue;
            if (kv->elem == MISER_GGUF_STRING) {
                const unsigned char *p = kv->data;
                for (uint64_t k = 0; k < kv->n; k++) {
                    const char *s;
                    size_t n;
                    miser_gguf_next_str(&p, &s, &n);
                    if ((const uint8_t *)s + n > buf + size) abort();
                    if (n) x ^= (uint8_t)s[n - 1];
                }
            } else if (kv->elem != MISER_GGUF_ARRAY && kv->n) {
                x ^= (uint8_t)miser_gguf_arr_i64(kv, kv->n - 1);
            }
        }
        (void)x;
        miser_config cfg;
        const miser_arch *arch;
        miser_tensor_info *tab;
        size_t n;
        char *names;
        if (miser_gguf_model_load(&f, &cfg, &arch, &tab, &n, &names) == MISER_OK) {
            for (size_t i = 0; i < n; i++)
                if ((const uint8_t *)tab[i].data + tab[i].nbytes > buf + size) abort();
            miser_free(tab);
            miser_free(names);
        }
        miser_tokenizer *tok = NULL;
        if (miser_gguf_tokenizer(&f, &tok) == MISER_OK) {
            int32_t *ids;
            size_t k;
            if (miser_tokenizer_encode(tok, "Hello world 123", 15, 0, &ids, &k) == MISER_OK) miser_free(ids);
            miser_tokenizer_free(tok);
        }
        miser_gguf_release(&f);
    }
    free(buf);
    if (miser_mem_total().current != 0) abort();
    return 0;
}

/* libFuzzer target: config.json through the architecture registry. The input
 * is the file's text; whatever it holds, selecting an architecture and
 * running its config parser must return a status without crashing or
 * leaking, and a config that parses must satisfy what the builders rely on
 * (positive sizes, heads a multiple of KV heads, an even head_dim for rotary
 * embeddings, a known rope scaling with a positive factor). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "miser/alloc.h"
#include "model/arch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *root = cJSON_ParseWithLength((const char *)data, size);
    if (root && cJSON_IsObject(root)) {
        const miser_arch *a = NULL;
        if (miser_arch_select("fuzz/config.json", root, &a) == MISER_OK) {
            if (!a) abort();
            miser_config c;
            memset(&c, 0, sizeof c);
            if (a->parse_config("fuzz/config.json", root, &c) == MISER_OK) {
                if (c.n_embd < 1 || c.n_head < 1 || c.n_layer < 1 || c.n_vocab < 1 || c.n_ctx < 1 || c.n_inner < 1)
                    abort();
                if (c.n_kv_head < 1 || c.n_head % c.n_kv_head || c.head_dim < 1) abort();
                if (c.eos_token_id >= c.n_vocab || c.bos_token_id >= c.n_vocab) abort();
                if (c.pos == MISER_POS_ROPE) {
                    if (c.head_dim % 2 || !(c.rope.theta > 0)) abort();
                    if (c.rope.type != MISER_ROPE_DEFAULT && !(c.rope.factor > 0)) abort();
                    if (c.rope.type == MISER_ROPE_LLAMA3 &&
                        (!(c.rope.high_freq_factor > c.rope.low_freq_factor) || c.rope.original_ctx < 1))
                        abort();
                } else if (c.n_embd % c.n_head || c.head_dim * c.n_head != c.n_embd)
                    abort();
            }
        }
    }
    cJSON_Delete(root);
    if (miser_mem_total().current != 0) abort(); /* nothing may outlive a parse */
    return 0;
}

/* Internal helpers shared by the synthetic-checkpoint generators: GPT-2
 * (miser_synth_gpt2, st_writer.c, which defines these) and Llama
 * (miser_synth_llama, llama_synth.c). Both fill every tensor with seeded
 * pseudo-normal values the same way, so a checkpoint depends only on
 * (seed, tensor name, mean, sd, dtype), not on which generator wrote it. */
#ifndef MISER_MODEL_SYNTH_H
#define MISER_MODEL_SYNTH_H

#include "miser/safetensors.h"

#include <stdint.h>

/* Bytes of the caller-owned scratch buffer miser_synth_fill needs. */
#define MISER_SYNTH_CHUNK (1u << 20)

/* 1 when `s` ends with `suf` (tensor-name matching for per-tensor scales). */
int miser_synth_ends_with(const char *s, const char *suf);

/* Writes tensor `e`'s data to `w`: mean + sd * N(0, 1) per element, drawn
 * from a generator seeded with o->seed ^ fnv1a(e->name), stored as
 * o->dtype (f32, f16 or bf16), through `buf` (MISER_SYNTH_CHUNK bytes,
 * borrowed). Adds the bytes written to *done and reports (*done, total)
 * to o->progress when set. */
miser_status miser_synth_fill(miser_st_writer *w, const miser_st_entry *e, float mean, float sd,
                              const miser_synth_options *o, unsigned char *buf, uint64_t *done, uint64_t total);

#endif

/* GGUF files as models (src/model/gguf_model.c), for the loader (model.c):
 * the registry entry, config and tensor table of a parsed GGUF file. */
#ifndef MISER_MODEL_GGUF_MODEL_H
#define MISER_MODEL_GGUF_MODEL_H

#include "miser/gguf.h"
#include "model/arch.h"

/* From general.architecture and the architecture's keys: *arch, *cfg, and a
 * name-sorted table of the tensors under their Hugging Face names, data
 * pointing into f's mapping (*tensors and *names: miser_free). Tensors
 * with unknown names are left out; a tensor type miser does not compute
 * with is MISER_ERR_UNSUPPORTED naming it, as is an unknown architecture. */
miser_status miser_gguf_model_load(const miser_gguf_file *f, miser_config *cfg, const miser_arch **arch,
                                   miser_tensor_info **tensors, size_t *n_tensors, char **names);
/* A path that names a GGUF file (ends in ".gguf"). */
int miser_gguf_is_path(const char *path);

#endif

/* Generic strided reference operations (any rank, any strides, any dtype
 * input, f32 output): einsum, batched matmul, broadcast binary ops, copies.
 * They back ops that the compiler normally rewrites into fast kernels, and
 * serve as references in tests. */
#ifndef MISER_KERNELS_GENERIC_H
#define MISER_KERNELS_GENERIC_H

#include "miser/graph.h"

typedef struct miser_tview {
    void *data;
    miser_dtype dtype;
    int32_t ndim;
    int64_t shape[MISER_MAX_DIMS];
    int64_t stride[MISER_MAX_DIMS]; /* elements */
} miser_tview;

/* out (contiguous f32, shape from the equation) = einsum(e, a[, b]). */
void miser_ref_einsum(const miser_einsum *e, const miser_tview *a, const miser_tview *b, float *out,
                      const int64_t *out_shape);
/* out[b.., M, N] = a[b.., M, K] @ b[b.., K, N]; out shape given, contiguous. */
void miser_ref_matmul(const miser_tview *a, const miser_tview *b, float *out, int32_t out_ndim, const int64_t *out_shape);
/* out = a (op) b with broadcasting; op 0 add, 1 mul. */
void miser_ref_binary(int op, const miser_tview *a, const miser_tview *b, float *out, int32_t out_ndim,
                      const int64_t *out_shape);
/* out (contiguous f32) = a * scale. */
void miser_ref_copy(const miser_tview *a, float *out, float scale);
/* 1 when the view is row-major contiguous. */
int miser_tview_contiguous(const miser_tview *v);
int64_t miser_tview_numel(const miser_tview *v);

#endif

/* Generic strided reference operations: simple loops over multi-indices,
 * accumulating in double. Slow by design; the definition of the results. */
#include "generic.h"
#include "kernels.h"

#include <string.h>

int64_t miser_tview_numel(const miser_tview *v)
{
    int64_t n = 1;
    for (int i = 0; i < v->ndim; i++) n *= v->shape[i];
    return n;
}

int miser_tview_contiguous(const miser_tview *v)
{
    int64_t s = 1;
    for (int i = v->ndim - 1; i >= 0; i--) {
        if (v->shape[i] != 1 && v->stride[i] != s) return 0;
        s *= v->shape[i];
    }
    return 1;
}

/* advance a multi-index; returns 0 when it wrapped around */
static int next_index(int64_t *idx, const int64_t *shape, int nd)
{
    for (int i = nd - 1; i >= 0; i--) {
        if (++idx[i] < shape[i]) return 1;
        idx[i] = 0;
    }
    return 0;
}

void miser_ref_einsum(const miser_einsum *e, const miser_tview *a, const miser_tview *b, float *out,
                      const int64_t *out_shape)
{
    /* label tables: sizes and per-operand strides (0 where absent/broadcast) */
    char labels[2 * MISER_MAX_DIMS];
    int64_t size[2 * MISER_MAX_DIMS], st[2][2 * MISER_MAX_DIMS];
    int nl = 0;
    const miser_tview *ops[2] = {a, b};
    memset(st, 0, sizeof st);
    for (int d = 0; d < e->out_rank; d++) {
        labels[nl] = e->out[d];
        size[nl++] = out_shape[d];
    }
    int n_out = nl;
    for (int k = 0; k < e->n_ops; k++)
        for (int d = 0; d < e->rank[k]; d++) {
            int j = 0;
            while (j < nl && labels[j] != e->labels[k][d]) j++;
            if (j == nl) {
                labels[nl] = e->labels[k][d];
                size[nl++] = ops[k]->shape[d];
            } else if (ops[k]->shape[d] > size[j])
                size[j] = ops[k]->shape[d];
        }
    for (int k = 0; k < e->n_ops; k++)
        for (int d = 0; d < e->rank[k]; d++) {
            int j = 0;
            while (labels[j] != e->labels[k][d]) j++;
            st[k][j] += ops[k]->shape[d] == 1 ? 0 : ops[k]->stride[d];
        }
    int n_sum = nl - n_out;
    int64_t oi[2 * MISER_MAX_DIMS] = {0};
    int64_t total = 1;
    for (int d = 0; d < n_out; d++) total *= size[d];
    for (int64_t o = 0; o < total; o++) {
        /* o's multi-index over output labels is oi[0..n_out) */
        double acc = 0;
        int64_t si[2 * MISER_MAX_DIMS] = {0};
        int64_t sum_total = 1;
        for (int d = 0; d < n_sum; d++) sum_total *= size[n_out + d];
        for (int64_t s = 0; s < sum_total; s++) {
            double prod = 1;
            for (int k = 0; k < e->n_ops; k++) {
                int64_t off = 0;
                for (int d = 0; d < n_out; d++) off += oi[d] * st[k][d];
                for (int d = 0; d < n_sum; d++) off += si[d] * st[k][n_out + d];
                prod *= miser_load_elem(ops[k]->dtype, ops[k]->data, off);
            }
            acc += prod;
            next_index(si, size + n_out, n_sum);
        }
        out[o] = (float)acc;
        next_index(oi, size, n_out);
    }
}

void miser_ref_matmul(const miser_tview *a, const miser_tview *b, float *out, int32_t nd, const int64_t *shape)
{
    int64_t M = shape[nd - 2], N = shape[nd - 1], K = a->shape[a->ndim - 1];
    int nb = nd - 2;
    int64_t bi[MISER_MAX_DIMS] = {0};
    int64_t batches = 1;
    for (int d = 0; d < nb; d++) batches *= shape[d];
    for (int64_t bt = 0; bt < batches; bt++) {
        int64_t oa = 0, ob = 0;
        for (int d = 0; d < nb; d++) {
            int da = d - (nb - (a->ndim - 2)), db = d - (nb - (b->ndim - 2));
            if (da >= 0 && a->shape[da] != 1) oa += bi[d] * a->stride[da];
            if (db >= 0 && b->shape[db] != 1) ob += bi[d] * b->stride[db];
        }
        const int64_t sam = a->stride[a->ndim - 2], sak = a->stride[a->ndim - 1];
        const int64_t sbk = b->stride[b->ndim - 2], sbn = b->stride[b->ndim - 1];
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double acc = 0;
                for (int64_t k = 0; k < K; k++)
                    acc += (double)miser_load_elem(a->dtype, a->data, oa + m * sam + k * sak) *
                           miser_load_elem(b->dtype, b->data, ob + k * sbk + n * sbn);
                out[(bt * M + m) * N + n] = (float)acc;
            }
        next_index(bi, shape, nb);
    }
}

void miser_ref_binary(int op, const miser_tview *a, const miser_tview *b, float *out, int32_t nd, const int64_t *shape)
{
    int64_t idx[MISER_MAX_DIMS] = {0}, total = 1;
    for (int d = 0; d < nd; d++) total *= shape[d];
    for (int64_t o = 0; o < total; o++) {
        int64_t oa = 0, ob = 0;
        for (int d = 0; d < nd; d++) {
            int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
            if (da >= 0 && a->shape[da] != 1) oa += idx[d] * a->stride[da];
            if (db >= 0 && b->shape[db] != 1) ob += idx[d] * b->stride[db];
        }
        float x = miser_load_elem(a->dtype, a->data, oa), y = miser_load_elem(b->dtype, b->data, ob);
        out[o] = op == 0 ? x + y : x * y;
        next_index(idx, shape, nd);
    }
}

void miser_ref_copy(const miser_tview *a, float *out, float scale)
{
    int64_t idx[MISER_MAX_DIMS] = {0}, total = miser_tview_numel(a);
    for (int64_t o = 0; o < total; o++) {
        int64_t off = 0;
        for (int d = 0; d < a->ndim; d++) off += idx[d] * a->stride[d];
        out[o] = miser_load_elem(a->dtype, a->data, off) * scale;
        next_index(idx, a->shape, a->ndim);
    }
}

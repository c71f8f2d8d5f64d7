/* Pieces the SIMD kernel files share verbatim. Each file includes this after
 * defining its own always-inline micro_dot(dt, MR, NR, a, m, n) (a tile of MR
 * rows of x by NR rows of W in the dot layout); the shapes are the same, the
 * instructions are the file's own. Internal to src/kernels. */
#ifndef MISER_KERNELS_SIMD_SHARED_H
#define MISER_KERNELS_SIMD_SHARED_H

/* fn(<dtype as a constant>, ...) for the weight dtypes the SIMD linears take,
 * so each instantiation is specialised on its dtype */
#define MISER_DISPATCH_DT(fn, dt, ...)                                                                                 \
    do {                                                                                                               \
        switch (dt) {                                                                                                  \
        case MISER_DTYPE_F32: fn(MISER_DTYPE_F32, __VA_ARGS__); break;                                                 \
        case MISER_DTYPE_F16: fn(MISER_DTYPE_F16, __VA_ARGS__); break;                                                 \
        case MISER_DTYPE_BF16: fn(MISER_DTYPE_BF16, __VA_ARGS__); break;                                               \
        case MISER_DTYPE_Q8_0: fn(MISER_DTYPE_Q8_0, __VA_ARGS__); break;                                               \
        default: break;                                                                                                \
        }                                                                                                              \
    } while (0)

/* dot_cols(dt, a, n0, n1): rows [n0, n1) of W against every row of x, in
 * tiles of 3 x-rows by 4 W-rows, then the leftovers */
#define MISER_DEFINE_DOT_COLS                                                                                          \
    __attribute__((always_inline)) static inline void dot_cols(miser_dtype dt, const miser_linear_args *a,            \
                                                               int64_t n0, int64_t n1)                                 \
    {                                                                                                                  \
        int64_t n = n0;                                                                                                \
        for (; n + 4 <= n1; n += 4) {                                                                                  \
            int64_t m = 0;                                                                                             \
            for (; m + 3 <= a->M; m += 3) micro_dot(dt, 3, 4, a, m, n);                                                \
            if (a->M - m == 2) micro_dot(dt, 2, 4, a, m, n);                                                           \
            else if (a->M - m == 1) micro_dot(dt, 1, 4, a, m, n);                                                      \
        }                                                                                                              \
        for (; n < n1; n++) {                                                                                          \
            int64_t m = 0;                                                                                             \
            for (; m + 3 <= a->M; m += 3) micro_dot(dt, 3, 1, a, m, n);                                                \
            if (a->M - m == 2) micro_dot(dt, 2, 1, a, m, n);                                                           \
            else if (a->M - m == 1) micro_dot(dt, 1, 1, a, m, n);                                                      \
        }                                                                                                              \
    }

#endif

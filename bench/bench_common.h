/* What the benchmark sources of build/miser-bench share (the bench sources are
 * linked into the one binary). */
#ifndef MISER_BENCH_COMMON_H
#define MISER_BENCH_COMMON_H

/* This machine's read bandwidth in GB/s (1e9 bytes/s): `threads` threads sum
 * a 288 MB buffer (larger than any L3 here), best of 5; NAN when the buffer
 * or the pool cannot be made. Measured in the run that reports beside it,
 * unlike miser plan's cached probe. */
double miser_bench_read_gbs(int threads);

#endif

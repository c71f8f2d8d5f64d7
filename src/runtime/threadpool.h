/* A persistent thread pool: miser_threadpool_run(fn) runs fn(ctx, ith, nth)
 * on every thread (the caller is thread 0) and returns when all are done. */
#ifndef MISER_THREADPOOL_H
#define MISER_THREADPOOL_H

#include "miser/core.h"

typedef struct miser_threadpool miser_threadpool;
typedef void (*miser_task_fn)(void *ctx, int ith, int nth);

miser_status miser_threadpool_create(int n_threads, miser_threadpool **out);
void miser_threadpool_free(miser_threadpool *p);
int miser_threadpool_size(const miser_threadpool *p);
void miser_threadpool_run(miser_threadpool *p, miser_task_fn fn, void *ctx);

#endif

/* Thread pool: workers wait on a generation counter; the caller takes part
 * as thread 0. Workers spin briefly before sleeping on a condition variable
 * so back-to-back ops of a decode step do not pay a wake-up each. */
#include "threadpool.h"
#include "miser/alloc.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

struct miser_threadpool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic uint64_t gen;
    _Atomic int pending;
    _Atomic int stop;
    miser_task_fn fn;
    void *ctx;
};

typedef struct {
    miser_threadpool *p;
    int ith;
} worker_arg;

static void *worker(void *arg)
{
    worker_arg *w = arg;
    miser_threadpool *p = w->p;
    int ith = w->ith;
    miser_free(w);
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen && !atomic_load(&p->stop)) {
            if (++spins < 20000) {
#if defined(__x86_64__)
                __builtin_ia32_pause();
#endif
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = g;
        p->fn(p->ctx, ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
}

miser_status miser_threadpool_create(int n, miser_threadpool **out)
{
    *out = NULL;
    if (n < 1) n = 1;
    miser_threadpool *p = miser_calloc(MISER_MEM_OTHER, 1, sizeof *p);
    if (!p) return MISER_ERR_NOMEM;
    p->n = n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (n > 1) {
        p->threads = miser_calloc(MISER_MEM_OTHER, (size_t)n, sizeof(pthread_t));
        if (!p->threads) {
            miser_threadpool_free(p);
            return MISER_ERR_NOMEM;
        }
        for (int i = 1; i < n; i++) {
            worker_arg *w = miser_malloc(MISER_MEM_OTHER, sizeof *w);
            if (!w) {
                p->n = i;
                miser_threadpool_free(p);
                return MISER_ERR_NOMEM;
            }
            w->p = p;
            w->ith = i;
            if (pthread_create(&p->threads[i], NULL, worker, w)) {
                miser_free(w);
                p->n = i;
                miser_threadpool_free(p);
                return miser_error_set(MISER_ERR_INTERNAL, "cannot create thread %d", i);
            }
        }
    }
    *out = p;
    return MISER_OK;
}

void miser_threadpool_free(miser_threadpool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n && p->threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    miser_free(p->threads);
    miser_free(p);
}

int miser_threadpool_size(const miser_threadpool *p) { return p ? p->n : 1; }

void miser_threadpool_run(miser_threadpool *p, miser_task_fn fn, void *ctx)
{
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    }
}

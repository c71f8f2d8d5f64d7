/* Thread pool with low-latency hand-off. The caller is thread 0; workers
 * wait on a 32-bit generation word. Back-to-back ops of a decode step come
 * every few to few hundred microseconds, so a worker spins (with `pause`) for
 * a bounded time before sleeping in futex(FUTEX_WAIT) on that word; the
 * caller only makes the wake syscall when some worker is actually asleep
 * (`sleepers`), so a hand-off between busy threads is two cache-line
 * transfers and no system call. Completion is a countdown the caller spins
 * on (the work it waits for is its peers' share of the same op).
 *
 * Cost per miser_threadpool_run with spinning workers: a few hundred
 * nanoseconds (`miser-bench kernels` prints it as "pool sync"), well under 1%
 * of an ~80 ms decode step of ~300 ops. */
#include "threadpool.h"
#include "miser/alloc.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* spin budget before sleeping: ~200 us, longer than the gap between two ops
 * of a step, far shorter than the gap between two user calls */
#define SPIN_NS 200000ll

struct miser_threadpool {
    int n;
    pthread_t *threads;
    _Alignas(64) _Atomic uint32_t gen; /* bumped once per run */
    _Atomic int sleepers;
    _Atomic int stop;
    _Alignas(64) _Atomic int pending; /* workers still running the current fn */
    miser_task_fn fn;
    void *ctx;
};

typedef struct {
    miser_threadpool *p;
    int ith;
} worker_arg;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *addr)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}

static void *worker(void *arg)
{
    worker_arg *w = arg;
    miser_threadpool *p = w->p;
    int ith = w->ith;
    miser_free(w);
    uint32_t seen = 0;
    for (;;) {
        uint32_t g;
        long long t0 = 0;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (atomic_load_explicit(&p->stop, memory_order_relaxed)) return NULL;
            cpu_relax();
            if (++spins & 255) continue;
            if (!t0) t0 = now_ns();
            else if (now_ns() - t0 > SPIN_NS) {
                /* announce, re-check, sleep: the caller bumps gen before
                 * reading sleepers, so either we see the new gen or it sees us */
                atomic_fetch_add(&p->sleepers, 1);
                if (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) futex_wait(&p->gen, seen);
                atomic_fetch_sub(&p->sleepers, 1);
                t0 = 0;
            }
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = g;
        p->fn(p->ctx, ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

miser_status miser_threadpool_create(int n, miser_threadpool **out)
{
    *out = NULL;
    if (n < 1) n = 1;
    miser_threadpool *p = miser_aligned_alloc(MISER_MEM_OTHER, 64, sizeof *p);
    if (!p) return MISER_ERR_NOMEM;
    *p = (miser_threadpool){.n = 1};
    if (n > 1) {
        p->threads = miser_calloc(MISER_MEM_OTHER, (size_t)n, sizeof(pthread_t));
        if (!p->threads) {
            miser_threadpool_free(p);
            return MISER_ERR_NOMEM;
        }
        for (int i = 1; i < n; i++) {
            worker_arg *w = miser_malloc(MISER_MEM_OTHER, sizeof *w);
            if (!w) {
                miser_threadpool_free(p);
                return MISER_ERR_NOMEM;
            }
            w->p = p;
            w->ith = i;
            if (pthread_create(&p->threads[i], NULL, worker, w)) {
                miser_free(w);
                miser_threadpool_free(p);
                return miser_error_set(MISER_ERR_INTERNAL, "cannot create thread %d", i);
            }
            p->n = i + 1; /* threads [1, n) exist and must be joined */
        }
    }
    *out = p;
    return MISER_OK;
}

void miser_threadpool_free(miser_threadpool *p)
{
    if (!p) return;
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    futex_wake_all(&p->gen);
    for (int i = 1; i < p->n && p->threads; i++) pthread_join(p->threads[i], NULL);
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
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&p->sleepers, memory_order_seq_cst) > 0) futex_wake_all(&p->gen);
    fn(ctx, 0, p->n);
    /* spin; when peers are slow to finish (more threads than free cores),
     * yield so a descheduled worker can run on this core */
    for (int spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0;)
        if (++spins < 4096) cpu_relax();
        else sched_yield();
}

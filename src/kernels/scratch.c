/* Per-thread room for the quantised-x rows of the integer linears (q8_0,
 * Q4_0, Q4_K, Q6_K: x is quantised once per call per thread, then dotted
 * against every weight row of the thread's share).
 *
 * Why not a _Thread_local array: static TLS is copied into every thread the
 * process makes, kernel thread or not, and glibc zero-fills it at thread
 * creation, so 256 KiB of .tbss costs 256 KiB of RssAnon in each of the
 * server's connection threads (and in glibc's cache of their stacks). Here a
 * thread pays only a pointer until it first runs an integer linear; the
 * buffer then comes from the accounting allocator (MISER_MEM_SCRATCH), lives
 * as long as the thread, and is freed by the key's destructor at thread exit.
 * The pool's workers are long-lived, so a kernel allocates at most once per
 * worker, on its first call. */
#include "kernels/quant4.h"
#include "miser/alloc.h"

#include <pthread.h>

static pthread_key_t g_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_key_ok;
static _Thread_local void *t_buf;

static void release(void *p) { miser_free(p); }
static void make_key(void) { g_key_ok = pthread_key_create(&g_key, release) == 0; }

void *miser_qdot_scratch(size_t *bytes)
{
    *bytes = MISER_QDOT_SCRATCH_BYTES;
    if (t_buf) return t_buf;
    pthread_once(&g_once, make_key);
    if (!g_key_ok) return NULL;
    void *p = miser_aligned_alloc(MISER_MEM_SCRATCH, 64, MISER_QDOT_SCRATCH_BYTES);
    if (!p) return NULL;
    if (pthread_setspecific(g_key, p) != 0) {
        miser_free(p);
        return NULL;
    }
    t_buf = p;
    return p;
}

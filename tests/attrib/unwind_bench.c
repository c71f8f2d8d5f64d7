/* Which unwinder should the interposer use? Times three ways of taking a
 * native stack from inside a call chain of -O2 code built without frame
 * pointers (as distribution libraries are): libunwind's unw_backtrace,
 * libgcc's _Unwind_Backtrace, and a frame-pointer walk. Prints ns per stack
 * and the depth each one found (the chain is DEPTH frames deep plus main and
 * libc's start frames); an unwinder that finds too few frames does not work
 * on such code, whatever its speed. Built and run by bench/attrib_overhead.sh:
 *   cc -O2 -fomit-frame-pointer unwind_bench.c -lunwind */
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unwind.h>

#define DEPTH 30
#define REPS 200000
#define MAXF 128

static void *g_buf[MAXF];
static volatile int g_n;

typedef struct {
    void **buf;
    int n;
} ucb;
static _Unwind_Reason_Code cb(struct _Unwind_Context *c, void *arg)
{
    ucb *u = arg;
    if (u->n >= MAXF) return _URC_END_OF_STACK;
    u->buf[u->n++] = (void *)_Unwind_GetIP(c);
    return _URC_NO_REASON;
}

static __attribute__((noinline)) int take(int how)
{
    if (how == 0) return unw_backtrace(g_buf, MAXF);
    if (how == 1) {
        ucb u = {g_buf, 0};
        _Unwind_Backtrace(cb, &u);
        return u.n;
    }
    /* frame pointers: follows rbp links while they look like a stack */
    int n = 0;
    uintptr_t *fp = __builtin_frame_address(0);
    uintptr_t lo = (uintptr_t)fp, hi = lo + (8u << 20);
    while (fp && n < MAXF && (uintptr_t)fp >= lo && (uintptr_t)fp < hi && !((uintptr_t)fp & 7)) {
        g_buf[n++] = (void *)fp[1];
        uintptr_t *next = (uintptr_t *)fp[0];
        if (next <= fp) break;
        fp = next;
    }
    return n;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static __attribute__((noinline)) int chain(int d, int how, volatile int *sink)
{
    if (d == 0) {
        double t0 = now();
        int n = 0;
        for (int i = 0; i < REPS; i++) n = take(how);
        double t = now() - t0;
        static const char *name[] = {"libunwind unw_backtrace", "libgcc _Unwind_Backtrace", "frame-pointer walk"};
        printf("%-26s %8.0f ns/stack  depth %d (expected >= %d)\n", name[how], t / REPS * 1e9, n, DEPTH + 2);
        return n;
    }
    int r = chain(d - 1, how, sink) + 1;
    *sink += r; /* not a tail call */
    return r;
}

int main(void)
{
    volatile int sink = 0;
    for (int how = 0; how < 3; how++) chain(DEPTH, how, &sink);
    return 0;
}

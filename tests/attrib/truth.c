/* Known-truth program for the attribution tests (tests/test_attrib.c):
 * allocates from distinct call sites with known sizes, frees some between
 * stages it announces on the marker pipe (synchronously, ack=1), forks and
 * execs itself as a child that allocates too, and leaves some blocks live at
 * exit. The expected bytes per site at every stage's peak follow from the
 * sequence below (written out in the test, not taken from miser's output).
 *
 *   stage "one"   : A 2 x 1,000,000 (malloc), B 4,000,000 (calloc)
 *                   peak 6,000,000: A 2,000,000, B 4,000,000
 *   stage "two"   : free B; A 3,000,000 temporary (malloc+free); C 8 MiB (mmap anon)
 *                   peak 2,000,000 + 8,388,608: A 2,000,000, C 8,388,608; temporary A 3,000,000
 *   stage "three" : B 6,000,000 (realloc from NULL), munmap C, A 1,000,000;
 *                   child (fork + exec "truth child"): D 5,000,000 (posix_memalign), freed before exit
 *                   parent peak: A 2,000,000 + B 6,000,000 + C 8,388,608; child peak: D 5,000,000
 *   exit          : leaks A 3,000,000 (3 blocks), B 6,000,000
 *
 * "truth realloc" (a realloc that moves, both ways glibc moves):
 *   stage "copy"  : R1 10,000,000 from the heap (mallopt raises the mmap
 *                   threshold), a 1,000-byte fence behind it, realloc to
 *                   15,000,000 at site_r2: the block cannot grow in place, so
 *                   glibc allocates, copies and frees; both freed after.
 *                   peak: R1 10,000,000 + R2 15,000,000 + fence 1,000
 *   stage "remap" : R1 40,000,000 (over glibc's largest mmap threshold: its
 *                   own mapping), realloc to 60,000,000 at site_r2: glibc
 *                   mremaps the pages, nothing is copied.
 *                   peak: R2 60,000,000 only
 *
 * "truth cross" (a stage boundary a process did not announce): a fork
 * child allocates K1 3,000,000 and waits; the parent announces "alpha"
 * (ack=1) and only then lets the child go on: K2 2,000,000, free K1, free
 * K2; the parent announces "beta" after the child exited.
 *   child, stage "alpha": K1 3,000,000 (K2 not yet)
 *   child, stage "beta" : peak K1 3,000,000 + K2 2,000,000, K1 there at the
 *                         start; K2 temporary 2,000,000
 *   parent: P 1,500,000 before "alpha", untouched after (it makes no event
 *           in "beta": its value there is carried from "alpha")
 * Built by the Makefile with -O1 -fno-inline (every site its own frame). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static void mark(const char *name)
{
    const char *fd = getenv("MISER_MARKER_FD"), *ack = getenv("MISER_MARKER_ACK_FD");
    if (!fd || !ack) return;
    char line[128];
    int n = snprintf(line, sizeof line, "stage %s ack=1\n", name);
    char c;
    if (write(atoi(fd), line, (size_t)n) == n && read(atoi(ack), &c, 1) != 1) _exit(90);
}

__attribute__((noinline)) void *site_a(size_t n)
{
    void *p = malloc(n);
    if (p) memset(p, 1, n);
    return p;
}
__attribute__((noinline)) void *site_b(size_t n)
{
    return calloc(1, n);
}
__attribute__((noinline)) void *site_b_realloc(size_t n)
{
    return realloc(NULL, n);
}
__attribute__((noinline)) void *site_c(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}
__attribute__((noinline)) void *site_d(size_t n)
{
    void *p = NULL;
    return posix_memalign(&p, 64, n) ? NULL : p;
}

/* "threads": four threads allocate and free from one site while a fifth
 * forks a child that allocates 777,777 bytes and then crashes (SIGSEGV
 * raised after the allocation): each thread leaves 100 blocks of 1,000 bytes
 * live at site_t (400,000 bytes in 400 blocks at exit), and the crashed
 * child's bytes must still be attributed to it. */
#include <pthread.h>
#include <signal.h>
__attribute__((noinline)) void *site_t(size_t n) { return malloc(n); }
__attribute__((noinline)) void *site_churn(size_t n) { return malloc(n); }
__attribute__((noinline)) void *site_crash(size_t n)
{
    void *p = malloc(n);
    if (p) memset(p, 4, n);
    return p;
}
static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        void *q = site_churn(16 + (size_t)(i % 512));
        void *r = realloc(q, 600);
        free(r);
    }
    for (int i = 0; i < 100; i++)
        if (!site_t(1000)) return (void *)1;
    return NULL;
}
static void *forker(void *arg)
{
    (void)arg;
    pid_t pid = fork();
    if (pid == 0) {
        if (!site_crash(777777)) _exit(2);
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
        _exit(3);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFSIGNALED(st)) return (void *)1;
    return NULL;
}
static int threads(void)
{
    pthread_t t[5];
    for (int i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, worker, NULL)) return 5;
    if (pthread_create(&t[4], NULL, forker, NULL)) return 5;
    int bad = 0;
    for (int i = 0; i < 5; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad |= r != NULL;
    }
    return bad ? 6 : 0;
}

#include <malloc.h>
#include <stdint.h>
__attribute__((noinline)) void *site_r1(size_t n)
{
    void *p = malloc(n);
    if (p) memset(p, 5, n);
    return p;
}
__attribute__((noinline)) void *site_r2(void *p, size_t n) { return realloc(p, n); }
__attribute__((noinline)) void *site_fence(size_t n) { return malloc(n); }
static int realloc_moves(void)
{
    if (!mallopt(M_MMAP_THRESHOLD, 16 << 20)) return 8;
    void *a = site_r1(10000000), *fence = site_fence(1000);
    if (!a || !fence) return 2;
    uintptr_t was = (uintptr_t)a;
    void *b = site_r2(a, 15000000);
    if (!b) return 2;
    if ((uintptr_t)b == was) return 7; /* it must have moved for the test to mean anything */
    free(b);
    free(fence);
    mark("copy");
    mallopt(M_MMAP_THRESHOLD, 128 << 10);
    a = site_r1(40000000);
    if (!a) return 2;
    b = site_r2(a, 60000000);
    if (!b) return 2;
    memset(b, 6, 60000000);
    free(b);
    mark("remap");
    return 0;
}

__attribute__((noinline)) void *site_k1(size_t n)
{
    void *p = malloc(n);
    if (p) memset(p, 7, n);
    return p;
}
__attribute__((noinline)) void *site_p(size_t n)
{
    void *p = malloc(n);
    if (p) memset(p, 9, n);
    return p;
}
__attribute__((noinline)) void *site_k2(size_t n)
{
    void *p = malloc(n);
    if (p) memset(p, 8, n);
    return p;
}
static int cross(void)
{
    int go[2], ready[2];
    if (pipe(go) || pipe(ready)) return 2;
    pid_t pid = fork();
    if (pid == 0) {
        char c = 0;
        void *k1 = site_k1(3000000);
        if (!k1 || write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1) _exit(2);
        /* the first event after the boundary: an allocation */
        void *k2 = site_k2(2000000);
        if (!k2) _exit(2);
        free(k1);
        free(k2);
        _exit(0);
    }
    char c = 0;
    if (pid < 0 || read(ready[0], &c, 1) != 1) return 2;
    void *keep = site_p(1500000);
    if (!keep) return 2;
    mark("alpha");
    if (write(go[1], &c, 1) != 1) return 2;
    int st = 0;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) return 4;
    mark("beta");
    return 0;
}

/* "signals": a timer's handler maps and unmaps a page (async-signal-safe
 * calls the interposer hooks) every 200 us while the main thread mallocs and
 * frees: a handler that lands inside a hook (the interposer's lock held)
 * must pass straight through, not deadlock. */
#include <sys/time.h>
static volatile sig_atomic_t g_ticks;
static void on_alarm(int sig)
{
    (void)sig;
    int e = errno;
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) munmap(p, 4096);
    g_ticks++;
    errno = e;
}
static int signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGALRM, &sa, NULL)) return 2;
    struct itimerval it = {{0, 200}, {0, 200}};
    if (setitimer(ITIMER_REAL, &it, NULL)) return 2;
    for (int i = 0; i < 300000 || g_ticks < 50; i++) {
        void *p = site_churn(64 + (size_t)(i % 256));
        free(p);
        if (i > 50000000) break;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    return g_ticks >= 50 ? 0 : 9;
}

static int child(void)
{
    void *d = site_d(5000000);
    if (!d) return 3;
    memset(d, 2, 5000000);
    free(d);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "child")) return child();
    if (argc > 1 && !strcmp(argv[1], "threads")) return threads();
    if (argc > 1 && !strcmp(argv[1], "realloc")) return realloc_moves();
    if (argc > 1 && !strcmp(argv[1], "cross")) return cross();
    if (argc > 1 && !strcmp(argv[1], "signals")) return signals();
    void *a1 = site_a(1000000), *a2 = site_a(1000000);
    void *b = site_b(4000000);
    if (!a1 || !a2 || !b) return 2;
    mark("one");
    free(b);
    void *t = site_a(3000000);
    free(t);
    void *c = site_c(8388608);
    if (!c) return 2;
    mark("two");
    /* $MISER_TRUTH_B2 (bytes) replaces B's 6,000,000 in stage three: the same
     * command line allocating more, for tests/test_check_attrib.c. */
    const char *b2env = getenv("MISER_TRUTH_B2");
    size_t b2n = b2env ? strtoul(b2env, NULL, 10) : 6000000;
    void *b2 = site_b_realloc(b2n);
    if (!b2) return 2;
    memset(b2, 3, b2n);
    munmap(c, 8388608);
    void *a3 = site_a(1000000);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", argv[0], "child", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) return 4;
    mark("three");
    (void)a3;
    return 0; /* a1, a2, a3 and b2 leak on purpose */
}

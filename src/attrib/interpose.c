/* libmiser-attrib.so: the allocation interposer of `miser profile --attribute`.
 *
 * Preloaded (LD_PRELOAD, which the watcher sets and which survives fork and
 * exec) into every process of a profiled tree. It wraps the malloc family
 * (malloc, calloc, realloc, free, posix_memalign, aligned_alloc, memalign,
 * valloc, pvalloc, reallocarray) and mmap/mmap64/munmap/mremap, records the
 * native call stack of every allocation (libunwind's unw_backtrace: the
 * fastest of the three unwinders measured that works on -O2 code without
 * frame pointers, docs/attribution.md), deduplicates stacks by hash, and keeps
 * per stack the live bytes now, at the current stage's live-bytes peak, at the
 * stage's start, and those that came and went inside the stage. Everything
 * that must outlive the process lives in its own MAP_SHARED file
 * (attrib_format.h): a crash keeps its data. Symbolisation happens after the
 * run, in the watcher.
 *
 * Not part of libmiser: built alone by the Makefile ($(BUILD)/libmiser-attrib.so)
 * with -lunwind. Without $MISER_ATTRIB_DIR it only forwards calls.
 *
 * Robustness rules, in the order they bite:
 *  - bootstrap: dlsym may allocate before the real functions are known; those
 *    calls are served from a static arena that is never freed;
 *  - reentrancy: a thread-local guard is set for the whole of a hook, so
 *    allocations by the unwinder, by our own table growth, by an allocator's
 *    own mmap calls underneath malloc, and by a signal handler that
 *    interrupts a hook pass straight through untracked (no recursion and no
 *    self-deadlock on the lock);
 *  - threads: one mutex around the tables (the per-stage peak must be exact
 *    over the whole process, so updates are serialised); stacks are unwound
 *    before taking it;
 *  - fork: pthread_atfork holds the lock across fork; the child drops the
 *    inherited tables and opens its own file on its next event;
 *  - bounded memory: the stack table and frame pool have fixed capacities;
 *    an allocation whose stack does not fit is charged to its kind's overflow bucket and
 *    counted (stack_overflow), never dropped. */
#include "attrib_format.h"

#define UNW_LOCAL_ONLY
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libunwind.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- the real functions ---- */

static void *(*r_malloc)(size_t);
static void *(*r_calloc)(size_t, size_t);
static void *(*r_realloc)(void *, size_t);
static void (*r_free)(void *);
static int (*r_posix_memalign)(void **, size_t, size_t);
static void *(*r_aligned_alloc)(size_t, size_t);
static void *(*r_memalign)(size_t, size_t);
static void *(*r_valloc)(size_t);
static void *(*r_pvalloc)(size_t);
static void *(*r_mmap)(void *, size_t, int, int, int, off_t);
static int (*r_munmap)(void *, size_t);
static void *(*r_mremap)(void *, size_t, size_t, int, ...);

/* Static bootstrap arena: serves allocations made while dlsym resolves the
 * real functions (glibc's dlsym may calloc its error buffer). Never freed. */
static _Alignas(64) unsigned char g_boot[1 << 16];
static size_t g_boot_used;
static int g_resolving;

static int in_boot(const void *p) { return (const unsigned char *)p >= g_boot && (const unsigned char *)p < g_boot + sizeof g_boot; }

static void *boot_alloc(size_t n, size_t align)
{
    if (align < 16) align = 16;
    size_t at = (g_boot_used + align - 1) & ~(align - 1);
    if (at + n > sizeof g_boot) return NULL;
    g_boot_used = at + n;
    return g_boot + at;
}

static void resolve(void)
{
    if (r_malloc || g_resolving) return;
    g_resolving = 1;
    r_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    r_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    r_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    r_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    r_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    r_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    r_valloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "valloc");
    r_pvalloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "pvalloc");
    r_mmap = (void *(*)(void *, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap");
    r_munmap = (int (*)(void *, size_t))dlsym(RTLD_NEXT, "munmap");
    r_mremap = (void *(*)(void *, size_t, size_t, int, ...))dlsym(RTLD_NEXT, "mremap");
    void *m = dlsym(RTLD_NEXT, "malloc");
    g_resolving = 0;
    r_malloc = (void *(*)(size_t))m; /* last: it is the "resolved" flag */
}

/* ---- state ---- */

/* A live heap block as the hooks see it. */
typedef struct {
    uintptr_t ptr; /* 0: none */
    uint64_t size;
    uint32_t stack, interval;
} live_slot;

/* A table cell: 12 bytes (a 48-bit pointer and a 48-bit value, in three
 * 32-bit words), open addressing, linear probing, backward-shift deletion.
 * A block at or above 2^48 (never in x86-64's or AArch64's default user
 * address space) is not tracked and counted (table_overflow). In the live
 * table w packs the stack id (bits 0-23: the stack table holds at most 2^24),
 * the block's slack (bits 24-39: malloc_usable_size minus the size asked
 * for, which is how the size is kept in 16 bits; 0xffff: the size is in the
 * big table) and the low 8 bits of its birth interval (bits 40-47;
 * close_interval re-tags every block each 64 intervals so that a tag equal
 * to the current interval's always means "born in it"). In the big table w
 * is the size. 12 bytes rather than 16: the live table is the interposer's
 * largest private table (ONNX Runtime: 120,000 live blocks, 262,144 cells). */
typedef struct {
    uint32_t lo, mid, hi; /* ptr = lo | (mid & 0xffff) << 32; w = mid >> 16 | hi << 16 */
} cell;
#define CELL_MAX ((uint64_t)1 << 48)
static inline uintptr_t cell_ptr(const cell *c) { return (uintptr_t)(c->lo | (uint64_t)(c->mid & 0xffff) << 32); }
static inline uint64_t cell_w(const cell *c) { return c->mid >> 16 | (uint64_t)c->hi << 16; }
static inline cell cell_make(uintptr_t p, uint64_t w)
{
    return (cell){(uint32_t)p, (uint32_t)((uint64_t)p >> 32 & 0xffff) | (uint32_t)(w & 0xffff) << 16, (uint32_t)(w >> 16)};
}
typedef struct {
    cell *v;
    uint64_t cap, n;
} ctab;
#define SLACK_BIG 0xffffu

typedef struct {
    uintptr_t start;
    uint64_t len;
    uint32_t stack, interval;
} region;

static __thread int t_guard __attribute__((tls_model("initial-exec")));

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_state;              /* 0 not tried, 1 active, -1 inactive (no env or failure) */
static volatile int g_reinit;    /* set in a fork child: start afresh on the next event */
static mattr_header *g_hdr;      /* the file mapping (shared) */
static size_t g_file_size;
static mattr_stack *g_stacks;
static uint64_t *g_node_ip;      /* the frame tree (shared): return addresses */
static uint32_t *g_node_parent;  /* and parents */
static uint8_t *g_snaps;         /* the snapshot stream (shared, attrib_format.h) */
static char *g_maps;
static uint64_t g_maps_hash;     /* of the newest load map stored */
static const _Atomic uint64_t *g_stage; /* the watcher's interval counter, or NULL */
/* Private indexes, open addressing with linear probing, values id+1 with
 * a hash tag above them (grow_ids), grown by doubling at 3/4 load (they
 * start small: a table touched at random costs a resident page per entry
 * until it is dense):
 *  - g_index: whole stack (ips + kind) -> stack id, so a known stack costs
 *    one probe and a look at its record and innermost node to confirm;
 *  - g_child: (parent node, ip) -> node, the frame tree's edges. */
static uint32_t *g_index;
static uint32_t g_index_cap, g_index_n;
static uint32_t *g_child;
static uint32_t g_child_cap;
/* The path of the last new stack, outermost frame first: its return
 * addresses and their nodes (intern_n reuses the shared outer part). */
static uint64_t g_path_ip[MATTR_MAX_DEPTH];
static uint32_t g_path_node[MATTR_MAX_DEPTH];
static int g_path_n;
static int g_glibc;              /* the next malloc is glibc's: its chunk header can be read */
static ctab g_live;               /* live heap blocks (private) */
static ctab g_big;                /* sizes of live blocks whose slack does not fit 16 bits */
static size_t (*r_usable)(void *); /* the next allocator's malloc_usable_size, or NULL */
static region *g_regions;
static uint32_t g_nregions, g_max_regions;
static uintptr_t g_self_lo, g_self_hi; /* our own text: frames inside it are skipped */
static int g_depth = MATTR_MAX_DEPTH;  /* frames kept per stack ($MISER_ATTRIB_DEPTH) */
#define LIVE_CAP0 4096u  /* first capacity of the live-allocation table */
#define REGIONS_MAX 16384u
#define INDEX_CAP0 1024u

static void *priv_map(size_t n)
{
    void *p = r_mmap ? r_mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                     : (void *)syscall(SYS_mmap, NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}
static void priv_unmap(void *p, size_t n)
{
    if (p) r_munmap ? (void)r_munmap(p, n) : (void)syscall(SYS_munmap, p, n);
}

static int find_self(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    uintptr_t me = (uintptr_t)data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (me >= lo && me < hi) {
            g_self_lo = lo;
            g_self_hi = hi;
            return 1;
        }
    }
    return 0;
}

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ULL;
    return h;
}

/* Append /proc/self/maps to the file when it changed since the last copy
 * (read with raw syscalls: no allocation). */
static void store_maps(void)
{
    if (!g_hdr) return;
    uint32_t at = g_hdr->maps_len;
    const char tag[] = "#maps\n";
    if (at + sizeof tag + 4096 > g_hdr->max_maps) {
        g_hdr->maps_overflow++;
        return;
    }
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char *dst = g_maps + at;
    memcpy(dst, tag, sizeof tag - 1);
    size_t n = sizeof tag - 1, room = g_hdr->max_maps - at - 1;
    int full = 0;
    for (;;) {
        if (n >= room) {
            full = 1;
            break;
        }
        ssize_t r = syscall(SYS_read, fd, dst + n, room - n);
        if (r <= 0) break;
        n += (size_t)r;
    }
    syscall(SYS_close, fd);
    if (full) {
        g_hdr->maps_overflow++;
        return;
    }
    /* keep the lines the symboliser uses (file-backed objects and the vdso):
     * anonymous mappings, [heap] and [stack] change all the time (a JIT's,
     * an allocator's) and would make every copy new */
    size_t w = sizeof tag - 1;
    for (size_t r = w; r < n;) {
        size_t e = r;
        while (e < n && dst[e] != '\n') e++;
        if (e < n) e++;
        int keep = 0;
        for (size_t k = r; k + 1 < e && !keep; k++)
            keep = (dst[k] == ' ' && dst[k + 1] == '/') || (dst[k] == '[' && k + 6 <= e && !memcmp(dst + k, "[vdso]", 6));
        if (keep) {
            memmove(dst + w, dst + r, e - r);
            w += e - r;
        }
        r = e;
    }
    n = w;
    uint64_t h = fnv(dst, n, 0xcbf29ce484222325ULL);
    if (h == g_maps_hash) return;
    g_maps_hash = h;
    g_hdr->maps_len = at + (uint32_t)n;
}

static void fork_prepare(void) { pthread_mutex_lock(&g_lock); }
static void fork_parent(void) { pthread_mutex_unlock(&g_lock); }
static void fork_child(void)
{
    pthread_mutex_unlock(&g_lock);
    if (g_state == 1) g_reinit = 1;
}

static int env_u32(const char *name, uint32_t dflt, uint32_t lo, uint32_t hi)
{
    const char *s = getenv(name);
    if (!s || !*s) return (int)dflt;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || v < lo || v > hi) return (int)dflt;
    return (int)v;
}

/* Create this image's file and the private tables. Called with g_lock held
 * and the guard set. forked: this is a fork child dropping its parent's. */
static void open_channel(int forked)
{
    const char *dir = getenv(MATTR_ENV_DIR);
    if (!dir || !*dir || strlen(dir) > 3000) {
        g_state = -1;
        return;
    }
    /* Capacities are address space, not memory: the file is sparse on
     * tmpfs and every section is filled from its start, so only the pages
     * used are resident. `python3 -c 'import torch'` makes ~607,000
     * distinct stacks in ~2.19 million frame nodes (docs/attribution.md). */
    uint32_t max_stacks = (uint32_t)env_u32(MATTR_ENV_MAX_STACKS, 1u << 21, 4, 1u << 24);
    uint32_t max_nodes = (uint32_t)env_u32(MATTR_ENV_MAX_NODES, 1u << 23, 2, 1u << 26);
    g_depth = env_u32(MATTR_ENV_DEPTH, MATTR_DEFAULT_DEPTH, 1, MATTR_MAX_DEPTH);
    /* the snapshot stream: 256 MiB of address space, ~16 million records */
    uint32_t snaps_cap = 1u << 28, max_maps = 8u << 20;
    size_t stacks_off = MATTR_HEADER_SIZE;
    size_t nodes_off = stacks_off + (size_t)max_stacks * sizeof(mattr_stack);
    size_t parents_off = nodes_off + (size_t)max_nodes * sizeof(uint64_t);
    size_t snaps_off = (parents_off + (size_t)max_nodes * sizeof(uint32_t) + 7) & ~(size_t)7;
    size_t maps_off = snaps_off + snaps_cap;
    size_t size = (maps_off + max_maps + 4095) & ~(size_t)4095;
    char path[3100];
    int fd = -1;
    pid_t pid = (pid_t)syscall(SYS_getpid);
    for (int seq = 0; seq < 1000 && fd < 0; seq++) {
        snprintf(path, sizeof path, "%s/%d.%d.mattr", dir, (int)pid, seq);
        fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0 || syscall(SYS_ftruncate, fd, (long)size) != 0) {
        if (fd >= 0) syscall(SYS_close, fd);
        g_state = -1;
        return;
    }
    void *m = r_mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    syscall(SYS_close, fd);
    if (m == MAP_FAILED) {
        g_state = -1;
        return;
    }
    uint32_t *index = priv_map((size_t)INDEX_CAP0 * sizeof *index);
    uint32_t *child = priv_map((size_t)INDEX_CAP0 * sizeof *child);
    cell *live = priv_map((size_t)LIVE_CAP0 * sizeof *live);
    cell *big = priv_map((size_t)256 * sizeof *big);
    region *regs = priv_map((size_t)REGIONS_MAX * sizeof *regs);
    if (!index || !child || !live || !big || !regs) {
        priv_unmap(index, (size_t)INDEX_CAP0 * sizeof *index);
        priv_unmap(child, (size_t)INDEX_CAP0 * sizeof *child);
        priv_unmap(live, (size_t)LIVE_CAP0 * sizeof *live);
        priv_unmap(big, (size_t)256 * sizeof *big);
        priv_unmap(regs, (size_t)REGIONS_MAX * sizeof *regs);
        r_munmap(m, size);
        g_state = -1;
        return;
    }
    g_hdr = m;
    g_file_size = size;
    g_index = index;
    g_index_cap = INDEX_CAP0;
    g_index_n = 0;
    g_child = child;
    g_child_cap = INDEX_CAP0;
    g_live = (ctab){live, LIVE_CAP0, 0};
    g_big = (ctab){big, 256, 0};
    g_regions = regs;
    g_max_regions = REGIONS_MAX;
    g_nregions = 0;
    g_path_n = 0; /* a new tree */
    g_maps_hash = 0;
    mattr_header *h = g_hdr;
    h->version = MATTR_VERSION;
    h->header_size = MATTR_HEADER_SIZE;
    h->pid = (int32_t)pid;
    h->ppid = (int32_t)syscall(SYS_getppid);
    h->file_size = size;
    h->stacks_off = stacks_off;
    h->nodes_off = nodes_off;
    h->parents_off = parents_off;
    h->snaps_off = snaps_off;
    h->maps_off = maps_off;
    h->max_stacks = max_stacks;
    h->max_nodes = max_nodes;
    h->snaps_cap = snaps_cap;
    h->max_maps = max_maps;
    h->unwinder = 1;
    h->flags = forked ? MATTR_FLAG_FORKED : 0;
    ssize_t el = syscall(SYS_readlinkat, AT_FDCWD, "/proc/self/exe", h->exe, sizeof h->exe - 1);
    h->exe[el > 0 ? el : 0] = 0;
    g_stacks = (mattr_stack *)((char *)m + stacks_off);
    g_node_ip = (uint64_t *)((char *)m + nodes_off);
    g_node_parent = (uint32_t *)((char *)m + parents_off);
    g_snaps = (uint8_t *)m + snaps_off;
    g_maps = (char *)m + maps_off;
    /* stacks 0..2: the overflow buckets, one per kind */
    for (uint32_t k = 0; k < MATTR_NKINDS; k++) g_stacks[k].kind = k;
    h->nstacks = MATTR_NKINDS;
    h->nnodes = 1; /* node 0: the root */
    uint64_t iv = g_stage ? atomic_load_explicit(g_stage, memory_order_acquire) : 0;
    h->interval = h->interval_first = iv;
    h->peak_gen = 1;
    /* Does a malloc other than ours win in the global scope (an executable
     * that brings its own allocator)? Then little or nothing reaches us. */
    Dl_info mine, theirs;
    const ElfW(Sym) *sym = NULL;
    void *gm = dlsym(RTLD_DEFAULT, "malloc");
    /* a definition, not a non-PIE executable's canonical PLT entry (which
     * dlsym also returns, and which leads to us) */
    if (gm && dladdr((void *)&open_channel, &mine) && dladdr1(gm, &theirs, (void **)&sym, RTLD_DL_SYMENT) &&
        theirs.dli_fbase != mine.dli_fbase && theirs.dli_saddr == gm && theirs.dli_sname &&
        !strcmp(theirs.dli_sname, "malloc") && sym && sym->st_shndx != SHN_UNDEF) {
        h->flags |= MATTR_FLAG_OWN_MALLOC;
        snprintf(h->own_malloc, sizeof h->own_malloc, "%s", theirs.dli_fname ? theirs.dli_fname : "?");
    }
    store_maps();
    atomic_thread_fence(memory_order_release);
    h->magic = MATTR_MAGIC; /* last: a reader ignores a file without it */
    g_state = 1;
}

static void init_locked(void)
{
    if (g_state) return;
    resolve();
    if (!r_malloc || !r_mmap || !r_munmap) {
        g_state = -1;
        return;
    }
    const char *dir = getenv(MATTR_ENV_DIR);
    if (!dir || !*dir) {
        g_state = -1;
        return;
    }
    char path[3100];
    snprintf(path, sizeof path, "%s/%s", dir, MATTR_STAGE_FILE);
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        void *m = r_mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
        syscall(SYS_close, fd);
        if (m != MAP_FAILED) g_stage = m;
    }
    dl_iterate_phdr(find_self, (void *)(uintptr_t)&find_self);
    Dl_info di;
    g_glibc = dladdr((void *)r_malloc, &di) && di.dli_fname && strstr(di.dli_fname, "/libc.so.6");
    r_usable = (size_t (*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    open_channel(0);
}

/* A fork child: drop the parent's tables (copies) and start our own file. */
static void reinit_child_locked(void)
{
    g_reinit = 0;
    if (g_hdr) r_munmap(g_hdr, g_file_size);
    priv_unmap(g_index, (size_t)g_index_cap * sizeof *g_index);
    priv_unmap(g_child, (size_t)g_child_cap * sizeof *g_child);
    priv_unmap(g_live.v, (size_t)g_live.cap * sizeof *g_live.v);
    priv_unmap(g_big.v, (size_t)g_big.cap * sizeof *g_big.v);
    priv_unmap(g_regions, (size_t)g_max_regions * sizeof *g_regions);
    g_hdr = NULL;
    g_index = NULL;
    g_child = NULL;
    g_live.v = g_big.v = NULL;
    g_regions = NULL;
    open_channel(1);
}

/* ---- per-interval bookkeeping ---- */

static void snap_put(uint32_t first, uint32_t last, uint32_t stack, int64_t pb, int64_t pc, int64_t sb, int64_t sc,
                     int64_t tb, int64_t tc, int64_t eb, int64_t ec)
{
    mattr_header *h = g_hdr;
    if (h->snaps_cap - h->snaps_len < MATTR_SNAP_MAX_BYTES) {
        h->snap_overflow++;
        return;
    }
    const mattr_snap r = {first, last, stack, (int32_t)pc, (int32_t)sc, (int32_t)ec, pb, sb, tb, eb, tc};
    /* the whole record first, then the length that makes it visible */
    h->snaps_len += (uint32_t)mattr_snap_encode(g_snaps + h->snaps_len, &r);
}

static void live_retag(uint64_t now);

/* The watcher moved on to interval now: close ours (and any it skipped). */
static void close_interval(uint64_t now)
{
    mattr_header *h = g_hdr;
    uint32_t iv = (uint32_t)h->interval;
    snap_put(iv, iv, MATTR_TOTALS, h->peak_total, 0, h->start_total, 0, 0, 0, h->cur_total, 0);
    /* only the stacks that changed in it (touch() stamped them); the others
     * held the value of their last record, which the collector carries */
    for (uint32_t i = 0; i < h->nstacks; i++) {
        mattr_stack *s = &g_stacks[i];
        if (s->interval != iv) continue;
        int64_t pb = mattr_peak_bytes(s, h->peak_gen), pc = mattr_peak_count(s, h->peak_gen);
        int64_t tb = s->temp_bytes, tc = s->temp_count;
        if (pb || s->start_bytes || tb || s->cur_bytes)
            snap_put(iv, iv, i, pb, pc, s->start_bytes, s->start_count, tb, tc, s->cur_bytes, s->cur_count);
    }
    if (now > h->interval + 1) {
        /* no event in between: each skipped interval held the state as it is */
        uint32_t a = iv + 1, b = (uint32_t)(now - 1);
        snap_put(a, b, MATTR_TOTALS, h->cur_total, 0, h->cur_total, 0, 0, 0, h->cur_total, 0);
    }
    if ((h->interval >> 6) != (now >> 6)) live_retag(now);
    h->interval = now;
    h->start_total = h->peak_total = h->cur_total;
    h->peak_gen++; /* the state now is the new interval's peak so far */
    store_maps();  /* libraries loaded meanwhile (dlopen) */
}

static inline void check_interval(void)
{
    if (!g_stage) return;
    uint64_t now = atomic_load_explicit(g_stage, memory_order_acquire);
    if (now > g_hdr->interval) close_interval(now);
}

/* Before changing stack s: keep its values at the peak and at the start. */
static inline void touch(mattr_stack *s)
{
    mattr_header *h = g_hdr;
    if (s->mod_gen < h->peak_gen) {
        s->saved_bytes = s->cur_bytes;
        s->saved_count = s->cur_count;
        s->mod_gen = h->peak_gen;
    }
    uint32_t iv = (uint32_t)h->interval;
    if (s->interval != iv) {
        s->start_bytes = s->cur_bytes;
        s->start_count = s->cur_count;
        s->temp_bytes = s->temp_count = 0;
        s->interval = iv;
    }
}

static inline void total_add(int kind, int64_t d)
{
    if (kind == MATTR_KIND_FILE) return; /* file mappings are not allocations: not in the peak */
    mattr_header *h = g_hdr;
    h->cur_total += d;
    if (h->cur_total > h->peak_total) {
        h->peak_total = h->cur_total;
        h->peak_gen++;
    }
}

static void charge(uint32_t sid, int kind, int64_t bytes, int64_t count)
{
    mattr_stack *s = &g_stacks[sid];
    touch(s);
    s->cur_bytes += bytes;
    s->cur_count += count;
    total_add(kind, bytes);
}

static void discharge(uint32_t sid, int kind, int64_t bytes, uint32_t born)
{
    mattr_stack *s = &g_stacks[sid];
    touch(s);
    s->cur_bytes -= bytes;
    s->cur_count -= 1;
    if (born == (uint32_t)g_hdr->interval) {
        s->temp_bytes += bytes;
        s->temp_count += 1;
    }
    total_add(kind, -bytes);
}

/* ---- the frame tree and the stack table ---- */

static inline uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}
static uint64_t stack_hash(const uint64_t *ips, int n, int kind)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)kind;
    for (int i = 0; i < n; i++) h = mix(h, ips[i]);
    return h ^ (h >> 29);
}
static inline uint64_t edge_hash(uint32_t parent, uint64_t ip) { return mix(mix(0x2545f4914f6cdd1dULL, parent), ip); }

/* Double a table of ids (values id+1 under their tag); rehash(id) gives an id's hash. */
/* Slots of both id tables hold id + 1 in their low bits and the top bits
 * of the key's hash above them (a tag): a probe that meets another key's
 * slot mostly skips the loads that would confirm it (a cache miss or two
 * each). The stack index: 25 bits of id (at most 2^24 stacks), 7 of tag;
 * the edge hash: 27 bits (at most 2^26 nodes), 5 of tag. */
#define INDEX_ID_BITS 25
#define CHILD_ID_BITS 27
static inline uint32_t slot_tag(uint64_t h, int idbits) { return (uint32_t)(h >> (32 + idbits)) << idbits; }
static inline uint32_t slot_id(uint32_t v, int idbits) { return (v & ((1u << idbits) - 1)) - 1; }

static int grow_ids(uint32_t **tab, uint32_t *cap, uint64_t (*rehash)(uint32_t), int idbits)
{
    uint32_t ncap = *cap * 2;
    uint32_t *n = priv_map((size_t)ncap * sizeof *n);
    if (!n) return -1;
    for (uint32_t i = 0; i < *cap; i++) {
        uint32_t v = (*tab)[i];
        if (!v) continue;
        uint32_t at = (uint32_t)rehash(slot_id(v, idbits)) & (ncap - 1);
        while (n[at]) at = (at + 1) & (ncap - 1);
        n[at] = v;
    }
    priv_unmap(*tab, (size_t)*cap * sizeof **tab);
    *tab = n;
    *cap = ncap;
    return 0;
}
static uint64_t node_rehash(uint32_t id) { return edge_hash(g_node_parent[id], g_node_ip[id]); }
static uint64_t stack_rehash(uint32_t id) { return g_stacks[id].hash; }

/* The node of frame ip called from parent; added when missing (UINT32_MAX
 * when the tree is at `limit` nodes). */
static uint32_t child_node(uint32_t parent, uint64_t ip, uint32_t limit)
{
    mattr_header *h = g_hdr;
    uint64_t eh = edge_hash(parent, ip);
    uint32_t tag = slot_tag(eh, CHILD_ID_BITS), tmask = ~((1u << CHILD_ID_BITS) - 1);
    uint32_t mask = g_child_cap - 1, at = (uint32_t)eh & mask;
    for (uint32_t v; (v = g_child[at]); at = (at + 1) & mask) {
        if ((v & tmask) != tag) continue;
        uint32_t c = slot_id(v, CHILD_ID_BITS);
        if (g_node_ip[c] == ip && g_node_parent[c] == parent) return c;
    }
    if (h->nnodes >= limit) return UINT32_MAX;
    uint32_t id = h->nnodes;
    g_node_ip[id] = ip;
    g_node_parent[id] = parent;
    h->nnodes = id + 1;
    g_child[at] = (id + 1) | tag;
    if ((uint64_t)h->nnodes * 4 > (uint64_t)g_child_cap * 3) grow_ids(&g_child, &g_child_cap, node_rehash, CHILD_ID_BITS);
    return id;
}

/* Is stack id the one of ips[0..n) (innermost first) and kind? Equal
 * 64-bit hashes, kinds, depths and innermost frames: walking the whole
 * chain on every allocation would cost a cache miss per frame (import torch:
 * 2 million nodes), and two different stacks agreeing on all four is
 * vanishingly unlikely (a 64-bit hash collision, ~1e-8 over a million
 * stacks, that also keeps depth and innermost frame). */
static inline int stack_is(uint32_t id, uint64_t hash, const uint64_t *ips, int n, int kind)
{
    const mattr_stack *s = &g_stacks[id];
    return s->hash == hash && s->kind == kind && s->depth == n && (n == 0 || g_node_ip[s->node] == ips[0]);
}

/* Find or add; UINT32_MAX when adding would pass `slimit` stacks or
 * `nlimit` nodes. */
static uint32_t intern_n(const uint64_t *ips, int n, int kind, uint32_t slimit, uint32_t nlimit)
{
    mattr_header *h = g_hdr;
    uint64_t hash = stack_hash(ips, n, kind);
    uint32_t tag = slot_tag(hash, INDEX_ID_BITS), tmask = ~((1u << INDEX_ID_BITS) - 1);
    uint32_t mask = g_index_cap - 1, at = (uint32_t)hash & mask;
    for (uint32_t v; (v = g_index[at]); at = (at + 1) & mask)
        if ((v & tmask) == tag && stack_is(slot_id(v, INDEX_ID_BITS), hash, ips, n, kind)) return slot_id(v, INDEX_ID_BITS);
    if (h->nstacks >= slimit) return UINT32_MAX;
    /* through the tree from the outermost frame in; the outer frames this
     * stack shares with the last new one have known nodes (the same frames
     * from the root are the same nodes: the tree only grows), so only the
     * rest costs edge-hash probes, two or three cache misses a frame
     * (PyTorch: 608,000 new stacks, 2.2 million nodes) */
    uint32_t node = 0;
    int d = 0;
    while (d < n && d < g_path_n && g_path_ip[d] == ips[n - 1 - d]) node = g_path_node[d++];
    for (; d < n; d++) {
        if ((node = child_node(node, ips[n - 1 - d], nlimit)) == UINT32_MAX) {
            g_path_n = d;
            return UINT32_MAX;
        }
        g_path_ip[d] = ips[n - 1 - d];
        g_path_node[d] = node;
    }
    g_path_n = n;
    uint32_t id = h->nstacks;
    mattr_stack *s = &g_stacks[id];
    s->hash = hash;
    s->node = node;
    s->kind = (uint8_t)kind;
    s->depth = (uint8_t)n;
    s->mod_gen = h->peak_gen; /* new: its peak value (0) is in saved */
    s->interval = (uint32_t)h->interval;
    h->nstacks = id + 1;
    g_index[at] = (id + 1) | tag;
    if ((uint64_t)++g_index_n * 4 > (uint64_t)g_index_cap * 3) grow_ids(&g_index, &g_index_cap, stack_rehash, INDEX_ID_BITS);
    /* a growing number of stacks often means new code was loaded */
    if ((id & (id - 1)) == 0 && id >= 64) store_maps();
    return id;
}

/* Intern a stack. Past 3/4 of the stack table or of the frame tree, a new
 * stack is kept by its innermost MATTR_TRUNC_DEPTH frames only (where the
 * allocating library is; counted in stack_truncated), and when either is
 * full the allocation goes to its kind's overflow bucket (0..2), counted in
 * stack_overflow: never dropped. */
#define MATTR_TRUNC_DEPTH 4
static uint32_t intern(const uint64_t *ips, int n, int kind)
{
    mattr_header *h = g_hdr;
    uint32_t id = intern_n(ips, n, kind, h->max_stacks - h->max_stacks / 4, h->max_nodes - h->max_nodes / 4);
    if (id != UINT32_MAX) return id;
    if (n > MATTR_TRUNC_DEPTH) {
        id = intern_n(ips, MATTR_TRUNC_DEPTH, kind, h->max_stacks, h->max_nodes);
        if (id != UINT32_MAX) {
            h->stack_truncated++;
            return id;
        }
    }
    h->stack_overflow++;
    return (uint32_t)kind; /* that kind's overflow bucket */
}

/* ---- the live-allocation table ---- */

static inline uint64_t slot_of(uintptr_t p, uint64_t cap) { return ((p >> 4) * 0x9e3779b97f4a7c15ULL) >> 20 & (cap - 1); }

static int ctab_grow(ctab *t)
{
    uint64_t ncap = t->cap * 2;
    cell *n = priv_map((size_t)ncap * sizeof *n);
    if (!n) return -1;
    for (uint64_t i = 0; i < t->cap; i++) {
        if (!cell_ptr(&t->v[i])) continue;
        uint64_t at = slot_of(cell_ptr(&t->v[i]), ncap);
        while (cell_ptr(&n[at])) at = (at + 1) & (ncap - 1);
        n[at] = t->v[i];
    }
    priv_unmap(t->v, (size_t)t->cap * sizeof *t->v);
    t->v = n;
    t->cap = ncap;
    return 0;
}

/* Insert or replace. Load at most 4/5: 12-byte cells are 15-30 bytes per
 * live block, and linear probing still finds a free cell in ~13 probes
 * (two or three cache lines) on average. Returns 0 (new), 1 (replaced:
 * *old holds the previous w) or -1 (the table could not grow, or p does
 * not fit a cell). */
static int ctab_put(ctab *t, uintptr_t p, uint64_t w, uint64_t *old)
{
    if ((uint64_t)p >= CELL_MAX || w >= CELL_MAX) return -1;
    if ((t->n + 1) * 5 > t->cap * 4 && ctab_grow(t)) return -1;
    uint64_t at = slot_of(p, t->cap);
    while (cell_ptr(&t->v[at]) && cell_ptr(&t->v[at]) != p) at = (at + 1) & (t->cap - 1);
    int replaced = cell_ptr(&t->v[at]) != 0;
    if (replaced) *old = cell_w(&t->v[at]);
    else t->n++;
    t->v[at] = cell_make(p, w);
    return replaced;
}

/* Remove p; 1 and its w when it was there. */
static int ctab_take(ctab *t, uintptr_t p, uint64_t *w)
{
    uint64_t mask = t->cap - 1, at = slot_of(p, t->cap);
    while (cell_ptr(&t->v[at]) && cell_ptr(&t->v[at]) != p) at = (at + 1) & mask;
    if (!cell_ptr(&t->v[at])) return 0;
    *w = cell_w(&t->v[at]);
    /* backward-shift deletion keeps probe chains intact without tombstones */
    uint64_t hole = at, j = at;
    for (;;) {
        j = (j + 1) & mask;
        if (!cell_ptr(&t->v[j])) break;
        uint64_t home = slot_of(cell_ptr(&t->v[j]), t->cap);
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            t->v[hole] = t->v[j];
            hole = j;
        }
    }
    t->v[hole] = (cell){0, 0, 0};
    t->n--;
    return 1;
}

/* Unpack a live cell of block p (still allocated: its usable size is read). */
static live_slot live_unpack(uintptr_t p, uint64_t w)
{
    live_slot s = {p, 0, (uint32_t)(w & 0xffffff), 0};
    uint32_t slack = (uint32_t)(w >> 24) & 0xffff;
    uint8_t tag = (uint8_t)(w >> 40), now = (uint8_t)g_hdr->interval;
    s.interval = tag == now ? (uint32_t)g_hdr->interval : (uint32_t)g_hdr->interval - 1; /* only "now or not" matters */
    uint64_t big = 0;
    if (slack == SLACK_BIG) s.size = ctab_take(&g_big, p, &big) ? big : 0;
    else {
        size_t u = r_usable((void *)p);
        s.size = u >= slack ? u - slack : 0;
    }
    return s;
}

/* Track block p of `size` bytes made by stack sid in interval born. */
static int live_put(uintptr_t p, uint64_t size, uint32_t sid, uint32_t born)
{
    size_t u = r_usable ? r_usable((void *)p) : 0;
    uint64_t slack = r_usable && u >= size && u - size < SLACK_BIG ? u - size : SLACK_BIG;
    uint64_t w = (sid & 0xffffff) | slack << 24 | (uint64_t)(uint8_t)born << 40, old = 0;
    int r = ctab_put(&g_live, p, w, &old);
    if (r < 0) return -1;
    if (r == 1) {
        /* freed behind our back (by an allocator's internal path) and handed
         * out again: the old block is gone (its size, when it was kept as
         * slack, is estimated from the new block's usable size) */
        live_slot s = live_unpack(p, old);
        discharge(s.stack, MATTR_KIND_HEAP, (int64_t)s.size, s.interval);
    }
    if (slack == SLACK_BIG && ctab_put(&g_big, p, size, &old) < 0) {
        ctab_take(&g_live, p, &old);
        return -1;
    }
    return 0;
}

/* Remove p (still allocated); returns 1 and its record when it was tracked. */
static int live_take(uintptr_t p, live_slot *out)
{
    uint64_t w;
    if (!ctab_take(&g_live, p, &w)) return 0;
    *out = live_unpack(p, w);
    return 1;
}

/* Every 64 intervals: mark every live block as born before now, so that an
 * 8-bit birth tag never meets the current interval's again (one pass over
 * the table per 64 stage changes). */
static void live_retag(uint64_t now)
{
    uint64_t tag = (uint64_t)(uint8_t)(now - 1) << 40;
    for (uint64_t i = 0; i < g_live.cap; i++)
        if (cell_ptr(&g_live.v[i]))
            g_live.v[i] = cell_make(cell_ptr(&g_live.v[i]), (cell_w(&g_live.v[i]) & 0xffffffffffULL) | tag);
}

/* ---- capture and the common paths ---- */

static __attribute__((noinline)) int capture(uint64_t *ips)
{
    void *buf[MATTR_MAX_DEPTH + 8];
    int n = unw_backtrace(buf, MATTR_MAX_DEPTH + 8);
    int k = 0;
    while (k < n && (uintptr_t)buf[k] >= g_self_lo && (uintptr_t)buf[k] < g_self_hi) k++;
    int m = 0;
    for (; k < n && m < g_depth; k++) ips[m++] = (uint64_t)(uintptr_t)buf[k];
    return m;
}

/* Enter a hook that tracks: returns 1 with the lock held and the channel
 * ready; 0 when nothing is to be tracked. The guard is set by the caller. */
static int enter(void)
{
    if (g_state < 0) return 0;
    pthread_mutex_lock(&g_lock);
    if (!g_state) init_locked();
    if (g_reinit) reinit_child_locked();
    if (g_state != 1) {
        pthread_mutex_unlock(&g_lock);
        return 0;
    }
    check_interval();
    return 1;
}
static void leave(void)
{
    g_hdr->seq++;
    pthread_mutex_unlock(&g_lock);
}

static void track_alloc(void *p, size_t size, const uint64_t *ips, int n)
{
    if (!p) return;
    if (!enter()) return;
    g_hdr->calls++;
    uint32_t sid = intern(ips, n, MATTR_KIND_HEAP);
    if (live_put((uintptr_t)p, size, sid, (uint32_t)g_hdr->interval)) g_hdr->table_overflow++;
    else charge(sid, MATTR_KIND_HEAP, (int64_t)size, 1);
    leave();
}

/* Untrack p before the real free (another thread may get the address back). */
static void track_free(void *p, live_slot *got)
{
    got->ptr = 0;
    if (!p || !enter()) return;
    g_hdr->calls++;
    live_slot s;
    if (live_take((uintptr_t)p, &s)) {
        discharge(s.stack, MATTR_KIND_HEAP, (int64_t)s.size, s.interval);
        *got = s;
    } else g_hdr->unknown_frees++;
    leave();
}

#define HOOK_BEGIN int guarded_ = t_guard; t_guard = 1
#define HOOK_END t_guard = guarded_

EXPORT void *malloc(size_t n)
{
    if (!r_malloc) {
        resolve();
        if (!r_malloc) return boot_alloc(n, 16);
    }
    if (t_guard || g_state < 0) return r_malloc(n);
    HOOK_BEGIN;
    uint64_t ips[MATTR_MAX_DEPTH];
    void *p = r_malloc(n);
    if (p) track_alloc(p, n, ips, capture(ips));
    HOOK_END;
    return p;
}

EXPORT void *calloc(size_t a, size_t b)
{
    if (!r_malloc) {
        resolve();
        if (!r_malloc) {
            if (b && a > SIZE_MAX / b) return NULL;
            return boot_alloc(a * b, 16); /* static: already zero */
        }
    }
    if (t_guard || g_state < 0) return r_calloc(a, b);
    HOOK_BEGIN;
    uint64_t ips[MATTR_MAX_DEPTH];
    void *p = r_calloc(a, b);
    if (p) track_alloc(p, a * b, ips, capture(ips));
    HOOK_END;
    return p;
}

EXPORT void free(void *p)
{
    if (!p || in_boot(p)) return;
    if (!r_malloc) resolve();
    if (t_guard || g_state < 0) {
        r_free(p);
        return;
    }
    HOOK_BEGIN;
    live_slot s;
    track_free(p, &s);
    r_free(p);
    HOOK_END;
}

EXPORT void *realloc(void *p, size_t n)
{
    if (!r_malloc) resolve();
    if (p && in_boot(p)) {
        /* a bootstrap block: move it to the real heap (its size is unknown,
         * but it lies inside the arena: copy at most what is left of it) */
        void *q = malloc(n);
        if (q) {
            size_t left = (size_t)(g_boot + sizeof g_boot - (unsigned char *)p);
            memcpy(q, p, n < left ? n : left);
        }
        return q;
    }
    if (!r_malloc) return boot_alloc(n, 16);
    if (t_guard || g_state < 0) return r_realloc(p, n);
    HOOK_BEGIN;
    uint64_t ips[MATTR_MAX_DEPTH];
    int depth = capture(ips);
    /* Take the old block out of the table before the real call (once it is
     * freed another thread may get its address back), but keep its bytes
     * charged until we know how realloc went:
     *  - in place (same address): old bytes out, new bytes in;
     *  - moved by copying (what every allocator does when it cannot grow a
     *    block in place: malloc, copy, free): both blocks were live at once,
     *    so the new one is counted first and the old released after; a
     *    100 MB -> 150 MB move peaks at 250 MB;
     *  - moved by mremap (glibc, for a block it had mmapped itself: the
     *    pages move, nothing is copied): never both, old out, new in.
     * The last is told from glibc's chunk header (IS_MMAPPED, bit 1 of the
     * size word before the block), read before the call, only when the next
     * malloc is glibc's; with any other allocator a move is a copy. */
    live_slot old = {0};
    int had = 0, mmapped = 0;
    if (p && enter()) {
        g_hdr->calls++;
        had = live_take((uintptr_t)p, &old);
        if (!had) g_hdr->unknown_frees++;
        else if (g_glibc) mmapped = (((const size_t *)p)[-1] & 2) != 0;
        leave();
    }
    void *q = r_realloc(p, n);
    if (enter()) {
        if (!p) g_hdr->calls++;
        if (q) {
            uint32_t sid = intern(ips, depth, MATTR_KIND_HEAP);
            int copied = had && q != p && !mmapped;
            if (had && q != p) mmapped ? g_hdr->realloc_remaps++ : g_hdr->realloc_copies++;
            if (had && !copied) discharge(old.stack, MATTR_KIND_HEAP, (int64_t)old.size, old.interval);
            if (live_put((uintptr_t)q, n, sid, (uint32_t)g_hdr->interval)) g_hdr->table_overflow++;
            else charge(sid, MATTR_KIND_HEAP, (int64_t)n, 1);
            if (copied) discharge(old.stack, MATTR_KIND_HEAP, (int64_t)old.size, old.interval);
        } else if (had) {
            /* n == 0 freed it; otherwise it failed and the old block is live as it was */
            if (!n) discharge(old.stack, MATTR_KIND_HEAP, (int64_t)old.size, old.interval);
            else if (live_put(old.ptr, old.size, old.stack, old.interval)) {
                discharge(old.stack, MATTR_KIND_HEAP, (int64_t)old.size, old.interval);
                g_hdr->table_overflow++;
            }
        }
        leave();
    }
    HOOK_END;
    return q;
}

EXPORT void *reallocarray(void *p, size_t a, size_t b)
{
    if (b && a > SIZE_MAX / b) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, a * b);
}

#define ALIGNED_HOOK(call, size)                                  \
    if (t_guard || g_state < 0) return call;                      \
    HOOK_BEGIN;                                                   \
    uint64_t ips[MATTR_MAX_DEPTH];                                \
    void *p_ = call;                                              \
    if (p_) track_alloc(p_, size, ips, capture(ips));             \
    HOOK_END;                                                     \
    return p_

EXPORT void *memalign(size_t al, size_t n)
{
    if (!r_malloc) {
        resolve();
        if (!r_malloc) return boot_alloc(n, al);
    }
    ALIGNED_HOOK(r_memalign(al, n), n);
}
EXPORT void *aligned_alloc(size_t al, size_t n)
{
    if (!r_malloc) {
        resolve();
        if (!r_malloc) return boot_alloc(n, al);
    }
    ALIGNED_HOOK(r_aligned_alloc(al, n), n);
}
EXPORT void *valloc(size_t n)
{
    if (!r_malloc) resolve();
    ALIGNED_HOOK(r_valloc(n), n);
}
EXPORT void *pvalloc(size_t n)
{
    if (!r_malloc) resolve();
    ALIGNED_HOOK(r_pvalloc(n), n);
}
EXPORT int posix_memalign(void **out, size_t al, size_t n)
{
    if (!r_malloc) {
        resolve();
        if (!r_malloc) {
            *out = boot_alloc(n, al);
            return *out ? 0 : ENOMEM;
        }
    }
    if (t_guard || g_state < 0) return r_posix_memalign(out, al, n);
    HOOK_BEGIN;
    uint64_t ips[MATTR_MAX_DEPTH];
    int rc = r_posix_memalign(out, al, n);
    if (!rc) track_alloc(*out, n, ips, capture(ips));
    HOOK_END;
    return rc;
}

/* ---- mappings ---- */

/* Remove [a, a+len) from the region table (splitting a region that
 * contains it), discharging what was removed. Lock held. */
static void regions_cut(uintptr_t a, uint64_t len)
{
    uintptr_t b = a + len;
    for (uint32_t i = 0; i < g_nregions; i++) {
        region *r = &g_regions[i];
        uintptr_t rs = r->start, re = r->start + r->len;
        if (re <= a || rs >= b) continue;
        int kind = (int)g_stacks[r->stack].kind;
        uintptr_t cs = rs > a ? rs : a, ce = re < b ? re : b;
        uint64_t cut = ce - cs;
        mattr_stack *s = &g_stacks[r->stack];
        touch(s);
        s->cur_bytes -= (int64_t)cut;
        if (r->interval == (uint32_t)g_hdr->interval) s->temp_bytes += (int64_t)cut;
        total_add(kind, -(int64_t)cut);
        if (cs == rs && ce == re) { /* whole region gone */
            s->cur_count--;
            if (r->interval == (uint32_t)g_hdr->interval) s->temp_count++;
            g_regions[i] = g_regions[--g_nregions];
            i--;
        } else if (cs == rs) {
            r->start = ce;
            r->len = re - ce;
        } else if (ce == re) {
            r->len = cs - rs;
        } else { /* a hole in the middle: two regions, one more mapping */
            r->len = cs - rs;
            if (g_nregions < g_max_regions) {
                g_regions[g_nregions++] = (region){ce, re - ce, r->stack, r->interval};
                s->cur_count++;
            } else { /* cannot keep the tail: stop counting it, say so */
                s->cur_bytes -= (int64_t)(re - ce);
                total_add(kind, -(int64_t)(re - ce));
                g_hdr->region_overflow++;
            }
        }
    }
}

static void track_map(void *p, uint64_t len, int kind, const uint64_t *ips, int n, int fixed)
{
    if (!enter()) return;
    g_hdr->map_calls++;
    len = (len + 4095) & ~(uint64_t)4095;
    if (fixed) regions_cut((uintptr_t)p, len);
    uint32_t sid = intern(ips, n, kind);
    if (g_nregions >= g_max_regions) g_hdr->region_overflow++;
    else {
        g_regions[g_nregions++] = (region){(uintptr_t)p, len, sid, (uint32_t)g_hdr->interval};
        charge(sid, kind, (int64_t)len, 1);
    }
    leave();
}

static void *mmap_hook(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (!r_mmap) resolve();
    if (!r_mmap) return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
    if (t_guard || g_state < 0) return r_mmap(addr, len, prot, flags, fd, off);
    HOOK_BEGIN;
    uint64_t ips[MATTR_MAX_DEPTH];
    void *p = r_mmap(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED)
        track_map(p, len, (flags & MAP_ANONYMOUS) ? MATTR_KIND_ANON : MATTR_KIND_FILE, ips, capture(ips),
                  (flags & MAP_FIXED) != 0);
    HOOK_END;
    return p;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return mmap_hook(addr, len, prot, flags, fd, off);
}
EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return mmap_hook(addr, len, prot, flags, fd, off);
}

EXPORT int munmap(void *addr, size_t len)
{
    if (!r_munmap) resolve();
    if (!r_munmap) return (int)syscall(SYS_munmap, addr, len);
    if (t_guard || g_state < 0) return r_munmap(addr, len);
    HOOK_BEGIN;
    int rc = r_munmap(addr, len);
    if (!rc && enter()) {
        g_hdr->map_calls++;
        regions_cut((uintptr_t)addr, (len + 4095) & ~(uint64_t)4095);
        leave();
    }
    HOOK_END;
    return rc;
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
    void *new_addr = NULL;
    if (flags & MREMAP_FIXED) {
        __builtin_va_list ap;
        __builtin_va_start(ap, flags);
        new_addr = __builtin_va_arg(ap, void *);
        __builtin_va_end(ap);
    }
    if (!r_mremap) resolve();
    if (!r_mremap) return (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
    if (t_guard || g_state < 0) return r_mremap(old, old_len, new_len, flags, new_addr);
    HOOK_BEGIN;
    void *p = r_mremap(old, old_len, new_len, flags, new_addr);
    if (p != MAP_FAILED && enter()) {
        /* the new range keeps the stack (and kind) of the mapping it came from */
        g_hdr->map_calls++;
        uint32_t sid = 0, born = (uint32_t)g_hdr->interval;
        int found = 0;
        for (uint32_t i = 0; i < g_nregions; i++)
            if ((uintptr_t)old >= g_regions[i].start && (uintptr_t)old < g_regions[i].start + g_regions[i].len) {
                sid = g_regions[i].stack;
                born = g_regions[i].interval;
                found = 1;
                break;
            }
        if (found) {
            regions_cut((uintptr_t)old, (old_len + 4095) & ~(uint64_t)4095);
            uint64_t len = (new_len + 4095) & ~(uint64_t)4095;
            regions_cut((uintptr_t)p, len);
            if (g_nregions < g_max_regions) {
                g_regions[g_nregions++] = (region){(uintptr_t)p, len, sid, born};
                charge(sid, (int)g_stacks[sid].kind, (int64_t)len, 1);
            } else g_hdr->region_overflow++;
        }
        leave();
    }
    HOOK_END;
    return p;
}

/* ---- life cycle ---- */

__attribute__((constructor)) static void attrib_ctor(void)
{
    int g = t_guard;
    t_guard = 1;
    pthread_mutex_lock(&g_lock);
    if (!g_state) init_locked();
    pthread_mutex_unlock(&g_lock);
    t_guard = g;
}

__attribute__((destructor)) static void attrib_dtor(void)
{
    if (g_state != 1 || g_reinit) return;
    int g = t_guard;
    t_guard = 1;
    pthread_mutex_lock(&g_lock);
    if (g_hdr) {
        check_interval();
        store_maps();
        g_hdr->flags |= MATTR_FLAG_EXITED;
        g_hdr->seq++;
    }
    pthread_mutex_unlock(&g_lock);
    t_guard = g;
}

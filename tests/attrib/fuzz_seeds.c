/* Writes the seed inputs of tests/fuzz/fuzz_attrib.c: per-process
 * attribution files in format 3 (src/attrib/attrib_format.h: a frame tree
 * of nodes and parents, stack records naming their innermost node, closed
 * intervals' snapshot records as a varint stream, load maps), in the
 * harness's input layout
 * (the header struct's bytes, then everything the file holds after its
 * 4096-byte header), so that the fuzzer starts from images the parser
 * accepts and mutates offsets, counts, tree links and records from there.
 *
 * Two sources:
 *  - synthetic images built here, each aimed at one part of the parser
 *    (a shared-prefix tree over three kinds and four intervals with
 *    multi-interval and totals records; a 64-deep chain; a process that
 *    started in a later interval, with overflow buckets holding bytes);
 *  - real images: the program runs itself under the interposer
 *    (LD_PRELOAD, $MISER_ATTRIB_DIR with a stage counter it advances
 *    itself), allocating, freeing and forking across three intervals; each
 *    file it leaves is rewritten with its sections packed to what is used.
 * Every seed is checked with attrib_image_parse before it is written.
 *
 * Not part of the suite (the seeds are committed):
 *   cc -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -o /tmp/fuzz-seeds tests/attrib/fuzz_seeds.c \
 *      build/libmiser.a -lcjson -lutf8proc -lpcre2-8 -lmicrohttpd -ldw -lelf -lm -ldl -pthread
 *   /tmp/fuzz-seeds tests/fuzz/seeds/fuzz_attrib build/libmiser-attrib.so */
#include "attrib/attrib_format.h"
#include "miser/alloc.h"
#include "profiler/attrib.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    mattr_header h;
    mattr_stack *stacks;
    uint64_t *ip;
    uint32_t *parent;
    mattr_snap *snaps;
    uint32_t nsnaps; /* decoded records; written as the varint stream */
    const char *maps;
    uint32_t maps_len;
} image;

/* Pack the sections after the 4096-byte header, check the image parses,
 * write the harness input (header struct + the file after its header). */
static int emit(const char *dir, const char *name, image *im)
{
    mattr_header *h = &im->h;
    h->magic = MATTR_MAGIC;
    h->version = MATTR_VERSION;
    h->header_size = MATTR_HEADER_SIZE;
    h->max_stacks = h->nstacks;
    h->max_nodes = h->nnodes;
    uint8_t *stream = malloc((size_t)im->nsnaps * MATTR_SNAP_MAX_BYTES + 1);
    if (!stream) return -1;
    size_t slen = 0;
    for (uint32_t i = 0; i < im->nsnaps; i++) slen += mattr_snap_encode(stream + slen, &im->snaps[i]);
    h->snaps_cap = h->snaps_len = (uint32_t)slen;
    h->max_maps = h->maps_len = im->maps_len;
    h->stacks_off = MATTR_HEADER_SIZE;
    h->nodes_off = h->stacks_off + (uint64_t)h->max_stacks * sizeof(mattr_stack);
    h->parents_off = h->nodes_off + (uint64_t)h->max_nodes * 8;
    h->snaps_off = (h->parents_off + (uint64_t)h->max_nodes * 4 + 7) & ~7ull;
    h->maps_off = h->snaps_off + h->snaps_cap;
    size_t len = h->maps_off + h->max_maps;
    h->file_size = len;
    unsigned char *f = calloc(1, len);
    if (!f) {
        free(stream);
        return -1;
    }
    memcpy(f, h, sizeof *h);
    memcpy(f + h->stacks_off, im->stacks, (size_t)h->nstacks * sizeof(mattr_stack));
    memcpy(f + h->nodes_off, im->ip, (size_t)h->nnodes * 8);
    memcpy(f + h->parents_off, im->parent, (size_t)h->nnodes * 4);
    memcpy(f + h->snaps_off, stream, slen);
    free(stream);
    memcpy(f + h->maps_off, im->maps, im->maps_len);
    attrib_image pi;
    miser_status st = attrib_image_parse(f, len, &pi);
    if (st != MISER_OK) {
        fprintf(stderr, "fuzz-seeds: %s does not parse: %s\n", name, miser_error_message());
        free(f);
        return -1;
    }
    printf("%s: %zu stacks, %zu nodes, %u snapshot records, %zu intervals, %zu bytes\n", name, pi.nstacks, pi.nnodes,
           im->nsnaps, pi.nintervals, sizeof *h + len - MATTR_HEADER_SIZE);
    attrib_image_free(&pi);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *o = fopen(path, "wb");
    int ok = o && fwrite(f, 1, sizeof *h, o) == sizeof *h &&
             fwrite(f + MATTR_HEADER_SIZE, 1, len - MATTR_HEADER_SIZE, o) == len - MATTR_HEADER_SIZE;
    if (o && fclose(o)) ok = 0;
    free(f);
    return ok ? 0 : -1;
}

static const char maps_two[] =
    "#maps\n"
    "55d0c0000000-55d0c0021000 r-xp 00000000 08:01 1234 /usr/bin/prog\n"
    "7f0000000000-7f0000200000 r-xp 00000000 08:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
    "#maps\n"
    "55d0c0000000-55d0c0021000 r-xp 00000000 08:01 1234 /usr/bin/prog\n"
    "7f0000000000-7f0000200000 r-xp 00000000 08:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
    "7f1000000000-7f1000100000 r-xp 00000000 08:01 77 /usr/lib/libplugin.so\n"
    "7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]\n";

/* Frames shared by prefix over three kinds, four intervals (0..2 closed). */
static int seed_tree(const char *dir)
{
    /* nodes: 1 _start, 2 main (<- 1), 3 load (<- 2), 4 malloc site (<- 3),
     * 5 compile (<- 2), 6 fold (<- 5), 7 materialize (<- 6), 8 mmap site (<- 3) */
    uint64_t ip[9] = {0, 0x55d0c0001000, 0x55d0c0001100, 0x55d0c0001200, 0x7f0000010000,
                      0x55d0c0001300, 0x55d0c0001400, 0x55d0c0001500, 0x7f0000020000};
    uint32_t par[9] = {0, 0, 1, 2, 3, 2, 5, 6, 3};
    mattr_stack st[7] = {{.kind = 0}, {.kind = 1}, {.kind = 2}};
    st[3] = (mattr_stack){.hash = 11, .node = 4, .kind = MATTR_KIND_HEAP, .depth = 4, .cur_bytes = 3000000,
                          .saved_bytes = 2000000, .start_bytes = 1000000, .temp_bytes = 500000, .temp_count = 2,
                          .mod_gen = 9, .cur_count = 3, .saved_count = 2, .start_count = 1, .interval = 3};
    st[4] = (mattr_stack){.hash = 12, .node = 7, .kind = MATTR_KIND_HEAP, .depth = 5, .cur_bytes = 8000000,
                          .cur_count = 8, .mod_gen = 4, .interval = 2};
    st[5] = (mattr_stack){.hash = 13, .node = 8, .kind = MATTR_KIND_ANON, .depth = 4, .cur_bytes = 8388608,
                          .cur_count = 1, .start_bytes = 8388608, .start_count = 1, .mod_gen = 2, .interval = 1};
    st[6] = (mattr_stack){.hash = 14, .node = 8, .kind = MATTR_KIND_FILE, .depth = 4, .cur_bytes = 65536,
                          .cur_count = 1, .mod_gen = 10, .interval = 3};
    mattr_snap sn[8] = {
        {0, 0, MATTR_TOTALS, 0, 0, 0, 6000000, 0, 0, 5000000, 0},
        {0, 0, 3, 2, 0, 1, 2000000, 0, 3000000, 1000000, 3},
        {0, 0, 5, 1, 0, 1, 8388608, 0, 0, 8388608, 0},
        {1, 2, MATTR_TOTALS, 0, 0, 0, 9388608, 9388608, 0, 9388608, 0}, /* two intervals without an event */
        {2, 2, 4, 8, 0, 8, 8000000, 0, 0, 8000000, 0},
        {2, 2, MATTR_TOTALS, 0, 0, 0, 17388608, 9388608, 0, 17388608, 0},
        {2, 2, 3, 2, 1, 1, 2000000, 1000000, 250000, 1000000, 1},
        {0, 2, 6, 1, 0, 1, 65536, 0, 0, 65536, 0}, /* file mapping carried over three */
    };
    image im = {.stacks = st, .ip = ip, .parent = par, .snaps = sn, .maps = maps_two, .maps_len = sizeof maps_two - 1};
    im.h.pid = 4242;
    im.h.ppid = 1;
    snprintf(im.h.exe, sizeof im.h.exe, "/usr/bin/prog");
    im.h.nstacks = 7;
    im.h.nnodes = 9;
    im.nsnaps = 8;
    im.h.interval_first = 0;
    im.h.interval = 3;
    im.h.peak_gen = 10;
    im.h.cur_total = 19388608;
    im.h.peak_total = 19388608;
    im.h.start_total = 17388608;
    im.h.calls = 40;
    im.h.map_calls = 3;
    im.h.flags = MATTR_FLAG_EXITED;
    return emit(dir, "tree", &im);
}

/* A 64-deep chain (the most a reader may walk) and one stack at 63. */
static int seed_deep(const char *dir)
{
    uint64_t ip[MATTR_MAX_DEPTH + 1];
    uint32_t par[MATTR_MAX_DEPTH + 1];
    ip[0] = 0, par[0] = 0;
    for (uint32_t i = 1; i <= MATTR_MAX_DEPTH; i++) ip[i] = 0x400000 + 16 * i, par[i] = i - 1;
    mattr_stack st[5] = {{.kind = 0}, {.kind = 1}, {.kind = 2}};
    st[3] = (mattr_stack){.hash = 1, .node = MATTR_MAX_DEPTH, .depth = MATTR_MAX_DEPTH, .cur_bytes = 4096,
                          .cur_count = 1, .mod_gen = 1};
    st[4] = (mattr_stack){.hash = 2, .node = MATTR_MAX_DEPTH - 1, .depth = MATTR_MAX_DEPTH - 1, .cur_bytes = 100,
                          .saved_bytes = 200, .saved_count = 2, .cur_count = 1, .mod_gen = 3};
    static const char maps[] = "#maps\n00400000-00401000 r-xp 00000000 08:01 5 /tmp/deep\n";
    image im = {.stacks = st, .ip = ip, .parent = par, .snaps = NULL, .maps = maps, .maps_len = sizeof maps - 1};
    im.h.pid = 7;
    snprintf(im.h.exe, sizeof im.h.exe, "/tmp/deep");
    im.h.nstacks = 5;
    im.h.nnodes = MATTR_MAX_DEPTH + 1;
    im.h.peak_gen = 2;
    im.h.cur_total = 4196;
    im.h.peak_total = 4296;
    return emit(dir, "deep", &im);
}

/* A fork child that started in interval 5 (of 7), with its overflow
 * buckets holding bytes (the table was full) and truncated stacks. */
static int seed_late(const char *dir)
{
    uint64_t ip[4] = {0, 0x1000, 0x2000, 0x3000};
    uint32_t par[4] = {0, 0, 1, 1};
    mattr_stack st[5] = {{.kind = 0, .cur_bytes = 1 << 20, .cur_count = 5, .mod_gen = 1, .interval = 6},
                         {.kind = 1, .cur_bytes = 1 << 21, .cur_count = 1, .mod_gen = 1, .interval = 5},
                         {.kind = 2}};
    st[3] = (mattr_stack){.hash = 5, .node = 2, .depth = 2, .cur_bytes = 64, .cur_count = 1, .mod_gen = 1, .interval = 5};
    st[4] = (mattr_stack){.hash = 6, .node = 3, .depth = 2, .kind = MATTR_KIND_ANON, .temp_bytes = 4096,
                          .temp_count = 1, .mod_gen = 7, .interval = 7};
    mattr_snap sn[4] = {
        {5, 5, MATTR_TOTALS, 0, 0, 0, 3 << 20, 0, 0, 3 << 20, 0},
        {5, 5, 1, 1, 0, 1, 1 << 21, 0, 0, 1 << 21, 0},
        {5, 5, 3, 1, 0, 1, 64, 0, 0, 64, 0},
        {6, 6, 0, 5, 2, 5, 1 << 20, 1 << 19, 1 << 18, 1 << 20, 3},
    };
    image im = {.stacks = st, .ip = ip, .parent = par, .snaps = sn, .maps = maps_two, .maps_len = 0};
    im.h.pid = 9;
    im.h.ppid = 4242;
    im.h.flags = MATTR_FLAG_FORKED;
    im.h.nstacks = 5;
    im.h.nnodes = 4;
    im.nsnaps = 4;
    im.h.interval_first = 5;
    im.h.interval = 7;
    im.h.peak_gen = 8;
    im.h.stack_overflow = 6;
    im.h.stack_truncated = 2;
    im.h.snap_overflow = 1;
    return emit(dir, "late-overflow", &im);
}

/* ---- real images ---- */

static _Atomic uint64_t *g_counter;
static void next_stage(void) { atomic_fetch_add_explicit(g_counter, 1, memory_order_release); }

static __attribute__((noinline)) void *site_a(size_t n) { return malloc(n); }
static __attribute__((noinline)) void *site_b(size_t n) { return calloc(1, n); }
static __attribute__((noinline)) void *site_map(size_t n)
{
    return mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

/* Run under the interposer: three intervals, advanced here. */
static int workload(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, MATTR_STAGE_FILE);
    int fd = open(path, O_RDWR);
    if (fd < 0) return 1;
    g_counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (g_counter == MAP_FAILED) return 1;
    void *a[4];
    for (int i = 0; i < 4; i++) a[i] = site_a(1000 + 100 * i);
    void *b = site_b(5000);
    next_stage();
    free(site_a(3000)); /* temporary */
    void *m = site_map(1 << 16);
    free(b);
    next_stage();
    pid_t pid = fork();
    if (pid == 0) {
        void *c = site_b(7000);
        (void)c;
        _exit(0);
    }
    if (pid > 0) waitpid(pid, NULL, 0);
    munmap(m, 1 << 16);
    a[0] = realloc(a[0], 20000);
    next_stage();
    for (int i = 1; i < 4; i++) free(a[i]);
    return 0; /* a[0] leaks */
}

/* Rewrite a real file with its sections packed to what is used. */
static int seed_from(const char *dir, const char *path, const char *name)
{
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb)) return -1;
    const unsigned char *f = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (f == MAP_FAILED) return -1;
    image im;
    memcpy(&im.h, f, sizeof im.h);
    const mattr_header *h = &im.h;
    im.stacks = (mattr_stack *)(f + h->stacks_off);
    im.ip = (uint64_t *)(f + h->nodes_off);
    im.parent = (uint32_t *)(f + h->parents_off);
    /* the stream decoded (emit encodes it again, packed) */
    im.snaps = calloc(h->snaps_len / 11 + 1, sizeof *im.snaps);
    im.nsnaps = 0;
    for (size_t at = 0, k; im.snaps && at < h->snaps_len; at += k)
        if (!(k = mattr_snap_decode(f + h->snaps_off + at, h->snaps_len - at, &im.snaps[im.nsnaps++]))) return -1;
    im.maps = (const char *)f + h->maps_off;
    im.maps_len = h->maps_len;
    int rc = im.snaps ? emit(dir, name, &im) : -1;
    free(im.snaps);
    munmap((void *)f, (size_t)sb.st_size);
    return rc;
}

static int seed_real(const char *dir, const char *self, const char *lib)
{
    char tmp[] = "/tmp/miser-fuzz-seeds-XXXXXX";
    if (!mkdtemp(tmp)) return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", tmp, MATTR_STAGE_FILE);
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return -1;
    close(fd);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("LD_PRELOAD", lib, 1);
        setenv(MATTR_ENV_DIR, tmp, 1);
        setenv(MATTR_ENV_DEPTH, "6", 1); /* small trees: seeds stay a few KB */
        execl(self, self, "--workload", tmp, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) return -1;
    DIR *d = opendir(tmp);
    struct dirent *e;
    int rc = 0, n = 0;
    char files[2][4096];
    while (d && (e = readdir(d))) {
        if (!strstr(e->d_name, ".mattr")) continue;
        if (n < 2) snprintf(files[n], sizeof files[n], "%s/%s", tmp, e->d_name);
        n++;
    }
    if (d) closedir(d);
    if (n != 2) {
        fprintf(stderr, "fuzz-seeds: the workload left %d files, expected 2 (parent, fork child)\n", n);
        rc = -1;
    }
    for (int i = 0; i < n && i < 2 && !rc; i++) {
        /* the parent's image has the intervals; the child's is the smaller */
        struct stat sb;
        stat(files[i], &sb);
        int fdi = open(files[i], O_RDONLY);
        mattr_header h;
        if (fdi < 0 || read(fdi, &h, sizeof h) != (ssize_t)sizeof h) rc = -1;
        if (fdi >= 0) close(fdi);
        if (!rc) rc = seed_from(dir, files[i], (h.flags & MATTR_FLAG_FORKED) ? "real-fork-child" : "real");
    }
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd)) rc = -1;
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--workload")) return workload(argv[2]);
    if (argc != 3) {
        fprintf(stderr, "usage: %s OUTDIR LIBMISER_ATTRIB_SO\n", argv[0]);
        return 2;
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 1;
    self[n] = 0;
    int rc = seed_tree(argv[1]) | seed_deep(argv[1]) | seed_late(argv[1]) | seed_real(argv[1], self, argv[2]);
    if (miser_mem_total().current != 0) fprintf(stderr, "fuzz-seeds: the parser leaked\n"), rc = 1;
    return rc ? 1 : 0;
}

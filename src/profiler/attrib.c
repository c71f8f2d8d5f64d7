/* Per-stage peak attribution, the watcher's side: prepares a run of
 * `miser profile --attribute` (a private directory, the stage counter the
 * interposer reads, LD_PRELOAD), advances the counter at every mark, and
 * after the run turns the interposer's per-process files
 * (src/attrib/attrib_format.h) into the profile's attribution: per stage the
 * call stacks live at each process's live-bytes peak, those that came and
 * went inside the stage, and what was still live at exit (docs/attribution.md).
 *
 * Every file is untrusted input: attrib_image_parse validates it completely
 * before anything is used (tests/fuzz/fuzz_attrib.c). */
#include "attrib.h"
#include "attrib/attrib_format.h"
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ATTRIB_MAX_ENTRIES 64    /* per list after merging; the rest is summed */
#define ATTRIB_MAX_CANDIDATES 512 /* stacks symbolised per list and process */
#define ATTRIB_MAX_INTERVALS 100000

const char *attrib_kind_name(int kind)
{
    return kind == MISER_ATTRIB_ANON ? "mmap-anon" : kind == MISER_ATTRIB_FILE ? "mmap-file" : "heap";
}
int attrib_kind_parse(const char *s)
{
    if (!s) return -1;
    if (!strcmp(s, "heap")) return MISER_ATTRIB_HEAP;
    if (!strcmp(s, "mmap-anon")) return MISER_ATTRIB_ANON;
    if (!strcmp(s, "mmap-file")) return MISER_ATTRIB_FILE;
    return -1;
}

static void entry_free(miser_attrib_entry *e)
{
    for (size_t i = 0; i < e->nframes; i++) {
        miser_free(e->frames[i].function);
        miser_free(e->frames[i].library);
        miser_free(e->frames[i].file);
        miser_free(e->frames[i].mangled);
    }
    miser_free(e->frames);
    miser_free(e->process);
}

void attrib_list_free(miser_attrib_list *l)
{
    for (size_t i = 0; i < l->n; i++) entry_free(&l->v[i]);
    miser_free(l->v);
    memset(l, 0, sizeof *l);
}

void miser_attribution_free(miser_attribution *a)
{
    if (!a) return;
    for (size_t i = 0; i < a->nstages; i++) {
        attrib_list_free(&a->stages[i].peak);
        attrib_list_free(&a->stages[i].temp);
    }
    miser_free(a->stages);
    attrib_list_free(&a->leaks);
    for (size_t i = 0; i < a->nprocs; i++) {
        miser_free(a->procs[i].exe);
        miser_free(a->procs[i].allocator);
    }
    miser_free(a->procs);
    miser_free(a);
}

/* ---- the file parser ---- */

void attrib_image_free(attrib_image *im)
{
    if (!im) return;
    for (size_t i = 0; i < im->nintervals; i++) {
        miser_free(im->intervals[i].stack);
        miser_free(im->intervals[i].vals);
    }
    miser_free(im->intervals);
    miser_free(im->stacks);
    miser_free(im->nodes);
    miser_free(im->leak);
    miser_free(im->maps);
    miser_free(im->maps_all);
    memset(im, 0, sizeof *im);
}

static int in_file(uint64_t off, uint64_t n, uint64_t size, size_t len)
{
    return off <= len && n <= (len - off) / (size ? size : 1);
}

static void cstr_copy(char *dst, size_t cap, const char *src, size_t srccap)
{
    size_t n = strnlen(src, srccap);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

miser_status attrib_image_parse(const void *buf, size_t len, attrib_image *out)
{
    memset(out, 0, sizeof *out);
    if (len < MATTR_HEADER_SIZE || len < sizeof(mattr_header))
        return miser_error_set(MISER_ERR_FORMAT, "attribution file: %zu bytes, shorter than its header", len);
    mattr_header h;
    memcpy(&h, buf, sizeof h);
    if (h.magic != MATTR_MAGIC) return miser_error_set(MISER_ERR_FORMAT, "attribution file: bad magic");
    if (h.version != MATTR_VERSION || h.header_size != MATTR_HEADER_SIZE)
        return miser_error_set(MISER_ERR_FORMAT, "attribution file: version %u not supported", h.version);
    const char *base = buf;
    if (!in_file(h.stacks_off, h.max_stacks, sizeof(mattr_stack), len) ||
        !in_file(h.nodes_off, h.max_nodes, sizeof(uint64_t), len) ||
        !in_file(h.parents_off, h.max_nodes, sizeof(uint32_t), len) || h.parents_off < MATTR_HEADER_SIZE ||
        h.parents_off % 4 ||
        !in_file(h.snaps_off, h.snaps_cap, 1, len) || !in_file(h.maps_off, h.max_maps, 1, len) ||
        h.stacks_off < MATTR_HEADER_SIZE || h.nodes_off < MATTR_HEADER_SIZE || h.snaps_off < MATTR_HEADER_SIZE ||
        h.maps_off < MATTR_HEADER_SIZE || (h.stacks_off | h.nodes_off) % 8)
        return miser_error_set(MISER_ERR_FORMAT, "attribution file: a section lies outside the file");
    if (h.nstacks > h.max_stacks || h.nnodes > h.max_nodes || h.snaps_len > h.snaps_cap || h.maps_len > h.max_maps ||
        h.nstacks == 0 || h.nnodes == 0)
        return miser_error_set(MISER_ERR_FORMAT, "attribution file: counts exceed capacities");
    if (h.interval < h.interval_first || h.interval - h.interval_first >= ATTRIB_MAX_INTERVALS ||
        h.interval >= UINT32_MAX)
        return miser_error_set(MISER_ERR_FORMAT, "attribution file: bad interval range");
    out->pid = h.pid;
    out->ppid = h.ppid;
    out->flags = h.flags;
    cstr_copy(out->exe, sizeof out->exe, h.exe, sizeof h.exe);
    cstr_copy(out->own_malloc, sizeof out->own_malloc, h.own_malloc, sizeof h.own_malloc);
    out->calls = h.calls;
    out->map_calls = h.map_calls;
    out->stack_overflow = h.stack_overflow;
    out->snap_overflow = h.snap_overflow;
    out->table_overflow = h.table_overflow;
    out->region_overflow = h.region_overflow;
    out->maps_overflow = h.maps_overflow;
    out->stack_truncated = h.stack_truncated;
    out->realloc_copies = h.realloc_copies;
    out->realloc_remaps = h.realloc_remaps;
    out->interval_first = h.interval_first;
    out->interval_last = h.interval;
    out->nstacks = h.nstacks;
    out->stacks = miser_calloc(MISER_MEM_PROFILER, h.nstacks, sizeof *out->stacks);
    out->nodes = miser_calloc(MISER_MEM_PROFILER, h.nnodes, sizeof *out->nodes);
    out->leak = miser_calloc(MISER_MEM_PROFILER, h.nstacks, sizeof *out->leak);
    size_t niv = (size_t)(h.interval - h.interval_first + 1);
    out->intervals = miser_calloc(MISER_MEM_PROFILER, niv, sizeof *out->intervals);
    out->maps_all = miser_malloc(MISER_MEM_PROFILER, (size_t)h.maps_len + 1);
    if (!out->stacks || !out->nodes || !out->leak || !out->intervals || !out->maps_all) goto nomem;
    out->nintervals = niv;
    out->nnodes = h.nnodes;
    {
        const uint64_t *nip = (const uint64_t *)(base + h.nodes_off);
        const uint32_t *npar = (const uint32_t *)(base + h.parents_off);
        for (uint32_t i = 1; i < h.nnodes; i++) { /* node 0, the root, stays zero */
            attrib_node n = {0, 0, 0};
            memcpy(&n.ip, &nip[i], sizeof n.ip);
            memcpy(&n.parent, &npar[i], sizeof n.parent);
            if (n.parent >= i) goto bad;
            n.depth = out->nodes[n.parent].depth + 1;
            if (n.depth > MATTR_MAX_DEPTH) goto bad;
            out->nodes[i] = n;
        }
    }
    memcpy(out->maps_all, base + h.maps_off, h.maps_len);
    out->maps_all[h.maps_len] = 0;
    {
        const char *nl = out->maps_all, *p = out->maps_all;
        while ((p = strstr(p, "#maps\n"))) nl = p, p += 6;
        out->maps = miser_strdup(MISER_MEM_PROFILER, nl);
        if (!out->maps) goto nomem;
    }
    const mattr_stack *st = (const mattr_stack *)(base + h.stacks_off);
    for (uint32_t i = 0; i < h.nstacks; i++) {
        mattr_stack s;
        memcpy(&s, &st[i], sizeof s);
        if (s.kind >= MATTR_NKINDS || s.node >= h.nnodes) goto bad;
        out->stacks[i].kind = (int)s.kind;
        out->stacks[i].node = s.node;
        out->stacks[i].depth = out->nodes[s.node].depth;
        out->leak[i] = (attrib_val){s.cur_bytes, s.cur_count, 0, 0, 0, 0};
    }
    /* Closed intervals. The interposer writes a record for a stack only in
     * an interval in which it changed (with its value at the end); in the
     * others it held that end value throughout (peak = start = it, nothing
     * temporary), which is carried forward here. Records are bucketed by
     * interval first (a file is untrusted: any order must be safe). */
    /* the stream (attrib_format.h: varint records), decoded whole: counted
     * and checked first, so a hostile length cannot size the array */
    const uint8_t *sb = (const uint8_t *)base + h.snaps_off;
    size_t nsn = 0;
    for (size_t at = 0, k; at < h.snaps_len; at += k, nsn++) {
        mattr_snap s;
        if (!(k = mattr_snap_decode(sb + at, h.snaps_len - at, &s))) goto bad;
    }
    mattr_snap *sn = miser_calloc(MISER_MEM_PROFILER, nsn + 1, sizeof *sn);
    if (!sn) goto nomem;
    for (size_t at = 0, i = 0; i < nsn; i++) at += mattr_snap_decode(sb + at, h.snaps_len - at, &sn[i]);
    const size_t nclosed = niv - 1;
    uint64_t total = 0;
    size_t *bstart = miser_calloc(MISER_MEM_PROFILER, niv + 1, sizeof *bstart);
    if (!bstart) {
        miser_free(sn);
        goto nomem;
    }
    for (size_t i = 0; i < nsn; i++) {
        mattr_snap s;
        memcpy(&s, &sn[i], sizeof s);
        if (s.first > s.last || s.first < h.interval_first || s.last >= h.interval ||
            (s.stack != MATTR_TOTALS && s.stack >= h.nstacks)) {
            miser_free(bstart);
            miser_free(sn);
            goto bad;
        }
        if (s.stack == MATTR_TOTALS) {
            for (uint32_t k = s.first; k <= s.last; k++) {
                out->intervals[k - h.interval_first].peak_total = s.peak_bytes;
                out->intervals[k - h.interval_first].start_total = s.start_bytes;
            }
            continue;
        }
        total += (uint64_t)(s.last - s.first) + 1;
        if (total > (1u << 24)) {
            miser_free(bstart);
            miser_free(sn);
            goto bad;
        }
        for (uint32_t k = s.first; k <= s.last; k++) bstart[k - h.interval_first + 1]++;
    }
    for (size_t k = 0; k < niv; k++) bstart[k + 1] += bstart[k];
    uint32_t *brec = miser_calloc(MISER_MEM_PROFILER, (size_t)total + 1, sizeof *brec);
    size_t *bfill = miser_calloc(MISER_MEM_PROFILER, niv + 1, sizeof *bfill);
    /* carried values: per stack, and the set of stacks whose carry is not 0 */
    attrib_val *carry = miser_calloc(MISER_MEM_PROFILER, h.nstacks, sizeof *carry);
    uint32_t *cset = miser_calloc(MISER_MEM_PROFILER, h.nstacks, sizeof *cset);
    uint32_t *cpos = miser_calloc(MISER_MEM_PROFILER, h.nstacks, sizeof *cpos); /* index+1 in cset */
    uint64_t *stamp = miser_calloc(MISER_MEM_PROFILER, h.nstacks, sizeof *stamp);
    size_t ncset = 0;
    int ok = brec && bfill && carry && cset && cpos && stamp;
    for (size_t i = 0; ok && i < nsn; i++) {
        mattr_snap s;
        memcpy(&s, &sn[i], sizeof s);
        if (s.stack == MATTR_TOTALS) continue;
        for (uint32_t k = s.first; k <= s.last; k++) {
            size_t b = k - h.interval_first;
            brec[bstart[b] + bfill[b]++] = (uint32_t)i;
        }
    }
    for (size_t k = 0; ok && k < nclosed; k++) {
        attrib_interval *iv = &out->intervals[k];
        size_t nb = bstart[k + 1] - bstart[k], cap = nb + ncset;
        if (!cap) continue;
        iv->stack = miser_calloc(MISER_MEM_PROFILER, cap, sizeof *iv->stack);
        iv->vals = miser_calloc(MISER_MEM_PROFILER, cap, sizeof *iv->vals);
        if (!iv->stack || !iv->vals) {
            ok = 0;
            break;
        }
        /* unchanged stacks first (carried from before this interval) */
        for (size_t q = bstart[k]; q < bstart[k + 1]; q++) {
            mattr_snap r;
            memcpy(&r, &sn[brec[q]], sizeof r);
            stamp[r.stack] = k + 1;
        }
        for (size_t c = 0; c < ncset; c++) {
            uint32_t si = cset[c];
            if (stamp[si] == k + 1) continue;
            attrib_val v = carry[si];
            iv->stack[iv->nvals] = si;
            iv->vals[iv->nvals++] = (attrib_val){v.peak_bytes, v.peak_count, v.peak_bytes, v.peak_count, 0, 0};
        }
        for (size_t q = bstart[k]; q < bstart[k + 1]; q++) {
            mattr_snap r;
            memcpy(&r, &sn[brec[q]], sizeof r);
            if (stamp[r.stack] != k + 1) continue; /* a second record of one stack in one interval: the first wins */
            stamp[r.stack] = UINT64_MAX;
            iv->stack[iv->nvals] = r.stack;
            iv->vals[iv->nvals++] = (attrib_val){r.peak_bytes, r.peak_count, r.start_bytes, r.start_count,
                                                 r.temp_bytes, r.temp_count};
            carry[r.stack] = (attrib_val){r.end_bytes, r.end_count, 0, 0, 0, 0};
            int in = cpos[r.stack] != 0, want = r.end_bytes != 0;
            if (want && !in) {
                cset[ncset] = r.stack;
                cpos[r.stack] = (uint32_t)++ncset;
            } else if (!want && in) {
                uint32_t at = cpos[r.stack] - 1, last = cset[--ncset];
                cset[at] = last;
                cpos[last] = at + 1;
                cpos[r.stack] = 0;
            }
        }
        for (size_t q = bstart[k]; q < bstart[k + 1]; q++) {
            mattr_snap r;
            memcpy(&r, &sn[brec[q]], sizeof r);
            stamp[r.stack] = 0;
        }
    }
    miser_free(sn);
    miser_free(bstart);
    miser_free(brec);
    miser_free(bfill);
    miser_free(carry);
    miser_free(cset);
    miser_free(cpos);
    miser_free(stamp);
    if (!ok) goto nomem;
    for (size_t k = 0; k < niv; k++) out->intervals[k].interval = h.interval_first + k;
    /* the interval in progress: from the stack table, by the interposer's rule */
    attrib_interval *cur = &out->intervals[niv - 1];
    const uint32_t civ = (uint32_t)h.interval;
    for (uint32_t i = 0; i < h.nstacks; i++) {
        mattr_stack s;
        memcpy(&s, &st[i], sizeof s);
        if (mattr_peak_bytes(&s, h.peak_gen) || (s.interval == civ ? s.start_bytes : s.cur_bytes) ||
            (s.interval == civ && s.temp_bytes))
            cur->nvals++;
    }
    if (cur->nvals) {
        cur->stack = miser_calloc(MISER_MEM_PROFILER, cur->nvals, sizeof *cur->stack);
        cur->vals = miser_calloc(MISER_MEM_PROFILER, cur->nvals, sizeof *cur->vals);
        if (!cur->stack || !cur->vals) goto nomem;
        cur->nvals = 0;
    }
    cur->peak_total = h.peak_total;
    cur->start_total = h.start_total;
    for (uint32_t i = 0; i < h.nstacks; i++) {
        mattr_stack s;
        memcpy(&s, &st[i], sizeof s);
        attrib_val v = {mattr_peak_bytes(&s, h.peak_gen), mattr_peak_count(&s, h.peak_gen),
                        s.interval == civ ? s.start_bytes : s.cur_bytes,
                        s.interval == civ ? s.start_count : s.cur_count,
                        s.interval == civ ? s.temp_bytes : 0,
                        s.interval == civ ? s.temp_count : 0};
        if (v.peak_bytes || v.start_bytes || v.temp_bytes) {
            cur->stack[cur->nvals] = i;
            cur->vals[cur->nvals++] = v;
        }
    }
    return MISER_OK;
bad:
    attrib_image_free(out);
    return miser_error_set(MISER_ERR_FORMAT, "attribution file: inconsistent stack or snapshot record");
nomem:
    attrib_image_free(out);
    return miser_error_set(MISER_ERR_NOMEM, "attribution file: out of memory");
}

uint32_t attrib_stack_ips(const attrib_image *im, size_t stack, uint64_t *out)
{
    uint32_t n = 0;
    for (uint32_t v = im->stacks[stack].node; v && n < MATTR_MAX_DEPTH; v = im->nodes[v].parent) out[n++] = im->nodes[v].ip;
    return n;
}

/* ---- the watcher's side ---- */

struct attrib_watch {
    char dir[PATH_MAX];
    _Atomic uint64_t *stage;   /* shared with the interposers */
    char *env[3];
    uint64_t counter;
    size_t *rec;               /* interval -> stage record */
    size_t nrec, caprec;
    int *pids;
    char **pid_exe;
    size_t npids, cappids;
    int64_t min_bytes;
};

miser_status attrib_watch_begin(const char *lib, int64_t min_bytes, attrib_watch **out)
{
    *out = NULL;
    char real[PATH_MAX];
    if (!lib || !realpath(lib, real) || access(real, R_OK))
        return miser_error_set(MISER_ERR_INVALID, "attribution: interposer '%s' not found (build it with make: "
                               "libmiser-attrib.so)", lib ? lib : "(none)");
    attrib_watch *aw = miser_calloc(MISER_MEM_PROFILER, 1, sizeof *aw);
    if (!aw) return miser_error_set(MISER_ERR_NOMEM, "attribution: out of memory");
    aw->min_bytes = min_bytes;
    /* memory-backed by default: the per-process files are written at every
     * allocation, and a disk's dirty-page writeback would stall the program */
    const char *tmp = getenv("MISER_ATTRIB_TMPDIR");
    if (!tmp || !*tmp) tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(aw->dir, sizeof aw->dir, "%s/miser-attrib-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(aw->dir)) {
        miser_status st = miser_error_set(MISER_ERR_IO, "attribution: cannot make a directory under %s: %s",
                                          tmp && *tmp ? tmp : "/tmp", strerror(errno));
        miser_free(aw);
        return st;
    }
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/%s", aw->dir, MATTR_STAGE_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    void *m = MAP_FAILED;
    if (fd >= 0 && ftruncate(fd, 4096) == 0) m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (fd >= 0) close(fd);
    if (m == MAP_FAILED) {
        miser_status st = miser_error_set(MISER_ERR_IO, "attribution: cannot make %s: %s", path, strerror(errno));
        unlink(path);
        rmdir(aw->dir);
        miser_free(aw);
        return st;
    }
    aw->stage = m;
    const char *old = getenv("LD_PRELOAD");
    size_t n = strlen(real) + (old ? strlen(old) : 0) + 16;
    aw->env[0] = miser_malloc(MISER_MEM_PROFILER, n);
    aw->env[1] = miser_malloc(MISER_MEM_PROFILER, strlen(aw->dir) + 32);
    if (!aw->env[0] || !aw->env[1]) {
        attrib_watch_free(aw);
        return miser_error_set(MISER_ERR_NOMEM, "attribution: out of memory");
    }
    /* ours first: the interposer must see allocations before any other preload */
    snprintf(aw->env[0], n, "LD_PRELOAD=%s%s%s", real, old && *old ? ":" : "", old && *old ? old : "");
    snprintf(aw->env[1], strlen(aw->dir) + 32, "%s=%s", MATTR_ENV_DIR, aw->dir);
    *out = aw;
    return MISER_OK;
}

char *const *attrib_watch_env(const attrib_watch *aw) { return aw->env; }

void attrib_watch_mark(attrib_watch *aw, size_t record)
{
    if (!aw) return;
    if (aw->nrec == aw->caprec) {
        size_t nc = aw->caprec ? aw->caprec * 2 : 32;
        size_t *n = miser_realloc(MISER_MEM_PROFILER, aw->rec, nc * sizeof *n);
        if (!n) return; /* the counter still moves: later stages stay aligned with their records */
        aw->rec = n;
        aw->caprec = nc;
    }
    if (aw->nrec == aw->counter) aw->rec[aw->nrec++] = record;
    aw->counter++;
    atomic_store_explicit(aw->stage, aw->counter, memory_order_release);
}

void attrib_watch_saw_pid(attrib_watch *aw, int pid)
{
    if (!aw) return;
    for (size_t i = 0; i < aw->npids; i++)
        if (aw->pids[i] == pid) return;
    if (aw->npids == aw->cappids) {
        size_t nc = aw->cappids ? aw->cappids * 2 : 32;
        int *a = miser_realloc(MISER_MEM_PROFILER, aw->pids, nc * sizeof *a);
        if (!a) return;
        aw->pids = a;
        char **b = miser_realloc(MISER_MEM_PROFILER, aw->pid_exe, nc * sizeof *b);
        if (!b) return;
        aw->pid_exe = b;
        aw->cappids = nc;
    }
    char path[64], exe[PATH_MAX];
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    ssize_t n = readlink(path, exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    aw->pid_exe[aw->npids] = miser_strdup(MISER_MEM_PROFILER, exe);
    aw->pids[aw->npids++] = pid;
}

void attrib_watch_free(attrib_watch *aw)
{
    if (!aw) return;
    if (aw->stage) munmap((void *)aw->stage, 4096);
    if (aw->dir[0]) {
        DIR *d = opendir(aw->dir);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char path[PATH_MAX + 300];
            snprintf(path, sizeof path, "%s/%s", aw->dir, e->d_name);
            unlink(path);
        }
        if (d) closedir(d);
        rmdir(aw->dir);
    }
    miser_free(aw->env[0]);
    miser_free(aw->env[1]);
    miser_free(aw->rec);
    for (size_t i = 0; i < aw->npids; i++) miser_free(aw->pid_exe[i]);
    miser_free(aw->pids);
    miser_free(aw->pid_exe);
    miser_free(aw);
}

/* ---- building the lists ---- */

typedef struct {
    size_t img;
    uint32_t stack;
    int64_t bytes, count, start;
} cand;

typedef struct {
    attrib_image *imgs;
    attrib_sym **syms;
    size_t nimgs;
} image_set;

static int cmp_cand(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : 0;
}
static int cmp_entry(const void *a, const void *b)
{
    const miser_attrib_entry *x = a, *y = b;
    return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : 0;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Hash of what same_symbolic compares, so merging is not quadratic in strcmp. */
static uint64_t symbolic_hash(const miser_attrib_entry *e)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)(unsigned)e->pid ^ ((uint64_t)e->kind << 40);
    for (size_t i = 0; i < e->nframes; i++) {
        for (const unsigned char *c = (const unsigned char *)e->frames[i].function; *c; c++) h = (h ^ *c) * 0x100000001b3ULL;
        for (const unsigned char *c = (const unsigned char *)e->frames[i].library; *c; c++) h = (h ^ *c) * 0x100000001b3ULL;
        h = (h ^ 0xff) * 0x100000001b3ULL;
    }
    return h;
}

static int same_symbolic(const miser_attrib_entry *a, const miser_attrib_entry *b)
{
    if (a->pid != b->pid || a->kind != b->kind || a->nframes != b->nframes) return 0;
    for (size_t i = 0; i < a->nframes; i++)
        if (strcmp(a->frames[i].function, b->frames[i].function) || strcmp(a->frames[i].library, b->frames[i].library))
            return 0;
    return 1;
}

/* Symbolise the largest candidates, merge equal symbolic stacks, sort, cut
 * at min_bytes and the cap; everything else is summed into other_*. */
static miser_status make_list(image_set *is, cand *c, size_t n, int64_t min_bytes, miser_attrib_list *out)
{
    memset(out, 0, sizeof *out);
    qsort(c, n, sizeof *c, cmp_cand);
    size_t take = n < ATTRIB_MAX_CANDIDATES ? n : ATTRIB_MAX_CANDIDATES;
    miser_attrib_entry *v = miser_calloc(MISER_MEM_PROFILER, take + 1, sizeof *v);
    uint64_t *vh = miser_calloc(MISER_MEM_PROFILER, take + 1, sizeof *vh);
    if (!v || !vh) {
        miser_free(v);
        miser_free(vh);
        return miser_error_set(MISER_ERR_NOMEM, "attribution: out of memory");
    }
    size_t nv = 0;
    for (size_t i = take; i < n; i++) {
        out->other_bytes += c[i].bytes;
        out->other_count += c[i].count;
        out->other_start_bytes += c[i].start;
        out->other_stacks++;
    }
    for (size_t i = 0; i < take; i++) {
        attrib_image *im = &is->imgs[c[i].img];
        const attrib_stack_info *si = &im->stacks[c[i].stack];
        miser_attrib_entry e = {c[i].bytes, c[i].count, c[i].start, si->kind, im->pid, NULL, 0, NULL};
        e.process = miser_strdup(MISER_MEM_PROFILER, base_name(im->exe));
        e.frames = miser_calloc(MISER_MEM_PROFILER, si->depth + 1, sizeof *e.frames);
        if (!e.process || !e.frames) {
            entry_free(&e);
            continue;
        }
        if (c[i].stack < MATTR_NKINDS && si->depth == 0) { /* an overflow bucket */
            e.frames[0].function = miser_strdup(MISER_MEM_PROFILER, "[stack table full]");
            e.frames[0].library = miser_strdup(MISER_MEM_PROFILER, "");
            e.nframes = 1;
        } else {
            uint64_t ips[MATTR_MAX_DEPTH];
            uint32_t d = attrib_stack_ips(im, c[i].stack, ips);
            for (uint32_t k = 0; k < d; k++) attrib_sym_frame(is->syms[c[i].img], ips[k], 1, &e.frames[k]);
            e.nframes = d;
        }
        uint64_t eh = symbolic_hash(&e);
        size_t j = 0;
        for (; j < nv; j++)
            if (vh[j] == eh && same_symbolic(&v[j], &e)) break;
        if (j < nv) {
            v[j].bytes += e.bytes;
            v[j].count += e.count;
            v[j].start_bytes += e.start_bytes;
            entry_free(&e);
        } else {
            vh[nv] = eh;
            v[nv++] = e;
        }
    }
    miser_free(vh);
    qsort(v, nv, sizeof *v, cmp_entry);
    size_t keep = 0;
    for (size_t i = 0; i < nv; i++) {
        if (keep < ATTRIB_MAX_ENTRIES && v[i].bytes >= min_bytes && v[i].bytes > 0) {
            v[keep++] = v[i];
            continue;
        }
        out->other_bytes += v[i].bytes;
        out->other_count += v[i].count;
        out->other_start_bytes += v[i].start_bytes;
        out->other_stacks++;
        entry_free(&v[i]);
    }
    out->v = v;
    out->n = keep;
    return MISER_OK;
}

static int push_cand(cand **c, size_t *n, size_t *cap, cand x)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        cand *a = miser_realloc(MISER_MEM_PROFILER, *c, nc * sizeof *a);
        if (!a) return -1;
        *c = a;
        *cap = nc;
    }
    (*c)[(*n)++] = x;
    return 0;
}

static int read_image(const char *path, attrib_image *im)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat sb;
    if (fstat(fd, &sb) || sb.st_size < MATTR_HEADER_SIZE) {
        close(fd);
        return -1;
    }
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return -1;
    miser_status st = attrib_image_parse(m, (size_t)sb.st_size, im);
    munmap(m, (size_t)sb.st_size);
    return st == MISER_OK ? 0 : -1;
}

static char *proc_allocator(const attrib_image *im)
{
    char buf[400];
    if (im->flags & MATTR_FLAG_OWN_MALLOC) snprintf(buf, sizeof buf, "own: %s", im->own_malloc);
    else if (!im->calls) snprintf(buf, sizeof buf, "none seen");
    else snprintf(buf, sizeof buf, "interposed");
    return miser_strdup(MISER_MEM_PROFILER, buf);
}

void attrib_watch_finish(attrib_watch *aw, miser_profile *p)
{
    if (!aw || !p) return;
    image_set is = {0};
    size_t capimg = 0;
    DIR *d = opendir(aw->dir);
    struct dirent *e;
    int bad = 0;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 6, ".mattr")) continue;
        if (is.nimgs == capimg) {
            size_t nc = capimg ? capimg * 2 : 16;
            attrib_image *a = miser_realloc(MISER_MEM_PROFILER, is.imgs, nc * sizeof *a);
            if (!a) break;
            is.imgs = a;
            capimg = nc;
        }
        char path[PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", aw->dir, e->d_name);
        if (read_image(path, &is.imgs[is.nimgs]) == 0) is.nimgs++;
        else bad++;
    }
    if (d) closedir(d);
    if (bad) prof_warn(p, "attribution: %d per-process file(s) unreadable or incomplete (a process killed while starting)", bad);
    miser_attribution *a = miser_calloc(MISER_MEM_PROFILER, 1, sizeof *a);
    is.syms = miser_calloc(MISER_MEM_PROFILER, is.nimgs + 1, sizeof *is.syms);
    if (!a || !is.syms) goto done;
    a->min_bytes = aw->min_bytes;
    a->nstages = p->nstages;
    a->stages = miser_calloc(MISER_MEM_PROFILER, p->nstages + 1, sizeof *a->stages);
    a->procs = miser_calloc(MISER_MEM_PROFILER, is.nimgs + aw->npids + 1, sizeof *a->procs);
    if (!a->stages || !a->procs) goto done;
    for (size_t i = 0; i < is.nimgs; i++) is.syms[i] = attrib_sym_new(is.imgs[i].maps_all);

    cand *c = NULL, *t = NULL;
    size_t nc = 0, capc = 0, nt = 0, capt = 0;
    for (size_t r = 0; r < p->nstages; r++) {
        miser_attrib_stage *as = &a->stages[r];
        nc = nt = 0;
        for (size_t i = 0; i < is.nimgs; i++) {
            attrib_image *im = &is.imgs[i];
            /* the intervals of this record this image lived in: the peak is
             * the one with the largest total (a merged mark covers two) */
            attrib_interval *best = NULL, *first = NULL;
            for (size_t k = 0; k < im->nintervals; k++) {
                uint64_t iv = im->intervals[k].interval;
                if (iv >= aw->nrec || aw->rec[iv] != r) continue;
                if (!first) first = &im->intervals[k];
                if (!best || im->intervals[k].peak_total > best->peak_total) best = &im->intervals[k];
                for (size_t q = 0; q < im->intervals[k].nvals; q++) {
                    const attrib_val *v = &im->intervals[k].vals[q];
                    if (v->temp_bytes)
                        push_cand(&t, &nt, &capt, (cand){i, im->intervals[k].stack[q], v->temp_bytes, v->temp_count, 0});
                }
            }
            if (!best) continue;
            as->present = 1;
            as->peak_bytes += best->peak_total;
            as->start_bytes += first->start_total;
            for (size_t q = 0; q < best->nvals; q++) {
                const attrib_val *v = &best->vals[q];
                int64_t start = 0;
                if (first == best) start = v->start_bytes;
                else
                    for (size_t z = 0; z < first->nvals; z++)
                        if (first->stack[z] == best->stack[q]) start = first->vals[z].start_bytes;
                if (v->peak_bytes)
                    push_cand(&c, &nc, &capc, (cand){i, best->stack[q], v->peak_bytes, v->peak_count, start});
            }
        }
        if (as->present) {
            make_list(&is, c, nc, aw->min_bytes, &as->peak);
            make_list(&is, t, nt, aw->min_bytes, &as->temp);
        }
    }
    nc = 0;
    for (size_t i = 0; i < is.nimgs; i++) {
        attrib_image *im = &is.imgs[i];
        if (!(im->flags & MATTR_FLAG_EXITED)) continue;
        for (size_t s = 0; s < im->nstacks; s++)
            if (im->leak[s].peak_bytes > 0 && im->stacks[s].kind != MISER_ATTRIB_FILE)
                push_cand(&c, &nc, &capc, (cand){i, (uint32_t)s, im->leak[s].peak_bytes, im->leak[s].peak_count, 0});
    }
    make_list(&is, c, nc, aw->min_bytes, &a->leaks);
    miser_free(c);
    miser_free(t);

    /* processes, and what to warn about */
    for (size_t i = 0; i < is.nimgs; i++) {
        attrib_image *im = &is.imgs[i];
        miser_attrib_process *pr = &a->procs[a->nprocs++];
        pr->pid = im->pid;
        pr->ppid = im->ppid;
        pr->exe = miser_strdup(MISER_MEM_PROFILER, im->exe);
        pr->allocator = proc_allocator(im);
        pr->calls = im->calls;
        pr->map_calls = im->map_calls;
        pr->stacks = im->nstacks > MATTR_NKINDS ? im->nstacks - MATTR_NKINDS : 0;
        pr->stack_overflow = im->stack_overflow;
        pr->snap_overflow = im->snap_overflow;
        pr->table_overflow = im->table_overflow;
        pr->region_overflow = im->region_overflow;
        pr->maps_overflow = im->maps_overflow;
        pr->stack_truncated = im->stack_truncated;
        pr->realloc_copies = im->realloc_copies;
        pr->realloc_remaps = im->realloc_remaps;
        pr->exited = (im->flags & MATTR_FLAG_EXITED) != 0;
        pr->forked = (im->flags & MATTR_FLAG_FORKED) != 0;
        if (im->flags & MATTR_FLAG_OWN_MALLOC)
            prof_warn(p, "attribution: pid %d (%s) brings its own allocator (malloc from %s): its allocations are not "
                      "attributed", im->pid, base_name(im->exe), im->own_malloc);
        if (im->stack_overflow)
            prof_warn(p, "attribution: pid %d: stack table full, %llu allocation(s) charged to '[stack table full]' "
                      "(raise MISER_ATTRIB_MAX_STACKS)", im->pid, (unsigned long long)im->stack_overflow);
        if (im->stack_truncated)
            prof_warn(p, "attribution: pid %d: %llu allocation(s) made by stacks past 3/4 of the table are listed by "
                      "their 4 innermost frames (raise MISER_ATTRIB_MAX_STACKS for whole stacks)", im->pid,
                      (unsigned long long)im->stack_truncated);
        if (im->snap_overflow || im->table_overflow || im->region_overflow)
            prof_warn(p, "attribution: pid %d: %llu snapshot record(s), %llu allocation(s) and %llu mapping(s) did "
                      "not fit the interposer's tables and are missing", im->pid,
                      (unsigned long long)im->snap_overflow, (unsigned long long)im->table_overflow,
                      (unsigned long long)im->region_overflow);
    }
    for (size_t k = 0; k < aw->npids; k++) {
        int found = 0;
        for (size_t i = 0; i < is.nimgs && !found; i++) found = is.imgs[i].pid == aw->pids[k];
        if (found) continue;
        miser_attrib_process *pr = &a->procs[a->nprocs++];
        pr->pid = aw->pids[k];
        pr->exe = miser_strdup(MISER_MEM_PROFILER, aw->pid_exe[k] ? aw->pid_exe[k] : "");
        pr->allocator = miser_strdup(MISER_MEM_PROFILER, "not instrumented");
        prof_warn(p, "attribution: pid %d (%s) ran without the interposer (statically linked, or LD_PRELOAD removed): "
                  "its memory is not attributed", aw->pids[k], base_name(aw->pid_exe[k] ? aw->pid_exe[k] : "?"));
    }
    miser_attribution_free(p->attribution);
    p->attribution = a;
    a = NULL;
done:
    miser_attribution_free(a);
    for (size_t i = 0; i < is.nimgs; i++) {
        if (is.syms) attrib_sym_free(is.syms[i]);
        attrib_image_free(&is.imgs[i]);
    }
    miser_free(is.syms);
    miser_free(is.imgs);
}

/* ---- CLI helpers (profiler.h) ---- */

int miser_attrib_parse_size(const char *s, int64_t *out)
{
    if (!s || !*s) return -1;
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v >= 0) || v > 9e18) return -1;
    double mul = 1;
    if (*end) {
        char u = *end;
        if (u == 'k' || u == 'K') mul = 1024.0;
        else if (u == 'm' || u == 'M') mul = 1024.0 * 1024.0;
        else if (u == 'g' || u == 'G') mul = 1024.0 * 1024.0 * 1024.0;
        else if (u != 'b' && u != 'B') return -1;
        end++;
        if (mul > 1 && (!strcmp(end, "B") || !strcmp(end, "iB") || !strcmp(end, "b"))) end += strlen(end);
        if (*end) return -1;
    }
    if (v * mul > 9e18) return -1;
    *out = (int64_t)(v * mul);
    return 0;
}

miser_status miser_attrib_find_lib(char *path, size_t cap)
{
    const char *env = getenv("MISER_ATTRIB_LIB");
    if (env && *env) {
        if (access(env, R_OK) == 0 && strlen(env) < cap) {
            snprintf(path, cap, "%s", env);
            return MISER_OK;
        }
        return miser_error_set(MISER_ERR_UNSUPPORTED, "attribution: $MISER_ATTRIB_LIB '%s' cannot be read", env);
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return miser_error_set(MISER_ERR_UNSUPPORTED, "attribution: cannot read /proc/self/exe");
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    char cand[2][PATH_MAX + 64];
    snprintf(cand[0], sizeof cand[0], "%s/libmiser-attrib.so", exe);
    snprintf(cand[1], sizeof cand[1], "%s/../lib/libmiser-attrib.so", exe);
    for (int i = 0; i < 2; i++)
        if (access(cand[i], R_OK) == 0 && strlen(cand[i]) < cap) {
            snprintf(path, cap, "%s", cand[i]);
            return MISER_OK;
        }
    return miser_error_set(MISER_ERR_UNSUPPORTED,
                           "attribution: libmiser-attrib.so not found (looked in %s and %s; `make` builds it, "
                           "$MISER_ATTRIB_LIB names another)", cand[0], cand[1]);
}

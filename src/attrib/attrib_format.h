/* The per-process attribution file: the one format shared by the interposer
 * (src/attrib/interpose.c, preloaded into every process of a profiled tree)
 * and the watcher's collector (src/profiler/attrib.c).
 *
 * Why a shared file mapping rather than a stream: each process image keeps its
 * whole state (stack table, frames, per-stage snapshots, load maps) in a
 * MAP_SHARED mapping of its own file, so a process that crashes, calls _exit or
 * execs leaves everything it recorded up to that instant for the collector to
 * read after the run; nothing sits in a buffer waiting to be flushed.
 *
 * Stages: the watcher owns a second small file ("stage") whose first 8 bytes
 * are the current interval number; it increments it at each mark, after it
 * read the tree's high-water marks and before it resets them. The interposer
 * reads it (acquire) on every event; on a change it writes the closing
 * interval's per-stack snapshot (bytes at the interval's live-bytes peak, at
 * its start, and those allocated and freed inside it) before charging the
 * event to the new interval. The interval in progress is never snapshotted by
 * the interposer: the collector computes it from the stack table with the
 * same rule (mattr_peak_value below), which is what makes a crash harmless.
 *
 * The collector treats every field as untrusted (attrib_image_parse validates
 * offsets, counts and indices; tests/fuzz/fuzz_attrib.c). Native byte order:
 * the file never leaves the machine that wrote it. */
#ifndef MISER_ATTRIB_FORMAT_H
#define MISER_ATTRIB_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define MATTR_MAGIC 0x31525454414d534dULL /* "MSMATTR1" */
#define MATTR_VERSION 3 /* 3: snapshot records are a varint stream (2: 64-byte records) */
#define MATTR_MAX_DEPTH 64
#define MATTR_HEADER_SIZE 4096
#define MATTR_EXE_MAX 512

/* Environment the watcher gives the tree. */
#define MATTR_ENV_DIR "MISER_ATTRIB_DIR"          /* directory of the per-process files */
#define MATTR_ENV_MAX_STACKS "MISER_ATTRIB_MAX_STACKS" /* optional: stack table size */
#define MATTR_ENV_MAX_NODES "MISER_ATTRIB_MAX_NODES"   /* optional: frame-tree size */
#define MATTR_ENV_DEPTH "MISER_ATTRIB_DEPTH"           /* optional: innermost frames kept (1..64) */
#define MATTR_DEFAULT_DEPTH 64
#define MATTR_STAGE_FILE "stage"

enum { MATTR_KIND_HEAP = 0, MATTR_KIND_ANON = 1, MATTR_KIND_FILE = 2, MATTR_NKINDS = 3 };

/* header flags */
#define MATTR_FLAG_OWN_MALLOC 1u   /* malloc in the global scope is not ours: own allocator */
#define MATTR_FLAG_EXITED 2u       /* the image ran its destructors (normal exit) */
#define MATTR_FLAG_FORKED 4u       /* created in a fork child (before any exec) */
#define MATTR_FLAG_NO_UNWIND 8u    /* the unwinder failed to initialise: stacks are empty */

typedef struct mattr_header {
    uint64_t magic;
    uint32_t version, header_size;
    int32_t pid, ppid;
    uint64_t file_size;
    /* layout: offsets from the file's start, capacities in elements/bytes */
    uint64_t stacks_off, nodes_off, snaps_off, maps_off; /* nodes_off: the nodes' return addresses */
    uint32_t max_stacks, max_nodes, snaps_cap, max_maps; /* snaps_cap: bytes of the snapshot stream */
    uint32_t flags, unwinder; /* unwinder: 1 libunwind unw_backtrace */
    char exe[MATTR_EXE_MAX];  /* /proc/self/exe at creation */
    char own_malloc[256];     /* the object whose malloc wins, when FLAG_OWN_MALLOC */
    /* live state, written under the interposer's lock */
    uint64_t interval;        /* interval of the newest event */
    uint64_t interval_first;  /* interval in which this image started */
    uint64_t peak_gen;        /* incremented at each new peak and at each interval start */
    int64_t cur_total;        /* live heap + anonymous-mmap bytes */
    int64_t peak_total;       /* high-water mark of cur_total in the current interval */
    int64_t start_total;      /* cur_total when the current interval began */
    uint32_t nstacks, nnodes, snaps_len, maps_len; /* snaps_len: bytes of whole records written */
    uint64_t calls;           /* malloc-family calls tracked */
    uint64_t map_calls;       /* mmap/munmap/mremap calls tracked */
    uint64_t stack_overflow;  /* allocations charged to stacks 0..2 because the table was full */
    uint64_t snap_overflow;   /* snapshot records that did not fit (counted, reported) */
    uint64_t maps_overflow;   /* load-map versions that did not fit */
    uint64_t table_overflow;  /* allocations left untracked: the allocation table could not grow */
    uint64_t region_overflow; /* mappings left untracked: the region table was full */
    uint64_t unknown_frees;   /* frees of pointers never seen (allocated before tracking) */
    uint64_t seq;             /* bumped after every completed update (for readers) */
    uint64_t stack_truncated; /* allocations whose stack was kept by its innermost frames only */
    uint64_t realloc_copies;  /* reallocs that moved by copying: old and new block were live together */
    uint64_t realloc_remaps;  /* reallocs glibc served by mremap (no moment with both live) */
    uint64_t parents_off;     /* the nodes' parents (uint32_t, max_nodes of them) */
} mattr_header;

/* The frame tree (a trie of return addresses, as heaptrack's trace tree):
 * node 0 is the root (the empty stack); every other node is one frame whose
 * parent is the frame that called it, so a stack is the id of its innermost
 * frame's node and stacks that share their outer frames share nodes. Two
 * parallel arrays, 12 bytes a node: uint64_t ip at nodes_off, uint32_t
 * parent at parents_off. Nodes are only appended, a parent before its
 * children (parent < id): a reader walks from any node to the root without
 * meeting a cycle, in at most MATTR_MAX_DEPTH steps. */

/* One distinct (call stack, kind). Indexes 0..2 (one per kind) are reserved
 * for allocations made when the table was full ("overflow"). Per-interval values are kept lazily:
 *  - value at the current interval's peak: cur if mod_gen < peak_gen (not
 *    modified since the peak was reached), else saved;
 *  - value at the current interval's start: cur if interval !=
 *    interval, else start;
 *  - temporary (allocated and freed inside the interval): temp if
 *    interval == the header's interval, else 0. */
typedef struct mattr_stack {
    uint64_t hash;       /* of the frames and kind (the interposer's index key) */
    uint32_t node;       /* the innermost frame (0: no frames) */
    uint8_t kind, depth; /* depth: frames (the interposer's; a reader walks the tree) */
    uint16_t pad;
    int64_t cur_bytes, saved_bytes, start_bytes, temp_bytes;
    int64_t temp_count;
    uint64_t mod_gen;
    int32_t cur_count, saved_count, start_count; /* blocks: < 2^31 live per stack */
    uint32_t interval;   /* the interval start_* and temp_* belong to */
} mattr_stack;

/* A closed interval's value for one stack (stack == MATTR_TOTALS: the
 * image's totals, peak_* = peak_total and start_* = start_total). A record
 * covers intervals first..last (a totals record several when the image saw
 * no event in between: its memory did not change, so peak = start = the
 * state then). A stack gets a record only for an interval in which it
 * changed; in every later interval without one it held its end_* value
 * (the collector carries it forward): a stage change costs the stacks that
 * moved, not all of them. */
#define MATTR_TOTALS 0xffffffffu
typedef struct mattr_snap {
    uint32_t first, last;
    uint32_t stack;
    int32_t peak_count, start_count, end_count;
    int64_t peak_bytes, start_bytes, temp_bytes;
    int64_t end_bytes;  /* at the interval's end: held in the later intervals without a record */
    int64_t temp_count;
} mattr_snap;

/* In the file, snapshot records are a byte stream (snaps_len bytes at
 * snaps_off), each record eleven LEB128 varints: stack + 1 (0: totals),
 * first, last - first, then zigzag-coded peak_bytes, peak_count,
 * start_bytes, start_count, temp_bytes, temp_count, end_bytes, end_count.
 * Most values of a closed interval are small or zero (a stack's start and
 * temporary bytes, its counts), so a record takes 12-20 bytes instead of
 * the struct's 64: ONNX Runtime writes ~10^5 of them at its first stage
 * change, in the profiled process's memory. The interposer writes a whole
 * record and only then advances snaps_len, so a reader never sees half of
 * one; the reader rejects a record that runs past snaps_len, a varint of
 * more than 10 bytes or a value out of its field's range. */
#define MATTR_SNAP_MAX_BYTES (3 * 5 + 8 * 10)

static inline size_t mattr_varint_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}
static inline uint64_t mattr_zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }
static inline int64_t mattr_unzigzag(uint64_t v) { return (int64_t)(v >> 1) ^ -(int64_t)(v & 1); }

/* Encode s at p (room for MATTR_SNAP_MAX_BYTES); returns the bytes written.
 * s->last >= s->first. */
static inline size_t mattr_snap_encode(uint8_t *p, const mattr_snap *s)
{
    size_t n = 0;
    n += mattr_varint_put(p + n, s->stack == MATTR_TOTALS ? 0 : (uint64_t)s->stack + 1);
    n += mattr_varint_put(p + n, s->first);
    n += mattr_varint_put(p + n, (uint64_t)(s->last - s->first));
    const int64_t v[8] = {s->peak_bytes, s->peak_count, s->start_bytes, s->start_count,
                          s->temp_bytes, s->temp_count, s->end_bytes,   s->end_count};
    for (int i = 0; i < 8; i++) n += mattr_varint_put(p + n, mattr_zigzag(v[i]));
    return n;
}

/* One varint from p[0..len): its bytes, 0 when truncated or longer than a
 * 64-bit value. */
static inline size_t mattr_varint_get(const uint8_t *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len && i < 10; i++) {
        if (i == 9 && p[i] > 1) return 0; /* bits past 64 */
        v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *out = v;
            return i + 1;
        }
    }
    return 0;
}

/* Decode one record from p[0..len): its bytes, 0 when malformed (truncated,
 * an overlong varint, a value outside its field). */
static inline size_t mattr_snap_decode(const uint8_t *p, size_t len, mattr_snap *s)
{
    uint64_t u[11];
    size_t n = 0;
    for (int i = 0; i < 11; i++) {
        size_t k = mattr_varint_get(p + n, len - n, &u[i]);
        if (!k) return 0;
        n += k;
    }
    if (u[0] > UINT32_MAX || u[1] > UINT32_MAX || u[2] > UINT32_MAX - u[1]) return 0;
    int64_t v[8];
    for (int i = 0; i < 8; i++) v[i] = mattr_unzigzag(u[3 + i]);
    if (v[1] < INT32_MIN || v[1] > INT32_MAX || v[3] < INT32_MIN || v[3] > INT32_MAX || v[7] < INT32_MIN ||
        v[7] > INT32_MAX)
        return 0;
    s->stack = u[0] ? (uint32_t)(u[0] - 1) : MATTR_TOTALS;
    s->first = (uint32_t)u[1];
    s->last = (uint32_t)(u[1] + u[2]);
    s->peak_bytes = v[0], s->peak_count = (int32_t)v[1];
    s->start_bytes = v[2], s->start_count = (int32_t)v[3];
    s->temp_bytes = v[4], s->temp_count = v[5];
    s->end_bytes = v[6], s->end_count = (int32_t)v[7];
    return n;
}

static inline int64_t mattr_peak_bytes(const mattr_stack *s, uint64_t peak_gen)
{
    return s->mod_gen < peak_gen ? s->cur_bytes : s->saved_bytes;
}
static inline int64_t mattr_peak_count(const mattr_stack *s, uint64_t peak_gen)
{
    return s->mod_gen < peak_gen ? s->cur_count : s->saved_count;
}

#endif

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

#include <stdint.h>

#define MATTR_MAGIC 0x31525454414d534dULL /* "MSMATTR1" */
#define MATTR_VERSION 2
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
    uint32_t max_stacks, max_nodes, max_snaps, max_maps;
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
    uint32_t nstacks, nnodes, nsnaps, maps_len;
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

static inline int64_t mattr_peak_bytes(const mattr_stack *s, uint64_t peak_gen)
{
    return s->mod_gen < peak_gen ? s->cur_bytes : s->saved_bytes;
}
static inline int64_t mattr_peak_count(const mattr_stack *s, uint64_t peak_gen)
{
    return s->mod_gen < peak_gen ? s->cur_count : s->saved_count;
}

#endif

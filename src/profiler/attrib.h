/* Per-stage peak attribution inside a profile (watcher side): the data a
 * profile carries when `miser profile --attribute` ran, the collector that
 * makes it from the interposer's per-process files (attrib.c), the
 * symboliser (attrib_sym.c, elfutils libdw) and the report pieces
 * (attrib_report.c: JSON, table, Markdown, SVG icicle, HTML, check).
 * docs/attribution.md describes the whole. Not installed. */
#ifndef MISER_PROFILER_ATTRIB_H
#define MISER_PROFILER_ATTRIB_H

#include "miser/profiler.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct cJSON;

typedef struct miser_attrib_frame {
    char *function; /* owned; "??" when unknown; a C++ name demangled (attrib_demangle) */
    char *library;  /* owned; basename of the object, "" when unknown */
    char *file;     /* owned; NULL without debug information */
    int line;       /* 0 without debug information */
    char *mangled;  /* owned; the symbol as the object names it when function is its
                     * demangled form (JSON "mangled"), NULL otherwise */
} miser_attrib_frame;

enum { MISER_ATTRIB_HEAP = 0, MISER_ATTRIB_ANON = 1, MISER_ATTRIB_FILE = 2 };

/* One call stack's bytes (per process). */
typedef struct miser_attrib_entry {
    int64_t bytes, count;   /* live at the stage's peak (temporary: made and freed in the stage) */
    int64_t start_bytes;    /* live at the stage's start (peak lists only; 0 otherwise) */
    int kind;               /* MISER_ATTRIB_* */
    int pid;
    char *process;          /* owned: the executable's basename */
    size_t nframes;
    miser_attrib_frame *frames; /* owned, innermost first */
} miser_attrib_entry;

typedef struct miser_attrib_list {
    miser_attrib_entry *v;
    size_t n;
    /* what did not make the list (below --attribute-min or past the cap), summed */
    int64_t other_bytes, other_count, other_start_bytes;
    size_t other_stacks;
} miser_attrib_list;

typedef struct miser_attrib_stage {
    int present;            /* 0: no process reported this stage */
    int64_t peak_bytes;     /* sum over processes of their live-bytes peak (heap + anonymous mmap) */
    int64_t start_bytes;    /* the same at the stage's start */
    miser_attrib_list peak; /* at the peak, largest first */
    miser_attrib_list temp; /* allocated and freed inside the stage, largest first */
} miser_attrib_stage;

typedef struct miser_attrib_process {
    int pid, ppid;
    char *exe;              /* owned */
    char *allocator;        /* owned: "interposed", "own: PATH", "none seen", "not instrumented" */
    uint64_t calls, map_calls, stacks;
    uint64_t stack_overflow, snap_overflow, table_overflow, region_overflow, maps_overflow, stack_truncated;
    uint64_t realloc_copies, realloc_remaps; /* moving reallocs: by copying (old + new live at once), by mremap */
    int exited, forked;
} miser_attrib_process;

typedef struct miser_attribution {
    int64_t min_bytes;
    size_t nstages;                 /* == the profile's stage count when made */
    miser_attrib_stage *stages;
    miser_attrib_list leaks;        /* live when each process exited normally */
    size_t nprocs;
    miser_attrib_process *procs;
} miser_attribution;

void miser_attribution_free(miser_attribution *a);
void attrib_list_free(miser_attrib_list *l);
const char *attrib_kind_name(int kind);
int attrib_kind_parse(const char *s);

/* ---- collector (attrib.c), driven by watch.c ---- */

typedef struct attrib_watch attrib_watch;

/* Prepare a run: a private directory, the stage counter and the two
 * environment strings the child gets (LD_PRELOAD with the interposer first,
 * MISER_ATTRIB_DIR), which stay valid until attrib_watch_free. lib: the
 * interposer's path. Errors: IO, NOMEM, INVALID (lib missing). */
miser_status attrib_watch_begin(const char *lib, int64_t min_bytes, attrib_watch **out);
/* The environment entries to add ("NAME=value"); LD_PRELOAD replaces the
 * parent's, which it includes. NULL-terminated, borrowed. */
char *const *attrib_watch_env(const attrib_watch *aw);
/* A mark was recorded as stage record `record` (the interval that just
 * closed belongs to it): advance the stage counter. Call after the
 * snapshot's high-water marks were read and before they are reset. */
void attrib_watch_mark(attrib_watch *aw, size_t record);
/* A process joined the watched tree (to report those that never had the
 * interposer: statically linked, or LD_PRELOAD removed). */
void attrib_watch_saw_pid(attrib_watch *aw, int pid);
/* After the run: read every file, symbolise, attach the attribution to the
 * profile (warnings go to the profile), remove the directory. */
void attrib_watch_finish(attrib_watch *aw, miser_profile *p);
void attrib_watch_free(attrib_watch *aw);

/* ---- one per-process file (attrib.c), validated: the fuzzed parser ---- */

typedef struct attrib_stack_info {
    int kind;
    uint32_t depth;
    uint32_t node; /* innermost frame in the image's frame tree (0: none) */
} attrib_stack_info;

/* One frame-tree node, validated: parent < its own index, depth ==
 * parent's + 1 <= 64 (node 0 is the root, depth 0). */
typedef struct attrib_node {
    uint64_t ip;
    uint32_t parent, depth;
} attrib_node;

typedef struct attrib_val {
    int64_t peak_bytes, peak_count, start_bytes, start_count, temp_bytes, temp_count;
} attrib_val;

typedef struct attrib_interval {
    uint64_t interval;
    int64_t peak_total, start_total;
    size_t nvals;
    uint32_t *stack; /* owned, parallel to vals */
    attrib_val *vals;
} attrib_interval;

typedef struct attrib_image {
    int pid, ppid;
    uint32_t flags;
    char exe[512], own_malloc[256];
    uint64_t calls, map_calls, stack_overflow, snap_overflow, table_overflow, region_overflow, maps_overflow;
    uint64_t stack_truncated, realloc_copies, realloc_remaps;
    uint64_t interval_first, interval_last;
    size_t nstacks;
    attrib_stack_info *stacks; /* owned */
    size_t nnodes;
    attrib_node *nodes;        /* owned: the frame tree */
    size_t nintervals;
    attrib_interval *intervals; /* owned, by interval number (first..last), each value set once */
    attrib_val *leak;           /* owned, per stack: live now (cur) */
    char *maps;                 /* owned, the newest load map text (NUL-terminated) */
    char *maps_all;             /* owned, every stored version (older libraries) */
} attrib_image;

/* Parse and validate a file's bytes; MISER_ERR_FORMAT on anything
 * inconsistent (never reads outside buf). */
miser_status attrib_image_parse(const void *buf, size_t len, attrib_image *out);
void attrib_image_free(attrib_image *im);
/* The return addresses of stack `stack` (< nstacks), innermost first, into
 * out[MATTR_MAX_DEPTH]; returns how many. */
uint32_t attrib_stack_ips(const attrib_image *im, size_t stack, uint64_t *out);

/* ---- symboliser (attrib_sym.c) ---- */

typedef struct attrib_sym attrib_sym;
/* maps: /proc/PID/maps text (several versions may be concatenated). */
attrib_sym *attrib_sym_new(const char *maps);
/* Fill f for return address ip (owned strings). Never fails: unknown
 * parts become "??" / "". */
void attrib_sym_frame(attrib_sym *s, uint64_t ip, int is_return_address, miser_attrib_frame *f);
void attrib_sym_free(attrib_sym *s);
/* The demangled form of a C++ (Itanium ABI, "_Z...") symbol name, owned by
 * the caller (miser_free); NULL when name is not a mangled C++ name, cannot
 * be demangled, or the C++ runtime's demangler is not on this system. */
char *attrib_demangle(const char *name);

/* ---- reports (attrib_report.c) ---- */

/* JSON: called by report.c's writer inside a stage object (after its last
 * member; writes ",\"attribution\":..." when present) and at the top level. */
void attrib_json_stage(const miser_profile *p, size_t stage, FILE *f);
void attrib_json_top(const miser_profile *p, FILE *f);
/* Parse the same back (load.c): root is the whole document. */
miser_status attrib_json_parse(miser_profile *p, const struct cJSON *root);
void attrib_write_table(const miser_profile *p, FILE *f);
void attrib_write_md(const miser_profile *p, FILE *f);
/* Icicle of one stage's peak (SVG with hover titles and click-to-zoom). */
void attrib_write_svg(const miser_profile *p, FILE *f);
/* HTML section (inline SVG per stage), for an HTML report writer. */
void attrib_write_html(const miser_profile *p, FILE *f);
/* HTML table of the top consumers at each stage peak (as attrib_write_md). */
void attrib_write_html_top(const miser_profile *p, FILE *f);

#endif

/* Symbolisation of attribution stacks after the run, with elfutils' libdwfl:
 * function (symbol table), library (the mapped object) and, where DWARF
 * line information exists, file and line. Each process image gets its own
 * symboliser built from the load maps its interposer recorded while it was
 * alive (ASLR puts libraries at different addresses in every process). The
 * maps may hold several versions (libraries loaded and unloaded during the
 * run): the newest is tried first, then older ones for addresses it lacks.
 * Results are cached per address. Never fails: unknown parts are "??".
 *
 * C++ names (ONNX Runtime, libtorch, node) are demangled here, after the
 * run, in the miser process (never inside the interposer, which must not
 * allocate through a foreign library on the hot path): with the C++ ABI's
 * own __cxa_demangle from libstdc++ (the demangler of GCC's runtime, the
 * same cp-demangle code as binutils' c++filt and the one elfutils' tools
 * call). libstdc++ is opened with dlopen("libstdc++.so.6") the first time a
 * "_Z" name is met, rather than linked: miser is C11 and links with cc, so
 * -lstdc++ would make every miser binary and libmiser.so depend on the C++
 * runtime for one function used only by --attribute; a system without
 * libstdc++ (no C++ program to profile either) keeps the mangled names.
 * The mangled name stays beside the demangled one (frame.mangled, JSON
 * "mangled"). */
#include "attrib.h"
#include "internal.h"

#include <dlfcn.h>
#include <elfutils/libdwfl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- C++ demangling (libstdc++'s __cxa_demangle, opened once) ---- */

typedef char *(*cxa_demangle_fn)(const char *mangled, char *buf, size_t *len, int *status);
static cxa_demangle_fn g_cxa_demangle;
static pthread_once_t g_demangle_once = PTHREAD_ONCE_INIT;

static void demangle_open(void)
{
    /* RTLD_LOCAL: its symbols stay out of the global scope. Never closed:
     * the handle lives until the process exits (libstdc++ registers exit
     * handlers, and unloading it buys nothing). */
    void *h = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_LOCAL);
    if (h) g_cxa_demangle = (cxa_demangle_fn)dlsym(h, "__cxa_demangle");
}

char *attrib_demangle(const char *name)
{
    /* only Itanium-ABI symbol names: __cxa_demangle also takes bare type
     * names ("i" -> "int"), which a C function may well be called */
    if (!name || name[0] != '_' || name[1] != 'Z') return NULL;
    pthread_once(&g_demangle_once, demangle_open);
    if (!g_cxa_demangle) return NULL;
    /* a symbol version ("_Znwm@GLIBCXX_3.4", as the dynamic symbol table
     * names some) is not part of the mangling: demangle what is before it
     * and keep it after, as c++filt does */
    const char *at = strchr(name, '@');
    char *head = at ? miser_malloc(MISER_MEM_PROFILER, (size_t)(at - name) + 1) : NULL;
    if (at) {
        if (!head) return NULL;
        memcpy(head, name, (size_t)(at - name));
        head[at - name] = 0;
    }
    int status = -1;
    /* the result is malloc'd by libstdc++ (it must be: it may realloc the
     * buffer it is given); copied into a miser allocation and freed */
    char *d = g_cxa_demangle(head ? head : name, NULL, NULL, &status);
    miser_free(head);
    char *r = NULL;
    if (status == 0 && d && *d) {
        size_t n = strlen(d), v = at ? strlen(at) : 0;
        r = miser_malloc(MISER_MEM_PROFILER, n + v + 1);
        if (r) {
            memcpy(r, d, n);
            memcpy(r + n, at ? at : "", v + 1);
        }
    }
    free(d);
    return r;
}

#define SYM_MAX_VERSIONS 4

typedef struct {
    uint64_t ip;
    int used;
    miser_attrib_frame f;
} sym_cache;

/* A module's function symbols sorted by address: libdwfl's addrinfo scans
 * the whole symbol table per lookup, which for a binary like node (10^5
 * symbols) and thousands of return addresses took tens of seconds. */
typedef struct {
    uint64_t lo, hi;
    const char *name; /* into the module's ELF string table (lives with the Dwfl) */
} sym_range;
typedef struct {
    Dwfl_Module *m;
    sym_range *v;
    size_t n;
} mod_syms;
#define SYM_MAX_MODULES 512

struct attrib_sym {
    Dwfl *dwfl[SYM_MAX_VERSIONS];
    int ndwfl;
    mod_syms mods[SYM_MAX_MODULES];
    int nmods;
    sym_cache *cache;
    size_t cap, n;
};

static char *debuginfo_path;
static const Dwfl_Callbacks g_cb = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .debuginfo_path = &debuginfo_path,
};

static char *dup_s(const char *s)
{
    char *d = miser_strdup(MISER_MEM_PROFILER, s ? s : "");
    return d;
}

/* One dwfl from one maps version [a, b). */
static Dwfl *dwfl_from(const char *a, size_t n)
{
    Dwfl *d = dwfl_begin(&g_cb);
    if (!d) return NULL;
    FILE *f = fmemopen((void *)a, n, "r");
    if (!f) {
        dwfl_end(d);
        return NULL;
    }
    dwfl_report_begin(d);
    int rc = dwfl_linux_proc_maps_report(d, f);
    fclose(f);
    if (rc != 0 || dwfl_report_end(d, NULL, NULL) != 0) {
        dwfl_end(d);
        return NULL;
    }
    return d;
}

attrib_sym *attrib_sym_new(const char *maps)
{
    attrib_sym *s = miser_calloc(MISER_MEM_PROFILER, 1, sizeof *s);
    if (!s) return NULL;
    if (!maps) return s;
    /* versions start at "#maps\n" lines; newest last */
    const char *starts[64];
    size_t nst = 0;
    for (const char *p = maps; (p = strstr(p, "#maps\n")); p += 6) {
        if (nst == 64) memmove(starts, starts + 1, 63 * sizeof *starts), nst = 63;
        starts[nst++] = p + 6;
    }
    if (!nst) starts[nst++] = maps;
    for (size_t k = nst; k-- > 0 && s->ndwfl < SYM_MAX_VERSIONS;) {
        const char *a = starts[k], *e = strstr(a, "#maps\n");
        size_t n = e ? (size_t)(e - a) : strlen(a);
        if (!n) continue;
        Dwfl *d = dwfl_from(a, n);
        if (d) s->dwfl[s->ndwfl++] = d;
    }
    return s;
}

static int cmp_range(const void *a, const void *b)
{
    const sym_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static const mod_syms *module_syms(attrib_sym *s, Dwfl_Module *m)
{
    for (int i = 0; i < s->nmods; i++)
        if (s->mods[i].m == m) return &s->mods[i];
    if (s->nmods == SYM_MAX_MODULES) return NULL;
    mod_syms *ms = &s->mods[s->nmods++];
    ms->m = m;
    int n = dwfl_module_getsymtab(m);
    if (n <= 0) return ms;
    ms->v = miser_calloc(MISER_MEM_PROFILER, (size_t)n, sizeof *ms->v);
    if (!ms->v) return ms;
    for (int i = 1; i < n; i++) {
        GElf_Sym sym;
        GElf_Addr addr = 0;
        const char *name = dwfl_module_getsym_info(m, i, &sym, &addr, NULL, NULL, NULL);
        int t = GELF_ST_TYPE(sym.st_info);
        if (!name || !*name || !addr || (t != STT_FUNC && t != STT_GNU_IFUNC)) continue;
        ms->v[ms->n++] = (sym_range){addr, addr + sym.st_size, name};
    }
    qsort(ms->v, ms->n, sizeof *ms->v, cmp_range);
    return ms;
}

/* The function containing a (a zero-sized symbol covers up to the next). */
static const char *module_fn(attrib_sym *s, Dwfl_Module *m, uint64_t a)
{
    const mod_syms *ms = module_syms(s, m);
    if (!ms || !ms->n) return NULL;
    size_t lo = 0, hi = ms->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (ms->v[mid].lo <= a) lo = mid;
        else hi = mid;
    }
    const sym_range *r = &ms->v[lo];
    if (a < r->lo) return NULL;
    /* several symbols at one address: the first sorted is as good as any */
    if (a < r->hi || (r->hi == r->lo && (lo + 1 == ms->n || a < ms->v[lo + 1].lo))) return r->name;
    return NULL;
}

static void frame_copy(miser_attrib_frame *dst, const miser_attrib_frame *src)
{
    dst->function = dup_s(src->function);
    dst->library = dup_s(src->library);
    dst->file = src->file ? dup_s(src->file) : NULL;
    dst->line = src->line;
    dst->mangled = src->mangled ? dup_s(src->mangled) : NULL;
}

static void resolve(attrib_sym *s, uint64_t ip, int ret, miser_attrib_frame *f)
{
    /* a return address points after the call: look up the call itself */
    Dwarf_Addr a = ret && ip ? ip - 1 : ip;
    const char *fn = NULL, *lib = NULL, *file = NULL;
    int line = 0;
    Dwarf_Addr modoff = 0;
    for (int k = 0; k < s->ndwfl; k++) {
        Dwfl_Module *m = dwfl_addrmodule(s->dwfl[k], a);
        if (!m) continue;
        const char *mainfile = NULL;
        Dwarf_Addr mstart = 0;
        const char *name = dwfl_module_info(m, NULL, &mstart, NULL, NULL, NULL, &mainfile, NULL);
        lib = name;
        modoff = a - mstart;
        fn = module_fn(s, m, a);
        Dwfl_Line *l = dwfl_module_getsrc(m, a);
        if (l) file = dwfl_lineinfo(l, NULL, &line, NULL, NULL, NULL);
        break;
    }
    char hex[32];
    const char *base = lib ? strrchr(lib, '/') : NULL;
    char hexbuf[300];
    if (!fn && lib) {
        /* no symbol (a static function in a stripped object): object+offset */
        snprintf(hexbuf, sizeof hexbuf, "%s+0x%llx", base ? base + 1 : lib, (unsigned long long)modoff);
        fn = hexbuf;
    } else if (!fn) {
        snprintf(hex, sizeof hex, "0x%llx", (unsigned long long)ip);
        fn = hex;
    }
    char *dm = attrib_demangle(fn);
    if (dm) {
        f->function = dm;
        f->mangled = dup_s(fn);
    } else f->function = dup_s(fn);
    f->library = dup_s(base ? base + 1 : lib ? lib : "");
    f->file = file ? dup_s(file) : NULL;
    f->line = file ? line : 0;
}

void attrib_sym_frame(attrib_sym *s, uint64_t ip, int ret, miser_attrib_frame *f)
{
    memset(f, 0, sizeof *f);
    if (!s) {
        f->function = dup_s("??");
        f->library = dup_s("");
        return;
    }
    if (s->n * 2 >= s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 1024;
        sym_cache *n = miser_calloc(MISER_MEM_PROFILER, nc, sizeof *n);
        if (n) {
            for (size_t i = 0; i < s->cap; i++) {
                if (!s->cache[i].used) continue;
                size_t at = (size_t)(s->cache[i].ip * 0x9e3779b97f4a7c15ULL >> 20) & (nc - 1);
                while (n[at].used) at = (at + 1) & (nc - 1);
                n[at] = s->cache[i];
            }
            miser_free(s->cache);
            s->cache = n;
            s->cap = nc;
        }
    }
    uint64_t key = ip ^ (ret ? 0 : 1ULL << 63);
    if (s->cap && s->n * 2 < s->cap) {
        size_t at = (size_t)(key * 0x9e3779b97f4a7c15ULL >> 20) & (s->cap - 1);
        while (s->cache[at].used && s->cache[at].ip != key) at = (at + 1) & (s->cap - 1);
        if (!s->cache[at].used) {
            resolve(s, ip, ret, &s->cache[at].f);
            s->cache[at].used = 1;
            s->cache[at].ip = key;
            s->n++;
        }
        frame_copy(f, &s->cache[at].f);
        return;
    }
    resolve(s, ip, ret, f);
}

void attrib_sym_free(attrib_sym *s)
{
    if (!s) return;
    for (int i = 0; i < s->nmods; i++) miser_free(s->mods[i].v);
    for (int k = 0; k < s->ndwfl; k++) dwfl_end(s->dwfl[k]);
    for (size_t i = 0; i < s->cap; i++)
        if (s->cache[i].used) {
            miser_free(s->cache[i].f.function);
            miser_free(s->cache[i].f.library);
            miser_free(s->cache[i].f.file);
            miser_free(s->cache[i].f.mangled);
        }
    miser_free(s->cache);
    miser_free(s);
}

/* Report pieces for per-stage peak attribution (docs/attribution.md): the
 * JSON members (written inside report.c's profile JSON and read back for
 * `miser check`), the top consumers per stage peak for the terminal table
 * and Markdown, icicle graphs of each stage's peak (standalone SVG, and an
 * HTML section with the same inline SVGs), and the stacks that grew most
 * between two profiles. report.c, load.c and the CLI call in here; nothing
 * here prints unless asked to. */
#include "attrib.h"
#include "chart.h"
#include "internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOP_TERMINAL 5
#define ICICLE_W 1200.0
#define ICICLE_ROW 17.0
#define ICICLE_MAX_DEPTH 40

int miser_profile_has_attribution(const miser_profile *p) { return p && p->attribution; }

static const miser_attrib_stage *stage_of(const miser_profile *p, size_t i)
{
    const miser_attribution *a = p ? p->attribution : NULL;
    if (!a || i >= a->nstages || !a->stages[i].present) return NULL;
    return &a->stages[i];
}

/* ---- JSON ---- */

static void jstr(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)(s ? s : ""); *c; c++) {
        if (*c == '"' || *c == '\\') fprintf(f, "\\%c", *c);
        else if (*c < 0x20) fprintf(f, "\\u%04x", *c);
        else fputc(*c, f);
    }
    fputc('"', f);
}

static void json_list(FILE *f, const miser_attrib_list *l, const char *name, int with_start)
{
    fprintf(f, ",\n     \"%s\": [", name);
    for (size_t i = 0; i < l->n; i++) {
        const miser_attrib_entry *e = &l->v[i];
        fprintf(f, "%s\n       {\"bytes\": %lld, \"count\": %lld, ", i ? "," : "", (long long)e->bytes,
                (long long)e->count);
        if (with_start) fprintf(f, "\"start_bytes\": %lld, ", (long long)e->start_bytes);
        fprintf(f, "\"kind\": \"%s\", \"pid\": %d, \"process\": ", attrib_kind_name(e->kind), e->pid);
        jstr(f, e->process);
        fputs(", \"stack\": [", f);
        for (size_t k = 0; k < e->nframes; k++) {
            if (k) fputs(", ", f);
            jstr(f, e->frames[k].function);
        }
        fputs("], \"frames\": [", f);
        for (size_t k = 0; k < e->nframes; k++) {
            const miser_attrib_frame *fr = &e->frames[k];
            fputs(k ? ", {\"function\": " : "{\"function\": ", f);
            jstr(f, fr->function);
            if (fr->mangled) { /* only when function is its demangled form */
                fputs(", \"mangled\": ", f);
                jstr(f, fr->mangled);
            }
            fputs(", \"library\": ", f);
            jstr(f, fr->library);
            fputs(", \"file\": ", f);
            if (fr->file) jstr(f, fr->file);
            else fputs("null", f);
            fprintf(f, ", \"line\": ");
            if (fr->file) fprintf(f, "%d}", fr->line);
            else fputs("null}", f);
        }
        fputs("]}", f);
    }
    fprintf(f, "%s],\n     \"%s_other\": {\"bytes\": %lld, \"count\": %lld, ", l->n ? "\n     " : "", name,
            (long long)l->other_bytes, (long long)l->other_count);
    if (with_start) fprintf(f, "\"start_bytes\": %lld, ", (long long)l->other_start_bytes);
    fprintf(f, "\"stacks\": %zu}", l->other_stacks);
}

void attrib_json_stage(const miser_profile *p, size_t i, FILE *f)
{
    const miser_attrib_stage *s = stage_of(p, i);
    if (!s) return;
    fprintf(f, ",\n     \"attribution_peak_bytes\": %lld, \"attribution_start_bytes\": %lld", (long long)s->peak_bytes,
            (long long)s->start_bytes);
    json_list(f, &s->peak, "attribution", 1);
    json_list(f, &s->temp, "attribution_temporary", 0);
}

void attrib_json_top(const miser_profile *p, FILE *f)
{
    const miser_attribution *a = p->attribution;
    if (!a) return;
    fprintf(f, "  \"attribution\": {\"min_bytes\": %lld,\n     \"processes\": [", (long long)a->min_bytes);
    for (size_t i = 0; i < a->nprocs; i++) {
        const miser_attrib_process *pr = &a->procs[i];
        fprintf(f, "%s\n       {\"pid\": %d, \"ppid\": %d, \"exe\": ", i ? "," : "", pr->pid, pr->ppid);
        jstr(f, pr->exe);
        fputs(", \"allocator\": ", f);
        jstr(f, pr->allocator);
        fprintf(f,
                ", \"calls\": %llu, \"map_calls\": %llu, \"stacks\": %llu, \"stack_overflow\": %llu, "
                "\"snapshot_overflow\": %llu, \"table_overflow\": %llu, \"region_overflow\": %llu, "
                "\"maps_overflow\": %llu, \"stack_truncated\": %llu, \"realloc_copies\": %llu, "
                "\"realloc_remaps\": %llu, \"exited\": %s, \"forked\": %s}",
                (unsigned long long)pr->calls, (unsigned long long)pr->map_calls, (unsigned long long)pr->stacks,
                (unsigned long long)pr->stack_overflow, (unsigned long long)pr->snap_overflow,
                (unsigned long long)pr->table_overflow, (unsigned long long)pr->region_overflow,
                (unsigned long long)pr->maps_overflow, (unsigned long long)pr->stack_truncated,
                (unsigned long long)pr->realloc_copies, (unsigned long long)pr->realloc_remaps, pr->exited ? "true" : "false", pr->forked ? "true" : "false");
    }
    fputs("]", f);
    json_list(f, &a->leaks, "leaks", 0);
    fputs("},\n", f);
}

/* -- reading back (untrusted: every member checked) -- */

static char *jdup(const cJSON *o, const char *k, int nullable, int *bad)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (nullable && (!v || cJSON_IsNull(v))) return NULL;
    if (!cJSON_IsString(v)) {
        *bad = 1;
        return NULL;
    }
    char *s = miser_strdup(MISER_MEM_PROFILER, v->valuestring);
    if (!s) *bad = 2;
    return s;
}

static int64_t jint(const cJSON *o, const char *k, int *bad)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 9e18) {
        *bad = 1;
        return 0;
    }
    return (int64_t)v->valuedouble;
}

static int parse_list(const cJSON *o, const char *name, miser_attrib_list *l)
{
    memset(l, 0, sizeof *l);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!arr) return 0;
    if (!cJSON_IsArray(arr)) return 1;
    int n = cJSON_GetArraySize(arr), bad = 0;
    l->v = miser_calloc(MISER_MEM_PROFILER, (size_t)n + 1, sizeof *l->v);
    if (!l->v) return 2;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsObject(it)) return 1;
        miser_attrib_entry *e = &l->v[l->n++];
        e->bytes = jint(it, "bytes", &bad);
        e->count = jint(it, "count", &bad);
        e->start_bytes = jint(it, "start_bytes", &bad);
        e->pid = (int)jint(it, "pid", &bad);
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(it, "kind");
        e->kind = attrib_kind_parse(cJSON_IsString(k) ? k->valuestring : NULL);
        if (e->kind < 0) return 1;
        e->process = jdup(it, "process", 0, &bad);
        const cJSON *fr = cJSON_GetObjectItemCaseSensitive(it, "frames");
        if (!cJSON_IsArray(fr) || bad) return bad ? bad : 1;
        int nf = cJSON_GetArraySize(fr);
        e->frames = miser_calloc(MISER_MEM_PROFILER, (size_t)nf + 1, sizeof *e->frames);
        if (!e->frames) return 2;
        const cJSON *x;
        cJSON_ArrayForEach(x, fr)
        {
            if (!cJSON_IsObject(x)) return 1;
            miser_attrib_frame *m = &e->frames[e->nframes++];
            m->function = jdup(x, "function", 0, &bad);
            m->library = jdup(x, "library", 0, &bad);
            m->file = jdup(x, "file", 1, &bad);
            m->line = (int)jint(x, "line", &bad);
            m->mangled = jdup(x, "mangled", 1, &bad); /* optional: C++ frames only */
            if (bad) return bad;
        }
    }
    char other[96];
    snprintf(other, sizeof other, "%s_other", name);
    const cJSON *ot = cJSON_GetObjectItemCaseSensitive(o, other);
    if (ot) {
        if (!cJSON_IsObject(ot)) return 1;
        l->other_bytes = jint(ot, "bytes", &bad);
        l->other_count = jint(ot, "count", &bad);
        l->other_start_bytes = jint(ot, "start_bytes", &bad);
        l->other_stacks = (size_t)jint(ot, "stacks", &bad);
    }
    return bad;
}

miser_status attrib_json_parse(miser_profile *p, const cJSON *root)
{
    const cJSON *top = cJSON_GetObjectItemCaseSensitive(root, "attribution");
    if (!top || cJSON_IsNull(top)) return MISER_OK;
    if (!cJSON_IsObject(top)) return miser_error_set(MISER_ERR_FORMAT, "profile JSON: attribution is not an object");
    miser_attribution *a = miser_calloc(MISER_MEM_PROFILER, 1, sizeof *a);
    if (!a) return miser_error_set(MISER_ERR_NOMEM, "profile JSON: out of memory");
    int bad = 0;
    a->min_bytes = jint(top, "min_bytes", &bad);
    a->nstages = p->nstages;
    a->stages = miser_calloc(MISER_MEM_PROFILER, p->nstages + 1, sizeof *a->stages);
    if (!a->stages) bad = 2;
    const cJSON *procs = cJSON_GetObjectItemCaseSensitive(top, "processes");
    if (!bad && procs) {
        if (!cJSON_IsArray(procs)) bad = 1;
        else {
            a->procs = miser_calloc(MISER_MEM_PROFILER, (size_t)cJSON_GetArraySize(procs) + 1, sizeof *a->procs);
            if (!a->procs) bad = 2;
            const cJSON *it;
            cJSON_ArrayForEach(it, procs)
            {
                if (bad) break;
                if (!cJSON_IsObject(it)) {
                    bad = 1;
                    break;
                }
                miser_attrib_process *pr = &a->procs[a->nprocs++];
                pr->pid = (int)jint(it, "pid", &bad);
                pr->ppid = (int)jint(it, "ppid", &bad);
                pr->exe = jdup(it, "exe", 0, &bad);
                pr->allocator = jdup(it, "allocator", 0, &bad);
                pr->calls = (uint64_t)jint(it, "calls", &bad);
                pr->map_calls = (uint64_t)jint(it, "map_calls", &bad);
                pr->stacks = (uint64_t)jint(it, "stacks", &bad);
                pr->stack_overflow = (uint64_t)jint(it, "stack_overflow", &bad);
                pr->snap_overflow = (uint64_t)jint(it, "snapshot_overflow", &bad);
                pr->table_overflow = (uint64_t)jint(it, "table_overflow", &bad);
                pr->region_overflow = (uint64_t)jint(it, "region_overflow", &bad);
                pr->maps_overflow = (uint64_t)jint(it, "maps_overflow", &bad);
                pr->stack_truncated = (uint64_t)jint(it, "stack_truncated", &bad);
                pr->realloc_copies = (uint64_t)jint(it, "realloc_copies", &bad);
                pr->realloc_remaps = (uint64_t)jint(it, "realloc_remaps", &bad);
                pr->exited = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "exited"));
                pr->forked = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "forked"));
            }
        }
    }
    if (!bad) bad = parse_list(top, "leaks", &a->leaks);
    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(root, "stages"), *js;
    size_t i = 0;
    cJSON_ArrayForEach(js, stages)
    {
        if (bad || i >= p->nstages) break;
        miser_attrib_stage *s = &a->stages[i++];
        if (!cJSON_GetObjectItemCaseSensitive(js, "attribution")) continue;
        s->present = 1;
        s->peak_bytes = jint(js, "attribution_peak_bytes", &bad);
        s->start_bytes = jint(js, "attribution_start_bytes", &bad);
        if (!bad) bad = parse_list(js, "attribution", &s->peak);
        if (!bad) bad = parse_list(js, "attribution_temporary", &s->temp);
    }
    if (bad) {
        miser_attribution_free(a);
        return bad == 2 ? miser_error_set(MISER_ERR_NOMEM, "profile JSON: out of memory")
                        : miser_error_set(MISER_ERR_FORMAT, "profile JSON: attribution: a member has the wrong type");
    }
    miser_attribution_free(p->attribution);
    p->attribution = a;
    return MISER_OK;
}

/* ---- text ---- */

static double mib(int64_t b) { return (double)b / (1024.0 * 1024.0); }

/* "fn <- fn <- fn" (innermost first, at most n names) into buf. */
static void stack_text(const miser_attrib_entry *e, size_t n, char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = 0;
    for (size_t k = 0; k < e->nframes && k < n && at + 8 < cap; k++) {
        const miser_attrib_frame *fr = &e->frames[k];
        int w;
        if (k == 0 && fr->file) {
            const char *b = strrchr(fr->file, '/');
            w = snprintf(buf + at, cap - at, "%s (%s:%d)", fr->function, b ? b + 1 : fr->file, fr->line);
        } else w = snprintf(buf + at, cap - at, "%s%s", k ? " <- " : "", fr->function);
        if (w < 0) break;
        at += (size_t)w;
        if (at >= cap) {
            at = cap - 1;
            break;
        }
    }
    if (e->nframes > n && at + 6 < cap) snprintf(buf + at, cap - at, " <- ...");
}

void attrib_write_table(const miser_profile *p, FILE *f)
{
    const miser_attribution *a = p->attribution;
    if (!a) return;
    fprintf(f, "\nTop consumers at each stage's peak (live heap + anonymous mmap per call stack; "
               "docs/attribution.md):\n");
    for (size_t i = 0; i < a->nstages && i < p->nstages; i++) {
        const miser_attrib_stage *s = stage_of(p, i);
        if (!s) continue;
        fprintf(f, "  %s: peak %.2f MB live, %+.2f MB over the stage's start\n", p->stages[i].name, mib(s->peak_bytes),
                mib(s->peak_bytes - s->start_bytes));
        for (size_t k = 0; k < s->peak.n && k < TOP_TERMINAL; k++) {
            const miser_attrib_entry *e = &s->peak.v[k];
            char st[400];
            stack_text(e, 4, st, sizeof st);
            fprintf(f, "    %9.2f MB %+9.2f  x%-6lld %-9s %s[%d]  %s\n", mib(e->bytes), mib(e->bytes - e->start_bytes),
                    (long long)e->count, attrib_kind_name(e->kind), e->process, e->pid, st);
        }
        if (s->peak.other_bytes)
            fprintf(f, "    %9.2f MB in %zu other stack(s)\n", mib(s->peak.other_bytes), s->peak.other_stacks);
        if (s->temp.n) {
            const miser_attrib_entry *e = &s->temp.v[0];
            char st[400];
            stack_text(e, 3, st, sizeof st);
            fprintf(f, "    temporary (made and freed in the stage): %.2f MB x%lld from %s\n", mib(e->bytes),
                    (long long)e->count, st);
        }
    }
    if (a->leaks.n) {
        fprintf(f, "  still live at exit:\n");
        for (size_t k = 0; k < a->leaks.n && k < TOP_TERMINAL; k++) {
            char st[400];
            stack_text(&a->leaks.v[k], 4, st, sizeof st);
            fprintf(f, "    %9.2f MB x%-6lld %s[%d]  %s\n", mib(a->leaks.v[k].bytes), (long long)a->leaks.v[k].count,
                    a->leaks.v[k].process, a->leaks.v[k].pid, st);
        }
    }
    for (size_t i = 0; i < a->nprocs; i++)
        if (strcmp(a->procs[i].allocator, "interposed"))
            fprintf(f, "  pid %d (%s): %s\n", a->procs[i].pid, a->procs[i].exe, a->procs[i].allocator);
}

/* A table cell: '|' would end it, and C++ names' '<' '>' would be read as
 * HTML tags by a Markdown renderer (std::vector<double> shows as
 * std::vector); entities render as the characters. */
static void md_cell(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else if (*s == '\n') fputc(' ', f);
        else if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
    }
}

void attrib_write_md(const miser_profile *p, FILE *f)
{
    const miser_attribution *a = p->attribution;
    if (!a) return;
    fprintf(f, "\n## Top consumers at each stage's peak\n\nLive heap and anonymous-mmap bytes per call stack at "
               "each process's live-bytes peak in the stage (file mappings listed as `mmap-file`).\n");
    for (size_t i = 0; i < a->nstages && i < p->nstages; i++) {
        const miser_attrib_stage *s = stage_of(p, i);
        if (!s) continue;
        fprintf(f, "\n### %s: peak %.2f MB, %+.2f MB over its start\n\n", p->stages[i].name, mib(s->peak_bytes),
                mib(s->peak_bytes - s->start_bytes));
        fprintf(f, "| MB at peak | growth MB | blocks | kind | process | stack (innermost first) |\n|---:|---:|---:|---|---|---|\n");
        for (size_t k = 0; k < s->peak.n && k < 10; k++) {
            const miser_attrib_entry *e = &s->peak.v[k];
            char st[600];
            stack_text(e, 6, st, sizeof st);
            fprintf(f, "| %.2f | %+.2f | %lld | %s | %s (%d) | ", mib(e->bytes), mib(e->bytes - e->start_bytes),
                    (long long)e->count, attrib_kind_name(e->kind), e->process, e->pid);
            md_cell(f, st);
            fputs(" |\n", f);
        }
        if (s->peak.other_bytes)
            fprintf(f, "| %.2f | | %lld | | | %zu other stacks |\n", mib(s->peak.other_bytes),
                    (long long)s->peak.other_count, s->peak.other_stacks);
    }
    if (a->leaks.n) {
        fprintf(f, "\n### Still live at exit\n\n| MB | blocks | process | stack |\n|---:|---:|---|---|\n");
        for (size_t k = 0; k < a->leaks.n && k < 10; k++) {
            char st[600];
            stack_text(&a->leaks.v[k], 6, st, sizeof st);
            fprintf(f, "| %.2f | %lld | %s (%d) | ", mib(a->leaks.v[k].bytes), (long long)a->leaks.v[k].count,
                    a->leaks.v[k].process, a->leaks.v[k].pid);
            md_cell(f, st);
            fputs(" |\n", f);
        }
    }
}

/* ---- icicle graphs ---- */

typedef struct inode {
    const char *name; /* borrowed from the entries */
    int64_t bytes;
    struct inode *child, *next;
} inode;

typedef struct {
    inode *pool;
    size_t n, cap;
} ipool;

static inode *inew(ipool *pl, const char *name)
{
    if (pl->n == pl->cap) return NULL;
    inode *x = &pl->pool[pl->n++];
    memset(x, 0, sizeof *x);
    x->name = name;
    return x;
}

static inode *ichild(ipool *pl, inode *parent, const char *name)
{
    for (inode *c = parent->child; c; c = c->next)
        if (!strcmp(c->name, name)) return c;
    inode *c = inew(pl, name);
    if (!c) return NULL;
    c->next = parent->child;
    parent->child = c;
    return c;
}

static void xml(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static double g_y0;
static void emit(FILE *f, const inode *n, double x, double w, int depth, int64_t total, int gid)
{
    if (w < 0.3 || depth > ICICLE_MAX_DEPTH + 2) return;
    double y = g_y0 + depth * ICICLE_ROW;
    /* warm colours by name hash, as flame graphs do */
    unsigned h = 5381;
    for (const char *c = n->name; *c; c++) h = h * 33 + (unsigned char)*c;
    int r = 205 + (int)(h % 50), g = 80 + (int)((h >> 8) % 120), b = 40 + (int)((h >> 16) % 40);
    fprintf(f, "<g class=\"n\" data-g=\"%d\" data-x=\"%.2f\" data-w=\"%.2f\"><title>", gid, x, w);
    xml(f, n->name);
    fprintf(f, " — %.2f MB (%.1f%%)</title><rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"rgb(%d,%d,%d)\"/>",
            mib(n->bytes), total ? 100.0 * (double)n->bytes / (double)total : 0.0, x, y, w, ICICLE_ROW - 1, r, g, b);
    if (w > 40) {
        fprintf(f, "<text x=\"%.2f\" y=\"%.1f\">", x + 3, y + ICICLE_ROW - 5);
        size_t maxc = (size_t)(w / 7);
        char buf[256];
        snprintf(buf, sizeof buf, "%s", n->name);
        if (strlen(buf) > maxc && maxc > 2) buf[maxc - 2] = 0, strcat(buf, "..");
        xml(f, buf);
        fputs("</text>", f);
    }
    fputs("</g>\n", f);
    double cx = x;
    for (const inode *c = n->child; c; c = c->next) {
        double cw = n->bytes > 0 ? w * (double)c->bytes / (double)n->bytes : 0;
        emit(f, c, cx, cw, depth + 1, total, gid);
        cx += cw;
    }
}

static int idepth(const inode *n)
{
    int d = 0;
    for (const inode *c = n->child; c; c = c->next) {
        int k = idepth(c);
        if (k > d) d = k;
    }
    return d + 1;
}

/* One stage's icicle at g_y0; returns its height. */
static double icicle(FILE *f, const miser_profile *p, size_t i, int gid)
{
    const miser_attrib_stage *s = stage_of(p, i);
    size_t cap = 2;
    for (size_t k = 0; k < s->peak.n; k++) cap += s->peak.v[k].nframes + 2;
    ipool pl = {miser_calloc(MISER_MEM_PROFILER, cap, sizeof(inode)), 0, cap};
    if (!pl.pool) return 0;
    char title[200];
    snprintf(title, sizeof title, "%s: %.2f MB at the peak (all stacks listed)", p->stages[i].name,
             mib(s->peak_bytes));
    inode *root = inew(&pl, title);
    char *procname[64] = {0};
    int nproc = 0;
    for (size_t k = 0; k < s->peak.n; k++) {
        const miser_attrib_entry *e = &s->peak.v[k];
        if (e->kind == MISER_ATTRIB_FILE) continue; /* file mappings are not in the peak */
        char pn[160];
        snprintf(pn, sizeof pn, "%s [%d]", e->process, e->pid);
        const char *name = NULL;
        for (int q = 0; q < nproc; q++)
            if (!strcmp(procname[q], pn)) name = procname[q];
        if (!name && nproc < 64) name = procname[nproc++] = miser_strdup(MISER_MEM_PROFILER, pn);
        if (!name) continue;
        inode *n = ichild(&pl, root, name);
        root->bytes += e->bytes;
        if (!n) continue;
        n->bytes += e->bytes;
        size_t lo = e->nframes > ICICLE_MAX_DEPTH ? e->nframes - ICICLE_MAX_DEPTH : 0;
        for (size_t q = e->nframes; q-- > lo && n;) {
            n = ichild(&pl, n, e->frames[q].function);
            if (n) n->bytes += e->bytes;
        }
    }
    if (s->peak.other_bytes > 0 && root->bytes >= 0) {
        inode *o = ichild(&pl, root, "(other stacks)");
        if (o) o->bytes += s->peak.other_bytes;
        root->bytes += s->peak.other_bytes;
    }
    double h = idepth(root) * ICICLE_ROW;
    emit(f, root, 0, ICICLE_W, 0, root->bytes, gid);
    for (int q = 0; q < nproc; q++) miser_free(procname[q]);
    miser_free(pl.pool);
    return h;
}

static const char *g_icicle_script =
    "<script><![CDATA[\n"
    "(function(){var W=1200;function z(g){var gid=g.getAttribute('data-g'),x0=+g.getAttribute('data-x'),"
    "w0=+g.getAttribute('data-w');document.querySelectorAll('g.n[data-g=\"'+gid+'\"]').forEach(function(n){"
    "var x=+n.getAttribute('data-x'),w=+n.getAttribute('data-w');var r=n.querySelector('rect'),t=n.querySelector('text');"
    "if(x+w<=x0+0.01||x>=x0+w0-0.01){n.style.display='none';return;}n.style.display='';var nx=(x-x0)*W/w0,nw=w*W/w0;"
    "if(nx<0){nw+=nx;nx=0;}if(nw>W-nx)nw=W-nx;r.setAttribute('x',nx);r.setAttribute('width',nw);"
    "if(t){t.setAttribute('x',nx+3);t.style.display=nw>40?'':'none';}});}"
    "document.querySelectorAll('g.n').forEach(function(g){g.style.cursor='pointer';"
    "g.addEventListener('click',function(){z(g);});});})();\n"
    "]]></script>\n";

static double svg_body(const miser_profile *p, FILE *f, double y0)
{
    double y = y0;
    int gid = 0;
    for (size_t i = 0; i < p->attribution->nstages && i < p->nstages; i++) {
        if (!stage_of(p, i)) continue;
        fprintf(f, "<text x=\"0\" y=\"%.1f\" class=\"h\">", y + 14);
        xml(f, p->stages[i].name);
        fputs(" — live bytes per call stack at the stage's peak (outermost frame at the top; click to zoom)</text>\n", f);
        g_y0 = y + 20;
        double h = icicle(f, p, i, gid++);
        y = g_y0 + h + 16;
    }
    return y;
}

static const char *g_style =
    "<style>text{font:11px monospace;fill:#000}text.h{font:bold 13px sans-serif}rect{stroke:#fff;stroke-width:0.5}"
    "</style>\n";

miser_status miser_profile_write_attribution_svg(const miser_profile *p, FILE *f)
{
    if (!p || !p->attribution) return miser_error_set(MISER_ERR_INVALID, "profile has no attribution (--attribute)");
    /* the height is known only after laying out: write the body to memory first */
    char *body = NULL;
    size_t blen = 0;
    FILE *m = open_memstream(&body, &blen);
    if (!m) return miser_error_set(MISER_ERR_NOMEM, "attribution SVG: out of memory");
    double h = svg_body(p, m, 0);
    fclose(m);
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
               "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\">\n%s",
            ICICLE_W, h + 10, ICICLE_W, h + 10, g_style);
    if (body) fwrite(body, 1, blen, f);
    free(body);
    fputs(g_icicle_script, f);
    fputs("</svg>\n", f);
    return ferror(f) ? miser_error_set(MISER_ERR_IO, "attribution SVG: write failed") : MISER_OK;
}

static miser_status svg_cb(void *f, void *ctx) { return miser_profile_write_attribution_svg(ctx, f); }

miser_status miser_profile_write_attribution_svg_file(const miser_profile *p, const char *path)
{
    if (!p || !p->attribution) return miser_error_set(MISER_ERR_INVALID, "profile has no attribution (--attribute)");
    return miser_file_write_atomic(path, svg_cb, (void *)p);
}

void attrib_write_html(const miser_profile *p, FILE *f)
{
    if (!p || !p->attribution) return;
    char *body = NULL;
    size_t blen = 0;
    FILE *m = open_memstream(&body, &blen);
    if (!m) return;
    double h = svg_body(p, m, 0);
    fclose(m);
    fprintf(f, "<section id=\"attribution\"><h2>Who allocated the peak</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
               "width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\">\n%s",
            ICICLE_W, h + 10, ICICLE_W, h + 10, g_style);
    if (body) fwrite(body, 1, blen, f);
    free(body);
    fputs(g_icicle_script, f);
    fputs("</svg></section>\n", f);
}

/* MB with 3 significant digits (a small figure never reads 0.00); sign: "+" before a positive growth. */
static const char *html_mib(char *b, size_t cap, int64_t bytes, int sign)
{
    size_t at = 0;
    if (sign && bytes > 0) b[at++] = '+';
    miser_chart_fmt_sig(b + at, cap - at, mib(bytes), 3);
    return b;
}

/* The top consumers at each stage's peak as an HTML table (the Markdown
 * report's content), for the HTML report writer (report.c). */
void attrib_write_html_top(const miser_profile *p, FILE *f)
{
    const miser_attribution *a = p ? p->attribution : NULL;
    if (!a) return;
    char b1[40], b2[40];
    fputs("<section id=\"top-consumers\"><h2>Top consumers at each stage's peak</h2>\n<p>Live heap and anonymous-mmap "
          "bytes per call stack at each process's live-bytes peak in the stage (file mappings listed as mmap-file). "
          "MB = MiB.</p>\n",
          f);
    for (size_t i = 0; i < a->nstages && i < p->nstages; i++) {
        const miser_attrib_stage *s = stage_of(p, i);
        if (!s) continue;
        fputs("<h3>", f);
        xml(f, p->stages[i].name);
        fprintf(f, ": peak %s MB, %s MB over its start</h3>\n<div class=\"scroll\"><table><tr><th>MB at peak</th>"
                   "<th>growth MB</th><th>blocks</th><th>kind</th><th>process</th><th>stack (innermost first)</th></tr>\n",
                html_mib(b1, sizeof b1, s->peak_bytes, 0), html_mib(b2, sizeof b2, s->peak_bytes - s->start_bytes, 1));
        for (size_t k = 0; k < s->peak.n && k < 10; k++) {
            const miser_attrib_entry *e = &s->peak.v[k];
            char st[600];
            stack_text(e, 6, st, sizeof st);
            fprintf(f, "<tr><td>%s</td><td>%s</td><td>%lld</td><td class=\"l\">%s</td><td class=\"l\">",
                    html_mib(b1, sizeof b1, e->bytes, 0), html_mib(b2, sizeof b2, e->bytes - e->start_bytes, 1),
                    (long long)e->count, attrib_kind_name(e->kind));
            xml(f, e->process);
            fprintf(f, " (%d)</td><td class=\"l\">", e->pid);
            xml(f, st);
            fputs("</td></tr>\n", f);
        }
        if (s->peak.other_bytes)
            fprintf(f, "<tr><td>%s</td><td></td><td>%lld</td><td></td><td></td><td class=\"l\">%zu other stacks</td></tr>\n",
                    html_mib(b1, sizeof b1, s->peak.other_bytes, 0), (long long)s->peak.other_count,
                    s->peak.other_stacks);
        fputs("</table></div>\n", f);
    }
    fputs("</section>\n", f);
}

/* ---- growth against a baseline ---- */

static int same_stack(const miser_attrib_entry *a, const miser_attrib_entry *b)
{
    /* processes differ between runs (pids): match by process name, kind and frames */
    if (a->kind != b->kind || a->nframes != b->nframes || strcmp(a->process, b->process)) return 0;
    /* by the symbol as the object names it: a baseline written before C++
     * names were demangled matches a demangled profile */
    for (size_t i = 0; i < a->nframes; i++) {
        const miser_attrib_frame *x = &a->frames[i], *y = &b->frames[i];
        if (strcmp(x->mangled ? x->mangled : x->function, y->mangled ? y->mangled : y->function)) return 0;
    }
    return 1;
}

typedef struct {
    const miser_attrib_entry *e;
    int64_t growth;
} grow;

static int cmp_grow(const void *a, const void *b)
{
    const grow *x = a, *y = b;
    return x->growth < y->growth ? 1 : x->growth > y->growth ? -1 : 0;
}

size_t miser_profile_write_attribution_growth(const miser_profile *base, const miser_profile *cur, size_t max, FILE *f)
{
    if (!base || !cur || !base->attribution || !cur->attribution || !max) return 0;
    size_t printed = 0;
    for (size_t i = 0; i < cur->nstages; i++) {
        const miser_attrib_stage *cs = stage_of(cur, i);
        if (!cs) continue;
        const miser_attrib_stage *bs = NULL;
        for (size_t j = 0; j < base->nstages && !bs; j++)
            if (!strcmp(base->stages[j].name, cur->stages[i].name)) bs = stage_of(base, j);
        if (!bs) continue;
        grow *g = miser_calloc(MISER_MEM_PROFILER, cs->peak.n + 1, sizeof *g);
        if (!g) return printed;
        size_t ng = 0;
        for (size_t k = 0; k < cs->peak.n; k++) {
            int64_t before = 0;
            for (size_t q = 0; q < bs->peak.n; q++)
                if (same_stack(&cs->peak.v[k], &bs->peak.v[q])) before += bs->peak.v[q].bytes;
            if (cs->peak.v[k].bytes > before) g[ng++] = (grow){&cs->peak.v[k], cs->peak.v[k].bytes - before};
        }
        qsort(g, ng, sizeof *g, cmp_grow);
        if (ng)
            fprintf(f, "stage %s: peak %.2f MB -> %.2f MB attributed; stacks that grew most:\n", cur->stages[i].name,
                    mib(bs->peak_bytes), mib(cs->peak_bytes));
        for (size_t k = 0; k < ng && k < max; k++) {
            char st[600];
            stack_text(g[k].e, 6, st, sizeof st);
            fprintf(f, "  %+9.2f MB (%.2f MB now)  %s %s  %s\n", mib(g[k].growth), mib(g[k].e->bytes),
                    attrib_kind_name(g[k].e->kind), g[k].e->process, st);
            printed++;
        }
        miser_free(g);
    }
    return printed;
}

/* Figures of the benchmark: per-run values from profiles, medians and
 * spread, greedy-token agreement and a description of the machine. */
#include "miser/bench.h"

#include <cjson/cJSON.h>
#include <errno.h>

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

miser_bench_stat miser_bench_stat_of(const double *v, size_t n)
{
    miser_bench_stat s = {NAN, NAN, NAN, NAN, 0};
    double tmp[MISER_BENCH_MAX_RUNS];
    size_t k = 0;
    for (size_t i = 0; i < n && k < MISER_BENCH_MAX_RUNS; i++)
        if (isfinite(v[i])) tmp[k++] = v[i];
    if (!k) return s;
    qsort(tmp, k, sizeof *tmp, cmp_double);
    s.n = k;
    s.min = tmp[0];
    s.max = tmp[k - 1];
    s.median = k % 2 ? tmp[k / 2] : 0.5 * (tmp[k / 2 - 1] + tmp[k / 2]);
    double mean = 0, var = 0;
    for (size_t i = 0; i < k; i++) mean += tmp[i];
    mean /= (double)k;
    for (size_t i = 0; i < k; i++) var += (tmp[i] - mean) * (tmp[i] - mean);
    /* Sample standard deviation; a single run has no spread to speak of. */
    s.cv = k > 1 && mean != 0 ? sqrt(var / (double)(k - 1)) / fabs(mean) : NAN;
    return s;
}

static const miser_bench_metric metrics[] = {
    {"model_loading_mb", "Model loading", "MB", 1, 0},
    {"compilation_mb", "Compilation", "MB", 1, 0},
    {"peak_ram_mb", "Peak RAM", "MB", 1, 0},
    {"peak_swap_mb", "Peak swap", "MB", 1, 0},
    {"total_growth_mb", "Total growth", "MB", 1, 0},
    {"first_inference_s", "First inference", "s", 1, 0},
    {"second_inference_s", "Second inference", "s", 1, 0},
    {"speedup", "Speedup", "x", 1, 0},
    {"throughput_tok_s", "Throughput (study: words)", "words/s", 1, 1},
    {"ttft_s", "Time to first token", "s", 0, 0},
    {"decode_tok_s", "Decode (excl. prompt)", "tok/s", 0, 1},
    {"second_decode_tok_s", "Second call tokens/s", "tok/s", 0, 1},
    {"compile_s", "Compile time", "s", 0, 0},
    {"setup_mb", "Setup rss(2)-rss(1)", "MB", 0, 0},
    {"peak_rss_mb", "Peak RSS (exact, absolute)", "MB", 0, 0},
    {"model_loading_anon_mb", "Loading anon", "MB", 0, 0},
    {"model_loading_file_mb", "Loading file-backed", "MB", 0, 0},
    {"compilation_anon_mb", "Compilation anon", "MB", 0, 0},
    {"total_growth_anon_mb", "Total growth anon", "MB", 0, 0},
    {"mem_per_tok_s", "Peak MB per decode tok/s", "MB/(tok/s)", 0, 0},
    {"compilation_mb_s", "Compilation MB/s", "MB/s", 0, 0},
};

const miser_bench_metric *miser_bench_metrics(size_t *n)
{
    *n = sizeof metrics / sizeof metrics[0];
    return metrics;
}

#define M(field)                                                                                                       \
    if (!strcmp(name, #field)) return r->m.field;

double miser_bench_run_value(const miser_bench_run *r, const char *name)
{
    M(model_loading_mb) M(compilation_mb) M(peak_ram_mb) M(peak_swap_mb) M(total_growth_mb) M(first_inference_s)
    M(second_inference_s) M(speedup) M(throughput_tok_s) M(ttft_s) M(decode_tok_s) M(second_decode_tok_s)
    M(peak_rss_mb) M(model_loading_anon_mb) M(model_loading_file_mb) M(compilation_anon_mb) M(total_growth_anon_mb)
    M(peak_growth_mb) M(compile_peak_mb) M(tokens)
    if (!strcmp(name, "compile_s")) return r->compile_s;
    if (!strcmp(name, "setup_mb")) return r->setup_mb;
    if (!strcmp(name, "mem_per_tok_s"))
        return r->m.decode_tok_s > 0 ? r->m.peak_rss_mb / r->m.decode_tok_s : NAN;
    if (!strcmp(name, "compilation_mb_s"))
        return r->m.first_inference_s > 0 ? r->m.compilation_mb / r->m.first_inference_s : NAN;
    return NAN;
}
#undef M

void miser_bench_run_from_profile(const miser_profile *p, miser_bench_run *out)
{
    miser_profile_metrics_compute(p, &out->m);
    out->compile_s = NAN;
    out->setup_mb = NAN;
    const miser_stage_record *s1 = miser_profile_find_stage(p, "1_MODEL_LOADED");
    const miser_stage_record *s2 = miser_profile_find_stage(p, "2_BEFORE_INFERENCE");
    if (s2) {
        const char *v = miser_stage_get(s2, "compile_s");
        if (v) out->compile_s = strtod(v, NULL);
    }
    if (s1 && s2 && s1->rss_kb >= 0 && s2->rss_kb >= 0) out->setup_mb = (double)(s2->rss_kb - s1->rss_kb) / 1024.0;
}

size_t miser_bench_check_agreement(miser_bench_report *r)
{
    size_t bad = 0;
    const miser_bench_row *ref = r->reference >= 0 && (size_t)r->reference < r->nrows ? &r->rows[r->reference] : NULL;
    for (size_t i = 0; i < r->nrows; i++) {
        miser_bench_row *w = &r->rows[i];
        w->agree = -1;
        w->agree_note[0] = 0;
        if (w->skipped || !w->has_ids) {
            snprintf(w->agree_note, sizeof w->agree_note, "not checked (no tokens)");
            continue;
        }
        if (!ref || !ref->has_ids) {
            snprintf(w->agree_note, sizeof w->agree_note, "not checked (no miser reference row)");
            continue;
        }
        if (w == ref) {
            w->agree = 1;
            snprintf(w->agree_note, sizeof w->agree_note, "reference");
            continue;
        }
        w->agree = 1;
        for (int k = 0; k < 2 && w->agree; k++) {
            size_t n = w->nids[k] < ref->nids[k] ? w->nids[k] : ref->nids[k];
            for (size_t j = 0; j < n; j++)
                if (w->ids[k][j] != ref->ids[k][j]) {
                    w->agree = 0;
                    snprintf(w->agree_note, sizeof w->agree_note,
                             "DIFFERS from %s: %s prompt, token %zu is %d (%s has %d)", ref->name,
                             k ? "second" : "first", j, w->ids[k][j], ref->name, ref->ids[k][j]);
                    break;
                }
            if (w->agree && w->nids[k] != ref->nids[k]) {
                w->agree = 0;
                snprintf(w->agree_note, sizeof w->agree_note, "DIFFERS from %s: %s prompt gave %zu tokens, %s %zu",
                         ref->name, k ? "second" : "first", w->nids[k], ref->name, ref->nids[k]);
            }
        }
        if (w->agree) snprintf(w->agree_note, sizeof w->agree_note, "same greedy tokens as %s", ref->name);
        else bad++;
    }
    return bad;
}

static void read_first_line_with(const char *path, const char *key, char *out, size_t cap)
{
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, strlen(key))) continue;
        char *c = strchr(line, ':');
        if (!c) continue;
        c++;
        while (*c == ' ' || *c == '\t') c++;
        c[strcspn(c, "\n")] = 0;
        snprintf(out, cap, "%s", c);
        break;
    }
    fclose(f);
}

void miser_bench_machine(char *buf, size_t cap)
{
    char cpu[256], mem[64];
    read_first_line_with("/proc/cpuinfo", "model name", cpu, sizeof cpu);
    read_first_line_with("/proc/meminfo", "MemTotal", mem, sizeof mem);
    struct utsname u;
    int have_u = uname(&u) == 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(buf, cap, "%s, %ld logical CPUs, %s RAM, %s %s %s", cpu[0] ? cpu : "unknown CPU", ncpu,
             mem[0] ? mem : "unknown", have_u ? u.sysname : "", have_u ? u.release : "", have_u ? u.machine : "");
}

miser_status miser_bench_load_result(const char *path, miser_bench_row *row)
{
    FILE *f = fopen(path, "rb");
    if (!f) return miser_error_set(MISER_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *root = cJSON_ParseWithLength(buf, n);
    if (!root) return miser_error_set(MISER_ERR_FORMAT, "%s: not JSON", path);
    miser_status st = MISER_OK;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (cJSON_IsString(v)) snprintf(row->version, sizeof row->version, "%s", v->valuestring);
    static const char *keys[2] = {"first", "second"};
    for (int k = 0; k < 2 && !st; k++) {
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(root, keys[k]);
        const cJSON *ids = g ? cJSON_GetObjectItemCaseSensitive(g, "ids") : NULL;
        if (!cJSON_IsArray(ids)) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: no \"%s\".\"ids\" array", path, keys[k]);
            break;
        }
        size_t j = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, ids)
        {
            if (!cJSON_IsNumber(e)) {
                st = miser_error_set(MISER_ERR_FORMAT, "%s: \"%s\".\"ids\" holds a non-number", path, keys[k]);
                break;
            }
            if (j < MISER_BENCH_MAX_IDS) row->ids[k][j++] = (int32_t)e->valuedouble;
        }
        row->nids[k] = j;
    }
    if (!st) row->has_ids = 1;
    cJSON_Delete(root);
    return st;
}

/* GET /metrics: the server's figures in Prometheus' text exposition format
 * (version 0.0.4). Memory comes from the accounting allocator (current,
 * peak and mapped bytes per category) and /proc/self/status (RssAnon,
 * RssFile); the rest is counted by the scheduler and the HTTP layer under
 * srv->mu. Names are listed in docs/serve.md. */
#include "serve/internal.h"
#include "miser/alloc.h"
#include "miser/profiler.h"

#include <string.h>

static void hist_init(miser_hist *h, const double *le, int n)
{
    memset(h, 0, sizeof *h);
    h->n = n;
    memcpy(h->le, le, sizeof(double) * (size_t)n);
}

void miser_metrics_init(miser_serve_metrics *m)
{
    static const double ttft[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
    static const double itl[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
    memset(m, 0, sizeof *m);
    hist_init(&m->ttft, ttft, (int)(sizeof ttft / sizeof *ttft));
    hist_init(&m->itl, itl, (int)(sizeof itl / sizeof *itl));
}

void miser_hist_add(miser_hist *h, double v)
{
    int i = 0;
    while (i < h->n && v > h->le[i]) i++;
    h->count[i]++;
    h->total++;
    h->sum += v;
}

static void hist_render(miser_sb *b, const char *name, const char *help, const miser_hist *h)
{
    miser_sb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t c = 0;
    for (int i = 0; i < h->n; i++) {
        c += h->count[i];
        miser_sb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->le[i], (unsigned long long)c);
    }
    miser_sb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name, (unsigned long long)h->total,
                    name, h->sum, name, (unsigned long long)h->total);
}

static void gauge(miser_sb *b, const char *name, const char *help, double v)
{
    miser_sb_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

static void counter(miser_sb *b, const char *name, const char *help, uint64_t v)
{
    miser_sb_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, (unsigned long long)v);
}

void miser_metrics_render(miser_server *s, miser_sb *b)
{
    static const char *outcomes[OUT_COUNT] = {"ok", "client_error", "unauthorized", "rejected", "cancelled", "timeout",
                                              "error"};
    miser_sb_puts(b, "# HELP miser_memory_bytes Bytes live now in miser's accounting allocator, by category.\n"
                     "# TYPE miser_memory_bytes gauge\n");
    for (int c = 0; c < MISER_MEM_COUNT; c++)
        miser_sb_printf(b, "miser_memory_bytes{category=\"%s\"} %llu\n", miser_mem_category_name((miser_mem_category)c),
                        (unsigned long long)miser_mem_get((miser_mem_category)c).current);
    miser_sb_puts(b, "# HELP miser_memory_peak_bytes Highest miser_memory_bytes since start, by category.\n"
                     "# TYPE miser_memory_peak_bytes gauge\n");
    for (int c = 0; c < MISER_MEM_COUNT; c++)
        miser_sb_printf(b, "miser_memory_peak_bytes{category=\"%s\"} %llu\n",
                        miser_mem_category_name((miser_mem_category)c),
                        (unsigned long long)miser_mem_get((miser_mem_category)c).peak);
    miser_sb_puts(b, "# HELP miser_memory_mapped_bytes Bytes mapped read-only from files (weights), by category.\n"
                     "# TYPE miser_memory_mapped_bytes gauge\n");
    for (int c = 0; c < MISER_MEM_COUNT; c++) {
        uint64_t m = miser_mem_get((miser_mem_category)c).mapped;
        if (m)
            miser_sb_printf(b, "miser_memory_mapped_bytes{category=\"%s\"} %llu\n",
                            miser_mem_category_name((miser_mem_category)c), (unsigned long long)m);
    }
    miser_proc_status ps;
    if (miser_proc_read_status(0, &ps) == MISER_OK) {
        if (ps.anon_kb >= 0) gauge(b, "miser_rss_anon_bytes", "RssAnon of the server process (/proc/self/status).", (double)ps.anon_kb * 1024);
        if (ps.file_kb >= 0) gauge(b, "miser_rss_file_bytes", "RssFile of the server process (/proc/self/status).", (double)ps.file_kb * 1024);
        gauge(b, "miser_rss_bytes", "VmRSS of the server process.", (double)ps.rss_kb * 1024);
    }

    pthread_mutex_lock(&s->mu);
    miser_serve_metrics m = s->m;
    int qlen = s->qlen, active = s->n_active, nseq = s->eng ? s->eng->n_seqs : 0;
    int64_t cap = s->eng ? s->eng->seq_capacity : 0, used = 0;
    /* positions held: read under mu from the jobs' own counts (the engine is
     * the scheduler's; a running job holds fed + generated - 1 positions) */
    for (int k = 0; s->slots && k < nseq; k++) {
        const miser_job *j = s->slots[k];
        if (j) used += j->fed + (j->n_gen > 0 ? j->n_gen - 1 : 0);
    }
    pthread_mutex_unlock(&s->mu);

    miser_sb_puts(b, "# HELP miser_requests_total Completion, chat, tokenize and detokenize requests finished, by outcome.\n"
                     "# TYPE miser_requests_total counter\n");
    for (int i = 0; i < OUT_COUNT; i++)
        miser_sb_printf(b, "miser_requests_total{outcome=\"%s\"} %llu\n", outcomes[i], (unsigned long long)m.requests[i]);
    gauge(b, "miser_queue_depth", "Requests waiting for a slot.", qlen);
    gauge(b, "miser_http_connections", "Open HTTP connections.", atomic_load(&s->connections));
    gauge(b, "miser_active_sequences", "Sequences in a slot (prefilling or decoding).", active);
    gauge(b, "miser_slots_total", "Sequence slots (--parallel).", nseq);
    gauge(b, "miser_kv_positions_used", "KV cache positions held by active sequences.", (double)used);
    gauge(b, "miser_kv_positions_total", "KV cache positions reserved (slots x context).", (double)cap * nseq);
    gauge(b, "miser_kv_bytes", "Bytes of KV cache allocated (the pool or the slots' caches, at start-up).",
          (double)miser_mem_get(MISER_MEM_KV).current);
    if (m.kv_blocks_total > 0) { /* the batched engine's paged pool */
        gauge(b, "miser_kv_blocks_used", "KV pool blocks held by sequences now.", (double)m.kv_blocks_used);
        gauge(b, "miser_kv_blocks_total", "KV pool blocks (fixed at start-up).", (double)m.kv_blocks_total);
    }
    counter(b, "miser_prompt_tokens_total", "Prompt tokens of accepted requests.", m.prompt_tokens);
    counter(b, "miser_generated_tokens_total", "Tokens generated.", m.generated_tokens);
    counter(b, "miser_steps_total", "Scheduler steps run.", m.steps);
    hist_render(b, "miser_time_to_first_token_seconds", "From a request's arrival to its first token.", &m.ttft);
    hist_render(b, "miser_inter_token_latency_seconds", "Between consecutive tokens of one request.", &m.itl);
    gauge(b, "miser_ready", "1 when the model is loaded and requests are taken.", atomic_load(&s->phase) == PHASE_READY);
    gauge(b, "miser_uptime_seconds", "Since the server started.", miser_now_s() - s->t_start);
}

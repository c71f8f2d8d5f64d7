/* miser-bench serve: the serving benchmark of issue 16, from outside. It
 * starts the real `miser serve` (a child process on 127.0.0.1, --port 0) on
 * a checkpoint (default: the GPT-2-medium-shaped synthetic one that
 * `miser-bench e2e` writes, ~/.cache/miser/bench/medium, seed 1) and, in
 * interleaved rounds (1 stream, then S streams, then the llama.cpp peer, per
 * round), drives streaming greedy completions (ignore_eos, N new tokens)
 * over plain sockets, timestamping every Server-Sent Event as it arrives.
 * Figures per precision, medians over rounds: decode tok/s with 1 and with
 * S streams decoding at once (and their ratio), aggregate tok/s, median
 * inter-token latency (and the ratio S / 1), time to first token, idle
 * RssAnon (/proc/PID/status) beside the KV pool (/metrics), request rates of
 * /health and /v1/models (Debian's `hey`), and llama.cpp generating S
 * sequences in one context on a GGUF written from the same checkpoint
 * (tools/peers/llamacpp_batch.js; skipped, saying so, when `make peers` has
 * not installed it). With --replicas LIST, N servers on one checkpoint and
 * each one's PSS from /proc/PID/smaps_rollup (the weights are one shared
 * page cache: PSS falls as weights / N + private memory).
 *
 * A benchmark, not a test: it reports figures and never fails because the
 * machine is slow. Exit 0 when it measured, 1 when a server or a request
 * failed, 2 for a bad command line, 3 when the server refused the model.
 * The client side is deliberately small: HTTP/1.0 requests with
 * `Connection: close`, so a response is its headers and then the raw body up
 * to EOF (no chunked framing to undo), and each SSE event is parsed with
 * cJSON. Ownership: every buffer here is malloc'd by the benchmark and freed
 * before returning; server children get PR_SET_PDEATHSIG so none outlives
 * the benchmark. */
#include "miser/core.h"
#include "miser/safetensors.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <arpa/inet.h>
#include <unistd.h>

#define SB_MAX_STREAMS 256
#define SB_MAX_PREC 4
#define SB_MAX_ROUNDS 15
#define SB_MAX_ENG 2

/* ---- small helpers ------------------------------------------------------ */

static double sb_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sb_sleep(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static int sb_cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* median of v[0..n) (sorts v); NAN when n == 0 */
static double sb_median(double *v, int n)
{
    if (n <= 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, sb_cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void sb_loadavg(double la[3])
{
    la[0] = la[1] = la[2] = NAN;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &la[0], &la[1], &la[2]) != 3) la[0] = la[1] = la[2] = NAN;
        fclose(f);
    }
}

/* a "Key:  N kB" field of a /proc file, in kB; -1 when absent */
static long sb_proc_kb(pid_t pid, const char *file, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    FILE *f = fopen(path, "r");
    long v = -1;
    const size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = atol(line + kl + 1);
            break;
        }
    if (f) fclose(f);
    return v;
}

/* ---- HTTP over loopback ------------------------------------------------- */

static int sb_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int sb_send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Send METHOD PATH (body: JSON or NULL) as HTTP/1.0 with Connection: close. */
static int sb_request(int port, const char *method, const char *path, const char *body)
{
    int fd = sb_connect(port);
    if (fd < 0) return -1;
    const size_t bl = body ? strlen(body) : 0;
    char head[512];
    int hl = snprintf(head, sizeof head,
                      "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n", method,
                      path, body ? "Content-Type: application/json\r\n" : "", bl);
    if (sb_send_all(fd, head, (size_t)hl) || (bl && sb_send_all(fd, body, bl))) {
        close(fd);
        return -1;
    }
    return fd;
}

typedef struct sb_buf {
    char *p;
    size_t n, cap;
} sb_buf;

static int sb_buf_grow(sb_buf *b, size_t extra)
{
    if (b->n + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + extra + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) return -1;
    b->p = q;
    b->cap = cap;
    return 0;
}

/* Read what is available into b (poll up to timeout_s); 1 data, 0 EOF, -1 error/timeout. */
static int sb_read_some(int fd, sb_buf *b, double timeout_s)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    int pr = poll(&pf, 1, (int)(timeout_s * 1000));
    if (pr <= 0) return -1;
    if (sb_buf_grow(b, 16384)) return -1;
    ssize_t r = recv(fd, b->p + b->n, b->cap - b->n - 1, 0);
    if (r < 0) return errno == EINTR ? 1 : -1;
    if (r == 0) return 0;
    b->n += (size_t)r;
    b->p[b->n] = 0;
    return 1;
}

/* A whole request: status code (-1 when nothing answered) and body (malloc'd, *body). */
static int sb_http(int port, const char *method, const char *path, const char *req_body, char **body,
                   double timeout_s)
{
    if (body) *body = NULL;
    int fd = sb_request(port, method, path, req_body);
    if (fd < 0) return -1;
    sb_buf b = {0};
    const double end = sb_now() + timeout_s;
    int r;
    while ((r = sb_read_some(fd, &b, end - sb_now() > 0 ? end - sb_now() : 0)) == 1) {
    }
    close(fd);
    int status = -1;
    if (r == 0 && b.n > 12 && !strncmp(b.p, "HTTP/1.", 7)) status = atoi(b.p + 9);
    char *h = b.p ? strstr(b.p, "\r\n\r\n") : NULL;
    if (body && h) *body = strdup(h + 4);
    free(b.p);
    return status;
}

/* The value of a Prometheus sample line "NAME VALUE" (NAME may carry labels); NAN when absent. */
static double sb_metric(const char *text, const char *name)
{
    const size_t L = strlen(name);
    for (const char *p = text; p && *p;) {
        if (!strncmp(p, name, L) && p[L] == ' ') return strtod(p + L + 1, NULL);
        p = strchr(p, '\n');
        if (p) p++;
    }
    return NAN;
}

/* ---- the server child --------------------------------------------------- */

typedef struct sb_server {
    pid_t pid;
    int port;
    char log[128]; /* its stderr */
} sb_server;

/* Start `miser serve ARGS --host 127.0.0.1 --port 0`, read the address line,
 * wait for /health 200. Returns 0, or the exit code the benchmark should give
 * (3 when the server refused the model, 2 for options it refused, else 1),
 * with one line on stderr. */
static int sb_server_start(sb_server *s, const char *miser, const char *const *args, int nargs, double timeout_s)
{
    static int serial;
    memset(s, 0, sizeof *s);
    snprintf(s->log, sizeof s->log, "/tmp/miser-bench-serve-%d-%d.log", (int)getpid(), serial++);
    const char *av[64];
    int n = 0;
    av[n++] = miser;
    av[n++] = "serve";
    for (int i = 0; i < nargs && n < 58; i++) av[n++] = args[i];
    av[n++] = "--host";
    av[n++] = "127.0.0.1";
    av[n++] = "--port";
    av[n++] = "0";
    av[n] = NULL;
    int fd[2];
    if (pipe(fd)) return 1;
    s->pid = fork();
    if (s->pid < 0) return 1;
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        if (!freopen(s->log, "w", stderr)) _exit(127);
        execv(miser, (char *const *)av);
        fprintf(stderr, "cannot run %s: %s\n", miser, strerror(errno));
        _exit(127);
    }
    close(fd[1]);
    char line[256] = {0};
    size_t nl = 0;
    const double end = sb_now() + timeout_s;
    while (sb_now() < end && nl < sizeof line - 1) {
        struct pollfd p = {.fd = fd[0], .events = POLLIN};
        if (poll(&p, 1, 200) <= 0) continue;
        ssize_t r = read(fd[0], line + nl, 1);
        if (r <= 0 || line[nl] == '\n') break;
        nl++;
    }
    close(fd[0]);
    line[nl] = 0;
    const char *colon = strrchr(line, ':');
    if (!strstr(line, "listening on http://127.0.0.1:") || !colon) {
        int st = 0, code = 1;
        sb_sleep(0.2);
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            if (WIFEXITED(st) && (WEXITSTATUS(st) == 2 || WEXITSTATUS(st) == 3)) code = WEXITSTATUS(st);
        } else {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
        }
        char last[512] = "";
        FILE *f = fopen(s->log, "r");
        while (f && fgets(last, sizeof last, f)) {
        }
        if (f) fclose(f);
        last[strcspn(last, "\n")] = 0;
        fprintf(stderr, "serve: miser serve did not start%s%s\n", last[0] ? ": " : "", last);
        unlink(s->log);
        s->pid = 0;
        return code;
    }
    s->port = atoi(colon + 1);
    while (sb_now() < end) {
        if (sb_http(s->port, "GET", "/health", NULL, NULL, 5) == 200) return 0;
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) break;
        sb_sleep(0.05);
    }
    fprintf(stderr, "serve: miser serve (pid %d) never answered /health with 200 (its log: %s)\n", (int)s->pid, s->log);
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    return 1;
}

/* SIGTERM, wait up to 30 s (then SIGKILL); the exit status, -1 if killed. */
static int sb_server_stop(sb_server *s, int keep_log)
{
    if (s->pid <= 0) return -1;
    kill(s->pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 3000; i++) {
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            if (!keep_log) unlink(s->log);
            s->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        sb_sleep(0.01);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    return -1;
}

/* ---- streams -------------------------------------------------------------- */

/* One stream's record: when it was sent, when each token event arrived (s,
 * on the same clock), the completion tokens its usage reported. */
typedef struct sb_rec {
    double t_send;
    double *times;
    int n, cap;
    int tokens; /* usage.completion_tokens; 0 when absent */
    int ok;
    char err[160];
} sb_rec;

typedef struct sb_job {
    int port;
    const char *body;
    pthread_barrier_t *go;
    double timeout_s;
    sb_rec rec;
} sb_job;

static void sb_rec_add(sb_rec *r, double t)
{
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 256;
        double *q = realloc(r->times, (size_t)cap * sizeof *q);
        if (!q) return;
        r->times = q;
        r->cap = cap;
    }
    r->times[r->n++] = t;
}

/* Parse complete events in b from *pos; sets *done at [DONE]. */
static void sb_events(sb_buf *b, size_t *pos, sb_rec *r, double t, int *done)
{
    for (;;) {
        char *start = b->p + *pos, *end = strstr(start, "\n\n");
        if (!end) return;
        *end = 0;
        *pos = (size_t)(end - b->p) + 2;
        if (strncmp(start, "data: ", 6)) continue;
        if (!strcmp(start + 6, "[DONE]")) {
            *done = 1;
            continue;
        }
        cJSON *j = cJSON_Parse(start + 6);
        if (!j) {
            snprintf(r->err, sizeof r->err, "an event that is not JSON");
            continue;
        }
        const cJSON *e = cJSON_GetObjectItem(j, "error");
        if (e) snprintf(r->err, sizeof r->err, "error event: %.120s", cJSON_GetStringValue(cJSON_GetObjectItem(e, "message")));
        const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(c, "text"));
        if (text && *text) sb_rec_add(r, t);
        const cJSON *u = cJSON_GetObjectItem(j, "usage");
        if (cJSON_IsObject(u)) r->tokens = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(u, "completion_tokens"));
        cJSON_Delete(j);
    }
}

static void *sb_stream_thread(void *arg)
{
    sb_job *J = arg;
    sb_rec *r = &J->rec;
    pthread_barrier_wait(J->go);
    r->t_send = sb_now();
    int fd = sb_request(J->port, "POST", "/v1/completions", J->body);
    if (fd < 0) {
        snprintf(r->err, sizeof r->err, "cannot connect or send: %s", strerror(errno));
        return NULL;
    }
    sb_buf b = {0};
    size_t pos = 0;
    int done = 0, status = 0, rr;
    const double end = r->t_send + J->timeout_s;
    while ((rr = sb_read_some(fd, &b, end - sb_now() > 0 ? end - sb_now() : 0)) == 1) {
        const double t = sb_now();
        if (!status) {
            char *h = strstr(b.p, "\r\n\r\n");
            if (!h) continue;
            status = b.n > 12 ? atoi(b.p + 9) : -1;
            if (status != 200) break;
            pos = (size_t)(h + 4 - b.p);
        }
        sb_events(&b, &pos, r, t, &done);
    }
    close(fd);
    if (!r->err[0]) {
        if (status != 200) snprintf(r->err, sizeof r->err, "HTTP %d: %.120s", status, b.p ? b.p : "");
        else if (!done) snprintf(r->err, sizeof r->err, rr < 0 ? "timed out" : "no data: [DONE]");
        else r->ok = 1;
    }
    if (r->err[0]) r->err[strcspn(r->err, "\r\n")] = ' ';
    free(b.p);
    return NULL;
}

/* Figures of one run of k streams (the same for miser and the peer). */
typedef struct sb_stats {
    double decode_tok_s; /* steady state: tokens arriving while all k streams decode, per second */
    double agg_tok_s;    /* all completion tokens over first send .. last token */
    double itl_ms;       /* median gap between consecutive token events, all streams */
    double ttft_ms;      /* median time to first token over streams */
    int tokens, failed;
} sb_stats;

static void sb_stats_compute(sb_rec *r, int k, sb_stats *st)
{
    memset(st, 0, sizeof *st);
    double w0 = -INFINITY, w1 = INFINITY, t0 = INFINITY, tl = -INFINITY;
    int ngaps = 0;
    for (int i = 0; i < k; i++) {
        if (!r[i].ok || r[i].n < 2) {
            st->failed++;
            continue;
        }
        if (r[i].times[0] > w0) w0 = r[i].times[0];
        if (r[i].times[r[i].n - 1] < w1) w1 = r[i].times[r[i].n - 1];
        if (r[i].t_send < t0) t0 = r[i].t_send;
        if (r[i].times[r[i].n - 1] > tl) tl = r[i].times[r[i].n - 1];
        st->tokens += r[i].tokens > 0 ? r[i].tokens : r[i].n;
        ngaps += r[i].n - 1;
    }
    if (st->failed == k) {
        st->decode_tok_s = st->agg_tok_s = st->itl_ms = st->ttft_ms = NAN;
        return;
    }
    double *gaps = malloc((size_t)(ngaps + 1) * sizeof *gaps), *ttft = malloc((size_t)k * sizeof *ttft);
    int g = 0, nt = 0;
    double in_window = 0;
    for (int i = 0; i < k; i++) {
        if (!r[i].ok || r[i].n < 2) continue;
        /* an event can carry more than one token (text held back until it is
         * valid UTF-8): weigh events by the stream's tokens per event */
        const double per = r[i].tokens > r[i].n ? (double)r[i].tokens / r[i].n : 1.0;
        for (int e = 1; e < r[i].n; e++) {
            gaps[g++] = (r[i].times[e] - r[i].times[e - 1]) * 1e3;
            if (r[i].times[e] > w0 && r[i].times[e] <= w1) in_window += per;
        }
        ttft[nt++] = (r[i].times[0] - r[i].t_send) * 1e3;
    }
    st->itl_ms = sb_median(gaps, g);
    st->ttft_ms = sb_median(ttft, nt);
    st->agg_tok_s = tl > t0 ? st->tokens / (tl - t0) : NAN;
    st->decode_tok_s = w1 > w0 && in_window > 0 ? in_window / (w1 - w0) : st->agg_tok_s;
    free(gaps);
    free(ttft);
}

/* Run k streams at once, one request body each; fills st. 0, or -1 with a
 * message on stderr when a stream failed. */
static int sb_run_streams(int port, int k, char **bodies, double timeout_s, sb_stats *st)
{
    sb_job *jobs = calloc((size_t)k, sizeof *jobs);
    pthread_t *th = calloc((size_t)k, sizeof *th);
    sb_rec *recs = calloc((size_t)k, sizeof *recs);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)k);
    int started = 0, err = 0;
    for (int i = 0; i < k; i++) {
        jobs[i] = (sb_job){.port = port, .body = bodies[i], .go = &go, .timeout_s = timeout_s};
        /* default stacks: libmiser's static TLS (~260 KB) must fit in one */
        if ((err = pthread_create(&th[i], NULL, sb_stream_thread, &jobs[i])) == 0) started++;
    }
    int rc = 0;
    if (started != k) { /* cannot happen short of resource exhaustion; the barrier would wait forever */
        fprintf(stderr, "serve: could not start %d client threads: %s\n", k, strerror(err));
        abort();
    }
    for (int i = 0; i < k; i++) {
        pthread_join(th[i], NULL);
        recs[i] = jobs[i].rec;
        if (!recs[i].ok && !rc) {
            fprintf(stderr, "serve: stream %d of %d failed: %s\n", i + 1, k, recs[i].err);
            rc = -1;
        }
    }
    pthread_barrier_destroy(&go);
    sb_stats_compute(recs, k, st);
    for (int i = 0; i < k; i++) free(recs[i].times);
    free(recs);
    free(jobs);
    free(th);
    return rc;
}

/* ---- the llama.cpp peer --------------------------------------------------- */

/* Read one run ({"streams": K, "recs": [{"t_send", "times": [...], "tokens"}]}) into st. */
static int sb_peer_run(const cJSON *run, sb_stats *st)
{
    const cJSON *recs = cJSON_GetObjectItem(run, "recs");
    const int k = cJSON_GetArraySize(recs);
    if (k < 1) return -1;
    sb_rec *r = calloc((size_t)k, sizeof *r);
    for (int i = 0; i < k; i++) {
        const cJSON *x = cJSON_GetArrayItem(recs, i), *t = cJSON_GetObjectItem(x, "times");
        r[i].t_send = cJSON_GetNumberValue(cJSON_GetObjectItem(x, "t_send"));
        r[i].tokens = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(x, "tokens"));
        const int n = cJSON_GetArraySize(t);
        r[i].times = malloc((size_t)(n + 1) * sizeof(double));
        for (int e = 0; e < n; e++) r[i].times[e] = cJSON_GetNumberValue(cJSON_GetArrayItem(t, e));
        r[i].n = r[i].cap = n;
        r[i].ok = n > 0;
    }
    sb_stats_compute(r, k, st);
    for (int i = 0; i < k; i++) free(r[i].times);
    free(r);
    return 0;
}

#define SB_PEER_SCRIPT MISER_SOURCE_DIR "/tools/peers/llamacpp_batch.js"
#define SB_PEER_PKG MISER_SOURCE_DIR "/tools/peers/node_modules/node-llama-cpp"

/* One peer round: 1 stream and k streams in one node process. 0 ok, 3 not
 * installed (a skip), 1 failed. */
static int sb_peer_round(const char *model, const char *prec, int threads, int k, int tokens, const char *ids_arg,
                         sb_stats *one, sb_stats *many, char *version, size_t vlen)
{
    char out[] = "/tmp/miser-bench-serve-peer-XXXXXX";
    int fd = mkstemp(out);
    if (fd < 0) return 1;
    close(fd);
    char cmd[8192 + 4096];
    snprintf(cmd, sizeof cmd,
             "node %s --model '%s' --precision %s --threads %d --streams 1,%d --max-new-tokens %d --prompt-ids '%s' "
             "--json-out %s >&2",
             SB_PEER_SCRIPT, model, prec, threads, k, tokens, ids_arg, out);
    int st = system(cmd);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    if (rc != 0) {
        unlink(out);
        return rc == 3 || rc == 4 ? 3 : 1;
    }
    FILE *f = fopen(out, "rb");
    char *text = NULL;
    size_t n = 0;
    if (f) {
        fseek(f, 0, SEEK_END);
        long L = ftell(f);
        fseek(f, 0, SEEK_SET);
        text = malloc((size_t)L + 1);
        n = fread(text, 1, (size_t)L, f);
        text[n] = 0;
        fclose(f);
    }
    unlink(out);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *runs = cJSON_GetObjectItem(j, "runs");
    rc = cJSON_GetArraySize(runs) == 2 && !sb_peer_run(cJSON_GetArrayItem(runs, 0), one) &&
                 !sb_peer_run(cJSON_GetArrayItem(runs, 1), many)
             ? 0
             : 1;
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(j, "version"));
    if (v) snprintf(version, vlen, "%s", v);
    if (rc) fprintf(stderr, "serve: the llama.cpp peer's result is not what was asked for\n");
    cJSON_Delete(j);
    return rc;
}

/* ---- request rates (hey) -------------------------------------------------- */

typedef struct sb_rate {
    double rps, p50_ms, p99_ms;
    long ok, total;
} sb_rate;

static int sb_hey(int port, const char *path, double seconds, int conc, sb_rate *r)
{
    memset(r, 0, sizeof *r);
    r->rps = r->p50_ms = r->p99_ms = NAN;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "hey -z %gs -c %d http://127.0.0.1:%d%s 2>&1", seconds, conc, port, path);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[512];
    while (fgets(line, sizeof line, p)) {
        const char *s = line + strspn(line, " \t");
        double v;
        long c;
        if (sscanf(s, "Requests/sec: %lf", &v) == 1) r->rps = v;
        else if (sscanf(s, "50%% in %lf secs", &v) == 1) r->p50_ms = v * 1e3;
        else if (sscanf(s, "99%% in %lf secs", &v) == 1) r->p99_ms = v * 1e3;
        else if (sscanf(s, "[200] %ld responses", &c) == 1) r->ok += c;
        else if (s[0] == '[' && sscanf(s, "[%*d] %ld responses", &c) == 1) r->total += c;
    }
    r->total += r->ok;
    int st = pclose(p);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 && !isnan(r->rps) ? 0 : -1;
}

/* ---- replicas --------------------------------------------------------------- */

static int sb_replicas(const char *miser, const char *model, const char *prec, const char *list, int tokens,
                       cJSON *jout)
{
    printf("\nreplicas: N `miser serve` processes on %s (%s, --parallel 1 --threads 1), each warmed by one "
           "%d-token request; PSS per process from /proc/PID/smaps_rollup\n",
           model, prec, tokens);
    printf("| N | PSS / process MB | Pss_File MB | Pss_Anon MB | Rss MB | RssAnon MB | weights / N MB | total PSS MB |\n"
           "|---|---|---|---|---|---|---|---|\n");
    cJSON *arr = cJSON_AddArrayToObject(jout, "replicas");
    char l[256];
    snprintf(l, sizeof l, "%s", list);
    for (char *sv = NULL, *tn = strtok_r(l, ",", &sv); tn; tn = strtok_r(NULL, ",", &sv)) {
        const int N = atoi(tn);
        sb_server *s = calloc((size_t)N, sizeof *s);
        char ctx[16];
        snprintf(ctx, sizeof ctx, "%d", tokens + 64);
        const char *args[] = {"--model", model, "--parallel", "1", "--threads", "1", "--ctx", ctx, "--precision", prec};
        int rc = 0;
        for (int i = 0; i < N && !rc; i++) rc = sb_server_start(&s[i], miser, args, 10, 900);
        double weights = NAN;
        for (int i = 0; i < N && !rc; i++) {
            char body[256];
            snprintf(body, sizeof body, "{\"prompt\":\"Replica %d\",\"max_tokens\":%d,\"temperature\":0,\"ignore_eos\":true}",
                     i, tokens);
            if (sb_http(s[i].port, "POST", "/v1/completions", body, NULL, 600) != 200) {
                fprintf(stderr, "serve: replica %d: the warm-up request failed\n", i + 1);
                rc = 1;
            }
            char *m = NULL;
            if (!rc && i == 0 && sb_http(s[i].port, "GET", "/metrics", NULL, &m, 10) == 200)
                weights = sb_metric(m, "miser_memory_mapped_bytes{category=\"weights\"}");
            free(m);
        }
        if (!rc) {
            double pss = 0, pf = 0, pa = 0, rss = 0, ra = 0;
            for (int i = 0; i < N; i++) {
                pss += sb_proc_kb(s[i].pid, "smaps_rollup", "Pss") / 1024.0;
                pf += sb_proc_kb(s[i].pid, "smaps_rollup", "Pss_File") / 1024.0;
                pa += sb_proc_kb(s[i].pid, "smaps_rollup", "Pss_Anon") / 1024.0;
                rss += sb_proc_kb(s[i].pid, "smaps_rollup", "Rss") / 1024.0;
                ra += sb_proc_kb(s[i].pid, "status", "RssAnon") / 1024.0;
            }
            const double wmb = weights / 1048576.0;
            printf("| %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", N, pss / N, pf / N, pa / N, rss / N,
                   ra / N, wmb / N, pss);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "replicas", N);
            cJSON_AddNumberToObject(o, "pss_mb_per_process", pss / N);
            cJSON_AddNumberToObject(o, "pss_file_mb_per_process", pf / N);
            cJSON_AddNumberToObject(o, "pss_anon_mb_per_process", pa / N);
            cJSON_AddNumberToObject(o, "rss_mb_per_process", rss / N);
            cJSON_AddNumberToObject(o, "rss_anon_mb_per_process", ra / N);
            cJSON_AddNumberToObject(o, "weights_mb_over_n", wmb / N);
            cJSON_AddNumberToObject(o, "total_pss_mb", pss);
            cJSON_AddItemToArray(arr, o);
            fflush(stdout);
        }
        for (int i = 0; i < N; i++) sb_server_stop(&s[i], 0);
        free(s);
        if (rc) return rc;
    }
    return 0;
}

/* ---- the command ------------------------------------------------------------ */

typedef struct sb_prec_result {
    char name[16];   /* precision */
    char engine[16]; /* --engine, "" for the server's default */
    int rounds_done;
    sb_stats one[SB_MAX_ROUNDS], many[SB_MAX_ROUNDS], pone[SB_MAX_ROUNDS], pmany[SB_MAX_ROUNDS];
    int peer_rounds;
    double idle_anon_mb, kv_mb, after_anon_mb, kv_blocks_total;
    sb_rate rate_health, rate_models;
    int rates_done, started;
} sb_prec_result;

static void sb_usage(FILE *f)
{
    fprintf(f,
            "usage: miser-bench serve [--model DIR] [--precision LIST] [--threads N] [--tokens N]\n"
            "                         [--streams N] [--rounds N] [--no-peer] [--rate-seconds S]\n"
            "                         [--engine LIST] [--kv f16|f32] [--replicas LIST] [--json FILE]\n"
            "                         [--miser PATH]\n\n"
            "The serving benchmark of issue 16: starts `miser serve` (127.0.0.1, a free port) on the model and,\n"
            "in interleaved rounds (1 stream, S streams, then llama.cpp with 1 and S sequences in one context),\n"
            "sends streaming greedy completions (ignore_eos, N new tokens, distinct prompts given as token ids)\n"
            "and times every event. Prints medians over rounds and the issue's targets:\n"
            "  decode tok/s       tokens arriving while all S streams decode, per second (1 stream: (N-1)/decode time)\n"
            "  aggregate tok/s    all completion tokens / (first request sent .. last token)\n"
            "  ITL                median gap between consecutive tokens of one stream, all streams\n"
            "  TTFT               median time from sending a request to its first token\n"
            "  targets            decode S/1 >= 8x at f32, >= 6x at q8_0; ITL S/1 <= 2.5x; decode at S >= 1.2x\n"
            "                     llama.cpp's at S; idle RssAnon <= 32 MB + the KV pool\n"
            "Also idle RssAnon before and after the rounds (/proc/PID/status) beside the KV pool (/metrics),\n"
            "and request rates of GET /health and GET /v1/models with `hey` (16 connections).\n\n"
            "  --model DIR         checkpoint (default: ~/.cache/miser/bench/medium, a GPT-2-medium-shaped\n"
            "                      synthetic one, seed 1, written there if missing, ~1.4 GB; shared with `e2e`)\n"
            "  --precision LIST    precisions to serve, as `miser serve --precision` (default f32,q8_0)\n"
            "  --threads N         the server's --threads and llama.cpp's (default 2)\n"
            "  --tokens N          new tokens per request (default 128)\n"
            "  --streams N         concurrent streams of the batched runs, 2..256 (default 16)\n"
            "  --rounds N          interleaved rounds, 1..15 (default 3); 0: no stream runs (rates, replicas)\n"
            "  --no-peer           leave llama.cpp out (it is skipped, saying so, when `make peers` has not\n"
            "                      installed node-llama-cpp)\n"
            "  --engine LIST       miser serve --engine per server, e.g. batch,slots: one server each, all up at\n"
            "                      once, interleaved within every round (default: the server's default engine)\n"
            "  --kv f16|f32        the servers' KV cache dtype (miser serve --kv-f16 / --kv-f32; default: the\n"
            "                      architecture's, f32 for GPT-2; llama.cpp's peer keeps its f16)\n"
            "  --rate-seconds S    seconds of `hey` per route (default 3; 0: no rates)\n"
            "  --replicas LIST     also N servers (e.g. 1,2,4) on the model, --parallel 1 --threads 1, each warmed\n"
            "                      by one request: PSS per process (weights / N + private) from smaps_rollup\n"
            "  --json FILE         write every figure as JSON (rounds, medians, ratios, load averages)\n"
            "  --miser PATH        the miser binary (default: this build's, %s/miser)\n\n"
            "exit codes: 0 measured, 1 a server or request failed, 2 bad command line, 3 the model was refused\n",
            MISER_BUILD_DIR);
}

static int sb_bad(const char *opt, const char *val, const char *want)
{
    fprintf(stderr, "serve: %s: expected %s, got '%s'\n", opt, want, val ? val : "(nothing)");
    return 2;
}

static int sb_int(const char *v, int lo, int hi, int *out)
{
    if (!v || !*v || strspn(v, "0123456789") != strlen(v) || strlen(v) > 6) return -1;
    const int x = atoi(v);
    if (x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

static double sb_med_field(const sb_stats *s, int n, size_t off)
{
    double v[SB_MAX_ROUNDS];
    int k = 0;
    for (int i = 0; i < n; i++) {
        const double x = *(const double *)((const char *)&s[i] + off);
        if (!isnan(x)) v[k++] = x;
    }
    return sb_median(v, k);
}

#define MED(arr, n, field) sb_med_field(arr, n, offsetof(sb_stats, field))

static cJSON *sb_stats_json(const sb_stats *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "decode_tok_s", s->decode_tok_s);
    cJSON_AddNumberToObject(o, "aggregate_tok_s", s->agg_tok_s);
    cJSON_AddNumberToObject(o, "itl_median_ms", s->itl_ms);
    cJSON_AddNumberToObject(o, "ttft_median_ms", s->ttft_ms);
    cJSON_AddNumberToObject(o, "tokens", s->tokens);
    cJSON_AddNumberToObject(o, "failed_streams", s->failed);
    return o;
}

static cJSON *sb_med_json(const sb_stats *s, int n)
{
    sb_stats m = {.decode_tok_s = MED(s, n, decode_tok_s), .agg_tok_s = MED(s, n, agg_tok_s),
                  .itl_ms = MED(s, n, itl_ms), .ttft_ms = MED(s, n, ttft_ms)};
    cJSON *o = sb_stats_json(&m);
    cJSON_DeleteItemFromObject(o, "tokens");
    cJSON_DeleteItemFromObject(o, "failed_streams");
    return o;
}

/* "x.xx× (>= 8×: met)" into out */
static const char *sb_target(char *out, size_t n, double x, int ge, double target, int *met, int *missed)
{
    if (isnan(x)) {
        snprintf(out, n, "n/a");
        return out;
    }
    const int ok = ge ? x >= target : x <= target;
    snprintf(out, n, "%.2fx (target %s %.2gx: %s)", x, ge ? ">=" : "<=", target, ok ? "met" : "missed");
    if (ok) (*met)++;
    else (*missed)++;
    return out;
}

int miser_bench_serve(int argc, char **argv)
{
    char model[4096] = "", precs[128] = "f32,q8_0", replicas[128] = "", engines[64] = "";
    const char *json_path = NULL, *miser = MISER_BUILD_DIR "/miser";
    int threads = 2, tokens = 128, streams = 16, rounds = 3, peer = 1;
    const char *kv = NULL; /* --kv: "f16" or "f32" for every server (miser serve --kv-f16 / --kv-f32), or the default */
    double rate_s = 3;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            sb_usage(stdout);
            return 0;
        } else if (!strcmp(o, "--no-peer")) peer = 0;
        else if (!strcmp(o, "--model")) {
            if (!v || !*v) return sb_bad(o, v, "a checkpoint directory");
            snprintf(model, sizeof model, "%s", v), i++;
        } else if (!strcmp(o, "--precision")) {
            if (!v || !*v || strlen(v) >= sizeof precs || strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789_,") != strlen(v))
                return sb_bad(o, v, "precisions separated by commas (f32, f16, bf16, q8_0)");
            snprintf(precs, sizeof precs, "%s", v), i++;
        } else if (!strcmp(o, "--threads")) {
            if (sb_int(v, 1, 256, &threads)) return sb_bad(o, v, "a thread count 1..256");
            i++;
        } else if (!strcmp(o, "--tokens")) {
            if (sb_int(v, 2, 4096, &tokens)) return sb_bad(o, v, "new tokens per request, 2..4096");
            i++;
        } else if (!strcmp(o, "--streams")) {
            if (sb_int(v, 2, SB_MAX_STREAMS, &streams)) return sb_bad(o, v, "concurrent streams, 2..256");
            i++;
        } else if (!strcmp(o, "--rounds")) {
            if (sb_int(v, 0, SB_MAX_ROUNDS, &rounds)) return sb_bad(o, v, "rounds, 0..15");
            i++;
        } else if (!strcmp(o, "--engine")) {
            if (!v || !*v || strlen(v) >= sizeof engines || strspn(v, "abcdefghijklmnopqrstuvwxyz,") != strlen(v))
                return sb_bad(o, v, "engines separated by commas (batch, slots)");
            snprintf(engines, sizeof engines, "%s", v), i++;
        } else if (!strcmp(o, "--kv")) {
            if (!v || (strcmp(v, "f16") && strcmp(v, "f32"))) return sb_bad(o, v, "f16 or f32");
            kv = v, i++;
        } else if (!strcmp(o, "--rate-seconds")) {
            int x;
            if (sb_int(v, 0, 600, &x)) return sb_bad(o, v, "seconds, 0..600");
            rate_s = x, i++;
        } else if (!strcmp(o, "--replicas")) {
            int ok = v && *v && strlen(v) < sizeof replicas && strspn(v, "0123456789,") == strlen(v);
            char l[128];
            if (ok) snprintf(l, sizeof l, "%s", v);
            for (char *sv = NULL, *tn = ok ? strtok_r(l, ",", &sv) : NULL; tn; tn = strtok_r(NULL, ",", &sv))
                ok = ok && atoi(tn) >= 1 && atoi(tn) <= 16;
            if (!ok) return sb_bad(o, v, "replica counts 1..16 separated by commas, e.g. 1,2,4");
            snprintf(replicas, sizeof replicas, "%s", v), i++;
        } else if (!strcmp(o, "--json")) {
            if (!v || !*v) return sb_bad(o, v, "an output file");
            json_path = v, i++;
        } else if (!strcmp(o, "--miser")) {
            if (!v || access(v, X_OK)) return sb_bad(o, v, "an executable miser binary");
            miser = v, i++;
        } else {
            fprintf(stderr, "serve: unknown or incomplete option '%s' (see miser-bench serve --help)\n", o);
            return 2;
        }
    }
    if (access(miser, X_OK)) {
        fprintf(stderr, "serve: %s: not built (make BUILD=... miser), or give --miser PATH\n", miser);
        return 1;
    }
    if (json_path) { /* refuse an unwritable output before any long work (nothing is created yet) */
        char d[4096];
        snprintf(d, sizeof d, "%s", json_path);
        char *slash = strrchr(d, '/');
        if (slash) slash == d ? (void)(d[1] = 0) : (void)(*slash = 0);
        struct stat sb;
        if (!slash) snprintf(d, sizeof d, ".");
        if (stat(d, &sb) || !S_ISDIR(sb.st_mode) || access(d, W_OK | X_OK) ||
            (!stat(json_path, &sb) && (S_ISDIR(sb.st_mode) || access(json_path, W_OK)))) {
            fprintf(stderr, "serve: cannot write --json %s: %s\n", json_path,
                    errno ? strerror(errno) : "not a writable file");
            return 2;
        }
    }
    char plist[SB_MAX_PREC][16];
    int nprec = 0;
    {
        char l[128];
        snprintf(l, sizeof l, "%s", precs);
        for (char *sv = NULL, *tn = strtok_r(l, ",", &sv); tn; tn = strtok_r(NULL, ",", &sv)) {
            if (nprec == SB_MAX_PREC || (strcmp(tn, "f32") && strcmp(tn, "f16") && strcmp(tn, "bf16") && strcmp(tn, "q8_0")))
                return sb_bad("--precision", precs, "at most 4 of f32, f16, bf16, q8_0 separated by commas");
            snprintf(plist[nprec++], sizeof plist[0], "%s", tn);
        }
        if (!nprec) return sb_bad("--precision", precs, "at least one precision");
    }
    char elist[SB_MAX_ENG][16] = {""};
    int neng = 1;
    if (engines[0]) {
        char l[64];
        snprintf(l, sizeof l, "%s", engines);
        neng = 0;
        for (char *sv = NULL, *tn = strtok_r(l, ",", &sv); tn; tn = strtok_r(NULL, ",", &sv)) {
            if (neng == SB_MAX_ENG || (strcmp(tn, "batch") && strcmp(tn, "slots")))
                return sb_bad("--engine", engines, "batch, slots or batch,slots");
            snprintf(elist[neng++], sizeof elist[0], "%s", tn);
        }
        if (!neng) return sb_bad("--engine", engines, "at least one engine");
    }
    if (!model[0]) {
        const char *home = getenv("HOME");
        snprintf(model, sizeof model, "%s/.cache/miser/bench/medium", home ? home : ".");
        char st[4200];
        snprintf(st, sizeof st, "%.4000s/config.json", model);
        struct stat sb;
        if (stat(st, &sb)) {
            fprintf(stderr, "serve: creating the GPT-2-medium-shaped checkpoint in %s (~1.4 GB, once)\n", model);
            char parent[4096];
            snprintf(parent, sizeof parent, "%s", model);
            for (char *s = parent + 1; (s = strchr(s, '/')); s++) {
                *s = 0;
                mkdir(parent, 0755);
                *s = '/';
            }
            miser_gpt2_config c;
            miser_synth_options so = {.dtype = MISER_DTYPE_F32, .seed = 1}; /* as miser-bench e2e */
            if (miser_gpt2_preset("medium", &c) || miser_synth_gpt2(model, &c, &so)) {
                fprintf(stderr, "serve: %s\n", miser_error_message());
                return 1;
            }
        }
    }
    int have_peer = peer && access(SB_PEER_PKG, F_OK) == 0 && access(SB_PEER_SCRIPT, F_OK) == 0;
    double la0[3], la1[3];
    sb_loadavg(la0);
    printf("miser-bench serve: %s, --threads %d, %d new tokens per request (greedy, ignore_eos), 1 and %d streams, "
           "%d round%s, KV cache %s; load average %.2f %.2f %.2f\n",
           model, threads, tokens, streams, rounds, rounds == 1 ? "" : "s",
           kv ? kv : "the architecture's default", la0[0], la0[1], la0[2]);
    if (peer && !have_peer)
        printf("llama.cpp peer: skipped (node-llama-cpp is not installed in tools/peers; install it with `make peers`)\n");
    fflush(stdout);

    cJSON *jout = cJSON_CreateObject();
    cJSON_AddStringToObject(jout, "model", model);
    cJSON_AddNumberToObject(jout, "threads", threads);
    cJSON_AddNumberToObject(jout, "tokens", tokens);
    cJSON_AddNumberToObject(jout, "streams", streams);
    cJSON_AddNumberToObject(jout, "rounds", rounds);
    cJSON *jprec = cJSON_AddArrayToObject(jout, "precisions");
    const int nres = nprec * neng;
    sb_prec_result *res = calloc((size_t)nres, sizeof *res);
    char peer_version[160] = "";
    int rc = 0, peer_skipped = !have_peer;
    char ctx[16];
    snprintf(ctx, sizeof ctx, "%d", tokens + 64);
    char par[16];
    snprintf(par, sizeof par, "%d", streams);
    char thr[16];
    snprintf(thr, sizeof thr, "%d", threads);
    for (int p = 0; p < nprec && !rc; p++) {
        /* one server per engine of this precision, all up at once, so the
         * rounds interleave them: engine A, engine B, the peer, A, B, ... */
        sb_server srv[SB_MAX_ENG];
        memset(srv, 0, sizeof srv);
        for (int e = 0; e < neng && !rc; e++) {
            sb_prec_result *R = &res[p * neng + e];
            snprintf(R->name, sizeof R->name, "%.15s", plist[p]);
            snprintf(R->engine, sizeof R->engine, "%.15s", elist[e]);
            R->idle_anon_mb = R->kv_mb = R->after_anon_mb = R->kv_blocks_total = NAN;
            const char *args[16] = {"--model", model, "--precision", plist[p], "--threads", thr, "--parallel", par,
                                    "--ctx", ctx, "--queue", "256"};
            int nargs = 12;
            if (elist[e][0]) {
                args[nargs++] = "--engine";
                args[nargs++] = elist[e];
            }
            if (kv) args[nargs++] = !strcmp(kv, "f16") ? "--kv-f16" : "--kv-f32";
            rc = sb_server_start(&srv[e], miser, args, nargs, 1800);
            if (rc) break;
            R->started = 1;
            /* idle: ready, nothing asked yet */
            sb_sleep(0.5);
            R->idle_anon_mb = sb_proc_kb(srv[e].pid, "status", "RssAnon") / 1024.0;
            char *m = NULL;
            if (sb_http(srv[e].port, "GET", "/metrics", NULL, &m, 10) == 200) {
                R->kv_mb = sb_metric(m, "miser_memory_bytes{category=\"kv\"}") / 1048576.0;
                R->kv_blocks_total = sb_metric(m, "miser_kv_blocks_total");
            }
            free(m);
        }
        /* prompts: distinct texts, tokenized by the server, sent (and given to llama.cpp) as ids */
        char **bodies = calloc((size_t)streams, sizeof *bodies);
        size_t idcap = (size_t)streams * 256;
        char *ids_arg = calloc(1, idcap);
        for (int i = 0; i < streams && !rc; i++) {
            char tb[256], *tok = NULL;
            snprintf(tb, sizeof tb, "{\"content\":\"Stream %d of the benchmark: once upon a time\"}", i + 1);
            if (sb_http(srv[0].port, "POST", "/tokenize", tb, &tok, 10) != 200) {
                fprintf(stderr, "serve: POST /tokenize failed\n");
                rc = 1;
                free(tok);
                break;
            }
            cJSON *tj = cJSON_Parse(tok), *ta = cJSON_GetObjectItem(tj, "tokens");
            char *ids = cJSON_PrintUnformatted(ta);
            free(tok);
            char body[2048];
            snprintf(body, sizeof body,
                     "{\"prompt\":%s,\"max_tokens\":%d,\"temperature\":0,\"ignore_eos\":true,\"stream\":true,"
                     "\"stream_options\":{\"include_usage\":true}}",
                     ids ? ids : "[]", tokens);
            bodies[i] = strdup(body);
            size_t L = strlen(ids_arg);
            int first = 1;
            for (int t = 0; t < cJSON_GetArraySize(ta); t++) {
                L += (size_t)snprintf(ids_arg + L, idcap - L, "%s%d", first ? "" : ",",
                                      (int)cJSON_GetNumberValue(cJSON_GetArrayItem(ta, t)));
                first = 0;
            }
            if (i + 1 < streams) L += (size_t)snprintf(ids_arg + L, idcap - L, ";");
            cJSON_free(ids);
            cJSON_Delete(tj);
        }
        /* rounds: per engine 1 stream then S streams, then the peer with 1 and S sequences */
        const double timeout = 3600;
        sb_prec_result *P = &res[p * neng]; /* the peer's figures live with the first engine */
        for (int r = 0; r < rounds && !rc; r++) {
            for (int e = 0; e < neng && !rc; e++) {
                sb_prec_result *R = &res[p * neng + e];
                if (sb_run_streams(srv[e].port, 1, bodies, timeout, &R->one[r]) ||
                    sb_run_streams(srv[e].port, streams, bodies, timeout, &R->many[r])) {
                    rc = 1;
                    break;
                }
                R->rounds_done++;
                printf("round %d: miser %s%s%s 1 stream: decode %.2f tok/s, ITL %.1f ms, TTFT %.1f ms | %d streams: "
                       "decode %.2f tok/s (aggregate %.2f), ITL %.1f ms, TTFT %.1f ms\n",
                       r + 1, R->name, R->engine[0] ? " " : "", R->engine, R->one[r].decode_tok_s, R->one[r].itl_ms,
                       R->one[r].ttft_ms, streams, R->many[r].decode_tok_s, R->many[r].agg_tok_s, R->many[r].itl_ms,
                       R->many[r].ttft_ms);
                fflush(stdout);
            }
            if (!rc && have_peer && !peer_skipped) {
                int pr = sb_peer_round(model, P->name, threads, streams, tokens, ids_arg, &P->pone[P->peer_rounds],
                                       &P->pmany[P->peer_rounds], peer_version, sizeof peer_version);
                if (pr == 3) {
                    printf("llama.cpp peer: skipped (%s: not installed or precision not supported; `make peers`)\n",
                           P->name);
                    peer_skipped = 1;
                } else if (pr) {
                    fprintf(stderr, "serve: the llama.cpp peer failed (its output is above)\n");
                    rc = 1;
                } else {
                    const int q = P->peer_rounds++;
                    printf("round %d: llama.cpp %s 1 seq: decode %.2f tok/s, ITL %.1f ms, TTFT %.1f ms | %d seqs: "
                           "decode %.2f tok/s (aggregate %.2f), ITL %.1f ms, TTFT %.1f ms\n",
                           r + 1, P->name, P->pone[q].decode_tok_s, P->pone[q].itl_ms, P->pone[q].ttft_ms, streams,
                           P->pmany[q].decode_tok_s, P->pmany[q].agg_tok_s, P->pmany[q].itl_ms, P->pmany[q].ttft_ms);
                }
                fflush(stdout);
            }
        }
        for (int e = 0; e < neng; e++) {
            sb_prec_result *R = &res[p * neng + e];
            if (!srv[e].pid) continue;
            /* idle again after the load */
            if (!rc && rounds > 0) {
                sb_sleep(1.0);
                R->after_anon_mb = sb_proc_kb(srv[e].pid, "status", "RssAnon") / 1024.0;
            }
            if (!rc && rate_s > 0) {
                if (sb_hey(srv[e].port, "/health", rate_s, 16, &R->rate_health) ||
                    sb_hey(srv[e].port, "/v1/models", rate_s, 16, &R->rate_models))
                    printf("rates: `hey` failed or is not installed (Debian package hey); no request rates\n");
                else R->rates_done = 1;
            }
            const int st = sb_server_stop(&srv[e], rc != 0);
            if (!rc && st != 0) {
                fprintf(stderr, "serve: miser serve exited with %d after SIGTERM (its log: %s)\n", st, srv[e].log);
                rc = 1;
            } else if (rc) fprintf(stderr, "serve: the server's log: %s\n", srv[e].log);
        }
        for (int i = 0; i < streams; i++) free(bodies[i]);
        free(bodies);
        free(ids_arg);
    }
    if (!rc && replicas[0]) rc = sb_replicas(miser, model, plist[0], replicas, 8, jout);
    sb_loadavg(la1);

    int any = 0;
    for (int i = 0; i < nres; i++) any |= res[i].started;
    if (!any) { /* nothing was measured: no table, no report */
        cJSON_Delete(jout);
        free(res);
        return rc;
    }
    /* the table: medians over rounds */
    int met = 0, missed = 0;
    char misses[1024] = "";
    printf("\nmedians of interleaved rounds (load average at the start %.2f, at the end %.2f)\n", la0[0], la1[0]);
    if (res[0].rounds_done)
        printf("| runtime | streams | decode tok/s | aggregate tok/s | ITL median ms | TTFT median ms | rounds |\n"
               "|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < nres; i++) {
        const sb_prec_result *R = &res[i], *P = &res[i - i % neng];
        const int n = R->rounds_done, q = (i % neng) == neng - 1 ? P->peer_rounds : 0; /* peer rows after the last engine */
        char nm[48];
        snprintf(nm, sizeof nm, "%s%s%s", R->name, R->engine[0] ? " " : "", R->engine);
        if (n) {
            printf("| miser %s | 1 | %.2f | %.2f | %.1f | %.1f | %d |\n", nm, MED(R->one, n, decode_tok_s),
                   MED(R->one, n, agg_tok_s), MED(R->one, n, itl_ms), MED(R->one, n, ttft_ms), n);
            printf("| miser %s | %d | %.2f | %.2f | %.1f | %.1f | %d |\n", nm, streams, MED(R->many, n, decode_tok_s),
                   MED(R->many, n, agg_tok_s), MED(R->many, n, itl_ms), MED(R->many, n, ttft_ms), n);
        }
        if (q) {
            printf("| llama.cpp %s | 1 | %.2f | %.2f | %.1f | %.1f | %d |\n", P->name, MED(P->pone, q, decode_tok_s),
                   MED(P->pone, q, agg_tok_s), MED(P->pone, q, itl_ms), MED(P->pone, q, ttft_ms), q);
            printf("| llama.cpp %s | %d | %.2f | %.2f | %.1f | %.1f | %d |\n", P->name, streams,
                   MED(P->pmany, q, decode_tok_s), MED(P->pmany, q, agg_tok_s), MED(P->pmany, q, itl_ms),
                   MED(P->pmany, q, ttft_ms), q);
        }
    }
    for (int i = 0; i < nres; i++) {
        sb_prec_result *R = &res[i];
        const sb_prec_result *P = &res[i - i % neng]; /* the peer's figures for this precision */
        const int n = R->rounds_done, q = P->peer_rounds;
        if (!R->started) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(jprec, o);
        cJSON_AddStringToObject(o, "precision", R->name);
        if (R->engine[0]) cJSON_AddStringToObject(o, "engine", R->engine);
        printf("\n%s%s%s:\n", R->name, R->engine[0] ? " " : "", R->engine);
        char t1[96], t2[96], t3[96];
        const int is_q8 = !strcmp(R->name, "q8_0");
        const double dec_ratio = n ? MED(R->many, n, decode_tok_s) / MED(R->one, n, decode_tok_s) : NAN;
        const double itl_ratio = n ? MED(R->many, n, itl_ms) / MED(R->one, n, itl_ms) : NAN;
        const double peer_ratio = n && q ? MED(R->many, n, decode_tok_s) / MED(P->pmany, q, decode_tok_s) : NAN;
        const double peer_agg = n && q ? MED(R->many, n, agg_tok_s) / MED(P->pmany, q, agg_tok_s) : NAN;
        const int x0 = missed;
        if (n) {
            printf("  decode %d / 1 streams:      %s\n", streams,
                   sb_target(t1, sizeof t1, dec_ratio, 1, is_q8 ? 6 : 8, &met, &missed));
            printf("  ITL %d / 1 streams:         %s\n", streams, sb_target(t2, sizeof t2, itl_ratio, 0, 2.5, &met, &missed));
        }
        if (q) printf("  decode vs llama.cpp at %d: %s (aggregate %.2fx)\n", streams,
                      sb_target(t3, sizeof t3, peer_ratio, 1, 1.2, &met, &missed), peer_agg);
        else if (n) printf("  decode vs llama.cpp at %d: not measured (%s)\n", streams,
                           !peer ? "--no-peer" : "peer not installed or skipped");
        const double limit = 32 + (isnan(R->kv_mb) ? 0 : R->kv_mb);
        if (!isnan(R->idle_anon_mb)) {
            char after[64] = "";
            if (!isnan(R->after_anon_mb)) snprintf(after, sizeof after, ", %.1f MB after the rounds", R->after_anon_mb);
            char blocks[64] = "";
            if (!isnan(R->kv_blocks_total)) snprintf(blocks, sizeof blocks, ", %.0f blocks", R->kv_blocks_total);
            printf("  idle RssAnon %.1f MB before any request%s; KV pool %.1f MB allocated%s "
                   "(miser_memory_bytes{category=\"kv\"})\n",
                   R->idle_anon_mb, after, R->kv_mb, blocks);
            const double worst = isnan(R->after_anon_mb) || R->after_anon_mb < R->idle_anon_mb ? R->idle_anon_mb
                                                                                               : R->after_anon_mb;
            printf("  idle RssAnon <= 32 MB + KV pool (%.1f MB): %.1f MB, %s\n", limit, worst,
                   worst <= limit ? "met" : "missed");
            if (worst <= limit) met++;
            else missed++;
            cJSON_AddNumberToObject(o, "idle_rss_anon_mb", R->idle_anon_mb);
            cJSON_AddNumberToObject(o, "after_rounds_rss_anon_mb", R->after_anon_mb);
            cJSON_AddNumberToObject(o, "kv_pool_mb", R->kv_mb);
        }
        if (R->rates_done) {
            printf("  GET /health:    %.0f req/s (p50 %.2f ms, p99 %.2f ms, %ld of %ld 200)\n", R->rate_health.rps,
                   R->rate_health.p50_ms, R->rate_health.p99_ms, R->rate_health.ok, R->rate_health.total);
            printf("  GET /v1/models: %.0f req/s (p50 %.2f ms, p99 %.2f ms, %ld of %ld 200)\n", R->rate_models.rps,
                   R->rate_models.p50_ms, R->rate_models.p99_ms, R->rate_models.ok, R->rate_models.total);
            const sb_rate *rr[2] = {&R->rate_health, &R->rate_models};
            const char *nm[2] = {"rate_health", "rate_models"};
            for (int k = 0; k < 2; k++) {
                cJSON *x = cJSON_AddObjectToObject(o, nm[k]);
                cJSON_AddNumberToObject(x, "requests_per_s", rr[k]->rps);
                cJSON_AddNumberToObject(x, "p50_ms", rr[k]->p50_ms);
                cJSON_AddNumberToObject(x, "p99_ms", rr[k]->p99_ms);
                cJSON_AddNumberToObject(x, "ok", (double)rr[k]->ok);
                cJSON_AddNumberToObject(x, "total", (double)rr[k]->total);
            }
        }
        if (missed > x0) {
            size_t L = strlen(misses);
            snprintf(misses + L, sizeof misses - L, "%s%s%s%s", L ? ", " : "", R->name, R->engine[0] ? " " : "",
                     R->engine);
        }
        cJSON *rj = cJSON_AddArrayToObject(o, "rounds");
        for (int r = 0; r < n; r++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddItemToObject(x, "one", sb_stats_json(&R->one[r]));
            cJSON_AddItemToObject(x, "many", sb_stats_json(&R->many[r]));
            if (r < q) {
                cJSON_AddItemToObject(x, "llamacpp_one", sb_stats_json(&P->pone[r]));
                cJSON_AddItemToObject(x, "llamacpp_many", sb_stats_json(&P->pmany[r]));
            }
            cJSON_AddItemToArray(rj, x);
        }
        if (n) {
            cJSON_AddItemToObject(o, "median_one", sb_med_json(R->one, n));
            cJSON_AddItemToObject(o, "median_many", sb_med_json(R->many, n));
            cJSON_AddNumberToObject(o, "decode_ratio", dec_ratio);
            cJSON_AddNumberToObject(o, "itl_ratio", itl_ratio);
        }
        if (q) {
            cJSON_AddItemToObject(o, "llamacpp_median_one", sb_med_json(P->pone, q));
            cJSON_AddItemToObject(o, "llamacpp_median_many", sb_med_json(P->pmany, q));
            cJSON_AddNumberToObject(o, "decode_vs_llamacpp", peer_ratio);
            cJSON_AddNumberToObject(o, "aggregate_vs_llamacpp", peer_agg);
        }
    }
    if (peer_version[0]) cJSON_AddStringToObject(jout, "llamacpp_version", peer_version);
    cJSON_AddBoolToObject(jout, "llamacpp_skipped", !peer || peer_skipped);
    cJSON *la = cJSON_AddArrayToObject(jout, "loadavg_start");
    for (int i = 0; i < 3; i++) cJSON_AddItemToArray(la, cJSON_CreateNumber(la0[i]));
    la = cJSON_AddArrayToObject(jout, "loadavg_end");
    for (int i = 0; i < 3; i++) cJSON_AddItemToArray(la, cJSON_CreateNumber(la1[i]));
    cJSON_AddNumberToObject(jout, "targets_met", met);
    cJSON_AddNumberToObject(jout, "targets_missed", missed);
    if (met + missed)
        printf("\nissue 16 targets: %d met, %d missed%s%s%s\n", met, missed, missed ? " (in: " : "", missed ? misses : "",
               missed ? ")" : "");
    if (peer_version[0]) printf("llama.cpp: %s\n", peer_version);
    if (json_path) { /* what was measured, also when a later step failed */
        char *text = cJSON_Print(jout);
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%.4000s.tmp%d", json_path, (int)getpid());
        FILE *f = fopen(tmp, "w");
        if (!f || fputs(text, f) < 0 || fputc('\n', f) < 0 || fclose(f) != 0 || rename(tmp, json_path) != 0) {
            fprintf(stderr, "serve: cannot write --json %s: %s\n", json_path, strerror(errno));
            unlink(tmp);
            if (!rc) rc = 1;
        }
        cJSON_free(text);
    }
    cJSON_Delete(jout);
    free(res);
    return rc;
}

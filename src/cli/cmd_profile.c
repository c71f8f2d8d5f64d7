/* `miser profile [options] -- CMD ARGS...`: run any program, watch it and its
 * descendants, and report memory per stage (docs/profiler.md). Exits with the
 * command's status (128+N when killed by signal N). */
#include "cli.h"
#include "miser/profiler.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: miser profile [options] -- CMD [ARGS...]\n"
            "\n"
            "Run CMD and measure the memory of it and all its descendants, per stage.\n"
            "Stage markers: lines on the pipe whose descriptor is in $" MISER_MARKER_ENV "\n"
            "(\"stage NAME key=value ...\", see docs/profiler.md and tools/markers/),\n"
            "the study's \"[STAGE] NAME: X MB (swap: Y MB) - desc\" lines on CMD's stdout\n"
            "(passed through unchanged), and --mark options.\n"
            "\n"
            "Only a marker-pipe line with ack=1 is synchronous: CMD waits for miser's byte\n"
            "on $" MISER_MARKER_ACK_ENV ", so the mark measures CMD where it is (the helpers in\n"
            "tools/markers/ do this). A pipe line without ack=1 and a [STAGE] line are measured\n"
            "when miser reads them, after CMD has moved on; for [STAGE] lines the report keeps\n"
            "both figures, CMD's own (\"printed\") and miser's reading at receipt, and how\n"
            "much later miser read (at least). Python children must flush: run `python3 -u`\n"
            "or print with flush=True, or stdout into a pipe is block-buffered and the lines\n"
            "arrive later still.\n"
            "\n"
            "Peaks: for one process the exact high-water mark of each interval; for a tree\n"
            "the sum of per-process peaks (an upper bound), or, when a process was reaped\n"
            "by its own parent, the largest reading (a lower bound). The report labels each.\n"
            "\n"
            "options:\n"
            "  -i, --interval MS     timeline sampler interval (default 20; 0 turns it off)\n"
            "  --mark SECONDS:NAME[:DESC]  mark a stage at a time after the start (repeatable)\n"
            "  --json FILE           write the JSON profile (schema miser-profile v1)\n"
            "  --csv FILE            write the stages as CSV\n"
            "  --md FILE             write a Markdown report\n"
            "  --svg FILE            write an SVG timeline with stage bands\n"
            "  --html FILE           write an HTML page: the stage table (peak kind, mark\n"
            "                        source, printed figure and delay), the timeline and,\n"
            "                        with --attribute, the icicle per stage peak and the\n"
            "                        top consumers\n"
            "  --format FMT          report printed on stderr at the end: table (default),\n"
            "                        json, csv, md, svg, html or none\n"
            "  --pss                 read PSS from smaps_rollup at each mark\n"
            "  --no-gpu              do not ask NVML for GPU memory\n"
            "  --no-hwm-reset        do not reset high-water marks (peaks become sampled)\n"
            "  --no-stdout-markers   let CMD write to stdout directly (no [STAGE] parsing)\n"
            "  --no-marker-pipe      do not pass a marker pipe\n"
            "  --attribute           attribute each stage's peak to call stacks: preload an\n"
            "                        interposer into every process (docs/attribution.md)\n"
            "  --attribute-min SIZE  smallest stack listed (bytes, or with K/M/G; default 0)\n"
            "  --attribute-svg FILE  icicle graph of every stage's peak (implies --attribute)\n"
            "  -h, --help            this help\n"
            "\n"
            "Every output FILE is checked before CMD starts (an unwritable one is exit 2 and\n"
            "CMD does not run); files are written whole or not at all. Exit status: CMD's,\n"
            "128+N if it was killed by signal N, 127 if it could not be run, 2 on a bad\n"
            "command line, 1 if CMD succeeded but a report could not be written.\n");
}

static void print_warning(const char *msg, void *ctx)
{
    (void)ctx;
    miser_cli_error("profile", "warning: %s", msg);
}

static int parse_mark(const char *arg, miser_time_mark *m)
{
    char *end;
    double t = strtod(arg, &end);
    if (end == arg || *end != ':' || t < 0) return -1;
    const char *name = end + 1, *colon = strchr(name, ':');
    size_t n = colon ? (size_t)(colon - name) : strlen(name);
    if (n == 0 || n >= MISER_STAGE_NAME_MAX) return -1;
    memcpy(m->name, name, n);
    m->name[n] = 0;
    for (size_t i = 0; i < n; i++) {
        char c = m->name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return -1;
    }
    m->at_s = t;
    m->description = colon ? colon + 1 : "";
    return 0;
}

static int run(int argc, char **argv)
{
    miser_watch_options o = {0};
    o.sample_interval_ms = 20;
    o.stdout_markers = 1;
    o.marker_pipe = 1;
    o.stdout_fd = 1;
    o.gpu = 1;
    o.on_warning = print_warning;
    const char *out[5] = {NULL, NULL, NULL, NULL, NULL}; /* json csv md svg html */
    const char *fmt = "table";
    int attribute = 0;
    const char *attribute_svg = NULL;
    miser_time_mark *marks = calloc((size_t)argc + 1, sizeof *marks);
    if (!marks) {
        miser_cli_error("profile", "out of memory");
        return MISER_EXIT_FAIL;
    }
    size_t nmarks = 0;
    int i = 1;
    int rc = MISER_EXIT_USAGE;
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        if (a[0] != '-') break;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(marks);
            return MISER_EXIT_OK;
        }
        int takes = !strcmp(a, "-i") || !strcmp(a, "--interval") || !strcmp(a, "--mark") || !strcmp(a, "--json") ||
                    !strcmp(a, "--csv") || !strcmp(a, "--md") || !strcmp(a, "--svg") || !strcmp(a, "--html") ||
                    !strcmp(a, "--format") ||
                    !strcmp(a, "--attribute-min") || !strcmp(a, "--attribute-svg");
        if (takes && !next) {
            miser_cli_error("profile", "%s needs a value", a);
            goto done;
        }
        if (!strcmp(a, "-i") || !strcmp(a, "--interval")) {
            char *end;
            o.sample_interval_ms = strtod(next, &end);
            if (*end || o.sample_interval_ms < 0) {
                miser_cli_error("profile", "bad interval '%s' (milliseconds, 0 = off)", next);
                goto done;
            }
        } else if (!strcmp(a, "--mark")) {
            if (parse_mark(next, &marks[nmarks])) {
                miser_cli_error("profile", "bad --mark '%s' (SECONDS:NAME[:DESC])", next);
                goto done;
            }
            nmarks++;
        } else if (!strcmp(a, "--json")) out[0] = next;
        else if (!strcmp(a, "--csv")) out[1] = next;
        else if (!strcmp(a, "--md")) out[2] = next;
        else if (!strcmp(a, "--svg")) out[3] = next;
        else if (!strcmp(a, "--html")) out[4] = next;
        else if (!strcmp(a, "--format")) {
            miser_report_format f;
            if (strcmp(next, "none") && miser_report_format_parse(next, &f)) {
                miser_cli_error("profile", "unknown format '%s'", next);
                goto done;
            }
            fmt = next;
        } else if (!strcmp(a, "--pss")) o.pss = 1;
        else if (!strcmp(a, "--no-gpu")) o.gpu = 0;
        else if (!strcmp(a, "--no-hwm-reset")) o.no_hwm_reset = 1;
        else if (!strcmp(a, "--no-stdout-markers")) o.stdout_markers = 0;
        else if (!strcmp(a, "--no-marker-pipe")) o.marker_pipe = 0;
        else if (!strcmp(a, "--attribute")) attribute = 1; /* attribution: docs/attribution.md */
        else if (!strcmp(a, "--attribute-svg")) attribute = 1, attribute_svg = next;
        else if (!strcmp(a, "--attribute-min")) {
            if (miser_attrib_parse_size(next, &o.attribute_min)) {
                miser_cli_error("profile", "bad --attribute-min '%s' (bytes, or a number with K, M or G)", next);
                goto done;
            }
        } else {
            miser_cli_error("profile", "unknown option '%s' (see --help)", a);
            goto done;
        }
        if (takes) i++;
    }
    if (i >= argc) {
        miser_cli_error("profile", "no command given (miser profile [options] -- CMD ARGS...)");
        goto done;
    }
    /* Refuse a bad output path before CMD runs: it costs the user nothing but
     * this line. Two reports into one file would overwrite each other. */
    static const char *const out_opt[5] = {"json", "csv", "md", "svg", "html"};
    for (int k = 0; k < 5; k++) {
        if (!out[k]) continue;
        for (int j = 0; j < k; j++)
            if (out[j] && !strcmp(out[j], out[k])) {
                miser_cli_error("profile", "--%s and --%s both write %s", out_opt[j], out_opt[k], out[k]);
                goto done;
            }
        if (miser_cli_check_output("profile", out_opt[k], out[k]) != MISER_EXIT_OK) goto done;
    }
    /* attribution: find the interposer before CMD runs */
    char attrib_lib[4096];
    if (attribute_svg && miser_cli_check_output("profile", "attribute-svg", attribute_svg) != MISER_EXIT_OK) goto done;
    if (attribute) {
        if (miser_attrib_find_lib(attrib_lib, sizeof attrib_lib)) {
            miser_cli_error("profile", "%s", miser_error_message());
            rc = MISER_EXIT_FAIL;
            goto done;
        }
        o.attribute_lib = attrib_lib;
    }
    o.time_marks = marks;
    o.ntime_marks = nmarks;
    miser_profile *p = NULL;
    miser_status st = miser_profile_command(&o, argv + i, &p);
    if (st) {
        miser_cli_error("profile", "%s", miser_error_message());
        rc = st == MISER_ERR_IO ? 127 : miser_cli_exit_for_status(st);
        goto done;
    }
    static const miser_report_format fmts[5] = {MISER_REPORT_JSON, MISER_REPORT_CSV, MISER_REPORT_MARKDOWN,
                                                MISER_REPORT_SVG, MISER_REPORT_HTML};
    int write_failed = 0;
    for (int k = 0; k < 5; k++)
        if (out[k] && miser_profile_write_file(p, fmts[k], out[k])) {
            miser_cli_error("profile", "%s", miser_error_message());
            write_failed = 1;
        }
    if (attribute_svg && miser_profile_write_attribution_svg_file(p, attribute_svg)) {
        miser_cli_error("profile", "%s", miser_error_message());
        write_failed = 1;
    }
    miser_report_format f;
    if (strcmp(fmt, "none") && !miser_report_format_parse(fmt, &f)) {
        fputc('\n', stderr);
        miser_profile_write(p, f, stderr);
    }
    miser_profile_exit e = miser_profile_exit_status(p);
    rc = e.signaled ? 128 + e.signal : e.code;
    if (rc == 0 && write_failed) rc = MISER_EXIT_FAIL;
    miser_profile_free(p);
done:
    free(marks);
    return rc;
}

MISER_CLI_COMMAND(profile, "profile", "run a command and profile its memory per stage", run)

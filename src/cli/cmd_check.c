/* `miser check --baseline FILE [options] CURRENT.json`: compare a profile with
 * a stored one and exit 4 when a figure regressed, for CI pipelines. */
#include "cli.h"
#include "miser/profiler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: miser check --baseline BASE.json [options] CURRENT.json\n"
            "\n"
            "Compare a profile (from `miser profile --json`) with a baseline. Every figure\n"
            "compared is lower-is-better; one regresses when\n"
            "  current > baseline + |baseline| * tolerance + slack.\n"
            "A figure the baseline lacks is skipped; one the baseline has and the current\n"
            "profile lacks is an error, as are profiles of a run that crashed (non-zero exit\n"
            "or a signal), of different commands, or holding a figure of the wrong type or a\n"
            "negative size: the check never says \"no regression\" about what it could not\n"
            "compare.\n"
            "\n"
            "options:\n"
            "  --baseline FILE        the stored profile (required)\n"
            "  --tolerance T          relative tolerance for memory, \"10%%\" or 0.10 (default 10%%)\n"
            "  --slack-mb MB          absolute slack for memory figures (default 8)\n"
            "  --time-tolerance T     also check inference seconds with this relative tolerance\n"
            "  --time-slack S         absolute slack for seconds, with --time-tolerance (default 0.1)\n"
            "  --any-command          compare profiles of different commands too\n"
            "  -q, --quiet            print only regressions\n"
            "  -h, --help             this help\n"
            "\n"
            "exit: 0 no regression, 4 regression, 3 a profile that cannot be read or compared\n"
            "(one line says why), 2 bad command line.\n");
}

static int parse_tol(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s) return -1;
    if (*end == '%') {
        v /= 100;
        end++;
    }
    if (*end || !(v >= 0) || isinf(v)) return -1;
    *out = v;
    return 0;
}

static int run(int argc, char **argv)
{
    const char *base = NULL, *cur = NULL;
    miser_check_options o = {0.10, 8.0, 0.0, 0.1, 0};
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return MISER_EXIT_OK;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = 1;
        else if (!strcmp(a, "--any-command")) o.any_command = 1;
        else if (!strcmp(a, "--baseline") || !strcmp(a, "--tolerance") || !strcmp(a, "--slack-mb") ||
                 !strcmp(a, "--time-tolerance") || !strcmp(a, "--time-slack")) {
            if (!next) {
                miser_cli_error("check", "%s needs a value", a);
                return MISER_EXIT_USAGE;
            }
            i++;
            if (!strcmp(a, "--baseline")) base = next;
            else if (!strcmp(a, "--slack-mb") || !strcmp(a, "--time-slack")) {
                char *end;
                double v = strtod(next, &end);
                if (end == next || *end || !(v >= 0) || isinf(v)) {
                    miser_cli_error("check", "bad %s '%s' (a number >= 0)", a, next);
                    return MISER_EXIT_USAGE;
                }
                if (!strcmp(a, "--slack-mb")) o.mem_slack_mb = v;
                else o.time_slack_s = v;
            } else if (parse_tol(next, !strcmp(a, "--tolerance") ? &o.mem_tolerance : &o.time_tolerance)) {
                miser_cli_error("check", "bad %s '%s' (e.g. 10%% or 0.1)", a, next);
                return MISER_EXIT_USAGE;
            }
        } else if (a[0] == '-' && a[1]) {
            miser_cli_error("check", "unknown option '%s' (see --help)", a);
            return MISER_EXIT_USAGE;
        } else if (!cur) cur = a;
        else {
            miser_cli_error("check", "more than one profile given ('%s')", a);
            return MISER_EXIT_USAGE;
        }
    }
    if (!base || !cur) {
        miser_cli_error("check", "need --baseline FILE and a profile to check");
        return MISER_EXIT_USAGE;
    }
    miser_profile *pb = NULL, *pc = NULL;
    miser_status st = miser_profile_load_json(base, &pb);
    if (!st) st = miser_profile_load_json(cur, &pc);
    if (st) {
        miser_cli_error("check", "%s", miser_error_message());
        miser_profile_free(pb);
        return st == MISER_ERR_IO ? MISER_EXIT_DATA : miser_cli_exit_for_status(st);
    }
    miser_check_result r;
    miser_profile_check(pb, pc, &o, &r);
    if (r.problem[0]) {
        miser_cli_error("check", "cannot compare %s with %s: %s", cur, base, r.problem);
        miser_profile_free(pb);
        miser_profile_free(pc);
        return MISER_EXIT_DATA;
    }
    size_t compared = 0;
    if (!quiet) printf("%-24s %12s %12s %12s  %s\n", "metric", "baseline", "current", "limit", "verdict");
    for (size_t i = 0; i < r.n; i++) {
        const miser_check_item *it = &r.items[i];
        if (it->skipped) continue;
        compared++;
        if (quiet && !it->regressed) continue;
        printf("%-24s %12.3f %12.3f %12.3f  %s\n", it->metric, it->baseline, it->current, it->limit,
               it->regressed ? "REGRESSION" : "ok");
    }
    /* with --attribute profiles: name the call stacks whose bytes grew most */
    if (r.regressions) miser_profile_write_attribution_growth(pb, pc, 5, stdout);
    miser_profile_free(pb);
    miser_profile_free(pc);
    if (!compared) {
        miser_cli_error("check", "no figure could be compared (profiles share no stages)");
        return MISER_EXIT_DATA;
    }
    if (r.regressions) {
        miser_cli_error("check", "%d regression(s) against %s", r.regressions, base);
        return MISER_EXIT_REGRESSION;
    }
    if (!quiet) printf("no regression (%zu figures compared)\n", compared);
    return MISER_EXIT_OK;
}

MISER_CLI_COMMAND(check, "check", "compare a profile with a baseline; exit 4 on regression", run)

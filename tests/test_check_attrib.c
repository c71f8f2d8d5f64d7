/* `miser check` on two `miser profile --attribute --json` profiles of the
 * same command line, end to end through the CLI: the second run allocates
 * 80 MB more at one known call site (tests/attrib/truth.c's site_b_realloc,
 * sized by $MISER_TRUTH_B2 so argv, and with it the profile's command, is
 * identical), so the check must exit 4 (regression) and name that site among
 * the stacks that grew most. The site's name is known from the program's
 * source, not from miser's output. Skipped under ASan: the interposer is not
 * preloaded into sanitized binaries (as tests/test_attrib.c). */
#include <criterion/criterion.h>

#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define CHECK_ATTRIB_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHECK_ATTRIB_UNDER_ASAN 1
#endif
#endif
#ifndef CHECK_ATTRIB_UNDER_ASAN
#define CHECK_ATTRIB_UNDER_ASAN 0
#endif

static int sh(const char *cmd)
{
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(check_attrib, regression_names_the_call_site_that_grew, .timeout = 60)
{
    if (CHECK_ATTRIB_UNDER_ASAN)
        cr_skip_test("attribution: the interposer is not preloaded into sanitized binaries (tested in the plain build)");
    char dir[64] = "/tmp/miser-test-check-attrib-XXXXXX", cmd[2048];
    cr_assert(mkdtemp(dir));
    /* Baseline: B is 6,000,000 bytes; current: 86,000,000 (touched, so RSS grows too). */
    snprintf(cmd, sizeof cmd,
             "%s/miser profile --attribute --json %s/base.json --format none -- %s/attrib-truth >/dev/null 2>&1 && "
             "MISER_TRUTH_B2=86000000 %s/miser profile --attribute --json %s/cur.json --format none -- "
             "%s/attrib-truth >/dev/null 2>&1",
             MISER_BUILD_DIR, dir, MISER_BUILD_DIR, MISER_BUILD_DIR, dir, MISER_BUILD_DIR);
    cr_assert_eq(sh(cmd), 0, "miser profile --attribute failed: %s", cmd);
    /* The baseline against itself: no regression, exit 0. */
    snprintf(cmd, sizeof cmd, "%s/miser check --baseline %s/base.json %s/base.json >%s/same.out 2>&1", MISER_BUILD_DIR,
             dir, dir, dir);
    cr_expect_eq(sh(cmd), 0, "a profile against itself regressed");
    snprintf(cmd, sizeof cmd, "%s/miser check --baseline %s/base.json %s/cur.json >%s/check.out 2>&1", MISER_BUILD_DIR,
             dir, dir, dir);
    int rc = sh(cmd);
    snprintf(cmd, sizeof cmd, "%s/check.out", dir);
    char *out = test_read_file(cmd, NULL);
    cr_assert(out, "no %s", cmd);
    cr_expect_eq(rc, 4, "miser check should report a regression (exit 4), got %d:\n%s", rc, out);
    cr_expect(strstr(out, "REGRESSION"), "no REGRESSION row:\n%s", out);
    cr_expect(strstr(out, "site_b_realloc"), "the growing call site is not named:\n%s", out);
    /* 86,000,000 - 6,000,000 bytes = 76.29 MiB more at that site. */
    cr_expect(strstr(out, "+76.29 MB"), "the site's growth is not 80,000,000 bytes (76.29 MiB):\n%s", out);
    /* The sites whose bytes did not change are not among those that grew. */
    const char *grew = strstr(out, "site_b_realloc");
    cr_expect(grew && !strstr(out, "site_d"), "a site that did not grow is listed:\n%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(sh(cmd), 0);
}

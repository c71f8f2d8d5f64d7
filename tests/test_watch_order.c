/* Stage order between the command's stdout and its marker pipe (issue 13's
 * "4_SECOND_INFERENCE after 5_FINAL"): the two pipes are read separately, so
 * a [STAGE] line printed before an ack'd marker-pipe line used to be recorded
 * after it whenever both were waiting when the watcher woke (it read the
 * marker pipe first). An ack'd line makes the order knowable (the command is
 * blocked until the ack, so its stdout then holds only earlier lines): the
 * profile must list the marks in the order the command wrote them. The
 * expected order is the child's program order, written out below. */
#include <criterion/criterion.h>

#include "miser/profiler.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define ROUNDS 12

/* Each round: a plain pipe line (the watcher goes off to take that mark), at
 * once a [STAGE] line on stdout and an ack'd pipe line, both then waiting. */
static const char child_py[] =
    "import os, sys\n"
    "fd = int(os.environ['MISER_MARKER_FD']); ack = int(os.environ['MISER_MARKER_ACK_FD'])\n"
    "for i in range(12):\n"
    "    os.write(fd, b'stage p%d\\n' % i)\n"
    "    sys.stdout.write('[STAGE] s%d: 1.00 MB (swap: 0.00 MB) - printed\\n' % i); sys.stdout.flush()\n"
    "    os.write(fd, b'stage a%d ack=1\\n' % i)\n"
    "    os.read(ack, 1)\n";

static long index_of(const miser_profile *p, const char *name)
{
    for (size_t i = 0; i < miser_profile_stage_count(p); i++)
        if (!strcmp(miser_profile_stage(p, i)->name, name)) return (long)i;
    return -1;
}

Test(watch_order, stdout_stage_line_before_an_acked_marker_stays_before_it, .timeout = 60)
{
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    cr_assert_geq(devnull, 0);
    miser_watch_options o = {0};
    o.sample_interval_ms = 0;
    o.stdout_markers = 1;
    o.marker_pipe = 1;
    o.stdout_fd = devnull;
    char *argv[] = {"/usr/bin/python3", "-c", (char *)child_py, NULL};
    miser_profile *p = NULL;
    cr_assert_eq(miser_profile_command(&o, argv, &p), MISER_OK, "%s", miser_error_message());
    close(devnull);
    cr_assert_eq(miser_profile_exit_status(p).code, 0, "the child failed");
    int inverted = 0;
    for (int i = 0; i < ROUNDS; i++) {
        char s[16], a[16];
        snprintf(s, sizeof s, "s%d", i);
        snprintf(a, sizeof a, "a%d", i);
        long is = index_of(p, s), ia = index_of(p, a);
        cr_expect(is >= 0 && ia >= 0, "round %d: stage missing (s at %ld, a at %ld)", i, is, ia);
        if (is > ia) inverted++;
        cr_expect_lt(is, ia, "round %d: the [STAGE] line printed first is recorded after the ack'd marker", i);
        cr_expect_eq(miser_profile_stage(p, (size_t)ia)->source, MISER_MARK_PIPE_ACK);
        cr_expect_eq(miser_profile_stage(p, (size_t)is)->source, MISER_MARK_STDOUT);
    }
    cr_expect_eq(inverted, 0, "%d of %d rounds out of order", inverted, ROUNDS);
    miser_profile_free(p);
}

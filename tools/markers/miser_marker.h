/* miser_marker.h: stage markers for `miser profile` from C (single header).
 * When run under `miser profile`, $MISER_MARKER_FD names a pipe; each call
 * writes one line "stage NAME key=value ..." (docs/profiler.md). Outside the
 * profiler the calls do nothing. `data` is optional extra key=value text,
 * e.g. "tokens=9 seconds=1.25"; desc is quoted for you. The call waits
 * until miser has taken its snapshot ($MISER_MARKER_ACK_FD), so a mark
 * measures the process exactly where the call is.
 *   miser_marker("1_MODEL_LOADED", "weights mapped", NULL);                  */
#ifndef MISER_MARKER_H
#define MISER_MARKER_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline void miser_marker(const char *name, const char *desc, const char *data)
{
    const char *env = getenv("MISER_MARKER_FD");
    if (!env || !*env) return;
    char line[4096];
    size_t n = (size_t)snprintf(line, sizeof line, "stage %s", name);
    if (desc && n < sizeof line - 8) {
        n += (size_t)snprintf(line + n, sizeof line - n, " desc=\"");
        for (; *desc && n < sizeof line - 4; desc++) {
            if (*desc == '"' || *desc == '\\') line[n++] = '\\';
            line[n++] = *desc == '\n' ? ' ' : *desc;
        }
        line[n++] = '"';
    }
    if (data && n < sizeof line - 2) n += (size_t)snprintf(line + n, sizeof line - n, " %s", data);
    const char *ack = getenv("MISER_MARKER_ACK_FD");
    if (n > sizeof line - 8) n = sizeof line - 8;
    if (ack && *ack) memcpy(line + n, " ack=1", 6), n += 6;
    line[n++] = '\n';
    /* One write() per line: lines from several processes never interleave
     * (pipe writes up to PIPE_BUF bytes are atomic). */
    ssize_t w = write(atoi(env), line, n);
    char c;
    if (w > 0 && ack && *ack) w = read(atoi(ack), &c, 1); /* 0 if miser went away */
    (void)w;
}
#endif

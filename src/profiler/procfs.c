/* Parsers for /proc/PID/status, stat and smaps_rollup, written against the
 * documented formats (proc(5)) and tolerant of older kernels that lack
 * fields; plus the small readers and the high-water-mark reset. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Value in kB of "Key:\t   123 kB" at the start of some line, or -1. */
static int64_t field_kb(const char *text, const char *key)
{
    size_t kl = strlen(key);
    for (const char *line = text; line && *line;) {
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            char *end;
            long long v = strtoll(line + kl + 1, &end, 10);
            if (end == line + kl + 1 || v < 0) return -1;
            return (int64_t)v;
        }
        line = strchr(line, '\n');
        if (line) line++;
    }
    return -1;
}

miser_status miser_proc_parse_status(const char *text, miser_proc_status *out)
{
    if (!text || !out) return miser_error_set(MISER_ERR_INVALID, "proc status: NULL argument");
    out->rss_kb = field_kb(text, "VmRSS");
    out->hwm_kb = field_kb(text, "VmHWM");
    out->anon_kb = field_kb(text, "RssAnon");
    out->file_kb = field_kb(text, "RssFile");
    out->shmem_kb = field_kb(text, "RssShmem");
    out->swap_kb = field_kb(text, "VmSwap");
    int64_t pp = field_kb(text, "PPid");
    out->ppid = pp < 0 ? -1 : (int)pp;
    if (out->rss_kb < 0)
        return miser_error_set(MISER_ERR_FORMAT, "proc status: no VmRSS (kernel thread or exited process)");
    return MISER_OK;
}

miser_status miser_proc_parse_stat(const char *text, miser_proc_stat *out)
{
    if (!text || !out) return miser_error_set(MISER_ERR_INVALID, "proc stat: NULL argument");
    memset(out, 0, sizeof *out);
    const char *open = strchr(text, '(');
    const char *close = strrchr(text, ')');
    if (!open || !close || close < open) return miser_error_set(MISER_ERR_FORMAT, "proc stat: no (comm)");
    out->pid = atoi(text);
    const char *s = close + 1;
    /* Fields after comm, numbered as in proc(5): 3 state, 4 ppid, 10 minflt,
     * 11 cminflt, 12 majflt, 13 cmajflt, 14 utime, 15 stime, 16 cutime, 17 cstime. */
    unsigned long long v[18] = {0};
    int field = 3;
    while (*s && field <= 17) {
        while (*s == ' ') s++;
        if (!*s || *s == '\n') break;
        if (field == 3) {
            out->state = *s;
            while (*s && *s != ' ') s++;
        } else {
            char *end;
            long long x = strtoll(s, &end, 10);
            if (end == s) return miser_error_set(MISER_ERR_FORMAT, "proc stat: field %d is not a number", field);
            v[field] = (unsigned long long)(x < 0 ? 0 : x);
            s = end;
        }
        field++;
    }
    if (field <= 17) return miser_error_set(MISER_ERR_FORMAT, "proc stat: only %d fields", field - 1);
    out->ppid = (int)v[4];
    out->minflt = v[10];
    out->cminflt = v[11];
    out->majflt = v[12];
    out->cmajflt = v[13];
    out->utime = v[14];
    out->stime = v[15];
    out->cutime = v[16];
    out->cstime = v[17];
    return MISER_OK;
}

miser_status miser_proc_parse_smaps_rollup(const char *text, miser_proc_pss *out)
{
    if (!text || !out) return miser_error_set(MISER_ERR_INVALID, "smaps_rollup: NULL argument");
    out->pss_kb = field_kb(text, "Pss");
    out->pss_anon_kb = field_kb(text, "Pss_Anon");
    out->pss_file_kb = field_kb(text, "Pss_File");
    if (out->pss_kb < 0) return miser_error_set(MISER_ERR_FORMAT, "smaps_rollup: no Pss line");
    return MISER_OK;
}

ssize_t proc_pread(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    while (got + 1 < cap) {
        ssize_t r = pread(fd, buf + got, cap - 1 - got, (off_t)got);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    buf[got] = 0;
    return (ssize_t)got;
}

ssize_t proc_read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t r = proc_pread(fd, buf, cap);
    close(fd);
    return r;
}

miser_status miser_proc_read_status(int pid, miser_proc_status *out)
{
    char path[64], buf[4096];
    if (pid > 0) snprintf(path, sizeof path, "/proc/%d/status", pid);
    else snprintf(path, sizeof path, "/proc/self/status");
    if (proc_read_file(path, buf, sizeof buf) < 0) return miser_error_set(MISER_ERR_IO, "%s: %s", path, strerror(errno));
    return miser_proc_parse_status(buf, out);
}

int proc_reset_hwm(pid_t pid)
{
    char path[64];
    if (pid) snprintf(path, sizeof path, "/proc/%d/clear_refs", (int)pid);
    else snprintf(path, sizeof path, "/proc/self/clear_refs");
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    int err = 0;
    if (write(fd, "5", 1) != 1) err = errno ? errno : EIO;
    close(fd);
    return err;
}

double prof_now(void) { return miser_now_s(); }

double prof_unix_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

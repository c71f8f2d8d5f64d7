/* Small platform services shared by the modules: a monotonic clock and
 * read-only file mappings (weights, vocabularies). */
#include "miser/alloc.h"
#include "miser/core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double miser_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

miser_status miser_file_map(const char *path, size_t min_size, int cat, miser_mapping *out)
{
    out->data = NULL;
    out->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return miser_error_set(MISER_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return miser_error_set(MISER_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return miser_error_set(MISER_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size < (uint64_t)(min_size ? min_size : 1)) {
        close(fd);
        if (min_size <= 1) return miser_error_set(MISER_ERR_FORMAT, "%s: empty file", path);
        return miser_error_set(MISER_ERR_FORMAT, "%s: file is %lld bytes, too short (its format needs at least %zu)", path,
                               (long long)sb.st_size, min_size);
    }
    size_t size = (size_t)sb.st_size;
    void *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file referenced */
    if (p == MAP_FAILED) return miser_error_set(MISER_ERR_IO, "%s: mmap: %s", path, strerror(e));
    out->data = p;
    out->size = size;
    miser_mem_note_mapped((miser_mem_category)cat, (int64_t)size);
    return MISER_OK;
}

void miser_file_unmap(miser_mapping *m, int cat)
{
    if (!m->data) return;
    munmap((void *)m->data, m->size);
    miser_mem_note_mapped((miser_mem_category)cat, -(int64_t)m->size);
    m->data = NULL;
    m->size = 0;
}

miser_status miser_file_write_atomic(const char *path, miser_write_fn fn, void *ctx)
{
    /* The rename below would replace whatever is at path: a device (/dev/full,
     * /dev/stdout), a FIFO or a directory would silently become a regular file.
     * Only a regular file (or nothing) may be replaced. */
    struct stat sb;
    if (lstat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return miser_error_set(MISER_ERR_IO, "%s: exists and is not a regular file; refusing to replace it", path);
    size_t n = strlen(path) + 16;
    char *tmp = miser_malloc(MISER_MEM_OTHER, n);
    if (!tmp) return MISER_ERR_NOMEM;
    snprintf(tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        miser_status st = miser_error_set(MISER_ERR_IO, "%s: cannot create a temporary file: %s", path, strerror(errno));
        miser_free(tmp);
        return st;
    }
    fchmod(fd, 0644); /* mkstemp's 0600 would surprise a user sharing reports */
    FILE *f = fdopen(fd, "w");
    if (!f) {
        miser_status st = miser_error_set(MISER_ERR_IO, "%s: %s", path, strerror(errno));
        close(fd);
        unlink(tmp);
        miser_free(tmp);
        return st;
    }
    miser_status st = fn(f, ctx);
    if (st) miser_error_prefix(st, "%s", path);
    if (!st && (fflush(f) || ferror(f) || fsync(fileno(f))))
        st = miser_error_set(MISER_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    if (fclose(f) && !st) st = miser_error_set(MISER_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    if (!st && rename(tmp, path)) st = miser_error_set(MISER_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (st) unlink(tmp);
    miser_free(tmp);
    return st;
}

/* Core: f16/bf16 conversions against exact IEEE values, allocator accounting
 * and fault injection, error messages. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miser/alloc.h"
#include "miser/core.h"

Test(core, f16_known_values)
{
    /* Bit patterns from the IEEE 754 binary16 definition. */
    cr_assert_eq(miser_f32_to_f16(1.0f), 0x3c00);
    cr_assert_eq(miser_f32_to_f16(-2.0f), 0xc000);
    cr_assert_eq(miser_f32_to_f16(65504.0f), 0x7bff);
    cr_assert_eq(miser_f32_to_f16(1e6f), 0x7c00);
    cr_assert_eq(miser_f32_to_f16(5.9604645e-8f), 0x0001); /* smallest subnormal */
    cr_assert_eq(miser_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie rounds to even */
    cr_assert_eq(miser_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);
    cr_assert_float_eq(miser_f16_to_f32(0x3555), 0.33325195f, 0);
    cr_assert_float_eq(miser_f16_to_f32(0x0001), 5.9604645e-8f, 0);
    cr_assert(isnan(miser_f16_to_f32(miser_f32_to_f16(NAN))));
}

Test(core, f16_roundtrip_all)
{
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = miser_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        cr_assert_eq(miser_f32_to_f16(f), h, "h=%04x", h);
    }
}

Test(core, bf16)
{
    cr_assert_eq(miser_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_float_eq(miser_bf16_to_f32(0x3f80), 1.0f, 0);
    cr_assert_eq(miser_f32_to_bf16(1.00390625f), 0x3f80); /* tie to even */
    cr_assert_eq(miser_f32_to_bf16(1.01171875f), 0x3f82);
}

Test(core, dtype_bytes)
{
    cr_assert_eq(miser_dtype_bytes(MISER_DTYPE_F32, 10), 40);
    cr_assert_eq(miser_dtype_bytes(MISER_DTYPE_BF16, 10), 20);
    cr_assert_eq(miser_dtype_bytes(MISER_DTYPE_Q8_0, 64), 68);
    cr_assert_eq(miser_dtype_bytes(MISER_DTYPE_Q8_0, 33), 0);
    cr_assert_eq(miser_dtype_bytes(MISER_DTYPE_F32, UINT64_MAX / 2), 0);
    miser_dtype d;
    cr_assert_eq(miser_dtype_parse("BF16", &d), 0);
    cr_assert_eq(d, MISER_DTYPE_BF16);
    cr_assert_neq(miser_dtype_parse("f8", &d), 0);
}

Test(core, allocator_accounting)
{
    miser_mem_stats before = miser_mem_get(MISER_MEM_SCRATCH);
    void *a = miser_malloc(MISER_MEM_SCRATCH, 1000);
    void *b = miser_aligned_alloc(MISER_MEM_SCRATCH, 4096, 5000);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_eq((uintptr_t)b % 4096, 0);
    cr_assert_eq(miser_mem_get(MISER_MEM_SCRATCH).current, before.current + 6000);
    a = miser_realloc(MISER_MEM_SCRATCH, a, 3000);
    cr_assert_eq(miser_alloc_size(a), 3000);
    miser_free(a);
    miser_free(b);
    miser_free(NULL);
    cr_assert_eq(miser_mem_get(MISER_MEM_SCRATCH).current, before.current);
    cr_assert_geq(miser_mem_get(MISER_MEM_SCRATCH).peak, before.current + 6000);
}

Test(core, fault_injection)
{
    miser_mem_fail_after(2);
    void *a = miser_malloc(MISER_MEM_OTHER, 8);
    void *b = miser_malloc(MISER_MEM_OTHER, 8);
    miser_mem_fail_after(0);
    cr_assert_not_null(a);
    cr_assert_null(b);
    cr_assert(strstr(miser_error_message(), "out of memory") != NULL);
    miser_free(a);
}

Test(core, error_prefix)
{
    miser_error_set(MISER_ERR_FORMAT, "bad header");
    miser_error_prefix(MISER_ERR_FORMAT, "%s", "model.safetensors");
    cr_assert_str_eq(miser_error_message(), "model.safetensors: bad header");
}

static miser_status write_hello(void *file, void *ctx)
{
    (void)ctx;
    return fputs("hello\n", (FILE *)file) < 0 ? MISER_ERR_IO : MISER_OK;
}

/* The atomic writer renames a temporary file over its target: over a FIFO or
 * a device that would silently turn it into a regular file (it once replaced
 * /dev/full on this machine). It must refuse and leave the target alone, and
 * still replace a regular file. */
Test(core, atomic_write_refuses_non_regular_targets)
{
    char dir[] = "/tmp/miser-core-XXXXXX";
    cr_assert(mkdtemp(dir));
    char fifo[256], dirpath[256], reg[256];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    snprintf(dirpath, sizeof dirpath, "%s/sub", dir);
    snprintf(reg, sizeof reg, "%s/file.txt", dir);
    cr_assert_eq(mkfifo(fifo, 0644), 0);
    cr_assert_eq(mkdir(dirpath, 0755), 0);
    cr_expect_eq(miser_file_write_atomic(fifo, write_hello, NULL), MISER_ERR_IO);
    cr_expect(strstr(miser_error_message(), "not a regular file"), "%s", miser_error_message());
    struct stat sb;
    cr_assert_eq(lstat(fifo, &sb), 0);
    cr_expect(S_ISFIFO(sb.st_mode), "the FIFO was replaced");
    cr_expect_eq(miser_file_write_atomic(dirpath, write_hello, NULL), MISER_ERR_IO);
    cr_assert_eq(lstat(dirpath, &sb), 0);
    cr_expect(S_ISDIR(sb.st_mode), "the directory was replaced");
    FILE *f = fopen(reg, "w");
    cr_assert(f);
    fputs("old\n", f);
    fclose(f);
    cr_expect_eq(miser_file_write_atomic(reg, write_hello, NULL), MISER_OK);
    char buf[16] = {0};
    f = fopen(reg, "r");
    cr_assert(f);
    cr_expect(fgets(buf, sizeof buf, f));
    fclose(f);
    cr_expect_str_eq(buf, "hello\n");
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    cr_expect_eq(n, 3, "no temporary file left behind (%d entries)", n);
    unlink(fifo);
    rmdir(dirpath);
    unlink(reg);
    rmdir(dir);
}

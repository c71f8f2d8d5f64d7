/* Pieces shared by `miser bench` and `miser compare` (both in src/cli). */
#ifndef MISER_BENCH_CLI_H
#define MISER_BENCH_CLI_H

#include <stddef.h>

/* Find or write (first use, progress on stderr) the synthetic GPT-2 medium
 * checkpoint; its directory goes to out. Returns 0 or an exit code. */
int miser_bench_synthetic_dir(const char *cmd, char *out, size_t cap);
/* Run argv[0] (a path) with argv, inheriting stdio; its exit code,
 * 128+signal, or -1 when it could not be started. */
int miser_bench_spawn(const char *cmd, char *const argv[]);
/* Path of this executable. */
void miser_bench_self_exe(char *buf, size_t cap);

#endif

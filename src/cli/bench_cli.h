/* Pieces shared by `miser bench` and `miser compare` (both in src/cli). */
#ifndef MISER_BENCH_CLI_H
#define MISER_BENCH_CLI_H

#include <stddef.h>

/* Find or write (first use, progress on stderr) the synthetic GPT-2 medium
 * checkpoint; its directory goes to out. Returns 0 or an exit code. */
int miser_bench_synthetic_dir(const char *cmd, char *out, size_t cap);
/* The checks `miser bench` and `miser compare` make before any run, the
 * same as `miser generate`'s: the checkpoint opens and validates (NULL
 * model_dir: the synthetic GPT-2 medium, checked against its preset and
 * the built-in vocabulary before it is written), each prompt passes
 * miser_cli_prompt_ids and leaves room under max_length, and max_length
 * fits the model's context. Returns 0, or the exit code with one line
 * printed. ids1/ids2 (may be NULL) receive the prompts' ids as "a,b,c"
 * (miser_free). */
int miser_bench_validate(const char *cmd, const char *model_dir, const char *prompt, const char *prompt2,
                         long long max_length, char **ids1, char **ids2);
/* Run argv[0] (a path) with argv, inheriting stdio; its exit code,
 * 128+signal, or -1 when it could not be started. */
int miser_bench_spawn(const char *cmd, char *const argv[]);
/* Path of this executable. */
void miser_bench_self_exe(char *buf, size_t cap);
/* Make model_dir's weights available at `precision` (a name
 * miser_dtype_parse takes: f32, f16, bf16, q8_0, q4_0, q4_k) in the
 * precision cache before any measured run, so no run pays for a conversion
 * (the runs then reopen the cache entry, as `miser generate --precision`).
 * A conversion or a note is said on stderr under `cmd`. Returns 0, or the
 * exit code with one line printed (2 an unknown precision, 3/1 the
 * conversion's failure). */
int miser_bench_prepare_precision(const char *cmd, const char *model_dir, const char *precision);

#endif

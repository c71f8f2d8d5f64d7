/* Einsum equation parsing: explicit and implicit outputs, "..." broadcast
 * dimensions (internally labelled '0'..'5'), validation with clear errors. */
#include "miser/graph.h"

#include <ctype.h>
#include <string.h>

static miser_status bad(const char *eq, const char *why)
{
    return miser_error_set(MISER_ERR_INVALID, "einsum '%s': %s", eq, why);
}

/* Expand one term ("ab...c") for an operand of `rank` dims into labels.
 * n_ell_max: labels '0'.. used for the ellipsis, right-aligned. */
static miser_status expand(const char *eq, const char *term, size_t len, int32_t rank, int n_ell_max,
                           char *labels, int32_t *out_rank, int *n_ell)
{
    int explicit_n = 0, has_ell = 0;
    for (size_t i = 0; i < len; i++) {
        if (term[i] == '.') {
            if (has_ell || i + 2 >= len + 0 || len - i < 3 || term[i + 1] != '.' || term[i + 2] != '.')
                return bad(eq, "'.' must appear only as one '...' per term");
            has_ell = 1;
            i += 2;
        } else if (isalpha((unsigned char)term[i])) explicit_n++;
        else if (term[i] != ' ') return bad(eq, "labels must be letters");
    }
    int ell = 0;
    if (rank >= 0) {
        ell = rank - explicit_n;
        if (ell < 0 || (!has_ell && ell != 0))
            return bad(eq, "the number of labels in a term does not match its operand's rank");
    } else ell = has_ell ? n_ell_max : 0; /* output term */
    if (explicit_n + ell > MISER_MAX_DIMS) return bad(eq, "too many dimensions");
    int k = 0;
    for (size_t i = 0; i < len; i++) {
        if (term[i] == '.') {
            for (int e = 0; e < ell; e++) labels[k++] = (char)('0' + (n_ell_max - ell) + e);
            i += 2;
        } else if (term[i] != ' ') labels[k++] = term[i];
    }
    *out_rank = k;
    if (n_ell) *n_ell = ell;
    return MISER_OK;
}

miser_status miser_einsum_parse(const char *eq, int32_t n_ops, const int32_t *ranks, miser_einsum *out)
{
    memset(out, 0, sizeof *out);
    if (!eq || n_ops < 1 || n_ops > 2) return bad(eq ? eq : "(null)", "one or two operands supported");
    const char *arrow = strstr(eq, "->");
    size_t in_len = arrow ? (size_t)(arrow - eq) : strlen(eq);
    if (arrow && strstr(arrow + 2, "->")) return bad(eq, "more than one '->'");
    const char *terms[2];
    size_t lens[2];
    int nt = 0;
    const char *p = eq, *end = eq + in_len;
    while (p <= end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        const char *e = c ? c : end;
        if (nt == 2) return bad(eq, "more operands in the equation than given");
        terms[nt] = p;
        lens[nt] = (size_t)(e - p);
        nt++;
        if (!c) break;
        p = c + 1;
    }
    if (nt != n_ops) return bad(eq, "the number of terms does not match the number of operands");
    int n_ell_max = 0;
    for (int i = 0; i < nt; i++) {
        int explicit_n = 0;
        for (size_t j = 0; j < lens[i]; j++) explicit_n += isalpha((unsigned char)terms[i][j]) != 0;
        if (memmem(terms[i], lens[i], "...", 3) && ranks[i] - explicit_n > n_ell_max)
            n_ell_max = ranks[i] - explicit_n;
    }
    out->n_ops = n_ops;
    for (int i = 0; i < nt; i++) {
        miser_status st = expand(eq, terms[i], lens[i], ranks[i], n_ell_max, out->labels[i], &out->rank[i], NULL);
        if (st) return st;
        for (int a = 0; a < out->rank[i]; a++)
            for (int b = a + 1; b < out->rank[i]; b++)
                if (out->labels[i][a] == out->labels[i][b])
                    return miser_error_set(MISER_ERR_UNSUPPORTED,
                                           "einsum '%s': repeated label '%c' in one operand (diagonals) is not supported",
                                           eq, out->labels[i][a]);
    }
    if (arrow) {
        const char *o = arrow + 2;
        if (memmem(o, strlen(o), "...", 3) == NULL) {
            /* ellipsis dims in inputs but not in the output are summed out */
        }
        miser_status st = expand(eq, o, strlen(o), -1, n_ell_max, out->out, &out->out_rank, NULL);
        if (st) return st;
        for (int a = 0; a < out->out_rank; a++) {
            int found = 0;
            for (int i = 0; i < nt; i++) found |= memchr(out->labels[i], out->out[a], (size_t)out->rank[i]) != NULL;
            if (!found) return bad(eq, "an output label does not appear in any input");
            for (int b = a + 1; b < out->out_rank; b++)
                if (out->out[a] == out->out[b]) return bad(eq, "an output label appears twice");
        }
    } else {
        /* implicit: ellipsis dims first, then labels that appear exactly once, sorted */
        int k = 0;
        for (int e = 0; e < n_ell_max; e++) out->out[k++] = (char)('0' + e);
        for (int ch = 'A'; ch <= 'z'; ch++) {
            if (!isalpha(ch)) continue;
            int count = 0;
            for (int i = 0; i < nt; i++)
                for (int a = 0; a < out->rank[i]; a++) count += out->labels[i][a] == ch;
            if (count == 1) {
                if (k == MISER_MAX_DIMS) return bad(eq, "too many output dimensions");
                out->out[k++] = (char)ch;
            }
        }
        out->out_rank = k;
    }
    return MISER_OK;
}

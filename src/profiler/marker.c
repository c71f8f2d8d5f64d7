/* Marker parsing: the one-line pipe protocol ("stage NAME key=value ...",
 * docs/profiler.md) and the study's own stdout lines ("[STAGE] NAME: ..."). */
#include "internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static int key_char(char c, int first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!first && ((c >= '0' && c <= '9') || c == '.'));
}

miser_status miser_marker_parse(const char *line, char *scratch, const char **name, const char **desc,
                                miser_kv *kv_out, size_t max_kv, size_t *nkv)
{
    *nkv = 0;
    *name = NULL;
    *desc = NULL;
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    memcpy(scratch, line, len);
    scratch[len] = 0;
    char *s = scratch;
    if (strncmp(s, "stage ", 6)) return miser_error_set(MISER_ERR_FORMAT, "marker: line does not start with 'stage '");
    s += 6;
    while (*s == ' ') s++;
    char *nm = s;
    while (*s && *s != ' ') s++;
    if (*s) *s++ = 0;
    if (!prof_valid_stage_name(nm))
        return miser_error_set(MISER_ERR_FORMAT, "marker: bad stage name '%.80s' (1-63 of A-Z a-z 0-9 _ . : -)", nm);
    *name = nm;
    for (;;) {
        while (*s == ' ') s++;
        if (!*s) break;
        char *key = s;
        if (!key_char(*s, 1)) return miser_error_set(MISER_ERR_FORMAT, "marker: expected key=value at '%.40s'", s);
        while (key_char(*s, 0)) s++;
        if (*s != '=') return miser_error_set(MISER_ERR_FORMAT, "marker: expected '=' after key at '%.40s'", key);
        *s++ = 0;
        char *val;
        if (*s == '"') {
            /* Decode in place: the output never outruns the input. */
            char *r = ++s, *w = s;
            val = w;
            for (;;) {
                if (!*r) return miser_error_set(MISER_ERR_FORMAT, "marker: unterminated quote for key '%s'", key);
                if (*r == '"') break;
                if (*r == '\\') {
                    r++;
                    switch (*r) {
                    case 'n': *w++ = '\n'; break;
                    case 't': *w++ = '\t'; break;
                    case '\\': *w++ = '\\'; break;
                    case '"': *w++ = '"'; break;
                    default: return miser_error_set(MISER_ERR_FORMAT, "marker: bad escape '\\%c' for key '%s'", *r ? *r : '0', key);
                    }
                    r++;
                } else *w++ = *r++;
            }
            s = r + 1;
            *w = 0;
            if (*s && *s != ' ') return miser_error_set(MISER_ERR_FORMAT, "marker: text after closing quote of '%s'", key);
        } else {
            val = s;
            while (*s && *s != ' ') {
                if (*s == '"') return miser_error_set(MISER_ERR_FORMAT, "marker: stray quote in value of '%s'", key);
                s++;
            }
        }
        if (*s) *s++ = 0;
        if (!strcmp(key, "desc")) {
            *desc = val;
            continue;
        }
        if (*nkv >= max_kv) return miser_error_set(MISER_ERR_FORMAT, "marker: more than %zu key=value pairs", max_kv);
        kv_out[*nkv].key = key;
        kv_out[*nkv].value = val;
        (*nkv)++;
    }
    return MISER_OK;
}

int miser_marker_parse_stage_line(const char *line, char *name, char *desc, size_t desc_cap, double *rss_mb,
                                  double *swap_mb)
{
    if (strncmp(line, "[STAGE] ", 8)) return 0;
    const char *s = line + 8;
    const char *colon = strchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= MISER_STAGE_NAME_MAX) return 0;
    char nm[MISER_STAGE_NAME_MAX];
    memcpy(nm, s, (size_t)(colon - s));
    nm[colon - s] = 0;
    if (!prof_valid_stage_name(nm)) return 0;
    char *end;
    double rss = strtod(colon + 1, &end);
    if (end == colon + 1 || strncmp(end, " MB (swap: ", 11)) return 0;
    const char *sw = end + 11;
    double swap = strtod(sw, &end);
    if (end == sw || strncmp(end, " MB)", 4)) return 0;
    const char *d = end + 4;
    if (!strncmp(d, " - ", 3)) d += 3;
    else if (*d && *d != '\n' && *d != '\r') return 0;
    size_t dl = strlen(d);
    while (dl && (d[dl - 1] == '\n' || d[dl - 1] == '\r')) dl--;
    if (desc_cap) {
        if (dl >= desc_cap) dl = desc_cap - 1;
        memcpy(desc, d, dl);
        desc[dl] = 0;
    }
    strcpy(name, nm);
    if (rss_mb) *rss_mb = rss;
    if (swap_mb) *swap_mb = swap;
    return 1;
}

/* Chart helpers shared by the profiler's SVG timeline and the bench
 * reports (see chart.h): escaping, number formats, ticks, label placement and
 * the stage-timeline panel. Every figure drawn comes from the profile; the
 * only estimates are text widths, kept on the wide side so that boxes
 * computed here contain what a browser renders. */
#include "chart.h"

#include "internal.h"
#include "miser/alloc.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FONT 11.0  /* px: tick values, labels, keys */
#define ROW_H 14.0 /* px between label rows */
#define LABEL_GAP 4.0
#define MAX_LABELS 400 /* more marks than rows of labels could ever hold: listed instead */
#define MAX_LISTED 60  /* stages listed by name under the axis; the rest counted */

/* ---------- text ---------- */

/* Length of the valid UTF-8 sequence at s (1..4), 0 when s does not start one. */
static size_t utf8_seq(const unsigned char *s, size_t avail)
{
    unsigned c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) n = 4, cp = c & 0x07;
    else return 0;
    if (n > avail) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static void xml_textn(FILE *f, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        size_t n = utf8_seq(s + i, len - i);
        if (!n) {
            fputs("\xef\xbf\xbd", f); /* U+FFFD for a byte that is not UTF-8 */
            i++;
            continue;
        }
        switch (c) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            if (c >= 0x20 || c == '\t') fwrite(s + i, 1, n, f);
        }
        i += n;
    }
}

void miser_chart_xml_text(FILE *f, const char *s)
{
    if (s) xml_textn(f, s, strlen(s));
}

/* Advance of one character in em: at least DejaVu Sans' (the widest of the
 * common sans-serif faces), e.g. M 0.86, upper case about 0.7, digits 0.64. */
static double char_em(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (n > 1) return 1.0;
    if (c == 'M' || c == 'W' || c == 'm' || c == 'w' || c == '@' || c == '%') return 1.0;
    if (c >= 'A' && c <= 'Z') return 0.8;
    if (c == 'i' || c == 'l' || c == 'j' || c == '.' || c == ',' || c == ':' || c == ';' || c == '\'' || c == '|' ||
        c == '!')
        return 0.36;
    if (c == ' ') return 0.34;
    if (c == 'f' || c == 't' || c == 'r' || c == '(' || c == ')' || c == '[' || c == ']' || c == '-') return 0.45;
    if (c >= '0' && c <= '9') return 0.66;
    return 0.66;
}

double miser_chart_text_width(const char *str, double font_px)
{
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    size_t len = strlen((const char *)s);
    double em = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(s + i, len - i);
        if (!n) n = 1;
        em += char_em(s + i, n);
        i += n;
    }
    return em * font_px;
}

/* Bytes of s (whole characters) whose width fits in max_w px, leaving room
 * for an ellipsis when s is cut; strlen(s) when all of it fits. */
static size_t text_fit(const char *str, double font_px, double max_w)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t len = strlen(str);
    if (miser_chart_text_width(str, font_px) <= max_w) return len;
    double w = font_px; /* the ellipsis */
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_seq(s + i, len - i);
        if (!n) n = 1;
        double cw = char_em(s + i, n) * font_px;
        if (w + cw > max_w) break;
        w += cw;
        i += n;
    }
    return i;
}

/* ---------- numbers ---------- */

double miser_chart_nice_step(double range, int ticks)
{
    if (!(range > 0) || !isfinite(range)) return 1;
    double raw = range / (ticks > 0 ? ticks : 1), p = pow(10, floor(log10(raw))), r = raw / p;
    return (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * p;
}

void miser_chart_fmt_sig(char *b, size_t cap, double v, int sig)
{
    if (!isfinite(v)) {
        snprintf(b, cap, "n/a");
        return;
    }
    if (v == 0) {
        snprintf(b, cap, "0");
        return;
    }
    if (sig < 1) sig = 1;
    int mag = (int)floor(log10(fabs(v)));
    int dec = sig - 1 - mag;
    if (dec < 0) dec = 0;
    if (dec > 12) dec = 12;
    snprintf(b, cap, "%.*f", dec, v);
    /* Rounding may carry into a new digit (9.996 -> "10.00"): one decimal fewer. */
    double back = atof(b);
    if (dec > 0 && fabs(back) >= pow(10, mag + 1)) snprintf(b, cap, "%.*f", dec - 1, v);
}

void miser_chart_fmt_seconds(char *b, size_t cap, double s)
{
    char n[48];
    if (!isfinite(s)) snprintf(b, cap, "n/a");
    else if (s == 0) snprintf(b, cap, "0 s");
    else if (fabs(s) >= 0.9995) miser_chart_fmt_sig(n, sizeof n, s, 3), snprintf(b, cap, "%s s", n);
    else if (fabs(s) >= 0.9995e-3) miser_chart_fmt_sig(n, sizeof n, s * 1e3, 3), snprintf(b, cap, "%s ms", n);
    else miser_chart_fmt_sig(n, sizeof n, s * 1e6, 3), snprintf(b, cap, "%s \xc2\xb5s", n);
}

/* A tick value: as many decimals as the step needs (steps are 1, 2 or 5 x 10^k). */
static void fmt_tick(char *b, size_t cap, double v, double step)
{
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 9) dec = 9;
    if (fabs(v) < step * 1e-6) v = 0;
    snprintf(b, cap, "%.*f", dec, v);
}

/* ---------- labels ---------- */

static int box_free(const miser_chart_label *l, size_t n, size_t self, int row, double left, double w)
{
    for (size_t j = 0; j < n; j++) {
        if (j == self || l[j].row != row) continue;
        if (left < l[j].left + l[j].width + LABEL_GAP && l[j].left < left + w + LABEL_GAP) return 0;
    }
    return 1;
}

static double box_left(double x, double w, double lo, double hi)
{
    double left = x - w / 2;
    if (left + w > hi) left = hi - w;
    if (left < lo) left = lo;
    return left;
}

/* The free position in row r nearest to want (a box's left edge): want
 * itself, or just beside a box already there. Returns the displacement
 * (HUGE_VAL when nothing is free) and the position in *at. */
static double row_slot(const miser_chart_label *l, size_t n, size_t self, int r, double want, double w, double lo,
                       double hi, double *at)
{
    double best = HUGE_VAL;
    for (size_t j = 0; j <= n; j++) {
        double c[2];
        int nc = 0;
        if (j == n) c[nc++] = want;
        else if (j != self && l[j].row == r) {
            c[nc++] = l[j].left + l[j].width + LABEL_GAP;
            c[nc++] = l[j].left - LABEL_GAP - w;
        }
        for (int k = 0; k < nc; k++) {
            double left = c[k];
            if (left < lo - 1e-9 || left + w > hi + 1e-9) continue;
            if (fabs(left - want) >= best || !box_free(l, n, self, r, left, w)) continue;
            best = fabs(left - want);
            *at = left;
        }
    }
    return best;
}

int miser_chart_layout_labels(miser_chart_label *l, size_t n, double lo, double hi, double font_px, int max_rows)
{
    int rows = 0;
    for (size_t i = 0; i < n; i++) l[i].row = -1, l[i].shortened = 0, l[i].left = l[i].width = 0;
    /* Left to right by x, so a crowded run of labels climbs rows in order.
     * In each row a label may move sideways (a leader joins it to its x):
     * by up to its own width with its full text, by up to 8 em with the
     * short text. */
    for (size_t done = 0; done < n; done++) {
        size_t i = n;
        for (size_t k = 0; k < n; k++)
            if (l[k].row == -1 && l[k].width == 0 && (i == n || l[k].x < l[i].x)) i = k;
        if (i == n) break;
        for (int pass = 0; pass < 2 && l[i].row < 0; pass++) {
            const char *t = pass ? l[i].short_text : l[i].text;
            if (!t) continue;
            double w = miser_chart_text_width(t, font_px) + 2;
            double want = box_left(l[i].x, w, lo, hi), reach = pass ? 8 * font_px : w;
            /* The row where the label moves least, a row up counting as 2 em of move. */
            double best = HUGE_VAL, best_at = want;
            int best_r = -1;
            for (int r = 0; r < max_rows; r++) {
                double at = want, d = row_slot(l, n, i, r, want, w, lo, hi, &at);
                if (d <= reach && d + 2 * font_px * r < best) best = d + 2 * font_px * r, best_at = at, best_r = r;
            }
            if (best_r >= 0) {
                l[i].row = best_r;
                l[i].shortened = pass;
                l[i].left = best_at;
                l[i].width = w;
                if (best_r + 1 > rows) rows = best_r + 1;
            }
        }
        if (l[i].row < 0) l[i].width = -1; /* tried: not placed */
    }
    for (size_t i = 0; i < n; i++)
        if (l[i].row < 0) l[i].width = 0;
    return rows;
}

/* ---------- the timeline panel ---------- */

void miser_chart_timeline_extent(const miser_profile *p, double *tmax_s, double *ymax_mb)
{
    double tmax = 0, ymax = 0;
    for (size_t i = 0; i < p->nstages; i++) {
        const miser_stage_record *s = &p->stages[i];
        if (s->t_s > tmax) tmax = s->t_s;
        int64_t kb[4] = {s->rss_kb, s->peak_rss_kb, s->peak_sampled_kb, s->reported_rss_kb};
        for (int k = 0; k < 4; k++)
            if (kb[k] > 0 && kb[k] / 1024.0 > ymax) ymax = kb[k] / 1024.0;
    }
    for (size_t i = 0; i < p->nsamples; i++) {
        if (p->samples[i].t_s > tmax) tmax = p->samples[i].t_s;
        if (p->samples[i].rss_kb > 0 && p->samples[i].rss_kb / 1024.0 > ymax) ymax = p->samples[i].rss_kb / 1024.0;
    }
    *tmax_s = tmax;
    *ymax_mb = ymax;
}

static int64_t stage_value(const miser_stage_record *s, int k)
{
    return k == 0 ? s->rss_kb : k == 1 ? s->anon_kb : k == 2 ? s->file_kb : s->swap_kb;
}

static int64_t sample_value(const miser_sample *s, int k)
{
    return k == 0 ? s->rss_kb : k == 1 ? s->anon_kb : k == 2 ? s->file_kb : s->swap_kb;
}

static const struct { const char *name, *cls, *color; double width; } series[4] = {
    {"RSS", "rss", "#222222", 1.8},
    {"anon", "anon", "#2471a3", 1.3},
    {"file-backed", "file", "#d68910", 1.3},
    {"swap", "swap", "#8e44ad", 1.3}};

/* One series as a step path: M at the first reading, then for each next
 * reading H to its time and V to its value. Readings are the samples and
 * the marks' snapshots merged by time. */
static void write_series(FILE *f, const miser_profile *p, int k, double x0, double pw, double xmax, double top,
                         double ph, double yend)
{
#define SX(t) (x0 + (t) / xmax * pw)
#define SY(v) (top + ph - (v) / 1024.0 / yend * ph)
    size_t i = 0, j = 0;
    int started = 0;
    double lx = 0, ly = 0;
    while (i < p->nsamples || j < p->nstages) {
        double t;
        int64_t v;
        if (j >= p->nstages || (i < p->nsamples && p->samples[i].t_s <= p->stages[j].t_s)) {
            t = p->samples[i].t_s;
            v = sample_value(&p->samples[i++], k);
        } else {
            const miser_stage_record *s = &p->stages[j++];
            if (s->implicit) continue;
            t = s->t_s;
            v = stage_value(s, k);
        }
        if (v < 0) continue;
        double x = SX(t), y = SY((double)v);
        if (!started) {
            fprintf(f, "<path class=\"series series-%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" d=\"M%.2f %.2f",
                    series[k].cls, series[k].color, series[k].width, x, y);
            started = 1;
        } else {
            if (x != lx) fprintf(f, " H%.2f", x);
            if (y != ly) fprintf(f, " V%.2f", y);
        }
        lx = x;
        ly = y;
    }
    if (started) fputs("\"/>\n", f);
#undef SX
#undef SY
}

/* The key under the axis: swatches and their text, flowed in lines. */
typedef struct key_item {
    int kind; /* 0 line, 1 dot, 2 ring */
    const char *color, *dash, *text;
} key_item;

static size_t key_items(const miser_profile *p, key_item *it)
{
    size_t n = 0;
    int kinds[8] = {0}, reported = 0;
    for (size_t i = 0; i < p->nstages; i++) {
        if ((unsigned)p->stages[i].peak_kind < 8 && p->stages[i].peak_rss_kb >= 0) kinds[p->stages[i].peak_kind] = 1;
        if (p->stages[i].reported_rss_kb >= 0) reported = 1;
    }
    for (int k = 0; k < 4; k++) it[n++] = (key_item){0, series[k].color, NULL, series[k].name};
    if (kinds[MISER_PEAK_EXACT]) it[n++] = (key_item){0, "#c0392b", "5,3", "interval peak, exact"};
    if (kinds[MISER_PEAK_UPPER_BOUND])
        it[n++] = (key_item){0, "#c0392b", "8,2,2,2", "interval peak, upper bound (sum of the processes' peaks)"};
    if (kinds[MISER_PEAK_LOWER_BOUND] || kinds[MISER_PEAK_SAMPLED] || kinds[MISER_PEAK_UNKNOWN])
        it[n++] = (key_item){0, "#c0392b", "2,2", "interval peak, sampled (a lower bound)"};
    it[n++] = (key_item){1, "#222", NULL, "miser's reading at the mark"};
    if (reported) it[n++] = (key_item){2, "#16a085", NULL, "the command's own [STAGE] figure (earlier: the delay)"};
    return n;
}

static double key_item_width(const key_item *k) { return 24 + miser_chart_text_width(k->text, FONT) + 14; }

/* The stages shown by number or not at all, listed "k = NAME (t)" in lines
 * flowed over pw: at most MAX_LISTED of them, then how many more. With f,
 * drawn from (x, y), the first line's baseline. Returns the number of lines. */
static int stage_list(FILE *f, const miser_profile *p, const miser_chart_label *lab, size_t nlab, double x, double y,
                      double pw)
{
    size_t n = p->nstages, shown = 0, rest = 0;
    int lines = 0;
    double lx = 0;
    for (size_t i = 0; i <= n; i++) {
        char item[200], ts[48];
        if (i < n) {
            if (i < nlab && lab[i].row >= 0 && !lab[i].shortened) continue;
            if (shown == MAX_LISTED) {
                rest++;
                continue;
            }
            miser_chart_fmt_seconds(ts, sizeof ts, p->stages[i].t_s);
            snprintf(item, sizeof item, "%zu = %s (%s)", i + 1, p->stages[i].name, ts);
            shown++;
        } else if (rest)
            snprintf(item, sizeof item, "and %zu more marks (each band's tooltip names its stage)", rest);
        else
            break;
        double w = miser_chart_text_width(item, FONT) + 14;
        if (!lines || lx + w > pw) lines++, lx = 0;
        if (f) {
            fprintf(f, "<text class=\"stage-key\" x=\"%.2f\" y=\"%.2f\" fill=\"#333\">", x + lx, y + (lines - 1) * ROW_H);
            miser_chart_xml_text(f, item);
            fputs("</text>\n", f);
        }
        lx += w;
    }
    return lines;
}

static const char *peak_dash(const miser_stage_record *s)
{
    return s->peak_kind == MISER_PEAK_EXACT ? "5,3" : s->peak_kind == MISER_PEAK_UPPER_BOUND ? "8,2,2,2" : "2,2";
}

miser_status miser_chart_timeline(FILE *f, const miser_profile *p, const miser_chart_timeline_opts *o, double *height)
{
    const double L = 64, R = 16, MAX_ROWS = 6;
    double pw = o->width - L - R, ph = o->plot_height;
    double tmax, ymax;
    miser_chart_timeline_extent(p, &tmax, &ymax);
    if (o->tmax_s > 0) tmax = o->tmax_s;
    if (o->ymax_mb > 0) ymax = o->ymax_mb;
    /* The axes' tick loops end at a finite extent: a value the loader let
     * through, or a caller's option, never makes them run forever. */
    if (!(tmax > 0) || !(tmax < 1e12)) tmax = tmax >= 1e12 ? 1e12 : 1;
    if (!(ymax > 0) || !(ymax < 1e15)) ymax = ymax >= 1e15 ? 1e15 : 1;
    int in_ms = tmax < 2;
    double tunit = in_ms ? 1000 : 1;
    double tstep = miser_chart_nice_step(tmax * tunit, 8) / tunit;
    double xmax = ceil(tmax / tstep - 1e-9) * tstep;
    double ystep = miser_chart_nice_step(ymax, 5);
    double yend = ceil(ymax * 1.05 / ystep - 1e-9) * ystep; /* headroom: a line never runs along the frame */
    double x0 = o->x + L;

    /* Stage labels: placed first, since their rows decide where the plot starts. */
    size_t n = p->nstages;
    miser_chart_label *lab = miser_calloc(MISER_MEM_PROFILER, n ? n : 1, sizeof *lab + 24);
    if (!lab) return miser_error_set(MISER_ERR_NOMEM, "report: no memory for the timeline's labels");
    char(*num)[24] = (char(*)[24])(lab + (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        snprintf(num[i], sizeof num[i], "%zu", i + 1);
        lab[i].text = p->stages[i].name;
        lab[i].short_text = num[i];
        lab[i].x = x0 + p->stages[i].t_s / xmax * pw;
    }
    /* Past MAX_LABELS marks no row could hold them: all go to the list. */
    size_t nlab = n <= MAX_LABELS ? n : 0;
    int rows = miser_chart_layout_labels(lab, nlab, o->x + 2, o->x + o->width - 2, FONT, (int)MAX_ROWS);
    int list_lines = stage_list(NULL, p, lab, nlab, 0, 0, pw);
    double lx;

    key_item keys[10];
    size_t nkeys = o->series_key ? key_items(p, keys) : 0;
    int key_lines = 0;
    lx = 0;
    for (size_t k = 0; k < nkeys; k++) {
        double w = key_item_width(&keys[k]);
        if (!k || lx + w > pw) key_lines++, lx = 0;
        lx += w;
    }

    double y = o->y;
    double title_y = y + 14;
    if (o->title) y += 20;
    double top = y + rows * ROW_H + 8;
    double bottom = top + ph;
    double cur = bottom + 36;
    double key_y = cur + 12;
    cur += key_lines * ROW_H + (key_lines ? 6 : 0);
    double list_y = cur + 12;
    cur += list_lines * ROW_H + (list_lines ? 4 : 0);
    if (height) *height = cur - o->y + 4;
    if (!f) {
        miser_free(lab);
        return MISER_OK;
    }
#define X(t) (x0 + (t) / xmax * pw)
#define Y(v) (top + ph - (v) / yend * ph)
    fputs("<g class=\"timeline\">\n", f);
    if (o->title) {
        fprintf(f, "<text class=\"panel-title\" x=\"%.2f\" y=\"%.2f\" font-size=\"13\" font-weight=\"bold\" fill=\"%s\">",
                o->x + 4, title_y, o->title_color ? o->title_color : "#222");
        miser_chart_xml_text(f, o->title);
        fputs("</text>\n", f);
    }
    /* Interval bands: (previous mark, mark] is named by the mark. */
    static const char *band[] = {"#eef3fb", "#fbf3e6"};
    double prev = 0;
    for (size_t i = 0; i < n; i++) {
        const miser_stage_record *s = &p->stages[i];
        double bx0 = X(prev), bx1 = X(s->t_s);
        char a[48], b[48], d[48];
        miser_chart_fmt_seconds(a, sizeof a, prev);
        miser_chart_fmt_seconds(b, sizeof b, s->t_s);
        fputs("<g class=\"band\"><title>", f);
        miser_chart_xml_text(f, s->name);
        fprintf(f, ": %s to %s", a, b);
        if (s->rss_kb >= 0) miser_chart_fmt_sig(d, sizeof d, s->rss_kb / 1024.0, 3), fprintf(f, ", RSS at the mark %s MB", d);
        if (s->peak_rss_kb >= 0)
            miser_chart_fmt_sig(d, sizeof d, s->peak_rss_kb / 1024.0, 3),
                fprintf(f, ", interval peak %s MB (%s)", d, miser_peak_kind_name(s->peak_kind));
        if (s->reported_rss_kb >= 0)
            miser_chart_fmt_sig(d, sizeof d, s->reported_rss_kb / 1024.0, 3),
                fprintf(f, ", the command's own figure %s MB", d);
        if (s->description && s->description[0]) fputs(" - ", f), miser_chart_xml_text(f, s->description);
        fprintf(f, "</title><rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"/>", bx0, top,
                bx1 - bx0 > 0 ? bx1 - bx0 : 0, ph, band[i % 2]);
        if (s->peak_rss_kb >= 0 && bx1 > bx0)
            fprintf(f, "<line class=\"peak\" x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#c0392b\" "
                       "stroke-width=\"1.5\" stroke-dasharray=\"%s\"/>",
                    bx0, Y(s->peak_rss_kb / 1024.0), bx1, Y(s->peak_rss_kb / 1024.0), peak_dash(s));
        fputs("</g>\n", f);
        prev = s->t_s;
    }
    /* Grid and tick values. */
    char tb[48];
    for (int k = 0; k < 64; k++) {
        double v = k * ystep;
        if (v > yend + ystep * 1e-6) break;
        fmt_tick(tb, sizeof tb, v, ystep);
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#d5d5d5\" stroke-width=\"0.6\"/>"
                   "<text class=\"tick tick-y\" x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\">%s</text>\n",
                x0, Y(v), x0 + pw, Y(v), x0 - 5, Y(v) + 4, tb);
    }
    for (int k = 0; k < 64; k++) {
        double t = k * tstep;
        if (t > xmax + tstep * 1e-6) break;
        fmt_tick(tb, sizeof tb, t * tunit, tstep * tunit);
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#333\"/>"
                   "<text class=\"tick tick-x\" x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">%s</text>\n",
                X(t), bottom, X(t), bottom + 4, X(t), bottom + 15, tb);
    }
    fprintf(f, "<text class=\"axis-title\" x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">time since start (%s)</text>\n",
            x0 + pw / 2, bottom + 30, in_ms ? "ms" : "s");
    fprintf(f, "<text class=\"axis-title\" transform=\"translate(%.2f,%.2f) rotate(-90)\" text-anchor=\"middle\">"
               "memory (MB = MiB)</text>\n",
            o->x + 16, top + ph / 2);
    /* Mark lines, the series, the readings at the marks. */
    for (size_t i = 0; i < n; i++)
        fprintf(f, "<line class=\"mark\" x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#888\" stroke-width=\"0.8\"/>\n",
                lab[i].x, top - 4, lab[i].x, bottom);
    for (int k = 3; k >= 0; k--) write_series(f, p, k, x0, pw, xmax, top, ph, yend);
    for (size_t i = 0; i < n; i++) {
        const miser_stage_record *s = &p->stages[i];
        if (s->implicit || s->rss_kb < 0) continue;
        char v[48], t[48];
        miser_chart_fmt_sig(v, sizeof v, s->rss_kb / 1024.0, 3);
        miser_chart_fmt_seconds(t, sizeof t, s->t_s);
        fprintf(f, "<circle class=\"reading\" cx=\"%.2f\" cy=\"%.2f\" r=\"2.8\" fill=\"#222\"><title>", X(s->t_s),
                Y(s->rss_kb / 1024.0));
        miser_chart_xml_text(f, s->name);
        fprintf(f, ": RSS %s MB at %s (miser's reading at the mark)</title></circle>\n", v, t);
    }
    /* The command's own figure from its [STAGE] line, where it was taken:
     * report_delay_s before miser's reading (at the mark when unknown). */
    for (size_t i = 0; i < n; i++) {
        const miser_stage_record *s = &p->stages[i];
        if (s->reported_rss_kb < 0) continue;
        double delay = isfinite(s->report_delay_s) && s->report_delay_s > 0 ? s->report_delay_s : 0;
        double tx = s->t_s - delay > 0 ? s->t_s - delay : 0, ry = Y(s->reported_rss_kb / 1024.0);
        char v[48], d[48], m[48];
        miser_chart_fmt_sig(v, sizeof v, s->reported_rss_kb / 1024.0, 3);
        if (delay > 0)
            fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#16a085\" stroke-width=\"1\"/>", X(tx), ry,
                    X(s->t_s), ry);
        fprintf(f, "<circle class=\"reported\" cx=\"%.2f\" cy=\"%.2f\" r=\"4\" fill=\"none\" stroke=\"#16a085\" "
                   "stroke-width=\"1.6\"><title>",
                X(tx), ry);
        miser_chart_xml_text(f, s->name);
        fprintf(f, ": the command's own [STAGE] figure %s MB", v);
        if (s->rss_kb >= 0) {
            miser_chart_fmt_sig(m, sizeof m, s->rss_kb / 1024.0, 3);
            if (isfinite(s->report_delay_s)) {
                miser_chart_fmt_seconds(d, sizeof d, s->report_delay_s);
                fprintf(f, "; miser read %s MB at receipt, %s later", m, d);
            } else
                fprintf(f, "; miser read %s MB at receipt (delay unknown)", m);
        }
        fputs("</title></circle>\n", f);
    }
    fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" stroke=\"#333\"/>\n", x0, top, pw,
            ph);
    /* Stage labels, with a leader from each box to its mark. */
    for (size_t i = 0; i < nlab; i++) {
        if (lab[i].row < 0) continue;
        double by = top - 4 - lab[i].row * ROW_H; /* box bottom */
        double ax = lab[i].x < lab[i].left ? lab[i].left : lab[i].x > lab[i].left + lab[i].width ? lab[i].left + lab[i].width : lab[i].x;
        fprintf(f, "<polyline fill=\"none\" stroke=\"#777\" stroke-width=\"0.8\" points=\"%.2f,%.2f %.2f,%.2f\"/>", ax,
                by - 1, lab[i].x, top - 4);
        fprintf(f, "<text class=\"stage-label\" x=\"%.2f\" y=\"%.2f\" fill=\"#333\" stroke=\"#fff\" stroke-width=\"3\" "
                   "paint-order=\"stroke\"><title>",
                lab[i].left + 1, by - 3);
        miser_chart_xml_text(f, p->stages[i].name);
        fputs("</title>", f);
        miser_chart_xml_text(f, lab[i].shortened ? lab[i].short_text : lab[i].text);
        fputs("</text>\n", f);
    }
    lx = 0;
    int line = -1;
    for (size_t k = 0; k < nkeys; k++) {
        const key_item *ki = &keys[k];
        double w = key_item_width(ki);
        if (line < 0 || lx + w > pw) line++, lx = 0;
        double kx = x0 + lx, ky = key_y + line * ROW_H;
        if (ki->kind == 0)
            fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" stroke-width=\"2\"%s%s%s/>", kx,
                    ky - 4, kx + 20, ky - 4, ki->color, ki->dash ? " stroke-dasharray=\"" : "", ki->dash ? ki->dash : "",
                    ki->dash ? "\"" : "");
        else
            fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%s\" fill=\"%s\" stroke=\"%s\" stroke-width=\"1.6\"/>", kx + 10, ky - 4,
                    ki->kind == 1 ? "2.8" : "4", ki->kind == 1 ? ki->color : "none", ki->color);
        fprintf(f, "<text class=\"key\" x=\"%.2f\" y=\"%.2f\">", kx + 24, ky);
        miser_chart_xml_text(f, ki->text);
        fputs("</text>\n", f);
        lx += w;
    }
    stage_list(f, p, lab, nlab, x0, list_y, pw);
    fputs("</g>\n", f);
#undef X
#undef Y
    miser_free(lab);
    return MISER_OK;
}

void miser_chart_xml_text_fit(FILE *f, const char *s, double font_px, double max_w)
{
    if (!s) return;
    size_t k = text_fit(s, font_px, max_w);
    xml_textn(f, s, k);
    if (k < strlen(s)) fputs("\xe2\x80\xa6", f);
}

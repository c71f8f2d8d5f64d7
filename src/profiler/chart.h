/* Drawing helpers for the SVG charts of `miser profile` (the timeline) and of
 * the `miser bench` / `miser compare` reports (bars and one timeline panel per
 * runtime): XML escaping, significant-digit number formats, tick steps, a
 * collision-free placement of text labels, and the stage-timeline panel
 * itself. Internal to the library (not installed); both report writers use
 * it, so the two reports draw a timeline the same way.
 *
 * Geometry is in SVG user units (px at 100 %). Text widths are estimated from
 * per-character advances at least as wide as DejaVu Sans / Liberation Sans
 * (the fonts a Debian browser picks for sans-serif), so estimated boxes
 * contain the rendered ones; tests/browser/report_check.js checks that in a
 * real browser. */
#ifndef MISER_PROFILER_CHART_H
#define MISER_PROFILER_CHART_H

#include "miser/profiler.h"

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Write s as XML character data / attribute text: <>&" escaped, control
 * bytes dropped (XML 1.0 forbids them), each byte that is not part of valid
 * UTF-8 written as U+FFFD, so the document stays well-formed whatever the
 * input. NULL writes nothing. */
void miser_chart_xml_text(FILE *f, const char *s);

/* The same, cut to whole characters that fit in max_w px at font_px, with
 * an ellipsis when cut. */
void miser_chart_xml_text_fit(FILE *f, const char *s, double font_px, double max_w);

/* A "nice" step (1, 2 or 5 times a power of ten) giving about `ticks`
 * intervals over range (> 0). */
double miser_chart_nice_step(double range, int ticks);

/* v with `sig` significant digits (at least 1), never in exponent form and
 * never rounded to zero: 0.00612 -> "0.00612" (sig 3), 22.55 -> "22.6",
 * 1566.2 -> "1566" (integers keep all their digits). 0 -> "0", non-finite ->
 * "n/a". */
void miser_chart_fmt_sig(char *b, size_t cap, double v, int sig);

/* Seconds with a unit and 3 significant digits: "1.47 s", "6.21 ms",
 * "850 µs"; "0 s"; "n/a" when not finite. */
void miser_chart_fmt_seconds(char *b, size_t cap, double s);

/* Upper estimate of the rendered width of s in px at font size font_px. */
double miser_chart_text_width(const char *s, double font_px);

/* A label to place in rows above a plot, naming the point x. */
typedef struct miser_chart_label {
    const char *text;       /* in: full text (borrowed) */
    const char *short_text; /* in: shorter fallback (borrowed; may be NULL) */
    double x;               /* in: the x it names */
    int row;                /* out: 0 = the row nearest the plot; -1 = not placed */
    int shortened;          /* out: 1 when short_text was placed */
    double left, width;     /* out: the box [left, left + width] (when placed) */
} miser_chart_label;

/* Place n labels (any order, taken left to right) in at most max_rows rows
 * within [lo, hi]: each box is centred on its x where that is free and inside
 * [lo, hi]; otherwise it moves sideways to the nearest free place (by at
 * most its width with the full text, 8 em with the short one) in the row
 * where it moves least, a row further from the plot counting as 2 em of
 * move. No two boxes of one row overlap or come closer than 4 px. Where the
 * full text finds no place the short text is tried, then the label gets row
 * -1 (the caller lists it elsewhere). Returns the number of rows used. */
int miser_chart_layout_labels(miser_chart_label *l, size_t n, double lo, double hi, double font_px, int max_rows);

/* Time (largest of the marks' and samples' t_s) and memory (largest RSS,
 * peak or sampled figure, MB) a profile's timeline needs. */
void miser_chart_timeline_extent(const miser_profile *p, double *tmax_s, double *ymax_mb);

typedef struct miser_chart_timeline_opts {
    double x, y;            /* top-left corner of the panel */
    double width;           /* panel width, margins included */
    double plot_height;     /* height of the plot area */
    double tmax_s, ymax_mb; /* shared scales; <= 0: the profile's own */
    const char *title;      /* drawn above the labels; NULL: none */
    const char *title_color;
    int series_key;         /* 1: the key of the lines under the axis */
} miser_chart_timeline_opts;

/* Draw one stage timeline of p: RSS, anon, file and swap as step lines
 * through every reading (samples and the snapshots at the marks, in time
 * order; a reading holds until the next one, so each change is a vertical
 * step, up to the last reading), the interval bands with their exact or
 * sampled peaks (dashed), a dot at each mark's reading, stage labels in
 * collision-free rows above the plot (numbered and listed under the axis
 * when they do not fit; past 400 marks all are listed, 60 by name and the
 * rest counted, each band's tooltip naming its stage), and both axes with
 * tick values and units. The x
 * axis is in ms when the run is shorter than 2 s. With f NULL nothing is
 * written; *height (may be NULL) receives the panel's height either way.
 * Errors: NOMEM. */
miser_status miser_chart_timeline(FILE *f, const miser_profile *p, const miser_chart_timeline_opts *o,
                                  double *height);

#ifdef __cplusplus
}
#endif
#endif

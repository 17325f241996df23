/* apps/qiao/plot.c - training curves (see plot.h). Plain cairo: an image
 * surface, paths (text too, in a built-in stroke font: see "text" below),
 * and cairo_surface_write_to_png. */
#define _POSIX_C_SOURCE 200809L
#include "plot.h"

#include "core/core.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cairo.h>

#define W 1200
#define H 800
#define PI 3.14159265358979323846

static void set_err(char *err, size_t err_len, const char *fmt, ...) {
    if (!err || !err_len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* ---- the CSV -------------------------------------------------------------- */

enum { S_LOSS, S_LOSS_TI, S_LOSS_AT, S_LOSS_AI, S_VAL_T2I, S_VAL_I2T, S_VAL_A2I, S_VAL_A2T, N_SERIES };

static const char *const k_columns[N_SERIES] = {
    "loss", "loss_text_image", "loss_audio_text", "loss_audio_image",
    "val_t2i_r1", "val_i2t_r1", "val_a2i_r1", "val_a2t_r1"};
static const char *const k_labels[N_SERIES] = {
    "total", "text-image", "audio-text", "audio-image", "t2i", "i2t", "a2i", "a2t"};
static const double k_colors[N_SERIES][3] = {
    {0.10, 0.10, 0.10}, {0.12, 0.47, 0.71}, {0.84, 0.15, 0.16}, {0.17, 0.63, 0.17},
    {0.12, 0.47, 0.71}, {1.00, 0.50, 0.05}, {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29}};

typedef struct table {
    int64_t n, cap;
    double *step;            /* (n) */
    double *v[N_SERIES];     /* (n) each; NAN = no value */
} table;

static void table_free(table *t) {
    free(t->step);
    for (int s = 0; s < N_SERIES; s++) free(t->v[s]);
    memset(t, 0, sizeof *t);
}

static bool table_grow(table *t) {
    int64_t cap = t->cap ? 2 * t->cap : 256;
    double *p = realloc(t->step, (size_t)cap * sizeof(double));
    if (!p) return false;
    t->step = p;
    for (int s = 0; s < N_SERIES; s++) {
        p = realloc(t->v[s], (size_t)cap * sizeof(double));
        if (!p) return false;
        t->v[s] = p;
    }
    t->cap = cap;
    return true;
}

/* Splits `line` in place at commas (no quoting: the training CSV never
 * quotes). Returns the number of fields, at most max. */
static int split(char *line, char **f, int max) {
    int n = 0;
    for (char *p = line;;) {
        if (n == max) return max + 1;
        f[n++] = p;
        char *c = strchr(p, ',');
        if (!c) return n;
        *c = 0;
        p = c + 1;
    }
}

static void chomp(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
}

/* A cell as a number: NAN for empty or anything that is not entirely a number. */
static double cell(const char *s) {
    while (*s == ' ' || *s == '\t') s++;
    if (!*s) return NAN;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    while (*end == ' ' || *end == '\t') end++;
    if (end == s || *end || errno == ERANGE) return NAN;
    return v;
}

#define MAX_FIELDS 256

static int read_csv(const char *path, table *t, char *err, size_t err_len) {
    FILE *f;
    if (qc_fopen_read(path, &f, NULL) != QIAO_OK) {
        set_err(err, err_len, "%s", qiao_last_error());
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    char *fields[MAX_FIELDS];
    int nh = 0, col_step = -1, col[N_SERIES];
    for (int s = 0; s < N_SERIES; s++) col[s] = -1;
    bool header = false;
    int rc = 0;
    while (getline(&line, &cap, f) >= 0) {
        chomp(line);
        if (!header) {
            if (!line[0]) continue;
            nh = split(line, fields, MAX_FIELDS);
            if (nh > MAX_FIELDS) {
                set_err(err, err_len, "%s: header has more than %d columns", path, MAX_FIELDS);
                rc = -1;
                break;
            }
            for (int i = 0; i < nh; i++) {
                chomp(fields[i]);
                if (!strcmp(fields[i], "step")) col_step = i;
                for (int s = 0; s < N_SERIES; s++)
                    if (!strcmp(fields[i], k_columns[s])) col[s] = i;
            }
            if (col_step < 0) {
                set_err(err, err_len, "%s: the header has no \"step\" column (not a training log?)", path);
                rc = -1;
                break;
            }
            header = true;
            continue;
        }
        int n = split(line, fields, MAX_FIELDS);
        if (n != nh) continue; /* a torn or stray line */
        double step = cell(fields[col_step]);
        if (!isfinite(step)) continue;
        if (t->n == t->cap && !table_grow(t)) {
            set_err(err, err_len, "%s: out of memory", path);
            rc = -1;
            break;
        }
        t->step[t->n] = step;
        for (int s = 0; s < N_SERIES; s++) {
            double v = col[s] >= 0 ? cell(fields[col[s]]) : NAN;
            t->v[s][t->n] = isfinite(v) ? v : NAN;
        }
        t->n++;
    }
    if (rc == 0 && ferror(f)) {
        set_err(err, err_len, "%s: read error", path);
        rc = -1;
    }
    free(line);
    fclose(f);
    return rc;
}

/* ---- text -------------------------------------------------------------------
 * A small stroke font drawn as cairo paths, instead of cairo's toy text API:
 * that one goes through fontconfig, which draws nothing on a machine without
 * fonts and leaves caches that LeakSanitizer reports at exit. Strokes need
 * nothing from the system and give the same pixels everywhere.
 *
 * Glyph units: caps span y 0..10, lowercase 3..10, descenders reach 13; x
 * from 0, `adv` includes the gap to the next glyph. A glyph is strokes
 * separated by ';', each a list of "x,y" points and elliptical arcs
 * "@cx,cy,rx,ry,a0,a1" (degrees, y down, so increasing angles turn
 * clockwise on screen; a0 > a1 runs the other way), joined in order. */
typedef struct glyph {
    char c;
    float adv;
    const char *s;
} glyph;

static const glyph k_glyphs[] = {
    {' ', 4, ""},
    {'!', 3, "1,0 1,7;1,9.8 1,10"},
    {'"', 4.5, "1,0 1,3;3,0 3,3"},
    {'#', 8, "2,1 1,10;5,1 4,10;0.5,4 6.5,4;0,7 6,7"},
    {'%', 9.5, "@1.5,2,1.5,2,0,360;7,0 1,10;@6.5,8,1.5,2,0,360"},
    {'\'', 2.5, "1,0 1,3"},
    {'(', 5, "@4.5,5,3.5,6.5,-115,-245"},
    {')', 5, "@-0.5,5,3.5,6.5,-65,65"},
    {'*', 7, "3,1 3,6;0.8,2.2 5.2,4.8;5.2,2.2 0.8,4.8"},
    {'+', 8, "0,6.5 6,6.5;3,3.5 3,9.5"},
    {',', 3, "1.2,9.5 1.2,10 0.4,11.8"},
    {'-', 6, "0.5,6.5 4.5,6.5"},
    {'.', 3, "1,9.8 1,10"},
    {'/', 6, "5,-0.5 0,11"},
    {'0', 8, "@3,5,3,5,0,360"},
    {'1', 8, "1.5,2 3.5,0 3.5,10"},
    {'2', 8, "@3,3,3,3,180,380 0,10 6,10"},
    {'3', 8, "@3,2.5,2.8,2.5,200,450 @3,7.5,3,2.5,-90,160"},
    {'4', 8, "4.5,10 4.5,0 0,7 6,7"},
    {'5', 8, "5.5,0 0.8,0 0.4,4.6 @2.9,7,3.1,3,-150,150"},
    {'6', 8, "@3,7,3,3,0,360;@6.5,7,6.5,7,180,250"},
    {'7', 8, "0,0 6,0 2,10"},
    {'8', 8, "@3,2.5,2.6,2.5,0,360;@3,7.5,3,2.5,0,360"},
    {'9', 8, "@3,3,3,3,0,360;@-0.5,3,6.5,7,0,70"},
    {':', 3, "1,4 1,4.2;1,9.8 1,10"},
    {';', 3, "1.2,4 1.2,4.2;1.2,9.5 1.2,10 0.4,11.8"},
    {'<', 7, "5,3.5 0,6.5 5,9.5"},
    {'=', 7, "0.5,5.3 5.5,5.3;0.5,7.7 5.5,7.7"},
    {'>', 7, "0,3.5 5,6.5 0,9.5"},
    {'?', 7, "@3,2.8,2.8,2.8,-170,90 3,7;3,9.8 3,10"},
    {'@', 11, "@4.5,6.2,1.8,2.1,0,360;6.3,4 6.3,7.6 7.3,8.3 8.3,7.6 @4.5,6,4.5,4.5,-10,-300"},
    {'A', 9, "0,10 3.5,0 7,10;1.2,6.5 5.8,6.5"},
    {'B', 8.5, "0,10 0,0 4,0 @4,2.5,2.5,2.5,-90,90 0,5;0,5 4.5,5 @4.5,7.5,2.5,2.5,-90,90 0,10"},
    {'C', 9.5, "@3.8,5,3.8,5,40,320"},
    {'D', 9, "0,0 3,0 @3,5,4,5,-90,90 0,10 0,0"},
    {'E', 8, "6,0 0,0 0,10 6,10;0,5 5,5"},
    {'F', 8, "6,0 0,0 0,10;0,5 5,5"},
    {'G', 9.5, "@3.8,5,3.8,5,-40,-360 4.5,5"},
    {'H', 9, "0,0 0,10;7,0 7,10;0,5 7,5"},
    {'I', 6, "1,0 5,0;3,0 3,10;1,10 5,10"},
    {'J', 7, "5,0 5,7 @2.5,7,2.5,3,0,180"},
    {'K', 8.5, "0,0 0,10;6.5,0 0,6;2,4.5 7,10"},
    {'L', 7.5, "0,0 0,10 6,10"},
    {'M', 10, "0,10 0,0 4,7 8,0 8,10"},
    {'N', 9, "0,10 0,0 7,10 7,0"},
    {'O', 10, "@4,5,4,5,0,360"},
    {'P', 8.5, "0,10 0,0 4,0 @4,2.75,2.75,2.75,-90,90 0,5.5"},
    {'Q', 10, "@4,5,4,5,0,360;4.5,7 8,10.5"},
    {'R', 9, "0,10 0,0 4,0 @4,2.75,2.75,2.75,-90,90 0,5.5;3.5,5.5 7,10"},
    {'S', 8.5, "@3.5,2.5,3.2,2.5,-20,-270 @3.5,7.5,3.5,2.5,-90,160"},
    {'T', 9, "0,0 7,0;3.5,0 3.5,10"},
    {'U', 9, "0,0 0,6.5 @3.5,6.5,3.5,3.5,180,0 7,0"},
    {'V', 9, "0,0 3.5,10 7,0"},
    {'W', 12, "0,0 2.5,10 5,3 7.5,10 10,0"},
    {'X', 9, "0,0 7,10;7,0 0,10"},
    {'Y', 9, "0,0 3.5,5 7,0;3.5,5 3.5,10"},
    {'Z', 9, "0,0 7,0 0,10 7,10"},
    {'[', 4.5, "3,-0.5 1,-0.5 1,11 3,11"},
    {'\\', 6, "0,-0.5 5,11"},
    {']', 4.5, "1,-0.5 3,-0.5 3,11 1,11"},
    {'^', 7, "0,4 2.5,0 5,4"},
    {'_', 8, "0,11 6,11"},
    {'`', 4, "0,0 1.5,2"},
    {'a', 8, "@3,6.5,3,3.5,0,360;6,3 6,10"},
    {'b', 8, "0,0 0,10;@3,6.5,3,3.5,0,360"},
    {'c', 8, "@3,6.5,3,3.5,40,320"},
    {'d', 8, "6,0 6,10;@3,6.5,3,3.5,0,360"},
    {'e', 8, "0,6.5 6,6.5 @3,6.5,3,3.5,0,-320"},
    {'f', 6, "@4.5,2,2,2,-30,-180 2.5,10;0.5,3.5 5,3.5"},
    {'g', 8, "@3,6.5,3,3.5,0,360;6,3 6,10.5 @3,10.5,3,2.5,0,150"},
    {'h', 8, "0,0 0,10;0,6.5 @3,6.5,3,3.5,180,360 6,10"},
    {'i', 3.5, "1,3 1,10;1,0.8 1,1.2"},
    {'j', 5, "2.5,3 2.5,11 @0.5,11,2,2,0,130;2.5,0.8 2.5,1.2"},
    {'k', 7.5, "0,0 0,10;5.5,3 0,7.5;2,6 6,10"},
    {'l', 3.5, "1,0 1,10"},
    {'m', 11, "0,3 0,10;0,5.5 @2.25,5.5,2.25,2.5,180,360 4.5,10;4.5,5.5 @6.75,5.5,2.25,2.5,180,360 9,10"},
    {'n', 8, "0,3 0,10;0,6.5 @3,6.5,3,3.5,180,360 6,10"},
    {'o', 8, "@3,6.5,3,3.5,0,360"},
    {'p', 8, "0,3 0,13;@3,6.5,3,3.5,0,360"},
    {'q', 8, "6,3 6,13;@3,6.5,3,3.5,0,360"},
    {'r', 6, "0,3 0,10;0,6.5 @3,6.5,3,3.5,180,290"},
    {'s', 8, "@3,4.75,2.6,1.75,-20,-270 @3,8.25,3,1.75,-90,160"},
    {'t', 6, "2,0.8 2,8.5 @4,8.5,2,1.5,180,90;0,3.5 5,3.5"},
    {'u', 8, "0,3 0,6.5 @3,6.5,3,3.5,180,0;6,3 6,10"},
    {'v', 8, "0,3 3,10 6,3"},
    {'w', 10, "0,3 2,10 4,4.5 6,10 8,3"},
    {'x', 8, "0,3 6,10;6,3 0,10"},
    {'y', 8, "0,3 3.2,10;6,3 2.2,12.2 1.2,13 0.2,13"},
    {'z', 8, "0,3 6,3 0,10 6,10"},
    {'|', 3, "1,-0.5 1,11"},
    {'~', 7, "0,6.5 @1.5,6.5,1.5,1,180,360 @4.5,6.5,1.5,1,180,0"},
};
/* Anything else (including each UTF-8 sequence): an open box. */
static const glyph k_unknown = {'?', 7, "0,0 5,0 5,10 0,10 0,0"};

static const glyph *glyph_of(unsigned char c) {
    for (size_t i = 0; i < sizeof k_glyphs / sizeof *k_glyphs; i++)
        if ((unsigned char)k_glyphs[i].c == c) return &k_glyphs[i];
    return &k_unknown;
}

/* The glyphs of s in order: one per ASCII byte, one per UTF-8 sequence. */
static const char *next_glyph(const char *s, const glyph **g) {
    unsigned char c = (unsigned char)*s++;
    if (c >= 0x80)
        while (((unsigned char)*s & 0xC0) == 0x80) s++;
    *g = c < 0x80 ? glyph_of(c) : &k_unknown;
    return s;
}

/* Pixels per glyph unit for a font size in pixels (about the em size). */
static double unit_of(double size) { return size * 0.072; }

static double text_width(double size, const char *s) {
    double w = 0;
    const glyph *g;
    while (*s) {
        s = next_glyph(s, &g);
        w += g->adv;
    }
    return w > 0 ? (w - 2) * unit_of(size) : 0;
}

/* Adds glyph g at (x, y) (its cap top-left) to the path, unit u. */
static void glyph_path(cairo_t *cr, const glyph *g, double x, double y, double u) {
    const char *p = g->s;
    bool first = true;
    while (*p) {
        if (*p == ';') {
            first = true;
            p++;
            continue;
        }
        if (*p == ' ') {
            p++;
            continue;
        }
        char *end;
        if (*p == '@') {
            double v[6];
            p++;
            for (int k = 0; k < 6; k++) {
                v[k] = strtod(p, &end);
                p = end + (*end == ',');
            }
            double span = v[5] - v[4];
            int n = (int)ceil(fabs(span) / 8.0);
            for (int k = 0; k <= n; k++) {
                double a = (v[4] + span * k / n) * PI / 180.0;
                double gx = x + u * (v[0] + v[2] * cos(a)), gy = y + u * (v[1] + v[3] * sin(a));
                if (first) cairo_move_to(cr, gx, gy);
                else cairo_line_to(cr, gx, gy);
                first = false;
            }
        } else {
            double gx = strtod(p, &end);
            p = end + (*end == ',');
            double gy = strtod(p, &end);
            p = end;
            if (first) cairo_move_to(cr, x + u * gx, y + u * gy);
            else cairo_line_to(cr, x + u * gx, y + u * gy);
            first = false;
        }
    }
}

/* Draws s with its box anchored at (x, y): ax, ay in 0..1 pick the point of
 * the box (0, 0 = left and cap top, 1, 1 = right and baseline). */
static void text_at(cairo_t *cr, double x, double y, double ax, double ay, double size, bool bold,
                    const char *s) {
    double u = unit_of(size);
    double gx = x - ax * text_width(size, s), gy = y - ay * 10 * u;
    cairo_save(cr);
    cairo_new_path(cr);
    const glyph *g;
    while (*s) {
        s = next_glyph(s, &g);
        glyph_path(cr, g, gx, gy, u);
        gx += g->adv * u;
    }
    cairo_set_line_width(cr, u * (bold ? 1.9 : 1.25));
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_stroke(cr);
    cairo_restore(cr);
}

/* ---- drawing -------------------------------------------------------------- */

typedef struct panel {
    double x0, y0, x1, y1;   /* plot area in pixels (y0 top) */
    double xmin, xmax;       /* data range */
    double ymin, ymax;       /* data range; log10 of it when logy */
    bool logy;
} panel;

static double px(const panel *p, double x) { return p->x0 + (x - p->xmin) / (p->xmax - p->xmin) * (p->x1 - p->x0); }

static double py(const panel *p, double y) {
    double v = p->logy ? log10(y) : y;
    return p->y1 - (v - p->ymin) / (p->ymax - p->ymin) * (p->y1 - p->y0);
}

/* A value the panel can place: finite, and positive on a log axis. */
static bool placeable(const panel *p, double y) { return isfinite(y) && (!p->logy || y > 0); }

/* 1, 2 or 5 times a power of ten, giving about `target` intervals. */
static double nice_step(double range, int target) {
    double raw = range / target;
    double mag = pow(10.0, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

static void fmt_tick(char *buf, size_t n, double v) {
    if (fabs(v) < 1e-12) v = 0;
    if (v != 0 && (fabs(v) >= 1e5 || fabs(v) < 1e-3)) snprintf(buf, n, "%.0e", v);
    else snprintf(buf, n, "%g", v);
}

static void draw_axes(cairo_t *cr, const panel *p, const char *title, const char *xlabel, const char *ylabel) {
    /* y ticks and grid */
    cairo_set_line_width(cr, 1);
    char buf[32];
    if (p->logy) {
        bool minor = p->ymax - p->ymin <= 2;
        for (int k = (int)floor(p->ymin); k <= (int)ceil(p->ymax); k++)
            for (int m = 1; m <= 9; m++) {
                double v = m * pow(10.0, k);
                double lv = log10(v);
                if (lv < p->ymin - 1e-9 || lv > p->ymax + 1e-9) continue;
                bool label = m == 1 || (minor && (m == 2 || m == 5));
                double y = py(p, v);
                cairo_set_source_rgb(cr, label ? 0.85 : 0.93, label ? 0.85 : 0.93, label ? 0.85 : 0.93);
                cairo_move_to(cr, p->x0, y);
                cairo_line_to(cr, p->x1, y);
                cairo_stroke(cr);
                cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
                cairo_move_to(cr, p->x0 - (label ? 6 : 3), y);
                cairo_line_to(cr, p->x0, y);
                cairo_stroke(cr);
                if (label) {
                    fmt_tick(buf, sizeof buf, v);
                    text_at(cr, p->x0 - 9, y, 1.0, 0.5, 13, false, buf);
                }
            }
    } else {
        double st = nice_step(p->ymax - p->ymin, 5);
        for (double v = ceil(p->ymin / st - 1e-9) * st; v <= p->ymax + 1e-9 * st; v += st) {
            double y = py(p, v);
            cairo_set_source_rgb(cr, 0.85, 0.85, 0.85);
            cairo_move_to(cr, p->x0, y);
            cairo_line_to(cr, p->x1, y);
            cairo_stroke(cr);
            cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
            cairo_move_to(cr, p->x0 - 6, y);
            cairo_line_to(cr, p->x0, y);
            cairo_stroke(cr);
            fmt_tick(buf, sizeof buf, v);
            text_at(cr, p->x0 - 9, y, 1.0, 0.5, 13, false, buf);
        }
    }
    /* x ticks and grid */
    double st = fmax(1.0, nice_step(p->xmax - p->xmin, 6)); /* steps are whole numbers */
    for (double v = ceil(p->xmin / st - 1e-9) * st; v <= p->xmax + 1e-9 * st; v += st) {
        double x = px(p, v);
        cairo_set_source_rgb(cr, 0.85, 0.85, 0.85);
        cairo_move_to(cr, x, p->y0);
        cairo_line_to(cr, x, p->y1);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        cairo_move_to(cr, x, p->y1);
        cairo_line_to(cr, x, p->y1 + 6);
        cairo_stroke(cr);
        fmt_tick(buf, sizeof buf, v);
        text_at(cr, x, p->y1 + 10, 0.5, 0.0, 13, false, buf);
    }
    /* frame and labels */
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_rectangle(cr, p->x0, p->y0, p->x1 - p->x0, p->y1 - p->y0);
    cairo_stroke(cr);
    text_at(cr, 0.5 * (p->x0 + p->x1), p->y1 + 34, 0.5, 0.0, 14, false, xlabel);
    cairo_save(cr);
    cairo_translate(cr, p->x0 - 62, 0.5 * (p->y0 + p->y1));
    cairo_rotate(cr, -PI / 2);
    text_at(cr, 0, 0, 0.5, 0.5, 14, false, ylabel);
    cairo_restore(cr);
    text_at(cr, 0.5 * (p->x0 + p->x1), p->y0 - 12, 0.5, 1.0, 16, true, title);
}

/* One series, with markers when the points are few enough to see. With
 * `bridge`, consecutive values are joined across rows without one (the
 * validation columns are filled only every few steps); without it a row
 * without a value ends the line (a loss logged every step is absent only
 * where its pair did not train, as in a text-image-only stage). */
static void draw_series(cairo_t *cr, const panel *p, const table *t, int s, double width, bool bridge) {
    int64_t count = 0;
    for (int64_t i = 0; i < t->n; i++) count += placeable(p, t->v[s][i]);
    if (!count) return;
    cairo_save(cr);
    /* A little outside the frame, so markers on the edge stay whole. */
    cairo_rectangle(cr, p->x0 - 5, p->y0 - 5, p->x1 - p->x0 + 10, p->y1 - p->y0 + 10);
    cairo_clip(cr);
    cairo_set_source_rgb(cr, k_colors[s][0], k_colors[s][1], k_colors[s][2]);
    cairo_set_line_width(cr, width);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    bool started = false;
    for (int64_t i = 0; i < t->n; i++) {
        double v = t->v[s][i];
        if (!placeable(p, v)) {
            started = started && bridge;
            continue;
        }
        if (started) cairo_line_to(cr, px(p, t->step[i]), py(p, v));
        else cairo_move_to(cr, px(p, t->step[i]), py(p, v));
        started = true;
    }
    cairo_stroke(cr);
    if (count <= 60)
        for (int64_t i = 0; i < t->n; i++) {
            double v = t->v[s][i];
            if (!placeable(p, v)) continue;
            cairo_arc(cr, px(p, t->step[i]), py(p, v), 3.5, 0, 2 * PI);
            cairo_fill(cr);
        }
    cairo_restore(cr);
}

/* One row under the panel, below the x label, so it never hides a curve. */
static void draw_legend(cairo_t *cr, const panel *p, int s0, int s1) {
    double w[N_SERIES], total = 0;
    for (int s = s0; s < s1; s++) {
        w[s] = 32 + text_width(13, k_labels[s]) + 18;
        total += w[s];
    }
    double x = 0.5 * (p->x0 + p->x1) - 0.5 * total, y = p->y1 + 72;
    for (int s = s0; s < s1; s++) {
        cairo_set_source_rgb(cr, k_colors[s][0], k_colors[s][1], k_colors[s][2]);
        cairo_set_line_width(cr, s == S_LOSS ? 3 : 2);
        cairo_move_to(cr, x, y);
        cairo_line_to(cr, x + 26, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        text_at(cr, x + 32, y, 0.0, 0.5, 13, false, k_labels[s]);
        x += w[s];
    }
}

static void draw_note(cairo_t *cr, const panel *p, const char *note) {
    cairo_set_source_rgb(cr, 0.45, 0.45, 0.45);
    text_at(cr, 0.5 * (p->x0 + p->x1), 0.5 * (p->y0 + p->y1), 0.5, 0.5, 18, false, note);
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void draw(cairo_t *cr, const table *t, const char *csv_path) {
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    char title[512];
    if (t->n) snprintf(title, sizeof title, "Training curves: %s (%lld row%s, last step %.0f)",
                       base_name(csv_path), (long long)t->n, t->n == 1 ? "" : "s", t->step[t->n - 1]);
    else snprintf(title, sizeof title, "Training curves: %s", base_name(csv_path));
    text_at(cr, W / 2.0, 18, 0.5, 0.0, 20, true, title);

    /* Shared x range over every row. */
    double xmin = INFINITY, xmax = -INFINITY;
    for (int64_t i = 0; i < t->n; i++) {
        xmin = fmin(xmin, t->step[i]);
        xmax = fmax(xmax, t->step[i]);
    }
    if (!isfinite(xmin)) xmin = 0, xmax = 1;
    if (xmax - xmin < 1e-9) xmin -= 1, xmax += 1;

    panel loss = {.x0 = 95, .y0 = 80, .x1 = 575, .y1 = 680, .xmin = xmin, .xmax = xmax, .logy = true};
    panel val = {.x0 = 695, .y0 = 80, .x1 = 1175, .y1 = 680, .xmin = xmin, .xmax = xmax, .ymin = 0, .ymax = 1};

    double lo = INFINITY, hi = -INFINITY;
    int64_t n_loss = 0, n_val = 0;
    for (int s = S_LOSS; s <= S_LOSS_AI; s++)
        for (int64_t i = 0; i < t->n; i++)
            if (isfinite(t->v[s][i]) && t->v[s][i] > 0) {
                lo = fmin(lo, t->v[s][i]);
                hi = fmax(hi, t->v[s][i]);
                n_loss++;
            }
    for (int s = S_VAL_T2I; s <= S_VAL_A2T; s++)
        for (int64_t i = 0; i < t->n; i++) n_val += isfinite(t->v[s][i]);
    if (n_loss) {
        loss.ymin = floor(log10(lo));
        loss.ymax = ceil(log10(hi));
        if (loss.ymax - loss.ymin < 1) loss.ymax = loss.ymin + 1;
    } else {
        loss.ymin = -1, loss.ymax = 1;
    }

    draw_axes(cr, &loss, "Contrastive losses", "step", "loss (log scale)");
    draw_axes(cr, &val, "Validation recall@1", "step", "recall@1");
    for (int s = S_LOSS_AI; s >= S_LOSS; s--) draw_series(cr, &loss, t, s, s == S_LOSS ? 2.5 : 1.5, false);
    for (int s = S_VAL_T2I; s <= S_VAL_A2T; s++) draw_series(cr, &val, t, s, 2, true);
    draw_legend(cr, &loss, S_LOSS, S_LOSS_AI + 1);
    draw_legend(cr, &val, S_VAL_T2I, S_VAL_A2T + 1);

    if (t->n == 0) {
        draw_note(cr, &loss, "no steps logged yet");
        draw_note(cr, &val, "no steps logged yet");
    } else {
        if (!n_loss) draw_note(cr, &loss, "no loss values");
        else if (t->n == 1) draw_note(cr, &loss, "only one step logged");
        if (!n_val) draw_note(cr, &val, "no validation yet");
    }
}

int plot_training_csv(const char *csv_path, const char *png_path, char *err, size_t err_len) {
    if (err && err_len) err[0] = 0;
    if (!csv_path || !png_path) {
        set_err(err, err_len, "plot: NULL path");
        return -1;
    }
    table t;
    memset(&t, 0, sizeof t);
    if (read_csv(csv_path, &t, err, err_len) != 0) {
        table_free(&t);
        return -1;
    }
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    if (cairo_surface_status(surf) != CAIRO_STATUS_SUCCESS) {
        set_err(err, err_len, "%s: cairo: %s", png_path, cairo_status_to_string(cairo_surface_status(surf)));
        cairo_surface_destroy(surf);
        table_free(&t);
        return -1;
    }
    cairo_t *cr = cairo_create(surf);
    draw(cr, &t, csv_path);
    cairo_status_t cst = cairo_status(cr);
    cairo_destroy(cr);
    table_free(&t);
    int rc = 0;
    size_t tl = strlen(png_path) + 5;
    char *tmp = malloc(tl);
    if (!tmp) {
        set_err(err, err_len, "%s: out of memory", png_path);
        rc = -1;
    } else if (cst != CAIRO_STATUS_SUCCESS) {
        set_err(err, err_len, "%s: cairo: %s", png_path, cairo_status_to_string(cst));
        rc = -1;
    } else {
        snprintf(tmp, tl, "%s.tmp", png_path);
        cst = cairo_surface_write_to_png(surf, tmp);
        if (cst != CAIRO_STATUS_SUCCESS) {
            set_err(err, err_len, "%s: cannot write PNG: %s", tmp, cairo_status_to_string(cst));
            remove(tmp);
            rc = -1;
        } else if (rename(tmp, png_path) != 0) {
            set_err(err, err_len, "%s: %s", png_path, strerror(errno));
            remove(tmp);
            rc = -1;
        }
    }
    free(tmp);
    cairo_surface_destroy(surf);
    return rc;
}

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

/* Which columns are drawn is read from the header (plot.h): "loss" and
 * "loss_*" on the loss panel, "val_*" and "train_*" on the metrics panel. */
enum { PANEL_LOSS, PANEL_METRICS, N_PANELS };
#define MAX_SERIES 12 /* per panel: more would not fit the legend */
#define LABEL_MAX 64

/* The contrastive objective's colours first, so its curves keep their look. */
static const double k_palette[N_PANELS][MAX_SERIES][3] = {
    {{0.10, 0.10, 0.10}, {0.12, 0.47, 0.71}, {0.84, 0.15, 0.16}, {0.17, 0.63, 0.17}, {0.58, 0.40, 0.74},
     {1.00, 0.50, 0.05}, {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.50, 0.50, 0.50}, {0.74, 0.74, 0.13},
     {0.09, 0.75, 0.81}, {0.40, 0.40, 0.90}},
    {{0.12, 0.47, 0.71}, {1.00, 0.50, 0.05}, {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29}, {0.17, 0.63, 0.17},
     {0.84, 0.15, 0.16}, {0.89, 0.47, 0.76}, {0.50, 0.50, 0.50}, {0.74, 0.74, 0.13}, {0.09, 0.75, 0.81},
     {0.10, 0.10, 0.10}, {0.40, 0.40, 0.90}}};

typedef struct series {
    int col;                 /* in the CSV; -1 = not in it (add_defaults) */
    int panel;
    bool total, bridge;      /* the total loss (drawn bold); join values across rows without one */
    char name[LABEL_MAX], label[LABEL_MAX];
    double *v;               /* (n); NAN = no value */
} series;

typedef struct table {
    int64_t n, cap;
    double *step;            /* (n) */
    int ns;
    series s[N_PANELS * MAX_SERIES];
    bool recall;             /* every metric is a validation recall@1 ("val_*_r1") */
} table;

static void table_free(table *t) {
    free(t->step);
    for (int s = 0; s < t->ns; s++) free(t->s[s].v);
    memset(t, 0, sizeof *t);
}

static bool table_grow(table *t) {
    int64_t cap = t->cap ? 2 * t->cap : 256;
    double *p = realloc(t->step, (size_t)cap * sizeof(double));
    if (!p) return false;
    t->step = p;
    for (int s = 0; s < t->ns; s++) {
        p = realloc(t->s[s].v, (size_t)cap * sizeof(double));
        if (!p) return false;
        t->s[s].v = p;
    }
    t->cap = cap;
    return true;
}

static bool has_prefix(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

static bool has_suffix(const char *s, const char *suffix) {
    const size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* Adds column `col` named `name` to the panel its name puts it on, if any. */
static void add_series(table *t, int col, const char *name) {
    int panel;
    if (!strcmp(name, "loss") || (has_prefix(name, "loss_") && name[5]))
        panel = PANEL_LOSS;
    else if ((has_prefix(name, "val_") && name[4]) || (has_prefix(name, "train_") && name[6]))
        panel = PANEL_METRICS;
    else
        return;
    int count = 0;
    for (int s = 0; s < t->ns; s++) count += t->s[s].panel == panel;
    if (count == MAX_SERIES || strlen(name) >= LABEL_MAX) return;
    series *s = &t->s[t->ns++];
    memset(s, 0, sizeof *s);
    s->col = col;
    s->panel = panel;
    s->total = !strcmp(name, "loss");
    s->bridge = has_prefix(name, "val_"); /* validation runs every few steps */
    snprintf(s->name, sizeof s->name, "%s", name);
}

/* A log that names nothing to draw but the total loss (or has no header
 * yet) is drawn with the columns `qiao train` writes, the contrastive
 * objective's: their legend says what the curves will be. */
static void add_defaults(table *t) {
    static const char *const names[] = {"loss",       "loss_text_image", "loss_audio_text", "loss_audio_image",
                                        "val_t2i_r1", "val_i2t_r1",      "val_a2i_r1",      "val_a2t_r1"};
    for (int s = 0; s < t->ns; s++)
        if (!t->s[s].total) return;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (!t->ns || strcmp(names[k], "loss")) add_series(t, -1, names[k]);
}

/* Legend labels: "total", "text-image" for loss_text_image; "t2i" for
 * val_t2i_r1 when every metric is a recall@1; else the name with spaces. */
static void make_labels(table *t) {
    t->recall = false;
    for (int i = 0; i < t->ns; i++)
        if (t->s[i].panel == PANEL_METRICS) t->recall = true;
    for (int i = 0; i < t->ns; i++)
        if (t->s[i].panel == PANEL_METRICS && !(has_prefix(t->s[i].name, "val_") && has_suffix(t->s[i].name, "_r1")))
            t->recall = false;
    for (int i = 0; i < t->ns; i++) {
        series *s = &t->s[i];
        const char *from = s->name;
        char sep = ' ';
        size_t cut = 0;
        if (s->total) {
            snprintf(s->label, sizeof s->label, "total");
            continue;
        }
        if (s->panel == PANEL_LOSS) {
            from += 5;
            sep = '-';
        } else if (t->recall) {
            from += 4;
            cut = 3;
        }
        snprintf(s->label, sizeof s->label, "%.*s", (int)(strlen(from) - cut), from);
        for (char *c = s->label; *c; c++)
            if (*c == '_') *c = sep;
    }
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
    int nh = 0, col_step = -1;
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
                if (!strcmp(fields[i], "step") && col_step < 0) col_step = i;
                else add_series(t, i, fields[i]);
            }
            add_defaults(t);
            make_labels(t);
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
        for (int s = 0; s < t->ns; s++) {
            double v = t->s[s].col >= 0 ? cell(fields[t->s[s].col]) : NAN;
            t->s[s].v[t->n] = isfinite(v) ? v : NAN;
        }
        t->n++;
    }
    if (rc == 0 && !header) {
        add_defaults(t);
        make_labels(t);
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

/* The colour of series i: its place among its panel's series. */
static const double *colour_of(const table *t, int i) {
    int k = 0;
    for (int s = 0; s < i; s++) k += t->s[s].panel == t->s[i].panel;
    return k_palette[t->s[i].panel][k];
}

/* One series, with markers when the points are few enough to see. A
 * bridged series (validation, filled only every few steps) joins
 * consecutive values across rows without one; otherwise a row without a
 * value ends the line (a loss logged every step is absent only where its
 * pair did not train, as in a text-image-only stage). */
static void draw_series(cairo_t *cr, const panel *p, const table *t, int s, double width) {
    const double *v = t->s[s].v, *rgb = colour_of(t, s);
    int64_t count = 0;
    for (int64_t i = 0; i < t->n; i++) count += placeable(p, v[i]);
    if (!count) return;
    cairo_save(cr);
    /* A little outside the frame, so markers on the edge stay whole. */
    cairo_rectangle(cr, p->x0 - 5, p->y0 - 5, p->x1 - p->x0 + 10, p->y1 - p->y0 + 10);
    cairo_clip(cr);
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    cairo_set_line_width(cr, width);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    bool started = false;
    for (int64_t i = 0; i < t->n; i++) {
        if (!placeable(p, v[i])) {
            started = started && t->s[s].bridge;
            continue;
        }
        if (started) cairo_line_to(cr, px(p, t->step[i]), py(p, v[i]));
        else cairo_move_to(cr, px(p, t->step[i]), py(p, v[i]));
        started = true;
    }
    cairo_stroke(cr);
    if (count <= 60)
        for (int64_t i = 0; i < t->n; i++) {
            if (!placeable(p, v[i])) continue;
            cairo_arc(cr, px(p, t->step[i]), py(p, v[i]), 3.5, 0, 2 * PI);
            cairo_fill(cr);
        }
    cairo_restore(cr);
}

/* Rows under the panel, below the x label, so they never hide a curve; a
 * row that would pass the panel's width wraps. */
static void draw_legend(cairo_t *cr, const panel *p, const table *t, int which) {
    double row_w[MAX_SERIES], w[N_PANELS * MAX_SERIES];
    int row_of[N_PANELS * MAX_SERIES], rows = 0;
    row_w[0] = 0;
    for (int s = 0; s < t->ns; s++) {
        if (t->s[s].panel != which) continue;
        w[s] = 32 + text_width(13, t->s[s].label) + 18;
        if (row_w[rows] > 0 && row_w[rows] + w[s] > p->x1 - p->x0 + 100) row_w[++rows] = 0;
        row_of[s] = rows;
        row_w[rows] += w[s];
    }
    double x = 0;
    int row = -1;
    for (int s = 0; s < t->ns; s++) {
        if (t->s[s].panel != which) continue;
        if (row_of[s] != row) {
            row = row_of[s];
            x = 0.5 * (p->x0 + p->x1) - 0.5 * row_w[row];
        }
        const double y = p->y1 + 72 + 20 * row;
        const double *rgb = colour_of(t, s);
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_set_line_width(cr, t->s[s].total ? 3 : 2);
        cairo_move_to(cr, x, y);
        cairo_line_to(cr, x + 26, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        text_at(cr, x + 32, y, 0.0, 0.5, 13, false, t->s[s].label);
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

    double lo = INFINITY, hi = -INFINITY, vlo = INFINITY, vhi = -INFINITY;
    int64_t n_loss = 0, n_val = 0;
    bool only_val = true;
    for (int s = 0; s < t->ns; s++) {
        const double *v = t->s[s].v;
        if (t->s[s].panel == PANEL_METRICS && !has_prefix(t->s[s].name, "val_")) only_val = false;
        for (int64_t i = 0; i < t->n; i++) {
            if (!isfinite(v[i])) continue;
            if (t->s[s].panel == PANEL_METRICS) {
                vlo = fmin(vlo, v[i]);
                vhi = fmax(vhi, v[i]);
                n_val++;
            } else if (v[i] > 0) {
                lo = fmin(lo, v[i]);
                hi = fmax(hi, v[i]);
                n_loss++;
            }
        }
    }
    if (n_loss) {
        loss.ymin = floor(log10(lo));
        loss.ymax = ceil(log10(hi));
        if (loss.ymax - loss.ymin < 1) loss.ymax = loss.ymin + 1;
    } else {
        loss.ymin = -1, loss.ymax = 1;
    }
    /* rates and accuracies on 0..1; anything else on a range that holds it */
    if (n_val && (vlo < 0 || vhi > 1)) {
        const double pad = vhi > vlo ? 0.05 * (vhi - vlo) : 1;
        const double st = nice_step(vhi - vlo + 2 * pad, 5);
        val.ymin = floor((vlo - pad) / st) * st;
        val.ymax = ceil((vhi + pad) / st) * st;
    }

    const char *loss_title = "Losses";
    for (int s = 0; s < t->ns; s++) /* the pair losses of the contrastive objective */
        if (!strcmp(t->s[s].name, "loss_text_image") || !strcmp(t->s[s].name, "loss_audio_text"))
            loss_title = "Contrastive losses";
    draw_axes(cr, &loss, loss_title, "step", "loss (log scale)");
    if (t->recall)
        draw_axes(cr, &val, "Validation recall@1", "step", "recall@1");
    else
        draw_axes(cr, &val, only_val ? "Validation" : "Metrics", "step", "value");
    /* the total last, over the parts */
    for (int s = t->ns - 1; s >= 0; s--)
        if (t->s[s].panel == PANEL_LOSS) draw_series(cr, &loss, t, s, t->s[s].total ? 2.5 : 1.5);
    for (int s = 0; s < t->ns; s++)
        if (t->s[s].panel == PANEL_METRICS) draw_series(cr, &val, t, s, 2);
    draw_legend(cr, &loss, t, PANEL_LOSS);
    draw_legend(cr, &val, t, PANEL_METRICS);

    if (t->n == 0) {
        draw_note(cr, &loss, "no steps logged yet");
        draw_note(cr, &val, "no steps logged yet");
    } else {
        if (!n_loss) draw_note(cr, &loss, "no loss values");
        else if (t->n == 1) draw_note(cr, &loss, "only one step logged");
        if (!n_val) draw_note(cr, &val, only_val ? "no validation yet" : "no metric values");
    }
}

/* Writes surf to png_path through png_path.tmp and a rename. */
static int write_png(cairo_surface_t *surf, cairo_status_t cst, const char *png_path, char *err, size_t err_len) {
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
    return rc;
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
    const int rc = write_png(surf, cst, png_path, err, err_len);
    cairo_surface_destroy(surf);
    return rc;
}

/* ---- confusion matrices --------------------------------------------------- */

int plot_confusion(const char *png_path, const char *title, const char *const *labels, int n,
                   const int64_t *counts, char *err, size_t err_len) {
    if (err && err_len) err[0] = 0;
    if (!png_path || !labels || !counts || n < 1 || n > 4096) {
        set_err(err, err_len, "plot: NULL argument or %d classes (1..4096)", n);
        return -1;
    }
    /* cells of 4 to 28 pixels, so 150 classes still fit about 1,300 pixels;
     * the labels are drawn only while they stay legible */
    const double cellpx = fmax(4.0, fmin(28.0, 1300.0 / n)), font = fmin(13.0, cellpx * 0.8);
    const bool named = cellpx >= 7.0;
    double lw = 0;
    for (int i = 0; named && i < n; i++) lw = fmax(lw, text_width(font, labels[i]));
    const double left = 40 + lw + 10, top = 70 + lw + 10, side = cellpx * n;
    const int w = (int)(left + side + 120), h = (int)(top + side + 60);
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    if (cairo_surface_status(surf) != CAIRO_STATUS_SUCCESS) {
        set_err(err, err_len, "%s: cairo: %s", png_path, cairo_status_to_string(cairo_surface_status(surf)));
        cairo_surface_destroy(surf);
        return -1;
    }
    cairo_t *cr = cairo_create(surf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    text_at(cr, 20, 20, 0, 0, 18, true, title ? title : "Confusion matrix");
    text_at(cr, left + side / 2, top - lw - 22, 0.5, 1, 13, false, "predicted");
    cairo_save(cr);
    cairo_translate(cr, 22, top + side / 2);
    cairo_rotate(cr, -0.5 * 3.14159265358979323846);
    text_at(cr, 0, 0, 0.5, 1, 13, false, "true intent");
    cairo_restore(cr);
    /* each row as the share of its true class: a class's recall on the
     * diagonal, its confusions off it, whatever the class's size */
    for (int r = 0; r < n; r++) {
        int64_t total = 0;
        for (int c = 0; c < n; c++) total += counts[(int64_t)r * n + c];
        for (int c = 0; c < n; c++) {
            const double v = total ? (double)counts[(int64_t)r * n + c] / (double)total : 0.0;
            const double g = 1.0 - 0.85 * sqrt(v); /* sqrt: one confusion in thirty still shows */
            if (r == c) cairo_set_source_rgb(cr, g, g, 1.0 - 0.45 * sqrt(v));
            else cairo_set_source_rgb(cr, 1.0 - 0.2 * sqrt(v), g, g);
            cairo_rectangle(cr, left + c * cellpx, top + r * cellpx, cellpx, cellpx);
            cairo_fill(cr);
        }
    }
    cairo_set_source_rgb(cr, 0.75, 0.75, 0.75);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, left, top, side, side);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    for (int i = 0; named && i < n; i++) {
        text_at(cr, left - 6, top + (i + 0.5) * cellpx, 1, 0.5, font, false, labels[i]);
        cairo_save(cr);
        cairo_translate(cr, left + (i + 0.5) * cellpx, top - 6);
        cairo_rotate(cr, -0.5 * 3.14159265358979323846);
        text_at(cr, 0, 0, 0, 0.5, font, false, labels[i]);
        cairo_restore(cr);
    }
    /* the colour keys */
    const double kx = left + side + 30;
    for (int i = 0; i <= 10; i++) {
        const double v = i / 10.0, g = 1.0 - 0.85 * sqrt(v);
        cairo_set_source_rgb(cr, g, g, 1.0 - 0.45 * sqrt(v));
        cairo_rectangle(cr, kx, top + i * 16, 14, 16);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 1.0 - 0.2 * sqrt(v), g, g);
        cairo_rectangle(cr, kx + 14, top + i * 16, 14, 16);
        cairo_fill(cr);
        char buf[16];
        snprintf(buf, sizeof buf, "%d%%", i * 10);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        text_at(cr, kx + 34, top + i * 16 + 8, 0, 0.5, 10, false, buf);
    }
    text_at(cr, kx, top + 11 * 16 + 14, 0, 0, 10, false, "of the row");
    const cairo_status_t cst = cairo_status(cr);
    cairo_destroy(cr);
    const int rc = write_png(surf, cst, png_path, err, err_len);
    cairo_surface_destroy(surf);
    return rc;
}

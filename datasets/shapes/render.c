/* datasets/shapes/render.c - draws a scene with cairo (antialiased) and
 * writes it as a PNG. cairo's PNG writer adds no timestamp, so the same
 * pixels give the same bytes (tests/unit/test_shapes.c checks it). */
#include <cairo.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "shapes.h"

static const unsigned char COLOR_RGB[SHAPES_NCOLORS][3] = {
    {220, 30, 30},  /* red */
    {245, 130, 20}, /* orange */
    {230, 195, 0},  /* yellow */
    {30, 160, 50},  /* green */
    {30, 70, 220},  /* blue */
    {140, 50, 180}, /* purple */
    {120, 70, 30},  /* brown */
    {25, 25, 25}    /* black */
};

/* Light pixel noise: uniform in [-NOISE, NOISE] per channel, 0..255 scale. */
#define NOISE 6

/* Paths in a unit frame: centre (0, 0), circumscribed radius 1. */
static void shape_path(cairo_t *cr, int shape) {
    const double pi = 3.14159265358979323846;
    switch (shape) {
    case 0: cairo_arc(cr, 0, 0, 1, 0, 2 * pi); break;
    case 1: { double h = sqrt(0.5); cairo_rectangle(cr, -h, -h, 2 * h, 2 * h); } break;
    case 2:
    case 4:
    case 3: {
        int n = shape == 2 ? 3 : shape == 4 ? 6 : 10;
        for (int i = 0; i < n; i++) {
            double a = -pi / 2 + 2 * pi * i / n, rad = (shape == 3 && (i & 1)) ? 0.45 : 1.0;
            if (i == 0) cairo_move_to(cr, rad * cos(a), rad * sin(a));
            else cairo_line_to(cr, rad * cos(a), rad * sin(a));
        }
        cairo_close_path(cr);
    } break;
    case 5: { /* plus: arms of half-width w reach radius 1 at their corners */
        double w = 0.3, l = sqrt(1.0 - w * w);
        const double p[12][2] = {{-w, -l}, {w, -l}, {w, -w}, {l, -w}, {l, w},  {w, w},
                                 {w, l},   {-w, l}, {-w, w}, {-l, w}, {-l, -w}, {-w, -w}};
        cairo_move_to(cr, p[0][0], p[0][1]);
        for (int i = 1; i < 12; i++) cairo_line_to(cr, p[i][0], p[i][1]);
        cairo_close_path(cr);
    } break;
    default:
        cairo_move_to(cr, 0, -1);
        cairo_line_to(cr, 0.65, 0);
        cairo_line_to(cr, 0, 1);
        cairo_line_to(cr, -0.65, 0);
        cairo_close_path(cr);
    }
}

qiao_status shapes_render_png(const shapes_scene *sc, int size, const char *path) {
    if (!sc || !path || size < 16 || size > 1024)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "shapes_render_png: bad size %d (16..1024)", size);
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, size, size);
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(s);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: cairo surface %dx%d", path, size, size);
    }
    cairo_t *cr = cairo_create(s);
    cairo_scale(cr, size, size);
    if (sc->bg_gradient) {
        cairo_pattern_t *g = sc->bg_gradient == 1 ? cairo_pattern_create_linear(0, 0, 1, 0)
                                                  : cairo_pattern_create_linear(0, 0, 0, 1);
        cairo_pattern_add_color_stop_rgb(g, 0, sc->bg[0][0], sc->bg[0][1], sc->bg[0][2]);
        cairo_pattern_add_color_stop_rgb(g, 1, sc->bg[1][0], sc->bg[1][1], sc->bg[1][2]);
        cairo_set_source(cr, g);
        cairo_paint(cr);
        cairo_pattern_destroy(g);
    } else {
        cairo_set_source_rgb(cr, sc->bg[0][0], sc->bg[0][1], sc->bg[0][2]);
        cairo_paint(cr);
    }
    for (int i = 0; i < sc->n; i++) {
        const shapes_object *o = &sc->obj[i];
        cairo_save(cr);
        cairo_translate(cr, o->x, o->y);
        cairo_rotate(cr, o->rot * 3.14159265358979323846 / 180.0);
        cairo_scale(cr, o->r, o->r);
        shape_path(cr, o->shape);
        cairo_restore(cr);
        const unsigned char *c = COLOR_RGB[o->color];
        cairo_set_source_rgb(cr, c[0] / 255.0, c[1] / 255.0, c[2] / 255.0);
        cairo_fill(cr);
    }
    cairo_status_t cst = cairo_status(cr);
    cairo_destroy(cr);
    if (cst != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(s);
        return qc_error(QIAO_ERR_INTERNAL, "%s: cairo: %s", path, cairo_status_to_string(cst));
    }

    cairo_surface_flush(s);
    unsigned char *px = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    qc_rng r;
    qc_rng_seed(&r, sc->seed ^ 0x4E015E5EEDull);
    for (int y = 0; y < size; y++) {
        uint32_t *row = (uint32_t *)(void *)(px + (size_t)y * (size_t)stride);
        for (int x = 0; x < size; x++) {
            uint32_t v = row[x], out = 0;
            uint64_t rnd = qc_rng_u64(&r);
            for (int ch = 0; ch < 3; ch++) {
                int c = (int)((v >> (8 * ch)) & 0xFF) + (int)((rnd >> (16 * ch)) % (2 * NOISE + 1)) - NOISE;
                c = c < 0 ? 0 : c > 255 ? 255 : c;
                out |= (uint32_t)c << (8 * ch);
            }
            row[x] = out;
        }
    }
    cairo_surface_mark_dirty(s);

    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        cairo_surface_destroy(s);
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: path too long", path);
    }
    cst = cairo_surface_write_to_png(s, tmp);
    cairo_surface_destroy(s);
    if (cst != CAIRO_STATUS_SUCCESS) {
        remove(tmp);
        return qc_error(QIAO_ERR_IO, "%s: cannot write PNG: %s", tmp, cairo_status_to_string(cst));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return qc_error(QIAO_ERR_IO, "%s: rename: %s", path, strerror(e));
    }
    return QIAO_OK;
}

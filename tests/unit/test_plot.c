/* Training curves (apps/qiao/plot.c, compiled into this test): a realistic
 * log with sparse validation, empty and NaN cells and garbage lines; logs
 * with one and with no rows; and the failures (missing CSV, no step column,
 * unwritable PNG). Each PNG is decoded back with the SDK to check it is a
 * real 1200x800 image with something drawn on it. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apps/qiao/plot.h"
#include "qiao.h"
#include "testutil.h"

#define HEADER                                                                                                   \
    "step,seconds,lr,loss,loss_text_image,loss_audio_text,loss_audio_image,scale_text_image,scale_audio_text," \
    "scale_audio_image,grad_norm,samples_per_s,val_t2i_r1,val_i2t_r1,val_a2i_r1,val_a2t_r1\n"

typedef struct paths {
    char dir[64], csv[128], png[128];
} paths;

static void paths_make(paths *p) {
    snprintf(p->dir, sizeof p->dir, "/tmp/qiao-plot-XXXXXX");
    assert_non_null(mkdtemp(p->dir));
    snprintf(p->csv, sizeof p->csv, "%s/train.csv", p->dir);
    snprintf(p->png, sizeof p->png, "%s/train.png", p->dir);
}

static void paths_free(paths *p) {
    unlink(p->csv);
    unlink(p->png);
    rmdir(p->dir);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Decodes the PNG; checks its size and counts distinct colours (up to 64)
 * and the pixels that are neither white nor grey (the coloured curves). */
static void check_png(const char *path, int *colours, int64_t *coloured) {
    qiao_image *img = NULL;
    qiao_status st = qiao_image_decode_file(path, NULL, &img);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    assert_int_equal(qiao_image_width(img), 1200);
    assert_int_equal(qiao_image_height(img), 800);
    assert_string_equal(qiao_image_format(img), "png");
    uint32_t seen[64];
    int n = 0;
    int64_t col = 0;
    const uint8_t *px = qiao_image_pixels(img);
    size_t stride = qiao_image_stride(img);
    for (int64_t y = 0; y < 800; y++)
        for (int64_t x = 0; x < 1200; x++) {
            const uint8_t *q = px + (size_t)y * stride + 3 * (size_t)x;
            uint32_t c = (uint32_t)q[0] << 16 | (uint32_t)q[1] << 8 | q[2];
            int maxc = q[0] > q[1] ? (q[0] > q[2] ? q[0] : q[2]) : (q[1] > q[2] ? q[1] : q[2]);
            int minc = q[0] < q[1] ? (q[0] < q[2] ? q[0] : q[2]) : (q[1] < q[2] ? q[1] : q[2]);
            col += maxc - minc > 60;
            bool known = false;
            for (int i = 0; i < n && !known; i++) known = seen[i] == c;
            if (!known && n < 64) seen[n++] = c;
        }
    qiao_image_free(img);
    *colours = n;
    *coloured = col;
}

static void full_log(void **state) {
    (void)state;
    paths p;
    paths_make(&p);
    /* 200 steps; losses decay from ~4 to ~0.05 (two decades); validation
     * every 50 steps (empty cells in between); an audio pair missing early
     * (empty), a NaN, an inf, and lines a crash or a person could leave. */
    FILE *f = fopen(p.csv, "w");
    assert_non_null(f);
    fputs(HEADER, f);
    for (int s = 1; s <= 200; s++) {
        double l = 4.0 * exp(-0.02 * s) + 0.03;
        fprintf(f, "%d,%.2f,0.0003,%.5f,%.5f,", s, 0.5 * s, l, 1.1 * l);
        if (s < 20) fprintf(f, ",,");
        else if (s == 77) fprintf(f, "nan,inf,");
        else fprintf(f, "%.5f,%.5f,", 0.9 * l, 1.3 * l);
        fprintf(f, "14.3,14.3,14.3,1.5,120");
        if (s % 50 == 0) fprintf(f, ",%.3f,%.3f,%.3f,%.3f\n", s / 250.0, s / 260.0, s / 400.0, s / 500.0);
        else fprintf(f, ",,,,\n");
        if (s == 100)
            fputs("garbage line without commas\n,,,\nstep,seconds\nabc,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n", f);
    }
    fputs("201,100.5,0.0003,0.05", f); /* torn last line */
    fclose(f);
    char err[256];
    int rc = plot_training_csv(p.csv, p.png, err, sizeof err);
    if (rc) fail_msg("%s", err);
    int colours;
    int64_t coloured;
    check_png(p.png, &colours, &coloured);
    printf("full log: %d+ colours, %lld coloured pixels\n", colours, (long long)coloured);
    assert_true(colours >= 8);
    assert_true(coloured > 3000); /* seven coloured curves and their legend */
    paths_free(&p);
}

static void few_rows(void **state) {
    (void)state;
    paths p;
    paths_make(&p);
    char err[256];
    int colours;
    int64_t coloured;
    const char *logs[] = {
        "",                                   /* not even a header */
        HEADER,                               /* no rows */
        HEADER "1,0.4,0.0001,4.1,4.0,4.2,4.3,14.3,14.3,14.3,2.0,100,,,,\n", /* one row */
        HEADER "5,1,0.0001,,,,,,,,,,0.1,0.2,0.3,0.4\n",                     /* validation only */
        "step,loss\n3,nan\n4,-1\n",           /* other columns; nothing a log axis can show */
    };
    int64_t col[sizeof logs / sizeof *logs];
    for (size_t i = 0; i < sizeof logs / sizeof *logs; i++) {
        write_file(p.csv, logs[i]);
        unlink(p.png);
        int rc = plot_training_csv(p.csv, p.png, err, sizeof err);
        if (rc) fail_msg("log %zu: %s", i, err);
        check_png(p.png, &colours, &coloured);
        printf("log %zu: %d colours, %lld coloured\n", i, colours, (long long)coloured);
        assert_true(colours > 1);
        col[i] = coloured;
    }
    /* Only the legend is coloured without values; the one row's four loss
     * markers and the four validation markers add to it. */
    assert_true(col[0] == col[1] && col[4] == col[1]);
    assert_true(col[2] > col[1] + 50);
    assert_true(col[3] > col[1] + 50);
    paths_free(&p);
}

/* Red (the audio-text loss) pixels inside the loss panel between steps
 * lo and hi of a log whose steps run 1..200 (the panel spans x 95..575). */
static int64_t red_between(const char *path, int lo, int hi) {
    qiao_image *img = NULL;
    qiao_status st = qiao_image_decode_file(path, NULL, &img);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    const uint8_t *px = qiao_image_pixels(img);
    const size_t stride = qiao_image_stride(img);
    const int x0 = 95 + (int)((lo - 1) / 199.0 * 480), x1 = 95 + (int)((hi - 1) / 199.0 * 480);
    int64_t n = 0;
    for (int y = 80; y < 680; y++)
        for (int x = x0; x < x1; x++) {
            const uint8_t *q = px + (size_t)y * stride + 3 * (size_t)x;
            n += q[0] > 150 && q[1] < 100 && q[2] < 100;
        }
    qiao_image_free(img);
    return n;
}

/* A pair that did not train for a stretch (empty loss cells, as in a
 * text-image-only stage) leaves a gap in its curve, not a straight line
 * across; the sparse validation columns are still joined. */
static void loss_gap(void **state) {
    (void)state;
    paths p;
    paths_make(&p);
    FILE *f = fopen(p.csv, "w");
    assert_non_null(f);
    fputs(HEADER, f);
    for (int s = 1; s <= 200; s++) {
        const bool audio = s <= 50 || s > 150;
        const double l = 4.0 * exp(-0.02 * s) + 0.03, a = audio ? 2.0 : 0.0;
        fprintf(f, "%d,%.2f,0.0003,%.5f,%.5f,", s, 0.5 * s, l + a, l);
        if (audio) fprintf(f, "%.5f,%.5f,", 1.0 + 0.001 * s, 1.1);
        else fprintf(f, ",,");
        fprintf(f, "14.3,14.3,14.3,1.5,120");
        if (s % 50 == 0) fprintf(f, ",%.3f,%.3f,%.3f,%.3f\n", s / 250.0, s / 260.0, s / 400.0, s / 500.0);
        else fprintf(f, ",,,,\n");
    }
    fclose(f);
    char err[256];
    if (plot_training_csv(p.csv, p.png, err, sizeof err)) fail_msg("%s", err);
    const int64_t inside = red_between(p.png, 60, 140), before = red_between(p.png, 5, 45),
                  after = red_between(p.png, 155, 195);
    printf("audio-text loss: %lld red pixels in the gap, %lld before, %lld after\n", (long long)inside,
           (long long)before, (long long)after);
    assert_int_equal(inside, 0);
    assert_true(before > 50 && after > 50);
    paths_free(&p);
}

static void failures(void **state) {
    (void)state;
    paths p;
    paths_make(&p);
    char err[256];
    assert_int_not_equal(plot_training_csv(p.csv, p.png, err, sizeof err), 0);
    printf("expected: %s\n", err);
    assert_non_null(strstr(err, p.csv));
    write_file(p.csv, "seconds,loss\n1,2\n");
    assert_int_not_equal(plot_training_csv(p.csv, p.png, err, sizeof err), 0);
    printf("expected: %s\n", err);
    assert_non_null(strstr(err, "step"));
    write_file(p.csv, HEADER);
    char bad[192];
    snprintf(bad, sizeof bad, "%s/no-such-dir/train.png", p.dir);
    assert_int_not_equal(plot_training_csv(p.csv, bad, err, sizeof err), 0);
    printf("expected: %s\n", err);
    assert_non_null(strstr(err, "no-such-dir"));
    assert_int_not_equal(plot_training_csv(p.csv, bad, NULL, 0), 0); /* no message buffer */
    assert_true(access(p.png, F_OK) != 0);
    paths_free(&p);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(full_log),
        cmocka_unit_test(few_rows),
        cmocka_unit_test(loss_gap),
        cmocka_unit_test(failures),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

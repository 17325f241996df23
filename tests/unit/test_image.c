/* tests/unit/test_image.c - image decoding and preprocessing on real photos.
 *
 * The photos (tests/data/image/, CC BY / BY-SA, see LICENSE.txt there) are
 * JPEG. Every other format is made at test time with the ffmpeg command line
 * from the pixels our JPEG decode produced, so a lossless format must decode
 * back to exactly those pixels: that checks stb's PNG/BMP/TGA path and
 * FFmpeg's WebP/TIFF path against the same truth. The ffmpeg CLI is a
 * declared dependency: when it is missing the tests fail. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <libswscale/swscale.h>
#include <math.h>

#include "testutil.h"

#define PHOTO QIAO_TEST_DATA "/image/000000126107.jpg"    /* 640x480 */
#define PHOTO2 QIAO_TEST_DATA "/image/000000205401.jpg"   /* 640x408, gray content */
#define PORTRAIT QIAO_TEST_DATA "/image/000000159269.jpg" /* 427x640 */
#define STRIP_WIDE QIAO_TEST_DATA "/image/strip-100000x1.png"  /* 370 bytes, black */
#define STRIP_TALL QIAO_TEST_DATA "/image/strip-1x100000.png"  /* 467 bytes, black */

static char tmp_dir[64];

static int setup(void **state) {
    (void)state;
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/qiao_image_XXXXXX");
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *tmp(const char *name) {
    static char buf[8][256];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 256, "%s/%s", tmp_dir, name);
    return b;
}

static void run_ffmpeg(const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "ffmpeg -nostdin -hide_banner -loglevel error -y %s", args);
    int rc = system(cmd);
    if (rc != 0) fail_msg("ffmpeg failed (rc %d; the ffmpeg CLI is a required test dependency): %s", rc, cmd);
}

static qiao_image *decode(const char *path) {
    qiao_image *img = NULL;
    qiao_status st = qiao_image_decode_file(path, NULL, &img);
    if (st != QIAO_OK) fail_msg("%s: %s: %s", path, qiao_status_str(st), qiao_last_error());
    return img;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static uint8_t *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* Writes packed RGB rows (no stride padding) as a .rgb file for ffmpeg. */
static void write_raw(const qiao_image *img, const char *path) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    size_t row = (size_t)qiao_image_width(img) * 3;
    for (int64_t y = 0; y < qiao_image_height(img); y++)
        assert_int_equal(fwrite(qiao_image_pixels(img) + (size_t)y * qiao_image_stride(img), 1, row, f), row);
    fclose(f);
}

/* Mean absolute difference over all channels; -1 if the sizes differ. */
static double mean_abs_diff(const qiao_image *a, const qiao_image *b, int *max_diff) {
    if (qiao_image_width(a) != qiao_image_width(b) || qiao_image_height(a) != qiao_image_height(b)) return -1;
    double s = 0;
    int mx = 0;
    int64_t w = qiao_image_width(a), h = qiao_image_height(a);
    for (int64_t y = 0; y < h; y++) {
        const uint8_t *pa = qiao_image_pixels(a) + (size_t)y * qiao_image_stride(a);
        const uint8_t *pb = qiao_image_pixels(b) + (size_t)y * qiao_image_stride(b);
        for (int64_t i = 0; i < 3 * w; i++) {
            int d = abs((int)pa[i] - (int)pb[i]);
            s += d;
            if (d > mx) mx = d;
        }
    }
    if (max_diff) *max_diff = mx;
    return s / (double)(3 * w * h);
}

static double pixel_stddev(const qiao_image *img) {
    double s = 0, s2 = 0;
    int64_t n = qiao_image_width(img) * qiao_image_height(img) * 3;
    for (int64_t y = 0; y < qiao_image_height(img); y++)
        for (int64_t i = 0; i < 3 * qiao_image_width(img); i++) {
            double v = qiao_image_pixels(img)[(size_t)y * qiao_image_stride(img) + (size_t)i];
            s += v;
            s2 += v * v;
        }
    return sqrt(s2 / (double)n - (s / (double)n) * (s / (double)n));
}

/* ---- decoding ------------------------------------------------------------ */

static void jpeg_matches_ffmpeg_decode(void **state) {
    (void)state;
    qiao_image *img = decode(PHOTO);
    assert_int_equal(qiao_image_width(img), 640);
    assert_int_equal(qiao_image_height(img), 480);
    assert_true(qiao_image_stride(img) >= 640 * 3);
    assert_string_equal(qiao_image_format(img), "jpeg");
    assert_true(pixel_stddev(img) > 20.0); /* a photo, not a flat fill */
    /* JPEG is decoded by libavcodec (decode_stb.c says why not stb): the
     * ffmpeg CLI's decode, converted to RGB by its own swscale settings,
     * agrees up to chroma-upsampling and rounding differences. */
    char args[512];
    snprintf(args, sizeof args, "-i '%s' -f rawvideo -pix_fmt rgb24 '%s'", PHOTO, tmp("ref.rgb"));
    run_ffmpeg(args);
    size_t n;
    uint8_t *ref = read_bytes(tmp("ref.rgb"), &n);
    assert_int_equal(n, 640 * 480 * 3);
    qiao_image *r = NULL;
    assert_int_equal(qiao_image_from_rgb(ref, 640, 480, 640 * 3, &r), QIAO_OK);
    int mx = -1;
    double d = mean_abs_diff(img, r, &mx);
    printf("jpeg: qiao vs ffmpeg CLI mean |diff| %.3f, max %d\n", d, mx);
    assert_true(d >= 0 && d < 2.5);
    free(ref);
    qiao_image_free(r);
    qiao_image_free(img);
}

/* PNG, BMP, TGA, TIFF and lossless WebP made from our own JPEG decode must
 * decode to exactly the same pixels (both stb and FFmpeg paths). */
static void lossless_formats_decode_exactly(void **state) {
    (void)state;
    qiao_image *ref = decode(PHOTO);
    write_raw(ref, tmp("a.rgb"));
    const struct { const char *file, *opts, *format; } fmts[] = {
        {"a.png", "", "png"},
        {"a.bmp", "", "bmp"},
        {"a.tga", "", "tga"},
        {"a.tiff", "", "tiff"},
        {"a.webp", "-c:v libwebp -lossless 1 -pix_fmt bgra", "webp"},
    };
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        char args[512];
        snprintf(args, sizeof args, "-f rawvideo -pix_fmt rgb24 -s 640x480 -i '%s' %s -frames:v 1 '%s'",
                 tmp("a.rgb"), fmts[i].opts, tmp(fmts[i].file));
        run_ffmpeg(args);
        qiao_image *img = decode(tmp(fmts[i].file));
        int mx = -1;
        double d = mean_abs_diff(ref, img, &mx);
        printf("%-6s %s: mean |diff| %.4f max %d\n", fmts[i].format, qiao_image_format(img), d, mx);
        assert_string_equal(qiao_image_format(img), fmts[i].format);
        assert_true(d == 0.0);
        qiao_image_free(img);
    }
    qiao_image_free(ref);
}

/* Four flat quadrants (red, green / blue, white) of a w x h image. */
static uint8_t *quadrants(int64_t w, int64_t h, int invert) {
    uint8_t *p = malloc((size_t)(w * h * 3));
    assert_non_null(p);
    static const uint8_t col[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            int q = (y >= h / 2) * 2 + (x >= w / 2);
            for (int c = 0; c < 3; c++) p[(y * w + x) * 3 + c] = invert ? 255 - col[q][c] : col[q][c];
        }
    return p;
}

/* A two-frame GIF gives its first frame; a paletted photo stays close. */
static void gif_first_frame_and_photo(void **state) {
    (void)state;
    uint8_t *f0 = quadrants(64, 48, 0), *f1 = quadrants(64, 48, 1);
    FILE *f = fopen(tmp("q.rgb"), "wb");
    assert_non_null(f);
    fwrite(f0, 1, 64 * 48 * 3, f);
    fwrite(f1, 1, 64 * 48 * 3, f);
    fclose(f);
    char args[512];
    snprintf(args, sizeof args, "-f rawvideo -pix_fmt rgb24 -s 64x48 -framerate 2 -i '%s' '%s'", tmp("q.rgb"),
             tmp("q.gif"));
    run_ffmpeg(args);
    qiao_image *g = decode(tmp("q.gif"));
    assert_string_equal(qiao_image_format(g), "gif");
    /* ffmpeg's GIF encoder quantizes to an RGB 3-3-2 palette (255 -> 252, with
     * dithering), so the
     * first frame is near f0 and far from the inverted second frame... */
    qiao_image *want = NULL, *other = NULL;
    assert_int_equal(qiao_image_from_rgb(f0, 64, 48, 64 * 3, &want), QIAO_OK);
    assert_int_equal(qiao_image_from_rgb(f1, 64, 48, 64 * 3, &other), QIAO_OK);
    double d0 = mean_abs_diff(g, want, NULL);
    printf("gif frame 0 vs source: mean |diff| %.3f\n", d0);
    assert_true(d0 >= 0 && d0 < 4.0);
    assert_true(mean_abs_diff(g, other, NULL) > 100.0);
    /* ...and equals, exactly, libavcodec's decode of that first frame. */
    snprintf(args, sizeof args, "-i '%s' -frames:v 1 -f rawvideo -pix_fmt rgb24 '%s'", tmp("q.gif"),
             tmp("q0.rgb"));
    run_ffmpeg(args);
    size_t n;
    uint8_t *ref0 = read_bytes(tmp("q0.rgb"), &n);
    assert_int_equal(n, 64 * 48 * 3);
    assert_memory_equal(qiao_image_pixels(g), ref0, n);
    free(ref0);
    qiao_image_free(g);
    qiao_image_free(want);
    qiao_image_free(other);

    qiao_image *ref = decode(PHOTO);
    snprintf(args, sizeof args, "-i '%s' -vf 'split[a][b];[a]palettegen[p];[b][p]paletteuse' '%s'", PHOTO,
             tmp("p.gif"));
    run_ffmpeg(args);
    g = decode(tmp("p.gif"));
    double d = mean_abs_diff(ref, g, NULL);
    printf("gif photo: mean |diff| %.3f\n", d);
    assert_true(d >= 0 && d < 8.0);
    qiao_image_free(g);
    qiao_image_free(ref);
    free(f0);
    free(f1);
}

/* RGBA PNG (stb) and WebP (FFmpeg) are composited onto the background;
 * gray PNG expands to three equal channels. */
static void alpha_composited_gray_expanded(void **state) {
    (void)state;
    const int W = 64, H = 48;
    uint8_t *rgba = malloc(W * H * 4), *gray = malloc(W * H);
    assert_true(rgba && gray);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = rgba + (y * W + x) * 4;
            p[0] = (uint8_t)(x * 4);
            p[1] = (uint8_t)(y * 5);
            p[2] = (uint8_t)(255 - x * 3);
            p[3] = (uint8_t)(x < 8 ? 0 : x >= 56 ? 255 : (x * 4 + y) & 255);
            gray[y * W + x] = (uint8_t)((x * 7 + y * 3) & 255);
        }
    write_bytes(tmp("a.rgba"), rgba, W * H * 4);
    write_bytes(tmp("g.raw"), gray, W * H);
    char args[512];
    snprintf(args, sizeof args, "-f rawvideo -pix_fmt rgba -s 64x48 -i '%s' -frames:v 1 '%s'", tmp("a.rgba"),
             tmp("alpha.png"));
    run_ffmpeg(args);
    snprintf(args, sizeof args,
             "-f rawvideo -pix_fmt rgba -s 64x48 -i '%s' -c:v libwebp -lossless 1 -pix_fmt bgra -frames:v 1 '%s'",
             tmp("a.rgba"), tmp("alpha.webp"));
    run_ffmpeg(args);
    snprintf(args, sizeof args, "-f rawvideo -pix_fmt gray -s 64x48 -i '%s' -frames:v 1 '%s'", tmp("g.raw"),
             tmp("gray.png"));
    run_ffmpeg(args);

    qiao_image_decode_params dp = qiao_image_decode_default_params();
    const uint8_t bg[3] = {10, 200, 30};
    memcpy(dp.background, bg, 3);
    const char *files[2] = {tmp("alpha.png"), tmp("alpha.webp")};
    for (int k = 0; k < 2; k++) {
        qiao_image *img = NULL;
        assert_int_equal(qiao_image_decode_file(files[k], &dp, &img), QIAO_OK);
        int bad = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                const uint8_t *p = rgba + (y * W + x) * 4;
                const uint8_t *q = qiao_image_pixels(img) + (size_t)y * qiao_image_stride(img) + x * 3;
                for (int c = 0; c < 3; c++) {
                    double want = (p[c] * p[3] + bg[c] * (255.0 - p[3])) / 255.0;
                    if (fabs(q[c] - want) > 0.5 + 1e-9) bad++;
                }
            }
        printf("%s: %d channel values off\n", qiao_image_format(img), bad);
        assert_int_equal(bad, 0);
        /* fully transparent columns are exactly the background */
        assert_memory_equal(qiao_image_pixels(img), bg, 3);
        qiao_image_free(img);
    }
    qiao_image *g = decode(tmp("gray.png"));
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++)
                assert_int_equal(qiao_image_pixels(g)[(size_t)y * qiao_image_stride(g) + x * 3 + c], gray[y * W + x]);
    qiao_image_free(g);
    free(rgba);
    free(gray);
}

static void memory_equals_file(void **state) {
    (void)state;
    qiao_image *ref = decode(PHOTO);
    write_raw(ref, tmp("a.rgb"));
    char args[512];
    snprintf(args, sizeof args, "-f rawvideo -pix_fmt rgb24 -s 640x480 -i '%s' -c:v libwebp -quality 80 '%s'",
             tmp("a.rgb"), tmp("lossy.webp"));
    run_ffmpeg(args);
    const char *paths[2] = {PHOTO2, tmp("lossy.webp")};
    for (int k = 0; k < 2; k++) {
        size_t n;
        uint8_t *bytes = read_bytes(paths[k], &n);
        qiao_image *a = decode(paths[k]), *b = NULL;
        assert_int_equal(qiao_image_decode_memory(bytes, n, NULL, &b), QIAO_OK);
        assert_string_equal(qiao_image_format(a), qiao_image_format(b));
        assert_true(mean_abs_diff(a, b, NULL) == 0.0);
        if (k == 1) { /* lossy WebP still looks like the photo */
            double d = mean_abs_diff(ref, a, NULL);
            printf("lossy webp vs jpeg decode: %.3f\n", d);
            assert_true(d >= 0 && d < 6.0);
        }
        qiao_image_free(a);
        qiao_image_free(b);
        free(bytes);
    }
    qiao_image_free(ref);
}

static void wrong_extension_is_sniffed(void **state) {
    (void)state;
    qiao_image *ref = decode(PHOTO);
    write_raw(ref, tmp("a.rgb"));
    char args[512];
    snprintf(args, sizeof args, "-f rawvideo -pix_fmt rgb24 -s 640x480 -i '%s' -f image2 -c:v png '%s'",
             tmp("a.rgb"), tmp("really_png.jpg"));
    run_ffmpeg(args);
    snprintf(args, sizeof args, "-f rawvideo -pix_fmt rgb24 -s 640x480 -i '%s' -f image2 -c:v tiff '%s'",
             tmp("a.rgb"), tmp("really_tiff.png"));
    run_ffmpeg(args);
    qiao_image *a = decode(tmp("really_png.jpg")), *b = decode(tmp("really_tiff.png"));
    assert_string_equal(qiao_image_format(a), "png");
    assert_string_equal(qiao_image_format(b), "tiff");
    assert_true(mean_abs_diff(ref, a, NULL) == 0.0);
    assert_true(mean_abs_diff(ref, b, NULL) == 0.0);
    qiao_image_free(a);
    qiao_image_free(b);
    qiao_image_free(ref);
}

/* ---- video --------------------------------------------------------------- */

static void make_video(const char *out, const char *codec) {
    char args[512];
    snprintf(args, sizeof args, "-loop 1 -framerate 10 -i '%s' -t 2 %s -pix_fmt yuv420p '%s'", PHOTO, codec, out);
    run_ffmpeg(args);
}

static void check_frames(qiao_image **fr, size_t n, const double *want, const qiao_image *photo) {
    for (size_t i = 0; i < n; i++) {
        printf("frame %zu: t=%.3f (want %.3f) %lldx%lld %s\n", i, qiao_image_timestamp(fr[i]), want[i],
               (long long)qiao_image_width(fr[i]), (long long)qiao_image_height(fr[i]), qiao_image_format(fr[i]));
        assert_true(fabs(qiao_image_timestamp(fr[i]) - want[i]) < 0.051);
        if (i) assert_true(qiao_image_timestamp(fr[i]) > qiao_image_timestamp(fr[i - 1]));
        double d = mean_abs_diff(photo, fr[i], NULL);
        assert_true(d >= 0 && d < 8.0); /* each frame is the photo, through a lossy codec */
    }
}

static void video_frames_by_rate(void **state) {
    (void)state;
    make_video(tmp("v.mp4"), "-c:v libx264 -preset ultrafast");
    qiao_image *photo = decode(PHOTO);
    qiao_video_params vp = qiao_video_default_params();
    vp.fps = 2.0;
    qiao_image **fr = NULL;
    size_t n = 0;
    qiao_status st = qiao_image_decode_video_frames(tmp("v.mp4"), &vp, &fr, &n);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    assert_int_equal(n, 4);
    const double want[4] = {0.0, 0.5, 1.0, 1.5};
    check_frames(fr, n, want, photo);
    assert_string_equal(qiao_image_format(fr[0]), "h264");
    qiao_image_frames_free(fr, n);
    /* A still-image call refuses a video container. */
    qiao_image *img = NULL;
    assert_int_equal(qiao_image_decode_file(tmp("v.mp4"), NULL, &img), QIAO_ERR_FORMAT);
    assert_null(img);
    /* max_frames is a limit, not a silent cut. */
    vp.fps = 10.0;
    vp.max_frames = 5;
    assert_int_equal(qiao_image_decode_video_frames(tmp("v.mp4"), &vp, &fr, &n), QIAO_ERR_TOO_LARGE);
    assert_null(fr);
    assert_int_equal(n, 0);
    qiao_image_free(photo);
}

static void video_frames_by_count(void **state) {
    (void)state;
    make_video(tmp("v.mkv"), "-c:v mpeg4 -q:v 3");
    qiao_image *photo = decode(PHOTO);
    qiao_video_params vp = qiao_video_default_params();
    vp.fps = 0;
    vp.count = 5;
    qiao_image **fr = NULL;
    size_t n = 0;
    qiao_status st = qiao_image_decode_video_frames(tmp("v.mkv"), &vp, &fr, &n);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    assert_int_equal(n, 5);
    const double want[5] = {0.0, 0.4, 0.8, 1.2, 1.6};
    check_frames(fr, n, want, photo);
    assert_string_equal(qiao_image_format(fr[0]), "mpeg4");
    qiao_image_frames_free(fr, n);
    vp.count = 0;
    assert_int_equal(qiao_image_decode_video_frames(tmp("v.mkv"), &vp, &fr, &n), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_image_decode_video_frames(tmp("nope.mkv"), NULL, &fr, &n), QIAO_ERR_IO);
    write_bytes(tmp("empty.mp4"), "", 0);
    assert_int_equal(qiao_image_decode_video_frames(tmp("empty.mp4"), NULL, &fr, &n), QIAO_ERR_FORMAT);
    write_bytes(tmp("junk.mp4"), "this is not a video at all, just text", 37);
    assert_int_equal(qiao_image_decode_video_frames(tmp("junk.mp4"), NULL, &fr, &n), QIAO_ERR_FORMAT);
    qiao_image_free(photo);
}

/* An absurd fps on a stream whose duration nothing states (raw H.264, so no
 * refusal up front): every source frame is taken once, and quickly (the
 * sampler once counted its targets up to t * fps one by one). */
static void video_absurd_fps(void **state) {
    (void)state;
    make_video(tmp("v.h264"), "-c:v libx264 -preset ultrafast -f h264");
    const double fps[2] = {1e12, 1e300};
    for (int k = 0; k < 2; k++) {
        qiao_video_params vp = qiao_video_default_params();
        vp.fps = fps[k];
        qiao_image **fr = NULL;
        size_t n = 0;
        qiao_status st = qiao_image_decode_video_frames(tmp("v.h264"), &vp, &fr, &n);
        if (st != QIAO_OK) fail_msg("fps %g: %s", fps[k], qiao_last_error());
        assert_int_equal(n, 20); /* 2 s at 10 fps */
        for (size_t i = 1; i < n; i++) assert_true(qiao_image_timestamp(fr[i]) > qiao_image_timestamp(fr[i - 1]));
        qiao_image_frames_free(fr, n);
    }
}

/* ---- bad input ----------------------------------------------------------- */

static void expect_fail(const char *path, qiao_status want) {
    qiao_image *img = (qiao_image *)1;
    qiao_status st = qiao_image_decode_file(path, NULL, &img);
    printf("%s -> %s: %s\n", path, qiao_status_str(st), qiao_last_error());
    assert_int_equal(st, want);
    assert_null(img);
    if (want != QIAO_ERR_INVALID_ARGUMENT) assert_non_null(strstr(qiao_last_error(), path));
}

static void truncated_files_fail(void **state) {
    (void)state;
    qiao_image *ref = decode(PHOTO);
    write_raw(ref, tmp("a.rgb"));
    char args[512];
    snprintf(args, sizeof args, "-f rawvideo -pix_fmt rgb24 -s 640x480 -i '%s' -frames:v 1 '%s'", tmp("a.rgb"),
             tmp("a.png"));
    run_ffmpeg(args);
    snprintf(args, sizeof args, "-f rawvideo -pix_fmt rgb24 -s 640x480 -i '%s' -frames:v 1 '%s'", tmp("a.rgb"),
             tmp("a.tiff"));
    run_ffmpeg(args);
    char src[3][256];
    snprintf(src[0], 256, "%s", PHOTO);
    snprintf(src[1], 256, "%s", tmp("a.png"));
    snprintf(src[2], 256, "%s", tmp("a.tiff"));
    const char *cut[3] = {"cut.jpg", "cut.png", "cut.tiff"};
    for (int k = 0; k < 3; k++) {
        size_t n;
        uint8_t *b = read_bytes(src[k], &n);
        for (int part = 1; part <= 3; part++) { /* 1/4, 2/4, 3/4 of the file */
            write_bytes(tmp(cut[k]), b, n * (size_t)part / 4);
            expect_fail(tmp(cut[k]), QIAO_ERR_FORMAT);
        }
        write_bytes(tmp(cut[k]), b, 20); /* inside the header */
        expect_fail(tmp(cut[k]), QIAO_ERR_FORMAT);
        free(b);
    }
    qiao_image_free(ref);
}

static void garbage_and_empty_fail(void **state) {
    (void)state;
    uint8_t junk[4096];
    qc_rng r;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        qc_rng_seed(&r, seed);
        for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)qc_rng_u64(&r);
        write_bytes(tmp("junk.png"), junk, sizeof junk);
        expect_fail(tmp("junk.png"), QIAO_ERR_FORMAT);
    }
    write_bytes(tmp("empty.jpg"), "", 0);
    expect_fail(tmp("empty.jpg"), QIAO_ERR_FORMAT);
    qiao_image *img = NULL;
    assert_int_equal(qiao_image_decode_memory("", 0, NULL, &img), QIAO_ERR_FORMAT);
    expect_fail(tmp("does-not-exist.png"), QIAO_ERR_IO);
    expect_fail(tmp(""), QIAO_ERR_IO); /* a directory */
    assert_int_equal(qiao_image_decode_file(NULL, NULL, &img), QIAO_ERR_INVALID_ARGUMENT);
    qiao_image_decode_params dp = qiao_image_decode_default_params();
    dp.struct_size = 4;
    assert_int_equal(qiao_image_decode_file(PHOTO, &dp, &img), QIAO_ERR_INVALID_ARGUMENT);
    dp = qiao_image_decode_default_params();
    dp.max_file_bytes = 1000;
    assert_int_equal(qiao_image_decode_file(PHOTO, &dp, &img), QIAO_ERR_TOO_LARGE);
    assert_null(img);
}

static uint32_t crc32_png(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static long max_rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* A valid PNG header claiming 100000 x 100000 RGB (30 GB decoded) is
 * refused from the header alone; so is a real photo under a small limit. */
static void over_pixel_limit_refused_early(void **state) {
    (void)state;
    uint8_t png[8 + 25 + 12];
    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    put32(png + 8, 13);
    memcpy(png + 12, "IHDR", 4);
    put32(png + 16, 100000);
    put32(png + 20, 100000);
    png[24] = 8, png[25] = 2, png[26] = 0, png[27] = 0, png[28] = 0; /* 8-bit RGB */
    put32(png + 29, crc32_png(png + 12, 17));
    put32(png + 33, 0);
    memcpy(png + 37, "IEND", 4);
    put32(png + 41, crc32_png(png + 37, 4));
    write_bytes(tmp("huge.png"), png, sizeof png);
    long before = max_rss_kb();
    expect_fail(tmp("huge.png"), QIAO_ERR_TOO_LARGE);
    assert_non_null(strstr(qiao_last_error(), "100000x100000"));
    qiao_image *img = NULL;
    assert_int_equal(qiao_image_decode_memory(png, sizeof png, NULL, &img), QIAO_ERR_TOO_LARGE);
    assert_true(max_rss_kb() - before < 64 * 1024); /* nothing near 30 GB was touched */
    /* 2^32-1 on each side: the claimed pixel count overflows 64 bits. */
    put32(png + 16, 0xFFFFFFFFu);
    put32(png + 20, 0xFFFFFFFFu);
    put32(png + 29, crc32_png(png + 12, 17));
    assert_int_equal(qiao_image_decode_memory(png, sizeof png, NULL, &img), QIAO_ERR_TOO_LARGE);
    assert_non_null(strstr(qiao_last_error(), "4294967295x4294967295"));

    qiao_image_decode_params dp = qiao_image_decode_default_params();
    dp.max_pixels = 640 * 480 - 1;
    assert_int_equal(qiao_image_decode_file(PHOTO, &dp, &img), QIAO_ERR_TOO_LARGE);
    dp.max_pixels = 640 * 480;
    assert_int_equal(qiao_image_decode_file(PHOTO, &dp, &img), QIAO_OK);
    qiao_image_free(img);
    img = NULL;
    /* WebP (FFmpeg path): the limit comes from its VP8L header. */
    qiao_image *ref = decode(PHOTO);
    write_raw(ref, tmp("a.rgb"));
    char args[512];
    snprintf(args, sizeof args, "-f rawvideo -pix_fmt rgb24 -s 640x480 -i '%s' -c:v libwebp -lossless 1 '%s'",
             tmp("a.rgb"), tmp("a.webp"));
    run_ffmpeg(args);
    dp.max_pixels = 1000;
    assert_int_equal(qiao_image_decode_file(tmp("a.webp"), &dp, &img), QIAO_ERR_TOO_LARGE);
    qiao_image_free(ref);
}

/* ---- threads -------------------------------------------------------------- */

typedef struct job {
    const char *path;
    const float *want;
    size_t n;
    int bad;
} job;

static void *worker(void *arg) {
    job *j = arg;
    float *x = malloc(j->n * sizeof *x);
    for (int it = 0; it < 6 && x; it++) {
        qiao_image *img = NULL;
        if (qiao_image_decode_file(j->path, NULL, &img) != QIAO_OK) {
            j->bad++;
            continue;
        }
        if (qiao_image_preprocess(img, NULL, x, j->n) != QIAO_OK || memcmp(x, j->want, j->n * sizeof *x) != 0)
            j->bad++;
        qiao_image_free(img);
    }
    free(x);
    return NULL;
}

static void decode_on_four_threads(void **state) {
    (void)state;
    qiao_image *ref = decode(PHOTO);
    write_raw(ref, tmp("a.rgb"));
    char args[512];
    snprintf(args, sizeof args, "-f rawvideo -pix_fmt rgb24 -s 640x480 -i '%s' -c:v libwebp -quality 70 '%s'",
             tmp("a.rgb"), tmp("t.webp"));
    run_ffmpeg(args);
    qiao_image_free(ref);
    const char *paths[2] = {PHOTO, tmp("t.webp")};
    size_t n = qiao_image_preprocess_len(NULL);
    float *want[2];
    for (int k = 0; k < 2; k++) {
        want[k] = qt_alloc((int64_t)n);
        qiao_image *img = decode(paths[k]);
        assert_int_equal(qiao_image_preprocess(img, NULL, want[k], n), QIAO_OK);
        qiao_image_free(img);
    }
    pthread_t th[4];
    job jobs[4];
    for (int t = 0; t < 4; t++) {
        jobs[t] = (job){paths[t % 2], want[t % 2], n, 0};
        assert_int_equal(pthread_create(&th[t], NULL, worker, &jobs[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(jobs[t].bad, 0);
    }
    free(want[0]);
    free(want[1]);
}

/* ---- preprocessing --------------------------------------------------------- */

/* 200 x 100: yellow band (x < 50), cyan band (x >= 150), and in between
 * quadrants red | green over blue | white, split at x = 100, y = 50. */
static qiao_image *bands_and_quadrants(void) {
    const int W = 200, H = 100;
    uint8_t *p = malloc(W * H * 3);
    assert_non_null(p);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *q = p + (y * W + x) * 3;
            uint8_t r, g, b;
            if (x < 50) r = 255, g = 255, b = 0;
            else if (x >= 150) r = 0, g = 255, b = 255;
            else if (y < 50) { if (x < 100) r = 255, g = 0, b = 0; else r = 0, g = 255, b = 0; }
            else { if (x < 100) r = 0, g = 0, b = 255; else r = 255, g = 255, b = 255; }
            q[0] = r, q[1] = g, q[2] = b;
        }
    qiao_image *img = NULL;
    assert_int_equal(qiao_image_from_rgb(p, W, H, W * 3, &img), QIAO_OK);
    free(p);
    return img;
}

/* Pixel (x, y) of a CHW (mean 0, std 1) output, as 0..255. */
static void px(const float *chw, int S, int x, int y, float out[3]) {
    for (int c = 0; c < 3; c++) out[c] = 255.0f * chw[(size_t)c * S * S + (size_t)y * S + x];
}

static void expect_px(const float *chw, int S, int x, int y, int r, int g, int b, float tol) {
    float v[3];
    px(chw, S, x, y, v);
    if (fabsf(v[0] - r) > tol || fabsf(v[1] - g) > tol || fabsf(v[2] - b) > tol)
        fail_msg("pixel (%d,%d) = (%.1f %.1f %.1f), want (%d %d %d)", x, y, v[0], v[1], v[2], r, g, b);
}

static qiao_image_preprocess_params unit_params(int64_t S) {
    qiao_image_preprocess_params p = qiao_image_preprocess_default_params();
    p.size = S;
    for (int c = 0; c < 3; c++) p.mean[c] = 0.0f, p.std[c] = 1.0f;
    return p;
}

static void center_crop_geometry(void **state) {
    (void)state;
    qiao_image *img = bands_and_quadrants();
    qiao_image_preprocess_params p = unit_params(50);
    float *x = qt_alloc(3 * 50 * 50);
    assert_int_equal(qiao_image_preprocess(img, &p, x, 3 * 50 * 50), QIAO_OK);
    /* 200x100 -> 100x50, crop x 25..75 = original x 50..150: the bands are gone. */
    expect_px(x, 50, 10, 10, 255, 0, 0, 2);
    expect_px(x, 50, 40, 10, 0, 255, 0, 2);
    expect_px(x, 50, 10, 40, 0, 0, 255, 2);
    expect_px(x, 50, 40, 40, 255, 255, 255, 2);
    for (int y = 0; y < 50; y += 7) { /* bicubic reach is ~2 output pixels */
        expect_px(x, 50, 3, y < 25 ? y / 3 : 49 - (49 - y) / 3, y < 25 ? 255 : 0, 0, y < 25 ? 0 : 255, 3);
        expect_px(x, 50, 46, y < 25 ? y / 3 : 49 - (49 - y) / 3, y < 25 ? 0 : 255, 255, y < 25 ? 0 : 255, 3);
    }
    /* Tall images crop vertically: the transposed picture. */
    qiao_image *photo = decode(PORTRAIT);
    p.size = 224;
    float *y = qt_alloc(3 * 224 * 224);
    assert_int_equal(qiao_image_preprocess(photo, &p, y, 3 * 224 * 224), QIAO_OK);
    for (int i = 0; i < 3 * 224 * 224; i++) assert_true(y[i] >= 0.0f && y[i] <= 1.0f);
    qiao_image_free(photo);
    free(y);
    free(x);
    qiao_image_free(img);
}

static void letterbox_geometry(void **state) {
    (void)state;
    qiao_image *img = bands_and_quadrants();
    qiao_image_preprocess_params p = unit_params(50);
    p.fit = QIAO_IMAGE_FIT_LETTERBOX;
    p.pad[0] = 7, p.pad[1] = 8, p.pad[2] = 9;
    float *x = qt_alloc(3 * 50 * 50);
    assert_int_equal(qiao_image_preprocess(img, &p, x, 3 * 50 * 50), QIAO_OK);
    /* 200x100 -> 50x25 at rows 12..36; rows 0..11 and 37..49 are padding. */
    for (int yy = 0; yy < 50; yy++) {
        if (yy >= 12 && yy < 37) continue;
        for (int xx = 0; xx < 50; xx++) expect_px(x, 50, xx, yy, 7, 8, 9, 1e-3f);
    }
    expect_px(x, 50, 3, 24, 255, 255, 0, 3);   /* yellow band on the left */
    expect_px(x, 50, 46, 24, 0, 255, 255, 3);  /* cyan band on the right */
    expect_px(x, 50, 19, 15, 255, 0, 0, 3);
    expect_px(x, 50, 31, 15, 0, 255, 0, 3);
    expect_px(x, 50, 19, 33, 0, 0, 255, 3);
    expect_px(x, 50, 31, 33, 255, 255, 255, 3);
    free(x);
    qiao_image_free(img);
}

/* A 370-byte PNG of 100000x1 pixels crashed libswscale (issue 12): a crop to
 * 224 resized the whole strip to 22.4 M x 224 first, past swscale's int
 * offsets, and at 64 it cost 1 GB. Only the span the crop keeps is resized
 * now; every size a model uses must work and give the strip's colour. */
static void extreme_aspect_ratios(void **state) {
    (void)state;
    const char *files[2] = {STRIP_WIDE, STRIP_TALL};
    const int64_t sizes[4] = {64, 150, 224, 448};
    float *x = qt_alloc(3 * 448 * 448);
    for (int f = 0; f < 2; f++) {
        qiao_image *img = decode(files[f]);
        for (int fit = 0; fit < 2; fit++)
            for (int k = 0; k < 4; k++) {
                qiao_image_preprocess_params p = unit_params(sizes[k]);
                p.fit = fit ? QIAO_IMAGE_FIT_LETTERBOX : QIAO_IMAGE_FIT_CROP;
                p.pad[0] = p.pad[1] = p.pad[2] = 0;
                size_t n = 3 * (size_t)(sizes[k] * sizes[k]);
                qiao_status st = qiao_image_preprocess(img, &p, x, n);
                if (st != QIAO_OK) fail_msg("%s at %lld: %s", files[f], (long long)sizes[k], qiao_last_error());
                for (size_t i = 0; i < n; i++)
                    if (fabsf(x[i]) > 1e-6f) fail_msg("%s at %lld: value %g at %zu", files[f], (long long)sizes[k], x[i], i);
            }
        qiao_image_free(img);
    }
    /* What the window shows: a 60000x2 strip, red | green band | blue; the
     * crop's window is the middle 2 source pixels, inside the green band. */
    const int64_t W = 60000, H = 2;
    uint8_t *pix = calloc((size_t)(W * H * 3), 1);
    assert_non_null(pix);
    for (int64_t y = 0; y < H; y++)
        for (int64_t xx = 0; xx < W; xx++) {
            uint8_t *q = pix + 3 * (y * W + xx);
            if (xx < W / 2 - 50) q[0] = 255;
            else if (xx < W / 2 + 50) q[1] = 255;
            else q[2] = 255;
        }
    qiao_image *img = NULL;
    assert_int_equal(qiao_image_from_rgb(pix, W, H, (size_t)(3 * W), &img), QIAO_OK);
    qiao_image_preprocess_params p = unit_params(64);
    assert_int_equal(qiao_image_preprocess(img, &p, x, 3 * 64 * 64), QIAO_OK);
    for (int yy = 0; yy < 64; yy += 9)
        for (int xx = 0; xx < 64; xx += 9) expect_px(x, 64, xx, yy, 0, 255, 0, 1);
    qiao_image_free(img);
    free(pix);
    free(x);
}

/* The narrowed resize must show what resizing the whole picture and then
 * cropping shows (swscale directly, as the reference), to within rounding:
 * the narrowed span's scale differs from the full one by under one pixel in
 * the span's length. */
static void extreme_crop_matches_full_resize(void **state) {
    (void)state;
    /* 18.6:1 (gcd(1800, 891) = 9) and a prime width, 206:1. */
    const int widths[2] = {1800, 20011};
    for (int wi = 0; wi < 2; wi++) {
    const int W = widths[wi], H = 97, S = 48;
    uint8_t *pix = malloc((size_t)W * H * 3);
    assert_non_null(pix);
    for (int y = 0; y < H; y++)
        for (int xx = 0; xx < W; xx++)
            for (int c = 0; c < 3; c++)
                pix[3 * ((size_t)y * W + xx) + c] =
                    (uint8_t)lround(127.5 + 120.0 * sin(0.013 * xx * (c + 1) + 0.07 * y * (2 - c)));
    qiao_image *img = NULL;
    assert_int_equal(qiao_image_from_rgb(pix, W, H, (size_t)W * 3, &img), QIAO_OK);
    qiao_image_preprocess_params p = unit_params(S);
    float *x = qt_alloc(3 * S * S);
    assert_int_equal(qiao_image_preprocess(img, &p, x, 3 * S * S), QIAO_OK);
    const int rh = S, rw = (int)lround((double)W * S / H), cx = (rw - S) / 2;
    struct SwsContext *sws = sws_getContext(W, H, AV_PIX_FMT_GRAY8, rw, rh, AV_PIX_FMT_GRAY8,
                                            SWS_BICUBIC | SWS_ACCURATE_RND, NULL, NULL, NULL);
    assert_non_null(sws);
    uint8_t *gray = malloc((size_t)W * H + 64), *big = malloc((size_t)rw * rh + 64);
    assert_non_null(gray);
    assert_non_null(big);
    double worst = 0, sum = 0;
    for (int c = 0; c < 3; c++) {
        for (size_t i = 0; i < (size_t)W * H; i++) gray[i] = pix[3 * i + c];
        const uint8_t *src[4] = {gray, NULL, NULL, NULL};
        int ss[4] = {W, 0, 0, 0}, ds[4] = {rw, 0, 0, 0};
        uint8_t *dst[4] = {big, NULL, NULL, NULL};
        assert_true(sws_scale(sws, src, ss, 0, H, dst, ds) == rh);
        for (int y = 0; y < S; y++)
            for (int xx = 0; xx < S; xx++) {
                double d = fabs(x[(size_t)c * S * S + (size_t)y * S + xx] * 255.0 - big[(size_t)y * rw + cx + xx]);
                if (d > worst) worst = d;
                sum += d;
            }
    }
    print_message("narrowed vs full resize: max %.2f, mean %.3f levels of 255\n", worst, sum / (3.0 * S * S));
    assert_true(worst <= 1.01); /* a rounding step, in float */
    assert_true(sum / (3.0 * S * S) <= 0.05);
    sws_freeContext(sws);
    free(gray);
    free(big);
    free(x);
    free(pix);
    qiao_image_free(img);
    }
}

static void normalization_values(void **state) {
    (void)state;
    uint8_t pix[20 * 30 * 3];
    for (int i = 0; i < 20 * 30; i++) pix[3 * i] = 255, pix[3 * i + 1] = 0, pix[3 * i + 2] = 128;
    qiao_image *img = NULL;
    assert_int_equal(qiao_image_from_rgb(pix, 30, 20, 90, &img), QIAO_OK);
    qiao_image_preprocess_params p = qiao_image_preprocess_default_params();
    assert_int_equal(p.size, 224);
    p.size = 16;
    float chw[3 * 16 * 16], hwc[3 * 16 * 16];
    assert_int_equal(qiao_image_preprocess(img, &p, chw, 3 * 16 * 16), QIAO_OK);
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, sd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    const int v[3] = {255, 0, 128};
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 256; i++) assert_float_equal(chw[c * 256 + i], (v[c] / 255.0f - mean[c]) / sd[c], 1e-5);
    p.layout = QIAO_IMAGE_HWC;
    assert_int_equal(qiao_image_preprocess(img, &p, hwc, 3 * 16 * 16), QIAO_OK);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 256; i++) assert_true(hwc[3 * i + c] == chw[c * 256 + i]);
    /* The default letterbox fill normalizes to about zero. */
    p.layout = QIAO_IMAGE_CHW;
    p.fit = QIAO_IMAGE_FIT_LETTERBOX;
    assert_int_equal(qiao_image_preprocess(img, &p, chw, 3 * 16 * 16), QIAO_OK);
    for (int c = 0; c < 3; c++) assert_true(fabsf(chw[c * 256]) < 0.01f);
    /* Bad params and short buffers. */
    assert_int_equal(qiao_image_preprocess(img, &p, chw, 3 * 16 * 16 - 1), QIAO_ERR_INVALID_ARGUMENT);
    p.std[1] = 0.0f;
    assert_int_equal(qiao_image_preprocess(img, &p, chw, 3 * 16 * 16), QIAO_ERR_INVALID_ARGUMENT);
    p = qiao_image_preprocess_default_params();
    p.size = 0;
    assert_int_equal(qiao_image_preprocess(img, &p, chw, 3 * 16 * 16), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_image_preprocess_len(&p), 0);
    qiao_image_free(img);
}

static void patch_layout(void **state) {
    (void)state;
    const int S = 64, P = 16, G = S / P;
    uint8_t *pix = malloc(S * (S * 3 + 5));
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            uint8_t *q = pix + y * (S * 3 + 5) + x * 3;
            q[0] = (uint8_t)(x * 4), q[1] = (uint8_t)(y * 4), q[2] = (uint8_t)((x + y) * 2);
        }
    qiao_image *img = NULL;
    assert_int_equal(qiao_image_from_rgb(pix, S, S, S * 3 + 5, &img), QIAO_OK);
    memset(pix, 0, S * (S * 3 + 5)); /* the image holds its own copy */
    qiao_image_preprocess_params p = unit_params(S);
    assert_int_equal(qiao_image_patches_len(&p, P), (size_t)(G * G * P * P * 3));
    assert_int_equal(qiao_image_patches_len(&p, 24), 0);
    float *out = qt_alloc(G * G * P * P * 3);
    assert_int_equal(qiao_image_patches(img, &p, P, out, (size_t)(G * G * P * P * 3)), QIAO_OK);
    for (int k = 0; k < G * G; k++)
        for (int c = 0; c < 3; c++)
            for (int py = 0; py < P; py++)
                for (int pxx = 0; pxx < P; pxx++) {
                    int x = (k % G) * P + pxx, y = (k / G) * P + py;
                    int v = c == 0 ? x * 4 : c == 1 ? y * 4 : (x + y) * 2;
                    float got = out[(size_t)k * P * P * 3 + (size_t)c * P * P + py * P + pxx];
                    if (got != v / 255.0f) fail_msg("patch %d c%d (%d,%d): %f want %f", k, c, pxx, py, got, v / 255.0);
                }
    assert_int_equal(qiao_image_patches(img, &p, 24, out, (size_t)(G * G * P * P * 3)), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_image_patches(img, &p, P, out, 10), QIAO_ERR_INVALID_ARGUMENT);
    qiao_image *short_stride = NULL;
    assert_int_equal(qiao_image_from_rgb(pix, S, S, S * 3 - 1, &short_stride), QIAO_ERR_INVALID_ARGUMENT);
    assert_null(short_stride);
    free(out);
    free(pix);
    qiao_image_free(img);
    qiao_image_free(NULL);
    qiao_image_frames_free(NULL, 3);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

static const struct CMUnitTest tests[] = {
    T(jpeg_matches_ffmpeg_decode), T(lossless_formats_decode_exactly), T(gif_first_frame_and_photo),
    T(alpha_composited_gray_expanded), T(memory_equals_file), T(wrong_extension_is_sniffed),
    T(video_frames_by_rate), T(video_frames_by_count), T(video_absurd_fps), T(truncated_files_fail),
    T(garbage_and_empty_fail),
    T(over_pixel_limit_refused_early), T(decode_on_four_threads), T(center_crop_geometry), T(letterbox_geometry),
    T(extreme_aspect_ratios), T(extreme_crop_matches_full_resize), T(normalization_values), T(patch_layout),
};

QT_MAIN(tests)

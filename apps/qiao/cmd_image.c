/* qiao image: decode and preprocess one image through the public API.
 *
 *   qiao image FILE [--size S] [--letterbox] [--patch P] -o out.npy
 *   qiao image --info FILE
 *
 * The tensor is written as NumPy float32: (3, S, S) CHW, or with --patch
 * (num_patches, 3*P*P), the patch vectors in (channel, row, column) order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/npy.h"

static void usage(FILE *f) {
    fprintf(f, "usage: qiao image FILE [--size S] [--letterbox] [--patch P] -o OUT.npy\n"
               "       qiao image --info FILE\n"
               "  --size S      output side (default 224): resize the short side to S and center-crop\n"
               "  --letterbox   fit the long side to S and pad with the CLIP mean color instead\n"
               "  --patch P     write (num_patches, 3*P*P) patch vectors instead of (3, S, S)\n");
}

/* The library's message names the file: "qiao image: format error: x.png: ...". */
static int fail_file(qiao_status st) {
    fprintf(stderr, "qiao image: %s: %s\n", qiao_status_str(st), qiao_last_error());
    return 1;
}

int cmd_image(int argc, char **argv) {
    const char *path = NULL, *out = NULL;
    int info = 0, letterbox = 0;
    int64_t size = 224, patch = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--info")) {
            info = 1;
        } else if (!strcmp(a, "--letterbox")) {
            letterbox = 1;
        } else if (!strcmp(a, "--size")) {
            if (!cli_int_arg("image", a, i + 1 < argc ? argv[++i] : NULL, 1, 8192, &size)) return 2;
        } else if (!strcmp(a, "--patch")) {
            if (!cli_int_arg("image", a, i + 1 < argc ? argv[++i] : NULL, 1, 8192, &patch)) return 2;
        } else if (!strcmp(a, "-o")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "qiao image: -o needs a file name\n");
                return 2;
            }
            out = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "qiao image: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (path) {
            fprintf(stderr, "qiao image: one file at a time ('%s' and '%s')\n", path, a);
            return 2;
        } else {
            path = a;
        }
    }
    if (!path || (!info && !out)) {
        usage(stderr);
        return 2;
    }
    if (patch && size % patch != 0) {
        fprintf(stderr, "qiao image: --patch %lld does not divide --size %lld\n", (long long)patch, (long long)size);
        return 2;
    }
    qiao_image *img = NULL;
    qiao_status st = qiao_image_decode_file(path, NULL, &img);
    if (st != QIAO_OK) return fail_file(st);
    if (info) {
        printf("%s: format %s, width %lld, height %lld\n", path, qiao_image_format(img),
               (long long)qiao_image_width(img), (long long)qiao_image_height(img));
        qiao_image_free(img);
        return 0;
    }
    qiao_image_preprocess_params pp = qiao_image_preprocess_default_params();
    pp.size = size;
    pp.fit = letterbox ? QIAO_IMAGE_FIT_LETTERBOX : QIAO_IMAGE_FIT_CROP;
    size_t n = patch ? qiao_image_patches_len(&pp, patch) : qiao_image_preprocess_len(&pp);
    float *x = malloc(n * sizeof *x);
    if (!x) {
        qiao_image_free(img);
        fprintf(stderr, "qiao image: out of memory\n");
        return 1;
    }
    st = patch ? qiao_image_patches(img, &pp, patch, x, n) : qiao_image_preprocess(img, &pp, x, n);
    qiao_image_free(img);
    if (st == QIAO_OK) {
        int64_t g = patch ? size / patch : 0;
        int64_t shape[3] = {3, size, size};
        if (patch) shape[0] = g * g, shape[1] = 3 * patch * patch;
        st = qc_npy_write_f32(out, x, patch ? 2 : 3, shape);
    }
    free(x);
    if (st != QIAO_OK) return cli_fail(st);
    return 0;
}

/* tests/shapes_fixture.h - what the training tests start from: a fresh
 * temporary folder under $TMPDIR (or /tmp) holding a generated shapes split
 * in its "data" folder. Tests that include it link qiao_datasets. */
#ifndef QIAO_TESTS_SHAPES_FIXTURE_H
#define QIAO_TESTS_SHAPES_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

#include "shapes/shapes.h"

/* dir (cap bytes) <- "<tmp>/qiao_<name>_XXXXXX", made, with n training
 * scenes of `seed` (pictures, captions and questions, no speech) in
 * dir/data. 0 on success, -1 with the reason printed. */
static inline int qt_shapes_fixture(char *dir, size_t cap, const char *name, int64_t n, uint64_t seed) {
    const char *t = getenv("TMPDIR");
    snprintf(dir, cap, "%s/qiao_%s_XXXXXX", t && *t ? t : "/tmp", name);
    if (!mkdtemp(dir)) {
        printf("mkdtemp %s failed\n", dir);
        return -1;
    }
    char data[1024];
    snprintf(data, sizeof data, "%s/data", dir);
    shapes_params p = shapes_default_params();
    p.n = n;
    p.seed = seed;
    p.split = SHAPES_TRAIN;
    p.jobs = 2;
    if (shapes_generate(&p, data) != QIAO_OK) {
        printf("shapes_generate: %s\n", qiao_last_error());
        return -1;
    }
    return 0;
}

#endif

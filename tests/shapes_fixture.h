/* tests/shapes_fixture.h - what the training tests start from: a fresh
 * temporary folder under $TMPDIR (or /tmp) holding a generated shapes split
 * in its "data" folder. Tests that include it link qiao_datasets. */
#ifndef QIAO_TESTS_SHAPES_FIXTURE_H
#define QIAO_TESTS_SHAPES_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Column `name` of a training log (the trainer's CSV): the values of rows
 * [from, to) that have one, into v (at most cap); returns how many, or -1
 * when the file or the column is missing. */
static inline int qt_csv_column(const char *csv, const char *name, int from, int to, double *v, int cap) {
    FILE *f = fopen(csv, "r");
    if (!f) return -1;
    char line[8192];
    int col = -1, row = 0, n = 0;
    while (fgets(line, sizeof line, f)) {
        if (col < 0) {
            int c = 0;
            for (char *tok = strtok(line, ",\n"); tok; tok = strtok(NULL, ",\n"), c++)
                if (!strcmp(tok, name)) col = c;
            if (col < 0) break;
            continue;
        }
        const int r = row++;
        int c = 0;
        const char *p = line;
        while (c < col && (p = strchr(p, ','))) p++, c++;
        if (r < from || r >= to || !p || *p == ',' || *p == '\n' || n == cap) continue;
        v[n++] = strtod(p, NULL);
    }
    fclose(f);
    return col < 0 ? -1 : n;
}

#endif

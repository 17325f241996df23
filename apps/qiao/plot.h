/* apps/qiao/plot.h - training curves as a PNG, drawn with cairo.
 *
 * Reads the CSV the trainer writes (models/train/trainer.h) for any
 * objective. Columns are found by name, so their order and extra columns do
 * not matter; only "step" is required:
 *   - "loss" (the total, bold) and "loss_*" (its parts) go on the left
 *     panel, on a log axis;
 *   - "val_*" (validation, joined across the steps without it) and
 *     "train_*" (a step metric) go on the right panel, on 0..1 when every
 *     value is there, else on a range that holds them. When every one is a
 *     "val_*_r1", the panel is "Validation recall@1" (`qiao train`'s
 *     contrastive log: t2i, i2t, a2i, a2t);
 *   - anything else (seconds, lr, grad_norm, scale_*) is not drawn.
 * A log that names nothing to draw but "loss" (or has no header yet) gets
 * the legend of `qiao train`'s columns. An empty cell, or one that is not a
 * number, is "no value"; a line whose field count differs from the header's
 * or whose step is not a finite number is skipped (a half-written last line
 * of a running job, stray text).
 *
 * The PNG is 1200x800 with the two panels against step. With fewer than two
 * steps it still writes a valid image, with a note saying so. */
#ifndef QIAO_CLI_PLOT_H
#define QIAO_CLI_PLOT_H

#include <stddef.h>
#include <stdint.h>

/* Plots csv_path into png_path (written through png_path.tmp and a rename,
 * so a viewer never sees half a file). Returns 0 on success; otherwise -1
 * with a message naming the file in err (err_len bytes, may be 0). */
int plot_training_csv(const char *csv_path, const char *png_path, char *err, size_t err_len);

/* A classifier's confusion matrix (n classes, counts row-major: row = the
 * true class, column = the predicted one) as a heat map into png_path, each
 * row coloured as the share of its true class (the diagonal blue, the
 * confusions red), the class names along both axes while the cells are
 * large enough to read them (up to about 180 classes). Same return and
 * errors as plot_training_csv. */
int plot_confusion(const char *png_path, const char *title, const char *const *labels, int n,
                   const int64_t *counts, char *err, size_t err_len);

#endif

/* apps/qiao/plot.h - training curves as a PNG, drawn with cairo.
 *
 * Reads the CSV that `qiao train` writes, whose header is
 *   step,seconds,lr,loss,loss_text_image,loss_audio_text,loss_audio_image,
 *   scale_text_image,scale_audio_text,scale_audio_image,grad_norm,
 *   samples_per_s,val_t2i_r1,val_i2t_r1,val_a2i_r1,val_a2t_r1
 * (columns are found by name, so their order and extra columns do not
 * matter; only "step" is required). An empty cell, or one that is not a
 * number, is "no value"; a line whose field count differs from the header's
 * or whose step is not a finite number is skipped (a half-written last line
 * of a running job, stray text).
 *
 * The PNG is 1200x800 with two panels against step: the total loss and the
 * three pair losses on a log axis, and validation recall@1 of t2i, i2t,
 * a2i, a2t on 0..1. With fewer than two steps it still writes a valid image,
 * with a note saying so. */
#ifndef QIAO_CLI_PLOT_H
#define QIAO_CLI_PLOT_H

#include <stddef.h>

/* Plots csv_path into png_path (written through png_path.tmp and a rename,
 * so a viewer never sees half a file). Returns 0 on success; otherwise -1
 * with a message naming the file in err (err_len bytes, may be 0). */
int plot_training_csv(const char *csv_path, const char *png_path, char *err, size_t err_len);

#endif

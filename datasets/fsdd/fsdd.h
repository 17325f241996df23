/* datasets/fsdd/fsdd.h - the Free Spoken Digit Dataset (recordings of English
 * digits, datasets/fsdd/SOURCE.md) as image-less manifests that the trainer
 * and `qiao eval digits` read (models/data/data.h).
 *
 * Splits, from the file names recordings/<digit>_<speaker>_<take>.wav:
 *   train/    takes 5.. of every speaker but the held-out one
 *   test/     takes 0-4 of the same speakers (FSDD's own test convention)
 *   speaker/  every take of the held-out speaker, who is in neither
 * One line per clip:
 *   {"id", "digit", "speaker", "take", "captions": {"zh": ["七"], "en": ["seven"]},
 *    "speech": {"captions": {"en": ["/abs/path/recordings/7_jackson_32.wav"]}}}
 * The paths are absolute and point into the source: the audio is not copied.
 *
 * The default held-out speaker is theo: his accent (USA, neutral) is shared
 * by a training speaker (jackson), so the held-out score measures a new
 * voice rather than a new voice and a new accent at once (george, Greek,
 * or nicolas, Belgian French, would confound the two; hold out george for
 * that harder test).
 *
 * Internal to the qiao command (not the public SDK): prefix fsdd_. No global
 * state; separate calls may run on separate threads (on separate output
 * directories). */
#ifndef QIAO_DATASETS_FSDD_H
#define QIAO_DATASETS_FSDD_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define FSDD_DEFAULT_HOLDOUT "theo"

enum { FSDD_TRAIN = 0, FSDD_TEST = 1, FSDD_SPEAKER = 2, FSDD_N_SPLITS = 3 };

/* Split names, as the folders under the output directory are named
 * ("train", "test", "speaker"); NULL for another value. */
const char *fsdd_split_name(int split);

/* Called after every manifest line written, `done` of `total` lines over all
 * splits, with the split being written. A nonzero return stops the run with
 * QIAO_ERR_CANCELLED: the splits already renamed into place are complete,
 * the one being written is removed. */
typedef int (*fsdd_progress_fn)(const char *split, int64_t done, int64_t total, void *user_data);

typedef struct fsdd_params {
    size_t struct_size;
    /* The speaker whose every take forms speaker/ (borrowed; default
     * FSDD_DEFAULT_HOLDOUT). NULL: no held-out speaker, so train/ and
     * test/ are the plain upstream split and a speaker/ manifest left by an
     * earlier run is removed (it would overlap them). */
    const char *holdout_speaker;
    fsdd_progress_fn progress; /* may be NULL */
    void *user_data;
} fsdd_params;

/* Defaults: holdout_speaker FSDD_DEFAULT_HOLDOUT, no progress. */
fsdd_params fsdd_default_params(void);

/* What a conversion found and wrote. */
typedef struct fsdd_stats {
    int64_t clips[FSDD_N_SPLITS]; /* lines written per split (speaker: 0 with none held out) */
    int64_t n_speakers;           /* distinct speakers in the recordings */
    char speakers[1024];          /* their names, sorted, ", "-separated (cut at 1023 bytes) */
    char recordings[4112];        /* the absolute path of the recordings folder read */
} fsdd_stats;

/* Converts the FSDD checkout `src_dir` (holding recordings/) into `out_dir`
 * (created if missing): out_dir/<split>/manifest.jsonl for each split, each
 * written through a temporary name and a rename, so an interrupted run never
 * leaves a manifest that looks complete. Manifests list the clips by
 * speaker, digit, then take, whatever order the directory gives. `params`
 * NULL means the defaults; `stats` may be NULL.
 *
 * Errors, each with the detail in qiao_last_error():
 *   QIAO_ERR_INVALID_ARGUMENT  NULL or empty directory, a path too long, an
 *                              unknown held-out speaker (the message lists
 *                              those there are), or a held-out speaker who is
 *                              the only one (nothing left to train on)
 *   QIAO_ERR_IO                src_dir or its recordings/ unreadable, out_dir
 *                              not writable
 *   QIAO_ERR_FORMAT            a .wav not named <digit>_<speaker>_<take>.wav
 *                              (named), or no .wav at all
 *   QIAO_ERR_CANCELLED         the progress callback asked to stop */
QIAO_MUST_CHECK qiao_status fsdd_convert(const char *src_dir, const char *out_dir, const fsdd_params *params,
                                         fsdd_stats *stats);

#endif /* QIAO_DATASETS_FSDD_H */

/* tests/intent_fixture.h - the tiny intent classifier the intent and bot
 * tests train at setup: the tiny random XLM-R of tests/data/hf with an
 * intent head, a few steps through qmi_train (its intents are the training
 * file's; its guesses are poor, which the tests must not depend on). */
#ifndef QIAO_TESTS_INTENT_FIXTURE_H
#define QIAO_TESTS_INTENT_FIXTURE_H

#include <stdio.h>
#include <string.h>

#include "models/intent/intent.h"

#define QT_XLMR_TINY QIAO_TEST_DATA "/hf/xlmr/model.safetensors"
#define QT_ECOMMERCE_TRAIN QIAO_SOURCE_DIR "/datasets/intent/ecommerce_zh/train.jsonl"

/* Trains `steps` steps at lr 3e-3 on `data` (reading `context` earlier
 * turns; 0: none) into `out`, its checkpoint beside it; `rejection` as
 * qmi_hparams.rejection (0: no out-of-scope threshold; < 0: the default).
 * 0 on success, else -1 with the reason on stderr (for a cmocka setup). */
static inline int qt_train_tiny_classifier_with(const char *data, const char *out, int steps, int context,
                                                double rejection) {
    char ckpt[1024];
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", out);
    qmi_train_params p;
    memset(&p, 0, sizeof p);
    p.init_path = QT_XLMR_TINY;
    p.data_path = data;
    p.out_path = out;
    p.ckpt_path = ckpt;
    p.hp = qmi_hparams_default();
    p.hp.tr.steps = steps;
    p.hp.tr.lr = 3e-3f;
    p.hp.context = context;
    if (rejection >= 0) p.hp.rejection = rejection;
    p.threads = 2;
    if (qmi_train(&p) != QIAO_OK) {
        fprintf(stderr, "setup: %s\n", qiao_last_error());
        return -1;
    }
    return 0;
}

static inline int qt_train_tiny_classifier(const char *data, const char *out, int steps, int context) {
    return qt_train_tiny_classifier_with(data, out, steps, context, -1);
}

#endif

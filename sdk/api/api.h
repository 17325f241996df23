/* sdk/api/api.h - what the files of the public API share: the model and
 * session handles of qiao.h. Not installed; prefix qapi_. */
#ifndef QIAO_API_INTERNAL_H
#define QIAO_API_INTERNAL_H

#include <pthread.h>

#include "backend/backend.h"
#include "models/embed.h"
#include "models/model.h"

struct qmod_vqa_work;

struct qiao_model {
    qmod_model *m;
    /* m's GEMM weights packed once for inference (models/embed.h,
     * qmod_pack_weights): a model here never changes after load. NULL on a
     * CPU without AVX-512F. Shared, read-only, by every session. */
    qb_packed_set *packed;
    /* The bf16 and int8 sets, each packed at the first session asking for
     * it (qmod_pack_weights_prec) under lock; then read-only and shared. */
    pthread_mutex_t lowp_lock;
    qb_packed_set *lowp[2]; /* [0] bf16, [1] int8; NULL until asked for */
    /* The intent head's labels, read once at load (intent_api.c); NULL and
     * 0 for a model without one. */
    char **intents;
    size_t n_intents;
    char **entity_types; /* the entity tagger's types (its B tags' names); NULL and 0 without one */
    size_t n_entity_types;
};

struct qiao_session {
    const qiao_model *model; /* the handle (its intent labels) */
    const qmod_model *m;
    qb_exec ex;
    qmod_work w[QMOD_N_MODALITIES]; /* zeroed until the modality's first call */
    struct qmod_vqa_work *vqa;      /* NULL until the first question */
    struct qmod_head_work *intent;  /* NULL until the first classification */
    struct qmod_head_work *entity;  /* NULL until the first classification by a model with a tagger */
};

/* A clip as an encoder reads it: `a` resampled to 16 kHz when it is at
 * another rate (*owned then holds the copy, freed by the caller with
 * qiao_audio_free; else NULL), cut to the samples the model's max_frames
 * reach. `a` must have samples and a positive rate. */
qiao_status qapi_clip_view(const qmod_model *m, const qiao_audio *a, qiao_audio *view, qiao_audio **owned);
/* A clip's checks: not NULL, samples, a positive rate (fn and i name it). */
qiao_status qapi_check_clip(const char *fn, const qiao_audio *a, size_t i);

/* The session's VQA workspace (vqa_api.c): freed with the session, counted
 * in qiao_session_memory. Both accept a session that never asked. */
void qapi_vqa_free(qiao_session *s);
size_t qapi_vqa_memory(const qiao_session *s);

/* The intent head's labels into model->intents (intent_api.c); nothing for
 * a model without the head. qapi_intent_model_free frees them. */
qiao_status qapi_intent_model_init(qiao_model *model);
void qapi_intent_model_free(qiao_model *model);
/* The session's intent workspace: freed with the session, counted in
 * qiao_session_memory. Both accept a session that never classified. */
void qapi_intent_free(qiao_session *s);
size_t qapi_intent_memory(const qiao_session *s);

#endif /* QIAO_API_INTERNAL_H */

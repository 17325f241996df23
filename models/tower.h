/* models/tower.h - the towers a model may hold, as a table.
 *
 * A tower is one modality's encoder (modalities/<m>/encoder.c) seen from a
 * model: its config section, its parameters under "<name>.", its batches
 * (models/embed.h) and its forward and backward. The model container and
 * the embedding path dispatch through this table and nowhere else, so a new
 * tower is its encoder plus one entry here (docs/design.md, "Where a new
 * thing goes").
 *
 * Entries are indexed by qmod_modality. Every function takes the whole model
 * or config and reads its own section; a tower the config does not hold is
 * never called (the callers check qmod_has_tower first).
 *
 * Not a public header: prefix qmod_. */
#ifndef QIAO_MODELS_TOWER_H
#define QIAO_MODELS_TOWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "models/embed.h"

typedef struct qmod_tower {
    qmod_modality mod;
    const char *name;  /* "text": the config section, the parameter prefix "text." */
    const char *items; /* what it embeds, for messages: "text", "pictures", "sound" */
    /* Parses the config section into cfg's part for this tower. */
    qiao_status (*parse)(const cJSON *section, int64_t embed_dim, qmod_config *cfg);
    /* Appends the tower's parameters, bound relative to qmod_params. */
    qiao_status (*describe)(qc_table *tab, const qmod_config *cfg);
    /* Appends its activations for B items of T positions, bound relative to
     * the workspace's union (qmod_work.a). */
    qiao_status (*describe_acts)(qc_table *tab, const qmod_config *cfg, int64_t B, int64_t T);
    /* The longest input it takes: text tokens, image patches, audio frames. */
    int64_t (*max_len)(const qmod_config *cfg);
    /* Every input has max_len positions (images: no padding). */
    bool fixed_len;
    /* Its trunk's dimensions (width C, layers...; B and T unset). */
    const nn_trunk_dims *(*trunk_dims)(const qmod_config *cfg);
    /* The trunk's tokens for T input positions (audio's stem strides). */
    int64_t (*trunk_tokens)(const qmod_config *cfg, int64_t T);
    /* n raw items (const char * texts, const qiao_image *, const qiao_audio *) -> a batch. */
    qiao_status (*prepare)(const qmod_model *m, const void *const *items, size_t n, qmod_batch *out);
    /* What the encoder's own check finds wrong with a batch (ids in range...). */
    qiao_status (*check)(const qmod_model *m, const qmod_batch *b);
    void (*forward)(const qb_exec *ex, const qmod_model *m, qmod_work *w, const qmod_batch *b);
    void (*backward)(const qb_exec *ex, const qmod_model *m, qmod_params *g, qmod_work *w, const qmod_batch *b,
                     const float *demb, const float *dtokens);
    /* The trunk's activations inside a workspace union (a or da). */
    size_t trunk_offset;
    /* The trunk's token mask after a forward: NULL when every token is real. */
    const uint8_t *(*token_mask)(const qmod_work *w, const qmod_batch *b);
} qmod_tower;

/* The entry of `mod`; NULL outside [0, QMOD_N_MODALITIES). */
const qmod_tower *qmod_tower_of(qmod_modality mod);

/* The modality whose tower is named `name` ("text"...); -1 when none is. */
int qmod_tower_find(const char *name);

#endif /* QIAO_MODELS_TOWER_H */

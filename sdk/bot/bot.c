/* The bot's public life: loading a file (its classifier first, then the
 * file checked against it: bot_file.c), freeing, the accessors, and the
 * application's actions. */
#define _POSIX_C_SOURCE 200809L

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bot/bot.h"
#include "core/core.h"

#define BOT_FILE_MAX ((size_t)16 << 20)


QIAO_API qiao_bot_params qiao_bot_default_params(void) {
    qiao_bot_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    return p;
}

static bool ends_with(const char *s, const char *suffix) {
    const size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static qiao_status read_tree(const char *path, cJSON **root) {
    uint8_t *data = NULL;
    size_t size = 0;
    qiao_status st = qc_read_file(path, BOT_FILE_MAX, &data, &size);
    if (st != QIAO_OK) return st;
    const size_t bad = qc_utf8_check((const char *)data, size);
    if (bad != size) {
        free(data);
        return qc_error(QIAO_ERR_FORMAT, "%s: invalid UTF-8 (at byte %zu)", path, bad);
    }
    if (ends_with(path, ".yml") || ends_with(path, ".yaml")) {
        st = qbot_parse_yaml(path, (const char *)data, size, true, root);
    } else {
        const char *end = NULL;
        *root = cJSON_ParseWithLengthOpts((const char *)data, size, &end, 0);
        if (!*root)
            st = qc_error(QIAO_ERR_FORMAT, "%s: not JSON (at byte %td; a .yml or .yaml name reads YAML)", path,
                          end ? end - (const char *)data : (ptrdiff_t)0);
    }
    free(data);
    if (st == QIAO_OK && !cJSON_IsObject(*root)) {
        cJSON_Delete(*root);
        *root = NULL;
        st = qc_error(QIAO_ERR_FORMAT, "%s: the bot is not an object", path);
    }
    return st;
}

/* The model the file names (or params'), and what it classifies and tags:
 * the names the file's intents and slots are checked against. */
static qiao_status load_model(qiao_bot *bot, const cJSON *root, const qiao_bot_params *p) {
    char *model = NULL;
    qiao_status st = QIAO_OK;
    if (p->model_path) {
        model = strdup(p->model_path);
    } else {
        char *rel = NULL;
        st = qbot_text(bot->path, "model", cJSON_GetObjectItemCaseSensitive(root, "model"), true, &rel);
        if (st == QIAO_OK) {
            const size_t n = strlen(bot->dir) + strlen(rel) + 2;
            model = malloc(n);
            if (model && rel[0] == '/') snprintf(model, n, "%s", rel);
            else if (model) snprintf(model, n, "%s/%s", bot->dir, rel);
        }
        free(rel);
    }
    if (st != QIAO_OK) return st;
    if (!model) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    st = qiao_model_load(model, &bot->model);
    if (st != QIAO_OK) st = qc_error(st, "%s: model: %s", bot->path, qiao_last_error());
    if (st == QIAO_OK && !qiao_model_can_classify(bot->model))
        st = qc_error(QIAO_ERR_FORMAT, "%s: model: %s is not an intent classifier (qiao intent train makes one)",
                      bot->path, model);
    free(model);
    if (st != QIAO_OK) return st;
    bot->n_labels = qiao_model_intent_count(bot->model);
    bot->n_types = qiao_model_entity_type_count(bot->model);
    bot->labels = calloc(bot->n_labels ? bot->n_labels : 1, sizeof *bot->labels);
    bot->types = calloc(bot->n_types ? bot->n_types : 1, sizeof *bot->types);
    if (!bot->labels || !bot->types) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; i < bot->n_labels; i++) bot->labels[i] = qiao_model_intent(bot->model, i);
    for (size_t i = 0; i < bot->n_types; i++) bot->types[i] = qiao_model_entity_type(bot->model, i);
    bot->oos_label = qiao_model_intent_oos(bot->model);
    return QIAO_OK;
}

static qiao_status load(qiao_bot *bot, const qiao_bot_params *p) {
    cJSON *root = NULL;
    qiao_status st = read_tree(bot->path, &root);
    if (st == QIAO_OK) st = load_model(bot, root, p);
    if (st == QIAO_OK) st = qbot_read(bot, root);
    cJSON_Delete(root);
    return st;
}

QIAO_API qiao_status qiao_bot_load(const char *path, const qiao_bot_params *params, qiao_bot **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_load: out is NULL");
    *out = NULL;
    if (!path) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_load: path is NULL");
    qiao_bot_params p = qiao_bot_default_params();
    qiao_status st = qc_params_read(&p, sizeof p, params, sizeof(size_t), "qiao_bot_default_params");
    if (st != QIAO_OK) return st;
    qiao_bot *bot = calloc(1, sizeof *bot);
    if (!bot) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    bot->path = strdup(path);
    bot->dir = strdup(path);
    if (!bot->path || !bot->dir) {
        qiao_bot_free(bot);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    }
    char *slash = strrchr(bot->dir, '/');
    if (slash) slash == bot->dir ? (void)(slash[1] = 0) : (void)(*slash = 0);
    else strcpy(bot->dir, ".");
    st = load(bot, &p);
    if (st != QIAO_OK) {
        qiao_bot_free(bot);
        return st;
    }
    *out = bot;
    return QIAO_OK;
}

QIAO_API void qiao_bot_free(qiao_bot *bot) {
    if (!bot) return;
    qbot_clear(bot);
    qiao_model_free(bot->model);
    free(bot->labels), free(bot->types);
    free(bot->path), free(bot->dir);
    free(bot);
}

QIAO_API const char *qiao_bot_name(const qiao_bot *bot) { return bot ? bot->name : ""; }
QIAO_API const char *qiao_bot_dir(const qiao_bot *bot) { return bot ? bot->dir : ""; }
QIAO_API const char *qiao_bot_app_config(const qiao_bot *bot) { return bot ? bot->app_json : "{}"; }
QIAO_API const qiao_model *qiao_bot_model(const qiao_bot *bot) { return bot ? bot->model : NULL; }

QIAO_API qiao_status qiao_bot_register_action(qiao_bot *bot, const char *name, qiao_bot_action_fn fn,
                                              void *user_data) {
    if (!bot || !name || !fn)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_register_action: a NULL bot, name or function");
    if (atomic_load(&bot->sessions) > 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "qiao_bot_register_action: '%s': register actions before the bot's first session", name);
    const int k = qbot_find_action(bot, name);
    if (k < 0) return qc_error(QIAO_ERR_NOT_FOUND, "%s: actions: the file declares no action '%s'", bot->path, name);
    bot->actions[k].fn = fn;
    bot->actions[k].user_data = user_data;
    return QIAO_OK;
}

/* libFuzzer target: any bytes as a bot file (sdk/bot/bot_file.c), read as
 * JSON when it opens with '{' and as YAML otherwise, checked against a
 * fixed set of the classifier's intents and entity types. Reading must
 * succeed or fail with a clear status, never crash or leak; a bot that
 * reads must have every reference in range; every slot's check then runs
 * on the input as a customer's message. The YAML is also read as scripted
 * conversations are (every scalar text). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bot/bot.h"
#include "core/core.h"

static const char *k_labels[] = {"greeting", "return_request", "refund_status", "human_agent", "affirm",
                                 "deny",     "stop",           "oos",           "thanks"};
static const char *k_types[] = {"order_id", "product", "date", "amount"};

static void check(const qiao_bot *bot, const char *text) {
    for (size_t i = 0; i < bot->n_forms; i++) {
        const qbot_form *f = &bot->forms[i];
        if (f->next >= (int)bot->n_forms || f->confirm >= (int)bot->n_responses || f->done >= (int)bot->n_responses ||
            f->action >= (int)bot->n_actions)
            abort();
        for (size_t k = 0; k < f->n_slots; k++)
            if (f->slots[k] < 0 || f->slots[k] >= (int)bot->n_slots || bot->slots[f->slots[k]].ask < 0) abort();
    }
    for (size_t i = 0; i < bot->n_intents; i++) {
        const qbot_intent *it = &bot->intents[i];
        if (it->response >= (int)bot->n_responses || it->action >= (int)bot->n_actions ||
            (it->kind == QBOT_FORM && (it->form < 0 || it->form >= (int)bot->n_forms)))
            abort();
    }
    for (size_t r = 0; r < bot->n_responses; r++)
        if (bot->responses[r].n_zh + bot->responses[r].n_en == 0) abort();
    for (size_t s = 0; s < bot->n_slots; s++) {
        for (int search = 0; search < 2; search++) {
            char *v = NULL;
            const char *why = NULL;
            const qiao_status st = qbot_check_value(&bot->slots[s], text, search, 1796601600.0, &v, &why);
            if ((st == QIAO_OK) != (v != NULL) || (st != QIAO_OK && st != QIAO_ERR_FORMAT)) abort();
            free(v);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1 << 16)) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    if (!qc_utf8_valid(text, size)) {
        free(text);
        return 0;
    }
    cJSON *root = NULL;
    if (size > 0 && text[0] == '{') {
        root = cJSON_ParseWithLength(text, size);
    } else if (qbot_parse_yaml("fuzz.yml", text, size, true, &root) != QIAO_OK) {
        root = NULL;
    }
    if (cJSON_IsObject(root)) {
        qiao_bot bot;
        memset(&bot, 0, sizeof bot);
        bot.path = "fuzz.yml";
        bot.labels = k_labels, bot.n_labels = sizeof k_labels / sizeof *k_labels;
        bot.types = k_types, bot.n_types = sizeof k_types / sizeof *k_types;
        bot.oos_label = "oos";
        if (qbot_read(&bot, root) == QIAO_OK) check(&bot, text);
        qbot_clear(&bot);
    }
    cJSON_Delete(root);
    cJSON *stories = NULL;
    if (qbot_parse_yaml("fuzz.yml", text, size, false, &stories) == QIAO_OK) cJSON_Delete(stories);
    (void)qbot_language(text);
    free(text);
    return 0;
}

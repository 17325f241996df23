/* sdk/bot/bot.h - the dialog manager's internals (qiao_bot.h is the API).
 *
 * bot.c loads a bot (its classifier, then the file, which bot_file.c
 * checks; immutable once the first session exists); check.c checks slot
 * values; dialog.c runs a turn on a conversation's state;
 * store.c keeps states in SQLite or the application's own database,
 * store_redis.c in Redis. The bot layer sits on the public API (qiao.h)
 * like an application would. Not a public header; internal names carry
 * the qbot_ prefix. */
#ifndef QIAO_BOT_INTERNAL_H
#define QIAO_BOT_INTERNAL_H

#include <regex.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "qiao_bot.h"

struct cJSON;

/* One reply of the file: variants per language (either may be empty, not both). */
typedef struct qbot_response {
    char *name;
    char **zh, **en; /* templates; {slot} is the slot's value */
    size_t n_zh, n_en;
} qbot_response;

typedef enum qbot_check {
    QBOT_CHECK_TEXT = 0, /* any non-blank text */
    QBOT_CHECK_REGEX,    /* the whole value matches `regex` (found in the text when asked) */
    QBOT_CHECK_NUMBER,   /* a number in [min, max] */
    QBOT_CHECK_DATE,     /* a date: normalized to YYYY-MM-DD */
    QBOT_CHECK_ENUM      /* one of `values` or their synonyms: normalized to the value */
} qbot_check;

typedef struct qbot_slot {
    char *name;
    char *label_zh, *label_en; /* how replies name it ("订单号", "order number") */
    char *entity;              /* the entity type that fills it, or NULL */
    qbot_check check;
    regex_t re;                /* QBOT_CHECK_REGEX */
    bool has_re;
    double min, max;           /* QBOT_CHECK_NUMBER */
    char **values;             /* QBOT_CHECK_ENUM: value i */
    char ***synonyms;          /* and its synonyms, NULL-terminated */
    size_t n_values;
    bool free_text;            /* when asked, the whole message is the value */
    bool keep;                 /* kept when its form ends (an order id serves the next request) */
    int ask, invalid;          /* responses; invalid may be -1 (the file's "invalid_value") */
} qbot_slot;

typedef struct qbot_form {
    char *name;
    int *slots; /* required, in the order asked */
    size_t n_slots;
    int confirm; /* response asking to confirm, or -1 */
    int action;  /* action run when complete, or -1 */
    int done;    /* response after it, or -1 */
    int next;    /* form that follows, or -1 */
} qbot_form;

typedef enum qbot_kind {
    QBOT_RESPOND = 0, /* a reply (and an action when set) */
    QBOT_FORM,        /* start a form */
    QBOT_HANDOFF,     /* to a human agent */
    QBOT_STOP,        /* abandon the form in progress */
    QBOT_AFFIRM,      /* yes: answers a confirmation */
    QBOT_DENY,        /* no */
    QBOT_OOS          /* out of scope: the polite fallback */
} qbot_kind;

/* What the bot does with one of the classifier's intents. */
typedef struct qbot_intent {
    const char *name; /* the model's label */
    bool handled;     /* false: the file does not name it (the "unhandled" reply) */
    qbot_kind kind;
    bool global;      /* may interrupt a form, which resumes after it */
    int response;     /* -1 none */
    int form;         /* QBOT_FORM */
    int action;       /* -1 none */
} qbot_intent;

typedef struct qbot_action {
    char *name;
    qiao_bot_action_fn fn; /* NULL until registered */
    void *user_data;
} qbot_action;

/* The system's own replies, by role. */
enum {
    QBOT_R_REPHRASE = 0, /* low confidence or ambiguous: say it again */
    QBOT_R_HANDOFF,      /* a human agent takes over */
    QBOT_R_RESUME,       /* the bot is back */
    QBOT_R_ACTION_FAILED,
    QBOT_R_STOPPED,      /* the form in progress was abandoned */
    QBOT_R_NOTHING,      /* stop/yes/no with nothing in progress */
    QBOT_R_INVALID,      /* a slot value did not pass its check (the slot's own, else this) */
    QBOT_R_OOS,          /* out of scope */
    QBOT_R_UNHANDLED,    /* an intent the file does not name */
    QBOT_R_COUNT
};

struct qiao_bot {
    char *path, *dir, *name, *app_json;
    qiao_model *model;
    /* what the classifier knows (the model's strings), checked against the file */
    const char **labels, **types;
    size_t n_labels, n_types;
    const char *oos_label; /* "" when it has no out-of-scope class */
    /* the policy */
    float min_confidence, min_margin, confirm_boost;
    int max_failures, context_turns;
    uint64_t seed;
    char *default_language; /* "zh" or "en" */
    qbot_response *responses;
    size_t n_responses;
    int sys[QBOT_R_COUNT]; /* response per system role, -1 where the file has none */
    qbot_slot *slots;
    size_t n_slots;
    qbot_form *forms;
    size_t n_forms;
    qbot_intent *intents; /* one per model intent, in the model's order */
    size_t n_intents;
    int affirm, deny;     /* intent indices or -1 */
    qbot_action *actions;
    size_t n_actions;
    atomic_int sessions;  /* actions register only while 0 */
};

/* bot_file.c: the file's tree checked and read into `bot`, whose path,
 * labels, types and oos_label are set (the fuzzer sets them without a
 * model); qbot_clear frees what qbot_read made, also after a failure. */
qiao_status qbot_read(qiao_bot *bot, const struct cJSON *root);
void qbot_clear(qiao_bot *bot);
qiao_status qbot_text(const char *path, const char *place, const struct cJSON *it, bool required, char **out);
int qbot_find_action(const qiao_bot *bot, const char *name);
/* YAML text as a cJSON tree; `numbers`: plain scalars that read as numbers
 * become numbers (else every scalar but true/false/null stays text, as a
 * customer's "2025112800007766" must). */
qiao_status qbot_parse_yaml(const char *path, const char *text, size_t len, bool numbers, struct cJSON **out);
int qbot_find_slot(const qiao_bot *bot, const char *name);
int qbot_find_response(const qiao_bot *bot, const char *name);

/* store.c: the store's calls, for dialog.c (and the tests). */
qiao_status qbot_store_load(qiao_bot_store *s, const char *conv, char **state, int64_t *version);
qiao_status qbot_store_save(qiao_bot_store *s, const char *conv, const char *state, int64_t version,
                            const char *events);
qiao_status qbot_store_remove(qiao_bot_store *s, const char *conv);
/* The TTL qiao_bot_store_expire sweeps by (a built-in store's params). */
void qbot_store_set_ttl(qiao_bot_store *s, double ttl);
/* Appends a copy of the `len` bytes at `id` to a growing id list (*cap
 * entries allocated); the list is freed with qiao_bot_ids_free(). */
qiao_status qbot_ids_push(char ***ids, size_t *n, size_t *cap, const char *id, size_t len);
/* Seconds since 1970, the clock a store dates conversations by. */
double qbot_unix_now(void);

/* check.c: a slot value, checked and normalized. *out is malloc'd on
 * QIAO_OK; QIAO_ERR_FORMAT with *why (static English) when it fails.
 * `asked`: the whole message may be searched for a value. now: the unix
 * time relative dates count from. */
qiao_status qbot_check_value(const qbot_slot *slot, const char *text, bool search, double now, char **out,
                             const char **why);
/* The message's language: "zh" when it has a CJK character, "en" when it
 * has a Latin letter, else NULL. */
const char *qbot_language(const char *text);

#endif

/* qiao_bot.h - a customer-service dialog manager on qiao's intent classifier.
 *
 * A bot is one file (JSON or YAML) that a business edits without
 * recompiling: its intent classifier, the replies per intent (Chinese and
 * English variants, slot values in {braces}), forms that collect required
 * slots with validators and a confirmation, the global intents that
 * interrupt a form, the fallback tiers and human handoff (docs/chatbot.md
 * describes the file). Conversations persist in a tracker store (SQLite or
 * Redis here; any database through qiao_bot_store_ops), so they survive a
 * restart of the process.
 *
 *     qiao_bot *bot = NULL;  qiao_bot_store *store = NULL;  qiao_bot_session *s = NULL;
 *     if (qiao_bot_load("shop.yml", NULL, &bot) != QIAO_OK) ... qiao_last_error() ...
 *     qiao_bot_register_action(bot, "lookup_order", lookup_order, db);   -- the application's own
 *     qiao_bot_store_open_sqlite("conversations.db", NULL, &store);
 *     qiao_bot_session_new(bot, store, NULL, &s);
 *     qiao_bot_reply r;
 *     if (qiao_bot_send(s, "user-42", "我想退货", &r) == QIAO_OK)
 *         for (size_t i = 0; i < r.n_messages; i++) puts(r.messages[i]);
 *     qiao_bot_reply_free(&r);
 *     qiao_bot_session_free(s);  qiao_bot_store_free(store);  qiao_bot_free(bot);
 *
 * Threads: a bot is shared by every thread once its actions are registered
 * (register them all before the first session); a store and a session are
 * one thread's at a time (open a store per thread: SQLite connections are
 * cheap, and WAL mode lets them read while one writes). Two turns of the
 * same conversation at once, from two threads or processes, are detected
 * when the second is saved: it fails with QIAO_ERR_CONFLICT and changes
 * nothing in the store; send it again. */
#ifndef QIAO_BOT_H
#define QIAO_BOT_H

#include "qiao.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qiao_bot qiao_bot;
typedef struct qiao_bot_store qiao_bot_store;
typedef struct qiao_bot_session qiao_bot_session;

/* ---- The bot ------------------------------------------------------------ */

typedef struct qiao_bot_params {
    size_t struct_size; /* set by qiao_bot_default_params() */
    /* The intent classifier to use instead of the file's "model" (a path;
     * copied). NULL (default): the file's, relative to the bot file. */
    const char *model_path;
} qiao_bot_params;

QIAO_API qiao_bot_params qiao_bot_default_params(void);

/* Reads and checks a bot file (.json, or .yml/.yaml) and loads its intent
 * classifier. Everything the file names is checked here, not at the turn
 * that needs it, and a mistake is QIAO_ERR_FORMAT naming its place
 * ("shop.yml: forms.return.slots[2]: unknown slot 'reson'"): an intent the
 * classifier does not know, a reply naming a slot the bot does not
 * declare, a form that leads back to itself, a validator that does not
 * compile... params may be NULL. *out is freed with qiao_bot_free(). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_bot_load(const char *path, const qiao_bot_params *params, qiao_bot **out);
/* Accepts NULL. Free the bot's sessions first. */
QIAO_API void qiao_bot_free(qiao_bot *bot);
/* The file's "name"; owned by the bot. */
QIAO_API const char *qiao_bot_name(const qiao_bot *bot);
/* The folder of the bot file (actions find their data beside it); owned by the bot. */
QIAO_API const char *qiao_bot_dir(const qiao_bot *bot);
/* The file's "app" object as JSON text, for the application's own settings
 * (the sample shop keeps its orders database's path there); "{}" when it
 * has none. Owned by the bot. */
QIAO_API const char *qiao_bot_app_config(const qiao_bot *bot);
/* The classifier the bot runs (owned by the bot). */
QIAO_API const qiao_model *qiao_bot_model(const qiao_bot *bot);

/* ---- Actions ------------------------------------------------------------ */
/* An action is a C function the application registers under a name the bot
 * file uses ("action": "lookup_order"). It runs during a turn with the
 * conversation's slots: it may read and set slots and choose which of the
 * file's replies the bot gives ("order_not_found"). A failing action
 * (anything but QIAO_OK) makes the bot give the file's "action_failed"
 * reply; the conversation goes on. */
typedef struct qiao_bot_action_ctx qiao_bot_action_ctx;
typedef qiao_status (*qiao_bot_action_fn)(qiao_bot_action_ctx *ctx, void *user_data);

/* Registers fn under `name` (copied), replacing an earlier one. Only before
 * the bot's first session; QIAO_ERR_NOT_FOUND when the file declares no
 * such action. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_bot_register_action(qiao_bot *bot, const char *name, qiao_bot_action_fn fn,
                                                              void *user_data);
/* A slot's value, or NULL when it is not set; valid until the slot changes. */
QIAO_API const char *qiao_bot_action_slot(const qiao_bot_action_ctx *ctx, const char *slot);
/* Sets (value copied) or, with NULL, clears a slot the file declares. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_bot_action_set_slot(qiao_bot_action_ctx *ctx, const char *slot,
                                                              const char *value);
/* Chooses the reply the bot gives after the action: a name of the file's
 * "responses". Without a call, the flow's own reply follows. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_bot_action_respond(qiao_bot_action_ctx *ctx, const char *response);
/* The conversation's id and language ("zh" or "en"). */
QIAO_API const char *qiao_bot_action_conversation(const qiao_bot_action_ctx *ctx);
QIAO_API const char *qiao_bot_action_language(const qiao_bot_action_ctx *ctx);

/* ---- Tracker stores ------------------------------------------------------ */
/* A store keeps each conversation's state (slots, the form in progress,
 * the last turns, the paused flag and the messages queued for a human) as
 * one JSON text with a version, and its events (one JSON array per turn).
 * The functions are called from the thread that uses the store. */
typedef struct qiao_bot_store_ops {
    size_t struct_size; /* sizeof(qiao_bot_store_ops) */
    /* The conversation's state (malloc'd, freed by the caller with free())
     * and version; *state NULL and *version 0 when the store has none, or
     * when it expired. */
    qiao_status (*load)(void *user_data, const char *conversation, char **state, int64_t *version);
    /* Writes state as version `version` + 1 and appends `events`, only if
     * the stored version is still `version` (0: the conversation must not
     * exist yet); else QIAO_ERR_CONFLICT and nothing changes. */
    qiao_status (*save)(void *user_data, const char *conversation, const char *state, int64_t version,
                        const char *events);
    /* Forgets a conversation (not there: QIAO_OK). */
    qiao_status (*remove)(void *user_data, const char *conversation);
    /* Removes the conversations last saved before `unix_time`; *removed may be NULL. */
    qiao_status (*expire)(void *user_data, double unix_time, size_t *removed);
    /* Frees user_data (may be NULL). */
    void (*close)(void *user_data);
    /* Optional (NULL: qiao_bot_store_paused answers QIAO_ERR_UNSUPPORTED):
     * the ids of the conversations whose saved state says "paused": true (a
     * human agent has them), the most recently saved first, at most `max`
     * of them. *ids is a malloc'd array of malloc'd strings (NULL when
     * *n is 0), freed by the caller with qiao_bot_ids_free(). */
    qiao_status (*paused)(void *user_data, size_t max, char ***ids, size_t *n);
} qiao_bot_store_ops;

/* A store of the application's own (ops copied; user_data owned by the
 * store from here, even on failure, when ops->close is set). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_bot_store_new(const qiao_bot_store_ops *ops, void *user_data,
                                                        qiao_bot_store **out);

typedef struct qiao_bot_store_params {
    size_t struct_size; /* set by qiao_bot_store_default_params() */
    /* A conversation not saved for this many seconds is gone: loading it
     * starts afresh, and qiao_bot_store_expire removes it. Default 7 days;
     * 0: never. */
    double ttl_seconds;
    /* How long a write waits for another connection's (SQLite's busy
     * timeout), in milliseconds; default 5000. */
    int busy_timeout_ms;
    /* 0 (default): a turn is safe when the process dies (SQLite's
     * synchronous=NORMAL in WAL mode: the last turns may be lost only when
     * the machine loses power); 1: each turn is synced to the disk before
     * the reply (synchronous=FULL), which costs a few milliseconds a turn
     * (docs/benchmarks.md, "Issue 19"). */
    int durable;
} qiao_bot_store_params;

QIAO_API qiao_bot_store_params qiao_bot_store_default_params(void);
/* Opens (creating it and its tables when missing) a SQLite tracker store in
 * WAL mode. One connection: one thread's at a time; open one per thread on
 * the same file. params may be NULL. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_bot_store_open_sqlite(const char *path, const qiao_bot_store_params *params,
                                                                qiao_bot_store **out);
/* Removes the conversations idle for longer than the store's TTL (all those
 * saved before now - ttl); *removed may be NULL. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_bot_store_expire(qiao_bot_store *store, size_t *removed);
/* The conversations a human agent has (paused), the most recently saved
 * first, at most `max` (an agent console's list). *ids is freed with
 * qiao_bot_ids_free(). QIAO_ERR_UNSUPPORTED for a store of the
 * application's own without a `paused` op. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_bot_store_paused(qiao_bot_store *store, size_t max, char ***ids,
                                                           size_t *n);
/* Frees an id list (each id, then the array). Accepts NULL. */
QIAO_API void qiao_bot_ids_free(char **ids, size_t n);
/* Opens a Redis tracker store at `address` ("host:port", or a Unix socket's
 * path starting with '/'), so that several processes (behind a load
 * balancer) share conversations. Keys start with `prefix` (NULL: "qiao:"):
 * one bot's conversations per prefix. A conversation's keys expire after
 * the store's TTL (Redis removes them itself); the version check and the
 * write are one atomic script. params->busy_timeout_ms is the connect and
 * command timeout; params->durable is the server's own setting (appendfsync)
 * and ignored here. One connection: one thread's at a time. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_bot_store_open_redis(const char *address, const char *prefix,
                                                               const qiao_bot_store_params *params,
                                                               qiao_bot_store **out);
/* Accepts NULL. */
QIAO_API void qiao_bot_store_free(qiao_bot_store *store);

/* ---- Conversations -------------------------------------------------------- */

typedef struct qiao_bot_slot {
    const char *name;  /* owned by the bot */
    char *value;       /* owned by the reply */
} qiao_bot_slot;

/* What the bot did with one message. */
typedef struct qiao_bot_reply {
    size_t n_messages;
    char **messages;      /* the bot's messages, in order; none while the conversation is paused */
    const char *intent;   /* the intent the turn was taken as (after context), "" when not classified; owned by
                           * the bot */
    float confidence;     /* the classifier's calibrated confidence in it */
    float margin;         /* its top-2 margin */
    char *action;         /* what the bot did, e.g. "form:return/ask:order_id", "action:lookup_order",
                           * "respond:greeting", "fallback:rephrase", "handoff", "queued" */
    const char *language; /* "zh" or "en"; owned by the bot */
    int paused;           /* 1: a human agent has the conversation; the bot stays silent */
    size_t n_slots;
    qiao_bot_slot *slots; /* every slot set after the turn */
    char *events;         /* the turn's events, a JSON array (what the store appended) */
    size_t said;          /* the lines said in the conversation so far, this turn's included: the customer's,
                           * the bot's and agents' (the "said" of qiao_bot_conversation's state, the number "n"
                           * of the transcript's last line), as the turn saved them, so a client needs no
                           * second read to number the lines. Appended last: the members above keep their
                           * offsets. */
} qiao_bot_reply;

typedef struct qiao_bot_session_params {
    size_t struct_size; /* set by qiao_bot_session_default_params() */
    int n_threads;      /* the classifier's threads (qiao_session_params.n_threads); 0: all cores */
    /* The clock, seconds since 1970 (NULL: the system's); tests and replays set it. */
    double (*now)(void *user_data);
    void *now_user_data;
} qiao_bot_session_params;

QIAO_API qiao_bot_session_params qiao_bot_session_default_params(void);
/* A thread's conversation handler on `bot` and `store` (both borrowed: keep
 * them until the session is freed). params may be NULL. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_bot_session_new(qiao_bot *bot, qiao_bot_store *store,
                                                          const qiao_bot_session_params *params,
                                                          qiao_bot_session **out);
/* Accepts NULL. */
QIAO_API void qiao_bot_session_free(qiao_bot_session *session);

/* Handles one message (UTF-8; invalid UTF-8 or an empty conversation id is
 * QIAO_ERR_INVALID_ARGUMENT and changes nothing) of conversation
 * `conversation` (any id, up to 256 bytes; a new one starts a conversation).
 * *out is zeroed first and filled on success; free it with
 * qiao_bot_reply_free (also after a failure). A failure changes nothing in
 * the store. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_bot_send(qiao_bot_session *session, const char *conversation,
                                                   const char *text, qiao_bot_reply *out);
/* Hands the conversation to a human (as the "human agent" intent does): the
 * bot stays silent and queues the customer's messages until
 * qiao_bot_resume. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_bot_pause(qiao_bot_session *session, const char *conversation);
/* Gives the conversation back to the bot, which picks up where it was (it
 * asks again for the slot its form was waiting for) and says so in *out
 * (freed with qiao_bot_reply_free). The queue is emptied. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_bot_resume(qiao_bot_session *session, const char *conversation,
                                                     qiao_bot_reply *out);
/* The conversation's state as JSON text (slots, form, paused flag, the
 * queued messages, the last turns, and "transcript": the last 100 things
 * said, each {"n": its number from 1, "from": "user" | "bot" | "agent",
 * "text", "time", and "agent" for an agent's}): what a human agent's
 * console shows and what a chat client polls for an agent's replies.
 * *json is malloc'd (free()); "null" for a conversation the store does not have. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_bot_conversation(qiao_bot_session *session, const char *conversation,
                                                           char **json);
/* A human agent's message to the customer (UTF-8, up to 64 KiB), from
 * `agent` (a name shown to the customer; NULL: "agent"): kept in the
 * conversation's transcript (qiao_bot_conversation), where the customer's
 * client finds it, and in its events. The conversation must exist
 * (QIAO_ERR_NOT_FOUND); it need not be paused. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_bot_agent_say(qiao_bot_session *session, const char *conversation,
                                                        const char *agent, const char *text);
/* Forgets a conversation. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_bot_forget(qiao_bot_session *session, const char *conversation);
/* Frees what a reply owns and zeroes it. Accepts NULL and a zeroed reply. */
QIAO_API void qiao_bot_reply_free(qiao_bot_reply *reply);

#ifdef __cplusplus
}
#endif

#endif

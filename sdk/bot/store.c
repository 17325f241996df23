/* Tracker stores: the interface (qiao_bot_store_ops) and its SQLite
 * implementation. A conversation is one row (its state as JSON, a version
 * for the optimistic check that catches two turns of one conversation at
 * once, the time it was last saved) and its events one row per turn. */
#define _POSIX_C_SOURCE 200809L

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bot/bot.h"
#include "core/core.h"

struct qiao_bot_store {
    qiao_bot_store_ops ops;
    void *user;
    double ttl;
};

QIAO_API qiao_status qiao_bot_store_new(const qiao_bot_store_ops *ops, void *user_data, qiao_bot_store **out) {
    if (!out || !ops) {
        if (ops && ops->close) ops->close(user_data);
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_store_new: a NULL ops or out");
    }
    *out = NULL;
    qiao_bot_store_ops o;
    memset(&o, 0, sizeof o);
    qiao_status st = ops->struct_size < sizeof(size_t) || ops->struct_size > 65536
                         ? qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_store_new: ops->struct_size is %zu",
                                    ops->struct_size)
                         : QIAO_OK;
    if (st == QIAO_OK) memcpy(&o, ops, ops->struct_size < sizeof o ? ops->struct_size : sizeof o);
    if (st == QIAO_OK && (!o.load || !o.save || !o.remove || !o.expire))
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_store_new: load, save, remove and expire are required");
    qiao_bot_store *s = st == QIAO_OK ? calloc(1, sizeof *s) : NULL;
    if (st == QIAO_OK && !s) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    if (st != QIAO_OK) {
        if (ops->close) ops->close(user_data);
        return st;
    }
    s->ops = o, s->ops.struct_size = sizeof o;
    s->user = user_data;
    s->ttl = 7 * 86400.0;
    *out = s;
    return QIAO_OK;
}

QIAO_API void qiao_bot_store_free(qiao_bot_store *store) {
    if (!store) return;
    if (store->ops.close) store->ops.close(store->user);
    free(store);
}


qiao_status qbot_store_load(qiao_bot_store *s, const char *conv, char **state, int64_t *version) {
    *state = NULL, *version = 0;
    return s->ops.load(s->user, conv, state, version);
}

qiao_status qbot_store_save(qiao_bot_store *s, const char *conv, const char *state, int64_t version,
                            const char *events) {
    return s->ops.save(s->user, conv, state, version, events);
}

qiao_status qbot_store_remove(qiao_bot_store *s, const char *conv) { return s->ops.remove(s->user, conv); }

void qbot_store_set_ttl(qiao_bot_store *s, double ttl) { s->ttl = ttl; }

double qbot_unix_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

QIAO_API qiao_status qiao_bot_store_paused(qiao_bot_store *store, size_t max, char ***ids, size_t *n) {
    if (!ids || !n) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_store_paused: ids or n is NULL");
    *ids = NULL, *n = 0;
    if (!store) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_store_paused: store is NULL");
    if (!store->ops.paused)
        return qc_error(QIAO_ERR_UNSUPPORTED, "qiao_bot_store_paused: this store cannot list paused conversations "
                                              "(its qiao_bot_store_ops has no paused)");
    if (max == 0) return QIAO_OK;
    return store->ops.paused(store->user, max, ids, n);
}

qiao_status qbot_ids_push(char ***ids, size_t *n, size_t *cap, const char *id, size_t len) {
    if (*n == *cap) {
        const size_t grown_cap = *cap ? 2 * *cap : 16;
        char **grown = realloc(*ids, grown_cap * sizeof *grown);
        if (!grown) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
        *ids = grown, *cap = grown_cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(copy, id, len);
    copy[len] = 0;
    (*ids)[(*n)++] = copy;
    return QIAO_OK;
}

QIAO_API void qiao_bot_ids_free(char **ids, size_t n) {
    if (!ids) return;
    for (size_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
}

QIAO_API qiao_status qiao_bot_store_expire(qiao_bot_store *store, size_t *removed) {
    if (removed) *removed = 0;
    if (!store) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_store_expire: store is NULL");
    if (store->ttl <= 0) return QIAO_OK;
    return store->ops.expire(store->user, qbot_unix_now() - store->ttl, removed);
}

/* ---- SQLite ------------------------------------------------------------------ */

QIAO_API qiao_bot_store_params qiao_bot_store_default_params(void) {
    qiao_bot_store_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.ttl_seconds = 7 * 86400.0;
    p.busy_timeout_ms = 5000;
    return p;
}

typedef struct sql_store {
    sqlite3 *db;
    char *path;
    double ttl;
    sqlite3_stmt *get, *insert, *update, *event, *del_conv, *del_events, *old, *paused;
} sql_store;

static qiao_status sql_fail(const sql_store *q, const char *what) {
    const int code = sqlite3_extended_errcode(q->db);
    const qiao_status st = (code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED ? QIAO_ERR_CONFLICT
                           : (code & 0xff) == SQLITE_NOMEM                                ? QIAO_ERR_OUT_OF_MEMORY
                           : (code & 0xff) == SQLITE_CORRUPT || (code & 0xff) == SQLITE_NOTADB ? QIAO_ERR_FORMAT
                                                                                               : QIAO_ERR_IO;
    return qc_error(st, "%s: %s: %s", q->path, what, sqlite3_errmsg(q->db));
}


static qiao_status sql_load(void *user, const char *conv, char **state, int64_t *version) {
    sql_store *q = user;
    sqlite3_reset(q->get);
    sqlite3_bind_text(q->get, 1, conv, -1, SQLITE_STATIC);
    const int rc = sqlite3_step(q->get);
    if (rc == SQLITE_DONE) return QIAO_OK;
    if (rc != SQLITE_ROW) {
        const qiao_status st = sql_fail(q, "reading a conversation");
        sqlite3_reset(q->get);
        return st;
    }
    const double updated = sqlite3_column_double(q->get, 2);
    *version = sqlite3_column_int64(q->get, 1);
    if (q->ttl > 0 && updated < qbot_unix_now() - q->ttl) {
        /* Expired: the caller starts afresh over this version, so the save
         * replaces the old state (and its events go with the next sweep). */
        sqlite3_reset(q->get);
        return QIAO_OK;
    }
    const unsigned char *text = sqlite3_column_text(q->get, 0);
    *state = strdup(text ? (const char *)text : "{}");
    sqlite3_reset(q->get);
    return *state ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
}

static qiao_status sql_exec(sql_store *q, const char *sql, const char *what) {
    return sqlite3_exec(q->db, sql, NULL, NULL, NULL) == SQLITE_OK ? QIAO_OK : sql_fail(q, what);
}

static qiao_status sql_save(void *user, const char *conv, const char *state, int64_t version, const char *events) {
    sql_store *q = user;
    qiao_status st = sql_exec(q, "BEGIN IMMEDIATE", "starting a write");
    if (st != QIAO_OK) return st;
    const double now = qbot_unix_now();
    sqlite3_stmt *w = version == 0 ? q->insert : q->update;
    sqlite3_reset(w);
    sqlite3_bind_text(w, 1, conv, -1, SQLITE_STATIC);
    sqlite3_bind_text(w, 2, state, -1, SQLITE_STATIC);
    sqlite3_bind_double(w, 3, now);
    sqlite3_bind_int64(w, 4, version);
    int rc = sqlite3_step(w);
    const int changed = sqlite3_changes(q->db);
    sqlite3_reset(w);
    if (rc == SQLITE_CONSTRAINT || (rc == SQLITE_DONE && changed == 0)) {
        sql_exec(q, "ROLLBACK", "rolling back");
        return qc_error(QIAO_ERR_CONFLICT, "%s: conversation '%s' was changed by another turn since it was read",
                        q->path, conv);
    }
    if (rc != SQLITE_DONE) {
        st = sql_fail(q, "writing a conversation");
        sql_exec(q, "ROLLBACK", "rolling back");
        return st;
    }
    if (events) {
        sqlite3_reset(q->event);
        sqlite3_bind_text(q->event, 1, conv, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q->event, 2, version + 1);
        sqlite3_bind_double(q->event, 3, now);
        sqlite3_bind_text(q->event, 4, events, -1, SQLITE_STATIC);
        rc = sqlite3_step(q->event);
        sqlite3_reset(q->event);
        if (rc != SQLITE_DONE) {
            st = sql_fail(q, "writing events");
            sql_exec(q, "ROLLBACK", "rolling back");
            return st;
        }
    }
    st = sql_exec(q, "COMMIT", "committing");
    if (st != QIAO_OK) sql_exec(q, "ROLLBACK", "rolling back");
    return st;
}

static qiao_status sql_delete(sql_store *q, const char *conv) {
    sqlite3_stmt *st2[] = {q->del_events, q->del_conv};
    for (size_t i = 0; i < 2; i++) {
        sqlite3_reset(st2[i]);
        sqlite3_bind_text(st2[i], 1, conv, -1, SQLITE_TRANSIENT);
        const int rc = sqlite3_step(st2[i]);
        sqlite3_reset(st2[i]);
        if (rc != SQLITE_DONE) return sql_fail(q, "removing a conversation");
    }
    return QIAO_OK;
}

static qiao_status sql_remove(void *user, const char *conv) {
    sql_store *q = user;
    qiao_status st = sql_exec(q, "BEGIN IMMEDIATE", "starting a write");
    if (st != QIAO_OK) return st;
    st = sql_delete(q, conv);
    st = st == QIAO_OK ? sql_exec(q, "COMMIT", "committing") : st;
    if (st != QIAO_OK) sql_exec(q, "ROLLBACK", "rolling back");
    return st;
}

/* The first column of each row the (bound) statement gives, as malloc'd strings. */
static qiao_status sql_ids(sql_store *q, sqlite3_stmt *stmt, char ***out, size_t *n_out) {
    char **ids = NULL;
    size_t n = 0, cap = 0;
    qiao_status st = QIAO_OK;
    int rc = SQLITE_DONE;
    while (st == QIAO_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const unsigned char *id = sqlite3_column_text(stmt, 0);
        st = qbot_ids_push(&ids, &n, &cap, id ? (const char *)id : "", (size_t)sqlite3_column_bytes(stmt, 0));
    }
    if (st == QIAO_OK && rc != SQLITE_DONE) st = sql_fail(q, "listing conversations");
    sqlite3_reset(stmt);
    if (st != QIAO_OK) {
        qiao_bot_ids_free(ids, n);
        ids = NULL, n = 0;
    }
    *out = ids, *n_out = n;
    return st;
}

static qiao_status sql_expire(void *user, double before, size_t *removed) {
    sql_store *q = user;
    if (removed) *removed = 0;
    qiao_status st = sql_exec(q, "BEGIN IMMEDIATE", "starting a write");
    if (st != QIAO_OK) return st;
    /* Collect first: deleting while stepping the same table is not allowed to see the change. */
    char **ids = NULL;
    size_t n = 0;
    sqlite3_reset(q->old);
    sqlite3_bind_double(q->old, 1, before);
    st = sql_ids(q, q->old, &ids, &n);
    for (size_t i = 0; i < n && st == QIAO_OK; i++) st = sql_delete(q, ids[i]);
    qiao_bot_ids_free(ids, n);
    st = st == QIAO_OK ? sql_exec(q, "COMMIT", "committing") : st;
    if (st != QIAO_OK) sql_exec(q, "ROLLBACK", "rolling back");
    else if (removed) *removed = n;
    return st;
}

static qiao_status sql_paused(void *user, size_t max, char ***ids, size_t *n) {
    sql_store *q = user;
    sqlite3_reset(q->paused);
    sqlite3_bind_int64(q->paused, 1, max > INT64_MAX ? INT64_MAX : (int64_t)max);
    sqlite3_bind_double(q->paused, 2, q->ttl > 0 ? qbot_unix_now() - q->ttl : -1.0);
    return sql_ids(q, q->paused, ids, n);
}

static void sql_close(void *user) {
    sql_store *q = user;
    if (!q) return;
    sqlite3_stmt *all[] = {q->get, q->insert, q->update, q->event, q->del_conv, q->del_events, q->old, q->paused};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) sqlite3_finalize(all[i]);
    sqlite3_close(q->db);
    free(q->path);
    free(q);
}

static const char *const SCHEMA =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE IF NOT EXISTS qiao_conversations("
    "  id TEXT PRIMARY KEY, state TEXT NOT NULL, version INTEGER NOT NULL, updated REAL NOT NULL);"
    "CREATE TABLE IF NOT EXISTS qiao_events("
    "  conversation TEXT NOT NULL, version INTEGER NOT NULL, time REAL NOT NULL, events TEXT NOT NULL,"
    "  PRIMARY KEY(conversation, version));"
    "CREATE INDEX IF NOT EXISTS qiao_conversations_updated ON qiao_conversations(updated);"
    /* The agent console's list reads only the paused rows. */
    "CREATE INDEX IF NOT EXISTS qiao_conversations_paused ON qiao_conversations(updated)"
    "  WHERE json_extract(state, '$.paused') = 1;";

QIAO_API qiao_status qiao_bot_store_open_sqlite(const char *path, const qiao_bot_store_params *params,
                                                qiao_bot_store **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_store_open_sqlite: out is NULL");
    *out = NULL;
    if (!path || !path[0]) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_store_open_sqlite: no path");
    qiao_bot_store_params p = qiao_bot_store_default_params();
    qiao_status st = qc_params_read(&p, sizeof p, params, sizeof(size_t), "qiao_bot_store_default_params");
    if (st != QIAO_OK) return st;
    if (!(p.ttl_seconds >= 0) || p.busy_timeout_ms < 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_bot_store_open_sqlite: a negative ttl or busy timeout");
    sql_store *q = calloc(1, sizeof *q);
    if (!q || !(q->path = strdup(path))) {
        free(q);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    }
    q->ttl = p.ttl_seconds;
    if (sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        st = q->db ? sql_fail(q, "opening") : qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
        sql_close(q);
        return st;
    }
    sqlite3_busy_timeout(q->db, p.busy_timeout_ms);
    /* Another connection opening the same new file at once may hold the
     * lock that changing the journal mode needs, and SQLite then answers
     * BUSY without waiting: try again for as long as the busy timeout. */
    for (int waited = 0;; waited += 5) {
        st = sql_exec(q, SCHEMA, "creating the tables");
        if (st != QIAO_ERR_CONFLICT || waited >= p.busy_timeout_ms) break;
        nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
    }
    if (st == QIAO_OK)
        st = sql_exec(q, p.durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", "setting durability");
    const struct {
        sqlite3_stmt **s;
        const char *sql;
    } prep[] = {
        {&q->get, "SELECT state, version, updated FROM qiao_conversations WHERE id = ?1"},
        {&q->insert, "INSERT INTO qiao_conversations(id, state, version, updated) VALUES(?1, ?2, ?4 + 1, ?3)"},
        {&q->update, "UPDATE qiao_conversations SET state = ?2, version = ?4 + 1, updated = ?3 "
                     "WHERE id = ?1 AND version = ?4"},
        {&q->event, "INSERT OR REPLACE INTO qiao_events(conversation, version, time, events) VALUES(?1, ?2, ?3, ?4)"},
        {&q->del_conv, "DELETE FROM qiao_conversations WHERE id = ?1"},
        {&q->del_events, "DELETE FROM qiao_events WHERE conversation = ?1"},
        {&q->old, "SELECT id FROM qiao_conversations WHERE updated < ?1"},
        {&q->paused, "SELECT id FROM qiao_conversations WHERE json_extract(state, '$.paused') = 1 "
                     "AND updated >= ?2 ORDER BY updated DESC LIMIT ?1"},
    };
    for (size_t i = 0; i < sizeof prep / sizeof *prep && st == QIAO_OK; i++)
        if (sqlite3_prepare_v2(q->db, prep[i].sql, -1, prep[i].s, NULL) != SQLITE_OK)
            st = sql_fail(q, "preparing a statement");
    if (st != QIAO_OK) {
        sql_close(q);
        return st;
    }
    const qiao_bot_store_ops ops = {sizeof ops, sql_load, sql_save, sql_remove, sql_expire, sql_close, sql_paused};
    st = qiao_bot_store_new(&ops, q, out);
    if (st == QIAO_OK) qbot_store_set_ttl(*out, p.ttl_seconds);
    return st;
}

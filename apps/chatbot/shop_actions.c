/* The sample shop's actions: the e-commerce bot's order lookups and
 * requests, on a SQLite database of sample orders (orders.sql). What an
 * application writes on qiao_bot.h: each action reads the conversation's
 * slots, queries its own store, sets slots for the reply and picks it. */
#define _POSIX_C_SOURCE 200809L

#include "shop_actions.h"

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct shop {
    sqlite3 *db; /* opened serialized: the actions may run on several threads */
};

static qiao_status fail(shop *s, const char *what) {
    /* The bot records the action's failure; the message goes to the log. */
    fprintf(stderr, "shop: %s: %s\n", what, s && s->db ? sqlite3_errmsg(s->db) : "no database");
    return QIAO_ERR_IO;
}

static bool zh(const qiao_bot_action_ctx *ctx) { return !strcmp(qiao_bot_action_language(ctx), "zh"); }

static const char *status_text(const char *status, bool chinese) {
    static const char *const map[][3] = {{"paid", "已付款，待发货", "paid, not shipped yet"},
                                         {"shipped", "已发货，运输中", "on its way"},
                                         {"delivered", "已签收", "delivered"},
                                         {"cancelled", "已取消", "cancelled"},
                                         {"reviewing", "审核中", "under review"},
                                         {"approved", "已批准，1-3个工作日到账", "approved, arriving in 1-3 working days"},
                                         {"rejected", "未通过", "rejected"}};
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (!strcmp(map[i][0], status)) return map[i][chinese ? 1 : 2];
    if (!strcmp(status, "paid_refund")) return chinese ? "已退回原支付账户" : "paid back to your account";
    return status;
}

static qiao_status set(qiao_bot_action_ctx *ctx, const char *slot, const unsigned char *v) {
    return qiao_bot_action_set_slot(ctx, slot, v ? (const char *)v : NULL);
}

/* Reads the order the conversation names into slots; 0 when not found
 * (the reply is chosen), 1 when found, -1 on an error. */
static int load_order(shop *s, qiao_bot_action_ctx *ctx, char status[32]) {
    const char *id = qiao_bot_action_slot(ctx, "order_id");
    if (!id) return -1;
    sqlite3_stmt *q = NULL;
    const bool c = zh(ctx);
    if (sqlite3_prepare_v2(s->db,
                           c ? "SELECT status, product_zh, carrier, tracking, eta FROM orders WHERE id = ?1"
                             : "SELECT status, product_en, carrier, tracking, eta FROM orders WHERE id = ?1",
                           -1, &q, NULL) != SQLITE_OK)
        return fail(s, "lookup"), -1;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_TRANSIENT);
    const int rc = sqlite3_step(q);
    int found = 0;
    if (rc == SQLITE_ROW) {
        snprintf(status, 32, "%s", (const char *)sqlite3_column_text(q, 0));
        qiao_status st = qiao_bot_action_set_slot(ctx, "order_status", status_text(status, c));
        if (st == QIAO_OK) st = set(ctx, "product", sqlite3_column_text(q, 1));
        if (st == QIAO_OK) st = set(ctx, "carrier", sqlite3_column_text(q, 2));
        if (st == QIAO_OK) st = set(ctx, "tracking", sqlite3_column_text(q, 3));
        if (st == QIAO_OK) st = set(ctx, "eta", sqlite3_column_text(q, 4));
        found = st == QIAO_OK ? 1 : -1;
    } else if (rc != SQLITE_DONE) {
        fail(s, "lookup");
        found = -1;
    }
    sqlite3_finalize(q);
    if (found == 0 && qiao_bot_action_respond(ctx, "order_not_found") != QIAO_OK) return -1;
    return found;
}

static qiao_status lookup_order(qiao_bot_action_ctx *ctx, void *user) {
    char status[32];
    const int found = load_order(user, ctx, status);
    if (found < 0) return QIAO_ERR_IO;
    if (found == 1 && !strcmp(status, "paid")) return qiao_bot_action_respond(ctx, "order_not_shipped");
    if (found == 1 && !strcmp(status, "cancelled")) return qiao_bot_action_respond(ctx, "order_cancelled");
    return QIAO_OK;
}

static qiao_status lookup_delivery(qiao_bot_action_ctx *ctx, void *user) {
    char status[32];
    const int found = load_order(user, ctx, status);
    if (found < 0) return QIAO_ERR_IO;
    if (found == 1 && !strcmp(status, "cancelled")) return qiao_bot_action_respond(ctx, "order_cancelled");
    if (found == 1 && !strcmp(status, "delivered")) return qiao_bot_action_respond(ctx, "order_status_reply");
    return QIAO_OK;
}

static qiao_status lookup_refund(qiao_bot_action_ctx *ctx, void *user) {
    shop *s = user;
    char status[32];
    const int found = load_order(s, ctx, status);
    if (found <= 0) return found < 0 ? QIAO_ERR_IO : QIAO_OK;
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT amount, status FROM refunds WHERE order_id = ?1", -1, &q, NULL) != SQLITE_OK)
        return fail(s, "refund lookup");
    sqlite3_bind_text(q, 1, qiao_bot_action_slot(ctx, "order_id"), -1, SQLITE_TRANSIENT);
    const int rc = sqlite3_step(q);
    qiao_status st = QIAO_OK;
    if (rc == SQLITE_ROW) {
        char amount[32];
        snprintf(amount, sizeof amount, "%.2f", sqlite3_column_double(q, 0));
        const char *rs = (const char *)sqlite3_column_text(q, 1);
        st = qiao_bot_action_set_slot(ctx, "refund_amount", amount);
        if (st == QIAO_OK)
            st = qiao_bot_action_set_slot(ctx, "refund_status", status_text(!strcmp(rs, "paid") ? "paid_refund" : rs, zh(ctx)));
    } else if (rc == SQLITE_DONE) {
        st = qiao_bot_action_respond(ctx, "no_refund");
    } else {
        st = fail(s, "refund lookup");
    }
    sqlite3_finalize(q);
    return st;
}

static qiao_status create_request(qiao_bot_action_ctx *ctx, shop *s, const char *kind) {
    char status[32];
    const int found = load_order(s, ctx, status);
    if (found <= 0) return found < 0 ? QIAO_ERR_IO : QIAO_OK;
    if (strcmp(status, "delivered")) return qiao_bot_action_respond(ctx, "not_delivered_yet");
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "INSERT INTO returns(order_id, kind, item, reason) VALUES(?1, ?2, ?3, ?4)", -1, &q,
                           NULL) != SQLITE_OK)
        return fail(s, "request");
    sqlite3_bind_text(q, 1, qiao_bot_action_slot(ctx, "order_id"), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, qiao_bot_action_slot(ctx, "item"), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 4, qiao_bot_action_slot(ctx, "reason"), -1, SQLITE_TRANSIENT);
    const int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return fail(s, "request");
    char id[32];
    snprintf(id, sizeof id, "%c%06lld", kind[0] == 'r' ? 'R' : 'E', (long long)sqlite3_last_insert_rowid(s->db));
    return qiao_bot_action_set_slot(ctx, "request_id", id);
}

static qiao_status create_return(qiao_bot_action_ctx *ctx, void *user) { return create_request(ctx, user, "return"); }
static qiao_status create_exchange(qiao_bot_action_ctx *ctx, void *user) {
    return create_request(ctx, user, "exchange");
}

static qiao_status change_address(qiao_bot_action_ctx *ctx, void *user) {
    shop *s = user;
    char status[32];
    const int found = load_order(s, ctx, status);
    if (found <= 0) return found < 0 ? QIAO_ERR_IO : QIAO_OK;
    if (!strcmp(status, "cancelled")) return qiao_bot_action_respond(ctx, "order_cancelled");
    if (strcmp(status, "paid")) return qiao_bot_action_respond(ctx, "address_too_late");
    const char *id = qiao_bot_action_slot(ctx, "order_id"), *addr = qiao_bot_action_slot(ctx, "address");
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO address_changes(order_id, old, new) SELECT id, address, ?2 FROM orders WHERE id = ?1;",
                           -1, &q, NULL) != SQLITE_OK)
        return fail(s, "address");
    sqlite3_bind_text(q, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, addr, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE || sqlite3_prepare_v2(s->db, "UPDATE orders SET address = ?2 WHERE id = ?1", -1, &q, NULL) != SQLITE_OK)
        return fail(s, "address");
    sqlite3_bind_text(q, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, addr, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(q);
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? QIAO_OK : fail(s, "address");
}

static qiao_status request_invoice(qiao_bot_action_ctx *ctx, void *user) {
    shop *s = user;
    char status[32];
    const int found = load_order(s, ctx, status);
    if (found <= 0) return found < 0 ? QIAO_ERR_IO : QIAO_OK;
    if (!strcmp(status, "cancelled")) return qiao_bot_action_respond(ctx, "order_cancelled");
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "INSERT INTO invoices(order_id, title) VALUES(?1, ?2)", -1, &q, NULL) != SQLITE_OK)
        return fail(s, "invoice");
    sqlite3_bind_text(q, 1, qiao_bot_action_slot(ctx, "order_id"), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, qiao_bot_action_slot(ctx, "invoice_title"), -1, SQLITE_TRANSIENT);
    const int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? QIAO_OK : fail(s, "invoice");
}

static char *beside(const char *dir, const char *name) {
    const size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", name[0] == '/' ? "" : dir, name);
    if (p && name[0] == '/') snprintf(p, n, "%s", name);
    return p;
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = 2 * (n + 4096 + 1);
            char *g = realloc(buf, cap);
            if (!g) break;
            buf = g;
        }
        const size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    if (buf) buf[n] = 0;
    return buf;
}

qiao_status shop_open(qiao_bot *bot, const char *db_path, shop **out) {
    *out = NULL;
    cJSON *app = cJSON_Parse(qiao_bot_app_config(bot));
    const cJSON *dbj = cJSON_GetObjectItemCaseSensitive(app, "orders_db");
    const cJSON *sqlj = cJSON_GetObjectItemCaseSensitive(app, "orders_sql");
    char *db = db_path ? strdup(db_path) : cJSON_IsString(dbj) ? beside(qiao_bot_dir(bot), dbj->valuestring) : NULL;
    char *sql = cJSON_IsString(sqlj) ? beside(qiao_bot_dir(bot), sqlj->valuestring) : NULL;
    cJSON_Delete(app);
    shop *s = calloc(1, sizeof *s);
    qiao_status st = s && db && sql ? QIAO_OK : QIAO_ERR_FORMAT;
    if (st != QIAO_OK) fprintf(stderr, "shop: the bot's app config names no orders_db and orders_sql\n");
    struct stat sb;
    const bool fresh = st == QIAO_OK && stat(db, &sb) != 0;
    if (st == QIAO_OK &&
        sqlite3_open_v2(db, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK)
        st = fail(s, db);
    if (st == QIAO_OK) sqlite3_busy_timeout(s->db, 5000);
    if (st == QIAO_OK && fresh) {
        /* The sample orders, the first time. */
        char *text = read_all(sql);
        if (!text || sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(s->db, text, NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
            st = fail(s, sql);
            /* No half-made database for the next run to trust. */
            sqlite3_close(s->db);
            s->db = NULL;
            remove(db);
        }
        free(text);
    }
    static const struct {
        const char *name;
        qiao_bot_action_fn fn;
    } actions[] = {{"lookup_order", lookup_order},       {"lookup_delivery", lookup_delivery},
                   {"lookup_refund", lookup_refund},     {"create_return", create_return},
                   {"create_exchange", create_exchange}, {"change_address", change_address},
                   {"request_invoice", request_invoice}};
    for (size_t i = 0; i < sizeof actions / sizeof *actions && st == QIAO_OK; i++)
        st = qiao_bot_register_action(bot, actions[i].name, actions[i].fn, s);
    free(db), free(sql);
    if (st != QIAO_OK) {
        shop_close(s);
        return st;
    }
    *out = s;
    return QIAO_OK;
}

void shop_close(shop *s) {
    if (!s) return;
    sqlite3_close(s->db);
    free(s);
}

/* apps/chatbot/shop_actions.h - the sample shop's actions for the
 * e-commerce bot (ecommerce.yml): order, delivery and refund lookups,
 * return and exchange requests, address changes and invoices, on a SQLite
 * database of sample orders. */
#ifndef QIAO_SHOP_ACTIONS_H
#define QIAO_SHOP_ACTIONS_H

#include "qiao_bot.h"

typedef struct shop shop;

/* Opens the orders database (db_path, or the bot's app config "orders_db"
 * beside the bot file; made from "orders_sql" when it does not exist yet)
 * and registers the actions on bot. *out is freed with shop_close, after
 * the bot's sessions. */
qiao_status shop_open(qiao_bot *bot, const char *db_path, shop **out);
void shop_close(shop *s);

#endif

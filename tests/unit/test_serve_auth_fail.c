/* `qiao serve`'s table of failed authentications per client address
 * (apps/serve/auth_fail.c): a bucket drains and refills at its rate, each
 * address (an IPv6 one by its /64) has its own, and a flood of new
 * addresses, far more than the table holds, neither grows it nor makes it
 * forget the address being refused. tests/serve/test_serve.py checks the
 * service's answers (401, 429 with Retry-After, a good token passing). */
#define _DEFAULT_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "testutil.h"

#include "apps/serve/serve.h"

static struct sockaddr_in v4(uint32_t host_order) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(host_order);
    return a;
}

static struct sockaddr_in6 v6(const char *text) {
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, text, &a.sin6_addr), 1);
    return a;
}

static double take(serve_fail_table *t, const void *addr, double now) {
    return serve_fail_take(t, (const struct sockaddr *)addr, now);
}

static serve_fail_table g_table; /* 160 KiB: off the stack */

static void drain_and_refill(void **state) {
    (void)state;
    serve_fail_table *t = &g_table;
    serve_fail_init(t, 2, 3, 42);
    const struct sockaddr_in a = v4(0x0a000001), b = v4(0x0a000002);
    for (int i = 0; i < 3; i++) assert_true(take(t, &a, 100) == 0);
    const double wait = take(t, &a, 100);
    assert_true(wait > 0.49 && wait < 0.51); /* one failure at 2 a second */
    assert_true(take(t, &a, 100.25) > 0);     /* refusals take nothing: half of one by now */
    assert_true(take(t, &b, 100.25) == 0);    /* another address: its own bucket */
    assert_true(take(t, &a, 100.5) == 0);     /* refilled one */
    assert_true(take(t, &a, 100.5) > 0);
    assert_true(take(t, &a, 200) == 0); /* full again, not more than the burst */
    assert_true(take(t, &a, 200) == 0);
    assert_true(take(t, &a, 200) == 0);
    assert_true(take(t, &a, 200) > 0);
}

static void flood_of_addresses(void **state) {
    (void)state;
    serve_fail_table *t = &g_table;
    serve_fail_init(t, 1, 5, 7);
    const struct sockaddr_in bad = v4(0xc0a80001);
    for (int i = 0; i < 5; i++) assert_true(take(t, &bad, 10) == 0);
    assert_true(take(t, &bad, 10) > 0);
    /* 25 times the table's slots of new addresses, each failing once: each
     * is allowed its first failure, and the refused address stays refused
     * (a new one takes the fullest bucket near its hash, never the empty one). */
    for (uint32_t i = 0; i < 25u * SERVE_FAIL_SLOTS; i++) {
        const struct sockaddr_in a = v4(0x0b000000u + i);
        assert_true(take(t, &a, 10) == 0);
    }
    assert_true(take(t, &bad, 10) > 0);
    size_t used = 0;
    for (size_t i = 0; i < SERVE_FAIL_SLOTS; i++) used += t->slot[i].used;
    assert_int_equal(used, SERVE_FAIL_SLOTS);
}

static void address_kinds(void **state) {
    (void)state;
    serve_fail_table *t = &g_table;
    serve_fail_init(t, 1, 2, 1);
    /* One /64: one bucket, whatever the host part. */
    const struct sockaddr_in6 a = v6("2001:db8:1:2::1"), b = v6("2001:db8:1:2:ffff::9"), other = v6("2001:db8:1:3::1");
    assert_true(take(t, &a, 5) == 0);
    assert_true(take(t, &b, 5) == 0);
    assert_true(take(t, &a, 5) > 0);
    assert_true(take(t, &other, 5) == 0);
    /* An IPv4 client seen through a dual-stack socket is its IPv4 address. */
    const struct sockaddr_in four = v4(0x7f000001);
    const struct sockaddr_in6 mapped = v6("::ffff:127.0.0.1");
    assert_true(take(t, &four, 5) == 0);
    assert_true(take(t, &mapped, 5) == 0);
    assert_true(take(t, &four, 5) > 0);
    /* ::1 is not 0.0.0.0 or any other IPv4 address. */
    const struct sockaddr_in6 loop6 = v6("::1");
    assert_true(take(t, &loop6, 5) == 0);
    /* No address to key (a Unix socket, none): never limited. */
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    for (int i = 0; i < 10; i++) assert_true(take(t, &un, 5) == 0 && take(t, NULL, 5) == 0);
    /* Rate 0: no limit. */
    serve_fail_init(t, 0, 2, 1);
    for (int i = 0; i < 10; i++) assert_true(take(t, &four, 5) == 0);
}

static const struct CMUnitTest tests[] = {cmocka_unit_test(drain_and_refill), cmocka_unit_test(flood_of_addresses),
                                          cmocka_unit_test(address_kinds)};
QT_MAIN(tests)

/* apps/serve/auth_fail.c - failed authentications per client address: a
 * token bucket per address in a table of fixed size, so that a client
 * sending wrong or missing tokens over and over is answered 429 instead of
 * 401, and the memory stays the same however many addresses come. Only
 * failures take from a bucket: a good token from the same address (a
 * colleague behind the same NAT as a broken script) is never refused. */
#include <math.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "serve.h"

void serve_fail_init(serve_fail_table *t, double rate, double burst, uint64_t seed) {
    memset(t, 0, sizeof *t);
    t->rate = rate, t->burst = burst, t->seed = seed;
}

/* The table's key of a client address: an IPv4 address in its IPv4-mapped
 * IPv6 form (a dual-stack socket's IPv4 clients give that form already),
 * an IPv6 address's /64 with the rest zero (a host is usually given a whole
 * /64, so keying the full address would let one host take a slot per
 * address it makes up). The two never collide: only mapped keys have 0xffff
 * in bytes 10-11. False for anything else (no address, a Unix socket). */
static bool key_of(const struct sockaddr *sa, unsigned char key[16]) {
    memset(key, 0, 16);
    if (!sa) return false;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in in; /* copied: MHD's pointer need not be aligned for it */
        memcpy(&in, sa, sizeof in);
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &in.sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof in6);
        static const unsigned char mapped[12] = {[10] = 0xff, [11] = 0xff};
        memcpy(key, in6.sin6_addr.s6_addr, memcmp(in6.sin6_addr.s6_addr, mapped, 12) ? 8 : 16);
        return true;
    }
    return false;
}

double serve_fail_take(serve_fail_table *t, const struct sockaddr *addr, double now) {
    unsigned char key[16];
    if (t->rate <= 0 || !key_of(addr, key)) return 0;
    uint64_t h = 1469598103934665603ull ^ t->seed; /* FNV-1a from a secret start */
    for (int i = 0; i < 16; i++) h = (h ^ key[i]) * 1099511628211ull;
    const size_t home = (size_t)(h ^ (h >> 29));
    serve_fail_slot *found = NULL, *victim = NULL;
    double victim_level = -1;
    for (size_t i = 0; i < SERVE_FAIL_PROBE && !found; i++) {
        serve_fail_slot *s = &t->slot[(home + i) % SERVE_FAIL_SLOTS];
        const double level =
            !s->used ? INFINITY : fmin(t->burst, s->bucket + (now > s->last ? now - s->last : 0) * t->rate);
        if (s->used && !memcmp(s->key, key, sizeof key)) found = s;
        /* A new address takes an empty slot, else the one whose bucket is
         * fullest: forgetting a full bucket changes nothing (the address
         * would start full again), and the addresses refused now are the
         * last to be forgotten. */
        else if (level > victim_level) victim = s, victim_level = level;
    }
    if (!found) {
        found = victim;
        memcpy(found->key, key, sizeof key);
        found->used = true, found->bucket = t->burst, found->last = now;
    }
    found->bucket = fmin(t->burst, found->bucket + (now > found->last ? now - found->last : 0) * t->rate);
    if (now > found->last) found->last = now;
    if (found->bucket >= 1) {
        found->bucket -= 1;
        return 0;
    }
    return (1 - found->bucket) / t->rate;
}

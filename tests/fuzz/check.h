/* tests/fuzz/check.h - what every fuzz target shares: a broken invariant is
 * a crash on purpose, so libFuzzer records the input. */
#ifndef QIAO_FUZZ_CHECK_H
#define QIAO_FUZZ_CHECK_H

#define CHECK(c)                                                                                  \
    do {                                                                                          \
        if (!(c)) __builtin_trap();                                                               \
    } while (0)

#endif

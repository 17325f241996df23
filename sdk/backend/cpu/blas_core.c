/* OpenBLAS's kernel choice on CPUs newer than it.
 *
 * Debian 12's OpenBLAS (0.3.21, DYNAMIC_ARCH) picks its kernels once, when
 * it loads, from a table of the CPU models it knows. A newer model (Intel
 * Sapphire and Emerald Rapids, family 6 models 143 and 207, among them)
 * falls through to Prescott's SSE3 kernels although the CPU runs the
 * AVX-512 ones: a training step of base.json then takes about three times
 * as long (docs/benchmarks.md, "Where a training step goes"). The variable
 * OPENBLAS_CORETYPE overrides the choice, but only before the library loads,
 * which a program linking libqiao cannot arrange for itself.
 *
 * So on qiao's first CPU context: when the user set neither
 * OPENBLAS_CORETYPE nor QIAO_OPENBLAS_CORE=keep, and OpenBLAS chose
 * Prescott on a CPU with the instructions of a better kernel set, qiao has
 * OpenBLAS choose again through its own exported functions
 * (gotoblas_dynamic_quit, then gotoblas_dynamic_init reading
 * OPENBLAS_CORETYPE, set for that call only): SkylakeX's kernels where
 * AVX-512 F/BW/DQ/VL exist, Haswell's where AVX2 and FMA do. It happens
 * once, before qiao's first BLAS call; an application that calls OpenBLAS
 * itself from other threads at that moment should set OPENBLAS_CORETYPE or
 * QIAO_OPENBLAS_CORE=keep. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "backend/cpu/cpu.h"
#include "core/core.h"

/* Exported by OpenBLAS's DYNAMIC_ARCH builds (driver/others/dynamic.c). */
void gotoblas_dynamic_init(void);
void gotoblas_dynamic_quit(void);

static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* The kernel set this CPU can run that beats Prescott's, or NULL. */
static const char *better_core(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

static void choose_again(void) {
    const char *keep = getenv("QIAO_OPENBLAS_CORE");
    if (getenv("OPENBLAS_CORETYPE") || (keep && strcmp(keep, "keep") == 0)) return;
    const char *was = openblas_get_corename();
    const char *core = better_core();
    if (!was || strcmp(was, "Prescott") != 0 || !core) return;
    /* setenv and getenv are not safe against other threads' use of the
     * environment; this runs once, under pthread_once, before qiao's first
     * BLAS call, and the variable lives only for the call that reads it. */
    if (setenv("OPENBLAS_CORETYPE", core, 0) != 0) return;
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    unsetenv("OPENBLAS_CORETYPE");
    qc_log(QIAO_LOG_INFO, "OpenBLAS chose its Prescott kernels on this CPU; qiao had it choose again: %s",
           openblas_get_corename());
}

void qb_cpu_blas_core_init(void) {
    pthread_once(&g_once, choose_again);
}

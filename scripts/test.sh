#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds qiao and runs the whole test suite:
#   1. a Release build with warnings as errors, all tests;
#   2. the same suite under AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. the tests that call the public API from several threads at once,
#      under ThreadSanitizer, kernel threads included (see below);
#   4. each libFuzzer target for a short run (clang; scripts/fuzz.sh runs
#      them longer and grows the corpus, docs/fuzzing.md).
# Usage: scripts/test.sh [--no-sanitize] [--no-tsan] [--no-fuzz]
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=1; tsan=1; fuzz=1
for a in "$@"; do
  case "$a" in
    --no-sanitize) sanitize=0 ;;
    --no-tsan) tsan=0 ;;
    --no-fuzz) fuzz=0 ;;
    *) echo "usage: $0 [--no-sanitize] [--no-tsan] [--no-fuzz]" >&2; exit 2 ;;
  esac
done

scripts/install-deps.sh
jobs=$(nproc)

echo "== release build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DQIAO_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build -j"$jobs" --output-on-failure

if ((sanitize)); then
  echo "== AddressSanitizer + UndefinedBehaviorSanitizer build and tests"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DQIAO_SANITIZE=ON -DQIAO_WERROR=ON \
        -DQIAO_BUILD_BENCH=OFF >/dev/null
  cmake --build build-asan -j"$jobs"
  # install.consumer is left out: its consumer program is built without the
  # sanitizer runtime the instrumented library needs.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan -j"$jobs" --output-on-failure -E '^install\.'

fi

if ((tsan)); then
  echo "== ThreadSanitizer: the public API from several threads at once"
  # Sessions, models, decoders, the tokenizer, thread-local errors and the
  # search indexer's decode-ahead thread, each used from several pthreads.
  # The kernels run on qiao's own pthreads pool (sdk/backend/cpu/threads.c),
  # whose hand-offs TSan follows, so it checks each session's kernel threads
  # as well as the application threads against each other; test_threads
  # drives the pool itself from many callers. libgomp (still used by the data
  # generators) is not built with TSan: OMP_THREAD_LIMIT=1 keeps any OpenMP
  # team at one thread, so it cannot report its own hand-offs as races.
  tsan_tests=(test_api.thread_local_errors test_embed_api.threads_deterministic
              test_image.decode_on_four_threads test_audio.test_threads_decode_and_mel
              test_tokenizer.thread_safety test_clip_bpe.threads test_search.index_and_query
              test_search.interrupt_resume
              test_search_api.threads test_intent_api.threads test_bot.threads test_bot_redis.threads
              serve.threads
              test_threads.concurrent_callers test_threads.nested_runs_serially
              test_threads.kernels_match_serial test_threads.workers_joined_at_thread_exit
              test_threads.creation_failure_runs_serially)
  # serve.threads drives the qiao program: the service's workers, its locks and
  # libmicrohttpd's threads under many clients at once.
  tsan_targets=$(printf '%s\n' "${tsan_tests[@]}" | sed 's/\..*//; s/^serve$/qiao_cli/' | sort -u)
  cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQIAO_TSAN=ON -DQIAO_WERROR=ON \
        -DQIAO_BUILD_BENCH=OFF >/dev/null
  # shellcheck disable=SC2086 # one target per word
  cmake --build build-tsan -j"$jobs" --target $tsan_targets
  tsan_re="^($(IFS='|'; echo "${tsan_tests[*]}" | sed 's/\./\\./g'))\$"
  # A renamed case would otherwise drop out of the job without a word.
  found=$(ctest --test-dir build-tsan -N -R "$tsan_re" | grep -c 'Test *#' || true)
  if ((found != ${#tsan_tests[@]})); then
    echo "ThreadSanitizer job: $found of the ${#tsan_tests[@]} tests it names exist" >&2
    exit 1
  fi
  OMP_THREAD_LIMIT=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --test-dir build-tsan -j"$jobs" --output-on-failure -R "$tsan_re"
fi

if ((fuzz)) && [[ -f tests/fuzz.cmake ]]; then
  echo "== fuzzers (libFuzzer, clang)"
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DQIAO_FUZZ=ON \
        -DQIAO_BUILD_BENCH=OFF -DQIAO_BUILD_TESTS=ON >/dev/null
  # ASan's quarantine keeps freed decode buffers (up to tens of MB each:
  # 2 s of 32-channel audio at the highest accepted rate) alive, and its
  # allocator keeps their memory. fuzz_audio's RSS measured 2.1 GB with the
  # default 256 MB quarantine (past libFuzzer's 2 GB limit), 1.46 GB with
  # 64 MB, and a flat 111 MB with 8 MB; nothing accumulates in qiao. The
  # RSS and malloc limits stay at their defaults, so a real blow-up still
  # fails.
  mkdir -p build-fuzz/artifacts
  for t in $(ls tests/fuzz/fuzz_*.c | xargs -n1 basename | sed 's/\.c$//'); do
    cmake --build build-fuzz -j"$jobs" --target "$t" >/dev/null
    corpus=tests/fuzz/corpus/${t#fuzz_}
    work=$(mktemp -d)
    log=$(mktemp)
    cp -r "$corpus"/. "$work"/
    echo "-- $t (${QIAO_FUZZ_SECONDS:-30} s)"
    if ! ASAN_OPTIONS=quarantine_size_mb=16 build-fuzz/bin/"$t" -max_total_time="${QIAO_FUZZ_SECONDS:-30}" \
          -print_final_stats=1 -artifact_prefix=build-fuzz/artifacts/"$t"- "$work" >"$log" 2>&1; then
      tail -n 60 "$log"
      echo "fuzzer $t failed; the input is under build-fuzz/artifacts/" >&2
      exit 1
    fi
    grep -E "stat::(number_of_executed_units|new_units_added|peak_rss_mb)" "$log"
    rm -rf "$work" "$log"
  done
fi
echo "all tests passed"

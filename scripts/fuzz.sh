#!/usr/bin/env bash
# Runs every libFuzzer target (tests/fuzz/fuzz_*.c) for a given time each,
# merges the inputs that reach new coverage back into the committed corpus
# (tests/fuzz/corpus/<target minus fuzz_>), keeps crash, leak, timeout and
# out-of-memory inputs, and prints a table of executions, exec/s, new units
# and peak RSS per target. docs/fuzzing.md says when to run what.
#
# Usage: scripts/fuzz.sh [--seconds N] [--jobs J] [--no-merge] [--build DIR] [TARGET...]
#   --seconds N  fuzzing time per target (default 60)
#   --jobs J     targets fuzzed at once, one process each (default 1); each
#                still gets N seconds, so J = the number of cores is fastest
#   --no-merge   leave tests/fuzz/corpus alone (new inputs are dropped)
#   --build DIR  the clang build folder (default build-fuzz; configured here)
#   TARGET       fuzz_image or image; default every tests/fuzz/fuzz_*.c
# Exit status: 0 when every target ran clean, 1 when one found something
# (its input is under DIR/fuzz-artifacts/), 2 for a usage error.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60; jobs=1; merge=1; build=build-fuzz; want=()
usage() { sed -n '/^# Usage:/,/^# (its input/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
  case "$1" in
    --seconds) [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || usage; seconds=$2; shift 2 ;;
    --jobs) [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || usage; jobs=$2; shift 2 ;;
    --no-merge) merge=0; shift ;;
    --build) [[ $# -ge 2 ]] || usage; build=$2; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; usage ;;
    *) want+=("$1"); shift ;;
  esac
done

# Discovered, not listed: a new tests/fuzz/fuzz_*.c is fuzzed without editing this file.
all=()
for f in tests/fuzz/fuzz_*.c; do all+=("$(basename "$f" .c)"); done
targets=()
if ((${#want[@]})); then
  for w in "${want[@]}"; do
    t=fuzz_${w#fuzz_}
    [[ -f tests/fuzz/$t.c ]] || { echo "fuzz.sh: no target $w (have: ${all[*]})" >&2; exit 2; }
    targets+=("$t")
  done
else
  targets=("${all[@]}")
fi

CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DQIAO_FUZZ=ON \
  -DQIAO_BUILD_BENCH=OFF -DQIAO_BUILD_TESTS=ON >/dev/null
art=$build/fuzz-artifacts
logs=$build/fuzz-logs
mkdir -p "$art" "$logs"
# A target that does not build is reported in the table; the others still run.
built=()
for t in "${targets[@]}"; do
  echo "-- building $t"
  rm -f "$logs/$t.result"
  if cmake --build "$build" -j"$(nproc)" --target "$t" >"$logs/$t.build.log" 2>&1; then
    built+=("$t")
  else
    printf '%s\t-\t-\t-\t-\t-\t-\tBUILD FAILED (%s)\n' "$t" "$logs/$t.build.log" >"$logs/$t.result"
    echo "fuzz.sh: $t does not build, see $logs/$t.build.log" >&2
  fi
done

# A figure from libFuzzer's -print_final_stats lines ("stat::name: value").
final_stat() { grep -m1 "^stat::$2:" "$1" | awk '{print $2}' || true; }

# One target: fuzz into a scratch folder (the committed corpus is read as
# seeds), then merge. Writes "$logs/$t.result" for the table.
run_one() {
  local t=$1 corpus=tests/fuzz/corpus/${1#fuzz_}
  local work log=$logs/$t.log rc=0 before after
  work=$(mktemp -d)
  mkdir -p "$corpus"
  before=$(find "$corpus" -type f | wc -l)
  # quarantine_size_mb: see scripts/test.sh (ASan's default quarantine holds
  # freed decode buffers and pushes fuzz_audio past the 2 GB RSS limit).
  # -timeout: one input running 30 s is a hang worth keeping.
  local start=$SECONDS ran
  ASAN_OPTIONS=quarantine_size_mb=16 "$build/bin/$t" -max_total_time="$seconds" -timeout=30 \
    -print_final_stats=1 -artifact_prefix="$art/$t-" "$work" "$corpus" >"$log" 2>&1 || rc=$?
  ran=$((SECONDS - start)) # shorter than asked when it found something
  if ((merge)); then
    # Only inputs that add coverage to what the corpus already reaches are
    # copied in, under their SHA-1 names; nothing already there is removed.
    ASAN_OPTIONS=quarantine_size_mb=16 "$build/bin/$t" -merge=1 -timeout=30 "$corpus" "$work" \
      >>"$log" 2>&1 || echo "fuzz.sh: merging $t failed, see $log" >&2
  fi
  after=$(find "$corpus" -type f | wc -l)
  rm -rf "$work"
  local execs rate units rss
  execs=$(final_stat "$log" number_of_executed_units); rate=$(final_stat "$log" average_exec_per_sec)
  units=$(final_stat "$log" new_units_added); rss=$(final_stat "$log" peak_rss_mb)
  # libFuzzer's own rate reads 0 when it stopped in its first seconds.
  if [[ ${rate:-0} == 0 && -n $execs ]] && ((ran > 0)); then rate=$((execs / ran)); fi
  local result=ok
  if ((rc)); then
    result="FOUND (rc $rc): $(grep -m1 -oE 'Test unit written to [^ ]+' "$log" | sed 's/Test unit written to //' || true)"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$ran" "${execs:-?}" "${rate:-?}" "${units:-?}" \
    "${rss:-?}" "$before->$after" "$result" >"$logs/$t.result"
  echo "-- $t done: ${execs:-?} executions, $result"
}

echo "== fuzzing ${#built[@]} target(s), $seconds s each, $jobs at a time$( ((merge)) || echo ', no merge')"
for t in "${built[@]}"; do
  while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
  echo "-- $t started"
  run_one "$t" &
done
wait

failed=0
echo
printf '%-22s %8s %12s %8s %10s %9s %12s  %s\n' target seconds executions exec/s "new units" "peak RSS" corpus result
for t in "${targets[@]}"; do
  if [[ ! -f $logs/$t.result ]]; then
    printf '%-22s %s\n' "$t" "no result (see $logs/$t.log)"; failed=1; continue
  fi
  IFS=$'\t' read -r name secs execs rate units rss corp result <"$logs/$t.result"
  printf '%-22s %8s %12s %8s %10s %7s MB %12s  %s\n' "$name" "$secs" "$execs" "$rate" "$units" "$rss" "$corp" \
    "$result"
  [[ $result == ok ]] || failed=1
done
echo "(logs: $logs; crash, leak, timeout and OOM inputs: $art)"
exit "$failed"

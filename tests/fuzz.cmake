# libFuzzer targets, built only with -DQIAO_FUZZ=ON and clang:
#
#   CC=clang cmake -S . -B build-fuzz -DQIAO_FUZZ=ON -DQIAO_BUILD_BENCH=OFF
#   cmake --build build-fuzz -j2 --target fuzz_safetensors
#   ./build-fuzz/bin/fuzz_safetensors -max_total_time=60 NEW_DIR tests/fuzz/corpus/safetensors
#
# (libFuzzer writes new inputs into the first directory; give it a scratch one
# unless the committed corpus is meant to grow. scripts/fuzz.sh does that.)
#
# The code under test is compiled into the fuzzer itself with the fuzzer's
# coverage instrumentation and ASan/UBSan, rather than linked from the
# library: the library objects are built without instrumentation, so the
# fuzzer would be blind inside the parser and ASan would miss its
# out-of-bounds reads. Only the reader and what it uses are needed. Each
# area's tests/<area>.cmake registers its targets with qiao_fuzz
# (tests/CMakeLists.txt).
qiao_fuzz(NAME fuzz_safetensors LIBS PkgConfig::CJSON SOURCES
  ${PROJECT_SOURCE_DIR}/sdk/core/safetensors.c ${PROJECT_SOURCE_DIR}/sdk/core/status.c
  ${PROJECT_SOURCE_DIR}/sdk/core/half.c ${PROJECT_SOURCE_DIR}/sdk/core/tensor.c
  ${PROJECT_SOURCE_DIR}/sdk/core/rng.c ${PROJECT_SOURCE_DIR}/sdk/core/utf8.c ${PROJECT_SOURCE_DIR}/sdk/core/file.c)

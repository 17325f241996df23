# libFuzzer targets, built only with -DQIAO_FUZZ=ON and clang:
#
#   CC=clang cmake -S . -B build-fuzz -DQIAO_FUZZ=ON -DQIAO_BUILD_BENCH=OFF
#   cmake --build build-fuzz -j2 --target fuzz_safetensors
#   ./build-fuzz/bin/fuzz_safetensors -max_total_time=60 NEW_DIR tests/fuzz/corpus/safetensors
#
# (libFuzzer writes new inputs into the first directory; give it a scratch one
# unless the committed corpus is meant to grow.)
#
# The code under test is compiled into the fuzzer itself with the fuzzer's
# coverage instrumentation and ASan/UBSan, rather than linked from
# qiao_objects: the library objects are built without instrumentation, so
# the fuzzer would be blind inside the parser and ASan would miss its
# out-of-bounds reads. Only the reader and what it uses are needed.
option(QIAO_FUZZ "Build the libFuzzer targets (configure with CC=clang)" OFF)
if(QIAO_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "QIAO_FUZZ=ON needs clang (libFuzzer): configure with CC=clang")
  endif()
  set(QIAO_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
      -fno-omit-frame-pointer -g)
  set(QIAO_FUZZ_SDK ${PROJECT_SOURCE_DIR}/sdk)
  add_executable(fuzz_safetensors fuzz/fuzz_safetensors.c
    ${QIAO_FUZZ_SDK}/core/safetensors.c ${QIAO_FUZZ_SDK}/core/status.c
    ${QIAO_FUZZ_SDK}/core/half.c ${QIAO_FUZZ_SDK}/core/tensor.c ${QIAO_FUZZ_SDK}/core/rng.c
    ${QIAO_FUZZ_SDK}/core/utf8.c ${QIAO_FUZZ_SDK}/core/file.c)
  target_include_directories(fuzz_safetensors PRIVATE
    ${QIAO_FUZZ_SDK} ${QIAO_FUZZ_SDK}/include ${PROJECT_BINARY_DIR}/sdk)
  target_compile_options(fuzz_safetensors PRIVATE ${QIAO_FUZZ_FLAGS})
  target_link_options(fuzz_safetensors PRIVATE ${QIAO_FUZZ_FLAGS})
  target_link_libraries(fuzz_safetensors PRIVATE qiao_warnings PkgConfig::CJSON m)
  # A short smoke run over the committed seeds, so ctest in a fuzz build
  # proves the target starts and the seeds are clean.
  add_test(NAME fuzz.safetensors.seeds
    COMMAND fuzz_safetensors -runs=0 ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/safetensors)
  set_tests_properties(fuzz.safetensors.seeds PROPERTIES LABELS fuzz TIMEOUT 120)
endif()

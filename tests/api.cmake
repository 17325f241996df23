# The public header alone: pedantic C99 and C++, linked against the shared library.
add_executable(test_header_c99 header/header_c99.c)
set_target_properties(test_header_c99 PROPERTIES C_STANDARD 99 C_EXTENSIONS OFF)
target_compile_options(test_header_c99 PRIVATE -std=c99 -pedantic -Wall -Wextra -Werror)
target_link_libraries(test_header_c99 PRIVATE qiao)
add_test(NAME header.c99_pedantic COMMAND test_header_c99)

add_executable(test_header_cxx header/header_cxx.cpp)
target_compile_options(test_header_cxx PRIVATE -pedantic -Wall -Wextra -Werror)
target_link_libraries(test_header_cxx PRIVATE qiao)
add_test(NAME header.cxx COMMAND test_header_cxx)

qiao_test(NAME test_api SOURCES unit/test_api.c
  CASES version status_strings thread_local_errors log_callback params_struct_size selfcheck_bad_args
        selfcheck_cancel
  LABELS api)

# The learning test: a 2-layer transformer trains on a task that needs
# attention and must reach the stated held-out accuracy.
qiao_test(NAME test_learning SOURCES unit/test_learning.c TIMEOUT 600 LABELS learning)

# Install into a scratch prefix and build a tiny consumer against the
# installed package, with CMake's find_package and with pkg-config.
add_test(NAME install.consumer
  COMMAND ${CMAKE_COMMAND} -DBUILD_DIR=${PROJECT_BINARY_DIR} -DSRC_DIR=${CMAKE_CURRENT_SOURCE_DIR}/install
          -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/install-check -DCC=${CMAKE_C_COMPILER}
          -DEXAMPLES_DIR=${PROJECT_SOURCE_DIR}/docs/examples
          -DEXAMPLE_MODEL=${CMAKE_CURRENT_BINARY_DIR}/embed-cli-files/tiny.safetensors
          -DEXAMPLE_IMAGE=${CMAKE_CURRENT_SOURCE_DIR}/data/image/000000126107.jpg
          -P ${CMAKE_CURRENT_SOURCE_DIR}/install/check_install.cmake)
set_tests_properties(install.consumer PROPERTIES TIMEOUT 300 LABELS install FIXTURES_REQUIRED embed_model)

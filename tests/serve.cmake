# `qiao serve` (apps/serve, issue 20) end to end on the sample shop's bot:
# every route, tokens (missing, wrong, revoked by SIGHUP), bad requests of
# every kind, a slow client, eight clients on one conversation losing no
# event, the rate limit, failed authentications limited per client address,
# metrics, a graceful SIGTERM, a backlog of classifications that holds no
# health check up, clients leaving mid-request by the hundred and a full
# queue of jobs
# (tests/serve/test_serve.py; Python's standard library only).
find_package(Python3 REQUIRED COMPONENTS Interpreter)
add_test(NAME serve.api COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/serve/test_serve.py
  $<TARGET_FILE:qiao_cli> ${PROJECT_SOURCE_DIR}/apps/chatbot/ecommerce.yml ${CMAKE_CURRENT_BINARY_DIR}/serve-api)
set_tests_properties(serve.api PROPERTIES LABELS "serve;cli" TIMEOUT 300
  ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")

# The part about threads alone, short enough for ThreadSanitizer's build
# (scripts/test.sh): clients on every route at once, some leaving
# mid-request while the workers resume their connections, SIGHUP and
# SIGTERM among them.
add_test(NAME serve.threads COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/serve/test_serve.py
  $<TARGET_FILE:qiao_cli> ${PROJECT_SOURCE_DIR}/apps/chatbot/ecommerce.yml ${CMAKE_CURRENT_BINARY_DIR}/serve-threads
  --threads-only)
set_tests_properties(serve.threads PROPERTIES LABELS "serve;cli" TIMEOUT 300
  ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")

# The table of failed authentications per client address (apps/serve/auth_fail.c,
# compiled in: it needs nothing of the service's libraries): buckets per
# address and per IPv6 /64, and a flood of new addresses that neither grows
# the table nor frees the address it refuses.
qiao_test(NAME test_serve_auth_fail SOURCES unit/test_serve_auth_fail.c ${PROJECT_SOURCE_DIR}/apps/serve/auth_fail.c
  CASES drain_and_refill flood_of_addresses address_kinds LABELS "serve" TIMEOUT 60)
target_include_directories(test_serve_auth_fail PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(test_serve_auth_fail PRIVATE PkgConfig::CJSON)

# `qiao serve`: usage.
cli_expect(NAME cli.serve.usage RC 2 ARGS serve STDERR "--tokens FILE is required")
set_tests_properties(cli.serve.usage PROPERTIES LABELS "cli;serve")

# libFuzzer: a tokens file, a method and path, and an API route's JSON body
# answered with the sample shop's bot loaded (tests/fuzz/fuzz_serve_request.c).
qiao_fuzz(NAME fuzz_serve_request LIBS qiao_serve DEFINES QIAO_SOURCE_DIR="${PROJECT_SOURCE_DIR}" LABELS serve)

# The web pages (apps/serve/pages) in a headless Chromium against the real
# server and the sample bot (tests/browser/test_pages.py: chat, handoff, the
# agent console, replies by polling, resume, XSS, a 401). Debian's
# python3-selenium, hence /usr/bin/python3.
add_test(NAME serve.browser COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/browser/test_pages.py
  $<TARGET_FILE:qiao_cli> ${CMAKE_CURRENT_BINARY_DIR}/serve-browser)
set_tests_properties(serve.browser PROPERTIES LABELS "serve;browser" TIMEOUT 200 RESOURCE_LOCK chromium
  ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")

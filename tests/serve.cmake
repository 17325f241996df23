# `qiao serve`'s web pages (apps/serve/pages) in a headless Chromium against the real server
# and the sample bot (tests/browser/test_pages.py: chat, handoff, the agent console, XSS, 401).
add_test(NAME serve.browser COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/browser/test_pages.py
  $<TARGET_FILE:qiao_cli> ${CMAKE_CURRENT_BINARY_DIR}/serve-browser)
set_tests_properties(serve.browser PROPERTIES LABELS "serve;browser" TIMEOUT 200 RESOURCE_LOCK chromium
  ENVIRONMENT "OMP_NUM_THREADS=2;OPENBLAS_NUM_THREADS=2")

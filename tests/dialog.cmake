# The dialog manager (qiao_bot.h, sdk/bot, issue 19) on a tiny classifier
# trained at setup: bot files checked at load (every mistake refused naming
# its place), slot checks, the SQLite tracker store (versions, a stale write
# refused, expiry), handoff surviving a restart, bad arguments, and four
# threads' conversations kept apart.
qiao_test(NAME test_bot SOURCES unit/test_bot.c CASES good_file bad_files sqlite_store pause_restart_resume
  agent_transcript threads
  LABELS "bot" TIMEOUT 300)
target_link_libraries(test_bot PRIVATE PkgConfig::CJSON)

# The Redis tracker store against a redis-server each test process starts on
# a Unix socket of its own (and kills at teardown, or when it dies): versions
# and a stale write refused by the atomic script, remove, the TTL as Redis
# expiry, the paused list, ids of any bytes, bad and refused addresses, the
# server dying and coming back, one conversation through two connections (two
# processes behind a load balancer), four threads with a connection each.
qiao_test(NAME test_bot_redis SOURCES unit/test_bot_redis.c CASES round_trip conflict remove_conversation ttl_expiry
  paused_list odd_ids bad_addresses server_dies two_sessions threads LABELS "bot" TIMEOUT 300)
target_link_libraries(test_bot_redis PRIVATE PkgConfig::CJSON PkgConfig::HIREDIS)

# `qiao chat`: usage.
cli_expect(NAME cli.chat.usage RC 2 ARGS chat STDERR "usage: qiao chat --bot")
set_tests_properties(cli.chat.usage PROPERTIES LABELS "cli;bot")

# libFuzzer: any bytes as a bot file (JSON or YAML) checked against a fixed
# classifier's labels; what reads must reference only what exists, and
# every slot check runs on the bytes as a message.
qiao_fuzz(NAME fuzz_bot_file SOURCES ${PROJECT_SOURCE_DIR}/sdk/bot/bot_file.c ${PROJECT_SOURCE_DIR}/sdk/bot/check.c
  ${PROJECT_SOURCE_DIR}/sdk/core/status.c ${PROJECT_SOURCE_DIR}/sdk/core/utf8.c
  LIBS PkgConfig::CJSON PkgConfig::YAML)

# The sample shop's bot (apps/chatbot) on its committed classifier: every
# scripted conversation must pass (the held-out set is a measure, run by
# hand: docs/chatbot.md), and a conversation survives a restart of the
# process between two `qiao chat` runs.
set(QIAO_CHATBOT ${PROJECT_SOURCE_DIR}/apps/chatbot)
add_test(NAME chatbot.conversations COMMAND qiao_cli chat --bot ${QIAO_CHATBOT}/ecommerce.yml --threads 2
  --test ${QIAO_CHATBOT}/conversations/zh.yml ${QIAO_CHATBOT}/conversations/en.yml)
add_test(NAME chatbot.restart COMMAND ${CMAKE_COMMAND} -DPROG=$<TARGET_FILE:qiao_cli>
  -DBOT=${QIAO_CHATBOT}/ecommerce.yml -DWORK=${CMAKE_CURRENT_BINARY_DIR}/chat-restart
  -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/chat_restart.cmake)
set_tests_properties(chatbot.conversations chatbot.restart PROPERTIES LABELS "bot;cli" TIMEOUT 600
  ENVIRONMENT "OMP_NUM_THREADS=2;OPENBLAS_NUM_THREADS=2")

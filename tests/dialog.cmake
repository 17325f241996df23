# The dialog manager (qiao_bot.h, sdk/bot, issue 19) on a tiny classifier
# trained at setup: bot files checked at load (every mistake refused naming
# its place), slot checks, the SQLite tracker store (versions, a stale write
# refused, expiry), handoff surviving a restart, bad arguments, and four
# threads' conversations kept apart.
qiao_test(NAME test_bot SOURCES unit/test_bot.c CASES good_file bad_files sqlite_store pause_restart_resume threads
  LABELS "bot" TIMEOUT 300)
target_link_libraries(test_bot PRIVATE PkgConfig::CJSON)

# `qiao chat`: usage.
cli_expect(NAME cli.chat.usage RC 2 ARGS chat STDERR "usage: qiao chat --bot")
set_tests_properties(cli.chat.usage PROPERTIES LABELS "cli;bot")

# libFuzzer: any bytes as a bot file (JSON or YAML) checked against a fixed
# classifier's labels; what reads must reference only what exists, and
# every slot check runs on the bytes as a message.
qiao_fuzz(NAME fuzz_bot_file SOURCES ${PROJECT_SOURCE_DIR}/sdk/bot/bot_file.c ${PROJECT_SOURCE_DIR}/sdk/bot/check.c
  ${PROJECT_SOURCE_DIR}/sdk/core/status.c ${PROJECT_SOURCE_DIR}/sdk/core/utf8.c
  LIBS PkgConfig::CJSON PkgConfig::YAML)

# The layers of docs/design.md ("Layers") are enforced by include paths
# (sdk/CMakeLists.txt): each layer compiles with its own folders and those
# below it. A probe is a source of one #include compiled with one layer's
# include path. Those that reach up a layer must fail to build (WILL_FAIL);
# the controls, a header of the same layer or one below, must build, so a
# probe fails for its include and not for anything else. Each builds its
# own target in this build tree, one at a time (RESOURCE_LOCK).
function(layering_probe name layer header)
  cmake_parse_arguments(P "MUST_FAIL" "" "" ${ARGN})
  set(src ${CMAKE_CURRENT_BINARY_DIR}/layering/${name}.c)
  file(WRITE ${src} "#include \"${header}\"\nint layering_${name}(void);\nint layering_${name}(void) { return 0; }\n")
  add_library(layering_${name} OBJECT EXCLUDE_FROM_ALL ${src})
  target_link_libraries(layering_${name} PRIVATE qiao_layer_${layer}_includes qiao_warnings)
  add_test(NAME layering.${name} COMMAND ${CMAKE_COMMAND} --build ${PROJECT_BINARY_DIR} --target layering_${name})
  set(fail FALSE)
  if(P_MUST_FAIL)
    set(fail TRUE)
  endif()
  set_tests_properties(layering.${name} PROPERTIES WILL_FAIL ${fail} RESOURCE_LOCK qiao_build_tree
    LABELS layering TIMEOUT 120)
endfunction()

layering_probe(runtime_sees_runtime runtime "nn/nn.h")
layering_probe(runtime_cannot_see_inputs runtime "modalities/audio/audio.h" MUST_FAIL)
layering_probe(runtime_cannot_see_tokenizers runtime "tokenizers/tokenizer.h" MUST_FAIL)
layering_probe(runtime_cannot_see_models runtime "models/model.h" MUST_FAIL)
layering_probe(inputs_sees_runtime inputs "nn/nn.h")
layering_probe(inputs_sees_inputs inputs "tokenizers/tokenizer.h")
layering_probe(inputs_cannot_see_models inputs "models/embed.h" MUST_FAIL)
layering_probe(models_sees_inputs models "models/model.h")
# fusion sits between the inputs and the models: it sees the layers below
# (fusion/head.h uses sdk/nn) and never a model's header.
layering_probe(fusion_sees_fusion fusion "fusion/head.h")
layering_probe(fusion_cannot_see_models fusion "models/head.h" MUST_FAIL)
layering_probe(inputs_cannot_see_fusion inputs "fusion/head.h" MUST_FAIL)
# The dialog manager is the roof: it sees what is below, nothing below sees it.
layering_probe(bot_sees_bot bot "bot/bot.h")
layering_probe(api_cannot_see_bot api "bot/bot.h" MUST_FAIL)

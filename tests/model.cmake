# The model container (models/model.c): save/load round trips, the embedded
# tokenizer, the shipped base size limit and bad model files.
qiao_test(NAME test_model SOURCES unit/test_model.c
  CASES roundtrip_f32 roundtrip_bf16 with_tokenizer base_size bad_files deterministic config_errors
    tower_subsets token_sequences decoder_section space_prompts
  LABELS model TIMEOUT 120)

# libFuzzer target for the model config reader (tests/fuzz.cmake says why the
# parsers are compiled in): the container's reader, the towers' section
# parsers and the heads, and the VQA split reader (models/data/vqa_manifest.c)
# on the same JSON; the rest of the library is linked uninstrumented.
qiao_fuzz(NAME fuzz_model_config SOURCES ${PROJECT_SOURCE_DIR}/models/model.c ${PROJECT_SOURCE_DIR}/models/tower.c
  ${PROJECT_SOURCE_DIR}/models/data/vqa_manifest.c
  ${PROJECT_SOURCE_DIR}/fusion/head.c ${PROJECT_SOURCE_DIR}/fusion/fuser.c ${PROJECT_SOURCE_DIR}/fusion/cross.c
  ${PROJECT_SOURCE_DIR}/fusion/weighting.c ${PROJECT_SOURCE_DIR}/fusion/decoder.c
  ${PROJECT_SOURCE_DIR}/modalities/text/encoder.c
  ${PROJECT_SOURCE_DIR}/modalities/image/encoder.c ${PROJECT_SOURCE_DIR}/modalities/audio/encoder.c
  ${PROJECT_SOURCE_DIR}/sdk/nn/trunk.c ${PROJECT_SOURCE_DIR}/sdk/core/config.c ${PROJECT_SOURCE_DIR}/sdk/core/tensor.c
  LIBS qiao_static PkgConfig::CJSON LABELS model)

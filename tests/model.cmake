# The model container (models/model.c): save/load round trips, the embedded
# tokenizer, the shipped base size limit and bad model files.
qiao_test(NAME test_model SOURCES unit/test_model.c
  CASES roundtrip_f32 roundtrip_bf16 with_tokenizer base_size bad_files deterministic config_errors
    tower_subsets token_sequences
  LABELS model TIMEOUT 120)

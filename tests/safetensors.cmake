# The safetensors reader/writer and the public model-file API: round trips,
# atomic writes, and hostile files (truncated, overlapping, lying offsets,
# bad headers, thousands of mutated files), which must fail cleanly.
qiao_test(NAME test_safetensors SOURCES unit/test_safetensors.c
  CASES roundtrip_f32 roundtrip_half raw_entries atomic_write killed_writer stale_temporaries_swept truncated overlapping lying_offsets
        bad_header random_bytes missing_tensor public_api rewrite
  LABELS safetensors)

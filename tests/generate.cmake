# The generation search (models/generate.c): greedy, beam search with the
# GNMT length penalty, sampling with temperature and top-p, on toy decoders
# with a mock KV cache; exhaustive-search agreement, sampled frequencies
# (chi-square), streaming, cancelling, argument checks.
qiao_test(NAME test_generate SOURCES unit/test_generate.c
  CASES beam_beats_greedy beam_matches_exhaustive early_stop_same_answer length_penalty greedy_equivalents
        sample_frequencies sample_seeds callback_order cancel_midway streaming_text bad_arguments
        prompt_first_step step_failures max_len_stops
  LABELS generate TIMEOUT 120)

# Audio decoding, resampling and log-mel features (tests/unit/test_audio.c).
# The test makes FLAC/AIFF/MP3/AAC/Opus/MP4 files from the committed clips
# with the ffmpeg and sox command-line tools: both are required.
find_program(QIAO_FFMPEG_CLI ffmpeg)
find_program(QIAO_SOX_CLI sox)
if(NOT QIAO_FFMPEG_CLI OR NOT QIAO_SOX_CLI)
  message(WARNING "test_audio needs the ffmpeg and sox command-line tools; its format cases will fail")
endif()
qiao_test(NAME test_audio SOURCES unit/test_audio.c
  CASES test_decode_every_format test_memory_decode_equals_path test_downmix_stereo_is_channel_mean
        test_resample_8k_to_16k_keeps_sine test_resample_matches_torchaudio test_mel_matches_torchaudio
        test_mel_stream_equals_whole test_mel_short_and_empty test_params_validated test_bad_input test_corrupt_ogg_no_leak
        test_absurd_headers_refused test_wav_header_messages test_threads_decode_and_mel
  LABELS audio unit TIMEOUT 120)
find_package(Threads REQUIRED)
target_link_libraries(test_audio PRIVATE Threads::Threads)

# The `qiao mel` command, run as a user would (tests/cli/expect.cmake checks
# the exit code and output). Written out here because tests/cli.cmake, which
# defines cli_expect(), is included after this file.
function(audio_cli NAME RC ARGS STREAM REGEX)
  string(REPLACE ";" "|" args "${ARGS}")
  add_test(NAME ${NAME} COMMAND ${CMAKE_COMMAND} -DPROG=$<TARGET_FILE:qiao_cli> -DARGS=${args}
    -DEXPECT_RC=${RC} -DEXPECT_${STREAM}=${REGEX} -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/expect.cmake)
  set_tests_properties(${NAME} PROPERTIES LABELS "audio;cli" TIMEOUT 60)
endfunction()
set(QIAO_AUDIO_DATA ${CMAKE_CURRENT_SOURCE_DIR}/data/audio)
set(QIAO_AUDIO_OUT ${CMAKE_CURRENT_BINARY_DIR}/audio-cli)
file(MAKE_DIRECTORY ${QIAO_AUDIO_OUT})
audio_cli(cli.mel.info 0 "mel;--info;${QIAO_AUDIO_DATA}/esc10_1-110389-A.ogg" STDOUT
  "format: ogg/vorbis\nsample rate: 44100 Hz\nchannels: 1\nduration: 5\\.001 s")
audio_cli(cli.mel.npy 0 "mel;${QIAO_AUDIO_DATA}/fsdd_3_jackson_0.wav;-o;${QIAO_AUDIO_OUT}/fsdd.npy" STDOUT
  "49 frames x 80 mels")
audio_cli(cli.mel.n_mels 0 "mel;${QIAO_AUDIO_DATA}/fsdd_3_jackson_0.wav;--n-mels;40;-o;${QIAO_AUDIO_OUT}/fsdd40.npy"
  STDOUT "49 frames x 40 mels")
audio_cli(cli.mel.bad_file 1 "mel;${QIAO_AUDIO_DATA}/ATTRIBUTION.md;-o;${QIAO_AUDIO_OUT}/bad.npy" STDERR
  "format error: .*ATTRIBUTION\\.md")
audio_cli(cli.mel.missing 1 "mel;--info;${QIAO_AUDIO_DATA}/missing.wav" STDERR "I/O error|missing\\.wav")
audio_cli(cli.mel.usage 2 "mel;${QIAO_AUDIO_DATA}/fsdd_3_jackson_0.wav" STDERR "usage: qiao mel")

# libFuzzer targets (tests/fuzz.cmake): the audio sources are compiled into
# the fuzzer with its instrumentation; libsndfile and FFmpeg are linked as
# they are (not instrumented).
# The decoding and mel code only (not the encoder, which needs the nn layers
# and cJSON): named, not globbed, so a new file in the folder does not
# silently join the fuzzer. fuzz_audio_mel: the front end alone (from_pcm,
# resampling, both mel computers) with odd rates, channels and settings.
set(QIAO_FUZZ_AUDIO_SOURCES ${PROJECT_SOURCE_DIR}/modalities/audio/audio.c
  ${PROJECT_SOURCE_DIR}/modalities/audio/decode_sndfile.c ${PROJECT_SOURCE_DIR}/modalities/audio/decode_ffmpeg.c
  ${PROJECT_SOURCE_DIR}/modalities/audio/mel.c ${PROJECT_SOURCE_DIR}/modalities/media/ffmpeg.c
  ${PROJECT_SOURCE_DIR}/sdk/core/status.c ${PROJECT_SOURCE_DIR}/sdk/core/file.c ${PROJECT_SOURCE_DIR}/sdk/core/rng.c)
qiao_fuzz(NAME fuzz_audio SOURCES ${QIAO_FUZZ_AUDIO_SOURCES} LIBS PkgConfig::SNDFILE PkgConfig::FFMPEG)
qiao_fuzz(NAME fuzz_audio_mel SOURCES ${QIAO_FUZZ_AUDIO_SOURCES} LIBS PkgConfig::SNDFILE PkgConfig::FFMPEG)

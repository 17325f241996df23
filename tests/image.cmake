# Image decoding and preprocessing (modalities/image). The tests make PNG,
# BMP, GIF, TGA, WebP, TIFF and video files at run time with the ffmpeg CLI.
qiao_test(NAME test_image SOURCES unit/test_image.c LABELS image unit TIMEOUT 120
  CASES jpeg_matches_ffmpeg_decode lossless_formats_decode_exactly gif_first_frame_and_photo
        alpha_composited_gray_expanded memory_equals_file wrong_extension_is_sniffed
        video_frames_by_rate video_frames_by_count video_absurd_fps truncated_files_fail garbage_and_empty_fail
        over_pixel_limit_refused_early decode_on_four_threads center_crop_geometry letterbox_geometry
        extreme_aspect_ratios extreme_crop_matches_full_resize
        normalization_values patch_layout)
target_link_libraries(test_image PRIVATE pthread PkgConfig::FFMPEG)

# The CLI: --info, the .npy size of a patch tensor, and a bad file's message.
set(QIAO_IMAGE_PHOTO ${CMAKE_CURRENT_SOURCE_DIR}/data/image/000000126107.jpg)
add_test(NAME image.cli.info COMMAND qiao_cli image --info ${QIAO_IMAGE_PHOTO})
set_tests_properties(image.cli.info PROPERTIES LABELS "image;cli"
  PASS_REGULAR_EXPRESSION "format jpeg, width 640, height 480")
# (196, 768) float32 = 602112 data bytes after the 128-byte .npy header.
add_test(NAME image.cli.patches COMMAND sh -c
  "d=$(mktemp -d) && $<TARGET_FILE:qiao_cli> image '${QIAO_IMAGE_PHOTO}' --patch 16 -o $d/p.npy && test $(stat -c %s $d/p.npy) -eq 602240; rc=$?; rm -rf $d; exit $rc")
set_tests_properties(image.cli.patches PROPERTIES LABELS "image;cli")
add_test(NAME image.cli.bad_file COMMAND sh -c
  "f='${CMAKE_CURRENT_SOURCE_DIR}/data/image/LICENSE.txt'; out=$($<TARGET_FILE:qiao_cli> image --info \"$f\" 2>&1); rc=$?; echo \"$out\"; test $rc -eq 1 && echo \"$out\" | grep -qF \"format error: $f\"")
set_tests_properties(image.cli.bad_file PROPERTIES LABELS "image;cli")

# libFuzzer target (see tests/fuzz.cmake): the image sources are compiled
# into the fuzzer with its instrumentation; stb and FFmpeg are linked as the
# system builds them (uninstrumented, so coverage guides through our dispatch
# and limits, and ASan still checks every buffer we hand them or get back).
if(QIAO_FUZZ)
  # stb_image (compiled into decode_stb.c) does zero-length operations on a
  # NULL buffer for a PNG whose first IDAT chunk is empty (`idata + 0`,
  # `memcpy(NULL, p, 0)`): undefined in C, harmless in practice, and UBSan
  # stops there. Those two checks are off for stb's file (see also
  # sdk/CMakeLists.txt); every other UBSan and ASan check stays.
  set_source_files_properties(${PROJECT_SOURCE_DIR}/modalities/image/decode_stb.c PROPERTIES
    COMPILE_OPTIONS "-fno-sanitize=pointer-overflow;-fno-sanitize=nonnull-attribute")
endif()
# fuzz_image_preprocess: preprocessing at model sizes (64..448) with extreme
# aspect ratios and the real pixel limit.
set(QIAO_FUZZ_IMAGE_SOURCES
  ${PROJECT_SOURCE_DIR}/modalities/image/image.c ${PROJECT_SOURCE_DIR}/modalities/image/decode_stb.c
  ${PROJECT_SOURCE_DIR}/modalities/image/decode_ffmpeg.c ${PROJECT_SOURCE_DIR}/modalities/image/preprocess.c
  ${PROJECT_SOURCE_DIR}/modalities/media/ffmpeg.c ${PROJECT_SOURCE_DIR}/sdk/core/status.c
  ${PROJECT_SOURCE_DIR}/sdk/core/file.c ${PROJECT_SOURCE_DIR}/sdk/core/rng.c)
qiao_fuzz(NAME fuzz_image SOURCES ${QIAO_FUZZ_IMAGE_SOURCES} LIBS PkgConfig::STB PkgConfig::FFMPEG pthread)
qiao_fuzz(NAME fuzz_image_preprocess SOURCES ${QIAO_FUZZ_IMAGE_SOURCES} LIBS PkgConfig::STB PkgConfig::FFMPEG pthread)

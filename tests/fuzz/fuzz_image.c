/* tests/fuzz/fuzz_image.c - libFuzzer target: decode arbitrary bytes as an
 * image from memory, through the sniffing dispatch (stb_image or FFmpeg) and
 * through FFmpeg alone, then preprocess what decoded. A small pixel limit
 * keeps a header claiming a huge image from exhausting memory: it must be
 * refused, not allocated. */
#include <stddef.h>
#include <stdint.h>

#include "modalities/image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qi_decode_opts o = {.max_pixels = 1 << 20, .max_file_bytes = 1 << 22, .background = {255, 255, 255}};
    qiao_image *img = NULL;
    if (qi_decode_memory(data, size, "<fuzz>", &o, QI_DECODER_AUTO, &img) == QIAO_OK) {
        qiao_image_preprocess_params p = qiao_image_preprocess_default_params();
        p.size = 16;
        float out[3 * 16 * 16];
        if (qiao_image_patches(img, &p, 4, out, sizeof out / sizeof out[0]) != QIAO_OK) __builtin_trap();
    }
    qiao_image_free(img);
    img = NULL;
    if (size > 0) (void)qi_decode_memory(data, size, "<fuzz>", &o, QI_DECODER_FFMPEG, &img);
    qiao_image_free(img);
    return 0;
}

/* embed.c - the smallest useful qiao program: put a text and an image into
 * the same embedding space and ask how close they are.
 *
 *     ./embed model.safetensors "一只猫在沙发上睡觉" cat.jpg
 *
 * Build: see README.md in this folder (CMake or pkg-config). */
#include <qiao.h>
#include <stdio.h>
#include <stdlib.h>

/* Every qiao call returns a status; the detail of a failure is kept per
 * thread in qiao_last_error(). */
static int fail(const char *what, qiao_status st) {
    fprintf(stderr, "%s: %s: %s\n", what, qiao_status_str(st), qiao_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.safetensors TEXT IMAGE\n", argv[0]);
        return 2;
    }
    /* A model is read-only once loaded: one copy can serve every thread. */
    qiao_model *model = NULL;
    qiao_status st = qiao_model_load(argv[1], &model);
    if (st != QIAO_OK) return fail(argv[1], st);

    /* A session holds the scratch memory of embedding; use one per thread.
     * The defaults use all cores. */
    qiao_session *session = NULL;
    st = qiao_session_new(model, NULL, &session);
    if (st != QIAO_OK) {
        qiao_model_free(model);
        return fail("session", st);
    }

    /* Each embedding is qiao_model_dim() floats (1024), L2-normalized. The
     * caller owns the output and says how many floats it holds. */
    const size_t dim = (size_t)qiao_model_dim(model);
    float *text = malloc(dim * sizeof(float));
    float *image = malloc(dim * sizeof(float));
    int rc = 1;
    if (!text || !image) {
        fprintf(stderr, "out of memory\n");
    } else if ((st = qiao_embed_text(session, argv[2], text, dim)) != QIAO_OK) {
        fail("text", st);
    } else if ((st = qiao_embed_image_file(session, argv[3], image, dim)) != QIAO_OK) {
        fail(argv[3], st);
    } else {
        /* Same space, whatever the modality: cosine says how well they match. */
        printf("model %s, %zu dims\n", qiao_model_name(model), dim);
        printf("cosine(text, image) = %.4f\n", qiao_cosine(text, image, dim));
        rc = 0;
    }

    /* Free sessions before their model. */
    free(text);
    free(image);
    qiao_session_free(session);
    qiao_model_free(model);
    return rc;
}

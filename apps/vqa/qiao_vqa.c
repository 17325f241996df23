/* apps/vqa/qiao_vqa.c - a sample application of the public API (qiao.h
 * only): an interactive loop that opens a picture and answers questions
 * about it, typed or spoken, in Chinese or English.
 *
 *   qiao-vqa models/qiao-vqa.safetensors [PICTURE]
 *   > open photo.png
 *   > How many red shapes are there?
 *   > 左上角是什么颜色？
 *   > say question.wav
 *   > both question.wav Is there a blue star?
 *   > quit
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qiao.h>

static void print_answer(const qiao_vqa_answer *a) {
    printf("  %s  (%.1f%%)", a->best.text, 100.0 * a->best.p);
    for (int k = 1; k < a->n_top; k++) printf("   %d. %s %.1f%%", k + 1, a->top[k].text, 100.0 * a->top[k].p);
    printf("\n  weights: typed %.2f, picture %.2f, spoken %.2f\n", a->w_text, a->w_image, a->w_audio);
}

static void help(void) {
    printf("  open PICTURE           use this picture\n"
           "  say RECORDING          ask a spoken question (WAV, FLAC, MP3...)\n"
           "  both RECORDING TEXT    ask it spoken and typed at once\n"
           "  anything else          a typed question (Chinese or English)\n"
           "  quit                   leave\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s VQA-MODEL.safetensors [PICTURE]\n", argv[0]);
        return 2;
    }
    qiao_model *model = NULL;
    qiao_session *session = NULL;
    qiao_status st = qiao_model_load(argv[1], &model);
    if (st == QIAO_OK && !qiao_model_can_answer(model)) {
        fprintf(stderr, "%s answers no questions: it is an embedding model\n", argv[1]);
        qiao_model_free(model);
        return 1;
    }
    if (st == QIAO_OK) st = qiao_session_new(model, NULL, &session);
    if (st != QIAO_OK) {
        fprintf(stderr, "%s: %s\n", qiao_status_str(st), qiao_last_error());
        qiao_model_free(model);
        return 1;
    }
    qiao_image *picture = NULL;
    if (argc == 3 && qiao_image_decode_file(argv[2], NULL, &picture) != QIAO_OK)
        fprintf(stderr, "%s\n", qiao_last_error());
    printf("qiao %s, model %s. Type help for the commands.\n", qiao_version(), qiao_model_name(model));
    char line[4096];
    for (;;) {
        printf("> ");
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) break;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (!strcmp(line, "quit") || !strcmp(line, "exit")) break;
        if (!strcmp(line, "help")) {
            help();
            continue;
        }
        if (!strncmp(line, "open ", 5)) {
            qiao_image *next = NULL;
            if (qiao_image_decode_file(line + 5, NULL, &next) != QIAO_OK) {
                printf("  %s\n", qiao_last_error());
                continue;
            }
            qiao_image_free(picture);
            picture = next;
            printf("  %lld x %lld pixels\n", (long long)qiao_image_width(picture), (long long)qiao_image_height(picture));
            continue;
        }
        if (!picture) {
            printf("  open a picture first (open PICTURE)\n");
            continue;
        }
        const char *text = line, *recording = NULL;
        char path[4096];
        if (!strncmp(line, "say ", 4) || !strncmp(line, "both ", 5)) {
            const char *rest = line + (line[0] == 's' ? 4 : 5);
            size_t n = strcspn(rest, " ");
            snprintf(path, sizeof path, "%.*s", (int)n, rest);
            recording = path;
            text = line[0] == 's' ? NULL : rest + n + (rest[n] == ' ');
        }
        qiao_audio *audio = NULL;
        if (recording && qiao_audio_decode_file(recording, NULL, &audio) != QIAO_OK) {
            printf("  %s\n", qiao_last_error());
            continue;
        }
        qiao_vqa_answer a;
        if (qiao_vqa_ask(session, picture, text, audio, NULL, &a) == QIAO_OK)
            print_answer(&a);
        else
            printf("  %s\n", qiao_last_error());
        qiao_audio_free(audio);
    }
    qiao_image_free(picture);
    qiao_session_free(session);
    qiao_model_free(model);
    return 0;
}

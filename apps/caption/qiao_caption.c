/* apps/caption/qiao_caption.c - a sample application of the public API
 * (qiao.h only): captions every picture in a folder, in Chinese and English
 * or one of them, into a JSON file and an HTML contact sheet (each picture
 * as a thumbnail, by a path relative to the page, with its captions).
 *
 *   qiao-caption models/qiao-caption.safetensors photos --json photos.json --html photos.html
 *   qiao-caption CAPTION-MODEL DIR [--lang zh|en] [--beam K] [--json OUT.json] [--html OUT.html]
 *
 * The folder's own files are read (not its subfolders; names starting with
 * '.' are skipped) in name order; a file the image decoder does not take is
 * listed under "skipped" with the reason. Captions stream to the terminal as
 * they are written. Ctrl-C stops the caption in progress (the API's cancel
 * callback) and writes what is done, marked incomplete. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <qiao.h>

#define MAX_LANGS 2

typedef struct entry {
    char *name; /* the file's name in the folder */
    char *path; /* its absolute path */
    int64_t width, height;
    int ok;      /* captioned (else skipped, with error) */
    char *error; /* why it was skipped */
    qiao_caption_result cap[MAX_LANGS];
} entry;

static volatile sig_atomic_t g_stop = 0;

static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

static int cancel_requested(void *user_data) {
    (void)user_data;
    return g_stop != 0;
}

/* Streams the caption to stdout as the model writes it. */
static void print_token(const qiao_caption_token *t, void *user_data) {
    (void)user_data;
    fputs(t->text + t->new_from, stdout);
    fflush(stdout);
}

static void usage(FILE *f, const char *prog) {
    fprintf(f,
            "usage: %s CAPTION-MODEL DIR [--lang zh|en] [--beam K] [--json OUT.json] [--html OUT.html]\n"
            "  Captions every picture in DIR (both languages unless --lang is given; greedy, or K beams)\n"
            "  into a JSON file and/or an HTML contact sheet. At least one of --json and --html.\n",
            prog);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The folder's regular, non-hidden files, sorted; NULL on failure (errno). */
static char **list_folder(const char *dir, size_t *n_out) {
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[PATH_MAX];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) break;
            names = grown;
        }
        if (!(names[n] = dup_str(e->d_name))) break;
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, by_name);
    *n_out = n;
    return names ? names : calloc(1, sizeof *names);
}

/* Bytes of the well-formed UTF-8 character at s (1..4), or 0. */
static size_t utf8_char(const unsigned char *s) {
    if (s[0] < 0x80) return 1;
    size_t n = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 && s[0] <= 0xDF ? 2 : 0;
    if (!n) return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (n == 3 && ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0))) return 0; /* overlong, surrogate */
    if (n == 4 && ((s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90)))
        return 0; /* overlong, > U+10FFFF */
    return n;
}

/* A JSON string; bytes that are not UTF-8 (a file name may hold any) become U+FFFD. */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_char(p);
        if (!n) {
            fputs("\\ufffd", f);
            p++;
        } else if (*p == '"' || *p == '\\') {
            fputc('\\', f), fputc(*p++, f);
        } else if (*p < 0x20) {
            fprintf(f, "\\u%04x", *p++);
        } else {
            fwrite(p, 1, n, f);
            p += n;
        }
    }
    fputc('"', f);
}

/* Text in HTML; bytes that are not UTF-8 become U+FFFD. */
static void html_text(FILE *f, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_char(p);
        if (!n)
            fputs("\xEF\xBF\xBD", f), p++;
        else if (*p == '&')
            fputs("&amp;", f), p++;
        else if (*p == '<')
            fputs("&lt;", f), p++;
        else if (*p == '>')
            fputs("&gt;", f), p++;
        else if (*p == '"')
            fputs("&quot;", f), p++;
        else if (*p == '\'')
            fputs("&#39;", f), p++;
        else
            fwrite(p, 1, n, f), p += n;
    }
}

/* A path as a URL path: every byte but unreserved ones and '/' percent-encoded. */
static void url_path(FILE *f, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._~/", *p))
            fputc(*p, f);
        else
            fprintf(f, "%%%02X", *p);
    }
}

/* `target` (an absolute path) relative to the folder `from` (absolute, as
 * realpath gives it), into out. */
static void relative_path(const char *from, const char *target, char *out, size_t size) {
    size_t common = 0, i = 0; /* bytes of the shared folders, each with its '/' */
    for (; from[i] && from[i] == target[i]; i++)
        if (from[i] == '/') common = i + 1;
    if (!from[i] && target[i] == '/') common = i + 1; /* target is under from */
    const char *rest = common < strlen(from) ? from + common : "";
    size_t len = 0;
    out[0] = 0;
    for (const char *p = rest; *p && len < size; p++) /* one "../" per folder of from past the shared ones */
        if (p == rest || p[-1] == '/') len += (size_t)snprintf(out + len, size - len, "../");
    if (len < size) snprintf(out + len, size - len, "%s", target + common);
}

static int write_json(const char *path, const char *model_path, const qiao_model *model, const char *dir,
                      const char *const *langs, int n_langs, int beam, const entry *es, size_t n, int complete) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs("{\n  \"model\": ", f);
    json_str(f, model_path);
    fputs(",\n  \"model_name\": ", f);
    json_str(f, qiao_model_name(model));
    fputs(",\n  \"folder\": ", f);
    json_str(f, dir);
    fprintf(f, ",\n  \"search\": \"%s\",\n  \"beam\": %d,\n  \"complete\": %s,\n  \"images\": [",
            beam > 1 ? "beam" : "greedy", beam, complete ? "true" : "false");
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        if (!es[i].ok) continue;
        fputs(first ? "\n    {\"file\": " : ",\n    {\"file\": ", f);
        first = 0;
        json_str(f, es[i].name);
        fputs(", \"path\": ", f);
        json_str(f, es[i].path);
        fprintf(f, ", \"width\": %lld, \"height\": %lld, \"captions\": {", (long long)es[i].width,
                (long long)es[i].height);
        for (int l = 0; l < n_langs; l++) {
            const qiao_caption_result *c = &es[i].cap[l];
            fprintf(f, "%s\"%s\": {\"text\": ", l ? ", " : "", langs[l]);
            json_str(f, c->text);
            fprintf(f, ", \"logprob\": %.4f, \"pieces\": %zu, \"ended\": %s}", c->logprob, c->n_pieces,
                    c->ended ? "true" : "false");
        }
        fputs("}}", f);
    }
    fputs(first ? "],\n  \"skipped\": [" : "\n  ],\n  \"skipped\": [", f);
    first = 1;
    for (size_t i = 0; i < n; i++) {
        if (es[i].ok || !es[i].error) continue;
        fputs(first ? "\n    {\"file\": " : ",\n    {\"file\": ", f);
        first = 0;
        json_str(f, es[i].name);
        fputs(", \"error\": ", f);
        json_str(f, es[i].error);
        fputc('}', f);
    }
    fputs(first ? "]\n}\n" : "\n  ]\n}\n", f);
    const int bad = ferror(f);
    return fclose(f) == 0 && !bad ? 0 : -1;
}

static int write_html(const char *path, const char *dir, const char *const *langs, int n_langs, const entry *es,
                      size_t n, int complete) {
    /* the page's folder, to reach the pictures by relative paths */
    char page_dir[PATH_MAX], buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    if (slash == buf)
        buf[1] = 0;
    else if (slash)
        *slash = 0;
    else
        snprintf(buf, sizeof buf, ".");
    if (!realpath(buf, page_dir)) return -1;
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Captions: ", f);
    html_text(f, dir);
    fputs("</title>\n<style>\n"
          "body { font-family: system-ui, sans-serif; margin: 24px; background: #f6f6f4; color: #222; }\n"
          "h1 { font-size: 20px; font-weight: 600; }\n"
          ".sheet { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 16px; }\n"
          "figure { margin: 0; background: #fff; border-radius: 8px; box-shadow: 0 1px 3px rgba(0,0,0,.15);"
          " padding: 10px; }\n"
          "figure img { display: block; width: 100%; height: 220px; object-fit: contain; background: #eee;"
          " border-radius: 4px; }\n"
          ".file { font-size: 12px; color: #666; margin: 8px 0 4px; word-break: break-all; }\n"
          ".cap { margin: 4px 0; font-size: 15px; line-height: 1.4; }\n"
          ".cap .lang { display: inline-block; min-width: 2.2em; font-size: 11px; color: #fff; background: #58a;"
          " border-radius: 3px; text-align: center; margin-right: 6px; }\n"
          ".cut { color: #a60; font-size: 11px; }\n"
          ".note { color: #a60; }\n"
          "</style>\n</head>\n<body>\n<h1>",
          f);
    size_t done = 0;
    for (size_t i = 0; i < n; i++) done += es[i].ok != 0;
    fprintf(f, "%zu picture%s in ", done, done == 1 ? "" : "s");
    html_text(f, dir);
    fputs("</h1>\n", f);
    if (!complete) fputs("<p class=\"note\">Stopped before the end: the captions below are those written.</p>\n", f);
    fputs("<div class=\"sheet\">\n", f);
    for (size_t i = 0; i < n; i++) {
        if (!es[i].ok) continue;
        char rel[3 * PATH_MAX];
        relative_path(page_dir, es[i].path, rel, sizeof rel);
        fputs("<figure>\n<img loading=\"lazy\" src=\"", f);
        url_path(f, rel);
        fputs("\" alt=\"", f);
        html_text(f, es[i].cap[0].text);
        fputs("\">\n<figcaption>\n<div class=\"file\">", f);
        html_text(f, es[i].name);
        fprintf(f, " &middot; %lld &times; %lld</div>\n", (long long)es[i].width, (long long)es[i].height);
        for (int l = 0; l < n_langs; l++) {
            const qiao_caption_result *c = &es[i].cap[l];
            fprintf(f, "<p class=\"cap\" lang=\"%s\"><span class=\"lang\">%s</span>",
                    strcmp(langs[l], "zh") ? "en" : "zh", langs[l]);
            html_text(f, c->text);
            if (!c->ended) fputs(" <span class=\"cut\">(cut at the length limit)</span>", f);
            fputs("</p>\n", f);
        }
        fputs("</figcaption>\n</figure>\n", f);
    }
    fputs("</div>\n</body>\n</html>\n", f);
    const int bad = ferror(f);
    return fclose(f) == 0 && !bad ? 0 : -1;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *dir = NULL, *json_path = NULL, *html_path = NULL, *lang = NULL;
    int beam = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout, argv[0]);
            return 0;
        }
        if (a[0] == '-' && a[1] == '-') {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: %s needs a value\n", argv[0], a);
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--lang")) {
                if (strcmp(v, "zh") && strcmp(v, "en")) {
                    fprintf(stderr, "%s: --lang is zh or en, not %s\n", argv[0], v);
                    return 2;
                }
                lang = v;
            } else if (!strcmp(a, "--beam")) {
                char *end = NULL;
                long k = strtol(v, &end, 10);
                if (!*v || *end || k < 1 || k > QIAO_CAPTION_MAX_BEAM) {
                    fprintf(stderr, "%s: --beam needs a number of beams, 1..%d\n", argv[0], QIAO_CAPTION_MAX_BEAM);
                    return 2;
                }
                beam = (int)k;
            } else if (!strcmp(a, "--json")) {
                json_path = v;
            } else if (!strcmp(a, "--html")) {
                html_path = v;
            } else {
                fprintf(stderr, "%s: unknown option %s\n", argv[0], a);
                usage(stderr, argv[0]);
                return 2;
            }
        } else if (!model_path) {
            model_path = a;
        } else if (!dir) {
            dir = a;
        } else {
            fprintf(stderr, "%s: one model and one folder, not also %s\n", argv[0], a);
            return 2;
        }
    }
    if (!model_path || !dir || (!json_path && !html_path)) {
        usage(stderr, argv[0]);
        return 2;
    }
    const char *langs[MAX_LANGS] = {"zh", "en"};
    int n_langs = 2;
    if (lang) langs[0] = lang, n_langs = 1;

    qiao_model *model = NULL;
    qiao_session *session = NULL;
    qiao_status st = qiao_model_load(model_path, &model);
    if (st == QIAO_OK && !qiao_model_can_caption(model)) {
        fprintf(stderr, "%s writes no captions: it has no decoder (an embedding or VQA model?)\n", model_path);
        qiao_model_free(model);
        return 1;
    }
    if (st == QIAO_OK) st = qiao_session_new(model, NULL, &session);
    if (st != QIAO_OK) {
        fprintf(stderr, "%s: %s\n", qiao_status_str(st), qiao_last_error());
        qiao_model_free(model);
        return 1;
    }
    size_t n = 0;
    char **names = list_folder(dir, &n);
    if (!names) {
        perror(dir);
        qiao_session_free(session);
        qiao_model_free(model);
        return 1;
    }
    entry *es = calloc(n ? n : 1, sizeof *es);
    if (!es) {
        fprintf(stderr, "out of memory\n");
        for (size_t i = 0; i < n; i++) free(names[i]);
        free(names);
        qiao_session_free(session);
        qiao_model_free(model);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);

    qiao_caption_params cp = qiao_caption_default_params();
    if (beam > 1) cp.strategy = QIAO_CAPTION_BEAM, cp.beam_size = beam;
    cp.on_token = print_token;
    cp.cancel = cancel_requested;
    int complete = 1, failures = 0;
    size_t n_pictures = 0, n_skipped = 0;
    for (size_t i = 0; i < n && complete; i++) {
        entry *e = &es[i];
        char path[PATH_MAX], abs[PATH_MAX];
        e->name = names[i];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        e->path = dup_str(realpath(path, abs) ? abs : path);
        qiao_image *img = NULL;
        if (qiao_image_decode_file(path, NULL, &img) != QIAO_OK) {
            e->error = dup_str(qiao_last_error()); /* not a picture: listed, not fatal */
            n_skipped++;
            continue;
        }
        e->width = qiao_image_width(img), e->height = qiao_image_height(img);
        printf("[%zu/%zu] %s\n", i + 1, n, names[i]);
        for (int l = 0; l < n_langs; l++) {
            cp.lang = langs[l];
            printf("  %s: ", langs[l]);
            fflush(stdout);
            st = qiao_caption_image(session, img, &cp, &e->cap[l]);
            putchar('\n');
            if (st != QIAO_OK) break;
        }
        qiao_image_free(img);
        if (st == QIAO_ERR_CANCELLED) {
            complete = 0;
            for (int l = 0; l < n_langs; l++) qiao_caption_result_free(&e->cap[l]);
        } else if (st != QIAO_OK) {
            e->error = dup_str(qiao_last_error());
            fprintf(stderr, "  %s: %s\n", qiao_status_str(st), e->error);
            failures++;
        } else {
            e->ok = 1;
            n_pictures++;
        }
    }
    if (!complete) fprintf(stderr, "stopped: writing the %zu picture(s) captioned so far\n", n_pictures);
    int rc = complete && !failures ? 0 : 1;
    if (json_path && write_json(json_path, model_path, model, dir, langs, n_langs, beam, es, n, complete) != 0) {
        perror(json_path);
        rc = 1;
    }
    if (html_path && write_html(html_path, dir, langs, n_langs, es, n, complete) != 0) {
        perror(html_path);
        rc = 1;
    }
    printf("%zu picture(s) captioned, %zu other file(s) skipped%s%s%s%s\n", n_pictures, n_skipped,
           json_path ? "; " : "", json_path ? json_path : "", html_path ? "; " : "", html_path ? html_path : "");
    for (size_t i = 0; i < n; i++) {
        for (int l = 0; l < MAX_LANGS; l++) qiao_caption_result_free(&es[i].cap[l]);
        free(es[i].path), free(es[i].error), free(names[i]);
    }
    free(es);
    free(names);
    qiao_session_free(session);
    qiao_model_free(model);
    return rc;
}

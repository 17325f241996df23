/* qiao info FILE.safetensors [--json]: what a model file holds (tensors,
 * dtypes, shapes, parameter count, metadata), through the public API only.
 * The table form is for people (long metadata shortened, one line each);
 * --json prints everything in full for scripts. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"

/* Metadata values longer than this are shortened in the table form. */
#define SHORT_VALUE 60
/* Tensor names wider than this do not widen the name column further. */
#define NAME_COLUMN_MAX 48

static void usage(FILE *f) { fprintf(f, "usage: qiao info FILE.safetensors [--json]\n"); }

static int64_t numel_of(const qiao_tensor_info *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i]; /* the library checked it fits */
    return n;
}

static void shape_str(char *buf, size_t cap, const qiao_tensor_info *t) {
    size_t n = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, ")");
}

/* Writes s as a JSON string literal. The file's strings are valid UTF-8
 * (the library checks), so only quotes, backslashes and control characters
 * need escaping. */
static void json_str(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '\n': fputs("\\n", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        default:
            if (*p < 0x20) printf("\\u%04x", *p);
            else putchar(*p);
        }
    }
    putchar('"');
}

/* Prints at most `max` bytes of s on one line: control characters shown as
 * escapes, the cut made on a UTF-8 character boundary, "..." when cut. */
static void short_str(const char *s, size_t max) {
    size_t len = strlen(s);
    size_t cut = len <= max ? len : max - 3;
    while (cut < len && cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80) cut--;
    for (size_t i = 0; i < cut; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c < 0x20 || c == 0x7F) printf("\\x%02x", c);
        else putchar(c);
    }
    if (cut < len) printf("... (%zu bytes)", len);
}

static void human_count(char *buf, size_t cap, int64_t n) {
    if (n >= 1000000000) snprintf(buf, cap, " (%.2fB)", (double)n / 1e9);
    else if (n >= 1000000) snprintf(buf, cap, " (%.2fM)", (double)n / 1e6);
    else if (n >= 1000) snprintf(buf, cap, " (%.1fK)", (double)n / 1e3);
    else buf[0] = '\0';
}

static int print_json(const char *path, const qiao_model_file *f) {
    size_t n = qiao_model_file_tensor_count(f);
    printf("{\n  \"file\": ");
    json_str(path);
    printf(",\n  \"tensors\": [");
    for (size_t i = 0; i < n; i++) {
        qiao_tensor_info t;
        qiao_status st = qiao_model_file_tensor(f, i, &t);
        if (st != QIAO_OK) return cli_fail(st);
        printf("%s\n    {\"name\": ", i ? "," : "");
        json_str(t.name);
        printf(", \"dtype\": \"%s\", \"shape\": [", qiao_dtype_str(t.dtype));
        for (int k = 0; k < t.ndim; k++) printf("%s%lld", k ? ", " : "", (long long)t.shape[k]);
        printf("], \"numel\": %lld, \"nbytes\": %zu}", (long long)numel_of(&t), t.nbytes);
    }
    printf("%s],\n  \"parameters\": %lld,\n  \"metadata\": {", n ? "\n  " : "",
           (long long)qiao_model_file_param_count(f));
    size_t m = qiao_model_file_metadata_count(f);
    for (size_t i = 0; i < m; i++) {
        const char *k = qiao_model_file_metadata_key(f, i);
        printf("%s\n    ", i ? "," : "");
        json_str(k);
        printf(": ");
        json_str(qiao_model_file_metadata(f, k));
    }
    printf("%s}\n}\n", m ? "\n  " : "");
    return 0;
}

/* The scalar keys of a JSON object on one line, "k=v" (a list as its
 * length, objects left out). */
static void print_scalars(const char *label, const cJSON *obj) {
    printf("  %-9s", label);
    for (const cJSON *it = obj->child; it; it = it->next) {
        if (cJSON_IsNumber(it)) printf(" %s=%g", it->string, it->valuedouble);
        else if (cJSON_IsString(it)) printf(" %s=%.40s", it->string, it->valuestring);
        else if (cJSON_IsBool(it)) printf(" %s=%s", it->string, cJSON_IsTrue(it) ? "true" : "false");
        else if (cJSON_IsArray(it)) printf(" %s=[%d]", it->string, cJSON_GetArraySize(it));
        else if (cJSON_IsNull(it)) printf(" %s=null", it->string);
    }
    putchar('\n');
}

/* What a model is, at a glance, from a JSON metadata value: its top-level
 * scalars, then one line per section (a converted BERT says arch=bert,
 * eps=1e-12, pool=first under "text"). */
static void print_sections(const char *label, const char *json) {
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    if (cJSON_IsObject(root)) {
        printf("%s:\n", label);
        print_scalars("", root);
        for (const cJSON *sec = root->child; sec; sec = sec->next)
            if (cJSON_IsObject(sec)) print_scalars(sec->string, sec);
    }
    cJSON_Delete(root);
}

/* How a model's vectors are used (models/model.h): its embedding space (the
 * config's "space", else its name) and the prompts it wants before a
 * query or a document, quoted so a trailing space shows. An index file
 * says the space it was built in. */
static void print_space(const char *config, const char *index) {
    cJSON *root = cJSON_Parse(config ? config : index ? index : "");
    if (cJSON_IsObject(root)) {
        const char *space = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "space"));
        const cJSON *named = config ? root : cJSON_GetObjectItemCaseSensitive(root, "fingerprint");
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(named, "name"));
        if (space) printf("embedding space: %s\n", space);
        else if (name) printf("embedding space: %s (the model's name; the config names none)\n", name);
        const cJSON *prompts = config ? cJSON_GetObjectItemCaseSensitive(root, "prompts") : NULL;
        for (const cJSON *it = prompts ? prompts->child : NULL; it; it = it->next) {
            if (!cJSON_IsString(it)) continue;
            printf("prompt %s: ", it->string);
            json_str(it->valuestring);
            putchar('\n');
        }
    }
    cJSON_Delete(root);
}

static int print_table(const char *path, const qiao_model_file *f) {
    size_t n = qiao_model_file_tensor_count(f);
    int width = 4; /* "name" */
    for (size_t i = 0; i < n; i++) {
        qiao_tensor_info t;
        qiao_status st = qiao_model_file_tensor(f, i, &t);
        if (st != QIAO_OK) return cli_fail(st);
        size_t len = strlen(t.name);
        if (len > (size_t)width) width = len > NAME_COLUMN_MAX ? NAME_COLUMN_MAX : (int)len;
    }
    printf("%s: %zu tensor%s\n\n", path, n, n == 1 ? "" : "s");
    if (n > 0) printf("  %-*s  %-5s  %-20s  %12s\n", width, "name", "dtype", "shape", "numel");
    size_t data_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        qiao_tensor_info t;
        qiao_status st = qiao_model_file_tensor(f, i, &t);
        if (st != QIAO_OK) return cli_fail(st);
        char shape[200];
        shape_str(shape, sizeof shape, &t);
        printf("  %-*s  %-5s  %-20s  %12lld\n", width, t.name, qiao_dtype_str(t.dtype), shape,
               (long long)numel_of(&t));
        data_bytes += t.nbytes;
    }
    int64_t params = qiao_model_file_param_count(f);
    char human[32];
    human_count(human, sizeof human, params);
    printf("%sparameters: %lld%s (elements of floating-point tensors; %zu data bytes)\n", n ? "\n" : "",
           (long long)params, human, data_bytes);
    size_t m = qiao_model_file_metadata_count(f);
    printf("metadata: %zu key%s\n", m, m == 1 ? "" : "s");
    for (size_t i = 0; i < m; i++) {
        const char *k = qiao_model_file_metadata_key(f, i);
        printf("  ");
        short_str(k, SHORT_VALUE);
        printf(" = ");
        short_str(qiao_model_file_metadata(f, k), SHORT_VALUE);
        putchar('\n');
    }
    print_sections("architecture", qiao_model_file_metadata(f, "qiao.config"));
    print_sections("tokenizer", qiao_model_file_metadata(f, "tokenizer.config"));
    print_space(qiao_model_file_metadata(f, "qiao.config"), qiao_model_file_metadata(f, "qiao.index"));
    return 0;
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "qiao info: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (path) {
            fprintf(stderr, "qiao info: one file at a time ('%s' and '%s')\n", path, argv[i]);
            usage(stderr);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    qiao_model_file *f = NULL;
    qiao_status st = qiao_model_file_open(path, &f);
    if (st != QIAO_OK) return cli_fail(st);
    int rc = json ? print_json(path, f) : print_table(path, f);
    qiao_model_file_close(f);
    if (rc == 0 && fflush(stdout) != 0) {
        perror("qiao info: stdout");
        rc = 1;
    }
    return rc;
}

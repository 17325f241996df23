/* qiao dataset intent convert|ecommerce|check: intent corpora to one JSONL
 * format (datasets/intent/intent.h). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "intent/intent.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: qiao dataset intent convert --from clinc150|banking77|xsid|crosswoz --in DIR --out DIR\n"
            "                                   [--lang zh|en]   (xsid only; default zh)\n"
            "       qiao dataset intent ecommerce --source FILE.tsv --out DIR\n"
            "       qiao dataset intent check FILE.jsonl...\n"
            "Writes DIR/{train,val,test}.jsonl: {\"text\", \"intent\", [\"intents\"], [\"entities\": [{\"start\",\n"
            "\"end\", \"type\", \"value\"}]]}, start/end byte offsets into the UTF-8 text.\n");
}

static void print_stats(const char *out, const qint_stats *s) {
    printf("%s:", out);
    for (int i = 0; i < QINT_NSPLITS; i++)
        if (s->examples[i]) printf(" %s %lld,", qint_split_name(i), (long long)s->examples[i]);
    printf(" %lld intents", (long long)s->labels);
    if (s->multi_label) printf(", %lld multi-label", (long long)s->multi_label);
    if (s->entities || s->entities_dropped) printf(", %lld entities", (long long)s->entities);
    if (s->entities_dropped) printf(" (%lld values not in the text)", (long long)s->entities_dropped);
    printf("\n");
}

int cmd_dataset_intent(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "check")) {
        if (argc < 3) {
            usage(stderr);
            return 2;
        }
        int rc = 0;
        for (int i = 2; i < argc; i++) {
            qint_stats s;
            memset(&s, 0, sizeof s);
            qiao_status st = qint_check_jsonl(argv[i], &s);
            if (st) {
                rc = cli_fail(st);
                continue;
            }
            printf("%s: ok, %lld examples, %lld entities\n", argv[i], (long long)s.examples[QINT_TRAIN],
                   (long long)s.entities);
        }
        return rc;
    }
    const char *from = NULL, *in = NULL, *out = NULL, *lang = NULL, *source = NULL;
    for (int i = 2; i < argc; i++) {
        const char **dst = !strcmp(argv[i], "--from")     ? &from
                           : !strcmp(argv[i], "--in")     ? &in
                           : !strcmp(argv[i], "--out")    ? &out
                           : !strcmp(argv[i], "--lang")   ? &lang
                           : !strcmp(argv[i], "--source") ? &source
                                                          : NULL;
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "qiao dataset intent: %s '%s'\n", dst ? "missing value for" : "unknown option", argv[i]);
            usage(stderr);
            return 2;
        }
        *dst = argv[++i];
    }
    qint_stats s;
    qiao_status st;
    if (!strcmp(sub, "convert")) {
        if (!from || !in || !out || source) {
            usage(stderr);
            return 2;
        }
        st = qint_convert(from, in, lang, out, &s);
    } else if (!strcmp(sub, "ecommerce")) {
        if (!source || !out || from || in || lang) {
            usage(stderr);
            return 2;
        }
        st = qint_ecommerce_build(source, out, &s);
    } else {
        fprintf(stderr, "qiao dataset intent: unknown command '%s'\n", sub);
        usage(stderr);
        return 2;
    }
    if (st) return cli_fail(st);
    print_stats(out, &s);
    return 0;
}

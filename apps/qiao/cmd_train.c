/* apps/qiao/cmd_train.c - `qiao train`: contrastive training of a model
 * (models/train/train.h) with a progress line, a CSV log, a PNG of the curves,
 * and Ctrl-C that stops after the current step with a checkpoint. */
#define _POSIX_C_SOURCE 200809L

#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "core/profile.h"
#include "models/train/train.h"
#include "plot.h"

int cmd_train(int argc, char **argv);
int cmd_train_vqa(int argc, char **argv);
int cmd_train_caption(int argc, char **argv);

static volatile sig_atomic_t g_stop = 0;
static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: qiao train --config C.json --tokenizer TOK.safetensors --data DIR --out M.safetensors\n"
            "       qiao train --init MODEL.safetensors --data DIR --out M.safetensors   (fine-tune)\n"
            "                  [--val DIR] [--resume CKPT] [--ckpt CKPT] [--log PREFIX]\n"
            "                  [--steps N] [--batch B] [--lr X] [--warmup N] [--seed S] [--eval-every N]\n"
            "                  [--eval-pool N] [--threads N] [--loader-threads N] [--restart] [--quiet]\n"
            "                  [--freeze text,image,audio] [--audio-weight W] [--place-groups G]\n"
            "                  [--profile N [--profile-out FILE.csv]] [--precision f32|bf16]\n"
            "       qiao train plot LOG.csv [-o LOG.png]   (draw a log's curves again, e.g. after an interruption)\n"
            "       qiao train vqa --init MODEL --config models/configs/vqa.json --data DIR --out VQA.safetensors\n"
            "                      (visual question answering on MODEL's towers: qiao train vqa --help)\n"
            "       qiao train caption --init MODEL --config models/configs/caption.json --data DIR --out CAP.safetensors\n"
            "                      (a caption decoder on MODEL's image tower: qiao train caption --help)\n"
            "  DIR is a split (manifest.jsonl: shapes, or image-less speech such as `qiao dataset fsdd`);\n"
            "  if DIR/train exists it is used, with DIR/val for validation unless --val is given.\n"
            "  Hyperparameters come from the config's \"train\" object (options override them); with\n"
            "  --init, from the config stored in MODEL, whose weights, config and tokenizer are the\n"
            "  start (fresh optimizer, step 0). Without images only audio-text trains and a batch holds\n"
            "  one clip per distinct caption (--batch 10 for digits). --ckpt defaults to\n"
            "  M.ckpt.safetensors and --log to M (writing M.csv and M.png). Ctrl-C stops after the\n"
            "  current step and writes the checkpoint; --resume CKPT continues exactly where it stopped.\n"
            "  --restart with --resume and more --steps starts a new schedule at the checkpoint's step\n"
            "  (warmup, then cosine to the new end) instead of stretching the old one. --freeze keeps\n"
            "  the named towers as loaded (forward only), e.g. to bind audio to a trained text-image space.\n"
            "  --audio-weight scales the audio-text and audio-image losses; 0 trains text-image only\n"
            "  (speech is not decoded and the audio tower is left as it is). --place-groups G puts\n"
            "  scenes with the same objects in different places side by side in batches, up to G\n"
            "  at a time (0: plain shuffle), so the loss learns where things are.\n"
            "  --profile N runs 2 warm-up steps and N profiled steps (no validation), measures the\n"
            "  roofline (raw sgemm) and prints where a step goes: per kind of work, per layer and per\n"
            "  GEMM shape, with GFLOP/s and the share of the roofline; --profile-out also writes it as CSV.\n"
            "  --precision bf16 runs the linear layers' GEMMs (forward, dX, dW) with bf16 operands and f32\n"
            "  sums; parameters, gradients and AdamW stay f32. It needs AVX512-BF16 and is refused without.\n");
}

typedef struct run {
    const char *csv_path, *png_path;
    int tty, quiet;
} run;

static void fmt_time(char *buf, size_t cap, double s) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, cap, "--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else
        snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
}

/* The trainer writes the CSV row before this is called, so the curves
 * drawn here include the step. */
static int on_step(const qmod_train_log *l, void *user) {
    run *r = user;
    const bool val = isfinite(l->val_t2i_r1);
    if (val || l->step == l->steps) {
        char err[256];
        if (plot_training_csv(r->csv_path, r->png_path, err, sizeof err) != 0)
            fprintf(stderr, "\nqiao train: could not draw %s: %s\n", r->png_path, err);
    }
    if (!r->quiet) {
        char eta[32], el[32];
        fmt_time(el, sizeof el, l->seconds);
        fmt_time(eta, sizeof eta, l->eta_s); /* the remaining scenes at this run's rate */
        const int width = 24, fill = (int)(width * l->step / (l->steps > 0 ? l->steps : 1));
        const bool line = r->tty || val || l->step == l->steps || l->step % 50 == 0;
        if (line)
            fprintf(stderr, "%s[%.*s%*s] %lld/%lld loss %.3f (ti %.3f at %.3f ai %.3f) lr %.2e %.1f scenes/s %s ETA %s",
                    r->tty ? "\r" : "", fill, "========================", width - fill, "", (long long)l->step,
                    (long long)l->steps, (double)l->loss, (double)l->loss_pair[0], (double)l->loss_pair[1],
                    (double)l->loss_pair[2], (double)l->lr, l->samples_per_s, el, eta);
        if (val)
            fprintf(stderr, "  val R@1 t2i %.3f i2t %.3f a2i %.3f a2t %.3f", (double)l->val_t2i_r1,
                    (double)l->val_i2t_r1, (double)l->val_a2i_r1, (double)l->val_a2t_r1);
        if (line && (!r->tty || val || l->step == l->steps)) fputc('\n', stderr);
    }
    return 0; /* Ctrl-C stops through the flag the trainer polls */
}

static bool has_manifest(const char *dir) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/manifest.jsonl", dir) >= sizeof path) return false;
    return cli_is_file(path);
}

/* qiao train plot LOG.csv [-o PNG]: the PNG defaults to LOG with .png for .csv. */
static int train_plot(int argc, char **argv) {
    const char *csv = NULL, *png = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            png = argv[++i];
        } else if (argv[i][0] == '-' || csv) {
            fprintf(stderr, "qiao train plot: unexpected '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else {
            csv = argv[i];
        }
    }
    if (!csv) {
        usage(stderr);
        return 2;
    }
    char buf[4096];
    if (!png) {
        size_t n = strlen(csv);
        if (n >= 4 && !strcmp(csv + n - 4, ".csv")) n -= 4;
        if (n + 5 > sizeof buf) {
            fprintf(stderr, "qiao train plot: path too long: %s\n", csv);
            return 1;
        }
        memcpy(buf, csv, n);
        memcpy(buf + n, ".png", 5);
        png = buf;
    }
    char err[512];
    if (plot_training_csv(csv, png, err, sizeof err) != 0) {
        fprintf(stderr, "qiao train plot: %s\n", err);
        return 1;
    }
    printf("qiao train plot: wrote %s\n", png);
    return 0;
}

int cmd_train(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "plot")) return train_plot(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "vqa")) return cmd_train_vqa(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "caption")) return cmd_train_caption(argc - 1, argv + 1);
    qmod_train_params p;
    memset(&p, 0, sizeof p);
    const char *data = NULL, *val = NULL, *ckpt = NULL, *logp = NULL, *config = NULL;
    long long steps = -1, batch = -1, seed = -1, eval_every = -1, eval_pool = -1, warmup = -1, place_groups = LLONG_MIN;
    double lr = -1, audio_weight = NAN;
    int quiet = 0, restart = 0;
    long long profile = 0;
    const char *profile_out = NULL;
    const char *freeze = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (!strcmp(a, "--restart")) {
            restart = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "qiao train: %s needs a value (or is an unknown option)\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        bool ok = true;
        int64_t x = 0;
        double y = 0;
        if (!strcmp(a, "--config")) config = v;
        else if (!strcmp(a, "--tokenizer")) p.tokenizer_path = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--val")) val = v;
        else if (!strcmp(a, "--out")) p.out_path = v;
        else if (!strcmp(a, "--resume")) p.resume_path = v;
        else if (!strcmp(a, "--init")) p.init_path = v;
        else if (!strcmp(a, "--warmup")) ok = cli_int(v, INT64_MIN, INT64_MAX, &x), warmup = x;
        else if (!strcmp(a, "--freeze")) freeze = v;
        else if (!strcmp(a, "--ckpt")) ckpt = v;
        else if (!strcmp(a, "--log")) logp = v;
        else if (!strcmp(a, "--steps")) ok = cli_int(v, INT64_MIN, INT64_MAX, &x), steps = x;
        else if (!strcmp(a, "--batch")) ok = cli_int(v, INT64_MIN, INT64_MAX, &x), batch = x;
        else if (!strcmp(a, "--seed")) ok = cli_int(v, INT64_MIN, INT64_MAX, &x), seed = x;
        else if (!strcmp(a, "--eval-every")) ok = cli_int(v, INT64_MIN, INT64_MAX, &x), eval_every = x;
        else if (!strcmp(a, "--eval-pool")) ok = cli_int(v, INT64_MIN, INT64_MAX, &x), eval_pool = x;
        else if (!strcmp(a, "--lr")) ok = cli_num(v, -HUGE_VAL, HUGE_VAL, &y), lr = y;
        else if (!strcmp(a, "--audio-weight")) ok = cli_num(v, -HUGE_VAL, HUGE_VAL, &y), audio_weight = y;
        else if (!strcmp(a, "--place-groups")) ok = cli_int(v, INT64_MIN, INT64_MAX, &x), place_groups = x;
        else if (!strcmp(a, "--threads")) ok = cli_int(v, INT32_MIN, INT32_MAX, &x), p.threads = (int)x;
        else if (!strcmp(a, "--profile")) ok = cli_int(v, 1, 1000000, &x), profile = x;
        else if (!strcmp(a, "--profile-out")) profile_out = v;
        else if (!strcmp(a, "--precision")) {
            ok = !strcmp(v, "f32") || !strcmp(v, "bf16");
            p.bf16 = !strcmp(v, "bf16");
            if (!ok) {
                fprintf(stderr, "qiao train: --precision takes f32 or bf16, not %s\n", v);
                return 2;
            }
        }
        else if (!strcmp(a, "--loader-threads")) ok = cli_int(v, INT32_MIN, INT32_MAX, &x), p.loader_threads = (int)x;
        else {
            fprintf(stderr, "qiao train: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "qiao train: %s: not a number: %s\n", a, v);
            return 2;
        }
    }
    if (p.init_path && (config || p.tokenizer_path)) {
        fprintf(stderr, "qiao train: --init takes the config and tokenizer from the model; drop --config/--tokenizer\n");
        usage(stderr);
        return 2;
    }
    if (!data || !p.out_path || (!p.resume_path && !p.init_path && (!config || !p.tokenizer_path))) {
        fprintf(stderr,
                "qiao train: --data, --out and --config with --tokenizer (or --init, or --resume) are required\n");
        usage(stderr);
        return 2;
    }
    /* the data: a split directory, or a root holding train/ (and val/) */
    char train_dir[4096], val_dir[4096];
    if (strlen(data) > sizeof train_dir - 16) {
        fprintf(stderr, "qiao train: --data path too long\n");
        return 2;
    }
    snprintf(train_dir, sizeof train_dir, "%s", data);
    if (!has_manifest(data)) {
        snprintf(train_dir, sizeof train_dir, "%.4000s/train", data);
        snprintf(val_dir, sizeof val_dir, "%.4000s/val", data);
        if (!val && has_manifest(val_dir)) val = val_dir;
    }
    p.data_dir = train_dir;
    p.val_dir = val;
    p.config_path = config;

    qiao_status st;
    int64_t resume_step = 0;
    if (p.resume_path)
        st = qmod_train_hparams_from_checkpoint(p.resume_path, &p.hp, &resume_step);
    else if (p.init_path)
        st = qmod_train_hparams_from_model(p.init_path, &p.hp);
    else
        st = QIAO_OK;
    if (st == QIAO_OK && !p.resume_path && !p.init_path) {
        qmod_config cfg;
        st = qmod_config_from_file(config, &cfg);
        if (st == QIAO_OK) {
            st = qmod_train_hparams_from_config(cfg.json, &p.hp);
            qmod_config_free(&cfg);
        }
    }
    if (st != QIAO_OK) return cli_fail(st);
    if (steps > 0) p.hp.steps = steps;
    if (batch > 1) p.hp.batch = batch;
    if (seed >= 0) p.hp.seed = (uint64_t)seed;
    if (eval_every >= 0) p.hp.eval_every = eval_every;
    if (eval_pool > 0) p.hp.eval_pool = eval_pool;
    if (lr > 0) p.hp.lr = (float)lr;
    if (warmup >= 0) p.hp.warmup = warmup;
    if (place_groups != LLONG_MIN) {
        if (place_groups < 0 || place_groups > 1024) {
            fprintf(stderr, "qiao train: --place-groups must be in [0, 1024], not %lld\n", place_groups);
            return 2;
        }
        p.hp.place_groups = place_groups;
    }
    if (!isnan(audio_weight)) {
        if (!(audio_weight >= 0 && audio_weight <= 100)) {
            fprintf(stderr, "qiao train: --audio-weight must be in [0, 100], not %g\n", audio_weight);
            return 2;
        }
        p.hp.audio_weight = (float)audio_weight;
    }
    if (freeze) {
        /* "text,image" -> the config's form, so one parser checks both */
        cJSON *root = cJSON_CreateObject(), *arr = cJSON_CreateArray();
        cJSON_AddItemToObject(cJSON_AddObjectToObject(root, "train"), "freeze", arr);
        for (const char *c = freeze; *c;) {
            const size_t n = strcspn(c, ",");
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), c);
            cJSON_AddItemToArray(arr, cJSON_CreateString(name));
            c += n + (c[n] == ',');
        }
        char *js = cJSON_PrintUnformatted(root);
        cJSON_Delete(root);
        qmod_train_hparams fh;
        st = js ? qmod_train_hparams_from_config(js, &fh) : qc_error(QIAO_ERR_OUT_OF_MEMORY, "--freeze: out of memory");
        cJSON_free(js);
        if (st != QIAO_OK) return cli_fail(st);
        p.hp.freeze = fh.freeze;
    }
    /* the steps profiled follow 2 warm-up steps: the loader starting and pages touched first */
    const int64_t prof_skip = 2;
    if (profile_out && !profile) {
        fprintf(stderr, "qiao train: --profile-out needs --profile N\n");
        return 2;
    }
    if (profile) {
        p.hp.steps = resume_step + prof_skip + profile;
        p.hp.eval_every = 0;
        p.val_dir = NULL;
    }
    if (restart) {
        if (!p.resume_path || p.hp.steps <= resume_step) {
            fprintf(stderr, "qiao train: --restart needs --resume and --steps beyond the checkpoint's step %lld\n",
                    (long long)resume_step);
            return 2;
        }
        p.hp.restart = resume_step;
    }

    char *ckpt_owned = ckpt ? NULL : cli_derive_path(p.out_path, ".ckpt.safetensors");
    p.ckpt_path = ckpt ? ckpt : ckpt_owned;
    char *csv_path = cli_derive_path(logp ? logp : p.out_path, ".csv");
    char *png_path = cli_derive_path(logp ? logp : p.out_path, ".png");
    int rc = 1;
    if (!p.ckpt_path || !csv_path || !png_path) {
        fprintf(stderr, "qiao train: out of memory\n");
        goto done;
    }
    qc_prof *prof = NULL;
    if (profile) {
        if ((st = qc_prof_create(&prof)) != QIAO_OK) {
            rc = cli_fail(st);
            goto done;
        }
        p.prof = prof;
        p.prof_skip = prof_skip;
        p.prof_roofline_s = 4.0;
    }
    run r = {csv_path, png_path, isatty(2), quiet};
    p.log_path = csv_path; /* the trainer writes it, and cuts a resumed run's back to the checkpoint */
    p.on_step = on_step;
    p.user = &r;
    p.stop = &g_stop;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    if (!quiet)
        fprintf(stderr, "qiao train: data %s%s%s, checkpoint %s, log %s\n", train_dir, val ? ", validation " : "",
                val ? val : "", p.ckpt_path, csv_path);
    st = qmod_train(&p);
    sigaction(SIGINT, &old, NULL);
    if (st == QIAO_ERR_CANCELLED) {
        fprintf(stderr, "\nqiao train: %s\n", qiao_last_error());
        rc = 130;
    } else if (st != QIAO_OK) {
        fputc('\n', stderr);
        rc = cli_fail(st);
    } else {
        fprintf(stderr, "qiao train: wrote %s (curves: %s, %s)\n", p.out_path, csv_path, png_path);
        rc = 0;
    }
    if (prof && rc == 0) {
        st = qc_prof_write_table(prof, stdout, 60);
        FILE *f = st == QIAO_OK && profile_out ? fopen(profile_out, "w") : NULL;
        if (st == QIAO_OK && profile_out && !f) st = qc_error(QIAO_ERR_IO, "%s: cannot write", profile_out);
        if (f) {
            st = qc_prof_write_csv(prof, f);
            if (fclose(f) != 0 && st == QIAO_OK) st = qc_error(QIAO_ERR_IO, "%s: cannot write", profile_out);
            if (st == QIAO_OK) fprintf(stderr, "qiao train: wrote the profile to %s\n", profile_out);
        }
        if (st != QIAO_OK) rc = cli_fail(st);
    }
    qc_prof_free(prof);
done:
    free(ckpt_owned);
    free(csv_path);
    free(png_path);
    return rc;
}

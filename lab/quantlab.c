/* quantlab: the offline lab. Subcommands: data fetch, train, eval, spec, bench.
 * Every subcommand takes --json (one JSON object a line on stdout); bad flags print usage to
 * stderr and exit 2; runtime failures print the error code and message and exit 1. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/err.h"
#include "core/file.h"
#include "nn/ckpt.h"
#include "nn/data.h"
#include "nn/kernels.h"
#include "nn/model.h"
#include "nn/train.h"
#include "nn/zoo.h"
#include "quant/calib.h"
#include "quant/igraph.h"
#include "quant/policy.h"
#include "quant/qm.h"
#include "quant/rtsize.h"
#include "quant/simulate.h"
#include "gate/supernet.h"
#include "lab/calibrate.h"
#include "lab/cli.h"
#include "lab/gatecmd.h"
#include "lab/export.h"
#include "lab/labrun.h"
#include "lab/search.h"
#include "policy/device.h"
#include "lab/study.h"

static const char usage[] =
    "usage: quantlab COMMAND [options]\n"
    "  data fetch [--data mnist|fashion-mnist|cifar10|all] [--dir DIR]\n"
    "  train --model M --data D [--epochs N] [--batch B] [--lr LR] [--optim sgd|adam]\n"
    "        [--wd WD] [--momentum MU] [--warmup E] [--augment 0|1] [--seed S] [--threads T]\n"
    "        [--depth D] [--width W] [--subset N] [--max-batches N] [--no-eval] [--out F]\n"
    "        [--dir DIR]\n"
    "  eval --ckpt F [--data D] [--dir DIR] [--batch B] [--threads T]\n"
    "  spec --model M --data D [--depth D] [--width W]      print the model spec\n"
    "  quantize --ckpt F --mode fp32|int8|int16x8|fp16|dynamic|mixed [--policy P]\n"
    "        [--calib minmax|percentile|mse] [--calib-n N] [--data D] [--dir DIR] --out M.qm\n"
    "        [--qat-epochs N [--lr LR]]   quantization-aware fine-tuning first\n"
    "        [--simulate [--limit N]]     also the float simulation's test accuracy\n"
    "        [--bn-recal B]   BatchNorm statistics re-estimated at the build's widths from B\n"
    "        training batches first (a supernet; default 50 with switchable BatchNorm, else 0)\n"
    "  export-c M.qm [--data D --limit N] [--out F.c]   the model (and N test images with\n"
    "        labels) as C source for a firmware image, with its exact arena size\n"
    "  run --model M.qm [--data D] [--dir DIR] [--limit N] [--threads T]   accuracy and speed\n"
    "        [--isa auto|portable|avx2|avx512vnni|neon|neon-dot]   integer kernels (default: the\n"
    "        best here)\n"
    "  bench --model M --data D [--batches N] [--batch B] [--threads T]   training images/s\n"
    "  sensitivity --ckpt F [--data D] [--sens-n N] [--hessian]   per-layer sensitivity\n"
    "  search --ckpt F --device PROFILE [--data D] [--flash B] [--ram B] [--latency MS]\n"
    "        [--energy MJ] [--hessian] [--sens-n N] [--eval [--limit N] [--bn-recal B]\n"
    "        [--qat-epochs N [--lr LR]]] [--out M.qm]\n"
    "        exact search for the policy that fits the budgets (sizes take k/M suffixes)\n"
    "  pareto --ckpt F --device PROFILE [--points N] [--eval [--random R] [--limit N]]\n"
    "        [--out DIR]   flash vs predicted loss (and measured accuracy), with a plot\n"
    "  calibrate-host [--out F] [--images N]   measure the host device profile's latency\n"
    "        coefficients and report measured vs predicted latency\n"
    "  calibrate-device --target cortex-m4|cortex-m7 [--out F]   fit the [mcu_kernels]\n"
    "        section of the profile (etc/devices/TARGET.ini; --out: a copy) from\n"
    "        instruction counts under QEMU (scripts/mcu_run.sh) and report measured vs\n"
    "        predicted instructions, RAM and flash (needs the Arm toolchain, QEMU and the\n"
    "        fashion-mnist and cifar10 data)\n"
    "  study --data D [--models M,M,...] [--epochs N] [--limit N] [--threads T]\n"
    "        [--subset N] [--ckpt-dir DIR] [--out DIR]   fp32 and the four modes per family:\n"
    "        size, accuracy, speed; markdown, CSV and a size-vs-accuracy plot (gnuplot)\n"
    "  supernet --ckpt F --out S [--epochs N] [--lr LR] [--sandwich N] [--lowest-every L]\n"
    "        [--kd W] [--kd-self]   fine-tune F into a multi-precision supernet: N policies a\n"
    "        step (the all-highest; the all-lowest one step in L, default 4 at N = 2, else 1;\n"
    "        the rest random; default N = 2), learning the frozen F's soft targets (--kd-self:\n"
    "        the step's all-highest pass's) weighted W against the labels (default 1);\n"
    "        --bn-sets 4: switchable BatchNorm, an affine per weight width (default 1: shared);\n"
    "        --project: the other policies' gradients lose what points against the widest's;\n"
    "        --ckpt S --policy P [--limit N] measures the supernet at P\n"
    "        (BatchNorm recalibrated for P, cached in S.bn)\n"
    "  gate train --supernet S --out G [--steps N] [--batch B] [--hidden H] [--probe N]\n"
    "        the gating MLP; --probe N: each step measures the loss of N layers' other widths\n"
    "        (0: the first-order estimate from one backward pass)\n"
    "  gate eval --gate G [--contexts N] [--limit N]   random contexts: the gate's decisions\n"
    "        against the sensitivity search's, accuracy and decision time\n"
    "  decide --gate G --device P [--flash B] [--ram B] [--latency MS] [--energy MJ]\n"
    "        [--battery F] [--eval] [--qat-epochs N --out M.qm]   the gate's policy made\n"
    "        feasible by the exact search; a budget may be a percentage of the int8 model's\n"
    "        figure (--flash 50%); --qat-epochs: then N epochs of QAT of the supernet at that\n"
    "        policy, built into M.qm (and run on the test set with --eval)\n"
    "M is custom, resnet_v1, resnet_v2, mobilenet_v1, mobilenet_v2, or a spec file.\n"
    "D is mnist, fashion-mnist or cifar10. Every command takes --json.\n";


int qd_cli_bad(const char *fmt, const char *what)
{
    fprintf(stderr, "quantlab: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n%s", usage);
    return 2;
}

static int num(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

/* Parses argv[i..] into a; returns 0 or 2 (usage). */
static int parse(int argc, char **argv, int i, struct qd_cli_args *a)
{
    for (; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--json")) {
            a->json = 1;
            continue;
        }
        if (!strcmp(f, "--no-eval")) {
            a->noeval = 1;
            continue;
        }
        if (!strcmp(f, "--simulate")) {
            a->simulate = 1;
            continue;
        }
        if (!strcmp(f, "--kd-self")) {
            a->kd_self = 1;
            continue;
        }
        if (!strcmp(f, "--project")) {
            a->project = 1;
            continue;
        }
        if (!strcmp(f, "--hessian")) {
            a->hessian = 1;
            continue;
        }
        if (!strcmp(f, "--eval")) {
            a->do_eval = 1;
            continue;
        }
        if (i + 1 >= argc)
            return qd_cli_bad("option %s needs a value (or is unknown)", f);
        const char *v = argv[++i];
        double d;
        /* decide: a budget as a percentage of the uniform int8 model's figure, stored negative */
        if ((!strcmp(f, "--flash") || !strcmp(f, "--ram") || !strcmp(f, "--latency") ||
             !strcmp(f, "--energy")) &&
            *v && v[strlen(v) - 1] == '%') {
            char num_s[64];
            snprintf(num_s, sizeof num_s, "%.*s", (int)strlen(v) - 1, v);
            if (strlen(v) > 32 || num(num_s, 1e-3, 1e4, &d))
                return qd_cli_bad("bad percentage for %s (want e.g. 50%%)", f);
            *(!strcmp(f, "--flash") ? &a->flash
              : !strcmp(f, "--ram") ? &a->ram
              : !strcmp(f, "--latency") ? &a->latency
                                        : &a->energy) = -d / 100;
            continue;
        }
#define NUM(flag, lo, hi, dst, set)                                                                \
    if (!strcmp(f, flag)) {                                                                        \
        if (num(v, lo, hi, &d))                                                                    \
            return qd_cli_bad("bad value for " flag ": %s", v);                                           \
        dst = d;                                                                                   \
        set;                                                                                       \
        continue;                                                                                  \
    }
        NUM("--epochs", 1, 100000, a->epochs, a->set_epochs = 1)
        NUM("--batch", 2, 4096, a->batch, (void)0)
        NUM("--threads", 1, 256, a->threads, (void)0)
        NUM("--depth", 8, 1000, a->depth, (void)0)
        NUM("--augment", 0, 1, a->augment, (void)0)
        NUM("--subset", 1, 1e9, a->subset, (void)0)
        NUM("--max-batches", 1, 1e12, a->max_batches, (void)0)
        NUM("--batches", 1, 1e12, a->batches, (void)0)
        NUM("--lr", 1e-9, 100, a->lr, a->set_lr = 1)
        NUM("--wd", 0, 1, a->wd, a->set_wd = 1)
        NUM("--momentum", 0, 0.9999, a->momentum, a->set_mom = 1)
        NUM("--width", 0.1, 4, a->width, (void)0)
        NUM("--warmup", 0, 1000, a->warmup, a->set_warm = 1)
        NUM("--seed", 0, 9.0e15, a->seed, (void)0)
        NUM("--calib-n", 1, 1e7, a->calib_n, (void)0)
        NUM("--limit", 1, 1e9, a->limit, (void)0)
        NUM("--images", 1, 1e6, a->limit, (void)0)
        NUM("--sens-n", 1, 1e7, a->sens_n, (void)0)
        NUM("--points", 2, 64, a->points, (void)0)
        NUM("--bn-recal", 0, 10000, a->bn_batches, (void)0)
        NUM("--random", 0, 1000, a->randoms, (void)0)
        NUM("--latency", 1e-9, 1e12, a->latency, (void)0)
        NUM("--energy", 1e-12, 1e12, a->energy, (void)0)
        NUM("--qat-epochs", 0, 10000, a->qat_epochs, (void)0)
        NUM("--steps", 1, 1e8, a->steps, (void)0)
        NUM("--contexts", 1, 1e6, a->contexts, (void)0)
        NUM("--hidden", 1, 4096, a->hidden, (void)0)
        NUM("--sandwich", 1, 16, a->sandwich, (void)0)
        NUM("--lowest-every", 1, 1000, a->lowest_every, (void)0)
        NUM("--probe", 0, 4096, a->probe, (void)0)
        NUM("--bn-sets", 1, 4, a->bn_sets, (void)0)
        NUM("--kd", 0, 1, a->kd, (void)0)
        NUM("--battery", 0, 1, a->battery, (void)0)
#undef NUM
        if (!strcmp(f, "--model"))
            a->model = v;
        else if (!strcmp(f, "--data"))
            a->data = v;
        else if (!strcmp(f, "--dir"))
            a->dir = v;
        else if (!strcmp(f, "--out"))
            a->out = v;
        else if (!strcmp(f, "--ckpt"))
            a->ckpt = v;
        else if (!strcmp(f, "--flash") || !strcmp(f, "--ram")) {
            double b;
            if (qd_parse_size(v, &b) || b <= 0)
                return qd_cli_bad("bad size %s (want bytes, or a number with k, M or G)", v);
            *(!strcmp(f, "--flash") ? &a->flash : &a->ram) = b;
        } else if (!strcmp(f, "--device"))
            a->device = v;
        else if (!strcmp(f, "--target"))
            a->target = v;
        else if (!strcmp(f, "--supernet"))
            a->supernet = v;
        else if (!strcmp(f, "--gate"))
            a->gate = v;
        else if (!strcmp(f, "--models"))
            a->models = v;
        else if (!strcmp(f, "--ckpt-dir"))
            a->ckpt_dir = v;
        else if (!strcmp(f, "--isa")) {
            a->isa = -1;
            for (int k = 0; k <= QD_RT_ISA_AUTO; k++)
                if (!strcmp(v, qd_rt_isa_name(k)))
                    a->isa = k;
            if (a->isa < 0)
                return qd_cli_bad("--isa must be auto, portable, avx2, avx512vnni, neon or neon-dot, "
                           "not %s", v);
        }
        else if (!strcmp(f, "--mode")) {
            if (qd_qmode_parse(v) < 0)
                return qd_cli_bad("--mode must be fp32, int8, int16x8, fp16, dynamic or mixed, not %s", v);
            a->mode = v;
        } else if (!strcmp(f, "--policy"))
            a->policy = v;
        else if (!strcmp(f, "--calib")) {
            if (strcmp(v, "minmax") && strcmp(v, "percentile") && strcmp(v, "mse"))
                return qd_cli_bad("--calib must be minmax, percentile or mse, not %s", v);
            a->calib = v;
        }
        else if (!strcmp(f, "--optim")) {
            if (strcmp(v, "sgd") && strcmp(v, "adam"))
                return qd_cli_bad("--optim must be sgd or adam, not %s", v);
            a->optim = v;
        } else
            return qd_cli_bad("unknown option %s", f);
    }
    return 0;
}

int qd_cli_fail(qd_err e)
{
    fprintf(stderr, "quantlab: %s: %s\n", qd_err_name(e), qd_errmsg());
    return 1;
}

void qd_cli_print_json(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        puts(s);
        fflush(stdout);
    }
    free(s);
    cJSON_Delete(o);
}

/* The spec of --model for the dataset's input shape: a zoo family or a spec file. */
static qd_err model_spec(const struct qd_cli_args *a, const struct qd_dataset *ds, char **spec)
{
    struct stat st;
    if (strchr(a->model, '/') || (stat(a->model, &st) == 0 && S_ISREG(st.st_mode))) {
        FILE *f = fopen(a->model, "rb");
        if (!f)
            return qd_seterr(QD_ENOENT, "%s: cannot open spec file", a->model);
        char *b = calloc(1, 1 << 20);
        size_t n = b ? fread(b, 1, (1 << 20) - 1, f) : 0;
        fclose(f);
        if (!b)
            return qd_seterr(QD_ENOMEM, "out of memory");
        (void)n;
        *spec = b;
        return QD_OK;
    }
    struct qd_zoo_opts o = {.depth = a->depth, .width = a->width};
    return qd_zoo_spec(a->model, ds->c, ds->h, ds->w, ds->nclass, &o, spec);
}

void qd_cli_on_epoch(const struct qd_epoch_stats *s, void *p)
{
    const struct qd_cli_train_ctx *c = p;
    if (c->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "event", "epoch");
        cJSON_AddNumberToObject(o, "epoch", s->epoch);
        cJSON_AddNumberToObject(o, "loss", s->loss);
        cJSON_AddNumberToObject(o, "train_acc", s->train_acc);
        if (s->test_acc >= 0) {
            cJSON_AddNumberToObject(o, "test_loss", s->test_loss);
            cJSON_AddNumberToObject(o, "test_acc", s->test_acc);
        }
        cJSON_AddNumberToObject(o, "seconds", s->seconds);
        cJSON_AddNumberToObject(o, "images_per_s", s->images_per_s);
        qd_cli_print_json(o);
    } else {
        printf("epoch %3d/%d  loss %.4f  train %.2f%%", s->epoch, s->epochs, s->loss,
               100 * s->train_acc);
        if (s->test_acc >= 0)
            printf("  test %.2f%% (loss %.4f)", 100 * s->test_acc, s->test_loss);
        printf("  %.1fs  %.0f img/s\n", s->seconds, s->images_per_s);
        fflush(stdout);
    }
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmd_train(struct qd_cli_args *a, int bench)
{
    if (!a->model || !a->data)
        return qd_cli_bad("%s needs --model and --data", bench ? "bench" : "train");
    struct qd_dataset tr = {0}, te = {0};
    struct qd_model m = {0};
    char *spec = NULL;
    qd_err e = qd_data_load(a->dir, a->data, 1, &tr);
    if (!e && !bench && !a->noeval)
        e = qd_data_load(a->dir, a->data, 0, &te);
    if (!e && a->subset && a->subset < tr.n)
        tr.n = a->subset;
    if (!e)
        e = model_spec(a, &tr, &spec);
    if (!e)
        e = qd_model_parse(spec, &m);
    free(spec);
    if (e) {
        qd_dataset_fini(&tr);
        qd_dataset_fini(&te);
        return qd_cli_fail(e);
    }
    qd_model_init_params(&m, (uint64_t)a->seed + 1);
    struct qd_train_opts o;
    qd_train_opts_default(&o, tr.name);
    if (a->set_epochs)
        o.epochs = a->epochs;
    if (a->batch)
        o.batch = a->batch;
    o.threads = a->threads;
    if (a->set_lr)
        o.lr = a->lr;
    if (a->set_wd)
        o.weight_decay = a->wd;
    if (a->set_mom)
        o.momentum = a->momentum;
    if (a->set_warm)
        o.warmup_epochs = a->warmup;
    if (a->augment >= 0)
        o.augment = a->augment;
    if (a->optim && !strcmp(a->optim, "adam"))
        o.optim = QD_OPTIM_ADAM;
    o.seed = (uint64_t)a->seed;
    o.max_batches = a->max_batches;
    o.eval_each_epoch = !a->noeval && !bench;
    o.progress = !a->json;
    struct qd_norm nm;
    qd_norm_fit(&tr, &nm);
    int rc = 0;
    if (bench) {
        /* 5 warm-up steps (first touch of every buffer), then the timed steps */
        long nbat = a->batches ? a->batches : 50;
        o.epochs = 1000;
        o.warmup_epochs = 0;
        o.progress = 0;
        o.timed_from = 5;
        o.max_batches = 5 + nbat;
        struct qd_train_timing tm;
        if ((e = qd_train_timed(&m, &tr, NULL, &nm, &o, NULL, NULL, &tm)))
            rc = qd_cli_fail(e);
        double dt = tm.seconds, ips = tm.images / (dt > 0 ? dt : 1e-9);
        if (!rc) {
            if (a->json) {
                cJSON *j = cJSON_CreateObject();
                cJSON_AddStringToObject(j, "model", m.family);
                cJSON_AddStringToObject(j, "data", tr.name);
                cJSON_AddNumberToObject(j, "batch", o.batch);
                cJSON_AddNumberToObject(j, "threads", qd_kernels_threads());
                cJSON_AddNumberToObject(j, "batches", (double)nbat);
                cJSON_AddNumberToObject(j, "seconds", dt);
                cJSON_AddNumberToObject(j, "images_per_s", ips);
                qd_cli_print_json(j);
            } else {
                printf("%s on %s: %ld batches of %d, %d threads: %.0f images/s\n", m.family,
                       tr.name, nbat, o.batch, qd_kernels_threads(), ips);
            }
        }
    } else {
        struct qd_cli_train_ctx c = {a->json, a->model, tr.name};
        if (!a->json)
            printf("training %s on %s: %d layers, %zu parameters, %.1f MMAC/image, %d epochs\n",
                   m.family, tr.name, m.nnodes - 1, m.nparam, qd_model_macs(&m) / 1e6, o.epochs);
        double t0 = now();
        e = qd_train(&m, &tr, a->noeval ? NULL : &te, &nm, &o, qd_cli_on_epoch, &c);
        double dt = now() - t0;
        if (e)
            rc = qd_cli_fail(e);
        if (!rc && a->out && (e = qd_ckpt_save(a->out, &m, tr.name, &nm)))
            rc = qd_cli_fail(e);
        if (!rc) {
            struct qd_eval r = {.acc = -1};
            if (!a->noeval && (e = qd_evaluate(&m, &te, &nm, 256, &r)))
                rc = qd_cli_fail(e);
            if (!rc && a->json) {
                cJSON *j = cJSON_CreateObject();
                cJSON_AddStringToObject(j, "event", "done");
                cJSON_AddStringToObject(j, "model", m.family);
                cJSON_AddStringToObject(j, "data", tr.name);
                cJSON_AddNumberToObject(j, "params", (double)m.nparam);
                cJSON_AddNumberToObject(j, "train_seconds", dt);
                if (r.acc >= 0)
                    cJSON_AddNumberToObject(j, "test_acc", r.acc);
                if (a->out)
                    cJSON_AddStringToObject(j, "ckpt", a->out);
                qd_cli_print_json(j);
            } else if (!rc) {
                printf("done in %.1fs", dt);
                if (r.acc >= 0)
                    printf(": test accuracy %.2f%%", 100 * r.acc);
                if (a->out)
                    printf(", saved %s", a->out);
                printf("\n");
            }
        }
    }
    qd_model_fini(&m);
    qd_dataset_fini(&tr);
    qd_dataset_fini(&te);
    return rc;
}

static int cmd_eval(struct qd_cli_args *a)
{
    if (!a->ckpt)
        return qd_cli_bad("%s needs --ckpt", "eval");
    struct qd_model m;
    struct qd_norm nm;
    char ds[32];
    qd_err e = qd_ckpt_load(a->ckpt, &m, ds, &nm);
    if (e)
        return qd_cli_fail(e);
    qd_kernels_init(a->threads);
    struct qd_dataset te;
    if ((e = qd_data_load(a->dir, a->data ? a->data : ds, 0, &te))) {
        qd_model_fini(&m);
        return qd_cli_fail(e);
    }
    struct qd_eval r;
    e = qd_evaluate(&m, &te, &nm, a->batch ? a->batch : 256, &r);
    if (!e) {
        if (a->json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "model", m.family);
            cJSON_AddStringToObject(j, "data", te.name);
            cJSON_AddNumberToObject(j, "n", r.n);
            cJSON_AddNumberToObject(j, "test_acc", r.acc);
            cJSON_AddNumberToObject(j, "test_loss", r.loss);
            cJSON_AddNumberToObject(j, "images_per_s", r.n / r.seconds);
            qd_cli_print_json(j);
        } else {
            printf("%s on %s: accuracy %.2f%% (loss %.4f) over %d images, %.0f images/s\n",
                   m.family, te.name, 100 * r.acc, r.loss, r.n, r.n / r.seconds);
        }
    }
    qd_model_fini(&m);
    qd_dataset_fini(&te);
    return e ? qd_cli_fail(e) : 0;
}

static int cmd_spec(struct qd_cli_args *a)
{
    if (!a->model || !a->data)
        return qd_cli_bad("%s needs --model and --data", "spec");
    const char *cn = qd_data_canonical(a->data);
    if (!cn)
        return qd_cli_bad("unknown dataset %s", a->data);
    struct qd_dataset shape = {.c = 1, .h = 28, .w = 28, .nclass = 10};
    if (!strcmp(cn, "cifar10"))
        shape.c = 3, shape.h = shape.w = 32;
    char *spec;
    qd_err e = model_spec(a, &shape, &spec);
    if (e)
        return qd_cli_fail(e);
    struct qd_model m;
    if ((e = qd_model_parse(spec, &m))) {
        free(spec);
        return qd_cli_fail(e);
    }
    if (a->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", m.family);
        cJSON_AddNumberToObject(j, "params", (double)m.nparam);
        cJSON_AddNumberToObject(j, "macs", (double)qd_model_macs(&m));
        cJSON_AddStringToObject(j, "spec", spec);
        qd_cli_print_json(j);
    } else {
        fputs(spec, stdout);
    }
    qd_model_fini(&m);
    free(spec);
    return 0;
}

static int cmd_search(struct qd_cli_args *a, int search, int argc, char **argv)
{
    static const char *names[] = {"sensitivity", "search", "pareto"};
    if (!a->ckpt || (search && !a->device))
        return qd_cli_bad("%s needs --ckpt F and --device PROFILE", names[search]);
    if (a->flash < 0 || a->ram < 0 || a->latency < 0 || a->energy < 0)
        return qd_cli_bad("%s takes budgets in bytes, ms and mJ (percentages are for decide)",
                   names[search]);
    struct qd_search_opts o = {.ckpt = a->ckpt,
                               .data = a->data,
                               .dir = a->dir,
                               .device = a->device,
                               .out = a->out,
                               .flash = a->flash > 0 ? a->flash : NAN,
                               .ram = a->ram > 0 ? a->ram : NAN,
                               .latency = a->latency > 0 ? a->latency : NAN,
                               .energy = a->energy > 0 ? a->energy : NAN,
                               .sens_n = a->sens_n,
                               .hessian = a->hessian,
                               .eval = a->do_eval,
                               .limit = a->limit,
                               .threads = a->threads ? a->threads : 2,
                               .json = a->json,
                               .calib_n = a->calib_n,
                               .bn_batches = a->bn_batches >= 0 ? a->bn_batches : 50,
                               .qat_epochs = search == 1 && a->do_eval ? a->qat_epochs : 0,
                               .qat_lr = a->set_lr ? a->lr : 0};
    if (search == 2) {
        o.out = NULL;
        char cmdline[1024] = "quantlab";
        for (int i = 1; i < argc; i++)
            snprintf(cmdline + strlen(cmdline), sizeof cmdline - strlen(cmdline), " %s", argv[i]);
        const char *dir = a->out ? a->out : "docs/pareto";
        qd_err e = qd_file_mkdirs(dir);
        if (!e)
            e = qd_lab_pareto(&o, a->points ? a->points : 8, a->randoms, dir, cmdline);
        return e ? qd_cli_fail(e) : 0;
    }
    qd_err e = search ? qd_lab_search(&o) : qd_lab_sensitivity(&o);
    return e ? qd_cli_fail(e) : 0;
}

static int cmd_calibrate_host(struct qd_cli_args *a)
{
    char cpu[256] = "host";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            snprintf(cpu, sizeof cpu, "%s", strchr(line, ':') + 2);
            cpu[strcspn(cpu, "\n")] = 0;
            break;
        }
    if (f)
        fclose(f);
    struct qd_calibrate_opts o = {.out = a->out ? a->out : "runs/host.ini",
                                  .cpu = cpu,
                                  .images = a->limit ? a->limit : 40};
    qd_kernels_init(1);
    qd_err e = qd_calibrate_host(&o);
    return e ? qd_cli_fail(e) : 0;
}

static int cmd_calibrate_device(struct qd_cli_args *a)
{
    if (!a->target)
        return qd_cli_bad("%s needs --target", "calibrate-device");
    struct qd_calibrate_device_opts o = {.target = a->target, .out = a->out};
    qd_err e = qd_calibrate_device(&o);
    return e ? qd_cli_fail(e) : 0;
}

static int cmd_study(struct qd_cli_args *a, int argc, char **argv)
{
    if (!a->data)
        return qd_cli_bad("%s needs --data", "study");
    struct qd_study_opts o = {.data = a->data,
                              .models = a->models ? a->models
                                                  : "custom,resnet_v1,resnet_v2,mobilenet_v1,"
                                                    "mobilenet_v2",
                              .ckpt_dir = a->ckpt_dir ? a->ckpt_dir : "runs/study",
                              .out_dir = a->out ? a->out : "docs/study",
                              .dir = a->dir,
                              .epochs = a->epochs ? a->epochs : 1,
                              .limit = a->limit ? a->limit : 2000,
                              .threads = a->threads ? a->threads : 2,
                              .subset = a->subset};
    char cmdline[1024] = "quantlab";
    for (int i = 1; i < argc; i++)
        snprintf(cmdline + strlen(cmdline), sizeof cmdline - strlen(cmdline), " %s", argv[i]);
    qd_err e = qd_study_run(&o, cmdline);
    if (e)
        return qd_cli_fail(e);
    if (!a->json)
        printf("study of %s written to %s/study-%s.{md,csv,gp,png,svg}\n", a->data, o.out_dir,
               qd_data_canonical(a->data));
    return 0;
}

static int cmd_gate(struct qd_cli_args *a, const char *cmd, const char *sub)
{
    struct qd_gate_lab_opts o = {
        .ckpt = a->ckpt, .supernet = a->supernet, .gate = a->gate, .data = a->data,
        .dir = a->dir, .out = a->out, .device = a->device, .policy = a->policy,
        .flash = a->flash, .ram = a->ram, .latency = a->latency, .energy = a->energy,
        .battery = a->battery, .epochs = a->set_epochs ? a->epochs : 0, .steps = a->steps,
        .batch = a->batch, .hidden = a->hidden, .threads = a->threads, .limit = a->limit,
        .contexts = a->contexts, .eval = a->do_eval, .json = a->json,
        .bn_batches = a->bn_batches, .calib_n = a->calib_n, .sens_n = a->sens_n,
        .lr = a->set_lr ? a->lr : 0, .seed = a->seed, .noeval = a->noeval,
        .sandwich = a->sandwich, .lowest_every = a->lowest_every, .kd = a->kd,
        .kd_self = a->kd_self, .probe = a->probe, .bn_sets = a->bn_sets,
        .project = a->project};
    qd_err e;
    if (!strcmp(cmd, "supernet")) {
        if (!a->ckpt)
            return qd_cli_bad("%s needs --ckpt F", cmd);
        e = qd_lab_supernet(&o);
    } else if (!strcmp(cmd, "decide")) {
        if (!a->gate)
            return qd_cli_bad("%s needs --gate G", cmd);
        if (a->qat_epochs > 0 && !a->out)
            return qd_cli_bad("%s --qat-epochs needs --out M.qm", cmd);
        /* the paper's adaptation step: QAT of the supernet at the decided policy, then built */
        static char pol[QD_LAB_POLICY_OUT], sn[QD_LAB_PATH_OUT], ds[QD_LAB_DATA_OUT];
        o.policy_out = pol, o.supernet_out = sn, o.data_out = ds;
        e = qd_lab_decide(&o);
        if (!e && a->qat_epochs > 0) {
            a->ckpt = sn, a->mode = "mixed", a->policy = pol;
            if (!a->data)
                a->data = ds;
            int rc = qd_cmd_quantize(a);
            if (rc || !a->do_eval)
                return rc;
            a->model = a->out;
            return qd_cmd_run(a);
        }
    } else if (!strcmp(sub, "train")) {
        if (!a->supernet || !a->out)
            return qd_cli_bad("%s needs --supernet S and --out G", "gate train");
        e = qd_lab_gate_train(&o);
    } else {
        if (!a->gate)
            return qd_cli_bad("%s needs --gate G", "gate eval");
        e = qd_lab_gate_eval(&o);
    }
    return e ? qd_cli_fail(e) : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    struct qd_cli_args a = {.dir = "data", .augment = -1, .seed = 1, .isa = QD_RT_ISA_AUTO,
                     .bn_batches = -1, .flash = NAN, .ram = NAN, .latency = NAN, .energy = NAN,
                     .battery = NAN, .sandwich = 2, .kd = 1};
    const char *cmd = argv[1];
    int first = 2;
    const char *gate_sub = NULL, *export_model = NULL;
    if (!strcmp(cmd, "export-c") && argc > 2 && argv[2][0] != '-')
        export_model = argv[2], first = 3;
    if (!strcmp(cmd, "gate")) {
        if (argc < 3 || (strcmp(argv[2], "train") && strcmp(argv[2], "eval")))
            return qd_cli_bad("unknown gate command %s (want: gate train | gate eval)",
                       argc < 3 ? "" : argv[2]);
        gate_sub = argv[2];
        first = 3;
    }
    if (!strcmp(cmd, "data")) {
        if (argc < 3 || strcmp(argv[2], "fetch"))
            return qd_cli_bad("unknown data command %s (want: data fetch)", argc < 3 ? "" : argv[2]);
        first = 3;
    }
    int rc = parse(argc, argv, first, &a);
    if (rc)
        return rc;
    if (!strcmp(cmd, "data")) {
        const char *name = a.data ? a.data : "all";
        qd_err e = qd_data_fetch(name, a.dir);
        if (e)
            return qd_cli_fail(e);
        if (a.json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "fetched", name);
            cJSON_AddStringToObject(j, "dir", a.dir);
            qd_cli_print_json(j);
        } else {
            printf("%s ready under %s/\n", name, a.dir);
        }
        return 0;
    }
    if (!strcmp(cmd, "train"))
        return cmd_train(&a, 0);
    if (!strcmp(cmd, "bench"))
        return cmd_train(&a, 1);
    if (!strcmp(cmd, "eval"))
        return cmd_eval(&a);
    if (!strcmp(cmd, "spec"))
        return cmd_spec(&a);
    if (!strcmp(cmd, "quantize"))
        return qd_cmd_quantize(&a);
    if (!strcmp(cmd, "search"))
        return cmd_search(&a, 1, argc, argv);
    if (!strcmp(cmd, "sensitivity"))
        return cmd_search(&a, 0, argc, argv);
    if (!strcmp(cmd, "pareto"))
        return cmd_search(&a, 2, argc, argv);
    if (!strcmp(cmd, "calibrate-host"))
        return cmd_calibrate_host(&a);
    if (!strcmp(cmd, "calibrate-device"))
        return cmd_calibrate_device(&a);
    if (!strcmp(cmd, "study"))
        return cmd_study(&a, argc, argv);
    if (!strcmp(cmd, "export-c"))
        return qd_cmd_export_c(&a, export_model ? export_model : a.model);
    if (!strcmp(cmd, "run"))
        return qd_cmd_run(&a);
    if (!strcmp(cmd, "supernet") || !strcmp(cmd, "gate") || !strcmp(cmd, "decide"))
        return cmd_gate(&a, cmd, gate_sub);
    return qd_cli_bad("unknown command %s", cmd);
}

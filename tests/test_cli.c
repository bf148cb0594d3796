/* quantlab as a user meets it: usage errors exit 2, runtime errors exit 1 with a message, --json
 * output parses, and train -> checkpoint -> eval agree. Runs the real binary ($QUANTLAB). */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

#include "core/file.h"
#include "core/rng.h"
#include "nn/ckpt.h"
#include "nn/model.h"

static char *dir;
static const char *ql;

/* Runs `quantlab ARGS`, returns its exit code; stdout into out (if given), stderr into err. */
static int run(const char *args, char *out, size_t outlen, char *err, size_t errlen)
{
    char cmd[4096], ef[600];
    snprintf(ef, sizeof ef, "%s/stderr", dir);
    snprintf(cmd, sizeof cmd, "%s %s 2>%s", ql, args, ef);
    FILE *p = popen(cmd, "r");
    size_t n = out ? fread(out, 1, outlen - 1, p) : 0;
    if (out)
        out[n] = 0;
    char sink[4096]; /* the rest, read to the end: a writer cut off would die of SIGPIPE */
    while (fread(sink, 1, sizeof sink, p) > 0)
        ;
    int st = pclose(p);
    if (err) {
        FILE *f = fopen(ef, "r");
        size_t m = f ? fread(err, 1, errlen - 1, f) : 0;
        err[m] = 0;
        if (f)
            fclose(f);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void usage_errors_exit_2(void **st)
{
    char err[8192];
    const char *bad[] = {"",
                         "frobnicate",
                         "train --model custom",
                         "train --model custom --data mnist --epochs zero",
                         "train --model custom --data mnist --epochs -3",
                         "train --model custom --data mnist --bogus 1",
                         "train --model custom --data mnist --optim lbfgs",
                         "train --model custom --data mnist --lr",
                         "eval",
                         "data",
                         "data fetch --dir",
                         "spec --model custom",
                         "decide --gate g --device host --energy 40x%",
                         "decide --gate g --device host --flash %",
                         "decide --gate g --device host --ram 0%",
                         "search --ckpt c --device host --flash 50%",
                         "decide --gate g --device host --qat-epochs 2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = run(bad[i], NULL, 0, err, sizeof err);
        if (rc != 2)
            fail_msg("'quantlab %s' exited %d, want 2", bad[i], rc);
        assert_non_null(strstr(err, "usage: quantlab"));
    }
    char out[4096];
    assert_int_equal(run("--help", out, sizeof out, NULL, 0), 0);
    assert_non_null(strstr(out, "usage: quantlab"));
}

static void runtime_errors_exit_1_with_a_message(void **st)
{
    char err[8192], args[1024];
    snprintf(args, sizeof args, "eval --ckpt %s/none.qdck", dir);
    assert_int_equal(run(args, NULL, 0, err, sizeof err), 1);
    assert_non_null(strstr(err, "ENOENT"));
    assert_non_null(strstr(err, "none.qdck"));
    snprintf(args, sizeof args, "train --model custom --data mnist --dir %s/empty", dir);
    assert_int_equal(run(args, NULL, 0, err, sizeof err), 1);
    assert_non_null(strstr(err, "data fetch"));
    assert_int_equal(run("spec --model vgg --data mnist", NULL, 0, err, sizeof err), 1);
    assert_non_null(strstr(err, "unknown model"));
    snprintf(args, sizeof args, "data fetch --data svhn --dir %s", dir);
    assert_int_equal(run(args, NULL, 0, err, sizeof err), 1);
    assert_non_null(strstr(err, "unknown dataset"));
}

static void spec_output_is_a_valid_spec(void **st)
{
    static char out[1 << 16];
    const char *fam[] = {"custom", "resnet_v1 --depth 8", "resnet_v2 --depth 14",
                         "mobilenet_v1 --width 0.25", "mobilenet_v2 --width 0.5"};
    for (int i = 0; i < 5; i++) {
        char args[256];
        snprintf(args, sizeof args, "spec --model %s --data cifar10", fam[i]);
        assert_int_equal(run(args, out, sizeof out, NULL, 0), 0);
        struct qd_model m;
        if (qd_model_parse(out, &m))
            fail_msg("%s: %s", fam[i], qd_errmsg());
        assert_int_equal(m.nodes[0].c, 3);
        qd_model_fini(&m);
    }
    /* a user-written spec file is accepted wherever a family name is */
    char path[600], args[800];
    snprintf(path, sizeof path, "%s/my.spec", dir);
    FILE *f = fopen(path, "w");
    fputs("model mine\ninput c=1 h=28 w=28\nconv out=4 k=3\nrelu\ngap\ndense out=10\n", f);
    fclose(f);
    snprintf(args, sizeof args, "spec --model %s --data mnist --json", path);
    assert_int_equal(run(args, out, sizeof out, NULL, 0), 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "model")->valuestring, "mine");
    assert_int_equal(cJSON_GetObjectItem(j, "params")->valueint, 4 * 9 + 4 * 10 + 10);
    cJSON_Delete(j);
}

/* Tiny MNIST-shaped files: class k has a bright column band at k*2 .. k*2+4. */
static void make_data(void)
{
    char d[600], p[700];
    snprintf(d, sizeof d, "%s/mnist", dir);
    mkdir(d, 0755);
    for (int t = 0; t < 2; t++) {
        int n = t ? 200 : 600;
        uint8_t hdr[16] = {0, 0, 8, 3, 0, 0, (uint8_t)(n >> 8), (uint8_t)n, 0, 0, 0, 28, 0, 0, 0,
                           28};
        uint8_t *img = calloc((size_t)n, 784), *lab = malloc(n);
        for (int i = 0; i < n; i++) {
            lab[i] = (uint8_t)((i * 7 + t) % 10);
            for (int y = 0; y < 28; y++)
                for (int x = lab[i] * 2; x < lab[i] * 2 + 5; x++)
                    img[i * 784 + y * 28 + x] = (uint8_t)(150 + (i * y) % 100);
        }
        snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", d, t ? "t10k" : "train");
        FILE *f = fopen(p, "wb");
        fwrite(hdr, 1, 16, f);
        fwrite(img, 1, (size_t)n * 784, f);
        fclose(f);
        uint8_t lh[8] = {0, 0, 8, 1, 0, 0, (uint8_t)(n >> 8), (uint8_t)n};
        snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", d, t ? "t10k" : "train");
        f = fopen(p, "wb");
        fwrite(lh, 1, 8, f);
        fwrite(lab, 1, n, f);
        fclose(f);
        free(img);
        free(lab);
    }
}

static void train_then_eval_agree(void **st)
{
    make_data();
    static char out[1 << 16];
    char args[1024];
    snprintf(args, sizeof args,
             "train --model custom --data mnist --dir %s --epochs 2 --threads 2 --json --out "
             "%s/m.qdck",
             dir, dir);
    assert_int_equal(run(args, out, sizeof out, NULL, 0), 0);
    /* one JSON object a line: two epochs, then done */
    int epochs = 0;
    double acc = -1;
    for (char *l = strtok(out, "\n"); l; l = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(l);
        if (!j)
            fail_msg("not JSON: %s", l);
        const char *ev = cJSON_GetObjectItem(j, "event")->valuestring;
        if (!strcmp(ev, "epoch"))
            epochs++;
        else
            acc = cJSON_GetObjectItem(j, "test_acc")->valuedouble;
        cJSON_Delete(j);
    }
    assert_int_equal(epochs, 2);
    assert_true(acc > 0.9); /* the bands are easy; chance is 0.1 */
    snprintf(args, sizeof args, "eval --ckpt %s/m.qdck --dir %s --json", dir, dir);
    assert_int_equal(run(args, out, sizeof out, NULL, 0), 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_true(fabs(cJSON_GetObjectItem(j, "test_acc")->valuedouble - acc) < 1e-9);
    assert_int_equal(cJSON_GetObjectItem(j, "n")->valueint, 200);
    cJSON_Delete(j);
    /* bench reports a training speed */
    snprintf(args, sizeof args, "bench --model custom --data mnist --dir %s --batches 3 --json",
             dir);
    assert_int_equal(run(args, out, sizeof out, NULL, 0), 0);
    j = cJSON_Parse(out);
    assert_non_null(j);
    assert_true(cJSON_GetObjectItem(j, "images_per_s")->valuedouble > 0);
    cJSON_Delete(j);
}

/* study: trains what is missing, quantizes each family in the five modes and writes the
 * table, the CSV (sizes equal the .qm files'), the gnuplot script and both plots. (One family
 * here: the others take minutes under the sanitizers; the command is the same.) */
static void study_writes_tables_and_plots(void **st)
{
    make_data();
    static char out[1 << 16], err[1 << 16];
    char args[2048], p[1024];
    assert_int_equal(run("study --models custom", out, sizeof out, err, sizeof err), 2);
    snprintf(args, sizeof args,
             "study --data mnist --dir %s --models custom --epochs 2 --limit 60 --threads 2 "
             "--ckpt-dir %s/ck --out %s/st",
             dir, dir, dir);
    if (run(args, out, sizeof out, err, sizeof err))
        fail_msg("study failed: %s", err);
    static const char *ext[] = {"md", "csv", "gp", "png", "svg"};
    struct stat sb;
    for (int k = 0; k < 5; k++) {
        snprintf(p, sizeof p, "%s/st/study-mnist.%s", dir, ext[k]);
        if (stat(p, &sb) || sb.st_size < 100)
            fail_msg("%s missing or empty", p);
    }
    snprintf(p, sizeof p, "%s/ck/custom-mnist.qdck", dir); /* trained because missing */
    assert_int_equal(stat(p, &sb), 0);
    snprintf(p, sizeof p, "%s/st/study-mnist.csv", dir);
    FILE *f = fopen(p, "r");
    char line[512];
    assert_non_null(fgets(line, sizeof line, f)); /* header */
    int rows = 0;
    double fp32_bytes = 0, fp32_acc = 0;
    while (fgets(line, sizeof line, f)) {
        char fam[32], mode[16];
        double bytes, acc, ips;
        assert_int_equal(sscanf(line, "%31[^,],%15[^,],%lf,%lf,%lf", fam, mode, &bytes, &acc, &ips),
                         5);
        snprintf(p, sizeof p, "%s/ck/%s-mnist-%s.qm", dir, fam, mode);
        assert_int_equal(stat(p, &sb), 0);
        assert_true((double)sb.st_size == bytes);
        assert_true(ips > 0 && acc >= 0 && acc <= 1);
        if (!strcmp(mode, "fp32"))
            fp32_bytes = bytes, fp32_acc = acc;
        if (!strcmp(fam, "custom") && strcmp(mode, "fp32")) {
            assert_true(bytes < 0.55 * fp32_bytes); /* fp16 halves, the int modes quarter */
            assert_true(fabs(acc - fp32_acc) <= 0.05); /* 60 easy images */
        }
        rows++;
    }
    fclose(f);
    assert_int_equal(rows, 5);
}

/* sensitivity and search: the table has a row per layer and is cached; the policy fits the
 * budget; an impossible budget is a clear error naming the smallest figure; bad flags exit 2. */
static void search_fits_budgets_and_explains_failures(void **st)
{
    make_data();
    static char out[1 << 16], err[1 << 16];
    char args[2048], p[1024];
    snprintf(args, sizeof args,
             "train --model custom --data mnist --dir %s --epochs 1 --threads 2 --no-eval --json "
             "--out %s/s.qdck",
             dir, dir);
    assert_int_equal(run(args, out, sizeof out, NULL, 0), 0);
    snprintf(args, sizeof args, "sensitivity --ckpt %s/s.qdck --dir %s --sens-n 100 --json", dir,
             dir);
    if (run(args, out, sizeof out, err, sizeof err))
        fail_msg("sensitivity: %s", err);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    cJSON *dl = cJSON_GetObjectItem(j, "dloss");
    assert_int_equal(cJSON_GetArraySize(dl), 5); /* custom: 4 convs and a dense */
    double d2 = cJSON_GetArrayItem(cJSON_GetArrayItem(dl, 0), 0)->valuedouble;
    double d16 = cJSON_GetArrayItem(cJSON_GetArrayItem(dl, 0), 3)->valuedouble;
    assert_true(fabs(d16) <= fabs(d2) + 1e-9); /* 16 bits hurts no more than 2 */
    cJSON_Delete(j);
    snprintf(p, sizeof p, "%s/s.qdck.sens.json", dir);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    /* a budget half way between the smallest and the 8-bit model */
    char dev[1200];
    snprintf(dev, sizeof dev, "--device %s/etc/devices/cortex-m4.ini", getenv("QD_SOURCE_DIR"));
    snprintf(args, sizeof args,
             "search --ckpt %s/s.qdck --dir %s --sens-n 100 %s --flash 60k --json --eval "
             "--limit 100 --out %s/s.qm",
             dir, dir, dev, dir);
    if (run(args, out, sizeof out, err, sizeof err))
        fail_msg("search: %s", err);
    assert_non_null(strstr(err, "from")); /* the cached sensitivity was used */
    j = cJSON_Parse(out);
    assert_non_null(j);
    double flash = cJSON_GetObjectItem(j, "flash")->valuedouble;
    assert_true(flash <= 60 * 1024);
    assert_int_equal(stat(p, &sb), 0);
    snprintf(p, sizeof p, "%s/s.qm", dir);
    assert_int_equal(stat(p, &sb), 0);
    assert_true((double)sb.st_size == flash); /* the predicted flash is the file */
    assert_true(cJSON_GetObjectItem(j, "test_acc")->valuedouble > 0.5);
    cJSON_Delete(j);
    /* --qat-epochs: the policy is fine-tuned before it is built (other weights, same size) */
    snprintf(args, sizeof args,
             "search --ckpt %s/s.qdck --dir %s --sens-n 100 %s --flash 60k --json --eval "
             "--limit 100 --qat-epochs 1 --out %s/s-qat.qm",
             dir, dir, dev, dir);
    if (run(args, out, sizeof out, err, sizeof err))
        fail_msg("search --qat-epochs: %s", err);
    j = cJSON_Parse(out);
    assert_non_null(j);
    assert_true(cJSON_GetObjectItem(j, "qat_epochs")->valuedouble == 1);
    assert_true(cJSON_GetObjectItem(j, "test_acc")->valuedouble > 0.5);
    assert_true(cJSON_GetObjectItem(j, "flash")->valuedouble == flash);
    cJSON_Delete(j);
    {
        uint8_t *a = NULL, *b = NULL;
        size_t la, lb;
        char pq[1100];
        snprintf(pq, sizeof pq, "%s/s-qat.qm", dir);
        assert_int_equal(qd_file_read(p, &a, &la), QD_OK);
        assert_int_equal(qd_file_read(pq, &b, &lb), QD_OK);
        assert_true(la == lb && memcmp(a, b, la) != 0);
        free(a), free(b);
    }
    snprintf(args, sizeof args, "search --ckpt %s/s.qdck --dir %s --sens-n 100 %s --flash 2k",
             dir, dir, dev);
    assert_int_equal(run(args, out, sizeof out, err, sizeof err), 1);
    assert_non_null(strstr(err, "EBUDGET"));
    assert_non_null(strstr(err, "smallest achievable"));
    snprintf(args, sizeof args, "search --ckpt %s/s.qdck %s --flash 12q", dir, dev);
    assert_int_equal(run(args, out, sizeof out, err, sizeof err), 2);
    snprintf(args, sizeof args, "search --ckpt %s/s.qdck --dir %s --device no-such-board", dir,
             dir);
    assert_int_equal(run(args, out, sizeof out, err, sizeof err), 1);
    assert_non_null(strstr(err, "no-such-board"));
}

/* The gate path end to end: supernet, gate, then decide with a budget given as a share of
 * the int8 model's flash, and the adaptation step (--qat-epochs) building the decided policy. */
static void decide_with_shares_and_adaptation(void **st)
{
    make_data();
    static char out[1 << 16], err[1 << 16];
    char args[2048], p[1100];
    char devs[1100];
    snprintf(devs, sizeof devs, "%s/etc/devices", getenv("QD_SOURCE_DIR"));
    setenv("QD_DEVICE_DIR", devs, 1);
    snprintf(args, sizeof args,
             "train --model custom --data mnist --dir %s --epochs 1 --threads 2 --no-eval --json "
             "--out %s/g.qdck",
             dir, dir);
    assert_int_equal(run(args, out, sizeof out, NULL, 0), 0);
    snprintf(args, sizeof args,
             "supernet --ckpt %s/g.qdck --dir %s --epochs 1 --kd 0 --json --out %s/g.super", dir,
             dir, dir);
    if (run(args, out, sizeof out, err, sizeof err))
        fail_msg("supernet: %s", err);
    snprintf(args, sizeof args,
             "gate train --supernet %s/g.super --dir %s --sens-n 100 --steps 30 --json --out "
             "%s/g.gate",
             dir, dir, dir);
    if (run(args, out, sizeof out, err, sizeof err))
        fail_msg("gate train: %s", err);
    /* the uniform 8-bit model's size: what "50%" is a share of */
    snprintf(args, sizeof args,
             "quantize --ckpt %s/g.super --dir %s --mode mixed --policy 8 --json --out %s/g8.qm",
             dir, dir, dir);
    assert_int_equal(run(args, out, sizeof out, NULL, 0), 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    double int8 = cJSON_GetObjectItem(j, "bytes")->valuedouble;
    cJSON_Delete(j);
    snprintf(args, sizeof args,
             "decide --gate %s/g.gate --dir %s --device cortex-m4 --flash 50%% --json", dir, dir);
    if (run(args, out, sizeof out, err, sizeof err))
        fail_msg("decide: %s", err);
    j = cJSON_Parse(out);
    assert_non_null(j);
    double flash = cJSON_GetObjectItem(j, "flash")->valuedouble;
    char pol[256];
    snprintf(pol, sizeof pol, "%s", cJSON_GetObjectItem(j, "policy")->valuestring);
    cJSON_Delete(j);
    if (!(flash <= 0.5 * int8))
        fail_msg("decided %.0f bytes for a budget of half of %.0f", flash, int8);
    /* decision times alone (bench/gate_bench.sh): no accuracy is claimed where none was measured */
    snprintf(args, sizeof args, "gate eval --gate %s/g.gate --dir %s --contexts 20 --no-eval --json",
             dir, dir);
    if (run(args, out, sizeof out, err, sizeof err))
        fail_msg("gate eval --no-eval: %s", err);
    const char *line = strrchr(out, '{');
    j = line ? cJSON_Parse(line) : NULL;
    if (!j)
        fail_msg("gate eval --no-eval --json: not JSON: %s", out);
    assert_int_equal(cJSON_GetObjectItem(j, "contexts")->valueint, 20);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "mean_acc_gate")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "mean_acc_sensitivity")));
    assert_true(cJSON_GetObjectItem(j, "gate_us_p99")->valuedouble > 0);
    cJSON_Delete(j);
    /* adaptation: the same decision, fine-tuned, built at the decided size and run */
    snprintf(args, sizeof args,
             "decide --gate %s/g.gate --dir %s --device cortex-m4 --flash 50%% --qat-epochs 1 "
             "--eval --json --out %s/g-adapted.qm",
             dir, dir, dir);
    if (run(args, out, sizeof out, err, sizeof err))
        fail_msg("decide --qat-epochs: %s", err);
    assert_non_null(strstr(out, pol));
    const char *last = strrchr(out, '{');
    j = last ? cJSON_Parse(last) : NULL;
    assert_non_null(j);
    assert_true(cJSON_GetObjectItem(j, "bytes")->valuedouble == flash);
    assert_true(cJSON_GetObjectItem(j, "test_acc")->valuedouble > 0.5);
    cJSON_Delete(j);
    struct stat sb;
    snprintf(p, sizeof p, "%s/g-adapted.qm", dir);
    assert_int_equal(stat(p, &sb), 0);
    assert_true((double)sb.st_size == flash);
}

/* `quantize` of a supernet checkpoint with switchable BatchNorm folds the sets of the widths it
 * builds: the same file (but for the model id and the CRC) as a plain checkpoint holding that
 * set's affine, for int8 (8 bits), fp16 (the widest set) and a mixed 2-bit policy. */
static void quantize_folds_the_builds_bn_sets(void **st)
{
    make_data();
    static const char *spec = "model custom\ninput c=1 h=28 w=28\nconv out=4 k=3 pad=1\nbn\n"
                              "relu\nmaxpool k=2\nconv out=6 k=3 pad=1\nbn\nrelu\nmaxpool k=2\n"
                              "flatten\ndense out=10\n";
    struct qd_model plain, sets;
    assert_int_equal(qd_model_parse(spec, &plain), QD_OK);
    qd_model_init_params(&plain, 5);
    assert_int_equal(qd_model_bn_sets(&plain, 4, &sets), QD_OK);
    struct qd_rng r;
    qd_rng_seed(&r, 6);
    for (int i = 0; i < sets.nnodes; i++) /* every set its own affine */
        for (size_t k = 0; sets.nodes[i].sets > 1 && k < sets.nodes[i].wlen; k++) {
            sets.param[sets.nodes[i].woff + k] = 0.5f + qd_rng_uniform(&r);
            sets.param[sets.nodes[i].boff + k] = qd_rng_uniform(&r) - 0.5f;
        }
    struct qd_norm nm = {1, {0.1f}, {0.3f}};
    char ps[700], pp[700], args[2048];
    snprintf(ps, sizeof ps, "%s/sets.qdck", dir);
    snprintf(pp, sizeof pp, "%s/plain.qdck", dir);
    assert_int_equal(qd_ckpt_save(ps, &sets, "mnist", &nm), QD_OK);
    static const struct {
        const char *how;
        int set;
    } builds[] = {{"--mode int8", 2}, {"--mode fp16", 3}, {"--mode mixed --policy 2", 0}};
    for (size_t b = 0; b < sizeof builds / sizeof *builds; b++) {
        for (int i = 0; i < sets.nnodes; i++) {
            const struct qd_node *n = &sets.nodes[i], *a = &plain.nodes[i];
            if (n->sets < 2)
                continue;
            memcpy(plain.param + a->woff, sets.param + n->woff + builds[b].set * n->c, 4 * n->c);
            memcpy(plain.param + a->boff, sets.param + n->boff + builds[b].set * n->c, 4 * n->c);
        }
        assert_int_equal(qd_ckpt_save(pp, &plain, "mnist", &nm), QD_OK);
        /* k = 0, 1: sets and plain, statistics as saved; k = 2, 3: re-estimated at the build's
         * widths, for the sets checkpoint by default (switchable BatchNorm marks a supernet),
         * for the plain one when asked */
        static const char *recal[] = {"--bn-recal 0", "", "", "--bn-recal 50"};
        uint8_t *blob[4];
        size_t len[4];
        for (int k = 0; k < 4; k++) {
            char qm[700];
            snprintf(qm, sizeof qm, "%s/q%d.qm", dir, k);
            snprintf(args, sizeof args, "quantize --ckpt %s --dir %s %s %s --out %s",
                     k % 2 ? pp : ps, dir, builds[b].how, recal[k], qm);
            assert_int_equal(run(args, NULL, 0, NULL, 0), 0);
            assert_int_equal(qd_file_read(qm, &blob[k], &len[k]), QD_OK);
        }
        for (int k = 0; k < 4; k += 2) {
            assert_int_equal(len[k], len[k + 1]);
            assert_memory_equal(blob[k], blob[k + 1], 16); /* then the model id (8 bytes) */
            if (memcmp(blob[k] + 24, blob[k + 1] + 24, len[k] - 28))
                fail_msg("%s%s: the sets checkpoint's build is not the plain one's",
                         builds[b].how, k ? ", recalibrated" : "");
        }
        if (len[0] == len[2] && !memcmp(blob[0] + 24, blob[2] + 24, len[0] - 28))
            fail_msg("%s: recalibration left the build as it was", builds[b].how);
        for (int k = 0; k < 4; k++)
            free(blob[k]);
    }
    qd_model_fini(&plain);
    qd_model_fini(&sets);
}

static int setup(void **st)
{
    ql = getenv("QUANTLAB");
    if (!ql)
        ql = "./quantlab";
    int rc = tmpdir_setup(st);
    dir = (char *)tmpdir();
    return rc;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(usage_errors_exit_2),
        cmocka_unit_test(runtime_errors_exit_1_with_a_message),
        cmocka_unit_test(spec_output_is_a_valid_spec),
        cmocka_unit_test(train_then_eval_agree),
        cmocka_unit_test(study_writes_tables_and_plots),
        cmocka_unit_test(search_fits_budgets_and_explains_failures),
        cmocka_unit_test(decide_with_shares_and_adaptation),
        cmocka_unit_test(quantize_folds_the_builds_bn_sets),
    };
    return cmocka_run_group_tests(tests, setup, tmpdir_teardown);
}

/* mkseeds: the seed corpora of the fuzz targets, made with the project's own encoders so that
 * every seed is a real message or file (fuzz/seeds.sh runs it, then adds the repo's config,
 * profile and spec files).
 *
 * Usage: mkseeds OUTDIR   writes OUTDIR/<target>/<seed> and OUTDIR/pack_base.qm (the base
 * model of the patch seeds, which fuzz_pack loads from $QD_FUZZ_BASE).
 *
 * What it makes: sealed requests of every op as the clients send them (under fuzz.h's key),
 * notifications, manifests (text + signature under fuzz.h's signing key), fetch reply chunks
 * as the daemon builds them, packs (raw, zstd, a patch against the base), .qm models of two
 * small specs that use every op, in every mode (random weights, calibrated on synthetic
 * images, as tests/quantfix.h makes them), their checkpoints, and the zoo's spec texts.
 * Deterministic. */
#include "fuzz/fuzz.h"

#include <errno.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/rng.h"
#include "nn/ckpt.h"
#include "nn/data.h"
#include "nn/model.h"
#include "nn/train.h"
#include "nn/zoo.h"
#include "proto/manifest.h"
#include "proto/pack.h"
#include "proto/proto.h"
#include "quant/calib.h"
#include "quant/igraph.h"
#include "quant/qm.h"

static const char *out;

static void die(const char *what)
{
    fprintf(stderr, "mkseeds: %s: %s\n", what, qd_errmsg());
    exit(1);
}

static void put(const char *target, const char *name, const void *b, size_t n)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", out, target);
    if (mkdir(p, 0755) && errno != EEXIST)
        die(p);
    snprintf(p, sizeof p, "%s/%s/%s", out, target, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f))
        die(p);
}

/* ---------------------------------------------------------------- requests */

static void request(const char *name, const char *from, const char *fields)
{
    char body[2048], *msg;
    snprintf(body, sizeof body, "{\"op\":\"%s\"%s%s,\"v\":1,\"from\":\"%s\",\"nonce\":%lld}", name,
             *fields ? "," : "", fields, from, 1700000000000000LL);
    if (qd_proto_seal(body, FZ_KEY, &msg))
        die("seal");
    char file[64];
    snprintf(file, sizeof file, "%s-%s", name, from);
    put("request", file, msg, strlen(msg));
    free(msg);
}

static void requests(void)
{
    const char *health = "{\"op\":\"health\",\"v\":1}";
    put("request", "health", health, strlen(health));
    request("stats", "admin", "");
    request("devices", "admin", "\"offset\":0,\"limit\":100");
    request("device", "admin", "\"id\":\"dev-1\"");
    request("keys", "admin", "\"action\":\"pub\"");
    request("keys", "admin",
            "\"action\":\"add\",\"id\":\"dev-2\",\"seal_to\":"
            "\"8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f\"");
    request("hello", FZ_DEVICE, "\"profile\":\"cortex-m4\",\"flash\":1048576,\"ram\":262144");
    request("report", FZ_DEVICE,
            "\"free_flash\":524288,\"free_ram\":131072,\"latency_ms\":50,\"energy_mj\":3.5,"
            "\"battery\":0.42");
    request("decide", FZ_DEVICE, "\"profile\":\"esp32\",\"battery\":0.9,\"latency_ms\":20");
    request("fetch", FZ_DEVICE, "\"version\":3,\"offset\":0,\"max\":65536,\"have\":2");
    request("fetch", "admin", "\"device\":\"dev-1\",\"version\":3,\"pack\":\"raw\"");
    request("ack", FZ_DEVICE,
            "\"version\":3,\"sha256\":"
            "\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"");
    request("event", FZ_DEVICE,
            "\"kind\":\"refused\",\"version\":4,\"code\":\"EAUTH\",\"message\":\"bad signature\"");
}

/* ---------------------------------------------------------------- models */

/* Small specs that between them use every op and layer argument the .qm format has (the zoo's
 * models are 50 KB and more: slow to mutate). */
static const struct {
    const char *name, *spec;
    int c, hw;
} SPECS[] = {
    {"tiny1",
     "model tiny1\ninput c=1 h=6 w=6\nconv out=4 k=3 pad=1 name=a\nbn\nrelu\n"
     "conv out=4 k=3 pad=1 groups=4\nbn\nrelu6 name=b\nadd in=a,b\nmaxpool k=2\n"
     "flatten\ndense out=3\n",
     1, 6},
    {"tiny3",
     "model tiny3\ninput c=3 h=5 w=5\nconv out=6 k=3 stride=2 pad=1 bias=1\nrelu\n"
     "avgpool k=2 stride=1\nconv out=5 k=1\nbn\nrelu\ngap\ndense out=2\n",
     3, 5},
};

/* The model of a spec at input c x hw x hw, random weights and BN statistics, its inference
 * graph and calibrated ranges (tests/quantfix.h's recipe). */
struct fixture {
    struct qd_model m;
    struct qd_igraph g;
    struct qd_dataset ds;
    struct qd_range *rg;
    struct qd_norm nm;
};

static void make(struct fixture *f, const char *spec, int c, int hw, uint64_t seed)
{
    if (qd_model_parse(spec, &f->m))
        die(spec);
    struct qd_rng r;
    qd_rng_seed(&r, seed);
    qd_model_init_params(&f->m, seed);
    for (int i = 0; i < f->m.nnodes; i++) {
        const struct qd_node *n = &f->m.nodes[i];
        if (n->op != QD_OP_BN)
            continue;
        for (int k = 0; k < n->c; k++) {
            f->m.param[n->boff + k] = 0.3f * (2 * qd_rng_uniform(&r) - 1);
            f->m.stat[n->soff + k] = 0.2f * (2 * qd_rng_uniform(&r) - 1);
            f->m.stat[n->soff + n->c + k] = 0.5f + qd_rng_uniform(&r);
        }
    }
    memset(&f->ds, 0, sizeof f->ds);
    f->ds.n = 40, f->ds.c = c, f->ds.h = f->ds.w = hw, f->ds.nclass = f->m.nclass;
    strcpy(f->ds.name, "synth");
    f->ds.x = malloc((size_t)40 * c * hw * hw);
    f->ds.y = malloc(40);
    for (size_t i = 0; i < (size_t)40 * c * hw * hw; i++)
        f->ds.x[i] = (uint8_t)qd_rng_below(&r, 256);
    for (int i = 0; i < 40; i++)
        f->ds.y[i] = (uint8_t)(i % f->m.nclass);
    qd_norm_fit(&f->ds, &f->nm);
    if (qd_igraph_build(&f->m, &f->nm, &f->g))
        die("igraph");
    f->rg = calloc((size_t)f->g.n + 1, sizeof *f->rg);
    if (qd_calibrate(&f->g, &f->ds, 40, QD_CALIB_MINMAX, 0, f->rg))
        die("calibrate");
}

static void unmake(struct fixture *f)
{
    free(f->rg);
    qd_igraph_fini(&f->g);
    qd_model_fini(&f->m);
    qd_dataset_fini(&f->ds);
}

static uint8_t *build(struct fixture *f, enum qd_qmode mode, uint64_t seed, size_t *len)
{
    struct qd_policy p;
    struct qd_rng r;
    qd_rng_seed(&r, seed);
    static const int wb[] = {2, 4, 8, 16};
    p.n = f->g.nq;
    for (int i = 0; i < p.n; i++) {
        p.wbits[i] = (uint8_t)wb[qd_rng_below(&r, 4)];
        p.abits[i] = qd_rng_below(&r, 4) ? 8 : 16;
    }
    struct qd_qm_build b = {&f->g, &p, mode, f->rg, seed, f->m.family};
    uint8_t *blob;
    if (qd_qm_build(&b, &blob, len))
        die("qm build");
    return blob;
}

/* A pack of qm (against base, or none) of the kind qd_pack_best picks, and a fetch reply of it
 * in two chunks with its manifest, as the daemon sends them. */
static void pack_and_fetch(const char *name, const uint8_t *qm, size_t len, const uint8_t *base,
                           size_t blen)
{
    enum qd_pack kind;
    uint8_t *p, pk[32], sk[64], sig[64];
    size_t n;
    if (qd_pack_best(qm, len, base, blen, 3, &kind, &p, &n))
        die("pack");
    char file[128];
    snprintf(file, sizeof file, "%s-%s", name, qd_pack_name(kind));
    put("pack", file, p, n);
    fz_sign_keys(pk, sk);
    struct qd_manifest m = {.version = 3,
                            .prev = 2,
                            .size = (int64_t)len,
                            .created = 1700000000,
                            .expires = 1700604800,
                            .test_seed = 77,
                            .test_n = 8};
    strcpy(m.device, FZ_DEVICE);
    qd_proto_sha256_hex(qm, len, m.sha);
    qd_proto_sha256_hex(p, n, m.test_sha);
    strcpy(m.backbone, "custom-fashion-mnist");
    strcpy(m.policy, "w8a8,w4a8,w2a16,w8a8");
    char *text;
    size_t tl;
    if (qd_manifest_sign(&m, sk, &text, &tl, sig))
        die("manifest");
    uint8_t *ms = malloc(tl + 64);
    memcpy(ms, text, tl);
    memcpy(ms + tl, sig, 64);
    put("manifest", file, ms, tl + 64);
    free(ms);
    for (size_t off = 0; off < n; off += n / 2 + 1) {
        char hdr[256];
        size_t cn = n - off < n / 2 + 1 ? n - off : n / 2 + 1;
        snprintf(hdr, sizeof hdr,
                 "{\"version\":3,\"offset\":%zu,\"total\":%zu,\"encoding\":\"%s\","
                 "\"base\":%d,\"manifest_len\":%zu}",
                 off, n, qd_pack_name(kind), kind == QD_PACK_PATCH ? 2 : 0, tl);
        uint8_t *c;
        size_t cl;
        if (qd_proto_chunk_encode(hdr, text, tl, sig, p + off, cn, &c, &cl))
            die("chunk");
        snprintf(file, sizeof file, "%s-%s-%zu", name, qd_pack_name(kind), off);
        put("chunk", file, c, cl);
        free(c);
    }
    free(text);
    free(p);
}

/* .qm seeds in every mode, checkpoints, and the pack, manifest and chunk seeds of the first
 * spec's models against its int8 model (pack_base.qm). */
static void models(void)
{
    uint8_t *base = NULL;
    size_t blen = 0;
    for (size_t k = 0; k < sizeof SPECS / sizeof *SPECS; k++) {
        struct fixture f;
        make(&f, SPECS[k].spec, SPECS[k].c, SPECS[k].hw, 10 + k);
        char name[128], path[1024];
        snprintf(path, sizeof path, "%s/ckpt", out);
        mkdir(path, 0755);
        snprintf(path, sizeof path, "%s/ckpt/%s.qdck", out, SPECS[k].name);
        if (qd_ckpt_save(path, &f.m, "synth", &f.nm))
            die("ckpt");
        put("spec", SPECS[k].name, SPECS[k].spec, strlen(SPECS[k].spec));
        for (int mode = 0; mode < QD_QMODE_COUNT; mode++) {
            size_t len;
            uint8_t *blob = build(&f, (enum qd_qmode)mode, 100 + (uint64_t)mode, &len);
            snprintf(name, sizeof name, "%s-%s.qm", SPECS[k].name, qd_qmode_name(mode));
            put("qm", name, blob, len);
            if (k == 0 && mode == QD_QMODE_INT8) {
                put(".", "pack_base.qm", blob, len);
                base = blob, blen = len;
                /* the same weights under another model id: a patch is smallest */
                uint8_t *next = build(&f, QD_QMODE_INT8, 999, &len);
                pack_and_fetch("next", next, len, base, blen);
                free(next);
                continue;
            }
            if (k == 0 && mode == QD_QMODE_F32)
                pack_and_fetch("fp32", blob, len, NULL, 0);
            if (k == 0 && mode == QD_QMODE_MIXED)
                pack_and_fetch("mixed", blob, len, base, blen);
            free(blob);
        }
        unmake(&f);
    }
    /* a zstd frame of compressible bytes (random weights rarely are) */
    uint8_t zeros[3000] = {0};
    memcpy(zeros, "QDQM", 4);
    pack_and_fetch("zeros", zeros, sizeof zeros, NULL, 0);
    free(base);
}

/* ---------------------------------------------------------------- the rest */

static void notes_and_manifests(void)
{
    struct qd_proto_note n = {.version = 7, .size = 23456};
    strcpy(n.id, FZ_DEVICE);
    strcpy(n.sha, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    uint8_t *b;
    size_t len;
    if (qd_proto_note_encode(&n, &b, &len))
        die("note");
    put("note", "dev-1", b, len);
    free(b);
    strcpy(n.id, "gw_17.site-A");
    n.version = 9007199254740992LL;
    if (qd_proto_note_encode(&n, &b, &len))
        die("note");
    put("note", "big", b, len);
    free(b);
    uint8_t pk[32], sk[64], sig[64];
    fz_sign_keys(pk, sk);
    struct qd_manifest m = {.version = 1,
                            .prev = 0,
                            .size = 1,
                            .created = 0,
                            .expires = 1,
                            .test_seed = 0,
                            .test_n = 64};
    strcpy(m.device, "x");
    memset(m.sha, 'a', 64);
    memset(m.test_sha, '0', 64);
    char *text;
    size_t tl;
    if (qd_manifest_sign(&m, sk, &text, &tl, sig))
        die("manifest");
    uint8_t *ms = malloc(tl + 64);
    memcpy(ms, text, tl);
    memcpy(ms + tl, sig, 64);
    put("manifest", "minimal", ms, tl + 64);
    free(ms), free(text);
}

static void specs(void)
{
    for (int k = 0; qd_zoo_families[k]; k++)
        for (int in = 0; in < 2; in++) {
            char *spec, name[64];
            struct qd_zoo_opts o = {.depth = 8, .width = 0.25f};
            if (qd_zoo_spec(qd_zoo_families[k], in ? 3 : 1, in ? 32 : 28, in ? 32 : 28, 10, &o,
                            &spec))
                die("zoo");
            snprintf(name, sizeof name, "%s-%d.spec", qd_zoo_families[k], in ? 32 : 28);
            put("spec", name, spec, strlen(spec));
            free(spec);
        }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: mkseeds OUTDIR\n");
        return 2;
    }
    out = argv[1];
    if (sodium_init() < 0)
        return 1;
    setenv("OMP_NUM_THREADS", "1", 1);
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    mkdir(out, 0755);
    requests();
    notes_and_manifests();
    specs();
    models();
    return 0;
}

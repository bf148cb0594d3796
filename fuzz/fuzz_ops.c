/* Fuzz target: the daemon's op handlers (daemon/ops*.c), in a real quantd running in this
 * process, so that every handler sees fuzzed fields past authentication.
 *
 * LLVMFuzzerInitialize starts quantd (daemon/quantd.c's main, compiled in as qdd_main) on a
 * thread, with its state in a temporary directory, control and push on ipc:// sockets there,
 * a small custom CNN trained on 512 MNIST images on its first start (data from $QD_DATA_DIR,
 * default <repo>/data: `quantlab data fetch`), the repo's device profiles, and the admin key
 * FZ_KEY. It registers the device "dev-1" (its key comes sealed) and waits for the backbone.
 *
 * Each input is read as a JSON object: "from" picks the identity ("dev-1" or "dev-2" as that
 * device, else admin); "v", "nonce" and "mac" are replaced, and the request is sealed under
 * that identity's key and sent (qd_client_call), so the handler reads every other field as
 * the fuzzer wrote it. Checks: the daemon answers every request within the timeout with a JSON
 * reply or a fetch chunk (an error reply is fine: the request was bad), never crashes, and
 * still answers health afterwards; ASan and UBSan watch the daemon's threads too. Leaks are
 * not checked per input (the daemon's caches grow by design); the daemon tests under ASan
 * check them at its exit. */
#include "fuzz/fuzz.h"

#include <ftw.h>
#include <pthread.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "client/client.h"
#include "core/err.h"
#include "proto/proto.h"

int qdd_main(int argc, char **argv); /* daemon/quantd.c, compiled with -Dmain=qdd_main */

#define TIMEOUT_MS 60000

static char dir[256], conf[300], control[320], push[320];
static struct qd_client cli;
static struct qd_ident admin, dev1, dev2;

static void *daemon_thread(void *arg)
{
    static char *argv[] = {"quantd", "-c", conf, NULL};
    int rc = qdd_main(3, argv);
    fprintf(stderr, "fuzz_ops: quantd returned %d\n", rc);
    abort(); /* it serves until the process ends */
    return arg;
}

static int rm_one(const char *p, const struct stat *s, int flag, struct FTW *f)
{
    (void)s, (void)flag, (void)f;
    return remove(p);
}

static void cleanup(void)
{
    if (dir[0])
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void die(const char *what)
{
    fprintf(stderr, "fuzz_ops: %s: %s\n", what, qd_errmsg());
    exit(1);
}

static void write_config(const char *root)
{
    const char *data = getenv("QD_DATA_DIR");
    char dd[600];
    snprintf(dd, sizeof dd, "%s", data ? data : "");
    if (!data)
        snprintf(dd, sizeof dd, "%s/data", root);
    char probe[700];
    snprintf(probe, sizeof probe, "%s/mnist", dd);
    if (access(probe, R_OK)) {
        fprintf(stderr, "fuzz_ops: needs MNIST in %s (build/quantlab data fetch, or QD_DATA_DIR)\n",
                dd);
        exit(1);
    }
    snprintf(conf, sizeof conf, "%s/quantd.conf", dir);
    FILE *f = fopen(conf, "w");
    if (!f)
        exit(1);
    fprintf(f,
            "[quantd]\ncontrol = %s\npush = %s\nstate_dir = %s/state\nlog_level = error\n"
            "threads = 2\nmax_jobs = 64\n"
            "[backbone]\nmodel = custom\ndata = mnist\ndata_dir = %s\ntrain_epochs = 1\n"
            "train_subset = 512\nsens_n = 32\ncalib_n = 32\nsupernet_epochs = 0\n"
            "gate_steps = 0\n[decide]\ndevices_dir = %s/etc/devices\n",
            control, push, dir, dd, root);
    fclose(f);
    /* the admin key the target seals with (quantd reads it: created only where none is) */
    char path[400], hex[65];
    snprintf(path, sizeof path, "%s/state", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/state/admin.key", dir);
    qd_proto_hex(FZ_KEY, sizeof FZ_KEY, hex);
    f = fopen(path, "w");
    if (!f)
        exit(1);
    fprintf(f, "%s\n", hex);
    fclose(f);
    chmod(path, 0600);
}

static int ready(void)
{
    cJSON *j = cJSON_CreateObject(), *r = NULL;
    cJSON_AddStringToObject(j, "op", "health");
    if (qd_client_call(&cli, NULL, j, &r, NULL, NULL))
        return -1;
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(r, "phase");
    int ok = cJSON_IsString(s) && !strcmp(s->valuestring, "ready");
    int failed = cJSON_IsString(s) && !strcmp(s->valuestring, "failed");
    cJSON_Delete(r);
    return failed ? -2 : ok;
}

/* A device's key (action add or rotate) and its hello. */
static void device(struct qd_ident *who, const char *id, const char *action)
{
    char key[2 * QD_PROTO_KEY_BYTES + 1];
    if (qd_client_device_key(&cli, &admin, action, id, key) || qd_ident_init(who, id, key))
        die("keys");
    cJSON *r = NULL;
    if (qd_client_hello(&cli, who, "cortex-m4", &r))
        die("hello");
    cJSON_Delete(r);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (sodium_init() < 0)
        exit(1);
    snprintf(dir, sizeof dir, "%s/qdfz-ops-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir))
        exit(1);
    atexit(cleanup);
    snprintf(control, sizeof control, "ipc://%s/control", dir);
    snprintf(push, sizeof push, "ipc://%s/push", dir);
    char root[512];
    snprintf(root, sizeof root, "%s", __FILE__);
    *strrchr(root, '/') = 0;
    *strrchr(root, '/') = 0; /* <repo>/fuzz/fuzz_ops.c -> <repo> */
    write_config(root);
    pthread_t t;
    if (pthread_create(&t, NULL, daemon_thread, NULL))
        exit(1);
    pthread_detach(t);
    char hex[65];
    qd_proto_hex(FZ_KEY, sizeof FZ_KEY, hex);
    if (qd_ident_init(&admin, "admin", hex))
        die("admin key");
    for (int i = 0; i < 100 && qd_client_open(&cli, control, NULL, TIMEOUT_MS); i++)
        usleep(100000);
    int s = 0;
    for (int i = 0; i < 6000 && (s = ready()) != 1; i++) { /* training: about a minute */
        if (s == -2) {
            fprintf(stderr, "fuzz_ops: the backbone failed to load\n");
            exit(1);
        }
        usleep(100000);
    }
    if (s != 1)
        die("the daemon never became ready");
    device(&dev1, "dev-1", "add");
    device(&dev2, "dev-2", "add");
    fprintf(stderr, "fuzz_ops: quantd ready in %s\n", dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *j = cJSON_ParseWithLength((const char *)data, size);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return 0;
    }
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(j, "from");
    struct qd_ident *who = &admin;
    if (cJSON_IsString(from) && !strcmp(from->valuestring, "dev-1"))
        who = &dev1;
    else if (cJSON_IsString(from) && !strcmp(from->valuestring, "dev-2"))
        who = &dev2;
    static const char *const mine[] = {"v", "from", "nonce", "mac"};
    for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++)
        while (cJSON_GetObjectItemCaseSensitive(j, mine[i]))
            cJSON_DeleteItemFromObjectCaseSensitive(j, mine[i]);
    int64_t now = qd_proto_now_us();
    who->nonce = now > who->nonce ? now : who->nonce + 1;
    cJSON_AddNumberToObject(j, "v", QD_PROTO_VERSION);
    cJSON_AddStringToObject(j, "from", who->id);
    cJSON_AddNumberToObject(j, "nonce", (double)who->nonce);
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(j, "op");
    int keys = who == &admin && cJSON_IsString(op) &&
               (!strcmp(op->valuestring, "keys") || !strcmp(op->valuestring, "revoke") ||
                !strcmp(op->valuestring, "delete"));
    char *body = cJSON_PrintUnformatted(j), *msg = NULL, *reply = NULL;
    cJSON_Delete(j);
    FZ_CHECK(body && qd_proto_seal(body, who->key, &msg) == QD_OK);
    free(body);
    size_t rlen = 0;
    qd_err e = qd_client_call_raw(&cli, msg, strlen(msg), &reply, &rlen);
    free(msg);
    if (e) { /* the transport's error: no reply came */
        fprintf(stderr, "fuzz_ops: no reply: %s\n", qd_errmsg());
        abort();
    }
    if (rlen && reply[0] == '{') { /* else a fetch chunk */
        cJSON *r = cJSON_ParseWithLength(reply, rlen);
        FZ_CHECK(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(r, "ok")));
        cJSON_Delete(r);
    }
    free(reply);
    if (keys) /* dev-1 and dev-2 may have lost their keys: new ones (rotate revives) */
        device(&dev1, "dev-1", "rotate"), device(&dev2, "dev-2", "rotate");
    static unsigned n;
    if (++n % 256 == 0)
        FZ_CHECK(ready() == 1);
    return 0;
}

/* quantd under attack and under faults: the real daemon ($QUANTD), with the fault shim
 * ($QD_FAULTSHIM, tests/faultshim.c) preloaded where a test injects failures.
 *   - keys: a key file that cannot be read (EACCES, EMFILE) or is damaged stops the start and
 *     is left as it was; only a missing one is created; the state directory is 0700 and the key
 *     files 0600;
 *   - over tcp:// a device key is never returned in clear (unless keys_in_clear), only sealed
 *     to the caller's one-time key; a request from an unknown id gets the reply a bad MAC
 *     gets;
 *   - limits name themselves: past unauth_rate, large requests are refused unread (ELIMIT)
 *     while small ones are served; a device has one decision in flight (EBUSY), the pool at
 *     most max_jobs (EBUSY naming it);
 *   - faults: model files that cannot be written (ENOSPC), a state database that cannot be
 *     fsynced (EIO) or is locked by another writer (SQLITE_BUSY): the requests they touch get
 *     errors, everything else is served, nothing replied to is lost, and once the fault clears
 *     the same requests succeed and the models fetched verify; a model file found damaged or
 *     missing is built again (EBUSY meanwhile) to the same bytes;
 *   - kill -9 at random instants of a fleet's life (deciding, building, writing models,
 *     committing, notifying, fetching): after each restart every version a reply named and every
 *     ack replied to is there, every current model fetches and verifies, and in the end every
 *     device converges ($QD_KILLS rounds, 8 by default; the campaign runs 100). */
#include "daemonfix.h"

#include <sodium.h>
#include <sys/stat.h>

#include <nanomsg/nn.h>
#include <pthread.h>
#include <sqlite3.h>

#include "client/sim.h"
#include "core/file.h"
#include "core/rng.h"

/* A plain backbone (no supernet: trained in seconds). */
#define BACKBONE "[backbone]\nsupernet_epochs = 0\n"

static char faults[1200], adminkey[1200], signkey[1200], statedir[1200];

static int hostile_setup(void **st)
{
    setup(st);
    snprintf(faults, sizeof faults, "%s/faults", tmp);
    snprintf(adminkey, sizeof adminkey, "%s/state/admin.key", tmp);
    snprintf(signkey, sizeof signkey, "%s/state/sign.key", tmp);
    snprintf(statedir, sizeof statedir, "%s/state", tmp);
    snprintf(data_dir, sizeof data_dir, "%s/no-data", tmp); /* no backbone: none is needed */
    return 0;
}

/* Starts quantd with the faults in `faults` in force (the shim preloaded) when shim is set. */
static pid_t start_with(int shim)
{
    if (pid > 0) { /* one left by a failed test: never two daemons on one state */
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        pid = -1;
    }
    if (shim) {
        setenv("LD_PRELOAD", getenv("QD_FAULTSHIM"), 1);
        setenv("QD_FAULT_FILE", faults, 1);
        const char *a = getenv("ASAN_OPTIONS");
        char opt[1024];
        snprintf(opt, sizeof opt, "%s%sverify_asan_link_order=0", a ? a : "", a ? ":" : "");
        setenv("ASAN_OPTIONS", opt, 1);
    }
    pid_t p = start(conf);
    if (shim)
        unsetenv("LD_PRELOAD");
    return p;
}

static void set_faults(const char *text)
{
    FILE *f = fopen(faults, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Lines in the shim's count file: the faults really injected so far. */
static int faults_injected(void)
{
    char p[1300];
    snprintf(p, sizeof p, "%s.count", faults);
    FILE *f = fopen(p, "r");
    int n = 0, ch;
    if (!f)
        return 0;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

static void wait_health(struct qd_client *c, int seconds)
{
    char ph[64];
    for (int i = 0; i < seconds * 10; i++) {
        if (ready(c, ph, sizeof ph) >= 0)
            return;
        usleep(100000);
    }
    fail_msg("quantd does not answer health (see %s)", logpath);
}

static int mode_of(const char *path)
{
    struct stat s;
    assert_int_equal(stat(path, &s), 0);
    return (int)(s.st_mode & 0777);
}

static char *slurp(const char *path)
{
    uint8_t *b = NULL;
    size_t n;
    if (qd_file_read(path, &b, &n))
        fail_msg("%s", qd_errmsg());
    return (char *)b;
}

static int log_has(const char *text)
{
    char *l = slurp(logpath);
    int has = strstr(l, text) != NULL;
    free(l);
    return has;
}

/* A start that must fail, leaving both key files as they were. */
static void start_fails(int shim, const char *admin_was, const char *sign_was, const char *why)
{
    truncate(logpath, 0);
    pid_t p = start_with(shim);
    int rc = wait_exit(p, 20);
    if (rc <= 0)
        fail_msg("quantd started (rc %d) though %s", rc, why);
    char *a = slurp(adminkey), *s = slurp(signkey);
    assert_string_equal(a, admin_was);
    assert_string_equal(s, sign_was);
    free(a);
    free(s);
}

static void keys_never_replaced(void **st)
{
    write_conf(NULL);
    pid = start_with(0);
    struct qd_client c;
    assert_int_equal(qd_client_open(&c, control, NULL, 3000), QD_OK);
    wait_health(&c, 20);
    assert_int_equal(mode_of(statedir), 0700);
    assert_int_equal(mode_of(adminkey), 0600);
    assert_int_equal(mode_of(signkey), 0600);
    kill(pid, SIGTERM);
    assert_int_equal(wait_exit(pid, 20), 0);
    pid = -1;
    char *admin = slurp(adminkey), *sign = slurp(signkey);

    set_faults("open EACCES admin.key$\n");
    start_fails(1, admin, sign, "its admin key could not be read");
    assert_true(log_has("admin.key") && log_has("Permission denied"));
    assert_true(faults_injected() >= 1);
    set_faults("open EMFILE sign.key$\n");
    int before = faults_injected();
    start_fails(1, admin, sign, "its signing key could not be read");
    assert_true(log_has("sign.key") && log_has("Too many open files"));
    assert_true(faults_injected() > before);

    FILE *f = fopen(adminkey, "w"); /* damaged: left for the operator, not replaced */
    fputs("0123abc\n", f);
    fclose(f);
    start_fails(0, "0123abc\n", sign, "its admin key file is damaged");
    assert_true(log_has("not a key file"));
    f = fopen(adminkey, "w");
    fputs(admin, f);
    fclose(f);

    chmod(adminkey, 0644); /* loose modes are tightened at start */
    chmod(statedir, 0755);
    pid = start_with(0);
    wait_health(&c, 20);
    assert_int_equal(mode_of(statedir), 0700);
    assert_int_equal(mode_of(adminkey), 0600);
    char *a2 = slurp(adminkey), *s2 = slurp(signkey);
    assert_string_equal(a2, admin);
    assert_string_equal(s2, sign);
    kill(pid, SIGTERM);
    assert_int_equal(wait_exit(pid, 20), 0);
    pid = -1;
    free(a2), free(s2), free(admin), free(sign);
    qd_client_close(&c);
}

static const char *reply_code(cJSON *r, char *buf, size_t n)
{
    cJSON *err = cJSON_GetObjectItem(r, "error");
    cJSON *code = cJSON_GetObjectItem(err, "code"), *msg = cJSON_GetObjectItem(err, "message");
    snprintf(buf, n, "%s: %s", cJSON_IsString(code) ? code->valuestring : "OK",
             cJSON_IsString(msg) ? msg->valuestring : "");
    return buf;
}

static void device_keys_sealed_on_tcp(void **st)
{
    snprintf(control, sizeof control, "tcp://127.0.0.1:%d", free_port());
    snprintf(push, sizeof push, "tcp://127.0.0.1:%d", free_port());
    write_conf(NULL);
    pid = start_with(0);
    struct qd_client c;
    assert_int_equal(qd_client_open(&c, control, NULL, 3000), QD_OK);
    wait_health(&c, 20);
    struct qd_ident admin;
    assert_int_equal(qd_ident_init(&admin, "admin", adminkey), QD_OK);

    /* asked for in clear over TCP: refused, and nothing registered */
    cJSON *k = op("keys");
    cJSON_AddStringToObject(k, "action", "add");
    cJSON_AddStringToObject(k, "id", "gw-1");
    qd_err e;
    cJSON *r = call(&c, &admin, k, &e);
    assert_int_equal(e, QD_EAUTH);
    assert_null(cJSON_GetObjectItem(r, "key"));
    cJSON_Delete(r);
    k = op("keys");
    cJSON_AddStringToObject(k, "action", "rotate");
    cJSON_AddStringToObject(k, "id", "gw-1");
    cJSON_AddStringToObject(k, "seal_to", "00ff");
    cJSON_Delete(call(&c, &admin, k, &e));
    assert_int_equal(e, QD_EINVAL); /* a seal_to that is no key */

    /* sealed: the key opens only with our one-time secret, and it is the device's key */
    char key[2 * QD_PROTO_KEY_BYTES + 1];
    assert_int_equal(qd_client_device_key(&c, &admin, "add", "gw-1", key), QD_OK);
    struct qd_ident dev;
    assert_int_equal(qd_ident_init(&dev, "gw-1", key), QD_OK);
    assert_int_equal(qd_client_event(&c, &dev, "installed", 0, QD_OK, "sealed key works"), QD_OK);

    /* an unknown id and a bad MAC from a known one: the same code and message */
    char b1[256], b2[256];
    struct qd_ident ghost = dev, wrong = dev;
    snprintf(ghost.id, sizeof ghost.id, "no-such-gw");
    wrong.key[0] ^= 1;
    k = op("event");
    cJSON_AddStringToObject(k, "kind", "installed");
    r = call(&c, &ghost, k, &e);
    reply_code(r, b1, sizeof b1);
    cJSON_Delete(r);
    k = op("event");
    cJSON_AddStringToObject(k, "kind", "installed");
    r = call(&c, &wrong, k, &e);
    reply_code(r, b2, sizeof b2);
    cJSON_Delete(r);
    assert_string_equal(b1, b2);
    assert_non_null(strstr(b1, "EAUTH"));

    /* the operator may allow clear keys (SIGHUP applies it) */
    write_conf("[quantd]\nkeys_in_clear = 1\n");
    kill(pid, SIGHUP);
    for (int i = 0; i < 50; i++) {
        k = op("keys");
        cJSON_AddStringToObject(k, "action", "rotate");
        cJSON_AddStringToObject(k, "id", "gw-1");
        r = call(&c, &admin, k, &e);
        int clear = !e && cJSON_IsString(cJSON_GetObjectItem(r, "key"));
        cJSON_Delete(r);
        if (clear)
            break;
        assert_int_equal(e, QD_EAUTH);
        assert_true(i < 49);
        usleep(100000);
    }
    kill(pid, SIGTERM);
    assert_int_equal(wait_exit(pid, 20), 0);
    pid = -1;
    qd_client_close(&c);
}

/* req sealed as qd_client_call seals it (the nonce from who). */
static char *sealed_text(struct qd_ident *who, cJSON *req)
{
    cJSON_AddNumberToObject(req, "v", QD_PROTO_VERSION);
    int64_t n = qd_proto_now_us();
    who->nonce = n > who->nonce ? n : who->nonce + 1;
    cJSON_AddStringToObject(req, "from", who->id);
    cJSON_AddNumberToObject(req, "nonce", (double)who->nonce);
    char *body = cJSON_PrintUnformatted(req), *txt = NULL;
    assert_int_equal(qd_proto_seal(body, who->key, &txt), QD_OK);
    free(body);
    cJSON_Delete(req);
    return txt;
}

/* Sends a on socket sa and b on sb back to back, then reads both replies' codes. */
static void pair(int sa, char *a, int sb, char *b, char *ca, char *cb, size_t n)
{
    assert_true(nn_send(sa, a, strlen(a), 0) >= 0);
    assert_true(nn_send(sb, b, strlen(b), 0) >= 0);
    int s[2] = {sa, sb};
    char *out[2] = {ca, cb};
    for (int i = 0; i < 2; i++) {
        char *rep = NULL;
        int len = nn_recv(s[i], &rep, NN_MSG, 0);
        assert_true(len > 0);
        cJSON *j = cJSON_ParseWithLength(rep, (size_t)len);
        nn_freemsg(rep);
        reply_code(j, out[i], n);
        cJSON_Delete(j);
    }
    free(a);
    free(b);
}

static cJSON *report_req(double battery)
{
    cJSON *j = op("report");
    cJSON_AddNumberToObject(j, "battery", battery);
    return j;
}

static void limits_name_themselves(void **st)
{
    real_data_dir("fashion-mnist/t10k-images-idx3-ubyte.gz", data_dir, sizeof data_dir);
    snprintf(control, sizeof control, "ipc://%s/control", tmp);
    snprintf(push, sizeof push, "ipc://%s/push", tmp);
    write_conf("[quantd]\nunauth_rate = 0.01\nmax_jobs = 1\n" BACKBONE);
    pid = start_with(0);
    struct qd_client c, c2;
    assert_int_equal(qd_client_open(&c, control, NULL, 20000), QD_OK);
    assert_int_equal(qd_client_open(&c2, control, NULL, 20000), QD_OK);
    wait_ready(&c, 300);
    struct qd_ident admin, forged;
    assert_int_equal(qd_ident_init(&admin, "admin", adminkey), QD_OK);
    forged = admin;
    forged.key[3] ^= 0x40;

    /* forged 3 KB requests spend the 10 KB/s budget; then large ones are refused unread */
    char *pad = malloc(3001);
    memset(pad, 'x', 3000);
    pad[3000] = 0;
    int unread = 0, eauth = 0;
    for (int i = 0; i < 12; i++) {
        cJSON *j = op("stats");
        cJSON_AddStringToObject(j, "pad", pad);
        qd_err e;
        cJSON_Delete(call(&c, &forged, j, &e));
        unread += e == QD_ELIMIT;
        eauth += e == QD_EAUTH;
    }
    assert_true(eauth >= 1 && unread >= 1);
    assert_true(strstr(qd_errmsg(), "unauth_rate") != NULL);
    qd_err e;
    cJSON *r = call(&c, &admin, op("stats"), &e); /* a small request is still served */
    assert_int_equal(e, QD_OK);
    assert_true(cJSON_GetObjectItem(r, "refused_unread")->valuedouble >= unread);
    cJSON_Delete(r);
    usleep(1500000); /* refilled: a large genuine request is read again */
    cJSON *j = op("stats");
    cJSON_AddStringToObject(j, "pad", pad);
    cJSON_Delete(call(&c, &admin, j, &e));
    assert_int_equal(e, QD_OK);
    free(pad);

    /* two devices: one decision each at a time, and one job on the pool at most */
    struct qd_ident dev[2];
    for (int i = 0; i < 2; i++) {
        char id[16], key[2 * QD_PROTO_KEY_BYTES + 1];
        snprintf(id, sizeof id, "lim-%d", i);
        assert_int_equal(qd_client_device_key(&c, &admin, "add", id, key), QD_OK);
        assert_int_equal(qd_ident_init(&dev[i], id, key), QD_OK);
        cJSON *hr = NULL;
        assert_int_equal(qd_client_hello(&c, &dev[i], "esp32", &hr), QD_OK);
        cJSON_Delete(hr);
    }
    char ca[300], cb[300];
    int own = 0, pool = 0;
    for (int round = 0; round < 40 && !(own && pool); round++) {
        double bat = 0.05 + 0.02 * (round % 40);
        char *a = sealed_text(&dev[0], report_req(bat)), *b;
        cJSON *d = op("decide");
        cJSON_AddNumberToObject(d, "battery", bat);
        b = sealed_text(&dev[0], d);
        pair(c.req, a, c2.req, b, ca, cb, sizeof ca);
        if (!strncmp(ca, "OK", 2) && !strncmp(cb, "EBUSY", 5))
            own += strstr(cb, "has a decision in flight") != NULL;
        a = sealed_text(&dev[0], report_req(bat + 0.01));
        b = sealed_text(&dev[1], report_req(bat + 0.01));
        pair(c.req, a, c2.req, b, ca, cb, sizeof ca);
        if (!strncmp(cb, "EBUSY", 5) && strstr(cb, "max_jobs"))
            pool++;
        else if (!strncmp(ca, "EBUSY", 5) && strstr(ca, "max_jobs"))
            pool++;
    }
    if (!own || !pool)
        fail_msg("no EBUSY seen in 40 rounds (device: %d, pool: %d): %s / %s", own, pool, ca, cb);
    r = call(&c, &admin, op("health"), &e); /* and everyone else is served */
    assert_int_equal(e, QD_OK);
    cJSON_Delete(r);
    kill(pid, SIGTERM);
    assert_int_equal(wait_exit(pid, 30), 0);
    pid = -1;
    qd_client_close(&c);
    qd_client_close(&c2);
}

/* A device's current version as the daemon tells it at hello. */
static int64_t version_of(struct qd_client *c, struct qd_ident *who)
{
    cJSON *r = NULL;
    assert_int_equal(qd_client_hello(c, who, "esp32", &r), QD_OK);
    int64_t v = (int64_t)cJSON_GetObjectItem(r, "version")->valuedouble;
    cJSON_Delete(r);
    return v;
}

/* Reports ever smaller latency budgets until one is refused by the fault in force (new policies
 * need new model files); returns how many were refused, each leaving the version as it was. */
static int reports_refused(struct qd_client *c, struct qd_ident *who, double *lat, qd_err want)
{
    int refused = 0;
    for (int i = 0; i < 16 && !refused; i++) {
        int64_t v0 = version_of(c, who);
        struct qd_client_ctx x = QD_CLIENT_CTX_NONE;
        x.latency_ms = *lat;
        *lat *= 0.93; /* ever faster: a new policy, so a new model to write */
        cJSON *r = NULL;
        qd_err e = qd_client_report(c, who, &x, &r);
        cJSON_Delete(r);
        if (e == QD_EBUDGET)
            break;
        if (e) {
            assert_int_equal(e, want);
            assert_int_equal(version_of(c, who), v0);
            refused++;
        }
    }
    return refused;
}

static void faults_refused_then_recovered(void **st)
{
    real_data_dir("fashion-mnist/t10k-images-idx3-ubyte.gz", data_dir, sizeof data_dir);
    write_conf(BACKBONE); /* the backbone of limits_name_themselves, loaded */
    set_faults("");
    pid = start_with(1);
    struct qd_client c;
    assert_int_equal(qd_client_open(&c, control, NULL, 20000), QD_OK);
    wait_ready(&c, 300);
    struct qd_ident admin, dev;
    char key[2 * QD_PROTO_KEY_BYTES + 1];
    assert_int_equal(qd_ident_init(&admin, "admin", adminkey), QD_OK);
    assert_int_equal(qd_client_device_key(&c, &admin, "add", "flt-0", key), QD_OK);
    assert_int_equal(qd_ident_init(&dev, "flt-0", key), QD_OK);
    uint8_t pk[QD_PROTO_PUB_BYTES];
    assert_int_equal(qd_client_sign_pub(&c, &admin, pk), QD_OK);
    double lat = 215; /* ms: the all-2-bit model takes 221 on esp32 */
    struct qd_client_ctx x = QD_CLIENT_CTX_NONE;
    x.latency_ms = lat;
    cJSON *r = NULL;
    (void)version_of(&c, &dev);
    assert_int_equal(qd_client_report(&c, &dev, &x, &r), QD_OK);
    cJSON_Delete(r);
    lat *= 0.93;

    /* the disk is full for model files: new models are refused, health still answers */
    int n0 = faults_injected();
    set_faults("write ENOSPC /models/\nrename ENOSPC /models/\n");
    assert_true(reports_refused(&c, &dev, &lat, QD_EIO) >= 1);
    assert_true(faults_injected() > n0);
    char ph[64];
    assert_int_equal(ready(&c, ph, sizeof ph), 1);

    /* the state cannot be fsynced: what needs a commit is refused, and not half-kept */
    n0 = faults_injected();
    set_faults("fsync EIO state.db\n");
    r = NULL;
    qd_err e = qd_client_hello(&c, &dev, "esp32", &r);
    cJSON_Delete(r);
    assert_int_equal(e, QD_EIO);
    assert_true(strstr(qd_errmsg(), "not recorded") != NULL);
    assert_true(faults_injected() > n0);

    /* another writer holds the database: EBUSY within its 250 ms, then served again */
    set_faults("");
    char db[1300];
    snprintf(db, sizeof db, "%s/state.db", statedir);
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    r = NULL;
    e = qd_client_hello(&c, &dev, "esp32", &r);
    cJSON_Delete(r);
    assert_int_equal(e, QD_EBUSY);
    assert_int_equal(ready(&c, ph, sizeof ph), 1);
    sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(h);

    /* the faults cleared: the same kind of request succeeds, its model fetches and verifies */
    int64_t before = version_of(&c, &dev);
    x.latency_ms = lat;
    r = NULL;
    assert_int_equal(qd_client_report(&c, &dev, &x, &r), QD_OK);
    cJSON_Delete(r);
    int64_t now = version_of(&c, &dev);
    assert_true(now > before);
    struct qd_client_model m;
    assert_int_equal(qd_client_fetch(&c, &dev, NULL, 0, 0, NULL, 0, pk, &m), QD_OK);
    assert_int_equal(m.m.version, now);
    assert_int_equal(qd_client_ack(&c, &dev, m.m.version, m.m.sha), QD_OK);
    qd_client_model_fini(&m);

    /* and after a restart every version replied to is there, the acked one fetches again */
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    pid = -1;
    pid = start_with(0);
    wait_ready(&c, 120);
    assert_int_equal(version_of(&c, &dev), now);
    assert_int_equal(qd_client_fetch(&c, &dev, NULL, now, 0, NULL, 0, pk, &m), QD_OK);
    char sha[65], file[1400];
    snprintf(sha, sizeof sha, "%s", m.m.sha);
    qd_client_model_fini(&m);

    /* its model file damaged, then missing: noticed at the fetch, built again, fetched */
    snprintf(file, sizeof file, "%s/models/%s.qm", statedir, sha);
    for (int round = 0; round < 2; round++) {
        kill(pid, SIGTERM);
        assert_int_equal(wait_exit(pid, 30), 0);
        pid = -1;
        if (round == 0) {
            FILE *f = fopen(file, "r+b");
            assert_non_null(f);
            fseek(f, 100, SEEK_SET);
            int ch = fgetc(f);
            fseek(f, 100, SEEK_SET);
            fputc(0x5a ^ ch, f);
            fclose(f);
        } else
            assert_int_equal(unlink(file), 0);
        pid = start_with(0);
        wait_ready(&c, 120);
        int busy = 0;
        while ((e = qd_client_fetch(&c, &dev, NULL, now, 0, NULL, 0, pk, &m)) == QD_EBUSY &&
               busy < 300) {
            busy++;
            usleep(100000);
        }
        assert_int_equal(e, QD_OK);
        assert_true(busy >= 1); /* it was noticed, not served damaged */
        assert_string_equal(m.m.sha, sha);
        qd_client_model_fini(&m);
        char *b = slurp(file), got[65];
        struct stat fs;
        assert_int_equal(stat(file, &fs), 0);
        qd_proto_sha256_hex((uint8_t *)b, (size_t)fs.st_size, got);
        assert_string_equal(got, sha); /* and the file is whole again */
        free(b);
    }
    kill(pid, SIGTERM);
    assert_int_equal(wait_exit(pid, 30), 0);
    pid = -1;
    qd_client_close(&c);
}

struct killer {
    pid_t pid;
    int delay_us;
};

static void *kill_later(void *p)
{
    struct killer *k = p;
    usleep((useconds_t)k->delay_us);
    kill(k->pid, SIGKILL);
    return NULL;
}

/* The daemon's version and acked version of every device (admin's registry). */
static void registry_versions(struct qd_sim *s, int64_t *ver, int64_t *ack)
{
    cJSON *list = devices(&s->c, &s->admin);
    for (int i = 0; i < s->n; i++) {
        cJSON *x = dev_of(list, s->dev[i].who.id);
        assert_non_null(x);
        ver[i] = (int64_t)cJSON_GetObjectItem(x, "version")->valuedouble;
        ack[i] = (int64_t)cJSON_GetObjectItem(x, "acked")->valuedouble;
    }
    cJSON_Delete(list);
}

static void kill9_at_random_instants(void **st)
{
    real_data_dir("fashion-mnist/t10k-images-idx3-ubyte.gz", data_dir, sizeof data_dir);
    snprintf(control, sizeof control, "tcp://127.0.0.1:%d", free_port());
    snprintf(push, sizeof push, "tcp://127.0.0.1:%d", free_port());
    write_conf("[quantd]\nack_timeout_ms = 200\n" BACKBONE);
    pid = start_with(0);
    struct qd_sim s;
    struct qd_sim_opts o = {.control = control,
                            .push = push,
                            .admin_key = adminkey,
                            .data_dir = data_dir,
                            .devices = 12,
                            .images = 0,
                            .timeout_ms = 60000,
                            .quiet = 1,
                            .prefix = "k9"};
    struct qd_client c;
    assert_int_equal(qd_client_open(&c, control, NULL, 20000), QD_OK);
    wait_ready(&c, 300);
    assert_int_equal(qd_sim_open(&s, &o), QD_OK);
    if (qd_sim_provision(&s))
        fail_msg("provision: %s", qd_errmsg());
    for (int i = 0; i < s.n; i++) { /* every device served once before the kills */
        struct qd_client_ctx x = QD_CLIENT_CTX_NONE;
        double t0 = qd_sim_now();
        if (qd_sim_report(&s, i, &x))
            fail_msg("first report of %s: %s (after %.1f s)", s.dev[i].who.id, qd_errmsg(),
                     qd_sim_now() - t0);
    }
    if (qd_sim_collect(&s, 60000, 1))
        fail_msg("first round: %s", qd_errmsg());
    int to = 3000; /* from now on a request the kill cut off is given up after 3 s */
    nn_setsockopt(s.c.req, NN_SOL_SOCKET, NN_RCVTIMEO, &to, sizeof to);
    long acks0 = s.acks;
    const char *env = getenv("QD_KILLS");
    int rounds = env ? atoi(env) : 8, lost = 0, checked = 0, served = 0, cut = 0;
    struct qd_rng rng;
    qd_rng_seed(&rng, 20);
    int64_t ver[12], ack[12];
    for (int k = 0; k < rounds; k++) {
        struct killer kl = {pid, (int)(qd_rng_uniform(&rng) * 2500000)};
        double t0 = qd_sim_now();
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, kill_later, &kl), 0);
        for (int i = 0; i < s.n; i++) { /* a fleet's life: new budgets, builds, fetches, acks */
            struct qd_client_ctx x = QD_CLIENT_CTX_NONE;
            x.latency_ms = 50 + 400 * qd_rng_uniform(&rng);
            x.battery = qd_rng_uniform(&rng);
            if (qd_sim_report(&s, i, &x)) /* (errors once the daemon is gone) */
                cut++;
            else
                served++;
        }
        qd_sim_collect(&s, 2500 - (int)(1000 * (qd_sim_now() - t0)), 1);
        pthread_join(t, NULL);
        waitpid(pid, NULL, 0);
        pid = -1;
        pid = start_with(0);
        wait_ready(&c, 120);
        /* nothing replied to is lost: versions named, acks accepted */
        registry_versions(&s, ver, ack);
        for (int i = 0; i < s.n; i++) {
            lost += ver[i] < s.dev[i].want || ack[i] < s.dev[i].acked;
            if (ver[i] > 0) { /* the model a version names is there and verifies */
                struct qd_client_model m;
                if (qd_client_fetch(&s.c, &s.admin, s.dev[i].who.id, ver[i], 0, NULL, 0, s.pk, &m))
                    fail_msg("round %d: %s version %lld: %s", k, s.dev[i].who.id, (long long)ver[i],
                             qd_errmsg());
                qd_client_model_fini(&m);
                checked++;
            }
        }
        assert_int_equal(lost, 0);
        assert_int_equal(qd_sim_hello_all(&s), QD_OK);
    }
    /* in the end every device converges on what the daemon decided for it */
    for (int i = 0; i < s.n; i++) {
        struct qd_client_ctx x = QD_CLIENT_CTX_NONE;
        x.battery = 1;
        assert_int_equal(qd_sim_report(&s, i, &x), QD_OK);
    }
    if (qd_sim_collect(&s, 60000, 1))
        fail_msg("converge: %s", qd_errmsg());
    registry_versions(&s, ver, ack);
    for (int i = 0; i < s.n; i++)
        assert_true(ver[i] > 0 && ack[i] == ver[i]);
    fprintf(stderr,
            "kill -9: %d rounds; reports served %d, cut off %d; after the restarts %d models "
            "fetched and verified, 0 versions or acks lost\n",
            rounds, served, cut, checked);
    assert_true((served > 0 || s.acks > acks0) && cut > 0); /* the kills fell amid the work */
    qd_sim_close(&s);
    kill(pid, SIGTERM);
    assert_int_equal(wait_exit(pid, 30), 0);
    pid = -1;
    qd_client_close(&c);
}

int main(void)
{
    if (sodium_init() < 0 || !getenv("QUANTD") || !getenv("QD_FAULTSHIM"))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keys_never_replaced),      cmocka_unit_test(device_keys_sealed_on_tcp),
        cmocka_unit_test(limits_name_themselves),   cmocka_unit_test(faults_refused_then_recovered),
        cmocka_unit_test(kill9_at_random_instants),
    };
    return cmocka_run_group_tests(tests, hostile_setup, teardown);
}

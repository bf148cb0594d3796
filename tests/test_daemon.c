/* quantd end to end: the real daemon ($QUANTD) on ipc:// paths in a temp dir, started with no
 * artifacts so that it trains a small backbone in the background while already answering.
 *   - bad config: exit 2 naming the key and the line;
 *   - before the backbone is ready: health says how far it got, device ops get ENOTREADY;
 *   - malformed, oversized, unauthenticated, replayed and mistyped messages: error replies with
 *     their stable codes, and the daemon still serving;
 *   - 50 simulated devices of seven profiles register, report, receive and verify their models,
 *     run them on test images and ack; the context changes; quantd is killed with SIGKILL right
 *     after the decisions were replied and before any ack; on restart every acked version is
 *     still there and every unacked push is delivered;
 *   - SIGHUP reloads (a bad file is refused, serving goes on); SIGTERM exits 0 (and, in the
 *     sanitizer build, with no leak). */
#include "daemonfix.h"

#include <signal.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/client.h"
#include "client/selftest.h"
#include "client/sim.h"
#include "nn/kernels.h"
#include "policy/device.h"
#include "proto/pack.h"
#include "proto/transport.h"

/* The reply code of a raw request. */
static const char *raw_code(struct qd_client *c, const void *msg, size_t len, char *buf,
                            size_t blen)
{
    char *rep;
    size_t n;
    qd_err e = qd_client_call_raw(c, msg, len, &rep, &n);
    if (e)
        fail_msg("raw request: %s", qd_errmsg());
    cJSON *j = cJSON_Parse(rep);
    free(rep);
    cJSON *code = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code");
    snprintf(buf, blen, "%s", cJSON_IsString(code) ? code->valuestring
                              : cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")) ? "OK" : "?");
    cJSON_Delete(j);
    return buf;
}

static void sealed(const char *json, const uint8_t *key, char **out)
{
    assert_int_equal(qd_proto_seal(json, key, out), QD_OK);
}

static void bad_config_exits_2(void **st)
{
    char bad[1200];
    snprintf(bad, sizeof bad, "%s/bad.conf", tmp);
    FILE *f = fopen(bad, "w");
    fprintf(f, "[quantd]\nstate_dir = %s/never\n\nack_timeot_ms = 5\n", tmp);
    fclose(f);
    char cmd[4000], err[2000] = "";
    snprintf(cmd, sizeof cmd, "%s -c %s 2>&1", getenv("QUANTD"), bad);
    assert_int_equal(run_capture(cmd, err, sizeof err), 2);
    assert_non_null(strstr(err, ":4:"));
    assert_non_null(strstr(err, "ack_timeot_ms"));
    f = fopen(bad, "w");
    fprintf(f, "[quantd]\nack_timeout_ms = soon\n");
    fclose(f);
    assert_int_equal(run_capture(cmd, err, sizeof err), 2);
    assert_non_null(strstr(err, ":2:"));
    snprintf(cmd, sizeof cmd, "%s --state-dir %s/x --threads 0 2>&1", getenv("QUANTD"), tmp);
    assert_int_equal(run_capture(cmd, err, sizeof err), 2);
    assert_non_null(strstr(err, "threads"));
    snprintf(cmd, sizeof cmd, "%s --state-dir %s/x --supernet-kd-self 1 --supernet-sandwich 1 2>&1",
             getenv("QUANTD"), tmp);
    assert_int_equal(run_capture(cmd, err, sizeof err), 2);
    assert_non_null(strstr(err, "supernet_sandwich >= 2"));
    snprintf(cmd, sizeof cmd, "%s --state-dir %s/x --supernet-bn-sets 5 2>&1", getenv("QUANTD"),
             tmp);
    assert_int_equal(run_capture(cmd, err, sizeof err), 2);
    assert_non_null(strstr(err, "supernet_bn_sets"));
}

static void serves_while_training_then_rejects_bad_input(void **st)
{
    if (!have_data)
        skip();
    no_cache = 1; /* it watches the training: this daemon (and this file's, on its state) train */
    pid = start(conf);
    struct qd_client c;
    assert_int_equal(qd_client_open(&c, control, NULL, 20000), QD_OK);
    char adminkey[1200];
    snprintf(adminkey, sizeof adminkey, "%s/state/admin.key", tmp);
    /* health answers at once, before the backbone; keys work; device ops wait */
    char ph[64];
    int r = -1;
    for (int i = 0; i < 100 && r < 0; i++) {
        r = ready(&c, ph, sizeof ph);
        if (r < 0)
            usleep(50000);
    }
    assert_true(r >= 0);
    struct qd_ident admin;
    assert_int_equal(qd_ident_init(&admin, "admin", adminkey), QD_OK);
    cJSON *k = op("keys");
    cJSON_AddStringToObject(k, "action", "add");
    cJSON_AddStringToObject(k, "id", "early");
    qd_err e;
    cJSON *rep = call(&c, &admin, k, &e);
    assert_int_equal(e, QD_OK);
    struct qd_ident early;
    assert_int_equal(
        qd_ident_init(&early, "early", cJSON_GetObjectItem(rep, "key")->valuestring), QD_OK);
    cJSON_Delete(rep);
    int saw_notready = 0;
    for (int i = 0; i < 6000; i++) {
        cJSON *h = NULL;
        e = qd_client_hello(&c, &early, "esp32", &h);
        cJSON_Delete(h);
        if (e == QD_ENOTREADY) {
            saw_notready = 1;
            assert_true(ready(&c, ph, sizeof ph) == 0 || !strcmp(ph, "ready"));
            usleep(100000);
            continue;
        }
        assert_int_equal(e, QD_OK);
        break;
    }
    assert_true(saw_notready);
    wait_ready(&c, 600);

    /* now the bad input, each with its code */
    char code[32];
    uint8_t key[32], wrong[32];
    memcpy(key, early.key, 32);
    randombytes_buf(wrong, sizeof wrong);
    const char *plain[][2] = {
        {"not json", "EFORMAT"},
        {"{\"v\":1,\"op\":\"health\"", "EFORMAT"},
        {"{\"v\":9,\"op\":\"health\"}", "EVERSION"},
        {"{\"v\":1,\"op\":\"explode\"}", "EOP"},
        {"{\"v\":1,\"op\":\"devices\"}", "EINVAL"},                 /* no from/nonce */
        {"{\"v\":1,\"op\":\"devices\",\"from\":\"admin\",\"nonce\":1}", "EAUTH"}, /* no mac */
        {"{\"v\":1,\"op\":\"report\",\"from\":\"nobody\",\"nonce\":1}", "EAUTH"},
        {"\x01\x02\x03\xff", "EFORMAT"},
    };
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (strcmp(raw_code(&c, plain[i][0], strlen(plain[i][0]), code, sizeof code),
                   plain[i][1]))
            fail_msg("'%s' got %s, want %s", plain[i][0], code, plain[i][1]);
    /* oversized (limit 4096) */
    char *big = malloc(20000);
    memset(big, ' ', 20000);
    memcpy(big, "{\"v\":1,\"op\":\"health\"}", 21);
    assert_string_equal(raw_code(&c, big, 20000, code, sizeof code), "ETOOBIG");
    free(big);
    /* MAC under the wrong key; a replay; a stale nonce; mistyped and out-of-range fields */
    char body[512], *m;
    long long now = (long long)qd_proto_now_us();
    snprintf(body, sizeof body, "{\"v\":1,\"op\":\"report\",\"from\":\"early\",\"nonce\":%lld}",
             now);
    sealed(body, wrong, &m);
    assert_string_equal(raw_code(&c, m, strlen(m), code, sizeof code), "EAUTH");
    free(m);
    sealed(body, key, &m);
    assert_string_equal(raw_code(&c, m, strlen(m), code, sizeof code), "OK");
    assert_string_equal(raw_code(&c, m, strlen(m), code, sizeof code), "EREPLAY");
    free(m);
    snprintf(body, sizeof body, "{\"v\":1,\"op\":\"report\",\"from\":\"early\",\"nonce\":%lld}",
             now - 3600LL * 1000000);
    sealed(body, key, &m);
    assert_string_equal(raw_code(&c, m, strlen(m), code, sizeof code), "EREPLAY");
    free(m);
    const char *fields[][2] = {
        {"\"op\":\"report\",\"battery\":\"full\"", "EINVAL"},
        {"\"op\":\"report\",\"battery\":1.5", "EINVAL"},
        {"\"op\":\"report\",\"free_ram\":-4", "EINVAL"},
        {"\"op\":\"hello\",\"profile\":\"../../../etc/passwd\"", "EINVAL"},
        {"\"op\":\"hello\",\"profile\":\"no-such-part\"", "EINVAL"},
        {"\"op\":\"hello\"", "EINVAL"},
        {"\"op\":\"ack\",\"version\":99,\"sha256\":\"00\"", "ENOENT"},
        {"\"op\":\"ack\",\"version\":\"one\",\"sha256\":\"00\"", "EINVAL"},
        {"\"op\":\"fetch\",\"version\":12345", "ENOENT"},
        {"\"op\":\"devices\"", "EAUTH"},  /* admin op with a device key */
        {"\"op\":\"decide\",\"device\":\"sim-00001\"", "ENODEV"},
        {"\"op\":\"decide\",\"profile\":\"esp32\",\"free_flash\":10", "EBUDGET"},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        snprintf(body, sizeof body, "{\"v\":1,%s,\"from\":\"early\",\"nonce\":%lld}",
                 fields[i][0], (long long)qd_proto_now_us());
        sealed(body, key, &m);
        if (strcmp(raw_code(&c, m, strlen(m), code, sizeof code), fields[i][1]))
            fail_msg("%s got %s, want %s", fields[i][0], code, fields[i][1]);
        free(m);
    }
    /* fuzz: 600 mutations of valid requests (flipped, dropped and inserted bytes); each gets a
     * reply that is JSON, and the daemon stays up (ASan checks every one in the sanitizer run) */
    struct qd_rng fr;
    qd_rng_seed(&fr, 77);
    const char *seeds[] = {"\"op\":\"report\",\"battery\":0.5", "\"op\":\"hello\",\"profile\":\"esp32\"",
                           "\"op\":\"ack\",\"version\":1,\"sha256\":\"ab\"", "\"op\":\"fetch\""};
    for (int t = 0; t < 600; t++) {
        snprintf(body, sizeof body, "{\"v\":1,%s,\"from\":\"early\",\"nonce\":%lld}",
                 seeds[t % 4], (long long)qd_proto_now_us());
        sealed(body, key, &m);
        size_t n = strlen(m);
        char buf[1024];
        memcpy(buf, m, n);
        free(m);
        int muts = 1 + (int)qd_rng_below(&fr, 4);
        for (int k = 0; k < muts && n > 2; k++) {
            size_t at = qd_rng_below(&fr, (uint32_t)n);
            int kind = (int)qd_rng_below(&fr, 3);
            if (kind == 0)
                buf[at] = (char)qd_rng_below(&fr, 256);
            else if (kind == 1) {
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
            } else if (n < sizeof buf - 1) {
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = "{}[]\",:0a\\"[qd_rng_below(&fr, 10)];
                n++;
            }
        }
        char *rep;
        size_t rn;
        assert_int_equal(qd_client_call_raw(&c, buf, n, &rep, &rn), QD_OK);
        cJSON *rj = cJSON_Parse(rep);
        if (!rj && !(rn > 0 && rep[0] != '{'))
            fail_msg("fuzz %d: a reply that is neither JSON nor a model", t);
        cJSON_Delete(rj);
        free(rep);
    }
    assert_int_equal(ready(&c, ph, sizeof ph), 1);
    /* larger than the transport's cut-off: no reply, the connection is dropped; the daemon
     * goes on serving other clients */
    struct qd_client c2;
    assert_int_equal(qd_client_open(&c2, control, NULL, 1000), QD_OK);
    size_t hn = 2 << 20;
    char *huge = malloc(hn);
    memset(huge, '{', hn);
    char *rr;
    size_t rn;
    qd_err he = qd_client_call_raw(&c2, huge, hn, &rr, &rn);
    if (!he)
        free(rr);
    free(huge);
    qd_client_close(&c2);
    /* still serving, and the errors were counted */
    assert_int_equal(ready(&c, ph, sizeof ph), 1);
    cJSON *s = call(&c, &admin, op("stats"), &e);
    assert_int_equal(e, QD_OK);
    assert_true(cJSON_GetObjectItem(s, "errors")->valuedouble >= 20);
    cJSON_Delete(s);
    qd_client_close(&c);
}

static void fleet_survives_kill_9(void **st)
{
    if (!have_data)
        skip();
    char adminkey[1200];
    snprintf(adminkey, sizeof adminkey, "%s/state/admin.key", tmp);
    struct qd_sim s;
    char store[1200];
    snprintf(store, sizeof store, "%s/agents", tmp);
    struct qd_sim_opts o = {.control = control, .push = push, .admin_key = adminkey,
                            .data_dir = data_dir, .devices = 50, .images = 50,
                            .timeout_ms = 20000, .quiet = 1, .store_dir = store};
    qd_kernels_init(1);
    assert_int_equal(qd_sim_open(&s, &o), QD_OK);
    if (qd_sim_provision(&s))
        fail_msg("provision: %s", qd_errmsg());
    /* round 1: each device's free flash is the least any policy needs on its profile (from
     * the EBUDGET reply of a decide for 1 byte: all 2-bit weights); round 2: flash is no
     * longer short but energy is, at the least any policy needs (the same reply), which on
     * the MCUs and CPUs the 2-bit policy exceeds (unpacking costs more per MAC than 8-bit
     * weights), so their decisions change whatever the backbone's sensitivity says (a
     * one-epoch backbone may well measure 2 bits as harmless). On a bit-serial part the 2-bit
     * policy is also the least-energy one, so nothing forces a change there. */
    enum { P = QD_DEVICE_PARTS };
    double least[P] = {0}, least_mj[P] = {0};
    int serial[P] = {0};
    for (int p = 0; p < P; p++) {
        struct qd_device dv;
        char path[1200];
        snprintf(path, sizeof path, "%s/etc/devices/%s.ini", getenv("QD_SOURCE_DIR"),
                 qd_device_parts[p]);
        assert_int_equal(qd_device_load(path, &dv), QD_OK);
        serial[p] = dv.pj_mac[2] < dv.pj_mac[8];
        assert_string_equal(s.dev[p].profile, qd_device_parts[p]);
        cJSON *j = op("decide"), *r = NULL;
        cJSON_AddStringToObject(j, "profile", s.dev[p].profile);
        cJSON_AddNumberToObject(j, "free_flash", 1);
        assert_int_equal(qd_client_call(&s.c, &s.admin, j, &r, NULL, NULL), QD_EBUDGET);
        cJSON *sm = cJSON_GetObjectItem(r, "smallest");
        least[p] = cJSON_GetObjectItem(sm, "flash")->valuedouble;
        least_mj[p] = cJSON_GetObjectItem(sm, "energy_mj")->valuedouble;
        assert_true(least[p] > 1000 && least_mj[p] > 0);
        cJSON_Delete(r);
    }
    for (int i = 0; i < s.n; i++) {
        struct qd_client_ctx tight = QD_CLIENT_CTX_NONE;
        tight.battery = 1.0;
        tight.free_flash = least[i % P];
        if (qd_sim_report(&s, i, &tight))
            fail_msg("report: %s", qd_errmsg());
    }
    if (qd_sim_collect(&s, 120000, 1))
        fail_msg("round 1: %s", qd_errmsg());
    int64_t v1[50];
    double acc1 = 0;
    for (int i = 0; i < s.n; i++) {
        assert_true(s.dev[i].store->version >= 1 && s.dev[i].acked == s.dev[i].want);
        assert_true(s.dev[i].flash <= least[i % P]);
        assert_true(s.dev[i].acc >= 0); /* each device ran its verified model */
        acc1 += s.dev[i].acc / s.n;
        v1[i] = s.dev[i].want;
    }
    assert_true(acc1 > 0.2); /* the smallest models, still better than chance */
    assert_int_equal(s.rejected, 0);
    assert_int_equal(s.selftest_failed, 0); /* every model's self-test passed on the device */

    /* the context changes; the daemon decides (replies say so) and dies before any ack */
    int changed = 0, forced = 0;
    for (int i = 0; i < s.n; i++) {
        struct qd_client_ctx roomy = QD_CLIENT_CTX_NONE;
        roomy.battery = 1.0;
        roomy.energy_mj = least_mj[i % P] * 1.000001;
        assert_int_equal(qd_sim_report(&s, i, &roomy), QD_OK);
        forced += !serial[i % P];
        changed += !serial[i % P] && s.dev[i].want != v1[i];
    }
    if (changed < forced || forced < 40)
        fail_msg("%d of the %d decisions the least energy forces changed (device 0: %s)",
                 changed, forced, s.dev[0].policy);
    /* two requests an eavesdropper captured, an admin's and a device's decide: accepted once
     * now, and after the kill -9 and restart still replays */
    char *cap[2], code[32];
    struct qd_ident *who[2] = {&s.admin, &s.dev[0].who};
    for (int k = 0; k < 2; k++) {
        int64_t n = qd_proto_now_us();
        who[k]->nonce = n = n > who[k]->nonce ? n : who[k]->nonce + 1;
        char js[256];
        snprintf(js, sizeof js, "{\"v\":1,\"op\":\"%s\",\"from\":\"%s\",\"nonce\":%lld}",
                 k ? "decide" : "stats", who[k]->id, (long long)n);
        sealed(js, who[k]->key, &cap[k]);
        assert_string_equal(raw_code(&s.c, cap[k], strlen(cap[k]), code, sizeof code), "OK");
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    pid = start(conf);
    struct qd_client c;
    assert_int_equal(qd_client_open(&c, control, NULL, 20000), QD_OK);
    wait_ready(&c, 300);
    for (int k = 0; k < 2; k++) {
        assert_string_equal(raw_code(&c, cap[k], strlen(cap[k]), code, sizeof code), "EREPLAY");
        free(cap[k]);
    }
    struct qd_ident admin;
    assert_int_equal(qd_ident_init(&admin, "admin", adminkey), QD_OK);
    /* every acked version is still there, every decided one too */
    cJSON *l = devices(&c, &admin);
    for (int i = 0; i < s.n; i++) {
        cJSON *x = dev_of(l, s.dev[i].who.id);
        assert_non_null(x);
        assert_int_equal((int64_t)cJSON_GetObjectItem(x, "acked")->valuedouble, v1[i]);
        assert_int_equal((int64_t)cJSON_GetObjectItem(x, "version")->valuedouble,
                         s.dev[i].want);
    }
    cJSON_Delete(l);
    /* the devices reconnect; every unacked push is delivered */
    assert_int_equal(qd_sim_hello_all(&s), QD_OK);
    if (qd_sim_collect(&s, 120000, 1))
        fail_msg("after restart: %s", qd_errmsg());
    /* each device's agent store holds what it acked, whole, behind current.qm */
    for (int i = 0; i < s.n; i++) {
        struct qd_agent_store as;
        char dir[1400];
        snprintf(dir, sizeof dir, "%s/%s", store, s.dev[i].who.id);
        assert_int_equal(qd_agent_store_open(&as, dir), QD_OK);
        assert_int_equal(as.version, s.dev[i].want);
        assert_string_equal(as.sha, s.dev[i].store->sha);
        qd_agent_store_close(&as);
    }
    /* the devices held the version before: the new ones came as patches against it */
    if (!(s.packed[QD_PACK_PATCH] >= changed / 2))
        fail_msg("%ld of %d changed models came as patches (%ld zstd, %ld raw)",
                 s.packed[QD_PACK_PATCH], changed, s.packed[QD_PACK_ZSTD], s.packed[QD_PACK_RAW]);
    print_message("fetched %ld models: %ld raw, %ld zstd, %ld patches; %ld bytes on the wire for "
                  "%ld bytes of models\n", s.verified, s.packed[0], s.packed[1], s.packed[2],
                  s.wire_bytes, s.model_bytes);
    l = devices(&c, &admin);
    double acc2 = 0;
    for (int i = 0; i < s.n; i++) {
        cJSON *x = dev_of(l, s.dev[i].who.id);
        assert_int_equal((int64_t)cJSON_GetObjectItem(x, "acked")->valuedouble, s.dev[i].want);
        acc2 += s.dev[i].acc / s.n;
    }
    cJSON_Delete(l);
    /* every device runs its new model, well above chance (not necessarily above the 2-bit
     * ones: on 50 images of a one-epoch backbone the two are within noise of each other) */
    if (!(acc2 > 0.5))
        fail_msg("mean accuracy %.3f after the change, %.3f before (device 0: %s)", acc2, acc1,
                 s.dev[0].policy);
    assert_int_equal(s.rejected, 0);
    /* identical policies share one blob */
    qd_err e;
    cJSON *stt = call(&c, &admin, op("stats"), &e);
    assert_int_equal(e, QD_OK);
    assert_true(cJSON_GetObjectItem(stt, "blobs")->valuedouble < 2 * s.n / 4);
    cJSON_Delete(stt);
    /* a device's record has its versions and decisions */
    cJSON *dj = op("device");
    cJSON_AddStringToObject(dj, "id", s.dev[1].who.id);
    cJSON *d = call(&c, &admin, dj, &e);
    assert_int_equal(e, QD_OK);
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "device"),
                                                       "versions")) >= 1);
    cJSON_Delete(d);
    qd_sim_close(&s);
    qd_client_close(&c);
}

/* The Python fleet client (stdlib only, speaking SP itself) against the same daemon. */
/* A valid Ed25519 public key that signed nothing of this daemon's. */
#define PUB_OTHER "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"

static void python_client(void **st)
{
    if (!have_data)
        skip();
    char cmd[4096], out[8192];
    const char *ops[][2] = {{"health", "\"ready\": true"},
                            {"stats", "\"devices\": "},
                            {"decide profile=esp32 battery=0.3", "\"policy\": "},
                            {"decide profile=esp32 free_flash=10", "\"EBUDGET\""},
                            {"no-such-op", "\"EOP\""},
                            /* a device's model, fetched raw in chunks and verified (Ed25519
                             * with Debian's python3-nacl), or refused under another key */
                            {"fetch-model device=sim-00003", "\"verified\": true"},
                            {"fetch-model device=sim-00003 pub=" PUB_OTHER, "\"EAUTH\""},
                            {"fetch-model device=nobody", "\"ENODEV\""}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 %s/client/python/quantd_client.py --control %s --admin-key "
                 "%s/state/admin.key %s 2>&1",
                 getenv("QD_SOURCE_DIR"), control, tmp, ops[i][0]);
        run_capture(cmd, out, sizeof out);
        if (!strstr(out, ops[i][1]))
            fail_msg("python client '%s': %s", ops[i][0], out);
    }
    /* the ops as methods, from a script */
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import sys; sys.path.insert(0, '%s/client/python'); "
             "import quantd_client as q; c = q.Client('%s', who='admin', "
             "key=open('%s/state/admin.key').read()); "
             "print(c.health()['ready'], c.devices(limit=5)['total'] > 0, "
             "c.device('sim-00003')['device']['id'], c.decide(profile='esp32', battery=0.5)['ok'])"
             "\" 2>&1",
             getenv("QD_SOURCE_DIR"), control, tmp);
    run_capture(cmd, out, sizeof out);
    if (!strstr(out, "True True sim-00003 True"))
        fail_msg("python client methods: %s", out);
}

/* The same daemon, restarted with gate_steps set: on this start it trains a gate for its
 * supernet (phase "gate") and then decides with it (health says so); every decision within
 * budget, and a device gets its model pushed, verified and acked. */
static void gate_decides(void **st)
{
    if (!have_data)
        skip();
    kill(pid, SIGTERM);
    assert_int_equal(wait_exit(pid, 60), 0);
    pid = -1;
    gate_steps = 40;
    write_conf(NULL);
    pid = start(conf);
    struct qd_client c;
    assert_int_equal(qd_client_open(&c, control, push, 20000), QD_OK);
    wait_ready(&c, 300);
    qd_err e;
    cJSON *h = call(&c, NULL, op("health"), &e);
    assert_int_equal(e, QD_OK);
    assert_string_equal(cJSON_GetObjectItem(h, "decider")->valuestring, "gate");
    cJSON_Delete(h);
    char adminkey[1200];
    snprintf(adminkey, sizeof adminkey, "%s/state/admin.key", tmp);
    struct qd_ident admin;
    assert_int_equal(qd_ident_init(&admin, "admin", adminkey), QD_OK);
    static const char *const profs[] = {"cortex-m4", "esp32", "rp2040"};
    for (int i = 0; i < 12; i++) {
        cJSON *j = op("decide");
        cJSON_AddStringToObject(j, "profile", profs[i % 3]);
        cJSON_AddNumberToObject(j, "battery", i / 12.0);
        cJSON_AddNumberToObject(j, "free_flash", 60000 + 10000 * i);
        cJSON *r = call(&c, &admin, j, &e);
        if (e == QD_EBUDGET) {
            cJSON_Delete(r);
            continue;
        }
        assert_int_equal(e, QD_OK);
        cJSON *cs = cJSON_GetObjectItem(r, "costs"), *b = cJSON_GetObjectItem(r, "budget");
        assert_true(cJSON_GetObjectItem(cs, "flash")->valuedouble <=
                    cJSON_GetObjectItem(b, "flash")->valuedouble);
        cJSON_Delete(r);
    }
    /* one device end to end */
    uint8_t pk[QD_PROTO_PUB_BYTES];
    assert_int_equal(qd_client_sign_pub(&c, &admin, pk), QD_OK);
    cJSON *k = op("keys");
    cJSON_AddStringToObject(k, "action", "add");
    cJSON_AddStringToObject(k, "id", "gated");
    cJSON *kr = call(&c, &admin, k, &e);
    assert_int_equal(e, QD_OK);
    struct qd_ident who;
    assert_int_equal(qd_ident_init(&who, "gated", cJSON_GetObjectItem(kr, "key")->valuestring),
                     QD_OK);
    cJSON_Delete(kr);
    assert_int_equal(qd_client_subscribe(&c, "gated"), QD_OK);
    /* a subscriber with no key, to every topic: it may learn that a version is out, never
     * the model */
    int spy;
    assert_int_equal(qd_tp_sub_connect(push, &spy), QD_OK);
    assert_int_equal(qd_tp_subscribe(spy, "", 0), QD_OK);
    cJSON *r = NULL;
    assert_int_equal(qd_client_hello(&c, &who, "esp32", &r), QD_OK);
    cJSON_Delete(r);
    usleep(200000);
    struct qd_client_ctx ctx = QD_CLIENT_CTX_NONE;
    ctx.battery = 0.5;
    assert_int_equal(qd_client_report(&c, &who, &ctx, &r), QD_OK);
    int64_t v = (int64_t)cJSON_GetObjectItem(r, "version")->valuedouble;
    cJSON_Delete(r);
    /* the notification carries no model; the fetch verifies the signed manifest */
    struct qd_proto_note note;
    for (int tries = 0; tries < 50; tries++) {
        e = qd_client_notify_recv(&c, 1000, &note);
        if (!e && note.version == v)
            break;
    }
    assert_int_equal(e, QD_OK);
    assert_int_equal(note.version, v);
    struct qd_client_model m;
    assert_int_equal(qd_client_fetch(&c, &who, NULL, note.version, 0, NULL, 0, pk, &m), QD_OK);
    assert_string_equal(m.m.sha, note.sha);
    assert_int_equal(m.m.size, note.size);
    assert_string_equal(m.m.device, "gated");
    print_message("version %lld: %zu bytes, fetched %s as %zu bytes in %d chunks\n",
                  (long long)m.m.version, m.len, m.encoding, m.wire, m.chunks);
    /* the self-test: the daemon's digest reproduced here; another digest, or a changed
     * model, fails it */
    assert_int_equal(qd_selftest_check(m.qm, m.len, &m.m), QD_OK);
    struct qd_manifest mf = m.m;
    mf.test_sha[5] = mf.test_sha[5] == 'a' ? 'b' : 'a';
    assert_int_equal(qd_selftest_check(m.qm, m.len, &mf), QD_ESELFTEST);
    mf = m.m;
    mf.test_seed++;
    assert_int_equal(qd_selftest_check(m.qm, m.len, &mf), QD_ESELFTEST);
    /* installed already: the same version again is a rollback, refused */
    struct qd_client_model m2;
    assert_int_equal(qd_client_fetch(&c, &who, NULL, note.version, note.version, NULL, 0, pk, &m2),
                     QD_EROLLBACK);
    assert_int_equal(qd_client_ack(&c, &who, m.m.version, m.m.sha), QD_OK);
    int heard = 0;
    void *b;
    size_t bn;
    while (!qd_tp_recv(spy, 300, &b, &bn)) {
        struct qd_proto_note sn;
        assert_true(bn < 256); /* the model is m.len bytes */
        assert_int_equal(qd_proto_note_decode(b, bn, &sn), QD_OK);
        heard += sn.version == v;
        qd_tp_free(b);
    }
    assert_true(heard >= 1);
    assert_true(m.len > 3 * 4096); /* fetched in chunks (fetch_chunk = 4096) */
    cJSON *sq = call(&c, &admin, op("stats"), &e);
    assert_int_equal(e, QD_OK);
    assert_true(cJSON_GetObjectItem(sq, "fetches")->valuedouble >= 4);
    cJSON_Delete(sq);
    qd_tp_close(spy);
    /* another device may not fetch this one's models; admin may */
    k = op("keys");
    cJSON_AddStringToObject(k, "action", "add");
    cJSON_AddStringToObject(k, "id", "other");
    kr = call(&c, &admin, k, &e);
    assert_int_equal(e, QD_OK);
    struct qd_ident other;
    assert_int_equal(qd_ident_init(&other, "other", cJSON_GetObjectItem(kr, "key")->valuestring),
                     QD_OK);
    cJSON_Delete(kr);
    assert_int_equal(qd_client_fetch(&c, &other, "gated", v, 0, NULL, 0, pk, &m2), QD_EAUTH);
    assert_int_equal(qd_client_fetch(&c, &other, NULL, 0, 0, NULL, 0, pk, &m2), QD_ENOENT);
    assert_int_equal(qd_client_fetch(&c, &admin, "gated", v, 0, NULL, 0, pk, &m2), QD_OK);
    assert_memory_equal(m2.qm, m.qm, m.len);
    qd_client_model_fini(&m2);
    /* a manifest the device refuses: pinned to another key, the daemon's model fails; the
     * device says so, and the refusal is in its events */
    uint8_t pk2[QD_PROTO_PUB_BYTES], sk2[QD_PROTO_SECRET_BYTES];
    crypto_sign_keypair(pk2, sk2);
    e = qd_client_fetch(&c, &who, NULL, v, 0, NULL, 0, pk2, &m2);
    assert_int_equal(e, QD_EAUTH);
    assert_int_equal(qd_client_event(&c, &who, "refused", v, e, qd_errmsg()), QD_OK);
    assert_int_equal(qd_client_event(&c, &who, "bogus", v, e, NULL), QD_EINVAL);
    cJSON *dq = op("device");
    cJSON_AddStringToObject(dq, "id", "gated");
    cJSON *dr = call(&c, &admin, dq, &e);
    assert_int_equal(e, QD_OK);
    cJSON *evs = cJSON_GetObjectItem(cJSON_GetObjectItem(dr, "device"), "events");
    assert_true(cJSON_GetArraySize(evs) >= 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(evs, 0), "kind")->valuestring,
                        "device-refused");
    assert_non_null(strstr(cJSON_GetObjectItem(cJSON_GetArrayItem(evs, 0), "detail")->valuestring,
                           "EAUTH"));
    cJSON_Delete(dr);
    qd_client_model_fini(&m);
    qd_client_close(&c);
}

static void reload_and_stop(void **st)
{
    if (!have_data)
        skip();
    struct qd_client c;
    assert_int_equal(qd_client_open(&c, control, NULL, 20000), QD_OK);
    char ph[64];
    write_conf("battery_floor = 0.3\n");
    kill(pid, SIGHUP);
    usleep(300000);
    assert_int_equal(ready(&c, ph, sizeof ph), 1);
    FILE *f = fopen(conf, "a");
    fprintf(f, "bogus_key = 1\n");
    fclose(f);
    kill(pid, SIGHUP);
    usleep(300000);
    assert_int_equal(ready(&c, ph, sizeof ph), 1);
    qd_client_close(&c);
    kill(pid, SIGTERM);
    int rc = wait_exit(pid, 60);
    pid = -1;
    assert_int_equal(rc, 0);
    FILE *lg = fopen(logpath, "r");
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, lg);
    buf[n] = 0;
    fclose(lg);
    assert_non_null(strstr(buf, "configuration reloaded"));
    assert_non_null(strstr(buf, "bogus_key"));
}

static void needs_data(void **st)
{
    real_data_dir("fashion-mnist/t10k-images-idx3-ubyte.gz", data_dir, sizeof data_dir);
    write_conf(NULL);
    have_data = 1;
}

int main(void)
{
    if (sodium_init() < 0 || !getenv("QUANTD"))
        return 1;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_config_exits_2),
        cmocka_unit_test(needs_data),
        cmocka_unit_test(serves_while_training_then_rejects_bad_input),
        cmocka_unit_test(fleet_survives_kill_9),
        cmocka_unit_test(python_client),
        cmocka_unit_test(gate_decides),
        cmocka_unit_test(reload_and_stop),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

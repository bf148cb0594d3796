/* quantd under attack and under faults: the real daemon ($QUANTD), with the fault shim
 * ($QD_FAULTSHIM, tests/faultshim.c) preloaded where a test injects failures.
 *   - keys: a key file that cannot be read (EACCES, EMFILE) or is damaged stops the start and
 *     is left as it was; only a missing one is created; the state directory is 0700 and the key
 *     files 0600;
 *   - over tcp:// a device key is never returned in clear (unless keys_in_clear), only sealed
 *     to the caller's one-time key; a request from an unknown id gets the reply a bad MAC
 *     gets. */
#include "daemonfix.h"

#include <sodium.h>
#include <sys/stat.h>

#include "core/file.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keys_never_replaced),
        cmocka_unit_test(device_keys_sealed_on_tcp),
    };
    return cmocka_run_group_tests(tests, hostile_setup, teardown);
}

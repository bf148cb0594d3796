/* The real daemon for end-to-end tests: a temp dir, its config (ipc:// endpoints unless a test
 * changes control/push first), start/stop, and the calls every such test makes. Included by
 * test_daemon.c and test_fleet.c (one copy of the fixture). */
#ifndef QD_TESTS_DAEMONFIX_H
#define QD_TESTS_DAEMONFIX_H

#include "testutil.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include "client/client.h"
#include "core/file.h"
#include "core/md5.h"

static char *tmp;
static char data_dir[1024], control[1200], push[1200], conf[1200], logpath[1200];
static pid_t pid = -1;
static int have_data __attribute__((unused)), gate_steps;

/* A TCP port the OS picks (bound, read, released: the daemon binds it next). */
static inline int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &n), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static inline void write_conf(const char *extra)
{
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f,
            "# test configuration\n[quantd]\ncontrol = %s\npush = %s\nstate_dir = %s/state\n"
            "log_level = info\nack_timeout_ms = 400\nmax_message = 4096\nthreads = 2\n"
            "fetch_chunk = 4096\n" /* models travel in several chunks */
            "[backbone]\nmodel = custom\ndata = fashion-mnist\ndata_dir = %s\n"
            "train_epochs = 1\ntrain_subset = 3000\nsupernet_epochs = 1\nsupernet_bn_sets = 4\n"
            "gate_steps = %d\n"
            "sens_n = 200\ncalib_n = 256\nbn_batches = 4\n"
            "[decide]\ndevices_dir = %s/etc/devices\n%s",
            control, push, tmp, data_dir, gate_steps, getenv("QD_SOURCE_DIR"), extra ? extra : "");
    fclose(f);
}

/* The trained artifacts (backbone, supernet, gate, BatchNorm sets) a daemon's first start makes
 * in its state directory are kept in $QD_TEST_CACHE/<md5 of the config's [backbone] section>/
 * when that is set (scripts/test.sh sets it for one run: the release pass trains them, the
 * sanitizer passes start from them, the same bytes for the same settings), and copied into a
 * new state directory before the daemon starts. Unset (plain ctest), every daemon trains. A
 * test that watches the training itself sets no_cache. */
static int no_cache;

static inline int cache_dir(const char *cfg, char *out, size_t n)
{
    const char *root = getenv("QD_TEST_CACHE");
    uint8_t *b;
    size_t len;
    if (no_cache || !root || !*root || qd_file_read(cfg, &b, &len))
        return 0;
    struct qd_md5 m;
    qd_md5_init(&m);
    int found = 0; /* every [backbone] section (extra text may add one), each to the next */
    for (char *p = (char *)b, *end; (p = strstr(p, "[backbone]")); p = end ? end : p + 1) {
        end = strstr(p + 1, "\n[");
        qd_md5_update(&m, p, end ? (size_t)(end - p) : strlen(p));
        found = 1;
    }
    free(b); /* (qd_file_read NUL-terminates) */
    if (!found)
        return 0;
    uint8_t d[16];
    char hex[33];
    qd_md5_final(&m, d);
    qd_md5_hex(d, hex);
    snprintf(out, n, "%s/%s", root, hex);
    return 1;
}

static inline int cache_file(const char *name)
{
    size_t n = strlen(name);
    return (n > 5 && !strcmp(name + n - 5, ".qdck")) || (n > 5 && !strcmp(name + n - 5, ".gate")) ||
           (n > 3 && !strcmp(name + n - 3, ".bn"));
}

static inline void copy_dir(const char *from, const char *to)
{
    DIR *dd = opendir(from);
    struct dirent *e;
    while (dd && (e = readdir(dd))) {
        if (!cache_file(e->d_name))
            continue;
        char a[1600], b2[1600];
        snprintf(a, sizeof a, "%s/%s", from, e->d_name);
        snprintf(b2, sizeof b2, "%s/%s", to, e->d_name);
        uint8_t *buf;
        size_t len;
        if (!qd_file_read(a, &buf, &len)) {
            assert_int_equal(qd_file_write_atomic(b2, buf, len), QD_OK);
            free(buf);
        }
    }
    if (dd)
        closedir(dd);
}

/* Before a start: the cached artifacts into <tmp>/state (a first start only). */
static inline void cache_seed(const char *cfg)
{
    char dir[1200], state[1200], probe[1300];
    snprintf(state, sizeof state, "%s/state", tmp);
    snprintf(probe, sizeof probe, "%s/backbone.qdck", state);
    if (!cache_dir(cfg, dir, sizeof dir) || !access(probe, F_OK) || access(dir, R_OK))
        return;
    assert_int_equal(qd_file_mkdir_private(state), QD_OK);
    copy_dir(dir, state);
}

/* After the daemon is ready: what it trained, into the cache (written aside, then renamed:
 * two tests keeping the same key at once leave one whole copy). */
static inline void cache_keep(void)
{
    char dir[1200], part[1300], state[1200];
    snprintf(state, sizeof state, "%s/state", tmp);
    if (!cache_dir(conf, dir, sizeof dir) || !access(dir, F_OK))
        return;
    snprintf(part, sizeof part, "%s.%d", dir, (int)getpid());
    assert_int_equal(qd_file_mkdirs(part), QD_OK);
    copy_dir(state, part);
    if (rename(part, dir))
        rm_rf(part);
}

static inline pid_t start(const char *cfg)
{
    cache_seed(cfg);
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) {
        FILE *l = freopen(logpath, "a", stderr);
        (void)l;
        execl(getenv("QUANTD"), "quantd", "-c", cfg, (char *)NULL);
        _exit(127);
    }
    return p;
}

static inline int wait_exit(pid_t p, int seconds)
{
    for (int i = 0; i < seconds * 20; i++) {
        int st;
        if (waitpid(p, &st, WNOHANG) == p)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(50000);
    }
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
    return -1;
}

static inline cJSON *call(struct qd_client *c, struct qd_ident *who, cJSON *req, qd_err *e)
{
    cJSON *r = NULL;
    *e = qd_client_call(c, who, req, &r, NULL, NULL);
    return r;
}

static inline cJSON *op(const char *name)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "op", name);
    return j;
}

static inline int ready(struct qd_client *c, char *phase, size_t len)
{
    qd_err e;
    cJSON *r = call(c, NULL, op("health"), &e);
    if (e) {
        cJSON_Delete(r);
        return -1;
    }
    cJSON *p = cJSON_GetObjectItem(r, "phase");
    snprintf(phase, len, "%s", cJSON_IsString(p) ? p->valuestring : "?");
    int ok = cJSON_IsTrue(cJSON_GetObjectItem(r, "ready"));
    cJSON_Delete(r);
    return ok;
}

static inline void wait_ready(struct qd_client *c, int seconds)
{
    char ph[64] = "";
    for (int i = 0; i < seconds * 10; i++) {
        int r = ready(c, ph, sizeof ph);
        if (r == 1) {
            cache_keep();
            return;
        }
        if (!strcmp(ph, "failed"))
            fail_msg("quantd's backbone failed (see %s)", logpath);
        usleep(100000);
    }
    fail_msg("quantd not ready after %d s (phase %s; see %s)", seconds, ph, logpath);
}

/* Runs cmd (stderr into stdout), its output into err (n bytes); returns its exit status. */
static inline int run_capture(const char *cmd, char *err, size_t n)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t got = fread(err, 1, n - 1, p);
    err[got] = 0;
    int s = pclose(p);
    return WIFEXITED(s) ? WEXITSTATUS(s) : -1;
}

static inline cJSON *devices(struct qd_client *c, struct qd_ident *admin)
{
    cJSON *j = op("devices");
    cJSON_AddNumberToObject(j, "limit", 10000);
    qd_err e;
    cJSON *r = call(c, admin, j, &e);
    if (e)
        fail_msg("devices: %s", qd_errmsg());
    return r;
}

static inline cJSON *dev_of(cJSON *list, const char *id)
{
    cJSON *x;
    cJSON_ArrayForEach(
        x,
        cJSON_GetObjectItem(list, "devices")) if (!strcmp(cJSON_GetObjectItem(x, "id")->valuestring,
                                                          id)) return x;
    return NULL;
}

static inline int setup(void **st)
{
    tmp = make_tmpdir();
    snprintf(control, sizeof control, "ipc://%s/control", tmp);
    snprintf(push, sizeof push, "ipc://%s/push", tmp);
    snprintf(conf, sizeof conf, "%s/quantd.conf", tmp);
    snprintf(logpath, sizeof logpath, "%s/quantd.log", tmp);
    return 0;
}

static inline int teardown(void **st)
{
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (getenv("QD_KEEP"))
        fprintf(stderr, "kept %s\n", tmp);
    else
        rm_rf(tmp);
    free(tmp);
    return 0;
}

#endif

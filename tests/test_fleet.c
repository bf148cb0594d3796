/* Gateways for real: a real quantd on TCP loopback (ports the OS picked) and 50 quantd-agent
 * processes ($QUANTD_AGENT), each with its own store, key and battery (a file, or a command).
 *   - every agent says hello, reports, fetches, verifies, self-tests, installs and acks;
 *   - their batteries run low: each reports (the change passed the hysteresis), gets a new
 *     version, patched against the one it holds, installs and acks it;
 *   - an agent killed before each step of an install (fault injection: QD_AGENT_CRASH_STEP)
 *     comes back on a whole, verified model, says hello, and installs what it missed;
 *   - an agent whose self-test fails (QD_AGENT_FAULT=selftest) keeps its model, does not ack,
 *     and the failure is in the device's events;
 *   - SIGTERM stops every agent with status 0. */
#include "daemonfix.h"

#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>

#include "client/agent.h"
#include "core/file.h"
#include "proto/transport.h"

enum { N = 50 };
static pid_t agent[N];
static char agentconf[N][1200];

static pid_t start_agent(int i, const char *env)
{
    char log[1200];
    snprintf(log, sizeof log, "%s/agent-%d.log", tmp, i);
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) {
        FILE *l = freopen(log, "a", stderr);
        (void)l;
        if (env)
            putenv((char *)env);
        execl(getenv("QUANTD_AGENT"), "quantd-agent", "-c", agentconf[i], (char *)NULL);
        _exit(127);
    }
    return p;
}

static void set_battery(int i, double level)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/battery-%d", tmp, i);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "%.3f\n", level);
    fclose(f);
}

/* Waits until every device in [lo, hi) has acked its current version (above `above`). */
static void wait_acked(struct qd_client *c, struct qd_ident *admin, int lo, int hi,
                       const int64_t *above, int seconds)
{
    for (int t = 0; t < seconds * 5; t++) {
        cJSON *l = devices(c, admin);
        int done = 0;
        for (int i = lo; i < hi; i++) {
            char id[32];
            snprintf(id, sizeof id, "agent-%02d", i);
            cJSON *x = dev_of(l, id);
            int64_t v = x ? (int64_t)cJSON_GetObjectItem(x, "version")->valuedouble : 0;
            int64_t a = x ? (int64_t)cJSON_GetObjectItem(x, "acked")->valuedouble : 0;
            done += v > (above ? above[i] : 0) && a == v;
        }
        cJSON_Delete(l);
        if (done == hi - lo)
            return;
        usleep(200000);
    }
    fail_msg("devices %d..%d: not all acked a new version within %d s", lo, hi - 1, seconds);
}

static int64_t version_of(struct qd_client *c, struct qd_ident *admin, int i, const char *what)
{
    char id[32];
    snprintf(id, sizeof id, "agent-%02d", i);
    cJSON *l = devices(c, admin);
    cJSON *x = dev_of(l, id);
    assert_non_null(x);
    int64_t v = (int64_t)cJSON_GetObjectItem(x, what)->valuedouble;
    cJSON_Delete(l);
    return v;
}

/* The agent's store, reopened: the version it holds, whole behind current.qm. */
static int64_t store_version(int i)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/agent-%d", tmp, i);
    struct qd_agent_store s;
    assert_int_equal(qd_agent_store_open(&s, dir), QD_OK);
    int64_t v = s.version;
    qd_agent_store_close(&s);
    return v;
}

static void agents_deliver(void **st)
{
    if (!have_data)
        skip();
    pid = start(conf);
    /* quantctl status --wait while it trains: one line per change (not a terminal), then ready */
    char cmd[4096], out[16384];
    snprintf(cmd, sizeof cmd, "%s --control %s --state-dir %s/state status --wait 2>&1",
             getenv("QUANTCTL"), control, tmp);
    assert_int_equal(run_capture(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "quantd: ready"));
    for (char *l = out, *nl; (nl = strchr(l, '\n')) && strchr(nl + 1, '\n'); l = nl + 1)
        if (!strncmp(l, nl + 1, (size_t)(nl - l + 1)))
            fail_msg("status --wait repeated a line: %.*s", (int)(nl - l), l);
    snprintf(cmd, sizeof cmd, "%s --help", getenv("QUANTCTL"));
    assert_int_equal(run_capture(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "usage: quantctl"));
    struct qd_client c;
    assert_int_equal(qd_client_open(&c, control, NULL, 20000), QD_OK);
    wait_ready(&c, 300);
    char adminkey[1200], pubf[1200];
    snprintf(adminkey, sizeof adminkey, "%s/state/admin.key", tmp);
    struct qd_ident admin;
    assert_int_equal(qd_ident_init(&admin, "admin", adminkey), QD_OK);
    uint8_t pk[QD_PROTO_PUB_BYTES];
    char pkhex[2 * QD_PROTO_PUB_BYTES + 1];
    assert_int_equal(qd_client_sign_pub(&c, &admin, pk), QD_OK);
    qd_proto_hex(pk, sizeof pk, pkhex);
    snprintf(pubf, sizeof pubf, "%s/sign.pub", tmp);
    FILE *f = fopen(pubf, "w");
    fprintf(f, "%s\n", pkhex);
    fclose(f);
    static const char *const profs[] = {"raspberry-pi-4", "cortex-a53", "esp32", "cortex-m7"};
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "agent-%02d", i);
        char key[2 * QD_PROTO_KEY_BYTES + 1];
        assert_int_equal(qd_client_device_key(&c, &admin, "add", id, key), QD_OK);
        set_battery(i, 1.0);
        snprintf(agentconf[i], sizeof agentconf[i], "%s/agent-%d.conf", tmp, i);
        f = fopen(agentconf[i], "w");
        fprintf(f,
                "[agent]\ncontrol = %s\npush = %s\nid = %s\nkey = %s\nsign_pub = %s\n"
                "dir = %s/agent-%d\nprofile = %s\n%s = %s%s/battery-%d\n"
                "hysteresis = 0.1\ncheck_s = 0.3\n",
                control, push, id, key, pubf, tmp, i, profs[i % 4],
                i % 2 ? "battery_cmd" : "battery_file", i % 2 ? "cat " : "", tmp,
                i); /* odd agents ask a command (an attached MCU's), even ones read a file */
        fclose(f);
        agent[i] = start_agent(i, NULL);
    }
    /* every agent installs and acks its first model */
    wait_acked(&c, &admin, 0, N, NULL, 180);
    int64_t v1[N];
    for (int i = 0; i < N; i++) {
        v1[i] = version_of(&c, &admin, i, "version");
        assert_int_equal(store_version(i), v1[i]);
    }
    /* the batteries run low: the least energy; a new version each, installed and acked; an
     * operator's quantctl watch sees the notifications */
    char watchout[1200];
    snprintf(watchout, sizeof watchout, "%s/watch.json", tmp);
    snprintf(cmd, sizeof cmd, "%s --control %s --push %s --json watch --count 5 > %s 2>&1",
             getenv("QUANTCTL"), control, push, watchout);
    pid_t w = fork();
    if (w == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    /* and a subscriber with no key, to every topic, over TCP: notifications only */
    int spy;
    assert_int_equal(qd_tp_sub_connect(push, &spy), QD_OK);
    assert_int_equal(qd_tp_subscribe(spy, "", 0), QD_OK);
    usleep(500000); /* their SUBs connect */
    for (int i = 0; i < N; i++)
        set_battery(i, 0.02);
    wait_acked(&c, &admin, 0, N, v1, 180);
    int heard = 0;
    void *sb;
    size_t sn;
    while (!qd_tp_recv(spy, 300, &sb, &sn)) {
        struct qd_proto_note note;
        assert_true(sn < 256); /* the models are 38-144 KB */
        assert_int_equal(qd_proto_note_decode(sb, sn, &note), QD_OK);
        heard++;
        qd_tp_free(sb);
    }
    qd_tp_close(spy);
    if (heard < N)
        fail_msg("the keyless subscriber heard %d notifications for %d new versions", heard, N);
    assert_int_equal(wait_exit(w, 30), 0);
    uint8_t *wb;
    size_t wn;
    assert_int_equal(qd_file_read(watchout, &wb, &wn), QD_OK);
    int lines = 0;
    for (char *l = (char *)wb; *l; l = strchr(l, '\n') + 1, lines++) {
        assert_non_null(strstr(l, "\"device\":\"agent-"));
        if (!strchr(l, '\n'))
            break;
    }
    assert_int_equal(lines, 5);
    free(wb);
    for (int i = 0; i < N; i++)
        assert_int_equal(store_version(i), version_of(&c, &admin, i, "acked"));

    /* agent 0 killed before each install step: back on a whole model, then on the new one */
    for (int step = 1; step <= 4; step++) {
        kill(agent[0], SIGTERM);
        assert_int_equal(wait_exit(agent[0], 30), 0);
        int64_t before = store_version(0);
        char env[64];
        snprintf(env, sizeof env, "QD_AGENT_CRASH_STEP=%d", step);
        set_battery(0, step % 2 ? 1.0 : 0.02); /* a context that changes its decision */
        agent[0] = start_agent(0, env);
        int rc = wait_exit(agent[0], 60);
        if (rc != 137)
            fail_msg("step %d: the agent exited %d, not killed at the step", step, rc);
        assert_int_equal(store_version(0), before); /* the old model, whole */
        agent[0] = start_agent(0, NULL);
        int64_t prev[N] = {0};
        prev[0] = before;
        wait_acked(&c, &admin, 0, 1, prev, 60);
        assert_int_equal(store_version(0), version_of(&c, &admin, 0, "acked"));
    }

    /* agent 1's self-test fails: it keeps its model, acks nothing, says so */
    kill(agent[1], SIGTERM);
    assert_int_equal(wait_exit(agent[1], 30), 0);
    int64_t held = store_version(1);
    set_battery(1, 1.0);
    agent[1] = start_agent(1, "QD_AGENT_FAULT=selftest");
    for (int t = 0; t < 300 && version_of(&c, &admin, 1, "version") == held; t++)
        usleep(100000);
    assert_true(version_of(&c, &admin, 1, "version") > held);
    cJSON *events = NULL;
    for (int t = 0; t < 100 && !events; t++) {
        cJSON *dq = op("device");
        cJSON_AddStringToObject(dq, "id", "agent-01");
        qd_err e;
        cJSON *dr = call(&c, &admin, dq, &e);
        assert_int_equal(e, QD_OK);
        cJSON *x, *ev = cJSON_GetObjectItem(cJSON_GetObjectItem(dr, "device"), "events");
        cJSON_ArrayForEach(x, ev) if (!strcmp(cJSON_GetObjectItem(x, "kind")->valuestring,
                                              "device-selftest-failed")) events =
            cJSON_Duplicate(x, 1);
        cJSON_Delete(dr);
        if (!events)
            usleep(100000);
    }
    assert_non_null(events);
    assert_non_null(strstr(cJSON_GetObjectItem(events, "detail")->valuestring, "ESELFTEST"));
    cJSON_Delete(events);
    assert_int_equal(store_version(1), held);
    assert_int_equal(version_of(&c, &admin, 1, "acked"), held);

    for (int i = 0; i < N; i++) {
        kill(agent[i], SIGTERM);
        assert_int_equal(wait_exit(agent[i], 30), 0);
        agent[i] = -1;
    }
    qd_client_close(&c);
}

static void needs_data(void **st)
{
    real_data_dir("fashion-mnist/t10k-images-idx3-ubyte.gz", data_dir, sizeof data_dir);
    snprintf(control, sizeof control, "tcp://127.0.0.1:%d", free_port());
    snprintf(push, sizeof push, "tcp://127.0.0.1:%d", free_port());
    write_conf(NULL);
    have_data = 1;
}

static int fleet_teardown(void **st)
{
    for (int i = 0; i < N; i++)
        if (agent[i] > 0) {
            kill(agent[i], SIGKILL);
            waitpid(agent[i], NULL, 0);
        }
    return teardown(st);
}

int main(void)
{
    if (sodium_init() < 0 || !getenv("QUANTD") || !getenv("QUANTD_AGENT") || !getenv("QUANTCTL"))
        return 1;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(needs_data),
        cmocka_unit_test(agents_deliver),
    };
    return cmocka_run_group_tests(tests, setup, fleet_teardown);
}

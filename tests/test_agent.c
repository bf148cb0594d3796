/* The gateway agent's model store (client/agent.h): installs, the self-test gate, and recovery
 * after the process is killed before each install step (a forked child dies there; the parent
 * reopens the store and must find a whole model, the one its state names, behind current.qm). */
#include "testutil.h"

#include <sys/wait.h>
#include <unistd.h>

#include "client/agent.h"
#include "client/selftest.h"
#include "core/file.h"
#include "quant/qm.h"
#include "quantfix.h"

static char *dir;
static uint8_t *blob[3];
static size_t blen[3];

/* A verified model as qd_client_fetch gives it: version v of blob k. */
static struct qd_client_model model(int k, int64_t v)
{
    struct qd_client_model m;
    memset(&m, 0, sizeof m);
    m.qm = blob[k], m.len = blen[k];
    m.m.version = v, m.m.size = (int64_t)blen[k];
    snprintf(m.m.device, sizeof m.m.device, "gw");
    qd_proto_sha256_hex(blob[k], blen[k], m.m.sha);
    snprintf(m.m.policy, sizeof m.m.policy, "policy-%d", k);
    m.m.test_seed = (int64_t)qd_selftest_seed(m.m.sha), m.m.test_n = QD_SELFTEST_N;
    assert_int_equal(
        qd_selftest_digest(m.qm, m.len, (uint64_t)m.m.test_seed, QD_SELFTEST_N, m.m.test_sha),
        QD_OK);
    return m;
}

/* What a reopened store must show: the state's version, its bytes, current.qm on its slot. */
static int64_t check_whole(void)
{
    struct qd_agent_store s;
    assert_int_equal(qd_agent_store_open(&s, dir), QD_OK);
    int64_t v = s.version;
    if (v) {
        char cur[1100], link[64], got[65];
        snprintf(cur, sizeof cur, "%s/current.qm", dir);
        ssize_t n = readlink(cur, link, sizeof link - 1);
        assert_true(n > 0);
        link[n] = 0;
        assert_string_equal(link, s.slot ? "slot-b.qm" : "slot-a.qm");
        uint8_t *b;
        size_t len;
        assert_int_equal(qd_file_read(cur, &b, &len), QD_OK);
        qd_proto_sha256_hex(b, len, got);
        assert_string_equal(got, s.sha);
        assert_int_equal(len, s.len);
        free(b);
    }
    qd_agent_store_close(&s);
    return v;
}

static int crash_step;
static void die_at(int step)
{
    if (step == crash_step)
        _exit(137);
}

static void installs_and_recovers(void **st)
{
    struct qd_agent_store s;
    assert_int_equal(qd_agent_store_open(&s, dir), QD_OK);
    assert_int_equal(s.version, 0);
    struct qd_client_model m1 = model(0, 1), m2 = model(1, 2), m3 = model(2, 3);
    assert_int_equal(qd_agent_store_install(&s, &m1), QD_OK);
    assert_int_equal(s.slot, 0);
    assert_int_equal(qd_agent_store_install(&s, &m2), QD_OK);
    assert_int_equal(s.slot, 1);
    qd_agent_store_close(&s);
    assert_int_equal(check_whole(), 2);
    /* killed before each step of installing version 3: the old model, whole; after the last,
     * the new one */
    for (crash_step = 1; crash_step <= 5; crash_step++) {
        pid_t p = fork();
        assert_true(p >= 0);
        if (p == 0) {
            struct qd_agent_store c;
            if (qd_agent_store_open(&c, dir))
                _exit(1);
            c.before_step = die_at;
            _exit(qd_agent_store_install(&c, &m3) ? 1 : 0);
        }
        int status;
        waitpid(p, &status, 0);
        assert_int_equal(WEXITSTATUS(status), crash_step <= 4 ? 137 : 0);
        int64_t v = check_whole();
        assert_int_equal(v, crash_step <= 4 ? 2 : 3);
        if (crash_step == 5) { /* back to 2 for the next round: install it again as 4 */
            struct qd_client_model m4 = model(1, 4);
            assert_int_equal(qd_agent_store_open(&s, dir), QD_OK);
            assert_int_equal(qd_agent_store_install(&s, &m4), QD_OK);
            qd_agent_store_close(&s);
        }
    }
    assert_int_equal(check_whole(), 4);
}

static void selftest_failure_installs_nothing(void **st)
{
    struct qd_agent_store s;
    assert_int_equal(qd_agent_store_open(&s, dir), QD_OK);
    int64_t v = s.version;
    char sha[65];
    memcpy(sha, s.sha, sizeof sha);
    struct qd_client_model m = model(2, v + 1);
    m.m.test_sha[0] = m.m.test_sha[0] == '0' ? '1' : '0';
    assert_int_equal(qd_agent_store_install(&s, &m), QD_ESELFTEST);
    assert_int_equal(s.version, v);
    qd_agent_store_close(&s);
    assert_int_equal(check_whole(), v);
    assert_int_equal(qd_agent_store_open(&s, dir), QD_OK);
    assert_string_equal(s.sha, sha);
    qd_agent_store_close(&s);
}

/* A slot damaged on disk (not a crash: the state comes last) empties the store; the device
 * then fetches again. */
static void damaged_slot_empties(void **st)
{
    struct qd_agent_store s;
    assert_int_equal(qd_agent_store_open(&s, dir), QD_OK);
    char p[1100];
    snprintf(p, sizeof p, "%s/%s", dir, s.slot ? "slot-b.qm" : "slot-a.qm");
    qd_agent_store_close(&s);
    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    fseek(f, 100, SEEK_SET);
    fputc(0x5a, f);
    fclose(f);
    assert_int_equal(qd_agent_store_open(&s, dir), QD_OK);
    assert_int_equal(s.version, 0);
    qd_agent_store_close(&s);
}

static int setup(void **st)
{
    dir = make_tmpdir();
    struct fixture fx;
    make(&fx, "custom", 1, 12, 11);
    static const int bits[3] = {8, 4, 2};
    for (int k = 0; k < 3; k++) {
        struct qd_policy p;
        qd_policy_uniform(&p, fx.g.nq, bits[k], 8);
        struct qd_qm_build b = {&fx.g, &p, QD_QMODE_MIXED, fx.rg, 7, fx.m.family};
        assert_int_equal(qd_qm_build(&b, &blob[k], &blen[k]), QD_OK);
    }
    unmake(&fx);
    return 0;
}

static int teardown(void **st)
{
    rm_rf(dir);
    free(dir);
    for (int k = 0; k < 3; k++)
        free(blob[k]);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(installs_and_recovers),
        cmocka_unit_test(selftest_failure_installs_nothing),
        cmocka_unit_test(damaged_slot_empties),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

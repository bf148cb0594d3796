/* Fleet operations end to end: a real quantd (a plain backbone trained on its first start) and
 * 60 simulated devices of six profiles in three groups.
 *   groups_and_bad_input  devices moved into groups (a listing and the hello's own group);
 *                         every bad request refused with its own code naming the field, the
 *                         fleet untouched (versions, groups, settings).
 *   group_override        a flash cap of 60% of the int8 model on one group: its devices are
 *                         decided again at once and get models under the cap; the other groups
 *                         keep their versions.
 *   pin_holds             a pinned device keeps its version through a context that moves its
 *                         unpinned twin; pinning to an earlier version brings that model back.
 *   limits_in_decisions   allowed widths and an accuracy floor shape the decision; a floor no
 *                         policy reaches is EBUDGET naming it.
 *   rollback_group        every device of the overridden group gets a new version carrying the
 *                         model it acked before; events and the devices listing say so.
 *   revoke_and_restart    a revoked device is refused at once, keys rotate brings it back;
 *                         after a restart groups, settings and pins are as they were.
 *   retention_bounds_a_sweep  under tight [retention] (SIGHUP), a device whose every report
 *                         differs: its old versions, their models and the oldest events go,
 *                         the models on disk stay as many as the fleet's kept versions need,
 *                         and its rollback target is still there.
 *   metrics_pass_promtool the Prometheus endpoint, scraped over HTTP: `promtool check metrics`
 *                         accepts it, and its counters agree with what the tests above did.
 *   pareto_frontier       the pareto op: each point within its budget, the predicted loss never
 *                         rising as the budget grows (exact decisions); bad fields refused.
 *   simulate_shows_why    `quantctl simulate --fleet-ops` (scripts/main.sh's table): each
 *                         decision with the budget that bound it; the group's flash cap binds
 *                         its devices, its rollback pins them on their earlier models. */
#include "daemonfix.h"

#include <dirent.h>
#include <math.h>
#include <sodium.h>
#include <sys/stat.h>

#include "client/sim.h"

#define NDEV 60
/* A plain backbone (no supernet), trained enough that its sensitivity ranks the widths (a
 * one-epoch model on 3,000 images measures 2-bit weights as lowering its loss). */
#define BACKBONE                                                                                   \
    "[backbone]\nsupernet_epochs = 0\ntrain_epochs = 2\ntrain_subset = 20000\nsens_n = 500\n"

static struct qd_sim sim;
static int metrics_port;

/* The test's config: the plain backbone, metrics on a port the OS picked, and more. */
static void ops_conf(const char *more)
{
    char extra[1024];
    snprintf(extra, sizeof extra, "[quantd]\nmetrics = tcp://127.0.0.1:%d\n%s%s", metrics_port,
             BACKBONE, more);
    write_conf(extra);
}
static struct qd_client cl;
static struct qd_ident admin;
static char adminkey[1200];
static int64_t before_override[NDEV]; /* each device's version before the group override */
static char before_sha[NDEV][65];
static int moved[NDEV]; /* its version changed with the group override */

static const char *group_of(int i)
{
    static const char *const g[] = {"north", "south", "east"};
    return g[i % 3];
}

/* A request's error code ("OK" when it succeeded); the reply's message into msg. */
static const char *code(cJSON *req, char *msg, size_t n)
{
    static char c[32];
    qd_err e;
    cJSON *r = call(&cl, &admin, req, &e);
    snprintf(c, sizeof c, "%s", e ? qd_err_name(e) : "OK");
    snprintf(msg, n, "%s", e ? qd_errmsg() : "");
    cJSON_Delete(r);
    return c;
}

static cJSON *ok(cJSON *req)
{
    qd_err e;
    cJSON *r = call(&cl, &admin, req, &e);
    if (e)
        fail_msg("%s: %s", qd_err_name(e), qd_errmsg());
    return r;
}

static double field(cJSON *o, const char *k)
{
    cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *sfield(cJSON *o, const char *k)
{
    cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static cJSON *set_req(const char *key, const char *target)
{
    cJSON *j = op("set");
    cJSON_AddStringToObject(j, key, target);
    return j;
}

/* Every simulated device told the version the registry holds, then until each has it acked. */
static void converge(void)
{
    cJSON *l = devices(&cl, &admin);
    for (int i = 0; i < NDEV; i++) {
        cJSON *x = dev_of(l, sim.dev[i].who.id);
        assert_non_null(x);
        sim.dev[i].want = (int64_t)field(x, "version");
    }
    cJSON_Delete(l);
    if (qd_sim_collect(&sim, 60000, 1))
        fail_msg("collect: %s", qd_errmsg());
}

/* Until the daemon's queue of re-decisions and its jobs are done. */
static void settle(void)
{
    for (int k = 0; k < 600; k++) {
        cJSON *s = ok(op("stats"));
        int idle = field(s, "redo_queued") == 0 && field(s, "inflight") == 0;
        cJSON_Delete(s);
        if (idle)
            return;
        usleep(50000);
    }
    fail_msg("re-decisions still queued after 30 s");
}

static void ops_setup_fleet(void **st)
{
    real_data_dir("fashion-mnist/t10k-images-idx3-ubyte.gz", data_dir, sizeof data_dir);
    metrics_port = free_port();
    ops_conf("");
    pid = start(conf);
    assert_int_equal(qd_client_open(&cl, control, NULL, 20000), QD_OK);
    wait_ready(&cl, 600);
    snprintf(adminkey, sizeof adminkey, "%s/state/admin.key", tmp);
    assert_int_equal(qd_ident_init(&admin, "admin", adminkey), QD_OK);
    struct qd_sim_opts o = {.control = control,
                            .push = push,
                            .admin_key = adminkey,
                            .devices = NDEV,
                            .timeout_ms = 20000,
                            .quiet = 1,
                            .prefix = "op"};
    assert_int_equal(qd_sim_open(&sim, &o), QD_OK);
    assert_int_equal(qd_sim_provision(&sim), QD_OK);
    struct qd_client_ctx full = QD_CLIENT_CTX_NONE;
    full.battery = 1.0;
    for (int i = 0; i < NDEV; i++)
        assert_int_equal(qd_sim_report(&sim, i, &full), QD_OK);
    converge();
}

static void groups_and_bad_input(void **st)
{
    char msg[600];
    for (int g = 0; g < 3; g++) {
        cJSON *j = op("group"), *a = cJSON_AddArrayToObject(j, "devices");
        cJSON_AddStringToObject(j, "group", group_of(g));
        for (int i = g; i < NDEV; i += 3)
            cJSON_AddItemToArray(a, cJSON_CreateString(sim.dev[i].who.id));
        cJSON *r = ok(j);
        assert_int_equal((int)field(r, "moved"), NDEV / 3);
        cJSON_Delete(r);
    }
    cJSON *r = ok(op("group")), *g;
    int seen = 0;
    cJSON_ArrayForEach(g, cJSON_GetObjectItem(r, "groups"))
    {
        assert_int_equal((int)field(g, "devices"), NDEV / 3);
        seen++;
    }
    assert_int_equal(seen, 3);
    cJSON_Delete(r);

    /* bad input: its own code, the field named, nothing changed */
    cJSON *j = op("group"), *a = cJSON_AddArrayToObject(j, "devices");
    cJSON_AddStringToObject(j, "group", "west");
    cJSON_AddItemToArray(a, cJSON_CreateString(sim.dev[0].who.id));
    cJSON_AddItemToArray(a, cJSON_CreateString("no-such-device"));
    assert_string_equal(code(j, msg, sizeof msg), "ENODEV");
    assert_non_null(strstr(msg, "no-such-device"));
    j = set_req("group", "west");
    cJSON_AddStringToObject(j, "flash", "50%");
    assert_string_equal(code(j, msg, sizeof msg), "ENOGROUP");
    struct {
        const char *field, *json, *want;
    } bad[] = {
        {"flash", "\"0%\"", "EINVAL"},
        {"flash", "\"lots\"", "EINVAL"},
        {"ram", "-5", "EINVAL"},
        {"accuracy_floor", "1.5", "EINVAL"},
        {"accuracy_floor", "\"high\"", "EINVAL"},
        {"bits", "[3]", "EINVAL"},
        {"bits", "8", "EINVAL"},
        {"pin", "99", "ENOVERSION"},
        {"pin", "\"latest\"", "EINVAL"},
        {"flash", "1", "EBUDGET"},
        {"accuracy_floor", "1.0", "EBUDGET"},
        {"clear", "[\"colour\"]", "EINVAL"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        j = set_req("device", sim.dev[0].who.id);
        cJSON_AddItemToObject(j, bad[k].field, cJSON_Parse(bad[k].json));
        const char *c = code(j, msg, sizeof msg);
        if (strcmp(c, bad[k].want) || !strstr(msg, bad[k].field))
            fail_msg("set %s = %s: %s %s (wanted %s naming the field)", bad[k].field, bad[k].json,
                     c, msg, bad[k].want);
    }
    j = set_req("group", "north");
    cJSON_AddNumberToObject(j, "pin", 3); /* a group's pin is "current" only */
    assert_string_equal(code(j, msg, sizeof msg), "EINVAL");
    j = op("rollback");
    assert_string_equal(code(j, msg, sizeof msg), "EINVAL"); /* no target */
    j = op("events");
    cJSON_AddStringToObject(j, "group", "west");
    assert_string_equal(code(j, msg, sizeof msg), "ENOGROUP");
    cJSON *l = devices(&cl, &admin);
    for (int i = 0; i < NDEV; i++) {
        cJSON *x = dev_of(l, sim.dev[i].who.id);
        assert_int_equal((int64_t)field(x, "version"), sim.dev[i].want);
        assert_string_equal(sfield(x, "group"), group_of(i));
        assert_null(cJSON_GetObjectItem(x, "settings"));
    }
    cJSON_Delete(l);
}

static void group_override(void **st)
{
    for (int i = 0; i < NDEV; i++) {
        before_override[i] = sim.dev[i].want;
        snprintf(before_sha[i], 65, "%s", sim.dev[i].want_sha);
    }
    cJSON *j = set_req("group", "south");
    cJSON_AddStringToObject(j, "flash", "60%");
    cJSON *r = ok(j);
    assert_int_equal((int)field(r, "redeciding"), NDEV / 3);
    cJSON_Delete(r);
    settle();
    converge();
    int nmoved = 0;
    for (int i = 0; i < NDEV; i++) {
        if (strcmp(group_of(i), "south")) {
            assert_int_equal(sim.dev[i].want, before_override[i]); /* others untouched */
            continue;
        }
        /* its dry run under the same settings: the cap in the budget, the model under it */
        cJSON *d = op("decide");
        cJSON_AddStringToObject(d, "device", sim.dev[i].who.id);
        cJSON_AddNumberToObject(d, "battery", 1.0);
        cJSON *dr = ok(d);
        double cap = field(cJSON_GetObjectItem(dr, "budget"), "flash");
        double used = field(cJSON_GetObjectItem(dr, "costs"), "flash");
        assert_true(used <= cap);
        assert_int_equal((int)sim.dev[i].store->len, (int)used); /* what it holds */
        moved[i] = sim.dev[i].want > before_override[i];
        nmoved += moved[i];
        cJSON_Delete(dr);
    }
    assert_true(nmoved >= NDEV / 3 / 2); /* 60% of int8 moves most of them off their policy */
}

static void pin_holds(void **st)
{
    int a = 0, b = -1; /* both in "north", of the same profile */
    for (int i = 3; i < NDEV && b < 0; i += 3)
        if (!strcmp(sim.dev[i].profile, sim.dev[a].profile))
            b = i;
    assert_true(b > 0);
    cJSON *j = set_req("device", sim.dev[a].who.id);
    cJSON_AddStringToObject(j, "pin", "current");
    cJSON *r = ok(j);
    assert_int_equal((int64_t)field(cJSON_GetObjectItem(r, "settings"), "pin"), sim.dev[a].want);
    cJSON_Delete(r);
    int64_t va = sim.dev[a].want, vb = sim.dev[b].want;
    struct qd_client_ctx low = QD_CLIENT_CTX_NONE;
    low.battery = 1.0;
    low.free_flash = 0.5 * sim.dev[b].flash;
    assert_int_equal(qd_sim_report(&sim, a, &low), QD_OK);
    assert_int_equal(qd_sim_report(&sim, b, &low), QD_OK);
    assert_int_equal(sim.dev[a].want, va); /* pinned: stays */
    assert_true(sim.dev[b].want > vb);     /* its twin moves */
    converge();
    /* pinned to its first version: that model comes back as a new version */
    j = set_req("device", sim.dev[b].who.id);
    cJSON_AddNumberToObject(j, "pin", 1);
    cJSON_Delete(ok(j));
    settle();
    converge();
    assert_true(sim.dev[b].want > vb + 1);
    cJSON *q = op("device");
    cJSON_AddStringToObject(q, "id", sim.dev[b].who.id);
    cJSON *d = ok(q);
    cJSON *vs = cJSON_GetObjectItem(cJSON_GetObjectItem(d, "device"), "versions");
    const char *first = NULL;
    cJSON *v;
    cJSON_ArrayForEach(v, vs) if ((int)field(v, "version") == 1) first = sfield(v, "sha256");
    assert_non_null(first);
    assert_string_equal(sim.dev[b].store->sha, first);
    cJSON_Delete(d);
    j = set_req("device", sim.dev[b].who.id); /* released */
    cJSON_AddTrueToObject(j, "clear");
    cJSON_Delete(ok(j));
}

/* The device's dry run with a free flash (NAN: none); its reply, error code into c. */
static cJSON *dry_run(int i, double free_flash, char *c, size_t n)
{
    cJSON *d = op("decide");
    cJSON_AddStringToObject(d, "device", sim.dev[i].who.id);
    if (!isnan(free_flash))
        cJSON_AddNumberToObject(d, "free_flash", free_flash);
    qd_err e;
    cJSON *r = call(&cl, &admin, d, &e);
    snprintf(c, n, "%s %s", e ? qd_err_name(e) : "OK", e ? qd_errmsg() : "");
    return r;
}

static void limits_in_decisions(void **st)
{
    int i = 9; /* "north", unpinned */
    char c[600];
    cJSON *j = set_req("device", sim.dev[i].who.id);
    cJSON_AddItemToObject(j, "bits", cJSON_Parse("[8]"));
    cJSON_Delete(ok(j));
    settle();
    converge();
    cJSON *l = devices(&cl, &admin); /* the policy it holds now */
    for (const char *p = sfield(dev_of(l, sim.dev[i].who.id), "policy"); *p && *p != '/'; p++)
        assert_true(*p == '8' || *p == ',');
    cJSON_Delete(l);
    cJSON *r = dry_run(i, NAN, c, sizeof c);
    double acc8 = field(r, "predicted_accuracy");
    cJSON_Delete(r);
    assert_true(acc8 > 0 && acc8 <= 1);
    /* a floor at the all-8-bit model's predicted accuracy: every decision keeps it */
    j = set_req("device", sim.dev[i].who.id);
    cJSON_AddItemToObject(j, "clear", cJSON_Parse("[\"bits\"]"));
    cJSON_AddNumberToObject(j, "accuracy_floor", acc8);
    cJSON_Delete(ok(j));
    r = dry_run(i, NAN, c, sizeof c);
    assert_true(field(r, "predicted_accuracy") >= acc8 - 1e-9);
    cJSON_Delete(r);
    /* the smallest model's flash: only 2-bit-heavy policies fit, none keeps the floor */
    r = dry_run(i, 1, c, sizeof c);
    assert_true(!strncmp(c, "EBUDGET", 7));
    double smallest = field(cJSON_GetObjectItem(r, "smallest"), "flash");
    cJSON_Delete(r);
    assert_true(smallest > 0);
    r = dry_run(i, smallest * 1.0001, c, sizeof c);
    cJSON_Delete(r);
    if (strncmp(c, "EBUDGET", 7) || !strstr(c, "accuracy_floor"))
        fail_msg("the smallest model under a floor of %.4f: %s", acc8, c);
    j = set_req("device", sim.dev[i].who.id);
    cJSON_AddTrueToObject(j, "clear");
    cJSON_Delete(ok(j));
    settle();
    converge();
}

static void rollback_group(void **st)
{
    cJSON *j = op("rollback");
    cJSON_AddStringToObject(j, "group", "south");
    cJSON *r = ok(j), *x;
    int n = 0;
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(r, "devices")) n++;
    int want = 0; /* those that moved; the others have no earlier version to go back to */
    for (int i = 0; i < NDEV; i++)
        want += moved[i];
    assert_int_equal(n, want);
    cJSON_Delete(r);
    converge();
    for (int i = 0; i < NDEV; i++)
        if (!strcmp(group_of(i), "south") && sim.dev[i].want > 0) {
            /* the model it acked before the override (or, unmoved, the same one) */
            assert_string_equal(sim.dev[i].store->sha, before_sha[i]);
            assert_int_equal(sim.dev[i].acked, sim.dev[i].want);
        }
    j = op("events");
    cJSON_AddStringToObject(j, "group", "south");
    cJSON_AddStringToObject(j, "kind", "revert");
    r = ok(j);
    n = 0;
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(r, "events"))
    {
        assert_string_equal(sfield(x, "group"), "south");
        n++;
    }
    cJSON_Delete(r);
    assert_true(n >= 1 && n <= NDEV / 3);
    j = op("devices");
    cJSON_AddStringToObject(j, "group", "south");
    cJSON_AddTrueToObject(j, "unacked");
    r = ok(j);
    assert_int_equal((int)field(r, "total"), 0);
    cJSON_Delete(r);
}

static void revoke_and_restart(void **st)
{
    int i = 12;
    cJSON *j = op("revoke");
    cJSON_AddStringToObject(j, "device", sim.dev[i].who.id);
    cJSON_Delete(ok(j));
    struct qd_client_ctx c = QD_CLIENT_CTX_NONE;
    c.battery = 0.9;
    assert_int_equal(qd_sim_report(&sim, i, &c), QD_EREVOKED);
    char key[2 * QD_PROTO_KEY_BYTES + 1], id[QD_PROTO_MAX_ID + 1];
    snprintf(id, sizeof id, "%s", sim.dev[i].who.id);
    assert_int_equal(qd_client_device_key(&cl, &admin, "rotate", id, key), QD_OK);
    assert_int_equal(qd_ident_init(&sim.dev[i].who, id, key), QD_OK);
    assert_int_equal(qd_sim_report(&sim, i, &c), QD_OK);

    cJSON *before = devices(&cl, &admin);
    kill(pid, SIGTERM);
    assert_int_equal(wait_exit(pid, 30), 0);
    pid = start(conf);
    wait_ready(&cl, 120);
    assert_int_equal(qd_sim_resubscribe(&sim), QD_OK); /* (ipc:// SUB does not come back) */
    cJSON *after = devices(&cl, &admin);
    for (int k = 0; k < NDEV; k++) {
        cJSON *x = dev_of(before, sim.dev[k].who.id), *y = dev_of(after, sim.dev[k].who.id);
        assert_string_equal(sfield(x, "group"), sfield(y, "group"));
        char *sx = cJSON_PrintUnformatted(cJSON_GetObjectItem(x, "effective"));
        char *sy = cJSON_PrintUnformatted(cJSON_GetObjectItem(y, "effective"));
        assert_string_equal(sx ? sx : "", sy ? sy : "");
        free(sx), free(sy);
    }
    cJSON_Delete(before);
    cJSON_Delete(after);
    /* the group's cap still applies, the rolled-back devices still pinned */
    cJSON *r = ok(op("group")), *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItem(r, "groups")) if (!strcmp(sfield(g, "name"), "south"))
        assert_string_equal(sfield(cJSON_GetObjectItem(g, "settings"), "flash"), "60%");
    cJSON_Delete(r);
    int s = -1; /* a "south" device rolled back (pinned) */
    for (int k = 0; k < NDEV && s < 0; k++)
        if (!strcmp(group_of(k), "south") && moved[k])
            s = k;
    assert_true(s >= 0);
    int64_t v = sim.dev[s].want;
    c.battery = 0.2;
    assert_int_equal(qd_sim_report(&sim, s, &c), QD_OK);
    assert_int_equal(sim.dev[s].want, v);
}

/* Models in the state directory: files, and their bytes into *bytes. */
static int models_on_disk(int64_t *bytes)
{
    char dir[1300];
    snprintf(dir, sizeof dir, "%s/state/models", tmp);
    DIR *dd = opendir(dir);
    assert_non_null(dd);
    struct dirent *e;
    int n = 0;
    *bytes = 0;
    while ((e = readdir(dd))) {
        char p[1600];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (strstr(e->d_name, ".qm") && !stat(p, &st) && S_ISREG(st.st_mode))
            n++, *bytes += st.st_size;
    }
    closedir(dd);
    return n;
}

static double retention(const char *k)
{
    cJSON *s = ok(op("stats"));
    double v = field(cJSON_GetObjectItem(s, "retention"), k);
    cJSON_Delete(s);
    return v;
}

/* Until n more sweeps have run (each after everything queued has settled). */
static void sweeps(int n)
{
    double s0 = retention("sweeps");
    for (int k = 0; k < 400 && retention("sweeps") < s0 + n; k++)
        usleep(50000);
    assert_true(retention("sweeps") >= s0 + n);
}

static void retention_bounds_a_sweep(void **st)
{
    ops_conf("[retention]\nsweep_s = 0.5\nversions_max = 3\ndecisions_max = 100\n"
             "events_max = 100\n");
    kill(pid, SIGHUP);
    settle();
    sweeps(2);
    int64_t b0;
    int f0 = models_on_disk(&b0);
    int i = 5; /* an "east" device: no pin, no override */
    assert_string_equal(group_of(i), "east");
    int64_t v0 = sim.dev[i].want;
    struct qd_client_ctx c = QD_CLIENT_CTX_NONE;
    c.battery = 1.0;
    double flash = sim.dev[i].flash;
    for (int k = 0; k < 40; k++) { /* less free flash each time: a new model now and then */
        c.free_flash = flash * (1.0 - 0.015 * k) + k; /* and never the same figure */
        qd_err e = qd_sim_report(&sim, i, &c);
        assert_true(e == QD_OK || e == QD_EBUDGET);
        if (k % 4 == 3)
            converge(); /* acked: the "last acked" moves along too */
    }
    converge();
    int64_t made = sim.dev[i].want - v0;
    if (made < 5)
        fail_msg("the sweep made only %lld versions: not a test of retention", (long long)made);
    settle();
    sweeps(2);
    /* the device's versions: at most versions_max (current and last acked among them) */
    cJSON *q = op("device");
    cJSON_AddStringToObject(q, "id", sim.dev[i].who.id);
    cJSON *d = ok(q), *v;
    int nv = 0;
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(cJSON_GetObjectItem(d, "device"), "versions")) nv++;
    cJSON_Delete(d);
    assert_true(nv >= 2 && nv <= 3);
    /* the models: the old ones went, memory and disk agree, the size is measured */
    int64_t b1;
    int f1 = models_on_disk(&b1);
    cJSON *s = ok(op("stats"));
    int blobs = (int)field(s, "blobs");
    cJSON *rt = cJSON_GetObjectItem(s, "retention");
    if (f1 > f0 + 2 || blobs != f1)
        fail_msg("models on disk %d (before the sweep %d), in memory %d", f1, f0, blobs);
    assert_true(field(rt, "blobs_removed") >= 1 && field(rt, "versions_removed") >= 1);
    assert_true(field(rt, "events_removed") >= 1);
    assert_true(field(rt, "state_bytes") >= (double)b1);
    cJSON_Delete(s);
    /* events: the newest events_max */
    cJSON *j = op("events");
    cJSON_AddNumberToObject(j, "limit", 10000);
    cJSON *r = ok(j);
    int ne = 0;
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(r, "events")) ne++;
    cJSON_Delete(r);
    assert_true(ne > 0 && ne <= 100 + 60); /* (the sweep's limit, plus what came since) */
    /* its rollback target survived: the model it acked before the current one comes back */
    int64_t cur = sim.dev[i].want;
    j = op("rollback");
    cJSON_AddStringToObject(j, "device", sim.dev[i].who.id);
    cJSON_Delete(ok(j));
    converge();
    assert_true(sim.dev[i].want == cur + 1 && sim.dev[i].acked == cur + 1);
}

/* GET /metrics over a plain socket: the body, malloc'd. */
static char *scrape(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)metrics_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    const char req[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    assert_int_equal(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    size_t n = 0, cap = 1 << 16;
    char *b = malloc(cap);
    ssize_t k;
    while ((k = read(fd, b + n, cap - n - 1)) > 0)
        if ((n += (size_t)k) == cap - 1)
            b = realloc(b, cap *= 2);
    close(fd);
    b[n] = 0;
    assert_non_null(strstr(b, " 200 "));
    assert_non_null(strstr(b, "text/plain; version=0.0.4"));
    char *body = strstr(b, "\r\n\r\n");
    assert_non_null(body);
    memmove(b, body + 4, strlen(body + 4) + 1);
    return b;
}

/* The value of the series `name` (with its labels, as written); NAN when absent. */
static double series(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; (p = strstr(p, name)); p += n)
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return NAN;
}

static void metrics_pass_promtool(void **st)
{
    char msg[512]; /* errors of this daemon's life (it restarted above) */
    cJSON *j = set_req("group", "north");
    cJSON_AddNumberToObject(j, "ram", -5);
    assert_string_equal(code(j, msg, sizeof msg), "EINVAL");
    assert_string_equal(code(op("no-such-op"), msg, sizeof msg), "EOP");
    usleep(1200000); /* rendered once a second */
    char *m = scrape();
    char path[1300], cmd[1500], out[4096];
    snprintf(path, sizeof path, "%s/metrics.txt", tmp);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(m, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
    if (run_capture(cmd, out, sizeof out))
        fail_msg("promtool check metrics: %s", out);
    /* what this daemon did since its restart in revoke_and_restart */
    assert_true(series(m, "quantd_requests_total{op=\"report\"}") >= 40);
    assert_true(series(m, "quantd_errors_total{op=\"set\",code=\"EINVAL\"}") >= 1);
    assert_true(series(m, "quantd_errors_total{op=\"none\",code=\"EOP\"}") >= 1);
    assert_int_equal((int)series(m, "quantd_devices{state=\"active\"}"), NDEV);
    assert_int_equal((int)series(m, "quantd_unacked_versions"), 0);
    assert_true(series(m, "quantd_push_to_ack_seconds_count") >= 1);
    assert_true(series(m, "quantd_decide_seconds_count") >= 40);
    assert_true(series(m, "quantd_acks_total") >= 1);
    assert_true(series(m, "quantd_retention_removed_total{kind=\"blob\"}") >= 1);
    assert_true(series(m, "quantd_state_bytes") > 0);
    assert_int_equal((int)series(m, "quantd_ready"), 1);
    assert_null(strstr(m, sim.dev[0].who.id)); /* no per-device labels */
    free(m);
}

static void pareto_frontier(void **st)
{
    static const char *const metric[] = {"flash", "energy_mj"};
    for (int m = 0; m < 2; m++) {
        cJSON *j = op("pareto");
        cJSON_AddStringToObject(j, "profile", "cortex-m4");
        cJSON_AddStringToObject(j, "metric", metric[m]);
        cJSON_AddNumberToObject(j, "points", 12);
        cJSON *r = ok(j), *x;
        int n = 0;
        double last_loss = INFINITY, last_budget = -1;
        cJSON_ArrayForEach(x, cJSON_GetObjectItem(r, "points"))
        {
            double b = field(x, "budget"), v = field(x, metric[m]), l = field(x, "predicted_loss");
            assert_true(v <= b * (1 + 1e-9) && b > last_budget);
            assert_true(l <= last_loss + 1e-9);
            assert_true(field(x, "predicted_accuracy") > 0 && *sfield(x, "policy"));
            last_loss = l, last_budget = b, n++;
        }
        assert_true(n >= 2);
        cJSON_Delete(r);
    }
    char msg[512];
    static const struct {
        const char *profile, *metric;
        int points;
    } bad[] = {{"no-such-profile", "flash", 8},
               {"cortex-m4", "accuracy", 8},
               {"cortex-m4", "flash", 1},
               {"cortex-m4", "flash", 65}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *j = op("pareto");
        cJSON_AddStringToObject(j, "profile", bad[i].profile);
        cJSON_AddStringToObject(j, "metric", bad[i].metric);
        cJSON_AddNumberToObject(j, "points", bad[i].points);
        assert_string_equal(code(j, msg, sizeof msg), "EINVAL");
    }
}

/* The part of text from the line starting with `from` up to `to` (or the end), copied. */
static char *section(const char *text, const char *from, const char *to)
{
    const char *a = strstr(text, from);
    if (!a)
        fail_msg("no \"%s\" in:\n%s", from, text);
    const char *b = to ? strstr(a, to) : NULL;
    size_t n = b ? (size_t)(b - a) : strlen(a);
    char *s = malloc(n + 1);
    memcpy(s, a, n);
    s[n] = 0;
    return s;
}

static void simulate_shows_why(void **st)
{
    char cmd[4096];
    static char out[1 << 16];
    if (!getenv("QUANTCTL"))
        fail_msg("%s", "QUANTCTL (the quantctl to run) is not set");
    snprintf(cmd, sizeof cmd,
             "%s --control %s --push %s --state-dir %s/state simulate --devices 6 --images 20 "
             "--data-dir %s --fleet-ops 2>&1",
             getenv("QUANTCTL"), control, push, tmp, data_dir);
    if (run_capture(cmd, out, sizeof out))
        fail_msg("simulate: %s", out);
    char *r1 = section(out, "round 1:", "round 2:"), *r3 = section(out, "round 3:", "round 4:"),
         *r4 = section(out, "round 4:", "summary:");
    /* round 1: every device a row with its binding budget and figures */
    int rows = 0;
    for (const char *p = r1; (p = strstr(p, "\nsim-")); p++)
        rows++;
    assert_int_equal(rows, 6);
    /* round 3: some device of the group moved under the cap, bound by flash */
    int capped = 0;
    for (const char *p = r3; (p = strstr(p, "\nsim-")); p++) {
        const char *e = strchr(p + 1, '\n');
        char line[512];
        snprintf(line, sizeof line, "%.*s", e ? (int)(e - p - 1) : 500, p + 1);
        int i = atoi(line + 4);
        if (strstr(line, " now ") && strstr(line, "flash ")) {
            assert_true(i % 2 == 0); /* only the group's devices: sim-00000, -00002, ... */
            capped++;
        }
    }
    if (!capped)
        fail_msg("round 3 shows no device bound by the group's flash cap:\n%s", r3);
    /* round 4: the group's devices pinned on their earlier models */
    assert_non_null(strstr(r4, "pinned v"));
    free(r1), free(r3), free(r4);
}

static int ops_teardown(void **st)
{
    qd_sim_close(&sim);
    qd_client_close(&cl);
    return teardown(st);
}

int main(void)
{
    if (sodium_init() < 0 || !getenv("QUANTD"))
        return 1;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ops_setup_fleet),       cmocka_unit_test(groups_and_bad_input),
        cmocka_unit_test(group_override),        cmocka_unit_test(pin_holds),
        cmocka_unit_test(limits_in_decisions),   cmocka_unit_test(rollback_group),
        cmocka_unit_test(revoke_and_restart),    cmocka_unit_test(retention_bounds_a_sweep),
        cmocka_unit_test(metrics_pass_promtool), cmocka_unit_test(pareto_frontier),
        cmocka_unit_test(simulate_shows_why),
    };
    return cmocka_run_group_tests(tests, setup, ops_teardown);
}

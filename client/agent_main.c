/* quantd-agent: the gateway's half of delivery, a long-running program beside the gateway's
 * applications. It says hello (its profile), reports its context when it changes beyond a
 * hysteresis, and on each notification of a new version (or a hello reply naming one it does
 * not hold) fetches it, verifies it (the signed manifest, the bytes), installs it into its store
 * (client/agent.h: self-test, A/B slots, current.qm swapped atomically) and acks it; a refused
 * model or a failed self-test is reported as an event and not acked. Killed at any instant, it
 * comes back on a complete, verified model and says which version it runs.
 *
 * Usage: quantd-agent -c etc/quantd-agent.conf [--once]
 *   --once: hello, report, install what is pending, exit (for scripts and tests).
 * Config keys ([agent]): control, push, id, key (the device key or its file), sign_pub (the
 * daemon's model-signing public key, 64 hex digits or a file), dir (the store), profile,
 * flash, ram (own sizes; 0: the profile's), latency_ms, energy_mj (limits to report),
 * battery_cmd or battery_file (a command printing, or a file holding, a level in 0..1 or a
 * percentage; default: the first battery in /sys/class/power_supply), hysteresis (relative change
 * that makes a new report; 0.1), check_s (seconds between context checks; 5), log_level. Fault
 * injection, for tests only: QD_AGENT_CRASH_STEP=N kills the agent before install step N
 * (client/agent.h); QD_AGENT_FAULT=selftest makes every self-test fail (as a model the runtime here
 * computes differently would). */
#define _GNU_SOURCE
#include <dirent.h>
#include <ini.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "client/agent.h"
#include "core/file.h"
#include "core/log.h"
#include "core/sdnotify.h"

struct conf {
    char control[256], push[256], id[QD_PROTO_MAX_ID + 1], key[1024], sign_pub[1024];
    char dir[1024], profile[QD_PROTO_MAX_ID + 1], battery_file[1024], battery_cmd[1024];
    char log_level[16];
    double flash, ram, latency_ms, energy_mj, hysteresis, check_s;
};

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    stop = 1;
    (void)sig;
}

static int on_key(void *user, const char *sec, const char *name, const char *value)
{
    struct conf *c = user;
    if (strcmp(sec, "agent"))
        return qd_seterr(QD_EINVAL, "unknown section [%s]", sec), 0;
    static const struct {
        const char *name;
        size_t off, len;
    } S[] = {
#define STR(f) {#f, offsetof(struct conf, f), sizeof(((struct conf *)0)->f)}
        STR(control), STR(push),    STR(id),           STR(key),         STR(sign_pub),
        STR(dir),     STR(profile), STR(battery_file), STR(battery_cmd), STR(log_level)};
    static const struct {
        const char *name;
        size_t off;
        double lo, hi;
    } N[] = {{"flash", offsetof(struct conf, flash), 0, 1e12},
             {"ram", offsetof(struct conf, ram), 0, 1e12},
             {"latency_ms", offsetof(struct conf, latency_ms), 0, 1e9},
             {"energy_mj", offsetof(struct conf, energy_mj), 0, 1e9},
             {"hysteresis", offsetof(struct conf, hysteresis), 0, 10},
             {"check_s", offsetof(struct conf, check_s), 0.05, 86400}};
    for (size_t i = 0; i < sizeof S / sizeof *S; i++)
        if (!strcmp(name, S[i].name)) {
            if (strlen(value) >= S[i].len)
                return qd_seterr(QD_EINVAL, "%s is too long", name), 0;
            strcpy((char *)c + S[i].off, value);
            return 1;
        }
    for (size_t i = 0; i < sizeof N / sizeof *N; i++)
        if (!strcmp(name, N[i].name)) {
            char *end;
            double v = strtod(value, &end);
            if (end == value || *end || !(v >= N[i].lo && v <= N[i].hi))
                return qd_seterr(QD_EINVAL, "%s = %s: a number in [%g, %g]", name, value, N[i].lo,
                                 N[i].hi),
                       0;
            *(double *)((char *)c + N[i].off) = v;
            return 1;
        }
    return qd_seterr(QD_EINVAL, "unknown key '%s'", name), 0;
}

static qd_err load_conf(const char *path, struct conf *c)
{
    memset(c, 0, sizeof *c);
    strcpy(c->control, "tcp://127.0.0.1:7411");
    strcpy(c->push, "tcp://127.0.0.1:7412");
    strcpy(c->dir, "agent");
    strcpy(c->log_level, "info");
    c->latency_ms = c->energy_mj = NAN;
    c->hysteresis = 0.1, c->check_s = 5;
    int line = ini_parse(path, on_key, c);
    if (line < 0)
        return qd_seterr(QD_ENOENT, "%s: cannot read", path);
    if (line > 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", qd_errmsg());
        return qd_seterr(QD_EINVAL, "%s:%d: %s", path, line, why);
    }
    const char *need[] = {c->id, c->key, c->sign_pub, c->profile};
    const char *names[] = {"id", "key", "sign_pub", "profile"};
    for (int i = 0; i < 4; i++)
        if (!need[i][0])
            return qd_seterr(QD_EINVAL, "%s: no %s", path, names[i]);
    return QD_OK;
}

/* The level a stream says (a fraction, or a percentage above 1), closed with `close`; NAN when
 * there is no stream or nothing in 0..1 parses. */
static double level_of(FILE *f, int (*close)(FILE *))
{
    double v = NAN;
    if (f && fscanf(f, "%lf", &v) != 1)
        v = NAN;
    if (f)
        close(f);
    if (v > 1)
        v /= 100;
    return v >= 0 && v <= 1 ? v : NAN;
}

/* A battery level in 0..1: the configured command's output or file, else the first battery's
 * capacity in /sys/class/power_supply; NAN when there is none or it says nothing that parses. */
static double battery(const struct conf *c)
{
    if (c->battery_cmd[0]) /* an attached MCU's level, asked by a command */
        return level_of(popen(c->battery_cmd, "r"), pclose);
    char path[1300] = "";
    if (c->battery_file[0])
        snprintf(path, sizeof path, "%s", c->battery_file);
    else {
        DIR *d = opendir("/sys/class/power_supply");
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (!strncmp(e->d_name, "BAT", 3)) {
                snprintf(path, sizeof path, "/sys/class/power_supply/%s/capacity", e->d_name);
                break;
            }
        if (d)
            closedir(d);
    }
    return level_of(path[0] ? fopen(path, "r") : NULL, fclose);
}

/* What the gateway can spare now: MemAvailable, the store's free space, the battery. */
static struct qd_proto_ctx context(const struct conf *c)
{
    struct qd_proto_ctx x = QD_PROTO_CTX_NONE;
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "MemAvailable:", 13))
            x.free_ram = atof(line + 13) * 1024;
    if (f)
        fclose(f);
    struct statvfs sv;
    if (!statvfs(c->dir, &sv))
        x.free_flash = (double)sv.f_bavail * (double)sv.f_frsize;
    x.latency_ms = c->latency_ms > 0 ? c->latency_ms : NAN;
    x.energy_mj = c->energy_mj > 0 ? c->energy_mj : NAN;
    x.battery = battery(c);
    return x;
}

/* Whether a field moved by more than the hysteresis (relative; appearing or vanishing too). */
static int moved(double a, double b, double h)
{
    if (isnan(a) != isnan(b))
        return 1;
    return !isnan(a) && fabs(a - b) > h * fmax(fabs(a), 1e-9);
}

struct agent {
    struct conf c;
    struct qd_client cl;
    struct qd_ident me;
    uint8_t pk[QD_PROTO_PUB_BYTES];
    struct qd_agent_store st;
    struct qd_proto_ctx last;
    int reported;
};

static void say_installed(struct agent *a)
{
    char m[200];
    snprintf(m, sizeof m, "STATUS=running version %lld (%.12s)", (long long)a->st.version,
             a->st.sha);
    qd_sd_notify(m);
}

/* Version v: qd_agent_take (fetch, verify, self-test, install, ack; refusals reported). */
static qd_err take(struct agent *a, int64_t v)
{
    int64_t held = a->st.version;
    struct qd_agent_took t;
    QD_TRY(qd_agent_take(&a->cl, &a->me, a->pk, &a->st, v, 1, &t));
    if (t.refused)
        qd_log(QD_LOG_WARN, "version %lld not installed (%s): %s; keeping version %lld",
               (long long)v, qd_err_name(t.refused), qd_errmsg(), (long long)held);
    if (t.installed) {
        qd_log(QD_LOG_INFO,
               "installed version %lld (%s, %zu bytes, fetched %s as %zu), current.qm -> "
               "slot-%c.qm",
               (long long)a->st.version, a->st.policy, t.len, t.encoding, t.wire, 'a' + a->st.slot);
        say_installed(a);
    }
    return QD_OK;
}

static qd_err hello(struct agent *a)
{
    cJSON *r = NULL;
    QD_TRY(qd_client_hello(&a->cl, &a->me, a->c.profile, &r));
    int64_t v = 0;
    qd_err e = qd_proto_int(r, "version", 0, INT64_C(1) << 53, 1, &v);
    cJSON_Delete(r);
    return e ? e : take(a, v); /* a version it missed while away */
}

static qd_err report_if_moved(struct agent *a)
{
    struct qd_proto_ctx x = context(&a->c);
    double h = a->c.hysteresis;
    if (a->reported && !moved(x.free_flash, a->last.free_flash, h) &&
        !moved(x.free_ram, a->last.free_ram, h) && !moved(x.battery, a->last.battery, h) &&
        !moved(x.latency_ms, a->last.latency_ms, h) && !moved(x.energy_mj, a->last.energy_mj, h))
        return QD_OK;
    struct qd_client_ctx cc = {.free_flash = x.free_flash,
                               .free_ram = x.free_ram,
                               .latency_ms = x.latency_ms,
                               .energy_mj = x.energy_mj,
                               .battery = x.battery};
    cJSON *r = NULL;
    qd_err e = qd_client_report(&a->cl, &a->me, &cc, &r);
    int64_t v = 0;
    if (!e)
        e = qd_proto_int(r, "version", 0, INT64_C(1) << 53, 1, &v);
    cJSON_Delete(r);
    if (e == QD_EBUDGET) { /* nothing fits now: keep the model, report again when it moves */
        qd_log(QD_LOG_WARN, "report: %s", qd_errmsg());
        e = QD_OK;
    }
    if (!e) {
        a->last = x, a->reported = 1;
        e = take(a, v);
    }
    return e;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void tamper_selftest(struct qd_client_model *m)
{
    m->m.test_sha[0] = m->m.test_sha[0] == '0' ? '1' : '0';
}

static void crash_at(int step)
{
    const char *s = getenv("QD_AGENT_CRASH_STEP");
    if (s && atoi(s) == step)
        _exit(137);
}

/* Errors that pass: the daemon slow, starting or busy (the agent tries again). */
static int transient(qd_err e)
{
    return e == QD_ETIMEDOUT || e == QD_EBUSY || e == QD_ENOTREADY || e == QD_ELIMIT ||
           e == QD_EIO;
}

static int run(struct agent *a, int once)
{
    qd_err e;
    /* hello and the first report, again after 1, 2, 4 ... 30 s while the daemon is away or
     * busy (a gateway may boot before it, or with it loaded); other refusals end the agent */
    for (int wait = 1;; wait = wait < 16 ? 2 * wait : 30) {
        e = hello(a);
        if (!e)
            e = report_if_moved(a);
        if (!e || once || stop || !transient(e))
            break;
        qd_log(QD_LOG_WARN, "%s (again in %d s)", qd_errmsg(), wait);
        sleep((unsigned)wait);
    }
    if (e || stop) {
        if (e)
            qd_log(QD_LOG_ERROR, "%s", qd_errmsg());
        return e ? 1 : 0;
    }
    qd_sd_notify("READY=1");
    say_installed(a);
    double next = now_s() + a->c.check_s;
    while (!once && !stop) {
        struct qd_proto_note n;
        e = qd_client_notify_recv(&a->cl, (int)(a->c.check_s * 1000 / 4) + 1, &n);
        if (stop) /* SIGTERM interrupted the wait */
            break;
        if (!e && !strcmp(n.id, a->me.id))
            e = take(a, n.version);
        else if (e == QD_ETIMEDOUT || e == QD_EFORMAT)
            e = QD_OK;
        if (!e && now_s() >= next) {
            e = report_if_moved(a);
            next = now_s() + a->c.check_s;
        }
        if (e) { /* the daemon away: say hello again when it is back */
            qd_log(QD_LOG_WARN, "%s", qd_errmsg());
            sleep(1);
            e = hello(a);
        }
    }
    qd_sd_notify("STOPPING=1");
    return 0;
}

int main(int argc, char **argv)
{
    const char *cfg = NULL;
    int once = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: quantd-agent -c FILE [--once]\n"
                   "  the gateway's half of quantd's delivery (see etc/quantd-agent.conf)\n");
            return 0;
        }
        if (!strcmp(argv[i], "-c") && i + 1 < argc)
            cfg = argv[++i];
        else if (!strcmp(argv[i], "--once"))
            once = 1;
        else {
            fprintf(stderr, "quantd-agent: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    static struct agent a;
    if (!cfg || load_conf(cfg, &a.c)) {
        fprintf(stderr, "quantd-agent: %s\n", cfg ? qd_errmsg() : "-c FILE is required");
        return 2;
    }
    qd_log_threshold = !strcmp(a.c.log_level, "debug")   ? QD_LOG_DEBUG
                       : !strcmp(a.c.log_level, "warn")  ? QD_LOG_WARN
                       : !strcmp(a.c.log_level, "error") ? QD_LOG_ERROR
                                                         : QD_LOG_INFO;
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGPIPE, SIG_IGN);
    qd_err e = qd_ident_init(&a.me, a.c.id, a.c.key);
    if (!e)
        e = qd_client_hex_arg(a.c.sign_pub, a.pk, QD_PROTO_PUB_BYTES);
    if (!e)
        e = qd_agent_store_open(&a.st, a.c.dir);
    if (!e)
        e = qd_client_open(&a.cl, a.c.control, a.c.push, 10000);
    if (!e)
        e = qd_client_subscribe(&a.cl, a.c.id);
    if (e) {
        fprintf(stderr, "quantd-agent: %s\n", qd_errmsg());
        return 1;
    }
    a.st.before_step = crash_at;
    const char *fault = getenv("QD_AGENT_FAULT");
    if (fault && !strcmp(fault, "selftest")) /* fault injection: another digest */
        a.st.tamper = tamper_selftest;
    qd_log(QD_LOG_INFO, "quantd-agent %s: store %s holds version %lld", a.c.id, a.c.dir,
           (long long)a.st.version);
    int rc = run(&a, once);
    qd_client_close(&a.cl);
    qd_agent_store_close(&a.st);
    return rc;
}

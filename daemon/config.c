/* quantd's configuration table (see config.h). */
#include "daemon/config.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_STR, K_INT, K_NUM };

struct key {
    const char *section, *name;
    enum kind kind;
    size_t off, size;
    double lo, hi;
    int reload; /* SIGHUP applies it; otherwise a change needs a restart */
    const char *help;
};

#define S(sec, n, rl, h)                                                                           \
    {                                                                                              \
        sec, #n, K_STR, offsetof(struct qd_config, n), sizeof(((struct qd_config *)0)->n), 0, 0,   \
            rl, h                                                                                  \
    }
#define I(sec, n, lo, hi, rl, h)                                                                   \
    {                                                                                              \
        sec, #n, K_INT, offsetof(struct qd_config, n), 0, lo, hi, rl, h                            \
    }
#define N(sec, n, lo, hi, rl, h)                                                                   \
    {                                                                                              \
        sec, #n, K_NUM, offsetof(struct qd_config, n), 0, lo, hi, rl, h                            \
    }

static const struct key KEYS[] = {
    S("quantd", control, 0, "control endpoint (REP)"),
    S("quantd", push, 0, "push endpoint (PUB)"),
    S("quantd", state_dir, 0, "state directory (SQLite, models/, keys)"),
    S("quantd", log_level, 1, "error|warn|info|debug"),
    S("quantd", metrics, 0, "Prometheus metrics on tcp://HOST:PORT (/metrics); empty: none"),
    N("quantd", ack_timeout_ms, 10, 3.6e6, 1, "re-push when no ack within this time"),
    N("quantd", max_message, 256, 1 << 20, 1, "largest control request in bytes"),
    N("quantd", push_rate, 1, 1e5, 1, "MB/s of notifications at most (the rest waits a tick)"),
    N("quantd", fetch_chunk, 4096, 1 << 24, 1, "largest model chunk a fetch reply carries, bytes"),
    N("quantd", pack_level, 1, 19, 1,
      "zstd level of models packed for fetch (on the loop: higher packs smaller, slower)"),
    N("quantd", manifest_ttl_s, 60, 3.2e8, 1,
      "a model's signed manifest may be installed for this long after its fetch"),
    I("quantd", max_jobs, 1, 1e6, 1,
      "decisions and builds queued on the pool at most (more: EBUSY); a device has one at a time"),
    N("quantd", unauth_rate, 0.01, 1e4, 1,
      "MB/s of requests that fail to parse or authenticate; past it, requests over 2 KB are "
      "refused unread (ELIMIT) until it drops"),
    I("quantd", keys_in_clear, 0, 1, 1,
      "1: keys add|rotate may return a device key unsealed on a tcp:// control endpoint (0: "
      "only sealed to the seal_to key the caller gives, as quantctl does; ipc:// always may)"),
    I("quantd", threads, 1, 128, 0, "libuv thread pool size (decisions, builds, training)"),
    S("backbone", ckpt, 0, "float checkpoint; empty: <state_dir>/backbone.qdck, trained if absent"),
    S("backbone", gate, 0, "a gate (quantlab gate train) for the supernet in ckpt; empty: none"),
    I("backbone", bn_batches, 0, 10000, 0, "BatchNorm recalibration batches per policy (gate)"),
    S("backbone", model, 0, "family trained when there is no checkpoint"),
    S("backbone", data, 0, "data set of that training"),
    S("backbone", data_dir, 0, "where the data sets are (quantlab data fetch)"),
    I("backbone", train_epochs, 1, 1000, 0, "epochs of that training"),
    I("backbone", train_subset, 0, 1e9, 0, "training images (0: all)"),
    I("backbone", supernet_epochs, 0, 1000, 0,
      "then fine-tune it into a supernet for this many epochs (0: no supernet)"),
    I("backbone", supernet_sandwich, 1, 16, 0,
      "supernet: policies per step (the all-highest and the rest sampled)"),
    N("backbone", supernet_kd, 0, 1, 0,
      "supernet: weight of the float model's soft targets against the labels"),
    I("backbone", supernet_kd_self, 0, 1, 0,
      "supernet: 1: the soft targets are the step's all-highest pass's (needs sandwich >= 2)"),
    I("backbone", supernet_bn_sets, 1, 4, 0,
      "supernet: BatchNorm affine sets, one per weight width (4: switchable; 1: shared)"),
    I("backbone", gate_steps, 0, 1e8, 0, "then train a gate for this many steps (0: no gate)"),
    I("backbone", gate_probe, 0, 4096, 0,
      "gate: layers a step whose other widths' loss is measured (0: first-order estimate)"),
    I("backbone", sens_n, 16, 1e6, 0, "validation images for the sensitivity"),
    I("backbone", calib_n, 16, 1e6, 0, "images for activation calibration"),
    S("decide", devices_dir, 0, "device profiles directory"),
    N("decide", battery_floor, 0, 1, 1,
      "battery at or below it: the least energy; above: rising linearly to the most at 1"),
    N("retention", sweep_s, 0, 86400, 1,
      "seconds between retention sweeps (0: none); each removes what the keys below allow"),
    I("retention", versions_max, 2, 1e6, 1,
      "versions kept per device (its current, last acked and pinned ones always)"),
    I("retention", decisions_max, 100, 1e9, 1, "decision records kept, the newest"),
    N("retention", decisions_days, 0.001, 36500, 1, "and none older than this"),
    I("retention", events_max, 100, 1e9, 1, "event records kept, the newest"),
    N("retention", events_days, 0.001, 36500, 1, "and none older than this"),
};
#define NKEYS (int)(sizeof KEYS / sizeof KEYS[0])

void qd_config_defaults(struct qd_config *c)
{
    memset(c, 0, sizeof *c);
    strcpy(c->control, "tcp://127.0.0.1:7411");
    strcpy(c->push, "tcp://127.0.0.1:7412");
    strcpy(c->state_dir, "state");
    strcpy(c->log_level, "info");
    c->ack_timeout_ms = 2000;
    c->max_message = 64 * 1024;
    c->push_rate = 100;
    c->fetch_chunk = 256 * 1024;
    c->manifest_ttl_s = 7 * 86400;
    c->pack_level = 3;
    c->threads = 2;
    c->max_jobs = 256;
    c->unauth_rate = 4;
    strcpy(c->model, "custom");
    strcpy(c->data, "fashion-mnist");
    strcpy(c->data_dir, "data");
    c->train_epochs = 10;
    c->sens_n = 1000;
    c->calib_n = 1024;
    c->bn_batches = 50;
    c->supernet_epochs = 3;
    c->supernet_sandwich = 2;
    c->supernet_bn_sets = 1;
    c->supernet_kd = 1;
    c->gate_steps = 3000;
    strcpy(c->devices_dir, "etc/devices");
    c->battery_floor = 0.2;
    c->sweep_s = 60;
    c->versions_max = 20;
    c->decisions_max = 1000000;
    c->decisions_days = 90;
    c->events_max = 1000000;
    c->events_days = 365;
}

static const struct key *find(const char *name)
{
    for (int i = 0; i < NKEYS; i++)
        if (!strcmp(KEYS[i].name, name))
            return &KEYS[i];
    return NULL;
}

static qd_err set(struct qd_config *c, const struct key *k, const char *v, const char *where)
{
    char *p = (char *)c + k->off;
    if (k->kind == K_STR) {
        if (strlen(v) >= k->size)
            return qd_seterr(QD_EINVAL, "%s: %s is longer than %zu bytes", where, k->name,
                             k->size - 1);
        strcpy(p, v);
        if (!strcmp(k->name, "log_level") && strcmp(v, "error") && strcmp(v, "warn") &&
            strcmp(v, "info") && strcmp(v, "debug"))
            return qd_seterr(QD_EINVAL, "%s: log_level must be error, warn, info or debug, not %s",
                             where, v);
        return QD_OK;
    }
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end || errno || !isfinite(d))
        return qd_seterr(QD_EINVAL, "%s: %s must be a number, not '%s'", where, k->name, v);
    if (d < k->lo || d > k->hi)
        return qd_seterr(QD_EINVAL, "%s: %s = %s is outside [%g, %g]", where, k->name, v, k->lo,
                         k->hi);
    if (k->kind == K_INT) {
        if (d != floor(d))
            return qd_seterr(QD_EINVAL, "%s: %s must be an integer, not '%s'", where, k->name, v);
        *(int *)p = (int)d;
    } else
        *(double *)p = d;
    return QD_OK;
}

struct ini_ctx {
    struct qd_config *c;
    const char *path;
    int line;
    qd_err err;
};

static int on_ini(void *user, const char *section, const char *name, const char *value
#if INI_HANDLER_LINENO
                  ,
                  int lineno
#endif
)
{
    struct ini_ctx *x = user;
    x->line++;
#if INI_HANDLER_LINENO
    x->line = lineno;
#endif
    char where[1200];
    snprintf(where, sizeof where, "%s", x->path);
    const struct key *k = find(name);
    if (!k) {
        x->err = qd_seterr(QD_EINVAL, "unknown key '%s' in [%s]", name, section);
        return 0;
    }
    if (strcmp(k->section, section)) {
        x->err =
            qd_seterr(QD_EINVAL, "key '%s' belongs in [%s], not [%s]", name, k->section, section);
        return 0;
    }
    x->err = set(x->c, k, value, where);
    return !x->err;
}

qd_err qd_config_load_file(struct qd_config *c, const char *path)
{
    struct ini_ctx x = {c, path, 0, QD_OK};
    FILE *f = fopen(path, "r");
    if (!f)
        return qd_seterr(QD_ENOENT, "%s: %s", path, strerror(errno));
    int rc = ini_parse_file(f, on_ini, &x);
    fclose(f);
    if (rc == 0)
        return QD_OK;
    if (x.err) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", qd_errmsg());
        /* set() prefixed the path; say the line once */
        const char *m = !strncmp(msg, path, strlen(path)) ? msg + strlen(path) + 2 : msg;
        return qd_seterr(x.err, "%s:%d: %s", path, rc, m);
    }
    return qd_seterr(QD_EINVAL, "%s:%d: syntax error", path, rc);
}

qd_err qd_config_apply_flags(struct qd_config *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-c")) {
            i++;
            continue;
        }
        if (strncmp(a, "--", 2))
            return qd_seterr(QD_EINVAL, "unexpected argument '%s'", a);
        char name[64];
        const char *eq = strchr(a + 2, '='), *v;
        size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (n >= sizeof name)
            return qd_seterr(QD_EINVAL, "unknown flag %s", a);
        memcpy(name, a + 2, n);
        name[n] = 0;
        for (char *p = name; *p; p++)
            if (*p == '-')
                *p = '_';
        const struct key *k = find(name);
        if (!k)
            return qd_seterr(QD_EINVAL, "unknown flag %s (quantd --help lists them)", a);
        if (eq)
            v = eq + 1;
        else if (i + 1 < argc)
            v = argv[++i];
        else
            return qd_seterr(QD_EINVAL, "flag %s needs a value", a);
        char where[80];
        snprintf(where, sizeof where, "flag --%.*s", (int)n, a + 2);
        QD_TRY(set(c, k, v, where));
    }
    if (c->supernet_kd_self && c->supernet_sandwich < 2)
        return qd_seterr(QD_EINVAL, "supernet_kd_self = 1 needs supernet_sandwich >= 2 (it is %d)",
                         c->supernet_sandwich);
    return QD_OK;
}

void qd_config_restart_keys(const struct qd_config *old, const struct qd_config *c, char *buf,
                            size_t len)
{
    buf[0] = 0;
    for (int i = 0; i < NKEYS; i++) {
        const struct key *k = &KEYS[i];
        if (k->reload)
            continue;
        const char *a = (const char *)old + k->off, *b = (const char *)c + k->off;
        size_t sz = k->kind == K_STR ? k->size : k->kind == K_INT ? sizeof(int) : sizeof(double);
        if (k->kind == K_STR ? strcmp(a, b) != 0 : memcmp(a, b, sz) != 0)
            snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", buf[0] ? ", " : "", k->name);
    }
}

void qd_config_usage(FILE *f)
{
    fprintf(f, "usage: quantd [-c FILE] [--KEY VALUE ...]\n\nkeys (INI section; flag):\n");
    for (int i = 0; i < NKEYS; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "%s", KEYS[i].name);
        for (char *p = flag; *p; p++)
            if (*p == '_')
                *p = '-';
        fprintf(f, "  [%s] --%-16s %s%s\n", KEYS[i].section, flag, KEYS[i].help,
                KEYS[i].reload ? " (SIGHUP reloads)" : "");
    }
}

/* quantd: the daemon. One libuv loop owns the nanomsg sockets (their receive fds watched with
 * uv_poll), the device registry and the SQLite state; decisions, model builds and the
 * first-start training run on the libuv thread pool and report back to the loop, which alone
 * writes state and sends replies and pushes.
 *
 * A request goes: drain the raw REP socket -> parse (size, JSON, version, op) -> look the op up
 * in OPS (flags: needs the admin key, a device's key, a ready backbone) -> check the MAC and the
 * nonce -> the handler, which replies at once or queues a job whose completion replies. Every
 * failure is an error reply with a stable code; nothing a client sends can stop the loop.
 *
 * A report whose decision changes makes a new version: the blob (shared by every device with
 * the same policy, built once, signed with the daemon's Ed25519 key, stored content-addressed)
 * is recorded with the decision in one transaction, then pushed on PUB with topic = device id.
 * Until the device acks that version's hash, the push is repeated every ack_timeout_ms
 * (backing off to 8x); at start every unacked version is pushed again.
 *
 * This file: start (state, keys, sockets, handles, the boot job), reload (SIGHUP), stop
 * (SIGTERM/SIGINT: finish in-flight replies, close), main. The daemon's other objects are in
 * daemon_impl.h's list; only the loop thread touches the registry, the state and the sockets;
 * jobs read the decider (immutable once loaded) and the blob cache under its mutex. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "core/file.h"
#include "core/log.h"
#include "daemon/daemon_impl.h"

/* A key file: read if it exists; created (random, owner-only, directory fsynced) only when it is
 * missing. Any other failure (EACCES, EMFILE, EIO, a short or damaged file) stops the start: a
 * replaced signing key would make every device pinned to the old one refuse every model. */
static qd_err key_file(const char *path, uint8_t *buf, size_t n, int sign)
{
    uint8_t *b;
    size_t len;
    qd_err e = qd_file_read(path, &b, &len);
    if (!e) {
        char hex[2 * QD_PROTO_SECRET_BYTES + 2];
        snprintf(hex, sizeof hex, "%.*s", (int)(len < sizeof hex - 1 ? len : sizeof hex - 1),
                 (char *)b);
        hex[strcspn(hex, "\r\n ")] = 0;
        sodium_memzero(b, len);
        free(b);
        e = strlen(hex) == 2 * n
                ? qd_proto_unhex(hex, buf, n)
                : qd_seterr(QD_EFORMAT, "%zu hex digits, not %zu", strlen(hex), 2 * n);
        sodium_memzero(hex, sizeof hex);
        struct stat st;
        if (!e && !stat(path, &st) && (st.st_mode & 077)) {
            qd_log(QD_LOG_WARN, "%s: was readable by others (mode %03o); made owner-only", path,
                   (unsigned)(st.st_mode & 0777));
            chmod(path, 0600);
        }
        return e ? qd_wraperr(e, path, ": not a key file (left as it is)") : QD_OK;
    }
    if (e != QD_ENOENT)
        return qd_wraperr(e, NULL, " (a key is created only where none exists)");
    if (sign) {
        uint8_t pk[QD_PROTO_PUB_BYTES];
        crypto_sign_keypair(pk, buf);
    } else
        randombytes_buf(buf, n);
    char hex[2 * QD_PROTO_SECRET_BYTES + 2];
    qd_proto_hex(buf, n, hex);
    strcat(hex, "\n");
    mode_t old = umask(077);
    e = qd_file_write_atomic(path, hex, strlen(hex));
    umask(old);
    sodium_memzero(hex, sizeof hex);
    if (!e)
        qd_log(QD_LOG_INFO, "created %s", path);
    return e;
}

static void close_cb(uv_handle_t *h)
{
    (void)h;
}

static void shutdown_loop(struct qd_daemon *d)
{
    if (d->closed)
        return;
    d->closed = 1;
    uv_close((uv_handle_t *)&d->poll, close_cb);
    uv_close((uv_handle_t *)&d->tick, close_cb);
    uv_close((uv_handle_t *)&d->watchdog, close_cb);
    uv_close((uv_handle_t *)&d->sigterm, close_cb);
    uv_close((uv_handle_t *)&d->sigint, close_cb);
    uv_close((uv_handle_t *)&d->sighup, close_cb);
}

void qdd_maybe_finish_stop(struct qd_daemon *d)
{
    if (!d->stopping || d->inflight > 0)
        return;
    if (d->boot_running) {
        uv_stop(d->loop); /* cannot wait for a training run: main exits without it */
        return;
    }
    shutdown_loop(d);
}

static void on_stop(uv_signal_t *s, int sig)
{
    struct qd_daemon *d = s->data;
    qd_log(QD_LOG_INFO, "%s: stopping after %d in-flight replies",
           sig == SIGTERM ? "SIGTERM" : "SIGINT", d->inflight);
    qd_sd_notify("STOPPING=1");
    d->stopping = 1;
    uv_poll_stop(&d->poll);
    qdd_maybe_finish_stop(d);
}

static void set_log_level(const char *l)
{
    qd_log_threshold = !strcmp(l, "error")   ? QD_LOG_ERROR
                       : !strcmp(l, "warn")  ? QD_LOG_WARN
                       : !strcmp(l, "debug") ? QD_LOG_DEBUG
                                             : QD_LOG_INFO;
}

static void on_hup(uv_signal_t *s, int sig)
{
    struct qd_daemon *d = s->data;
    qd_sd_notify("RELOADING=1");
    struct qd_config c;
    qd_config_defaults(&c);
    qd_err e = d->cfg_path ? qd_config_load_file(&c, d->cfg_path) : QD_OK;
    if (!e)
        e = qd_config_apply_flags(&c, d->argc, d->argv);
    if (e)
        qd_log(QD_LOG_ERROR, "SIGHUP: config not reloaded: %s", qd_errmsg());
    else {
        char keys[512];
        qd_config_restart_keys(&d->cfg, &c, keys, sizeof keys);
        if (keys[0])
            qd_log(QD_LOG_WARN, "SIGHUP: %s changed; they take effect at the next start", keys);
        d->cfg.ack_timeout_ms = c.ack_timeout_ms;
        d->cfg.max_message = c.max_message;
        d->cfg.battery_floor = c.battery_floor;
        d->cfg.push_rate = c.push_rate;
        d->cfg.fetch_chunk = c.fetch_chunk;
        d->cfg.manifest_ttl_s = c.manifest_ttl_s;
        d->cfg.pack_level = c.pack_level;
        d->cfg.keys_in_clear = c.keys_in_clear;
        d->cfg.max_jobs = c.max_jobs;
        d->cfg.unauth_rate = c.unauth_rate;
        d->cfg.sweep_s = c.sweep_s;
        d->cfg.versions_max = c.versions_max;
        d->cfg.decisions_max = c.decisions_max;
        d->cfg.decisions_days = c.decisions_days;
        d->cfg.events_max = c.events_max;
        d->cfg.events_days = c.events_days;
        d->sweep_at_ms = 0; /* a sweep at the next tick, under the new settings */
        snprintf(d->cfg.log_level, sizeof d->cfg.log_level, "%s", c.log_level);
        set_log_level(c.log_level);
        qd_log(QD_LOG_INFO, "SIGHUP: configuration reloaded");
    }
    qd_sd_notify("READY=1");
    (void)sig;
}

static void on_watchdog(uv_timer_t *t)
{
    qd_sd_notify("WATCHDOG=1");
}

static int run(struct qd_daemon *d)
{
    struct qd_config *c = &d->cfg;
    char path[1200];
    qd_err e = qd_file_mkdir_private(c->state_dir); /* keys, device keys and nonces live there */
    if (!e)
        e = qd_state_open(c->state_dir, &d->st);
    if (!e) { /* the last accepted admin nonce: a request captured before a restart stays old */
        char v[32];
        if (!qd_state_meta_get(d->st, "admin_nonce", v, sizeof v))
            d->admin_nonce = strtoll(v, NULL, 10);
    }
    if (!e) {
        snprintf(path, sizeof path, "%s/admin.key", c->state_dir);
        e = key_file(path, d->admin_key, QD_PROTO_KEY_BYTES, 0);
    }
    if (!e) {
        snprintf(path, sizeof path, "%s/sign.key", c->state_dir);
        e = key_file(path, d->sign_sk, QD_PROTO_SECRET_BYTES, 1);
        crypto_sign_ed25519_sk_to_pk(d->sign_pk, d->sign_sk);
    }
    randombytes_buf(d->unknown_key, sizeof d->unknown_key);
    if (!e)
        e = qd_state_devices_load(d->st, qdd_dev_restore, d);
    if (!e)
        e = qd_state_settings_load(d->st, qdd_settings_restore, d);
    if (e) {
        fprintf(stderr, "quantd: %s\n", qd_errmsg());
        return 1;
    }
    if ((e = qd_tp_rep_bind(c->control, &d->rep)) || (e = qd_tp_pub_bind(c->push, &d->pub)) ||
        (e = qdd_metrics_start(d))) {
        fprintf(stderr, "quantd: %s\n", qd_errmsg());
        return 1;
    }
    d->loop = uv_default_loop();
    uv_poll_init(d->loop, &d->poll, qd_tp_rcvfd(d->rep));
    d->poll.data = d;
    uv_poll_start(&d->poll, UV_READABLE, qdd_on_readable);
    uv_timer_init(d->loop, &d->tick);
    d->tick.data = d;
    uv_timer_start(&d->tick, qdd_push_tick, TICK_MS, TICK_MS);
    d->push_tokens = c->push_rate * 1e6 * TICK_MS / 1e3;
    d->unauth_tokens = c->unauth_rate * 1e6;
    uv_timer_init(d->loop, &d->watchdog);
    const char *wd = getenv("WATCHDOG_USEC");
    if (wd && atoll(wd) > 0)
        uv_timer_start(&d->watchdog, on_watchdog, (uint64_t)(atoll(wd) / 2000),
                       (uint64_t)(atoll(wd) / 2000));
    uv_signal_init(d->loop, &d->sigterm);
    uv_signal_init(d->loop, &d->sigint);
    uv_signal_init(d->loop, &d->sighup);
    d->sigterm.data = d->sigint.data = d->sighup.data = d;
    uv_signal_start(&d->sigterm, on_stop, SIGTERM);
    uv_signal_start(&d->sigint, on_stop, SIGINT);
    uv_signal_start(&d->sighup, on_hup, SIGHUP);

    static uv_work_t boot;
    boot.data = d;
    d->boot_running = 1;
    uv_queue_work(d->loop, &boot, qdd_boot_work, qdd_boot_done);
    qd_log(QD_LOG_INFO, "quantd: control %s, push %s, state %s, %d devices", c->control, c->push,
           c->state_dir, d->ndev);
    qd_sd_notify("READY=1\nSTATUS=serving; loading the backbone");
    uv_run(d->loop, UV_RUN_DEFAULT);
    int training = d->boot_running;
    if (!training && uv_loop_close(d->loop))
        qd_log(QD_LOG_WARN, "loop closed with handles open");
    qdd_metrics_stop(d);
    qd_tp_close(d->rep);
    qd_tp_close(d->pub);
    qd_state_close(d->st);
    d->st = NULL;
    qd_log(QD_LOG_INFO, "quantd: stopped");
    if (training) {
        fflush(NULL);
        _exit(0); /* the training thread cannot be joined in reasonable time */
    }
    return 0;
}

static void fini(struct qd_daemon *d)
{
    for (int i = 0; i < d->ndev; i++) {
        free(d->devs[i]->set);
        free(d->devs[i]);
    }
    free(d->devs);
    free(d->pend);
    free(d->redo);
    free(d->groups);
    free(d->rq);
    qdd_smap_fini(&d->dev_by_id);
    for (int i = 0; i < d->nblob; i++)
        if (qdd_blob(d, i)) { /* (NULL: removed by retention) */
            free(qdd_blob(d, i)->policy);
            free(qdd_blob(d, i)->qm);
            free(qdd_blob(d, i));
        }
    free(d->blob_free);
    for (int p = 0; p < QDD_BLOB_PAGES; p++)
        free(d->blob_page[p]);
    qdd_smap_fini(&d->blob_by_policy);
    qdd_smap_fini(&d->blob_by_sha);
    for (int i = 0; i < d->nprof; i++)
        if (d->prof[i].have_t)
            qd_decide_tables_fini(&d->prof[i].t);
    if (atomic_load(&d->phase) == QDD_PH_READY)
        qd_decider_fini(&d->dec);
    if (d->have_gate) {
        qd_gate_fini(&d->gate);
        qd_bn_cache_fini(&d->bn);
    }
    qdd_packs_fini(d);
    uv_mutex_destroy(&d->build_mu);
    uv_mutex_destroy(&d->tables_mu);
    sodium_memzero(d->sign_sk, sizeof d->sign_sk);
    sodium_memzero(d->admin_key, sizeof d->admin_key);
    uv_mutex_destroy(&d->blob_mu);
}

int main(int argc, char **argv)
{
    static struct qd_daemon d;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            qd_config_usage(stdout);
            return 0;
        }
    qd_config_defaults(&d.cfg);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-c")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "quantd: -c needs a file\n");
                return 2;
            }
            d.cfg_path = argv[i + 1];
        }
    qd_err e = d.cfg_path ? qd_config_load_file(&d.cfg, d.cfg_path) : QD_OK;
    if (!e)
        e = qd_config_apply_flags(&d.cfg, argc, argv);
    if (e) {
        fprintf(stderr, "quantd: %s\n", qd_errmsg());
        return 2;
    }
    d.argc = argc, d.argv = argv;
    set_log_level(d.cfg.log_level);
    if (sodium_init() < 0) {
        fprintf(stderr, "quantd: libsodium failed to initialize\n");
        return 1;
    }
    char th[16];
    snprintf(th, sizeof th, "%d", d.cfg.threads);
    setenv("UV_THREADPOOL_SIZE", th, 1);
    /* the gate's training (a pool job) resolves profile names through it: set here, before
     * any thread exists, never from a pool thread racing getenv on the loop */
    setenv("QD_DEVICE_DIR", d.cfg.devices_dir, 1);
    signal(SIGPIPE, SIG_IGN);
    uv_mutex_init(&d.blob_mu);
    uv_mutex_init(&d.build_mu);
    uv_mutex_init(&d.tables_mu);
    d.started = qdd_now_s();
    atomic_store(&d.phase, QDD_PH_LOADING);
    int rc = run(&d);
    fini(&d);
    return rc;
}

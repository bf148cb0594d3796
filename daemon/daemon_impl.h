/* What only the daemon's files share (libuv's src/unix/internal.h, nng's nng_impl.h): the
 * daemon object, its registry, blob, job and call types, and the functions that cross its files,
 * prefixed qdd_. Nothing here is API: quantd is one program.
 *
 * The objects, one per file:
 *   smap.c        string -> index map (devices by id, blobs by policy)
 *   registry.c    devices and device profiles
 *   blobs.c       built models: content-addressed, shared by every device with the policy
 *   packs.c       models packed for fetch (zstd, or a patch against the device's version)
 *   reply.c       replies on the REP socket
 *   push.c        pushes on PUB, their pacing and re-push after a missing ack
 *   jobs.c        decisions and builds on the thread pool, and their completion on the loop
 *   ops.c         the request path: parse, look up the op, authenticate, dispatch; the op table
 *   ops_admin.c   the operator's ops (health, stats, devices, device, keys)
 *   ops_device.c  the devices' ops (hello, report, decide, fetch, ack)
 *   fleet.c       groups, settings (budget caps, accuracy floor, widths, pins), reverts to an
 *                 earlier version, and the re-decisions a changed setting queues
 *   ops_fleet.c   the operator's fleet ops (group, set, rollback, revoke, delete, events)
 *   boot.c        the backbone: loaded, or trained on the first start (supernet and gate too)
 *   quantd.c      start, reload, stop, main
 *
 * Threads: only the loop thread touches the registry, the state and the sockets; jobs read the
 * decider (immutable once loaded) and the blob cache under blob_mu. */
#ifndef QD_DAEMON_IMPL_H
#define QD_DAEMON_IMPL_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "core/sdnotify.h"
#include "daemon/config.h"
#include "daemon/state.h"
#include "gate/gate.h"
#include "gate/supernet.h"
#include "policy/decide.h"
#include "proto/pack.h"
#include "proto/proto.h"
#include "proto/transport.h"

#define MAX_PROFILES 64
/* Blobs live in pages that never move (the loop reads them without the lock): 4096 pages of
 * 4096, allocated as needed. */
#define QDD_BLOB_PAGE 4096
#define QDD_BLOB_PAGES 4096
#define TICK_MS 20
#define INLINE_SEARCH_US 200.0

/* An operator's settings of a device or a group (fleet.c); a device's override its group's
 * field by field. */
struct qdd_settings {
    double budget[QD_BUDGET_COUNT]; /* caps in bytes, ms, mJ, bytes; NAN: none */
    double share[QD_BUDGET_COUNT];  /* caps as a fraction of the int8 model's figure; NAN: none */
    double floor;                   /* predicted accuracy at least this (0..1); NAN: none */
    unsigned bits;                  /* weight widths allowed (bit b: b bits); 0: any */
    int64_t pin;                    /* the version held whatever the context says (a device);
                                       QDD_PIN_CURRENT: each stays on its current; 0: none */
};
#define QDD_PIN_CURRENT (-1)
#define QDD_MAX_GROUPS 4096

struct qdd_group {
    char name[QD_PROTO_MAX_ID + 1];
    struct qdd_settings set;
    int has_set;
};

/* A latency histogram (metrics.c): cumulative counts at the bounds QDD_HIST_SECONDS. */
#define QDD_HIST_BUCKETS 16
struct qdd_hist {
    long b[QDD_HIST_BUCKETS], count;
    double sum;
};
#define QDD_MAX_OPS 32 /* the op table's size at most (ops.c) */
struct MHD_Daemon;

struct qdd_dev {
    char id[QD_PROTO_MAX_ID + 1];
    uint8_t key[QD_PROTO_KEY_BYTES];
    int prof;                /* index into profiles; -1 until hello */
    double flash, ram;       /* hello's own figures (0: the profile's) */
    struct qd_proto_ctx ctx; /* the last report's context */
    int64_t nonce, version, acked;
    int blob;                 /* the current version's blob; -1 none */
    int64_t push_due;         /* ms; 0: nothing to push */
    int tries, busy, pending; /* pushes of this version; a decision in flight; in pend[] */
    int group;                /* index into groups; -1: none */
    int status;               /* enum qd_state_status */
    int redo;                 /* waits in redo[] for a re-decision (a setting changed) */
    int64_t seen_ms;          /* wall clock of the last request heard from it */
    double pushed_s;          /* its current version's first notification (qdd_now_s); 0: none */
    struct qdd_settings *set; /* its own settings; NULL: none */
};

struct qdd_blob {
    char sha[65];
    char *policy;
    uint8_t sig[QD_PROTO_SIG_BYTES];
    uint8_t *qm; /* NULL until needed (read from models/) */
    size_t len;
    char test_sha[65]; /* its self-test digest ("" until computed) */
    int rebuilding;    /* its file is being built again (loop thread) */
    int held;          /* decision jobs holding its index (under blob_mu): retention waits */
    long kept;         /* the last retention sweep that found it in use (loop thread) */
};

struct qdd_profile {
    struct qd_device dev;
    struct qd_decide_tables t;
    atomic_int have_t; /* set (under tables_mu) once t is built; read without the lock */
    double search_us;  /* running mean of this profile's search time; 0: none yet */
};

/* A packed model for fetch replies: the model sha (packed against base: "" for none). */
struct qdd_pack {
    char sha[65], base[65];
    enum qd_pack kind;
    uint8_t *b; /* NULL: a free slot */
    size_t n;
    long used; /* pack_clock at the last use */
};
#define QDD_PACKS 64

/* Open-addressing map from a string to an index (devices by id, blobs by policy). */
struct qdd_smap {
    uint32_t cap, n;
    const char **key;
    int *val;
};

/* the backbone's life: what health reports */
enum {
    QDD_PH_LOADING,
    QDD_PH_TRAINING,
    QDD_PH_SENSITIVITY,
    QDD_PH_READY,
    QDD_PH_FAILED,
    QDD_PH_SUPERNET,
    QDD_PH_GATE
};

struct qd_daemon {
    struct qd_config cfg;
    const char *cfg_path;
    int argc;
    char **argv;
    uv_loop_t *loop;
    uv_poll_t poll;
    uv_timer_t tick, watchdog;
    uv_signal_t sigterm, sigint, sighup;
    int rep, pub;
    qd_state_t *st;
    uint8_t admin_key[QD_PROTO_KEY_BYTES], sign_sk[QD_PROTO_SECRET_BYTES],
        sign_pk[QD_PROTO_PUB_BYTES];
    uint8_t unknown_key[QD_PROTO_KEY_BYTES]; /* random: requests from unknown ids fail as a bad
                                              * MAC does */
    int64_t admin_nonce;
    /* registry */
    struct qdd_dev **devs;
    int ndev, capdev;
    struct qdd_smap dev_by_id;
    int *pend, npend, cappend; /* devices with an unacked push */
    int *redo, nredo, capredo; /* devices waiting for a re-decision (fleet.c) */
    struct qdd_group *groups;  /* fleet.c */
    int ngroup, capgroup;
    double push_tokens;   /* bytes that may still be pushed in this tick */
    double unauth_tokens; /* bytes of requests failing parse or MAC still allowed */
    /* blobs: loop and jobs, under blob_mu */
    uv_mutex_t blob_mu;
    struct qdd_blob **blob_page[QDD_BLOB_PAGES];
    int nblob;                      /* slots used; a removed blob's slot is NULL, in blob_free */
    int *blob_free, nfree, capfree; /* until a new blob takes it */
    struct qdd_smap blob_by_policy, blob_by_sha;
    /* backbone */
    struct qd_decider dec;
    struct qd_gate gate;   /* with a supernet: decisions are the gate's, made feasible */
    struct qd_bn_cache bn; /* the supernet's per-policy BatchNorm statistics */
    int have_gate;
    uv_mutex_t build_mu;  /* supernet builds touch the model's statistics: one at a time */
    uv_mutex_t tables_mu; /* a profile's cost tables: built once, on the pool, under it */
    struct qdd_pack packs[QDD_PACKS]; /* fetch replies' packed models, by (sha, base) */
    long pack_clock;
    struct qdd_profile prof[MAX_PROFILES];
    int nprof;
    atomic_int phase, epoch, epochs;
    char phase_msg[512], backbone_id[80];
    /* life */
    int stopping, inflight, boot_running, closed;
    double started;
    /* counters */
    long n_req, n_err, n_push, n_repush, n_ack, n_dec, n_build, n_cache_hit, n_fetch;
    long n_fetch_bytes, n_event; /* model bytes sent by fetch replies; device events */
    long n_unread;               /* requests refused unread (unauth_rate spent) */
    long n_batches;              /* drains committed as one transaction */
    long n_redecide, n_revert;   /* re-decisions after a setting; reverts (rollback, pin) */
    /* retention (retain.c) */
    int64_t sweep_at_ms;           /* the next sweep */
    long sweep_gen, n_sweep;       /* sweeps made */
    long n_pruned_blobs, n_pruned_versions, n_pruned_decisions, n_pruned_events;
    int64_t state_bytes;           /* state directory's size at the last sweep (SQLite, models/) */
    /* replies of the batch being drained, sent after its commit */
    int batching, nrq, caprq;
    struct qdd_queued *rq;
    long n_errcode[QD_ERR_COUNT];
    /* metrics (metrics.c): per op (0: none, i + 1: op i) requests and error replies by code */
    long n_op[QDD_MAX_OPS + 1], n_op_err[QDD_MAX_OPS + 1][QD_ERR_COUNT];
    long n_refusal[QD_ERR_COUNT]; /* devices' refusals by code (ESELFTEST: self-test failed) */
    int cur_op;                   /* the op whose reply is being sent; -1: none */
    struct qdd_hist h_decide, h_build, h_push_ack;
    struct MHD_Daemon *metrics;
    uv_mutex_t metrics_mu; /* guards the rendered text the HTTP thread serves */
    int metrics_mu_init;
    int64_t metrics_at_ms; /* the next rendering */
    char *metrics_text;
    size_t metrics_len;
};

/* A reply waiting for its batch's commit. */
struct qdd_queued {
    struct qd_tp_req req; /* the routing header */
    uint8_t *b;
    size_t n;
};

enum qdd_job_kind { QDD_JOB_REPORT, QDD_JOB_DECIDE, QDD_JOB_REBUILD, QDD_JOB_PARETO };

struct qdd_job {
    uv_work_t w;
    struct qd_daemon *d;
    enum qdd_job_kind kind;
    struct qd_tp_req req;
    int dev;   /* registry index (QDD_JOB_REPORT) */
    int holds; /* registry index of the device whose one job this is (its busy flag), or -1 */
    int prof;
    struct qd_proto_ctx ctx;        /* the context reported (or asked about) */
    double dev_flash, dev_ram;      /* the device's own figures from hello (0: the profile's) */
    double budget[QD_BUDGET_COUNT]; /* made of those on the pool (the tables may be built there) */
    struct qdd_settings set;        /* the operator's (effective: the device's over its group's) */
    int internal;                   /* queued by the daemon itself (a re-decision): no reply */
    double battery;
    char *context; /* JSON text of the report */
    int64_t nonce;
    /* results */
    qd_err err;
    char msg[600];
    struct qd_decision r;
    char policy[QD_POLICY_MAX * 6];
    int blob; /* index of the blob (found or built) */
    int built;
    int held; /* it holds blob (qdd_blob_release at completion) */
    int op;   /* the op it answers (ops.c's index), for the metrics */
    double queued_s, build_s; /* when queued (qdd_now_s); seconds its build took (0: none) */
    int metric, points;       /* QDD_JOB_PARETO: the figure swept (enum qd_budget), its steps */
    cJSON *out;               /* QDD_JOB_PARETO: the frontier's points */
};

struct qdd_call {
    struct qd_daemon *d;
    struct qd_tp_req *req;
    cJSON *j;
    struct qdd_dev *dev; /* the sender when a device */
    int admin;
    int64_t nonce;
    int deferred; /* the handler took the request over */
};

typedef qd_err (*qdd_op_fn)(struct qdd_call *c, cJSON *reply);

static inline double qdd_now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static inline int64_t qdd_now_ms(void)
{
    return (int64_t)(qdd_now_s() * 1000);
}

/* smap.c */
int qdd_smap_get(const struct qdd_smap *m, const char *k);     /* -1: none */
qd_err qdd_smap_put(struct qdd_smap *m, const char *k, int v); /* k is kept, not copied */
void qdd_smap_del(struct qdd_smap *m, const char *k, int v);   /* k's entry, if it maps to v */
void qdd_smap_fini(struct qdd_smap *m);

/* registry.c */
qd_err qdd_dev_insert(struct qd_daemon *d, const struct qd_state_device *s, struct qdd_dev **out);
struct qdd_dev *qdd_dev_find(struct qd_daemon *d, const char *id);
int qdd_dev_index(struct qd_daemon *d, const struct qdd_dev *x);
qd_err qdd_dev_restore(void *ctx, const struct qd_state_device *s); /* qd_state_devices_load */
int qdd_profile_get(struct qd_daemon *d, const char *name);         /* -1: error set */
qd_err qdd_profile_tables(struct qd_daemon *d, int i); /* any thread: under tables_mu */

/* blobs.c */
static inline struct qdd_blob *qdd_blob(const struct qd_daemon *d, int i)
{
    return d->blob_page[i / QDD_BLOB_PAGE][i % QDD_BLOB_PAGE];
}
int qdd_blob_find_locked(struct qd_daemon *d, const char *policy);
qd_err qdd_blob_add_locked(struct qd_daemon *d, const char *sha, const char *policy,
                           const uint8_t *sig, uint8_t *qm, size_t len, int index, int *idx);
qd_err qdd_blob_bytes(struct qd_daemon *d, int i, const uint8_t **qm, size_t *len);
int qdd_blob_by_sha(struct qd_daemon *d, const char *sha);
/* The blob's self-test digest (client/selftest.h), computed on first need (loop thread). */
qd_err qdd_blob_selftest(struct qd_daemon *d, int i, const char **sha);
qd_err qdd_blob_of_sha(struct qd_daemon *d, const char *sha, int *idx);
qd_err qdd_blob_restore(void *ctx, const char *sha, const char *policy, const uint8_t *sig);
/* Removes blob i from memory (not held by a job: 0 when it is, and nothing changes); its
 * slot is taken by the next blob added. Under blob_mu. */
int qdd_blob_drop_locked(struct qd_daemon *d, int i);
int qdd_blob_count(struct qd_daemon *d); /* blobs held (takes blob_mu: jobs add them) */
/* A decision job's hold on blob i, so that retention leaves it (hold under blob_mu). */
void qdd_blob_release(struct qd_daemon *d, int i);

/* pareto.c: the pareto op's job (on the pool) */
void qdd_pareto_work(struct qdd_job *j);

/* metrics.c: Prometheus text on `metrics` (libmicrohttpd's thread serves what the loop
 * renders each second). */
extern const double QDD_HIST_SECONDS[QDD_HIST_BUCKETS];
void qdd_hist_observe(struct qdd_hist *h, double v);
qd_err qdd_metrics_start(struct qd_daemon *d);
void qdd_metrics_tick(struct qd_daemon *d);
void qdd_metrics_stop(struct qd_daemon *d);
/* ops.c: the op table, for the metrics' labels */
int qdd_op_count(void);
const char *qdd_op_name(int i);

/* retain.c: the sweep (push tick, every sweep_s): old versions, decisions and events pruned,
 * blobs no device's current, last acked or pinned version names removed, the state's size. */
void qdd_retain_tick(struct qd_daemon *d, int64_t now_ms);

/* packs.c */
/* The packing of blob bi for a device holding blob base (-1: none). */
qd_err qdd_pack_get(struct qd_daemon *d, int bi, int base, const struct qdd_pack **p);
void qdd_packs_fini(struct qd_daemon *d);

/* reply.c */
void qdd_reply_raw(struct qd_daemon *d, struct qd_tp_req *r, const void *b, size_t n);
void qdd_reply_json(struct qd_daemon *d, struct qd_tp_req *r, cJSON *j); /* deletes j */
/* Sends the batch's queued replies once its state committed (commit == QD_OK), or an error
 * reply (commit, why) for each when the commit failed. */
void qdd_reply_flush(struct qd_daemon *d, qd_err commit, const char *why);
void qdd_reply_err(struct qd_daemon *d, struct qd_tp_req *r, qd_err e, const char *msg);

/* push.c */
void qdd_push_pending(struct qd_daemon *d, struct qdd_dev *x);
void qdd_push(struct qd_daemon *d, struct qdd_dev *x);
void qdd_push_tick(uv_timer_t *t);

/* jobs.c */
void qdd_budgets(struct qd_daemon *d, double dev_flash, double dev_ram, const struct qdd_profile *p,
                 const struct qd_proto_ctx *c, const struct qdd_settings *set, double *b);
qd_err qdd_job_queue(struct qdd_call *c, struct qdd_job *j); /* takes j */
/* A report job for device x from its last context (a re-decision): no reply. */
qd_err qdd_job_redecide(struct qd_daemon *d, struct qdd_dev *x);
void qdd_job_run_inline(struct qdd_call *c, struct qdd_job *j);
/* A blob whose file is missing or damaged: queues its rebuild (once) and returns the EBUSY that
 * tells the caller to fetch again; ENOENT when it is not the current backbone's. */
qd_err qdd_blob_rebuild(struct qd_daemon *d, int bi);

/* ops.c, ops_admin.c, ops_device.c */
void qdd_on_readable(uv_poll_t *p, int status, int events);
qd_err qdd_op_health(struct qdd_call *c, cJSON *r);
qd_err qdd_op_stats(struct qdd_call *c, cJSON *r);
qd_err qdd_op_devices(struct qdd_call *c, cJSON *r);
qd_err qdd_op_device(struct qdd_call *c, cJSON *r);
qd_err qdd_op_keys(struct qdd_call *c, cJSON *r);
qd_err qdd_op_hello(struct qdd_call *c, cJSON *r);
qd_err qdd_op_report(struct qdd_call *c, cJSON *r);
qd_err qdd_op_decide(struct qdd_call *c, cJSON *r);
qd_err qdd_op_fetch(struct qdd_call *c, cJSON *r);
qd_err qdd_op_ack(struct qdd_call *c, cJSON *r);
qd_err qdd_op_event(struct qdd_call *c, cJSON *r);

/* fleet.c */
extern const char *const QDD_BUDGET_FIELD[QD_BUDGET_COUNT]; /* the wire's names: flash, ram, ... */
void qdd_settings_none(struct qdd_settings *s);
/* The caps of s on a profile (its shares of the int8 model's figures made units; INFINITY: no
 * cap). */
void qdd_settings_caps(const struct qdd_settings *s, const struct qd_decide_tables *t, double *cap);
/* Records a target's settings ("device" or "group", its name; empty ones removed) and, with
 * event, a "set" event. */
qd_err qdd_settings_save(struct qd_daemon *d, const char *kind, const char *name,
                         const struct qdd_settings *s, int event);
int qdd_settings_empty(const struct qdd_settings *s);
/* Reads the fields of j that are settings into s (others untouched); EINVAL names a bad one. */
qd_err qdd_settings_read(const cJSON *j, int group, struct qdd_settings *s);
cJSON *qdd_settings_json(const struct qdd_settings *s);
/* Removes the named fields ("budgets", a budget's name, "accuracy_floor", "bits", "pin"). */
qd_err qdd_settings_clear(struct qdd_settings *s, const char *field);
/* What applies to x: its own settings over its group's. */
void qdd_settings_of(const struct qd_daemon *d, const struct qdd_dev *x, struct qdd_settings *s);
int qdd_group_find(const struct qd_daemon *d, const char *name);              /* -1: none */
qd_err qdd_group_get(struct qd_daemon *d, const char *name, int *idx);        /* created if new */
qd_err qdd_settings_restore(void *ctx, const char *target, const char *body); /* at start */
/* A new version of x carrying version v's model (a rollback, a pin): recorded and pushed. */
qd_err qdd_revert(struct qd_daemon *d, struct qdd_dev *x, int64_t v, const char *why);
/* Queues x for a re-decision from its last context (pinned devices: reverted if needed). */
void qdd_redecide(struct qd_daemon *d, struct qdd_dev *x);
/* Starts queued re-decisions while the pool has room (tick). */
void qdd_redecide_pump(struct qd_daemon *d);
qd_err qdd_op_group(struct qdd_call *c, cJSON *r);
qd_err qdd_op_set(struct qdd_call *c, cJSON *r);
qd_err qdd_op_rollback(struct qdd_call *c, cJSON *r);
qd_err qdd_op_revoke(struct qdd_call *c, cJSON *r);
qd_err qdd_op_events(struct qdd_call *c, cJSON *r);
qd_err qdd_op_pareto(struct qdd_call *c, cJSON *r); /* pareto.c */

/* boot.c */
void qdd_boot_work(uv_work_t *w);
void qdd_boot_done(uv_work_t *w, int status);

/* quantd.c */
void qdd_maybe_finish_stop(struct qd_daemon *d);

#endif

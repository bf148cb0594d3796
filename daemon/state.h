/* quantd's durable state behind one small interface (SQLite in WAL mode today; a second
 * backend such as PostgreSQL is another state_*.c behind the same functions).
 *
 * Usage:
 *     qd_state_t *st;
 *     if (qd_state_open("/var/lib/quantd", &st)) die(qd_errmsg());   // creates models/, state.db
 *     qd_state_devices_load(st, on_device, ctx);                     // everything, at start
 *     qd_state_decision(st, &dec);                                   // one transaction
 *     qd_state_close(st);
 *
 * Tables: meta (key/value), devices (id, key, profile, context, nonce, current and acked
 * version), blobs (sha256, backbone, policy, size, signature), versions (device, version, sha256,
 * acked time), decisions (every decision with its context, policy, costs or error), events.
 * Blobs live in <dir>/models/<sha256>.qm, written to a temporary file, fsynced and renamed
 * before the row that names them commits. WAL mode with synchronous=FULL: a committed
 * transaction survives the process being killed and the power failing at any instant (keys,
 * versions and nonces replied to must not come back older). A batch (the loop drains every
 * request waiting, then commits once, then replies) shares one fsync among its requests; inside
 * it each function's transaction is a savepoint. Another writer on the file makes a call wait
 * 250 ms at most, then fail with EBUSY. Single-threaded: only the
 * daemon's loop thread calls these (qd_state_blob_write excepted: it only touches files). */
#ifndef QD_DAEMON_STATE_H
#define QD_DAEMON_STATE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "proto/proto.h"

typedef struct qd_state qd_state_t;

struct qd_state_device {
    char id[QD_PROTO_MAX_ID + 1];
    uint8_t key[QD_PROTO_KEY_BYTES];
    char profile[QD_PROTO_MAX_ID + 1]; /* "" until hello */
    const char *context;               /* JSON text or NULL */
    int64_t nonce, version, acked;
    char sha[65];                    /* the current version's blob ("" when none) */
    double flash, ram;               /* hello's own figures (0: the profile's) */
    char group[QD_PROTO_MAX_ID + 1]; /* "" for none */
    int status;                      /* enum qd_state_status */
    int64_t seen_ms;                 /* the last request it was heard from (0: never) */
};

/* A device's standing: revoked (its key refused) and deleted (also gone from the listings, its
 * history kept) both end at `keys rotate`. */
enum qd_state_status { QD_STATE_ACTIVE, QD_STATE_REVOKED, QD_STATE_DELETED };

/* Which events `qd_state_events` returns (NULL / 0: any), newest first. */
struct qd_state_event_filter {
    const char *device, *group, *kind;
    int64_t since_ms;
    int limit;
};

/* A decision to record: a new version when version > 0 (its blob row is added if new). */
struct qd_state_decision {
    const char *device, *context, *policy, *costs, *error;
    int64_t nonce, version;
    const char *sha, *backbone;
    size_t size;
    const uint8_t *sig;
};

qd_err qd_state_open(const char *dir, qd_state_t **st);
void qd_state_close(qd_state_t *st);
/* One transaction around the calls until the commit (a failed commit rolls all of them back). */
qd_err qd_state_batch_begin(qd_state_t *st);
qd_err qd_state_batch_commit(qd_state_t *st);

qd_err qd_state_meta_get(qd_state_t *st, const char *key, char *buf, size_t len);
qd_err qd_state_meta_set(qd_state_t *st, const char *key, const char *value);

qd_err qd_state_devices_load(qd_state_t *st,
                             qd_err (*cb)(void *ctx, const struct qd_state_device *d), void *ctx);
/* QD_EEXIST when the id is taken. */
qd_err qd_state_device_add(qd_state_t *st, const char *id, const uint8_t *key);
qd_err qd_state_device_set_key(qd_state_t *st, const char *id, const uint8_t *key);
qd_err qd_state_device_hello(qd_state_t *st, const char *id, const char *profile, double flash,
                             double ram, int64_t nonce);
qd_err qd_state_device_nonce(qd_state_t *st, const char *id, int64_t nonce);
qd_err qd_state_decision(qd_state_t *st, const struct qd_state_decision *d);
qd_err qd_state_ack(qd_state_t *st, const char *id, int64_t version, int64_t nonce);
/* The blob of a device's version: its sha256 (QD_ENOENT when there is no such version). */
qd_err qd_state_version_sha(qd_state_t *st, const char *id, int64_t version, char sha[65]);
/* A blob's signature and policy by sha256 (QD_ENOENT when unknown). */
qd_err qd_state_blob_meta(qd_state_t *st, const char *sha, uint8_t sig[QD_PROTO_SIG_BYTES],
                          char *policy, size_t plen);
/* A blob's backbone id by sha256 (QD_ENOENT when unknown). */
qd_err qd_state_blob_backbone(qd_state_t *st, const char *sha, char *backbone, size_t blen);
/* The blobs of one backbone, for the policy cache at start. */
qd_err qd_state_blobs_load(qd_state_t *st, const char *backbone,
                           qd_err (*cb)(void *ctx, const char *sha, const char *policy,
                                        const uint8_t *sig),
                           void *ctx);
/* <dir>/models/<sha>.qm: write (temp, fsync, rename; thread-safe) and read back. */
qd_err qd_state_blob_write(const char *dir, const char *sha, const uint8_t *b, size_t n);
qd_err qd_state_blob_read(const char *dir, const char *sha, uint8_t **b, size_t *n);
int qd_state_blob_missing(const char *dir, const char *sha); /* no file <dir>/models/<sha>.qm */
/* The last `limit` versions and decisions of a device, as arrays added to obj. */
qd_err qd_state_device_history(qd_state_t *st, const char *id, int limit, cJSON *obj);
qd_err qd_state_event(qd_state_t *st, const char *device, const char *kind, const char *detail);

/* Fleet operations (state_fleet.c). */
qd_err qd_state_device_group(qd_state_t *st, const char *id, const char *group);
qd_err qd_state_device_status(qd_state_t *st, const char *id, enum qd_state_status status);
/* A target's settings ("device:ID" or "group:NAME"): JSON text; NULL removes them. */
qd_err qd_state_setting_put(qd_state_t *st, const char *target, const char *body);
qd_err qd_state_settings_load(qd_state_t *st,
                              qd_err (*cb)(void *ctx, const char *target, const char *body),
                              void *ctx);
/* The last version below `before` that the device acknowledged (QD_ENOENT: none). */
qd_err qd_state_rollback_target(qd_state_t *st, const char *id, int64_t before, int64_t *version,
                                char sha[65]);
/* Events matching f as objects {ts_ms, device, group, kind, detail} appended to arr. */
qd_err qd_state_events(qd_state_t *st, const struct qd_state_event_filter *f, cJSON *arr);

/* Retention (state_retain.c), inside one transaction: qd_state_keep_begin marks each device's
 * current version and the last it acked before it, qd_state_keep_pin adds a pinned one; then
 * qd_state_prune deletes versions past versions_max per device that are not kept, and
 * decisions and events past their age or count (each at most `limit` rows a call). */
struct qd_state_retain {
    int64_t versions_max, decisions_max, events_max;
    int64_t decisions_ms, events_ms; /* ages */
    int64_t limit;
};
struct qd_state_pruned {
    int64_t versions, decisions, events;
};
qd_err qd_state_keep_begin(qd_state_t *st);
qd_err qd_state_keep_pin(qd_state_t *st, const char *id, int64_t version);
qd_err qd_state_prune(qd_state_t *st, const struct qd_state_retain *r, struct qd_state_pruned *out);
/* cb(sha, 1) for every sha a kept version names, then cb(sha, 0) for up to limit blob rows
 * that none names. */
qd_err qd_state_blobs_kept(qd_state_t *st, int limit,
                           void (*cb)(void *ctx, const char *sha, int kept), void *ctx);
qd_err qd_state_blob_forget(qd_state_t *st, const char *sha); /* its row */
int qd_state_blob_known(qd_state_t *st, const char *sha);     /* has a row (or the query failed) */

#endif

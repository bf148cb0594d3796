/* SQLite state of quantd (see state.h). Prepared statements are made once at open; every
 * multi-row change is one transaction. The schema version is in meta("schema"). */
#include "daemon/state_impl.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/file.h"

static const char *const SQL[S_COUNT] = {
    [S_META_GET] = "SELECT v FROM meta WHERE k=?1",
    [S_META_SET] = "INSERT INTO meta(k,v) VALUES(?1,?2) ON CONFLICT(k) DO UPDATE SET v=?2",
    [S_DEV_ALL] = "SELECT d.id,d.key,d.profile,d.context,d.nonce,d.version,d.acked,"
                  "IFNULL(v.sha,''),d.flash,d.ram,d.grp,d.status,IFNULL(d.seen,0) "
                  "FROM devices d LEFT JOIN versions v "
                  "ON v.device=d.id AND v.version=d.version",
    [S_DEV_ADD] = "INSERT INTO devices(id,key,created) VALUES(?1,?2,?3)",
    [S_DEV_KEY] = "UPDATE devices SET key=?2,nonce=0 WHERE id=?1",
    [S_DEV_HELLO] = "UPDATE devices SET profile=?2,flash=?3,ram=?4,nonce=?5,seen=?6 WHERE id=?1",
    [S_DEV_NONCE] = "UPDATE devices SET nonce=?2,seen=?3 WHERE id=?1",
    [S_DEC_INS] = "INSERT INTO decisions(device,ts,context,policy,costs,version,error) "
                  "VALUES(?1,?2,?3,?4,?5,?6,?7)",
    [S_VER_INS] = "INSERT INTO versions(device,version,sha,policy,created) VALUES(?1,?2,?3,?4,?5)",
    [S_DEV_VER] = "UPDATE devices SET context=?2,nonce=MAX(nonce,?3),seen=?4,"
                  "version=MAX(version,?5) WHERE id=?1",
    [S_BLOB_INS] = "INSERT OR IGNORE INTO blobs(sha,backbone,policy,size,sig,created) "
                   "VALUES(?1,?2,?3,?4,?5,?6)",
    [S_ACK_VER] = "UPDATE versions SET acked_at=?3 WHERE device=?1 AND version=?2",
    [S_ACK_DEV] = "UPDATE devices SET acked=MAX(acked,?2),nonce=MAX(nonce,?3),seen=?4 WHERE id=?1",
    [S_VER_SHA] = "SELECT sha FROM versions WHERE device=?1 AND version=?2",
    [S_BLOB_META] = "SELECT sig,policy FROM blobs WHERE sha=?1",
    [S_BLOB_ALL] = "SELECT sha,policy,sig FROM blobs WHERE backbone=?1",
    [S_BLOB_BB] = "SELECT backbone FROM blobs WHERE sha=?1",
    [S_HIST_VER] = "SELECT version,sha,policy,created,acked_at FROM versions WHERE device=?1 "
                   "ORDER BY version DESC LIMIT ?2",
    [S_HIST_DEC] = "SELECT ts,context,policy,costs,version,error FROM decisions WHERE device=?1 "
                   "ORDER BY rowid DESC LIMIT ?2",
    [S_HIST_EVT] = "SELECT ts,kind,detail FROM events WHERE device=?1 ORDER BY rowid DESC "
                   "LIMIT ?2",
    [S_EVENT] = "INSERT INTO events(ts,device,kind,detail) VALUES(?1,?2,?3,?4)",
    [S_DEV_GROUP] = "UPDATE devices SET grp=?2 WHERE id=?1",
    [S_DEV_STATUS] = "UPDATE devices SET status=?2 WHERE id=?1",
    [S_SET_PUT] = "INSERT INTO settings(target,body) VALUES(?1,?2) "
                  "ON CONFLICT(target) DO UPDATE SET body=?2",
    [S_SET_DEL] = "DELETE FROM settings WHERE target=?1",
    [S_SET_ALL] = "SELECT target,body FROM settings",
    [S_ROLL_TARGET] = "SELECT version,sha FROM versions WHERE device=?1 AND version<?2 AND "
                      "acked_at IS NOT NULL ORDER BY version DESC LIMIT 1",
    [S_VER_ACKED] = "SELECT acked_at IS NOT NULL FROM versions WHERE device=?1 AND version=?2",
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVE] = "SAVEPOINT op",
    [S_RELEASE] = "RELEASE op",
    [S_ROLLBACK_TO] = "ROLLBACK TO op",
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT);"
    "CREATE TABLE IF NOT EXISTS devices(id TEXT PRIMARY KEY, key BLOB NOT NULL, profile TEXT "
    "NOT NULL DEFAULT '', flash REAL NOT NULL DEFAULT 0, ram REAL NOT NULL DEFAULT 0, context "
    "TEXT, nonce INTEGER NOT NULL DEFAULT 0, version INTEGER NOT NULL DEFAULT 0, acked INTEGER "
    "NOT NULL DEFAULT 0, created INTEGER, seen INTEGER);"
    "CREATE TABLE IF NOT EXISTS blobs(sha TEXT PRIMARY KEY, backbone TEXT NOT NULL, policy TEXT "
    "NOT NULL, size INTEGER NOT NULL, sig BLOB NOT NULL, created INTEGER);"
    "CREATE INDEX IF NOT EXISTS blobs_backbone ON blobs(backbone);"
    "CREATE TABLE IF NOT EXISTS versions(device TEXT NOT NULL, version INTEGER NOT NULL, sha "
    "TEXT NOT NULL, policy TEXT NOT NULL, created INTEGER, acked_at INTEGER, "
    "PRIMARY KEY(device, version));"
    "CREATE TABLE IF NOT EXISTS decisions(device TEXT, ts INTEGER, context TEXT, policy TEXT, "
    "costs TEXT, version INTEGER, error TEXT);"
    "CREATE INDEX IF NOT EXISTS decisions_device ON decisions(device);"
    "CREATE TABLE IF NOT EXISTS events(ts INTEGER, device TEXT, kind TEXT, detail TEXT);"
    "INSERT OR IGNORE INTO meta(k,v) VALUES('schema','1');";

/* Schema 1 -> 2 (fleet operations): devices' group and status (0 active, 1 revoked, 2 deleted),
 * per device and per group settings, events found by device. One transaction. */
static const char MIGRATE_2[] =
    "BEGIN IMMEDIATE;"
    "ALTER TABLE devices ADD COLUMN grp TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE devices ADD COLUMN status INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE settings(target TEXT PRIMARY KEY, body TEXT NOT NULL);"
    "CREATE INDEX events_device ON events(device);"
    "UPDATE meta SET v='2' WHERE k='schema';"
    "COMMIT;";
#define SCHEMA_VERSION 2

/* Brings an older state.db up to SCHEMA_VERSION; refuses a newer one. */
static qd_err migrate(qd_state_t *s, const char *path)
{
    sqlite3_stmt *q;
    int v = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT CAST(v AS INTEGER) FROM meta WHERE k='schema'", -1, &q,
                           NULL) != SQLITE_OK)
        return qds_dberr(s, "schema");
    if (sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    if (v > SCHEMA_VERSION || v < 1)
        return qd_seterr(QD_EVERSION, "state: %s has schema %d; this quantd reads 1 to %d", path, v,
                         SCHEMA_VERSION);
    char *msg = NULL;
    if (v == 1 && sqlite3_exec(s->db, MIGRATE_2, NULL, NULL, &msg) != SQLITE_OK) {
        qd_err e = qd_seterr(QD_EIO, "state: %s: schema 1 -> 2: %s", path, msg ? msg : "?");
        sqlite3_free(msg);
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return e;
    }
    return QD_OK;
}

enum {
    BUSY_MS = 250
}; /* another writer on state.db (a backup, sqlite3): wait this long, then
    * EBUSY: the loop never stalls for seconds */

qd_err qds_dberr(qd_state_t *s, const char *what)
{
    int rc = sqlite3_errcode(s->db);
    return qd_seterr(rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? QD_EBUSY : QD_EIO, "state: %s: %s",
                     what, sqlite3_errmsg(s->db));
}

int64_t qds_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

sqlite3_stmt *qds_prep(qd_state_t *s, int i)
{
    sqlite3_stmt *q = s->st[i];
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return q;
}

void qds_bind_text(sqlite3_stmt *q, int i, const char *t)
{
    if (t)
        sqlite3_bind_text(q, i, t, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, i);
}

/* Runs a statement with no rows to return. */
qd_err qds_run(qd_state_t *s, sqlite3_stmt *q, const char *what)
{
    int rc = sqlite3_step(q);
    qd_err e = rc == SQLITE_DONE         ? QD_OK
               : rc == SQLITE_CONSTRAINT ? qd_seterr(QD_EEXIST, "state: %s: already exists", what)
                                         : qds_dberr(s, what);
    sqlite3_reset(q);
    return e;
}

qd_err qd_state_open(const char *dir, qd_state_t **out)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/models", dir);
    QD_TRY(qd_file_mkdirs(path));
    snprintf(path, sizeof path, "%s/state.db", dir);
    qd_state_t *s = calloc(1, sizeof *s);
    if (!s)
        return qd_seterr(QD_ENOMEM, "state: out of memory");
    qd_err e = QD_OK;
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        e = qd_seterr(QD_EIO, "state: open %s: %s", path,
                      s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, BUSY_MS);
    char *msg = NULL;
    if (sqlite3_exec(s->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     "PRAGMA cache_size=-8000;",
                     NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(s->db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK) {
        e = qd_seterr(QD_EIO, "state: %s: %s", path, msg ? msg : "schema");
        sqlite3_free(msg);
        goto fail;
    }
    if ((e = migrate(s, path)))
        goto fail;
    for (int i = 0; i < S_COUNT; i++)
        if (sqlite3_prepare_v3(s->db, SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) !=
            SQLITE_OK) {
            e = qds_dberr(s, SQL[i]);
            goto fail;
        }
    *out = s;
    return QD_OK;
fail:
    qd_state_close(s);
    return e;
}

void qd_state_close(qd_state_t *s)
{
    if (!s)
        return;
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    free(s);
}

/* The one text column statement `which` gives for key (QD_ENOENT: no row). */
static qd_err text_of(qd_state_t *s, int which, const char *key, char *buf, size_t len,
                      const char *what)
{
    sqlite3_stmt *q = qds_prep(s, which);
    qds_bind_text(q, 1, key);
    int rc = sqlite3_step(q);
    qd_err e = QD_OK;
    if (rc == SQLITE_ROW)
        snprintf(buf, len, "%s", (const char *)sqlite3_column_text(q, 0));
    else
        e = rc == SQLITE_DONE ? qd_seterr(QD_ENOENT, "state: no %s %s", what, key)
                              : qds_dberr(s, what);
    sqlite3_reset(q);
    return e;
}

qd_err qd_state_meta_get(qd_state_t *s, const char *key, char *buf, size_t len)
{
    return text_of(s, S_META_GET, key, buf, len, "meta");
}

qd_err qd_state_meta_set(qd_state_t *s, const char *key, const char *value)
{
    sqlite3_stmt *q = qds_prep(s, S_META_SET);
    qds_bind_text(q, 1, key);
    qds_bind_text(q, 2, value);
    return qds_run(s, q, "meta");
}

qd_err qd_state_devices_load(qd_state_t *s,
                             qd_err (*cb)(void *ctx, const struct qd_state_device *d), void *ctx)
{
    sqlite3_stmt *q = qds_prep(s, S_DEV_ALL);
    int rc;
    qd_err e = QD_OK;
    while (!e && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct qd_state_device d = {0};
        snprintf(d.id, sizeof d.id, "%s", (const char *)sqlite3_column_text(q, 0));
        if (sqlite3_column_bytes(q, 1) != QD_PROTO_KEY_BYTES) {
            e = qd_seterr(QD_EFORMAT, "state: device %s has a bad key", d.id);
            break;
        }
        memcpy(d.key, sqlite3_column_blob(q, 1), QD_PROTO_KEY_BYTES);
        snprintf(d.profile, sizeof d.profile, "%s", (const char *)sqlite3_column_text(q, 2));
        d.context = (const char *)sqlite3_column_text(q, 3);
        d.nonce = sqlite3_column_int64(q, 4);
        d.version = sqlite3_column_int64(q, 5);
        d.acked = sqlite3_column_int64(q, 6);
        snprintf(d.sha, sizeof d.sha, "%s", (const char *)sqlite3_column_text(q, 7));
        d.flash = sqlite3_column_double(q, 8);
        d.ram = sqlite3_column_double(q, 9);
        snprintf(d.group, sizeof d.group, "%s", (const char *)sqlite3_column_text(q, 10));
        d.status = sqlite3_column_int(q, 11);
        d.seen_ms = sqlite3_column_int64(q, 12);
        e = cb(ctx, &d);
    }
    if (!e && rc != SQLITE_DONE)
        e = qds_dberr(s, "load devices");
    sqlite3_reset(q);
    return e;
}

qd_err qd_state_device_add(qd_state_t *s, const char *id, const uint8_t *key)
{
    sqlite3_stmt *q = qds_prep(s, S_DEV_ADD);
    qds_bind_text(q, 1, id);
    sqlite3_bind_blob(q, 2, key, QD_PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, qds_now_ms());
    return qds_run(s, q, "add device");
}

qd_err qd_state_device_set_key(qd_state_t *s, const char *id, const uint8_t *key)
{
    sqlite3_stmt *q = qds_prep(s, S_DEV_KEY);
    qds_bind_text(q, 1, id);
    sqlite3_bind_blob(q, 2, key, QD_PROTO_KEY_BYTES, SQLITE_STATIC);
    return qds_run(s, q, "set key");
}

qd_err qd_state_device_hello(qd_state_t *s, const char *id, const char *profile, double flash,
                             double ram, int64_t nonce)
{
    sqlite3_stmt *q = qds_prep(s, S_DEV_HELLO);
    qds_bind_text(q, 1, id);
    qds_bind_text(q, 2, profile);
    sqlite3_bind_double(q, 3, flash);
    sqlite3_bind_double(q, 4, ram);
    sqlite3_bind_int64(q, 5, nonce);
    sqlite3_bind_int64(q, 6, qds_now_ms());
    return qds_run(s, q, "hello");
}

qd_err qd_state_device_nonce(qd_state_t *s, const char *id, int64_t nonce)
{
    sqlite3_stmt *q = qds_prep(s, S_DEV_NONCE);
    qds_bind_text(q, 1, id);
    sqlite3_bind_int64(q, 2, nonce);
    sqlite3_bind_int64(q, 3, qds_now_ms());
    return qds_run(s, q, "nonce");
}

/* A transaction of its own, or a savepoint inside the open batch. */
qd_err qds_tx(qd_state_t *s, int which)
{
    if (s->batch)
        which = which == S_BEGIN ? S_SAVE : S_RELEASE;
    return qds_run(s, qds_prep(s, which), which == S_BEGIN || which == S_SAVE ? "begin" : "commit");
}

void qds_tx_rollback(qd_state_t *s)
{
    int which = s->batch ? S_ROLLBACK_TO : S_ROLLBACK;
    sqlite3_step(qds_prep(s, which));
    sqlite3_reset(s->st[which]);
    if (s->batch) { /* (ROLLBACK TO leaves the savepoint open) */
        sqlite3_step(qds_prep(s, S_RELEASE));
        sqlite3_reset(s->st[S_RELEASE]);
    }
}

qd_err qd_state_batch_begin(qd_state_t *s)
{
    QD_TRY(qds_run(s, qds_prep(s, S_BEGIN), "begin batch"));
    s->batch = 1;
    return QD_OK;
}

qd_err qd_state_batch_commit(qd_state_t *s)
{
    s->batch = 0;
    qd_err e = qds_run(s, qds_prep(s, S_COMMIT), "commit batch");
    if (e) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", qd_errmsg());
        sqlite3_step(qds_prep(s, S_ROLLBACK));
        sqlite3_reset(s->st[S_ROLLBACK]);
        e = qd_seterr(e, "%s", msg);
    }
    return e;
}

qd_err qd_state_decision(qd_state_t *s, const struct qd_state_decision *d)
{
    int64_t t = qds_now_ms();
    QD_TRY(qds_tx(s, S_BEGIN));
    sqlite3_stmt *q = qds_prep(s, S_DEC_INS);
    qds_bind_text(q, 1, d->device);
    sqlite3_bind_int64(q, 2, t);
    qds_bind_text(q, 3, d->context);
    qds_bind_text(q, 4, d->policy);
    qds_bind_text(q, 5, d->costs);
    sqlite3_bind_int64(q, 6, d->version);
    qds_bind_text(q, 7, d->error);
    qd_err e = qds_run(s, q, "decision");
    if (!e && d->version > 0 && d->sig) {
        q = qds_prep(s, S_BLOB_INS);
        qds_bind_text(q, 1, d->sha);
        qds_bind_text(q, 2, d->backbone);
        qds_bind_text(q, 3, d->policy);
        sqlite3_bind_int64(q, 4, (int64_t)d->size);
        sqlite3_bind_blob(q, 5, d->sig, QD_PROTO_SIG_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(q, 6, t);
        e = qds_run(s, q, "blob");
    }
    if (!e && d->version > 0) {
        q = qds_prep(s, S_VER_INS);
        qds_bind_text(q, 1, d->device);
        sqlite3_bind_int64(q, 2, d->version);
        qds_bind_text(q, 3, d->sha);
        qds_bind_text(q, 4, d->policy);
        sqlite3_bind_int64(q, 5, t);
        e = qds_run(s, q, "version");
    }
    if (!e) {
        q = qds_prep(s, S_DEV_VER);
        qds_bind_text(q, 1, d->device);
        qds_bind_text(q, 2, d->context);
        sqlite3_bind_int64(q, 3, d->nonce);
        sqlite3_bind_int64(q, 4, t);
        sqlite3_bind_int64(q, 5, d->version);
        e = qds_run(s, q, "device");
    }
    if (!e)
        e = qds_tx(s, S_COMMIT);
    if (e) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", qd_errmsg());
        qds_tx_rollback(s);
        e = qd_seterr(e, "%s", msg);
    }
    return e;
}

qd_err qd_state_ack(qd_state_t *s, const char *id, int64_t version, int64_t nonce)
{
    int64_t t = qds_now_ms();
    QD_TRY(qds_tx(s, S_BEGIN));
    sqlite3_stmt *q = qds_prep(s, S_ACK_VER);
    qds_bind_text(q, 1, id);
    sqlite3_bind_int64(q, 2, version);
    sqlite3_bind_int64(q, 3, t);
    qd_err e = qds_run(s, q, "ack");
    if (!e) {
        q = qds_prep(s, S_ACK_DEV);
        qds_bind_text(q, 1, id);
        sqlite3_bind_int64(q, 2, version);
        sqlite3_bind_int64(q, 3, nonce);
        sqlite3_bind_int64(q, 4, t);
        e = qds_run(s, q, "ack");
    }
    if (!e)
        e = qds_tx(s, S_COMMIT);
    if (e)
        qds_tx_rollback(s);
    return e;
}

qd_err qd_state_version_sha(qd_state_t *s, const char *id, int64_t version, char sha[65])
{
    sqlite3_stmt *q = qds_prep(s, S_VER_SHA);
    qds_bind_text(q, 1, id);
    sqlite3_bind_int64(q, 2, version);
    int rc = sqlite3_step(q);
    qd_err e = QD_OK;
    if (rc == SQLITE_ROW)
        snprintf(sha, 65, "%s", (const char *)sqlite3_column_text(q, 0));
    else
        e = rc == SQLITE_DONE
                ? qd_seterr(QD_ENOENT, "device %s has no version %lld", id, (long long)version)
                : qds_dberr(s, "version");
    sqlite3_reset(q);
    return e;
}

qd_err qd_state_blob_meta(qd_state_t *s, const char *sha, uint8_t sig[QD_PROTO_SIG_BYTES],
                          char *policy, size_t plen)
{
    sqlite3_stmt *q = qds_prep(s, S_BLOB_META);
    qds_bind_text(q, 1, sha);
    int rc = sqlite3_step(q);
    qd_err e = QD_OK;
    if (rc == SQLITE_ROW && sqlite3_column_bytes(q, 0) == QD_PROTO_SIG_BYTES) {
        memcpy(sig, sqlite3_column_blob(q, 0), QD_PROTO_SIG_BYTES);
        if (policy)
            snprintf(policy, plen, "%s", (const char *)sqlite3_column_text(q, 1));
    } else
        e = rc == SQLITE_ROW || rc == SQLITE_DONE ? qd_seterr(QD_ENOENT, "no blob %s", sha)
                                                  : qds_dberr(s, "blob");
    sqlite3_reset(q);
    return e;
}

qd_err qd_state_blob_backbone(qd_state_t *s, const char *sha, char *backbone, size_t blen)
{
    return text_of(s, S_BLOB_BB, sha, backbone, blen, "blob");
}

qd_err qd_state_blobs_load(qd_state_t *s, const char *backbone,
                           qd_err (*cb)(void *ctx, const char *sha, const char *policy,
                                        const uint8_t *sig),
                           void *ctx)
{
    sqlite3_stmt *q = qds_prep(s, S_BLOB_ALL);
    qds_bind_text(q, 1, backbone);
    int rc;
    qd_err e = QD_OK;
    while (!e && (rc = sqlite3_step(q)) == SQLITE_ROW)
        if (sqlite3_column_bytes(q, 2) == QD_PROTO_SIG_BYTES)
            e = cb(ctx, (const char *)sqlite3_column_text(q, 0),
                   (const char *)sqlite3_column_text(q, 1), sqlite3_column_blob(q, 2));
    if (!e && rc != SQLITE_DONE)
        e = qds_dberr(s, "load blobs");
    sqlite3_reset(q);
    return e;
}

qd_err qd_state_blob_write(const char *dir, const char *sha, const uint8_t *b, size_t n)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/models/%s.qm", dir, sha);
    struct stat st;
    if (!stat(path, &st) && (size_t)st.st_size == n) { /* content-addressed: there already, */
        uint8_t *old = NULL;                           /* unless damaged */
        size_t len = 0;
        int same = !qd_file_read(path, &old, &len) && len == n && !memcmp(old, b, n);
        free(old);
        if (same)
            return QD_OK;
    }
    return qd_file_write_atomic(path, b, n);
}

qd_err qd_state_blob_read(const char *dir, const char *sha, uint8_t **b, size_t *n)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/models/%s.qm", dir, sha);
    return qd_file_read(path, b, n);
}

qd_err qd_state_device_history(qd_state_t *s, const char *id, int limit, cJSON *obj)
{
    sqlite3_stmt *q = qds_prep(s, S_HIST_VER);
    qds_bind_text(q, 1, id);
    sqlite3_bind_int(q, 2, limit);
    cJSON *vs = cJSON_AddArrayToObject(obj, "versions");
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        cJSON *v = cJSON_CreateObject();
        cJSON_AddNumberToObject(v, "version", (double)sqlite3_column_int64(q, 0));
        cJSON_AddStringToObject(v, "sha256", (const char *)sqlite3_column_text(q, 1));
        cJSON_AddStringToObject(v, "policy", (const char *)sqlite3_column_text(q, 2));
        cJSON_AddNumberToObject(v, "created_ms", (double)sqlite3_column_int64(q, 3));
        if (sqlite3_column_type(q, 4) != SQLITE_NULL)
            cJSON_AddNumberToObject(v, "acked_ms", (double)sqlite3_column_int64(q, 4));
        cJSON_AddItemToArray(vs, v);
    }
    sqlite3_reset(q);
    if (rc != SQLITE_DONE)
        return qds_dberr(s, "history");
    q = qds_prep(s, S_HIST_DEC);
    qds_bind_text(q, 1, id);
    sqlite3_bind_int(q, 2, limit);
    cJSON *ds = cJSON_AddArrayToObject(obj, "decisions");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        cJSON *v = cJSON_CreateObject();
        cJSON_AddNumberToObject(v, "ts_ms", (double)sqlite3_column_int64(q, 0));
        for (int c = 1; c <= 3; c++) {
            static const char *const names[] = {"", "context", "policy", "costs"};
            const char *t = (const char *)sqlite3_column_text(q, c);
            if (!t)
                continue;
            cJSON *p = c == 2 ? NULL : cJSON_Parse(t);
            cJSON_AddItemToObject(v, names[c], p ? p : cJSON_CreateString(t));
        }
        cJSON_AddNumberToObject(v, "version", (double)sqlite3_column_int64(q, 4));
        if (sqlite3_column_type(q, 5) != SQLITE_NULL)
            cJSON_AddStringToObject(v, "error", (const char *)sqlite3_column_text(q, 5));
        cJSON_AddItemToArray(ds, v);
    }
    sqlite3_reset(q);
    if (rc != SQLITE_DONE)
        return qds_dberr(s, "history");
    q = qds_prep(s, S_HIST_EVT);
    qds_bind_text(q, 1, id);
    sqlite3_bind_int(q, 2, limit);
    cJSON *es = cJSON_AddArrayToObject(obj, "events");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        cJSON *v = cJSON_CreateObject();
        cJSON_AddNumberToObject(v, "ts_ms", (double)sqlite3_column_int64(q, 0));
        cJSON_AddStringToObject(v, "kind", (const char *)sqlite3_column_text(q, 1));
        const char *t = (const char *)sqlite3_column_text(q, 2);
        if (t)
            cJSON_AddStringToObject(v, "detail", t);
        cJSON_AddItemToArray(es, v);
    }
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? QD_OK : qds_dberr(s, "history");
}

qd_err qd_state_event(qd_state_t *s, const char *device, const char *kind, const char *detail)
{
    sqlite3_stmt *q = qds_prep(s, S_EVENT);
    sqlite3_bind_int64(q, 1, qds_now_ms());
    qds_bind_text(q, 2, device);
    qds_bind_text(q, 3, kind);
    qds_bind_text(q, 4, detail);
    return qds_run(s, q, "event");
}

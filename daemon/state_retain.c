/* SQLite side of retention (see state.h, daemon/retain.c): the versions every device keeps
 * (a temporary table), and the deletions of what is past the configured ages and counts. Each
 * statement deletes at most `limit` rows, so that a sweep stays short on the loop. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon/state_impl.h"

static qd_err exec(qd_state_t *s, const char *sql, const char *what)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        qd_err e = qd_seterr(QD_EIO, "state: %s: %s", what, msg ? msg : "?");
        sqlite3_free(msg);
        return e;
    }
    return QD_OK;
}

/* Runs sql (one statement) with integer parameters p[0..n-1]; *changed: rows it changed. */
static qd_err run_ints(qd_state_t *s, const char *sql, const int64_t *p, int n, int64_t *changed,
                       const char *what)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK)
        return qds_dberr(s, what);
    for (int i = 0; i < n; i++)
        sqlite3_bind_int64(q, i + 1, p[i]);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE)
        return qds_dberr(s, what);
    if (changed)
        *changed += sqlite3_changes(s->db);
    return QD_OK;
}

qd_err qd_state_keep_begin(qd_state_t *s)
{
    QD_TRY(exec(s,
                "CREATE TEMP TABLE IF NOT EXISTS keep_ver(device TEXT, version INTEGER, "
                "PRIMARY KEY(device, version));"
                "DELETE FROM keep_ver;"
                /* each device's current version */
                "INSERT OR IGNORE INTO keep_ver SELECT device, max(version) FROM versions "
                "GROUP BY device;"
                /* and the last it acked before it (what rollback goes back to) */
                "INSERT OR IGNORE INTO keep_ver SELECT v.device, max(v.version) FROM versions v "
                "JOIN (SELECT device, max(version) AS cur FROM versions GROUP BY device) c "
                "ON c.device = v.device WHERE v.acked_at IS NOT NULL AND v.version < c.cur "
                "GROUP BY v.device;",
                "retention: kept versions"));
    return QD_OK;
}

qd_err qd_state_keep_pin(qd_state_t *s, const char *id, int64_t version)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "INSERT OR IGNORE INTO keep_ver VALUES(?1, ?2)", -1, &q, NULL))
        return qds_dberr(s, "retention: pin");
    qds_bind_text(q, 1, id);
    sqlite3_bind_int64(q, 2, version);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? QD_OK : qds_dberr(s, "retention: pin");
}

qd_err qd_state_prune(qd_state_t *s, const struct qd_state_retain *r, struct qd_state_pruned *out)
{
    memset(out, 0, sizeof *out);
    int64_t now = qds_now_ms();
    int64_t ver[2] = {r->versions_max, r->limit};
    QD_TRY(run_ints(s,
                    "DELETE FROM versions WHERE rowid IN (SELECT rowid FROM (SELECT rowid, "
                    "device, version, row_number() OVER (PARTITION BY device ORDER BY version "
                    "DESC) AS rn FROM versions) AS v WHERE rn > ?1 AND NOT EXISTS (SELECT 1 FROM "
                    "keep_ver k WHERE k.device = v.device AND k.version = v.version) LIMIT ?2)",
                    ver, 2, &out->versions, "retention: versions"));
    static const char *const table[] = {"decisions", "events"};
    const int64_t max[] = {r->decisions_max, r->events_max},
                  age[] = {r->decisions_ms, r->events_ms};
    int64_t *got[] = {&out->decisions, &out->events};
    for (int t = 0; t < 2; t++) {
        char sql[400];
        int64_t p[2] = {now - age[t], r->limit};
        snprintf(sql, sizeof sql,
                 "DELETE FROM %s WHERE rowid IN (SELECT rowid FROM %s WHERE ts < ?1 "
                 "ORDER BY rowid LIMIT ?2)",
                 table[t], table[t]);
        QD_TRY(run_ints(s, sql, p, 2, got[t], table[t]));
        p[0] = max[t];
        snprintf(sql, sizeof sql,
                 "DELETE FROM %s WHERE rowid IN (SELECT rowid FROM %s WHERE rowid <= "
                 "(SELECT rowid FROM %s ORDER BY rowid DESC LIMIT 1 OFFSET ?1) "
                 "ORDER BY rowid LIMIT ?2)",
                 table[t], table[t], table[t]);
        QD_TRY(run_ints(s, sql, p, 2, got[t], table[t]));
    }
    return QD_OK;
}

/* Calls cb for each sha a kept version names (kept = 1), then for up to limit blob rows no
 * kept version names (kept = 0). */
qd_err qd_state_blobs_kept(qd_state_t *s, int limit,
                           void (*cb)(void *ctx, const char *sha, int kept), void *ctx)
{
    static const char *const sql[] = {
        "SELECT DISTINCT v.sha FROM versions v JOIN keep_ver k ON k.device = v.device AND "
        "k.version = v.version",
        "SELECT sha FROM blobs WHERE sha NOT IN (SELECT v.sha FROM versions v JOIN keep_ver k "
        "ON k.device = v.device AND k.version = v.version) LIMIT ?1"};
    for (int kept = 1; kept >= 0; kept--) {
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(s->db, sql[1 - kept], -1, &q, NULL) != SQLITE_OK)
            return qds_dberr(s, "retention: blobs");
        if (!kept)
            sqlite3_bind_int(q, 1, limit);
        int rc;
        while ((rc = sqlite3_step(q)) == SQLITE_ROW)
            cb(ctx, (const char *)sqlite3_column_text(q, 0), kept);
        sqlite3_finalize(q);
        if (rc != SQLITE_DONE)
            return qds_dberr(s, "retention: blobs");
    }
    return QD_OK;
}

qd_err qd_state_blob_forget(qd_state_t *s, const char *sha)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM blobs WHERE sha = ?1", -1, &q, NULL))
        return qds_dberr(s, "retention: blob");
    qds_bind_text(q, 1, sha);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? QD_OK : qds_dberr(s, "retention: blob");
}

int qd_state_blob_known(qd_state_t *s, const char *sha)
{
    char bb[80];
    return qd_state_blob_backbone(s, sha, bb, sizeof bb) != QD_ENOENT;
}

int qd_state_blob_missing(const char *dir, const char *sha)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/models/%s.qm", dir, sha);
    return access(path, F_OK) != 0;
}

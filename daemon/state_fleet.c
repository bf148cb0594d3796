/* SQLite state of the fleet operations (see state.h): devices' groups and standing, the
 * settings of devices and groups, rollback targets, and the event log's queries. */
#include <stdio.h>
#include <string.h>

#include "daemon/state_impl.h"

qd_err qd_state_device_group(qd_state_t *s, const char *id, const char *group)
{
    sqlite3_stmt *q = qds_prep(s, S_DEV_GROUP);
    qds_bind_text(q, 1, id);
    qds_bind_text(q, 2, group);
    return qds_run(s, q, "group");
}

qd_err qd_state_device_status(qd_state_t *s, const char *id, enum qd_state_status status)
{
    sqlite3_stmt *q = qds_prep(s, S_DEV_STATUS);
    qds_bind_text(q, 1, id);
    sqlite3_bind_int(q, 2, (int)status);
    return qds_run(s, q, "device status");
}

qd_err qd_state_setting_put(qd_state_t *s, const char *target, const char *body)
{
    sqlite3_stmt *q = qds_prep(s, body ? S_SET_PUT : S_SET_DEL);
    qds_bind_text(q, 1, target);
    if (body)
        qds_bind_text(q, 2, body);
    return qds_run(s, q, "settings");
}

qd_err qd_state_settings_load(qd_state_t *s,
                              qd_err (*cb)(void *ctx, const char *target, const char *body),
                              void *ctx)
{
    sqlite3_stmt *q = qds_prep(s, S_SET_ALL);
    int rc;
    qd_err e = QD_OK;
    while (!e && (rc = sqlite3_step(q)) == SQLITE_ROW)
        e = cb(ctx, (const char *)sqlite3_column_text(q, 0),
               (const char *)sqlite3_column_text(q, 1));
    if (!e && rc != SQLITE_DONE)
        e = qds_dberr(s, "load settings");
    sqlite3_reset(q);
    return e;
}

qd_err qd_state_rollback_target(qd_state_t *s, const char *id, int64_t before, int64_t *version,
                                char sha[65])
{
    sqlite3_stmt *q = qds_prep(s, S_ROLL_TARGET);
    qds_bind_text(q, 1, id);
    sqlite3_bind_int64(q, 2, before);
    int rc = sqlite3_step(q);
    qd_err e = QD_OK;
    if (rc == SQLITE_ROW) {
        *version = sqlite3_column_int64(q, 0);
        snprintf(sha, 65, "%s", (const char *)sqlite3_column_text(q, 1));
    } else
        e = rc == SQLITE_DONE
                ? qd_seterr(QD_ENOENT, "device %s acknowledged no version before %lld", id,
                            (long long)before)
                : qds_dberr(s, "rollback");
    sqlite3_reset(q);
    return e;
}

qd_err qd_state_events(qd_state_t *s, const struct qd_state_event_filter *f, cJSON *arr)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT e.ts,e.device,IFNULL(d.grp,''),e.kind,e.detail FROM events e "
                           "LEFT JOIN devices d ON d.id=e.device WHERE (?1 IS NULL OR "
                           "e.device=?1) AND (?2 IS NULL OR d.grp=?2) AND (?3 IS NULL OR "
                           "e.kind=?3) AND e.ts>=?4 ORDER BY e.rowid DESC LIMIT ?5",
                           -1, &q, NULL) != SQLITE_OK)
        return qds_dberr(s, "events");
    qds_bind_text(q, 1, f->device);
    qds_bind_text(q, 2, f->group);
    qds_bind_text(q, 3, f->kind);
    sqlite3_bind_int64(q, 4, f->since_ms);
    sqlite3_bind_int(q, 5, f->limit > 0 ? f->limit : 100);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        cJSON *v = cJSON_CreateObject();
        cJSON_AddNumberToObject(v, "ts_ms", (double)sqlite3_column_int64(q, 0));
        const char *dev = (const char *)sqlite3_column_text(q, 1);
        if (dev)
            cJSON_AddStringToObject(v, "device", dev);
        const char *grp = (const char *)sqlite3_column_text(q, 2);
        if (grp && grp[0])
            cJSON_AddStringToObject(v, "group", grp);
        cJSON_AddStringToObject(v, "kind", (const char *)sqlite3_column_text(q, 3));
        const char *t = (const char *)sqlite3_column_text(q, 4);
        if (t)
            cJSON_AddStringToObject(v, "detail", t);
        cJSON_AddItemToArray(arr, v);
    }
    qd_err e = rc == SQLITE_DONE ? QD_OK : qds_dberr(s, "events");
    sqlite3_finalize(q);
    return e;
}

/* systemd notification: one datagram to $NOTIFY_SOCKET (READY=1, STATUS=..., RELOADING=1,
 * STOPPING=1, WATCHDOG=1); no libsystemd needed. Silent when not started by systemd (no
 * socket). quantd and quantd-agent (Type=notify units) use it.
 *     qd_sd_notify("READY=1\nSTATUS=serving"); */
#ifndef QD_CORE_SDNOTIFY_H
#define QD_CORE_SDNOTIFY_H

void qd_sd_notify(const char *msg);

#endif

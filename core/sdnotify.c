/* systemd notification (see sdnotify.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "core/sdnotify.h"

void qd_sd_notify(const char *msg)
{
    const char *p = getenv("NOTIFY_SOCKET");
    if (!p || (p[0] != '/' && p[0] != '@'))
        return;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t n = strlen(p);
    if (n >= sizeof a.sun_path)
        return;
    memcpy(a.sun_path, p, n);
    if (a.sun_path[0] == '@')
        a.sun_path[0] = 0;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&a,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
        qd_log(QD_LOG_WARN, "sd_notify: %s", strerror(errno));
    close(fd);
}

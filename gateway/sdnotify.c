/*
 * sdnotify.c - sd_notify(3) readiness messages over an AF_UNIX datagram.
 */
#include "gateway/sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "gateway/error.h"

int gw_sd_notify_to(const char *path, const char *state)
{
	struct sockaddr_un sun;
	size_t plen;

	if (!path || !*path)
		return 0;
	if (!state)
		return GW_EINVAL;
	plen = strlen(path);
	/* Only absolute paths and abstract names, as systemd itself checks;
	 * a relative path would depend on our working directory. */
	if ((path[0] != '/' && path[0] != '@') || plen < 2 ||
	    plen > sizeof(sun.sun_path) - (path[0] == '/'))
		return GW_EINVAL;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, plen);
	socklen_t alen =
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
	if (path[0] == '@')
		sun.sun_path[0] = '\0'; /* abstract: no trailing NUL counted */
	else if (plen < sizeof(sun.sun_path))
		alen++; /* include the NUL of a filesystem path */

	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
			   (const struct sockaddr *)&sun, alen);
	int e = n < 0 ? -errno : 0;
	close(fd);
	if (e)
		return e;
	return (size_t)n == strlen(state) ? 1 : -EIO;
}

int gw_sd_notify(const char *state)
{
	return gw_sd_notify_to(getenv("NOTIFY_SOCKET"), state);
}

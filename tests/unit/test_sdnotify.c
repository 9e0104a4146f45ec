/* sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET, filesystem
 * and abstract sockets, and the paths it refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "gateway/error.h"
#include "gateway/sdnotify.h"

/* A bound datagram socket at path ('@' = abstract), with a receive
 * timeout so a missing message fails instead of hanging. */
static int bind_dgram(const char *path)
{
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	size_t n = strlen(path);
	memcpy(sun.sun_path, path, n);
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	if (path[0] == '@')
		sun.sun_path[0] = '\0';
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, len), 0);
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void expect_msg(int fd, const char *want)
{
	char buf[256];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n >= 0);
	buf[n] = '\0';
	assert_string_equal(buf, want);
}

static void test_sdnotify_unset_is_noop(void **state)
{
	(void)state;
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(gw_sd_notify("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "", 1);
	assert_int_equal(gw_sd_notify("READY=1"), 0);
	assert_int_equal(gw_sd_notify_to(NULL, "READY=1"), 0);
	unsetenv("NOTIFY_SOCKET");
}

static void test_sdnotify_filesystem_socket(void **state)
{
	(void)state;
	char dir[] = "/tmp/gw-sdnotify-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof(path), "%s/notify", dir);
	int fd = bind_dgram(path);
	setenv("NOTIFY_SOCKET", path, 1);
	assert_int_equal(gw_sd_notify("READY=1"), 1);
	expect_msg(fd, "READY=1");
	assert_int_equal(gw_sd_notify("RELOADING=1\nMONOTONIC_USEC=1"), 1);
	expect_msg(fd, "RELOADING=1\nMONOTONIC_USEC=1");
	assert_int_equal(gw_sd_notify("STOPPING=1"), 1);
	expect_msg(fd, "STOPPING=1");
	unsetenv("NOTIFY_SOCKET");
	close(fd);
	unlink(path);
	rmdir(dir);
}

static void test_sdnotify_abstract_socket(void **state)
{
	(void)state;
	char name[64];
	snprintf(name, sizeof(name), "@gw-sdnotify-test-%d", (int)getpid());
	int fd = bind_dgram(name);
	assert_int_equal(gw_sd_notify_to(name, "READY=1"), 1);
	expect_msg(fd, "READY=1");
	close(fd);
}

static void test_sdnotify_bad_paths(void **state)
{
	(void)state;
	/* relative: would depend on the working directory */
	assert_int_equal(gw_sd_notify_to("notify.sock", "READY=1"), GW_EINVAL);
	assert_int_equal(gw_sd_notify_to("@", "READY=1"), GW_EINVAL);
	char longp[200];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(gw_sd_notify_to(longp, "READY=1"), GW_EINVAL);
	/* nobody listening: the send's own error */
	assert_int_equal(gw_sd_notify_to("/nonexistent/gw-notify", "READY=1"),
			 -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sdnotify_unset_is_noop),
	    cmocka_unit_test(test_sdnotify_filesystem_socket),
	    cmocka_unit_test(test_sdnotify_abstract_socket),
	    cmocka_unit_test(test_sdnotify_bad_paths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

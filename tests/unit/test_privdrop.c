/* gw_privdrop: refusals, and the real switch to nobody in a child process
 * (as root; skipped otherwise). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gateway/error.h"
#include "gateway/privdrop.h"

static void test_privdrop_refusals(void **state)
{
	(void)state;
	char err[256] = "";
	assert_int_equal(gw_privdrop(NULL, err, sizeof(err)), 0);
	assert_int_equal(gw_privdrop("", err, sizeof(err)), 0);
	assert_int_equal(gw_privdrop("no-such-user-gw", err, sizeof(err)),
			 GW_EINVAL);
	assert_non_null(strstr(err, "no-such-user-gw"));
	/* -t: the same lookup, no switch */
	assert_int_equal(gw_privdrop_check("no-such-user-gw", err, sizeof(err)),
			 GW_EINVAL);
	assert_int_equal(gw_privdrop_check(NULL, err, sizeof(err)), 0);
	assert_int_equal(gw_privdrop_check("root", err, sizeof(err)), 0);
	assert_int_equal(gw_privdrop_check("65534", err, sizeof(err)), 0);
	assert_int_equal(gw_privdrop_check("12x", err, sizeof(err)), GW_EINVAL);
}

/* As root: the child becomes nobody and cannot get root back. */
static void test_privdrop_switches_user(void **state)
{
	(void)state;
	struct passwd *pw = getpwnam("nobody");
	if (geteuid() != 0 || !pw)
		skip();
	uid_t uid = pw->pw_uid;
	gid_t gid = pw->pw_gid;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char err[256];
		if (gw_privdrop("nobody", err, sizeof(err)) < 0)
			_exit(10);
		if (getuid() != uid || geteuid() != uid || getgid() != gid ||
		    getegid() != gid)
			_exit(11);
		if (setuid(0) == 0)
			_exit(12);
		gid_t groups[8];
		int n = getgroups(8, groups);
		for (int i = 0; i < n; i++)
			if (groups[i] == 0)
				_exit(13); /* root's group kept */
		_exit(0);
	}
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* Not root (here: a child that became nobody): switching to another user
 * is refused, staying the same user is fine. */
static void test_privdrop_unprivileged(void **state)
{
	(void)state;
	struct passwd *pw = getpwnam("nobody");
	if (geteuid() != 0 || !pw)
		skip();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char err[256];
		if (setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
		    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0)
			_exit(10);
		if (gw_privdrop("nobody", err, sizeof(err)) != 0)
			_exit(11);
		if (gw_privdrop("root", err, sizeof(err)) != GW_EINVAL)
			_exit(12);
		_exit(0);
	}
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_privdrop_refusals),
	    cmocka_unit_test(test_privdrop_switches_user),
	    cmocka_unit_test(test_privdrop_unprivileged),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

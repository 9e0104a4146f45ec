/*
 * privdrop.c - setgroups/setgid/setuid to the configured user.
 */
#include "gateway/privdrop.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "gateway/error.h"

/* Finds user in the passwd database, or takes it as a numeric uid (with
 * the same gid; containers often have no entry). pw_name is NULL then. */
static int lookup(const char *user, struct passwd *pw, char *buf,
		  size_t buflen, char *err, size_t errlen)
{
	struct passwd *res = NULL;
	int e = getpwnam_r(user, pw, buf, buflen, &res);
	if (res)
		return 0;
	char *end;
	errno = 0;
	unsigned long uid = strtoul(user, &end, 10);
	if (*end || errno || end == user || uid > 0x7ffffffful) {
		snprintf(err, errlen, "user '%s': %s", user,
			 e ? strerror(e) : "no such user");
		return GW_EINVAL;
	}
	pw->pw_uid = (uid_t)uid;
	pw->pw_gid = (gid_t)uid;
	pw->pw_name = NULL;
	return 0;
}

int gw_privdrop_check(const char *user, char *err, size_t errlen)
{
	struct passwd pw;
	char buf[4096];

	if (!user || !*user)
		return 0;
	return lookup(user, &pw, buf, sizeof(buf), err, errlen);
}

/* Reports the failed call and returns its -errno. */
static int failed(const char *user, const char *call, char *err,
		  size_t errlen)
{
	int e = errno;
	snprintf(err, errlen, "user '%s': %s: %s", user, call, strerror(e));
	return -e;
}

int gw_privdrop(const char *user, char *err, size_t errlen)
{
	struct passwd pw;
	char buf[4096];

	if (!user || !*user)
		return 0;
	if (lookup(user, &pw, buf, sizeof(buf), err, errlen) < 0)
		return GW_EINVAL;
	if (geteuid() != 0) {
		if (geteuid() == pw.pw_uid)
			return 0;
		snprintf(err, errlen,
			 "user '%s': only root can switch users "
			 "(running as uid %u)",
			 user, (unsigned)geteuid());
		return GW_EINVAL;
	}
	/* Groups first: after setuid() we could no longer change them. */
	if (pw.pw_name ? initgroups(pw.pw_name, pw.pw_gid) < 0
		       : setgroups(1, &pw.pw_gid) < 0)
		return failed(user, "setgroups", err, errlen);
	if (setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid) < 0)
		return failed(user, "setgid", err, errlen);
	if (setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid) < 0)
		return failed(user, "setuid", err, errlen);
	if (pw.pw_uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
		snprintf(err, errlen, "user '%s': root could be regained", user);
		return GW_EINVAL;
	}
#if defined(__SANITIZE_ADDRESS__)
	/* setuid() made us non-dumpable, and LeakSanitizer's exit-time scan
	 * needs to ptrace its own threads: sanitizer builds only. */
	prctl(PR_SET_DUMPABLE, 1);
#endif
	return 0;
}

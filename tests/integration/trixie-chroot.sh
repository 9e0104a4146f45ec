#!/bin/bash
# trixie-chroot.sh - a minimal Debian trixie in a git-ignored folder, for the
# one independent DoQ client and server Debian has: kdig +quic and knotd from
# knot 3.4 (bookworm's 3.2 has no DoQ).
#
#   tests/integration/trixie-chroot.sh setup      build it once (cached)
#   tests/integration/trixie-chroot.sh path       print the folder
#   tests/integration/trixie-chroot.sh kdig ARGS  run trixie's kdig
#   tests/integration/trixie-chroot.sh run CMD..  run any command inside
#
# The archive is taken from this machine's own apt sources exactly as
# deps.sh does (the "deb <uri> <codename> main" entries); no host name is
# written into any file.  Networking inside a chroot is the host's, so
# loopback servers are reachable.  Needs root and debootstrap.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${DNSGW_TRIXIE_CHROOT:-$ROOT/.deps/trixie-chroot}
STAMP=$DIR/.dnsgw-ready
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
PKGS=knot-dnsutils,knot,ca-certificates

die() { printf 'trixie-chroot: %s\n' "$*" >&2; exit 1; }

codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")

# Same rules as deps.sh: type deb, suite = running codename, component main.
archive_candidates() {
	local f
	shopt -s nullglob
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		awk -v cn="$codename" '
		{ sub(/#.*/, "") }
		$1 == "deb" {
			i = 2
			if ($i ~ /^\[/) for (; i <= NF; i++) if ($i ~ /\]$/) { i++; break }
			uri = $i; suite = $(i + 1); main = 0
			for (j = i + 2; j <= NF; j++) if ($j == "main") main = 1
			if (suite == cn && main) print uri
		}' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk -v cn="$codename" '
		function stanza_end(   n, k, s, u, okt, oks, okc) {
			okt = 0; oks = 0; okc = 0
			n = split(types, s, /[ \t]+/); for (k = 1; k <= n; k++) if (s[k] == "deb") okt = 1
			n = split(suites, s, /[ \t]+/); for (k = 1; k <= n; k++) if (s[k] == cn) oks = 1
			n = split(comps, s, /[ \t]+/); for (k = 1; k <= n; k++) if (s[k] == "main") okc = 1
			if (okt && oks && okc && tolower(enabled) != "no") {
				n = split(uris, u, /[ \t]+/)
				for (k = 1; k <= n; k++) if (u[k] != "") print u[k]
			}
			types = suites = comps = uris = enabled = cur = ""
		}
		/^#/ { next }
		/^[ \t]*$/ { stanza_end(); next }
		/^[ \t]/ {
			if (cur == "uris") uris = uris " " $0
			else if (cur == "suites") suites = suites " " $0
			else if (cur == "components") comps = comps " " $0
			else if (cur == "types") types = types " " $0
			next
		}
		{
			k = index($0, ":"); if (k == 0) next
			cur = tolower(substr($0, 1, k - 1))
			val = substr($0, k + 1); gsub(/^[ \t]+|[ \t]+$/, "", val)
			if (cur == "types") types = val
			else if (cur == "uris") uris = val
			else if (cur == "suites") suites = val
			else if (cur == "components") comps = val
			else if (cur == "enabled") enabled = val
		}
		END { stanza_end() }' "$f"
	done
	shopt -u nullglob
}

setup() {
	[ -f "$STAMP" ] && return 0
	[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot)"
	command -v debootstrap >/dev/null || die "debootstrap missing: ./deps.sh --test"
	# bookworm's debian-archive-keyring already carries the trixie keys.
	[ -f "$KEYRING" ] || die "$KEYRING missing (debian-archive-keyring)"
	local uri ok=0
	mkdir -p "$(dirname "$DIR")"
	for uri in $(archive_candidates | awk '!seen[$0]++'); do
		case $uri in cdrom:*) continue ;; esac
		rm -rf "$DIR"
		printf 'trixie-chroot: debootstrapping trixie (archive from this machine'"'"'s apt sources)\n' >&2
		if debootstrap --variant=minbase --include="$PKGS" \
			--keyring="$KEYRING" trixie "$DIR" "$uri" \
			>"$DIR.log" 2>&1; then
			ok=1
			break
		fi
		printf 'trixie-chroot: that archive failed (log: %s)\n' "$DIR.log" >&2
	done
	[ "$ok" = 1 ] || die "debootstrap failed for every archive entry"
	# The archive's address stays out of the cached tree.
	rm -f "$DIR/etc/apt/sources.list"
	sed -i -E 's#[A-Za-z][A-Za-z0-9+.-]*://[^/ ]*#<archive>#g' "$DIR.log" || true
	chroot "$DIR" kdig --version >/dev/null || die "kdig does not run in $DIR"
	touch "$STAMP"
}

# /dev and /proc for the command's lifetime only (kdig reads /dev/urandom;
# knotd wants /proc), mounted in a private mount namespace: they vanish with
# the command, so nothing stays mounted inside the checkout and deleting it
# is always safe.
in_chroot() {
	exec unshare --mount --propagation private /bin/sh -c '
		d=$1; shift
		mount -t proc proc "$d/proc" && mount --bind /dev "$d/dev" &&
		exec chroot "$d" "$@"' sh "$DIR" "$@"
}

cmd=${1:-setup}
shift || true
case $cmd in
setup) setup ;;
path) printf '%s\n' "$DIR" ;;
kdig) setup; in_chroot kdig "$@" ;;
run) setup; in_chroot "$@" ;;
umount) # mounts of older versions of this script
	mountpoint -q "$DIR/proc" && umount "$DIR/proc" || true
	mountpoint -q "$DIR/dev" && umount "$DIR/dev" || true
	;;
*) die "usage: $0 setup|path|kdig ARGS|run CMD|umount" ;;
esac

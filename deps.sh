#!/bin/bash
# deps.sh - the one installer of dnsgw's dependencies (Debian 12 "bookworm").
#
#   ./deps.sh           what building and running needs
#   ./deps.sh --test    ... plus what the test suite needs
#   ./deps.sh --bench   ... plus what the benchmarks need
#
# Debian packages are installed only when missing (dpkg-query), so a re-run
# on a complete machine is fast and touches nothing.  wolfSSL (with QUIC) and
# ngtcp2 1.x (with ngtcp2_crypto_wolfssl) are not usable as packaged in
# bookworm, so they are built from Debian trixie *source* packages into a
# version-keyed prefix inside the checkout (see docs/deps.md and the
# "Dependencies" section of the design).  The deb-src entry is derived at run
# time from this machine's own apt sources: no host name is written in here.
#
# Environment:
#   DNSGW_BUNDLED_DEPS=1  build wolfSSL/ngtcp2 even if the system has usable ones
set -euo pipefail

WOLFSSL_VERSION=5.7.2
NGTCP2_VERSION=1.11.0
WOLFSSL_ORIG_SHA256=0f2ed82e345b833242705bbc4b08a2a2037a33f7bf9c610efae6464f6b10e305
NGTCP2_ORIG_SHA256=382c15bf66b630f26021631b25b7eb1feac42c67c1d6826189d61091dfaa4d09
SOURCE_SUITE=trixie
# The build recipe's revision: part of the install folder's name, so a new
# recipe builds beside the old one and existing build trees keep working.
STAMP_VERSION=4

ROOT=$(cd "$(dirname "$0")" && pwd)
DEPS_DIR=$ROOT/.deps
PREFIX=$DEPS_DIR/wolfssl-${WOLFSSL_VERSION}_ngtcp2-${NGTCP2_VERSION}-r${STAMP_VERSION}
STAMP=$PREFIX/.deps-stamp
WORK=$DEPS_DIR/work
APTDIR=$DEPS_DIR/apt
LOGDIR=$DEPS_DIR/logs

# --enable-all already turns on certificate generation, ALPN, early data and
# the OpenSSL-compatible API ngtcp2 uses; --enable-quic is not part of "all".
# Examples and test programs are skipped: they only cost build time.
# Memory per connection and per thread: --enable-all turns on the fixed-point
# ECC cache (about 12 MiB per worker thread, filled by clients' one-time key
# shares, so it never pays off) and gives every session object a copy of two
# 9-deep peer chains of 2 KiB certificates (37 KiB per TLS connection, even
# on a server that never asks for a client certificate). Without the cache,
# with 4-deep chains (enough for leaf, intermediates and a cross-sign) and no
# room for those copies (MAX_X509_SIZE: dnsgw never reads them back; a
# resumed upstream session is trusted as the pinned one, see
# upstream/tls_client.c), an idle DoT connection costs 23 KiB instead of 59.
# MAX_CERTIFICATE_SZ, which would shrink with them, is the largest
# Certificate message accepted from an upstream: 32 KiB. TLS 1.3
# post-handshake authentication (in "all") makes every connection keep its
# handshake hashes, cipher-suite list and key-exchange arrays for a client
# certificate request that dnsgw never sends; without it they are freed
# when the handshake ends.
WOLFSSL_CONFIGURE=(--enable-all --enable-quic --enable-aesni --enable-intelasm
	--enable-harden --disable-shared --enable-static --with-pic
	--disable-examples --disable-crypttests --disable-benchmark
	--disable-fpecc --disable-postauth
	"CPPFLAGS=-DMAX_CHAIN_DEPTH=4 -DMAX_X509_SIZE=128 -DMAX_CERTIFICATE_SZ=32768")
NGTCP2_CONFIGURE=(--with-wolfssl --enable-lib-only --disable-shared
	--enable-static --with-pic)

BUILD_PKGS=(build-essential cmake pkg-config dpkg-dev xz-utils patch
	autoconf automake libtool ca-certificates libnghttp2-dev libev-dev
	libcmocka-dev libcyaml-dev libyaml-dev openssl)
TEST_PKGS=(knot-dnsutils bind9-dnsutils unbound dnsperf curl nghttp2-client
	prometheus # promtool check metrics (tests/integration/test_admin.py)
	python3 clang libclang-rt-14-dev procps iproute2 psmisc
	debootstrap) # debootstrap: trixie's kdig +quic (tests/integration/trixie-chroot.sh)
BENCH_PKGS=(dnsdist dnsperf util-linux procps python3 nghttp2-client)

say() { printf 'deps: %s\n' "$*"; }
die() { printf 'deps: FAILED: %s\n' "$*" >&2; exit 1; }

usage() {
	cat <<'EOF'
usage: ./deps.sh [--test] [--bench]   (as root, Debian 12)
  (none)   install what building and running dnsgw needs
  --test   also what the test suite needs
  --bench  also what the benchmarks need
  env DNSGW_BUNDLED_DEPS=1 builds wolfSSL/ngtcp2 even if the system has them
EOF
}

# ---------------------------------------------------------------- arguments
want_test=0
want_bench=0
for arg in "$@"; do
	case $arg in
	--test) want_test=1 ;;
	--bench) want_bench=1 ;;
	-h|--help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument '$arg'" ;;
	esac
done

# ---------------------------------------------------------- Debian packages
pkgs=("${BUILD_PKGS[@]}")
[ "$want_test" = 1 ] && pkgs+=("${TEST_PKGS[@]}")
[ "$want_bench" = 1 ] && pkgs+=("${BENCH_PKGS[@]}")

# One dpkg-query for all of them (unknown names just print nothing).
declare -A installed=()
while IFS=$'\t' read -r name status; do
	[ "$status" = "install ok installed" ] && installed[$name]=1
done < <(dpkg-query -W -f='${Package}\t${Status}\n' "${pkgs[@]}" 2>/dev/null || true)
missing=()
declare -A seen=()
for p in "${pkgs[@]}"; do
	[ -n "${seen[$p]:-}" ] && continue
	seen[$p]=1
	[ -n "${installed[$p]:-}" ] || missing+=("$p")
done

# The log keeps apt's messages but not the archive's address: no host name
# is written into the checkout, logs included.
log_apt() {
	printf '%s\n' "$1" |
		sed -E 's#[A-Za-z][A-Za-z0-9+.-]*://[^/ ]*#<archive>#g; s#\[IP: [^]]*\]##g' \
			>>"$APT_LOG"
}

# apt-get, waiting (up to 10 min) for another apt/dpkg run to let go of its
# locks instead of failing: DPkg::Lock::Timeout covers the dpkg frontend lock,
# the retry loop covers the list lock taken by "apt-get update".
apt_retry() {
	local try out rc quiet=0
	if [ "$1" = --quiet ]; then
		quiet=1
		shift
	fi
	for try in $(seq 1 60); do
		rc=0
		out=$(DEBIAN_FRONTEND=noninteractive apt-get \
			-o DPkg::Lock::Timeout=600 "$@" 2>&1) || rc=$?
		if [ "$rc" = 0 ]; then
			log_apt "$out"
			return 0
		fi
		if printf '%s' "$out" | grep -q 'Could not get lock\|Unable to acquire the dpkg\|Unable to lock'; then
			[ "$try" = 1 ] && say "waiting for another apt/dpkg run to finish"
			sleep 10
			continue
		fi
		log_apt "$out"
		[ "$quiet" = 1 ] || printf '%s\n' "$out" | tail -n 15 >&2
		return "$rc"
	done
	return 1
}

mkdir -p "$LOGDIR"
APT_LOG=$LOGDIR/apt.log
if [ "${#missing[@]}" -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}); run as root"
	say "installing ${#missing[@]} packages: ${missing[*]}"
	apt_retry update || die "apt-get update (log: $APT_LOG)"
	apt_retry install -y --no-install-recommends "${missing[@]}" ||
		die "apt-get install ${missing[*]} (log: $APT_LOG)"
fi

# ------------------------------------------- wolfSSL + ngtcp2: already there?
bundled_complete() {
	[ -f "$STAMP" ] &&
	[ "$(cat "$STAMP")" = "$STAMP_VERSION wolfssl-$WOLFSSL_VERSION ngtcp2-$NGTCP2_VERSION" ] &&
	[ -f "$PREFIX/lib/libwolfssl.a" ] &&
	[ -f "$PREFIX/lib/libngtcp2.a" ] &&
	[ -f "$PREFIX/lib/libngtcp2_crypto_wolfssl.a" ] &&
	[ -f "$PREFIX/lib/pkgconfig/wolfssl.pc" ] &&
	[ -f "$PREFIX/lib/pkgconfig/libngtcp2.pc" ] &&
	[ -f "$PREFIX/lib/pkgconfig/libngtcp2_crypto_wolfssl.pc" ] &&
	# .pc files hold absolute paths: a moved checkout needs a rebuild.
	grep -qxF "prefix=$PREFIX" "$PREFIX/lib/pkgconfig/wolfssl.pc"
}

# A distribution that ships wolfSSL with QUIC and ngtcp2 >= 1.0 with the
# wolfSSL crypto helper needs no bundled build (packagers prefer that).
system_usable() {
	local inc
	pkg-config --exists wolfssl 2>/dev/null || return 1
	pkg-config --exists 'libngtcp2 >= 1.0' libngtcp2_crypto_wolfssl 2>/dev/null ||
		return 1
	inc=$(pkg-config --variable=includedir wolfssl)
	[ -f "$inc/wolfssl/options.h" ] &&
		grep -q '^#define WOLFSSL_QUIC\b' "$inc/wolfssl/options.h"
}

if bundled_complete; then
	say "wolfSSL $WOLFSSL_VERSION + ngtcp2 $NGTCP2_VERSION already built in ${PREFIX#"$ROOT"/}"
	say "ok"
	exit 0
fi
if [ "${DNSGW_BUNDLED_DEPS:-0}" != 1 ] && system_usable; then
	say "using system wolfSSL $(pkg-config --modversion wolfssl) (QUIC) and ngtcp2 $(pkg-config --modversion libngtcp2)"
	say "ok"
	exit 0
fi

# ----------------------------------------- deb-src entry from our own sources
# Prints "URI<TAB>SIGNED-BY" for each entry of the main Debian archive: type
# deb, a suite equal to the running codename (so not -security/-updates) and
# the "main" component.  Third-party repositories seldom match all three; the
# Origin check after fetching their Release file catches the rest.
codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
[ -n "$codename" ] || die "cannot tell the Debian codename from /etc/os-release"

archive_candidates() {
	local f
	shopt -s nullglob
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		awk -v cn="$codename" '
		{ sub(/#.*/, "") }
		$1 == "deb" {
			i = 2; signed = ""
			if ($i ~ /^\[/) {
				opts = ""
				for (; i <= NF; i++) {
					opts = opts " " $i
					if ($i ~ /\]$/) { i++; break }
				}
				if (match(opts, /signed-by=[^] ]+/))
					signed = substr(opts, RSTART + 10, RLENGTH - 10)
			}
			uri = $i; suite = $(i + 1); main = 0
			for (j = i + 2; j <= NF; j++) if ($j == "main") main = 1
			if (suite == cn && main) print uri "\t" signed
		}' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		# deb822: stanzas split by blank lines, continuation lines start
		# with white space (an inline Signed-By key is not carried over).
		awk -v cn="$codename" '
		function field_end() { if (cur == "signed-by" && multi) signed = "" }
		function stanza_end(   n, k, s, u, c, okt, oks, okc) {
			field_end()
			okt = 0; oks = 0; okc = 0
			n = split(types, s, /[ \t]+/); for (k = 1; k <= n; k++) if (s[k] == "deb") okt = 1
			n = split(suites, s, /[ \t]+/); for (k = 1; k <= n; k++) if (s[k] == cn) oks = 1
			n = split(comps, s, /[ \t]+/); for (k = 1; k <= n; k++) if (s[k] == "main") okc = 1
			if (okt && oks && okc && tolower(enabled) != "no") {
				n = split(uris, u, /[ \t]+/)
				for (k = 1; k <= n; k++) if (u[k] != "") print u[k] "\t" signed
			}
			types = suites = comps = uris = signed = enabled = cur = ""
			multi = 0
		}
		/^#/ { next }
		/^[ \t]*$/ { stanza_end(); next }
		/^[ \t]/ {
			if (cur == "signed-by") multi = 1
			else if (cur == "uris") uris = uris " " $0
			else if (cur == "suites") suites = suites " " $0
			else if (cur == "components") comps = comps " " $0
			else if (cur == "types") types = types " " $0
			next
		}
		{
			field_end(); multi = 0
			k = index($0, ":"); if (k == 0) next
			cur = tolower(substr($0, 1, k - 1))
			val = substr($0, k + 1); gsub(/^[ \t]+|[ \t]+$/, "", val)
			if (cur == "types") types = val
			else if (cur == "uris") uris = val
			else if (cur == "suites") suites = val
			else if (cur == "components") comps = val
			else if (cur == "signed-by") signed = val
			else if (cur == "enabled") enabled = val
		}
		END { stanza_end() }' "$f"
	done
	shopt -u nullglob
}

# apt with a private source list, list cache and package cache: the system's
# apt configuration and caches are not touched.
APT_PRIVATE=(-o Dir::Etc::SourceList=/dev/null
	-o Dir::Etc::SourceParts="$APTDIR/sources.list.d"
	-o Dir::State::Lists="$APTDIR/lists"
	-o Dir::Cache="$APTDIR/cache"
	-o APT::Sandbox::User=root)

setup_private_apt() {
	local uri signed line tried=0
	mapfile -t cands < <(archive_candidates | awk '!seen[$0]++')
	[ "${#cands[@]}" -gt 0 ] ||
		die "no '$codename ... main' Debian archive entry in /etc/apt/sources.list{,.d}"
	for line in "${cands[@]}"; do
		uri=${line%%$'\t'*}
		signed=${line#*$'\t'}
		case $uri in cdrom:*) continue ;; esac
		tried=$((tried + 1))
		rm -rf "$APTDIR"
		mkdir -p "$APTDIR/sources.list.d" "$APTDIR/lists/partial" \
			"$APTDIR/cache/archives/partial"
		{
			printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\n' \
				"$uri" "$SOURCE_SUITE"
			if [ -n "$signed" ] && [ -f "$signed" ]; then
				printf 'Signed-By: %s\n' "$signed"
			fi
		} >"$APTDIR/sources.list.d/dnsgw-src.sources"
		say "fetching the $SOURCE_SUITE source index (archive taken from this machine's apt sources)"
		if ! apt_retry "${APT_PRIVATE[@]}" update; then
			say "that archive did not serve $SOURCE_SUITE sources; trying the next one"
			continue
		fi
		# Only the Debian archive itself, not a third party using the
		# same suite name.
		if grep -qs '^Origin: Debian$' "$APTDIR"/lists/*Release; then
			return 0
		fi
		say "that archive is not Debian's; trying the next one"
	done
	die "none of the $tried Debian archive entries served $SOURCE_SUITE sources (log: $APT_LOG)"
}

check_sha256() {
	local file=$1 want=$2 got
	[ -f "$file" ] || return 1
	got=$(sha256sum "$file" | cut -d' ' -f1)
	[ "$got" = "$want" ] && return 0
	say "checksum mismatch for ${file##*/}: got $got, want $want"
	return 1
}

# Runs a build step with its output in a log; on failure shows the log's tail.
run_logged() {
	local log=$1
	shift
	if ! "$@" >>"$log" 2>&1; then
		tail -n 25 "$log" >&2
		die "'$*' (in $PWD; full log: $log)"
	fi
}

# --------------------------------------------------------------- downloads
SRC=$WORK/src
mkdir -p "$SRC"
WOLFSSL_ORIG=$SRC/wolfssl_$WOLFSSL_VERSION.orig.tar.gz
NGTCP2_ORIG=$SRC/ngtcp2_$NGTCP2_VERSION.orig.tar.xz

have_sources() {
	check_sha256 "$WOLFSSL_ORIG" "$WOLFSSL_ORIG_SHA256" >/dev/null 2>&1 &&
	compgen -G "$SRC/wolfssl_$WOLFSSL_VERSION-*.dsc" >/dev/null &&
	check_sha256 "$NGTCP2_ORIG" "$NGTCP2_ORIG_SHA256" >/dev/null 2>&1 &&
	compgen -G "$SRC/ngtcp2_$NGTCP2_VERSION-*.debian.tar.*" >/dev/null
}

if ! have_sources; then
	setup_private_apt
	cd "$SRC"
	say "downloading wolfssl/$SOURCE_SUITE and ngtcp2/$SOURCE_SUITE source packages"
	apt_retry "${APT_PRIVATE[@]}" source --download-only "wolfssl/$SOURCE_SUITE" ||
		die "apt-get source wolfssl/$SOURCE_SUITE (log: $APT_LOG)"
	# ngtcp2's .dsc is not served, so apt exits non-zero even though the
	# orig and debian tarballs arrive: the checksum below is the judge.
	apt_retry --quiet "${APT_PRIVATE[@]}" source --download-only \
		"ngtcp2/$SOURCE_SUITE" || true
	ls ./wolfssl_"$WOLFSSL_VERSION".orig.tar.* >/dev/null 2>&1 ||
		die "no wolfssl $WOLFSSL_VERSION orig tarball in $SOURCE_SUITE"
	if [ ! -f "$WOLFSSL_ORIG" ]; then
		die "wolfssl orig tarball is not $(basename "$WOLFSSL_ORIG")"
	fi
	check_sha256 "$WOLFSSL_ORIG" "$WOLFSSL_ORIG_SHA256" ||
		die "wolfssl orig tarball checksum"
	check_sha256 "$NGTCP2_ORIG" "$NGTCP2_ORIG_SHA256" ||
		die "ngtcp2 $NGTCP2_VERSION orig tarball missing or wrong checksum"
	compgen -G "$SRC/ngtcp2_$NGTCP2_VERSION-*.debian.tar.*" >/dev/null ||
		die "ngtcp2 $NGTCP2_VERSION debian tarball not downloaded"
	# The index names the archive; it has served its purpose.
	rm -rf "$APTDIR"
fi
say "sources verified (sha256 of both orig tarballs)"

# ------------------------------------------------------------------ wolfSSL
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
jobs=$(nproc)
rm -rf "$PREFIX" "$WORK/wolfssl" "$WORK/ngtcp2"
: >"$LOGDIR/wolfssl.log"
: >"$LOGDIR/ngtcp2.log"

say "building wolfSSL $WOLFSSL_VERSION (Debian patches applied; 1-8 minutes) ..."
cd "$SRC"
dsc=$(ls wolfssl_"$WOLFSSL_VERSION"-*.dsc | sort -V | tail -n 1)
# dpkg-source checks the .dsc's checksums (which the signed index vouched
# for) and applies Debian's patch series.
run_logged "$LOGDIR/wolfssl.log" dpkg-source --no-copy -x "$dsc" "$WORK/wolfssl"
cd "$WORK/wolfssl"
[ -x configure ] || run_logged "$LOGDIR/wolfssl.log" ./autogen.sh
run_logged "$LOGDIR/wolfssl.log" ./configure "${WOLFSSL_CONFIGURE[@]}" --prefix="$PREFIX"
run_logged "$LOGDIR/wolfssl.log" make -j"$jobs"
run_logged "$LOGDIR/wolfssl.log" make install

# A static libwolfssl needs libm and pthreads from whoever links it; make
# sure "pkg-config --static --libs wolfssl" says so.
pc=$PREFIX/lib/pkgconfig/wolfssl.pc
for lib in -lm -lpthread; do
	if ! pkg-config --static --libs wolfssl | tr ' ' '\n' | grep -qx -- "$lib"; then
		if grep -q '^Libs.private:' "$pc"; then
			sed -i "s/^Libs.private:.*/& $lib/" "$pc"
		else
			printf 'Libs.private: %s\n' "$lib" >>"$pc"
		fi
	fi
done
opts=$PREFIX/include/wolfssl/options.h
for def in WOLFSSL_QUIC WOLFSSL_CERT_GEN HAVE_ALPN; do
	grep -q "^#define $def\b" "$opts" || die "wolfSSL built without $def"
done

# ------------------------------------------------------------------- ngtcp2
say "building ngtcp2 $NGTCP2_VERSION with ngtcp2_crypto_wolfssl ..."
mkdir -p "$WORK/ngtcp2"
tar -xf "$NGTCP2_ORIG" -C "$WORK/ngtcp2" --strip-components=1
deb_tar=$(ls "$SRC"/ngtcp2_"$NGTCP2_VERSION"-*.debian.tar.* | sort -V | tail -n 1)
tar -xf "$deb_tar" -C "$WORK/ngtcp2"
cd "$WORK/ngtcp2"
if [ -f debian/patches/series ]; then
	while read -r p _; do
		case $p in ''|'#'*) continue ;; esac
		say "applying Debian patch $p"
		run_logged "$LOGDIR/ngtcp2.log" patch -p1 --forward -i "debian/patches/$p"
	done <debian/patches/series
fi
[ -x configure ] || run_logged "$LOGDIR/ngtcp2.log" autoreconf -fi
# configure links its probes against the static libwolfssl: give it the
# static link line so those probes do not fail on libm/pthread symbols.
run_logged "$LOGDIR/ngtcp2.log" ./configure "${NGTCP2_CONFIGURE[@]}" \
	--prefix="$PREFIX" LIBS="$(pkg-config --static --libs wolfssl)"
run_logged "$LOGDIR/ngtcp2.log" make -j"$jobs"
run_logged "$LOGDIR/ngtcp2.log" make install
[ -f "$PREFIX/lib/libngtcp2_crypto_wolfssl.a" ] ||
	die "ngtcp2 built without ngtcp2_crypto_wolfssl (log: $LOGDIR/ngtcp2.log)"
# The helper library calls into both libngtcp2 and wolfSSL; say so, so that
# "pkg-config --static --libs libngtcp2_crypto_wolfssl" alone links.
pc=$PREFIX/lib/pkgconfig/libngtcp2_crypto_wolfssl.pc
grep -q '^Requires' "$pc" || printf 'Requires.private: libngtcp2 wolfssl\n' >>"$pc"

# ------------------------------------------------------------------- verify
libs=$(pkg-config --static --libs libngtcp2_crypto_wolfssl libngtcp2 wolfssl) ||
	die "pkg-config cannot resolve the installed .pc files"
cd "$WORK"
cat >link-check.c <<'EOF'
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_wolfssl.h>

int main(void)
{
	WOLFSSL_CTX *ctx;
	int rc;

	wolfSSL_Init();
	ctx = wolfSSL_CTX_new(wolfTLS_server_method());
	if (ctx == NULL)
		return 1;
	rc = ngtcp2_crypto_wolfssl_configure_server_context(ctx);
	wolfSSL_CTX_free(ctx);
	wolfSSL_Cleanup();
	return rc == 0 && ngtcp2_version(0) != NULL ? 0 : 2;
}
EOF
# shellcheck disable=SC2046,SC2086
run_logged "$LOGDIR/ngtcp2.log" cc -o link-check link-check.c \
	$(pkg-config --cflags libngtcp2_crypto_wolfssl libngtcp2 wolfssl) $libs
run_logged "$LOGDIR/ngtcp2.log" ./link-check

printf '%s wolfssl-%s ngtcp2-%s\n' "$STAMP_VERSION" "$WOLFSSL_VERSION" \
	"$NGTCP2_VERSION" >"$STAMP"
rm -rf "$WORK/wolfssl" "$WORK/ngtcp2" "$WORK/link-check" "$WORK/link-check.c"
say "wolfSSL $WOLFSSL_VERSION + ngtcp2 $NGTCP2_VERSION installed in ${PREFIX#"$ROOT"/}"
say "ok"

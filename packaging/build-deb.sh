#!/usr/bin/env bash
# Builds a Debian package of tokenkeeper, OUT/tokenkeeper_<version>_<arch>.deb:
#   /usr/bin/tokenkeeper                      (the Swift runtime and Foundation linked in statically)
#   /lib/systemd/system/tokenkeeper.service
#   /usr/lib/sysusers.d/tokenkeeper.conf
#   /usr/lib/tmpfiles.d/tokenkeeper.conf
#   /etc/tokenkeeper/config.yaml              (a conffile: an upgrade keeps local edits)
#   /usr/share/doc/tokenkeeper/               (README.md, docs/*.md, copyright: one folder)
# The maintainer scripts create the tokenkeeper user and group and the
# directories, and reload systemd; they never enable or start the service.
#
# Usage: packaging/build-deb.sh [--out DIR]    (default: dist/)
# Environment: SCRATCH, the build folder (default .build-deb); TOKENKEEPER_BINARY,
# an already built binary, which skips the build (it must be built with
# --static-swift-stdlib); DEBFULLNAME and DEBEMAIL, the Maintainer field.
set -euo pipefail
caller="$PWD"
cd "$(dirname "$0")/.."

out=dist
while [ $# -gt 0 ]; do
    case "$1" in
        --out) [ $# -ge 2 ] || { echo "build-deb.sh: --out needs a directory" >&2; exit 64; }
               out="$2"; shift 2 ;;
        --out=*) out="${1#--out=}"; shift ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-deb.sh: unknown argument $1 (usage: build-deb.sh [--out DIR])" >&2; exit 64 ;;
    esac
done

# A relative --out or TOKENKEEPER_BINARY is relative to where the script was run.
case "$out" in dist|/*) ;; *) out="$caller/$out" ;; esac
fail() { echo "build-deb.sh: $*" >&2; exit 1; }
for tool in dpkg-deb dpkg ldd strip; do
    command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install dpkg-dev binutils)"
done

version="$(sed -n '/enum TokenKeeperVersion/,/^}/s/.*static let current = "\([^"]*\)".*/\1/p' \
    Sources/TokenKeeperService/Commands/CommandOutcome.swift)"
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] \
    || fail "cannot read TokenKeeperVersion.current from Sources/TokenKeeperService/Commands/CommandOutcome.swift"
arch="$(dpkg --print-architecture)"

if [ -n "${TOKENKEEPER_BINARY:-}" ]; then
    binary="$TOKENKEEPER_BINARY"
    case "$binary" in /*) ;; *) binary="$caller/$binary" ;; esac
else
    scratch="${SCRATCH:-.build-deb}"
    # --static-swift-stdlib links the Swift runtime, Foundation and Dispatch into
    # the binary: the host needs no Swift toolchain, only the C libraries in Depends.
    swift build -c release --product tokenkeeper --static-swift-stdlib --scratch-path "$scratch"
    binary="$(swift build -c release --static-swift-stdlib --scratch-path "$scratch" --show-bin-path)/tokenkeeper"
fi
[ -x "$binary" ] || fail "$binary is not an executable"

# A binary that needs a Swift library at run time would install and then fail
# to start on every host without the toolchain.
libraries="$(ldd "$binary")"
if grep -Eq 'not found|libswift|libFoundation|lib_Foundation|libdispatch|libBlocksRuntime' <<<"$libraries"; then
    echo "$libraries" >&2
    fail "$binary links Swift libraries dynamically: build it with --static-swift-stdlib"
fi
built_version="$("$binary" --version)"
[ "$built_version" = "$version" ] || fail "$binary says it is version '$built_version', the source says $version"

stage="$(mktemp -d "${TMPDIR:-/tmp}/tokenkeeper-deb.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
root="$stage/tokenkeeper_${version}_${arch}"
doc="$root/usr/share/doc/tokenkeeper"
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/usr/lib/sysusers.d" \
    "$root/usr/lib/tmpfiles.d" "$doc"
install -d -m 0750 "$root/etc/tokenkeeper"

install -m 0755 "$binary" "$root/usr/bin/tokenkeeper"
strip "$root/usr/bin/tokenkeeper"
sed 's|/usr/local/bin/tokenkeeper|/usr/bin/tokenkeeper|g; s|/usr/local/share/doc|/usr/share/doc|g' \
    systemd/tokenkeeper.service > "$root/lib/systemd/system/tokenkeeper.service"
chmod 0644 "$root/lib/systemd/system/tokenkeeper.service"
! grep -q /usr/local "$root/lib/systemd/system/tokenkeeper.service" \
    || fail "systemd/tokenkeeper.service names a /usr/local path the package does not install"
install -m 0644 systemd/tokenkeeper.sysusers "$root/usr/lib/sysusers.d/tokenkeeper.conf"
install -m 0644 systemd/tokenkeeper.tmpfiles "$root/usr/lib/tmpfiles.d/tokenkeeper.conf"
# 0640: the app key is no secret, but the file may name where the secret is;
# postinst gives it to the tokenkeeper group.
install -m 0640 config/config.example.yaml "$root/etc/tokenkeeper/config.yaml"
# Flat, as install.sh lays them: the unit's Documentation= names OPERATIONS.md there.
install -m 0644 README.md docs/*.md "$doc/"
cat > "$doc/copyright" <<'EOF'
tokenkeeper
Copyright: the tokenkeeper authors. License: see the project's repository.

/usr/bin/tokenkeeper is linked statically with parts that keep their own
licenses:
- the Swift runtime, Foundation and Dispatch (swift.org): Apache License 2.0
  with the Runtime Library Exception (https://swift.org/LICENSE.txt);
- the Swift packages named in Package.swift: swift-nio, swift-nio-ssl,
  swift-nio-extras, swift-nio-http2, swift-crypto, async-http-client,
  swift-log, swift-argument-parser, swift-collections, swift-configuration,
  swift-service-lifecycle, swift-metrics, swift-prometheus, swift-http-types,
  hummingbird and their dependencies: Apache License 2.0;
- BoringSSL, inside swift-nio-ssl and swift-crypto: ISC and OpenSSL licenses;
- Yams, with libyaml: MIT license.
On Debian systems the Apache License 2.0 is in
/usr/share/common-licenses/Apache-2.0.
EOF
chmod 0644 "$doc/copyright"

echo /etc/tokenkeeper/config.yaml > "$root/DEBIAN/conffiles"

# Depends from the libraries the binary links (dpkg-shlibdeps reads the
# installed packages' symbols files: no network). Without it, the minimum
# versions below are what it computed on Debian 12 for this binary.
depends=""
if command -v dpkg-shlibdeps >/dev/null; then
    mkdir -p "$stage/shlibdeps/debian"
    printf 'Source: tokenkeeper\n\nPackage: tokenkeeper\nArchitecture: any\n' > "$stage/shlibdeps/debian/control"
    depends="$(cd "$stage/shlibdeps" && dpkg-shlibdeps -O -e"$root/usr/bin/tokenkeeper" 2>"$stage/shlibdeps.log" \
        | sed -n 's/^shlibs:Depends=//p')" || depends=""
fi
if [ -z "$depends" ]; then
    depends="libc6 (>= 2.35), libsqlite3-0 (>= 3.31)"
    grep -q 'libgcc_s' <<<"$libraries" && depends+=", libgcc-s1 (>= 3.3.1)"
    grep -q 'libstdc++' <<<"$libraries" && depends+=", libstdc++6 (>= 12)"
    grep -q 'libz\.so' <<<"$libraries" && depends+=", zlib1g (>= 1:1.1.4)"
fi
grep -q libsqlite3-0 <<<"$depends" || fail "Depends lacks libsqlite3-0: $depends"
# The symbols used do not show what the SQL and the open flags need:
# UPSERT (3.24), SQLITE_DBCONFIG_DEFENSIVE (3.26), SQLITE_OPEN_NOFOLLOW (3.31).
sqlite_minimum=3.31
sqlite_found="$(sed -n 's/.*libsqlite3-0 (>= \([^)]*\)).*/\1/p' <<<"$depends")"
if [ -z "$sqlite_found" ] || dpkg --compare-versions "$sqlite_found" lt "$sqlite_minimum"; then
    depends="$(sed -E "s/libsqlite3-0( \(>= [^)]*\))?/libsqlite3-0 (>= $sqlite_minimum)/" <<<"$depends")"
fi
! grep -qi swift <<<"$depends" || fail "Depends names a Swift package: $depends"
# The unit's ExecReload= runs /bin/kill, which Debian ships in procps.
depends+=", procps"

maintainer="tokenkeeper maintainers <root@localhost>"
if [ -n "${DEBFULLNAME:-}" ] && [ -n "${DEBEMAIL:-}" ]; then maintainer="$DEBFULLNAME <$DEBEMAIL>"; fi
cat > "$root/DEBIAN/control" <<EOF
Package: tokenkeeper
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Section: admin
Priority: optional
Description: keeps AliExpress Open Platform seller tokens alive
 A systemd daemon that refreshes each stored seller's access token through
 the IOP gateway before it expires, keeps the rotated refresh token durably,
 and marks sellers whose refresh token is rejected as needing
 re-authorization. Other programs read the current access tokens from a
 SQLite file, /var/lib/tokenkeeper/tokens.db (members of the tokenkeeper
 group).
 .
 The package creates the tokenkeeper user and group and its directories but
 neither enables nor starts the service: set app.key in
 /etc/tokenkeeper/config.yaml and the app secret first.
EOF

cat > "$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# Creates the tokenkeeper user and group, /etc/tokenkeeper and
# /var/lib/tokenkeeper, and reloads systemd. It never enables or starts the
# service: app.key and the app secret must be set first.
set -e

if [ "$1" = configure ]; then
    # The same user and group as the sysusers file describes, by whichever
    # tool the host has (a container or a minimal system may lack systemd).
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers /usr/lib/sysusers.d/tokenkeeper.conf
    elif getent passwd tokenkeeper >/dev/null; then
        :
    elif command -v adduser >/dev/null 2>&1; then
        adduser --system --group --home /var/lib/tokenkeeper tokenkeeper
    else
        getent group tokenkeeper >/dev/null || groupadd --system tokenkeeper
        useradd --system --gid tokenkeeper --home-dir /var/lib/tokenkeeper --no-create-home \
            --shell /usr/sbin/nologin --comment "tokenkeeper daemon" tokenkeeper
    fi
    if command -v systemd-tmpfiles >/dev/null 2>&1; then
        systemd-tmpfiles --create /usr/lib/tmpfiles.d/tokenkeeper.conf
    else
        install -d -m 0750 -o tokenkeeper -g tokenkeeper /var/lib/tokenkeeper
    fi
    # The daemon reads its configuration as the tokenkeeper user.
    chgrp tokenkeeper /etc/tokenkeeper
    chmod 0750 /etc/tokenkeeper
    if [ -e /etc/tokenkeeper/config.yaml ]; then chgrp tokenkeeper /etc/tokenkeeper/config.yaml; fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
        # An upgrade does not restart a running daemon (a stop waits for
        # refreshes in flight); the administrator chooses when.
        if [ -n "$2" ] && systemctl is-active --quiet tokenkeeper.service; then
            echo "tokenkeeper: the running daemon is still version $2 until it is restarted (systemctl restart tokenkeeper)"
        fi
    fi
    if [ -z "$2" ]; then
        echo "tokenkeeper: set app.key in /etc/tokenkeeper/config.yaml and the app secret in /etc/tokenkeeper/app_secret"
        echo "tokenkeeper: (mode 0600) before enabling the service: see /usr/share/doc/tokenkeeper/README.md"
    fi
fi
exit 0
EOF

cat > "$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
# On removal (not on upgrade) stops the daemon, which would otherwise go on
# running a deleted binary without a unit. A stop waits for refreshes in
# flight to be stored (TimeoutStopSec=90s in the unit).
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop tokenkeeper.service || true
fi
exit 0
EOF

cat > "$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# Reloads systemd after the unit is gone. Neither remove nor purge ever deletes
# /var/lib/tokenkeeper: keeper.db holds the only copy of each seller's current
# refresh token, and losing it means every seller must authorize the app again.
# The tokenkeeper user and group stay too, so those files keep their owner.
# Purge removes config.yaml (a conffile) but not an app_secret put beside it.
set -e
case "$1" in
    remove|purge)
        if [ "$1" = purge ]; then
            # Left by `systemctl enable`; the unit it points to is gone.
            rm -f /etc/systemd/system/multi-user.target.wants/tokenkeeper.service
        fi
        if [ -d /run/systemd/system ]; then
            systemctl daemon-reload || true
        fi
        ;;
esac
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles"

mkdir -p "$out"
deb="$out/tokenkeeper_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "built $deb ($(du -h "$deb" | cut -f1); binary $(du -h "$root/usr/bin/tokenkeeper" | cut -f1))"
echo "Depends: $depends"

#!/usr/bin/env bash
# Builds a Debian package of tokenkeeper, OUT/tokenkeeper_<version>_<arch>.deb:
#   /usr/bin/tokenkeeper                      (the Swift runtime and Foundation linked in statically)
#   /usr/share/man/man1/tokenkeeper.1.gz      (generated from the argument parser, as --help)
#   bash, zsh and fish completions            (generated the same way)
#   /lib/systemd/system/tokenkeeper.service
#   /usr/lib/sysusers.d/tokenkeeper.conf
#   /usr/lib/tmpfiles.d/tokenkeeper.conf
#   /etc/tokenkeeper/config.yaml              (a conffile: an upgrade keeps local edits)
#   /usr/share/doc/tokenkeeper/               (README.md, docs/*.md, copyright, NOTICE, changelog.gz)
#   /usr/share/lintian/overrides/tokenkeeper  (each override with its reason)
# The maintainer scripts (packaging/debian/) create the tokenkeeper user and
# group and the directories and tell systemd; they never enable or start the
# service. `lintian` accepts the package and `piuparts` installs, upgrades and
# purges it: packaging/check-deb.sh runs both.
#
# Usage: packaging/build-deb.sh [--out DIR]    (default: dist/)
# Environment: DEBFULLNAME and DEBEMAIL, the Maintainer field (else git's
# user.name and user.email; one of the two is required); SCRATCH, the build
# folder (default .build-deb); TOKENKEEPER_BINARY, an already built binary,
# which skips the build (it must be built with --static-swift-stdlib).
set -euo pipefail
caller="$PWD"
cd "$(dirname "$0")/.."

out=dist
while [ $# -gt 0 ]; do
    case "$1" in
        --out) [ $# -ge 2 ] || { echo "build-deb.sh: --out needs a directory" >&2; exit 64; }
               out="$2"; shift 2 ;;
        --out=*) out="${1#--out=}"; shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-deb.sh: unknown argument $1 (usage: build-deb.sh [--out DIR])" >&2; exit 64 ;;
    esac
done

# A relative --out or TOKENKEEPER_BINARY is relative to where the script was run.
case "$out" in dist|/*) ;; *) out="$caller/$out" ;; esac
fail() { echo "build-deb.sh: $*" >&2; exit 1; }
for tool in dpkg-deb dpkg ldd strip gzip; do
    command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install dpkg-dev binutils)"
done

# Who answers for the package: Debian's tools refuse root@localhost and the like.
maintainer_name="${DEBFULLNAME:-$(git config user.name 2>/dev/null || true)}"
maintainer_email="${DEBEMAIL:-$(git config user.email 2>/dev/null || true)}"
if [ -z "$maintainer_name" ] || [ -z "$maintainer_email" ]; then
    echo "build-deb.sh: no Maintainer: set DEBFULLNAME and DEBEMAIL (or git's user.name and user.email)," >&2
    echo "  e.g. DEBFULLNAME='Jane Doe' DEBEMAIL=jane@example.com packaging/build-deb.sh" >&2
    exit 78
fi
[[ "$maintainer_email" =~ ^[^@[:space:]\<\>]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$ ]] \
    || { echo "build-deb.sh: DEBEMAIL '$maintainer_email' is not an address at a domain (user@host.tld)" >&2; exit 78; }
case "${maintainer_email%%@*} ${maintainer_email#*@}" in
    "root "*|*" localhost"|*" localhost."*|*.localdomain)
        echo "build-deb.sh: DEBEMAIL '$maintainer_email' is no one's address: name a person or a team" >&2; exit 78 ;;
esac
[ "$maintainer_name" != root ] || { echo "build-deb.sh: DEBFULLNAME 'root' names no one: name a person or a team" >&2; exit 78; }
maintainer="$maintainer_name <$maintainer_email>"

version="$(sed -n '/enum TokenKeeperVersion/,/^}/s/.*static let current = "\([^"]*\)".*/\1/p' \
    Sources/TokenKeeperService/Commands/CommandOutcome.swift)"
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] \
    || fail "cannot read TokenKeeperVersion.current from Sources/TokenKeeperService/Commands/CommandOutcome.swift"
# CHANGELOG.md is kept with every version: its newest must be this one.
changelog_version="$(sed -n 's/^## \([^ ]*\) — [0-9-]*$/\1/p' CHANGELOG.md | head -1)"
[ "$changelog_version" = "$version" ] \
    || fail "CHANGELOG.md's newest version is '$changelog_version', the source says $version: add a '## $version — YYYY-MM-DD' section"
arch="$(dpkg --print-architecture)"

scratch="${SCRATCH:-.build-deb}"
if [ -n "${TOKENKEEPER_BINARY:-}" ]; then
    binary="$TOKENKEEPER_BINARY"
    case "$binary" in /*) ;; *) binary="$caller/$binary" ;; esac
else
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
    "$root/usr/lib/tmpfiles.d" "$doc" "$root/usr/share/man/man1" "$root/usr/share/bash-completion/completions" \
    "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d" \
    "$root/usr/share/lintian/overrides"
install -d -m 0750 "$root/etc/tokenkeeper"

install -m 0755 "$binary" "$root/usr/bin/tokenkeeper"
strip --remove-section=.comment --remove-section=.note "$root/usr/bin/tokenkeeper"
# The dependencies' checkouts: the manual's generator is built from one, and
# their NOTICE files go into the package. With TOKENKEEPER_BINARY there may be
# no $scratch: a plain `swift build`'s will do, else they are resolved.
checkouts_of="$scratch"
if [ ! -d "$scratch/checkouts/swift-argument-parser" ] && [ -d .build/checkouts/swift-argument-parser ]; then
    checkouts_of=.build
fi
[ -d "$checkouts_of/checkouts/swift-argument-parser" ] || swift package resolve --scratch-path "$checkouts_of" >&2
# The manual page and completions, from the packaged binary's own definitions.
packaging/manual-and-completions.sh "$root/usr/bin/tokenkeeper" "$stage/generated" "$checkouts_of"
install -m 0644 "$stage/generated/man1/tokenkeeper.1" "$root/usr/share/man/man1/tokenkeeper.1"
gzip -9n "$root/usr/share/man/man1/tokenkeeper.1"
install -m 0644 "$stage/generated/bash/tokenkeeper" "$root/usr/share/bash-completion/completions/tokenkeeper"
install -m 0644 "$stage/generated/zsh/_tokenkeeper" "$root/usr/share/zsh/vendor-completions/_tokenkeeper"
install -m 0644 "$stage/generated/fish/tokenkeeper.fish" "$root/usr/share/fish/vendor_completions.d/tokenkeeper.fish"
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
install -m 0644 packaging/copyright "$doc/copyright"
# The Apache-2.0 packages' attribution notices (their section 4(d)).
for notice in "$checkouts_of"/checkouts/*/NOTICE.txt; do
    printf '== %s ==\n\n' "$(basename "$(dirname "$notice")")"
    cat "$notice"
    printf '\n'
done > "$doc/NOTICE"
[ -s "$doc/NOTICE" ] || fail "no NOTICE.txt in $checkouts_of/checkouts"
chmod 0644 "$doc/NOTICE"
install -m 0644 packaging/debian/lintian-overrides "$root/usr/share/lintian/overrides/tokenkeeper"

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

# The maintainer scripts create the user with adduser where systemd-sysusers is missing.
depends+=", adduser"

# The Debian changelog of a native package, made from CHANGELOG.md: each
# "## VERSION — DATE" section an entry, its "- " items the entry's lines.
awk -v maintainer="$maintainer" '
    function flush() {
        if (item != "") { items[n++] = item; item = "" }
    }
    function close_entry(   i, cmd, stamp) {
        flush()
        if (version == "") return
        printf "tokenkeeper (%s) unstable; urgency=medium\n\n", version
        for (i = 0; i < n; i++) print wrap(items[i])
        cmd = "date -u -R -d " day
        cmd | getline stamp
        close(cmd)
        printf "\n -- %s  %s\n\n", maintainer, stamp
        n = 0
    }
    function wrap(text,   words, count, i, line, out) {
        count = split(text, words, " ")
        line = "  *"
        out = ""
        for (i = 1; i <= count; i++) {
            if (length(line) + 1 + length(words[i]) > 78 && line != "  *" && line != "   ") {
                out = out line "\n"
                line = "   "
            }
            line = line " " words[i]
        }
        return out line
    }
    /^## / {
        close_entry()
        version = $2
        day = $4
        next
    }
    version == "" { next }
    /^- / { flush(); item = substr($0, 3); next }
    /^  [^ ]/ && item != "" { sub(/^ +/, ""); item = item " " $0; next }
    /^$/ { flush(); next }
    END { close_entry() }
' CHANGELOG.md > "$stage/changelog"
head -1 "$stage/changelog" | grep -q "^tokenkeeper ($version) " || fail "could not make the Debian changelog from CHANGELOG.md"
gzip -9n < "$stage/changelog" > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

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

install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) \
    > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/tokenkeeper_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "built $deb ($(du -h "$deb" | cut -f1); binary $(du -h "$root/usr/bin/tokenkeeper" | cut -f1))"
echo "Depends: $depends"

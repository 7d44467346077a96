#!/usr/bin/env bash
# Checks a built tokenkeeper package with Debian's own tools:
#   lintian   no error, and no warning that packaging/debian/lintian-overrides
#             does not override with its reason (the whole output is shown,
#             overridden tags included);
#   piuparts  in a throwaway chroot of this machine's Debian release, made from
#             the archive apt uses here: install and purge; install the previous
#             release's package, edit its configuration and give it a store,
#             upgrade to this one (both must survive), purge. Nothing may be
#             left behind but /var/lib/tokenkeeper and what it holds, which
#             purge keeps on purpose (the only copy of each seller's refresh
#             token). After each install of this package, packaging/piuparts/
#             checks that `man tokenkeeper` shows every command, argument and
#             option that --help shows and that bash completes
#             `tokenkeeper <TAB>`.
# The previous release's package is rebuilt by that release's own
# build-deb.sh (git archive of the commit in packaging/previous-release)
# around this package's binary, so that no second release build is needed:
# the upgrade runs that release's maintainer scripts, conffiles and file list,
# not its binary.
#
# Usage: packaging/check-deb.sh DEB
# Needs root (piuparts builds a chroot), the git history (not a shallow
# clone) and the archive apt uses; lintian, piuparts and debootstrap
# (apt-get install lintian piuparts debootstrap; scripts/test installs them).
# Takes about a minute and a half, most of it making the chroot.
set -euo pipefail
caller="$PWD"
cd "$(dirname "$0")/.."
fail() { echo "check-deb.sh: $*" >&2; exit 1; }
[ $# -eq 1 ] || { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 64; }
deb="$1"
case "$deb" in /*) ;; *) deb="$caller/$deb" ;; esac
[ -f "$deb" ] || fail "$deb: no such package"
for tool in lintian piuparts debootstrap dpkg-scanpackages git; do
    command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install lintian piuparts debootstrap dpkg-dev git)"
done
[ "$(id -u)" -eq 0 ] || fail "piuparts needs root to build its chroot"

echo "== lintian $(lintian --version | sed 's/^Lintian v//') on $(basename "$deb")"
# Judged from the output: with --show-overrides, lintian's exit status also
# counts the tags it shows as overridden.
report="$(lintian --fail-on none --show-overrides "$deb" 2>&1)" || { echo "$report" >&2; fail "lintian did not run"; }
grep -v '^running with root privileges' <<<"$report" || true
! grep -q '^[EW]: ' <<<"$report" || fail "lintian reports errors or warnings that are not overridden (above)"
echo "lintian: no error, no warning that is not overridden"

work="$(mktemp -d "${TMPDIR:-/tmp}/tokenkeeper-check-deb.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The previous release's package, in a local archive the chroot's apt reads.
previous_version="$(awk '!/^#/ && NF == 2 { print $1; exit }' packaging/previous-release)"
previous_commit="$(awk '!/^#/ && NF == 2 { print $2; exit }' packaging/previous-release)"
[ -n "$previous_commit" ] || fail "packaging/previous-release names no version and commit"
git=(git -c safe.directory="$PWD")
"${git[@]}" cat-file -e "$previous_commit^{commit}" 2>/dev/null \
    || fail "the previous release's commit $previous_commit is not in this clone's history (a shallow clone? git fetch --unshallow)"
mkdir -p "$work/previous" "$work/archive" "$work/new"
"${git[@]}" archive "$previous_commit" | tar -x -C "$work/previous"
dpkg-deb -x "$deb" "$work/new"
# Its one check that this binary cannot pass: that it says the old version.
sed -i '/built_version" = "\$version" \] || fail/d' "$work/previous/packaging/build-deb.sh"
# The same Maintainer, and the dependencies' checkouts of this tree (a
# build-deb.sh that makes the manual needs them: no second resolution).
maintainer="$(dpkg-deb -f "$deb" Maintainer)"
checkouts_of="$PWD/.build-deb"
[ -d "$checkouts_of/checkouts" ] || checkouts_of="$PWD/.build"
DEBFULLNAME="${maintainer% <*}" DEBEMAIL="$(sed 's/.*<\(.*\)>.*/\1/' <<<"$maintainer")" SCRATCH="$checkouts_of" \
    TOKENKEEPER_BINARY="$work/new/usr/bin/tokenkeeper" bash "$work/previous/packaging/build-deb.sh" \
    --out "$work/archive" >"$work/previous.log" 2>&1 \
    || { tail -n 20 "$work/previous.log" >&2; fail "the previous release's build-deb.sh failed (above)"; }
[ -f "$work/archive/tokenkeeper_${previous_version}_$(dpkg --print-architecture).deb" ] \
    || fail "the previous release's package is not version $previous_version: $(ls "$work/archive")"
(cd "$work/archive" && dpkg-scanpackages --multiversion . > Packages 2>/dev/null)

# The chroot comes from the archive this machine's apt uses for its release.
. /etc/os-release
codename="${VERSION_CODENAME:?}"
archive_of() {
    apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null \
        | awk -v release="$codename" '$2 == release { print $1; exit }'
}
mirror="$(archive_of)"
if [ -z "$mirror" ]; then
    apt-get update -q >/dev/null
    mirror="$(archive_of)"
fi
[ -n "$mirror" ] || fail "apt has no archive for $codename in its sources"

echo "== piuparts: install, purge; upgrade from $previous_version, purge ($codename)"
if ! piuparts --distribution="$codename" --mirror="$mirror main" \
    --extra-repo="deb [trusted=yes] file://$work/archive ./" --bindmount="$work/archive" \
    --scriptsdir="$PWD/packaging/piuparts" \
    --ignore-regex='^/var/lib/tokenkeeper/' \
    --log-file="$work/piuparts.log" "$deb" >/dev/null 2>&1; then
    tail -n 80 "$work/piuparts.log" >&2
    fail "piuparts failed (the end of its log is above)"
fi
# What it did, in order: each version set up, each check, each test passed.
grep -E "Setting up tokenkeeper |Removing tokenkeeper |Purging configuration files for tokenkeeper|tokenkeeper: |PASS:" \
    "$work/piuparts.log" | sed -E 's/^[0-9]+m[0-9.]+s (INFO|DUMP): *//' || true
# piuparts skips the upgrade test, and still passes, when apt cannot see the
# previous package: both tests must have run.
for test in "Installation and purging test" "Installation, upgrade and purging tests"; do
    grep -q "PASS: $test\." "$work/piuparts.log" || fail "piuparts did not run its '$test'"
done
echo "piuparts: passed"

#!/usr/bin/env bash
# Builds the release binary and installs tokenkeeper:
#   $DESTDIR$PREFIX/bin/tokenkeeper
#   $DESTDIR/etc/systemd/system/tokenkeeper.service  (ExecStart pointed at $PREFIX/bin)
#   $DESTDIR/usr/lib/sysusers.d/tokenkeeper.conf
#   $DESTDIR/usr/lib/tmpfiles.d/tokenkeeper.conf
#   $DESTDIR/etc/tokenkeeper/config.yaml            (only if none exists)
#   $DESTDIR$PREFIX/share/doc/tokenkeeper/           (README, DATABASE, OPERATIONS, CHANGELOG)
#   $DESTDIR$PREFIX/share/man/man1/tokenkeeper.1     (generated from the argument parser, as --help)
#   $DESTDIR$PREFIX/share/bash-completion/completions/tokenkeeper, zsh/site-functions/_tokenkeeper,
#   fish/vendor_completions.d/tokenkeeper.fish      (generated the same way)
# Environment: DESTDIR (default empty), PREFIX (default /usr/local),
# TOKENKEEPER_BINARY (an already built binary: skips its build; the manual's
# generator is still built, in seconds, from .build's checkouts),
# TOKENKEEPER_GENERATED (the manual page and completions already made by
# packaging/manual-and-completions.sh for that binary: skips making them).
# With an empty DESTDIR it also creates the user (systemd-sysusers) and the
# directories (systemd-tmpfiles) and reloads systemd; it never starts the service.
set -euo pipefail
cd "$(dirname "$0")/.."

DESTDIR="${DESTDIR:-}"
PREFIX="${PREFIX:-/usr/local}"

if [ -n "${TOKENKEEPER_BINARY:-}" ]; then
    binary="$TOKENKEEPER_BINARY"
    case "$binary" in /*) ;; *) binary="$OLDPWD/$binary" ;; esac
else
    swift build -c release --product tokenkeeper
    binary="$(swift build -c release --show-bin-path)/tokenkeeper"
fi
[ -x "$binary" ] || { echo "install.sh: $binary is not an executable" >&2; exit 1; }

share="$DESTDIR$PREFIX/share"
install -d -m 0755 "$DESTDIR$PREFIX/bin" "$DESTDIR/etc/systemd/system" \
    "$DESTDIR/usr/lib/sysusers.d" "$DESTDIR/usr/lib/tmpfiles.d" "$share/doc/tokenkeeper" "$share/man/man1" \
    "$share/bash-completion/completions" "$share/zsh/site-functions" "$share/fish/vendor_completions.d"
install -m 0755 "$binary" "$DESTDIR$PREFIX/bin/tokenkeeper"

# The manual page and completions, from the installed binary's own definitions.
if [ -n "${TOKENKEEPER_GENERATED:-}" ]; then
    generated="$TOKENKEEPER_GENERATED"
else
    generated="$(mktemp -d "${TMPDIR:-/tmp}/tokenkeeper-install.XXXXXX")"
    trap 'rm -rf "$generated"' EXIT
    packaging/manual-and-completions.sh "$binary" "$generated" >/dev/null
fi
install -m 0644 "$generated/man1/tokenkeeper.1" "$share/man/man1/tokenkeeper.1"
install -m 0644 "$generated/bash/tokenkeeper" "$share/bash-completion/completions/tokenkeeper"
install -m 0644 "$generated/zsh/_tokenkeeper" "$share/zsh/site-functions/_tokenkeeper"
install -m 0644 "$generated/fish/tokenkeeper.fish" "$share/fish/vendor_completions.d/tokenkeeper.fish"
sed "s|/usr/local/bin/tokenkeeper|$PREFIX/bin/tokenkeeper|g; s|/usr/local/share/doc|$PREFIX/share/doc|g" \
    systemd/tokenkeeper.service > "$DESTDIR/etc/systemd/system/tokenkeeper.service"
chmod 0644 "$DESTDIR/etc/systemd/system/tokenkeeper.service"
install -m 0644 systemd/tokenkeeper.sysusers "$DESTDIR/usr/lib/sysusers.d/tokenkeeper.conf"
install -m 0644 systemd/tokenkeeper.tmpfiles "$DESTDIR/usr/lib/tmpfiles.d/tokenkeeper.conf"
for doc in README.md CHANGELOG.md docs/DATABASE.md docs/OPERATIONS.md; do
    if [ -f "$doc" ]; then install -m 0644 "$doc" "$DESTDIR$PREFIX/share/doc/tokenkeeper/"; fi
done

install -d -m 0750 "$DESTDIR/etc/tokenkeeper"
if [ -e "$DESTDIR/etc/tokenkeeper/config.yaml" ]; then
    echo "install.sh: keeping the existing $DESTDIR/etc/tokenkeeper/config.yaml"
    install -m 0640 config/config.example.yaml "$DESTDIR/etc/tokenkeeper/config.example.yaml"
else
    install -m 0640 config/config.example.yaml "$DESTDIR/etc/tokenkeeper/config.yaml"
fi

if [ -z "$DESTDIR" ] && command -v systemd-sysusers >/dev/null; then
    systemd-sysusers /usr/lib/sysusers.d/tokenkeeper.conf
    systemd-tmpfiles --create /usr/lib/tmpfiles.d/tokenkeeper.conf
    chgrp tokenkeeper /etc/tokenkeeper /etc/tokenkeeper/config.yaml
    systemctl daemon-reload 2>/dev/null || true
    echo "installed. Next: put the app secret in /etc/tokenkeeper/app_secret (chmod 600),"
    echo "set app.key in /etc/tokenkeeper/config.yaml, then: systemctl enable --now tokenkeeper"
fi

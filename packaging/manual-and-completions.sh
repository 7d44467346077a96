#!/usr/bin/env bash
# Writes tokenkeeper's manual page and shell completions into OUT, generated
# from the argument parser's own definitions, so they never drift from --help:
#   OUT/man1/tokenkeeper.1            swift-argument-parser's generate-manual
#   OUT/bash/tokenkeeper              tokenkeeper --generate-completion-script bash
#   OUT/zsh/_tokenkeeper              ... zsh
#   OUT/fish/tokenkeeper.fish         ... fish
# generate-manual is built (a debug build, seconds) from the copy of
# swift-argument-parser that Package.resolved pins, as SwiftPM checked it out
# under SCRATCH (default .build; resolved there first if missing). The page's
# date is the newest version's in CHANGELOG.md, so that a rebuild is identical.
#
# Usage: packaging/manual-and-completions.sh BINARY OUT [SCRATCH]
# Used by packaging/build-deb.sh and systemd/install.sh.
set -euo pipefail
caller="$PWD"
cd "$(dirname "$0")/.."
fail() { echo "manual-and-completions.sh: $*" >&2; exit 1; }
[ $# -ge 2 ] && [ $# -le 3 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 64; }
binary="$1"; out="$2"; scratch="${3:-.build}"
case "$binary" in /*) ;; *) binary="$caller/$binary" ;; esac
case "$out" in /*) ;; *) out="$caller/$out" ;; esac
[ -x "$binary" ] || fail "$binary is not an executable"

date="$(sed -n 's/^## [^ ]* — \([0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\}\)$/\1/p' CHANGELOG.md | head -1)"
[ -n "$date" ] || fail "CHANGELOG.md has no '## VERSION — YYYY-MM-DD' heading"

parser="$scratch/checkouts/swift-argument-parser"
if [ ! -f "$parser/Package.swift" ]; then
    echo "manual-and-completions.sh: resolving the dependencies into $scratch (once)" >&2
    swift package resolve --scratch-path "$scratch" >&2
fi
[ -f "$parser/Package.swift" ] || fail "no swift-argument-parser checkout in $scratch/checkouts"
swift build --package-path "$parser" --scratch-path "$scratch/generate-manual" --product generate-manual >&2 \
    || fail "building generate-manual from $parser failed"
generator="$(swift build --package-path "$parser" --scratch-path "$scratch/generate-manual" --show-bin-path)/generate-manual"

mkdir -p "$out/man1" "$out/bash" "$out/zsh" "$out/fish"
"$generator" "$binary" --date "$date" --section 1 --output-directory "$out/man1"
[ -s "$out/man1/tokenkeeper.1" ] || fail "generate-manual wrote no tokenkeeper.1"
# A help text's blank line between paragraphs is an empty input line to mdoc
# (which warns, as lintian reports): a paragraph break is .Pp.
sed -i 's/^$/.Pp/' "$out/man1/tokenkeeper.1"

# bash-completion sources the script: no #! line (lintian's bash-completion-with-hashbang).
"$binary" --generate-completion-script bash | sed '1{/^#!/d}' > "$out/bash/tokenkeeper"
"$binary" --generate-completion-script zsh > "$out/zsh/_tokenkeeper"
"$binary" --generate-completion-script fish > "$out/fish/tokenkeeper.fish"
for script in "$out/bash/tokenkeeper" "$out/zsh/_tokenkeeper" "$out/fish/tokenkeeper.fish"; do
    [ -s "$script" ] || fail "$binary wrote no completion script for $script"
done

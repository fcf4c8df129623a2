#!/usr/bin/env bash
# Build the Debian packages from a clean copy of this source tree, leaving
# the tree itself untouched:
#   packaging/build-debs.sh [OUTDIR]        (default: out/debs)
# The copy holds what git sees (tracked files plus untracked files that are
# not ignored; no build directories), with packaging/debian linked as
# debian/. It is built with `dpkg-buildpackage -us -uc -b`, and the .debs,
# .buildinfo and .changes land in OUTDIR. The build log is OUTDIR/build.log.
# Needs the Build-Depends of packaging/debian/control (scripts/deps.sh
# installs them) and no root.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$src/out/debs}
mkdir -p "$out"
out=$(cd "$out" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/vmsig-debs.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/vmsig"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$src" && git ls-files -z -co --exclude-standard |
                tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$work/vmsig"
else
        tar -C "$src" --exclude='./build*' --exclude=./out --exclude=./.git --exclude=./debian -cf - . |
                tar -xf - -C "$work/vmsig"
fi
[ -f "$work/vmsig/packaging/debian/control" ] || {
        echo "build-debs: the copy of $src has no packaging/debian/control" >&2
        exit 1
}
rm -rf "$work/vmsig/debian"
ln -s packaging/debian "$work/vmsig/debian"

echo "build-debs: dpkg-buildpackage -us -uc -b in $work/vmsig (log: $out/build.log)"
if ! (cd "$work/vmsig" && DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-parallel=$(nproc) nocheck}" \
        dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1; then
        tail -n 60 "$out/build.log" >&2
        echo "build-debs: dpkg-buildpackage failed; full log in $out/build.log" >&2
        exit 1
fi
shopt -s nullglob
files=("$work"/*.deb "$work"/*.ddeb "$work"/*.buildinfo "$work"/*.changes)
mv -f "${files[@]}" "$out"/
for f in "${files[@]}"; do
        case $f in *.deb) echo "  $out/${f##*/}" ;; esac
done

#!/usr/bin/env bash
# `make package`, then what it built: its last printed line is the .deb's path, and the .deb
# installs usr/bin/stepdesk (which runs, with the console embedded), a .desktop entry that
# starts it, and its icons; the package depends on WebKitGTK. Run by `make test-package`.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "test-package: $*" >&2; exit 1; }

log=$(mktemp)
dir=$(mktemp -d)
trap 'rm -rf "$log" "$dir"' EXIT
"${MAKE:-make}" --no-print-directory package | tee "$log"
deb=$(tail -n 1 "$log")
[[ $deb == *.deb && -f $deb ]] || fail "the last line of \`make package\` is not a .deb: $deb"

dpkg-deb -x "$deb" "$dir"
bin=$dir/usr/bin/stepdesk
[[ -x $bin ]] || fail "no executable usr/bin/stepdesk in $deb"
version=$("$bin" --version)
[[ $version == "stepdesk "* ]] || fail "usr/bin/stepdesk --version said: $version"
# The console is embedded: the binary holds the script that ui/dist/index.html loads.
asset=$(grep -o 'assets/index-[A-Za-z0-9_-]*\.js' ui/dist/index.html | head -n 1)
[[ -n $asset ]] || fail "ui/dist/index.html names no script"
grep -a -q "$asset" "$bin" || fail "usr/bin/stepdesk does not embed the console ($asset)"

desktop=$(find "$dir/usr/share/applications" -name '*.desktop' | head -n 1)
[[ -n $desktop ]] || fail "no .desktop entry in $deb"
grep -q '^Exec=stepdesk' "$desktop" || fail "$(basename "$desktop") does not start stepdesk: $(grep '^Exec=' "$desktop" || true)"
icon=$(sed -n 's/^Icon=//p' "$desktop")
[[ -n $icon ]] || fail "$(basename "$desktop") names no icon"
icons=$(find "$dir/usr/share/icons" -name "$icon.png" | wc -l)
(( icons >= 1 )) || fail "no $icon.png icon in $deb"

depends=$(dpkg-deb -f "$deb" Depends)
[[ $depends == *libwebkit2gtk-4.1* ]] || fail "the package does not depend on WebKitGTK: $depends"

echo "test-package: ok: $deb ($version; $(basename "$desktop"); $icons icon sizes; depends: $depends)"

#!/usr/bin/env bash
# Builds the sdist and, from it, the wheel (python -m build), installs the
# wheel — not editable, core dependencies only, pinned by constraints.txt —
# into a fresh venv, and checks what a user of the package gets: `keep`,
# `keep-server` and `keep-checkin` run (each saying in one line which extra it
# needs, then working with it; `keep admin serve` likewise), the systemd units, the admin
# page's files and the compiled tree decoder are inside, and the demo runs from that venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

.venv/bin/python -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
sdist=$(ls "$work"/dist/*.tar.gz)
wheel=$(ls "$work"/dist/*.whl)
tar -tzf "$sdist" >"$work/sdist.list"
grep -q 'client/device/systemd/keep-backup.timer' "$work/sdist.list" || { echo "sdist lacks the systemd units" >&2; exit 1; }
grep -q 'src/keep/protocol/_nodes.c' "$work/sdist.list" || { echo "sdist lacks the tree decoder's C source" >&2; exit 1; }

"$PYTHON" -m venv "$work/venv" >/dev/null
bin="$work/venv/bin"
quietly() { "$@" >"$work/step.log" 2>&1 || { cat "$work/step.log"; exit 1; }; }
quietly "$bin/pip" install --quiet -c constraints.txt "$wheel"
"$bin/keep" --version
# The servers are roles of their own: without their extra, one line naming it.
needs_extra() {  # command extra
    local out
    if out=$("$bin/$1" --help 2>&1); then
        echo "$1 ran without its extra" >&2; exit 1
    fi
    [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && grep -q "keep-backup\[$2\]" <<<"$out" \
        || { echo "$1 without its extra said: $out" >&2; exit 1; }
}
needs_extra keep-server server
needs_extra keep-checkin checkin
out=$("$bin/keep" admin serve 2>&1) && { echo "the admin page ran without its extra" >&2; exit 1; }
grep -q "keep-backup\[admin\]" <<<"$out" || { echo "keep admin serve without its extra said: $out" >&2; exit 1; }
out=$("$bin/keep" mount "$work" 2>&1) && { echo "keep mount ran without its extra" >&2; exit 1; }
grep -q "keep-backup\[mount\]" <<<"$out" || { echo "keep mount without its extra said: $out" >&2; exit 1; }
"$bin/python" - <<'PY'
from importlib.resources import files

client = files("keep.client")
for name in ("device/systemd/keep-backup.timer", "device/systemd/keep-backup.service", "admin/templates/status.html",
             "admin/static/admin.css"):
    assert client.joinpath(name).is_file(), f"the wheel lacks keep/client/{name}"
assert files("keep").joinpath("py.typed").is_file(), "the wheel lacks keep/py.typed"
from keep.protocol import tree

assert tree._compiled is not None, "the wheel was built without the compiled tree decoder"
from keep.client.device.schedule import PLACEHOLDER, UNITS, render

for name in UNITS:  # every unit template the wheel ships fills completely
    assert not PLACEHOLDER.search(render(name, keep="/usr/bin/keep", schedule="daily")), name
PY
quietly "$bin/pip" install --quiet -c constraints.txt "${wheel}[server,checkin]"
"$bin/keep-server" --help >/dev/null
"$bin/keep-checkin" --help >/dev/null
# The demo, with keep from the installed wheel (not this checkout).
(cd "$work" && PYTHONPATH="$OLDPWD" "$bin/python" -c 'import keep.client, sys; assert "site-packages" in keep.client.__file__, keep.client.__file__')
PYTHONPATH=. "$bin/python" -m demo >"$work/demo.log" 2>&1 || { cat "$work/demo.log"; exit 1; }
tail -1 "$work/demo.log"
echo "wheel-check: sdist and wheel build, install and run"

#!/usr/bin/env bash
# Installs what benchmarks/compare.py compares against (and GNU time, which
# measures each command's peak RSS): restic and Borg from
# Debian, and a restic REST server (pyrestserver, PyPI) in its own venv so that
# restic, like keep, sends its data over HTTP on loopback.
set -euo pipefail
if ! command -v restic >/dev/null || ! command -v borg >/dev/null || [ ! -x /usr/bin/time ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic borgbackup time
fi
REST=${RESTIC_REST_VENV:-/tmp/keep-bench-rest}
if [ ! -x "$REST/bin/pyrestserver" ]; then
    python3 -m venv "$REST"
    "$REST/bin/pip" install --quiet pyrestserver
fi
restic version
borg --version
"$REST/bin/pyrestserver" --version

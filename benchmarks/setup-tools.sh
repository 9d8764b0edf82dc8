#!/usr/bin/env bash
# Installs what benchmarks/compare.py compares against (and GNU time, which
# measures each command's peak RSS), all from Debian: restic, Borg, and
# rclone, whose `rclone serve restic` is the REST server restic talks to on
# loopback so that restic, like keep, sends its data over HTTP.
set -euo pipefail
if ! command -v restic >/dev/null || ! command -v borg >/dev/null || ! command -v rclone >/dev/null \
    || [ ! -x /usr/bin/time ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic borgbackup rclone time
fi
restic version
borg --version
rclone version | head -1

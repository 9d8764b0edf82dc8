#!/usr/bin/env bash
# Installs what benchmarks/compare.py compares against (and GNU time, which
# measures each command's peak RSS), all from Debian: restic, Borg, and
# rclone, whose `rclone serve restic` is the REST server restic talks to on
# loopback so that restic, like keep, sends its data over HTTP; and dnsperf,
# which bench_dns.py points at keep-checkin's DNS responder.
set -euo pipefail
if ! command -v restic >/dev/null || ! command -v borg >/dev/null || ! command -v rclone >/dev/null \
    || [ ! -x /usr/bin/time ] || ! command -v dnsperf >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic borgbackup rclone time dnsperf
fi
restic version
borg --version
rclone version | head -1
dnsperf -h 2>&1 | grep -m1 -i version || true

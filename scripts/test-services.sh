#!/usr/bin/env bash
# Installs what the test suite's real services need: Debian's PostgreSQL
# server binaries (the tests start their own throw-away cluster on
# 127.0.0.1; the package's own cluster is never started), Debian's BIND 9
# (the tests start their own named on 127.0.0.1 for RFC 2136), nginx (TLS
# proxy test), systemd-analyze (unit checks), chromium (the admin page's
# browser tests, driven by Playwright), the clients owners point at
# keep-checkin (ddclient, inadyn, dig from bind9-dnsutils), libfaketime
# (update metadata over a simulated year) and moto's S3
# server from PyPI, in its own venv (.services/moto: its boto3 pins must not
# fight aiobotocore's botocore pins in the project's venv). Idempotent and
# quick when everything is there. Needs root for apt; without root it says
# what is missing and the tests skip (outside CI) or fail (CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}

if [ ! -x .services/moto/bin/moto_server ]; then
    rm -rf .services/moto
    "$PYTHON" -m venv .services/moto
    .services/moto/bin/python -m pip install --quiet --upgrade pip
    .services/moto/bin/python -m pip install --quiet 'moto[server]>=5.0'
fi

have_postgres() { ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; }
have_all() {
    have_postgres && command -v named >/dev/null && command -v nginx >/dev/null &&
        command -v systemd-analyze >/dev/null && [ -x /usr/bin/chromium ] &&
        command -v faketime >/dev/null && command -v dig >/dev/null &&
        [ -x /usr/bin/ddclient ] && [ -x /usr/sbin/inadyn ]
}

if have_all; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "test-services: missing packages; as root: apt-get install postgresql bind9 nginx-light systemd chromium faketime bind9-dnsutils ddclient inadyn" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Keep the package from starting its own cluster: the tests run their own.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends postgresql bind9 nginx-light systemd chromium fonts-dejavu-core \
    faketime bind9-dnsutils ddclient inadyn >/dev/null
have_all

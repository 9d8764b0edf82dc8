#!/usr/bin/env bash
# Installs the Debian packages the project's own Python dependencies need to
# build and run, before pip runs: libfuse3's headers and pkg-config (pyfuse3,
# the `mount` extra, is built from source against them), fuse3 (its
# fusermount3, which mounting as a user and `keep umount` call), and a C
# compiler with the headers of $PYTHON (keep's compiled tree decoder, which
# the tests require; without them keep still installs, in Python alone). Idempotent
# and quick when everything is there; needs root for apt, and says what is
# missing otherwise.
set -euo pipefail

PYTHON=${PYTHON:-python3.11}

have_python_headers() {
    "$PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'
}

have_all() {
    command -v fusermount3 >/dev/null && command -v pkg-config >/dev/null && pkg-config --exists fuse3 \
        && command -v cc >/dev/null && have_python_headers
}

if have_all; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "system-packages: missing packages; as root: apt-get install fuse3 libfuse3-dev pkg-config gcc python3-dev" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends fuse3 libfuse3-dev pkg-config gcc python3-dev >/dev/null
have_all

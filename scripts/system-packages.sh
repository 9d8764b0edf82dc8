#!/usr/bin/env bash
# Installs the Debian packages the project's own Python dependencies need to
# build and run, before pip runs: libfuse3's headers and pkg-config (pyfuse3,
# the `mount` extra, is built from source against them) and fuse3 (its
# fusermount3, which mounting as a user and `keep umount` call). Idempotent
# and quick when everything is there; needs root for apt, and says what is
# missing otherwise.
set -euo pipefail

have_all() {
    command -v fusermount3 >/dev/null && command -v pkg-config >/dev/null && pkg-config --exists fuse3
}

if have_all; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "system-packages: missing packages; as root: apt-get install fuse3 libfuse3-dev pkg-config" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends fuse3 libfuse3-dev pkg-config >/dev/null
have_all

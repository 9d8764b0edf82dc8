#!/bin/bash
# Runs the device's units under a real, running systemd and changes keep.toml
# the way the admin page does; prints what systemd then holds. Used by
# test_systemd.py (run it as root inside `unshare -m --propagation private`).
#
# Nothing here touches the machine: /etc is an overlay whose writes land in
# WORK/etc-upper, /run/systemd a tmpfs (the manager's runtime directory too), and the manager lives only as long as
# this script. The manager is systemd's own binary run as a user manager (this
# machine's PID 1 is not systemd); /run/systemd/system makes `keep schedule
# install` see a running systemd, and /run/systemd/private points its
# `systemctl` calls at this manager, which reads /etc/systemd/system through
# /etc/systemd/user.
#
# usage: user_manager.sh WORK KEEP_EXECUTABLE PYTHON
set -euo pipefail
work=$1 keep=$2 python=$3

mkdir -p "$work/etc-upper" "$work/etc-work" "$work/home"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$work/etc-upper,workdir=$work/etc-work" /etc
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/system /etc/systemd/system /etc/systemd/user /etc/keep
mkdir -m 700 /run/systemd/runtime # not under /tmp, which the units' PrivateTmp hides
mount --bind /etc/systemd/system /etc/systemd/user

export XDG_RUNTIME_DIR=/run/systemd/runtime KEEP_CONFIG=/etc/keep/keep.toml KEEP_HOME=$work/home
/lib/systemd/systemd --user --log-target=kmsg >"$work/manager.log" 2>&1 &
manager=$!
trap 'kill "$manager"; wait "$manager" || true' EXIT
for _ in $(seq 100); do
    [ -S "$XDG_RUNTIME_DIR/systemd/private" ] && break
    sleep 0.1
done
ln -s "$XDG_RUNTIME_DIR/systemd/private" /run/systemd/private

calendar() { systemctl --user show keep-backup.timer -p TimersCalendar --value; }

printf '[backup]\nsources = ["/srv"]\nschedule = "*-*-* 03:30:00"\n' >/etc/keep/keep.toml
"$keep" schedule install >"$work/install.log"
echo "installed: $(calendar)"
echo "path unit: $(systemctl --user is-active keep-schedule.path)"

# Sandboxing this machine's container cannot set up (systemd reports
# 226/NAMESPACE) is switched off for keep-schedule.service by a drop-in, and
# named; so is PrivateTmp when the checkout under test lives in /tmp.
relaxed=()
for option in $(grep -E '^(Private|Protect)[A-Za-z]+=yes$' /etc/systemd/system/keep-schedule.service); do
    if ! systemd-run --user --wait --quiet -p "$option" /bin/true >/dev/null 2>&1; then
        relaxed+=("${option%=yes}=no")
    fi
done
case "$keep" in /tmp/* | /var/tmp/*) relaxed+=("PrivateTmp=no") ;; esac
if [ ${#relaxed[@]} -gt 0 ]; then
    mkdir -p /etc/systemd/system/keep-schedule.service.d
    { echo "[Service]"; printf '%s\n' "${relaxed[@]}"; } >/etc/systemd/system/keep-schedule.service.d/machine.conf
    systemctl --user daemon-reload
fi
echo "relaxed: ${relaxed[*]:-none}"

# What the admin page's settings form does: update_tables, a checked write
# renamed over keep.toml.
changed=$(date +%s.%N)
"$python" -c 'import sys; from pathlib import Path
from keep.client.device.config import update_tables
update_tables(Path(sys.argv[1]), {"backup": {"schedule": "*-*-* 05:10:00"}})' /etc/keep/keep.toml
for _ in $(seq 100); do
    calendar | grep -q '05:10:00' && break
    sleep 0.2
done
echo "after change: $(calendar)"
echo "seconds: $("$python" -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.2f}")' "$changed" "$(date +%s.%N)")"
echo "schedule service: $(systemctl --user show keep-schedule.service -p Result --value)"

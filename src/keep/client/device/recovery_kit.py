"""The printable recovery kit: everything needed to restore after the device
and the password are both gone, in plain text that survives being printed."""

from __future__ import annotations

import datetime

from keep.protocol.keys import MasterKey, RecoveryKey
from keep.protocol.recovery import encode_recovery_key

KIT_MARKER = "Recovery key:"


def recovery_key_from_kit(text: str) -> str:
    """The recovery key lines of a kit file (or the key itself)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(KIT_MARKER):
            rest = line.split(KIT_MARKER, 1)[1].strip()
            return rest + "".join(ln.strip() for ln in lines[i + 1 : i + 3])
    return text.strip()


def recovery_kit(
    server_url: str, account: str, key: RecoveryKey, master: MasterKey, today: datetime.date
) -> str:
    groups = encode_recovery_key(key).split("-")  # "RK1" and 14 groups of 4
    key_text = "-".join(groups[:8]) + "-\n    " + "-".join(groups[8:])
    return f"""KEEP RECOVERY KIT — keep this on paper, somewhere safe and private
=====================================================================

This kit restores your backups if your device is lost AND you have forgotten
your password. Anyone holding it can read your backups. The server operator
cannot reset your password or recover your data: without your password or
this kit, your backups are lost for good.

  Server:       {server_url}
  Account:      {account}
  Recovery key:
    {key_text}
  Key fingerprint: {master.fingerprint()}
  Created:      {today.isoformat()}

To restore on a new machine:
  1. Install Keep.
  2. Run:  keep login --server {server_url} --account {account} --recovery-kit THIS-FILE
     (or type the recovery key when asked).
  3. Check the fingerprint it prints matches the one above.
  4. Run:  keep snapshots
  5. Run:  keep restore latest --target /path/to/restore
"""

"""The one way the device reaches its server and opens its repository — for
the CLI and the admin page alike, so both honour the same TLS settings.

The CA file that verifies an https server is, in this order: the one given
explicitly (`--ca-file`, `$KEEP_CA_FILE`), the one `keep init`/`keep login`
remembered in device.json, and `[server] ca_file` in keep.toml.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from keep.client.device.state import DeviceState
from keep.client.engine.repository import Repository
from keep.client.remote import Remote


@dataclass(frozen=True, slots=True)
class Endpoint:
    ca_file: str | None = None  # --ca-file / $KEEP_CA_FILE
    config_ca_file: str | None = None  # [server] ca_file
    insecure_http: bool = False  # --insecure-http: plain http to another machine

    def remote(self, server_url: str, token: str | None = None, remembered_ca: str | None = None) -> Remote:
        return Remote(
            server_url,
            token,
            ca_file=self.ca_file or remembered_ca or self.config_ca_file,
            allow_insecure_http=self.insecure_http,
        )

    def device_remote(self, state: DeviceState) -> Remote:
        """A connection with this device's credential."""
        return self.remote(state.server_url, state.device_token, state.ca_file)

    @contextmanager
    def repository(self, home: Path) -> Iterator[tuple[DeviceState, Repository]]:
        """This device's state and repository (device credential), cache in `home`."""
        state = DeviceState.load(home)
        with self.device_remote(state) as remote:
            yield state, Repository(remote, state.keys, home / "cache", state.suite)

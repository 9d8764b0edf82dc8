"""keep.client: everything on the device, in five rooms — `engine` (backup,
restore, prune, check), `device` (account, state, settings), `checkin` (DNS
pointer and update check), `admin` (the admin page), `cli` (the `keep`
command) — and `remote`, the one way to speak to keep-server."""

__all__: list[str] = []

"""keep.client: the `keep` CLI, the backup and restore engine, device state."""

__all__: list[str] = []

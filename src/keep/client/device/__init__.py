"""The device's own state: its account and credential (`account`, `state`:
device.json), its settings (`config`: keep.toml), the record of its backups
(`backup_record`), the recovery kit, and the one way to open its repository
(`connection`)."""

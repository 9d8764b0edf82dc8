"""The device's check-in with keep-checkin: the DNS pointer and the signed
update check, each on by default and each switched off in keep.toml or on the
admin page (docs/checkin.md)."""

"""Keep: zero-knowledge, deduplicating, encrypted backups.

Three packages, one direction (docs/architecture.md): `keep.protocol` is pure,
`keep.client` is the device, `keep.server` is the operator's side; client and
server never import each other.
"""

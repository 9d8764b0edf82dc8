"""Named limits of the repository format and protocol.

Owns every size and count bound that a decoder or the server enforces, so a
hostile object or request can never make a component allocate without limit.
"""

from __future__ import annotations

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# Chunker (docs/format.md §6.1: about 256 KiB / 1 MiB / 8 MiB).
CHUNK_MIN = 256 * KiB
CHUNK_AVG = 1 * MiB
CHUNK_MAX = 8 * MiB

# Packs.
PACK_TARGET = 16 * MiB  # a pack is closed once its sealed blobs reach this size
PACK_MAX = 64 * MiB  # no pack the client writes or accepts is larger
PACK_MAX_BLOBS = 100_000  # entries in one table of contents
PACK_MIN_PADDED = 1 * MiB  # smallest padded pack, hides the size of a lone small blob
OPEN_PACKS = 4  # blobs are spread over this many open packs

# Objects in general.
OBJECT_MAX = PACK_MAX  # the server refuses anything larger
METADATA_OBJECT_MAX = 64 * MiB  # decoded index / snapshot / tree plaintext
BLOB_RAW_MAX = CHUNK_MAX  # decompressed size of a data blob
TREE_RAW_MAX = 64 * MiB  # decompressed size of one tree blob
TREE_MAX_ENTRIES = 1_000_000
XATTR_MAX_TOTAL = 1 * MiB

# Snapshots and names.
NAME_MAX = 4096  # bytes in one path component we accept from a tree
ACCOUNT_NAME_MAX = 64
DEVICE_NAME_MAX = 128
TAG_MAX = 256
SNAPSHOT_PATHS_MAX = 10_000

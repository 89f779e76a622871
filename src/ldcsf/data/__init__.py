"""Data sets as manifests: reading, importing, splitting, transforms and downloads."""

from .manifest import RESERVED_COLUMNS, Manifest, read_manifest, write_manifest

__all__ = ["RESERVED_COLUMNS", "Manifest", "read_manifest", "write_manifest"]

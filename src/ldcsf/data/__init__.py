"""Data sets as manifests: reading, importing, splitting, transforms and downloads.

Torch-dependent parts (`dataset`, `transforms`) are imported from their modules directly.
"""

from .importers import import_class_folders, import_filename_labels
from .manifest import RESERVED_COLUMNS, Manifest, read_manifest, write_manifest
from .mapping import read_mapping, shipped_mappings
from .splits import assign_splits, check_groups_disjoint

__all__ = [
    "RESERVED_COLUMNS",
    "Manifest",
    "assign_splits",
    "check_groups_disjoint",
    "import_class_folders",
    "import_filename_labels",
    "read_manifest",
    "read_mapping",
    "shipped_mappings",
    "write_manifest",
]

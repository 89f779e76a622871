"""The project's labels, each stated once: name, display name, colour, TSR role and synonyms.

Every other place reads them from here: the model's default outputs (`models.base`), the
manifests and importers (`data`), the synthetic slides, the TSR and hotspot (`analysis`), the
colours of pictures, GeoJSON classes and the viewer (`export.colors`). A source data set's own
classes are mapped to these names by its mapping table (`data/mappings/*.csv`), or, where a
source spells a label differently ("normal", "tumour"), by the synonyms below.

This module imports nothing of ldcsf and no third-party package, so the lightest packages read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

#: What a label counts as in the tumour-to-stroma ratio.
TsrRole = Literal["stroma", "tumor", "neither"]
TSR_ROLES: tuple[str, ...] = ("stroma", "tumor", "neither")


@dataclass(frozen=True)
class Label:
    """One label: `name` is how identifiers, manifest columns and JSON keys spell it."""

    name: str
    #: How prose, legends and reports may write it.
    display: str
    #: RGB 0-255 in pictures, the legend, GeoJSON (QuPath) classes and the viewer.
    color: tuple[int, int, int]
    tsr_role: TsrRole = "neither"
    #: Other spellings sources use for it; read by `resolve_label` (case and separators ignored).
    synonyms: tuple[str, ...] = ()


#: The labels, in the order of the paper's result table (the model's default outputs).
#: Colours are chosen to stand out on H&E rather than to imitate it: an overlay in eosin pink or
#: haematoxylin purple vanishes into the tissue beneath. Green (stroma) is the complement of eosin,
#: yellow (tumour) of haematoxylin; necrosis black, non-tumour sky blue. At the overlay's 45 %
#: opacity each differs from both stains by a CIEDE2000 distance of 17 or more (the old eosin-pink
#: stroma: 6); see tests/test_export_colors.py.
LABELS: tuple[Label, ...] = (
    Label("stroma", "stroma", (0, 170, 70), "stroma", ("tumour stroma", "tumor stroma")),
    Label("necrosis", "necrosis", (0, 0, 0), "neither", ("necrotic", "necrotic debris")),
    Label("non_tumor", "non-tumour", (0, 140, 255), "neither", ("normal", "non-tumour")),
    Label("tumor", "tumour", (255, 200, 0), "tumor", ("tumour",)),
)


def _key(spelling: str) -> str:
    """A spelling compared without case and separators: 'Non-Tumour', 'non_tumour' -> 'non tumour'."""
    return " ".join(spelling.lower().replace("_", " ").replace("-", " ").split())


def check_labels(labels: Iterable[Label] | None = None) -> None:
    """ValueError naming the clash when two labels share a name or synonym, or a TSR role is taken twice."""
    seen: dict[str, str] = {}
    roles: dict[str, str] = {}
    for label in LABELS if labels is None else labels:
        if label.tsr_role not in TSR_ROLES:
            raise ValueError(f"label {label.name!r}: TSR role {label.tsr_role!r} is not one of {', '.join(TSR_ROLES)}")
        if label.tsr_role != "neither":
            if label.tsr_role in roles:
                raise ValueError(f"labels {roles[label.tsr_role]!r} and {label.name!r} both have the TSR role {label.tsr_role!r}")
            roles[label.tsr_role] = label.name
        for spelling in (label.name, *label.synonyms):
            key = _key(spelling)
            if key in seen and seen[key] != label.name:
                raise ValueError(f"labels {seen[key]!r} and {label.name!r} both answer to {spelling!r}")
            seen[key] = label.name
    for role in ("stroma", "tumor"):
        if role not in roles:
            raise ValueError(f"no label has the TSR role {role!r}")


# Read at call time (not copied at import) so that a test can swap LABELS for one with another label.
def default_labels() -> tuple[str, ...]:
    """The model's default outputs and a manifest's default label columns, in order."""
    return tuple(label.name for label in LABELS)


def get_label(name: str) -> Label | None:
    """The label called `name` (its exact name), or None for a name the project does not define."""
    return next((label for label in LABELS if label.name == name), None)


def label_color(name: str) -> tuple[int, int, int] | None:
    """The fixed colour of a known label; None for another name (callers pick a fallback)."""
    label = get_label(name)
    return label.color if label is not None else None


def display_name(name: str) -> str:
    """How prose writes a label ('non-tumour'); an unknown name as given."""
    label = get_label(name)
    return label.display if label is not None else name


def tsr_role(name: str) -> str:
    """'stroma', 'tumor' or 'neither' (also for a name the project does not define)."""
    label = get_label(name)
    return label.tsr_role if label is not None else "neither"


def tsr_label(role: str) -> str:
    """The name of the label whose TSR role is `role` ('stroma' or 'tumor')."""
    for label in LABELS:
        if label.tsr_role == role:
            return label.name
    raise ValueError(f"no label has the TSR role {role!r} (roles: {', '.join(TSR_ROLES)})")


def resolve_label(spelling: str) -> str:
    """The label a name or synonym stands for ('normal' -> 'non_tumor', 'Tumour' -> 'tumor').

    ValueError naming the spelling and the known labels when it is none of them.
    """
    key = _key(spelling)
    for label in LABELS:
        if key in {_key(s) for s in (label.name, *label.synonyms)}:
            return label.name
    raise ValueError(f"unknown label {spelling!r} (labels: {', '.join(default_labels())}; or one of their synonyms)")


check_labels()

#: The labels the tumour-to-stroma ratio is computed from (defaults of `analysis` and the slide checks).
STROMA_LABEL: str = tsr_label("stroma")
TUMOR_LABEL: str = tsr_label("tumor")

"""The data sources the project knows, each declared once: where its images are, how they are
read, which mapping gives the labels, how many images to expect, its licence and citation.

`SHARED_SOURCES` make up the pan-cancer set (`data.pancancer`), read from the shared data
folder; `data.download.DATASETS` are the public sets fetched from the web. `ldcsf data sources`
lists both. Adding a source is one declaration here (plus its mapping table in `mappings/`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: How a shared source's images carry their labels (read by `data.pancancer.load_source`).
LAYOUTS = {
    "class_in_name": "source class in the file name (or one class for the folder), mapped by a table",
    "class_folders": "one sub-folder per source class, mapped by a table",
    "pixel_masks": "images cut into tiles labelled from their pixel masks",
    "labels_in_name": "a label list in the file name, e.g. x-[1, 0, 1].png",
    "gland_masks": "binary gland masks made class masks by grade and a tissue rule (data.glas), then tiled",
}


@dataclass(frozen=True)
class SharedSource:
    """One source of the pan-cancer set, read in place from the shared data folder."""

    name: str  # the manifest's `dataset` value
    folder: str  # relative to the shared data folder
    layout: str  # a key of LAYOUTS
    expected_images: int  # source images the folder holds (for pixel_masks: images with a mask)
    organ: str | None  # None: the source class names it (LC25000: lung_aca, colon_n, ...)
    licence: str
    citation: str
    mapping: str | None = None  # shipped mapping table (class_in_name, class_folders)
    class_pattern: str | None = None  # regex on file names giving the source class
    source_class: str | None = None  # one class for the whole folder (instead of class_pattern)
    group_pattern: str | None = None  # regex on file names giving the patient/slide id
    group_prefix: str | None = None  # group ids are "<group_prefix><id>"; default "<name>:"
    label_order: tuple[str, ...] = ()  # labels_in_name: the labels the lists give, in order
    in_default: bool = True  # False: `ldcsf data pancancer` adds it only when asked (--add-source)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"source {self.name}: unknown layout {self.layout!r} (known: {', '.join(LAYOUTS)})")


#: In the order the pan-cancer builder concatenates them (the seeded split depends on it).
SHARED_SOURCES: tuple[SharedSource, ...] = (
    SharedSource(
        name="nct_crc", folder="nct_crc", layout="class_in_name", expected_images=42, organ="colorectal",
        mapping="nct_crc_he_100k", class_pattern=r"^([A-Z]+)-",
        licence="CC-BY-4.0", citation="Kather et al. 2019, PLoS Med 16:e1002730, doi:10.5281/zenodo.1214456",
    ),
    SharedSource(
        # No patient id in the names (OSCC_100x_12.jpg): each image is its own group. The source's
        # own train/test folders are ignored (the images are regrouped and split again).
        name="oral", folder="oral", layout="class_folders", expected_images=1224, organ="oral",
        mapping="oral_oscc", group_prefix="oral:",
        licence="CC0", citation="Kaggle: Histopathologic Oral Cancer Detection",
    ),
    SharedSource(
        name="osteosarcoma", folder="osteosarcoma", layout="class_in_name", expected_images=60, organ="bone",
        mapping="osteosarcoma", class_pattern=r"^(.+?)___", group_pattern=r"___(?P<group>Case-\d+|P\d+)-",
        licence="CC-BY-3.0", citation="Leavey et al. 2019, TCIA, doi:10.7937/tcia.2019.bvhjhdas",
    ),
    SharedSource(
        name="lc25000", folder="lc25000", layout="class_in_name", expected_images=100, organ=None,
        mapping="lc25000", class_pattern=r"^(.+?)___", group_pattern=r"___(?P<group>[a-z]+\d+)_",
        licence="citation requested", citation="Borkowski et al. 2019, arXiv:1912.12142",
    ),
    SharedSource(
        name="liver_chol", folder="liver_chol", layout="class_in_name", expected_images=6, organ="liver",
        mapping="liver_chol", source_class="CHOL", group_pattern=r"_(?P<group>\d+)\.\w+$",
        licence="TCGA open access", citation="TCGA-CHOL (The Cancer Genome Atlas)",
    ),
    SharedSource(
        # validation/{img,mask,background-mask}/: 31 images have a mask (9 masks lack their image)
        name="wsss4luad_masks", folder="wsss4luad/validation", layout="pixel_masks", expected_images=31,
        organ="lung", source_class="pixel-mask", group_prefix="wsss4luad:val-",
        licence="research use", citation="Han et al. 2022, WSSS4LUAD challenge, arXiv:2204.06455",
    ),
    SharedSource(
        # the file names list [tumour, stroma, normal]
        name="wsss4luad_names", folder="wsss4luad/training_examples", layout="labels_in_name", expected_images=4,
        organ="lung", source_class="image-level", group_pattern=r"^(?P<group>\d+)-", group_prefix="wsss4luad:slide-",
        label_order=("tumor", "stroma", "non_tumor"),
        licence="research use", citation="Han et al. 2022, WSSS4LUAD challenge, arXiv:2204.06455",
    ),
    SharedSource(
        # Colon, another lab (UK). Not in the default set: the recommended recipe's numbers were
        # measured without it, and it is the second masked source a held-out test needs.
        name="glas", folder="glas", layout="gland_masks", expected_images=165, organ="colorectal",
        source_class="pixel-mask", group_prefix="glas:patient-", in_default=False,
        licence="research use only, no commercial use",
        citation="Sirinukunwattana et al. 2017, Med Image Anal 35:489, doi:10.1016/j.media.2016.08.008; "
                 "Sirinukunwattana et al. 2015, IEEE TMI, doi:10.1109/TMI.2015.2433900",
    ),
)

#: The sources `build_pancancer` uses unless told otherwise.
DEFAULT_SOURCES: tuple[SharedSource, ...] = tuple(s for s in SHARED_SOURCES if s.in_default)


def shared_source(name: str) -> SharedSource:
    """The declared source called `name`; an error lists the known ones."""
    for source in SHARED_SOURCES:
        if source.name == name:
            return source
    raise ValueError(f"unknown shared source {name!r} (known: {', '.join(s.name for s in SHARED_SOURCES)})")


def check_count(name: str, where: object, found: int, expected: int | None) -> None:
    """Log a warning naming the source when it holds another number of images than declared.

    A warning, not an error: a partial copy of a source still builds, but the person reading the
    log learns that the numbers will not match the documented ones.
    """
    if expected is None or found == expected:
        return
    log.warning("%s: %d images in %s, expected %d (%s); counts and splits will differ from the documented ones",
                name, found, where, expected, "some are missing" if found < expected else "more than the source has")


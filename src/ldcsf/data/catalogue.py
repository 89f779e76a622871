"""One table of every known data source, shared and downloadable (`ldcsf data sources`).

It lives apart from `sources.py` because it reads both declarations: `download` uses
`sources.check_count`, so `sources` cannot import `download` back.
"""

from __future__ import annotations

from .download import DATASETS
from .sources import SHARED_SOURCES


def source_rows() -> list[dict[str, object]]:
    """One row per known source (shared, then downloadable), for `ldcsf data sources`."""
    rows: list[dict[str, object]] = [
        {"source": s.name, "from": f"shared: {s.folder}/", "images": s.expected_images,
         "organ": s.organ or "(per class)", "mapping": s.mapping or ("pixel masks" if s.layout == "pixel_masks"
                                                                       else "names: " + ",".join(s.label_order)),
         "licence": s.licence, "citation": s.citation}
        for s in SHARED_SOURCES
    ]
    rows += [{"source": d.name, "from": f"download: {d.filename}", "images": d.expected_images,
              "organ": d.organ, "mapping": d.mapping, "licence": d.licence, "citation": d.citation}
             for d in DATASETS.values()]
    return rows

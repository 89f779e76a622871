"""The procedural H&E generator: layouts with known composition, rendering, training set, slide."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ldcsf.data.manifest import read_manifest
from ldcsf.synthetic import (
    class_pixel_counts,
    make_layout,
    make_slide,
    make_training_set,
    render_he,
    tissue_fractions,
)
from ldcsf.synthetic.layout import BACKGROUND, NECROSIS, NORMAL, STROMA, TUMOR
from ldcsf.synthetic.render import E_VECTOR, H_VECTOR


@pytest.mark.parametrize("stroma,necrosis,normal", [(0.4, 0.05, 0.15), (0.7, 0.0, 0.0), (0.2, 0.1, 0.3)])
def test_layout_matches_requested_composition(stroma, necrosis, normal):
    layout = make_layout(384, 512, seed=7, mpp=1.0, stroma_fraction=stroma, necrosis_fraction=necrosis,
                         normal_fraction=normal, tissue_fraction=0.7)
    fractions = tissue_fractions(layout)
    assert fractions["stroma"] == pytest.approx(stroma, abs=0.01)
    assert fractions["necrosis"] == pytest.approx(necrosis, abs=0.01)
    assert fractions["normal"] == pytest.approx(normal, abs=0.01)
    assert fractions["tumor"] == pytest.approx(1 - stroma - necrosis - normal, abs=0.01)
    assert (layout != BACKGROUND).mean() == pytest.approx(0.7, abs=0.01)


def test_necrosis_lies_inside_tumor_not_at_its_edge():
    layout = make_layout(512, 512, seed=3, mpp=1.0, stroma_fraction=0.3, necrosis_fraction=0.05, normal_fraction=0.0)
    necrosis = layout == NECROSIS
    grown = np.zeros_like(necrosis)
    grown[1:-1, 1:-1] = necrosis[:-2, 1:-1] | necrosis[2:, 1:-1] | necrosis[1:-1, :-2] | necrosis[1:-1, 2:]
    neighbours = layout[grown & ~necrosis]
    # Necrosis borders tumour, almost never stroma directly.
    assert (neighbours == TUMOR).mean() > 0.9


def test_bad_composition_is_one_clear_error():
    with pytest.raises(ValueError, match="must not exceed 1"):
        make_layout(64, 64, stroma_fraction=0.8, normal_fraction=0.3)


def test_rendering_is_deterministic_per_seed_and_differs_across_seeds():
    layout = make_layout(128, 128, seed=1, mpp=1.0)
    a, b, c = render_he(layout, seed=5, mpp=1.0), render_he(layout, seed=5, mpp=1.0), render_he(layout, seed=6, mpp=1.0)
    assert a.shape == (128, 128, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 5


def _stain_density(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel H and E amounts by colour deconvolution with the generator's base stain vectors."""
    od = -np.log(np.clip(rgb.astype(np.float64), 1, 255) / 255.0)
    basis = np.stack([H_VECTOR / np.linalg.norm(H_VECTOR), E_VECTOR / np.linalg.norm(E_VECTOR)], axis=1)
    amounts, *_ = np.linalg.lstsq(basis, od.reshape(-1, 3).T, rcond=None)
    return amounts[0].reshape(rgb.shape[:2]), amounts[1].reshape(rgb.shape[:2])


def test_tissue_classes_are_separable_by_stain():
    layout = make_layout(512, 512, seed=2, mpp=1.0, stroma_fraction=0.35, necrosis_fraction=0.1, normal_fraction=0.2)
    h, e = _stain_density(render_he(layout, seed=2, mpp=1.0))
    mean_h = {c: h[layout == c].mean() for c in (BACKGROUND, STROMA, TUMOR, NECROSIS, NORMAL)}
    mean_e = {c: e[layout == c].mean() for c in (BACKGROUND, STROMA, TUMOR, NECROSIS, NORMAL)}
    # Crowded hyperchromatic nuclei: most haematoxylin in tumour.
    assert mean_h[TUMOR] > 1.5 * max(mean_h[STROMA], mean_h[NECROSIS], mean_h[NORMAL])
    # Stroma and necrosis are eosin-dominated; background is nearly unstained.
    assert mean_e[STROMA] > mean_h[STROMA] and mean_e[NECROSIS] > mean_h[NECROSIS]
    assert mean_h[BACKGROUND] < 0.1 and mean_e[BACKGROUND] < 0.1
    assert min(mean_e[STROMA], mean_e[NECROSIS], mean_e[NORMAL]) > 3 * mean_e[BACKGROUND]


def test_nuclei_have_the_same_physical_size_at_any_resolution():
    # A tumour-only field at 0.5 and 1.0 µm/px: dark (nuclear) area fraction should agree.
    fractions = []
    for mpp, size in ((0.5, 512), (1.0, 256)):
        layout = make_layout(size, size, seed=4, mpp=mpp, stroma_fraction=0.0, necrosis_fraction=0.0,
                             normal_fraction=0.0, tissue_fraction=1.0)
        h, _ = _stain_density(render_he(layout, seed=4, mpp=mpp))
        fractions.append((h > 0.8).mean())
    assert fractions[0] == pytest.approx(fractions[1], abs=0.08)


def test_training_set_labels_agree_with_saved_layout(tmp_path):
    manifest_path = make_training_set(tmp_path / "set", n_tiles=30, tile_size=64, mpp=2.0, seed=1, progress=False)
    manifest = read_manifest(manifest_path)
    frame = pd.read_csv(manifest_path)
    assert len(manifest) == 30 and manifest.labels == ["stroma", "necrosis", "non_tumor", "tumor"]
    assert frame["group"].nunique() >= 3
    assert set(frame["split"]) <= {"train", "val", "test"} and (frame.groupby("group")["split"].nunique() == 1).all()
    label_of = {"stroma": STROMA, "necrosis": NECROSIS, "non_tumor": NORMAL, "tumor": TUMOR}
    for row in frame.itertuples():
        crop = np.asarray(Image.open(manifest_path.parent / row.mask))
        assert np.asarray(Image.open(manifest_path.parent / row.path)).shape == (64, 64, 3)
        assert (crop == BACKGROUND).mean() <= 0.5
        for label, cls in label_of.items():
            fraction = (crop == cls).mean()
            assert getattr(row, label) == int(fraction >= 0.1)
    # Tiles are real crops of the case layout saved beside them (the colour picture) at x, y.
    assert (manifest_path.parent / "layouts" / f"{frame['group'][0]}.png").is_file()
    # A second call with the same settings reuses the set instead of regenerating it.
    before = manifest_path.stat().st_mtime_ns
    assert make_training_set(tmp_path / "set", n_tiles=30, tile_size=64, mpp=2.0, seed=1, progress=False) == manifest_path
    assert manifest_path.stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="other settings"):
        make_training_set(tmp_path / "set", n_tiles=31, tile_size=64, mpp=2.0, seed=1, progress=False)


def test_slide_opens_with_its_mpp_and_true_tsr_is_the_layout_counts(tmp_path):
    openslide = pytest.importorskip("openslide")
    slide = make_slide(tmp_path / "s.tiff", size=(640, 512), mpp=0.5, seed=2, stroma_fraction=0.45)
    with openslide.OpenSlide(str(slide.path)) as osr:
        assert osr.dimensions == (640, 512)
        assert float(osr.properties["openslide.mpp-x"]) == pytest.approx(0.5, rel=1e-3)
        assert osr.level_count >= 2
    layout = np.asarray(Image.open(slide.layout_path))
    assert np.array_equal(layout, slide.layout)
    counts = class_pixel_counts(layout)
    assert slide.class_pixels == counts
    assert slide.tsr == pytest.approx(counts["tumor"] / counts["stroma"])
    assert slide.stroma_fraction == pytest.approx(counts["stroma"] / (counts["stroma"] + counts["tumor"]))
    assert slide.stroma_fraction == pytest.approx(0.45, abs=0.01)
    truth = json.loads((tmp_path / "s.truth.json").read_text())
    assert truth["tsr"] == pytest.approx(slide.tsr)

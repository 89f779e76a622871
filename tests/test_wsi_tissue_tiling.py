"""Tissue detection on real H&E, and the tile grid's geometry and areas."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ldcsf.wsi import TileSpec, detect_tissue, open_slide, tile_grid
from ldcsf.wsi.tissue import TissueMask, box_fractions, saturation_value


def test_tissue_on_the_cmu_slide_is_stained_and_background_is_not(shared_data):
    with open_slide(shared_data / "slides/CMU-1-Small-Region.svs") as slide:
        thumb, downsample = slide.thumbnail(1024)
        tissue = detect_tissue(thumb, downsample, slide.mpp)
    rgb = np.asarray(thumb).astype(float)
    assert tissue.mask.shape == (thumb.height, thumb.width)
    assert 0.2 < tissue.fraction < 0.6  # a strip of skin across a mostly empty glass
    # The left quarter of this slide is glass; tissue pixels are darker than background ones.
    assert tissue.mask[:, : thumb.width // 4].mean() < 0.05
    assert rgb[tissue.mask].mean() < rgb[~tissue.mask].mean() - 50
    assert rgb[~tissue.mask].mean() > 220


def test_tissue_found_where_it_was_placed_on_glass(shared_data):
    rng = np.random.default_rng(0)
    glass = np.clip(rng.normal(242, 3, (300, 400, 3)), 0, 255).astype(np.uint8)  # slightly noisy glass
    tile = np.asarray(Image.open(shared_data / "nct_crc/TUM-TCGA-DRHQMTQA.png").convert("RGB"))
    canvas = glass.copy()
    canvas[40:40 + 224, 120:120 + 224] = tile
    truth = np.zeros(canvas.shape[:2], bool)
    truth[40:264, 120:344] = True
    # As a thumbnail at 8 µm/px: the tile stands for 1.8 mm of tumour on glass.
    found = detect_tissue(Image.fromarray(canvas), downsample=16.0, slide_mpp=0.5).mask
    assert (found & ~truth).sum() == 0  # nothing on the glass
    assert (found & truth).sum() / truth.sum() > 0.8  # most of the tile (it has a few white lumens)
    assert detect_tissue(Image.fromarray(glass), downsample=16.0, slide_mpp=0.5).fraction == 0.0


def test_a_picture_that_is_all_tissue_is_all_tissue(shared_data):
    """A region cut from a colon section with no glass around it (GlaS train_24, its lower right 724 x 362 px):
    Otsu would part pale stroma from the rest, and after the small pieces were dropped no tissue was
    left ("no tissue found"); the threshold falls back to the floor when its lower class is not glass."""
    rgb = np.asarray(Image.open(shared_data / "glas/images/train_24.jpg").convert("RGB"))[-362:, -724:]
    saturation, _ = saturation_value(rgb)
    assert (saturation < 0.07).mean() < 0.05  # no glass: a few small lumens at most
    tissue = detect_tissue(Image.fromarray(rgb), downsample=1.0, slide_mpp=0.62)
    assert tissue.fraction > 0.95
    # The same region on glass: the glass is still not tissue, the region still is.
    canvas = np.full((362 + 200, 724 + 200, 3), 242, np.uint8)
    canvas[100:462, 100:824] = rgb
    found = detect_tissue(Image.fromarray(canvas), downsample=1.0, slide_mpp=0.62).mask
    assert found[:90].mean() == 0 and found[:, :90].mean() == 0
    assert found[100:462, 100:824].mean() > 0.9


def test_saturation_and_value_match_skimage_hsv():
    from skimage.color import rgb2hsv

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(64, 48, 3), dtype=np.uint8)
    rgb[0, :3] = [[0, 0, 0], [255, 255, 255], [7, 7, 7]]  # black and greys: saturation 0
    expected = rgb2hsv(rgb)
    for image in (rgb, rgb / 255.0):
        saturation, value = saturation_value(image)
        np.testing.assert_allclose(saturation, expected[..., 1], atol=1e-6)
        np.testing.assert_allclose(value, expected[..., 2], atol=1e-6)


def test_box_fractions_count_off_slide_as_glass():
    mask = np.zeros((10, 10), bool)
    mask[:5, :] = True  # top half tissue
    fractions = box_fractions(mask, 4.0, x=[0, 0, 0, 32], y=[0, 8, 20, 0], width=[20, 40, 8, 16], height=[20, 8, 8, 8])
    # whole-tissue box; half-in box (rows 2-3, tissue rows 0-4); glass; a box half off the right edge
    np.testing.assert_allclose(fractions, [1.0, 1.0, 0.0, 0.5])


def test_tile_size_follows_the_physical_resolution():
    spec = TileSpec.for_model(input_size=224, model_mpp=0.5, slide_mpp=0.25)
    assert (spec.tile_size, spec.stride) == (448, 448)
    overlapping = TileSpec.for_model(input_size=224, model_mpp=0.5, slide_mpp=0.25, overlap=0.5)
    assert (overlapping.tile_size, overlapping.stride) == (448, 224)
    with pytest.raises(ValueError, match="overlap"):
        TileSpec.for_model(224, 0.5, 0.25, overlap=1.0)


def test_grid_keeps_tissue_tiles_and_never_double_counts_area():
    mask = np.zeros((100, 100), bool)
    mask[20:60, 10:90] = True  # 0.32 of a 1000 x 1000 px slide at 10x downsample
    tissue = TissueMask(mask, downsample=10.0)
    slide_mpp = 0.5
    true_area_mm2 = mask.sum() * (10.0 * slide_mpp) ** 2 / 1e6
    for overlap in (0.0, 0.5):
        spec = TileSpec.for_model(input_size=100, model_mpp=0.5, slide_mpp=slide_mpp, overlap=overlap)
        tiles = tile_grid((1000, 1000), spec, tissue, min_tissue=0.0)
        assert list(tiles.columns) == ["tile_id", "row", "col", "x", "y", "width", "height",
                                       "tissue_fraction", "tissue_area_mm2"]
        assert (tiles["width"] == 100).all() and (tiles["x"] == tiles["col"] * spec.stride).all()
        assert tiles["tissue_area_mm2"].sum() == pytest.approx(true_area_mm2, rel=0.02)
    strict = tile_grid((1000, 1000), TileSpec.for_model(100, 0.5, slide_mpp), tissue, min_tissue=0.99)
    assert len(strict) == 4 * 8 and (strict["tissue_fraction"] >= 0.99).all()
    assert strict["tile_id"].tolist() == list(range(len(strict)))

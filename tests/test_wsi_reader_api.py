"""The readers' interface: OpenSlide's `read_region`, reads at a µm/px, and the resizer seam.

On the real CMU slide (Aperio SVS, one level) and on a synthetic pyramidal slide (four levels).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import openslide
import pytest
from PIL import Image

from ldcsf.wholeslide.tile_dataset import TileDataset, resize_as_training
from ldcsf.synthetic.slide import make_slide
from ldcsf.wsi import TileSpec, open_slide, pillow_resize, tile_grid

CMU = "slides/CMU-1-Small-Region.svs"
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """A 1536 x 1024 px synthetic H&E slide at 0.5 µm/px, pyramid levels 1, 2, 4, 8."""
    return make_slide(tmp_path_factory.mktemp("slide") / "syn.tif", size=(1536, 1024), mpp=0.5, seed=1).path


def openslide_rgb(native: openslide.OpenSlide, location, level, size) -> np.ndarray:
    """OpenSlide's own read, with what it leaves transparent shown as glass (white)."""
    rgba = np.asarray(native.read_region(location, level, size))
    rgb = rgba[..., :3].copy()
    rgb[rgba[..., 3] == 0] = 255
    return rgb


def test_read_region_is_openslides_on_the_cmu_slide(shared_data):
    path = shared_data / CMU
    native = openslide.OpenSlide(str(path))
    with open_slide(path) as slide:
        for location, size in [((1000, 1500), (120, 80)), ((0, 0), (300, 200)), ((2100, 2900), (200, 100)),
                               ((-30, -40), (90, 70))]:
            got = slide.read_region(location, 0, size)
            assert got.shape == (size[1], size[0], 3) and got.dtype == np.uint8
            np.testing.assert_array_equal(got, openslide_rgb(native, location, 0, size))


def test_read_region_is_openslides_at_every_level_of_a_pyramid(synthetic):
    native = openslide.OpenSlide(str(synthetic))
    with open_slide(synthetic) as slide:
        assert slide.level_downsamples == native.level_downsamples == (1.0, 2.0, 4.0, 8.0)
        for level, downsample in enumerate(slide.level_downsamples):
            d = int(downsample)
            # Locations on the level's pixel grid, inside and overhanging the slide.
            for location in [(0, 0), (40 * d, 24 * d), ((1536 // d - 30) * d, (1024 // d - 20) * d), (-16 * d, 8 * d)]:
                np.testing.assert_array_equal(slide.read_region(location, level, (70, 50)),
                                              openslide_rgb(native, location, level, (70, 50)))
        # Between a level's pixels OpenSlide blends neighbours; the readers take the nearest pixel.
        off_grid = slide.read_region((101, 37), 2, (64, 50)).astype(int)
        assert np.abs(off_grid - openslide_rgb(native, (101, 37), 2, (64, 50))).mean() < 1.0


@pytest.mark.parametrize("mpp", [1.0, 0.8])
def test_read_at_mpp_is_a_level_read_resized_on_the_cmu_slide(shared_data, mpp):
    native = openslide.OpenSlide(str(shared_data / CMU))
    with open_slide(shared_data / CMU) as slide:
        extent = slide.level0_extent(224, mpp)
        assert extent == (round(224 * mpp / 0.499),) * 2  # one level only: read at level 0, then resized
        got = slide.read_at_mpp((700, 1200), 224, mpp)
        level_read = openslide_rgb(native, (700, 1200), 0, extent)
        np.testing.assert_array_equal(got, pillow_resize(level_read, 224, 224, "bilinear"))
        assert got.shape == (224, 224, 3) and got.std() > 5  # tissue


def test_read_at_mpp_picks_the_level_and_resizes_on_a_pyramid(synthetic):
    native = openslide.OpenSlide(str(synthetic))
    with open_slide(synthetic) as slide:
        # 2.0 µm/px on a 0.5 µm/px slide is level 2 itself: nothing to resize.
        np.testing.assert_array_equal(slide.read_at_mpp((400, 200), (96, 64), 2.0),
                                      openslide_rgb(native, (400, 200), 2, (96, 64)))
        # 1.5 µm/px lies between levels 1 (1.0) and 2 (2.0): read at level 1, the sharper, then shrunk.
        assert slide.level0_extent((96, 64), 1.5) == (288, 192)
        expected = pillow_resize(openslide_rgb(native, (400, 200), 1, (144, 96)), 96, 64, "bicubic")
        np.testing.assert_array_equal(slide.read_at_mpp((400, 200), (96, 64), 1.5, "bicubic"), expected)


def test_tile_dataset_reads_grid_tiles_as_read_at_mpp(synthetic):
    """The tile grid and the reader use one µm/px rule, so a tile row read by its box is the read at µm/px."""
    input_size, model_mpp = 64, 1.5
    with open_slide(synthetic) as slide:
        spec = TileSpec.for_model(input_size, model_mpp, slide.require_mpp())
        tiles = tile_grid(slide.dimensions, spec).iloc[::7]
        boxes = tiles[["x", "y", "width", "height"]].to_numpy()
        data = TileDataset(synthetic, boxes, tiles.index, input_size, interpolation="bicubic")
        try:
            slide.resizer = resize_as_training  # the dataset's resizer: torch's kernel
            for i, (x, y, *_) in enumerate(boxes):
                tile = data.read_tile(i)
                np.testing.assert_array_equal(tile, slide.read_at_mpp((x, y), input_size, model_mpp, "bicubic"))
                # Pillow, the readers' own resizer, is the same resampling within two grey levels.
                del slide.resizer
                pillow = slide.read_at_mpp((x, y), input_size, model_mpp, "bicubic").astype(int)
                slide.resizer = resize_as_training
                assert np.abs(pillow - tile).max() <= 2 and np.abs(pillow - tile).mean() < 0.1
        finally:
            data.close()


def test_pillow_and_torch_resizers_agree_on_real_tissue(shared_data):
    with open_slide(shared_data / CMU) as slide:
        region = slide.read_region((600, 900), 0, (449, 449))
    for interpolation, tolerance in [("bilinear", 1), ("bicubic", 2)]:
        for size in [(224, 224), (128, 96), (300, 300)]:
            torch_way = resize_as_training(region, *size, interpolation).astype(int)
            pillow_way = pillow_resize(region, *size, interpolation).astype(int)
            assert pillow_way.shape == torch_way.shape == (size[1], size[0], 3)
            assert np.abs(pillow_way - torch_way).max() <= tolerance, (interpolation, size)


def test_the_old_orders_still_work_with_a_deprecation_warning(synthetic):
    with open_slide(synthetic) as slide:
        with pytest.warns(DeprecationWarning, match=r"read_region\(\(x, y\), level, \(w, h\)\)"):
            old = slide.read_region(200, 100, 60, 40, 1)
        np.testing.assert_array_equal(old, slide.read_region((200, 100), 1, (60, 40)))
        with pytest.warns(DeprecationWarning):
            old_level0 = slide.read_region(200, 100, 60, 40)
        np.testing.assert_array_equal(old_level0, slide.read_region((200, 100), 0, (60, 40)))
        with pytest.warns(DeprecationWarning, match="read_box"):
            rect = slide.read_rect(200, 100, 256, 256, 64)
        np.testing.assert_array_equal(rect, slide.read_box((200, 100, 256, 256), 64))
        with pytest.raises(TypeError, match="takes 3 arguments"):
            slide.read_region((200, 100), 0, (60, 40), 1)


def test_reads_at_mpp_need_the_slides_mpp(tmp_path):
    path = tmp_path / "no_mpp.png"
    Image.fromarray(np.full((256, 256, 3), 200, np.uint8)).save(path)  # no pHYs: no µm/px
    with open_slide(path) as slide:
        assert slide.mpp is None
        with pytest.raises(ValueError, match=r"no_mpp\.png: no microns-per-pixel.*--mpp"):
            slide.read_at_mpp((0, 0), 64, 1.0)
    with open_slide(path, mpp=0.5) as slide:
        assert slide.read_at_mpp((0, 0), 64, 1.0).shape == (64, 64, 3)
        with pytest.raises(ValueError, match="must be positive"):
            slide.level0_extent(64, 0.0)


def test_the_reader_layer_does_not_import_torch(synthetic):
    code = (
        "import sys\n"
        "from ldcsf.wsi import open_slide\n"
        f"with open_slide({str(synthetic)!r}) as s:\n"
        "    assert s.read_at_mpp((10, 10), 50, 1.3).shape == (50, 50, 3)\n"
        "    s.thumbnail(256)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]

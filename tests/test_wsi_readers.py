"""Slide readers and the pyramidal TIFF writer, on a real SVS slide and on real H&E tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile
from PIL import Image

from ldcsf.wsi import TileSpec, open_slide, tile_grid, write_pyramidal_tiff
from ldcsf.wsi.readers import OpenSlideReader, PillowReader, TiffFileReader

CMU = "slides/CMU-1-Small-Region.svs"
STROMA = ["STR-AACRYYNQ.tif", "STR-TCGA-HGDYLEWM.png"]
TUMOR = ["TUM-AACHEHDV.tif", "TUM-TCGA-DRHQMTQA.png"]


def chessboard(shared_data: Path, n: int = 4) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    """An n x n chessboard of real 224 px stroma/tumour tiles (0.5 µm/px) and the tile of each cell."""
    stroma = [np.asarray(Image.open(shared_data / "nct_crc" / f).convert("RGB")) for f in STROMA]
    tumor = [np.asarray(Image.open(shared_data / "nct_crc" / f).convert("RGB")) for f in TUMOR]
    cells = [[(stroma if (r + c) % 2 == 0 else tumor)[(r * n + c) // 2 % 2] for c in range(n)] for r in range(n)]
    return np.concatenate([np.concatenate(row, axis=1) for row in cells], axis=0), cells


def test_cmu_svs_through_openslide(shared_data):
    path = shared_data / CMU
    with open_slide(path) as slide:
        assert isinstance(slide, OpenSlideReader)
        assert slide.dimensions == (2220, 2967)
        assert slide.mpp == pytest.approx(0.499)
        assert slide.level_count == 1 and slide.level_downsamples == (1.0,)
        region = slide.read_region((1000, 1500), 0, (120, 80))
        assert region.shape == (80, 120, 3) and region.dtype == np.uint8
        expected = np.asarray(openslide.OpenSlide(str(path)).read_region((1000, 1500), 0, (120, 80)).convert("RGB"))
        np.testing.assert_array_equal(region, expected)
        # Outside the slide is glass (white), inside the tissue is not.
        edge = slide.read_region((2200, 2950), 0, (40, 40))
        assert (edge[20:, :] == 255).all() and (edge[:, 20:] == 255).all()
        assert slide.read_region((1000, 1500), 0, (120, 80)).mean() < 220
        rect = slide.read_box((1000, 1500, 256, 256), 64)
        assert rect.shape == (64, 64, 3)
        thumb, downsample = slide.thumbnail(512)
        assert max(thumb.size) == 512 and downsample == pytest.approx(2967 / 512, rel=0.01)


def test_mpp_override_wins(shared_data):
    with open_slide(shared_data / CMU, mpp=0.25) as slide:
        assert slide.mpp == 0.25


def test_pyramidal_tiff_opens_in_openslide_with_its_mpp(shared_data, tmp_path):
    board, _ = chessboard(shared_data)
    path = write_pyramidal_tiff(tmp_path / "board.tif", board, mpp=0.5, tile_size=128)
    native = openslide.OpenSlide(str(path))
    assert native.properties["openslide.vendor"] == "generic-tiff"
    assert float(native.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.5)
    assert native.level_dimensions[:3] == ((896, 896), (448, 448), (224, 224))
    with open_slide(path) as slide:
        assert isinstance(slide, OpenSlideReader) and slide.mpp == pytest.approx(0.5)
    assert not list(tmp_path.glob(".*tmp*")), "the writer left a temporary file"


@pytest.mark.parametrize("tile_mpp", [0.5, 1.0, 2.0])
def test_tile_coordinates_map_back_to_the_source_tiles(shared_data, tmp_path, tile_mpp):
    board, cells = chessboard(shared_data)
    path = write_pyramidal_tiff(tmp_path / "board.tif", board, mpp=0.5, tile_size=128)
    input_size = round(224 * 0.5 / tile_mpp)  # each model tile covers one 224 px source tile
    spec = TileSpec.for_model(input_size, tile_mpp, slide_mpp=0.5)
    tiles = tile_grid((896, 896), spec)
    assert spec.tile_size == 224 and len(tiles) == 16
    sources = [cells[r][c] for r in range(4) for c in range(4)]
    with open_slide(path) as slide:
        for tile in tiles.itertuples():
            read = slide.read_box((tile.x, tile.y, tile.width, tile.height), input_size).astype(float)
            errors = [
                np.abs(read - np.asarray(Image.fromarray(s).resize((input_size,) * 2, Image.Resampling.BOX))).mean()
                for s in sources
            ]
            own = cells[tile.row][tile.col]
            own_error = errors[next(i for i, s in enumerate(sources) if s is own)]
            assert own_error < 6, f"tile {tile.row},{tile.col} at {tile_mpp} µm/px differs from its source"
            assert own_error == min(errors)


def test_tiled_tiff_levels_read_as_openslide_reads_them(shared_data, tmp_path):
    """Tiled TIFF levels are decoded by tifffile tile by tile (with a cache): same pixels as OpenSlide."""
    board, _ = chessboard(shared_data)
    path = write_pyramidal_tiff(tmp_path / "board.tif", board, mpp=0.5, tile_size=128)
    native = openslide.OpenSlide(str(path))
    rng = np.random.default_rng(0)
    with open_slide(path) as slide:
        assert isinstance(slide, OpenSlideReader) and slide._pages is not None  # the tifffile path is taken
        for level, (width, height) in enumerate(slide.level_dimensions):
            downsample = slide.level_downsamples[level]
            for _ in range(12):  # boxes across tile edges, inside and overhanging the level
                w, h = (int(v) for v in rng.integers(1, 300, 2))
                lx, ly = (int(v) for v in rng.integers(-50, max(width, height), 2))
                x, y = round(lx * downsample), round(ly * downsample)
                got = slide.read_region((x, y), level, (w, h))
                expected = np.asarray(native.read_region((x, y), level, (w, h)).convert("RGB")).copy()
                expected[np.asarray(native.read_region((x, y), level, (w, h)))[..., 3] == 0] = 255  # off-slide: glass
                np.testing.assert_array_equal(got, expected)
                np.testing.assert_array_equal(slide.read_region((x, y), level, (w, h)), got)  # from the tile cache


def test_ome_tiff_and_plain_tiff_through_tifffile(shared_data, tmp_path):
    board, _ = chessboard(shared_data, n=2)
    ome = tmp_path / "board.ome.tif"
    tifffile.imwrite(ome, board, photometric="rgb", tile=(128, 128),
                     metadata={"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeXUnit": "µm"})
    with open_slide(ome) as slide:
        assert isinstance(slide, TiffFileReader) and slide.mpp == pytest.approx(0.25)
        np.testing.assert_array_equal(slide.read_region((100, 200), 0, (50, 30)), board[200:230, 100:150])
    # Untiled (striped) TIFF, which OpenSlide rejects; resolution in pixels per inch.
    plain = tmp_path / "striped.tif"
    tifffile.imwrite(plain, board, photometric="rgb", resolution=(25400 / 0.5, 25400 / 0.5), resolutionunit="INCH")
    with open_slide(plain) as slide:
        assert isinstance(slide, TiffFileReader) and slide.mpp == pytest.approx(0.5)
        np.testing.assert_array_equal(slide.read_region((300, 10), 0, (64, 64)), board[10:74, 300:364])
        thumb, downsample = slide.thumbnail(112)
        assert thumb.size == (112, 112) and downsample == pytest.approx(4.0)


def test_png_mpp_from_density_or_missing(shared_data, tmp_path):
    image = Image.open(shared_data / "nct_crc" / STROMA[1]).convert("RGB")
    scanned = tmp_path / "scanned.png"
    image.save(scanned, dpi=(25400 / 0.5, 25400 / 0.5))
    with open_slide(scanned) as slide:
        assert isinstance(slide, PillowReader) and slide.mpp == pytest.approx(0.5, rel=1e-3)
    screen = tmp_path / "screen.png"
    image.save(screen, dpi=(72, 72))  # a program's default, not a measurement
    with open_slide(screen) as slide:
        assert slide.mpp is None
        with pytest.raises(ValueError) as err:
            slide.require_mpp()
    assert str(err.value) == (
        f"{screen}: no microns-per-pixel in the file's metadata; pass --mpp "
        "(µm per pixel at full resolution), e.g. --mpp 0.5 for a 20x scan"
    )
    with open_slide(screen, mpp=0.5) as slide:
        assert slide.require_mpp() == 0.5
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < 1_000_000_000  # limit restored


def test_bad_slide_files_fail_in_one_line_naming_the_file(shared_data, tmp_path):
    truncated = tmp_path / "truncated.svs"
    truncated.write_bytes((shared_data / CMU).read_bytes()[:1_000_000])
    text = tmp_path / "notes.svs"
    text.write_text("not a slide\n")
    for path in (truncated, text):
        with pytest.raises(ValueError) as err:
            open_slide(path)
        assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="missing.svs: slide not found"):
        open_slide(tmp_path / "missing.svs")
    with pytest.raises(ValueError, match="a folder, not a slide file"):
        open_slide(tmp_path)

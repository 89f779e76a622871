"""The numpy copy of torch's antialiased uint8 resize gives torch's pixels, bit for bit.

A small slide on ONNX Runtime is read without torch (`wholeslide.onnx_prediction`): its tiles must
still be exactly the tiles training and the torch path see, or its numbers would differ.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ldcsf.wholeslide.tile_dataset import resize_as_training
from ldcsf.wsi.resize import training_resize


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_equal_to_torch_on_noise_of_any_size(interpolation):
    # Noise is the hardest case for rounding; sizes shrink, enlarge, keep one side, and go odd.
    rng = np.random.default_rng(0)
    for _ in range(60):
        height, width = rng.integers(5, 400, size=2)
        out_h, out_w = (height, int(rng.integers(4, 300))) if rng.random() < 0.2 else rng.integers(4, 300, size=2)
        rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        np.testing.assert_array_equal(training_resize(rgb, out_w, out_h, interpolation),
                                      resize_as_training(rgb, int(out_w), int(out_h), interpolation))


def test_equal_to_torch_on_real_tiles_where_pillow_is_not(shared_data):
    rng = np.random.default_rng(1)
    images = sorted((shared_data / "nct_crc").rglob("*.tif"))[:6] + sorted((shared_data / "oral").rglob("*.jpg"))[:6]
    assert images, f"no tiles found under {shared_data}"
    pillow_differs = 0
    for path in images:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        for side, out in ((min(rgb.shape[:2]), 128), (97, 128), (200, 112)):
            y, x = (int(rng.integers(0, rgb.shape[i] - side + 1)) for i in (0, 1))
            tile = np.ascontiguousarray(rgb[y:y + side, x:x + side])
            for interpolation, pillow in (("bilinear", Image.Resampling.BILINEAR), ("bicubic", Image.Resampling.BICUBIC)):
                torch_way = resize_as_training(tile, out, out, interpolation)
                np.testing.assert_array_equal(training_resize(tile, out, out, interpolation), torch_way, err_msg=str(path))
                pillow_differs += int((np.asarray(Image.fromarray(tile).resize((out, out), pillow)) != torch_way).any())
    assert pillow_differs > 0  # the reason for the copy: Pillow's filters round differently


def test_unknown_interpolation_is_one_clear_error():
    with pytest.raises(ValueError, match="interpolation must be one of"):
        training_resize(np.zeros((8, 8, 3), np.uint8), 4, 4, "nearest")

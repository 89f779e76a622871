"""Image loading, the manifest Dataset, unreadable-image detection and transforms on real H&E tiles."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageFile

from ldcsf.data.dataset import ManifestDataset, drop_unreadable, find_unreadable_images, load_rgb
from ldcsf.data.manifest import Manifest
from ldcsf.data.transforms import HEDJitter, MacenkoNormalizer, RandomRot90, build_transforms

REAL = ["nct_crc/TUM-AACHEHDV.tif", "nct_crc/STR-AACRYYNQ.tif", "oral/train/OSCC/OSCC_100x_1.jpg"]


def _truncated_copy(src, dst):
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) * 6 // 10])
    return dst


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize("name", ["oral/train/OSCC/OSCC_100x_1.jpg", "nct_crc/ADI-TCGA-EENSRDNW.png", "nct_crc/ADI-AAQEFMRI.tif"])
def test_truncated_image_is_a_clear_error_even_if_pil_allows_truncation(shared_data, tmp_path, name):
    bad = _truncated_copy(shared_data / name, tmp_path / ("cut" + (shared_data / name).suffix))
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # what some libraries set globally
    try:
        with pytest.raises(ValueError, match=rf"{bad.name}: unreadable image"):
            load_rgb(bad)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
    assert ImageFile.LOAD_TRUNCATED_IMAGES is previous


def test_load_rgb_real_and_missing(shared_data, tmp_path):
    image = load_rgb(shared_data / REAL[0])
    assert image.mode == "RGB" and image.size == (224, 224)
    with pytest.raises(FileNotFoundError, match="absent.png: image not found"):
        load_rgb(tmp_path / "absent.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="text.png: unreadable image"):
        load_rgb(tmp_path / "text.png")


def _manifest(shared_data, tmp_path):
    bad = _truncated_copy(shared_data / REAL[2], tmp_path / "bad.jpg")
    frame = pd.DataFrame({"path": [str(shared_data / p) for p in REAL] + [str(bad)],
                          "stroma": [0, 1, np.nan, 0], "tumor": [1, 0, 1, 1]}).astype({"stroma": "float32", "tumor": "float32"})
    return Manifest(frame=frame, root=tmp_path, labels=["stroma", "tumor"])


def test_manifest_dataset_items_and_unreadable_images(shared_data, tmp_path):
    manifest = _manifest(shared_data, tmp_path)
    dataset = ManifestDataset(manifest)
    image, target = dataset[0]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.01
    assert target.tolist() == [0.0, 1.0]
    assert math.isnan(dataset[2][1][0]) and dataset[2][1][1] == 1.0
    with pytest.raises(ValueError, match="bad.jpg"):
        dataset[3]

    bad = find_unreadable_images(manifest, progress=False)
    assert [p.name for p, _ in bad] == ["bad.jpg"] and "truncated" in bad[0][1]
    kept = drop_unreadable(manifest, progress=False)
    assert len(kept) == 3 and all(p.is_file() and p.name != "bad.jpg" for p in kept.image_paths())
    with pytest.raises(ValueError, match="1 unreadable image"):
        drop_unreadable(manifest, strict=True, progress=False)

    transform = build_transforms(64, mean=(0.5,) * 3, std=(0.25,) * 3, train=True)
    image, _ = ManifestDataset(kept, transform)[1]
    assert image.shape == (3, 64, 64)
    loader = torch.utils.data.DataLoader(ManifestDataset(kept, transform), batch_size=3)
    images, targets = next(iter(loader))
    assert images.shape == (3, 3, 64, 64) and targets.shape == (3, 2)


def test_eval_transform_is_deterministic_resize_and_normalise(shared_data):
    image = load_rgb(shared_data / REAL[0])
    transform = build_transforms(64, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2), train=False)
    a, b = transform(image), transform(image)
    assert torch.equal(a, b) and a.shape == (3, 64, 64)
    resized = np.asarray(image.resize((64, 64), Image.BILINEAR), dtype=np.float32) / 255
    expected = (resized.mean(axis=(0, 1)) - np.array([0.5, 0.4, 0.3])) / 0.2
    np.testing.assert_allclose(a.mean(dim=(1, 2)).numpy(), expected, atol=0.02)


def test_hed_matches_skimage_and_round_trips(shared_data):
    from skimage.color import rgb2hed

    rgb = np.asarray(load_rgb(shared_data / REAL[0]), dtype=np.float64) / 255
    tensor = torch.from_numpy(rgb).permute(2, 0, 1).float()
    jitter = HEDJitter(0.05)
    hed = jitter.to_hed(tensor).numpy()
    # skimage scales concentrations by 1/-log(1e-6) and clips negatives
    expected = rgb2hed(rgb) * -np.log(1e-6)
    np.testing.assert_allclose(np.maximum(hed, 0), expected, atol=1e-3)
    back = jitter.to_rgb(jitter.to_hed(tensor))
    assert torch.allclose(back, tensor.clamp_min(1e-6), atol=1e-4)
    torch.manual_seed(0)
    jittered = jitter(tensor)
    assert jittered.shape == tensor.shape and 0 <= jittered.min() and jittered.max() <= 1
    assert 0.001 < (jittered - tensor).abs().mean() < 0.1  # visible but mild
    assert torch.equal(HEDJitter(0.0)(tensor), tensor)


def test_rot90_only_rotates_by_right_angles():
    image = torch.arange(16.0).reshape(1, 4, 4)
    rotations = {tuple(torch.rot90(image, k, dims=(-2, -1)).flatten().tolist()) for k in range(4)}
    torch.manual_seed(0)
    seen = {tuple(RandomRot90()(image).flatten().tolist()) for _ in range(40)}
    assert seen == rotations


def test_macenko_normalises_towards_reference(shared_data):
    reference = load_rgb(shared_data / "nct_crc/TUM-AACHEHDV.tif")
    source = load_rgb(shared_data / "oral/train/OSCC/OSCC_100x_1.jpg")
    normalizer = MacenkoNormalizer(reference)
    out = normalizer(source)
    assert out.size == source.size and out.mode == "RGB"
    # Macenko matches stain vectors: the output's H and E vectors should lie near the reference's.
    def stains(image):
        return MacenkoNormalizer(image)._normalizer.HERef.numpy()

    ref = stains(reference)
    assert np.abs(stains(out) - ref).max() < 0.5 * np.abs(stains(source) - ref).max()
    same = np.asarray(normalizer(reference), dtype=np.float32)
    assert np.abs(same - np.asarray(reference, dtype=np.float32)).mean() < 8  # reference maps ~onto itself
    blank = Image.new("RGB", (32, 32), (250, 250, 250))
    assert normalizer(blank) is blank  # nothing to estimate stains from: unchanged
    with pytest.raises(ValueError, match="too little tissue"):
        MacenkoNormalizer(blank)

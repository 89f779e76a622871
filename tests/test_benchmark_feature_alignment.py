"""heldout_feature_alignment.py: held-out maps moved onto the training maps' per-channel statistics."""

from __future__ import annotations

import numpy as np
import torch

from test_benchmarks import bench_module

alignment = bench_module("heldout_feature_alignment")


def maps_with_offsets(offsets: list[float], tiles_per_group: int = 6, channels: int = 4) -> torch.Tensor:
    """(groups * tiles, C, 3, 3) maps, group g shifted by offsets[g] and scaled by 1 + g."""
    generator = torch.Generator().manual_seed(0)
    parts = [torch.randn(tiles_per_group, channels, 3, 3, generator=generator) * (1 + g) + off
             for g, off in enumerate(offsets)]
    return torch.cat(parts)


def test_a_source_moved_onto_the_reference_has_its_mean_and_spread():
    reference = alignment.channel_stats(torch.randn(50, 4, 3, 3) * 0.5 + 2.0)
    moved = alignment.align(maps_with_offsets([5.0, -3.0]), reference, None, "mean_std")
    mean, std = alignment.channel_stats(moved)
    assert torch.allclose(mean, reference[0], atol=1e-5)
    assert torch.allclose(std, reference[1], atol=1e-5)


def test_moving_the_mean_alone_keeps_the_spread():
    maps = maps_with_offsets([5.0])
    reference = alignment.channel_stats(torch.randn(50, 4, 3, 3) * 0.5 + 2.0)
    moved = alignment.align(maps, reference, None, "mean")
    assert torch.allclose(alignment.channel_stats(moved)[0], reference[0], atol=1e-5)
    assert torch.allclose(alignment.channel_stats(moved)[1], alignment.channel_stats(maps)[1], atol=1e-5)


def test_each_image_is_moved_on_its_own_statistics_and_keeps_its_rows():
    maps = maps_with_offsets([5.0, -3.0, 0.5])
    groups = np.repeat(np.array(["b.png", "a.png", "c.png"]), 6)  # not in sorted order: rows must stay in place
    reference = alignment.channel_stats(torch.randn(50, 4, 3, 3) * 0.5 + 2.0)
    moved = alignment.align(maps, reference, groups, "mean_std")
    for name in ("a.png", "b.png", "c.png"):
        rows = torch.from_numpy(np.flatnonzero(groups == name))
        mean, std = alignment.channel_stats(moved[rows])
        assert torch.allclose(mean, reference[0], atol=1e-5) and torch.allclose(std, reference[1], atol=1e-5)
        # Within an image the tiles keep their order: an affine map per channel with a positive scale.
        before, after = maps[rows, 0].flatten(), moved[rows, 0].flatten()
        assert torch.equal(torch.argsort(before), torch.argsort(after))
    assert not torch.equal(moved, maps)

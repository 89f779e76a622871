"""Masked losses, positive weights, the balanced sampler, the schedule and the input mpp."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ldcsf.training.losses import MaskedAsymmetricLoss, build_loss, masked_bce_with_logits, positive_weights
from ldcsf.training.sampling import balanced_sample_weights
from ldcsf.training.schedule import warmup_cosine_factor
from ldcsf.training.train import effective_mpp

NAN = float("nan")
TARGETS = torch.tensor([[1.0, NAN, 0.0], [NAN, 0.0, 1.0], [0.0, 1.0, NAN]])


@pytest.mark.parametrize("name", ["bce", "asl"])
def test_unannotated_entries_get_no_gradient(name):
    logits = torch.randn(3, 3, requires_grad=True)
    build_loss(name)(logits, TARGETS).backward()
    unknown = torch.isnan(TARGETS)
    assert torch.all(logits.grad[unknown] == 0)
    assert torch.all(logits.grad[~unknown] != 0)


def test_masked_bce_is_the_mean_over_annotated_entries():
    logits = torch.randn(3, 3)
    known = ~torch.isnan(TARGETS)
    expected = F.binary_cross_entropy_with_logits(logits[known], TARGETS[known])
    assert masked_bce_with_logits(logits, TARGETS).item() == pytest.approx(expected.item(), rel=1e-6)
    # the value at an unannotated entry does not matter
    changed = logits.clone()
    changed[torch.isnan(TARGETS)] = 100.0
    assert masked_bce_with_logits(changed, TARGETS).item() == pytest.approx(expected.item(), rel=1e-6)


def test_batch_without_annotations_has_zero_loss():
    logits = torch.randn(2, 3, requires_grad=True)
    loss = masked_bce_with_logits(logits, torch.full((2, 3), NAN))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0)


def test_pos_weight_scales_positive_terms():
    logits = torch.zeros(1, 2)
    targets = torch.tensor([[1.0, 0.0]])
    plain = masked_bce_with_logits(logits, targets)
    weighted = masked_bce_with_logits(logits, targets, pos_weight=torch.tensor([3.0, 3.0]))
    # log(2) per entry; the positive entry counts 3 times: (3 + 1) / 2 vs (1 + 1) / 2
    assert weighted.item() == pytest.approx(plain.item() * 2, rel=1e-6)


def test_asl_down_weights_easy_negatives():
    loss = MaskedAsymmetricLoss(gamma_neg=4, gamma_pos=0, clip=0.05)
    easy_negative = loss(torch.tensor([[-3.0]]), torch.tensor([[0.0]]))
    hard_negative = loss(torch.tensor([[3.0]]), torch.tensor([[0.0]]))
    bce_easy = masked_bce_with_logits(torch.tensor([[-3.0]]), torch.tensor([[0.0]]))
    assert easy_negative.item() == 0.0  # p = 0.047 < clip: shifted to 0
    assert hard_negative.item() > bce_easy.item()


def test_positive_weights_are_neg_over_pos_clipped():
    targets = torch.tensor([[1, 0, NAN], [0, 0, 1], [0, 0, 1], [0, 1, 1]], dtype=torch.float32)
    weights = positive_weights(targets, max_weight=2.5)
    # label 0: 3 neg / 1 pos = 3 -> clipped 2.5; label 1: 3/1 -> 2.5; label 2: 0/3 -> clipped 1/2.5
    assert weights.tolist() == pytest.approx([2.5, 2.5, 0.4])
    assert positive_weights(torch.tensor([[1.0], [0.0], [0.0]])).tolist() == pytest.approx([2.0])


def test_balanced_weights_favour_rare_labels():
    targets = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 0], [NAN, NAN]], dtype=np.float32)
    weights = balanced_sample_weights(targets).numpy()
    assert weights[:3] == pytest.approx([1 / 3] * 3)
    assert weights[3] == pytest.approx(1.0)
    assert weights[4] == pytest.approx(1 / 2) and weights[5] == pytest.approx(1 / 2)  # "no positive" group


def test_warmup_then_cosine():
    assert warmup_cosine_factor(0, 4, 20) == pytest.approx(0.25)
    assert warmup_cosine_factor(3, 4, 20) == pytest.approx(1.0)
    assert warmup_cosine_factor(12, 4, 20) == pytest.approx(0.5)
    assert warmup_cosine_factor(20, 4, 20) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine_factor(0, 0, 10) == pytest.approx(1.0)


def test_effective_mpp():
    assert effective_mpp(224) == pytest.approx(0.5)
    assert effective_mpp(64) == pytest.approx(0.5 * 224 / 64)
    assert effective_mpp(128, tile_mpp=0.25, tile_px=512) == pytest.approx(1.0)
    assert effective_mpp(128, mpp=0.8, tile_mpp=0.25, tile_px=512) == 0.8
    with pytest.raises(ValueError, match="--tile-mpp"):
        effective_mpp(128, tile_mpp=-1)
    assert not math.isnan(effective_mpp(1))

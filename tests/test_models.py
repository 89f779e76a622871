"""The LDCSF model, its ablations, the baselines and the factory."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from ldcsf import DEFAULT_LABELS, create_model, list_models
from ldcsf.models import LDCSF, FeatureReconstruction, LocalDepthConv, count_parameters
from ldcsf.models.factory import _SWIN_MICRO

ALL_VARIANTS = list_models()
MICRO = "ldcsf_swin_micro"


def _input(model, batch=2):
    h, w = model.img_size
    return torch.randn(batch, 3, h, w)


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_every_variant_gives_one_logit_per_label(name):
    model = create_model(name, num_labels=3).eval()
    x = _input(model)
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        spatial = model.spatial_logits(features)
    assert logits.shape == (2, 3)
    assert features.ndim == 4 and features.shape[1] == model.num_features
    assert spatial.shape == (2, 3, *features.shape[-2:])
    # The head is linear: the mean of the spatial map is the pooled prediction.
    torch.testing.assert_close(spatial.mean(dim=(2, 3)), logits, atol=1e-5, rtol=1e-4)


def test_default_labels_are_the_papers_and_travel_with_the_model():
    model = create_model(MICRO)
    assert model.labels == list(DEFAULT_LABELS) == ["stroma", "necrosis", "non_tumor", "tumor"]
    custom = create_model(MICRO, labels=["tumor", "stroma"])
    assert custom.labels == ["tumor", "stroma"] and custom.head.out_features == 2
    assert custom.model_cfg == {"name": MICRO, "kwargs": {"labels": ["tumor", "stroma"]}}


@pytest.mark.parametrize("switch, module", [("use_ldc", "ldc"), ("use_fr", "fr"), ("use_resnet", "resnet")])
def test_each_ablation_removes_its_module_alone(switch, module):
    full = create_model(MICRO)
    ablated = create_model(MICRO, **{switch: False})
    assert getattr(ablated, module) is None
    others = {"ldc", "fr", "resnet"} - {module}
    assert all(getattr(ablated, other) is not None for other in others)
    removed = count_parameters(full) - count_parameters(ablated)
    if module == "resnet":  # the head then sits on Swin's channels instead of the ResNet's
        removed -= full.head.weight.numel() - ablated.head.weight.numel()
    assert removed == count_parameters(getattr(full, module))
    with torch.no_grad():
        assert ablated.eval()(_input(ablated)).shape == (2, 4)


def test_all_modules_off_is_the_plain_swin_baseline():
    ablated = create_model(MICRO, use_ldc=False, use_fr=False, use_resnet=False)
    baseline = create_model("swin_micro")
    assert count_parameters(ablated) == count_parameters(baseline)
    baseline.backbone.load_state_dict(ablated.backbone.state_dict())
    baseline.head.load_state_dict(ablated.head.state_dict())
    x = _input(ablated)
    with torch.no_grad():
        torch.testing.assert_close(ablated.eval()(x), baseline.eval()(x))


def test_modules_run_in_the_papers_order():
    model = create_model(MICRO).eval()
    calls = []
    # Swin is entered through forward_features, so its last layer (the final norm) marks it.
    stages = {"swin": model.backbone.norm, "ldc": model.ldc, "fr": model.fr, "resnet": model.resnet, "head": model.head}
    for name, module in stages.items():
        module.register_forward_hook(lambda *_, n=name: calls.append(n))
    with torch.no_grad():
        model(_input(model))
    assert calls == ["swin", "ldc", "fr", "resnet", "head"]


def test_ldc_starts_as_identity_and_is_depthwise():
    ldc = LocalDepthConv(channels=8, depth=2).eval()
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(ldc(x), x)
    convs = [m for m in ldc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 and all(c.groups == c.in_channels == 8 for c in convs)


def test_fr_multiplies_the_map_by_one_weight_per_channel():
    fr = FeatureReconstruction(channels=16, reduction=4).eval()
    x = torch.randn(3, 16, 4, 4)
    # the gate's weights recomputed from timm's SEModule parts: pool, fc1, act, fc2, sigmoid
    weights = fr.gate(fr.fc2(fr.act(fr.bn(fr.fc1(x.mean((2, 3), keepdim=True))))))
    assert weights.shape == (3, 16, 1, 1) and bool(((weights > 0) & (weights < 1)).all())
    torch.testing.assert_close(fr(x), x * weights)


def test_gradients_reach_the_swin_weights():
    model = create_model(MICRO).train()
    model(_input(model)).sum().backward()
    swin_grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert swin_grads and all(g is not None for g in swin_grads)
    assert model.backbone.patch_embed.proj.weight.grad.abs().sum() > 0


def test_state_dict_round_trip_gives_identical_outputs(tmp_path):
    model = create_model(MICRO).eval()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    clone = create_model(MICRO).eval()
    clone.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    x = _input(model)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_backbone_weights_load_from_a_local_file(tmp_path, suffix):
    # A timm Swin of the micro layout, with an ImageNet-style 1000-class head that must be ignored.
    source = timm.create_model("swin_tiny_patch4_window7_224", img_size=64, num_classes=1000, **_SWIN_MICRO)
    state = source.state_dict()
    path = tmp_path / f"swin{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:  # the wrapped, prefixed layout that training frameworks write
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = create_model(MICRO, pretrained_file=str(path))
    loaded = model.backbone.state_dict()
    for key, value in state.items():
        if not key.startswith("head"):
            assert torch.equal(loaded[key], value), key
    # A fresh model differs: the weights really came from the file.
    fresh = create_model(MICRO).backbone.state_dict()
    assert not torch.equal(fresh["patch_embed.proj.weight"], loaded["patch_embed.proj.weight"])


def test_bad_model_name_says_which_exist():
    with pytest.raises(ValueError, match=r"unknown model 'ldcsf_huge'.*ldcsf_swin_tiny"):
        create_model("ldcsf_huge")


@pytest.mark.parametrize("num_labels", [0, -1])
def test_label_count_below_one_is_refused(num_labels):
    with pytest.raises(ValueError, match="num_labels must be at least 1"):
        create_model(MICRO, num_labels=num_labels)


def test_wrong_input_size_names_the_expected_size():
    model = create_model(MICRO)
    with pytest.raises(ValueError, match=r"ldcsf_swin_micro expects input of size 64x64 px, got 96x96"):
        model(torch.randn(1, 3, 96, 96))
    with pytest.raises(ValueError, match=r"RGB images \(N, 3, H, W\), got shape \(1, 1, 64, 64\)"):
        model(torch.randn(1, 1, 64, 64))


def test_bad_weights_files_give_one_line_errors(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(ValueError, match=r"notes\.pth: not a readable weights file"):
        create_model(MICRO, pretrained_file=str(text))
    other = tmp_path / "resnet.safetensors"
    save_file(timm.create_model("resnet18").state_dict(), str(other))
    with pytest.raises(ValueError, match=r"resnet\.safetensors: weights do not fit the backbone"):
        create_model(MICRO, pretrained_file=str(other))
    with pytest.raises(FileNotFoundError, match="missing.pth: weights file not found"):
        create_model(MICRO, pretrained_file=str(tmp_path / "missing.pth"))


def test_ldcsf_class_is_used_for_ldcsf_variants_only():
    assert isinstance(create_model(MICRO), LDCSF)
    assert not isinstance(create_model("swin_micro"), LDCSF)


def test_an_argument_the_variant_does_not_take_is_named():
    with pytest.raises(ValueError, match=r"model ldcsf_swin_micro has no argument 'use_xyz'"):
        create_model(MICRO, use_xyz=False)

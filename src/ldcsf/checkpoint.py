"""The checkpoint format: weights plus everything needed to predict with them.

Like timm's `pretrained_cfg`, what the weights need to be used correctly travels with them:
the model's name and arguments, label names, per-label decision thresholds, the input size,
the physical resolution of the input (µm per pixel), the normalisation (mean/std and resampling of
the backbone's weights, and any stain normalisation), and the code version.

Two containers are accepted by `load_checkpoint`:
- an ldcsf checkpoint (`save_checkpoint`): {"format": "ldcsf-checkpoint", "meta": ..., "state_dict": ...};
- a Lightning checkpoint written by `ldcsf train`, which carries the same "ldcsf" meta beside
  Lightning's own keys and the model's weights under the "model." prefix.
Both load with `torch.load(weights_only=True)`: no pickled code ever runs. Both carry a SHA-256
of the weights, checked on load, and their meta is validated (`checkpoint_safety`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .models.input_spec import DEFAULT_INTERPOLATION, DEFAULT_MPP, IMAGENET_MEAN, IMAGENET_STD, InputSpec
from .checkpoint_safety import validate_meta, verify_digest, weights_digest
from .utils.atomic import atomic_path
from .utils.weight_files import torch_load_refusal

CHECKPOINT_FORMAT = "ldcsf-checkpoint"
FORMAT_VERSION = 1
#: Payload key of the weights' SHA-256 (both containers; see `checkpoint_safety.weights_digest`).
WEIGHTS_DIGEST_KEY = "weights_sha256"

if TYPE_CHECKING:  # the models package loads timm: built only when a model is (`LoadedCheckpoint.model`)
    import torch

    from .models import MultiLabelClassifier


@dataclass
class CheckpointMeta:
    """What a checkpoint says about how to use its weights.

    The input fields (input_size, mpp, mean, std, interpolation, stain_norm) are the model's
    `InputSpec` (`input_spec`), kept flat under the JSON keys checkpoints have always had.
    """

    model_name: str
    model_kwargs: dict[str, Any]
    labels: list[str]
    thresholds: list[float]
    input_size: int
    #: µm/px of the model's input (`InputSpec.mpp`), not of any slide
    mpp: float = DEFAULT_MPP
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    #: resampling of tiles to the input size (checkpoints from before it was recorded: bilinear)
    interpolation: str = DEFAULT_INTERPOLATION
    #: stain normalisation applied to every tile, e.g. {"method": "macenko", ...}; None: none
    stain_norm: dict[str, Any] | None = None
    #: the model-error margin of slides' TSR intervals, calibrated on held-out sources
    #: (`analysis.interval_calibration`); None: intervals cover sampling only
    interval_calibration: dict[str, Any] | None = None
    code_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_model(
        cls,
        model: MultiLabelClassifier,
        thresholds: Sequence[float] | None = None,
        mpp: float = DEFAULT_MPP,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        extra: dict[str, Any] | None = None,
        interpolation: str | None = None,
        stain_norm: dict[str, Any] | None = None,
        input_spec: InputSpec | None = None,
    ) -> "CheckpointMeta":
        """Meta of `model` with `input_spec`, or without one the spec made from the model (mean, std
        and interpolation its backbone's, from timm's config, unless given) and `mpp`, `stain_norm`."""
        from . import __version__

        if not model.model_cfg:
            raise ValueError("model was not built by ldcsf.create_model; cannot record how to rebuild it")
        thresholds = [0.5] * model.num_labels if thresholds is None else [float(t) for t in thresholds]
        if len(thresholds) != model.num_labels:
            raise ValueError(f"{len(thresholds)} thresholds for {model.num_labels} labels")
        kwargs = dict(model.model_cfg["kwargs"])
        kwargs.pop("pretrained", None)
        kwargs.pop("pretrained_file", None)
        if input_spec is None:
            input_spec = InputSpec.from_model(model, mpp, stain_norm, mean=mean, std=std, interpolation=interpolation)
        if input_spec.size != int(model.img_size[0]):
            raise ValueError(f"input spec of {input_spec.size} px for a model that takes {model.img_size[0]} px")
        return cls(
            model_name=model.model_cfg["name"],
            model_kwargs=kwargs,
            labels=list(model.labels),
            thresholds=thresholds,
            **input_spec.to_meta(),
            code_version=__version__,
            extra=dict(extra or {}),
        )

    @property
    def input_spec(self) -> InputSpec:
        """How tiles become this model's input: size, µm/px, normalisation, resampling, stain reference."""
        return InputSpec.from_meta(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CheckpointMeta":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def build_model(self) -> MultiLabelClassifier:
        """The architecture, with random weights (load the state dict next)."""
        from .models import create_model

        kwargs = {k: v for k, v in self.model_kwargs.items() if k != "labels"}
        return create_model(self.model_name, labels=self.labels, **kwargs)


class LoadedCheckpoint:
    """A checkpoint read and checked: its meta, where it came from, and its PyTorch model.

    The model may be given, or built on first use from `build` (`load_checkpoint(..., lazy=True)`):
    a run on an exported runtime whose file was made from these very weights never needs the
    PyTorch model, nor timm's ~2 s of imports.
    """

    def __init__(self, model: "MultiLabelClassifier | None" = None, meta: CheckpointMeta | None = None,
                 path: str | Path | None = None, weights_sha256: str = "", export_dir: Path | None = None,
                 *, build: "Callable[[], MultiLabelClassifier] | None" = None) -> None:
        if model is None and build is None:
            raise ValueError("LoadedCheckpoint needs a model or a way to build it")
        if meta is None or path is None:
            raise ValueError("LoadedCheckpoint needs the checkpoint's meta and path")
        self._model, self._build = model, build
        self.meta, self.path, self.weights_sha256 = meta, Path(path), weights_sha256
        #: where exported copies (ONNX, OpenVINO) are written; None: beside the checkpoint
        self.export_dir = export_dir

    @property
    def model(self) -> "MultiLabelClassifier":
        if self._model is None:
            self._model, self._build = self._build(), None
        return self._model

    @model.setter
    def model(self, model: "MultiLabelClassifier") -> None:
        self._model, self._build = model, None

    @property
    def model_built(self) -> bool:
        """Whether the PyTorch model exists yet (False until a lazily loaded one is first used)."""
        return self._model is not None

    def __repr__(self) -> str:
        return f"LoadedCheckpoint(path={str(self.path)!r}, model={self.meta.model_name!r}, built={self.model_built})"


def save_checkpoint(path: str | Path, model: MultiLabelClassifier, meta: CheckpointMeta | None = None) -> Path:
    """Write weights and meta atomically; return the path."""
    meta = meta or CheckpointMeta.for_model(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": meta.to_dict(),
        "state_dict": state,
        WEIGHTS_DIGEST_KEY: weights_digest(state),
    }
    import torch

    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint_payload(path: str | Path) -> tuple[CheckpointMeta, dict[str, torch.Tensor]]:
    """Read meta and model state dict from either container, with one-line errors.

    The meta is validated and the weights' digest checked (when the checkpoint has one).
    """
    meta, state, _ = _read_verified(Path(path))
    return meta, state


def _read_verified(path: Path) -> tuple[CheckpointMeta, dict[str, torch.Tensor], str]:
    import pickle

    import torch

    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's message would advise running the file's code
        raise torch_load_refusal(path, err) from err
    except Exception as err:  # zip and read errors all mean "not usable"
        raise ValueError(f"{path}: not a readable checkpoint (not a PyTorch file, or damaged or truncated)") from err
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: not an ldcsf checkpoint (holds a {type(payload).__name__})")
    if payload.get("format") == CHECKPOINT_FORMAT:
        if payload.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"{path}: checkpoint format {payload['format_version']} is newer than this ldcsf reads")
        meta_dict, state = payload.get("meta"), payload.get("state_dict")
    elif isinstance(payload.get("ldcsf"), dict) and isinstance(payload.get("state_dict"), dict):  # Lightning
        meta_dict = payload["ldcsf"]
        state = {k.removeprefix("model."): v for k, v in payload["state_dict"].items() if k.startswith("model.")}
    else:
        raise ValueError(f"{path}: not an ldcsf checkpoint (no ldcsf model description inside)")
    if not isinstance(meta_dict, dict) or not isinstance(state, dict):
        raise ValueError(f"{path}: not an ldcsf checkpoint (its meta or weights are missing)")
    try:
        meta = CheckpointMeta.from_dict(meta_dict)
    except TypeError as err:  # a required field is missing
        raise ValueError(f"{path}: checkpoint meta is incomplete ({err})") from None
    validate_meta(path, meta)
    digest = verify_digest(path, state, payload.get(WEIGHTS_DIGEST_KEY))
    return meta, state, digest


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", lazy: bool = False) -> LoadedCheckpoint:
    """Rebuild the model of a checkpoint and load its weights; returns model (eval mode) and meta.

    The file is read, its meta validated and its weights' digest checked here in any case; with
    `lazy` the model is built on first use (`LoadedCheckpoint.model`), and weights that do not fit
    it are reported then. A lazy load of a checkpoint whose trusted exported file records its meta
    (`exported.write_record`) reads the meta from that record and the file only when the model is
    built: the same bytes (their SHA-256) were read and checked when the record was written.
    """
    if lazy and (known := _meta_from_export_record(Path(path))) is not None:
        meta, digest = known
        return LoadedCheckpoint(meta=meta, path=Path(path), weights_sha256=digest,
                                build=lambda: load_checkpoint(path, map_location).model)
    meta, state, digest = _read_verified(Path(path))

    def build() -> "MultiLabelClassifier":
        try:
            model = meta.build_model()
            model.load_state_dict(state)
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"{path}: weights do not match model {meta.model_name!r} "
                             f"({str(err).splitlines()[0]})") from err
        return model.eval().to(map_location)

    if lazy:
        return LoadedCheckpoint(meta=meta, path=Path(path), weights_sha256=digest, build=build)
    return LoadedCheckpoint(model=build(), meta=meta, path=Path(path), weights_sha256=digest)


def _meta_from_export_record(path: Path) -> tuple[CheckpointMeta, str] | None:
    """(meta, weights digest) from the record of `path`'s trusted exported file, or None (no such record)."""
    from .export_record import checkpoint_record

    record = checkpoint_record(path)
    if record is None or not isinstance(record.get("meta"), dict) or not record.get("weights_sha256"):
        return None
    try:
        meta = CheckpointMeta.from_dict(record["meta"])
        validate_meta(path, meta, check_model_name=False)  # in full when the model is built (`build`)
    except (TypeError, ValueError):  # an older or foreign record: read the checkpoint itself
        return None
    return meta, str(record["weights_sha256"])

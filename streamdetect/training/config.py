"""Training configuration: the paper's defaults, every one overridable from a YAML file.

Loaded with the service's typed loader (streamdetect.config.from_dict): unknown keys and values of the wrong type
are refused with a ConfigError (a ValueError) naming the key (a typo such as `lr_rate` must not silently train
with the default).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from streamdetect.config import from_dict
from streamdetect.errors import ConfigError
from streamdetect.model.card import ModelConfig


@dataclass(frozen=True)
class ModelSection:
    backbone: str = "resnext50_32x4d"  # the paper's
    input_size: int = 112
    hidden_size: int = 2048
    dropout: float = 0.4
    fusion: bool = False
    expression: bool = False  # add landmark expression cues beside the CNN features
    crop: str = "box"  # the face crop (streamdetect.faces.crop.CROP_STYLES); must match the prepared data's
    temporal: str = "lstm"  # "lstm" (the paper) or "none" (frame-level head; the service's window pools)

    def to_config(self) -> ModelConfig:
        from streamdetect.faces.expression import EXPRESSION_SIZE

        return ModelConfig(backbone=self.backbone, input_size=self.input_size,
                           hidden_size=1 if self.temporal == "none" else self.hidden_size,
                           dropout=self.dropout, fusion=self.fusion,
                           expression_size=EXPRESSION_SIZE if self.expression else 0,
                           crop=self.crop, temporal=self.temporal)


@dataclass(frozen=True)
class SBISection:
    enabled: bool = True
    frame_jitter: float = 0.0  # >0: small per-frame changes of the blend, imitating flicker


@dataclass(frozen=True)
class TrainConfig:
    data: tuple[str, ...] = ()  # prepared folders (streamdetect prepare)
    out: str = "runs/train"
    model: ModelSection = field(default_factory=ModelSection)
    pretrained: bool | str = True  # ImageNet backbone weights (True: the installed ones; or a file path)
    # The paper's optimisation: Adam, lr 1e-5, weight decay 1e-3, batch 4, cross-entropy.
    lr: float = 1e-5
    head_lr: float | None = None  # LSTM + FC learning rate; None = lr
    weight_decay: float = 1e-3
    optimizer: str = "adam"  # "adam" (the paper: L2 in the gradient) or "adamw" (decoupled weight decay)
    batch_size: int = 4
    seq_len: int = 20
    steps: int = 2000
    warmup_steps: int = 0
    schedule: str = "constant"  # or "cosine"
    loss: str = "all"  # "all": cross-entropy on the verdict after every frame; "last": only after the last
    freeze_bn: bool = False  # keep ImageNet BatchNorm statistics (small batches of few clips make poor ones)
    # What a batch is made of. Classes are balanced 50/50 when `balance`; inside a class, these weights choose
    # the pool (pools the data does not have are left out and the rest renormalised).
    balance: bool = True
    real_mix: dict = field(default_factory=lambda: {"video": 0.7, "image": 0.3})
    fake_mix: dict = field(default_factory=lambda: {"sbi": 0.5, "blend": 0.25, "synthesis": 0.25})
    # Draw a fake's generator family first, then the clip: every fake family weighs the same inside its pool.
    # Off by default: with a few demo clips per family it overfits them (README, ablations).
    balance_generators: bool = False
    # Pair each dataset fake with a real from its own collection (source dataset, and kind where it can), so that
    # a collection's camera, codec and framing are no cue: FF++ c40 fakes are 40 % of the v2 fakes but its
    # originals ~8 % of the reals. Self-blended fakes are made from reals of the real mix and stay unpaired.
    match_reals: bool = False
    # Leave-one-family-out: generator families (MediaItem.generator, e.g. "Hallo", "real-TalkingHeadBench") or
    # source datasets (e.g. "FaceForensics++") kept out of training and validation entirely; `streamdetect
    # evaluate --run RUN --split holdout` then scores them.
    holdout: tuple[str, ...] = ()
    # Weight averaging (streamdetect.training.averaging): from this fraction of the steps on, every step's weights
    # enter a uniform mean, written as swa.safetensors beside last.safetensors at the end. None: off.
    swa_from: float | None = None
    sbi: SBISection = field(default_factory=SBISection)
    augment: dict = field(default_factory=dict)  # streamdetect.training.augment.AugmentConfig fields
    val_seq_len: int = 20  # validation (model selection) reads the verdict after this many frames: the service's W
    val_fraction: float = 0.2
    split_seed: int = 0
    val_every: int = 200
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    threads: int = 0  # torch CPU threads; 0 = torch's default

    def __post_init__(self):
        if self.loss not in ("all", "last"):
            raise ValueError(f"loss must be 'all' or 'last', got {self.loss!r}")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.swa_from is not None and not 0 <= self.swa_from < 1:
            raise ValueError(f"swa_from must be a fraction of the steps in [0, 1), got {self.swa_from!r}")
        if self.batch_size < 1 or self.seq_len < 1 or self.steps < 0:
            raise ValueError("batch_size and seq_len must be >= 1 and steps >= 0")
        for name, mix, keys in (("real_mix", self.real_mix, {"video", "image"}),
                                ("fake_mix", self.fake_mix, {"sbi", "blend", "synthesis", "animation"})):
            if set(mix) - keys:
                raise ValueError(f"{name}: unknown pools {sorted(set(mix) - keys)}; use {sorted(keys)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _numeric(hint) -> type | None:
    """int or float when a field holds a number (optionally None), else None."""
    args = set(typing.get_args(hint)) - {type(None)} if typing.get_origin(hint) in (typing.Union, types.UnionType) \
        else {hint}
    return next(iter(args)) if len(args) == 1 and args <= {int, float} else None


def _prepare(cls, raw, where: str):
    """What YAML and the command line give that the typed loader (streamdetect.config.from_dict) would refuse but
    that always meant one thing: one path for a list (`data: prepared/x`), null for an empty list, and numbers YAML
    reads as strings (it reads 1e-4, without a decimal point, as a string). Everything else is from_dict's to check."""
    if not isinstance(raw, dict):
        return raw  # from_dict names the problem
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in raw.items():
        hint = hints.get(key)
        if hint is not None and dataclasses.is_dataclass(hint):
            value = _prepare(hint, value, f"{where}.{key}")
        elif typing.get_origin(hint) is tuple and (value is None or isinstance(value, (str, tuple))):
            value = [value] if isinstance(value, str) else list(value or ())
        elif isinstance(value, str) and (number := _numeric(hint)) is not None:
            try:
                value = number(value)
            except ValueError:
                raise ConfigError(f"{where}.{key}: must be a number, got {value!r}") from None
        out[key] = value
    return out


def load_config(path: str | Path | None = None, settings: list[str] = (), **overrides) -> TrainConfig:
    """YAML file (optional) + `settings` ("model.expression=true", values parsed as YAML) + keyword overrides
    (None values ignored) -> TrainConfig."""
    import yaml

    raw = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training config {path} does not exist; see examples/train_default.yaml")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. model.expression=true), got {setting!r}")
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    where = str(path or "config")
    return from_dict(TrainConfig, _prepare(TrainConfig, raw, where), where)

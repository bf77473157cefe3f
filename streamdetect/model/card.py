"""Model configuration and model card: everything a runtime needs to use a model correctly.

The card travels inside every model file (safetensors metadata, ONNX metadata_props, TensorRT header) so a
crop size, normalisation or label order can never silently differ between training and serving.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from streamdetect import __version__
from streamdetect.errors import IncompatibleModelError

# Bump when the meaning of stored tensors or card fields changes; loaders refuse newer formats.
CARD_FORMAT = 1
LABELS = ("real", "fake")  # index 1 is "fake": p_fake = softmax(logits)[..., 1]


# Face crop sizes a model can read: square, a multiple of 16 (the backbones downsample by 16-32), 96-320 px.
INPUT_SIZES = range(96, 321, 16)


def check_input_size(size: int) -> None:
    if size not in INPUT_SIZES:
        raise ValueError(f"input_size must be a multiple of 16 from 96 to 320 (112, 160 and 224 are usual), got {size}")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture. The defaults are the paper's: ResNeXt50_32x4d @112 -> LSTM 2048 -> dropout 0.4 -> FC."""

    backbone: str = "resnext50_32x4d"
    input_size: int = 112
    hidden_size: int = 2048
    dropout: float = 0.4
    # The paper's feature fusion: concatenate the frame's pooled CNN features with the LSTM output before the FC.
    fusion: bool = False
    # Expression cues (the paper's second objective): this many per-frame landmark features (mouth, eyes, brows,
    # head pose and their motion; streamdetect.faces.expression) are concatenated to the CNN features before
    # the LSTM. 0 = off. The step graph then takes feature_size + expression_size inputs per face.
    expression_size: int = 0
    # The face crop the model was trained on (streamdetect.faces.crop.CROP_STYLES). Cards written before this
    # field existed load as "aligned", the crop they were trained on (ModelCard.from_json).
    crop: str = "box"
    # "lstm": the paper's recurrent head. "none": a frame-level head (FC on the frame's features); the step graph
    # still takes and returns (h, c), passed through unchanged (hidden_size 1), so every runtime serves both alike
    # and the service's rolling window does the temporal pooling.
    temporal: str = "lstm"

    def __post_init__(self):
        from streamdetect.faces.crop import check_style
        from streamdetect.model.backbones import BACKBONES

        check_style(self.crop)
        if self.temporal not in ("lstm", "none"):
            raise ValueError(f"temporal must be 'lstm' or 'none', got {self.temporal!r}")

        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")
        check_input_size(self.input_size)
        if self.hidden_size < 1:
            raise ValueError(f"hidden_size must be positive, got {self.hidden_size}")
        if self.expression_size < 0:
            raise ValueError(f"expression_size must be 0 (off) or positive, got {self.expression_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def feature_size(self) -> int:
        from streamdetect.model.backbones import BACKBONES

        return BACKBONES[self.backbone].feature_size

    @property
    def step_input_size(self) -> int:
        """Width of what the LSTM reads per frame: CNN features, then expression features when enabled."""
        return self.feature_size + self.expression_size


@dataclass(frozen=True)
class ModelCard:
    """What a model is, how to feed it and how well it did. Serialised as JSON."""

    config: ModelConfig = field(default_factory=ModelConfig)
    name: str = "untrained"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    labels: tuple[str, ...] = LABELS
    threshold: float = 0.5  # p_fake at or above this is "fake"
    temperature: float = 1.0  # logits are divided by this before the softmax (calibration)
    training_data: str = "none: randomly initialised"
    metrics: dict = field(default_factory=dict)
    version: str = __version__
    format: int = CARD_FORMAT

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> ModelCard:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise IncompatibleModelError(f"{source}: the model card is not valid JSON ({exc})") from exc
        if not isinstance(raw, dict) or "format" not in raw or "config" not in raw:
            raise IncompatibleModelError(f"{source}: this is not a StreamDetect model card")
        if raw["format"] > CARD_FORMAT:
            raise IncompatibleModelError(
                f"{source}: model card format {raw['format']} is newer than this StreamDetect "
                f"({__version__}) understands (format {CARD_FORMAT}); upgrade with: pip install -U streamdetect"
            )
        try:
            config = raw.pop("config")
            config.setdefault("crop", "aligned")  # the only crop that existed before the field
            config = ModelConfig(**config)
            for key in ("mean", "std", "labels"):
                raw[key] = tuple(raw[key])
            return cls(config=config, **raw)
        except (TypeError, ValueError, KeyError) as exc:
            raise IncompatibleModelError(f"{source}: the model card does not match this version ({exc})") from exc

    def with_updates(self, **changes) -> ModelCard:
        return dataclasses.replace(self, **changes)

"""The paper's CNN+LSTM model, its backbones, card and checkpoints.

The card and `read_card` import without torch (serving runs exported graphs with ONNX Runtime only); the torch
parts (DeepfakeDetector, load_checkpoint, save_checkpoint, new_model) are imported when first used, and where torch
is not installed they raise MissingDependencyError naming the extra that provides it.
"""

from streamdetect.model.card import LABELS, ModelCard, ModelConfig
from streamdetect.model.checkpoint import load_checkpoint, read_card, save_checkpoint

__all__ = ["LABELS", "DeepfakeDetector", "ModelCard", "ModelConfig", "load_checkpoint", "read_card", "save_checkpoint"]


def __getattr__(name: str):
    if name == "DeepfakeDetector":
        from streamdetect.model.backbones import import_torch

        import_torch("The torch model (DeepfakeDetector)")
        from streamdetect.model.detector import DeepfakeDetector

        return DeepfakeDetector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def new_model(config: ModelConfig | None = None, pretrained_backbone: bool | str = False, **card_fields):
    """A fresh model (a DeepfakeDetector) whose card carries the backbone's own normalisation."""
    from streamdetect.model.backbones import BACKBONES, import_torch

    import_torch("Creating a model")
    from streamdetect.model.detector import DeepfakeDetector

    config = config or ModelConfig()
    spec = BACKBONES[config.backbone]
    card = ModelCard(config=config, mean=spec.mean, std=spec.std, **card_fields)
    return DeepfakeDetector(card, pretrained_backbone=pretrained_backbone).eval()

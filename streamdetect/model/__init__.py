"""The paper's CNN+LSTM model, its backbones, card and checkpoints."""

from streamdetect.model.card import LABELS, ModelCard, ModelConfig
from streamdetect.model.checkpoint import load_checkpoint, read_card, save_checkpoint
from streamdetect.model.detector import DeepfakeDetector

__all__ = ["LABELS", "DeepfakeDetector", "ModelCard", "ModelConfig", "load_checkpoint", "read_card", "save_checkpoint"]


def new_model(config: ModelConfig | None = None, pretrained_backbone: bool | str = False, **card_fields) -> DeepfakeDetector:
    """A fresh model whose card carries the backbone's own normalisation."""
    from streamdetect.model.backbones import BACKBONES

    config = config or ModelConfig()
    spec = BACKBONES[config.backbone]
    card = ModelCard(config=config, mean=spec.mean, std=spec.std, **card_fields)
    return DeepfakeDetector(card, pretrained_backbone=pretrained_backbone).eval()

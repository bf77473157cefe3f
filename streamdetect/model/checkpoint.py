"""Checkpoints: one safetensors file holding the weights, with the model card JSON in its metadata.

Reading the card needs only safetensors (numpy API); loading or saving the weights needs torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from streamdetect.errors import CheckpointError
from streamdetect.model.backbones import import_torch
from streamdetect.model.card import ModelCard

if TYPE_CHECKING:
    import torch

    from streamdetect.model.detector import DeepfakeDetector

CARD_KEY = "streamdetect.card"


def save_checkpoint(model: DeepfakeDetector, path: str | Path, card: ModelCard | None = None,
                    half: bool = False) -> Path:
    """Write weights + card atomically (a crash never leaves a half-written checkpoint under the real name).
    half=True stores floating-point tensors as fp16 (half the size; they load back into fp32 modules)."""
    import_torch("Saving a checkpoint")
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    card = card or model.card
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata={CARD_KEY: card.to_json()})
    tmp.replace(path)
    return path


def read_card(path: str | Path) -> ModelCard:
    """Read only the card (cheap: safetensors keeps metadata in the header; no torch needed)."""
    return _open(Path(path), framework="numpy")[0]


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> DeepfakeDetector:
    """Build the model the card describes and load its weights; every failure says what is wrong."""
    import_torch(f"Loading the checkpoint {path}")
    from streamdetect.model.detector import DeepfakeDetector

    path = Path(path)
    card, handle = _open(path)
    model = DeepfakeDetector(card)
    expected = model.state_dict()
    keys = set(handle.keys())
    missing, unexpected = sorted(set(expected) - keys), sorted(keys - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the model its card describes ({card.config}): "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}). "
            f"The file was edited or written by other code; re-export it from the training run."
        )
    state = {}
    for key in expected:
        tensor = handle.get_tensor(key)
        if tensor.shape != expected[key].shape:
            raise CheckpointError(
                f"{path}: tensor {key} has shape {tuple(tensor.shape)} but the card's architecture needs "
                f"{tuple(expected[key].shape)}; the card and weights come from different models."
            )
        state[key] = tensor.to(expected[key].dtype)  # fp16-stored weights load into fp32 modules
    model.load_state_dict(state)
    return model.to(device).eval()


def _open(path: Path, framework: str = "pt"):
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path (or create one with `streamdetect init`).")
    try:
        handle = safe_open(str(path), framework=framework)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a readable safetensors checkpoint ({exc}); it may be truncated (an interrupted "
            f"download or copy) or another format. Only .safetensors checkpoints are loaded."
        ) from exc
    metadata = handle.metadata() or {}
    if CARD_KEY not in metadata:
        raise CheckpointError(
            f"{path} is a safetensors file but not a StreamDetect checkpoint (no '{CARD_KEY}' metadata). "
            f"To use foreign backbone weights, pass them as backbone weights when building a model instead."
        )
    return ModelCard.from_json(metadata[CARD_KEY], source=str(path)), handle

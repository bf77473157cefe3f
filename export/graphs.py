"""The two exported graphs and their declared inputs/outputs (optimum's OnnxConfig idea, without the framework).

The recurrent state is an explicit graph input and output, so one step graph serves any number of faces and
the runtime owns the memory of every track.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from streamdetect.model.detector import DeepfakeDetector

FACES = "faces"  # the dynamic batch axis: one row per tracked face


class EncoderGraph(nn.Module):
    """uint8 (faces, S, S, 3) RGB crops -> float features (faces, F); normalisation is inside the graph."""

    def __init__(self, model: DeepfakeDetector):
        super().__init__()
        self.model = model

    def forward(self, crops):
        return self.model.encode(crops)


class StepGraph(nn.Module):
    """features (faces, F), h, c (faces, H) -> p_fake (faces,), h_next, c_next."""

    def __init__(self, model: DeepfakeDetector):
        super().__init__()
        self.model = model

    def forward(self, features, h, c):
        p_fake, (h, c) = self.model.step(features, (h, c))
        return p_fake, h, c


@dataclass(frozen=True)
class GraphSpec:
    name: str
    wrap: Callable[[DeepfakeDetector], nn.Module]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dummy: Callable[[DeepfakeDetector, int], tuple[torch.Tensor, ...]]  # example inputs for `faces` rows

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {n: {0: FACES} for n in self.inputs + self.outputs}


def _encoder_inputs(model: DeepfakeDetector, faces: int):
    s = model.card.config.input_size
    return (torch.randint(0, 256, (faces, s, s, 3), dtype=torch.uint8),)


def _step_inputs(model: DeepfakeDetector, faces: int):
    cfg = model.card.config
    h, c = (torch.randn(faces, cfg.hidden_size) * 0.5 for _ in range(2))
    return torch.randn(faces, cfg.step_input_size), h, c


GRAPH_SPECS: dict[str, GraphSpec] = {
    "encoder": GraphSpec("encoder", EncoderGraph, ("crops",), ("features",), _encoder_inputs),
    "step": GraphSpec("step", StepGraph, ("features", "h", "c"), ("p_fake", "h_next", "c_next"), _step_inputs),
}

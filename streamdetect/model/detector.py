"""The paper's detector: per-frame CNN features -> LSTM -> dropout -> FC -> softmax(real, fake).

Two ways to run the same weights, which agree numerically (tests/test_model.py):
  * `forward(clips)`            whole sequences at once, for training;
  * `step(features, state)`     one frame per face with explicit (h, c), for streaming and export.
Inputs are uint8 (or float 0..255) RGB crops, channels last, exactly what the serving path hands over;
normalisation lives inside the model so training and serving cannot disagree on it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from streamdetect.model.backbones import build_backbone
from streamdetect.model.card import ModelCard

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (faces, hidden_size)


class Normalize(nn.Module):
    """uint8/float NHWC RGB in 0..255 -> float NCHW normalised with the card's mean/std."""

    def __init__(self, mean, std):
        super().__init__()
        mean, std = torch.tensor(mean), torch.tensor(std)
        # One multiply-add: (x/255 - mean)/std == x * scale + shift
        self.register_buffer("scale", (1.0 / (255.0 * std)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", (-mean / std).view(1, 3, 1, 1), persistent=False)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        # Cast first: TensorRT lets a uint8 input feed only a Cast, not a Transpose.
        x = crops.to(self.scale.dtype).permute(0, 3, 1, 2)
        return x * self.scale + self.shift


class DeepfakeDetector(nn.Module):
    def __init__(self, card: ModelCard | None = None, pretrained_backbone: bool | str = False):
        super().__init__()
        self.card = card or ModelCard()
        cfg = self.card.config
        self.normalize = Normalize(self.card.mean, self.card.std)
        self.backbone = build_backbone(cfg.backbone, cfg.input_size, pretrained_backbone)
        self.frame_level = cfg.temporal == "none"
        # A frame-level model has no recurrent weights; an empty LSTM slot keeps `model.lstm.parameters()` valid.
        self.lstm = (nn.ModuleList() if self.frame_level else
                     nn.LSTM(cfg.step_input_size, cfg.hidden_size, num_layers=1, batch_first=True))
        self.dropout = nn.Dropout(cfg.dropout)
        head_in = cfg.step_input_size if self.frame_level else cfg.hidden_size + (cfg.step_input_size if cfg.fusion else 0)
        self.head = nn.Linear(head_in, 2)

    # -- per-frame encoder -------------------------------------------------------------------------------
    def encode(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, S, S, 3) crops -> (N, feature_size) pooled CNN features."""
        return self.backbone(self.normalize(crops))

    # -- temporal head -----------------------------------------------------------------------------------
    def classify(self, hidden: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """LSTM output (and, with fusion, the frame's CNN features) -> logits (real, fake)."""
        x = self.dropout(hidden)
        if self.card.config.fusion and not self.frame_level:
            x = torch.cat([x, features], dim=-1)
        return self.head(x)

    def temporal(self, features: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """(B, T, F) features -> logits (B, T, 2) at every frame, and the final state."""
        if self.frame_level:
            if state is None:
                state = self.init_state(features.shape[0], features.device, features.dtype)
            return self.classify(features, features), state
        if state is not None:
            state = (state[0].unsqueeze(0).contiguous(), state[1].unsqueeze(0).contiguous())
        hidden, (h, c) = self.lstm(features, state)
        return self.classify(hidden, features), (h[0], c[0])

    def forward(self, clips: torch.Tensor, expression: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, S, S, 3) crops [+ (B, T, E) expression features] -> logits (B, T, 2): the verdict after each
        frame. Training uses [:, -1]."""
        b, t = clips.shape[:2]
        features = self.encode(clips.flatten(0, 1)).view(b, t, -1)
        return self.temporal(self.join(features, expression))[0]

    def join(self, features: torch.Tensor, expression: torch.Tensor | None) -> torch.Tensor:
        """CNN features + expression features -> what the LSTM reads (the step graph's `features` input)."""
        size = self.card.config.expression_size
        if size == 0:
            return features
        if expression is None or expression.shape[-1] != size:
            got = None if expression is None else tuple(expression.shape)
            raise ValueError(f"this model reads {size} expression features per frame; got {got}")
        return torch.cat([features, expression.to(features.dtype)], dim=-1)

    def init_state(self, faces: int, device=None, dtype=None) -> State:
        p = self.head.weight
        zeros = torch.zeros(faces, self.card.config.hidden_size, device=device or p.device, dtype=dtype or p.dtype)
        return zeros, zeros.clone()

    def step(self, features: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """One frame per face: (N, F [+E]) features (see `join`) and (h, c) -> (p_fake (N,), (h', c')).

        The LSTM cell is written out as two matmuls so the exported graph is plain MatMul/Sigmoid/Tanh (fast on
        every runtime) and eager CPU avoids nn.LSTM's per-call setup (measured ~6x slower for single steps).
        """
        logits, state = self.step_logits(features, state)
        return self.probabilities(logits)[:, 1], state

    def step_logits(self, features: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """`step` before the softmax: (N, 2) logits. Evaluation calibrates the temperature on these."""
        h, c = state if state is not None else self.init_state(features.shape[0], features.device, features.dtype)
        if self.frame_level:
            # State passes through untouched; `+ 0` keeps it a graph node so exported outputs are not inputs.
            return self.classify(features, features), (h + 0, c + 0)
        lstm = self.lstm
        gates = F.linear(features, lstm.weight_ih_l0, lstm.bias_ih_l0) + F.linear(h, lstm.weight_hh_l0, lstm.bias_hh_l0)
        i, f, g, o = gates.chunk(4, dim=1)  # PyTorch's gate order
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return self.classify(h, features), (h, c)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits / self.card.temperature, dim=-1)

"""The one small interface every runtime backend implements.

Inputs and outputs are NumPy arrays whatever the backend, so the service never sees a framework type:
  encode(crops uint8 (faces, S, S, 3))            -> features float32 (faces, F)
  step(features (faces, F), (h, c) or None)       -> p_fake float32 (faces,), (h, c) each (faces, H)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from streamdetect.model.card import ModelCard

State = tuple[np.ndarray, np.ndarray]


class Engine(ABC):
    name: ClassVar[str]
    card: ModelCard
    device: str  # human-readable: what actually runs the graphs
    on_gpu: bool = False

    @abstractmethod
    def encode(self, crops: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _step(self, features: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def step(self, features: np.ndarray, state: State | None = None) -> tuple[np.ndarray, State]:
        features = np.ascontiguousarray(features, dtype=np.float32)
        h, c = state if state is not None else self.init_state(features.shape[0])
        p_fake, h, c = self._step(features, h, c)
        return p_fake, (h, c)

    def init_state(self, faces: int) -> State:
        zeros = np.zeros((faces, self.card.config.hidden_size), dtype=np.float32)
        return zeros, zeros.copy()

    def check_crops(self, crops: np.ndarray) -> np.ndarray:
        s = self.card.config.input_size
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != (s, s, 3):
            raise ValueError(f"{self.name}: expected uint8 crops of shape (faces, {s}, {s}, 3), got {crops.dtype} {crops.shape}")
        return np.ascontiguousarray(crops)

    def close(self) -> None:
        """Release sessions/contexts; engines are also context managers."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        cfg = self.card.config
        return f"<{type(self).__name__} {cfg.backbone}@{cfg.input_size} LSTM-{cfg.hidden_size} on {self.device}>"

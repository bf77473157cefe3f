"""Eager torch backend: CPU or CUDA, fp16 and channels_last on CUDA. The reference the other backends match."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from streamdetect.devices import torch_device
from streamdetect.engines.base import Engine
from streamdetect.errors import EngineError
from streamdetect.model import DeepfakeDetector, load_checkpoint


class TorchEngine(Engine):
    name = "torch"

    def __init__(self, model: DeepfakeDetector | str | Path, device: str = "auto", fp16: bool | None = None,
                 channels_last: bool | None = None):
        device = torch_device(device)
        on_gpu = device.startswith("cuda")
        self.fp16 = on_gpu if fp16 is None else fp16
        if self.fp16 and not on_gpu:
            raise EngineError("fp16 needs CUDA (CPU half-precision convolutions are slow or unsupported)")
        # A copy: moving/halving must not change the caller's model (it may feed another engine).
        model = copy.deepcopy(model) if isinstance(model, DeepfakeDetector) else load_checkpoint(model)
        self.model = model.to(device).eval()
        self.dtype = torch.float16 if self.fp16 else torch.float32
        if self.fp16:
            self.model.backbone.half()  # the recurrent step stays fp32: its state is carried for minutes
        self.memory_format = torch.channels_last if (on_gpu if channels_last is None else channels_last) else None
        if self.memory_format is not None:
            self.model.backbone.to(memory_format=self.memory_format)
        self.torch_device = torch.device(device)
        self.on_gpu = on_gpu
        self.card = model.card
        name = torch.cuda.get_device_name(self.torch_device) if on_gpu else "CPU"
        self.device = f"torch {torch.__version__} {name}{' fp16' if self.fp16 else ''}"

    @torch.inference_mode()
    def encode(self, crops: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(self.check_crops(crops)).to(self.torch_device, non_blocking=True)
        x = self.model.normalize(x).to(self.dtype)
        if self.memory_format is not None:
            x = x.contiguous(memory_format=self.memory_format)
        return self.model.backbone(x).float().cpu().numpy()

    @torch.inference_mode()
    def _step(self, features, h, c):
        dev = self.torch_device
        p, (h, c) = self.model.step(torch.from_numpy(features).to(dev), (torch.from_numpy(h).to(dev), torch.from_numpy(c).to(dev)))
        return p.cpu().numpy(), h.cpu().numpy(), c.cpu().numpy()

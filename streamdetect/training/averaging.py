"""Weight averaging over the late steps of a run (SWA: Izmailov et al. 2018; SWAD: Cha et al. 2021).

A uniform average of the weights visited late in training sits in a flatter region of the loss than the last
iterate, which SWAD found to generalise better to unseen domains; here the unseen domains are new generators.
Averaging costs nothing when serving: the result is one ordinary checkpoint of the same architecture.

BatchNorm running statistics are not averaged: they belong to the weights that produced them, so they are
measured again for the averaged weights on training batches (torch.optim.swa_utils.update_bn does the same).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import torch

# Training batches whose BatchNorm statistics the averaged weights get (64 faces each: ~1,500 faces).
BN_BATCHES = 24


class WeightAverage:
    """The running uniform mean of a model's parameters, fed once per step; saved and restored for --resume."""

    def __init__(self, model: torch.nn.Module):
        self.count = 0
        self.mean = {k: p.detach().float().clone() for k, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.count += 1
        for k, p in model.named_parameters():
            self.mean[k] += (p.detach().float() - self.mean[k]) / self.count

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        tmp = path.with_name(path.name + ".partial")
        save_file({k: v.cpu().contiguous() for k, v in self.mean.items()}, str(tmp), {"count": str(self.count)})
        tmp.replace(path)

    def restore(self, path: Path) -> bool:
        """Continue from a saved mean (a resumed run); False, keeping the fresh start, when none was saved."""
        from safetensors import safe_open

        if not path.exists():
            return False
        with safe_open(str(path), "pt") as f:
            self.count = int(f.metadata()["count"])
            self.mean = {k: f.get_tensor(k).to(next(iter(self.mean.values())).device) for k in f.keys()}
        return True

    @torch.no_grad()
    def averaged_model(self, model: torch.nn.Module, batches: Callable[[int], tuple]) -> torch.nn.Module:
        """A copy of `model` with the mean weights and BatchNorm statistics measured anew on `batches(i)`,
        i < BN_BATCHES, each a (frames, expression) pair of input tensors."""
        averaged = copy.deepcopy(model)
        for k, p in averaged.named_parameters():
            p.copy_(self.mean[k].to(p.dtype))
        norms = [m for m in averaged.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative mean over the batches below, not an exponential one
        averaged.train()
        for i in range(BN_BATCHES if norms else 0):
            averaged(*batches(i))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        return averaged.eval()

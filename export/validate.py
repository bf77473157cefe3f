"""Every exported graph is compared with torch before it is allowed to exist (optimum's validate_model_outputs)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from streamdetect.errors import ValidationError
from streamdetect.export.graphs import GRAPH_SPECS
from streamdetect.model.detector import DeepfakeDetector

# fp32, per element: |onnx - torch| <= ATOL + RTOL * |torch|. Pure atol 1e-4 failed for ResNeXt50 features of
# magnitude ~2 (1.3e-4 seen: ONNX Runtime's fused convolutions sum in another order), so a relative term is added.
ATOL, RTOL = 1e-4, 1e-4
CHAINED_STEPS, CHAINED_FACES = 30, 3


@dataclass(frozen=True)
class ValidationReport:
    graph: str
    max_abs_diff: float
    checks: int

    def __str__(self):
        return f"{self.graph}: max |onnx - torch| = {self.max_abs_diff:.2e} over {self.checks} outputs (atol {ATOL:g}, rtol {RTOL:g})"


def _compare(graph: str, what: str, got: np.ndarray, want: np.ndarray, atol: float) -> float:
    if got.shape != want.shape:
        raise ValidationError(f"{graph}: {what} has shape {got.shape}, torch gives {want.shape}")
    err = np.abs(got - want)
    diff = float(err.max()) if got.size else 0.0
    if not np.all(np.isfinite(got)) or np.any(err > atol + RTOL * np.abs(want)):
        raise ValidationError(f"{graph}: {what} differs from torch by up to {diff:.3e} (allowed {atol:g} + {RTOL:g}*|torch|); "
                              f"the graph was not written")
    return diff


def validate_encoder(model: DeepfakeDetector, run, atol: float = ATOL) -> ValidationReport:
    """`run(crops) -> (features,)` executes the exported graph. Checks batch 1 and 3 (the batch axis is dynamic)."""
    worst, checks = 0.0, 0
    for faces in (1, CHAINED_FACES):
        (crops,) = GRAPH_SPECS["encoder"].dummy(model, faces)
        with torch.no_grad():
            want = model.encode(crops).numpy()
        worst = max(worst, _compare("encoder", f"features (batch {faces})", run(crops.numpy())[0], want, atol))
        checks += 1
    return ValidationReport("encoder", worst, checks)


def validate_step(model: DeepfakeDetector, run, atol: float = ATOL) -> ValidationReport:
    """`run(features, h, c) -> (p_fake, h, c)` executes the exported graph. 30 chained steps for 3 faces, each side feeding back its own state,
    so an error that accumulates through the recurrence is caught, not only a one-step error."""
    cfg = model.card.config
    gen = torch.Generator().manual_seed(0)
    h_t = c_t = torch.zeros(CHAINED_FACES, cfg.hidden_size)
    h_o, c_o = h_t.numpy(), c_t.numpy()
    worst, checks = 0.0, 0
    for t in range(CHAINED_STEPS):
        feats = torch.randn(CHAINED_FACES, cfg.step_input_size, generator=gen)
        with torch.no_grad():
            p_t, (h_t, c_t) = model.step(feats, (h_t, c_t))
        p_o, h_o, c_o = run(feats.numpy(), h_o, c_o)
        for name, got, want in (("p_fake", p_o, p_t), ("h", h_o, h_t), ("c", c_o, c_t)):
            worst = max(worst, _compare("step", f"{name} at step {t}", got, want.numpy(), atol))
            checks += 1
    return ValidationReport("step", worst, checks)


VALIDATORS = {"encoder": validate_encoder, "step": validate_step}

"""The bundled default model: trained, calibrated, small, and what every command uses out of the box."""

import numpy as np
import torch

from streamdetect.model import load_checkpoint, read_card
from streamdetect.service import default_model
from streamdetect.weights import default_model_path


def test_bundled_model_is_trained_calibrated_and_small():
    path = default_model()
    assert path == default_model_path() and path.stat().st_size < 50 * 2**20
    card = read_card(path)
    cfg = card.config
    assert (cfg.backbone, cfg.crop, cfg.temporal, cfg.hidden_size) == ("efficientnet_lite0", "box", "none", 1)
    assert "shared" in card.training_data and "round2" in card.training_data and card.name.endswith("-v2")
    assert 0 < card.threshold < 1 and card.threshold != 0.5 and card.temperature > 0
    # Measured on the held-out identities by `evaluate --write-card`: frames and the talking-head generators in
    # validation are well above chance; StyleGAN2 photos (never trained on) are reported, not hidden.
    assert 0.6 < card.metrics["frame"]["auc"] <= 1
    assert card.metrics["by_family"]["animation"]["auc_vs_real"] > 0.6
    assert "synthesis" in card.metrics["by_family"] and "StyleGAN2" in card.metrics["by_method"]


def test_bundled_model_runs_and_keeps_its_fp16_weights_exact():
    model = load_checkpoint(default_model())
    assert all(p.dtype == torch.float32 for p in model.parameters())  # stored fp16, computed in fp32
    w = model.head.weight.detach()
    assert torch.equal(w, w.half().float())  # the values are exactly the fp16 ones the card was measured with
    crops = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 3, 112, 112, 3), dtype=np.uint8))
    with torch.no_grad():
        logits = model(crops)
    assert logits.shape == (1, 3, 2) and torch.isfinite(logits).all()

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
    assert card.config.backbone == "efficientnet_lite0" and card.config.hidden_size == 512
    assert "shared" in card.training_data and card.name != "untrained"
    assert 0 < card.threshold < 1 and card.threshold != 0.5 and card.temperature > 0
    for level in ("frame", "video"):  # measured on the held-out identities, stored by `evaluate --write-card`
        assert 0 <= card.metrics[level]["auc"] <= 1
    assert set(card.metrics["by_family"]) == {"blend", "synthesis"}


def test_bundled_model_runs_and_keeps_its_fp16_weights_exact():
    model = load_checkpoint(default_model())
    assert all(p.dtype == torch.float32 for p in model.parameters())  # stored fp16, computed in fp32
    w = model.head.weight.detach()
    assert torch.equal(w, w.half().float())  # the values are exactly the fp16 ones the card was measured with
    crops = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 3, 112, 112, 3), dtype=np.uint8))
    with torch.no_grad():
        logits = model(crops)
    assert logits.shape == (1, 3, 2) and torch.isfinite(logits).all()

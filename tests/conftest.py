import numpy as np
import pytest
import torch

from streamdetect.model import ModelConfig, new_model


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Exports made on demand go to a per-test cache, never the user's."""
    monkeypatch.setenv("STREAMDETECT_CACHE", str(tmp_path / "cache"))


def realistic(model, seed: int = 0, batches: int = 3):
    """Give a randomly initialised model trained-like BatchNorm statistics and non-trivial LSTM/FC weights.

    Fresh torchvision trunks in eval mode output ~1e-9 (BN running stats are 0/1), which would let a broken
    export pass any tolerance. A few train-mode passes over random crops set the running statistics.
    """
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    s = model.card.config.input_size
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model.encode(torch.randint(0, 256, (4, s, s, 3), generator=gen, dtype=torch.uint8))
        for p in (*model.lstm.parameters(), *model.head.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def small_model(backbone="mobilenet_v2", hidden=32, fusion=False, input_size=112, seed=0):
    torch.manual_seed(seed)
    return realistic(new_model(ModelConfig(backbone=backbone, input_size=input_size, hidden_size=hidden, fusion=fusion)), seed)


@pytest.fixture
def rng():
    return np.random.default_rng(0)

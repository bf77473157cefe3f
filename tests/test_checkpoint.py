"""Checkpoints: round trip, and clear errors for every way a file can be wrong."""

import json

import pytest
import torch
from safetensors.torch import save_file

from streamdetect.errors import CheckpointError, IncompatibleModelError
from streamdetect.model import ModelCard, ModelConfig, load_checkpoint, read_card, save_checkpoint
from streamdetect.model.checkpoint import CARD_KEY
from tests.conftest import small_model


@pytest.fixture
def checkpoint(tmp_path):
    model = small_model(hidden=24)
    return model, save_checkpoint(model, tmp_path / "m.safetensors")


def test_round_trip_keeps_weights_and_card(checkpoint):
    model, path = checkpoint
    loaded = load_checkpoint(path)
    assert loaded.card == model.card
    assert read_card(path).config == ModelConfig(backbone="mobilenet_v2", hidden_size=24)
    crops = torch.randint(0, 256, (2, 3, 112, 112, 3), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(crops), model(crops), rtol=0, atol=0)
    assert not path.with_name(path.name + ".partial").exists()


def test_card_travels_in_the_file(checkpoint):
    _, path = checkpoint
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    card = json.loads(header["__metadata__"][CARD_KEY])
    assert card["labels"] == ["real", "fake"] and card["config"]["input_size"] == 112
    assert card["mean"] == [0.485, 0.456, 0.406] and 0 < card["threshold"] < 1


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_truncated_file(checkpoint, tmp_path):
    _, path = checkpoint
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(cut)


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(3)}, path)  # a pickle: must never be unpickled
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(path)


def test_foreign_safetensors(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a StreamDetect checkpoint"):
        load_checkpoint(path)


def test_weights_that_do_not_match_the_card(checkpoint, tmp_path):
    model, _ = checkpoint
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    lying_card = model.card.with_updates(config=ModelConfig(backbone="mobilenet_v2", hidden_size=64))
    path = tmp_path / "lying.safetensors"
    save_file(tensors, str(path), metadata={CARD_KEY: lying_card.to_json()})
    with pytest.raises(CheckpointError, match="card and weights come from different models"):
        load_checkpoint(path)
    del tensors["head.bias"]
    save_file(tensors, str(path), metadata={CARD_KEY: model.card.to_json()})
    with pytest.raises(CheckpointError, match="1 missing"):
        load_checkpoint(path)


def test_newer_format_is_refused(checkpoint, tmp_path):
    model, _ = checkpoint
    card = json.loads(model.card.to_json())
    card["format"] = 99
    path = tmp_path / "future.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata={CARD_KEY: json.dumps(card)})
    with pytest.raises(IncompatibleModelError, match="newer .* pip install -U streamdetect"):
        load_checkpoint(path)


def test_card_with_unknown_backbone():
    card = json.loads(ModelCard().to_json())
    card["config"]["backbone"] = "vit_h14"
    with pytest.raises(IncompatibleModelError, match="unknown backbone"):
        ModelCard.from_json(json.dumps(card))
